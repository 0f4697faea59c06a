"""The smoke test's row comparison, against a real HTTP server on a free port."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "roles" / "rodata_smoke" / "files" / "compare_row.py"

spec = importlib.util.spec_from_file_location("compare_row", SCRIPT)
compare_row = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_row)

SERVED_ROWS = {
    "/v1/datasets/airlines/rows/UA": {"carrier": "UA", "name": "United Air Lines Inc."},
    "/v1/datasets/airlines/rows/AA": {"carrier": "AA", "name": "Wrong Name"},
    "/v1/datasets/weather/rows/EWR,2013-01-01T06:00:00Z": {"origin": "EWR", "temp": 39.02},
    "/v1/datasets/flights/rows/1": {
        "id": 1, "dep_delay": 2.0, "tailnum": None, "time_hour": "2013-01-01T10:00:00Z",
    },
}


@pytest.mark.parametrize(
    ("source", "served", "expected"),
    [
        ("NA", None, True),
        ("", None, True),
        ("NA", "NA", False),
        ("2", 2, True),
        ("2", 2.0, True),
        ("0.1", 0.1, True),
        ("2", 3, False),
        ("abc", 1, False),
        ("UA", "UA", True),
        ("UA", "AA", False),
        ("2013-01-01 10:00:00", "2013-01-01T10:00:00Z", True),
        ("2013-01-01T05:00:00-05:00", "2013-01-01T10:00:00Z", True),
        ("2013-01-01 11:00:00", "2013-01-01T10:00:00Z", False),
        ("true", True, True),
        ("0", True, False),
    ],
)
def test_values_match(source: str, served: object, expected: bool) -> None:
    assert compare_row.values_match(source, served) is expected


class RowHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        row = SERVED_ROWS.get(self.path)
        body = json.dumps({"row": row} if row else {"error": "not found"}).encode()
        self.send_response(200 if row else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def api_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), RowHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture()
def sources(tmp_path: Path) -> Path:
    (tmp_path / "airlines.csv").write_text(
        'carrier,name\nAA,American Airlines Inc.\nUA,United Air Lines Inc.\n'
    )
    (tmp_path / "weather.csv").write_text("origin,temp\nEWR,39.02\n")
    (tmp_path / "flights.csv").write_text(
        'id,dep_delay,tailnum,time_hour\n1,2,NA,2013-01-01 10:00:00\n'
    )
    return tmp_path


def run_compare(api_url: str, *args: str) -> tuple[int, dict]:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--url", api_url, *args],
        capture_output=True, text=True, check=False, timeout=60,
    )
    return result.returncode, json.loads(result.stdout.splitlines()[-1])


def test_matching_row_by_key_column(api_url: str, sources: Path) -> None:
    code, report = run_compare(api_url, "--dataset", "airlines", "--key", "UA",
                               "--csv", str(sources / "airlines.csv"), "--key-column", "carrier")
    assert code == 0
    assert report["mismatches"] == []
    assert report["columns"] == 2


def test_matching_row_by_position(api_url: str, sources: Path) -> None:
    code, report = run_compare(api_url, "--dataset", "flights", "--key", "1",
                               "--csv", str(sources / "flights.csv"), "--source-row", "1")
    assert code == 0
    assert report["mismatches"] == []


def test_composite_key_keeps_commas(api_url: str, sources: Path) -> None:
    code, report = run_compare(api_url, "--dataset", "weather", "--key", "EWR,2013-01-01T06:00:00Z",
                               "--csv", str(sources / "weather.csv"), "--source-row", "1")
    assert code == 0
    assert report["url"].endswith("/rows/EWR,2013-01-01T06:00:00Z")
    assert report["mismatches"] == []


def test_mismatch_named(api_url: str, sources: Path) -> None:
    code, report = run_compare(api_url, "--dataset", "airlines", "--key", "AA",
                               "--csv", str(sources / "airlines.csv"), "--key-column", "carrier")
    assert code == 1
    assert report["mismatches"] == [
        {"column": "name", "source": "American Airlines Inc.", "served": "Wrong Name"}
    ]


def test_missing_row_fails(api_url: str, sources: Path) -> None:
    code, report = run_compare(api_url, "--dataset", "airlines", "--key", "ZZ",
                               "--csv", str(sources / "airlines.csv"), "--key-column", "carrier")
    assert code == 1
    assert "404" in report["error"]
