"""roadrisk compare with ensembles beside training runs: the leaderboard, its picture, sweep folders."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from roadrisk.compare.command import run_compare
from roadrisk.compare.plot import render_leaderboard_png

from .conftest import run_cli
from .test_compare import _record, _write

PNG = b"\x89PNG\r\n\x1a\n"


def _ensemble_record(runs: Path, label: str, run_id: str, member_dirs: list[Path], *, oof: float, nested: float,
                     method: str = "caruana", total_s: float = 0.4) -> dict:
    """An ensemble's run.json exactly as ``roadrisk ensemble`` writes it (its own build_record), from made-up scores."""
    from roadrisk.ensemble.members import EnsembleMember, Predictions
    from roadrisk.ensemble.methods import Blend, NestedScore
    from roadrisk.ensemble.output import Outcome, build_record

    ids, values = np.arange(3), np.array([0.1, 0.2, 0.3])
    members = [EnsembleMember(d, json.loads((d / "run.json").read_text()), Predictions(ids, values), Predictions(ids, values))
               for d in member_dirs]
    outcome = Outcome(
        members=members, method=method, settings={"steps": 100, "allow_negative": False},
        blend=Blend(np.full(len(members), 1 / len(members))),
        member_rmse=[m.record["metrics"]["oof_rmse"] for m in members],
        oof_ids=ids, oof_pred=values, oof_rmse=oof, nested=NestedScore(nested, [nested] * 3, values),
        submission_ids=ids, submission_pred=values, notes=[])
    return build_record(outcome, runs / label / run_id, label, "roadrisk ensemble ...", "t", total_s)


def _compare(runs: Path, out: Path, *run_dirs, **kw) -> tuple[int, str, dict | None]:
    lines: list[str] = []
    code = run_compare(list(run_dirs), runs, kw.get("baseline"), out, False, echo=lines.append, pool=kw.get("pool", False))
    data = json.loads((out / "compare.json").read_text()) if code == 0 else None
    return code, "\n".join(lines), data


def _board_line(md: str, name: str) -> list[str]:
    """The cells of the leaderboard row of ``name``."""
    section = md.split("## Leaderboard")[1].split("## Runs")[0]
    (line,) = [line for line in section.splitlines() if line.startswith("| ") and f"| {name} |" in line]
    return [cell.strip() for cell in line.strip("|").split("|")]


@pytest.fixture
def blended(tmp_path):
    """Two training runs (schema 1, as _record writes) and an ensemble of both, in one runs folder."""
    runs = tmp_path / "runs"
    native = _write(runs, "native", "20260101T000000Z-aaaaaa", _record("native", oof=0.0500))
    docker = _write(runs, "docker", "20260101T000100Z-bbbbbb", _record("docker", fit=(2.0, 2.2, 1.8), oof=0.0502))
    record = _ensemble_record(runs, "ensemble", "20260101T000200Z-cccccc", [native, docker], oof=0.04970, nested=0.04985)
    _write(runs, "ensemble", "20260101T000200Z-cccccc", record)
    return runs


def test_leaderboard_ranks_every_run_by_its_honest_rmse(tmp_path, blended):
    code, text, data = _compare(blended, tmp_path / "out")
    assert code == 0
    board = data["leaderboard"]
    assert [(r["rank"], r["name"], r["kind"]) for r in board] == [(1, "ensemble", "ensemble"), (2, "native", "train"),
                                                                  (3, "docker", "train")]
    ens, native, docker = board
    assert ens["score"] == ens["nested_oof_rmse"] == pytest.approx(0.04985) and ens["oof_rmse"] == pytest.approx(0.0497)
    assert native["nested_oof_rmse"] is None and native["score"] == pytest.approx(0.05)
    assert ens["model"] == "ensemble(caruana, 2 members)" and native["model"] == "realmlp"
    # compute: a training run's total_s; an ensemble's members' total_s summed, plus its own
    assert native["compute_s"] == pytest.approx(5.0) and docker["compute_s"] == pytest.approx(8.0)
    assert ens["members_compute_s"] == pytest.approx(13.0) and ens["compute_s"] == pytest.approx(13.4)
    assert ens["gap_to_floor_pct"] == pytest.approx(100 * (0.04985 - 0.0495) / 0.0495)
    # schema-1 members (cv_seed read from seed) and the ensemble answer the same question
    assert all(r["comparable"] for r in board) and ens["reference"]

    md = (tmp_path / "out" / "compare.md").read_text()
    assert "best: ensemble (nested_oof_rmse 0.049850)" in md and "ensembles: 1" in md
    assert _board_line(md, "ensemble") == ["1", "ensemble", "ensemble", "ensemble(caruana, 2 members)", "–", "0.049700",
                                           "0.049850", "+0.71%", "13.4 (members 13.0 + blend 0.4)", "#1 (reference)"]
    assert _board_line(md, "native") == ["2", "native", "train", "realmlp", "fast", "0.050000", "–", "+1.01%", "5.0",
                                         "yes"]
    assert "![RMSE against compute time](leaderboard.png)" in md
    assert (tmp_path / "out" / "leaderboard.png").read_bytes()[:8] == PNG
    assert text.splitlines()[-1].endswith(str(tmp_path / "out" / "leaderboard.png"))


