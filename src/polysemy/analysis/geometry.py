"""Dictionary geometry: how much room each feature gets, how much the features interfere, and
whether features that overlap are the ones that rarely fire together.

With decoder rows W_i (`W_dec [d_sae, d_in]`), unit rows Ŵ_i = W_i / ||W_i|| (0 for a zero row):

    dimensionality   D_i = ||W_i||² / Σ_j (Ŵ_i · W_j)²     (j = i included; Elhage et al. 2022,
                     "Toy Models of Superposition", section "Feature Dimensionality")
    interference     |cos_ij| = |Ŵ_i · Ŵ_j| over pairs i < j (all pairs, or a seeded sample)
    welch bound      sqrt((n - d) / (d (n - 1))) for n = d_sae > d = d_in: no n unit vectors in
                     d dimensions have every |cos| below it (0 when n <= d)

The sum in D_i runs over every row, so it is computed as Ŵ_i^T G Ŵ_i with the Gram matrix
G = W_dec^T W_dec `[d_in, d_in]`: exact, and memory d_in² instead of d_sae² (24,576 latents fit).

The essay's claim — a network lets *rarely co-occurring* features share space — is tested on
the features' firing (latent > 0 on a row of the store). For a pair, with n rows, c_i and c_j
rows where each fires and c_ij rows where both do:

    phi_ij = (n c_ij - c_i c_j) / sqrt(c_i c_j (n - c_i) (n - c_j))
    pmi_ij = log((c_ij + 1/2) n / (c_i c_j))        (+1/2: a pair never seen together stays finite)

and rho = Spearman(|cos_ij|, phi_ij) over all pairs among the `top_features` most frequent
features that fire at least `min_count` times. The claim predicts rho < 0.

Pairs are not independent: the pairs (i, j) and (i, k) share feature i, and anything peculiar
to i (its frequency, its norm) moves both. So by default both the interval and the null work
on features, not pairs: the bootstrap resamples features with replacement and keeps the pairs
among the resampled features (a "vertex bootstrap"), and the null permutes feature labels of
the overlap matrix against the co-occurrence matrix (a Mantel / QAP permutation test), which
keeps each matrix's row structure and destroys only the alignment between them. Shuffling
co-occurrence across pairs, or shuffling rows of one feature's firing, would instead test
whether features co-occur at all, and treat the N(N-1)/2 pairs as N(N-1)/2 independent
observations. `resample="pairs"` does the naive thing, for comparison (the calibration in
docs/evidence.md measures both).

>>> result = analyze_geometry(sae, "acts/minilm-l3", out="analyses/geometry")  # doctest: +SKIP
>>> result.cooccurrence.rho.estimate, result.cooccurrence.verdict              # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
from jaxtyping import Float, Int
from torch import Tensor

from polysemy.activations.store import SPLITS, Split
from polysemy.analysis.feature_pass import SparseCodes, sparse_code
from polysemy.analysis.folder import start_analysis_on_main, write_analysis
from polysemy.analysis.reconstruction import open_rows
from polysemy.analysis.stats import (
    Interval,
    Verdict,
    bootstrap_ci,
    null_interval,
    pearson,
    quantiles,
    ranks,
    spearman,
    verdict,
)
from polysemy.progress import progress_bar
from polysemy.sae import distributed as dist_utils
from polysemy.validation import (
    ParameterError,
    check_choice,
    check_float,
    check_int,
    check_optional_int,
    configured,
)

logger = logging.getLogger(__name__)

Measure = Literal["phi", "pmi"]
MEASURES: tuple[str, ...] = get_args(Measure)
Resample = Literal["features", "pairs"]
RESAMPLES: tuple[str, ...] = get_args(Resample)

MIN_PAIRS = 10
"""Fewest feature pairs the co-occurrence test runs on (5 features give 10 pairs)."""
_TINY = 1e-12  # norms below this count as zero (the unit vector is then 0)


@dataclass(frozen=True)
class GeometryConfig:
    """What `analyze_geometry` reads and how it tests overlap against co-occurrence."""

    split: Split = "heldout"
    """Rows of the store whose firing is counted: heldout (never trained on), train or all."""
    batch_size: int = 4096
    """Rows encoded at a time (results do not depend on it)."""
    max_rows: int | None = 200_000
    """Count firing on at most this many rows, the first ones of the split (None: all)."""
    top_features: int = 256
    """Test the pairs among at most this many features, the most frequent ones."""
    min_count: int = 20
    """A feature enters the test only if it fires on at least this many rows."""
    measure: Measure = "phi"
    """Co-occurrence measure the verdict is on: phi coefficient or PMI (both are reported)."""
    resample: Resample = "features"
    """Unit of the bootstrap and the permutation null: features (pairs sharing a feature are
    dependent; the default) or pairs (treats every pair as independent)."""
    resamples: int = 1000
    """Bootstrap resamples of the rank correlation."""
    permutations: int = 1000
    """Permutations in the null of the rank correlation."""
    level: float = 0.95
    """Coverage of every interval."""
    interference_pairs: int = 1_000_000
    """Decoder-row pairs measured for the |cos| histogram: all pairs when there are no more
    than this, else a seeded uniform sample of this many."""
    bins: int = 200
    """Histogram bins of |cos| on [0, 1]."""

    def __post_init__(self) -> None:
        check_choice("split", self.split, SPLITS)
        check_int("batch_size", self.batch_size, least=1)
        check_optional_int("max_rows", self.max_rows, least=1)
        check_int("top_features", self.top_features, least=5)
        check_int("min_count", self.min_count, least=1)
        check_choice("measure", self.measure, MEASURES)
        check_choice("resample", self.resample, RESAMPLES)
        check_int("resamples", self.resamples, least=100)
        check_int("permutations", self.permutations, least=100)
        check_float("level", self.level, above=0.0, most=0.999)
        check_int("interference_pairs", self.interference_pairs, least=100)
        check_int("bins", self.bins, least=2, most=100_000)


# ---- geometry of the dictionary alone -----------------------------------------------------


def _unit_rows(W: Tensor) -> tuple[Tensor, Tensor]:
    W64 = W.detach().to(torch.float64)
    norms = W64.norm(dim=1)  # (d_sae,)
    safe = torch.where(norms > _TINY, norms, torch.ones_like(norms))
    unit = torch.where((norms > _TINY)[:, None], W64 / safe[:, None], 0.0)
    return unit, norms


def feature_dimensionality(
    W_dec: Float[Tensor, "d_sae d_in"], *, chunk: int = 8192
) -> Float[Tensor, " d_sae"]:
    """D_i = ||W_i||² / Σ_j (Ŵ_i · W_j)² per decoder row (0 for a zero row), in float64.

    The toy metric (`polysemy.toy.metrics.feature_dimensionality`) for rows instead of
    columns, computed through G = W_dec^T W_dec so it never forms the d_sae x d_sae matrix.
    """
    if W_dec.ndim != 2:
        raise ValueError(f"W_dec must have shape [d_sae, d_in]; got {tuple(W_dec.shape)}")
    unit, norms = _unit_rows(W_dec)
    W64 = W_dec.detach().to(torch.float64)
    gram = W64.T @ W64  # (d_in, d_in)
    total = torch.empty_like(norms)
    for a in range(0, unit.shape[0], chunk):
        u = unit[a : a + chunk]  # (chunk, d_in)
        total[a : a + chunk] = ((u @ gram) * u).sum(dim=1)  # Σ_j (Ŵ_i · W_j)²
    ok = (norms > _TINY) & (total > 0)
    return torch.where(ok, norms**2 / torch.where(ok, total, 1.0), 0.0)


def welch_bound(n: int, d: int) -> float:
    """Least possible max |cos| of n unit vectors in d dimensions (0 when n <= d)."""
    return math.sqrt((n - d) / (d * (n - 1))) if n > d else 0.0


def pair_sample(
    n: int, pairs: int, *, seed: int = 0
) -> tuple[Int[Tensor, " pairs"], Int[Tensor, " pairs"]]:
    """All pairs i < j of n items when there are at most `pairs`, else `pairs` pairs drawn
    uniformly (i != j, with replacement), seeded."""
    total = n * (n - 1) // 2
    if total <= pairs:
        i, j = torch.triu_indices(n, n, offset=1)
        return i, j
    g = torch.Generator().manual_seed(seed)
    i = torch.randint(0, n, (pairs,), generator=g)
    j = torch.randint(0, n - 1, (pairs,), generator=g)
    j = j + (j >= i).to(j.dtype)  # uniform over j != i
    return torch.minimum(i, j), torch.maximum(i, j)


def pair_cosines(
    W: Float[Tensor, "n d"], i: Int[Tensor, " pairs"], j: Int[Tensor, " pairs"], *, chunk=65536
) -> Float[Tensor, " pairs"]:
    """|cos| between rows i and j of W (0 where either row is zero), float64."""
    unit, _ = _unit_rows(W)
    out = torch.empty(i.numel(), dtype=torch.float64)
    for a in range(0, i.numel(), chunk):
        out[a : a + chunk] = (unit[i[a : a + chunk]] * unit[j[a : a + chunk]]).sum(dim=1).abs()
    return out


def random_directions(n: int, d: int, *, seed: int = 0) -> Float[Tensor, "n d"]:
    """n unit vectors uniform on the sphere in d dimensions: the null dictionary."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


