"""Dataset spec files: the YAML that declares one dataset for the ETL.

A spec names the dataset, its source files, the source format, the key and the columns:

    name: flights
    format: csv                     # the reader; see etl.readers.READERS
    sources: [flights.csv]          # paths or globs, relative to --source-dir
    csv: {delimiter: ",", quote: '"'}
    row_id: id                      # optional synthetic int64 column: 1-based record position
    key: [id]                       # sort and lookup key (defaults to [row_id])
    allow_duplicate_keys: false
    max_rejects: 0
    missing: [""]                   # default missing-value markers of every column
    columns:                        # optional; omitted columns or types are inferred
      - {name: dep_time, type: int16, missing: ["NA"]}
      - {name: carrier, type: string, nullable: false}
      - {name: scheduled, type: timestamp, timezone: America/New_York}

Column types are the rodata storage types: int8..int64, uint8..uint64, float32, float64, bool,
date, timestamp (stored as UTC microseconds) and string. A timestamp's text carries a zone
offset (`2013-01-01T10:00:00Z`), unless the column names a `timezone` (an IANA name such as
`America/New_York`, or `UTC`): then the text has no offset and is local time in that zone.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from rodata.format import is_valid_name

STORAGE_TYPES = (
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float32", "float64", "bool", "date", "timestamp", "string",
)
ENCODINGS = ("auto", "plain", "dictionary")
NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
TOP_LEVEL_KEYS = {
    "name", "format", "sources", "csv", "row_id", "key", "allow_duplicate_keys", "max_rejects",
    "missing", "columns", "description",
}
COLUMN_KEYS = {"name", "type", "nullable", "missing", "encoding", "timezone", "description"}
CSV_KEYS = {"delimiter", "quote", "header"}


class SpecError(ValueError):
    """A spec file is invalid; the message names the file, the field and what to change."""


@dataclass(frozen=True)
class ColumnSpec:
    """One declared column: storage type (None = infer), nullability and missing markers."""

    name: str
    type: str | None = None
    nullable: bool = True
    missing: tuple[str, ...] | None = None   # None: use the dataset default
    encoding: str = "auto"
    timezone: str | None = None              # timestamps only: the zone of text without offset


@dataclass(frozen=True)
class CsvOptions:
    """CSV dialect: one-byte delimiter and quote character; a header line is required."""

    delimiter: str = ","
    quote: str = '"'


@dataclass
class DatasetSpec:
    """A parsed, validated dataset spec."""

    name: str
    sources: list[str]
    format: str = "csv"
    csv: CsvOptions = field(default_factory=CsvOptions)
    row_id: str | None = None
    key: list[str] = field(default_factory=list)
    allow_duplicate_keys: bool = False
    max_rejects: int = 0
    missing: tuple[str, ...] = ("",)
    columns: list[ColumnSpec] = field(default_factory=list)
    path: str = ""

    def column(self, name: str) -> ColumnSpec | None:
        """Return the declared column called `name`, or None."""
        for column in self.columns:
            if column.name == name:
                return column
        return None

    def missing_for(self, name: str) -> tuple[str, ...]:
        """Return the missing-value markers that apply to column `name`."""
        column = self.column(name)
        if column is not None and column.missing is not None:
            return column.missing
        return self.missing

    def fully_typed(self) -> bool:
        """Return True when every declared column has a type (no inference needed)."""
        return bool(self.columns) and all(c.type is not None for c in self.columns)

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as plain data, in the YAML layout."""
        out: dict[str, Any] = {
            "name": self.name,
            "format": self.format,
            "sources": list(self.sources),
            "csv": {"delimiter": self.csv.delimiter, "quote": self.csv.quote},
        }
        if self.row_id:
            out["row_id"] = self.row_id
        out["key"] = list(self.key)
        out["allow_duplicate_keys"] = self.allow_duplicate_keys
        out["max_rejects"] = self.max_rejects
        out["missing"] = list(self.missing)
        columns = []
        for column in self.columns:
            item = {k: v for k, v in asdict(column).items() if v is not None}
            if column.missing is not None:
                item["missing"] = list(column.missing)
            if item.get("encoding") == "auto":
                del item["encoding"]
            columns.append(item)
        out["columns"] = columns
        return out

    def digest(self) -> str:
        """Return a SHA-256 of the canonical spec content (ignores comments and key order)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def load_spec(path: str | Path) -> DatasetSpec:
    """Read and validate the spec at `path`; raise SpecError naming the field on a problem."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SpecError(f"{path}: cannot read the spec file: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: invalid YAML: {error}") from error
    spec = parse_spec(raw, origin=str(path))
    spec.path = str(path)
    return spec


