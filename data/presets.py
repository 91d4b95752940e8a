"""Column-mapping presets: the exports people already have, recognised by their headers.

A preset knows one export (a Shopify orders file, a Qualtrics survey, ...): the headers
that identify it (``signature``), how many header rows it has, how to reshape it into
one row per record (``prepare``) and which column then holds each canonical field
(``mapping``). Configuration as data: adding an export means adding one entry to
:data:`PRESETS` (and a fixture with its real headers to tests/fixtures/presets/).

Conventions
-----------
* Every header is compared after :func:`data.parse.normalise_header` (NFC, case
  folded, whitespace folded), so decomposed Unicode, case and column order never
  matter. A Vietnamese header whose tone marks sit on another vowel ("hoá" / "hóa")
  is matched too, when no header has the exact spelling and only one header differs
  from it that way (:func:`resolve_headers`).
* ``prepare(frame)`` receives Utf8 columns named by normalised header plus ``_line``
  (Int64, the file line where the row starts) and returns the same convention:
  Utf8 columns named by normalised header, or synthetic ones starting with ``__``,
  plus ``_line``. Rows it merges keep the ``_line`` of their first row. It never
  drops a row it cannot read: a value it cannot interpret is passed on unchanged so
  that the importer reports it with its line (statuses it does not know, amounts that
  do not parse, ...).
* ``mapping`` (canonical field -> column after prepare) covers every required field
  of the preset's kind. A mapped column may be missing from a particular file: an
  optional column, a survey's question (its text is the survey author's own), or a
  synthetic column whose source is absent (no e-mail collected, no NPS question). So
  callers take :func:`mapping_for` and fill the fields it leaves out as for any file:
  ``--map FIELD=HEADER`` first, then the generic aliases of data.kinds.

Survey exports carry the survey author's own question texts. Each survey preset maps
the standard wording of its tool where one exists (and the wordings of our fixtures);
a survey that asks its own way needs ``--map nps="<question text>"`` (or csat / ces).

Customers are keyed the same way across exports so that orders, customers and survey
answers join: web shops and web surveys use the buyer's e-mail address in lower case
(Shopify's orders export has no customer id at all), marketplaces the buyer's
username, KiotViet its customer code.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import polars as pl

from data import parse

Prepare = Callable[[pl.DataFrame], pl.DataFrame]


@dataclass(frozen=True)
class Preset:
    """One known export. See the module docstring for the conventions."""

    name: str  # e.g. "shopify_orders"
    kind: str  # a key of data.kinds.KINDS
    label: str  # e.g. "Shopify orders export"
    signature: tuple[str, ...]  # normalised headers that must all be present
    mapping: dict[str, str] = field(hash=False)  # canonical field -> column after prepare
    header_rows: int = 1  # header rows at the top: the first is the header, the rest are dropped
    prepare: Prepare | None = None
    note: str = ""  # one sentence for the user: what the preset does to the file


# =====================================================================================
# Recognising
# =====================================================================================
_TONE_MARKS = dict.fromkeys(map(ord, "\u0300\u0301\u0303\u0309\u0323"))


def fold_tones(header: str) -> str:
    """A normalised header without its Vietnamese tone marks (sắc, huyền, hỏi, ngã,
    nặng), so that 'mã hoá đơn' and 'mã hóa đơn' compare equal. The letters â ă ê ô ơ
    ư đ keep their marks: they are other letters, not tones."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", header).translate(_TONE_MARKS))


def resolve_headers(names: Iterable[str], headers: Iterable[str]) -> dict[str, str]:
    """For each wanted (normalised) name, the header of ``headers`` that holds it: the
    header itself when present, otherwise the one header that differs from it only in
    its tone marks. Names found neither way are left out."""
    present = {parse.normalise_header(h) for h in headers}
    by_fold: dict[str, list[str]] = {}
    for h in present:
        by_fold.setdefault(fold_tones(h), []).append(h)
    out: dict[str, str] = {}
    for name in names:
        if name in present:
            out[name] = name
        else:
            candidates = by_fold.get(fold_tones(name), [])
            if len(candidates) == 1:
                out[name] = candidates[0]
    return out


