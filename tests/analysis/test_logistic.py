"""LogisticProbe follows scikit-learn's contract and reaches the regularised optimum;
mean_difference is Cohen's d, in one pass or in batches."""

from __future__ import annotations

import pytest
import torch

from polysemy.analysis.logistic import LogisticProbe, mean_difference, mean_difference_batched


def _data(n: int = 400, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g) * torch.tensor([1.0, 10.0, 0.1, 3.0, 1.0]) + 4.0
    logits = 2.0 * (x[:, 1] - 4.0) / 10.0 - 1.5 * (x[:, 2] - 4.0) / 0.1
    y = torch.rand(n, generator=g) < torch.sigmoid(logits)
    return x, y


def test_fit_returns_self_and_learned_state() -> None:
    x, y = _data()
    probe = LogisticProbe(l2=1e-2)
    assert probe.fit(x, y) is probe
    assert probe.coef_.shape == (5,) and isinstance(probe.intercept_, float)
    proba = probe.predict_proba(x)
    assert proba.shape == (400, 2) and torch.allclose(proba.sum(1), torch.ones(400))
    assert torch.equal(probe.predict(x), proba[:, 1] > 0.5)
    assert probe.score(x, y) == pytest.approx(float((probe.predict(x) == y).double().mean()))


def test_fit_reaches_the_regularised_optimum() -> None:
    # At the optimum the gradient of the standardised objective is zero.
    x, y = _data()
    probe = LogisticProbe(l2=1e-2, max_iter=200).fit(x, y)
    z = ((x - probe.mean_) / probe.scale_).double().requires_grad_(False)
    w = torch.cat([probe.coef_std_.double(), torch.tensor([0.0])]).requires_grad_(True)
    b = probe.intercept_ + float((probe.mean_ / probe.scale_ * probe.coef_std_).sum())
    w.data[-1] = b
    margin = (y.double() * 2 - 1) * (z @ w[:-1] + w[-1])
    loss = torch.nn.functional.softplus(-margin).mean() + 0.5 * 1e-2 * w[:-1].square().sum()
    loss.backward()
    assert float(w.grad.abs().max()) < 1e-4
    # Original units: decision = x @ coef_ + intercept_ equals the standardised form.
    assert torch.allclose(
        probe.decision_function(x).double(), (z @ w[:-1] + w[-1]).detach(), atol=1e-4
    )
    # The informative columns carry the weight.
    assert set(probe.coef_std_.abs().argsort(descending=True)[:2].tolist()) == {1, 2}


def test_refusals() -> None:
    x, y = _data()
    with pytest.raises(RuntimeError, match="not fitted"):
        LogisticProbe().predict(x)
    with pytest.raises(ValueError, match="both classes"):
        LogisticProbe().fit(x, torch.zeros(400, dtype=torch.bool))
    with pytest.raises(ValueError, match="one label per row"):
        LogisticProbe().fit(x, y[:10])
    with pytest.raises(ValueError, match="l2"):
        LogisticProbe(l2=-1.0)
    with pytest.raises(ValueError, match="columns"):
        LogisticProbe().fit(x, y).predict(x[:, :3])


def test_mean_difference_is_cohens_d_and_batches_agree() -> None:
    x = torch.tensor([[1.0, 5.0], [3.0, 5.0], [0.0, 5.0], [2.0, 5.0]])
    y = torch.tensor([True, True, False, False])
    # column 0: means 2 and 1, variances 2 and 2 -> pooled sd sqrt(2); column 1 constant -> 0.
    d = mean_difference(x, y)
    assert d[0].item() == pytest.approx(1 / 2**0.5) and d[1].item() == 0.0
    xs, ys = _data(300, seed=1)
    whole = mean_difference(xs, ys)
    parts = mean_difference_batched((xs[i : i + 70], ys[i : i + 70]) for i in range(0, 300, 70))
    assert torch.allclose(whole, parts, rtol=1e-9)
    assert set(whole.argsort(descending=True)[:2].tolist()) == {1, 2}  # the informative two


def test_a_column_constant_up_to_rounding_gets_weight_zero() -> None:
    # Rounding noise on a constant column once drew a weight of ~1e31 (it was divided by its
    # own tiny std); now it is treated as constant.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 3, generator=g, dtype=torch.float64)
    x[:, 2] = 0.3 + 1e-12 * torch.randn(300, generator=g, dtype=torch.float64)
    y = x[:, 0] > 0
    probe = LogisticProbe().fit(x, y)
    assert probe.coef_[2] == 0
    assert probe.coef_.abs().max() < 1e3
    assert probe.score(x, y) > 0.95
