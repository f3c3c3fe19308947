"""Which device a run trains on, and the reason, said in words a user can act on.

``choose`` is a pure function of the environment facts (``environment.collect``) so that every
combination (a Mac, a Mac's Docker container, an NVIDIA box, a plain CPU) can be tested by
handing it the facts that machine would report.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from .errors import DeviceUnavailable
from .platforms import version_tuple

DEVICES = ("auto", "cpu", "cuda", "mps")

MPS_IN_CONTAINER = (
    "MPS cannot exist inside a Linux container: Metal is a macOS host API and Docker Desktop runs "
    "containers in a Linux VM with no Metal, so the Linux build of PyTorch here has no MPS"
)


@dataclass(frozen=True)
class DeviceChoice:
    requested: str
    selected: str
    strict: bool
    fell_back: bool
    reason: str
    torch_threads: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


NOT_LOADED = "not checked: this model runs on the CPU only, so torch was not loaded"


def mps_status(facts: dict) -> str:
    """Why MPS is or is not usable here, most specific cause first."""
    if facts.get("torch") is None and not facts.get("in_container"):
        return NOT_LOADED
    if facts.get("mps_available"):
        return "MPS available (Apple GPU through Metal)"
    if not facts.get("mps_built"):
        if facts.get("in_container"):
            return f"{MPS_IN_CONTAINER} (container detected: {facts.get('container_evidence')})"
        if facts.get("os") != "Darwin":
            return f"PyTorch built without MPS: MPS exists only in macOS wheels and this is a {facts.get('os')} build"
        return "PyTorch built without MPS: install the macOS arm64 wheel of torch from PyPI"
    if facts.get("rosetta"):
        return "MPS built but unavailable: this is an x86-64 Python under Rosetta; use a native arm64 Python"
    if facts.get("machine") not in ("arm64", "aarch64"):
        return f"MPS built but unavailable: this Mac is not Apple silicon ({facts.get('machine')})"
    version = str(facts.get("macos_version") or "")
    if version and version_tuple(version) < (12, 3):
        return f"MPS built but unavailable: macOS {version} is older than 12.3"
    return "MPS built but unavailable: torch.backends.mps.is_available() is False"


def cuda_status(facts: dict) -> str:
    if facts.get("torch") is None:
        if facts.get("nvidia_gpus"):  # a GBDT run: no torch, but the driver's own count
            return f"torch not loaded (this model does not use it); {nvidia_seen(facts)}"
        return NOT_LOADED
    if facts.get("cuda_available"):
        return f"CUDA available: {facts.get('gpu_name')}"
    if facts.get("torch_cuda_build") in (None, "none"):
        return "no CUDA device: this PyTorch build is CPU-only (install a CUDA build: make run-native TORCH=cuda)"
    if facts.get("in_container"):
        return (
            "no CUDA device visible in this container: run it with --gpus all and the NVIDIA "
            "Container Toolkit (make run-docker-gpu)"
        )
    return f"no CUDA device: PyTorch has CUDA {facts.get('torch_cuda_build')} but finds no NVIDIA GPU or driver"


_INSTEAD = {
    "mps": "train on the macOS host instead: make run-native DEVICE=mps",
    "cuda": "use a machine with an NVIDIA GPU: make run-native TORCH=cuda DEVICE=cuda, or make run-docker-gpu",
}


def choose(requested: str, strict: bool, facts: dict, model: str = "", model_uses_torch: bool = True) -> DeviceChoice:
    """Pick the device for ``requested`` (auto|cpu|cuda|mps). Raises DeviceUnavailable under strict."""
    if requested not in DEVICES:
        raise ValueError(requested)
    if requested == "cpu":
        return DeviceChoice(requested, "cpu", strict, False, "cpu requested")
    if model in BOOSTING_LIBRARIES:
        return _choose_boosting(requested, strict, facts, model)
    if not model_uses_torch:
        reason = f"model {model} runs on the CPU only (scikit-learn)"
        if requested == "auto":
            return DeviceChoice(requested, "cpu", strict, False, reason)
        return _unavailable(requested, strict, reason)
    if requested == "auto":
        if facts.get("cuda_available"):
            return DeviceChoice(requested, "cuda", strict, False, f"auto: {cuda_status(facts)}")
        if facts.get("mps_available"):
            return DeviceChoice(requested, "mps", strict, False, f"auto: no CUDA; {mps_status(facts)}")
        reason = f"auto: using CPU; {cuda_status(facts)}; {mps_status(facts)}"
        return DeviceChoice(requested, "cpu", strict, False, reason)
    available = facts.get("cuda_available") if requested == "cuda" else facts.get("mps_available")
    status = cuda_status(facts) if requested == "cuda" else mps_status(facts)
    if available:
        return DeviceChoice(requested, requested, strict, False, status)
    return _unavailable(requested, strict, status)


def _unavailable(requested: str, strict: bool, why: str, fix: str | None = None) -> DeviceChoice:
    if strict:
        raise DeviceUnavailable(
            f"--device {requested} is unavailable and --strict-device is set: {why}. Fix: {fix or _INSTEAD[requested]}"
        )
    return DeviceChoice(requested, "cpu", strict, True, f"requested {requested}, fell back to CPU: {why}")


# ---------------------------------------------------------------- the gradient-boosting libraries

# Model -> the library that trains it. They drive CUDA themselves (no torch), and none has a Metal backend.
BOOSTING_LIBRARIES = {"xgb": "xgboost", "lgbm": "lightgbm", "catboost": "catboost"}
NO_METAL = "no Metal backend"
LIGHTGBM_NO_CUDA = "the lightgbm wheel has no CUDA build"


def nvidia_seen(facts: dict) -> str:
    return f"{facts.get('nvidia_gpus') or 0} NVIDIA GPU(s) ({facts.get('nvidia_gpus_source') or 'not probed'})"


def boosting_cuda(model: str, facts: dict) -> tuple[bool, str]:
    """Whether ``model``'s library can train on CUDA here, and why (or why not), in words a user can act on."""
    library = BOOSTING_LIBRARIES[model]
    if model == "lgbm":
        return False, f"{LIGHTGBM_NO_CUDA} (PyPI's lightgbm has CPU and OpenCL builds only), so lgbm trains on the CPU"
    if facts.get("os") == "Darwin":
        return False, f"{library} on a Mac: Macs have no CUDA, and {library} has {NO_METAL}, so it trains on the CPU"
    if model == "xgb" and facts.get("xgboost_cuda_build") is False:
        return False, ("this xgboost is the CPU-only build (xgboost-cpu, the Linux CPU install): the CUDA build is "
                       "PyPI's xgboost (make run-native TORCH=cuda, or make run-docker-gpu)")
    if facts.get("torch") is not None:  # torch was loaded anyway (doctor): its answer is the most precise
        gpus = bool(facts.get("cuda_available"))
        seen = cuda_status(facts)
    else:
        gpus = bool(facts.get("nvidia_gpus"))
        seen = nvidia_seen(facts)
    if not gpus:
        hint = " (run the container with --gpus all: make run-docker-gpu)" if facts.get("in_container") else ""
        return False, f"no CUDA device for {library}: {seen}{hint}"
    how = 'device="cuda"' if model == "xgb" else 'task_type="GPU"'
    return True, f"{library} on CUDA ({how}): {seen}"


