"""The process behind the original data: its mean risk and the best possible prediction.

docs/data.md: ``mu`` is a sum of five effects; the target is ``round(clip(mu + N(0, σ), 0, 1), 2)``.
The best predictor under squared error is the mean of that clipped normal, which is what
``expected_risk`` returns. Both are features of the model and ``expected_risk`` is also the
yardstick: its RMSE on the rows of a run is the floor no model can beat on generated data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtr

NOISE_SD = 0.05


def mean_risk(frame: pd.DataFrame) -> np.ndarray:
    """``mu`` of docs/data.md, from the raw columns (works on generated and real files)."""
    return (
        0.3 * frame["curvature"].to_numpy(dtype=float)
        + 0.2 * (frame["lighting"] == "night").to_numpy()
        + 0.1 * (frame["weather"] != "clear").to_numpy()
        + 0.2 * (frame["speed_limit"].to_numpy(dtype=float) >= 60)
        + 0.1 * (frame["num_reported_accidents"].to_numpy(dtype=float) > 2)
    )


def expected_risk(mu: np.ndarray, sd: float = NOISE_SD) -> np.ndarray:
    """E[clip(mu + N(0, sd), 0, 1)]: the mean of a normal clipped to [0, 1]."""
    mu = np.asarray(mu, dtype=float)
    a = -mu / sd
    b = (1.0 - mu) / sd
    pdf = lambda z: np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)  # noqa: E731
    return mu * (ndtr(b) - ndtr(a)) + sd * (pdf(a) - pdf(b)) + 1.0 - ndtr(b)


def floor_rmse(frame: pd.DataFrame, target: np.ndarray) -> float:
    """RMSE of the best possible predictor on these rows (meaningful on generated data only)."""
    best = expected_risk(mean_risk(frame))
    return float(np.sqrt(np.mean((np.asarray(target, dtype=float) - best) ** 2)))


def fit_noise_sd(mu: np.ndarray, y: np.ndarray) -> float:
    """The σ whose clipped-normal mean fits ``y`` best (least squares), from these rows alone: the residual
    target estimates it on each fold's training rows, so nothing of the validation rows leaks in."""
    from scipy.optimize import minimize_scalar

    mu, y = np.asarray(mu, dtype=float), np.asarray(y, dtype=float)
    loss = lambda sd: float(np.mean((y - expected_risk(mu, sd)) ** 2))  # noqa: E731
    return float(minimize_scalar(loss, bounds=(1e-3, 0.5), method="bounded", options={"xatol": 1e-6}).x)
