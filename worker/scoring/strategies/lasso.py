"""A small Lasso: cyclic coordinate descent, the objective scikit-learn's ``Lasso`` minimises.

    (1 / (2 n)) * ||y - X w - b||^2 + alpha * ||w||_1,  b unpenalised, optionally w >= 0

A few dozen samples and at most a few hundred features per fit: plain numpy is fast
enough, and the worker needs no scikit-learn (tests/unit/test_lasso.py shows the two
agree).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def alpha_max(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> float:
    """The smallest alpha at which every weight is 0 (with an intercept)."""
    if x.size == 0:
        return 0.0
    xc, yc = x - x.mean(axis=0), y - y.mean()
    return float(np.max(np.abs(xc.T @ yc))) / len(y)


def lasso(
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    alpha: float,
    *,
    positive: bool = False,
    tol: float = 1e-8,
    max_iter: int = 10_000,
) -> tuple[npt.NDArray[np.float64], float]:
    """(weights, intercept) minimising the objective above; ``x`` is samples x features."""
    n, features = x.shape
    x_mean, y_mean = x.mean(axis=0), float(y.mean())
    xc = x - x_mean
    residual = y - y_mean
    squares = (xc**2).sum(axis=0) / n
    w = np.zeros(features, dtype=np.float64)
    scale = max(float(np.max(np.abs(residual))), 1e-300)
    for _ in range(max_iter):
        largest_step = 0.0
        for j in range(features):
            if squares[j] == 0.0:
                continue  # a feature that never varies carries nothing
            old = w[j]
            rho = float(xc[:, j] @ residual) / n + squares[j] * old
            new = np.sign(rho) * max(abs(rho) - alpha, 0.0) / squares[j]
            if positive and new < 0.0:
                new = 0.0
            if new != old:
                residual -= xc[:, j] * (new - old)
                w[j] = new
                largest_step = max(largest_step, abs(new - old))
        if largest_step <= tol * scale:
            break
    return w, y_mean - float(x_mean @ w)
