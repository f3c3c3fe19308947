"""A sweep spec (TOML, read with the standard library): the data, the folds every member shares, and
models with parameter grids and seeds. Every problem is one line naming the file, the key and the fix.

    name = "quick-cpu"            # runs/<name>/ (default: the file's name)
    cv_seed = 42                  # the folds every member shares (blending needs them equal)
    cv = "kfold"                  # or "stratified" (on cv_bins quantile bins of the target)

    [data]
    profile = "quick"             # the embedded data at this profile's size ...
    # data_dir = "~/kaggle/s5e10" # ... or real files
    data_seed = 42

    [defaults]                    # for every model, unless it sets its own
    recipe = "fast"
    device = "auto"
    folds = 3
    target = "raw"                # or "residual": learn y minus the formula's clipped-normal mean

    [[model]]
    name = "hgb"
    seeds = [1, 2]
    params = { max_leaf_nodes = [7, 15] }   # a list is a grid; a list value itself: [[256, 256]]
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path

from ..device import DEVICES
from ..errors import RoadriskError
from ..models import MODELS, settable_params, validate_params
from ..plan import CV_SCHEMES, TARGETS
from ..profiles import PROFILES
from ..recipes import RECIPES, alias_notice, default_for, resolve_recipe

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, published as tomli (a dependency there)
    import tomli as tomllib

TOP_KEYS = {"name", "cv_seed", "cv", "cv_bins", "data", "defaults", "model"}
DATA_KEYS = {"profile", "data_dir", "data_seed"}
MEMBER_KEYS = {"recipe", "device", "folds", "matmul_precision", "target"}
MODEL_KEYS = {"name", "seeds", "params"} | MEMBER_KEYS


@dataclass(frozen=True)
class MemberSpec:
    """One run the spec asks for: a model, one point of its grid, one seed. Its id is its run plan's hash
    (plan.py), computed by the runner once the data and the machine are known."""

    model: str
    params: dict
    seed: int
    recipe: str
    device: str = "auto"
    folds: int | None = None
    matmul_precision: str | None = None
    target: str = "raw"


@dataclass
class SweepSpec:
    path: Path
    name: str
    cv_seed: int
    profile: str
    data_dir: Path | None
    data_seed: int
    members: list[MemberSpec] = field(default_factory=list)
    cv: str = "kfold"
    cv_bins: int | None = None
    sha256: str = ""
    notes: list[str] = field(default_factory=list)  # one-line notices for the sweep to print (old names)


def spec_error(path: Path, where: str, problem: str, fix: str) -> RoadriskError:
    return RoadriskError(f"error: {path}: {where}: {problem}. Fix: {fix}")


def refuse_unknown(path: Path, where: str, table: dict, allowed: set) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise spec_error(path, where, f"unknown key(s) {', '.join(extra)}", f"use only {', '.join(sorted(allowed))}")


def table_of(path: Path, where: str, value, example: str) -> dict:
    """A key that must hold a TOML table (``data = 5`` would otherwise fail deep inside as a TypeError)."""
    if not isinstance(value, dict):
        raise spec_error(path, where, f"{value!r} is not a table", f"write it as {example}")
    return value


# numpy's and torch's generators take seeds below 2**32, as the CLI's --seed does.
SEED_LIMIT = 2**32 - 1


def whole_number(path: Path, where: str, value, minimum: int = 0, maximum: int = SEED_LIMIT) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise spec_error(path, where, f"{value!r} is not a whole number in [{minimum}, {maximum}]",
                    "write a number such as 42")
    return value


def check_params(path: Path, where: str, model: str, params: dict) -> None:
    """Unknown or roadrisk-owned parameter names fail here, before any member starts."""
    settable = settable_params(MODELS[model])  # models.py: the one rule for --param and params tables
    unknown = sorted(set(params) - settable)
    if unknown:
        raise spec_error(path, f"{where} params", f"{', '.join(unknown)} not a parameter of {model} (or set by roadrisk)",
                    f"use one of {', '.join(sorted(settable))}")


def check_values(path: Path, where: str, model: str, profile: str, recipe: str, point: dict) -> None:
    """A value the estimator would reject fails the spec up front, not one member after the sweep started."""
    spec = MODELS[model]
    try:
        validate_params(spec, {**spec.defaults(profile, "cpu", recipe), **point})
    except RoadriskError as exc:
        problem, _, fix = str(exc).removeprefix("error: ").partition(" Fix: ")
        raise spec_error(path, f"{where} params", problem.removeprefix("--param ").rstrip("."), fix) from None


def one_of(path: Path, where: str, value, allowed: tuple) -> str:
    if value not in allowed:
        raise spec_error(path, where, repr(value), f"use one of {', '.join(allowed)}")
    return value


def grid(params: dict) -> list[dict]:
    """Every combination of the list-valued parameters (sorted keys, so the order is stable)."""
    keys = sorted(params)
    choices = [params[k] if isinstance(params[k], list) else [params[k]] for k in keys]
    return [dict(zip(keys, combo)) for combo in itertools.product(*choices)]


def read_toml(path: Path) -> tuple[dict, bytes]:
    """A spec file's tables and its bytes (for the spec's hash); a missing file or bad TOML is one line."""
    try:
        raw = path.read_bytes()
        return tomllib.loads(raw.decode("utf-8")), raw
    except FileNotFoundError:
        raise RoadriskError(f"error: {path}: no such spec. Fix: pass a TOML file such as sweeps/quick-cpu.toml") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RoadriskError(f"error: {path}: not valid TOML ({exc}). Fix: see the format in docs/sweep.md") from None


def shared_settings(path: Path, spec: dict, raw: bytes) -> SweepSpec:
    """What every member of a sweep (or trial of a tune) shares: its name, data and folds; no members yet."""
    data = table_of(path, "data", spec.get("data", {}), '[data] with profile = "quick"')
    refuse_unknown(path, "[data]", data, DATA_KEYS)
    profile = data.get("profile", "quick")
    if profile not in PROFILES:
        raise spec_error(path, "[data] profile", repr(profile), f"use one of {', '.join(PROFILES)}")
    if not isinstance(data.get("data_dir", ""), str):
        raise spec_error(path, "[data] data_dir", repr(data["data_dir"]), 'write a path such as data_dir = "~/kaggle/s5e10"')
    data_dir = Path(data["data_dir"]).expanduser() if data.get("data_dir") else None
    if data_dir is not None and not data_dir.is_absolute():
        data_dir = (path.parent / data_dir).resolve()  # relative to the spec, wherever it is run from
    return SweepSpec(path=path, name=str(spec.get("name") or path.stem), cv_seed=whole_number(path, "cv_seed",
                     spec.get("cv_seed", 42)), profile=profile, data_dir=data_dir,
                     data_seed=whole_number(path, "[data] data_seed", data.get("data_seed", 42)),
                     sha256=hashlib.sha256(raw).hexdigest(), cv=one_of(path, "cv", spec.get("cv", "kfold"), CV_SCHEMES),
                     cv_bins=None if spec.get("cv_bins") is None else whole_number(path, "cv_bins", spec["cv_bins"], 2))


@dataclass(frozen=True)
class MemberSettings:
    """A model table's settings besides its parameters and seeds (``MEMBER_KEYS``), checked."""

    recipe: str
    device: str
    folds: int | None
    matmul_precision: str | None
    target: str


