"""roadrisk ensemble: the methods on numbers, the command on hand-made run folders, and one real blend of
real training runs through the CLI."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from roadrisk import records
from roadrisk.cli import main
from roadrisk.ensemble import BLEND_METHOD_NAMES as METHOD_NAMES  # stack: tests/test_stack.py
from roadrisk.ensemble import methods as M
from roadrisk.folds import fold_assignment, rmse

from .conftest import run_cli

N_ROWS, N_TEST, FOLDS, CV_SEED = 3000, 400, 3, 42


# ---------------------------------------------------------------- numbers

def _known_blend(seed: int = 1, n: int = N_ROWS):
    """y = 0.7a + 0.3b (+ a little noise): a and b are noisy predictors with independent noise; c is worse."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.2, 0.8, n)
    a, b = truth + rng.normal(0, 0.05, n), truth + rng.normal(0, 0.05, n)
    c = truth + rng.normal(0, 0.08, n)
    y = np.clip(0.7 * a + 0.3 * b + rng.normal(0, 0.01, n), 0, 1)
    return np.clip(np.column_stack([a, b, c]), 0, 1), y


def _noisy_members(seed: int, n: int = 2000, m: int = 6):
    """Members sharing part of their error, of different quality: what seeds and models of one task look like."""
    rng = np.random.default_rng(seed)
    y = rng.uniform(0, 1, n)
    shared = rng.normal(0, 0.05, n)
    P = np.column_stack([y + shared * rng.uniform(0.5, 1.5) + rng.normal(0, rng.uniform(0.02, 0.08), n)
                         for _ in range(m)])
    return np.clip(P, 0, 1), y


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_weights_recover_a_known_blend(method):
    P, y = _known_blend()
    blend = M.fitter(method)(P, y)
    assert blend.weights == pytest.approx([0.7, 0.3, 0.0], abs=0.03)
    assert abs(blend.intercept) < 0.01
    assert (blend.weights >= 0).all()


def test_method_names_match_the_cli_list():
    for name in METHOD_NAMES:
        assert callable(M.fitter(name))


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_weights_are_identical_across_runs_and_follow_the_members(method):
    P, y = _noisy_members(3)
    fit = M.fitter(method)
    first, again = fit(P, y), fit(P, y)
    assert np.array_equal(first.weights, again.weights) and first.intercept == again.intercept
    order = np.array([4, 2, 0, 5, 1, 3])
    permuted = fit(P[:, order], y)
    if method == "ridge":  # an iterative solver: the same optimum, to its tolerance
        assert permuted.weights == pytest.approx(first.weights[order], abs=1e-6)
    else:
        assert np.array_equal(permuted.weights, first.weights[order])


@pytest.mark.parametrize("method", ["caruana", "hill"])
def test_caruana_and_hill_weights_are_non_negative_and_sum_to_one(method):
    P, y = _noisy_members(5)
    blend = M.fitter(method)(P, y)
    assert (blend.weights >= 0).all() and blend.weights.sum() == pytest.approx(1.0) and blend.intercept == 0.0


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("method,options", [("caruana", {}), ("caruana", {"steps": 3}), ("hill", {}),
                                            ("hill", {"allow_negative": True})])
def test_ensemble_is_never_worse_than_its_best_member(method, options, seed):
    P, y = _noisy_members(seed)
    blend = M.fitter(method, **options)(P, y)
    best_member = min(rmse(y, P[:, j]) for j in range(P.shape[1]))
    assert rmse(y, blend.predict(P)) <= best_member + 1e-12


def test_caruana_gives_a_tie_to_the_lowest_index():
    P, y = _known_blend()
    duplicated = np.column_stack([P[:, 0], P[:, 0], P[:, 1]])
    weights = M.caruana(duplicated, y).weights
    assert weights[1] == 0.0 and weights[0] > 0.6


def test_caruana_initialised_with_the_best_members_keeps_them():
    P, y = _noisy_members(2)
    order = np.argsort([rmse(y, P[:, j]) for j in range(P.shape[1])])
    weights = M.caruana(P, y, steps=50, init_best=3).weights
    assert (weights[order[:3]] > 0).all()


