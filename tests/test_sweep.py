"""roadrisk sweep and the executors behind it, with a real local Ray (2 CPUs), not mocks."""

from __future__ import annotations

import json
import os
import signal
import textwrap

import pandas as pd
import pytest

from roadrisk import environment
from roadrisk import folds as folds_module
from roadrisk.errors import RoadriskError
from roadrisk.executors import ExecutorConfig
from roadrisk.preparation import DataCache
from roadrisk.sweep import spec as spec_module
from roadrisk.sweep.runner import plan_members, run_sweep

from .conftest import run_cli

pytestmark = pytest.mark.e2e

HGB_ONLY = """
    name = "{name}"
    cv_seed = 42
    [data]
    profile = "smoke"
    [[model]]
    name = "hgb"
    seeds = [1]
    params = {{ max_leaf_nodes = [7, 15], max_iter = 60 }}
"""


def _spec(tmp_path, text: str = HGB_ONLY, name: str = "t") -> str:
    path = tmp_path / f"{name}.toml"
    path.write_text(textwrap.dedent(text.format(name=name)))
    return str(path)


def _book(runs, name: str = "t") -> dict:
    return json.loads((runs / name / "sweep.json").read_text())


@pytest.fixture(scope="module")
def local_ray():
    """One real local Ray for the module's in-process tests (each CLI test starts its own)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'roadrisk[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


# ---------------------------------------------------------------- the spec

@pytest.mark.parametrize("body, words", [
    ('name = "x"\nbogus = 1\n[[model]]\nname = "hgb"\n', "top level: unknown key(s) bogus"),
    ('[[model]]\nname = "xgboost9"\n', "[[model]] #1 name: 'xgboost9'"),
    ('[[model]]\nname = "hgb"\nparams = { n_epochs = 3 }\n', "n_epochs not a parameter of hgb"),
    ('[[model]]\nname = "hgb"\nseeds = 3\n', "[[model]] #1 seeds: 3"),
    ('[data]\nprofile = "huge"\n[[model]]\nname = "hgb"\n', "[data] profile: 'huge'"),
    ('cv_seed = 1\n', "[[model]]: no models"),
    ('[[model]\n', "not valid TOML"),
    ('data = 5\n[[model]]\nname = "hgb"\n', "data: 5 is not a table"),
    ('defaults = "fast"\n[[model]]\nname = "hgb"\n', "defaults: 'fast' is not a table"),
    ('model = [1]\n', "[[model]] #1: 1 is not a table"),
    ('[data]\ndata_dir = 5\n[[model]]\nname = "hgb"\n', "[data] data_dir: 5"),
    ('[[model]]\nname = "hgb"\nseeds = [99999999999]\n', "seeds: 99999999999 is not a whole number in [0, 4294967295]"),
])
def test_a_bad_spec_is_one_line_naming_the_file_and_key(tmp_path, body, words):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    result = run_cli("sweep", str(path), "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert str(path) in result.stderr and words in result.stderr and "Fix:" in result.stderr
    assert not (tmp_path / "runs").exists()


def _member_ids(tmp_path, text: str, executor: ExecutorConfig | None = None, facts: dict | None = None) -> list[str]:
    sweep = spec_module.load(_spec(tmp_path, text))
    facts = facts or environment.collect(with_torch=False)
    states, _ = plan_members(sweep, tmp_path / "runs", executor or ExecutorConfig(), DataCache(), facts, None,
                             lambda line: None)
    return [s.id for s in states]


def test_a_spec_with_the_old_recipe_name_loads_as_reference_with_one_notice(tmp_path):
    text = HGB_ONLY.replace('name = "hgb"', 'name = "hgb"\n    recipe = "seed"')
    sweep = spec_module.load(_spec(tmp_path, text))
    assert {m.recipe for m in sweep.members} == {"reference"}
    assert len(sweep.notes) == 1 and "recipe seed is now called reference" in sweep.notes[0]
    assert str(sweep.path) in sweep.notes[0]
    assert _member_ids(tmp_path, text) == _member_ids(tmp_path, text.replace('"seed"', '"reference"'))


def test_lists_expand_into_a_grid_and_ids_follow_what_is_trained(tmp_path):
    spec = spec_module.load(_spec(tmp_path, HGB_ONLY.replace("seeds = [1]", "seeds = [1, 2]")))
    assert [(m.params["max_leaf_nodes"], m.seed) for m in spec.members] == [(7, 1), (7, 2), (15, 1), (15, 2)]
    base = _member_ids(tmp_path, HGB_ONLY)
    assert len(set(base)) == 2 and base == _member_ids(tmp_path, HGB_ONLY)  # stable
    assert _member_ids(tmp_path, HGB_ONLY.replace("cv_seed = 42", "cv_seed = 7"))[0] != base[0]  # other folds
    other_data = HGB_ONLY.replace('profile = "smoke"', 'profile = "smoke"\n    data_seed = 3')
    assert _member_ids(tmp_path, other_data)[0] != base[0]  # other data
    assert _member_ids(tmp_path, HGB_ONLY.replace("[[model]]", '[defaults]\n    target = "residual"\n    [[model]]'))[0] \
        != base[0]  # another target


def test_members_that_differ_only_in_device_get_different_ids(tmp_path):
    text = HGB_ONLY.replace('seeds = [1]', 'seeds = [1]\n    device = "cpu"') + """
    [[model]]
    name = "realmlp"
    device = "cpu"
    params = {{ n_epochs = 2 }}
    [[model]]
    name = "realmlp"
    device = "auto"
    params = {{ n_epochs = 2 }}
    """
    facts = {**environment.collect(with_torch=True), "cuda_available": True, "gpu_name": "mocked GPU"}
    ids = _member_ids(tmp_path, text, facts=facts)  # a mocked CUDA machine: auto means cuda there
    assert len(ids) == 4 and len(set(ids)) == 4


def test_an_unused_seed_is_one_member_and_said_once(tmp_path):
    lines = []
    sweep = spec_module.load(_spec(tmp_path, HGB_ONLY.replace("seeds = [1]", "seeds = [1, 2, 3]")))
    states, _ = plan_members(sweep, tmp_path / "runs", ExecutorConfig(), DataCache(),
                             environment.collect(with_torch=False), None, lines.append)
    assert len(states) == 2  # two grid points; hgb without early stopping ignores its seed
    assert sum("no randomness" in line for line in lines) == 1


# ---------------------------------------------------------------- running and re-running

@pytest.mark.slow  # trains a sweep, then runs it again
def test_a_finished_sweep_run_again_trains_nothing(tmp_path):
    runs, spec = tmp_path / "runs", _spec(tmp_path)
    assert run_sweep(spec, runs, echo=lambda line: None) == 0
    first = _book(runs)
    assert first["status"] == "complete" and [m["status"] for m in first["members"]] == ["complete"] * 2
    run_dirs = sorted(p for p in runs.glob("t/*/*") if p.is_dir())
    assert len(run_dirs) == 2 and all((p / "oof.csv").is_file() for p in run_dirs)
    calls = []
    real = folds_module.run_fold
    assert run_sweep(spec, runs, echo=lambda line: None, fold_runner=lambda *a, **k: calls.append(1) or real(*a, **k)) == 0
    assert calls == [] and sorted(p for p in runs.glob("t/*/*") if p.is_dir()) == run_dirs
    assert all(m["reused"] for m in _book(runs)["members"])


@pytest.mark.slow  # trains a sweep twice
def test_an_interrupted_sweep_resumes_its_members_where_they_stopped(tmp_path):
    runs, spec = tmp_path / "runs", _spec(tmp_path)
    real = folds_module.run_fold
    seen = []

    def last_fold_is_interrupted(spec, *args, **kwargs):
        seen.append(spec.index)
        if len(seen) == 4:  # the second member's second fold: its first is on disk
            raise KeyboardInterrupt
        return real(spec, *args, **kwargs)

    assert run_sweep(spec, runs, echo=lambda line: None, fold_runner=last_fold_is_interrupted) == 130
    book = _book(runs)
    assert book["status"] == "interrupted"
    assert [m["status"] for m in book["members"]] == ["complete", "interrupted"]
    assert run_sweep(spec, runs, echo=lambda line: None) == 0
    book = _book(runs)
    assert [(m["status"], m["reused"], m["resumed"]) for m in book["members"]] == [
        ("complete", True, False), ("complete", False, True)]
    record = json.loads((runs / "t" / book["members"][1]["id"]).glob("*/run.json").__next__().read_text())
    assert record["resumed_folds"] == [0] and record["status"] == "complete"


def test_a_failing_member_fails_alone(tmp_path):
    """An exception in one member's fit fails that member, not the sweep: the others finish."""
    spec = _spec(tmp_path, HGB_ONLY.replace("max_iter = 60", "max_iter = [60, 61]"))
    runs = tmp_path / "runs"
    real = folds_module.run_fold

    def fails_for_61(fold, *args, **kwargs):
        if fold.params["max_iter"] == 61:
            raise RuntimeError("out of memory in this member's fit")
        return real(fold, *args, **kwargs)

    assert run_sweep(spec, runs, echo=lambda line: None, fold_runner=fails_for_61) == 1
    statuses = sorted((m["params"]["max_iter"], m["status"]) for m in _book(runs)["members"])
    assert statuses == [(60, "complete"), (60, "complete"), (61, "failed"), (61, "failed")]
    failed = next(m for m in _book(runs)["members"] if m["status"] == "failed")
    assert "out of memory in this member's fit" in failed["error"]


