"""Apache Spark behind the store's one query seam (issue 9).

:class:`SparkStore` answers the same read calls as :class:`data.store.Store`
(``query``, ``scalar``, ``data_version``, ``table_info``, ``is_empty``), so every
metric runs on it unchanged: the SQL is the metrics' own DuckDB SQL, translated by
:mod:`data.dialect` with its parameters still bound, and only the result (aggregates,
or one row per customer) comes back to the app, through Arrow, as a Polars frame.

The canonical tables live where the data is: Parquet files under a location
(``<location>/<table>/*.parquet``, as :func:`export_parquet` writes them from a DuckDB
store) or tables in a Spark catalog database. Each is registered as a temporary view of
its canonical name on the Spark session, so the SQL's table names stay as they are.

Spark is started here in local mode (``local[2]``, for trying it or for tests) or
reached through Spark Connect (``sc://host:15002``). The session runs with UTC as its
time zone and ANSI mode off, so that arithmetic matches DuckDB's (a division by zero is
NULL, not an error); timestamps stay without a time zone (TIMESTAMP_NTZ), as in DuckDB.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from data import dialect
from data.lakefiles import MANIFEST, VERSIONS, ParquetLake, not_writable
from data.store import DATE_COLUMNS, EXTRA_DDL, SCHEMA_VERSION, TABLES, TableInfo, table_columns

# Tables the app reads besides the canonical ones (the Data page's history). On Spark
# they are read when present at the location and are empty otherwise.
EXTRA_TABLES = tuple(EXTRA_DDL)


class SparkError(RuntimeError):
    """Spark could not be reached or the tables could not be found."""


def spark_session(master: str | None = "local[2]", remote: str | None = None, *, memory: str = "2g"):
    """A Spark session: Spark Connect when ``remote`` is given, else a local master."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise SparkError("Spark mode needs pyspark: install requirements-spark.txt") from e
    builder = SparkSession.builder.appName("customer-marketing")
    if remote:
        builder = builder.remote(remote)
    else:
        builder = (builder.master(master or "local[2]")
                   .config("spark.ui.enabled", "false")
                   .config("spark.ui.showConsoleProgress", "false")
                   .config("spark.driver.memory", memory)
                   .config("spark.sql.shuffle.partitions", "4")
                   .config("spark.sql.execution.arrow.pyspark.enabled", "true"))
    builder = (builder.config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.ansi.enabled", "false")
               .config("spark.sql.parquet.inferTimestampNTZ.enabled", "true")
               .config("spark.sql.timestampType", "TIMESTAMP_NTZ"))
    try:
        session = builder.getOrCreate()
    except Exception as e:  # py4j / grpc errors: say what failed, not a trace
        raise SparkError(f"Spark did not start ({'Spark Connect ' + remote if remote else master}): "
                         f"{str(e).splitlines()[0][:300]}") from e
    if not remote:
        session.sparkContext.setLogLevel("OFF")  # errors reach the caller as exceptions
    return session


