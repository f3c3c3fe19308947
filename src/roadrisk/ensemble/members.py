"""The runs to blend: found, read, and checked to answer the same question on the same rows.

Every refusal is one line naming the member (its folder) and the field, because a blend of runs
trained on different data or folds would score itself on rows its members had seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import records, schema
from ..errors import RoadriskError
from ..folds import clip_risk
from ..plan import RECORD_PATHS, SAME_ROWS, differences
from ..records import record_field
from ..tracking import ARTIFACTS_DIR

FIX_COMPARABLE = ("Fix: blend only runs trained on the same data with the same folds "
                  "(data.fingerprint, config.cv, config.cv_bins, config.folds, config.cv_seed)")


@dataclass
class Predictions:
    ids: np.ndarray
    values: np.ndarray

    def aligned_to(self, ids: np.ndarray) -> np.ndarray:
        """The values in the order of ``ids`` (the same set, checked before)."""
        if np.array_equal(self.ids, ids):
            return self.values
        return self.values[pd.Index(self.ids).get_indexer(ids)]


@dataclass
class EnsembleMember:
    """A complete run read for blending: its record and its OOF and test predictions."""

    path: Path
    record: dict
    oof: Predictions
    submission: Predictions

    def field(self, *path: str):
        return record_field(self.record, path)

    @property
    def run_id(self) -> str:
        return self.record.get("run_id") or self.path.name

    @property
    def cv_seed(self):
        cv_seed = self.field("config", "cv_seed")  # schema 1 split the folds with the model seed
        return self.field("config", "seed") if cv_seed is None else cv_seed

    @property
    def folds(self):
        return self.field("config", "folds")

    @property
    def cv(self) -> str:
        return self.field("config", "cv") or "kfold"

    @property
    def cv_bins(self):
        return self.field("config", "cv_bins")

    @property
    def fingerprint(self):
        return self.field("data", "fingerprint")

    def sort_key(self) -> tuple[str, str]:
        """Run ids are unique timestamps plus random hex: a stable order whatever order the user typed."""
        return (self.run_id, str(self.path))


def find_sweep_runs(sweep_dir: Path) -> tuple[list[Path], list[str]]:
    """Every complete training run under ``sweep_dir``, at any depth, and one note per folder skipped."""
    if not sweep_dir.is_dir():
        raise RoadriskError(f"error: --sweep {sweep_dir}: no such folder. Fix: pass the folder a sweep wrote, "
                            "e.g. runs/<sweep name>")
    found: list[Path] = []
    notes: list[str] = []
    for run_file in sorted(sweep_dir.rglob(records.RUN_FILE)):
        if ARTIFACTS_DIR in run_file.relative_to(sweep_dir).parts:  # an MLflow store's copy (docs/tracking.md)
            continue
        record, problem = records.read(run_file.parent)
        if problem:
            notes.append(problem.replace("error:", "skipped:", 1))
        elif record.get("status") != records.Status.COMPLETE:
            notes.append(f"note: {run_file.parent}: status {record.get('status')}; skipped")
        elif record.get("kind") == "ensemble":
            notes.append(f"note: {run_file.parent}: an ensemble; skipped (its members are blended instead)")
        else:
            found.append(run_file.parent)
    return found, notes


def _read_predictions(path: Path) -> Predictions:
    if not path.is_file():
        raise RoadriskError(f"error: {path}: not found. Fix: pass a complete run folder written by `roadrisk train`")
    try:
        frame = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RoadriskError(f"error: {path}: not a readable CSV ({first}). Fix: rerun the member") from None
    if [str(c) for c in frame.columns] != [schema.ID, schema.TARGET]:
        raise RoadriskError(f"error: {path}: the header must be {schema.ID},{schema.TARGET}. Fix: rerun the member")
    ids = pd.to_numeric(frame[schema.ID], errors="coerce")
    values = pd.to_numeric(frame[schema.TARGET], errors="coerce")
    if ids.isna().any() or values.isna().any():
        raise RoadriskError(f"error: {path}: {int(ids.isna().sum() + values.isna().sum())} empty or non-numeric "
                            "value(s). Fix: rerun the member to completion")
    if ids.duplicated().any():
        raise RoadriskError(f"error: {path}: id {int(ids[ids.duplicated()].iloc[0])} appears twice. Fix: rerun the member")
    # Clipped like every prediction roadrisk scores (the trainer already wrote them clipped).
    return Predictions(ids.to_numpy(dtype=np.int64), clip_risk(values.to_numpy(dtype=float)))


def read_member(run_dir: Path) -> EnsembleMember:
    record, problem = records.read(run_dir)
    if problem:
        raise RoadriskError(problem)
    if record.get("status") != records.Status.COMPLETE:
        raise RoadriskError(f"error: {run_dir}: status {record.get('status')}; only complete runs can be blended. "
                            "Fix: rerun it, or leave it out")
    if record.get("kind") == "ensemble":
        raise RoadriskError(f"error: {run_dir}: an ensemble (kind ensemble); its out-of-fold predictions were "
                            "fitted on these very rows. Fix: pass its members instead")
    return EnsembleMember(Path(run_dir), record, _read_predictions(Path(run_dir) / records.OOF_FILE),
                  _read_predictions(Path(run_dir) / records.SUBMISSION_FILE))


def _id_difference(member: Predictions, reference: Predictions) -> str:
    extra = np.setdiff1d(member.ids, reference.ids)
    missing = np.setdiff1d(reference.ids, member.ids)
    parts = [f"{len(member.ids)} rows"]
    if len(extra):
        parts.append(f"{len(extra)} id(s) the first member lacks, e.g. {int(extra[0])}")
    if len(missing):
        parts.append(f"{len(missing)} id(s) missing, e.g. {int(missing[0])}")
    return ", ".join(parts)


def check_comparable(members: list[EnsembleMember]) -> None:
    """Every member against the first: the same data, folds and fold seed, and the same rows."""
    first = members[0]
    for member in members:
        for name, value in (("config.folds", member.folds), ("config.cv_seed", member.cv_seed)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise RoadriskError(f"error: {member.path}: run.json has no usable {name} ({value!r}); the folds "
                                    "cannot be rebuilt. Fix: rerun it with this roadrisk, or leave it out")
    for member in members[1:]:
        for key, expected, value in differences(first.record, member.record, SAME_ROWS):
            name = ".".join(RECORD_PATHS[key])
            raise RoadriskError(f"error: {member.path}: {name} {value!r} differs from {expected!r} in {first.path}. "
                                f"{FIX_COMPARABLE}")
        for name, mine, theirs in ((records.OOF_FILE, member.oof, first.oof),
                                   (records.SUBMISSION_FILE, member.submission, first.submission)):
            if len(mine.ids) != len(theirs.ids) or not np.array_equal(np.sort(mine.ids), np.sort(theirs.ids)):
                raise RoadriskError(f"error: {member.path}: {name} ids differ from {first.path} "
                                    f"({_id_difference(mine, theirs)}). {FIX_COMPARABLE}")


def load_members(run_dirs: list[Path]) -> list[EnsembleMember]:
    """The members, read and checked, in a stable order (by run id) whatever order they were given in."""
    if len(run_dirs) < 2:
        raise RoadriskError(f"error: ensemble: {len(run_dirs)} member(s) found; a blend needs at least 2. "
                            "Fix: pass two or more run folders, or --sweep DIR holding complete runs")
    seen: dict[Path, Path] = {}
    for run_dir in run_dirs:
        key = Path(run_dir).resolve()
        if key in seen:
            raise RoadriskError(f"error: {run_dir}: listed twice (as {seen[key]}). Fix: name each member once")
        seen[key] = Path(run_dir)
    members = [read_member(Path(run_dir)) for run_dir in run_dirs]
    by_id: dict[str, EnsembleMember] = {}
    for member in members:
        if member.run_id in by_id:
            raise RoadriskError(f"error: {member.path}: run_id {member.run_id} is also {by_id[member.run_id].path} "
                                "(a copy?). Fix: name each member once")
        by_id[member.run_id] = member
    check_comparable(members)
    return sorted(members, key=EnsembleMember.sort_key)
