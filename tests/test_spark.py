"""The same metrics on Apache Spark (issue 9).

Over one demo database, exported to Parquet and read by Spark in local mode (started
here; Java from Debian's packages, pyspark from PyPI): every computation of the pages
(tests/metric_suite.py) gives the same result on both engines (exact for counts and
text, 1e-9 relative for sums and rates), with the default view and with filters on
channel, region and loyalty; every query the suite issues translates, runs on Spark and
returns the same rows. Without Java or pyspark these tests are skipped, except in CI
(CM_REQUIRE_SPARK=1), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from data import config, dialect
from data.store import Store

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = os.environ.get("CM_REQUIRE_SPARK") == "1"


def _spark_available() -> str | None:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed"
    if not shutil.which("java") and not os.environ.get("JAVA_HOME"):
        return "no Java runtime"
    return None


_missing = _spark_available()
if _missing and REQUIRED:
    raise RuntimeError(f"CM_REQUIRE_SPARK=1 but {_missing}")
needs_spark = pytest.mark.skipif(_missing is not None, reason=_missing or "")

from tests import metric_suite as MS  # noqa: E402


# -- the translator alone (no Spark) ---------------------------------------------------------
def test_a_date_minus_a_date_becomes_a_day_count():
    out = dialect.to_spark("SELECT CAST($as_of AS DATE) - CAST(max(ordered_at) AS DATE) AS d FROM orders",
                           params={"as_of": date(2024, 1, 1)})
    assert "DATEDIFF(" in out and " - " not in out.split("AS `d`")[0].split("DATEDIFF")[1][:5]


def test_parameters_stay_bound_and_positional_ones_are_refused():
    hostile = "x' OR 1=1--"
    out = dialect.to_spark("SELECT count(*) FROM customers WHERE customer_id = $id", params={"id": hostile})
    assert ":id" in out and hostile not in out
    with pytest.raises(dialect.TranslationError, match="positional"):
        dialect.to_spark("SELECT count(*) FROM customers WHERE customer_id = ?")


def test_only_single_read_queries_are_translated():
    for bad in ("DROP TABLE orders", "DELETE FROM orders", "SELECT 1; SELECT 2",
                "INSERT INTO orders SELECT * FROM orders"):
        with pytest.raises(dialect.TranslationError):
            dialect.to_spark(bad)


def test_unsigned_words_and_exact_percentiles():
    out = dialect.to_spark("SELECT bit_or(1::UBIGINT << (x)::UBIGINT) AS w, "
                           "percentile_cont(0.5) WITHIN GROUP (ORDER BY x) AS m FROM (SELECT 3 AS x) t")
    assert "UBIGINT" not in out and "BIGINT" in out
    assert "PERCENTILE(" in out and "APPROX" not in out
    with pytest.raises(dialect.TranslationError, match="Spark has no"):
        dialect.to_spark("SELECT CAST(1 AS UHUGEINT) AS x")


def test_registered_frames_are_renamed_but_ctes_of_the_same_name_are_not():
    out = dialect.to_spark("WITH o AS (SELECT * FROM orders) SELECT o.customer_key FROM o JOIN k USING (customer_key)",
                           {"k": "_q1_k", "o": "_q1_o"}, frames={"k": {"customer_key": "BIGINT"}})
    assert "_q1_k AS k" in out and "_q1_o" not in out


def test_strip_accents_table_matches_duckdb():
    """The character table that stands in for DuckDB's strip_accents on Spark gives what
    DuckDB gives, for every letter in it and for Vietnamese text."""
    store = Store(":memory:")
    text = dialect._ACCENTED + " Giao hàng nhanh, Đà Nẵng, Thừa Thiên Huế, ỨNG DỤNG, Crème brûlée"
    expected = store.scalar("SELECT strip_accents($t)", {"t": text})
    table = str.maketrans(dialect._ACCENTED, dialect._PLAIN)
    assert text.translate(table) == expected
    store.close()


def test_engine_settings(monkeypatch, tmp_path):
    secrets = tmp_path / "secrets.toml"
    for var in ("CM_ENGINE", "CM_LAKE_PATH", "CM_SPARK_CATALOG", "CM_SPARK_MASTER", "CM_SPARK_REMOTE"):
        monkeypatch.delenv(var, raising=False)
    assert config.engine_settings(secrets)["engine"] == "duckdb"
    monkeypatch.setenv("CM_ENGINE", "spark")
    with pytest.raises(ValueError, match="location of Parquet tables"):
        config.engine_settings(secrets)
    secrets.write_text('[engine]\nlocation = "lake"\nremote = "sc://spark.example:15002"\n')
    got = config.engine_settings(secrets)
    assert got["location"] == str((config.PROJECT_ROOT / "lake").resolve())
    assert got["remote"] == "sc://spark.example:15002" and got["master"] is None
    monkeypatch.setenv("CM_ENGINE", "oracle")
    with pytest.raises(ValueError, match="unknown engine"):
        config.engine_settings(secrets)


# -- both engines over the same data -----------------------------------------------------------
class Recording:
    """A store that remembers every query it is asked (SQL, parameters, frames)."""

    def __init__(self, store):
        self.store, self.log = store, []

    def query(self, sql, params=None, *, tables=None):
        self.log.append((sql, params, tables))
        return self.store.query(sql, params, tables=tables)

    def scalar(self, sql, params=None):
        self.log.append((sql, params, None))
        return self.store.scalar(sql, params)

    def __getattr__(self, name):
        return getattr(self.store, name)


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    if _missing:
        pytest.skip(_missing)
    from data.demo import build
    from data.spark import SparkStore, export_parquet

    root = tmp_path_factory.mktemp("engines")
    db = root / "demo.duckdb"
    store = Store(db)
    build(store, customers=2_000, seed=11, end=date(2026, 6, 30))
    store.close()
    duck = Store(db, read_only=True)
    export_parquet(duck, root / "lake")
    spark = SparkStore(root / "lake", master="local[2]")
    yield duck, spark, root
    duck.close()


SETTINGS = {
    "default": {},
    "filtered": {"channels": ("shopee", "facebook", "zalo_oa"), "regions": ("Hà Nội", "TP. Hồ Chí Minh"),
                 "loyalty": "member", "period": "90d", "comparison": "yoy"},
}
CALLS = [(page, name) for page, calls in MS.SUITE.items() for name, _ in calls]
_recorded: list = []


@needs_spark
@pytest.mark.parametrize("view", list(SETTINGS))
@pytest.mark.parametrize("page,name", CALLS)
def test_every_metric_is_the_same_on_spark(engines, page, name, view):
    duck, spark, _ = engines
    call = dict(MS.SUITE[page])[name]
    rec = Recording(duck)
    a = call(rec, MS.setting(rec, **SETTINGS[view]))
    b = call(spark, MS.setting(spark, **SETTINGS[view]))
    _recorded.extend(rec.log)
    diffs = MS.differences(a, b)
    assert not diffs, diffs[:10]


@needs_spark
def test_every_query_translates_and_returns_the_same_rows(engines):
    """Each distinct query the metric suite issued (both views, with their filters),
    translated and run on Spark on its own, returns DuckDB's rows (in any order)."""
    duck, spark, _ = engines
    if not _recorded:
        pytest.skip("run with the metric tests")
    seen = {}
    for sql, params, tables in _recorded:
        seen.setdefault((sql, tuple(sorted((params or {}).items()))), (sql, params, tables))
    assert len(seen) >= 60
    bad = []
    for sql, params, tables in seen.values():
        a = duck.query(sql, params, tables=tables)
        b = spark.query(sql, params, tables=tables)
        if a.width == 1 and a.height <= 1:
            b.columns = a.columns  # scalar queries: Spark names an unnamed column differently
        a, b = MS.align(a, b)
        d = MS.differences(a.sort(a.columns, nulls_last=True), b.sort(b.columns, nulls_last=True))
        if d:
            bad.append((sql[:200], d[:3]))
    assert not bad, bad


