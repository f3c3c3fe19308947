"""``roadrisk doctor --probe``: should I use my GPU? Measured on this machine, not assumed.

For each torch model, short fits (fast recipe, generated rows) on the CPU and on every accelerator
present: per-epoch time (a 2-epoch fit minus a 1-epoch fit, so setup and data transfer cancel),
repeated for a spread; whether the accelerator's predictions agree with the CPU's; one verdict line
per accelerator and model. MPS is often slower than CPU for small MLPs: that is what this answers.

The fit is injectable (``timer``) so the verdict logic is testable on a machine without a GPU.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .atomic import atomic_write_json
from .device import cuda_status, float32_matmul_precision, matmul_precision_for, mps_status

PROBE_MODELS = ("tabm", "realmlp")
PROBE_ROWS = 20_000  # per-epoch cost is about linear in rows; the ratio is what the probe reports
REPEATS = 3
AGREE_RMS = 0.01  # RMS difference of predictions, CPU vs accelerator (a fifth of the target's noise floor)
FASTER = 1.2  # a ratio below this (and above 1/FASTER) is "no faster": within what repeats move


@dataclass(frozen=True)
class Fit:
    seconds: float
    predictions: np.ndarray


Timer = Callable[[str, str, int, object], Fit]  # (model, device, epochs, data) -> Fit


def probe_data(rows: int, seed: int = 0):
    """Generated rows with the fast recipe's features: (train frame, target, categorical columns)."""
    from . import features, generator, schema
    from .recipes import RECIPES

    frame = generator.generate_rows(rows, np.random.default_rng(seed))
    built = features.build(frame.drop(columns=[schema.TARGET]), frame.drop(columns=[schema.TARGET]).head(1), None,
                           RECIPES["fast"])
    return built.train, frame[schema.TARGET].to_numpy(np.float32), tuple(built.categorical)


def measure(model: str, device: str, epochs: int, data) -> Fit:
    """A real fit of ``model`` on ``device`` for ``epochs`` epochs (4/5 train, 1/5 validation)."""
    from .models import MODELS, fit_predict

    x, y, categorical = data
    cut = len(x) * 4 // 5
    spec = MODELS[model]
    params = {**spec.defaults("quick", device, "fast"), "n_epochs": epochs}
    started = time.perf_counter()
    with float32_matmul_precision(matmul_precision_for(device, model), device):
        val_pred, _, _ = fit_predict(spec, params=params, device=device, seed=0, threads=1, x_train=x.iloc[:cut],
                                     y_train=y[:cut], x_val=x.iloc[cut:], y_val=y[cut:], x_test=x.iloc[:1],
                                     timer=_no_timer, categorical=categorical)
    return Fit(time.perf_counter() - started, val_pred)


def _no_timer(phase: str):
    return nullcontext()  # the probe times the whole fit itself


def accelerators(facts: dict) -> list[str]:
    return [name for name in ("cuda", "mps") if facts.get(f"{name}_available")]


def _epoch_times(timer: Timer, model: str, device: str, data, repeats: int) -> tuple[list[float], np.ndarray]:
    times, predictions = [], None
    for _ in range(repeats):
        one, two = timer(model, device, 1, data), timer(model, device, 2, data)
        times.append(max(two.seconds - one.seconds, 1e-9))
        predictions = two.predictions
    return times, predictions


def verdict(accelerator: str, model: str, rows: int, ratio: float, low: float, high: float, agree: bool) -> str:
    name = accelerator.upper()
    if ratio >= FASTER and low > 1:
        text = f"{name}: {ratio:.1f}x faster than CPU for {model} at {rows:,} rows"
    elif ratio <= 1 / FASTER and high < 1:
        text = f"{name}: {1 / ratio:.1f}x slower than CPU for {model} at {rows:,} rows: use --device cpu"
    else:
        text = f"{name}: no faster than CPU for {model} at {rows:,} rows"
    return text if agree else text + " (predictions disagree with the CPU's: check before trusting it)"


def run(facts: dict, timer: Timer = measure, rows: int = PROBE_ROWS, repeats: int = REPEATS,
        models: tuple[str, ...] = PROBE_MODELS) -> dict:
    """The probe's result (JSON-ready). Nothing is fitted when no accelerator is present."""
    found = accelerators(facts)
    result: dict = {"schema_version": 1, "generated_at": datetime.now(timezone.utc).isoformat(),
                    "rows": rows, "repeats": repeats, "accelerators": found, "models": {},
                    "cuda_status": cuda_status(facts), "mps_status": mps_status(facts), "verdicts": []}
    if not found:
        result["nothing_to_compare"] = f"no accelerator here: {result['cuda_status']}; {result['mps_status']}"
        return result
    data = probe_data(rows)
    for model in models:
        cpu_times, cpu_pred = _epoch_times(timer, model, "cpu", data, repeats)
        entry: dict = {"cpu_epoch_s": cpu_times}
        for accelerator in found:
            times, pred = _epoch_times(timer, model, accelerator, data, repeats)
            ratios = [c / a for c, a in zip(cpu_times, times)]
            rms = float(np.sqrt(np.mean((np.asarray(pred, float) - np.asarray(cpu_pred, float)) ** 2)))
            ratio, low, high = statistics.median(ratios), min(ratios), max(ratios)
            entry[accelerator] = {"epoch_s": times, "ratio": ratio, "ratio_min": low, "ratio_max": high,
                                  "pred_rms_diff": rms, "agree": rms <= AGREE_RMS}
            line = verdict(accelerator, model, rows, ratio, low, high, rms <= AGREE_RMS)
            entry[accelerator]["verdict"] = line
            result["verdicts"].append(line)
        result["models"][model] = entry
    return result


def table_lines(result: dict) -> list[str]:
    """The verdict table (markdown) and the verdict lines; or why there is nothing to compare."""
    if result.get("nothing_to_compare"):
        return [f"probe: nothing to compare: {result['nothing_to_compare']}"]
    out = ["| model | device | per epoch, median [min–max] s | speed-up vs CPU, median [min–max] | predictions |",
           "|---|---|---|---|---|"]
    for model, entry in result["models"].items():
        cpu = entry["cpu_epoch_s"]
        out.append(f"| {model} | cpu | {statistics.median(cpu):.3f} [{min(cpu):.3f}–{max(cpu):.3f}] | baseline | – |")
        for accelerator in result["accelerators"]:
            a = entry[accelerator]
            t = a["epoch_s"]
            agree = "agree" if a["agree"] else "DISAGREE"
            out.append(f"| {model} | {accelerator} | {statistics.median(t):.3f} [{min(t):.3f}–{max(t):.3f}] "
                       f"| {a['ratio']:.2f}x [{a['ratio_min']:.2f}–{a['ratio_max']:.2f}] "
                       f"| {agree} (RMS Δ {a['pred_rms_diff']:.2e}) |")
    return out + [""] + [f"verdict: {line}" for line in result["verdicts"]]


def save(result: dict, runs_dir: Path) -> Path:
    """runs/probe/probe-<UTC time>.json, written atomically (compare shows the newest)."""
    stamp = result["generated_at"].replace(":", "").replace("-", "").split(".")[0]
    path = Path(runs_dir) / "probe" / f"probe-{stamp}.json"
    atomic_write_json(path, result)
    return path


def latest(runs_dir: Path) -> dict | None:
    import json

    found = sorted((Path(runs_dir) / "probe").glob("probe-*.json"))
    return json.loads(found[-1].read_text()) if found else None
