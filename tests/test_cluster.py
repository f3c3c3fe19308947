"""`make run-cluster` on a real Docker engine: compose starts a Ray head and two workers from the CPU image
with Ray, the smoke sweep runs on them, every record comes back to the runs folder, the folds ran on more
than one node, and nothing of the cluster is left behind, also when the driver fails.

Skipped where no engine answers (CI provisions one: .ci/run); one cluster run costs about a minute here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT
from .test_docker import DOCKER, make, needs_engine

pytestmark = [pytest.mark.docker, pytest.mark.e2e]

PROJECT = "roadrisk-cluster"  # noxfile.py's CLUSTER_PROJECT: compose labels every container and network with it
SWEEP = "smoke-cpu"  # the name in sweeps/smoke-cpu.toml, the spec make run-cluster runs


def _writable_dirs(tmp_path_factory, name: str) -> dict:
    runs, cache = tmp_path_factory.mktemp(f"{name}-runs"), tmp_path_factory.mktemp(f"{name}-cache")
    for folder in (runs, cache):
        folder.chmod(0o777)  # any HOST_UID may write, as a user's own folders are to them
    return {"RUNS_DIR": str(runs), "ROADRISK_CACHE_DIR": str(cache)}


def _left_behind() -> list[str]:
    """Containers and networks of the cluster's compose project that still exist."""
    label = f"label=com.docker.compose.project={PROJECT}"
    containers = subprocess.run([DOCKER, "ps", "--all", "--quiet", "--filter", label], capture_output=True, text=True)
    networks = subprocess.run([DOCKER, "network", "ls", "--quiet", "--filter", label], capture_output=True, text=True)
    return containers.stdout.split() + networks.stdout.split()


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory):
    dirs = _writable_dirs(tmp_path_factory, "cluster")
    result = make("run-cluster", dirs)
    return result, Path(dirs["RUNS_DIR"])


def _sweep(runs: Path) -> dict:
    return json.loads((runs / "cluster" / SWEEP / "sweep.json").read_text())


@needs_engine
def test_cluster_runs_the_smoke_sweep_to_completion(cluster_run):
    result, runs = cluster_run
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    sweep = _sweep(runs)
    assert sweep["status"] == "complete" and sweep["engine"]["engine"] == "ray" and sweep["engine"]["nodes"] == 3
    members = sweep["members"]
    assert members and {m["status"] for m in members} == {"complete"}
    for member in members:  # the driver wrote them at /work/runs in the head: the runs folder here
        record = json.loads((runs / Path(member["run_dir"]).relative_to("/work/runs") / "run.json").read_text())
        assert record["status"] == "complete", member["id"]


@needs_engine
def test_cluster_spreads_the_folds_over_more_than_one_node(cluster_run):
    result, runs = cluster_run
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    folds = [fold for member in _sweep(runs)["members"] for fold in member["folds"]]
    nodes = {fold["node_id"] for fold in folds}
    assert len(nodes) >= 2, folds
    assert "folds on 2 nodes" in result.stdout + result.stderr  # what make run-cluster shows the user


@needs_engine
def test_cluster_records_belong_to_the_caller_and_nothing_is_left_running(cluster_run):
    _, runs = cluster_run
    files = [p for p in (runs / "cluster").rglob("*") if p.is_file()]
    assert files and {p.stat().st_uid for p in files} == {os.getuid()}
    assert _left_behind() == []


@needs_engine
def test_a_failing_driver_still_takes_the_cluster_down(tmp_path_factory, cluster_run):
    result = make("run-cluster", _writable_dirs(tmp_path_factory, "cluster-fail"), ARGS="--no-such-flag")
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "--no-such-flag" in output and "3 nodes alive" in output
    assert _left_behind() == []


@needs_engine
def test_ctrl_c_during_the_sweep_takes_the_cluster_down(tmp_path_factory, cluster_run):
    """Ctrl-C reaches make, nox and the driver's `compose exec` at once, as a terminal sends it to them all."""
    log = tmp_path_factory.mktemp("cluster-interrupt") / "make.log"
    dirs = _writable_dirs(tmp_path_factory, "cluster-interrupt")
    with log.open("w") as out:
        # SIGINT back to its default: a suite started in the background inherits it ignored (test_cli_e2e.py)
        proc = subprocess.Popen(["make", "run-cluster"], cwd=ROOT, env={**os.environ, **dirs}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            deadline = time.monotonic() + 600
            while "roadrisk sweep" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(1)
            time.sleep(3)  # the driver is up and training
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0, log.read_text()[-3000:]
    assert "interrupted" in log.read_text() and _left_behind() == []


def test_a_spec_outside_sweeps_is_one_clear_line(tmp_path):
    spec = tmp_path / "mine.toml"
    spec.write_text('name = "mine"\n')
    result = make("run-cluster", {"RUNS_DIR": str(tmp_path / "runs")}, SPEC=str(spec))
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "sweeps/" in output and "SPEC=sweeps/smoke-cpu.toml" in output
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="docker-compose (v1) not installed")
def test_cluster_compose_file_holds_each_node_to_its_cpus_with_shm_for_ray():
    result = subprocess.run(["docker-compose", "-f", "docker/docker-compose.ray.yml", "config"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert set(services) == {"head", "worker-1", "worker-2", "ready"}
    # compose waits for every node through the head's health check: `ready` starts once it passes
    assert services["ready"]["depends_on"] == {"head": {"condition": "service_healthy"}}
    assert "cluster_ready.py" in " ".join(services["head"]["healthcheck"]["test"])
    nodes = {name: service for name, service in services.items() if name != "ready"}
    for name, service in nodes.items():
        assert service["image"] == "roadrisk:cpu-ray" and float(service["cpus"]) == 1 and service["shm_size"], name
        assert "network_mode" not in service, name  # the nodes reach each other on the project's network
    assert "--num-cpus=0" in services["head"]["command"]  # the head runs the driver, the workers the folds
    assert [v for v in services["head"]["volumes"] if v.endswith("/work/runs") or ":/work/runs" in v]
    assert "volumes" not in services["worker-1"]  # results come back to the driver: no shared disk
