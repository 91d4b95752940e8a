"""Import presets: each known export is recognised by its real headers, whatever their
order, case or Unicode form, and prepare() turns it into the rows the importer expects
(one order per order id, totals counted once, statuses and customers read the way the
preset's note says). Frames are built the way the importer builds them: every cell as
stripped text (empty = null), headers normalised, ``_line`` = the file's line number."""

from __future__ import annotations

import csv
import random
import unicodedata
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from data import parse, presets
from data.kinds import CHANNEL_ALIASES, KINDS
from data.presets import PRESETS, detect, mapping_for

FIXTURES = Path(__file__).parent / "fixtures" / "presets"

FIXTURE_OF = {
    "shopify_orders": "shopify_orders.csv",
    "shopify_customers": "shopify_customers.csv",
    "woocommerce_orders": "woocommerce_orders.csv",
    "woocommerce_orders_aoe": "woocommerce_orders_aoe.csv",
    "woocommerce_orders_csv": "woocommerce_orders_csv.csv",
    "shopee_orders": "shopee_orders.csv",
    "tiktok_shop_orders": "tiktok_shop_orders.csv",
    "kiotviet_orders": "kiotviet_orders.csv",
    "google_forms_survey": "google_forms_en.csv",
    "google_forms_survey_vi": "google_forms_vi.csv",
    "typeform_survey": "typeform.csv",
    "surveymonkey_survey": "surveymonkey.csv",
    "qualtrics_survey": "qualtrics.csv",
}


# ---------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------
def read_fixture(file_name: str, header_rows: int = 1) -> tuple[list[str], list[list[str]]]:
    """(the header row as written, the data records), skipping the other header rows."""
    with open(FIXTURES / file_name, encoding="utf-8-sig", newline="") as fh:
        records = list(csv.reader(fh))
    return records[0], records[header_rows:]


def frame_of(headers: list[str], records: list[list[str]], header_rows: int = 1) -> pl.DataFrame:
    """The frame prepare() receives: normalised headers, stripped text, empty = null,
    ``_line`` from header_rows + 1 (the fixtures have no quoted newlines)."""
    names = [parse.normalise_header(h) for h in headers]
    assert len(set(names)) == len(names), "duplicate headers after normalisation"
    data = {
        n: pl.Series(n, [(r[i].strip() or None) if i < len(r) else None for r in records], dtype=pl.Utf8)
        for i, n in enumerate(names)
    }
    first = header_rows + 1
    return pl.DataFrame(data).with_columns(
        _line=pl.int_range(first, first + len(records), dtype=pl.Int64, eager=True))


def fixture_frame(preset_name: str) -> pl.DataFrame:
    p = PRESETS[preset_name]
    headers, records = read_fixture(FIXTURE_OF[preset_name], p.header_rows)
    return frame_of(headers, records, p.header_rows)


def canonical(preset_name: str, frame: pl.DataFrame | None = None) -> pl.DataFrame:
    """prepare(), then every mapped column read the way the importer reads its field's
    type (unknown statuses become null; any other unreadable value fails the test)."""
    p = PRESETS[preset_name]
    out = p.prepare(fixture_frame(preset_name) if frame is None else frame)
    mapping = mapping_for(p, out.columns)
    cols: dict[str, pl.Series] = {"_line": out["_line"]}
    for f in KINDS[p.kind].fields:
        c = mapping.get(f.name)
        if c is None:
            continue
        text = out[c]
        bad = None
        if f.type in ("id", "text"):
            value = text.str.strip_chars()
        elif f.type == "amount":
            value, bad = parse.parse_amount(text)
        elif f.type == "int":
            value, bad = parse.parse_int(text)
        elif f.type == "datetime":
            ev = parse.date_order_evidence(text)
            value, bad = parse.parse_datetime(text, day_first=not ev["mdy_only"])
        elif f.type == "phone":
            value, bad = parse.parse_phone(text)
        elif f.type == "email":
            value = text.str.strip_chars().str.to_lowercase()
        elif f.type == "status":
            value, _ = parse.map_status(text)
        elif f.type == "channel":
            folded = text.str.strip_chars().str.to_lowercase()
            value = folded.replace_strict(CHANNEL_ALIASES, default=folded, return_dtype=pl.Utf8)
        else:  # pragma: no cover
            raise AssertionError(f.type)
        if bad is not None:
            assert not bad.any(), f"{preset_name}: {f.name} has unreadable values {text.filter(bad).to_list()}"
        cols[f.name] = value.alias(f.name)
    return pl.DataFrame(cols)


