"""The ``roadrisk`` command line: parse, dispatch, and turn every outcome into an exit code.

Exit codes: 0 done; 1 crashed; 2 bad input or usage; 3 requested device unavailable under
``--strict-device``; 130 interrupted. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import shlex
import signal
import sys
from pathlib import Path

# Before anything imports torch, which reads it once: on MPS an op Metal lacks runs on the CPU
# instead of stopping the run (docs/devices.md, MPS). A user's own setting wins; elsewhere it is inert.
os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")

from .device import DEVICES, PRECISIONS  # noqa: E402
from .errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, DataError, RoadriskError, WriteFailed  # noqa: E402
from .models import MODELS  # noqa: E402
from .plan import CV_SCHEMES, DEFAULT_CV_BINS, MAX_FOLDS, TARGETS  # noqa: E402
from .profiles import DEFAULT_PROFILE, PROFILES  # noqa: E402
from .recipes import RECIPE_ALIASES, RECIPES, alias_notice, resolve_recipe  # noqa: E402

_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that names the flag and where to look, and flags are never
    abbreviated (``--fold 3`` for ``--folds 3`` would slip past --resume's check of the flags given)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # noqa: D401 - argparse's signature
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _seed(text: str) -> int:
    """numpy's and torch's generators take seeds below 2**32; a larger one failed inside the first fold."""
    value = _non_negative(text)
    if value >= 2**32:
        raise argparse.ArgumentTypeError(f"must be in [0, {2**32 - 1}], got {text}")
    return value


def _key_value(text: str) -> tuple[str, object]:
    import ast

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    words = {"true": True, "false": False, "none": None, "null": None}  # what a shell user types for Python's
    if raw.strip().lower() in words:
        return key.strip(), words[raw.strip().lower()]
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw  # a bare word such as tabm-mini or auto
    return key.strip(), value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _fold_count(text: str) -> int:
    value = _at_least_two(text)
    if value > MAX_FOLDS:
        raise argparse.ArgumentTypeError(f"at most {MAX_FOLDS} folds, got {text}")
    return value


def _at_least_two(text: str) -> int:
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"needs at least 2 folds, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _add_executor_flags(parser: argparse.ArgumentParser) -> None:
    """How folds are spread: the same flags for train and sweep (docs/sweep.md). Defaults are None, so
    ``ExecutorConfig.from_flags`` can tell a flag given from one left out."""
    from .executors import EXECUTORS

    parser.add_argument("--executor", choices=EXECUTORS,
                        help="inline: one fold after another here (default); process: --jobs worker processes; "
                             "ray: a local Ray, or the cluster --address/RAY_ADDRESS names")
    parser.add_argument("--jobs", type=_positive,
                        help="worker processes for --executor process (default: the usable CPUs); --jobs N alone "
                             "means --executor process")
    parser.add_argument("--address", help="Ray cluster address (e.g. auto on a cluster node, or head:6379); "
                                          "default RAY_ADDRESS, else a local Ray")
    parser.add_argument("--cpus-per-task", type=_fraction, help="Ray: CPUs each fold reserves (default 1)")
    parser.add_argument("--gpus-per-task", type=_fraction,
                        help="Ray: GPUs each fold reserves; fractions share a GPU (0.25: four folds a GPU; memory is "
                             "not partitioned)")


def _add_track_flag(parser: argparse.ArgumentParser, what: str) -> None:
    from .tracking import TRACK_CHOICES  # names only: mlflow loads when a run is logged

    parser.add_argument("--track", choices=TRACK_CHOICES,
                        help=f"mlflow: log {what} to MLflow when it ends (the [track] extra; MLFLOW_TRACKING_URI, "
                             "else RUNS_DIR/mlflow.db; docs/tracking.md); none: do not, even with MLFLOW_TRACKING_URI "
                             "set (default: mlflow when it is set)")


def _executor_config(args):
    from .environment import usable_cpus
    from .executors import ExecutorConfig

    return ExecutorConfig.from_flags(args.executor, args.jobs, args.address, args.cpus_per_task, args.gpus_per_task,
                                     usable_cpus=lambda: usable_cpus()[0])


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="roadrisk", description="Train the road-accident-risk model on any device.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    _add_train(sub)
    _add_campaigns(sub)
    _add_tools(sub)
    return parser


def _add_train(sub) -> None:
    """``roadrisk train``: one run, and ``--resume``."""
    train = sub.add_parser("train", help="train with K-fold CV and write a run to runs/<label>/")
    train.add_argument("--data-dir", type=Path, help="folder with train.csv and test.csv "
                       "(and optionally the original synthetic_road_accidents_2k/_10k/_100k.csv: all present are "
                       "joined); default: the embedded data")
    train.add_argument("--profile", choices=sorted(PROFILES),
                       help=f"run size (default {DEFAULT_PROFILE}; full with --data-dir): " +
                       "; ".join(f"{p.name}: {p.purpose}" for p in PROFILES.values()))
    train.add_argument("--model", choices=sorted(MODELS), help="default: the profile's model")
    train.add_argument("--recipe", choices=sorted([*RECIPES, *RECIPE_ALIASES]), metavar="{" + ",".join(sorted(RECIPES)) + "}",
                       help="how the model trains (default: reference on full, fast on smoke/quick; the old name "
                       "'seed' still means reference): " +
                       "; ".join(f"{r.name}: {r.description}" for r in RECIPES.values()))
    train.add_argument("--device", choices=DEVICES, default="auto", help="auto picks CUDA, then MPS, then CPU")
    train.add_argument("--strict-device", action="store_true",
                       help="exit 3 instead of falling back to CPU when --device is unavailable")
    train.add_argument("--folds", type=_fold_count, help="K in K-fold CV, 2 to 100 (default: the profile's)")
    train.add_argument("--cv", choices=CV_SCHEMES, default="kfold",
                       help="kfold (the seed's KFold, default) or stratified (StratifiedKFold on quantile bins of the "
                            "target: every fold sees the whole range of risk)")
    train.add_argument("--cv-bins", type=_at_least_two, help=f"quantile bins for --cv stratified (default "
                       f"{DEFAULT_CV_BINS})")
    train.add_argument("--target", choices=TARGETS, default="raw",
                       help="raw (default), or residual: the model learns accident_risk minus the formula's "
                            "clipped-normal mean (σ fitted on each fold's training rows), as the top finishers did")
    train.add_argument("--seed", type=_seed, default=42, help="seed of the model's initialisation (default 42)")
    train.add_argument("--cv-seed", type=_seed, default=42,
                       help="seed of the folds, KFold's random_state (default 42, the seed's); runs blended "
                            "together must share it")
    train.add_argument("--data-seed", type=_seed, default=42,
                       help="seed of the embedded data (default 42; ignored with --data-dir)")
    train.add_argument("--label", default="native", help="the environment's name in runs/ (default native)")
    train.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where runs are written (default runs/)")
    train.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", type=_key_value,
                       help="override one model parameter, e.g. --param n_epochs=20 --param batch_size=2048 "
                            "(repeatable; the values used are recorded)")
    _add_executor_flags(train)
    train.add_argument("--matmul-precision", choices=("auto", *PRECISIONS), default="auto",
                       help="torch float32 matmul precision; auto: high (TF32) on CUDA with the fast recipe, "
                            "highest otherwise")
    train.add_argument("--save-models", action="store_true",
                       help="keep each fold's fitted estimator in models/fold-N.pkl (pickle)")
    train.add_argument("--dry-run", action="store_true",
                       help="print and record the resolved configuration (parameters, features, folds, device), "
                            "train nothing")
    train.add_argument("--resume", type=Path, metavar="RUN_DIR",
                       help="continue an interrupted or failed run: its finished folds are kept, the rest trained")
    train.add_argument("--wait", action="store_true",
                       help="with --resume: wait for another process training this run to end, instead of exiting 2")
    _add_track_flag(train, "the run")



def _add_campaigns(sub) -> None:
    """``roadrisk sweep`` and ``roadrisk tune``: many runs on shared folds."""
    sweep = sub.add_parser("sweep", help="train many members (models x grid x seeds) on fixed folds, locally or on Ray")
    sweep.add_argument("spec", type=Path, metavar="SPEC.toml", help="the sweep: data, cv_seed, models with grids and "
                       "seeds (docs/sweep.md; examples in sweeps/)")
    sweep.add_argument("--runs-dir", type=Path, default=Path("runs"),
                       help="members go to RUNS_DIR/<sweep name>/<member id>/ (default runs/)")
    sweep.add_argument("--dry-run", action="store_true", help="list the members and their ids, train nothing")
    sweep.add_argument("--wait", action="store_true",
                       help="wait for another process running this sweep to end, instead of exiting 2")
    _add_executor_flags(sweep)
    _add_track_flag(sweep, "each member's run")

    tune = sub.add_parser("tune", help="search one model's parameters with Optuna; each trial an ordinary run that "
                                       "resumes, spreads and blends like a sweep member")
    tune.add_argument("spec", type=Path, metavar="SPEC.toml", help="the tune: data, folds, a model, its search space "
                      "and when to stop (docs/tune.md; examples in sweeps/tune-*.toml)")
    tune.add_argument("--runs-dir", type=Path, default=Path("runs"),
                      help="trials go to RUNS_DIR/<tune name>/<member id>/, the study to RUNS_DIR/<tune name>/optuna.db")
    tune.add_argument("--trials", type=_positive, help="finished trials to reach (default: the spec's [search] trials)")
    tune.add_argument("--timeout", type=_fraction, metavar="SECONDS",
                      help="no new trial starts after this much tuning time, summed over resumes (default: the "
                           "spec's timeout_s)")
    tune.add_argument("--dry-run", action="store_true", help="show the space and the plan every trial trains, train nothing")
    tune.add_argument("--wait", action="store_true",
                      help="wait for another process running this tune to end, instead of exiting 2")
    _add_executor_flags(tune)
    _add_track_flag(tune, "each trial's run")



def _add_tools(sub) -> None:
    """What reads runs or data: ``data``, ``compare``, ``ensemble``, ``track``, ``doctor``."""
    data = sub.add_parser("data", help="write a generated dataset in Kaggle's file layout")
    data.add_argument("--out", type=Path, required=True, help="folder to write into")
    data.add_argument("--train-rows", type=_non_negative, default=PROFILES["full"].train_rows)
    data.add_argument("--test-rows", type=_non_negative, default=PROFILES["full"].test_rows)
    data.add_argument("--original-rows", type=_non_negative, default=PROFILES["full"].original_rows)
    data.add_argument("--seed", type=_seed, default=42)
    data.add_argument("--force", action="store_true", help="overwrite Kaggle-named files not written by roadrisk")

    compare = sub.add_parser("compare", help="diff devices, timings and accuracy of runs across environments")
    compare.add_argument("run_dirs", nargs="*", type=Path, metavar="RUN_DIR",
                         help="runs to compare (default: the latest complete run of each label in --runs-dir)")
    compare.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where to look (default runs/)")
    compare.add_argument("--baseline", help="label to compare against (default native, when present)")
    compare.add_argument("--out", type=Path, default=Path("reports"), help="report folder (default reports/)")
    compare.add_argument("--force", action="store_true", help="give speed-ups even for runs that are not comparable")
    compare.add_argument("--pool", action="store_true",
                         help="pool every complete run of a label with the same setup: speed-up intervals then "
                              "include run-to-run noise (repeat each make run-* a few times first)")

    from .ensemble import DEFAULT_METHOD as DEFAULT_ENSEMBLE_METHOD  # names only: numpy loads when it runs
    from .ensemble import DEFAULT_STACK_MODEL, STACK_MODEL_NAMES
    from .ensemble import METHOD_NAMES as ENSEMBLE_METHODS

    ensemble = sub.add_parser("ensemble", help="blend complete runs on their out-of-fold predictions into a new run")
    ensemble.add_argument("run_dirs", nargs="*", type=Path, metavar="RUN_DIR", help="runs to blend (two or more)")
    ensemble.add_argument("--sweep", type=Path, metavar="DIR", help="blend every complete run found under DIR instead")
    ensemble.add_argument("--method", choices=ENSEMBLE_METHODS, default=DEFAULT_ENSEMBLE_METHOD,
                          help=f"how weights are fitted (default {DEFAULT_ENSEMBLE_METHOD}; docs/ensemble.md)")
    ensemble.add_argument("--allow-negative", action="store_true", help="--method hill may give negative weights")
    ensemble.add_argument("--steps", type=_positive, metavar="N",
                          help="caruana: selection steps; hill: most rounds (default 100)")
    ensemble.add_argument("--stack-model", choices=STACK_MODEL_NAMES, metavar="|".join(STACK_MODEL_NAMES),
                          help="--method stack: the level-2 model on the members' predictions plus the raw features "
                               f"(default {DEFAULT_STACK_MODEL}; xgb needs xgboost)")
    ensemble.add_argument("--average-seeds", action="store_true",
                          help="average members that differ only in --seed into one member before blending")
    ensemble.add_argument("--label", default="ensemble", help="the run's name in runs/ (default ensemble)")
    ensemble.add_argument("--runs-dir", type=Path, default=Path("runs"), metavar="DIR",
                          help="where the run is written (default runs/)")
    ensemble.add_argument("--data-dir", type=Path, metavar="DIR", help="folder with the members' train.csv, when the path their "
                          "records name is not on this machine (default: that path, or regenerated embedded data)")
    _add_track_flag(ensemble, "the blend")

    track = sub.add_parser("track", help="log finished run folders (or every run under a sweep folder) to MLflow: how "
                                         "runs trained in a container or on a cluster reach the host's store")
    track.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR",
                       help="run folders, or folders holding runs (a sweep, a label, runs/); logging one again "
                            "updates its MLflow run")
    track.add_argument("--runs-dir", type=Path, default=Path("runs"), metavar="DIR",
                       help="where the default store is (DIR/mlflow.db, artifacts in DIR/mlartifacts) when "
                            "MLFLOW_TRACKING_URI is not set (default runs/)")

    doctor = sub.add_parser("doctor", help="print the environment block and the device that auto would pick")
    doctor.add_argument("--json", action="store_true", help="print JSON instead of key: value lines")
    doctor.add_argument("--device", choices=DEVICES, default="auto", help="explain this request (default auto)")
    doctor.add_argument("--probe", action="store_true", help="time short fits on CPU and each accelerator here and say "
                        "which to use (docs/devices.md); recorded under runs/probe/")



def _given_flags(argv: list[str]) -> set[str]:
    """The train options named on the command line (argparse alone cannot tell a default from a choice)."""
    flags = {token.split("=", 1)[0] for token in argv if token.startswith("--")}
    return {flag[2:].replace("-", "_") for flag in flags}


def _cmd_train(args, argv: list[str]) -> int:
    from .data import require_data_dir
    from .trainer import TrainOptions, resume, train

    command = shlex.join(["roadrisk", *argv])
    if args.data_dir is not None:
        require_data_dir(args.data_dir)  # before a run folder exists: a typo leaves nothing behind
    if args.cv_bins is not None and args.cv != "stratified":
        raise RoadriskError("error: --cv-bins: only --cv stratified bins the target. Fix: add --cv stratified, or "
                            "drop --cv-bins")
    given = _given_flags(argv) | ({"param_overrides"} if args.param else set())
    if notice := alias_notice(args.recipe):
        print(notice)
    opts = TrainOptions(
        data_dir=args.data_dir, profile=args.profile, model=args.model,
        recipe=args.recipe and resolve_recipe(args.recipe), device=args.device,
        strict_device=args.strict_device, folds=args.folds, seed=args.seed, cv_seed=args.cv_seed,
        data_seed=args.data_seed, target=args.target, cv=args.cv, cv_bins=args.cv_bins, label=args.label,
        runs_dir=args.runs_dir, param_overrides=dict(args.param), save_models=args.save_models, dry_run=args.dry_run,
        matmul_precision=None if args.matmul_precision == "auto" else args.matmul_precision,
        executor=_executor_config(args), command=command,
    )
    if args.resume is None:
        if args.wait:
            raise RoadriskError("error: --wait: only a --resume can wait for a run another process holds. Fix: add "
                                "--resume RUN_DIR, or drop --wait")
        tracker = _tracker(args.track, args.runs_dir)
        return _tracked(tracker, train(opts))
    if "dry_run" in given:
        raise RoadriskError("error: --resume with --dry-run: a resumed run trains. Fix: drop one of the two")
    for name in ("label", "runs_dir"):
        if name in given:
            flag = "--" + name.replace("_", "-")
            raise RoadriskError(f"error: --resume with {flag}: a resumed run stays in its own folder, under its own "
                                f"label. Fix: drop {flag}")
    values = {name: getattr(opts, name) for name in given if hasattr(opts, name) and name != "executor"}
    if given & {"executor", "jobs", "address", "cpus_per_task", "gpus_per_task"}:
        values["executor"] = opts.executor  # how folds are spread may change on --resume
    if "data_dir" in values:
        values["data_dir"] = args.data_dir.resolve()
    from .tracking import runs_root

    tracker = _tracker(args.track, runs_root(args.resume))
    return _tracked(tracker, resume(args.resume, values, command=command, wait=args.wait))


def _tracker(flag: str | None, runs_dir: Path):
    """Asked for before the run, so a missing mlflow is said before the run, not after it."""
    from .tracking import tracker_for

    return tracker_for(flag, runs_dir)


def _tracked(tracker, outcome) -> int:
    """The run's exit code, after logging it (whatever its status): tracking never changes the run's outcome."""
    if tracker is not None and outcome.run_dir is not None:
        try:
            tracker.log_run(outcome.run_dir)
        except KeyboardInterrupt:
            from .tracking import UNCHANGED

            print(f"warning: tracking: interrupted while logging {outcome.run_dir} {UNCHANGED}")
    return outcome.exit_code


def _cmd_sweep(args, argv: list[str]) -> int:
    from .sweep.runner import run_sweep

    tracker = None if args.dry_run else _tracker(args.track, args.runs_dir)
    return run_sweep(args.spec, args.runs_dir, _executor_config(args), dry_run=args.dry_run,
                     command=shlex.join(["roadrisk", *argv]), wait=args.wait, on_run_end=_log_run(tracker))


def _cmd_tune(args, argv: list[str]) -> int:
    from .tune.runner import run_tune

    tracker = None if args.dry_run else _tracker(args.track, args.runs_dir)
    return run_tune(args.spec, args.runs_dir, _executor_config(args), dry_run=args.dry_run,
                    command=shlex.join(["roadrisk", *argv]), wait=args.wait, trials=args.trials, timeout_s=args.timeout,
                    on_run_end=_log_run(tracker))


def _log_run(tracker):
    """``on_run_end`` for a sweep or tune: each member's run to the tracker (which never raises), or nothing."""
    return (lambda run_dir: None) if tracker is None else tracker.log_run


