"""Transcoders: a sparse code of one site that predicts another (Dunefsky, Chlenski and Nanda
2024, "Transcoders find interpretable LLM feature circuits"; Paulo et al. 2025, "Transcoders
beat sparse autoencoders for interpretability").

Where an SAE reconstructs its own input, a transcoder reads an MLP's input `x [batch, d_in]`
and predicts the MLP's output `y [batch, d_out]` through a TopK bottleneck, so its latents
stand in for the MLP's computation and its decoder rows are directions in the output space:

    encode(x)    = ReLU(TopK_k(x @ W_enc + b_enc))                   # [batch, d_sae]
    decode(z)    = z @ W_dec + b_dec                                  # [batch, d_out]
    transcode(x) = decode(encode(x)) (+ x @ W_skip for skip-transcoder)

The encoder does not subtract `b_dec` first (it lives in the output space), as in SAELens's
and sparsify's transcoders. `skip-transcoder` adds a dense linear term `W_skip [d_in, d_out]`
(initialised at zero) that carries the MLP's linear part, so the latents need only explain
what a linear map cannot.

Training rows are the input and the target side by side, `[x | y]` of width `d_in + d_out`
(`SAEConfig.train_width`): `train_sae(store_in, target=store_out, ...)` pairs two stores
harvested in one pass (`polysemy.activations.paired.PairedStore`). The loss is the TopK
recipe on the target: FVU of `y`, plus AuxK on the target's residual.

>>> tc = build_sae(SAEConfig(arch="transcoder", d_in=8, d_out=6, d_sae=32, k=4))  # doctest: +SKIP
>>> tc.transcode(torch.randn(5, 8)).shape                                          # doctest: +SKIP
torch.Size([5, 6])
"""

from __future__ import annotations

from typing import ClassVar

import torch
from jaxtyping import Float
from torch import Tensor, nn

from polysemy.sae.base import SAEOutput, fvu_loss
from polysemy.sae.config import SAEConfig
from polysemy.sae.sparse_decode import SparseCode, sampled_dots, selected_preacts
from polysemy.sae.topk import TopKSAE


