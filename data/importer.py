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

import csv
import difflib
import hashlib
import io
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pandera.polars as pa
import polars as pl

from data import parse
from data.kinds import CHANNEL_ALIASES, ENUM_ALIASES, KINDS, Kind
from data.parse import FileProblem
from data.presets import PRESETS, Preset, detect
from data.store import ORDER_STATUSES, Store

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
    sha256: str
    encoding: str
    delimiter: str
    headers: list[str]
    frame: pl.DataFrame


@dataclass
class Report:
    """What a person needs to act on: counts per rule and every rejected cell."""

    kind: str
    file_name: str
    sha256: str
    rows_read: int
    mapping: dict[str, str]  # field -> header
    ignored: list[str]  # headers that map to nothing
    problems: pl.DataFrame  # line, column, value, rule, reason
    notes: list[str] = field(default_factory=list)
    valid: pl.DataFrame | None = None  # canonical rows without problems
    rejected_lines: list[int] = field(default_factory=list)
    signature: str = ""  # the header signature (see header_signature)

    @property
    def ok(self) -> bool:
        return self.problems.height == 0

    def counts(self) -> pl.DataFrame:
        return self.problems.group_by("rule", "column").agg(pl.len().alias("rows")).sort("rows", descending=True)

    def summary(self) -> str:
        if self.ok:
            return f"{self.file_name}: {self.rows_read:,} rows read, all valid."
        return (f"{self.file_name}: {self.rows_read:,} rows read, {len(self.rejected_lines):,} rejected "
                f"({self.problems.height:,} problems).")

    def problems_csv(self) -> bytes:
        """The rejected cells as CSV for Excel: UTF-8 with BOM, formulas neutralised."""
        return to_excel_csv(self.problems)


def to_excel_csv(frame: pl.DataFrame) -> bytes:
    """CSV that Excel opens safely: UTF-8 with BOM; a text cell starting with = + - @
    tab or CR gets a leading apostrophe (headers too); real numbers stay numbers."""
    def neutral(s: str) -> str:
        return "'" + s if s[:1] in ("=", "+", "-", "@", "\t", "\r") else s

    safe = frame.rename({c: neutral(c) for c in frame.columns}).with_columns(
        pl.col(c).map_elements(neutral, return_dtype=pl.Utf8)
        for c, t in zip(frame.columns, frame.dtypes) if t == pl.Utf8
    ) if frame.height else frame
    return b"\xef\xbb\xbf" + safe.write_csv().encode("utf-8")


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
        return RawTable(file_name, hashlib.sha256(raw).hexdigest(), "xlsx", "", headers, frame)
    text, encoding = parse.decode(raw, file_name)
    delimiter = parse.sniff_delimiter(text)
    records = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar='"', doublequote=True, strict=True)
    try:
        header_records = [next(records) for _ in range(header_rows)]
    except StopIteration:
        raise FileProblem(f"{file_name}: the file has no header row.") from None
    except csv.Error as e:
        raise FileProblem(f"{file_name}: the header cannot be read ({e}).") from None
    headers = _settle_headers(header_records, file_name)
    frame = _read_records(text, file_name, delimiter, len(headers), header_rows)
    if frame.height == 0:
        raise FileProblem(f"{file_name}: the file has headers but no data rows.")
    return RawTable(file_name, hashlib.sha256(raw).hexdigest(), encoding, delimiter, headers, frame)


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


