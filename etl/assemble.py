"""Assembly of one output column from all shard files, streamed a chunk of rows at a time.

Each output column is an independent task, so the pool's workers write columns in parallel.
A task holds paths and counts only; the worker maps the shard files (uncompressed Arrow IPC)
itself. Two passes over the shards write a column:

1. plan: count nulls and UTF-8 bytes and, for a string column, collect the distinct values,
   which decides dictionary encoding and gives the sorted dictionary;
2. write: produce the rows in key order, CHUNK_ROWS at a time, encode each chunk and hand it
   to a ColumnWriter, which puts it at its place in the file.

Memory: a chunk of rows plus one shard's mapped pages when the rows are already in key order
(shards are read one after another). When they are not, each chunk is gathered from every
shard at once through the sort permutation (a .npy file read a chunk at a time), so all shards
of the column stay mapped. Those pages are file-backed and the kernel drops them under memory
pressure, but they count in the process's resident size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from etl.encode import (
    DICTIONARY_MAX_VALUES,
    DICTIONARY_MIN_REPEAT,
    byte_order,
    code_dtype,
    encode_column,
    string_buffers,
)
from etl.parse import RECORD_COLUMN
from etl.schema import ARROW_TYPES
from etl.shardwork import peak_rss_kib
from rodata import format as fmt

# Rows encoded and written at once: 64Ki rows keep a chunk to a few MiB for all but very long
# strings, and the per-chunk Python overhead small.
CHUNK_ROWS = 1 << 16


@dataclass(frozen=True)
class ColumnTask:
    """One output column's sources (shard files) and destination (column file)."""

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


class ShardColumn:
    """One column of every shard file, in source order, as the Arrow chunks the files hold.

    The synthetic row id is not stored: it is each shard's record number column plus the
    records of the shards before it, plus one.
    """

    def __init__(self, task: ColumnTask) -> None:
        self.shard_files = task.shard_files
        self.name = RECORD_COLUMN if task.is_row_id else task.name
        self.arrow_type = pa.int64() if task.is_row_id else ARROW_TYPES[task.type]
        bases = np.concatenate([[0], np.cumsum(task.shard_records, dtype=np.int64)])
        self.row_id_base = (bases[:-1] + 1).tolist() if task.is_row_id else None

    def shard(self, index: int, *, row_ids: bool = True) -> list[pa.Array]:
        """Return the column's chunks in shard `index`, zero-copy over the mapped file.

        For the row id column, `row_ids=False` returns the stored record numbers instead.
        """
        with pa.memory_map(self.shard_files[index], "r") as source:
            table = pa.ipc.open_file(source).read_all()
        chunks = table.column(self.name).chunks
        if self.row_id_base is not None and row_ids:
            base = self.row_id_base[index]
            chunks = [pa.array(chunk.to_numpy() + base) for chunk in chunks]
        return [chunk for chunk in chunks if len(chunk)]

    def shards(self) -> Iterator[list[pa.Array]]:
        """Yield each shard's chunks in order; a shard's mapping is dropped before the next."""
        for index in range(len(self.shard_files)):
            yield self.shard(index)

    def in_order(self) -> Iterator[pa.Array]:
        """Yield the column's values in source order, at most CHUNK_ROWS at a time."""
        for chunks in self.shards():
            for chunk in chunks:
                for start in range(0, len(chunk), CHUNK_ROWS):
                    yield _widened(chunk.slice(start, CHUNK_ROWS))

    def permuted(self, permutation_path: str) -> Iterator[pa.Array]:
        """Yield the values in the order of the permutation file, CHUNK_ROWS at a time."""
        # Every shard stays mapped, and row ids stay record numbers until gathered, so that
        # nothing here is a copy of the column.
        pieces, piece_bases = [], []
        for index in range(len(self.shard_files)):
            chunks = self.shard(index, row_ids=False)
            pieces += chunks
            if self.row_id_base is not None:
                piece_bases += [self.row_id_base[index]] * len(chunks)
        if not pieces:
            return
        starts = np.cumsum([0] + [len(piece) for piece in pieces[:-1]], dtype=np.int64)
        bases = np.asarray(piece_bases, dtype=np.int64)
        # The permutation is read, not mapped, a chunk at a time: its pages would otherwise
        # stay resident in this process until the column is done.
        with open(permutation_path, "rb") as handle:
            np.lib.format.read_magic(handle)
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle)  # etl.sortkey writes 1.0
            for start in range(0, shape[0], CHUNK_ROWS):
                indices = np.fromfile(handle, dtype=dtype, count=min(CHUNK_ROWS, shape[0] - start))
                values = gather(pieces, starts, indices)
                if len(bases):
                    piece_of = np.searchsorted(starts, indices, side="right") - 1
                    values = pa.array(values.to_numpy() + bases[piece_of])
                yield values

    def values(self, permutation_path: str | None) -> Iterator[pa.Array]:
        """Yield the values in output (key) order, at most CHUNK_ROWS at a time."""
        if permutation_path is None:
            return self.in_order()
        return self.permuted(permutation_path)


def _widened(values: pa.Array) -> pa.Array:
    """Return strings with 64-bit offsets, so that concatenated chunks cannot overflow them."""
    return values.cast(pa.large_string()) if pa.types.is_string(values.type) else values


