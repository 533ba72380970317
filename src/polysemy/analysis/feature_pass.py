"""The streaming pieces of `analyze_features`: sparse codes, per-feature top-k merges,
histograms and co-occurrence counts, all vectorised over every feature at once.

A batch's code is held sparsely as `(idx [batch, m], val [batch, m])` (TopK: m = k, the
selection itself; other architectures: m = the most active latents of any row, zeros as
padding), so each step costs O(batch * m), never O(batch * d_sae) beyond the encoder matmul.

Top-k per feature is a streaming merge: entries at or below a feature's current n-th best
are dropped first (after a few batches almost all are), the survivors are ranked within
their feature by one stable sort, and the running best `[d_sae, n]` is merged with them by
`torch.topk` over their concatenation. A uniform sample of each feature's firings (for
examples at evenly spaced activation quantiles) is the same merge on random keys.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

TOPK_ARCHS = ("topk",)


def sparse_code(sae: Any, x: Float[Tensor, "batch d_in"]) -> tuple[Tensor, Tensor]:
    """`(idx [batch, m], val [batch, m])`: the active latents of each row (val 0: padding)."""
    if getattr(sae, "arch", "") in TOPK_ARCHS:
        from polysemy.sae.fast_topk import row_topk

        val, idx = row_topk(sae.pre_activations(x), sae.k)  # (batch, k)
        return idx, val.clamp_min(0.0)
    z = sae.encode(x)  # (batch, d_sae)
    m = max(1, int((z > 0).sum(1).max()))
    val, idx = z.topk(m, dim=1)
    return idx, val.clamp_min(0.0)


def segment_top(
    feature: Int[Tensor, " nnz"], score: Float[Tensor, " nnz"], n: int, d_sae: int
) -> tuple[Tensor, Tensor]:
    """Per feature, its `n` best entries: `(score [d_sae, n]` (-inf where fewer),
    `entry [d_sae, n]` (index into the inputs, -1 where fewer))."""
    out = torch.full((d_sae, n), -torch.inf, device=score.device, dtype=score.dtype)
    pos = torch.full((d_sae, n), -1, device=score.device, dtype=torch.int64)
    if feature.numel() == 0:
        return out, pos
    order = score.argsort(descending=True, stable=True)
    order = order[feature[order].argsort(stable=True)]  # feature ascending, score descending
    f = feature[order]
    counts = torch.bincount(f, minlength=d_sae)
    starts = counts.cumsum(0) - counts
    rank = torch.arange(f.numel(), device=f.device) - starts[f]
    keep = rank < n
    out[f[keep], rank[keep]] = score[order[keep]]
    pos[f[keep], rank[keep]] = order[keep]
    return out, pos


class StreamingTop:
    """The `n` highest-scoring entries per feature seen so far, with two payloads each."""

    def __init__(self, d_sae: int, n: int, device: torch.device | str) -> None:
        self.d_sae, self.n = d_sae, n
        self.score = torch.full((d_sae, n), -torch.inf, device=device)
        self.row = torch.full((d_sae, n), -1, dtype=torch.int64, device=device)
        self.value = torch.zeros((d_sae, n), device=device)

    def update(self, feature: Tensor, score: Tensor, row: Tensor, value: Tensor) -> None:
        # Only entries beating the feature's current n-th best can enter.
        floor = self.score[:, -1] if self.n else None
        if floor is not None:
            keep = score > floor[feature]
            feature, score, row, value = feature[keep], score[keep], row[keep], value[keep]
        if feature.numel() == 0:
            return
        s, pos = segment_top(feature, score, self.n, self.d_sae)
        safe = pos.clamp_min(0)
        merged = torch.cat([self.score, s], dim=1)  # (d_sae, 2n)
        self.score, pick = merged.topk(self.n, dim=1)  # sorted: best first
        self.row = torch.cat([self.row, torch.where(pos >= 0, row[safe], -1)], 1).gather(1, pick)
        self.value = torch.cat([self.value, value[safe]], 1).gather(1, pick)


class Cooccurrence:
    """Counts of rows where two features fire together.

    Dense `[d_sae, d_sae]` counts when they fit in `max_bytes`; otherwise a count-min sketch
    (Cormode & Muthukrishnan 2005): `depth` hashed tables `[d_sae, width]` per feature, whose
    minimum over tables never undercounts and overcounts by the colliding partners' counts.
    """

    def __init__(
        self, d_sae: int, *, max_bytes: int, width: int, device: torch.device | str
    ) -> None:
        self.d_sae = d_sae
        self.dense = d_sae * d_sae * 4 <= max_bytes
        self.method = "dense" if self.dense else "count-min sketch"
        if self.dense:
            self.counts = torch.zeros(d_sae * d_sae, device=device)
        else:
            self.depth, self.width = 2, width
            g = torch.Generator().manual_seed(12345)
            prime = 2_147_483_647
            self.prime = prime
            self.a = torch.randint(1, prime, (self.depth,), generator=g).to(device)
            self.b = torch.randint(0, prime, (self.depth,), generator=g).to(device)
            self.counts = torch.zeros(self.depth, d_sae * width, device=device)
        self.rows = 0

    def _hash(self, t: int, j: Tensor) -> Tensor:
        return ((self.a[t] * j + self.b[t]) % self.prime) % self.width

    def update(self, idx: Tensor, val: Tensor) -> None:
        """Add the pairs of each row's active features (`idx [batch, m]`, val > 0)."""
        active = val > 0
        pair = active[:, :, None] & active[:, None, :]  # (batch, m, m)
        pair &= ~torch.eye(idx.shape[1], dtype=torch.bool, device=idx.device)
        i = idx[:, :, None].expand_as(pair)[pair]
        j = idx[:, None, :].expand_as(pair)[pair]
        ones = torch.ones(i.numel(), device=idx.device)
        if self.dense:
            self.counts.index_add_(0, i * self.d_sae + j, ones)
        else:
            for t in range(self.depth):
                self.counts[t].index_add_(0, i * self.width + self._hash(t, j), ones)
        self.rows += idx.shape[0]

    def partners(self, fired: Tensor, n: int, chunk: int = 512) -> tuple[Tensor, Tensor, Tensor]:
        """Per feature, the `n` partners with the largest excess co-occurrence over
        independence, `c_ij - n_i n_j / N` (the shuffled-rows null), as `(partner, count,
        lift)`; lift = c_ij N / (n_i n_j). `fired` counts rows each feature fired in, over
        the same rows."""
        d, N = self.d_sae, max(self.rows, 1)
        partner = torch.empty(d, n, dtype=torch.int64)
        count = torch.empty(d, n)
        lift = torch.empty(d, n)
        fired = fired.float().to(self.counts.device)
        all_j = torch.arange(d, device=self.counts.device)
        for a in range(0, d, chunk):
            rows = torch.arange(a, min(a + chunk, d), device=self.counts.device)
            if self.dense:
                c = self.counts.view(d, d)[rows]  # (chunk, d)
            else:
                tables = self.counts.view(self.depth, d, self.width)
                c = torch.stack(
                    [tables[t][rows][:, self._hash(t, all_j)] for t in range(self.depth)]
                ).amin(0)  # (chunk, d)
            expected = fired[rows, None] * fired[None, :] / N
            excess = c - expected
            excess[torch.arange(rows.numel()), rows] = -torch.inf  # not its own partner
            _, j = excess.topk(n, dim=1)
            cj = c.gather(1, j)
            partner[rows.cpu()] = j.cpu()
            count[rows.cpu()] = cj.cpu()
            lift[rows.cpu()] = (cj / expected.gather(1, j).clamp_min(1e-12)).cpu()
        return partner, count, lift


def log_bins(low: float, high: float, n_bins: int) -> Tensor:
    """`n_bins + 1` log-spaced edges from `low` to `high` (the same for every feature)."""
    return torch.logspace(
        torch.log10(torch.tensor(low)), torch.log10(torch.tensor(high)), n_bins + 1
    )


def bin_index(value: Tensor, low: float, high: float, n_bins: int) -> Tensor:
    """Bin of each positive value on `log_bins(low, high, n_bins)`; values outside the edges
    go to the first or last bin."""
    scale = n_bins / (torch.log(torch.tensor(high)) - torch.log(torch.tensor(low)))
    b = ((value.log() - torch.log(torch.tensor(low))) * scale.to(value.device)).floor()
    return b.clamp(0, n_bins - 1).long()