def member_settings(path: Path, where: str, settings: dict, out: SweepSpec) -> MemberSettings:
    recipe = settings.get("recipe") or default_for(out.profile)
    notice = alias_notice(recipe, f"{path}: recipe")
    if notice and notice not in out.notes:
        out.notes.append(notice)
    recipe = resolve_recipe(recipe)
    if recipe not in RECIPES:
        raise spec_error(path, f"{where} recipe", repr(recipe), f"use one of {', '.join(RECIPES)}")
    if settings.get("device", "auto") not in DEVICES:
        raise spec_error(path, f"{where} device", repr(settings["device"]), f"use one of {', '.join(DEVICES)}")
    folds = settings.get("folds")
    return MemberSettings(recipe, settings.get("device", "auto"),
                          None if folds is None else whole_number(path, f"{where} folds", folds, 2),
                          settings.get("matmul_precision"),
                          one_of(path, f"{where} target", settings.get("target", "raw"), TARGETS))


def load(path: Path) -> SweepSpec:
    path = Path(path)
    spec, raw = read_toml(path)
    refuse_unknown(path, "top level", spec, TOP_KEYS)
    out = shared_settings(path, spec, raw)
    defaults = table_of(path, "defaults", spec.get("defaults", {}), '[defaults] with recipe = "fast"')
    refuse_unknown(path, "[defaults]", defaults, MEMBER_KEYS)
    models = spec.get("model")
    if not isinstance(models, list) or not models:
        raise spec_error(path, "[[model]]", "no models", 'add at least one [[model]] table with name = "hgb"')
    for number, table in enumerate(models, start=1):
        where = f"[[model]] #{number}"
        table_of(path, where, table, '[[model]] with name = "hgb"')
        refuse_unknown(path, where, table, MODEL_KEYS)
        name = table.get("name")
        if name not in MODELS:
            raise spec_error(path, f"{where} name", repr(name), f"use one of {', '.join(MODELS)}")
        settings = member_settings(path, where, {**defaults, **{k: v for k, v in table.items() if k in MEMBER_KEYS}},
                                   out)
        seeds = table.get("seeds", [42])
        if not isinstance(seeds, list) or not seeds:
            raise spec_error(path, f"{where} seeds", repr(seeds), "write a list such as seeds = [1, 2]")
        params = table.get("params", {})
        if not isinstance(params, dict):
            raise spec_error(path, f"{where} params", repr(params), "write a table such as params = { n_epochs = 10 }")
        check_params(path, where, name, params)
        for point in grid(params):
            check_values(path, where, name, out.profile, settings.recipe, point)
            for seed in seeds:
                out.members.append(MemberSpec(name, point, whole_number(path, f"{where} seeds", seed), settings.recipe,
                                              settings.device, settings.folds, settings.matmul_precision,
                                              settings.target))
    return out
