"""Report section for drift across corpora (a `corpus_drift` folder, analysis/corpus_drift.py).

The fraction of neurons singing different voices on corpus A and corpus B, and the fraction
whose dominant voice changes, each with its interval beside the half-split null's range; for
the most different neurons and the most stable one, their voices on A and on B side by side
(the SAE error as its own voice); the per-neuron score histogram against the null's. Reads
only what the analysis wrote (polysemy.analysis.corpus_drift_views).
"""

from __future__ import annotations

import itertools
from typing import Any

from polysemy.analysis.corpus_drift_views import (
    CorpusDriftView,
    corpus_histogram,
    corpus_neuron,
    read_corpus_drift,
)
from polysemy.report.charts import Chart, bars
from polysemy.report.html import _fmt
from polysemy.report.sections import ReportSection, Table, _chart_id, interval_text
from polysemy.report.sources import Source

__all__ = ["section_corpus_drift"]

NEURONS = 3
"""Most different neurons drawn (plus the most stable one)."""


def _short(corpus: str) -> str:
    """A corpus's name for legends: its spec up to its options (the text names it in full)."""
    return corpus.split("(")[0] or corpus


def _fractions_chart(src: Source, view: CorpusDriftView) -> Chart:
    s = view.summary
    nr, nl = s.get("neurons") or {}, s.get("null") or {}
    keys = [("different_fraction", "sings different voices"),
            ("dominant_change_fraction", "dominant voice changes")]  # fmt: skip
    own = [nr.get(k) or {} for k, _ in keys]
    null = [nl.get(k) or {} for k, _ in keys]
    labels = [lab for _, lab in keys]
    a, b = _short(view.corpus_a), _short(view.corpus_b)
    traces = [
        bars(labels, [o.get("estimate") or 0.0 for o in own], [o.get("low") for o in own],
             [o.get("high") for o in own], name=f"{a} vs {b}", color="#c62828"),
        bars(labels, [o.get("estimate") or 0.0 for o in null], [o.get("low") for o in null],
             [o.get("high") for o in null], name="null (half vs half of each corpus)",
             color="#90a4ae"),
    ]  # fmt: skip
    verdicts = s.get("verdict") or {}
    return Chart(
        id=_chart_id(src, "corpora-fractions"),
        title="Neurons singing different voices on the two corpora, against the null",
        caption=(
            f"Exact binomial 95% intervals over n = {nr.get('n')} neurons with some feature "
            f"share on both corpora; null: median and central 95% range over "
            f"{nl.get('splits')} random half-splits of each corpus (scores scaled to the A-vs-B "
            f"sizes). Verdicts: different {verdicts.get('different')}, dominant change "
            f"{verdicts.get('dominant_change')}."
        ),
        traces=traces,
        ylabel="fraction of neurons",
        extra_layout={"barmode": "group", "yaxis": {"range": [0, 1]}},
    )


def _voices_chart(src: Source, view: CorpusDriftView, j: int, why: str) -> Chart:
    v = corpus_neuron(view, j)
    names = list(dict.fromkeys(x["name"] for side in ("a", "b") for x in v[side]))
    share = {side: {x["name"]: x["share"] for x in v[side]} for side in ("a", "b")}
    traces = [
        {"type": "bar", "name": f"A: {_short(view.corpus_a)}", "x": names,
         "y": [share["a"].get(k, 0.0) for k in names], "marker": {"color": "#1565c0"}},
        {"type": "bar", "name": f"B: {_short(view.corpus_b)}", "x": names,
         "y": [share["b"].get(k, 0.0) for k in names], "marker": {"color": "#c62828"}},
    ]  # fmt: skip
    rows = view.summary.get("rows") or {}
    verdict = "different voices" if v["different"] else "within the null"
    return Chart(
        id=_chart_id(src, f"corpora-neuron-{j}"),
        title=f"Neuron {j} ({why}): its voices on A and on B",
        caption=(
            f"Shares of its squared chorus on {rows.get('a')} tokens of A and {rows.get('b')} of "
            f"B (each side sums to 1; the SAE error is its own voice). Score (TV distance) "
            f"{_fmt(v['score'])} [{_fmt(v['ci'][0])}, {_fmt(v['ci'][1])}] (95% bootstrap over "
            f"documents) vs its null's 95% point {_fmt(v['null_threshold'])}: {verdict}; "
            f"dominant feature {v['dominant_a']} on A, {v['dominant_b']} on B."
        ),
        traces=traces,
        ylabel="share of the neuron",
        extra_layout={"barmode": "group", "yaxis": {"range": [0, 1]}},
    )


