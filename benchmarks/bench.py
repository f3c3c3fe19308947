"""``make bench``: how fast roadrisk is, as ratios measured side by side in one run.

1. trainer overhead   roadrisk train vs the bare library calls on the same data/features/folds/params
2. data path          load + validate + features of Kaggle-size files vs a bare pandas.read_csv
3. container tax      the CPU image vs the host venv, same config, threads matched (needs an engine)
4. accelerator        the fast recipe vs the reference recipe, and the `full` profile end to end per recipe
                      (needs CUDA or MPS; else "not measured", never estimated) -- accelerator.py
5. scaling            time against rows on this CPU, and which phase dominates
6. ray                Ray local vs inline on the same members; GPU sharing (--gpus-per-task) -- ray_cost.py
6b. cluster           members per hour with 1 vs 2 workers in the compose Ray cluster (needs an engine)
                      -- cluster_scaling.py
7. epoch-rates        seconds per epoch per row on this CPU, against what the full-on-CPU warning quotes
8. accuracy           on DATA_DIR (or --data-dir): every model x target on the same folds, OOF RMSE and fit
                      time, and the ensemble methods, each as a ratio against plain scikit-learn-default HGB
                      -- accuracy.py (`make bench ARGS="--only accuracy" DATA_DIR=...`)
9. tune               a tune against the same trials as a sweep; 1 vs 2 workers; pruning on vs off -- tune_cost.py

`make bench ARGS="--only accelerator full-run"` runs just the GPU half.

Every figure is written with the machine it was measured on. Kept apart from the unit tests:
nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import accelerator  # benchmarks/ is this script's folder, first on sys.path
import accuracy
import cluster_scaling
import epoch_rates
import numpy as np
import pandas as pd
import plot
import ray_cost
import tune_cost
from bare import bare_run, silenced
from make_env import clean_env

from roadrisk import data as data_module
from roadrisk import environment, features, schema
from roadrisk.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from roadrisk.compare.analysis import run_speed_sample
from roadrisk.compare.stats import speed_up
from roadrisk.executors import ExecutorConfig
from roadrisk.models import MODELS
from roadrisk.profiles import PROFILES
from roadrisk.trainer import TrainOptions, train

ROOT = Path(__file__).resolve().parents[1]


def alternated(repeat: int, pair: tuple) -> tuple:
    """The two sides of a comparison in the order of this repeat: swapped on odd repeats, so the
    machine's slow drift falls on both sides alike."""
    return pair if repeat % 2 == 0 else pair[::-1]


def paired_ratios(ours: list[float], baseline: list[float]) -> list[float]:
    """Each repeat's own ratio: its two runs are neighbours in time, so they share the machine's state."""
    return sorted(round(o / b, 4) for o, b in zip(ours, baseline))


def interval_json(s) -> list[float] | None:
    return [round(s.low, 4), round(s.high, 4)] if s.low else None


def interval_text(measure: dict) -> str:
    interval = f" [{measure['interval_95'][0]}, {measure['interval_95'][1]}]" if measure["interval_95"] else ""
    return interval + ("" if measure["significant"] else " (not significant)")


def quiet_train(profile: str = "quick", **options):
    """``roadrisk train`` in this process, silenced; a failed run stops the benchmark."""
    with silenced():
        outcome = train(TrainOptions(profile=profile, device="cpu", **options))
    if outcome.exit_code != 0:
        raise SystemExit(f"bench: trainer run failed: {outcome.run_dir}")
    return outcome


def trainer_run(data_dir: Path, model: str, folds: int, seed: int, runs_dir: Path, jobs: int = 1) -> float:
    start = time.perf_counter()
    quiet_train(data_dir=data_dir, model=model, folds=folds, seed=seed, label=f"bench-{model}", runs_dir=runs_dir,
                executor=ExecutorConfig("process" if jobs > 1 else "inline", jobs))
    return time.perf_counter() - start


