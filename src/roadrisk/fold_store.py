"""Each finished fold, kept in the run directory the moment it finishes: what ``--resume`` builds on.

``folds/fold-N.npz`` holds the fold's validation rows, their predictions and the test predictions
(float64, exactly as computed, so a resumed run writes the same bytes as an uninterrupted one);
``models/fold-N.pkl`` the fitted estimator when ``--save-models`` asks for it. Both are written
atomically: a fold file is whole or absent.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np

from .atomic import atomic_write_bytes, atomic_write_stream
from .errors import RoadriskError
from .folds import FoldResult

FOLDS_DIR = "folds"
MODELS_DIR = "models"


def fold_file(index: int) -> str:
    return f"{FOLDS_DIR}/fold-{index}.npz"


def model_file(index: int) -> str:
    return f"{MODELS_DIR}/fold-{index}.pkl"


def save(run_dir: Path, result: FoldResult) -> str:
    """Write the fold's predictions (and its model, when the result carries one); return the fold file."""
    meta = {"index": result.index, "rmse": result.rmse, "timings": result.timings, "epochs": result.epochs,
            "where": result.where}
    name = fold_file(result.index)
    atomic_write_stream(run_dir / name, lambda handle: np.savez(
        handle, val_idx=result.val_idx, val_pred=result.val_pred, test_pred=result.test_pred,
        meta=np.array(json.dumps(meta))))
    if result.model_blob is not None:
        atomic_write_bytes(run_dir / model_file(result.index), result.model_blob)
    return name


def load(run_dir: Path, index: int, expected_val_idx: np.ndarray) -> FoldResult:
    """A saved fold, checked against the rows this fold holds under the run's plan."""
    path = run_dir / fold_file(index)
    try:
        with np.load(path, allow_pickle=False) as saved:
            val_idx, val_pred, test_pred = saved["val_idx"], saved["val_pred"], saved["test_pred"]
            meta = json.loads(str(saved["meta"]))
        rmse, timings = meta["rmse"], meta["timings"]
    # A file cut short (a copy interrupted, a disk that filled) is a broken zip (BadZipFile) or ends
    # inside an array (EOFError); a hand-edited one may lack a key or hold meta that is no mapping.
    except (OSError, EOFError, zipfile.BadZipFile, KeyError, TypeError, ValueError) as exc:
        reason = str(exc) or type(exc).__name__
        raise RoadriskError(f"error: {path}: cannot read the saved fold ({reason}). Fix: delete that file and its "
                            "fold will be trained again on --resume") from None
    if not np.array_equal(val_idx, expected_val_idx):
        raise RoadriskError(f"error: {path}: holds other rows than fold {index} of this run's plan. Fix: delete it "
                            "to train that fold again, or start a new run")
    return FoldResult(index, val_idx, val_pred, test_pred, rmse, timings, meta.get("epochs", {}),
                      where=meta.get("where", {}))


def load_model(run_dir: Path, index: int):
    """The fitted estimator of a fold saved with --save-models (unpickle only files you wrote yourself)."""
    with open(run_dir / model_file(index), "rb") as handle:
        return pickle.load(handle)
