"""Every device default names a real parameter of the pinned library (no GPU needed to check that)."""

from __future__ import annotations

import pytest

from roadrisk.models import MODELS
from roadrisk.profiles import PROFILES
from roadrisk.recipes import RECIPES


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
