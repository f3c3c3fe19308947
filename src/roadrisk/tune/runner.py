"""``roadrisk tune SPEC``: an Optuna search over one model's parameters, each trial an ordinary run.

Why it is built this way:
- **One process owns the study.** It asks Optuna for trials and tells it their scores; the folds
  themselves go to the executor a sweep uses (inline, worker processes, or Ray up to a cluster). The
  study lives in SQLite in the tune's folder (``optuna.db``), which is safe for one writer and which
  Ray workers on other machines never need to reach. Ray Tune would add a second scheduler and trial
  folders outside roadrisk's; the executors already spread folds wherever Ray runs.
- **A trial is a sweep member.** Its parameters become a run plan, its folder is named by the plan's
  hash (``runs/<tune>/<model>-<plan id>/``), and it is opened the sweep's way: a plan trained before is
  reused, a run left half done is resumed. So a trial Ctrl-C stopped is asked again with the same
  parameters after a restart and continues its folds, and no fold is trained twice.
- **Rounds.** Each round asks as many trials as the executor has workers (TPE's constant liar keeps
  them apart), drives their folds together, prunes after each fold (median pruner on the running OOF
  RMSE: a bad trial stops after its first fold), and tells Optuna how each ended.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import environment, locks, records
from ..atomic import atomic_write_json
from ..console import Console, _fmt_seconds
from ..errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, RoadriskError
from ..executors import ExecutorConfig, make_executor
from ..models import MODELS
from ..preparation import DataCache, embedded_or_given, plan_for
from ..records import Status
from ..sweep.runner import MemberState, latest_run, member_options, train_members
from ..sweep.spec import MemberSpec
from . import output
from . import spec as spec_module

TUNE_FILE = records.TUNE_FILE
STUDY_FILE = "optuna.db"
LOG_FILE = "tune.log"


def _optuna():
    try:
        import optuna
    except ModuleNotFoundError:  # a core dependency; an install without it is broken, say how to mend it
        raise RoadriskError("error: roadrisk tune: optuna is not installed. Fix: pip install 'optuna>=4'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # roadrisk's own lines say what happens
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    logging.getLogger("optuna").propagate = False
    return optuna


@dataclass
class TrialState:
    """One Optuna trial and the sweep member it trains."""

    number: int
    trial: object  # optuna.Trial (live, this round)
    member: MemberState
    params: dict
    resumes: int | None = None  # the trial number whose run this one continues
    state: str = "running"  # complete | pruned | failed | interrupted
    reused: bool = False  # its plan was trained (or pruned) by an earlier trial: nothing trained for it
    value: float | None = None
    pruned_after: int | None = None  # folds done when it was pruned
    seconds: float = 0.0


@dataclass
class Book:
    """``tune.json``: the study as a person reads it, rewritten (atomically) after every round."""

    path: Path
    data: dict = field(default_factory=dict)

    def save(self) -> None:
        atomic_write_json(self.path, self.data)


def run_tune(spec_path: Path, runs_dir: Path, executor: ExecutorConfig | None = None, dry_run: bool = False,
             command: str | None = None, echo=print, fold_runner=None, wait: bool = False, trials: int | None = None,
             timeout_s: float | None = None, on_run_end=lambda run_dir: None) -> int:
    """``trials`` / ``timeout_s`` override the spec's; ``on_run_end(run_dir)`` after each trial's run ends
    (tracking); ``fold_runner`` as for a sweep (tests)."""
    executor = executor or ExecutorConfig()
    spec = spec_module.load(spec_path)
    records.check_label(spec.name)
    for note in spec.notes:
        echo(note)
    if trials is not None:
        spec.trials = trials
    if timeout_s is not None:
        spec.timeout_s = timeout_s
    tune_dir = Path(runs_dir) / spec.name
    cache = DataCache()
    facts = environment.collect(with_torch=MODELS[spec.model].uses_torch)
    first = member_options(spec.shared, _member(spec, {}), tune_dir, executor, command)
    dataset = cache.dataset(*embedded_or_given(first))
    echo(f"tune: {spec.name}: {spec.model} (target {spec.target}, recipe {spec.recipe}), {len(spec.space)} "
         f"parameter(s), {_stop_rule(spec)}, cv_seed {spec.shared.cv_seed}, data {dataset.fingerprint} "
         f"({dataset.source}, {len(dataset.train)} train rows) -> {tune_dir}")
    for dimension in spec.space:
        echo(f"space: {dimension.describe()}")
    if dry_run:
        plan = plan_for(first, facts, dataset)
        echo(f"plan: every trial trains {plan.folds} folds on {plan.device} ({plan.device_choice.reason}); "
             f"fixed params {spec.fixed or '{}'}")
        echo(f"study: {tune_dir / STUDY_FILE} ({'exists: a run continues it' if (tune_dir / STUDY_FILE).exists() else 'new'})")
        return EXIT_OK

    tune_dir.mkdir(parents=True, exist_ok=True)
    # One process per tune folder: it alone asks and tells, so the study's SQLite file has one writer.
    tune_lock = locks.take(tune_dir, f"tune {spec.name}", wait=wait)
    try:
        return _run_locked(spec, tune_dir, executor, command, echo, fold_runner, on_run_end, facts, cache, dataset)
    finally:
        tune_lock.release()


def _run_locked(spec, tune_dir: Path, executor: ExecutorConfig, command, echo, fold_runner, on_run_end, facts,
                cache, dataset) -> int:
    optuna = _optuna()
    log = Console(tune_dir / LOG_FILE)
    study = optuna.create_study(
        study_name=spec.name, storage=f"sqlite:///{(tune_dir / STUDY_FILE).resolve()}", load_if_exists=True,
        direction="minimize", pruner=(optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials, n_warmup_steps=0)
                if spec.prune else optuna.pruners.NopPruner()))
    # A sampler seeded alike in every session would draw its random start-up points again after a resume
    # (and retrain nothing, but learn nothing either): each session's seed moves on by the trials so far.
    study.sampler = optuna.samplers.TPESampler(seed=spec.sampler_seed + len(study.trials), constant_liar=True)
    book = _open_book(tune_dir, spec, command, dataset)
    if book.data.get("spec_changed_at_session") == book.data["sessions"]:
        log.line(f"note: {spec.path} changed since this study's last session; its earlier trials still count (and "
                 f"their parameters stay in the study). Fix: rename the tune to start a new study")
    _requeue_interrupted(study, book, log)
    book.save()  # before the first trial ends: its folder is known as a tune's (tracking names the experiment by it)
    runner = make_executor(executor, tune_dir / records.LIBRARY_LOG_FILE, fold_runner)
    book.data["engine"] = runner.describe()
    session_started = time.perf_counter()
    before = book.data.get("elapsed_s", 0.0)
    status = Status.COMPLETE.value
    try:
        finished = _finished_count(study, book)
        while True:
            elapsed = before + time.perf_counter() - session_started
            if spec.trials is not None and finished >= spec.trials:
                break
            if spec.timeout_s is not None and elapsed >= spec.timeout_s:
                log.line(f"budget: {_fmt_seconds(elapsed)} of {_fmt_seconds(spec.timeout_s)} spent: no new trial starts")
                break
            width = max(1, getattr(runner, "workers", 1))
            if spec.trials is not None:
                width = min(width, spec.trials - finished)
            states = _ask_round(study, spec, width, tune_dir, executor, command, facts, dataset, cache)
            overall = _overall(book, spec, finished, len(states))
            _train_round(states, spec, study, tune_dir, executor, runner, cache, facts, command, log, on_run_end,
                         overall)
            book.data["elapsed_s"] = round(before + time.perf_counter() - session_started, 3)
            _record_round(book, states)
            output.write_summary(book, study, spec, tune_dir)
            finished = _finished_count(study, book)
            _progress_line(log, book, spec, finished, before + time.perf_counter() - session_started)
            if states and all(s.state == "failed" for s in states) and _all_failed_lately(book):
                status = "failed"
                log.line("stopped: the last 3 trials failed; see their train.log (the tune's folder lists them)")
                break
    except KeyboardInterrupt:
        book.data["elapsed_s"] = round(before + time.perf_counter() - session_started, 3)
        book.data["status"] = Status.INTERRUPTED.value
        output.write_summary(book, study, spec, tune_dir)
        log.line("interrupted: finished trials are kept and running ones keep their folds; run the same command "
                 f"again to continue the study ({tune_dir / STUDY_FILE})")
        return EXIT_INTERRUPTED
    finally:
        runner.close()
    book.data["status"] = status
    book.data["ended_at"] = records.now_iso()
    summary = output.write_summary(book, study, spec, tune_dir, final=True)
    log.lines(summary)
    log.close()
    return EXIT_OK if status == Status.COMPLETE.value else EXIT_FAILED


def _stop_rule(spec: spec_module.TuneSpec) -> str:
    parts = []
    if spec.trials is not None:
        parts.append(f"{spec.trials} trials")
    if spec.timeout_s is not None:
        parts.append(f"{_fmt_seconds(spec.timeout_s)} budget")
    return " or ".join(parts) + (", median pruning" if spec.prune else ", no pruning")


def _member(spec: spec_module.TuneSpec, params: dict) -> MemberSpec:
    return MemberSpec(spec.model, {**spec.fixed, **params}, spec.seed, spec.recipe, spec.device, spec.folds,
                      spec.matmul_precision, spec.target)


def _open_book(tune_dir: Path, spec: spec_module.TuneSpec, command: str | None, dataset) -> Book:
    book = Book(tune_dir / TUNE_FILE)
    previous = {}
    if book.path.is_file():
        try:
            previous = json.loads(book.path.read_text())
        except (OSError, json.JSONDecodeError):
            previous = {}  # rebuilt from the study, which is the source of truth
    book.data = {
        "schema_version": 1, "kind": "tune", "name": spec.name, "spec": str(Path(spec.path).resolve()),
        "spec_sha256": spec.shared.sha256, "command": command, "status": Status.RUNNING.value,
        "started_at": previous.get("started_at") or records.now_iso(), "ended_at": None,
        "sessions": previous.get("sessions", 0) + 1, "elapsed_s": previous.get("elapsed_s", 0.0),
        "study": {"name": spec.name, "storage": STUDY_FILE, "direction": "minimize", "metric": "oof_rmse",
                  "sampler": f"TPE (seed {spec.sampler_seed}, constant liar)",
                  "pruner": f"median after each fold, from trial {spec.startup_trials + 1}" if spec.prune else "none"},
        "model": spec.model, "target": spec.target, "recipe": spec.recipe, "fixed_params": spec.fixed,
        "space": [d.describe() for d in spec.space], "cv": spec.shared.cv, "cv_seed": spec.shared.cv_seed,
        "data": {"fingerprint": dataset.fingerprint, "source": dataset.source, "path": str(dataset.path)},
        "interrupted_trials": previous.get("interrupted_trials", []),
        "trials": previous.get("trials", {}),
    }
    if previous.get("spec_sha256") not in (None, spec.shared.sha256):
        book.data["spec_changed_at_session"] = book.data["sessions"]
    return book


def _requeue_interrupted(study, book: Book, log: Console) -> None:
    """Trials still ``RUNNING`` in the study were stopped with the process that asked them (this process
    holds the tune's lock, so nobody else runs them). Each is closed as failed and asked again with the
    same parameters: the same plan, so the same folder, whose run resumes where it stopped."""
    from optuna.trial import TrialState as OptunaState

    for frozen in study.get_trials(deepcopy=False, states=(OptunaState.RUNNING,)):
        study.tell(frozen.number, state=OptunaState.FAIL)
        study.enqueue_trial(frozen.params, user_attrs={"resumes_trial": frozen.number})
        book.data["interrupted_trials"] = sorted({*book.data["interrupted_trials"], frozen.number})
        entry = book.data["trials"].setdefault(str(frozen.number), {"number": frozen.number, "params": frozen.params})
        entry["state"] = "interrupted"
        log.line(f"resume: trial {frozen.number} was interrupted; it is asked again with the same parameters and "
                 "continues its run")


def _finished_count(study, book: Book) -> int:
    """Trials that count toward ``trials``: complete, pruned, or failed of themselves (an interrupted trial
    is asked again, so its first attempt does not count)."""
    from optuna.trial import TrialState as OptunaState

    interrupted = set(book.data["interrupted_trials"])
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state in (OptunaState.COMPLETE, OptunaState.PRUNED)
               or (t.state == OptunaState.FAIL and t.number not in interrupted))


def _ask_round(study, spec, width: int, tune_dir: Path, executor: ExecutorConfig, command, facts, dataset,
               cache) -> list[TrialState]:
    states: list[TrialState] = []
    for _ in range(width):
        trial = study.ask()
        params = {d.name: d.suggest(trial) for d in spec.space}
        opts = member_options(spec.shared, _member(spec, params), tune_dir, executor, command)
        member_id = f"{spec.model}-{plan_for(opts, facts, dataset).identity[:10]}"
        opts.label = member_id
        states.append(TrialState(trial.number, trial, MemberState(member_id, _member(spec, params), opts), params,
                                 resumes=trial.user_attrs.get("resumes_trial")))
    return states


def _running_rmse(run) -> float:
    """The OOF RMSE over the folds a run has finished so far: the pruner's intermediate value."""
    target = run.fold_data.target
    errors = np.concatenate([target[r.val_idx] - r.val_pred for r in run.results])
    return float(np.sqrt(np.mean(errors ** 2)))


def _overall(book: Book, spec, finished: int, asked: int):
    """The end of each fold line during a round: where the study stands."""
    best = output.best_trial(book)
    goal = f"/{spec.trials}" if spec.trials is not None else ""
    best_text = f"best {best['value']:.6f} (trial {best['number']})" if best else "best –"
    return lambda: f"trials {finished}{goal} finished, {asked} in this round, {best_text}"


def _train_round(states: list[TrialState], spec, study, tune_dir: Path, executor: ExecutorConfig, runner, cache,
                 facts, command, log: Console, on_run_end, overall=None) -> None:
    from optuna.trial import TrialState as OptunaState

    unique: dict[str, TrialState] = {}
    for state in states:  # two trials of one round with one plan: the first trains, the other takes its result
        unique.setdefault(state.member.id, state)
    to_train = []
    for state in unique.values():
        latest = latest_run(tune_dir / state.member.id)
        if latest is not None and latest["status"] == Status.PRUNED:  # pruned before: a result, not to retrain
            member = state.member
            member.status, member.reused, member.run_dir = Status.PRUNED.value, True, latest.run_dir
        else:
            to_train.append(state.member)

    def opened(member: MemberState) -> None:
        state = unique[member.id]
        member.run.record["tune"] = {"study": spec.name, "trial": state.number, "params": state.params,
                                     **({"resumes_trial": state.resumes} if state.resumes is not None else {})}

    def should_stop(job) -> str | None:
        state = next(s for s in unique.values() if s.member.job is job)
        folds_done = len(job.run.results)
        value = _running_rmse(job.run)
        state.trial.report(value, step=folds_done)
        if state.trial.should_prune():
            state.pruned_after = folds_done
            return (f"trial {state.number}: running OOF RMSE {value:.6f} after {folds_done} fold(s) is worse than "
                    "the median of earlier trials there")
        return None

    started = time.perf_counter()
    train_members(to_train, tune_dir, executor, runner, cache, facts, command, log, should_stop=should_stop,
                  on_open=opened, overall=overall, on_run_end=on_run_end)
    seconds = time.perf_counter() - started
    for state in states:
        source = unique[state.member.id]
        member = source.member
        state.seconds = seconds / len(states)
        if member.status == Status.COMPLETE.value:
            state.state, state.reused = "complete", member.reused or source is not state
            state.value = member.oof_rmse
            study.tell(state.trial, member.oof_rmse)
        elif member.status == Status.PRUNED.value:
            state.state, state.pruned_after = "pruned", source.pruned_after
            state.reused = member.reused or source is not state
            study.tell(state.trial, state=OptunaState.PRUNED)
        else:
            state.state = "failed"
            study.tell(state.trial, state=OptunaState.FAIL)
            log.line(f"trial {state.number}: {member.status}: {(member.error or '').splitlines()[0] if member.error else ''}")


def _record_round(book: Book, states: list[TrialState]) -> None:
    for state in states:
        book.data["trials"][str(state.number)] = {
            "number": state.number, "state": state.state, "value": state.value, "params": state.params,
            "member_id": state.member.id, "run_dir": None if state.member.run_dir is None else str(state.member.run_dir),
            "pruned_after_folds": state.pruned_after, "resumes_trial": state.resumes, "reused": state.reused,
            "seconds": round(state.seconds, 3), **_fold_costs(state)}


def _fold_costs(state: TrialState) -> dict:
    """The folds a trial's run trained and their fit + predict seconds (what pruning is priced at), taken
    while its record is in hand, so the summary never reads every trial's run.json again each round."""
    run = state.member.run
    if run is None or state.reused:
        return {}
    return {"folds_planned": run.total_folds,
            "fold_s": [round(f.get("fit_s", 0.0) + f.get("predict_s", 0.0), 3) for f in run.record["timings"]["folds"]]}


def _all_failed_lately(book: Book, last: int = 3) -> bool:
    trials = sorted(book.data["trials"].values(), key=lambda t: t["number"])[-last:]
    return len(trials) == last and all(t["state"] == "failed" for t in trials)


def _progress_line(log: Console, book: Book, spec, finished: int, elapsed: float) -> None:
    counts = output.counts(book)
    best = output.best_trial(book)
    seconds = [t["seconds"] for t in book.data["trials"].values() if t.get("seconds")]
    mean = sum(seconds) / len(seconds) if seconds else 0.0
    left = []
    if spec.trials is not None:
        left.append(max(0, spec.trials - finished) * mean)
    if spec.timeout_s is not None:
        left.append(max(0.0, spec.timeout_s - elapsed))
    eta = _fmt_seconds(min(left)) if left and mean else "–"
    goal = f"/{spec.trials}" if spec.trials is not None else ""
    best_text = f"best {best['value']:.6f} (trial {best['number']})" if best else "best –"
    log.line(f"progress: {finished}{goal} trials ({counts['complete']} complete, {counts['pruned']} pruned, "
             f"{counts['failed']} failed) | {best_text} | elapsed {_fmt_seconds(elapsed)}, ETA {eta}")
