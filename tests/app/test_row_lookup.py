"""Row lookup without a server: finding a key, and the compiled row reader's values."""

from __future__ import annotations

import asyncio
import datetime as dt
import math

from api_builders import write_generation
from api_fixtures import PLANES

from app import encode
from app.config import load_settings
from app.encode import RowReader
from app.handlers import Handlers
from app.store import Store

TYPES = {
    "i8": ("int8", [-128, 127, None]),
    "u16": ("uint16", [0, 65535, 7]),
    "i32": ("int32", [None, -(2**31), 2**31 - 1]),
    "u64": ("uint64", [0, 2**64 - 1, 2**53]),
    "f32": ("float32", [0.5, None, -1.25]),
    "flag": ("bool", [True, None, False]),
    "day": ("date", [dt.date(1970, 1, 1), None, dt.date(2038, 1, 19)]),
    "plain": ("string", ["a\"b", None, "é"]),
    "dict": ("string", ["x", "y", None], "dictionary"),
}


def _load(root, name):
    store = Store(load_settings({"RODATA_DATA_ROOT": str(root), "RODATA_DATASETS": name}))
    asyncio.run(store.refresh())
    return store, store.current[name]


def _expected(column, i, json_policy):
    value = column.to_pylist(i, i + 1)[0]
    if json_policy and isinstance(value, int) and not isinstance(value, bool) and \
            abs(value) > 2**53 - 1:
        return str(value)
    return value


def test_row_reader_matches_column_values(tmp_path):
    write_generation(tmp_path, "planes", "p1", PLANES, ["tailnum"])
    store, loaded = _load(tmp_path, "planes")
    reader = RowReader(loaded)
    for i in range(loaded.row_count):
        row = reader.row(i)
        assert list(row) == loaded.column_names
        for name in loaded.column_names:
            expected = _expected(loaded.columns[name], i, json_policy=True)
            if isinstance(expected, float) and math.isnan(expected):
                assert math.isnan(row[name]), (i, name)
            else:
                assert row[name] == expected, (i, name)
    asyncio.run(store.stop())


def test_row_reader_every_type(tmp_path):
    columns = {"id": ("int64", [1, 2, 3]), **TYPES}
    write_generation(tmp_path, "types", "t1", columns, ["id"])
    store, loaded = _load(tmp_path, "types")
    rows = [loaded.row_reader().row(i) for i in range(3)]
    assert rows[0] == {"id": 1, "i8": -128, "u16": 0, "i32": None, "u64": 0, "f32": 0.5,
                       "flag": True, "day": dt.date(1970, 1, 1), "plain": 'a"b', "dict": "x"}
    assert rows[1] == {"id": 2, "i8": 127, "u16": 65535, "i32": -(2**31),
                       "u64": str(2**64 - 1), "f32": None, "flag": None, "day": None,
                       "plain": None, "dict": "y"}
    assert rows[2] == {"id": 3, "i8": None, "u16": 7, "i32": 2**31 - 1, "u64": str(2**53),
                       "f32": -1.25, "flag": False, "day": dt.date(2038, 1, 19),
                       "plain": "é", "dict": None}
    assert all(type(row["flag"]) in (bool, type(None)) for row in rows)
    asyncio.run(store.stop())


def test_closed_generation_unmaps_columns(tmp_path):
    write_generation(tmp_path, "planes", "p1", PLANES, ["tailnum"])
    store, loaded = _load(tmp_path, "planes")
    assert loaded.row_reader().row(0)["tailnum"] == "N1"
    columns = list(loaded.handle.columns.values())
    asyncio.run(store.stop())
    # The reader's memoryviews must not keep a map open once the generation is closed.
    assert all(column._mmap.closed for column in columns)


def test_find_sparse_and_dense_keys(tmp_path):
    write_generation(tmp_path, "sparse", "s1", {"id": ("int64", [0, 2, 3, 7, 8, 9, 10])}, ["id"])
    write_generation(tmp_path, "dense", "d1", {"id": ("int64", list(range(5, 25)))}, ["id"])
    store, sparse = _load(tmp_path, "sparse")
    # A guess inside the rows that reads another key must fall back to the binary search.
    assert Handlers._find(sparse, [3]) == (2, 3)
    assert Handlers._find(sparse, [10]) == (6, 7)
    assert Handlers._find(sparse, [0]) == (0, 1)
    assert Handlers._find(sparse, [4]) == (3, 3)  # absent: empty range at its sort position
    assert Handlers._find(sparse, [-1]) == (0, 0)
    assert Handlers._find(sparse, [11]) == (7, 7)
    asyncio.run(store.stop())
    store, dense = _load(tmp_path, "dense")
    assert [Handlers._find(dense, [k]) for k in (5, 6, 24)] == [(0, 1), (1, 2), (19, 20)]
    assert Handlers._find(dense, [25]) == (20, 20)
    assert Handlers._find(dense, [4]) == (0, 0)
    asyncio.run(store.stop())


def test_row_document_is_the_lookup_json(tmp_path):
    write_generation(tmp_path, "planes", "p1", PLANES, ["tailnum"])
    store, loaded = _load(tmp_path, "planes")
    reader = loaded.row_reader()
    for i in range(loaded.row_count):
        document = reader.document(i)
        expected = encode.json_bytes({"dataset": "planes", "generation": "p1",
                                      "row": reader.row(i)})
        assert document == expected, i
    asyncio.run(store.stop())
