"""Edits: does a feature, neuron or direction change when one concept of the sentence is
edited, more than when an unlabelled word is, and more than when other concepts are?

An interpretation ("feature 812 is past tense") predicts what a small, targeted edit does:
changing the sentence's tense should move the target; swapping a free word for a synonym
(the control edit) should not, and neither should edits of other concepts. The edits come from
the `concepts` corpus (each sentence has one counterfactual twin per labelled concept and one
control twin) or from a JSON-lines file of `{"text", "twin", "concept"}` (`concept` null or
`"control"` for a control edit).

Each text runs through the model up to the site; the target's value per text token is
pooled over the sentence (`max` or `mean`):

    feature f   z_f = encode(x)[f]          neuron n   x_n          direction d   x · d / ||d||

and each pair gives Δ = v(twin) - v(text). With |Δ_c| the pairs that edit concept c and
|Δ_0| the control pairs:

    effect(c)    mean |Δ_c| - mean |Δ_0|, with a two-sample bootstrap interval
    null(c)      the same difference with the pairs' edit labels permuted between c and the
                 control (`permutations` times): its central 95% range
    verdict      `verdict(effect interval, null range)`

Each concept's entry also splits mean |Δ_c| by whether the target is active (value > 0) on
the text or its twin (`mean_abs_active`) or on neither (`mean_abs_silent`).

`sensitivity` is the targeted concept's effect; `specificity` is the share of the other
concepts (with at least `min_pairs` pairs) whose verdict is not "effect", and `leak` names
the other concept with the largest effect and its size relative to the sensitivity. As a
check on the test itself, `control_split` splits the control pairs at random into two halves
and judges one against the other exactly as a concept is (truth: no effect).

Files: `deltas.safetensors`: `delta [targets, pairs]` (signed Δ), `concept [pairs]` (index
into the summary's `concepts`, -1 for control edits), `sentence [pairs]`.

>>> result = analyze_edits(loaded, concept="tense", targets=("neuron:7",), sae=sae,
...                        out="analyses/edits")                        # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor

from polysemy.analysis.folder import start_analysis, write_analysis
from polysemy.analysis.replay import (
    check_sae_fits,
    encode_examples,
    pad_examples,
    pad_id,
    resolve_site,
    sae_site,
)
from polysemy.analysis.stats import (
    Interval,
    Verdict,
    null_interval,
    quantiles,
    verdict,
)
from polysemy.analysis.targets import parse_target
from polysemy.models.loading import LoadedModel
from polysemy.models.sites import read_sites
from polysemy.validation import ParameterError, check_choice, check_int, configured

logger = logging.getLogger(__name__)

Pool = Literal["max", "mean"]


@dataclass(frozen=True)
class EditsConfig:
    """Which concept's edits, which targets, on which sentences."""

    concept: str = "tense"
    """Concept whose edits are the targeted ones (a `concepts` concept, or one named in the
    twins file)."""
    targets: tuple[str, ...] = ()
    """Targets as a comma list: feature:F (needs an SAE) and neuron:N."""
    direction: str | None = None
    """A direction target: a .npy/.safetensors vector of the site's width, or a probes
    analysis folder (its direction probe's weights)."""
    site: str | None = None
    """Site to read (None: the site the SAE's checkpoint was harvested from)."""
    sentences: int = 500
    """Sentences of the concepts corpus whose twins are the edits (without a twins file)."""
    split: Literal["train", "heldout"] = "heldout"
    """Split of the concepts corpus the sentences come from."""
    twins: str | None = None
    """A JSON-lines file of {"text", "twin", "concept"} edits instead of the concepts corpus
    (concept null or "control" marks a control edit)."""
    pool: Pool = "max"
    """How a text's per-token values become one: max or mean over its text tokens."""
    seq_len: int = 64
    """Tokens per text, special tokens included (longer texts are cut)."""
    batch_size: int = 64
    """Texts per forward pass."""
    resamples: int = 1000
    """Bootstrap resamples per interval."""
    permutations: int = 1000
    """Label permutations per null."""
    min_pairs: int = 20
    """Concepts with fewer edit pairs are not tested."""
    seed: int = 0
    """Seed of the bootstrap, the permutations and the control split."""

    def __post_init__(self) -> None:
        if not isinstance(self.concept, str) or not self.concept or self.concept == "control":
            raise ParameterError("concept", "a concept name", self.concept)
        if isinstance(self.targets, str):
            object.__setattr__(self, "targets", tuple(t for t in self.targets.split(",") if t))
        object.__setattr__(self, "targets", tuple(self.targets))
        for t in self.targets:
            parse_target(t)
        if len(set(self.targets)) != len(self.targets):
            raise ParameterError("targets", "targets that do not repeat", list(self.targets))
        check_int("sentences", self.sentences, least=1)
        check_choice("split", self.split, ("train", "heldout"))
        check_choice("pool", self.pool, ("max", "mean"))
        check_int("seq_len", self.seq_len, least=3)
        check_int("batch_size", self.batch_size, least=1)
        check_int("resamples", self.resamples, least=100)
        check_int("permutations", self.permutations, least=100)
        check_int("min_pairs", self.min_pairs, least=2)
        check_int("seed", self.seed)


