"""The container environments against a real Docker engine, driven the way a user drives them (make).

Skipped, with the reason printed, where no engine answers. The GPU image cannot run here (no NVIDIA
GPU): it is linted, and its run is checked to fail clearly without an NVIDIA runtime.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import noxsupport
import pytest

from .conftest import ROOT

pytestmark = pytest.mark.docker


def _docker_cli() -> str | None:
    cli = noxsupport.docker_cli()  # the CLI the nox sessions use
    return cli if shutil.which(cli) else None


DOCKER = _docker_cli()
ENGINE = bool(DOCKER) and subprocess.run([DOCKER, "version"], capture_output=True).returncode == 0
# In CI (CI=true, set by .ci/run) a missing engine is a broken provisioning step: the tests run and
# fail rather than skip, so a green CI always means the containers were really exercised.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_skip_without_engine = pytest.mark.skipif(not ENGINE and not IN_CI, reason="no Docker engine answers `docker "
                                          "version` (CI provisions one in .ci/run; locally start Docker)")


def needs_engine(test):
    """A test that builds an image or starts a container: skipped without an engine, and slow (make test-fast
    leaves it out; make test runs it)."""
    return pytest.mark.slow(_skip_without_engine(test))


def test_ci_has_a_docker_engine():
    if not IN_CI:
        pytest.skip("not in CI (CI is not true): a machine without Docker skips the container tests")
    assert ENGINE, "CI=true but no Docker engine answers `docker version`: .ci/run must provision one"


def make(target: str, tmp_env: dict, **variables: str) -> subprocess.CompletedProcess:
    args = ["make", target, *(f"{k}={v}" for k, v in variables.items())]
    return subprocess.run(args, cwd=ROOT, env={**os.environ, **tmp_env}, capture_output=True, text=True,
                          timeout=1500)


def _records(runs: Path, label: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(runs.glob(f"{label}/*/run.json"))]


@pytest.fixture(scope="module")
def shared_dirs(tmp_path_factory):
    """Runs and cache folders any UID can write, as a user's own folders are to them."""
    runs = tmp_path_factory.mktemp("docker-runs")
    cache = tmp_path_factory.mktemp("docker-cache")
    for folder in (runs, cache):
        folder.chmod(0o777)
    return {"RUNS_DIR": str(runs), "ROADRISK_CACHE_DIR": str(cache)}


@pytest.fixture(scope="module")
def cpu_run(shared_dirs):
    result = make("run-docker", shared_dirs, PROFILE="smoke", HOST_UID="4321", HOST_GID="4321")
    return result, Path(shared_dirs["RUNS_DIR"])


@needs_engine
def test_run_docker_smoke_is_complete_and_labelled(cpu_run):
    result, runs = cpu_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (record,) = _records(runs, "docker")
    assert record["status"] == "complete" and record["label"] == "docker"
    assert record["environment"]["in_container"] is True
    assert record["device"]["selected"] == "cpu" and record["git_commit"]
    assert record["packages"]["torch"].endswith("+cpu")


@needs_engine
def test_bind_mounted_record_is_owned_by_the_caller_uid(cpu_run):
    _, runs = cpu_run
    files = [p for p in (runs / "docker").rglob("*") if p.is_file()]
    assert files and {p.stat().st_uid for p in files} == {4321}, {str(p): p.stat().st_uid for p in files}


@needs_engine
def test_default_owner_is_the_invoking_user(shared_dirs):
    result = make("run-docker", shared_dirs, PROFILE="smoke", MODEL="hgb", ARGS="--label docker-owner")
    assert result.returncode == 0, result.stderr[-2000:]
    runs = Path(shared_dirs["RUNS_DIR"])
    assert {p.stat().st_uid for p in (runs / "docker-owner").rglob("*")} == {os.getuid()}