def rows(frame: pl.DataFrame, *fields: str) -> list[tuple]:
    return frame.select(fields).rows()


def dt(s: str) -> datetime:
    return datetime.fromisoformat(s)


# ---------------------------------------------------------------------------------
# the presets themselves
# ---------------------------------------------------------------------------------
def test_every_preset_has_a_fixture():
    assert set(FIXTURE_OF) == set(PRESETS)
    for name in FIXTURE_OF.values():
        assert (FIXTURES / name).stat().st_size < 5_000


@pytest.mark.parametrize("name", PRESETS)
def test_preset_is_well_formed(name):
    p = PRESETS[name]
    assert p.name == name
    kind = KINDS[p.kind]
    fields = {f.name for f in kind.fields}
    assert set(p.mapping) <= fields
    assert [f.name for f in kind.fields if f.required and f.name not in p.mapping] == []
    if p.kind == "survey_responses":
        assert {"nps", "csat", "ces"} & set(p.mapping)
    assert p.signature and all(parse.normalise_header(s) == s for s in p.signature)
    assert all(c.startswith("__") or parse.normalise_header(c) == c for c in p.mapping.values())
    assert p.header_rows >= 1 and p.prepare is not None
    assert p.label and p.note.endswith(".")


@pytest.mark.parametrize("name", PRESETS)
def test_prepare_keeps_the_frame_convention(name):
    p = PRESETS[name]
    frame = fixture_frame(name)
    out = p.prepare(frame)
    assert out.schema["_line"] == pl.Int64
    assert all(t == pl.Utf8 for c, t in out.schema.items() if c != "_line")
    assert all(c == "_line" or c.startswith("__") or parse.normalise_header(c) == c for c in out.columns)
    assert set(out["_line"].to_list()) <= set(frame["_line"].to_list())
    # every synthetic column the mapping names exists (question columns may not)
    synthetic = {c for c in p.mapping.values() if c.startswith("__")} - {"__nps"}
    assert synthetic <= set(out.columns)
    # every mapped column exists for our own fixture
    assert mapping_for(p, out.columns) == p.mapping
    # an empty file prepares to an empty frame
    empty = p.prepare(frame.head(0))
    assert empty.height == 0 and "_line" in empty.columns


# ---------------------------------------------------------------------------------
# detect
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PRESETS)
def test_detect_recognises_the_export(name):
    p = PRESETS[name]
    headers, _ = read_fixture(FIXTURE_OF[name], p.header_rows)
    assert detect(headers) is p
    assert detect(headers, kind=p.kind) is p
    shuffled = headers[:]
    random.Random(7).shuffle(shuffled)
    assert detect(shuffled, kind=p.kind) is p
    assert detect([f"  {h.upper()} " for h in reversed(headers)]) is p
    assert detect([unicodedata.normalize("NFD", h) for h in headers]) is p


@pytest.mark.parametrize("name", PRESETS)
def test_detect_is_restricted_to_the_kind(name):
    p = PRESETS[name]
    headers, _ = read_fixture(FIXTURE_OF[name], p.header_rows)
    for other in KINDS:
        if other != p.kind:
            assert detect(headers, kind=other) is None


@pytest.mark.parametrize("name", PRESETS)
def test_no_other_preset_matches_the_export(name):
    headers, _ = read_fixture(FIXTURE_OF[name], PRESETS[name].header_rows)
    for other in PRESETS.values():
        if other.name != name:
            assert len(presets.resolve_headers(other.signature, headers)) < len(other.signature), other.name


def test_detect_without_a_match():
    assert detect([]) is None
    assert detect(["order_id", "customer_id", "ordered_at", "revenue", "status"]) is None
    # a shop's own files with common headers are not taken for a platform's export
    assert detect(["Order ID", "Order Date", "Order Status", "Order Total", "Customer ID", "Channel"]) is None
    assert detect(["order_id", "customer_id", "order_date", "order_total", "status", "channel"]) is None
    # a partial signature is not enough
    assert detect(["Name", "Email", "Financial Status", "Created at", "Total"]) is None