def test_an_ensemble_is_ranked_by_its_nested_score_not_its_in_sample_one(tmp_path, blended):
    """In-sample the blend beats native; held out it does not: it ranks below native."""
    native, docker = blended / "native" / "20260101T000000Z-aaaaaa", blended / "docker" / "20260101T000100Z-bbbbbb"
    record = _ensemble_record(blended, "ridge", "20260101T000300Z-dddddd", [native, docker], oof=0.0499, nested=0.0501,
                              method="ridge")
    _write(blended, "ridge", "20260101T000300Z-dddddd", record)
    code, _, data = _compare(blended, tmp_path / "out")
    assert code == 0
    assert [r["name"] for r in data["leaderboard"]] == ["ensemble", "native", "ridge", "docker"]


def test_an_ensemble_is_never_the_baseline_and_stays_out_of_the_timing_sections(tmp_path, blended):
    native = blended / "native" / "20260101T000000Z-aaaaaa" / "run.json"  # no native label: docker is first
    native.write_text(json.dumps({**json.loads(native.read_text()), "label": "zz-native"}))
    record = json.loads((blended / "ensemble" / "20260101T000200Z-cccccc" / "run.json").read_text())
    _write(blended, "aaa-blend", "20260101T000400Z-eeeeee", {**record, "label": "aaa-blend"})  # sorts first
    code, text, data = _compare(blended, tmp_path / "out")
    assert code == 0 and data["baseline"] == "docker"
    assert [r["name"] for r in data["runs"]] == ["docker", "zz-native"]
    assert data["ensembles"] == ["aaa-blend", "ensemble"]
    assert "Left out of the sections below, in the Leaderboard only: aaa-blend, ensemble" in text
    assert "| | key | docker | zz-native |" in text  # the device diff has no ensemble column
    timing = text.split("## 2. Timings")[1].split("## 3.")[0]
    assert "ensemble" not in timing and "aaa-blend" not in timing
    assert text.count("(baseline)") == 1

    code, text, _ = _compare(blended, tmp_path / "out2", baseline="ensemble")
    assert code == 2 and "--baseline ensemble: that run is an ensemble" in text and "have: docker, zz-native" in text


def test_ensembles_alone_are_no_comparison(tmp_path, blended):
    ens = blended / "ensemble" / "20260101T000200Z-cccccc"
    other = _write(blended, "hill", "r2", {**json.loads((ens / "run.json").read_text()), "label": "hill"})
    code, text, _ = _compare(blended, tmp_path / "out", ens, other)
    assert code == 2 and "every complete run here is an ensemble" in text and "Traceback" not in text
    assert not (tmp_path / "out").exists()


def test_runs_on_other_rows_are_marked_not_comparable_to_the_best(tmp_path, blended):
    _write(blended, "other-data", "r1", _record("other-data", fingerprint="ffff", oof=0.0503))
    _write(blended, "five-folds", "r2", _record("five-folds", fit=(1.0,) * 5, oof=0.0504))
    code, _, data = _compare(blended, tmp_path / "out")
    rows = {r["name"]: r for r in data["leaderboard"]}
    assert code == 0 and rows["native"]["comparable"] and rows["native"]["not_comparable_because"] == []
    assert rows["other-data"]["not_comparable_because"] == ["data fingerprint ffff vs abcd"]
    assert rows["five-folds"]["not_comparable_because"] == ["folds 5 vs 3"]
    md = (tmp_path / "out" / "compare.md").read_text()
    assert _board_line(md, "other-data")[-1] == "**no**: data fingerprint ffff vs abcd"


