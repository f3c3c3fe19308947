"""How long a torch run will take on the CPU, said before it starts (a `full` run there takes hours).

The rates are core-seconds per training row per epoch, measured on this project's 2-core CI machine
by `make bench ARGS='--only epoch-rates'` (docs/benchmarks.md §7, docs/examples/bench-2core-cpu-ray.json);
they scale with rows and divide by the threads the run gets. Rough on purpose: the point is minutes
versus hours, not a schedule.
"""

from __future__ import annotations

# Measured (§7): the seed's TabM architecture 35.3 s per epoch on 16,000 rows with 2 threads; RealMLP-TD
# at batch 256 2.0 s per epoch on 40,000 rows with 2 threads.
CORE_SECONDS_PER_ROW_EPOCH = {"tabm": 35.3 * 2 / 16_000, "realmlp": 2.0 * 2 / 40_000}


def cpu_warning(model: str, recipe: str, epoch_plan, train_rows: int, folds: int,
                threads: int) -> str | None:
    """One line with the expected time, or None when the model has no rate or epochs."""
    rate = CORE_SECONDS_PER_ROW_EPOCH.get(model)
    if rate is None or epoch_plan is None:
        return None
    max_epochs, patience = epoch_plan
    fold_rows = train_rows * (folds - 1) / folds
    per_epoch = rate * fold_rows / max(1, threads)
    epochs, bound = (max_epochs, "about") if max_epochs else (patience + 1, "at least")
    total = per_epoch * epochs * folds
    why = f"{epochs} epochs" if max_epochs else f"early stopping needs at least {epochs} epochs (patience {patience})"
    return (f"warning: {model} (recipe {recipe}) on the CPU: about {_human(per_epoch)} per epoch of a fold on "
            f"{threads} thread(s); {why}, so {bound} {_human(total)} for {folds} folds. A GPU or Apple silicon "
            "takes minutes; Ctrl-C keeps finished folds and `roadrisk train --resume RUN_DIR` continues")


def _human(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
