"""Property: whatever CSV comes in, the pipeline either rejects the whole file with a
FileProblem, or returns a report whose problems point at real lines; a clean report
loads exactly its rows, and loading it again changes nothing; a dirty one loads nothing."""

from __future__ import annotations

import csv
import io

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from data import importer
from data.parse import FileProblem
from data.store import Store

DATES = st.one_of(
    st.dates(min_value=__import__("datetime").date(2020, 1, 1), max_value=__import__("datetime").date(2026, 1, 1)).map(lambda d: d.isoformat()),
    st.dates(min_value=__import__("datetime").date(2020, 1, 1), max_value=__import__("datetime").date(2026, 1, 1)).map(lambda d: d.strftime("%d/%m/%Y")),
    st.sampled_from(["31/02/2024", "not a date", "", "2099-01-01"]),
)
AMOUNTS = st.one_of(
    st.integers(0, 50_000_000).map(str),
    st.integers(0, 50_000_000).map(lambda n: f"{n:,}".replace(",", ".") + " ₫"),
    st.sampled_from(["-5", "12abc", "", "1,5"]),
)
STATUSES = st.sampled_from(["completed", "Hoàn thành", "Đã hủy", "refunded", "paid", "weird", ""])
ROW = st.tuples(st.sampled_from(["O1", "O2", "O3", "O4", "O5", "O6"]), st.sampled_from(["A", "B", "C"]),
                DATES, AMOUNTS, STATUSES, st.text(alphabet="abc ,;\"\n|đ", max_size=6))


def render(rows, delimiter: str, quoting: int, encoding: str) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, quoting=quoting, lineterminator="\n")
    w.writerow(["order_id", "customer_id", "ordered_at", "revenue", "status", "category"])
    w.writerows(rows)
    return buf.getvalue().encode(encoding)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(ROW, min_size=1, max_size=12), delimiter=st.sampled_from([",", ";", "\t", "|"]),
       quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]), encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]))
def test_any_csv_is_rejected_whole_or_reported_line_by_line(rows, delimiter, quoting, encoding):
    raw = render(rows, delimiter, quoting, encoding)
    try:
        report = importer.check_file(raw, "gen.csv", "orders")
    except FileProblem as e:
        assert "gen.csv" in str(e)
        return
    physical_lines = raw.decode(encoding).count("\n") + 1
    assert all(2 <= line <= physical_lines for line in report.problems["line"])
    store = Store(":memory:")
    try:
        if report.ok:
            importer.load(store, report)
            assert store.scalar("SELECT count(*) FROM orders") == report.valid.height
            again = importer.load(store, report)
            assert store.imports().filter(store.imports()["import_id"] == again)["rows_loaded"][0] == 0
        else:
            try:
                importer.load(store, report)
                raise AssertionError("a report with problems loaded")
            except FileProblem:
                pass
            assert store.scalar("SELECT count(*) FROM orders") == 0
    finally:
        store.close()
