"""Regenerate the measured examples the README and docs quote (``make examples``): each is a real run
kept under docs/examples/, so a reader can see, and redo, where a figure came from.

  runs/quick-{realmlp,tabm,hgb}/   the README's table: `roadrisk train --profile quick --model M --device cpu`
  sweep-quick-cpu/                 `roadrisk sweep sweeps/quick-cpu.toml`, then `roadrisk ensemble --sweep`,
                                   then `roadrisk compare --runs-dir` (its leaderboard)

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
        record = keep(run_dir, OUT / "runs" / name)
        m, t = record["metrics"], record["timings"]
        rows.append(f"| `quick`, {model} | {m['oof_rmse']:.6f} | {m['floor_rmse']:.6f} | +{m['gap_to_floor_pct']:.2f}% "
                    f"| {t['total_s']:.0f} s | docs/examples/runs/{name}/run.json |")
    return rows


def sweep_example(tmp: Path) -> list[str]:
    roadrisk("sweep", "sweeps/quick-cpu.toml", "--runs-dir", str(tmp))
    sweep_dir = tmp / "quick-cpu"
    roadrisk("ensemble", "--sweep", str(sweep_dir), "--runs-dir", str(sweep_dir))
    reports = tmp / "reports"
    roadrisk("compare", "--runs-dir", str(sweep_dir), "--out", str(reports))
    target = OUT / "sweep-quick-cpu"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    shutil.copy2(sweep_dir / "sweep.json", target / "sweep.json")
    shutil.copy2(sweep_dir / "sweep.log", target / "sweep.log")
    (ensemble_dir,) = (sweep_dir / "ensemble").iterdir()
    ensemble = keep(ensemble_dir, target / "ensemble")
    for name in ("compare.md", "leaderboard.png"):
        if (reports / name).is_file():
            shutil.copy2(reports / name, target / name)
    book = json.loads((sweep_dir / "sweep.json").read_text())
    best = min(m["oof_rmse"] for m in book["members"])
    metrics = ensemble["metrics"]
    return [f"sweep quick-cpu: {len(book['members'])} members, best member OOF {best:.6f}",
            f"ensemble ({ensemble['method']}): OOF {metrics['oof_rmse']:.6f}, nested {metrics['nested_oof_rmse']:.6f}"]


def main() -> int:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        lines = readme_runs(tmp) + [""] + sweep_example(tmp)
    (OUT / "runs").mkdir(parents=True, exist_ok=True)
    (OUT / "runs" / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
