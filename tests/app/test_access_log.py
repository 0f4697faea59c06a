"""The access log line: one JSON object per request with the documented fields."""

from __future__ import annotations

import io
import json

from app.front import _REQUEST_ID
from app.logs import AccessLog

FIELDS = ["time", "level", "logger", "message", "request_id", "method", "path", "route",
          "status", "dataset", "generation", "bytes", "latency_ms"]


def _lines(log: AccessLog, stream: io.BytesIO) -> list[dict]:
    log.flush()
    text = stream.getvalue().decode()
    assert text.endswith("\n")
    # Split on "\n" only: str.splitlines would also split at U+2028, which JSON allows raw.
    return [json.loads(line) for line in text.split("\n")[:-1]]


def test_access_line_fields():
    stream = io.BytesIO()
    log = AccessLog(stream)
    log.write(b"abc-1", "GET", "/v1/datasets/flights/rows/1", "row", 200, "flights", "g1", 389,
              0.0001234)
    [record] = _lines(log, stream)
    assert list(record) == FIELDS
    assert record["level"] == "info"
    assert record["logger"] == "rodata.api.access"
    assert record["message"] == "request"
    assert record["request_id"] == "abc-1"
    assert record["method"] == "GET"
    assert record["path"] == "/v1/datasets/flights/rows/1"
    assert record["route"] == "row"
    assert record["status"] == 200
    assert record["dataset"] == "flights"
    assert record["generation"] == "g1"
    assert record["bytes"] == 389
    assert record["latency_ms"] == 0.123
    assert record["time"].endswith("Z")
    assert len(record["time"]) == len("2026-12-04T22:53:45.123Z")


def test_access_line_escapes_client_text():
    stream = io.BytesIO()
    log = AccessLog(stream)
    paths = ['/v1/"quoted"\\back', "/v1/new\nline\ttab\x00nul", "/v1/é ✓ \U0001F600",
             "/v1/\u2028separator"]
    for path in paths:
        log.write(b"r", "GET", path, "other", 404, None, None, 0, 2.5)
    records = _lines(log, stream)
    assert [r["path"] for r in records] == paths
    assert all(r["dataset"] is None and r["generation"] is None for r in records)
    assert all(r["latency_ms"] == 2500.0 for r in records)


def test_access_line_odd_method_and_dataset():
    # Values from the FastAPI path (scope state) are encoded too, whatever they contain.
    stream = io.BytesIO()
    log = AccessLog(stream)
    log.write(b"r", 'PO"ST', "/", "other", 405, 'a"b', "g\\1", 7, 0.0)
    [record] = _lines(log, stream)
    assert record["method"] == 'PO"ST'
    assert record["dataset"] == 'a"b'
    assert record["generation"] == "g\\1"
    assert record["latency_ms"] == 0


def test_request_id_pattern_rejects_line_breaks():
    # The access log writes a client's X-Request-ID unescaped, so only safe ids may pass.
    assert _REQUEST_ID.fullmatch(b"abc-1.2:3_x")
    assert _REQUEST_ID.fullmatch(b"abc\n") is None
    assert _REQUEST_ID.fullmatch(b'a"b') is None
    assert _REQUEST_ID.fullmatch(b"a\\b") is None
    assert _REQUEST_ID.fullmatch(b"x" * 129) is None
