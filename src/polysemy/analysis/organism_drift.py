"""Meaning drift on a model organism: do its MLP neurons keep their features across training?

`polysemy organism train` keeps snapshots of a small causal LM (RUN/snapshots/step-N). Here
every snapshot reads the *same tokens*: the first `rows` tokens of the run's held-out stream
(RUN/data/tokens.safetensors, documents the organism never trained on), cut into windows of
the run's context length. Per snapshot we harvest the MLP neurons (`h.0.mlp.act.output` by
default) and train **one SAE per snapshot** on that snapshot's activations of the first
`sae_rows` tokens of the *training* stream (so the SAE never sees the analysed tokens).

Why one SAE per snapshot rather than one dictionary shared across snapshots: a shared
dictionary forces every snapshot to be described with the same features, so a feature that
exists only late in training is either missing or smeared over the early snapshots, and
births, deaths, splits and merges cannot show up at all. Separate SAEs describe each model in
its own terms; features are then matched across snapshots by the correlation of their
activations on the same tokens (the only common ground between two dictionaries). The price
is SAE noise: two SAEs trained on the *same* activations with different seeds also disagree.
That is the null: at every snapshot after the first a second SAE (seed B = seed +
`null_seed_offset`) is trained. Drift from s to t compares s's seed-A SAE with t's seed-B SAE;
the null compares t's seed-A SAE with t's seed-B SAE, the same computation, so the two differ
only by the model's change from s to t (two same-seed SAEs on nearly equal activations share
their initialisation, which would hide SAE noise rather than measure it).

Per consecutive pair of snapshots (s, t) and per neuron j:

- `correlation`: Pearson correlation of neuron j's activations at s and t on the same tokens.
- chorus: neuron j's shares over its SAE's features, as in analysis/neurons.py with squared
  shares: share[f, j] = (sum_rows z_f^2) W_dec[f, j]^2 / (same summed over f + sum_rows e_j^2).
- features of s and t are *related* when their activations correlate at or above
  `match_threshold` (R[g, f] = corr(g, f) where >= threshold, else 0).
- meaning-switch `score` = 1 - cos(share_t[j], share_s[j] @ R): 0 when the neuron's voices at
  t are the related images of its voices at s in the same proportions, 1 when unrelated. A
  feature that splits carries its share to all its children, and merged parents add up.
- `switch`: neuron j's dominant feature at t is not related to its dominant feature at s
  (neurons with feature shares at both snapshots only).

A pair's verdict compares the bootstrap interval (over neurons) of the mean score with the
null's at t: "stable" under `tolerance`, "within null" at or under the null's upper end,
"drifted" above both, else "inconclusive".

Feature genealogy per pair (a feature is alive when it fires on some analysed token):
`born`: alive at t, related to no feature at s; `died`: alive at s, related to none at t;
`split`: a feature at s related to >= 2 features at t that each correlate best with it;
`merged`: a feature at t related to >= 2 features at s that each correlate best with it.
The same counts between the two seeds' SAEs at t are the null (SAE noise alone).

>>> res = organism_drift("runs/organism", out="runs/organism-drift")  # doctest: +SKIP
>>> res.summary["neurons"], res.summary["null"]                     # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from jaxtyping import Float
from safetensors import safe_open
from torch import Tensor

from polysemy.analysis.drift import _cos_drift, _pair_verdict
from polysemy.analysis.folder import start_analysis, write_analysis
from polysemy.analysis.stats import Interval, binomial_ci, bootstrap_ci
from polysemy.validation import ParameterError, check_float, check_int, configured

log = logging.getLogger(__name__)

__all__ = [
    "OrganismDriftConfig",
    "OrganismDriftResult",
    "feature_correlation",
    "genealogy",
    "organism_drift",
]


@dataclass(frozen=True)
class OrganismDriftConfig:
    """How `organism_drift` measures drift on an organism run's snapshots."""

    rows: int = 8192
    """Held-out tokens analysed (the same tokens at every snapshot)."""
    sae_rows: int = 32768
    """Training-stream tokens whose activations each snapshot's SAEs train on."""
    sae_tokens: int = 131_072
    """Rows each SAE sees in training (passes over the `sae_rows` tokens)."""
    expansion: int = 4
    """SAE width d_sae = expansion x the site's neurons."""
    k: int = 16
    """Active latents per token of the TopK SAEs."""
    sae_seed: int = 0
    """Seed of every snapshot's SAE."""
    null_seed_offset: int = 1
    """The null SAE at each snapshot is trained with sae_seed + this."""
    match_threshold: float = 0.4
    """Activation correlation at or above which two features count as related (the same
    feature, or parent and child in a split or merge)."""
    tolerance: float = 0.01
    """Mean score whose whole interval is below this counts as stable."""
    resamples: int = 2000
    """Bootstrap resamples (over neurons) of every interval."""
    level: float = 0.95
    """Coverage of every interval."""
    batch_size: int = 64
    """Windows per forward pass when harvesting (memory, not results)."""

    def __post_init__(self) -> None:
        check_int("rows", self.rows, least=2)
        check_int("sae_rows", self.sae_rows, least=2)
        check_int("sae_tokens", self.sae_tokens, least=1)
        check_int("expansion", self.expansion, least=1)
        check_int("k", self.k, least=1)
        check_int("sae_seed", self.sae_seed, least=0)
        check_int("null_seed_offset", self.null_seed_offset, least=1)
        check_float("match_threshold", self.match_threshold, above=0.0, most=1.0)
        check_float("tolerance", self.tolerance, least=0.0, most=1.0)
        check_int("resamples", self.resamples, least=100)
        check_float("level", self.level, above=0.0, most=0.999999)
        check_int("batch_size", self.batch_size, least=1)