def test_hill_goes_negative_only_when_allowed():
    # a and b carry the same error at different strengths: 2a - b cancels it, which needs a negative weight.
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.3, 0.7, N_ROWS)
    error = rng.normal(0, 0.05, N_ROWS)
    P = np.column_stack([truth + error, truth + 2 * error + rng.normal(0, 0.005, N_ROWS)])
    y = truth
    plain = M.hill(P, y)
    negative = M.hill(P, y, allow_negative=True)
    assert (plain.weights >= 0).all()
    assert negative.weights.min() < 0 and negative.weights.sum() == pytest.approx(1.0)
    assert rmse(y, negative.predict(P)) < rmse(y, plain.predict(P)) * 0.5


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_nested_score_covers_every_row_with_held_out_weights(method):
    P, y = _noisy_members(4, n=N_ROWS)
    folds = fold_assignment(len(y), FOLDS, CV_SEED)
    fit = M.fitter(method)
    nested = M.nested_score(fit, P, y, folds)
    in_sample = rmse(y, fit(P, y).predict(P))
    assert math.isfinite(nested.rmse) and len(nested.predictions) == len(y) and len(nested.fold_rmse) == FOLDS
    assert ((nested.predictions >= 0) & (nested.predictions <= 1)).all()
    # Usually a little above the in-sample score (the weights never saw the row they predict);
    # not asserted strictly, as a held-out fold can be kind by chance.
    assert nested.rmse == pytest.approx(in_sample, rel=0.05)


# ---------------------------------------------------------------- hand-made run folders

def _write_predictions(path: Path, ids, values) -> None:
    pd.DataFrame({"id": ids, "accident_risk": values}).to_csv(path, index=False)


def _dataset(root: Path, y: np.ndarray) -> tuple[Path, str]:
    data_dir = root / "data"
    data_dir.mkdir(parents=True)
    _write_predictions(data_dir / "train.csv", np.arange(len(y)), y)  # only the columns the blend reads
    return data_dir, hashlib.sha256((data_dir / "train.csv").read_bytes()).hexdigest()


def _member(root: Path, name: str, oof: np.ndarray, submission: np.ndarray, data_dir: Path, sha: str, *,
            run_id: str | None = None, fingerprint: str = "f00d", folds: int = FOLDS, cv_seed: int | None = CV_SEED,
            seed: int = 1, status: str = "complete", oof_ids=None, submission_ids=None, total_s: float = 10.0,
            kind: str = "train") -> Path:
    run_dir = root / name / (run_id or f"20260101T000000Z-{name}")  # run ids sort as the names do
    run_dir.mkdir(parents=True)
    config = {"profile": "smoke", "model": "hgb", "folds": folds, "seed": seed}
    if cv_seed is not None:  # records before schema 2 have no cv_seed: the folds used config.seed
        config.update(cv_seed=cv_seed, cv="kfold", cv_bins=None, target="raw")  # as the run plan writes them
    record = {"schema_version": 1 if cv_seed is None else records.SCHEMA_VERSION, "kind": kind,
              "run_id": run_dir.name, "label": name, "status": status,
              "data": {"source": "directory", "path": str(data_dir), "fingerprint": fingerprint,
                       "files": {"train.csv": {"bytes": 1, "sha256": sha}}},
              "config": config, "timings": {"total_s": total_s},
              "metrics": {"oof_rmse": 0.05, "floor_rmse": 0.04, "gap_to_floor_pct": 25.0}}
    (run_dir / "run.json").write_text(json.dumps(record))
    _write_predictions(run_dir / "oof.csv", np.arange(len(oof)) if oof_ids is None else oof_ids, oof)
    ids = np.arange(N_ROWS, N_ROWS + len(submission)) if submission_ids is None else submission_ids
    _write_predictions(run_dir / "submission.csv", ids, submission)
    return run_dir


