"""Section 9 of ``make bench``: what ``roadrisk tune`` costs and what its pruner saves.

Every side is a fresh ``roadrisk`` process on the same spec (``sweeps/tune-quick-cpu.toml``, XGBoost on
the residual, quick embedded data, 3 folds) with its own empty runs folder, so nothing is reused:

- **overhead**: a tune of K trials without pruning, against a sweep of exactly those K parameter sets (read
  back from its ``tune.json``), one ``[[model]]`` table each: the same fits, so the ratio is what the study
  (Optuna, its SQLite file, rounds) adds;
- **workers**: the same tune with 1 worker and with 2 (``--jobs 2``), as trials per hour. The two draw
  different points after the first round (two trials are asked before either is told), so the ratio
  mixes scheduling with the cost of the points drawn; both are said;
- **pruning**: the tune with the median pruner on against off: trials pruned, folds not trained, wall
  time, and the best score each found.

Times come from the processes' wall clocks; the fits' own seconds from the runs' records.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from roadrisk.tune import output
from roadrisk.tune import spec as tune_spec

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "sweeps" / "tune-quick-cpu.toml"


def _spec(tmp: Path, name: str, prune: bool) -> Path:
    text = SPEC.read_text()
    text = re.sub(r'^name = ".*"$', f'name = "{name}"', text, count=1, flags=re.M)
    text = re.sub(r"^prune = \w+", f"prune = {'true' if prune else 'false'}", text, count=1, flags=re.M)
    text = re.sub(r"^timeout_s = .*$", "timeout_s = 36000", text, count=1, flags=re.M)
    path = tmp / f"{name}.toml"
    path.write_text(text)
    return path


def _run(args: list[str], log) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "roadrisk", *args], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stderr[-500:] or done.stdout[-500:]}")
    log(f"tune: {' '.join(args[:2])} ... {wall:.1f} s")
    return wall


def _tune(tmp: Path, name: str, trials: int, prune: bool, log, *extra: str) -> dict:
    runs = tmp / f"runs-{name}"
    wall = _run(["tune", str(_spec(tmp, name, prune)), "--runs-dir", str(runs), "--trials", str(trials), *extra], log)
    book = json.loads((runs / name / "tune.json").read_text())
    fit_s = 0.0
    for trial in book["trials"].values():
        record = json.loads((Path(trial["run_dir"]) / "run.json").read_text())
        fit_s += sum(f.get("fit_s", 0.0) + f.get("predict_s", 0.0) for f in record["timings"]["folds"])
    return {"wall_s": round(wall, 2), "trials": len(book["trials"]), "counts": book["counts"],
            "best": (book["best"] or {}).get("value"), "pruning": book["pruning"], "fold_fit_s": round(fit_s, 2),
            "trials_per_hour": round(3600 * len(book["trials"]) / wall, 1), "book": book}


def _sweep_of(tmp: Path, book: dict, spec_path: Path) -> float:
    """A sweep spec with one [[model]] table per trial of ``book`` (best.toml's layout), then its wall."""
    spec = tune_spec.load(spec_path)
    head = output.best_spec(None, spec, next(iter(book["trials"].values()))).split("\n[[model]]\n")[0]
    tables = [output.best_table(None, spec, trial) for trial in sorted(book["trials"].values(),
                                                                        key=lambda t: t["number"])]
    path = tmp / "as-sweep.toml"
    path.write_text(head.replace(f'name = "{spec.name}-best"', 'name = "as-sweep"') + "\n" + "\n\n".join(tables) + "\n")
    return _run(["sweep", str(path), "--runs-dir", str(tmp / "runs-as-sweep")], log=lambda text: None)


def tune_cost(tmp: Path, log, trials: int = 12) -> dict:
    try:
        import optuna  # noqa: F401
    except ModuleNotFoundError:
        return {"measured": False, "why": "optuna is not installed"}
    plain = _tune(tmp, "no-prune", trials, False, log)
    sweep_wall = _sweep_of(tmp, plain["book"], _spec(tmp, "no-prune", False))
    log(f"tune: the same {trials} trials as a sweep: {sweep_wall:.1f} s")
    two = _tune(tmp, "two-workers", trials, False, log, "--jobs", "2")
    pruned = _tune(tmp, "pruned", trials, True, log)
    for side in (plain, two, pruned):
        side.pop("book")
    return {
        "measured": True, "spec": str(SPEC.relative_to(ROOT)), "trials": trials,
        "overhead": {"tune_wall_s": plain["wall_s"], "sweep_wall_s": round(sweep_wall, 2),
                     "ratio": round(plain["wall_s"] / sweep_wall, 3)},
        "workers": {"one": plain, "two": two, "trials_per_hour_ratio": round(two["trials_per_hour"]
                                                                               / plain["trials_per_hour"], 3)},
        "pruning": {"off": plain, "on": pruned, "wall_ratio": round(pruned["wall_s"] / plain["wall_s"], 3),
                    "fold_fit_ratio": round(pruned["fold_fit_s"] / plain["fold_fit_s"], 3) if plain["fold_fit_s"]
                    else None},
    }


def render(section: dict) -> list[str]:
    out = ["", "## 9. Tune: the study's cost, workers, pruning (`make bench ARGS='--only tune'`)", ""]
    if not section.get("measured"):
        return out + [f"- not measured: {section.get('why', 'skipped')}", ""]
    o, w, p = section["overhead"], section["workers"], section["pruning"]
    out += [f"{section['trials']} trials of `{section['spec']}`, each side a fresh process with an empty runs folder.",
            "",
            "| measure | value |", "|---|---|",
            f"| tune without pruning / the same trials as a sweep (wall) | {o['tune_wall_s']:.1f} s / "
            f"{o['sweep_wall_s']:.1f} s = **{o['ratio']:.3f}x** |",
            f"| trials per hour, 1 worker | {w['one']['trials_per_hour']:.0f} (best {w['one']['best']}) |",
            f"| trials per hour, 2 workers (`--jobs 2`) | {w['two']['trials_per_hour']:.0f} (best {w['two']['best']}) "
            f"= **{w['trials_per_hour_ratio']:.2f}x** |",
            f"| pruning on: trials pruned, folds not trained | {p['on']['counts']['pruned']} of {p['on']['trials']}, "
            f"{p['on']['pruning']['folds_skipped']} folds |",
            f"| pruning on / off: wall, fold fit seconds | {p['wall_ratio']:.3f}x, {p['fold_fit_ratio']}x |",
            f"| best OOF RMSE, pruning off / on | {p['off']['best']} / {p['on']['best']} |",
            "",
            "After the first round the 2-worker tune draws other points than the 1-worker one (two trials are "
            "asked before either is told), so its ratio mixes scheduling with what its points cost.", ""]
    return out
