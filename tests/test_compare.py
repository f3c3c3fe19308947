"""roadrisk compare on hand-made records: every bad-input case, the arithmetic, and read-only-ness."""

from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from roadrisk.compare.command import run_compare
from roadrisk.compare.stats import speed_up

from .conftest import run_cli


def _record(label: str, *, fit=(1.0, 1.1, 0.9), status="complete", fingerprint="abcd", model="realmlp",
            mps_available=False, in_container=False, oof=0.0500, schema=1) -> dict:
    return {
        "schema_version": schema, "run_id": "x", "label": label, "status": status, "error": None,
        "git_commit": "deadbeef", "started_at": "t", "ended_at": "t",
        "environment": {"python": "3.11", "os": "Linux", "machine": "x86_64", "torch": "2.13.0",
                        "mps_built": mps_available, "mps_available": mps_available, "in_container": in_container,
                        "container_evidence": "/.dockerenv exists (Docker)" if in_container else "none",
                        "cpu_count": 2, "cuda_available": False},
        "device": {"requested": "mps", "selected": "mps" if mps_available else "cpu", "strict": False,
                   "fell_back": not mps_available, "reason": "r-" + label, "torch_threads": 2},
        "data": {"fingerprint": fingerprint, "source": "embedded"},
        "config": {"profile": "smoke", "model": model, "folds": len(fit), "seed": 42},
        "timings": {"setup_s": 1.0, "load_s": 0.1, "features_s": 0.1, "total_s": 2.0 + sum(fit),
                    "folds": [{"fold": i, "fit_s": f, "predict_s": 0.05} for i, f in enumerate(fit)]},
        "metrics": {"oof_rmse": oof, "floor_rmse": 0.0495, "gap_to_floor_pct": 100 * (oof - 0.0495) / 0.0495,
                    "folds": []},
    }


def _write(runs: Path, label: str, run_id: str, record: dict | str, oof=None) -> Path:
    run_dir = runs / label / run_id
    run_dir.mkdir(parents=True)
    text = record if isinstance(record, str) else json.dumps(record)
    (run_dir / "run.json").write_text(text)
    if oof is not None:
        pd.DataFrame({"id": range(len(oof)), "accident_risk": oof}).to_csv(run_dir / "oof.csv", index=False)
        pd.DataFrame({"id": range(100, 100 + len(oof)), "accident_risk": oof}).to_csv(run_dir / "submission.csv",
                                                                                     index=False)
    return run_dir


def _compare(tmp_path, *run_dirs, **kw):
    lines: list[str] = []
    code = run_compare(list(run_dirs), tmp_path / "runs", kw.get("baseline"), tmp_path / "out", kw.get("force", False),
                       echo=lines.append)
    return code, "\n".join(lines)


@pytest.fixture
def three_runs(tmp_path):
    runs = tmp_path / "runs"
    _write(runs, "native", "20260101T000000Z-aaaaaa", _record("native", mps_available=True),
           oof=[0.1, 0.2, 0.3])
    _write(runs, "docker", "20260101T000100Z-bbbbbb", _record("docker", fit=(2.0, 2.2, 1.8), in_container=True),
           oof=[0.1, 0.2, 0.3])
    _write(runs, "docker-mps", "20260101T000200Z-cccccc",
           _record("docker-mps", fit=(2.1, 2.0, 1.9), in_container=True, oof=0.0501), oof=[0.1, 0.21, 0.28])
    return runs


