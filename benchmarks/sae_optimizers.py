"""Which optimizer to train an SAE with: held-out quality of the *saved* weights and speed.

On a Zipf-frequency synthetic store with correlated groups of features (`polysemy synth`:
default 4096 features in 256 dims, frequency decay 1, groups of 4 firing together, about
20 active per row) it trains the same TopK SAE (d_sae 4096, k 25, batch 1024) with each
optimizer at its default learning rate (`sae.config.default_lr`), on the same rows in the
same order, and prints for each the figures the trainer reports (the saved weights on the
store's held-out rows), checked against `load_sae` + `evaluate` of the checkpoint, and the
training rate. One torch thread, so the rates compare on a shared machine.

    .venv/bin/python benchmarks/sae_optimizers.py                    # ~10 minutes on 2 cores
    .venv/bin/python benchmarks/sae_optimizers.py --tokens 200000    # a quick look
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import torch

from polysemy.activations.store import ActivationStore
from polysemy.analysis.reconstruction import evaluate
from polysemy.sae import SAEConfig, TrainConfig, load_sae, train_sae
from polysemy.sae.config import OPTIMIZERS
from polysemy.synth import SynthConfig, write_synth_store


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-features", type=int, default=4096)
    p.add_argument("--d-in", type=int, default=256)
    p.add_argument("--active", type=float, default=20.0)
    p.add_argument("--d-sae", type=int, default=4096)
    p.add_argument("--k", type=int, default=25)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--tokens", type=int, default=1_000_000, help="training rows per optimizer")
    p.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", default=None, help="folder for the store and SAEs (default: temp)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        acts = work / "acts"
        synth = SynthConfig(
            n_features=args.n_features,
            d_in=args.d_in,
            active=args.active,
            # 10% more rows than one pass: the store keeps its last rows as the held-out split.
            tokens=int(args.tokens / 0.9) + args.batch_size,
            frequency_decay=1.0,
            group_size=4,
            correlation=0.5,
            seed=0,
        )
        if not acts.exists():
            write_synth_store(acts, synth)
        store = ActivationStore(acts)
        print(f"# store: {synth}", flush=True)
        print(f"# machine: {platform.machine()}, {platform.processor() or '?'}, torch "
              f"{torch.__version__}, {args.threads} thread(s)", flush=True)  # fmt: skip
        rows = []
        for optimizer in args.optimizers.split(","):
            config = SAEConfig(arch="topk", d_in=args.d_in, d_sae=args.d_sae, k=args.k)
            train = TrainConfig(tokens=args.tokens, batch_size=args.batch_size, optimizer=optimizer)
            out = work / f"sae-{optimizer}"
            result = train_sae(store, config, train, out=out, force=True)
            again = evaluate(load_sae(out), store, split="heldout")
            assert abs(again.fvu - result.fvu) <= 1e-6 * max(1.0, again.fvu), (again, result)
            row = {
                "optimizer": optimizer,
                "lr": train.resolved_lr(args.d_sae),
                "heldout_fvu": result.fvu,
                "dead": result.dead_fraction,
                "l0": result.l0,
                "train_window_fvu": result.train_window["fvu"],
                "train_window_dead": result.train_window["dead_fraction"],
                "tokens_per_s": result.tokens_per_s,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
        print()
        print("| optimizer | lr | held-out FVU (saved) | dead (saved) | L0 | train-window FVU "
              "| train-window dead | tok/s |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['optimizer']} | {r['lr']:.3g} | {r['heldout_fvu']:.4f} | {r['dead']:.1%} "
                f"| {r['l0']:.1f} | {r['train_window_fvu']:.4f} | {r['train_window_dead']:.1%} "
                f"| {r['tokens_per_s']:,.0f} |"
            )


if __name__ == "__main__":
    main()