@needs_spark
def test_hostile_parameters_are_values_on_spark(engines):
    _, spark, _ = engines
    for hostile in ("x' OR 1=1--", "<img src=x onerror=alert(1)>", "read_csv('/etc/passwd')"):
        got = spark.query("SELECT count(*) AS n FROM customers WHERE customer_id = $id", {"id": hostile})
        assert got["n"][0] == 0


@needs_spark
def test_spark_store_refuses_writes_where_it_cannot_write(engines, tmp_path):
    """A catalog database or a location off this machine takes no imports: a clear
    refusal naming why, before anything is read."""
    from data.spark import SparkError, SparkStore, export_parquet

    duck, spark, _ = engines
    export_parquet(duck, tmp_path / "lake")
    s = SparkStore(tmp_path / "lake", session=spark.spark)
    s.location = "s3a://bucket/lake"  # as configured for a remote lake
    with pytest.raises(SparkError, match="read-only to the dashboard") as e:
        s.load_frames({"orders": pl.DataFrame()}, kind="orders")
    assert "not on this machine's file system" in str(e.value)
    with pytest.raises(SparkError, match="read-only"):
        s.forget([1])
    assert s.writable() and not SparkStore(tmp_path / "lake", session=spark.spark).writable()


@needs_spark
def test_an_import_on_spark_is_checked_written_as_parquet_and_undone(engines, tmp_path):
    """On a writable Parquet location an import goes through the same checks and the
    same loading rules as in DuckDB; Spark then computes what DuckDB computes on the
    same import; undo restores the data."""
    from data import importer
    from data.spark import SparkStore, export_parquet

    duck, spark, root = engines
    export_parquet(duck, tmp_path / "lake")
    s = SparkStore(tmp_path / "lake", session=spark.spark)
    shutil.copyfile(root / "demo.duckdb", tmp_path / "local.duckdb")  # the same data, in DuckDB
    local = Store(tmp_path / "local.duckdb")
    f = tmp_path / "orders.csv"
    f.write_text("order_id,customer_id,ordered_at,revenue,status,channel\n"
                 "SP-1,SP-C1,03/06/2026 10:00,150000,Hoàn thành,Zalo\n"
                 "SP-2,SP-C2,04/06/2026 11:30,\"1.250.000 ₫\",completed,shopee\n", encoding="utf-8")
    v0 = s.data_version()
    bad = tmp_path / "bad.csv"
    bad.write_text(f.read_text() + "SP-3,SP-C3,31/02/2026 10:00,5000,completed,zalo\n", encoding="utf-8")
    rejected = importer.check_file(bad, bad.name, "orders", store=s)
    assert not rejected.ok
    with pytest.raises(importer.FileProblem):
        importer.load(s, rejected)
    assert s.data_version() == v0
    iid = importer.load(s, importer.check_file(f, f.name, "orders", store=s), mode="append")
    importer.load(local, importer.check_file(f, f.name, "orders", store=local), mode="append")
    assert s.data_version() != v0
    assert s.scalar("SELECT count(*) FROM orders WHERE order_id LIKE 'SP-%'") == 2
    assert s.imports()["import_id"][0] == iid
    for page in ("overview", "loyalty"):
        for name, call in MS.SUITE[page]:
            diffs = MS.differences(call(local, MS.setting(local)), call(s, MS.setting(s)))
            assert not diffs, (page, name, diffs[:5])
    s.undo_import(iid)
    assert s.scalar("SELECT count(*) FROM orders WHERE order_id LIKE 'SP-%'") == 0
    assert s.scalar("SELECT count(*) FROM customers WHERE customer_id LIKE 'SP-%'") == 0
    local.close()


