"""The API over a real socket on small generations whose values the tests know exactly."""

from __future__ import annotations

import csv
import io
import time

import numpy as np
import pyarrow as pa
import pytest
from api_fixtures import api_fixture, small_root_fixture  # noqa: F401 - pytest fixtures
from prometheus_client.parser import text_string_to_metric_families

ARROW = "application/vnd.apache.arrow.stream"

def objects(document: dict) -> list[dict]:
    """Return the rows of a JSON page (arrays in 'columns' order) as dicts."""
    return [dict(zip(document["columns"], row)) for row in document["rows"]]



def test_healthz_and_readyz(api):
    assert api.request("/healthz").json() == {"status": "ok"}
    ready = api.request("/readyz")
    assert ready.status == 200
    assert ready.json()["generations"] == {"bigkeys": "b1", "numbers": "n1", "planes": "p1",
                                               "weather": "w1"}


def test_datasets_list(api):
    document = api.request("/v1/datasets").json()
    names = [d["name"] for d in document["datasets"]]
    assert names == ["bigkeys", "numbers", "planes", "weather"]
    planes = document["datasets"][2]
    assert planes["generation"] == "p1"
    assert planes["row_count"] == 5
    assert planes["size_bytes"] > 0
    assert planes["created"].startswith("20")


def test_dataset_schema(api):
    document = api.request("/v1/datasets/weather").json()
    assert document["key"] == ["origin", "time_hour"]
    assert document["row_count"] == 5
    types = {c["name"]: (c["type"], c["encoding"]) for c in document["schema"]}
    assert types == {"origin": ("string", "dictionary"), "time_hour": ("timestamp", "plain"),
                     "temp": ("float64", "plain")}


def test_row_by_key(api):
    response = api.request("/v1/datasets/planes/rows/N1")
    assert response.status == 200
    assert response.json() == {"dataset": "planes", "generation": "p1", "row": {
        "tailnum": "N1", "year": 2001, "maker": "AIRBUS", "seats": 100.5, "big": 1,
        "day": "2013-01-01", "ts": "2013-01-01T05:00:00Z", "ok": True}}


def test_row_json_policy(api):
    row = api.request("/v1/datasets/planes/rows/N2").json()["row"]
    assert row["seats"] is None  # NaN
    assert row["big"] == str(2**60)  # beyond 2**53: a string
    assert row["year"] is None  # null
    assert api.request("/v1/datasets/planes/rows/N4").json()["row"]["seats"] is None  # inf
    assert api.request("/v1/datasets/planes/rows/N5").json()["row"]["big"] == 2**53 - 1


def test_row_key_with_comma(api):
    row = api.request("/v1/datasets/planes/rows/N3%2Cx").json()["row"]
    assert row["tailnum"] == "N3,x"
    assert row["maker"] is None
    assert row["big"] == str(-(2**60))


def test_row_composite_key(api):
    row = api.request("/v1/datasets/weather/rows/EWR,2013-01-01T06:00:00Z").json()["row"]
    assert row == {"origin": "EWR", "time_hour": "2013-01-01T06:00:00Z", "temp": 39.9}
    # An explicit UTC offset names the same instant.
    other = api.request("/v1/datasets/weather/rows/JFK,2013-01-01T00:00:00-05:00").json()
    assert other["row"]["temp"] == 41.0


def test_row_missing_key(api):
    response = api.request("/v1/datasets/planes/rows/N9")
    assert response.status == 404
    error = response.json()["error"]
    assert error["code"] == "key_not_found"
    assert "'N9'" in error["message"]
    missing = api.request("/v1/datasets/weather/rows/EWR,2013-01-01T08:00:00Z")
    assert missing.status == 404


def test_row_csv_and_arrow(api):
    text = api.request("/v1/datasets/planes/rows/N2", headers={"Accept": "text/csv"})
    assert text.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(text.body.decode())))
    assert rows[0][:3] == ["tailnum", "year", "maker"]
    assert rows[1][:3] == ["N2", "", "BOEING"]
    assert rows[1][4] == str(2**60)
    arrow = api.request("/v1/datasets/planes/rows/N2", headers={"Accept": ARROW})
    table = pa.ipc.open_stream(arrow.body).read_all()
    assert table.column("big").to_pylist() == [2**60]
    assert table.column("maker").to_pylist() == ["BOEING"]
    assert table.schema.metadata[b"generation"] == b"p1"


