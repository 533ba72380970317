"""Toy models of superposition: the configuration and a plain reference forward pass.

Four models, all vectorized over `n_instances` (each instance has its own weights, sparsity
and importance), following Elhage et al. 2022, "Toy Models of Superposition":

- `linear`:       x' = W^T W x + b
- `relu-output`:  x' = ReLU(W^T W x + b)
- `relu-hidden`:  h = ReLU(W x), x' = ReLU(W^T h + b)           (privileged hidden basis)
- `abs`:          h = ReLU(W x), y = ReLU(W_out h + b), target |x| with x in U[-1, 1]
                  (section "Computation in Superposition": untied W and W_out)

`W` is `[n_instances, n_hidden, n_features]`: column `W[:, :, i]` is feature i's direction in
the hidden space, row `W[:, k, :]` is hidden neuron k's loadings on the features.

The forward here is the readable reference used for evaluation and for checking the
hand-derived gradients of `polysemy.toy.trainer` (which never calls autograd).

>>> cfg = ToyConfig(model="relu-output", n_features=5, n_hidden=2, sparsity=(0.9,),
...                 importance=(importance_decay(0.9, 5),))
>>> cfg.n_instances
1
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, get_args

import torch
from jaxtyping import Float
from torch import Tensor

ModelKind = Literal["linear", "relu-output", "relu-hidden", "abs"]
FeatureKind = Literal["independent", "correlated", "anticorrelated"]
LRSchedule = Literal["constant", "linear", "cosine"]
OptimizerKind = Literal["adam", "adamw"]

MODEL_KINDS: tuple[str, ...] = get_args(ModelKind)
FEATURE_KINDS: tuple[str, ...] = get_args(FeatureKind)
LR_SCHEDULES: tuple[str, ...] = get_args(LRSchedule)
OPTIMIZERS: tuple[str, ...] = get_args(OptimizerKind)


def importance_decay(r: float, n_features: int) -> tuple[float, ...]:
    """Importances I_i = r**i for i = 0..n_features-1 (r = 1 gives uniform importance)."""
    if not (isinstance(r, int | float) and math.isfinite(r) and r > 0):
        raise ValueError(f"importance decay r must be a finite number > 0; got {r!r}")
    if not (isinstance(n_features, int) and n_features >= 1):
        raise ValueError(f"n_features must be an int >= 1; got {n_features!r}")
    return tuple(float(r) ** i for i in range(n_features))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class ToyConfig:
    """Everything that defines one toy-model training run (a sweep of `n_instances`)."""

    model: ModelKind
    """Which toy model: `linear`, `relu-output`, `relu-hidden` or `abs`."""
    n_features: int
    """Number of input features n."""
    n_hidden: int
    """Number of hidden dimensions m (m < n forces a choice: drop features or superpose)."""
    sparsity: tuple[float, ...]
    """Probability S that a feature is zero, one value per instance (n_instances = len)."""
    importance: tuple[tuple[float, ...], ...]
    """Importance I_i weighting each feature's squared error, [n_instances][n_features]."""
    feature_kind: FeatureKind = "independent"
    """Independent features, or pairs (0,1), (2,3), ... that are `correlated` (both present or
    both absent) or `anticorrelated` (never both present); an odd last feature is independent."""
    steps: int = 10_000
    """Optimizer steps."""
    batch_size: int = 1024
    """Fresh samples per step and instance."""
    lr: float = 1e-3
    """Peak learning rate."""
    lr_schedule: LRSchedule = "constant"
    """Learning-rate schedule after warm-up: `constant`, `linear` decay to 0, or `cosine`."""
    warmup_steps: int = 0
    """Steps of linear learning-rate warm-up from 0 (0 = none)."""
    optimizer: OptimizerKind = "adam"
    """`adam` (weight decay, if any, added to the gradient) or `adamw` (decoupled decay)."""
    weight_decay: float = 0.0
    """Weight decay on W (and W_out); never on the bias."""
    best_of: int = 1
    """Seeds trained per instance (in the same batched tensor); the lowest final loss is kept."""
    seed: int = 0
    """Seed of initialization and data; the same config and seed give the same run."""
    snapshot_every: int | None = None
    """Keep a copy of W every this many steps (plus step 0 and the last), or None for none."""
    snapshots: int | None = None
    """Keep W and b_final at this many log-spaced steps (step 0 and the last included; fewer
    when short runs round two steps together), or None for none. Combines with
    `snapshot_every` (the union of both step sets)."""
    shared_data: bool = True
    """Give every instance the same uniform draws each step (common random numbers: each
    instance's data are still exactly distributed; see `polysemy.toy.data`); much faster."""
    eval_samples: int = 8192
    """Fresh samples per instance for the final loss (the same samples for every seed)."""
    init_std: float | None = None
    """Std of the normal initial W (and W_out), or None for Xavier sqrt(2 / (n_features +
    n_hidden)); see `init_params`."""

    def __post_init__(self) -> None:
        if self.model not in MODEL_KINDS:
            raise ValueError(f"model must be one of {', '.join(MODEL_KINDS)}; got {self.model!r}")
        if self.feature_kind not in FEATURE_KINDS:
            raise ValueError(
                f"feature_kind must be one of {', '.join(FEATURE_KINDS)}; got {self.feature_kind!r}"
            )
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}; got {self.lr_schedule!r}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}"
            )
        for name in ("n_features", "n_hidden", "steps", "batch_size", "best_of", "eval_samples"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"{name} must be an int >= 1; got {value!r}")
        for name in ("seed", "warmup_steps"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
                raise ValueError(f"{name} must be an int >= 0; got {value!r}")
        if self.snapshot_every is not None and not (
            isinstance(self.snapshot_every, int) and self.snapshot_every >= 1
        ):
            raise ValueError(
                f"snapshot_every must be None or an int >= 1; got {self.snapshot_every!r}"
            )
        if self.snapshots is not None and not (
            isinstance(self.snapshots, int)
            and not isinstance(self.snapshots, bool)
            and self.snapshots >= 2
        ):
            raise ValueError(f"snapshots must be None or an int >= 2; got {self.snapshots!r}")
        if not (_is_number(self.lr) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0; got {self.lr!r}")
        if not (
            _is_number(self.weight_decay)
            and math.isfinite(self.weight_decay)
            and self.weight_decay >= 0
        ):
            raise ValueError(
                f"weight_decay must be a finite number >= 0; got {self.weight_decay!r}"
            )
        if self.init_std is not None and not (
            _is_number(self.init_std) and math.isfinite(self.init_std) and self.init_std > 0
        ):
            raise ValueError(f"init_std must be None or a finite number > 0; got {self.init_std!r}")
        if not isinstance(self.sparsity, tuple) or len(self.sparsity) == 0:
            raise TypeError(
                f"sparsity must be a non-empty tuple of floats (one per instance); "
                f"got {self.sparsity!r}"
            )
        for s in self.sparsity:
            if not (_is_number(s) and 0.0 <= s <= 1.0):
                raise ValueError(f"sparsity must be in [0, 1]; got {s!r}")
        if not isinstance(self.importance, tuple) or len(self.importance) != len(self.sparsity):
            got = len(self.importance) if isinstance(self.importance, tuple) else self.importance
            raise ValueError(
                f"importance must be a tuple of {len(self.sparsity)} rows (one per instance); "
                f"got {got!r}"
            )
        for row in self.importance:
            if not isinstance(row, tuple) or len(row) != self.n_features:
                got = len(row) if isinstance(row, tuple) else row
                raise ValueError(
                    f"each importance row must be a tuple of n_features={self.n_features} "
                    f"values; got {got!r}"
                )
            for v in row:
                if not (_is_number(v) and math.isfinite(v) and v >= 0):
                    raise ValueError(f"importance values must be finite numbers >= 0; got {v!r}")

    @property
    def n_instances(self) -> int:
        """Number of configurations trained at once (one per sparsity value)."""
        return len(self.sparsity)

    @property
    def density(self) -> tuple[float, ...]:
        """Feature probability p = 1 - S per instance."""
        return tuple(1.0 - s for s in self.sparsity)

    @classmethod
    def sweep(
        cls,
        model: ModelKind,
        n_features: int,
        n_hidden: int,
        sparsity: tuple[float, ...] | list[float],
        *,
        decay: float = 1.0,
        **kwargs: object,
    ) -> ToyConfig:
        """A config with the same importance I_i = decay**i for every sparsity value."""
        row = importance_decay(decay, n_features)
        sparsity = tuple(float(s) for s in sparsity)
        return cls(
            model=model,
            n_features=n_features,
            n_hidden=n_hidden,
            sparsity=sparsity,
            importance=tuple(row for _ in sparsity),
            **kwargs,  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class ToyParams:
    """Weights of a batch of toy models (a view of `ToyRun`, or a training state)."""

    W: Float[Tensor, "n_instances n_hidden n_features"]
    """Feature directions (for `abs`: the first layer W1)."""
    b_final: Float[Tensor, "n_instances n_features"]
    """Output bias."""
    W_out: Float[Tensor, "n_instances n_features n_hidden"] | None = field(default=None)
    """Untied second layer of the `abs` model, else None."""


def init_params(
    model: ModelKind,
    n_instances: int,
    n_features: int,
    n_hidden: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    std: float | None = None,
) -> ToyParams:
    """Normal weights per instance with std `std` (default Xavier, sqrt(2 / (n_features +
    n_hidden))), zero bias.

    The default std does not depend on `n_instances`, so an instance trains the same way alone
    or in a sweep (torch's xavier on a 3-D tensor would mix the instance count into the fan).
    """
    if std is None:
        std = math.sqrt(2.0 / (n_features + n_hidden))
    W = torch.randn(n_instances, n_hidden, n_features, generator=generator, dtype=dtype) * std
    W_out = None
    if model == "abs":
        W_out = torch.randn(n_instances, n_features, n_hidden, generator=generator, dtype=dtype)
        W_out *= std
        W_out = W_out.to(device)
    b = torch.zeros(n_instances, n_features, dtype=dtype)
    return ToyParams(W=W.to(device), b_final=b.to(device), W_out=W_out)


def toy_forward(
    model: ModelKind,
    W: Float[Tensor, "n_instances n_hidden n_features"],
    b_final: Float[Tensor, "n_instances n_features"],
    x: Float[Tensor, "n_instances batch n_features"],
    W_out: Float[Tensor, "n_instances n_features n_hidden"] | None = None,
) -> Float[Tensor, "n_instances batch n_features"]:
    """The model's output x' (or y for `abs`) for a batch of inputs, written plainly."""
    h = torch.einsum("ibf,ihf->ibh", x, W)  # (I, B, m): W x
    if model in ("relu-hidden", "abs"):
        h = torch.relu(h)
    if model == "abs":
        if W_out is None:
            raise ValueError("the abs model needs W_out; got None")
        out = torch.einsum("ibh,ifh->ibf", h, W_out)  # (I, B, n): W_out h
    else:
        out = torch.einsum("ibh,ihf->ibf", h, W)  # (I, B, n): W^T h
    out = out + b_final[:, None, :]
    return out if model == "linear" else torch.relu(out)


def toy_target(
    model: ModelKind, x: Float[Tensor, "n_instances batch n_features"]
) -> Float[Tensor, "n_instances batch n_features"]:
    """What the model should output: x itself, or |x| for `abs`."""
    return x.abs() if model == "abs" else x


def toy_loss(
    model: ModelKind,
    params: ToyParams,
    x: Float[Tensor, "n_instances batch n_features"],
    importance: Float[Tensor, "n_instances n_features"],
) -> Float[Tensor, " n_instances"]:
    """Per-instance loss: mean over batch and features of I_i (x'_i - target_i)^2.

    Training minimizes the sum over instances (so instances do not interact).
    """
    y = toy_forward(model, params.W, params.b_final, x, params.W_out)
    err = (y - toy_target(model, x)) ** 2 * importance[:, None, :]
    return err.mean(dim=(1, 2))
