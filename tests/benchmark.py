#!/usr/bin/env python3
"""The benchmark script: speed and memory at stated sizes (never a test).

    python3 tasks.py bench                         # 100,000 and 1,000,000 customers
    python3 tasks.py bench --customers 20000       # one size
    python3 tasks.py bench --paint                 # also the app's first paint (browser)
    python3 tests/benchmark.py --customers 1000000 --workdir /tmp/cmbench --reuse --clv   # CLV (issue 5)
    python3 tests/benchmark.py --load --customers 20000 --workdir /tmp/cmload   # load test only
    python3 tests/benchmark.py --customers 1000000 --workdir /tmp/cmbench --reuse --spark  # Spark beside DuckDB (issue 9)
    python3 tests/benchmark.py --customers 1000000 --years 5.5 --workdir /tmp/cmbench --reuse --loyalty  # issue 6's size

Each measurement runs in a fresh child process, so "cold" means a newly opened
database with nothing cached, and peak memory is that process's own maximum RSS.
Results print as a table and are written to bench_results/ (git-ignored) as JSON.

Measured per size:
- generation: wall time of ``python -m data.demo`` (generate and load), peak RSS;
- database size on disk;
- import (``--import-rows N``): an orders CSV of N rows, loaded by DuckDB's own
  ``CREATE TABLE ... AS SELECT * FROM read_csv(...)`` and by our import (read,
  validate, load into a fresh database), each in its own process, with peak RSS;
- retention: the monthly cohort matrix (all history; customers retained in k and in
  k or later) cold, beside the usual pandas recipe (first-order month per customer,
  period difference, pivot) on the same completed orders; the full cohort table
  (also repeat rates, orders, revenue, margin) cold; the Retention page's whole computation (default controls, last
  365 days) cold and warm;
- overview: the Overview's computation (metrics.kpis.overview, default filters: last
  365 days against the previous period) cold (first call on a freshly opened
  database) and warm (median of 5 further calls; DuckDB's buffers warm, no result
  cache), peak RSS; also with a channel filter and for the whole history.
With ``--clv`` (issue 5), on the largest size: the CLV customer summary (unit days,
calibration end = the last order date) cold and warm; BG/NBD and Gamma-Gamma fitted on
it (each and in total, the number of distinct (frequency, recency, T) rows, peak RSS);
lifetimes 0.11.3's BetaGeoFitter and GammaGammaFitter on the same summary (a parquet
file), side by side in a venv of its own that the benchmark makes under the workdir
(lifetimes is not a project dependency; "lifetimes: unavailable (reason)" without
network), with the speed-up and the parameters' agreement (max relative difference,
3 significant figures); and the summary at ``--clv-orders`` (10 million) orders, cold
and warm, on the import benchmark's database of that size if present (else one made by
repeating the orders). ``--reuse`` keeps the databases already in ``--workdir``.
With ``--loyalty`` (issue 6), on the largest size: the Loyalty page's whole computation
(metrics.loyalty.loyalty_view, bootstrap included) cold and warm, with peak RSS, and
apart the naive table's predicted-CLV column (the CLV models' fit and scores, which
the page shares with the CLV page's cache).
With ``--segments`` (issue 7), on the largest size: RFM scores, segments, summary and
grid cold and warm, and the personas (features, fit, description, projection); then
the Surveys page's computation (without the CLV models) cold and warm.
With ``--paint``: the app's first paint at the default demo size in headless Chromium
(time to the title, to all KPI cards, to the script finishing), first and warm loads.
With ``--load`` (and nothing else: it runs alone, at one size, ``--customers``, default
20,000): the app under many people at once. A demo database (load_<n>.duckdb, kept with
``--reuse``; each run works on a copy, since the run imports into it) is served by
``python app.py`` (CM_AUTH=off) and, once its warm-up has filled the default views'
caches (pages.ui.warmup; the time it took is reported; ``--load-cold`` turns it off
and the sessions arrive on a cold server), browsed from one headless Chromium by
``--load-sessions`` (20) browser contexts, each loading the Overview, Retention, Segments
and Surveys pages in turn for ``--load-seconds`` (60) and until the import below is
done; a load counts when the page's content is there and the script has finished, and
fails on a timeout (180 s), an exception or error box, or "Connection error". Meanwhile
one more context, after a quarter of the duration, loads the Overview, then imports
through the Data page (as tests/test_browser.py does) 500 completed orders of 500 new
customers in the data's last 30 days, then loads the Overview again. Reported: page
loads and errors, p50/p95/max seconds per page, the import's times, the customer cards
(active and new customers) before and after the import and every value seen on an
Overview load, which must be one of the two (and the new one on any load begun after
the import was reported loaded), the same cards computed from the database before and
after, and the server's peak RSS (VmHWM). The server's health check is polled: if it
stops answering for 30 s the server is hung, its threads' Python stacks are dumped
(faulthandler, SIGUSR1) into load_<n>.run.server.log and the run stops and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


YEARS = 3.0  # years of demo history (--years)


def bench_db(workdir: Path, n: int) -> Path:
    """The benchmark database of ``n`` customers (and ``YEARS`` of history) in ``workdir``."""
    return workdir / (f"bench_{n}.duckdb" if YEARS == 3.0 else f"bench_{n}_{YEARS:g}y.duckdb")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- child measurements (each in its own process) ----------------------------------
def child_generate(db: str, customers: int) -> dict:
    from data import demo
    from data.store import Store

    t = time.perf_counter()
    store = Store(db)
    truth = demo.build(store, customers=customers, seed=7, years=YEARS)
    store.close()
    return {"seconds": time.perf_counter() - t, "peak_rss_mb": _rss_mb(), "orders": truth["counts"]["orders"]}


def child_overview(db: str, customers: int) -> dict:
    from data.store import Store
    from metrics import kpis
    from metrics.filters import ViewState, comparison_period

    out = {}
    t = time.perf_counter()
    store = Store(db, read_only=True)
    first, last = kpis.data_bounds(store)
    views = {
        "default": ViewState(),
        "channel_member": ViewState(channels=("shopee",), loyalty="member"),
        "all_history": ViewState(period="all"),
    }
    for name, view in views.items():
        f = view.filters(as_of=last, first=first)
        cmp = comparison_period(f.start, f.end, view.comparison)
        t = time.perf_counter()
        kpis.overview(store, f, comparison=cmp)
        cold = time.perf_counter() - t
        warm = []
        for _ in range(5):
            t = time.perf_counter()
            kpis.overview(store, f, comparison=cmp)
            warm.append(time.perf_counter() - t)
        out[name] = {"cold_s": cold, "warm_s": statistics.median(warm)}
    out["peak_rss_mb"] = _rss_mb()
    return out


def child_paint(db: str, customers: int) -> dict:
    """Start the app on ``db`` and load it in headless Chromium four times."""
    import socket
    import urllib.request

    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "CM_DB_PATH": db}
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        t0 = time.perf_counter()
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
                break
            except OSError:
                if time.perf_counter() - t0 > 60:
                    raise RuntimeError("the app did not start")
                time.sleep(0.1)
        server_up = time.perf_counter() - t0
        loads = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            for _ in range(4):
                page = browser.new_page(viewport={"width": 1500, "height": 1300})
                t = time.perf_counter()
                page.goto(f"http://127.0.0.1:{port}/")
                marks = {}
                for name, sel in (("title_s", "h1"), ("kpis_s", "[data-testid='stMetric'] >> nth=14"),
                                  ("chart_s", ".js-plotly-plot")):
                    page.wait_for_selector(sel, timeout=60_000)
                    marks[name] = time.perf_counter() - t
                page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']")
                marks["done_s"] = time.perf_counter() - t
                loads.append(marks)
                page.close()
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    warm = {k: statistics.median(load[k] for load in loads[1:]) for k in loads[0]}
    return {"server_start_s": server_up, "first_load": loads[0], "warm_load": warm}


def child_import_csv(db: str, rows: int) -> dict:
    """Write an orders CSV of ``rows`` rows (generic format) from the orders in ``db``,
    repeating them with new order ids as needed. Returns its path and size."""
    import duckdb

    out = str(Path(db).with_name(f"orders_{rows}.csv"))
    con = duckdb.connect(db, read_only=True)
    n = con.execute("SELECT count(*) FROM orders").fetchall()[0][0]
    copies = -(-rows // n)
    con.execute(
        f"COPY (SELECT 'R' || c.i || '-' || o.order_id AS order_id, customer_id, ordered_at, revenue, discount, "
        f"gross_margin, channel, status, category FROM orders o, range({copies}) c(i) LIMIT {rows}) "
        f"TO '{out}' (HEADER)"
    )
    con.close()
    return {"path": out, "size_mb": Path(out).stat().st_size / 2**20}


def child_duckdb_csv(csv_path: str, rows: int) -> dict:
    """DuckDB's own CREATE TABLE ... AS SELECT * FROM read_csv(...): the yardstick, in
    memory (the issue's figure) and into a fresh database file (what our import
    writes, so the like-for-like comparison)."""
    import duckdb

    con = duckdb.connect()
    t = time.perf_counter()
    con.execute(f"CREATE TABLE t AS SELECT * FROM read_csv('{csv_path}')")
    memory = time.perf_counter() - t
    con.close()
    db = Path(csv_path).with_suffix(".ctas.duckdb")
    for p in (db, Path(str(db) + ".wal")):
        p.unlink(missing_ok=True)
    t = time.perf_counter()
    con = duckdb.connect(str(db))
    con.execute(f"CREATE TABLE t AS SELECT * FROM read_csv('{csv_path}')")
    con.close()
    to_file = time.perf_counter() - t
    db.unlink(missing_ok=True)
    return {"seconds": memory, "file_seconds": to_file, "peak_rss_mb": _rss_mb()}


def child_import(csv_path: str, rows: int) -> dict:
    """Our import end to end (read, validate, load into a fresh database)."""
    from data import importer
    from data.store import Store

    db = str(Path(csv_path).with_suffix(".import.duckdb"))
    for p in (Path(db), Path(db + ".wal")):
        p.unlink(missing_ok=True)
    t = time.perf_counter()
    store = Store(db)
    report = importer.check_file(Path(csv_path), Path(csv_path).name, "orders", store=store)
    checked = time.perf_counter() - t
    importer.load(store, report, mode="replace")
    store.close()
    return {"seconds": time.perf_counter() - t, "check_s": checked, "ok": report.ok, "rows": report.rows_read,
            "peak_rss_mb": _rss_mb()}


def page_computation(store, f, last) -> None:
    """Everything the Retention page computes with its default controls."""
    from metrics import retention as R

    view = R.retention_view(store, f, R.CohortSpec(), as_of=last)
    values = R.cohort_values(view.table, "retention")
    R.average_curve(values)
    R.n_period_trend(values, 3)
    R.repeat_rates(view.table)
    R.suggested_window(view.gaps)


def child_retention(db: str, customers: int) -> dict:
    """The monthly cohort matrix cold (first query on a freshly opened database), the
    usual pandas recipe on the same orders side by side, and the whole Retention
    page's computation cold and warm."""
    import pandas as pd

    from data.store import Store
    from metrics import kpis
    from metrics import retention as R
    from metrics.filters import ViewState

    store = Store(db, read_only=True)
    first, last = kpis.data_bounds(store)
    f = ViewState(period="all").filters(as_of=last, first=first)
    t = time.perf_counter()
    R.cohort_table(store, f, R.CohortSpec(), as_of=last, repeaters=False, money=False)
    matrix_cold = time.perf_counter() - t
    store.close()
    store = Store(db, read_only=True)
    t = time.perf_counter()
    R.cohort_table(store, f, R.CohortSpec(), as_of=last)
    full_cold = time.perf_counter() - t
    store.close()

    store = Store(db, read_only=True)
    f365 = ViewState().filters(as_of=last, first=first)
    t = time.perf_counter()
    page_computation(store, f365, last)
    page_cold = time.perf_counter() - t
    warm = []
    for _ in range(3):
        t = time.perf_counter()
        page_computation(store, f365, last)
        warm.append(time.perf_counter() - t)
    t = time.perf_counter()
    df = store.query("SELECT customer_key, ordered_at FROM orders WHERE status = 'completed'").to_pandas()
    load_s = time.perf_counter() - t
    store.close()
    # The usual recipe: first-order month per customer, period difference, pivot.
    t = time.perf_counter()
    df["month"] = df["ordered_at"].dt.year * 12 + df["ordered_at"].dt.month - 1
    df["cohort"] = df.groupby("customer_key")["month"].transform("min")
    df["k"] = df["month"] - df["cohort"]
    pivot = df.groupby(["cohort", "k"])["customer_key"].nunique().unstack(1)
    (pivot.divide(pivot[0], axis=0))
    pandas_s = time.perf_counter() - t
    return {"matrix_cold_s": matrix_cold, "full_table_cold_s": full_cold, "pandas_recipe_s": pandas_s, "pandas_load_s": load_s,
            "page_cold_s": page_cold, "page_warm_s": statistics.median(warm), "orders": len(df),
            "peak_rss_mb": _rss_mb()}