def test_rows_pages_with_cursor(api):
    first = api.request("/v1/datasets/planes/rows?columns=tailnum,year").json()
    assert [r["tailnum"] for r in objects(first)] == ["N1", "N2"]  # default limit 2
    assert objects(first)[1] == {"tailnum": "N2", "year": None}
    cursor = first["next_cursor"]
    second = api.request(f"/v1/datasets/planes/rows?columns=tailnum,year&cursor={cursor}").json()
    assert [r["tailnum"] for r in objects(second)] == ["N3,x", "N4"]
    third = api.request("/v1/datasets/planes/rows?columns=tailnum,year&cursor="
                        + second["next_cursor"]).json()
    assert [r["tailnum"] for r in objects(third)] == ["N5"]
    assert third["next_cursor"] is None


def test_rows_by_position_and_key_range(api):
    by_position = api.request("/v1/datasets/planes/rows?start=1&stop=3&columns=tailnum").json()
    assert [r["tailnum"] for r in objects(by_position)] == ["N2", "N3,x"]
    by_key = api.request("/v1/datasets/planes/rows?key_start=N2&key_stop=N4&columns=tailnum")
    assert [r["tailnum"] for r in objects(by_key.json())] == ["N2", "N3,x"]
    prefix = api.request("/v1/datasets/weather/rows?key_start=EWR&key_stop=JFK&limit=3")
    assert [r["time_hour"][11:13] for r in objects(prefix.json())] == ["05", "06", "07"]


@pytest.mark.parametrize(("filters", "expected"), [
    ("filter=maker:eq:AIRBUS", ["N1", "N4"]),
    ("filter=maker:ne:AIRBUS", ["N2", "N5"]),
    ("filter=maker:in:BOEING,EMBRAER", ["N2", "N5"]),
    ("filter=maker:lt:BOEING", ["N1", "N4"]),
    ("filter=maker:ge:BOEING", ["N2", "N5"]),
    ("filter=maker:isnull:true", ["N3,x"]),
    ("filter=year:gt:2001", ["N4", "N5"]),
    ("filter=year:le:2001", ["N1", "N3,x"]),
    ("filter=year:isnull:true", ["N2"]),
    ("filter=seats:lt:60", ["N3,x", "N5"]),
    ("filter=day:ge:2013-01-02&filter=day:lt:2013-01-05", ["N2", "N4"]),
    ("filter=ts:eq:2013-01-01T06:00:00Z", ["N2"]),
    ("filter=ok:eq:false", ["N2", "N5"]),
    ("filter=tailnum:in:N1,N5", ["N1", "N5"]),
    ("filter=tailnum:gt:N3", ["N3,x", "N4", "N5"]),
    ("filter=big:in:1,3", ["N1", "N4"]),
])
def test_rows_filters(api, filters, expected):
    response = api.request(f"/v1/datasets/planes/rows?columns=tailnum&limit=3&{filters}")
    assert response.status == 200, response.body
    assert [r["tailnum"] for r in objects(response.json())] == expected


def test_rows_filter_pages(api):
    page = api.request("/v1/datasets/planes/rows?columns=tailnum&limit=1&filter=maker:eq:AIRBUS")
    first = page.json()
    assert [r["tailnum"] for r in objects(first)] == ["N1"]
    rest = api.request("/v1/datasets/planes/rows?columns=tailnum&limit=1&filter=maker:eq:AIRBUS"
                       "&cursor=" + first["next_cursor"]).json()
    assert [r["tailnum"] for r in objects(rest)] == ["N4"]


def test_rows_csv_header_cursor(api):
    response = api.request("/v1/datasets/planes/rows?columns=tailnum,day",
                           headers={"Accept": "text/csv"})
    assert response.body.decode().splitlines() == ["tailnum,day", "N1,2013-01-01",
                                                   "N2,2013-01-02"]
    assert response.headers["x-rodata-next-cursor"]


def test_column_json_and_raw(api):
    values = api.request("/v1/datasets/planes/columns/year?start=1&stop=4").json()
    assert values["values"] == [None, 1999, 2010]
    raw = api.request("/v1/datasets/planes/columns/big?start=1&stop=3",
                      headers={"Accept": "application/octet-stream"})
    assert raw.status == 200
    assert raw.headers["content-type"] == "application/octet-stream"
    assert raw.headers["content-length"] == "16"  # bytes, not elements
    assert raw.headers["x-rodata-dtype"] == "<i8"
    assert raw.headers["x-rodata-shape"] == "2"
    assert np.frombuffer(raw.body, dtype="<i8").tolist() == [2**60, -(2**60)]
    stamps = api.request("/v1/datasets/planes/columns/ts?start=0&stop=2",
                         headers={"Accept": "application/octet-stream"})
    assert stamps.headers["x-rodata-dtype"] == "<M8[us]"
    decoded = np.frombuffer(stamps.body, dtype=stamps.headers["x-rodata-dtype"])
    assert str(decoded[1]) == "2013-01-01T06:00:00.000000"


