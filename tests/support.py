"""Paths and a runner for the ETL command, shared by the test packages.

They live here rather than in conftest.py because every test folder has a conftest module of its
own, so `from conftest import ...` would pick whichever one was imported first.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEC_DIR = REPO_ROOT / "datasets" / "nycflights13"
NYCFLIGHTS13_TABLES = ("flights", "airports", "planes", "weather", "airlines")


def run_etl(*args: str, env: dict | None = None, check: bool = True, timeout: float = 300):
    """Run `python -m etl ARGS` in a subprocess with this checkout on PYTHONPATH."""
    full_env = dict(os.environ if env is None else env)
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT)] + ([full_env["PYTHONPATH"]] if full_env.get("PYTHONPATH") else [])
    )
    result = subprocess.run(
        [sys.executable, "-m", "etl", *args], capture_output=True, text=True, env=full_env,
        timeout=timeout, check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"rodata-etl {' '.join(args)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result
