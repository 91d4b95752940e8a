"""Deterministic demo data: a Vietnamese multi-channel retailer whose truth is known.

``generate()`` draws every canonical table (see :data:`data.store.TABLES`) from one
``numpy.random.default_rng(seed)``; ``build()`` loads them into a store and writes the
ground truth beside the database; ``python -m data.demo`` does both from the command
line. Same arguments and seed give identical tables. Everything is vectorised (numpy
and Polars, loops only over personas, calendar years and tables), so a million
customers (about 7.7 million orders) are generated in about half a minute
and loaded in about as long again.

The process
-----------
Time runs over ``D = round(years * 365.25)`` calendar days ending on ``end`` (the last
day included); inside the generator a time is a float number of days since the first
day at 00:00, and timestamps are whole seconds of local time.

1. **Personas.** Each customer belongs to one latent persona (:data:`PERSONAS`):
   loyal regulars, Shopee deal hunters, big-ticket buyers, social shoppers and
   one-and-done casuals. A persona fixes the BG/NBD parameters (``r``, ``alpha`` in
   days, ``a``, ``b``), the Gamma-Gamma spend parameters (``p``, ``q``, ``gamma`` in
   VND), channel, category and region mixes, discount habits, a satisfaction offset,
   the loyalty enrolment hazard, the propensity to refer and to redeem points. Channel
   and category mixes are concentrated so clustering on behaviour recovers them.
2. **Seasonality** (``seasonality=True``). A daily intensity multiplier ``m(d)`` with
   mean 1 over the horizon: a peak in the three weeks before Tết (hard-coded Tết
   dates :data:`TET`), a dip in the week after, 11/11, 12/12, Black Friday (and the
   weekend after), a busier December and slightly busier weekends. Time is warped by
   the cumulative intensity ``W(t) = integral of m`` (piecewise linear on a daily
   grid): purchase processes run at constant rates in warped time and are mapped back
   with ``np.interp``. With ``seasonality=False``, ``W(t) = t`` and the process below
   is exactly BG/NBD in calendar days.
3. **Acquisition.** Acquisition dates are drawn with density proportional to
   ``(1 + 2 t / D) * m(t)`` (the business grows, with the same seasons). Customer ids
   ``KH…`` follow acquisition order. Each customer makes a first purchase then.
4. **Repeat purchases: BG/NBD** (Fader, Hardie & Lee 2005). Per customer
   ``lambda ~ Gamma(r, rate=alpha)`` per day and ``p ~ Beta(a, b)``. The number of
   Poisson events in the remaining (warped) horizon is ``n ~ Poisson(lambda * H)``;
   the number of repeat purchases before dropout (the customer may drop out after
   each repeat purchase, never before the first one) is ``K ~ Geometric(p)`` on
   1, 2, ...; the customer makes ``min(n, K)`` repeat purchases, at the first
   ``min(n, K)`` of ``n`` sorted uniform times (drawn exactly through exponential
   spacings, so events beyond dropout are never materialised). The customer is dead
   after the ``K``-th purchase when ``K <= n``. These are the *completed* orders the
   truth parameters describe. Each order then gets an hour of day (evening peak
   online, opening hours in stores), so BG/NBD holds at daily resolution.
5. **Spend: Gamma-Gamma** (Fader & Hardie 2013; the parameterisation of the papers
   and of ``lifetimes``). Per customer ``nu ~ Gamma(q, rate=gamma)``; each completed
   order's net revenue is ``z ~ Gamma(p, rate=nu)``, so a customer's mean spend is
   ``p / nu`` and the population mean ``p * gamma / (q - 1)``; revenue is rounded to
   1,000 VND (at least 1,000). Discounts (VND, before the net revenue) come from the
   persona's discount propensity and depth; gross margin is revenue times the
   category's margin rate, less part of the discount depth, plus noise (rarely
   slightly negative).
6. **Channels and categories.** A customer has a home channel and a favourite
   category drawn from the persona mix; each order uses them with probability 0.75
   and 0.65, else a fresh draw from the persona mix.
7. **Loyalty programme**, launched 40% into the horizon. At each completed BG/NBD
   order after launch a customer enrols with a persona-dependent probability (loyal
   personas much more: selection bias, so the naive member vs non-member gap
   overstates the effect); the enrolment time is that order's time. A member's
   purchase rate is then ``(1 + loyalty_lift) * lambda`` while alive: the extra
   completed orders come from a Poisson process at rate ``loyalty_lift * lambda``
   (warped time) from enrolment to the dropout time (the last BG/NBD purchase of a
   customer who dropped out) or the end; they do not trigger dropout.
   ``loyalty_lift=0`` gives no extra orders. Points: earn 1 point per 10,000 VND of
   revenue on every completed member order from enrolment on (``value`` = points x
   100 VND); each member has a redeemer propensity, and at a later order redeems the
   whole balance with that probability (negative points, just before the earn of
   that order, same timestamp, smaller event id); a balance left untouched for more
   than 365 days expires 365 days after the last activity if that date is on or
   before ``end``. Balances never go negative. Tier by revenue since enrolment:
   member < 2M, silver < 6M, gold < 15M VND, platinum above.
8. **Referral programme**, launched 25% into the horizon: 8% of the customers
   acquired afterwards (and with a completed first order) were referred by an
   existing customer whose first completed order is strictly earlier, chosen with
   persona weights (loyal personas refer more). ``acquisition_channel`` is then
   ``referral`` and the acquisition cost is the 50,000 VND reward.
9. **Cancelled and refunded orders** are EXTRA rows (about 5% and 3% of all orders):
   another order of the same customer on the day of a completed order (deal hunters
   cancel more), with its own amount. About 1% of customers placed one order only,
   and it was cancelled; they have no completed order and no BG/NBD history.
10. **Customers**: Vietnamese names (family, middle and given names by gender),
    emails from the ASCII-folded name, 10-digit mobile numbers (03/05/07/08/09),
    region, signup date on or up to a week before the first order, acquisition
    channel (the first order's channel, or ``referral``) and cost by channel.
11. **Surveys.** Each customer has a latent satisfaction DERIVED from the dropout
    probability ``p`` (lower ``p``, higher satisfaction) plus the persona offset and
    noise, so promoters retain better while the BG/NBD truth stays exact. 12% of
    completed orders get a response 1-7 days later (if on or before ``end``); 8% more
    responses are anonymous. NPS 0-10 always; CSAT 1-5 on about 70%; CES 1-7 on
    service touchpoints (about 40%; effort: lower is easier); a comment on about 35%,
    chosen by sentiment from Vietnamese (80%) and English banks.
12. **Programme costs**: monthly rows from each launch (loyalty: 15,000,000 VND
    platform fee plus 2,000 VND per member enrolled by the period end; referral:
    5,000,000 VND), prorated for partial months and cut at ``end``; campaign rows
    for Tết, 11.11 and 12.12 inside the horizon. Points redeemed and referral rewards
    are recorded in their own tables, not here.

Truth
-----
``Demo.truth`` (JSON-serialisable) holds the arguments, the horizon, every persona's
parameters, ``customer_persona`` as parallel lists ``{"ids": [...], "persona":
[...]}``, the cancelled-only customers, the loyalty truth (``true_lift`` is
``loyalty_lift``: members' purchase rate is multiplied by ``rate_multiplier`` =
``1 + true_lift``; ``incremental_margin_per_member_month`` is the gross margin of the
extra orders within 6 months (6 x 30.4375 days) of each enrolment over the
member-months observed in those windows), the referral truth and row counts.

For an exact BG/NBD recovery use ``seasonality=False, loyalty_lift=0`` and fit per
persona on completed orders (customers with at least one); with seasonality on, the
calendar-time process is BG/NBD only approximately.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from data.config import db_path, truth_path
from data.store import TABLES

# -- vocabularies --------------------------------------------------------------------

CHANNELS = ("website", "shopee", "zalo_oa", "facebook", "store", "app")
CATEGORIES = ("Thời trang", "Mỹ phẩm", "Điện tử", "Nhà cửa", "Mẹ & Bé", "Thực phẩm")
REGIONS = ("Hà Nội", "TP. Hồ Chí Minh", "Đà Nẵng", "Hải Phòng", "Cần Thơ", "Khác")
TOUCHPOINTS = ("delivery", "product", "customer_service", "checkout", "app")
STATUSES = ("completed", "cancelled", "refunded")

# Gross margin rate of net revenue by category (CATEGORIES order).
CATEGORY_MARGIN = (0.45, 0.42, 0.12, 0.30, 0.22, 0.18)
# Mean acquisition cost by first-order channel (CHANNELS order), VND.
ACQUISITION_COST = (150_000.0, 70_000.0, 90_000.0, 180_000.0, 50_000.0, 120_000.0)
REFERRAL_REWARD = 50_000.0

# Lunar New Year (Tết Nguyên Đán), first day.
TET: dict[int, date] = {
    2016: date(2016, 2, 8),
    2017: date(2017, 1, 28),
    2018: date(2018, 2, 16),
    2019: date(2019, 2, 5),
    2020: date(2020, 1, 25),
    2021: date(2021, 2, 12),
    2022: date(2022, 2, 1),
    2023: date(2023, 1, 22),
    2024: date(2024, 2, 10),
    2025: date(2025, 1, 29),
    2026: date(2026, 2, 17),
    2027: date(2027, 2, 6),
    2028: date(2028, 1, 26),
    2029: date(2029, 2, 13),
    2030: date(2030, 2, 3),
    2031: date(2031, 1, 23),
    2032: date(2032, 2, 11),
}

LOYALTY_LAUNCH_AT = 0.40  # share of the horizon
REFERRAL_LAUNCH_AT = 0.25
REFERRED_SHARE = 0.08
CANCELLED_SHARE = 0.05  # of all orders
REFUNDED_SHARE = 0.03
CANCELLED_ONLY_SHARE = 0.01  # of customers
SURVEY_RATE = 0.12  # of completed orders
ANONYMOUS_RATE = 0.08  # extra responses, relative to the linked ones
HOME_CHANNEL_STICKINESS = 0.5
FAVOURITE_CATEGORY_STICKINESS = 0.4
ACQUISITION_GROWTH = 2.0  # acquisition density grows by (1 + 2 t / D)
POINTS_PER_VND = 1 / 10_000
POINT_VALUE = 100.0
EXPIRY_DAYS = 365
MONTH_DAYS = 30.4375
TIERS = ((15_000_000, "platinum"), (6_000_000, "gold"), (2_000_000, "silver"))
DAY = 86_400


@dataclass(frozen=True)
class Persona:
    """One latent customer type; see the module docstring."""

    name: str
    label: str  # Vietnamese name
    share: float
    r: float  # BG/NBD: lambda ~ Gamma(r, rate alpha), per day
    alpha: float
    a: float  # BG/NBD: dropout p ~ Beta(a, b)
    b: float
    p: float  # Gamma-Gamma: spend z ~ Gamma(p, rate nu), nu ~ Gamma(q, rate gamma)
    q: float
    gamma: float  # VND
    channels: tuple[float, ...]  # CHANNELS order
    categories: tuple[float, ...]  # CATEGORIES order
    regions: tuple[float, ...]  # REGIONS order
    discount_share: float  # share of orders with a discount
    discount_depth: float  # mean discount as a share of the gross price
    satisfaction: float  # offset of the latent satisfaction
    enrol_hazard: float  # P(enrol) at each completed order after the loyalty launch
    referral_weight: float  # relative chance of being chosen as a referrer
    redeem: float  # mean redeemer propensity (P(redeem the balance) per order)
    female: float
    cancel_weight: float  # relative chance of a cancelled/refunded sibling order


PERSONAS: tuple[Persona, ...] = (
    Persona(
        "loyal_regular", "Khách quen trung thành", 0.20,
        r=3.0, alpha=50.0, a=1.2, b=16.0, p=6.0, q=5.0, gamma=280_000.0,
        channels=(0.03, 0.02, 0.13, 0.02, 0.50, 0.30),
        categories=(0.02, 0.03, 0.01, 0.04, 0.36, 0.54),
        regions=(0.32, 0.30, 0.08, 0.08, 0.04, 0.18),
        discount_share=0.20, discount_depth=0.08, satisfaction=0.5,
        enrol_hazard=0.16, referral_weight=4.0, redeem=0.35, female=0.75, cancel_weight=0.6,
    ),
    Persona(
        "deal_hunter", "Săn sale Shopee", 0.25,
        r=1.2, alpha=32.0, a=2.0, b=7.0, p=4.0, q=6.0, gamma=200_000.0,
        channels=(0.03, 0.86, 0.02, 0.04, 0.01, 0.04),
        categories=(0.08, 0.36, 0.02, 0.44, 0.04, 0.06),
        regions=(0.26, 0.34, 0.06, 0.05, 0.05, 0.24),
        discount_share=0.75, discount_depth=0.22, satisfaction=-0.3,
        enrol_hazard=0.03, referral_weight=0.8, redeem=0.6, female=0.6, cancel_weight=2.0,
    ),
    Persona(
        "big_ticket", "Mua hàng giá trị cao", 0.12,
        r=1.0, alpha=100.0, a=1.5, b=10.0, p=3.0, q=4.0, gamma=3_000_000.0,
        channels=(0.66, 0.04, 0.02, 0.02, 0.14, 0.12),
        categories=(0.02, 0.02, 0.80, 0.12, 0.02, 0.02),
        regions=(0.36, 0.38, 0.07, 0.06, 0.03, 0.10),
        discount_share=0.30, discount_depth=0.07, satisfaction=0.1,
        enrol_hazard=0.08, referral_weight=1.2, redeem=0.25, female=0.35, cancel_weight=1.0,
    ),
    Persona(
        "social_shopper", "Mua sắm qua mạng xã hội", 0.23,
        r=1.5, alpha=36.0, a=1.3, b=10.0, p=5.0, q=4.0, gamma=200_000.0,
        channels=(0.02, 0.04, 0.26, 0.65, 0.01, 0.02),
        categories=(0.58, 0.34, 0.01, 0.03, 0.02, 0.02),
        regions=(0.30, 0.33, 0.07, 0.05, 0.07, 0.18),
        discount_share=0.40, discount_depth=0.12, satisfaction=0.0,
        enrol_hazard=0.07, referral_weight=3.0, redeem=0.45, female=0.72, cancel_weight=1.2,
    ),
    Persona(
        "one_and_done", "Khách vãng lai", 0.20,
        r=0.25, alpha=120.0, a=3.0, b=3.0, p=4.0, q=3.0, gamma=120_000.0,
        channels=(0.70, 0.08, 0.02, 0.12, 0.06, 0.02),
        categories=(0.36, 0.06, 0.04, 0.40, 0.06, 0.08),
        regions=(0.22, 0.26, 0.08, 0.07, 0.07, 0.30),
        discount_share=0.35, discount_depth=0.10, satisfaction=-0.4,
        enrol_hazard=0.02, referral_weight=0.3, redeem=0.3, female=0.5, cancel_weight=1.5,
    ),
)

# Hour-of-day weights: online (evening peak) and in store (opening hours 8-21).
ONLINE_HOURS = (
    1.6, 0.9, 0.4, 0.3, 0.3, 0.5, 1.2, 2.4, 3.4, 4.0, 4.4, 5.0,
    5.3, 4.6, 4.0, 3.9, 4.1, 4.4, 5.0, 6.4, 7.9, 8.6, 7.2, 3.8,
)
STORE_HOURS = (
    0, 0, 0, 0, 0, 0, 0, 0, 2.0, 3.0, 4.0, 5.0,
    5.0, 4.0, 4.0, 4.5, 5.5, 7.0, 8.5, 8.0, 6.0, 3.0, 0, 0,
)

# -- names -----------------------------------------------------------------------------

FAMILY_NAMES = (
    ("Nguyễn", 31.0), ("Trần", 11.0), ("Lê", 9.5), ("Phạm", 7.0), ("Hoàng", 5.0),
    ("Huỳnh", 4.0), ("Phan", 4.5), ("Vũ", 3.9), ("Võ", 3.0), ("Đặng", 2.1), ("Bùi", 2.0),
    ("Đỗ", 1.4), ("Hồ", 1.3), ("Ngô", 1.3), ("Dương", 1.0), ("Lý", 0.5), ("Đinh", 0.6),
    ("Trương", 0.8), ("Lâm", 0.5), ("Mai", 0.5), ("Tạ", 0.3), ("Cao", 0.4), ("Lương", 0.4),
    ("Hà", 0.5), ("Trịnh", 0.4), ("Đoàn", 0.4),
)
MALE_MIDDLE = ("Văn", "Hữu", "Đức", "Minh", "Quang", "Công", "Thành", "Tuấn", "Gia", "Hoàng",
               "Xuân", "Quốc", "Anh", "Trọng", "Đình")
FEMALE_MIDDLE = ("Thị", "Ngọc", "Thu", "Thanh", "Phương", "Minh", "Khánh", "Bảo", "Hồng",
                 "Kim", "Mai", "Thùy", "Diệu", "Hoài")
MALE_GIVEN = (
    "Anh", "Bảo", "Bình", "Cường", "Dũng", "Duy", "Đạt", "Đức", "Dương", "Hải", "Hiếu",
    "Hoàng", "Hùng", "Huy", "Khang", "Khánh", "Khoa", "Kiên", "Long", "Lộc", "Luân", "Minh",
    "Nam", "Nghĩa", "Phát", "Phong", "Phúc", "Quân", "Quang", "Sơn", "Tài", "Tâm", "Thắng",
    "Thành", "Thiện", "Thịnh", "Toàn", "Trí", "Trung", "Tuấn", "Tùng", "Việt", "Vinh", "Vũ",
)
FEMALE_GIVEN = (
    "An", "Anh", "Châu", "Chi", "Diệp", "Dung", "Giang", "Hà", "Hân", "Hạnh", "Hằng", "Hiền",
    "Hoa", "Hồng", "Huyền", "Hương", "Lan", "Linh", "Loan", "Ly", "Mai", "My", "Nga", "Ngân",
    "Ngọc", "Nhi", "Nhung", "Oanh", "Phương", "Quyên", "Quỳnh", "Tâm", "Thảo", "Thu", "Thủy",
    "Trang", "Trâm", "Trinh", "Tú", "Uyên", "Vân", "Vy", "Xuân", "Yến",
)
EMAIL_DOMAINS = (
    ("gmail.com", 0.70), ("yahoo.com", 0.09), ("outlook.com.vn", 0.04), ("hotmail.com", 0.05),
    ("icloud.com", 0.06), ("outlook.com", 0.04), ("yahoo.com.vn", 0.02),
)
PHONE_PREFIXES = (
    "032", "033", "034", "035", "036", "037", "038", "039", "052", "056", "058", "059",
    "070", "076", "077", "078", "079", "081", "082", "083", "084", "085", "086", "088",
    "089", "090", "091", "092", "093", "094", "096", "097", "098", "099",
)

# -- surveys ---------------------------------------------------------------------------

SURVEY_BY_TOUCHPOINT = (
    "Khảo sát sau giao hàng",
    "NPS sau mua hàng",
    "Khảo sát chăm sóc khách hàng",
    "Khảo sát trải nghiệm thanh toán",
    "Đánh giá ứng dụng",
)
# P(touchpoint | channel): rows CHANNELS, columns TOUCHPOINTS.
TOUCHPOINT_BY_CHANNEL = (
    (0.36, 0.30, 0.14, 0.16, 0.04),  # website
    (0.42, 0.34, 0.12, 0.08, 0.04),  # shopee
    (0.36, 0.30, 0.22, 0.08, 0.04),  # zalo_oa
    (0.38, 0.32, 0.20, 0.07, 0.03),  # facebook
    (0.06, 0.52, 0.30, 0.10, 0.02),  # store
    (0.30, 0.24, 0.12, 0.12, 0.22),  # app
)
CES_SHARE_BY_TOUCHPOINT = (0.30, 0.0, 0.90, 0.80, 0.60)
CSAT_SHARE = 0.70
COMMENT_SHARE = 0.35
ENGLISH_SHARE = 0.20

COMMENTS_VI = {
    "positive": (
        "Giao hàng nhanh, đóng gói cẩn thận.",
        "Sản phẩm đúng mô tả, chất lượng tốt.",
        "Nhân viên tư vấn nhiệt tình, sẽ ủng hộ tiếp.",
        "Rất hài lòng, giá tốt hơn mong đợi.",
        "Hàng chính hãng, dùng rất thích.",
        "Shop phản hồi nhanh, đổi size dễ dàng.",
        "Mua lần thứ mấy rồi, lần nào cũng ưng.",
        "Ứng dụng dễ dùng, thanh toán nhanh gọn.",
        "Tích điểm đổi quà rất tiện.",
        "Sẽ giới thiệu cho bạn bè và người thân.",
    ),
    "neutral": (
        "Sản phẩm ổn, giao hàng hơi chậm một chút.",
        "Chất lượng tạm được so với giá.",
        "Đóng gói bình thường, hàng không bị hư.",
        "Giá hơi cao nhưng chất lượng ổn.",
        "Màu sắc hơi khác so với hình.",
        "Nhân viên giao hàng không gọi trước.",
        "Cần thêm nhiều mẫu mã hơn.",
        "Ứng dụng thỉnh thoảng bị chậm.",
    ),
    "negative": (
        "Giao hàng quá chậm, hẹn mãi không tới.",
        "Sản phẩm không giống mô tả, rất thất vọng.",
        "Hàng bị lỗi, đổi trả mất nhiều thời gian.",
        "Nhân viên chăm sóc khách hàng trả lời chậm.",
        "Đóng gói sơ sài, hộp bị móp.",
        "Thiếu hàng so với đơn đặt.",
        "Không áp dụng được mã giảm giá khi thanh toán.",
        "Ứng dụng hay bị lỗi, không thanh toán được.",
        "Giá tăng liên tục, không còn ưu đãi như trước.",
    ),
}
COMMENTS_EN = {
    "positive": (
        "Fast delivery and well packed.",
        "Great quality, exactly as described.",
        "Friendly staff, will buy again.",
        "Love the loyalty points, easy to redeem.",
        "Smooth checkout in the app.",
    ),
    "neutral": (
        "Product is fine, delivery a bit slow.",
        "Okay for the price.",
        "Colour slightly different from the photos.",
        "Would like more sizes in stock.",
    ),
    "negative": (
        "Delivery was very late.",
        "Item arrived damaged and the return took ages.",
        "Customer service never replied.",
        "Discount code did not work at checkout.",
        "The app keeps crashing at payment.",
    ),
}

# -- dtypes ------------------------------------------------------------------------------

_DTYPES = {
    "VARCHAR": pl.String,
    "TIMESTAMP": pl.Datetime("us"),
    "DATE": pl.Date,
    "DOUBLE": pl.Float64,
    "BIGINT": pl.Int64,
    "TINYINT": pl.Int8,
}


def schema(table: str) -> dict[str, pl.DataType]:
    """The Polars schema of a canonical table (column order of :data:`TABLES`)."""
    return {col: _DTYPES[typ.split()[0]] for col, typ in TABLES[table].items()}


@dataclass(frozen=True)
class Demo:
    """Generated tables (canonical names, columns and order) and the ground truth."""

    tables: dict[str, pl.DataFrame]
    truth: dict


# -- helpers -----------------------------------------------------------------------------


def _fold(text: str) -> str:
    """ASCII-fold Vietnamese: strip diacritics, đ -> d."""
    text = text.replace("đ", "d").replace("Đ", "D")
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


def _nfc(items: Sequence[str]) -> list[str]:
    return [unicodedata.normalize("NFC", s) for s in items]


def _draw(rng: np.random.Generator, probs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One categorical draw per element of ``rows`` from ``probs[rows]`` (rows x k)."""
    cum = np.cumsum(probs, axis=1)
    cum = cum / cum[:, -1:]
    u = rng.random(rows.size)
    out = np.zeros(rows.size, dtype=np.int8)
    for j in range(cum.shape[1] - 1):
        out += u >= cum[rows, j]
    return out


