"""Report sections for meaning drift (a drift analysis folder) and for a model organism run.

`section_drift`: for the most switching neurons and one stable neuron, the neuron's voices
over the snapshots as a stacked area; the switch fraction and mean score per snapshot pair
against the null with their intervals; the feature genealogy (births, deaths, splits,
merges) beside the SAE-seed null's; the organism's loss curve with the snapshots marked.
`section_organism`: the organism's training loss, its held-out loss at each snapshot and at
the end against the unigram and bigram baselines, with intervals. Both read only what the
library wrote (polysemy.analysis.drift_views, organism.json).
"""

from __future__ import annotations

from typing import Any

from polysemy.analysis.drift_views import (
    DriftView,
    genealogy_counts,
    neuron_voices,
    read_drift,
)
from polysemy.report.charts import Chart, bars
from polysemy.report.html import _fmt
from polysemy.report.sections import ReportSection, Table, _chart_id, interval_text
from polysemy.report.sources import Source

__all__ = ["section_drift", "section_organism"]

NEURONS = 3
"""Switching neurons drawn (plus one stable neuron)."""
_STACK = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
_GENEALOGY = {"born": "#2e7d32", "died": "#c62828", "split": "#1565c0", "merged": "#6a1b9a"}


def _pair_figure(p: dict[str, Any], key: str) -> dict[str, Any]:
    """A pair's interval under either analysis's name (organism: score, toy: drift)."""
    alias = {"score": "drift", "null_score": "null_drift"}
    return p.get(key) or p.get(alias.get(key, key)) or {}


def _voices_chart(src: Source, view: DriftView, j: int, why: str) -> Chart:
    v = neuron_voices(view, j)
    x = [f"step {s}" for s in v["steps"]]
    traces = [
        {
            "type": "scatter",
            "mode": "lines",
            "stackgroup": "v",
            "x": x,
            "y": layer["shares"],
            "name": layer["name"],
            "marker": {"color": _STACK[k % len(_STACK)]},
        }
        for k, layer in enumerate(v["layers"])
    ]
    if any(o > 0 for o in v["others"]):
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "stackgroup": "v",
                "x": x,
                "y": v["others"],
                "name": "other shown voices",
                "marker": {"color": "#b0bec5"},
            }
        )
    if any(r > 0 for r in v["rest"]):
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "stackgroup": "v",
                "x": x,
                "y": v["rest"],
                "name": v["rest_name"],
                "marker": {"color": "#607d8b"},
            }
        )
    scores = ", ".join(
        f"{a}→{b}: {_fmt(s)} (null {_fmt(n)})"
        for a, b, s, n in zip(
            v["steps"][:-1], v["steps"][1:], v["score"], v["null_score"], strict=True
        )
    )
    how = (
        "shares over the toy's true features, read off the weights (exact, no interval)"
        if view.source == "toy"
        else "squared-chorus shares over each snapshot's own SAE over "
        f"n = {view.summary.get('rows')} held-out tokens; features chained into lineages by "
        "activation correlation (labels only; the score is the evidence)"
    )
    return Chart(
        id=_chart_id(src, f"voices-{j}"),
        title=f"{view.labels[j]} ({why}): voices over snapshots",
        caption=f"{how}. Switch score per pair against its SAE-seed null: {scores}.",
        traces=traces,
        xlabel="snapshot",
        ylabel="share of the neuron",
        extra_layout={"yaxis": {"title": {"text": "share of the neuron"}, "range": [0, 1]}},
    )


def _switch_chart(src: Source, view: DriftView) -> Chart:
    pairs = view.summary.get("pairs", [])
    labels = [f"{p['from_step']}→{p['to_step']}" for p in pairs]
    own = [p.get("switch_fraction") or {} for p in pairs]
    null = [p.get("null_switch_fraction") or {} for p in pairs]
    nl = view.summary.get("null", {})
    traces = _beside_null(labels, own, null, "switch fraction", f"null ({nl.get('kind', 'null')})")
    n = ", ".join(str(o.get("n")) for o in own)
    overall = view.summary.get("neurons", {}).get("switch_fraction")
    return Chart(
        id=_chart_id(src, "switch"),
        title="Dominant-feature switch fraction per snapshot pair, against the null",
        caption=(
            f"95% binomial intervals; n = {n} neurons alive at both snapshots per pair. Over "
            f"all pairs {interval_text(overall)} vs null "
            f"{interval_text(nl.get('switch_fraction'))}."
        ),
        traces=traces,
        xlabel="snapshot pair (steps)",
        ylabel="fraction of neurons",
        extra_layout={"barmode": "group"},
    )


