"""Section 4 of ``make bench``: the reference recipe against the fast recipe, on the accelerator.

For each torch model, one holdout fold (fold 1 of the 5-fold plan, an 80/20 split) of the full-size
embedded data is trained twice: with ``--recipe reference`` (the reference notebook exactly: fp32, TF32 off, its
batch size, its 25 features, TabM stopped by early stopping alone) and with ``--recipe fast`` (AMP,
batch 2048 and TF32 on CUDA, TabM capped at 20 epochs, 26 features). Time, epochs and RMSE are
written side by side, so a speed-up bought with accuracy shows it. RealMLP has no reference setting (the
reference trains TabM only; its ``reference`` is pytabkit's defaults, 256 epochs): both of its rows are held to
``REALMLP_BENCH_EPOCHS`` so they compare per epoch.

``full_run`` is the end-to-end goal: ``roadrisk train --profile full --model tabm --recipe R`` in a
fresh process, imports and data included, for each recipe, against 5 minutes and 0.1 % of the floor.

Both run only where an accelerator is (CUDA, or MPS on a Mac). ``--accelerator-device cpu`` runs the
same code on a small dataset so the tests can check it end to end; its times say nothing about a GPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from roadrisk import data as data_module
from roadrisk import environment, features, schema
from roadrisk.device import matmul_precision_for
from roadrisk.folds import plan, run_fold
from roadrisk.models import MODELS
from roadrisk.quiet import library_output_to
from roadrisk.recipes import RECIPES
from roadrisk.risk_formula import floor_rmse

RECIPE_ORDER = ("reference", "fast")
REALMLP_BENCH_EPOCHS = 16
FULL_RUN_GOAL_S = 300.0
FULL_RUN_GOAL_GAP_PCT = 0.1


def available_accelerator(facts: dict) -> str | None:
    if facts.get("cuda_available"):
        return "cuda"
    if facts.get("mps_available"):
        return "mps"
    return None


def settings(model: str, device: str, epochs: int | None = None) -> dict[str, tuple[dict, str]]:
    """{recipe: (params, matmul precision)} for one model, exactly as ``roadrisk train`` resolves them."""
    pairs = {}
    for name in RECIPE_ORDER:
        params = MODELS[model].defaults("full", device, name)
        if model == "realmlp":
            params["n_epochs"] = REALMLP_BENCH_EPOCHS
        precision = matmul_precision_for(device, model) if RECIPES[name].device_speedups else "highest"
        pairs[name] = (params, precision)
    if epochs is not None:  # tests: same code, a fraction of the work
        for params, _ in pairs.values():
            params["n_epochs"] = epochs
    return pairs


def _summary(params: dict, precision: str) -> str:
    keys = ("n_epochs", "batch_size", "allow_amp")
    return ", ".join(f"{k}={params.get(k, 'default')}" for k in keys) + f", matmul={precision}"


def settings_table(device: str, rows: int, models: tuple[str, ...], epochs: int | None, log) -> dict:
    """Time, epochs and holdout RMSE of each model under the reference recipe and under the fast one."""
    data_dir, _ = data_module.embedded_dir(rows, max(1, rows // 3), min(100_000, rows), 42)
    dataset = data_module.load(data_dir, "embedded")
    target = dataset.train[schema.TARGET].to_numpy(dtype=float)
    threads = environment.usable_cpus()[0]
    out_rows = []
    with tempfile.TemporaryDirectory() as tmp:
        library_log = Path(tmp) / "library.log"
        for model in models:
            for name, (params, precision) in settings(model, device, epochs).items():
                recipe = RECIPES[name]
                feature_set = features.build(dataset.train, dataset.test, dataset.original, recipe)
                spec = plan(len(target), 5, 42, model=model, params=params, device=device, seed=42, threads=threads,
                            matmul_precision=precision, categorical=tuple(feature_set.categorical),
                            empty_cache=recipe.empty_cache_after_fold)[0]
                log(f"accelerator {model} {name} ({_summary(params, precision)}) on {device}: training")
                with library_output_to(library_log):
                    result = run_fold(spec, feature_set, target)
                floor = floor_rmse(dataset.train.iloc[spec.val_idx], target[spec.val_idx])
                fit_s = result.timings["fit"]
                epochs_run = result.epochs.get("epochs") or params.get("n_epochs")
                out_rows.append({
                    "model": model, "settings": name, "summary": _summary(params, precision),
                    "params": params, "matmul_precision": precision, "features": len(feature_set.names),
                    "fit_s": round(fit_s, 3), "predict_s": round(result.timings["predict"], 3),
                    "epochs": epochs_run, "best_epoch": result.epochs.get("best_epoch"),
                    "s_per_epoch": round(fit_s / epochs_run, 3),
                    "holdout_rmse": round(result.rmse, 6), "floor_rmse": round(floor, 6),
                    "gap_to_floor_pct": round(100 * (result.rmse - floor) / floor, 3),
                })
                log(f"accelerator {model} {name}: {fit_s:.1f}s fit, {epochs_run} epochs, RMSE {result.rmse:.6f} "
                    f"(floor {floor:.6f})")
    by = {(r["model"], r["settings"]): r for r in out_rows}
    verdicts = {}
    for model in models:
        reference, fast = by[(model, "reference")], by[(model, "fast")]
        verdicts[model] = {
            "speed_up_per_epoch": round(reference["s_per_epoch"] / fast["s_per_epoch"], 3),
            "speed_up_fit": round(reference["fit_s"] / fast["fit_s"], 3),
            "rmse_change_pct": round(100 * (fast["holdout_rmse"] - reference["holdout_rmse"]) / reference["holdout_rmse"], 3),
        }
    return {"measured": True, "device": device, "train_rows": rows, "holdout": "fold 1 of 5 (80/20)",
            "epochs_overridden": epochs, "rows": out_rows, "verdicts": verdicts}


def full_run(device: str, runs_dir: Path, log, profile: str = "full", model: str = "tabm",
             recipes: tuple[str, ...] = RECIPE_ORDER) -> dict:
    """``roadrisk train`` end to end in a fresh process per recipe (imports, data, 5 folds, outputs)."""
    out = {"measured": True, "device": device, "profile": profile, "model": model, "runs": {}}
    for recipe in recipes:
        out["runs"][recipe] = _one_full_run(device, runs_dir, log, profile, model, recipe)
    out["measured"] = any(r["measured"] for r in out["runs"].values())
    if all(r.get("measured") for r in out["runs"].values()) and {"reference", "fast"} <= set(out["runs"]):
        out["fast_vs_reference_wall"] = round(out["runs"]["reference"]["wall_s"] / out["runs"]["fast"]["wall_s"], 3)
    return out


def _one_full_run(device: str, runs_dir: Path, log, profile: str, model: str, recipe: str) -> dict:
    label = f"bench-{profile}-{model}-{recipe}"
    command = [sys.executable, "-m", "roadrisk", "train", "--profile", profile, "--model", model, "--recipe", recipe,
               "--device", device, "--strict-device", "--label", label, "--runs-dir", str(runs_dir)]
    log(f"full run: {' '.join(command[2:])}")
    start = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True)
    wall_s = time.perf_counter() - start
    if finished.returncode != 0:
        last = (finished.stdout + finished.stderr).strip().splitlines()
        return {"measured": False, "why": f"roadrisk train exited {finished.returncode}: {last[-1] if last else ''}"}
    run_dir = next(runs_dir.glob(f"{label}/*/run.json")).parent
    record = json.loads((run_dir / "run.json").read_text())
    gap = record["metrics"]["gap_to_floor_pct"]
    result = {"measured": True, "recipe": recipe, "run_dir": str(run_dir), "gpu_name": record["device"].get("gpu_name"),
              "folds": record["config"]["folds"], "train_rows": record["data"].get("train_rows"),
              "wall_s": round(wall_s, 1), "total_s": record["timings"]["total_s"],
              "fit_total_s": record["timings"]["fit_total_s"],
              "epochs": [f.get("epochs") for f in record["metrics"]["folds"]],
              "fold_rmse": [f["rmse"] for f in record["metrics"]["folds"]],
              "oof_rmse": record["metrics"]["oof_rmse"], "floor_rmse": record["metrics"]["floor_rmse"],
              "gap_to_floor_pct": gap, "goal_s": FULL_RUN_GOAL_S, "goal_gap_pct": FULL_RUN_GOAL_GAP_PCT}
    result["meets_goal"] = wall_s < FULL_RUN_GOAL_S and gap is not None and gap <= FULL_RUN_GOAL_GAP_PCT
    log(f"full run ({recipe}): {wall_s:.0f}s end to end, OOF {result['oof_rmse']} (+{gap}% over the floor)")
    return result


def not_measured(facts: dict) -> dict:
    return {"measured": False,
            "why": "no CUDA or MPS device on this machine; run `make bench` on an NVIDIA GPU or an Apple-silicon Mac",
            "cpu": facts.get("cpu_model"),
            "defaults": {device: {m: {recipe: {"params": params, "matmul_precision": precision}
                                      for recipe, (params, precision) in settings(m, device).items()}
                                  for m in ("tabm", "realmlp")}
                         for device in ("cuda", "mps")}}


def render(section: dict, full: dict) -> list[str]:
    out = ["", "## 4. Accelerator: the reference recipe against the fast one (one 80/20 holdout fold)", ""]
    if not section.get("measured"):
        out.append(f"- not measured: {section['why']}")
        for device, models in (section.get("defaults") or {}).items():
            for model, recipes in models.items():
                out.append(f"- {model} on {device} would train with: "
                           + "; ".join(f"{r}: {_summary(v['params'], v['matmul_precision'])}" for r, v in recipes.items()))
    else:
        epochs = section.get("epochs_overridden")
        out += [f"device: {section['device']}; train rows: {section['train_rows']}; holdout: {section['holdout']}"
                + (f"; epochs forced to {epochs} (a code check, not a measurement)" if epochs else ""), "",
                "| model | recipe | values | features | epochs (best) | fit s | s/epoch | holdout RMSE | floor | gap |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for r in section["rows"]:
            out.append(f"| {r['model']} | {r['settings']} | {r['summary']} | {r['features']} | {r['epochs']} "
                       f"({r['best_epoch']}) | {r['fit_s']:.1f} | {r['s_per_epoch']:.2f} | {r['holdout_rmse']:.6f} "
                       f"| {r['floor_rmse']:.6f} | +{r['gap_to_floor_pct']:.3f}% |")
        out.append("")
        for model, v in section["verdicts"].items():
            out.append(f"- {model}: fast is {v['speed_up_per_epoch']}x faster per epoch, {v['speed_up_fit']}x per fit, "
                       f"RMSE {v['rmse_change_pct']:+.3f}% against reference")
    out += ["", f"### `{full.get('profile', 'full')}` profile end to end, per recipe (goal for `full`: < "
                f"{FULL_RUN_GOAL_S / 60:.0f} min, within {FULL_RUN_GOAL_GAP_PCT}% of the floor)", ""]
    if not full.get("runs"):
        out.append(f"- not measured: {full.get('why', 'skipped')}")
        return out
    for recipe, run in full["runs"].items():
        if not run.get("measured"):
            out.append(f"- {recipe}: not measured: {run.get('why')}")
            continue
        out.append(f"- {recipe}: {full['profile']}/{full['model']}, {run['folds']} folds on {full['device']} "
                   f"({run.get('gpu_name') or 'no GPU name'}): **{run['wall_s']:.0f} s** end to end, epochs per fold "
                   f"{run['epochs']}, OOF {run['oof_rmse']} vs floor {run['floor_rmse']} (+{run['gap_to_floor_pct']}%): "
                   f"goal {'met' if run['meets_goal'] else 'NOT met'}")
    if full.get("fast_vs_reference_wall"):
        out.append(f"- fast vs reference, end to end: {full['fast_vs_reference_wall']}x")
    return out
