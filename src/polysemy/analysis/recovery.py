"""How well a learned dictionary recovers planted features (synthetic stores with truth).

With unit-normalised true features f_t (rows of `truth [n_features, d_in]`) and learned
decoder rows d_j (rows of `W_dec [d_sae, d_in]`), C_tj = cos(f_t, d_j) (signed: a latent
fires with one sign, so an anti-parallel row does not recover a feature):

    mean_max_cosine          = mean_t max_j C_tj     (each true feature -> its best latent)
    mean_max_cosine_learned  = mean_j max_t C_tj     (each latent -> its best true feature)
    fraction_recovered       = #{t : max_j C_tj > threshold} / n_features
    duplicate_pairs          = #{(i, j), i < j : cos(d_i, d_j) > threshold}
    duplicate_latents        = #{j : cos(d_i, d_j) > threshold for some i < j}
                               (latents that repeat an earlier one: how many could go)

The threshold is 0.9 by default. Similarities are computed in float64, `chunk_size` rows at
a time, so memory stays O(chunk_size × max(n_features, d_sae)).

>>> scores = recovery_scores(sae.W_dec, truth)      # doctest: +SKIP
>>> scores.mean_max_cosine, scores.fraction_recovered  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor

from polysemy.validation import check_float, check_int, configured

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecoveryConfig:
    """How `recovery_scores` counts a planted feature as recovered."""

    threshold: float = 0.9
    """Cosine above which a true feature counts as recovered (and two latents as duplicates)."""
    chunk_size: int = 1024
    """True features compared at a time (memory, not results)."""

    def __post_init__(self) -> None:
        check_float("threshold", self.threshold, least=-1.0, most=1.0)
        check_int("chunk_size", self.chunk_size, least=1)


class RecoveryResult(NamedTuple):
    """Recovery of planted features by a dictionary (formulas in the module docstring)."""

    mean_max_cosine: float
    """Mean over true features of the best cosine with any learned decoder row."""
    mean_max_cosine_learned: float
    """Mean over learned decoder rows of the best cosine with any true feature."""
    fraction_recovered: float
    """Fraction of true features whose best cosine exceeds `threshold`."""
    duplicate_pairs: int
    """Pairs of distinct latents whose decoder rows have cosine above `threshold`."""
    duplicate_latents: int
    """Latents whose decoder row has cosine above `threshold` with an earlier latent's."""
    n_features: int
    """Number of true features."""
    d_sae: int
    """Number of learned latents."""
    threshold: float
    """The cosine above which a feature counts as recovered and a pair as duplicate."""
    max_cosine: Tensor
    """`[n_features]` float64: best cosine of each true feature."""
    best_latent: Tensor
    """`[n_features]` int64: the latent that reaches it."""

    def metrics(self) -> dict[str, float | int]:
        """The scalar figures as a JSON-ready dict (what `polysemy sae recover --json` prints)."""
        return {
            "mean_max_cosine": self.mean_max_cosine,
            "mean_max_cosine_learned": self.mean_max_cosine_learned,
            "fraction_recovered": self.fraction_recovered,
            "duplicate_pairs": self.duplicate_pairs,
            "duplicate_latents": self.duplicate_latents,
            "n_features": self.n_features,
            "d_sae": self.d_sae,
            "threshold": self.threshold,
        }


def _unit_rows(w: Tensor) -> Tensor:
    w = w.detach().to("cpu", torch.float64)
    # a zero row (a dead, zeroed latent) gets cosine 0 with everything instead of NaN
    return w / w.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)


def _check_matrix(name: str, w: object) -> Tensor:
    if not isinstance(w, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(w).__name__}")
    if w.ndim != 2 or w.shape[0] == 0 or w.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D matrix; got shape {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()):
        raise ValueError(f"{name} contains NaN or Inf")
    return w


@torch.no_grad()
def recovery_scores(
    W_dec: Float[Tensor, "d_sae d_in"],
    truth: Float[Tensor, "n_features d_in"],
    config: RecoveryConfig | None = None,
    **options: Any,
) -> RecoveryResult:
    """Score how well the rows of `W_dec` recover the rows of `truth` (see module docstring);
    `config` or its fields as keywords (`threshold=0.8`) set the counting."""
    config = configured(RecoveryConfig, config, options)
    threshold, chunk_size = config.threshold, config.chunk_size
    W_dec = _check_matrix("W_dec", W_dec)
    truth = _check_matrix("truth", truth)
    if W_dec.shape[1] != truth.shape[1]:
        raise ValueError(
            f"W_dec rows have d_in={W_dec.shape[1]} but truth features have "
            f"d_in={truth.shape[1]}; they must live in the same space"
        )
    dec = _unit_rows(W_dec)  # [d_sae, d_in]
    true = _unit_rows(truth)  # [n_features, d_in]
    n_features, d_sae = true.shape[0], dec.shape[0]

    best_true = torch.empty(n_features, dtype=torch.float64)
    best_latent = torch.empty(n_features, dtype=torch.int64)
    for start in range(0, n_features, chunk_size):
        sims = true[start : start + chunk_size] @ dec.T  # [chunk, d_sae]
        values, indices = sims.max(dim=1)
        best_true[start : start + chunk_size] = values
        best_latent[start : start + chunk_size] = indices

    best_learned = torch.empty(d_sae, dtype=torch.float64)
    duplicate_pairs = 0
    duplicate_latents = 0
    for start in range(0, d_sae, chunk_size):
        block = dec[start : start + chunk_size]  # [chunk, d_in]
        best_learned[start : start + chunk_size] = (block @ true.T).max(dim=1).values
        sims = block @ dec.T  # [chunk, d_sae]
        # only pairs (i, j) with i < j: latent j = start + row is compared with earlier i
        rows = torch.arange(start, start + block.shape[0]).unsqueeze(1)
        earlier = torch.arange(d_sae).unsqueeze(0) < rows  # [chunk, d_sae]
        dup = (sims > threshold) & earlier
        duplicate_pairs += int(dup.sum())
        duplicate_latents += int(dup.any(dim=1).sum())

    result = RecoveryResult(
        mean_max_cosine=float(best_true.mean()),
        mean_max_cosine_learned=float(best_learned.mean()),
        fraction_recovered=float((best_true > threshold).to(torch.float64).mean()),
        duplicate_pairs=duplicate_pairs,
        duplicate_latents=duplicate_latents,
        n_features=n_features,
        d_sae=d_sae,
        threshold=float(threshold),
        max_cosine=best_true,
        best_latent=best_latent,
    )
    logger.info(
        "recovery: mean max cosine %.4f, %.1f%% above %.2f",
        result.mean_max_cosine,
        100 * result.fraction_recovered,
        threshold,
    )
    return result


def load_truth(path: str) -> Tensor:
    """Read the planted `features [n_features, d_in]` from a `truth.safetensors` file or from
    a synthetic store folder that holds one."""
    from pathlib import Path

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    if p.is_dir():
        p = p / "truth.safetensors"
    if not p.is_file():
        raise FileNotFoundError(
            f"truth {str(path)!r}: expected a truth.safetensors file or a synthetic store "
            "folder holding one; found nothing there"
        )
    try:
        tensors = load_file(str(p))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"truth {str(p)!r} is not a readable safetensors file: {exc}") from None
    if "features" not in tensors:
        raise ValueError(f"truth {str(p)!r} has no 'features' tensor (found {sorted(tensors)})")
    return tensors["features"]
