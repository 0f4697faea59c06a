"""Key order: the permutation that sorts rows by the key columns, and the duplicate-key check.

Rows are stored in ascending key order (strings by UTF-8 bytes), so the key columns of a
generation are themselves the sorted index that readers binary-search. The sort is stable: rows
with equal keys keep their source order (file order, then record order). Duplicate keys are an
error unless the spec sets `allow_duplicate_keys: true`; then all the duplicates are kept in that
order, and a lookup by key returns them as one run of adjacent rows, the first in source order
first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class DuplicateKeyError(ValueError):
    """Two or more rows share a key and the spec does not allow it."""


@dataclass(frozen=True)
class KeyOrder:
    """The sort permutation (None when rows are already in key order) and duplicate count."""

    permutation: np.ndarray | None
    duplicate_rows: int


def key_order(keys: pa.Table) -> KeyOrder:
    """Return the stable permutation that sorts `keys` ascending, and count duplicate rows."""
    if keys.num_rows == 0:
        return KeyOrder(None, 0)
    permutation: np.ndarray | None
    if keys.num_columns == 1 and _is_sorted(keys.column(0)):
        values = keys.column(0).to_numpy()
        return KeyOrder(None, int(np.count_nonzero(values[1:] == values[:-1])))
    else:
        indices = pc.sort_indices(keys, sort_keys=[(name, "ascending") for name in keys.column_names])
        permutation = indices.to_numpy().astype(np.int64, copy=False)
        if np.array_equal(permutation, np.arange(len(permutation))):
            permutation = None
    ordered = keys if permutation is None else keys.take(pa.array(permutation))
    return KeyOrder(permutation, _count_duplicates(ordered))


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
