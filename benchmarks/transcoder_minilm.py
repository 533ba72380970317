"""Transcoders on MiniLM layer 3: held-out FVU and fidelity with the MLP replaced.

Harvests the MLP's input and output in one pass from `pydocs`, trains a `transcoder`, a
`skip-transcoder` (input -> output) and a TopK SAE on the output itself (output -> output)
with the same width, k and budget, then splices each in (`analyze_fidelity`) on `pydocs`
documents the harvest never reached. Prints one JSON line per dictionary. The figures of
docs/transcoders.md came from the same settings (these defaults) run step by step by hand;
this script is that run in one place, smoke-tested with tiny settings, not itself the
source of the table.

    PYTHONPATH=src python benchmarks/transcoder_minilm.py --out /tmp/tc-bench
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
    args = parser.parse_args()

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
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
