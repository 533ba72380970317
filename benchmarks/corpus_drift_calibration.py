"""Calibration of drift across data (`ps.analysis.corpus_drift`) on planted corpora.

Two corpora of planted activations (`analysis/corpus_drift_calibration.py`): 64 features on
32 neurons, 4 per neuron; 6 features fire `ratio` times more (or less) often in corpus B;
documents of 32 tokens draw their own feature rates (Gamma, CV `doc_spread`). A neuron's
voices truly differ exactly when it carries a shifted feature. Prints, per setting, the
detection rate (neurons with a true score >= 0.05 called different) and the false-positive
rate (unchanged neurons called different), exact 95% intervals, pooled over 5 seeds, and how
many seeds' summary verdicts say `effect`.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/corpus_drift_calibration.py [--sae]
"""

from __future__ import annotations

import sys
import time

from polysemy.analysis.corpus_drift_calibration import calibrate_corpus_drift

SETTINGS = [
    dict(ratio=1.0),
    dict(ratio=1.5),
    dict(ratio=2.0),
    dict(ratio=3.0),
    dict(ratio=1.0, doc_spread=1.0),
    dict(ratio=3.0, doc_spread=1.0),
]


def fmt(rate: dict) -> str:
    if rate["estimate"] is None:
        return "n/a"
    return f"{rate['estimate']:.3f} [{rate['low']:.3f}, {rate['high']:.3f}] n={rate['n']}"


def main() -> None:
    sae = "--sae" in sys.argv
    settings = [dict(ratio=1.0), dict(ratio=3.0)] if sae else SETTINGS
    print("| setting | detection | false positives | verdict 'effect' (different / mean) |")
    print("|---|---|---|---|")
    for kw in settings:
        t = time.perf_counter()
        c = calibrate_corpus_drift(seeds=5, sae=sae, **kw)
        n_diff = sum(v["different"] == "effect" for v in c.verdicts)
        n_mean = sum(v["mean_score"] == "effect" for v in c.verdicts)
        print(
            f"| {kw}{' sae' if sae else ''} | {fmt(c.detection)} | {fmt(c.false_positive)} | "
            f"{n_diff}/5, {n_mean}/5 | ({time.perf_counter() - t:.1f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
