"""Writing to a Parquet location: imports, undo and forgetting a customer when the
tables live in the lake (the Spark engine), with the embedded store's rules.

A location holds one folder of Parquet files per table (``<location>/<table>/``, as
``python -m data.lake export`` writes it). A write never edits those files. It:

1. reads the location's tables into a scratch DuckDB :class:`data.store.Store` (in
   memory, or spilling to the scratch directory),
2. does the work there with the store's own code (``load_frames``: the upsert on the
   natural key, customer keys, minimal customers, the quarantine, the undo copies,
   the imports record; ``undo_import``; ``forget``), so every rule is the same as in
   the embedded database, and the file's checks (data.importer) are the same too,
3. writes each table whose rows changed (a count and a hash of every row, before and
   after) as a new folder under ``<location>/_v/<version>/<table>/``, and
4. commits by replacing ``<location>/_manifest.json`` (table -> folder) in one
   atomic rename: readers see every changed table switch at once, or none of them.
   A failure at any step before that leaves the location exactly as it was; the
   folders it wrote are removed, and any left by a crash are cleared by the next write.

Writers are serialised by a lock file in the location. A superseded folder is kept
for an hour after the commit that superseded it (a query in flight may still read
it; the manifest lists them), then removed by a later write; forgetting a customer
removes them at once, so that no file at the location still holds the customer's rows.

Only a location on this machine's file system, existing and writable, can be written;
anything else (``s3a://``, ``hdfs://``, a catalog database, a read-only folder) gets
a clear refusal: :func:`not_writable` says why.

No Spark here: DuckDB reads and writes the Parquet files. ``ParquetLake`` also answers
the read calls the import needs (imports, remembered mappings, finding a customer),
so the command line (``python -m data.load ... --lake DIR``) writes to a location
without starting Spark.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import polars as pl

from data.store import Store

MANIFEST = "_manifest.json"
VERSIONS = "_v"
LOCK = ".lock"
_LOCAL = threading.Lock()
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")  # a table; "_v" and the like are the lake's own
_FOLDER = re.compile(r"^(_v/[0-9a-f]{12}/)?[a-z][a-z0-9_]*$")  # what a manifest may name
# Superseded folders stay this long (a long Spark query may still be reading them),
# unless a customer is being forgotten: then they go at once.
RETAIN_S = 3600.0
T = TypeVar("T")


class LakeWriteError(RuntimeError):
    """The location cannot be written (the message says why and what to do)."""


def not_writable(location: str | Path | None) -> str | None:
    """Why ``location`` cannot take imports, or None when it can."""
    if location is None:
        return "the tables are in a catalog database, which only your own pipelines write"
    text = str(location)
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text) and not text.startswith("file://"):
        return f"{text} is not on this machine's file system"
    path = Path(text.removeprefix("file://"))
    if any(c in str(path) for c in "[]*?'"):
        return f"{path} contains characters that would be read as a file pattern"
    if not path.is_dir():
        return f"{path} is not a folder"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"{path} is not writable by the dashboard"
    return None


class ParquetLake:
    """The tables of one Parquet location, read and written through DuckDB."""

    engine = "parquet"

    def __init__(self, location: str | Path) -> None:
        self.root = Path(str(location).removeprefix("file://"))
        self.path = f"parquet:{self.root}"

    # -- where each table is --------------------------------------------------------
    def manifest(self, token: str | None = None) -> dict[str, str]:
        """table -> folder relative to the root (the manifest, else ``<table>``);
        ``token``: :meth:`version_token`, when the caller has read it already."""
        text = self.version_token() if token is None else token
        if not text:
            return {}
        return {k: v for k, v in json.loads(text)["tables"].items() if _NAME.match(k) and _FOLDER.match(v)}

    def table_dir(self, name: str, manifest: Mapping[str, str] | None = None) -> Path | None:
        """The folder holding ``name``'s Parquet files, or None when there is none
        (``manifest``: :meth:`manifest`, when the caller has read it already)."""
        rel = (self.manifest() if manifest is None else manifest).get(name, name)
        d = self.root / rel
        return d if d.is_dir() and any(d.glob("**/*.parquet")) else None

    def folders(self) -> dict[str, Path]:
        """Every table at the location (canonical, extra and undo copies) -> the folder
        holding its Parquet files, from one reading of the manifest."""
        manifest = self.manifest()
        names = set(manifest)
        names |= {p.name for p in self.root.iterdir() if p.is_dir() and _NAME.match(p.name)} if self.root.is_dir() else set()
        dirs = {n: self.table_dir(n, manifest) for n in sorted(names)}
        return {n: d for n, d in dirs.items() if d is not None}

    def tables(self) -> list[str]:
        """Every table at the location (canonical, extra and undo copies)."""
        return list(self.folders())

    def _kept(self) -> dict[str, float]:
        """Superseded folders still kept for readers: folder -> when superseded."""
        token = self.version_token()
        kept = json.loads(token).get("kept", {}) if token else {}
        return {f: float(t) for f, t in kept.items() if _FOLDER.match(f)} if isinstance(kept, dict) else {}

    def version_token(self) -> str:
        """What changes when a write commits (the manifest's text)."""
        try:
            return (self.root / MANIFEST).read_text()
        except FileNotFoundError:
            return ""

    # -- reading ------------------------------------------------------------------------
    def _reader(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect()
        for name, d in self.folders().items():
            # a view cannot take a parameter: the path is the location's (configured,
            # quote-checked) and a table name the location's pattern allows
            con.execute(f'CREATE OR REPLACE VIEW "{name}" AS SELECT * FROM '
                        f"read_parquet('{_quote(d / '**' / '*.parquet')}')")
        return con

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pl.DataFrame:
        """A read query on the location's tables (DuckDB dialect). A table absent at
        the location is not there: callers ask only for the import's tables."""
        con = self._reader()
        try:
            return con.sql(sql, params=dict(params or {})).pl()
        finally:
            con.close()

    def imports(self) -> pl.DataFrame:
        if self.table_dir("imports") is None:  # none yet: the table's columns, no rows
            empty = Store(":memory:")
            try:
                return empty.imports()
            finally:
                empty.close()
        return self.query("SELECT * FROM imports ORDER BY import_id DESC")

    def remembered_mapping(self, kind: str, signature: str) -> dict[str, str]:
        if self.table_dir("column_mappings") is None:
            return {}
        rows = self.query("SELECT field, header FROM column_mappings WHERE kind = $k AND signature = $s",
                          {"k": kind, "s": signature}).rows()
        return dict(rows)

    def find_customers(self, identifier: str) -> list[int]:
        return self.scratch(lambda s: s.find_customers(identifier), tables=("customers",))

    def close(self) -> None:
        """Nothing stays open between calls."""

    # -- writing ------------------------------------------------------------------------
    def load_frames(self, frames: Mapping[str, pl.DataFrame], **kwargs: Any) -> int:
        """:meth:`data.store.Store.load_frames` on the location (Polars frames)."""
        return self.write(lambda s: s.load_frames(frames, **kwargs))

    def undo_import(self, import_id: int) -> dict[str, int]:
        return self.write(lambda s: s.undo_import(import_id))

    def forget(self, keys: Sequence[int]) -> dict[str, int]:
        """:meth:`data.store.Store.forget`, and then no file at the location holds
        the customers' rows any more (superseded folders are removed at once)."""
        return self.write(lambda s: s.forget(keys), purge=True)

    def remember_mapping(self, kind: str, signature: str, mapping: dict[str, str]) -> None:
        self.write(lambda s: s.remember_mapping(kind, signature, mapping))

    def scratch(self, fn: Callable[[Store], T], *, tables: Sequence[str] | None = None) -> T:
        """``fn`` on a scratch store holding the location's tables (read only: nothing
        is written back)."""
        store = self._load_scratch(tables)
        try:
            return fn(store)
        finally:
            store.close()

    def write(self, fn: Callable[[Store], T], *, purge: bool = False) -> T:
        """``fn`` on a scratch store holding the location's tables; then the tables it
        changed are written and committed together (see the module's notes). Raises
        LakeWriteError when the location cannot be written; on any failure nothing
        changes at the location. ``purge``: remove every superseded folder right after
        the commit (for erasure), instead of keeping them for readers in flight."""
        why = not_writable(self.root)
        if why:
            raise LakeWriteError(f"Imports cannot be written to the lake: {why}.")
        with self._locked():
            self._clear_unreferenced()
            store = self._load_scratch(None)
            try:
                before = _fingerprints(store)
                result = fn(store)
                after = _fingerprints(store)
                changed = sorted(n for n, fp in after.items() if before.get(n) != fp)
                if changed:
                    self._commit(store, changed, purge=purge)
            finally:
                store.close()
            return result

    # -- the steps ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with _LOCAL, open(self.root / LOCK, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _load_scratch(self, tables: Sequence[str] | None) -> Store:
        from data.config import memory_limit, scratch_dir

        store = Store(":memory:")
        cur = store.cursor()
        try:
            cur.execute("SET temp_directory = $d", {"d": str(scratch_dir() / f"lake-{uuid.uuid4().hex[:8]}.tmp")})
            cur.execute("SET memory_limit = $m", {"m": memory_limit()})
            schema = {r[0] for r in cur.execute("SELECT table_name FROM information_schema.tables").fetchall()}
            folders = self.folders()
            for name in (tables or folders):
                d = folders.get(name)
                if d is None or not _NAME.match(name):
                    continue
                files = str(d / "**" / "*.parquet")
                if name in schema:  # the store's own columns, by name
                    cur.execute(f'INSERT INTO "{name}" BY NAME SELECT * FROM read_parquet($p)', {"p": files})
                else:  # an undo copy (<table>__replaced)
                    cur.execute(f'CREATE TABLE "{name}" AS SELECT * FROM read_parquet($p)', {"p": files})
        except BaseException:
            store.close()
            raise
        finally:
            cur.close()
        return store

    def _commit(self, store: Store, changed: list[str], *, purge: bool = False) -> None:
        version = f"{uuid.uuid4().hex[:12]}"
        base = self.root / VERSIONS / version
        try:
            cur = store.cursor()
            try:
                for name in changed:
                    (base / name).mkdir(parents=True)
                    part = base / name / "part-0.parquet"
                    cur.execute(f'COPY (SELECT * FROM "{name}") TO \'{_quote(part)}\' (FORMAT parquet)')
                    _fsync(part)
                    _fsync(base / name)
            finally:
                cur.close()
            _fsync(base)
            _fsync(base.parent)
            manifest = self.manifest()
            before = {n: manifest.get(n, n) for n in self.tables()}
            tables = {**before, **{n: f"{VERSIONS}/{version}/{n}" for n in changed}}
            # Superseded folders stay for RETAIN_S after they were superseded, for the
            # queries still reading them (none when purging): folder -> when.
            now = time.time()
            kept = {} if purge else {f: t for f, t in self._kept().items() if now - t < RETAIN_S}
            if not purge:
                kept.update({f: now for f in set(before.values()) - set(tables.values())})
            tmp = self.root / f".{MANIFEST}.{version}"
            with open(tmp, "w") as fh:
                json.dump({"version": version, "tables": tables, "kept": kept}, fh, indent=1, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            _test_hook_before_commit()
            os.replace(tmp, self.root / MANIFEST)  # the commit
            _fsync(self.root)
        except BaseException:
            shutil.rmtree(base, ignore_errors=True)
            for p in self.root.glob(f".{MANIFEST}.*"):
                p.unlink(missing_ok=True)
            raise
        self._clear_unreferenced(purge=purge)

    def _clear_unreferenced(self, *, purge: bool = False) -> None:
        """Remove table folders the manifest does not name: a crash's leftovers, and
        superseded ones (the exported ``<table>/`` folders included) once no reader
        can still need them: :data:`RETAIN_S` after they were superseded, or at once
        when ``purge``."""
        token = self.version_token()
        if not token:  # no manifest: the exported folders are the tables
            shutil.rmtree(self.root / VERSIONS, ignore_errors=True)
            return
        live = set(json.loads(token)["tables"].values())
        now = time.time()
        kept = set() if purge else {f for f, t in self._kept().items() if now - t < RETAIN_S}
        candidates = [p for p in self.root.iterdir() if p.is_dir() and _NAME.match(p.name)]
        vdir = self.root / VERSIONS
        if vdir.is_dir():
            candidates += [t for v in vdir.iterdir() if v.is_dir() for t in v.iterdir() if t.is_dir()]
        for folder in candidates:
            rel = str(folder.relative_to(self.root))
            if rel in live or rel in kept:
                continue
            shutil.rmtree(folder, ignore_errors=True)
        if vdir.is_dir():
            for v in vdir.iterdir():
                if v.is_dir() and not any(v.iterdir()):
                    v.rmdir()
        for p in self.root.glob(f".{MANIFEST}.*"):
            p.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _quote(path: Path) -> str:
    """A path for COPY ... TO (a literal: DuckDB does not bind it); written by this
    module under the location, from a hex version and an allowlisted table name."""
    text = str(path)
    if "'" in text:
        raise LakeWriteError(f"the lake's path may not contain a quote: {text}")
    return text


def _fingerprints(store: Store) -> dict[str, tuple]:
    cur = store.cursor()
    try:
        names = [r[0] for r in cur.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
            "AND table_type = 'BASE TABLE'").fetchall()]
        out = {}
        for name in names:
            if name in ("meta", "schema_version") or not _NAME.match(name):
                continue
            out[name] = tuple(cur.execute(
                f'SELECT count(*), coalesce(sum(hash(_fp_row)), 0) FROM "{name}" _fp_row').fetchall()[0])
        return out
    finally:
        cur.close()


def _test_hook_before_commit() -> None:
    """Tests replace this to fail (or stop the process) just before the commit."""