# ---- co-occurrence --------------------------------------------------------------------------


@dataclass(frozen=True)
class Cooccurrence:
    """Firing counts of a set of features over `rows` rows."""

    counts: Int[Tensor, " features"]
    """c_i: rows on which feature i fires."""
    joint: Int[Tensor, "features features"]
    """c_ij: rows on which both fire (c_ii = c_i)."""
    rows: int
    """n: rows counted."""

    def phi(self) -> Float[Tensor, "features features"]:
        """phi_ij = (n c_ij - c_i c_j) / sqrt(c_i c_j (n - c_i)(n - c_j)); 0 where undefined
        (a feature firing on no row or on every row)."""
        n = float(self.rows)
        c = self.counts.to(torch.float64)
        cij = self.joint.to(torch.float64)
        spread = c * (n - c)  # (features,)
        denom = (spread[:, None] * spread[None, :]).sqrt()
        num = n * cij - c[:, None] * c[None, :]
        return torch.where(denom > 0, num / torch.where(denom > 0, denom, 1.0), 0.0)

    def pmi(self) -> Float[Tensor, "features features"]:
        """pmi_ij = log((c_ij + 1/2) n / (c_i c_j)) (features that never fire give 0)."""
        c = self.counts.to(torch.float64).clamp(min=0.5)
        cij = self.joint.to(torch.float64)
        return torch.log((cij + 0.5) * float(self.rows) / (c[:, None] * c[None, :]))


