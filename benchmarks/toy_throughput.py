"""Toy-model training throughput: polysemy's engine against a plain reference, same run.

The reference is the common way to write it (as in the paper's notebook and ARENA): autograd,
einsum forward, `torch.optim.Adam` over the stacked [n_instances, n_hidden, n_features]
tensor, fresh `torch.rand` data per instance. Both run the same configurations with one torch
thread, interleaved in slices so that load from other processes hits both alike; the figure
of merit is instance-steps per second of *process CPU time* (robust on a shared machine),
with wall-clock figures alongside.

Then it checks that the two agree: both train the n=20, m=5 sweep (linear and relu-output)
for --agree-steps steps and their final losses, on the same fresh evaluation samples, must
agree within tolerance; the linear model's must also match the closed form.

    .venv/bin/python benchmarks/toy_throughput.py            # ~4 minutes on 2 busy cores
    .venv/bin/python benchmarks/toy_throughput.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from polysemy.toy import theory
from polysemy.toy.data import FeatureSampler
from polysemy.toy.model import ToyConfig, ToyParams, init_params
from polysemy.toy.trainer import _Engine, evaluate_loss, lr_at, train_toy

SWEEP = (0.0, 0.7, 0.9, 0.97, 0.99, 0.997, 0.999)


class Reference:
    """Plain autograd training, written the common way."""

    def __init__(self, cfg: ToyConfig, seed: int = 0) -> None:
        self.cfg = cfg
        g = torch.Generator().manual_seed(seed)
        p = init_params(cfg.model, cfg.n_instances, cfg.n_features, cfg.n_hidden, generator=g)
        self.W = torch.nn.Parameter(p.W.clone())
        self.b = torch.nn.Parameter(p.b_final.clone())
        self.opt = torch.optim.Adam([self.W, self.b], lr=cfg.lr)
        self.p = torch.tensor(cfg.density).view(-1, 1, 1)
        self.imp = torch.tensor(cfg.importance).unsqueeze(1)  # (I, 1, n)
        self.gen = torch.Generator().manual_seed(seed + 1)
        self.step_count = 0

    def steps(self, k: int) -> None:
        cfg, shape = self.cfg, (self.cfg.n_instances, self.cfg.batch_size, self.cfg.n_features)
        for _ in range(k):
            for group in self.opt.param_groups:
                group["lr"] = lr_at(cfg, self.step_count)
            feat = torch.rand(shape, generator=self.gen)
            x = torch.where(torch.rand(shape, generator=self.gen) < self.p, feat, 0.0)
            h = torch.einsum("ibf,ihf->ibh", x, self.W)
            out = torch.einsum("ibh,ihf->ibf", h, self.W) + self.b[:, None, :]
            if cfg.model == "relu-output":
                out = torch.relu(out)
            loss = (self.imp * (x - out) ** 2).mean(dim=(1, 2)).sum()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.step_count += 1

    def params(self) -> ToyParams:
        return ToyParams(W=self.W.detach().clone(), b_final=self.b.detach().clone())


class Ours:
    """polysemy's engine, stepped by hand so it can be interleaved with the reference."""

    def __init__(self, cfg: ToyConfig, seed: int = 0) -> None:
        self.cfg = cfg
        g = torch.Generator().manual_seed(seed)
        p = init_params(cfg.model, cfg.n_instances, cfg.n_features, cfg.n_hidden, generator=g)
        sampler = FeatureSampler(
            cfg.sparsity,
            cfg.n_features,
            shared=True,
            generator=torch.Generator().manual_seed(seed + 1),
        )
        self.engine = _Engine(cfg, p, torch.tensor(cfg.importance), sampler)
        self.step_count = 0

    def steps(self, k: int) -> None:
        for _ in range(k):
            self.engine.forward_backward()
            self.engine.adam_step(lr_at(self.cfg, self.step_count))
            self.step_count += 1


