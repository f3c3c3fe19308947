"""Per-epoch progress comes out of real pytabkit fits (the message formats belong to the pinned version)."""

from __future__ import annotations

import pytest

from roadrisk import features, schema
from roadrisk.data import load
from roadrisk.epochs import observe_epochs
from roadrisk.models import MODELS


@pytest.fixture(scope="module")
def fold(small_data):
    dataset = load(small_data)
    feature_set = features.build(dataset.train, dataset.test, dataset.original)
    y = dataset.train[schema.TARGET].to_numpy()
    return feature_set.train, y


@pytest.mark.slow  # real realmlp and TabM fits
@pytest.mark.parametrize("model, params", [
    ("realmlp", {"n_epochs": 4}),
    ("tabm", {"n_epochs": 4, "n_blocks": 1, "d_block": 32, "tabm_k": 4, "num_emb_n_bins": 16}),
])
def test_every_epoch_of_a_real_fit_is_reported_with_the_best_so_far(fold, model, params):
    x, y = fold
    spec = MODELS[model]
    seen = []
    with observe_epochs(seen.append, *spec.epoch_plan(params)) as tracker:
        spec.build(params, "cpu", 0, 1).fit(x.iloc[:900], y[:900], X_val=x.iloc[900:], y_val=y[900:])
    assert [e.epoch for e in seen] == [1, 2, 3, 4]
    assert all(e.max_epochs == 4 for e in seen)
    assert all(0 < e.val_rmse < 1.0 for e in seen)  # RMSE in the target's units (a few epochs on 900 rows)
    for i, event in enumerate(seen):
        assert event.best_rmse == min(e.val_rmse for e in seen[: i + 1])
    assert tracker.summary()["epochs"] == 4 and tracker.summary()["best_epoch"] in range(1, 5)
    if model == "tabm":  # early stopping: the patience left is counted from the best epoch
        assert all(e.patience_left == 16 - (e.epoch - e.best_epoch) for e in seen)


def test_the_library_logger_is_put_back(fold):
    from pytabkit.models.sklearn import sklearn_base

    original = sklearn_base.StdoutLogger
    with pytest.raises(RuntimeError):
        with observe_epochs(None, 3, None):
            raise RuntimeError("a fit that fails")
    assert sklearn_base.StdoutLogger is original
