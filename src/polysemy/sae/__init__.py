"""Sparse autoencoders: four architectures, a fast trainer, a safetensors checkpoint format.

>>> from polysemy.sae import SAEConfig, build_sae
>>> sae = build_sae(SAEConfig(arch="topk", d_in=16, d_sae=64, k=4))
>>> sae.encode(torch.randn(3, 16)).count_nonzero(dim=1).le(4).all()   # doctest: +SKIP
tensor(True)

Public names: `SAEConfig`, `TrainConfig`, `SparseAutoencoder`, `SAEOutput`, `ARCHITECTURES`,
`build_sae`, `sae_from_weights`, `save_sae`, `load_sae`, `train_sae`, `TrainResult`.
"""

from __future__ import annotations

from polysemy.sae.base import SAEOutput, SparseAutoencoder, geometric_median
from polysemy.sae.config import SAEConfig, TrainConfig
from polysemy.sae.io import load_sae, save_sae
from polysemy.sae.registry import ARCHITECTURES, build_sae, sae_from_weights
from polysemy.sae.trainer import TrainResult, train_sae

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