@needs_engine
def test_run_docker_mps_tells_the_whole_story(shared_dirs):
    result = make("run-docker-mps", shared_dirs, PROFILE="smoke")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for line in ("mps_built: False", "mps_available: False", "in_container: True", "device_selected: cpu",
                 "device_fell_back: True"):
        assert line in result.stdout, line
    (record,) = _records(Path(shared_dirs["RUNS_DIR"]), "docker-mps")
    device = record["device"]
    assert record["status"] == "complete" and device["requested"] == "mps" and device["fell_back"] is True
    assert device["mps_built"] is False and device["in_container"] is True
    assert "Metal is a macOS host API" in device["reason"] and "Linux VM" in device["reason"]


@needs_engine
def test_strict_mps_in_the_container_exits_3_and_says_what_to_run(shared_dirs, cpu_run):
    result = subprocess.run([DOCKER, "run", "--rm", "--network", "none", "roadrisk:mps", "train", "--profile",
                             "smoke", "--device", "mps", "--strict-device", "--runs-dir", "/tmp/runs"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "make run-native" in result.stdout and "Traceback" not in result.stdout + result.stderr
    through_make = make("run-docker-mps", shared_dirs, PROFILE="smoke", ARGS="--strict-device")
    assert through_make.returncode != 0 and "exit code 3" in through_make.stdout + through_make.stderr


@needs_engine
def test_cpu_image_has_no_cuda_libraries(cpu_run):
    packages = subprocess.run([DOCKER, "run", "--rm", "--entrypoint", "pip", "roadrisk:cpu", "list",
                               "--format", "freeze"], capture_output=True, text=True, timeout=300)
    assert packages.returncode == 0, packages.stderr
    names = [line.split("==")[0].lower() for line in packages.stdout.splitlines()]
    assert "torch" in names and not [n for n in names if n.startswith(("nvidia", "triton", "cuda"))]
    libs = subprocess.run([DOCKER, "run", "--rm", "--entrypoint", "sh", "roadrisk:cpu", "-c",
                           "find / -xdev \\( -name 'libcudart*' -o -name 'libcublas*' -o -name 'libcudnn*' \\) "
                           "2>/dev/null | head -5"], capture_output=True, text=True, timeout=300)
    assert libs.stdout.strip() == ""


@needs_engine
def test_cpu_limit_and_read_only_data_are_respected(shared_dirs, cpu_run, small_data):
    result = make("run-docker", shared_dirs, PROFILE="smoke", MODEL="hgb", CPUS="1", DATA_DIR=str(small_data),
                  ARGS="--label docker-limited")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (record,) = _records(Path(shared_dirs["RUNS_DIR"]), "docker-limited")
    # hgb never loads torch: the thread count it runs with is the config's, from the cgroup quota
    assert record["config"]["threads"] == 1 and "cgroup quota 1" in record["environment"]["cpu_count_source"]
    assert record["data"]["source"] == "directory" and record["data"]["path"] == "/data"
    assert "--network none" in result.stdout + result.stderr and ":/data:ro" in result.stdout + result.stderr


@needs_engine
def test_gpu_run_fails_clearly_without_an_nvidia_runtime(shared_dirs):
    runtimes = subprocess.run([DOCKER, "info", "--format", "{{json .Runtimes}}"], capture_output=True, text=True)
    if "nvidia" in runtimes.stdout:
        pytest.skip("this engine has an NVIDIA runtime: the failure path cannot be shown here")
    result = make("run-docker-gpu", shared_dirs, PROFILE="smoke")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "no NVIDIA runtime" in output and "NVIDIA Container Toolkit" in output


def test_no_docker_cli_is_one_clear_line(tmp_path):
    result = make("run-docker", {"DOCKER": str(tmp_path / "no-docker-here"), "RUNS_DIR": str(tmp_path)},
                  PROFILE="smoke")
    assert result.returncode != 0 and "no docker CLI" in result.stdout + result.stderr
    assert not list(tmp_path.glob("docker/*"))


@pytest.mark.skipif(not DOCKER, reason="no docker CLI on this machine")
def test_engine_not_running_is_one_clear_line(tmp_path):
    result = make("run-docker", {"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock", "RUNS_DIR": str(tmp_path)},
                  PROFILE="smoke")
    assert result.returncode != 0 and "Docker engine is not running" in result.stdout + result.stderr


def test_dockerfiles_pass_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(os.sys.executable).parent / "hadolint")
    files = sorted(str(p) for p in (ROOT / "docker").glob("Dockerfile*"))
    result = subprocess.run([hadolint, *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="docker-compose (v1) not installed")
def test_compose_file_is_valid_for_all_three_services():
    result = subprocess.run(["docker-compose", "-f", "docker/docker-compose.yml", "--profile", "mps", "--profile",
                             "gpu", "config", "--services"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == {"roadrisk", "roadrisk-mps", "roadrisk-gpu"}


def _script(*args: str, path_prefix: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if path_prefix:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env['PATH']}"
    return subprocess.run(["bash", "scripts/docker-run.sh", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


def test_docker_run_script_help_lists_every_option():
    result = _script("--help")
    assert result.returncode == 0
    for option in ("--profile", "--model", "--device", "--strict-device", "--cpu", "--gpu", "--mps", "--native",
                   "--data-dir", "--cpus", "--dry-run"):
        assert option in result.stdout, option
    bad = _script("--bogus")
    assert bad.returncode == 2 and "unknown option --bogus" in bad.stderr


def test_docker_run_script_picks_cpu_without_nvidia(tmp_path):
    (tmp_path / "nvidia-smi").write_text("#!/bin/sh\nexit 9\n")
    (tmp_path / "nvidia-smi").chmod(0o755)
    result = _script("--dry-run", path_prefix=tmp_path)
    assert result.returncode == 0 and "image cpu" in result.stdout


def test_docker_run_script_mocked_apple_silicon_explains_and_offers_native(tmp_path):
    (tmp_path / "uname").write_text('#!/bin/sh\ncase "$1" in -s) echo Darwin;; -m) echo arm64;; esac\n')
    (tmp_path / "uname").chmod(0o755)
    result = _script("--dry-run", path_prefix=tmp_path)
    assert result.returncode == 0
    assert "Metal" in result.stdout and "Linux VM" in result.stdout and "--native" in result.stdout
    assert "image mps" in result.stdout
    native = _script("--native", "--dry-run", path_prefix=tmp_path)
    assert "training on the host" in native.stdout


@needs_engine
def test_failed_build_is_one_clear_line_and_records_nothing(tmp_path):
    runs = tmp_path / "runs"
    result = make("run-docker", {"RUNS_DIR": str(runs), "BASE_IMAGE": "roadrisk-no-such-base:none"}, PROFILE="smoke")
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "building roadrisk:cpu failed" in output and "BASE_IMAGE" in output
    assert not list(runs.rglob("run.json"))


@needs_engine
@pytest.mark.skipif(not shutil.which("docker-compose"), reason="docker-compose (v1) not installed")
def test_compose_runs_the_mps_service_as_the_docs_say(cpu_run, tmp_path):
    """`docker compose -f docker/docker-compose.yml --profile mps run ...` with the images make built."""
    runs = tmp_path / "runs"
    runs.mkdir()
    runs.chmod(0o777)
    env = {**os.environ, "HOST_UID": str(os.getuid()), "HOST_GID": str(os.getgid()), "RUNS_DIR": str(runs)}
    result = subprocess.run(["docker-compose", "-f", "docker/docker-compose.yml", "--profile", "mps", "run", "--rm",
                             "roadrisk-mps", "train", "--profile", "smoke", "--model", "hgb", "--device", "mps",
                             "--label", "compose-mps-test", "--runs-dir", "/work/runs"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "device_fell_back: True" in result.stdout and "in_container: True" in result.stdout
    (record,) = _records(runs, "compose-mps-test")
    assert record["status"] == "complete" and record["device"]["requested"] == "mps"
