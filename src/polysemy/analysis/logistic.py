"""A logistic-regression probe with scikit-learn's contract, in torch, and the ranking that picks
the units a sparse probe reads.

`LogisticProbe` standardises each input column on the rows it is fitted on (so one L2
strength means the same for a neuron, a feature and a 1,536-wide activation) and minimises

    mean_i log(1 + exp(-s_i (w · x̃_i + b))) + (l2 / 2) ||w||²,   x̃ = (x - mean_) / scale_,

with s_i = ±1, by L-BFGS with a strong-Wolfe line search, from w = 0 (so a fit is
deterministic: there is nothing to seed). The objective is convex, so a few dozen steps reach
the optimum; `coef_` and `intercept_` are returned in the original units of x.

`mean_difference` ranks columns by |μ₁ - μ₀| / σ_pooled (Cohen's d): one pass over the rows,
so it ranks 1,536 neurons or 24k SAE features for the price of reading them (the "mean
difference" selection of sparse probing; Gurnee et al. 2023, "Finding Neurons in a Haystack").

>>> import torch
>>> x = torch.randn(200, 3, generator=torch.Generator().manual_seed(0))
>>> y = x[:, 1] > 0
>>> probe = LogisticProbe().fit(x, y)
>>> probe.score(x, y) > 0.95, int(mean_difference(x, y).argmax())
(True, 1)
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from polysemy.validation import ParameterError, check_float, check_int

_CHUNK = 16_384  # rows per float64 pass of mean_difference


class LogisticProbe:
    """Binary logistic regression (scikit-learn's fit / predict / predict_proba / score).

    Learned state (after `fit`): `mean_`, `scale_` (the standardisation, `[n_columns]`),
    `coef_` (`[n_columns]`, original units), `intercept_` (float), `n_iter_`.
    """

    def __init__(self, *, l2: float = 1e-3, max_iter: int = 100, tol: float = 1e-6) -> None:
        self.l2 = check_float("l2", l2, least=0.0)
        self.max_iter = check_int("max_iter", max_iter, least=1)
        self.tol = check_float("tol", tol, above=0.0)

    def fit(self, X: Float[Tensor, "rows columns"], y: Bool[Tensor, " rows"]) -> LogisticProbe:
        x = _matrix(X).detach()
        target = torch.as_tensor(y).to(device=x.device).flatten()
        if target.numel() != x.shape[0]:
            raise ValueError(
                f"y must have one label per row of X ({x.shape[0]}); got {target.numel()}"
            )
        target = target.bool()
        if bool(target.all()) or not bool(target.any()):
            raise ValueError("y must hold both classes; got one")
        self.mean_ = x.mean(0)
        std = x.std(0)
        # A column constant up to rounding (its std a millionth of its mean's size or of the
        # median column's) gets scale 1 and standardised values 0, so its weight stays 0:
        # dividing by rounding noise would put a weight of ~1e30 on a column that carries nothing.
        flat = (std == 0) | (std <= 1e-6 * self.mean_.abs()) | (std <= 1e-6 * std.median())
        self.scale_ = std.where(~flat, torch.ones((), dtype=std.dtype, device=x.device))
        z = ((x - self.mean_) / self.scale_).masked_fill(flat, 0.0)  # (rows, columns)
        sign = target.to(z.dtype) * 2 - 1  # (rows,)
        w = torch.zeros(z.shape[1] + 1, dtype=z.dtype, device=z.device, requires_grad=True)
        opt = torch.optim.LBFGS(
            [w], max_iter=self.max_iter, tolerance_grad=self.tol, tolerance_change=1e-12,
            history_size=20, line_search_fn="strong_wolfe",
        )  # fmt: skip

        def closure() -> Tensor:
            opt.zero_grad()
            margin = sign * (z @ w[:-1] + w[-1])
            loss = (
                torch.nn.functional.softplus(-margin).mean() + 0.5 * self.l2 * w[:-1].square().sum()
            )
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        state = opt.state[opt._params[0]]
        self.n_iter_ = int(state.get("n_iter", 0))
        w_std = w.detach()
        self.coef_std_ = w_std[:-1].clone()
        self.coef_ = w_std[:-1] / self.scale_
        self.intercept_ = float(w_std[-1] - (self.mean_ / self.scale_ * w_std[:-1]).sum())
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise RuntimeError("this LogisticProbe is not fitted yet; call fit(X, y) first")

    def decision_function(self, X: Float[Tensor, "rows columns"]) -> Float[Tensor, " rows"]:
        """w · x + b per row (log-odds of the positive class)."""
        self._check_fitted()
        x = _matrix(X)
        if x.shape[1] != self.coef_.numel():
            raise ValueError(f"X must have {self.coef_.numel()} columns; got {x.shape[1]}")
        return x @ self.coef_.to(x) + self.intercept_

    def predict_proba(self, X: Float[Tensor, "rows columns"]) -> Float[Tensor, "rows 2"]:
        """`[rows, 2]`: P(negative), P(positive) (scikit-learn's column order)."""
        p = torch.sigmoid(self.decision_function(X))
        return torch.stack([1 - p, p], dim=1)

    def predict(self, X: Float[Tensor, "rows columns"]) -> Bool[Tensor, " rows"]:
        return self.decision_function(X) > 0

    def score(self, X: Float[Tensor, "rows columns"], y: Bool[Tensor, " rows"]) -> float:
        """Accuracy on (X, y)."""
        target = torch.as_tensor(y).flatten().bool()
        return float((self.predict(X).cpu() == target.cpu()).double().mean())


def _matrix(X: Tensor) -> Tensor:
    x = torch.as_tensor(X)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ParameterError("X", "a non-empty 2-D tensor [rows, columns]", tuple(x.shape))
    return x.float() if not x.is_floating_point() or x.dtype == torch.float16 else x


def mean_difference(
    X: Float[Tensor, "rows columns"], y: Bool[Tensor, " rows"]
) -> Float[Tensor, " columns"]:
    """|μ₁ - μ₀| / σ_pooled per column (0 for a column constant within both classes)."""
    return mean_difference_batched([(X, y)])


def mean_difference_batched(
    batches: Iterable[tuple[Float[Tensor, "rows columns"], Bool[Tensor, " rows"]]],
) -> Float[Tensor, " columns"]:
    """`mean_difference` over row batches (X, y), in one pass: for columns too many to hold
    every row of at once (an SAE's features)."""
    moments: list[Tensor] | None = None  # count, sum, sum of squares: positives, then all
    for X, y in batches:
        x = _matrix(X)
        target = torch.as_tensor(y).to(x.device).flatten().bool()
        for start in range(0, x.shape[0], _CHUNK):  # float64 sums, a chunk at a time
            xd = x[start : start + _CHUNK].double()
            yd = target[start : start + _CHUNK].double()
            parts = [yd.sum().cpu(), (yd @ xd).cpu(), (yd @ xd.square()).cpu(),
                     torch.tensor(float(xd.shape[0]), dtype=torch.float64),
                     xd.sum(0).cpu(), xd.square().sum(0).cpu()]  # fmt: skip
            moments = (
                parts if moments is None else [a + b for a, b in zip(moments, parts, strict=True)]
            )
    if moments is None:
        raise ValueError("batches must hold at least one batch of rows")
    n1, s1, q1, n, s_all, q_all = moments
    n0, s0, q0 = n - n1, s_all - s1, q_all - q1
    if n1 < 2 or n0 < 2:
        raise ValueError("y must hold at least two rows of each class")
    m1, m0 = s1 / n1, s0 / n0
    ss = (q1 - n1 * m1.square()).clamp_min(0) + (q0 - n0 * m0.square()).clamp_min(0)
    pooled = (ss / (n1 + n0 - 2)).sqrt()
    diff = (m1 - m0).abs()
    # Relative floor: a column constant within both classes has round-off variance only.
    tiny = 1e-12 * (m1.abs() + m0.abs() + 1)
    return torch.where(pooled > tiny, diff / pooled.clamp_min(1e-30), torch.zeros_like(diff))
