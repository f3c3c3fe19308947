"""``roadrisk compare``: choose runs and a baseline, analyse, write the four outputs atomically.

Exit codes: 0 a comparison was produced; 2 none was (nothing to compare, or bad input), with the
reason. Nothing under runs/ is ever written.
"""

from __future__ import annotations

from pathlib import Path

from ..atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from ..errors import EXIT_OK, EXIT_USAGE
from . import analysis, plot, report
from .runs import Run, name_runs, select_explicit, select_latest


def _baseline(runs: list[Run], wanted: str | None) -> tuple[Run | None, str | None]:
    complete = [r for r in runs if r.complete]
    if wanted:
        matches = [r for r in runs if r.label == wanted]
        if not matches:
            return None, f"error: --baseline {wanted}: no run with that label (have: {', '.join(r.label for r in runs)})"
        if not matches[0].complete:
            return None, (f"error: --baseline {wanted}: that run is {matches[0].status}, and only a complete run can "
                          "be a baseline. Fix: rerun it, or choose another label")
        return matches[0], None
    native = [r for r in complete if r.label == "native"]
    return (native or complete or [None])[0], None


def run_compare(run_dirs: list[Path], runs_dir: Path, baseline: str | None, out_dir: Path, force: bool,
                echo=print, pool: bool = False) -> int:
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
    chosen, problem = _baseline(runs, baseline)
    if problem:
        echo(problem)
        return EXIT_USAGE
    runs = [chosen] + [r for r in runs if r is not chosen]  # the baseline reads first
    name_runs(runs)
    result = analysis.compare(runs, chosen, force=force)
    text = report.markdown(result, messages)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "compare.md", text)
    atomic_write_json(out_dir / "compare.json", report.as_json(result, messages))
    atomic_write_bytes(out_dir / "compare.png", plot.render_png(result))
    echo(text)
    echo(f"reports: {out_dir / 'compare.md'}, {out_dir / 'compare.json'}, {out_dir / 'compare.png'}")
    return EXIT_OK
