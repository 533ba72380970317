"""Calibration of the overlap/co-occurrence test where the answer is known.

Cases (each run over many seeds; a rate is reported with its exact binomial interval):

- `synth-independent`: planted features (`polysemy.synth`, `correlation=0`) with their true
  directions and true firing. Directions are drawn independently of firing, so the truth is
  "no relation": a verdict of `effect` is a false positive, and the rho interval should hold 0.
- `synth-groups`: the same with features firing in correlated groups (`group_size=4`,
  `correlation=0.8`): co-occurrence now has strong structure, directions still none, so the
  truth is again "no relation" (a harder null: many pairs share a feature's group).
- `synth-groups-orthogonal` / `synth-groups-aligned`: the same groups, with planted directions
  of known overlap (`generate_chunks(features=...)`): members of a group mutually orthogonal
  (truth: rho < 0, overlap falls where co-occurrence rises) or sharing a common direction
  (cos about 0.6 within a group; truth: rho > 0). Detection = `effect` with the known sign.
- `toy-independent`: toy models (`polysemy.toy`, relu-output) on independent features; their
  firing is independent, so "no relation".
- `toy-correlated` / `toy-anticorrelated`: features in pairs that always / never fire
  together. Elhage et al. 2022 (section "Correlated and Anticorrelated Features") and
  docs/toy.md: correlated features are placed orthogonally, anticorrelated ones antipodally,
  so overlap falls as co-occurrence rises: rho < 0. Detection = verdict `effect` with rho < 0.
- `sae-independent` (optional, slower): a TopK SAE trained on a synth-independent store,
  tested through `analyze_geometry` as a user would; truth "no relation" among the planted
  features, but the SAE's own latents may co-fire where their directions overlap.

>>> cal = calibrate_geometry(seeds=40)       # doctest: +SKIP
>>> cal.case("synth-independent").false_positive.high < 0.1    # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from polysemy.analysis.geometry import (
    Cooccurrence,
    OverlapTest,
    Resample,
    _unit_rows,
    count_cooccurrence,
    overlap_test,
)
from polysemy.analysis.stats import Interval, binomial_ci
from polysemy.validation import check_int

Truth = Literal["none", "negative", "positive"]
CASES = (
    "synth-independent",
    "synth-groups",
    "synth-groups-orthogonal",
    "synth-groups-aligned",
    "toy-independent",
    "toy-correlated",
    "toy-anticorrelated",
    "sae-independent",
)


@dataclass(frozen=True)
class CalibrationCase:
    """One case's outcomes over its trials."""

    name: str
    truth: Truth
    """none: any `effect` verdict is a false positive; negative: rho < 0 is the known sign."""
    resample: str
    """Unit of the test's bootstrap and null (features or pairs)."""
    trials: int
    effects: int
    """Trials with verdict `effect` (for truth negative: with rho < 0 too)."""
    ci_holds_zero: int
    """Trials whose rho interval contains 0."""
    rho: list[float] = field(default_factory=list)
    """rho of every trial."""

    @property
    def rate(self) -> Interval:
        """False-positive rate (truth none) or detection rate (truth negative)."""
        return binomial_ci(self.effects, self.trials)

    @property
    def zero_coverage(self) -> Interval:
        """Share of trials whose interval contains 0 (for truth none, aims at the level)."""
        return binomial_ci(self.ci_holds_zero, self.trials)

    def to_dict(self) -> dict[str, Any]:
        rate, cover = self.rate, self.zero_coverage
        return {
            "case": self.name,
            "truth": self.truth,
            "resample": self.resample,
            "trials": self.trials,
            "rate_name": "false_positive" if self.truth == "none" else "detection",
            "rate": [rate.estimate, rate.low, rate.high],
            "ci_holds_zero": [cover.estimate, cover.low, cover.high],
            "rho_mean": sum(self.rho) / len(self.rho),
        }


@dataclass(frozen=True)
class GeometryCalibration:
    """Every calibration case of the overlap/co-occurrence test."""

    cases: tuple[CalibrationCase, ...]

    def case(self, name: str, resample: str = "features") -> CalibrationCase:
        for c in self.cases:
            if c.name == name and c.resample == resample:
                return c
        raise KeyError(f"no case {name!r} with resample {resample!r}")


def _tally(name: str, truth: Truth, resample: str, tests: Sequence[OverlapTest]) -> CalibrationCase:
    if truth == "none":
        effects = sum(t.verdict == "effect" for t in tests)
    else:
        sign = -1.0 if truth == "negative" else 1.0
        effects = sum(t.verdict == "effect" and sign * t.rho.estimate > 0 for t in tests)
    return CalibrationCase(
        name=name,
        truth=truth,
        resample=resample,
        trials=len(tests),
        effects=effects,
        ci_holds_zero=sum(t.rho.contains(0.0) for t in tests),
        rho=[t.rho.estimate for t in tests],
    )


def _abs_cos(directions: Tensor) -> Tensor:
    unit, _ = _unit_rows(directions)
    return (unit @ unit.T).abs()


def _planted_groups(config: Any, geometry: str) -> Tensor:
    """Directions with known overlap: group members orthogonal, or sharing a direction."""
    from polysemy.synth.planted import feature_groups

    g = torch.Generator().manual_seed(config.seed + 7919)
    group = feature_groups(config)
    out = torch.randn(config.n_features, config.d_in, generator=g, dtype=torch.float64)
    for gid in group.unique().tolist():
        members = (group == gid).nonzero().flatten()
        if geometry == "orthogonal":
            basis = torch.randn(config.d_in, len(members), generator=g, dtype=torch.float64)
            out[members] = torch.linalg.qr(basis).Q.T  # orthonormal rows
        else:
            shared = torch.randn(config.d_in, generator=g, dtype=torch.float64)
            shared = shared / shared.norm()
            own = out[members] / out[members].norm(dim=1, keepdim=True)
            out[members] = shared + 0.8 * own  # pairwise cos about 1 / (1 + 0.64)
    return (out / out.norm(dim=1, keepdim=True)).to(torch.float32)


