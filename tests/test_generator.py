"""The embedded generator against the formula and distributions of docs/data.md."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from roadrisk import schema
from roadrisk.generator import generate_rows, read_marker, write_dataset
from roadrisk.risk_formula import NOISE_SD, expected_risk, floor_rmse, mean_risk

from .conftest import run_cli


@pytest.fixture(scope="module")
def rows():
    return generate_rows(200_000, np.random.default_rng(0))


def test_columns_and_order(rows):
    assert tuple(rows.columns) == schema.ORIGINAL_COLUMNS


@pytest.mark.parametrize("spec", [c for c in schema.FEATURE_COLUMNS if c.kind in ("category", "bool")
                                  or c.name in ("num_lanes", "speed_limit")], ids=lambda c: c.name)
def test_discrete_columns_are_uniform(rows, spec):
    values = spec.values or (False, True)
    freq = rows[spec.name].value_counts(normalize=True)
    assert set(freq.index) == set(values)
    assert np.allclose(freq.to_numpy(), 1 / len(values), atol=0.01)


def test_curvature_is_uniform_on_a_hundredth_grid(rows):
    curvature = rows["curvature"].to_numpy()
    assert curvature.min() >= 0 and curvature.max() <= 1
    assert np.allclose(curvature * 100, np.round(curvature * 100))
    assert abs(curvature.mean() - 0.5) < 0.01


def test_reported_accidents_are_poisson_1_5(rows):
    counts = rows["num_reported_accidents"].to_numpy()
    assert abs(counts.mean() - 1.5) < 0.02 and abs(counts.var() - 1.5) < 0.03
    assert abs((counts == 0).mean() - np.exp(-1.5)) < 0.01


def test_target_is_clipped_rounded_formula_plus_noise(rows):
    y = rows[schema.TARGET].to_numpy()
    assert y.min() >= 0 and y.max() <= 1
    assert np.allclose(y * 100, np.round(y * 100))
    mu = mean_risk(rows)
    interior = (mu > 0.25) & (mu < 0.75)  # away from the clip, residuals are the noise (+ rounding)
    residual = y[interior] - mu[interior]
    assert abs(residual.mean()) < 0.001
    assert abs(residual.std() - np.sqrt(NOISE_SD**2 + 0.01**2 / 12)) < 0.001


def test_formula_weights(rows):
    frame = pd.DataFrame({"curvature": [0.5], "lighting": ["night"], "weather": ["foggy"],
                          "speed_limit": [60], "num_reported_accidents": [3]})
    assert mean_risk(frame)[0] == pytest.approx(0.15 + 0.2 + 0.1 + 0.2 + 0.1)
    frame.loc[0, ["lighting", "weather", "speed_limit", "num_reported_accidents"]] = ["dim", "clear", 45, 2]
    assert mean_risk(frame)[0] == pytest.approx(0.15)


def test_floor_matches_the_field_notes(rows):
    # docs/data.md: the clipped-normal mean scores 0.04969 and beats the plain formula (0.04971).
    floor = floor_rmse(rows, rows[schema.TARGET])
    plain = float(np.sqrt(np.mean((rows[schema.TARGET] - np.clip(mean_risk(rows), 0, 1)) ** 2)))
    assert floor == pytest.approx(0.04969, abs=0.0004)
    assert floor < plain


def test_expected_risk_is_the_clipped_normal_mean():
    rng = np.random.default_rng(1)
    for mu in (-0.02, 0.0, 0.03, 0.5, 0.98, 1.04):
        draws = np.clip(mu + rng.normal(0, NOISE_SD, 400_000), 0, 1)
        assert expected_risk(np.array([mu]))[0] == pytest.approx(draws.mean(), abs=3e-4)


def test_write_dataset_is_kaggle_layout_and_deterministic(tmp_path):
    write_dataset(tmp_path / "a", 500, 200, 300, seed=3)
    write_dataset(tmp_path / "b", 500, 200, 300, seed=3)
    for name in (schema.TRAIN_FILE, schema.TEST_FILE, schema.SUBMISSION_FILE, schema.ORIGINAL_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    train = pd.read_csv(tmp_path / "a" / schema.TRAIN_FILE)
    test = pd.read_csv(tmp_path / "a" / schema.TEST_FILE)
    submission = pd.read_csv(tmp_path / "a" / schema.SUBMISSION_FILE)
    original = pd.read_csv(tmp_path / "a" / schema.ORIGINAL_FILE)
    assert tuple(train.columns) == schema.TRAIN_COLUMNS
    assert tuple(test.columns) == schema.TEST_COLUMNS
    assert tuple(original.columns) == schema.ORIGINAL_COLUMNS
    assert list(submission.columns) == [schema.ID, schema.TARGET]
    assert train[schema.ID].tolist() == list(range(500))
    assert test[schema.ID].tolist() == list(range(500, 700)) == submission[schema.ID].tolist()
    assert train["holiday"].dtype == bool  # written as True/False, as Kaggle's files are
    assert read_marker(tmp_path / "a")["seed"] == 3
    write_dataset(tmp_path / "c", 500, 200, 300, seed=4)
    assert (tmp_path / "c" / schema.TRAIN_FILE).read_bytes() != (tmp_path / "a" / schema.TRAIN_FILE).read_bytes()


def test_cli_data_with_no_original_rows_leaves_no_stale_original(tmp_path):
    """Rewriting a folder with --original-rows 0 must not leave the earlier original file to be trained on."""
    out = tmp_path / "data"
    sizes = ["--train-rows", "200", "--test-rows", "50"]
    assert run_cli("data", "--out", str(out), *sizes, "--original-rows", "100").returncode == 0
    assert (out / schema.ORIGINAL_FILE).is_file()
    assert run_cli("data", "--out", str(out), *sizes, "--original-rows", "0").returncode == 0
    assert not (out / schema.ORIGINAL_FILE).exists()
    result = run_cli("train", "--data-dir", str(out), "--profile", "smoke", "--model", "hgb", "--dry-run",
                     "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "train_rows=200 test_rows=50 original_rows=0" in result.stdout
