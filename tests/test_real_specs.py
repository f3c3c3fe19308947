"""sweeps/real-cpu.toml and sweeps/real-gpu.toml: they load as committed, and plan (`roadrisk sweep SPEC
--dry-run` exits 0) once their data_dir points at a dataset: here a generated one, through a temporary
copy of the spec (the committed data_dir is the repository's git-ignored data/s5e10/)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from roadrisk.sweep import spec as spec_module

from .conftest import ROOT, run_cli

SPECS = {"real-cpu": ROOT / "sweeps" / "real-cpu.toml", "real-gpu": ROOT / "sweeps" / "real-gpu.toml"}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("real-specs") / "data"
    made = run_cli("data", "--out", str(out), "--train-rows", "500", "--test-rows", "100", "--original-rows", "500")
    assert made.returncode == 0, made.stderr
    return out


def _pointed_at(spec: Path, data: Path, tmp_path: Path) -> Path:
    text, count = re.subn(r'(?m)^data_dir = "[^"]*"', f'data_dir = "{data.as_posix()}"', spec.read_text())
    assert count == 1, f"{spec}: expected one data_dir line"
    copy = tmp_path / spec.name
    copy.write_text(text)
    return copy


def test_the_cpu_spec_is_gbdts_on_the_residual():
    sweep = spec_module.load(SPECS["real-cpu"])
    assert sweep.profile == "full" and sweep.data_dir == (ROOT / "data" / "s5e10").resolve()
    models = {m.model for m in sweep.members}
    assert {"catboost", "xgb", "lgbm"} <= models and not models & {"tabm", "realmlp"}
    assert sum(m.target == "residual" for m in sweep.members) > len(sweep.members) / 2
    assert all(m.device == "cpu" and m.folds == 5 for m in sweep.members)


def test_the_gpu_spec_is_the_top_finisher_shape():
    sweep = spec_module.load(SPECS["real-gpu"])
    by_model = {}
    for member in sweep.members:
        by_model.setdefault(member.model, []).append(member)
    assert set(by_model) == {"xgb", "catboost", "tabm"}
    assert all(len(members) >= 3 for members in by_model.values())  # seeds, averaged by --average-seeds
    assert all(m.device == "cuda" and m.target == "residual" for m in sweep.members)
    assert "--gpus-per-task" in SPECS["real-gpu"].read_text()  # the fractional-GPU note for executor ray


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SPECS))
def test_the_spec_plans_on_a_generated_dataset(name, generated, tmp_path):
    copy = _pointed_at(SPECS[name], generated, tmp_path)
    result = run_cli("sweep", str(copy), "--dry-run", "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stdout + result.stderr
    members = len(spec_module.load(copy).members)
    out = result.stdout + result.stderr
    assert f"sweep: {name}: {members} members" in out
    assert out.count("\nmember: ") + out.startswith("member: ") == members
    assert all("target=residual" in line for line in out.splitlines() if line.startswith("member: "))


def test_the_real_tune_spec_searches_xgb_on_the_residual_and_plans_once_pointed_at_data(generated, tmp_path):
    from roadrisk.tune import spec as tune_spec

    path = ROOT / "sweeps" / "tune-real-cpu.toml"
    spec = tune_spec.load(path)
    assert (spec.model, spec.target, spec.shared.profile) == ("xgb", "residual", "full")
    assert spec.shared.data_dir == (ROOT / "data" / "s5e10").resolve()
    result = run_cli("tune", str(_pointed_at(path, generated, tmp_path)), "--runs-dir", str(tmp_path / "runs"),
                     "--dry-run")
    assert result.returncode == 0, result.stdout[-1500:] + result.stderr[-1500:]
    assert "space: max_depth: int in [3, 9]" in result.stdout