def _synth_trial(
    seed: int, *, group_size: int, correlation: float, tokens: int, geometry: str = "random"
) -> tuple:
    from polysemy.synth import SynthConfig, generate_chunks, plant_dictionary

    config = SynthConfig(
        n_features=48,
        d_in=24,
        active=4.0,
        tokens=tokens,
        seed=seed,
        group_size=group_size,
        correlation=correlation,
    )

    if geometry == "random":
        directions = plant_dictionary(config.n_features, config.d_in, seed=seed)
    else:
        directions = _planted_groups(config, geometry)

    def firing() -> Any:
        for chunk in generate_chunks(config, features=directions):
            fired = torch.zeros(chunk.activations.shape[0], config.n_features, dtype=torch.bool)
            fired[chunk.rows, chunk.features] = True
            yield fired

    cooc = count_cooccurrence(firing(), config.n_features)
    return _abs_cos(directions), cooc


def _toy_trials(kind: str, instances: int, seed: int, steps: int) -> list[tuple]:
    from polysemy.toy import ToyConfig, sample_features, train_toy

    n, m = 8, 4
    config = ToyConfig(
        model="relu-output",
        n_features=n,
        n_hidden=m,
        sparsity=(0.9,) * instances,
        importance=((1.0,) * n,) * instances,
        feature_kind=kind,  # type: ignore[arg-type]
        steps=steps,
        seed=seed,
        shared_data=False,
        best_of=3,  # the textbook geometry is the best of a few seeds (docs/toy.md)
    )
    run = train_toy(config)
    g = torch.Generator().manual_seed(seed)
    x = sample_features(config.sparsity, n, 20_000, kind=kind, generator=g)  # type: ignore[arg-type]
    out = []
    for inst in range(instances):
        cooc = count_cooccurrence([x[inst] > 0], n)
        out.append((_abs_cos(run.W[inst].T), cooc))
    return out


def _sae_trial(seed: int, tokens: int, train_tokens: int) -> OverlapTest:
    from polysemy.analysis.geometry import analyze_geometry
    from polysemy.api import train_sae
    from polysemy.synth import SynthConfig, generate_activations

    x = generate_activations(
        SynthConfig(n_features=48, d_in=24, active=4.0, tokens=tokens, seed=seed)
    )
    run = train_sae(x, arch="topk", d_sae=48, k=4, tokens=train_tokens, progress=False, seed=seed)
    result = analyze_geometry(
        run.sae, x, top_features=48, min_count=20, seed=seed, resamples=200, permutations=200
    )
    return result.cooccurrence


def calibrate_geometry(
    *,
    seeds: int = 40,
    toy_instances: int = 10,
    sae_seeds: int = 0,
    resamples: int = 300,
    permutations: int = 300,
    resample: Sequence[Resample] = ("features", "pairs"),
    tokens: int = 20_000,
    toy_steps: int = 3000,
    seed: int = 0,
) -> GeometryCalibration:
    """Run every calibration case (module docstring): `seeds` planted stores per synth case,
    `toy_instances` toy models per toy case, `sae_seeds` trained SAEs (0 skips that case),
    each tested with every unit of `resample`."""
    check_int("seeds", seeds, least=1)
    check_int("toy_instances", toy_instances, least=1)
    check_int("sae_seeds", sae_seeds, least=0)
    inputs: dict[str, tuple[Truth, list[tuple[Tensor, Cooccurrence]]]] = {
        "synth-independent": (
            "none",
            [
                _synth_trial(seed + s, group_size=1, correlation=0.0, tokens=tokens)
                for s in range(seeds)
            ],
        ),
        "synth-groups": (
            "none",
            [
                _synth_trial(seed + s, group_size=4, correlation=0.8, tokens=tokens)
                for s in range(seeds)
            ],
        ),
    }
    for geometry, truth in (("orthogonal", "negative"), ("aligned", "positive")):
        inputs[f"synth-groups-{geometry}"] = (
            truth,  # type: ignore[assignment]
            [
                _synth_trial(
                    seed + s, group_size=4, correlation=0.8, tokens=tokens, geometry=geometry
                )
                for s in range(seeds)
            ],
        )
    for kind, truth in (
        ("independent", "none"),
        ("correlated", "negative"),
        ("anticorrelated", "negative"),
    ):
        inputs[f"toy-{kind}"] = (truth, _toy_trials(kind, toy_instances, seed, toy_steps))  # type: ignore[assignment]
    cases = []
    for unit in resample:
        for name, (truth, trials) in inputs.items():
            tests = [
                overlap_test(
                    overlap,
                    cooc.phi(),
                    resample=unit,
                    resamples=resamples,
                    permutations=permutations,
                    seed=seed + t,
                )
                for t, (overlap, cooc) in enumerate(trials)
            ]
            cases.append(_tally(name, truth, unit, tests))
    if sae_seeds:
        tests = [_sae_trial(seed + s, tokens, 20 * tokens) for s in range(sae_seeds)]
        cases.append(_tally("sae-independent", "none", "features", tests))
    return GeometryCalibration(tuple(cases))