class OrganismDriftResult(NamedTuple):
    """What `organism_drift` returns (and writes, when given `out`)."""

    steps: list[int]
    """Snapshot steps."""
    correlation: Float[Tensor, "n_pairs d_mlp"]
    """Activation correlation of each neuron between consecutive snapshots (NaN: constant)."""
    score: Float[Tensor, "n_pairs d_mlp"]
    """Meaning-switch score between consecutive snapshots."""
    switch: Tensor
    """[n_pairs, d_mlp] bool: dominant feature not related across the pair."""
    null_score: Float[Tensor, "n_pairs d_mlp"]
    """The same score between two seeds' SAEs at the pair's later snapshot."""
    null_switch: Tensor
    """[n_pairs, d_mlp] bool: the same switch between the two seeds' SAEs."""
    dominant: Tensor
    """[n_snapshots, d_mlp] int64: each neuron's dominant feature (-1: no feature share)."""
    summary: dict[str, Any]
    """The JSON summary (written to analysis.json)."""


class _Snapshot(NamedTuple):
    z: Tensor  # (rows, d_sae) codes on the analysed tokens
    shares: Tensor  # (d_mlp, d_sae) chorus, error share in the denominator
    sae: dict[str, float]  # fvu, l0, dead fraction of the SAE on the analysed tokens


def feature_correlation(
    a: Float[Tensor, "rows n_a"], b: Float[Tensor, "rows n_b"]
) -> Float[Tensor, "n_a n_b"]:
    """Pearson correlation of every column of `a` with every column of `b` (0 where a column
    is constant: a feature that never fires correlates with nothing)."""
    a = a.double() - a.double().mean(0)
    b = b.double() - b.double().mean(0)
    na, nb = a.norm(dim=0), b.norm(dim=0)  # (n_a,), (n_b,)
    corr = (a.T @ b) / (na[:, None] * nb[None, :]).clamp_min(1e-300)
    return torch.where((na[:, None] > 0) & (nb[None, :] > 0), corr, torch.zeros_like(corr))


