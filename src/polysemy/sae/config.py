"""Configuration of a sparse autoencoder (`SAEConfig`) and of its training run (`TrainConfig`).

Both are frozen dataclasses validated on construction, so a bad value fails before any work:

>>> SAEConfig(arch="topk", d_in=384, d_sae=3072, k=32).k_aux
192
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch

from polysemy.validation import (
    ParameterError,
    check_choice,
    check_float,
    check_int,
    check_optional_float,
    check_optional_int,
)

ARCH_NAMES: tuple[str, ...] = (
    "relu",
    "topk",
    "batchtopk",
    "jumprelu",
    "transcoder",
    "skip-transcoder",
)
"""Every architecture `build_sae` knows, in the order the docs list them."""

TRANSCODERS: tuple[str, ...] = ("transcoder", "skip-transcoder")
"""Architectures that read one site and predict another (`d_out` wide): a TopK code of the
MLP's input decoded to the MLP's output (docs/transcoders.md)."""

TOPK_FAMILY: tuple[str, ...] = ("topk", "batchtopk", *TRANSCODERS)
"""Architectures whose sparsity is set by `k` (active latents per row, on average for batchtopk)."""

DEFAULT_SPARSITY_COEFFICIENT = {"relu": 5.0, "jumprelu": 1e-3}
"""Default `sparsity_coefficient` per architecture (see `SAEConfig.sparsity_coefficient`):
relu's L1 weight of the April-2024 recipe (inputs scaled so E||x||^2 = d_in), jumprelu's L0
weight against a reconstruction term that reads as FVU (1e-3: 100 active latents cost 0.1)."""
DEFAULT_TARGET_L0_COEFFICIENT = 1.0
"""jumprelu with `target_l0`: default weight of (l0 / target_l0 - 1)^2."""


DEFAULT_K = 32
"""`k` of the TopK family when a command line does not give one."""


@dataclass(frozen=True, kw_only=True)
class SAEConfig:
    """Shape and sparsity mechanism of one sparse autoencoder (fields by keyword)."""

    arch: str = "topk"
    """Architecture: one of relu, topk, batchtopk, jumprelu, transcoder, skip-transcoder."""
    d_in: int
    """Width of the activations the SAE reads."""
    d_sae: int
    """Number of latents (dictionary size)."""
    d_out: int | None = None
    """Transcoders: width of the activations they predict (the target site); None gives
    d_in. SAEs reconstruct their input and take none."""
    k: int | None = None
    """TopK family: active latents per row (batchtopk: on average over the batch). None gives
    `DEFAULT_K` (32), or d_sae when smaller, for the TopK family; other architectures take
    none."""
    k_aux: int | None = None
    """TopK family: latents used by the AuxK loss on dead latents; None means `d_in // 2`."""
    aux_coefficient: float = 1 / 32
    """TopK family: weight of the AuxK loss (Gao et al. 2024, section A.2)."""
    sparsity_coefficient: float | None = None
    """relu: L1 coefficient; jumprelu: L0 coefficient. None means the architecture default."""
    target_l0: float | None = None
    """jumprelu only: penalise (l0 / target_l0 - 1)^2 instead of l0 itself."""
    jumprelu_bandwidth: float = 0.001
    """jumprelu: width of the rectangle kernel of the straight-through estimator."""
    jumprelu_init_threshold: float = 0.001
    """jumprelu: initial value of every threshold."""
    batchtopk_threshold_momentum: float = 0.99
    """batchtopk: momentum of the running average that learns the inference threshold."""
    encoder_init_scale: float | None = None
    """W_enc starts as this times W_dec^T. None: 1/sqrt(3) for the TopK family (the norm of
    sparsify's nn.Linear init; MiniLM layer 3, 97 Adam steps: held-out FVU 0.303 against
    0.361 at 1), 1 otherwise."""
    sparse_decode: bool = True
    """TopK family: use the sparse gather path (faster; gradients equal to the dense path)."""

    def __post_init__(self) -> None:
        check_choice("arch", self.arch, ARCH_NAMES)
        check_int("d_in", self.d_in, least=1)
        check_int("d_sae", self.d_sae, least=1)
        if self.arch in TRANSCODERS:
            if self.d_out is None:  # an MLP's input and output usually share a width
                object.__setattr__(self, "d_out", self.d_in)
            check_int("d_out", self.d_out, least=1)
        elif self.d_out is not None:
            raise ParameterError(
                "d_out",
                f"left out for arch {self.arch!r} (it applies to {', '.join(TRANSCODERS)})",
                self.d_out,
            )
        if self.arch in TOPK_FAMILY:
            if self.k is None:  # the default lives here, for the CLI and notebooks alike
                object.__setattr__(self, "k", min(DEFAULT_K, self.d_sae))
            k = check_int("k", self.k)
            if not 1 <= k <= self.d_sae:
                raise ParameterError("k", f"in [1, d_sae={self.d_sae}]", self.k)
            check_optional_int("k_aux", self.k_aux, least=1)
        elif self.k is not None:
            raise ParameterError(
                "k",
                f"left out for arch {self.arch!r} (it applies to {', '.join(TOPK_FAMILY)})",
                self.k,
            )
        check_float("aux_coefficient", self.aux_coefficient, least=0.0)
        check_optional_float("sparsity_coefficient", self.sparsity_coefficient, least=0.0)
        if self.target_l0 is not None:
            if self.arch != "jumprelu":
                raise ParameterError(
                    "target_l0",
                    f"left out for arch {self.arch!r} (it applies to jumprelu)",
                    self.target_l0,
                )
            check_float("target_l0", self.target_l0, above=0.0)
        check_float("jumprelu_bandwidth", self.jumprelu_bandwidth, above=0.0)
        check_float("jumprelu_init_threshold", self.jumprelu_init_threshold, least=0.0)
        check_optional_float("encoder_init_scale", self.encoder_init_scale, above=0.0)
        check_float("batchtopk_threshold_momentum", self.batchtopk_threshold_momentum, least=0.0)
        if not self.batchtopk_threshold_momentum < 1.0:
            raise ParameterError(
                "batchtopk_threshold_momentum",
                "a number in [0, 1)",
                self.batchtopk_threshold_momentum,
            )

    @property
    def is_transcoder(self) -> bool:
        """Whether this is a transcoder (reads `d_in`, predicts `d_out`)."""
        return self.arch in TRANSCODERS

    @property
    def effective_d_out(self) -> int:
        """Width of what the model outputs: `d_out` for transcoders, `d_in` for SAEs."""
        return self.d_out if self.d_out is not None else self.d_in

    @property
    def train_width(self) -> int:
        """Width of one training row: `d_in` for an SAE; `d_in + d_out` for a transcoder,
        whose rows are its input and its target side by side (`[x | y]`)."""
        return self.d_in + self.d_out if self.d_out is not None else self.d_in

    @property
    def effective_k_aux(self) -> int:
        """`k_aux`, or its default half the output width (at least 1, at most d_sae)."""
        k_aux = self.k_aux if self.k_aux is not None else max(1, self.effective_d_out // 2)
        return min(k_aux, self.d_sae)

    @property
    def effective_encoder_init_scale(self) -> float:
        """`encoder_init_scale`, or its architecture default."""
        if self.encoder_init_scale is not None:
            return float(self.encoder_init_scale)
        return 3**-0.5 if self.arch in TOPK_FAMILY else 1.0

    @property
    def effective_sparsity_coefficient(self) -> float:
        """`sparsity_coefficient`, or the architecture default (0 where it does not apply)."""
        if self.sparsity_coefficient is not None:
            return float(self.sparsity_coefficient)
        if self.target_l0 is not None:
            return DEFAULT_TARGET_L0_COEFFICIENT
        return DEFAULT_SPARSITY_COEFFICIENT.get(self.arch, 0.0)


def _cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles (bfloat16 matmuls far faster than float32)."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private, so guarded
    try:
        return bool(probe()) if probe is not None else False
    except Exception:  # a failed probe just means "no"
        return False


LONG_RUN_STEPS = 2000
"""Runs with at least this many steps decay the learning rate by default (see TrainConfig)."""

SelectionDtype = Literal["auto", "float32", "bfloat16"]
SELECTION_DTYPES: tuple[str, ...] = get_args(SelectionDtype)

OptimizerName = Literal["adam", "signum", "schedule-free-signum"]
OPTIMIZERS: tuple[str, ...] = get_args(OptimizerName)


def default_lr(optimizer: str, d_sae: int) -> float:
    """The peak learning rate used when none is given.

    Adam: 4e-4 (the April-2024 recipe). Sign optimizers take steps of size lr in every
    coordinate, so their lr shrinks with the dictionary size. Schedule-free signum:
    5e-3 / sqrt(d_sae / 2**14), the rule sparsify uses (about 0.012 at d_sae 3072); its
    averaged iterate tolerates the large steps. Plain signum has no averaging and collapsed
    at that lr (Zipf synthetic set, d_sae 2048, k 16, 400k tokens: held-out FVU 0.76, 94%
    dead), so it takes a tenth of it (FVU 0.23 at 1e-3 there; 0.37 at 3e-4, 0.27 at 3e-3).
    """
    check_choice("optimizer", optimizer, OPTIMIZERS)
    check_int("d_sae", d_sae, least=1)
    if optimizer == "adam":
        return 4e-4
    schedule_free = 5e-3 / math.sqrt(d_sae / 2**14)
    return schedule_free if optimizer == "schedule-free-signum" else schedule_free / 10


@dataclass(frozen=True)
class TrainConfig:
    """How long and how an SAE is trained; the SAE's own shape lives in `SAEConfig`."""

    tokens: int = 20_000_000
    """Training budget in rows (tokens); steps = tokens // batch_size."""
    batch_size: int = 4096
    """Global batch size in rows (split evenly across data-parallel ranks)."""
    lr: float | None = None
    """Peak learning rate; None: `default_lr(optimizer, d_sae)` (4e-4 for adam,
    5e-3/sqrt(d_sae/2^14) for schedule-free-signum, a tenth of that for signum)."""
    optimizer: OptimizerName = "adam"
    """adam (default: no dead latents and the fastest step), schedule-free-signum (lower
    FVU on short budgets, but more dead latents and slower on CPU) or signum (lowest FVU
    on short budgets, most dead latents). Figures: docs/sae.md."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam betas (signum uses betas[0] as its momentum)."""
    lr_warmup_steps: int | None = None
    """Linear learning-rate warm-up; None means 1% of the steps (at most 1000)."""
    lr_decay_fraction: float | None = None
    """Decay the learning rate linearly to 0 over this final fraction of the steps. None: 0.2
    for runs of at least `LONG_RUN_STEPS` steps, else 0 (a short run is far from converged,
    where decay only costs progress: MiniLM layer 3, 97 steps, held-out FVU 0.376 with decay
    against 0.361 without)."""
    sparsity_warmup_fraction: float = 0.05
    """relu/jumprelu: ramp the sparsity coefficient linearly from 0 over this fraction."""
    grad_clip: float | None = None
    """Clip the gradient norm to this; None means 1.0 for relu (the April-2024 recipe), off else."""
    seed: int = 0
    """Seed of the initialisation and of the data order."""
    scale_inputs: bool = True
    """Scale inputs so that E||x||^2 = d_in while training (folded back into saved weights)."""
    init_b_dec: bool = True
    """Initialise b_dec at the geometric median of a sample (Weiszfeld)."""
    init_sample_rows: int = 16384
    """Rows sampled for the input scale and the geometric median."""
    dead_window: int | None = None
    """A latent is dead after this many rows without firing; None: tokens/20 in [2e4, 1e7]."""
    dense_threshold: float = 0.1
    """A latent is dense when it fires on more than this fraction of a window's rows."""
    checkpoint_every: int | None = None
    """Write the resumable state every this many steps (None: only at the end)."""
    log_every: int = 50
    """Read metrics (FVU, L0, dead fraction) back every this many steps."""
    selection_dtype: SelectionDtype = "auto"
    """TopK family: precision of the encoder matmul that only *chooses* the k active latents
    (their values, the losses and every gradient stay float32). `bfloat16` runs that matmul
    on the CPU's matrix units (AMX: 5-8x float32); near-ties at the k-th value can then pick
    a different latent (about 1% of picks on random data; both figures from
    `benchmarks/sae_selection.py`). `auto`: bfloat16 on a CPU with AMX, else float32.
    Inference (`encode`) is always exact."""

    def __post_init__(self) -> None:
        check_int("tokens", self.tokens, least=1)
        check_int("batch_size", self.batch_size, least=1)
        if self.tokens < self.batch_size:
            raise ParameterError("tokens", f">= batch_size={self.batch_size}", self.tokens)
        check_optional_float("lr", self.lr, above=0.0)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if len(self.betas) != 2:
            raise ParameterError("betas", "two numbers in [0, 1)", self.betas)
        for beta in self.betas:
            check_float("betas", beta, least=0.0)
            if not beta < 1.0:
                raise ParameterError("betas", "two numbers in [0, 1)", self.betas)
        check_optional_int("lr_warmup_steps", self.lr_warmup_steps, least=0)
        check_optional_float("lr_decay_fraction", self.lr_decay_fraction, least=0.0, most=1.0)
        check_float("sparsity_warmup_fraction", self.sparsity_warmup_fraction, least=0.0, most=1.0)
        check_optional_float("grad_clip", self.grad_clip, above=0.0)
        check_int("seed", self.seed, least=0)
        check_int("init_sample_rows", self.init_sample_rows, least=1)
        check_optional_int("dead_window", self.dead_window, least=1)
        check_float("dense_threshold", self.dense_threshold, above=0.0, most=1.0)
        check_optional_int("checkpoint_every", self.checkpoint_every, least=1)
        check_int("log_every", self.log_every, least=1)
        check_choice("selection_dtype", self.selection_dtype, SELECTION_DTYPES)

    def resolved_lr(self, d_sae: int) -> float:
        """The peak learning rate: `lr`, or `default_lr(optimizer, d_sae)` when it is None."""
        return self.lr if self.lr is not None else default_lr(self.optimizer, d_sae)

    @property
    def steps(self) -> int:
        """Number of optimizer steps."""
        return self.tokens // self.batch_size

    @property
    def effective_warmup_steps(self) -> int:
        if self.lr_warmup_steps is not None:
            return self.lr_warmup_steps
        return min(1000, self.steps // 100)

    @property
    def effective_decay_fraction(self) -> float:
        if self.lr_decay_fraction is not None:
            return self.lr_decay_fraction
        return 0.2 if self.steps >= LONG_RUN_STEPS else 0.0

    @property
    def effective_dead_window(self) -> int:
        if self.dead_window is not None:
            return self.dead_window
        return int(min(10_000_000, max(20_000, self.tokens // 20)))

    def lr_at(self, step: int, d_sae: int) -> float:
        """Learning rate at `step` (0-based) for a dictionary of `d_sae` latents: linear
        warm-up, flat, linear decay to 0."""
        peak = self.resolved_lr(d_sae)
        warmup = self.effective_warmup_steps
        if warmup and step < warmup:
            return peak * (step + 1) / warmup
        if self.optimizer == "schedule-free-signum":
            return peak  # schedule-free: the averaging replaces the decay
        decay_steps = int(self.steps * self.effective_decay_fraction)
        decay_start = self.steps - decay_steps
        if decay_steps and step >= decay_start:
            return peak * max(0.0, (self.steps - step) / decay_steps)
        return peak

    def resolved_selection_dtype(self, device: torch.device) -> torch.dtype:
        """`selection_dtype` as a torch dtype; `auto` is bfloat16 only on a CPU with AMX."""
        if self.selection_dtype == "bfloat16":
            return torch.bfloat16
        if self.selection_dtype == "auto" and device.type == "cpu" and _cpu_has_amx():
            return torch.bfloat16
        return torch.float32

    def sparsity_scale_at(self, step: int) -> float:
        """Factor on the sparsity coefficient at `step`: linear ramp from 0 to 1."""
        ramp = int(self.steps * self.sparsity_warmup_fraction)
        return 1.0 if ramp == 0 else min(1.0, (step + 1) / ramp)


DEFAULT_EXPANSION = 8.0
"""`d_sae = expansion x d_in` when neither the dictionary size nor the expansion is given."""


def resolve_d_sae(d_in: int, *, expansion: float | None = None, d_sae: int | None = None) -> int:
    """The dictionary size: `d_sae` if given, else `round(expansion x d_in)` (expansion
    `DEFAULT_EXPANSION` when None). Giving both is refused: they would disagree."""
    if d_sae is not None:
        if expansion is not None:
            raise ParameterError("expansion", "left out when d_sae is given", expansion)
        return check_int("d_sae", d_sae, least=1)
    factor = (
        DEFAULT_EXPANSION if expansion is None else check_float("expansion", expansion, above=0)
    )
    size = round(factor * d_in)
    if size < 1:
        raise ParameterError("expansion", f"large enough that d_sae >= 1 (d_in={d_in})", factor)
    return size
