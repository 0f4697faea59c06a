"""Per-shard parsing and typing of CSV records with pyarrow's CSV reader.

Fast path: one `pyarrow.csv.read_csv` call over the shard's bytes with the final types. The CSV
reader converts the "direct" columns itself: non-nullable typed columns, and nullable typed
columns whose missing markers equal the most common marker set among them. String columns and
the other typed columns are read as text and converted here, so each column gets exactly its
own markers.

Slow path, only for a shard where the fast path fails: Python's csv module splits the shard into
records with their line numbers, bad records are rejected (wrong field count, invalid UTF-8, a
value the declared type cannot hold, a missing value in a non-nullable column), and the good
records are written back as CSV and read by the fast path. The good rows therefore get exactly
the values the fast path gives them, whichever shard they fall in.

Invalid UTF-8 policy: a record with bytes that are not valid UTF-8 is rejected (reason names
the column); no replacement characters are ever stored.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from etl.schema import ARROW_TYPES, Column

BLANK_PATTERN = re.compile(rb"[^\r\n]")
RECORD_COLUMN = "__record"
TRAILING_COLUMN = "__trailing"
MAX_REJECT_TEXT = 200


class ShardReadError(ValueError):
    """The fast path could not read a shard; the slow path finds the bad records."""


@dataclass(frozen=True)
class Reject:
    """One rejected record: where it is and why."""

    file: str
    line: int
    column: str
    reason: str


@dataclass
class ShardTable:
    """Typed rows of one shard plus each row's record index inside the shard (from 0)."""

    table: pa.Table
    records: int
    rejects: list[Reject] = field(default_factory=list)


@dataclass(frozen=True)
class CsvReadPlan:
    """How to read shards of one run: the dialect and which columns the CSV reader converts."""

    names: tuple[str, ...]
    columns: tuple[Column, ...]
    delimiter: str
    quote: str
    direct_missing: tuple[str, ...]
    direct: frozenset[str]

    @classmethod
    def build(cls, columns: list[Column], *, delimiter: str, quote: str) -> CsvReadPlan:
        # The CSV reader cannot read timestamps in a named time zone, so convert_text does.
        # Every other typed column may be converted by the reader itself.
        typed = [c for c in columns if c.type != "string" and not c.timezone]
        # A non-nullable column rejects a missing marker whichever set applies, so only the
        # nullable columns decide the shared marker set, and non-nullable ones are all direct.
        marker_sets = Counter(tuple(sorted(set(c.missing))) for c in typed if c.nullable)
        direct_missing: tuple[str, ...] = ()
        if marker_sets:
            direct_missing = max(marker_sets.items(), key=lambda item: (item[1], item[0]))[0]
        direct = frozenset(
            c.name for c in typed
            if not c.nullable or tuple(sorted(set(c.missing))) == direct_missing
        )
        return cls(
            names=tuple(c.name for c in columns),
            columns=tuple(columns),
            delimiter=delimiter,
            quote=quote,
            direct_missing=direct_missing,
            direct=direct,
        )

    def read(self, data, *, trailing: bool, path: str, line_of) -> ShardTable:
        """Return the typed rows of one shard's bytes (see read_shard)."""
        return read_shard(data, self, trailing=trailing, path=path, line_of=line_of)

    def reader_types(self) -> dict[str, pa.DataType]:
        return {
            c.name: (c.arrow_type if c.name in self.direct else pa.string()) for c in self.columns
        }


