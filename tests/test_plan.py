"""The run plan: one pure value per run, its hash the run's identity, and the one definition of sameness."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from roadrisk import plan, records
from roadrisk.errors import RoadriskError
from roadrisk.executors import ExecutorConfig
from roadrisk.executors.local import InlineExecutor
from roadrisk.trainer import TrainOptions, resume, train

from .conftest import run_cli


def test_the_key_sets_nest():
    assert set(plan.SAME_ROWS) < set(plan.COMPARABLE) < set(plan.SAME_RUN)
    assert "seed" in plan.SAME_RUN and "seed" not in plan.COMPARABLE  # seeds are what a blend averages
    assert "device" in plan.SAME_RUN and "target" in plan.COMPARABLE and "cv" in plan.SAME_ROWS


def test_the_digest_is_plain_json_hashed_so_any_process_and_python_gives_the_same_value():
    # A fixed value and its hash, written down: a change of Python, dict order or JSON formatting that moved
    # it would orphan every sweep member id and resume check in existing runs folders.
    assert plan.digest({"b": [1, 2.5, None], "a": {"y": "x", "x": True}}) == "2ed3ba076b85"
    script = ("from roadrisk import plan; print(plan.digest({'b': [1, 2.5, None], 'a': {'y': 'x', 'x': True}}))")
    seen = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip() for seed in ("0", "1", "12345")}
    assert seen == {"2ed3ba076b85"}


def _plan_id(tmp_path, *flags: str) -> str:
    result = run_cli("train", "--profile", "smoke", "--model", "hgb", "--dry-run", "--runs-dir", str(tmp_path), *flags)
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("plan.plan_id: ")]
    return json.loads(line.split(": ", 1)[1])


def test_a_plan_hash_is_stable_across_processes_and_moves_with_what_is_computed(tmp_path):
    first, again = _plan_id(tmp_path), _plan_id(tmp_path)
    assert first == again
    assert _plan_id(tmp_path, "--jobs", "2") == first  # how folds are spread is not what they compute
    for flags in (("--target", "residual"), ("--cv", "stratified"), ("--folds", "3"), ("--cv-seed", "7"),
                  ("--param", "max_iter=50"), ("--recipe", "reference")):
        assert _plan_id(tmp_path, *flags) != first, flags


def _printed_plan(tmp_path, *flags: str) -> dict:
    """What ``roadrisk train --dry-run`` prints as ``plan.KEY: value`` lines, read back."""
    result = run_cli("train", *flags, "--dry-run", "--runs-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    return {line.split(": ", 1)[0].removeprefix("plan."): json.loads(line.split(": ", 1)[1])
            for line in result.stdout.splitlines() if line.startswith("plan.")}


def test_a_renamed_recipe_keeps_the_plan_id_it_had_so_old_sweep_members_are_found(tmp_path):
    """Sweep member folders are named by plan id: `seed` -> `reference` must not make a sweep train them again."""
    printed = _printed_plan(tmp_path, "--profile", "smoke", "--model", "hgb", "--recipe", "reference", "--seed", "3")
    assert printed["recipe"] == "reference"
    values = {key: printed[key] for key in plan.SAME_RUN}
    if not printed["seed_matters"]:
        values["seed"] = None
    assert plan.digest({**values, "recipe": "seed"}) == printed["plan_id"]  # hashed under its first name
    assert plan.digest(values) != printed["plan_id"]
    assert _plan_id(tmp_path, "--recipe", "seed") == _plan_id(tmp_path, "--recipe", "reference")


def test_dry_run_prints_exactly_the_records_config(tmp_path):
    printed = _printed_plan(tmp_path, "--profile", "smoke", "--model", "tabm", "--target", "residual", "--cv",
                            "stratified")
    (run_dir,) = (tmp_path / "native").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "dry-run" and printed == record["config"]
    assert printed["target"] == "residual" and printed["cv"] == "stratified" and printed["cv_bins"] == 10


def _stopped_before_any_fold(spec, *args):
    raise KeyboardInterrupt  # Ctrl-C as the first fold starts: the plan is recorded, nothing trained


def test_a_run_planned_on_a_mocked_cuda_box_is_refused_on_a_cpu_box_naming_the_field(tmp_path, machine):
    machine(cuda=True, cuda_build="12.8")  # mocked: an NVIDIA machine, where auto means cuda
    opts = TrainOptions(profile="smoke", model="realmlp", runs_dir=tmp_path, param_overrides={"n_epochs": 1})
    outcome = train(opts, executor=InlineExecutor(_stopped_before_any_fold))
    assert outcome.exit_code == 130
    before = (outcome.run_dir / "run.json").read_bytes()
    assert json.loads(before)["config"]["device"] == "cuda"
    machine(cuda=False)  # the same folder, now on a CPU-only machine
    again = resume(outcome.run_dir, {})
    assert again.exit_code == 2 and again.status == "failed"
    assert (outcome.run_dir / "run.json").read_bytes() == before  # a refused resume changes nothing
    log = (outcome.run_dir / "train.log").read_text()
    assert "device differs: the run has cuda, now cpu" in log


def test_ray_without_gpus_per_task_on_a_mocked_cuda_box_trains_on_cpu_and_says_why():
    facts = {"cuda_available": True, "gpu_name": "mocked H200", "torch": "2.13.0", "cpu_count": 2}
    opts = TrainOptions(model="realmlp")
    choice = plan.device_for(opts, facts, plan.ExecutorSettings("ray"))
    assert choice.selected == "cpu" and choice.fell_back and "--gpus-per-task" in choice.reason
    assert plan.device_for(opts, facts, plan.ExecutorSettings("ray", 0.5)).selected == "cuda"
    assert plan.device_for(opts, facts, plan.ExecutorSettings("inline")).selected == "cuda"


@pytest.mark.parametrize("flags, words", [
    (("--executor", "inline", "--jobs", "2"), "--jobs 2 with --executor inline"),
    (("--gpus-per-task", "0.5"), "--gpus-per-task is a Ray setting"),
    (("--executor", "ray", "--jobs", "2"), "--jobs with --executor ray"),
    (("--fold", "3"), "unrecognized arguments: --fold"),  # no abbreviations: --fold is not --folds
    (("--cv-bins", "5"), "--cv-bins: only --cv stratified"),
    (("--folds", "101"), "at most 100 folds"),
])
def test_conflicting_or_abbreviated_flags_exit_2_in_one_line(tmp_path, flags, words):
    result = run_cli("train", "--profile", "smoke", "--model", "hgb", "--runs-dir", str(tmp_path), *flags)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and words in result.stderr, result.stderr
    assert not (tmp_path / "native").exists()


def test_executor_flags_become_one_config():
    assert ExecutorConfig.from_flags(None, None) == ExecutorConfig("inline", 1)
    assert ExecutorConfig.from_flags(None, 3) == ExecutorConfig("process", 3)
    assert ExecutorConfig.from_flags("process", None, usable_cpus=lambda: 4).jobs == 4
    with pytest.raises(RoadriskError, match="--address is a Ray setting"):
        ExecutorConfig.from_flags("process", None, address="head:6379")


def test_an_old_record_reads_as_the_current_schema():
    old = {"schema_version": 2, "kind": "train", "config": {"seed": 1, "cv_seed": 42, "recipe": "fast", "folds": 3}}
    record = records.upgrade(old)
    assert plan.key_values(record, ("cv", "cv_bins", "target")) == {"cv": "kfold", "cv_bins": None, "target": "raw"}


def test_a_fold_too_small_for_a_score_is_one_line(tmp_path):
    data = tmp_path / "data"
    assert run_cli("data", "--out", str(data), "--train-rows", "60", "--test-rows", "10",
                   "--original-rows", "20").returncode == 0
    result = run_cli("train", "--data-dir", str(data), "--profile", "smoke", "--model", "hgb", "--folds", "10",
                     "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 2 and "a fold would hold 6 validation rows" in result.stderr + result.stdout


def test_the_plan_is_computed_without_training_or_writing(tmp_path):
    from roadrisk import data as data_module
    from roadrisk import environment

    data = tmp_path / "data"
    assert run_cli("data", "--out", str(data), "--train-rows", "200", "--test-rows", "20",
                   "--original-rows", "50").returncode == 0
    dataset = data_module.load(data)
    facts = environment.collect(with_torch=False)
    opts = TrainOptions(data_dir=data, profile="smoke", model="hgb")
    a = plan.make_plan(opts, facts, dataset.fingerprint, True, len(dataset.train))
    b = plan.make_plan(opts, facts, dataset.fingerprint, True, len(dataset.train))
    assert a == b and a.identity == b.identity and sorted(os.listdir(tmp_path)) == ["data"]
    assert a.as_config()["plan_id"] == a.identity and a.data_fingerprint == dataset.fingerprint
