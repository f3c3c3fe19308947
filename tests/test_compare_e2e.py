"""The whole story end to end, as CI runs it: native, docker and docker-mps smoke runs, then compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_docker import needs_engine

pytestmark = [pytest.mark.docker, pytest.mark.e2e, pytest.mark.slow]  # builds and runs the images


@needs_engine
def test_native_docker_mps_then_compare(tmp_path_factory):
    from .test_docker import make

    runs = tmp_path_factory.mktemp("e2e-runs")
    cache = tmp_path_factory.mktemp("e2e-cache")
    reports = tmp_path_factory.mktemp("e2e-reports")
    env = {"RUNS_DIR": str(runs), "ROADRISK_CACHE_DIR": str(cache)}
    for target in ("run-native", "run-docker", "run-docker-mps"):
        result = make(target, env, PROFILE="smoke")
        assert result.returncode == 0, (target, result.stdout[-3000:], result.stderr[-3000:])
    result = make("compare", env, ARGS=f"--out {reports}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    for name in ("compare.md", "compare.json", "compare.png"):
        assert (reports / name).stat().st_size > 0, name
    md = (reports / "compare.md").read_text()
    for label in ("native", "docker", "docker-mps"):
        assert f"| {label} |" in md, label
    assert "| ≠ | device_requested | auto | auto | mps |" in md
    assert "| ≠ | device_fell_back | False | False | True |" in md
    assert "≠ device_reason · **docker-mps**: requested mps, fell back to CPU: MPS cannot exist" in md
    data = json.loads((reports / "compare.json").read_text())
    rows = {r["label"]: r for r in data["runs"]}
    assert data["baseline"] == "native" and set(rows) == {"native", "docker", "docker-mps"}
    # Shared cache: the containers trained on byte-identical data, so the runs line up row by row.
    assert rows["docker"]["comparable"] and rows["docker"]["speed_up"] is not None
    assert rows["docker"]["disagreement"] is not None
    assert md.count("(baseline)") == 1
    assert Path(reports / "compare.png").read_bytes()[:4] == b"\x89PNG"
