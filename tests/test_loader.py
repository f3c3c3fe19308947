"""The loader refuses each kind of bad input with one clear line: file, column, rows, example, fix."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from roadrisk import schema
from roadrisk.data import load
from roadrisk.errors import DataError

from .conftest import run_cli


@pytest.fixture
def data_dir(small_data, tmp_path):
    target = tmp_path / "data"
    shutil.copytree(small_data, target)
    return target


def _edit(data_dir, name, change):
    frame = pd.read_csv(data_dir / name)
    frame = change(frame)
    frame.to_csv(data_dir / name, index=False)


def _problems(data_dir) -> list[str]:
    with pytest.raises(DataError) as info:
        load(data_dir)
    return info.value.problems


def test_good_data_loads_with_canonical_dtypes(data_dir):
    dataset = load(data_dir)
    assert len(dataset.train) == 1200 and len(dataset.test) == 300 and len(dataset.original) == 1500
    assert dataset.train["public_road"].dtype == bool
    assert dataset.train["num_lanes"].dtype == "int64"
    assert dataset.generated["seed"] == 7
    assert len(dataset.fingerprint) == 16


def test_fingerprint_follows_the_bytes(data_dir):
    before = load(data_dir).fingerprint
    _edit(data_dir, schema.TRAIN_FILE, lambda f: f.assign(accident_risk=f.accident_risk.where(f.index != 0, 0.5)))
    assert load(data_dir).fingerprint != before


def test_original_file_is_optional(data_dir):
    (data_dir / schema.ORIGINAL_FILE).unlink()
    assert load(data_dir).original is None


# Each case: (file, how to break it, words the one line must contain)
CASES = {
    "missing column": (schema.TRAIN_FILE, lambda f: f.drop(columns=["weather"]), ["train.csv", "missing column(s) weather"]),
    "extra column": (schema.TEST_FILE, lambda f: f.assign(extra=1), ["test.csv", "unexpected column(s) extra"]),
    "unknown category": (schema.TRAIN_FILE, lambda f: f.assign(weather=f.weather.where(f.index > 2, "snowy")),
                         ["train.csv", "'weather'", "3 row(s)", "'snowy'", "clear, rainy, foggy"]),
    "bad boolean": (schema.TEST_FILE, lambda f: f.assign(holiday=f.holiday.astype(str).where(f.index != 5, "maybe")),
                    ["test.csv", "'holiday'", "1 row(s)", "'maybe'", "line 7", "True or False"]),
    "lanes out of range": (schema.TRAIN_FILE, lambda f: f.assign(num_lanes=f.num_lanes.where(f.index != 0, 9)),
                           ["'num_lanes'", "1 row(s)", "9", "1, 2, 3, 4"]),
    "speed not allowed": (schema.TRAIN_FILE, lambda f: f.assign(speed_limit=f.speed_limit.where(f.index != 0, 50)),
                          ["'speed_limit'", "50", "25, 35, 45, 60, 70"]),
    "curvature out of range": (schema.TEST_FILE, lambda f: f.assign(curvature=f.curvature.where(f.index != 0, 1.5)),
                               ["'curvature'", "1.5", "[0, 1]"]),
    "target above one": (schema.TRAIN_FILE,
                         lambda f: f.assign(accident_risk=f.accident_risk.where(f.index > 1, 1.2)),
                         ["train.csv", "'accident_risk'", "2 row(s)", "1.2", "[0, 1]"]),
    "target not a number": (schema.TRAIN_FILE,
                            lambda f: f.assign(accident_risk=f.accident_risk.astype(str).where(f.index != 3, "high")),
                            ["'accident_risk'", "'high'", "not numbers"]),
    "missing values": (schema.TRAIN_FILE, lambda f: f.assign(lighting=f.lighting.where(f.index != 4)),
                       ["'lighting'", "missing value", "line 6"]),
    "duplicate ids": (schema.TRAIN_FILE, lambda f: f.assign(id=f.id.where(f.index != 1, 0)),
                      ["'id'", "repeated id", "unique"]),
    "negative accidents": (schema.ORIGINAL_FILE,
                           lambda f: f.assign(num_reported_accidents=f.num_reported_accidents.where(f.index != 0, -1)),
                           [schema.ORIGINAL_FILE, "'num_reported_accidents'", "-1"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_bad_input_gives_one_clear_line(data_dir, case):
    name, change, words = CASES[case]
    _edit(data_dir, name, change)
    problems = _problems(data_dir)
    assert len(problems) == 1, problems
    line = problems[0]
    assert "\n" not in line and line.startswith("error: ") and "Fix:" in line
    for word in words:
        assert word in line, (word, line)


def test_several_problems_are_all_reported(data_dir):
    _edit(data_dir, schema.TRAIN_FILE, lambda f: f.assign(num_lanes=0, weather="hail"))
    problems = _problems(data_dir)
    assert len(problems) == 2 and any("num_lanes" in p for p in problems) and any("weather" in p for p in problems)


def test_missing_and_empty_files(data_dir):
    (data_dir / schema.TEST_FILE).unlink()
    (data_dir / schema.TRAIN_FILE).write_text("")
    problems = _problems(data_dir)
    assert any("train.csv: the file is empty" in p for p in problems)
    assert any("test.csv: file not found" in p for p in problems)


def test_overlapping_ids(data_dir):
    _edit(data_dir, schema.TEST_FILE, lambda f: f.assign(id=f.id - 1250))
    (line,) = _problems(data_dir)
    assert "test.csv" in line and "also appear in train.csv" in line


def test_unseen_test_values_are_reported_not_mapped(data_dir):
    _edit(data_dir, schema.TRAIN_FILE, lambda f: f[f.road_type != "highway"])
    dataset = load(data_dir)
    assert any("'road_type'" in n and "never seen in train.csv" in n and "highway" in n for n in dataset.notes)
    assert (dataset.test.road_type == "highway").any()


def test_cli_bad_data_exits_2_without_traceback_or_complete_record(data_dir, tmp_path):
    _edit(data_dir, schema.TRAIN_FILE, lambda f: f.assign(speed_limit=f.speed_limit.where(f.index != 0, 99)))
    runs = tmp_path / "runs"
    result = run_cli("train", "--data-dir", str(data_dir), "--profile", "smoke", "--model", "hgb",
                     "--runs-dir", str(runs))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "error: train.csv: column 'speed_limit': 1 row(s)" in result.stdout
    (record_path,) = runs.glob("native/*/run.json")
    record = json.loads(record_path.read_text())
    assert record["status"] == "failed" and "speed_limit" in record["error"]
    assert not (record_path.parent / "oof.csv").exists()


def test_cli_missing_data_dir_is_a_usage_error(tmp_path):
    result = run_cli("train", "--data-dir", str(tmp_path / "nope"), "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--data-dir" in result.stderr and "Fix:" in result.stderr
    assert not (tmp_path / "runs").exists()


# Values that a cast to int64 would have wrapped or crashed on: each is refused before any cast, on the
# row that holds it (issue 20: 1e20 became -9223372036854775808 in oof.csv, 1e30 accidents were trained on).
HUGE_INTEGERS = {
    "id written 1e20": (schema.TRAIN_FILE, "id", "1e20", "1e+20"),
    "id of 23 digits": (schema.TEST_FILE, "id", "12345678901234567890123", "12345678901234567890123"),
    "accidents 1e30": (schema.TRAIN_FILE, "num_reported_accidents", "1e30", "1e+30"),
    "accidents inf": (schema.ORIGINAL_FILE, "num_reported_accidents", "inf", "inf"),
    "accidents just past 2**53": (schema.TRAIN_FILE, "num_reported_accidents", str(2**53), str(2**53)),
}


def _set_cell(path, row, column, text):
    """Write one cell's text verbatim: pandas would re-format 1e20 on the way out."""
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[row + 1].split(",")
    cells[header.index(column)] = text
    lines[row + 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("case", sorted(HUGE_INTEGERS))
def test_cli_integers_beyond_the_exact_range_exit_2_naming_row_and_value(data_dir, tmp_path, case):
    name, column, text, shown = HUGE_INTEGERS[case]
    _set_cell(data_dir / name, 3, column, text)
    runs = tmp_path / "runs"
    result = run_cli("train", "--data-dir", str(data_dir), "--profile", "smoke", "--model", "hgb",
                     "--runs-dir", str(runs))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    for word in (name, f"'{column}'", "1 row(s) outside the allowed range", shown, "line 5", str(schema.INT_LIMIT)):
        assert word in line, (word, line)
    assert not list(runs.glob("native/*/oof.csv"))


def test_the_largest_exact_integer_is_kept_exactly(data_dir):
    _set_cell(data_dir / schema.TRAIN_FILE, 0, "id", str(schema.INT_LIMIT))
    _set_cell(data_dir / schema.TRAIN_FILE, 1, "num_reported_accidents", "7.0")  # makes the column float on read
    dataset = load(data_dir)
    assert dataset.train["id"].iloc[0] == schema.INT_LIMIT
    assert dataset.train["num_reported_accidents"].iloc[1] == 7


def test_cli_a_comma_only_row_is_said_once(data_dir, tmp_path):
    path = data_dir / schema.TRAIN_FILE
    lines = path.read_text().splitlines()
    lines[4] = "," * (len(schema.TRAIN_COLUMNS) - 1)
    path.write_text("\n".join(lines) + "\n")
    result = run_cli("train", "--data-dir", str(data_dir), "--profile", "smoke", "--model", "hgb",
                     "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 2
    errors = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert errors == ["error: train.csv: 1 row(s) with no values at all (e.g. line 5). Fix: delete those rows"]


def test_cli_a_huge_bad_value_is_cut_in_the_message(data_dir, tmp_path):
    _set_cell(data_dir / schema.TRAIN_FILE, 0, "weather", "x" * 1_000_000)
    result = run_cli("train", "--data-dir", str(data_dir), "--profile", "smoke", "--model", "hgb",
                     "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 2
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert "'weather'" in line and "(1000000 characters) at line 2" in line and len(line) < 300
    assert len(result.stdout + result.stderr) < 20_000
