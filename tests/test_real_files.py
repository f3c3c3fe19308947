"""--data-dir on files the generator did not write, as the real Kaggle files (and their re-exports) come.

Each variant is a way a real file differs from ours; each must load to the same table, and one
directory with all of them at once must train end to end.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from roadrisk import schema
from roadrisk.data import load

from .conftest import run_cli


def _write(frame: pd.DataFrame, path, *, crlf=False, bom=False) -> None:
    text = frame.to_csv(index=False, lineterminator="\r\n" if crlf else "\n")
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))


def _variant(source, target, name: str) -> None:
    """Copy the generated files into ``target`` changed in one way (or all ways: ``all``)."""
    target.mkdir(parents=True, exist_ok=True)
    names = [schema.TRAIN_FILE, schema.TEST_FILE] + ([] if name in ("no original", "all") else [schema.ORIGINAL_FILE])
    for file in names:
        frame = pd.read_csv(source / file)
        if name in ("shuffled columns", "all"):
            frame = frame[list(np.random.default_rng(0).permutation(frame.columns))]
        if name in ("sparse ids", "all") and schema.ID in frame:
            frame[schema.ID] = frame[schema.ID] * 3 + 17  # gaps, and test ids still after train's
        if name in ("off-grid curvature", "all"):
            frame["curvature"] = (frame["curvature"] + 0.00337).clip(0, 1)
        if name in ("text booleans", "all"):
            for column in schema.BOOL_NAMES:
                frame[column] = frame[column].map({True: "True", False: "False"})
        _write(frame, target / file, crlf=name in ("crlf", "all"), bom=name in ("bom", "all"))


VARIANTS = ["shuffled columns", "sparse ids", "off-grid curvature", "no original", "text booleans", "crlf", "bom"]


@pytest.mark.parametrize("name", VARIANTS)
def test_each_real_file_variant_loads_to_the_same_table(small_data, tmp_path, name):
    _variant(small_data, tmp_path / "d", name)
    expected, got = load(small_data), load(tmp_path / "d")
    assert got.generated is None  # no marker: the loader must not claim a floor for these
    for part in ("train", "test"):
        want, have = getattr(expected, part).copy(), getattr(got, part)
        if name in ("sparse ids", "all"):
            want[schema.ID] = want[schema.ID] * 3 + 17
        if name == "off-grid curvature":
            want["curvature"] = (want["curvature"] + 0.00337).clip(0, 1)
        assert list(have.columns) == list(want.columns)  # the schema's order, whatever the file's
        pd.testing.assert_frame_equal(have, want, check_exact=False, atol=1e-12)
    assert (got.original is None) == (name == "no original")


def test_a_directory_with_every_variant_trains_end_to_end(small_data, tmp_path):
    _variant(small_data, tmp_path / "d", "all")
    result = run_cli("train", "--data-dir", str(tmp_path / "d"), "--profile", "smoke", "--model", "hgb",
                     "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs" / "native").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["metrics"]["floor_rmse"] is None and record["data"]["original_rows"] == 0
    assert not [n for n in record["config"]["features"] if n.startswith("orig_")]
    submission = pd.read_csv(run_dir / "submission.csv")
    test_ids = pd.read_csv(tmp_path / "d" / schema.TEST_FILE, encoding="utf-8-sig")[schema.ID]
    assert submission[schema.ID].tolist() == test_ids.tolist() and submission[schema.TARGET].between(0, 1).all()
