"""Imports into a Parquet location (data.lakefiles; the Spark engine's writes), without
Spark: the same checks and the same loading rules as the embedded database, committed
at once, undoable, and all or nothing."""

from __future__ import annotations

import hashlib
import json
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


def _files_holding(root: Path, text: str) -> list[str]:
    """Parquet files under ``root`` with ``text`` in any text column."""
    found = []
    for f in root.rglob("*.parquet"):
        frame = pl.read_parquet(f)
        if any(frame[c].cast(pl.Utf8).str.contains(text, literal=True).any()
               for c, t in frame.schema.items() if t == pl.Utf8):
            found.append(str(f.relative_to(root)))
    return found


def test_forgetting_a_customer_on_the_lake_leaves_no_file_holding_them(pair, tmp_path):
    _, lake = pair
    _load(lake, NEW_ORDERS, tmp_path)
    changed = NEW_ORDERS.replace("150000,Hoàn thành", "150000,Đã hủy")
    _load(lake, changed, tmp_path)  # an undo copy of LK-1 now holds LK-C1 too
    assert _files_holding(lake.root, "LK-C1")
    keys = lake.find_customers("LK-C1")
    assert len(keys) == 1
    removed = lake.forget(keys)
    assert removed["orders"] == 2
    assert lake.query("SELECT count(*) AS n FROM orders WHERE customer_id = 'LK-C1'")["n"][0] == 0
    assert lake.query("SELECT count(*) AS n FROM customers WHERE customer_id = 'LK-C1'")["n"][0] == 0
    assert _files_holding(lake.root, "LK-C1") == []  # superseded folders are gone too
    assert lake.query("SELECT count(*) AS n FROM orders WHERE customer_id = 'LK-C2'")["n"][0] == 1


def test_superseded_folders_stay_for_readers_then_go(pair, tmp_path, monkeypatch):
    _, lake = pair
    _load(lake, NEW_ORDERS, tmp_path)
    assert (lake.root / "orders").is_dir()  # the export's folder, superseded: kept for readers
    kept = json.loads((lake.root / MANIFEST).read_text())["kept"]
    assert "orders" in kept and "customers" in kept
    monkeypatch.setattr(lakefiles, "RETAIN_S", 0.0)
    lake.remember_mapping("orders", "sig", {"order_id": "Mã đơn hàng"})  # any later write clears them
    assert not (lake.root / "orders").exists()
    live = set(lake.manifest().values())
    on_disk = {str(p.relative_to(lake.root)) for p in lake.root.rglob("*") if p.is_dir() and any(p.glob("*.parquet"))}
    assert on_disk == live


def test_undo_of_an_import_made_before_the_export(pair, tmp_path):
    db, _ = pair
    iid = _load(db, NEW_ORDERS, tmp_path)
    changed = NEW_ORDERS.replace("150000,Hoàn thành", "150000,Đã hủy")
    second = _load(db, changed, tmp_path)
    lake = ParquetLake(tmp_path / "lake2")
    export_parquet(db, lake.root)
    db.undo_import(second)
    lake.undo_import(second)
    a, b = _tables(db), _tables(lake)
    for name in TABLES:
        assert a[name].equals(b[name]), name
    assert b["orders"].filter(pl.col("order_id") == "LK-1")["status"].item() == "completed"
    assert iid < second


def test_where_imports_cannot_be_written(tmp_path):
    assert "catalog" in not_writable(None)
    assert "file system" in not_writable("s3a://bucket/lake")
    assert "not a folder" in not_writable(tmp_path / "missing")
    assert not_writable(tmp_path) is None
    odd = tmp_path / "lake[1]"
    odd.mkdir()
    assert "file pattern" in not_writable(odd)
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
    assert load.main(["orders", str(f), "--lake", str(lake.root), "--dry-run"]) == 0
    assert "would load" in capsys.readouterr().out


def test_the_command_line_refuses_a_catalog_engine(tmp_path, monkeypatch, capsys):
    from data import load

    f = tmp_path / "cli.csv"
    f.write_text(NEW_ORDERS, encoding="utf-8")
    monkeypatch.setenv("CM_ENGINE", "spark")
    monkeypatch.setenv("CM_SPARK_CATALOG", "marketing")
    monkeypatch.delenv("CM_LAKE_PATH", raising=False)
    monkeypatch.setenv("CM_DB_PATH", str(tmp_path / "never.duckdb"))
    assert load.main(["orders", str(f)]) == 1
    assert "catalog" in capsys.readouterr().err
    assert not (tmp_path / "never.duckdb").exists()
