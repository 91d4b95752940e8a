"""The import pipeline, shared by the Data page and ``python -m data.load``.

bytes --read--> RawTable (every cell as text, the file's own line numbers)
      --map---> which header holds which canonical field (aliases, never position)
      --convert-> typed canonical frame + problems (values that do not parse)
      --validate-> more problems (Pandera schema per kind, checked on the whole
                   materialised frame, lazily so one run reports every failure)
      --load--> one transaction (data.store.Store.load_frames): all or nothing.

Nothing reaches the database unless :func:`load` is called with a report that has no
problems (or with ``accept_valid=True``, which loads the valid rows and keeps the
rejected ones in the quarantine table). SQL is never built from file content: table
and column names come from data.kinds / data.store, values are bound or registered.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import hashlib
import io
import re
import tempfile
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl

with warnings.catch_warnings():
    # Pandera imports pyspark.pandas when pyspark is installed (it is, for the Spark
    # engine), which warns about the pandas version on every command-line import.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"pyspark\.")
    import pandera.polars as pa

from data import parse, staging
from data.config import scratch_dir
from data.kinds import KINDS, Kind
from data.parse import FileProblem
from data.presets import PRESETS, Preset, detect
from data.store import ORDER_STATUSES, Relation, Store

MAX_FIELD_BYTES = 1 << 20  # a cell larger than 1 MiB is not data we can use
XLSX_MAX_UNPACKED = 1 << 30  # an .xlsx that unpacks to more than 1 GiB is refused
XLSX_MAX_RATIO = 200  # ... as is one that unpacks to more than 200x its size (a zip bomb)
PROBLEM_SCHEMA = {"line": pl.Int64, "column": pl.Utf8, "value": pl.Utf8, "rule": pl.Utf8, "reason": pl.Utf8}


class MappingNeeded(FileProblem):
    """Required fields have no column: the page offers a mapping step with
    ``suggestions`` (field -> likely headers, best first)."""

    def __init__(self, message: str, kind: str, headers: list[str], missing: list[str],
                 suggestions: dict[str, list[str]], signature: str, mapping: dict[str, str]):
        super().__init__(message)
        self.kind, self.headers, self.missing = kind, headers, missing
        self.suggestions, self.signature, self.mapping = suggestions, signature, mapping


def header_signature(headers: list[str]) -> str:
    """Identifies a file layout: the normalised headers, in any order."""
    return hashlib.sha256("\x1f".join(sorted(parse.normalise_header(h) for h in headers)).encode()).hexdigest()[:16]


def suggest(kind: Kind, headers: list[str], fields: list[str], n: int = 3) -> dict[str, list[str]]:
    """For each field, the headers that look most like its name or aliases."""
    norm = {parse.normalise_header(h): h for h in headers}
    out = {}
    for name in fields:
        f = kind.field(name)
        scores: dict[str, float] = {}
        for alias in (f.name.replace("_", " "), *f.aliases):
            a = parse.normalise_header(alias)
            for h_norm, h in norm.items():
                r = difflib.SequenceMatcher(None, a, h_norm).ratio() + (0.3 if a in h_norm or h_norm in a else 0)
                scores[h] = max(scores.get(h, 0.0), r)
        out[name] = [h for h, sc in sorted(scores.items(), key=lambda x: -x[1]) if sc >= 0.45][:n]
    return out


@dataclass(frozen=True)
class Settings:
    """Workspace settings that change how a file is read."""

    day_first: bool = True  # for dates whose day/month order the whole file leaves open
    now: datetime | None = None  # "the future" starts one day after this (default: now)


@dataclass
class RawTable:
    """A file read as text: ``frame`` has one Utf8 column per header (named c0, c1…)
    and ``_line``, the file's own line number where each record starts."""

    file_name: str
    encoding: str
    delimiter: str
    headers: list[str]
    frame: pl.DataFrame


@dataclass
class Report:
    """What a person needs to act on: counts per rule and every rejected cell. The
    checked rows wait in ``stage`` (a scratch database) until :func:`load` or
    :meth:`close`."""

    kind: str
    file_name: str
    sha256: str
    rows_read: int
    mapping: dict[str, str]  # field -> header
    ignored: list[str]  # headers that map to nothing
    problems: pl.DataFrame  # line, column, value, rule, reason
    notes: list[str] = field(default_factory=list)
    rejected_lines: list[int] = field(default_factory=list)
    signature: str = ""  # the header signature (see header_signature)
    stage: staging.Stage | None = None
    _valid: pl.DataFrame | None = None

    @property
    def ok(self) -> bool:
        return self.problems.height == 0

    def valid_columns(self) -> list[str]:
        cols = self.stage.con.sql(f"SELECT * FROM {self.stage.t('valid_rows')} LIMIT 0").columns
        return [c for c in cols if c not in ("_row", "_line")]

    @property
    def valid(self) -> pl.DataFrame:
        """The canonical rows without problems, in file order (read from the stage)."""
        if self._valid is None:
            if self.stage is None or self.stage.closed:
                raise RuntimeError("this report's rows were loaded or discarded")
            cols = ", ".join(staging.ident(c) for c in self.valid_columns())
            self._valid = self.stage.sql(f"SELECT {cols} FROM {self.stage.t('valid_rows')} ORDER BY _row")
        return self._valid

    def valid_count(self) -> int:
        """How many rows would load (counted in the stage, without fetching them)."""
        if self._valid is not None:
            return self._valid.height
        return int(self.stage.rows(f"SELECT count(*) FROM {self.stage.t('valid_rows')}")[0][0])

    def close(self) -> None:
        """Drop the checked rows (after loading, or when the file is not wanted)."""
        if self.stage is not None:
            self.stage.close()

    def counts(self) -> pl.DataFrame:
        return self.problems.group_by("rule", "column").agg(pl.len().alias("rows")).sort("rows", descending=True)

    def summary(self) -> str:
        if self.ok:
            return f"{self.file_name}: {parse.count_of(self.rows_read, 'row')} read, all valid."
        return (f"{self.file_name}: {parse.count_of(self.rows_read, 'row')} read, {len(self.rejected_lines):,} rejected "
                f"({parse.count_of(self.problems.height, 'problem')}).")

    def problems_csv(self) -> bytes:
        """The rejected cells as CSV for Excel: UTF-8 with BOM, formulas neutralised."""
        return to_excel_csv(self.problems)


