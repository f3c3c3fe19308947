"""What a tune leaves a person: ``tune.json`` (every trial, the best, what pruning saved), ``best.toml``
(the best trial as a sweep spec: its ``[[model]]`` table drops into any spec with the same data and
folds), and the study's history and parameter importances as PNGs."""

from __future__ import annotations

import io
import json
import math
import warnings
from pathlib import Path

from ..atomic import atomic_write_bytes, atomic_write_text
from ..console import _fmt_seconds

BEST_FILE = "best.toml"
HISTORY_PNG = "history.png"
IMPORTANCES_PNG = "importances.png"


def counts(book) -> dict:
    trials = book.data["trials"].values()
    return {state: sum(1 for t in trials if t.get("state") == state)
            for state in ("complete", "pruned", "failed", "interrupted")} | {
        "reused": sum(1 for t in trials if t.get("reused"))}


def best_trial(book) -> dict | None:
    done = [t for t in book.data["trials"].values() if t.get("state") == "complete" and t.get("value") is not None]
    return min(done, key=lambda t: (t["value"], t["number"])) if done else None


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} has no TOML form")
        return repr(value)  # the shortest text that reads back as exactly this float
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ValueError(f"{value!r} has no TOML form here")


def best_table(book, spec, best: dict) -> str:
    """The best trial as a sweep ``[[model]]`` table, with everything that makes it the same run."""
    lines = ["[[model]]", f"name = {_toml_value(spec.model)}", f"recipe = {_toml_value(spec.recipe)}",
             f"target = {_toml_value(spec.target)}", f"device = {_toml_value(spec.device)}"]
    if spec.folds is not None:
        lines.append(f"folds = {spec.folds}")
    if spec.matmul_precision is not None:
        lines.append(f"matmul_precision = {_toml_value(spec.matmul_precision)}")
    params = {**spec.fixed, **best["params"]}
    lines += [f"seeds = [{spec.seed}]",
              "params = { " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in sorted(params.items())) + " }"]
    return "\n".join(lines)


def best_spec(book, spec, best: dict) -> str:
    shared = spec.shared
    data = [f"profile = {_toml_value(shared.profile)}", f"data_seed = {shared.data_seed}"]
    if shared.data_dir is not None:
        data.append(f"data_dir = {_toml_value(str(shared.data_dir))}")
    top = [f"name = {_toml_value(shared.name + '-best')}", f"cv_seed = {shared.cv_seed}", f"cv = {_toml_value(shared.cv)}"]
    if shared.cv_bins is not None:
        top.append(f"cv_bins = {shared.cv_bins}")
    return "\n".join([
        f"# The best trial of tune {shared.name}: trial {best['number']}, OOF RMSE {best['value']:.6f} on its folds.",
        f"# `roadrisk sweep {'THIS_FILE' if book is None else book.path.parent / BEST_FILE}` trains it again (the "
        "same plan, the same score); the",
        "# [[model]] table drops into any sweep spec with the same [data] and folds.",
        *top, "", "[data]", *data, "", best_table(book, spec, best), ""])


def _pruning_savings(book) -> dict:
    """Folds the pruner spared and their time, priced at the mean fold time of the trials that completed."""
    trials = [t for t in book.data["trials"].values() if not t.get("reused")]
    complete = [t for t in trials if t.get("state") == "complete" and "fold_s" in t]
    fold_seconds = [s for t in complete for s in t["fold_s"]]
    folds_per_trial = next((t["folds_planned"] for t in trials if t.get("folds_planned")), None)
    pruned = [t for t in trials if t.get("state") == "pruned" and t.get("pruned_after_folds")]
    skipped = sum(folds_per_trial - t["pruned_after_folds"] for t in pruned) if folds_per_trial else 0
    mean = sum(fold_seconds) / len(fold_seconds) if fold_seconds else None
    return {"pruned_trials": len(pruned), "folds_skipped": skipped, "folds_per_trial": folds_per_trial,
            "mean_fold_s": None if mean is None else round(mean, 3),
            "fit_s_saved_estimate": None if mean is None else round(skipped * mean, 1)}


def _plots(study, tune_dir: Path) -> dict:
    """The study's history and parameter importances (Optuna's matplotlib plots), or why not."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    written = {}
    titles = {HISTORY_PNG: f"tune {study.study_name}: OOF RMSE by trial (pruned and failed trials not drawn)",
              IMPORTANCES_PNG: f"tune {study.study_name}: what mattered (PED-ANOVA importance on complete trials)"}
    for name, draw in ((HISTORY_PNG, optuna_plots.plot_optimization_history),
                       (IMPORTANCES_PNG, optuna_plots.plot_param_importances)):
        try:
            with warnings.catch_warnings():  # "too few trials for importances": said in tune.json instead
                warnings.simplefilter("ignore")
                axes = draw(study)
            axes.set_title(titles[name])
            figure = axes.figure
            figure.set_size_inches(8, 4.5)
            figure.tight_layout()
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=100)
            plt.close(figure)
            atomic_write_bytes(tune_dir / name, buffer.getvalue())
            written[name] = "written"
        except Exception as exc:  # too few complete trials for importances, say; the tune itself is fine
            written[name] = f"not drawn: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            plt.close("all")
    return written


def write_summary(book, study, spec, tune_dir: Path, final: bool = False) -> list[str]:
    """Rewrite tune.json (and best.toml; the PNGs at the end or on interrupt); return the summary lines."""
    best = best_trial(book)
    book.data["counts"] = counts(book)
    book.data["pruning"] = _pruning_savings(book)
    book.data["best"] = None if best is None else {
        "number": best["number"], "value": best["value"], "params": {**spec.fixed, **best["params"]},
        "member_id": best["member_id"], "run_dir": best["run_dir"], "table": best_table(book, spec, best)}
    if best is not None:
        atomic_write_text(tune_dir / BEST_FILE, best_spec(book, spec, best))
    if final or book.data.get("status") == "interrupted":
        book.data["plots"] = _plots(study, tune_dir)
    book.save()
    c, pruning = book.data["counts"], book.data["pruning"]
    saved = pruning["fit_s_saved_estimate"]
    return [
        f"status: {book.data['status']}",
        f"trials: {c['complete']} complete, {c['pruned']} pruned, {c['failed']} failed "
        f"({c['reused']} reused an earlier trial's run)",
        f"best_oof_rmse: {best['value']:.6f} (trial {best['number']}, {best['member_id']})" if best
        else "best_oof_rmse: none",
        f"best_params: {json.dumps(book.data['best']['params'], sort_keys=True)}" if best else "best_params: none",
        f"pruning: {pruning['folds_skipped']} fold(s) not trained"
        + (f", about {_fmt_seconds(saved)} of fitting saved" if saved else ""),
        f"elapsed_s: {book.data.get('elapsed_s', 0.0):.1f}",
        f"best_spec: {tune_dir / BEST_FILE}" if best else "best_spec: none",
        f"tune_dir: {tune_dir}",
    ]
