"""Text cleaning for imports: file sniffing, decoding, headers, numbers, dates, phones, statuses.

Every value parser takes a Polars ``String`` Series and returns ``(values, bad)``: two
Series of the same length as the input, ``values`` typed (null where nothing could be
read) and ``bad`` a Boolean mask of values that were present but could not be read (so
the importer can report them with their row numbers). An empty or whitespace-only value
is null and *not* bad, except in :func:`map_status`, where the status is required.

Speed: files have up to 10 million rows, so nothing here loops over values in Python.
Each parser works as a cascade of stages: the cheapest stage (a plain cast, one fixed
date format) runs on every value, and each later stage runs only on the values that are
still unread. A column in one consistent format therefore pays for one stage, and the
slow, forgiving stages only ever see the odd values. Large stages run on Polars'
streaming engine, which splits the column across cores.

Nothing here imports Streamlit or Plotly.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Callable
from datetime import datetime

import polars as pl

__all__ = [
    "DATE_ORDERS",
    "LOCAL_TZ",
    "STATUS_MAP",
    "FileProblem",
    "date_order_evidence",
    "decode",
    "map_status",
    "normalise_header",
    "parse_amount",
    "parse_bool",
    "parse_date",
    "parse_datetime",
    "parse_int",
    "parse_phone",
    "parse_rate",
    "sniff",
    "sniff_delimiter",
]

LOCAL_TZ = "Asia/Ho_Chi_Minh"
DATE_ORDERS = ("dmy", "mdy")

# Columns at least this long run on the streaming engine (parallel over chunks).
_STREAM_MIN = 100_000


class FileProblem(ValueError):
    """A whole-file problem: message is a complete sentence for a person, naming the file and the reason.

    ``reason`` is a short stable code ('empty', 'image', 'archive', 'not_xlsx', 'binary',
    'legacy_excel', 'encoding') for callers that translate the message.
    """

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


# =====================================================================================
# Whole files
# =====================================================================================
_BOM_UTF8 = b"\xef\xbb\xbf"
_BOM_UTF16 = (b"\xff\xfe", b"\xfe\xff")
_NOT_BLANK = re.compile(rb"[^\s\x00]")

_MAGIC: tuple[tuple[bytes, str, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image", "image"),
    (b"\xff\xd8\xff", "a JPEG image", "image"),
    (b"GIF87a", "a GIF image", "image"),
    (b"GIF89a", "a GIF image", "image"),
    (b"%PDF-", "a PDF document", "image"),
    (b"\x1f\x8b", "a gzip archive", "archive"),
    (b"BZh", "a bzip2 archive", "archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive", "archive"),
    (b"Rar!\x1a\x07", "a RAR archive", "archive"),
)
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")


def count_of(n: int, noun: str, plural: str | None = None) -> str:
    """``1 row``, ``2 rows``, ``12,000 rows``: a count with its noun agreeing."""
    return f"{n:,} {noun if n == 1 else (plural or noun + 's')}"


def sniff(raw: bytes, file_name: str) -> str:
    """'xlsx' (a zip whose entries include '[Content_Types].xml' and 'xl/'), or 'text'.

    Raises :class:`FileProblem` (message names the file) for an empty file (no bytes, or
    only whitespace and a byte-order mark), an image, PDF or compressed archive (by magic
    bytes, whatever the extension), a zip that is not an xlsx workbook, an old binary
    Excel file, and a text file containing NUL bytes (unless it is UTF-16 with a BOM).
    """
    raw = bytes(raw) if not isinstance(raw, bytes | bytearray) else raw
    name = f"“{file_name}”"
    utf16 = raw[:2] in _BOM_UTF16
    start = 3 if raw.startswith(_BOM_UTF8) else 2 if utf16 else 0
    if _NOT_BLANK.search(raw, start) is None:
        raise FileProblem(f"The file {name} is empty: it contains no data.", "empty")
    head = raw[:16]
    for magic, what, reason in _MAGIC:
        if head.startswith(magic):
            raise FileProblem(
                f"The file {name} is {what}, not a CSV or Excel (.xlsx) file.", reason
            )
    if head.startswith(_OLE2):
        raise FileProblem(
            f"The file {name} is an old-style Excel (.xls) workbook or a password-protected "
            "workbook; open it in Excel and save it as .xlsx or CSV without a password.",
            "legacy_excel",
        )
    if head.startswith(_ZIP):
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as zf:
                names = zf.namelist()
                mimetype = zf.read("mimetype")[:100] if "mimetype" in names else b""
        except (zipfile.BadZipFile, OSError, KeyError, RuntimeError, ValueError) as exc:
            raise FileProblem(
                f"The file {name} is a damaged zip archive and cannot be opened ({exc}).",
                "archive",
            ) from None
        if "[Content_Types].xml" in names and any(n.startswith("xl/") for n in names):
            return "xlsx"
        if b"opendocument.spreadsheet" in mimetype:
            raise FileProblem(
                f"The file {name} is an OpenDocument (.ods) spreadsheet; save it as .xlsx or "
                "CSV and upload it again.",
                "not_xlsx",
            )
        raise FileProblem(
            f"The file {name} is a zip archive, not an Excel (.xlsx) workbook; unzip it and "
            "upload the CSV or .xlsx file inside.",
            "not_xlsx",
        )
    if not utf16 and b"\x00" in raw:
        raise FileProblem(
            f"The file {name} contains NUL bytes, so it is not a readable text (CSV) file; "
            "it may be a binary file, or text saved as UTF-16 without a byte-order mark.",
            "binary",
        )
    return "text"


def _line_of(raw: bytes, pos: int) -> int:
    return raw.count(b"\n", 0, pos) + 1


def _nfc(text: str) -> str:
    # str.isascii() is O(1) in CPython; ASCII text is always NFC.
    return text if text.isascii() else unicodedata.normalize("NFC", text)


def decode(raw: bytes, file_name: str) -> tuple[str, str]:
    """(text, encoding_label): 'utf-8', 'utf-8-sig', 'utf-16' or 'cp1258'; text is NFC.

    UTF-8 with or without BOM (the BOM is dropped), UTF-16 LE/BE with a BOM, otherwise
    Windows-1258 (strict) then NFC (cp1258 writes Vietnamese tones as combining marks).
    Newlines are left as they are. Raises :class:`FileProblem` if nothing decodes, and also
    when the file is clearly UTF-8 (valid multi-byte UTF-8 before the first bad byte) but
    damaged further on, rather than turning the whole file into mojibake as Windows-1258.
    """
    raw = bytes(raw) if not isinstance(raw, bytes | bytearray) else raw
    name = f"“{file_name}”"
    view = memoryview(raw)
    if raw.startswith(_BOM_UTF8):
        try:
            return _nfc(str(view[3:], "utf-8")), "utf-8-sig"
        except UnicodeDecodeError as exc:
            pos = exc.start + 3
            raise FileProblem(
                f"The file {name} is marked as UTF-8 but is damaged: byte {pos} (line "
                f"{_line_of(raw, pos)}) is not valid UTF-8.",
                "encoding",
            ) from None
    if raw[:2] in _BOM_UTF16:
        try:
            return _nfc(str(view, "utf-16")), "utf-16"
        except UnicodeDecodeError as exc:
            raise FileProblem(
                f"The file {name} is marked as UTF-16 but is damaged near byte {exc.start}.",
                "encoding",
            ) from None
    try:
        return _nfc(str(view, "utf-8")), "utf-8"
    except UnicodeDecodeError as exc:
        utf8_error = exc
    if not raw[: utf8_error.start].isascii():
        pos = utf8_error.start
        raise FileProblem(
            f"The file {name} looks like UTF-8 but is damaged: byte {pos} (line "
            f"{_line_of(raw, pos)}) is not valid UTF-8. Save it again as “CSV UTF-8”.",
            "encoding",
        )
    try:
        text = str(view, "cp1258")
    except UnicodeDecodeError as exc:
        raise FileProblem(
            f"The file {name} is not in a text encoding this app reads (UTF-8, UTF-16 or "
            f"Windows-1258): byte {exc.start} (line {_line_of(raw, exc.start)}) cannot be "
            "decoded. Save it as “CSV UTF-8”.",
            "encoding",
        ) from None
    return unicodedata.normalize("NFC", text), "cp1258"


_DELIMS = (",", ";", "\t", "|")
_SEP_LINE = re.compile(r"\A\ufeff?\s*sep=([,;\t|])\s*(?:\r\n|\n|\r|\Z)", re.IGNORECASE)


def sniff_delimiter(text: str) -> str:
    """',', ';', '\\t' or '|': the delimiter giving the most consistent column count > 1.

    Looks at the first 50 non-empty records, quote-aware (a delimiter inside a double-quoted
    field does not count, and a quoted field may span lines). Ties prefer ',' then ';' then
    tab then '|'; a single-column file gives ','. Excel's ``sep=;`` first line is honoured.
    """
    m = _SEP_LINE.match(text)
    if m:
        return m.group(1)
    sample, truncated = _sample_records_text(text)
    best, best_score = ",", 0.0
    for d in _DELIMS:
        counts = _field_counts(sample, d, truncated)
        if not counts:
            continue
        mode, freq = Counter(counts).most_common(1)[0]
        if mode <= 1:
            continue
        score = freq / len(counts)
        if score > best_score:
            best, best_score = d, score
    return best


def _sample_records_text(text: str, lines: int = 200, limit: int = 1 << 18) -> tuple[str, bool]:
    """The start of the text: up to ``lines`` line breaks or ``limit`` characters."""
    pos = 0
    for _ in range(lines):
        nxt = text.find("\n", pos, limit)
        if nxt < 0:
            break
        pos = nxt + 1
    else:
        return text[:pos], True
    if len(text) <= limit:
        return text, False
    return text[:limit], True


def _field_counts(sample: str, delim: str, truncated: bool, wanted: int = 50) -> list[int]:
    reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delim, quotechar='"')
    counts: list[int] = []
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            counts.append(len(row))
            if len(counts) > wanted:
                break
    except csv.Error:
        pass
    if truncated and len(counts) <= wanted and counts:
        counts.pop()  # the last record may have been cut off
    return counts[:wanted]


_ZERO_WIDTH = "\ufeff\u200b\u200c\u200d\u2060\u00ad"
_ZW_TABLE = str.maketrans("", "", _ZERO_WIDTH)
_WS = re.compile(r"\s+")


def normalise_header(h: str) -> str:
    """NFC, drop BOM/zero-width characters, strip surrounding quotes and whitespace, fold
    internal whitespace runs to one space, casefold: 'Mã  Đơn hàng ' -> 'mã đơn hàng'."""
    h = unicodedata.normalize("NFC", str(h).translate(_ZW_TABLE)).strip()
    h = h.strip("\"'“”‘’").strip()
    h = _WS.sub(" ", h).casefold()
    return unicodedata.normalize("NFC", h)


def _fold_expr(e: pl.Expr) -> pl.Expr:
    """Vectorised :func:`normalise_header` (used on the distinct values of a column)."""
    return (
        e.str.normalize("NFC")
        .str.replace_all(f"[{_ZERO_WIDTH}]", "")
        .str.strip_chars()
        .str.strip_chars("\"'“”‘’")
        .str.strip_chars()
        .str.replace_all(r"\s+", " ")
        .str.to_lowercase()
        .str.normalize("NFC")
    )


# =====================================================================================
# Cascade machinery
# =====================================================================================
def _select(x: pl.Series, **exprs: pl.Expr) -> pl.DataFrame:
    """Evaluate expressions over ``x`` (as column ``s``); big inputs use the streaming engine."""
    lf = x.rename("s").to_frame().lazy().select(**exprs)
    return lf.collect(engine="streaming" if len(x) >= _STREAM_MIN else "in-memory")


def _eval(x: pl.Series, expr: pl.Expr) -> pl.Series:
    return _select(x, v=expr).to_series()


_S = pl.col("s")


def _nulls(n: int, dtype: pl.DataType) -> pl.Series:
    return pl.repeat(None, n, dtype=dtype, eager=True)


def _expand(n: int, pos: pl.Series | None, sub: pl.Series, dtype: pl.DataType) -> pl.Series:
    """``sub`` holds the values at positions ``pos`` (None: all) of a length-``n`` Series."""
    if pos is None:
        return sub
    if len(pos) == 0:
        return _nulls(n, dtype)
    return _nulls(n, dtype).scatter(pos, sub)


def _on_subset(
    x: pl.Series, mask: pl.Series, fn: Callable[[pl.Series], pl.Series], dtype: pl.DataType
) -> pl.Series:
    """``fn`` applied to the rows of ``x`` where ``mask`` is true; null elsewhere."""
    mask = mask.fill_null(False)
    k = int(mask.sum())
    if k == 0:
        return _nulls(len(x), dtype)
    if k == len(x):
        return fn(x)
    return _nulls(len(x), dtype).scatter(mask.arg_true(), fn(x.filter(mask)))


class _Cascade:
    """Runs stages on the still-unread values of ``x`` and collects what they read."""

    def __init__(self, x: pl.Series, dtype: pl.DataType) -> None:
        self.n = len(x)
        self.dtype = dtype
        self.cur = x  # values still unread
        self.pos: pl.Series | None = None  # their positions in x (None: all of them)
        self.out: pl.Series | None = None

    @property
    def pending(self) -> int:
        return len(self.cur)

    def apply(self, fn: Callable[[pl.Series], pl.Series], where: pl.Series | None = None) -> None:
        """Run ``fn`` on the unread values (or those where ``where``); keep non-null results."""
        if not len(self.cur):
            return
        vals = fn(self.cur) if where is None else _on_subset(self.cur, where, fn, self.dtype)
        self.take(vals)

    def take(self, vals: pl.Series) -> None:
        ok = vals.is_not_null()
        k = int(ok.sum())
        if k == 0:
            return
        if self.out is None and self.pos is None:
            self.out = vals.cast(self.dtype).clone()
        else:
            if self.out is None:
                self.out = _nulls(self.n, self.dtype)
            pos = self.pos if self.pos is not None else pl.int_range(0, self.n, eager=True)
            self.out = self.out.scatter(pos.filter(ok), vals.filter(ok).cast(self.dtype))
        if k == len(self.cur):
            self.cur = self.cur.clear()
            self.pos = pl.Series([], dtype=pl.Int64)
            return
        rest = ~ok
        pos = self.pos if self.pos is not None else pl.int_range(0, self.n, eager=True)
        self.pos = pos.filter(rest)
        self.cur = self.cur.filter(rest)

    def values(self) -> pl.Series:
        return self.out if self.out is not None else _nulls(self.n, self.dtype)

    def unread(self) -> pl.Series:
        """Positions (in x) of the values no stage could read."""
        if self.pos is None:
            return pl.int_range(0, self.n, eager=True)
        return self.pos


def _as_text(s: pl.Series) -> pl.Series:
    return s if s.dtype == pl.String else s.cast(pl.String)


def _run(
    s: pl.Series, dtype: pl.DataType, runner: Callable[[_Cascade], None]
) -> tuple[pl.Series, pl.Series]:
    """Common frame of every value parser: skip null/empty values, run the cascade, and
    mark as bad the values that were present (not blank) but unread."""
    name = s.name
    s = _as_text(s)
    n = len(s)
    present = s.str.len_bytes().fill_null(0) > 0
    if bool(present.all()):
        pos0, x = None, s
    else:
        pos0 = present.arg_true()
        x = s.filter(present)
    cascade = _Cascade(x, dtype)
    if len(x):
        runner(cascade)
    values = _expand(n, pos0, cascade.values(), dtype).rename(name)
    bad = pl.repeat(False, n, eager=True)
    unread = cascade.unread()
    if len(unread):
        blank = x.gather(unread).str.strip_chars() == ""
        bad_pos = unread.filter(~blank)
        if len(bad_pos):
            bad = bad.scatter(bad_pos if pos0 is None else pos0.gather(bad_pos), True)
    return values, bad.rename(name)


# =====================================================================================
# Numbers
# =====================================================================================
_F64 = pl.Float64
# Whitespace and currency symbols trimmed from both ends of an amount.
_TRIM = " \t\r\n\u00a0\u202f\u2007\u2009₫đĐ$€£¥"
_CURRENCY = r"(?i:vn[dđ]|usd|us\$|eur|đồng|dong|₫|[đ$€£¥])"
_THOUSANDS_3 = r"^[-+]?[1-9]\d{0,2}\.\d{3}$"  # '1.234': one dot, three digits after
_GROUPED = r"^[-+]?[1-9]\d{0,2}(?:(?:\.\d{3})+|(?:,\d{3})+)$"
# The decimal forms exclude what _GROUPED and the '1.234' rule read, so that no value
# could be read two ways and the stages can run in any order.
_DEC_COMMA = (  # 1.234.567,50 / 12,5 / 1234,567 / 0,500
    r"^[-+]?(?:\d{1,3}(?:\.\d{3})+,\d+|\d+,\d{1,2}|\d+,\d{4,}|\d{4,},\d+|0+,\d+)$"
)
_DEC_DOT = (  # 1,234,567.50 / 12.5 / 1234.567 / 0.500
    r"^[-+]?(?:\d{1,3}(?:,\d{3})+\.\d+|\d+\.\d{1,2}|\d+\.\d{4,}|\d{4,}\.\d+|0+\.\d+)$"
)


def _amt_plain(x: pl.Series) -> pl.Series:
    """A plain cast ('1234', '-1000', '12.5', '1e3'); a lone '1.234' means 1234."""
    f = _S.cast(_F64, strict=False)
    v = _eval(x, pl.when(f.is_finite()).then(f))
    # Only values like '1.234' / '-12.345' can be thousands-grouped: 1 <= |v| < 1000 with
    # exactly three digits after one dot. Confirm those few with a regex.
    small = ((v.abs() >= 1) & (v.abs() < 1000)).fill_null(False)
    if small.any():
        fix = _on_subset(x, small, lambda t: _eval(t, _S.str.contains(_THOUSANDS_3)), pl.Boolean)
        fix = fix.fill_null(False)
        if fix.any():
            v = pl.select(pl.when(fix).then((v * 1000).round(0)).otherwise(v)).to_series()
    return v


def _sample(x: pl.Series, k: int = 200) -> pl.Series:
    """The first ``k`` values and ``k`` values spread over the rest."""
    n = len(x)
    if n <= 2 * k:
        return x
    return pl.concat([x.head(k), x.gather_every(max(1, n // k), offset=k).head(k)])


def _hits(x: pl.Series, fn: Callable[[pl.Series], pl.Series]) -> int:
    return int(fn(x).is_not_null().sum())


def _strip_seps(t: pl.Series) -> pl.Series:
    """Digits grouped by '.' or ',' -> Float64 (drop the separators)."""
    v = _eval(t, _without(".").cast(_F64, strict=False))
    missing = v.is_null()
    if missing.any():  # grouped by commas
        commas = _on_subset(t, missing, lambda u: _eval(u, _without(",").cast(_F64, strict=False)), _F64)
        v = v.fill_null(commas)
    return v


def _without(sep: str) -> pl.Expr:
    return _S.str.replace_all(sep, "", literal=True)


def _amt_grouped(x: pl.Series) -> pl.Series:
    """'1.234.567', '1,234', '12.345.678': every group after the first has three digits."""
    g = _eval(x, _S.str.contains(_GROUPED))
    return _on_subset(x, g, _strip_seps, _F64)


def _amt_dec_comma(x: pl.Series) -> pl.Series:
    """'1.234.567,50', '12,5': the comma is the decimal mark."""
    ok = _eval(x, _S.str.contains(_DEC_COMMA))
    return _on_subset(
        x,
        ok,
        lambda t: _eval(
            t,
            _S.str.replace_all(".", "", literal=True)
            .str.replace_all(",", ".", literal=True)
            .cast(_F64, strict=False),
        ),
        _F64,
    )


def _amt_dec_dot(x: pl.Series) -> pl.Series:
    """'1,234,567.50': the dot is the decimal mark."""
    ok = _eval(x, _S.str.contains(_DEC_DOT))
    return _on_subset(
        x, ok, lambda t: _eval(t, _S.str.replace_all(",", "", literal=True).cast(_F64, strict=False)), _F64
    )


_BODY_STAGES = (_amt_plain, _amt_grouped, _amt_dec_comma, _amt_dec_dot)


def _amt_body(x: pl.Series) -> pl.Series:
    """A cleaned number (sign, digits and separators only) -> Float64, null if unreadable.

    No value matches two stages with different readings, so they run in the order the
    sample uses most: a column in one format pays for one stage.
    """
    sample = _sample(x)
    hits = [_hits(sample, f) for f in _BODY_STAGES]
    order = sorted(range(len(_BODY_STAGES)), key=lambda i: -hits[i])
    c = _Cascade(x, _F64)
    for i in order:
        c.apply(_BODY_STAGES[i])
    return c.values()


def _signed(t: pl.Series) -> pl.Series:
    """Handle accounting parentheses '(1.000)' then read the body."""
    df = _select(t, a=_S.str.starts_with("("), b=_S.str.ends_with(")"))
    opened, closed = df["a"], df["b"]
    if not (opened.any() or closed.any()):
        return _amt_body(t)
    inner = _eval(t, _S.str.strip_prefix("(").str.strip_suffix(")").str.strip_chars())
    v = _amt_body(inner)
    neg = opened & closed
    return pl.select(
        pl.when(opened != closed)
        .then(None)
        .when(neg & (v < 0))
        .then(None)  # '(-1.000)': no guessing
        .when(neg)
        .then(-v)
        .otherwise(v)
    ).to_series()


def _amt_trimmed(x: pl.Series) -> pl.Series:
    """Whitespace and currency symbols around the number: ' 1.234.567 ₫', '$12.50', '(1.000)'."""
    return _signed(_eval(x, _S.str.strip_chars(_TRIM)))


def _amt_messy(x: pl.Series) -> pl.Series:
    """Currency codes anywhere, spaces as thousands separators: 'VND 1,000', '1 234 567 ₫'."""
    t = _eval(
        x,
        _S.str.replace_all("\u2212", "-", literal=True)
        .str.replace_all(_CURRENCY, " ")
        .str.strip_chars()
        .str.replace(r"^([-+(])\s+", "$1")
        .str.replace(r"\s+\)$", ")"),
    )
    df = _select(
        t,
        ws=_S.str.contains(r"\s"),
        ok=_S.str.contains(r"^[-+(]?\d{1,3}(?:\s\d{3})+(?:[.,]\d+)?\)?$"),
        t=_S.str.replace_all(r"\s", ""),
    )
    t = pl.select(pl.when(df["ws"] & ~df["ok"]).then(None).otherwise(df["t"])).to_series()
    return _on_subset(t, t.is_not_null(), _signed, _F64)


# Currency suffixes common enough to get a cheap stage of their own (longest first).
_SUFFIXES = (" VNĐ", " VND", " vnđ", " vnd", "VNĐ", "VND", " ₫", " đ", "₫", "đ")


def _amount_runner(c: _Cascade) -> None:
    # The later stages read everything the earlier ones do; the early ones are only
    # cheaper. A value the body reads after dropping a suffix consists of digits, signs and
    # separators, so trimming it would have given the same text: the order cannot change
    # a reading, only the cost.
    sample = _sample(c.cur)
    if _hits(sample, _amt_body) * 2 >= len(sample):
        c.apply(_amt_body)  # nothing to trim
    else:
        ends = _select(sample, **{f"s{i}": _S.str.ends_with(sfx).sum() for i, sfx in enumerate(_SUFFIXES)})
        counts = ends.row(0)
        best = max(range(len(_SUFFIXES)), key=lambda i: counts[i])
        if counts[best] * 2 >= len(sample):
            sfx = _SUFFIXES[best]
            c.apply(lambda x: _amt_body(_eval(x, _S.str.strip_suffix(sfx))))
    c.apply(_amt_trimmed)
    c.apply(_amt_messy)


def _numeric_passthrough(s: pl.Series, dtype: pl.DataType) -> tuple[pl.Series, pl.Series] | None:
    if s.dtype.is_numeric():
        return s.cast(dtype, strict=False), pl.repeat(False, len(s), eager=True).rename(s.name)
    return None


def parse_amount(s: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Money/number text -> (Float64 values, Boolean bad mask).

    Reads '1234567', '1.234.567', '1.234.567 ₫', '1.234.567đ', '1,234,567.50',
    '1.234.567,50', '12,5', '-1.000', '(1.000)', ' 1 234 567 ', 'VND 1,000', '$12.50'.
    With both '.' and ',' the last one is the decimal mark; with only one kind, the value
    is thousands-grouped when every group after the first has exactly three digits (and the
    first group is 1-3 digits not starting with 0), so '1.234' is 1234 but '1.5' is 1.5 and
    '0.500' is 0.5. Empty -> null (not bad); anything else unreadable -> null and bad.
    """
    passthrough = _numeric_passthrough(s, _F64)
    if passthrough is not None:
        return passthrough
    return _run(s, _F64, _amount_runner)


