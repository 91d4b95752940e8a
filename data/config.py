"""Where the embedded database lives.

Resolution order (first wins):
1. the environment variable ``CM_DB_PATH``;
2. ``[store] path`` in ``.streamlit/secrets.toml`` (read with tomllib, so the
   command-line tools and the app agree without importing Streamlit);
3. ``data/warehouse.duckdb`` in the project.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB_PATH = PROJECT_ROOT / "data" / "warehouse.duckdb"
SECRETS_PATH = PROJECT_ROOT / ".streamlit" / "secrets.toml"
ENV_VAR = "CM_DB_PATH"


def db_path(secrets_path: Path = SECRETS_PATH) -> Path:
    """Return the database file path by the resolution order above."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    if secrets_path.is_file():
        with secrets_path.open("rb") as fh:
            secrets = tomllib.load(fh)
        path = secrets.get("store", {}).get("path")
        if path:
            p = Path(path).expanduser()
            return (p if p.is_absolute() else PROJECT_ROOT / p).resolve()
    return DEFAULT_DB_PATH


def truth_path(database: Path) -> Path:
    """The demo generator's ground-truth JSON, beside the database file."""
    return database.with_name(database.stem + ".truth.json")


MEMORY_ENV_VAR = "CM_DUCKDB_MEMORY_LIMIT"
DEFAULT_MEMORY_LIMIT = "1500MB"


def memory_limit(secrets_path: Path = SECRETS_PATH) -> str:
    """DuckDB's memory limit for the store (``CM_DUCKDB_MEMORY_LIMIT``, else
    ``[store] memory_limit`` in secrets.toml, else 1500MB). Beyond it DuckDB spills to
    a temporary directory beside the database, so a 10-million-row import stays
    within about 2 GB of memory in all."""
    env = os.environ.get(MEMORY_ENV_VAR)
    if env:
        return env
    if secrets_path.is_file():
        with secrets_path.open("rb") as fh:
            value = tomllib.load(fh).get("store", {}).get("memory_limit")
        if value:
            return str(value)
    return DEFAULT_MEMORY_LIMIT


def scratch_dir() -> Path:
    """Where an import writes its temporary UTF-8 copy of an uploaded file: the only
    directory (besides the database's own spill directory) that the app's hardened
    DuckDB connection may read (see data.store.Store)."""
    path = Path(tempfile.gettempdir()) / "cm-import"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _secrets(secrets_path: Path = SECRETS_PATH) -> dict:
    if not secrets_path.is_file():
        return {}
    with secrets_path.open("rb") as fh:
        return tomllib.load(fh)


AUTH_ENV_VAR = "CM_AUTH"  # "off" forces local mode (tests, one-off local runs with a hosted secrets file)


def auth_configured(secrets_path: Path = SECRETS_PATH) -> bool:
    """Hosted mode: an ``[auth]`` section in ``.streamlit/secrets.toml`` (Streamlit's
    OIDC sign-in), unless ``CM_AUTH=off``."""
    if os.environ.get(AUTH_ENV_VAR, "").lower() == "off":
        return False
    return "auth" in _secrets(secrets_path)


def workspaces_root(secrets_path: Path = SECRETS_PATH) -> Path:
    """Where hosted workspaces live (``[workspaces] root`` in secrets.toml, relative
    to the project, default ``data/workspaces``), each ``<name>.duckdb``, beside the
    registry ``control.duckdb``."""
    root = _secrets(secrets_path).get("workspaces", {}).get("root")
    p = Path(root).expanduser() if root else PROJECT_ROOT / "data" / "workspaces"
    return (p if p.is_absolute() else PROJECT_ROOT / p).resolve()


def audit_secret(secrets_path: Path = SECRETS_PATH) -> str:
    """The key of the audit log's identifier hashes: ``[auth] cookie_secret`` (or
    ``[workspaces] audit_secret``), else a fixed local default."""
    s = _secrets(secrets_path)
    return str(s.get("workspaces", {}).get("audit_secret") or s.get("auth", {}).get("cookie_secret") or "local")


# -- the engine (issue 9: scale out) ----------------------------------------------------
ENGINE_ENV_VAR = "CM_ENGINE"


def engine_settings(secrets_path: Path = SECRETS_PATH) -> dict[str, str | None]:
    """Which engine computes the metrics: ``engine`` "duckdb" (embedded, the default)
    or "spark". For Spark, ``remote`` (a Spark Connect URL, sc://host:15002) or
    ``master`` (local[2] to try it on one machine), and where the tables are:
    ``location`` (a directory or URI of Parquet tables, one folder per table) or
    ``catalog`` (a catalog database with tables of the canonical names).

    From the environment (CM_ENGINE, CM_SPARK_REMOTE, CM_SPARK_MASTER, CM_LAKE_PATH,
    CM_SPARK_CATALOG), else ``[engine]`` in secrets.toml (engine, remote, master,
    location, catalog)."""
    sec = _secrets(secrets_path).get("engine", {})
    env = {"engine": ENGINE_ENV_VAR, "remote": "CM_SPARK_REMOTE", "master": "CM_SPARK_MASTER",
           "location": "CM_LAKE_PATH", "catalog": "CM_SPARK_CATALOG"}
    out = {k: (os.environ.get(v) or sec.get(k) or None) for k, v in env.items()}
    engine = (out["engine"] or "duckdb").lower()
    if engine not in ("duckdb", "spark"):
        raise ValueError(f"unknown engine {out['engine']!r}: use duckdb or spark")
    out["engine"] = engine
    if engine == "spark":
        if not out["location"] and not out["catalog"]:
            raise ValueError("Spark needs a location of Parquet tables (CM_LAKE_PATH or [engine] location) "
                             "or a catalog database (CM_SPARK_CATALOG or [engine] catalog)")
        loc = out["location"]
        if loc and "://" not in loc:
            p = Path(loc).expanduser()
            out["location"] = str((p if p.is_absolute() else PROJECT_ROOT / p).resolve())
        if not out["remote"] and not out["master"]:
            out["master"] = "local[2]"
    return out
