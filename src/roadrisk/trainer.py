"""One training run: its options, its folder and record, and how it is prepared for the driver.

The order of a run: the machine's facts and the device, the data, the plan (``plan.py``: everything
the run computes, hashed), the features, the folds still to train. ``prepare`` does those steps and
hands the driver (``driver.py``) a job; the driver trains the folds and calls back ``accept`` for
each and ``finish`` at the end. ``TrainingRun`` itself holds only the files, the record and the
console. A run can stop half way (Ctrl-C, ``docker stop``, a crash) and be continued with
``resume``: every finished fold is on disk (``fold_store``), and the resumed run checks its plan is
the same before adding to it.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import data as data_module
from . import fold_store, locks, plan, records, schema
from .atomic import write_predictions_atomic
from .console import Console, FoldProgress
from .driver import drive
from .errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, DataError, RoadriskError, WriteFailed
from .executors import make_executor
from .executors.base import FoldData
from .folds import FoldResult, rmse
from .options import RESUME_FLAGS, TrainOptions
from .preparation import DataCache, prepare
from .records import Status
from .risk_formula import floor_rmse


@dataclass
class RunOutcome:
    exit_code: int
    run_dir: Path | None
    status: str


# ---------------------------------------------------------------- the commands

def train(opts: TrainOptions, executor=None) -> RunOutcome:
    """``roadrisk train``: a sweep of one run. ``executor`` (default: the one ``opts.executor`` names)."""
    run = TrainingRun.start(opts)
    return _drive_one(run, executor)


def resume(run_dir: Path, given: dict, command: str | None = None, executor=None, wait: bool = False) -> RunOutcome:
    """Continue an interrupted or failed run in ``run_dir``; ``given``: the run flags passed with --resume.
    ``wait``: queue behind a process that holds the run instead of refusing."""
    run = TrainingRun.reopen(run_dir, given, command, wait=wait)
    return _drive_one(run, executor)


def _drive_one(run: TrainingRun, executor) -> RunOutcome:
    job = None
    try:
        job = prepare(run, DataCache())
        if run.opts.dry_run:
            return run.guard(run.dry_run, close=False)
        executor = executor or make_executor(run.opts.executor, run.run_dir / records.LIBRARY_LOG_FILE)
        try:
            run.record["executor"] = executor.describe()
            run.record.save()
            drive([job], executor, FoldProgress(run.console, run.total_folds, done_before=len(run.results)))
        finally:
            executor.close()
        return job.outcome
    except (Exception, KeyboardInterrupt) as exc:
        if job is not None and not job.open:
            return job.outcome  # the driver has recorded how it ended (interrupted)
        return run.stopped_by(exc)
    finally:
        run.console.close()


class TrainingRun:
    """One run's folder, record and console, and what happens to them: ``accept`` a finished fold,
    ``finish`` (outputs and metrics), or stop as ``failed`` / ``interrupted`` with an exit code."""

    def __init__(self, opts: TrainOptions, run_dir: Path, record: records.RunRecord,
                 previous: records.RunRecord | None = None, stream=None, lock: locks.FolderLock | None = None):
        self.opts = opts
        self.lock = lock  # held while this process owns the run (locks.py); the process's end releases it
        self.run_dir = run_dir
        self.record = record
        self.previous = previous
        self.console = Console(run_dir / records.LOG_FILE, stream=stream)
        self.results: list[FoldResult] = []
        self.total_folds = 0
        self.started = time.perf_counter()
        self.plan: plan.RunPlan | None = None
        self.dataset: data_module.Dataset | None = None
        self.fold_data: FoldData | None = None
        self.fold_specs: list = []
        if previous is not None:
            self.console.line(f"resume: {run_dir} (was {previous['status']})")

    # ------------------------------------------------------------ opening a run

    @classmethod
    def start(cls, opts: TrainOptions, stream=None) -> TrainingRun:
        records.check_label(opts.label)
        run_dir = records.new_run_dir(opts.runs_dir, opts.label)
        lock = locks.take(run_dir, "this run")  # a new folder: nobody else has it, and --resume will ask
        record = records.RunRecord(run_dir, opts.label)
        record["command"] = opts.command
        record["options"] = opts.as_record()
        try:
            record.save()
        except WriteFailed:  # a full disk: leave no empty run folder behind, only the one-line error
            lock.release()
            for leftover in run_dir.iterdir():
                leftover.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                run_dir.rmdir()
            raise
        return cls(opts, run_dir, record, stream=stream, lock=lock)

    @classmethod
    def reopen(cls, run_dir: Path, given: dict, command: str | None = None, stream=None,
               wait: bool = False) -> TrainingRun:
        """An interrupted, failed or killed run, to be continued; refuses what cannot be continued.
        The run's lock comes first: two --resume of one run never train the same folds."""
        run_dir = Path(run_dir)
        records.RunRecord.load(run_dir)  # a folder that is no run is said as such, before any lock file
        lock = locks.take(run_dir, "this run", wait=wait)
        try:
            return cls._reopen_locked(run_dir, given, command, stream, lock)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def _reopen_locked(cls, run_dir: Path, given: dict, command, stream, lock) -> TrainingRun:
        previous = records.RunRecord.load(run_dir)  # read again: the holder we waited for may have changed it
        status = previous["status"]
        if status == Status.COMPLETE:
            raise RoadriskError(f"error: --resume {run_dir}: this run is already complete. Fix: nothing to do, or "
                                "start a new run")
        if status == Status.DRY_RUN:
            raise RoadriskError(f"error: --resume {run_dir}: a dry run trained nothing. Fix: run the same command "
                                "without --dry-run")
        # A record still saying "running" while we hold its lock was left by a process that died (kill -9, OOM):
        # the lock, not its pid (which a container reuses), says nobody is writing it.
        opts = TrainOptions.from_record(previous.data.get("options") or {})
        for name, value in given.items():
            if name in RESUME_FLAGS and getattr(opts, name) != value:
                flag = "--param" if name == "param_overrides" else "--" + name.replace("_", "-")
                raise RoadriskError(f"error: --resume {run_dir}: {flag} {value} differs from the run's "
                                    f"{getattr(opts, name)}. Fix: leave the flag out (a resumed run keeps its own "
                                    "settings) or start a new run")
        if "executor" in given:
            opts.executor = given["executor"]
        if given.get("data_dir") is not None:
            opts.data_dir = Path(given["data_dir"])
        opts.dry_run = False
        record = records.RunRecord(run_dir, previous["label"])
        record.hold_saves = True  # until the checks in prepare pass, the old record stays as it is
        for key in ("run_id", "started_at", "command", "options"):
            record[key] = previous.data.get(key)
        record["options"] = opts.as_record()
        record["resumes"] = [*previous.data.get("resumes", []),
                             {"at": records.now_iso(), "command": command, "from_status": status}]
        record["timings"]["before_resume_s"] = (previous["timings"] or {}).get("total_s") or 0.0
        return cls(opts, run_dir, record, previous=previous, stream=stream, lock=lock)

    # ------------------------------------------------------------ how a run stops

    def guard(self, step, close: bool = True) -> RunOutcome:
        """Run one step; a failure or interruption becomes the record's status and an exit code."""
        try:
            status = step()
            return RunOutcome(EXIT_OK, self.run_dir, status)
        except (Exception, KeyboardInterrupt) as exc:
            return self.stopped_by(exc)
        finally:
            if close:
                self.console.close()

    def stopped_by(self, exc: BaseException) -> RunOutcome:
        return self.interrupted() if isinstance(exc, KeyboardInterrupt) else self.failed(exc)

    def _stop(self, status: Status, error: str) -> None:
        self.record["timings"]["total_s"] = round(self.record["timings"].get("before_resume_s", 0.0)
                                                  + time.perf_counter() - self.started, 4)
        self.record.finish(status, error)

    def interrupted(self) -> RunOutcome:
        done = len(self.results)
        self._stop(Status.INTERRUPTED, f"interrupted after {done} finished fold(s)")
        where = records.shown(self.run_dir)
        self.console.line(f"interrupted: {done} fold(s) finished; record kept at {where}/{records.RUN_FILE}")
        if not self.record.hold_saves:
            self.console.line(f"continue with: roadrisk train --resume {where}")
        return RunOutcome(EXIT_INTERRUPTED, self.run_dir, Status.INTERRUPTED.value)

    def pruned(self, reason: str) -> RunOutcome:
        """Stopped on purpose by a tune's pruner: a result of its own, not a failure, and never resumed."""
        self._stop(Status.PRUNED, reason)
        self.console.line(f"pruned: {reason}; {len(self.results)} fold(s) kept at {records.shown(self.run_dir)}")
        return RunOutcome(EXIT_OK, self.run_dir, Status.PRUNED.value)

    def failed(self, exc: BaseException) -> RunOutcome:
        if isinstance(exc, DataError):
            self._stop(Status.FAILED, "\n".join(exc.problems))
            self.console.lines(exc.problems)
            return RunOutcome(exc.exit_code, self.run_dir, Status.FAILED.value)
        if isinstance(exc, RoadriskError):
            self._stop(Status.FAILED, str(exc))
            self.console.line(str(exc) if str(exc).startswith("error:") else f"error: {exc}")
            return RunOutcome(exc.exit_code, self.run_dir, Status.FAILED.value)
        if self.console.log_file:  # a crash: keep the traceback for debugging, give the user one line
            self.console.log_file.write("".join(traceback.format_exception(exc)))
        self._stop(Status.FAILED, f"{type(exc).__name__}: {exc}")
        where = records.shown(self.run_dir)
        kept = (f"; finished folds are kept: roadrisk train --resume {where}" if self.results
                else f"; resume with: roadrisk train --resume {where}")
        self.console.line(f"error: training failed: {type(exc).__name__}: {exc} "
                          f"(traceback in {where}/{records.LOG_FILE})" + ("" if self.record.hold_saves else kept))
        return RunOutcome(EXIT_FAILED, self.run_dir, Status.FAILED.value)

    # ------------------------------------------------------------ what the driver calls

    def accept(self, result: FoldResult) -> None:
        """A fold finished: on disk first, then in the record."""
        self._keep(result, saved=False)

    def _keep(self, result: FoldResult, saved: bool) -> None:
        if not saved:
            fold_store.save(self.run_dir, result)
        self.results.append(result)
        outputs = self.record["outputs"]
        outputs["folds"][str(result.index)] = fold_store.fold_file(result.index)
        if "models" in outputs and (self.run_dir / fold_store.model_file(result.index)).is_file():
            outputs["models"][str(result.index)] = fold_store.model_file(result.index)
        self.record["timings"]["folds"].append(result.timing_entry())
        self.record["metrics"]["folds"].append(result.metric_entry())
        if not saved:
            self.record.save()

    @property
    def complete(self) -> bool:
        return len(self.results) == self.total_folds

    def dry_run(self) -> str:
        """Everything a run would do, printed and recorded, without fitting anything: the plan's lines are
        the record's ``config`` key for key."""
        console = self.console
        console.lines(self.plan.lines())
        console.line("folds: " + ", ".join(f"{f.index + 1}: {len(f.train_idx)} train / {len(f.val_idx)} val"
                                           for f in self.fold_specs))
        self.record.finish(Status.DRY_RUN)
        console.lines(["status: dry-run (nothing was trained)", f"run_dir: {records.shown(self.run_dir)}"])
        return Status.DRY_RUN.value

    def finish(self) -> str:
        """The OOF and submission files, and the metrics against the floor when it is known."""
        record, dataset, run_dir, timings = self.record, self.dataset, self.run_dir, self.record["timings"]
        results = sorted(self.results, key=lambda r: r.index)  # parallel folds finish in any order
        target = self.fold_data.target
        record["metrics"]["folds"] = [r.metric_entry() for r in results]
        timings["folds"] = [r.timing_entry() for r in results]
        oof = np.full(len(target), np.nan)
        for result in results:
            oof[result.val_idx] = result.val_pred
        test_pred = np.clip(np.mean([r.test_pred for r in results], axis=0), 0.0, 1.0)
        write_predictions_atomic(run_dir / records.OOF_FILE, schema.ID, dataset.train[schema.ID].to_numpy(),
                                 schema.TARGET, oof)
        write_predictions_atomic(run_dir / records.SUBMISSION_FILE, schema.ID, dataset.test[schema.ID].to_numpy(),
                                 schema.TARGET, test_pred)
        metrics = record["metrics"]
        metrics["oof_rmse"] = round(rmse(target, oof), 6)
        fold_rmses = [r.rmse for r in results]
        metrics["fold_rmse_mean"] = round(float(np.mean(fold_rmses)), 6)
        metrics["fold_rmse_std"] = round(float(np.std(fold_rmses)), 6)
        if dataset.generated is not None:
            floor = floor_rmse(dataset.train, target)
            metrics["floor_rmse"] = round(floor, 6)
            metrics["gap_to_floor_pct"] = round(100.0 * (metrics["oof_rmse"] - floor) / floor, 3)
        else:
            metrics["floor_rmse"] = None
            metrics["gap_to_floor_pct"] = None
        record["outputs"].update({"oof": records.OOF_FILE, "submission": records.SUBMISSION_FILE,
                                  "log": records.LOG_FILE, "library_log": records.LIBRARY_LOG_FILE})
        timings["fit_total_s"] = round(sum(f["fit_s"] for f in timings["folds"]), 4)
        timings["predict_total_s"] = round(sum(f["predict_s"] for f in timings["folds"]), 4)
        timings["total_s"] = round(timings.get("before_resume_s", 0.0) + time.perf_counter() - self.started, 4)
        record.finish(Status.COMPLETE)
        floor_text = "None" if metrics["floor_rmse"] is None else format(metrics["floor_rmse"], ".6f")
        self.console.lines([
            "status: complete",
            f"oof_rmse: {metrics['oof_rmse']:.6f}",
            f"floor_rmse: {floor_text}",
            f"gap_to_floor_pct: {metrics['gap_to_floor_pct']}",
            f"total_s: {timings['total_s']:.1f}",
            f"run_dir: {records.shown(run_dir)}",
        ])
        return Status.COMPLETE.value
