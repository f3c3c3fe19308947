"""Op and dtype audit: would a CPU fit of TabM and RealMLP run on MPS?

Tiny real fits on the CPU under a recording ``TorchDispatchMode`` list every aten op and every tensor
dtype they use. MPS has no float64, so only float32/int64/bool may appear. Each op must have an MPS
kernel or a device-generic one (CompositeImplicitAutograd/CompositeExplicitAutograd...).

Where the MPS kernels are known from on Linux: a Linux wheel registers no MPS (or CUDA) kernels, so
``torch._C._dispatch_has_kernel_for_dispatch_key(op, "MPS")`` is False for every op here. torch does
ship, in ``torchgen/packaged/ATen/native/native_functions.yaml``, the table its kernels are generated
from, MPS entries included, for this exact version. The audit reads that table, and first checks its
reading against the live registry for the CPU key (which this wheel does register), so a misread
table fails rather than passing everything. Kernels registered outside that table (none seen for the
ops used here) would be missed; a Mac's ``pytest -m mps`` run is the real check.
"""

from __future__ import annotations

import collections
import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from roadrisk.models import MODELS, TABM_REFERENCE

ALLOWED_DTYPES = {torch.float32, torch.int64, torch.bool}
GENERIC_KEYS = ("CompositeImplicitAutograd", "CompositeExplicitAutograd", "CompositeExplicitAutogradNonFunctional")
# Not compute: Lightning and torch's record_function markers, which exist on every backend.
NON_ATEN_ALLOWED = {"profiler::_record_function_enter_new", "profiler::_record_function_exit._RecordFunction"}


class OpRecorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()
        self.dtypes: dict[torch.dtype, str] = {}  # dtype -> first op that touched it

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        schema = func._schema
        name = schema.name + (f".{schema.overload_name}" if schema.overload_name else "")
        self.ops[name] += 1
        for value in tree_flatten((args, kwargs, out))[0]:
            if isinstance(value, torch.Tensor):
                self.dtypes.setdefault(value.dtype, name)
        return out


@functools.cache
def native_functions() -> dict[str, dict]:
    import torchgen
    import yaml

    path = Path(torchgen.__file__).parent / "packaged" / "ATen" / "native" / "native_functions.yaml"
    assert path.exists(), f"{path} missing: this torch wheel does not ship its op table"
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return {entry["func"].split("(")[0]: entry for entry in yaml.load(path.read_text(), Loader=loader)}


def kernel_in_table(op: str, backend: str) -> str | None:
    """The dispatch key that would serve ``op`` (aten::name.overload) on ``backend``, per the table."""
    entry = native_functions().get(op.removeprefix("aten::"))
    if entry is None:
        return None
    keys = {key.strip() for keys in entry.get("dispatch", {}) for key in keys.split(",")}
    if backend in keys:
        return backend
    if "ufunc_inner_loop" in entry and backend in ("CPU", "CUDA"):  # ufunc codegen writes these two only
        return backend
    for generic in GENERIC_KEYS:
        if generic in keys:
            return generic
    if "structured_delegate" in entry:  # a functional op whose kernel is its .out variant's
        return kernel_in_table(entry["structured_delegate"], backend)
    if "dispatch" not in entry:
        return "CompositeImplicitAutograd"  # the table's default for an entry without a dispatch section
    return None


def live_kernel(op: str, backend: str) -> str | None:
    for key in (backend, *GENERIC_KEYS):
        if torch._C._dispatch_has_kernel_for_dispatch_key(op, key):
            return key
    return None


def _rows(n: int = 400):
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(n, 4)).astype(np.float32), columns=list("abcd"))
    x["road"] = pd.Categorical(rng.integers(0, 3, n))
    return x, (x["a"].to_numpy() * 0.1 + 0.3).astype(np.float32)


# The seed architecture for TabM (one epoch); RealMLP with roadrisk's MPS batch.
AUDITED = {
    "tabm": {**TABM_REFERENCE, "n_epochs": 1},
    "realmlp": {"n_epochs": 2, "batch_size": 128},
}


@functools.cache
def recorded(model: str) -> OpRecorder:
    x, y = _rows()
    est = MODELS[model].build(AUDITED[model], "cpu", 0, 1)
    recorder = OpRecorder()
    with recorder:
        est.fit(x[:300], y[:300], X_val=x[300:], y_val=y[300:], cat_col_names=["road"])
        est.predict(x)
    return recorder


@pytest.mark.slow  # a real tiny fit (TabM seed architecture: ~11 s on a busy 2-core box)
@pytest.mark.parametrize("model", sorted(AUDITED))
def test_fit_uses_only_dtypes_mps_has(model):
    dtypes = recorded(model).dtypes
    assert set(dtypes) <= ALLOWED_DTYPES, {str(d): op for d, op in dtypes.items() if d not in ALLOWED_DTYPES}


@pytest.mark.slow  # a real tiny fit (TabM seed architecture: ~11 s on a busy 2-core box)
@pytest.mark.parametrize("model", sorted(AUDITED))
def test_op_table_reading_agrees_with_the_live_cpu_registry(model):
    ops = [op for op in recorded(model).ops if op.startswith("aten::")]
    disagree = {op: (kernel_in_table(op, "CPU"), live_kernel(op, "CPU")) for op in ops
                if kernel_in_table(op, "CPU") != live_kernel(op, "CPU")}
    assert not disagree, disagree


@pytest.mark.slow  # a real tiny fit (TabM seed architecture: ~11 s on a busy 2-core box)
@pytest.mark.parametrize("model", sorted(AUDITED))
def test_every_op_has_an_mps_or_generic_kernel(model):
    ops = recorded(model).ops
    assert sum(ops.values()) > 500  # a real fit was recorded
    missing = sorted(op for op in ops if op not in NON_ATEN_ALLOWED and kernel_in_table(op, "MPS") is None)
    assert not missing, f"ops with no MPS kernel in torch's table: {missing}"


def test_audit_catches_an_op_mps_lacks():
    """The check can fail: an op with CPU and CUDA kernels only (per this torch's table) is reported."""
    lacking = [name for name, entry in native_functions().items()
               if set(entry.get("dispatch", {})) == {"CPU, CUDA"} and "structured_delegate" not in entry]
    assert lacking and kernel_in_table(f"aten::{lacking[0]}", "MPS") is None
    assert kernel_in_table("aten::_local_scalar_dense", "MPS") == "MPS"
    assert kernel_in_table("aten::mm", "MPS") == "MPS"  # through its structured delegate mm.out
