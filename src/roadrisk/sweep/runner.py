"""``roadrisk sweep SPEC``: many members (models x grid points x seeds) on fixed folds, each an ordinary
run, their folds spread over one executor (inline, processes, or Ray from a laptop to a cluster).

The order of things: read the spec, load the data once, give every member its id (a hash of what it
trains: model, parameters, seed, cv_seed, folds, recipe, data), skip members a previous sweep already
finished and resume the ones it left half done, prepare the rest (each a ``TrainingRun`` under
``runs/<sweep>/<member id>/``), hand all their folds to the executor at once, and finish each member
the moment its last fold comes back. ``sweep.json`` beside them says what ran where, and is rewritten
(atomically) as members start and finish, so Ctrl-C, a lost node or a closed laptop lid cost only the
folds that were running.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import data as data_module
from .. import records
from ..atomic import atomic_write_json
from ..console import Console
from ..errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, RoadriskError
from ..executors import make_executor
from ..profiles import PROFILES
from ..trainer import TrainingRun, TrainOptions
from . import spec as spec_module
from .progress import SweepProgress

SWEEP_FILE = "sweep.json"


@dataclass
class MemberState:
    id: str
    member: spec_module.Member
    status: str = "queued"  # queued -> running -> complete | failed | interrupted; or "running elsewhere"
    run: TrainingRun | None = None
    run_dir: Path | None = None
    reused: bool = False  # finished by an earlier sweep: nothing trained now
    resumed: bool = False
    queued_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    oof_rmse: float | None = None
    error: str | None = None
    folds: dict = field(default_factory=dict)  # fold -> where it ran, attempts, task id

    def as_dict(self) -> dict:
        m = self.member
        nodes = sorted({f.get("node_ip") or f.get("host") for f in self.folds.values() if f})
        gpus = sorted({g for f in self.folds.values() for g in f.get("gpu_ids", [])})
        return {"id": self.id, "model": m.model, "params": m.params, "seed": m.seed, "recipe": m.recipe,
                "device": m.device, "status": self.status, "run_dir": None if self.run_dir is None else str(self.run_dir),
                "reused": self.reused, "resumed": self.resumed, "queued_at": self.queued_at,
                "started_at": self.started_at, "finished_at": self.finished_at, "oof_rmse": self.oof_rmse,
                "error": self.error, "nodes": nodes, "gpu_ids": gpus,
                "gpu_fraction": next((f.get("gpu_fraction") for f in self.folds.values() if f.get("gpu_fraction")), 0),
                "attempts": sum(f.get("attempts", 1) for f in self.folds.values()),
                "task_ids": [f["task_id"] for f in self.folds.values() if f.get("task_id")],
                "folds": [{"fold": k, **v} for k, v in sorted(self.folds.items())]}


def run_sweep(spec_path: Path, runs_dir: Path, executor_name: str = "inline", jobs: int = 1,
              address: str | None = None, cpus_per_task: float | None = None, gpus_per_task: float | None = None,
              dry_run: bool = False, command: str | None = None, echo=print) -> int:
    sweep = spec_module.load(spec_path)
    records.check_label(sweep.name)
    sweep_dir = Path(runs_dir) / sweep.name
    profile = PROFILES[sweep.profile]
    data_cache: dict = {}
    if sweep.data_dir is None:
        data_dir, _ = data_module.embedded_dir(profile.train_rows, profile.test_rows, profile.original_rows,
                                               sweep.data_seed)
        dataset = data_module.load(data_dir, "embedded")
    else:
        dataset = data_module.load(data_module.require_data_dir(sweep.data_dir), "directory")
    data_cache[("dataset", str(Path(dataset.path).resolve()))] = dataset  # members read it from here
    folds_default = profile.folds
    states = [MemberState(m.identity(sweep.cv_seed, m.folds or folds_default, dataset.fingerprint), m)
              for m in sweep.members]
    duplicate = _first_duplicate(states)
    if duplicate:
        echo(f"note: {spec_path}: {duplicate} appears twice in the grid; it is trained once")
        states = list({s.id: s for s in states}.values())
    echo(f"sweep: {sweep.name}: {len(states)} members ({', '.join(_count_models(states))}), cv_seed {sweep.cv_seed}, "
         f"data {dataset.fingerprint} ({dataset.source}, {len(dataset.train)} train rows) -> {sweep_dir}")
    if dry_run:
        for state in states:
            echo(f"member: {state.id} model={state.member.model} seed={state.member.seed} "
                 f"recipe={state.member.recipe} params={state.member.params}")
        return EXIT_OK

    sweep_dir.mkdir(parents=True, exist_ok=True)
    log = Console(sweep_dir / "sweep.log")
    executor = make_executor(executor_name, jobs, address, cpus_per_task, gpus_per_task, sweep_dir / records.LIBRARY_LOG_FILE)
    book = {"schema_version": 1, "name": sweep.name, "spec": str(Path(spec_path).resolve()),
            "spec_sha256": sweep.sha256, "command": command, "status": "running", "started_at": records.now_iso(),
            "ended_at": None, "host": os.uname().nodename, "pid": os.getpid(), "engine": executor.describe(),
            "cv_seed": sweep.cv_seed,
            "data": {"fingerprint": dataset.fingerprint, "source": dataset.source, "path": str(dataset.path)},
            "members": []}

    def save(status: str | None = None) -> None:
        if status:
            book["status"], book["ended_at"] = status, records.now_iso()
        book["members"] = [s.as_dict() for s in states]
        atomic_write_json(sweep_dir / SWEEP_FILE, book)

    started = time.perf_counter()
    devnull = open(os.devnull, "w")
    try:
        for state in states:
            _open_member(state, sweep, sweep_dir, executor_name, jobs, address, cpus_per_task, gpus_per_task,
                         data_cache, devnull, command)
        save()
        for state in states:
            if state.run is not None and state.status == "queued":
                outcome = state.run.guard(lambda s=state: s.run.prepare(executor), close=False)
                if outcome.exit_code != EXIT_OK:
                    _ended(state, outcome.status, state.run.record["error"])
                elif state.run.complete:  # every fold already on disk (a resumed member)
                    _finish(state)
        save()
        by_member = {s.id: s for s in states}
        tasks = [task for s in states if s.run is not None and s.status == "queued"
                 for task in _keyed(s)]
        progress = SweepProgress(log, by_member, len(tasks), echo_line=log.line)
        for task, result, error in executor.run(tasks, progress) if tasks else ():
            state = by_member[task.key[0]]
            if state.status not in ("queued", "running"):
                continue  # a member that already failed: its other folds no longer count
            if error is not None:
                outcome = state.run.failed(error)
                state.run.console.close()
                _ended(state, outcome.status, state.run.record["error"])
                log.line(f"member {state.id}: failed: {state.error.splitlines()[0] if state.error else ''}")
                save()
                continue
            state.folds[result.index] = result.where
            state.run.accept(result)
            if state.run.complete:
                _finish(state)
                progress.member_done(state)
                save()
        progress.close()
    except KeyboardInterrupt:
        for state in states:
            if state.run is not None and state.status in ("queued", "running"):
                state.run.interrupted()
                state.run.console.close()
                _ended(state, "interrupted", "interrupted")
        save("interrupted")
        log.line(f"interrupted: finished members are kept; run the same command again to train only what is missing "
                 f"({sweep_dir / SWEEP_FILE})")
        return EXIT_INTERRUPTED
    finally:
        executor.close()
        devnull.close()
    failed = [s for s in states if s.status == "failed"]
    elsewhere = [s for s in states if s.status == "running elsewhere"]
    for state in elsewhere:
        log.line(f"note: member {state.id}: {state.error}")
    status = "failed" if failed else "incomplete" if elsewhere else "complete"
    save(status)
    done = [s for s in states if s.oof_rmse is not None]
    best = min(done, key=lambda s: s.oof_rmse) if done else None
    log.lines([
        f"status: {status}",
        f"members: {len(states)} ({sum(s.reused for s in states)} from earlier, {sum(s.resumed for s in states)} "
        f"resumed, {len(failed)} failed)",
        f"best_oof_rmse: {best.oof_rmse:.6f} ({best.id})" if best else "best_oof_rmse: none",
        f"total_s: {time.perf_counter() - started:.1f}",
        f"sweep_dir: {sweep_dir}",
    ])
    log.close()
    return EXIT_OK if status == "complete" else EXIT_FAILED


def _open_member(state: MemberState, sweep, sweep_dir: Path, executor_name: str, jobs: int, address,
                 cpus_per_task, gpus_per_task, data_cache: dict, stream, command) -> None:
    """Find the member's earlier run (complete: reuse; stopped: resume) or start a new one."""
    state.queued_at = records.now_iso()
    latest = _latest_run(sweep_dir / state.id)
    m = state.member
    if latest is not None and latest["status"] == "complete":
        state.status, state.reused, state.run_dir = "complete", True, latest.run_dir
        state.oof_rmse = (latest["metrics"] or {}).get("oof_rmse")
        state.folds = {f["fold"]: f.get("worker", {}) for f in (latest["timings"] or {}).get("folds", [])}
        return
    how = {"executor": executor_name, "jobs": jobs, "address": address, "cpus_per_task": cpus_per_task,
           "gpus_per_task": gpus_per_task}
    if latest is not None and latest["status"] in ("interrupted", "failed", "running"):
        if latest["status"] == "running" and latest.process_alive():  # another sweep trains it right now
            state.status, state.run_dir = "running elsewhere", latest.run_dir
            state.error = f"being trained by pid {latest['pid']} on this host; run the sweep again when it ends"
            return
        state.run = TrainingRun.reopen(latest.run_dir, how, command, stream=stream, data_cache=data_cache)
        state.resumed, state.run_dir = True, state.run.run_dir
        return
    opts = TrainOptions(data_dir=sweep.data_dir, profile=sweep.profile, model=m.model, recipe=m.recipe, device=m.device,
                        folds=m.folds, seed=m.seed, cv_seed=sweep.cv_seed, data_seed=sweep.data_seed, label=state.id,
                        runs_dir=sweep_dir, param_overrides=dict(m.params), matmul_precision=m.matmul_precision,
                        command=command, **how)
    state.run = TrainingRun.start(opts, stream=stream, data_cache=data_cache)
    state.run_dir = state.run.run_dir


