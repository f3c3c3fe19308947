"""One loader for every source: the embedded default, generated files, and the real Kaggle files.

Validation happens here, before any training, and reports every problem at once: one line per
problem naming the file, the column, how many rows and an example, plus the fix.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import schema
from .errors import DataError
from .generator import GENERATOR_VERSION, read_marker, write_dataset

_BOOL_TEXT = {"True": True, "False": False, "true": True, "false": False, "TRUE": True, "FALSE": False}


@dataclass
class Dataset:
    train: pd.DataFrame
    test: pd.DataFrame
    original: pd.DataFrame | None
    source: str  # "embedded" | "directory"
    path: Path
    generated: dict | None  # the generator's marker when these files came from roadrisk
    fingerprint: str
    files: dict = field(default_factory=dict)  # name -> {bytes, sha256}
    notes: list[str] = field(default_factory=list)  # things worth saying that are not errors
    original_files: dict = field(default_factory=dict)  # original file name -> rows, joined for orig_ features

    def summary(self) -> dict:
        return {
            "source": self.source,
            "path": str(self.path),
            "generated": self.generated is not None,
            "generator": self.generated,
            "train_rows": len(self.train),
            "test_rows": len(self.test),
            "original_rows": 0 if self.original is None else len(self.original),
            "original_files": self.original_files,
            "fingerprint": self.fingerprint,
            "files": self.files,
            "notes": self.notes,
        }


# ---------------------------------------------------------------- embedded default

def cache_root() -> Path:
    if os.environ.get("ROADRISK_CACHE_DIR"):
        return Path(os.environ["ROADRISK_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "roadrisk"


def embedded_dir(train_rows: int, test_rows: int, original_rows: int, seed: int) -> tuple[Path, bool]:
    """The cached generated dataset for these sizes and seed; (path, True when it was generated now)."""
    name = f"embedded-v{GENERATOR_VERSION}-{train_rows}x{test_rows}x{original_rows}-seed{seed}"
    final = cache_root() / name
    if read_marker(final) is not None:
        return final, False
    # Generate beside the final place and rename, so two runs racing never see half a dataset.
    staging = final.with_name(f".{name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    write_dataset(staging, train_rows, test_rows, original_rows, seed)
    try:
        os.rename(staging, final)
    except OSError:  # another process won the race, or a broken leftover is there
        if read_marker(final) is None:
            shutil.rmtree(final, ignore_errors=True)
            os.rename(staging, final)
        else:
            shutil.rmtree(staging, ignore_errors=True)
    return final, True


# ---------------------------------------------------------------- loading and validation

def require_data_dir(data_dir: Path) -> Path:
    """The one check (and message) for a --data-dir that is not there; the CLI calls it before a run starts."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError([f"error: --data-dir {data_dir}: no such directory. Fix: pass the folder holding "
                         f"{schema.TRAIN_FILE} and {schema.TEST_FILE}, or make one with `roadrisk data --out DIR`"])
    return data_dir


def load(data_dir: Path, source: str = "directory") -> Dataset:
    data_dir = require_data_dir(data_dir)
    problems: list[str] = []
    files: dict = {}
    train = _read(data_dir, schema.TRAIN_FILE, schema.TRAIN_COLUMNS, required=True, problems=problems, files=files)
    test = _read(data_dir, schema.TEST_FILE, schema.TEST_COLUMNS, required=True, problems=problems, files=files)
    original, original_files = _read_originals(data_dir, problems, files)
    if problems:
        raise DataError(problems)
    assert train is not None and test is not None
    if train.empty or test.empty:
        raise DataError([f"error: {data_dir / (schema.TRAIN_FILE if train.empty else schema.TEST_FILE)}: "
                         "no data rows. Fix: supply a file with a header and at least one row"])
    overlap = test[schema.ID][test[schema.ID].isin(train[schema.ID])]
    if len(overlap):
        problems.append(_line(schema.TEST_FILE, schema.ID, len(overlap), overlap.iloc[0],
                              "ids that also appear in train.csv",
                              "test ids must differ from train ids (Kaggle's continue after train's)"))
    if problems:
        raise DataError(problems)
    fingerprint = hashlib.sha256("".join(f"{n}:{f['sha256']};" for n, f in sorted(files.items())).encode()).hexdigest()
    return Dataset(
        train=train, test=test, original=original, source=source, path=data_dir.resolve(),
        generated=read_marker(data_dir), fingerprint=fingerprint[:16], files=files,
        notes=_unseen_in_train(train, test), original_files=original_files,
    )


