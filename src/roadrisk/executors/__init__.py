"""Where folds run: in this process (``local.InlineExecutor``), in worker processes
(``local.ProcessExecutor``) or as Ray tasks (``ray.RayExecutor``), all behind one interface (``base``).

``ExecutorConfig`` is the one value that carries the executor flags (``--executor --jobs --address
--cpus-per-task --gpus-per-task``) from the command line or a sweep to ``make_executor``. This module
imports nothing heavy: a Ray worker that loads the epoch relay (``relay``) loads only this and that.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import RoadriskError

EXECUTORS = ("inline", "process", "ray")
RAY_ONLY = ("address", "cpus_per_task", "gpus_per_task")


@dataclass(frozen=True)
class ExecutorConfig:
    engine: str = "inline"  # inline | process | ray
    jobs: int = 1  # worker processes (process)
    address: str | None = None  # a Ray cluster (else RAY_ADDRESS, else a local Ray)
    cpus_per_task: float | None = None  # Ray: CPUs each fold reserves (default 1)
    gpus_per_task: float | None = None  # Ray: GPUs each fold reserves, fractions allowed (0.25: 4 folds a GPU)

    @classmethod
    def from_flags(cls, engine: str | None, jobs: int | None, address: str | None = None,
                   cpus_per_task: float | None = None, gpus_per_task: float | None = None,
                   usable_cpus=None) -> ExecutorConfig:
        """The flags as given (None: not given), checked against each other: a flag the chosen executor
        would ignore is an error, not a silent change of executor. ``--jobs N`` alone means processes;
        ``--executor process`` alone means one worker per usable CPU (``usable_cpus()``)."""
        if engine is None:
            engine = "process" if jobs is not None and jobs > 1 else "inline"
        if engine not in EXECUTORS:
            raise RoadriskError(f"error: --executor {engine}: use one of {', '.join(EXECUTORS)}")
        if engine == "inline" and jobs is not None and jobs > 1:
            raise RoadriskError(f"error: --jobs {jobs} with --executor inline: the inline executor runs one fold at a "
                                f"time. Fix: --executor process --jobs {jobs}, or drop --jobs")
        if engine == "ray" and jobs is not None:
            raise RoadriskError("error: --jobs with --executor ray: Ray sizes its workers from the cluster. Fix: drop "
                                "--jobs, and use --cpus-per-task to size each fold")
        given = {"address": address, "cpus_per_task": cpus_per_task, "gpus_per_task": gpus_per_task}
        stray = [name for name in RAY_ONLY if given[name] is not None]
        if engine != "ray" and stray:
            flag = "--" + stray[0].replace("_", "-")
            raise RoadriskError(f"error: {flag} is a Ray setting and --executor is {engine}. Fix: add --executor ray, "
                                f"or drop {flag}")
        if jobs is None:
            jobs = (usable_cpus() if usable_cpus else 1) if engine == "process" else 1
        return cls(engine, jobs, address, cpus_per_task, gpus_per_task)

    def as_dict(self) -> dict:
        return asdict(self)


def make_executor(config: ExecutorConfig, library_log: Path | None = None, fold_runner=None):
    """The executor ``config`` names. Ray is imported only when asked for; ``fold_runner`` (default
    ``folds.run_fold``) is what the inline executor calls for each fold, so a test can hand in its own."""
    if config.engine == "ray":
        from .ray import RayExecutor

        return RayExecutor(address=config.address, cpus_per_task=config.cpus_per_task,
                           gpus_per_task=config.gpus_per_task, library_log=library_log)
    from .local import InlineExecutor, ProcessExecutor

    if config.engine == "process":
        return ProcessExecutor(config.jobs)
    return InlineExecutor(fold_runner) if fold_runner else InlineExecutor()
