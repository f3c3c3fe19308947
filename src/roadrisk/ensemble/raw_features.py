"""The raw features a stack sees beside the members' predictions: the 12 base columns of the members' data.

Read with the project's one loader (data.load: the same validation and dtypes as training), from the
folder whose train.csv target.py already proved to be the members' own; the whole folder (test.csv and
the original file too) must then have the members' data.fingerprint, so the test rows a stack
predicts are the rows the members predicted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import data, schema
from ..errors import DataError, RoadriskError
from .members import EnsembleMember
from .target import Target


@dataclass
class RawFeatures:
    train: pd.DataFrame  # schema.FEATURE_NAMES, in the order of target.ids
    test: pd.DataFrame  # the same columns, in the order of the members' submission ids


def _aligned(frame: pd.DataFrame, ids: np.ndarray, where: str) -> pd.DataFrame:
    position = pd.Index(frame[schema.ID].to_numpy(np.int64)).get_indexer(ids)
    if (position < 0).any():
        raise RoadriskError(f"error: {where}: {int((position < 0).sum())} id(s) the members predicted are not in it "
                            f"(e.g. {int(ids[position < 0][0])}). Fix: pass --data-dir with the folder the members "
                            "were trained on")
    return frame.iloc[position][list(schema.FEATURE_NAMES)].reset_index(drop=True)


def load_raw_features(members: list[EnsembleMember], target: Target, submission_ids: np.ndarray) -> RawFeatures:
    folder = target.source.parent
    first = members[0]
    try:
        dataset = data.load(folder)
    except DataError as exc:  # the members trained on it, so this is a folder changed since: say the first problem
        raise RoadriskError(f"{str(exc).splitlines()[0]} (read for --method stack's raw features)") from None
    if dataset.fingerprint != first.fingerprint:
        raise RoadriskError(f"error: {folder}: data fingerprint {dataset.fingerprint} differs from "
                            f"{first.fingerprint} in {first.path}/run.json (its {schema.TEST_FILE} or original file "
                            "changed). Fix: pass --data-dir with the folder the members were trained on")
    return RawFeatures(_aligned(dataset.train, target.ids, str(folder / schema.TRAIN_FILE)),
                       _aligned(dataset.test, submission_ids, str(folder / schema.TEST_FILE)))
