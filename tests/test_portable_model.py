"""--save-models pickles load on a CPU-only machine.

No GPU exists here, so a model "trained on CUDA" is emulated: a real tiny fit on the CPU, then the
device fields pytabkit leaves after a CUDA fit (the estimator's ``device``, TabM's ``device_``,
RealMLP's ``NNAlgInterface.device``) set as that fit leaves them. CUDA is hidden on load with
``torch.cuda.is_available`` mocked False. Device *tensors* cannot be made on a CPU wheel: the tensor
half is checked by reading every storage's location tag in the pickle.
"""

from __future__ import annotations

import io
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from roadrisk import portable
from roadrisk.models import MODELS

TINY = {
    "tabm": dict(n_blocks=1, d_block=16, tabm_k=2, n_epochs=1, batch_size=128, num_emb_n_bins=8),
    "realmlp": dict(n_epochs=1, batch_size=128),
}


def _rows():
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(300, 4)).astype(np.float32), columns=list("abcd"))
    return x, x["a"].to_numpy() * 0.1 + 0.3


def _fit_then_emulate_cuda(model: str):
    """A real CPU fit, with the device fields a CUDA fit leaves (read from pytabkit 1.7.3)."""
    x, y = _rows()
    est = MODELS[model].build(TINY[model], "cpu", 0, 1)
    est.fit(x[:200], y[:200], X_val=x[200:], y_val=y[200:])
    expected = est.predict(x)
    est.device = "cuda"
    interface = est.cv_alg_interface_
    if model == "tabm":
        interface.sub_split_interfaces[0].device_ = torch.device("cuda:0")
    else:
        interface.device = "cuda:0"
    return est, x, expected


def _storage_locations(blob: bytes) -> set[str]:
    """Every torch storage's device tag in a pickle, read without restoring any of them."""
    seen: set[str] = set()

    def record(storage, location):
        seen.add(location)
        return storage

    class Reader(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("torch.storage", "_load_from_bytes"):
                return lambda b: torch.load(io.BytesIO(b), map_location=record, weights_only=False)
            return super().find_class(module, name)

    Reader(io.BytesIO(blob)).load()
    return seen


@pytest.fixture
def cuda_hidden(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["tabm", "realmlp"])
def test_mocked_cuda_trained_pickle_without_conversion_fails_on_cpu_only_machine(model, cuda_hidden):
    est, x, _ = _fit_then_emulate_cuda(model)
    assert portable.accelerator_leftovers(est)
    loaded = pickle.loads(pickle.dumps(est))
    with pytest.raises((AssertionError, RuntimeError)):  # "Torch not compiled with CUDA enabled"
        loaded.predict(x)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["tabm", "realmlp"])
def test_mocked_cuda_trained_model_saved_portably_loads_and_predicts_the_same_on_cpu(model, cuda_hidden):
    est, x, expected = _fit_then_emulate_cuda(model)
    blob = portable.dumps(est)
    assert _storage_locations(blob) == {"cpu"}
    loaded = pickle.loads(blob)
    assert portable.accelerator_leftovers(loaded) == []
    np.testing.assert_array_equal(loaded.predict(x), expected)


def test_leftovers_name_the_path_and_the_device():
    class Holder:
        pass

    holder = Holder()
    holder.device_ = torch.device("mps")
    holder.layers = [torch.nn.Linear(2, 1)]
    holder.kwargs = {"device": "cuda:0", "gpu_devices": ["cuda:0"]}
    assert sorted(portable.accelerator_leftovers(holder)) == ["model.device_ = mps", "model.kwargs.device = cuda:0"]
    portable.to_cpu(holder)
    assert portable.accelerator_leftovers(holder) == [] and holder.kwargs["gpu_devices"] == []
