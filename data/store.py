"""The embedded DuckDB store: canonical tables and the one query seam.

Every read in the product goes through :meth:`Store.query` (SQL text and bound
parameters in, a Polars frame out). That seam is where another engine can plug in
later; nothing else in the code base talks to DuckDB directly.

One :class:`Store` holds one read-write DuckDB connection for the process; each query
takes its own cursor, so the store can be shared between threads (Streamlit sessions).
The module-level ``duckdb`` connection is never used.

Table and column names come only from :data:`TABLES` (an allowlist); values are always
bound parameters.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

SCHEMA_VERSION = 1

# Canonical tables (shared/DESIGN.md). Column -> DuckDB type. Every data table also
# carries ``import_id`` (added below), so an import can be listed and undone.
TABLES: dict[str, dict[str, str]] = {
    "customers": {
        "customer_id": "VARCHAR NOT NULL",
        "name": "VARCHAR",
        "email": "VARCHAR",
        "phone": "VARCHAR",
        "region": "VARCHAR",
        "signup_date": "DATE",
        "acquisition_channel": "VARCHAR",
        "acquisition_cost": "DOUBLE",
    },
    "orders": {
        "order_id": "VARCHAR NOT NULL",
        "customer_id": "VARCHAR NOT NULL",
        "ordered_at": "TIMESTAMP NOT NULL",
        "revenue": "DOUBLE NOT NULL",
        "discount": "DOUBLE",
        "gross_margin": "DOUBLE",
        "channel": "VARCHAR",
        "status": "VARCHAR NOT NULL",
        "category": "VARCHAR",
    },
    "survey_responses": {
        "response_id": "VARCHAR NOT NULL",
        "customer_id": "VARCHAR",
        "responded_at": "TIMESTAMP NOT NULL",
        "survey": "VARCHAR",
        "touchpoint": "VARCHAR",
        "nps": "TINYINT",
        "csat": "TINYINT",
        "ces": "TINYINT",
        "comment": "VARCHAR",
        "channel": "VARCHAR",
    },
    "loyalty_members": {
        "customer_id": "VARCHAR NOT NULL",
        "enrolled_at": "TIMESTAMP NOT NULL",
        "tier": "VARCHAR",
    },
    "loyalty_events": {
        "event_id": "VARCHAR NOT NULL",
        "customer_id": "VARCHAR NOT NULL",
        "occurred_at": "TIMESTAMP NOT NULL",
        "kind": "VARCHAR NOT NULL",
        "points": "BIGINT NOT NULL",
        "value": "DOUBLE",
    },
    "referrals": {
        "referral_id": "VARCHAR NOT NULL",
        "referrer_id": "VARCHAR NOT NULL",
        "referred_id": "VARCHAR NOT NULL",
        "referred_at": "TIMESTAMP NOT NULL",
        "reward_cost": "DOUBLE",
    },
    "programme_costs": {
        "cost_id": "VARCHAR NOT NULL",
        "programme": "VARCHAR NOT NULL",
        "period_start": "DATE NOT NULL",
        "period_end": "DATE NOT NULL",
        "amount": "DOUBLE NOT NULL",
        "note": "VARCHAR",
    },
}

# The natural key of each table (the first column).
KEYS: dict[str, str] = {name: next(iter(cols)) for name, cols in TABLES.items()}

# Integer surrogate keys the store derives from customer ids at load time: every
# per-customer aggregation groups on them (about twice as fast as on text ids).
# ``customers.customer_key`` is the mapping; it never changes once assigned.
CUSTOMER_KEYS: dict[str, dict[str, str]] = {
    "customers": {"customer_key": "customer_id"},
    "orders": {"customer_key": "customer_id"},
    "survey_responses": {"customer_key": "customer_id"},
    "loyalty_members": {"customer_key": "customer_id"},
    "loyalty_events": {"customer_key": "customer_id"},
    "referrals": {"referrer_key": "referrer_id", "referred_key": "referred_id"},
}

# Canonical order statuses; only ``completed`` orders count as purchases.
ORDER_STATUSES = ("completed", "cancelled", "refunded")

IMPORTS_DDL = """
CREATE TABLE IF NOT EXISTS imports (
    import_id BIGINT NOT NULL,
    kind VARCHAR NOT NULL,
    file_name VARCHAR,
    sha256 VARCHAR,
    rows_read BIGINT,
    rows_loaded BIGINT,
    rows_rejected BIGINT,
    mode VARCHAR,
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    status VARCHAR NOT NULL
)
"""


# Rows an import rejected but chose to skip (load only the valid rows): kept with the
# file's line, column, value and reason, visible on the Data page.
QUARANTINE_DDL = """
CREATE TABLE IF NOT EXISTS quarantine (
    import_id BIGINT NOT NULL,
    line BIGINT,
    "column" VARCHAR,
    value VARCHAR,
    rule VARCHAR,
    reason VARCHAR
)
"""


# Column mappings a person confirmed, per import kind and header signature, so the
# next file with the same headers maps itself.
MAPPINGS_DDL = """
CREATE TABLE IF NOT EXISTS column_mappings (
    kind VARCHAR NOT NULL,
    signature VARCHAR NOT NULL,
    field VARCHAR NOT NULL,
    header VARCHAR NOT NULL,
    saved_at TIMESTAMP NOT NULL
)
"""

# The app's own tables besides the canonical ones (imports, rejected rows, mappings).
EXTRA_DDL = {"imports": IMPORTS_DDL, "quarantine": QUARANTINE_DDL, "column_mappings": MAPPINGS_DDL}


def _store_columns(name: str) -> dict[str, str]:
    """The columns the store adds to a canonical table: its customer keys and import_id."""
    return {**{key: "INTEGER" for key in CUSTOMER_KEYS.get(name, {})}, "import_id": "BIGINT"}


def _table_ddl(name: str) -> str:
    cols = [f"{col} {typ}" for col, typ in {**TABLES[name], **_store_columns(name)}.items()]
    body = ",\n    ".join(cols)
    return f"CREATE TABLE IF NOT EXISTS {name} (\n    {body}\n)"


def table_columns(name: str) -> dict[str, str]:
    """Column -> DuckDB type (without NOT NULL) of a table the app reads: a canonical
    table with the store's key columns, or imports, quarantine, column_mappings."""
    if name in TABLES:
        return {c: t.replace(" NOT NULL", "") for c, t in {**TABLES[name], **_store_columns(name)}.items()}
    return {m.group(1): m.group(2) for m in re.finditer(r'^[ \t]+"?(\w+)"? (\w+)', EXTRA_DDL[name], re.M)}


