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

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

TOPK_ARCHS = ("topk",)


def sparse_code(sae: Any, x: Float[Tensor, "batch d_in"]) -> tuple[Tensor, Tensor]:
    """`(idx [batch, m], val [batch, m])`: the active latents of each row (val 0: padding)."""
    if getattr(sae, "arch", "") in TOPK_ARCHS:
        from polysemy.sae.fast_topk import row_topk

        # Float32 into a buffer the SAE reuses every batch: a fresh [4096, 24576] result is
        # 400 MB whose first touch (page faults) cost more than the matmul itself here.
        scratch = getattr(sae, "scratch_pre_activations", None)
        pre = scratch(x) if scratch is not None else sae.pre_activations(x)
        val, idx = row_topk(pre, sae.k)  # (batch, k)
        return idx, val.clamp_min(0.0)
    z = sae.encode(x)  # (batch, d_sae)
    m = max(1, int((z > 0).sum(1).max()))
    val, idx = z.topk(m, dim=1)
    return idx, val.clamp_min(0.0)


@dataclass(frozen=True)
class SparseCodes:
    """Which latents fired (> 0) on each of the first `rows` rows of a split, kept from one
    encoding pass so that a second analysis over the same rows (`analyze_geometry(codes=...)`
    after `analyze_features(keep_codes=...)`) does not encode them again: at d_sae 24,576 the
    encoder matmul and the exact top-k are most of either pass's cost. Stored as compressed
    rows (4 bytes per firing), so the memory is the firing count, whatever the architecture."""

    latent: Int[Tensor, " nnz"]
    """Ids of the latents that fired, row after row (int32)."""
    row_start: Int[Tensor, " rows_plus_1"]
    """Where each row's ids start in `latent` (int64; the last entry is nnz)."""
    split: str
    """Split of the store the rows are the first of (a tensor input has none: "all")."""
    d_sae: int

    @property
    def rows(self) -> int:
        return int(self.row_start.numel()) - 1

    @staticmethod
    def part(idx: Int[Tensor, "batch m"], val: Float[Tensor, "batch m"]) -> tuple[Tensor, Tensor]:
        """One batch of `sparse_code` output, kept compactly: `(latent ids that fired, firings
        per row)`, both on the CPU."""
        on = val > 0
        return idx[on].to("cpu", torch.int32), on.sum(1).cpu()

    @staticmethod
    def stack(parts: list[tuple[Tensor, Tensor]], split: str, d_sae: int) -> SparseCodes:
        """One `SparseCodes` from consecutive batches' `part`s."""
        latent = torch.cat([p[0] for p in parts]) if parts else torch.zeros(0, dtype=torch.int32)
        per_row = torch.cat([p[1] for p in parts]) if parts else torch.zeros(0, dtype=torch.int64)
        row_start = torch.zeros(per_row.numel() + 1, dtype=torch.int64)
        torch.cumsum(per_row, 0, out=row_start[1:])
        return SparseCodes(latent, row_start, split, d_sae)

    def counts(self, rows: int) -> Int[Tensor, " d_sae"]:
        """Rows (of the first `rows`) on which each latent fired."""
        end = int(self.row_start[min(rows, self.rows)])
        return torch.bincount(self.latent[:end].long(), minlength=self.d_sae)

    def firing(self, rows: int, batch_size: int, columns: Tensor | None = None) -> Iterator[Tensor]:
        """Boolean firing blocks `[batch, d_sae]` (or `[batch, len(columns)]`, in the order
        of `columns`) of the first `rows` rows."""
        width = self.d_sae if columns is None else int(columns.numel())
        where = torch.full((self.d_sae,), -1, dtype=torch.int64)
        where[torch.arange(self.d_sae) if columns is None else columns.cpu()] = torch.arange(width)
        for a in range(0, min(rows, self.rows), batch_size):
            b = min(a + batch_size, rows, self.rows)
            lo, hi = int(self.row_start[a]), int(self.row_start[b])
            per_row = self.row_start[a + 1 : b + 1] - self.row_start[a:b]  # (batch,)
            row = torch.repeat_interleave(torch.arange(b - a), per_row)  # (entries,)
            col = where[self.latent[lo:hi].long()]  # position in the block, -1 outside it
            keep = col >= 0
            block = torch.zeros(b - a, width, dtype=torch.bool)
            block[row[keep], col[keep]] = True
            yield block


