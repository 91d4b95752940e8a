"""Typing and checking an import inside DuckDB, so that a file of millions of rows
is never walked in Python.

Each import gets a scratch database attached to a DuckDB instance
(``ATTACH ':memory:' AS stage_<hex>``). When that instance is the store's, loading
the checked rows is an ``INSERT ... SELECT`` inside the store's own transaction,
with no copy through Python.

Typing is two-tier and gives exactly what the Polars parsers of data.parse give:

- a fast SQL form per type reads the plain values (``123``, ``12.50``,
  ``2024-01-05 10:23:45``). Its pattern admits only values that those parsers read
  the same way (no ``1.234``, which they read as 1234; no hour 24);
- every other non-blank value (the residue: ``1.234.567 ₫``, ``05/01/2024``, every
  status, channel and phone, non-ASCII text) goes through data.parse once per
  distinct value, and the result is joined back.

SQL text never contains file content: columns are ``c0, c1, ...``, field names come
from data.kinds, patterns and the file hash from this code; values are bound or
live in tables.
"""

from __future__ import annotations

import re
import threading
import uuid
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import duckdb
import polars as pl

from data import parse
from data.kinds import CHANNEL_ALIASES, ENUM_ALIASES, Field, Kind
from data.parse import FileProblem

# Fast forms: (guard, cast), {c} = the column. A value the guard admits is cast by
# DuckDB, and the Polars parser reads it to the same value (tests/test_staging.py
# checks this on generated values). Amounts have at most two decimals: '1.234' is
# 1234 to the parser (a thousands group), so it is left to it. Timestamps are ISO,
# years 1900-2199, hours below 24. (Measured: one RE2 match per value is cheaper
# than any combination of DuckDB string tests, and far cheaper than a DECIMAL cast.)
_AMOUNT = r"-?[0-9]{{1,15}}(\.[0-9]{{1,2}})?"
_INT = r"-?[0-9]{{1,18}}"
_TIMESTAMP = (r"(19|20|21)[0-9]{{2}}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
              r"( ([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?)?")
FAST: dict[str, tuple[str, str]] = {
    "amount": (f"regexp_full_match({{c}}, '{_AMOUNT}')", "TRY_CAST({c} AS DOUBLE)"),
    "rate": (f"regexp_full_match({{c}}, '{_AMOUNT}')", "TRY_CAST({c} AS DOUBLE)"),
    "int": (f"regexp_full_match({{c}}, '{_INT}')", "TRY_CAST({c} AS BIGINT)"),
    "datetime": (f"regexp_full_match({{c}}, '{_TIMESTAMP}')", "TRY_CAST({c} AS TIMESTAMP)"),
    "date": (f"regexp_full_match({{c}}, '{_TIMESTAMP}')", "CAST(TRY_CAST({c} AS TIMESTAMP) AS DATE)"),
}
TEXT_TYPES = ("id", "text")
# Text that reads as itself: printable ASCII with no space at either end (and, for an
# id, no leading ' as Shopify writes). Anything else is trimmed and NFC-normalised by
# data.parse, once per distinct value.
_PLAIN = {"text": r"[!-~]([ -~]*[!-~])?", "id": r"[!-&(-~]([ -~]*[!-~])?"}
# Low-cardinality types mapped in the first pass from the values of the first rows.
SMALL_TYPES = ("status", "channel", "enum")
HEAD_ROWS, HEAD_VALUES = 100_000, 200
SQL_TYPE = {"id": "VARCHAR", "text": "VARCHAR", "amount": "DOUBLE", "rate": "DOUBLE", "int": "BIGINT",
            "datetime": "TIMESTAMP", "date": "DATE", "phone": "VARCHAR", "email": "VARCHAR",
            "status": "VARCHAR", "channel": "VARCHAR", "enum": "VARCHAR"}
POLARS_TYPE = {"id": pl.Utf8, "text": pl.Utf8, "amount": pl.Float64, "rate": pl.Float64, "int": pl.Int64,
               "datetime": pl.Datetime("us"), "date": pl.Date, "phone": pl.Utf8, "email": pl.Utf8,
               "status": pl.Utf8, "channel": pl.Utf8, "enum": pl.Utf8}
REASONS = {"amount": "not an amount", "rate": "not a rate or percentage", "int": "not a whole number",
           "date": "not a date", "datetime": "not a date and time", "phone": "not a Vietnamese phone number",
           "email": "not an email address", "status": "unknown order status"}
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


def ident(name: str) -> str:
    """An identifier from this code (never from a file), checked and quoted."""
    if not _IDENT.match(name):
        raise ValueError(f"not a safe identifier: {name!r}")
    return f'"{name}"'


