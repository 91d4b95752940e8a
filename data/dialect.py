"""One SQL dialect, translated at the seam.

Every metric's SQL is written once, in DuckDB's dialect, with named parameters
(``$name``). When the store is Apache Spark (:mod:`data.spark`), each query is
translated here with sqlglot into Spark SQL whose parameters stay bound (``:name``,
passed to ``spark.sql(..., args=...)``): no value is ever formatted into the text.

A construct sqlglot cannot translate faithfully raises :class:`TranslationError`
(sqlglot's ``unsupported_level`` is RAISE); tests/test_spark.py translates every query
the app issues, so such a query fails a test, never a user's page.

The few rewrites sqlglot does not do, or does differently from what DuckDB computes,
are made on the syntax tree in :func:`_fix` (each one says why).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, UnsupportedError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify


class TranslationError(ValueError):
    """A query that cannot be translated to Spark SQL faithfully."""


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def to_spark(sql: str, tables: Mapping[str, str] | None = None, *,
             params: Mapping[str, Any] | None = None,
             frames: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """``sql`` (DuckDB dialect, ``$name`` parameters) as Spark SQL (``:name``
    parameters). ``tables`` renames table references (a query's registered frames
    become uniquely named temporary views on Spark); ``frames`` gives those frames'
    column types (DuckDB type names) and ``params`` the parameter values, so that the
    query's types are known where the dialects differ (a date minus a date)."""
    renames = tuple(sorted((tables or {}).items()))
    for a, b in renames:
        if not (_IDENT.match(a) and _IDENT.match(b)):
            raise TranslationError(f"not a table name: {a!r} -> {b!r}")
    kinds = tuple(sorted((k, _param_type(v)) for k, v in (params or {}).items() if _param_type(v)))
    shapes = tuple(sorted((name, tuple(cols.items())) for name, cols in (frames or {}).items()))
    return _translate(sql, renames, kinds, shapes)


def _param_type(value: Any) -> str | None:
    if isinstance(value, datetime):
        return "TIMESTAMP"
    if isinstance(value, date):
        return "DATE"
    return None


def _schema(shapes: tuple) -> dict[str, dict[str, str]]:
    """The tables' columns (data.store.table_columns) and the registered frames'."""
    from data.store import EXTRA_DDL, TABLES, table_columns

    out = {name: table_columns(name) for name in (*TABLES, *EXTRA_DDL)}
    for name, cols in shapes:
        out[name] = dict(cols)
    return out


@functools.lru_cache(maxsize=2048)
def _translate(sql: str, renames: tuple[tuple[str, str], ...], kinds: tuple = (), shapes: tuple = ()) -> str:
    try:
        trees = sqlglot.parse(sql, read="duckdb")
    except ParseError as e:
        raise TranslationError(f"cannot parse the query: {e}") from e
    if len(trees) != 1 or trees[0] is None:
        raise TranslationError("one statement per query")
    tree = trees[0]
    if not isinstance(tree, (exp.Query, exp.Select, exp.Union)):
        raise TranslationError(f"only read queries go to Spark, not {type(tree).__name__}")
    tree = _fix(tree, dict(renames), dict(kinds), _schema(shapes))
    try:
        return tree.sql(dialect="spark", unsupported_level=ErrorLevel.RAISE)
    except UnsupportedError as e:
        raise TranslationError(f"no faithful Spark SQL for this query: {e}") from e


