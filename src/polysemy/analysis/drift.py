"""Meaning drift: does a neuron keep the features it carries as training goes on?

Toy part (`toy_drift`): a ReLU-hidden toy model trained with snapshots (`polysemy toy train
--model relu-hidden --snapshots N`), where the features are known, so a neuron's "chorus" is
read straight off the weights. Neuron k's loadings are the row W[k, :]; since the toy inputs
are >= 0, only the positive loadings make it fire, so its chorus is

    share[k, j] = relu(W[k, j])^2 / sum_j' relu(W[k, j'])^2          (sums to 1, or all 0: dead)

(in the `abs` model the inputs take both signs, so there the shares are W^2 normalised).

Between consecutive snapshots t, t+1, per neuron:

- drift = 1 - cos(share_t[k], share_t+1[k]) (0: same voices in the same proportions;
  1: disjoint voices; a neuron dying or coming alive counts 1);
- a "meaning switch" when its dominant feature (argmax of the shares) changes, among neurons
  alive at both snapshots;
- the correlation of its activations relu(W x) on the same fresh inputs x.

The null is the same scores between two models trained from different seeds, compared at the
same step after matching their neurons one-to-one (Hungarian matching on 1 - cos of the
shares, `scipy.optimize.linear_sum_assignment`; a greedy matching when scipy is missing, and
the result says which). It answers: is this drift larger than the difference between two
equally trained models whose neurons were assigned their features independently? The
pair's verdict compares bootstrap intervals (over neurons) of the mean drift and of the mean
null drift at the pair's later step: "stable" when the drift's interval lies under
`tolerance`, "within null" when under the null's upper end, "drifted" when above both, else
"inconclusive". Early in training the two seeds have not converged, so the null is wide there;
the first-vs-last comparison (`span`) and the late pairs are where it decides.

>>> res = toy_drift("runs/toy-rh", out="runs/toy-rh-drift")                  # doctest: +SKIP
>>> res.summary["neurons"]["switch_fraction"]["estimate"]                   # doctest: +SKIP
0.25
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

from polysemy.analysis.folder import start_analysis, write_analysis
from polysemy.analysis.stats import Interval, binomial_ci, bootstrap_ci
from polysemy.validation import check_float, check_int, configured

log = logging.getLogger(__name__)

__all__ = ["ToyDriftConfig", "ToyDriftResult", "chorus", "match_neurons", "toy_drift"]

_DEAD = 1e-12
"""A neuron whose positive loadings' squared norm is at most this never fires: dead."""


@dataclass(frozen=True)
class ToyDriftConfig:
    """How `toy_drift` measures drift on a toy run's snapshots."""

    samples: int = 4096
    """Fresh inputs on which neuron activations are correlated between snapshots."""
    null_seed_offset: int = 1
    """The null model is the same config retrained with seed + this."""
    tolerance: float = 0.01
    """Mean drift (1 - cos) whose whole interval is below this counts as stable."""
    resamples: int = 2000
    """Bootstrap resamples (over neurons) of every interval."""
    level: float = 0.95
    """Coverage of every interval."""

    def __post_init__(self) -> None:
        check_int("samples", self.samples, least=2)
        check_int("null_seed_offset", self.null_seed_offset, least=1)
        check_float("tolerance", self.tolerance, least=0.0, most=1.0)
        check_int("resamples", self.resamples, least=100)
        check_float("level", self.level, above=0.0, most=0.999999)


