"""The bare baseline of ``make bench`` §1: the trainer's work written as plainly as a notebook would.

Read the CSVs, build the same features, KFold, fit, predict, save the two prediction files. Nothing
else: no validation, no record, no device report. Imported by bench.py for the in-process ratio, and
run as a script for the whole-process one:

    python benchmarks/bare.py MODEL DATA_DIR OUT_DIR     # prints the seconds of the work, after imports
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from roadrisk import environment, features, schema
from roadrisk.models import MODELS
from roadrisk.profiles import PROFILES

# ---------------------------------------------------------------- the bare baseline, written plainly

@contextlib.contextmanager
def silenced():
    """Both sides of every comparison run with their output discarded, so printing costs neither."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


def bare_run(data_dir: Path, model: str, params: dict, folds: int, seed: int, threads: int,
             out_dir: Path) -> dict:
    """What a notebook would do: read the CSVs, build the same features, KFold, fit, predict, and save
    the out-of-fold and test predictions with ``to_csv``, the two files a run of ours also keeps.
    Returns seconds: ``total``, ``saving`` (the two to_csv calls) and ``model`` (fit + predict calls)."""
    with silenced():
        return _bare_run(data_dir, model, params, folds, seed, threads, out_dir)


def _bare_run(data_dir: Path, model: str, params: dict, folds: int, seed: int, threads: int,
              out_dir: Path) -> dict:
    from sklearn.model_selection import KFold

    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    train_df = pd.read_csv(data_dir / schema.TRAIN_FILE)
    test_df = pd.read_csv(data_dir / schema.TEST_FILE)
    original = pd.read_csv(data_dir / schema.ORIGINAL_FILE)
    fs = features.build(train_df, test_df, original)
    y = train_df[schema.TARGET].to_numpy()
    oof, test_pred = np.zeros(len(y)), np.zeros(len(fs.test))
    model_s = 0.0
    for tr, va in KFold(n_splits=folds, shuffle=True, random_state=seed).split(fs.train):
        fit_start = time.perf_counter()
        if model == "hgb":
            from sklearn.ensemble import HistGradientBoostingRegressor

            m = HistGradientBoostingRegressor(random_state=seed, categorical_features="from_dtype", **params)
            m.fit(fs.train.iloc[tr], y[tr])
        else:
            from pytabkit import RealMLP_TD_Regressor

            m = RealMLP_TD_Regressor(device="cpu", random_state=seed, n_threads=threads, verbosity=0, **params)
            m.fit(fs.train.iloc[tr], y[tr], X_val=fs.train.iloc[va], y_val=y[va])
        oof[va] = m.predict(fs.train.iloc[va])
        test_pred += m.predict(fs.test) / folds
        model_s += time.perf_counter() - fit_start
    saving = time.perf_counter()
    pd.DataFrame({schema.ID: train_df[schema.ID], schema.TARGET: oof}).to_csv(out_dir / "oof.csv", index=False)
    pd.DataFrame({schema.ID: test_df[schema.ID], schema.TARGET: test_pred}).to_csv(out_dir / "submission.csv",
                                                                                   index=False)
    end = time.perf_counter()
    return {"total": end - start, "saving": end - saving, "model": model_s}


def main(argv: list[str]) -> int:
    model, data_dir, out_dir = argv[0], Path(argv[1]), Path(argv[2])
    quick = PROFILES["quick"]
    times = bare_run(data_dir, model, MODELS[model].defaults("quick", "cpu"), quick.folds, 42,
                     environment.usable_cpus()[0], out_dir)
    print(f"{times['total']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
