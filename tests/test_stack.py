"""roadrisk ensemble --method stack and --average-seeds: the level-2 arithmetic on numbers, the command on
hand-made run folders over generated data, and one real stack of real training runs through the CLI."""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from roadrisk import data, records, schema
from roadrisk.compare import leaderboard
from roadrisk.compare.runs import read_run
from roadrisk.ensemble import STACK_MODEL_NAMES
from roadrisk.ensemble import stack as ST
from roadrisk.ensemble.members import EnsembleMember, Predictions
from roadrisk.ensemble.seeds import average_seeds, seed_groups, seedless_identity
from roadrisk.folds import fold_assignment, rmse
from roadrisk.generator import write_dataset

from .conftest import run_cli
from .test_ensemble import _ensemble, _only_run

FOLDS, CV_SEED = 3, 42
HAVE_XGBOOST = True
try:
    import xgboost  # noqa: F401
except ImportError:
    HAVE_XGBOOST = False
# xgb is exercised where xgboost is installed; the project adds it as a dependency.
LEVEL2 = [pytest.param(name, marks=pytest.mark.skipif(name == "xgb" and not HAVE_XGBOOST, reason="no xgboost"))
          for name in STACK_MODEL_NAMES]


# ---------------------------------------------------------------- numbers

def _raw(n: int, seed: int) -> pd.DataFrame:
    """Raw features with the loader's dtypes, drawn at random from the schema's domains."""
    rng = np.random.default_rng(seed)
    columns = {}
    for c in schema.FEATURE_COLUMNS:
        if c.kind == "category":
            columns[c.name] = pd.Categorical(rng.choice(c.values, n), dtype=schema.category_dtype(c))
        elif c.kind == "bool":
            columns[c.name] = rng.random(n) < 0.5
        elif c.values:
            columns[c.name] = rng.choice(c.values, n).astype("int64")
        elif c.kind == "int":
            columns[c.name] = rng.poisson(1.0, n).astype("int64")
        else:
            columns[c.name] = rng.uniform(c.low, c.high, n)
    return pd.DataFrame(columns)


def _members_missing_fog(n: int = 1500, seed: int = 1):
    """Two members that share a blind spot: fog adds 0.06 to the risk, and neither saw it.
    A blend of them cannot fix it; a level-2 model that sees the raw weather column can."""
    rng = np.random.default_rng(seed)
    X = _raw(n, seed)
    truth = rng.uniform(0.2, 0.7, n)
    y = np.clip(truth + 0.06 * (X["weather"] == "foggy").to_numpy() + rng.normal(0, 0.01, n), 0, 1)
    P = np.clip(np.column_stack([truth + rng.normal(0, 0.03, n), truth + rng.normal(0, 0.03, n)]), 0, 1)
    return P, X, y


class Memoriser:
    """A level-2 model that recalls every row it was fitted on exactly and knows nothing else: the worst
    case for an in-sample score (it would report 0), and what the nested score must not be fooled by."""

    def fit(self, D, y):
        self.seen = dict(zip(D["member_0"].to_numpy(), np.asarray(y, float)))
        self.mean = float(np.mean(y))
        return self

    def predict(self, D):
        return np.array([self.seen.get(v, self.mean) for v in D["member_0"].to_numpy()])


def test_the_nested_score_is_taken_on_rows_the_level2_model_never_saw():
    rng = np.random.default_rng(0)
    n = 1500
    X, y = _raw(n, 0), rng.uniform(0.2, 0.8, n)
    P = rng.uniform(0, 1, (n, 2))  # unique values: the memoriser's keys
    folds = fold_assignment(n, FOLDS, CV_SEED)
    D = ST.design(P, X)
    result = ST.nested_stack(Memoriser, D, y, folds, D.iloc[:10])
    # Held out, the memoriser only has the mean: the nested score is the spread of y, not 0.
    assert result.nested.rmse == pytest.approx(np.std(y), rel=0.05)
    assert len(result.nested.fold_rmse) == FOLDS and len(result.nested.predictions) == n
    # In-sample, K-1 of the K fold models recall each row: the optimistic score is far lower.
    assert result.in_sample_rmse < result.nested.rmse / 2
    assert [d["rows_held"] for d in result.fold_details] == [int((folds == k).sum()) for k in range(FOLDS)]