class ToyDriftResult(NamedTuple):
    """What `toy_drift` returns (and writes, when given `out`)."""

    steps: list[int]
    """Snapshot steps."""
    shares: Float[Tensor, "n_snapshots n_instances n_hidden n_features"]
    """Each neuron's chorus at each snapshot."""
    drift: Float[Tensor, "n_pairs n_instances n_hidden"]
    """1 - cos of the shares between consecutive snapshots."""
    switch: Tensor
    """[n_pairs, n_instances, n_hidden] bool: dominant feature changed (alive at both)."""
    alive: Tensor
    """[n_pairs, n_instances, n_hidden] bool: alive at both snapshots of the pair."""
    correlation: Float[Tensor, "n_pairs n_instances n_hidden"]
    """Pearson correlation of activations between consecutive snapshots (NaN: constant)."""
    null_drift: Float[Tensor, "n_snapshots n_instances n_hidden"]
    """1 - cos of the shares between the two seeds' matched neurons at each step."""
    null_switch: Tensor
    """[n_snapshots, n_instances, n_hidden] bool: matched neurons' dominant features differ."""
    null_alive: Tensor
    """[n_snapshots, n_instances, n_hidden] bool: both matched neurons alive."""
    null_correlation: Float[Tensor, "n_snapshots n_instances n_hidden"]
    """Activation correlation of the matched neurons on the same inputs."""
    summary: dict[str, Any]
    """The JSON summary (written to analysis.json)."""


def chorus(
    W: Float[Tensor, "... n_hidden n_features"], *, signed: bool = False
) -> Float[Tensor, "... n_hidden n_features"]:
    """Each neuron's shares over the features: relu(W)^2 normalised per row (0 for a dead row).

    `signed`: inputs of either sign (the `abs` model), where a negative loading fires the
    neuron too, so the shares are W^2 normalised."""
    p = W.double() ** 2 if signed else torch.relu(W.double()) ** 2
    total = p.sum(dim=-1, keepdim=True)
    return torch.where(total > _DEAD, p / total.clamp_min(_DEAD), torch.zeros_like(p))


def _cos_drift(a: Tensor, b: Tensor) -> Tensor:
    """1 - cos over the last dim; 0 for two zero vectors, 1 when exactly one is zero."""
    na, nb = a.norm(dim=-1), b.norm(dim=-1)
    both = (na > 0) & (nb > 0)
    cos = (a * b).sum(dim=-1) / torch.where(both, na * nb, torch.ones_like(na))
    drift = 1.0 - torch.where(both, cos, torch.zeros_like(cos))
    return torch.where((na == 0) & (nb == 0), torch.zeros_like(drift), drift).clamp(0.0, 2.0)


def match_neurons(
    a: Float[Tensor, "n_hidden n_features"], b: Float[Tensor, "n_hidden n_features"]
) -> tuple[Int[Tensor, " n_hidden"], str]:
    """Permutation p minimising sum_k (1 - cos(a[k], b[p[k]])), and the method used.

    Hungarian matching (scipy) when scipy is installed, else a greedy matching (best pair
    first), which can be suboptimal."""
    cost = 1.0 - _pairwise_cos(a, b)  # (n_hidden, n_hidden)
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        return _greedy(cost), "greedy"
    rows, cols = linear_sum_assignment(cost.numpy())
    perm = torch.empty(a.shape[0], dtype=torch.int64)
    perm[torch.as_tensor(rows)] = torch.as_tensor(cols, dtype=torch.int64)
    return perm, "hungarian"


def _pairwise_cos(a: Tensor, b: Tensor) -> Tensor:
    na = a.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    nb = b.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    return (a / na) @ (b / nb).T


def _greedy(cost: Tensor) -> Tensor:
    n = cost.shape[0]
    perm = torch.full((n,), -1, dtype=torch.int64)
    c = cost.clone()
    for _ in range(n):
        i, j = divmod(int(c.argmin()), n)
        perm[i] = j
        c[i, :] = float("inf")
        c[:, j] = float("inf")
    return perm


def _dominant(shares: Tensor) -> Tensor:
    """Index of the largest share per neuron, -1 for a dead neuron."""
    alive = shares.sum(dim=-1) > 0
    return torch.where(alive, shares.argmax(dim=-1), torch.full_like(alive, -1, dtype=torch.int64))


def _activations(W: Tensor, x: Tensor) -> Tensor:
    return torch.relu(torch.einsum("ibf,imf->ibm", x, W.double()))  # (n_instances, batch, n_hidden)