def test_three_runs_produce_four_outputs_and_mark_mps(tmp_path, three_runs):
    code, text = _compare(tmp_path)
    assert code == 0
    for name in ("compare.md", "compare.json", "compare.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert (tmp_path / "out" / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "out" / "compare.md").read_text()
    assert md == text.split("\nreports: ")[0]
    assert "| ≠ | mps_available | True | False | False |" in md
    assert "| ≠ | in_container | False | True | True |" in md
    assert "baseline: native" in md
    data = json.loads((tmp_path / "out" / "compare.json").read_text())
    rows = {r["label"]: r for r in data["runs"]}
    assert rows["docker"]["speed_up"]["ratio"] == pytest.approx(0.5, rel=0.05)
    assert rows["docker"]["speed_up"]["significant"] is True
    assert rows["docker"]["disagreement"]["oof_identical"] is True
    assert rows["docker-mps"]["disagreement"]["oof_max_abs"] == pytest.approx(0.02)
    assert rows["docker-mps"]["disagreement"]["oof_rms"] == pytest.approx(math.sqrt((0.01**2 + 0.02**2) / 3))
    assert rows["docker-mps"]["rmse_delta"] == pytest.approx(0.0001)


def test_runs_folder_is_never_modified(tmp_path, three_runs):
    def snapshot():
        return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in three_runs.rglob("*") if p.is_file()}

    before = snapshot()
    _compare(tmp_path)
    assert snapshot() == before


def test_noise_is_not_a_win(tmp_path):
    runs = tmp_path / "runs"
    _write(runs, "native", "r1", _record("native", fit=(1.0, 1.3, 0.8)))
    _write(runs, "docker", "r2", _record("docker", fit=(0.95, 1.25, 0.85)))
    code, text = _compare(tmp_path)
    assert code == 0 and "*not significant*" in text


def test_not_comparable_runs_are_flagged_and_kept_out_unless_forced(tmp_path):
    runs = tmp_path / "runs"
    _write(runs, "native", "r1", _record("native"))
    _write(runs, "other", "r2", _record("other", fingerprint="ffff", model="hgb"))
    code, text = _compare(tmp_path)
    assert code == 0 and "**not comparable**: data fingerprint differs (ffff vs abcd); model differs" in text
    assert "– (not comparable)" in text
    data = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert data["runs"][1]["speed_up"] is None
    code, text = _compare(tmp_path, force=True)
    assert json.loads((tmp_path / "out" / "compare.json").read_text())["runs"][1]["speed_up"] is not None


def test_missing_runs_folder(tmp_path):
    code, text = _compare(tmp_path)
    assert code == 2 and "no such folder" in text and "make run-native" in text


def test_empty_runs_folder(tmp_path):
    (tmp_path / "runs").mkdir()
    code, text = _compare(tmp_path)
    assert code == 2 and "holds no runs" in text
    assert not (tmp_path / "out").exists()


def test_single_run_says_nothing_to_compare(tmp_path):
    _write(tmp_path / "runs", "native", "r1", _record("native"))
    code, text = _compare(tmp_path)
    assert code == 2 and "at least two complete runs" in text and "make run-docker" in text


def test_dir_without_run_json(tmp_path, three_runs):
    empty = tmp_path / "runs" / "native" / "nothing"
    empty.mkdir()
    code, text = _compare(tmp_path, empty, three_runs / "docker" / "20260101T000100Z-bbbbbb")
    assert code == 2 and f"error: {empty}: no run.json" in text