def test_a_bad_parameter_value_fails_the_spec_up_front(tmp_path):
    path = _spec(tmp_path, HGB_ONLY.replace("max_iter = 60", "max_iter = [60, -1]"))
    result = run_cli("sweep", path, "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "[[model]] #1 params: max_iter=-1: hgb accepts an int in the range [1, inf)" in result.stderr
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- Ray

@pytest.mark.slow  # trains realmlp twice, inline and on Ray
def test_inline_and_ray_give_the_same_predictions_and_records(tmp_path, local_ray):
    text = HGB_ONLY + """
    [[model]]
    name = "realmlp"
    seeds = [3]
    params = {{ n_epochs = 3 }}
    """
    outputs = {}
    for executor in ("inline", "ray"):
        runs = tmp_path / executor
        config = ExecutorConfig(executor, cpus_per_task=2 if executor == "ray" else None)
        assert run_sweep(_spec(tmp_path, text), runs, config, echo=lambda line: None) == 0
        outputs[executor] = _book(runs)
    inline, ray_book = outputs["inline"], outputs["ray"]
    assert ray_book["engine"]["engine"] == "ray" and ray_book["engine"]["nodes"] == 1
    assert [m["id"] for m in inline["members"]] == [m["id"] for m in ray_book["members"]]
    volatile = {"timings", "started_at", "ended_at", "run_id", "pid", "command", "options", "environment", "device",
                "executor"}
    for a, b in zip(inline["members"], ray_book["members"]):
        assert a["oof_rmse"] == b["oof_rmse"]
        dir_a, dir_b = (next((tmp_path / e / "t" / a["id"]).glob("*/")) for e in ("inline", "ray"))
        for name in ("oof.csv", "submission.csv"):
            assert (dir_a / name).read_bytes() == (dir_b / name).read_bytes(), (a["id"], name)
        rec_a, rec_b = (json.loads((d / "run.json").read_text()) for d in (dir_a, dir_b))
        assert rec_a.pop("config") == rec_b.pop("config")  # the same plan; only the executor differs
        assert rec_a.pop("executor")["engine"] == "inline" and rec_b.pop("executor")["engine"] == "ray"
        assert {k: v for k, v in rec_a.items() if k not in volatile} == \
               {k: v for k, v in rec_b.items() if k not in volatile}
        assert all(f["worker"]["node_ip"] for f in rec_b["timings"]["folds"])  # where each fold ran


def test_the_features_go_to_the_object_store_once(tmp_path, local_ray):
    from roadrisk.executors.ray import RayExecutor

    made = []
    real_init = RayExecutor.__init__

    def keep(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        made.append(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RayExecutor, "__init__", keep)
        assert run_sweep(_spec(tmp_path), tmp_path / "runs", ExecutorConfig("ray"), echo=lambda line: None) == 0
    (executor,) = made
    assert len(executor._data_refs) == 1  # 2 members x 2 folds, one put


@pytest.mark.slow  # trains realmlp on Ray
def test_a_ray_worker_killed_mid_fold_is_retried_and_the_sweep_finishes(tmp_path, local_ray):
    import psutil

    from roadrisk.sweep import progress as progress_module

    killed = []
    real_epoch = progress_module.SweepProgress.epoch

    def kill_the_worker_once(self, task, event):
        if not killed:
            for proc in psutil.process_iter(["cmdline"]):
                if any("ray::_ray_fold" in part for part in proc.info["cmdline"] or []):
                    os.kill(proc.pid, signal.SIGKILL)
                    killed.append(proc.pid)
                    break
        return real_epoch(self, task, event)

    text = """
    name = "{name}"
    [data]
    profile = "smoke"
    [[model]]
    name = "realmlp"
    seeds = [1]
    params = {{ n_epochs = 4 }}
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(progress_module.SweepProgress, "epoch", kill_the_worker_once)
        code = run_sweep(_spec(tmp_path, text), tmp_path / "runs", ExecutorConfig("ray", cpus_per_task=2),
                         echo=lambda line: None)
    assert killed, "no Ray worker was found to kill"
    assert code == 0
    (member,) = _book(tmp_path / "runs")["members"]
    assert member["status"] == "complete" and member["attempts"] >= 3  # 2 folds, one of them started twice


@pytest.mark.slow  # starts a local Ray through the CLI
def test_train_spreads_one_runs_folds_over_ray_through_the_cli(tmp_path):
    result = run_cli("train", "--profile", "smoke", "--model", "hgb", "--executor", "ray", "--runs-dir",
                     str(tmp_path))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Started a local Ray" not in result.stdout + result.stderr  # Ray's noise stays in library.log
    (run_dir,) = (tmp_path / "native").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["executor"]["engine"] == "ray" and record["status"] == "complete"
    assert {f["worker"]["attempts"] for f in record["timings"]["folds"]} == {1}
    oof = pd.read_csv(run_dir / "oof.csv")
    assert len(oof) == 2000 and oof.accident_risk.notna().all()


def test_ray_missing_is_one_clear_line(monkeypatch):
    import sys

    from roadrisk.executors import make_executor

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(RoadriskError, match=r"Ray is not installed. Fix: pip install 'roadrisk\[ray\]'"):
        make_executor(ExecutorConfig("ray"))