def _choose_boosting(requested: str, strict: bool, facts: dict, model: str) -> DeviceChoice:
    library = BOOSTING_LIBRARIES[model]
    fix = f"use --device cpu, or a torch model (--model tabm or realmlp) for {requested}"
    if requested == "mps":
        where = "the CPU" if model == "lgbm" else "the CPU or CUDA"
        return _unavailable(requested, strict, f"{NO_METAL}: {library} cannot train on an Apple GPU (MPS), only on "
                                               f"{where}", fix)
    usable, why = boosting_cuda(model, facts)
    if usable:
        return DeviceChoice(requested, "cuda", strict, False, why if requested == "cuda" else f"auto: {why}")
    if requested == "cuda":
        return _unavailable(requested, strict, why, fix if model == "lgbm" else None)
    if facts.get("os") == "Darwin" or facts.get("mps_available"):
        why = f"{library} has {NO_METAL}, so it trains on the CPU on a Mac"
    return DeviceChoice(requested, "cpu", strict, False, f"auto: using CPU; {why}")


def apply_threads(choice: DeviceChoice, cpu_count: int) -> DeviceChoice:
    """Pin torch's intra-op threads to the CPUs this process may use (not the host's cores)."""
    import torch

    torch.set_num_threads(max(1, int(cpu_count)))
    return DeviceChoice(**{**choice.as_dict(), "torch_threads": torch.get_num_threads()})


# ---------------------------------------------------------------- float32 matmul precision (TF32)

PRECISIONS = ("highest", "high", "medium")

# Models whose library switches TF32 off for its own fit and predict, so a TF32 choice of ours never reaches
# their matmuls: pytabkit's RealMLP (NNAlgInterface.fit/predict and NNCreator.setup_from_dataset set
# ``torch.backends.cuda.matmul.allow_tf32 = False``). Recording "high" for them would describe a run that
# did not happen. TabM (pytabkit's own loop, no Lightning) leaves the flags alone.
LIBRARY_TURNS_TF32_OFF = {"realmlp": "pytabkit's RealMLP sets torch.backends.cuda.matmul.allow_tf32 = False "
                                     "for its fit and predict"}


def matmul_precision_for(device: str, model: str = "") -> str:
    """torch's float32 matmul precision for a device: "high" (TF32 tensor cores) on CUDA, where it is
    the cheap half of the speed-up and RMSE does not move (docs/benchmarks.md §4); "highest" (plain
    fp32) elsewhere: MPS has no TF32, and on some CPUs "high" lets oneDNN use bf16 kernels. "highest"
    also for a model whose library turns TF32 off itself (``LIBRARY_TURNS_TF32_OFF``)."""
    if model in LIBRARY_TURNS_TF32_OFF:
        return "highest"
    return "high" if device == "cuda" else "highest"


@contextmanager
def float32_matmul_precision(precision: str, device: str = "cpu") -> Iterator[None]:
    """Run a fit under ``precision`` and put torch's process-wide setting back afterwards.

    On CUDA, TF32 is switched on with the legacy flag ``torch.backends.cuda.matmul.allow_tf32``, over a
    plain-fp32 base: that is the flag pytabkit saves, clears and restores around RealMLP's fit and
    predict, and torch >= 2.9 refuses ``torch.get_float32_matmul_precision()`` (which Lightning's CUDA
    accelerator calls while setting up every fit) once the new API has set oneDNN to TF32 and the
    legacy flag has then set cuBLAS to plain fp32 ("mix of the legacy and new APIs"). With oneDNN left
    at plain fp32 and only the cuBLAS flag moving, every state pytabkit leaves is one torch can report.
    On CUDA "medium" and "high" both mean TF32 cuBLAS matmuls. Elsewhere (CPU, MPS) the new API as
    before: nothing there reads the precision back during a fit."""
    import torch

    before = torch.get_float32_matmul_precision()
    if device.startswith("cuda") and precision != "highest":
        torch.set_float32_matmul_precision("highest")
        torch.backends.cuda.matmul.allow_tf32 = True
    else:
        torch.set_float32_matmul_precision(precision)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)