def test_truncated_run_json(tmp_path, three_runs):
    full = json.dumps(_record("native"))
    bad = _write(tmp_path / "runs", "native", "20270101T000000Z-zzzzzz", full[: len(full) // 2])
    code, text = _compare(tmp_path)
    assert code == 0  # skipped, and the older complete native run is used
    assert f"skipped: {bad / 'run.json'}: truncated or not JSON" in text
    code, text = _compare(tmp_path, bad, three_runs / "docker" / "20260101T000100Z-bbbbbb")
    assert code == 2 and "truncated or not JSON" in text


def test_newer_schema_version(tmp_path, three_runs):
    newer = _write(tmp_path / "runs", "future", "r9", _record("future", schema=99))
    code, text = _compare(tmp_path, newer, three_runs / "docker" / "20260101T000100Z-bbbbbb",
                          three_runs / "native" / "20260101T000000Z-aaaaaa")
    from roadrisk.records import SCHEMA_VERSION

    assert code == 0 and f"newer roadrisk (schema_version 99 > {SCHEMA_VERSION})" in text


def test_interrupted_run_is_shown_never_baseline(tmp_path):
    runs = tmp_path / "runs"
    interrupted = _record("native", status="interrupted", fit=(1.0,))
    interrupted["error"] = "interrupted after 1 finished fold(s)"
    _write(runs, "native", "r1", interrupted)
    _write(runs, "docker", "r2", _record("docker"))
    _write(runs, "docker-mps", "r3", _record("docker-mps"))
    code, text = _compare(tmp_path)
    assert code == 0 and "baseline: docker" in text
    assert "native is **interrupted**: interrupted after 1 finished fold(s)" in text
    code, text = _compare(tmp_path, baseline="native")
    assert code == 2 and "--baseline native: that run is interrupted" in text


def test_failed_latest_run_falls_back_to_older_complete(tmp_path, three_runs):
    failed = copy.deepcopy(_record("docker", status="failed"))
    _write(three_runs, "docker", "20990101T000000Z-ffffff", failed)
    code, text = _compare(tmp_path)
    assert code == 0 and "status failed; using the older complete run 20260101T000100Z-bbbbbb" in text


def test_unknown_baseline_label(tmp_path, three_runs):
    code, text = _compare(tmp_path, baseline="gpu")
    assert code == 2 and "--baseline gpu: no run with that label" in text


# ---------------------------------------------------------------- ratio arithmetic

def test_speed_up_ratio_is_geometric_mean_ratio():
    s = speed_up([2.0, 8.0], [1.0, 4.0])
    assert s.ratio == pytest.approx(2.0)
    assert s.low < 2.0 < s.high


def test_speed_up_identical_spread_is_significant_and_exact():
    s = speed_up([2.0, 2.0, 2.0], [1.0, 1.0, 1.0])
    assert s.ratio == pytest.approx(2.0) and s.low == s.high == pytest.approx(2.0) and s.significant


def test_speed_up_interval_matches_welch():
    from scipy import stats

    a, b = [1.0, 1.2, 0.9, 1.1], [0.5, 0.55, 0.45, 0.6]
    s = speed_up(a, b)
    la, lb = [math.log(x) for x in a], [math.log(x) for x in b]
    result = stats.ttest_ind(la, lb, equal_var=False)
    ci = result.confidence_interval(0.95)
    assert s.low == pytest.approx(math.exp(ci.low)) and s.high == pytest.approx(math.exp(ci.high))
    assert s.significant == (result.pvalue < 0.05)


def test_speed_up_single_fold_claims_no_interval():
    s = speed_up([2.0], [1.0])
    assert s.ratio == pytest.approx(2.0) and s.low is None and not s.significant
    assert "no interval" in s.text()


def test_speed_up_rejects_non_positive_times():
    with pytest.raises(ValueError):
        speed_up([0.0, 1.0], [1.0, 1.0])


def test_cli_compare_exit_codes(tmp_path, three_runs):
    assert run_cli("compare", "--runs-dir", str(three_runs), "--out", str(tmp_path / "rep")).returncode == 0
    missing = run_cli("compare", "--runs-dir", str(tmp_path / "none"), "--out", str(tmp_path / "rep2"))
    assert missing.returncode == 2 and "Traceback" not in missing.stdout + missing.stderr


def test_pool_turns_run_to_run_noise_into_an_honest_interval(tmp_path):
    """Each run's folds agree closely, but whole runs drift: per-fold intervals call that a win,
    pooling repeated runs (one sample per run) does not."""
    runs = tmp_path / "runs"
    for i, level in enumerate((1.0, 1.3, 0.8)):
        _write(runs, "native", f"2026010{i}T000000Z-aaaaa{i}", _record("native", fit=(level, level * 1.01, level * 0.99)))
    for i, level in enumerate((0.9, 1.25, 1.1)):
        _write(runs, "docker", f"2026010{i}T000000Z-bbbbb{i}", _record("docker", fit=(level, level * 1.01, level * 0.99)))
    code, _ = _compare(tmp_path)
    single = {r["label"]: r for r in json.loads((tmp_path / "out" / "compare.json").read_text())["runs"]}
    assert code == 0 and single["docker"]["speed_up"]["significant"] is True  # latest runs only: 0.8 vs 1.1
    lines: list[str] = []
    assert run_compare([], runs, None, tmp_path / "pooled", False, echo=lines.append, pool=True) == 0
    pooled = {r["label"]: r for r in json.loads((tmp_path / "pooled" / "compare.json").read_text())["runs"]}
    assert pooled["docker"]["timings"]["runs"] == 3 and pooled["docker"]["timings"]["sample_kind"] == "runs"
    assert pooled["docker"]["speed_up"]["significant"] is False
    assert "pooling 3 complete runs" in "\n".join(lines)
    assert "| native | 20260102T000000Z-aaaaa2 | 3 |" in (tmp_path / "pooled" / "compare.md").read_text()


def test_pool_leaves_out_runs_of_another_setup(tmp_path):
    runs = tmp_path / "runs"
    _write(runs, "native", "20260102T000000Z-a", _record("native"))
    _write(runs, "native", "20260101T000000Z-b", _record("native", model="hgb"))
    _write(runs, "docker", "20260102T000000Z-c", _record("docker"))
    lines: list[str] = []
    assert run_compare([], runs, None, tmp_path / "o", False, echo=lines.append, pool=True) == 0
    rows = json.loads((tmp_path / "o" / "compare.json").read_text())["runs"]
    assert [r["timings"]["runs"] for r in rows] == [1, 1]


def test_device_settings_show_in_the_diff_and_vanish_where_no_run_has_them(tmp_path):
    """A speed-up between devices is partly the settings the trainer picked for each: show them."""
    runs = tmp_path / "runs"
    gpu = _record("gpu", fit=(0.5, 0.5, 0.5))
    gpu["config"].update(matmul_precision="high", params={"batch_size": 2048, "n_epochs": 10})
    cpu = _record("native")
    cpu["config"].update(matmul_precision="highest", params={"batch_size": 256, "n_epochs": 10})
    _write(runs, "native", "20260101T000000Z-aaaaaa", cpu)
    _write(runs, "gpu", "20260101T000100Z-bbbbbb", gpu)
    code, text = _compare(tmp_path)
    assert code == 0
    assert "| ≠ | matmul_precision | highest | high |" in text
    assert "| ≠ | batch_size | 256 | 2048 |" in text
    assert "allow_amp" not in text  # neither run has it (RealMLP): no empty row


def test_recipe_and_cv_seed_decide_comparability_and_the_model_seed_does_not(tmp_path):
    """Schema-2 runs: another recipe or other folds answer another question; another model seed is a repeat."""
    runs = tmp_path / "runs"

    def v2(label, **config):
        record = _record(label)
        record["schema_version"] = 2
        record["config"].update({"recipe": "fast", "cv_seed": 42, **config})
        return record

    _write(runs, "native", "r1", v2("native"))
    _write(runs, "reference", "r2", v2("reference", recipe="reference"))
    _write(runs, "folds", "r3", v2("folds", cv_seed=7))
    _write(runs, "reseeded", "r4", v2("reseeded", seed=3))
    code, text = _compare(tmp_path)
    assert code == 0
    rows = {r["label"]: r for r in json.loads((tmp_path / "out" / "compare.json").read_text())["runs"]}
    assert rows["reference"]["not_comparable_because"] == ["recipe differs (reference vs fast)"]
    assert rows["folds"]["not_comparable_because"] == ["cv_seed differs (7 vs 42)"]
    assert rows["reseeded"]["comparable"] and rows["reseeded"]["speed_up"] is not None


@pytest.mark.parametrize("where", ["a file", "inside a file"])
def test_cli_compare_out_at_a_file_is_one_line(tmp_path, three_runs, where):
    (tmp_path / "report.txt").write_text("mine\n")
    out = tmp_path / "report.txt" if where == "a file" else tmp_path / "report.txt" / "sub"
    result = run_cli("compare", "--runs-dir", str(three_runs), "--out", str(out))
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: --out {out}:") and "Fix:" in line, line
    assert (tmp_path / "report.txt").read_text() == "mine\n"
