"""data/parse.py: sniffing, decoding, headers, and the vectorised value parsers.

Speed (a check by hand, not an assertion). 2-core machine shared with other work; best
of 5, medians within about 15 % of these; the 1M values are distinct, 10M repeats them
ten times (only date_order_evidence works on distinct values, the date prefixes):

    import time, polars as pl
    from data.parse import parse_amount, parse_datetime
    s = pl.Series([f"{x:,}".replace(",", ".") + " ₫" for x in values])
    t = time.perf_counter(); parse_amount(s); time.perf_counter() - t

                                               1M values    10M values
    parse_amount   '1.234.567 ₫'                  0.08 s        0.64 s
    parse_amount   '1234567'                      0.02 s        0.18 s
    parse_amount   '1.234.567,50'                 0.08 s        0.76 s
    parse_datetime 'dd/mm/yyyy HH:MM'             0.06 s        0.49 s
    parse_datetime 'YYYY-MM-DD HH:MM:SS'          0.07 s        0.58 s
    parse_datetime 'YYYY-MM-DDTHH:MM:SS+07:00'    0.09 s        0.87 s
    date_order_evidence 'dd/mm/yyyy HH:MM'        0.05 s        0.50 s
    decode, 10M Vietnamese CSV rows (810 MB UTF-8)              2.76 s
"""

from __future__ import annotations

import io
import random
import unicodedata
import zipfile
from datetime import date, datetime, timedelta

import polars as pl
import pytest

from data import parse
from data.parse import (
    STATUS_MAP,
    FileProblem,
    date_order_evidence,
    decode,
    map_status,
    normalise_header,
    parse_amount,
    parse_bool,
    parse_date,
    parse_datetime,
    parse_int,
    parse_phone,
    parse_rate,
    sniff,
    sniff_delimiter,
)


def S(values: list) -> pl.Series:
    return pl.Series("col", values, dtype=pl.String)


def run(fn, values: list, **kw) -> tuple[list, list]:
    v, bad = fn(S(values), **kw)
    assert len(v) == len(bad) == len(values)
    assert bad.dtype == pl.Boolean
    return v.to_list(), bad.to_list()


@pytest.fixture(params=["in-memory", "streaming"])
def engine(request, monkeypatch):
    """Run a test both ways: small inputs in memory, and through the streaming engine."""
    if request.param == "streaming":
        monkeypatch.setattr(parse, "_STREAM_MIN", 1)
    return request.param


# -- sniff ---------------------------------------------------------------------------------
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01"


def minimal_xlsx() -> bytes:
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Mã đơn hàng", "Doanh thu"])
    ws.append(["DH1", 1234567])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def zip_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_sniff_accepts_text_and_a_real_xlsx():
    assert sniff(b"order_id,revenue\nA,1\n", "orders.csv") == "text"
    assert sniff("a;b\n1;2\n".encode("utf-16"), "utf16.csv") == "text"  # NULs are normal here
    assert sniff(minimal_xlsx(), "orders.xlsx") == "xlsx"
    assert sniff(minimal_xlsx(), "named-wrongly.csv") == "xlsx"  # content wins over the name


@pytest.mark.parametrize(
    "raw, reason",
    [
        (PNG, "image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image"),
        (b"GIF89a\x01\x00", "image"),
        (b"%PDF-1.7\n%\xe2\xe3", "image"),
        (b"\x1f\x8b\x08\x00\x00\x00", "archive"),
        (b"", "empty"),
        (b"   \r\n\t \n", "empty"),
        (b"\xef\xbb\xbf  \n", "empty"),
        (b"\xff\xfe \x00\n\x00", "empty"),
        (b"a,b\n1,\x002\n", "binary"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64, "legacy_excel"),
    ],
)
def test_sniff_rejects_whole_file_problems(raw, reason):
    with pytest.raises(FileProblem) as err:
        sniff(raw, "orders.csv")
    assert "orders.csv" in str(err.value)
    assert err.value.reason == reason
    assert str(err.value).endswith(".")


