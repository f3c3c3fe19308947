"""roadrisk tune: an Optuna study whose trials are ordinary runs, pruned per fold, continued after Ctrl-C
with no fold trained twice, and whose best trial reproduces as a sweep member. Real Optuna, real SQLite,
real hgb fits on the smoke data (about half a second a fold)."""

from __future__ import annotations

import json
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from roadrisk import records
from roadrisk.folds import run_fold
from roadrisk.sweep.runner import run_sweep
from roadrisk.tune.runner import run_tune

from .conftest import run_cli

pytestmark = pytest.mark.e2e

HGB_TUNE = """
    name = "{name}"
    cv_seed = 42
    [data]
    profile = "smoke"
    [model]
    name = "hgb"
    folds = {folds}
    params = {{ max_iter = 40 }}
    [search]
    trials = {trials}
    startup_trials = {startup}
    [search.space]
    max_leaf_nodes = {{ int = [4, 31] }}
    learning_rate = {{ float = [0.02, 0.3], log = true }}
"""


def _spec(tmp_path: Path, text: str = HGB_TUNE, name: str = "t", trials: int = 6, folds: int = 2,
          startup: int = 2) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(textwrap.dedent(text.format(name=name, trials=trials, folds=folds, startup=startup)))
    return path


class CountingFolds:
    """The real fold runner, counting what it trains: (member folder, fold) -> times."""

    def __init__(self, interrupt_at: int | None = None):
        self.trained: Counter = Counter()
        self.calls = 0
        self.interrupt_at = interrupt_at

    def __call__(self, spec, features, target, on_epoch=None):
        self.calls += 1
        if self.interrupt_at is not None and self.calls == self.interrupt_at:
            raise KeyboardInterrupt  # as Ctrl-C lands in the middle of a fold
        result = run_fold(spec, features, target, on_epoch)
        self.trained[(spec.model, tuple(sorted(spec.params.items())), spec.index)] += 1
        return result


def _tune_json(runs: Path, name: str = "t") -> dict:
    return json.loads((runs / name / "tune.json").read_text())


def _study(runs: Path, name: str = "t"):
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{runs / name / 'optuna.db'}")


# ---------------------------------------------------------------- the spec