def count_cooccurrence(firing_batches: Any, n_features: int) -> Cooccurrence:
    """Sum c_i and c_ij over an iterable of boolean `[rows, n_features]` firing blocks."""
    counts = torch.zeros(n_features, dtype=torch.int64)
    joint = torch.zeros(n_features, n_features, dtype=torch.float64)
    rows = 0
    for fired in firing_batches:
        f = fired.to(torch.float64)  # exact: counts stay far below 2**53
        counts += fired.sum(dim=0).to(torch.int64).cpu()
        joint += (f.T @ f).cpu()
        rows += fired.shape[0]
    return Cooccurrence(counts, joint.round().to(torch.int64), rows)


# ---- the test -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OverlapTest:
    """Rank correlation between overlap |cos| and co-occurrence across feature pairs."""

    measure: str
    """Co-occurrence measure: phi or pmi."""
    rho: Interval
    """Spearman rho of |cos| against the measure, with its bootstrap interval."""
    null: Interval
    """Central range of rho under the permutation null."""
    verdict: Verdict
    """`effect` when the interval lies outside the null's range (rho < 0 is the essay's claim)."""
    features: int
    """Features whose pairs were tested."""
    pairs: int
    """Pairs tested: features (features - 1) / 2."""
    resample: str
    """Unit of resampling: features or pairs."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "rho": self.rho.estimate,
            "ci": [self.rho.low, self.rho.high],
            "null_ci": [self.null.low, self.null.high],
            "verdict": self.verdict,
            "n": self.pairs,
            "features": self.features,
            "measure": self.measure,
            "resample": self.resample,
            "level": self.rho.level,
        }


def _rank_matrix(values: Tensor, i: Tensor, j: Tensor, n: int) -> Tensor:
    """Ranks of a pair vector, written back into a symmetric n x n matrix."""
    r = ranks(values)
    m = torch.zeros(n, n, dtype=torch.float64)
    m[i, j] = r
    m[j, i] = r
    return m


class _Ranker:
    """Tie-averaged 1-based ranks of any sample (with repeats) of a fixed tensor's entries,
    equal to `stats.ranks(values.flatten()[sample])`: the entries are put in value order once
    (`torch.unique`), then each sample is ranked by counting its entries per distinct value,
    O(distinct values) per sample instead of a sort."""

    def __init__(self, values: Tensor) -> None:
        levels, code = torch.unique(values.flatten(), return_inverse=True)
        self.code, self.levels = code, levels.numel()

    def __call__(self, sample: Int[Tensor, " n"]) -> Float[Tensor, " n"]:
        c = self.code[sample]
        counts = torch.bincount(c, minlength=self.levels).to(torch.float64)
        ends = counts.cumsum(0)
        return (ends - (counts - 1) / 2)[c]  # ranks before this value + mean rank among ties


def overlap_test(
    overlap: Float[Tensor, "features features"],
    cooccurrence: Float[Tensor, "features features"],
    *,
    measure: str = "phi",
    resample: Resample = "features",
    resamples: int = 1000,
    permutations: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> OverlapTest:
    """Spearman rho between two symmetric pair matrices over the pairs i < j, with a
    bootstrap interval and a permutation null, both over `resample` units (module docstring).
    """
    check_choice("resample", resample, RESAMPLES)
    n = overlap.shape[0]
    if overlap.shape != (n, n) or cooccurrence.shape != (n, n):
        raise ValueError(
            f"overlap and cooccurrence must be square and equal; got {tuple(overlap.shape)} "
            f"and {tuple(cooccurrence.shape)}"
        )
    i, j = torch.triu_indices(n, n, offset=1)
    n_pairs = i.numel()
    if n_pairs < MIN_PAIRS:
        raise ValueError(
            f"features: {n} features give {n_pairs} pairs; the test needs at least {MIN_PAIRS}"
        )
    x = overlap.to(torch.float64)[i, j]
    y = cooccurrence.to(torch.float64)[i, j]
    rho = spearman(x, y)
    g = torch.Generator().manual_seed(seed)

    # Null: permute feature labels of the overlap ranks (features) or pair order (pairs).
    rx = _rank_matrix(x, i, j, n)
    ry = ranks(y)
    ry = ry - ry.mean()
    null = []
    for _ in range(permutations):
        if resample == "features":
            p = torch.randperm(n, generator=g)
            perm_rx = rx[p[i], p[j]]
        else:
            perm_rx = rx[i, j][torch.randperm(n_pairs, generator=g)]
        null.append(pearson(perm_rx, ry))
    null_range = null_interval(null, level=level, method=f"permutation of {resample}")

    # Interval: bootstrap over features (the pairs among the resampled features) or pairs.
    # Each resample's Spearman is exact, but its ranks come from counting, not sorting: the
    # entries' order is found once (`_Ranker`), which made this loop 4x faster.
    ox, cy = overlap.to(torch.float64), cooccurrence.to(torch.float64)
    if resample == "features":
        rank_x, rank_y = _Ranker(ox), _Ranker(cy)
    else:
        rank_x, rank_y = _Ranker(x), _Ranker(y)
    dist = []
    for _ in range(resamples):
        if resample == "features":
            pick = torch.randint(0, n, (n,), generator=g)
            keep = pick[i] != pick[j]  # a feature drawn twice is not a pair with itself
            a, b = pick[i][keep], pick[j][keep]
            flat = a * n + b  # entry (a, b) of the n x n matrices
            dist.append(pearson(rank_x(flat), rank_y(flat)) if a.numel() > 2 else 0.0)
        else:
            k = torch.randint(0, n_pairs, (n_pairs,), generator=g)
            dist.append(pearson(rank_x(k), rank_y(k)))
    alpha = (1 - level) / 2
    q = torch.quantile(
        torch.tensor(dist, dtype=torch.float64), torch.tensor([alpha, 1 - alpha]).double()
    )
    ci = Interval(rho, float(q[0]), float(q[1]), level, n_pairs, f"bootstrap over {resample}")
    return OverlapTest(
        measure=measure,
        rho=ci,
        null=null_range,
        verdict=verdict(ci, null_range),
        features=n,
        pairs=n_pairs,
        resample=resample,
    )


# ---- the analysis ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GeometryResult:
    """The geometry of one SAE's dictionary and the overlap/co-occurrence test on a store."""

    dimensionality: Float[Tensor, " d_sae"]
    """D_i of every decoder row (float64)."""
    dimensionality_mean: Interval
    """Mean D_i over the rows, with a bootstrap interval over rows."""
    dimensionality_null_mean: float
    """Mean D_i of d_sae random unit vectors in d_in dimensions (about d_in / (d_in + d_sae))."""
    interference: dict[str, float]
    """Quantiles (q05 ... q95, q99) and max of |cos| over the measured pairs."""
    interference_null: dict[str, float]
    """The same for random unit vectors (same count, same pairs)."""
    welch_bound: float
    """sqrt((n - d) / (d (n - 1))), n = d_sae, d = d_in: the least possible max |cos|."""
    interference_pairs: int
    """Pairs measured (all pairs when `interference_sampled` is False)."""
    interference_sampled: bool
    cooccurrence: OverlapTest
    """The test on the configured measure (the verdict)."""
    cooccurrence_other: OverlapTest
    """The same test on the other measure (phi <-> pmi), for comparison."""
    features: Int[Tensor, " features"]
    """Latents in the test, most frequent first."""
    firing_count: Int[Tensor, " d_sae"]
    """Rows on which each latent fired."""
    rows: int
    """Rows whose firing was counted."""
    d_in: int
    d_sae: int

    def summary(self) -> dict[str, Any]:
        """The JSON headline (what `polysemy analyze geometry --json` prints)."""
        test = self.cooccurrence.to_dict()
        return {
            "dimensionality_mean": self.dimensionality_mean.estimate,
            "dimensionality_ci": [self.dimensionality_mean.low, self.dimensionality_mean.high],
            "dimensionality_null_mean": self.dimensionality_null_mean,
            "interference_p50": self.interference["q50"],
            "interference_p99": self.interference["q99"],
            "interference_max": self.interference["max"],
            "interference_null_p50": self.interference_null["q50"],
            "interference_null_p99": self.interference_null["q99"],
            "welch_bound": self.welch_bound,
            "interference_pairs": self.interference_pairs,
            "interference_sampled": self.interference_sampled,
            "cooccurrence_overlap": test,
            f"cooccurrence_overlap_{self.cooccurrence_other.measure}": (
                self.cooccurrence_other.to_dict()
            ),
            "verdict": test["verdict"],
            "n": test["n"],
            "features": self.cooccurrence.features,
            "rows": self.rows,
            "d_in": self.d_in,
            "d_sae": self.d_sae,
        }


