"""Every kind of bad input gets a 4xx in the one JSON error shape, naming what is wrong."""

from __future__ import annotations

import pytest
from api_fixtures import api_fixture, small_root_fixture  # noqa: F401 - pytest fixtures

P = "/v1/datasets/planes"

CASES = [
    # (path, headers, status, code, parameter, text in the message)
    ("/v1/datasets/nope", None, 404, "unknown_dataset", "dataset", "'nope' is not served"),
    ("/v1/datasets/nope/rows/1", None, 404, "unknown_dataset", "dataset", "not served"),
    (f"{P}/columns/nope", None, 404, "unknown_column", "column", "no column 'nope'"),
    (f"{P}/rows/N9", None, 404, "key_not_found", "key", "no row"),
    (f"{P}/nothing", None, 404, "not_found", None, "no such resource"),
    ("/v1/other", None, 404, "not_found", None, "no such resource"),
    ("/nowhere", None, 404, "not_found", None, "no such resource"),
    # path tricks
    ("/v1/datasets/..", None, 400, "invalid_name", "dataset", "'..' is invalid"),
    ("/v1/datasets/../etc/passwd", None, 400, "invalid_name", "dataset", "invalid"),
    ("/v1/datasets/..%2F..%2Fetc", None, 400, "invalid_name", "dataset", "'../../etc'"),
    ("/v1/datasets/planes%00", None, 400, "invalid_name", "dataset", "planes\\\\0"),
    ("/v1/datasets/plan%2Fes", None, 400, "invalid_name", "dataset", "'plan/es'"),
    (f"{P}/columns/..", None, 400, "invalid_name", "column", "'..' is invalid"),
    (f"{P}/columns/a%2Fb", None, 400, "invalid_name", "column", "'a/b'"),
    (f"{P}/columns/year%00", None, 400, "invalid_name", "column", "invalid"),
    (f"{P}/rows/N1%00", None, 400, "invalid_parameter", "key", "NUL"),
    ("/v1/datasets/%ff", None, 400, "invalid_name", "dataset", "UTF-8"),
    # integers
    (f"{P}/rows?limit=-1", None, 400, "invalid_parameter", "limit", "negative"),
    (f"{P}/rows?limit=abc", None, 400, "invalid_parameter", "limit", "integer from 1 to 3"),
    (f"{P}/rows?limit=0", None, 400, "invalid_parameter", "limit", "out of range"),
    (f"{P}/rows?limit=4", None, 400, "invalid_parameter", "limit", "from 1 to 3"),
    (f"{P}/rows?limit=1.5", None, 400, "invalid_parameter", "limit", "integer"),
    (f"{P}/rows?limit=", None, 400, "invalid_parameter", "limit", "integer"),
    (f"{P}/rows?start=99999999999999999999", None, 400, "invalid_parameter", "start", "int64"),
    (f"{P}/rows?start=6", None, 400, "invalid_parameter", "start", "from 0 to 5"),
    (f"{P}/rows?start=3&stop=1", None, 400, "invalid_range", "start", "greater than stop"),
    (f"{P}/columns/year?start=-2", None, 400, "invalid_parameter", "start", "negative"),
    (f"{P}/columns/year?start=4&stop=2", None, 400, "invalid_range", "start", "greater"),
    (f"{P}/columns/year?stop=x", None, 400, "invalid_parameter", "stop", "row position"),
    # repeated and unknown parameters
    (f"{P}/rows?limit=1&limit=2", None, 400, "repeated_parameter", "limit", "more than once"),
    (f"{P}/rows?bogus=1", None, 400, "unknown_parameter", "bogus", "unknown query parameter"),
    (f"{P}/rows/N1?columns=year", None, 400, "unknown_parameter", "columns", "takes no query parameters"),
    (f"{P}?x=1", None, 400, "unknown_parameter", "x", "takes no query parameters"),
    (f"{P}/rows?{'&'.join(f'filter=year:eq:{i}' for i in range(70))}", None, 400,
     "invalid_query", None, "more than 64"),
    # projection and filters
    (f"{P}/rows?columns=year,nope", None, 400, "unknown_column", "columns", "'nope'"),
    (f"{P}/rows?columns=year,year", None, 400, "invalid_parameter", "columns", "twice"),
    (f"{P}/rows?filter=year:like:1", None, 400, "unknown_operator", "filter", "'like'"),
    (f"{P}/rows?filter=year", None, 400, "invalid_parameter", "filter", "column:op:value"),
    (f"{P}/rows?filter=nope:eq:1", None, 400, "unknown_column", "filter", "'nope'"),
    (f"{P}/rows?filter=year:eq:abc", None, 400, "invalid_parameter", "filter", "integer"),
    (f"{P}/rows?filter=year:eq:3000000000", None, 400, "invalid_parameter", "filter",
     "out of range for int32"),
    (f"{P}/rows?filter=day:lt:2013-13-01", None, 400, "invalid_parameter", "filter",
     "YYYY-MM-DD"),
    (f"{P}/rows?filter=ts:lt:yesterday", None, 400, "invalid_parameter", "filter", "ISO 8601"),
    (f"{P}/rows?filter=ok:lt:true", None, 400, "invalid_operator", "filter", "bool"),
    (f"{P}/rows?filter=year:isnull:maybe", None, 400, "invalid_parameter", "filter", "isnull"),
    (f"{P}/rows?filter=seats:eq:x", None, 400, "invalid_parameter", "filter", "decimal"),
    # keys
    ("/v1/datasets/weather/rows/EWR", None, 400, "invalid_parameter", "key", "1 component"),
    ("/v1/datasets/weather/rows/EWR,2013-01-01T05:00:00Z,x", None, 400, "invalid_parameter",
     "key", "3 component"),
    ("/v1/datasets/weather/rows/EWR,noon", None, 400, "invalid_parameter", "key", "ISO 8601"),
    (f"{P}/rows?key_start=a,b", None, 200, None, None, None),  # a single key may contain ','
    # cursors
    (f"{P}/rows?cursor=garbage", None, 400, "invalid_parameter", "cursor", "not a cursor"),
    (f"{P}/rows?cursor=eyJ4IjoxfQ", None, 400, "invalid_parameter", "cursor", "not a cursor"),
    # aggregate
    (f"{P}/aggregate?agg=median:year", None, 400, "invalid_parameter", "agg", "'median'"),
    (f"{P}/aggregate?agg=sum", None, 400, "invalid_parameter", "agg", "needs a column"),
    (f"{P}/aggregate?agg=sum:tailnum", None, 400, "invalid_parameter", "agg", "numeric"),
    (f"{P}/aggregate?agg=sum:nope", None, 400, "unknown_column", "agg", "'nope'"),
    (f"{P}/aggregate?group_by=year", None, 400, "invalid_parameter", "group_by",
     "dictionary-encoded"),
    (f"{P}/aggregate?group_by=nope", None, 400, "unknown_column", "group_by", "unknown"),
    # empty and undecodable values
    (f"{P}/rows/", None, 404, "not_found", None, "no such resource"),
    (f"{P}/rows?columns=%ff", None, 400, "invalid_query", None, "not valid UTF-8"),
    (f"{P}/rows?columns=", None, 400, "unknown_column", "columns", "unknown column ''"),
    (f"{P}/rows?filter=year:in:", None, 400, "invalid_parameter", "filter", "integer"),
    (f"{P}/rows?limit=999999999999999999999999", None, 400, "invalid_parameter", "limit",
     "int64"),
    (f"{P}/rows?start=", None, 400, "invalid_parameter", "start", "row position"),
    ("/v1/datasets/weather/rows?key_start=EWR,soon", None, 400, "invalid_parameter",
     "key_start", "ISO 8601"),
    (f"{P}/rows?shape=tables", None, 400, "invalid_parameter", "shape", "arrays or objects"),
    # content negotiation
    (f"{P}/rows/N1", {"Accept": ";;;"}, 406, "not_acceptable", "Accept", "';;;'"),
    (f"{P}/rows/N1", {"Accept": "image/png"}, 406, "not_acceptable", "Accept", "image/png"),
    (f"{P}/rows", {"Accept": "application/octet-stream"}, 406, "not_acceptable", "Accept",
     "octet-stream"),
    ("/v1/datasets", {"Accept": "text/csv"}, 406, "not_acceptable", "Accept", "text/csv"),
    (f"{P}/rows/N1", {"Accept": "application/json;q=0"}, 406, "not_acceptable", "Accept", ""),
]