def detect(headers: list[str], kind: str | None = None) -> Preset | None:
    """The preset whose whole signature appears in the (normalised) headers; with
    several, the one with the longest signature (the first defined on a tie);
    restricted to ``kind`` when given. None when nothing matches (the generic alias
    matching then applies)."""
    best: Preset | None = None
    for preset in PRESETS.values():
        if kind is not None and preset.kind != kind:
            continue
        found = resolve_headers(preset.signature, headers)
        if len(found) == len(preset.signature) and len(set(found.values())) == len(found):
            if best is None or len(preset.signature) > len(best.signature):
                best = preset
    return best


def mapping_for(preset: Preset, columns: Iterable[str]) -> dict[str, str]:
    """The preset's mapping restricted to the columns a prepared frame really has (a
    survey's question columns, or an optional column, may be missing from a file)."""
    have = set(columns)
    return {f: c for f, c in preset.mapping.items() if c in have}


# =====================================================================================
# Building blocks for prepare()
# =====================================================================================
def _clean(c: str) -> pl.Expr:
    """The column's text, stripped, with empty cells as null."""
    s = pl.col(c).cast(pl.Utf8).str.strip_chars()
    return pl.when(s == "").then(None).otherwise(s).alias(c)


def _empty_as_null(c: str) -> pl.Expr:
    """Empty cells as null (the importer has stripped every cell already; stripping
    again costs more than the whole merge on wide exports)."""
    return pl.when(pl.col(c) == "").then(None).otherwise(pl.col(c)).alias(c)


def _text(frame: pl.DataFrame, *names: str) -> pl.Expr:
    """The first non-empty value among the named columns that the frame has (null if
    it has none of them)."""
    cols = [_clean(n) for n in names if n in frame.columns]
    if not cols:
        return pl.lit(None, dtype=pl.Utf8)
    return cols[0] if len(cols) == 1 else pl.coalesce(cols)


def _lower(e: pl.Expr) -> pl.Expr:
    return e.str.to_lowercase()


def _fmt_amount(v: pl.Expr) -> pl.Expr:
    """A number written so that parse.parse_amount reads it back exactly: whole
    numbers without decimals, others with at most two ('12.5', never '1.234')."""
    r = v.round(2)
    return pl.when(r == r.round(0)).then(r.cast(pl.Int64).cast(pl.Utf8)).otherwise(r.cast(pl.Utf8))


def _amounts(frame: pl.DataFrame, column: str) -> tuple[pl.Series, pl.Series, pl.Series]:
    """(raw text, parsed value, unreadable mask) of one column."""
    raw = frame[column].cast(pl.Utf8)
    value, bad = parse.parse_amount(raw)
    return raw, value, bad


def _amount_or_null(frame: pl.DataFrame, column: str) -> pl.Series:
    """The parsed amounts of a column, all null when the frame does not have it."""
    if column not in frame.columns:
        return pl.Series(column, [None] * frame.height, dtype=pl.Float64)
    return _amounts(frame, column)[1]