def convert_values(f: Field, text: pl.Series, day_first: bool = True) -> tuple[pl.Series, pl.Series]:
    """data.parse's reading of one field's values: (typed values, bad mask). A blank
    value is null and not bad. The reference the SQL fast forms must agree with."""
    empty = text.is_null() | (text.str.strip_chars() == "")
    bad = None
    if f.type in TEXT_TYPES:
        value = text.str.strip_chars()
        if f.type == "id":
            value = value.str.strip_chars_start("'")  # Shopify prefixes ids with '
        value = pl.select(pl.when(empty).then(None).otherwise(value)).to_series()
    elif f.type == "amount":
        value, bad = parse.parse_amount(text)
    elif f.type == "rate":
        value, bad = parse.parse_rate(text)
    elif f.type == "int":
        value, bad = parse.parse_int(text)
    elif f.type in ("datetime", "date"):
        fn = parse.parse_datetime if f.type == "datetime" else parse.parse_date
        value, bad = fn(text, day_first=day_first)
    elif f.type == "phone":
        value, bad = parse.parse_phone(text)
    elif f.type == "email":
        value = text.str.strip_chars().str.to_lowercase()
        bad = ~empty & ~value.str.contains(r"^[^@\s]+@[^@\s]+\.[^@\s]+$").fill_null(False)
        value = pl.select(pl.when(bad | empty).then(None).otherwise(value)).to_series()
    elif f.type == "status":
        value, bad = parse.map_status(text)
        bad = bad & ~empty
    elif f.type == "channel":
        folded = text.str.strip_chars().str.to_lowercase()
        value = folded.replace_strict(CHANNEL_ALIASES, default=folded.str.replace_all(r"\s+", "_"),
                                      return_dtype=pl.Utf8)
        value = pl.select(pl.when(empty).then(None).otherwise(value)).to_series()
    elif f.type == "enum":
        folded = text.str.strip_chars().str.to_lowercase()
        value = folded.replace_strict(ENUM_ALIASES.get(f.name, {}), default=None, return_dtype=pl.Utf8)
        bad = value.is_null() & ~empty
    else:  # pragma: no cover - every type is handled above
        raise AssertionError(f.type)
    if bad is None:
        bad = pl.repeat(False, len(text), eager=True)
    return value.cast(POLARS_TYPE[f.type]).alias("value"), bad.fill_null(False).alias("bad")


def reason(f: Field) -> str:
    return REASONS.get(f.type, f"not one of {', '.join(f.allowed)}")


@dataclass
class Stage:
    """A scratch database for one import, attached to ``con``'s DuckDB instance.

    ``owner`` identifies that instance's owner (a data.store.Store, or None for a
    private instance): :func:`data.importer.load` reads straight from the stage only
    when it is the store's own."""

    con: duckdb.DuckDBPyConnection
    owner: object | None = None
    private: bool = False
    name: str = field(default_factory=lambda: f"stage_{uuid.uuid4().hex[:12]}")
    closed: bool = False

    def __post_init__(self) -> None:
        self.con.execute(f"ATTACH ':memory:' AS {self.name}")
        # A report dropped without close() (a closed browser tab) still frees its rows.
        self._finalizer = weakref.finalize(self, _detach, self.con, self.name, self.private)

    def t(self, table: str) -> str:
        return f"{self.name}.{ident(table)}"

    def sql(self, sql: str, params: dict | None = None) -> pl.DataFrame:
        return self.con.sql(sql, params=params or {}).pl()

    def rows(self, sql: str, params: dict | None = None) -> list[tuple]:
        return self.con.execute(sql, params or {}).fetchall()

    def run(self, sql: str, params: dict | None = None, progress: Callable[[float], None] | None = None) -> None:
        """Execute ``sql``; with ``progress``, report DuckDB's progress (0..1) while it runs."""
        if progress is None:
            self.con.execute(sql, params or {})
            return
        failure: list[BaseException] = []

        def work() -> None:
            try:
                self.con.execute(sql, params or {})
            except BaseException as e:  # re-raised in the caller's thread
                failure.append(e)

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.25)
            try:
                p = self.con.query_progress()
            except duckdb.Error:
                p = -1
            if p >= 0:
                progress(min(p, 100.0) / 100.0)
        if failure:
            raise failure[0]

    def register(self, table: str, frame: pl.DataFrame) -> None:
        """Copy a (small) Polars frame into the stage as ``table``."""
        view = f"_reg_{uuid.uuid4().hex[:8]}"
        self.con.register(view, frame)
        try:
            self.con.execute(f"CREATE OR REPLACE TABLE {self.t(table)} AS SELECT * FROM {view}")
        finally:
            self.con.unregister(view)

    def close(self) -> None:
        """Drop the scratch database (idempotent)."""
        self.closed = True
        self._finalizer()