@pytest.fixture
def blendable(tmp_path):
    """Three comparable members (a, b, c of the known blend) and their data, under tmp_path/members."""
    P, y = _known_blend()
    data_dir, sha = _dataset(tmp_path, y)
    rng = np.random.default_rng(9)
    subs = np.clip(rng.uniform(0.2, 0.8, (N_TEST, 3)) + [0.0, 0.02, -0.03], 0, 1)
    members = [_member(tmp_path / "members", name, P[:, j], subs[:, j], data_dir, sha, seed=j)
               for j, name in enumerate(("a", "b", "c"))]
    return {"root": tmp_path, "members": members, "data_dir": data_dir, "sha": sha, "P": P, "y": y, "subs": subs}


def _ensemble(capsys, runs_dir: Path, *args) -> tuple[int, str, str]:
    try:
        code = main(["ensemble", *map(str, args), "--runs-dir", str(runs_dir)])
    except SystemExit as exc:  # argparse's own refusals (an unknown --method)
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def _only_run(runs_dir: Path, label: str = "ensemble") -> Path:
    (run_dir,) = list((runs_dir / label).iterdir())
    return run_dir


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_writes_an_ensemble_run_like_any_other(blendable, capsys, method):
    runs = blendable["root"] / "runs"
    code, out, err = _ensemble(capsys, runs, *blendable["members"], "--method", method)
    assert code == 0, err
    run_dir = _only_run(runs)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["kind"] == "ensemble" and record["schema_version"] == records.SCHEMA_VERSION
    assert record["status"] == "complete" and record["run_id"] == run_dir.name and record["label"] == "ensemble"
    assert record["method"] == method and record["config"]["method"] == method
    assert record["config"]["folds"] == FOLDS and record["config"]["cv_seed"] == CV_SEED
    assert [m["path"] for m in record["members"]] == [str(p) for p in blendable["members"]]
    assert [m["seed"] for m in record["members"]] == [0, 1, 2] and {m["model"] for m in record["members"]} == {"hgb"}
    assert list(record["weights"]) == [m["run_id"] for m in record["members"]]
    assert [m["weight"] for m in record["members"]] == list(record["weights"].values())
    assert list(record["weights"].values()) == pytest.approx([0.7, 0.3, 0.0], abs=0.03)
    assert isinstance(record["intercept"], float)
    P, y = blendable["P"], blendable["y"]
    metrics = record["metrics"]
    assert metrics["member_oof_rmse"] == {m["run_id"]: m["oof_rmse"] for m in record["members"]}
    assert [m["oof_rmse"] for m in record["members"]] == [round(rmse(y, P[:, j]), 6) for j in range(3)]
    assert metrics["oof_rmse"] < metrics["best_member_oof_rmse"]
    assert math.isfinite(metrics["nested_oof_rmse"]) and metrics["nested_rows"] == N_ROWS
    assert len(metrics["nested_fold_rmse"]) == FOLDS
    assert metrics["floor_rmse"] == 0.04
    assert metrics["gap_to_floor_pct"] == pytest.approx(100 * (metrics["oof_rmse"] - 0.04) / 0.04, abs=1e-3)
    assert record["data"]["fingerprint"] == "f00d" and record["data"]["path"] == str(blendable["data_dir"])
    assert record["timings"]["compute_s"] == 30.0 and record["timings"]["total_s"] >= 0

    oof = pd.read_csv(run_dir / "oof.csv")
    assert list(oof.columns) == ["id", "accident_risk"] and oof["id"].tolist() == list(range(N_ROWS))
    assert oof["accident_risk"].between(0, 1).all()
    assert rmse(y, oof["accident_risk"].to_numpy()) == pytest.approx(metrics["oof_rmse"], abs=1e-6)
    submission = pd.read_csv(run_dir / "submission.csv")
    assert list(submission.columns) == ["id", "accident_risk"]
    assert submission["id"].tolist() == list(range(N_ROWS, N_ROWS + N_TEST))
    assert submission["accident_risk"].between(0, 1).all()
    weights = np.array(list(record["weights"].values()))
    expected = np.clip(blendable["subs"] @ weights + record["intercept"], 0, 1)
    assert submission["accident_risk"].to_numpy() == pytest.approx(expected, abs=1e-12)

    log = (run_dir / "train.log").read_text().splitlines()
    for key in ("method", "members", "weights", "oof_rmse", "nested_oof_rmse", "run_dir"):
        assert any(line.startswith(f"{key}: ") for line in log), key
    assert f"run_dir: {run_dir}" in log and f"method: {method}" in log
    assert out.splitlines() == log
    assert not any(p.name.endswith(".tmp") for p in run_dir.iterdir())


