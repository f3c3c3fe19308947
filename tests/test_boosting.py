"""XGBoost, LightGBM and CatBoost: the real libraries, trained for real (nothing here mocks them).

What is mocked is what cannot exist on this machine, and the test names say so: an NVIDIA GPU, a Mac,
and a Mac without Homebrew's libomp.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from roadrisk import boosting, data, device, environment, features, schema
from roadrisk.console import epoch_line
from roadrisk.device import DeviceUnavailable, choose
from roadrisk.epochs import EpochTracker, observe_epochs
from roadrisk.errors import EXIT_DEVICE_UNAVAILABLE, EXIT_USAGE, RoadriskError
from roadrisk.models import MODELS, fit_predict
from roadrisk.recipes import RECIPES

from .conftest import ROOT, run_cli

GBDTS = ("xgb", "lgbm", "catboost")
# A parameter each library must receive from --param, and the value given.
OVERRIDE = {"xgb": ("max_depth", 3), "lgbm": ("num_leaves", 7), "catboost": ("depth", 4)}
# Where each library keeps its thread count.
THREADS_PARAM = {"xgb": "n_jobs", "lgbm": "n_jobs", "catboost": "thread_count"}


@pytest.fixture(scope="module")
def fold_frames(tmp_path_factory):
    """A small generated dataset's features (the reference recipe: booleans as categoricals too), one split."""
    from roadrisk.generator import write_dataset

    out = tmp_path_factory.mktemp("gbdt-data")
    write_dataset(out, 800, 200, 800, seed=3)
    dataset = data.load(out)
    feature_set = features.build(dataset.train, dataset.test, dataset.original, RECIPES["reference"])
    y = dataset.train[schema.TARGET].to_numpy(float)
    x = feature_set.train
    return x.iloc[:600], y[:600], x.iloc[600:], y[600:], feature_set.test, tuple(feature_set.categorical)


@contextlib.contextmanager
def _no_timer(phase):
    yield


def _fit(model: str, frames, seed: int = 42, threads: int = 1, on_epoch=None, **override):
    spec = MODELS[model]
    params = {**spec.defaults("smoke", "cpu", "fast"), **override}
    x_train, y_train, x_val, y_val, x_test, categorical = frames
    with observe_epochs(on_epoch, *spec.epoch_plan(params), pytabkit=False):
        return fit_predict(spec, params=params, device="cpu", seed=seed, threads=threads, x_train=x_train,
                           y_train=y_train, x_val=x_val, y_val=y_val, x_test=x_test, timer=_no_timer,
                           categorical=categorical)


# ---------------------------------------------------------------- lazy imports

