"""Report sections, one per run found: what it measured, drawn, with n and interval stated.

Each `section_*` function reads one source's files (what the library wrote; nothing is
recomputed except the binning of a histogram) and returns a `ReportSection`: text, charts
(interactive + PNG), tables, chorus cards and, for toy tours, the figures they already drew.
`sections_for(sources)` orders them in pipeline order and leaves out what is not there.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from polysemy.report.charts import Chart, bars, histogram
from polysemy.report.chorus import ChorusCard, chorus_cards
from polysemy.report.html import _fmt
from polysemy.report.sources import Source, Sources

__all__ = ["ReportSection", "Table", "interval_text", "sections_for"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Table:
    """A table of plain-text cells."""

    header: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass(frozen=True)
class ReportSection:
    """One block of the report."""

    title: str
    kind: str
    """The source's kind (`sae`, `analysis:neurons`, ...); the HTML element's class."""
    source: str
    """The source's path relative to the report's path."""
    text: str = ""
    charts: Sequence[Chart] = ()
    tables: Sequence[Table] = ()
    cards: Sequence[ChorusCard] = ()
    images: Sequence[tuple[Callable[[Path], object], str]] = ()
    """Static figures: (function that writes the file to the path it is given, the path
    relative to the report folder); a toy tour's own PNGs are copied, toy weights drawn."""
    numbers: dict[str, Any] = field(default_factory=dict)


def interval_text(value: Any) -> str:
    """`0.52 [0.49, 0.55] (95% bootstrap, n=48)` from an interval dict (`estimate`, `low`,
    `high`, `level`, `n`, `method`) or `[low, high]`; `_fmt` of anything else."""
    if isinstance(value, dict) and {"low", "high"} <= value.keys():
        head = f"{_fmt(value['estimate'])} " if "estimate" in value else ""
        bits = []
        if isinstance(value.get("level"), (int, float)):
            bits.append(f"{value['level']:.0%}")
        if value.get("method"):
            bits.append(str(value["method"]))
        tail = " ".join(bits)
        if value.get("n") is not None:
            tail += f", n={value['n']}" if tail else f"n={value['n']}"
        return f"{head}[{_fmt(value['low'])}, {_fmt(value['high'])}]" + (
            f" ({tail})" if tail else ""
        )
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, (int, float)) or v is None for v in value)
    ):
        return f"[{_fmt(value[0])}, {_fmt(value[1])}]"
    if (
        isinstance(value, dict)
        and value
        and all(isinstance(v, (int, float, str)) or v is None for v in value.values())
    ):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
    return _fmt(value)


def _tensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path)) if path.is_file() else {}


def _chart_id(src: Source, stem: str) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in src.name).strip("-") or "root"
    return f"{slug}-{stem}"


def _summary(src: Source) -> dict[str, Any]:
    s = src.record.get("summary")
    return s if isinstance(s, dict) else {}


def _flat_table(summary: dict[str, Any], skip: Sequence[str] = ()) -> Table:
    rows = [[k, interval_text(v)] for k, v in summary.items() if k not in skip]
    return Table(["quantity", "value"], rows)


# ---- SAE ------------------------------------------------------------------------------------


def section_sae(src: Source, config: Any) -> ReportSection:
    rec = src.record
    training = rec.get("training", {}) or {}
    heldout = training.get("heldout") or training.get("final") or {}
    numbers = {"arch": rec.get("arch"), "d_in": rec.get("d_in"), "d_sae": rec.get("d_sae")}
    if rec.get("k") is not None:
        numbers["k"] = rec["k"]
    numbers.update({k: v for k, v in heldout.items() if isinstance(v, (int, float))})
    numbers["tokens_trained"] = training.get("tokens_trained")
    charts = []
    history: list[dict[str, Any]] = []
    state = src.path / "state" / "state.json"
    if state.is_file():
        try:
            history = json.loads(state.read_text()).get("history", []) or []
        except ValueError:
            history = []
    if history:
        tokens = [h["tokens"] for h in history]
        traces = [
            {"type": "scatter", "mode": "lines+markers", "name": key, "x": tokens,
             "y": [h.get(key) for h in history]}
            for key in ("fvu", "dead_fraction") if all(key in h for h in history)
        ]  # fmt: skip
        every = training.get("log_every")
        charts.append(
            Chart(
                id=_chart_id(src, "training"),
                title="SAE training: fvu and dead fraction on each logged window",
                caption=(
                    f"n = {len(history)} logged windows (every {every} steps) of one training "
                    f"run; no interval (a single run; the windows are training batches, not a "
                    f"held-out sample). Held-out fvu after training: "
                    f"{_fmt(heldout.get('fvu'))}."
                ),
                traces=traces,
                xlabel="tokens trained",
            )
        )
    text = (
        f"A {rec.get('arch')} sparse autoencoder with d_sae = {rec.get('d_sae')} features on "
        f"d_in = {rec.get('d_in')} dimensions (site {rec.get('source', {}).get('site')!s}). "
        "The metrics were measured on the store's held-out split after training "
        f"({training.get('evaluated_on', 'heldout')})."
    )
    if not history:
        text += " No training curve: the resumable state/ folder was deleted."
    return ReportSection(
        f"SAE: {src.name}", src.kind, src.name, text, charts=charts, numbers=numbers
    )


