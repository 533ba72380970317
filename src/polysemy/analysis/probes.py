"""Probes: does a labelled concept sit on one neuron, a few, a direction, or SAE features, and
does that reading survive a change of sample?

A probe may latch onto a neuron because its activity correlates with the concept on the
sample, not because it owns the concept; change the sample and the reading moves. So each
probe is fitted on the training rows of a store harvested from the `concepts` corpus and
scored three ways:

- on i.i.d. held-out rows (the store's last `heldout_fraction` of documents);
- on shifted data: sentences of template families never seen in training (`concepts:heldout`,
  harvested with the model when one is given) and any further store the user names;
- against a control task (Hewitt & Liang 2019, "Designing and Interpreting Probes with Control
  Tasks"): each word type (token id) gets a random label, drawn once with the concept's
  positive rate, and the same probe (selection included) is fitted to those labels.

Probe kinds, each a `LogisticProbe` on standardised inputs:

    neuron     the single neuron with the largest |μ₁ - μ₀| / σ (Cohen's d) on training rows
    neurons    the top `k` neurons by the same ranking
    direction  every neuron (the full activation): a direction
    feature    the single SAE feature with the largest Cohen's d (needs an SAE)
    features   the top `k` SAE features

Figures, each with a 95% bootstrap interval over documents (tokens of one sentence are not
independent, so sentences are resampled, not rows):

    accuracy        share of rows classified right, per evaluation set (beside `chance`, the
                    majority class's share)
    selectivity     (accuracy - chance) - (control accuracy - control chance), on the
                    i.i.d. held-out rows (paired); each task's chance is its majority share
    gap             accuracy(i.i.d.) - accuracy(shifted), per shifted set; verdict "effect"
                    when its interval lies outside ±`gap_tolerance`, "no effect" when inside

Labels come from `probe_data.concept_rows` (token level: the words carrying the concept;
sentence level: every row with its sentence's label). With `neurons`, a neurons analysis
folder, `chorus` names, for each neuron a probe leans on, the other features that neuron
carries (`chorus_flags`): a reading of that neuron is a reading of all of them.

Files: `weights.safetensors` (`<kind>.units`, `<kind>.coef` in original units,
`<kind>.intercept`) and `correct.safetensors` (`<set>.<kind>`: bool per row, `<set>.doc`).

>>> result = analyze_probes("acts/concepts-l3", concept="tense", sae=sae,
...                         shifted=("acts/heldout-l3",), out="analyses/probes")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

import torch
from torch import Tensor

from polysemy.analysis.folder import start_analysis, write_analysis
from polysemy.analysis.logistic import LogisticProbe, mean_difference, mean_difference_batched
from polysemy.analysis.probe_chorus import ChorusFlag, chorus_flags, read_neurons
from polysemy.analysis.probe_data import (
    LabelledRows,
    check_concept,
    concept_rows,
    control_labels,
    harvest_concepts,
    split_documents,
)
from polysemy.analysis.stats import Interval, Verdict, verdict
from polysemy.validation import (
    ParameterError,
    check_choice,
    check_float,
    check_int,
    configured,
)

logger = logging.getLogger(__name__)

ProbeKind = Literal["neuron", "neurons", "direction", "feature", "features"]
PROBE_KINDS: tuple[str, ...] = get_args(ProbeKind)
SAE_KINDS = ("feature", "features")
Level = Literal["token", "sentence"]


@dataclass(frozen=True)
class ProbesConfig:
    """Which concept to probe for, with which probes, evaluated on what."""

    concept: str = "tense"
    """Concept of the `concepts` corpus to probe for (polysemy.corpora.CONCEPTS)."""
    value: str | None = None
    """Label value counted positive (default: past, plural, negated, question for the
    grammatical concepts; for content concepts, the concept being present)."""
    level: Level = "token"
    """token: rows of the words that carry the concept; sentence: every row, labelled by its
    sentence."""
    kinds: tuple[str, ...] = PROBE_KINDS
    """Probes to fit: neuron, neurons (top k), direction (all neurons), feature and features
    (top k SAE features; skipped without an SAE)."""
    k: int = 8
    """Units the top-k probes read."""
    l2: float = 1e-3
    """L2 strength on standardised inputs."""
    max_iter: int = 100
    """L-BFGS iterations per probe."""
    max_rows: int = 100_000
    """Store rows read from each store (its first rows)."""
    heldout_fraction: float = 0.2
    """Share of the store's documents (its last ones) held out for the i.i.d. evaluation."""
    heldout_sentences: int = 1000
    """Sentences of concepts:heldout (template families never trained on) harvested with the
    model as shifted data (0: none; needs the model)."""
    shifted: tuple[str, ...] = ()
    """Further stores harvested from concepts, each a shifted evaluation set."""
    gap_tolerance: float = 0.02
    """Accuracy gaps and selectivities within +-this count as no effect."""
    resamples: int = 1000
    """Bootstrap resamples (of documents) per interval."""
    neurons: str | None = None
    """A neurons analysis folder (neurons.json): flag probe neurons that carry many features."""
    chorus_threshold: float = 2.0
    """Effective number of features from which a neuron counts as a chorus."""
    seed: int = 0
    """Seed of the control task's labels and of the bootstrap."""

    def __post_init__(self) -> None:
        check_concept(self.concept, self.value)
        check_choice("level", self.level, get_args(Level))
        if isinstance(self.kinds, str):
            object.__setattr__(self, "kinds", tuple(k for k in self.kinds.split(",") if k))
        object.__setattr__(self, "kinds", tuple(self.kinds))
        if not self.kinds or len(set(self.kinds)) != len(self.kinds):
            raise ParameterError(
                "kinds",
                f"probe kinds that do not repeat ({', '.join(PROBE_KINDS)})",
                list(self.kinds),
            )
        for kind in self.kinds:
            check_choice("kinds", kind, PROBE_KINDS)
        check_int("k", self.k, least=1)
        check_float("l2", self.l2, least=0.0)
        check_int("max_iter", self.max_iter, least=1)
        check_int("max_rows", self.max_rows, least=10)
        check_float("heldout_fraction", self.heldout_fraction, above=0.0, most=0.9)
        check_int("heldout_sentences", self.heldout_sentences, least=0)
        object.__setattr__(self, "shifted", tuple(self.shifted))
        check_float("gap_tolerance", self.gap_tolerance, least=0.0, most=1.0)
        check_int("resamples", self.resamples, least=100)
        check_float("chorus_threshold", self.chorus_threshold, least=1.0)
        check_int("seed", self.seed)