def parse_rate(s: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Like :func:`parse_amount`, plus a trailing '%' divides by 100: '12,5%' -> 0.125,
    '30%' -> 0.3, '0.3' -> 0.3 (a number without '%' is taken as it is)."""
    passthrough = _numeric_passthrough(s, _F64)
    if passthrough is not None:
        return passthrough
    s = _as_text(s)
    pct = _eval(s, _S.str.strip_chars_end().str.ends_with("%")).fill_null(False)
    if not pct.any():
        return parse_amount(s)
    body = _eval(s, _S.str.strip_chars_end().str.strip_suffix("%"))
    v, bad = parse_amount(body.rename(s.name))
    out = pl.select(pl.when(pct).then(v / 100).otherwise(v)).to_series().rename(s.name)
    bad = (bad | (pct & v.is_null())).rename(s.name)
    return out, bad


def _int_from_amount(x: pl.Series) -> pl.Series:
    c = _Cascade(x, _F64)
    _amount_runner(c)
    v = c.values()
    whole = v.is_finite() & (v == v.round(0)) & (v.abs() < 2.0**53)
    return pl.select(pl.when(whole).then(v).cast(pl.Int64)).to_series()


def parse_int(s: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Integer text -> Int64: '10', ' 7 ', '1.000' (grouped) and '10.0' read; '7.5', 'abc'
    are bad; empty -> null, not bad."""
    if s.dtype.is_integer():
        return s.cast(pl.Int64), pl.repeat(False, len(s), eager=True).rename(s.name)

    def runner(c: _Cascade) -> None:
        c.apply(lambda x: _eval(x, _S.cast(pl.Int64, strict=False)))
        c.apply(_int_from_amount)

    return _run(_as_text(s), pl.Int64, runner)


# =====================================================================================
# Dates
# =====================================================================================
_DM_FIELDS = r"^\s*(\d{1,2})[/.\-](\d{1,2})[/.\-](?:\d{4}|\d{2}(?:\D|$))"
_DATE_SHAPE = r"^\s*\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}"
_MIN_DT = datetime(1900, 1, 1)
_MAX_DT = datetime(2200, 1, 1)
_EXCEL_EPOCH_US = -2_209_161_600 * 1_000_000  # 1899-12-30 00:00 in µs since 1970
_DT = pl.Datetime("us")

_ISO_NAIVE = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y/%m/%d",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
)
_ISO_AWARE = (
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%dT%H:%M%z",
    "%Y-%m-%d %H:%M:%S%z",
    "%Y-%m-%d %H:%M:%S %z",
    "%Y-%m-%d %H:%M:%S%.f%z",
)
_TIMES = ("", " %H:%M", " %H:%M:%S", " %I:%M %p", " %I:%M:%S %p")


