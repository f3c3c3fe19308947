"""Every feature reaches the fitted model, booleans included (docs/data.md: pytabkit drops plain bool columns)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from roadrisk import features, schema
from roadrisk.data import load
from roadrisk.models import MODELS
from roadrisk.recipes import RECIPES


@pytest.fixture(scope="module")
def feature_set(small_data):
    dataset = load(small_data)
    return features.build(dataset.train, dataset.test, dataset.original), dataset


@pytest.fixture(scope="module", params=sorted(RECIPES))
def recipe_features(request, small_data):
    dataset = load(small_data)
    return features.build(dataset.train, dataset.test, dataset.original, RECIPES[request.param]), dataset


def test_seed_recipe_booleans_are_text_categoricals(small_data):
    dataset = load(small_data)
    fs = features.build(dataset.train, dataset.test, dataset.original, RECIPES["reference"])
    for name in schema.BOOL_NAMES:
        assert list(fs.train[name].cat.categories) == ["False", "True"]
        assert (fs.train[name] == "True").tolist() == dataset.train[name].tolist()
    assert fs.categorical == [c.name for c in schema.FEATURE_COLUMNS if c.kind in ("category", "bool")]
    assert features.META_EXPECTED not in fs.names and len(fs.names) == 25


def test_feature_names_and_dtypes(feature_set):
    fs, _ = feature_set
    assert fs.names[:12] == list(schema.FEATURE_NAMES)
    assert [n for n in fs.names if n.startswith("orig_")] == [f"orig_{n}" for n in schema.FEATURE_NAMES]
    assert fs.names[-2:] == [features.META, features.META_EXPECTED]
    for name in schema.BOOL_NAMES:
        assert fs.train[name].dtype == np.float32 and set(fs.train[name].unique()) <= {0.0, 1.0}
    for name in schema.CATEGORY_NAMES:
        assert isinstance(fs.train[name].dtype, pd.CategoricalDtype)
    assert list(fs.test.columns) == fs.names


def test_orig_columns_are_original_means_with_global_fallback(small_data):
    dataset = load(small_data)
    original = dataset.original[dataset.original.weather != "foggy"]
    fs = features.build(dataset.train, dataset.test, original)
    clear_mean = original.loc[original.weather == "clear", schema.TARGET].mean()
    clear_rows = dataset.train.weather == "clear"
    assert np.allclose(fs.train.loc[clear_rows, "orig_weather"], clear_mean, atol=1e-6)
    foggy_rows = dataset.train.weather == "foggy"
    assert np.allclose(fs.train.loc[foggy_rows, "orig_weather"], original[schema.TARGET].mean(), atol=1e-6)


def test_without_original_there_are_no_orig_columns(small_data):
    dataset = load(small_data)
    fs = features.build(dataset.train, dataset.test, None)
    assert not [n for n in fs.names if n.startswith("orig_")] and features.META in fs.names


def _changed(column: pd.Series) -> pd.Series:
    if isinstance(column.dtype, pd.CategoricalDtype):
        cats = list(column.cat.categories)
        return column.map(lambda v: cats[(cats.index(v) + 1) % len(cats)]).astype(column.dtype)
    if set(column.unique()) <= {0.0, 1.0}:
        return (1.0 - column).astype(column.dtype)
    return (column + column.std() + 0.5).astype(column.dtype)


@pytest.mark.slow  # fits realmlp and TabM
@pytest.mark.parametrize("model", ["realmlp", "tabm"])
def test_every_feature_reaches_the_torch_models(recipe_features, model):
    """Change one input column at a time: if the model ever saw it, some prediction moves."""
    fs, dataset = recipe_features
    spec = MODELS[model]
    params = {**spec.defaults("smoke", "cpu", "fast"), "n_epochs": 2}
    y = dataset.train[schema.TARGET].to_numpy()
    estimator = spec.build(params, "cpu", 0, 1)
    estimator.fit(fs.train.iloc[:900], y[:900], X_val=fs.train.iloc[900:], y_val=y[900:],
                  cat_col_names=fs.categorical)
    probe = fs.train.iloc[900:1000].reset_index(drop=True)
    base = estimator.predict(probe)
    ignored = [name for name in fs.names
               if np.allclose(estimator.predict(probe.assign(**{name: _changed(probe[name])})), base, atol=0, rtol=0)]
    assert ignored == [], f"{model} never saw: {ignored}"


def test_every_feature_reaches_hgb(feature_set):
    fs, dataset = feature_set
    spec = MODELS["hgb"]
    estimator = spec.build(spec.defaults("smoke", "cpu", "fast"), "cpu", 0, 1)
    estimator.fit(fs.train, dataset.train[schema.TARGET])
    assert list(estimator.feature_names_in_) == fs.names
    assert list(np.flatnonzero(estimator.is_categorical_)) == [fs.names.index(n) for n in schema.CATEGORY_NAMES]