def _detach(con: duckdb.DuckDBPyConnection, name: str, private: bool) -> None:
    try:
        con.execute(f"DETACH {name}")
    except duckdb.Error:
        pass
    if private:
        con.close()


@dataclass
class Typed:
    """The result of :func:`type_source`: the table ``final`` in the stage has ``_row``
    (the record's position in the file, from 0) and one typed column per field."""

    fields: list[Field]
    problems: pl.DataFrame  # _row, field, value, rule, reason
    notes: list[str]
    rows: int


def type_source(stage: Stage, kind: Kind, source_sql: str, columns: dict[str, str], labels: dict[str, str],
                *, day_first: bool, sha256: str, line_sql: str | None, lines_table: str | None = None,
                carry: tuple[str, ...] = (), params: dict | None = None,
                progress: Callable[[float], None] | None = None) -> Typed:
    """Type the mapped columns of ``source_sql`` (a relation with text columns
    ``c0, c1, ...``) into ``stage``'s relation ``final``.

    One pass over the source writes, per field, the value read by the fast path and
    the raw residue (``r_<field>``). The fast path is: the SQL form of :data:`FAST`;
    for text, a value of plain ASCII with no edge space (nothing to trim or
    normalise); for statuses, channels and enums, the values seen in the first rows,
    mapped beforehand by data.parse and bound as lists. The residue's distinct values
    then go through data.parse and are joined back. When nothing needs a join (the
    usual export), ``final`` is a view over the typed table, not a second copy.

    ``columns``: field -> source column (``cN``); ``labels``: field -> header, for
    messages. ``line_sql``: an expression over ``t`` (the typed table, whose rowid is
    the record's position, or ``ln``, the optional ``lines_table`` of _row -> line)
    giving the file line, needed only when the kind's key is generated from it.
    ``carry``: source columns kept as they are (``_line``). Raises FileProblem (a CSV
    that does not split, dates that contradict each other); value problems are
    returned."""
    fields = [f for f in kind.fields if f.name in columns]
    source_params = params or {}
    params = dict(source_params)
    notes: list[str] = []
    select = []
    fast: set[str] = set()  # fields with a first-pass column of their own
    for f in fields:
        c = ident(columns[f.name])
        name, r = ident(f.name), ident("r_" + f.name)
        if f.type in TEXT_TYPES:
            select.append(f"CASE WHEN regexp_full_match({c}, '{_PLAIN[f.type]}') THEN {c} END AS {name}")
        elif f.type in FAST:
            guard, cast = FAST[f.type]
            select.append(f"CASE WHEN {guard.format(c=c)} THEN {cast.format(c=c)} END AS {name}")
        elif f.type in SMALL_TYPES and (seen := _head_map(stage, f, source_sql, columns[f.name], source_params)):
            keys, values = f"k_{f.name}", f"v_{f.name}"
            params[keys], params[values] = seen
            select.append(f"list_extract(${values}, list_position(${keys}, {c})) AS {name}")
        else:
            select.append(f"nullif({c}, '') AS {r}")
            continue
        fast.add(f.name)
        select.append(f"CASE WHEN {name} IS NULL THEN nullif({c}, '') END AS {r}")
    select += [ident(c) for c in carry]
    typed = stage.t("typed")
    stage.run(f"CREATE TABLE {typed} AS SELECT {', '.join(select) or 'NULL AS _none'} FROM {source_sql}",
              params, progress)
    residues = ", ".join(f"count({ident('r_' + f.name)})" for f in fields) or "0"
    counted = stage.rows(f"SELECT count(*), {residues} FROM {typed}")[0]
    rows, residue = counted[0], dict(zip((f.name for f in fields), counted[1:]))

    # The residue, once per distinct value, through data.parse (NFC first, as a
    # decoded file is). Text keeps only the values that change.
    maps: dict[str, str] = {}  # field -> the stage table mapping raw -> value
    problems: list[pl.DataFrame] = []
    for f in fields:
        if not residue[f.name]:
            continue
        r = ident("r_" + f.name)
        raw = stage.sql(f"SELECT DISTINCT {r} AS raw FROM {typed} WHERE {r} IS NOT NULL")["raw"]
        text = raw.str.normalize("NFC")
        first_day = day_first
        if f.type in ("datetime", "date"):
            first_day = _day_first(text, labels[f.name], day_first, notes, stage)
        value, bad = convert_values(f, text, first_day)
        m = pl.DataFrame({"raw": raw, "value": value, "bad": bad})
        if f.type in TEXT_TYPES:
            m = m.filter(pl.col("value").is_null() | (pl.col("value") != pl.col("raw")))
            if not m.height:
                continue
        stage.register(f"m_{f.name}", m)
        maps[f.name] = stage.t(f"m_{f.name}")
        if bad.any():
            found = stage.sql(
                f"SELECT t.rowid AS _row, t.{r} AS value FROM {typed} t JOIN {maps[f.name]} m ON m.raw = t.{r} "
                "WHERE m.bad")
            problems.append(found.select(
                "_row", pl.lit(f.name).alias("field"), pl.col("value").str.slice(0, 200),
                pl.lit(f"invalid_{f.type}").alias("rule"), pl.lit(reason(f)).alias("reason")))

    # The relation every later step reads: the fast values, the residue joined back.
    exprs: dict[str, str] = {}
    joins = []
    for f in fields:
        c, r = f"t.{ident(f.name)}", f"t.{ident('r_' + f.name)}"
        if f.type in TEXT_TYPES:
            base = f"coalesce({c}, {r})"  # a residue value that reads as itself
        elif f.name in fast:
            base = c
        else:
            base = f"CAST(NULL AS {SQL_TYPE[f.type]})"
        if f.name in maps:
            m = ident("m_" + f.name)
            joins.append(f"LEFT JOIN {maps[f.name]} {m} ON {m}.raw = {r}")
            base = f"CASE WHEN {m}.raw IS NOT NULL THEN {m}.value ELSE {base} END"
        exprs[f.name] = base
    if "margin_rate" in exprs:
        margin = exprs.pop("margin_rate")
        revenue = exprs.get("revenue", "NULL")
        exprs["gross_margin"] = f"coalesce({exprs.get('gross_margin', 'NULL')}, ({revenue}) * ({margin}))"
    if kind.generated_key and kind.key not in exprs:
        if not re.fullmatch(r"[0-9a-f]{12}", sha256[:12]) or line_sql is None:
            raise ValueError("a generated key needs the file's hash and line numbers")
        exprs[kind.key] = f"'{sha256[:12]}:' || CAST({line_sql} AS VARCHAR)"
        notes.append(f"The file has no {kind.key}; each row's id is made from the file's hash and its line.")
    out = ", ".join(f"{e} AS {ident(n)}" for n, e in exprs.items())
    line = "".join(f", t.{ident(c)}" for c in carry)
    if lines_table is not None:
        joins.append(f"LEFT JOIN {lines_table} ln ON ln._row = t.rowid")
    body = f"SELECT t.rowid AS _row{line}, {out} FROM {typed} t {' '.join(joins)}"
    if joins:  # materialised once: the keys, Pandera and the load all read it
        stage.run(f"CREATE TABLE {stage.t('final')} AS {body}")
        stage.con.execute(f"DROP TABLE {typed}")
    else:  # nothing to join: a view, not a second copy of every row
        stage.con.execute(f"CREATE VIEW {stage.t('final')} AS {body}")
    found = pl.concat(problems) if problems else pl.DataFrame(schema=PROBLEM_ROW_SCHEMA)
    return Typed(fields, found, notes, rows)


