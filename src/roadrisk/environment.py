"""Facts about the machine a run happens on: container, CPUs, and the accelerators torch sees.

Read once per process (``collect``); the doctor block, ``train.log`` and ``run.json`` all print
this one dictionary, so the three can never disagree.
"""

from __future__ import annotations

import math
import os
import platform
import sys
from pathlib import Path

from . import platforms

# True when an x86-64 Python runs under Rosetta on Apple silicon (MPS is then unusable); the platform
# table asks the same question before installing torch.
from .platforms import rosetta as macos_translated


def detect_container(root: Path = Path("/")) -> tuple[bool, str]:
    """Whether this process runs inside a Linux container, and the evidence for the answer."""
    if os.environ.get("ROADRISK_IN_CONTAINER"):
        return True, "ROADRISK_IN_CONTAINER is set (by the roadrisk image)"
    if (root / ".dockerenv").exists():
        return True, "/.dockerenv exists (Docker)"
    if (root / "run/.containerenv").exists():
        return True, "/run/.containerenv exists (Podman)"
    if os.environ.get("container"):
        return True, f"container={os.environ['container']} in the environment"
    try:
        cgroup = (root / "proc/1/cgroup").read_text()
    except OSError:
        cgroup = ""
    for marker in ("docker", "kubepods", "containerd", "libpod", "lxc"):
        if marker in cgroup:
            return True, f"/proc/1/cgroup mentions {marker}"
    return False, "no container markers (/.dockerenv, /run/.containerenv, cgroup)"


def cgroup_cpu_limit(root: Path = Path("/")) -> float | None:
    """The CPU quota of this cgroup in CPUs (v2 ``cpu.max`` or v1 ``cfs_quota_us``), or None."""
    try:
        quota, period = (root / "sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int((root / "sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            return quota / period
    except (OSError, ValueError):
        pass
    return None


def usable_cpus(root: Path = Path("/")) -> tuple[int, str]:
    """CPUs this process may really use: affinity mask capped by the cgroup quota."""
    try:
        affinity = len(os.sched_getaffinity(0))
        how = f"affinity {affinity}"
    except AttributeError:  # macOS has no sched_getaffinity
        affinity = os.cpu_count() or 1
        how = f"os.cpu_count {affinity}"
    limit = cgroup_cpu_limit(root)
    if limit is not None and math.ceil(limit) < affinity:
        return max(1, math.ceil(limit)), f"cgroup quota {limit:g} CPUs ({how})"
    return affinity, how + (f", cgroup quota {limit:g}" if limit is not None else ", no cgroup quota")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            import subprocess

            return subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
            ).stdout.strip() or platform.processor()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


