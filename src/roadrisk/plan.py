"""The run plan: everything a run will compute, as one frozen value, and the one definition of sameness.

A ``RunPlan`` is computed purely from the options, the machine's facts (``environment.collect``), the
executor's settings and the data (its fingerprint and whether the original file is there): the
device and why, the recipe, the model and every parameter, the target, the folds, the seeds and the
matmul precision. Nothing is trained or written to plan a run, so ``--dry-run`` prints the plan, the
record's ``config`` is the plan written out, and its hash is the run's identity: a sweep member's id,
and what ``--resume`` checks before it adds folds to a run.

Three nested key sets answer "are these the same?" for everyone who asks:

- ``SAME_ROWS``: the OOF predictions score the same rows on the same folds (leaderboard, blending);
- ``COMPARABLE``: the same question asked of the same model (compare's speed-ups, row-level diffs);
- ``SAME_RUN``: the same computation (resume, sweep member ids).

The model's own seed is in ``SAME_RUN`` but not ``COMPARABLE``: runs that differ only in it are the
repeats a blend averages. The device is in ``SAME_RUN`` because its defaults differ (batch, AMP) and
so do its numbers: a run planned on a GPU box is a different run on a CPU box.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from . import records
from .device import DeviceChoice, apply_threads, choose, matmul_precision_for
from .models import MODELS, validate_overrides, validate_params
from .profiles import DEFAULT_PROFILE, PROFILES
from .recipes import HASHED_AS, RECIPES, default_for, resolve_recipe

TARGETS = ("raw", "residual")
CV_SCHEMES = ("kfold", "stratified")
DEFAULT_CV_BINS = 10  # quantile bins of the target for --cv stratified
MAX_FOLDS = 100

SAME_ROWS = ("data_fingerprint", "cv", "cv_bins", "folds", "cv_seed")
COMPARABLE = (*SAME_ROWS, "profile", "model", "recipe", "target")
SAME_RUN = (*COMPARABLE, "seed", "device", "params", "features", "matmul_precision")

# Where each key lives in run.json. The fingerprint stays under ``data`` (records older than the plan
# have it only there); every other key is the plan's own field in ``config``.
RECORD_PATHS = {name: ("config", name) for name in SAME_RUN} | {"data_fingerprint": ("data", "fingerprint")}


def key_name(key: str) -> str:
    """How a key is said in messages: "data fingerprint differs", "cv_seed 7 vs 42"."""
    return "data fingerprint" if key == "data_fingerprint" else key


def key_values(record: dict, keys: tuple[str, ...]) -> dict:
    """The values of ``keys`` in a run record (upgraded: ``records.upgrade`` fills what old ones lack)."""
    return {name: records.record_field(record, RECORD_PATHS[name]) for name in keys}


def differences(before: dict, now: dict, keys: tuple[str, ...]) -> list[tuple[str, object, object]]:
    """(key, value in ``before``, value in ``now``) for every key of two records that differs."""
    a, b = key_values(before, keys), key_values(now, keys)
    return [(name, a[name], b[name]) for name in keys if a[name] != b[name]]


def digest(values: dict) -> str:
    """A short, stable hash of JSON-able values: sorted keys and plain JSON, so the same values give
    the same hash in every process, on every machine and under every Python version."""
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class ExecutorSettings:
    """What the plan needs of where folds run (executors.ExecutorConfig has the rest)."""

    engine: str = "inline"
    gpus_per_task: float | None = None


@dataclass(frozen=True)
class RunPlan:
    profile: str
    profile_sizes: dict
    recipe: str
    recipe_settings: dict
    model: str
    model_description: str
    params: dict  # the model's parameters: the recipe's defaults for this profile and device, then --param
    param_overrides: dict
    estimator_params: dict  # every parameter of the estimator as built, library defaults included
    target: str  # raw | residual (the model learns y minus the formula's clipped-normal mean)
    cv: str  # kfold | stratified (on quantile bins of the target)
    cv_bins: int | None
    folds: int
    seed: int
    seed_matters: bool  # False: the model has no randomness with these parameters (hgb without early stopping)
    cv_seed: int
    data_seed: int | None
    data_fingerprint: str
    device: str
    device_choice: DeviceChoice = field(compare=False)
    threads: int = 1
    matmul_precision: str | None = None
    empty_cache_after_fold: bool | None = None
    save_models: bool = False
    features: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()

    def identity_values(self) -> dict:
        values = {name: getattr(self, name) for name in SAME_RUN}
        if not self.seed_matters:
            values["seed"] = None  # members that differ only in an unused seed are one computation
        values["recipe"] = HASHED_AS.get(self.recipe, self.recipe)
        return values

    @property
    def identity(self) -> str:
        """The run's identity: the hash of what it computes (``SAME_RUN``)."""
        return digest(self.identity_values())

    def as_config(self) -> dict:
        """run.json's ``config``: the plan written out, key for key (what ``--dry-run`` prints)."""
        out = asdict(self)
        out.pop("device_choice")
        out["features"], out["categorical"] = list(self.features), list(self.categorical)
        out["plan_id"] = self.identity
        return out

    def lines(self) -> list[str]:
        """The plan as stable ``key: value`` lines (``--dry-run`` prints these, and the record holds the same)."""
        return [f"plan.{key}: {json.dumps(value, sort_keys=True, default=str)}"
                for key, value in self.as_config().items()]


