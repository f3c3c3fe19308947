"""Every device default names a real parameter of the pinned library (no GPU needed to check that)."""

from __future__ import annotations

import pytest

from roadrisk.models import MODELS
from roadrisk.profiles import PROFILES


@pytest.mark.parametrize("device", ["cpu", "cuda", "mps"])
@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("model", sorted(MODELS))
def test_defaults_are_parameters_of_the_estimator(model, profile, device):
    """A misspelt key (say use_amp for allow_amp) would only fail on the GPU machine: catch it here.
    Built for the CPU, since only the parameter names are checked."""
    spec = MODELS[model]
    defaults = spec.defaults(profile, device)
    estimator = spec.build(defaults, "cpu", 0, 1)
    params = estimator.get_params()
    assert set(defaults) <= set(params), set(defaults) - set(params)
    assert all(params[key] == value for key, value in defaults.items())


def test_cuda_defaults_are_the_anchored_settings():
    tabm = MODELS["tabm"].defaults("full", "cuda")
    assert tabm["allow_amp"] is True and tabm["batch_size"] == 2048 and tabm["n_epochs"] == 20
    assert MODELS["realmlp"].defaults("full", "cuda")["batch_size"] == 2048
    assert MODELS["tabm"].defaults("full", "mps")["allow_amp"] is False  # untested on Apple GPUs: off