def _cmd_data(args) -> int:
    from . import schema
    from .generator import read_marker, write_dataset

    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise RoadriskError(f"error: --out {out}: exists and is not a folder. Fix: choose a folder path")
    kaggle_files = [name for name in (schema.TRAIN_FILE, schema.TEST_FILE, schema.SUBMISSION_FILE, *schema.ORIGINAL_FILES)
                    if (out / name).exists()]
    if kaggle_files and read_marker(out) is None and not args.force:
        raise RoadriskError(f"error: --out {out}: already holds {', '.join(kaggle_files)} not written by roadrisk "
                            "(real data?). Fix: choose an empty folder, or pass --force to overwrite")
    if args.train_rows < 2:
        raise RoadriskError("error: --train-rows must be at least 2")
    marker = write_dataset(out, args.train_rows, args.test_rows, args.original_rows, args.seed)
    for key, value in marker.items():
        print(f"{key}: {value}")
    print(f"out: {out}")
    return EXIT_OK


def _cmd_doctor(args) -> int:
    from . import doctor, environment
    from .device import apply_threads, choose

    facts = environment.collect()
    choice = apply_threads(choose(args.device, False, facts), facts["cpu_count"])
    values = doctor.block(facts, choice)
    print(doctor.format_json(values) if args.json else "\n".join(doctor.format_lines(values)))
    if args.probe:
        from . import probe

        result = probe.run(facts)
        print("\n".join(probe.table_lines(result)))
        print(f"probe_record: {probe.save(result, Path('runs'))}")
    return EXIT_OK


