"""MLflow tracking (src/roadrisk/tracking.py): real runs, trained by the real trainer, logged to a real MLflow
SQLite store and read back with MlflowClient. One store for the module: creating one runs MLflow's
migrations (seconds)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import noxsupport
import pytest

from roadrisk import tracking
from roadrisk.epochs import EpochTracker
from roadrisk.trainer import TrainOptions, train

from .conftest import ROOT, run_cli

pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

HGB = {"max_iter": 30}  # a few seconds a run
CATBOOST = {"iterations": 20}  # a boosting library: its rounds are the validation curve
NO_URI = {tracking.URI_VARIABLE: ""}  # the default store, whatever the developer's shell has


def _snapshot(run_dir: Path) -> dict:
    """Every file of a run folder and its bytes: what logging must leave as it was."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def _record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def _runs_tagged(client: MlflowClient, run_id: str):
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, filter_string=f"tags.`roadrisk.run_id` = '{run_id}'")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two real runs (hgb; catboost, whose rounds give a curve) in runs/native/, both logged to runs/mlflow.db."""
    runs = tmp_path_factory.mktemp("tracked") / "runs"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(tracking.URI_VARIABLE, raising=False)
        hgb = train(TrainOptions(profile="smoke", model="hgb", runs_dir=runs, param_overrides=HGB)).run_dir
        cat = train(TrainOptions(profile="smoke", model="catboost", runs_dir=runs, param_overrides=CATBOOST)).run_dir
        before = {run_dir: _snapshot(run_dir) for run_dir in (hgb, cat)}
        lines: list[str] = []
        tracker = tracking.tracker_for("mlflow", runs, echo=lines.append)
        ids = {run_dir: tracker.log_run(run_dir) for run_dir in (hgb, cat)}
    client = MlflowClient(tracking.default_store(runs))
    return {"runs": runs, "hgb": hgb, "cat": cat, "before": before, "lines": lines, "tracker": tracker, "ids": ids,
            "client": client}


def test_a_run_logs_its_plan_scores_tags_and_files(store):
    client, hgb = store["client"], store["hgb"]
    record = _record(hgb)
    run = client.get_run(store["ids"][hgb])
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    config = record["config"]
    assert {key: params[key] for key in ("model", "recipe", "target", "cv", "folds", "seed", "cv_seed", "data_seed",
                                         "device", "profile", "plan_id")} == {
        "model": "hgb", "recipe": "fast", "target": "raw", "cv": "kfold", "folds": "2", "seed": "42", "cv_seed": "42",
        "data_seed": "42", "device": "cpu", "profile": "smoke", "plan_id": config["plan_id"]}
    assert params["params.max_iter"] == "30" and params["params.learning_rate"] == str(config["params"]["learning_rate"])
    scores = record["metrics"]
    for key in ("oof_rmse", "fold_rmse_mean", "fold_rmse_std", "floor_rmse", "gap_to_floor_pct"):
        assert metrics[key] == pytest.approx(scores[key]), key
    assert metrics["total_s"] == pytest.approx(record["timings"]["total_s"])
    assert metrics["fit_total_s"] == pytest.approx(record["timings"]["fit_total_s"])
    history = client.get_metric_history(run.info.run_id, "fold_rmse")
    assert sorted((m.step, m.value) for m in history) == [(f["fold"], f["rmse"]) for f in scores["folds"]]
    assert {key: tags[key] for key in ("roadrisk.run_id", "roadrisk.kind", "roadrisk.status", "roadrisk.environment",
                                       "roadrisk.recipe", "roadrisk.target", "roadrisk.device.selected")} == {
        "roadrisk.run_id": hgb.name, "roadrisk.kind": "train", "roadrisk.status": "complete",
        "roadrisk.environment": "native", "roadrisk.recipe": "fast", "roadrisk.target": "raw",
        "roadrisk.device.selected": "cpu"}
    assert tags["roadrisk.device.reason"] == record["device"]["reason"] and tags["roadrisk.host"] == record["host"]
    assert run.info.status == "FINISHED" and run.info.run_name == f"native/{hgb.name}"
    assert client.get_experiment(run.info.experiment_id).name == "roadrisk-native"
    assert sorted(a.path for a in client.list_artifacts(run.info.run_id)) == [
        "oof.csv", "run.json", "submission.csv", "train.log"]
    assert run.info.artifact_uri.startswith((store["runs"] / "mlartifacts").resolve().as_uri())


def test_logging_writes_nothing_into_the_run_folder(store):
    for run_dir, files in store["before"].items():
        assert _snapshot(run_dir) == files
    assert {"mlartifacts", "mlflow.db"} <= {p.name for p in store["runs"].iterdir()}  # the store: beside the runs
    assert [line.split(" -> ")[0] for line in store["lines"]] == [f"mlflow: {store['hgb']}", f"mlflow: {store['cat']}"]


def test_each_folds_validation_curve_is_a_series_over_its_rounds(store):
    client, cat = store["client"], store["cat"]
    folds = _record(cat)["metrics"]["folds"]
    assert all(len(fold["curve"]) == 20 for fold in folds)  # the record keeps every reported round
    for fold in folds:
        history = client.get_metric_history(store["ids"][cat], f"val_rmse_fold{fold['fold']}")
        assert sorted((m.step, m.value) for m in history) == [tuple(point) for point in fold["curve"]]


def test_the_curve_is_every_recorded_step_rounded():
    tracker = EpochTracker(None, 3, None)
    for value in (0.31234567, 0.2, 0.25):
        tracker.record(value)
    assert tracker.summary() == {"epochs": 3, "best_epoch": 2, "best_val_rmse": 0.2,
                                 "curve": [[1, 0.312346], [2, 0.2], [3, 0.25]]}


def test_logging_a_folder_again_updates_its_run_never_adds_one(store, tmp_path):
    client, tracker, hgb = store["client"], store["tracker"], store["hgb"]
    assert tracker.log_run(hgb) == store["ids"][hgb]
    assert len(_runs_tagged(client, hgb.name)) == 1
    assert len(client.get_metric_history(store["ids"][hgb], "fold_rmse")) == 2  # no point twice
    # An interrupted run logged, then the same run finished (as --resume does): one MLflow run, its status moves.
    copy = store["runs"] / "resumed" / "20260101T000000Z-abcdef"
    shutil.copytree(hgb, copy)
    record = _record(copy)
    finished = json.dumps({**record, "label": "resumed", "run_id": copy.name})
    (copy / "run.json").write_text(json.dumps({**json.loads(finished), "status": "interrupted",
                                               "metrics": {"folds": record["metrics"]["folds"][:1]}}))
    first = tracker.log_run(copy)
    assert client.get_run(first).info.status == "KILLED"
    (copy / "run.json").write_text(finished)
    assert tracker.log_run(copy) == first
    run = client.get_run(first)
    assert run.info.status == "FINISHED" and run.data.tags["roadrisk.status"] == "complete"
    assert run.data.metrics["oof_rmse"] == pytest.approx(record["metrics"]["oof_rmse"])
    assert len(client.get_metric_history(first, "fold_rmse")) == 2 and len(_runs_tagged(client, copy.name)) == 1
    shutil.rmtree(copy.parent)


def test_an_ensemble_logs_its_method_members_and_scores(store):
    from roadrisk.ensemble.command import run_ensemble

    client, members = store["client"], [store["hgb"], store["cat"]]
    lines: list[str] = []
    tracker = tracking.Tracker(store["runs"], echo=lines.append)
    assert run_ensemble(members, runs_dir=store["runs"], echo=lambda line: None, note=lambda line: None,
                        tracker=tracker) == 0
    (ensemble_dir,) = (store["runs"] / "ensemble").iterdir()
    record = _record(ensemble_dir)
    (run,) = _runs_tagged(client, ensemble_dir.name)
    assert client.get_experiment(run.info.experiment_id).name == "roadrisk-ensemble"
    assert run.data.params["method"] == "caruana" and run.data.params["members"] == "2"
    assert run.data.params["member_ids"] == ",".join(m["run_id"] for m in record["members"])
    assert run.data.tags["roadrisk.kind"] == "ensemble" and run.data.tags["roadrisk.method"] == "caruana"
    metrics = run.data.metrics
    assert metrics["nested_oof_rmse"] == pytest.approx(record["metrics"]["nested_oof_rmse"])
    assert metrics["best_member_oof_rmse"] == pytest.approx(record["metrics"]["best_member_oof_rmse"])
    for member in record["members"]:
        assert metrics[f"weight.{member['run_id']}"] == pytest.approx(member["weight"])
        assert metrics[f"member_oof_rmse.{member['run_id']}"] == pytest.approx(member["oof_rmse"])
    nested = client.get_metric_history(run.info.run_id, "nested_fold_rmse")
    assert sorted((m.step, m.value) for m in nested) == list(enumerate(record["metrics"]["nested_fold_rmse"]))
    assert len(lines) == 1 and lines[0].startswith(f"mlflow: {ensemble_dir} -> run {run.info.run_id}")


def _member(store, group: Path, marker: str, member: str, extra: dict) -> Path:
    """A copy of the hgb run placed as a sweep or tune writes its members: runs/<group>/<member>/<run>/."""
    group.mkdir(parents=True)
    (group / marker).write_text("{}")
    run_dir = group / member / store["hgb"].name
    shutil.copytree(store["hgb"], run_dir)
    record = _record(run_dir)
    (run_dir / "run.json").write_text(json.dumps({**record, "label": member, **extra}))
    return run_dir


def test_sweep_and_tune_members_go_to_their_sweeps_experiment(store, monkeypatch):
    monkeypatch.delenv(tracking.URI_VARIABLE, raising=False)
    client, runs = store["client"], store["runs"]
    sweep_member = _member(store, runs / "grid-cpu", "sweep.json", "hgb-1a2b3c", {})
    trial = _member(store, runs / "study-1", "tune.json", "trial-3", {"tune": {"study": "study-1", "trial": 3}})
    tracker = tracking.tracker_for("mlflow", runs / "grid-cpu", echo=lambda line: None)  # a sweep folder: the store above
    assert tracker.runs_dir == runs
    for run_dir, experiment in ((sweep_member, "grid-cpu"), (trial, "study-1")):
        run = client.get_run(tracker.log_run(run_dir))
        assert client.get_experiment(run.info.experiment_id).name == experiment
        assert run.data.tags["roadrisk.group"] == experiment and run.info.run_name.endswith(store["hgb"].name)
        assert tracking.runs_root(run_dir) == runs.resolve()
    tags = client.get_run(tracker.log_run(trial)).data.tags
    assert tags["roadrisk.tune.study"] == "study-1" and tags["roadrisk.tune.trial"] == "3"


@pytest.mark.parametrize("label, folder, in_container, device, expected", [
    ("native", "native", True, {"selected": "cpu"}, "native"),  # the label the make target gives wins
    ("docker-gpu", "docker-gpu", True, {"selected": "cuda"}, "docker-gpu"),
    ("hgb-1a2b3c", "cluster/smoke-cpu/hgb-1a2b3c", True, {"selected": "cpu"}, "cluster"),
    ("mine", "mine", True, {"requested": "mps", "selected": "cpu"}, "docker-mps"),
    ("mine", "mine", True, {"selected": "cuda:0"}, "docker-gpu"),
    ("mine", "mine", True, {"selected": "cpu"}, "docker"),
    ("mine", "mine", False, {"selected": "cuda"}, "native"),
])
def test_environment_is_the_label_else_the_folder_else_the_container(tmp_path, label, folder, in_container, device,
                                                                     expected):
    run_dir = tmp_path / "runs" / folder / "20260101T000000Z-abcdef"
    run_dir.mkdir(parents=True)
    if folder.startswith("cluster/"):
        (run_dir.parents[1] / "sweep.json").write_text("{}")
    record = {"label": label, "environment": {"in_container": in_container}, "device": device}
    assert tracking.environment_of(run_dir, record) == expected


@pytest.mark.parametrize("flag, uri, on", [
    (None, "", False), ("mlflow", "", True), ("none", "", False),
    (None, "sqlite:///x.db", True), ("none", "sqlite:///x.db", False),
])
def test_tracking_is_on_with_the_flag_or_the_uri_and_off_with_none(monkeypatch, tmp_path, flag, uri, on):
    monkeypatch.setenv(tracking.URI_VARIABLE, uri)
    tracker = tracking.tracker_for(flag, tmp_path)
    assert (tracker is not None) == on
    if on:
        assert tracker.uri == (uri or tracking.default_store(tmp_path))
    assert not list(tmp_path.iterdir())  # asking for a tracker creates no store


def test_mlflow_missing_is_one_warning_and_the_run_goes_on(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what an interpreter without the [track] extra finds
    lines: list[str] = []
    assert tracking.tracker_for("mlflow", tmp_path, echo=lines.append) is None
    assert lines == ["warning: --track mlflow: mlflow is not installed. Fix: pip install 'roadrisk[track]'"]


@pytest.mark.parametrize("store_kind", ["corrupted", "unwritable", "a folder"])
def test_a_store_that_cannot_take_the_run_is_one_warning_and_the_run_unchanged(store, tmp_path, store_kind):
    place = {"corrupted": tmp_path / "mlflow.db", "unwritable": Path("/proc/roadrisk/mlflow.db"), "a folder": tmp_path}
    if store_kind == "corrupted":
        place["corrupted"].write_bytes(b"not a database, " * 256)
    hgb = store["hgb"]
    before = _snapshot(hgb)
    lines: list[str] = []
    assert tracking.Tracker(tmp_path, f"sqlite:///{place[store_kind]}", echo=lines.append).log_run(hgb) is None
    assert len(lines) == 1 and lines[0].startswith(f"warning: tracking: cannot log {hgb} to sqlite:///")
    assert lines[0].endswith("(the run and its record are unchanged)")
    assert _snapshot(hgb) == before


def test_roadrisk_track_logs_run_folders_and_sweeps_through_the_cli(store):
    runs = store["runs"]
    sweep = runs / "cli-sweep"
    member = _member(store, sweep, "sweep.json", "hgb-9f9f9f", {})
    result = run_cli("track", str(sweep), str(store["hgb"]), "--runs-dir", str(runs), env=NO_URI)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == f"tracked: 2 of 2 run(s) -> {tracking.default_store(runs)}"
    assert "warning" not in result.stdout + result.stderr
    client = store["client"]
    by_experiment = {}
    for run in _runs_tagged(client, member.name):  # the hgb run's id: its copy in the sweep has it too
        by_experiment.setdefault(client.get_experiment(run.info.experiment_id).name, []).append(run.info.run_id)
    assert by_experiment["cli-sweep"] != by_experiment["roadrisk-native"]
    assert by_experiment["roadrisk-native"] == [store["ids"][store["hgb"]]]  # the same MLflow run as before, updated


def test_roadrisk_track_refuses_a_folder_without_runs_and_logs_nothing(store, tmp_path, capsys):
    from roadrisk.cli import main

    assert main(["track", str(store["hgb"]), str(tmp_path), "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: track {tmp_path}: no run.json there or below. Fix:") and "\n" not in err
    assert not (tmp_path / "mlflow.db").exists()


def test_walking_a_folder_leaves_out_the_stores_copies_of_run_json(store):
    from roadrisk.ensemble.members import find_sweep_runs

    assert list((store["runs"] / "mlartifacts").rglob("run.json"))  # the copies are there ...
    for found in (tracking.find_runs(store["runs"]), find_sweep_runs(store["runs"])[0]):
        assert store["hgb"] in found and store["cat"] in found
        assert not any("mlartifacts" in run_dir.parts for run_dir in found)  # ... and never read as runs


@pytest.mark.e2e
@pytest.mark.slow  # a real train in a subprocess that imports mlflow: ~12 s here
def test_train_with_track_mlflow_through_the_cli_ends_0_and_the_store_holds_it(store):
    runs = store["runs"]
    result = run_cli("train", "--profile", "smoke", "--model", "hgb", "--param", "max_iter=30", "--label", "cli-track",
                     "--runs-dir", str(runs), "--track", "mlflow", env=NO_URI)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (run_dir,) = (runs / "cli-track").iterdir()
    (run,) = _runs_tagged(store["client"], run_dir.name)
    assert run.data.tags["roadrisk.status"] == "complete" and run.data.params["params.max_iter"] == "30"
    assert f"mlflow: {run_dir} -> run {run.info.run_id} in experiment roadrisk-cli-track" in result.stdout


@pytest.mark.e2e
@pytest.mark.slow  # the same, against a store that cannot take it
def test_a_broken_store_never_fails_the_run(tmp_path):
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"not a database, " * 256)
    result = run_cli("train", "--profile", "smoke", "--model", "hgb", "--param", "max_iter=5", "--runs-dir",
                     str(tmp_path / "runs"), env={tracking.URI_VARIABLE: f"sqlite:///{broken}"})  # the URI alone: on
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    output = (result.stdout + result.stderr).splitlines()
    warnings = [line for line in output if "warning" in line.lower()]
    assert len(warnings) == 1 and warnings[0].startswith("warning: tracking: cannot log ")
    assert warnings[0].endswith("file is not a database (the run and its record are unchanged)")
    (run_dir,) = (tmp_path / "runs" / "native").iterdir()
    assert _record(run_dir)["status"] == "complete" and "tracking" not in (run_dir / "train.log").read_text()
    assert not any("mlflow" in p.name or "mlartifacts" in p.name for p in tmp_path.rglob("*"))
    assert broken.read_bytes() == b"not a database, " * 256


@pytest.mark.slow  # a real train in a subprocess: 6-11 s here, with the CPUs shared
def test_train_without_tracking_never_imports_mlflow(tmp_path):
    code = ("import sys; from roadrisk.cli import main; "
            f"code = main(['train', '--profile', 'smoke', '--model', 'hgb', '--param', 'max_iter=5', '--runs-dir', "
            f"{str(tmp_path)!r}]); print('exit', code, 'mlflow', 'mlflow' in sys.modules)")
    env = {key: value for key, value in os.environ.items() if key != tracking.URI_VARIABLE}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.stdout.splitlines()[-1] == "exit 0 mlflow False", done.stdout[-2000:] + done.stderr[-2000:]


# ---------------------------------------------------------------- the nox side (scripts/noxsupport.py)

def test_the_track_knob_adds_the_flag_and_a_wrong_value_is_one_line(monkeypatch):
    monkeypatch.setenv("TRACK", "")
    assert noxsupport.track_args() == [] and not noxsupport.tracking()
    monkeypatch.setenv("TRACK", "mlflow")
    assert noxsupport.track_args() == ["--track", "mlflow"]
    monkeypatch.setenv("TRACK", "yes")
    with pytest.raises(noxsupport.Problem, match="TRACK must be mlflow or none, not 'yes'"):
        noxsupport.tracking()


def test_the_ui_opens_the_store_train_writes_and_the_container_hook_sees_new_runs(monkeypatch, store):
    monkeypatch.setenv("RUNS_DIR", str(store["runs"]))
    assert noxsupport.mlflow_store_uri() == tracking.default_store(store["runs"])
    found = noxsupport.run_folders(store["runs"])
    assert {store["hgb"], store["cat"]} <= found and not any("mlartifacts" in p.parts for p in found)
