"""Device choice on machines this box is not: torch's backends are mocked, and the names say so."""

from __future__ import annotations

import pytest
import torch

from roadrisk import device, doctor, environment
from roadrisk.device import DeviceUnavailable, choose
from roadrisk.errors import EXIT_DEVICE_UNAVAILABLE


def test_mocked_mac_apple_silicon_auto_picks_mps(machine):
    facts = machine(os_name="Darwin", arch="arm64", mac_version="15.1", mps_built=True, mps_available=True)
    choice = choose("auto", False, facts)
    assert choice.selected == "mps" and not choice.fell_back
    assert "Metal" in choice.reason


def test_mocked_mac_docker_container_explains_why_no_mps_and_falls_back(machine):
    facts = machine(in_container=True, arch="aarch64")
    choice = choose("mps", False, facts)
    assert choice.selected == "cpu" and choice.fell_back
    assert "Linux container" in choice.reason and "Metal is a macOS host API" in choice.reason
    assert "Linux VM" in choice.reason and "/.dockerenv" in choice.reason
    block = doctor.block(facts, choice)
    assert block["mps_built"] is False and block["mps_available"] is False and block["in_container"] is True


def test_mocked_mac_docker_container_strict_refuses_with_exit_3(machine):
    facts = machine(in_container=True)
    with pytest.raises(DeviceUnavailable) as info:
        choose("mps", True, facts)
    assert info.value.exit_code == EXIT_DEVICE_UNAVAILABLE == 3
    assert "make run-native" in str(info.value) and "Linux container" in str(info.value)


def test_mocked_linux_host_without_mps_build(machine):
    choice = choose("mps", False, machine())
    assert choice.fell_back and "built without MPS" in choice.reason and "Linux build" in choice.reason


def test_mocked_mac_rosetta_python_mps_built_but_unavailable(machine):
    facts = machine(os_name="Darwin", arch="x86_64", mac_version="14.0", rosetta=True, mps_built=True)
    choice = choose("mps", False, facts)
    assert choice.fell_back and "Rosetta" in choice.reason and "built but unavailable" in choice.reason


def test_mocked_old_macos_mps_unavailable(machine):
    facts = machine(os_name="Darwin", arch="arm64", mac_version="12.1", mps_built=True)
    assert "older than 12.3" in choose("mps", False, facts).reason


def test_mocked_intel_mac_mps_unavailable(machine):
    facts = machine(os_name="Darwin", arch="x86_64", mac_version="13.0", mps_built=True)
    assert "not Apple silicon" in choose("mps", False, facts).reason


def test_mocked_cuda_machine_auto_picks_cuda_before_mps(machine):
    facts = machine(cuda=True, cuda_build="12.8")
    choice = choose("auto", False, facts)
    assert choice.selected == "cuda" and "H100" in choice.reason
    assert facts["gpu_capability"] == "9.0" and facts["gpu_memory_gb"] == 80.0


def test_mocked_cpu_only_build_cuda_request(machine):
    facts = machine()
    choice = choose("cuda", False, facts)
    assert choice.selected == "cpu" and choice.fell_back and "CPU-only" in choice.reason
    with pytest.raises(DeviceUnavailable):
        choose("cuda", True, facts)


def test_mocked_cuda_build_in_container_without_gpu(machine):
    facts = machine(in_container=True, cuda_build="12.8")
    assert "--gpus all" in choose("cuda", False, facts).reason


def test_mocked_cuda_build_no_driver(machine):
    assert "no NVIDIA GPU or driver" in choose("cuda", False, machine(cuda_build="12.8")).reason


def test_cpu_only_auto_says_why_each_accelerator_is_missing(machine):
    choice = choose("auto", False, machine())
    assert choice.selected == "cpu" and not choice.fell_back
    assert "no CUDA" in choice.reason and "MPS" in choice.reason


def test_cpu_only_model_on_a_gpu_request(machine):
    facts = machine(cuda=True, cuda_build="12.8")
    assert choose("auto", False, facts, "hgb", model_uses_torch=False).selected == "cpu"
    choice = choose("cuda", False, facts, "hgb", model_uses_torch=False)
    assert choice.fell_back and "hgb runs on the CPU only" in choice.reason


def test_threads_follow_usable_cpus():
    choice = device.apply_threads(choose("cpu", False, {}), 1)
    assert choice.torch_threads == 1 == torch.get_num_threads()
    device.apply_threads(choice, environment.usable_cpus()[0])


# ---------------------------------------------------------------- container and CPU facts (fake roots)

def _fake_root(tmp_path, files: dict):
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_container_detection_from_dockerenv(tmp_path, monkeypatch):
    monkeypatch.delenv("ROADRISK_IN_CONTAINER", raising=False)
    monkeypatch.delenv("container", raising=False)
    assert environment.detect_container(_fake_root(tmp_path, {".dockerenv": ""})) == (
        True, "/.dockerenv exists (Docker)")


def test_container_detection_from_cgroup_and_absence(tmp_path, monkeypatch):
    monkeypatch.delenv("ROADRISK_IN_CONTAINER", raising=False)
    monkeypatch.delenv("container", raising=False)
    root = _fake_root(tmp_path, {"proc/1/cgroup": "0::/kubepods/besteffort/pod1\n"})
    assert environment.detect_container(root) == (True, "/proc/1/cgroup mentions kubepods")
    (root / "proc/1/cgroup").write_text("0::/\n")
    assert environment.detect_container(root)[0] is False


@pytest.mark.parametrize("files, expected", [
    ({"sys/fs/cgroup/cpu.max": "150000 100000\n"}, 1.5),
    ({"sys/fs/cgroup/cpu.max": "max 100000\n"}, None),
    ({"sys/fs/cgroup/cpu/cpu.cfs_quota_us": "100000\n", "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n"}, 1.0),
    ({"sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n", "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n"}, None),
], ids=["v2-quota", "v2-max", "v1-quota", "v1-unlimited"])
def test_cgroup_cpu_limit(tmp_path, files, expected):
    assert environment.cgroup_cpu_limit(_fake_root(tmp_path, files)) == expected


def test_usable_cpus_is_capped_by_the_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(environment.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    count, how = environment.usable_cpus(_fake_root(tmp_path, {"sys/fs/cgroup/cpu.max": "150000 100000"}))
    assert count == 2 and "cgroup quota 1.5" in how


def test_matmul_precision_is_tf32_on_cuda_only():
    assert device.matmul_precision_for("cuda") == "high"
    assert device.matmul_precision_for("mps") == device.matmul_precision_for("cpu") == "highest"


def test_matmul_precision_is_set_for_the_fit_and_restored():
    before = torch.get_float32_matmul_precision()
    with device.float32_matmul_precision("medium"):
        assert torch.get_float32_matmul_precision() == "medium"
    assert torch.get_float32_matmul_precision() == before
    with pytest.raises(RuntimeError), device.float32_matmul_precision("high"):
        raise RuntimeError("a failed fit")
    assert torch.get_float32_matmul_precision() == before
