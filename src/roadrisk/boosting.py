"""XGBoost, LightGBM and CatBoost behind the one fit call the trainer makes of every model.

The libraries are used directly, not through pytabkit's ``XGB/LGBM/CatBoost_TD_Regressor``: their own
early stopping runs on the fold's validation rows, categoricals go in natively (pandas ``category``
columns, named), the device is one parameter each (``device="cuda"``, ``task_type="GPU"``), and their
callbacks report every round, which pytabkit's wrappers keep to themselves (no progress, no ETA).

What the trainer sees (``models.fit_predict``): ``fit(X, y, X_val=, y_val=, cat_col_names=)``,
``predict(X)``, and ``get_params()``, which it uses to check ``--param`` names and to record what was
used. roadrisk sets the device, the seed, the threads and the library's verbosity itself: they appear
under roadrisk's names (``device``, ``random_state``, ``n_threads``, ``verbosity``), which ``--param``
refuses, and never under the library's (``n_jobs``, ``thread_count``, ...), so no override can hand a
library every CPU of the host.

Imports are lazy: ``import roadrisk`` and a tabm/realmlp/hgb run never load these libraries, so a Mac
without the OpenMP runtime (which xgboost's and lightgbm's macOS wheels need) still trains those, and
choosing xgb or lgbm there gives one line with the fix.
"""

from __future__ import annotations

import importlib
import inspect
import re

from .epochs import EpochTracker, active_tracker
from .errors import RoadriskError

# The registry name, the module it imports, and what to install when it is missing.
LIBRARIES = {
    "xgb": ("xgboost", "xgboost-cpu on a Linux CPU machine, xgboost elsewhere"),
    "lgbm": ("lightgbm", "lightgbm"),
    "catboost": ("catboost", "catboost"),
}

_import = importlib.import_module  # one name, so a test can stand in for a Mac without libomp
_OPENMP = re.compile(r"libomp|openmp|libgomp|vcomp", re.IGNORECASE)
_NOT_LOADED = re.compile(r"Library not loaded: \S+|[\w./@-]*lib(?:g?omp)[\w.-]*")