def _formats(day_first: bool) -> list[tuple[str, bool]]:
    first, second = ("%d", "%m") if day_first else ("%m", "%d")
    dm = [
        (f"{first}{sep}{second}{sep}%Y{t}", False)
        for t in _TIMES
        for sep in ("/", "-", ".")
    ]
    return [(f, False) for f in _ISO_NAIVE] + dm + [(f, True) for f in _ISO_AWARE]


def _dt_expr(fmt: str, aware: bool) -> pl.Expr:
    e = _S.str.to_datetime(fmt, strict=False, time_unit="us")
    if aware:
        e = e.dt.convert_time_zone(LOCAL_TZ).dt.replace_time_zone(None)
    return pl.when((e >= _MIN_DT) & (e < _MAX_DT)).then(e)


def _excel_serial(x: pl.Series) -> pl.Series:
    """A plain number between 20000 and 80000: days since 1899-12-30, fraction = time."""
    f = _S.cast(_F64, strict=False)
    us = (f * 86_400_000).round(0).cast(pl.Int64, strict=False) * 1000 + _EXCEL_EPOCH_US
    return _eval(x, pl.when((f >= 20_000) & (f <= 80_000)).then(us.cast(_DT)))


def _fix_text(x: pl.Series) -> pl.Series:
    """Tidy odd spellings so the formats apply: spaces, 'Z', two-digit years, SA/CH."""
    return _eval(
        x,
        _S.str.strip_chars()
        .str.replace(r"(\d)[Zz]$", "${1}+00:00")
        .str.replace(r"^(\d{1,2}[/.\-]\d{1,2}[/.\-])(\d{2})(\s|T|$)", "${1}20${2}${3}")
        .str.replace(r"\s+SA$", " AM")
        .str.replace(r"\s+CH$", " PM")
        .str.replace(r"\s{2,}", " "),
    )