def _head_map(stage: Stage, f: Field, source_sql: str, column: str, params: dict) -> tuple[list, list] | None:
    """A status, channel or enum column's values in the first rows, read by data.parse:
    (raw values, canonical values), leaving out any that do not read (they stay in
    the residue, to be reported). None when the column is not low-cardinality."""
    c = ident(column)
    seen = stage.sql(f"SELECT DISTINCT {c} AS raw FROM (SELECT {c} FROM {source_sql} LIMIT {HEAD_ROWS}) "
                     f"WHERE {c} IS NOT NULL LIMIT {HEAD_VALUES + 1}", params)["raw"]
    if seen.len() == 0 or seen.len() > HEAD_VALUES:
        return None
    value, bad = convert_values(f, seen.str.normalize("NFC"))
    keep = ~bad & value.is_not_null()
    if not keep.any():
        return None
    return seen.filter(keep).to_list(), value.filter(keep).to_list()


PROBLEM_ROW_SCHEMA = {"_row": pl.Int64, "field": pl.Utf8, "value": pl.Utf8, "rule": pl.Utf8, "reason": pl.Utf8}


def _day_first(text: pl.Series, label: str, setting: bool, notes: list[str], stage: Stage) -> bool:
    """Day/month order from the whole column's evidence (its residue holds every
    dd/mm value; ISO values carry no evidence)."""
    ev = parse.date_order_evidence(text)
    if ev["dmy_only"] and ev["mdy_only"]:
        raise FileProblem(
            f"column “{label}” mixes day-first dates (such as 31/01) and month-first "
            f"dates (such as 01/31); the file contradicts itself. Nothing was loaded.")
    day_first = True if ev["dmy_only"] else False if ev["mdy_only"] else setting
    if ev["ambiguous"] and not (ev["dmy_only"] or ev["mdy_only"]):
        notes.append(f"“{label}”: every date could be read either way; read "
                     f"{'day first (dd/mm/yyyy)' if day_first else 'month first (mm/dd/yyyy)'} "
                     f"as the workspace setting says.")
    return day_first


