"""Key order: the permutation that sorts rows by the key columns, and the duplicate-key check.

Rows are stored in ascending key order (strings by UTF-8 bytes), so the key columns of a
generation are themselves the sorted index that readers binary-search. The sort is stable: rows
with equal keys keep their source order (file order, then record order). Duplicate keys are an
error unless the spec sets `allow_duplicate_keys: true`; then all the duplicates are kept in that
order, and a lookup by key returns them as one run of adjacent rows, the first in source order
first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

log = logging.getLogger("rodata.etl")


class DuplicateKeyError(ValueError):
    """Two or more rows share a key and the spec does not allow it."""


@dataclass(frozen=True)
class KeyOrder:
    """The sort permutation (None when rows are already in key order) and duplicate count.

    `example` is the first duplicated key in key order, for error messages.
    """

    permutation: np.ndarray | None
    duplicate_rows: int
    example: dict | None = None


def key_order(keys: pa.Table) -> KeyOrder:
    """Return the stable permutation that sorts `keys` ascending, and count duplicate rows."""
    if keys.num_rows == 0:
        return KeyOrder(None, 0)
    permutation: np.ndarray | None
    if keys.num_columns == 1 and _is_sorted(keys.column(0)):
        values = keys.column(0).to_numpy()
        duplicates = int(np.count_nonzero(values[1:] == values[:-1]))
        return KeyOrder(None, duplicates, first_duplicate(keys) if duplicates else None)
    else:
        indices = pc.sort_indices(keys, sort_keys=[(name, "ascending") for name in keys.column_names])
        permutation = indices.to_numpy().astype(np.int64, copy=False)
        if np.array_equal(permutation, np.arange(len(permutation))):
            permutation = None
    ordered = keys if permutation is None else keys.take(pa.array(permutation))
    duplicates = _count_duplicates(ordered)
    return KeyOrder(permutation, duplicates, first_duplicate(ordered) if duplicates else None)


def key_order_if_sorted(shard_keys: Iterable[pa.Table]) -> KeyOrder | None:
    """Return the KeyOrder of keys that arrive shard by shard, if they are already in order.

    Returns None as soon as a shard is out of order or starts below the end of the shard
    before it, and the caller then sorts. Only one shard's keys are in memory at a time, so
    checking input already in key order (a row id, or a file sorted by its key) takes memory
    that does not grow with the row count.
    """
    duplicates = 0
    example = None
    previous = None  # the last key row of the shard before
    for keys in shard_keys:
        if keys.num_rows == 0:
            continue
        # The seam between two shards is checked by the same rule as the rows inside one,
        # on a two-row table, so that floats, NaN and strings compare as Arrow sorts them.
        if previous is not None:
            seam = key_order(pa.concat_tables([previous, keys.slice(0, 1)]))
            if seam.permutation is not None:
                return None
            duplicates += seam.duplicate_rows
            example = example or seam.example
        order = key_order(keys)
        if order.permutation is not None:
            return None
        duplicates += order.duplicate_rows
        example = example or order.example
        previous = keys.slice(keys.num_rows - 1, 1)
    return KeyOrder(None, duplicates, example)


def key_text(key: dict) -> str:
    """Return a key in the API's form: components joined by ",", timestamps in UTC with Z."""
    parts = []
    for value in key.values():
        if isinstance(value, datetime):
            text = value.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"
        elif isinstance(value, date):
            text = value.isoformat()
        else:
            text = str(value)
        parts.append(text.replace(",", "%2C"))
    return ",".join(parts)


def _is_sorted(column: pa.ChunkedArray) -> bool:
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return False  # checked by the general path, which compares UTF-8 bytes
    values = column.to_numpy()
    return bool(np.all(values[1:] >= values[:-1]))


def _count_duplicates(ordered: pa.Table) -> int:
    # A row is a duplicate when every key column equals the row before it.
    if ordered.num_rows < 2:
        return 0
    same = None
    for name in ordered.column_names:
        column = ordered.column(name).combine_chunks()
        equal = pc.equal(column.slice(1), column.slice(0, len(column) - 1))
        equal = pc.fill_null(equal, False)
        same = equal if same is None else pc.and_(same, equal)
    return int(pc.sum(same.cast(pa.int64())).as_py() or 0)


def first_duplicate(ordered: pa.Table) -> dict:
    """Return the key values of the first duplicated key in sorted `ordered` (for messages)."""
    same = None
    for name in ordered.column_names:
        column = ordered.column(name).combine_chunks()
        equal = pc.fill_null(pc.equal(column.slice(1), column.slice(0, len(column) - 1)), False)
        same = equal if same is None else pc.and_(same, equal)
    position = int(np.flatnonzero(same.to_numpy(zero_copy_only=False))[0])
    return {name: ordered.column(name)[position].as_py() for name in ordered.column_names}


