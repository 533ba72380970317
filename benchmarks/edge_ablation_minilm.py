"""Edge ablation on MiniLM: how well the linear (frozen) edge predicts the real ablation, with
two MLPs between the sites and with none.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/edge_ablation_minilm.py [--contexts 16]

The SAEs are random TopK SAEs (k 32, `circuits_speed.random_sae`): their features mean
nothing, but how far the model between two sites is from its linearisation does not depend
on what the directions mean. Two pairs of sites, the same `pydocs` sentences:
- `encoder.layer.1.output` -> `encoder.layer.3.output`: two attention blocks, two MLPs and
  four LayerNorms between;
- `encoder.layer.3.intermediate.intermediate_act_fn.output` (the MLP's neurons, 1536 wide)
  -> `encoder.layer.3.output`: the MLP's output projection and one LayerNorm, no MLP.
Printed per pair: the ablated edges' causal fraction against random directions and against
random edges, Spearman of
linear weight and ablation effect (over edges, and over (edge, sentence) pairs), the relative
gap sum |effect - weight| / sum |weight|, and seconds.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from circuits_speed import random_sae


def _ci(d: dict | None) -> str:  # type: ignore[type-arg]
    return "n/a" if d is None else f"{d['estimate']:.3f} [{d['low']:.3f}, {d['high']:.3f}]"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--contexts", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--d-sae", type=int, default=2048)
    p.add_argument("--features", type=int, default=32)
    p.add_argument("--ablate", type=int, default=10)
    p.add_argument("--random", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from polysemy.analysis.circuits import analyze_circuits
    from polysemy.corpora import open_corpus
    from polysemy.models import load_model

    loaded = load_model("minilm")
    docs = open_corpus("pydocs").take(4 * args.contexts)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch threads {torch.get_num_threads()}")  # fmt: skip
    pairs = (
        ("two MLPs between", "encoder.layer.1.output", 384),
        ("no MLP between", "encoder.layer.3.intermediate.intermediate_act_fn.output", 1536),
    )
    down = random_sae(384, args.d_sae, "encoder.layer.3.output", 1)
    for name, site, width in pairs:
        up = random_sae(width, args.d_sae, site, 0)
        t0 = time.perf_counter()
        r = analyze_circuits(
            loaded, up, down, docs, examples=args.contexts, seq_len=args.seq_len,
            features_down=tuple(range(args.features)), top_k=4, top=args.ablate,
            resamples=200, shuffles=5, ablate=args.ablate, ablate_random=args.random,
        )  # fmt: skip
        seconds = time.perf_counter() - t0
        ab = r.ablation
        assert ab is not None
        agree = ab["agreement"]
        print(f"{name}: {site} -> encoder.layer.3.output, d_sae {args.d_sae}, "
              f"{args.contexts} sentences of <= {args.seq_len} tokens, top {args.ablate} of "
              f"{args.features} downstream features' edges, {args.random} random directions "
              "and edges")  # fmt: skip
        print(f"  causal: {ab['causal_fraction']:.0%} [{ab['ci']['low']:.0%}, "
              f"{ab['ci']['high']:.0%}] of {ab['n_edges']}")  # fmt: skip
        re = ab["random_edges"]
        print(f"  causal against random edges: {re['causal_fraction']:.0%} "
              f"[{re['ci']['low']:.0%}, {re['ci']['high']:.0%}]")  # fmt: skip
        print(f"  Spearman(weight, effect) over edges: {_ci(agree['spearman_edges'])}")
        print(f"  Spearman over (edge, sentence) pairs: {_ci(agree['spearman_contexts'])}")
        print(f"  relative gap: {agree['relative_gap']:.3f}")
        for e in ab["edges"][:5]:
            print(f"    {e['up']:>5} -> {e['down']:<4} weight {e['weight']:+.3g}  effect "
                  f"{e['effect']:+.3g} [{e['ci']['low']:+.3g}, {e['ci']['high']:+.3g}]  band "
                  f"+-{e['null']['band']:.3g}  {e['verdict']}; random-edge band "
                  f"+-{e['null_edges']['band']:.3g}  {e['verdict_edges']}")  # fmt: skip
        print(f"  {seconds:.1f} s (circuits, braids and ablation)")


if __name__ == "__main__":
    main()
