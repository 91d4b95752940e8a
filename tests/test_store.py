"""The store: schema, keys, all-or-nothing loads, the database path."""

from __future__ import annotations

from datetime import datetime

import duckdb
import polars as pl
import pytest

from data import config
from data.store import SCHEMA_VERSION, TABLES, Store
from tests.conftest import tiny_frames


def snapshot(store: Store) -> dict[str, list]:
    return {name: store.query(f"SELECT * FROM {name} ORDER BY ALL").rows() for name in [*TABLES, "imports"]}


def test_schema_is_created_idempotently(tmp_path):
    path = tmp_path / "x.duckdb"
    Store(path).close()
    s = Store(path)
    assert s.schema_version() == SCHEMA_VERSION
    assert s.scalar("SELECT count(*) FROM schema_version") == 1
    tables = set(s.query("SELECT table_name FROM information_schema.tables")["table_name"])
    assert set(TABLES) | {"imports", "schema_version"} <= tables
    s.close()


def test_external_tools_can_read_the_canonical_tables(tmp_path):
    path = tmp_path / "x.duckdb"
    s = Store(path)
    s.load_frames(tiny_frames(), kind="test")
    s.close()
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("SELECT count(*) FROM orders WHERE status = 'completed'").fetchall() == [(9,)]
    con.close()


def test_keys_are_assigned_and_stay_stable(tiny_store):
    keys = dict(tiny_store.query("SELECT customer_id, customer_key FROM customers").rows())
    assert sorted(keys.values()) == [1, 2, 3, 4, 5, 6]
    tiny_store.load_frames(
        {"orders": pl.DataFrame({"order_id": ["N1"], "customer_id": ["Z"], "ordered_at": [datetime(2024, 5, 1)],
                                 "revenue": [10.0], "status": ["completed"]})},
        kind="test", mode="append",
    )
    after = dict(tiny_store.query("SELECT customer_id, customer_key FROM customers").rows())
    assert {k: after[k] for k in keys} == keys and after["Z"] == 7
    # An order for an unknown customer created a minimal customer row.
    assert tiny_store.query("SELECT name, region FROM customers WHERE customer_id = 'Z'").rows() == [(None, None)]
    assert tiny_store.scalar("SELECT count(*) FROM orders WHERE customer_key IS NULL") == 0
    assert tiny_store.query("SELECT referrer_key, referred_key FROM referrals").rows() == [(keys["A"], keys["E"])]


def test_replacing_customers_keeps_keys_and_referenced_customers(tiny_store):
    keys = dict(tiny_store.query("SELECT customer_id, customer_key FROM customers").rows())
    tiny_store.load_frames({"customers": pl.DataFrame({"customer_id": ["B", "Q"], "name": ["Bình", "Quân"]})}, kind="test")
    after = dict(tiny_store.query("SELECT customer_id, customer_key FROM customers").rows())
    assert after["B"] == keys["B"] and after["Q"] == 7
    # A, C, D, E, F still have orders, so they keep (minimal) customer rows and their keys.
    assert {k: after[k] for k in "ACDEF"} == {k: keys[k] for k in "ACDEF"}


def test_a_failed_load_changes_nothing(tiny_store):
    before = snapshot(tiny_store)
    version = tiny_store.data_version()
    bad = tiny_frames()
    bad["orders"] = bad["orders"].with_columns(pl.when(pl.col("order_id") == "O7").then(None).otherwise(pl.col("ordered_at")).alias("ordered_at"))
    with pytest.raises(duckdb.ConstraintException, match="ordered_at"):
        tiny_store.load_frames(bad, kind="test", mode="replace")
    assert snapshot(tiny_store) == before
    assert tiny_store.data_version() == version


def test_loads_are_recorded_and_bump_the_data_version(tiny_store):
    v1 = tiny_store.data_version()
    iid = tiny_store.load_frames({"programme_costs": pl.DataFrame({
        "cost_id": ["C1"], "programme": ["loyalty"], "period_start": [datetime(2024, 1, 1).date()],
        "period_end": [datetime(2024, 1, 31).date()], "amount": [1000.0]})}, kind="programme_costs",
        file_name="costs.csv", sha256="ab" * 32, mode="append")
    assert tiny_store.data_version() != v1
    row = tiny_store.imports().row(0, named=True)
    assert (row["import_id"], row["kind"], row["file_name"], row["rows_loaded"], row["mode"], row["status"]) == (
        iid, "programme_costs", "costs.csv", 1, "append", "loaded")
    assert tiny_store.scalar("SELECT import_id FROM programme_costs") == iid


def test_unknown_tables_and_columns_are_refused(tiny_store):
    with pytest.raises(ValueError, match="unknown tables"):
        tiny_store.load_frames({"orders; DROP TABLE orders": pl.DataFrame({"a": [1]})}, kind="x")
    with pytest.raises(ValueError, match="unknown columns"):
        tiny_store.load_frames({"orders": pl.DataFrame({'a"; DROP TABLE orders;--': [1]})}, kind="x")
    assert tiny_store.scalar("SELECT count(*) FROM orders") == 11


