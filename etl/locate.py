"""Row locations for error messages: the source file and line of the rows that share a key.

Only a failing run needs this (a duplicate key that the spec does not allow). It therefore
re-reads the shard files and sources, because carrying line numbers through parsing would slow
every run.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from etl.assemble import ColumnTask, shard_key_table
from etl.parse import RECORD_COLUMN, csv_records
from etl.sharding import first_line_number
from etl.shardwork import ShardOutcome


def key_locations(
    key_tasks: list[ColumnTask], outcomes: Sequence[ShardOutcome], key: dict, *,
    delimiter: str, quote: str, limit: int = 2,
) -> list[tuple[str, int]]:
    """Return (file, line) of the first `limit` rows whose key equals `key`, in source order."""
    found: list[tuple[str, int]] = []
    for index, outcome in enumerate(outcomes):
        if not outcome.source:
            continue  # a shard output recorded before outcomes named their source
        keys = shard_key_table(key_tasks, index)
        same = None
        for name, value in key.items():
            column = keys.column(name)
            equal = pc.fill_null(pc.equal(column, pa.scalar(value, type=column.type)), False)
            same = equal if same is None else pc.and_(same, equal)
        if same is None:
            continue
        positions = np.flatnonzero(same.to_numpy(zero_copy_only=False))
        if not len(positions):
            continue
        records = _record_numbers(outcome.output)[positions[: limit - len(found)]]
        for record in records:
            line = record_line(outcome.source, outcome.start, int(record),
                               delimiter=delimiter, quote=quote)
            found.append((outcome.source, line))
        if len(found) >= limit:
            break
    return found


def _record_numbers(shard_file: str) -> np.ndarray:
    """Return the record number, within its shard, of every row a shard file kept."""
    with pa.memory_map(shard_file, "r") as source:
        column = pa.ipc.open_file(source).read_all().column(RECORD_COLUMN)
    return column.to_numpy()


def record_line(path: str, start: int, record: int, *, delimiter: str, quote: str) -> int:
    """Return the 1-based file line where record `record` of the shard at byte `start` begins.

    Records are counted as the shard parser counts them: blank lines are not records, and a
    quoted field may span several lines.
    """
    first_line = first_line_number(path, start)
    with open(path, "rb") as raw:
        raw.seek(start)
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")
        records = csv_records(text, delimiter=delimiter, quote=quote, first_line=first_line)
        for index, (line, _fields) in enumerate(records):
            if index == record:
                return line
    raise ValueError(f"{path}: record {record} not found in the shard that starts at byte {start}")


def describe(locations: list[tuple[str, int]]) -> str:
    """Return locations as text: 'a.csv line 2 and line 4', or 'a.csv line 2 and b.csv line 1'."""
    parts = []
    previous = None
    for path, line in locations:
        parts.append(f"line {line}" if path == previous else f"{path} line {line}")
        previous = path
    return " and ".join(parts)
