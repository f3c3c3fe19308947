"""Stacking: a level-2 model on the members' out-of-fold predictions plus the raw features.

Pure functions of numbers and frames, like methods.py: ``P`` (rows x members, the OOF matrix), ``X``
(the raw feature columns of the same rows, schema dtypes) and ``y``. Nothing here reads files.

Fitted and scored with nested CV on the members' own folds: for each fold k, a level-2 model is fitted
on the other folds' rows and predicts fold k. Those held-out predictions are the stack's OOF (what
oof.csv holds and what it is ranked by); each row is predicted by a model that never saw it. The test
prediction is the mean of those same K fold models on the members' test predictions plus the test
features, so the submission comes from exactly the models the nested score measured (a refit on all
rows would be a (K+1)-th model that nobody scored, and would cost one more fit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import schema
from ..folds import clip_risk, rmse
from .methods import NestedScore

LEVEL2_SEED = 0  # the level-2 models' own seed: fixed, so a stack is reproducible whatever its members' seeds
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 3, 13))  # RidgeCV's grid, chosen by leave-one-out

# Small, regularised trees: the level-2 model sees a few member columns and 12 raw features, and the
# members already did the hard work. Fitted to the residual over the members' mean (see _TreeStack).
HGB_PARAMS = {"max_iter": 200, "learning_rate": 0.05, "max_leaf_nodes": 15, "min_samples_leaf": 50,
              "l2_regularization": 1.0, "early_stopping": False}
XGB_PARAMS = {"n_estimators": 300, "learning_rate": 0.05, "max_depth": 3, "min_child_weight": 20,
              "subsample": 0.8, "colsample_bytree": 0.8, "reg_lambda": 1.0, "tree_method": "hist"}

MEMBER_PREFIX = "member_"
ROWS_PER_THREAD = 50_000


def level2_threads(rows: int, usable: int) -> int:
    """One thread per 50,000 rows, at most the usable CPUs. A level-2 fit on a few thousand rows is too small
    for threads to pay, and on a busy host OpenMP's spinning threads made it slower, not faster (one hgb
    fit on 2,000 rows of a loaded 2-core machine: 2.6 s on one thread, 20.9 s on two)."""
    return max(1, min(int(usable), rows // ROWS_PER_THREAD))


def design(P, X: pd.DataFrame) -> pd.DataFrame:
    """The level-2 inputs: one column per member (``member_0`` ...), then the raw features.

    Booleans become 0/1 integers (every level-2 library reads those); categories keep their schema
    dtype, which ridge one-hot encodes and the tree libraries split on natively."""
    P = np.asarray(P, float)
    if P.ndim != 2 or P.shape[0] != len(X):
        raise ValueError(f"P must be (rows, members) with one row per row of X; got P {P.shape}, X {len(X)} rows")
    frame = pd.DataFrame(P, columns=[f"{MEMBER_PREFIX}{j}" for j in range(P.shape[1])], index=X.index)
    raw = X[list(schema.FEATURE_NAMES)].copy()
    for name in schema.BOOL_NAMES:
        raw[name] = raw[name].astype("int8")
    return pd.concat([frame, raw], axis=1).reset_index(drop=True)


def _ridge(threads: int):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    categories = [c for c in schema.FEATURE_COLUMNS if c.kind == "category"]
    encode = ColumnTransformer(
        [("onehot", OneHotEncoder(categories=[list(c.values) for c in categories], handle_unknown="ignore",
                                  sparse_output=False), [c.name for c in categories])],
        remainder=StandardScaler())  # the members' columns and the numeric features, on one scale for the penalty
    return make_pipeline(encode, RidgeCV(alphas=RIDGE_ALPHAS))


class _TreeStack:
    """A tree model fitted to the residual over the members' mean, which it predicts back on top.

    The members' mean is already a good prediction; trees asked to rebuild it from binned member
    columns (255 bins) lose resolution on exactly the thing that matters, while trees that learn the
    correction only need to find where the members are wrong. A residual of 0 everywhere is the mean."""

    def __init__(self, estimator, threads: int):
        self.estimator = estimator
        self.threads = threads

    def _limited(self):
        # OpenMP would otherwise take every CPU in the affinity mask, past a --cpus quota; on a busy
        # host its spinning threads cost more than they give on a fit this small.
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=self.threads, user_api="openmp")

    @staticmethod
    def _base(D: pd.DataFrame) -> np.ndarray:
        return D[[c for c in D.columns if c.startswith(MEMBER_PREFIX)]].to_numpy(float).mean(axis=1)

    def fit(self, D: pd.DataFrame, y):
        with self._limited():
            self.estimator.fit(D, np.asarray(y, float) - self._base(D))
        return self

    def predict(self, D: pd.DataFrame) -> np.ndarray:
        with self._limited():
            return self._base(D) + np.asarray(self.estimator.predict(D), float).reshape(-1)


def _hgb(threads: int):
    from sklearn.ensemble import HistGradientBoostingRegressor

    return _TreeStack(HistGradientBoostingRegressor(categorical_features="from_dtype", random_state=LEVEL2_SEED,
                                                    **HGB_PARAMS), threads)


def _xgb(threads: int):
    from xgboost import XGBRegressor

    return _TreeStack(XGBRegressor(enable_categorical=True, n_jobs=threads, random_state=LEVEL2_SEED, **XGB_PARAMS),
                      threads)


_BUILDERS = {"ridge": _ridge, "hgb": _hgb, "xgb": _xgb}


def build_model(name: str, threads: int = 1):
    """A fresh, unfitted level-2 model: anything with fit(D, y) and predict(D)."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown stack model {name!r}")
    return _BUILDERS[name](threads)


