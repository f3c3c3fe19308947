"""Full and read-only disks, on a real small tmpfs: one line naming the path and the cause, and records
that tell the truth (never `running` for a dead process, never `complete` with an output missing).

Mounting needs root (or CAP_SYS_ADMIN). Where that is refused the tests skip, saying why, except in CI
(CI=true), where a skip would hide that they never ran: there they fail."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture
def mount_tmpfs(tmp_path):
    mounted: list[Path] = []

    def mount(size: str, read_only: bool = False) -> Path:
        point = tmp_path / f"disk-{len(mounted)}"
        point.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True,
                              text=True)
        if done.returncode != 0:
            reason = f"cannot mount a tmpfs here ({(done.stderr or done.stdout).strip() or done.returncode})"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(f"{reason}: CI must run the disk tests (run the job as root)")
            pytest.skip(reason)
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", str(point)], capture_output=True)


def _runs(runs: Path) -> list[Path]:
    return sorted(p for p in runs.glob("native/*") if p.is_dir())


def _assert_truthful(result, disk: Path) -> None:
    """What every ending on a full disk must look like, whichever write the space ran out on."""
    out = result.stdout + result.stderr
    assert "Traceback" not in out, out[-3000:]
    assert result.returncode in (0, 1), out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    if result.returncode == 1:
        assert len(errors) == 1, errors
        assert f"cannot write {disk}" in errors[0] and "No space left on device" in errors[0], errors
    for run_dir in _runs(disk / "runs"):
        assert (run_dir / "run.json").is_file(), f"{run_dir}: a run folder without run.json"
        record = json.loads((run_dir / "run.json").read_text())
        assert record["status"] in ("complete", "failed"), record["status"]
        assert (record["status"] == "complete") == (result.returncode == 0)
        if record["status"] == "complete":
            for name in ("oof.csv", "submission.csv", "train.log"):
                assert (run_dir / name).is_file(), name
            for name in record["outputs"]["folds"].values():
                assert (run_dir / name).is_file(), name
    assert not list(disk.rglob(".*.tmp")), "a temporary file was left behind"


# From too small for the first record to room for everything: each size runs out at another write
# (the log, the record, a fold, oof.csv, the final record), as measured for a smoke hgb run.
@pytest.mark.parametrize("size", ["4k", "12k", "40k", "60k", "100k", "120k", "2m"])
def test_cli_run_on_a_small_disk_ends_in_one_line_and_a_truthful_record(mount_tmpfs, size):
    disk = mount_tmpfs(size)
    result = run_cli("train", "--profile", "smoke", "--model", "hgb", "--runs-dir", str(disk / "runs"))
    _assert_truthful(result, disk)
    if size == "2m":
        assert result.returncode == 0


def test_cli_run_on_an_already_full_disk_leaves_no_empty_run_folder(mount_tmpfs):
    disk = mount_tmpfs("16k")
    try:
        (disk / "filler").write_bytes(b"\0" * 16 * 1024)
    except OSError:
        pass  # full now, which is the point
    result = run_cli("train", "--profile", "smoke", "--model", "hgb", "--runs-dir", str(disk / "runs"))
    assert result.returncode == 1
    _assert_truthful(result, disk)
    assert _runs(disk / "runs") == []


def test_cli_read_only_runs_folder_is_one_line_for_each_command(mount_tmpfs, tmp_path):
    disk = mount_tmpfs("2m")
    runs = disk / "runs"
    for _ in range(2):  # two complete runs, for compare
        assert run_cli("train", "--profile", "smoke", "--model", "hgb", "--runs-dir", str(runs)).returncode == 0
    first, second = _runs(runs)
    run_dir = disk / "stopped" / first.name  # a copy, stopped, for --resume
    shutil.copytree(first, run_dir)
    record = json.loads((run_dir / "run.json").read_text())
    record["status"] = "interrupted"
    (run_dir / "run.json").write_text(json.dumps(record))
    before = (run_dir / "run.json").read_bytes()
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    spec = tmp_path / "s.toml"
    spec.write_text('[data]\nprofile = "smoke"\n[[model]]\nname = "hgb"\n')
    commands = {
        "train --resume": ["train", "--resume", str(run_dir)],
        "sweep": ["sweep", str(spec), "--runs-dir", str(disk / "sweeps")],
        "data --out": ["data", "--out", str(disk / "data"), "--train-rows", "100", "--test-rows", "10"],
        "compare --out": ["compare", str(first), str(second), "--out", str(disk / "report")],
        "train": ["train", "--profile", "smoke", "--model", "hgb", "--runs-dir", str(runs)],
    }
    for name, args in commands.items():
        result = run_cli(*args)
        out = result.stdout + result.stderr
        assert "Traceback" not in out, (name, out[-3000:])
        errors = [line for line in out.splitlines() if line.startswith("error:")]
        assert result.returncode in (1, 2) and len(errors) == 1, (name, result.returncode, errors)
        assert str(disk) in errors[0] and "Read-only file system" in errors[0], (name, errors)
    assert (run_dir / "run.json").read_bytes() == before