def test_detect_prefers_the_longest_signature():
    headers = ["Timestamp", "Dấu thời gian"]  # both Google Forms presets (one header each)
    assert detect(headers) is PRESETS["google_forms_survey"]  # tie: the first defined
    shopify_and_more = read_fixture("shopify_orders.csv")[0] + ["First Name", "Last Name", "Total Spent",
                                                                 "Total Orders"]
    assert detect(shopify_and_more) is PRESETS["shopify_orders"]  # 6 headers beat 5
    assert detect(shopify_and_more, kind="customers") is PRESETS["shopify_customers"]


def test_shopee_headers_in_decomposed_unicode_and_any_order():
    headers, records = read_fixture("shopee_orders.csv")
    # the fixture itself writes one header ("Giá ưu đãi") decomposed, as the real export does
    assert any(h != unicodedata.normalize("NFC", h) for h in headers)
    nfd = [unicodedata.normalize("NFD", h) for h in headers]
    assert nfd[0] != headers[0]
    order = list(range(len(headers)))
    random.Random(3).shuffle(order)
    moved = [nfd[i] for i in order]
    assert detect(moved) is PRESETS["shopee_orders"]
    frame = frame_of(moved, [[r[i] for i in order] for r in records])
    assert canonical("shopee_orders", frame).equals(canonical("shopee_orders"))


def test_tone_mark_variants_of_vietnamese_headers():
    # 'Mã hoá đơn' (tone on the a) is the same header as 'Mã hóa đơn' (tone on the o)
    headers, records = read_fixture("kiotviet_orders.csv")
    old_style = ["Mã hoá đơn" if h == "Mã hóa đơn" else h for h in headers]
    assert old_style != headers
    assert detect(old_style) is PRESETS["kiotviet_orders"]
    assert presets.fold_tones("mã hoá đơn") == presets.fold_tones("mã hóa đơn") == "ma hoa đơn"
    frame = frame_of(old_style, records)
    assert canonical("kiotviet_orders", frame).equals(canonical("kiotviet_orders"))
    # but two headers that fold alike are ambiguous, and nothing is guessed
    assert presets.resolve_headers(["mã hóa đơn"], ["Mã hoá đơn", "Mà hoa đơn"]) == {}


def test_mapping_for_skips_columns_the_file_does_not_have():
    p = PRESETS["google_forms_survey"]
    frame = frame_of(["Timestamp", "On a scale of 0-10, would you recommend us?"], [["3/5/2024 14:30:00", "9"]])
    out = p.prepare(frame)
    assert mapping_for(p, out.columns) == {"responded_at": "timestamp"}  # no e-mail collected, no customer


# ---------------------------------------------------------------------------------
# orders
# ---------------------------------------------------------------------------------
ORDER_FIELDS = ("_line", "order_id", "customer_id", "ordered_at", "revenue", "discount", "status", "channel")


def test_shopify_orders_one_order_per_name_total_counted_once():
    raw = fixture_frame("shopify_orders")
    assert raw.height == 8  # #1001 has three line items
    got = canonical("shopify_orders")
    assert rows(got, *ORDER_FIELDS) == [
        (2, "1001", "an.nguyen@example.com", dt("2024-03-05 14:30"), 1_180_000.0, 50_000.0, "completed", "website"),
        (5, "1002", "binh.tran@example.com", dt("2024-03-06 09:15"), 0.0, 0.0, "refunded", "website"),
        (6, "1003", "chi.le@example.com", dt("2024-03-07 20:05"), 600_000.0, 0.0, "completed", "website"),
        (7, "1004", "dung.pham@example.com", dt("2024-03-08 11:00"), 250_000.0, 0.0, None, "website"),
        (8, "1005", "em.vo@example.com", dt("2024-03-09 16:45"), 300_000.0, 0.0, "cancelled", "website"),
        (9, "1006", "an.nguyen@example.com", dt("2024-03-10 10:00"), 200_000.0, 0.0, "completed", "store"),
    ]
    # the unknown status is passed on as written, for the importer to report
    out = PRESETS["shopify_orders"].prepare(raw)
    assert out.filter(pl.col("__order_id") == "1004")["__status"].to_list() == ["pending"]
    # the line items themselves are still there for --map (first item of the order)
    assert out["lineitem name"].to_list()[0] == "Trà sen"