def gather(pieces: list[pa.Array], starts: np.ndarray, indices: np.ndarray) -> pa.Array:
    """Return the rows at global `indices` of the concatenation of `pieces`, in that order.

    The pieces are never concatenated: rows are taken piece by piece, grouped by a stable
    argsort, and put back in the requested order with one more take over the small result.
    """
    piece_of = np.searchsorted(starts, indices, side="right") - 1
    order = np.argsort(piece_of, kind="stable")
    grouped_pieces = piece_of[order]
    bounds = np.flatnonzero(np.diff(grouped_pieces)) + 1
    parts = []
    for begin, end in zip(np.concatenate([[0], bounds]), np.concatenate([bounds, [len(order)]])):
        piece = int(grouped_pieces[begin])
        local = indices[order[begin:end]] - starts[piece]
        parts.append(pieces[piece].take(pa.array(local)))
    grouped = pa.concat_arrays([_widened(part) for part in parts])
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    return grouped.take(pa.array(back))


@dataclass(frozen=True)
class ColumnPlan:
    """The sizes and encoding of a column, known before its first row is written."""

    length: int
    null_count: int
    data_bytes: int                       # UTF-8 bytes of a plain string column
    dictionary: pa.Array | None           # sorted distinct values when dictionary-encoded


def plan_column(source: ShardColumn, storage_type: str, encoding: str) -> ColumnPlan:
    """Read the column once, shard by shard, for its sizes and its encoding."""
    length = null_count = data_bytes = 0
    distinct: list[pa.Array] = []
    compacted = 0  # distinct values after the last merge of `distinct`
    want_dictionary = storage_type == "string" and encoding != "plain"
    for chunks in source.shards():
        for chunk in chunks:
            length += len(chunk)
            null_count += chunk.null_count
            if storage_type != "string":
                continue
            chunk = _widened(chunk)
            # Null rows store an empty string, so only valid rows count towards the bytes.
            data_bytes += int(pc.sum(pc.binary_length(chunk)).as_py() or 0)
            if not want_dictionary:
                continue
            distinct.append(pc.drop_null(pc.unique(chunk)))
            # Merge the per-chunk values now and then, so that a column with too many
            # distinct values for a dictionary is seen early and stops being collected.
            if sum(map(len, distinct)) > 4 * DICTIONARY_MAX_VALUES + 2 * compacted:
                distinct = [pc.unique(pa.concat_arrays(distinct))]
                compacted = len(distinct[0])
                if encoding == "auto" and compacted > DICTIONARY_MAX_VALUES:
                    want_dictionary, distinct = False, []

    dictionary = None
    if want_dictionary and length:
        values = pc.unique(pa.concat_arrays(distinct)) if distinct else pa.array([], pa.large_string())
        if encoding == "dictionary" or (
            len(values) <= DICTIONARY_MAX_VALUES and len(values) * DICTIONARY_MIN_REPEAT <= length
        ):
            dictionary = values.take(pa.array(byte_order(values)))
    return ColumnPlan(length, null_count, data_bytes, dictionary)


def _dictionary_rows(chunk: pa.Array, dictionary: pa.Array, codes_dtype: np.dtype,
                     dictionary_buffers: tuple[np.ndarray, np.ndarray]) -> fmt.ColumnData:
    """Encode a chunk of strings as codes into the column's sorted dictionary."""
    codes = pc.fill_null(pc.index_in(chunk, value_set=dictionary), 0)
    valid = chunk.is_valid().to_numpy(zero_copy_only=False) if chunk.null_count else None
    return fmt.ColumnData.dictionary(codes.to_numpy().astype(codes_dtype), *dictionary_buffers,
                                     valid)


def write_output_column(task: ColumnTask) -> tuple[fmt.ColumnSchema, int, dict, int]:
    """Plan, reorder, encode and write one column, a chunk of rows at a time.

    Returns the manifest entry, the row count, the file's size and digest, and this process's
    peak RSS in KiB.
    """
    source = ShardColumn(task)
    plan = plan_column(source, task.type, task.encoding)
    if plan.dictionary is not None:
        dictionary_buffers = string_buffers(plan.dictionary)
        codes = code_dtype(len(plan.dictionary))
        writer = fmt.ColumnWriter(task.output, task.type, "dictionary", plan.length,
                                  plan.null_count, dictionary=dictionary_buffers,
                                  code_dtype=codes)
    else:
        writer = fmt.ColumnWriter(task.output, task.type, "plain", plan.length, plan.null_count,
                                  data_bytes=plan.data_bytes)

    for chunk in source.values(task.permutation):
        if plan.dictionary is not None:
            rows = _dictionary_rows(chunk, plan.dictionary, codes, dictionary_buffers)
        else:
            rows = encode_column(chunk, task.type, encoding="plain")
        writer.append(rows)
    digest = writer.close()

    entry = fmt.ColumnSchema(task.name, task.type, task.nullable, writer.encoding, task.relative,
                             plan.null_count)
    digest_entry = {"size": digest.size, "sha256": digest.sha256}
    return entry, plan.length, digest_entry, peak_rss_kib()


def shard_key_table(key_tasks: list[ColumnTask], index: int) -> pa.Table:
    """Return the key columns of shard `index` as one table."""
    columns = {}
    for task in key_tasks:
        source = ShardColumn(task)
        columns[task.name] = _concat([_widened(c) for c in source.shard(index)], source.arrow_type)
    return pa.table(columns)


def shard_keys(key_tasks: list[ColumnTask]) -> Iterator[pa.Table]:
    """Yield the key columns of each shard in turn."""
    for index in range(len(key_tasks[0].shard_files)):
        yield shard_key_table(key_tasks, index)


def _concat(chunks: list[pa.Array], arrow_type: pa.DataType) -> pa.Array:
    if not chunks:
        return pa.array([], pa.large_string() if pa.types.is_string(arrow_type) else arrow_type)
    return pa.concat_arrays(chunks)
