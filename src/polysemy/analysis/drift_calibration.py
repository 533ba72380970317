"""Calibration of the SAE-based drift score on toy ReLU-hidden models, where the truth is known.

`organism_drift` (analysis/organism_drift.py) cannot read a neuron's features off the weights
of a language model, so it reads them through one TopK SAE per snapshot and calls a neuron's
"meaning switch" when its dominant SAE feature at t is not related (activation correlation
>= `match_threshold`) to its dominant feature at s. Here the same functions (`_snapshot`,
`_compare`: the same SAEs, chorus, score and switch) run on the hidden layer h = ReLU(W x) of
a toy ReLU-hidden model trained with snapshots, whose truth is known: feature i alone writes
x_i ReLU(W[:, i]) into h, so neuron j's true chorus over the analysed inputs is

    T[j, i] = sum_rows x_i^2 ReLU(W[j, i])^2 / sum_i' (same)     (squared shares, as the SAE's)

(the feature importances shape which W training finds; the chorus is read from that W).
Between two snapshots a neuron **changed roles** when its true dominant feature changed and
its true chorus moved by at least `changed_drift` (1 - cos), and **kept** them when its
dominant feature is the same and its chorus moved by at most `kept_drift`; neurons between
the two (near-ties, small moves) are counted as ambiguous and left out of the rates. Dead
neurons (no positive loading at either snapshot) are left out.

Three comparisons, pooled over `seeds` toy models (each with its own pair of SAE seeds):

- **same snapshot**: the SAE of seed A against the SAE of seed B on one snapshot (every
  snapshot). Nothing changed, so every switch is a false positive: `null_switch`.
- **natural**: consecutive snapshots s -> t, s's seed-A SAE against t's seed-B SAE (exactly
  what `organism_drift` does); flagged neurons scored against the known classes:
  true-positive rate among changed neurons, false-positive rate among kept ones.
- **planted**: the last snapshot's W against the same W with the rows of `swaps` pairs of
  neurons (with different dominant features) swapped: those neurons changed roles by
  construction, every other neuron kept them exactly. Training rarely moves a neuron's role
  cleanly (most moves are small or near-ties), so this is where both classes are certain.

A neuron is flagged in two ways: `switch` (the organism's binary switch) and `score` above
the `level` quantile of the same-snapshot scores (the null's own distribution, so about
1 - level of unchanged neurons are flagged by construction). Rates carry exact
(Clopper-Pearson) intervals; `auc` is the probability that a changed neuron scores above a
kept one (ties count half).

>>> cal = calibrate_drift(seeds=4)                   # doctest: +SKIP
>>> cal.null_switch, cal.planted.tpr, cal.planted.fpr  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from polysemy.analysis.drift import _cos_drift, _dominant
from polysemy.analysis.organism_drift import OrganismDriftConfig, _compare, _snapshot
from polysemy.analysis.stats import Interval, binomial_ci
from polysemy.validation import check_float, check_int, configured

__all__ = ["DriftCalibration", "DriftCalibrationConfig", "DriftRates", "calibrate_drift"]


@dataclass(frozen=True)
class DriftCalibrationConfig:
    """The toy models, SAEs and truth thresholds of `calibrate_drift`."""

    n_features: int = 16
    """Toy features."""
    n_hidden: int = 8
    """Toy hidden neurons (the neurons whose drift is scored)."""
    sparsity: float = 0.9
    """Probability that a toy feature is zero."""
    importance_decay: float = 0.95
    """Feature importance I_i = decay^i."""
    steps: int = 3000
    """Toy training steps."""
    lr: float = 1e-2
    """Toy learning rate (cosine schedule)."""
    snapshots: int = 4
    """Log-spaced snapshots of W kept along toy training."""
    seeds: int = 4
    """Toy models (seed, seed + 1, ...), each with its own SAE seeds."""
    rows: int = 4096
    """Analysed inputs, the same at every snapshot."""
    sae_rows: int = 16384
    """Other inputs whose hidden activations the SAEs train on."""
    sae_tokens: int = 200_000
    """Rows each SAE sees in training."""
    expansion: int = 2
    """SAE width = expansion x n_hidden."""
    k: int = 3
    """Active latents per row of the TopK SAEs."""
    sae_lr: float = 1e-2
    """SAE learning rate (train_sae's default 4e-4 is for large SAEs and long runs)."""
    match_threshold: float = 0.4
    """Activation correlation at or above which two SAE features are related (as in
    organism_drift)."""
    kept_drift: float = 0.1
    """Most true chorus drift (1 - cos) of a neuron that kept its role."""
    changed_drift: float = 0.3
    """Least true chorus drift of a neuron that changed roles (its dominant feature too)."""
    large_drift: float = 0.5
    """Changed neurons whose true chorus moved at least this get their own true-positive
    rates (`tpr_large`, `tpr_score_large`): is a large move caught more often?"""
    clear_ratio: float = 1.5
    """A neuron's dominant feature is clear when its true share is at least this times the
    runner-up's (`null_switch_clear` counts only those)."""
    swaps: int = 2
    """Pairs of neurons whose rows of W are swapped in the planted case."""
    level: float = 0.95
    """Coverage of every interval, and the null quantile used as the score threshold."""
    seed: int = 0
    """First toy seed (also seeds the inputs and the SAEs)."""

    def __post_init__(self) -> None:
        check_int("n_features", self.n_features, least=2)
        check_int("n_hidden", self.n_hidden, least=2)
        check_float("sparsity", self.sparsity, least=0.0, most=0.999)
        check_float("importance_decay", self.importance_decay, above=0.0, most=1.0)
        check_int("steps", self.steps, least=1)
        check_float("lr", self.lr, above=0.0)
        check_int("snapshots", self.snapshots, least=2)
        check_int("seeds", self.seeds, least=1)
        check_int("rows", self.rows, least=16)
        check_int("sae_rows", self.sae_rows, least=16)
        check_int("sae_tokens", self.sae_tokens, least=1)
        check_int("expansion", self.expansion, least=1)
        check_int("k", self.k, least=1)
        check_float("sae_lr", self.sae_lr, above=0.0)
        check_float("match_threshold", self.match_threshold, above=0.0, most=1.0)
        check_float("kept_drift", self.kept_drift, least=0.0, most=1.0)
        check_float("changed_drift", self.changed_drift, least=self.kept_drift, most=1.0)
        check_float("large_drift", self.large_drift, least=self.changed_drift, most=2.0)
        check_float("clear_ratio", self.clear_ratio, least=1.0)
        check_int("swaps", self.swaps, least=1, most=self.n_hidden // 2)
        check_float("level", self.level, above=0.0, most=0.999999)
        check_int("seed", self.seed, least=0)


class DriftRates(NamedTuple):
    """How the drift score's flags match the known classes in one kind of comparison."""

    changed: int
    """Neurons (x comparisons) that changed roles (known truth)."""
    kept: int
    """Neurons that kept their roles."""
    ambiguous: int
    """Live neurons in neither class (left out of the rates)."""
    tpr: Interval | None
    """Changed neurons flagged by `switch` (None without changed neurons)."""
    fpr: Interval | None
    """Kept neurons flagged by `switch`."""
    tpr_score: Interval | None
    """Changed neurons whose score is above the null threshold."""
    fpr_score: Interval | None
    """Kept neurons whose score is above the null threshold."""
    tpr_large: Interval | None
    """Changed neurons with a true chorus move >= `large_drift` flagged by `switch`."""
    tpr_score_large: Interval | None
    """The same flagged by the score threshold."""
    auc: float | None
    """P(score of a changed neuron > score of a kept one), ties half (None without both)."""
    score_changed: float | None
    """Mean score of the changed neurons."""
    score_kept: float | None
    """Mean score of the kept neurons."""

    def to_dict(self) -> dict[str, Any]:
        return {k: v.to_dict() if isinstance(v, Interval) else v for k, v in self._asdict().items()}


class DriftCalibration(NamedTuple):
    """What `calibrate_drift` measured (module docstring)."""

    null_switch: Interval
    """Switches between two SAE seeds on one snapshot, among neurons with feature shares
    under both (every one a false positive)."""
    null_switch_clear: Interval
    """The same among neurons whose true dominant feature is clear (`clear_ratio`): what is
    left is SAE noise on neurons that do have one main feature."""
    null_score_mean: float
    """Mean score between the two seeds on one snapshot."""
    threshold: float
    """The `level` quantile of those scores: a score above it is flagged."""
    natural: DriftRates
    """Consecutive snapshots of training."""
    planted: DriftRates
    """Last snapshot against itself with swapped neuron rows."""
    steps: list[int]
    """Snapshot steps of the toy runs."""
    sae_fvu: list[float]
    """Min, median and max FVU of all SAEs on the analysed inputs."""
    config: dict[str, Any]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        d = self._asdict()
        d["null_switch"] = self.null_switch.to_dict()
        d["null_switch_clear"] = self.null_switch_clear.to_dict()
        d["natural"] = self.natural.to_dict()
        d["planted"] = self.planted.to_dict()
        return d


def _truth(W: Tensor, mass: Tensor) -> Tensor:
    """(n_hidden, n_features) true squared chorus of h = ReLU(W x) (module docstring)."""
    p = mass[None, :] * torch.relu(W.double()) ** 2
    total = p.sum(-1, keepdim=True)
    return torch.where(total > 0, p / total.clamp_min(1e-300), torch.zeros_like(p))


def _classes(
    Ta: Tensor, Tb: Tensor, cfg: DriftCalibrationConfig
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """changed, kept, ambiguous (bool per neuron) between true choruses Ta and Tb, and the
    true drift (1 - cos)."""
    da, db = _dominant(Ta), _dominant(Tb)
    live = (da >= 0) & (db >= 0)
    drift = _cos_drift(Ta, Tb)
    changed = live & (da != db) & (drift >= cfg.changed_drift)
    kept = live & (da == db) & (drift <= cfg.kept_drift)
    return changed, kept, live & ~changed & ~kept, drift


def _auc(pos: Tensor, neg: Tensor) -> float | None:
    if pos.numel() == 0 or neg.numel() == 0:
        return None
    diff = pos.double()[:, None] - neg.double()[None, :]
    return float(((diff > 0).double() + 0.5 * (diff == 0).double()).mean())


def _ci(flags: Tensor, level: float) -> Interval | None:
    n = int(flags.numel())
    return binomial_ci(int(flags.sum()), n, level=level) if n else None


def _mean(v: Tensor) -> float | None:
    return float(v.double().mean()) if v.numel() else None


class _Pooled:
    """Per-neuron records of one kind of comparison, pooled over pairs and seeds."""

    def __init__(self) -> None:
        self.score: list[Tensor] = []
        self.switch: list[Tensor] = []
        self.changed: list[Tensor] = []
        self.kept: list[Tensor] = []
        self.ambiguous: list[Tensor] = []
        self.drift: list[Tensor] = []

    def add(
        self, score: Tensor, switch: Tensor, classes: tuple[Tensor, Tensor, Tensor, Tensor]
    ) -> None:
        self.score.append(score.double())
        self.switch.append(switch)
        for name, c in zip(("changed", "kept", "ambiguous", "drift"), classes, strict=True):
            getattr(self, name).append(c)

    def rates(self, threshold: float, level: float, large_drift: float) -> DriftRates:
        score, switch = torch.cat(self.score), torch.cat(self.switch)
        changed, kept = torch.cat(self.changed), torch.cat(self.kept)
        large = changed & (torch.cat(self.drift) >= large_drift)
        over = score > threshold
        return DriftRates(
            changed=int(changed.sum()),
            kept=int(kept.sum()),
            ambiguous=int(torch.cat(self.ambiguous).sum()),
            tpr=_ci(switch[changed], level),
            fpr=_ci(switch[kept], level),
            tpr_score=_ci(over[changed], level),
            fpr_score=_ci(over[kept], level),
            tpr_large=_ci(switch[large], level),
            tpr_score_large=_ci(over[large], level),
            auc=_auc(score[changed], score[kept]),
            score_changed=_mean(score[changed]),
            score_kept=_mean(score[kept]),
        )


def _swap_rows(W: Tensor, T: Tensor, swaps: int, gen: torch.Generator) -> Tensor:
    """W with the rows of `swaps` pairs of live neurons of different dominant features
    swapped (fewer when the model has too few such neurons)."""
    dom = _dominant(T)
    order = [j for j in torch.randperm(W.shape[0], generator=gen).tolist() if dom[j] >= 0]
    out, done = W.clone(), 0
    used: set[int] = set()
    for a in order:
        for b in order:
            if done == swaps:
                return out
            if a in used or b in used or a == b or dom[a] == dom[b]:
                continue
            out[[a, b]] = W[[b, a]]
            used.update((a, b))
            done += 1
    return out


def calibrate_drift(
    config: DriftCalibrationConfig | None = None, **options: Any
) -> DriftCalibration:
    """Score `organism_drift`'s switch and score against the known roles of toy ReLU-hidden
    neurons (module docstring). Trains `seeds` toy models and (2 x snapshots + 1) SAEs per
    model; about 11 s per model with the defaults on one thread of a loaded 2-core machine."""
    from polysemy.toy import ToyConfig, sample_features, train_toy

    cfg = configured(DriftCalibrationConfig, config, options)
    t0 = time.perf_counter()
    oc = OrganismDriftConfig(
        sae_tokens=cfg.sae_tokens,
        expansion=cfg.expansion,
        k=cfg.k,
        match_threshold=cfg.match_threshold,
        level=cfg.level,
    )
    null_score, null_switch, null_clear = [], [], []
    natural, planted = _Pooled(), _Pooled()
    fvu: list[float] = []
    steps: list[int] = []
    for r in range(cfg.seeds):
        toy_seed = cfg.seed + r
        toy = train_toy(
            ToyConfig.sweep(
                "relu-hidden",
                cfg.n_features,
                cfg.n_hidden,
                (cfg.sparsity,),
                decay=cfg.importance_decay,
                steps=cfg.steps,
                lr=cfg.lr,
                lr_schedule="cosine",
                batch_size=256,
                snapshots=cfg.snapshots,
                seed=toy_seed,
            )
        )
        steps = [s for s, _ in toy.snapshots]
        gen = torch.Generator().manual_seed(toy_seed)
        x = sample_features((cfg.sparsity,), cfg.n_features, cfg.rows, generator=gen)[0]
        x_train = sample_features((cfg.sparsity,), cfg.n_features, cfg.sae_rows, generator=gen)[0]
        mass = (x.double() ** 2).sum(0)  # (n_features,)
        seed_a, seed_b = 2 * toy_seed, 2 * toy_seed + 1

        def fit(W: Tensor, seed: int, x: Tensor = x, x_train: Tensor = x_train) -> Any:
            h, h_train = torch.relu(x @ W.T), torch.relu(x_train @ W.T)  # (rows, n_hidden)
            snap = _snapshot(h_train, h, oc, seed, lr=cfg.sae_lr)
            fvu.append(snap.sae["fvu"])
            return snap

        Ws = [w[0].float() for _, w in toy.snapshots]  # (n_hidden, n_features) each
        truth = [_truth(W, mass) for W in Ws]
        fits_a = [fit(W, seed_a) for W in Ws]
        fits_b = [fit(W, seed_b) for W in Ws]
        for a, b, T in zip(fits_a, fits_b, truth, strict=True):
            score, switch, alive, _ = _compare(a, b, cfg.match_threshold)
            null_score.append(score[alive])
            null_switch.append(switch[alive])
            top2 = T.topk(2, dim=-1).values  # (n_hidden, 2)
            null_clear.append(switch[alive & (top2[:, 0] >= cfg.clear_ratio * top2[:, 1])])
        for p in range(len(Ws) - 1):
            score, switch, _, _ = _compare(fits_a[p], fits_b[p + 1], cfg.match_threshold)
            natural.add(score, switch, _classes(truth[p], truth[p + 1], cfg))
        W_swap = _swap_rows(Ws[-1], truth[-1], cfg.swaps, gen)
        score, switch, _, _ = _compare(fits_a[-1], fit(W_swap, seed_b), cfg.match_threshold)
        planted.add(score, switch, _classes(truth[-1], _truth(W_swap, mass), cfg))

    nulls = torch.cat(null_score)
    threshold = float(torch.quantile(nulls, cfg.level)) if nulls.numel() else 1.0
    flags, clear = torch.cat(null_switch), torch.cat(null_clear)
    fv = torch.tensor(fvu)
    return DriftCalibration(
        null_switch=binomial_ci(int(flags.sum()), max(int(flags.numel()), 1), level=cfg.level),
        null_switch_clear=binomial_ci(
            int(clear.sum()), max(int(clear.numel()), 1), level=cfg.level
        ),
        null_score_mean=float(nulls.mean()) if nulls.numel() else float("nan"),
        threshold=threshold,
        natural=natural.rates(threshold, cfg.level, cfg.large_drift),
        planted=planted.rates(threshold, cfg.level, cfg.large_drift),
        steps=steps,
        sae_fvu=[float(fv.min()), float(fv.median()), float(fv.max())],
        config=dataclasses.asdict(cfg),
        seconds=time.perf_counter() - t0,
    )