def _dt_formats(x: pl.Series, fmts: list[tuple[str, bool]]) -> pl.Series:
    """Try every format, most common first (judged on a sample), each on what is left."""
    sample = _sample(x)
    hits = _select(sample, **{f"f{i}": _dt_expr(f, a).is_not_null().sum() for i, (f, a) in enumerate(fmts)})
    counts = hits.row(0)
    order = sorted(range(len(fmts)), key=lambda i: -counts[i])
    c = _Cascade(x, _DT)
    shaped: pl.Series | None = None
    for i in order:
        if not c.pending:
            break
        fmt, aware = fmts[i]
        if counts[i] == 0 and c.pending > 10_000:
            # Formats the sample never used: only try them on date-shaped values, so a
            # column of names or ids does not go through thirty failing formats.
            if shaped is None or len(shaped) != c.pending:
                shaped = _eval(c.cur, _S.str.contains(_DATE_SHAPE))
            c.apply(lambda t, fmt=fmt, aware=aware: _eval(t, _dt_expr(fmt, aware)), where=shaped)
        else:
            c.apply(lambda t, fmt=fmt, aware=aware: _eval(t, _dt_expr(fmt, aware)))
    return c.values()


_OFFSET = r"(\s?)([+-])(\d{2}):?(\d{2})$|([Zz])$"
# Asia/Ho_Chi_Minh has been UTC+7 without daylight saving since 1975-06-13; before that
# the generic (time-zone database) path converts.
_FIXED_UTC7_FROM = datetime(1976, 1, 1)


