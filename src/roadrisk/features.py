"""Model inputs: the 12 base columns, the ``orig_`` target encodings, ``Meta`` and, in the fast
recipe, ``Meta_expected``.

Dtypes are chosen on purpose (docs/data.md, "pytabkit and dtypes"): plain ``bool`` columns never reach
the model, because pytabkit drops them under pandas 3 and fails on ``bool`` mixed with ``category``.
The reference recipe makes booleans categoricals with the text values ``"False"``/``"True"`` (categories
of Python booleans would make scikit-learn's input check cast the whole frame to float); the fast
recipe makes them 0/1 floats. The four text columns are ``category`` with the schema's fixed
categories, so train and test encode alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import schema
from .recipes import RECIPES, Recipe
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


BOOL_CATEGORIES = pd.CategoricalDtype(["False", "True"])


def _base(frame: pd.DataFrame, bools_as: str) -> pd.DataFrame:
    out = pd.DataFrame(index=frame.index)
    for spec in schema.FEATURE_COLUMNS:
        column = frame[spec.name]
        if spec.kind == "category":
            out[spec.name] = column.astype(schema.category_dtype(spec))
        elif spec.kind == "bool" and bools_as == "category":
            codes = column.astype(bool).to_numpy().astype(np.int8)
            out[spec.name] = pd.Categorical.from_codes(codes, dtype=BOOL_CATEGORIES)
        elif spec.kind == "bool":
            out[spec.name] = column.astype(bool).astype(np.float32)
        else:
            out[spec.name] = column.astype(np.float32)
    return out


def _original_encodings(original: pd.DataFrame) -> tuple[dict[str, pd.Series], float]:
    """Per-value mean target of the original data, for each base column."""
    global_mean = float(original[schema.TARGET].mean())
    # observed=True: a category the original never holds must fall back to the global mean, not come
    # back as a NaN group (pandas 2 defaults to observed=False for categoricals, pandas 3 to True).
    return ({name: original.groupby(name, observed=True)[schema.TARGET].mean() for name in schema.FEATURE_NAMES},
            global_mean)


def names_for(recipe: Recipe, has_original: bool) -> tuple[list[str], list[str]]:
    """The feature names and the categorical ones ``build`` makes for a recipe, without the data: what a
    run plan records (``build`` checks it made exactly these)."""
    names = list(schema.FEATURE_NAMES)
    if has_original:
        names += [ORIG_PREFIX + name for name in schema.FEATURE_NAMES]
    names += [META, META_EXPECTED] if recipe.meta_expected else [META]
    categorical = [spec.name for spec in schema.FEATURE_COLUMNS
                   if spec.kind == "category" or (spec.kind == "bool" and recipe.bools_as == "category")]
    return names, categorical


def build(train: pd.DataFrame, test: pd.DataFrame, original: pd.DataFrame | None,
          recipe: Recipe = RECIPES["fast"]) -> FeatureSet:
    frames = []
    encodings = _original_encodings(original) if original is not None and len(original) else None
    for raw in (train, test):
        features = _base(raw, recipe.bools_as)
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
        if recipe.meta_expected:
            features[META_EXPECTED] = expected_risk(mu).astype(np.float32)
        frames.append(features.reset_index(drop=True))
    names, categorical = names_for(recipe, encodings is not None)
    if list(frames[0].columns) != names:  # the plan recorded names_for's list: they must never drift apart
        raise AssertionError(f"features.build made {list(frames[0].columns)}, names_for says {names}")
    return FeatureSet(frames[0], frames[1], names, categorical)