def _read_records(text: str, file_name: str, delimiter: str, ncols: int, header_rows: int) -> pl.DataFrame:
    """The data records as text, with the line each starts on. DuckDB reads the
    (re-encoded UTF-8) file strictly: a ragged row or an unterminated quote fails with
    its line, which we turn into a plain sentence."""
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".csv", delete=False, newline="") as tmp:
        tmp.write(text)
        path = tmp.name
    con = duckdb.connect()
    try:
        columns = {f"c{i}": "VARCHAR" for i in range(ncols)}
        rel = con.sql(
            "SELECT * FROM read_csv($path, delim = $delim, quote = '\"', escape = '\"', header = false, "
            "skip = $skip, columns = $columns, strict_mode = true, null_padding = false, "
            "max_line_size = $max_line, all_varchar = true, auto_detect = false, new_line = $nl)",
            params={"path": path, "delim": delimiter, "skip": _physical_lines(text, header_rows, delimiter),
                    "columns": columns, "max_line": MAX_FIELD_BYTES * 2, "nl": "\\r\\n" if "\r\n" in text[:65536] else "\\n"},
        )
        frame = rel.pl()
    except duckdb.Error as e:
        raise FileProblem(_csv_error(file_name, str(e))) from None
    finally:
        con.close()
        Path(path).unlink(missing_ok=True)
    too_big = [c for c in frame.columns if (frame[c].str.len_bytes().max() or 0) > MAX_FIELD_BYTES]
    if too_big:
        c = too_big[0]
        row = int(frame[c].str.len_bytes().arg_max())
        raise FileProblem(f"{file_name}: a field in column {int(c[1:]) + 1} is larger than 1 MB "
                          f"(record {row + 1}); this is not a table export we can use.")
    return frame.with_columns(_line=_line_numbers(text, header_rows, frame.height, delimiter))


def _physical_lines(text: str, records: int, delimiter: str) -> int:
    """How many physical lines the first ``records`` records take (quoted newlines).
    Only the start of the text is read: header records are short."""
    if records == 0:
        return 0
    reader = csv.reader(io.StringIO(text[: 1 << 20], newline=""), delimiter=delimiter)
    for _ in range(records):
        next(reader)
    return reader.line_num


def _line_numbers(text: str, header_rows: int, n: int, delimiter: str) -> pl.Series:
    """The physical line on which each data record starts. Fast when no field holds a
    newline (line = header lines + record number); otherwise counted by csv."""
    newlines = text.count("\n") + (0 if text.endswith("\n") else 1)
    first = _physical_lines(text, header_rows, delimiter) + 1
    if newlines - (first - 1) == n:
        return pl.int_range(first, first + n, eager=True, dtype=pl.Int64)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    for _ in range(header_rows):
        next(reader)
    starts, prev = [], reader.line_num
    for _ in reader:
        starts.append(prev + 1)
        prev = reader.line_num
    return pl.Series(starts[:n], dtype=pl.Int64)


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
def _problems(lines: pl.Series, raw: pl.Series, mask: pl.Series, column: str, rule: str, reason: str) -> pl.DataFrame:
    sel = pl.DataFrame({"line": lines, "value": raw}).filter(mask.fill_null(False))
    return sel.select(
        "line", pl.lit(column).alias("column"), pl.col("value").cast(pl.Utf8).str.slice(0, 200),
        pl.lit(rule).alias("rule"), pl.lit(reason).alias("reason"),
    )


@dataclass
class Source:
    """Text columns ready to map: ``frame`` holds one Utf8 column per column of the
    file (after a preset's preparation) and ``_line``; ``labels`` gives the header text
    to show in reports for each column."""

    frame: pl.DataFrame
    labels: dict[str, str]
    file_name: str
    sha256: str

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
        return Source(frame, {h: h for h in table.headers}, table.file_name, table.sha256)
    norm = [parse.normalise_header(h) for h in table.headers]
    frame = table.frame.rename({f"c{i}": n for i, n in enumerate(norm)})
    if preset.prepare is not None:
        frame = preset.prepare(frame)
    return Source(frame, dict(zip(norm, table.headers)), table.file_name, table.sha256)


