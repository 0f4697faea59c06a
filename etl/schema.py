"""Resolved schemas: storage types mapped to Arrow types, and type inference over all shards.

Inference reads every shard's values as text, drops the column's missing markers and tries, in
order, int64, float64, bool, date and timestamp (with a zone offset); the first type that every
value casts to wins for that shard. Shard results merge into one type per column over the whole
input: int64 and float64 merge to float64, a column with no values becomes string, and any
other mix becomes string.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pyarrow as pa
import pyarrow.compute as pc

from etl.spec import ColumnSpec, DatasetSpec, SpecError

ARROW_TYPES: dict[str, pa.DataType] = {
    "int8": pa.int8(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
    "uint8": pa.uint8(), "uint16": pa.uint16(), "uint32": pa.uint32(), "uint64": pa.uint64(),
    "float32": pa.float32(), "float64": pa.float64(), "bool": pa.bool_(), "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"), "string": pa.string(),
}
INFERENCE_ORDER = ("int64", "float64", "bool", "date", "timestamp")


@dataclass(frozen=True)
class Column:
    """A column of a run with every property decided."""

    name: str
    type: str
    nullable: bool
    missing: tuple[str, ...]
    encoding: str = "auto"
    timezone: str | None = None

    @property
    def arrow_type(self) -> pa.DataType:
        return ARROW_TYPES[self.type]


def resolve_columns(
    spec: DatasetSpec, header_names: list[str], inferred: dict[str, str] | None = None
) -> list[Column]:
    """Return the source columns in header order with types from the spec or from inference."""
    unknown = [c.name for c in spec.columns if c.name not in header_names]
    if unknown:
        raise SpecError(
            f"{spec.path or spec.name}: column(s) {unknown} are declared but the sources' header "
            f"has only {header_names}"
        )
    if spec.row_id and spec.row_id in header_names:
        raise SpecError(
            f"{spec.path or spec.name}: 'row_id' {spec.row_id!r} is also a source column; "
            "pick another name for the synthetic row id"
        )
    columns = []
    for name in header_names:
        declared = spec.column(name) or ColumnSpec(name)
        column_type = declared.type or (inferred or {}).get(name)
        if column_type is None:
            raise SpecError(f"{spec.path or spec.name}: column {name!r} has no type")
        columns.append(
            Column(name, column_type, declared.nullable, spec.missing_for(name), declared.encoding,
                   declared.timezone)
        )
    return columns


def check_key(spec: DatasetSpec, columns: list[Column]) -> None:
    """Raise SpecError when a key column is unknown or may hold nulls."""
    names = {c.name: c for c in columns}
    for key in spec.key:
        if key == spec.row_id:
            continue
        if key not in names:
            raise SpecError(
                f"{spec.path or spec.name}: key column {key!r} is not a source column "
                f"(columns: {sorted(names)}) nor the row_id"
            )


def infer_values(values: pa.Array, missing: tuple[str, ...]) -> tuple[str, bool]:
    """Return (type, saw_missing) for one shard's text values; type 'null' means no values."""
    is_missing = pc.is_in(values, value_set=pa.array(list(missing), pa.string()))
    saw_missing = bool(pc.any(is_missing).as_py()) if len(values) else False
    present = values.filter(pc.invert(is_missing))
    if len(present) == 0:
        return "null", saw_missing
    for candidate in INFERENCE_ORDER:
        try:
            pc.cast(present, ARROW_TYPES[candidate])
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        return candidate, saw_missing
    return "string", saw_missing


def merge_inferred(left: str, right: str) -> str:
    """Return the one type that holds values inferred as `left` and as `right`."""
    if left == right:
        return left
    if left == "null":
        return right
    if right == "null":
        return left
    if {left, right} == {"int64", "float64"}:
        return "float64"
    return "string"


def pinned_spec(spec: DatasetSpec, columns: list[Column]) -> DatasetSpec:
    """Return `spec` with every column's type written out, for the user to pin.

    Key columns are written as non-nullable, which is how every run treats them.
    """
    pinned = []
    for column in columns:
        declared = spec.column(column.name)
        pinned.append(
            ColumnSpec(
                column.name,
                column.type,
                column.nullable and column.name not in spec.key,
                declared.missing if declared else None,
                column.encoding,
                column.timezone,
            )
        )
    return replace(spec, columns=pinned)
