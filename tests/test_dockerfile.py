"""The Dockerfile, rehearsed without Docker (no daemon or registry here).

What the image promises is checked on this machine: the instructions (slim Python
base, a non-root user, the database on a volume, a health check on
``/_stcore/health``, secrets kept out by .dockerignore), and a rehearsal of the image:
the files its COPY lines select are copied into an empty folder, that folder is made
read-only, and the app is started from it as the image starts it (its ENV and CMD; as
an unprivileged user when the tests run as root and this Python is not in a private
home), with the DuckDB file on a separate
writable folder standing in for the volume. The image's own HEALTHCHECK command must
then pass, and the page must answer. What this cannot check is the base image itself
and ``pip install`` inside it (the same pinned requirements.txt is installed by
tasks.py and CI)."""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import free_port, stop

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, pending = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _env(args: list[str]) -> dict[str, str]:
    env = {}
    for item in args:
        k, _, v = item.partition("=")
        env[k] = v
    return env


def test_the_image_is_slim_non_root_with_a_volume_and_a_health_check():
    ins = _instructions()
    kinds = [k for k, _ in ins]
    assert ins[0] == ("FROM", "python:3.11-slim")
    user = [a for k, a in ins if k == "USER"]
    assert user and user[-1] not in ("root", "0")
    assert kinds.index("USER") > max(i for i, k in enumerate(kinds) if k in ("RUN", "COPY"))
    assert ("VOLUME", '["/data"]') in ins
    env = _env(shlex.split(" ".join(a for k, a in ins if k == "ENV")))
    assert env["CM_DB_PATH"].startswith("/data/")
    assert env["STREAMLIT_SERVER_ENABLE_XSRF_PROTECTION"] == "true"
    assert env["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] == "false"
    health = next(a for k, a in ins if k == "HEALTHCHECK")
    assert "/_stcore/health" in health
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".streamlit/secrets.toml" in ignored and ".git/" in ignored


def _rehearse_copies(dest: Path) -> None:
    """The COPY instructions' sources (globs as Docker reads them) into ``dest``."""
    for kind, args in _instructions():
        if kind != "COPY":
            continue
        *sources, target = shlex.split(args)
        for src in sources:
            matches = sorted(glob.glob(str(ROOT / src))) or [str(ROOT / src)]
            for m in matches:
                p = Path(m)
                to = dest / target
                if target.endswith("/"):
                    to.mkdir(parents=True, exist_ok=True)
                    to = to / p.name if p.is_file() or not src.endswith("/") else to
                if p.is_dir():
                    shutil.copytree(p, to, dirs_exist_ok=True,
                                    ignore=shutil.ignore_patterns("__pycache__", "*.duckdb*"))
                else:
                    to.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(p, to)


def _others_can_run_python() -> bool:
    """Whether a user other than this one can run this interpreter and its standard
    library (not when Python lives under a private home, as pyenv's under /root: then
    the rehearsal runs as this user, and the image's USER is checked above only)."""
    for target in (os.path.realpath(sys.executable), sys.base_prefix):
        p = Path(target)
        for d in (p, *p.parents):
            if not d.stat().st_mode & stat.S_IXOTH:
                return False
    return True


def test_the_app_starts_from_the_images_files_as_an_unprivileged_user():
    import tempfile

    ins = _instructions()
    tmp_path = Path(tempfile.mkdtemp(prefix="cm-image-"))  # not pytest's: the image's user must reach it
    tmp_path.chmod(0o755)
    try:
        _rehearse_and_start(ins, tmp_path)
    finally:
        for p in tmp_path.rglob("*"):
            if p.is_dir():
                p.chmod(0o755)
        shutil.rmtree(tmp_path, ignore_errors=True)


def _rehearse_and_start(ins: list[tuple[str, str]], tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    _rehearse_copies(app)
    assert (app / "app.py").is_file() and (app / "data" / "store.py").is_file()
    assert not list(app.rglob("*.duckdb")) and not (app / ".streamlit" / "secrets.toml").exists()
    for p in [app, *app.rglob("*")]:  # the image's code belongs to root: read-only to the app
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    volume = tmp_path / "data"
    (volume / "tmp").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CM_", "STREAMLIT_"))}
    env.update(_env(shlex.split(" ".join(a for k, a in ins if k == "ENV"))))
    env["CM_DB_PATH"] = str(volume / Path(env["CM_DB_PATH"]).name)
    env["HOME"] = str(volume)
    env["TMPDIR"] = str(volume / "tmp")  # a fresh container's /tmp (the import scratch lives there)
    port = free_port()
    cmd = shlex.split(next(a for k, a in ins if k == "CMD").replace("[", "").replace("]", "").replace(",", " "))
    assert cmd[:2] == ["python", "app.py"]
    cmd = [sys.executable, "app.py", *[c if not c.startswith("--server.port=") else f"--server.port={port}"
                                        for c in cmd[2:]]]
    preexec = None
    if os.geteuid() == 0 and _others_can_run_python():  # as the image's user: only the volume is writable
        for p in (volume, volume / "tmp"):
            os.chown(p, 10001, 10001)

        def preexec() -> None:
            os.setgid(10001)
            os.setuid(10001)
    proc = subprocess.Popen(cmd, cwd=app, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=preexec)
    try:
        health = next(a for k, a in ins if k == "HEALTHCHECK").split(" CMD ", 1)[1]
        check = shlex.split(health.replace("8501", str(port)))
        assert check[0] == "python"
        deadline = time.time() + 90
        while time.time() < deadline and proc.poll() is None:
            if subprocess.run([sys.executable, *check[1:]], capture_output=True).returncode == 0:
                break
            time.sleep(0.5)
        else:
            proc.terminate()
            raise AssertionError("the image's HEALTHCHECK never passed:\n"
                                 + proc.communicate(timeout=10)[0].decode(errors="replace")[-3000:])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read(2000).lower()
        assert proc.poll() is None
    finally:
        stop(proc)