def _dists(values: Tensor) -> dict[str, float]:
    out = quantiles(values, (0.05, 0.25, 0.5, 0.75, 0.95, 0.99))
    out["max"] = float(values.max())
    return out


def encode_codes(
    sae: Any, acts: Any, config: GeometryConfig, device: Any, progress: bool
) -> SparseCodes:
    """The sparse codes of the configured rows (the first `max_rows` of the split), from one
    encoding pass: both of the analysis's passes (firing counts, then joint firing of the
    chosen features) read them, so the encoder runs once, not twice."""
    _, batches, rows = open_rows(
        acts, split=config.split, batch_size=config.batch_size, device=device
    )
    total = rows if config.max_rows is None or rows is None else min(rows, config.max_rows)
    kept: list[tuple[Tensor, Tensor]] = []
    seen = 0
    with progress_bar(total, desc="encode", unit="row", enabled=progress) as bar:
        for batch in batches:
            if config.max_rows is not None and seen >= config.max_rows:
                break
            if config.max_rows is not None:
                batch = batch[: config.max_rows - seen]
            idx, val = sparse_code(sae, batch)  # (batch, m) each
            kept.append(SparseCodes.part(idx, val))
            seen += batch.shape[0]
            bar.update(batch.shape[0])
    if hasattr(sae, "release_scratch_"):
        sae.release_scratch_()  # sparse_code's [batch, d_sae] buffer
    return SparseCodes.stack(kept, config.split, int(sae.W_dec.shape[0]))