# ---- analyses -------------------------------------------------------------------------------


def section_neurons(src: Source, config: Any) -> ReportSection:
    s = _summary(src)
    t = _tensors(src.path / "neurons.safetensors")
    eff = s.get("effective_features_median_ci", {})
    base = s.get("baseline", {}).get("effective_features_median_ci", {})
    charts = []
    if "effective_features" in t:
        own, null = t["effective_features"], t.get("baseline_effective_features")
        values = np.concatenate([own, null]) if null is not None else own
        edges = np.histogram_bin_edges(values[np.isfinite(values)], bins=30)
        traces = [histogram(own, name="neurons (own basis)", bins=edges)]
        if null is not None:
            traces.append(histogram(null, name="rotated basis (null)", bins=edges))
        charts.append(
            Chart(
                id=_chart_id(src, "effective"),
                title="Effective number of features per neuron, against a rotated basis",
                caption=(
                    f"n = {len(own)} neurons over {s.get('rows')} rows. Median "
                    f"{interval_text(eff)}; rotated basis {interval_text(base)}. "
                    f"Verdict: {s.get('verdict')}."
                ),
                traces=traces,
                xlabel="effective number of features (exp entropy of shares)",
                ylabel="neurons",
            )
        )
    cards = (
        chorus_cards(src.path, cards=config.chorus_cards, voices=config.voices,
                     contexts=config.contexts)
        if (src.path / "neurons.json").is_file() else []
    )  # fmt: skip
    text = (
        "Each neuron's activation split into the SAE features that carry it (and the SAE's "
        "error line). A neuron is described as a chorus of features with the contexts in "
        "which each voice dominates, never as one named concept. Cards below: the "
        f"{len(cards)} neurons the SAE reconstructs best (lowest error share) among those "
        "seen firing in their top contexts."
    )
    if s.get("warning"):
        text += f"\n\nWarning: {s['warning']}."
    mono = s.get("monosemantic_fraction_ci")
    numbers = {
        "neurons": s.get("n_neurons"),
        "rows": s.get("rows"),
        "effective features, median": interval_text(eff),
        "rotated basis, median": interval_text(base),
        "monosemantic fraction": interval_text(mono) if mono else None,
        "SAE error share, median": s.get("error_share_median"),
        "verdict": s.get("verdict"),
    }
    return ReportSection(
        f"Neurons as choruses: {src.name}", src.kind, src.name, text, charts=charts,
        cards=cards, numbers=numbers,
    )  # fmt: skip


def section_features(src: Source, config: Any) -> ReportSection:
    s = _summary(src)
    t = _tensors(src.path / "features.safetensors")
    charts = []
    if "density" in t:
        density = t["density"]
        alive = density[density > 0]
        dead = int((density <= 0).sum())
        if alive.size:
            edges = np.geomspace(alive.min(), max(alive.max(), alive.min() * 1.0001), 31)
            q = s.get("density_quantiles", {})
            charts.append(
                Chart(
                    id=_chart_id(src, "density"),
                    title="Feature density (fraction of rows on which each feature fires)",
                    caption=(
                        f"n = {density.size} features over {s.get('rows')} rows ({dead} dead, "
                        f"not drawn). Density quantiles q05 {_fmt(q.get('q05'))}, median "
                        f"{_fmt(q.get('q50'))}, q95 {_fmt(q.get('q95'))}. Participation "
                        f"ratio median {interval_text(s.get('participation_ratio_median_ci'))}; "
                        "random directions "
                        f"{interval_text(s.get('baseline', {}).get('participation_ratio_range'))}."
                    ),
                    traces=[histogram(alive, name="features", bins=edges)],
                    xlabel="density (log scale)",
                    ylabel="features",
                    log_x=True,
                )
            )
    text = (
        "How often each SAE feature fires, and how many neurons its decoder direction spans "
        "(participation ratio) against random directions of equal norm."
    )
    return ReportSection(
        f"Features: {src.name}", src.kind, src.name, text, charts=charts,
        tables=[_flat_table(s, skip=("baseline", "seconds"))],
    )  # fmt: skip


