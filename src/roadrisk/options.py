"""The options of one training run, as given: what ``roadrisk train`` (or a sweep member) asks for, and
what run.json keeps (``options``) so that ``--resume`` can continue the run as it was started."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .executors import ExecutorConfig


@dataclass
class TrainOptions:
    data_dir: Path | None = None
    profile: str | None = None  # None: quick, or full with --data-dir (real data deserves the real recipe)
    model: str | None = None  # None: the profile's
    recipe: str | None = None  # None: the profile's (seed on full)
    device: str = "auto"
    strict_device: bool = False
    folds: int | None = None
    seed: int = 42  # model initialisation
    cv_seed: int = 42  # the folds (the seed's KFold random_state)
    data_seed: int = 42  # the embedded data; unused with data_dir
    target: str = "raw"  # raw | residual
    cv: str = "kfold"  # kfold | stratified
    cv_bins: int | None = None  # quantile bins for --cv stratified (None: plan.DEFAULT_CV_BINS)
    label: str = "native"
    runs_dir: Path = Path("runs")
    matmul_precision: str | None = None  # None: the recipe's and device's default
    param_overrides: dict = field(default_factory=dict)
    save_models: bool = False
    dry_run: bool = False
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)  # how folds are spread; may change on --resume
    command: str | None = None

    def as_record(self) -> dict:
        """What run.json keeps to resume the run: the options as given, JSON-safe."""
        out = asdict(self)
        out["data_dir"] = None if self.data_dir is None else str(Path(self.data_dir).resolve())
        out["runs_dir"] = str(self.runs_dir)
        return out

    @classmethod
    def from_record(cls, saved: dict) -> TrainOptions:
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in saved.items() if key in known}
        if values.get("data_dir") is not None:
            values["data_dir"] = Path(values["data_dir"])
        values["runs_dir"] = Path(values.get("runs_dir", "runs"))
        executor = saved.get("executor")
        if isinstance(executor, dict):
            values["executor"] = ExecutorConfig(**executor)
        else:  # schema 2 kept the executor flags loose beside the other options
            values["executor"] = ExecutorConfig(executor or "inline", saved.get("jobs") or 1, saved.get("address"),
                                                saved.get("cpus_per_task"), saved.get("gpus_per_task"))
        return cls(**values)


# Options that decide what a run computes: --resume takes them from the run itself, and one given with
# --resume must agree with the run. The executor (how folds are spread) may change, and so may --data-dir
# (the folder moved): the plan's data fingerprint then checks it holds the same files.
RESUME_FLAGS = ("profile", "model", "recipe", "device", "strict_device", "folds", "seed", "cv_seed",
                "data_seed", "target", "cv", "cv_bins", "matmul_precision", "param_overrides", "save_models")
