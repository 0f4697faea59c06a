"""Fixtures for the API tests: small generations and a running server.

They live here rather than in a conftest.py, because other tests run `import conftest` and
must get the top-level one. Test modules import the fixtures they use.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from api_builders import write_generation
from api_server import ApiServer

PLANES = {
    "tailnum": ("string", ["N1", "N2", "N3,x", "N4", "N5"]),
    "year": ("int32", [2001, None, 1999, 2010, 2004]),
    "maker": ("string", ["AIRBUS", "BOEING", None, "AIRBUS", "EMBRAER"], "dictionary"),
    "seats": ("float64", [100.5, float("nan"), 50.0, float("inf"), 20.0]),
    "big": ("int64", [1, 2**60, -(2**60), 3, 2**53 - 1]),
    "day": ("date", [dt.date(2013, 1, 1), dt.date(2013, 1, 2), None, dt.date(2013, 1, 4),
                     dt.date(2013, 1, 5)]),
    "ts": ("timestamp", [dt.datetime(2013, 1, 1, 5), dt.datetime(2013, 1, 1, 6),
                         dt.datetime(2013, 1, 1, 7), None, dt.datetime(2013, 1, 1, 9)]),
    "ok": ("bool", [True, False, True, None, False]),
}

WEATHER = {
    "origin": ("string", ["EWR", "EWR", "EWR", "JFK", "LGA"], "dictionary"),
    "time_hour": ("timestamp", [dt.datetime(2013, 1, 1, 5), dt.datetime(2013, 1, 1, 6),
                                dt.datetime(2013, 1, 1, 7), dt.datetime(2013, 1, 1, 5),
                                dt.datetime(2013, 1, 1, 5)]),
    "temp": ("float64", [39.0, 39.9, 40.1, 41.0, 42.0]),
}

NUMBERS = {"id": ("int64", list(range(2000))), "v": ("float64", [i / 2 for i in range(2000)])}


def make_small_root(root: Path) -> Path:
    """Write the planes and weather test datasets under `root`."""
    write_generation(root, "planes", "p1", PLANES, ["tailnum"])
    write_generation(root, "weather", "w1", WEATHER, ["origin", "time_hour"])
    write_generation(root, "numbers", "n1", NUMBERS, ["id"])
    write_generation(root, "bigkeys", "b1", {"id": ("int64", [-(2**60), 1, 2**53, 2**60])},
                     ["id"])
    return root


@pytest.fixture(scope="module", name="small_root")
def small_root_fixture(tmp_path_factory) -> Path:
    return make_small_root(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module", name="api")
def api_fixture(small_root, tmp_path_factory):
    server = ApiServer(small_root, tmp_path_factory.mktemp("log") / "api.log",
                       RODATA_MAX_LIMIT="3", RODATA_DEFAULT_LIMIT="2", RODATA_MAX_SCAN_ROWS="1000",
                       RODATA_MAX_RAW_BYTES="4096")
    try:
        server.wait_ready()
        yield server
    finally:
        status = server.stop()
        assert status == 0, server.log()
