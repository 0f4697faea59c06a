"""Typed values from text (keys, filter operands) and binary search on the sorted key columns.

Rows of a generation are sorted by the key columns, so each key column is its own index.
A bound is one `numpy.searchsorted` on a fixed-width column. On a dictionary-encoded string
column it is a bisection of the sorted dictionary plus one `searchsorted` on the codes, and on
a plain string column a bisection over the UTF-8 bytes. Composite keys narrow the range one
column at a time.
"""

from __future__ import annotations

import bisect
import datetime as dt
import re
from typing import Any

import numpy as np

from .errors import invalid

_INTEGER = re.compile(r"^[+-]?[0-9]+$")
INTEGER_TYPES = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
FLOAT_TYPES = {"float32", "float64"}
NUMERIC_TYPES = INTEGER_TYPES | FLOAT_TYPES
ORDERED_TYPES = NUMERIC_TYPES | {"date", "timestamp", "string"}

_EPOCH = dt.datetime(1970, 1, 1)
_INTEGER_RANGES = {name: (int(np.iinfo(name).min), int(np.iinfo(name).max))
                   for name in INTEGER_TYPES}


def describe_type(type_name: str) -> str:
    """Return the text form a client must use for a value of this column type."""
    if type_name in INTEGER_TYPES:
        info = np.iinfo(type_name)
        return f"an integer from {info.min} to {info.max}"
    if type_name in FLOAT_TYPES:
        return "a decimal number (nan, inf and -inf are accepted)"
    if type_name == "bool":
        return "true or false"
    if type_name == "date":
        return "a date as YYYY-MM-DD"
    if type_name == "timestamp":
        return "an ISO 8601 timestamp such as 2013-01-01T05:00:00Z (no offset means UTC)"
    return "any UTF-8 text"


def parse_value(type_name: str, text: str, parameter: str) -> Any:
    """Return `text` converted to the column type; raise a 400 ApiError naming `parameter`."""
    if type_name in INTEGER_TYPES:
        low, high = _INTEGER_RANGES[type_name]
        if not _INTEGER.match(text):
            raise invalid(parameter, text, describe_type(type_name))
        value = int(text)
        if not low <= value <= high:
            raise invalid(parameter, text, describe_type(type_name),
                          reason=f"out of range for {type_name}: must be "
                                 f"{describe_type(type_name)}")
        # A Python int inside the column type's range compares exactly with numpy arrays.
        return value
    if type_name in FLOAT_TYPES:
        try:
            return np.array(float(text), dtype=type_name)[()]
        except ValueError:
            raise invalid(parameter, text, describe_type(type_name)) from None
    if type_name == "bool":
        lowered = text.lower()
        if lowered in ("true", "1"):
            return np.True_
        if lowered in ("false", "0"):
            return np.False_
        raise invalid(parameter, text, describe_type(type_name))
    if type_name == "date":
        try:
            return np.datetime64(dt.date.fromisoformat(text), "D")
        except ValueError:
            raise invalid(parameter, text, describe_type(type_name)) from None
    if type_name == "timestamp":
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            raise invalid(parameter, text, describe_type(type_name)) from None
        if moment.tzinfo is not None:
            moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
        delta = moment - _EPOCH
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        return np.datetime64(micros, "us")
    return text


def _searchsorted(values: np.ndarray, value: Any, side: str, lo: int, hi: int) -> int:
    return lo + int(np.searchsorted(values[lo:hi], value, side=side))


class _Utf8Sequence:
    """Sequence view of a plain string column as bytes, for `bisect` (one slice per probe)."""

    def __init__(self, offsets: np.ndarray, data: np.ndarray) -> None:
        self.offsets = offsets
        self.data = data

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> bytes:
        return self.data[int(self.offsets[i]):int(self.offsets[i + 1])].tobytes()


def dictionary_threshold(loaded: Any, name: str, text: str, side: str) -> int:
    """Return the first dictionary code whose value is >= (left) or > (right) `text`."""
    values = loaded.dictionary_bytes(name)
    key = text.encode()
    if side == "left":
        return bisect.bisect_left(values, key)
    return bisect.bisect_right(values, key)


def codes_below(codes: np.ndarray, threshold: int, size: int) -> int | np.ndarray:
    """Return how `searchsorted(codes, threshold)` would, guarding code dtypes that overflow."""
    if threshold <= 0:
        return 0
    if threshold >= size:
        return len(codes)
    return int(np.searchsorted(codes, codes.dtype.type(threshold), side="left"))


def bound(loaded: Any, name: str, value: Any, side: str, lo: int, hi: int) -> int:
    """Return the first row in [lo, hi) whose `name` is >= (left) or > (right) `value`.

    Rows in [lo, hi) must be sorted by `name`, which holds for the first key column over the
    whole generation and for each later key column inside a run of equal earlier components.
    """
    column = loaded.columns[name]
    type_name = loaded.schema[name].type
    if type_name != "string":
        return _searchsorted(column.values, value, side, lo, hi)
    if column.encoding == "dictionary":
        threshold = dictionary_threshold(loaded, name, value, side)
        size = len(loaded.dictionary(name))
        return lo + codes_below(column.values[lo:hi], threshold, size)
    sequence = _Utf8Sequence(column.offsets, column.data)
    key = value.encode()
    if side == "left":
        return bisect.bisect_left(sequence, key, lo, hi)
    return bisect.bisect_right(sequence, key, lo, hi)


def key_position(loaded: Any, components: list[Any], side: str) -> int:
    """Return the first row whose key is >= (left) or > (right) the key prefix `components`.

    Keys compare as tuples, column by column. A prefix compares equal to every key that
    starts with it, so `key_position(["EWR"], "right")` is the first row after origin EWR.
    """
    lo, hi = 0, loaded.row_count
    last = len(components) - 1
    for i, value in enumerate(components):
        name = loaded.key[i]
        left = bound(loaded, name, value, "left", lo, hi)
        right = bound(loaded, name, value, "right", lo, hi)
        if i == last:
            return left if side == "left" else right
        if left == right:
            return left
        lo, hi = left, right
    return lo if side == "left" else hi


def key_range(loaded: Any, components: list[Any]) -> tuple[int, int]:
    """Return the rows [start, stop) whose key starts with `components`."""
    return key_position(loaded, components, "left"), key_position(loaded, components, "right")
