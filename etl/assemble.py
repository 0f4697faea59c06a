"""Assembly of one output column from all shard files: concatenate, reorder, encode, write.

Each output column is an independent task, so the pool's workers write columns in parallel.
A task holds paths and counts only; the worker maps the shard files itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from etl.encode import encode_column
from etl.parse import RECORD_COLUMN
from etl.schema import ARROW_TYPES
from etl.shardwork import peak_rss_kib
from rodata import format as fmt


@dataclass(frozen=True)
class ColumnTask:
    """Where one output column comes from and where it goes."""

    name: str
    type: str
    nullable: bool
    encoding: str
    shard_files: tuple[str, ...]
    shard_records: tuple[int, ...]     # records per shard, for the synthetic row id
    is_row_id: bool
    permutation: str | None            # .npy file with the sort permutation, None if in order
    output: str                        # column file path
    relative: str                      # its path relative to the generation directory


def read_column(shard_files, name: str, arrow_type: pa.DataType) -> pa.Array:
    """Return column `name` of all shard files, concatenated in shard order."""
    # Each call maps the shard files again and drops them afterwards, so that only one column's
    # pages stay mapped at a time.
    chunks = []
    for path in shard_files:
        with pa.memory_map(path, "r") as source:
            table = pa.ipc.open_file(source).read_all()
            chunks.extend(table.column(name).chunks)
    if not chunks:
        return pa.array([], arrow_type)
    if pa.types.is_string(arrow_type):
        chunks = [chunk.cast(pa.large_string()) for chunk in chunks]
    return pa.chunked_array(chunks).combine_chunks()


def row_ids(shard_files, shard_records) -> pa.Array:
    """Return the synthetic row id (1-based record position in source order) of every row."""
    parts = []
    base = 0
    for path, records in zip(shard_files, shard_records):
        local = read_column([path], RECORD_COLUMN, pa.int64()).to_numpy()
        parts.append(local + (base + 1))
        base += records
    return pa.array(np.concatenate(parts) if parts else np.zeros(0, np.int64))


def load_values(task: ColumnTask) -> pa.Array:
    """Return the column's values in source order."""
    if task.is_row_id:
        return row_ids(task.shard_files, task.shard_records)
    return read_column(task.shard_files, task.name, ARROW_TYPES[task.type])


def write_output_column(task: ColumnTask) -> tuple[fmt.ColumnSchema, int, dict, int]:
    """Build, reorder, encode and write one column.

    Returns the manifest entry, the row count, the file's size and digest, and this process's
    peak RSS in KiB.
    """
    values = load_values(task)
    if task.permutation is not None:
        values = values.take(pa.array(np.load(task.permutation, mmap_mode="r")))
    data = encode_column(values, task.type, encoding=task.encoding)
    del values
    digest = fmt.write_column(task.output, data)
    null_count = 0 if data.valid is None else int(data.length - data.valid.sum())
    entry = fmt.ColumnSchema(task.name, task.type, task.nullable, data.encoding, task.relative,
                             null_count)
    digest_entry = {"size": digest.size, "sha256": digest.sha256}
    return entry, data.length, digest_entry, peak_rss_kib()
