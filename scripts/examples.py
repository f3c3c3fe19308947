"""Regenerate the measured examples the README and docs quote (``make examples``): each is a real run
kept under docs/examples/, so a reader can see, and redo, where a figure came from.

  quick-runs/quick-{realmlp,tabm,hgb}/  the README's table: `roadrisk train --profile quick --model M --device cpu`
  sweep-quick-cpu/                 `roadrisk sweep sweeps/quick-cpu.toml`, then `roadrisk ensemble --sweep`
                                   with each method, then `roadrisk compare --runs-dir` (its leaderboard)

Only run.json, train.log, sweep.json and the reports are kept (predictions are large and say nothing
a record does not). Figures depend on the machine: the records name it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "examples"
README_RUNS = (("quick-realmlp", "realmlp"), ("quick-tabm", "tabm"), ("quick-hgb", "hgb"))


def roadrisk(*args: str) -> None:
    print("$ roadrisk " + " ".join(args), flush=True)
    done = subprocess.run([sys.executable, "-m", "roadrisk", *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"examples: roadrisk {' '.join(args)} failed:\n{(done.stdout + done.stderr)[-2000:]}")


def keep(run_dir: Path, target: Path, names=("run.json", "train.log")) -> dict:
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy2(run_dir / name, target / name)
    return json.loads((run_dir / "run.json").read_text())


def readme_runs(tmp: Path) -> list[str]:
    rows = ["| run | OOF RMSE | floor | gap | wall time | record |", "|---|---|---|---|---|---|"]
    for name, model in README_RUNS:
        roadrisk("train", "--profile", "quick", "--model", model, "--device", "cpu", "--label", name,
                 "--runs-dir", str(tmp))
        (run_dir,) = (tmp / name).iterdir()
        record = keep(run_dir, OUT / "quick-runs" / name)
        m, t = record["metrics"], record["timings"]
        rows.append(f"| `quick`, {model} | {m['oof_rmse']:.6f} | {m['floor_rmse']:.6f} | +{m['gap_to_floor_pct']:.2f}% "
                    f"| {t['total_s']:.0f} s | docs/examples/quick-runs/{name}/run.json |")
    return rows


METHODS = (("caruana", ()), ("hill", ()), ("ridge", ()))


def sweep_example(tmp: Path) -> list[str]:
    roadrisk("sweep", "sweeps/quick-cpu.toml", "--runs-dir", str(tmp))
    sweep_dir = tmp / "quick-cpu"
    blends = tmp / "blends"
    for method, extra in METHODS:
        roadrisk("ensemble", "--sweep", str(sweep_dir), "--method", method, *extra, "--label", f"ensemble-{method}",
                 "--runs-dir", str(blends))
    reports = tmp / "reports"
    shutil.copytree(blends / "ensemble-caruana", sweep_dir / "ensemble")  # beside the members, as make ensemble
    roadrisk("compare", "--runs-dir", str(sweep_dir), "--out", str(reports))
    target = OUT / "sweep-quick-cpu"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in ("sweep.json", "sweep.log"):
        shutil.copy2(sweep_dir / name, target / name)
    for name in ("compare.md", "leaderboard.png"):
        if (reports / name).is_file():
            shutil.copy2(reports / name, target / name)
    book = json.loads((sweep_dir / "sweep.json").read_text())
    members = sorted(book["members"], key=lambda m: m["oof_rmse"])
    floor = None
    rows = ["| | OOF RMSE | nested | gap to floor | record |", "|---|---|---|---|---|"]
    for m in members:
        record = json.loads((Path(m["run_dir"]) / "run.json").read_text())
        floor = record["metrics"]["floor_rmse"]
        rows.append(f"| {m['id']} ({m['model']}, seed {m['seed']}, {m['params']}) | {m['oof_rmse']:.6f} | "
                    f"| +{record['metrics']['gap_to_floor_pct']:.2f}% | sweep.json |")
    for method, _ in METHODS:
        (run_dir,) = (blends / f"ensemble-{method}").iterdir()
        ensemble = keep(run_dir, target / f"ensemble-{method}")
        metrics = ensemble["metrics"]
        rows.append(f"| `{method}` | {metrics['oof_rmse']:.6f} | {metrics['nested_oof_rmse']:.6f} "
                    f"| +{100 * (metrics['nested_oof_rmse'] - floor) / floor:.2f}% (nested) "
                    f"| ensemble-{method}/run.json |")
    (target / "summary.md").write_text(f"floor_rmse: {floor:.6f}\n\n" + "\n".join(rows) + "\n")
    return [f"sweep quick-cpu: {len(members)} members, floor {floor:.6f}", *rows]


def main() -> int:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        lines = readme_runs(tmp) + [""] + sweep_example(tmp)
    (OUT / "quick-runs").mkdir(parents=True, exist_ok=True)
    (OUT / "quick-runs" / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
