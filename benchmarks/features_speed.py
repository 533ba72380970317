"""Speed of `analyze_features`' streaming pass against a plain dense reference loop.

    python benchmarks/features_speed.py [--rows 1000000] [--d-sae 24576] [--k 32] [--d-in 64]

The store is synthetic (no texts); the SAE is a randomly initialised TopK SAE (speed does not
depend on training). The reference loop encodes densely and merges top examples with
`torch.topk` over [d_sae, best + batch] each batch, and counts density: the obvious code.
Both run in this process on the same data; their ratio is the comparable figure.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import torch


def reference(sae, store, rows: int, batch: int, n: int) -> float:
    t0 = time.perf_counter()
    best = torch.full((sae.d_sae, n), -torch.inf)
    fired = torch.zeros(sae.d_sae)
    with torch.no_grad():
        for a in range(0, rows, batch):
            z = sae.encode(store.read(a, min(a + batch, rows)))  # (batch, d_sae)
            fired += (z > 0).sum(0)
            best = torch.cat([best, z.t()], 1).topk(n, dim=1).values
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--d-sae", type=int, default=24_576)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--d-in", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=4096)
    args = p.parse_args()
    from polysemy.activations.store import ActivationStore
    from polysemy.analysis.features import analyze_features
    from polysemy.sae import SAEConfig, build_sae
    from polysemy.synth import SynthConfig, write_synth_store

    with tempfile.TemporaryDirectory() as tmp:
        cfg = SynthConfig(n_features=4 * args.d_in, d_in=args.d_in, active=8, tokens=args.rows)
        write_synth_store(f"{tmp}/s", cfg)
        store = ActivationStore(f"{tmp}/s")
        sae = build_sae(SAEConfig(arch="topk", d_in=args.d_in, d_sae=args.d_sae, k=args.k))
        sae.eval()
        t0 = time.perf_counter()
        r = analyze_features(sae, store, texts=False, rows=args.rows, batch_size=args.batch_size)
        ours = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        ref = reference(sae, store, args.rows, args.batch_size, 10)
    print(
        f"rows {args.rows}, d_in {args.d_in}, d_sae {args.d_sae}, k {args.k}, "
        f"threads {torch.get_num_threads()}: analyze_features {ours:.1f}s (pass {r.seconds:.1f}s, "
        f"co-occurrence {r.cooccurrence}), peak RSS {peak:.2f} GiB; reference loop (density + "
        f"top-k only) {ref:.1f}s; ratio {ref / ours:.2f}x"
    )


if __name__ == "__main__":
    main()
