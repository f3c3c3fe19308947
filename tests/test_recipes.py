"""--recipe reference is the reference notebook to the parameter; --recipe fast changes only what it names.

Checked with --dry-run, which resolves everything a run would do (device, parameters, features,
folds) and trains nothing: the same code path as a real run up to the first fit.
"""

from __future__ import annotations

import json

import pytest

from roadrisk import records
from roadrisk.trainer import TrainOptions, train

from .conftest import run_cli

# The reference notebook's TabM_D_Regressor call, written out here independently of the code under test.
REFERENCE_TABM = dict(
    arch_type="tabm-mini", tabm_k=32, n_blocks=5, d_block=432, dropout=0.0, num_emb_type="pwl", d_embedding=24,
    num_emb_n_bins=112, lr=0.000624068703424289, weight_decay=0.0019090968357478807, batch_size="auto",
    patience=16, gradient_clipping_norm=1.0, share_training_batches=False, allow_amp=False,
)
BASE = ["road_type", "num_lanes", "curvature", "speed_limit", "lighting", "weather", "road_signs_present",
        "public_road", "time_of_day", "holiday", "school_season", "num_reported_accidents"]
REFERENCE_FEATURES = BASE + [f"orig_{c}" for c in BASE] + ["Meta"]
REFERENCE_CATEGORICAL = ["road_type", "lighting", "weather", "road_signs_present", "public_road", "time_of_day",
                    "holiday", "school_season"]


def _record(outcome) -> dict:
    return json.loads((outcome.run_dir / records.RUN_FILE).read_text())


@pytest.mark.slow  # generates the Kaggle-size embedded data
def test_full_dry_run_shows_exactly_the_reference_recipe(tmp_path):
    """The issue's acceptance check, through the real CLI on the Kaggle-size embedded data."""
    from pytabkit import TabM_D_Regressor

    result = run_cli("train", "--profile", "full", "--model", "tabm", "--device", "cpu", "--dry-run",
                     "--runs-dir", str(tmp_path))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (run_dir,) = (tmp_path / "native").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    config = record["config"]
    assert record["status"] == "dry-run" and config["recipe"] == "reference"
    assert config["params"] == REFERENCE_TABM  # 15 parameters, nothing added: no epoch cap
    # Every other estimator parameter is pytabkit's own default; only what roadrisk must set differs.
    library = TabM_D_Regressor(**REFERENCE_TABM, device="cpu", random_state=42, n_threads=config["threads"],
                               verbosity=0).get_params()
    assert config["estimator_params"] == library and library["n_epochs"] is None
    assert config["features"] == REFERENCE_FEATURES and len(config["features"]) == 25
    assert config["categorical"] == REFERENCE_CATEGORICAL
    assert (config["folds"], config["cv_seed"], config["matmul_precision"]) == (5, 42, "highest")
    assert config["empty_cache_after_fold"] is True
    assert not (run_dir / "oof.csv").exists() and not (run_dir / "folds").exists()
    assert "status: dry-run" in result.stdout and "estimator_params: " in result.stdout


def test_mocked_cuda_reference_recipe_takes_no_speedups_and_fast_takes_each(machine, small_data, tmp_path):
    """On a (mocked) CUDA machine, reference stays fp32/auto batch/uncapped; fast switches on what it names."""
    machine(cuda=True, cuda_build="13.0")
    configs = {}
    for recipe in ("reference", "fast"):
        outcome = train(TrainOptions(data_dir=small_data, profile="full", model="tabm", recipe=recipe, dry_run=True,
                                     runs_dir=tmp_path, label=recipe))
        assert outcome.exit_code == 0 and outcome.status == "dry-run"
        configs[recipe] = _record(outcome)["config"]
    reference, fast = configs["reference"], configs["fast"]
    assert reference["device"] == fast["device"] == "cuda"
    assert reference["params"] == REFERENCE_TABM and reference["matmul_precision"] == "highest"
    assert fast["params"]["allow_amp"] is True and fast["params"]["batch_size"] == 2048
    assert fast["params"]["n_epochs"] == 20 and fast["matmul_precision"] == "high"
    assert fast["features"] == REFERENCE_FEATURES + ["Meta_expected"]
    assert fast["categorical"] == ["road_type", "lighting", "weather", "time_of_day"]  # booleans as 0/1
    # Apart from what fast names, the TabM parameters are the reference's.
    same = {k: v for k, v in fast["params"].items() if k not in ("allow_amp", "batch_size", "n_epochs")}
    assert same == {k: v for k, v in REFERENCE_TABM.items() if k not in ("allow_amp", "batch_size")}


