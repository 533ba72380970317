"""TopK training speed of polysemy's trainer against a plain loop and the matmul bound.

Same in-memory activations (sparse combinations of random directions, MiniLM's width), same
width, k and batch, in one run:

    bound          the encoder matmul alone ([batch, d_in] x [d_in, d_sae]): no TopK SAE
                   trains faster than its encoder forward
    polysemy       `train_sae` with the sparse gather path (the default)
    polysemy fp32 selection  the same with `selection_dtype="float32"` (no bfloat16 matmul)
    polysemy dense `train_sae` with `sparse_decode=False` (dense decoder, autograd encoder)
    plain          a TopK loop written the common way (dense decoder, autograd, Adam)
    batchtopk, jumprelu, relu   the other architectures' `train_sae` at the same width

Every rate is also printed as a ratio to the plain loop measured in the same run, because the
shared 2-core machine makes absolute figures swing.

    .venv/bin/python benchmarks/sae_speed.py [--steps 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from polysemy.sae import SAEConfig, TrainConfig, train_sae
from sae_throughput import matmul_bound  # this folder: the peer benchmark's bound, measured alike


def plain_loop(x: torch.Tensor, d_sae: int, k: int, batch: int, steps: int) -> float:
    d_in = x.shape[1]
    g = torch.Generator().manual_seed(0)
    W_enc = (torch.randn(d_in, d_sae, generator=g) / math.sqrt(d_in)).requires_grad_()
    W_dec = (torch.randn(d_sae, d_in, generator=g) / math.sqrt(d_in)).requires_grad_()
    b_enc = torch.zeros(d_sae, requires_grad=True)
    b_dec = torch.zeros(d_in, requires_grad=True)
    opt = torch.optim.Adam([W_enc, W_dec, b_enc, b_dec], lr=4e-4)
    t0 = time.perf_counter()
    for s in range(steps):
        xb = x[(s * batch) % (len(x) - batch) :][:batch]
        pre = (xb - b_dec) @ W_enc + b_enc
        vals, idx = pre.topk(k, dim=1)
        z = torch.zeros_like(pre).scatter(1, idx, vals.relu())
        loss = (z @ W_dec + b_dec - xb).pow(2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d-in", type=int, default=384)
    p.add_argument("--d-sae", type=int, default=3072)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    rows = args.batch_size * 8
    x = (torch.rand(rows, 4 * args.d_in, generator=g) < 0.01).float() @ torch.randn(
        4 * args.d_in, args.d_in, generator=g
    )
    tokens = args.steps * args.batch_size
    _, bound = matmul_bound(args.d_in, args.d_sae, args.batch_size)
    rates = {"bound (encoder matmul)": bound}
    rates["plain"] = plain_loop(x, args.d_sae, args.k, args.batch_size, args.steps)
    variants: dict[str, tuple[dict[str, object], dict[str, object]]] = {
        "polysemy": ({"arch": "topk", "k": args.k}, {}),
        "polysemy fp32 selection": ({"arch": "topk", "k": args.k}, {"selection_dtype": "float32"}),
        "polysemy dense": ({"arch": "topk", "k": args.k, "sparse_decode": False}, {}),
        "batchtopk": ({"arch": "batchtopk", "k": args.k}, {}),
        "jumprelu": ({"arch": "jumprelu"}, {}),
        "relu": ({"arch": "relu"}, {}),
    }
    for name, (sae_kw, train_kw) in variants.items():
        cfg = SAEConfig(d_in=args.d_in, d_sae=args.d_sae, **sae_kw)  # type: ignore[arg-type]
        train = TrainConfig(
            tokens=tokens,
            batch_size=args.batch_size,
            init_sample_rows=4096,
            **train_kw,  # type: ignore[arg-type]
        )
        rates[name] = train_sae(x, cfg, train).tokens_per_s
    print(
        f"# d_in {args.d_in}, d_sae {args.d_sae}, k {args.k}, batch {args.batch_size}, "
        f"{args.steps} steps, torch threads {torch.get_num_threads()}"
    )
    print("| loop | tok/s | vs plain | of bound |")
    print("|---|---:|---:|---:|")
    bound = rates["bound (encoder matmul)"]
    for name, rate in rates.items():
        print(f"| {name} | {rate:,.0f} | {rate / rates['plain']:.2f}x | {rate / bound:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