def test_a_sweep_folder_is_a_runs_folder_whose_labels_are_its_members(tmp_path):
    runs = tmp_path / "runs"
    sweep = runs / "quick-cpu"
    members = [_write(sweep, f"hgb-{seed}", f"2026010{seed}T000000Z-aaaaa{seed}",
                      _record(f"hgb-{seed}", model="hgb", oof=0.0500 + seed / 10000)) for seed in range(3)]
    _write(sweep, "ensemble", "20260109T000000Z-ffffff",
           _ensemble_record(sweep, "ensemble", "20260109T000000Z-ffffff", members, oof=0.0498, nested=0.0499))
    (sweep / "sweep.json").write_text(json.dumps({"engine": "inline", "members": []}))
    (sweep / "logs" / "worker-1").mkdir(parents=True)  # a folder without run records: passed over quietly
    (sweep / "logs" / "worker-1" / "out.txt").write_text("x")

    code, text, data = _compare(sweep, tmp_path / "out")
    assert code == 0, text
    assert not [line for line in text.splitlines() if line.startswith(("skipped:", "note:", "error:"))]
    assert [r["name"] for r in data["leaderboard"]] == ["ensemble", "hgb-0", "hgb-1", "hgb-2"]
    assert data["baseline"] == "hgb-0" and data["leaderboard"][0]["model"] == "ensemble(caruana, 3 members)"

    # The folder above it is not a sweep: the sweep is named once, not taken apart run by run.
    _write(runs, "native", "r1", _record("native"))
    code, text, _ = _compare(runs, tmp_path / "out2")
    assert code == 2 and f"note: {sweep}: a sweep folder, not a label; compare it on its own with --runs-dir {sweep}" in text
    assert "skipped:" not in text


def test_older_ensembles_of_a_label_are_never_pooled(tmp_path, blended):
    record = json.loads((blended / "ensemble" / "20260101T000200Z-cccccc" / "run.json").read_text())
    _write(blended, "ensemble", "20250101T000000Z-000000", record)
    code, text, data = _compare(blended, tmp_path / "out", pool=True)
    assert code == 0 and "pooling" not in text and len(data["leaderboard"]) == 3


def test_the_leaderboard_picture_survives_what_it_cannot_draw():
    row = {"rank": None, "name": "x", "kind": "train", "model": "hgb", "score": None, "oof_rmse": None,
           "nested_oof_rmse": None, "compute_s": None, "comparable": None, "reference": False, "floor_rmse": None}
    assert render_leaderboard_png([]).startswith(PNG)
    assert render_leaderboard_png([row]).startswith(PNG)


# ---------------------------------------------------------------- real runs, real CLI

@pytest.mark.slow  # three CLI runs and compare (~40 s here)
@pytest.mark.e2e
def test_two_real_runs_and_their_ensemble_on_one_leaderboard(tmp_path):
    runs, reports = tmp_path / "runs", tmp_path / "reports"
    for label, param in (("a", "max_iter=100"), ("b", "max_leaf_nodes=15")):
        result = run_cli("train", "--profile", "smoke", "--model", "hgb", "--device", "cpu", "--param", param,
                         "--runs-dir", str(runs), "--label", label)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    members = sorted(p for p in runs.glob("*/*") if p.is_dir())
    result = run_cli("ensemble", *map(str, members), "--runs-dir", str(runs))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (ens_dir,) = (runs / "ensemble").iterdir()
    ens = json.loads((ens_dir / "run.json").read_text())

    result = run_cli("compare", "--runs-dir", str(runs), "--out", str(reports))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    data = json.loads((reports / "compare.json").read_text())
    board = {r["name"]: r for r in data["leaderboard"]}
    assert set(board) == {"a", "b", "ensemble"} and data["baseline"] in ("a", "b")
    assert board["ensemble"]["nested_oof_rmse"] == ens["metrics"]["nested_oof_rmse"]
    assert board["ensemble"]["compute_s"] == pytest.approx(ens["timings"]["compute_s"] + ens["timings"]["total_s"])
    assert all(r["comparable"] for r in board.values())
    md = (reports / "compare.md").read_text()
    assert re.search(r"\| \d \| ensemble \| ensemble \| ensemble\(caruana, 2 members\) \| fast \| 0\.\d{6} \| "
                     + f"{ens['metrics']['nested_oof_rmse']:.6f} \\|", md)
    for name in ("compare.md", "compare.json", "compare.png", "leaderboard.png"):
        assert (reports / name).stat().st_size > 0, name
    assert (reports / "leaderboard.png").read_bytes()[:8] == PNG
