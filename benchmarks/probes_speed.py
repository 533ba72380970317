"""How fast the probes fit: 1e5 rows x 1,536 neurons (a MiniLM MLP site's width).

Rows are Gaussian with a planted label (a sparse direction plus a strong neuron), so every
probe has something to find. Times, each measured in the same run:

- ranking: Cohen's d of every neuron (one pass) — what picks `neuron` and `neurons`;
- neuron / neurons: the 1- and k-unit probes (L-BFGS on standardised inputs);
- direction: the probe on all 1,536 neurons;
- analyze_probes: the whole analysis (neuron, neurons, direction, each also refitted on the
  control task, scored with bootstrap intervals over documents).

    PYTHONPATH=src python benchmarks/probes_speed.py --rows 100000 --width 1536
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from polysemy.analysis.logistic import LogisticProbe, mean_difference
from polysemy.analysis.probe_data import LabelledRows
from polysemy.analysis.probes import analyze_probes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--width", type=int, default=1536)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.machine()}, device {args.device}"
    )
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.rows, args.width, generator=g)
    w = torch.zeros(args.width)
    w[torch.randperm(args.width, generator=g)[:32]] = torch.randn(32, generator=g)
    y = (x @ w + 2 * x[:, 7] + 0.5 * torch.randn(args.rows, generator=g)) > 0
    x = x.to(args.device)
    y_dev = y.to(args.device)

    def timed(name: str, fn) -> object:  # type: ignore[no-untyped-def]
        if args.device != "cpu":
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        if args.device != "cpu":
            torch.cuda.synchronize()
        print(f"  {name:<28} {time.perf_counter() - t:7.2f} s")
        return out

    # Warm-up: the first L-BFGS fit in a process pays torch's one-off setup (about a second).
    LogisticProbe().fit(x[:1000, :4], y_dev[:1000])
    print(f"{args.rows} rows x {args.width} neurons")
    score = timed("ranking (Cohen's d)", lambda: mean_difference(x, y_dev))
    top = score.argsort(descending=True)[: args.k]  # type: ignore[union-attr]
    p1 = timed("neuron probe", lambda: LogisticProbe().fit(x[:, top[:1]], y_dev))
    pk = timed(f"neurons probe (k={args.k})", lambda: LogisticProbe().fit(x[:, top], y_dev))
    pd = timed("direction probe", lambda: LogisticProbe().fit(x, y_dev))
    for name, p, cols in (("neuron", p1, x[:, top[:1]]), ("neurons", pk, x[:, top]),
                          ("direction", pd, x)):  # fmt: skip
        print(f"  {name:<10} train accuracy {p.score(cols, y_dev):.3f}, "  # type: ignore[attr-defined]
              f"L-BFGS iterations {p.n_iter_}")  # type: ignore[attr-defined]  # fmt: skip
    rows = LabelledRows(x.cpu(), y, torch.randint(0, 5000, (args.rows,), generator=g),
                        torch.arange(args.rows) // 12, "gaussian")  # fmt: skip
    timed(
        "analyze_probes (3 kinds)",
        lambda: analyze_probes(
            rows, kinds=("neuron", "neurons", "direction"), resamples=500, device=args.device
        ),
    )


if __name__ == "__main__":
    main()