def _encode_share(
    sae: Any,
    acts: Any,
    config: GeometryConfig,
    device: Any,
    info: dist_utils.DistInfo,
    progress: bool,
) -> SparseCodes:
    """`encode_codes` under torchrun: this rank's batches r, r + N, ... of the configured
    rows (their order inside the codes does not matter: only counts are read from them)."""
    total = _rows_wanted(acts, config)
    if total is None:
        raise TypeError(
            f"acts must be a Tensor or a store under torchrun; got {type(acts).__name__}"
        )
    if isinstance(acts, str | os.PathLike):
        from polysemy.activations.store import ActivationStore

        acts = ActivationStore(acts)
    world, beat = info.world_size, dist_utils.HEARTBEAT_BATCHES * info.world_size
    kept: list[tuple[Tensor, Tensor]] = []
    bar = progress_bar(total, desc="encode", unit="row", enabled=progress and info.is_main)
    # a failure here is told to the other ranks before it is raised
    with dist_utils.reporting_failures(info), contextlib.closing(bar):
        for i, a in enumerate(range(0, total, config.batch_size)):
            if i and i % beat == 0:
                dist_utils.stop_if_a_rank_failed(info, job="geometry pass")
            if i % world != info.rank:
                continue  # another rank's batch
            b = min(a + config.batch_size, total)
            if isinstance(acts, Tensor):
                x = acts[a:b].to(device)
            else:
                x = acts.read(a, b, split=config.split, device=device)  # (batch, d_in)
            idx, val = sparse_code(sae, x)  # (batch, m) each
            kept.append(SparseCodes.part(idx, val))
            bar.update(min((b - a) * world, total - bar.n))
    dist_utils.stop_if_a_rank_failed(info, job="geometry pass")
    if hasattr(sae, "release_scratch_"):
        sae.release_scratch_()  # sparse_code's [batch, d_sae] buffer
    return SparseCodes.stack(kept, config.split, int(sae.W_dec.shape[0]))


