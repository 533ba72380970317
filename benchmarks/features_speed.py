"""Speed of `analyze_features` (and `analyze_geometry`) at a large dictionary, with a plain
dense reference loop for comparison.

    python benchmarks/features_speed.py [--rows 262144] [--d-sae 24576] [--k 32] [--d-in 64]
        [--geometry] [--reference] [--threads N]

With --geometry: the features pass again keeping the codes of geometry's rows, then
`analyze_geometry` on those codes (encoded once) and on its own (encoding again), beside one
dense encoding pass over the same rows (what each of geometry's two passes cost before it
encoded once).

The store is synthetic (no texts); the SAE is a randomly initialised TopK SAE (speed does not
depend on training). Printed: the streaming pass (rows/s), the fixed per-run cost outside it
(nearest features, co-occurrence partners, spread over neurons, bootstrap), the peak
resident memory of the process, and the time at 1M rows extrapolated linearly from the
measured pass (stated as such) unless --rows is 1M. The reference loop encodes densely and
merges top examples with `torch.topk` over [d_sae, best + batch] each batch, and counts
density: the obvious code, run in the same process on the same data.
"""

from __future__ import annotations

import argparse
import os
import platform
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


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=262_144)
    p.add_argument("--d-sae", type=int, default=24_576)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--d-in", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--geometry", action="store_true", help="also time analyze_geometry")
    p.add_argument("--reference", action="store_true", help="also time the dense reference")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from polysemy.activations.store import ActivationStore
    from polysemy.analysis.features import analyze_features
    from polysemy.sae import SAEConfig, build_sae
    from polysemy.synth import SynthConfig, write_synth_store

    print(
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} cpus, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        cfg = SynthConfig(n_features=4 * args.d_in, d_in=args.d_in, active=8, tokens=args.rows)
        write_synth_store(f"{tmp}/s", cfg)
        store = ActivationStore(f"{tmp}/s")
        sae = build_sae(SAEConfig(arch="topk", d_in=args.d_in, d_sae=args.d_sae, k=args.k))
        sae.eval()
        before = peak_gib()
        t0 = time.perf_counter()
        r = analyze_features(sae, store, texts=False, rows=args.rows, batch_size=args.batch_size)
        total = time.perf_counter() - t0
        fixed = total - r.seconds
        rate = args.rows / r.seconds
        at_1m = fixed + 1_000_000 / rate
        measured = "measured" if args.rows == 1_000_000 else "extrapolated linearly"
        print(
            f"analyze_features: rows {args.rows}, d_in {args.d_in}, d_sae {args.d_sae}, "
            f"k {args.k}, batch {args.batch_size}: total {total:.1f}s = streaming pass "
            f"{r.seconds:.1f}s ({rate:,.0f} rows/s; co-occurrence {r.cooccurrence} over the "
            f"first {min(args.rows, 262_144)} rows) + fixed {fixed:.1f}s; peak RSS "
            f"{peak_gib():.2f} GiB (before: {before:.2f}); 1M rows: {at_1m:.0f}s ({measured}); "
            f"load average now {os.getloadavg()[0]:.1f}"
        )
        if args.geometry:
            from polysemy.analysis.geometry import GeometryConfig, analyze_geometry

            # Geometry reads the first max_rows (200k by default) rows; the features pass
            # keeps their codes so geometry need not encode them again.
            keep = min(args.rows, GeometryConfig().max_rows or args.rows)
            t0 = time.perf_counter()
            shared = analyze_features(
                sae, store, texts=False, rows=args.rows, batch_size=args.batch_size,
                keep_codes=keep,
            )  # fmt: skip
            t_features = time.perf_counter() - t0
            t0 = time.perf_counter()
            analyze_geometry(sae, store, split="all", codes=shared.codes)
            t_shared = time.perf_counter() - t0
            del shared
            t0 = time.perf_counter()
            analyze_geometry(sae, store, split="all")
            t_alone = time.perf_counter() - t0
            t0 = time.perf_counter()
            with torch.no_grad():  # what each of geometry's two passes cost before: dense encode
                for a in range(0, keep, args.batch_size):
                    _ = sae.encode(store.read(a, min(a + args.batch_size, keep))) > 0
            t_dense = time.perf_counter() - t0
            print(
                f"features + geometry, encoded once: features pass keeping {keep} rows' codes "
                f"{t_features:.1f}s + geometry on them {t_shared:.1f}s = "
                f"{t_features + t_shared:.1f}s\n"
                f"  geometry encoding its own rows (one sparse pass): {t_alone:.1f}s, so "
                f"features + geometry separately {total + t_alone:.1f}s "
                f"(ratio {(total + t_alone) / (t_features + t_shared):.2f}); geometry used to "
                f"encode densely twice: one dense pass over {keep} rows {t_dense:.1f}s\n"
                f"  peak RSS {peak_gib():.2f} GiB; load average {os.getloadavg()[0]:.1f}"
            )
        if args.reference:
            ref = reference(sae, store, args.rows, args.batch_size, 10)
            print(f"reference loop (dense encode, density + top-k only) {ref:.1f}s")


if __name__ == "__main__":
    main()