class Transcoder(TopKSAE):
    """TopK transcoder: `x [d_in]` -> k latents -> `y [d_out]`."""

    arch = "transcoder"
    has_skip: ClassVar[bool] = False

    def __init__(
        self,
        config: SAEConfig,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(config, generator=generator, device=device, dtype=dtype)
        d_in, d_sae, d_out = config.d_in, config.d_sae, self.d_out
        # Input and output directions are unrelated here, so the encoder is not the
        # decoder's transpose: both start random (unit decoder rows, unit encoder columns
        # times the TopK init scale); the trainer rescales W_enc to the input's size.
        W_dec = torch.randn(d_sae, d_out, generator=generator, dtype=torch.float32)
        W_dec = W_dec / W_dec.norm(dim=1, keepdim=True)
        W_enc = torch.randn(d_in, d_sae, generator=generator, dtype=torch.float32)
        W_enc = W_enc / W_enc.norm(dim=0, keepdim=True) * config.effective_encoder_init_scale
        self.W_dec = nn.Parameter(W_dec.to(device=device, dtype=dtype))
        self.W_enc = nn.Parameter(W_enc.to(device=device, dtype=dtype).contiguous())
        self.b_dec = nn.Parameter(torch.zeros(d_out, device=device, dtype=dtype))
        # The encoder's centre is zero (see the module docstring); a buffer so the sparse
        # backward, written for `(x - b_dec) @ W_enc`, can be reused as is.
        self.register_buffer(
            "_zero_centre", torch.zeros(d_in, device=device, dtype=dtype), persistent=False
        )
        if self.has_skip:
            self.W_skip = nn.Parameter(torch.zeros(d_in, d_out, device=device, dtype=dtype))

    @property
    def d_out(self) -> int:
        return self.config.effective_d_out

    # ---- the maps ----------------------------------------------------------------------

    def pre_activations(self, x: Float[Tensor, "batch d_in"]) -> Float[Tensor, "batch d_sae"]:
        """`x @ W_enc + b_enc` (no centring: b_dec is in the output space)."""
        return torch.addmm(self.b_enc, x, self.W_enc)

    @torch.no_grad()
    def scratch_pre_activations(
        self, x: Float[Tensor, "batch d_in"], dtype: torch.dtype | None = None
    ) -> Float[Tensor, "batch d_sae"]:
        dtype = x.dtype if dtype is None else dtype
        shape = (x.shape[0], self.d_sae)
        buf = self._scratch
        if buf is None or buf.shape != shape or buf.dtype != dtype or buf.device != x.device:
            buf = self._scratch = torch.empty(shape, dtype=dtype, device=x.device)
        W: Tensor = self.W_enc
        b: Tensor = self.b_enc
        if dtype != x.dtype:
            x, W, b = x.to(dtype), W.to(dtype), b.to(dtype)
        return torch.addmm(b, x, W, out=buf)

    def exact_preacts(self, code: SparseCode, x: Float[Tensor, "batch d_in"]) -> Tensor:
        with torch.no_grad():
            return sampled_dots(code, x, self.W_enc.t()) + self.b_enc[code.cols]

    def _attached_acts(self, code: SparseCode, vals: Tensor, x: Tensor) -> Tensor:
        if vals.dtype != x.dtype:
            vals = self.exact_preacts(code, x)
        centre = self._zero_centre
        assert isinstance(centre, Tensor)  # a registered buffer
        return torch.relu(
            selected_preacts(code, vals.reshape(-1), x, centre, self.W_enc, self.b_enc)
        )

    def skip(self, x: Float[Tensor, "batch d_in"]) -> Float[Tensor, "batch d_out"] | None:
        """The linear skip term `x @ W_skip` (skip-transcoder), else None."""
        return x @ self.W_skip if self.has_skip else None

    def transcode(self, x: Float[Tensor, "batch d_in"]) -> Float[Tensor, "batch d_out"]:
        """The prediction of the target site: `decode(encode(x))` plus the skip term."""
        y_hat = self.decode(self.encode(x))
        s = self.skip(x)
        return y_hat if s is None else y_hat + s

    def split_pair(
        self, xy: Float[Tensor, "batch train_width"]
    ) -> tuple[Float[Tensor, "batch d_in"], Float[Tensor, "batch d_out"]]:
        """A training row `[x | y]` cut into the input and the target."""
        if xy.ndim != 2 or xy.shape[1] != self.config.train_width:
            raise ValueError(
                f"transcoder rows must have shape [batch, d_in + d_out = "
                f"{self.config.train_width}] (input and target side by side); "
                f"got {tuple(xy.shape)}"
            )
        return xy[:, : self.d_in].contiguous(), xy[:, self.d_in :].contiguous()

    def reconstruct(self, batch: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """`(target, latents, prediction)` of a training row `[x | y]` (for evaluation)."""
        x, y = self.split_pair(batch)
        z = self.encode(x)
        y_hat = self.decode(z)
        s = self.skip(x)
        return y, z, y_hat if s is None else y_hat + s

    # ---- the training forward ---------------------------------------------------------

    def forward(
        self,
        x: Float[Tensor, "batch train_width"],
        *,
        dead_mask: Tensor | None = None,
        sparsity_scale: float = 1.0,
    ) -> SAEOutput:
        """Predict the target half of each row `[x | y]` from its input half; `x_hat` is the
        prediction `[batch, d_out]` and the losses are measured against `y`."""
        inputs, target = self.split_pair(x)
        return self._forward_pair(inputs, target, dead_mask=dead_mask)

    def _forward_pair(self, x: Tensor, y: Tensor, *, dead_mask: Tensor | None) -> SAEOutput:
        pre, code, acts, idx = self._encode_pairs(x)
        y_hat = self._decode_pairs(code, acts) + self.b_dec
        s = self.skip(x)
        if s is not None:
            y_hat = y_hat + s
        losses = {"fvu": fvu_loss(y, y_hat, self.reconstruction_denominator)}
        if dead_mask is not None and self.training and self.config.aux_coefficient > 0:
            aux = self._auxk_loss(y, y_hat, pre, dead_mask, encoder_input=x)
            if aux is not None:
                losses["aux"] = aux
        fire = torch.zeros(self.d_sae, dtype=torch.long, device=x.device)
        fire.index_add_(0, code.cols, (acts.detach() > 0).long())
        values = acts.detach().view(idx.shape)
        return SAEOutput(y_hat, idx, values, losses, fire, {})

    @torch.no_grad()
    def init_from_sample_(self, sample: Float[Tensor, "rows train_width"]) -> None:
        """Start b_dec at the target's geometric median and scale W_enc so the initial
        pre-activations are as large, relative to the input, as an SAE's on the target
        (the input and the output of an MLP can differ in size by orders of magnitude)."""
        from polysemy.sae.base import geometric_median

        x, y = self.split_pair(sample)
        self.b_dec.copy_(geometric_median(y))
        x_rms = x.double().pow(2).sum(-1).mean().sqrt()
        y_rms = y.double().pow(2).sum(-1).mean().sqrt()
        if x_rms > 0 and y_rms > 0:
            self.W_enc.mul_(float(y_rms / x_rms))

    # ---- (de)serialisation ------------------------------------------------------------

    def inference_tensors(self) -> dict[str, Tensor]:
        out = super().inference_tensors()
        if self.has_skip:
            out["W_skip"] = self.W_skip.detach()
        return out

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {
            "W_enc": (self.d_in, self.d_sae),
            "b_enc": (self.d_sae,),
            "W_dec": (self.d_sae, self.d_out),
            "b_dec": (self.d_out,),
        }
        if self.has_skip:
            shapes["W_skip"] = (self.d_in, self.d_out)
        return shapes

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, d_out={self.d_out}"


class SkipTranscoder(Transcoder):
    """TopK transcoder plus a dense linear skip term `x @ W_skip`."""

    arch = "skip-transcoder"
    has_skip = True
