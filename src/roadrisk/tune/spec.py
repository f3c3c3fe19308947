"""A tune spec (TOML): the data and folds every trial shares (as a sweep spec has them), one model with
its fixed parameters, a search space, and when to stop. Every problem is one line naming the file, the
key and the fix, before any trial trains.

    name = "tune-quick-xgb"       # runs/<name>/ and the Optuna study's name
    cv_seed = 42                  # the folds every trial shares, so trials blend
    cv = "kfold"                  # or "stratified"

    [data]
    profile = "quick"             # or data_dir = "~/kaggle/s5e10"

    [model]
    name = "xgb"
    target = "residual"           # recipe, device, folds, matmul_precision as in a sweep's [[model]]
    seed = 42
    params = { n_estimators = 400 }          # fixed for every trial

    [search]
    trials = 40                   # complete + pruned trials to reach (a resumed tune counts earlier ones)
    timeout_s = 300               # and/or a budget: no new trial starts after it (summed over resumes)
    sampler_seed = 42             # TPE's seed
    prune = true                  # median pruner on the running OOF RMSE after each fold
    startup_trials = 5            # no pruning before this many trials have finished

    [search.space]
    max_depth = { int = [3, 10] }
    learning_rate = { float = [0.01, 0.3], log = true }
    grow_policy = { choices = ["depthwise", "lossguide"] }
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..models import MODELS
from ..sweep.spec import (
    MEMBER_KEYS,
    SweepSpec,
    check_params,
    check_values,
    member_settings,
    read_toml,
    refuse_unknown,
    shared_settings,
    spec_error,
    table_of,
    whole_number,
)

TOP_KEYS = {"name", "cv_seed", "cv", "cv_bins", "data", "model", "search"}
MODEL_KEYS = {"name", "seed", "params"} | MEMBER_KEYS
SEARCH_KEYS = {"trials", "timeout_s", "sampler_seed", "prune", "startup_trials", "space"}
KINDS = ("int", "float", "choices")


@dataclass(frozen=True)
class Dimension:
    """One parameter's range: ``int`` and ``float`` take [low, high] (``log`` for a log scale, ``step``
    for a grid), ``choices`` a list of values."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    def suggest(self, trial):
        """The value an Optuna trial draws for this parameter."""
        if self.kind == "choices":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)

    def extremes(self) -> list:
        return list(self.choices) if self.kind == "choices" else [self.low, self.high]

    def describe(self) -> str:
        if self.kind == "choices":
            return f"{self.name}: one of {list(self.choices)}"
        scale = " (log)" if self.log else f" (step {self.step:g})" if self.step else ""
        return f"{self.name}: {self.kind} in [{self.low:g}, {self.high:g}]{scale}"


@dataclass
class TuneSpec:
    shared: SweepSpec  # name, data, folds: the part a sweep spec has too
    model: str
    seed: int
    recipe: str
    target: str
    device: str
    folds: int | None
    matmul_precision: str | None
    fixed: dict
    space: list[Dimension]
    trials: int | None
    timeout_s: float | None
    sampler_seed: int
    prune: bool
    startup_trials: int
    @property
    def notes(self) -> list[str]:
        """One-line notices for the tune to print (an old recipe name), gathered with the shared settings."""
        return self.shared.notes

    @property
    def name(self) -> str:
        return self.shared.name

    @property
    def path(self) -> Path:
        return self.shared.path


