"""roadrisk doctor --probe: real CPU fits; the accelerator is mocked (no GPU or Mac here) by a fake timer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from roadrisk import probe
from roadrisk.compare import report

from .conftest import run_cli

MOCK_CUDA_FACTS = {"torch": "2.13.0", "cuda_available": True, "gpu_name": "mock GPU", "torch_cuda_build": "12.8",
                   "mps_built": False, "os": "Linux"}


def _fake_timer(per_epoch: dict[str, float], offset: float = 1e-4, real=probe.measure):
    """CPU: the real fit. The mocked accelerator: a fixed per-epoch time, and the CPU's predictions moved by
    ``offset`` (weights drawn on another device differ a little)."""
    def timer(model, device, epochs, data):
        if device == "cpu":
            return real(model, device, epochs, data)
        cpu = real(model, "cpu", epochs, data)
        return probe.Fit(0.5 + per_epoch[model] * epochs, cpu.predictions + offset)
    return timer


@pytest.mark.slow
def test_mocked_cuda_probe_renders_the_verdict_table_with_real_cpu_fits(tmp_path):
    result = probe.run(MOCK_CUDA_FACTS, _fake_timer({"tabm": 1e-4, "realmlp": 1e3}), rows=500, repeats=2)
    assert result["accelerators"] == ["cuda"] and set(result["models"]) == {"tabm", "realmlp"}
    tabm, realmlp = result["models"]["tabm"], result["models"]["realmlp"]
    assert all(t > 0 for t in tabm["cpu_epoch_s"]) and len(tabm["cpu_epoch_s"]) == 2
    assert tabm["cuda"]["ratio"] > probe.FASTER and tabm["cuda"]["agree"]
    assert realmlp["cuda"]["ratio"] < 1 / probe.FASTER
    lines = probe.table_lines(result)
    assert lines[0].startswith("| model | device | per epoch")
    assert any(line.startswith("| tabm | cuda |") and "agree" in line for line in lines)
    assert "verdict: CUDA: " in "\n".join(lines) and "faster than CPU for tabm at 500 rows" in "\n".join(lines)
    assert "slower than CPU for realmlp at 500 rows: use --device cpu" in "\n".join(lines)
    saved = probe.save(result, tmp_path)
    assert saved.parent == tmp_path / "probe" and probe.latest(tmp_path)["verdicts"] == result["verdicts"]
    assert "## 5. Should this machine use its GPU?" in report.probe_section(probe.latest(tmp_path))


def test_verdict_lines_say_faster_slower_no_faster_and_disagreement():
    assert probe.verdict("mps", "tabm", 414_000, 1.8, 1.6, 2.0, True) == "MPS: 1.8x faster than CPU for tabm at 414,000 rows"
    assert probe.verdict("mps", "realmlp", 1000, 1.1, 0.9, 1.3, True) == "MPS: no faster than CPU for realmlp at 1,000 rows"
    assert "faster" in probe.verdict("cuda", "tabm", 10, 1.5, 0.9, 2.0, True) and "no faster" in \
        probe.verdict("cuda", "tabm", 10, 1.5, 0.9, 2.0, True)  # a spread reaching below 1 is not "faster"
    assert probe.verdict("mps", "tabm", 10, 0.5, 0.4, 0.6, True).startswith("MPS: 2.0x slower")
    assert "predictions disagree" in probe.verdict("cuda", "tabm", 10, 3.0, 2.5, 3.5, False)


def test_mocked_mps_facts_without_fits_disagreeing_predictions_are_flagged():
    def timer(model, device, epochs, data):  # no real fit: the verdict logic alone
        return probe.Fit(epochs * (1.0 if device == "cpu" else 0.25), np.zeros(5) + (0.5 if device == "mps" else 0))
    facts = {"torch": "2.13.0", "mps_built": True, "mps_available": True, "os": "Darwin"}
    result = probe.run(facts, timer, rows=200, repeats=2, models=("tabm",))
    entry = result["models"]["tabm"]["mps"]
    assert entry["ratio"] == pytest.approx(4.0) and not entry["agree"]
    assert "DISAGREE" in "\n".join(probe.table_lines(result))


@pytest.mark.slow
def test_probe_on_this_cpu_machine_says_nothing_to_compare_and_why(tmp_path):
    result = run_cli("doctor", "--probe", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("probe: nothing to compare: "))
    assert "CUDA" in line and "MPS" in line
    (saved,) = (tmp_path / "runs" / "probe").glob("probe-*.json")
    record = json.loads(saved.read_text())
    assert record["accelerators"] == [] and record["nothing_to_compare"] in line
