"""The embedded default data: the original simulation's generator, reproduced exactly.

Each column is drawn as the original generator draws it (docs/data.md) and the target follows
``risk_formula``. ``write_dataset`` lays the result out exactly as Kaggle ships its files, so the
one loader reads generated and real data alike.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from . import schema
from .atomic import atomic_write_text, write_csv_atomic
from .errors import WriteFailed
from .risk_formula import NOISE_SD, mean_risk

GENERATOR_VERSION = 1
POISSON_RATE = 1.5


def generate_rows(n_rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n_rows`` rows of the 12 features and the target, in the Kaggle column order."""
    columns: dict[str, np.ndarray] = {}
    for column in schema.FEATURE_COLUMNS:
        if column.name == "curvature":
            columns[column.name] = np.round(rng.uniform(0.0, 1.0, n_rows), 2)
        elif column.name == "num_reported_accidents":
            columns[column.name] = rng.poisson(POISSON_RATE, n_rows)
        elif column.kind == "bool":
            columns[column.name] = rng.integers(0, 2, n_rows).astype(bool)
        else:
            columns[column.name] = rng.choice(np.array(column.values), n_rows)
    frame = pd.DataFrame(columns)
    noisy = mean_risk(frame) + rng.normal(0.0, NOISE_SD, n_rows)
    frame[schema.TARGET] = np.round(np.clip(noisy, 0.0, 1.0), 2)
    return frame


def write_dataset(out_dir: Path, train_rows: int, test_rows: int, original_rows: int, seed: int) -> dict:
    """Write train/test/sample_submission/original files in Kaggle's layout; return the marker."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # read-only, or a path through a file
        raise WriteFailed(out_dir, exc) from exc
    train_seed, test_seed, original_seed = np.random.SeedSequence(seed).spawn(3)
    train = generate_rows(train_rows, np.random.default_rng(train_seed))
    train.insert(0, schema.ID, np.arange(train_rows))
    test = generate_rows(test_rows, np.random.default_rng(test_seed)).drop(columns=[schema.TARGET])
    test.insert(0, schema.ID, np.arange(train_rows, train_rows + test_rows))
    submission = pd.DataFrame({schema.ID: test[schema.ID], schema.TARGET: round(float(train[schema.TARGET].mean()), 3)})
    original = generate_rows(original_rows, np.random.default_rng(original_seed))

    write_csv_atomic(train, out_dir / schema.TRAIN_FILE)
    write_csv_atomic(test, out_dir / schema.TEST_FILE)
    write_csv_atomic(submission, out_dir / schema.SUBMISSION_FILE)
    if original_rows:
        write_csv_atomic(original, out_dir / schema.ORIGINAL_FILE)
    else:
        # An original file left by an earlier write into this folder would be read (and trained on)
        # as this dataset's: remove it before the marker says the folder is complete.
        (out_dir / schema.ORIGINAL_FILE).unlink(missing_ok=True)
    marker = {
        "generator": "roadrisk",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "train_rows": train_rows,
        "test_rows": test_rows,
        "original_rows": original_rows,
    }
    # The marker goes last: a directory with a marker is a complete dataset.
    atomic_write_text(out_dir / schema.GENERATOR_MARKER, json.dumps(marker, indent=2) + "\n")
    return marker


def read_marker(data_dir: Path) -> dict | None:
    path = data_dir / schema.GENERATOR_MARKER
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
