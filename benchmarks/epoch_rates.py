"""Section 7 of ``make bench``: how long one epoch takes on this CPU, per training row.

The full-on-the-CPU warning (``roadrisk.estimates``) quotes these rates; this section measures them
again and puts the two side by side, so the warning stays a measurement. One holdout fold, the reference's
TabM architecture and pytabkit's RealMLP-TD at batch 256, fitted for 1 and for 3 epochs: an epoch is
half the difference (the fixed cost of a fit, the rest), and core-seconds per row-epoch = that x
threads / rows.
"""

from __future__ import annotations

from roadrisk import data as data_module
from roadrisk import environment, features, schema
from roadrisk.estimates import CORE_SECONDS_PER_ROW_EPOCH
from roadrisk.folds import plan, run_fold
from roadrisk.models import MODELS
from roadrisk.recipes import RECIPES

SETTINGS = {"tabm": ("reference", 16_000), "realmlp": ("fast", 40_000)}  # recipe, train rows (as the rates were taken)
EPOCHS = (1, 3)


def epoch_rates(log) -> dict:
    threads = environment.usable_cpus()[0]
    rows = []
    for model, (recipe_name, train_rows) in SETTINGS.items():
        total = train_rows * 5 // 4  # fold 1 of 5 trains on 4/5 of the rows
        data_dir, _ = data_module.embedded_dir(total, 1_000, 20_000, 42)
        dataset = data_module.load(data_dir, "embedded")
        recipe = RECIPES[recipe_name]
        feature_set = features.build(dataset.train, dataset.test, dataset.original, recipe)
        target = dataset.train[schema.TARGET].to_numpy(dtype=float)
        fits = {}
        for epochs in EPOCHS:
            params = {**MODELS[model].defaults("full", "cpu", recipe_name), "n_epochs": epochs}
            if model == "realmlp":
                params["batch_size"] = 256
            spec = plan(len(target), 5, 42, model=model, params=params, device="cpu", seed=42, threads=threads,
                        categorical=tuple(feature_set.categorical))[0]
            from bare import silenced

            with silenced():
                fits[epochs] = run_fold(spec, feature_set, target).timings["fit"]
        per_epoch = (fits[EPOCHS[1]] - fits[EPOCHS[0]]) / (EPOCHS[1] - EPOCHS[0])
        measured = per_epoch * threads / len(spec.train_idx)
        rows.append({"model": model, "recipe": recipe_name, "train_rows": len(spec.train_idx), "threads": threads,
                     "fit_s": {str(k): round(v, 2) for k, v in fits.items()}, "s_per_epoch": round(per_epoch, 2),
                     "fixed_s": round(fits[EPOCHS[0]] - per_epoch, 2),
                     "core_s_per_row_epoch": measured, "warning_uses": CORE_SECONDS_PER_ROW_EPOCH[model],
                     "measured_over_warning": round(measured / CORE_SECONDS_PER_ROW_EPOCH[model], 3)})
        log(f"epoch rate {model}: {per_epoch:.1f} s/epoch on {len(spec.train_idx)} rows, {threads} threads")
    return {"measured": True, "rows": rows}


def render(section: dict) -> list[str]:
    out = ["", "## 7. CPU epoch rates (what the full-on-CPU warning quotes)", ""]
    if not section.get("measured"):
        return [*out, f"- {section.get('why', 'skipped')}"]
    out += ["| model | recipe | train rows | threads | s/epoch | fixed s a fit | core-s per 1k row-epochs "
            "| the warning uses | measured/used |", "|---|---|---|---|---|---|---|---|---|"]
    for r in section["rows"]:
        out.append(f"| {r['model']} | {r['recipe']} | {r['train_rows']} | {r['threads']} | {r['s_per_epoch']} "
                   f"| {r['fixed_s']} "
                   f"| {1000 * r['core_s_per_row_epoch']:.3f} | {1000 * r['warning_uses']:.3f} "
                   f"| {r['measured_over_warning']} |")
    return out
