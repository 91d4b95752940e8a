"""metrics.pymap: Python functions over column values without Polars' worker pool,
and the rule that keeps map_elements out of the app (it deadlocked the server under
concurrent sessions)."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from metrics import pymap

ROOT = Path(__file__).resolve().parent.parent


def test_series_skips_nulls_and_keeps_dtype():
    out = pymap.series(pl.Series("a", [1, None, 3]), lambda v: v * 10, pl.Int64, name="b")
    assert out.name == "b" and out.dtype == pl.Int64 and out.to_list() == [10, None, 30]


def test_columns_replace_in_place():
    df = pl.DataFrame({"x": ["a", None], "y": ["b", "c"], "z": [1, 2]})
    got = pymap.columns(df, {"x": str.upper})
    assert got.columns == ["x", "y", "z"] and got["x"].to_list() == ["A", None]
    both = pymap.columns(df, {c: lambda s: s + "!" for c in ("x", "y")})
    assert both["x"].to_list() == ["a!", None] and both["y"].to_list() == ["b!", "c!"]
    assert pymap.columns(df, {}) is df


def test_rows_gets_a_dict_per_row():
    df = pl.DataFrame({"v": [1.0, 2.0], "n": [3, 4]})
    got = pymap.rows(df, ["v", "n"], lambda r: f"{r['v']:.0f}/{r['n']}", "label")
    assert got["label"].to_list() == ["1/3", "2/4"]


def test_empty_frame():
    df = pl.DataFrame({"x": pl.Series([], dtype=pl.Utf8)})
    assert pymap.columns(df, {"x": str.upper}).height == 0
    assert pymap.rows(df, ["x"], lambda r: r["x"], "y").schema["y"] == pl.Utf8


def test_no_map_elements_in_the_app():
    """map_elements runs Python on Polars' pool; a session holding the GIL while it waits
    for that pool (DataFrame.to_pandas did) hangs every session. The app uses pymap."""
    found = []
    for folder in ("pages", "metrics", "data"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == "pymap.py":
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                code = line.split("#", 1)[0]
                if re.search(r"\.map_elements\(|\.map_batches\(", code):
                    found.append(f"{path.relative_to(ROOT)}:{n}")
    for path in [ROOT / "app.py"]:
        assert ".map_elements(" not in path.read_text(encoding="utf-8")
    assert not found, found


def test_neutralise_expr_matches_neutralise():
    from data.importer import neutralise, neutralise_frame

    values = ["=1+1", "+84 90", "-20", "@sum", "\tx", "\rx", "ok", "", "a=b", None, "'=x", "₫=1"]
    df = pl.DataFrame({"t": values, "n": list(range(len(values)))})
    got = neutralise_frame(df)
    assert got["t"].to_list() == [None if v is None else neutralise(v) for v in values]
    assert got["n"].to_list() == df["n"].to_list()