def _dt_offset_fast(x: pl.Series) -> pl.Series:
    """ISO timestamps with a UTC offset or 'Z', faster than the chrono '%z' formats: the
    offsets are read once per distinct tail, the rest with the fast naive formats."""
    tails = _eval(x, _S.str.tail(6))
    uniq = tails.unique()
    if len(uniq) > 5_000:
        return _nulls(len(x), _DT)
    g = uniq.to_frame("t").select(
        pl.col("t"),
        whole=pl.col("t").str.extract(_OFFSET, 0),
        m=pl.col("t").str.extract_groups(_OFFSET),
    ).unnest("m")
    hh = pl.col("3").cast(pl.Int64, strict=False)
    mm = pl.col("4").cast(pl.Int64, strict=False)
    zulu = pl.col("5").is_not_null()
    sign = pl.when(pl.col("2") == "-").then(-1).otherwise(1)
    g = g.select(
        "t",
        cut=pl.when(zulu | ((hh <= 14) & (mm < 60))).then(pl.col("whole").str.len_bytes().cast(pl.Int64)),
        off=pl.when(zulu).then(0).otherwise(sign * (hh * 60 + mm)),
    ).filter(pl.col("cut").is_not_null())
    if not len(g):
        return _nulls(len(x), _DT)
    if g["cut"].n_unique() == 1 and g["off"].n_unique() == 1:
        # One offset for the whole column (all '+07:00', or all 'Z'): no per-row lookup.
        has = _eval(tails, _S.is_in(g["t"].implode()))
        cut, off = int(g["cut"][0]), int(g["off"][0])
        body = _eval(x, _S.str.head(-cut))
        shift: pl.Series | int = (off - 7 * 60) * 60_000_000
    else:
        idx = _eval(tails, _S.replace_strict(g["t"], pl.int_range(len(g), eager=True), default=None))
        has = idx.is_not_null()
        cuts, offs = g["cut"].gather(idx), g["off"].gather(idx)
        body = pl.DataFrame({"s": x, "cut": cuts}).select(pl.col("s").str.head(-pl.col("cut"))).to_series()
        shift = (offs - 7 * 60) * 60_000_000  # µs to subtract: the offset, less UTC+7
    naive = _on_subset(body, has, lambda t: _dt_formats(t, [(f, False) for f in _ISO_NAIVE]), _DT)
    out = pl.select((naive.cast(pl.Int64) - shift).cast(_DT)).to_series()
    return pl.select(pl.when((out >= _FIXED_UTC7_FROM) & (out < _MAX_DT)).then(out)).to_series()


