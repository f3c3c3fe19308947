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


# Ctrl-C inside each model's fit, on each executor. Lightning (RealMLP) catches the interrupt itself and
# calls sys.exit(1) inside the fit: that must still end as an interrupted, resumable run, exit 130.
INTERRUPTS = {  # id: (model, extra flags, the line at which the signal is sent, the signal)
    "tabm": ("tabm", ("--param", "n_epochs=40"), "fold 2/2 epoch", signal.SIGINT),
    "realmlp": ("realmlp", ("--param", "n_epochs=40"), "fold 2/2 epoch", signal.SIGINT),
    "realmlp-sigterm": ("realmlp", ("--param", "n_epochs=40"), "fold 2/2 epoch", signal.SIGTERM),
    "hgb": ("hgb", ("--param", "max_iter=4000"), "progress: fold 2/2 started", signal.SIGINT),
    "realmlp-process": ("realmlp", ("--param", "n_epochs=40", "--executor", "process", "--jobs", "2"),
                        "fold 2/2 epoch", signal.SIGINT),
    "realmlp-ray": ("realmlp", ("--param", "n_epochs=40", "--executor", "ray"), "fold 2/2 epoch", signal.SIGINT),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(INTERRUPTS))
def test_an_interrupt_inside_any_fit_on_any_executor_is_recorded_and_resumable(tmp_path, case):
    model, extra, trigger, signum = INTERRUPTS[case]
    code, rest = signal_at_second_fold(tmp_path, signum, model, *extra, trigger=trigger)
    assert code == 130, rest[-2000:]
    (run_dir,) = (tmp_path / "native").iterdir()
    record = _record(run_dir)
    assert record["status"] == "interrupted", record["error"]
    assert "continue with: roadrisk train --resume" in rest


@pytest.fixture(scope="module")
def _finished_cli_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("finished") / "runs"
    result = run_cli("train", "--profile", "smoke", "--model", "hgb", "--runs-dir", str(runs))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (run_dir,) = (runs / "native").iterdir()
    return run_dir


@pytest.fixture
def stopped_cli_run(_finished_cli_run, tmp_path):
    """A copy of a real smoke hgb run made through the CLI, its record marked as stopped with every fold saved."""
    run_dir = tmp_path / _finished_cli_run.name
    shutil.copytree(_finished_cli_run, run_dir)
    record = _record(run_dir)
    record["status"] = "interrupted"
    (run_dir / records.RUN_FILE).write_text(json.dumps(record))
    return run_dir


def _cut(path, how: str) -> None:
    raw = path.read_bytes()
    path.write_bytes({"empty": b"", "half": raw[: len(raw) // 2], "header only": raw[:40],
                      "flipped bytes": raw[:200] + bytes(b ^ 0xFF for b in raw[200:400]) + raw[400:]}[how])


@pytest.mark.parametrize("how", ["empty", "half", "header only", "flipped bytes"])
def test_cli_resume_of_a_damaged_fold_file_says_delete_it(stopped_cli_run, how):
    path = stopped_cli_run / "folds" / "fold-1.npz"
    _cut(path, how)
    before = (stopped_cli_run / records.RUN_FILE).read_bytes()
    result = run_cli("train", "--resume", str(stopped_cli_run))
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: {path}: cannot read the saved fold") and "Fix: delete that file" in line, line
    assert (stopped_cli_run / records.RUN_FILE).read_bytes() == before  # a refused resume leaves the record be
    path.unlink()  # the fix the line gives works
    result = run_cli("train", "--resume", str(stopped_cli_run))
    assert result.returncode == 0 and _record(stopped_cli_run)["resumed_folds"] == [0]


@pytest.mark.parametrize("key", ["status", "options", "label", "timings"])
def test_cli_resume_of_a_record_missing_a_key_is_one_line(stopped_cli_run, key):
    record = _record(stopped_cli_run)
    del record[key]
    (stopped_cli_run / records.RUN_FILE).write_text(json.dumps(record))
    result = run_cli("train", "--resume", str(stopped_cli_run))
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and f"missing or malformed key(s) {key}" in result.stderr
    assert result.stderr.startswith(f"error: {stopped_cli_run / records.RUN_FILE}:") and "Fix:" in result.stderr


def test_cli_resume_refuses_a_record_of_a_newer_schema_and_leaves_it(stopped_cli_run):
    record = _record(stopped_cli_run)
    record["schema_version"] = records.SCHEMA_VERSION + 1
    record["written_by_the_future"] = {"keep": True}
    (stopped_cli_run / records.RUN_FILE).write_text(json.dumps(record))
    before = (stopped_cli_run / records.RUN_FILE).read_bytes()
    result = run_cli("train", "--resume", str(stopped_cli_run))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert f"written by a newer roadrisk (schema_version {records.SCHEMA_VERSION + 1} >" in result.stderr
    assert (stopped_cli_run / records.RUN_FILE).read_bytes() == before


def test_resume_with_data_dir_relocates_a_moved_folder_and_refuses_other_data(tmp_path, small_data):
    def stop(spec, *args):
        raise KeyboardInterrupt

    moved = tmp_path / "moved"
    shutil.copytree(small_data, moved)
    outcome = train(_options(tmp_path, data_dir=moved), executor=InlineExecutor(stop))
    assert outcome.exit_code == 130
    elsewhere = tmp_path / "elsewhere"
    moved.rename(elsewhere)  # the folder moved: the record's path is gone
    other = tmp_path / "other"
    assert run_cli("data", "--out", str(other), "--train-rows", "300", "--test-rows", "50").returncode == 0
    refused = run_cli("train", "--resume", str(outcome.run_dir), "--data-dir", str(other))
    assert refused.returncode == 2 and "data fingerprint differs" in refused.stdout + refused.stderr
    result = run_cli("train", "--resume", str(outcome.run_dir), "--data-dir", str(elsewhere))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    record = _record(outcome.run_dir)
    assert record["status"] == "complete" and record["options"]["data_dir"] == str(elsewhere.resolve())


@pytest.mark.parametrize("flag", [("--label", "x"), ("--runs-dir", "/tmp/x")])
def test_resume_refuses_flags_it_would_ignore(tmp_path, flag):
    run_dir = _interrupted(tmp_path, None, at_fold=0)
    result = run_cli("train", "--resume", str(run_dir), *flag)
    assert result.returncode == 2 and f"--resume with {flag[0]}" in result.stderr


def test_true_and_false_in_a_param_are_booleans():
    from roadrisk.cli import _key_value

    assert _key_value("early_stopping=true") == ("early_stopping", True)
    assert _key_value("early_stopping=False") == ("early_stopping", False)
    assert _key_value("max_features=None") == ("max_features", None)
    assert _key_value("arch_type=tabm-mini") == ("arch_type", "tabm-mini")
