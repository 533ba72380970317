"""The `SparseAutoencoder` base class shared by every architecture.

Every SAE has the same four tensors and the same affine maps (DESIGN.md section 4):

    encode(x) = act((x - b_dec) @ W_enc + b_enc)        # [batch, d_sae]
    decode(z) = z @ W_dec + b_dec                        # [batch, d_in]

Architectures differ in `act` and in the training losses, so a subclass implements
`activation` (dense, for inference) and `_train_forward` (returns `SAEOutput` with losses).
The rows of `W_dec` are the feature directions.

>>> sae = build_sae(SAEConfig(arch="topk", d_in=8, d_sae=32, k=4))   # doctest: +SKIP
>>> sae(torch.randn(5, 8)).x_hat.shape                                # doctest: +SKIP
torch.Size([5, 8])
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from polysemy.sae.config import SAEConfig
from polysemy.sae.sparse_decode import SparseCode, sampled_dots


class SAEOutput(NamedTuple):
    """What `SparseAutoencoder.forward` returns."""

    x_hat: Float[Tensor, "batch d_in"]
    """Reconstruction of the input."""
    latent_indices: Int[Tensor, "batch k"] | None
    """TopK: indices of the k active latents per row (sorted ascending); else None."""
    latent_values: Float[Tensor, "batch k"] | None
    """TopK: their activations (>= 0); else None."""
    losses: dict[str, Tensor]
    """Weighted loss terms; the training objective is their sum."""
    fire_counts: Int[Tensor, " d_sae"]
    """Rows of this batch on which each latent was active (for dead/dense tracking)."""
    stats: dict[str, Tensor]
    """Extra per-batch statistics an architecture needs after the step (e.g. batchtopk's
    minimum positive activation)."""


def geometric_median(
    points: Float[Tensor, "n d"], *, max_iter: int = 200, tol: float = 1e-6
) -> Float[Tensor, " d"]:
    """Geometric median of `points` by Weiszfeld's algorithm (float64 inside).

    Minimises sum_i ||points_i - y||; robust to outliers where the mean is not, which is
    why it initialises b_dec (Bricken et al. 2023, "Towards Monosemanticity").
    """
    if points.ndim != 2 or points.shape[0] == 0:
        raise ValueError(f"points must be a non-empty 2-D tensor; got shape {tuple(points.shape)}")
    p = points.detach().to(torch.float64)
    y = p.mean(0)
    for _ in range(max_iter):
        dist = (p - y).norm(dim=1).clamp_min(1e-12)  # [n]
        w = 1.0 / dist
        y_next = (w[:, None] * p).sum(0) / w.sum()
        shift = (y_next - y).norm()
        y = y_next
        if shift <= tol * (y.norm() + 1e-12):
            break
    return y.to(points.dtype)


class SparseAutoencoder(nn.Module):
    """Base class: parameters, `encode`/`decode`/`forward`, decoder-norm helpers.

    Parameters: `W_enc [d_in, d_sae]`, `b_enc [d_sae]`, `W_dec [d_sae, d_in]`, `b_dec [d_in]`.
    """

    arch: ClassVar[str] = ""
    unit_norm_decoder: ClassVar[bool] = True
    """Keep decoder rows at unit norm while training (False for the April-2024 relu recipe,
    which instead weights its L1 penalty by the row norms)."""
    decoder_init_norm: ClassVar[float] = 1.0
    normalized_reconstruction: ClassVar[bool] = True
    """Divide the squared error by the data's total variance (set by the trainer in
    `reconstruction_denominator`), so the loss reads as FVU; False keeps the plain sum of
    squares the relu recipe calibrates its L1 coefficient against."""
    reconstruction_denominator: float = 1.0
    """Fixed variance the squared error is divided by. A constant (not the batch's variance)
    keeps the loss a mean over rows, so data-parallel ranks average to exactly the
    single-process gradient."""
    metadata: dict[str, Any] | None = None
    """The checkpoint's raw `config.json` when the SAE came from `load_sae`, else None."""
    default_grad_clip: ClassVar[float | None] = None
    """Gradient-norm clip the trainer applies when `TrainConfig.grad_clip` is None."""
    uses_dead_mask: ClassVar[bool] = False
    """Whether `forward` wants the trainer's `dead_mask` (an auxiliary loss on dead latents)."""
    chooses_latents: ClassVar[bool] = False
    """Whether training first *chooses* the active latents (the TopK family), so that the
    choice may run in a lower precision (`selection_dtype`)."""

    def __init__(
        self,
        config: SAEConfig,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if config.arch != self.arch:
            raise ValueError(
                f"config.arch must be {self.arch!r} for {type(self).__name__}; got {config.arch!r}"
            )
        self.config = config
        d_in, d_sae = config.d_in, config.d_sae
        # Random directions for the decoder rows, the encoder as their transpose (Gao et al.
        # 2024 section 2.4; Conerly et al. 2024): every latent starts reading its own direction.
        W_dec = torch.randn(d_sae, d_in, generator=generator, dtype=torch.float32)
        W_dec = W_dec / W_dec.norm(dim=1, keepdim=True) * self.decoder_init_norm
        W_dec = W_dec.to(device=device, dtype=dtype)
        self.W_dec = nn.Parameter(W_dec)
        # contiguous [d_in, d_sae]; scaled down for TopK (see SAEConfig.encoder_init_scale)
        self.W_enc = nn.Parameter((W_dec.t() * config.effective_encoder_init_scale).contiguous())
        self.b_enc = nn.Parameter(torch.zeros(d_sae, device=device, dtype=dtype))
        self.b_dec = nn.Parameter(torch.zeros(d_in, device=device, dtype=dtype))
        self._scratch: Tensor | None = None  # see scratch_pre_activations
        self.selection_dtype: torch.dtype | None = None
        """TopK family, training only: dtype in which the pre-activations that choose the
        active latents are computed (None: the input's). The chosen latents' values are
        always recomputed in the input's dtype (`exact_preacts`)."""

    # ---- the affine maps ---------------------------------------------------------------

    @property
    def d_in(self) -> int:
        return self.config.d_in

    @property
    def d_sae(self) -> int:
        return self.config.d_sae

    def pre_activations(self, x: Float[Tensor, "batch d_in"]) -> Float[Tensor, "batch d_sae"]:
        """`(x - b_dec) @ W_enc + b_enc`."""
        return torch.addmm(self.b_enc, x - self.b_dec, self.W_enc)

    @torch.no_grad()
    def scratch_pre_activations(
        self, x: Float[Tensor, "batch d_in"], dtype: torch.dtype | None = None
    ) -> Float[Tensor, "batch d_sae"]:
        """`pre_activations(x)` without autograd, written into a buffer reused by every call,
        computed in `dtype` (default: x's).

        The result is overwritten by the next call: use it within one forward. A fresh
        [4096, 3072] float32 result is 50 MB, which the allocator maps anew each step; its
        first touch (page faults) made the matmul about 20% slower on CPU. In bfloat16 the
        matmul runs on the CPU's matrix units where it has them (5-8x float32 on AMX;
        both figures from `benchmarks/sae_selection.py`).
        """
        dtype = x.dtype if dtype is None else dtype
        shape = (x.shape[0], self.d_sae)
        buf = self._scratch
        if buf is None or buf.shape != shape or buf.dtype != dtype or buf.device != x.device:
            buf = self._scratch = torch.empty(shape, dtype=dtype, device=x.device)
        x_c: Tensor = x - self.b_dec
        W: Tensor = self.W_enc
        b: Tensor = self.b_enc
        if dtype != x.dtype:
            x_c, W, b = x_c.to(dtype), W.to(dtype), b.to(dtype)
        return torch.addmm(b, x_c, W, out=buf)

    def exact_preacts(self, code: SparseCode, x: Float[Tensor, "batch d_in"]) -> Tensor:
        """`pre_activations(x)` at the pairs of `code` only, in x's dtype: `[nnz]`."""
        with torch.no_grad():
            dots = sampled_dots(code, x - self.b_dec, self.W_enc.t())
            return dots + self.b_enc[code.cols]

    def release_scratch_(self) -> None:
        """Drop the buffer of `scratch_pre_activations` (before copying or saving the SAE)."""
        self._scratch = None

    def activation(self, pre: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_sae"]:
        """The architecture's `act` at inference (dense)."""
        raise NotImplementedError

    def encode(self, x: Float[Tensor, "batch d_in"]) -> Float[Tensor, "batch d_sae"]:
        """Dense latents `act((x - b_dec) @ W_enc + b_enc)`."""
        self._check_input(x)
        return self.activation(self.pre_activations(x))

    def decode(self, z: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_in"]:
        """`z @ W_dec + b_dec`."""
        return torch.addmm(self.b_dec, z, self.W_dec)

    def reconstruct(self, batch: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """`(target, latents, reconstruction)` of one batch of training rows: for an SAE
        the rows themselves, `encode(rows)` and `decode` of it (transcoders override)."""
        z = self.encode(batch)
        return batch, z, self.decode(z)

    def forward(
        self,
        x: Float[Tensor, "batch d_in"],
        *,
        dead_mask: Tensor | None = None,
        sparsity_scale: float = 1.0,
    ) -> SAEOutput:
        """Reconstruct `x`; `losses` hold the weighted training terms.

        `dead_mask [d_sae]` (bool) marks dead latents for auxiliary losses (TopK family);
        `sparsity_scale` multiplies the sparsity coefficient (its warm-up).
        """
        self._check_input(x)
        return self._forward(x, dead_mask=dead_mask, sparsity_scale=sparsity_scale)

    def _forward(self, x: Tensor, *, dead_mask: Tensor | None, sparsity_scale: float) -> SAEOutput:
        raise NotImplementedError

    def _check_input(self, x: Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.d_in:
            raise ValueError(f"x must have shape [batch, d_in={self.d_in}]; got {tuple(x.shape)}")

    # ---- training helpers -------------------------------------------------------------

    @torch.no_grad()
    def remove_parallel_decoder_grad_(self) -> None:
        """Project out the gradient component along each (unit) decoder row, so the step
        moves the direction and not the norm (Bricken et al. 2023)."""
        if not self.unit_norm_decoder or self.W_dec.grad is None:
            return
        g, w = self.W_dec.grad, self.W_dec
        g.sub_((g * w).sum(dim=1, keepdim=True) * w)

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        """Rescale decoder rows to unit norm (no-op for architectures that do not need it)."""
        if self.unit_norm_decoder:
            self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def post_step_(self) -> None:
        """Constraints applied after every optimizer step."""
        self.normalize_decoder_()

    @torch.no_grad()
    def update_from_stats_(self, stats: dict[str, Tensor]) -> None:
        """Fold one step's `SAEOutput.stats` (averaged over data-parallel ranks) into state
        the architecture learns outside the gradient (e.g. batchtopk's threshold)."""

    # ---- units ------------------------------------------------------------------------

    @torch.no_grad()
    def fold_input_scale_(self, scale: float) -> None:
        """Make an SAE trained on `scale * x` work on raw `x`.

        Every `act` here is positively homogeneous given its threshold, so with
        z' = z / scale: encode'(x) = act((x - b_dec/scale) @ W_enc + b_enc/scale) and
        decode'(z') = z' @ W_dec + b_dec/scale = decode(z) / scale. Thresholds scale too.
        """
        if not scale > 0:
            raise ValueError(f"scale must be > 0; got {scale}")
        self.b_enc.div_(scale)
        self.b_dec.div_(scale)
        for name in ("threshold",):
            t = getattr(self, name, None)
            if isinstance(t, Tensor):
                t.div_(scale)

    # ---- (de)serialisation ------------------------------------------------------------

    def inference_tensors(self) -> dict[str, Tensor]:
        """The tensors of the checkpoint format (DESIGN.md section 4)."""
        out = {
            "W_enc": self.W_enc.detach(),
            "b_enc": self.b_enc.detach(),
            "W_dec": self.W_dec.detach(),
            "b_dec": self.b_dec.detach(),
        }
        t = getattr(self, "threshold", None)
        if isinstance(t, Tensor):
            out["threshold"] = t.detach()
        return out

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {
            "W_enc": (self.d_in, self.d_sae),
            "b_enc": (self.d_sae,),
            "W_dec": (self.d_sae, self.d_in),
            "b_dec": (self.d_in,),
        }
        if isinstance(getattr(self, "threshold", None), Tensor):
            shapes["threshold"] = (self.d_sae,)
        return shapes

    @torch.no_grad()
    def load_inference_tensors_(self, tensors: dict[str, Tensor]) -> None:
        """Copy checkpoint tensors in, checking names and shapes (ValueError on mismatch)."""
        expected = self.expected_shapes()
        missing = sorted(set(expected) - set(tensors))
        if missing:
            raise ValueError(
                f"SAE weights lack tensor(s) {', '.join(missing)} for arch {self.arch!r}"
            )
        for name, shape in expected.items():
            t = tensors[name]
            if tuple(t.shape) != shape:
                raise ValueError(
                    f"tensor {name!r} must have shape {list(shape)} for d_in={self.d_in}, "
                    f"d_sae={self.d_sae}; got {list(t.shape)}"
                )
            target = getattr(self, name)
            target.copy_(t.to(device=target.device, dtype=target.dtype))
        self._inference_tensors_loaded_()

    def _inference_tensors_loaded_(self) -> None:
        """Hook after `load_inference_tensors_`: make state that the checkpoint does not hold
        consistent with the loaded tensors."""

    def extra_repr(self) -> str:
        k = f", k={self.config.k}" if self.config.k is not None else ""
        return f"arch={self.arch!r}, d_in={self.d_in}, d_sae={self.d_sae}{k}"


def fvu_loss(x: Tensor, x_hat: Tensor, denominator: Tensor | float) -> Tensor:
    """Mean over rows of ||x - x_hat||^2, divided by `denominator` (a fixed variance: the
    architecture's `reconstruction_denominator`)."""
    return (x_hat - x).pow(2).sum(-1).mean() / denominator


def fire_counts_dense(z: Tensor) -> Tensor:
    """Rows on which each latent is active: `[d_sae]` int64."""
    return (z > 0).sum(0)
