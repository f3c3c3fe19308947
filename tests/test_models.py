"""Every device default names a real parameter of the pinned library (no GPU needed to check that)."""

from __future__ import annotations

import json

import pytest

from roadrisk.cli import _key_value
from roadrisk.errors import RoadriskError
from roadrisk.models import MODELS, validate_params
from roadrisk.profiles import PROFILES
from roadrisk.recipes import RECIPES

from .conftest import run_cli


@pytest.mark.parametrize("recipe", sorted(RECIPES))
@pytest.mark.parametrize("device", ["cpu", "cuda", "mps"])
@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("model", sorted(MODELS))
def test_defaults_are_parameters_of_the_estimator(model, profile, device, recipe):
    """A misspelt key (say use_amp for allow_amp) would only fail on the GPU machine: catch it here.
    Built for the CPU, since only the parameter names are checked."""
    spec = MODELS[model]
    defaults = spec.defaults(profile, device, recipe)
    estimator = spec.build(defaults, "cpu", 0, 1)
    params = estimator.get_params()
    assert set(defaults) <= set(params), set(defaults) - set(params)
    assert all(params[key] == value for key, value in defaults.items())


@pytest.mark.parametrize("recipe", sorted(RECIPES))
@pytest.mark.parametrize("device", ["cpu", "cuda", "mps"])
@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("model", sorted(MODELS))
def test_defaults_pass_the_parameter_validation(model, profile, device, recipe):
    """The table of what pytabkit's parameters accept must never refuse roadrisk's own defaults."""
    spec = MODELS[model]
    validate_params(spec, spec.defaults(profile, device, recipe))


# (model, --param, words the one line must name): the value is refused before the first fold.
BAD_VALUES = {
    "hgb max_iter=abc": ("hgb", "max_iter=abc", ["--param max_iter='abc'", "an int in the range [1, inf)"]),
    "hgb max_iter=-5": ("hgb", "max_iter=-5", ["--param max_iter=-5", "an int in the range [1, inf)"]),
    "hgb learning_rate=fast": ("hgb", "learning_rate=fast", ["--param learning_rate='fast'", "(0.0, inf)"]),
    "tabm n_epochs=abc": ("tabm", "n_epochs=abc", ["--param n_epochs='abc'", "an int in the range [1, inf)"]),
    "tabm lr=-1": ("tabm", "lr=-1", ["--param lr=-1", "a float in the range (0, inf)"]),
    "tabm dropout=1.5": ("tabm", "dropout=1.5", ["--param dropout=1.5", "[0, 1]"]),
    "tabm arch_type=big": ("tabm", "arch_type=big", ["--param arch_type='big'", "'tabm-mini'"]),
    "tabm n_epochs=True": ("tabm", "n_epochs=True", ["--param n_epochs=True", "an int"]),
    "realmlp n_epochs=abc": ("realmlp", "n_epochs=abc", ["--param n_epochs='abc'", "an int in the range [1, inf)"]),
    "realmlp lr=-1": ("realmlp", "lr=-1", ["--param lr=-1", "a float in the range (0, inf)"]),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_validate_params_names_the_parameter_and_its_range(case):
    model, override, words = BAD_VALUES[case]
    key, value = _key_value(override)
    spec = MODELS[model]
    with pytest.raises(RoadriskError) as info:
        validate_params(spec, {**spec.defaults("smoke", "cpu", "fast"), key: value})
    line = str(info.value)
    assert line.startswith("error: ") and "\n" not in line and "Fix:" in line
    for word in words:
        assert word in line, (word, line)


def test_validate_params_lets_good_values_through():
    for model, params in {"tabm": {"batch_size": "auto", "n_blocks": "auto", "gradient_clipping_norm": "none",
                                   "n_epochs": None, "lr": 1e-3},
                          "realmlp": {"lr": {"default": 0.01}, "n_epochs": 3},
                          "hgb": {"max_iter": 3, "learning_rate": 0.5}}.items():
        validate_params(MODELS[model], {**MODELS[model].defaults("smoke", "cpu", "fast"), **params})


def _cli_bad_value(model, override, tmp_path):
    runs = tmp_path / "runs"
    result = run_cli("train", "--profile", "smoke", "--model", model, "--device", "cpu", "--param", override,
                     "--runs-dir", str(runs))
    errors = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    (record,) = runs.glob("native/*/run.json")
    return result, errors, json.loads(record.read_text())


@pytest.mark.parametrize("case", [c for c in sorted(BAD_VALUES) if c.startswith("hgb")])
def test_cli_bad_hgb_value_exits_2_before_the_first_fold(case, tmp_path):
    model, override, words = BAD_VALUES[case]
    _assert_refused_before_any_fold(*_cli_bad_value(model, override, tmp_path), words)


def _assert_refused_before_any_fold(result, errors, record, words) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(errors) == 1 and all(word in errors[0] for word in words), errors
    assert "--resume" not in result.stdout + result.stderr and "progress: fold" not in result.stdout
    assert record["status"] == "failed" and not record.get("folds")


@pytest.mark.slow
@pytest.mark.parametrize("case", ["tabm lr=-1", "realmlp n_epochs=abc"])
def test_cli_bad_pytabkit_value_exits_2_before_the_first_fold(case, tmp_path):
    model, override, words = BAD_VALUES[case]
    _assert_refused_before_any_fold(*_cli_bad_value(model, override, tmp_path), words)


@pytest.mark.parametrize("flag", ["--seed", "--cv-seed", "--data-seed"])
def test_cli_seed_beyond_numpys_range_is_a_usage_error(flag, tmp_path):
    result = run_cli("train", "--profile", "smoke", "--model", "hgb", flag, str(2**32), "--runs-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: roadrisk train: argument {flag}: must be in [0, 4294967295]")
    assert not any(tmp_path.iterdir())