def _correlation(h1: Tensor, h2: Tensor) -> Tensor:
    """Pearson correlation over the batch dim (1) per instance and neuron; NaN when constant."""
    a = h1 - h1.mean(dim=1, keepdim=True)
    b = h2 - h2.mean(dim=1, keepdim=True)
    den = a.norm(dim=1) * b.norm(dim=1)
    corr = (a * b).sum(dim=1) / den.clamp_min(1e-300)
    return torch.where(den > 0, corr, torch.full_like(corr, float("nan")))


def _mean_ci(values: Tensor, cfg: ToyDriftConfig) -> Interval:
    v = values.flatten()
    if v.numel() == 1:  # a bootstrap of one value is that value
        x = float(v[0])
        return Interval(x, x, x, cfg.level, 1, "bootstrap")
    return bootstrap_ci(v, resamples=cfg.resamples, level=cfg.level)


def _rate(flags: Tensor, among: Tensor, cfg: ToyDriftConfig) -> dict[str, Any]:
    n = int(among.sum())
    if n == 0:
        return {"estimate": None, "low": None, "high": None, "n": 0}
    k = int((flags & among).sum())
    ci = binomial_ci(k, n, level=cfg.level)
    return {**ci.to_dict(), "estimate": k / n}


def _median(values: Tensor) -> float | None:
    v = values.flatten()
    v = v[torch.isfinite(v)]
    return float(v.median()) if v.numel() else None


def _pair_verdict(drift: Interval, null: Interval, tolerance: float) -> str:
    """ "stable": the drift's interval lies under `tolerance`; "within null": under the null's
    upper end; "drifted": above both; "inconclusive": straddling."""
    if drift.high < tolerance:
        return "stable"
    if drift.high <= null.high:
        return "within null"
    if drift.low > max(null.high, tolerance):
        return "drifted"
    return "inconclusive"