def neutralise(value: str) -> str:
    """A text cell that a spreadsheet could run as a formula (starting with = + - @,
    a tab or a carriage return) gets a leading apostrophe."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def neutralise_expr(column: str) -> pl.Expr:
    """:func:`neutralise` as a Polars expression over a text column (nulls stay null)."""
    c = pl.col(column)
    return pl.when(c.str.contains(r"^[=+\-@\t\r]")).then(pl.lit("'") + c).otherwise(c).alias(column)


def neutralise_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with every text cell :func:`neutralise`-d (headers unchanged)."""
    return frame.with_columns(neutralise_expr(c) for c, t in frame.schema.items() if t == pl.Utf8)


def to_excel_csv(frame: pl.DataFrame) -> bytes:
    """CSV that Excel opens safely: UTF-8 with BOM; a text cell starting with = + - @
    tab or CR gets a leading apostrophe (headers too, :func:`neutralise`); real
    numbers stay numbers."""
    safe = neutralise_frame(frame.rename({c: neutralise(c) for c in frame.columns}))
    return b"\xef\xbb\xbf" + safe.write_csv().encode("utf-8")


_ILLEGAL_XML = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"  # control characters an XML cell cannot hold


def _xlsx_safe(frame: pl.DataFrame) -> pl.DataFrame:
    """Columns ready for openpyxl: text cleaned and neutralised (:func:`neutralise`,
    in Polars), NaN and infinities as null, time zones dropped (local time kept),
    other types as text."""
    exprs = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if dtype.is_float():
            col = pl.when(col.is_finite()).then(col).otherwise(None)
        elif dtype.is_integer() or dtype == pl.Boolean or dtype == pl.Date:
            pass
        elif isinstance(dtype, pl.Datetime):
            col = col.dt.replace_time_zone(None) if dtype.time_zone else col
        else:
            text = col.cast(pl.Utf8).str.replace_all(_ILLEGAL_XML, "")
            col = (pl.when(text.str.contains(r"^[=+\-@\t\r]")).then(pl.lit("'") + text).otherwise(text))
        exprs.append(col.alias(name))
    return frame.select(exprs)


