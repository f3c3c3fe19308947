"""The model registry: adding a model is adding one ``ModelSpec`` entry.

Each spec knows how to build its estimator and which parameters fit a profile, a device and a
recipe (``recipes.py``). The defaults live in one function per model; ``--param`` overrides are
merged on top and the final values are what ``run.json`` records.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import RoadriskError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    uses_torch: bool
    defaults: Callable[[str, str, str], dict]  # (profile, device, recipe) -> parameters
    build: Callable[[dict, str, int, int], Any]  # (params, device, seed, threads) -> estimator
    wants_validation: bool  # fit(X, y, X_val=..., y_val=...) like pytabkit
    # (max epochs or None for no cap, early-stopping patience or None) for these parameters; None: no epochs
    epoch_plan: Callable[[dict], tuple[int | None, int | None]] | None = None
    # Whether --seed changes anything with these parameters (False: runs that differ only in it are one run)
    seed_matters: Callable[[dict], bool] = lambda params: True
    # What the parameters roadrisk knows accept, for libraries that store their arguments unchecked
    # (pytabkit: a bad one surfaced only inside the first fold's fit). Empty: the estimator checks itself.
    accepts: dict[str, Accepts] = field(default_factory=dict)


@dataclass(frozen=True)
class Accepts:
    """The type and range one parameter accepts; None (the library's default) always passes."""

    kind: type  # int, float, bool or str
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # (low, ... rather than [low, ...
    words: tuple[str, ...] = ()  # strings accepted as well as (or, for str, instead of) a number
    per_group: bool = False  # a dict of such values is accepted too (RealMLP's lr per parameter group)

    def allows(self, value) -> bool:
        if value is None:
            return True
        if isinstance(value, dict):
            return self.per_group and all(self.allows(v) for v in value.values())
        if isinstance(value, str):
            return value in self.words
        if self.kind is bool or isinstance(value, bool):  # True is an int to Python, not an epoch count
            return self.kind is bool and isinstance(value, bool)
        if not isinstance(value, (int, np.integer) if self.kind is int else (int, float, np.number)):
            return False
        number = float(value)
        if not math.isfinite(number):
            return False
        if self.low is not None and (number <= self.low if self.low_open else number < self.low):
            return False
        return self.high is None or number <= self.high

    def describe(self) -> str:
        words = " or ".join(repr(w) for w in self.words)
        if self.kind is str:
            return f"one of {', '.join(repr(w) for w in self.words)}"
        if self.kind is bool:
            return "True or False"
        name = {int: "an int", float: "a float"}[self.kind]
        if self.low is not None or self.high is not None:
            low = "-inf" if self.low is None else f"{self.low:g}"
            high = "inf)" if self.high is None else f"{self.high:g}]"
            name += f" in the range {'(' if self.low_open or self.low is None else '['}{low}, {high}"
        return f"{name} or {words}" if words else name


def validate_params(spec: ModelSpec, params: dict) -> None:
    """Refuse a parameter value the estimator would reject, before any fold starts: scikit-learn's own
    validation on the built estimator, or the spec's table for pytabkit. Raises RoadriskError (exit 2)."""
    for key, accepts in spec.accepts.items():
        if key in params and not accepts.allows(params[key]):
            raise RoadriskError(f"error: --param {key}={params[key]!r}: {spec.name} accepts {accepts.describe()}. "
                                f"Fix: pass --param {key}=VALUE with such a value")
    if spec.accepts:
        return
    estimator = spec.build(params, "cpu", 0, 1)
    check = getattr(estimator, "_validate_params", None)
    if check is None:
        return
    from sklearn.utils._param_validation import InvalidParameterError

    try:
        check()
    except InvalidParameterError as exc:
        # "The 'max_iter' parameter of HistGradientBoostingRegressor must be an int in the range [1, inf).
        # Got 'abc' instead." names the key and the range; say it as the flag the user typed.
        message = str(exc).strip()
        found = re.match(r"The '(\w+)' parameter of \w+ must be (.+)\. Got .* instead\.$", message, re.DOTALL)
        if found is None or found.group(1) not in params:
            raise RoadriskError(f"error: --param: {message} Fix: pass a value in that range") from None
        key, what = found.groups()
        raise RoadriskError(f"error: --param {key}={params[key]!r}: {spec.name} accepts {what}. "
                            f"Fix: pass --param {key}=VALUE with such a value") from None


# Parameters roadrisk sets itself, from its own flags: never through --param.
RESERVED_PARAMS = frozenset({"device", "random_state", "n_threads", "verbosity", "categorical_features"})


def settable_params(spec: ModelSpec) -> set[str]:
    """The parameter names --param (and a sweep's params table) may set for this model."""
    return set(spec.build(spec.defaults("smoke", "cpu", "fast"), "cpu", 0, 1).get_params()) - RESERVED_PARAMS


def validate_overrides(spec: ModelSpec, overrides: dict, flag: str = "--param") -> None:
    """Unknown or roadrisk-owned names fail here, as one line, before any estimator is built with them."""
    from .errors import RoadriskError

    settable = None
    for key in sorted(overrides):
        if key in RESERVED_PARAMS:
            raise RoadriskError(f"error: {flag} {key}: set by roadrisk itself. Fix: use --device, --seed, or let "
                                "the trainer choose threads from the CPUs it may use")
        settable = settable if settable is not None else settable_params(spec)
        if key not in settable:
            raise RoadriskError(f"error: {flag} {key}: not a parameter of {spec.name}. Fix: use one of "
                                f"{', '.join(sorted(settable))}")


# ---------------------------------------------------------------- TabM (the reference recipe)

# The reference notebook's TabM_D_Regressor, all 15 parameters it sets; everything else is pytabkit's default
# (no epoch cap: training stops after 16 epochs without a better validation RMSE).
TABM_REFERENCE = dict(
    arch_type="tabm-mini", tabm_k=32, n_blocks=5, d_block=432, dropout=0.0, num_emb_type="pwl",
    d_embedding=24, num_emb_n_bins=112, lr=0.000624068703424289, weight_decay=0.0019090968357478807,
    batch_size="auto", patience=16, gradient_clipping_norm=1.0, share_training_batches=False, allow_amp=False,
)


def _tabm_defaults(profile: str, device: str, recipe: str = "fast") -> dict:
    params = dict(TABM_REFERENCE)
    if recipe == "reference":
        return params
    if profile == "full":
        params["n_epochs"] = 20  # the anchor run reached 0.04971 against a 0.04969 floor in 20 epochs
    else:
        # The reference architecture costs ~50 s per epoch per 27k rows on 2 CPU cores: far too slow for
        # a minute-long run. A narrower TabM keeps the model family while fitting the time box.
        # Smoke folds hold ~1k rows (4 steps an epoch), so they need many cheap epochs and a larger step.
        params.update(n_blocks=2, d_block=128, tabm_k=8, num_emb_n_bins=32, batch_size=256,
                      n_epochs=30 if profile == "smoke" else 6, lr=0.003 if profile == "smoke" else 0.002)
    if device == "cuda":
        # Anchors on an H100: AMP + batch 2048 takes 3.2 -> 1.3 s/epoch at unchanged RMSE.
        params.update(allow_amp=True, batch_size=2048)
    return params


def _tabm_epochs(params: dict) -> tuple[int | None, int | None]:
    return params.get("n_epochs"), params.get("patience", 16)  # pytabkit's TabM: no cap, patience 16


_COUNT = Accepts(int, low=1)
_POSITIVE = Accepts(float, low=0, low_open=True)
_NON_NEGATIVE = Accepts(float, low=0)
_FLAG = Accepts(bool)
# Shared by both pytabkit models: their training loop's settings.
_PYTABKIT_ACCEPTS = {"n_epochs": _COUNT, "batch_size": _COUNT, "lr": _POSITIVE}
_TABM_ACCEPTS = {
    **_PYTABKIT_ACCEPTS,
    "batch_size": Accepts(int, low=1, words=("auto",)),
    "arch_type": Accepts(str, words=("tabm", "tabm-mini", "tabm-normal", "tabm-mini-normal", "tabm-packed",
                                     "plain")),
    "tabm_k": _COUNT, "n_blocks": Accepts(int, low=1, words=("auto",)), "d_block": _COUNT, "d_embedding": _COUNT,
    "num_emb_n_bins": Accepts(int, low=2), "dropout": Accepts(float, low=0, high=1), "weight_decay": _NON_NEGATIVE,
    "patience": _COUNT, "gradient_clipping_norm": Accepts(float, low=0, low_open=True, words=("none",)),
    "share_training_batches": _FLAG, "allow_amp": _FLAG,
}
_REALMLP_ACCEPTS = {
    **_PYTABKIT_ACCEPTS,
    "lr": Accepts(float, low=0, low_open=True, per_group=True),
    "hidden_width": _COUNT, "n_hidden_layers": _COUNT, "p_drop": Accepts(float, low=0, high=1), "wd": _NON_NEGATIVE,
    "use_early_stopping": _FLAG,
}


def _build_tabm(params: dict, device: str, seed: int, threads: int):
    from pytabkit import TabM_D_Regressor

    return TabM_D_Regressor(device=device, random_state=seed, n_threads=threads, verbosity=0, **params)


# ---------------------------------------------------------------- RealMLP

def _realmlp_defaults(profile: str, device: str, recipe: str = "fast") -> dict:
    if recipe == "reference":  # the reference has no RealMLP: pytabkit's published RealMLP-TD defaults, untouched
        return {}
    # Smoke folds hold ~1k rows: a few optimiser steps per epoch, so it needs more epochs to learn at all.
    params: dict = {"n_epochs": {"smoke": 30, "quick": 10}.get(profile, 16), "batch_size": 256}
    if device in ("cuda", "mps"):
        # Batch 256 is launch-bound on a GPU (12.3 s/epoch on an H100); 2048 takes 1.9 s/epoch.
        params["batch_size"] = 2048
    elif profile == "full":
        params["batch_size"] = 1024
    return params


def _realmlp_epochs(params: dict) -> tuple[int | None, int | None]:
    return params.get("n_epochs", 256), None  # RealMLP trains every epoch and keeps the best one


def _build_realmlp(params: dict, device: str, seed: int, threads: int):
    from pytabkit import RealMLP_TD_Regressor

    return RealMLP_TD_Regressor(device=device, random_state=seed, n_threads=threads, verbosity=0, **params)


# ---------------------------------------------------------------- HistGradientBoosting

def _hgb_defaults(profile: str, device: str, recipe: str = "fast") -> dict:
    # The same in both recipes: a CPU model has no device speed-ups to drop.
    if profile != "full":
        # smoke/quick are the embedded data, where the formula is the truth: shallow, well-regularised trees,
        # since the signal is a few additive steps and deep trees chase noise (default settings land 2% above
        # the floor on the quick data, these 0.4%). Smoke folds hold ~1k rows, where leaves of 100 rows cannot
        # resolve the five steps. Fixed rounds: deterministic, so runs differing only in --seed are one run.
        return dict(max_iter=200, learning_rate=0.05, max_leaf_nodes=7,
                    min_samples_leaf=20 if profile == "smoke" else 100, early_stopping=False)
    # full (what --data-dir runs): chosen on 4,000 rows of the real development sample (5-fold KFold, cv_seed
    # 42, fast-recipe features, paired on the same folds), where the embedded data's settings (7 leaves,
    # min_samples_leaf 100, 300 rounds) scored OOF RMSE 0.05856 raw / 0.05786 residual, and these 0.05791 / 0.05758.
    return dict(
        learning_rate=0.05,  # 0.1 was worse at 7 leaves: 0.05789 raw at its best round count, 0.05767 at 0.05
        max_leaf_nodes=7,  # shallow trees still: 15 leaves scored 0.05813 raw / 0.05771 residual
        # scikit-learn's own default. Leaves of 100 rows lose on real rows (0.05836 against 0.05767 at 150
        # fixed rounds, raw); 50 rows land between (0.05801).
        min_samples_leaf=20,
        # The right number of rounds grows with the rows (~100 on 3,200 real rows; a Kaggle fold's 414k rows
        # take far more), so it stops on 10% of the fold's *training* rows, never its validation rows, so the
        # OOF score stays honest. The split makes the seed matter. 2000 is a cap.
        max_iter=2000, early_stopping=True, validation_fraction=0.1, n_iter_no_change=20,
    )


def _hgb_seed_matters(params: dict) -> bool:
    """Without early stopping's validation split or feature subsampling, HistGradientBoosting is deterministic."""
    return params.get("early_stopping") not in (False, None) or params.get("max_features", 1.0) < 1.0


def _build_hgb(params: dict, device: str, seed: int, threads: int):
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(random_state=seed, categorical_features="from_dtype", **params)


# ---------------------------------------------------------------- gradient boosting: XGBoost, LightGBM, CatBoost
# The libraries themselves (boosting.py says why not pytabkit's wrappers). Defaults are for real rows, not
# the embedded generator (whose formula is the truth): the published S5E10 settings, measured on the
# real development sample (docs/devices.md, "Gradient boosting"). Each fit stops early on the fold's
# validation rows, so the round counts are caps. The same on every device and in both recipes.

def _rounds(profile: str, full: int) -> int:
    # smoke: seconds per fit (tests, image checks); quick: about a minute for the run.
    return {"smoke": 60, "quick": 600}.get(profile, full)


def _patience(profile: str) -> int:
    return 20 if profile == "smoke" else 100  # 100 rounds without a better validation RMSE: the usual setting


def _xgb_defaults(profile: str, device: str, recipe: str = "fast") -> dict:
    return dict(
        n_estimators=_rounds(profile, 2000),  # a cap: early stopping ends the fit (~500-900 rounds at lr 0.04)
        early_stopping_rounds=_patience(profile),
        learning_rate=0.1 if profile == "smoke" else 0.04,  # smoke: 60 rounds must still learn something
        max_depth=6,  # depth 4-8 wins on S5E10; 6 lets the formula's steps interact (curvature x lighting x ...)
        min_child_weight=5.0,  # a leaf needs a few rows' worth of hessian: the 0.01-grid target is noisy
        subsample=0.8,  # row and column sampling decorrelate the trees; 0.8 is the published setting
        colsample_bytree=0.8,
        reg_lambda=1.0,  # xgboost's own default L2, stated so the record shows it
        tree_method="hist",  # the histogram method: the fast one, and the one with categorical support
        max_bin=256,  # curvature is (almost) on a 0.01 grid: 256 bins keep every step
    )


def _lgbm_defaults(profile: str, device: str, recipe: str = "fast") -> dict:
    return dict(
        n_estimators=_rounds(profile, 2000),  # a cap: early stopping ends the fit
        early_stopping_rounds=_patience(profile),
        learning_rate=0.1 if profile == "smoke" else 0.04,  # smoke: 60 rounds must still learn something
        num_leaves=31,  # leaf-wise growth: 31 leaves is about depth 5, which the few strong effects need
        min_child_samples=20 if profile == "smoke" else 40,  # bigger leaves on real rows: the target is noisy
        subsample=0.8,  # bagging each round (subsample_freq=1) decorrelates the trees
        subsample_freq=1,
        colsample_bytree=0.8,
        reg_lambda=1.0,  # a little L2 on the leaf values
        max_bin=255,  # LightGBM's default, stated: curvature's 0.01 grid needs ~100 bins
        deterministic=True,  # the same seed and threads give the same model (run.json's promise)
        force_col_wise=True,  # chosen up front (it would probe both and log which): also part of determinism
    )


def _catboost_defaults(profile: str, device: str, recipe: str = "fast") -> dict:
    return dict(
        iterations=_rounds(profile, 3000),  # a cap: early stopping ends the fit
        early_stopping_rounds=_patience(profile),
        learning_rate=0.15 if profile == "smoke" else 0.05,  # smoke: 60 rounds must still learn something
        depth=6,  # symmetric trees: depth 6-8 is the S5E10 range; 6 fits a 4k-row fold without overfitting
        l2_leaf_reg=3.0,  # CatBoost's default L2, stated so the record shows it
        border_count=254,  # CatBoost's CPU default (the GPU's is 128): one binning on either device
    )


def _boosting_epochs(params: dict) -> tuple[int | None, int | None]:
    rounds = params.get("n_estimators", params.get("iterations"))
    return rounds, params.get("early_stopping_rounds")  # rounds: the console says "round", not "epoch"


def _build_boosting(model: str):
    def build(params: dict, device: str, seed: int, threads: int):
        from .boosting import build as build_regressor  # the libraries load on first use, never on import

        return build_regressor(model, params, device, seed, threads)

    return build


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(name="tabm", description="pytabkit TabM_D_Regressor (the seed's model)", uses_torch=True,
                  defaults=_tabm_defaults, build=_build_tabm, wants_validation=True, epoch_plan=_tabm_epochs,
                  accepts=_TABM_ACCEPTS),
        ModelSpec(name="realmlp", description="pytabkit RealMLP_TD_Regressor", uses_torch=True,
                  defaults=_realmlp_defaults, build=_build_realmlp, wants_validation=True,
                  epoch_plan=_realmlp_epochs, accepts=_REALMLP_ACCEPTS),
        ModelSpec(name="hgb", description="scikit-learn HistGradientBoostingRegressor (CPU baseline)",
                  uses_torch=False, defaults=_hgb_defaults, build=_build_hgb, wants_validation=False,
                  seed_matters=_hgb_seed_matters),
        ModelSpec(name="xgb", description="XGBoost XGBRegressor (hist; CUDA when chosen)", uses_torch=False,
                  defaults=_xgb_defaults, build=_build_boosting("xgb"), wants_validation=True,
                  epoch_plan=_boosting_epochs),
        ModelSpec(name="lgbm", description="LightGBM LGBMRegressor (CPU: the wheel has no CUDA build)",
                  uses_torch=False, defaults=_lgbm_defaults, build=_build_boosting("lgbm"), wants_validation=True,
                  epoch_plan=_boosting_epochs),
        ModelSpec(name="catboost", description="CatBoost CatBoostRegressor (task_type GPU when CUDA is chosen)",
                  uses_torch=False, defaults=_catboost_defaults, build=_build_boosting("catboost"),
                  wants_validation=True, epoch_plan=_boosting_epochs),
    )
}