@dataclass(frozen=True)
class TableInfo:
    """What the Data page shows about one table."""

    name: str
    rows: int
    first: datetime | None
    last: datetime | None


# The column that dates each table's rows, for the Data page's date ranges.
DATE_COLUMNS = {
    "customers": "signup_date",
    "orders": "ordered_at",
    "survey_responses": "responded_at",
    "loyalty_members": "enrolled_at",
    "loyalty_events": "occurred_at",
    "referrals": "referred_at",
    "programme_costs": "period_start",
}


@dataclass(frozen=True)
class Relation:
    """Rows already inside this store's DuckDB (an import's scratch table), named by
    code, never by a file: ``name`` is a qualified table or view, ``columns`` the
    canonical columns it holds."""

    name: str
    columns: list[str]


def _test_hold_in_transaction() -> None:
    """Test hook: with ``CM_TEST_HOLD_IN_TRANSACTION=<path>`` a load writes that file
    and waits, every row written but nothing committed, so a test can kill the
    process right there (tests/test_import.py). Unset in normal use."""
    marker = os.environ.get("CM_TEST_HOLD_IN_TRANSACTION")
    if marker:
        Path(marker).write_text("inside the transaction")
        time.sleep(120)


class Store:
    """One DuckDB database: schema, the query seam, and transactional loads."""

    def __init__(self, path: str | Path = ":memory:", *, read_only: bool = False, harden: bool = False) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        from data.config import memory_limit

        # Group-bys on the dense integer customer key use DuckDB's direct-indexed
        # ("perfect") hash table when the key range fits in 2^22 (4M customers):
        # the per-customer passes of the Retention page ran 1.5-3x faster with it.
        config = {"memory_limit": memory_limit(), "perfect_ht_threshold": 22}
        if self.path != ":memory:":
            config["temp_directory"] = str(Path(self.path).with_suffix(".tmp"))
        self._con = duckdb.connect(self.path, read_only=read_only, config=config)
        self._write_lock = threading.Lock()
        if not read_only:
            self.ensure_schema()
        if harden:
            self._harden(config.get("temp_directory"))

    def _harden(self, temp_directory: str | None) -> None:
        """Lock the connection down for the hosted app: no file outside the import
        scratch directory (and the database's own spill directory) can be read,
        written or attached, no extension installed or loaded automatically, and no
        setting changed afterwards (DuckDB's ``enable_external_access = false`` with
        ``allowed_directories`` and ``lock_configuration``)."""
        from data.config import scratch_dir

        allowed = [str(scratch_dir()) + "/"]
        if temp_directory:
            Path(temp_directory).mkdir(parents=True, exist_ok=True)
            allowed.append(str(Path(temp_directory).resolve()) + "/")
        cur = self._con.cursor()
        try:
            cur.execute("SET allowed_directories = $dirs", {"dirs": allowed})
            cur.execute("SET autoinstall_known_extensions = false")
            cur.execute("SET autoload_known_extensions = false")
            cur.execute("SET enable_external_access = false")
            cur.execute("SET lock_configuration = true")
        finally:
            cur.close()

    # -- schema -----------------------------------------------------------------
    def ensure_schema(self) -> None:
        """Create every canonical table if missing (idempotent) and record the version."""
        cur = self._con.cursor()
        try:
            cur.execute("BEGIN TRANSACTION")
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL)"
            )
            cur.execute(IMPORTS_DDL)
            cur.execute(
                "CREATE TABLE IF NOT EXISTS meta (key VARCHAR NOT NULL, value VARCHAR)"
            )
            cur.execute(QUARANTINE_DDL)
            cur.execute(MAPPINGS_DDL)
            for name in TABLES:
                cur.execute(_table_ddl(name))
            have = cur.execute("SELECT max(version) FROM schema_version").fetchall()[0][0]
            if have is None or have < SCHEMA_VERSION:
                cur.execute(
                    "INSERT INTO schema_version VALUES ($v, now()::TIMESTAMP)",
                    {"v": SCHEMA_VERSION},
                )
            cur.execute("COMMIT")
        except Exception:
            cur.execute("ROLLBACK")
            raise
        finally:
            cur.close()

    def schema_version(self) -> int:
        return int(self.scalar("SELECT max(version) FROM schema_version") or 0)

    # -- the query seam ---------------------------------------------------------
    def query(self, sql: str, params: Mapping[str, Any] | Sequence[Any] | None = None, *,
              tables: Mapping[str, pl.DataFrame] | None = None) -> pl.DataFrame:
        """Run one read query with bound parameters; return a Polars frame.

        ``tables`` are Polars frames the query may read by name (registered on this
        query's own cursor, so they are seen by no other query)."""
        cur = self._con.cursor()
        try:
            for name, frame in (tables or {}).items():
                cur.register(name, frame.to_arrow())
            return cur.sql(sql, params=params).pl()
        finally:
            cur.close()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new cursor on the store's DuckDB instance (for an import's scratch work)."""
        return self._con.cursor()

    def scalar(self, sql: str, params: Mapping[str, Any] | Sequence[Any] | None = None) -> Any:
        cur = self._con.cursor()
        try:
            rows = cur.execute(sql, params or {}).fetchall()
            return rows[0][0] if rows else None
        finally:
            cur.close()

    # -- writes -----------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write transaction on its own cursor: all or nothing.

        Writes are serialised in this process; on any exception the transaction is
        rolled back and the exception re-raised. A committed write bumps the data
        version, so cached results keyed by it are refreshed.
        """
        with self._write_lock:
            cur = self._con.cursor()
            try:
                cur.execute("BEGIN TRANSACTION")
                yield cur
                cur.execute("DELETE FROM meta WHERE key = 'data_version'")
                cur.execute(
                    "INSERT INTO meta VALUES ('data_version', CAST(uuid() AS VARCHAR))"
                )
                cur.execute("COMMIT")
            except BaseException:
                try:
                    cur.execute("ROLLBACK")
                except duckdb.Error:
                    pass
                raise
            finally:
                cur.close()

    def data_version(self) -> str:
        """Changes whenever a write commits; part of every cache key."""
        return str(self.scalar("SELECT value FROM meta WHERE key = 'data_version'") or "0")

    def load_frames(
        self,
        frames: Mapping[str, pl.DataFrame | Relation],
        *,
        kind: str,
        file_name: str | None = None,
        sha256: str | None = None,
        mode: str = "replace",
        rows_read: int | None = None,
        rows_rejected: int = 0,
        keep_undo: bool = True,
        quarantine: pl.DataFrame | None = None,
    ) -> int:
        """Load canonical frames in one transaction and record one import.

        ``mode='replace'`` empties each named table first. ``'append'`` upserts on
        the table's natural key (:data:`KEYS`): a row identical to the stored one is
        skipped (loading the same file twice changes nothing), a row whose key exists
        with other values replaces it (a newer status for an order), a new key is
        added. With ``keep_undo`` every row an import replaces or deletes is kept in
        ``<table>__replaced`` so :meth:`undo_import` can restore it exactly.

        A frame may also be a :class:`Relation`: rows already in this DuckDB (an
        import's scratch database), read without a copy through Python.
        Column names must be canonical (see :data:`TABLES`); missing optional columns
        are loaded as NULL. Customer ids get their integer keys (existing ones keep
        theirs); ids referenced by any loaded row but missing from ``customers`` get a
        minimal customer row. ``quarantine`` (line, column, value, rule, reason) keeps
        the rows this import rejected. Returns the new import_id.
        """
        if mode not in ("replace", "append"):
            raise ValueError(f"mode must be 'replace' or 'append', not {mode!r}")
        unknown = set(frames) - set(TABLES)
        if unknown:
            raise ValueError(f"unknown tables: {sorted(unknown)}")
        columns = {name: list(frame.columns) for name, frame in frames.items()}
        for name, frame in frames.items():
            extra = set(columns[name]) - set(TABLES[name])
            if extra:
                raise ValueError(f"{name}: unknown columns {sorted(extra)}")
        started = datetime.now()
        with self.transaction() as cur:
            import_id = int(
                cur.execute("SELECT coalesce(max(import_id), 0) + 1 FROM imports").fetchall()[0][0]
            )
            total = 0
            for name, frame in frames.items():
                if isinstance(frame, Relation):
                    cols = ", ".join(f'"{c}"' for c in frame.columns)
                    cur.execute(f"CREATE OR REPLACE TEMP VIEW src_{name} AS SELECT {cols} FROM {frame.name}")
                    total += int(cur.execute(f"SELECT count(*) FROM src_{name}").fetchall()[0][0])
                else:
                    cur.register(f"src_{name}", frame)
                    total += frame.height
            self._assign_keys(cur, columns, mode)
            loaded = 0
            for name in frames:
                loaded += self._load_table(cur, name, columns[name], import_id, mode, keep_undo)
            # Customers referenced but not loaded get a minimal row (id and key only).
            cur.execute(
                "INSERT INTO customers (customer_id, customer_key, import_id) "
                "SELECT k.customer_id, k.customer_key, $import_id FROM _keys k "
                "WHERE k.customer_id IN (SELECT id FROM _referenced) "
                "AND k.customer_id NOT IN (SELECT customer_id FROM customers)",
                {"import_id": import_id},
            )
            if quarantine is not None and quarantine.height:
                cur.register("src_quarantine", quarantine.select("line", "column", "value", "rule", "reason"))
                cur.execute(
                    'INSERT INTO quarantine SELECT $import_id, line, "column", value, rule, reason FROM src_quarantine',
                    {"import_id": import_id},
                )
                cur.unregister("src_quarantine")
            for name, frame in frames.items():
                if isinstance(frame, Relation):
                    cur.execute(f"DROP VIEW src_{name}")
                else:
                    cur.unregister(f"src_{name}")
            cur.execute("DROP TABLE _keys")
            cur.execute("DROP TABLE _referenced")
            _test_hold_in_transaction()
            cur.execute(
                "INSERT INTO imports VALUES ($id, $kind, $file, $sha, $read, $loaded, $rejected, $mode, "
                "$started, now()::TIMESTAMP, 'loaded')",
                {
                    "id": import_id,
                    "kind": kind,
                    "file": file_name,
                    "sha": sha256,
                    "read": total + rows_rejected if rows_read is None else rows_read,
                    "loaded": loaded,
                    "rejected": rows_rejected,
                    "mode": mode,
                    "started": started,
                },
            )
        return import_id

    @staticmethod
    def _load_table(cur: duckdb.DuckDBPyConnection, name: str, columns: list[str], import_id: int,
                    mode: str, keep_undo: bool) -> int:
        """Insert one source (registered as ``src_<name>``, holding ``columns``);
        return the rows written."""
        cols = TABLES[name]
        keys = CUSTOMER_KEYS.get(name, {})
        key = KEYS[name]
        select = [
            f"CAST(src.{c} AS {cols[c].replace(' NOT NULL', '')}) AS {c}" if c in columns else f"NULL AS {c}"
            for c in cols
        ]
        joins = []
        for i, (kcol, id_col) in enumerate(keys.items()):
            if id_col not in columns:
                select.append(f"CAST(NULL AS INTEGER) AS {kcol}")
                continue
            select.append(f"k{i}.customer_key AS {kcol}")
            joins.append(f"LEFT JOIN _keys k{i} ON k{i}.customer_id = src.{id_col}")
        all_cols = [*cols, *keys]
        rows = f"SELECT {', '.join(select)} FROM src_{name} AS src {' '.join(joins)}"
        if mode == "append":
            # Only rows that differ from what is stored (new keys or changed values).
            cur.execute(
                f"CREATE OR REPLACE TEMP TABLE _new AS {rows} "
                f"EXCEPT SELECT {', '.join(all_cols)} FROM {name}"
            )
            doomed = f"{key} IN (SELECT {key} FROM _new)"
            rows = "SELECT * FROM _new"
        else:
            doomed = "TRUE"
        if keep_undo:
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {name}__replaced AS "
                f"SELECT *, CAST(NULL AS BIGINT) AS replaced_by FROM {name} WHERE FALSE"
            )
            cur.execute(
                f"INSERT INTO {name}__replaced SELECT *, $import_id FROM {name} WHERE {doomed}",
                {"import_id": import_id},
            )
        cur.execute(f"DELETE FROM {name} WHERE {doomed}")
        # Replace inserts straight from the source: no intermediate copy of a big file.
        written = int(cur.execute(
            f"INSERT INTO {name} ({', '.join(all_cols)}, import_id) SELECT *, $import_id FROM ({rows})",
            {"import_id": import_id},
        ).fetchall()[0][0])
        if mode == "append":
            cur.execute("DROP TABLE _new")
        return written

    def undo_import(self, import_id: int) -> dict[str, int]:
        """Undo one import in one transaction: delete the rows it wrote and restore
        exactly the rows it replaced. Refused (ValueError) when the import is unknown,
        already undone, or a later import still in force touched the same tables
        (undo that one first). Returns rows removed and restored."""
        with self.transaction() as cur:
            rows = cur.execute(
                "SELECT status FROM imports WHERE import_id = $id", {"id": import_id}
            ).fetchall()
            if not rows:
                raise ValueError(f"there is no import {import_id}")
            if rows[0][0] != "loaded":
                raise ValueError(f"import {import_id} is {rows[0][0]}, so it cannot be undone")
            touched = [
                name for name in TABLES
                if cur.execute(f"SELECT count(*) FROM {name} WHERE import_id = $id", {"id": import_id}).fetchall()[0][0]
                or self._has_replaced(cur, name, import_id)
            ]
            for name in touched:
                later = cur.execute(
                    f"SELECT count(*) FROM {name} t JOIN imports i USING (import_id) "
                    "WHERE t.import_id > $id AND i.status = 'loaded'",
                    {"id": import_id},
                ).fetchall()[0][0]
                if later:
                    raise ValueError(
                        f"a later import changed {name} after import {import_id}; undo that import first"
                    )
            removed = restored = 0
            for name in touched:
                removed += cur.execute(
                    f"SELECT count(*) FROM {name} WHERE import_id = $id", {"id": import_id}
                ).fetchall()[0][0]
                cur.execute(f"DELETE FROM {name} WHERE import_id = $id", {"id": import_id})
                if self._has_replaced(cur, name, import_id):
                    cols = [*TABLES[name], *CUSTOMER_KEYS.get(name, {}), "import_id"]
                    restored += cur.execute(
                        f"SELECT count(*) FROM {name}__replaced WHERE replaced_by = $id", {"id": import_id}
                    ).fetchall()[0][0]
                    cur.execute(
                        f"INSERT INTO {name} ({', '.join(cols)}) SELECT {', '.join(cols)} "
                        f"FROM {name}__replaced WHERE replaced_by = $id",
                        {"id": import_id},
                    )
                    cur.execute(f"DELETE FROM {name}__replaced WHERE replaced_by = $id", {"id": import_id})
            cur.execute("DELETE FROM quarantine WHERE import_id = $id", {"id": import_id})
            cur.execute("UPDATE imports SET status = 'undone' WHERE import_id = $id", {"id": import_id})
        return {"removed": int(removed), "restored": int(restored)}

    @staticmethod
    def _has_replaced(cur: duckdb.DuckDBPyConnection, name: str, import_id: int) -> bool:
        exists = cur.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = $t", {"t": f"{name}__replaced"}
        ).fetchall()[0][0]
        if not exists:
            return False
        return bool(cur.execute(
            f"SELECT count(*) FROM {name}__replaced WHERE replaced_by = $id", {"id": import_id}
        ).fetchall()[0][0])

    @staticmethod
    def _assign_keys(cur: duckdb.DuckDBPyConnection, frames: Mapping[str, list[str]], mode: str) -> None:
        """Build temp tables ``_keys`` (every customer id -> key, new ids numbered
        after the largest key in id order) and ``_referenced`` (ids that loaded rows
        of other tables point to, which must exist in customers afterwards)."""
        cur.execute("CREATE OR REPLACE TEMP TABLE _keys AS SELECT customer_id, customer_key FROM customers")
        ids = [
            f"SELECT CAST({id_col} AS VARCHAR) AS id FROM src_{name}"
            for name in frames
            for id_col in CUSTOMER_KEYS.get(name, {}).values()
            if id_col in frames[name]
        ]
        referenced = [
            f"SELECT CAST({id_col} AS VARCHAR) AS id FROM src_{name}"
            for name in frames
            if name != "customers"
            for id_col in CUSTOMER_KEYS.get(name, {}).values()
            if id_col in frames[name]
        ]
        if mode == "replace" and "customers" in frames:
            # Rows left in the other tables must still find their customer.
            referenced += [
                f"SELECT {id_col} AS id FROM {name}"
                for name, keys in CUSTOMER_KEYS.items()
                if name != "customers" and name not in frames
                for id_col in keys.values()
            ]
        cur.execute(
            "CREATE OR REPLACE TEMP TABLE _referenced AS SELECT DISTINCT id FROM ("
            + (" UNION ALL ".join(referenced) if referenced else "SELECT NULL::VARCHAR AS id WHERE FALSE")
            + ") WHERE id IS NOT NULL"
        )
        if ids:
            # Orders alone (the big file) reference exactly the ids they hold: read
            # the distinct ids once, from _referenced.
            source = ("SELECT id FROM _referenced" if ids == referenced
                      else f"SELECT DISTINCT id FROM ({' UNION ALL '.join(ids)}) WHERE id IS NOT NULL")
            # One CREATE ... AS, not an INSERT: rows inserted into a temp table inside
            # the load's transaction were lost beyond one row group (122,880 rows) on
            # DuckDB 2.0.0 (tests/test_store.py loads 300,000 new customers).
            cur.execute(
                "CREATE OR REPLACE TEMP TABLE _keys AS SELECT customer_id, customer_key FROM customers UNION ALL "
                "SELECT n.id, CAST((SELECT coalesce(max(customer_key), 0) FROM customers) "
                "+ row_number() OVER (ORDER BY n.id) AS INTEGER) "
                f"FROM ({source}) n ANTI JOIN customers k ON k.customer_id = n.id"
            )

    # -- introspection ----------------------------------------------------------
    def table_info(self) -> list[TableInfo]:
        out = []
        for name, col in DATE_COLUMNS.items():
            row = self.query(
                f"SELECT count(*) AS n, min({col}) AS first, max({col}) AS last FROM {name}"
            ).row(0)
            out.append(TableInfo(name, int(row[0]), row[1], row[2]))
        return out

    def imports(self) -> pl.DataFrame:
        return self.query("SELECT * FROM imports ORDER BY import_id DESC")

    def remembered_mapping(self, kind: str, signature: str) -> dict[str, str]:
        """The confirmed mapping (field -> header) for files of ``kind`` with these headers."""
        rows = self.query(
            "SELECT field, header FROM column_mappings WHERE kind = $k AND signature = $s",
            {"k": kind, "s": signature},
        ).rows()
        return dict(rows)

    def remember_mapping(self, kind: str, signature: str, mapping: dict[str, str]) -> None:
        """Store a confirmed mapping, replacing any earlier one for the same headers."""
        with self.transaction() as cur:
            cur.execute("DELETE FROM column_mappings WHERE kind = $k AND signature = $s", {"k": kind, "s": signature})
            for field_name, header in mapping.items():
                cur.execute(
                    "INSERT INTO column_mappings VALUES ($k, $s, $f, $h, now()::TIMESTAMP)",
                    {"k": kind, "s": signature, "f": field_name, "h": header},
                )

    def quarantine(self) -> pl.DataFrame:
        """Rows that imports rejected but skipped: import_id, line, column, value, rule, reason."""
        return self.query("SELECT * FROM quarantine ORDER BY import_id DESC, line")

    # -- forgetting a customer (personal data law: the right to erasure) ----------------
    def find_customers(self, identifier: str) -> list[int]:
        """Customer keys whose id equals ``identifier``, or whose email matches it
        (case-insensitive), or whose phone has the same digits (``+84`` read as
        ``0``). Nothing for an empty identifier or fewer than 6 phone digits."""
        text = (identifier or "").strip()
        if not text:
            return []
        digits = re.sub(r"\D", "", text)
        if digits.startswith("84") and len(digits) >= 11:
            digits = "0" + digits[2:]
        rows = self.query(
            "SELECT customer_key FROM customers WHERE customer_id = $t OR lower(email) = lower($t) "
            "OR ($d <> '' AND length($d) >= 6 AND regexp_replace(regexp_replace(coalesce(phone, ''), '\\D', '', 'g'), "
            "'^84(\\d{9,10})$', '0\\1') = $d) ORDER BY 1",
            {"t": text, "d": digits})
        return [int(k) for k in rows["customer_key"]]

    def forget(self, keys: Sequence[int]) -> dict[str, int]:
        """Remove the customers ``keys`` from every table in one transaction: their
        rows in the canonical tables and the undo copies (``<table>__replaced``),
        referrals either side, and quarantined values equal to their id, name, email
        or phone. Returns rows removed per table (only tables with rows removed)."""
        keys = sorted({int(k) for k in keys})
        if not keys:
            return {}
        removed: dict[str, int] = {}
        with self.transaction() as cur:
            cur.execute("CREATE OR REPLACE TEMP TABLE _forget AS SELECT unnest($k::INTEGER[]) AS k", {"k": keys})
            ident = cur.execute(
                "SELECT customer_id, name, email, phone FROM customers WHERE customer_key IN (SELECT k FROM _forget)"
            ).fetchall()
            values = sorted({str(v) for row in ident for v in row if v})
            ids = sorted({str(row[0]) for row in ident})
            existing = {r[0] for r in cur.execute("SELECT table_name FROM information_schema.tables").fetchall()}
            for name, key_cols in CUSTOMER_KEYS.items():
                id_cols = list(key_cols.values())
                cond = " OR ".join([f"{k} IN (SELECT k FROM _forget)" for k in key_cols]
                                   + [f"{c} IN (SELECT unnest($ids::VARCHAR[]))" for c in id_cols])
                for table in (name, f"{name}__replaced"):
                    if table not in existing:
                        continue
                    n = int(cur.execute(f"SELECT count(*) FROM {table} WHERE {cond}", {"ids": ids}).fetchall()[0][0])
                    if n:
                        cur.execute(f"DELETE FROM {table} WHERE {cond}", {"ids": ids})
                        removed[table] = n
            if values:
                n = int(cur.execute("SELECT count(*) FROM quarantine WHERE value IN (SELECT unnest($v::VARCHAR[]))",
                                    {"v": values}).fetchall()[0][0])
                if n:
                    cur.execute("DELETE FROM quarantine WHERE value IN (SELECT unnest($v::VARCHAR[]))", {"v": values})
                    removed["quarantine"] = n
            cur.execute("DROP TABLE _forget")
        return removed

    def is_empty(self) -> bool:
        return not self.scalar("SELECT count(*) FROM orders")

    def close(self) -> None:
        self._con.close()