@needs_spark
def test_data_version_changes_with_the_files(engines, tmp_path):
    from data.spark import SparkStore, export_parquet

    duck, spark, _ = engines
    lake = tmp_path / "lake"
    export_parquet(duck, lake)
    s = SparkStore(lake, session=spark.spark)
    v1 = s.data_version()
    (lake / "orders" / "part-0.parquet").touch()
    assert s.data_version() != v1
    assert [i.rows for i in s.table_info()] == [i.rows for i in duck.table_info()]


@needs_spark
def test_an_import_committed_elsewhere_is_seen_on_the_next_run(engines, tmp_path):
    """Another process (here a ParquetLake of its own, as the command line uses)
    commits an import: the Spark store's data version changes and its queries see it."""
    from data.lakefiles import ParquetLake
    from data.spark import SparkStore, export_parquet

    duck, spark, _ = engines
    export_parquet(duck, tmp_path / "lake")
    s = SparkStore(tmp_path / "lake", session=spark.spark)
    v0, n0 = s.data_version(), s.scalar("SELECT count(*) FROM orders")
    other = ParquetLake(tmp_path / "lake")
    other.load_frames({"orders": pl.DataFrame({
        "order_id": ["EL-1"], "customer_id": ["EL-C1"], "ordered_at": [date(2026, 6, 1)], "revenue": [1000.0],
        "status": ["completed"]}).with_columns(pl.col("ordered_at").cast(pl.Datetime("us")))},
        kind="orders", file_name="elsewhere.csv", mode="append")
    assert s.data_version() != v0
    assert s.scalar("SELECT count(*) FROM orders") == n0 + 1
    assert s.scalar("SELECT count(*) FROM customers WHERE customer_id = 'EL-C1'") == 1