def _sum_over_ranks(t: Tensor, device: Any) -> Tensor:
    """A CPU tensor summed over ranks (through this rank's device: NCCL reduces only GPU
    tensors), back on the CPU."""
    on_device = t.to(device)
    torch.distributed.all_reduce(on_device, op=torch.distributed.ReduceOp.SUM)
    return on_device.cpu()


def _rows_wanted(acts: Any, config: GeometryConfig) -> int | None:
    _, _, rows = open_rows(acts, split=config.split, batch_size=config.batch_size)
    return rows if config.max_rows is None or rows is None else min(rows, config.max_rows)


def _check_codes(codes: SparseCodes, acts: Any, config: GeometryConfig, d_sae: int) -> None:
    """Refuse codes that are not the rows this analysis would read."""
    if not isinstance(codes, SparseCodes):
        raise TypeError(f"codes must be SparseCodes; got {type(codes).__name__}")
    if codes.d_sae != d_sae:
        raise ParameterError("codes", f"codes of an SAE with d_sae={d_sae}", codes.d_sae)
    if not isinstance(acts, Tensor) and codes.split != config.split:
        raise ParameterError("codes", f"codes of split {config.split!r}", codes.split)
    wanted = _rows_wanted(acts, config)
    if wanted is not None and codes.rows < wanted:
        raise ParameterError(
            "codes",
            f"codes of at least the {wanted} rows read (max_rows and the split's rows; "
            "analyze_features(keep_codes=...) keeps that many)",
            f"{codes.rows} rows",
        )


def _sae_d_in(sae: Any) -> int:
    return int(sae.W_dec.shape[1])


