"""Run sizes. A profile fixes the data sizes and folds; models read it to pick their defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    train_rows: int
    test_rows: int
    original_rows: int
    folds: int
    default_model: str
    purpose: str

    def as_dict(self) -> dict:
        return asdict(self)


PROFILES = {
    "smoke": Profile("smoke", 2_000, 500, 2_000, 2, "realmlp", "seconds: tests and image checks"),
    "quick": Profile("quick", 40_000, 10_000, 20_000, 3, "realmlp", "about a minute on a 2-core CPU"),
    # Kaggle's sizes and the reference recipe; meant for a GPU or Apple silicon.
    "full": Profile("full", 517_754, 172_585, 100_000, 5, "tabm", "Kaggle sizes, the reference recipe"),
}
DEFAULT_PROFILE = "quick"