def _read_originals(data_dir: Path, problems: list[str], files: dict) -> tuple[pd.DataFrame | None, dict]:
    """Every published size of the original data that is in ``data_dir`` (schema.ORIGINAL_FILES), read and
    checked like the others and joined in that order; (the joined frame or None, {file name: rows}).
    Each file's sha256 goes into ``files``, so the fingerprint changes when one is added or removed."""
    frames, rows = [], {}
    for name in schema.ORIGINAL_FILES:
        frame = _read(data_dir, name, schema.ORIGINAL_COLUMNS, required=False, problems=problems, files=files)
        if frame is not None:
            frames.append(frame)
            rows[name] = len(frame)
    if not frames:
        return None, rows
    return (frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)), rows


def _plain(value):
    """numpy scalars print as np.int64(7); a user wants to read 7."""
    return value.item() if hasattr(value, "item") else value


# An example value is quoted up to this many characters: a 1 MB cell must not become a 1 MB error line.
_EXAMPLE_CHARS = 40


def _example(value) -> str:
    text = repr(_plain(value))
    if len(text) <= _EXAMPLE_CHARS:
        return text
    return f"{text[:_EXAMPLE_CHARS]}... ({len(str(_plain(value)))} characters)"


def _line(file: str, column: str, count: int, example, what: str, fix: str, at: int | None = None) -> str:
    where = f" at line {at}" if at is not None else ""
    return f"error: {file}: column '{column}': {count} row(s) {what} (e.g. {_example(example)}{where}). Fix: {fix}"


