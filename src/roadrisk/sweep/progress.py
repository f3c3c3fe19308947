"""What a person sees of a sweep: a line per finished fold and member with members done, running and
queued, the best OOF RMSE so far and an ETA; each member's own train.log gets its folds and epochs."""

from __future__ import annotations

import time

from ..console import FoldProgress, _fmt_seconds


class SweepProgress:
    """The executors' progress hooks (executors.NullProgress), for a sweep's tasks keyed (member, fold)."""

    def __init__(self, console, members: dict, tasks: int, echo_line, everyone: list | None = None,
                 overall=None):
        self.console = console
        self.members = members  # job key -> member state, for the members training now
        self.everyone = everyone  # every member's state, reused ones too (for the counts)
        self.tasks = tasks
        self.echo = echo_line
        self.workers = 1
        self.durations: list[float] = []
        self.started_at = time.perf_counter()
        self._member_progress: dict[str, FoldProgress] = {}
        self.overall = overall  # what the end of each line says instead of the members' counts (a tune's trials)

    def _member(self, task) -> FoldProgress:
        state = self.members[task.key[0]]
        if state.id not in self._member_progress:
            run = state.run
            self._member_progress[state.id] = FoldProgress(run.console, run.total_folds, workers=self.workers,
                                                           done_before=len(run.results))
        return self._member_progress[state.id]

    def spread(self, tasks: int, workers: int, threads: int) -> None:
        self.workers = workers
        self.echo(f"progress: {tasks} folds of {len(self.members)} members on {workers} worker(s), "
                  f"{threads} thread(s) each")

    def started(self, task) -> None:
        state = self.members[task.key[0]]
        if state.status == "queued":
            from .. import records

            state.status, state.started_at = "running", records.now_iso()
        self._member(task).started(task)

    def epoch(self, task, event) -> None:
        self._member(task).epoch(task, event)

    def finished(self, task, result) -> None:
        self._member(task).finished(task, result)
        self.durations.append(sum(result.timings.values()))
        state = self.members[task.key[0]]
        self.echo(f"fold: {state.id} {result.index + 1}/{state.run.total_folds} rmse {result.rmse:.6f} "
                  f"{sum(result.timings.values()):.1f}s | {self.summary()}")

    def member_done(self, state) -> None:
        rmse = "–" if state.oof_rmse is None else f"{state.oof_rmse:.6f}"
        self.echo(f"member: {state.id} {state.status}, oof_rmse {rmse} | {self.summary()}")

    def summary(self) -> str:
        if self.overall is not None:
            return self.overall()
        states = self.everyone if self.everyone is not None else list(self.members.values())
        done = sum(s.status in ("complete", "failed") for s in states)
        running = sum(s.status == "running" for s in states)
        queued = sum(s.status == "queued" for s in states)
        scored = [s for s in states if s.oof_rmse is not None]
        best = min(scored, key=lambda s: s.oof_rmse) if scored else None
        left = self.tasks - len(self.durations)
        eta = (f"eta {_fmt_seconds(left * sum(self.durations) / len(self.durations) / self.workers)}"
               if self.durations else "eta after the first fold")
        best_text = f"best {best.oof_rmse:.6f} ({best.id})" if best else "best –"
        return f"members {done}/{len(states)} done, {running} running, {queued} queued, {best_text}, {eta}"

    def close(self) -> None:
        for progress in self._member_progress.values():
            progress.close()