def _beside_null(
    labels: list[str],
    own: list[dict[str, Any]],
    null: list[dict[str, Any]],
    name: str,
    null_name: str,
) -> list[dict[str, Any]]:
    """Two bar traces per snapshot pair, the figure's and its null's, with their intervals."""
    return [
        bars(labels, [o.get("estimate") or 0.0 for o in figures], [o.get("low") for o in figures],
             [o.get("high") for o in figures], name=label, color=color)
        for figures, label, color in ((own, name, "#c62828"), (null, null_name, "#90a4ae"))
    ]  # fmt: skip


def _score_chart(src: Source, view: DriftView) -> Chart:
    pairs = view.summary.get("pairs", [])
    labels = [f"{p['from_step']}→{p['to_step']}" for p in pairs]
    own = [_pair_figure(p, "score") for p in pairs]
    null = [_pair_figure(p, "null_score") for p in pairs]
    traces = _beside_null(labels, own, null, "mean score", "null")
    verdicts = ", ".join(f"{lab}: {p.get('verdict')}" for lab, p in zip(labels, pairs, strict=True))
    return Chart(
        id=_chart_id(src, "score"),
        title="Mean meaning-switch score per snapshot pair, against the null",
        caption=(
            f"95% bootstrap intervals over n = {own[0].get('n') if own else '?'} neurons per "
            f"pair. Verdicts: {verdicts}."
        ),
        traces=traces,
        xlabel="snapshot pair (steps)",
        ylabel="1 - cos" if view.source == "toy" else "meaning-switch score",
        extra_layout={"barmode": "group"},
    )


def _genealogy_chart(src: Source, view: DriftView) -> Chart | None:
    g = genealogy_counts(view)
    if g is None:
        return None
    traces = []
    for kind, color in _GENEALOGY.items():
        traces.append(
            {"type": "bar", "x": g["pairs"], "y": g[kind], "name": kind, "marker": {"color": color}}
        )
        traces.append(
            {
                "type": "bar",
                "x": g["pairs"],
                "y": g["null_" + kind],
                "name": f"{kind} (null)",
                "marker": {"color": color},
                "opacity": 0.35,
            }
        )
    return Chart(
        id=_chart_id(src, "genealogy"),
        title="Feature genealogy: births, deaths, splits, merges",
        caption=(
            f"Features of {g['d_sae']}-latent SAEs, related when their activations correlate "
            f">= {_fmt(g['threshold'])}; pale: the same counts between two SAE seeds at the later "
            "snapshot (SAE noise alone). Counts of one pair of SAEs per snapshot pair, so no "
            f"interval; n = {', '.join(str(a) for a in g['alive_to'])} live features at the "
            "later snapshots."
        ),
        traces=traces,
        xlabel="snapshot pair (steps)",
        ylabel="features",
        extra_layout={"barmode": "group"},
    )