def measure(cfg: ToyConfig, total_steps: int, slices: int) -> dict[str, float]:
    """CPU and wall seconds per step of each, interleaved in `slices` slices."""
    runners = {"reference": Reference(cfg), "polysemy": Ours(cfg)}
    for r in runners.values():
        r.steps(2)  # warm-up (allocations, first-call overheads)
    cpu = dict.fromkeys(runners, 0.0)
    wall = dict.fromkeys(runners, 0.0)
    per = max(1, total_steps // slices)
    for _ in range(slices):
        for name, r in runners.items():
            c0, w0 = time.process_time(), time.perf_counter()
            r.steps(per)
            cpu[name] += time.process_time() - c0
            wall[name] += time.perf_counter() - w0
    n = per * slices
    return {
        "ref_cpu": n * cfg.n_instances / cpu["reference"],
        "ours_cpu": n * cfg.n_instances / cpu["polysemy"],
        "ref_wall": n * cfg.n_instances / wall["reference"],
        "ours_wall": n * cfg.n_instances / wall["polysemy"],
    }


def closed_form_linear(cfg: ToyConfig) -> list[float]:
    """Optimal linear loss per instance (`theory.linear_optimal_loss`)."""
    return [
        theory.linear_optimal_loss(imp, cfg.n_hidden, 1.0 - s)
        for s, imp in zip(cfg.sparsity, cfg.importance, strict=True)
    ]


def exact_linear_loss(cfg: ToyConfig, params: ToyParams) -> list[float]:
    """Expected loss of trained linear models, computed exactly, no sampling noise
    (`theory.linear_expected_loss`)."""
    return [
        theory.linear_expected_loss(params.W[i], params.b_final[i], imp, 1.0 - s)
        for i, (s, imp) in enumerate(zip(cfg.sparsity, cfg.importance, strict=True))
    ]


def agreement(steps: int) -> list[str]:
    lines = []
    ok_all = True
    for model in ("linear", "relu-output"):
        cfg = ToyConfig.sweep(model, 20, 5, SWEEP, decay=0.7, steps=steps, eval_samples=32768)
        ref = Reference(cfg)
        ref.steps(steps)
        ref_loss = evaluate_loss(cfg, ref.params())
        ours = train_toy(cfg, num_threads=1)
        ours_loss = evaluate_loss(cfg, ours.params)
        title = f"{model}: final loss per sparsity (same eval samples)"
        closed = closed_form_linear(cfg) if model == "linear" else [math.nan] * len(SWEEP)
        if model == "linear":  # exact expectations: the check is free of sampling noise
            ref_loss = torch.tensor(exact_linear_loss(cfg, ref.params()))
            ours_loss = torch.tensor(exact_linear_loss(cfg, ours.params))
            title = f"{model}: exact expected loss per sparsity"
        rel = ((ours_loss - ref_loss).abs() / ref_loss).tolist()
        lines.append(title)
        lines.append(f"  {'S':>6} {'reference':>11} {'polysemy':>11} {'rel.diff':>8}")
        for s, a, b, d, c in zip(
            SWEEP, ref_loss.tolist(), ours_loss.tolist(), rel, closed, strict=True
        ):
            extra = f"  closed form {c:.4e} (ours {b / c - 1:+.2%})" if model == "linear" else ""
            lines.append(f"  {s:>6} {a:>11.4e} {b:>11.4e} {d:>8.2%}{extra}")
        if model == "linear":
            ok = all(abs(b / c - 1) < 0.02 for b, c in zip(ours_loss.tolist(), closed, strict=True))
            ok = ok and all(
                abs(a / c - 1) < 0.02 for a, c in zip(ref_loss.tolist(), closed, strict=True)
            )
            lines.append(f"  both within 2% of the closed form: {ok}")
        else:
            # ReLU sweeps can settle in different local optima at high sparsity; compare the
            # mean relative gap and the worst one against honest bars.
            ok = sum(rel) / len(rel) < 0.10 and max(rel) < 0.30
            lines.append(f"  mean rel. diff {sum(rel) / len(rel):.2%}, max {max(rel):.2%}: {ok}")
        ok_all = ok_all and ok
    lines.append(f"results agree: {ok_all}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps, for a smoke run")
    parser.add_argument("--agree-steps", type=int, default=None, help="steps for the check")
    parser.add_argument("--skip-agreement", action="store_true", help="throughput table only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    quick = args.quick
    cases = [
        (
            "n=20 m=5 x 7 sparsities (relu-output)",
            ToyConfig.sweep("relu-output", 20, 5, SWEEP, decay=0.7),
            40 if quick else 600,
        ),
        (
            "n=200 m=20 x 20 instances (relu-output)",
            ToyConfig.sweep(
                "relu-output",
                200,
                20,
                [1 - 1 / k for k in torch.logspace(0, math.log10(20), 20).tolist()],
            ),
            4 if quick else 60,
        ),
        (
            "n=2 m=1 x 605 (phase grid, best-of-5 cells)",
            ToyConfig.sweep("relu-output", 2, 1, [0.5] * 605),
            4 if quick else 120,
        ),
        (
            "n=3 m=2 x 605 (phase grid, best-of-5 cells)",
            ToyConfig.sweep("relu-output", 3, 2, [0.5] * 605),
            4 if quick else 120,
        ),
    ]
    print(f"torch {torch.__version__}, 1 thread, CPU-time throughput (instance-steps / s)")
    header = (
        f"{'case':<46} {'reference':>10} {'polysemy':>10} {'speedup':>8}"
        f" {'ref wall':>10} {'ours wall':>10} {'wall x':>7}"
    )
    print(header)
    print("-" * len(header))
    for name, cfg, steps in cases:
        r = measure(cfg, steps, slices=4 if quick else 6)
        print(
            f"{name:<46} {r['ref_cpu']:>10,.0f} {r['ours_cpu']:>10,.0f}"
            f" {r['ours_cpu'] / r['ref_cpu']:>7.1f}x {r['ref_wall']:>10,.0f}"
            f" {r['ours_wall']:>10,.0f} {r['ours_wall'] / r['ref_wall']:>6.1f}x",
            flush=True,
        )
    if args.skip_agreement:
        return
    agree_steps = args.agree_steps or (300 if quick else 10_000)
    print(f"\nagreement after {agree_steps} steps (n=20, m=5, I_i = 0.7^i, batch 1024):")
    for line in agreement(agree_steps):
        print(line, flush=True)


if __name__ == "__main__":
    main()
