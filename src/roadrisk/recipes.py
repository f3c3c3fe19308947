"""Recipes: *how* a model is trained, as opposed to a profile, which says *how much* data.

``reference`` is the reference notebook (the top public S5E10 notebook roadrisk ports) to the
parameter: its features, its categorical columns, its KFold and, for TabM, its 15 estimator
parameters with no epoch cap. It was called ``seed`` until the name was read once too often as a
random seed; ``--recipe reference`` still works and says the new name.
``fast`` is everything roadrisk adds on top for speed; each difference is listed in ``FAST_CHANGES``
with the measurement behind it (docs/devices.md prints the same table), so a speed-up is a named,
measured choice and never a silent one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    bools_as: str  # "category" (the reference's cat_col_names) or "float" (0/1 columns)
    meta_expected: bool  # add Meta_expected, the clipped-normal mean of Meta
    device_speedups: bool  # AMP and large batches on CUDA, TF32 matmuls, epoch caps, narrowed CPU models
    empty_cache_after_fold: bool = True  # the reference empties the CUDA/MPS cache after every fold

    def as_dict(self) -> dict:
        return asdict(self)


RECIPES = {
    "reference": Recipe("reference", "the reference notebook exactly: its features, categoricals, folds and TabM "
                        "parameters",
                   bools_as="category", meta_expected=False, device_speedups=False),
    "fast": Recipe("fast", "roadrisk's speed-ups on top of the reference (each listed in docs/devices.md)",
                   bools_as="float", meta_expected=True, device_speedups=True),
}

# The default per profile: real-size data deserves the real recipe; the small profiles are time
# boxes on a CPU, which only the fast recipe's narrowed models fit.
DEFAULT_RECIPE = {"smoke": "fast", "quick": "fast", "full": "reference"}

# What ``fast`` changes, with the evidence. "not measured yet" is said where no measurement exists.
FAST_CHANGES = (
    ("TabM epochs capped at 20 on `full`", "the reference has no cap (early stopping, patience 16)",
     "external anchor (H100, 80/20 split of 517,754 generated rows): 20 epochs reach 0.049710 against a "
     "0.04969 floor; not yet reproduced by this project"),
    ("CUDA: TabM `allow_amp=True`, batch 2048", "fp32, batch 'auto'",
     "external anchor (same H100 setup): 3.2 -> 1.3 s/epoch, RMSE 0.049710 -> 0.049705; not yet reproduced "
     "by this project"),
    ("CUDA: RealMLP batch 2048", "pytabkit's batch 256",
     "external anchor (same H100 setup): 12.3 -> 1.9 s/epoch, RMSE 0.049722 -> 0.049704; not yet reproduced"),
    ("CUDA: float32 matmuls in TF32 (`high`)", "torch's default `highest`", "not measured yet"),
    ("`smoke`/`quick` TabM narrowed (2 blocks of 128, k=8, 32 bins, batch 256, 6 epochs, lr 0.002)",
     "the reference architecture", "measured here (docs/examples/quick-runs/quick-tabm): quick OOF +0.23% over the floor in "
     "52 s on 2 CPU cores; the reference architecture costs ~35 s per epoch per 16k rows there (docs/benchmarks.md §7)"),
    ("RealMLP epochs per profile (30 smoke / 10 quick / 16 full), batch 1024 on a `full` CPU run",
     "pytabkit's RealMLP-TD defaults (256 epochs, batch 256)", "measured here (docs/examples/quick-runs/quick-realmlp): "
     "quick OOF +0.16% over the floor in 69 s (32 s on a faster day of this VM)"),
    ("feature `Meta_expected` (26 features)", "25 features",
     "not measured on real data; on generated data it is the best possible predictor itself, so it says "
     "nothing there (docs/data.md)"),
    ("booleans as 0/1 floats", "booleans as categoricals (`cat_col_names`)", "not measured yet"),
)


# Old names that still work (the CLI says the new one in a one-line note).
RECIPE_ALIASES: dict[str, str] = {"seed": "reference"}


# Plan ids hash a renamed recipe under its first name, so a sweep still finds the members it trained
# before the rename (their folders are named by that id) instead of training them again.
HASHED_AS = {new: old for old, new in RECIPE_ALIASES.items()}


def resolve_recipe(name: str) -> str:
    return RECIPE_ALIASES.get(name, name)


def alias_notice(name: str | None, where: str = "--recipe") -> str | None:
    """The one line that tells a user of an old recipe name the new one; None for a current name."""
    if name in RECIPE_ALIASES:
        return (f"note: {where} {name} is now called {RECIPE_ALIASES[name]} (the same settings; "
                f"'{name}' read as a random seed); the old name keeps working")
    return None


def default_for(profile: str) -> str:
    return DEFAULT_RECIPE[profile]