def convert(kind: Kind, raw: Source, mapping: dict[str, str], settings: Settings = Settings()) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """Turn the mapped text columns (``mapping``: field -> column of ``raw.frame``)
    into typed canonical columns. Returns (frame with ``_line`` and one column per
    field, problems named by the file's headers, notes)."""
    lines = raw.frame["_line"]
    out: dict[str, pl.Series] = {"_line": lines}
    problems: list[pl.DataFrame] = []
    notes: list[str] = []
    for f in kind.fields:
        column = mapping.get(f.name)
        if column is None:
            continue
        header = raw.label(column)
        text = raw.frame[column]
        empty = text.is_null() | (text.str.strip_chars() == "")
        bad = None
        if f.type in ("id", "text"):
            value = text.str.strip_chars()
            if f.type == "id":
                value = value.str.strip_chars_start("'")  # Shopify prefixes ids with '
            value = pl.select(pl.when(empty).then(None).otherwise(value)).to_series()
        elif f.type == "amount":
            value, bad = parse.parse_amount(text)
            reason = "not an amount"
        elif f.type == "rate":
            value, bad = parse.parse_rate(text)
            reason = "not a rate or percentage"
        elif f.type == "int":
            value, bad = parse.parse_int(text)
            reason = "not a whole number"
        elif f.type in ("datetime", "date"):
            ev = parse.date_order_evidence(text)
            if ev["dmy_only"] and ev["mdy_only"]:
                raise FileProblem(
                    f"{raw.file_name}: column “{header}” mixes day-first dates (such as 31/01) and month-first "
                    f"dates (such as 01/31); the file contradicts itself. Nothing was loaded.")
            day_first = True if ev["dmy_only"] else False if ev["mdy_only"] else settings.day_first
            if ev["ambiguous"] and not (ev["dmy_only"] or ev["mdy_only"]):
                notes.append(f"“{header}”: every date could be read either way; read "
                             f"{'day first (dd/mm/yyyy)' if day_first else 'month first (mm/dd/yyyy)'} "
                             f"as the workspace setting says.")
            fn = parse.parse_datetime if f.type == "datetime" else parse.parse_date
            value, bad = fn(text, day_first=day_first)
            reason = "not a date" if f.type == "date" else "not a date and time"
        elif f.type == "phone":
            value, bad = parse.parse_phone(text)
            reason = "not a Vietnamese phone number"
        elif f.type == "email":
            value = text.str.strip_chars().str.to_lowercase()
            bad = ~empty & ~value.str.contains(r"^[^@\s]+@[^@\s]+\.[^@\s]+$").fill_null(False)
            reason = "not an email address"
        elif f.type == "status":
            value, bad = parse.map_status(text)
            bad = bad & ~empty
            reason = "unknown order status"
        elif f.type == "channel":
            folded = text.str.strip_chars().str.to_lowercase()
            value = folded.replace_strict(CHANNEL_ALIASES, default=folded.str.replace_all(r"\s+", "_"), return_dtype=pl.Utf8)
        elif f.type == "enum":
            folded = text.str.strip_chars().str.to_lowercase()
            value = folded.replace_strict(ENUM_ALIASES.get(f.name, {}), default=None, return_dtype=pl.Utf8)
            bad = value.is_null() & ~empty
            reason = f"not one of {', '.join(f.allowed)}"
        else:  # pragma: no cover - every type is handled above
            raise AssertionError(f.type)
        if bad is not None:
            problems.append(_problems(lines, text, bad, header, f"invalid_{f.type}", reason))
        out[f.name] = value.alias(f.name)
    frame = pl.DataFrame(out)
    if "margin_rate" in frame.columns:
        margin = frame.select(
            pl.coalesce(pl.col("gross_margin") if "gross_margin" in frame.columns else pl.lit(None, pl.Float64),
                        pl.col("revenue") * pl.col("margin_rate"))
        ).to_series()
        frame = frame.drop("margin_rate").with_columns(margin.alias("gross_margin"))
    if kind.generated_key and kind.key not in frame.columns:
        frame = frame.with_columns(
            (pl.lit(raw.sha256[:12] + ":") + pl.col("_line").cast(pl.Utf8)).alias(kind.key))
        notes.append(f"The file has no {kind.key}; each row's id is made from the file's hash and its line.")
    probs = pl.concat(problems) if problems else pl.DataFrame(schema=PROBLEM_SCHEMA)
    return frame, probs, notes