def torch_facts() -> dict:
    """What torch can see. Imported lazily: ``doctor`` must answer even where torch is broken."""
    import torch

    facts: dict = {
        "torch": torch.__version__,
        "torch_cuda_build": torch.version.cuda or "none",
        "cuda_available": bool(torch.cuda.is_available()),
        "cuda_device_count": int(torch.cuda.device_count()) if torch.cuda.is_available() else 0,
        "gpu_name": "none",
        "gpu_memory_gb": "none",
        "gpu_capability": "none",
        "mps_built": bool(torch.backends.mps.is_built()),
        "mps_available": bool(torch.backends.mps.is_available()),
    }
    if facts["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        facts["gpu_name"] = props.name
        facts["gpu_memory_gb"] = round(props.total_memory / 2**30, 1)
        facts["gpu_capability"] = f"{props.major}.{props.minor}"
    return facts


def installed_torch() -> str | None:
    """The installed torch's version, read from its metadata: no import, so an hgb run stays fast."""
    from importlib import metadata

    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def nvidia_gpus() -> tuple[int, str]:
    """NVIDIA GPUs this process may use, seen without torch (xgboost and catboost drive CUDA themselves, so
    a GBDT run never loads torch): ``nvidia-smi -L``, narrowed by CUDA_VISIBLE_DEVICES as CUDA narrows it."""
    import shutil
    import subprocess

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0, f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0, "no nvidia-smi on PATH (no NVIDIA driver, or a container started without --gpus)"
    try:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        return 0, f"nvidia-smi -L failed: {exc}"
    count = sum(line.startswith("GPU ") for line in listed.stdout.splitlines())
    if visible is not None:
        count = min(count, len([d for d in visible.split(",") if d.strip()]))
        return count, f"nvidia-smi -L, CUDA_VISIBLE_DEVICES={visible}"
    return count, "nvidia-smi -L"


# The gradient-boosting libraries: (module, the distributions that provide it). Read from their metadata,
# never imported: importing xgboost or lightgbm on a Mac without libomp fails, and doctor must still answer.
BOOSTING = (("xgboost", ("xgboost", "xgboost-cpu")), ("lightgbm", ("lightgbm",)), ("catboost", ("catboost",)))


def boosting_facts(system: str | None = None) -> dict:
    """Each boosting library's installed version (and xgboost's build), and whether the OpenMP runtime that
    xgboost's and lightgbm's wheels load is on this machine."""
    from importlib import metadata

    system = system or platform.system()
    facts: dict = {}
    for module, distributions in BOOSTING:
        found = None
        for distribution in distributions:
            try:
                found = (distribution, metadata.version(distribution))
                break
            except metadata.PackageNotFoundError:
                continue
        if found is None:
            facts[module] = "not installed"
        elif found[0] == "xgboost-cpu":
            facts[module] = f"{found[1]} (xgboost-cpu: the CPU-only build)"
        else:
            facts[module] = found[1]
    installed = facts["xgboost"] != "not installed"
    # PyPI's Linux xgboost wheel is built with CUDA; xgboost-cpu and the macOS wheels are not.
    facts["xgboost_cuda_build"] = installed and system == "Linux" and "xgboost-cpu" not in facts["xgboost"]
    facts["openmp_runtime"] = openmp_runtime(system)
    return facts


# Where xgboost's and lightgbm's macOS wheels look for libomp: Homebrew's prefixes on Apple silicon and Intel.
MACOS_LIBOMP = ("/opt/homebrew/opt/libomp/lib/libomp.dylib", "/usr/local/opt/libomp/lib/libomp.dylib")


def openmp_runtime(system: str) -> str:
    if system == "Darwin":
        found = next((path for path in MACOS_LIBOMP if Path(path).is_file()), None)
        if found:
            return f"found: {found}"
        return "missing: xgboost and lightgbm cannot load without it. Fix: brew install libomp"
    if system == "Linux":
        import ctypes.util

        if ctypes.util.find_library("gomp"):
            return "found: libgomp.so.1"
        return "missing: lightgbm cannot load without libgomp.so.1. Fix: apt-get install libgomp1"
    return "not checked on " + (system or "this OS")


# What the torch fields hold when torch was not loaded: a scikit-learn model's run has no use for it,
# and importing it cost ~1 s of a 3-second run.
TORCH_NOT_LOADED = {key: None for key in ("torch", "torch_cuda_build", "cuda_available", "cuda_device_count", "gpu_name",
                                          "gpu_memory_gb", "gpu_capability", "mps_built", "mps_available")}


def collect(with_torch: bool = True) -> dict:
    """The environment block, in the order it is printed (torch's fields None when ``with_torch`` is off)."""
    in_container, container_how = detect_container()
    cpus, cpus_how = usable_cpus()
    facts: dict = {
        "python": platform.python_version(),
        "os": platform.system(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "macos_version": platform.mac_ver()[0] or "none",
        "rosetta": macos_translated(),
        "in_container": in_container,
        "container_evidence": container_how,
        "cpu_model": cpu_model(),
        "cpu_count_host": os.cpu_count() or 1,
        "cpu_count": cpus,
        "cpu_count_source": cpus_how,
    }
    facts.update(torch_facts() if with_torch else TORCH_NOT_LOADED)
    facts["nvidia_gpus"], facts["nvidia_gpus_source"] = nvidia_gpus()
    facts.update(boosting_facts(facts["os"]))
    # Whether this platform forced an older torch than the project's, and why (docs/platforms.md).
    facts["torch_platform"] = platforms.torch_note(facts["os"], facts["machine"], platform.mac_ver()[0],
                                                   facts["rosetta"], installed_torch())
    return facts
