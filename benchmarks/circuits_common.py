"""What `circuits_minilm.py` and `circuits_organism.py` share: the circuits run on held-out
contexts, the top-activating examples of the features at both ends of the strongest edges,
the planted calibration of the same code, and the printed table. Public library API only
(`ps.train_sae`, `ps.analysis.analyze_circuits`, `ps.analysis.analyze_features`,
`ps.analysis.calibrate_circuits` / `calibrate_braids`), so a faster `analyze_circuits`
speeds these scripts up unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any


def add_circuit_flags(
    p: argparse.ArgumentParser, *, d_sae: int, k: int, examples: int, features_down: int
) -> None:
    """Flags both scripts share: dictionary sizes, contexts, edges reported, threads."""
    p.add_argument("--out", type=Path, required=True, help="run folder (e.g. runs/...)")
    p.add_argument("--d-sae", type=int, default=d_sae, help="both SAEs (the issue: 4096)")
    p.add_argument("--k", type=int, default=k)
    p.add_argument("--harvest-tokens", type=int, default=131_072)
    p.add_argument("--train-tokens", type=int, default=262_144)
    p.add_argument("--examples", type=int, default=examples, help="held-out contexts")
    p.add_argument("--seq-len", type=int, default=64, help="tokens per context")
    p.add_argument(
        "--features-down",
        type=int,
        default=features_down,
        help="edges into the first N downstream features only (0, or d_sae or more: all)",
    )
    p.add_argument("--top", type=int, default=50, help="edges with intervals and braids")
    p.add_argument("--show", type=int, default=15, help="edges printed in the table")
    p.add_argument("--explain", type=int, default=5, help="edges whose features are shown")
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--shuffles", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)


def train_pair(store_up: Any, store_down: Any, args: argparse.Namespace) -> tuple[Any, Any]:
    """TopK SAEs on both stores (same width, k, budget); returns them loaded, with the held-out
    FVU of each in `args.fvu`."""
    import polysemy as ps

    saes, args.fvu = [], {}
    # Different seeds: two SAEs started from the same random directions would keep part of
    # that shared start after a short run, and the residual stream between the sites would
    # turn it into strong a == b edges that say nothing about the model.
    for seed, (name, store) in enumerate((("up", store_up), ("down", store_down))):
        run = ps.train_sae(store, arch="topk", d_sae=args.d_sae, k=args.k, seed=seed,
                           tokens=args.train_tokens, batch_size=1024, lr=1e-3,
                           out=args.out / "saes" / name, force=True, progress=False)  # fmt: skip
        args.fvu[name] = {"fvu": round(run.fvu, 4), "dead_fraction": round(run.dead_fraction, 4)}
        print(f"# SAE {name}: held-out fvu {run.fvu:.3f}, dead {run.dead_fraction:.1%}",
              flush=True)  # fmt: skip
        saes.append(ps.load_sae(args.out / "saes" / name))
    return saes[0], saes[1]


def _examples(features: Any, feature: int, n: int) -> list[str]:
    return [
        f"{e['activation']:.2f}: " + e.get("text", "?").replace("\n", "\\n")
        for e in features[feature]["top"][:n]
    ]


def _rate(interval: Any) -> str:
    return f"{interval.estimate:.2f} [{interval.low:.2f}, {interval.high:.2f}] (n {interval.n})"


def run_circuits(
    loaded: Any,
    sae_up: Any,
    sae_down: Any,
    contexts: list[str],
    stores: tuple[Any, Any],
    args: argparse.Namespace,
    *,
    label: str,
) -> dict[str, Any]:
    """analyze_circuits on `contexts`, features' examples on the training stores, the table
    printed and written to `args.out / "table.md"`; returns the run's figures (also written
    to `args.out / "circuits-run.json"`)."""
    import polysemy as ps

    # The planted calibration (docs/circuits.md) in the same run, so that the record of the
    # real-model numbers carries the known-truth rates of the same code beside them.
    edges_cal = ps.analysis.calibrate_circuits(seed=0)
    braids_cal = ps.analysis.calibrate_braids(seed=0)
    calibration = {
        "planted_edges_found": edges_cal.recovery.to_dict(),
        "off_support_leak": edges_cal.leak,
        "braids_true_positive": braids_cal.true_positive.to_dict(),
        "braids_false_positive": braids_cal.false_positive.to_dict(),
    }
    n = args.features_down  # 0, or at least the dictionary: every feature
    features_down = tuple(range(n)) if 0 < n < args.d_sae else ()
    t0 = time.perf_counter()
    result = ps.analysis.analyze_circuits(
        loaded, sae_up, sae_down, contexts,
        examples=args.examples, seq_len=args.seq_len, top=args.top,
        features_down=features_down, resamples=args.resamples,
        shuffles=args.shuffles, out=args.out / "analyses" / f"circuits-{label}", force=True,
        progress=True,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    examples, density = {}, {}
    for name, sae, store in (("up", sae_up, stores[0]), ("down", sae_down, stores[1])):
        feats = ps.analysis.analyze_features(
            sae, store, rows=min(65_536, len(store)), examples=5, window=6,
            out=args.out / "analyses" / f"features-{name}", force=True,
        )  # fmt: skip
        density[name] = feats.arrays["density"]
        path = args.out / "analyses" / f"features-{name}" / "examples.json"
        examples[name] = json.loads(path.read_text())

    s = result.summary()
    braids = s["braids"]
    lines = [
        f"## circuits {label}: {s['site_up']} -> {s['site_down']}",
        f"contexts {s['contexts']} (held out), seq_len {args.seq_len}, d_sae {args.d_sae}, "
        f"k {args.k}, downstream features {s['n_down']}, top_k {s['top_k']}, "
        f"{seconds:.0f} s with {args.threads} thread(s)",
        f"linearisation: {s['linearisation']}",
        f"planted calibration (seed 0, same code): parents found {_rate(edges_cal.recovery)}, "
        f"off-support leak {edges_cal.leak:.1e}; braids on shared edges "
        f"{_rate(braids_cal.true_positive)}, on unshared {_rate(braids_cal.false_positive)}",
        "",
        "| # | up a | down b | weight | 95% CI | virtual | contexts | verdict | clusters "
        "| braided |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, e in enumerate(result.edges[: args.show]):
        virtual = "-" if e["virtual"] is None else f"{e['virtual']:.3f}"
        lines.append(
            f"| {i} | {e['up']} | {e['down']} | {e['weight']:.4f} | "
            f"[{e['ci']['low']:.4f}, {e['ci']['high']:.4f}] | {virtual} | {e['contexts']} | "
            f"{e['verdict']} | {e['clusters']} | {e['braided']} |"
        )
    null = s["null"]["quantiles"]
    effects = sum(e["verdict"] == "effect" for e in result.edges)
    lines += [
        "",
        "null |weight| over every (a, b) pair computed: "
        + ", ".join(f"{k} {v:.2e}" for k, v in null.items()),
        f"top {len(result.edges)} edges: {effects} with a CI excluding 0; weakest reported "
        f"|weight| {min(abs(e['weight']) for e in result.edges):.4f}",
        f"braided_fraction {braids['braided_fraction']:.3f} "
        f"ci [{braids['ci']['low']:.3f}, {braids['ci']['high']:.3f}] (n {braids['n_edges']}) "
        f"vs shuffled-context null_ci [{braids['null_ci']['low']:.3f}, "
        f"{braids['null_ci']['high']:.3f}]",
        "",
        "### the features at both ends of the strongest edges (top activations on the "
        "training store; [[token]] is where the feature fires)",
    ]
    for i, e in enumerate(result.edges[: args.explain]):
        lines.append(f"edge {i}: up {e['up']} -> down {e['down']} (weight {e['weight']:.4f})")
        for name, f in (("up", e["up"]), ("down", e["down"])):
            # A dense feature (firing on a large share of tokens) makes a heavy edge by
            # summing over many tokens: its density says which kind of edge this is.
            lines.append(f"    {name} {f} fires on {float(density[name][f]):.1%} of tokens")
            for text in _examples(examples[name], f, 3):
                lines.append(f"    {name} {f}  {text}")
    table = "\n".join(lines)
    print(table, flush=True)
    (args.out / "table.md").write_text(table + "\n")
    figures = {
        "label": label,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch threads {args.threads}",
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "circuits_seconds": round(seconds, 1),
        "calibration": calibration,
        "summary": s,
    }
    (args.out / "circuits-run.json").write_text(json.dumps(figures, indent=1))
    return figures
