"""``roadrisk sweep SPEC``: many members (models x grid points x seeds) on fixed folds, each an ordinary
run, their folds spread over one executor (inline, processes, or Ray from a laptop to a cluster).

The order of things: read the spec, load the data once, plan every member on this machine (its id is
its run plan's hash, plan.py: model, parameters, seed, target, folds, device, precision, data), skip
members a previous sweep already finished and resume the ones it left half done, prepare the rest
(each an ordinary run under ``runs/<sweep>/<member id>/``) and hand them all to the driver at once
(driver.py, the loop ``roadrisk train`` uses too), which finishes each member the moment its last
fold comes back. ``sweep.json`` beside them says what ran where, and is rewritten (atomically) as
members start and finish, so Ctrl-C, a lost node or a closed laptop lid cost only the folds that
were running.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import environment, locks, records
from ..atomic import atomic_write_json
from ..console import Console
from ..driver import Job, drive
from ..errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, RoadriskError
from ..executors import ExecutorConfig, make_executor
from ..models import MODELS
from ..preparation import DataCache, embedded_or_given, plan_for, prepare
from ..records import SWEEP_FILE, Status
from ..trainer import TrainingRun, TrainOptions
from . import spec as spec_module
from .progress import SweepProgress

QUEUED, ELSEWHERE = "queued", "running elsewhere"  # a member's states before and beside a run's Status


@dataclass
class MemberState:
    id: str
    member: spec_module.MemberSpec
    opts: TrainOptions
    status: str = QUEUED  # queued -> running -> complete | failed | interrupted; or "running elsewhere"
    run: TrainingRun | None = None
    job: Job | None = None
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
                "target": m.target, "device": m.device, "status": self.status,
                "run_dir": None if self.run_dir is None else str(self.run_dir),
                "reused": self.reused, "resumed": self.resumed, "queued_at": self.queued_at,
                "started_at": self.started_at, "finished_at": self.finished_at, "oof_rmse": self.oof_rmse,
                "error": self.error, "nodes": nodes, "gpu_ids": gpus,
                "gpu_fraction": next((f.get("gpu_fraction") for f in self.folds.values() if f.get("gpu_fraction")), 0),
                "attempts": sum(f.get("attempts", 1) for f in self.folds.values()),
                "task_ids": [f["task_id"] for f in self.folds.values() if f.get("task_id")],
                "folds": [{"fold": k, **v} for k, v in sorted(self.folds.items())]}


def member_options(sweep: spec_module.SweepSpec, member: spec_module.MemberSpec, sweep_dir: Path,
                   executor: ExecutorConfig, command: str | None) -> TrainOptions:
    return TrainOptions(data_dir=sweep.data_dir, profile=sweep.profile, model=member.model, recipe=member.recipe,
                        device=member.device, folds=member.folds, seed=member.seed, cv_seed=sweep.cv_seed,
                        data_seed=sweep.data_seed, target=member.target, cv=sweep.cv, cv_bins=sweep.cv_bins,
                        runs_dir=sweep_dir, param_overrides=dict(member.params),
                        matmul_precision=member.matmul_precision, executor=executor, command=command)


def plan_members(sweep: spec_module.SweepSpec, sweep_dir: Path, executor: ExecutorConfig, cache: DataCache,
                 facts: dict, command: str | None, echo) -> tuple[list[MemberState], object]:
    """Every member planned on this machine, one state per distinct plan (duplicates said once)."""
    first = member_options(sweep, sweep.members[0], sweep_dir, executor, command)
    dataset = cache.dataset(*embedded_or_given(first))
    states: dict[str, MemberState] = {}
    unused_seed: set[str] = set()
    for member in sweep.members:
        opts = member_options(sweep, member, sweep_dir, executor, command)
        member_plan = plan_for(opts, facts, dataset)
        member_id = f"{member.model}-{member_plan.identity[:10]}"
        opts.label = member_id
        if member_id in states:
            if not member_plan.seed_matters and states[member_id].member.seed != member.seed:
                unused_seed.add(member.model)
            else:
                echo(f"note: {sweep.path}: {member_id} appears twice in the grid; it is trained once")
            continue
        states[member_id] = MemberState(member_id, member, opts)
    for model in sorted(unused_seed):
        echo(f"note: {sweep.path}: {model} has no randomness with these parameters (no early stopping, no feature "
             f"subsampling), so members that differ only in their seed are one run: each is trained once")
    return list(states.values()), dataset


def run_sweep(spec_path: Path, runs_dir: Path, executor: ExecutorConfig | None = None, dry_run: bool = False,
              command: str | None = None, echo=print, fold_runner=None, wait: bool = False,
              on_run_end=lambda run_dir: None) -> int:
    """``fold_runner``: what trains each fold (default ``folds.run_fold``; a test hands in its own);
    ``wait``: queue behind another process running this sweep instead of refusing; ``on_run_end(run_dir)``:
    as each member's run ends (tracking)."""
    executor = executor or ExecutorConfig()
    sweep = spec_module.load(spec_path)
    records.check_label(sweep.name)
    for note in sweep.notes:
        echo(note)
    sweep_dir = Path(runs_dir) / sweep.name
    cache = DataCache()
    facts = environment.collect(with_torch=any(MODELS[m.model].uses_torch for m in sweep.members))
    states, dataset = plan_members(sweep, sweep_dir, executor, cache, facts, command, echo)
    echo(f"sweep: {sweep.name}: {len(states)} members ({', '.join(_count_models(states))}), cv_seed {sweep.cv_seed}, "
         f"data {dataset.fingerprint} ({dataset.source}, {len(dataset.train)} train rows) -> {sweep_dir}")
    if dry_run:
        for state in states:
            echo(f"member: {state.id} model={state.member.model} seed={state.member.seed} "
                 f"recipe={state.member.recipe} target={state.member.target} params={state.member.params}")
        return EXIT_OK

    sweep_dir.mkdir(parents=True, exist_ok=True)
    # One process per sweep folder: two identical sweeps started together would train every member twice.
    sweep_lock = locks.take(sweep_dir, f"sweep {sweep.name}", wait=wait)
    try:
        return _sweep_locked(sweep, sweep_dir, spec_path, states, dataset, executor, command, fold_runner, cache,
                             facts, on_run_end)
    finally:
        sweep_lock.release()


