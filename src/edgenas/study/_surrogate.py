"""A small Gaussian-process surrogate of accuracy for the ``guided`` strategy.

Fitted to at most a few hundred completed candidates, it is cheap (a Cholesky factorisation of
an n×n matrix per hyperparameter setting) and gives a mean and an uncertainty for thousands of
proposals in milliseconds. Two choices keep it robust on any space and any accuracy scale:

* targets are rank-transformed to normal scores (as HEBO does), so collapsed architectures
  (10% accuracy) do not dominate the fit, and the scale of the values does not matter;
* the kernel's length scale and the noise are chosen by the marginal likelihood over a small
  grid, so nothing is tuned to a particular benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_solve, cholesky, solve_triangular
from scipy.special import ndtr, ndtri
from scipy.stats import rankdata

__all__ = ["GaussianProcess", "expected_improvement", "normal_scores"]

# Inverse squared length scales, relative to the number of features that differ between two
# neighbours; and noise variances relative to the (unit) signal variance.
_THETAS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
_NOISES = (1e-4, 1e-2, 1e-1, 0.3)


def normal_scores(values: np.ndarray) -> np.ndarray:
    """Ranks mapped to standard-normal quantiles (ties share their mean rank)."""
    values = np.asarray(values, dtype=float)
    return np.asarray(ndtri((rankdata(values) - 0.5) / len(values)))


@dataclass
class GaussianProcess:
    """Squared-exponential kernel on feature vectors, hyperparameters by marginal likelihood."""

    theta: float = 0.2
    noise: float = 1e-2

    def fit(self, x: np.ndarray, y: np.ndarray, search: bool = True) -> GaussianProcess:
        """Fit to rows ``x`` and targets ``y``; ``search=False`` keeps theta and noise."""
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        self._mean = float(y.mean())
        self._scale = float(y.std()) or 1.0
        z = (y - self._mean) / self._scale
        d2 = _sq_dists(x, x)
        best = None
        for theta in _THETAS if search else (self.theta,):
            k = np.exp(-0.5 * theta * d2)
            for noise in _NOISES if search else (self.noise,):
                try:
                    chol = cholesky(k + (noise + 1e-9) * np.eye(len(x)), lower=True)
                except np.linalg.LinAlgError:
                    continue
                alpha = cho_solve((chol, True), z)
                # log marginal likelihood, up to a constant
                lml = -0.5 * float(z @ alpha) - float(np.log(np.diag(chol)).sum())
                if best is None or lml > best[0]:
                    best = (lml, theta, noise, chol, alpha)
        assert best is not None  # the largest noise always factorises
        _, self.theta, self.noise, self._chol, self._alpha = best
        self._x = x
        return self

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation at each row of ``x``, in the targets' units."""
        ks = np.exp(-0.5 * self.theta * _sq_dists(np.asarray(x, dtype=float), self._x))
        mean = ks @ self._alpha
        v = solve_triangular(self._chol, ks.T, lower=True)
        var = np.clip(1.0 - (v * v).sum(axis=0), 1e-12, None)
        return mean * self._scale + self._mean, np.sqrt(var) * self._scale


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    """Expected amount by which each point beats ``best`` (maximisation)."""
    z = (mean - best) / std
    return np.asarray((mean - best) * ndtr(z) + std * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi))


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.clip(d2, 0.0, None)