def schema_for(kind: Kind, now: datetime) -> pa.DataFrameSchema:
    """The Pandera schema of one kind, on the typed frame: required values, ranges,
    allowed values, unique keys, and no dates in the future."""
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
                                 unique=f.name == kind.key, required=f.required or f.name == kind.key)
    return pa.DataFrameSchema(cols, strict=False, coerce=False)


def _not_in_the_future(limit) -> pa.Check:
    return pa.Check(lambda data: data.lazyframe.select(pl.col(data.key) <= limit), name="not_in_the_future",
                    error="the date is in the future")


RULE_REASONS = {
    "not_nullable": "a required value is missing",
    "field_uniqueness": "the same key appears on more than one row with different values",
    "not_in_the_future": "the date is in the future",
    "column_in_schema": "a required column is missing",
}


def validate(kind: Kind, frame: pl.DataFrame, settings: Settings = Settings(),
             headers: dict[str, str] | None = None) -> pl.DataFrame:
    """Pandera (lazy: every failure at once) plus the rules that span columns.
    Returns problems with the file's line numbers, named by the file's headers
    (``headers``: field -> header) where the field came from one."""
    headers = headers or {}
    now = settings.now or datetime.now()
    problems = []
    try:
        schema_for(kind, now).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as e:
        fc = e.failure_cases.filter(pl.col("index").is_not_null())
        if fc.height:
            lines = frame["_line"].gather(fc["index"].cast(pl.Int64))
            problems.append(pl.DataFrame({
                "line": lines,
                "column": fc["column"].replace_strict(headers, default=fc["column"], return_dtype=pl.Utf8),
                "value": fc["failure_case"].cast(pl.Utf8).str.slice(0, 200),
                "rule": fc["check"].str.replace(r"\(.*$", ""),
                "reason": fc["check"].map_elements(_reason, return_dtype=pl.Utf8),
            }))
    rules = {
        "referrals": [("referrer_id", pl.col("referrer_id") == pl.col("referred_id"), "self_referral",
                       "a customer cannot refer themselves")],
        "programme_costs": [("period_end", pl.col("period_end") < pl.col("period_start"), "period_order",
                             "the period ends before it starts")],
        "survey_responses": [("nps", pl.all_horizontal(pl.col(c).is_null() for c in ("nps", "csat", "ces") if c in frame.columns)
                              if any(c in frame.columns for c in ("nps", "csat", "ces")) else pl.lit(True),
                              "no_score", "the response has no NPS, CSAT or CES score")],
    }
    for column, expr, rule, reason in rules.get(kind.name, []):
        if column in frame.columns or rule == "no_score":
            bad = frame.select(expr.fill_null(False)).to_series()
            if bad.any():
                vals = frame[column].cast(pl.Utf8) if column in frame.columns else pl.Series([None] * frame.height, dtype=pl.Utf8)
                problems.append(_problems(frame["_line"], vals, bad, headers.get(column, column), rule, reason))
    return pl.concat(problems) if problems else pl.DataFrame(schema=PROBLEM_SCHEMA)


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
    """field -> column of ``src.frame``, and the file's headers left unused."""
    columns = [c for c in src.frame.columns if c != "_line"]
    if preset is None:
        mapping, _ = match_columns(kind, columns, explicit)
    else:
        mapping = {f: c for f, c in preset.mapping.items() if c in src.frame.columns}
        by_norm = {parse.normalise_header(src.label(c)): c for c in columns} | {c: c for c in columns}
        mapping |= explicit_columns(kind, explicit, by_norm)
    used = set(mapping.values())
    ignored = [src.label(c) for c in columns if c not in used and not c.startswith("__")]
    return mapping, ignored


