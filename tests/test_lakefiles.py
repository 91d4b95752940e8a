"""Imports into a Parquet location (data.lakefiles; the Spark engine's writes), without
Spark: the same checks and the same loading rules as the embedded database, committed
at once, undoable, and all or nothing."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from data import importer, lakefiles
from data.lakefiles import MANIFEST, LakeWriteError, ParquetLake, not_writable
from data.spark import export_parquet
from data.store import TABLES, Store

NEW_ORDERS = (
    "order_id,customer_id,ordered_at,revenue,status,channel\n"
    "LK-1,LK-C1,03/06/2026 10:00,150000,Hoàn thành,Zalo\n"
    "LK-2,LK-C2,04/06/2026 11:30,\"1.250.000 ₫\",completed,shopee\n"
    "LK-3,LK-C1,05/06/2026 09:15,99000,Đã hủy,facebook\n"
)
BAD_ORDERS = NEW_ORDERS + "LK-4,LK-C3,31/02/2026 10:00,5000,completed,zalo\n"


def _files(root: Path) -> dict[str, str]:
    """Every file under the location and a hash of its bytes (the lock file aside)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != lakefiles.LOCK}


def _tables(source) -> dict[str, pl.DataFrame]:
    """The canonical tables' rows in a stable order (import times aside)."""
    out = {}
    for name, cols in TABLES.items():
        order = ", ".join(cols)
        out[name] = source.query(f"SELECT {order} FROM {name} ORDER BY {order}")
    return out


@pytest.fixture()
def pair(tmp_path):
    """A small demo in DuckDB, and the same tables exported to a Parquet location."""
    from data import demo

    db = Store(tmp_path / "demo.duckdb")
    demo.build(db, customers=300, seed=3, end=date(2026, 6, 30))
    export_parquet(db, tmp_path / "lake")
    yield db, ParquetLake(tmp_path / "lake")
    db.close()


def _load(target, text: str, tmp_path: Path, *, mode: str = "append") -> int:
    f = tmp_path / "new_orders.csv"
    f.write_text(text, encoding="utf-8")
    report = importer.check_file(f, f.name, "orders", store=target if isinstance(target, Store) else None)
    assert report.ok, report.problems
    return importer.load(target, report, mode=mode)


def test_an_import_writes_what_the_embedded_store_writes(pair, tmp_path):
    db, lake = pair
    before = _files(lake.root)
    i_db = _load(db, NEW_ORDERS, tmp_path)
    i_lake = _load(lake, NEW_ORDERS, tmp_path)
    assert i_db == i_lake
    a, b = _tables(db), _tables(lake)
    for name in TABLES:
        assert a[name].equals(b[name]), name
    assert b["orders"].filter(pl.col("order_id") == "LK-2")["revenue"].item() == 1_250_000
    assert b["orders"].filter(pl.col("order_id") == "LK-3")["status"].item() == "cancelled"
    # committed as a new version: the exported files are untouched, the manifest names the new folders
    after = _files(lake.root)
    assert all(after.get(k) == v for k, v in before.items())
    assert MANIFEST in after and lake.manifest()["orders"].startswith("_v/")
    imports = lake.imports()
    assert imports["rows_loaded"][0] == 3 and imports["kind"][0] == "orders"
    # loading the same file again changes nothing (upsert on the natural key)
    _load(lake, NEW_ORDERS, tmp_path)
    assert _tables(lake)["orders"].equals(b["orders"])


def test_a_rejected_file_changes_nothing(pair, tmp_path):
    _, lake = pair
    before = _files(lake.root)
    f = tmp_path / "bad.csv"
    f.write_text(BAD_ORDERS, encoding="utf-8")
    report = importer.check_file(f, f.name, "orders")
    assert not report.ok and 5 in report.rejected_lines
    with pytest.raises(importer.FileProblem, match="nothing was loaded"):
        importer.load(lake, report)
    assert _files(lake.root) == before