class EditPair(NamedTuple):
    """A text and its edited twin."""

    text: str
    twin: str
    concept: str | None
    """The edited concept; None for a control edit."""
    sentence: int
    """Which source sentence (pairs of one sentence share it)."""


def concept_pairs(n: int, *, split: str = "heldout", seed: int = 0) -> list[EditPair]:
    """Every twin of the first `n` sentences of the `concepts` corpus, as pairs."""
    from polysemy.corpora.concepts import generate_concepts

    pairs = []
    for s in generate_concepts(n, seed=seed, split=split):  # type: ignore[arg-type]
        pairs += [EditPair(s.text, t.text, t.concept, s.index) for t in s.twins]
    return pairs


def read_twins(path: str | os.PathLike[str]) -> list[EditPair]:
    """Pairs from a JSON-lines file of `{"text", "twin", "concept"}` (blank lines skipped);
    ValueError naming `twins` and the line number at the first malformed line."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"twins {str(path)!r} does not exist")
    pairs = []
    for number, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"twins line {number}: not JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(
                f"twins line {number}: expected an object, got {type(record).__name__}"
            )
        text, twin, concept = record.get("text"), record.get("twin"), record.get("concept")
        if not isinstance(text, str) or not isinstance(twin, str) or not text or not twin:
            raise ValueError(f'twins line {number}: "text" and "twin" must be non-empty strings')
        if concept is not None and (not isinstance(concept, str) or not concept):
            raise ValueError(f'twins line {number}: "concept" must be a string or null')
        pairs.append(EditPair(text, twin, None if concept == "control" else concept, number))
    if not pairs:
        raise ValueError(f"twins {str(path)!r} holds no edits")
    return pairs


@dataclass(frozen=True)
class ConceptEffect:
    """One target's response to one concept's edits against the control edits."""

    concept: str
    pairs: int
    effect: Interval
    """mean |Δ_c| - mean |Δ_0|, bootstrap interval."""
    null: Interval
    """Central range of the difference under permuted edit labels."""
    verdict: Verdict
    mean_abs: float
    """mean |Δ_c|."""
    quantiles: dict[str, float]
    """Quantiles of the signed Δ_c."""
    active: int = 0
    """Pairs where the target is active (value > 0) on the text or its twin."""
    mean_abs_active: float | None = None
    """mean |Δ_c| over those pairs (None: none)."""
    mean_abs_silent: float | None = None
    """mean |Δ_c| over the other pairs (None: none)."""

    def to_dict(self) -> dict[str, Any]:
        return {"concept": self.concept, "pairs": self.pairs, "effect": self.effect.to_dict(),
                "null_range": [self.null.low, self.null.high], "verdict": self.verdict,
                "mean_abs": self.mean_abs, "quantiles": self.quantiles, "active": self.active,
                "mean_abs_active": self.mean_abs_active,
                "mean_abs_silent": self.mean_abs_silent}  # fmt: skip


@dataclass(frozen=True)
class TargetEdits:
    """One target: sensitivity, specificity and the control-split check."""

    target: str
    sensitivity: ConceptEffect
    others: tuple[ConceptEffect, ...]
    specificity: float | None
    """Share of other tested concepts not called an effect (None: none tested)."""
    leak: str | None
    """The other concept with the largest effect."""
    leak_ratio: float | None
    """Its effect over the sensitivity (None when the sensitivity is not positive)."""
    control_split: ConceptEffect
    control_mean_abs: float
    control_quantiles: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "sensitivity": self.sensitivity.to_dict(),
            "specificity": self.specificity,
            "leak": self.leak,
            "leak_ratio": self.leak_ratio,
            "others": [o.to_dict() for o in self.others],
            "control": {"mean_abs": self.control_mean_abs, "quantiles": self.control_quantiles},
            "control_split": self.control_split.to_dict(),
        }


@dataclass(frozen=True)
class EditsResult:
    """Each target's response to the targeted concept's edits and to the others'."""

    site: str
    concept: str
    pairs: dict[str, int]
    """Pairs per edited concept (`control` for the control edits)."""
    results: tuple[TargetEdits, ...]
    deltas: Tensor = field(repr=False)
    """`[targets, pairs]` signed Δ."""
    pair_concept: Tensor = field(repr=False)
    """`[pairs]` index into `concepts` (-1: control)."""
    concepts: tuple[str, ...] = ()

    def target(self, name: str) -> TargetEdits:
        for r in self.results:
            if r.target == name:
                return r
        raise KeyError(f"no target {name!r}; have {[r.target for r in self.results]}")

    def summary(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "concept": self.concept,
            "pairs": self.pairs,
            "concepts": list(self.concepts),
            "results": [r.to_dict() for r in self.results],
            "null": "the same difference with edit labels permuted between the concept's "
            "pairs and the control pairs (central 95%)",
        }