def fit_predict(spec: ModelSpec, *, params: dict, device: str, seed: int, threads: int,
                x_train, y_train, x_val, y_val, x_test, timer, categorical: tuple[str, ...] = ()):
    """Fit on one fold and predict its validation rows and the test rows (timed by ``timer``).
    Returns (validation predictions, test predictions, the fitted estimator)."""
    model = spec.build(params, device, seed, threads)
    if device == "mps":  # MPS has no float64: hand the library float32 targets (features already are)
        y_train, y_val = np.asarray(y_train, np.float32), np.asarray(y_val, np.float32)
    # torch models get ``threads`` through n_threads; scikit-learn's OpenMP would otherwise take every
    # CPU in the affinity mask, oversubscribing a container limited by a cgroup quota (--cpus).
    with _openmp_threads(None if spec.uses_torch else threads):
        with timer("fit"):
            if spec.wants_validation:
                # The categorical columns are named, as the seed does (cat_col_names), not left to dtype sniffing.
                model.fit(x_train, y_train, X_val=x_val, y_val=y_val, cat_col_names=list(categorical) or None)
            else:
                model.fit(x_train, y_train)
        with timer("predict"):
            val_pred = np.asarray(model.predict(x_val), dtype=float).reshape(-1)
            test_pred = np.asarray(model.predict(x_test), dtype=float).reshape(-1)
    return val_pred, test_pred, model


def _openmp_threads(limit: int | None):
    if limit is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=limit, user_api="openmp")