def to_xlsx(frame: pl.DataFrame | Mapping[str, pl.DataFrame], *, sheet: str = "export") -> bytes:
    """The frame as an .xlsx workbook (openpyxl, write-only), one header row then one
    row per record; a mapping of sheet name -> frame gives one sheet each (names cut
    to Excel's 31 characters). Text cells (headers too) are formula-neutralised with
    :func:`neutralise` (a leading apostrophe before = + - @ tab or CR) and stripped of
    the control characters XML cannot hold; true numbers stay numbers (NaN and
    infinities become empty cells), dates and datetimes stay dates, booleans stay
    booleans, nulls are empty; other types are written as text."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    sheets = frame if isinstance(frame, Mapping) else {sheet: frame}
    for name, part in sheets.items():
        ws = wb.create_sheet(title=re.sub(r"[\[\]:*?/\\]", "_", str(name))[:31] or "export")
        ws.append([neutralise(re.sub(_ILLEGAL_XML, "", str(c))) for c in part.columns])
        for row in _xlsx_safe(part).iter_rows():
            ws.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


# ---------------------------------------------------------------------------------
# read
# ---------------------------------------------------------------------------------
def read_file(raw: bytes, file_name: str, *, header_rows: int = 1) -> RawTable:
    """Read CSV/TSV bytes into text columns. Raises FileProblem for anything that is
    not a readable table: wrong content, bad encoding, duplicate or missing headers,
    no data rows, ragged rows, an unterminated quote, an over-sized field."""
    kind = parse.sniff(raw, file_name)
    if kind == "xlsx":
        headers, frame = _read_xlsx(raw, file_name, header_rows)
        return RawTable(file_name, "xlsx", "", headers, frame)
    text, encoding = parse.decode(raw, file_name)
    with tempfile.NamedTemporaryFile("wb", suffix=".csv", delete=False, dir=scratch_dir()) as tmp:
        tmp.write(text.encode("utf-8"))
    path = Path(tmp.name)
    try:
        csv_in = _csv_layout(path, text[:HEAD_BYTES], encoding, file_name, header_rows)
        frame = _read_csv(csv_in, file_name)
        lines = _record_lines(csv_in, frame.height)
    finally:
        path.unlink(missing_ok=True)
    if frame.height == 0:
        raise FileProblem(f"{file_name}: the file has headers but no data rows.")
    first = csv_in.header_lines + 1
    if lines is None:
        lines = pl.int_range(first, first + frame.height, eager=True, dtype=pl.Int64)
    return RawTable(file_name, encoding, csv_in.delimiter, csv_in.headers, frame.with_columns(_line=lines))


def _settle_headers(records: list[list[str]], file_name: str) -> list[str]:
    """The column headers from the header rows (the first row names the columns).

    With more than one header row (SurveyMonkey), a blank header takes the last
    named header and the second row's text: "Which channels? – Zalo". Two headers
    that differ only in case (real Shopee exports) are both kept, the later one
    as "… (2)". Then the headers must be non-empty and distinct."""
    headers = [(h or "").strip() for h in records[0]]
    if not any(headers):
        raise FileProblem(f"{file_name}: the first row is empty; it must hold the column headers.")
    if len(records) > 1:
        last = ""
        second = records[1]
        for i, h in enumerate(headers):
            if h:
                last = h
            elif last and i < len(second) and (second[i] or "").strip():
                headers[i] = f"{last} – {(second[i] or '').strip()}"
    seen: dict[str, str] = {}
    for i, h in enumerate(headers):
        norm = parse.normalise_header(h)
        if norm in seen and seen[norm] != h:
            n = 2
            while parse.normalise_header(f"{h} ({n})") in seen:
                n += 1
            headers[i] = f"{h} ({n})"
            norm = parse.normalise_header(headers[i])
        seen.setdefault(norm, h)
    _check_headers(headers, file_name)
    return headers


def peek_headers(raw: bytes, file_name: str) -> list[str]:
    """The first row of a text file, unchecked (blank or repeated headers allowed), to
    recognise a preset before its header rows are read. Reads at most the first MB."""
    if parse.sniff(raw, file_name) != "text":
        return []
    head = raw[: 1 << 20]
    if len(raw) > len(head) and b"\n" in head:
        head = head.rsplit(b"\n", 1)[0]
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        head = head[: len(head) // 2 * 2]
    try:
        text, _ = parse.decode(head, file_name)
    except FileProblem:
        return []
    try:
        first = next(csv.reader(io.StringIO(text, newline=""), delimiter=parse.sniff_delimiter(text)), [])
    except csv.Error:
        return []
    return [h.strip() for h in first]


def _check_headers(headers: list[str], file_name: str) -> None:
    seen: dict[str, int] = {}
    for i, h in enumerate(headers, start=1):
        norm = parse.normalise_header(h)
        if not norm:
            raise FileProblem(f"{file_name}: column {i} has no header.")
        if norm in seen:
            raise FileProblem(f"{file_name}: the header “{h}” appears twice (columns {seen[norm]} and {i}).")
        seen[norm] = i


def _cell_text(v: object) -> str | None:
    """An Excel cell as the text a CSV export would hold: dates in ISO form, whole
    numbers without '.0' (phone numbers, ids), other numbers as Python writes them."""
    if v is None:
        return None
    if isinstance(v, datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return str(v)


def _read_xlsx(raw: bytes, file_name: str, header_rows: int) -> tuple[list[str], pl.DataFrame]:
    """The first sheet of an .xlsx, read with limits: the archive may not unpack to
    more than 1 GiB or 200x its size (zip bombs), and XML entities are refused
    (openpyxl parses through defusedxml). Line numbers are Excel's row numbers."""
    import zipfile

    import openpyxl

    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            unpacked = sum(i.file_size for i in zf.infolist())
    except zipfile.BadZipFile:
        raise FileProblem(f"{file_name}: the Excel file is damaged (not a readable zip archive).") from None
    if unpacked > XLSX_MAX_UNPACKED or unpacked > XLSX_MAX_RATIO * max(len(raw), 1) and unpacked > (50 << 20):
        raise FileProblem(f"{file_name}: the Excel file would unpack to {unpacked / 2**20:,.0f} MB; "
                          "it is refused as a possible zip bomb. Export the sheet as CSV instead.")
    try:
        wb = openpyxl.load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
    except Exception as e:  # defusedxml's EntitiesForbidden, damaged XML, ...
        reason = "it declares XML entities, which are refused" if "ntit" in type(e).__name__ + str(e) else f"it cannot be read ({type(e).__name__})"
        raise FileProblem(f"{file_name}: the Excel file is refused: {reason}.") from None
    try:
        ws = wb.worksheets[0]
        rows = ws.iter_rows(values_only=True)
        head = [next(rows, None) for _ in range(header_rows)]
        if head[0] is None:
            raise FileProblem(f"{file_name}: the first sheet is empty.")
        first = [(_cell_text(h) or "").strip() for h in head[0]]
        while first and not first[-1]:
            first.pop()
        headers = _settle_headers([first, *[[_cell_text(v) or "" for v in r] for r in head[1:] if r]], file_name)
        n = len(headers)
        cols: list[list[str | None]] = [[] for _ in range(n)]
        lines: list[int] = []
        for line, row in enumerate(rows, start=header_rows + 1):
            cells = [_cell_text(v) for v in row[:n]]
            if not any(c not in (None, "") for c in cells):
                continue
            if any(v not in (None, "") for v in row[n:]):
                raise FileProblem(f"{file_name}: row {line} has values beyond the last headed column.")
            cells += [None] * (n - len(cells))
            for c, v in zip(cols, cells):
                c.append(v)
            lines.append(line)
    finally:
        wb.close()
    if not lines:
        raise FileProblem(f"{file_name}: the file has headers but no data rows.")
    frame = pl.DataFrame({f"c{i}": pl.Series(c, dtype=pl.Utf8) for i, c in enumerate(cols)})
    frame = frame.with_columns(pl.col(c).str.strip_chars() for c in frame.columns)
    return headers, frame.with_columns(_line=pl.Series(lines, dtype=pl.Int64))


def _read_csv(csv_in: _Csv, file_name: str) -> pl.DataFrame:
    """Every record of a text file as text columns ``c0, c1, ...`` (DuckDB reads it
    strictly: a ragged row or an unterminated quote becomes a plain sentence)."""
    relation, params = csv_in.relation()
    con = duckdb.connect()
    try:
        return con.sql(f"SELECT * FROM {relation}", params=params).pl()
    except duckdb.Error as e:
        raise FileProblem(_csv_error(file_name, str(e))) from None
    finally:
        con.close()


def _csv_error(file_name: str, message: str) -> str:
    """DuckDB's CSV error as a sentence for a person (its line, when it gives one)."""
    m = re.search(r"[Ll]ine:?\s*(\d+)", message)
    where = f" near line {int(m.group(1))}" if m else ""
    low = message.lower()
    if "unterminated" in low:
        reason = "a quoted field is never closed (an unterminated quote)"
    elif "line size" in low:
        reason = "a field is larger than 1 MB"
    elif ("expected" in low and "column" in low) or "too many" in low or "too few" in low:
        reason = "a row has a different number of fields than the header"
    else:
        reason = "the rows cannot be split into the header's columns"
    return f"{file_name}: {reason}{where}. Nothing was loaded."


