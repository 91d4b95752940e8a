"""The SQL fast forms of data.staging read exactly what data.parse reads.

A value the fast form accepts is cast by DuckDB; every other value goes through the
Polars parsers. So the two must agree on every value the fast form accepts, and a
file must come out the same whichever way its values were read.
"""

from __future__ import annotations

import duckdb
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from data import importer, staging
from data.kinds import Field
from data.store import Store

CON = duckdb.connect()


def fast(type_: str, values: list[str]) -> list:
    guard, cast = staging.FAST[type_]
    frame = pl.DataFrame({"c0": values}, schema={"c0": pl.Utf8})  # noqa: F841 - read by DuckDB
    sql = f"SELECT CASE WHEN {guard.format(c='c0')} THEN {cast.format(c='c0')} END FROM frame"
    return [r[0] for r in CON.execute(sql).fetchall()]


def reference(type_: str, values: list[str]) -> list:
    value, _ = staging.convert_values(Field("x", type_), pl.Series(values, dtype=pl.Utf8))
    return value.to_list()


def assert_agree(type_: str, values: list[str]) -> None:
    """Every value the fast form reads, the Polars parser reads the same."""
    for v, f, r in zip(values, fast(type_, values), reference(type_, values)):
        if f is not None:
            assert f == r, (type_, v, f, r)


digits = st.text(alphabet="0123456789", min_size=1, max_size=16)
amounts = st.one_of(
    st.builds(lambda s, i, d: f"{s}{i}.{d}" if d else f"{s}{i}", st.sampled_from(["", "-", "+"]), digits,
              st.text(alphabet="0123456789", max_size=5)),
    st.text(alphabet="0123456789.,-+ _₫eE", max_size=14),
)
stamps = st.one_of(
    st.builds(lambda y, mo, d, h, mi, s, form: form.format(y=y, mo=mo, d=d, h=h, mi=mi, s=s),
              st.integers(1890, 2210), st.integers(0, 13), st.integers(0, 32), st.integers(0, 25),
              st.integers(0, 60), st.integers(0, 60),
              st.sampled_from(["{y:04d}-{mo:02d}-{d:02d}", "{y:04d}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}",
                               "{y:04d}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}", "{y}-{mo}-{d}",
                               "{d:02d}/{mo:02d}/{y:04d}", "{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}"])),
    st.text(alphabet="0123456789-: /T+Z", max_size=22),
)


@settings(max_examples=120, deadline=None)
@given(st.lists(amounts, min_size=1, max_size=20))
def test_fast_amounts_agree_with_the_polars_parser(values):
    for type_ in ("amount", "rate"):
        assert_agree(type_, values)


@settings(max_examples=120, deadline=None)
@given(st.lists(st.one_of(digits, st.builds(lambda d: "-" + d, digits), amounts), min_size=1, max_size=20))
def test_fast_integers_agree_with_the_polars_parser(values):
    assert_agree("int", values)


@settings(max_examples=120, deadline=None)
@given(st.lists(stamps, min_size=1, max_size=20))
def test_fast_timestamps_agree_with_the_polars_parser(values):
    for type_ in ("datetime", "date"):
        assert_agree(type_, values)


def test_the_fast_forms_skip_what_only_the_parser_reads_right():
    # '1.234' is 1234 to the parser (a thousands group), hour 24 does not exist.
    assert fast("amount", ["1.234", "12.5", "1000"]) == [None, 12.5, 1000.0]
    assert fast("datetime", ["2024-01-05 24:00:00", "05/01/2024"]) == [None, None]