# Key bytes (plus bookkeeping) one partition of an out-of-order sort may hold in memory.
SORT_BUDGET_BYTES = 128 << 20
# Rows sampled to choose the partition bounds.
SAMPLE_ROWS = 1 << 16
# Memory per row of a partition being sorted, as a multiple of its key bytes plus a constant.
# The collected keys, their sorted copy and the duplicate check's comparison make about three
# copies of the key, and the row numbers, sort indices and permutation about 40 bytes more.
# Without this estimate a run peaked at about 390 MiB for 2.5M rows of an 18-byte key.
_KEY_COPIES = 3
_ROW_OVERHEAD_BYTES = 48


def sort_by_partitions(
    load_shard: Callable[[int], pa.Table], shard_count: int, row_count: int,
    permutation_path: str, *, budget_bytes: int | None = None,
) -> KeyOrder:
    """Sort rows that are not in key order, a key partition at a time, and count duplicates.

    `load_shard(i)` returns the key columns of shard i. Bounds chosen from a sample cut the
    rows by key value into partitions small enough for `budget_bytes`. Each partition is
    collected from every shard, sorted in memory and appended to the permutation file (a .npy
    of int64 row numbers). Equal keys always fall in the same partition and rows
    are collected in source order, so the result equals one stable sort of all rows. The
    returned KeyOrder has no permutation array: the permutation is the file.
    """
    budget = SORT_BUDGET_BYTES if budget_bytes is None else budget_bytes
    bounds = _partition_bounds(load_shard, shard_count, row_count, budget)
    log.info("sorting %d rows in %d key partition(s)", row_count, len(bounds) + 1)
    duplicates = 0
    example = None
    with open(permutation_path, "wb") as handle:
        np.lib.format.write_array_header_1_0(
            handle, {"descr": "<i8", "fortran_order": False, "shape": (row_count,)}
        )
        for lower, upper in zip([None, *bounds], [*bounds, None]):
            keys, rows = _collect_partition(load_shard, shard_count, lower, upper)
            order = key_order(keys)
            if order.permutation is not None:
                rows = rows[order.permutation]
            handle.write(np.ascontiguousarray(rows, dtype="<i8").tobytes())
            duplicates += order.duplicate_rows
            example = example or order.example
    return KeyOrder(None, duplicates, example)


def _partition_bounds(load_shard, shard_count: int, row_count: int,
                      budget_bytes: int) -> list[pa.Table]:
    """Return the sorted one-row key tables that split the rows into partitions."""
    step = max(1, row_count // SAMPLE_ROWS)
    samples = []
    key_bytes = 0
    first_row = 0
    for index in range(shard_count):
        keys = load_shard(index)
        key_bytes += keys.nbytes
        # Every step-th row of the whole input, whichever shard it falls in.
        positions = np.arange(-first_row % step, keys.num_rows, step)
        samples.append(keys.take(pa.array(positions)))
        first_row += keys.num_rows
    row_bytes = _KEY_COPIES * key_bytes / max(row_count, 1) + _ROW_OVERHEAD_BYTES
    partitions = -(-int(row_count * row_bytes) // budget_bytes)
    if partitions <= 1:
        return []
    sample = pa.concat_tables(samples)
    order = key_order(sample)
    if order.permutation is not None:
        sample = sample.take(pa.array(order.permutation))
    # NOTE: equal keys are never split, so with allow_duplicate_keys one key value on more rows
    # than a partition fits makes its partition exceed the budget.
    bounds: list[pa.Table] = []
    for part in range(1, partitions):
        bound = sample.slice(part * sample.num_rows // partitions, 1)
        # A NaN bound compares false with everything and would not split; equal bounds
        # would make an empty partition.
        if _has_nan(bound) or (bounds and bounds[-1].equals(bound)):
            continue
        bounds.append(bound)
    return bounds


def _has_nan(row: pa.Table) -> bool:
    return any(
        pa.types.is_floating(column.type) and bool(pc.any(pc.is_nan(column)).as_py())
        for column in row.columns
    )


def _collect_partition(load_shard, shard_count: int, lower: pa.Table | None,
                       upper: pa.Table | None) -> tuple[pa.Table, np.ndarray]:
    """Return the keys and source row numbers of rows with lower <= key < upper."""
    tables, rows = [], []
    first_row = 0
    for index in range(shard_count):
        keys = load_shard(index)
        inside = None
        if lower is not None:
            inside = pc.invert(_below(keys, lower))
        if upper is not None:
            below_upper = _below(keys, upper)
            inside = below_upper if inside is None else pc.and_(inside, below_upper)
        if inside is None:
            selected = np.arange(keys.num_rows, dtype=np.int64)
        else:
            selected = np.flatnonzero(inside.to_numpy(zero_copy_only=False))
        tables.append(keys.take(pa.array(selected)))
        rows.append(selected + first_row)
        first_row += keys.num_rows
    return pa.concat_tables(tables), np.concatenate(rows)


def _below(keys: pa.Table, bound: pa.Table) -> pa.ChunkedArray:
    """Return, per row, whether its key sorts before the one-row `bound` (lexicographically)."""
    result = None
    for name in reversed(keys.column_names):
        column, value = keys.column(name), bound.column(name)[0]
        less = pc.fill_null(pc.less(column, value), False)
        if result is None:
            result = less
        else:
            equal = pc.fill_null(pc.equal(column, value), False)
            result = pc.or_(less, pc.and_(equal, result))
    return result
