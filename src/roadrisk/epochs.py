"""Per-epoch progress from inside a pytabkit fit, through pytabkit's own logging hook.

pytabkit hands every fit a ``Logger`` (``pytabkit.models.training.logging``) and reports each epoch's
validation score to it: TabM as ``(val) -0.0501`` (a score, minus the RMSE, to 4 places) and RealMLP
as ``Epoch 3/10: val rmse = 0.050123``. During a fit, ``observe_epochs`` swaps in a logger that turns
those two messages into ``EpochEvent``s and sends nothing to the screen. The formats belong to the
pinned pytabkit (1.7.3); tests/test_epochs.py trains both models for real, so a change shows there.

The gradient-boosting libraries report through their own callbacks instead (``boosting.py``): during
``observe_epochs`` they find the fold's tracker with ``active_tracker`` and record a round every N.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

_TABM_VAL = re.compile(r"^\(val\) (-?[0-9.]+(?:e-?\d+)?)$")
_REALMLP_VAL = re.compile(r"^Epoch (\d+)/(\d+): val rmse = ([0-9.]+(?:e-?\d+)?)$")


@dataclass(frozen=True)
class EpochEvent:
    epoch: int  # 1-based
    max_epochs: int | None  # None: no cap, early stopping decides
    val_rmse: float
    best_rmse: float
    best_epoch: int
    patience_left: int | None  # epochs without improvement still allowed (TabM's early stopping)
    elapsed_s: float  # since the fit started
    digits: int = 6  # decimals the library reported the RMSE with (TabM: 4)
    unit: str = "epoch"  # what one step is called on the console: "round" for a boosting library

    @property
    def seconds_per_epoch(self) -> float:
        return self.elapsed_s / self.epoch

    def as_dict(self) -> dict:
        return asdict(self)


class EpochTracker:
    """Turns validation scores into events with the best so far and the patience left."""

    def __init__(self, on_epoch: Callable[[EpochEvent], None] | None, max_epochs: int | None,
                 patience: int | None):
        self.on_epoch = on_epoch
        self.max_epochs = max_epochs
        self.patience = patience
        self.started = time.perf_counter()
        self.events: list[EpochEvent] = []

    def record(self, val_rmse: float, epoch: int | None = None, max_epochs: int | None = None,
               digits: int = 6, best: tuple[float, int] | None = None, unit: str = "epoch") -> None:
        """``best``: (RMSE, epoch) of the best step so far, when the caller saw steps it did not record
        (a boosting library reports every round, the console gets every Nth)."""
        epoch = epoch or len(self.events) + 1
        previous = self.events[-1] if self.events else None
        if best is not None:
            best_rmse, best_epoch = best
        elif previous is None or val_rmse < previous.best_rmse:
            best_rmse, best_epoch = val_rmse, epoch
        else:
            best_rmse, best_epoch = previous.best_rmse, previous.best_epoch
        patience_left = None if self.patience is None else self.patience - (epoch - best_epoch)
        event = EpochEvent(epoch, max_epochs or self.max_epochs, val_rmse, best_rmse, best_epoch, patience_left,
                           time.perf_counter() - self.started, digits, unit)
        self.events.append(event)
        if self.on_epoch is not None:
            self.on_epoch(event)

    def summary(self) -> dict:
        """What run.json keeps of a fold's epochs: how many ran, which one was kept, and the validation
        curve as ``[epoch, val_rmse]`` pairs (every recorded step: a boosting library's every Nth round)."""
        if not self.events:
            return {}
        last = self.events[-1]
        return {"epochs": last.epoch, "best_epoch": last.best_epoch, "best_val_rmse": round(last.best_rmse, 6),
                "curve": [[event.epoch, round(event.val_rmse, 6)] for event in self.events]}


def _make_logger(tracker: EpochTracker):
    from pytabkit.models.training.logging import Logger

    class EpochLogger(Logger):
        """pytabkit's logger interface: everything it is told is parsed, nothing is printed."""

        def __init__(self, verbosity_level=0):
            super().__init__(verbosity_level=2)  # RealMLP reports epochs at level 2, TabM at 1

        def force_log(self, content: str) -> None:
            text = str(content).strip()
            match = _TABM_VAL.match(text)
            if match:
                tracker.record(-float(match.group(1)), digits=4)  # TabM logs a score, minus the RMSE, to 4 places
                return
            match = _REALMLP_VAL.match(text)
            if match:
                tracker.record(float(match.group(3)), int(match.group(1)), int(match.group(2)))

    return EpochLogger


_ACTIVE: contextvars.ContextVar[EpochTracker | None] = contextvars.ContextVar("roadrisk_epoch_tracker", default=None)


def active_tracker() -> EpochTracker | None:
    """The tracker of the ``observe_epochs`` block this fit runs in, if any (a library callback's way in)."""
    return _ACTIVE.get()


@contextlib.contextmanager
def observe_epochs(on_epoch: Callable[[EpochEvent], None] | None, max_epochs: int | None,
                   patience: int | None, pytabkit: bool = True) -> Iterator[EpochTracker]:
    """Within this block, fits report their epochs to the returned tracker (and ``on_epoch``): pytabkit's
    through its logger (``pytabkit``), the boosting libraries through ``active_tracker``.
    ``max_epochs`` None: no cap, early stopping with ``patience`` decides."""
    tracker = EpochTracker(on_epoch, max_epochs, patience)
    token = _ACTIVE.set(tracker)
    try:
        if not pytabkit:  # importing pytabkit would load torch for a model that never uses it
            yield tracker
            return
        from pytabkit.models.sklearn import sklearn_base

        original = sklearn_base.StdoutLogger
        sklearn_base.StdoutLogger = _make_logger(tracker)  # the one name pytabkit's fit builds its logger from
        try:
            yield tracker
        finally:
            sklearn_base.StdoutLogger = original
    finally:
        _ACTIVE.reset(token)