def _sweep_locked(sweep, sweep_dir: Path, spec_path: Path, states: list[MemberState], dataset,
                  executor: ExecutorConfig, command, fold_runner, cache: DataCache, facts: dict, on_run_end) -> int:
    """The sweep, once this process holds its folder: train every member, keep sweep.json, say how it ended."""
    log = Console(sweep_dir / "sweep.log")
    runner = make_executor(executor, sweep_dir / records.LIBRARY_LOG_FILE, fold_runner)
    book = {"schema_version": 1, "name": sweep.name, "spec": str(Path(spec_path).resolve()),
            "spec_sha256": sweep.sha256, "command": command, "status": Status.RUNNING.value,
            "started_at": records.now_iso(), "ended_at": None, "host": os.uname().nodename, "pid": os.getpid(),
            "engine": runner.describe(), "cv_seed": sweep.cv_seed, "cv": sweep.cv,
            "data": {"fingerprint": dataset.fingerprint, "source": dataset.source, "path": str(dataset.path)},
            "members": []}

    def save(status: str | None = None) -> None:
        if status:
            book["status"], book["ended_at"] = status, records.now_iso()
        book["members"] = [s.as_dict() for s in states]
        atomic_write_json(sweep_dir / SWEEP_FILE, book)

    started = time.perf_counter()
    try:
        train_members(states, sweep_dir, executor, runner, cache, facts, command, log, on_change=save,
                      on_run_end=on_run_end)
    except KeyboardInterrupt:
        for state in states:
            if state.status in (QUEUED, Status.RUNNING.value):
                _ended(state, Status.INTERRUPTED.value, "interrupted")
        save(Status.INTERRUPTED.value)
        log.line(f"interrupted: finished members are kept; run the same command again to train only what is missing "
                 f"({sweep_dir / SWEEP_FILE})")
        return EXIT_INTERRUPTED
    finally:
        runner.close()
    failed = [s for s in states if s.status == Status.FAILED]
    elsewhere = [s for s in states if s.status == ELSEWHERE]
    for state in elsewhere:
        log.line(f"note: member {state.id}: {state.error}")
    status = "failed" if failed else "incomplete" if elsewhere else Status.COMPLETE.value
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
    return EXIT_OK if status == Status.COMPLETE else EXIT_FAILED