def test_the_test_prediction_is_the_mean_of_the_fold_models():
    class TrainMean:
        def fit(self, D, y):
            self.value = float(np.mean(y))
            return self

        def predict(self, D):
            return np.full(len(D), self.value)

    rng = np.random.default_rng(1)
    n = 900
    P, X, y = rng.uniform(0, 1, (n, 2)), _raw(n, 1), rng.uniform(0, 1, n)
    folds = fold_assignment(n, FOLDS, CV_SEED)
    D = ST.design(P, X)
    result = ST.nested_stack(TrainMean, D, y, folds, ST.design(P[:7], X.iloc[:7]))
    expected = np.mean([y[folds != k].mean() for k in range(FOLDS)])
    assert result.test_pred == pytest.approx(np.full(7, expected), abs=1e-12)
    for k in range(FOLDS):
        assert result.nested.predictions[folds == k] == pytest.approx(y[folds != k].mean(), abs=1e-12)


def test_stack_model_names_match_the_cli_list():
    from roadrisk.ensemble import METHOD_NAMES

    assert "stack" in METHOD_NAMES
    for name in STACK_MODEL_NAMES:
        if name != "xgb" or HAVE_XGBOOST:
            assert callable(ST.build_model(name).fit) and ST.settings(name)["model"] == name
    with pytest.raises(ValueError):
        ST.build_model("lasso")


def test_level2_threads_grow_with_rows_up_to_the_usable_cpus():
    assert ST.level2_threads(4_000, 16) == 1 and ST.level2_threads(517_754, 16) == 10
    assert ST.level2_threads(517_754, 2) == 2 and ST.level2_threads(10, 0) == 1


def test_the_design_puts_the_members_first_then_the_raw_features():
    P, X, _ = _members_missing_fog(50)
    D = ST.design(P, X)
    assert list(D.columns) == ["member_0", "member_1", *schema.FEATURE_NAMES]
    assert all(D[name].dtype == "int8" for name in schema.BOOL_NAMES)
    assert all(isinstance(D[name].dtype, pd.CategoricalDtype) for name in schema.CATEGORY_NAMES)
    assert D["member_1"].to_numpy() == pytest.approx(P[:, 1])
    with pytest.raises(ValueError):
        ST.design(P[:10], X)


@pytest.mark.parametrize("model", LEVEL2)
def test_each_level2_model_learns_what_the_members_missed_from_the_raw_features(model):
    from roadrisk.ensemble.methods import fitter, nested_score

    P, X, y = _members_missing_fog()
    folds = fold_assignment(len(y), FOLDS, CV_SEED)
    D = ST.design(P, X)
    result = ST.nested_stack(lambda: ST.build_model(model, threads=1), D, y, folds, D.iloc[:100])
    blend = nested_score(fitter("caruana"), P, y, folds)
    assert result.nested.rmse < 0.8 * blend.rmse  # fog is in the raw features, not in any member
    assert ((result.nested.predictions >= 0) & (result.nested.predictions <= 1)).all()
    assert ((result.test_pred >= 0) & (result.test_pred <= 1)).all()
    again = ST.nested_stack(lambda: ST.build_model(model, threads=1), D, y, folds, D.iloc[:100])
    assert np.array_equal(again.nested.predictions, result.nested.predictions)  # a fixed level-2 seed


def test_stack_predictions_are_clipped_to_the_unit_interval():
    class Overshoot:
        def fit(self, D, y):
            return self

        def predict(self, D):
            return np.where(D["member_0"].to_numpy() > 0.5, 1.7, -0.4)

    rng = np.random.default_rng(2)
    P, X, y = rng.uniform(0, 1, (300, 1)), _raw(300, 2), rng.uniform(0, 1, 300)
    D = ST.design(P, X)
    result = ST.nested_stack(Overshoot, D, y, fold_assignment(300, FOLDS, CV_SEED), D)
    assert set(np.unique(result.nested.predictions)) <= {0.0, 1.0} and set(np.unique(result.test_pred)) <= {0.0, 1.0}


# ---------------------------------------------------------------- seeds of one member

def _record(seed: int, **config) -> dict:
    return {"run_id": f"20260101T00000{seed}Z-s{seed}", "kind": "train", "status": "complete",
            "data": {"fingerprint": config.pop("fingerprint", "f00d")},
            "device": {"selected": config.pop("selected", "cpu")},
            "config": {"model": "hgb", "recipe": "fast", "profile": "smoke", "params": {"max_leaf_nodes": 7},
                       "folds": FOLDS, "cv_seed": CV_SEED, "device": "cpu", "seed": seed, "threads": 2,
                       "executor": {"engine": "inline"}, "estimator_params": {"random_state": seed, "max_iter": 200},
                       **config},
            "timings": {"total_s": 10.0 * seed}}