def test_sniff_rejects_a_zip_that_is_not_an_xlsx():
    with pytest.raises(FileProblem, match=r"photos\.xlsx.*not an Excel"):
        sniff(zip_of({"a.csv": b"x,y\n1,2\n", "b.txt": b"hi"}), "photos.xlsx")
    # A Word document is a zip with [Content_Types].xml too, but no xl/ part.
    with pytest.raises(FileProblem):
        sniff(zip_of({"[Content_Types].xml": b"<x/>", "word/document.xml": b"<x/>"}), "doc.xlsx")
    with pytest.raises(FileProblem, match="damaged"):
        sniff(b"PK\x03\x04 this is not really a zip", "broken.xlsx")


# -- decode --------------------------------------------------------------------------------
TONES = {"\u0300", "\u0301", "\u0303", "\u0309", "\u0323"}


def cp1258_bytes(text: str) -> bytes:
    """Encode as Windows-1258 does: precomposed where the code page has the letter,
    otherwise the base letter (with its circumflex/breve/horn) plus a combining tone mark."""
    out = []
    for ch in unicodedata.normalize("NFC", text):
        try:
            out.append(ch.encode("cp1258"))
            continue
        except UnicodeEncodeError:
            pass
        d = unicodedata.normalize("NFD", ch)
        base = unicodedata.normalize("NFC", "".join(c for c in d if c not in TONES))
        out.append((base + "".join(c for c in d if c in TONES)).encode("cp1258"))
    return b"".join(out)


@pytest.mark.parametrize(
    "text",
    ["Đơn hàng Hoàn thành", "Khách hàng;Nguyễn Thị Hồng;Đà Nẵng;Quận Hải Châu;Trả hàng/Hoàn tiền\r\n"],
)
def test_decode_windows_1258_exactly(text):
    raw = cp1258_bytes(text)
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    got, label = decode(raw, "legacy.csv")
    assert label == "cp1258"
    assert got == unicodedata.normalize("NFC", text)
    assert unicodedata.is_normalized("NFC", got)


def test_decode_utf8_with_and_without_bom_and_utf16():
    text = "Mã đơn hàng,Doanh thu\r\nDH1,\"1.234.567 ₫\"\n"
    assert decode(text.encode(), "a.csv") == (text, "utf-8")
    assert decode(b"\xef\xbb\xbf" + text.encode(), "a.csv") == (text, "utf-8-sig")
    for codec in ("utf-16", "utf-16-le", "utf-16-be"):
        raw = text.encode(codec)
        if codec != "utf-16":
            raw = ("\ufeff".encode(codec)) + raw
        got, label = decode(raw, "a.csv")
        assert (got, label) == (text, "utf-16")
    assert decode(b"plain ascii\n", "a.csv") == ("plain ascii\n", "utf-8")


def test_decode_returns_nfc_for_decomposed_utf8():
    nfd = unicodedata.normalize("NFD", "Mã đơn hàng")
    got, label = decode(nfd.encode(), "a.csv")
    assert label == "utf-8" and got == "Mã đơn hàng"


def test_decode_refuses_damaged_utf8_and_undecodable_bytes():
    damaged = "Mã đơn hàng\n".encode() + b"\xff\xfe broken\n"
    with pytest.raises(FileProblem, match=r"a\.csv.*line 2"):
        decode(damaged, "a.csv")
    with pytest.raises(FileProblem, match=r"a\.csv"):
        decode(b"abc\x81def", "a.csv")  # 0x81 is undefined in Windows-1258


# -- delimiter -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ('id,name,amount\n1,"Lê, Văn A","1,5"\n2,"B",3\n', ","),
        ('id;name;amount\n1;"a;b;c";12,5\n2;"x";1.234.567\n3;y;4\n', ";"),
        ("id\tname\tamount\n1\t\"a\tb\"\t1\n2\tc\t2\n", "\t"),
        ('id|name|amount\n1|"a|b"|1\n2|c|2\n', "|"),
        # a decimal comma in every row does not beat the real separator
        ("Doanh thu;Chiết khấu\n12,5;1,5\n7,25;0,5\n", ";"),
        # a quoted field running over two lines
        ('a;b;c\n1;"line one\nline two";3\n4;5;6\n', ";"),
        ("only_one_column\nx\ny\n", ","),
        ("", ","),
        ("sep=;\na;b\n1;2\n", ";"),
        # ties prefer ',' then ';'
        ("a,b;c\n1,2;3\n", ","),
    ],
)
def test_sniff_delimiter(text, expected):
    assert sniff_delimiter(text) == expected


def test_sniff_delimiter_uses_the_first_50_records():
    head = "a;b;c\n" + "1;2;3\n" * 60
    tail = "x,y,z,w\n" * 500
    assert sniff_delimiter(head + tail) == ";"