def profile_for(opts) -> str:
    """--profile, else full with --data-dir (real data deserves the real recipe), else quick."""
    return opts.profile or ("full" if opts.data_dir is not None else DEFAULT_PROFILE)


def device_for(opts, facts: dict, executor: ExecutorSettings) -> DeviceChoice:
    """The device and why; raises DeviceUnavailable under --strict-device."""
    model_name = opts.model or PROFILES[profile_for(opts)].default_model
    spec = MODELS[model_name]
    choice = choose(opts.device, opts.strict_device, facts, model_name, spec.uses_torch)
    if executor.engine == "ray" and opts.device in ("auto", "cuda"):
        if executor.gpus_per_task and spec.uses_torch:
            # The folds run on the Ray workers' GPUs, not this driver's: the worker checks CUDA is there.
            choice = DeviceChoice(opts.device, "cuda", opts.strict_device, False,
                                  f"--gpus-per-task {executor.gpus_per_task}: folds run on the Ray workers' GPUs")
        elif not executor.gpus_per_task and choice.selected == "cuda":
            # Ray blanks CUDA_VISIBLE_DEVICES for a task that reserves no GPU: the fold would find none.
            choice = DeviceChoice(opts.device, "cpu", opts.strict_device, True,
                                  "--executor ray without --gpus-per-task: Ray hides the GPUs from tasks that reserve "
                                  "none, so the folds train on CPU; pass --gpus-per-task 1 (or 0.5, 0.25 to share "
                                  "a GPU) to train on them")
    if spec.uses_torch:
        choice = apply_threads(choice, facts["cpu_count"])
    return choice


def make_plan(opts, facts: dict, data_fingerprint: str, has_original: bool, train_rows: int,
              executor: ExecutorSettings | None = None, choice: DeviceChoice | None = None) -> RunPlan:
    """The run ``opts`` asks for on this machine and these data. Pure: it builds an estimator to read
    its parameters, and trains and writes nothing. Bad values raise a one-line RoadriskError."""
    from .errors import RoadriskError

    profile = PROFILES[profile_for(opts)]
    model_name = opts.model or profile.default_model
    spec = MODELS[model_name]
    recipe = RECIPES[resolve_recipe(opts.recipe or default_for(profile.name))]
    choice = choice or device_for(opts, facts, executor or ExecutorSettings())
    threads = choice.torch_threads or facts["cpu_count"]  # scikit-learn: OpenMP over the usable CPUs

    defaults = spec.defaults(profile.name, choice.selected, recipe.name)
    validate_overrides(spec, opts.param_overrides)
    params = {**defaults, **opts.param_overrides}
    validate_params(spec, params)  # a value the estimator would reject fails here, not inside the first fold
    estimator_params = spec.build(defaults, choice.selected, opts.seed, threads).get_params()
    estimator_params.update(opts.param_overrides)  # what building with ``params`` reports

    n_folds = opts.folds or profile.folds
    if not 2 <= n_folds <= MAX_FOLDS:
        raise RoadriskError(f"error: --folds {n_folds}: use 2 to {MAX_FOLDS}")
    if n_folds > train_rows:
        raise RoadriskError(f"error: --folds {n_folds}: more folds than train rows ({train_rows}). "
                            "Fix: use fewer folds or more data")
    target = getattr(opts, "target", "raw") or "raw"
    cv = getattr(opts, "cv", "kfold") or "kfold"
    cv_bins = (getattr(opts, "cv_bins", None) or DEFAULT_CV_BINS) if cv == "stratified" else None
    precision = opts.matmul_precision or (matmul_precision_for(choice.selected, model_name)
                                          if recipe.device_speedups else "highest")
    from .features import names_for  # pandas: loaded when a run is planned, not for `roadrisk --help`

    names, categorical = names_for(recipe, has_original)
    return RunPlan(
        profile=profile.name, profile_sizes=profile.as_dict(), recipe=recipe.name, recipe_settings=recipe.as_dict(),
        model=model_name, model_description=spec.description, params=params,
        param_overrides=dict(opts.param_overrides), estimator_params=estimator_params,
        target=target, cv=cv, cv_bins=cv_bins, folds=n_folds, seed=opts.seed, seed_matters=spec.seed_matters(params),
        cv_seed=opts.cv_seed, data_seed=opts.data_seed if opts.data_dir is None else None,
        data_fingerprint=data_fingerprint, device=choice.selected, device_choice=choice, threads=threads,
        matmul_precision=precision if spec.uses_torch else None,
        empty_cache_after_fold=recipe.empty_cache_after_fold if spec.uses_torch else None,
        save_models=opts.save_models, features=tuple(names),
        categorical=tuple(categorical),
    )