def test_undo_restores_exactly_the_rows_replaced(pair, tmp_path):
    _, lake = pair
    start = _tables(lake)
    first = _load(lake, NEW_ORDERS, tmp_path)
    changed = NEW_ORDERS.replace("LK-1,LK-C1,03/06/2026 10:00,150000,Hoàn thành", "LK-1,LK-C1,03/06/2026 10:00,150000,Trả hàng/Hoàn tiền")
    second = _load(lake, changed, tmp_path)
    assert _tables(lake)["orders"].filter(pl.col("order_id") == "LK-1")["status"].item() == "refunded"
    lake.undo_import(second)
    assert _tables(lake)["orders"].filter(pl.col("order_id") == "LK-1")["status"].item() == "completed"
    lake.undo_import(first)
    now = _tables(lake)
    for name in TABLES:
        assert now[name].equals(start[name]), name


def test_a_failure_before_the_commit_leaves_the_location_as_it_was(pair, tmp_path, monkeypatch):
    _, lake = pair
    _load(lake, NEW_ORDERS, tmp_path)  # a manifest exists: the failure must keep it, too
    before = _files(lake.root)

    def fail() -> None:
        raise OSError("disk full")

    monkeypatch.setattr(lakefiles, "_test_hook_before_commit", fail)
    with pytest.raises(OSError, match="disk full"):
        _load(lake, NEW_ORDERS.replace("LK-", "LX-"), tmp_path)
    assert _files(lake.root) == before


def test_a_crash_leaves_folders_that_the_next_write_clears(pair, tmp_path):
    _, lake = pair
    _load(lake, NEW_ORDERS, tmp_path)
    orphan = lake.root / lakefiles.VERSIONS / "deadbeef0000" / "orders"
    orphan.mkdir(parents=True)
    (orphan / "part-0.parquet").write_bytes(b"half written")
    lake.remember_mapping("orders", "sig", {"order_id": "Mã đơn hàng"})
    assert not orphan.exists()
    assert lake.remembered_mapping("orders", "sig") == {"order_id": "Mã đơn hàng"}


def test_forgetting_a_customer_on_the_lake(pair, tmp_path):
    _, lake = pair
    _load(lake, NEW_ORDERS, tmp_path)
    keys = lake.find_customers("LK-C1")
    assert len(keys) == 1
    removed = lake.forget(keys)
    assert removed["orders"] == 2
    assert lake.query("SELECT count(*) AS n FROM orders WHERE customer_id = 'LK-C1'")["n"][0] == 0
    assert lake.query("SELECT count(*) AS n FROM customers WHERE customer_id = 'LK-C1'")["n"][0] == 0


def test_where_imports_cannot_be_written(tmp_path):
    assert "catalog" in not_writable(None)
    assert "file system" in not_writable("s3a://bucket/lake")
    assert "not a folder" in not_writable(tmp_path / "missing")
    assert not_writable(tmp_path) is None
    with pytest.raises(LakeWriteError, match="not a folder"):
        ParquetLake(tmp_path / "missing").remember_mapping("orders", "s", {"a": "b"})


def test_the_command_line_loads_into_a_lake(pair, tmp_path, capsys):
    from data import load

    _, lake = pair
    f = tmp_path / "cli.csv"
    f.write_text(NEW_ORDERS, encoding="utf-8")
    assert load.main(["orders", str(f), "--lake", str(lake.root)]) == 0
    assert "loaded 3 rows into orders" in capsys.readouterr().out
    assert lake.query("SELECT count(*) AS n FROM orders WHERE order_id LIKE 'LK-%'")["n"][0] == 3
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD_ORDERS.replace("LK-", "LZ-"), encoding="utf-8")
    before = _files(lake.root)
    assert load.main(["orders", str(bad), "--lake", str(lake.root)]) == 1
    assert "line 5" in capsys.readouterr().err
    assert _files(lake.root) == before
    assert load.main(["orders", str(f), "--lake", str(tmp_path / "nowhere")]) == 1
    assert "not a folder" in capsys.readouterr().err