def genealogy(
    corr: Float[Tensor, "n_s n_t"], alive_s: Tensor, alive_t: Tensor, threshold: float
) -> dict[str, list[Any]]:
    """Births, deaths, splits and merges from s's features to t's (module docstring): lists
    of feature indices (`born` at t, `died` at s) and `[parent, [children]]` /
    `[[parents], child]`."""
    related = corr >= threshold  # (n_s, n_t)
    born = (alive_t & ~related.any(0)).nonzero().flatten().tolist()
    died = (alive_s & ~related.any(1)).nonzero().flatten().tolist()
    best_parent = corr.argmax(0)  # (n_t,): each t feature's best s feature
    best_child = corr.argmax(1)  # (n_s,)
    split, merged = [], []
    for g in related.sum(1).ge(2).nonzero().flatten().tolist():
        kids = [f for f in related[g].nonzero().flatten().tolist() if int(best_parent[f]) == g]
        if len(kids) >= 2:
            split.append([g, kids])
    for f in related.sum(0).ge(2).nonzero().flatten().tolist():
        parents = [g for g in related[:, f].nonzero().flatten().tolist() if int(best_child[g]) == f]
        if len(parents) >= 2:
            merged.append([parents, f])
    return {"born": born, "died": died, "split": split, "merged": merged}


def _neuron_correlation(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation of column j of `a` with column j of `b`; NaN when constant."""
    a = a.double() - a.double().mean(0)
    b = b.double() - b.double().mean(0)
    den = a.norm(dim=0) * b.norm(dim=0)
    corr = (a * b).sum(0) / den.clamp_min(1e-300)
    return torch.where(den > 0, corr, torch.full_like(corr, float("nan")))


def _dominant(shares: Tensor) -> Tensor:
    alive = shares.sum(-1) > 0
    return torch.where(alive, shares.argmax(-1), torch.full_like(alive, -1, dtype=torch.int64))


def _compare(a: _Snapshot, b: _Snapshot, threshold: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """score, switch, both-alive (per neuron) and the feature correlation from a to b."""
    corr = feature_correlation(a.z, b.z)  # (d_sae_a, d_sae_b)
    R = torch.where(corr >= threshold, corr, torch.zeros_like(corr))
    score = _cos_drift(a.shares @ R, b.shares)  # (d_mlp,)
    da, db = _dominant(a.shares), _dominant(b.shares)
    alive = (da >= 0) & (db >= 0)
    related = R[da.clamp_min(0), db.clamp_min(0)] > 0
    return score, alive & ~related, alive, corr


def _read_run(run: Path) -> tuple[dict[str, Any], Tensor, Tensor]:
    meta_path = run / "organism.json"
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"organism_run must be an organism run folder (with organism.json); got {str(run)!r}"
        )
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != "polysemy.organism/1":
        raise ValueError(
            f"organism_run must hold format polysemy.organism/1; got {meta.get('format')!r}"
        )
    with safe_open(str(run / "data" / "tokens.safetensors"), framework="pt") as f:
        train, heldout = f.get_tensor("train").long(), f.get_tensor("heldout").long()
    return meta, train, heldout


def _load(folder: Path) -> Any:
    """A snapshot as a `LoadedModel`, without transformers' load report on stderr (the base
    model leaves the LM head unused, which it reports for every snapshot)."""
    from transformers.utils import logging as hf_logging

    from polysemy.models import load_model

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return load_model(folder)
    finally:
        hf_logging.set_verbosity(level)


@torch.no_grad()
def _harvest(loaded: Any, site: str, tokens: Tensor, n_ctx: int, batch: int) -> Tensor:
    """The site's activations on `tokens` cut into windows of n_ctx: (rows, width), float32."""
    from polysemy.models.sites import read_sites

    n = tokens.numel() // n_ctx * n_ctx
    windows = tokens[:n].view(-1, n_ctx)  # (n_windows, n_ctx)
    rest = tokens[n:]
    out = []
    with read_sites(loaded, [site], early_exit=True) as reader:
        for a in range(0, windows.shape[0], batch):
            v = reader.run(input_ids=windows[a : a + batch])[site]  # (b, n_ctx, width)
            out.append(v.reshape(-1, v.shape[-1]).float())
        if rest.numel():  # the tail shorter than a window
            v = reader.run(input_ids=rest[None])[site]
            out.append(v.reshape(-1, v.shape[-1]).float())
    return torch.cat(out)