def _fix(tree: exp.Expression, renames: dict[str, str], kinds: dict[str, str],
         schema: dict[str, dict[str, str]]) -> exp.Expression:
    # Positional parameters would bind by position on DuckDB and by name on Spark.
    for p in tree.find_all(exp.Placeholder):
        if not p.this or str(p.this).isdigit():
            raise TranslationError("positional parameters are not used at the seam; name them ($name)")
    # Dated parameters carry their type (Spark would bind a datetime as a timestamp
    # with a time zone; the tables' timestamps have none, as in DuckDB).
    for p in list(tree.find_all(exp.Placeholder)):
        if p.name in kinds and not isinstance(p.parent, exp.Cast):
            p.replace(exp.Cast(this=p.copy(), to=exp.DataType.build(kinds[p.name], dialect="duckdb")))
    # Types of every expression, from the tables' columns: where the dialects mean
    # different things by the same operator, the rewrite below needs them.
    # Keep every name's case (qualify would fold unquoted names to lower case, and a
    # result column "T" or "cat_Thực phẩm" must come back as it is).
    for ident in tree.find_all(exp.Identifier):
        ident.set("quoted", True)
    # Spark has no materialisation hint on a CTE (DuckDB's AS MATERIALIZED).
    for cte in tree.find_all(exp.CTE):
        cte.set("materialized", None)
    try:
        # dialect None: names are matched exactly (DuckDB would fold even quoted names).
        tree = qualify(tree, schema=schema, dialect=None, validate_qualify_columns=False,
                       quote_identifiers=False, identify=False)
        tree = annotate_types(tree, schema=schema, dialect="duckdb")
    except Exception as e:  # sqlglot's optimizer raises several kinds
        raise TranslationError(f"cannot resolve the query's columns: {e}") from e
    for sub in list(tree.find_all(exp.Sub)):
        # DuckDB: a date minus a date is a whole number of days; Spark: an interval.
        if _dated(sub.left) and _dated(sub.right):
            sub.replace(exp.Anonymous(this="DATEDIFF", expressions=[sub.left.copy(), sub.right.copy()]))
    for dt in list(tree.find_all(exp.DataType)):
        # Spark has no unsigned integers. The metrics use UBIGINT as 64-bit words of
        # flags (shifts, or, xor): BIGINT holds the same bits (ANSI mode off: no
        # overflow checks) and the app reads the words back as unsigned.
        kind = getattr(dt.this, "name", str(dt.this))
        if kind == "UBIGINT":
            dt.replace(exp.DataType.build("BIGINT"))
        elif kind in ("UINT128", "INT128", "UHUGEINT", "HUGEINT", "UINT", "USMALLINT", "UTINYINT"):
            raise TranslationError(f"Spark has no {dt.sql('duckdb')}")
    for wg in list(tree.find_all(exp.WithinGroup)):
        # percentile_cont(q) WITHIN GROUP (ORDER BY x): exact, as PERCENTILE(x, q) on
        # Spark (sqlglot would write the approximate PERCENTILE_APPROX).
        order = wg.expression.expressions if isinstance(wg.expression, exp.Order) else []
        if isinstance(wg.this, exp.PercentileCont) and len(order) == 1 and not order[0].args.get("desc"):
            wg.replace(exp.Anonymous(this="PERCENTILE", expressions=[order[0].this.copy(), wg.this.this.copy()]))
        elif isinstance(wg.this, exp.PercentileCont):
            raise TranslationError("percentile_cont over a descending or several orderings")
    for pc in list(tree.find_all(exp.PercentileCont)):
        if pc.expression is not None:  # DuckDB's quantile_cont(x, q)
            pc.replace(exp.Anonymous(this="PERCENTILE", expressions=[pc.this.copy(), pc.expression.copy()]))
    for lit in list(tree.find_all(exp.Literal)):
        # DuckDB computes with a literal like 1.0 as a decimal but averages and
        # divides decimals into DOUBLE; Spark would keep a DECIMAL of a few digits.
        if lit.is_number and re.search(r"[.eE]", lit.this) and not isinstance(lit.parent, exp.Cast):
            lit.replace(exp.Cast(this=lit.copy(), to=exp.DataType.build("DOUBLE")))
    for days in list(tree.find_all(exp.ToDays)):
        # DuckDB's to_days(n): an interval of n days.
        days.replace(exp.Anonymous(this="MAKE_DT_INTERVAL", expressions=[days.this.copy()]))
    for fn in list(tree.find_all(exp.Anonymous)):
        name = str(fn.this).upper()
        if name == "STRIP_ACCENTS" and len(fn.expressions) == 1:
            fn.replace(exp.Anonymous(this="TRANSLATE", expressions=[
                fn.expressions[0].copy(), exp.Literal.string(_ACCENTED), exp.Literal.string(_PLAIN)]))
    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
    for table in list(tree.find_all(exp.Table)):
        name = table.name
        if not table.args.get("db") and name in renames and name not in ctes:
            table.set("this", exp.to_identifier(renames[name]))
    return tree


def _is(node: exp.Expression, kind: str) -> bool:
    t = getattr(node, "type", None)
    return t is not None and t.is_type(kind)


def _dated(node: exp.Expression) -> bool:
    """A DATE expression (typed so by sqlglot, or a window or aggregate over one,
    which sqlglot leaves untyped)."""
    if _is(node, "date"):
        return True
    if isinstance(node, exp.Paren):
        return _dated(node.this)
    if isinstance(node, exp.Window):
        return _dated(node.this)
    if isinstance(node, (exp.Lag, exp.Lead, exp.FirstValue, exp.LastValue, exp.Min, exp.Max, exp.AnyValue)):
        return _dated(node.this)
    if isinstance(node, (exp.Greatest, exp.Least)):
        return all(_dated(e) for e in [node.this, *node.expressions])
    return False


def _accent_table() -> tuple[str, str]:
    """DuckDB's strip_accents as a character table: every Latin letter whose canonical
    decomposition is one base letter and combining marks maps to that letter
    (Vietnamese included; đ has no decomposition and stays, as in DuckDB)."""
    src, dst = [], []
    for cp in list(range(0xC0, 0x250)) + list(range(0x1E00, 0x1F00)):
        ch = chr(cp)
        base = "".join(c for c in unicodedata.normalize("NFD", ch) if not unicodedata.combining(c))
        if len(base) == 1 and base != ch:
            src.append(ch)
            dst.append(base)
    return "".join(src), "".join(dst)


_ACCENTED, _PLAIN = _accent_table()


@functools.lru_cache(maxsize=2048)
def parameters(sql: str) -> frozenset[str]:
    """The named parameters a DuckDB query uses (parsed once per query text)."""
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except ParseError as e:
        raise TranslationError(f"cannot parse the query: {e}") from e
    return frozenset(p.name for p in tree.find_all(exp.Placeholder) if p.name)
