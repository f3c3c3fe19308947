"""run.json: its schema, atomic writes, and what interruption and crashes leave behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from roadrisk import folds as folds_module
from roadrisk import records
from roadrisk.executors.local import InlineExecutor
from roadrisk.trainer import TrainOptions, train

REQUIRED = {
    "schema_version", "run_id", "label", "status", "started_at", "ended_at", "environment", "packages",
    "device", "data", "config", "timings", "metrics", "git_commit", "error",
}


def _options(tmp_path, **kw) -> TrainOptions:
    return TrainOptions(**{"profile": "smoke", "model": "hgb", "runs_dir": tmp_path / "runs", "label": "native", **kw})


@pytest.fixture(scope="module")
def complete_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("record")
    outcome = train(_options(tmp))
    return outcome, json.loads((outcome.run_dir / records.RUN_FILE).read_text())


def test_complete_record_schema(complete_run):
    outcome, record = complete_run
    assert outcome.exit_code == 0 and outcome.status == "complete"
    assert REQUIRED <= set(record)
    assert record["schema_version"] == records.SCHEMA_VERSION and record["status"] == "complete"
    assert record["run_id"] == outcome.run_dir.name and outcome.run_dir.parent.name == "native"
    env = record["environment"]
    for key in ("os", "platform", "machine", "cpu_model", "cpu_count", "in_container", "container_evidence"):
        assert key in env
    for key in ("torch", "pytabkit", "numpy", "pandas", "scikit-learn"):
        assert record["packages"][key]
    device = record["device"]
    for key in ("requested", "selected", "strict", "fell_back", "reason", "torch_threads", "mps_built",
                "mps_available", "cuda_available"):
        assert key in device
    # hgb is scikit-learn: torch is never loaded for it (1 s of a 3 s run), and the record says so.
    assert device["torch_threads"] is None and env["torch"] is None and device["cuda_available"] is None
    assert record["config"]["threads"] == env["cpu_count"]
    data = record["data"]
    assert data["source"] == "embedded" and data["train_rows"] == 2000 and len(data["fingerprint"]) == 16
    config = record["config"]
    assert config["profile"] == "smoke" and config["model"] == "hgb" and config["folds"] == 2 and config["seed"] == 42
    assert config["params"]["max_iter"] == config["estimator_params"]["max_iter"]
    timings = record["timings"]
    assert {"load_s", "features_s", "total_s"} <= set(timings)
    assert [set(f) for f in timings["folds"]] == [{"fold", "fit_s", "predict_s", "worker"}] * 2
    assert {f["worker"]["pid"] for f in timings["folds"]} == {os.getpid()}  # inline: this process
    metrics = record["metrics"]
    assert len(metrics["folds"]) == 2 and 0 < metrics["floor_rmse"] < metrics["oof_rmse"] < 0.08
    assert metrics["gap_to_floor_pct"] == pytest.approx(
        100 * (metrics["oof_rmse"] - metrics["floor_rmse"]) / metrics["floor_rmse"], abs=0.01)


def test_outputs_are_kaggle_shaped(complete_run):
    outcome, record = complete_run
    oof = pd.read_csv(outcome.run_dir / "oof.csv")
    submission = pd.read_csv(outcome.run_dir / "submission.csv")
    assert list(oof.columns) == list(submission.columns) == ["id", "accident_risk"]
    assert len(oof) == 2000 and oof.accident_risk.notna().all()
    assert len(submission) == 500 and submission.id.iloc[0] == 2000
    assert submission.accident_risk.between(0, 1).all()
    log = (outcome.run_dir / "train.log").read_text()
    assert log.startswith("python: ") and "device_reason: " in log and "status: complete" in log
    assert not list(outcome.run_dir.glob(".*.tmp"))


def test_interrupt_keeps_finished_folds(tmp_path, monkeypatch):
    real = folds_module.run_fold
    calls = []

    def interrupt_second(spec, *args):
        calls.append(spec.index)
        if spec.index == 1:
            raise KeyboardInterrupt
        return real(spec, *args)

    outcome = train(_options(tmp_path), executor=InlineExecutor(interrupt_second))
    record = json.loads((outcome.run_dir / records.RUN_FILE).read_text())
    assert outcome.exit_code == 130 and record["status"] == "interrupted"
    assert [f["fold"] for f in record["metrics"]["folds"]] == [0] and len(record["timings"]["folds"]) == 1
    assert "1 finished fold" in record["error"] and record["ended_at"]
    assert not (outcome.run_dir / "oof.csv").exists()


def test_crash_leaves_a_failed_record_with_the_error(tmp_path, monkeypatch):
    def boom(*args):
        raise RuntimeError("out of memory in fold")

    outcome = train(_options(tmp_path), executor=InlineExecutor(boom))
    record = json.loads((outcome.run_dir / records.RUN_FILE).read_text())
    assert outcome.exit_code == 1 and record["status"] == "failed"
    assert record["error"] == "RuntimeError: out of memory in fold"
    assert "Traceback" in (outcome.run_dir / "train.log").read_text()


def test_strict_device_failure_is_recorded_and_exits_3(tmp_path, machine):
    machine(os_name="Linux", in_container=True)  # mocked: a container, where MPS cannot exist
    outcome = train(_options(tmp_path, model="realmlp", device="mps", strict_device=True))
    record = json.loads((outcome.run_dir / records.RUN_FILE).read_text())
    assert outcome.exit_code == 3 and record["status"] == "failed"
    assert record["device"]["selected"] == "none" and "make run-native" in record["error"]


def test_bad_label_is_refused(tmp_path):
    from roadrisk.errors import RoadriskError

    with pytest.raises(RoadriskError, match="--label"):
        train(_options(tmp_path, label="../escape"))
    assert not (tmp_path / "runs").exists()


def test_atomic_write_never_leaves_half_a_file(tmp_path, monkeypatch):
    """A write that dies half way (disk full, a kill) leaves the old file whole. A plain write would
    leave the half: the stand-in writes part of the bytes to whatever path it is given, then fails."""
    from roadrisk import atomic

    target = tmp_path / "run.json"
    atomic.atomic_write_json(target, {"status": "complete"})
    real_write_text = Path.write_text

    def dies_half_way(self, text, *args, **kwargs):
        real_write_text(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", dies_half_way)
    with pytest.raises(OSError):
        atomic.atomic_write_json(target, {"status": "running", "padding": "x" * 100})
    assert json.loads(target.read_bytes()) == {"status": "complete"}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_param_overrides_are_used_and_recorded(tmp_path):
    outcome = train(_options(tmp_path, param_overrides={"max_iter": 30, "learning_rate": 0.2}))
    record = json.loads((outcome.run_dir / records.RUN_FILE).read_text())
    assert outcome.exit_code == 0
    assert record["config"]["param_overrides"] == {"max_iter": 30, "learning_rate": 0.2}
    assert record["config"]["params"]["max_iter"] == 30 == record["config"]["estimator_params"]["max_iter"]
    assert record["config"]["params"]["max_leaf_nodes"] == 7  # the other defaults stay


@pytest.mark.parametrize("key, words", [("n_epochs", "not a parameter of hgb"), ("random_state", "--seed")])
def test_bad_param_overrides_exit_2_and_run_nothing(tmp_path, key, words):
    outcome = train(_options(tmp_path, param_overrides={key: 5}))
    record = json.loads((outcome.run_dir / records.RUN_FILE).read_text())
    assert outcome.exit_code == 2 and record["status"] == "failed" and words in record["error"]
    assert not record["timings"]["folds"]


def test_predictions_writer_matches_pandas_to_csv_byte_for_byte(tmp_path):
    """The fast writer must not change a byte of oof.csv / submission.csv (compare diffs them)."""
    import numpy as np
    import pandas as pd

    from roadrisk import atomic

    rng = np.random.default_rng(0)
    values = np.concatenate([rng.random(5000), [0.0, 1.0, 1e-5, 1e-17, 0.1, np.nan, 0.30000000000000004, 1e16]])
    ids = np.arange(len(values), dtype=np.int64) + 517_754
    atomic.write_predictions_atomic(tmp_path / "fast.csv", "id", ids, "accident_risk", values)
    pd.DataFrame({"id": ids, "accident_risk": values}).to_csv(tmp_path / "pandas.csv", index=False)
    assert (tmp_path / "fast.csv").read_bytes() == (tmp_path / "pandas.csv").read_bytes()
    # round_trip: pandas 2's default float parser may miss the last bit; the file itself is exact.
    back = pd.read_csv(tmp_path / "fast.csv", float_precision="round_trip")["accident_risk"]
    assert back.equals(pd.Series(values, name="accident_risk"))


@pytest.mark.slow  # trains realmlp twice
def test_fit_runs_under_the_recorded_matmul_precision(tmp_path, monkeypatch):
    """What run.json says about TF32 is what torch had set while the model trained."""
    import torch

    from roadrisk import models

    seen = []
    real_fit_predict = models.fit_predict

    def spying_fit_predict(*args, **kwargs):
        seen.append(torch.get_float32_matmul_precision())
        return real_fit_predict(*args, **kwargs)

    monkeypatch.setattr(folds_module, "fit_predict", spying_fit_predict)
    small = {"n_epochs": 1}
    default = train(_options(tmp_path, model="realmlp", device="cpu", param_overrides=small))
    forced = train(_options(tmp_path, model="realmlp", device="cpu", param_overrides=small, matmul_precision="high"))
    configs = [json.loads((o.run_dir / records.RUN_FILE).read_text())["config"] for o in (default, forced)]
    assert [c["matmul_precision"] for c in configs] == ["highest", "high"]
    assert seen == ["highest"] * 2 + ["high"] * 2  # two folds each
    assert torch.get_float32_matmul_precision() == "highest"  # put back after the run


def test_mocked_mps_fit_gets_float32_targets(monkeypatch):
    """MPS has no float64 (no Apple GPU here: the estimator is a stand-in that records dtypes)."""
    import numpy as np

    from roadrisk import models

    seen = {}

    class Recorder:
        def fit(self, x, y, X_val=None, y_val=None, cat_col_names=None):
            seen.update(y=y.dtype, y_val=y_val.dtype)

        def predict(self, x):
            return np.zeros(len(x))

    spec = models.ModelSpec("stand-in", "", True, lambda p, d, r: {}, lambda *a: Recorder(), True)
    timer = lambda phase: __import__("contextlib").nullcontext()  # noqa: E731
    y = np.linspace(0, 1, 4)
    for device_name, expected in (("mps", np.float32), ("cpu", np.float64)):
        models.fit_predict(spec, params={}, device=device_name, seed=0, threads=1, x_train=np.zeros((4, 2)), y_train=y,
                           x_val=np.zeros((4, 2)), y_val=y, x_test=np.zeros((2, 2)), timer=timer)
        assert seen == {"y": expected, "y_val": expected}


def test_scikit_learn_fit_is_held_to_the_usable_cpus():
    """A container with --cpus 1 sees 2 CPUs in its affinity mask: OpenMP must still use 1."""
    import contextlib

    import numpy as np
    from sklearn.ensemble import HistGradientBoostingRegressor  # noqa: F401  (loads its OpenMP runtime)
    from threadpoolctl import threadpool_info

    from roadrisk import models

    seen = []

    class Recorder:
        def fit(self, x, y):
            seen.append({i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp"})

        def predict(self, x):
            return np.zeros(len(x))

    spec = models.ModelSpec("stand-in", "", False, lambda p, d, r: {}, lambda *a: Recorder(), False)
    x, y = np.zeros((4, 2)), np.zeros(4)
    models.fit_predict(spec, params={}, device="cpu", seed=0, threads=1, x_train=x, y_train=y, x_val=x, y_val=y,
                       x_test=x, timer=lambda phase: contextlib.nullcontext())
    assert seen == [{1}]


def test_a_container_run_names_its_folder_as_the_host_sees_it(monkeypatch):
    """Inside a container the runs folder is mounted at /work/runs; the user needs the host's path."""
    monkeypatch.setenv(records.HOST_PATH_VARIABLE, "/work/runs=/home/me/roadrisk/runs")
    assert records.shown(Path("/work/runs/docker/20260101T000000Z-abc")) == "/home/me/roadrisk/runs/docker/20260101T000000Z-abc"
    assert records.shown(Path("/elsewhere/x")) == "/elsewhere/x"
    monkeypatch.delenv(records.HOST_PATH_VARIABLE)
    assert records.shown(Path("/work/runs/docker/x")) == "/work/runs/docker/x"
