"""Read throughput of the activation store against the raw file read speed, in one run.

Writes a store of `--rows` random rows (default 1M x 384, float16: what `polysemy harvest`
writes for MiniLM), then times, each over the whole training split:
  raw        reading every shard file sequentially into a buffer (the reference: disk or page
             cache speed, no parsing);
  ordered    `store.batches(..., shuffle=False)` as float32 tensors;
  shuffled   `store.batches(..., shuffle=True)` as float32 tensors (what SAE training uses);
  rank 0/2   shuffled, rank 0 of 2 (half the rows);
  nonfinite  `find_nonfinite_rows(store)` (the check the trainer runs before training).
GB/s counts stored bytes (rows * d_in * itemsize); ratios are against `raw` measured in the
same run, so they are comparable across machines and load. Files stay in the page cache
(the machine has far more memory than the store), so `raw` is a memory-bandwidth bound:
this measures our overhead, not the disk.

    .venv/bin/python benchmarks/store_read.py [--rows 1000000] [--d-in 384] [--dtype float16]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from polysemy.activations.store import (
    DTYPES,
    ActivationStore,
    StoreWriter,
    find_nonfinite_rows,
)


def write_store(path: Path, rows: int, d_in: int, dtype: str) -> float:
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(0)
    with StoreWriter(path, d_in=d_in, dtype=dtype, source={"model": "bench"}) as w:
        for a in range(0, rows, 50_000):
            w.append(torch.randn(min(50_000, rows - a), d_in, generator=g))
    return time.perf_counter() - t0


def raw_read(path: Path) -> int:
    total = 0
    buf = bytearray(64 << 20)
    view = memoryview(buf)
    for f in sorted(path.glob("shard-*.safetensors")):
        with f.open("rb", buffering=0) as fh:
            while n := fh.readinto(view):
                total += n
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--d-in", type=int, default=384)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float16")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="best of N for each reading")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="store-bench-"))
    try:
        path = tmp / "store"
        secs = write_store(path, args.rows, args.d_in, args.dtype)
        store = ActivationStore(path, heldout_fraction=0.0)
        itemsize = DTYPES[args.dtype].itemsize
        total_bytes = store.rows * store.d_in * itemsize
        print(
            f"store: {store.rows} rows x {store.d_in} {args.dtype}, {store.n_shards} shards, "
            f"{total_bytes / 1e9:.2f} GB stored; written in {secs:.1f}s "
            f"({total_bytes / 1e9 / secs:.2f} GB/s)"
        )
        raw_read(path)  # warm the page cache

        def timed(fn) -> float:
            best = float("inf")
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t0)
            return best

        def consume(**kw) -> tuple[int, float]:
            rows = 0

            def run() -> None:
                nonlocal rows
                rows = 0
                for b in store.batches(args.batch_size, **kw):
                    rows += len(b)

            t = timed(run)
            return rows, t

        results = {}
        raw_t = timed(lambda: raw_read(path))
        results["raw file read"] = (store.rows, raw_t)
        results["ordered batches"] = consume(shuffle=False)
        results["shuffled batches"] = consume(shuffle=True, seed=1)
        results["shuffled, rank 0 of 2"] = consume(shuffle=True, seed=1, rank=0, world_size=2)
        results["nonfinite check"] = (store.rows, timed(lambda: find_nonfinite_rows(store)))
        raw_gbs = total_bytes / 1e9 / raw_t
        print(f"{'reading':<24}{'rows/s':>12}{'GB/s':>8}{'vs raw':>8}")
        for name, (rows, t) in results.items():
            gbs = rows * store.d_in * itemsize / 1e9 / t
            print(f"{name:<24}{rows / t:>12,.0f}{gbs:>8.2f}{gbs / raw_gbs:>8.2f}")
        print(
            f"(batch {args.batch_size}, float32 tensors out, {args.threads} torch threads, "
            f"best of {args.repeats}; rows/s of a TopK SAE at d_in 384: ~20-80k)"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
