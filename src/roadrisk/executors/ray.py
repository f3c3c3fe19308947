"""Folds on Ray: a local Ray started for the run, or a cluster named by ``--address`` / ``RAY_ADDRESS``.

Each fold is one Ray task. The features and target of a run go to Ray's object store once (every
fold of the run, and every member of a sweep on the same data, reads the same object), and each
result comes back to the driver, which writes every record: no worker needs a shared disk. A worker
that dies is retried by Ray (``max_retries``); an exception in our code is not, except CUDA running
out of memory, which is retried once with a whole GPU to itself. Epochs reach the driver through a
small actor the tasks report to; Ray's own logging goes to the run's library log, not the terminal.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from pathlib import Path

from ..errors import RoadriskError
from ..models import MODELS
from ..quiet import library_output_to
from .base import Cancels, FoldTask, NullProgress, run_task
from .relay import EpochRelay

WORKER_DEATH_RETRIES = 3
POLL_S = 0.5


class CudaOutOfMemory(RuntimeError):
    """Raised by a task whose fold ran out of GPU memory: the driver retries it alone on a GPU."""


def _import_ray():
    try:
        import ray
    except ImportError:
        raise RoadriskError("error: --executor ray: Ray is not installed. Fix: pip install 'roadrisk[ray]' "
                            "(the nox sessions and `make sweep` install it), or use --executor inline|process") from None
    return ray


class RayExecutor(Cancels):
    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_task: float | None = None,
                 gpus_per_task: float | None = None, library_log: Path | None = None):
        ray = _import_ray()
        self.ray = ray
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.cpus_per_task = cpus_per_task or 1
        self.gpus_per_task = gpus_per_task or 0
        self.started_here = not ray.is_initialized()
        if self.started_here:
            init = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                        configure_logging=True)
            if self.address:
                init["address"] = self.address
            else:
                from ..environment import usable_cpus

                init["num_cpus"] = usable_cpus()[0]  # a local Ray gets the CPUs this process may use
            sink = library_log or Path(os.devnull)
            with library_output_to(sink):  # "Started a local Ray instance." and friends
                try:
                    ray.init(**init)
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    where = self.address or "a local Ray"
                    raise RoadriskError(f"error: --executor ray: cannot start or reach {where} ({exc}). Fix: check "
                                        "--address / RAY_ADDRESS (e.g. auto on a cluster node, or host:6379)") from None
        resources = ray.cluster_resources()
        self.workers = max(1, int(resources.get("CPU", 1) // self.cpus_per_task))
        if self.gpus_per_task:
            self.workers = min(self.workers, max(1, int(resources.get("GPU", 0) / self.gpus_per_task)))
        self._data_refs: dict[int, object] = {}
        self._starts: dict = {}  # task key -> times a worker started it
        self._fold = ray.remote(max_retries=WORKER_DEATH_RETRIES, retry_exceptions=False)(_ray_fold)
        self._relay = ray.remote(num_cpus=0)(EpochRelay).remote()

    def describe(self) -> dict:
        ray = self.ray
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        return {"engine": "ray", "version": ray.__version__, "address": self.address or "local",
                "nodes": len(nodes), "resources": {k: v for k, v in ray.cluster_resources().items()
                                                   if k in ("CPU", "GPU", "memory", "object_store_memory")},
                "cpus_per_task": self.cpus_per_task, "gpus_per_task": self.gpus_per_task, "workers": self.workers}

    def _data_ref(self, task: FoldTask):
        """The task's features and target in the object store: put once per run (or per shared data)."""
        key = id(task.data)
        if key not in self._data_refs:
            self._data_refs[key] = self.ray.put(task.data)
        return self._data_refs[key]

    def _submit(self, task: FoldTask, whole_gpu: bool = False):
        gpus = 1 if whole_gpu else self.gpus_per_task
        options = {"num_cpus": self.cpus_per_task, "num_gpus": gpus}
        threads = max(1, int(self.cpus_per_task))
        slim = replace(task, spec=replace(task.spec, threads=threads), data=None)  # the data goes by reference
        return self._fold.options(**options).remote(slim, self._data_ref(task), self._relay, gpus)

    def run(self, tasks: list[FoldTask], progress=None):
        ray, progress = self.ray, progress or NullProgress()
        by_key = {task.key: task for task in tasks}
        pending = {self._submit(task): task for task in tasks}
        retried_alone: set = set()
        progress.spread(len(tasks), self.workers, max(1, int(self.cpus_per_task)))
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                self._relay_events(by_key, progress)
                for ref in done:
                    task = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:
                        cause = exc.as_instanceof_cause()
                        if isinstance(cause, CudaOutOfMemory) and task.key not in retried_alone:
                            retried_alone.add(task.key)  # once, with a whole GPU to itself
                            pending[self._submit(task, whole_gpu=True)] = task
                            continue
                        yield task, None, cause
                        continue
                    except ray.exceptions.RayError as exc:  # the worker died more often than Ray retries
                        yield task, None, RuntimeError(f"Ray lost the task: {type(exc).__name__}: {exc}")
                        continue
                    self._relay_events(by_key, progress)
                    result.where["attempts"] = self._starts.get(task.key, 1)  # Ray's retries, seen by the driver
                    progress.finished(task, result)
                    yield task, result, None
                for ref, task in list(pending.items()):  # a pruned run's folds: queued or running, stop them
                    if self.cancelled(task):
                        ray.cancel(ref, force=True)
                        del pending[ref]
        finally:
            for ref in pending:  # Ctrl-C or an error: stop what still runs
                ray.cancel(ref, force=True)

    def _relay_events(self, by_key: dict, progress) -> None:
        for kind, key, payload in self.ray.get(self._relay.drain.remote()):
            task = by_key.get(key)
            if task is None:
                continue
            if kind == "started":
                self._starts[key] = self._starts.get(key, 0) + 1
                progress.started(task)
            else:
                progress.epoch(task, payload)

    def close(self) -> None:
        if self.started_here and self.ray.is_initialized():
            self.ray.shutdown()


def _ray_fold(task: FoldTask, data, relay, gpus: float):
    """The Ray task: one fold on whichever node Ray chose, reported back with where it ran."""
    import ray

    started = time.time()
    relay.post.remote("started", task.key)
    if task.spec.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError(f"this Ray worker ({ray.util.get_node_ip_address()}) has no usable CUDA device; "
                               "give GPU folds --gpus-per-task on a cluster whose workers have GPUs")
    if MODELS[task.spec.model].uses_torch:
        import torch

        torch.set_num_threads(task.spec.threads)
    log = Path(os.devnull)  # workers may be other machines: their library output stays there
    try:
        result = run_task(replace(task, library_log=log), lambda event: relay.post.remote("epoch", task.key, event),
                          data=data)
    except Exception as exc:
        if type(exc).__name__ == "OutOfMemoryError" and type(exc).__module__.startswith("torch"):
            raise CudaOutOfMemory(str(exc)) from None
        raise
    context = ray.get_runtime_context()
    result.where = {**result.where, "node_id": context.get_node_id(), "node_ip": ray.util.get_node_ip_address(),
                    "gpu_ids": [str(g) for g in ray.get_gpu_ids()], "gpu_fraction": gpus,
                    "task_id": context.get_task_id(), "started_at": started, "finished_at": time.time()}
    return result
