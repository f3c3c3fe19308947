"""The environment block: stable ``key: value`` lines that open every ``train.log``."""

from __future__ import annotations

import json

from .device import DeviceChoice, cuda_status, mps_status

# The order is part of the format: reports diff these lines, so keys never move.
BLOCK_KEYS = (
    "python", "os", "platform", "machine", "macos_version", "rosetta", "torch", "torch_cuda_build",
    "cuda_available", "cuda_device_count", "gpu_name", "gpu_memory_gb", "gpu_capability",
    "mps_built", "mps_available", "in_container", "container_evidence", "cpu_model",
    "cpu_count_host", "cpu_count", "cpu_count_source", "torch_platform",
    # Added with the gradient-boosting models, at the end so the keys above keep their lines.
    "nvidia_gpus", "nvidia_gpus_source", "xgboost", "xgboost_cuda_build", "lightgbm", "catboost", "openmp_runtime",
)


def block(facts: dict, choice: DeviceChoice) -> dict:
    """The facts plus the device decision, in print order."""
    out = {key: facts.get(key) for key in BLOCK_KEYS}
    out["torch_threads"] = choice.torch_threads
    out["cuda_status"] = cuda_status(facts)
    out["mps_status"] = mps_status(facts)
    out["device_requested"] = choice.requested
    out["device_selected"] = choice.selected
    out["device_fell_back"] = choice.fell_back
    out["device_reason"] = choice.reason
    return out


def format_lines(values: dict) -> list[str]:
    return [f"{key}: {value}" for key, value in values.items()]


def format_json(values: dict) -> str:
    return json.dumps(values, indent=2, default=str)