# ---- targets and readout --------------------------------------------------------------------


def load_direction(path: str | os.PathLike[str]) -> Tensor:
    """A direction from a .npy/.safetensors vector, or a probes analysis folder's direction
    probe (`weights.safetensors`, `direction.coef`)."""
    p = Path(path)
    if p.is_dir():
        weights = p / "weights.safetensors"
        if not weights.is_file():
            raise ParameterError(
                "direction", "a probes analysis folder (weights.safetensors)", str(p)
            )
        from safetensors.torch import load_file

        tensors = load_file(str(weights))
        if "direction.coef" not in tensors:
            raise ParameterError("direction", "a probes folder with a direction probe", str(p))
        return tensors["direction.coef"].double()
    from polysemy.analysis.ablation import load_readout

    try:
        return load_readout(p)
    except (FileNotFoundError, ValueError) as exc:
        raise ParameterError(
            "direction", "a .npy/.safetensors vector or probes folder", str(exc)
        ) from None


def _target_matrix(
    config: EditsConfig, sae: Any, width: int, direction: Tensor | None
) -> tuple[list[str], Tensor | None, list[int]]:
    """(names, readout matrix [width, neuron/direction targets] or None, SAE feature ids),
    checking every index; ParameterError naming `targets`, `sae` or `direction`."""
    names, columns, features = [], [], []
    for text in config.targets:
        kind, index = parse_target(text)
        if kind == "feature":
            if sae is None:
                raise ParameterError("sae", "given for feature targets", None)
            d_sae = int(sae.W_dec.shape[0])
            if index >= d_sae:
                raise ParameterError("targets", f"features below d_sae={d_sae}", text)
            features.append(index)
        else:
            if index >= width:
                raise ParameterError("targets", f"neurons below the site's width {width}", text)
            e = torch.zeros(width, dtype=torch.float64)
            e[index] = 1.0
            columns.append(e)
            names.append(text)
    if direction is not None:
        d = direction.reshape(-1).double()
        if d.numel() != width or float(d.norm()) == 0:
            raise ParameterError(
                "direction", f"a non-zero vector of {width} numbers", f"{d.numel()} numbers"
            )
        columns.append(d / d.norm())
        names.append("direction")
    names = names + [f"feature:{f}" for f in features]
    if not names:
        raise ParameterError("targets", "at least one of feature:F, neuron:N or a direction", "")
    matrix = torch.stack(columns, dim=1) if columns else None  # (width, linear targets)
    return names, matrix, features