@dataclass(frozen=True)
class ProbeResult:
    """One probe kind, fitted and scored (fields: module docstring)."""

    kind: str
    units: tuple[int, ...]
    """Neurons or features read (empty for `direction`: all of them)."""
    accuracy: dict[str, Interval]
    """Per evaluation set: `iid`, then each shifted set."""
    chance: dict[str, float]
    control_accuracy: Interval
    selectivity: Interval
    selectivity_verdict: Verdict
    gaps: dict[str, Interval]
    gap_verdicts: dict[str, Verdict]
    chorus: tuple[ChorusFlag, ...] = ()
    probe: LogisticProbe | None = field(default=None, repr=False)
    correct: dict[str, Tensor] = field(default_factory=dict, repr=False)
    """Per evaluation set: whether each row was classified right (bool)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "units": list(self.units),
            "accuracy": {k: v.to_dict() for k, v in self.accuracy.items()},
            "chance": self.chance,
            "control_accuracy": self.control_accuracy.to_dict(),
            "selectivity": self.selectivity.to_dict(),
            "selectivity_verdict": self.selectivity_verdict,
            "gaps": {
                k: {**v.to_dict(), "verdict": self.gap_verdicts[k]} for k, v in self.gaps.items()
            },
            "chorus": [c.to_dict() for c in self.chorus],
        }


@dataclass(frozen=True)
class ProbesResult:
    """Every probe kind's accuracies, control, selectivity and gaps."""

    concept: str
    value: str | None
    level: str
    rows: dict[str, int]
    """Rows per set: `train`, `iid`, each shifted set."""
    positive_rate: dict[str, float]
    probes: tuple[ProbeResult, ...]
    skipped: tuple[str, ...] = ()
    """Kinds asked for but not fitted (feature kinds without an SAE)."""

    def probe(self, kind: str) -> ProbeResult:
        for p in self.probes:
            if p.kind == kind:
                return p
        raise KeyError(f"no {kind!r} probe; fitted {[p.kind for p in self.probes]}")

    def summary(self) -> dict[str, Any]:
        return {
            "concept": self.concept,
            "value": self.value,
            "level": self.level,
            "rows": self.rows,
            "positive_rate": self.positive_rate,
            "probes": [p.to_dict() for p in self.probes],
            "skipped": list(self.skipped),
            "null": {
                "control_task": "random label per word type, at the concept's positive rate "
                "(Hewitt & Liang 2019); selectivity = accuracy - control accuracy",
                "chance": "majority class share of each set",
            },
        }