def _snapshot(
    x_train: Tensor, x: Tensor, cfg: OrganismDriftConfig, seed: int, **train_options: Any
) -> _Snapshot:
    """One snapshot's TopK SAE trained on `x_train`, read on `x`: codes, chorus, quality.
    `train_options` go to `train_sae` (the toy calibration, analysis/drift_calibration.py,
    sets the learning rate its tiny SAEs need)."""
    from polysemy.api import train_sae

    d = x.shape[1]
    trained = train_sae(
        x_train,
        arch="topk",
        k=min(cfg.k, cfg.expansion * d),
        d_sae=cfg.expansion * d,
        tokens=cfg.sae_tokens,
        batch_size=min(1024, x_train.shape[0]),
        seed=seed,
        progress=False,
        **train_options,
    )
    sae = trained.sae.eval()
    with torch.no_grad():
        z = sae.encode(x)  # (rows, d_sae)
        e = x - sae.decode(z)  # (rows, d)
        W = sae.W_dec.detach().double()  # (d_sae, d)
        mass = (z.double() ** 2).sum(0)  # (d_sae,)
        c = mass[:, None] * W**2  # (d_sae, d): the squared chorus of analysis/neurons.py
        total = c.sum(0) + (e.double() ** 2).sum(0)  # (d,)
        shares = (c / total.clamp_min(1e-300)).T.contiguous()  # (d, d_sae)
        fvu = float(((x - sae.decode(z)) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
        stats = {
            "fvu": fvu,
            "l0": float((z > 0).sum(1).double().mean()),
            "dead_fraction": float(((z > 0).sum(0) == 0).double().mean()),
        }
    return _Snapshot(z.float(), shares, stats)


def _mean_ci(values: Tensor, cfg: OrganismDriftConfig) -> Interval:
    v = values.flatten()
    if v.numel() == 1:
        x = float(v[0])
        return Interval(x, x, x, cfg.level, 1, "bootstrap")
    return bootstrap_ci(v, resamples=cfg.resamples, level=cfg.level)


def _rate(flags: Tensor, among: Tensor, cfg: OrganismDriftConfig) -> dict[str, Any]:
    n = int(among.sum())
    if n == 0:
        return {"estimate": None, "low": None, "high": None, "n": 0}
    k = int((flags & among).sum())
    return {**binomial_ci(k, n, level=cfg.level).to_dict(), "estimate": k / n}


def _median(values: Tensor) -> float | None:
    v = values.flatten()
    v = v[torch.isfinite(v)]
    return float(v.median()) if v.numel() else None


def _counts(g: dict[str, list[Any]]) -> dict[str, int]:
    return {k: len(v) for k, v in g.items()}


def _lineage(codes: list[Tensor], threshold: float) -> Tensor:
    """[S, d_sae] int64 lineage ids of the seed-A SAEs' features, for drawing a neuron's voices
    across snapshots: a feature continues the lineage of its best-correlated feature at the
    snapshot before when that correlation is at least `threshold` (children of a split share
    their parent's id), else it starts a new one. Same-seed SAEs share their initialisation,
    so this chains more readily than the cross-seed score; it labels plots, it is not evidence."""
    d_sae = codes[0].shape[1]
    ids = [torch.arange(d_sae, dtype=torch.int64)]
    fresh = d_sae
    for a, b in itertools.pairwise(codes):
        best, parent = feature_correlation(a, b).max(0)  # (d_sae,) best s feature per t feature
        cont = best >= threshold
        new = torch.arange(fresh, fresh + int((~cont).sum()), dtype=torch.int64)
        fresh += new.numel()
        row = ids[-1][parent].clone()
        row[~cont] = new
        ids.append(row)
    return torch.stack(ids)


def _training(meta: dict[str, Any]) -> dict[str, Any]:
    """training.json: the organism's loss curve with its snapshots, copied from organism.json
    so a drift folder draws it without the run beside it."""

    def finite(v: Any) -> Any:  # a diverged run's NaN must not stop the analysis's JSON
        if isinstance(v, list):
            return v if all(finite(x) is not None for x in v) else None
        return v if not isinstance(v, float) or math.isfinite(v) else None

    return {
        "history": [
            {"step": h["step"], "loss": finite(h["loss"])}
            for h in meta.get("history", [])
            if "loss" in h
        ],
        "snapshots": [
            {k: finite(s.get(k)) for k in ("step", "tokens", "heldout_loss", "ci95", "windows")}
            for s in meta.get("snapshots", [])
        ],
        "baselines": meta.get("baselines", {}),
        "heldout": meta.get("heldout"),
        "batch_tokens": int(meta["config"]["batch_size"]) * int(meta["config"]["n_ctx"]),
    }


def organism_drift(
    organism_run: str | os.PathLike[str],
    config: OrganismDriftConfig | None = None,
    *,
    site: str | None = None,
    out: str | os.PathLike[str] | None = None,
    force: bool = False,
    **options: Any,
) -> OrganismDriftResult:
    """Drift of the MLP neurons across the snapshots of the organism run `organism_run`
    (module docstring). `site` defaults to the run's MLP site (`h.0.mlp.act.output`). Trains
    two TopK SAEs per snapshot (the second is the null). When `out` is given, writes an
    analysis folder of kind "drift" there (`drift.safetensors`, `genealogy.json`,
    `training.json`)."""
    cfg = configured(OrganismDriftConfig, config, options)
    run = Path(organism_run)
    meta, train_tokens, heldout = _read_run(run)
    snaps = meta.get("snapshots", [])
    if len(snaps) < 2:
        raise ValueError(
            f"organism_run must hold at least 2 snapshots; got {len(snaps)} in {str(run)!r}"
        )
    site = site or meta["model"]["sites"]["mlp"]
    if heldout.numel() < cfg.rows:
        raise ParameterError(
            "rows", f"at most the run's {heldout.numel()} held-out tokens", cfg.rows
        )
    if train_tokens.numel() < cfg.sae_rows:
        raise ParameterError(
            "sae_rows", f"at most the run's {train_tokens.numel()} training tokens", cfg.sae_rows
        )
    from polysemy.organism.train import require_causal

    archs = set()
    for s in snaps:
        require_causal(run / s["path"], "organism_run's snapshot")
        hf = json.loads((run / s["path"] / "config.json").read_text())
        archs.add(
            json.dumps({k: hf.get(k) for k in ("model_type", "n_embd", "n_inner", "n_layer")})
        )
    if len(archs) > 1:
        raise ValueError(
            f"organism_run's snapshots must share one architecture; got {sorted(archs)}"
        )
    path = start_analysis(out, force=force) if out is not None else None
    n_ctx = int(meta["config"]["n_ctx"])
    steps = [int(s["step"]) for s in snaps]

    acts, fits, nulls = [], [], []
    for i, s in enumerate(snaps):
        log.info("snapshot %d (step %d): harvest and two SAEs", i, steps[i])
        loaded = _load(run / s["path"])
        x = _harvest(loaded, site, heldout[: cfg.rows], n_ctx, cfg.batch_size)
        x_train = _harvest(loaded, site, train_tokens[: cfg.sae_rows], n_ctx, cfg.batch_size)
        acts.append(x)
        fits.append(_snapshot(x_train, x, cfg, cfg.sae_seed))
        # The null is needed at every snapshot a pair ends on.
        nulls.append(_snapshot(x_train, x, cfg, cfg.sae_seed + cfg.null_seed_offset) if i else None)

    n_pairs, d = len(steps) - 1, acts[0].shape[1]
    correlation = torch.stack([_neuron_correlation(acts[p], acts[p + 1]) for p in range(n_pairs)])
    score = torch.zeros(n_pairs, d, dtype=torch.float64)
    switch = torch.zeros(n_pairs, d, dtype=torch.bool)
    alive = torch.zeros(n_pairs, d, dtype=torch.bool)
    null_score = torch.zeros_like(score)
    null_switch = torch.zeros_like(switch)
    null_alive = torch.zeros_like(alive)
    pairs, genealogy_rows = [], []
    totals = {"born": 0, "died": 0, "split": 0, "merged": 0}
    null_totals = dict(totals)
    for p in range(n_pairs):
        # Both comparisons cross the seed (seed A at s against seed B at t; seed A at t
        # against seed B at t), so they differ only by the model's change from s to t: two
        # same-seed SAEs on nearly equal activations would share their noise and hide it.
        a, b, nb = fits[p], fits[p + 1], nulls[p + 1]
        assert nb is not None
        score[p], switch[p], alive[p], corr = _compare(a, nb, cfg.match_threshold)
        null_score[p], null_switch[p], null_alive[p], ncorr = _compare(b, nb, cfg.match_threshold)
        fired = [(f.z > 0).any(0) for f in (a, b, nb)]
        g = genealogy(corr, fired[0], fired[2], cfg.match_threshold)
        ng = genealogy(ncorr, fired[1], fired[2], cfg.match_threshold)
        for key in totals:
            totals[key] += len(g[key])
            null_totals[key] += len(ng[key])
        genealogy_rows.append({"from_step": steps[p], "to_step": steps[p + 1], **g, "null": ng})
        s_ci, n_ci = _mean_ci(score[p], cfg), _mean_ci(null_score[p], cfg)
        pairs.append(
            {
                "from_step": steps[p],
                "to_step": steps[p + 1],
                "score": s_ci.to_dict(),
                "switch_fraction": _rate(switch[p], alive[p], cfg),
                "median_correlation": _median(correlation[p]),
                "null_score": n_ci.to_dict(),
                "null_switch_fraction": _rate(null_switch[p], null_alive[p], cfg),
                "features": {
                    **_counts(g),
                    "alive_from": int(fired[0].sum()),
                    "alive_to": int(fired[2].sum()),
                },
                "null_features": _counts(ng),
                "verdict": _pair_verdict(s_ci, n_ci, cfg.tolerance),
            }
        )
    d_sae = fits[0].z.shape[1]
    summary: dict[str, Any] = {
        "site": site,
        "d_mlp": d,
        "d_sae": d_sae,
        "n_snapshots": len(steps),
        "steps": steps,
        "rows": int(acts[0].shape[0]),
        "dictionary": "one TopK SAE per snapshot, features matched by activation correlation",
        "neurons": {
            "switch_fraction": _rate(switch, alive, cfg),
            "median_correlation": _median(correlation),
            "mean_score": _mean_ci(score, cfg).to_dict(),
            "n": int(score.numel()),
            "unit": "neuron x consecutive snapshot pair",
        },
        "features": {
            **totals,
            "threshold": cfg.match_threshold,
            "unit": f"features of {d_sae}-latent SAEs, summed over {n_pairs} pairs",
        },
        "pairs": pairs,
        "null": {
            "kind": "sae seed",
            "seed": cfg.sae_seed + cfg.null_seed_offset,
            "switch_fraction": _rate(null_switch, null_alive, cfg),
            "mean_score": _mean_ci(null_score, cfg).to_dict(),
            "features": null_totals,
        },
        "saes": [
            {"step": st, **f.sae, "null": n.sae if n is not None else None}
            for st, f, n in zip(steps, fits, nulls, strict=True)
        ],
    }
    dominant = torch.stack([_dominant(f.shares) for f in fits])  # (S, d)
    lineage = _lineage([f.z for f in fits], cfg.match_threshold)  # (S, d_sae)
    result = OrganismDriftResult(
        steps=steps,
        correlation=correlation.float(),
        score=score.float(),
        switch=switch,
        null_score=null_score.float(),
        null_switch=null_switch,
        dominant=dominant,
        summary=summary,
    )
    if path is not None:
        top_shares, top_features = torch.stack([f.shares for f in fits]).topk(
            min(8, d_sae), dim=-1
        )  # (S, d, 8)
        write_analysis(
            path,
            "drift",
            inputs={
                "organism": str(run),
                "site": site,
                "tokens": "held-out stream of the run, first `rows` tokens",
                "config": dataclasses.asdict(cfg),
            },
            summary=summary,
            files={
                "drift.safetensors": {
                    "steps": torch.tensor(steps, dtype=torch.int64),
                    "correlation": result.correlation.contiguous(),
                    "score": result.score.contiguous(),
                    "switch": switch.to(torch.uint8).contiguous(),
                    "null_score": result.null_score.contiguous(),
                    "null_switch": null_switch.to(torch.uint8).contiguous(),
                    "dominant": dominant.contiguous(),
                    "top_features": top_features.contiguous(),
                    "top_shares": top_shares.float().contiguous(),
                    "lineage": lineage.contiguous(),
                },
                "genealogy.json": genealogy_rows,
                "training.json": _training(meta),
            },
        )
    return result