def _dimension(path: Path, name: str, value) -> Dimension:
    where = f"[search.space] {name}"
    example = "{ int = [3, 10] }, { float = [0.01, 0.3], log = true } or { choices = [\"a\", \"b\"] }"
    table_of(path, where, value, example)
    kinds = [k for k in KINDS if k in value]
    if len(kinds) != 1:
        raise spec_error(path, where, "needs exactly one of int, float, choices", f"write it as {example}")
    refuse_unknown(path, where, value, {kinds[0], "log", "step"})
    kind, log, step = kinds[0], value.get("log", False), value.get("step")
    if not isinstance(log, bool):
        raise spec_error(path, f"{where} log", repr(log), "write log = true or log = false")
    if kind == "choices":
        choices = value["choices"]
        if not isinstance(choices, list) or not choices:
            raise spec_error(path, f"{where} choices", repr(choices), 'write a list such as choices = ["a", "b"]')
        if log or step is not None:
            raise spec_error(path, where, "log and step apply to int and float ranges only", "drop them")
        return Dimension(name, kind, choices=tuple(choices))
    bounds = value[kind]
    number = int if kind == "int" else (int, float)
    if (not isinstance(bounds, list) or len(bounds) != 2 or any(isinstance(b, bool) or not isinstance(b, number)
                                                                 for b in bounds)):
        raise spec_error(path, f"{where} {kind}", repr(bounds), f"write two {'whole ' if kind == 'int' else ''}numbers "
                    f"[low, high], such as {kind} = {'[3, 10]' if kind == 'int' else '[0.01, 0.3]'}")
    low, high = bounds
    if not low < high:
        raise spec_error(path, f"{where} {kind}", f"{bounds!r}: low must be below high", "swap or widen the bounds")
    if log and low <= 0:
        raise spec_error(path, f"{where} {kind}", f"{bounds!r}: a log range must be above 0", "raise low above 0")
    if step is not None and (isinstance(step, bool) or not isinstance(step, number) or step <= 0 or log):
        raise spec_error(path, f"{where} step", repr(step), "a positive step, without log = true")
    return Dimension(name, kind, float(low) if kind == "float" else low, float(high) if kind == "float" else high,
                     log, step)


def load(path: Path) -> TuneSpec:
    path = Path(path)
    spec, raw = read_toml(path)
    refuse_unknown(path, "top level", spec, TOP_KEYS)
    shared = shared_settings(path, spec, raw)
    model = table_of(path, "[model]", spec.get("model"), '[model] with name = "xgb"')
    refuse_unknown(path, "[model]", model, MODEL_KEYS)
    name = model.get("name")
    if name not in MODELS:
        raise spec_error(path, "[model] name", repr(name), f"use one of {', '.join(MODELS)}")
    settings = member_settings(path, "[model]", {k: v for k, v in model.items() if k in MEMBER_KEYS}, shared)
    fixed = table_of(path, "[model] params", model.get("params", {}), "params = { n_estimators = 400 }")
    if any(isinstance(v, list) for v in fixed.values()):
        raise spec_error(path, "[model] params", "a list is a grid, which a tune does not take",
                    "move the parameter to [search.space] as { choices = [...] }")
    search = table_of(path, "[search]", spec.get("search"), "[search] with trials = 20")
    refuse_unknown(path, "[search]", search, SEARCH_KEYS)
    space_table = table_of(path, "[search.space]", search.get("space"), "[search.space] with max_depth = { int = [3, 10] }")
    if not space_table:
        raise spec_error(path, "[search.space]", "no parameters", "add one, such as max_depth = { int = [3, 10] }")
    space = [_dimension(path, key, value) for key, value in sorted(space_table.items())]
    both = sorted(set(fixed) & set(space_table))
    if both:
        raise spec_error(path, "[model] params", f"{', '.join(both)} both fixed and searched", "keep each in one place")
    check_params(path, "[model]", name, {**fixed, **space_table})
    for dimension in space:  # every bound the estimator would reject fails now, not one trial in
        for value in dimension.extremes():
            check_values(path, f"[search.space] {dimension.name}", name, shared.profile, settings.recipe,
                         {**fixed, dimension.name: value})
    trials = search.get("trials")
    timeout = search.get("timeout_s")
    if trials is None and timeout is None:
        raise spec_error(path, "[search]", "neither trials nor timeout_s", "set trials = 20, timeout_s = 600, or both")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not math.isfinite(timeout) or timeout <= 0):
        raise spec_error(path, "[search] timeout_s", repr(timeout), "write a number of seconds above 0, such as 300")
    prune = search.get("prune", True)
    if not isinstance(prune, bool):
        raise spec_error(path, "[search] prune", repr(prune), "write prune = true or prune = false")
    return TuneSpec(shared=shared, model=name, seed=whole_number(path, "[model] seed", model.get("seed", 42)),
                    recipe=settings.recipe, target=settings.target, device=settings.device, folds=settings.folds,
                    matmul_precision=settings.matmul_precision, fixed=dict(fixed), space=space,
                    trials=None if trials is None else whole_number(path, "[search] trials", trials, 1, 100_000),
                    timeout_s=None if timeout is None else float(timeout),
                    sampler_seed=whole_number(path, "[search] sampler_seed", search.get("sampler_seed", 42)), prune=prune,
                    startup_trials=whole_number(path, "[search] startup_trials", search.get("startup_trials", 5), 0,
                                                100_000))