def test_shopify_orders_repeated_order_fields_and_odd_rows():
    # Exports that repeat the order's fields on every row give the same order once; a
    # row without a Name stays a row of its own (the importer reports it); a refund
    # that is not an amount is passed on next to the total.
    cols = ["Name", "Email", "Financial Status", "Created at", "Total", "Lineitem name", "Refunded Amount"]
    frame = frame_of(cols, [
        ["#9", "a@x.vn", "paid", "2024-03-05 10:00:00 +0700", "300.00", "A", "0.00"],
        ["#9", "a@x.vn", "paid", "2024-03-05 10:00:00 +0700", "300.00", "B", "0.00"],
        ["", "b@x.vn", "paid", "2024-03-05 11:00:00 +0700", "50.00", "C", ""],
        ["", "c@x.vn", "paid", "2024-03-05 12:00:00 +0700", "60.00", "D", ""],
        ["#10", "d@x.vn", "partially_refunded", "2024-03-05 13:00:00 +0700", "100.00", "E", "abc"],
    ])
    out = PRESETS["shopify_orders"].prepare(frame)
    assert out.select("_line", "__order_id", "__revenue").rows() == [
        (2, "9", "300.00"), (4, None, "50.00"), (5, None, "60.00"), (6, "10", "100.00 - abc")]


def test_shopify_customers():
    got = canonical("shopify_customers")
    assert rows(got, "_line", "customer_id", "name", "email", "phone", "region") == [
        (2, "an.nguyen@example.com", "An Nguyễn", "an.nguyen@example.com", "0912345678", "Hà Nội"),
        (3, "7210448301123", "Bình Trần", None, "0903123456", "Hồ Chí Minh"),
        (4, "chi.le@example.com", "Lê Chi", "chi.le@example.com", "0987654321", "DN"),
    ]


def test_shopify_customers_older_layout():
    legacy = ["Customer ID", "First Name", "Last Name", "Email", "Accepts Email Marketing", "Company", "Address1",
              "Address2", "City", "Province", "Province Code", "Country", "Country Code", "Zip", "Phone",
              "Accepts SMS Marketing", "Total Spent", "Total Orders", "Tags", "Note", "Tax Exempt"]
    assert detect(legacy, kind="customers") is PRESETS["shopify_customers"]
    frame = frame_of(legacy, [["'42", "Mai", "Trần", "", "no", "", "", "", "Quận 1", "Hồ Chí Minh", "SG", "Vietnam",
                               "VN", "", "'+84903123456", "no", "0.00", "0", "", "", "no"]])
    got = canonical("shopify_customers", frame)
    assert rows(got, "customer_id", "name", "phone", "region") == [("42", "Mai Trần", "0903123456", "Hồ Chí Minh")]


def test_woocommerce_wp_all_export():
    got = canonical("woocommerce_orders")
    assert rows(got, *ORDER_FIELDS) == [
        (2, "501", "an.nguyen@example.com", dt("2024-03-05 14:30"), 650_000.0, 50_000.0, "completed", "website"),
        (4, "502", "guest@example.com", dt("2024-03-06 08:00"), 300_000.0, 0.0, "completed", "website"),
        (5, "503", "hold@example.com", dt("2024-03-07 10:20"), 150_000.0, 0.0, None, "website"),
        (6, "504", "binh.tran@example.com", dt("2024-03-08 19:00"), 200_000.0, 0.0, "refunded", "website"),
        (7, "505", None, dt("2024-03-09 21:10"), 180_000.0, 0.0, "cancelled", "website"),
    ]


def test_woocommerce_customer_falls_back_to_the_user_id():
    frame = frame_of(["Order ID", "Order Date", "Order Status", "Order Total", "Customer User ID", "Billing Email"], [
        ["1", "2024-03-05 10:00:00", "wc-completed", "10", "12", ""],
        ["2", "2024-03-05 10:00:00", "wc-completed", "10", "0", ""],
        ["3", "2024-03-05 10:00:00", "Đang xử lý", "10", "0", "X@Y.VN"],
    ])
    got = canonical("woocommerce_orders", frame)
    assert rows(got, "order_id", "customer_id", "status") == [
        ("1", "12", "completed"), ("2", None, "completed"), ("3", "x@y.vn", "completed")]


