"""Finding and reading run records, read-only, with one clear message per unreadable one."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import records
from ..plan import COMPARABLE, key_values
from ..records import RUN_FILE, SWEEP_FILE, record_field


@dataclass
class Run:
    path: Path
    record: dict
    repeats: list = field(default_factory=list)  # older complete runs of the same label and setup (--pool)

    @property
    def label(self) -> str:
        return self.record.get("label", self.path.parent.name)

    @property
    def status(self) -> str:
        return self.record.get("status", "unknown")

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def kind(self) -> str:
        """``train``, or ``ensemble`` for a blend (no environment, device or fold timings of its own)."""
        return self.record.get("kind") or "train"

    @property
    def name(self) -> str:
        return getattr(self, "_name", None) or f"{self.label} ({self.path.name})"

    @name.setter
    def name(self, value: str) -> None:
        self._name = value


def name_runs(runs: list[Run]) -> None:
    """Call each run by its label, adding the run id only where two runs share a label."""
    labels = [r.label for r in runs]
    for run in runs:
        run.name = run.label if labels.count(run.label) == 1 else f"{run.label} ({run.path.name})"


@dataclass
class Selection:
    runs: list[Run] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)  # problems and notes, one line each


def read_run(run_dir: Path) -> tuple[Run | None, str | None]:
    """The run in ``run_dir`` (its record upgraded to the current schema), or None and the reason it cannot be used."""
    record, problem = records.read(run_dir)
    return (None, problem) if problem else (Run(Path(run_dir), record), None)


def select_explicit(run_dirs: list[Path]) -> Selection:
    selection = Selection()
    for run_dir in run_dirs:
        run, problem = read_run(run_dir)
        if problem:
            selection.messages.append(problem)
        if run:
            selection.runs.append(run)
    return selection


def _setup(run: Run) -> tuple:
    """The comparable keys plus the device: runs that may be pooled as repeats of one another."""
    return (*key_values(run.record, COMPARABLE).values(), record_field(run.record, ("device", "selected")))


def _sweep_note(folder: Path) -> str | None:
    """A folder with no run records of its own: a note if it is a sweep (compared on its own), else nothing."""
    if (folder / SWEEP_FILE).is_file() or any(folder.glob(f"*/*/{RUN_FILE}")):
        return f"note: {folder}: a sweep folder, not a label; compare it on its own with --runs-dir {folder}"
    return None


def select_latest(runs_dir: Path, pool: bool = False) -> Selection:
    """The latest complete run of each label; newer unfinished ones are said, and shown as such
    when a label has no complete run at all. With ``pool``, older complete runs of the same label
    and setup ride along as repeats, so speed-ups can see run-to-run noise.

    ``runs_dir`` may be a sweep's folder: its member labels are the labels, and ``sweep.json`` and
    any other file or folder without run records beside them are passed over quietly."""
    selection = Selection()
    if not runs_dir.is_dir():
        selection.messages.append(f"error: {runs_dir}: no such folder. Fix: make run-native (and make run-docker, "
                                  "make run-docker-mps) first, or pass --runs-dir")
        return selection
    labels = sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    for label_dir in labels:
        candidates = sorted((p for p in label_dir.iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True)
        if not any((p / RUN_FILE).is_file() for p in candidates):  # not a label: logs, or a sweep inside runs/
            note = _sweep_note(label_dir)
            if note:
                selection.messages.append(note)
            continue
        newer_unfinished: list[Run] = []
        chosen = None
        for candidate in candidates:
            run, problem = read_run(candidate)
            if problem:
                selection.messages.append(problem.replace("error:", "skipped:", 1))
                continue
            if run.status == "dry-run":  # a plan, not a result
                continue
            if run.complete and chosen is None:
                chosen = run
                if not pool:
                    break
            elif run.complete and chosen.kind == "train" and _setup(run) == _setup(chosen):
                chosen.repeats.append(run)
            elif chosen is None:
                newer_unfinished.append(run)
        for run in newer_unfinished:
            selection.messages.append(f"note: {run.path}: status {run.status}"
                                      + (f"; using the older complete run {chosen.path.name}" if chosen else ""))
        if chosen:
            selection.runs.append(chosen)
            if chosen.repeats:
                selection.messages.append(f"note: {label_dir.name}: pooling {len(chosen.repeats) + 1} complete runs "
                                          "of the same setup")
        elif newer_unfinished:
            selection.runs.append(newer_unfinished[0])  # shown as failed/interrupted, never a baseline
    if not selection.runs and not any(m.startswith("skipped:") for m in selection.messages):
        selection.messages.append(f"error: {runs_dir}: holds no runs. Fix: make run-native (and make run-docker, "
                                  "make run-docker-mps) first")
    return selection
