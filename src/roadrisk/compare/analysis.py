"""What differs between runs: device facts, timings (with speed-ups), accuracy, comparability."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import doctor
from ..device import DeviceChoice
from ..plan import COMPARABLE, differences, key_name
from ..records import OOF_FILE, SUBMISSION_FILE
from ..schema import ID, TARGET
from .runs import Run, record_field
from .stats import speed_up

# Long sentences: shown under the diff table rather than in a cell of it.
SENTENCE_KEYS = ("cuda_status", "mps_status", "device_reason", "container_evidence", "platform")


def device_block(run: Run) -> dict:
    """The run's doctor block, rebuilt from its record exactly as its train.log printed it."""
    device = run.record.get("device") or {}
    choice = DeviceChoice(**{k: device.get(k) for k in ("requested", "selected", "strict", "fell_back", "reason",
                                                          "torch_threads")})
    return doctor.block(run.record.get("environment") or {}, choice)


# Settings the trainer picks by device: a speed-up between devices is partly theirs.
DEVICE_SETTINGS = (("matmul_precision", ("config", "matmul_precision")), ("batch_size", ("config", "params", "batch_size")),
                   ("allow_amp", ("config", "params", "allow_amp")))


def device_diff(runs: list[Run]) -> list[dict]:
    blocks = [{**device_block(run), **{key: record_field(run.record, path) for key, path in DEVICE_SETTINGS}}
              for run in runs]
    rows = []
    for key in blocks[0]:
        values = [block.get(key) for block in blocks]
        if all(v is None for v in values) and key in dict(DEVICE_SETTINGS):
            continue  # e.g. batch size of a scikit-learn model
        rows.append({"key": key, "values": values, "differs": len({str(v) for v in values}) > 1,
                     "sentence": key in SENTENCE_KEYS})
    return rows


def _spread(values: list[float]) -> dict:
    if not values:
        return {"median": None, "min": None, "max": None, "values": []}
    return {"median": float(np.median(values)), "min": float(min(values)), "max": float(max(values)),
            "values": [float(v) for v in values]}


def _fold_times(record: dict) -> tuple[list[float], list[float]]:
    folds = (record.get("timings") or {}).get("folds") or []
    return [f["fit_s"] for f in folds if "fit_s" in f], [f["predict_s"] for f in folds if "predict_s" in f]


def run_speed_sample(record: dict) -> float | None:
    """A run's geometric-mean fold time (fit + predict): its one speed sample when runs are pooled."""
    folds = [f + p for f, p in zip(*_fold_times(record))]
    return float(np.exp(np.mean(np.log(folds)))) if folds and min(folds) > 0 else None


def timings(run: Run) -> dict:
    """Phase times of a run; with pooled repeats, folds of every repeat, and one speed sample per run."""
    members = [run, *run.repeats]
    t = run.record.get("timings") or {}
    fits, predicts = [], []
    for member in members:
        f, p = _fold_times(member.record)
        fits += f
        predicts += p
    per_run = [s for s in (run_speed_sample(m.record) for m in members) if s is not None]
    pooled = len(members) > 1
    totals = [(m.record.get("timings") or {}).get("total_s") for m in members]
    totals = [x for x in totals if x]
    fold_times = [f + p for f, p in zip(fits, predicts)]
    return {
        **{key: t.get(key) for key in ("setup_s", "generate_s", "load_s", "features_s")},
        "fit": _spread(fits), "predict": _spread(predicts), "fold": _spread(fold_times),
        "fit_per_run_s": sum(fits) / len(members), "predict_per_run_s": sum(predicts) / len(members),
        "runs": len(members),
        # One sample per run when runs are pooled (their spread is the run-to-run noise), else per fold.
        "samples": per_run if pooled else fold_times,
        "sample_kind": "runs" if pooled else "folds",
        "total_s": float(np.median(totals)) if totals else None,
    }


def comparability(run: Run, baseline: Run) -> list[str]:
    """Why ``run`` cannot be set against ``baseline`` (empty when it can)."""
    return [f"{key_name(key)} differs ({mine} vs {theirs})"
            for key, theirs, mine in differences(baseline.record, run.record, COMPARABLE)]


def disagreement(run: Run, baseline: Run) -> dict | None:
    """How far two runs' predictions differ row by row (same data and folds only)."""
    out = {}
    for name, key in ((OOF_FILE, "oof"), (SUBMISSION_FILE, "test")):
        a_path, b_path = Path(baseline.path) / name, Path(run.path) / name
        if not (a_path.is_file() and b_path.is_file()):
            return None
        a = pd.read_csv(a_path).set_index(ID)[TARGET]
        b = pd.read_csv(b_path).set_index(ID)[TARGET]
        if not a.index.equals(b.index):
            return None
        diff = (b - a).to_numpy(dtype=float)
        out[f"{key}_max_abs"] = float(np.max(np.abs(diff)))
        out[f"{key}_rms"] = float(np.sqrt(np.mean(diff**2)))
        out[f"{key}_identical"] = bool(np.all(diff == 0))
    return out


def compare(runs: list[Run], baseline: Run, force: bool = False) -> dict:
    base_t = timings(baseline)
    base_metrics = baseline.record.get("metrics") or {}
    rows = []
    for run in runs:
        t = timings(run)
        metrics = run.record.get("metrics") or {}
        reasons = comparability(run, baseline) if run is not baseline else []
        row = {
            "name": run.name, "label": run.label, "run_id": run.path.name, "path": str(run.path),
            "status": run.status, "error": run.record.get("error"), "baseline": run is baseline,
            **{key: record_field(run.record, path) for key, path in (
                ("device", ("device", "selected")), ("profile", ("config", "profile")), ("model", ("config", "model")),
                ("recipe", ("config", "recipe")), ("target", ("config", "target")), ("cv", ("config", "cv")),
                ("folds", ("config", "folds")), ("cv_seed", ("config", "cv_seed")),
                ("fingerprint", ("data", "fingerprint")), ("source", ("data", "source")))},
            "commit": run.record.get("git_commit"),
            "timings": t, "comparable": not reasons, "not_comparable_because": reasons,
            "oof_rmse": metrics.get("oof_rmse"), "floor_rmse": metrics.get("floor_rmse"),
            "gap_to_floor_pct": metrics.get("gap_to_floor_pct"),
            "rmse_delta": None, "speed_up": None, "total_ratio": None, "disagreement": None,
        }
        if run.complete and run is not baseline:
            if metrics.get("oof_rmse") is not None and base_metrics.get("oof_rmse") is not None:
                row["rmse_delta"] = metrics["oof_rmse"] - base_metrics["oof_rmse"]
            if (not reasons or force) and t["samples"] and base_t["samples"]:
                row["speed_up"] = {**speed_up(base_t["samples"], t["samples"]).as_dict(),
                                   "samples": f"{t['sample_kind']} {len(base_t['samples'])} vs {len(t['samples'])}"}
                if t["total_s"] and base_t["total_s"]:
                    row["total_ratio"] = base_t["total_s"] / t["total_s"]
            if not reasons:
                row["disagreement"] = disagreement(run, baseline)
        rows.append(row)
    return {"baseline": baseline.name, "force": force, "runs": rows, "device_diff": device_diff(runs)}
