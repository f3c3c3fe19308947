"""What a person sees: log lines to the terminal and ``train.log``, progress with an ETA.

On a terminal the progress line redraws in place and ticks while a fold trains; elsewhere (CI, a
container's log, a pipe) progress comes as plain lines that diff well.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from .errors import WriteFailed


def _fmt_seconds(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


class Console:
    def __init__(self, log_path: Path | None = None, stream: TextIO | None = None):
        # Keep the real stream: library output is redirected during fits, the user's is not.
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.log_path = log_path
        try:
            self.log_file = open(log_path, "a", encoding="utf-8") if log_path else None
        except OSError as exc:  # a read-only or full runs folder
            raise WriteFailed(log_path, exc) from exc
        self._lock = threading.Lock()
        self._status = ""

    def line(self, text: str = "") -> None:
        with self._lock:
            self._clear_status()
            self.stream.write(text + "\n")
            self.stream.flush()
            self._log(text)

    def log_line(self, text: str) -> None:
        """A line for train.log only (a terminal shows it in the live status line instead)."""
        with self._lock:
            self._log(text)

    def _log(self, text: str) -> None:
        if not self.log_file:
            return
        try:
            self.log_file.write(text + "\n")
            self.log_file.flush()
        except OSError as exc:
            # A full or read-only disk: the step that wrote fails, naming the log; later lines (that
            # failure's among them) still reach the terminal, and the log is not tried again.
            broken, self.log_file = self.log_file, None
            with contextlib.suppress(OSError):
                broken.close()
            raise WriteFailed(self.log_path, exc) from exc

    def lines(self, texts) -> None:
        for text in texts:
            self.line(text)

    def status(self, text: str) -> None:
        """A transient progress line: redrawn on a terminal, never written to the log."""
        if not self.tty:
            return
        with self._lock:
            self._clear_status()
            self.stream.write(text)
            self.stream.flush()
            self._status = text

    def _clear_status(self) -> None:
        if self.tty and self._status:
            self.stream.write("\r" + " " * len(self._status) + "\r")
            self._status = ""

    def close(self) -> None:
        with self._lock:
            self._clear_status()
        if self.log_file:
            with contextlib.suppress(OSError):  # what the disk refused was already reported
                self.log_file.close()
            self.log_file = None


class FoldProgress:
    """Progress over a run's folds and, for torch models, the epochs inside each: plain lines in
    train.log (and on a stream that is not a terminal), a live line redrawn on a terminal. The
    executors call ``spread``, ``started``, ``epoch`` and ``finished`` (executors.NullProgress)."""

    def __init__(self, console: Console, total: int, workers: int = 1, done_before: int = 0):
        self.console = console
        self.total = total
        self.workers = workers
        self.done_before = done_before  # folds a resumed run took from disk
        self.durations: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_epoch = ""

    @property
    def done(self) -> int:
        return self.done_before + len(self.durations)

    def spread(self, tasks: int, workers: int, threads: int) -> None:
        self.workers = workers
        if workers > 1:
            self.console.line(f"progress: {tasks} folds on {workers} workers, {threads} thread(s) each")

    def started(self, task) -> None:
        index = task.spec.index
        self._last_epoch = ""
        if not self.console.tty:
            self.console.line(f"progress: fold {index + 1}/{self.total} started, {self.eta()}")
            return
        if self.workers > 1:
            return  # several folds at once: epochs and finished folds say it; no single ticker
        self._halt_ticker()
        self._stop.clear()
        fold_start = time.perf_counter()

        def tick():
            while not self._stop.wait(0.5):
                elapsed = time.perf_counter() - fold_start
                self.console.status(self._last_epoch + f" | {_fmt_seconds(elapsed)} in fold" if self._last_epoch else
                                    f"fold {index + 1}/{self.total} training {_fmt_seconds(elapsed)}, {self.eta(elapsed)}")

        self._thread = threading.Thread(target=tick, daemon=True)
        self._thread.start()

    def epoch(self, task, event) -> None:
        """One epoch of a fold finished (an ``epochs.EpochEvent``)."""
        text = epoch_line(task.spec.index, self.total, event, self.done, self.workers, self.durations)
        self._last_epoch = text
        if self.console.tty:  # the live line shows it (redrawn by the ticker); the log keeps every epoch
            self.console.log_line(text)
            self.console.status(text)
        else:
            self.console.line(text)

    def finished(self, task, result) -> None:
        if self.workers == 1:
            self._halt_ticker()
        duration = sum(result.timings.values())
        self.durations.append(duration)
        self.console.line(f"fold {result.index + 1}/{self.total}: rmse {result.rmse:.6f}, {duration:.1f}s, "
                          f"{self.done}/{self.total} done, {self.eta()}")

    def eta(self, elapsed_in_fold: float = 0.0) -> str:
        if not self.durations:
            return "eta after the first fold"
        mean = sum(self.durations) / len(self.durations)
        remaining = (self.total - self.done) * mean / self.workers - elapsed_in_fold
        return f"eta {_fmt_seconds(remaining)}"

    def _halt_ticker(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
            self._thread = None

    def close(self) -> None:
        self._halt_ticker()


def epoch_line(index: int, total: int, event, done: int, workers: int, durations: list[float]) -> str:
    """``fold 2/5 epoch 12/20: val_rmse ..., best ... (epoch 9), 3.1s/epoch, fold eta 25s, run eta 2m05s``.
    Without an epoch cap the fold ends when patience runs out, so the etas are lower bounds (``>=``).
    A boosting library's steps are rounds (``fold 1/5 round 300/2000: ...``), far shorter than an epoch."""
    per_epoch = event.seconds_per_epoch
    unit = getattr(event, "unit", "epoch")
    if event.max_epochs:
        where = f"{unit} {event.epoch}/{event.max_epochs}"
        # Early stopping can end a capped boosting fit long before its cap: the etas are upper bounds then.
        fold_left, bound = (event.max_epochs - event.epoch) * per_epoch, "<= " if unit == "round" else ""
    else:
        where = f"{unit} {event.epoch}"
        fold_left, bound = (event.patience_left + 1) * per_epoch, ">= "
    folds_after = max(0, total - done - workers)
    fold_estimate = (sum(durations) / len(durations) if durations
                     else (event.max_epochs or event.epoch + event.patience_left + 1) * per_epoch)
    run_left = fold_left + folds_after * fold_estimate / workers
    digits = event.digits
    rate = f"{per_epoch * 1000:.1f}ms/{unit}" if unit == "round" else f"{per_epoch:.1f}s/{unit}"
    return (f"fold {index + 1}/{total} {where}: val_rmse {event.val_rmse:.{digits}f}, "
            f"best {event.best_rmse:.{digits}f} ({unit} {event.best_epoch}), {rate}"
            + (f", patience {event.patience_left} left" if event.patience_left is not None else "")
            + f", fold eta {bound}{_fmt_seconds(fold_left)}, run eta {bound}{_fmt_seconds(run_left)}")