class SparkStore:
    """The read seam of :class:`data.store.Store` on a Spark session, and, when the
    tables are Parquet files in a writable folder, the store's writes
    (data.lakefiles: same rules, committed at once).

    ``location``: a directory of Parquet tables (``<location>/<table>/``), or
    ``catalog``: a Spark catalog database holding tables of the canonical names."""

    engine = "spark"

    def __init__(self, location: str | Path | None = None, *, catalog: str | None = None, session=None,
                 master: str | None = "local[2]", remote: str | None = None) -> None:
        if (location is None) == (catalog is None):
            raise SparkError("give either a Parquet location or a catalog database, not both")
        self.location = None if location is None else str(location)
        self.catalog = catalog
        self.remote = remote
        self.master = None if remote else (master or "local[2]")
        self.spark = session or spark_session(self.master, remote)
        self.path = "spark:" + (self.location or f"catalog:{catalog}")
        self.lake = ParquetLake(self.location) if self.location else None
        self._lock = threading.Lock()  # temporary-view names and registration
        self._registered = None  # the lake's version the views were registered at
        self.refresh()

    @classmethod
    def from_settings(cls, settings: Mapping[str, str | None], location: str | None = None) -> SparkStore:
        """The store data.config.engine_settings describes (``location`` overrides its)."""
        location = location or settings["location"]
        return cls(location, catalog=None if location else settings["catalog"],
                   master=settings["master"] or "local[2]", remote=settings["remote"])

    @staticmethod
    def schema_version() -> int:
        return SCHEMA_VERSION

    # -- where the tables are ---------------------------------------------------------
    def where(self) -> str:
        """Where the tables are, for the Data page."""
        return self.location if self.location else f"catalog database {self.catalog}"

    def describe(self) -> str:
        return f"Spark {self.spark.version} ({self.remote or self.master}); tables: {self.where()}"

    def _source(self, name: str):
        if self.location:
            path = self.lake.table_dir(name)  # the manifest's folder after an import
            return None if path is None else self.spark.read.parquet(str(path))
        full = f"{self.catalog}.{name}"
        return self.spark.table(full) if self.spark.catalog.tableExists(full) else None

    def refresh(self) -> None:
        """(Re)register every table as a temporary view of its canonical name; a table
        missing at the location is an empty view of the canonical columns."""
        present = set()
        with self._lock:
            self._registered = self._lake_version() if self.lake else None
            for name in (*TABLES, *EXTRA_TABLES):
                df = self._source(name)
                if df is None:
                    df = self.spark.createDataFrame([], _empty_schema(name))
                else:
                    present.add(name)
                df.createOrReplaceTempView(name)
            if not present & {"orders", "customers"}:
                raise SparkError(f"no orders or customers tables at {self.where()}")

    # -- the query seam -----------------------------------------------------------------
    def query(self, sql: str, params: Mapping[str, Any] | Sequence[Any] | None = None, *,
              tables: Mapping[str, pl.DataFrame] | None = None) -> pl.DataFrame:
        """Run one read query (DuckDB dialect, ``$name`` parameters) on Spark; return
        a Polars frame. ``tables`` are Polars frames the query may read by name: each
        becomes a temporary view under a unique name for this query only."""
        if params is not None and not isinstance(params, Mapping):
            raise dialect.TranslationError("parameters at the Spark seam are named ($name)")
        names = {name: f"_q{uuid.uuid4().hex[:12]}_{name}" for name in (tables or {})}
        shapes = {name: {c: _duckdb_type(t) for c, t in frame.schema.items()} for name, frame in (tables or {}).items()}
        text = dialect.to_spark(sql, names, params=params, frames=shapes)
        used = dialect.parameters(sql)
        args = {k: v for k, v in (params or {}).items() if k in used}
        try:
            for name, frame in (tables or {}).items():
                self.spark.createDataFrame(_arrow_for_spark(frame)).createOrReplaceTempView(names[name])
            result = self.spark.sql(text, args=args).toArrow()
        finally:
            for view in names.values():
                self.spark.catalog.dropTempView(view)
        return _from_spark(result)

    def scalar(self, sql: str, params: Mapping[str, Any] | Sequence[Any] | None = None) -> Any:
        out = self.query(sql, params)
        return out.row(0)[0] if out.height else None

    def data_version(self) -> str:
        """Changes whenever a table's files change (Parquet: the manifest, and the
        files' paths, sizes and times; catalog: row counts). Files changed by another
        process (an import committed there, a new export) re-register the tables here."""
        if self.lake is not None:
            version = self._lake_version()
            if version != self._registered:
                self.refresh()
            return version
        h = hashlib.sha256()
        for info in self.table_info():
            h.update(f"{info.name}|{info.rows}|{info.last}".encode())
        return h.hexdigest()[:16]

    def _lake_version(self) -> str:
        token = self.lake.version_token()  # read once: this runs on every page run
        h = hashlib.sha256(token.encode())
        manifest = self.lake.manifest(token)
        for name in (*TABLES, *EXTRA_TABLES):
            d = self.lake.table_dir(name, manifest)
            for path in sorted(d.glob("**/*.parquet")) if d else ():
                st = path.stat()
                h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode())
        return h.hexdigest()[:16]

    def table_info(self) -> list[TableInfo]:
        """Rows and date range per canonical table, as :meth:`data.store.Store.table_info`."""
        out = []
        for name, col in DATE_COLUMNS.items():
            row = self.query(f"SELECT count(*) AS n, min({col}) AS first, max({col}) AS last FROM {name}").row(0)
            out.append(TableInfo(name, int(row[0]), row[1], row[2]))
        return out

    def remembered_mapping(self, kind: str, signature: str) -> dict[str, str]:
        return self.lake.remembered_mapping(kind, signature) if self.lake else {}

    def imports(self) -> pl.DataFrame:
        return self.query("SELECT * FROM imports ORDER BY import_id DESC")

    def quarantine(self) -> pl.DataFrame:
        return self.query("SELECT * FROM quarantine ORDER BY import_id DESC, line")

    def is_empty(self) -> bool:
        return not self.scalar("SELECT count(*) FROM orders") and not self.scalar("SELECT count(*) FROM customers")

    def close(self) -> None:
        """Leaves the Spark session running (it may be shared); drops nothing."""

    # -- writes ---------------------------------------------------------------------------
    def writable(self) -> str | None:
        """None when imports can be written to the tables' location, else why not."""
        return not_writable(self.location)

    def _writer(self, what: str) -> ParquetLake:
        why = self.writable()
        if why or self.lake is None:
            raise SparkError(f"{what} is not available here: {why}. The tables at {self.where()} are read-only "
                             "to the dashboard: load the data into the lake with your own pipeline, or export a "
                             "DuckDB database there with `python -m data.lake export`.")
        return self.lake

    def _write(self, what: str, fn):
        """A write through data.lakefiles (the embedded store's rules, committed at
        once), then the tables re-registered on the Spark session."""
        lake = self._writer(what)
        try:
            return fn(lake)
        finally:
            self.refresh()

    def transaction(self):
        self._writer("Writing in a transaction")
        raise SparkError("a Spark store writes whole loads (load_frames), not transactions")

    def load_frames(self, frames, **kwargs):
        """:meth:`data.store.Store.load_frames` into the Parquet location (Polars
        frames; the import's checks are data.importer's, unchanged)."""
        return self._write("Importing", lambda lake: lake.load_frames(frames, **kwargs))

    def undo_import(self, import_id: int) -> dict[str, int]:
        return self._write("Undoing an import", lambda lake: lake.undo_import(import_id))

    def forget(self, keys) -> dict[str, int]:
        return self._write("Forgetting a customer", lambda lake: lake.forget(keys))

    def find_customers(self, identifier: str) -> list[int]:
        return self._writer("Finding a customer to forget").find_customers(identifier)

    def remember_mapping(self, kind: str, signature: str, mapping: dict[str, str]) -> None:
        self._write("Remembering a column mapping", lambda lake: lake.remember_mapping(kind, signature, mapping))


