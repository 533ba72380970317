"""Harvest under torchrun: 2 processes against 1 on the same corpus, in the same run.

Variants, each a fresh `polysemy harvest` of the same `--tokens` rows of the same corpus file
into a new store (run in rotation, `--repeats` times; only ratios in one run mean anything on
a shared machine):

  1 proc x 1 thread   `python -m polysemy harvest --threads 1`
  1 proc x 2 threads  `python -m polysemy harvest --threads 2` (the same cores as 2 ranks)
  2 ranks x 1 thread  `torchrun --nproc-per-node 2 -m polysemy harvest` (gloo, CPU)

Two rates per run: `harvest tok/s` is what the command reports (rows over the harvest loop,
for torchrun from the loop's start to the joined manifest), `wall tok/s` is rows over the
whole command (Python start, model load and, for torchrun, the launcher included). The
tokenizer's share is measured apart: every rank tokenizes the whole stream it cuts, which
bounds the speedup at many ranks.

Run: `.venv/bin/python benchmarks/harvest_distributed.py [--tokens 20000] [--repeats 2]`
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="pydocs")
    parser.add_argument("--site", default="encoder.layer.3.output")
    parser.add_argument("--tokens", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import torch

    from polysemy.activations.harvest import iter_batches
    from polysemy.corpora import open_corpus
    from polysemy.models import load_model

    tmp = Path(tempfile.mkdtemp(prefix="harvest-dist-"))
    loaded = load_model("minilm")
    tok = loaded.tokenizer
    assert tok is not None
    # A corpus file holding a little more than --tokens text tokens, read by every variant.
    docs, total = [], 0
    for text in open_corpus(args.corpus):
        docs.append(text)
        total += len(tok(text, add_special_tokens=False)["input_ids"])
        if total > args.tokens * 1.1:
            break
    corpus = tmp / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))

    t0 = time.perf_counter()
    rows = sum(
        b.rows
        for b in itertools.islice(iter_batches(tok, docs, seq_len=128, batch_size=64), 10_000)
    )
    tokenize_rate = rows / (time.perf_counter() - t0)

    env = dict(os.environ, OMP_NUM_THREADS="1")
    common = ["harvest", "--corpus", str(corpus), "--site", args.site, "--json"]
    common += ["--tokens", str(args.tokens)]
    variants = {
        "1 proc x 1 thread": [sys.executable, "-m", "polysemy", *common, "--threads", "1"],
        "1 proc x 2 threads": [sys.executable, "-m", "polysemy", *common, "--threads", "2"],
        "2 ranks x 1 thread": [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            "PORT",
            "-m",
            "polysemy",
            *common,
            "--threads",
            "1",
        ],
    }
    rates: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for rep in range(args.repeats):
        for i, (name, cmd) in enumerate(variants.items()):
            out = tmp / f"store-{rep}-{i}"
            cmd = [str(_free_port()) if c == "PORT" else c for c in cmd] + ["--out", str(out)]
            start = time.perf_counter()
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            wall = time.perf_counter() - start
            if done.returncode != 0:
                print(done.stderr[-3000:])
                return 1
            line = next(x for x in done.stdout.splitlines() if x.startswith("{"))
            summary = json.loads(line)
            rates[name].append((summary["tokens_per_second"], summary["rows"] / wall))
            print(
                f"  {name}: {summary['tokens_per_second']:.0f} harvest tok/s, "
                f"{summary['rows'] / wall:.0f} wall tok/s",
                flush=True,
            )

    print(
        f"\n{args.tokens} tokens of {args.corpus}, MiniLM {args.site}, float16 store, "
        f"{args.repeats} repeats; torch {torch.__version__}, {os.cpu_count()} CPUs visible"
    )
    ref = statistics.median(h for h, _ in rates["1 proc x 1 thread"])
    ref_wall = statistics.median(w for _, w in rates["1 proc x 1 thread"])
    print(f"{'variant':<20} {'harvest tok/s':>14} {'ratio':>6} {'wall tok/s':>11} {'ratio':>6}")
    for name, vals in rates.items():
        h = statistics.median(v[0] for v in vals)
        w = statistics.median(v[1] for v in vals)
        print(f"{name:<20} {h:>14.0f} {h / ref:>6.2f} {w:>11.0f} {w / ref_wall:>6.2f}")
    print(
        f"tokenize + batch alone (one process): {tokenize_rate:.0f} tok/s "
        f"({ref / tokenize_rate:.1%} of a 1-thread harvest's time)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
