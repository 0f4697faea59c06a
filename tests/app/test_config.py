"""Configuration from the environment: validated at start, with messages naming the variable."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from api_fixtures import api_fixture, small_root_fixture  # noqa: F401 - pytest fixtures
from api_server import REPO, ApiServer, api_command

from app.config import ConfigError, load_settings
from app.store import Store


def test_defaults(tmp_path):
    settings = load_settings({"RODATA_DATA_ROOT": str(tmp_path)})
    assert settings.port == 8080
    assert settings.host == "127.0.0.1"
    assert settings.datasets == ()
    assert settings.workers == 1
    assert settings.reload_seconds == 2.0


def test_dataset_list(tmp_path):
    settings = load_settings({"RODATA_DATA_ROOT": str(tmp_path),
                              "RODATA_DATASETS": "flights, weather"})
    assert settings.datasets == ("flights", "weather")


@pytest.mark.parametrize(("variable", "value", "text"), [
    ("RODATA_DATA_ROOT", "", "RODATA_DATA_ROOT is not set"),
    ("RODATA_DATA_ROOT", "/nonexistent/rodata", "is not a directory"),
    ("RODATA_PORT", "http", "RODATA_PORT='http' is not an integer"),
    ("RODATA_PORT", "70000", "RODATA_PORT=70000 is out of range"),
    ("RODATA_RELOAD_SECONDS", "soon", "RODATA_RELOAD_SECONDS='soon' is not a number"),
    ("RODATA_RELOAD_SECONDS", "nan", "out of range"),
    ("RODATA_LOG_LEVEL", "loud", "RODATA_LOG_LEVEL='loud' is invalid"),
    ("RODATA_DATASETS", "../etc", "invalid dataset name '../etc'"),
    ("RODATA_DATASETS", "a,a", "names 'a' twice"),
    ("RODATA_ACCESS_LOG", "maybe", "is not a boolean"),
    ("RODATA_DEFAULT_LIMIT", "50000", "larger than RODATA_MAX_LIMIT"),
])
def test_invalid_values(tmp_path, variable, value, text):
    env = {"RODATA_DATA_ROOT": str(tmp_path), variable: value}
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert text in str(caught.value)


def test_server_exits_2_on_bad_config(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RODATA_")}
    env["PYTHONPATH"] = str(REPO)
    env["RODATA_DATA_ROOT"] = str(tmp_path / "missing")
    result = subprocess.run(api_command(), env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 2
    assert "configuration error: RODATA_DATA_ROOT=" in result.stderr
    assert "is not a directory" in result.stderr


def test_fastapi_routes_match_fast_path(api, small_root, tmp_path):
    # With the fast path off, FastAPI's routes run the same handlers: same bodies and errors.
    slow = ApiServer(small_root, tmp_path / "slow.log", RODATA_FAST_PATH="false",
                     RODATA_MAX_LIMIT="3", RODATA_DEFAULT_LIMIT="2",
                     RODATA_MAX_SCAN_ROWS="1000", RODATA_MAX_RAW_BYTES="4096")
    try:
        slow.wait_ready()
        for path in ("/v1/datasets/planes/rows/N1", "/v1/datasets/planes/rows?limit=-1",
                     "/v1/datasets/planes/rows?filter=year:gt:2000&columns=tailnum",
                     "/v1/datasets/weather/rows/EWR,2013-01-01T06:00:00Z",
                     "/v1/datasets/nope", "/v1/datasets/planes/columns/year?start=1&stop=3",
                     "/v1/datasets/planes/aggregate?agg=count&group_by=maker"):
            fast_response = api.request(path)
            slow_response = slow.request(path)
            assert slow_response.status == fast_response.status, path
            assert slow_response.body == fast_response.body, path
            assert slow_response.headers.get("etag") == fast_response.headers.get("etag"), path
    finally:
        assert slow.stop() == 0


def test_thread_pools_pinned():
    # Importing the service before numpy must keep OpenBLAS/OpenMP at one thread: without the
    # pin, numpy starts one BLAS thread per CPU at import on this kind of machine.
    env = {k: v for k, v in os.environ.items()
           if not k.endswith(("_NUM_THREADS", "_MAXIMUM_THREADS"))}
    env["PYTHONPATH"] = str(REPO)
    code = ("import app, numpy, os; "
            "print(len(os.listdir('/proc/self/task')), os.environ['OPENBLAS_NUM_THREADS'], "
            "os.environ['OMP_NUM_THREADS'])")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=60, check=True)
    assert result.stdout.split() == ["1", "1", "1"]


def test_data_root_entries_need_valid_names(tmp_path):
    # A directory whose name ends in a newline must not pass as a dataset: "$" would admit it.
    for name in ("flights", "flights\n", ".hidden", "-dash"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "CURRENT").write_text("g1\n")
    store = Store(load_settings({"RODATA_DATA_ROOT": str(tmp_path)}))
    assert store.dataset_names() == ["flights"]


def test_invalid_directory_names_logged(tmp_path, caplog):
    (tmp_path / "flights\n").mkdir()
    (tmp_path / "flights\n" / "CURRENT").write_text("g1\n")
    store = Store(load_settings({"RODATA_DATA_ROOT": str(tmp_path)}))
    asyncio.run(store.refresh())
    asyncio.run(store.refresh())
    warnings = [r for r in caplog.records if "not a valid dataset name" in r.getMessage()]
    assert len(warnings) == 1  # once, not on every poll
    assert warnings[0].directory == str(tmp_path / "flights\n")
    ready, reason = store.readiness()
    assert not ready
    assert reason.endswith("; ignored directories with invalid names: 'flights\\n'")


def test_configured_dataset_without_directory(tmp_path, caplog):
    (tmp_path / "flights").mkdir()
    env = {"RODATA_DATA_ROOT": str(tmp_path), "RODATA_DATASETS": "flights,flihgts"}
    store = Store(load_settings(env))
    asyncio.run(store.refresh())
    messages = {r.dataset: r.getMessage() for r in caplog.records if hasattr(r, "dataset")}
    assert messages["flights"].startswith("no published generation yet")
    assert messages["flihgts"].startswith("dataset directory not found; check RODATA_DATASETS")
