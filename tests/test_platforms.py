"""The platform table's choices for machines this box is not: the OS, CPU, macOS version and Rosetta
are handed in (mocked), and the test names say so. `make check-platforms` resolves the same rows
against the registry; these tests need no network."""

from __future__ import annotations

import re
import subprocess
import sys

import noxsupport  # scripts/noxsupport.py: what noxfile.py's sessions use (pytest's pythonpath)
import pytest

from roadrisk import doctor, environment, platforms
from roadrisk.device import choose
from roadrisk.platforms import PROJECT_TORCH, Unsupported, select

from .conftest import ROOT

SCRIPT = ROOT / "src" / "roadrisk" / "platforms.py"
LOCK = (ROOT / "requirements" / "constraints.txt").read_text()


def _pins(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        name = platforms._name(line)
        if name:
            found.setdefault(name, []).append(line)
    return found


def test_mocked_intel_mac_gets_torch_2_2_2_with_numpy_1_and_pandas_2():
    row = select("Darwin", "x86_64", "13.6")
    assert (row.torch, row.older, row.pythons[-1]) == ("2.2.2", True, "3.12")
    assert platforms.torch_pip_args(row, "cp312", [], platforms.CPU_INDEX)[0] == ["torch==2.2.2"]
    pins = _pins(platforms.constraints_for(row, LOCK))
    # The lock's numpy 2 / pandas 3 pins (every Python's line) give way to the row's companions.
    assert pins["numpy"] == ["numpy==1.26.4"] and pins["pandas"] == ["pandas==2.3.3"]
    assert pins["scipy"] == _pins(LOCK)["scipy"]
    assert platforms.companion_violations({"torch": "2.2.2", "numpy": "1.26.4"}) == []


def test_mocked_apple_silicon_macos_13_gets_torch_2_11_with_mps():
    for version in ("13.6.1", "12.3"):
        row = select("Darwin", "arm64", version)
        assert (row.torch, row.accelerator, row.older) == ("2.11.0", "MPS", True)
        assert "macOS 14+" in row.why
    assert platforms.constraints_for(row, LOCK) == LOCK.rstrip("\n") + "\n"


def test_mocked_apple_silicon_macos_15_gets_the_project_torch_from_pypi():
    row = select("Darwin", "arm64", "15.1")
    assert (row.torch, row.accelerator, row.older) == (PROJECT_TORCH, "MPS", False)
    assert platforms.torch_pip_args(row, "cp311", [], platforms.CPU_INDEX)[0] == [f"torch=={PROJECT_TORCH}"]
    assert select("Darwin", "arm64", "") is row  # mac_ver() silent: a current macOS


def test_mocked_linux_x86_64_cpu_from_a_wheelhouse_queries_no_pytorch_index(tmp_path):
    (tmp_path / f"torch-{PROJECT_TORCH}+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").touch()
    row = select("Linux", "x86_64", variant="")  # TORCH unset: the CPU build
    args, source = platforms.torch_pip_args(row, "cp311", [str(tmp_path)], platforms.CPU_INDEX)
    assert args == [f"torch=={PROJECT_TORCH}+cpu"] and str(tmp_path) in source
    # A wheel for another Python or architecture does not count: the index is still needed.
    assert "--extra-index-url" in platforms.torch_pip_args(row, "cp312", [str(tmp_path)], platforms.CPU_INDEX)[0]
    arm = select("Linux", "aarch64", variant="cpu")
    assert "--extra-index-url" in platforms.torch_pip_args(arm, "cp311", [str(tmp_path)], platforms.CPU_INDEX)[0]


def test_mocked_linux_x86_64_cpu_without_a_wheelhouse_uses_the_cpu_index_or_none():
    row = select("Linux", "x86_64", variant="cpu")
    assert platforms.torch_pip_args(row, "cp311", [], platforms.CPU_INDEX)[0] == [
        f"torch=={PROJECT_TORCH}+cpu", "--extra-index-url", platforms.CPU_INDEX]
    assert platforms.torch_pip_args(row, "cp311", [], "none")[0] == [f"torch=={PROJECT_TORCH}+cpu"]


def test_mocked_linux_x86_64_cuda_gets_pypis_cuda_wheel():
    row = select("Linux", "x86_64", variant="cuda")
    assert (row.requirement, row.accelerator) == (f"torch=={PROJECT_TORCH}", "CUDA")
    assert platforms.torch_pip_args(row, "cp311", [], platforms.CPU_INDEX)[0] == [f"torch=={PROJECT_TORCH}"]


@pytest.mark.parametrize("machine", ["aarch64", "arm64"])  # uname's spelling and Docker's TARGETARCH
def test_mocked_linux_aarch64_gets_the_cpu_build_unless_cuda(machine):
    cpu = select("Linux", machine, variant="cpu")
    assert (cpu.key, cpu.requirement) == ("linux-aarch64-cpu", f"torch=={PROJECT_TORCH}+cpu")
    assert select("Linux", machine, variant="cuda").requirement == f"torch=={PROJECT_TORCH}"


@pytest.mark.parametrize("system, machine, macos, variant, says", [
    ("Windows", "AMD64", "", "", "WSL2"),
    ("Linux", "ppc64le", "", "", "x86_64 and aarch64 only"),
    ("Linux", "x86_64", "", "rocm", "TORCH=cpu"),
    ("Darwin", "arm64", "15.0", "cuda", "Macs have no CUDA"),
    ("Darwin", "arm64", "12.2", "", "macOS 12.3 or later"),
])
def test_mocked_unsupported_platform_is_one_line_with_the_fix(system, machine, macos, variant, says):
    with pytest.raises(Unsupported) as info:
        select(system, machine, macos, variant=variant)
    assert says in str(info.value) and "\n" not in str(info.value)


def test_mocked_rosetta_python_is_refused_not_given_intel_torch():
    with pytest.raises(Unsupported) as info:
        select("Darwin", "x86_64", "14.4", translated=True)
    assert "Rosetta" in str(info.value) and "arm64 Python" in str(info.value)


def test_mocked_python_outside_a_rows_wheels_is_refused_with_the_fix():
    with pytest.raises(Unsupported, match=r"torch 2\.2\.2 .*Python 3\.10 to 3\.12.*PYTHON=python3\.12"):
        platforms.check_python(select("Darwin", "x86_64", "14.4"), "3.13.1")
    with pytest.raises(Unsupported, match="3.10 to 3.13"):
        platforms.check_python(select("Linux", "x86_64"), "3.9.18")
    platforms.check_python(select("Linux", "x86_64"), "3.13.0")


@pytest.mark.parametrize("flags, says", [
    (["--system", "Darwin", "--machine", "x86_64", "--macos", "14.4", "--rosetta"], "Rosetta"),
    (["--system", "Windows", "--machine", "AMD64"], "WSL2"),
])
def test_mocked_rosetta_and_unsupported_exit_nonzero_in_one_line_before_any_download(tmp_path, flags, says):
    """The script docker/Dockerfile runs: pip (here a stand-in that leaves a mark) must never start."""
    mark = tmp_path / "pip-ran"
    done = subprocess.run([sys.executable, str(SCRIPT), "install-torch", *flags, "--", "touch", str(mark)],
                          capture_output=True, text=True)
    assert done.returncode == 2 and not mark.exists()
    assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1 and says in done.stderr


def test_mocked_linux_aarch64_script_runs_pip_with_the_cpu_build(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "install-torch", "--system", "Linux", "--machine", "aarch64",
                           "--python", "3.11.9", "--variant", "cpu", "--", "echo", "pip", "install"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["pip", "install", f"torch=={PROJECT_TORCH}+cpu", "--extra-index-url",
                                   platforms.CPU_INDEX]


class _RecordingSession:
    """What noxsupport asks of a nox session, writing down each command instead of running it."""

    def __init__(self):
        self.ran = []

    def run(self, *args, **kwargs):
        self.ran.append(args)

    def log(self, *args):
        pass

    warn = log


def test_mocked_rosetta_host_venv_stops_in_one_line_before_any_download(monkeypatch, tmp_path):
    monkeypatch.setattr(noxsupport.platforms.platform, "system", lambda: "Darwin")
    monkeypatch.setattr(noxsupport.platforms.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(noxsupport.platforms.platform, "mac_ver", lambda: ("14.4", ("", "", ""), ""))
    monkeypatch.setattr(noxsupport.platforms, "rosetta", lambda: True)
    session = _RecordingSession()
    with pytest.raises(noxsupport.Problem) as stopped:
        noxsupport.ensure_host_venv(session, tmp_path / "host")
    assert session.ran == [] and not (tmp_path / "host").exists()
    assert "Rosetta" in str(stopped.value) and "\n" not in str(stopped.value)


def test_every_rows_torch_is_inside_pyprojects_range_and_the_lock_pins_no_torch():
    """The resolution check proves this against the registry; this is the offline half of it."""
    (torch_range,) = re.findall(r'^\s*"(torch[^"]*)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    bounds = dict(re.findall(r"(>=|<)([\d.]+)", torch_range))
    low, high = (platforms.version_tuple(bounds[op]) for op in (">=", "<"))
    for row in platforms.ROWS:
        assert low <= platforms.version_tuple(row.torch) < high, row.key
    assert "torch" not in _pins(LOCK)


def test_known_companion_catches_torch_2_2_with_numpy_2():
    problems = platforms.companion_violations({"torch": "2.2.2", "numpy": "2.4.6"})
    assert len(problems) == 1 and "NumPy 1.x" in problems[0]
    assert platforms.companion_violations({"torch": "2.13.0", "numpy": "2.4.6"}) == []


def test_docs_show_the_table_the_code_uses():
    assert platforms.markdown_table() in (ROOT / "docs" / "platforms.md").read_text()


@pytest.fixture
def mocked_machine(monkeypatch):
    def configure(system, machine, macos="", rosetta=False, torch=None):
        monkeypatch.setattr(environment.platform, "system", lambda: system)
        monkeypatch.setattr(environment.platform, "machine", lambda: machine)
        monkeypatch.setattr(environment.platform, "mac_ver", lambda: (macos, ("", "", ""), ""))
        monkeypatch.setattr(environment, "macos_translated", lambda: rosetta)
        monkeypatch.setattr(environment, "installed_torch", lambda: torch)
        return environment.collect(with_torch=False)

    return configure


def test_mocked_intel_mac_doctor_and_record_say_the_older_torch_and_why(mocked_machine):
    facts = mocked_machine("Darwin", "x86_64", "13.6", torch="2.2.2")
    block = doctor.block(facts, choose("cpu", False, facts))
    assert block["torch_platform"] == facts["torch_platform"]  # doctor and run.json print the same line
    assert f"torch 2.2.2, older than the project's {PROJECT_TORCH}: PyPI's last torch for Intel Macs" \
        in facts["torch_platform"]


def test_mocked_doctor_torch_platform_notes(mocked_machine):
    assert "older than" in mocked_machine("Darwin", "arm64", "13.5", torch="2.11.0")["torch_platform"]
    assert "project's default" in mocked_machine("Darwin", "arm64", "15.1", torch=PROJECT_TORCH)["torch_platform"]
    assert "project's default" in mocked_machine("Linux", "aarch64", torch=f"{PROJECT_TORCH}+cpu")["torch_platform"]
    assert "Rosetta" in mocked_machine("Darwin", "x86_64", "14.4", rosetta=True, torch="2.2.2")["torch_platform"]
    assert "installed by hand" in mocked_machine("Linux", "x86_64", torch="2.5.1+cpu")["torch_platform"]