def _dt_runner(day_first: bool) -> Callable[[_Cascade], None]:
    fmts = _formats(day_first)

    def runner(c: _Cascade) -> None:
        sample = _sample(c.cur)
        offsets_first = _hits(sample, _dt_offset_fast) * 2 >= len(sample)
        if offsets_first:
            c.apply(_dt_offset_fast)
        c.apply(lambda x: _dt_formats(x, fmts))
        if not offsets_first:
            c.apply(_dt_offset_fast)
        c.apply(_excel_serial)
        if c.pending:
            fixed = _fix_text(c.cur)
            changed = (fixed != c.cur).fill_null(False)
            if changed.any():
                c.take(_on_subset(fixed, changed, lambda t: _dt_formats(t, fmts), _DT))
            if c.pending:
                c.apply(lambda x: _excel_serial(_eval(x, _S.str.strip_chars())))

    return runner


def date_order_evidence(s: pl.Series) -> dict:
    """Count day-month values ('dd/mm/yyyy', 'd/m/yy', '-' or '.' separated, with or
    without a time) that are only valid day-first (first field > 12), only valid
    month-first (second field > 12), and ambiguous (both <= 12).
    Returns {'dmy_only': int, 'mdy_only': int, 'ambiguous': int}."""
    s = _as_text(s).drop_nulls()
    if not len(s):
        return {"dmy_only": 0, "mdy_only": 0, "ambiguous": 0}
    # The first characters hold the date, and their distinct values are few: count those.
    vc = _select(s, s=_S.str.slice(0, 12)).to_series().value_counts(name="n")
    df = vc.select(
        pl.col("n"),
        fields=pl.col("s").str.extract_groups(_DM_FIELDS),
    ).unnest("fields")
    a = pl.col("1").cast(pl.Int32, strict=False)
    b = pl.col("2").cast(pl.Int32, strict=False)
    a_day, b_day = a.is_between(1, 31), b.is_between(1, 31)
    a_mon, b_mon = a.is_between(1, 12), b.is_between(1, 12)
    res = df.select(
        dmy_only=pl.col("n").filter(a_day & ~a_mon & b_mon).sum(),
        mdy_only=pl.col("n").filter(b_day & ~b_mon & a_mon).sum(),
        ambiguous=pl.col("n").filter(a_mon & b_mon).sum(),
    ).row(0, named=True)
    return {k: int(v or 0) for k, v in res.items()}


