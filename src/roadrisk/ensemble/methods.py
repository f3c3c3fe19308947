"""Blending methods: pure, deterministic functions of the out-of-fold matrix and the target.

``P`` has one row per train row and one column per member (its out-of-fold predictions, already in
[0, 1]); ``y`` is the target. Each method returns a ``Blend``: one weight per column and an
intercept. Nothing here reads files or knows about runs, so each method is tested on numbers alone.

Ties go to the lowest column index. The caller puts the columns in a stable order first
(command.py sorts members by run id), which makes a blend independent of the order in which its
members were named.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from ..folds import clip_risk, rmse

DEFAULT_STEPS = 100  # Caruana's selection rounds, and the most hill-climbing rounds
HILL_GRID = np.round(np.arange(1, 51) * 0.01, 2)  # blend weights 0.01 .. 0.50 tried for each member
HILL_TOLERANCE = 1e-7  # RMSE a hill-climbing round must gain to be kept
# Ridge's penalty per train row, so the fits on K-1 folds (nested score) are as strong as the full one.
# Small enough to cost nothing measurable in RMSE; there only to make the solution unique.
RIDGE_ALPHA_PER_ROW = 1e-6
_TIE = 1e-12  # relative: losses this close are a tie (duplicate members differ only in rounding)


@dataclass(frozen=True)
class Blend:
    weights: np.ndarray  # one per member (column of P)
    intercept: float = 0.0

    def predict(self, P: np.ndarray) -> np.ndarray:
        """The blended predictions, clipped to [0, 1] like every prediction roadrisk scores."""
        return clip_risk(np.asarray(P, float) @ self.weights + self.intercept)


@dataclass(frozen=True)
class NestedScore:
    rmse: float  # over every row, each predicted by weights fitted without its fold
    fold_rmse: list[float]
    predictions: np.ndarray


def _first_min(values: np.ndarray) -> int:
    """Index of the minimum; among values within a hair of it, the lowest index (a stable tie-break)."""
    lowest = values.min()
    return int(np.flatnonzero(values <= lowest + abs(lowest) * _TIE)[0])


def _inputs(P, y) -> tuple[np.ndarray, np.ndarray]:
    P, y = np.asarray(P, float), np.asarray(y, float)
    if P.ndim != 2 or P.shape[0] != y.shape[0] or P.shape[1] < 1 or P.shape[0] < 1:
        raise ValueError(f"P must be (rows, members) with rows == len(y); got P {P.shape}, y {y.shape}")
    return P, y


def caruana(P, y, steps: int = DEFAULT_STEPS, init_best: int = 0) -> Blend:
    """Caruana's ensemble selection with replacement.

    Each step adds the member that most lowers the RMSE of the running average (the same member may
    be added again: that is how weights other than 1/k arise); the weights are each member's pick
    count over the number of steps kept. Steps run to ``steps``, then the ensemble is cut back to the
    step with the lowest loss, so it is never worse than the best single member (step 1 picks that
    one). ``init_best`` starts from the n best single members, each picked once (Caruana's sorted
    initialisation; 0 and 1 are the same thing, as the first step picks the best member anyway).
    """
    P, y = _inputs(P, y)
    n, m = P.shape
    errors = y[:, None] - P  # each member's residual
    member_mse = np.mean(errors**2, axis=0)
    residual = np.zeros(n)  # y minus the running average
    picks: list[int] = []
    losses: list[float] = []

    def add(member: int) -> None:
        nonlocal residual
        s = len(picks)
        residual = (s * residual + errors[:, member]) / (s + 1)
        picks.append(member)
        losses.append(float(np.mean(residual**2)))

    for member in np.argsort(member_mse, kind="stable")[:init_best]:
        add(int(member))
    while len(picks) < max(steps, init_best):
        s = len(picks)
        if s == 0:
            candidate_mse = member_mse
        else:
            # The average with member j added has residual (s*r + e_j)/(s+1); its MSE for every j
            # at once from one matrix-vector product instead of an (n, m) temporary per step.
            cross = residual @ errors / n
            candidate_mse = (s * s * np.mean(residual**2) + 2 * s * cross + member_mse) / (s + 1) ** 2
        add(_first_min(candidate_mse))
    first_free = max(init_best, 1) - 1  # the initial picks are kept whatever they cost
    kept = first_free + _first_min(np.array(losses[first_free:])) + 1
    counts = np.bincount(picks[:kept], minlength=m)
    return Blend(counts / kept, 0.0)


def hill(P, y, steps: int = DEFAULT_STEPS, allow_negative: bool = False, grid: np.ndarray = HILL_GRID,
         tolerance: float = HILL_TOLERANCE) -> Blend:
    """Hill climbing over a weight grid, from the best single member.

    Each round tries every member j with every weight w of the grid in ``(1 - w) * current + w * P_j``
    and keeps the best, until no candidate lowers the RMSE by more than ``tolerance`` (or ``steps``
    rounds). Weights always sum to 1; they stay non-negative unless ``allow_negative`` adds the
    negative grid (then a member can be subtracted, which only pays when members share errors).

    The search scores the unclipped blend, which is exact for non-negative weights (a convex blend of
    [0, 1] predictions stays in [0, 1]); with negative weights clipping can only lower the error,
    so a round kept is never a round lost.
    """
    P, y = _inputs(P, y)
    n, m = P.shape
    grid = np.asarray(grid, float)
    if allow_negative:
        grid = np.concatenate([-grid[::-1], grid])
    errors = y[:, None] - P
    member_mse = np.mean(errors**2, axis=0)
    start = _first_min(member_mse)
    weights = np.zeros(m)
    weights[start] = 1.0
    residual = errors[:, start].copy()
    loss = float(member_mse[start])
    for _ in range(steps):
        # Blending member j in at weight w leaves the residual r + w*(e_j - r): its MSE is a quadratic
        # in w whose coefficients need one matrix-vector product for all members.
        own = float(np.mean(residual**2))
        cross = residual @ errors / n
        linear = 2.0 * (cross - own)
        quadratic = member_mse - 2.0 * cross + own
        candidates = own + np.outer(linear, grid) + np.outer(quadratic, grid**2)  # (member, weight)
        best = _first_min(candidates.ravel())  # member-major: a tie goes to the lower member index
        member, w = divmod(best, len(grid))
        new_loss = float(candidates.ravel()[best])
        if np.sqrt(max(loss, 0.0)) - np.sqrt(max(new_loss, 0.0)) <= tolerance:
            break
        w = grid[w]
        weights = (1.0 - w) * weights
        weights[member] += w
        residual = (1.0 - w) * residual + w * errors[:, member]
        loss = float(np.mean(residual**2))
    return Blend(weights, 0.0)


def ridge(P, y, alpha_per_row: float = RIDGE_ALPHA_PER_ROW) -> Blend:
    """A linear stack: non-negative coefficients and a free intercept, by scikit-learn's Ridge.

    Ridge rather than ``LinearRegression(positive=True)``: members are nearly collinear (seeds of one
    model), and without a penalty the non-negative least-squares solution is not unique: two
    identical members get all-or-nothing weights depending on their order. The tiny penalty makes it
    unique (identical members share equally) and order-free; the tight tolerance makes lbfgs, the
    only solver Ridge has for ``positive=True``, land on it rather than near it.
    """
    from sklearn.linear_model import Ridge

    P, y = _inputs(P, y)
    model = Ridge(alpha=alpha_per_row * len(y), positive=True, tol=1e-10, max_iter=100_000)
    model.fit(P, y)
    return Blend(np.asarray(model.coef_, float), float(model.intercept_))


Fitter = Callable[[np.ndarray, np.ndarray], Blend]


def fitter(method: str, steps: int | None = None, allow_negative: bool = False) -> Fitter:
    """The method with its settings bound: a function of (P, y) alone, as nested_score needs."""
    if method == "caruana":
        return partial(caruana, steps=steps or DEFAULT_STEPS)
    if method == "hill":
        return partial(hill, steps=steps or DEFAULT_STEPS, allow_negative=allow_negative)
    if method == "ridge":
        return ridge
    raise ValueError(f"unknown method {method!r}")


def nested_score(method: Fitter, P, y, fold_of_row) -> NestedScore:
    """The honest score: for each fold, weights fitted on the other folds predict it; the RMSE is taken
    over all rows of those held-out predictions. The in-sample score reuses the rows the weights were
    chosen on and is optimistic by however much the weights fitted the noise."""
    P, y = _inputs(P, y)
    fold_of_row = np.asarray(fold_of_row)
    folds = np.unique(fold_of_row)
    if len(fold_of_row) != len(y) or len(folds) < 2:
        raise ValueError("fold_of_row needs one fold per row and at least two folds")
    predictions = np.empty(len(y))
    fold_rmse = []
    for fold in folds:
        held = fold_of_row == fold
        blend = method(P[~held], y[~held])
        predictions[held] = blend.predict(P[held])
        fold_rmse.append(rmse(y[held], predictions[held]))
    return NestedScore(rmse(y, predictions), fold_rmse, predictions)