@pytest.mark.parametrize(("path", "headers", "status", "code", "parameter", "text"), CASES,
                         ids=[case[0][:70] for case in CASES])
def test_bad_input(api, path, headers, status, code, parameter, text):
    response = api.request(path, headers=headers)
    assert response.status == status, response.body
    if code is None:
        return
    error = response.json()["error"]
    assert error["status"] == status
    assert error["code"] == code
    assert error["parameter"] == parameter
    assert text in error["message"]


def test_scan_cap_on_aggregate(api):
    # The server runs with RODATA_MAX_SCAN_ROWS=1000; numbers has 2000 rows.
    response = api.request("/v1/datasets/numbers/aggregate?agg=sum:v")
    assert response.status == 400
    error = response.json()["error"]
    assert error["code"] == "range_too_large"
    assert "at most 1000 rows" in error["message"]
    within = api.request("/v1/datasets/numbers/aggregate?agg=sum:v&start=1000&stop=2000")
    assert within.json()["results"] == [{"sum:v": sum(i / 2 for i in range(1000, 2000))}]


def test_scan_cap_on_filtered_rows(api):
    # No row matches; the page stops after 1000 scanned rows and offers a cursor.
    first = api.request("/v1/datasets/numbers/rows?filter=v:lt:0").json()
    assert first["rows"] == []
    assert first["rows_scanned"] == 1000
    second = api.request("/v1/datasets/numbers/rows?filter=v:lt:0&cursor="
                         + first["next_cursor"]).json()
    assert second["rows_scanned"] == 1000
    assert second["next_cursor"] is None


def test_oversized_column_ranges(api):
    # RODATA_MAX_LIMIT=3 caps JSON column responses at 30 values, RODATA_MAX_RAW_BYTES=4096
    # caps raw responses at 512 int64 values.
    response = api.request("/v1/datasets/numbers/columns/id?start=0&stop=31")
    assert response.status == 400
    error = response.json()["error"]
    assert error["parameter"] == "stop"
    assert "maximum is 30 values" in error["message"]
    raw = api.request("/v1/datasets/numbers/columns/id?start=0&stop=513",
                      headers={"Accept": "application/octet-stream"})
    assert raw.status == 400
    assert "512 rows (4096 bytes)" in raw.json()["error"]["message"]
    default = api.request("/v1/datasets/numbers/columns/id?start=100",
                          headers={"Accept": "application/octet-stream"})
    assert default.headers["x-rodata-stop"] == "612"
    assert len(default.body) == 4096


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_other_methods(api, method):
    response = api.request(f"{P}/rows/N1", method=method)
    assert response.status == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_no_500_in_log(api):
    assert '"status":500' not in api.log().replace(" ", "")