def parse_datetime(s: pl.Series, *, day_first: bool = True) -> tuple[pl.Series, pl.Series]:
    """Text -> (Datetime('us') naive local time, bad mask).

    Reads ISO dates and times ('2024-01-05', '2024-01-05 10:23[:45[.ffffff]]', a 'T'
    separator, and with 'Z' or an offset such as '+07:00' / '+0700', converted to
    Asia/Ho_Chi_Minh local time), 'dd/mm/yyyy', 'dd-mm-yyyy', 'dd.mm.yyyy' (or month-first
    when ``day_first`` is False) with an optional ' HH:MM[:SS]' or 12-hour ' h:MM[:SS] AM'
    time, two-digit years (-> 20yy), and Excel serial numbers (20000-80000, days since
    1899-12-30). Impossible dates ('31/02/2024', month 13) and years outside 1900-2199 are
    bad. Empty -> null, not bad.
    """
    if s.dtype == pl.Date or isinstance(s.dtype, pl.Datetime):
        v = s.cast(_DT) if s.dtype == pl.Date else s
        if isinstance(v.dtype, pl.Datetime) and v.dtype.time_zone is not None:
            v = v.dt.convert_time_zone(LOCAL_TZ).dt.replace_time_zone(None)
        return v.cast(_DT), pl.repeat(False, len(s), eager=True).rename(s.name)
    if s.dtype.is_numeric():
        s = s.cast(pl.String)
    return _run(s, _DT, _dt_runner(day_first))


def parse_date(s: pl.Series, *, day_first: bool = True) -> tuple[pl.Series, pl.Series]:
    """:func:`parse_datetime`, then the date part (Date)."""
    v, bad = parse_datetime(s, day_first=day_first)
    return v.dt.date(), bad


# =====================================================================================
# Phones, statuses, booleans
# =====================================================================================
def _phone_plain(x: pl.Series) -> pl.Series:
    n = _S.str.len_bytes()
    ok = (((n == 10) & _S.str.starts_with("0")) | ((n == 11) & _S.str.starts_with("02"))) & _S.cast(
        pl.Int64, strict=False
    ).is_not_null()
    return _eval(x, pl.when(ok).then(_S))


