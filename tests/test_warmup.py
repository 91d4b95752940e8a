"""The warm-up at server start (pages.ui.warmup): the app, started as the README
starts it, opens every analysis page once in a session of its own, and a visitor's
default view then finds its results cached (no cache grows when the visitor's pages
run). Also: off with CM_WARMUP=0 and in hosted mode.

The visitor is headless Chromium (skipped when /usr/bin/chromium is missing, unless
CM_REQUIRE_BROWSER=1 as in CI)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from data.store import Store
from pages.ui import warmup
from tests.conftest import free_port, stop

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def _warmed_server(cwd: Path, env: dict[str, str]) -> Iterator[tuple[str, str, list[str]]]:
    """``python app.py`` in ``cwd``; yields (url, the warm-up's line, the output so far)
    once the warm-up has reported, and stops the server afterwards. The output is read
    to the end on a thread, so the server never blocks on its pipe."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
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
        yield f"http://127.0.0.1:{port}", next(line for line in lines if line.startswith("warm-up:")), lines
    finally:
        stop(proc)


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
    env = {**os.environ, "CM_DB_PATH": str(db)}
    env.pop("CM_WARMUP", None)
    with _warmed_server(ROOT, env) as (url, line, _):
        yield url, line


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


def test_off_by_setting(monkeypatch):
    monkeypatch.setenv(warmup.ENV_VAR, "0")
    assert not warmup.enabled()
    assert warmup.start_in_background() is None
    monkeypatch.setenv(warmup.ENV_VAR, "1")
    assert warmup.enabled()


def test_only_this_process_with_its_token_over_loopback_is_the_warm_up():
    token = warmup._TOKEN
    assert warmup.is_warmup_session({warmup.TOKEN_HEADER: token}, None)
    assert warmup.is_warmup_session({warmup.TOKEN_HEADER.lower(): token}, None)
    assert not warmup.is_warmup_session({warmup.TOKEN_HEADER: token}, "203.0.113.9")  # not over loopback
    assert not warmup.is_warmup_session({warmup.TOKEN_HEADER: token[:-1] + "x"}, None)
    assert not warmup.is_warmup_session({warmup.TOKEN_HEADER: ""}, None)
    assert not warmup.is_warmup_session({}, None) and not warmup.is_warmup_session(None, None)


def test_hosted_every_workspace_is_a_target(monkeypatch, tmp_path):
    from data import config

    monkeypatch.setattr(config, "auth_configured", lambda *a, **k: False)
    assert warmup.targets() == [""]
    monkeypatch.setattr(config, "auth_configured", lambda *a, **k: True)
    monkeypatch.setattr(config, "workspaces_root", lambda *a, **k: tmp_path)
    for name in ("shop-hcm", "control", "beta", "Bad Name"):
        (tmp_path / f"{name}.duckdb").write_bytes(b"")
    assert warmup.targets() == ["ws=beta", "ws=shop-hcm"]


def test_hosted_the_server_warms_every_workspace(tmp_path):
    """With an identity provider configured (the app copied as the Docker image holds
    it, with its own secrets.toml), the warm-up opens each workspace's pages through
    its token, while nobody has signed in."""
    from data import config, demo
    from data.access import Principal, Registry
    from tests.test_dockerfile import _rehearse_copies

    app = tmp_path / "app"
    app.mkdir()
    _rehearse_copies(app)
    root = tmp_path / "workspaces"
    reg = Registry(root, secret="s3cret")
    for ws in ("alpha", "beta"):
        reg.create_workspace(Principal("boss@team.vn", ws, "admin"), ws)
        s = Store(reg.workspace_path(ws))
        demo.build(s, customers=300, seed=len(ws), end=date(2026, 6, 30))
        s.close()
    reg.close()
    (app / ".streamlit" / "secrets.toml").write_text(
        '[auth]\nredirect_uri = "http://localhost:8501/oauth2callback"\ncookie_secret = "s3cret"\n'
        'client_id = "x"\nclient_secret = "y"\n'
        'server_metadata_url = "https://accounts.example.invalid/.well-known/openid-configuration"\n'
        f'[workspaces]\nroot = "{root}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("CM_")}
    with _warmed_server(app, env) as (url, line, lines):
        assert line.startswith(f"warm-up: {2 * len(warmup.PAGES)} pages in "), "".join(lines)[-3000:]
        for ws in ("alpha", "beta"):
            for page in ("overview", *warmup.PAGES[1:]):
                assert re.search(rf"\b{ws}/{page} ok \d", line), (ws, page, line)
        cached = _cache_bytes(url)
        assert cached.get("overview", 0) > 0 and cached.get("personas", 0) > 0
        assert config.auth_configured(app / ".streamlit" / "secrets.toml")
