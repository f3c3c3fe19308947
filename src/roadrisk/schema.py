"""The Kaggle S5E10 table layout: one description shared by the generator and the loader.

Everything that knows a column name, its type or its allowed values reads it from here, so the
generator cannot drift from what the loader accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import pandas as pd

ID = "id"
TARGET = "accident_risk"

TRAIN_FILE = "train.csv"
TEST_FILE = "test.csv"
SUBMISSION_FILE = "sample_submission.csv"
ORIGINAL_FILE = "synthetic_road_accidents_100k.csv"  # the name roadrisk's generator writes
# The original data is published in three sizes; any of them in --data-dir is used, and all that are
# present are joined (in this order) for the orig_ features, as the 5th place in S5E10 did.
ORIGINAL_FILES = ("synthetic_road_accidents_2k.csv", "synthetic_road_accidents_10k.csv", ORIGINAL_FILE)
# Written next to generated files so the loader knows the data came from our generator
# (and so that the floor RMSE of the best possible predictor is meaningful on it).
GENERATOR_MARKER = "roadrisk-data.json"


# The largest magnitude an integer column accepts: 2**53 - 1, the last integer a float64 holds
# exactly. pandas reads a column as floats as soon as one cell is written 7.0 or 1e3, and casting
# a float beyond int64's range wraps silently (1e20 becomes -9223372036854775808), so integer cells
# are checked against this bound before any cast.
INT_LIMIT = 2**53 - 1


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "category" | "bool" | "int" | "float"
    values: tuple = ()  # allowed values for category / int columns with a closed domain
    low: float | None = None  # inclusive bounds for numeric columns
    high: float | None = None


FEATURE_COLUMNS: tuple[Column, ...] = (
    Column("road_type", "category", ("urban", "rural", "highway")),
    Column("num_lanes", "int", (1, 2, 3, 4)),
    Column("curvature", "float", low=0.0, high=1.0),
    Column("speed_limit", "int", (25, 35, 45, 60, 70)),
    Column("lighting", "category", ("daylight", "dim", "night")),
    Column("weather", "category", ("clear", "rainy", "foggy")),
    Column("road_signs_present", "bool"),
    Column("public_road", "bool"),
    Column("time_of_day", "category", ("morning", "afternoon", "evening")),
    Column("holiday", "bool"),
    Column("school_season", "bool"),
    Column("num_reported_accidents", "int", low=0),
)

FEATURE_NAMES: tuple[str, ...] = tuple(c.name for c in FEATURE_COLUMNS)
CATEGORY_NAMES: tuple[str, ...] = tuple(c.name for c in FEATURE_COLUMNS if c.kind == "category")
BOOL_NAMES: tuple[str, ...] = tuple(c.name for c in FEATURE_COLUMNS if c.kind == "bool")

TRAIN_COLUMNS = (ID, *FEATURE_NAMES, TARGET)
TEST_COLUMNS = (ID, *FEATURE_NAMES)
ORIGINAL_COLUMNS = (*FEATURE_NAMES, TARGET)


@cache
def category_dtype(column: Column) -> pd.CategoricalDtype:
    """The one categorical type of a text column: its allowed values, in schema order, so the codes
    a model sees are the same whatever order the values first appear in a file."""
    return pd.CategoricalDtype(list(column.values))
