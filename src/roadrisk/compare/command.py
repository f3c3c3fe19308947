"""``roadrisk compare``: choose runs and a baseline, analyse, write the five outputs atomically.

Training runs are diffed against a baseline (device, timings, speed-ups, accuracy); ensembles have
no environment or fold timings of their own, so they join only the leaderboard, where every
complete run is ranked. The baseline is always a complete training run.

Exit codes: 0 a comparison was produced; 2 none was (nothing to compare, bad input, or an --out it
cannot write into), with the reason. Nothing under runs/ is ever written.
"""

from __future__ import annotations

from pathlib import Path

from .. import probe
from ..atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from ..errors import EXIT_OK, EXIT_USAGE
from . import analysis, leaderboard, plot, report
from .runs import Run, name_runs, select_explicit, select_latest


def _baseline(runs: list[Run], wanted: str | None) -> tuple[Run | None, str | None]:
    complete = [r for r in runs if r.complete and r.kind == "train"]
    if wanted:
        matches = [r for r in runs if r.label == wanted]
        if not matches:
            return None, f"error: --baseline {wanted}: no run with that label (have: {', '.join(r.label for r in runs)})"
        if matches[0].kind != "train":
            return None, (f"error: --baseline {wanted}: that run is an ensemble, with no device or fold timings of "
                          "its own to compare against. Fix: choose a training run's label "
                          f"(have: {', '.join(r.label for r in complete) or 'none'})")
        if not matches[0].complete:
            return None, (f"error: --baseline {wanted}: that run is {matches[0].status}, and only a complete run can "
                          "be a baseline. Fix: rerun it, or choose another label")
        return matches[0], None
    native = [r for r in complete if r.label == "native"]
    return (native or complete or [None])[0], None


def run_compare(run_dirs: list[Path], runs_dir: Path, baseline: str | None, out_dir: Path, force: bool,
                echo=print, pool: bool = False) -> int:
    if out_dir.exists() and not out_dir.is_dir():  # before any work: mkdir would raise FileExistsError
        echo(f"error: --out {out_dir}: exists and is not a folder. Fix: choose a folder path")
        return EXIT_USAGE
    selection = select_explicit(run_dirs) if run_dirs else select_latest(runs_dir, pool=pool)
    runs, messages = selection.runs, selection.messages
    complete = [r for r in runs if r.complete]
    for message in messages:
        echo(message)
    if len(complete) < 2:
        have = ", ".join(f"{r.name}: {r.status}" for r in runs) or "none"
        echo(f"error: no comparison: it needs at least two complete runs (have {have}). "
             "Fix: add one, e.g. make run-docker PROFILE=smoke, or pass run folders")
        return EXIT_USAGE
    trained = [r for r in runs if r.kind == "train"]
    ensembles = [r for r in runs if r.kind != "train"]
    if not any(r.complete for r in trained):
        echo(f"error: no comparison: the baseline must be a complete training run, and every complete run here is "
             f"an ensemble ({', '.join(r.name for r in complete)}). Fix: add their members, e.g. "
             "--runs-dir runs/<sweep>, or pass a training run's folder too")
        return EXIT_USAGE
    chosen, problem = _baseline(runs, baseline)
    if problem:
        echo(problem)
        return EXIT_USAGE
    trained = [chosen] + [r for r in trained if r is not chosen]  # the baseline reads first
    name_runs(trained + ensembles)
    result = analysis.compare(trained, chosen, force=force)
    result["ensembles"] = [r.name for r in ensembles]
    result["leaderboard"] = leaderboard.rank(trained + ensembles)
    text = report.markdown(result, messages) + report.probe_section(probe.latest(runs_dir))
    target = out_dir
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, write in (("compare.md", lambda p: atomic_write_text(p, text)),
                            ("compare.json", lambda p: atomic_write_json(p, report.as_json(result, messages))),
                            ("compare.png", lambda p: atomic_write_bytes(p, plot.render_png(result))),
                            ("leaderboard.png",
                             lambda p: atomic_write_bytes(p, plot.render_leaderboard_png(result["leaderboard"])))):
            target = out_dir / name
            write(target)
    except OSError as exc:  # read-only, full, or a path through a file: each output is whole or absent
        echo(f"error: --out {out_dir}: cannot write {target} ({exc.strerror or exc}). Fix: point --out at a "
             "writable folder with free space")
        return EXIT_USAGE
    echo(text)
    echo("reports: " + ", ".join(str(out_dir / name) for name in ("compare.md", "compare.json", "compare.png",
                                                                  "leaderboard.png")))
    return EXIT_OK