def _one_row_per(frame: pl.DataFrame, key: str, *, sums: dict[str, tuple[str, ...]] | None = None) -> pl.DataFrame:
    """One row per value of ``key`` (order of first appearance), for exports that write
    one row per line item with the order's own columns on the first row only, or
    repeated. Each column takes the first non-empty value among the group's rows (so an
    order total is counted once), ``_line`` the first row's line. ``sums`` adds
    synthetic columns holding the sum of the listed amount columns over the group's
    rows (a cell that is not an amount is passed on as it is, to be reported). Rows
    without a key are kept one by one, so that the importer reports them."""
    cols = [c for c in frame.columns if c != "_line"]
    f = frame.with_columns(_empty_as_null(c) for c in cols if c != key)
    if key in f.columns:
        f = f.with_columns(_clean(key))
    extra: list[pl.Expr] = []
    aggs: list[pl.Expr] = [pl.col("_line").first()]
    aggs += [pl.col(c).drop_nulls().first() for c in cols]
    for out, sources in (sums or {}).items():
        present = [c for c in sources if c in f.columns]
        vals, bads = [], []
        for c in present:
            raw, v, bad = _amounts(f, c)
            vals.append(v.rename(f"{out}#v{len(vals)}"))
            nothing = pl.Series([None] * len(raw), dtype=pl.Utf8)
            bads.append(pl.Series(f"{out}#b{len(bads)}", raw).zip_with(bad.fill_null(False), nothing))
        if present:
            tmp = pl.DataFrame(vals + bads)
            row_val = tmp.select(
                pl.when(pl.any_horizontal(pl.col(s.name).is_not_null() for s in vals))
                .then(pl.sum_horizontal(s.name for s in vals))
            ).to_series()
            row_bad = tmp.select(pl.coalesce(s.name for s in bads)).to_series()
        else:
            row_val = pl.Series([None] * f.height, dtype=pl.Float64)
            row_bad = pl.Series([None] * f.height, dtype=pl.Utf8)
        extra += [row_val.alias(f"{out}#val"), row_bad.alias(f"{out}#bad")]
        aggs += [pl.col(f"{out}#val").sum().alias(f"{out}#sum"),
                 pl.col(f"{out}#val").is_not_null().any().alias(f"{out}#any"),
                 pl.col(f"{out}#bad").drop_nulls().first().alias(f"{out}#bad")]
    if extra:
        f = f.with_columns(extra)
    group = pl.coalesce(pl.col(key), pl.lit("\x00line ") + pl.col("_line").cast(pl.Utf8)) if key in f.columns \
        else pl.lit("\x00line ") + pl.col("_line").cast(pl.Utf8)
    out_frame = f.group_by(group.alias("\x00group"), maintain_order=True).agg(aggs).drop("\x00group")
    for out in sums or {}:
        out_frame = out_frame.with_columns(
            pl.when(pl.col(f"{out}#bad").is_not_null()).then(pl.col(f"{out}#bad"))
            .when(pl.col(f"{out}#any")).then(_fmt_amount(pl.col(f"{out}#sum")))
            .alias(out)
        ).drop(f"{out}#sum", f"{out}#any", f"{out}#bad")
    return out_frame


def _net_of_refunds(frame: pl.DataFrame, total: str, refunds: tuple[str, ...], out: str) -> pl.DataFrame:
    """``out`` = the total minus the refunded amount (the first refund column the file
    has), written as text; the total unchanged when nothing was refunded or the file
    has no refund column; 'total - refund' as it stands (so that the importer reports
    it) when the refund is not an amount."""
    if total not in frame.columns:
        return frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias(out))
    refund = next((c for c in refunds if c in frame.columns), None)
    t_raw, t, _ = _amounts(frame, total)
    if refund is None:
        return frame.with_columns(t_raw.alias(out))
    r_raw, r, r_bad = _amounts(frame, refund)
    tmp = pl.DataFrame({"t_raw": t_raw, "t": t, "r_raw": r_raw, "r": r.abs(), "r_bad": r_bad.fill_null(False)})
    net = tmp.select(
        pl.when(pl.col("r_bad") & pl.col("t_raw").is_not_null())
        .then(pl.col("t_raw") + pl.lit(" - ") + pl.col("r_raw"))
        .when(pl.col("t").is_not_null() & (pl.col("r") > 0))
        .then(_fmt_amount(pl.col("t") - pl.col("r")))
        .otherwise(pl.col("t_raw"))
    ).to_series()
    return frame.with_columns(net.alias(out))


_US_AMPM = r"^\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d{2}(?::\d{2})? ?[AaPp][Mm]$"


def _us_ampm_to_iso(c: str) -> pl.Expr:
    """'3/5/2024 2:30:15 PM' (a US export: month first, 12-hour clock) -> '2024-03-05
    14:30:15', whatever the workspace's day/month order; other text unchanged."""
    s = pl.col(c).str.strip_chars().str.replace(r"(\d)([AaPp][Mm])$", "${1} ${2}")
    dt = pl.coalesce(
        s.str.to_datetime("%m/%d/%Y %I:%M:%S %p", strict=False),
        s.str.to_datetime("%m/%d/%Y %I:%M %p", strict=False),
    )
    ok = pl.col(c).str.strip_chars().str.contains(_US_AMPM) & dt.is_not_null()
    return pl.when(ok).then(dt.dt.strftime("%Y-%m-%d %H:%M:%S")).otherwise(pl.col(c)).alias(c)


