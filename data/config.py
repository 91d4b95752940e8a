"""Where the embedded database lives.

Resolution order (first wins):
1. the environment variable ``CM_DB_PATH``;
2. ``[store] path`` in ``.streamlit/secrets.toml`` (read with tomllib, so the
   command-line tools and the app agree without importing Streamlit);
3. ``data/warehouse.duckdb`` in the project.
"""

from __future__ import annotations

import os
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