# -- headers -------------------------------------------------------------------------------
def test_normalise_header():
    assert normalise_header("Mã  Đơn hàng ") == "mã đơn hàng"
    decomposed = unicodedata.normalize("NFD", "Mã Đơn hàng")
    assert decomposed != "Mã Đơn hàng"
    assert normalise_header(decomposed) == "mã đơn hàng"
    assert normalise_header("Ma\u0303 \u0111o\u031b\u0301n ha\u0300ng") == "mã đớn hàng"
    assert normalise_header('\ufeff"Order\u200b ID"  ') == "order id"
    assert normalise_header("  Doanh\u00a0\tthu  ") == "doanh thu"
    assert normalise_header("'Email'") == "email"


# -- amounts -------------------------------------------------------------------------------
AMOUNTS = [
    ("1234567", 1234567.0),
    ("1.234.567", 1234567.0),
    ("1.234.567 ₫", 1234567.0),
    ("1.234.567đ", 1234567.0),
    ("1.234.567 VNĐ", 1234567.0),
    ("1,234,567.50", 1234567.5),
    ("1.234.567,50", 1234567.5),
    ("12,5", 12.5),
    ("-1.000", -1000.0),
    ("(1.000)", -1000.0),
    ("(1.000 ₫)", -1000.0),
    (" 1 234 567 ", 1234567.0),
    ("1\u00a0234\u00a0567 ₫", 1234567.0),
    ("VND 1,000", 1000.0),
    ("$12.50", 12.5),
    ("-$12.50", -12.5),
    ("1.234", 1234.0),
    ("1.5", 1.5),
    ("12.345.678", 12345678.0),
    ("1,234", 1234.0),
    ("0.500", 0.5),
    ("0,5", 0.5),
    ("1234.5678", 1234.5678),
    ("1e3", 1000.0),
    ("+42", 42.0),
]


def test_parse_amount_accepted_forms(engine):
    values, bad = run(parse_amount, [t for t, _ in AMOUNTS])
    assert values == pytest.approx([v for _, v in AMOUNTS])
    assert not any(bad)


def test_parse_amount_bad_and_empty():
    texts = ["abc", "1.2.3", "12,5%", "(-1.000)", "1 23", "(1.000", "nan", "inf", "₫", "", "   ", None]
    values, bad = run(parse_amount, texts)
    assert values == [None] * len(texts)
    assert bad == [True] * 9 + [False, False, False]


def _fmt_amount(x: float, style: int) -> str:
    """Write a number the way different exporters do (x has at most 2 decimals)."""
    neg = x < 0
    a = abs(x)
    whole = int(a)
    cents = round((a - whole) * 100)
    g_dot = f"{whole:,}".replace(",", ".")
    g_com = f"{whole:,}"
    g_sp = f"{whole:,}".replace(",", " ")
    body = {
        0: f"{a:.2f}",
        1: g_dot + (f",{cents:02d}" if cents else ""),
        2: g_com + f".{cents:02d}",
        3: g_dot + " ₫",
        4: g_dot + "đ",
        5: "VND " + g_com,
        6: g_sp,
        7: str(whole),
    }[style]
    if neg:
        return f"({body})" if style in (1, 3) else "-" + body
    return body


def _expected_amount(x: float, style: int) -> float:
    if style in (3, 4, 5, 6, 7):  # these styles write whole numbers only
        return float(int(abs(x))) * (-1 if x < 0 else 1)
    return x


@pytest.mark.parametrize("styles", [[3], [1], [7], list(range(8))])
def test_parse_amount_mixed_columns_match_the_rules(engine, styles):
    rng = random.Random(len(styles))
    texts, expected = [], []
    for _ in range(1500):
        style = rng.choice(styles)
        x = round(rng.choice([rng.uniform(0, 999), rng.uniform(1000, 5e7)]), 2)
        if style in (1, 2, 3, 7) and rng.random() < 0.3:
            x = -x
        texts.append(_fmt_amount(x, style))
        expected.append(_expected_amount(x, style))
    texts += ["", None, "bad"]
    values, bad = run(parse_amount, texts)
    assert values[:-3] == pytest.approx(expected)
    assert values[-3:] == [None, None, None]
    assert bad == [False] * 1500 + [False, False, True]


