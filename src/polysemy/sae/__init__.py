"""Sparse autoencoders: four architectures, a fast trainer, a safetensors checkpoint format.

>>> from polysemy.sae import SAEConfig, build_sae
>>> sae = build_sae(SAEConfig(arch="topk", d_in=16, d_sae=64, k=4))
>>> sae.encode(torch.randn(3, 16)).count_nonzero(dim=1).le(4).all()   # doctest: +SKIP
tensor(True)

Public names: `SAEConfig`, `TrainConfig`, `SparseAutoencoder`, `SAEOutput`, `ARCHITECTURES`,
`build_sae`, `sae_from_weights`, `save_sae`, `load_sae`, `train_sae`, `TrainResult`.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from polysemy.sae.base import SAEOutput, SparseAutoencoder, geometric_median
from polysemy.sae.batchtopk import BatchTopKSAE
from polysemy.sae.config import ARCH_NAMES, SAEConfig, TrainConfig
from polysemy.sae.jumprelu import JumpReLUSAE
from polysemy.sae.relu import ReLUSAE
from polysemy.sae.topk import TopKSAE

ARCHITECTURES: dict[str, type[SparseAutoencoder]] = {
    "relu": ReLUSAE,
    "topk": TopKSAE,
    "batchtopk": BatchTopKSAE,
    "jumprelu": JumpReLUSAE,
}
assert tuple(ARCHITECTURES) == ARCH_NAMES


def build_sae(
    config: SAEConfig,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> SparseAutoencoder:
    """A freshly initialised SAE of `config.arch` (random unit decoder rows, W_enc = W_dec^T)."""
    return ARCHITECTURES[config.arch](config, generator=generator, device=device, dtype=dtype)


def sae_from_weights(
    arch: str,
    *,
    W_enc: Float[Tensor, "d_in d_sae"],
    b_enc: Float[Tensor, " d_sae"],
    W_dec: Float[Tensor, "d_sae d_in"],
    b_dec: Float[Tensor, " d_in"],
    threshold: Float[Tensor, " d_sae"] | None = None,
    k: int | None = None,
    device: torch.device | str = "cpu",
) -> SparseAutoencoder:
    """An inference-ready SAE from weights in original units (the checkpoint convention).

    Raises ValueError for an unknown `arch`, inconsistent shapes, a missing `threshold`
    (jumprelu, batchtopk) or a missing `k` (topk, batchtopk).
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {', '.join(ARCHITECTURES)}; got {arch!r}")
    if W_enc.ndim != 2:
        raise ValueError(f"W_enc must be 2-D [d_in, d_sae]; got shape {list(W_enc.shape)}")
    d_in, d_sae = W_enc.shape
    config = SAEConfig(arch=arch, d_in=int(d_in), d_sae=int(d_sae), k=k)
    sae = build_sae(config, device=device, dtype=W_enc.dtype)
    tensors = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}
    if "threshold" in sae.expected_shapes():
        if threshold is None:
            raise ValueError(f"threshold [d_sae] is required for arch {arch!r}; got None")
        tensors["threshold"] = threshold
    elif threshold is not None:
        raise ValueError(f"threshold applies only to jumprelu and batchtopk; got arch {arch!r}")
    sae.load_inference_tensors_(tensors)
    if isinstance(sae, BatchTopKSAE):
        sae.threshold_updates.fill_(1)
    return sae.eval()


from polysemy.sae.io import load_sae, save_sae  # noqa: E402  (io needs build_sae)
from polysemy.sae.trainer import TrainResult, train_sae  # noqa: E402

__all__ = [
    "ARCHITECTURES",
    "SAEConfig",
    "SAEOutput",
    "SparseAutoencoder",
    "TrainConfig",
    "TrainResult",
    "build_sae",
    "geometric_median",
    "load_sae",
    "sae_from_weights",
    "save_sae",
    "train_sae",
]