def section_geometry(src: Source, config: Any) -> ReportSection:
    s = _summary(src)
    t = _tensors(src.path / "interference.safetensors")
    charts = []
    if "counts" in t and "edges" in t:
        edges = t["edges"]
        centres = ((edges[:-1] + edges[1:]) / 2).tolist()
        width = np.diff(edges).tolist()
        traces = [
            {"type": "bar", "name": "SAE decoder pairs", "x": centres, "y": t["counts"].tolist(),
             "width": width, "opacity": 0.6},
        ]  # fmt: skip
        if "null_counts" in t:
            traces.append(
                {"type": "bar", "name": "random directions (null)", "x": centres,
                 "y": t["null_counts"].tolist(), "width": width, "opacity": 0.6}
            )  # fmt: skip
        dim_ci = s.get("dimensionality_ci")
        charts.append(
            Chart(
                id=_chart_id(src, "interference"),
                title="Interference |cos| between decoder directions",
                caption=(
                    f"n = {s.get('interference_pairs')} pairs"
                    f"{' (sampled)' if s.get('interference_sampled') else ''}; median "
                    f"{_fmt(s.get('interference_p50'))} vs null "
                    f"{_fmt(s.get('interference_null_p50'))}"
                    f", p99 {_fmt(s.get('interference_p99'))} vs null "
                    f"{_fmt(s.get('interference_null_p99'))}; Welch bound "
                    f"{_fmt(s.get('welch_bound'))}. Mean feature dimensionality "
                    f"{_fmt(s.get('dimensionality_mean'))} {interval_text(dim_ci)} vs null "
                    f"{_fmt(s.get('dimensionality_null_mean'))}."
                ),
                traces=traces,
                xlabel="|cos|",
                ylabel="pairs",
            )
        )
    co = s.get("cooccurrence_overlap") or {}
    rows = []
    for key in ("cooccurrence_overlap", "cooccurrence_overlap_pmi"):
        c = s.get(key)
        if isinstance(c, dict):
            rows.append([
                str(c.get("measure")), _fmt(c.get("rho")), interval_text(c.get("ci")),
                interval_text(c.get("null_ci")), str(c.get("n")), str(c.get("verdict")),
            ])  # fmt: skip
    tables = [Table(["co-occurrence measure", "rank corr. with overlap", "interval",
                     "null interval", "pairs", "verdict"], rows)] if rows else []  # fmt: skip
    text = (
        "How the dictionary's directions overlap: per-pair interference against random "
        "directions, and whether features that fire together are stored closer together "
        f"(verdict: {co.get('verdict', s.get('verdict'))})."
    )
    return ReportSection(
        f"Geometry: {src.name}", src.kind, src.name, text, charts=charts, tables=tables
    )


def section_fidelity(src: Source, config: Any) -> ReportSection:
    s = _summary(src)
    intervals = s.get("intervals", {}) or {}
    charts = []
    keys = [k for k, v in intervals.items() if isinstance(v, dict) and "estimate" in v]
    if keys:
        charts.append(
            Chart(
                id=_chart_id(src, "fidelity"),
                title="Downstream fidelity with the SAE spliced in",
                caption=(
                    f"n = {s.get('n')} examples ({s.get('tokens')} tokens); bars are "
                    "estimates, whiskers their intervals: "
                    + "; ".join(f"{k} {interval_text(intervals[k])}" for k in keys)
                ),
                traces=[
                    bars(
                        keys,
                        [intervals[k]["estimate"] for k in keys],
                        [intervals[k].get("low") for k in keys],
                        [intervals[k].get("high") for k in keys],
                        name="estimate",
                    )
                ],
            )
        )
    text = (
        f"How much of the model's behaviour survives replacing the site ({s.get('site')}) "
        f"with the SAE's reconstruction (objective: {s.get('objective')})."
    )
    return ReportSection(
        f"Fidelity: {src.name}", src.kind, src.name, text, charts=charts,
        tables=[_flat_table(s, skip=("intervals",))],
    )  # fmt: skip