def load(model: str):
    """The library behind ``model``, imported now; a missing one or one whose OpenMP runtime is
    missing is a RoadriskError (one line with the fix, exit 2), never a traceback."""
    module, install = LIBRARIES[model]
    try:
        return _import(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        raise RoadriskError(f"error: --model {model}: {module} is not installed. Fix: make run-native installs it, "
                            f"or pip install {install}") from None
    except Exception as exc:  # xgboost raises XGBoostError, lightgbm OSError: both name the missing libomp
        text = " ".join(str(exc).split())
        if not _OPENMP.search(text):
            raise
        found = _NOT_LOADED.search(text)
        raise RoadriskError(f"error: --model {model}: {module} cannot load the OpenMP runtime "
                            f"({found.group(0) if found else text[:120]}). Fix: brew install libomp") from None


def progress_every(max_rounds: int) -> int:
    """Report every Nth round: about 20 lines for a fit that runs to its cap, fewer when it stops early."""
    return max(1, int(max_rounds) // 20)


class RoundProgress:
    """Every round's validation RMSE, from a library callback; every Nth round (and the last) goes to the
    fold's tracker with the best round so far, so the console shows rounds, best, patience left and ETA."""

    def __init__(self, tracker: EpochTracker, max_rounds: int):
        self.tracker = tracker
        self.max_rounds = int(max_rounds)
        self.every = progress_every(max_rounds)
        self.best = (float("inf"), 0)
        self.last: tuple[int, float] | None = None
        self.sent = 0

    @classmethod
    def for_this_fit(cls, max_rounds: int) -> RoundProgress | None:
        tracker = active_tracker()
        return None if tracker is None else cls(tracker, max_rounds)

    def round(self, number: int, val_rmse: float) -> None:
        """Round ``number`` (1-based) finished with this validation RMSE."""
        val_rmse = float(val_rmse)
        if val_rmse < self.best[0]:
            self.best = (val_rmse, number)
        self.last = (number, val_rmse)
        if number % self.every == 0:
            self._send(number, val_rmse)

    def finish(self) -> None:
        """The fit ended (early stopping or the cap): its last round, if not sent already."""
        if self.last is not None and self.last[0] != self.sent:
            self._send(*self.last)

    def _send(self, number: int, val_rmse: float) -> None:
        self.sent = number
        self.tracker.record(val_rmse, number, self.max_rounds, best=self.best, unit="round")


class BoostedRegressor:
    """One library's regressor with roadrisk's device, seed and threads. Pickles with its fitted model
    (``--save-models``); ``estimator_`` is the library's own fitted estimator."""

    model = ""
    rounds_param = "n_estimators"
    # The library's names for what roadrisk sets itself: never settable through --param.
    owned: tuple[str, ...] = ()

    def __init__(self, params: dict, device: str = "cpu", seed: int = 0, threads: int = 1):
        self.params = dict(params)
        self.device = device
        self.seed = int(seed)
        self.threads = max(1, int(threads))
        self.estimator_ = None
        self.best_round_: int | None = None  # 1-based: the round whose trees predict
        load(self.model)  # fail now, in one line, rather than inside the first fold

    # ---------------------------------------------------------------- what the trainer calls

    def get_params(self, deep: bool = True) -> dict:
        params = {name: value for name, value in self._library_params().items() if name not in self.owned}
        params.update(device=self.device, random_state=self.seed, n_threads=self.threads, verbosity=0)
        return params

    def fit(self, X, y, X_val=None, y_val=None, cat_col_names=None):
        progress = RoundProgress.for_this_fit(self.params.get(self.rounds_param, 100)) if X_val is not None else None
        self.estimator_ = self._fit(X, y, X_val, y_val, list(cat_col_names or []), progress)
        if progress is not None:
            progress.finish()
        return self

    def predict(self, X):
        return self.estimator_.predict(X)

    # ---------------------------------------------------------------- one per library

    def _library_params(self) -> dict:
        raise NotImplementedError

    def _fit(self, X, y, X_val, y_val, categorical: list[str], progress: RoundProgress | None):
        raise NotImplementedError


# ---------------------------------------------------------------- XGBoost

class XGBoostRegressor(BoostedRegressor):
    model = "xgb"
    owned = ("n_jobs", "nthread", "random_state", "seed", "device", "verbosity", "callbacks", "enable_categorical")

    def _estimator(self, callbacks=None):
        xgb = load(self.model)
        return xgb.XGBRegressor(**self.params, n_jobs=self.threads, random_state=self.seed,
                                device="cuda" if self.device == "cuda" else "cpu", verbosity=0,
                                enable_categorical=True,  # the pandas category columns, split natively
                                callbacks=callbacks)

    def _library_params(self) -> dict:
        return self._estimator().get_params()

    def _fit(self, X, y, X_val, y_val, categorical, progress):
        callbacks = None
        if progress is not None:
            xgb = load(self.model)

            class Progress(xgb.callback.TrainingCallback):
                def after_iteration(self, model, epoch, evals_log) -> bool:
                    metric = next(iter(evals_log.get("validation_0", {}).values()), None)
                    if metric:
                        progress.round(epoch + 1, metric[-1])
                    return False  # never stops the fit: early stopping is the library's own

            callbacks = [Progress()]
        estimator = self._estimator(callbacks)
        if X_val is None:
            estimator.set_params(early_stopping_rounds=None)
            estimator.fit(X, y, verbose=False)
        else:
            estimator.fit(X, y, eval_set=[(X_val, y_val)], verbose=False)
        estimator.set_params(callbacks=None)  # it holds the console's hook, which is no part of the model
        best = getattr(estimator, "best_iteration", None)
        self.best_round_ = None if best is None else int(best) + 1
        return estimator


# ---------------------------------------------------------------- LightGBM

class LightGBMRegressor(BoostedRegressor):
    model = "lgbm"
    owned = ("n_jobs", "num_threads", "nthread", "random_state", "seed", "verbosity", "verbose", "device_type",
             "device", "metric")

    def _estimator(self):
        lgb = load(self.model)
        # metric rmse: the trainer's score, and what early stopping and the progress lines read.
        return lgb.LGBMRegressor(**self.params, n_jobs=self.threads, random_state=self.seed, verbosity=-1,
                                 metric="rmse")

    def _library_params(self) -> dict:
        return self._estimator().get_params()

    def _fit(self, X, y, X_val, y_val, categorical, progress):
        estimator = self._estimator()
        callbacks = []
        if progress is not None:
            def report(env) -> None:
                for _data, metric, value, _higher in env.evaluation_result_list:
                    if metric == "rmse":
                        progress.round(env.iteration + 1, value)
                        return

            callbacks.append(report)
        if X_val is None:  # early_stopping_rounds (LightGBM's own early stopping) needs a validation set
            estimator.set_params(early_stopping_rounds=None)
            estimator.fit(X, y, categorical_feature=categorical or "auto", callbacks=callbacks)
        else:
            # eval_X/eval_y: LightGBM 4.7's names (eval_set is deprecated there)
            estimator.fit(X, y, eval_X=(X_val,), eval_y=(y_val,), categorical_feature=categorical or "auto",
                          callbacks=callbacks)
        best = getattr(estimator, "best_iteration_", None)
        self.best_round_ = int(best) if best else None
        return estimator


# ---------------------------------------------------------------- CatBoost

class CatBoostRegressor(BoostedRegressor):
    model = "catboost"
    rounds_param = "iterations"
    owned = ("thread_count", "random_seed", "random_state", "task_type", "devices", "verbose", "verbose_eval",
             "silent", "logging_level", "allow_writing_files", "train_dir", "loss_function", "eval_metric",
             "cat_features", "callbacks", "log_cout", "log_cerr")

    def _estimator(self):
        cb = load(self.model)
        return cb.CatBoostRegressor(**self.params, thread_count=self.threads, random_seed=self.seed,
                                    task_type="GPU" if self.device == "cuda" else "CPU",
                                    loss_function="RMSE", eval_metric="RMSE",
                                    logging_level="Silent",
                                    allow_writing_files=False)  # no catboost_info/ folder in the user's directory

    def _library_params(self) -> dict:
        # CatBoost's get_params() lists only what was set: every constructor argument is settable.
        cb = load(self.model)
        names = [name for name in inspect.signature(cb.CatBoostRegressor.__init__).parameters if name != "self"]
        given = self._estimator().get_params()
        return {name: given.get(name) for name in names}

    def _fit(self, X, y, X_val, y_val, categorical, progress):
        estimator = self._estimator()
        on_gpu = self.device == "cuda"

        class Progress:
            def after_iteration(self, info) -> bool:
                values = info.metrics.get("validation", {}).get("RMSE")
                if values:
                    progress.round(info.iteration, values[-1])
                return True  # go on: early stopping is the library's own

        # CatBoost refuses user callbacks on the GPU: the rounds are replayed from its history after the fit.
        live = progress is not None and not on_gpu
        fit_args = {"cat_features": categorical or None, "callbacks": [Progress()] if live else None}
        if X_val is None:
            estimator.set_params(early_stopping_rounds=None)
            estimator.fit(X, y, **fit_args)
        else:
            # The best round is kept only when early stopping is on: with early_stopping_rounds None the fit
            # runs every round asked for and never picks one by the validation rows.
            estimator.fit(X, y, eval_set=(X_val, y_val),
                          use_best_model=self.params.get("early_stopping_rounds") is not None, **fit_args)
            if progress is not None and on_gpu:
                for number, value in enumerate(estimator.get_evals_result().get("validation", {}).get("RMSE", []), 1):
                    progress.round(number, value)
        best = estimator.get_best_iteration()
        self.best_round_ = None if best is None else int(best) + 1
        return estimator


REGRESSORS = {cls.model: cls for cls in (XGBoostRegressor, LightGBMRegressor, CatBoostRegressor)}


def build(model: str, params: dict, device: str, seed: int, threads: int) -> BoostedRegressor:
    return REGRESSORS[model](params, device, seed, threads)
