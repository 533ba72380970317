"""Exact top-k selections, faster than `torch.topk` on CPU for the shapes SAEs use.

`row_topk` (TopK: k per row). `torch.topk(k, dim=1)` runs a selection over all d_sae values
of every row; on a [4096, 3072] batch at k = 32 that is a third of a TopK SAE's step on one
core. Here the row is first cut into g groups of interleaved columns (group j = {j, j + w,
j + 2w, ...}, w = d_sae / g, so the group maximum is an element-wise max of g contiguous
slices), and only the members of the k groups with the largest maxima compete:

    The k largest group maxima are k distinct elements, so the k-th largest element v_k is at
    least the k-th largest group maximum M_k. Every element above v_k therefore sits in a
    group whose maximum exceeds M_k, and all those groups are kept; the kept groups also
    hold k elements >= M_k. So the candidates contain every element > v_k and enough equal
    to v_k: their top k has exactly the values of the row's top k.

`flat_topk` (BatchTopK: k x batch over the whole batch, 131k of 12.6M values at batch 4096).
A strided sample (a prime stride that does not divide the row length, so every column is
sampled) gives a threshold a little below the n-th largest value; the values at or above it
are the candidates. If there are at least n of them, the n-th largest value is at or above
the threshold, so every value of the true top n is a candidate and their top n is exact;
otherwise (rare: the sample's margin is 10%) it falls back to `torch.topk`.

With ties the chosen indices may differ from `torch.topk`'s (whose choice among equal values
is unspecified too); the values never do. `benchmarks/sae_selection.py` (one core, batch
4096) measures row_topk at 1.2-1.9x `torch.topk` for d_sae 1.5k-16k and k 32-128 (one run
gave 0.98x at d_sae 12288, k 64) and flat_topk at 4.7-6.2x.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float, Int
from torch import Tensor

GROUP = 8
"""Columns per group: the group maxima cost one pass over the row, and the k kept groups
leave k * GROUP candidates for the final top-k."""


def row_topk(
    pre: Float[Tensor, "batch d"], k: int
) -> tuple[Float[Tensor, "batch k"], Int[Tensor, "batch k"]]:
    """The k largest values of each row and their column indices (unsorted), exactly."""
    batch, d = pre.shape
    if not 1 <= k <= d:
        raise ValueError(f"k must be in [1, {d}]; got {k}")
    width = d // GROUP
    if pre.device.type != "cpu" or d % GROUP or width < 2 * k or not pre.is_contiguous():
        return pre.topk(k, dim=1, sorted=False)
    group_max = pre.view(batch, GROUP, width).amax(dim=1)  # [batch, width]
    _, groups = group_max.topk(k, dim=1, sorted=False)  # [batch, k]
    members = torch.arange(0, d, width, device=pre.device)  # [GROUP]: offsets of a group
    candidates = (groups.unsqueeze(-1) + members).view(batch, k * GROUP)
    values, j = pre.gather(1, candidates).topk(k, dim=1, sorted=False)
    return values, candidates.gather(1, j)


_SAMPLE_STRIDES = (31, 37, 41, 43, 47)
"""Primes for flat_topk's strided sample; the first that does not divide the row length."""
SAMPLE_SLACK = 1.1
"""flat_topk's threshold keeps about this many times n candidates (10% margin)."""


def flat_topk(
    values: Float[Tensor, " n"], n_keep: int, *, row_length: int = 1
) -> tuple[Float[Tensor, " n_keep"], Int[Tensor, " n_keep"]]:
    """The `n_keep` largest entries of a 1-D tensor and their indices (unsorted), exactly.

    `row_length`: the length of the rows the tensor was flattened from, so that the sample
    stride visits every column.
    """
    n = values.numel()
    if values.ndim != 1 or not 1 <= n_keep <= n:
        raise ValueError(f"n_keep must be in [1, {n}] for a 1-D tensor; got {n_keep}")
    stride = next((p for p in _SAMPLE_STRIDES if row_length % p), None)
    sample_keep = math.ceil(n_keep / (stride or 1) * SAMPLE_SLACK) + 64
    if values.device.type != "cpu" or stride is None or sample_keep * stride * 4 > n:
        return values.topk(n_keep, sorted=False)
    sample = values[::stride]
    threshold = sample.topk(sample_keep, sorted=False).values.min()
    candidates = (values >= threshold).nonzero().squeeze(1)
    if candidates.numel() < n_keep:
        return values.topk(n_keep, sorted=False)
    top, j = values[candidates].topk(n_keep, sorted=False)
    return top, candidates[j]