def test_importing_roadrisk_and_the_other_models_never_loads_a_boosting_library():
    code = (
        "import sys\n"
        "import roadrisk, roadrisk.cli, roadrisk.trainer, roadrisk.folds, roadrisk.executors, roadrisk.doctor\n"
        "from roadrisk import environment\n"
        "from roadrisk.models import MODELS\n"
        "MODELS['hgb'].build(MODELS['hgb'].defaults('smoke', 'cpu', 'fast'), 'cpu', 0, 1)\n"
        "environment.collect(with_torch=False)\n"
        "print(sorted(m for m in ('xgboost', 'lightgbm', 'catboost') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_doctor_facts_name_each_library_from_its_metadata():
    facts = environment.boosting_facts("Linux")
    for module in ("xgboost", "lightgbm", "catboost"):
        assert facts[module][0].isdigit(), facts  # installed here: a version, not "not installed"
    assert "xgboost-cpu" in facts["xgboost"] and facts["xgboost_cuda_build"] is False  # this venv's CPU build


def test_mocked_macos_without_libomp_is_one_line_with_the_fix(monkeypatch):
    """A Mac without Homebrew's libomp cannot exist here: the import fails with the message lightgbm's
    macOS wheel gives there."""
    message = ("dlopen(/venv/lib/python3.11/site-packages/lightgbm/lib/lib_lightgbm.dylib, 0x0006): "
               "Library not loaded: @rpath/libomp.dylib\n  Referenced from: lib_lightgbm.dylib\n  Reason: tried: "
               "'/opt/homebrew/opt/libomp/lib/libomp.dylib' (no such file)")

    def mocked_import(name):
        raise OSError(message)

    monkeypatch.setattr(boosting, "_import", mocked_import)
    with pytest.raises(RoadriskError) as info:
        boosting.load("lgbm")
    text = str(info.value)
    assert text.startswith("error: --model lgbm: lightgbm cannot load the OpenMP runtime (")
    assert "Library not loaded: @rpath/libomp.dylib" in text and text.endswith("Fix: brew install libomp")
    assert "\n" not in text and info.value.exit_code == EXIT_USAGE


def test_mocked_macos_without_libomp_train_exits_2(monkeypatch, tmp_path, capsys):
    from roadrisk import cli

    def mocked_import(name):
        raise ValueError("XGBoost Library (libxgboost.dylib) could not be loaded. Likely causes: OpenMP runtime "
                         "is not installed (libomp.dylib for Mac OSX)")

    monkeypatch.setattr(boosting, "_import", mocked_import)
    code = cli.main(["train", "--profile", "smoke", "--model", "xgb", "--device", "cpu", "--runs-dir", str(tmp_path)])
    assert code == EXIT_USAGE
    errors = [line for line in capsys.readouterr().out.splitlines() if line.startswith("error:")]
    assert errors == [errors[0]] and "xgboost cannot load the OpenMP runtime" in errors[0]
    assert "brew install libomp" in errors[0]


def test_mocked_macos_doctor_says_libomp_is_missing(monkeypatch):
    monkeypatch.setattr(environment, "MACOS_LIBOMP", ("/nonexistent/libomp.dylib",))
    assert environment.openmp_runtime("Darwin").endswith("Fix: brew install libomp")


# ---------------------------------------------------------------- the fit itself (in process, real libraries)

@pytest.mark.parametrize("model", GBDTS)
def test_same_seed_same_model_and_threads_reach_the_library(model, fold_frames):
    val_a, test_a, fitted = _fit(model, fold_frames, seed=5, threads=1)
    val_b, test_b, _ = _fit(model, fold_frames, seed=5, threads=1)
    np.testing.assert_array_equal(val_a, val_b)
    np.testing.assert_array_equal(test_a, test_b)
    assert fitted.estimator_.get_params()[THREADS_PARAM[model]] == 1
    assert fitted.get_params()["n_threads"] == 1 and THREADS_PARAM[model] not in fitted.get_params()
    val_c, _, _ = _fit(model, fold_frames, seed=6, threads=1)
    assert not np.array_equal(val_a, val_c)  # the seed does reach the library


@pytest.mark.parametrize("model", GBDTS)
def test_early_stopping_on_the_validation_rows_and_progress_every_n_rounds(model, fold_frames):
    events = []
    rounds = boosting.REGRESSORS[model].rounds_param
    val_pred, _, fitted = _fit(model, fold_frames, on_epoch=events.append, **{rounds: 400, "learning_rate": 0.3})
    assert events and all(event.unit == "round" for event in events)
    last = events[-1]
    assert last.epoch < 400, "lr 0.3 on 600 rows overfits long before 400 rounds: early stopping must end it"
    assert last.epoch - last.best_epoch >= 20 - 1  # it stopped after the smoke patience ran out
    assert fitted.best_round_ == last.best_epoch
    rmse = float(np.sqrt(np.mean((val_pred - fold_frames[3]) ** 2)))
    assert abs(rmse - last.best_rmse) < 2e-4  # the prediction uses the best round, not the last
    assert [e.epoch for e in events[:-1]] == [boosting.progress_every(400) * k for k in range(1, len(events))]


def test_categorical_columns_reach_each_library_as_categoricals(fold_frames):
    categorical = list(fold_frames[5])
    _, _, xgb_model = _fit("xgb", fold_frames)
    types = dict(zip(xgb_model.estimator_.get_booster().feature_names, xgb_model.estimator_.get_booster().feature_types))
    assert {types[name] for name in categorical} == {"c"}
    _, _, lgbm_model = _fit("lgbm", fold_frames)
    infos = lgbm_model.estimator_.booster_.dump_model()["feature_infos"]
    # LightGBM lists the category codes of a categorical feature under "values"; a numeric one has none
    assert sorted(name for name, info in infos.items() if info["values"]) == sorted(categorical)
    _, _, cat_model = _fit("catboost", fold_frames)
    positions = cat_model.estimator_.get_cat_feature_indices()
    assert sorted(cat_model.estimator_.feature_names_[i] for i in positions) == sorted(categorical)


def test_progress_reports_every_nth_round_with_the_true_best():
    events = []
    progress = boosting.RoundProgress(EpochTracker(events.append, 100, 10), 100)
    for number, value in enumerate([0.9, 0.5, 0.6, 0.4, 0.7, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8], 1):
        progress.round(number, value)
    progress.finish()
    assert progress.every == 5 and [e.epoch for e in events] == [5, 10, 11]
    assert events[0].best_rmse == 0.4 and events[0].best_epoch == 4  # round 4 was never sent, yet it is the best
    assert events[-1].patience_left == 10 - (11 - 4)
    line = epoch_line(0, 2, events[0], 0, 1, [])
    assert line.startswith("fold 1/2 round 5/100: val_rmse 0.700000, best 0.400000 (round 4), ")
    assert "ms/round" in line and "fold eta <= " in line


# ---------------------------------------------------------------- devices, on machines this is not

@pytest.mark.parametrize("model", GBDTS)
def test_mocked_mac_apple_silicon_trains_boosting_on_the_cpu(model, machine):
    facts = machine(os_name="Darwin", arch="arm64", mac_version="15.1", mps_built=True, mps_available=True)
    auto = choose("auto", False, facts, model, False)
    assert auto.selected == "cpu" and "no Metal backend" in auto.reason
    asked = choose("mps", False, facts, model, False)
    assert asked.selected == "cpu" and asked.fell_back and "no Metal backend" in asked.reason
    with pytest.raises(DeviceUnavailable) as info:
        choose("mps", True, facts, model, False)
    assert info.value.exit_code == EXIT_DEVICE_UNAVAILABLE and "no Metal backend" in str(info.value)


def _mocked_nvidia_facts(machine, xgboost_cuda_build=True):
    facts = machine(cuda=True, cuda_build="12.8")
    return {**facts, "xgboost_cuda_build": xgboost_cuda_build}


def test_mocked_nvidia_machine_xgb_and_catboost_on_cuda_lgbm_on_cpu(machine):
    facts = _mocked_nvidia_facts(machine)
    xgb = choose("auto", False, facts, "xgb", False)
    assert xgb.selected == "cuda" and 'device="cuda"' in xgb.reason and "H100" in xgb.reason
    cat = choose("cuda", True, facts, "catboost", False)
    assert cat.selected == "cuda" and 'task_type="GPU"' in cat.reason
    lgbm = choose("auto", False, facts, "lgbm", False)
    assert lgbm.selected == "cpu" and device.LIGHTGBM_NO_CUDA in lgbm.reason
    with pytest.raises(DeviceUnavailable) as info:
        choose("cuda", True, facts, "lgbm", False)
    assert "the lightgbm wheel has no CUDA build" in str(info.value) and "--device cpu" in str(info.value)


def test_mocked_nvidia_machine_with_the_cpu_only_xgboost_falls_back_and_says_why(machine):
    choice = choose("cuda", False, _mocked_nvidia_facts(machine, xgboost_cuda_build=False), "xgb", False)
    assert choice.selected == "cpu" and choice.fell_back and "xgboost-cpu" in choice.reason


def test_mocked_nvidia_smi_without_torch_is_enough_for_xgboost(monkeypatch):
    """A GBDT run never loads torch: the GPU is seen through nvidia-smi, mocked here (no NVIDIA GPU exists)."""
    monkeypatch.setattr(environment, "nvidia_gpus", lambda: (1, "nvidia-smi -L (mocked)"))
    facts = {**environment.collect(with_torch=False), "os": "Linux", "xgboost_cuda_build": True}
    choice = choose("auto", False, facts, "xgb", False)
    assert choice.selected == "cuda" and "1 NVIDIA GPU(s) (nvidia-smi -L (mocked))" in choice.reason
    assert "nvidia-smi" in device.cuda_status(facts)  # doctor's line no longer says "CPU only"
    monkeypatch.setattr(environment, "nvidia_gpus", lambda: (0, "no nvidia-smi on PATH (mocked)"))
    facts = {**environment.collect(with_torch=False), "os": "Linux", "xgboost_cuda_build": True}
    assert choose("auto", False, facts, "catboost", False).selected == "cpu"


def test_mocked_cuda_choice_reaches_each_library_as_its_device_parameter():
    """Building (not fitting) needs no GPU: the parameter each library gets for a CUDA choice."""
    assert boosting.build("xgb", MODELS["xgb"].defaults("smoke", "cuda", "fast"), "cuda", 0, 1) \
        ._estimator().get_params()["device"] == "cuda"
    assert boosting.build("catboost", MODELS["catboost"].defaults("smoke", "cuda", "fast"), "cuda", 0, 1) \
        ._estimator().get_params()["task_type"] == "GPU"
    assert boosting.build("xgb", {}, "cpu", 0, 1)._estimator().get_params()["device"] == "cpu"


# ---------------------------------------------------------------- the real CLI, end to end

def _record(runs_dir: Path) -> tuple[Path, dict]:
    run_dir = next(runs_dir.glob("native/*"))
    return run_dir, json.loads((run_dir / "run.json").read_text())


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("model", GBDTS)
def test_cli_smoke_run_records_folds_progress_params_and_reloadable_models(model, tmp_path):
    key, value = OVERRIDE[model]
    done = run_cli("train", "--profile", "smoke", "--model", model, "--device", "cpu", "--runs-dir", str(tmp_path),
                   "--save-models", "--param", f"{key}={value}", timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    run_dir, record = _record(tmp_path)
    assert record["status"] == "complete"
    folds = record["metrics"]["folds"]
    assert [f["fold"] for f in folds] == [0, 1] and all(0 < f["rmse"] < 0.2 for f in folds)
    assert all(f["epochs"] >= f["best_epoch"] >= 1 for f in folds)  # rounds run and the round kept
    log = (run_dir / "train.log").read_text()
    assert "fold 1/2 round " in log and "fold 2/2 round " in log and "ms/round" in log
    assert record["device"]["selected"] == "cpu"
    config = record["config"]
    assert config["params"][key] == value and config["estimator_params"]["n_threads"] == config["threads"]
    assert THREADS_PARAM[model] not in config["estimator_params"]  # roadrisk's name only: --param cannot set it

    # --save-models: each fold's model loads again and predicts what the run wrote
    dataset = data.load(Path(record["data"]["path"]))
    feature_set = features.build(dataset.train, dataset.test, dataset.original, RECIPES[config["recipe"]])
    test_preds = []
    for fold in ("0", "1"):
        with open(run_dir / record["outputs"]["models"][fold], "rb") as handle:
            model_object = pickle.load(handle)
        library = model_object.estimator_.get_params()
        assert library[THREADS_PARAM[model]] == config["threads"]  # the run's threads, not the host's CPUs
        assert library[key] == value  # the --param override reached the library itself
        test_preds.append(np.asarray(model_object.predict(feature_set.test), float))
    submission = pd.read_csv(run_dir / "submission.csv")
    np.testing.assert_allclose(np.clip(np.mean(test_preds, axis=0), 0, 1), submission[schema.TARGET], atol=1e-9)


@pytest.mark.e2e
@pytest.mark.slow
def test_cli_param_naming_the_library_thread_count_is_refused(tmp_path):
    done = run_cli("train", "--profile", "smoke", "--model", "xgb", "--device", "cpu", "--runs-dir", str(tmp_path),
                   "--param", "n_jobs=64")
    assert done.returncode == EXIT_USAGE
    assert "error: --param n_jobs: not a parameter of xgb" in done.stdout + done.stderr
    done = run_cli("train", "--profile", "smoke", "--model", "catboost", "--device", "cpu", "--runs-dir", str(tmp_path),
                   "--param", "n_threads=64")
    assert done.returncode == EXIT_USAGE and "error: --param n_threads: set by roadrisk itself" in done.stdout + done.stderr


@pytest.mark.e2e
@pytest.mark.slow
def test_cli_strict_mps_with_a_boosting_model_exits_3_with_the_reason(tmp_path):
    done = run_cli("train", "--profile", "smoke", "--model", "lgbm", "--device", "mps", "--strict-device",
                   "--runs-dir", str(tmp_path))
    assert done.returncode == EXIT_DEVICE_UNAVAILABLE
    errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("error:")]
    assert errors and "no Metal backend" in errors[0] and "lightgbm" in errors[0]


# ---------------------------------------------------------------- packaging: which xgboost a platform gets

def test_linux_cpu_rows_take_xgboost_cpu_and_every_other_row_plain_xgboost():
    from roadrisk import platforms

    for row in platforms.ROWS:
        expected = "xgboost-cpu" if row.system == "Linux" and row.variant == "cpu" else "xgboost"
        assert row.packages == (expected,), row.key
    lock = (ROOT / "requirements" / "constraints.txt").read_text()
    assert "\nxgboost==" in lock and "\nxgboost-cpu==" in lock  # both distributions pinned by the one lock


@pytest.mark.parametrize("variant, expected", [("cpu", "xgboost-cpu"), ("cuda", "xgboost")])
def test_each_image_installs_its_rows_xgboost_build(variant, expected):
    text = (ROOT / "docker" / "Dockerfile").read_text()  # one Dockerfile, TORCH=cpu|cuda
    assert 'python3 platforms.py packages --variant "$TORCH" >> requirements.txt' in text
    done = subprocess.run([sys.executable, str(ROOT / "src" / "roadrisk" / "platforms.py"), "packages", "--variant",
                           variant, "--system", "Linux", "--machine", "x86_64", "--python", "3.11"],
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.split() == [expected]