def test_column_raw_rejected_for_strings(api):
    response = api.request("/v1/datasets/planes/columns/tailnum",
                           headers={"Accept": "application/octet-stream"})
    assert response.status == 406
    assert "application/json" in response.json()["error"]["allowed"]


def test_aggregate_plain(api):
    document = api.request("/v1/datasets/planes/aggregate?agg=count,sum:year,min:year,"
                           "max:day").json()
    assert document["results"] == [{"count": 5, "sum:year": 2001 + 1999 + 2010 + 2004,
                                     "min:year": 1999, "max:day": "2013-01-05"}]
    assert document["rows_scanned"] == 5


def test_aggregate_grouped_filtered(api):
    document = api.request("/v1/datasets/planes/aggregate?agg=count,mean:year&group_by=maker"
                           "&filter=year:isnull:false").json()
    assert document["results"] == [
        {"maker": "AIRBUS", "count": 2, "mean:year": (2001 + 2010) / 2},
        {"maker": "EMBRAER", "count": 1, "mean:year": 2004.0},
        {"maker": None, "count": 1, "mean:year": 1999.0},
    ]
    assert document["rows_matched"] == 4


def test_etag_304_head_vary(api):
    first = api.request("/v1/datasets/planes/rows/N1")
    etag = first.headers["etag"]
    assert etag.startswith('"p1.')
    assert first.headers["vary"] == "Accept"
    assert "no-cache" in first.headers["cache-control"]
    again = api.request("/v1/datasets/planes/rows/N1", headers={"If-None-Match": etag})
    assert again.status == 304
    assert again.body == b""
    assert again.headers["etag"] == etag
    other = api.request("/v1/datasets/planes/rows/N1", headers={"Accept": "text/csv"})
    assert other.headers["etag"] != etag
    head = api.request("/v1/datasets/planes/rows/N1", method="HEAD")
    assert head.status == 200
    assert head.body == b""
    assert head.headers["content-length"] == str(len(first.body))
    assert api.request("/healthz", method="HEAD").status == 200


def test_metrics(api):
    api.request("/v1/datasets/planes/rows/N1")
    text = api.request("/metrics").body.decode()
    assert 'rodata_http_requests_total{method="GET",route="row",status="200"}' in text
    assert "rodata_http_request_duration_seconds_bucket" in text
    assert 'rodata_generation_info{dataset="planes",generation="p1"} 1.0' in text
    assert 'rodata_rows_scanned_total{dataset="planes"}' in text
    assert "rodata_http_response_bytes_total" in text
    assert "process_resident_memory_bytes" in text


def _metric_samples(api) -> dict[tuple[str, tuple], float]:
    text = api.request("/metrics").body.decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metrics_count_requests(api):
    before = _metric_samples(api)
    sizes = [len(api.request(f"/v1/datasets/planes/rows/N{i}").body) for i in (1, 2, 4)]
    assert api.request("/v1/datasets/planes/rows/N9").status == 404
    after = _metric_samples(api)

    def grown(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after[key] - before.get(key, 0.0)

    assert grown("rodata_http_requests_total", route="row", method="GET", status="200") == 3
    assert grown("rodata_http_requests_total", route="row", method="GET", status="404") == 1
    assert grown("rodata_http_request_duration_seconds_count", route="row") == 4
    assert grown("rodata_http_request_duration_seconds_bucket", route="row", le="+Inf") == 4
    assert grown("rodata_http_request_duration_seconds_sum", route="row") > 0
    assert grown("rodata_http_response_bytes_total", route="row") >= sum(sizes)
    assert grown("rodata_rows_scanned_total", dataset="planes") == 3
    buckets = [value for (name, labels), value in after.items()
               if name == "rodata_http_request_duration_seconds_bucket"
               and ("route", "row") in labels]
    assert buckets == sorted(buckets)  # cumulative, as Prometheus buckets are
    assert ("rodata_http_requests_created",
            (("method", "GET"), ("route", "row"), ("status", "200"))) in after


def test_openapi_lists_routes(api):
    document = api.request("/openapi.json").json()
    paths = document["paths"]
    for path in ("/v1/datasets", "/v1/datasets/{name}", "/v1/datasets/{name}/rows/{key}",
                 "/v1/datasets/{name}/rows", "/v1/datasets/{name}/columns/{column}",
                 "/v1/datasets/{name}/aggregate", "/healthz", "/readyz", "/metrics"):
        assert "get" in paths[path], path
        assert "head" in paths[path], path
    operation_ids = [op["operationId"] for ops in paths.values() for op in ops.values()]
    assert len(operation_ids) == len(set(operation_ids))
    parameters = {p["name"] for p in paths["/v1/datasets/{name}/rows"]["get"]["parameters"]}
    assert {"start", "stop", "key_start", "key_stop", "columns", "filter", "limit",
            "cursor"} <= parameters
    assert api.request("/docs").status == 200


def test_access_log_is_json(api):
    response = api.request("/v1/datasets/planes/rows/N1", headers={"X-Request-ID": "test-id-1"})
    assert response.headers["x-request-id"] == "test-id-1"
    records = _access_records(api, "/v1/datasets/planes/rows/N1", request_id="test-id-1")
    assert records, api.log()
    record = records[-1]
    assert record["status"] == 200
    assert record["dataset"] == "planes"
    assert record["generation"] == "p1"
    assert record["latency_ms"] >= 0
    assert list(record) == ["time", "level", "logger", "message", "request_id", "method",
                            "path", "route", "status", "dataset", "generation", "bytes",
                            "latency_ms"]
    assert record["path"] == "/v1/datasets/planes/rows/N1"
    assert record["route"] == "row"
    assert record["bytes"] == len(response.body)


def _access_records(api, path: str, request_id: str | None = None) -> list[dict]:
    # Access lines are buffered and flushed every 0.2 s after the body is sent; a busy CI
    # machine may take longer, hence the generous deadline.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        records = [r for r in api.log_records()
                   if r.get("logger") == "rodata.api.access" and r.get("path") == path
                   and request_id in (None, r.get("request_id"))]
        if records:
            return records
        time.sleep(0.05)
    return []