# ---- inputs ---------------------------------------------------------------------------------


def _rows(source: Any, config: ProbesConfig, name: str | None = None) -> LabelledRows:
    if isinstance(source, LabelledRows):
        return source
    return concept_rows(source, config.concept, value=config.value, level=config.level,
                        max_rows=config.max_rows, name=name)  # fmt: skip


def _store_seed(store: Any) -> int:
    from polysemy.corpora.row_labels import parse_concepts_name

    return parse_concepts_name(str(store.source.get("corpus")))[2]


class _Columns:
    """What each probe kind reads from activation rows: neurons, or SAE features."""

    def __init__(self, sae: Any, device: Any, batch: int = 8192) -> None:
        self.sae, self.device, self.batch = sae, device, batch

    def features(self, x: Tensor, units: Tensor | None = None) -> Tensor:
        """SAE activations `[rows, units]` (all features when `units` is None), batched."""
        with torch.no_grad():
            return self._features(x, units)

    def _features(self, x: Tensor, units: Tensor | None) -> Tensor:
        out = []
        w = self.sae.W_dec
        for start in range(0, x.shape[0], self.batch):
            z = self.sae.encode(x[start : start + self.batch].to(device=w.device, dtype=w.dtype))
            out.append((z if units is None else z[:, units.to(z.device)]).float().cpu())
        return torch.cat(out)

    def feature_ranking(self, x: Tensor, y: Tensor) -> Tensor:
        def batches() -> Any:
            for start in range(0, x.shape[0], self.batch):
                yield self.features(x[start : start + self.batch]), y[start : start + self.batch]

        return mean_difference_batched(batches())

    def read(self, kind: str, units: Tensor | None, x: Tensor) -> Tensor:
        if kind in SAE_KINDS:
            return self.features(x, units)
        return x if units is None else x[:, units]


def _fit(
    kind: str, x: Tensor, y: Tensor, columns: _Columns, config: ProbesConfig
) -> tuple[Tensor | None, LogisticProbe]:
    """Select the kind's units on (x, y) and fit its probe."""
    units: Tensor | None = None
    if kind != "direction":
        score = columns.feature_ranking(x, y) if kind in SAE_KINDS else mean_difference(x, y)
        take = 1 if kind in ("neuron", "feature") else min(config.k, score.numel())
        units = score.argsort(descending=True)[:take]
    probe = LogisticProbe(l2=config.l2, max_iter=config.max_iter)
    probe.fit(columns.read(kind, units, x).to(columns.device), y.to(columns.device))
    return units, probe