def _choice(rng: np.random.Generator, weights: Sequence[float], size: int) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return rng.choice(w.size, size=size, p=w / w.sum()).astype(np.int32)


def _hours(rng: np.random.Generator, channel: np.ndarray) -> np.ndarray:
    """Seconds since midnight: online evening peak, store opening hours."""
    online = np.asarray(ONLINE_HOURS) / sum(ONLINE_HOURS)
    store = np.asarray(STORE_HOURS) / sum(STORE_HOURS)
    probs = np.vstack([online, store])
    which = (channel == CHANNELS.index("store")).astype(np.int8)
    hour = _draw(rng, probs, which).astype(np.int64)
    return hour * 3600 + rng.integers(0, 3600, size=channel.size)


def _group_starts(counts: np.ndarray) -> np.ndarray:
    return np.cumsum(counts) - counts


def _ids(prefix: str, n: int, width: int) -> pl.Series:
    """``prefix`` + 1..n zero-padded to ``width`` digits (more when n needs them)."""
    width = max(width, len(str(n)))
    digits = pl.Series("id", np.arange(1, n + 1, dtype=np.int64)).cast(pl.String).str.zfill(width)
    return (prefix + digits).alias("id")


def _timestamps(start: date, seconds: np.ndarray) -> pl.Series:
    epoch = (start - date(1970, 1, 1)).days * DAY
    return pl.Series((epoch + seconds.astype(np.int64)) * 1_000_000).cast(pl.Datetime("us"))