def test_a_file_reads_the_same_in_sql_and_through_polars(tmp_path):
    """Mixed plain and messy values: the residue path and the fast path meet."""
    rows = ["order_id,customer_id,ordered_at,revenue,channel,status",
            "A1,K1,2024-05-01 10:00:00,1000,web,completed",
            "A2,K2,05/01/2024,1.234.567 ₫,Zalo,Hoàn thành",
            "A3, K3 ,2024-05-02,12.50,shopee,paid",
            "'A4,K4,31/01/2024 08:15,\"1,234.50\",FB,đã giao"]
    raw = ("\n".join(rows) + "\n").encode()
    report = importer.check_file(raw, "mixed.csv", "orders")
    assert report.ok, report.problems
    valid = report.valid
    assert valid["order_id"].to_list() == ["A1", "A2", "A3", "A4"]
    assert valid["customer_id"].to_list() == ["K1", "K2", "K3", "K4"]
    assert valid["revenue"].to_list() == [1000.0, 1234567.0, 12.5, 1234.5]
    assert [d.isoformat() for d in valid["ordered_at"].to_list()] == [
        "2024-05-01T10:00:00", "2024-01-05T00:00:00", "2024-05-02T00:00:00", "2024-01-31T08:15:00"]
    assert valid["channel"].to_list() == ["website", "zalo_oa", "shopee", "facebook"]
    report.close()


def test_checked_rows_load_from_the_stores_own_duckdb(tmp_path):
    """With the store given, the rows wait in a scratch database of the store's
    DuckDB and load without a copy through Python; the scratch is dropped after."""
    store = Store(tmp_path / "s.duckdb")
    path = tmp_path / "o.csv"
    path.write_text("order_id,customer_id,ordered_at,revenue,status\n"
                    "A1,K1,2024-05-01,1000,completed\nA2,K2,2024-05-02,2000,completed\n")
    report = importer.check_file(path, "o.csv", "orders", store=store)
    assert report.stage.owner is store and report.valid_count() == 2
    importer.load(store, report, mode="append")
    assert report.stage.closed
    assert store.query("SELECT order_id, revenue FROM orders ORDER BY 1").rows() == [("A1", 1000.0), ("A2", 2000.0)]
    attached = store.query("SELECT database_name FROM duckdb_databases() WHERE database_name LIKE 'stage_%'")
    assert attached.height == 0
    store.close()


def test_progress_is_reported_while_reading_and_checking(tmp_path):
    seen = []
    raw = ("order_id,customer_id,ordered_at,revenue,status\n" + "".join(
        f"A{i},K{i % 50},2024-05-01,{i},completed\n" for i in range(5000))).encode()
    report = importer.check_file(raw, "o.csv", "orders", progress=lambda p, step: seen.append((p, step)))
    assert report.ok and seen[0] == (0.0, "reading") and seen[-1] == (1.0, "checked")
    assert all(0.0 <= p <= 1.0 for p, _ in seen) and [p for p, _ in seen] == sorted(p for p, _ in seen)
    report.close()


def test_statuses_past_the_first_rows_and_repeats_read_the_same(monkeypatch):
    """Statuses and channels are mapped in the first pass from the values of the first
    rows; a value seen only later goes through the residue, and an unknown one is
    still reported with its line. Exact repeats are dropped from the view."""
    monkeypatch.setattr(staging, "HEAD_ROWS", 2)
    rows = ["order_id,customer_id,ordered_at,revenue,channel,status",
            "A1,K1,2024-05-01,1000,web,completed",
            "A2,K2,2024-05-01,1000,web,completed",
            "A3,K3,2024-05-01,1000,Zalo,Đã hủy",
            "A3,K3,2024-05-01,1000,Zalo,Đã hủy",
            "A4,K4,2024-05-01,1000,web,lost in the post"]
    report = importer.check_file(("\n".join(rows) + "\n").encode(), "late.csv", "orders")
    assert report.problems.select("line", "column", "value").rows() == [(6, "status", "lost in the post")]
    assert any("another row exactly and w" in n for n in report.notes)
    valid = report.valid.sort("order_id")
    assert valid["status"].to_list() == ["completed", "completed", "cancelled"]
    assert valid["channel"].to_list() == ["website", "website", "zalo_oa"]
    report.close()