# -- types across the seam --------------------------------------------------------------------
def _duckdb_type(t: pl.DataType) -> str:
    """A Polars column type as the DuckDB type the query would see (for the translator)."""
    if t.is_integer():
        return {pl.Int8: "TINYINT", pl.Int16: "SMALLINT", pl.Int32: "INTEGER", pl.UInt64: "UBIGINT"}.get(t, "BIGINT")
    if t.is_float():
        return "DOUBLE"
    if t == pl.Date:
        return "DATE"
    if isinstance(t, pl.Datetime):
        return "TIMESTAMP"
    if t == pl.Boolean:
        return "BOOLEAN"
    return "VARCHAR"


def _arrow_for_spark(frame: pl.DataFrame) -> pa.Table:
    # Spark reads large_string / large_list from Arrow; Polars categoricals go as text.
    cast = {c: pl.Utf8 for c, t in frame.schema.items() if t in (pl.Categorical, pl.Enum) or isinstance(t, pl.Enum)}
    return (frame.cast(cast) if cast else frame).to_arrow()


def _from_spark(table: pa.Table) -> pl.DataFrame:
    """Spark's Arrow result as DuckDB would give it: timestamps without a time zone
    (Spark's LTZ timestamps are UTC in this session), decimals as they are."""
    cols = []
    for field, col in zip(table.schema, table.columns):
        if pa.types.is_timestamp(field.type) and field.type.tz is not None:
            col = col.cast(pa.timestamp(field.type.unit, tz="UTC")).cast(pa.timestamp(field.type.unit))
        cols.append(col)
    return pl.from_arrow(pa.table(cols, names=table.column_names))  # type: ignore[return-value]


def _empty_schema(table: str) -> str:
    """A table's columns (data.store.table_columns) as a Spark DDL schema string."""
    spark_type = {"VARCHAR": "STRING", "TIMESTAMP": "TIMESTAMP_NTZ", "TINYINT": "TINYINT", "DATE": "DATE",
                  "DOUBLE": "DOUBLE", "BIGINT": "BIGINT", "INTEGER": "INT", "BOOLEAN": "BOOLEAN"}
    return ", ".join(f"`{c}` {spark_type[t]}" for c, t in table_columns(table).items())


def export_parquet(store, location: str | Path) -> dict[str, int]:
    """Write every table of a DuckDB :class:`data.store.Store` as Parquet under
    ``location/<table>/part-0.parquet`` (replacing what was there, and any imports'
    versions), the undo copies (``<table>__replaced``) included, so that imports
    exported with the data can still be undone in the lake: how a demo database, or a
    business's embedded data, goes to the lake. Returns rows per table."""
    import shutil

    root = Path(location)
    root.mkdir(parents=True, exist_ok=True)
    undo = sorted(n for n in store.query("SELECT table_name AS n FROM information_schema.tables")["n"]
                  if n.endswith("__replaced") and n.removesuffix("__replaced") in TABLES)
    out = {}
    with ParquetLake(root)._locked():  # not while an import commits there
        (root / MANIFEST).unlink(missing_ok=True)  # a fresh export: no earlier imports' versions
        shutil.rmtree(root / VERSIONS, ignore_errors=True)
        for old in root.iterdir():  # tables of an earlier export that this one has not
            if old.is_dir() and (old.name in TABLES or old.name in EXTRA_TABLES or old.name.endswith("__replaced")):
                shutil.rmtree(old)
        for name in (*TABLES, *EXTRA_TABLES, *undo):
            frame = store.query(f'SELECT * FROM "{name}"')  # names from the allowlists above
            target = root / name
            target.mkdir(parents=True)
            frame.write_parquet(target / "part-0.parquet")
            out[name] = frame.height
    return out
