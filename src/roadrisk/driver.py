"""The one loop that trains: every job's folds through one executor, with one failure policy.

``roadrisk train`` is a sweep of one job and ``roadrisk sweep`` a sweep of many (``roadrisk tune``
a sweep per round of trials); all hand their prepared jobs to ``drive``. The policy, the same for
all: a fold that fails fails its job (its record says why) and the other jobs go on; a job whose
last fold arrives is finished at once (its outputs and metrics written); Ctrl-C or SIGTERM stops
every unfinished job as ``interrupted`` with its finished folds kept, then propagates. A tune adds
one more way to end: ``should_stop(job)``, asked after each fold that leaves the job unfinished, may
prune it (its other folds are cancelled).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from .executors.base import FoldTask


@dataclass
class Job:
    """One run in the loop: its ``TrainingRun`` and the folds it still needs."""

    key: str
    run: object  # trainer.TrainingRun
    tasks: list[FoldTask] = field(default_factory=list)
    outcome: object | None = None  # trainer.RunOutcome once the job has ended

    @property
    def open(self) -> bool:
        return self.outcome is None


def drive(jobs: list[Job], executor, progress, on_end: Callable[[Job], None] = lambda job: None,
          should_stop: Callable[[Job], str | None] = lambda job: None) -> None:
    """Train every open job's missing folds on ``executor``; ``on_end(job)`` as each job ends.
    ``should_stop(job)``: a reason to prune the job after a fold, or None to go on."""

    def end(job: Job, outcome) -> None:
        job.outcome = outcome
        job.run.console.close()
        on_end(job)

    for job in jobs:  # every fold already on disk (a resumed run): nothing to send anywhere
        if job.open and job.run.complete:
            end(job, job.run.guard(job.run.finish, close=False))
    by_key = {job.key: job for job in jobs}
    tasks = [replace(task, key=(job.key, task.key)) for job in jobs if job.open for task in job.tasks]
    try:
        for task, result, error in executor.run(tasks, progress) if tasks else ():
            job = by_key[task.key[0]]
            if not job.open:
                continue  # a job that already failed: its other folds no longer count
            if error is not None:
                end(job, job.run.failed(error))
                continue
            job.run.accept(result)
            if job.run.complete:
                end(job, job.run.guard(job.run.finish, close=False))
            elif (reason := should_stop(job)) is not None:
                executor.cancel(job.key)  # its folds not yet started never start
                end(job, job.run.pruned(reason))
    except KeyboardInterrupt:
        for job in jobs:
            if job.open:
                end(job, job.run.interrupted())
        raise
    finally:
        progress.close()

