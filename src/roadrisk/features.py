"""Model inputs: the 12 base columns, the ``orig_`` target encodings, and the two formula features.

Dtypes are chosen on purpose (FIELD-NOTES §2): booleans become 0/1 floats because pytabkit drops
plain ``bool`` columns under pandas 3 and fails on ``bool`` mixed with ``category``; the four text
columns become ``category`` with the schema's fixed categories so train and test encode alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import schema
from .risk_formula import expected_risk, mean_risk

ORIG_PREFIX = "orig_"
META = "Meta"
META_EXPECTED = "Meta_expected"


@dataclass
class FeatureSet:
    train: pd.DataFrame
    test: pd.DataFrame
    names: list[str]
    categorical: list[str]


def _base(frame: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=frame.index)
    for spec in schema.FEATURE_COLUMNS:
        column = frame[spec.name]
        if spec.kind == "category":
            out[spec.name] = column.astype(schema.category_dtype(spec))
        elif spec.kind == "bool":
            out[spec.name] = column.astype(bool).astype(np.float32)
        else:
            out[spec.name] = column.astype(np.float32)
    return out


def _original_encodings(original: pd.DataFrame) -> tuple[dict[str, pd.Series], float]:
    """Per-value mean target of the original data, for each base column."""
    global_mean = float(original[schema.TARGET].mean())
    return {name: original.groupby(name)[schema.TARGET].mean() for name in schema.FEATURE_NAMES}, global_mean


def build(train: pd.DataFrame, test: pd.DataFrame, original: pd.DataFrame | None) -> FeatureSet:
    frames = []
    encodings = _original_encodings(original) if original is not None and len(original) else None
    for raw in (train, test):
        features = _base(raw)
        if encodings is not None:
            means, global_mean = encodings
            for name in schema.FEATURE_NAMES:
                # A vectorised lookup (Series.map on strings costs ~0.4 s at Kaggle size); position -1,
                # a value the original never had, lands on the appended global mean.
                positions = means[name].index.get_indexer(raw[name])
                table = np.append(means[name].to_numpy(dtype=float), global_mean)
                features[ORIG_PREFIX + name] = table[positions].astype(np.float32)
        mu = mean_risk(raw)
        features[META] = mu.astype(np.float32)
        features[META_EXPECTED] = expected_risk(mu).astype(np.float32)
        frames.append(features.reset_index(drop=True))
    names = list(frames[0].columns)
    return FeatureSet(frames[0], frames[1], names, [c for c in schema.CATEGORY_NAMES])
