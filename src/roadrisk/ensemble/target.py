"""The target the members were scored against: their train.csv, found and proven to be the same file.

Run folders keep predictions, not the target, so the blend reads it from the data the members were
trained on: ``--data-dir`` when given, else the folder their record names (``data.path``), else, for
generated data, the same files regenerated from the record's generator marker (a run trained in a
container names a path that exists only inside it). Whichever is used, its train.csv must have the
sha256 the members recorded, so a blend is never scored against different rows.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import schema
from ..errors import RoadriskError
from ..generator import GENERATOR_VERSION
from .members import EnsembleMember


@dataclass
class Target:
    ids: np.ndarray  # train.csv's order, which is the order the folds were split in
    y: np.ndarray
    source: Path  # the train.csv read


def _read_if_same(train_file: Path, sha256: str) -> Target | None:
    if not train_file.is_file():
        return None
    raw = train_file.read_bytes()
    if hashlib.sha256(raw).hexdigest() != sha256:
        return None
    frame = pd.read_csv(io.BytesIO(raw), usecols=[schema.ID, schema.TARGET])
    return Target(frame[schema.ID].to_numpy(dtype=np.int64), frame[schema.TARGET].to_numpy(dtype=float), train_file)


def _regenerated(member: EnsembleMember) -> Path | None:
    """The generated dataset the member used, rebuilt in the cache (a no-op when it is already there)."""
    from ..data import embedded_dir

    marker = member.field("data", "generator")
    if not isinstance(marker, dict) or marker.get("generator_version") != GENERATOR_VERSION:
        return None
    try:
        sizes = [int(marker[key]) for key in ("train_rows", "test_rows", "original_rows", "seed")]
    except (KeyError, TypeError, ValueError):
        return None
    return embedded_dir(*sizes)[0]


def load_target(members: list[EnsembleMember], data_dir: Path | None = None) -> Target:
    first = members[0]  # all share data.fingerprint (members.check_comparable)
    sha256 = first.field("data", "files", schema.TRAIN_FILE, "sha256")
    if not isinstance(sha256, str):
        raise RoadriskError(f"error: {first.path}: run.json has no data.files.{schema.TRAIN_FILE}.sha256, so its "
                            "target cannot be checked. Fix: rerun the members with this roadrisk")
    if data_dir is not None:
        target = _read_if_same(Path(data_dir) / schema.TRAIN_FILE, sha256)
        if target is None:
            raise RoadriskError(f"error: --data-dir {data_dir}: no {schema.TRAIN_FILE} with the sha256 recorded in "
                                f"{first.path}/run.json. Fix: pass the folder the members were trained on "
                                f"(data.path: {first.field('data', 'path')})")
    else:
        recorded = dict.fromkeys(Path(p) for p in (m.field("data", "path") for m in members) if isinstance(p, str))
        target = next((t for t in (_read_if_same(p / schema.TRAIN_FILE, sha256) for p in recorded) if t), None)
        if target is None:
            regenerated = _regenerated(first)
            target = _read_if_same(regenerated / schema.TRAIN_FILE, sha256) if regenerated else None
        if target is None:
            raise RoadriskError(f"error: {first.path}: its training data ({first.field('data', 'path')}) is not on "
                                f"this machine. Fix: pass --data-dir with the folder holding that {schema.TRAIN_FILE}")
    oof_ids = first.oof.ids
    if len(target.ids) != len(oof_ids) or not np.array_equal(np.sort(target.ids), np.sort(oof_ids)):
        raise RoadriskError(f"error: {first.path}: oof.csv ids differ from the ids of {target.source}. "
                            "Fix: rerun the member to completion")
    return target
