"""Reconstruction metrics of an SAE on activations, in one streaming float64 pass.

Every figure is a ratio of sums accumulated over all evaluated rows, never an average of
per-batch figures, so the result does not depend on the evaluation batch size (averaging
per-batch FVUs is a known bug: each batch then measures variance around its own mean).

With rows x_i and reconstructions x̂_i = decode(encode(x_i)), i = 1..n, latents z_i:

    fvu                = Σ_i ||x_i - x̂_i||² / Σ_i ||x_i - x̄||²           (x̄ = mean over the rows)
    mse                = Σ_i ||x_i - x̂_i||² / (n · d_in)                   (per element)
    explained_variance = 1 - Σ_d Var_i(x_id - x̂_id) / Σ_d Var_i(x_id)
                         (scikit-learn's explained_variance_score, variance_weighted: it
                         forgives a constant offset of the residual, which fvu does not)
    cosine             = mean_i  x_i·x̂_i / (||x_i|| ||x̂_i||)            (rows with x_i = 0 skipped)
    l2_ratio           = mean_i  ||x̂_i|| / ||x_i||                       (rows with x_i = 0 skipped)
    l0                 = mean_i  #{j : z_ij ≠ 0}
    dead_fraction      = #{j : z_ij = 0 for every i} / d_sae
    dense_fraction     = #{j : #{i : z_ij ≠ 0} > dense_threshold · n} / d_sae

>>> result = evaluate(sae, "acts/minilm-l3", split="heldout")    # doctest: +SKIP
>>> result.fvu, result.l0                                          # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import torch
from jaxtyping import Float
from torch import Tensor

from polysemy.activations.store import SPLITS, Split
from polysemy.progress import progress_bar
from polysemy.validation import (
    check_choice,
    check_float,
    check_int,
    check_optional_int,
    configured,
)

logger = logging.getLogger(__name__)

DEFAULT_DENSE_THRESHOLD = 0.1
"""A latent is *dense* when it is active on more than this fraction of the evaluated rows."""


@dataclass(frozen=True)
class EvalConfig:
    """Which rows `evaluate` reads and how it counts dense latents."""

    split: Split = "heldout"
    """Rows of a store to evaluate: heldout (never trained on), train or all."""
    batch_size: int = 4096
    """Rows per batch (the figures do not depend on it beyond float32 rounding)."""
    max_rows: int | None = None
    """Evaluate at most this many rows, the first ones in store order (None: all)."""
    dense_threshold: float = DEFAULT_DENSE_THRESHOLD
    """A latent active on more than this fraction of the rows counts as dense."""

    def __post_init__(self) -> None:
        check_choice("split", self.split, SPLITS)
        check_int("batch_size", self.batch_size, least=1)
        check_optional_int("max_rows", self.max_rows, least=1)
        check_float("dense_threshold", self.dense_threshold, least=0.0, most=1.0)


class Autoencoder(Protocol):
    """What evaluation needs of an SAE: dense latents and a decoder (any `SparseAutoencoder`)."""

    def encode(self, x: Tensor) -> Tensor: ...

    def decode(self, z: Tensor) -> Tensor: ...


class ReconstructionResult(NamedTuple):
    """Reconstruction figures of an SAE on a set of rows (formulas in the module docstring)."""

    fvu: float
    """Fraction of variance unexplained: Σ||x - x̂||² / Σ||x - x̄||²."""
    mse: float
    """Mean squared error per element: Σ||x - x̂||² / (rows · d_in)."""
    explained_variance: float
    """1 - Σ_d Var(x_d - x̂_d) / Σ_d Var(x_d) (variance-weighted, residual mean removed)."""
    cosine: float
    """Mean cosine similarity between a row and its reconstruction (zero rows skipped)."""
    l0: float
    """Mean number of non-zero latents per row."""
    dead_fraction: float
    """Fraction of latents never non-zero on the evaluated rows."""
    dense_fraction: float
    """Fraction of latents non-zero on more than `dense_threshold` of the rows."""
    l2_ratio: float
    """Mean ||x̂|| / ||x|| (zero rows skipped)."""
    rows: int
    """Number of rows evaluated."""
    d_sae: int
    """Number of latents."""
    dense_threshold: float
    """The activation frequency above which a latent counts as dense."""
    latent_frequency: Tensor
    """`[d_sae]` float64: fraction of rows on which each latent is non-zero."""

    def metrics(self) -> dict[str, float | int]:
        """The scalar figures as a JSON-ready dict (what `polysemy sae eval --json` prints)."""
        return {
            "fvu": self.fvu,
            "mse": self.mse,
            "explained_variance": self.explained_variance,
            "cosine": self.cosine,
            "l0": self.l0,
            "dead_fraction": self.dead_fraction,
            "dense_fraction": self.dense_fraction,
            "l2_ratio": self.l2_ratio,
            "rows": self.rows,
            "d_sae": self.d_sae,
            "dense_threshold": self.dense_threshold,
        }


class _Moments:
    """Per-dimension count, mean and sum of squared deviations, merged batch by batch.

    Chan et al.'s pairwise update keeps Σ||x - x̄||² exact in float64 whatever the batch
    boundaries, without the cancellation of Σ||x||² - n||x̄||² on activations with a large
    mean (residual streams have one).
    """

    def __init__(self, d: int) -> None:
        self.n = 0
        self.mean = torch.zeros(d, dtype=torch.float64)
        self.m2 = torch.zeros(d, dtype=torch.float64)

    def update(self, x: Float[Tensor, "batch d"]) -> None:
        b = x.shape[0]
        if b == 0:
            return
        mean_b = x.mean(dim=0)
        m2_b = ((x - mean_b) ** 2).sum(dim=0)
        n = self.n + b
        delta = mean_b - self.mean
        self.mean += delta * (b / n)
        self.m2 += m2_b + delta**2 * (self.n * b / n)
        self.n = n

    @property
    def total(self) -> float:
        """Σ_i ||x_i - x̄||², summed over dimensions."""
        return float(self.m2.sum())


def open_rows(
    acts: Any,
    *,
    split: str = "heldout",
    batch_size: int = 4096,
    device: str | torch.device = "cpu",
) -> tuple[int, Iterator[Tensor], int | None]:
    """Return `(d_in, batches, rows)` for `acts`: a Tensor, an `ActivationStore`, or a path.

    A path (store folder, `.npy` or `.safetensors` file) is opened as an `ActivationStore`,
    and its `split` rows are read in order. A Tensor `[rows, d_in]` is taken whole: it has no
    held-out split of its own, so `split` does not apply to it.
    """
    check_choice("split", split, SPLITS)
    if isinstance(acts, Tensor):
        if acts.ndim != 2:
            raise ValueError(
                f"activations must be a 2-D tensor [rows, d_in]; got shape {tuple(acts.shape)}"
            )
        x = acts

        def tensor_batches() -> Iterator[Tensor]:
            for start in range(0, x.shape[0], batch_size):
                yield x[start : start + batch_size].to(device)

        return x.shape[1], tensor_batches(), x.shape[0]
    if isinstance(acts, str | os.PathLike):
        from polysemy.activations.store import ActivationStore

        acts = ActivationStore(acts)
    if not hasattr(acts, "batches") or not hasattr(acts, "d_in"):
        raise TypeError(
            f"acts must be a Tensor, an ActivationStore or a path to one; got {type(acts).__name__}"
        )
    store = acts
    rows = int(store.split_rows(split)) if hasattr(store, "split_rows") else None
    batches = store.batches(batch_size, split=split, shuffle=False, drop_last=False, device=device)
    return int(store.d_in), iter(batches), rows


@torch.no_grad()
def evaluate(
    sae: Any,
    acts: Any,
    config: EvalConfig | None = None,
    *,
    device: str | torch.device = "cpu",
    progress: bool = False,
    **options: Any,
) -> ReconstructionResult:
    """Evaluate `sae` on `acts` (Tensor, `ActivationStore` or path) in one streaming pass.

    `config` (or its fields as keyword `options`, e.g. `split="train"`) picks the rows: a
    store's held-out split by default, the rows the trainer never saw; `max_rows` stops after
    that many rows. Sums are kept in float64, so the result is the same for any `batch_size`
    up to float32 rounding of the SAE's own forward pass. Refuses non-finite activations,
    naming the first bad rows.
    """
    config = configured(EvalConfig, config, options)
    split, batch_size = config.split, config.batch_size
    max_rows, dense_threshold = config.max_rows, config.dense_threshold
    d_in, batches, rows = open_rows(acts, split=split, batch_size=batch_size, device=device)
    sae_d_in = _sae_width(sae, "d_in")
    config_ = getattr(sae, "config", None)
    if getattr(config_, "is_transcoder", False):
        # a transcoder is evaluated on paired rows [x | y]: the FVU is that of y
        width = int(config_.train_width)  # type: ignore[union-attr]
        if width != d_in:
            raise ValueError(
                f"the transcoder expects rows [x | y] of width d_in + d_out = {width} (a "
                f"PairedStore or the two tensors concatenated); the activations have {d_in}"
            )
        d_in = int(config_.d_out)  # type: ignore[union-attr]
    elif sae_d_in is not None and sae_d_in != d_in:
        raise ValueError(f"the SAE expects d_in={sae_d_in} but the activations have d_in={d_in}")
    total = rows if max_rows is None or rows is None else min(rows, max_rows)
    was_training = getattr(sae, "training", False)
    if hasattr(sae, "eval"):
        sae.eval()  # BatchTopK and friends switch to their inference rule in eval mode
    try:
        return _evaluate_batches(
            sae,
            batches,
            d_in=d_in,
            dense_threshold=dense_threshold,
            max_rows=max_rows,
            total=total,
            progress=progress,
        )
    finally:
        if was_training and hasattr(sae, "train"):
            sae.train()


def _sae_width(sae: Any, name: str) -> int | None:
    value = getattr(sae, name, None)
    if value is None and hasattr(sae, "config"):
        value = getattr(sae.config, name, None)
    if value is None and name == "d_in" and hasattr(sae, "W_dec"):
        value = sae.W_dec.shape[1]
    return int(value) if value is not None else None


def _evaluate_batches(
    sae: Any,
    batches: Iterable[Tensor],
    *,
    d_in: int,
    dense_threshold: float,
    max_rows: int | None,
    total: int | None,
    progress: bool,
) -> ReconstructionResult:
    x_moments = _Moments(d_in)
    r_moments = _Moments(d_in)
    sse = 0.0
    l0_sum = 0.0
    cos_sum = 0.0
    ratio_sum = 0.0
    nonzero_rows = 0
    n = 0
    active: Tensor | None = None  # [d_sae] int64: rows on which each latent fired
    with progress_bar(total, desc="eval", unit="row", enabled=progress) as bar:
        for batch in batches:
            if max_rows is not None and n >= max_rows:
                break
            if max_rows is not None and n + batch.shape[0] > max_rows:
                batch = batch[: max_rows - n]
            bad = ~torch.isfinite(batch).all(dim=1)
            if bool(bad.any()):
                where = (torch.nonzero(bad).flatten() + n)[:5].tolist()
                raise ValueError(
                    f"activations contain NaN or Inf (rows {where}, counted from 0 in the "
                    "evaluated split); clean the store before evaluating"
                )
            if hasattr(sae, "reconstruct"):
                target, z, x_hat = sae.reconstruct(batch)
            else:  # an SAE-like object with only encode / decode
                target = batch
                z = sae.encode(batch)
                x_hat = sae.decode(z)
            x = target.to(torch.float64)
            x_hat64 = x_hat.to(torch.float64)
            resid = x - x_hat64
            x_moments.update(x)
            r_moments.update(resid)
            sse += float((resid**2).sum())
            fired = z != 0  # [batch, d_sae]
            l0_sum += float(fired.sum())
            counts = fired.sum(dim=0).to(device="cpu", dtype=torch.int64)
            active = counts if active is None else active + counts
            x_norm = x.norm(dim=1)
            xh_norm = x_hat64.norm(dim=1)
            keep = x_norm > 0
            nonzero_rows += int(keep.sum())
            # cos with ||x̂|| = 0 is 0 (nothing reconstructed), hence the clamp on the product only.
            cos = (x * x_hat64).sum(dim=1)[keep] / (x_norm[keep] * xh_norm[keep]).clamp_min(
                torch.finfo(torch.float64).tiny
            )
            cos_sum += float(cos.sum())
            ratio_sum += float((xh_norm[keep] / x_norm[keep]).sum())
            n += batch.shape[0]
            bar.update(batch.shape[0])
    if n == 0 or active is None:
        raise ValueError("no rows to evaluate: the chosen split of the activations is empty")
    var_total = x_moments.total
    if not var_total > 0:
        raise ValueError(
            f"the {n} evaluated rows are all equal (zero variance), so fvu is undefined"
        )
    fvu = sse / var_total
    ev = 1.0 - r_moments.total / var_total
    d_sae = int(active.shape[0])
    freq = active.to(torch.float64) / n
    logger.info("evaluated %d rows: fvu %.4f, l0 %.2f", n, fvu, l0_sum / n)
    return ReconstructionResult(
        fvu=fvu,
        mse=sse / (n * d_in),
        explained_variance=ev,
        cosine=cos_sum / nonzero_rows if nonzero_rows else 0.0,
        l0=l0_sum / n,
        dead_fraction=float((active == 0).sum()) / d_sae,
        dense_fraction=float((freq > dense_threshold).sum()) / d_sae,
        l2_ratio=ratio_sum / nonzero_rows if nonzero_rows else 0.0,
        rows=n,
        d_sae=d_sae,
        dense_threshold=dense_threshold,
        latent_frequency=freq,
    )
