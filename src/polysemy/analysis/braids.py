"""Braids: does one edge serve several context clusters that rarely occur together?

For one edge a -> b, its *carrying contexts* are those where |edge_c(a, b)| is at least
`carry` times the edge's largest |edge_c|. Each context is described by a set of upstream
features, a left out (its *other* features): every feature active anywhere in it, or, given
each feature's activation summed over the context and `salient = m`, its m most active ones
(on real text a sentence holds hundreds of active features, so whole sets of two sentences
barely overlap and nothing clusters). Clustering, one simple
rule: two carrying contexts are linked when the Jaccard similarity of their other features is
at least `link`; clusters are the connected components with at least `min_cluster` contexts
(smaller ones are left out as noise).

A cluster's *signature* is the set of features that mark it: active in at least a quarter of
its contexts and at least 1.5 times as often there as over all contexts. Over all contexts (not
only the carrying ones), a context *shows* a cluster when one of its signature features is
active. Two clusters co-occur rarely when the share of contexts showing both is at most
`rare` times the share showing the rarer one. An edge is
*braided* when two of its clusters co-occur rarely.

The braided fraction is over the edges scored, with a Clopper-Pearson interval. Null: each
edge's per-context values shuffled across contexts (the same number of carrying contexts,
drawn at random), `shuffles` times; `null_ci` is the 2.5-97.5% range of the shuffled braided
fraction. Random context sets mix whatever topics the corpus holds, so the null is high
where contexts cluster at all; an edge is braided beyond chance when the real fraction sits
well apart from the null.

>>> summary = braid_scores(values, active, up)    # doctest: +SKIP
>>> summary.braided_fraction.estimate              # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from polysemy.analysis.stats import Interval, binomial_ci, null_interval
from polysemy.validation import ParameterError, check_float, check_int


@dataclass(frozen=True)
class BraidsResult:
    """Per-edge clusters and the braided fraction against shuffled contexts."""

    clusters: Tensor
    """`[n_edges]` int64: clusters of at least `min_cluster` carrying contexts."""
    braided: Tensor
    """`[n_edges]` bool: two of the edge's clusters co-occur rarely."""
    braided_fraction: Interval
    null: Interval
    """Range of the braided fraction over shuffles of the contexts."""

    def summary(self) -> dict[str, Any]:
        return {
            "n_edges": int(self.braided.numel()),
            "braided_fraction": self.braided_fraction.estimate,
            "ci": self.braided_fraction.to_dict(),
            "null_ci": self.null.to_dict(),
            "clusters": self.clusters.tolist(),
            "braided": self.braided.tolist(),
        }


def _components(linked: Tensor) -> list[list[int]]:
    n = linked.shape[0]
    seen = [False] * n
    out = []
    for start in range(n):
        if seen[start]:
            continue
        stack, comp = [start], []
        seen[start] = True
        while stack:
            i = stack.pop()
            comp.append(i)
            for j in linked[i].nonzero().flatten().tolist():
                if not seen[j]:
                    seen[j] = True
                    stack.append(j)
        out.append(comp)
    return out


def _edge_braid(
    values: Tensor, other: Tensor, carry: float, link: float, min_cluster: int, rare: float
) -> tuple[int, bool]:
    """(clusters, braided) of one edge: `values [contexts]`, `other [contexts, d] bool`."""
    mag = values.abs()
    if float(mag.max()) <= 0:
        return 0, False
    idx = (mag >= carry * mag.max()).nonzero().flatten()
    sets = other[idx].float()  # (m, d)
    inter = sets @ sets.t()
    size = sets.sum(1)
    union = size[:, None] + size[None, :] - inter
    jaccard = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(inter))
    comps = [c for c in _components(jaccard >= link) if len(c) >= min_cluster]
    if len(comps) < 2:
        return len(comps), False
    all_sets = other.float()
    overall = all_sets.mean(0)  # (d,)
    shows = []
    for c in comps:
        freq = sets[c].mean(0)
        sig = (freq >= 0.25) & (freq >= 1.5 * overall)  # (d,) the features that mark it
        shows.append(all_sets[:, sig].sum(1) > 0 if bool(sig.any()) else None)
    for i in range(len(comps)):
        for j in range(i + 1, len(comps)):
            si, sj = shows[i], shows[j]
            if si is None or sj is None:
                continue
            both = float((si & sj).float().mean())
            rarer = min(float(si.float().mean()), float(sj.float().mean()))
            if rarer > 0 and both <= rare * rarer:
                return len(comps), True
    return len(comps), False


def braid_scores(
    values: Tensor,
    active: Tensor,
    up: Tensor | list[int],
    *,
    carry: float = 0.1,
    link: float = 0.3,
    min_cluster: int = 3,
    rare: float = 0.1,
    salient: int | None = None,
    shuffles: int = 50,
    seed: int = 0,
) -> BraidsResult:
    """Clusters and braids of `n_edges` edges from their per-context values `values
    [n_edges, contexts]`, the upstream features in each context `active [contexts,
    d_sae_up]` (bool: active; or float: activation summed over the context, the `salient`
    largest positive ones per context kept, every positive one when `salient` is None) and
    each edge's upstream feature `up [n_edges]` (module docstring)."""
    if values.dim() != 2 or active.dim() != 2 or values.shape[1] != active.shape[0]:
        raise ParameterError(
            "values", "[n_edges, contexts] beside active [contexts, d_sae_up]",
            f"{tuple(values.shape)} and {tuple(active.shape)}",
        )  # fmt: skip
    up = torch.as_tensor(up, dtype=torch.long)
    if up.numel() != values.shape[0]:
        raise ParameterError("up", f"{values.shape[0]} upstream features", up.numel())
    check_float("carry", carry, above=0.0, most=1.0)
    check_float("link", link, above=0.0, most=1.0)
    check_int("min_cluster", min_cluster, least=1)
    check_float("rare", rare, least=0.0, most=1.0)
    check_int("shuffles", shuffles, least=1)
    if salient is not None:
        check_int("salient", salient, least=1)
        if active.dtype == torch.bool:
            raise ParameterError("active", "summed activations (float) with salient", "bool")
        top = active.topk(min(salient, active.shape[1]), dim=1).indices
        keep = torch.zeros_like(active, dtype=torch.bool).scatter_(1, top, True)
        active = keep & (active > 0)
    active = active.bool() if active.dtype == torch.bool else active > 0

    def score(vals: Tensor) -> tuple[Tensor, Tensor]:
        clusters, braided = [], []
        for e in range(vals.shape[0]):
            other = active.clone()
            other[:, int(up[e])] = False
            c, b = _edge_braid(vals[e].double(), other, carry, link, min_cluster, rare)
            clusters.append(c)
            braided.append(b)
        return torch.tensor(clusters, dtype=torch.long), torch.tensor(braided, dtype=torch.bool)

    clusters, braided = score(values)
    g = torch.Generator().manual_seed(seed)
    null = []
    for _ in range(shuffles):
        perm = torch.stack([torch.randperm(values.shape[1], generator=g) for _ in values])
        null.append(float(score(values.gather(1, perm))[1].float().mean()))
    n = int(braided.numel())
    return BraidsResult(
        clusters,
        braided,
        binomial_ci(int(braided.sum()), n),
        null_interval(torch.tensor(null), method="shuffled contexts"),
    )