def test_same_record_whatever_the_member_order(blendable, capsys):
    outputs = []
    for order, label in (((0, 1, 2), "first"), ((2, 0, 1), "second"), ((0, 1, 2), "third")):
        members = [blendable["members"][i] for i in order]
        code, _, err = _ensemble(capsys, blendable["root"] / "runs", *members, "--label", label)
        assert code == 0, err
        run_dir = _only_run(blendable["root"] / "runs", label)
        record = json.loads((run_dir / "run.json").read_text())
        outputs.append((record["weights"], record["members"], record["metrics"]["nested_oof_rmse"],
                        (run_dir / "oof.csv").read_bytes(), (run_dir / "submission.csv").read_bytes()))
    assert outputs[0] == outputs[1] == outputs[2]


def test_members_rows_are_matched_by_id_not_by_position(blendable, capsys, tmp_path):
    P, subs = blendable["P"], blendable["subs"]
    shuffled = np.random.default_rng(0).permutation(N_ROWS)
    test_ids = np.arange(N_ROWS, N_ROWS + N_TEST)
    reordered = _member(tmp_path / "reordered", "b", P[shuffled, 1], subs[::-1, 1], blendable["data_dir"],
                        blendable["sha"], oof_ids=shuffled, submission_ids=test_ids[::-1])
    for members, label in (([blendable["members"][0], blendable["members"][1]], "plain"),
                           ([blendable["members"][0], reordered], "reordered")):
        assert _ensemble(capsys, tmp_path / "runs", *members, "--label", label)[0] == 0
    plain, shuffled_run = (_only_run(tmp_path / "runs", label) for label in ("plain", "reordered"))
    for name in ("oof.csv", "submission.csv"):
        assert (plain / name).read_bytes() == (shuffled_run / name).read_bytes()


def _refused(capsys, runs_dir: Path, *args) -> str:
    code, out, err = _ensemble(capsys, runs_dir, *args)
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    assert not (runs_dir / "ensemble").exists()  # nothing half-written
    return err.strip()


@pytest.mark.parametrize("field,overrides", [
    ("data.fingerprint", {"fingerprint": "beef"}),
    ("config.folds", {"folds": 5}),
    ("config.cv_seed", {"cv_seed": 7}),
    ("oof.csv ids", {"oof_ids": np.arange(1, N_ROWS + 1)}),
    ("submission.csv ids", {"submission_ids": np.arange(N_ROWS + 1, N_ROWS + N_TEST + 1)}),
])
def test_members_that_are_not_comparable_are_refused_by_name_and_field(blendable, capsys, field, overrides):
    odd = _member(blendable["root"] / "odd", "odd", blendable["P"][:, 2], blendable["subs"][:, 2],
                  blendable["data_dir"], blendable["sha"], **overrides)
    message = _refused(capsys, blendable["root"] / "runs", *blendable["members"][:2], odd)
    assert str(odd) in message and field in message


def test_an_older_record_uses_its_seed_as_the_fold_seed(blendable, capsys):
    runs = blendable["root"] / "runs"
    args = (blendable["P"][:, 2], blendable["subs"][:, 2], blendable["data_dir"], blendable["sha"])
    same_folds = _member(blendable["root"] / "old", "same", *args, cv_seed=None, seed=CV_SEED)
    code, _, err = _ensemble(capsys, runs, *blendable["members"][:2], same_folds)
    assert code == 0, err
    other_folds = _member(blendable["root"] / "old", "other", *args, cv_seed=None, seed=7)
    code, _, err = _ensemble(capsys, runs, *blendable["members"][:2], other_folds)
    assert code == 2 and str(other_folds) in err and "config.cv_seed 7" in err