def _prepared(wanted: Iterable[str], body: Prepare | None) -> Prepare:
    """Wrap a preset's prepare: first give the columns it uses their canonical
    spelling (tone-mark variants, see :func:`resolve_headers`) and make every column
    text, then run ``body``."""
    wanted = tuple(dict.fromkeys(wanted))

    def prepare(frame: pl.DataFrame) -> pl.DataFrame:
        found = resolve_headers(wanted, [c for c in frame.columns if c != "_line"])
        renames = {h: n for n, h in found.items() if h != n and n not in frame.columns}
        if renames:
            frame = frame.rename(renames)
        frame = frame.with_columns(pl.col(c).cast(pl.Utf8) for c in frame.columns if c != "_line")
        frame = frame.with_columns(pl.col("_line").cast(pl.Int64))
        return body(frame) if body is not None else frame

    return prepare


def _preset(name: str, kind: str, label: str, signature: tuple[str, ...], mapping: dict[str, str], *,
            header_rows: int = 1, prepare: Prepare | None = None, uses: tuple[str, ...] = (), note: str) -> Preset:
    wanted = (*signature, *(c for c in mapping.values() if not c.startswith("__")), *uses)
    return Preset(name, kind, label, signature, mapping, header_rows, _prepared(wanted, prepare), note)


# =====================================================================================
# Orders
# =====================================================================================
_SHOPIFY_FINANCIAL = {
    "paid": "completed",
    "partially_refunded": "completed",  # revenue is net of the refund
    "partially refunded": "completed",
    "refunded": "refunded",
    "voided": "cancelled",
}


def _shopify_orders(frame: pl.DataFrame) -> pl.DataFrame:
    f = _one_row_per(frame, "name")
    financial = _text(f, "financial status")
    status = (
        pl.when(_text(f, "cancelled at").is_not_null()).then(pl.lit("cancelled"))
        .otherwise(pl.coalesce(_lower(financial).replace_strict(_SHOPIFY_FINANCIAL, default=None), financial))
    )
    f = f.with_columns(
        _text(f, "name").str.strip_chars_start("#").alias("__order_id"),
        _lower(_text(f, "email")).alias("__customer_id"),
        status.alias("__status"),
        pl.when(_lower(_text(f, "source")) == "pos").then(pl.lit("store")).otherwise(pl.lit("website"))
        .alias("__channel"),
    )
    return _net_of_refunds(f, "total", ("refunded amount",), "__revenue")


def _shopify_customers(frame: pl.DataFrame) -> pl.DataFrame:
    name = pl.concat_str([_text(frame, "first name"), _text(frame, "last name")], separator=" ", ignore_nulls=True)
    return frame.with_columns(
        pl.coalesce(_lower(_text(frame, "email")), _text(frame, "customer id").str.strip_chars_start("'"))
        .alias("__customer_id"),
        pl.when(name.str.strip_chars() != "").then(name.str.strip_chars()).alias("__name"),
        _text(frame, "phone", "default address phone").alias("__phone"),
        _text(frame, "province", "default address province", "city", "default address city", "province code",
              "default address province code").alias("__region"),
    )


# WooCommerce: statuses as the exporters write them ('wc-processing', 'Processing', or
# the shop's Vietnamese labels). A paid order not yet shipped counts as completed;
# on-hold / pending / draft are left for the importer to report.
_WOO_STATUS = {
    "processing": "completed", "đang xử lý": "completed",
    "completed": "completed", "hoàn thành": "completed", "đã hoàn thành": "completed",
    "refunded": "refunded", "đã hoàn lại tiền": "refunded", "đã hoàn tiền": "refunded",
    "cancelled": "cancelled", "đã hủy": "cancelled", "đã huỷ": "cancelled",
    "failed": "cancelled", "thất bại": "cancelled",
}