def _cold_warm(fn, warm_runs: int):
    """``fn()`` timed once (cold: the first call) and ``warm_runs`` more times:
    (its first result, cold seconds, median warm seconds)."""
    t = time.perf_counter()
    result = fn()
    cold = time.perf_counter() - t
    warm = []
    for _ in range(warm_runs):
        t = time.perf_counter()
        fn()
        warm.append(time.perf_counter() - t)
    return result, cold, statistics.median(warm)


def _clv_inputs(db: str):
    from data.store import Store
    from metrics import kpis
    from metrics.filters import ViewState

    store = Store(db, read_only=True)
    first, last = kpis.data_bounds(store)
    # All history up to the last order date (the summary ignores the filters' period).
    return store, ViewState(period="all").filters(as_of=last, first=first), last


def child_clv(db: str, customers: int) -> dict:
    """The CLV summary (unit days, calibration end = the last order date) cold and
    warm, then BG/NBD and Gamma-Gamma fitted on it; the summary goes to a parquet file
    beside the database for the lifetimes side."""
    import polars as pl

    from metrics import clv as C

    store, f, last = _clv_inputs(db)
    summary, cold, warm = _cold_warm(lambda: C.customer_summary(store, f, calibration_end=last, unit="days"), 2)
    store.close()
    x, tx, T, m = (summary[c].to_numpy() for c in ("frequency", "recency", "T", "monetary_value"))
    t = time.perf_counter()
    bg = C.fit_bgnbd(x, tx, T)
    bg_s = time.perf_counter() - t
    t = time.perf_counter()
    gg = C.fit_gamma_gamma(x, m)
    gg_s = time.perf_counter() - t
    parquet = Path(db).with_name(f"clv_summary_{customers}.parquet")
    summary.select("frequency", "recency", "T", "monetary_value").write_parquet(parquet)
    return {
        "calibration_end": str(last), "customers": summary.height,
        "repeat_customers": int((x > 0).sum()), "gg_customers": gg.n,
        "distinct_rows": summary.select("frequency", "recency", "T").unique().height,
        "summary_cold_s": cold, "summary_warm_s": warm,
        "bgnbd_s": bg_s, "gg_s": gg_s, "fit_total_s": bg_s + gg_s,
        "bgnbd": bg.params, "bgnbd_ll": bg.log_likelihood, "gg": gg.params, "gg_ll": gg.log_likelihood,
        "parquet": str(parquet), "peak_rss_mb": _rss_mb(),
    }


def child_clv_summary(db: str, customers: int) -> dict:
    """The CLV summary on a large orders database (10 million orders): cold (first
    query on a freshly opened database) and warm (median of 3)."""
    from metrics import clv as C

    store, f, last = _clv_inputs(db)
    summary, cold, warm = _cold_warm(lambda: C.customer_summary(store, f, calibration_end=last, unit="days"), 3)
    row = store.query("SELECT count(*) AS n, count(*) FILTER (WHERE status = 'completed') AS c, "
                      "count(DISTINCT (customer_key, CAST(ordered_at AS DATE))) FILTER (WHERE status = 'completed') "
                      "AS days FROM orders").row(0)
    store.close()
    return {"orders": row[0], "completed_orders": row[1], "purchase_days": row[2], "customers": summary.height,
            "cold_s": cold, "warm_s": warm, "peak_rss_mb": _rss_mb()}


def child_clv_ten_million(db: str, customers: int) -> dict:
    """Issue 9's memory claim: BG/NBD and Gamma-Gamma fitted on the per-customer
    summary of ten million customers, as the app pulls it back from Spark (one row per
    customer, whole days), identical rows collapsed with weights inside the fits.
    Simulated from known parameters (tests/test_clv.py's generator), so the fit is
    also checked against the truth. ``db`` is unused."""
    import numpy as np

    from metrics import clv as C
    from tests.test_clv import simulate_bgnbd, simulate_gamma_gamma

    n = 10_000_000
    truth = {"r": 0.25, "alpha": 40.0, "a": 0.8, "b": 2.5}  # days
    gg_truth = {"p": 6.0, "q": 4.0, "gamma": 150_000.0}
    rng = np.random.default_rng(9)
    T = rng.integers(30, 1096, n).astype(float)  # whole days, as the summary in days
    x, tx = simulate_bgnbd(rng, n, *truth.values(), T)
    recency = np.floor(tx)
    money = np.where(x > 0, np.round(simulate_gamma_gamma(rng, np.maximum(x, 1), *gg_truth.values()), -3), 0.0)
    rows = np.unique(np.column_stack([x, recency, T]), axis=0).shape[0]
    t = time.perf_counter()
    bg = C.fit_bgnbd(x, recency, T)
    bg_s = time.perf_counter() - t
    rep = x > 0
    t = time.perf_counter()
    gg = C.fit_gamma_gamma(x[rep], money[rep])
    gg_s = time.perf_counter() - t
    return {"customers": n, "distinct_rows": int(rows), "bgnbd_s": bg_s, "gg_s": gg_s,
            "bgnbd": {k: float(getattr(bg, k)) for k in truth}, "gg": {k: float(getattr(gg, k)) for k in gg_truth},
            "truth": {**truth, **gg_truth}, "peak_rss_mb": _rss_mb()}


