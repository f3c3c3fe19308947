"""The train flags the README promises, each shown to change what it says it changes (real runs)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from roadrisk.trainer import TrainOptions, train

from .conftest import run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # every test here trains realmlp
FEW_EPOCHS = {"n_epochs": 4}  # enough for predictions inside [0, 1], where clipping hides nothing


def _run(tmp_path, label: str, **kw):
    outcome = train(TrainOptions(**{"profile": "smoke", "model": "realmlp", "device": "cpu", "runs_dir": tmp_path,
                                    "label": label, "param_overrides": FEW_EPOCHS, **kw}))
    assert outcome.exit_code == 0
    record = json.loads((outcome.run_dir / "run.json").read_text())
    folds = [np.load(outcome.run_dir / "folds" / f"fold-{i}.npz") for i in range(record["config"]["folds"])]
    return record, folds


def test_seed_cv_seed_and_data_seed_each_move_only_their_part(tmp_path):
    base, base_folds = _run(tmp_path, "base", seed=1)
    other_model, model_folds = _run(tmp_path, "model-seed", seed=2)
    other_cv, cv_folds = _run(tmp_path, "cv-seed", seed=1, cv_seed=7)
    other_data, _ = _run(tmp_path, "data-seed", seed=1, data_seed=3)
    assert [(r["config"]["seed"], r["config"]["cv_seed"], r["config"]["data_seed"])
            for r in (base, other_model, other_cv, other_data)] == [(1, 42, 42), (2, 42, 42), (1, 7, 42), (1, 42, 3)]
    # --seed: the same folds, another model initialisation.
    assert all(np.array_equal(a["val_idx"], b["val_idx"]) for a, b in zip(base_folds, model_folds))
    assert not np.array_equal(base_folds[0]["val_pred"], model_folds[0]["val_pred"])
    # --cv-seed: other folds on the same data.
    assert not np.array_equal(base_folds[0]["val_idx"], cv_folds[0]["val_idx"])
    assert base["data"]["fingerprint"] == other_model["data"]["fingerprint"] == other_cv["data"]["fingerprint"]
    # --data-seed: other embedded data.
    assert other_data["data"]["fingerprint"] != base["data"]["fingerprint"]


def test_folds_and_matmul_precision_flags_through_the_cli(tmp_path):
    result = run_cli("train", "--profile", "smoke", "--model", "realmlp", "--device", "cpu", "--folds", "3",
                     "--matmul-precision", "medium", "--param", "n_epochs=1", "--runs-dir", str(tmp_path))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (run_dir,) = (tmp_path / "native").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["config"]["folds"] == 3 and len(record["metrics"]["folds"]) == 3
    assert record["config"]["matmul_precision"] == "medium" and "matmul_precision=medium" in result.stdout


def test_jobs_with_a_torch_model_reports_epochs_from_the_workers(tmp_path):
    result = run_cli("train", "--profile", "smoke", "--model", "realmlp", "--device", "cpu", "--jobs", "2",
                     "--param", "n_epochs=3", "--runs-dir", str(tmp_path))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "2 folds on 2 workers, 1 thread(s) each" in result.stdout
    for fold in (1, 2):  # each worker's epochs come back over the queue, in order
        epochs = [line for line in result.stdout.splitlines() if line.startswith(f"fold {fold}/2 epoch ")]
        assert [line.split()[3].rstrip(":") for line in epochs] == ["1/3", "2/3", "3/3"], result.stdout
    (run_dir,) = (tmp_path / "native").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["executor"]["workers"] == 2 and sorted(f["fold"] for f in record["metrics"]["folds"]) == [0, 1]
    assert all(f["epochs"] == 3 for f in record["metrics"]["folds"])
