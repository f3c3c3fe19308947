"""``roadrisk ensemble``: members in, one blended run out.

Exit codes: 0 the ensemble run was written; 2 bad input (one line naming the member, file, field or
flag, and the fix), with nothing written.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from .. import records, schema
from ..errors import EXIT_OK, RoadriskError
from ..folds import fold_assignment, rmse
from . import DEFAULT_METHOD, DEFAULT_STACK_MODEL
from .members import EnsembleMember, find_sweep_runs, load_members
from .methods import DEFAULT_STEPS, fitter, nested_score
from .output import Outcome, write_run
from .seeds import average_seeds
from .target import Target, load_target


def _check_flags(run_dirs: list[Path], sweep: Path | None, method: str, allow_negative: bool,
                 steps: int | None, stack_model: str | None = None) -> None:
    if allow_negative and method != "hill":
        raise RoadriskError(f"error: --allow-negative: only --method hill takes negative weights (got --method "
                            f"{method}). Fix: add --method hill, or drop --allow-negative")
    if steps is not None and method in ("ridge", "stack"):
        raise RoadriskError(f"error: --steps: --method {method} is fitted in one go and has no steps. "
                            "Fix: drop --steps, or use --method caruana or hill")
    if stack_model is not None and method != "stack":
        raise RoadriskError(f"error: --stack-model: only --method stack has a level-2 model (got --method {method}). "
                            "Fix: add --method stack, or drop --stack-model")
    if method == "stack" and stack_model == "xgb":
        try:
            import xgboost  # noqa: F401  (lazy: only this level-2 model needs it)
        except ImportError:
            raise RoadriskError("error: --stack-model xgb: xgboost is not installed here. Fix: install it "
                                "(pip install xgboost), or use --stack-model hgb or ridge") from None
    if run_dirs and sweep is not None:
        raise RoadriskError("error: ensemble: pass run folders or --sweep DIR, not both. Fix: choose one")
    if not run_dirs and sweep is None:
        raise RoadriskError("error: ensemble: no members. Fix: pass two or more run folders, or --sweep DIR")


def _averaged(members: list[EnsembleMember], notes: list[str]) -> tuple[list[EnsembleMember], dict]:
    members, groups = average_seeds(members)
    for group in groups:
        notes.append(f"note: averaged seeds: {group['run_id']} is the mean of "
                     + ", ".join(f"{run['run_id']} (seed {run['seed']})" for run in group["runs"]))
    return members, {"averaged_seeds": groups}


def blend(run_dirs: list[Path], method: str = DEFAULT_METHOD, allow_negative: bool = False,
          steps: int | None = None, data_dir: Path | None = None, notes: list[str] | None = None,
          stack_model: str | None = None, seeds_averaged: bool = False) -> Outcome:
    """Read and check the members, fit the weights, score them in-sample and nested. Writes nothing."""
    notes = list(notes or [])
    members = load_members(run_dirs)
    extra: dict = {}
    if seeds_averaged:
        members, extra = _averaged(members, notes)
    target = load_target(members, data_dir)
    P = np.column_stack([m.oof.aligned_to(target.ids) for m in members])
    submission_ids = members[0].submission.ids
    S = np.column_stack([m.submission.aligned_to(submission_ids) for m in members])
    # train.csv's row order is the order the trainer split, so the rebuilt folds are the members' folds.
    first = members[0]
    folds = fold_assignment(len(target.y), first.folds, first.cv_seed, first.cv, target.y, first.cv_bins)
    member_rmse = [rmse(target.y, P[:, j]) for j in range(P.shape[1])]
    if method == "stack":
        return _stack(members, target, P, S, submission_ids, folds, member_rmse, stack_model or DEFAULT_STACK_MODEL,
                      seeds_averaged, notes, extra)
    fit = fitter(method, steps, allow_negative)
    fitted = fit(P, target.y)
    oof_pred = fitted.predict(P)
    settings = {"steps": None if method == "ridge" else (steps or DEFAULT_STEPS), "allow_negative": allow_negative,
                "average_seeds": seeds_averaged}
    return Outcome(
        members=members, method=method, settings=settings, blend=fitted, member_rmse=member_rmse,
        oof_ids=target.ids, oof_pred=oof_pred, oof_rmse=rmse(target.y, oof_pred),
        nested=nested_score(fit, P, target.y, folds),
        submission_ids=submission_ids, submission_pred=fitted.predict(S), notes=notes, extra=extra,
    )


def _stack(members: list[EnsembleMember], target: Target, P: np.ndarray, S: np.ndarray, submission_ids: np.ndarray,
           folds: np.ndarray, member_rmse: list[float], model: str, seeds_averaged: bool, notes: list[str],
           extra: dict) -> Outcome:
    """--method stack: the level-2 model's nested fit on the members' folds (stack.py says why so)."""
    from threadpoolctl import threadpool_limits

    from ..environment import usable_cpus
    from . import stack
    from .raw_features import load_raw_features

    raw = load_raw_features(members, target, submission_ids)
    threads = stack.level2_threads(len(target.y), usable_cpus()[0])
    # scikit-learn's OpenMP and BLAS would otherwise take every CPU in the affinity mask, past a --cpus quota.
    with threadpool_limits(limits=threads):
        result = stack.nested_stack(lambda: stack.build_model(model, threads), stack.design(P, raw.train), target.y,
                                    folds, stack.design(S, raw.test))
    block = {**stack.settings(model),
             "inputs": {"members": [m.run_id for m in members], "raw_features": list(schema.FEATURE_NAMES)},
             "oof": "nested: each row predicted by the level-2 model fitted without its fold",
             "test_prediction": f"mean of the {len(result.fold_details)} fold models",
             "in_sample_rmse": round(result.in_sample_rmse, 6), "threads": threads, "folds": result.fold_details}
    return Outcome(
        members=members, method="stack",
        settings={"steps": None, "allow_negative": False, "average_seeds": seeds_averaged, "stack_model": model},
        blend=None, member_rmse=member_rmse, oof_ids=target.ids, oof_pred=result.nested.predictions,
        oof_rmse=result.nested.rmse, nested=result.nested, submission_ids=submission_ids,
        submission_pred=result.test_pred, notes=notes,
        extra={**extra, "stack": block,
               "device": {"selected": "cpu", "reason": f"the level-2 model is fitted on the CPU ({threads} threads)"}},
        extra_lines=[f"stack_model: {model}",
                     f"stack_inputs: {len(members)} member(s) + {len(schema.FEATURE_NAMES)} raw features",
                     f"stack_in_sample_rmse: {result.in_sample_rmse:.6f}"],
    )


def run_ensemble(run_dirs: list[Path], sweep: Path | None = None, method: str = DEFAULT_METHOD,
                 allow_negative: bool = False, steps: int | None = None, runs_dir: Path = Path("runs"),
                 label: str = "ensemble", data_dir: Path | None = None, command: str | None = None,
                 echo=print, note=None, stack_model: str | None = None, seeds_averaged: bool = False,
                 tracker=None) -> int:
    """``tracker`` (tracking.Tracker): logs the written run; a failure to log is its one warning line."""
    started, started_at = time.perf_counter(), records.now_iso()
    note = note or (lambda line: print(line, file=sys.stderr))
    _check_flags(run_dirs, sweep, method, allow_negative, steps, stack_model)
    records.check_label(label)
    notes: list[str] = []
    if sweep is not None:
        run_dirs, notes = find_sweep_runs(Path(sweep))
        for line in notes:
            note(line)
    outcome = blend(list(run_dirs), method, allow_negative, steps, data_dir, notes, stack_model, seeds_averaged)
    for line in outcome.notes[len(notes):]:  # what the blend itself had to say (averaged seeds)
        note(line)
    run_dir, lines = write_run(outcome, runs_dir, label, command, started_at, lambda: time.perf_counter() - started)
    for line in lines:
        echo(line)
    if tracker is not None:
        tracker.log_run(run_dir)
    return EXIT_OK