def _read(data_dir: Path, name: str, columns: tuple, required: bool, problems: list[str],
          files: dict) -> pd.DataFrame | None:
    """Parse one file; its size and sha256 (for the fingerprint) come from the same single read."""
    path = data_dir / name
    if not path.is_file():
        if required:
            problems.append(f"error: {path}: file not found. Fix: put the Kaggle {name} in --data-dir "
                            "or make a dataset with `roadrisk data --out DIR`")
        return None
    raw = path.read_bytes()
    files[name] = {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    try:
        # Text columns are parsed straight into categoricals: checking, normalising and encoding
        # them then works on a handful of categories instead of hundreds of thousands of strings.
        frame = pd.read_csv(io.BytesIO(raw), engine="c", low_memory=False,
                            dtype=dict.fromkeys(schema.CATEGORY_NAMES, "category"))
    except pd.errors.EmptyDataError:
        problems.append(f"error: {path}: the file is empty. Fix: supply {name} with a header line and rows")
        return None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        problems.append(f"error: {path}: not a readable CSV ({first}). Fix: re-export it as comma-separated UTF-8")
        return None
    found = [str(c) for c in frame.columns]
    missing = [c for c in columns if c not in found]
    extra = [c for c in found if c not in columns]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected column(s) {', '.join(extra)}")
        problems.append(f"error: {path}: {'; '.join(parts)}. Fix: the header must be exactly {','.join(columns)}")
        return None
    frame = frame[list(columns)]
    before = len(problems)
    # A row with no value at all (",,,,") is said once, not once per column; the rest are still checked.
    blank = frame.isna().all(axis=1).to_numpy()
    if blank.any():
        lines = frame.index.to_numpy()[blank] + 2  # the header is line 1
        problems.append(f"error: {name}: {int(blank.sum())} row(s) with no values at all (e.g. line {lines[0]}). "
                        "Fix: delete those rows")
        frame = frame[~blank]
    for column in frame.columns:
        _check_column(frame, column, name, problems)
    if len(problems) > before:
        return None
    return _normalise(frame)


def _check_column(frame: pd.DataFrame, column: str, file: str, problems: list[str]) -> None:
    values = frame[column]
    lines = values.index.to_numpy() + 2  # the header is line 1
    missing = values.isna().to_numpy()
    if missing.any():
        problems.append(_line(file, column, int(missing.sum()), "", "with a missing value",
                              "fill or drop those rows", at=int(lines[missing][0])))
        return
    if column == schema.ID:
        numeric = pd.to_numeric(values, errors="coerce")
        bad = (numeric.isna() | (numeric != numeric.round())).to_numpy()
        if bad.any():
            problems.append(_line(file, column, int(bad.sum()), values[bad].iloc[0], "that are not integers",
                                  "ids must be whole numbers", at=int(lines[bad][0])))
            return
        bad = _beyond_int_limit(numeric, -schema.INT_LIMIT, schema.INT_LIMIT)
        if bad.any():
            problems.append(_line(file, column, int(bad.sum()), values[bad].iloc[0], "outside the allowed range",
                                  f"ids must be whole numbers in [-{schema.INT_LIMIT}, {schema.INT_LIMIT}]",
                                  at=int(lines[bad][0])))
            return
        dup = values.duplicated().to_numpy()
        if dup.any():
            problems.append(_line(file, column, int(dup.sum()), values[dup].iloc[0], "with a repeated id",
                                  "every id must be unique", at=int(lines[dup][0])))
        return
    if column == schema.TARGET:
        _check_numeric(values, lines, file, column, 0.0, 1.0, integer=False, problems=problems,
                       fix="accident_risk must be a number in [0, 1]")
        return
    spec = next(c for c in schema.FEATURE_COLUMNS if c.name == column)
    if spec.kind == "category":
        bad = ~values.isin(spec.values).to_numpy()  # a number or any other non-text value is simply not listed
        if bad.any():
            problems.append(_line(file, column, int(bad.sum()), values[bad].iloc[0], "outside the known values",
                                  f"allowed values are {', '.join(spec.values)}", at=int(lines[bad][0])))
    elif spec.kind == "bool":
        if values.dtype != bool:
            bad = ~values.astype(str).isin(list(_BOOL_TEXT)).to_numpy()
            if bad.any():
                problems.append(_line(file, column, int(bad.sum()), values[bad].iloc[0], "that are not True/False",
                                      "write booleans as True or False", at=int(lines[bad][0])))
    elif spec.kind == "int":
        _check_numeric(values, lines, file, column, spec.low, spec.high, integer=True, problems=problems,
                       allowed=spec.values,
                       fix=(f"allowed values are {', '.join(map(str, spec.values))}" if spec.values
                            else f"{column} must be a whole number in [{spec.low:g}, {schema.INT_LIMIT}]"))
    else:
        _check_numeric(values, lines, file, column, spec.low, spec.high, integer=False, problems=problems,
                       fix=f"{column} must be a number in [{spec.low:g}, {spec.high:g}]")


def _check_numeric(values, lines, file, column, low, high, integer, problems, fix, allowed=()) -> None:
    numeric = pd.to_numeric(values, errors="coerce")
    bad = numeric.isna().to_numpy()
    if bad.any():
        problems.append(_line(file, column, int(bad.sum()), values[bad].iloc[0], "that are not numbers", fix,
                              at=int(lines[bad][0])))
        return
    array = numeric.to_numpy(dtype=float)
    bad = np.zeros(len(array), dtype=bool)
    if integer:
        bad |= array != np.round(array)
        bad |= _beyond_int_limit(numeric, -schema.INT_LIMIT, schema.INT_LIMIT)
    if allowed:
        bad |= ~np.isin(array, np.array(allowed, dtype=float))
    if low is not None:
        bad |= array < low
    if high is not None:
        bad |= array > high
    if bad.any():
        problems.append(_line(file, column, int(bad.sum()), values[bad].iloc[0], "outside the allowed range", fix,
                              at=int(lines[bad][0])))


def _beyond_int_limit(numeric: pd.Series, low: int, high: int) -> np.ndarray:
    """Rows outside [low, high], inf and 1e30 included, judged before any cast to int64 could wrap them."""
    array = numeric.to_numpy(dtype=float)  # exact for every value within the limit, which is all that matters
    return ~np.isfinite(array) | (array < low) | (array > high)


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Give every column its one canonical dtype, whatever pandas guessed from the text."""
    out = frame.copy()
    for spec in schema.FEATURE_COLUMNS:
        if spec.kind == "category":
            out[spec.name] = out[spec.name].astype(schema.category_dtype(spec))
        elif spec.kind == "bool":
            column = out[spec.name]
            out[spec.name] = column if column.dtype == bool else column.astype(str).map(_BOOL_TEXT).astype(bool)
        elif spec.kind == "int":
            out[spec.name] = pd.to_numeric(out[spec.name]).astype("int64")
        else:
            out[spec.name] = pd.to_numeric(out[spec.name]).astype("float64")
    if schema.ID in out:
        out[schema.ID] = pd.to_numeric(out[schema.ID]).astype("int64")
    if schema.TARGET in out:
        out[schema.TARGET] = pd.to_numeric(out[schema.TARGET]).astype("float64")
    return out


def _unseen_in_train(train: pd.DataFrame, test: pd.DataFrame) -> list[str]:
    """Test values never seen in train: legal, but the user should know the model extrapolates there."""
    notes = []
    for spec in schema.FEATURE_COLUMNS:
        if spec.name == "curvature":
            continue
        # Compare the distinct values first: rows are only counted when some value is new.
        seen = train[spec.name].unique()
        if set(test[spec.name].unique().tolist()) <= set(seen.tolist()):
            continue
        unseen = test.loc[~test[spec.name].isin(seen), spec.name]
        if len(unseen):
            notes.append(f"note: test.csv: column '{spec.name}': {len(unseen)} row(s) hold values never seen in "
                         f"train.csv (e.g. {_plain(unseen.iloc[0])!r}); the model extrapolates there")
    return notes
