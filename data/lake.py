"""The lake side of the Spark engine, from the command line.

    python -m data.lake export DIR [--db PATH]    write every table of the DuckDB
                                                  database as Parquet under DIR/<table>/
    python -m data.lake check [--location DIR]    start Spark (local or Spark Connect, as
                                                  configured) and count each table there

``export`` is how the demo data, or a business's embedded database, goes to a Parquet
location that Spark reads (CM_ENGINE=spark CM_LAKE_PATH=DIR). Exit 0 on success,
1 when Spark or the tables cannot be reached, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from data import config


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m data.lake", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write the DuckDB tables as Parquet under DIR")
    ex.add_argument("dir", type=Path)
    ex.add_argument("--db", type=Path, default=None, help="the DuckDB file (default: data.config.db_path())")
    ck = sub.add_parser("check", help="count the tables on Spark")
    ck.add_argument("--location", default=None, help="Parquet location (default: the configured one)")
    args = ap.parse_args(argv)

    if args.command == "export":
        from data.spark import export_parquet
        from data.store import Store

        db = args.db or config.db_path()
        if not Path(db).is_file():
            print(f"no database at {db}", file=sys.stderr)
            return 1
        t = time.perf_counter()
        store = Store(db, read_only=True)
        try:
            rows = export_parquet(store, args.dir)
        finally:
            store.close()
        print(f"exported {sum(rows.values()):,} rows in {len(rows)} tables to {args.dir} "
              f"in {time.perf_counter() - t:.1f} s")
        return 0

    from data.spark import SparkError, SparkStore

    try:
        e = config.engine_settings()
        t = time.perf_counter()
        store = SparkStore.from_settings(e, args.location)
        started = time.perf_counter() - t
        for info in store.table_info():
            print(f"{info.name:18s} {info.rows:>12,}")
        print(f"{store.describe()}; session started in {started:.1f} s")
    except (SparkError, ValueError) as err:
        print(f"Spark: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
