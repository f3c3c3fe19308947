"""The benchmark's accelerator half runs as written: checked on the CPU at toy size.

No GPU exists here, so the CUDA/MPS path is driven with ``--accelerator-device cpu`` (the same code,
a small dataset, one epoch): these tests check that it trains, pairs, renders and records, never how
fast anything is. Without that flag, a machine with no accelerator must say "not measured".
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .test_cluster import _left_behind
from .test_docker import needs_engine

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"


def _bench(tmp_path: Path, *args: str) -> tuple[dict, str]:
    out = tmp_path / "reports"
    done = subprocess.run([sys.executable, str(BENCH), "--out", str(out), *args], capture_output=True, text=True,
                          cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads((out / "bench.json").read_text()), (out / "bench.md").read_text()


def test_accelerator_sections_not_measured_without_a_gpu_never_estimated(tmp_path):
    """--accelerator-device none is what a machine without CUDA or MPS gets (pinned: a GPU box would measure)."""
    result, text = _bench(tmp_path, "--only", "accelerator", "full-run", "--accelerator-device", "none")
    assert result["accelerator"]["measured"] is False and "no CUDA or MPS" in result["accelerator"]["why"]
    assert result["full_run"]["measured"] is False
    assert "rows" not in result["accelerator"]  # no figures at all
    cuda = result["accelerator"]["defaults"]["cuda"]["tabm"]
    assert cuda["fast"]["params"]["allow_amp"] is True and cuda["fast"]["matmul_precision"] == "high"
    assert cuda["reference"]["params"]["allow_amp"] is False and cuda["reference"]["matmul_precision"] == "highest"
    assert "n_epochs" not in cuda["reference"]["params"]  # the reference recipe has no epoch cap
    assert "not measured: no CUDA or MPS" in text and "allow_amp=True" in text
    assert result["overhead"] == [] and "- skipped" in text


@pytest.mark.slow  # fits TabM and realmlp under both recipes
def test_accelerator_code_path_on_cpu_pairs_the_reference_and_fast_recipes(tmp_path):
    result, text = _bench(tmp_path, "--only", "accelerator", "full-run", "--accelerator-device", "cpu",
                          "--accelerator-rows", "2000", "--accelerator-epochs", "1", "--full-run-profile", "smoke",
                          "--full-run-recipes", "fast")
    section = result["accelerator"]
    assert section["measured"] and section["device"] == "cpu" and section["epochs_overridden"] == 1
    pairs = {(r["model"], r["settings"]) for r in section["rows"]}
    assert pairs == {(m, s) for m in ("tabm", "realmlp") for s in ("reference", "fast")}
    for row in section["rows"]:
        assert row["fit_s"] > 0 and 0 < row["holdout_rmse"] < 1 and row["floor_rmse"] > 0 and row["epochs"] == 1
        assert row["matmul_precision"] == "highest"  # TF32 is a CUDA speed-up only
        assert row["features"] == (25 if row["settings"] == "reference" else 26)
    seed_realmlp = next(r for r in section["rows"] if r["model"] == "realmlp" and r["settings"] == "reference")
    assert "batch_size" not in seed_realmlp["params"]  # pytabkit's own default
    assert set(section["verdicts"]) == {"tabm", "realmlp"}
    full = result["full_run"]
    fast = full["runs"]["fast"]
    assert full["measured"] and full["profile"] == "smoke" and fast["folds"] == 2 and fast["oof_rmse"] > 0
    assert "| tabm | reference |" in text and "a code check, not a measurement" in text


def test_gpu_check_script_refuses_a_machine_without_cuda_in_one_line(tmp_path):
    """benchmarks/gpu-check.sh is what a GPU session runs; here (no GPU) it must stop clearly, exit 2."""
    import os

    script = BENCH.parent / "gpu-check.sh"
    env = {**os.environ, "PYTHON": sys.executable}
    for args, words in (([], "no OUT_DIR"), ([str(tmp_path / "gpu")], "sees no CUDA device")):
        done = subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 2
        assert len(done.stderr.strip().splitlines()) == 1 and words in done.stderr and "Fix:" in done.stderr
    assert not (tmp_path / "gpu" / "bench.json").exists()


@pytest.mark.slow  # starts Ray, trains a sweep four times
def test_ray_section_runs_both_sides_and_gpu_sharing_is_not_measured_without_cuda(tmp_path):
    result, text = _bench(tmp_path, "--only", "ray", "gpu-share", "--ray-repeats", "2", "--ray-profile", "smoke",
                          "--accelerator-device", "none")
    ray = result["ray"]
    assert ray["measured"] and ray["members"] == 4 and ray["folds_per_sweep"] == 8
    assert len(ray["wall_s"]["inline"]) == len(ray["wall_s"]["ray"]) == 2 and ray["ratio_ray_over_inline"] > 0
    assert ray["in_worker_overhead_s"] is not None and ray["ray_startup_s"] > 0
    assert result["gpu_share"]["measured"] is False and "no CUDA" in result["gpu_share"]["why"]
    assert "## 6. Ray" in text and "GPU sharing not measured" in text


def test_cluster_section_is_not_measured_without_a_docker_engine(tmp_path, monkeypatch):
    """No `docker` on PATH: one reason, no figure (never an estimate)."""
    sys.path.insert(0, str(BENCH.parent))
    try:
        import cluster_scaling
    finally:
        sys.path.remove(str(BENCH.parent))
    monkeypatch.setenv("PATH", str(tmp_path))
    section = cluster_scaling.cluster_scaling(tmp_path, lambda text: None)
    assert section == {"measured": False, "why": section["why"]} and "no Docker engine" in section["why"]
    assert "- not measured: no Docker engine" in "\n".join(cluster_scaling.render(section))


@pytest.mark.docker
@pytest.mark.e2e
@pytest.mark.slow  # builds the image, starts two compose clusters
@needs_engine
def test_cluster_section_runs_one_and_two_workers_through_make_and_leaves_nothing(tmp_path):
    """`--only cluster` at its smallest: one `make run-cluster` with CLUSTER_WORKERS=1, one with 2 (about 2 min)."""
    result, text = _bench(tmp_path, "--only", "cluster", "--cluster-repeats", "1")
    section = result["cluster"]
    assert section["measured"], section.get("why")
    assert section["order"] == [1, 2] and section["members"] == 4 and section["folds_per_sweep"] == 8
    for workers in ("1", "2"):
        assert len(section["sweep_s"][workers]) == 1 and section["sweep_s"][workers][0] > 0
        assert section["members_per_hour"][workers][0] > 0 and section["cluster_start_s"][workers][0] > 0
    assert section["nodes_alive"] == {"1": [2], "2": [3]}  # the head and its workers
    assert section["fold_nodes"]["1"] == [1] and len(section["folds_per_node"]["1"][0]) == 1
    assert section["fold_nodes"]["2"][0] >= 2 and sum(section["folds_per_node"]["2"][0].values()) == 8
    assert section["ratio_2_over_1"] > 0 and section["interval_95"] is None  # one pair: no interval
    assert _left_behind() == []
    assert "## 6b. Cluster scaling" in text and "2 workers / 1 worker" in text