def _woo_prepare(*, ids: tuple[str, ...], emails: tuple[str, ...], user_ids: tuple[str, ...], status: str,
                 total: str, refunds: tuple[str, ...], discounts: tuple[str, ...]) -> Prepare:
    def prepare(frame: pl.DataFrame) -> pl.DataFrame:
        key = next((c for c in ids if c in frame.columns), ids[0])
        f = _one_row_per(frame, key)
        user = _text(f, *user_ids)
        raw_status = _text(f, status)
        folded = _lower(raw_status).str.strip_prefix("wc-").str.replace_all(r"\s+", " ")
        f = f.with_columns(
            pl.coalesce(_lower(_text(f, *emails)), pl.when(user != "0").then(user)).alias("__customer_id"),
            pl.coalesce(folded.replace_strict(_WOO_STATUS, default=None), raw_status).alias("__status"),
            _text(f, *discounts).alias("__discount"),
            pl.lit("website").alias("__channel"),
        )
        return _net_of_refunds(f, total, refunds, "__revenue")

    return prepare


def _shopee_orders(frame: pl.DataFrame) -> pl.DataFrame:
    return _one_row_per(frame, "mã đơn hàng").with_columns(pl.lit("shopee").alias("__channel"))


_TIKTOK_DESCRIPTION = r"(?i)^platform unique order id"


def _tiktok_orders(frame: pl.DataFrame) -> pl.DataFrame:
    # Newer exports put a row of column descriptions under the header ('Platform unique
    # order ID.', 'Current order status.', ...); older ones do not. Drop it when there.
    if "order id" in frame.columns:
        frame = frame.filter(~pl.col("order id").str.strip_chars().str.contains(_TIKTOK_DESCRIPTION).fill_null(False))
    f = _one_row_per(frame, "order id", sums={"__discount": ("sku seller discount",)})
    if "created time" in f.columns:
        f = f.with_columns(_us_ampm_to_iso("created time"))
    f = _net_of_refunds(f, "order amount", ("order refund amount",), "__revenue")
    # A completed order refunded in full is a refunded order.
    status = pl.DataFrame({
        "s": f.select(_text(f, "order status")).to_series(),
        "a": _amount_or_null(f, "order amount"),
        "r": _amount_or_null(f, "order refund amount").abs(),
    }).select(
        pl.when(pl.col("s").str.to_lowercase().is_in(["completed", "delivered"]) & (pl.col("a") > 0)
                & (pl.col("r") >= pl.col("a")))
        .then(pl.lit("refunded")).otherwise(pl.col("s"))
    ).to_series()
    return f.with_columns(status.alias("__status"), pl.lit("tiktok").alias("__channel"))


_KIOTVIET_IN_STORE = ["bán trực tiếp", "trực tiếp", "tại cửa hàng", "cửa hàng"]


def _kiotviet_orders(frame: pl.DataFrame) -> pl.DataFrame:
    f = _one_row_per(frame, "mã hóa đơn")
    channel = _text(f, "kênh bán")
    return f.with_columns(
        pl.when(channel.is_null() | _lower(channel).is_in(_KIOTVIET_IN_STORE)).then(pl.lit("store"))
        .otherwise(channel).alias("__channel")
    )


# =====================================================================================
# Survey responses
# =====================================================================================
NPS_EN = "how likely are you to recommend us to a friend or colleague?"
NPS_VI = "bạn có sẵn lòng giới thiệu chúng tôi cho bạn bè không?"
NPS_TYPEFORM = "how likely are you to recommend us to a friend?"
NPS_SURVEYMONKEY = "how likely is it that you would recommend this company to a friend or colleague?"
# The other question texts our fixtures use (no tool has a standard wording for them).
CSAT_EN = "how satisfied are you with our service?"
CSAT_VI = "bạn hài lòng với dịch vụ của chúng tôi ở mức nào?"
COMMENT_EN = "anything else you would like to tell us?"
COMMENT_VI = "bạn có góp ý gì thêm cho chúng tôi không?"