def keys_repeat(stage: Stage, kind: Kind, con: duckdb.DuckDBPyConnection | None = None) -> bool:
    """Whether some key is on more than one row (the cheapest question to ask; ``con``:
    another cursor of the stage's instance, to ask it alongside other work)."""
    key = ident(kind.key)
    sql = f"SELECT count({key}) <> count(DISTINCT {key}) FROM {stage.t('final')}"
    return bool((con or stage.con).execute(sql).fetchall()[0][0])


def dedupe(stage: Stage, kind: Kind, fields: Iterable[str]) -> tuple[int, pl.DataFrame]:
    """Rows that repeat an earlier row exactly are dropped (counted once); a key that
    remains on more than one row is a problem on each of them. Returns (rows dropped,
    problems as _row, value). Call it when :func:`keys_repeat`."""
    final = stage.t("final")
    key = ident(kind.key)
    dup = stage.t("dup_keys")
    stage.con.execute(f"CREATE TABLE {dup} AS SELECT {key} AS k FROM {final} WHERE {key} IS NOT NULL "
                      f"GROUP BY {key} HAVING count(*) > 1")
    if not stage.rows(f"SELECT count(*) FROM {dup}")[0][0]:
        return 0, pl.DataFrame(schema={"_row": pl.Int64, "value": pl.Utf8})
    cols = ", ".join(ident(f) for f in fields)
    repeats = stage.rows(
        f"SELECT _row FROM (SELECT _row, row_number() OVER (PARTITION BY {cols} ORDER BY _row) AS n "
        f"FROM {final} WHERE {key} IN (SELECT k FROM {dup})) WHERE n > 1")
    if repeats:
        if stage.rows("SELECT count(*) FROM duckdb_views() WHERE database_name = $db AND view_name = 'final'",
                      {"db": stage.name})[0][0]:  # a view over the typed rows: make it a table to delete from
            stage.con.execute(f"CREATE TABLE {stage.t('final_rows')} AS SELECT * FROM {final}")
            stage.con.execute(f"DROP VIEW {final}")
            stage.con.execute(f"ALTER TABLE {stage.t('final_rows')} RENAME TO final")
        stage.register("repeats", pl.DataFrame({"_row": [r[0] for r in repeats]}, schema={"_row": pl.Int64}))
        stage.con.execute(f"DELETE FROM {final} WHERE _row IN (SELECT _row FROM {stage.t('repeats')})")
    conflicts = stage.sql(
        f"SELECT _row, CAST({key} AS VARCHAR) AS value FROM {final} WHERE {key} IN "
        f"(SELECT {key} FROM {final} WHERE {key} IN (SELECT k FROM {dup}) GROUP BY {key} HAVING count(*) > 1)")
    return len(repeats), conflicts


def batches(stage: Stage, columns: list[str], size: int = 1_000_000) -> Iterable[pl.DataFrame]:
    """The typed rows (with ``_row``) in Polars frames of at most ``size`` rows."""
    cols = ", ".join(["_row", *(ident(c) for c in columns)])
    reader = stage.con.sql(f"SELECT {cols} FROM {stage.t('final')}").to_arrow_reader(size)
    for batch in reader:
        yield pl.from_arrow(batch)


def mark_rejected(stage: Stage, rows: pl.Series) -> None:
    """Record the rejected rows; the view ``valid_rows`` holds the others."""
    stage.register("rejected", pl.DataFrame({"_row": rows.cast(pl.Int64).unique()}))
    keep = f" WHERE _row NOT IN (SELECT _row FROM {stage.t('rejected')})" if rows.len() else ""
    stage.con.execute(f"CREATE OR REPLACE VIEW {stage.t('valid_rows')} AS SELECT * FROM {stage.t('final')}{keep}")