def _correct(
    kind: str,
    units: Tensor | None,
    probe: LogisticProbe,
    rows: LabelledRows,
    y: Tensor,
    columns: _Columns,
) -> Tensor:
    pred = probe.predict(columns.read(kind, units, rows.x).to(columns.device)).cpu()
    return pred == y


# ---- statistics -----------------------------------------------------------------------------


def _doc_sums(values: list[Tensor], doc: Tensor) -> tuple[list[Tensor], Tensor]:
    """Per document: the sum of each bool/float row vector, and the number of rows."""
    _, inverse = torch.unique(doc, return_inverse=True)
    n_docs = int(inverse.max()) + 1
    count = torch.zeros(n_docs, dtype=torch.float64).index_add_(
        0, inverse, torch.ones(doc.numel(), dtype=torch.float64)
    )
    sums = [
        torch.zeros(n_docs, dtype=torch.float64).index_add_(0, inverse, v.double()) for v in values
    ]
    return sums, count


def _bootstrap(values: list[Tensor], doc: Tensor, resamples: int, seed: int) -> Tensor:
    """`[len(values), resamples]` ratio-of-sums means of each row vector over the same
    resampled documents (a cluster bootstrap: paired across `values`)."""
    sums, count = _doc_sums(values, doc)
    stacked = torch.stack(sums)  # (V, docs)
    g = torch.Generator().manual_seed(seed)
    out = []
    chunk = max(1, 2_000_000 // max(1, count.numel()))
    for start in range(0, resamples, chunk):
        idx = torch.randint(
            0, count.numel(), (min(chunk, resamples - start), count.numel()), generator=g
        )
        out.append(stacked[:, idx].sum(-1) / count[idx].sum(-1))  # (V, chunk)
    return torch.cat(out, dim=1)


def _interval(estimate: float, draws: Tensor, n: int) -> Interval:
    low, high = torch.quantile(draws.double(), torch.tensor([0.025, 0.975], dtype=torch.float64))
    return Interval(estimate, float(low), float(high), 0.95, n, "bootstrap over documents")


def _tolerance(config: ProbesConfig) -> Interval:
    t = config.gap_tolerance
    return Interval(0.0, -t, t, 0.95, 0, "tolerance")


# ---- the analysis ---------------------------------------------------------------------------


def analyze_probes(
    acts: Any,
    config: ProbesConfig | None = None,
    *,
    sae: Any = None,
    model: Any = None,
    sets: Mapping[str, Any] | None = None,
    out: str | os.PathLike[str] | None = None,
    force: bool = False,
    device: str | torch.device = "cpu",
    inputs: Mapping[str, Any] | None = None,
    **options: Any,
) -> ProbesResult:
    """Fit and score each probe kind for `config.concept` (module docstring).

    `acts` is a store harvested from the `concepts` corpus (folder or `ActivationStore`) or
    `LabelledRows` (rows with labels of your own, e.g. a planted store). `model` (a
    `LoadedModel`) lets `heldout_sentences` of `concepts:heldout` be harvested at the store's
    site as shifted data; `sets` adds named shifted sets (stores or `LabelledRows`) to the
    stores of `config.shifted`. With `out`, writes a `probes` analysis folder. Raises ParameterError
    naming `concept`, `kinds`, `sae`, `shifted`, `acts` or `neurons`.
    """
    config = configured(ProbesConfig, config, options)
    if out is not None:
        start_analysis(out, force=force)
    kinds = [k for k in config.kinds if sae is not None or k not in SAE_KINDS]
    skipped = tuple(k for k in config.kinds if k not in kinds)
    if not kinds:
        raise ParameterError("sae", "given for feature probes (or ask for neuron kinds)", None)
    rows = _rows(acts, config)
    d_in = int(rows.x.shape[1])
    if sae is not None:
        from polysemy.analysis.replay import sae_width

        if sae_width(sae) != d_in:
            raise ParameterError(
                "sae", f"an SAE with d_in={d_in} (the store's width)", sae_width(sae)
            )
    neurons = read_neurons(config.neurons) if config.neurons is not None else None
    train, iid = split_documents(rows, config.heldout_fraction)
    evaluation: dict[str, LabelledRows] = {"iid": iid}
    if model is not None and config.heldout_sentences > 0 and not isinstance(acts, LabelledRows):
        from polysemy.activations.store import ActivationStore

        store = acts if isinstance(acts, ActivationStore) else ActivationStore(acts)
        seq_len = int(store.source.get("seq_len", 128))
        held = harvest_concepts(model, str(store.source["site"]),
                                f"concepts:heldout:{config.heldout_sentences}",
                                seed=_store_seed(store), seq_len=seq_len)  # fmt: skip
        evaluation["concepts:heldout"] = _rows(held, config, name="concepts:heldout")
    elif config.heldout_sentences > 0 and not isinstance(acts, LabelledRows):
        logger.info("no model given: concepts:heldout is not harvested (no shifted families)")
    for path in config.shifted:
        evaluation[str(path)] = _rows(path, config)
    for name, source in (sets or {}).items():
        evaluation[name] = _rows(source, config, name=name)
    for name, s in evaluation.items():
        if s.x.shape[1] != d_in:
            raise ParameterError(
                "shifted", f"stores of width {d_in} like acts", f"{name} of width {s.x.shape[1]}"
            )
        if name != "iid" and (bool(s.y.all()) or not bool(s.y.any())):
            raise ParameterError("shifted", "sets holding both classes of the label", name)
    if bool(train.y.all()) or not bool(train.y.any()) or train.y.numel() < 4:
        raise ParameterError(
            "concept", "a label with both classes among the training rows", config.concept
        )

    sets = evaluation
    rate = float(train.y.double().mean())
    columns = _Columns(sae, device)
    control_train = control_labels(train.word, rate, seed=config.seed)
    control_iid = control_labels(iid.word, rate, seed=config.seed)
    results = []
    for kind in kinds:
        units, probe = _fit(kind, train.x, train.y, columns, config)
        correct = {name: _correct(kind, units, probe, s, s.y, columns) for name, s in sets.items()}
        if bool(control_train.all()) or not bool(control_train.any()):
            control_correct = (control_iid == bool(control_train[0])).clone()
        else:
            c_units, c_probe = _fit(kind, train.x, control_train, columns, config)
            control_correct = _correct(kind, c_units, c_probe, iid, control_iid, columns)
        results.append(
            _score(kind, units, probe, correct, (control_correct, control_iid), sets, config)
        )
    if neurons is not None:
        results = [_with_chorus(r, results, neurons, config) for r in results]
    result = ProbesResult(
        concept=config.concept,
        value=config.value,
        level=config.level,
        rows={"train": int(train.y.numel()), **{k: int(v.y.numel()) for k, v in sets.items()}},
        positive_rate={"train": rate, **{k: float(v.y.double().mean()) for k, v in sets.items()}},
        probes=tuple(results),
        skipped=skipped,
    )
    if out is not None:
        weights: dict[str, Tensor] = {}
        for r in results:
            assert r.probe is not None
            weights[f"{r.kind}.units"] = torch.tensor(r.units, dtype=torch.int64)
            weights[f"{r.kind}.coef"] = r.probe.coef_.detach().float().cpu().contiguous()
            weights[f"{r.kind}.intercept"] = torch.tensor([r.probe.intercept_])
        record = {
            "acts": rows.name,
            "sets": {k: v.name for k, v in sets.items()},
            "sae": None
            if sae is None
            else str((getattr(sae, "metadata", None) or {}).get("path", type(sae).__name__)),
            "config": asdict(config),
            **dict(inputs or {}),
        }
        files = {
            "weights.safetensors": weights,
            "correct.safetensors": _correct_file(results, sets),
        }
        write_analysis(out, "probes", inputs=record, summary=result.summary(), files=files)
    return result


def _correct_file(
    results: list[ProbeResult], sets: Mapping[str, LabelledRows]
) -> dict[str, Tensor]:
    out = {f"{name}.doc": s.doc.contiguous() for name, s in sets.items()}
    for r in results:
        for name in sets:
            out[f"{name}.{r.kind}"] = r.correct[name].contiguous()
    return out


def _score(
    kind: str,
    units: Tensor | None,
    probe: LogisticProbe,
    correct: dict[str, Tensor],
    control: tuple[Tensor, Tensor],
    sets: Mapping[str, LabelledRows],
    config: ProbesConfig,
) -> ProbeResult:
    """Intervals of one kind's figures; `control` is (control probe correct, control labels)
    on the i.i.d. rows."""
    iid = sets["iid"]
    control_correct, control_y = control
    draws: dict[str, Tensor] = {}
    accuracy: dict[str, Interval] = {}
    for i, (name, s) in enumerate(sets.items()):
        values = [correct[name]] + ([control_correct, s.y, control_y] if name == "iid" else [])
        d = _bootstrap(values, s.doc, config.resamples, config.seed + i)
        draws[name] = d[0]
        accuracy[name] = _interval(float(correct[name].double().mean()), d[0], s.y.numel())
        if name == "iid":
            iid_draws = d
    control_acc = _interval(float(control_correct.double().mean()), iid_draws[1], iid.y.numel())

    def excess(acc: Tensor, rate: Tensor) -> Tensor:  # accuracy above the majority share
        return acc - torch.maximum(rate, 1 - rate)

    def whole(v: Tensor) -> Tensor:
        return v.double().mean()[None]

    # Each task against its own majority share: the control labels' positive rate on these
    # rows drifts from the concept's with the few word types drawn, and raw accuracies would
    # carry that drift into the selectivity.
    estimate = excess(whole(correct["iid"]), whole(iid.y)) - excess(
        whole(control_correct), whole(control_y)
    )
    selectivity = _interval(
        float(estimate),
        excess(iid_draws[0], iid_draws[2]) - excess(iid_draws[1], iid_draws[3]),
        iid.y.numel(),
    )
    gaps, gap_verdicts = {}, {}
    for name in sets:
        if name == "iid":
            continue
        gap = _interval(
            accuracy["iid"].estimate - accuracy[name].estimate,
            draws["iid"] - draws[name],
            iid.y.numel() + sets[name].y.numel(),
        )
        gaps[name], gap_verdicts[name] = gap, verdict(gap, _tolerance(config))
    chance = {
        name: max(float(s.y.double().mean()), 1 - float(s.y.double().mean()))
        for name, s in sets.items()
    }
    return ProbeResult(
        kind=kind,
        units=() if units is None else tuple(int(u) for u in units),
        accuracy=accuracy,
        chance=chance,
        control_accuracy=control_acc,
        selectivity=selectivity,
        selectivity_verdict=verdict(selectivity, _tolerance(config)),
        gaps=gaps,
        gap_verdicts=gap_verdicts,
        probe=probe,
        correct=correct,
    )


# ---- chorus neurons -------------------------------------------------------------------------


def _with_chorus(
    r: ProbeResult, results: list[ProbeResult], neurons: Mapping[int, Any], config: ProbesConfig
) -> ProbeResult:
    if r.kind in SAE_KINDS or r.probe is None:
        return r
    own = next((p.units[0] for p in results if p.kind == "feature" and p.units), None)
    units = None if r.kind == "direction" else torch.tensor(r.units)
    flags = chorus_flags(r.kind, r.probe.coef_std_, units, neurons,
                         threshold=config.chorus_threshold, own_feature=own)  # fmt: skip
    return dataclasses.replace(r, chorus=tuple(flags))
