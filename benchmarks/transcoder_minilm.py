"""Transcoders on MiniLM layer 3: held-out FVU and fidelity with the MLP replaced.

Harvests the MLP's input and output in one pass from `pydocs`, trains a `transcoder`, a
`skip-transcoder` (input -> output) and a TopK SAE on the output itself (output -> output)
with the same width, k and budget, then splices each in (`analyze_fidelity`) on `pydocs`
documents the harvest never reached. Prints one JSON line per dictionary as it finishes,
then a Markdown table: held-out FVU on the training store (a point estimate on the store's
held-out rows) and the fidelity figures with 95% bootstrap intervals over documents; then
the same splice on `--concepts` `concepts:heldout` sentences, text unlike the training
store (fidelity `fvu` and `recovered_vs_zero` with intervals). The tables in
docs/transcoders.md and benchmarks/RESULTS.md are this script's output with these defaults.

    PYTHONPATH=src python benchmarks/transcoder_minilm.py --out runs/transcoder-minilm
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

SITE_IN = "encoder.layer.3.intermediate.input"
SITE_OUT = "encoder.layer.3.output.dense.output"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="scratch folder")
    parser.add_argument("--harvest-tokens", type=int, default=131_072)
    parser.add_argument("--train-tokens", type=int, default=245_760)
    parser.add_argument("--d-sae", type=int, default=1536)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--documents", type=int, default=113)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--concepts",
        type=int,
        default=200,
        help="concepts:heldout sentences for a second fidelity (0: none)",
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)

    import polysemy as ps
    from polysemy.activations.harvest import HarvestConfig, harvest
    from polysemy.analysis.fidelity import analyze_fidelity
    from polysemy.corpora import open_corpus

    loaded = ps.load_model("minilm")
    stores = args.out / "stores"
    config = HarvestConfig(sites=(SITE_IN, SITE_OUT), tokens=args.harvest_tokens, dtype="float32")
    harvest(loaded, open_corpus("pydocs", seed=0), config, out=stores, force=True)
    used = int(ps.ActivationStore(stores / SITE_IN).doc.max())  # type: ignore[union-attr]
    # Held-out text: documents after the last one the harvest read, long enough to matter.
    later = open_corpus("pydocs", seed=0).take(used + 24 + 4 * args.documents)[used + 24 :]
    docs = [d for d in later if len(d) > 200][: args.documents]
    sentences = open_corpus("concepts:heldout", seed=0).take(args.concepts)
    rows = []
    for arch in ("transcoder", "skip-transcoder", "topk"):
        t0 = time.perf_counter()
        options = dict(arch=arch, d_sae=args.d_sae, k=args.k, tokens=args.train_tokens,
                       batch_size=1024, lr=1e-3, out=args.out / arch, force=True,
                       progress=False)  # fmt: skip
        if arch == "topk":
            run = ps.train_sae(stores / SITE_OUT, **options)
        else:
            run = ps.train_sae(stores / SITE_IN, target=stores / SITE_OUT, **options)
        sae = ps.load_sae(args.out / arch)
        fid = analyze_fidelity(
            loaded, sae, docs, examples=len(docs), site=SITE_OUT if arch == "topk" else None
        )
        summary = fid.summary()
        keys = ("fvu", "embedding_cosine", "recovered_vs_zero", "recovered_vs_mean")
        row = {
            "arch": arch,
            "heldout_fvu": round(run.fvu, 4),
            "dead_fraction": round(run.dead_fraction, 4),
            **{f"fidelity_{k}": round(summary[k], 4) for k in keys},
            "ci": {
                k: [round(v["low"], 4), round(v["high"], 4)]
                for k, v in summary["intervals"].items()
                if k in keys
            },
            "documents": summary["n"],
            "tokens": summary["tokens"],
            "seconds": round(time.perf_counter() - t0, 1),
        }
        if args.concepts:  # text unlike the training store's: where transcoders broke before
            other = analyze_fidelity(
                loaded,
                sae,
                sentences,
                examples=len(sentences),
                site=SITE_OUT if arch == "topk" else None,
            ).summary()
            row["concepts"] = {
                k: [round(other[k], 4), round(other["intervals"][k]["low"], 4),
                    round(other["intervals"][k]["high"], 4)]
                for k in ("fvu", "recovered_vs_zero")
            }  # fmt: skip
        print(json.dumps(row), flush=True)
        rows.append(row)
    print(table(rows, args), flush=True)


def table(rows: list[dict], args: argparse.Namespace) -> str:
    """The Markdown table of docs/transcoders.md: point estimate [95% CI] per figure."""
    keys = ("fvu", "embedding_cosine", "recovered_vs_zero", "recovered_vs_mean")
    names = {"transcoder": "`transcoder` (input -> output)",
             "skip-transcoder": "`skip-transcoder` (input -> output)",
             "topk": "`topk` SAE (output -> output)"}  # fmt: skip
    lines = [
        f"d_sae {args.d_sae}, k {args.k}, {args.train_tokens} training tokens; fidelity on "
        f"{rows[0]['documents']} held-out pydocs documents ({rows[0]['tokens']} tokens)",
        "",
        "| dictionary | held-out FVU (training store) | dead | fidelity `fvu` | "
        "`embedding_cosine` | `recovered_vs_zero` | `recovered_vs_mean` | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            f"{r[f'fidelity_{k}']:.3f} [{r['ci'][k][0]:.3f}, {r['ci'][k][1]:.3f}]" for k in keys
        ]
        lines.append(
            f"| {names[r['arch']]} | {r['heldout_fvu']:.3f} | {r['dead_fraction']:.1%} | "
            + " | ".join(cells)
            + f" | {r['seconds']} |"
        )
    if "concepts" in rows[0]:
        lines += [
            "",
            f"the same dictionaries spliced in on {args.concepts} `concepts:heldout` "
            "sentences (text unlike the training store):",
            "",
            "| dictionary | fidelity `fvu` | `recovered_vs_zero` |",
            "|---|---|---|",
        ]
        for r in rows:
            f, z = r["concepts"]["fvu"], r["concepts"]["recovered_vs_zero"]
            lines.append(f"| {names[r['arch']]} | {f[0]:.3f} [{f[1]:.3f}, {f[2]:.3f}] | "
                         f"{z[0]:.3f} [{z[1]:.3f}, {z[2]:.3f}] |")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