def settings(name: str) -> dict:
    """What the level-2 model was, for the record."""
    if name == "ridge":
        return {"model": "ridge", "estimator": "RidgeCV on one-hot categories and standardised numbers",
                "alphas": list(RIDGE_ALPHAS), "seed": None}
    params = HGB_PARAMS if name == "hgb" else XGB_PARAMS
    estimator = "HistGradientBoostingRegressor" if name == "hgb" else "XGBRegressor"
    return {"model": name, "estimator": f"{estimator} on the residual over the members' mean, native categories",
            "params": dict(params), "seed": LEVEL2_SEED}


@dataclass
class StackResult:
    nested: NestedScore  # the held-out predictions of the K fold models: the stack's OOF
    in_sample_rmse: float  # the K fold models' mean on every train row (each row seen by K-1 of them): optimistic
    test_pred: np.ndarray  # the K fold models' mean on the test rows
    fold_details: list[dict] = field(default_factory=list)  # per fold: rows, RMSE, ridge's alpha


def _detail(model) -> dict:
    """What a fitted level-2 model chose, where it chose something (ridge's penalty)."""
    final = getattr(model, "steps", [(None, None)])[-1][1]
    alpha = getattr(final, "alpha_", None)
    return {} if alpha is None else {"alpha": float(alpha)}


def nested_stack(make_model: Callable[[], object], D: pd.DataFrame, y, fold_of_row,
                 D_test: pd.DataFrame) -> StackResult:
    """Fit ``make_model()`` once per fold on the other folds' rows of ``D``; its predictions of the held-out
    fold are the stack's OOF, and the mean of the K models predicts ``D_test``. All predictions clipped."""
    y = np.asarray(y, float)
    fold_of_row = np.asarray(fold_of_row)
    folds = np.unique(fold_of_row)
    if len(D) != len(y) or len(fold_of_row) != len(y) or len(folds) < 2:
        raise ValueError("D, y and fold_of_row need one entry per row, and at least two folds")
    if list(D_test.columns) != list(D.columns):
        raise ValueError("D_test must have the columns of D, in the same order")
    oof = np.empty(len(y))
    in_sample = np.zeros(len(y))
    test = np.zeros(len(D_test))
    fold_rmse, details = [], []
    for fold in folds:
        held = fold_of_row == fold
        model = make_model().fit(D[~held], y[~held])
        oof[held] = clip_risk(model.predict(D[held]))
        in_sample += clip_risk(model.predict(D)) / len(folds)
        test += clip_risk(model.predict(D_test)) / len(folds)
        fold_rmse.append(rmse(y[held], oof[held]))
        details.append({"fold": int(fold), "rows_fit": int((~held).sum()), "rows_held": int(held.sum()),
                        "rmse": round(fold_rmse[-1], 6), **_detail(model)})
    return StackResult(NestedScore(rmse(y, oof), fold_rmse, oof), rmse(y, in_sample), clip_risk(test), details)
