"""The worker's small Lasso agrees with scikit-learn's (a dev-only dependency)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.scoring.strategies.lasso import alpha_max, lasso

sklearn_linear = pytest.importorskip("sklearn.linear_model")


def problem(seed: int, samples: int, features: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = (rng.random((samples, features)) < 0.5).astype(np.float64)
    truth = np.where(rng.random(features) < 0.3, rng.exponential(3.0, features), 0.0)
    return x, x @ truth + 0.1 * rng.standard_normal(samples)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    samples=st.integers(8, 64),
    features=st.integers(1, 40),
    ratio=st.sampled_from([0.001, 0.01, 0.1, 0.5]),
    positive=st.booleans(),
)
def test_weights_and_intercept_agree_with_scikit_learn(
    seed: int, samples: int, features: int, ratio: float, positive: bool
) -> None:
    x, y = problem(seed, samples, features)
    alpha = ratio * alpha_max(x, y)
    if alpha == 0:
        return
    ours, intercept = lasso(x, y, alpha, positive=positive, tol=1e-12, max_iter=100_000)
    theirs = sklearn_linear.Lasso(alpha=alpha, positive=positive, tol=1e-12, max_iter=100_000).fit(
        x, y
    )
    assert np.allclose(ours, theirs.coef_, atol=1e-6)
    assert intercept == pytest.approx(theirs.intercept_, abs=1e-6)


def test_alpha_max_zeroes_every_weight() -> None:
    x, y = problem(1, 32, 10)
    weights, _ = lasso(x, y, alpha_max(x, y))
    assert not weights.any()


def test_a_constant_feature_gets_no_weight() -> None:
    x, y = problem(2, 16, 3)
    x[:, 1] = 1.0
    assert lasso(x, y, 0.01)[0][1] == 0.0


def test_at_alpha_zero_it_is_least_squares() -> None:
    x, y = problem(3, 40, 6)
    expected = np.linalg.lstsq(np.column_stack([x, np.ones(40)]), y, rcond=None)[0][:6]
    assert np.allclose(lasso(x, y, 0.0, tol=1e-14, max_iter=100_000)[0], expected, atol=1e-8)