def test_woocommerce_advanced_order_export():
    got = canonical("woocommerce_orders_aoe")
    assert rows(got, *ORDER_FIELDS) == [
        (2, "1201", "chi.le@example.com", dt("2024-03-05 14:30"), 700_000.0, 100_000.0, "completed", "website"),
        (4, "1202", "an.nguyen@example.com", dt("2024-03-06 09:00"), 400_000.0, 0.0, "completed", "website"),
        (5, "1203", "dung.pham@example.com", dt("2024-03-07 18:45"), 250_000.0, 0.0, None, "website"),
    ]


def test_woocommerce_customer_order_csv_export():
    got = canonical("woocommerce_orders_csv")
    assert rows(got, *ORDER_FIELDS) == [
        (2, "3001", "em.vo@example.com", dt("2024-03-05 14:30"), 400_000.0, 20_000.0, "completed", "website"),
        (3, "3002", "guest.two@example.com", dt("2024-03-06 10:00"), 250_000.0, 0.0, "completed", "website"),
        (4, "3003", "guest3@example.com", dt("2024-03-07 11:00"), 150_000.0, 0.0, "cancelled", "website"),
    ]


def test_shopee_one_order_per_order_id_total_counted_once():
    assert fixture_frame("shopee_orders").height == 6
    got = canonical("shopee_orders")
    assert rows(got, *ORDER_FIELDS) == [
        (2, "240305ABCD1", "mai.tran88", dt("2024-03-05 14:30"), 450_000.0, 20_000.0, "completed", "shopee"),
        (5, "240306EFGH2", "hung_le", dt("2024-03-06 09:00"), 150_000.0, 0.0, "cancelled", "shopee"),
        (6, "240307IJKL3", "mai.tran88", dt("2024-03-07 20:15"), 200_000.0, 0.0, None, "shopee"),  # Đang giao
        (7, "240308MNOP4", "thu.nguyen", dt("2024-03-08 08:05"), 120_000.0, 0.0, "refunded", "shopee"),
    ]


def test_tiktok_one_order_per_order_id_description_row_dropped():
    raw = fixture_frame("tiktok_shop_orders")
    assert raw["order id"][0] == "Platform unique order ID."
    got = canonical("tiktok_shop_orders")
    assert rows(got, *ORDER_FIELDS) == [
        (3, "576461413038785752", "linh.pham", dt("2024-03-05 14:30:15"), 330_000.0, 30_000.0, "completed", "tiktok"),
        (5, "576461413038785753", "quang.vu", dt("2024-03-06 09:05"), 150_000.0, 0.0, "cancelled", "tiktok"),
        (6, "576461413038785754", "linh.pham", dt("2024-03-13 20:45"), 0.0, 0.0, "refunded", "tiktok"),
        (7, "576461413038785755", "hoa.do", dt("2024-03-14 10:00"), 150_000.0, 0.0, None, "tiktok"),
    ]
    # an export without the description row gives the same orders
    assert canonical("tiktok_shop_orders", raw.slice(1)).equals(got)


def test_tiktok_seller_discount_that_is_not_an_amount_is_passed_on():
    cols = ["Order ID", "Order Status", "Buyer Username", "Created Time", "Order Amount", "SKU Seller Discount"]
    frame = frame_of(cols, [["1", "Completed", "u", "03/05/2024 2:30:15 PM", "100", "5"],
                            ["1", "Completed", "u", "03/05/2024 2:30:15 PM", "100", "n/a"]])
    out = PRESETS["tiktok_shop_orders"].prepare(frame)
    assert out.select("__discount", "__revenue", "created time").rows() == [("n/a", "100", "2024-03-05 14:30:15")]


def test_kiotviet_invoices():
    got = canonical("kiotviet_orders")
    assert rows(got, *ORDER_FIELDS) == [
        (2, "HD000101", "KH000012", dt("2024-03-05 14:30:15"), 500_000.0, 50_000.0, "completed", "store"),
        (4, "HD000102", "KH000034", dt("2024-03-18 09:10"), 150_000.0, 0.0, "cancelled", "facebook"),
        (5, "HD000103", None, dt("2024-03-19 17:45:30"), 200_000.0, 0.0, "completed", "store"),  # walk-in: reported
    ]