@torch.no_grad()
def analyze_geometry(
    sae: Any,
    acts: Any,
    config: GeometryConfig | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    force: bool = False,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
    inputs: dict[str, Any] | None = None,
    codes: SparseCodes | None = None,
    **options: Any,
) -> GeometryResult:
    """Dimensionality and interference of `sae`'s decoder rows, and the rank correlation of
    pair overlap with co-occurrence on `acts` (a store, its path or a `[rows, d_in]` tensor).

    `config` or its fields as keywords (`top_features=128`); writes an analysis folder of
    kind `geometry` to `out` when given (`analysis.json`, `features.safetensors`,
    `interference.safetensors`, `pairs.safetensors`; docs/evidence.md); `inputs` adds to
    what its `inputs` record says was analysed (e.g. the SAE's path). `codes` are the sparse
    codes of the same rows from an earlier pass (`analyze_features(keep_codes=...)`): then
    nothing is encoded here.

    Under torchrun every process calls it alike: rank r encodes batches r, r + N, ... of the
    rows, the firing counts and joint counts are all_reduced (exact integers), so every rank
    returns the one-process result; rank 0 alone writes `out`. A rank that fails stops the
    others within `HEARTBEAT_BATCHES` batches (docs/scale.md). `codes` is one process only.
    """
    config = configured(GeometryConfig, config, options)
    check_int("seed", seed, least=0)
    if not hasattr(sae, "W_dec") or not hasattr(sae, "encode"):
        raise TypeError(f"sae must have W_dec and encode (an SAE); got {type(sae).__name__}")
    if codes is not None and dist_utils.env_world_size() > 1:
        raise ParameterError("codes", "None under torchrun (codes stay in one process)", codes)
    d_in, _, _ = open_rows(acts, split=config.split, batch_size=config.batch_size)
    sae_d_in = _sae_d_in(sae)
    if sae_d_in != d_in:
        raise ValueError(f"sae has d_in={sae_d_in} but the activations have d_in={d_in}")
    info = dist_utils.init_from_env(device)
    device = dist_utils.rank_device(device, info)
    folder = start_analysis_on_main(out, info, force=force)
    was_training = getattr(sae, "training", False)
    if hasattr(sae, "eval"):
        sae.eval()
    try:
        W_dec = sae.W_dec.detach().to("cpu", torch.float64)  # (d_sae, d_in)
        d_sae = W_dec.shape[0]
        if info.enabled:
            codes = _encode_share(sae, acts, config, device, info, progress)
            rows = int(_rows_wanted(acts, config) or 0)
            counts = _sum_over_ranks(codes.counts(codes.rows), device)  # (d_sae,)
        else:
            if codes is None:
                codes = encode_codes(sae, acts, config, device, progress)
            else:
                _check_codes(codes, acts, config, d_sae)
            rows = _rows_wanted(acts, config) or codes.rows
            rows = min(rows, codes.rows)
            # Pass 1: how often every latent fires, to choose the features of the test.
            counts = codes.counts(rows)
        if rows == 0:
            raise ValueError(f"split {config.split!r} of the activations has no rows")
        eligible = int((counts >= config.min_count).sum())
        n_test = min(eligible, config.top_features)
        if n_test * (n_test - 1) // 2 < MIN_PAIRS:
            raise ParameterError(
                "min_count",
                f"low enough that at least 5 latents ({MIN_PAIRS} pairs) qualify; only "
                f"{eligible} of {d_sae} latents fire on >= {config.min_count} of the {rows} "
                f"rows read, giving {eligible * (eligible - 1) // 2} pairs (lower min_count "
                "or read more rows)",
                config.min_count,
            )
        order = torch.argsort(counts, descending=True, stable=True)
        features = order[:n_test]
        # Pass 2: joint firing of the chosen features.
        if info.enabled:  # this rank's rows, then the sums over ranks
            part = count_cooccurrence(codes.firing(codes.rows, config.batch_size, features), n_test)
            (total,) = dist_utils.sum_over_ranks(info, [part.rows], job="geometry pass")
            cooc = Cooccurrence(
                _sum_over_ranks(part.counts, device), _sum_over_ranks(part.joint, device), total
            )
        else:
            cooc = count_cooccurrence(codes.firing(rows, config.batch_size, features), n_test)
    finally:
        if was_training and hasattr(sae, "train"):
            sae.train()
    return _finish(W_dec, features, counts, cooc, config, seed, folder, sae, acts, inputs)