@needs_spark
def test_catalog_tables_give_the_same_numbers_and_take_no_imports(engines, tmp_path):
    """Tables in a Spark catalog database (here external tables over the Parquet
    export) instead of a location: the same Overview, and imports refused."""
    from data.spark import EXTRA_TABLES, SparkError, SparkStore, export_parquet
    from data.store import TABLES

    duck, spark, _ = engines
    export_parquet(duck, tmp_path / "lake")
    db = f"cm_{os.getpid()}"
    spark.spark.sql(f"CREATE DATABASE IF NOT EXISTS {db} LOCATION '{tmp_path / 'warehouse'}'")
    try:
        for name in (*TABLES, *EXTRA_TABLES):
            spark.spark.sql(f"CREATE TABLE {db}.{name} USING parquet LOCATION '{tmp_path / 'lake' / name}'")
        s = SparkStore(catalog=db, session=spark.spark)
        assert [(i.name, i.rows) for i in s.table_info()] == [(i.name, i.rows) for i in duck.table_info()]
        for name, call in MS.SUITE["overview"]:
            diffs = MS.differences(call(duck, MS.setting(duck)), call(s, MS.setting(s)))
            assert not diffs, (name, diffs[:5])
        assert "catalog" in s.writable()
        with pytest.raises(SparkError, match="catalog"):
            s.load_frames({"orders": pl.DataFrame()}, kind="orders")
    finally:
        spark.spark.sql(f"DROP DATABASE IF EXISTS {db} CASCADE")
        spark.refresh()  # the views of the module's store again


CONNECT_SCRIPT = r"""
import pickle, sys
from data.spark import SparkStore
from tests import metric_suite as MS
s = SparkStore(sys.argv[1], remote="local")
assert s.spark.__class__.__module__.startswith("pyspark.sql.connect"), s.spark.__class__
out = {"tables": [(i.name, i.rows) for i in s.table_info()]}
for name, call in MS.SUITE["overview"]:
    out[name] = call(s, MS.setting(s))
with open(sys.argv[2], "wb") as fh:
    pickle.dump(out, fh)
"""


@needs_spark
def test_spark_connect_gives_the_same_numbers(engines, tmp_path):
    """Through Spark Connect (a local Connect server that pyspark starts, in a process
    of its own), the tables and the Overview's computations are DuckDB's."""
    import pickle
    import subprocess
    import sys

    from data.spark import export_parquet

    duck, _, _ = engines
    export_parquet(duck, tmp_path / "lake")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CM_")}
    result = tmp_path / "connect.pickle"
    done = subprocess.run([sys.executable, "-c", CONNECT_SCRIPT, str(tmp_path / "lake"), str(result)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and result.exists(), done.stdout[-2000:] + done.stderr[-3000:]
    got = pickle.loads(result.read_bytes())
    assert got["tables"] == [(i.name, i.rows) for i in duck.table_info()]
    for name, call in MS.SUITE["overview"]:
        diffs = MS.differences(call(duck, MS.setting(duck)), got[name])
        assert not diffs, (name, diffs[:5])


@needs_spark
def test_the_app_runs_on_spark(engines, monkeypatch):
    """Overview on Spark shows the cards DuckDB's Overview shows; the Data page names
    the engine and the location, and takes uploads into the (writable) lake."""
    from streamlit.testing.v1 import AppTest

    duck, spark, root = engines

    def run(page: str, **env) -> AppTest:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        at.query_params["lang"] = "en"
        at.run()
        if page:
            at.switch_page(page).run()
        assert not at.exception, at.exception
        return at

    monkeypatch.setenv("CM_AUTH", "off")
    shutil.copyfile(root / "demo.duckdb", root / "app.duckdb")  # the fixture holds demo.duckdb open read-only
    local = run("", CM_DB_PATH=str(root / "app.duckdb"), CM_ENGINE="duckdb")
    cards = [(m.label, m.value) for m in local.metric]
    on_spark = run("", CM_ENGINE="spark", CM_LAKE_PATH=str(root / "lake"))
    assert [(m.label, m.value) for m in on_spark.metric] == cards and len(cards) == 15
    data = run("pages/data_page.py", CM_ENGINE="spark", CM_LAKE_PATH=str(root / "lake"))
    shown = "\n".join(str(m.value) for m in [*data.markdown, *data.caption])
    assert "Apache Spark" in shown and str(root / "lake") in shown and "written to the lake as Parquet" in shown
    assert data.get("file_uploader")  # a writable folder takes uploads
    assert not [b for b in data.button if "demo" in str(b.label).lower()]
