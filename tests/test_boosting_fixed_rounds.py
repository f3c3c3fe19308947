"""early_stopping_rounds None means a fixed round count for every GBDT: the fit runs every round and the
last one predicts, never the round the validation rows liked best (which would leak them into the OOF
score). CatBoost would otherwise keep its best round (use_best_model) whenever it sees an eval set."""

from __future__ import annotations

import numpy as np
import pytest

from roadrisk import boosting

from .test_boosting import GBDTS, _fit, fold_frames  # noqa: F401  (fold_frames is a fixture)


@pytest.mark.parametrize("model", GBDTS)
def test_no_early_stopping_runs_every_round_and_predicts_with_the_last(model, fold_frames):  # noqa: F811
    rounds = boosting.REGRESSORS[model].rounds_param
    val_pred, _, fitted = _fit(model, fold_frames, **{rounds: 80, "learning_rate": 0.3, "early_stopping_rounds": None})
    estimator = fitted.estimator_
    count = {"xgb": lambda: estimator.get_booster().num_boosted_rounds(),
             "lgbm": lambda: estimator.booster_.num_trees(),
             "catboost": lambda: estimator.tree_count_}[model]()
    assert count == 80
    x_val = fold_frames[2]
    np.testing.assert_allclose(val_pred, estimator.predict(x_val))
    if model == "catboost":  # the last round predicts: a model cut at its best round would differ
        best = estimator.get_best_iteration()
        assert best is not None and best + 1 < 80, "lr 0.3 on 600 rows peaks well before 80 rounds"
        cut = estimator.copy()
        cut.shrink(best + 1)
        assert not np.allclose(cut.predict(x_val), val_pred)
