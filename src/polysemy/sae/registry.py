"""The architecture registry: name -> class, and the two ways to make an SAE from a name.

Only this module names the architectures; the trainer, the checkpoint reader and the
package's `__init__` ask it, so none of them imports another module lazily to avoid a cycle.
An architecture declares what training needs from it on its class (`SparseAutoencoder`:
`default_grad_clip`, `uses_dead_mask`, `chooses_latents`, `update_from_stats_`, ...).

>>> build_sae(SAEConfig(arch="relu", d_in=4, d_sae=8)).arch
'relu'
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from polysemy.sae.base import SparseAutoencoder
from polysemy.sae.batchtopk import BatchTopKSAE
from polysemy.sae.config import ARCH_NAMES, TRANSCODERS, SAEConfig
from polysemy.sae.jumprelu import JumpReLUSAE
from polysemy.sae.relu import ReLUSAE
from polysemy.sae.topk import TopKSAE
from polysemy.sae.transcoder import SkipTranscoder, Transcoder
from polysemy.validation import check_choice

ARCHITECTURES: dict[str, type[SparseAutoencoder]] = {
    "relu": ReLUSAE,
    "topk": TopKSAE,
    "batchtopk": BatchTopKSAE,
    "jumprelu": JumpReLUSAE,
    "transcoder": Transcoder,
    "skip-transcoder": SkipTranscoder,
}
"""Every architecture by its `SAEConfig.arch` name."""
assert tuple(ARCHITECTURES) == ARCH_NAMES  # the config validates against ARCH_NAMES


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
    W_skip: Float[Tensor, "d_in d_out"] | None = None,
    device: torch.device | str = "cpu",
) -> SparseAutoencoder:
    """An inference-ready SAE from weights in original units (the checkpoint convention).

    Transcoders take `W_dec [d_sae, d_out]`, `b_dec [d_out]` and (skip-transcoder)
    `W_skip [d_in, d_out]`. Raises ValueError for an unknown `arch`, inconsistent shapes, a
    missing `threshold` (jumprelu, batchtopk), `k` (TopK family) or `W_skip`.
    """
    check_choice("arch", arch, ARCHITECTURES)
    if W_enc.ndim != 2:
        raise ValueError(f"W_enc must be 2-D [d_in, d_sae]; got shape {list(W_enc.shape)}")
    d_in, d_sae = W_enc.shape
    d_out = int(W_dec.shape[-1]) if arch in TRANSCODERS else None
    config = SAEConfig(arch=arch, d_in=int(d_in), d_sae=int(d_sae), k=k, d_out=d_out)
    sae = build_sae(config, device=device, dtype=W_enc.dtype)
    tensors = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}
    if "W_skip" in sae.expected_shapes():
        if W_skip is None:
            raise ValueError(f"W_skip [d_in, d_out] is required for arch {arch!r}; got None")
        tensors["W_skip"] = W_skip
    elif W_skip is not None:
        raise ValueError(f"W_skip does not apply to arch {arch!r} (it has none); got a tensor")
    if "threshold" in sae.expected_shapes():
        if threshold is None:
            raise ValueError(f"threshold [d_sae] is required for arch {arch!r}; got None")
        tensors["threshold"] = threshold
    elif threshold is not None:
        raise ValueError(f"threshold does not apply to arch {arch!r} (it has none); got a tensor")
    sae.load_inference_tensors_(tensors)
    return sae.eval()
