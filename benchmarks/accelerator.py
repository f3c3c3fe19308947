"""Section 4 of ``make bench``: the trainer's device-aware defaults against the seed's settings.

For each torch model, one holdout fold (fold 1 of the 5-fold plan, an 80/20 split like the
FIELD-NOTES §4 anchors) of the full-size embedded data is trained twice on the accelerator: once
with the seed's settings (fp32, TF32 off, the seed's batch size) and once with the defaults the
trainer uses on that device (AMP where the model supports it, TF32 on CUDA, batch 2048). Time and
RMSE are written side by side, so a default that buys speed with accuracy shows it.

``full_run`` is the issue's end-to-end goal: ``roadrisk train --profile full --model tabm`` on the
accelerator, imports and data included, against 5 minutes and 0.1 % of the floor.

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
from roadrisk.models import MODELS, TABM_SEED_RECIPE
from roadrisk.quiet import library_output_to
from roadrisk.risk_formula import floor_rmse

# What the seed script ran: TabM's recipe as published (20 epochs in the anchor run), RealMLP with
# pytabkit's batch 256 (8 epochs in the anchor run); neither used TF32, which torch leaves off.
SEED_SETTINGS = {
    "tabm": dict(TABM_SEED_RECIPE, n_epochs=20),
    "realmlp": {"n_epochs": 8, "batch_size": 256},
}
SEED_PRECISION = "highest"
FULL_RUN_GOAL_S = 300.0
FULL_RUN_GOAL_GAP_PCT = 0.1


def available_accelerator(facts: dict) -> str | None:
    if facts.get("cuda_available"):
        return "cuda"
    if facts.get("mps_available"):
        return "mps"
    return None


def settings(model: str, device: str, epochs: int | None = None) -> dict[str, tuple[dict, str]]:
    """{"seed": (params, matmul precision), "default": (params, matmul precision)} for one model."""
    pairs = {"seed": (dict(SEED_SETTINGS[model]), SEED_PRECISION),
             "default": (MODELS[model].defaults("full", device), matmul_precision_for(device))}
    if epochs is not None:  # tests: same code, a fraction of the work
        for params, _ in pairs.values():
            params["n_epochs"] = epochs
    return pairs


def _summary(params: dict, precision: str) -> str:
    keys = ("n_epochs", "batch_size", "allow_amp")
    return ", ".join(f"{k}={params[k]}" for k in keys if k in params) + f", matmul={precision}"


def settings_table(device: str, rows: int, models: tuple[str, ...], epochs: int | None, log) -> dict:
    """Time and holdout RMSE of each model under the seed's settings and under the device defaults."""
    data_dir, _ = data_module.embedded_dir(rows, max(1, rows // 3), min(100_000, rows), 42)
    dataset = data_module.load(data_dir, "embedded")
    feature_set = features.build(dataset.train, dataset.test, dataset.original)
    target = dataset.train[schema.TARGET].to_numpy(dtype=float)
    threads = environment.usable_cpus()[0]
    out_rows = []
    with tempfile.TemporaryDirectory() as tmp:
        library_log = Path(tmp) / "library.log"
        for model in models:
            for name, (params, precision) in settings(model, device, epochs).items():
                spec = plan(len(target), 5, 42, model, params, device, threads, precision)[0]
                log(f"accelerator {model} {name} ({_summary(params, precision)}) on {device}: training")
                with library_output_to(library_log):
                    result = run_fold(spec, feature_set, target)
                floor = floor_rmse(dataset.train.iloc[spec.val_idx], target[spec.val_idx])
                fit_s = result.timings["fit"]
                out_rows.append({
                    "model": model, "settings": name, "summary": _summary(params, precision),
                    "params": params, "matmul_precision": precision,
                    "fit_s": round(fit_s, 3), "predict_s": round(result.timings["predict"], 3),
                    "s_per_epoch": round(fit_s / params["n_epochs"], 3),
                    "holdout_rmse": round(result.rmse, 6), "floor_rmse": round(floor, 6),
                    "gap_to_floor_pct": round(100 * (result.rmse - floor) / floor, 3),
                })
                log(f"accelerator {model} {name}: {fit_s:.1f}s fit, RMSE {result.rmse:.6f} (floor {floor:.6f})")
    by = {(r["model"], r["settings"]): r for r in out_rows}
    verdicts = {}
    for model in models:
        seed, default = by[(model, "seed")], by[(model, "default")]
        verdicts[model] = {
            "speed_up_per_epoch": round(seed["s_per_epoch"] / default["s_per_epoch"], 3),
            "rmse_change_pct": round(100 * (default["holdout_rmse"] - seed["holdout_rmse"]) / seed["holdout_rmse"], 3),
        }
    return {"measured": True, "device": device, "train_rows": rows, "holdout": "fold 1 of 5 (80/20)",
            "epochs_overridden": epochs, "rows": out_rows, "verdicts": verdicts}


def full_run(device: str, runs_dir: Path, log, profile: str = "full", model: str = "tabm",
             extra_args: tuple[str, ...] = ()) -> dict:
    """``roadrisk train`` end to end in a fresh process (imports, data, 5 folds, outputs), timed from outside."""
    command = [sys.executable, "-m", "roadrisk", "train", "--profile", profile, "--model", model,
               "--device", device, "--strict-device", "--label", f"bench-{profile}-{model}",
               "--runs-dir", str(runs_dir), *extra_args]
    log(f"full run: {' '.join(command[2:])}")
    start = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True)
    wall_s = time.perf_counter() - start
    if finished.returncode != 0:
        last = (finished.stdout + finished.stderr).strip().splitlines()
        return {"measured": False, "why": f"roadrisk train exited {finished.returncode}: {last[-1] if last else ''}"}
    record = json.loads(next(runs_dir.glob(f"bench-{profile}-{model}/*/run.json")).read_text())
    gap = record["metrics"]["gap_to_floor_pct"]
    result = {"measured": True, "device": device, "gpu_name": record["device"].get("gpu_name"),
              "profile": profile, "model": model, "folds": record["config"]["folds"],
              "train_rows": record["data"].get("train_rows"), "wall_s": round(wall_s, 1),
              "total_s": record["timings"]["total_s"], "fit_total_s": record["timings"]["fit_total_s"],
              "oof_rmse": record["metrics"]["oof_rmse"], "floor_rmse": record["metrics"]["floor_rmse"],
              "gap_to_floor_pct": gap, "goal_s": FULL_RUN_GOAL_S, "goal_gap_pct": FULL_RUN_GOAL_GAP_PCT}
    result["meets_goal"] = wall_s < FULL_RUN_GOAL_S and gap is not None and gap <= FULL_RUN_GOAL_GAP_PCT
    log(f"full run: {wall_s:.0f}s end to end, OOF {result['oof_rmse']} (+{gap}% over the floor)")
    return result


def not_measured(facts: dict) -> dict:
    return {"measured": False,
            "why": "no CUDA or MPS device on this machine; run `make bench` on an NVIDIA GPU or an Apple-silicon Mac",
            "cpu": facts.get("cpu_model"),
            "defaults": {device: {m: {"params": MODELS[m].defaults("full", device),
                                      "matmul_precision": matmul_precision_for(device)} for m in SEED_SETTINGS}
                         for device in ("cuda", "mps")}}


def render(section: dict, full: dict) -> list[str]:
    out = ["", "## 4. Accelerator settings (defaults vs the seed's, one 80/20 holdout fold)", ""]
    if not section.get("measured"):
        out.append(f"- not measured: {section['why']}")
        for device, models in (section.get("defaults") or {}).items():
            out.append(f"- defaults the trainer would use on {device}: "
                       + "; ".join(f"{m}: {_summary(v['params'], v['matmul_precision'])}" for m, v in models.items()))
    else:
        epochs = section.get("epochs_overridden")
        out += [f"device: {section['device']}; train rows: {section['train_rows']}; holdout: {section['holdout']}"
                + (f"; epochs forced to {epochs} (a code check, not a measurement)" if epochs else ""), "",
                "| model | settings | values | fit s | s/epoch | holdout RMSE | floor | gap |",
                "|---|---|---|---|---|---|---|---|"]
        for r in section["rows"]:
            out.append(f"| {r['model']} | {r['settings']} | {r['summary']} | {r['fit_s']:.1f} | {r['s_per_epoch']:.2f} "
                       f"| {r['holdout_rmse']:.6f} | {r['floor_rmse']:.6f} | +{r['gap_to_floor_pct']:.3f}% |")
        out.append("")
        for model, v in section["verdicts"].items():
            out.append(f"- {model}: defaults {v['speed_up_per_epoch']}x faster per epoch, RMSE {v['rmse_change_pct']:+.3f}%")
    out += ["", f"### `{full.get('profile', 'full')}` profile end to end (goal for `full`: < "
                f"{FULL_RUN_GOAL_S / 60:.0f} min, within {FULL_RUN_GOAL_GAP_PCT}% of the floor)", ""]
    if full.get("measured"):
        out.append(f"- {full['profile']}/{full['model']}, {full['folds']} folds on {full['device']} "
                   f"({full.get('gpu_name') or 'no GPU name'}): **{full['wall_s']:.0f} s** end to end, OOF "
                   f"{full['oof_rmse']} vs floor {full['floor_rmse']} (+{full['gap_to_floor_pct']}%): "
                   f"goal {'met' if full['meets_goal'] else 'NOT met'}")
    else:
        out.append(f"- not measured: {full.get('why', 'skipped')}")
    return out
