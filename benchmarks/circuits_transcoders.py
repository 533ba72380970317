"""Circuits between two trained transcoders on MiniLM: layer 2's MLP latents -> layer 3's.

Harvests the MLP input and output of layers 2 and 3 in one pass over `pydocs`, trains a TopK
`transcoder` on each layer (input -> output), then runs `analyze_circuits` from layer 2's
latents (encoded at its MLP input, written at `encoder.layer.2.output.dense`'s output) into
layer 3's (read at `encoder.layer.3.intermediate`'s input): one attention block and two
LayerNorms between them, so `method="auto"` takes the factored path. Contexts are `pydocs`
documents after the ones the harvest read. Prints one JSON line per step and a summary:
held-out FVU of each transcoder, the top edges with their bootstrap intervals and virtual
weights, the |weight| null, the braided fraction with its interval and its shuffle null,
and (with `--ablate`) the edge-ablation check of the strongest edges against random
directions and random edges (timed apart). `--check N` also runs the autograd path on the first N
contexts and prints the largest relative gap to the factored path there. Runs on one torch
thread by default (`--threads`).

    PYTHONPATH=src python benchmarks/circuits_transcoders.py --out /tmp/tc-circuits
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

LAYERS = (2, 3)


def sites(layer: int) -> tuple[str, str]:
    return (f"encoder.layer.{layer}.intermediate.input",
            f"encoder.layer.{layer}.output.dense.output")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="scratch folder")
    parser.add_argument("--harvest-tokens", type=int, default=65_536)
    parser.add_argument("--train-tokens", type=int, default=131_072)
    parser.add_argument("--d-sae", type=int, default=1536)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--contexts", type=int, default=256)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--top", type=int, default=50)
    parser.add_argument("--ablate", type=int, default=10)
    parser.add_argument("--ablate-random", type=int, default=20)
    parser.add_argument("--check", type=int, default=8, help="contexts for autograd (0: none)")
    # One thread: on the shared 2-core machine under load, two torch threads made this run
    # 4x slower end to end (8.6 min against 2.0 min; 100x on the circuits step alone).
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import polysemy as ps
    from polysemy.activations.harvest import HarvestConfig, harvest
    from polysemy.analysis.circuits import analyze_circuits
    from polysemy.analysis.edge_ablation import ablate_edges
    from polysemy.corpora import open_corpus

    t_all = time.perf_counter()
    print(json.dumps({"machine": platform.processor() or platform.machine(),
                      "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
                      "torch": torch.__version__}), flush=True)  # fmt: skip
    loaded = ps.load_model("minilm")
    stores = args.out / "stores"
    every = tuple(s for layer in LAYERS for s in sites(layer))
    t0 = time.perf_counter()
    config = HarvestConfig(sites=every, tokens=args.harvest_tokens, dtype="float32")
    harvest(loaded, open_corpus("pydocs", seed=0), config, out=stores, force=True)
    used = int(ps.ActivationStore(stores / every[0]).doc.max())  # type: ignore[union-attr]
    print(json.dumps({"step": "harvest", "tokens": args.harvest_tokens,
                      "seconds": round(time.perf_counter() - t0, 1)}), flush=True)  # fmt: skip
    tcs = []
    for layer in LAYERS:
        t0 = time.perf_counter()
        site_in, site_out = sites(layer)
        run = ps.train_sae(stores / site_in, target=stores / site_out, arch="transcoder",
                           d_sae=args.d_sae, k=args.k, tokens=args.train_tokens,
                           batch_size=1024, lr=1e-3, out=args.out / f"tc{layer}", force=True,
                           progress=False)  # fmt: skip
        tcs.append(ps.load_sae(args.out / f"tc{layer}"))
        print(json.dumps({"step": f"train layer {layer}", "heldout_fvu": round(run.fvu, 4),
                          "dead_fraction": round(run.dead_fraction, 4),
                          "seconds": round(time.perf_counter() - t0, 1)}), flush=True)  # fmt: skip
    # Contexts: documents after the last one the harvest read.
    later = open_corpus("pydocs", seed=0).take(used + 24 + 6 * args.contexts)[used + 24 :]
    docs = [d for d in later if len(d) > 200][: args.contexts]
    options = dict(examples=len(docs), seq_len=args.seq_len, top=args.top, top_k=8,
                   batch_size=16)  # fmt: skip
    t0 = time.perf_counter()
    result = analyze_circuits(loaded, tcs[0], tcs[1], docs, **options)
    seconds = time.perf_counter() - t0
    s = result.summary()
    top = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in e.items()
            if k in ("up", "down", "weight", "virtual", "contexts", "verdict", "braided")}
           | {"ci": [round(e["ci"]["low"], 4), round(e["ci"]["high"], 4)]}
           for e in s["edges"][:10]]  # fmt: skip
    braids = s["braids"]
    row = {
        "step": "circuits",
        "method": s["method"],
        "site_up": s["site_up"],
        "site_down": s["site_down"],
        "contexts": s["contexts"],
        "seconds": round(seconds, 1),
        "top_edges": top,
        "null_abs_weight": {k: round(v, 5) for k, v in s["null"]["quantiles"].items()},
        "edges_decided": sum(e["verdict"] == "effect" for e in s["edges"]),
        "braided_fraction": braids.get("braided_fraction"),
        "braided_ci": braids.get("ci"),
        "braided_null_ci": braids.get("null_ci"),
    }
    print(json.dumps(row), flush=True)
    if args.ablate:  # the causal check of the strongest edges, in the real model
        t0 = time.perf_counter()
        chosen = [(e["up"], e["down"]) for e in s["edges"][: args.ablate]]
        ab = ablate_edges(loaded, tcs[0], tcs[1], docs, chosen, ablate_random=args.ablate_random,
                          resamples=1000, **options)  # fmt: skip
        weights = torch.tensor([e["weight"] for e in s["edges"][: args.ablate]])
        effects = ab.effects.mean(1).float()
        print(json.dumps({
            "step": "ablation", "n_edges": len(chosen), "random": args.ablate_random,
            "seconds": round(time.perf_counter() - t0, 1),
            "causal_fraction": ab.causal_fraction.estimate,
            "ci": [round(ab.causal_fraction.low, 3), round(ab.causal_fraction.high, 3)],
            "causal_fraction_random_edges": ab.causal_fraction_edges.estimate,
            "effect_vs_weight": [[round(float(x), 4), round(float(w), 4)]
                                 for x, w in zip(effects, weights, strict=True)],
            "relative_gap": round(float((effects - weights).abs().sum() / weights.abs().sum()), 4),
        }), flush=True)  # fmt: skip
    if args.check:
        sub = dict(options, examples=min(args.check, len(docs)))
        t0 = time.perf_counter()
        fa = analyze_circuits(loaded, tcs[0], tcs[1], docs, **sub)
        t_f = time.perf_counter() - t0
        t0 = time.perf_counter()
        au = analyze_circuits(loaded, tcs[0], tcs[1], docs, method="autograd", **sub)
        t_a = time.perf_counter() - t0
        gap = float((fa.top_weight - au.top_weight).abs().max() / au.top_weight.abs().max())
        print(json.dumps({"step": "check", "contexts": sub["examples"],
                          "factored_seconds": round(t_f, 1), "autograd_seconds": round(t_a, 1),
                          "max_relative_gap": gap,
                          "same_top_up": bool(torch.equal(fa.top_up, au.top_up))}),
              flush=True)  # fmt: skip
    print(json.dumps({"total_seconds": round(time.perf_counter() - t_all, 1)}), flush=True)


if __name__ == "__main__":
    main()