def test_parse_amount_keeps_name_and_passes_numbers_through():
    v, bad = parse_amount(pl.Series("revenue", ["1.000", None]))
    assert v.name == "revenue" and v.dtype == pl.Float64 and v.to_list() == [1000.0, None]
    v, bad = parse_amount(pl.Series("revenue", [1, 2]))
    assert v.to_list() == [1.0, 2.0] and bad.to_list() == [False, False]


def test_parse_rate():
    values, bad = run(parse_rate, ["12,5%", "30%", "0.3", " 15 % ", "%", "", None, "x%"])
    assert values == pytest.approx([0.125, 0.3, 0.3, 0.15, None, None, None, None])
    assert bad == [False, False, False, False, True, False, False, True]


def test_parse_int(engine):
    values, bad = run(parse_int, ["10", " 7 ", "1.000", "7.5", "abc", "", None, "-3", "10.0", "1,5"])
    assert values == [10, 7, 1000, None, None, None, None, -3, 10, None]
    assert bad == [False, False, False, True, True, False, False, False, False, True]
    v, _ = parse_int(S(["1"]))
    assert v.dtype == pl.Int64


# -- dates ---------------------------------------------------------------------------------
def dt(s: str) -> datetime:
    return datetime.fromisoformat(s)


DATES = [
    ("2024-01-05", dt("2024-01-05")),
    ("2024-01-05 10:23", dt("2024-01-05 10:23")),
    ("2024-01-05 10:23:45", dt("2024-01-05 10:23:45")),
    ("2024-01-05T10:23:45", dt("2024-01-05 10:23:45")),
    ("2024-01-05T10:23:45.123456", dt("2024-01-05 10:23:45.123456")),
    ("2024-01-05T03:23:45Z", dt("2024-01-05 10:23:45")),
    ("2024-01-05T10:23:45+07:00", dt("2024-01-05 10:23:45")),
    ("2024-01-05T10:23:45.5-05:00", dt("2024-01-05 22:23:45.5")),
    ("2024-01-05 10:23:45 +0700", dt("2024-01-05 10:23:45")),
    ("13/01/2024", dt("2024-01-13")),
    ("05/01/2024", dt("2024-01-05")),
    ("5/1/2024 9:05", dt("2024-01-05 09:05")),
    ("05-01-2024 10:23:45", dt("2024-01-05 10:23:45")),
    ("05.01.2024", dt("2024-01-05")),
    ("05/01/24", dt("2024-01-05")),
    ("5/1/24 10:00", dt("2024-01-05 10:00")),
    ("29/02/2024", dt("2024-02-29")),
    ("45292", dt("2024-01-01")),
    ("45292.5", dt("2024-01-01 12:00")),
    ("05/01/2024 3:04 PM", dt("2024-01-05 15:04")),
    (" 2024-01-05 ", dt("2024-01-05")),
]


def test_parse_datetime_accepted_forms(engine):
    values, bad = run(parse_datetime, [t for t, _ in DATES])
    assert values == [d for _, d in DATES]
    assert not any(bad)


def test_parse_datetime_bad_and_empty():
    texts = ["31/02/2024", "32/01/2024", "01/13/2024", "2024-13-01", "2024-02-30", "hello", "12345", "", " ", None]
    values, bad = run(parse_datetime, texts)
    assert values == [None] * len(texts)
    assert bad == [True] * 7 + [False] * 3


def test_parse_datetime_month_first():
    values, bad = run(parse_datetime, ["01/13/2024", "13/01/2024", "2024-01-13", "1/2/24"], day_first=False)
    assert values == [dt("2024-01-13"), None, dt("2024-01-13"), dt("2024-01-02")]
    assert bad == [False, True, False, False]


def test_parse_datetime_mixed_iso_and_day_first_in_one_series(engine):
    texts = ["2024-03-01 08:00:00", "02/03/2024 09:30", "2024-03-03", "04/03/2024", "45356"] * 200
    values, bad = run(parse_datetime, texts)
    assert values[:5] == [
        dt("2024-03-01 08:00"), dt("2024-03-02 09:30"), dt("2024-03-03"), dt("2024-03-04"), dt("2024-03-05")
    ]
    assert values[5:10] == values[:5]
    assert not any(bad)