def _dates(start: date, days: np.ndarray) -> pl.Series:
    epoch = (start - date(1970, 1, 1)).days
    return pl.Series((epoch + days.astype(np.int64)).astype(np.int32)).cast(pl.Date)


def _strings(values: Sequence[str], idx: np.ndarray) -> pl.Series:
    return pl.Series(list(values), dtype=pl.String).gather(idx.astype(np.int64))


def _frame(table: str, data: dict[str, Any]) -> pl.DataFrame:
    cols = schema(table)
    if set(data) != set(cols):
        raise AssertionError(f"{table}: columns {sorted(data)} != {sorted(cols)}")
    out = {}
    for name, dtype in cols.items():
        v = data[name]
        s = v if isinstance(v, pl.Series) else pl.Series(v)
        out[name] = s.alias(name).cast(dtype)
    return pl.DataFrame(out)


def seasonal_intensity(start: date, days: int, seasonality: bool = True) -> np.ndarray:
    """Daily purchase-intensity multiplier over ``days`` days from ``start``, mean 1.

    Tết: a bump over the 24 days before Tết peaking ten days before, a dip in the
    week after (and a slower second week); year end: 11/11, 12/12, Black Friday and
    the weekend after, all of December a little busier; weekends +10%.
    """
    if not seasonality:
        return np.ones(days)
    ordinal = start.toordinal() + np.arange(days)
    m = np.ones(days)
    m *= np.where((ordinal - 1) % 7 >= 5, 1.10, 1.0)  # date.fromordinal(1) is a Monday
    last = start + timedelta(days=days - 1)
    for year in range(start.year - 1, last.year + 2):
        tet = TET.get(year)
        if tet is not None:
            k = ordinal - tet.toordinal()
            m = m + np.where((k >= -24) & (k < 0), 1.3 * np.exp(-0.5 * ((k + 10) / 6.0) ** 2), 0.0)
            m = np.where((k >= 0) & (k <= 6), m * 0.35, m)
            m = np.where((k >= 7) & (k <= 13), m * 0.8, m)
        d1111 = ordinal - date(year, 11, 11).toordinal()
        m = m + np.where(d1111 == 0, 2.0, np.where(np.abs(d1111) == 1, 0.5, 0.0))
        d1212 = ordinal - date(year, 12, 12).toordinal()
        m = m + np.where(d1212 == 0, 1.6, np.where(np.abs(d1212) == 1, 0.4, 0.0))
        nov1 = date(year, 11, 1)
        thanksgiving = nov1 + timedelta(days=(3 - nov1.weekday()) % 7 + 21)
        dbf = ordinal - (thanksgiving.toordinal() + 1)
        m = m + np.where(dbf == 0, 1.0, np.where((dbf >= 1) & (dbf <= 3), 0.4, 0.0))
        dec = (ordinal >= date(year, 12, 1).toordinal()) & (ordinal <= date(year, 12, 31).toordinal())
        m = m + np.where(dec, 0.25, 0.0)
    return m / m.mean()