def overhead(model: str, repeats: int, tmp: Path, log, profile_name: str = "quick") -> dict:
    profile = PROFILES[profile_name]
    data_dir, _ = data_module.embedded_dir(profile.train_rows, profile.test_rows, profile.original_rows, 42)
    params = MODELS[model].defaults(profile.name, "cpu")
    threads = environment.usable_cpus()[0]
    ours, bare, bare_saving = [], [], []
    outside = {"bare": [], "roadrisk": []}  # seconds outside the library's fit/predict calls
    for i in range(repeats):  # alternate, and swap who goes first, so drift hits both sides alike
        def bare_side():
            times = bare_run(data_dir, model, params, profile.folds, 42, threads, tmp / "bare")
            bare.append(times["total"])
            bare_saving.append(times["saving"])
            outside["bare"].append(times["total"] - times["model"])

        def our_side():
            start = time.perf_counter()
            outcome = quiet_train(profile=profile.name, data_dir=data_dir, model=model, folds=profile.folds, seed=42,
                                  label=f"bench-{model}", runs_dir=tmp / "runs")
            ours.append(time.perf_counter() - start)
            timings = json.loads((outcome.run_dir / "run.json").read_text())["timings"]
            outside["roadrisk"].append(ours[-1] - timings["fit_total_s"] - timings["predict_total_s"])

        for side in alternated(i, (bare_side, our_side)):
            side()
        log(f"overhead {model} {profile.name} repeat {i + 1}/{repeats}: bare {bare[-1]:.2f}s, roadrisk {ours[-1]:.2f}s")
    ratio = statistics.median(ours) / statistics.median(bare)
    # The stricter baseline: the same script minus its two to_csv calls (the files a user keeps).
    no_files = statistics.median(ours) / statistics.median(b - w for b, w in zip(bare, bare_saving))
    # What each side spends outside the model library: read within each run, so free of the drift
    # between runs that dominates the wall-time ratio on a shared VM.
    outside_median = {k: round(statistics.median(v), 4) for k, v in outside.items()}
    return {"model": model, "profile": profile.name, "rows": profile.train_rows, "folds": profile.folds,
            "repeats": repeats, "bare_s": bare, "roadrisk_s": ours, "ratio": round(ratio, 4),
            "paired_ratios": paired_ratios(ours, bare), "bare_saving_s": bare_saving,
            "ratio_vs_bare_without_files": round(no_files, 4), "outside_model_s": outside_median,
            "goal": 1.03, "meets_goal": ratio <= 1.03}


def process_overhead(model: str, repeats: int, tmp: Path, log) -> dict:
    """Whole processes, as a user meets them: ``roadrisk train`` against ``python benchmarks/bare.py``, timed
    from outside, interpreter start and imports included (the in-process ratio leaves both out)."""
    profile = PROFILES["quick"]
    data_dir, _ = data_module.embedded_dir(profile.train_rows, profile.test_rows, profile.original_rows, 42)
    commands = {
        "bare": [sys.executable, str(Path(__file__).resolve().parent / "bare.py"), model, str(data_dir),
                 str(tmp / "bare-process")],
        "roadrisk": [sys.executable, "-m", "roadrisk", "train", "--model", model, "--device", "cpu", "--data-dir",
                     str(data_dir), "--runs-dir", str(tmp / "process-runs"), "--label", "bench"],
    }
    times: dict[str, list[float]] = {"bare": [], "roadrisk": []}
    for i in range(repeats):
        for side in alternated(i, ("bare", "roadrisk")):
            start = time.perf_counter()
            done = subprocess.run(commands[side], capture_output=True, text=True)
            times[side].append(time.perf_counter() - start)
            if done.returncode != 0:
                raise SystemExit(f"bench: {side} process failed: {(done.stdout + done.stderr).strip()[-300:]}")
        log(f"process overhead {model} repeat {i + 1}/{repeats}: bare {times['bare'][-1]:.2f}s, "
            f"roadrisk {times['roadrisk'][-1]:.2f}s")
    ratio = statistics.median(times["roadrisk"]) / statistics.median(times["bare"])
    return {"model": model, "profile": profile.name, "repeats": repeats, "bare_s": times["bare"],
            "roadrisk_s": times["roadrisk"], "ratio": round(ratio, 4),
            "paired_ratios": paired_ratios(times["roadrisk"], times["bare"])}