def test_bad_member_lists_are_refused(blendable, capsys):
    root, (a, b, _) = blendable["root"], blendable["members"]
    runs = root / "runs"
    assert "at least 2" in _refused(capsys, runs, a)
    message = _refused(capsys, runs, a, b, Path(str(a) + "/"))
    assert "listed twice" in message and str(a) in message
    failed = _member(root / "more", "failed", blendable["P"][:, 2], blendable["subs"][:, 2], blendable["data_dir"],
                     blendable["sha"], status="interrupted")
    message = _refused(capsys, runs, a, failed)
    assert str(failed) in message and "status interrupted" in message
    nested = _member(root / "more", "ens", blendable["P"][:, 2], blendable["subs"][:, 2], blendable["data_dir"],
                     blendable["sha"], kind="ensemble")
    assert "kind ensemble" in _refused(capsys, runs, a, nested)
    assert "no run.json" in _refused(capsys, runs, a, root / "data")


def test_bad_flags_are_refused(blendable, capsys):
    runs, members = blendable["root"] / "runs", blendable["members"]
    assert "--allow-negative" in _refused(capsys, runs, *members, "--allow-negative")
    assert "--allow-negative" in _refused(capsys, runs, *members, "--method", "ridge", "--allow-negative")
    assert "--steps" in _refused(capsys, runs, *members, "--method", "ridge", "--steps", "5")
    assert "not both" in _refused(capsys, runs, *members, "--sweep", blendable["root"] / "members")
    assert "no members" in _refused(capsys, runs)
    assert "--label" in _refused(capsys, runs, *members, "--label", "no/slash")
    assert "--method" in _refused(capsys, runs, *members, "--method", "stacking")


def test_hill_with_negative_weights_runs_through_the_command(blendable, capsys):
    code, _, err = _ensemble(capsys, blendable["root"] / "runs", *blendable["members"], "--method", "hill",
                             "--allow-negative", "--steps", "20")
    record = json.loads((_only_run(blendable["root"] / "runs") / "run.json").read_text())
    assert code == 0, err
    assert record["config"]["allow_negative"] is True and record["config"]["steps"] == 20
    assert sum(record["weights"].values()) == pytest.approx(1.0)


def test_sweep_takes_every_complete_run_at_any_depth(blendable, capsys):
    root = blendable["root"]
    sweep = root / "members"  # a/<id>, b/<id>, c/<id>
    deeper = _member(sweep / "grid" / "lr-0.1", "d", blendable["P"][:, 1], blendable["subs"][:, 1],
                     blendable["data_dir"], blendable["sha"])
    failed = _member(sweep, "e", blendable["P"][:, 2], blendable["subs"][:, 2], blendable["data_dir"],
                     blendable["sha"], status="failed")
    code, out, err = _ensemble(capsys, root / "runs", "--sweep", sweep)
    assert code == 0, err
    assert err.strip() == f"note: {failed}: status failed; skipped"
    record = json.loads((_only_run(root / "runs") / "run.json").read_text())
    assert sorted(m["path"] for m in record["members"]) == sorted(map(str, [*blendable["members"], deeper]))
    assert "members: 4" in out.splitlines()
    assert "note: " in (_only_run(root / "runs") / "train.log").read_text()
    assert "no such folder" in _refused(capsys, root / "runs2", "--sweep", root / "nowhere")


def test_the_target_comes_from_data_dir_when_the_recorded_path_is_gone(blendable, capsys):
    root = blendable["root"]
    moved = root / "moved"
    blendable["data_dir"].rename(moved)
    message = _refused(capsys, root / "runs", *blendable["members"])
    assert "--data-dir" in message and "not on this machine" in message
    code, _, err = _ensemble(capsys, root / "runs", *blendable["members"], "--data-dir", moved)
    assert code == 0, err
    other, _ = _dataset(root / "other", np.full(N_ROWS, 0.5))
    assert "sha256" in _refused(capsys, root / "runs2", *blendable["members"], "--data-dir", other)