def test_data_dir_without_profile_gets_the_full_reference_recipe_and_says_so(small_data, tmp_path):
    result = run_cli("train", "--data-dir", str(small_data), "--device", "cpu", "--dry-run",
                     "--runs-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "--data-dir without --profile: using the full profile" in result.stdout
    (run_dir,) = (tmp_path / "native").iterdir()
    config = json.loads((run_dir / "run.json").read_text())["config"]
    assert (config["profile"], config["model"], config["recipe"]) == ("full", "tabm", "reference")


@pytest.mark.slow  # two CLI dry runs (~20 s here)
def test_full_on_the_cpu_warns_once_with_the_time_it_will_take(small_data, tmp_path):
    result = run_cli("train", "--data-dir", str(small_data), "--profile", "full", "--device", "cpu", "--dry-run",
                     "--runs-dir", str(tmp_path))
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, result.stdout
    assert "on the CPU" in warnings[0] and "at least 17 epochs" in warnings[0] and "for 5 folds" in warnings[0]
    quick = run_cli("train", "--data-dir", str(small_data), "--profile", "quick", "--device", "cpu", "--dry-run",
                    "--runs-dir", str(tmp_path))
    assert "warning:" not in quick.stdout


def test_small_profiles_default_to_fast_and_reference_can_be_asked_for(small_data, tmp_path):
    outcomes = {recipe: train(TrainOptions(data_dir=small_data, profile="quick", model="tabm", recipe=recipe,
                                           device="cpu", dry_run=True, runs_dir=tmp_path, label=str(recipe)))
                for recipe in (None, "reference")}
    default, reference = (_record(outcomes[r])["config"] for r in (None, "reference"))
    assert default["recipe"] == "fast" and default["params"]["n_blocks"] < REFERENCE_TABM["n_blocks"]
    assert reference["recipe"] == "reference" and reference["params"] == REFERENCE_TABM


def test_the_old_recipe_name_seed_still_works_and_says_the_new_one_once(small_data, tmp_path):
    """`--recipe seed` was read as a random seed; it is `reference` now, and the old spelling still runs."""
    result = run_cli("train", "--data-dir", str(small_data), "--profile", "quick", "--model", "tabm", "--recipe",
                     "seed", "--device", "cpu", "--dry-run", "--runs-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    notices = [line for line in result.stdout.splitlines() if "now called reference" in line]
    assert len(notices) == 1 and notices[0].startswith("note: --recipe seed"), result.stdout
    (run_dir,) = (tmp_path / "native").iterdir()
    config = json.loads((run_dir / "run.json").read_text())["config"]
    assert config["recipe"] == "reference" and config["params"] == REFERENCE_TABM
    from roadrisk.cli import build_parser

    usage = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "now called" not in usage and "{fast,reference}" in usage  # the help names the new one only


def test_records_written_under_the_old_recipe_name_read_as_the_new_one():
    old = {"schema_version": 3, "kind": "train", "config": {"recipe": "seed", "seed": 1}}
    assert records.upgrade(old)["config"]["recipe"] == "reference"


def test_a_dry_run_is_never_a_result_for_compare(tmp_path):
    from roadrisk.compare.runs import select_latest

    complete = train(TrainOptions(profile="smoke", model="hgb", runs_dir=tmp_path))
    train(TrainOptions(profile="smoke", model="hgb", runs_dir=tmp_path, dry_run=True))
    selection = select_latest(tmp_path)
    assert [run.path for run in selection.runs] == [complete.run_dir]
    assert not any("dry-run" in message for message in selection.messages)


@pytest.mark.parametrize("recipe", ["reference", "fast"])
def test_recipe_features_reach_hgb_with_their_categoricals(small_data, tmp_path, recipe):
    """hgb reads categoricals from the dtype: under reference the booleans are categorical too."""
    outcome = train(TrainOptions(data_dir=small_data, profile="smoke", model="hgb", recipe=recipe,
                                 runs_dir=tmp_path, label=recipe))
    record = _record(outcome)
    assert outcome.exit_code == 0 and record["config"]["recipe"] == recipe
    assert record["metrics"]["oof_rmse"] < 1.1 * record["metrics"]["floor_rmse"]


def test_docs_list_every_change_of_the_fast_recipe_with_its_evidence():
    """docs/devices.md is where a user reads what fast changes: it must not fall behind the code."""
    from roadrisk.recipes import FAST_CHANGES

    from .conftest import ROOT

    doc = (ROOT / "docs" / "devices.md").read_text()
    for change, reference_has, evidence in FAST_CHANGES:
        assert f"| {change} | {reference_has} | {evidence} |" in doc, change