def toy_drift(
    run: str | os.PathLike[str],
    config: ToyDriftConfig | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    force: bool = False,
    seed: int = 0,
    **options: Any,
) -> ToyDriftResult:
    """Drift of each neuron's chorus across the snapshots of the toy run folder `run`.

    Retrains the run's config with another seed for the null (same snapshot steps; as long as
    the run itself took). `seed` draws the inputs for activation correlations. When `out` is
    given, writes an analysis folder of kind "drift" there (`drift.safetensors`)."""
    from polysemy.toy.result import load_toy_run
    from polysemy.toy.trainer import snapshot_steps, train_toy

    cfg = configured(ToyDriftConfig, config, options)
    check_int("seed", seed, least=0)
    path = start_analysis(out, force=force) if out is not None else None
    toy = load_toy_run(run)
    if toy.config.model not in ("relu-hidden", "abs"):
        raise ValueError(
            "run must hold a relu-hidden or abs toy model (a privileged hidden basis); "
            f"got {toy.config.model!r}"
        )
    if len(toy.snapshots) < 2:
        raise ValueError(
            f"run must hold at least 2 snapshots (train it with --snapshots N); "
            f"got {len(toy.snapshots)} in {str(run)!r}"
        )
    steps = [s for s, _ in toy.snapshots]
    Ws = torch.stack([w.double() for _, w in toy.snapshots])  # (S, I, m, f)
    null_cfg = dataclasses.replace(toy.config, seed=toy.config.seed + cfg.null_seed_offset)
    if snapshot_steps(null_cfg) != steps:
        raise ValueError(
            f"run's snapshot steps {steps} do not follow from its config "
            f"({snapshot_steps(null_cfg)}); was it written by another version?"
        )
    log.info("training the null model (seed %d)", null_cfg.seed)
    null_run = train_toy(null_cfg)
    Wn = torch.stack([w.double() for _, w in null_run.snapshots])  # (S, I, m, f)

    gen = torch.Generator().manual_seed(seed)
    from polysemy.toy.data import sample_features

    x = sample_features(
        toy.config.sparsity,
        toy.config.n_features,
        cfg.samples,
        kind=toy.config.feature_kind,
        signed=toy.config.model == "abs",
        generator=gen,
        dtype=torch.float64,
    )  # (I, samples, f)
    signed = toy.config.model == "abs"
    shares = chorus(Ws, signed=signed)  # (S, I, m, f)
    dom = _dominant(shares)  # (S, I, m)
    alive_s = dom >= 0
    acts = [_activations(Ws[s], x) for s in range(len(steps))]

    drift = _cos_drift(shares[:-1], shares[1:])  # (P, I, m)
    alive = alive_s[:-1] & alive_s[1:]
    switch = alive & (dom[:-1] != dom[1:])
    corr = torch.stack([_correlation(acts[s], acts[s + 1]) for s in range(len(steps) - 1)])

    # Null: seed B's neurons matched to seed A's at every step.
    n_s, n_i, m, _ = Ws.shape
    null_drift = torch.zeros(n_s, n_i, m, dtype=torch.float64)
    null_switch = torch.zeros(n_s, n_i, m, dtype=torch.bool)
    null_alive = torch.zeros(n_s, n_i, m, dtype=torch.bool)
    null_corr = torch.zeros(n_s, n_i, m, dtype=torch.float64)
    shares_n = chorus(Wn, signed=signed)
    method = "hungarian"
    for s in range(n_s):
        acts_n = _activations(Wn[s], x)
        for i in range(n_i):
            perm, method = match_neurons(shares[s, i], shares_n[s, i])
            b = shares_n[s, i][perm]
            null_drift[s, i] = _cos_drift(shares[s, i], b)
            db = _dominant(b)
            null_alive[s, i] = alive_s[s, i] & (db >= 0)
            null_switch[s, i] = null_alive[s, i] & (dom[s, i] != db)
            null_corr[s, i] = _correlation(acts[s][i : i + 1], acts_n[i : i + 1, :, perm])[0]

    pairs = []
    for p in range(len(steps) - 1):
        d_ci = _mean_ci(drift[p], cfg)
        n_ci = _mean_ci(null_drift[p + 1], cfg)
        pairs.append(
            {
                "from_step": steps[p],
                "to_step": steps[p + 1],
                "drift": d_ci.to_dict(),
                "switch_fraction": _rate(switch[p], alive[p], cfg),
                "median_correlation": _median(corr[p]),
                "null_drift": n_ci.to_dict(),
                "null_switch_fraction": _rate(null_switch[p + 1], null_alive[p + 1], cfg),
                "verdict": _pair_verdict(d_ci, n_ci, cfg.tolerance),
            }
        )
    span_drift = _cos_drift(shares[0], shares[-1])
    span_alive = alive_s[0] & alive_s[-1]
    span_switch = span_alive & (dom[0] != dom[-1])
    span_ci = _mean_ci(span_drift, cfg)
    final_null = _mean_ci(null_drift[-1], cfg)
    last = len(steps) - 2
    summary: dict[str, Any] = {
        "n_instances": n_i,
        "n_hidden": m,
        "n_snapshots": n_s,
        "steps": steps,
        "neurons": {
            "switch_fraction": _rate(switch, alive, cfg),
            "median_correlation": _median(corr),
            "mean_drift": _mean_ci(drift, cfg).to_dict(),
            "n": int(drift.numel()),
            "unit": "neuron x consecutive snapshot pair, pooled over instances",
        },
        "pairs": pairs,
        "span": {
            "from_step": steps[0],
            "to_step": steps[-1],
            "drift": span_ci.to_dict(),
            "switch_fraction": _rate(span_switch, span_alive, cfg),
            "median_correlation": _median(_correlation(acts[0], acts[-1])),
            "verdict": _pair_verdict(span_ci, final_null, cfg.tolerance),
        },
        "late": {
            "from_step": steps[last],
            "to_step": steps[-1],
            "drift": pairs[last]["drift"],
            "verdict": pairs[last]["verdict"],
        },
        "null": {
            "kind": "seed",
            "seed": null_cfg.seed,
            "matching": method,
            "step": steps[-1],
            "drift": final_null.to_dict(),
            "switch_fraction": _rate(null_switch[-1], null_alive[-1], cfg),
            "median_correlation": _median(null_corr[-1]),
            "loss": [float(v) for v in null_run.loss],
        },
    }
    result = ToyDriftResult(
        steps=steps,
        shares=shares.float(),
        drift=drift.float(),
        switch=switch,
        alive=alive,
        correlation=corr.float(),
        null_drift=null_drift.float(),
        null_switch=null_switch,
        null_alive=null_alive,
        null_correlation=null_corr.float(),
        summary=summary,
    )
    if path is not None:
        write_analysis(
            path,
            "drift",
            inputs={
                "toy": str(Path(run)),
                "model": toy.config.model,
                "n_features": toy.config.n_features,
                "n_hidden": m,
                "sparsity": list(toy.config.sparsity),
                "samples": cfg.samples,
                "seed": seed,
                "config": dataclasses.asdict(cfg),
            },
            summary=summary,
            files={
                "drift.safetensors": {
                    "steps": torch.tensor(steps, dtype=torch.int64),
                    "shares": result.shares.contiguous(),
                    "dominant": dom.contiguous(),
                    "drift": result.drift.contiguous(),
                    "switch": switch.to(torch.uint8).contiguous(),
                    "correlation": result.correlation.contiguous(),
                    "null_drift": result.null_drift.contiguous(),
                    "null_switch": null_switch.to(torch.uint8).contiguous(),
                    "null_correlation": result.null_correlation.contiguous(),
                },
                **({"training.json": curve} if (curve := _loss_curve(toy, x, cfg)) else {}),
            },
        )
    return result