def data_path(repeats: int, log) -> dict:
    full = PROFILES["full"]
    t0 = time.perf_counter()
    data_dir, generated = data_module.embedded_dir(full.train_rows, full.test_rows, full.original_rows, 42)
    generate_s = time.perf_counter() - t0
    bare, ours, ours_load, ours_features = [], [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        pd.read_csv(data_dir / schema.TRAIN_FILE)
        pd.read_csv(data_dir / schema.TEST_FILE)
        bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        dataset = data_module.load(data_dir)
        t1 = time.perf_counter()
        features.build(dataset.train, dataset.test, dataset.original)
        t2 = time.perf_counter()
        ours_load.append(t1 - t0)
        ours_features.append(t2 - t1)
        ours.append(t2 - t0)
    result = {"train_rows": full.train_rows, "test_rows": full.test_rows, "original_rows": full.original_rows,
              "generate_s": round(generate_s, 3) if generated else "cached",
              "bare_read_csv_s": round(statistics.median(bare), 3),
              "load_validate_s": round(statistics.median(ours_load), 3),
              "features_s": round(statistics.median(ours_features), 3),
              "data_path_s": round(statistics.median(ours), 3),
              "ratio_vs_read_csv": round(statistics.median(ours) / statistics.median(bare), 3),
              "goal_s": 2.0}
    result["meets_goal"] = result["data_path_s"] < 2.0
    log(f"data path: {result['data_path_s']}s (read_csv alone {result['bare_read_csv_s']}s)")
    return result


def _make(target: str, env: dict, **variables) -> subprocess.CompletedProcess:
    return subprocess.run(["make", target, *(f"{k}={v}" for k, v in variables.items())], cwd=ROOT,
                          env=clean_env(**env), capture_output=True, text=True)


def container_tax(tmp: Path, log, repeats: int = 3) -> dict:
    engine = subprocess.run(["docker", "version"], capture_output=True).returncode == 0
    if not engine:
        return {"measured": False, "why": "no Docker engine answers on this machine"}
    runs = tmp / "tax-runs"
    runs.mkdir()
    env = {"RUNS_DIR": str(runs)}
    build = _make("images", env)
    if build.returncode != 0:
        return {"measured": False, "why": "image build failed: " + build.stderr.strip().splitlines()[-1]}
    order = (("run-native", "native"), ("run-docker", "docker"))
    for repeat in range(repeats):  # run-to-run noise here is ~10%
        for target, label in alternated(repeat, order):
            result = _make(target, env, PROFILE="quick", MODEL="realmlp", DEVICE="cpu")
            if result.returncode != 0:
                return {"measured": False, "why": f"{target} failed"}
            log(f"container tax: {label} repeat {repeat + 1}/{repeats} done")
    records = {label: [json.loads(p.read_text()) for p in sorted(runs.glob(f"{label}/*/run.json"))]
               for _, label in order}
    fold = {k: [f["fit_s"] + f["predict_s"] for r in rs for f in r["timings"]["folds"]] for k, rs in records.items()}
    totals = {k: [r["timings"]["total_s"] for r in rs] for k, rs in records.items()}
    # One sample per run: the interval then includes run-to-run noise, as `roadrisk compare --pool` has it.
    per_run = {k: [run_speed_sample(r) for r in rs] for k, rs in records.items()}
    s = speed_up(per_run["docker"], per_run["native"])  # >1: docker takes longer than native
    probe = compute_probe(records["docker"][0]["device"]["torch_threads"], log)
    load = {k: [r["timings"]["load_s"] for r in rs] for k, rs in records.items()}
    return {
        "measured": True, "config": f"quick, realmlp, cpu, {repeats} alternating runs each",
        "threads": {k: rs[0]["device"]["torch_threads"] for k, rs in records.items()},
        "fold_s": fold, "per_run_fold_s": per_run, "total_s": totals, "ratio_docker_over_native": round(s.ratio, 4),
        "interval_95": interval_json(s), "significant": s.significant,
        "total_ratio": round(statistics.median(totals["docker"]) / statistics.median(totals["native"]), 4),
        "setup_s": {k: [r["timings"].get("setup_s") for r in rs] for k, rs in records.items()},
        "load_s": load, "compute_probe": probe,
        "goal": 1.05,
    }


def compute_probe(threads: int, log, pairs: int = 8) -> dict:
    """The same pure-torch loop (compute_probe.py) on the host and in the CPU image, alternated: does
    the container compute slower, apart from the trainer? Separates a real tax from this VM's drift."""
    script = Path(__file__).resolve().parent / "compute_probe.py"
    host = [sys.executable, str(script), str(threads)]
    container = ["docker", "run", "--rm", "--network", "none", "-v", f"{script}:/probe.py:ro",
                 "--entrypoint", "python", "roadrisk:cpu", "/probe.py", str(threads)]
    times: dict[str, list[float]] = {"native": [], "docker": []}
    for i in range(pairs):
        for label, command in alternated(i, (("native", host), ("docker", container))):
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                return {"measured": False, "why": f"probe failed in {label}: {done.stderr.strip()[-200:]}"}
            times[label].append(float(done.stdout.strip().splitlines()[-1]))
    s = speed_up(times["docker"], times["native"])
    log(f"compute probe: docker/native {s.ratio:.3f} over {pairs} alternating pairs")
    return {"measured": True, "pairs": pairs, "threads": threads, "seconds": times, "ratio": round(s.ratio, 4),
            "interval_95": interval_json(s), "significant": s.significant,
            "spread": {k: [round(min(v), 3), round(max(v), 3)] for k, v in times.items()}}


def concurrent_folds(tmp: Path, log) -> dict:
    """The --jobs option's effect: the same quick run with folds one by one and side by side."""
    profile = PROFILES["quick"]
    data_dir, _ = data_module.embedded_dir(profile.train_rows, profile.test_rows, profile.original_rows, 42)
    out = {}
    for model in ("hgb", "realmlp"):
        times = {}
        for jobs in (1, 2, 1, 2) if model == "hgb" else (1, 2):
            times.setdefault(jobs, []).append(trainer_run(data_dir, model, profile.folds, 42, tmp / "jobs", jobs))
            log(f"concurrent folds {model} jobs={jobs}: {times[jobs][-1]:.1f}s")
        out[model] = {"jobs1_s": times[1], "jobs2_s": times[2],
                      "speed_up": round(statistics.median(times[1]) / statistics.median(times[2]), 3)}
    return out


def scaling(tmp: Path, log, sizes_hgb=(40_000, 100_000, 250_000, 517_754), sizes_mlp=(10_000, 20_000, 40_000, 80_000)):
    rows = []
    for model, sizes in (("hgb", sizes_hgb), ("realmlp", sizes_mlp)):
        for n in sizes:
            data_dir, _ = data_module.embedded_dir(n, n // 3, 20_000, 42)
            outcome = quiet_train(data_dir=data_dir, model=model, folds=2, label=f"scale-{model}",
                                  runs_dir=tmp / "scale")
            record = json.loads((outcome.run_dir / "run.json").read_text())
            t = record["timings"]
            phases = {"setup": t["setup_s"], "load": t["load_s"], "features": t["features_s"],
                      "fit": t["fit_total_s"], "predict": t["predict_total_s"]}
            rows.append({"model": model, "rows": n, "total_s": t["total_s"], **{f"{k}_s": v for k, v in phases.items()},
                         "dominant": max(phases, key=phases.get), "oof_rmse": record["metrics"]["oof_rmse"],
                         "gap_to_floor_pct": record["metrics"]["gap_to_floor_pct"]})
            log(f"scaling {model} {n} rows: {t['total_s']:.1f}s (dominant: {rows[-1]['dominant']})")
    exponents = {}
    for model in ("hgb", "realmlp"):
        pts = [(r["rows"], r["fit_s"]) for r in rows if r["model"] == model]
        slope = np.polyfit(np.log([p[0] for p in pts]), np.log([p[1] for p in pts]), 1)[0]
        exponents[model] = round(float(slope), 3)
    return {"rows": rows, "fit_time_exponent": exponents}


def render(result: dict) -> str:
    m = result["machine"]
    out = ["# roadrisk benchmark", "", f"measured_at: {result['measured_at']}",
           f"machine: {m['cpu_model']}, {m['cpu_count']} usable CPUs ({m['cpu_count_source']}), "
           f"torch {m['torch']}, in_container {m['in_container']}, cuda {m['cuda_available']}", ""]
    o = result["overhead"]
    out += ["## 1. Trainer overhead (goal ≤ 1.03)", "",
            "| model | profile | rows | folds | repeats | bare median s | roadrisk median s | ratio | paired range "
            "| ratio vs bare saving nothing | outside fit/predict s: bare, roadrisk |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    if not o:
        out.append("- skipped")
    for row in o:
        paired = row.get("paired_ratios") or [row["ratio"]]
        out.append(f"| {row['model']} | {row.get('profile', 'quick')} | {row['rows']} | {row['folds']} | {row['repeats']} "
                   f"| {statistics.median(row['bare_s']):.2f} | {statistics.median(row['roadrisk_s']):.2f} "
                   f"| **{row['ratio']:.3f}** | {paired[0]:.3f}–{paired[-1]:.3f} "
                   f"| {row.get('ratio_vs_bare_without_files', float('nan')):.3f} "
                   f"| {row.get('outside_model_s', {}).get('bare', float('nan')):.2f}, "
                   f"{row.get('outside_model_s', {}).get('roadrisk', float('nan')):.2f} |")
    for row in result.get("process_overhead") or []:
        out += ["", f"Whole process, {row['model']} {row['profile']} (`roadrisk train` vs `python benchmarks/bare.py`, "
                    f"interpreter start and imports included, {row['repeats']} alternating repeats): bare "
                    f"{statistics.median(row['bare_s']):.2f} s, roadrisk {statistics.median(row['roadrisk_s']):.2f} s, "
                    f"ratio **{row['ratio']:.3f}** (paired {row['paired_ratios'][0]:.3f}–{row['paired_ratios'][-1]:.3f})"]
    d = result["data_path"]
    out += ["", "## 2. Data path, Kaggle sizes (goal < 2 s)", ""]
    out += [f"- rows: {d['train_rows']} train + {d['test_rows']} test + {d['original_rows']} original",
            f"- bare `pandas.read_csv` of train + test: {d['bare_read_csv_s']} s",
            f"- roadrisk load + validate (3 files): {d['load_validate_s']} s; features: {d['features_s']} s",
            f"- whole data path: **{d['data_path_s']} s** ({d['ratio_vs_read_csv']}x read_csv)"] if d else ["- skipped"]
    c = result["container_tax"]
    out += ["", "## 3. Container tax (goal ≤ 1.05)", ""]
    if c.get("measured"):
        out += [f"- config: {c['config']}; threads {c['threads']}",
                f"- per-fold time docker/native (one sample per run): **{c['ratio_docker_over_native']}**"
                f"{interval_text(c)}; whole run: {c['total_ratio']}",
                f"- setup (imports, device) s: {c['setup_s']}; load (data on a bind mount vs local) s: {c['load_s']}"]
        p = c.get("compute_probe") or {}
        if p.get("measured"):
            out.append(f"- compute probe (pure torch loop, {p['pairs']} alternating pairs, {p['threads']} threads): "
                       f"docker/native **{p['ratio']}**{interval_text(p)}; "
                       f"range native {p['spread']['native']} s, docker {p['spread']['docker']} s")
        elif p:
            out.append(f"- compute probe not measured: {p['why']}")
    else:
        out.append(f"- not measured: {c['why']}")
    j = result.get("concurrent_folds") or {}
    if j:
        out += ["", "## 3b. Concurrent folds (--jobs 2 vs 1, quick, 3 folds)", "",
                "| model | jobs 1 s | jobs 2 s | speed-up |", "|---|---|---|---|"]
        for model, row in j.items():
            out.append(f"| {model} | {statistics.median(row['jobs1_s']):.1f} | {statistics.median(row['jobs2_s']):.1f} "
                       f"| {row['speed_up']}x |")
    out += accelerator.render(result["accelerator"], result["full_run"])
    s = result["scaling"]
    ray_lines = [*ray_cost.render(result.get("ray") or {}, result.get("gpu_share") or {}),
                 *cluster_scaling.render(result.get("cluster") or {}),
                 *epoch_rates.render(result.get("epoch_rates") or {}),
                 *accuracy.render(result.get("accuracy") or {}),
                 *tune_cost.render(result.get("tune") or {})]
    if not s["rows"]:
        return "\n".join([*out, "", "## 5. Scaling on this CPU (2 folds)", "", "- skipped", *ray_lines, ""])
    out += ["", "## 5. Scaling on this CPU (2 folds)", "",
            "| model | rows | total s | setup | load | features | fit | predict | dominant | gap to floor |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in s["rows"]:
        out.append(f"| {r['model']} | {r['rows']} | {r['total_s']:.1f} | {r['setup_s']:.1f} | {r['load_s']:.2f} "
                   f"| {r['features_s']:.2f} | {r['fit_s']:.1f} | {r['predict_s']:.2f} | {r['dominant']} "
                   f"| +{r['gap_to_floor_pct']:.2f}% |")
    out += ["", f"fit time grows as rows^k: {s['fit_time_exponent']}", *ray_lines, ""]
    return "\n".join(out)


SECTIONS = ("overhead", "data", "container", "jobs", "accelerator", "full-run", "scaling", "ray", "gpu-share", "cluster",
            "epoch-rates", "accuracy", "tune")
# Overhead rows: (model, profile, repeats). hgb's quick run is 2 s, so it gets the most repeats; the
# Kaggle-size hgb row shows the ratio a real run pays.
OVERHEAD_ROWS = (("hgb", "quick", 7), ("realmlp", "quick", 2), ("hgb", "full", 3))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "reports")
    parser.add_argument("--repeats", type=int, default=3, help="data-path repeats")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, metavar="SECTION",
                        help=f"run just these sections ({', '.join(SECTIONS)}); the others are marked skipped")
    parser.add_argument("--skip", nargs="*", default=[], choices=SECTIONS, metavar="SECTION")
    parser.add_argument("--accelerator-device", choices=("cuda", "mps", "cpu", "none"),
                        help="device for sections 4 and the full run (default: CUDA, then MPS, else not measured); "
                             "cpu only checks the code; none: report 'not measured' even where a GPU is")
    parser.add_argument("--accelerator-rows", type=int, default=PROFILES["full"].train_rows,
                        help="train rows for section 4 (default: Kaggle's)")
    parser.add_argument("--accelerator-epochs", type=int, help="force this many epochs in section 4 (code checks)")
    parser.add_argument("--accelerator-models", nargs="+", default=["tabm", "realmlp"], choices=["tabm", "realmlp"])
    parser.add_argument("--full-run-profile", default="full", choices=sorted(PROFILES),
                        help="profile of the end-to-end run (default full; smaller only for code checks)")
    parser.add_argument("--full-run-recipes", nargs="+", default=list(accelerator.RECIPE_ORDER),
                        choices=list(accelerator.RECIPE_ORDER), help="recipes of the end-to-end runs (default both)")
    parser.add_argument("--ray-repeats", type=int, default=3, help="alternating inline/Ray repeats in section 6")
    parser.add_argument("--ray-profile", default="quick", choices=sorted(PROFILES),
                        help="data of section 6's members (default quick; smoke only checks the code)")
    parser.add_argument("--cluster-repeats", type=int, default=2,
                        help="alternating 1-worker/2-worker repeats of `make run-cluster` in section 6b (default 2)")
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("DATA_DIR") or None,
                        help="section 8's data (default DATA_DIR; without one, section 8 is not measured)")
    parser.add_argument("--accuracy-folds", type=int, default=5, help="section 8: K in K-fold (default 5)")
    parser.add_argument("--accuracy-cv", default="kfold", choices=("kfold", "stratified"), help="section 8's folds")
    parser.add_argument("--accuracy-cv-seed", type=int, default=42, help="section 8: seed of the folds (default 42)")
    parser.add_argument("--accuracy-models", nargs="+", default=list(accuracy.TREES + accuracy.TORCH),
                        choices=list(accuracy.TREES + accuracy.TORCH), help="section 8's models (default all)")
    parser.add_argument("--accuracy-torch-profile", default="quick", choices=sorted(PROFILES),
                        help="section 8: profile of tabm/realmlp (default quick; full takes an hour on a CPU)")
    parser.add_argument("--accuracy-fixed-rounds", action="store_true",
                        help="section 8: also refit each GBDT at its mean early-stopped round count without "
                             "early stopping (what picking the round on the validation rows is worth)")
    parser.add_argument("--tune-trials", type=int, default=12, help="section 9: trials of each tune (default 12)")
    parser.add_argument("--from-json", type=Path, metavar="BENCH_JSON",
                        help="measure nothing: write bench.md and bench.png again from a saved bench.json")
    args = parser.parse_args(argv)
    if args.from_json:
        return write_reports(json.loads(args.from_json.read_text()), args.out)
    wanted = [s for s in (args.only or SECTIONS) if s not in args.skip]
    log = lambda text: print(f"bench: {text}", flush=True)  # noqa: E731
    facts = environment.collect()
    device = (None if args.accelerator_device == "none"
              else args.accelerator_device or accelerator.available_accelerator(facts))
    result: dict = {"schema_version": 2, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "sections": wanted,
                    "machine": {k: facts.get(k) for k in ("cpu_model", "cpu_count", "cpu_count_source", "torch",
                                                          "in_container", "cuda_available", "gpu_name", "platform")}}
    skipped = {"measured": False, "why": "skipped"}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        result["overhead"] = [overhead(model, repeats, tmp, log, profile) for model, profile, repeats in OVERHEAD_ROWS
                              ] if "overhead" in wanted else []
        result["process_overhead"] = [process_overhead("hgb", 5, tmp, log)] if "overhead" in wanted else []
        result["data_path"] = data_path(args.repeats, log) if "data" in wanted else {}
        result["container_tax"] = container_tax(tmp, log) if "container" in wanted else skipped
        result["concurrent_folds"] = concurrent_folds(tmp, log) if "jobs" in wanted else {}
        if "accelerator" not in wanted:
            result["accelerator"] = skipped
        elif device is None:
            result["accelerator"] = accelerator.not_measured(facts)
        else:
            result["accelerator"] = accelerator.settings_table(device, args.accelerator_rows,
                                                               tuple(args.accelerator_models),
                                                               args.accelerator_epochs, log)
        if "full-run" not in wanted:
            result["full_run"] = skipped
        elif device is None:
            result["full_run"] = {"measured": False, "why": "no CUDA or MPS device: the full profile with tabm "
                                                            "takes hours on a CPU"}
        else:
            result["full_run"] = accelerator.full_run(device, tmp / "full", log, args.full_run_profile,
                                                      recipes=tuple(args.full_run_recipes))
        result["scaling"] = scaling(tmp, log) if "scaling" in wanted else {"rows": [], "fit_time_exponent": {}}
        result["ray"] = ray_cost.ray_cost(tmp, log, args.ray_repeats, args.ray_profile) if "ray" in wanted else skipped
        result["gpu_share"] = (ray_cost.gpu_share(tmp, log, allowed=args.accelerator_device != "none")
                               if "gpu-share" in wanted else skipped)
        result["cluster"] = cluster_scaling.cluster_scaling(tmp, log, args.cluster_repeats) if "cluster" in wanted else skipped
        result["epoch_rates"] = epoch_rates.epoch_rates(log) if "epoch-rates" in wanted else skipped
        if "accuracy" not in wanted:
            result["accuracy"] = skipped
        elif args.data_dir is None:
            result["accuracy"] = {"measured": False, "why": "no data dir: pass DATA_DIR=... (or --data-dir)"}
        else:
            result["accuracy"] = accuracy.accuracy(
                args.data_dir, tmp, log, n_folds=args.accuracy_folds, cv_seed=args.accuracy_cv_seed,
                cv=args.accuracy_cv, models=tuple(args.accuracy_models), torch_profile=args.accuracy_torch_profile,
                fixed_rounds=args.accuracy_fixed_rounds)
        result["tune"] = tune_cost.tune_cost(tmp, log, args.tune_trials) if "tune" in wanted else skipped
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "bench.json", json.loads(json.dumps(result, default=float)))
    return write_reports(result, args.out)


def write_reports(result: dict, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    text = render(result)
    picture = plot.render_png(result)
    if picture:
        atomic_write_bytes(out / "bench.png", picture)
        text += "\n![ratios and scaling](bench.png)\n"
    atomic_write_text(out / "bench.md", text)
    print(text)
    return 0 if all(math.isfinite(float(r["ratio"])) for r in result["overhead"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
