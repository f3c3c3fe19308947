"""Section 8 of ``make bench``: accuracy on any ``DATA_DIR``, every model x target on the same folds.

Each member is ``roadrisk train`` in this process (the trees at the ``full`` profile, which takes seconds
at a few thousand rows; the torch models at ``quick`` unless asked otherwise: their full profile takes
an hour here), then the ensemble methods over those members (their nested score: each row predicted by
weights fitted without its fold). Every score is also a ratio against the reference, a plain
scikit-learn ``HistGradientBoostingRegressor()`` with its defaults on the 12 raw columns and the same
folds; a plain ``CatBoostRegressor(iterations=600, depth=5, learning_rate=0.05)`` on the raw columns, no
early stopping, is the second baseline (the one a Kaggle script starts from).

A note on the trees' scores: xgb, lgbm and catboost stop early on the fold's validation rows (the
fold's best round predicts), so their out-of-fold score has seen those rows once; the two plain
baselines have not. ``--accuracy-fixed-rounds`` adds each tree at the round count its early stopping
chose on average, refitted without looking at the validation rows, to show the size of that effect.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np

from roadrisk import data as data_module
from roadrisk import environment, folds, schema
from roadrisk.executors import ExecutorConfig

TREES = ("hgb", "xgb", "lgbm", "catboost")
TORCH = ("tabm", "realmlp")
TARGETS = ("raw", "residual")
METHODS = ("caruana", "hill", "ridge", "stack")


def _raw_columns(frame):
    """The 12 base columns, text as pandas categories and booleans as 0/1: what a plain script feeds."""
    import pandas as pd

    out = pd.DataFrame(index=frame.index)
    for spec in schema.FEATURE_COLUMNS:
        column = frame[spec.name]
        if spec.kind == "category":
            out[spec.name] = column.astype(schema.category_dtype(spec))
        else:
            out[spec.name] = column.astype(float)
    return out


def _plain(kind: str, x, y, splits, threads: int, seed: int = 42) -> dict:
    """A plain library fit on each fold (no early stopping, nothing tuned): OOF RMSE and fit seconds."""
    oof = np.empty(len(y))
    fit_s = 0.0
    cats = [s.name for s in schema.FEATURE_COLUMNS if s.kind == "category"]
    for train_idx, val_idx in splits:
        if kind == "hgb":
            from sklearn.ensemble import HistGradientBoostingRegressor
            from threadpoolctl import threadpool_limits

            model = HistGradientBoostingRegressor(categorical_features="from_dtype", random_state=seed)
            start = time.perf_counter()
            with threadpool_limits(limits=threads, user_api="openmp"):
                model.fit(x.iloc[train_idx], y[train_idx])
                fit_s += time.perf_counter() - start
                oof[val_idx] = model.predict(x.iloc[val_idx])
        else:
            from catboost import CatBoostRegressor

            model = CatBoostRegressor(iterations=600, depth=5, learning_rate=0.05, random_seed=seed,
                                      thread_count=threads, logging_level="Silent", allow_writing_files=False)
            start = time.perf_counter()
            model.fit(x.iloc[train_idx], y[train_idx], cat_features=cats)
            fit_s += time.perf_counter() - start
            oof[val_idx] = model.predict(x.iloc[val_idx])
    return {"oof_rmse": folds.rmse(y, np.clip(oof, 0, 1)), "fit_s": fit_s}


def accuracy(data_dir: Path, tmp: Path, log, *, n_folds: int = 5, cv_seed: int = 42, cv: str = "kfold",
             cv_bins: int | None = None, models: tuple[str, ...] = TREES + TORCH, torch_profile: str = "quick",
             fixed_rounds: bool = False) -> dict:
    from bare import silenced

    from roadrisk.ensemble.command import blend
    from roadrisk.trainer import TrainOptions, train

    data_dir = Path(data_dir)
    dataset = data_module.load(data_dir)
    y = dataset.train[schema.TARGET].to_numpy(dtype=float)
    splits = folds.split(len(y), n_folds, cv_seed, cv, y, cv_bins)
    threads = environment.usable_cpus()[0]
    x_raw = _raw_columns(dataset.train)
    reference = _plain("hgb", x_raw, y, splits, threads)
    log(f"accuracy reference plain hgb: {reference['oof_rmse']:.6f}")
    catboost_plain = _plain("catboost", x_raw, y, splits, threads) if "catboost" in models else None
    rows, run_dirs = [], []
    for model in models:
        for target in TARGETS:
            options = dict(data_dir=data_dir, model=model, target=target, folds=n_folds, cv_seed=cv_seed, cv=cv,
                           cv_bins=cv_bins, label=f"acc-{model}-{target}", runs_dir=tmp / "accuracy-runs",
                           profile=torch_profile if model in TORCH else "full", device="cpu",
                           executor=ExecutorConfig("inline"))
            with silenced():
                outcome = train(TrainOptions(**options))
            if outcome.exit_code != 0:
                raise SystemExit(f"bench: accuracy run failed: {outcome.run_dir}")
            record = json.loads((outcome.run_dir / "run.json").read_text())
            rows.append({"model": model, "target": target, "profile": options["profile"],
                         "oof_rmse": record["metrics"]["oof_rmse"], "fit_s": record["timings"]["fit_total_s"],
                         "best_rounds": [f.get("best_epoch") for f in record["metrics"]["folds"]]})
            run_dirs.append(outcome.run_dir)
            log(f"accuracy {model} {target}: {rows[-1]['oof_rmse']:.6f} ({rows[-1]['fit_s']:.1f}s)")
            if fixed_rounds and model in ("xgb", "lgbm", "catboost"):
                rows.append(_fixed_round_row(model, target, record, options, tmp, train, TrainOptions, silenced))
                log(f"accuracy {model} {target} fixed rounds: {rows[-1]['oof_rmse']:.6f}")
    ensembles = []
    for method in METHODS:
        start = time.perf_counter()
        with silenced():
            outcome = blend(run_dirs, method=method, data_dir=data_dir)
        ensembles.append({"method": method, "oof_rmse": float(outcome.oof_rmse), "nested_rmse": float(outcome.nested.rmse),
                          "fit_s": time.perf_counter() - start})
        log(f"accuracy ensemble {method}: nested {ensembles[-1]['nested_rmse']:.6f}")
    return {"measured": True, "data_dir": str(data_dir), "train_rows": len(y), "folds": n_folds, "cv": cv,
            "cv_bins": cv_bins, "cv_seed": cv_seed, "threads": threads, "reference": reference,
            "catboost_plain": catboost_plain, "members": rows, "ensembles": ensembles}


def _fixed_round_row(model, target, record, options, tmp, train, TrainOptions, silenced) -> dict:
    """The same member refitted at its mean early-stopped round count, validation rows unseen."""
    rounds = int(round(statistics.mean(f["best_epoch"] for f in record["metrics"]["folds"])))
    name = "iterations" if model == "catboost" else "n_estimators"
    params = {name: max(rounds, 1), "early_stopping_rounds": None}
    opts = dict(options, label=f"acc-{model}-{target}-fixed", param_overrides=params)
    with silenced():
        outcome = train(TrainOptions(**opts))
    fixed = json.loads((outcome.run_dir / "run.json").read_text())
    return {"model": f"{model} (fixed {rounds} rounds)", "target": target, "profile": "full",
            "oof_rmse": fixed["metrics"]["oof_rmse"], "fit_s": fixed["timings"]["fit_total_s"], "best_rounds": []}


def render(result: dict) -> list[str]:
    out = ["", "## 8. Accuracy on a data dir (same folds for every row)", ""]
    if not result.get("measured"):
        return [*out, f"- not measured: {result.get('why', 'skipped')}"]
    ref = result["reference"]["oof_rmse"]
    from roadrisk.plan import DEFAULT_CV_BINS

    bins = result["cv_bins"] or DEFAULT_CV_BINS
    cv = result["cv"] + (f" ({bins} quantile bins)" if result["cv"] == "stratified" else "")
    out += [f"data: {result['data_dir']} ({result['train_rows']} train rows); folds: {result['folds']}-fold {cv}, "
            f"cv_seed {result['cv_seed']}; {result['threads']} threads. Ratio: OOF RMSE over the reference's "
            "(below 1 is better).", "",
            "| member | target | profile | OOF RMSE | ratio | fit s |", "|---|---|---|---|---|---|",
            f"| plain HGB, scikit-learn defaults (reference) | raw | - | {ref:.6f} | 1.0000 "
            f"| {result['reference']['fit_s']:.1f} |"]
    if result.get("catboost_plain"):
        cb = result["catboost_plain"]
        out.append(f"| plain CatBoost 600 it, depth 5, lr 0.05 | raw | - | {cb['oof_rmse']:.6f} "
                   f"| {cb['oof_rmse'] / ref:.4f} | {cb['fit_s']:.1f} |")
    for row in result["members"]:
        out.append(f"| {row['model']} | {row['target']} | {row['profile']} | {row['oof_rmse']:.6f} "
                   f"| {row['oof_rmse'] / ref:.4f} | {row['fit_s']:.1f} |")
    out += ["", "| ensemble of the members above (not the fixed-round refits) | nested OOF RMSE | ratio "
                "| in-sample OOF RMSE | s |",
            "|---|---|---|---|---|"]
    for row in result["ensembles"]:
        out.append(f"| {row['method']} | {row['nested_rmse']:.6f} | {row['nested_rmse'] / ref:.4f} "
                   f"| {row['oof_rmse']:.6f} | {row['fit_s']:.1f} |")
    return out
