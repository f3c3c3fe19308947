"""The original data in its three published sizes: any of them is accepted, all present are joined for the
orig_ features, and which ones were used is in the fingerprint and the data summary."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from roadrisk import features, schema
from roadrisk.data import load
from roadrisk.errors import DataError
from roadrisk.generator import write_dataset

SMALL, MEDIUM, LARGE = schema.ORIGINAL_FILES  # _2k, _10k, _100k


@pytest.fixture
def data_dir(tmp_path):
    """Generated train/test and three different original files (two generator seeds and a slice)."""
    out = tmp_path / "data"
    write_dataset(out, 300, 60, 400, seed=3)  # writes the _100k name
    other = tmp_path / "other"
    write_dataset(other, 10, 5, 250, seed=4)
    shutil.copyfile(other / LARGE, out / MEDIUM)
    pd.read_csv(out / LARGE).head(120).to_csv(out / SMALL, index=False)
    return out


@pytest.mark.parametrize("kept", [SMALL, MEDIUM, LARGE])
def test_any_one_size_is_accepted_alone(data_dir, kept):
    for name in schema.ORIGINAL_FILES:
        if name != kept:
            (data_dir / name).unlink()
    dataset = load(data_dir)
    rows = {SMALL: 120, MEDIUM: 250, LARGE: 400}[kept]
    assert len(dataset.original) == rows
    assert dataset.summary()["original_files"] == {kept: rows}
    assert [name for name in dataset.files if name.startswith("synthetic_")] == [kept]


def test_all_present_are_joined_for_the_orig_features(data_dir):
    dataset = load(data_dir)
    assert len(dataset.original) == 120 + 250 + 400
    summary = dataset.summary()
    assert summary["original_rows"] == 770
    assert summary["original_files"] == {SMALL: 120, MEDIUM: 250, LARGE: 400}
    joined = pd.concat([pd.read_csv(data_dir / name) for name in schema.ORIGINAL_FILES], ignore_index=True)
    built = features.build(dataset.train, dataset.test, dataset.original)
    # orig_weather is the joined files' mean target per weather value, not any single file's
    expected = dataset.train["weather"].astype(str).map(joined.groupby("weather")["accident_risk"].mean())
    np.testing.assert_allclose(built.train["orig_weather"], expected.to_numpy(), rtol=1e-6)
    alone = pd.read_csv(data_dir / LARGE).groupby("weather")["accident_risk"].mean()
    assert not np.allclose(built.train["orig_weather"], dataset.train["weather"].astype(str).map(alone), rtol=1e-6)


def test_the_fingerprint_changes_when_a_size_is_added_or_removed(data_dir):
    everything = load(data_dir).fingerprint
    (data_dir / SMALL).unlink()
    two = load(data_dir).fingerprint
    (data_dir / MEDIUM).unlink()
    one = load(data_dir).fingerprint
    assert len({everything, two, one}) == 3


def test_a_bad_smaller_file_is_named_in_its_error(data_dir):
    frame = pd.read_csv(data_dir / MEDIUM)
    frame.loc[3, "num_reported_accidents"] = -1
    frame.to_csv(data_dir / MEDIUM, index=False)
    with pytest.raises(DataError) as info:
        load(data_dir)
    assert any(MEDIUM in line and "num_reported_accidents" in line for line in info.value.problems)


def test_without_any_original_file_there_are_no_orig_features(data_dir):
    for name in schema.ORIGINAL_FILES:
        (data_dir / name).unlink()
    dataset = load(data_dir)
    assert dataset.original is None and dataset.summary()["original_files"] == {}
    assert not any(n.startswith(features.ORIG_PREFIX) for n in features.build(dataset.train, dataset.test, None).names)