def child_clv_orders_db(db: str, rows: int) -> dict:
    """A database of ``rows`` orders made by repeating the orders of ``db`` (new order
    ids; same customers and dates), for the summary at 10 million orders when the
    import benchmark's database is not there."""
    import duckdb

    out = Path(db).with_name(f"orders_{rows}.clv.duckdb")
    for p in (out, Path(str(out) + ".wal")):
        p.unlink(missing_ok=True)
    con = duckdb.connect(str(out))
    con.execute(f"ATTACH '{db}' AS src (READ_ONLY)")
    n = con.execute("SELECT count(*) FROM src.orders").fetchall()[0][0]
    copies = -(-rows // n)
    con.execute(
        "CREATE TABLE orders AS SELECT * REPLACE ('C' || c.i || '-' || order_id AS order_id) "
        f"FROM src.orders o, range({copies}) c(i) LIMIT {rows}"
    )
    con.close()
    return {"path": str(out)}


LIFETIMES_SCRIPT = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
import numpy, pandas, scipy
import lifetimes
from lifetimes import BetaGeoFitter, GammaGammaFitter
df = pandas.read_parquet(sys.argv[1])
t = time.perf_counter()
bg = BetaGeoFitter().fit(df["frequency"], df["recency"], df["T"])
bg_s = time.perf_counter() - t
r = df[(df["frequency"] > 0) & (df["monetary_value"] > 0)]  # the customers our Gamma-Gamma fits
t = time.perf_counter()
gg = GammaGammaFitter().fit(r["frequency"], r["monetary_value"])
gg_s = time.perf_counter() - t
print(json.dumps({"bgnbd_s": bg_s, "gg_s": gg_s, "bgnbd": {k: float(v) for k, v in bg.params_.items()},
                  "gg": {k: float(v) for k, v in gg.params_.items()},
                  "versions": {"lifetimes": lifetimes.__version__, "pandas": pandas.__version__,
                               "numpy": numpy.__version__, "scipy": scipy.__version__}}))
"""


def lifetimes_side(workdir: Path, parquet: str) -> dict:
    """lifetimes 0.11.3's BetaGeoFitter and GammaGammaFitter on the same summary, in a
    venv of its own under ``workdir`` (made here on first use; lifetimes is not a
    dependency of the project). It works with current pandas, numpy and scipy, so
    nothing is pinned besides lifetimes itself. {"available": False, "reason": ...}
    when the venv cannot be made (no network) or the fit fails."""
    venv = workdir / "lifetimes-venv"
    py = venv / "bin" / "python"
    probe = [str(py), "-c", "import lifetimes, pyarrow; assert lifetimes.__version__ == '0.11.3'"]
    try:
        if not py.exists() or subprocess.run(probe, capture_output=True).returncode != 0:
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True,
                           text=True, timeout=300)
            subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                            "lifetimes==0.11.3", "pyarrow"], check=True, capture_output=True, text=True, timeout=900)
        res = subprocess.run([str(py), "-c", LIFETIMES_SCRIPT, parquet], capture_output=True, text=True, timeout=1800)
    except subprocess.CalledProcessError as e:
        tail = (e.stderr or e.stdout or "").strip().splitlines()
        return {"available": False, "reason": f"could not make the venv: {tail[-1] if tail else e}"}
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"available": False, "reason": str(e)}
    if res.returncode != 0:
        tail = res.stderr.strip().splitlines()
        return {"available": False, "reason": f"the fit failed: {tail[-1] if tail else res.returncode}"}
    return {"available": True, **json.loads(res.stdout.strip().splitlines()[-1])}


def _agreement(ours: dict, theirs: dict, names: dict) -> dict:
    """Max relative difference of the parameters (ours: their name in lifetimes) and
    whether each agrees to 3 significant figures (both round to the same 3 digits, or
    differ by under 5e-4 relative, for values that straddle a rounding boundary)."""
    rel = {k: abs(theirs[v] / ours[k] - 1) for k, v in names.items()}
    same = {k: f"{ours[k]:.3g}" == f"{theirs[v]:.3g}" or rel[k] < 5e-4 for k, v in names.items()}
    return {"max_rel_diff": max(rel.values()), "rel_diff": rel, "agree_3sf": all(same.values())}


def child_loyalty(db: str, customers: int) -> dict:
    """The Loyalty page's whole computation (metrics.loyalty.loyalty_view: health,
    breakage, the naive comparison, the causal effect with its bootstrap, ROI,
    referrals) on a freshly opened database (cold), then again (warm), default
    filters (last 365 days)."""
    from data.store import Store
    from metrics import kpis
    from metrics import clv_view as CV
    from metrics import loyalty as L
    from metrics.filters import ViewState

    store = Store(db, read_only=True)
    first, last = kpis.data_bounds(store)
    f = ViewState().filters(as_of=last, first=first)
    view, cold, warm = _cold_warm(lambda: L.loyalty_view(store, f, as_of=last, value_per_point=100.0, margin_rate=0.3),
                                  1)
    # The naive table's predicted-CLV column: the CLV models (cached with the CLV page's).
    t0 = time.perf_counter()
    scored = CV.score(store, CV.model_filters(f), as_of=last, settings=CV.Settings(margin_rate=0.3))
    summary = L.customer_summary(store, f, start=view.start, end=view.end, margin_rate=0.3)
    L.predicted_by_group(L.naive_groups(summary, view.end), scored.customers)
    predicted = time.perf_counter() - t0
    orders = int(store.scalar("SELECT count(*) FROM orders"))
    store.close()
    c = view.causal
    return {"cold_s": cold, "warm_s": warm, "predicted_clv_s": predicted, "orders": orders, "members": c.members,
            "matched": c.matched,
            "effect": c.effect, "low": c.low, "high": c.high, "sample_share": c.sample_share,
            "peak_rss_mb": _rss_mb()}


def child_segments(db: str, customers: int) -> dict:
    """The Segments page's computation: RFM scores and segments with the summary and
    the grid (cold, then warm), and the personas (features of every customer,
    k-means on a sample for k = 3..8 with the silhouettes, every customer assigned,
    the description and the projection), on a freshly opened database."""
    from data.store import Store
    from metrics import kpis
    from metrics import personas as P
    from metrics import rfm
    from metrics.filters import ViewState

    store = Store(db, read_only=True)
    first, last = kpis.data_bounds(store)
    f = ViewState().filters(as_of=last, first=first)

    def segments():
        scored = rfm.rfm_segments(store, f, as_of=last)
        return scored, rfm.segment_summary(scored), rfm.grid_summary(scored)

    (scored, _, _), cold, warm = _cold_warm(segments, 1)
    t0 = time.perf_counter()
    feats = P.features(store, f, as_of=last)
    t1 = time.perf_counter()
    fitted = P.fit(feats)
    t2 = time.perf_counter()
    P.describe(feats, fitted, segments=scored, nps=P.nps_answers(store, as_of=last))
    P.projection(feats, fitted)
    t3 = time.perf_counter()
    store.close()
    return {"segments_cold_s": cold, "segments_warm_s": warm, "customers": scored.height,
            "personas_s": t3 - t0, "features_s": t1 - t0, "fit_s": t2 - t1, "describe_s": t3 - t2,
            "k": fitted.k, "silhouette": fitted.silhouettes[fitted.k], "peak_rss_mb": _rss_mb()}


def child_surveys(db: str, customers: int) -> dict:
    """The Surveys page's computation without the CLV models (default filters, last
    365 days): scores with the comparison, monthly scores, the distribution, the
    touchpoint breakdown, say vs do (180 days), the detractors by margin, the key
    drivers, the distinctive words by NPS group and a comment search; cold then warm."""
    from dataclasses import replace

    from data.store import Store
    from metrics import kpis
    from metrics import surveys as S
    from metrics.filters import ViewState, comparison_period

    store = Store(db, read_only=True)
    first, last = kpis.data_bounds(store)
    f = ViewState().filters(as_of=last, first=first)
    cmp = comparison_period(f.start, f.end, "prev")
    a, b = S.observed_period(f, as_of=last, horizon_days=180)

    def page():
        return (S.score_summary(store, f, comparison=cmp), S.monthly_scores(store, f), S.nps_distribution(store, f),
                S.scores_by(store, f, "touchpoint"),
                S.say_vs_do(store, replace(f, start=a, end=b), as_of=last, horizon_days=180),
                S.detractors_to_call(store, f, limit=200), S.key_drivers(store, f),
                S.distinctive_terms(store, f, by="category", top=10), S.search_comments(store, f, "giao hang"))

    out, cold, warm = _cold_warm(page, 1)
    responses = int(store.scalar("SELECT count(*) FROM survey_responses"))
    store.close()
    return {"cold_s": cold, "warm_s": warm, "responses": responses, "peak_rss_mb": _rss_mb()}


# -- the load benchmark (--load): many browser sessions at once, one import among them
LOAD_PAGES = (  # (name, path, what shows that the page has drawn its content)
    ("overview", "/?lang=en", "[data-testid='stMetric'] >> nth=14"),
    ("retention", "/retention?lang=en", "text=Cohort table"),
    ("segments", "/segments?lang=en", "text=k-means picked"),
    ("surveys", "/surveys?lang=en", "text=Distinctive words by"),
)
LOAD_READY = "[data-testid='stApp'][data-test-script-state='notRunning']"
LOAD_CARDS = ("Active customers", "New customers")  # the Overview's customer-count cards
LOAD_IMPORT_ROWS = 500
# What the page shows when something failed: Streamlit's exception box, an error alert,
# or the client's "Connection error" dialog.
LOAD_PROBLEMS_JS = """() => {
  const out = [];
  for (const e of document.querySelectorAll("[data-testid='stException']"))
    out.push("exception: " + e.innerText.trim().split("\\n").slice(0, 3).join(" | "));
  for (const e of document.querySelectorAll("[data-testid='stAlertContentError']"))
    out.push("error: " + e.innerText.trim().split("\\n")[0]);
  if (document.body && document.body.innerText.includes("Connection error"))
    out.push("connection error dialog");
  return out;
}"""
LOAD_CARDS_JS = """() => {
  const out = {};
  for (const c of document.querySelectorAll("[data-testid='stMetric']")) {
    const l = c.querySelector("[data-testid='stMetricLabel']"), v = c.querySelector("[data-testid='stMetricValue']");
    if (l && v) out[l.innerText.trim().split(" · ")[0]] = v.innerText.trim();
  }
  return out;
}"""


def child_load_expected(db: str, customers: int) -> dict:
    """The data's last order date and the customer cards the Overview should show
    (default view, English), read from ``db`` while no server holds it."""
    from data.store import Store
    from metrics import kpis
    from metrics.catalogue import CATALOGUE
    from metrics.filters import ViewState, comparison_period
    from pages.ui import fmt

    view = ViewState(lang="en")
    store = Store(db, read_only=True)
    try:
        first, last = kpis.data_bounds(store)
        f = view.filters(as_of=last, first=first)
        t = kpis.period_kpis(store, f, comparison=comparison_period(f.start, f.end, view.comparison))
        customers_n = int(store.scalar("SELECT count(DISTINCT customer_id) FROM orders"))
    finally:
        store.close()
    money = fmt.Money(lang=view.lang, currency=view.currency, fx=view.fx)
    rows = {r["kpi"]: r for r in t.to_dicts()}
    cards = {CATALOGUE[k].label("en"): fmt.kpi_value(CATALOGUE[k].unit, rows[k]["value"], "en", money)
             for k in ("active_customers", "new_customers")}
    return {"first": str(first), "last": str(last), "cards": cards, "customers_with_orders": customers_n}


def _load_csv(last: str, rows: int) -> bytes:
    """``rows`` completed orders of ``rows`` new customers (LT00001...), in the data's last
    30 days: a Vietnamese export like the browser test's (day-first dates, VND amounts)."""
    from datetime import date, timedelta

    end = date.fromisoformat(last)
    lines = ["Mã đơn hàng;Mã khách hàng;Ngày đặt hàng;Thành tiền;Trạng thái"]
    for i in range(1, rows + 1):
        day = end - timedelta(days=i % 30)
        amount = f"{150_000 + 1_000 * (i % 700):,}".replace(",", ".")
        lines.append(f"LT-{i:05d};LT{i:05d};{day:%d/%m/%Y};{amount} ₫;Hoàn thành")
    return ("\n".join(lines) + "\n").encode()


