"""Warm the caches when the server starts, so the first visitors do not pay for them.

Every page caches its computations per workspace and data version (pages.ui.frame).
On a cold server the first visitors wait for all of them at once: with twenty people
arriving together on two cores, the Segments page (CLV models and personas) took
more than three minutes. Here, once the server answers, one session of the app's own
opens the default view of each analysis page, exactly as a browser would (the
page scripts themselves run, so the cached calls and their arguments are the pages'
own, with nothing to keep in step). Nothing is shown to anyone; the caches are
simply filled.

Hosted (an identity provider configured), the workspaces are warmed (the first
:data:`MAX_WORKSPACES`): the session presents a token that exists only in this
process's memory (random, made at start, sent over loopback to the process itself,
never through a proxy, and replaced by an unknown one when the warm-up ends) and :func:`is_warmup_session` lets it in as a viewer of the workspace in its link, and
nothing else: it is not a sign-in, it is not audited as one, it sees masked data as any
viewer does, and a request from elsewhere, or without the token, gets the sign-in
screen as before. ``CM_WARMUP=0`` turns the warm-up off.

No Streamlit widgets here: the module speaks the browser's protocol (protobuf over
the websocket) to the running server.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import secrets
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping

# The analysis pages, by URL path (app.py; "" is the default page, the Overview), in
# the order people open them.
PAGES = ("", "retention", "clv", "churn", "loyalty", "segments", "surveys")
ENV_VAR = "CM_WARMUP"
PAGE_TIMEOUT_S = 900.0
# The slowest pages' caches (CLV models, personas) hold 4 entries each: warming more
# workspaces than that would push the first ones out again.
MAX_WORKSPACES = 4
# Who the warm-up session is, hosted (never a member, never shown to anyone).
USER = "warm-up@localhost"
TOKEN_HEADER = "X-CM-Warmup"
_TOKEN = secrets.token_urlsafe(32)  # this process's only; never written anywhere


def enabled() -> bool:
    return os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "off", "false", "no")


def is_warmup_session(headers: Mapping[str, str] | None, ip_address: str | None) -> bool:
    """Whether this session is this process's own warm-up: its websocket came over
    loopback (Streamlit reports no address then) with this process's token."""
    if not headers or ip_address is not None:
        return False
    given = headers.get(TOKEN_HEADER) or headers.get(TOKEN_HEADER.lower()) or ""
    return bool(given) and hmac.compare_digest(given.encode(), _TOKEN.encode())


def _retire_token() -> None:
    """After the warm-up: a new token that nobody holds, so the old one opens nothing."""
    global _TOKEN
    _TOKEN = secrets.token_urlsafe(32)


def targets() -> list[str]:
    """The query strings to warm: the local database, or, hosted, each workspace
    (``<root>/<name>.duckdb`` beside the registry; the registry is checked again when
    the session runs)."""
    from data import access, config

    if not config.auth_configured():
        return [""]
    root = config.workspaces_root()
    names = []
    for p in sorted(root.glob("*.duckdb")) if root.is_dir() else ():
        try:
            names.append(access.check_workspace_name(p.stem))
        except access.AccessError:
            continue
    return [f"ws={n}" for n in names if n != "control"][:MAX_WORKSPACES]  # control.duckdb: the registry


def _base(port: int, base_path: str) -> str:
    base = base_path.strip("/")
    return f"127.0.0.1:{port}" + (f"/{base}" if base else "")


def _wait_healthy(base: str, timeout_s: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout_s
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
    while time.monotonic() < deadline:
        try:
            with direct.open(f"http://{base}/_stcore/health", timeout=5) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


async def _run_pages(base: str, pages: tuple[str, ...], timeout_s: float,
                     queries: tuple[str, ...] = ("",)) -> list[tuple[str, str, float]]:
    """Open each page, for each query string, in a new session of the app; returns
    (page, outcome, seconds), the page prefixed by its workspace when there is one."""
    import websockets

    done: list[tuple[str, str, float]] = []
    for query, page in ((q, p) for q in queries for p in pages):
        label = page or "overview"
        label = f"{query.removeprefix('ws=')}/{label}" if query else label
        t0 = time.monotonic()
        try:
            outcome = await _run_page(base, query, page, timeout_s)
        except (OSError, websockets.exceptions.WebSocketException) as e:  # the next page may still work
            outcome = f"failed ({type(e).__name__})"
        done.append((label, outcome, time.monotonic() - t0))
    return done


async def _run_page(base: str, query: str, page: str, timeout_s: float) -> str:
    """One page in a new session, as a visitor opening a link (in one session a second
    run would carry no widget values and see the sidebar's widget defaults): ok,
    error (the page raised), not found, or timeout."""
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    async with websockets.connect(f"ws://{base}/_stcore/stream", subprotocols=["streamlit"],
                                  additional_headers={TOKEN_HEADER: _TOKEN}, proxy=None,
                                  max_size=None, open_timeout=30) as ws:
        msg = BackMsg()
        msg.rerun_script.query_string = query
        msg.rerun_script.page_name = page
        await ws.send(msg.SerializeToString())
        outcome = "timeout"
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    fwd = ForwardMsg()
                    fwd.ParseFromString(await ws.recv())
                    kind = fwd.WhichOneof("type")
                    if kind == "page_not_found":  # the default page runs instead
                        outcome = "not found"
                    if kind == "delta" and fwd.delta.new_element.WhichOneof("type") == "exception":
                        outcome = "error"
                    if kind == "script_finished" and fwd.script_finished != fwd.FINISHED_EARLY_FOR_RERUN:
                        return "ok" if outcome == "timeout" else outcome
        except TimeoutError:
            return outcome


def warm(port: int, base_path: str = "", pages: tuple[str, ...] = PAGES,
         timeout_s: float = PAGE_TIMEOUT_S) -> list[tuple[str, str, float]]:
    """Wait for the server on ``port``, then open each page once (per workspace,
    hosted). Returns (page, outcome, seconds); outcome is ok, error (the page raised),
    not found, or timeout."""
    base = _base(port, base_path)
    if not _wait_healthy(base):
        return []
    return asyncio.run(_run_pages(base, pages, timeout_s, tuple(targets())))


def _log(line: str) -> None:
    print(f"warm-up: {line}", file=sys.stderr, flush=True)


def start_in_background() -> threading.Thread | None:
    """Start the warm-up beside the server (from app.py, before the server starts).
    It reads the port once the server has parsed its options; one line to stderr says
    what it did."""
    if not enabled():
        return None

    def work() -> None:
        from streamlit import config, runtime
        from streamlit.runtime.runtime import Runtime, RuntimeState

        # The port is read once the server has bound it (it may have moved off a busy
        # default port): the runtime leaves its initial state after that.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (runtime.exists() and Runtime.instance().state != RuntimeState.INITIAL):
            time.sleep(0.2)
        t0 = time.monotonic()
        try:
            done = warm(int(config.get_option("server.port")), config.get_option("server.baseUrlPath") or "")
        except Exception as e:  # a warm-up never takes the server down
            _log(f"stopped ({type(e).__name__})")
            return
        finally:
            _retire_token()
        if not done:
            _log("the server did not answer on 127.0.0.1; nothing warmed")
            return
        pages = ", ".join(f"{p} {o} {s:.1f} s" for p, o, s in done)
        _log(f"{len(done)} pages in {time.monotonic() - t0:.1f} s ({pages})")

    thread = threading.Thread(target=work, name="cm-warmup", daemon=True)
    thread.start()
    return thread
