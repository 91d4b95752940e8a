"""The metric catalogue: configuration as data.

Each entry: the label in both languages, its unit (how it is formatted), whether a rise
is good, and the definition shown as help text and in the glossary. The definitions are
those of shared/DESIGN.md; the code that computes each metric repeats it in a docstring.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    key: str
    label_vi: str
    label_en: str
    unit: str  # money | count | rate | score | ratio | scale
    higher_is_better: bool
    definition_vi: str
    definition_en: str

    def label(self, lang: str) -> str:
        return self.label_vi if lang == "vi" else self.label_en

    def definition(self, lang: str) -> str:
        return self.definition_vi if lang == "vi" else self.definition_en


CATALOGUE: dict[str, Metric] = {
    m.key: m
    for m in [
        Metric(
            "revenue", "Doanh thu", "Revenue", "money", True,
            "Tổng doanh thu thuần của các đơn hoàn thành trong kỳ.",
            "Net revenue of completed orders in the period.",
        ),
        Metric(
            "orders", "Đơn hàng", "Orders", "count", True,
            "Số đơn hàng hoàn thành trong kỳ (không tính đơn hủy và hoàn tiền).",
            "Completed orders in the period (cancelled and refunded excluded).",
        ),
        Metric(
            "active_customers", "Khách hàng hoạt động", "Active customers", "count", True,
            "Khách có ít nhất một đơn hoàn thành trong kỳ.",
            "Customers with at least one completed order in the period.",
        ),
        Metric(
            "new_customers", "Khách hàng mới", "New customers", "count", True,
            "Khách có đơn hoàn thành đầu tiên nằm trong kỳ.",
            "Customers whose first completed order falls in the period.",
        ),
        Metric(
            "customer_base", "Khách hàng hiện hữu", "Customer base", "count", True,
            "Khách có đơn hoàn thành gần nhất nằm trong cửa sổ không hoạt động (mặc định 90 ngày) trước cuối kỳ.",
            "Customers whose last completed order is within the inactivity window "
            "(default 90 days) before the end of the period.",
        ),
        Metric(
            "retention_rate", "Tỷ lệ giữ chân", "Retention rate", "rate", True,
            "1 − tỷ lệ rời bỏ; tương đương (E − N) / S với S là số khách hiện hữu đầu kỳ, E cuối kỳ, N số khách mới vào hoặc quay lại trong kỳ.",
            "1 − churn rate; the same as (E − N) / S with S the base at the start, "
            "E at the end and N the customers who entered the base during the period.",
        ),
        Metric(
            "churn_rate", "Tỷ lệ rời bỏ", "Churn rate", "rate", False,
            "Khách hiện hữu ở đầu kỳ nhưng không còn hiện hữu ở cuối kỳ, chia cho số khách hiện hữu đầu kỳ.",
            "Customers in the base at the start of the period who are no longer in it "
            "at the end, over the base at the start.",
        ),
        Metric(
            "repeat_rate", "Tỷ lệ mua lại", "Repeat purchase rate", "rate", True,
            "Trong số khách hoạt động trong kỳ, tỷ lệ khách có từ hai đơn hoàn thành trở lên (tính đến cuối kỳ).",
            "Of the customers active in the period, the share with two or more completed "
            "orders in total by the end of the period.",
        ),
        Metric(
            "aov", "Giá trị đơn trung bình", "Average order value", "money", True,
            "Doanh thu chia cho số đơn hoàn thành.",
            "Revenue over completed orders.",
        ),
        Metric(
            "purchase_frequency", "Tần suất mua", "Purchase frequency", "ratio", True,
            "Số đơn hoàn thành chia cho số khách hoạt động trong kỳ.",
            "Completed orders over active customers in the period.",
        ),
        Metric(
            "avg_historical_clv", "CLV lịch sử trung bình", "Average historical CLV", "money", True,
            "Lợi nhuận gộp tích lũy đến cuối kỳ chia cho số khách đã có đơn hoàn thành đến cuối kỳ.",
            "Cumulative gross margin to the end of the period over the customers with a "
            "completed order by then.",
        ),
        Metric(
            "nps", "NPS", "NPS", "score", True,
            "% người ủng hộ (9–10) trừ % người phản đối (0–6), thang −100 đến 100.",
            "% promoters (9–10) minus % detractors (0–6), from −100 to 100.",
        ),
        Metric(
            "csat", "CSAT", "CSAT", "rate", True,
            "Tỷ lệ câu trả lời 4–5 trên thang 1–5.",
            "Share of answers of 4 or 5 on a 1–5 scale.",
        ),
        Metric(
            "ces", "CES", "CES", "scale", False,
            "Điểm nỗ lực trung bình trên thang 1–7 (thấp hơn là dễ dàng hơn).",
            "Mean effort score on a 1–7 scale (lower is easier).",
        ),
        Metric(
            "referral_rate", "Tỷ lệ giới thiệu", "Referral rate", "rate", True,
            "Khách mới đến qua giới thiệu chia cho tổng khách mới.",
            "New customers acquired by referral over all new customers.",
        ),
        Metric(
            "returning_revenue_share", "Tỷ trọng doanh thu từ khách quay lại",
            "Revenue share from returning customers", "rate", True,
            "Doanh thu từ khách có đơn hoàn thành đầu tiên trước kỳ, chia cho tổng doanh thu của kỳ.",
            "Revenue from customers whose first completed order came before the period, "
            "over all revenue in the period.",
        ),
    ]
}

HEADLINE_KPI = "returning_revenue_share"
# The KPI cards, in order (the headline is drawn apart).
OVERVIEW_KPIS: tuple[str, ...] = tuple(k for k in CATALOGUE if k != HEADLINE_KPI)