@torch.inference_mode()
def _readout(
    loaded: LoadedModel,
    site: Any,
    texts: list[str],
    matrix: Tensor | None,
    sae: Any,
    features: list[int],
    config: EditsConfig,
) -> Tensor:
    """`[texts, targets]` pooled value of every target on every text."""
    model = loaded.model
    device = next(iter(model.parameters())).device
    examples = encode_examples(loaded.tokenizer, texts, seq_len=config.seq_len, min_tokens=0)
    if len(examples) != len(texts):
        raise ValueError("every text must tokenize")  # min_tokens=0 keeps them all
    pad = pad_id(loaded.tokenizer)
    out = []
    with read_sites(loaded, [site], early_exit=True) as reader:
        for start in range(0, len(examples), config.batch_size):
            batch = pad_examples(examples[start : start + config.batch_size], pad, device)
            x = reader.run(input_ids=batch.input_ids, attention_mask=batch.attention_mask)[
                site.name
            ]
            x = x.float()  # (B, seq, width)
            parts = []
            if matrix is not None:
                parts.append(x.double() @ matrix.to(device))  # (B, seq, linear targets)
            if features:
                w = sae.W_dec
                z = sae.encode(x.reshape(-1, x.shape[-1]).to(w.dtype))[:, features]
                parts.append(z.reshape(*x.shape[:2], -1).double())
            values = torch.cat(parts, dim=-1)  # (B, seq, targets)
            mask = batch.text[..., None]  # (B, seq, 1)
            if config.pool == "max":
                pooled = values.masked_fill(~mask, float("-inf")).amax(1)
                pooled = torch.where(mask.any(1), pooled, torch.zeros_like(pooled))
            else:
                pooled = (values * mask).sum(1) / mask.sum(1).clamp_min(1)
            out.append(pooled.cpu())
    return torch.cat(out)


# ---- statistics -----------------------------------------------------------------------------


def _difference(a: Tensor, b: Tensor, config: EditsConfig, seed: int) -> tuple[Interval, Interval]:
    """(bootstrap interval of mean(a) - mean(b), permutation null range of the same)."""
    g = torch.Generator().manual_seed(seed)
    ia = torch.randint(0, a.numel(), (config.resamples, a.numel()), generator=g)
    ib = torch.randint(0, b.numel(), (config.resamples, b.numel()), generator=g)
    draws = a[ia].mean(1) - b[ib].mean(1)
    estimate = float(a.mean() - b.mean())
    low, high = torch.quantile(draws, torch.tensor([0.025, 0.975], dtype=draws.dtype))
    ci = Interval(estimate, float(low), float(high), 0.95, a.numel() + b.numel(), "bootstrap")
    pooled = torch.cat([a, b])
    perms = torch.rand(config.permutations, pooled.numel(), generator=g).argsort(dim=1)
    shuffled = pooled[perms]  # (permutations, n)
    null = shuffled[:, : a.numel()].mean(1) - shuffled[:, a.numel() :].mean(1)
    return ci, null_interval(null, method="permutation")


def _effect(
    name: str,
    delta: Tensor,
    control: Tensor,
    config: EditsConfig,
    seed: int,
    active: Tensor | None = None,
) -> ConceptEffect:
    ci, null = _difference(delta.abs(), control.abs(), config, seed)
    on = torch.zeros_like(delta, dtype=torch.bool) if active is None else active

    def mean(mask: Tensor) -> float | None:
        return float(delta[mask].abs().mean()) if bool(mask.any()) else None

    return ConceptEffect(name, int(delta.numel()), ci, null, verdict(ci, null),
                         float(delta.abs().mean()), quantiles(delta), int(on.sum()),
                         mean(on), mean(~on))  # fmt: skip


def _judge(
    target: str, delta: Tensor, active: Tensor, labels: list[str | None], config: EditsConfig
) -> TargetEdits:
    """`delta [pairs]` of one target, grouped by the edited concept; `active [pairs]`: the
    target is active on the text or its twin."""
    control_mask = torch.tensor([c is None for c in labels])
    control = delta[control_mask]
    if control.numel() < 4:
        raise ParameterError("twins", "edits with at least 4 control pairs", int(control.numel()))
    by_concept: dict[str, Tensor] = {}
    for c in sorted({c for c in labels if c is not None}):
        by_concept[c] = torch.tensor([x == c for x in labels])
    own = by_concept[config.concept]
    sensitivity = _effect(config.concept, delta[own], control, config, config.seed, active[own])
    others = tuple(
        _effect(c, delta[m], control, config, config.seed + 1 + i, active[m])
        for i, (c, m) in enumerate(by_concept.items())
        if c != config.concept and int(m.sum()) >= config.min_pairs
    )
    g = torch.Generator().manual_seed(config.seed + 7)
    order = torch.randperm(control.numel(), generator=g)
    half = control.numel() // 2
    split = _effect(
        "control split", control[order[:half]], control[order[half:]], config, config.seed + 99
    )
    specificity = sum(o.verdict != "effect" for o in others) / len(others) if others else None
    leak = max(others, key=lambda o: o.effect.estimate) if others else None
    ratio = None
    if leak is not None and sensitivity.effect.estimate > 0:
        ratio = leak.effect.estimate / sensitivity.effect.estimate
    return TargetEdits(
        target, sensitivity, others, specificity, None if leak is None else leak.concept,
        ratio, split, float(control.abs().mean()), quantiles(control),
    )  # fmt: skip