def test_runs_that_differ_only_in_seed_and_scheduling_share_an_identity():
    base = seedless_identity(_record(1))
    assert seedless_identity(_record(2, threads=1, jobs=4, executor={"engine": "ray"})) == base
    for changed in ({"params": {"max_leaf_nodes": 15}}, {"model": "tabm"}, {"recipe": "reference"}, {"cv_seed": 7},
                    {"folds": 5}, {"profile": "quick"}, {"device": "cuda"}, {"fingerprint": "beef"},
                    {"target": "residual"}, {"cv": "stratified"}):  # the run plan's SAME_RUN keys, the seed aside
        assert seedless_identity(_record(2, **changed)) != base, changed


def _member(seed: int, oof: np.ndarray, ids=None, **config) -> EnsembleMember:
    ids = np.arange(len(oof)) if ids is None else ids
    record = _record(seed, **config)
    return EnsembleMember(Path(f"/runs/{record['run_id']}"), record, Predictions(ids, oof), Predictions(ids + 100, oof / 2))


def test_average_seeds_averages_each_group_by_id_and_lists_its_runs():
    rng = np.random.default_rng(0)
    a, b, c, other = (rng.uniform(0, 1, 20) for _ in range(4))
    shuffled = rng.permutation(20)
    members = [_member(1, a), _member(2, b[shuffled], ids=shuffled), _member(3, c),
               _member(4, other, params={"max_leaf_nodes": 31})]
    averaged, groups = average_seeds(members[::-1])  # any order in: the same out
    assert [m.run_id for m in averaged] == [f"{members[0].run_id}-avg3", members[3].run_id]
    mean = averaged[0]
    assert mean.oof.aligned_to(np.arange(20)) == pytest.approx((a + b + c) / 3)
    assert mean.submission.aligned_to(np.arange(100, 120)) == pytest.approx((a + b + c) / 6)
    assert mean.field("config", "seed") == [1, 2, 3] and mean.field("timings", "total_s") == 60.0
    assert averaged[1] is members[3]  # a member with no other seed is left as it is
    assert groups == [{"run_id": mean.run_id, "model": "hgb", "seeds": [1, 2, 3],
                       "runs": [{"run_id": m.run_id, "path": str(m.path), "seed": s}
                                for m, s in zip(members[:3], (1, 2, 3))]}]
    assert members[0].field("config", "seed") == 1  # the members' own records are untouched


def test_average_seeds_leaves_distinct_models_alone():
    members = [_member(1, np.zeros(5)), _member(1, np.ones(5), model="tabm"), _member(1, np.ones(5), recipe="reference")]
    members[1].record["run_id"] += "b"
    members[2].record["run_id"] += "c"
    assert [len(g) for g in seed_groups(members)] == [1, 1, 1]
    averaged, groups = average_seeds(members)
    assert groups == [] and [m.run_id for m in averaged] == sorted(m.run_id for m in members)


# ---------------------------------------------------------------- the command on hand-made run folders

@pytest.fixture
def stackable(tmp_path):
    """Generated data, and three members over it: two seeds of one hgb (b = a + noise) and one other model."""
    data_dir = tmp_path / "data"
    write_dataset(data_dir, 900, 150, 0, seed=5)
    dataset = data.load(data_dir)
    y = dataset.train[schema.TARGET].to_numpy()
    rng = np.random.default_rng(3)
    base = y + rng.normal(0, 0.03, len(y))
    runs = []
    for name, seed, params, noise in (("a", 1, {"max_leaf_nodes": 7}, 0.0), ("b", 2, {"max_leaf_nodes": 7}, 0.01),
                                      ("c", 1, {"max_leaf_nodes": 15}, 0.02)):
        record = _record(seed, params=params)
        record.update(run_id=f"20260101T00000{len(runs)}Z-{name}", label=name, schema_version=records.SCHEMA_VERSION,
                      data=dataset.summary(), metrics={"oof_rmse": 0.05, "floor_rmse": None})
        run_dir = tmp_path / "members" / name / record["run_id"]
        run_dir.mkdir(parents=True)
        (run_dir / "run.json").write_text(json.dumps(record))
        oof = np.clip(base + rng.normal(0, noise, len(y)), 0, 1)
        pd.DataFrame({"id": dataset.train[schema.ID], "accident_risk": oof}).to_csv(run_dir / "oof.csv", index=False)
        sub = np.clip(rng.uniform(0.2, 0.6, len(dataset.test)), 0, 1)
        pd.DataFrame({"id": dataset.test[schema.ID], "accident_risk": sub}).to_csv(run_dir / "submission.csv",
                                                                                   index=False)
        runs.append(run_dir)
    return {"root": tmp_path, "members": runs, "data_dir": data_dir, "y": y, "test_ids": dataset.test[schema.ID]}


