"""The full-on-CPU warning says how long the reference recipe takes and names the fastest strong alternative,
with its time (from the measured rate) and its score on the real sample; a real --dry-run prints it."""

from __future__ import annotations

import re

import pytest

from roadrisk import estimates
from roadrisk.models import MODELS

from .conftest import run_cli

KAGGLE_ROWS = 517_754


def _tabm_warning(rows: int = KAGGLE_ROWS, folds: int = 5, threads: int = 2) -> str:
    spec = MODELS["tabm"]
    line = estimates.cpu_warning("tabm", "reference", spec.epoch_plan(spec.defaults("full", "cpu", "reference")), rows, folds,
                                 threads)
    assert line is not None
    return line


def test_the_warning_names_the_alternative_with_its_time_and_score():
    line = _tabm_warning()
    assert line.startswith("warning: tabm (recipe reference) on the CPU")
    assert "`roadrisk train --model catboost --target residual`" in line
    alt = estimates.CPU_ALTERNATIVE
    assert f"OOF RMSE {alt['rmse']:.5f}" in line and f"{alt['baseline_rmse']:.5f}" in line
    assert alt["rmse"] < alt["baseline_rmse"]  # "strong": it beats the plain script on the same folds
    said = estimates._human(estimates.alternative_seconds(KAGGLE_ROWS, 5, 2))
    assert f"at most {said} for 5 folds on 2 thread(s)" in line


def test_the_alternative_is_much_faster_than_the_reference_recipe():
    # TabM's own figure (the "at least" bound of early stopping) against the alternative's upper bound
    line = _tabm_warning()
    tabm = re.search(r"at least (\d+(?:\.\d+)?) (s|min|h) for 5 folds", line)
    assert tabm, line
    tabm_s = float(tabm.group(1)) * {"s": 1, "min": 60, "h": 3600}[tabm.group(2)]
    assert estimates.alternative_seconds(KAGGLE_ROWS, 5, 2) * 3 < tabm_s


@pytest.mark.parametrize("rows,folds,threads", [(KAGGLE_ROWS, 5, 2), (KAGGLE_ROWS, 10, 2), (100_000, 5, 8)])
def test_the_alternative_time_follows_rows_folds_and_threads(rows, folds, threads):
    base = estimates.alternative_seconds(rows, folds, threads)
    assert estimates.alternative_seconds(rows * 2, folds, threads) == pytest.approx(2 * base)
    assert estimates.alternative_seconds(rows, folds, threads * 2) == pytest.approx(base / 2)
    assert f"at most {estimates._human(base)} for {folds} folds" in _tabm_warning(rows, folds, threads)


def test_a_model_without_a_rate_gets_no_warning():
    assert estimates.cpu_warning("catboost", "fast", (3000, 100), KAGGLE_ROWS, 5, 2) is None


def test_a_full_cpu_dry_run_prints_the_alternative(tmp_path):
    data = tmp_path / "data"
    made = run_cli("data", "--out", str(data), "--train-rows", "500", "--test-rows", "100", "--original-rows", "500")
    assert made.returncode == 0, made.stderr
    result = run_cli("train", "--data-dir", str(data), "--device", "cpu", "--dry-run", "--runs-dir",
                     str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    warning = next(line for line in out.splitlines() if line.startswith("warning: tabm"))
    assert "--model catboost --target residual" in warning and "OOF RMSE 0.05718" in warning