def test_offsets_convert_to_ho_chi_minh_local_time(engine):
    texts = [
        "2024-06-30T23:30:00Z", "2024-06-30T18:30:00-05:00", "2024-07-01T06:30:00+07:00", "2024-07-01T08:30:00+09:00"
    ]
    values, _ = run(parse_datetime, texts * 300)  # large enough for the fast offset path
    assert set(values) == {dt("2024-07-01 06:30")}
    v, _ = parse_datetime(S(texts))
    assert v.dtype == pl.Datetime("us") and v.dtype.time_zone is None
    # Before 1975 Saigon was not on UTC+7: the time-zone database decides.
    values, _ = run(parse_datetime, ["1960-01-01T00:00:00Z"] * 500)
    assert values[0] == dt("1960-01-01 08:00")


def test_excel_serials():
    values, bad = run(parse_datetime, ["45292", "45292.75", "45292.0416666667", "19999", "80001"])
    assert values == [dt("2024-01-01"), dt("2024-01-01 18:00"), dt("2024-01-01 01:00"), None, None]
    assert bad == [False, False, False, True, True]


def _random_dates(n: int, rng: random.Random) -> tuple[list[str], list[datetime]]:
    texts, expected = [], []
    for _ in range(n):
        local = datetime(2020, 1, 1) + timedelta(seconds=rng.randrange(6 * 365 * 86400))
        style = rng.randrange(9)
        if style == 0:
            texts.append(local.strftime("%Y-%m-%d %H:%M:%S"))
            expected.append(local)
        elif style == 1:
            texts.append(local.strftime("%Y-%m-%dT%H:%M:%S"))
            expected.append(local)
        elif style == 2:
            texts.append(local.strftime("%Y-%m-%d"))
            expected.append(local.replace(hour=0, minute=0, second=0))
        elif style == 3:
            texts.append(local.strftime("%d/%m/%Y %H:%M"))
            expected.append(local.replace(second=0))
        elif style == 4:
            texts.append(local.strftime("%d/%m/%Y"))
            expected.append(local.replace(hour=0, minute=0, second=0))
        elif style == 5:
            texts.append(f"{local.day}-{local.month}-{local:%y} {local:%H:%M:%S}")
            expected.append(local)
        elif style == 6:
            serial = (local - datetime(1899, 12, 30)) / timedelta(days=1)
            texts.append(f"{serial:.10f}")
            expected.append(local)
        elif style == 7:
            off = rng.choice([-300, 0, 330, 420, 540])
            shown = local - timedelta(minutes=420) + timedelta(minutes=off)
            sign = "+" if off >= 0 else "-"
            texts.append(shown.strftime("%Y-%m-%dT%H:%M:%S") + f"{sign}{abs(off) // 60:02d}:{abs(off) % 60:02d}")
            expected.append(local)
        else:
            texts.append((local - timedelta(hours=7)).strftime("%Y-%m-%dT%H:%M:%SZ"))
            expected.append(local)
    return texts, expected


def test_parse_datetime_random_mixture_matches_python(engine):
    texts, expected = _random_dates(2000, random.Random(7))
    values, bad = run(parse_datetime, texts)
    assert values == expected
    assert not any(bad)


def test_parse_date():
    v, bad = parse_date(S(["05/01/2024 10:23", "2024-01-06", "45292", "31/02/2024", ""]))
    assert v.dtype == pl.Date
    assert v.to_list() == [date(2024, 1, 5), date(2024, 1, 6), date(2024, 1, 1), None, None]
    assert bad.to_list() == [False, False, False, True, False]


def test_date_order_evidence():
    s = S(["13/01/2024", "25-12-2023 10:00", "01/13/2024", "05/01/2024", "5.1.24", "2024-01-05", None, "", "x"])
    assert date_order_evidence(s) == {"dmy_only": 2, "mdy_only": 1, "ambiguous": 2}
    assert date_order_evidence(S([])) == {"dmy_only": 0, "mdy_only": 0, "ambiguous": 0}


# -- phones --------------------------------------------------------------------------------
PHONES = [
    ("912345678", "0912345678"),
    ("+84 912 345 678", "0912345678"),
    ("+84912345678", "0912345678"),
    ("84912345678", "0912345678"),
    ("0084 912 345 678", "0912345678"),
    ("+84 (0) 912-345-678", "0912345678"),
    ("0912.345.678", "0912345678"),
    ("0912-345-678", "0912345678"),
    ("(0912) 345 678", "0912345678"),
    ("0912345678", "0912345678"),
    ("912345678.0", "0912345678"),
    ("9.12345678E+08", "0912345678"),
    ("'0912345678", "0912345678"),
    ("0243 812 3456", "02438123456"),
    ("+84 24 3812 3456", "02438123456"),
    ("351234567", "0351234567"),
]