def _finish(
    W_dec: Tensor,
    features: Tensor,
    counts: Tensor,
    cooc: Cooccurrence,
    config: GeometryConfig,
    seed: int,
    folder: Any,
    sae: Any,
    acts: Any,
    extra_inputs: dict[str, Any] | None,
) -> GeometryResult:
    d_sae, d_in = W_dec.shape
    dim = feature_dimensionality(W_dec)
    null_dirs = random_directions(d_sae, d_in, seed=seed + 1)
    null_dim = feature_dimensionality(null_dirs)
    pi, pj = pair_sample(d_sae, config.interference_pairs, seed=seed)
    cos = pair_cosines(W_dec, pi, pj)
    null_cos = pair_cosines(null_dirs, pi, pj)
    edges = torch.linspace(0.0, 1.0, config.bins + 1, dtype=torch.float64)
    hist = torch.histc(cos.clamp(0, 1), bins=config.bins, min=0.0, max=1.0).to(torch.int64)
    null_hist = torch.histc(null_cos.clamp(0, 1), bins=config.bins, min=0.0, max=1.0)

    unit, _ = _unit_rows(W_dec[features])
    overlap = (unit @ unit.T).abs()  # (features, features)
    phi, pmi = cooc.phi(), cooc.pmi()
    kwargs = dict(
        resample=config.resample,
        resamples=config.resamples,
        permutations=config.permutations,
        level=config.level,
        seed=seed,
    )
    tests = {
        "phi": overlap_test(overlap, phi, measure="phi", **kwargs),  # type: ignore[arg-type]
        "pmi": overlap_test(overlap, pmi, measure="pmi", **kwargs),  # type: ignore[arg-type]
    }
    other = "pmi" if config.measure == "phi" else "phi"
    result = GeometryResult(
        dimensionality=dim,
        dimensionality_mean=_mean_ci(dim, config.level, seed),
        dimensionality_null_mean=float(null_dim.mean()),
        interference=_dists(cos),
        interference_null=_dists(null_cos),
        welch_bound=welch_bound(d_sae, d_in),
        interference_pairs=int(pi.numel()),
        interference_sampled=int(pi.numel()) < d_sae * (d_sae - 1) // 2,
        cooccurrence=tests[config.measure],
        cooccurrence_other=tests[other],
        features=features,
        firing_count=counts,
        rows=cooc.rows,
        d_in=int(d_in),
        d_sae=int(d_sae),
    )
    logger.info(
        "geometry: mean D %.3f, |cos| p99 %.3f (null %.3f), rho %.3f (%s)",
        result.dimensionality_mean.estimate,
        result.interference["q99"],
        result.interference_null["q99"],
        result.cooccurrence.rho.estimate,
        result.cooccurrence.verdict,
    )
    if folder is not None:
        i, j = torch.triu_indices(len(features), len(features), offset=1)
        write_analysis(
            folder,
            "geometry",
            inputs={
                "sae": _describe(sae),
                "acts": str(acts) if isinstance(acts, str | os.PathLike) else type(acts).__name__,
                "seed": seed,
                "config": {k: getattr(config, k) for k in config.__dataclass_fields__},
                **(extra_inputs or {}),
            },
            summary=result.summary(),
            files={
                "features.safetensors": {
                    "dimensionality": dim,
                    "null_dimensionality": null_dim,
                    "firing_count": counts,
                    "norm": W_dec.norm(dim=1),
                },
                "interference.safetensors": {
                    "edges": edges,
                    "counts": hist,
                    "null_counts": null_hist.to(torch.int64),
                    "pair_i": pi.to(torch.int32),
                    "pair_j": pj.to(torch.int32),
                    "abs_cos": cos.to(torch.float32),
                    "null_abs_cos": null_cos.to(torch.float32),
                },
                "pairs.safetensors": {
                    "feature_i": features[i],
                    "feature_j": features[j],
                    "abs_cos": overlap[i, j],
                    "phi": phi[i, j],
                    "pmi": pmi[i, j],
                    "joint_count": cooc.joint[i, j],
                    "count_i": cooc.counts[i],
                    "count_j": cooc.counts[j],
                },
            },
        )
    return result


def _mean_ci(values: Tensor, level: float, seed: int) -> Interval:
    return bootstrap_ci(values, level=level, seed=seed)


def _describe(sae: Any) -> dict[str, Any]:
    cfg = getattr(sae, "config", None)
    out: dict[str, Any] = {"d_sae": int(sae.W_dec.shape[0]), "d_in": int(sae.W_dec.shape[1])}
    if cfg is not None:
        for key in ("arch", "k"):
            value = getattr(cfg, key, None)
            if value is not None:
                out[key] = value
    return out
