"""The leaderboard: every complete run, training runs and ensembles alike, ranked by its honest RMSE.

A training run's OOF RMSE is already honest (each row predicted by a model that never saw it). An
ensemble's in-sample OOF RMSE is not: its weights were fitted on those very rows. Its nested score
(weights fitted on K-1 folds, scored on the held-out one) is, so that is what an ensemble is ranked
by. Compute is what the result cost: a training run's wall time; an ensemble's members' wall times
summed, plus its own.
"""

from __future__ import annotations

import math

from ..plan import SAME_ROWS, differences, key_name
from .runs import Run, record_field


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _model(run: Run) -> str:
    if run.kind != "ensemble":
        return str(record_field(run.record, ("config", "model")) or "–")
    method = run.record.get("method") or record_field(run.record, ("config", "method")) or "?"
    members = run.record.get("members")
    count = len(members) if isinstance(members, list) else record_field(run.record, ("config", "members"))
    return f"ensemble({method}, {count if count is not None else '?'} members)"


def _recipe(run: Run) -> str | None:
    if run.kind != "ensemble":
        return record_field(run.record, ("config", "recipe"))
    members = run.record.get("members") if isinstance(run.record.get("members"), list) else []
    recipes = sorted({str(m.get("recipe")) for m in members if isinstance(m, dict) and m.get("recipe")})
    return "+".join(recipes) or None


def entry(run: Run) -> dict:
    """One run's line on the leaderboard, before it is ranked."""
    metrics = run.record.get("metrics") or {}
    timings = run.record.get("timings") or {}
    ensemble = run.kind == "ensemble"
    oof = _number(metrics.get("oof_rmse"))
    nested = _number(metrics.get("nested_oof_rmse")) if ensemble else None
    score = nested if nested is not None else oof
    floor = _number(metrics.get("floor_rmse"))
    own = _number(timings.get("total_s"))
    members_s = _number(timings.get("compute_s")) if ensemble else None
    if ensemble:
        compute = None if members_s is None and own is None else (members_s or 0.0) + (own or 0.0)
    else:
        compute = own
    return {
        "rank": None, "name": run.name, "label": run.label, "run_id": run.path.name, "path": str(run.path),
        "kind": run.kind, "model": _model(run), "recipe": _recipe(run),
        "oof_rmse": oof, "nested_oof_rmse": nested,
        "score": score, "score_kind": "nested_oof_rmse" if nested is not None else "oof_rmse",
        "best_member_oof_rmse": _number(metrics.get("best_member_oof_rmse")) if ensemble else None,
        "floor_rmse": floor,
        "gap_to_floor_pct": 100.0 * (score - floor) / floor if score is not None and floor else None,
        "compute_s": compute,  # what the result cost: own wall time, plus the members' for an ensemble
        "own_s": own,
        "members_compute_s": members_s,
        "members_without_timing": int(timings.get("members_without_timing") or 0) if ensemble else 0,
        "reference": False, "comparable": None, "not_comparable_because": [],
        **{key: record_field(run.record, path) for key, path in (
            ("fingerprint", ("data", "fingerprint")), ("folds", ("config", "folds")), ("cv_seed", ("config", "cv_seed")))},
    }


def rank(runs: list[Run]) -> list[dict]:
    """The complete runs, best first; the best is the reference the others' comparability is judged against."""
    rows = [entry(run) for run in runs if run.complete]
    # Equal scores: the cheaper result first (a blend that picked one member ties with it, and costs more).
    rows.sort(key=lambda r: (r["score"] is None, r["score"] or 0.0, r["compute_s"] or math.inf, r["name"]))
    scored = [r for r in rows if r["score"] is not None]
    for position, row in enumerate(scored, start=1):
        row["rank"] = position
    if not scored:
        return rows
    by_name = {run.name: run for run in runs}  # names are unique (name_runs)
    best = by_name[scored[0]["name"]]
    scored[0]["reference"] = True
    for row in rows:
        if row["reference"]:
            row["comparable"] = True
            continue
        run = by_name[row["name"]]
        # The same rows, scored on the same folds: the model, recipe, target and profile may differ here.
        row["not_comparable_because"] = [f"{key_name(key)} {mine} vs {theirs}"
                                         for key, theirs, mine in differences(best.record, run.record, SAME_ROWS)]
        row["comparable"] = not row["not_comparable_because"]
    return rows
