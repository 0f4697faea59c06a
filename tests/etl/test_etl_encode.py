"""Encoding Arrow columns into format column files and reading them back."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from etl.encode import encode_column
from etl.schema import ARROW_TYPES
from rodata import format as fmt

CASES = [
    ("int8", [1, None, -128, 127]),
    ("uint16", [0, 65535, None]),
    ("int64", [2**62, None, -(2**62)]),
    ("float32", [1.5, None, -0.25]),
    ("float64", [1e300, None, float("inf")]),
    ("bool", [True, None, False, True, False, False, True, True, True, None]),
    ("date", [dt.date(2013, 1, 1), None, dt.date(1969, 12, 31)]),
    ("timestamp", [dt.datetime(2013, 1, 1, 10, tzinfo=dt.UTC), None]),
    ("string", ["a", None, "", "日本", "NA"]),
]


def round_trip(tmp_path, values: pa.Array, storage_type: str, encoding: str = "auto") -> list:
    path = tmp_path / "column.rdc"
    path.unlink(missing_ok=True)
    fmt.write_column(path, encode_column(values, storage_type, encoding=encoding))
    column = fmt.open_column(path)
    try:
        return column.to_pylist()
    finally:
        column.close()


def expected_python(storage_type: str, values: list) -> list:
    if storage_type == "timestamp":
        return [None if v is None else v.replace(tzinfo=None) for v in values]
    return values


@pytest.mark.parametrize(("storage_type", "values"), CASES)
def test_round_trip_with_nulls(tmp_path, storage_type, values):
    array = pa.array(values, ARROW_TYPES[storage_type])
    assert round_trip(tmp_path, array, storage_type) == expected_python(storage_type, values)


@pytest.mark.parametrize(("storage_type", "values"), CASES)
def test_round_trip_of_slice(tmp_path, storage_type, values):
    # A sliced array has a non-zero offset into its buffers.
    array = pa.array(values * 3, ARROW_TYPES[storage_type]).slice(1, len(values) + 1)
    expected = expected_python(storage_type, (values * 3)[1 : len(values) + 2])
    assert round_trip(tmp_path, array, storage_type) == expected


@pytest.mark.parametrize("storage_type", sorted(ARROW_TYPES))
def test_empty_column(tmp_path, storage_type):
    assert round_trip(tmp_path, pa.array([], ARROW_TYPES[storage_type]), storage_type) == []


def test_dictionary_sorted_by_utf8_bytes(tmp_path):
    values = pa.array(["b", "ä", None, "a", "B", "b"] * 10, pa.string())
    path = tmp_path / "dict.rdc"
    fmt.write_column(path, encode_column(values, "string"))
    column = fmt.open_column(path)
    assert column.encoding == "dictionary"
    assert column.dictionary_values() == ["B", "a", "b", "ä"]
    assert column.to_pylist() == values.to_pylist()
    assert int(np.asarray(column.values)[2]) == 0  # null row has code 0
    column.close()


def test_high_cardinality_stays_plain(tmp_path):
    values = pa.array([f"v{i}" for i in range(100)], pa.string())
    path = tmp_path / "plain.rdc"
    fmt.write_column(path, encode_column(values, "string"))
    column = fmt.open_column(path)
    assert column.encoding == "plain"
    column.close()


def test_null_slots_written_as_zero(tmp_path):
    # Arrow leaves the value under a null unspecified; the file must not depend on it.
    values = pa.Array.from_buffers(
        pa.int32(), 2, [pa.py_buffer(np.packbits([1, 0], bitorder="little").tobytes()),
                        pa.py_buffer(np.array([7, 12345], "<i4").tobytes())])
    path = tmp_path / "zero.rdc"
    fmt.write_column(path, encode_column(values, "int32"))
    column = fmt.open_column(path)
    assert list(np.asarray(column.values)) == [7, 0]
    column.close()