def _ci(value: Any) -> tuple[float | None, float | None]:
    if isinstance(value, dict):
        return value.get("low"), value.get("high")
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return value[0], value[1]
    return None, None


def section_ablate(src: Source, config: Any) -> ReportSection:
    s = _summary(src)
    results = [
        r for r in s.get("results", []) if not str(r.get("target", "")).startswith("random:")
    ]
    charts, rows = [], []
    if results:
        lows, highs = zip(*(_ci(r.get("ci")) for r in results), strict=True)
        nlows, nhighs = zip(*(_ci(r.get("null_range")) for r in results), strict=True)
        per_target = (s.get("null") or {}).get("per_target") or {}
        null_mean = [
            float(per_target.get(r["target"], {}).get("mean_effect", math.nan)) for r in results
        ]
        names = [str(r["target"]) for r in results]
        charts.append(
            Chart(
                id=_chart_id(src, "ablate"),
                title=f"Ablation effect ({s.get('effect')}) per target, against random directions",
                caption=(
                    f"n = {s.get('n')} examples per target; whiskers: the mean effect's "
                    "interval (target), and the mean and central range of the same ablation "
                    f"along {(s.get('null') or {}).get('directions')} random directions (null)."
                ),
                traces=[
                    bars(names, [r["mean_effect"] for r in results], lows, highs, name="target"),
                    bars(names, null_mean, nlows, nhighs, name="random directions (null)"),
                ],
                ylabel="mean effect",
            )
        )
        rows = [
            [str(r["target"]), _fmt(r["mean_effect"]), interval_text(r.get("ci")),
             interval_text(r.get("null_range")), str(r.get("verdict"))]
            for r in results
        ]  # fmt: skip
    return ReportSection(
        f"Ablation: {src.name}", src.kind, src.name,
        f"What happens downstream when each target is removed at {s.get('site')}, beside "
        "the same removal along random directions of equal norm.",
        charts=charts,
        tables=[Table(["target", "mean effect", "interval", "null range", "verdict"], rows)]
        if rows else [],
    )  # fmt: skip


def section_probes(src: Source, config: Any) -> ReportSection:
    s = _summary(src)
    probes = s.get("probes", []) or []
    charts, rows = [], []
    if probes:
        sets = sorted({k for p in probes for k in (p.get("accuracy") or {})})
        traces = []
        for name in sets:
            acc = [(p.get("accuracy") or {}).get(name, {}) for p in probes]
            traces.append(
                bars([str(p["kind"]) for p in probes], [a.get("estimate", math.nan) for a in acc],
                     [a.get("low") for a in acc], [a.get("high") for a in acc], name=name)
            )  # fmt: skip
        rows_n = s.get("rows", {})
        charts.append(
            Chart(
                id=_chart_id(src, "probes"),
                title=f"Probe accuracy for {s.get('concept')}",
                caption=(
                    f"n = {', '.join(f'{v} {k}' for k, v in rows_n.items())} rows; whiskers: "
                    "each accuracy's interval. Null: a control task (random label per word "
                    "type) and chance (majority share)."
                ),
                traces=traces,
                ylabel="accuracy",
            )
        )
        rows = [
            [str(p["kind"]), interval_text((p.get("accuracy") or {}).get("iid")),
             interval_text(p.get("control_accuracy")), interval_text(p.get("selectivity")),
             str(p.get("selectivity_verdict"))]
            for p in probes
        ]  # fmt: skip
    return ReportSection(
        f"Probes: {src.name}", src.kind, src.name,
        f"Linear probes for the concept {s.get('concept')!s} from neurons, SAE features and "
        "directions, against a control task.",
        charts=charts,
        tables=[Table(["probe", "accuracy (iid)", "control accuracy", "selectivity",
                       "verdict"], rows)] if rows else [],
    )  # fmt: skip


