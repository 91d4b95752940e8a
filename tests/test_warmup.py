"""The warm-up at server start (pages.ui.warmup): the app, started as the README
starts it, opens every analysis page once in a session of its own, and a visitor's
default view then finds its results cached (no cache grows when the visitor's pages
run). Also: off with CM_WARMUP=0 and in hosted mode.

The visitor is headless Chromium (skipped when /usr/bin/chromium is missing, unless
CM_REQUIRE_BROWSER=1 as in CI)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import date
from pathlib import Path

import pytest

from data.store import Store
from pages.ui import warmup

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cache_bytes(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url + "/_stcore/metrics", timeout=10) as r:
        text = r.read().decode()
    return {m.group(1): int(m.group(2)) for m in
            re.finditer(r'cache_memory_bytes\{cache_type="st_cache_data",cache="pages\.ui\.frame\.(\w+)"\} (\d+)', text)}


@pytest.fixture(scope="module")
def warmed(tmp_path_factory):
    """The app on a small demo; yields (url, the warm-up's line) once it has run."""
    from data import demo

    db = tmp_path_factory.mktemp("warm") / "demo.duckdb"
    s = Store(db)
    demo.build(s, customers=2_000, seed=11, end=date(2026, 6, 30))
    s.close()
    port = _free_port()
    env = {**os.environ, "CM_DB_PATH": str(db)}
    env.pop("CM_WARMUP", None)
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("warm-up:"):
                found.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert found.wait(300), "no warm-up line from the server:\n" + "".join(lines)[-3000:]
        yield f"http://127.0.0.1:{port}", next(line for line in lines if line.startswith("warm-up:"))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_every_analysis_page_is_warmed_without_error(warmed):
    url, line = warmed
    assert line.startswith(f"warm-up: {len(warmup.PAGES)} pages in "), line
    for page in ("overview", *warmup.PAGES[1:]):
        assert re.search(rf"\b{page} ok \d", line), (page, line)
    cached = _cache_bytes(url)
    for name in ("overview", "retention", "clv_fit", "clv_scored", "churn_list", "loyalty", "rfm_scored",
                 "personas", "survey_overview"):
        assert cached.get(name, 0) > 0, (name, cached)


def test_a_visitors_default_view_finds_everything_cached(warmed):
    """The warm session's cache keys are the ones a browser's default view asks for:
    running every analysis page in Chromium adds nothing to any cache."""
    import shutil

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        if os.environ.get("CM_REQUIRE_BROWSER") == "1":
            raise RuntimeError("CM_REQUIRE_BROWSER=1 but Debian's chromium is not installed")
        pytest.skip("Debian chromium not installed")
    from playwright.sync_api import sync_playwright

    from tests.test_browser import LAUNCH_ARGS, READY

    url, _ = warmed
    before = _cache_bytes(url)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=LAUNCH_ARGS)
        page = b.new_page(viewport={"width": 1500, "height": 2000})
        for path in ("", "retention", "clv", "churn", "loyalty", "segments", "surveys"):
            page.goto(f"{url}/{path}")
            page.wait_for_selector("[data-testid='stMainBlockContainer'] h1", timeout=60_000)
            page.wait_for_selector(READY, timeout=60_000)
            assert page.locator("[data-testid='stException']").count() == 0, path
        b.close()
    after = _cache_bytes(url)
    grew = {k: (before.get(k), v) for k, v in after.items() if v != before.get(k)}
    assert not grew, f"a visitor's default view computed again: {grew}"


def test_off_by_setting_and_when_hosted(monkeypatch):
    monkeypatch.setenv(warmup.ENV_VAR, "0")
    assert not warmup.enabled()
    assert warmup.start_in_background() is None
    monkeypatch.setenv(warmup.ENV_VAR, "1")
    monkeypatch.setattr("data.config.auth_configured", lambda *a, **k: True)
    assert not warmup.enabled()
