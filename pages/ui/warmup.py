"""Warm the caches when the server starts, so the first visitors do not pay for them.

Every page caches its computations per workspace and data version (pages.ui.frame).
On a cold server the first visitors wait for all of them at once: with twenty people
arriving together on two cores, the Segments page (CLV models and personas) took
more than three minutes. Here, once the server answers, one session of the app's own
opens the default view of each analysis page, exactly as a browser would (the
page scripts themselves run, so the cached calls and their arguments are the pages'
own, with nothing to keep in step). Nothing is shown to anyone; the caches are
simply filled.

Only without an identity provider: a hosted app shows the sign-in screen to a
session that has not signed in, and a way round it would be a way in. There each
workspace's first visitor fills its caches. ``CM_WARMUP=0`` turns it off.

No Streamlit widgets here: the module speaks the browser's protocol (protobuf over
the websocket) to the running server.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
import urllib.request

# The analysis pages, by URL path (app.py; "" is the default page, the Overview), in
# the order people open them.
PAGES = ("", "retention", "clv", "churn", "loyalty", "segments", "surveys")
ENV_VAR = "CM_WARMUP"
PAGE_TIMEOUT_S = 900.0


def enabled() -> bool:
    from data.config import auth_configured

    return os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "off", "false", "no") and not auth_configured()


def _base(port: int, base_path: str) -> str:
    base = base_path.strip("/")
    return f"127.0.0.1:{port}" + (f"/{base}" if base else "")


def _wait_healthy(base: str, timeout_s: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{base}/_stcore/health", timeout=5) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


async def _run_pages(base: str, pages: tuple[str, ...], timeout_s: float) -> list[tuple[str, str, float]]:
    """Open each page in a new session of the app; returns (page, outcome, seconds)."""
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    done: list[tuple[str, str, float]] = []
    for page in pages:
        # A session per page, as a visitor opening a link: in one session the second
        # run would carry no widget values and see the sidebar's widget defaults.
        async with websockets.connect(f"ws://{base}/_stcore/stream", subprotocols=["streamlit"],
                                      max_size=None, open_timeout=30) as ws:
            msg = BackMsg()
            msg.rerun_script.query_string = ""
            msg.rerun_script.page_name = page
            t0 = time.monotonic()
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
                            if outcome == "timeout":
                                outcome = "ok"
                            break
            except TimeoutError:
                pass
            done.append((page or "overview", outcome, time.monotonic() - t0))
    return done


def warm(port: int, base_path: str = "", pages: tuple[str, ...] = PAGES,
         timeout_s: float = PAGE_TIMEOUT_S) -> list[tuple[str, str, float]]:
    """Wait for the server on ``port``, then open each page once. Returns (page,
    outcome, seconds); outcome is ok, error (the page raised), not found, or timeout."""
    base = _base(port, base_path)
    if not _wait_healthy(base):
        return []
    return asyncio.run(_run_pages(base, pages, timeout_s))


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

        deadline = time.monotonic() + 120
        while not runtime.exists() and time.monotonic() < deadline:  # options are read by then
            time.sleep(0.2)
        t0 = time.monotonic()
        try:
            done = warm(int(config.get_option("server.port")), config.get_option("server.baseUrlPath") or "")
        except Exception as e:  # a warm-up never takes the server down
            _log(f"stopped ({type(e).__name__})")
            return
        pages = ", ".join(f"{p} {o} {s:.1f} s" for p, o, s in done)
        _log(f"{len(done)} pages in {time.monotonic() - t0:.1f} s ({pages})")

    thread = threading.Thread(target=work, name="cm-warmup", daemon=True)
    thread.start()
    return thread