def section_edits(src: Source, config: Any) -> ReportSection:
    s = _summary(src)
    results = s.get("results", []) or []
    charts, rows = [], []
    if results:
        found = s.get("pairs")
        pairs: dict[str, Any] = found if isinstance(found, dict) else {}
        sens = [r.get("sensitivity", {}) for r in results]
        eff = [x.get("effect", {}) for x in sens]
        names = [str(r["target"]) for r in results]
        charts.append(
            Chart(
                id=_chart_id(src, "edits"),
                title=f"Response to edits of {s.get('concept')}",
                caption=(
                    f"n = {pairs.get(str(s.get('concept')))} {s.get('concept')} pairs and "
                    f"{pairs.get('control')} control pairs; whiskers: each effect's interval. "
                    "Null: edit labels permuted between the concept's and the control pairs."
                ),
                traces=[
                    bars(
                        names,
                        [e.get("estimate", math.nan) for e in eff],
                        [e.get("low") for e in eff],
                        [e.get("high") for e in eff],
                        name="sensitivity",
                    )
                ],
            )
        )
        rows = [
            [n, interval_text(e), interval_text(x.get("null_range")), str(x.get("verdict")),
             _fmt(r.get("specificity"))]
            for n, e, x, r in zip(names, eff, sens, results, strict=True)
        ]  # fmt: skip
    return ReportSection(
        f"Edits: {src.name}", src.kind, src.name,
        "How each target responds to targeted edits of one concept (counterfactual twins), "
        "and to edits of the others (specificity).",
        charts=charts,
        tables=[Table(["target", "effect", "null range", "verdict", "specificity"], rows)]
        if rows else [],
    )  # fmt: skip


def _evidence_text(evidence: Any) -> str:
    if not isinstance(evidence, dict):
        return interval_text(evidence)
    return "; ".join(f"{k}: {interval_text(v)}" for k, v in evidence.items())


def section_claims(src: Source, config: Any) -> ReportSection:
    path = src.path / "claims.json"
    claims: list[dict[str, Any]] = []
    if path.is_file():
        claims = json.loads(path.read_text()).get("claims", []) or []
    rows = []
    for c in claims:
        claim = c.get("claim", {})
        label = (
            claim.get("text") or claim.get("name") or json.dumps(claim, sort_keys=True)
            if isinstance(claim, dict)
            else str(claim)
        )
        rows.append([str(label), str(c.get("verdict")), str(c.get("sentence", "")),
                     _evidence_text(c.get("evidence"))])  # fmt: skip
    counts: dict[str, int] = {}
    for c in claims:
        counts[str(c.get("verdict"))] = counts.get(str(c.get("verdict")), 0) + 1
    text = (
        f"{len(claims)} claims tested: "
        + (", ".join(f"{n} {v}" for v, n in sorted(counts.items())) or "none")
        + ". Each verdict is read from its intervals: inconclusive where they cannot decide."
    )
    return ReportSection(
        f"Claims: {src.name}", src.kind, src.name, text,
        tables=[Table(["claim", "verdict", "sentence", "evidence (intervals)"], rows)],
    )  # fmt: skip


def section_generic(src: Source, config: Any) -> ReportSection:
    kind = src.kind.split(":", 1)[-1]
    return ReportSection(
        f"{kind.capitalize()}: {src.name}",
        src.kind,
        src.name,
        f"The {kind} analysis's summary, as recorded (intervals beside each estimate).",
        tables=[_flat_table(_summary(src))],
    )


# ---- toy models -----------------------------------------------------------------------------


def section_toy(src: Source, config: Any) -> ReportSection:
    insts = src.record.get("instances", []) or []
    cfg = src.record.get("config", {}) or {}
    charts = []
    if insts:
        sparsity = [float(i.get("sparsity", math.nan)) for i in insts]
        x = [1.0 / max(1.0 - s, 1e-12) for s in sparsity]
        charts.append(
            Chart(
                id=_chart_id(src, "dims"),
                title="Dimensions per feature against 1/density",
                caption=(
                    f"n = {len(insts)} trained instances, {cfg.get('n_features')} features in "
                    f"{cfg.get('n_hidden')} dimensions each; no interval: one model per "
                    "sparsity (the values are exact for that model)."
                ),
                traces=[
                    {
                        "type": "scatter",
                        "mode": "lines+markers",
                        "name": "D*",
                        "x": x,
                        "y": [i.get("dimensions_per_feature") for i in insts],
                    }
                ],
                xlabel="1 / density",
                ylabel="dimensions per feature",
                log_x=True,
            )
        )
    images: list[tuple[Callable[[Path], object], str]] = []
    weights = src.path / "weights.safetensors"
    if weights.is_file():
        labels = [f"S={_fmt(i.get('sparsity'))}" for i in insts]
        images.append((partial(_draw_toy, weights, labels), f"figures/{_chart_id(src, 'toy')}.png"))
    rows = [
        [_fmt(i.get("sparsity")), _fmt(i.get("loss")), _fmt(i.get("dimensions_per_feature")),
         _fmt(i.get("represented"))]
        for i in insts
    ]  # fmt: skip
    return ReportSection(
        f"Toy model: {src.name}", src.kind, src.name,
        f"A toy model of superposition ({cfg.get('model', 'relu-output')}): W^T W and feature "
        "norms per sparsity, drawn from the saved weights.",
        charts=charts, images=images,
        tables=[Table(["sparsity", "loss", "dimensions per feature", "represented"], rows)],
    )  # fmt: skip


