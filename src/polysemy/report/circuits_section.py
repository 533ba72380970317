"""The report's section for a `circuits` analysis folder (polysemy.analysis.circuits).

Two charts, each caption stating n and the interval: the strongest edges' |weight| with their
bootstrap intervals over contexts against the null's q95 (|weight| over every pair computed),
and the braided fraction of those edges with its interval beside the shuffled-contexts null.
A table lists the edges; an `ablation` block (its ablated edges as a table of their own) and a
`method` field, when the folder has them, are shown as recorded.
"""

from __future__ import annotations

import json
from typing import Any

from polysemy.report.charts import Chart, bars
from polysemy.report.html import _fmt
from polysemy.report.sections import ReportSection, Table, _chart_id, _summary, interval_text
from polysemy.report.sources import Source

__all__ = ["CHART_EDGES", "braid_verdict", "section_circuits"]

CHART_EDGES = 20
"""Strongest edges drawn in the report's chart (the table lists every reported edge)."""


def braid_verdict(braids: dict[str, Any]) -> str:
    """Where the braided fraction's interval sits against the shuffled-contexts null's."""
    ci, null = braids.get("ci") or {}, braids.get("null_ci") or {}
    if not {"low", "high"} <= ci.keys() or not {"low", "high"} <= null.keys():
        return "inconclusive"
    if ci["low"] > null["high"]:
        return "above the null"
    if ci["high"] < null["low"]:
        return "below the null"
    return "inconclusive"


def _brief(value: Any) -> str:
    """An interval as text; a nested block as `key value; ...` (not a line of JSON)."""
    if isinstance(value, dict) and not {"low", "high"} <= value.keys():
        return "; ".join(f"{k} {_brief(v)}" for k, v in value.items())
    return interval_text(value)


def _ablated_edges(edges: list[dict[str, Any]]) -> Table:
    """Each ablated edge (analysis.edge_ablation): its mean effect with the interval over
    contexts, the 95% bands of both nulls and the verdict against each."""
    header = ["up", "down", "linear weight", "ablation effect (95%, n)", "random-direction band",
              "verdict", "random-edge band", "verdict (edges)"]  # fmt: skip
    rows = [
        [
            str(e.get("up")),
            str(e.get("down")),
            _fmt(e.get("weight")),
            interval_text(e.get("ci")),
            "±" + _fmt((e.get("null") or {}).get("band")),
            str(e.get("verdict")),
            "±" + _fmt((e.get("null_edges") or {}).get("band")),
            str(e.get("verdict_edges")),
        ]
        for e in edges
    ]
    return Table(header, rows)


def _abs_interval(ci: dict[str, Any]) -> tuple[float | None, float | None]:
    """The interval of |weight| from the interval of the weight (0 when it spans 0)."""
    lo, hi = ci.get("low"), ci.get("high")
    if lo is None or hi is None:
        return None, None
    if lo <= 0 <= hi:
        return 0.0, max(-lo, hi)
    return min(abs(lo), abs(hi)), max(abs(lo), abs(hi))


def section_circuits(src: Source, config: Any) -> ReportSection:
    s = _summary(src)
    edges_path = src.path / "edges.json"
    edges = json.loads(edges_path.read_text()) if edges_path.is_file() else []
    braids = s.get("braids") or {}
    q = (s.get("null") or {}).get("quantiles") or {}
    q95 = q.get("q95")
    contexts = s.get("contexts")
    charts = []
    shown = edges[:CHART_EDGES]
    if shown:
        labels = [f"{e['up']}→{e['down']} ({'+' if e['weight'] >= 0 else '−'})" for e in shown]
        lows, highs = zip(*(_abs_interval(e.get("ci") or {}) for e in shown), strict=True)
        traces = [bars(labels, [abs(e["weight"]) for e in shown], lows, highs, name="|weight|")]
        if q95 is not None:
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "x": labels,
                    "y": [q95] * len(labels),
                    "name": "null q95",
                }
            )
        charts.append(
            Chart(
                id=_chart_id(src, "edges"),
                title=f"Strongest edges {s.get('site_up')} → {s.get('site_down')} against the null",
                caption=(
                    f"The {len(shown)} strongest of {len(edges)} reported edges (upstream → "
                    f"downstream feature, sign in brackets): mean |weight| over n = {contexts} "
                    "contexts, whiskers the 95% bootstrap interval over contexts; line: the "
                    f"null's q95 = {_fmt(q95)} (|weight| over every (a, b) pair computed)."
                ),
                traces=traces,
                ylabel="|edge weight|",
            )
        )
    if {"ci", "null_ci"} <= braids.keys():
        ci, null = braids["ci"], braids["null_ci"]
        charts.append(
            Chart(
                id=_chart_id(src, "braids"),
                title="Braided fraction of the strongest edges, against shuffled contexts",
                caption=(
                    f"Braided fraction {interval_text(ci)} over n = {braids.get('n_edges')} "
                    f"edges; null (contexts shuffled) {interval_text(null)}: "
                    f"{braid_verdict(braids)}."
                ),
                traces=[
                    bars(
                        ["strongest edges", "shuffled contexts (null)"],
                        [braids.get("braided_fraction", ci.get("estimate")), null.get("estimate")],
                        [ci.get("low"), null.get("low")],
                        [ci.get("high"), null.get("high")],
                        name="braided fraction",
                    )
                ],
                ylabel="fraction of edges braided",
            )
        )
    has_ablation = any("ablation" in e for e in edges)
    header = [
        "up",
        "down",
        "weight",
        "interval (95%, n)",
        "virtual",
        "contexts",
        "clusters",
        "braided",
        "verdict",
    ] + (["ablation"] if has_ablation else [])
    rows = [
        [
            str(e["up"]),
            str(e["down"]),
            _fmt(e["weight"]),
            interval_text(e.get("ci")),
            _fmt(e.get("virtual")),
            _fmt(e.get("contexts")),
            _fmt(e.get("clusters")),
            "yes" if e.get("braided") else "no",
            str(e.get("verdict")),
        ]
        + ([interval_text(e.get("ablation"))] if has_ablation else [])
        for e in edges
    ]
    tables = [Table(header, rows)] if rows else []
    if isinstance(s.get("ablation"), dict):
        ablation = s["ablation"]
        tables.append(
            Table(
                ["edge ablation", "value"],
                [[k, _brief(v)] for k, v in ablation.items() if k != "edges"],
            )
        )
        if isinstance(ablation.get("edges"), list) and ablation["edges"]:
            tables.append(_ablated_edges(ablation["edges"]))
    method = f" Method: {interval_text(s['method'])}." if s.get("method") is not None else ""
    text = (
        f"Edges from the features at {s.get('site_up')} into those at {s.get('site_down')} "
        f"over {contexts} contexts: a's activation times the gradient of b's pre-activation "
        f"along a's decoder direction, linearised ({s.get('linearisation')}), averaged over "
        f"contexts; {s.get('n_down')} downstream features, top {s.get('top_k')} upstream each. "
        f"Braided fraction {interval_text(braids.get('ci'))} vs shuffled contexts "
        f"{interval_text(braids.get('null_ci'))}: {braid_verdict(braids)}.{method}"
    )
    return ReportSection(
        f"Circuits: {src.name}",
        src.kind,
        src.name,
        text,
        charts=charts,
        tables=tables,
        numbers={
            "edges": len(edges),
            "braided_fraction": braids.get("braided_fraction"),
            "braids_verdict": braid_verdict(braids),
            "null_q95": q95,
        },
    )