# ---------------------------------------------------------------------------------
# surveys
# ---------------------------------------------------------------------------------
def test_google_forms_english():
    got = canonical("google_forms_survey")
    assert rows(got, "_line", "responded_at", "customer_id", "nps", "csat", "comment") == [
        (2, dt("2024-03-05 14:30"), "an.nguyen@example.com", 9, 5, "Great tea"),
        (3, dt("2024-03-06 09:02:11"), "binh.tran@example.com", 6, 3, None),
        (4, dt("2024-03-13 20:45"), "chi.le@example.com", 10, 4, "Fast delivery, thanks!"),
    ]


def test_google_forms_vietnamese():
    got = canonical("google_forms_survey_vi")
    assert rows(got, "_line", "responded_at", "customer_id", "nps", "csat", "comment") == [
        (2, dt("2024-03-05 14:30"), "an.nguyen@example.com", 9, 5, "Trà ngon"),
        (3, dt("2024-03-06 09:02:11"), "binh.tran@example.com", 7, 4, None),
        (4, dt("2024-03-13 20:45"), None, 3, 2, "Giao hàng chậm"),
    ]


def test_typeform_submit_time_is_utc():
    got = canonical("typeform_survey")
    assert rows(got, "_line", "response_id", "responded_at", "customer_id", "nps", "comment") == [
        (2, "odwdp4nzj1xg6m9l36odwdp4nzlv2gcw", dt("2024-03-05 14:30:38"), "an.nguyen@example.com", 9,
         "Love the oolong"),
        (3, "x8k2m1q9p3r7t5v0x8k2m1q9p3r7t5v0", dt("2024-03-06 00:12:40"), None, 4, "Too expensive"),
    ]


def test_surveymonkey_two_header_rows():
    assert PRESETS["surveymonkey_survey"].header_rows == 2
    got = canonical("surveymonkey_survey")
    assert rows(got, "_line", "response_id", "responded_at", "customer_id", "nps", "comment") == [
        (3, "118052219061", dt("2024-03-05 14:30:15"), "an.nguyen@example.com", 10, "Great tea"),
        (4, "118052219062", dt("2024-03-06 09:04:59"), None, 7, None),
        (5, "118052219063", dt("2024-03-13 20:41:30"), "chi.le@example.com", 0, "Wrong item delivered"),
    ]


def test_surveymonkey_dates_are_month_first_even_when_ambiguous():
    p = PRESETS["surveymonkey_survey"]
    headers, _ = read_fixture("surveymonkey.csv", p.header_rows)
    frame = frame_of(headers, [["1", "2", "03/05/2024 02:28:07 PM", "03/05/2024 02:30:15 PM", "", "", "", "", "",
                                "8", ""]], p.header_rows)
    # every date here reads either way; the preset knows the export writes month first
    got = canonical("surveymonkey_survey", frame)
    assert got["responded_at"].to_list() == [dt("2024-03-05 14:30:15")]


def test_qualtrics_three_header_rows_and_its_nps_question():
    p = PRESETS["qualtrics_survey"]
    assert p.header_rows == 3
    got = canonical("qualtrics_survey")
    assert rows(got, "_line", "response_id", "responded_at", "customer_id", "nps") == [
        (4, "R_1a2B3c4D5e6F7g8", dt("2024-03-05 14:30:16"), "an.nguyen@example.com", 9),
        (5, "R_9h8G7f6E5d4C3b2", dt("2024-03-06 09:05"), None, 4),
    ]
    # without an NPS question there is no NPS column, and the user maps a score with --map
    frame = fixture_frame("qualtrics_survey").drop("q1_nps_group")
    out = p.prepare(frame)
    assert "__nps" not in out.columns and "nps" not in mapping_for(p, out.columns)


def test_a_preset_leaves_other_fields_to_the_aliases():
    """A survey recognised as Google Forms by its 'Timestamp' column still finds a
    plain 'NPS' column by its alias (the preset only knows the question's wording)."""
    from data import importer

    raw = "Timestamp,Email Address,NPS\n2024-05-01 10:00:00,a@x.vn,9\n2024-05-02 11:00:00,b@x.vn,3\n".encode()
    report = importer.check_file(raw, "form.csv", "survey_responses")
    assert "Google Forms" in report.notes[0]
    assert report.ok, report.problems
    assert report.valid["nps"].to_list() == [9, 3]
    report.close()
