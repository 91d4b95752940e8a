#!/usr/bin/env python3
"""Project tasks, runnable on a fresh machine that has only Python 3.11+.

    python3 tasks.py run      start the dashboard on http://localhost:8501
                              (virtual environment, pinned requirements, demo database)
    python3 tasks.py test     run the whole test suite (extra arguments go to pytest)
    python3 tasks.py demo     (re)build the demo database (arguments go to data.demo)
    python3 tasks.py bench    run the benchmark script (arguments go to tests/benchmark.py)

Each task creates .venv/ on first use and reinstalls the pinned requirements only
when a requirements file changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")


def _digest(req: Path) -> str:
    h = hashlib.sha256()
    for line in req.read_text().splitlines():
        h.update(line.encode())
        if line.startswith("-r "):
            h.update(_digest((req.parent / line[3:].strip()).resolve()).encode())
    return h.hexdigest()


def ensure_env(requirements: Path) -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"Python 3.11 or newer is needed; this is {sys.version.split()[0]}.")
    if not PY.exists():
        print("Creating the virtual environment in .venv …", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    stamp = VENV / f".stamp-{requirements.parent.name}-{requirements.name}"
    digest = _digest(requirements)
    if stamp.exists() and stamp.read_text() == digest:
        return
    print(f"Installing pinned requirements from {requirements.relative_to(ROOT)} …", flush=True)
    subprocess.run([str(PY), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([str(PY), "-m", "pip", "install", "--quiet", "-r", str(requirements)], check=True)
    stamp.write_text(digest)


def run(args: list[str]) -> int:
    ensure_env(ROOT / "requirements.txt")
    subprocess.run([str(PY), "-m", "data.demo", "--if-missing"], check=True, cwd=ROOT)
    cmd = [str(PY), "app.py", "--server.headless", "true", "--server.port", "8501", *args]
    print("Dashboard: http://localhost:8501", flush=True)
    return subprocess.call(cmd, cwd=ROOT)


def test(args: list[str]) -> int:
    ensure_env(ROOT / "tests" / "requirements.txt")
    opts = ["-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning"]
    return subprocess.call([str(PY), "-m", "pytest", *opts, *(args or ["-q", "tests"])], cwd=ROOT)


def demo(args: list[str]) -> int:
    ensure_env(ROOT / "requirements.txt")
    return subprocess.call([str(PY), "-m", "data.demo", *args], cwd=ROOT)


def bench(args: list[str]) -> int:
    ensure_env(ROOT / "tests" / "requirements.txt")
    return subprocess.call([str(PY), str(ROOT / "tests" / "benchmark.py"), *args], cwd=ROOT)


TASKS = {"run": run, "test": test, "demo": demo, "bench": bench}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in TASKS:
        print(__doc__)
        sys.exit(2)
    sys.exit(TASKS[sys.argv[1]](sys.argv[2:]))
