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


# The fastest strong alternative on a CPU, named by the warning. Its score: OOF RMSE on 4,000 rows of the
# real development sample (5-fold KFold, cv_seed 42; docs/examples/bench-real-sample.md), beside the plain
# CatBoost script (600 iterations, depth 5, lr 0.05) on the same folds. Its time: CatBoost's fit cost per
# round per training row, measured on the embedded quick data (26,667 rows a fold, 150 fixed rounds, 2
# threads: the fastest of 3 folds, 1.92 s, since the machine was shared), times the full profile's round cap
# (early stopping usually ends sooner), so the time said is an upper bound: ~50 min for 5 folds at Kaggle size.
CPU_ALTERNATIVE = dict(
    flags="--model catboost --target residual",
    model="catboost",
    rmse=0.05718,
    baseline_rmse=0.05744,
    core_seconds_per_row_round=0.48e-6 * 2,  # 0.48 us per round per row on 2 threads
    max_rounds=3000,
)


def alternative_seconds(train_rows: int, folds: int, threads: int) -> float:
    """At most this long for CPU_ALTERNATIVE on these rows and folds (every fold at its round cap)."""
    fold_rows = train_rows * (folds - 1) / folds
    alt = CPU_ALTERNATIVE
    return alt["core_seconds_per_row_round"] * fold_rows * alt["max_rounds"] * folds / max(1, threads)


def cpu_warning(model: str, recipe: str, epoch_plan, train_rows: int, folds: int,
                threads: int) -> str | None:
    """One line with the expected time and the fastest strong alternative, or None when the model has no
    rate or epochs."""
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
            f"takes minutes; Ctrl-C keeps finished folds and `roadrisk train --resume RUN_DIR` continues. "
            f"{_alternative(train_rows, folds, threads)}")


def _alternative(train_rows: int, folds: int, threads: int) -> str:
    alt = CPU_ALTERNATIVE
    return (f"Fastest strong alternative on this CPU: `roadrisk train {alt['flags']}`, at most "
            f"{_human(alternative_seconds(train_rows, folds, threads))} for {folds} folds on {threads} thread(s) "
            f"(measured rate); OOF RMSE {alt['rmse']:.5f} on 4,000 real rows, where a plain CatBoost script "
            f"scores {alt['baseline_rmse']:.5f}")


def _human(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