def read_fast(data: bytes, plan: CsvReadPlan, *, trailing: bool) -> pa.Table:
    """Parse and type `data` (whole records, no header); raise ShardReadError on any bad value."""
    names = list(plan.names) + ([TRAILING_COLUMN] if trailing else [])
    if is_blank(data):
        return _empty_table(plan)
    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(
                column_names=names,
                use_threads=False,
                block_size=min(len(data) + 1, (1 << 31) - 1),
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=plan.delimiter,
                quote_char=plan.quote,
                double_quote=True,
                newlines_in_values=True,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=plan.reader_types(),
                null_values=list(plan.direct_missing),
                strings_can_be_null=False,
                include_columns=list(plan.names),
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise ShardReadError(str(error)) from error

    arrays = []
    for column in plan.columns:
        values = table.column(column.name).combine_chunks()
        if column.name not in plan.direct:
            values = convert_text(values, column)
        if not column.nullable and values.null_count:
            raise ShardReadError(f"column {column.name!r} has missing values")
        arrays.append(values)
    return pa.Table.from_arrays(arrays, names=list(plan.names))


def is_blank(data) -> bool:
    """Return True when `data` (bytes or an Arrow buffer) holds only CR and LF bytes."""
    return BLANK_PATTERN.search(memoryview(data)) is None


def convert_text(values: pa.Array, column: Column) -> pa.Array:
    """Turn text values into `column`'s type, with its own missing markers as nulls."""
    if column.missing:
        is_missing = pc.is_in(values, value_set=pa.array(list(column.missing), pa.string()))
        values = pc.if_else(is_missing, pa.scalar(None, pa.string()), values)
    if column.type == "string":
        return values
    try:
        if column.timezone:
            return local_to_utc(values, column.timezone)
        return pc.cast(values, ARROW_TYPES[column.type])
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise ShardReadError(f"column {column.name!r}: {error}") from error


def local_to_utc(values: pa.Array, timezone: str) -> pa.Array:
    """Read text timestamps without a zone offset as local time in `timezone`; return UTC.

    A local time that a daylight saving change skips or repeats raises ArrowInvalid, because
    no single instant matches it.
    """
    local = pc.cast(values, pa.timestamp("us"))
    zoned = pc.assume_timezone(local, timezone=timezone, ambiguous="raise", nonexistent="raise")
    return zoned.cast(ARROW_TYPES["timestamp"])


def _empty_table(plan: CsvReadPlan) -> pa.Table:
    return pa.Table.from_arrays(
        [pa.array([], c.arrow_type) for c in plan.columns], names=list(plan.names)
    )


def read_shard(
    data: bytes, plan: CsvReadPlan, *, trailing: bool, path: str, first_line: int | None = None,
    line_of=None,
) -> ShardTable:
    """Return the typed rows of one shard, using the slow path when the fast path fails.

    `line_of()` returns the file line number of the shard's first byte. Only the slow path calls
    it, because it counts the newlines before the shard.
    """
    try:
        table = read_fast(data, plan, trailing=trailing)
    except ShardReadError:
        first = first_line if first_line is not None else line_of()
        return read_slow(data, plan, trailing=trailing, path=path, first_line=first)
    records = table.num_rows
    table = table.append_column(RECORD_COLUMN, pa.array(np.arange(records, dtype=np.int64)))
    return ShardTable(table, records)


def csv_records(text: Iterable[str], *, delimiter: str, quote: str,
                first_line: int) -> Iterator[tuple[int, list[str]]]:
    """Yield (line, fields) for each record of `text`, `line` being the file line it starts on.

    `first_line` is the file line of the text's first character. Blank lines are not records,
    and a quoted field may span several lines.
    """
    reader = csv.reader(text, delimiter=delimiter, quotechar=quote, doublequote=True,
                        strict=False)
    previous_line = 0
    for fields in reader:
        line = first_line + previous_line
        previous_line = reader.line_num
        if fields:
            yield line, fields


def read_slow(
    data: bytes, plan: CsvReadPlan, *, trailing: bool, path: str, first_line: int
) -> ShardTable:
    """Split `data` into records, reject the bad ones and type the good ones like read_fast."""
    text = bytes(data).decode("utf-8", errors="surrogateescape")
    records = csv_records(io.StringIO(text, newline=""), delimiter=plan.delimiter,
                          quote=plan.quote, first_line=first_line)
    expected = len(plan.names) + (1 if trailing else 0)
    rejects: list[Reject] = []
    good: list[list[str]] = []
    good_index: list[int] = []
    good_line: list[int] = []
    record_count = 0
    for index, (line, fields) in enumerate(records):
        record_count = index + 1
        if len(fields) != expected or (trailing and fields[-1] != ""):
            rejects.append(Reject(path, line, "", (
                f"expected {len(plan.names)} fields"
                f"{' and a trailing delimiter' if trailing else ''}, found {len(fields)}"
            )))
            continue
        if trailing:
            fields = fields[:-1]
        bad_column = next((n for n, v in zip(plan.names, fields) if _has_surrogate(v)), None)
        if bad_column is not None:
            rejects.append(Reject(path, line, bad_column, "invalid UTF-8 byte sequence"))
            continue
        good.append(fields)
        good_index.append(index)
        good_line.append(line)

    # Find the values that the column's conversion rejects, column by column.
    bad_rows: dict[int, Reject] = {}
    for position, column in enumerate(plan.columns):
        values = [fields[position] for fields in good]
        for row, reason in _bad_values(values, column, plan):
            if row not in bad_rows:
                bad_rows[row] = Reject(path, good_line[row], column.name, reason)
    rejects.extend(bad_rows.values())
    rejects.sort(key=lambda r: r.line)

    kept = [row for row in range(len(good)) if row not in bad_rows]
    buffer = io.StringIO()
    writer = csv.writer(
        buffer, delimiter=plan.delimiter, quotechar=plan.quote, lineterminator="\n",
        quoting=csv.QUOTE_MINIMAL,
    )
    for row in kept:
        writer.writerow(good[row])
    try:
        table = read_fast(buffer.getvalue().encode("utf-8"), plan, trailing=False)
    except ShardReadError as error:
        # The per-value checks below mirror the reader; a disagreement is a bug, not bad data.
        raise RuntimeError(f"{path}: rows passed the value checks but failed to parse: {error}")
    indexes = pa.array(np.asarray([good_index[row] for row in kept], dtype=np.int64))
    return ShardTable(table.append_column(RECORD_COLUMN, indexes), record_count, rejects)


def _has_surrogate(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _bad_values(values: list[str], column: Column, plan: CsvReadPlan) -> list[tuple[int, str]]:
    """Return (row, reason) for each value that `column` cannot hold."""
    bad: list[tuple[int, str]] = []
    declared = set(column.missing)
    # The values the converter turns into nulls: for a column the CSV reader converts, the
    # plan's shared markers, which may differ from the column's own.
    nulls = set(plan.direct_missing) if column.name in plan.direct else declared
    if not column.nullable:
        for row, value in enumerate(values):
            if value in declared:
                bad.append((row, "missing value in a non-nullable column"))
            elif value in nulls:
                bad.append((row, _invalid_value_reason(value, column)))
        nulls |= declared
    if column.type == "string":
        return bad

    def convertible(rows: list[int]) -> bool:
        sample = [values[row] for row in rows]
        if column.name in plan.direct:
            return _csv_converts(sample, column, plan)
        try:
            convert_text(pa.array(sample, pa.string()), column)
        except ShardReadError:
            return False
        return True

    candidates = [row for row, value in enumerate(values) if value not in nulls]
    for row in _bisect_failures(candidates, convertible):
        bad.append((row, _invalid_value_reason(values[row], column)))
    return bad


def _invalid_value_reason(value: str, column: Column) -> str:
    """Return why `value` does not fit `column`, with a hint for empty fields and timestamps."""
    reason = f"invalid {column.type} value {value[:MAX_REJECT_TEXT]!r}"
    if value == "":
        # A column's own `missing` list replaces the default [""], which surprises users.
        return (f"{reason}: an empty field, and this column's missing markers are "
                f"{list(column.missing)}; add \"\" to them if it means missing")
    if column.type != "timestamp":
        return reason
    try:
        local = dt.datetime.fromisoformat(value)
    except ValueError:
        local = None
    if column.timezone is None:
        if local is not None and local.tzinfo is None:
            return (f"{reason}: it has no zone offset; add one (such as Z) or declare the "
                    "column's timezone")
        return f"{reason}: expected ISO 8601 with a zone offset, such as 2013-01-01T10:00:00Z"
    if local is not None and local.tzinfo is not None:
        return (f"{reason}: the column's timezone is {column.timezone}, so values carry no "
                "zone offset")
    problem = _local_time_problem(local, column.timezone) if local is not None else None
    return f"{reason}: " + (problem or f"expected local time in {column.timezone} without a zone "
                            "offset, such as 2013-01-01 05:00:00 (at most 6 decimals)")


def _local_time_problem(local: dt.datetime, timezone: str) -> str | None:
    """Return why a well-formed local time has no single instant in `timezone`, or None."""
    zone = ZoneInfo(timezone)
    first, second = local.replace(tzinfo=zone, fold=0), local.replace(tzinfo=zone, fold=1)
    if first.utcoffset() != second.utcoffset():
        # A skipped time does not survive a round trip through UTC; a repeated one does.
        back = first.astimezone(dt.UTC).astimezone(zone).replace(tzinfo=None)
        if back != local:
            return f"this local time does not exist in {timezone} (clocks were set forward)"
        return f"this local time occurs twice in {timezone} (clocks were set back)"
    return None


def _bisect_failures(rows: list[int], convertible) -> list[int]:
    # Checks halves recursively: O(k log n) conversions for k bad values among n.
    if not rows or convertible(rows):
        return []
    if len(rows) == 1:
        return rows
    middle = len(rows) // 2
    return _bisect_failures(rows[:middle], convertible) + _bisect_failures(
        rows[middle:], convertible
    )


def _csv_converts(sample: list[str], column: Column, plan: CsvReadPlan) -> bool:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
    for value in sample:
        writer.writerow([value])
    try:
        pacsv.read_csv(
            pa.BufferReader(buffer.getvalue().encode("utf-8")),
            read_options=pacsv.ReadOptions(column_names=["v"], use_threads=False),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={"v": column.arrow_type},
                null_values=list(plan.direct_missing),
                strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return False
    return True


def infer_shard(data: bytes, plan_names: list[str], columns_missing: dict[str, tuple[str, ...]],
                *, delimiter: str, quote: str, trailing: bool) -> dict[str, tuple[str, bool]]:
    """Return {column: (inferred type, saw_missing)} for one shard, reading every value as text."""
    from etl.schema import infer_values

    names = list(plan_names) + ([TRAILING_COLUMN] if trailing else [])
    if is_blank(data):
        return {name: ("null", False) for name in plan_names}
    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(
                column_names=names, use_threads=False,
                block_size=min(len(data) + 1, (1 << 31) - 1),
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, quote_char=quote, newlines_in_values=True,
                invalid_row_handler=lambda row: "skip",
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.binary() for n in names},
                include_columns=list(plan_names),
                strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as error:
        raise ShardReadError(f"cannot infer types: {error}") from error
    result = {}
    for name in plan_names:
        raw = table.column(name).combine_chunks()
        try:
            values = raw.cast(pa.string())
        except pa.ArrowInvalid:
            # Values that are not UTF-8 make their records rejects later; infer from the rest.
            values = pa.array(
                [v for v in raw.to_pylist() if _is_utf8(v)], pa.string()
            )
        result[name] = infer_values(values, columns_missing[name])
    return result


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
