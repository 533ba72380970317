"""Sparse feature batches for toy models, vectorized over instances.

Each feature is 0 with probability S (the instance's sparsity) and otherwise drawn from
U[0, 1] (U[-1, 1] for the `abs` model, `signed=True`). Feature kinds:

- `independent`: every feature on its own.
- `correlated`: features (0, 1), (2, 3), ... come in pairs that are both present or both
  absent (the pair is present with probability p = 1 - S; values are independent).
- `anticorrelated`: pairs are never both present: the pair is active with probability
  min(2p, 1) and then exactly one of its two features (a fair coin) is present, so each
  feature's marginal density is p when p <= 1/2 (and min(2p, 1)/2 otherwise).

With an odd number of features the last one is independent.

The independent case is the hot path of training, so `FeatureSampler` draws one uniform u per
entry and gets both the presence (u < p) and the value (u / p, uniform on [0, 1) given
presence) from it, in place, in two passes over a preallocated buffer. It writes **-x**
rather than x: a negated scale followed by `threshold_(-1, 0)` is a single fused pass, and the
trainer folds the sign into its matmuls.

>>> x = sample_features([0.9, 0.0], n_features=4, batch_size=8, generator=torch.Generator())
>>> tuple(x.shape)
(2, 8, 4)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from polysemy.toy.model import FEATURE_KINDS, FeatureKind

Layout = Literal["ibf", "ifb", "fib"]
# How to permute an [instances, batch, features] tensor into each layout.
_PERMUTE: dict[str, tuple[int, int, int]] = {"ibf": (0, 1, 2), "ifb": (0, 2, 1), "fib": (2, 0, 1)}

# A density below this is treated as exactly zero (avoids 1/p overflowing to inf * 0 = nan).
_MIN_DENSITY = 1e-30


class FeatureSampler:
    """Draws batches of -x (the negated features) into a preallocated buffer, in place.

    `sparsity` is one value per instance. `signed=True` draws present values from U[-1, 1]
    (the `abs` model); the distribution is then symmetric, so -x is as good a sample as x.

    `shared=True` (what training uses) draws one uniform u per (sample, feature) and step and
    gives it to every instance: instance i sees feature present iff u < p_i, with value
    u / p_i. Each instance's data are exactly distributed as specified (iid over samples and
    features); only the instances are coupled ("common random numbers"), which does not
    matter since instances never interact, and it divides the cost of the random number
    generator, the most expensive step of the loop, by n_instances. `shared=False` draws
    independent data for every instance.
    """

    def __init__(
        self,
        sparsity: Sequence[float] | Tensor,
        n_features: int,
        *,
        kind: FeatureKind = "independent",
        signed: bool = False,
        shared: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if kind not in FEATURE_KINDS:
            raise ValueError(
                f"feature kind must be one of {', '.join(FEATURE_KINDS)}; got {kind!r}"
            )
        s = torch.as_tensor(sparsity, dtype=torch.float64).reshape(-1)
        if s.numel() == 0 or bool(((s < 0) | (s > 1) | s.isnan()).any()):
            raise ValueError(f"sparsity must be values in [0, 1]; got {s.tolist()!r}")
        self.n_instances = s.numel()
        self.n_features = n_features
        self.kind = kind
        self.signed = signed
        self.shared = shared
        self.generator = generator
        self.device = torch.device(device)
        self.dtype = dtype
        p = (1.0 - s).clamp(min=_MIN_DENSITY)
        self.density = (1.0 - s).to(self.device, dtype)  # (I,)
        # -1/p (or -2/p when signed): u * scale lands in (-1, 0] (or (-1, 1] after +1)
        # exactly when u < p, i.e. when the feature is present.
        factor = 2.0 if signed else 1.0
        self._scale = (-factor / p).to(self.device, dtype).view(-1, 1, 1)  # (I, 1, 1)
        self._one = torch.ones((), device=self.device, dtype=dtype)
        self._u: Tensor | None = None
        self._uT: Tensor | None = None

    def _uniform(self, shape: tuple[int, ...]) -> Tensor:
        if self._u is None or tuple(self._u.shape) != shape:
            self._u = torch.empty(shape, device=self.device, dtype=self.dtype)
        return self._u.uniform_(0.0, 1.0, generator=self.generator)

    def sample_neg_(self, out: Tensor, *, layout: Layout = "ibf") -> Tensor:
        """Fill `out` with -x for a fresh batch; return it.

        `layout` names out's dimensions: `ibf` = [n_instances, batch, n_features] (the
        default), `ifb` = [n_instances, n_features, batch] (what the trainer uses: its
        matmuls run faster with the batch last), `fib` = [n_features, n_instances, batch]
        (one contiguous plane per feature, for tiny models).
        """
        if layout not in _PERMUTE:
            raise ValueError(f"layout must be one of {', '.join(_PERMUTE)}; got {layout!r}")
        sizes = dict(zip(layout, out.shape, strict=True))
        batch, n_feat = sizes["b"], sizes["f"]
        # Per-instance scale in out's layout.
        scale = self._scale.view([-1 if d == "i" else 1 for d in layout])
        if self.kind != "independent":
            x = self._paired(batch)  # (I, B, f)
            out.copy_(x.permute(*_PERMUTE[layout])).neg_()
            return out
        if n_feat != self.n_features:
            raise ValueError(f"out must hold n_features={self.n_features}; got {n_feat}")
        if self.shared:
            # One draw per (sample, feature), broadcast over instances. (Drawn as [B, f] for
            # the instance-major layouts, so `ibf` and `ifb` see the same numbers.)
            if layout == "fib":
                u = self._uniform((n_feat, batch)).unsqueeze(1)  # (f, 1, B)
            else:
                u = self._uniform((batch, n_feat)).unsqueeze(0)  # (1, B, f)
                if layout == "ifb":
                    # A contiguous copy of the small draw: broadcasting a transposed view
                    # into the big tensor reads it with a stride and was 2x slower.
                    if self._uT is None or self._uT.shape != (1, n_feat, batch):
                        self._uT = u.new_empty((1, n_feat, batch))
                    u = self._uT.copy_(u.transpose(1, 2))  # (1, f, B)
            if self.signed:
                torch.addcmul(self._one, u, scale, out=out)  # 1 - 2u/p
            else:
                torch.mul(u, scale, out=out)  # -u/p
        else:
            out.uniform_(0.0, 1.0, generator=self.generator)
            out.mul_(scale)
            if self.signed:
                out.add_(1.0)
        # Keep entries > -1 (present), zero the rest: one fused in-place pass.
        return torch.threshold_(out, -1.0, 0.0)

    def sample(self, batch_size: int) -> Float[Tensor, "n_instances batch n_features"]:
        """A fresh batch x (not negated)."""
        out = torch.empty(
            self.n_instances, batch_size, self.n_features, device=self.device, dtype=self.dtype
        )
        return self.sample_neg_(out).neg_()

    def _paired(self, batch_size: int) -> Tensor:
        shape = (self.n_instances, batch_size, self.n_features)
        n_pairs = self.n_features // 2
        kw = {"generator": self.generator, "device": self.device, "dtype": self.dtype}
        # Shared draws have a leading 1 and broadcast over instances.
        lead = 1 if self.shared else self.n_instances
        values = torch.rand((lead, *shape[1:]), **kw)  # type: ignore[arg-type]
        if self.signed:
            values = values * 2.0 - 1.0
        p = self.density.view(-1, 1, 1)
        present = torch.rand((lead, *shape[1:]), **kw) < p  # type: ignore[arg-type]
        u = torch.rand((lead, batch_size, n_pairs), **kw)  # type: ignore[arg-type]
        if self.kind == "correlated":
            pair = u < p  # (I, B, pairs)
            both = torch.stack([pair, pair], dim=-1)  # (I, B, pairs, 2)
        else:
            active = u < (2.0 * p).clamp(max=1.0)
            first = torch.rand(u.shape, **kw) < 0.5  # type: ignore[arg-type]
            first = first.expand_as(active)
            both = torch.stack([active & first, active & ~first], dim=-1)  # (I, B, pairs, 2)
        present[..., : 2 * n_pairs] = both.flatten(-2)  # (I, B, 2*pairs)
        return values * present


def sample_features(
    sparsity: Sequence[float] | Tensor,
    n_features: int,
    batch_size: int,
    *,
    kind: FeatureKind = "independent",
    signed: bool = False,
    shared: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Float[Tensor, "n_instances batch n_features"]:
    """A batch of sparse features, one slice per instance (see the module docstring)."""
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be an int >= 1; got {batch_size!r}")
    if not (isinstance(n_features, int) and n_features >= 1):
        raise ValueError(f"n_features must be an int >= 1; got {n_features!r}")
    sampler = FeatureSampler(
        sparsity,
        n_features,
        kind=kind,
        signed=signed,
        shared=shared,
        generator=generator,
        device=device,
        dtype=dtype,
    )
    return sampler.sample(batch_size)
