"""Key order checked shard by shard, and the partitioned sort of rows out of key order."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pytest

from etl.sortkey import key_order, key_order_if_sorted, key_text, sort_by_partitions


def shards_of(table: pa.Table, sizes: list[int]) -> list[pa.Table]:
    shards, start = [], 0
    for size in sizes:
        shards.append(table.slice(start, size))
        start += size
    assert start == table.num_rows
    return shards


def test_duplicate_across_shard_seam_counted():
    table = pa.table({"k": [1, 2, 3, 3, 4, 5, 5, 6]})
    order = key_order_if_sorted(shards_of(table, [3, 0, 3, 2]))
    assert order is not None
    assert order.permutation is None
    assert order.duplicate_rows == 2          # one 3 across the seam, one 5 inside a shard
    assert order.example == {"k": 3}


@pytest.mark.parametrize("sizes", [[2, 2], [1, 3]])
def test_out_of_order_shards_detected(sizes):
    # In [1, 3 | 2, 4] each shard is sorted but the seam is not. In [1 | 3, 2, 4] a shard is not.
    assert key_order_if_sorted(shards_of(pa.table({"k": [1, 3, 2, 4]}), sizes)) is None


def random_keys(rows: int) -> pa.Table:
    rng = np.random.default_rng(11)
    words = np.array(["", "b", "a", "ab", "日本", "Z"], dtype=object)
    floats = rng.integers(0, 5, rows).astype(float)
    floats[rng.random(rows) < 0.05] = np.nan
    return pa.table({
        "word": pa.array(words[rng.integers(0, len(words), rows)].tolist(), pa.large_string()),
        "number": pa.array(floats),
        "small": pa.array(rng.integers(0, 3, rows), pa.int8()),
    })


@pytest.mark.parametrize("budget", [1 << 30, 4096, 600])
def test_partitioned_sort_equals_one_stable_sort(tmp_path, budget):
    keys = random_keys(3000)
    shards = shards_of(keys, [1000, 1, 0, 1499, 500])
    path = tmp_path / "permutation.npy"

    order = sort_by_partitions(lambda i: shards[i], len(shards), keys.num_rows, str(path),
                               budget_bytes=budget)

    expected = key_order(keys)
    assert np.array_equal(np.load(path), expected.permutation)
    assert order.duplicate_rows == expected.duplicate_rows > 0
    assert order.example == expected.example


def test_partitioned_sort_unique_keys(tmp_path):
    keys = pa.table({"id": np.random.default_rng(3).permutation(5000)})
    shards = shards_of(keys, [2500, 2500])
    path = tmp_path / "permutation.npy"
    order = sort_by_partitions(lambda i: shards[i], 2, 5000, str(path), budget_bytes=2048)
    assert order.duplicate_rows == 0
    assert keys.column("id").to_numpy()[np.load(path)].tolist() == list(range(5000))


def test_key_text_api_form():
    moment = datetime(2013, 1, 1, 11, 0, tzinfo=UTC)
    assert key_text({"dest": "ATL", "time_hour": moment}) == "ATL,2013-01-01T11:00:00Z"
    assert key_text({"name": "a,b", "day": date(2013, 1, 2), "n": 7}) == "a%2Cb,2013-01-02,7"