def _cmd_compare(args) -> int:
    from .compare.command import run_compare

    return run_compare(args.run_dirs, args.runs_dir, args.baseline, args.out, args.force, pool=args.pool)


def _cmd_ensemble(args, argv: list[str]) -> int:
    from .ensemble.command import run_ensemble

    return run_ensemble(args.run_dirs, args.sweep, args.method, args.allow_negative, args.steps, args.runs_dir,
                        args.label, args.data_dir, command=shlex.join(["roadrisk", *argv]),
                        stack_model=args.stack_model, seeds_averaged=args.average_seeds,
                        tracker=_tracker(args.track, args.runs_dir))


def _cmd_track(args) -> int:
    """``roadrisk track``: every folder checked first (a typo logs nothing), then each run logged; exit 1 when
    any could not be (its warning line says why)."""
    from .errors import EXIT_FAILED
    from .tracking import INSTALL_FIX, find_runs, mlflow_installed, shown_uri, tracker_for

    if not mlflow_installed():
        raise RoadriskError(f"error: track: mlflow is not installed. Fix: {INSTALL_FIX}")
    run_dirs = []
    for path in args.run_dirs:
        found = find_runs(path)
        if not found:
            raise RoadriskError(f"error: track {path}: no {'run.json there or below' if path.is_dir() else 'such folder'}. "
                                "Fix: pass run folders (runs/<label>/<run-id>) or folders holding them (runs/<sweep>)")
        run_dirs += [run_dir for run_dir in found if run_dir not in run_dirs]
    tracker = tracker_for("mlflow", args.runs_dir)
    logged = sum(tracker.log_run(run_dir) is not None for run_dir in run_dirs)
    print(f"tracked: {logged} of {len(run_dirs)} run(s) -> {shown_uri(tracker.uri)}")
    return EXIT_OK if logged == len(run_dirs) else EXIT_FAILED


def _raise_interrupt(signum, frame):  # SIGTERM (docker stop) ends a run like Ctrl-C does
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    signal.signal(signal.SIGTERM, _raise_interrupt)
    handlers = {"data": _cmd_data, "doctor": _cmd_doctor, "compare": _cmd_compare, "track": _cmd_track}
    with_argv = {"train": _cmd_train, "sweep": _cmd_sweep, "tune": _cmd_tune, "ensemble": _cmd_ensemble}
    try:
        if args.command in with_argv:
            return with_argv[args.command](args, sys.argv[1:] if argv is None else list(argv))
        return handlers[args.command](args)
    except DataError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return exc.exit_code
    except RoadriskError as exc:
        message = str(exc)
        print(message if message.startswith("error:") else f"error: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        # A full, read-only or forbidden disk met by a write that is not yet an atomic one (a folder
        # made first): the same one line as WriteFailed. Any other OSError is a bug and keeps its traceback.
        if exc.errno not in _DISK_ERRNOS or not exc.filename:
            raise
        print(WriteFailed(exc.filename, exc), file=sys.stderr)
        return WriteFailed.exit_code