# ---- the analysis ---------------------------------------------------------------------------


def analyze_edits(
    loaded: LoadedModel,
    config: EditsConfig | None = None,
    *,
    sae: Any = None,
    pairs: list[EditPair] | None = None,
    direction_vector: Tensor | None = None,
    out: str | os.PathLike[str] | None = None,
    force: bool = False,
    **options: Any,
) -> EditsResult:
    """Measure each target's change under the concept's edits, the other concepts' edits and
    the control edits (module docstring). `pairs` (or `config.twins`) replaces the concepts
    corpus's twins; `direction_vector` (`[width]`) overrides `config.direction`. With `out`, writes
    an `edits` analysis folder. Raises ParameterError naming `concept`, `targets`, `site`,
    `sae`, `direction` or `twins`; ValueError naming `twins` and a line for a malformed file."""
    config = configured(EditsConfig, config, options)
    site = resolve_site(loaded, sae_site(sae, config.site) if sae is not None else config.site)
    if sae is not None:
        check_sae_fits(sae, site)
        if hasattr(sae, "eval"):
            sae.eval()
    direction = direction_vector
    if direction is None and config.direction is not None:
        direction = load_direction(config.direction)
    names, matrix, features = _target_matrix(config, sae, site.width, direction)
    if pairs is None:
        if config.twins is not None:
            pairs = read_twins(config.twins)
        else:
            from polysemy.corpora.concepts import CONCEPTS

            if config.concept not in CONCEPTS:
                raise ParameterError("concept", f"one of {', '.join(CONCEPTS)}", config.concept)
            pairs = concept_pairs(config.sentences, split=config.split, seed=config.seed)
    labels = [p.concept for p in pairs]
    counts = {c: labels.count(c) for c in sorted({c for c in labels if c is not None})}
    if counts.get(config.concept, 0) < 2:
        raise ParameterError(
            "concept", f"a concept the edits hold ({', '.join(counts)})", config.concept
        )
    if out is not None:
        start_analysis(out, force=force)
    texts = sorted({t for p in pairs for t in (p.text, p.twin)})
    index = {t: i for i, t in enumerate(texts)}
    values = _readout(loaded, site, texts, matrix, sae, features, config)  # (texts, targets)
    a = torch.tensor([index[p.text] for p in pairs])
    b = torch.tensor([index[p.twin] for p in pairs])
    deltas = (values[b] - values[a]).T.contiguous()  # (targets, pairs)
    active = ((values[a] > 0) | (values[b] > 0)).T  # (targets, pairs)
    results = tuple(_judge(n, deltas[i], active[i], labels, config) for i, n in enumerate(names))
    concepts = tuple(counts)
    pair_concept = torch.tensor([-1 if c is None else concepts.index(c) for c in labels])
    result = EditsResult(
        site=site.name,
        concept=config.concept,
        pairs={**counts, "control": labels.count(None)},
        results=results,
        deltas=deltas,
        pair_concept=pair_concept,
        concepts=concepts,
    )
    if out is not None:
        inputs = {
            "model": loaded.name,
            "site": site.name,
            "sae": None
            if sae is None
            else str((getattr(sae, "metadata", None) or {}).get("path", type(sae).__name__)),
            "edits": config.twins or f"concepts:{config.split}:{config.sentences}",
            "targets": names,
            "config": asdict(config),
        }
        sentence = torch.tensor([p.sentence for p in pairs])
        tensors = {"delta": deltas.float(), "concept": pair_concept, "sentence": sentence}
        files = {"deltas.safetensors": tensors}
        write_analysis(out, "edits", inputs=inputs, summary=result.summary(), files=files)
    return result
