"""How fast the TopK family chooses its latents, piece by piece, against torch's own ops.

Prints, in one run and for each shape, the best of a few repeats:

    row_topk     `polysemy.sae.fast_topk.row_topk` against `torch.topk(k, dim=1)`
    flat_topk    `polysemy.sae.fast_topk.flat_topk` against `torch.topk` on the flattened
                 batch (BatchTopK keeps k x batch of batch x d_sae values)
    matmul       the encoder matmul [batch, d_in] x [d_in, d_sae]: float32 into a fresh
                 result, float32 into a reused buffer (as `scratch_pre_activations`), bfloat16
    agreement    the share of the top k chosen from the bfloat16 pre-activations that the
                 float32 ones choose too (the rest are near-ties at the k-th value)

Pre-activations are Gaussian with a per-column offset (latents differ in how often they
fire, as in a trained encoder). Check that both selections return torch's values exactly.

    .venv/bin/python benchmarks/sae_selection.py [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from polysemy.sae.fast_topk import flat_topk, row_topk


def best_ms(f: Callable[[], object], repeats: int = 5) -> float:
    f()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def preactivations(batch: int, d_sae: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, d_sae, generator=g) + 0.5 * torch.randn(d_sae, generator=g)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--d-in", type=int, default=384)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    batch = args.batch_size
    print(f"# batch {batch}, torch threads {torch.get_num_threads()}, times in ms (best of 5)")

    print("\n| row top-k: d_sae | k | torch.topk | row_topk | speed-up | exact |")
    print("|---:|---:|---:|---:|---:|---|")
    for d_sae, k in [(1536, 32), (3072, 32), (3072, 64), (6144, 32), (12288, 64), (16384, 128)]:
        pre = preactivations(batch, d_sae)
        values, idx = row_topk(pre, k)
        exact = torch.equal(
            values.sort(dim=1).values, pre.topk(k, dim=1).values.sort(dim=1).values
        ) and torch.equal(pre.gather(1, idx), values)
        ref = best_ms(lambda pre=pre, k=k: pre.topk(k, dim=1, sorted=False))
        ours = best_ms(lambda pre=pre, k=k: row_topk(pre, k))
        print(f"| {d_sae} | {k} | {ref:.1f} | {ours:.1f} | {ref / ours:.2f}x | {exact} |")

    print("\n| flat top-k: d_sae | k x batch | torch.topk | flat_topk | speed-up | exact |")
    print("|---:|---:|---:|---:|---:|---|")
    for d_sae, k in [(3072, 32), (6144, 64)]:
        flat = torch.relu(preactivations(batch, d_sae)).reshape(-1)
        n_keep = k * batch
        values, idx = flat_topk(flat, n_keep, row_length=d_sae)
        exact = torch.equal(
            values.sort().values, flat.topk(n_keep).values.sort().values
        ) and torch.equal(flat[idx], values)
        ref = best_ms(lambda flat=flat, n=n_keep: flat.topk(n, sorted=False))
        ours = best_ms(lambda flat=flat, n=n_keep, d=d_sae: flat_topk(flat, n, row_length=d))
        print(f"| {d_sae} | {n_keep} | {ref:.1f} | {ours:.1f} | {ref / ours:.2f}x | {exact} |")

    print(
        "\n| encoder matmul: d_sae | float32, fresh result | float32, reused buffer | bfloat16 "
        "| bfloat16 speed-up over reused | top-32 agreement |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, args.d_in, generator=g)
    x16 = x.bfloat16()
    for d_sae in (3072, 12288):
        W = torch.randn(args.d_in, d_sae, generator=g) / args.d_in**0.5
        b = 0.5 * torch.randn(d_sae, generator=g)
        out32 = torch.empty(batch, d_sae)
        out16 = torch.empty(batch, d_sae, dtype=torch.bfloat16)
        W16, b16 = W.bfloat16(), b.bfloat16()
        fresh = best_ms(lambda W=W, b=b: torch.addmm(b, x, W))
        f32 = best_ms(lambda W=W, b=b, o=out32: torch.addmm(b, x, W, out=o))
        bf16 = best_ms(lambda W=W16, b=b16, o=out16: torch.addmm(b, x16, W, out=o))
        chosen32 = row_topk(torch.addmm(b, x, W), 32)[1]
        chosen16 = row_topk(torch.addmm(b16, x16, W16), 32)[1]
        mask32 = torch.zeros(batch, d_sae, dtype=torch.bool).scatter_(1, chosen32, True)
        mask16 = torch.zeros(batch, d_sae, dtype=torch.bool).scatter_(1, chosen16, True)
        agreement = float((mask32 & mask16).sum()) / chosen32.numel()
        print(
            f"| {d_sae} | {fresh:.1f} | {f32:.1f} | {bf16:.1f} | {f32 / bf16:.1f}x "
            f"| {agreement:.4f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