def test_parse_phone(engine):
    values, bad = run(parse_phone, [t for t, _ in PHONES])
    assert values == [p for _, p in PHONES]
    assert not any(bad)
    values, bad = run(parse_phone, ["12345", "112345678", "09123456789", "0912 / 0987", "abc", "", None])
    assert values == [None] * 7
    assert bad == [True] * 5 + [False, False]


# -- statuses and booleans -----------------------------------------------------------------
def test_status_map_covers_the_required_words():
    required = {
        "completed": "completed, complete, hoàn thành, đã hoàn thành, đã giao, giao hàng thành công, "
        "thành công, delivered, paid, fulfilled, shipped, success, closed",
        "cancelled": "cancelled, canceled, đã hủy, hủy, đã huỷ, huỷ, voided, void, failed, thất bại, "
        "giao hàng thất bại",
        "refunded": "refunded, partially_refunded, trả hàng/hoàn tiền, trả hàng, hoàn tiền, đã hoàn tiền, returned",
    }
    for canon, words in required.items():
        for w in words.split(", "):
            assert STATUS_MAP[normalise_header(w)] == canon, w
    assert set(STATUS_MAP.values()) == {"completed", "cancelled", "refunded"}


def test_map_status(engine):
    texts = [
        "Hoàn thành", "ĐÃ HỦY", "Đã huỷ", "completed", " Delivered ", "partially_refunded",
        "Trả hàng/Hoàn tiền", "Trả hàng / Hoàn tiền", unicodedata.normalize("NFD", "Đã giao"),
        "Giao hàng  thất bại", "PAID", "Đang giao", "", None,
    ]
    values, bad = run(map_status, texts)
    assert values == [
        "completed", "cancelled", "cancelled", "completed", "completed", "refunded",
        "refunded", "refunded", "completed", "cancelled", "completed", None, None, None,
    ]
    assert bad == [False] * 11 + [True, True, True]


def test_parse_bool():
    values, bad = run(parse_bool, ["yes", "No", "TRUE", "false", "1", "0", "có", "Không", "", None, "maybe"])
    assert values == [True, False, True, False, True, False, True, False, None, None, None]
    assert bad == [False] * 10 + [True]
    values, bad = run(parse_bool, ["x", "", "X", None])  # a tick column: blank means no
    assert values == [True, False, True, False]
    assert not any(bad)


@pytest.mark.parametrize(
    "fn, pieces, filler",
    [
        (
            parse_amount,
            ["1.234", "12,5", "1.234.567", "1,234.5", "(1.000)", "-", "₫", " ", "0", ",", ".", "VND ", "0.500"],
            "1.234.567 ₫",
        ),
        (
            parse_datetime,
            ["2024-01-05", "05/01/2024", " 10:23", "T10:23:45", "+07:00", "Z", "45292", "24", "/", ".5", " PM"],
            "2024-01-05T10:23:45+07:00",
        ),
    ],
)
def test_a_value_reads_the_same_alone_or_in_any_column(fn, pieces, filler):
    """The stages run in the order a column's sample favours; that order must never change
    how a value is read."""
    rng = random.Random(11)
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 3))) for _ in range(30)]
    in_column = fn(S(texts + [filler] * 600))
    for i, text in enumerate(texts):
        alone = fn(S([text]))
        assert (alone[0][0], alone[1][0]) == (in_column[0][i], in_column[1][i]), text


def test_every_parser_keeps_length_on_all_null_and_all_empty_input():
    for fn in (parse_amount, parse_rate, parse_int, parse_datetime, parse_date, parse_phone, parse_bool):
        for values in ([None, None], ["", ""], []):
            v, bad = fn(S(values))
            assert len(v) == len(bad) == len(values)
            assert not bad.any()


def test_counts_agree_with_their_noun():
    assert parse.count_of(1, "row") == "1 row"
    assert parse.count_of(0, "row") == "0 rows"
    assert parse.count_of(12000, "row") == "12,000 rows"
    assert parse.count_of(2, "entry", "entries") == "2 entries"