def _loss_chart(src: Source, training: dict[str, Any], stem: str) -> Chart | None:
    """Training loss, held-out loss at the snapshots (with intervals) and the baselines."""
    history = training.get("history") or []
    snaps = [s for s in training.get("snapshots") or [] if s.get("heldout_loss") is not None]
    if not history and not snaps:
        return None
    traces: list[dict[str, Any]] = []
    if history:
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": "training loss",
                "x": [h["step"] for h in history],
                "y": [h["loss"] for h in history],
                "marker": {"color": "#90a4ae"},
            }
        )
    if snaps:
        ci = [s.get("ci95") or [s["heldout_loss"]] * 2 for s in snaps]
        y = [s["heldout_loss"] for s in snaps]
        plus = [max(c[1] - v, 0.0) for c, v in zip(ci, y, strict=True)]
        minus = [max(v - c[0], 0.0) for c, v in zip(ci, y, strict=True)]
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "loss at the snapshots"
                if training.get("unit")
                else "held-out loss at the snapshots",
                "x": [s["step"] for s in snaps],
                "y": y,
                "error_y": {"type": "data", "visible": True, "array": plus, "arrayminus": minus},
                "marker": {"color": "#c62828", "size": 9},
            }
        )
    last = max([h["step"] for h in history] + [s["step"] for s in snaps] + [1])
    base_text = []
    for k, (name, b) in enumerate((training.get("baselines") or {}).items()):
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": f"{name} baseline",
                "x": [0, last],
                "y": [b["loss"], b["loss"]],
                "line": {"dash": "dash"},
                "marker": {"color": _STACK[(k + 2) % 7]},
            }
        )
        base_text.append(f"{name} {_fmt(b['loss'])} {interval_text(b.get('ci95'))}")
    windows = snaps[0].get("windows") if snaps else None
    has_ci = any(s.get("ci95") for s in snaps)
    how = (
        "with its 95% bootstrap interval over "
        f"{'n = ' + str(windows) if windows else 'the'} held-out windows"
        if has_ci
        else "(no interval: the run was written before snapshots recorded one)"
    )
    if training.get("unit"):  # a toy's curve: losses at the snapshots on fresh inputs
        along = (
            f"Grey: the training run's loss, {training['history_unit']} (one batch: no interval). "
            if history and training.get("history_unit")
            else ""
        )
        return Chart(
            id=_chart_id(src, stem),
            title="Loss curve, the snapshots marked" if history else "Loss at the snapshots",
            caption=(
                f"{along}Red: the loss at each snapshot, {training['unit']}, with its 95% normal "
                f"interval over the n = {windows} inputs; dashed: an all-zero output on the same "
                f"inputs ({'; '.join(base_text) or 'none recorded'})."
            ),
            traces=traces,
            xlabel="training step",
            ylabel="importance-weighted MSE",
        )
    return Chart(
        id=_chart_id(src, stem),
        title="Loss curve, the snapshots marked",
        caption=(
            "Grey: training loss (mean over each logging window); red: held-out loss at each "
            f"snapshot {how}; dashed: baselines on the same windows "
            f"({'; '.join(base_text) or 'none recorded'})."
        ),
        traces=traces,
        xlabel="training step",
        ylabel="cross-entropy (nats/token)",
    )


def _summary_only(src: Source, reason: str) -> ReportSection:
    """A drift folder without the per-neuron files this version draws (another kind of drift,
    or a later version's): its pairs and its summary as recorded."""
    found = src.record.get("summary")
    s: dict[str, Any] = found if isinstance(found, dict) else {}
    tables = []
    pairs = [p for p in s.get("pairs") or [] if isinstance(p, dict) and "from_step" in p]
    if pairs:
        tables.append(_pairs_table(pairs))
    tables.append(
        Table(["quantity", "value"], [[k, interval_text(v)] for k, v in s.items() if k != "pairs"])
    )
    return ReportSection(
        f"Meaning drift: {src.name}", src.kind, src.name,
        f"This drift folder holds no per-neuron file this version draws ({reason}); its "
        "summary as recorded (intervals beside each estimate).",
        tables=tables,
    )  # fmt: skip


def _pairs_table(pairs: list[dict[str, Any]]) -> Table:
    rows = [
        [f"{p['from_step']} → {p['to_step']}", interval_text(_pair_figure(p, "score")),
         interval_text(_pair_figure(p, "null_score")), interval_text(p.get("switch_fraction")),
         interval_text(p.get("null_switch_fraction")), _fmt(p.get("median_correlation")),
         str(p.get("verdict"))]
        for p in pairs
    ]  # fmt: skip
    return Table(["pair", "score", "null", "switch fraction", "null switch fraction",
                  "median correlation", "verdict"], rows)  # fmt: skip


