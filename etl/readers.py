"""Source readers: one class per source format, chosen by the spec's `format`.

The engine talks to a reader through four steps, so adding a format means one new class here
and its name in READERS (plus the spec's accepted `format` values):

1. `read_header(path)` returns the column names and where the data starts.
2. `plan_shards(files, ...)` cuts the sources into `Shard` byte ranges that a worker can read
   on its own.
3. `read_plan(columns)` returns a small picklable object that a worker uses to read one shard
   into a typed Arrow table (`ShardTable`) with rejects.
4. `infer_task(shard, ...)` returns a picklable task that infers column types from one shard.

NOTE: only CSV exists. For Parquet a shard would be a range of row groups (the footer lists their
byte ranges), typed by a cast of each column. For NDJSON the CSV cut rule applies without quote
parity, because a JSON line ends at its LF.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from etl.parse import CsvReadPlan
from etl.schema import Column
from etl.sharding import Header, Shard, plan_shards, read_header
from etl.shardwork import InferTask
from etl.spec import CsvOptions, DatasetSpec


class CsvReader:
    """Reader of RFC 4180 CSV files with a header line."""

    format = "csv"

    def __init__(self, options: CsvOptions) -> None:
        self.options = options

    def read_header(self, path: str) -> Header:
        """Return the header record of `path`."""
        return read_header(path, delimiter=self.options.delimiter, quote=self.options.quote)

    def plan_shards(
        self, files: list[tuple[str, Header]], *, shard_bytes: int,
        map_function: Callable[..., Iterable] = map,
    ) -> list[Shard]:
        """Return quote-aware shards of about `shard_bytes` over all `files`."""
        return plan_shards(files, shard_bytes=shard_bytes, quote=self.options.quote,
                           delimiter=self.options.delimiter, map_function=map_function)

    def read_plan(self, columns: list[Column]) -> CsvReadPlan:
        """Return what a worker needs to parse and type shards of these columns."""
        return CsvReadPlan.build(
            columns, delimiter=self.options.delimiter, quote=self.options.quote
        )

    def infer_task(
        self, shard: Shard, names: tuple[str, ...], missing: dict[str, tuple[str, ...]],
        header: Header,
    ) -> InferTask:
        """Return the task that infers column types from one shard."""
        return InferTask(shard, names, missing, self.options.delimiter, self.options.quote,
                         header.trailing_delimiter)


READERS = {"csv": CsvReader}


def reader_for(spec: DatasetSpec) -> CsvReader:
    """Return the reader for the spec's source format."""
    if spec.format == "csv":
        return CsvReader(spec.csv)
    raise ValueError(f"no reader for source format {spec.format!r}; known: {sorted(READERS)}")