def _phone_messy(x: pl.Series) -> pl.Series:
    t = _eval(x, _S.str.strip_chars().str.strip_chars("'").str.replace(r"^(\d+)\.0+$", "${1}"))
    sci = _eval(t, _S.str.contains(r"^\d(?:\.\d+)?[eE]\+?\d+$"))
    if sci.any():
        as_int = _eval(t, _S.cast(_F64, strict=False).round(0).cast(pl.Int64, strict=False).cast(pl.String))
        t = pl.select(pl.when(sci).then(as_int).otherwise(t)).to_series()
    e = (
        _S.str.replace_all(r"[\s.\-()\u00a0]", "")
        .str.replace(r"^(?:\+84|0084|84)0?(\d{9,10})$", "0${1}")
        .str.replace(r"^([35789]\d{8})$", "0${1}")
        .str.replace(r"^(2\d{9})$", "0${1}")
    )
    return _eval(t, pl.when(e.str.contains(r"^(?:0\d{9}|02\d{9})$")).then(e))


def parse_phone(s: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Vietnamese phone numbers as text with the leading 0 kept.

    Strips spaces, dots, dashes and parentheses; '+84', '0084' or '84' (11-12 digits in
    all) becomes '0'; a 9-digit number starting 3/5/7/8/9 (Excel dropped the 0) gets it
    back, as does a 10-digit landline starting 2; Excel's '912345678.0' and '9.12345678E+08'
    are read. The result must be 10 digits starting 0, or 11 digits starting 02; otherwise
    bad. Empty -> null, not bad.
    """
    if s.dtype.is_numeric():
        s = s.cast(pl.Int64, strict=False).cast(pl.String)

    def runner(c: _Cascade) -> None:
        c.apply(_phone_plain)
        c.apply(_phone_messy)

    return _run(s, pl.String, runner)


_STATUS_WORDS: dict[str, tuple[str, ...]] = {
    "completed": (
        "completed", "complete", "hoàn thành", "đã hoàn thành", "hoàn tất", "đã hoàn tất",
        "đã giao", "đã giao hàng", "giao hàng thành công", "giao thành công", "thành công",
        "delivered", "paid", "đã thanh toán", "fulfilled", "shipped", "success",
        "successful", "closed", "done",
    ),
    "cancelled": (
        "cancelled", "canceled", "cancel", "đã hủy", "hủy", "đã huỷ", "huỷ", "đã hủy đơn",
        "hủy đơn", "huỷ đơn", "đơn hủy", "đơn huỷ", "voided", "void", "failed", "fail",
        "thất bại", "giao hàng thất bại", "giao thất bại",
    ),
    "refunded": (
        "refunded", "partially_refunded", "partially refunded", "refund", "trả hàng/hoàn tiền",
        "trả hàng", "hoàn tiền", "đã hoàn tiền", "đã trả hàng", "returned", "return",
        "hoàn trả", "đã hoàn trả",
    ),
}


def _status_map() -> dict[str, str]:
    out: dict[str, str] = {}
    for canon, words in _STATUS_WORDS.items():
        for w in words:
            for v in (w, w.replace("_", " "), w.replace(" ", "_"), w.replace("/", " / ")):
                out[normalise_header(v)] = canon
    return out


STATUS_MAP: dict[str, str] = _status_map()


def _map_distinct(s: pl.Series, mapping: dict[str, object], dtype: pl.DataType) -> pl.Series:
    """Map folded text through ``mapping``, working on the column's distinct values."""
    s = _as_text(s)
    uniq = s.drop_nulls().unique()
    folded = uniq.to_frame("s").select(_fold_expr(_S)).to_series()
    mapped = folded.replace_strict(mapping, default=None, return_dtype=dtype)
    keep = mapped.is_not_null()
    if not keep.any():
        return _nulls(len(s), dtype).rename(s.name)
    return _eval(
        s,
        _S.replace_strict(uniq.filter(keep), mapped.filter(keep), default=None, return_dtype=dtype),
    ).rename(s.name)


def map_status(s: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Order status text -> 'completed' | 'cancelled' | 'refunded' via :data:`STATUS_MAP`
    on the folded text (as :func:`normalise_header`). An unknown status is null and bad
    (reported, never guessed); so is an empty or missing one (status is required)."""
    v = _map_distinct(s, STATUS_MAP, pl.String)
    return v, v.is_null().rename(s.name)


_TRUE = ("yes", "y", "true", "t", "1", "1.0", "có", "co", "x", "✓", "✔", "đúng", "on", "checked")
_FALSE = ("no", "n", "false", "f", "0", "0.0", "không", "khong", "ko", "off", "sai", "unchecked")
_BOOL_MAP: dict[str, object] = {**{k: True for k in _TRUE}, **{k: False for k in _FALSE}}
_TICKS = ("x", "✓", "✔")


def parse_bool(s: pl.Series) -> tuple[pl.Series, pl.Series]:
    """yes/no, true/false, 1/0, có/không, x/'' -> Boolean.

    A tick column (every non-empty value is 'x', '✓' or '✔') reads empty cells as False;
    otherwise empty is null. Unknown text is null and bad.
    """
    if s.dtype == pl.Boolean:
        return s, pl.repeat(False, len(s), eager=True).rename(s.name)
    if s.dtype.is_numeric():
        s = s.cast(pl.Int64, strict=False).cast(pl.String)
    s = _as_text(s)
    v = _map_distinct(s, _BOOL_MAP, pl.Boolean)
    blank = _eval(s, _S.str.strip_chars().fill_null("") == "")
    folded = s.drop_nulls().unique().to_frame("s").select(_fold_expr(_S)).to_series()
    folded = folded.filter(folded != "")
    if len(folded) and bool(folded.is_in(_TICKS).all()):
        v = pl.select(pl.when(blank).then(False).otherwise(v)).to_series().rename(s.name)
        return v, pl.repeat(False, len(s), eager=True).rename(s.name)
    return v, (v.is_null() & ~blank).rename(s.name)
