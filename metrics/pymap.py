"""Python functions over column values, run on the calling thread.

Polars runs ``Expr.map_elements`` on its worker pool, and each worker takes the GIL to
call the Python function. If another thread (another Streamlit session) holds the GIL
while it waits for that same pool, both wait forever: the whole server hangs (found by
the 20-session load benchmark, Polars 2.1.0). The app runs many sessions in one
process, so nothing in metrics/, data/ or pages/ calls Python from inside Polars.
These helpers do the same job with a plain loop over ``to_list()`` on the caller's
thread; a test keeps ``map_elements`` out of the code base.

As with ``map_elements``, a null value stays null and the function is not called.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import polars as pl


def series(values: pl.Series, fn: Callable[[Any], Any], dtype: pl.DataType | type = pl.Utf8,
           name: str | None = None) -> pl.Series:
    """``fn`` applied to every non-null value of ``values``, as a Series of ``dtype``."""
    out = [None if v is None else fn(v) for v in values.to_list()]
    return pl.Series(values.name if name is None else name, out, dtype=dtype)


def columns(frame: pl.DataFrame, fns: Mapping[str, Callable[[Any], Any]],
            dtype: pl.DataType | type = pl.Utf8) -> pl.DataFrame:
    """``frame`` with each column named in ``fns`` replaced by ``fn`` of its values."""
    if not fns:
        return frame
    return frame.with_columns([series(frame.get_column(c), fn, dtype) for c, fn in fns.items()])


def rows(frame: pl.DataFrame, names: Sequence[str], fn: Callable[[dict[str, Any]], Any], name: str,
         dtype: pl.DataType | type = pl.Utf8) -> pl.DataFrame:
    """``frame`` with a column ``name`` holding ``fn`` of each row, given as a dict of ``names``."""
    out = [fn(dict(zip(names, r))) for r in frame.select(names).iter_rows()]
    return frame.with_columns(pl.Series(name, out, dtype=dtype))