def section_drift(src: Source, config: Any) -> ReportSection:
    """A drift analysis folder (toy or organism; across corpora: `section_corpus_drift`;
    another kind: its summary as recorded)."""
    from polysemy.analysis.corpus_drift_views import is_corpus_drift
    from polysemy.report.corpus_drift_section import section_corpus_drift

    if is_corpus_drift(src.path, src.record):
        corpora = section_corpus_drift(src, config)
        if corpora is not None:
            return corpora
    try:
        view = read_drift(src.path, picks=NEURONS)
    except (OSError, KeyError, ValueError) as exc:
        return _summary_only(src, f"{type(exc).__name__}: {exc}")
    s = view.summary
    charts: list[Chart] = []
    for j in view.picks["switching"]:
        charts.append(_voices_chart(src, view, j, "switching"))
    for j in view.picks["stable"]:
        charts.append(_voices_chart(src, view, j, "stable"))
    charts += [_switch_chart(src, view), _score_chart(src, view)]
    genealogy = _genealogy_chart(src, view)
    if genealogy is not None:
        charts.append(genealogy)
    if view.training:
        loss = _loss_chart(src, view.training, "loss")
        if loss is not None:
            charts.append(loss)
    nr, nl = s.get("neurons", {}), s.get("null", {})
    what = (
        f"the {s.get('d_mlp')} MLP neurons of {s.get('site')} over {len(view.steps)} snapshots "
        f"(steps {', '.join(map(str, view.steps))}), one TopK SAE per snapshot"
        if view.source == "organism"
        else f"{len(view.labels)} toy neurons over {len(view.steps)} snapshots "
        f"(steps {', '.join(map(str, view.steps))}), against a model trained from another seed"
    )
    text = (
        f"Meaning drift of {what}. Dominant-feature switch fraction "
        f"{interval_text(nr.get('switch_fraction'))} against the {nl.get('kind', '')} null "
        f"{interval_text(nl.get('switch_fraction'))}; median activation correlation between "
        f"consecutive snapshots {_fmt(nr.get('median_correlation'))}. A pair 'drifted' only "
        "when its score's interval lies above the null's."
    )
    tables = [_pairs_table(s.get("pairs", []))]
    known = {
        "site",
        "d_mlp",
        "d_sae",
        "n_snapshots",
        "steps",
        "rows",
        "dictionary",
        "neurons",
        "features",
        "pairs",
        "null",
        "saes",
        "n_instances",
        "n_hidden",
        "span",
        "late",
    }
    extra = [[k, interval_text(v)] for k, v in s.items() if k not in known]
    if extra:  # blocks added by later versions of the analysis, as recorded
        tables.append(Table(["other result", "value"], extra))
    return ReportSection(
        f"Meaning drift: {src.name}", src.kind, src.name, text, charts=charts, tables=tables
    )


def section_organism(src: Source, config: Any) -> ReportSection:
    """A model organism run (organism.json)."""
    rec = src.record
    charts = []
    loss = _loss_chart(src, rec, "organism-loss")
    if loss is not None:
        charts.append(loss)
    held = rec.get("heldout") or {}
    rows = []
    for name, v in (rec.get("versus") or {}).items():
        rows.append(
            [
                f"model - {name}",
                _fmt(v.get("difference")),
                interval_text(v.get("ci95")),
                str(v.get("verdict")),
            ]
        )
    model = rec.get("model", {})
    cfg = rec.get("config", {})
    text = (
        f"A {model.get('architecture', 'causal LM')} of {_fmt(model.get('parameters'))} "
        f"parameters trained here on {rec.get('corpus')} for {_fmt(rec.get('steps'))} steps "
        f"({cfg.get('n_layer', '?')} layer(s), context {cfg.get('n_ctx')}, "
        f"status {rec.get('status')}). Held-out loss {_fmt(held.get('loss'))} "
        f"{interval_text(held.get('ci95'))} over n = {held.get('windows')} windows "
        f"({held.get('tokens')} tokens); a negative difference below the baseline means the "
        "model beats it."
    )
    return ReportSection(
        f"Model organism: {src.name}",
        src.kind,
        src.name,
        text,
        charts=charts,
        tables=[
            Table(["comparison (held-out windows)", "difference", "95% interval", "verdict"], rows)
        ]
        if rows
        else [],
    )
