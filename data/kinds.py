"""What each import kind expects: fields, their types, and the headers that name them.

Configuration as data. A header matches a field when, after Unicode NFC
normalisation, whitespace folding and case folding (``data.parse.normalise_header``),
it equals the field's canonical name or one of its aliases (Vietnamese and English).
Never by position.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CHANNEL_ALIASES = {
    "website": "website", "web": "website", "online store": "website", "online": "website", "trang web": "website",
    "shopee": "shopee", "shopee mall": "shopee",
    "zalo": "zalo_oa", "zalo oa": "zalo_oa", "zalo_oa": "zalo_oa", "zalo official account": "zalo_oa",
    "facebook": "facebook", "fb": "facebook", "messenger": "facebook", "facebook shop": "facebook",
    "store": "store", "cửa hàng": "store", "pos": "store", "offline": "store", "tại cửa hàng": "store", "shop": "store",
    "app": "app", "ứng dụng": "app", "mobile app": "app", "ứng dụng di động": "app",
    "referral": "referral", "giới thiệu": "referral",
    "tiktok": "tiktok", "tiktok shop": "tiktok", "lazada": "lazada",
}


@dataclass(frozen=True)
class Field:
    """One canonical column. ``type``: id, text, amount, rate, int, datetime, date,
    phone, email, status, channel or enum (with ``allowed``). ``low``/``high`` bound
    numbers (inclusive)."""

    name: str
    type: str
    required: bool = False
    aliases: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class Kind:
    name: str
    table: str
    fields: tuple[Field, ...]
    label_vi: str
    label_en: str
    generated_key: bool = False  # the key may be missing: made from the file's hash and line
    derived: dict[str, str] = field(default_factory=dict)  # helper field -> what it derives

    def label(self, lang: str) -> str:
        return self.label_vi if lang == "vi" else self.label_en

    @property
    def key(self) -> str:
        return self.fields[0].name

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)


def F(name: str, type_: str, *aliases: str, required: bool = False, allowed: tuple[str, ...] = (),
      low: float | None = None, high: float | None = None) -> Field:
    return Field(name, type_, required, tuple(aliases), allowed, low, high)


KINDS: dict[str, Kind] = {
    k.name: k
    for k in [
        Kind("orders", "orders", (
            F("order_id", "id", "order id", "order_id", "mã đơn hàng", "mã đơn", "order number", "order no",
              "số đơn hàng", "id đơn hàng", "order", "mã hóa đơn", "invoice", "invoice number", required=True),
            F("customer_id", "id", "customer id", "customer_id", "mã khách hàng", "mã kh", "customer",
              "khách hàng id", "id khách hàng", "buyer id", "mã người mua", required=True),
            F("ordered_at", "datetime", "order date", "ordered at", "created at", "created_at", "ngày đặt hàng",
              "ngày đặt", "thời gian đặt hàng", "ngày tạo đơn", "ngày", "date", "order time", "thời gian tạo",
              required=True),
            F("revenue", "amount", "net revenue", "revenue", "total", "thành tiền", "tổng tiền", "doanh thu",
              "tổng thanh toán", "tổng cộng", "amount", "order total", "giá trị đơn hàng", required=True, low=0),
            F("discount", "amount", "discount", "giảm giá", "chiết khấu", "discount amount", "khuyến mãi", low=0),
            F("gross_margin", "amount", "gross margin", "margin", "lợi nhuận gộp", "lãi gộp", "lợi nhuận"),
            F("margin_rate", "rate", "margin rate", "gross margin rate", "tỷ suất lợi nhuận", "biên lợi nhuận",
              "% lợi nhuận", low=-1, high=1),
            F("channel", "channel", "channel", "kênh", "kênh bán", "kênh bán hàng", "nguồn", "source", "sales channel"),
            F("status", "status", "status", "trạng thái", "trạng thái đơn hàng", "order status", "tình trạng",
              required=True),
            F("category", "text", "category", "danh mục", "ngành hàng", "loại sản phẩm", "product category",
              "nhóm hàng"),
        ), "Đơn hàng", "Orders", derived={"margin_rate": "gross_margin = revenue x margin_rate"}),
        Kind("customers", "customers", (
            F("customer_id", "id", "customer id", "mã khách hàng", "mã kh", "id", "customer", required=True),
            F("name", "text", "name", "full name", "customer name", "họ tên", "họ và tên", "tên khách hàng", "tên"),
            F("email", "email", "email", "e-mail", "địa chỉ email", "thư điện tử"),
            F("phone", "phone", "phone", "phone number", "số điện thoại", "sđt", "điện thoại", "mobile", "di động"),
            F("region", "text", "region", "khu vực", "tỉnh/thành", "tỉnh thành", "tỉnh", "thành phố", "city",
              "province", "vùng"),
            F("signup_date", "date", "signup date", "sign-up date", "ngày đăng ký", "ngày tạo", "created at",
              "registration date", "ngày tham gia"),
            F("acquisition_channel", "channel", "acquisition channel", "kênh thu hút", "nguồn khách", "source",
              "kênh"),
            F("acquisition_cost", "amount", "acquisition cost", "cac", "chi phí thu hút", "chi phí có khách",
              low=0),
        ), "Khách hàng", "Customers"),
        Kind("survey_responses", "survey_responses", (
            F("response_id", "id", "response id", "mã phản hồi", "id phản hồi", "respondent id"),
            F("customer_id", "id", "customer id", "mã khách hàng", "mã kh", "customer"),
            F("responded_at", "datetime", "responded at", "timestamp", "dấu thời gian", "submitted at",
              "ngày trả lời", "thời gian", "date", "ngày", required=True),
            F("survey", "text", "survey", "khảo sát", "tên khảo sát", "survey name"),
            F("touchpoint", "text", "touchpoint", "điểm chạm", "điểm tiếp xúc"),
            F("nps", "int", "nps", "nps score", "điểm nps", "likelihood to recommend", low=0, high=10),
            F("csat", "int", "csat", "csat score", "điểm hài lòng", "mức độ hài lòng", "satisfaction", low=1, high=5),
            F("ces", "int", "ces", "ces score", "customer effort", "mức độ dễ dàng", "điểm nỗ lực", low=1, high=7),
            F("comment", "text", "comment", "comments", "feedback", "góp ý", "nhận xét", "ý kiến", "bình luận"),
            F("channel", "channel", "channel", "kênh"),
        ), "Khảo sát", "Survey responses", generated_key=True),
        Kind("loyalty_members", "loyalty_members", (
            F("customer_id", "id", "customer id", "mã khách hàng", "mã kh", "member id", "mã thành viên",
              required=True),
            F("enrolled_at", "datetime", "enrolled at", "enrolment date", "enrollment date", "ngày tham gia",
              "ngày đăng ký", "joined at", required=True),
            F("tier", "text", "tier", "hạng", "hạng thành viên", "cấp độ", "level"),
        ), "Thành viên", "Loyalty members"),
        Kind("loyalty_events", "loyalty_events", (
            F("event_id", "id", "event id", "mã giao dịch", "transaction id", "mã sự kiện", required=True),
            F("customer_id", "id", "customer id", "mã khách hàng", "mã kh", "member id", required=True),
            F("occurred_at", "datetime", "occurred at", "date", "ngày", "thời gian", "ngày giao dịch",
              required=True),
            F("kind", "enum", "kind", "type", "loại", "loại giao dịch", required=True,
              allowed=("earn", "redeem", "expire", "adjust")),
            F("points", "int", "points", "điểm", "số điểm", required=True),
            F("value", "amount", "value", "giá trị", "giá trị quy đổi"),
        ), "Sự kiện điểm thưởng", "Loyalty events"),
        Kind("referrals", "referrals", (
            F("referral_id", "id", "referral id", "mã giới thiệu", required=True),
            F("referrer_id", "id", "referrer id", "người giới thiệu", "mã người giới thiệu", required=True),
            F("referred_id", "id", "referred id", "người được giới thiệu", "mã người được giới thiệu",
              required=True),
            F("referred_at", "datetime", "referred at", "date", "ngày giới thiệu", "ngày", required=True),
            F("reward_cost", "amount", "reward cost", "chi phí thưởng", "reward", "thưởng", low=0),
        ), "Giới thiệu", "Referrals"),
        Kind("programme_costs", "programme_costs", (
            F("cost_id", "id", "cost id", "mã chi phí", required=True),
            F("programme", "enum", "programme", "program", "chương trình", required=True,
              allowed=("loyalty", "referral", "campaign")),
            F("period_start", "date", "period start", "from", "từ ngày", "ngày bắt đầu", "start", required=True),
            F("period_end", "date", "period end", "to", "đến ngày", "ngày kết thúc", "end", required=True),
            F("amount", "amount", "amount", "số tiền", "chi phí", "cost", required=True, low=0),
            F("note", "text", "note", "ghi chú", "notes", "description", "mô tả"),
        ), "Chi phí chương trình", "Programme costs"),
    ]
}

ENUM_ALIASES: dict[str, dict[str, str]] = {
    "kind": {"earn": "earn", "tích điểm": "earn", "cộng điểm": "earn", "redeem": "redeem", "đổi điểm": "redeem",
             "dùng điểm": "redeem", "expire": "expire", "hết hạn": "expire", "adjust": "adjust",
             "điều chỉnh": "adjust"},
    "programme": {"loyalty": "loyalty", "khách hàng thân thiết": "loyalty", "thành viên": "loyalty",
                  "referral": "referral", "giới thiệu": "referral", "campaign": "campaign", "chiến dịch": "campaign"},
}
