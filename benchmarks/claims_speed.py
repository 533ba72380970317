"""Time `check_claims` on MiniLM: 20 claims (14 neurons of layer 3's MLP, 6 probe directions
on layer 3's output) on 2,000 train-split sentences + 1,000 shifted + the twins of 300, with
the ablation of every neuron (64 sentences, 19 random directions) on.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/claims_speed.py [--sentences 2000]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from polysemy.analysis.claims import check_claims
from polysemy.models import load_model

MLP = "encoder.layer.3.intermediate.intermediate_act_fn.output"
RESID = "encoder.layer.3.output"
NEURONS = [(232, "question"), (318, "negation"), (126, "number"), (697, "color"),
           (1415, "tense"), (1166, "animal"), (799, "profession"), (288, "emotion"),
           (1525, "sport"), (1518, "time"), (750, "plurality"), (318, "tense"),
           (1166, "food"), (1000, "sport")]  # fmt: skip
DIRECTIONS = [("tense", "tense"), ("negation", "negation"), ("question", "question"),
              ("plurality", "plurality"), ("tense", "plurality"),
              ("negation", "sport")]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ablation-examples", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    claims = {"claim": [{"neuron": n, "concept": c, "site": MLP} for n, c in NEURONS]
              + [{"direction": d, "concept": c, "site": RESID} for d, c in DIRECTIONS]}  # fmt: skip
    loaded = load_model("minilm")
    options = {"sentences": args.sentences, "shifted": args.sentences // 2,
               "ablation_examples": args.ablation_examples}  # fmt: skip
    # The reference, in the same run: one claim alone (what one more claim would cost if
    # every claim ran its own pass over the sentences).
    t0 = time.perf_counter()
    one = check_claims({"claim": claims["claim"][:1]}, model=loaded, **options)
    single = time.perf_counter() - t0
    print(f"1 claim alone: {single:.1f} s, stages (s): {one.seconds}")
    t0 = time.perf_counter()
    result = check_claims(claims, model=loaded, **options)
    seconds = time.perf_counter() - t0
    print(
        f"{len(result.claims)} claims, {args.sentences} + {args.sentences // 2} sentences "
        f"+ twins of 300, ablation on {args.ablation_examples}: {seconds:.1f} s "
        f"({seconds / len(result.claims):.1f} s per claim), "
        f"{args.threads} thread(s), load {os.getloadavg()[0]:.1f}, {platform.machine()}"
    )
    print("verdicts:", result.counts(), "stages (s):", result.seconds)
    print(f"20 claims together vs 20 x 1 claim alone: {seconds / (20 * single):.2f}x the time")


if __name__ == "__main__":
    main()
