"""Command-line loader: the same code path as the Data page.

    python -m data.load KIND FILE [--db PATH | --lake DIR] [--mode append|replace] [--preset NAME]
                        [--map FIELD=HEADER ...] [--dry-run] [--accept-valid]
                        [--month-first] [--report FILE.csv]

KIND is one of: orders, customers, survey_responses, loyalty_members, loyalty_events,
referrals, programme_costs. Exit 0 with a one-line summary when the rows load (or, with
--dry-run, would load); exit 1 with the report when the file is rejected; exit 2 on bad
usage. A bad file never produces a Python traceback.

``--lake DIR`` (or, without --db, the engine setting CM_ENGINE=spark with its Parquet
location) loads into a Parquet location that the Spark engine reads, with the same
checks and rules, committed at once (data.lakefiles; Spark is not started).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data.config import db_path
from data.importer import Report, Settings, check_file, load
from data.kinds import KINDS
from data import parse
from data.parse import FileProblem
from data.presets import PRESETS

SHOWN = 50


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m data.load", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=list(KINDS), metavar="KIND", help="what the file holds: " + ", ".join(KINDS))
    ap.add_argument("file", type=Path, metavar="FILE", help="a CSV or TSV file")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--db", type=Path, help="the database (default: CM_DB_PATH, secrets.toml, data/warehouse.duckdb)")
    where.add_argument("--lake", type=Path, metavar="DIR",
                       help="a Parquet location of the Spark engine (default with CM_ENGINE=spark: its location)")
    ap.add_argument("--mode", choices=("append", "replace"), default="append",
                    help="append upserts on the natural key (default); replace empties the table first")
    ap.add_argument("--preset", choices=["generic", *PRESETS], default=None,
                    help="the export format (default: recognised from the headers; generic: none)")
    ap.add_argument("--map", action="append", default=[], metavar="FIELD=HEADER",
                    help='map a field to a header, e.g. --map nps="How likely are you to recommend us?"')
    ap.add_argument("--dry-run", action="store_true", help="check the file and report; load nothing")
    ap.add_argument("--accept-valid", action="store_true",
                    help="load the valid rows and keep the rejected ones in quarantine")
    ap.add_argument("--month-first", action="store_true",
                    help="read ambiguous dates as mm/dd/yyyy (default: dd/mm/yyyy)")
    ap.add_argument("--report", type=Path, metavar="FILE.csv", help="write the rejected cells to this CSV")
    args = ap.parse_args(argv)
    explicit = {}
    for item in args.map:
        name, sep, header = item.partition("=")
        if not sep or not name.strip() or not header.strip():
            ap.error(f"--map takes FIELD=HEADER, not “{item}”")
        explicit[name.strip()] = header.strip()
    args.explicit = explicit
    if not args.file.is_file():
        ap.error(f"no such file: {args.file}")
    return args


def print_report(report: Report, out=sys.stdout) -> None:
    print(report.summary(), file=out)
    for note in report.notes:
        print(f"note: {note}", file=out)
    if report.ok:
        return
    print("\nproblems by rule:", file=out)
    for row in report.counts().iter_rows(named=True):
        print(f"  {row['rows']:>8,}  {row['column']}: {row['rule']}", file=out)
    print(f"\nfirst {min(SHOWN, report.problems.height)} of {report.problems.height:,}:", file=out)
    for row in report.problems.head(SHOWN).iter_rows(named=True):
        print(f"  line {row['line']}, column “{row['column']}”, value “{row['value']}”: {row['reason']}", file=out)


def _remembered(args: argparse.Namespace):
    """A lookup of the mappings confirmed on the Data page for this kind."""
    from data.store import Store

    if getattr(args, "lake", None) is not None:
        from data.lakefiles import ParquetLake

        lake = ParquetLake(args.lake)
        return lambda signature: lake.remembered_mapping(args.kind, signature) if lake.root.is_dir() else {}

    path = args.db or db_path()

    def lookup(signature: str) -> dict[str, str]:
        if not path.exists():
            return {}
        try:
            store = Store(path, read_only=True)
        except Exception:  # locked by a running app, or not a database: no remembered mapping
            return {}
        try:
            return store.remembered_mapping(args.kind, signature)
        except Exception:  # a database from before mappings were remembered
            return {}
        finally:
            store.close()

    return lookup


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings(day_first=not args.month_first)
    from data.store import Store

    store = None
    try:
        lake = args.lake or (_configured_lake() if args.db is None else None)
    except ValueError as e:  # the engine setting is wrong, or names a catalog (not writable here)
        print(f"cannot load: {e}. Nothing was changed.", file=sys.stderr)
        return 1
    if lake is not None:
        from data.lakefiles import ParquetLake, not_writable

        why = not_writable(lake)
        if why and not args.dry_run:
            print(f"cannot write to the lake: {why}. Nothing was changed.", file=sys.stderr)
            return 1
        if not args.dry_run:
            store = ParquetLake(lake)
        else:
            args.lake = lake  # a dry run reads the lake's remembered mappings
    elif not args.dry_run:  # checked rows wait inside the store's DuckDB until they load
        path = args.db or db_path()
        try:
            store = Store(path)
        except Exception as e:  # locked by a running app, or not a database
            print(f"cannot open the database {path}: {str(e).splitlines()[0]}. Nothing was changed.", file=sys.stderr)
            return 1
    try:
        return _check_and_load(args, settings, store)
    finally:
        if store is not None:
            store.close()


def _configured_lake() -> str | None:
    """The Parquet location when the Spark engine is configured (else None). Raises
    ValueError for a wrong engine setting, and for Spark on a catalog database, which
    the dashboard does not write."""
    from data.config import engine_settings
    from data.lakefiles import not_writable

    e = engine_settings()
    if e["engine"] != "spark":
        return None
    if not e["location"]:
        raise ValueError(f"the Spark engine is configured on a catalog: {not_writable(None)}")
    return e["location"]


def _check_and_load(args: argparse.Namespace, settings: Settings, store) -> int:
    if store is not None:
        def remembered(signature: str) -> dict[str, str]:
            try:
                return store.remembered_mapping(args.kind, signature)
            except Exception:  # a database from before mappings were remembered
                return {}
    else:
        remembered = _remembered(args)
    try:
        report = check_file(args.file, args.file.name, args.kind, explicit=args.explicit, settings=settings,
                            preset=args.preset, remembered=remembered, store=store)
    except FileProblem as e:
        print(f"rejected: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"cannot read {args.file}: {e.strerror}", file=sys.stderr)
        return 1
    try:
        if args.report and not report.ok:
            args.report.write_bytes(report.problems_csv())
        if args.dry_run:
            print_report(report)
            if report.ok:
                print(f"dry run: {parse.count_of(report.valid_count(), 'row')} would load into {args.kind}; nothing was changed.")
                return 0
            return 1
        if not report.ok and not args.accept_valid:
            print_report(report, sys.stderr)
            print("\nnothing was loaded.", file=sys.stderr)
            return 1
        try:
            import_id = load(store, report, mode=args.mode, accept_valid=args.accept_valid)
            imports = store.imports()
            loaded = imports.filter(imports["import_id"] == import_id)["rows_loaded"][0]
        except FileProblem as e:
            print(f"rejected: {e}", file=sys.stderr)
            return 1
        except Exception as e:  # the database refused: nothing was changed (one transaction)
            print(f"not loaded: {type(e).__name__}: {str(e).splitlines()[0]}. Nothing was changed.", file=sys.stderr)
            return 1
    finally:
        report.close()
    for note in report.notes:
        print(f"note: {note}")
    extra = f", {parse.count_of(len(report.rejected_lines), 'row')} quarantined" if not report.ok else ""
    print(f"loaded {parse.count_of(loaded, 'row')} into {args.kind} from {args.file.name} "
          f"({report.rows_read:,} read{extra}; import #{import_id}, {args.mode}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