def test_generated_data_trained_elsewhere_is_regenerated_to_find_the_target(tmp_path, capsys):
    # As a run trained in a container records: a data.path that exists only inside it, and the generator marker.
    from roadrisk.generator import write_dataset

    source = tmp_path / "inside-the-container"
    marker = write_dataset(source, 600, 100, 0, seed=11)
    train = pd.read_csv(source / "train.csv")
    sha = hashlib.sha256((source / "train.csv").read_bytes()).hexdigest()
    y = train["accident_risk"].to_numpy()
    rng = np.random.default_rng(0)
    members = []
    for name in ("a", "b"):
        run_dir = _member(tmp_path / "members", name, np.clip(y + rng.normal(0, 0.05, len(y)), 0, 1),
                          np.full(100, 0.4), source, sha, submission_ids=np.arange(600, 700))
        record = json.loads((run_dir / "run.json").read_text())
        record["data"]["generator"] = marker
        (run_dir / "run.json").write_text(json.dumps(record))
        members.append(run_dir)
    for path in source.iterdir():
        path.unlink()
    source.rmdir()
    code, _, err = _ensemble(capsys, tmp_path / "runs", *members)
    assert code == 0, err
    record = json.loads((_only_run(tmp_path / "runs") / "run.json").read_text())
    assert record["metrics"]["nested_rows"] == 600


# ---------------------------------------------------------------- real runs, real CLI

@pytest.mark.slow  # three CLI trainings and two blends (~35 s here)
@pytest.mark.e2e
def test_real_training_runs_blend_through_the_cli(tmp_path):
    """Three quick hgb members (differing in their parameters; same data and folds), blended by the real CLI."""
    runs = tmp_path / "runs"
    variants = ([], ["--param", "learning_rate=0.1"], ["--param", "max_leaf_nodes=15"])
    for index, extra in enumerate(variants):
        result = run_cli("train", "--profile", "smoke", "--model", "hgb", "--device", "cpu", "--seed", "7",
                         "--runs-dir", str(runs), "--label", f"member-{index}", *extra)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    member_dirs = sorted(p for p in runs.glob("member-*/*") if p.is_dir())
    assert len(member_dirs) == 3

    out = tmp_path / "out"
    result = run_cli("ensemble", *map(str, member_dirs), "--runs-dir", str(out))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    run_dir = _only_run(out)
    record = json.loads((run_dir / "run.json").read_text())
    first = json.loads((member_dirs[0] / "run.json").read_text())
    assert record["kind"] == "ensemble" and record["method"] == "caruana" and record["status"] == "complete"
    assert record["data"] == first["data"] and record["config"]["folds"] == first["config"]["folds"]
    metrics = record["metrics"]
    assert metrics["oof_rmse"] <= min(m["metrics"]["oof_rmse"] for m in
                                      (json.loads((d / "run.json").read_text()) for d in member_dirs)) + 1e-6
    assert math.isfinite(metrics["nested_oof_rmse"]) and metrics["floor_rmse"] == first["metrics"]["floor_rmse"]
    assert sum(record["weights"].values()) == pytest.approx(1.0)
    assert result.stdout.splitlines()[-1] == f"run_dir: {run_dir}"
    oof, train_oof = pd.read_csv(run_dir / "oof.csv"), pd.read_csv(member_dirs[0] / "oof.csv")
    assert oof["id"].tolist() == train_oof["id"].tolist()
    submission = pd.read_csv(run_dir / "submission.csv")
    assert submission["id"].tolist() == pd.read_csv(member_dirs[0] / "submission.csv")["id"].tolist()
    assert submission["accident_risk"].between(0, 1).all()

    # The same members again, in another order and through --sweep: the same weights.
    result = run_cli("ensemble", "--sweep", str(runs), "--runs-dir", str(out), "--label", "again")
    assert result.returncode == 0, result.stderr[-2000:]
    again = json.loads((_only_run(out, "again") / "run.json").read_text())
    assert again["weights"] == record["weights"]
