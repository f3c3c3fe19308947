"""Runs that survive: every finished fold is on disk, and --resume continues where a run stopped."""

from __future__ import annotations

import json
import shutil
import signal

import numpy as np
import pandas as pd
import pytest

from roadrisk import fold_store, records
from roadrisk import folds as folds_module
from roadrisk.errors import RoadriskError
from roadrisk.executors.local import InlineExecutor
from roadrisk.trainer import TrainOptions, resume, train

from .conftest import run_cli, signal_at_second_fold


def _options(tmp_path, **kw) -> TrainOptions:
    return TrainOptions(**{"profile": "smoke", "model": "hgb", "folds": 3, "runs_dir": tmp_path / "runs", **kw})


def _record(run_dir) -> dict:
    return json.loads((run_dir / records.RUN_FILE).read_text())


def _interrupted(tmp_path, monkeypatch, at_fold: int = 1, **kw):
    """A run stopped by Ctrl-C as fold ``at_fold`` starts (what the SIGINT/SIGTERM handler raises)."""
    real = folds_module.run_fold

    def interrupt(spec, *args, **kwargs):
        if spec.index == at_fold:
            raise KeyboardInterrupt
        return real(spec, *args, **kwargs)

    outcome = train(_options(tmp_path, **kw), executor=InlineExecutor(interrupt))
    assert outcome.exit_code == 130 and outcome.status == "interrupted"
    return outcome.run_dir


def test_each_finished_fold_is_kept_on_disk_and_in_the_record(tmp_path, monkeypatch):
    run_dir = _interrupted(tmp_path, monkeypatch, at_fold=2)
    record = _record(run_dir)
    assert record["outputs"]["folds"] == {"0": "folds/fold-0.npz", "1": "folds/fold-1.npz"}
    saved = np.load(run_dir / "folds" / "fold-1.npz")
    _, val_idx = folds_module.split(2000, 3, 42)[1]
    assert np.array_equal(saved["val_idx"], val_idx) and saved["val_pred"].shape == val_idx.shape
    assert saved["test_pred"].shape == (500,)
    assert not list(run_dir.glob("folds/.*.tmp"))


@pytest.mark.slow  # three trainings
def test_resumed_hgb_run_writes_the_same_bytes_as_an_uninterrupted_one(tmp_path, monkeypatch):
    whole = train(_options(tmp_path, label="whole"))
    run_dir = _interrupted(tmp_path, monkeypatch, at_fold=1)
    trained = []
    real = folds_module.run_fold
    counting = InlineExecutor(lambda spec, *a, **k: trained.append(spec.index) or real(spec, *a, **k))
    outcome = resume(run_dir, {}, command="roadrisk train --resume X", executor=counting)
    assert outcome.exit_code == 0 and outcome.status == "complete" and outcome.run_dir == run_dir
    assert trained == [1, 2]  # fold 0 came from disk
    for name in ("oof.csv", "submission.csv"):
        assert (run_dir / name).read_bytes() == (whole.run_dir / name).read_bytes(), name
    record = _record(run_dir)
    assert record["status"] == "complete" and record["resumed_folds"] == [0]
    assert record["resumes"][0]["from_status"] == "interrupted" and record["resumes"][0]["folds_kept"] == [0]
    assert [f["fold"] for f in record["metrics"]["folds"]] == [0, 1, 2]
    assert record["metrics"]["oof_rmse"] == _record(whole.run_dir)["metrics"]["oof_rmse"]
    assert "resume: 1 of 3 fold(s) kept from disk" in (run_dir / "train.log").read_text()


def test_resume_refuses_changed_data_and_leaves_the_run_as_it_was(tmp_path, monkeypatch, small_data):
    data = tmp_path / "data"
    shutil.copytree(small_data, data)
    run_dir = _interrupted(tmp_path, monkeypatch, data_dir=data)
    before = (run_dir / records.RUN_FILE).read_bytes()
    frame = pd.read_csv(data / "train.csv")
    frame.loc[0, "accident_risk"] = 0.99
    frame.to_csv(data / "train.csv", index=False)
    outcome = resume(run_dir, {})
    assert outcome.exit_code == 2
    assert (run_dir / records.RUN_FILE).read_bytes() == before
    log = (run_dir / "train.log").read_text()
    assert "data fingerprint differs" in log and "Fix:" in log


def test_resume_refuses_a_flag_that_differs_from_the_run_through_the_cli(tmp_path, monkeypatch):
    run_dir = _interrupted(tmp_path, monkeypatch)
    before = (run_dir / records.RUN_FILE).read_bytes()
    result = run_cli("train", "--resume", str(run_dir), "--cv-seed", "7")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "--cv-seed 7 differs from the run's 42" in result.stderr and "Traceback" not in result.stderr
    assert (run_dir / records.RUN_FILE).read_bytes() == before


def test_resume_of_a_complete_or_dry_run_is_refused(tmp_path):
    for kw in ({}, {"dry_run": True}):
        outcome = train(_options(tmp_path, **kw))
        with pytest.raises(RoadriskError, match="already complete|dry run trained nothing"):
            resume(outcome.run_dir, {})


def test_a_saved_fold_of_another_plan_is_refused(tmp_path, monkeypatch):
    run_dir = _interrupted(tmp_path, monkeypatch)
    shutil.copy(run_dir / "folds" / "fold-0.npz", run_dir / "folds" / "fold-2.npz")  # fold 0's rows as fold 2
    outcome = resume(run_dir, {})
    assert outcome.exit_code == 2 and "holds other rows than fold 2" in (run_dir / "train.log").read_text()


@pytest.mark.slow  # trains TabM, then resumes it
def test_sigterm_keeps_finished_folds_and_the_cli_resumes(tmp_path):
    """docker stop sends SIGTERM: the run records interrupted with its folds, and --resume finishes it."""
    code, rest = signal_at_second_fold(tmp_path, signal.SIGTERM)
    assert code == 130
    (run_dir,) = (tmp_path / "native").iterdir()
    assert "continue with: roadrisk train --resume" in rest
    assert _record(run_dir)["status"] == "interrupted" and (run_dir / "folds" / "fold-0.npz").is_file()
    result = run_cli("train", "--resume", str(run_dir))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    record = _record(run_dir)
    assert record["status"] == "complete" and record["resumed_folds"] == [0]
    assert "progress: fold 2/2 started" in result.stdout and "fold 1/2 epoch" not in result.stdout


def test_saved_models_predict_again(tmp_path):
    outcome = train(_options(tmp_path, save_models=True, folds=2))
    record = _record(outcome.run_dir)
    assert record["outputs"]["models"] == {"0": "models/fold-0.pkl", "1": "models/fold-1.pkl"}
    from roadrisk import data, features, recipes

    dataset = data.load(records.record_field(record, ("data", "path")), "embedded")
    feature_set = features.build(dataset.train, dataset.test, dataset.original, recipes.RECIPES[record["config"]["recipe"]])
    model = fold_store.load_model(outcome.run_dir, 1)
    saved = np.load(outcome.run_dir / "folds" / "fold-1.npz")
    assert np.allclose(np.clip(model.predict(feature_set.test), 0, 1), saved["test_pred"], rtol=0, atol=1e-12)