def _loss_curve(toy: Any, x: Tensor, cfg: ToyDriftConfig) -> dict[str, Any] | None:
    """training.json: the loss at each snapshot on the drift's own inputs x (I, samples, f),
    averaged over instances, with a 95% normal interval over inputs, beside the loss of an
    all-zero output; None when the run kept no b_final per snapshot (older folders) or has
    an untied second layer (`abs`, whose W_out is not kept per snapshot)."""
    from polysemy.toy.model import toy_forward, toy_target
    from polysemy.toy.trainer import HISTORY_SAMPLES, history_every

    if len(toy.snapshot_b_final) != len(toy.snapshots) or toy.config.model == "abs":
        return None
    importance = torch.tensor(toy.config.importance, dtype=torch.float64)  # (I, f)
    target = toy_target(toy.config.model, x)  # (I, samples, f)
    z = 1.959963984540054  # two-sided 95% normal quantile

    def figure(out: Tensor) -> dict[str, Any]:
        per_input = ((out - target) ** 2 * importance[:, None, :]).mean(2).mean(0)  # (samples,)
        mean, half = float(per_input.mean()), z * float(per_input.std()) / per_input.numel() ** 0.5
        if not math.isfinite(mean + half):  # diverged weights: JSON has no NaN
            return {"loss": None, "ci95": None, "windows": per_input.numel()}
        return {"loss": mean, "ci95": [mean - half, mean + half], "windows": per_input.numel()}

    snaps = []
    for (step, W), b in zip(toy.snapshots, toy.snapshot_b_final, strict=True):
        out = toy_forward(toy.config.model, W.double(), b.double(), x)  # (I, samples, f)
        f = figure(out)
        snaps.append({"step": step, "heldout_loss": f["loss"], "ci95": f["ci95"],
                      "windows": f["windows"]})  # fmt: skip
    # The run's loss along training (toy train --snapshots records it), averaged over
    # instances like the snapshots' figures; older runs have none.
    history = []
    for step, h in toy.loss_history:
        v = h.double()
        v = v[torch.isfinite(v)]
        if v.numel():
            history.append({"step": int(step), "loss": float(v.mean())})
    return {
        "history": history,
        "history_unit": (
            f"loss averaged over instances, on one fixed batch of {HISTORY_SAMPLES} fresh inputs, "
            f"every {history_every(toy.config)} steps"
            if history
            else None
        ),
        "snapshots": snaps,
        "baselines": {"zero output": figure(torch.zeros_like(target))},
        # `windows` of the organism's curve are inputs here.
        "unit": f"loss averaged over {x.shape[0]} instances, on {x.shape[1]} fresh inputs",
    }
