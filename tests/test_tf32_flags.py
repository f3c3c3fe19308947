"""TF32 flags under pytabkit and Lightning, for every model x device x recipe.

No GPU exists here: the CUDA side is a replay of what the libraries do to torch's process-wide matmul
flags (read from pytabkit 1.7.3 and Lightning 2.6), run on the real torch flags, which behave the
same on a CPU wheel. The replay is checked against a real RealMLP fit on the CPU, which performs the
same flag sequence minus Lightning's CUDA-only read.
"""

from __future__ import annotations

import pytest
import torch

from roadrisk import device
from roadrisk.models import MODELS
from roadrisk.recipes import RECIPES

# One RealMLP fold as roadrisk runs it: one fit, then predict the validation rows and the test rows.
# pytabkit NNAlgInterface.fit: old = allow_tf32; allow_tf32 = False; NNCreator.setup_from_dataset sets
# it False again; the Lightning Trainer sets up its accelerator (on CUDA:
# lightning_fabric.accelerators.cuda._check_cuda_matmul_precision reads
# torch.get_float32_matmul_precision() on Ampere and newer); allow_tf32 = old.
# NNAlgInterface.predict: the same without setup_from_dataset.
REALMLP_FIT = ("read", "set False", "set False", "lightning setup", "restore")
REALMLP_PREDICT = ("read", "set False", "lightning setup", "restore")
LIBRARY_FLAG_STEPS = {
    "realmlp": REALMLP_FIT + REALMLP_PREDICT + REALMLP_PREDICT,
    "tabm": (),  # pytabkit's TabM trains in its own loop, without Lightning, and leaves the flags alone
    "hgb": (),  # scikit-learn: no torch
    "xgb": (),  # the boosting libraries drive CUDA themselves, without torch
    "lgbm": (),
    "catboost": (),
}


def replay_library_flags(model: str, on_device: str) -> list[str]:
    """Perform ``LIBRARY_FLAG_STEPS[model]`` on torch's real flags; return what Lightning read."""
    answers, saved = [], []
    for step in LIBRARY_FLAG_STEPS[model]:
        if step == "read":
            saved.append(torch.backends.cuda.matmul.allow_tf32)
        elif step == "set False":
            torch.backends.cuda.matmul.allow_tf32 = False
        elif step == "restore":
            torch.backends.cuda.matmul.allow_tf32 = saved.pop()
        elif step == "lightning setup" and on_device == "cuda":
            answers.append(torch.get_float32_matmul_precision())
    return answers


def precision_as_the_trainer_resolves(model: str, on_device: str, recipe: str) -> str:
    """trainer.py's rule with no --matmul-precision: the device's default under fast, plain fp32 under seed."""
    return device.matmul_precision_for(on_device, model) if RECIPES[recipe].device_speedups else "highest"


@pytest.fixture(autouse=True)
def _precision_restored():
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision("highest")


def _fold(model: str, on_device: str, precision: str) -> list[str]:
    """run_fold's precision handling around the replayed libraries; what torch answers along the way."""
    if not MODELS[model].uses_torch:
        return [torch.get_float32_matmul_precision()] + replay_library_flags(model, on_device)
    with device.float32_matmul_precision(precision, on_device):
        answers = [torch.get_float32_matmul_precision()] + replay_library_flags(model, on_device)
        answers.append(torch.get_float32_matmul_precision())  # a later fit in the same fold reads it again
    return answers


@pytest.mark.parametrize("recipe", sorted(RECIPES))
@pytest.mark.parametrize("on_device", ["cpu", "cuda", "mps"])
@pytest.mark.parametrize("model", sorted(LIBRARY_FLAG_STEPS))
def test_mocked_cuda_replayed_library_flags_leave_the_precision_readable(model, on_device, recipe):
    assert set(LIBRARY_FLAG_STEPS) == set(MODELS)  # a new model must say what its library does to the flags
    answers = _fold(model, on_device, precision_as_the_trainer_resolves(model, on_device, recipe))
    assert all(answer in device.PRECISIONS for answer in answers)
    assert torch.get_float32_matmul_precision() == "highest"  # put back after the fold


@pytest.mark.parametrize("precision", device.PRECISIONS)
@pytest.mark.parametrize("model", ["tabm", "realmlp"])
def test_mocked_cuda_explicit_precision_survives_pytabkit_tf32_toggle(model, precision):
    """--matmul-precision given by hand on CUDA: Lightning's reads during fit and predict all answer."""
    answers = _fold(model, "cuda", precision)
    assert len(answers) == 2 + (3 if model == "realmlp" else 0)
    expected_outside = "highest" if precision == "highest" else "high"  # cuBLAS: medium and high are both TF32
    assert answers[0] == answers[-1] == expected_outside
    if model == "realmlp":
        assert answers[1:-1] == ["highest"] * 3  # pytabkit's own choice inside its fit and predict


def test_realmlp_takes_plain_fp32_by_default_since_pytabkit_turns_tf32_off():
    assert device.matmul_precision_for("cuda", "realmlp") == "highest"
    assert device.matmul_precision_for("cuda", "tabm") == "high"


class _FlagRecorder:
    """Stands in for torch.backends.cuda.matmul and writes down what is done to allow_tf32."""

    def __init__(self, real, log: list[str]):
        object.__setattr__(self, "_real", real)
        object.__setattr__(self, "_log", log)

    def __getattr__(self, name):
        if name == "allow_tf32":
            self._log.append("read")
        return getattr(self._real, name)

    def __setattr__(self, name, value):
        if name == "allow_tf32":
            self._log.append("set False" if value is False else "restore")
        setattr(self._real, name, value)


@pytest.mark.slow
def test_replayed_realmlp_flag_sequence_is_what_a_real_cpu_fit_does(monkeypatch):
    import numpy as np
    import pandas as pd

    log: list[str] = []
    monkeypatch.setattr(torch.backends.cuda, "matmul", _FlagRecorder(torch.backends.cuda.matmul, log))
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(300, 4)).astype(np.float32), columns=list("abcd"))
    y = x["a"].to_numpy() * 0.1 + 0.3
    model = MODELS["realmlp"].build({"n_epochs": 1, "batch_size": 128}, "cpu", 0, 1)
    model.fit(x[:200], y[:200], X_val=x[200:], y_val=y[200:])
    model.predict(x[200:])
    model.predict(x)
    cpu_steps = tuple(step for step in LIBRARY_FLAG_STEPS["realmlp"] if step != "lightning setup")
    # a restore of False is recorded as "set False": compare the shape of the sequence, reads and writes
    assert [s if s == "read" else "write" for s in log] == [s if s == "read" else "write" for s in cpu_steps]