# ---------------------------------------------------------------------------------
# map
# ---------------------------------------------------------------------------------
def match_columns(kind: Kind, headers: list[str], explicit: dict[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """Which header holds each field: ``explicit`` (field -> header text) first, then
    the field's name and aliases, compared after normalisation. Returns (mapping
    field -> header, headers left unused). Raises FileProblem for an explicit mapping
    that names an unknown field or a header that is not in the file."""
    by_norm = {parse.normalise_header(h): h for h in headers}
    mapping = explicit_columns(kind, explicit, by_norm)
    taken = set(mapping.values())
    for f in kind.fields:
        if f.name in mapping:
            continue
        for alias in (f.name, f.name.replace("_", " "), *f.aliases):
            h = by_norm.get(parse.normalise_header(alias))
            if h is not None and h not in taken:
                mapping[f.name] = h
                taken.add(h)
                break
    return mapping, [h for h in headers if h not in taken]


def explicit_columns(kind: Kind, explicit: dict[str, str] | None, by_norm: dict[str, str]) -> dict[str, str]:
    """field -> column for a mapping a person gave (``--map`` or the mapping step);
    ``by_norm`` finds a column by its normalised header. Raises FileProblem for an
    unknown field or a header the file does not have."""
    names = [f.name for f in kind.fields]
    mapping = {}
    for name, header in (explicit or {}).items():
        if name not in names:
            raise FileProblem(f"--map: “{name}” is not a field of {kind.name} (fields: {', '.join(names)}).")
        column = by_norm.get(parse.normalise_header(header))
        if column is None:
            raise FileProblem(f"--map {name}=“{header}”: the file has no such header.")
        mapping[name] = column
    return mapping


def missing_fields(kind: Kind, mapping: dict[str, str]) -> list[str]:
    return [f.name for f in kind.fields if f.required and f.name not in mapping]


# ---------------------------------------------------------------------------------
# convert and validate
# ---------------------------------------------------------------------------------
@dataclass
class Source:
    """The columns a file offers for mapping: ``columns`` are their names (the headers,
    or for a preset their normalised form and any columns its preparation derives);
    ``labels`` gives the header text to show in reports. ``frame`` holds the text
    columns (and ``_line``) when the file was read into Polars (Excel, a preset that
    reshapes rows); a plain CSV is read by DuckDB straight into the stage."""

    columns: list[str]
    labels: dict[str, str]
    frame: pl.DataFrame | None = None

    def label(self, column: str) -> str:
        """The header to show; a column a preset derived (``__status``) reads
        ``status (derived)``."""
        if column in self.labels:
            return self.labels[column]
        return f"{column[2:]} (derived)" if column.startswith("__") else column


def source_for(table: RawTable, preset: Preset | None) -> Source:
    """Columns named by the file's headers (generic), or by their normalised form and
    prepared by the preset (for example one Shopify order per ``Name``)."""
    if preset is None:
        frame = table.frame.rename({f"c{i}": h for i, h in enumerate(table.headers)})
        return Source(list(table.headers), {h: h for h in table.headers}, frame)
    norm = [parse.normalise_header(h) for h in table.headers]
    frame = table.frame.rename({f"c{i}": n for i, n in enumerate(norm)})
    if preset.prepare is not None:
        frame = preset.prepare(frame)
    columns = [c for c in frame.columns if c != "_line"]
    return Source(columns, dict(zip(norm, table.headers)), frame)


def schema_for(kind: Kind, now: datetime, *, unique: bool = True) -> pa.DataFrameSchema:
    """The Pandera schema of one kind, on the typed frame: required values, ranges,
    allowed values, unique keys, and no dates in the future. The import checks the
    file in batches with ``unique=False`` and checks keys over the whole file in SQL
    (data.staging.dedupe)."""
    dtype = {"id": pl.Utf8, "text": pl.Utf8, "amount": pl.Float64, "rate": pl.Float64, "int": pl.Int64,
             "datetime": pl.Datetime("us"), "date": pl.Date, "phone": pl.Utf8, "email": pl.Utf8,
             "status": pl.Utf8, "channel": pl.Utf8, "enum": pl.Utf8}
    cols = {}
    for f in kind.fields:
        if f.name in kind.derived:
            continue
        checks = []
        if f.low is not None:
            checks.append(pa.Check.ge(f.low))
        if f.high is not None:
            checks.append(pa.Check.le(f.high))
        if f.allowed:
            checks.append(pa.Check.isin(list(f.allowed)))
        if f.type == "status":
            checks.append(pa.Check.isin(list(ORDER_STATUSES)))
        if f.type in ("datetime", "date"):
            limit = now + timedelta(days=1)
            checks.append(_not_in_the_future(limit if f.type == "datetime" else limit.date()))
        cols[f.name] = pa.Column(dtype[f.type], checks=checks, nullable=not f.required,
                                 unique=unique and f.name == kind.key, required=f.required or f.name == kind.key)
    return pa.DataFrameSchema(cols, strict=False, coerce=False)


# Columns read by the rules that span columns (see :func:`validate`).
CROSS_RULE_COLUMNS = {"referrals": ("referrer_id", "referred_id"), "programme_costs": ("period_start", "period_end"),
                      "survey_responses": ("nps", "csat", "ces")}


def checked_fields(kind: Kind) -> set[str]:
    """The fields :func:`validate` checks beyond their type: required ones, the key,
    bounded, enumerated, statuses, dates (not in the future) and the fields of the
    rules that span columns."""
    return {f.name for f in kind.fields
            if f.required or f.name == kind.key or f.low is not None or f.high is not None or f.allowed
            or f.type in ("status", "datetime", "date")} | set(CROSS_RULE_COLUMNS.get(kind.name, ()))


def _not_in_the_future(limit) -> pa.Check:
    return pa.Check(lambda data: data.lazyframe.select(pl.col(data.key) <= limit), name="not_in_the_future",
                    error="the date is in the future")


RULE_REASONS = {
    "not_nullable": "a required value is missing",
    "field_uniqueness": "the same key appears on more than one row with different values",
    "not_in_the_future": "the date is in the future",
    "column_in_schema": "a required column is missing",
}


def validate(kind: Kind, frame: pl.DataFrame, settings: Settings = Settings(), *, unique: bool = True) -> pl.DataFrame:
    """Pandera (lazy: every failure at once) plus the rules that span columns, on a
    typed frame with a ``_row`` column. Returns problems as (_row, field, value,
    rule, reason)."""
    now = settings.now or datetime.now()
    problems = []
    try:
        schema_for(kind, now, unique=unique).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as e:
        fc = e.failure_cases.filter(pl.col("index").is_not_null())
        if fc.height:
            problems.append(pl.DataFrame({
                "_row": frame["_row"].gather(fc["index"].cast(pl.Int64)).cast(pl.Int64),
                "field": fc["column"].cast(pl.Utf8),
                "value": fc["failure_case"].cast(pl.Utf8).str.slice(0, 200),
                "rule": fc["check"].str.replace(r"\(.*$", ""),
                "reason": pl.Series([_reason(v) for v in fc["check"].to_list()], dtype=pl.Utf8),
            }))
    scores = [c for c in ("nps", "csat", "ces") if c in frame.columns]
    rules = {
        "referrals": [("referrer_id", pl.col("referrer_id") == pl.col("referred_id"), "self_referral",
                       "a customer cannot refer themselves")],
        "programme_costs": [("period_end", pl.col("period_end") < pl.col("period_start"), "period_order",
                             "the period ends before it starts")],
        "survey_responses": [("nps", pl.all_horizontal(pl.col(c).is_null() for c in scores) if scores else pl.lit(True),
                              "no_score", "the response has no NPS, CSAT or CES score")],
    }
    for column, expr, rule, why in rules.get(kind.name, []):
        if column in frame.columns or rule == "no_score":
            bad = frame.select(expr.fill_null(False)).to_series()
            if bad.any():
                vals = frame[column].cast(pl.Utf8) if column in frame.columns else pl.Series([None] * frame.height, dtype=pl.Utf8)
                problems.append(pl.DataFrame({"_row": frame["_row"], "value": vals}).filter(bad).select(
                    pl.col("_row").cast(pl.Int64), pl.lit(column).alias("field"), pl.col("value").str.slice(0, 200),
                    pl.lit(rule).alias("rule"), pl.lit(why).alias("reason")))
    return pl.concat(problems) if problems else pl.DataFrame(schema=staging.PROBLEM_ROW_SCHEMA)


def _reason(check: str) -> str:
    if check in RULE_REASONS:
        return RULE_REASONS[check]
    m = re.match(r"(greater_than_or_equal_to|less_than_or_equal_to|isin)\((.*)\)", check)
    if m:
        what = {"greater_than_or_equal_to": "must be at least", "less_than_or_equal_to": "must be at most",
                "isin": "must be one of"}[m.group(1)]
        return f"{what} {m.group(2)}"
    return check


# ---------------------------------------------------------------------------------
# the whole pipeline
# ---------------------------------------------------------------------------------
def choose_preset(headers: list[str], kind_name: str, preset: str | None) -> Preset | None:
    """``preset``: None to recognise one from the headers, ``"generic"`` for none, or
    a preset's name (which must be for this kind)."""
    if preset == "generic":
        return None
    if preset is None:
        return detect(headers, kind_name)
    if preset not in PRESETS:
        raise FileProblem(f"unknown preset “{preset}” (presets: generic, {', '.join(PRESETS)}).")
    if PRESETS[preset].kind != kind_name:
        raise FileProblem(f"the preset “{preset}” is for {PRESETS[preset].kind}, not {kind_name}.")
    return PRESETS[preset]


def map_source(kind: Kind, src: Source, preset: Preset | None, explicit: dict[str, str] | None) -> tuple[dict[str, str], list[str]]:
    """field -> column of ``src``, and the file's headers left unused."""
    columns = src.columns
    if preset is None:
        mapping, _ = match_columns(kind, columns, explicit)
    else:
        mapping = {f: c for f, c in preset.mapping.items() if c in columns}
        by_norm = {parse.normalise_header(src.label(c)): c for c in columns} | {c: c for c in columns}
        mapping |= explicit_columns(kind, explicit, by_norm)
        # A field the preset does not find may still have a column named by its aliases
        # (a survey with a 'Timestamp' column and a plain 'NPS' column).
        rest = {src.label(c): c for c in columns if c not in mapping.values() and not c.startswith("__")}
        by_alias, _ = match_columns(kind, list(rest))
        mapping |= {f: rest[h] for f, h in by_alias.items() if f not in mapping}
    used = set(mapping.values())
    ignored = [src.label(c) for c in columns if c not in used and not c.startswith("__")]
    return mapping, ignored


HEAD_BYTES = 1 << 20  # headers, delimiter and encoding are read from the first MiB


class _Input:
    """The uploaded bytes or a file on disk: content sniffed, SHA-256 and the NUL-byte
    check computed in a background thread while DuckDB reads, and a UTF-8 file that
    DuckDB can read (the file itself when it is UTF-8)."""

    def __init__(self, raw: bytes | str | Path, file_name: str) -> None:
        self.file_name = file_name
        self.data = raw if isinstance(raw, bytes | bytearray) else None
        self.path = None if self.data is not None else Path(raw)
        self._temps: list[Path] = []
        if self.data is not None:
            self.head = bytes(self.data[:HEAD_BYTES])
            self.kind = parse.sniff(self.data, file_name)  # the whole file: NUL bytes anywhere
        else:
            with open(self.path, "rb") as fh:
                self.head = fh.read(HEAD_BYTES)
            if self.head.startswith(b"PK"):  # a zip (an .xlsx?) is judged whole, and read whole
                self.data, self.path = self.path.read_bytes(), None
                self.kind = parse.sniff(self.data, file_name)
            else:
                self.kind = parse.sniff(self.head, file_name)
        self._digest: list = []
        self._thread = threading.Thread(target=self._hash, daemon=True)
        self._thread.start()

    def _hash(self) -> None:
        h, nul = hashlib.sha256(), False
        if self.data is not None:
            h.update(self.data)
        else:
            with open(self.path, "rb") as fh:
                while chunk := fh.read(8 << 20):
                    h.update(chunk)
                    nul = nul or b"\x00" in chunk
        self._digest[:] = [h.hexdigest(), nul]

    @property
    def sha256(self) -> str:
        self._thread.join()
        return self._digest[0]

    def check_nul(self) -> None:
        """NUL bytes beyond the first MiB of a file on disk (sniff saw only the head)."""
        self._thread.join()
        if self._digest[1] and self.kind == "text" and self.head[:2] not in (b"\xff\xfe", b"\xfe\xff"):
            parse.sniff(b"x\x00", self.file_name)  # raises the same message as for the head

    def whole(self) -> bytes:
        return bytes(self.data) if self.data is not None else self.path.read_bytes()

    def utf8_head(self) -> tuple[str, str] | None:
        """(head text, encoding) when the file starts as UTF-8 (with or without BOM)."""
        head = self.head
        if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
            return None
        try:
            text = codecs.getincrementaldecoder("utf-8")("strict").decode(head, final=False)
        except UnicodeDecodeError:
            return None
        if text.startswith("\ufeff"):
            return text[1:], "utf-8-sig"
        return text, "utf-8"

    def temp(self, content: bytes | None = None, text: str | None = None) -> Path:
        with tempfile.NamedTemporaryFile("wb", suffix=".csv", delete=False, dir=scratch_dir()) as tmp:
            if text is not None:
                tmp.write(text.encode("utf-8"))
            elif content is not None:
                tmp.write(content)
        path = Path(tmp.name)
        self._temps.append(path)
        return path

    def utf8_path(self) -> Path:
        return self.path if self.path is not None else self.temp(content=bytes(self.data))

    def decoded(self) -> tuple[Path, str, str]:
        """The file decoded by data.parse (UTF-16, Windows-1258, NFC) and written as
        UTF-8: (path, head text, encoding)."""
        text, encoding = parse.decode(self.whole(), self.file_name)
        return self.temp(text=text), text[:HEAD_BYTES], encoding

    def close(self) -> None:
        for p in self._temps:
            p.unlink(missing_ok=True)


@dataclass
class _Csv:
    """How DuckDB reads a text file: the UTF-8 path, its delimiter, header lines."""

    path: Path
    head: str
    encoding: str
    delimiter: str
    headers: list[str]
    header_rows: int
    header_lines: int  # physical lines taken by the header rows
    newline: str

    def relation(self) -> tuple[str, dict]:
        columns = {f"c{i}": "VARCHAR" for i in range(len(self.headers))}
        sql = ("read_csv($path, delim = $delim, quote = '\"', escape = '\"', header = false, skip = $skip, "
               "columns = $columns, strict_mode = true, null_padding = false, max_line_size = $max_line, "
               "all_varchar = true, auto_detect = false, new_line = $nl, encoding = 'utf-8')")
        return sql, {"path": str(self.path), "delim": self.delimiter, "skip": self.header_lines,
                     "columns": columns, "max_line": MAX_FIELD_BYTES, "nl": self.newline}


def _csv_layout(path: Path, head: str, encoding: str, file_name: str, header_rows: int) -> _Csv:
    if len(head) >= HEAD_BYTES // 4 and "\n" in head:
        head = head.rsplit("\n", 1)[0] + "\n"
    delimiter = parse.sniff_delimiter(head)
    records = csv.reader(io.StringIO(head, newline=""), delimiter=delimiter, quotechar='"', doublequote=True, strict=True)
    try:
        header_records = [next(records) for _ in range(header_rows)]
    except StopIteration:
        raise FileProblem(f"{file_name}: the file has no header row.") from None
    except csv.Error as e:
        raise FileProblem(f"{file_name}: the header cannot be read ({e}).") from None
    headers = _settle_headers([[parse._nfc(c) for c in r] for r in header_records], file_name)
    return _Csv(path, head, encoding, delimiter, headers, header_rows, records.line_num,
                "\\r\\n" if "\r\n" in head[:65536] else "\\n")


def _record_lines(csv_in: _Csv, rows: int) -> pl.Series | None:
    """The physical line each record starts on, when some field holds a newline
    (None when line = header lines + 1 + record number)."""
    newlines = 0
    with open(csv_in.path, "rb") as fh:
        last = b""
        while chunk := fh.read(8 << 20):
            newlines += chunk.count(b"\n")
            last = chunk[-1:]
    lines = newlines + (0 if last == b"\n" else 1)
    if lines == csv_in.header_lines + rows:
        return None
    with open(csv_in.path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=csv_in.delimiter)
        for _ in range(csv_in.header_lines):
            next(reader, None)
        starts: list[int] = []
        prev = reader.line_num
        for record in reader:
            if record:
                starts.append(prev + 1)
            prev = reader.line_num
    return pl.Series(starts[:rows], dtype=pl.Int64)


Progress = Callable[[float, str], None]


def check_file(raw: bytes | str | Path, file_name: str, kind_name: str, *, explicit: dict[str, str] | None = None,
               settings: Settings = Settings(), preset: str | None = None,
               remembered: Callable[[str], dict[str, str]] | None = None, store: Store | None = None,
               progress: Progress | None = None) -> Report:
    """Read, map, type and validate one file (bytes, or a path). Raises FileProblem
    for whole-file problems (MappingNeeded when required fields have no column); row
    problems are in the report. ``preset``: see :func:`choose_preset`.
    ``remembered``: looks up a confirmed mapping by header signature (explicit
    entries win over it). With ``store``, the checked rows wait in a scratch
    database inside the store's DuckDB, so :func:`load` copies nothing through
    Python. ``progress(fraction, step)`` is called while reading and checking."""
    if kind_name not in KINDS:
        raise FileProblem(f"unknown kind “{kind_name}” (kinds: {', '.join(KINDS)}).")
    kind = KINDS[kind_name]
    say = progress or (lambda fraction, step: None)
    inp = _Input(raw, file_name)
    stage = None
    try:
        say(0.0, "reading")
        src, chosen, csv_in, headers = _open(inp, kind_name, preset)
        signature = header_signature(headers)
        saved = remembered(signature) if remembered else {}
        saved = {f: h for f, h in saved.items() if h in headers}
        mapping, ignored = map_source(kind, src, chosen, {**saved, **(explicit or {})} if chosen is None else explicit)
        missing = missing_fields(kind, mapping)
        if missing:
            raise MappingNeeded(
                f"{file_name}: no column for {', '.join(missing)}. Map them with --map FIELD=HEADER "
                f"(headers in the file: {', '.join('“' + h + '”' for h in headers)}).",
                kind_name, headers, missing, suggest(kind, headers, missing), signature,
                {f: src.label(c) for f, c in mapping.items()})
        labels = {f: src.label(c) for f, c in mapping.items()}
        notes: list[str] = []
        if chosen is not None:
            notes.append(f"Recognised as {chosen.label}." + (f" {chosen.note}" if chosen.note else ""))
        if saved and chosen is None:
            notes.append("Columns mapped as you confirmed for files with these headers: "
                         + ", ".join(f"{f} = “{h}”" for f, h in saved.items()) + ".")
        if isinstance(store, Store):  # (a Spark store's rows are loaded from Polars)
            stage = staging.Stage(store.cursor(), owner=store)
        else:
            stage = staging.Stage(duckdb.connect(), private=True)
        position = {c: f"c{i}" for i, c in enumerate(src.columns)}
        columns = {f: position[c] for f, c in mapping.items()}
        reading = lambda p: say(0.8 * p, "reading")  # noqa: E731

        if src.frame is not None:
            frame = src.frame.select([*src.columns, "_line"]).rename(position)
            stage.register("src", frame)
            lines_of = lambda rows: frame["_line"].gather(rows)  # noqa: E731
            typed = staging.type_source(stage, kind, stage.t("src"), columns, labels, day_first=settings.day_first,
                                        sha256=inp.sha256, line_sql="t._line", carry=("_line",))
        else:
            typed, lines_of = _type_csv(stage, kind, inp, csv_in, columns, labels, settings, reading)
        inp.check_nul()
        notes += typed.notes
        say(0.8, "checking")
        problems, dropped = _check_rows(stage, kind, typed, settings)
        if dropped:
            notes.append(f"{parse.count_of(dropped, 'row')} {'repeats' if dropped == 1 else 'repeat'} another row exactly "
                         f"and {'was' if dropped == 1 else 'were'} counted once.")
        rejected_rows = problems["_row"].unique().sort()
        staging.mark_rejected(stage, rejected_rows)
        lines = pl.DataFrame({"_row": rejected_rows,
                              "line": lines_of(rejected_rows) if len(rejected_rows) else pl.Series([], dtype=pl.Int64)})
        problems = problems.join(lines, on="_row", how="left").select(
            pl.col("line").cast(pl.Int64),
            pl.col("field").replace_strict(labels, default=pl.col("field"), return_dtype=pl.Utf8).alias("column"),
            "value", "rule", "reason",
        ).sort("line", "column")
        say(1.0, "checked")
        report = Report(kind_name, file_name, inp.sha256, typed.rows, labels, ignored, problems, notes,
                        problems["line"].unique().sort().to_list(), signature, stage)
        stage = None
        return report
    finally:
        if stage is not None:
            stage.close()
        inp.close()


def _open(inp: _Input, kind_name: str, preset: str | None) -> tuple[Source, Preset | None, _Csv | None, list[str]]:
    """Recognise the layout and decide how the rows are read: a text file straight by
    DuckDB, an Excel file or a preset that reshapes rows through Polars."""
    if inp.kind == "xlsx":
        table = read_file(inp.whole(), inp.file_name)
        chosen = choose_preset(table.headers, kind_name, preset)
        if chosen is not None and chosen.header_rows != 1:
            table = read_file(inp.whole(), inp.file_name, header_rows=chosen.header_rows)
        return source_for(table, chosen), chosen, None, table.headers
    # Recognise the preset from the raw first row: a preset may need more header rows
    # before the headers are complete (SurveyMonkey's blank question headers).
    peeked = peek_headers(inp.head, inp.file_name)
    chosen = choose_preset(peeked, kind_name, preset) if peeked else None
    header_rows = chosen.header_rows if chosen else 1
    if chosen is not None and chosen.prepare is not None:
        table = read_file(inp.whole(), inp.file_name, header_rows=header_rows)
        return source_for(table, chosen), chosen, None, table.headers
    utf8 = inp.utf8_head()
    if utf8 is not None:
        csv_in = _csv_layout(inp.utf8_path(), utf8[0], utf8[1], inp.file_name, header_rows)
    else:
        path, head, encoding = inp.decoded()
        csv_in = _csv_layout(path, head, encoding, inp.file_name, header_rows)
    if chosen is None:
        src = Source(list(csv_in.headers), {h: h for h in csv_in.headers})
    else:
        norm = [parse.normalise_header(h) for h in csv_in.headers]
        src = Source(norm, dict(zip(norm, csv_in.headers)))
    return src, chosen, csv_in, csv_in.headers


def _type_csv(stage: staging.Stage, kind: Kind, inp: _Input, csv_in: _Csv, columns: dict[str, str],
              labels: dict[str, str], settings: Settings, reading: Callable[[float], None]):
    """Type a text file straight from DuckDB's reader; a file that turns out not to be
    UTF-8 past its first MiB is decoded by data.parse and read again."""
    for attempt in (0, 1):
        relation, params = csv_in.relation()
        needs_lines = kind.generated_key and kind.key not in columns
        line_sql, lines_table, record_lines = f"({csv_in.header_lines + 1} + t.rowid)", None, None
        try:
            if needs_lines:  # the key is made from the line: learn whether records span lines
                rows = stage.rows(f"SELECT count(*) FROM {relation}", params)[0][0]
                record_lines = _record_lines(csv_in, rows)
                if record_lines is not None:
                    stage.register("lines", pl.DataFrame({"_row": pl.int_range(0, len(record_lines), eager=True),
                                                          "line": record_lines}))
                    line_sql, lines_table = "ln.line", stage.t("lines")
            typed = staging.type_source(stage, kind, relation, columns, labels, day_first=settings.day_first,
                                        # the hash only when a key is made from it: the
                                        # hashing thread then finishes while DuckDB reads
                                        sha256=inp.sha256 if needs_lines else "", line_sql=line_sql,
                                        lines_table=lines_table,
                                        params=params, progress=reading)
        except duckdb.Error as e:
            if attempt == 0 and "unicode" in str(e).lower() and csv_in.encoding.startswith("utf-8"):
                for t in ("typed", "lines"):
                    stage.con.execute(f"DROP TABLE IF EXISTS {stage.t(t)}")
                path, head, encoding = inp.decoded()
                csv_in = _csv_layout(path, head, encoding, inp.file_name, csv_in.header_rows)
                continue
            raise FileProblem(_csv_error(inp.file_name, str(e))) from None
        break
    if typed.rows == 0:
        raise FileProblem(f"{inp.file_name}: the file has headers but no data rows.")

    counted = needs_lines

    def lines_of(rows: pl.Series) -> pl.Series:
        nonlocal record_lines, counted
        if not counted:  # only a file with problems pays for counting its lines
            record_lines, counted = _record_lines(csv_in, typed.rows), True
        if record_lines is None:
            return (rows + csv_in.header_lines + 1).cast(pl.Int64)
        return record_lines.gather(rows)

    return typed, lines_of


def _check_rows(stage: staging.Stage, kind: Kind, typed: staging.Typed, settings: Settings) -> tuple[pl.DataFrame, int]:
    """Every row problem: values that did not read, keys repeated with different
    values, and the Pandera schema (checked batch by batch on the typed rows)."""
    columns = [c for c in stage.con.sql(f"SELECT * FROM {stage.t('final')} LIMIT 0").columns
               if c not in ("_row", "_line")]
    repeat: list = []
    asking = None
    if kind.key in columns:  # asked on a second cursor while Pandera checks the rows
        cursor = stage.con.cursor()

        def ask() -> None:
            try:
                repeat.append(staging.keys_repeat(stage, kind, cursor))
            except BaseException as e:  # re-raised below
                repeat.append(e)
            finally:
                cursor.close()

        asking = threading.Thread(target=ask, daemon=True)
        asking.start()
    # Pandera reads the columns it has something to check beyond their type (which
    # the SQL typing has already fixed): fewer columns through Arrow on big files.
    checked = [c for c in columns if c in checked_fields(kind)]
    schema_found = [validate(kind, batch, settings, unique=False) for batch in staging.batches(stage, checked)]
    dropped, conflicts = 0, None
    if asking is not None:
        asking.join()
        if isinstance(repeat[0], BaseException):
            raise repeat[0]
        if repeat[0]:  # rare: exact repeats are dropped, so check what remains again
            dropped, conflicts = staging.dedupe(stage, kind, columns)
            if dropped:
                schema_found = [validate(kind, batch, settings, unique=False)
                                for batch in staging.batches(stage, checked)]
    found = []
    if conflicts is not None and conflicts.height:
        found.append(conflicts.select(
            pl.col("_row").cast(pl.Int64), pl.lit(kind.key).alias("field"), "value",
            pl.lit("field_uniqueness").alias("rule"), pl.lit(RULE_REASONS["field_uniqueness"]).alias("reason")))
    found += schema_found
    # A cell that did not parse is reported once, as such, not again as "missing".
    checked = pl.concat(found) if found else pl.DataFrame(schema=staging.PROBLEM_ROW_SCHEMA)
    checked = checked.join(typed.problems.select("_row", "field"), on=["_row", "field"], how="anti")
    return pl.concat([typed.problems, checked]), dropped


def load(store: Store, report: Report, *, mode: str = "append", accept_valid: bool = False) -> int:
    """Load a checked file in one transaction. Refused (FileProblem) when the report
    has problems, unless ``accept_valid``: then the valid rows load and the rejected
    ones are kept in the quarantine table. Returns the import_id."""
    if not report.ok and not accept_valid:
        raise FileProblem(f"{report.file_name}: {parse.count_of(len(report.rejected_lines), 'row')} "
                          f"{'was' if len(report.rejected_lines) == 1 else 'were'} rejected; "
                          "nothing was loaded (fix the file, or choose to load only the valid rows).")
    kind = KINDS[report.kind]
    stage = report.stage
    if stage is not None and not stage.closed and stage.owner is store:
        source: pl.DataFrame | Relation = Relation(stage.t("valid_rows"), report.valid_columns())
    else:
        source = report.valid
    import_id = store.load_frames(
        {kind.table: source}, kind=report.kind, file_name=report.file_name, sha256=report.sha256,
        mode=mode, rows_read=report.rows_read, rows_rejected=len(report.rejected_lines),
        quarantine=report.problems if not report.ok else None,
    )
    report.close()  # loaded: the scratch rows go (on failure they stay, to try again)
    return import_id