def train_members(states: list[MemberState], sweep_dir: Path, executor: ExecutorConfig, runner, cache: DataCache,
                  facts: dict, command: str | None, log: Console, on_change=lambda: None,
                  should_stop=lambda job: None, on_open=lambda state: None, overall=None,
                  on_run_end=lambda run_dir: None) -> None:
    """Open every member (reuse a finished run, resume a stopped one, or start one), prepare the rest and
    drive them all on ``runner`` at once; ``on_change()`` after each member's state changes. What a sweep
    does once and a tune once per round of trials (``should_stop``: its pruner, asked after each fold;
    ``on_open(state)``: before a run is prepared, to add to its record; ``overall()``: the end of each
    progress line, instead of the members' counts; ``on_run_end(run_dir)``: as each trained member's run
    ends, however it ended (tracking)).
    Ctrl-C propagates with every member's state saying where it stopped."""
    by_key: dict[str, MemberState] = {}
    engine = runner.describe()  # once: on Ray it asks the cluster
    with open(os.devnull, "w") as devnull:  # members' consoles: their train.log only, the sweep log speaks
        for state in states:
            _open_member(state, sweep_dir, executor, devnull, command)
            if state.run is None:
                continue
            on_open(state)
            try:
                state.job = prepare(state.run, cache, facts)
            except (Exception, KeyboardInterrupt) as exc:
                outcome = state.run.stopped_by(exc)
                state.run.console.close()
                _ended(state, outcome.status, state.run.record["error"])
                if isinstance(exc, KeyboardInterrupt):
                    raise
                continue
            state.run.record["executor"] = engine
            state.run.record.save()
            by_key[state.job.key] = state
        on_change()
        progress = SweepProgress(log, by_key, sum(len(s.job.tasks) for s in by_key.values()), echo_line=log.line,
                                 everyone=states, overall=overall)

        def ended(job: Job) -> None:
            state = by_key[job.key]
            for result in state.run.results:
                state.folds[result.index] = result.where
            _ended(state, job.outcome.status, state.run.record["error"])
            state.oof_rmse = state.run.record["metrics"].get("oof_rmse")
            if job.outcome.status == Status.FAILED:
                log.line(f"member {state.id}: failed: {state.error.splitlines()[0] if state.error else ''}")
            else:
                progress.member_done(state)
            on_change()
            on_run_end(state.run_dir)

        try:
            drive([s.job for s in by_key.values()], runner, progress, on_end=ended, should_stop=should_stop)
        finally:  # every member has ended: the next process (or the next round of a tune) may open their folders
            for state in states:
                if state.run is not None and state.run.lock is not None:
                    state.run.lock.release()


def _open_member(state: MemberState, sweep_dir: Path, executor: ExecutorConfig, stream, command) -> None:
    """Find the member's earlier run (complete: reuse; stopped: resume) or start a new one."""
    state.queued_at = records.now_iso()
    latest = latest_run(sweep_dir / state.id)
    if latest is not None and latest["status"] == Status.COMPLETE:
        state.status, state.reused, state.run_dir = Status.COMPLETE.value, True, latest.run_dir
        state.oof_rmse = (latest["metrics"] or {}).get("oof_rmse")
        state.folds = {f["fold"]: f.get("worker", {}) for f in (latest["timings"] or {}).get("folds", [])}
        return
    if latest is not None and latest["status"] in records.STOPPED:
        if latest["status"] == Status.RUNNING and locks.is_held(latest.run_dir):  # a --resume trains it right now
            state.status, state.run_dir = ELSEWHERE, latest.run_dir
            state.error = f"being trained by pid {latest['pid']} on this host; run the sweep again when it ends"
            return
        state.run = TrainingRun.reopen(latest.run_dir, {"executor": executor}, command, stream=stream)
        state.resumed, state.run_dir = True, state.run.run_dir
        return
    state.run = TrainingRun.start(state.opts, stream=stream)
    state.run_dir = state.run.run_dir


def latest_run(member_dir: Path) -> records.RunRecord | None:
    """The newest readable run record of a member (dry runs aside), or None."""
    if not member_dir.is_dir():
        return None
    for run_dir in sorted((p for p in member_dir.iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True):
        try:
            record = records.RunRecord.load(run_dir)
        except RoadriskError:  # no or a broken run.json: that attempt never got far enough to matter
            continue
        if record["status"] != Status.DRY_RUN:
            return record
    return None


def _ended(state: MemberState, status: str, error: str | None) -> None:
    state.status, state.error, state.finished_at = str(status), error, records.now_iso()


def _count_models(states: list[MemberState]) -> list[str]:
    counts: dict[str, int] = {}
    for state in states:
        counts[state.member.model] = counts.get(state.member.model, 0) + 1
    return [f"{n} {model}" for model, n in counts.items()]
