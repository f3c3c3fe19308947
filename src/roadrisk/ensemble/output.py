"""The ensemble's run folder: the same files as a training run, so everything that reads runs reads it.

Nothing is written until the blend is computed, and run.json is written last: a folder without it
is not a run, and a failure while writing removes the folder.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import records, schema
from ..atomic import atomic_write_text, write_predictions_atomic
from .members import EnsembleMember
from .methods import Blend, NestedScore


@dataclass
class Outcome:
    """Everything the blend computed, ready to be written."""

    members: list[EnsembleMember]
    method: str
    settings: dict  # steps, allow_negative: what the method was run with
    blend: Blend | None  # None for a stack: a level-2 model, not weights (its record block is in extra)
    member_rmse: list[float]
    oof_ids: np.ndarray
    oof_pred: np.ndarray
    oof_rmse: float
    nested: NestedScore
    submission_ids: np.ndarray
    submission_pred: np.ndarray
    notes: list[str]
    extra: dict = field(default_factory=dict)  # more record fields: the stack block, averaged seeds
    extra_lines: list[str] = field(default_factory=list)  # more log lines, before the scores


def _shared(members: list[EnsembleMember], *path: str):
    """A config value every member agrees on, else None."""
    values = {repr(m.field(*path)) for m in members}
    return members[0].field(*path) if len(values) == 1 else None


def build_record(outcome: Outcome, run_dir: Path, label: str, command: str | None, started_at: str,
                 total_s: float) -> dict:
    members, blend = outcome.members, outcome.blend
    first = members[0]
    weights = [None] * len(members) if blend is None else [float(w) for w in blend.weights]
    member_entries = [
        {"path": str(m.path), "run_id": m.run_id, "label": m.field("label"), "model": m.field("config", "model"),
         "recipe": m.field("config", "recipe"), "seed": m.field("config", "seed"),
         "oof_rmse": round(score, 6), "weight": w}
        for m, score, w in zip(members, outcome.member_rmse, weights)
    ]
    floor = first.field("metrics", "floor_rmse")  # same data, same floor
    metrics = {
        "oof_rmse": round(outcome.oof_rmse, 6),
        "nested_oof_rmse": round(outcome.nested.rmse, 6),
        "nested_fold_rmse": [round(v, 6) for v in outcome.nested.fold_rmse],
        "nested_rows": int(len(outcome.nested.predictions)),
        "best_member_oof_rmse": round(min(outcome.member_rmse), 6),
        "member_oof_rmse": {m.run_id: round(s, 6) for m, s in zip(members, outcome.member_rmse)},
        "floor_rmse": floor if isinstance(floor, (int, float)) else None,
        "gap_to_floor_pct": None,
        "nested_gap_to_floor_pct": None,
    }
    if metrics["floor_rmse"]:
        metrics["gap_to_floor_pct"] = round(100.0 * (outcome.oof_rmse - floor) / floor, 3)
        metrics["nested_gap_to_floor_pct"] = round(100.0 * (outcome.nested.rmse - floor) / floor, 3)
    member_seconds = [m.field("timings", "total_s") for m in members]
    record = records.RunRecord(run_dir, label, kind="ensemble")  # the fields every run.json has
    del record.data["environment"]  # a blend has no machine of its own to describe
    record.data.update({
        "status": records.Status.COMPLETE.value,
        "started_at": started_at,
        "ended_at": records.now_iso(),
        "command": command,
        "device": {"selected": "cpu", "reason": "a blend is numpy arithmetic on the CPU"},
        "method": outcome.method,
        "weights": None if blend is None else {m.run_id: w for m, w in zip(members, weights)},
        "intercept": None if blend is None else float(blend.intercept),
        "members": member_entries,
        "data": first.field("data"),
        "config": {"method": outcome.method, **outcome.settings, "profile": _shared(members, "config", "profile"),
                   "model": "ensemble", "cv": first.cv, "cv_bins": first.cv_bins, "folds": first.folds,
                   "cv_seed": first.cv_seed, "members": len(members)},
        "timings": {"total_s": round(total_s, 4),
                    # Compute spent on the whole blend: what its members cost to train.
                    "compute_s": round(sum(s for s in member_seconds if isinstance(s, (int, float))), 4),
                    "members_without_timing": sum(not isinstance(s, (int, float)) for s in member_seconds)},
        "metrics": metrics,
        "notes": outcome.notes,
        "outputs": {"oof": records.OOF_FILE, "submission": records.SUBMISSION_FILE, "log": records.LOG_FILE},
        **outcome.extra,
    })
    return record.data


def _six(value) -> str:
    return "none" if value is None else f"{value:.6f}"


def log_lines(record: dict, run_dir: Path, extra_lines: list[str] = ()) -> list[str]:
    """Stable ``key: value`` lines for train.log and the terminal."""
    metrics = record["metrics"]
    lines = [f"method: {record['method']}", f"members: {len(record['members'])}"]
    lines += [f"member: {m['run_id']} label={m['label']} model={m['model']} seed={m['seed']} "
              f"oof_rmse={m['oof_rmse']:.6f} weight={_six(m['weight'])} path={m['path']}" for m in record["members"]]
    weights = record["weights"]
    lines += [
        "weights: " + (" ".join(f"{run_id}={w:.6f}" for run_id, w in weights.items()) if weights else "none"),
        f"intercept: {_six(record['intercept'])}",
        *extra_lines,
        f"best_member_oof_rmse: {metrics['best_member_oof_rmse']:.6f}",
        f"oof_rmse: {metrics['oof_rmse']:.6f}",
        f"nested_oof_rmse: {metrics['nested_oof_rmse']:.6f}",
        f"floor_rmse: {metrics['floor_rmse']}",
        f"gap_to_floor_pct: {metrics['gap_to_floor_pct']}",
        f"compute_s: {record['timings']['compute_s']:.1f}",
        f"run_dir: {run_dir}",
    ]
    return lines


def write_run(outcome: Outcome, runs_dir: Path, label: str, command: str | None, started_at: str,
              elapsed) -> tuple[Path, list[str]]:
    """Create the run folder and write it whole; ``elapsed()`` gives the seconds since the command began."""
    run_dir = records.new_run_dir(runs_dir, label)
    try:
        write_predictions_atomic(run_dir / records.OOF_FILE, schema.ID, outcome.oof_ids, schema.TARGET,
                                 outcome.oof_pred)
        write_predictions_atomic(run_dir / records.SUBMISSION_FILE, schema.ID, outcome.submission_ids,
                                 schema.TARGET, outcome.submission_pred)
        record = build_record(outcome, run_dir, label, command, started_at, elapsed())
        lines = log_lines(record, run_dir, outcome.extra_lines)
        atomic_write_text(run_dir / records.LOG_FILE, "\n".join([*outcome.notes, *lines]) + "\n")
        records.write(run_dir, record)  # last: a folder without run.json is not a run
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return run_dir, lines
