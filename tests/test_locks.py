"""One process per run and per sweep: the folder locks (real flock, real CLI processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

from roadrisk import locks
from roadrisk.executors.local import InlineExecutor
from roadrisk.trainer import TrainOptions, train

from .conftest import ROOT, run_cli


def _interrupted_run(tmp_path):
    def stop(spec, *args):
        raise KeyboardInterrupt

    outcome = train(TrainOptions(profile="smoke", model="hgb", runs_dir=tmp_path / "runs"), executor=InlineExecutor(stop))
    assert outcome.exit_code == 130
    return outcome.run_dir


def test_a_second_resume_of_a_held_run_is_refused_naming_the_holder(tmp_path):
    run_dir = _interrupted_run(tmp_path)
    before = (run_dir / "run.json").read_bytes()
    held = locks.take(run_dir, "this run")  # as a first --resume, still training, holds it
    try:
        result = run_cli("train", "--resume", str(run_dir))
    finally:
        held.release()
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"being trained by pid {os.getpid()}" in result.stderr and "--wait" in result.stderr
    assert (run_dir / "run.json").read_bytes() == before
    assert run_cli("train", "--resume", str(run_dir)).returncode == 0  # once it is free


def test_wait_queues_behind_the_holder_and_then_resumes(tmp_path):
    run_dir = _interrupted_run(tmp_path)
    held = locks.take(run_dir, "this run")
    waiting = subprocess.Popen([sys.executable, "-m", "roadrisk", "train", "--resume", str(run_dir), "--wait"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    assert waiting.poll() is None  # still waiting
    held.release()
    assert waiting.wait(timeout=300) == 0
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"


def test_a_dead_writer_whose_pid_is_reused_does_not_block_resume(tmp_path):
    """A killed container's record says pid 1, and pid 1 is alive in the next container: the lock, not the
    pid, decides. Here the record names this very (live) test process."""
    run_dir = _interrupted_run(tmp_path)
    record = json.loads((run_dir / "run.json").read_text())
    record.update(status="running", pid=os.getpid())
    (run_dir / "run.json").write_text(json.dumps(record))
    result = run_cli("train", "--resume", str(run_dir))
    assert result.returncode == 0, result.stdout[-1500:] + result.stderr


def test_two_sweeps_of_one_spec_at_once_train_nothing_twice(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text(textwrap.dedent("""
        name = "s"
        [data]
        profile = "smoke"
        [[model]]
        name = "hgb"
        params = { max_iter = 40 }
    """))
    (tmp_path / "runs" / "s").mkdir(parents=True)
    held = locks.take(tmp_path / "runs" / "s", "sweep s")
    try:
        result = run_cli("sweep", str(spec), "--runs-dir", str(tmp_path / "runs"))
    finally:
        held.release()
    assert result.returncode == 2 and "sweep s is being trained by pid" in result.stderr, result.stderr
    assert not (tmp_path / "runs" / "s" / "sweep.json").exists()
