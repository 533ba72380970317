"""Harvest throughput: polysemy's harvest against a plain transformers forward with a hook.

All variants run in this one process on the same text (the first documents of a corpus,
`--tokens` text tokens), cut into the same chunks (`[CLS] up to seq_len-2 tokens [SEP]`),
storing the same rows (text tokens only). The machine is shared, so only ratios measured in
the same run mean anything; the work is cut into `--slices` slices run in rotation (slice i
of every variant in turn), `--repeats` times, and each rate is total rows over total time.

  plain            full forward (torch.no_grad) + forward hook on the site's module, chunks in
                   corpus order, 64 per batch padded to the batch's longest: what one would
                   write by hand. Pre-tokenized, results kept in memory (no disk).
  plain-sorted     the same, over polysemy's batches (length-sorted, token-budget batches).
  bare-to-layer    polysemy's batches through a copy of the model truncated after the site's
                   layer, no hooks, inference_mode: the floor for reaching the site.
  polysemy-fwd     polysemy's batches through `read_sites(..., early_exit=True)`: its forward
                   path alone. It alternates batch by batch with bare-to-layer, and
                   `bare-to-layer rate / polysemy-fwd rate - 1` is the hook overhead.
  polysemy-harvest `polysemy.activations.harvest.harvest` end to end: tokenizing, batching,
                   forward, float16 conversion and writing shards to disk (one harvest
                   per slice of the documents).

Run: `.venv/bin/python benchmarks/harvest_throughput.py [--tokens 40000] [--slices 8]`
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

from polysemy.activations.harvest import HarvestConfig, harvest, iter_batches
from polysemy.corpora import open_corpus
from polysemy.models import load_model, read_sites


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--site", default="encoder.layer.3.output")
    parser.add_argument("--corpus", default="pydocs")
    parser.add_argument("--tokens", type=int, default=40_000)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--slices", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    loaded = load_model(args.model)
    model, tok = loaded.model, loaded.tokenizer
    layer_match = re.fullmatch(r"encoder\.layer\.(\d+)\.output", args.site)
    if layer_match is None:
        print("this benchmark's bare-to-layer variant needs a BERT site encoder.layer.N.output")
        return 2
    layer = int(layer_match.group(1))

    # The documents that hold the first --tokens text tokens.
    docs: list[str] = []
    counts: list[int] = []
    total = 0
    for text in open_corpus(args.corpus):
        n = len(tok(text, add_special_tokens=False, verbose=False)["input_ids"])
        docs.append(text)
        counts.append(n)
        total += n
        if total >= args.tokens:
            break
    chunk_len = args.seq_len - 2
    chunks = []
    for ids in tok(docs, add_special_tokens=False, verbose=False)["input_ids"]:
        chunks += [ids[i : i + chunk_len] for i in range(0, len(ids), chunk_len)]
    rows = sum(len(c) for c in chunks)

    # plain: corpus order, batch_size chunks per batch, padded to the batch's longest.
    plain_batches = []
    for i in range(0, len(chunks), args.batch_size):
        group = chunks[i : i + args.batch_size]
        enc = tok.pad(
            {"input_ids": [[tok.cls_token_id, *c, tok.sep_token_id] for c in group]},
            return_tensors="pt",
        )
        keep = enc["attention_mask"].bool().clone()
        keep[:, 0] = False
        keep[torch.arange(len(group)), enc["attention_mask"].sum(1) - 1] = False
        plain_batches.append((enc["input_ids"], enc["attention_mask"], keep))
    ours = [
        (b.input_ids, b.attention_mask, b.keep)
        for b in iter_batches(tok, docs, seq_len=args.seq_len, batch_size=args.batch_size)
    ]
    assert (
        sum(int(k.sum()) for *_, k in ours) == rows == sum(int(k.sum()) for *_, k in plain_batches)
    )
    slots_plain = sum(i.numel() for i, *_ in plain_batches)
    slots_ours = sum(i.numel() for i, *_ in ours)

    k = args.slices

    def cut(items: list) -> list[list]:
        size = math.ceil(len(items) / k)
        return [items[i * size : (i + 1) * size] for i in range(k)]

    def plain_forward(batches: list) -> Callable[[int], int]:
        slices = cut(batches)

        def run(i: int) -> int:
            got = 0
            box: list[torch.Tensor] = []
            handle = model.encoder.layer[layer].register_forward_hook(
                lambda m, a, out: box.append(out[0] if isinstance(out, tuple) else out)
            )
            try:
                with torch.no_grad():
                    for ids, mask, keep in slices[i]:
                        box.clear()
                        model(input_ids=ids, attention_mask=mask)
                        got += box[0][keep].half().shape[0]
            finally:
                handle.remove()
            return got

        return run

    truncated = copy.deepcopy(model)
    truncated.encoder.layer = truncated.encoder.layer[: layer + 1]
    our_slices = cut(ours)

    keep_now: list[torch.Tensor] = []
    batch_ratios: list[float] = []  # polysemy-fwd time / bare-to-layer time, per batch

    def bare_batch(ids: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor) -> int:
        h = truncated(input_ids=ids, attention_mask=mask).last_hidden_state
        return h[keep].half().shape[0]

    def polysemy_batch(ids: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor) -> int:
        keep_now[:] = [keep]
        with read_sites(
            loaded, [args.site], early_exit=True, select=lambda t: t[keep_now[0]].half()
        ) as reader:
            return reader.run(input_ids=ids, attention_mask=mask)[args.site].shape[0]

    def bare_and_polysemy(i: int) -> int:
        # The pair whose ratio is the hook overhead runs batch by batch, alternating which
        # goes first, so both see the same load; each adds its own time to `seconds`.
        got = 0
        with torch.inference_mode():
            for j, batch in enumerate(our_slices[i]):
                pair = [("bare-to-layer", bare_batch), ("polysemy-fwd", polysemy_batch)]
                took = {}
                for name, fn in pair[:: 1 if j % 2 else -1]:
                    start = time.perf_counter()
                    n = fn(*batch)
                    took[name] = time.perf_counter() - start
                    seconds[name] += took[name]
                    got += n if name == "polysemy-fwd" else 0
                batch_ratios.append(took["polysemy-fwd"] / took["bare-to-layer"])
        return got

    doc_slices = cut(docs)
    slice_rows = [sum(c) for c in cut(counts)]

    def polysemy_harvest(i: int) -> int:
        if not doc_slices[i]:
            return 0
        with tempfile.TemporaryDirectory() as tmp:
            config = HarvestConfig(
                sites=(args.site,),
                tokens=slice_rows[i],
                seq_len=args.seq_len,
                batch_size=args.batch_size,
                dtype="float16",
            )
            result = harvest(
                loaded, doc_slices[i], config, out=Path(tmp) / "store", corpus=args.corpus
            )
        return result.rows

    variants: dict[str, Callable[[int], int]] = {
        "plain": plain_forward(plain_batches),
        "plain-sorted": plain_forward(ours),
        "bare+polysemy-fwd": bare_and_polysemy,
        "polysemy-harvest": polysemy_harvest,
    }
    names = ["plain", "plain-sorted", "bare-to-layer", "polysemy-fwd", "polysemy-harvest"]
    seconds = dict.fromkeys(names, 0.0)
    # Fine interleaving: slice i of every variant in turn (order rotated each slice), so a
    # burst of load from other users hits all variants alike.
    order = list(variants)
    for _ in range(args.repeats):
        got = dict.fromkeys(order, 0)
        for i in range(k):
            for name in order[i % len(order) :] + order[: i % len(order)]:
                start = time.perf_counter()
                got[name] += variants[name](i)
                if name in seconds:
                    seconds[name] += time.perf_counter() - start
        assert all(n == rows for n in got.values()), (got, rows)
    rate = {name: args.repeats * rows / seconds[name] for name in names}

    print(
        f"# harvest throughput: {args.model} {args.site}, corpus {args.corpus}, "
        f"{rows} text tokens in {len(docs)} documents, seq_len {args.seq_len}, batch "
        f"{args.batch_size}, torch threads {torch.get_num_threads()}, "
        f"{args.repeats} x {k} interleaved slices"
    )
    print(
        f"# padded token slots: plain {slots_plain} ({rows / slots_plain:.0%} text), "
        f"polysemy {slots_ours} ({rows / slots_ours:.0%} text)"
    )
    print(f"{'variant':<18} {'tok/s':>9} {'vs plain':>9}")
    for name in names:
        print(f"{name:<18} {rate[name]:>9.0f} {rate[name] / rate['plain']:>8.2f}x")
    overhead = rate["bare-to-layer"] / rate["polysemy-fwd"] - 1
    print(f"# hook overhead (bare-to-layer / polysemy-fwd - 1): {overhead:+.1%}")
    median = statistics.median(batch_ratios) - 1
    print(
        f"# hook overhead, median over {len(batch_ratios)} batches of the time ratio: {median:+.1%}"
    )
    speedup = rate["polysemy-harvest"] / rate["plain"]
    print(f"# end-to-end speedup (polysemy-harvest / plain): {speedup:.2f}x")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
