"""`make bench` section 8 (benchmarks/accuracy.py) runs as written: every model x target on the same folds,
the ensemble methods, each against plain scikit-learn HGB; without a data dir it says "not measured"."""

from __future__ import annotations

import pytest

from .conftest import run_cli
from .test_bench import _bench


def test_accuracy_is_not_measured_without_a_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("DATA_DIR", raising=False)
    result, text = _bench(tmp_path, "--only", "accuracy")
    assert result["accuracy"] == {"measured": False, "why": "no data dir: pass DATA_DIR=... (or --data-dir)"}
    assert "## 8. Accuracy" in text and "not measured: no data dir" in text


@pytest.mark.slow
def test_accuracy_measures_every_model_and_target_and_the_ensembles_on_the_same_folds(tmp_path):
    data = tmp_path / "data"
    made = run_cli("data", "--out", str(data), "--train-rows", "600", "--test-rows", "100", "--original-rows", "500")
    assert made.returncode == 0, made.stderr
    result, text = _bench(tmp_path, "--only", "accuracy", "--data-dir", str(data), "--accuracy-folds", "3",
                          "--accuracy-models", "hgb", "catboost", "--accuracy-fixed-rounds")
    acc = result["accuracy"]
    assert acc["measured"] and acc["folds"] == 3 and acc["train_rows"] == 600
    pairs = [(row["model"], row["target"]) for row in acc["members"]]
    assert [p for p in pairs if "fixed" not in p[0]] == [("hgb", "raw"), ("hgb", "residual"), ("catboost", "raw"),
                                                          ("catboost", "residual")]
    assert sum("fixed" in model for model, _ in pairs) == 2  # catboost raw and residual, refitted at fixed rounds
    assert [row["method"] for row in acc["ensembles"]] == ["caruana", "hill", "ridge", "stack"]
    ref = acc["reference"]["oof_rmse"]
    assert 0 < ref < 0.2 and 0 < acc["catboost_plain"]["oof_rmse"] < 0.2
    for row in acc["members"] + acc["ensembles"]:
        score = row.get("nested_rmse", row["oof_rmse"])
        assert 0 < score < 0.2
        assert f"{score:.6f} | {score / ref:.4f}" in text  # each row is shown with its ratio to the reference
    assert "plain HGB, scikit-learn defaults (reference) | raw | - | " + f"{ref:.6f} | 1.0000" in text