@pytest.mark.parametrize("model", LEVEL2)
def test_stack_writes_an_ensemble_run_with_its_nested_predictions(stackable, capsys, model):
    runs = stackable["root"] / "runs"
    code, out, err = _ensemble(capsys, runs, *stackable["members"], "--method", "stack", "--stack-model", model)
    assert code == 0, err
    run_dir = _only_run(runs)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["kind"] == "ensemble" and record["status"] == "complete" and record["method"] == "stack"
    assert record["config"]["stack_model"] == model and record["config"]["method"] == "stack"
    assert record["config"]["folds"] == FOLDS and record["config"]["cv_seed"] == CV_SEED
    assert record["weights"] is None and record["intercept"] is None
    assert all(m["weight"] is None for m in record["members"]) and len(record["members"]) == 3
    block = record["stack"]
    assert block["model"] == model and block["inputs"]["raw_features"] == list(schema.FEATURE_NAMES)
    assert block["inputs"]["members"] == [m["run_id"] for m in record["members"]]
    assert len(block["folds"]) == FOLDS and block["test_prediction"] == f"mean of the {FOLDS} fold models"
    if model == "ridge":
        assert all(d["alpha"] in ST.RIDGE_ALPHAS for d in block["folds"])
    metrics = record["metrics"]
    oof = pd.read_csv(run_dir / "oof.csv")
    assert oof["accident_risk"].between(0, 1).all() and len(oof) == len(stackable["y"])
    # oof.csv holds the held-out predictions: its score is the nested one, not an in-sample one.
    assert rmse(stackable["y"], oof["accident_risk"].to_numpy()) == pytest.approx(metrics["nested_oof_rmse"], abs=1e-6)
    assert metrics["oof_rmse"] == metrics["nested_oof_rmse"] and metrics["nested_rows"] == len(stackable["y"])
    assert math.isfinite(block["in_sample_rmse"])
    submission = pd.read_csv(run_dir / "submission.csv")
    assert submission["id"].tolist() == stackable["test_ids"].tolist()
    assert submission["accident_risk"].between(0, 1).all()
    log = out.splitlines()
    assert f"stack_model: {model}" in log and "weights: none" in log and log[-1] == f"run_dir: {run_dir}"
    assert (run_dir / "train.log").read_text().splitlines() == log

    # The leaderboard ranks it among the other blends by its nested score.
    assert _ensemble(capsys, runs, *stackable["members"], "--label", "caruana")[0] == 0
    board = leaderboard.rank([read_run(d)[0] for d in (run_dir, _only_run(runs, "caruana"))])
    row = next(r for r in board if r["run_id"] == run_dir.name)
    assert row["score"] == metrics["nested_oof_rmse"] and row["score_kind"] == "nested_oof_rmse"
    assert row["model"] == "ensemble(stack, 3 members)"
    assert [r["score"] for r in board] == sorted(r["score"] for r in board)


def test_average_seeds_through_the_command(stackable, capsys):
    runs = stackable["root"] / "runs"
    a, b, c = stackable["members"]
    code, out, err = _ensemble(capsys, runs, c, b, a, "--average-seeds", "--method", "stack", "--stack-model", "ridge")
    assert code == 0, err
    record = json.loads((_only_run(runs) / "run.json").read_text())
    (group,) = record["averaged_seeds"]
    assert [r["path"] for r in group["runs"]] == [str(a), str(b)] and group["seeds"] == [1, 2]
    assert [m["run_id"] for m in record["members"]] == [group["run_id"], c.name]
    assert record["members"][0]["seed"] == [1, 2] and record["config"]["average_seeds"] is True
    assert "note: averaged seeds:" in err and record["notes"] == [err.strip()]
    # Only seeds of one model: one member is left, and blending it is refused by nothing.
    code, _, err = _ensemble(capsys, runs, a, b, "--average-seeds", "--label", "seeds-only")
    assert code == 0, err
    record = json.loads((_only_run(runs, "seeds-only") / "run.json").read_text())
    assert len(record["members"]) == 1 and list(record["weights"].values()) == [1.0]


