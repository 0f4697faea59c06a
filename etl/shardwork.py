"""The work a pool worker does: read one shard's byte range, type it, write it to staging.

Workers receive a path and a byte range (never row data) and write their typed rows as an
uncompressed Arrow IPC file in the staging area, so the parent maps them back with no copy.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
from dataclasses import dataclass, field

import pyarrow as pa

from etl.parse import CsvReadPlan, Reject, infer_shard
from etl.sharding import Shard, first_line_number

# Rejects carried back per shard; the count stays exact beyond it.
MAX_REJECTS_LISTED = 1000


@dataclass(frozen=True)
class ShardTask:
    """One shard's work order: the byte range, the read plan and the output file."""

    shard: Shard
    plan: CsvReadPlan
    trailing: bool
    output: str


@dataclass
class ShardOutcome:
    """A finished shard: counts, the first rejects and the output file."""

    ordinal: int
    records: int
    rows: int
    nbytes: int
    output: str
    reject_count: int = 0
    rejects: list[Reject] = field(default_factory=list)
    peak_rss_kib: int = 0
    source: str = ""      # the source file and the shard's first byte, to locate rows in errors
    start: int = 0


def peak_rss_kib() -> int:
    """Return this process's peak resident set size in KiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def init_worker() -> None:
    """Make a pool worker die with its parent and leave SIGTERM handling to the parent."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: a killed parent leaves workers to finish their current shard


def read_range(path: str, start: int, end: int) -> pa.Buffer:
    """Return bytes [start, end) of `path` as a buffer over a memory map (no copy)."""
    with pa.memory_map(path, "r") as source:
        source.seek(start)
        return source.read_buffer(end - start)


def run_shard(task: ShardTask) -> ShardOutcome:
    """Parse, type and store one shard; return its counts and rejects."""
    shard = task.shard
    data = read_range(shard.path, shard.start, shard.end)
    result = task.plan.read(
        data, trailing=task.trailing, path=shard.path,
        line_of=lambda: first_line_number(shard.path, shard.start),
    )
    del data

    temporary = task.output + ".part"
    with pa.OSFile(temporary, "wb") as sink, pa.ipc.new_file(sink, result.table.schema) as writer:
        writer.write_table(result.table)
    os.replace(temporary, task.output)

    return ShardOutcome(
        ordinal=shard.ordinal,
        records=result.records,
        rows=result.table.num_rows,
        nbytes=shard.end - shard.start,
        output=task.output,
        reject_count=len(result.rejects),
        rejects=result.rejects[:MAX_REJECTS_LISTED],
        peak_rss_kib=peak_rss_kib(),
        source=shard.path,
        start=shard.start,
    )


@dataclass(frozen=True)
class InferTask:
    """One shard to infer column types from."""

    shard: Shard
    names: tuple[str, ...]
    missing: dict[str, tuple[str, ...]]
    delimiter: str
    quote: str
    trailing: bool


def run_infer(task: InferTask) -> dict[str, tuple[str, bool]]:
    """Return the inferred type and missing-value flag of every column in one shard."""
    data = read_range(task.shard.path, task.shard.start, task.shard.end)
    return infer_shard(
        data, list(task.names), task.missing,
        delimiter=task.delimiter, quote=task.quote, trailing=task.trailing,
    )