def parse_spec(raw: Any, *, origin: str = "<spec>") -> DatasetSpec:
    """Validate spec data already loaded from YAML and return a DatasetSpec."""
    def fail(message: str) -> SpecError:
        return SpecError(f"{origin}: {message}")

    if not isinstance(raw, dict):
        raise fail("the spec must be a YAML mapping with at least 'name' and 'sources'")
    unknown = set(raw) - TOP_LEVEL_KEYS
    if unknown:
        raise fail(f"unknown field(s) {sorted(unknown)}; allowed: {sorted(TOP_LEVEL_KEYS)}")

    name = raw.get("name")
    if not isinstance(name, str) or not is_valid_name(name):
        raise fail(
            f"'name' must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or "
            f"digit (got {name!r}); it becomes a directory name"
        )

    sources = raw.get("sources")
    if isinstance(sources, str):
        sources = [sources]
    if not isinstance(sources, list) or not sources or not all(
        isinstance(s, str) and s for s in sources
    ):
        raise fail("'sources' must be a non-empty list of paths or glob patterns")

    source_format = raw.get("format", "csv")
    if source_format != "csv":
        raise fail(f"'format' {source_format!r} is not supported; supported: csv")

    csv_raw = raw.get("csv") or {}
    if not isinstance(csv_raw, dict) or set(csv_raw) - CSV_KEYS:
        raise fail(f"'csv' must be a mapping with keys from {sorted(CSV_KEYS)}")
    if csv_raw.get("header", True) is not True:
        raise fail("'csv.header' must be true: sources need a header line naming the columns")
    csv_options = CsvOptions(
        delimiter=csv_raw.get("delimiter", ","), quote=csv_raw.get("quote", '"')
    )
    for label, char in (("delimiter", csv_options.delimiter), ("quote", csv_options.quote)):
        if not isinstance(char, str) or len(char) != 1 or ord(char) > 127 or char in "\r\n":
            raise fail(f"'csv.{label}' must be one ASCII character other than CR/LF (got {char!r})")
    if csv_options.delimiter == csv_options.quote:
        raise fail("'csv.delimiter' and 'csv.quote' must differ")

    missing = _parse_missing(raw.get("missing", [""]), "missing", fail)

    columns: list[ColumnSpec] = []
    raw_columns = raw.get("columns") or []
    if not isinstance(raw_columns, list):
        raise fail("'columns' must be a list of mappings with at least 'name'")
    seen: set[str] = set()
    for position, item in enumerate(raw_columns, start=1):
        label = f"columns[{position}]"
        if not isinstance(item, dict):
            raise fail(f"{label} must be a mapping such as {{name: x, type: int64}}")
        extra = set(item) - COLUMN_KEYS
        if extra:
            named = f"column {item['name']!r}" if isinstance(item.get("name"), str) else label
            raise fail(f"{named}: unknown field(s) {sorted(extra)}; allowed: {sorted(COLUMN_KEYS)}")
        column_name = item.get("name")
        if not isinstance(column_name, str) or not column_name or column_name.startswith("__"):
            raise fail(
                f"{label}: 'name' must be the column's name in the source header "
                f"(a non-empty string not starting with '__'; got {column_name!r})"
            )
        if column_name in seen:
            raise fail(f"{label}: column {column_name!r} is declared twice")
        seen.add(column_name)
        column_type = item.get("type")
        if column_type is not None and column_type not in STORAGE_TYPES:
            raise fail(
                f"column {column_name!r}: type {column_type!r} is unknown; "
                f"use one of {', '.join(STORAGE_TYPES)} or leave it out to infer"
            )
        nullable = item.get("nullable", True)
        if not isinstance(nullable, bool):
            raise fail(f"column {column_name!r}: 'nullable' must be true or false")
        encoding = item.get("encoding", "auto")
        if encoding not in ENCODINGS:
            raise fail(f"column {column_name!r}: 'encoding' must be one of {ENCODINGS}")
        if encoding == "dictionary" and column_type not in (None, "string"):
            raise fail(f"column {column_name!r}: dictionary encoding applies to strings only")
        column_missing = None
        if "missing" in item:
            column_missing = _parse_missing(item["missing"], f"column {column_name!r}: missing", fail)
        timezone = _parse_timezone(item, column_name, column_type, fail)
        columns.append(
            ColumnSpec(column_name, column_type, nullable, column_missing, encoding, timezone)
        )

    row_id = raw.get("row_id")
    if row_id is not None:
        if not isinstance(row_id, str) or not NAME_PATTERN.match(row_id):
            raise fail(f"'row_id' must be a column name (got {row_id!r})")
        if row_id in seen:
            raise fail(f"'row_id' {row_id!r} clashes with a declared source column")

    key = raw.get("key")
    if key is None:
        key = [row_id] if row_id else []
    if isinstance(key, str):
        key = [key]
    if not isinstance(key, list) or not key or not all(isinstance(k, str) for k in key):
        raise fail("'key' must name one or more columns (or declare 'row_id' to key by position)")
    if len(set(key)) != len(key):
        raise fail(f"'key' lists a column twice: {key}")

    allow_duplicates = raw.get("allow_duplicate_keys", False)
    if not isinstance(allow_duplicates, bool):
        raise fail("'allow_duplicate_keys' must be true or false")
    max_rejects = raw.get("max_rejects", 0)
    if not isinstance(max_rejects, int) or isinstance(max_rejects, bool) or max_rejects < 0:
        raise fail(f"'max_rejects' must be an integer >= 0 (got {max_rejects!r})")

    return DatasetSpec(
        name=name,
        sources=list(sources),
        format=source_format,
        csv=csv_options,
        row_id=row_id,
        key=list(key),
        allow_duplicate_keys=allow_duplicates,
        max_rejects=max_rejects,
        missing=missing,
        columns=columns,
    )


def _parse_timezone(item: dict, column_name: str, column_type: str | None, fail) -> str | None:
    if "timezone" not in item:
        return None
    timezone = item["timezone"]
    if column_type != "timestamp":
        raise fail(f"column {column_name!r}: 'timezone' applies to type timestamp only; "
                   "declare type: timestamp or remove 'timezone'")
    # On Linux, Python's zoneinfo and pyarrow both read the system database
    # (/usr/share/zoneinfo), so a name valid here is normally valid in the workers too.
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise fail(f"column {column_name!r}: 'timezone' {timezone!r} is not a known time zone; "
                   "use an IANA name such as America/New_York, or UTC") from None
    return timezone


def _parse_missing(value: Any, label: str, fail) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise fail(f"'{label}' must be a list of strings such as [\"\", \"NA\"]")
    return tuple(value)


def dump_spec(spec: DatasetSpec, path: str | Path) -> None:
    """Write `spec` as YAML to `path` (used for the inferred schema a user can pin)."""
    text = yaml.safe_dump(spec.to_dict(), sort_keys=False, default_flow_style=None, width=100)
    Path(path).write_text(text, encoding="utf-8")
