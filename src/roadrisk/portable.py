"""A fitted estimator made loadable on any machine: every torch module and tensor on the CPU, every
device it names set to the CPU, before ``--save-models`` pickles it.

A model trained on CUDA or MPS otherwise pickles its device tensors with their device ("Attempting
to deserialize object on a CUDA device" on a CPU-only machine), and pytabkit keeps the fit's device
beside the network (RealMLP ``NNAlgInterface.device``, TabM ``device_``) and moves the inputs there
at predict time, so moving the weights alone is not enough. pytabkit's own ``estimator.to(device)``
is implemented for RealMLP only, hence a walk over the estimator's objects.
"""

from __future__ import annotations

import pickle
from typing import Any

ACCELERATOR_PREFIXES = ("cuda", "mps")


def _names_accelerator(value: Any) -> bool:
    import torch

    if isinstance(value, torch.device):
        return value.type != "cpu"
    return isinstance(value, str) and value.startswith(ACCELERATOR_PREFIXES)


def _children(obj: Any):
    """(key, value) pairs under ``obj`` that may hold torch state; keys are attribute names or indices."""
    import torch

    if isinstance(obj, dict):
        return list(obj.items())
    if isinstance(obj, list):
        return list(enumerate(obj))
    if isinstance(obj, torch.nn.Module):  # parameters and buffers are moved by .to(); other attributes walked
        return [(k, v) for k, v in vars(obj).items() if k not in ("_parameters", "_buffers")]
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        return list(vars(obj).items())
    return []


def _set(obj: Any, key: Any, value: Any) -> None:
    if isinstance(obj, (dict, list)):
        obj[key] = value
    else:
        object.__setattr__(obj, key, value)


def to_cpu(estimator: Any) -> Any:
    """Move ``estimator``'s torch state to the CPU in place and return it."""
    import torch

    seen: set[int] = set()
    stack = [estimator]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.nn.Module):
            obj.to("cpu")
        for key, value in _children(obj):
            if isinstance(value, torch.Tensor):
                if value.device.type != "cpu":
                    _set(obj, key, value.detach().cpu())
            elif isinstance(key, str) and "device" in key and _names_accelerator(value):
                # a plain value ("cuda:0", torch.device("mps")): the device the library will move inputs to
                _set(obj, key, torch.device("cpu") if isinstance(value, torch.device) else "cpu")
            elif key == "gpu_devices" and isinstance(value, list):
                _set(obj, key, [])  # pytabkit's InterfaceResources: no GPU means the CPU
            elif isinstance(value, (dict, list)) or hasattr(value, "__dict__"):
                stack.append(value)
    return estimator


def accelerator_leftovers(estimator: Any) -> list[str]:
    """Paths to everything under ``estimator`` that still lives on, or names, an accelerator."""
    import torch

    found, seen = [], set()
    stack: list[tuple[str, Any]] = [("model", estimator)]
    while stack:
        path, obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            if obj.device.type != "cpu":
                found.append(f"{path} (tensor on {obj.device})")
            continue
        if isinstance(obj, torch.nn.Module):
            stack.extend((f"{path}.{name}", t) for name, t in
                         [*obj.named_parameters(recurse=False), *obj.named_buffers(recurse=False)])
        for key, value in _children(obj):
            where = f"{path}.{key}"
            if isinstance(value, torch.Tensor):
                if value.device.type != "cpu":
                    found.append(f"{where} (tensor on {value.device})")
            elif isinstance(key, str) and "device" in key and _names_accelerator(value):
                found.append(f"{where} = {value}")
            elif isinstance(value, (dict, list)) or hasattr(value, "__dict__"):
                stack.append((where, value))
    return found


def dumps(estimator: Any) -> bytes:
    """The pickle ``--save-models`` writes: the estimator with its torch state on the CPU."""
    return pickle.dumps(to_cpu(estimator), protocol=pickle.HIGHEST_PROTOCOL)