def _email_customer(*emails: str) -> Prepare:
    """customer = the collected e-mail address in lower case, when the file has one
    (a form that does not collect e-mails has no customer column at all)."""
    def prepare(frame: pl.DataFrame) -> pl.DataFrame:
        if not any(e in frame.columns for e in emails):
            return frame
        return frame.with_columns(_lower(_text(frame, *emails)).alias("__customer_id"))

    return prepare


def _typeform(frame: pl.DataFrame) -> pl.DataFrame:
    # Typeform writes the submit time in UTC without saying so in the value: say it,
    # so that it is converted to local time like any other offset.
    c = "submit date (utc)"
    if c not in frame.columns:
        return frame
    naive = pl.col(c).str.strip_chars().str.contains(r"^\d{4}-\d{2}-\d{2}[ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?$")
    return frame.with_columns(
        pl.when(naive.fill_null(False)).then(pl.col(c).str.strip_chars() + pl.lit(" +00:00"))
        .otherwise(pl.col(c)).alias(c)
    )


def _surveymonkey(frame: pl.DataFrame) -> pl.DataFrame:
    f = _email_customer("email address")(frame)
    f = f.with_columns(_us_ampm_to_iso(c) for c in ("start date", "end date") if c in f.columns)
    if NPS_SURVEYMONKEY in f.columns:
        # Exported as answer text, the scale's end points carry their label:
        # '10 - Extremely likely', '0 - Not at all likely'.
        c = NPS_SURVEYMONKEY
        f = f.with_columns(
            pl.when(pl.col(c).str.contains(r"^\s*\d{1,2}\s*[-–:]\s*\D"))
            .then(pl.col(c).str.extract(r"^\s*(\d{1,2})", 1)).otherwise(pl.col(c)).alias(c)
        )
    return f


def _qualtrics(frame: pl.DataFrame) -> pl.DataFrame:
    f = _email_customer("recipientemail")(frame)
    # Qualtrics adds '<question>_NPS_GROUP' (1/2/3 = detractor/passive/promoter) beside
    # its NPS question type; the question's own column holds the 0-10 score.
    groups = [c[: -len("_nps_group")] for c in f.columns if c.endswith("_nps_group")]
    scores = [c for c in groups if c in f.columns]
    if scores:
        f = f.with_columns(pl.col(scores[0]).alias("__nps"))
    return f