def test_database_path_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv(config.ENV_VAR, raising=False)
    missing = tmp_path / "none.toml"
    assert config.db_path(missing) == config.DEFAULT_DB_PATH
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[store]\npath = "elsewhere/w.duckdb"\n')
    assert config.db_path(secrets) == (config.PROJECT_ROOT / "elsewhere/w.duckdb").resolve()
    monkeypatch.setenv(config.ENV_VAR, str(tmp_path / "env.duckdb"))
    assert config.db_path(secrets) == (tmp_path / "env.duckdb").resolve()
    assert config.truth_path(tmp_path / "w.duckdb") == tmp_path / "w.truth.json"


def data_snapshot(store: Store) -> dict[str, list]:
    return {name: store.query(f"SELECT * FROM {name} ORDER BY ALL").rows() for name in TABLES}


def test_appending_the_same_rows_twice_changes_nothing(tiny_store):
    before = data_snapshot(tiny_store)
    iid = tiny_store.load_frames(tiny_frames(), kind="test", mode="append")
    assert data_snapshot(tiny_store) == before
    assert tiny_store.imports().filter(pl.col("import_id") == iid)["rows_loaded"][0] == 0


def test_a_newer_status_replaces_the_old_row_and_undo_restores_it(tiny_store):
    before = data_snapshot(tiny_store)
    newer = tiny_frames()["orders"].filter(pl.col("order_id") == "O3").with_columns(status=pl.lit("refunded"))
    added = pl.DataFrame({"order_id": ["O99"], "customer_id": ["A"], "ordered_at": [datetime(2024, 4, 2)],
                          "revenue": [5.0], "status": ["completed"]})
    iid = tiny_store.load_frames({"orders": pl.concat([newer, added], how="diagonal")}, kind="orders", mode="append")
    assert tiny_store.query("SELECT status, import_id FROM orders WHERE order_id = 'O3'").rows() == [("refunded", iid)]
    assert tiny_store.scalar("SELECT count(*) FROM orders") == 12
    assert tiny_store.imports().filter(pl.col("import_id") == iid)["rows_loaded"][0] == 2
    assert tiny_store.undo_import(iid) == {"removed": 2, "restored": 1}
    assert data_snapshot(tiny_store) == before
    assert tiny_store.imports().filter(pl.col("import_id") == iid)["status"][0] == "undone"
    with pytest.raises(ValueError, match="undone"):
        tiny_store.undo_import(iid)


def test_undo_of_a_replace_restores_every_row(tiny_store):
    before = data_snapshot(tiny_store)
    iid = tiny_store.load_frames({"orders": tiny_frames()["orders"].head(2)}, kind="orders", mode="replace")
    assert tiny_store.scalar("SELECT count(*) FROM orders") == 2
    tiny_store.undo_import(iid)
    assert data_snapshot(tiny_store) == before


def test_undo_is_refused_while_a_later_import_touched_the_same_table(tiny_store):
    first = tiny_store.load_frames({"orders": pl.DataFrame({"order_id": ["N1"], "customer_id": ["A"], "ordered_at": [datetime(2024, 5, 1)],
                                                            "revenue": [1.0], "status": ["completed"]})}, kind="orders", mode="append")
    second = tiny_store.load_frames({"orders": pl.DataFrame({"order_id": ["N2"], "customer_id": ["A"], "ordered_at": [datetime(2024, 5, 2)],
                                                             "revenue": [1.0], "status": ["completed"]})}, kind="orders", mode="append")
    with pytest.raises(ValueError, match="undo that import first"):
        tiny_store.undo_import(first)
    tiny_store.undo_import(second)
    tiny_store.undo_import(first)
    assert tiny_store.scalar("SELECT count(*) FROM orders WHERE order_id LIKE 'N%'") == 0
    with pytest.raises(ValueError, match="no import 999"):
        tiny_store.undo_import(999)


def test_many_new_customers_all_get_their_keys():
    """300,000 new ids (more than two DuckDB row groups) each get a key, and their
    orders find it: an INSERT into a temp table inside the load's transaction once
    lost them all beyond one row group."""
    n = 300_000
    ids = [f"KH{i:07d}" for i in range(n)]
    store = Store(":memory:")
    orders = pl.DataFrame({"order_id": [f"O{i}" for i in range(n)], "customer_id": ids,
                           "ordered_at": [datetime(2024, 1, 1)] * n, "revenue": [1.0] * n, "status": ["completed"] * n})
    store.load_frames({"customers": pl.DataFrame({"customer_id": ids}), "orders": orders}, kind="test")
    got = store.query("SELECT count(customer_key) AS c, count(DISTINCT customer_key) AS d, max(customer_key) AS m "
                      "FROM customers").row(0)
    assert got == (n, n, n)
    assert store.query("SELECT count(customer_key) AS c FROM orders")["c"][0] == n
    store.close()