def _draw_toy(weights: Path, labels: list[str], path: Path) -> None:
    """The toy tour's W^T W / feature-norm figure (report.toy_figures) from saved weights."""
    from safetensors.torch import load_file

    from polysemy.report import toy_figures
    from polysemy.toy import metrics

    W = load_file(str(weights))["W"].double()  # (n_instances, n_hidden, n_features)
    toy_figures.plot_superposition_sweep(W, metrics.superposition(W), labels, path)


def section_toy_report(src: Source, config: Any) -> ReportSection:
    rec = src.record
    images: list[tuple[Callable[[Path], object], str]] = [
        (partial(shutil.copyfile, p), f"figures/{_chart_id(src, p.stem)}.png")
        for p in sorted(src.path.glob("*.png"))
    ]
    rows = [
        [str(e.get("title") or e.get("name", "")),
         f"{sum(bool(c.get('passed')) for c in e.get('checks', []))} of {len(e.get('checks', []))}"]
        for e in rec.get("experiments", []) if isinstance(e, dict)
    ]  # fmt: skip
    return ReportSection(
        f"Toy tour: {src.name}", src.kind, src.name,
        f"Reproductions of 'Toy Models of Superposition': {rec.get('checks_passed')} of "
        f"{rec.get('checks_total')} checks pass (its own page: {src.name}/index.html).",
        images=images,
        tables=[Table(["experiment", "checks passed"], rows)] if rows else [],
    )  # fmt: skip


def _section_drift(src: Source, config: Any) -> ReportSection:
    from polysemy.report.drift_section import section_drift  # it imports this module

    return section_drift(src, config)


def _section_organism(src: Source, config: Any) -> ReportSection:
    from polysemy.report.drift_section import section_organism

    return section_organism(src, config)


def section_circuits(src: Source, config: Any) -> ReportSection:
    from polysemy.report.circuits_section import section_circuits  # it imports this module

    return section_circuits(src, config)


_ORDER: tuple[tuple[str, Callable[[Source, Any], ReportSection]], ...] = (
    ("sae", section_sae),
    ("analysis:fidelity", section_fidelity),
    ("analysis:neurons", section_neurons),
    ("analysis:features", section_features),
    ("analysis:geometry", section_geometry),
    ("analysis:ablate", section_ablate),
    ("analysis:probes", section_probes),
    ("analysis:edits", section_edits),
    ("analysis:circuits", section_circuits),
    ("analysis:claims", section_claims),
    ("organism", _section_organism),
    ("analysis:drift", _section_drift),
    ("toy", section_toy),
    ("toy-report", section_toy_report),
)


def sections_for(sources: Sources, config: Any) -> list[ReportSection]:
    """One section per source, in pipeline order; other analysis kinds get their summary
    table; activation stores are listed in the introduction, not given a section."""
    known = {k for k, _ in _ORDER}
    out = []
    for kind, build in _ORDER:
        out += [_built(build, src, config) for src in sources.of(kind)]
    for src in sources.items:
        if src.kind.startswith("analysis:") and src.kind not in known:
            out.append(_built(section_generic, src, config))
    return out


def _built(
    build: Callable[[Source, Any], ReportSection], src: Source, config: Any
) -> ReportSection:
    """One section; a folder this version cannot read (a newer or hand-edited format) is
    reported as such in its own section rather than losing the whole report."""
    try:
        return build(src, config)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OSError) as exc:
        logger.warning("report: could not read %s (%s): %s", src.name, src.kind, exc)
        return ReportSection(
            f"Unreadable {src.kind}: {src.name}", src.kind, src.name,
            f"This folder could not be read by this version of polysemy "
            f"({type(exc).__name__}: {exc}); its files are untouched.",
        )  # fmt: skip
