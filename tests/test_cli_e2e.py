"""End to end through the real ``roadrisk`` CLI: real data generation, real models, real files."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pandas as pd
import pytest

from .conftest import run_cli, signal_at_second_fold

pytestmark = pytest.mark.e2e
CHATTER = ("GPU available", "Tip:", "LeafSpec", "UserWarning", "Traceback", "litlogger")


@pytest.mark.parametrize("model", ["hgb", pytest.param("realmlp", marks=pytest.mark.slow),
                                   pytest.param("tabm", marks=pytest.mark.slow)])
def test_smoke_train_each_model_on_cpu(tmp_path, model):
    result = run_cli("train", "--profile", "smoke", "--model", model, "--device", "cpu",
                     "--runs-dir", str(tmp_path), "--label", f"e2e-{model}")
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    for noise in CHATTER:
        assert noise not in output, noise
    (run_dir,) = (tmp_path / f"e2e-{model}").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "complete" and record["config"]["model"] == model
    assert record["device"]["selected"] == "cpu"
    # Smoke data is 2,000 rows: far from the floor's precision, but a broken model is far worse.
    assert record["metrics"]["oof_rmse"] < 1.1 * record["metrics"]["floor_rmse"], record["metrics"]
    assert "oof_rmse: " in result.stdout and f"run_dir: {run_dir}" in result.stdout


def _this_machine() -> dict:
    from roadrisk import environment

    return environment.collect()


@pytest.mark.slow  # trains realmlp (on the CPU here)
def test_mps_request_gets_mps_where_it_exists_and_falls_back_with_the_reason_elsewhere(tmp_path):
    result = run_cli("train", "--profile", "smoke", "--model", "realmlp", "--device", "mps", "--param", "n_epochs=2",
                     "--runs-dir", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    if _this_machine()["mps_available"]:  # an Apple-silicon Mac
        assert "device_selected: mps" in result.stdout and "device_fell_back: False" in result.stdout
    else:
        assert "device_selected: cpu" in result.stdout and "device_fell_back: True" in result.stdout
        assert "requested mps, fell back to CPU" in result.stdout


def test_strict_request_for_a_missing_accelerator_exits_3_with_what_to_do(tmp_path):
    facts = _this_machine()
    missing = next((d for d, there in (("mps", facts["mps_available"]), ("cuda", facts["cuda_available"])) if not there),
                   None)
    if missing is None:
        pytest.skip("this machine has both CUDA and MPS: no accelerator is missing to ask for")
    result = run_cli("train", "--profile", "smoke", "--device", missing, "--strict-device", "--runs-dir", str(tmp_path))
    assert result.returncode == 3
    assert "--strict-device" in result.stdout and "make run-" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.slow  # trains TabM until its second fold
def test_sigint_mid_run_leaves_an_interrupted_record(tmp_path):
    code, rest = signal_at_second_fold(tmp_path, signal.SIGINT)
    assert code == 130
    assert "interrupted: 1 fold(s) finished" in rest
    (record_path,) = tmp_path.glob("native/*/run.json")
    record = json.loads(record_path.read_text())
    assert record["status"] == "interrupted" and len(record["metrics"]["folds"]) == 1


def test_doctor_prints_the_block(tmp_path):
    result = run_cli("doctor")
    assert result.returncode == 0
    keys = [line.split(": ", 1)[0] for line in result.stdout.splitlines()]
    for key in ("python", "torch", "cuda_available", "cuda_device_count", "gpu_name", "gpu_memory_gb",
                "gpu_capability", "mps_built", "mps_available", "in_container", "cpu_model", "cpu_count",
                "torch_threads", "device_selected", "device_reason"):
        assert key in keys, key
    as_json = json.loads(run_cli("doctor", "--json").stdout)
    from roadrisk.device import choose

    # What auto picks is a function of the machine's facts: the same here, on a Mac, or on a CUDA box.
    assert as_json["device_selected"] == choose("auto", False, _this_machine()).selected and keys == list(as_json)


def test_data_command_writes_kaggle_files_and_protects_real_data(tmp_path):
    out = tmp_path / "gen"
    result = run_cli("data", "--out", str(out), "--train-rows", "300", "--test-rows", "100", "--original-rows", "50")
    assert result.returncode == 0, result.stderr
    assert len(pd.read_csv(out / "train.csv")) == 300 and len(pd.read_csv(out / "test.csv")) == 100
    real = tmp_path / "kaggle"
    real.mkdir()
    (real / "train.csv").write_text("id,accident_risk\n0,0.5\n")
    result = run_cli("data", "--out", str(real), "--train-rows", "10", "--test-rows", "5")
    assert result.returncode == 2 and "--force" in result.stderr
    assert (real / "train.csv").read_text() == "id,accident_risk\n0,0.5\n"


@pytest.mark.slow  # generates data and trains through the CLI
def test_generated_dir_trains_like_embedded_and_knows_its_floor(tmp_path):
    out = tmp_path / "gen"
    run_cli("data", "--out", str(out), "--train-rows", "1500", "--test-rows", "200", "--original-rows", "500")
    result = run_cli("train", "--data-dir", str(out), "--profile", "smoke", "--model", "hgb", "--runs-dir",
                     str(tmp_path / "runs"))
    assert result.returncode == 0, result.stdout
    (record_path,) = (tmp_path / "runs").glob("native/*/run.json")
    record = json.loads(record_path.read_text())
    assert record["data"]["source"] == "directory" and record["data"]["train_rows"] == 1500
    assert record["metrics"]["floor_rmse"] is not None


@pytest.mark.parametrize("args, words", [
    (["train", "--folds", "1"], ["--folds", "at least 2"]),
    (["train", "--device", "tpu"], ["--device", "invalid choice"]),
    (["train", "--model", "xgboost9"], ["--model"]),  # xgb became a model: a name that never will
    (["train", "--label", "a/b"], ["--label"]),
    (["frobnicate"], ["invalid choice"]),
])
def test_usage_errors_are_one_line_exit_2(tmp_path, args, words):
    result = run_cli(*args, "--runs-dir", str(tmp_path)) if args[0] == "train" else run_cli(*args)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    for word in words:
        assert word in result.stderr


@pytest.mark.slow  # two CLI trainings, one on worker processes
def test_parallel_folds_give_the_same_predictions_as_serial(tmp_path):
    """--jobs 2 runs folds in spawned workers; the assembled OOF must match the serial run's."""
    outputs = {}
    for jobs in ("1", "2"):
        result = run_cli("train", "--profile", "smoke", "--model", "hgb", "--device", "cpu", "--jobs", jobs,
                         "--label", f"jobs{jobs}", "--runs-dir", str(tmp_path))
        assert result.returncode == 0, result.stdout + result.stderr
        (run_dir,) = (tmp_path / f"jobs{jobs}").iterdir()
        outputs[jobs] = (json.loads((run_dir / "run.json").read_text()), pd.read_csv(run_dir / "oof.csv"), result.stdout)
    record, oof, stdout = outputs["2"]
    assert record["executor"]["workers"] == 2 and "2 folds on 2 workers, 1 thread(s) each" in stdout
    assert sorted(f["fold"] for f in record["metrics"]["folds"]) == [0, 1]
    pd.testing.assert_frame_equal(oof, outputs["1"][1])
    assert record["metrics"]["oof_rmse"] == outputs["1"][0]["metrics"]["oof_rmse"]


def test_scikit_learn_run_never_imports_torch(tmp_path):
    """torch costs ~1 s to import; an hgb run has no use for it, and its log says why it was not checked."""

    probe = ("import sys, runpy; sys.argv = ['roadrisk', 'train', '--profile', 'smoke', '--model', 'hgb', "
             f"'--runs-dir', {str(tmp_path / 'runs')!r}]\n"
             "try:\n    runpy.run_module('roadrisk', run_name='__main__')\n"
             "except SystemExit as exit:\n    assert exit.code == 0, exit.code\n"
             "print('torch imported:', 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "torch imported: False" in done.stdout
    assert "cuda_status: not checked: this model runs on the CPU only" in done.stdout