@pytest.mark.parametrize("body, words", [
    ('[model]\nname = "hgb"\n[search]\ntrials = 3\n', "[search.space]"),
    ('[model]\nname = "hgb"\n[search]\ntrials = 3\n[search.space]\nmax_depth = { int = [5, 2] }\n',
     "low must be below high"),
    ('[model]\nname = "hgb"\n[search]\ntrials = 3\n[search.space]\nlearning_rate = { float = [0, 0.3], log = true }\n',
     "a log range must be above 0"),
    ('[model]\nname = "hgb"\n[search]\ntrials = 3\n[search.space]\nn_epochs = { int = [1, 5] }\n',
     "n_epochs not a parameter of hgb"),
    ('[model]\nname = "hgb"\nparams = { max_depth = 3 }\n[search]\ntrials = 3\n[search.space]\n'
     'max_depth = { int = [2, 5] }\n', "max_depth both fixed and searched"),
    ('[model]\nname = "hgb"\n[search]\n[search.space]\nmax_depth = { int = [2, 5] }\n',
     "neither trials nor timeout_s"),
    ('[model]\nname = "hgb"\n[search]\ntrials = 3\n[search.space]\nmax_depth = { int = [2, 5], float = [1, 2] }\n',
     "needs exactly one of int, float, choices"),
    ('[model]\nname = "hgb"\n[search]\ntrials = 3\n[search.space]\nlearning_rate = { float = [-1.0, 0.3] }\n',
     "learning_rate"),
    ('[model]\nname = "hgb"\n[search]\ntrials = 3\nbogus = 1\n[search.space]\nmax_depth = { int = [2, 5] }\n',
     "[search]: unknown key(s) bogus"),
    ('[model]\nname = "xgboost9"\n[search]\ntrials = 3\n', "[model] name: 'xgboost9'"),
    ('[model]\nname = "hgb"\nparams = { max_depth = [2, 3] }\n[search]\ntrials = 3\n[search.space]\n'
     'learning_rate = { float = [0.01, 0.3] }\n', "a list is a grid"),
])
def test_a_bad_tune_spec_is_one_line_naming_the_file_and_key(tmp_path, body, words):
    from roadrisk.errors import RoadriskError
    from roadrisk.tune import spec as tune_spec

    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(RoadriskError) as caught:
        tune_spec.load(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and words in message and "Fix:" in message, message


def test_through_the_cli_a_bad_tune_spec_exits_2_with_that_line_and_writes_nothing(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[model]\nname = "hgb"\n[search]\ntrials = 3\n[search.space]\nmax_depth = { int = [5, 2] }\n')
    result = run_cli("tune", str(path), "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: {path}: [search.space] max_depth int") and "Fix:" in result.stderr
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- a whole tune

def test_a_tune_trains_prunes_and_leaves_a_best_spec_that_reproduces_its_score(tmp_path):
    runs, folds = tmp_path / "runs", CountingFolds()
    spec = _spec(tmp_path, trials=8, folds=3)
    assert run_tune(spec, runs, echo=lambda line: None, fold_runner=folds) == 0
    book = _tune_json(runs)
    assert book["status"] == "complete" and len(book["trials"]) == 8
    study = _study(runs)
    assert len(study.trials) == 8 and {t.state.name for t in study.trials} <= {"COMPLETE", "PRUNED"}
    pruned = [t for t in book["trials"].values() if t["state"] == "pruned"]
    assert pruned, "a median pruner with 2 startup trials prunes someone in 8 (smoke hgb's spread is wide)"
    for trial in book["trials"].values():  # every trial is an ordinary run that says which trial it was
        record = json.loads((Path(trial["run_dir"]) / records.RUN_FILE).read_text())
        assert record["tune"]["study"] == "t" and record["tune"]["trial"] == trial["number"]
        assert record["status"] == trial["state"]
        if trial["state"] == "pruned":  # stopped after its first fold: the others were never trained
            assert len(record["metrics"]["folds"]) == trial["pruned_after_folds"] < 3
    assert sum(folds.trained.values()) == sum(3 if t["state"] == "complete" else t["pruned_after_folds"]
                                              for t in book["trials"].values())
    assert book["pruning"]["folds_skipped"] == sum(3 - t["pruned_after_folds"] for t in pruned)
    best = book["best"]
    assert best["value"] == min(t["value"] for t in book["trials"].values() if t["state"] == "complete")
    assert (runs / "t" / "history.png").stat().st_size > 1000 and book["plots"]["history.png"] == "written"
    # The best table, dropped into a sweep: the same plan, so the same score to the last digit.
    assert "[[model]]" in best["table"] and (runs / "t" / "best.toml").is_file()
    assert run_sweep(runs / "t" / "best.toml", tmp_path / "again", echo=lambda line: None) == 0
    member = json.loads((tmp_path / "again" / "t-best" / records.SWEEP_FILE).read_text())["members"][0]
    assert member["oof_rmse"] == best["value"] and member["id"] == best["member_id"]


def test_an_interrupted_tune_continues_its_study_and_no_fold_is_trained_twice(tmp_path):
    runs, spec = tmp_path / "runs", _spec(tmp_path, trials=5, folds=3, startup=5)  # no pruning: whole trials
    first = CountingFolds(interrupt_at=5)  # trial 0's three folds, then trial 1's second fold is Ctrl-C'd
    assert run_tune(spec, runs, echo=lambda line: None, fold_runner=first) == 130
    assert _tune_json(runs)["status"] == "interrupted"
    study = _study(runs)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "RUNNING"]
    interrupted_params = study.trials[1].params
    again = CountingFolds()
    lines: list[str] = []
    assert run_tune(spec, runs, echo=lines.append, fold_runner=again) == 0
    book = _tune_json(runs)
    assert book["status"] == "complete" and book["sessions"] == 2 and book["interrupted_trials"] == [1]
    resumed = next(t for t in book["trials"].values() if t.get("resumes_trial") == 1)
    assert resumed["params"] == interrupted_params and resumed["state"] == "complete"
    record = json.loads((Path(resumed["run_dir"]) / records.RUN_FILE).read_text())
    assert record["resumes"][0]["from_status"] == "interrupted"  # the same run folder, continued
    assert not set(first.trained) & set(again.trained)  # nothing the first session finished was trained again
    assert max((first.trained + again.trained).values()) == 1
    assert sum(1 for t in book["trials"].values() if t["state"] == "complete") == 5
    assert len(list((runs / "t").glob("hgb-*"))) == 5  # five plans, five folders; the resumed one reused its own
    # A third call has nothing left to do: the study already holds its 5 finished trials.
    third = CountingFolds()
    assert run_tune(spec, runs, echo=lambda line: None, fold_runner=third) == 0 and third.calls == 0


def test_a_trial_that_repeats_an_earlier_plan_reuses_its_run(tmp_path):
    """TPE repeats points of a small discrete space; a repeated plan is told the earlier score, not retrained."""
    text = HGB_TUNE.replace("max_leaf_nodes = {{ int = [4, 31] }}\n    learning_rate = {{ float = [0.02, 0.3], "
                            "log = true }}", "max_leaf_nodes = {{ choices = [7, 15] }}")
    runs, folds = tmp_path / "runs", CountingFolds()
    assert run_tune(_spec(tmp_path, text, trials=5, startup=10), runs, echo=lambda line: None, fold_runner=folds) == 0
    book = _tune_json(runs)
    assert len(book["trials"]) == 5 and book["counts"]["reused"] >= 3
    assert max(folds.trained.values()) == 1 and len(folds.trained) <= 4  # two plans, two folds each, at most


def test_a_time_budget_stops_new_trials_and_is_summed_over_resumes(tmp_path):
    runs = tmp_path / "runs"
    lines: list[str] = []
    spec = _spec(tmp_path, trials=1000, startup=1000)
    assert run_tune(spec, runs, echo=lines.append, timeout_s=0.5) == 0
    book = _tune_json(runs)
    assert 1 <= len(book["trials"]) < 1000 and book["elapsed_s"] >= 0.5
    log = (runs / "t" / "tune.log").read_text()
    assert "budget: " in log and "no new trial starts" in log
    folds = CountingFolds()
    assert run_tune(spec, runs, echo=lambda line: None, timeout_s=0.5, fold_runner=folds) == 0
    assert folds.calls == 0  # the budget was spent by the first session


@pytest.mark.slow  # spawns worker processes
def test_two_worker_processes_train_two_trials_a_round(tmp_path):
    runs = tmp_path / "runs"
    result = run_cli("tune", str(_spec(tmp_path, trials=4, startup=4)), "--runs-dir", str(runs), "--jobs", "2")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    book = _tune_json(runs)
    assert book["engine"]["engine"] == "process" and book["engine"]["workers"] == 2
    assert book["counts"]["complete"] == 4
    assert "progress: 2/4 trials" in result.stdout and "progress: 4/4 trials" in result.stdout
    assert "progress: 1/4" not in result.stdout and "progress: 3/4" not in result.stdout  # rounds of two


def test_dry_run_shows_the_space_and_writes_nothing(tmp_path):
    result = run_cli("tune", str(_spec(tmp_path)), "--runs-dir", str(tmp_path / "runs"), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "space: learning_rate: float in [0.02, 0.3] (log)" in result.stdout
    assert "space: max_leaf_nodes: int in [4, 31]" in result.stdout and "study: " in result.stdout
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow  # the GPU example plans on the Kaggle-size embedded data (generated once, ~20 s)
def test_the_example_specs_are_valid_and_plan_on_this_machine(tmp_path):
    from .conftest import ROOT

    for name in ("tune-quick-cpu.toml", "tune-gpu-tabm.toml"):
        result = run_cli("tune", str(ROOT / "sweeps" / name), "--runs-dir", str(tmp_path), "--dry-run")
        assert result.returncode == 0, name + result.stderr


def test_a_second_tune_of_the_same_folder_is_refused_while_one_runs(tmp_path):
    from roadrisk import locks

    runs = tmp_path / "runs"
    (runs / "t").mkdir(parents=True)
    held = locks.take(runs / "t", "tune t")
    try:
        result = run_cli("tune", str(_spec(tmp_path)), "--runs-dir", str(runs))
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--wait" in result.stderr, result.stderr
    finally:
        held.release()



@pytest.mark.slow  # creates a real MLflow SQLite store (its migrations take several seconds)
def test_with_tracking_every_trial_lands_in_the_tunes_mlflow_experiment(tmp_path):
    from mlflow.tracking import MlflowClient

    from roadrisk import tracking

    runs = tmp_path / "runs"
    tracker = tracking.tracker_for("mlflow", runs, echo=lambda line: None)
    assert run_tune(_spec(tmp_path, trials=4, startup=1), runs, echo=lambda line: None, on_run_end=tracker.log_run) == 0
    book = _tune_json(runs)
    client = MlflowClient(tracking_uri=tracker.uri)
    experiment = client.get_experiment_by_name("t")
    logged = client.search_runs([experiment.experiment_id])
    assert sorted(int(r.data.tags["roadrisk.tune.trial"]) for r in logged) == sorted(int(n) for n in book["trials"])
    by_trial = {int(r.data.tags["roadrisk.tune.trial"]): r for r in logged}
    for number, trial in book["trials"].items():
        run = by_trial[int(number)]
        assert run.data.tags["roadrisk.status"] == trial["state"]
        if trial["state"] == "complete":
            assert run.data.metrics["oof_rmse"] == trial["value"]


@pytest.mark.slow  # two real CLI processes, one stopped by SIGINT mid-trial
def test_ctrl_c_mid_trial_then_the_same_command_continues_that_trial_in_its_own_folder(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from .conftest import ROOT

    runs, spec = tmp_path / "runs", _spec(tmp_path, trials=4, folds=3, startup=10)
    proc = subprocess.Popen([sys.executable, "-m", "roadrisk", "tune", str(spec), "--runs-dir", str(runs)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    folds_seen = 0
    for line in proc.stdout:
        folds_seen += line.startswith("fold: ")
        if folds_seen == 4:  # trial 1's first fold is in: Ctrl-C while its second trains
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.stdout.read()
    assert proc.wait(timeout=120) == 130, rest
    assert "run the same command again to continue the study" in rest
    again = run_cli("tune", str(spec), "--runs-dir", str(runs))
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "resume: trial 1 was interrupted" in again.stdout
    book = _tune_json(runs)
    assert book["counts"]["complete"] == 4 and book["interrupted_trials"] == [1]
    for member in (runs / "t").glob("hgb-*"):
        (run_dir,) = [p for p in member.iterdir() if p.is_dir()]  # one run per plan: none started over
        record = json.loads((run_dir / records.RUN_FILE).read_text())
        assert record["status"] == "complete" and len(record["metrics"]["folds"]) == 3
    resumed = [t for t in book["trials"].values() if t.get("resumes_trial") == 1]
    assert len(resumed) == 1
    record = json.loads((Path(resumed[0]["run_dir"]) / records.RUN_FILE).read_text())
    assert record["resumes"][0]["from_status"] == "interrupted" and record["tune"]["resumes_trial"] == 1


@pytest.mark.slow  # starts a local Ray
def test_on_ray_a_round_spreads_its_trials_folds_and_a_pruned_trials_other_folds_are_cancelled(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'roadrisk[ray]')")
    runs = tmp_path / "runs"
    result = run_cli("tune", str(_spec(tmp_path, trials=6, folds=3, startup=2)), "--runs-dir", str(runs),
                     "--executor", "ray")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    book = _tune_json(runs)
    assert book["engine"]["engine"] == "ray" and len(book["trials"]) == 6
    for trial in book["trials"].values():
        record = json.loads((Path(trial["run_dir"]) / records.RUN_FILE).read_text())
        assert record["status"] == trial["state"] and record["executor"]["engine"] == "ray"
        if trial["state"] == "pruned":
            assert len(record["metrics"]["folds"]) == trial["pruned_after_folds"] < 3