# =====================================================================================
# The presets
# =====================================================================================
_ORDERS_WOO_NOTE = ("One order per order number; customer = billing e-mail (lower case, else the user id); "
                    "'processing' counts as completed, on-hold/pending are reported; revenue = order total "
                    "minus refunds where the export has them; channel website.")

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        _preset(
            "shopify_orders", "orders", "Shopify orders export",
            ("name", "email", "financial status", "created at", "total", "lineitem name"),
            {"order_id": "__order_id", "customer_id": "__customer_id", "ordered_at": "created at",
             "revenue": "__revenue", "discount": "discount amount", "status": "__status", "channel": "__channel"},
            prepare=_shopify_orders,
            uses=("cancelled at", "refunded amount", "source"),
            note="One order per Name (line items merged, Total counted once from the order's first row); "
                 "customer = the order's e-mail in lower case (the export has no customer id); status from "
                 "Financial Status (paid and partially refunded = completed, voided = cancelled, Cancelled at "
                 "wins; pending/authorized are reported); revenue = Total minus Refunded Amount; channel "
                 "website (store for POS orders).",
        ),
        _preset(
            "shopify_customers", "customers", "Shopify customers export",
            ("first name", "last name", "email", "total spent", "total orders"),
            {"customer_id": "__customer_id", "name": "__name", "email": "email", "phone": "__phone",
             "region": "__region"},
            prepare=_shopify_customers,
            uses=("customer id", "phone", "default address phone", "province", "city", "default address city",
                  "province code", "default address province code"),
            note="Customer = e-mail in lower case, as in the Shopify orders preset, so that orders and "
                 "customers join (Customer ID, without its leading ', only when there is no e-mail); name = "
                 "First Name + Last Name; region = province, else city; marketing consent is ignored.",
        ),
        _preset(
            "woocommerce_orders", "orders", "WooCommerce orders (WP All Export)",
            ("order id", "order date", "order status", "order total", "customer user id"),
            {"order_id": "order id", "customer_id": "__customer_id", "ordered_at": "order date",
             "revenue": "__revenue", "discount": "__discount", "status": "__status", "channel": "__channel"},
            prepare=_woo_prepare(
                ids=("order id",), emails=("billing email", "billing email address", "customer email"),
                user_ids=("customer user id",), status="order status", total="order total",
                refunds=("order refund amount", "refund amount", "total refunded"),
                discounts=("total discount amount", "cart discount amount", "cart discount", "order discount",
                           "discount amount")),
            uses=("billing email", "customer user id", "total discount amount", "cart discount"),
            note=_ORDERS_WOO_NOTE,
        ),
        _preset(
            "woocommerce_orders_aoe", "orders", "WooCommerce orders (Advanced Order Export)",
            ("order number", "order status", "order date", "order total amount"),
            {"order_id": "order number", "customer_id": "__customer_id", "ordered_at": "order date",
             "revenue": "__revenue", "discount": "__discount", "status": "__status", "channel": "__channel"},
            prepare=_woo_prepare(
                ids=("order number",), emails=("email (billing)", "billing email"),
                user_ids=("customer user id", "user id", "customer id"), status="order status",
                total="order total amount", refunds=("order refund amount",),
                discounts=("cart discount amount", "order discount amount")),
            uses=("email (billing)", "cart discount amount", "order refund amount"),
            note=_ORDERS_WOO_NOTE,
        ),
        _preset(
            "woocommerce_orders_csv", "orders", "WooCommerce orders (Customer/Order CSV export)",
            ("order_id", "order_number", "order_date", "status", "shipping_total", "order_total", "payment_method"),
            {"order_id": "order_id", "customer_id": "__customer_id", "ordered_at": "order_date",
             "revenue": "__revenue", "discount": "__discount", "status": "__status", "channel": "__channel"},
            prepare=_woo_prepare(
                ids=("order_id",), emails=("billing_email", "customer_email"),
                user_ids=("customer_id", "customer_user"), status="status", total="order_total",
                refunds=("refunded_total", "order_refund", "total_refunded"),
                discounts=("discount_total", "cart_discount", "order_discount")),
            uses=("billing_email", "customer_email", "customer_id", "discount_total", "refunded_total"),
            note=_ORDERS_WOO_NOTE,
        ),
        _preset(
            "shopee_orders", "orders", "Shopee orders export",
            ("mã đơn hàng", "ngày đặt hàng", "trạng thái đơn hàng", "người mua", "tổng giá trị đơn hàng (vnd)"),
            {"order_id": "mã đơn hàng", "customer_id": "người mua", "ordered_at": "ngày đặt hàng",
             "revenue": "tổng giá trị đơn hàng (vnd)", "discount": "mã giảm giá của shop",
             "status": "trạng thái đơn hàng", "channel": "__channel"},
            prepare=_shopee_orders,
            note="One order per Mã đơn hàng (item rows merged, the order's values taken once from its first "
                 "row); customer = buyer username (Người Mua); revenue = Tổng giá trị đơn hàng; discount = "
                 "the shop's voucher; Hoàn thành / Đã hủy / Trả hàng/Hoàn tiền are read, orders still in "
                 "transit are reported.",
        ),
        _preset(
            "tiktok_shop_orders", "orders", "TikTok Shop orders export",
            ("order id", "order status", "buyer username", "created time", "order amount"),
            {"order_id": "order id", "customer_id": "buyer username", "ordered_at": "created time",
             "revenue": "__revenue", "discount": "__discount", "status": "__status", "channel": "__channel"},
            prepare=_tiktok_orders,
            uses=("order refund amount", "sku seller discount"),
            note="One order per Order ID (SKU rows merged, Order Amount counted once, the row of column "
                 "descriptions dropped); customer = Buyer Username; revenue = Order Amount minus Order Refund "
                 "Amount; discount = the seller's SKU discounts; a completed order refunded in full is refunded.",
        ),
        _preset(
            "kiotviet_orders", "orders", "KiotViet invoices (Hóa đơn) export",
            ("mã hóa đơn", "thời gian", "mã khách hàng", "tổng tiền hàng", "khách cần trả", "trạng thái"),
            {"order_id": "mã hóa đơn", "customer_id": "mã khách hàng", "ordered_at": "thời gian",
             "revenue": "khách cần trả", "discount": "giảm giá hóa đơn", "status": "trạng thái",
             "channel": "__channel"},
            prepare=_kiotviet_orders,
            uses=("kênh bán",),
            note="One order per Mã hóa đơn (item rows of the detailed export merged); revenue = Khách cần trả "
                 "(after the invoice discount); channel store unless Kênh bán names another; walk-in sales "
                 "without a customer code are reported.",
        ),
        # ----------------------------------------------------------------------- surveys
        _preset(
            "google_forms_survey", "survey_responses", "Google Forms responses (English)",
            ("timestamp",),
            {"responded_at": "timestamp", "customer_id": "__customer_id", "nps": NPS_EN, "csat": CSAT_EN,
             "comment": COMMENT_EN},
            prepare=_email_customer("email address"),
            uses=("email address",),
            note="Answered at = Timestamp; customer = the e-mail address collected by the form (lower case); "
                 "NPS is read from the question 'How likely are you to recommend us to a friend or "
                 "colleague?'; other wordings need --map nps=\"<question>\".",
        ),
        _preset(
            "google_forms_survey_vi", "survey_responses", "Google Forms responses (Vietnamese)",
            ("dấu thời gian",),
            {"responded_at": "dấu thời gian", "customer_id": "__customer_id", "nps": NPS_VI, "csat": CSAT_VI,
             "comment": COMMENT_VI},
            prepare=_email_customer("địa chỉ email", "email address"),
            uses=("địa chỉ email", "email address"),
            note="Thời điểm trả lời = Dấu thời gian; khách hàng = địa chỉ email biểu mẫu thu (chữ thường); NPS "
                 "đọc từ câu 'Bạn có sẵn lòng giới thiệu chúng tôi cho bạn bè không?', câu hỏi khác cần "
                 "--map nps=\"<câu hỏi>\".",
        ),
        _preset(
            "typeform_survey", "survey_responses", "Typeform responses export",
            ("#", "start date (utc)", "submit date (utc)", "network id"),
            {"response_id": "#", "responded_at": "submit date (utc)", "customer_id": "customer_id",
             "nps": NPS_TYPEFORM, "comment": COMMENT_EN},
            prepare=_typeform,
            note="Response id = #; answered at = Submit Date (UTC), converted to local time; customer = a "
                 "hidden field named customer_id when the form has one; NPS from Typeform's question 'How "
                 "likely are you to recommend us to a friend?', other wordings need --map.",
        ),
        _preset(
            "surveymonkey_survey", "survey_responses", "SurveyMonkey responses export",
            ("respondent id", "collector id", "start date", "end date"),
            {"response_id": "respondent id", "responded_at": "end date", "customer_id": "__customer_id",
             "nps": NPS_SURVEYMONKEY, "comment": COMMENT_EN},
            header_rows=2,
            prepare=_surveymonkey,
            uses=("email address",),
            note="Two header rows (the second, 'Response', is dropped); response id = Respondent ID; answered "
                 "at = End Date (read month first); customer = Email Address in lower case; NPS from "
                 "SurveyMonkey's NPS question, other wordings need --map.",
        ),
        _preset(
            "qualtrics_survey", "survey_responses", "Qualtrics responses export",
            ("responseid", "recordeddate", "startdate", "enddate"),
            {"response_id": "responseid", "responded_at": "recordeddate", "customer_id": "__customer_id",
             "nps": "__nps"},
            header_rows=3,
            prepare=_qualtrics,
            uses=("recipientemail",),
            note="Three header rows (question texts and import ids dropped); response id = ResponseId; "
                 "answered at = RecordedDate; customer = RecipientEmail in lower case; NPS = the question "
                 "Qualtrics pairs with a ..._NPS_GROUP column, other scores need --map.",
        ),
    ]
}
