"""``roadrisk ensemble``: members in, one blended run out.

Exit codes: 0 the ensemble run was written; 2 bad input (one line naming the member, file, field or
flag, and the fix), with nothing written.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from .. import records
from ..errors import EXIT_OK, RoadriskError
from ..folds import fold_assignment, rmse
from . import DEFAULT_METHOD
from .members import find_sweep_runs, load_members
from .methods import DEFAULT_STEPS, fitter, nested_score
from .output import Outcome, write_run
from .target import load_target


def _check_flags(run_dirs: list[Path], sweep: Path | None, method: str, allow_negative: bool,
                 steps: int | None) -> None:
    if allow_negative and method != "hill":
        raise RoadriskError(f"error: --allow-negative: only --method hill takes negative weights (got --method "
                            f"{method}). Fix: add --method hill, or drop --allow-negative")
    if steps is not None and method == "ridge":
        raise RoadriskError("error: --steps: --method ridge is solved in one go and has no steps. "
                            "Fix: drop --steps, or use --method caruana or hill")
    if run_dirs and sweep is not None:
        raise RoadriskError("error: ensemble: pass run folders or --sweep DIR, not both. Fix: choose one")
    if not run_dirs and sweep is None:
        raise RoadriskError("error: ensemble: no members. Fix: pass two or more run folders, or --sweep DIR")


def blend(run_dirs: list[Path], method: str = DEFAULT_METHOD, allow_negative: bool = False,
          steps: int | None = None, data_dir: Path | None = None, notes: list[str] | None = None) -> Outcome:
    """Read and check the members, fit the weights, score them in-sample and nested. Writes nothing."""
    members = load_members(run_dirs)
    target = load_target(members, data_dir)
    P = np.column_stack([m.oof.aligned_to(target.ids) for m in members])
    submission_ids = members[0].submission.ids
    S = np.column_stack([m.submission.aligned_to(submission_ids) for m in members])
    fit = fitter(method, steps, allow_negative)
    fitted = fit(P, target.y)
    oof_pred = fitted.predict(P)
    # train.csv's row order is the order the trainer split, so the rebuilt folds are the members' folds.
    first = members[0]
    folds = fold_assignment(len(target.y), first.folds, first.cv_seed, first.cv, target.y, first.cv_bins)
    settings = {"steps": None if method == "ridge" else (steps or DEFAULT_STEPS), "allow_negative": allow_negative}
    return Outcome(
        members=members, method=method, settings=settings, blend=fitted,
        member_rmse=[rmse(target.y, P[:, j]) for j in range(P.shape[1])],
        oof_ids=target.ids, oof_pred=oof_pred, oof_rmse=rmse(target.y, oof_pred),
        nested=nested_score(fit, P, target.y, folds),
        submission_ids=submission_ids, submission_pred=fitted.predict(S), notes=list(notes or []),
    )


def run_ensemble(run_dirs: list[Path], sweep: Path | None = None, method: str = DEFAULT_METHOD,
                 allow_negative: bool = False, steps: int | None = None, runs_dir: Path = Path("runs"),
                 label: str = "ensemble", data_dir: Path | None = None, command: str | None = None,
                 echo=print, note=None) -> int:
    started, started_at = time.perf_counter(), records.now_iso()
    note = note or (lambda line: print(line, file=sys.stderr))
    _check_flags(run_dirs, sweep, method, allow_negative, steps)
    records.check_label(label)
    notes: list[str] = []
    if sweep is not None:
        run_dirs, notes = find_sweep_runs(Path(sweep))
        for line in notes:
            note(line)
    outcome = blend(list(run_dirs), method, allow_negative, steps, data_dir, notes)
    _, lines = write_run(outcome, runs_dir, label, command, started_at, lambda: time.perf_counter() - started)
    for line in lines:
        echo(line)
    return EXIT_OK