class _Clock:
    """Calendar days <-> warped time (cumulative intensity), piecewise linear."""

    def __init__(self, mult: np.ndarray, seasonality: bool) -> None:
        self.identity = not seasonality
        self.grid = np.arange(mult.size + 1, dtype=float)
        self.cum = np.concatenate([[0.0], np.cumsum(mult)])
        self.cum[-1] = float(mult.size)  # mean 1: the warped horizon equals D

    def warp(self, t: np.ndarray) -> np.ndarray:
        return t if self.identity else np.interp(t, self.grid, self.cum)

    def unwarp(self, w: np.ndarray) -> np.ndarray:
        return w if self.identity else np.interp(w, self.cum, self.grid)


def _month_starts(first: date, last: date) -> list[date]:
    out = []
    d = date(first.year, first.month, 1)
    while d <= last:
        out.append(d)
        d = date(d.year + (d.month == 12), d.month % 12 + 1, 1)
    return out


# -- the generator -----------------------------------------------------------------------


def generate(
    customers: int = 20_000,
    *,
    seed: int = 7,
    end: date | None = None,
    years: float = 3.0,
    seasonality: bool = True,
    loyalty_lift: float = 0.25,
) -> Demo:
    """Draw the seven canonical tables and their ground truth (see the module docstring)."""
    if customers < 1:
        raise ValueError("customers must be at least 1")
    if not years > 0:
        raise ValueError("years must be positive")
    if not loyalty_lift >= 0:
        raise ValueError("loyalty_lift must be >= 0")
    if isinstance(end, datetime):
        end = end.date()
    end = end or date.today()
    rng = np.random.default_rng(seed)

    n_days = max(int(round(years * 365.25)), 28)
    start = end - timedelta(days=n_days - 1)
    horizon = n_days * DAY  # seconds; every timestamp is < horizon
    mult = seasonal_intensity(start, n_days, seasonality)
    clock = _Clock(mult, seasonality)
    P = {f: np.array([getattr(x, f) for x in PERSONAS], dtype=float)
         for f in ("share", "r", "alpha", "a", "b", "p", "q", "gamma", "discount_share",
                   "discount_depth", "satisfaction", "enrol_hazard", "referral_weight",
                   "redeem", "female", "cancel_weight")}
    ch_mix = np.array([x.channels for x in PERSONAS])
    cat_mix = np.array([x.categories for x in PERSONAS])
    reg_mix = np.array([x.regions for x in PERSONAS])

    # -- customers: persona, acquisition, latent traits -------------------------------
    N = customers
    persona = _choice(rng, P["share"], N)
    acq_density = (1 + ACQUISITION_GROWTH * (np.arange(n_days) + 0.5) / n_days) * mult
    acq_cum = np.concatenate([[0.0], np.cumsum(acq_density)])
    t0 = np.sort(np.interp(rng.random(N) * acq_cum[-1], acq_cum, clock.grid))
    t0 = np.minimum(t0, n_days - 1e-9)
    n_cancel_only = int(round(CANCELLED_ONLY_SHARE * N)) if N >= 50 else 0
    cancel_only = np.zeros(N, dtype=bool)
    cancel_only[rng.choice(N, size=n_cancel_only, replace=False)] = True

    lam = rng.gamma(P["r"][persona], 1.0 / P["alpha"][persona])  # per day
    pdrop = rng.beta(P["a"][persona], P["b"][persona])
    nu = rng.gamma(P["q"][persona], 1.0 / P["gamma"][persona])  # rate of spend, 1/VND
    home_channel = _draw(rng, ch_mix, persona)
    fav_category = _draw(rng, cat_mix, persona)
    rho = rng.beta(4.0 * P["redeem"][persona], 4.0 * (1 - P["redeem"][persona]))
    logit = np.log(pdrop) - np.log1p(-pdrop)
    satisfaction = -0.9 * (logit + 2.0) + P["satisfaction"][persona] + 0.5 * rng.standard_normal(N)

    # -- BG/NBD repeat purchases (completed) -------------------------------------------
    w0 = clock.warp(t0)
    w_end = float(n_days)
    n_events = rng.poisson(lam * (w_end - w0))
    n_events[cancel_only] = 0
    k_drop = rng.geometric(pdrop)
    m = np.minimum(n_events, k_drop)
    dropped = (k_drop <= n_events) & ~cancel_only
    total = int(m.sum())
    rep_cust = np.repeat(np.arange(N), m)
    spacing = rng.exponential(size=total)
    cs = np.cumsum(spacing)
    starts = _group_starts(m)
    before = np.where(starts > 0, cs[np.maximum(starts - 1, 0)], 0.0)
    s_k = cs - np.repeat(before, m)
    s_last = np.zeros(N)
    has = m > 0
    s_last[has] = s_k[(starts + m - 1)[has]]
    tail = rng.gamma(n_events - m + 1.0)  # S_{n+1} - S_m
    u = s_k / np.repeat(s_last + tail, m)
    rep_t = clock.unwarp(np.repeat(w0, m) + u * np.repeat(w_end - w0, m))

    buyers = np.flatnonzero(~cancel_only)
    base_cust = np.concatenate([buyers, rep_cust]).astype(np.int64)
    base_t = np.concatenate([t0[buyers], rep_t])
    base_channel = _order_channel(rng, base_cust, persona, home_channel, ch_mix)
    base_sec = _order_seconds(rng, base_t, base_channel, n_days)
    order = np.lexsort((base_sec, base_cust))
    base_cust, base_sec, base_channel = base_cust[order], base_sec[order], base_channel[order]

    # -- loyalty enrolment and extra (incremental) orders ----------------------------
    loyalty_launch_day = int(round(LOYALTY_LAUNCH_AT * n_days))
    launch_sec = loyalty_launch_day * DAY
    eligible = base_sec >= launch_sec
    success = eligible & (rng.random(base_sec.size) < P["enrol_hazard"][persona[base_cust]])
    members, first_idx = np.unique(base_cust[success], return_index=True)
    enrol_sec = base_sec[success][first_idx]
    is_member = np.zeros(N, dtype=bool)
    is_member[members] = True
    enrol_of = np.full(N, -1, dtype=np.int64)
    enrol_of[members] = enrol_sec
    last_base = np.full(N, -1, dtype=np.int64)
    last_pos = np.r_[base_cust[1:] != base_cust[:-1], True] if base_cust.size else np.zeros(0, bool)
    last_base[base_cust[last_pos]] = base_sec[last_pos]
    stop_sec = np.where(dropped[members], last_base[members], horizon).astype(float)
    stop_sec = np.maximum(stop_sec, enrol_sec)
    wa = clock.warp(enrol_sec / DAY)
    wb = clock.warp(stop_sec / DAY)
    if loyalty_lift > 0:
        n_extra = rng.poisson(loyalty_lift * lam[members] * (wb - wa))
    else:
        n_extra = np.zeros(members.size, np.int64)
    ext_cust = np.repeat(members, n_extra).astype(np.int64)
    ext_u = rng.random(int(n_extra.sum()))
    ext_t = clock.unwarp(np.repeat(wa, n_extra) + ext_u * np.repeat(wb - wa, n_extra))
    ext_channel = _order_channel(rng, ext_cust, persona, home_channel, ch_mix)
    ext_sec = _order_seconds(rng, ext_t, ext_channel, n_days)
    raw = np.minimum(np.ceil(ext_t * DAY).astype(np.int64), horizon - 1)
    ext_sec = np.where(ext_sec <= enrol_of[ext_cust], np.maximum(raw, enrol_of[ext_cust] + 1), ext_sec)
    ext_sec = np.minimum(ext_sec, horizon - 1)

    # -- all completed orders ----------------------------------------------------------
    c_cust = np.concatenate([base_cust, ext_cust])
    c_sec = np.concatenate([base_sec, ext_sec])
    c_channel = np.concatenate([base_channel, ext_channel])
    c_extra = np.concatenate([np.zeros(base_cust.size, bool), np.ones(ext_cust.size, bool)])
    order = np.lexsort((c_extra, c_sec, c_cust))
    c_cust, c_sec, c_channel, c_extra = c_cust[order], c_sec[order], c_channel[order], c_extra[order]
    n_completed = c_cust.size

    # -- cancelled and refunded siblings, cancelled-only customers -----------------
    n_cancel = int(round(n_completed * CANCELLED_SHARE / (1 - CANCELLED_SHARE - REFUNDED_SHARE)))
    n_refund = int(round(n_completed * REFUNDED_SHARE / (1 - CANCELLED_SHARE - REFUNDED_SHARE)))
    if n_completed:
        w = P["cancel_weight"][persona[c_cust]]
        src = rng.choice(n_completed, size=n_cancel + n_refund, p=w / w.sum())
    else:
        src = np.zeros(0, dtype=np.int64)
    x_cust = c_cust[src]
    x_channel = c_channel[src]
    x_day = c_sec[src] // DAY
    co = np.flatnonzero(cancel_only)
    co_channel = _order_channel(rng, co, persona, home_channel, ch_mix)
    x_cust = np.concatenate([x_cust, co]).astype(np.int64)
    x_channel = np.concatenate([x_channel, co_channel])
    x_day = np.concatenate([x_day, np.floor(t0[co]).astype(np.int64)])
    x_sec = x_day * DAY + _hours(rng, x_channel)
    x_status = np.concatenate(
        [np.full(n_cancel, 1), np.full(n_refund, 2), np.full(co.size, 1)]
    ).astype(np.int8)

    # -- every order: amounts, categories ------------------------------------------
    o_cust = np.concatenate([c_cust, x_cust])
    o_sec = np.concatenate([c_sec, x_sec]).astype(np.int64)
    o_channel = np.concatenate([c_channel, x_channel])
    o_status = np.concatenate([np.zeros(n_completed, np.int8), x_status])
    o_extra = np.concatenate([c_extra, np.zeros(x_cust.size, bool)])
    n_orders = o_cust.size
    o_persona = persona[o_cust]
    o_category = np.where(
        rng.random(n_orders) < FAVOURITE_CATEGORY_STICKINESS,
        fav_category[o_cust],
        _draw(rng, cat_mix, o_persona),
    ).astype(np.int8)
    z = rng.gamma(P["p"][o_persona], 1.0 / nu[o_cust])
    revenue = np.maximum(np.round(z / 1000.0) * 1000.0, 1000.0)
    disc_p = P["discount_share"][o_persona] + np.where(o_channel == CHANNELS.index("shopee"), 0.1, 0.0)
    has_disc = rng.random(n_orders) < np.minimum(disc_p, 0.95)
    depth_mean = P["discount_depth"][o_persona]
    depth = np.minimum(rng.beta(8.0 * depth_mean, 8.0 * (1 - depth_mean)), 0.6)
    depth = np.where(has_disc, depth, 0.0)
    discount = np.round(revenue * depth / (1 - depth) / 1000.0) * 1000.0
    margin_rate = (np.asarray(CATEGORY_MARGIN)[o_category] - 0.4 * depth
                   + 0.04 * rng.standard_normal(n_orders))
    gross_margin = np.round(revenue * margin_rate)

    # global order: by time, customer; ids follow it
    order = np.lexsort((o_status, o_cust, o_sec))
    o_cust, o_sec, o_channel, o_status, o_extra = (o_cust[order], o_sec[order], o_channel[order],
                                                   o_status[order], o_extra[order])
    o_category, revenue, discount, gross_margin = (o_category[order], revenue[order],
                                                   discount[order], gross_margin[order])
    o_persona = persona[o_cust]

    # -- customers table -----------------------------------------------------------
    first_sec = np.full(N, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_sec, o_cust, o_sec)
    first_channel = np.zeros(N, dtype=np.int8)
    first_pos = np.unique(o_cust, return_index=True)[1]  # o_* sorted by time: first = earliest
    first_channel[o_cust[first_pos]] = o_channel[first_pos]
    completed = o_status == 0
    first_completed = np.full(N, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_completed, o_cust[completed], o_sec[completed])

    # referrals
    ref_launch_day = int(round(REFERRAL_LAUNCH_AT * n_days))
    candidates = (~cancel_only) & (first_sec >= ref_launch_day * DAY)
    referred = candidates & (rng.random(N) < REFERRED_SHARE)
    eligible_sorted = np.flatnonzero(~cancel_only)
    eligible_sorted = eligible_sorted[np.argsort(first_completed[eligible_sorted], kind="stable")]
    cum_w = np.cumsum(P["referral_weight"][persona[eligible_sorted]])
    ref_ids = np.flatnonzero(referred)
    k = np.searchsorted(first_completed[eligible_sorted], first_sec[ref_ids], side="left")
    ok = k > 0
    ref_ids, k = ref_ids[ok], k[ok]
    referred[:] = False
    referred[ref_ids] = True
    draw = rng.random(ref_ids.size) * cum_w[k - 1]
    j = np.minimum(np.searchsorted(cum_w, draw, side="right"), k - 1)
    referrer = eligible_sorted[j]
    r_order = np.lexsort((ref_ids, first_sec[ref_ids]))
    ref_ids, referrer = ref_ids[r_order], referrer[r_order]

    female = rng.random(N) < P["female"][persona]
    fam_names, fam_w = zip(*FAMILY_NAMES)
    fam = _choice(rng, fam_w, N)
    mid = np.where(female, len(MALE_MIDDLE) + rng.integers(0, len(FEMALE_MIDDLE), N),
                   rng.integers(0, len(MALE_MIDDLE), N))
    given = np.where(female, len(MALE_GIVEN) + rng.integers(0, len(FEMALE_GIVEN), N),
                     rng.integers(0, len(MALE_GIVEN), N))
    middles = _nfc(MALE_MIDDLE + FEMALE_MIDDLE)
    givens = _nfc(MALE_GIVEN + FEMALE_GIVEN)
    families = _nfc(fam_names)
    name = _strings(families, fam) + " " + _strings(middles, mid) + " " + _strings(givens, given)
    fold = lambda xs: [_fold(x).lower() for x in xs]  # noqa: E731
    g_ascii = _strings(fold(givens), given)
    f_ascii = _strings(fold(families), fam)
    m_ascii = _strings(fold(middles), mid)
    pattern = rng.integers(0, 4, N)
    number = np.where(rng.random(N) < 0.5, rng.integers(1970, 2006, N), rng.integers(1, 1000, N))
    num = pl.Series(number).cast(pl.String)
    dom_names, dom_w = zip(*EMAIL_DOMAINS)
    domain = _strings(dom_names, _choice(rng, dom_w, N))
    local = (
        pl.DataFrame({"g": g_ascii, "f": f_ascii, "m": m_ascii, "n": num, "k": pattern})
        .select(
            pl.when(pl.col("k") == 0).then(pl.concat_str(["g", "f", "n"]))
            .when(pl.col("k") == 1).then(pl.concat_str(["g", pl.lit("."), "f", "n"]))
            .when(pl.col("k") == 2).then(pl.concat_str(["f", "g", "n"]))
            .otherwise(pl.concat_str(["g", pl.col("m").str.slice(0, 1), "f", "n"]))
        )
        .to_series()
    )
    email = local + "@" + domain
    phone = (_strings(PHONE_PREFIXES, rng.integers(0, len(PHONE_PREFIXES), N))
             + pl.Series(rng.integers(0, 10_000_000, N)).cast(pl.String).str.zfill(7))
    region = _draw(rng, reg_mix, persona)
    lag = np.where(rng.random(N) < 0.6, 0, rng.integers(1, 8, N))
    lag = np.where(referred, 0, lag)
    signup_day = first_sec // DAY - lag
    acq_cost = np.round(np.asarray(ACQUISITION_COST)[first_channel]
                        * np.exp(0.25 * rng.standard_normal(N) - 0.03125) / 1000.0) * 1000.0
    acq_cost = np.where(referred, REFERRAL_REWARD, acq_cost)
    acq_channel = _strings(CHANNELS + ("referral",), np.where(referred, len(CHANNELS), first_channel))

    cust_id = _ids("KH", N, 6)
    customers_df = _frame("customers", {
        "customer_id": cust_id,
        "name": name,
        "email": email,
        "phone": phone,
        "region": _strings(REGIONS, region),
        "signup_date": _dates(start, signup_day),
        "acquisition_channel": acq_channel,
        "acquisition_cost": acq_cost,
    })

    orders_df = _frame("orders", {
        "order_id": _ids("DH", n_orders, 7),
        "customer_id": cust_id.gather(o_cust),
        "ordered_at": _timestamps(start, o_sec),
        "revenue": revenue,
        "discount": discount,
        "gross_margin": gross_margin,
        "channel": _strings(CHANNELS, o_channel),
        "status": _strings(STATUSES, o_status),
        "category": _strings(CATEGORIES, o_category),
    })

    referrals_df = _frame("referrals", {
        "referral_id": _ids("GT", ref_ids.size, 6),
        "referrer_id": cust_id.gather(referrer),
        "referred_id": cust_id.gather(ref_ids),
        "referred_at": _timestamps(start, first_sec[ref_ids]),
        "reward_cost": np.full(ref_ids.size, REFERRAL_REWARD),
    })

    # -- loyalty: members, points -----------------------------------------------------
    mem_rows = np.flatnonzero(completed & is_member[o_cust])
    mem_rows = mem_rows[o_sec[mem_rows] >= enrol_of[o_cust[mem_rows]]]
    order = np.lexsort((mem_rows, o_cust[mem_rows]))  # by customer, then time (rows are by time)
    mem_rows = mem_rows[order]
    l_cust = o_cust[mem_rows]
    l_sec = o_sec[mem_rows]
    points = np.floor(revenue[mem_rows] * POINTS_PER_VND + 1e-9).astype(np.int64)
    n_l = mem_rows.size
    first = np.r_[True, l_cust[1:] != l_cust[:-1]] if n_l else np.zeros(0, bool)
    last = np.r_[l_cust[1:] != l_cust[:-1], True] if n_l else np.zeros(0, bool)
    prev_sec = np.r_[0, l_sec[:-1]] if n_l else np.zeros(0, np.int64)
    expired_gap = ~first & (l_sec - prev_sec > EXPIRY_DAYS * DAY)
    redeemed = ~first & ~expired_gap & (rng.random(n_l) < rho[l_cust])
    seg_start = first | expired_gap | redeemed
    seg = np.cumsum(seg_start) - 1
    cum = np.cumsum(points)
    seg_cum = cum - (cum - points)[seg_start][seg]  # balance after this order's earn
    prev_bal = np.r_[0, seg_cum[:-1]] if n_l else np.zeros(0, np.int64)
    red_rows = np.flatnonzero(redeemed & (prev_bal > 0))
    exp_rows = np.flatnonzero(expired_gap & (prev_bal > 0))
    fin_rows = np.flatnonzero(last & (seg_cum > 0) & (l_sec + EXPIRY_DAYS * DAY < horizon))
    earn_rows = np.flatnonzero(points > 0)
    ev_cust = np.concatenate([l_cust[exp_rows], l_cust[red_rows], l_cust[earn_rows], l_cust[fin_rows]])
    ev_sec = np.concatenate([prev_sec[exp_rows] + EXPIRY_DAYS * DAY, l_sec[red_rows], l_sec[earn_rows],
                             l_sec[fin_rows] + EXPIRY_DAYS * DAY])
    ev_pts = np.concatenate([-prev_bal[exp_rows], -prev_bal[red_rows], points[earn_rows], -seg_cum[fin_rows]])
    ev_kind = np.concatenate([np.full(exp_rows.size, 2), np.full(red_rows.size, 1),
                              np.zeros(earn_rows.size), np.full(fin_rows.size, 2)]).astype(np.int8)
    ev_row = np.concatenate([exp_rows, red_rows, earn_rows, fin_rows])
    ev_rank = np.concatenate([np.zeros(exp_rows.size), np.zeros(red_rows.size),
                              np.ones(earn_rows.size), np.ones(fin_rows.size)])
    order = np.lexsort((ev_rank, ev_row, ev_cust, ev_sec))
    ev_cust, ev_sec, ev_pts, ev_kind = ev_cust[order], ev_sec[order], ev_pts[order], ev_kind[order]
    events_df = _frame("loyalty_events", {
        "event_id": _ids("LE", ev_cust.size, 7),
        "customer_id": cust_id.gather(ev_cust),
        "occurred_at": _timestamps(start, ev_sec),
        "kind": _strings(("earn", "redeem", "expire"), ev_kind),
        "points": ev_pts.astype(np.int64),
        "value": ev_pts.astype(float) * POINT_VALUE,
    })

    spend = np.zeros(N)
    np.add.at(spend, l_cust, revenue[mem_rows])
    tier = np.zeros(members.size, dtype=np.int8)
    for i, (threshold, _) in enumerate(TIERS):
        tier = np.where((tier == 0) & (spend[members] >= threshold), len(TIERS) - i, tier)
    m_order = np.argsort(enrol_sec, kind="stable")
    members_df = _frame("loyalty_members", {
        "customer_id": cust_id.gather(members[m_order]),
        "enrolled_at": _timestamps(start, enrol_sec[m_order]),
        "tier": _strings(("member", "silver", "gold", "platinum"), tier[m_order]),
    })

    # incremental margin truth: extra orders within 6 months of enrolment
    window = 6 * MONTH_DAYS * DAY
    ext_rows = np.flatnonzero(o_extra)
    in_window = o_sec[ext_rows] - enrol_of[o_cust[ext_rows]] <= window
    inc_margin = float(gross_margin[ext_rows[in_window]].sum())
    inc_orders = int(in_window.sum())
    member_months = float(np.minimum(window, horizon - enrol_sec).sum() / (MONTH_DAYS * DAY))

    # -- surveys ---------------------------------------------------------------------------
    crow = np.flatnonzero(completed)
    srow = crow[rng.random(crow.size) < SURVEY_RATE]
    s_sec = o_sec[srow] + rng.integers(DAY, 7 * DAY + 1, size=srow.size)
    keep = s_sec < horizon
    srow, s_sec = srow[keep], s_sec[keep]
    s_cust = o_cust[srow]
    s_channel = o_channel[srow]
    s_sat = satisfaction[s_cust]
    n_anon = int(round(ANONYMOUS_RATE * srow.size))
    if srow.size and n_anon:
        pick = rng.integers(0, srow.size, n_anon)
        a_sec = np.minimum((s_sec[pick] // DAY + rng.integers(-3, 4, n_anon)).clip(0, n_days - 1) * DAY
                           + _hours(rng, s_channel[pick]), horizon - 1)
        a_channel = s_channel[pick]
        a_sat = s_sat[pick] + 0.3 * rng.standard_normal(n_anon)
    else:
        a_sec = np.zeros(0, np.int64)
        a_channel = np.zeros(0, np.int8)
        a_sat = np.zeros(0)
        n_anon = 0
    r_cust = np.concatenate([s_cust, np.full(n_anon, -1)])
    r_sec = np.concatenate([s_sec, a_sec]).astype(np.int64)
    r_channel = np.concatenate([s_channel, a_channel]).astype(np.int8)
    r_sat = np.concatenate([s_sat, a_sat])
    n_r = r_cust.size
    touch = _draw(rng, np.asarray(TOUCHPOINT_BY_CHANNEL), r_channel.astype(np.int64))
    nps = np.clip(np.round(7.6 + 1.5 * r_sat + 1.2 * rng.standard_normal(n_r)), 0, 10).astype(np.int8)
    csat_v = np.clip(np.round(3.9 + 0.7 * r_sat + 0.6 * rng.standard_normal(n_r)), 1, 5)
    has_csat = rng.random(n_r) < CSAT_SHARE
    ces_v = np.clip(np.round(3.0 - 0.9 * r_sat + 0.9 * rng.standard_normal(n_r)), 1, 7)
    has_ces = rng.random(n_r) < np.asarray(CES_SHARE_BY_TOUCHPOINT)[touch]
    has_comment = rng.random(n_r) < COMMENT_SHARE
    english = rng.random(n_r) < ENGLISH_SHARE
    sentiment = np.where(nps >= 9, 0, np.where(nps >= 7, 1, 2))
    bank: list[str] = []
    comment_idx = np.full(n_r, -1, dtype=np.int64)
    u = rng.random(n_r)
    for lang, comments in ((False, COMMENTS_VI), (True, COMMENTS_EN)):
        for si, key in enumerate(("positive", "neutral", "negative")):
            texts = _nfc(comments[key])
            sel = has_comment & (english == lang) & (sentiment == si)
            comment_idx[sel] = len(bank) + np.minimum((u[sel] * len(texts)).astype(np.int64), len(texts) - 1)
            bank.extend(texts)
    comment = pl.Series([*bank, None], dtype=pl.String).gather(
        np.where(comment_idx < 0, len(bank), comment_idx)
    )
    order = np.lexsort((r_cust, r_sec))
    r_cust_s = r_cust[order]
    surveys_df = _frame("survey_responses", {
        "response_id": _ids("KS", n_r, 7),
        "customer_id": pl.concat([cust_id, pl.Series([None], dtype=pl.String)])
        .gather(np.where(r_cust_s < 0, N, r_cust_s)),
        "responded_at": _timestamps(start, r_sec[order]),
        "survey": _strings(SURVEY_BY_TOUCHPOINT, touch[order]),
        "touchpoint": _strings(TOUCHPOINTS, touch[order]),
        "nps": pl.Series(nps[order], dtype=pl.Int8),
        "csat": pl.Series(np.where(has_csat, csat_v, np.nan)[order]).fill_nan(None).cast(pl.Int8),
        "ces": pl.Series(np.where(has_ces, ces_v, np.nan)[order]).fill_nan(None).cast(pl.Int8),
        "comment": comment.gather(order),
        "channel": _strings(CHANNELS, r_channel[order]),
    })

    # -- programme costs -------------------------------------------------------------
    costs_df, cost_truth = _programme_costs(start, end, loyalty_launch_day, ref_launch_day, enrol_sec)

    tables = {
        "customers": customers_df,
        "orders": orders_df,
        "survey_responses": surveys_df,
        "loyalty_members": members_df,
        "loyalty_events": events_df,
        "referrals": referrals_df,
        "programme_costs": costs_df,
    }
    assert list(tables) == list(TABLES)

    truth = {
        "seed": seed,
        "customers": N,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "days": n_days,
        "years": years,
        "seasonality": seasonality,
        "personas": {
            x.name: {
                "label": x.label,
                "share": x.share,
                "customers": int((persona == i).sum()),
                "bgnbd": {"r": x.r, "alpha": x.alpha, "a": x.a, "b": x.b},
                "gamma_gamma": {"p": x.p, "q": x.q, "gamma": x.gamma},
                "mean_spend": x.p * x.gamma / (x.q - 1),
                "channels": dict(zip(CHANNELS, x.channels)),
                "categories": dict(zip(CATEGORIES, x.categories)),
                "regions": dict(zip(REGIONS, x.regions)),
                "discount_share": x.discount_share,
                "discount_depth": x.discount_depth,
                "satisfaction": x.satisfaction,
                "enrol_hazard": x.enrol_hazard,
                "referral_weight": x.referral_weight,
                "redeem": x.redeem,
            }
            for i, x in enumerate(PERSONAS)
        },
        "customer_persona": {
            "ids": cust_id.to_list(),
            "persona": [PERSONAS[i].name for i in persona.tolist()],
        },
        "cancelled_only": {
            "count": int(cancel_only.sum()),
            "ids": cust_id.filter(pl.Series(cancel_only)).to_list(),
        },
        "bgnbd_orders": int(base_cust.size),
        "loyalty": {
            "launch": (start + timedelta(days=loyalty_launch_day)).isoformat(),
            "true_lift": loyalty_lift,
            "rate_multiplier": 1.0 + loyalty_lift,
            "members": int(members.size),
            "extra_orders": int(ext_cust.size),
            "extra_orders_6m": inc_orders,
            "incremental_margin_6m": inc_margin,
            "member_months_6m": member_months,
            "incremental_margin_per_member_month": inc_margin / member_months if member_months else 0.0,
            "enrol_hazard": {x.name: x.enrol_hazard for x in PERSONAS},
            "point_value": POINT_VALUE,
            "vnd_per_point": int(round(1 / POINTS_PER_VND)),
            "expiry_days": EXPIRY_DAYS,
            **cost_truth,
        },
        "referral": {
            "launch": (start + timedelta(days=ref_launch_day)).isoformat(),
            "referred": int(ref_ids.size),
            "reward_cost": REFERRAL_REWARD,
            "share_of_new_after_launch": REFERRED_SHARE,
        },
        "survey": {
            "response_rate": SURVEY_RATE,
            "anonymous_rate": ANONYMOUS_RATE,
            "satisfaction": "s = -0.9 (logit p + 2) + persona offset + N(0, 0.5^2); "
                            "nps = round(7.6 + 1.5 s + N(0, 1.2^2)) clipped to 0-10",
            "ces_scale": "1-7, lower is easier",
        },
        "counts": {name: frame.height for name, frame in tables.items()},
    }
    return Demo(tables=tables, truth=truth)


def _order_channel(rng: np.random.Generator, cust: np.ndarray, persona: np.ndarray,
                   home: np.ndarray, mix: np.ndarray) -> np.ndarray:
    fresh = _draw(rng, mix, persona[cust])
    sticky = rng.random(cust.size) < HOME_CHANNEL_STICKINESS
    return np.where(sticky, home[cust], fresh).astype(np.int8)


def _order_seconds(rng: np.random.Generator, t: np.ndarray, channel: np.ndarray, n_days: int) -> np.ndarray:
    """Seconds since the start: the event's calendar day and an hour by channel."""
    day = np.clip(np.floor(t), 0, n_days - 1).astype(np.int64)
    return day * DAY + _hours(rng, channel)


def _programme_costs(start: date, end: date, loyalty_day: int, referral_day: int,
                     enrol_sec: np.ndarray) -> tuple[pl.DataFrame, dict]:
    rows: list[tuple[str, date, date, float, str]] = []
    enrol_days = np.sort(enrol_sec // DAY)
    for programme, launch_day, fee, note in (
        ("loyalty", loyalty_day, 15_000_000.0, "Phí nền tảng + chăm sóc hội viên"),
        ("referral", referral_day, 5_000_000.0, "Phí vận hành chương trình giới thiệu"),
    ):
        launch = start + timedelta(days=launch_day)
        for month in _month_starts(launch, end):
            nxt = date(month.year + (month.month == 12), month.month % 12 + 1, 1)
            p0, p1 = max(month, launch), min(nxt - timedelta(days=1), end)
            share = ((p1 - p0).days + 1) / (nxt - month).days
            amount = fee * share
            if programme == "loyalty":
                n_members = int(np.searchsorted(enrol_days, (p1 - start).days, side="right"))
                amount += 2_000.0 * n_members * share
            rows.append((programme, p0, p1, float(round(amount / 1000.0) * 1000.0), note))
    for year in range(start.year, end.year + 2):
        campaigns = []
        tet = TET.get(year)
        if tet is not None:
            campaigns.append((tet - timedelta(days=30), tet - timedelta(days=1), 120_000_000.0,
                              f"Chiến dịch Tết {year}"))
        campaigns.append((date(year, 11, 1), date(year, 11, 11), 60_000_000.0,
                          f"Siêu sale 11.11 năm {year}"))
        campaigns.append((date(year, 12, 1), date(year, 12, 12), 50_000_000.0, f"Sale 12.12 năm {year}"))
        for p0, p1, amount, note in campaigns:
            if p0 >= start and p1 <= end:
                rows.append(("campaign", p0, p1, amount, note))
    rows.sort(key=lambda r: (r[1], r[0], r[2]))
    costs = _frame("programme_costs", {
        "cost_id": _ids("CP", len(rows), 4),
        "programme": pl.Series([r[0] for r in rows], dtype=pl.String),
        "period_start": pl.Series([r[1] for r in rows], dtype=pl.Date),
        "period_end": pl.Series([r[2] for r in rows], dtype=pl.Date),
        "amount": pl.Series([r[3] for r in rows], dtype=pl.Float64),
        "note": pl.Series([r[4] for r in rows], dtype=pl.String),
    })
    total = {p: float(sum(r[3] for r in rows if r[0] == p)) for p in ("loyalty", "referral", "campaign")}
    return costs, {"programme_cost_total": total["loyalty"]}


# -- loading -------------------------------------------------------------------------------


def truth_json(truth: dict) -> str:
    """Indented JSON; the long per-customer lists go on one line each."""
    big = {"customer_persona": truth.get("customer_persona"), "cancelled_only": truth.get("cancelled_only")}
    marks = {key: f"@@{key}@@" for key, value in big.items() if value is not None}
    text = json.dumps({**truth, **marks}, indent=2, ensure_ascii=False)
    for key, mark in marks.items():
        text = text.replace(json.dumps(mark), json.dumps(big[key], ensure_ascii=False), 1)
    return text + "\n"


def build(
    store,
    *,
    customers: int = 20_000,
    seed: int = 7,
    end: date | None = None,
    years: float = 3.0,
    seasonality: bool = True,
    loyalty_lift: float = 0.25,
    truth_file: Path | None = None,
) -> dict:
    """Generate, load into ``store`` (replacing every table) and write the truth JSON.

    The truth goes to ``truth_file`` or, by default, beside the database
    (:func:`data.config.truth_path`); an in-memory store writes no file.
    """
    demo = generate(customers, seed=seed, end=end, years=years, seasonality=seasonality,
                    loyalty_lift=loyalty_lift)
    store.load_frames(demo.tables, kind="demo", mode="replace", keep_undo=False,
                      file_name=f"demo (seed {seed}, {customers} customers)")
    if truth_file is None and str(store.path) != ":memory:":
        truth_file = truth_path(Path(store.path))
    if truth_file is not None:
        truth_file = Path(truth_file)
        truth_file.parent.mkdir(parents=True, exist_ok=True)
        truth_file.write_text(truth_json(demo.truth), encoding="utf-8")
    return demo.truth


# -- command line ----------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _lift(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m data.demo",
        description="Fill the database with deterministic demo data and write its ground truth.",
    )
    p.add_argument("--customers", type=_positive_int, default=20_000, help="number of customers (20000)")
    p.add_argument("--seed", type=int, default=7, help="random seed (7)")
    p.add_argument("--db", type=Path, default=None, help="database file (default: data.config.db_path())")
    p.add_argument("--end", type=_iso_date, default=None, help="last day of the data, YYYY-MM-DD (today)")
    p.add_argument("--years", type=_positive_float, default=3.0, help="years of history (3)")
    p.add_argument("--no-seasonality", action="store_true", help="constant purchase intensity")
    p.add_argument("--lift", type=_lift, default=0.25, help="true loyalty lift of the purchase rate (0.25)")
    p.add_argument("--if-missing", action="store_true", help="build only if the database has no orders")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from data.store import Store

    path = args.db if args.db is not None else db_path()
    started = time.perf_counter()
    store = Store(path)
    try:
        if args.if_missing and not store.is_empty():
            print(f"demo: {path} already has orders; nothing done")
            return 0
        truth = build(store, customers=args.customers, seed=args.seed, end=args.end, years=args.years,
                      seasonality=not args.no_seasonality, loyalty_lift=args.lift)
    finally:
        store.close()
    counts = ", ".join(f"{name} {n:,}" for name, n in truth["counts"].items())
    print(f"demo: {counts} in {time.perf_counter() - started:.1f} s -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