def _histogram_chart(src: Source, view: CorpusDriftView) -> Chart:
    h = corpus_histogram(view)
    edges = h["edges"]
    x = [f"{(a + b) / 2:.3f}" for a, b in itertools.pairwise(edges)]
    nr, nl = view.summary.get("neurons") or {}, view.summary.get("null") or {}
    return Chart(
        id=_chart_id(src, "corpora-histogram"),
        title="Per-neuron score against the null's",
        caption=(
            f"n = {h['n']} neurons; null: each split's scaled half-vs-half scores, counted per "
            f"split ({h['splits']} splits). Mean score {interval_text(nr.get('mean_score'))} vs "
            f"null {interval_text(nl.get('mean_score'))}."
        ),
        traces=[
            {"type": "bar", "name": "A vs B", "x": x, "y": h["counts"], "opacity": 0.75},
            {"type": "bar", "name": "null", "x": x, "y": h["null_counts"], "opacity": 0.55},
        ],
        xlabel="score (TV distance of the neuron's shares)",
        ylabel="neurons",
        extra_layout={"barmode": "overlay"},
    )


def section_corpus_drift(src: Source, config: Any) -> ReportSection | None:
    """A cross-corpus drift folder; None when its arrays cannot be read (the caller then
    shows its summary as recorded)."""
    try:
        view = read_corpus_drift(src.path, picks=NEURONS)
    except (OSError, KeyError, ValueError):
        return None
    s = view.summary
    nr, nl = s.get("neurons") or {}, s.get("null") or {}
    sae = s.get("sae") or {}
    sae_a, sae_b = sae.get("on_a") or {}, sae.get("on_b") or {}
    picked = [(j, "most different") for j in view.picks["different"]]
    picked += [(j, "most stable") for j in view.picks["stable"][:1]]
    charts = [_fractions_chart(src, view)]
    charts += [_voices_chart(src, view, j, why) for j, why in picked]
    charts.append(_histogram_chart(src, view))
    rows = []
    for j, why in picked:
        v = corpus_neuron(view, j)
        rows.append([str(j), why, f"{_fmt(v['score'])} [{_fmt(v['ci'][0])}, {_fmt(v['ci'][1])}]",
                     _fmt(v["null_threshold"]), str(v["dominant_a"]), str(v["dominant_b"]),
                     "different" if v["different"] else "within null"])  # fmt: skip
    table = Table(["neuron", "picked as", "score [95% CI]", "null 95% point", "dominant on A",
                   "dominant on B", "verdict"], rows)  # fmt: skip
    text = (
        f"The same neuron's chorus on two corpora: {s.get('d')} neurons of {s.get('site')} in "
        f"{s.get('model')}, one {s.get('d_sae')}-latent SAE for both, on {view.corpus_a} (A) "
        f"and {view.corpus_b} (B). Fraction singing different voices "
        f"{interval_text(nr.get('different_fraction'))} against the null "
        f"{interval_text(nl.get('different_fraction'))}; dominant voice changes for "
        f"{interval_text(nr.get('dominant_change_fraction'))} against "
        f"{interval_text(nl.get('dominant_change_fraction'))}. A neuron sings different voices "
        "when its score exceeds its own null's 95% point. Among the features alone (SAE error "
        f"left out) the mean score is {interval_text(nr.get('mean_feature_score'))} against "
        f"{interval_text(nl.get('mean_feature_score'))}. The SAE's fit: FVU "
        f"{_fmt(sae_a.get('fvu'))} on A, {_fmt(sae_b.get('fvu'))} on B; where it fits one "
        "corpus worse, the error voice grows there and the features-alone score is the fairer "
        "read."
    )
    return ReportSection(
        f"Meaning drift across corpora: {src.name}", src.kind, src.name, text,
        charts=charts, tables=[table],
    )  # fmt: skip