def top_per_row(values: Float[Tensor, "rows d"], n: int) -> tuple[Tensor, Tensor]:
    """The `n` largest entries of each row, largest first: `(values [rows, n], index)`.
    `row_topk`'s exact group-maximum selection, then a sort of the n survivors only."""
    from polysemy.sae.fast_topk import row_topk

    if n == 0:
        empty = values.new_zeros(values.shape[0], 0)
        return empty, empty.long()
    v, i = row_topk(values, n)
    v, order = v.sort(dim=1, descending=True)
    return v, i.gather(1, order)


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

    Each unordered pair is counted once, under its smaller feature (f < g: row f, bucket of
    g), which halves the updates; `partners` reads g > f from row f and g < f from row g.
    """

    def __init__(
        self, d_sae: int, *, max_bytes: int, width: int, device: torch.device | str
    ) -> None:
        self.d_sae = d_sae
        self.dense = d_sae * d_sae * 4 <= max_bytes
        self.method = "dense" if self.dense else "count-min sketch"
        if self.dense:
            self.width, self.depth = d_sae, 1
            self.bucket = torch.arange(d_sae, device=device)[None, :]  # (1, d_sae)
        else:
            self.depth, self.width = 2, width
            g = torch.Generator().manual_seed(12345)
            prime = 2_147_483_647
            a = torch.randint(1, prime, (self.depth, 1), generator=g)
            b = torch.randint(0, prime, (self.depth, 1), generator=g)
            # Each feature's bucket in each table, computed once: (depth, d_sae).
            self.bucket = (((a * torch.arange(d_sae) + b) % prime) % width).to(device)
        self.counts = torch.zeros(self.depth, d_sae * self.width, device=device)
        self.rows = 0
        self._pairs: tuple[int, Tensor, Tensor] | None = None

    def _upper(self, m: int, device: torch.device) -> tuple[Tensor, Tensor]:
        # The m (m - 1) / 2 slot pairs (a, b), a < b, of a row's m latents.
        if self._pairs is None or self._pairs[0] != m:
            a, b = torch.triu_indices(m, m, offset=1)
            self._pairs = (m, a.to(device), b.to(device))
        return self._pairs[1], self._pairs[2]

    def update(self, idx: Tensor, val: Tensor) -> None:
        """Add the pairs of each row's active features (`idx [batch, m]`, distinct within a
        row, val > 0)."""
        idx, order = idx.sort(dim=1)  # slot a < b now means feature i < j
        val = val.gather(1, order)
        sa, sb = self._upper(idx.shape[1], idx.device)
        i, j = idx[:, sa].flatten(), idx[:, sb].flatten()  # (batch * m (m - 1) / 2,)
        # Padding (val 0) adds 0: a weight instead of a boolean selection, so no compaction.
        active = (val > 0).float()
        weight = (active[:, sa] * active[:, sb]).flatten()
        base = i * self.width
        for t in range(self.depth):
            self.counts[t].index_add_(0, base + self.bucket[t][j], weight)
        self.rows += idx.shape[0]

    def partners(self, fired: Tensor, n: int, chunk: int = 1024) -> tuple[Tensor, Tensor, Tensor]:
        """Per feature, the `n` partners with the largest excess co-occurrence over
        independence, `c_ij - n_i n_j / N` (the shuffled-rows null), as `(partner, count,
        lift)`; lift = c_ij N / (n_i n_j). `fired` counts rows each feature fired in, over
        the same rows."""
        d, N = self.d_sae, max(self.rows, 1)
        device = self.counts.device
        partner = torch.empty(d, n, dtype=torch.int64)
        count = torch.empty(d, n)
        lift = torch.empty(d, n)
        fired = fired.float().to(device)
        tables = self.counts.view(self.depth, d, self.width)
        # Two buffers reused by every chunk: fresh [chunk, d_sae] results page-fault.
        c = torch.empty(min(chunk, d), d, device=device)
        other = torch.empty_like(c) if self.depth > 1 else c
        low = torch.empty_like(c)
        # Partners g < f sit in column bucket(f) of row g: read from a transposed copy (one
        # pass over each table), not as a strided column gather per chunk (a pass per chunk).
        columns = [tables[t].t().contiguous() for t in range(self.depth)]  # (width, d_sae)
        for a in range(0, d, chunk):
            b = min(a + chunk, d)
            cc, oo = c[: b - a], other[: b - a]
            lower = (
                torch.arange(d, device=device)[None, :] < torch.arange(a, b, device=device)[:, None]
            )  # (chunk, d_sae): partner g < f, counted under g
            for t in range(self.depth):  # count-min: min over tables of each partner's bucket
                out = cc if t == 0 else oo
                torch.index_select(tables[t, a:b], 1, self.bucket[t], out=out)  # g > f
                below = torch.index_select(columns[t], 0, self.bucket[t, a:b], out=low[: b - a])
                torch.where(lower, below, out, out=out)
                if t > 0:
                    torch.minimum(cc, oo, out=cc)
            excess = oo if self.depth > 1 else torch.empty_like(cc)
            # excess = c - n_i n_j / N, the outer product added in place.
            torch.addr(cc, fired[a:b], fired, alpha=-1.0 / N, out=excess)
            excess.diagonal(offset=a).fill_(-torch.inf)  # not its own partner
            _, j = top_per_row(excess, n)
            cj = cc.gather(1, j)
            expected = fired[a:b, None] * fired[j] / N
            partner[a:b], count[a:b] = j.cpu(), cj.cpu()
            lift[a:b] = (cj / expected.clamp_min(1e-12)).cpu()
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