def _vm_kb(pid: int, field: str) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1])
    except OSError:
        return None
    return None


def _hang_stacks(log: Path) -> list[str]:
    """From faulthandler's dump in the server's log: per thread that runs our code or a
    library call, the innermost frame and the innermost frame of the project's code."""
    out, frames = [], None
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    for line in lines + ["Thread end"]:
        if line.startswith(("Thread 0x", "Current thread 0x")):
            if frames:
                own = next((f for f in frames if f.startswith(str(ROOT)) and "/.venv/" not in f), None)
                if own:
                    out.append(f"{frames[0].replace(str(ROOT) + '/', '')}  <-  {own.replace(str(ROOT) + '/', '')}")
            frames = []
        elif frames is not None and line.strip().startswith("File "):
            frames.append(line.strip()[5:].replace('"', ""))
    return out


def _cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system, all threads) the process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _browser_cpu_s() -> float:
    """CPU seconds used so far by the running Chromium processes and Playwright's Node
    driver (all of them: the load test's are the only ones while it runs)."""
    total = 0.0
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip().startswith(("chrom", "node")):
                    total += _cpu_s(int(d.name)) or 0.0
            except OSError:
                continue
    return total


def _pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    s = sorted(values)
    return s[max(0, min(len(s) - 1, -(-len(s) * q // 100) - 1))]


def run_load(db: Path, *, sessions: int, seconds: float, last: str, timeout_s: float = 180.0,
             cold: bool = False) -> dict:
    """Start the app on ``db`` (CM_AUTH=off) and drive it from one headless Chromium with
    ``sessions`` browser contexts, each loading the Overview, Retention, Segments and
    Surveys pages in turn for ``seconds``; meanwhile one more context imports an orders
    CSV of new customers through the Data page. Every Overview load's customer cards must
    show the value before the import or the value after it.

    The sessions arrive once the server's warm-up (pages.ui.warmup) has filled the
    default views' caches, as on a server started before people use it; ``cold``
    turns the warm-up off and sends them at once."""
    import asyncio
    import socket
    import urllib.request

    from playwright.async_api import Error as PWError
    from playwright.async_api import async_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "CM_DB_PATH": str(db), "CM_AUTH": "off", "CM_WARMUP": "0" if cold else "1"}
    log = open(db.with_suffix(".server.log"), "wb")
    # `python app.py ...` as the browser tests start it, with faulthandler listening for
    # SIGUSR1 so that a hung server can dump every thread's Python stack into the log.
    # No file watcher: a source edit during the run would otherwise put a "Source file
    # changed" prompt into every session's status widget.
    start_app = ("import faulthandler, runpy, signal, sys; faulthandler.register(signal.SIGUSR1, all_threads=True); "
                 "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    proc = subprocess.Popen(
        [sys.executable, "-c", start_app, "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    t_start = time.perf_counter()
    while True:
        try:
            with urllib.request.urlopen(base + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            if proc.poll() is not None or time.perf_counter() - t_start > 60:
                proc.kill()
                raise RuntimeError(f"the app did not start; see {log.name}")
            time.sleep(0.2)
    server_up = time.perf_counter() - t_start
    warm_line, warm_s = None, None
    while not cold and warm_line is None:
        text = Path(log.name).read_bytes().decode(errors="replace")
        warm_line = next((line for line in text.splitlines() if line.startswith("warm-up:")), None)
        if warm_line is None:
            if proc.poll() is not None or time.perf_counter() - t_start > 900:
                proc.kill()
                raise RuntimeError(f"no warm-up line from the app; see {log.name}")
            time.sleep(0.5)
        else:
            warm_s = time.perf_counter() - t_start - server_up
    rss_start = _vm_kb(proc.pid, "VmRSS")
    csv = _load_csv(last, LOAD_IMPORT_ROWS)
    loads: list[dict] = []
    imp: dict = {}
    where: dict = {}  # session -> (what it is waiting for, since): the progress lines
    hung: dict = {}  # set when the server stops answering its health check
    import_done = asyncio.Event()
    cpu_use: dict = {}  # CPU seconds of the server and of the browser's processes during the run

    def at(session, what: str) -> None:
        where[session] = (what, time.perf_counter())

    async def evaluate(page, js: str):
        # A page's script can be busy for long under load: never wait for it forever.
        return await asyncio.wait_for(page.evaluate(js), timeout=60)

    async def load(page, session, name: str, path: str, ready: str, t0: float) -> dict:
        rec: dict = {"session": session, "page": name, "start_s": time.perf_counter() - t0}
        start = time.perf_counter()
        until = start + timeout_s

        def ms() -> float:
            return max(1.0, (until - time.perf_counter()) * 1000)

        try:
            at(session, f"{name}: goto")
            await page.goto(base + path, timeout=ms())
            at(session, f"{name}: content")
            content = page.locator(ready).or_(page.locator("[data-testid='stException']"))
            await content.first.wait_for(timeout=ms())
            rec["content_s"] = time.perf_counter() - start
            at(session, f"{name}: script end")
            await page.wait_for_selector(LOAD_READY, timeout=ms())
            rec["script_done_s"] = time.perf_counter() - start
            at(session, f"{name}: status widget")
            await page.wait_for_selector("[data-testid='stStatusWidget']", state="detached", timeout=ms())
            rec["seconds"] = time.perf_counter() - start
            if await page.locator(ready).count() == 0:
                rec.setdefault("problems", []).append("content missing")
        except PWError as e:
            rec["seconds"] = None
            rec.setdefault("problems", []).append(f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
        rec["end_s"] = time.perf_counter() - t0
        try:
            at(session, f"{name}: reading")
            rec.setdefault("problems", []).extend(await evaluate(page, LOAD_PROBLEMS_JS))
            if name == "overview" and rec["seconds"] is not None:
                cards = await evaluate(page, LOAD_CARDS_JS)
                rec["cards"] = {k: cards.get(k) for k in LOAD_CARDS}
        except (PWError, asyncio.TimeoutError) as e:
            rec["problems"].append(f"reading the page: {type(e).__name__} {str(e).splitlines()[0][:200] if str(e) else ''}")
        if not rec["problems"]:
            del rec["problems"]
        return rec

    async def browse(browser, session: int, t0: float, deadline: float) -> None:
        await asyncio.sleep(0.2 * session)  # a short ramp-up
        context = await browser.new_context(viewport={"width": 1400, "height": 1000})
        page = await context.new_page()
        i = session  # sessions start on different pages, then take them in turn
        # Until the duration is over and the import (with its fresh load after) is done:
        # some Overview loads then always overlap and follow the import.
        while time.perf_counter() < deadline or not import_done.is_set():
            name, path, ready = LOAD_PAGES[i % len(LOAD_PAGES)]
            i += 1
            loads.append(await load(page, session, name, path, ready, t0))
        at(session, "closing")
        await asyncio.wait_for(context.close(), timeout=60)
        where.pop(session, None)

    async def importer(browser, t0: float, start_after: float) -> None:
        try:
            await asyncio.sleep(start_after)
            await import_through_ui(browser, t0)
        finally:
            import_done.set()  # whatever happened, the browsing sessions may stop

    async def import_through_ui(browser, t0: float) -> None:
        """A person's path through the Data page (as the browser test's upload test):
        a fresh Overview first, then upload, check, load; a fresh Overview after."""
        context = await browser.new_context(viewport={"width": 1400, "height": 1000})
        page = await context.new_page()
        async def probe(label: str) -> None:
            # Under heavy load one Overview load can time out: up to three tries.
            for attempt in range(3):
                rec = await load(page, "import", *LOAD_PAGES[0], t0)
                imp.setdefault(f"{label}_tries", []).append(rec)
                if rec.get("cards") and not rec.get("problems"):
                    imp[label] = rec
                    return

        try:
            await probe("before")
            started = time.perf_counter()
            imp["started_s"] = started - t0
            ready = await load(page, "import", "data", "/data?lang=en", "text=Check the file", t0)
            imp["data_page_s"] = ready["seconds"]
            at("import", "data: upload")
            await page.locator("input[type='file']").set_input_files(
                files=[{"name": "load_orders.csv", "mimeType": "text/csv", "buffer": csv}], timeout=timeout_s * 1000)
            t = time.perf_counter()
            at("import", "data: check")
            # The form's button stays disabled until the upload has reached the server.
            await page.get_by_role("button", name="Check the file").click(timeout=timeout_s * 1000)
            await page.wait_for_selector(f"text=load_orders.csv: {LOAD_IMPORT_ROWS} rows read, 0 rejected.",
                                         timeout=timeout_s * 1000)
            imp["check_s"] = time.perf_counter() - t
            t = time.perf_counter()
            at("import", "data: load")
            await page.get_by_role("button", name=f"Load {LOAD_IMPORT_ROWS} rows").click(timeout=timeout_s * 1000)
            await page.wait_for_selector(f"text=Loaded {LOAD_IMPORT_ROWS} rows into Orders", timeout=timeout_s * 1000)
            done = time.perf_counter()
            imp["load_s"] = done - t
            imp["import_s"] = done - started
            imp["committed_s"] = done - t0
            await page.wait_for_selector(LOAD_READY, timeout=timeout_s * 1000)
            await probe("after")
        except PWError as e:
            imp["error"] = f"{where.get('import', ('?',))[0]}: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
            shot = db.with_suffix(".import-failure.png")
            try:  # what the page showed: its problems, its text, a screenshot
                imp["page_problems"] = await evaluate(page, LOAD_PROBLEMS_JS)
                text = await asyncio.wait_for(page.locator("[data-testid='stMain']").inner_text(timeout=30_000), 60)
                imp["page_text"] = text[-1500:]
                await asyncio.wait_for(page.screenshot(path=str(shot), full_page=True, timeout=30_000), 60)
                imp["screenshot"] = str(shot)
            except (PWError, asyncio.TimeoutError):
                pass
        await asyncio.wait_for(context.close(), timeout=60)
        where.pop("import", None)

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(base + "/_stcore/health", timeout=10) as r:
                return r.status == 200
        except OSError:
            return False

    async def watchdog(t0: float, work: asyncio.Future) -> None:
        """Every 30 s, a line on stderr: loads done, and what the slowest sessions wait for.
        Every 5 s, the server's health check: a busy server still answers it (its event
        loop gets the GIL every few milliseconds). Without an answer for 30 s while the
        server used under 1 s of CPU in the last 15 s, it is hung (deadlocked, not busy):
        dump its threads' stacks into its log and stop the browsing."""
        last_ok, last_line = time.perf_counter(), time.perf_counter()
        cpu: list[tuple[float, float]] = []
        while True:
            await asyncio.sleep(5)
            now = time.perf_counter()
            cpu = [(t, c) for t, c in cpu if now - t <= 16] + [(now, _cpu_s(proc.pid) or 0.0)]
            idle = now - cpu[0][0] >= 14 and cpu[-1][1] - cpu[0][1] < 1.0
            if await asyncio.to_thread(healthy):
                last_ok = time.perf_counter()
            elif now - last_ok > 30 and idle:
                hung.update(at_s=last_ok - t0, busy={str(k): w for k, (w, _) in where.items()},
                            cpu_last_15_s=cpu[-1][1] - cpu[0][1])
                proc.send_signal(signal.SIGUSR1)
                print(f"  [{now - t0:4.0f} s] the server has not answered /_stcore/health since {last_ok - t0:.0f} s "
                      f"and used {hung['cpu_last_15_s']:.1f} s of CPU in 15 s: hung; its threads' stacks are in "
                      f"{log.name}", file=sys.stderr, flush=True)
                work.cancel()
                return
            if now - last_line >= 30:
                last_line = now
                slow = sorted(where.items(), key=lambda kv: kv[1][1])[:3]
                print(f"  [{now - t0:4.0f} s] {len(loads)} loads done, {len(where)} sessions busy; longest waits: "
                      + ", ".join(f"{k} {w} {now - t:.0f} s" for k, (w, t) in slow), file=sys.stderr, flush=True)

    async def drive() -> float:
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                      "--no-first-run", "--disable-component-update", "--disable-sync"])
            t0 = time.perf_counter()
            cpu_use.update(server_start_s=_cpu_s(proc.pid) or 0.0, browser_start_s=_browser_cpu_s(),
                           bench_start_s=time.process_time())
            import_done.clear()
            work = asyncio.gather(importer(browser, t0, seconds / 4),
                                  *(browse(browser, k, t0, t0 + seconds) for k in range(sessions)))
            watch = asyncio.create_task(watchdog(t0, work))
            try:
                await work
            except asyncio.CancelledError:
                if "import_s" not in imp:
                    imp.setdefault("error", f"not finished: the server hung (at {where.get('import', ('start',))[0]})")
                # The loads in flight when the server hung: count them, as failed.
                for k, (w, since) in list(where.items()):
                    if k != "import" and w != "closing":
                        loads.append({"session": k, "page": w.split(":")[0], "start_s": since - t0,
                                      "seconds": None, "problems": ["in flight when the server hung"]})
            wall = time.perf_counter() - t0
            cpu_use["server_s"] = (_cpu_s(proc.pid) or 0.0) - cpu_use["server_start_s"]
            cpu_use["browser_s"] = _browser_cpu_s() - cpu_use["browser_start_s"]
            cpu_use["bench_s"] = time.process_time() - cpu_use["bench_start_s"]
            watch.cancel()
            await browser.close()
            return wall

    try:
        wall = asyncio.run(drive())
        peak = _vm_kb(proc.pid, "VmHWM")
        alive = proc.poll() is None
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    if hung:
        time.sleep(0.5)
        hung["stacks"] = _hang_stacks(Path(log.name))

    # -- the summary ------------------------------------------------------------------
    pages = {}
    for name, _, _ in LOAD_PAGES:
        ok = [r["seconds"] for r in loads if r["page"] == name and r["seconds"] is not None]
        pages[name] = {"loads": sum(r["page"] == name for r in loads), "ok": len(ok), "p50_s": _pct(ok, 50),
                       "p95_s": _pct(ok, 95), "max_s": max(ok) if ok else None}
    bad = [r for r in loads if r.get("problems")]
    kinds: dict[str, int] = {}
    for r in bad:
        for msg in r["problems"]:
            key = f"{r['page']}: {msg}"
            kinds[key] = kinds.get(key, 0) + 1
    before = (imp.get("before") or {}).get("cards")
    after = (imp.get("after") or {}).get("cards")
    overview = [r for r in loads if "cards" in r]
    seen = {k: sorted({r["cards"][k] for r in overview if r["cards"].get(k)}) for k in LOAD_CARDS}
    allowed = {k: {before[k], after[k]} for k in LOAD_CARDS} if before and after else None
    odd = [r for r in overview if allowed and any(r["cards"][k] not in allowed[k] for k in LOAD_CARDS)]
    # A load that began after the success message was seen must show the new value.
    stale = [r for r in overview if after and "committed_s" in imp and r["start_s"] > imp["committed_s"]
             and r["cards"] != after]
    return {
        "sessions": sessions, "duration_s": seconds, "wall_s": wall, "server_start_s": server_up,
        "cold": cold, "warmup_s": warm_s, "warmup": warm_line,
        "server_alive_at_end": alive,
        "page_loads": len(loads), "page_loads_ok": sum(r["seconds"] is not None for r in loads),
        "errors": len(bad), "error_kinds": kinds, "pages": pages,
        "import": {k: v for k, v in imp.items() if k not in ("before", "after")}, "import_rows": LOAD_IMPORT_ROWS,
        "import_seconds": imp.get("import_s"),
        "values_before": before, "values_after": after, "values_seen": seen,
        "overview_loads_read": len(overview), "inconsistent_loads": odd[:20], "stale_after_commit": len(stale),
        "values_changed": bool(before and after) and before != after,
        # None: not checked (no fresh load before or after the import, e.g. the server hung).
        "consistent": (not odd and not stale) if allowed else None,
        "server_rss_start_mb": rss_start / 1024 if rss_start else None,
        "server_peak_rss_mb": peak / 1024 if peak else None,
        # Where the two cores went: the app server against the headless browser that
        # draws every session's pages on the same machine.
        "server_cpu_s": cpu_use.get("server_s"), "browser_cpu_s": cpu_use.get("browser_s"),
        "bench_cpu_s": cpu_use.get("bench_s"),
        "server_log": log.name,
        "server_hung": hung or None,
        "load_log": sorted(loads, key=lambda r: r["start_s"]),
    }


def child_spark(db: str, customers: int) -> dict:
    """Issue 9: each page's computation (tests/metric_suite.py, default view) on the
    embedded DuckDB and on Spark local[2] over the same data written as Parquet. Spark
    runs in this process's JVM child: the time to a first result on a cold session
    (start + the first query), then each page's calls in order on both engines."""
    import shutil

    from data.spark import SparkStore, export_parquet
    from data.store import Store
    from tests import metric_suite as MS

    lake = Path(db).with_suffix(".lake")
    duck = Store(db, read_only=True)
    t = time.perf_counter()
    if lake.exists():
        shutil.rmtree(lake)
    export_parquet(duck, lake)
    export_s = time.perf_counter() - t
    t = time.perf_counter()
    spark = SparkStore(lake, master="local[2]")
    session_s = time.perf_counter() - t
    first = spark.scalar("SELECT count(*) FROM orders")
    first_result_s = time.perf_counter() - t
    sd, ss = MS.setting(duck), MS.setting(spark)
    pages = {}
    for page, calls in MS.SUITE.items():
        row = {}
        for label, store, setting in (("duckdb", duck, sd), ("spark", spark, ss)):
            t = time.perf_counter()
            for _, call in calls:
                call(store, setting)
            row[f"{label}_s"] = time.perf_counter() - t
        pages[page] = row
        print(f"  {page:10s} duckdb {row['duckdb_s']:7.2f} s   spark {row['spark_s']:7.2f} s", file=sys.stderr, flush=True)
    # An import into the lake (data.lakefiles through the Spark store): 500 orders of new
    # customers, checked, loaded with the store's rules, the changed tables rewritten as
    # Parquet and committed; then the Overview on Spark sees them.
    from data import importer

    last = duck.scalar("SELECT max(ordered_at)::DATE FROM orders")
    duck.close()
    csv = lake.with_name("spark_import.csv")
    csv.write_bytes(_load_csv(str(last), 500))
    t = time.perf_counter()
    report = importer.check_file(csv, csv.name, "orders", store=spark)
    checked_s = time.perf_counter() - t
    importer.load(spark, report, mode="append")
    import_s = time.perf_counter() - t
    seen = spark.scalar("SELECT count(*) FROM orders WHERE order_id LIKE 'LT-%'")
    return {"orders": int(first), "export_s": export_s, "spark_session_s": session_s,
            "spark_first_result_s": first_result_s, "pages": pages,
            "lake_import": {"rows": report.rows_read, "ok": report.ok, "check_s": checked_s, "total_s": import_s,
                            "seen_on_spark": int(seen)},
            "peak_rss_mb": _rss_mb()}


CHILDREN = {"generate": child_generate, "retention": child_retention, "overview": child_overview, "paint": child_paint,
            "import_csv": child_import_csv, "duckdb_csv": child_duckdb_csv, "import": child_import,
            "clv": child_clv, "clv_summary": child_clv_summary, "clv_orders_db": child_clv_orders_db,
            "clv_ten_million": child_clv_ten_million,
            "loyalty": child_loyalty, "segments": child_segments,
            "surveys": child_surveys, "load_expected": child_load_expected, "spark": child_spark}


def run_child(name: str, db: Path, customers: int) -> dict:
    res = subprocess.run(
        [sys.executable, __file__, "--child", name, "--db", str(db), "--customers", str(customers),
         "--years", str(YEARS)],
        cwd=ROOT, capture_output=True, text=True,
    )
    if res.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, nargs="+", default=None,
                    help="sizes (default 100000 1000000; with --load, the load test's one size, default 20000)")
    ap.add_argument("--paint", action="store_true", help="also measure the app's first paint (needs chromium)")
    ap.add_argument("--paint-customers", type=int, default=20_000, help="demo size for --paint (the default size)")
    ap.add_argument("--import-rows", type=int, default=0,
                    help="also time importing an orders CSV of this many rows (e.g. 10000000) against DuckDB's read_csv")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each import measurement (the median is reported)")
    ap.add_argument("--clv", action="store_true",
                    help="also the CLV models (issue 5) on the largest size, beside lifetimes 0.11.3 (own venv)")
    ap.add_argument("--clv-orders", type=int, default=10_000_000,
                    help="orders for the CLV summary timing (the import benchmark's database of that many rows "
                         "if there, else one made by repeating the largest size's orders)")
    ap.add_argument("--loyalty", action="store_true",
                    help="also the Loyalty page's computation (issue 6) on the largest size, cold and warm")
    ap.add_argument("--segments", action="store_true",
                    help="also the Segments page's computation (issue 7: RFM, segments, personas) on the largest size")
    ap.add_argument("--spark", action="store_true",
                    help="also each page's computation on Spark local[2] beside DuckDB (issue 9), on the largest size")
    ap.add_argument("--load", action="store_true",
                    help="only the load test: N browser sessions on the running app while one imports (needs chromium)")
    ap.add_argument("--load-sessions", type=int, default=20, help="browser sessions for --load")
    ap.add_argument("--load-seconds", type=float, default=60.0,
                    help="how long each --load session keeps starting page loads")
    ap.add_argument("--load-cold", action="store_true",
                    help="--load with the server's warm-up off: every session arrives on empty caches")
    ap.add_argument("--years", type=float, default=3.0,
                    help="years of demo history (3; more years, more orders per customer: 1,000,000 customers "
                         "over 5.5 years make 10.0 million orders); databases of other than 3 years are named "
                         "bench_<n>_<years>y")
    ap.add_argument("--workdir", type=Path, default=None, help="where to write the databases (default: a temp dir)")
    ap.add_argument("--reuse", action="store_true",
                    help="keep the databases already in --workdir instead of generating them again")
    ap.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.load and (args.paint or args.import_rows or args.clv or args.loyalty or args.segments):
        ap.error("--load runs alone: give the other benchmarks in a separate run")
    if args.customers is None:
        args.customers = [20_000] if args.load else [100_000, 1_000_000]

    global YEARS
    YEARS = args.years
    if args.child:
        print(json.dumps(CHILDREN[args.child](args.db, args.customers[0])))
        return 0

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cm-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "sizes": {}}

    def on_largest(name: str) -> tuple[int, dict]:
        """Child ``name`` on the largest size's database, kept in the results under ``name``."""
        n = max(args.customers)
        res = run_child(name, bench_db(workdir, n), n)
        results[name] = {"customers_db": n, **res}
        return n, res
    if args.load:
        results["load"] = load_benchmark(workdir, args.customers[0], args.load_sessions, args.load_seconds,
                                         args.reuse, cold=args.load_cold)
        return write_results(results)
    for n in args.customers:
        db = bench_db(workdir, n)
        if args.reuse and db.exists():
            import duckdb

            con = duckdb.connect(str(db), read_only=True)
            gen = {"seconds": float("nan"), "peak_rss_mb": float("nan"), "reused": True,
                   "orders": con.execute("SELECT count(*) FROM orders").fetchall()[0][0]}
            con.close()
        else:
            for p in (db, Path(str(db) + ".wal")):
                p.unlink(missing_ok=True)
            gen = run_child("generate", db, n)
        size_mb = db.stat().st_size / 2**20
        ov = run_child("overview", db, n)
        ret = run_child("retention", db, n)
        results["sizes"][n] = {"generate": gen, "db_size_mb": size_mb, "overview": ov, "retention": ret}
        print(f"\n== {n:,} customers ({gen['orders']:,} orders)")
        if gen.get("reused"):
            print("generation      (reused the database already in the workdir)")
        else:
            print(f"generation      {gen['seconds']:8.1f} s   peak RSS {gen['peak_rss_mb']:8.0f} MB")
        print(f"database size   {size_mb:8.1f} MB")
        for view in ("default", "channel_member", "all_history"):
            v = ov[view]
            print(f"overview {view:15s} cold {v['cold_s']:6.3f} s   warm {v['warm_s']:6.3f} s")
        print(f"overview peak RSS {ov['peak_rss_mb']:6.0f} MB")
        print(f"retention: monthly cohort matrix cold {ret['matrix_cold_s']:6.3f} s (all history); pandas recipe "
              f"{ret['pandas_recipe_s']:6.3f} s on {ret['orders']:,} orders already in memory "
              f"(+{ret['pandas_load_s']:.2f} s to fetch them)")
        print(f"retention: full cohort table (with repeat rates, revenue, margin) cold {ret['full_table_cold_s']:6.3f} s")
        print(f"retention page computation (365 days) cold {ret['page_cold_s']:6.3f} s   warm {ret['page_warm_s']:6.3f} s"
              f"   peak RSS {ret['peak_rss_mb']:6.0f} MB")
    if args.import_rows:
        source = bench_db(workdir, max(args.customers))
        made = run_child("import_csv", source, args.import_rows)
        # Alternated, median of --repeat runs each: on a small shared machine one run
        # of either can be 30% off.
        ducks, ourses = [], []
        for _ in range(args.repeat):
            ducks.append(run_child("duckdb_csv", Path(made["path"]), args.import_rows))
            ourses.append(run_child("import", Path(made["path"]), args.import_rows))
        duck = {k: statistics.median(d[k] for d in ducks) for k in ("seconds", "file_seconds", "peak_rss_mb")}
        ours = {k: statistics.median(d[k] for d in ourses) for k in ("seconds", "check_s", "peak_rss_mb")}
        ours["ok"] = all(d["ok"] for d in ourses)
        ours["runs_s"] = [round(d["seconds"], 2) for d in ourses]
        duck["runs_file_s"] = [round(d["file_seconds"], 2) for d in ducks]
        results["import"] = {"rows": args.import_rows, "csv_mb": made["size_mb"], "duckdb": duck, "ours": ours}
        print(f"\n== import of {args.import_rows:,} orders ({made['size_mb']:,.0f} MB CSV), median of {args.repeat}")
        print(f"DuckDB CREATE TABLE AS read_csv  {duck['seconds']:6.2f} s in memory, {duck['file_seconds']:6.2f} s "
              f"into a database file   peak RSS {duck['peak_rss_mb']:6.0f} MB")
        print(f"our import (read, check, load)   {ours['seconds']:6.2f} s   peak RSS {ours['peak_rss_mb']:6.0f} MB   "
              f"({ours['seconds'] / duck['seconds']:.1f}x in memory, {ours['seconds'] / duck['file_seconds']:.1f}x "
              f"file to file; checking {ours['check_s']:.2f} s)")
    if args.clv:
        n = max(args.customers)
        source = bench_db(workdir, n)
        ours = run_child("clv", source, n)
        theirs = lifetimes_side(workdir, ours["parquet"])
        big = workdir / f"orders_{args.clv_orders}.import.duckdb"
        if not big.exists():
            big = workdir / f"orders_{args.clv_orders}.clv.duckdb"
            if not (args.reuse and big.exists()):
                run_child("clv_orders_db", source, args.clv_orders)
        sql = run_child("clv_summary", big, args.clv_orders)
        sql["db"] = big.name
        clv_res: dict = {"customers_db": n, "ours": ours, "lifetimes": theirs, "summary_at_orders": sql}
        print(f"\n== CLV (BG/NBD + Gamma-Gamma), {n:,}-customer database: {ours['customers']:,} customers, "
              f"{ours['repeat_customers']:,} repeat; calibration end {ours['calibration_end']}, unit days")
        print(f"summary ({ours['customers']:,} customers)  cold {ours['summary_cold_s']:6.2f} s   "
              f"warm {ours['summary_warm_s']:6.2f} s")
        print(f"fit: BG/NBD {ours['bgnbd_s']:6.2f} s   Gamma-Gamma {ours['gg_s']:6.2f} s   total {ours['fit_total_s']:6.2f} s"
              f"   ({ours['distinct_rows']:,} distinct (frequency, recency, T) rows)   peak RSS {ours['peak_rss_mb']:6.0f} MB")
        print("ours:      " + "  ".join(f"{k} {v:.6g}" for k, v in {**ours["bgnbd"], **ours["gg"]}.items()))
        if theirs["available"]:
            bg_cmp = _agreement(ours["bgnbd"], theirs["bgnbd"], {"r": "r", "alpha": "alpha", "a": "a", "b": "b"})
            gg_cmp = _agreement(ours["gg"], theirs["gg"], {"p": "p", "q": "q", "gamma": "v"})
            speed = {"bgnbd": theirs["bgnbd_s"] / ours["bgnbd_s"], "gg": theirs["gg_s"] / ours["gg_s"],
                     "total": (theirs["bgnbd_s"] + theirs["gg_s"]) / ours["fit_total_s"]}
            clv_res.update(bgnbd_agreement=bg_cmp, gg_agreement=gg_cmp, speedup=speed)
            print("lifetimes: " + "  ".join(f"{k} {v:.6g}" for k, v in {**theirs["bgnbd"], **theirs["gg"]}.items()))
            print(f"lifetimes {theirs['versions']['lifetimes']}: BG/NBD {theirs['bgnbd_s']:6.2f} s   Gamma-Gamma "
                  f"{theirs['gg_s']:6.2f} s   speed-up {speed['bgnbd']:.1f}x BG/NBD, {speed['gg']:.1f}x Gamma-Gamma, "
                  f"{speed['total']:.1f}x both (pandas {theirs['versions']['pandas']}, numpy {theirs['versions']['numpy']})")
            print(f"parameters agree to 3 significant figures: BG/NBD {'yes' if bg_cmp['agree_3sf'] else 'NO'} "
                  f"(max rel. diff {bg_cmp['max_rel_diff']:.1e}), Gamma-Gamma {'yes' if gg_cmp['agree_3sf'] else 'NO'} "
                  f"(max rel. diff {gg_cmp['max_rel_diff']:.1e})")
        else:
            print(f"lifetimes: unavailable ({theirs['reason']})")
        print(f"summary SQL at {sql['orders']:,} orders ({sql['completed_orders']:,} completed, {sql['purchase_days']:,} "
              f"purchase days, {sql['customers']:,} customers; {big.name})  cold {sql['cold_s']:6.2f} s   "
              f"warm {sql['warm_s']:6.2f} s   peak RSS {sql['peak_rss_mb']:6.0f} MB")
        results["clv"] = clv_res
    if args.spark:
        n, sp = on_largest("spark")
        print(f"\n== Spark local[2] beside DuckDB, {n:,}-customer database ({sp['orders']:,} orders): Parquet export "
              f"{sp['export_s']:.1f} s; cold Spark session {sp['spark_session_s']:.1f} s, first result "
              f"{sp['spark_first_result_s']:.1f} s")
        for page, row in sp["pages"].items():
            print(f"{page:10s} duckdb {row['duckdb_s']:7.2f} s   spark {row['spark_s']:7.2f} s   "
                  f"x{row['spark_s'] / max(row['duckdb_s'], 1e-9):5.1f}")
        big = run_child("clv_ten_million", workdir / "unused", 10_000_000)
        results["spark"]["clv_ten_million"] = big
        print(f"CLV fit on the summary of {big['customers']:,} customers (as pulled back from Spark; "
              f"{big['distinct_rows']:,} distinct rows): BG/NBD {big['bgnbd_s']:.1f} s, Gamma-Gamma {big['gg_s']:.1f} s, "
              f"peak RSS {big['peak_rss_mb']:.0f} MB; BG/NBD " + ", ".join(
                  f"{k} {v:.3g} (truth {big['truth'][k]:g})" for k, v in big["bgnbd"].items()))
        li = sp["lake_import"]
        print(f"import of {li['rows']} orders into the lake (checked, loaded, changed tables rewritten as Parquet, "
              f"committed): {li['total_s']:.1f} s (check {li['check_s']:.1f} s); {li['seen_on_spark']} seen on Spark; "
              f"driver peak RSS {sp['peak_rss_mb']:.0f} MB")
    if args.segments:
        n, seg = on_largest("segments")
        print(f"\n== Segments page computation, {n:,}-customer database: RFM + segments cold "
              f"{seg['segments_cold_s']:6.2f} s   warm {seg['segments_warm_s']:6.2f} s   personas "
              f"{seg['personas_s']:6.2f} s (features {seg['features_s']:.2f}, fit {seg['fit_s']:.2f}, "
              f"describe {seg['describe_s']:.2f}; k = {seg['k']})   peak RSS {seg['peak_rss_mb']:6.0f} MB")
    if args.segments:
        n, sv = on_largest("surveys")
        print(f"\n== Surveys page computation (without the CLV models), {n:,}-customer database "
              f"({sv['responses']:,} responses): cold {sv['cold_s']:6.2f} s   warm {sv['warm_s']:6.2f} s   "
              f"peak RSS {sv['peak_rss_mb']:6.0f} MB")
    if args.loyalty:
        n, loy = on_largest("loyalty")
        print(f"\n== Loyalty page computation, {n:,}-customer database ({loy['orders']:,} orders): cold "
              f"{loy['cold_s']:6.2f} s   warm {loy['warm_s']:6.2f} s   peak RSS {loy['peak_rss_mb']:6.0f} MB   "
              f"({loy['members']:,} members, {loy['matched']:,} matched on a {loy['sample_share']:.0%} sample; "
              f"effect {loy['effect']:,.0f} [{loy['low']:,.0f}, {loy['high']:,.0f}] VND per member-month)")
    if args.paint:
        db = workdir / f"paint_{args.paint_customers}.duckdb"
        for p in (db, Path(str(db) + ".wal")):
            p.unlink(missing_ok=True)
        run_child("generate", db, args.paint_customers)
        paint = run_child("paint", db, args.paint_customers)
        results["paint"] = {"customers": args.paint_customers, **paint}
        print(f"\n== first paint at {args.paint_customers:,} customers (server up in {paint['server_start_s']:.1f} s)")
        for label in ("first_load", "warm_load"):
            m = paint[label]
            print(f"{label:10s} title {m['title_s']:5.2f} s   KPI cards {m['kpis_s']:5.2f} s   "
                  f"chart {m['chart_s']:5.2f} s   done {m['done_s']:5.2f} s")
    return write_results(results)


def write_results(results: dict) -> int:
    out_dir = ROOT / "bench_results"
    out_dir.mkdir(exist_ok=True)
    out = out_dir / time.strftime("bench-%Y%m%d-%H%M%S.json")
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwritten {out.relative_to(ROOT)}")
    return 0


def load_benchmark(workdir: Path, n: int, sessions: int, seconds: float, reuse: bool, *, cold: bool = False) -> dict:
    """--load: a demo database of ``n`` customers (kept as load_<n>.duckdb, reused with
    --reuse), copied for each run since the run's import changes it; the expected cards
    read before and after; the browsers' figures; a summary printed."""
    import shutil

    base = workdir / f"load_{n}.duckdb"
    if not (reuse and base.exists()):
        for p in (base, Path(str(base) + ".wal")):
            p.unlink(missing_ok=True)
        run_child("generate", base, n)
    db = workdir / f"load_{n}.run.duckdb"
    for p in (db, Path(str(db) + ".wal")):
        p.unlink(missing_ok=True)
    shutil.copyfile(base, db)
    expected_before = run_child("load_expected", db, n)
    print(f"\n== load: {sessions} browser sessions for {seconds:.0f} s on {n:,} customers, "
          f"one importing {LOAD_IMPORT_ROWS} orders of new customers ...", flush=True)
    res = run_load(db, sessions=sessions, seconds=seconds, last=expected_before["last"], cold=cold)
    print(f"server warm-up: {res['warmup_s']:.1f} s ({res['warmup']})" if res["warmup"] else "server warm-up: off (cold)")
    expected_after = run_child("load_expected", db, n)
    res.update(customers=n, expected_before=expected_before["cards"], expected_after=expected_after["cards"])
    # The first and last fresh loads should show what the metrics compute.
    res["before_matches_db"] = res["values_before"] == expected_before["cards"]
    res["after_matches_db"] = res["values_after"] == expected_after["cards"]
    for name, p in res["pages"].items():
        figs = "   ".join(f"{k} {p[k]:5.1f} s" if p[k] is not None else f"{k}   n/a" for k in ("p50_s", "p95_s", "max_s"))
        print(f"{name:10s} {p['ok']:3d}/{p['loads']:3d} loads   {figs}")
    imp = res["import"]
    print(f"import of {LOAD_IMPORT_ROWS} orders: " + (
        f"{imp['import_s']:.1f} s (check {imp['check_s']:.1f} s, load {imp['load_s']:.1f} s), committed at "
        f"{imp['committed_s']:.0f} s" if "import_s" in imp else f"FAILED ({imp.get('error')})"))
    for k, v in res["error_kinds"].items():
        print(f"  problem x{v}: {k}")
    if res["server_hung"]:
        h = res["server_hung"]
        print(f"SERVER HUNG: no answer to /_stcore/health after {h['at_s']:.0f} s; the browsing was stopped. "
              f"Sessions were waiting for: {sorted(set(h['busy'].values()))}")
        for line in h["stacks"]:
            print(f"  thread: {line}")
        print(f"  (all stacks in {res['server_log']})")
    rss = res["server_peak_rss_mb"]
    print(f"load: {res['page_loads']} page loads ({res['page_loads_ok']} completed), {res['errors']} with errors; "
          f"customer cards before {res['values_before']} after {res['values_after']}, seen {res['values_seen']}; "
          + ("consistency NOT CHECKED (no value before or after the import)" if res["consistent"] is None else
             f"{'consistent' if res['consistent'] else 'INCONSISTENT'}"
             f"{'' if res['values_changed'] else ' (the import did not change them)'}, "
             f"{res['stale_after_commit']} stale after the import; screen = metrics before "
             f"{'yes' if res['before_matches_db'] else 'NO'}, after {'yes' if res['after_matches_db'] else 'NO'}")
          + "; "
          f"server peak RSS {f'{rss:.0f} MB' if rss else 'n/a'}")
    if res.get("server_cpu_s") is not None:
        print(f"CPU over the {res['wall_s']:.0f} s run: app server {res['server_cpu_s']:.0f} s, "
              f"headless browser and its driver {res['browser_cpu_s']:.0f} s, this script {res['bench_cpu_s']:.0f} s "
              f"(the machine has {os.cpu_count()} cores)")
    return res


if __name__ == "__main__":
    sys.exit(main())