def test_access_log_unsafe_request_id_replaced(api):
    # A key no other test requests, so that the path matches only this request's log line.
    path = "/v1/datasets/planes/rows/Nrequestid"
    response = api.request(path, headers={"X-Request-ID": 'bad "id"'})
    generated = response.headers["x-request-id"]
    assert generated != 'bad "id"'
    records = _access_records(api, path)
    assert [r["request_id"] for r in records] == [generated]


def test_access_log_escapes_path(api):
    # %22 and %5C decode to '"' and a backslash in the path the log line records.
    response = api.request('/v1/datasets/planes/rows/N%22%5Cq')
    assert response.status == 404
    records = _access_records(api, '/v1/datasets/planes/rows/N"\\q')
    assert len(records) == 1, api.log()
    assert records[0]["status"] == 404
    assert records[0]["dataset"] == "planes"


def test_aggregate_big_sum_is_string(api):
    document = api.request("/v1/datasets/planes/aggregate?agg=sum:big").json()
    assert document["results"] == [{"sum:big": str(2**53 + 3)}]


def test_key_bounds_in_query(api):
    # A ',' inside a single-column key value is sent as %2C, as in the path.
    page = api.request("/v1/datasets/planes/rows?key_start=N3%2Cx&columns=tailnum&limit=3")
    assert [r["tailnum"] for r in objects(page.json())] == ["N3,x", "N4", "N5"]
    composite = api.request("/v1/datasets/weather/rows?key_start=EWR,2013-01-01T06:00:00Z"
                            "&key_stop=JFK&limit=3").json()
    assert [r["time_hour"] for r in objects(composite)] == ["2013-01-01T06:00:00Z",
                                                            "2013-01-01T07:00:00Z"]


def test_key_columns_prewarmed(api):
    opened = {r["dataset"]: r for r in api.log_records() if r.get("message") == "generation opened"}
    assert set(opened) == {"bigkeys", "numbers", "planes", "weather"}
    # numbers: 2000 int64 ids; weather: codes of origin plus 5 timestamps at least.
    assert opened["numbers"]["prewarmed_bytes"] == 2000 * 8
    assert opened["weather"]["prewarmed_bytes"] >= 5 + 5 * 8


def test_big_sorted_keys_in_pages(api):
    # The first key column is sorted, so pages check only its ends against 2**53.
    document = api.request("/v1/datasets/bigkeys/rows?start=1&stop=3").json()
    assert document["rows"] == [[1], [str(2**53)]]
    first = api.request("/v1/datasets/bigkeys/rows?stop=2").json()
    assert first["rows"] == [[str(-(2**60))], [1]]
    within = api.request("/v1/datasets/bigkeys/rows?start=1&stop=2").json()
    assert within["rows"] == [[1]]
    assert api.request(f"/v1/datasets/bigkeys/rows/{2**60}").json()["row"] == {"id": str(2**60)}


def test_row_int64_key_json_policy(api):
    # bigkeys has keys beyond 2**53, so every value of its key is range-checked.
    assert api.request("/v1/datasets/bigkeys/rows/1").json()["row"] == {"id": 1}
    big = api.request(f"/v1/datasets/bigkeys/rows/{2**53}").json()
    assert big["row"] == {"id": str(2**53)}
    # numbers has its keys within 2**53, which the reader learns from the sorted column's ends.
    row = api.request("/v1/datasets/numbers/rows/1999").json()["row"]
    assert row == {"id": 1999, "v": 999.5}