def _refused(capsys, runs_dir: Path, *args) -> str:
    code, out, err = _ensemble(capsys, runs_dir, *args)
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    assert not (runs_dir / "ensemble").exists()
    return err.strip()


def test_stack_flags_are_refused_where_they_mean_nothing(stackable, capsys):
    runs, members = stackable["root"] / "runs", stackable["members"]
    assert "--stack-model" in _refused(capsys, runs, *members, "--stack-model", "hgb")
    assert "--steps" in _refused(capsys, runs, *members, "--method", "stack", "--steps", "5")
    assert "--allow-negative" in _refused(capsys, runs, *members, "--method", "stack", "--allow-negative")


def test_stack_model_xgb_without_xgboost_is_one_line(stackable, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "xgboost", None)  # what an environment without xgboost has: import fails
    message = _refused(capsys, stackable["root"] / "runs", *stackable["members"], "--method", "stack",
                       "--stack-model", "xgb")
    assert "xgboost is not installed" in message and "--stack-model hgb" in message


def test_stack_refuses_data_whose_test_file_changed(stackable, capsys):
    test_file = stackable["data_dir"] / "test.csv"
    test_file.write_text(test_file.read_text().replace("rural", "urban", 1))
    message = _refused(capsys, stackable["root"] / "runs", *stackable["members"], "--method", "stack")
    assert "fingerprint" in message and "--data-dir" in message and str(stackable["data_dir"]) in message


# ---------------------------------------------------------------- real runs, real CLI

@pytest.mark.slow  # three CLI trainings, a stack and compare (~60 s here)
@pytest.mark.e2e
def test_real_runs_stack_and_rank_through_the_cli(tmp_path):
    """Three smoke hgb runs (two seeds of one, one other), stacked with seeds averaged, then ranked by compare."""
    runs = tmp_path / "runs"
    for label, seed, extra in (("s1", 1, []), ("s2", 2, []), ("l15", 1, ["--param", "max_leaf_nodes=15"])):
        result = run_cli("train", "--profile", "smoke", "--model", "hgb", "--device", "cpu", "--seed", str(seed),
                         "--runs-dir", str(runs), "--label", label, *extra)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    result = run_cli("ensemble", "--sweep", str(runs), "--method", "stack", "--average-seeds", "--runs-dir", str(runs),
                     "--label", "stack")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    run_dir = _only_run(runs, "stack")
    record = json.loads((run_dir / "run.json").read_text())
    assert record["method"] == "stack" and record["config"]["stack_model"] == "ridge"  # the default
    (group,) = record["averaged_seeds"]
    assert sorted(r["seed"] for r in group["runs"]) == [1, 2] and len(record["members"]) == 2
    train = pd.read_csv(Path(record["data"]["path"]) / "train.csv")
    oof = pd.read_csv(run_dir / "oof.csv")
    assert oof["id"].tolist() == train["id"].tolist() and oof["accident_risk"].between(0, 1).all()
    assert rmse(train["accident_risk"], oof["accident_risk"]) == pytest.approx(record["metrics"]["nested_oof_rmse"],
                                                                               abs=1e-6)
    assert pd.read_csv(run_dir / "submission.csv")["accident_risk"].between(0, 1).all()
    sha = hashlib.sha256((Path(record["data"]["path"]) / "train.csv").read_bytes()).hexdigest()
    assert record["data"]["files"]["train.csv"]["sha256"] == sha

    reports = tmp_path / "reports"
    result = run_cli("compare", "--runs-dir", str(runs), "--out", str(reports))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    board = {r["name"]: r for r in json.loads((reports / "compare.json").read_text())["leaderboard"]}
    assert board["stack"]["score"] == record["metrics"]["nested_oof_rmse"]
    assert board["stack"]["model"] == "ensemble(stack, 2 members)"
    assert set(board) == {"s1", "s2", "l15", "stack"} and all(r["comparable"] for r in board.values())