def _latest_run(member_dir: Path) -> records.RunRecord | None:
    """The newest readable run record of a member (dry runs aside), or None."""
    if not member_dir.is_dir():
        return None
    for run_dir in sorted((p for p in member_dir.iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True):
        try:
            record = records.RunRecord.load(run_dir)
        except RoadriskError:  # no or a broken run.json: that attempt never got far enough to matter
            continue
        if record["status"] != "dry-run":
            return record
    return None


def _keyed(state: MemberState):
    """The member's folds as sweep tasks: keyed by (member id, fold) so results find their run."""
    from dataclasses import replace

    return [replace(task, key=(state.id, task.key)) for task in state.run.tasks]


def _finish(state: MemberState) -> None:
    outcome = state.run.guard(state.run.finish)
    _ended(state, outcome.status, state.run.record["error"])
    state.oof_rmse = state.run.record["metrics"].get("oof_rmse")


def _ended(state: MemberState, status: str, error: str | None) -> None:
    state.status, state.error, state.finished_at = status, error, records.now_iso()


def _first_duplicate(states: list[MemberState]) -> str | None:
    seen = set()
    for state in states:
        if state.id in seen:
            return state.id
        seen.add(state.id)
    return None


def _count_models(states: list[MemberState]) -> list[str]:
    counts: dict[str, int] = {}
    for state in states:
        counts[state.member.model] = counts.get(state.member.model, 0) + 1
    return [f"{n} {model}" for model, n in counts.items()]