def check_file(raw: bytes, file_name: str, kind_name: str, *, explicit: dict[str, str] | None = None,
               settings: Settings = Settings(), preset: str | None = None,
               remembered: Callable[[str], dict[str, str]] | None = None) -> Report:
    """Read, map, convert and validate one file. Raises FileProblem for whole-file
    problems (MappingNeeded when required fields have no column); row problems are
    in the report. ``preset``: see :func:`choose_preset`. ``remembered``: looks up a
    confirmed mapping by header signature (explicit entries win over it)."""
    if kind_name not in KINDS:
        raise FileProblem(f"unknown kind “{kind_name}” (kinds: {', '.join(KINDS)}).")
    kind = KINDS[kind_name]
    # Recognise the preset from the raw first row: a preset may need more header
    # rows before the headers are complete (SurveyMonkey's blank question headers).
    peeked = peek_headers(raw, file_name)
    chosen = choose_preset(peeked, kind_name, preset) if peeked else None
    table = read_file(raw, file_name, header_rows=chosen.header_rows if chosen else 1)
    if not peeked:
        chosen = choose_preset(table.headers, kind_name, preset)
        if chosen is not None and chosen.header_rows != 1:
            table = read_file(raw, file_name, header_rows=chosen.header_rows)
    src = source_for(table, chosen)
    signature = header_signature(table.headers)
    saved = remembered(signature) if remembered else {}
    saved = {f: h for f, h in saved.items() if h in table.headers}
    mapping, ignored = map_source(kind, src, chosen, {**saved, **(explicit or {})} if chosen is None else explicit)
    missing = missing_fields(kind, mapping)
    if missing:
        raise MappingNeeded(
            f"{file_name}: no column for {', '.join(missing)}. Map them with --map FIELD=HEADER "
            f"(headers in the file: {', '.join('“' + h + '”' for h in table.headers)}).",
            kind_name, table.headers, missing, suggest(kind, table.headers, missing), signature,
            {f: src.label(c) for f, c in mapping.items()})
    frame, problems, notes = convert(kind, src, mapping, settings)
    if saved and chosen is None:
        notes.insert(0, "Columns mapped as you confirmed for files with these headers: "
                        + ", ".join(f"{f} = “{h}”" for f, h in saved.items()) + ".")
    if chosen is not None:
        notes.insert(0, f"Recognised as {chosen.label}." + (f" {chosen.note}" if chosen.note else ""))
    # Exact duplicate rows are one row; a key repeated with other values is a problem.
    before = frame.height
    if kind.key in frame.columns and frame[kind.key].is_duplicated().any():
        frame = frame.unique(subset=[c for c in frame.columns if c != "_line"], keep="first", maintain_order=True)
    if frame.height < before:
        notes.append(f"{before - frame.height:,} rows repeat another row exactly and were counted once.")
    # A cell that did not parse is reported once, as such, not again as "missing".
    labels = {f: src.label(c) for f, c in mapping.items()}
    checked = validate(kind, frame, settings, labels).join(problems.select("line", "column"), on=["line", "column"], how="anti")
    problems = pl.concat([problems, checked])
    if problems.height:
        problems = problems.sort("line", "column")
    rejected = problems["line"].unique().sort().to_list()
    valid = frame.filter(~pl.col("_line").is_in(rejected)).drop("_line")
    rows_read = table.frame.height
    return Report(kind_name, file_name, table.sha256, rows_read, labels, ignored, problems, notes, valid, rejected,
                  signature)


def load(store: Store, report: Report, *, mode: str = "append", accept_valid: bool = False) -> int:
    """Load a checked file in one transaction. Refused (FileProblem) when the report
    has problems, unless ``accept_valid``: then the valid rows load and the rejected
    ones are kept in the quarantine table. Returns the import_id."""
    if not report.ok and not accept_valid:
        raise FileProblem(f"{report.file_name}: {len(report.rejected_lines):,} rows were rejected; "
                          "nothing was loaded (fix the file, or choose to load only the valid rows).")
    kind = KINDS[report.kind]
    return store.load_frames(
        {kind.table: report.valid}, kind=report.kind, file_name=report.file_name, sha256=report.sha256,
        mode=mode, rows_read=report.rows_read, rows_rejected=len(report.rejected_lines),
        quarantine=report.problems if not report.ok else None,
    )
