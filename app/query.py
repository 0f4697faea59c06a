"""Query string parsing: one value per parameter, typed filters, row ranges and cursors."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from . import typed
from .config import NAME_PATTERN
from .errors import ApiError, invalid

INT64_MAX = 2**63 - 1
MAX_FIELDS = 64
REPEATABLE = frozenset({"filter"})
OPERATORS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "isnull")
_DIGITS = re.compile(r"^[0-9]+$")
SCAN_CHUNK = 1 << 16


class Params:
    """The query parameters of one request, each allowed once unless it is repeatable."""

    def __init__(self, query_string: bytes, allowed: tuple[str, ...]) -> None:
        self.values: dict[str, str] = {}
        self.filters: list[str] = []
        self.raw: dict[str, bytes] = {}
        if not query_string:
            return
        try:
            pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True,
                              encoding="utf-8", errors="strict", max_num_fields=MAX_FIELDS)
        except UnicodeDecodeError:
            raise ApiError(400, "invalid_query", "the query string is not valid UTF-8 after "
                           "percent-decoding", allowed="UTF-8 text, percent-encoded") from None
        except ValueError:
            raise ApiError(400, "invalid_query", f"the query string has more than {MAX_FIELDS} "
                           "parameters", allowed=f"at most {MAX_FIELDS} parameters") from None
        # Key bounds are split on ',' before percent-decoding (as in the path), so their raw
        # text is kept; '+' is a space in a query string, as parse_qsl reads it.
        for part in query_string.split(b"&"):
            name_bytes, _, raw_value = part.partition(b"=")
            if name_bytes in (b"key_start", b"key_stop"):
                self.raw[name_bytes.decode()] = raw_value.replace(b"+", b" ")
        for name, value in pairs:
            if name not in allowed:
                if not allowed:
                    raise ApiError(400, "unknown_parameter",
                                   f"unknown query parameter {name[:80]!r}: this resource takes "
                                   "no query parameters",
                                   parameter=name[:80], allowed="no query parameters")
                raise ApiError(400, "unknown_parameter",
                               f"unknown query parameter {name[:80]!r}",
                               parameter=name[:80], allowed=", ".join(allowed))
            if "\x00" in value:
                raise invalid(name, value.replace("\x00", "\\0"), "text without NUL bytes",
                              reason="contains a NUL byte")
            if name in REPEATABLE:
                self.filters.append(value)
            elif name in self.values:
                raise ApiError(400, "repeated_parameter",
                               f"query parameter {name!r} is given more than once",
                               parameter=name, allowed="one value")
            else:
                self.values[name] = value

    @property
    def canonical(self) -> str:
        """Return the parameters except the cursor in a stable order (for cursor binding)."""
        return ("&".join(f"{k}={v}" for k, v in sorted(self.values.items()) if k != "cursor")
                + "|" + "|".join(self.filters))

    def get(self, name: str) -> str | None:
        """Return the parameter's value or None when it is absent."""
        return self.values.get(name)

    def integer(self, name: str, default: int | None, *, minimum: int = 0,
                maximum: int = INT64_MAX, what: str | None = None) -> int | None:
        """Return a non-negative integer parameter, checked against [minimum, maximum]."""
        raw = self.values.get(name)
        if raw is None:
            return default
        allowed = what or f"an integer from {minimum} to {maximum}"
        if not _DIGITS.match(raw):
            reason = ("negative values are not allowed; must be " + allowed
                      if raw.startswith("-") and _DIGITS.match(raw[1:]) else None)
            raise invalid(name, raw, allowed, reason=reason)
        value = int(raw)
        if value > INT64_MAX:
            raise invalid(name, raw, allowed, reason="beyond the int64 range; must be " + allowed)
        if not minimum <= value <= maximum:
            raise invalid(name, raw, allowed, reason="out of range; must be " + allowed)
        return value

    def names(self, name: str, loaded: Any, default: list[str]) -> list[str]:
        """Return a comma-separated list of existing column names (projection)."""
        raw = self.values.get(name)
        if raw is None:
            return default
        result = []
        for part in raw.split(","):
            column = part.strip()
            if column not in loaded.schema:
                raise ApiError(400, "unknown_column",
                               f"{name}={raw[:80]!r} names unknown column {column[:80]!r} of "
                               f"dataset {loaded.dataset!r}", parameter=name,
                               allowed="comma-separated column names: "
                                       + ", ".join(loaded.column_names))
            if column in result:
                raise invalid(name, raw, "each column once", reason=f"names {column!r} twice")
            result.append(column)
        return result


# Path segments ----------------------------------------------------------------------------

def path_name(segment: bytes, parameter: str, *, strict: bool = True) -> str:
    """Return a dataset or column name from a raw path segment, rejecting path tricks.

    Dataset names follow the data root's directory-name rule (`strict`); column names may be
    any text except '/', NUL, '.' and '..'.
    """
    allowed = ("letters, digits, '_', '.', '-', starting with a letter or digit" if strict
               else "a column name without '/' or NUL")
    try:
        name = unquote_to_bytes(segment).decode()
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_name", f"{parameter} is not valid UTF-8",
                       parameter=parameter, allowed=allowed) from None
    # Names are only looked up in the loaded manifests and never joined to a filesystem
    # path. Rejecting '/', '..' and NUL here also gives such requests a clear error.
    if (NAME_PATTERN.match(name) if strict else
            name not in ("", ".", "..") and "/" not in name and "\x00" not in name):
        return name
    shown = name.replace("\x00", "\\0")[:80]
    raise ApiError(400, "invalid_name", f"{parameter} {shown!r} is invalid: must be {allowed}",
                   parameter=parameter, allowed=allowed)


def key_form(loaded: Any) -> str:
    """Return how a key of this dataset is written in a URL."""
    if len(loaded.key) == 1:
        return f"the value of {loaded.key[0]} ({typed.describe_type(loaded.schema[loaded.key[0]].type)})"
    return ("the values of " + ", ".join(loaded.key) + " joined by ',' in that order, "
            "with a ',' inside a value percent-encoded as %2C")


def parse_key(loaded: Any, raw: bytes, parameter: str, *, prefix: bool) -> list[Any]:
    """Return typed key components from a raw (still percent-encoded) key text.

    A single-column key is the whole text. A composite key is its components joined by ','
    in key column order; a ',' inside a component is sent as %2C. With `prefix` fewer
    components than key columns are allowed (a key range over the leading columns).
    """
    if len(loaded.key) == 1:
        # Plain ASCII digits for an integer key need no percent-decoding or text checks.
        high = loaded.key_integer_max
        if high is not None and raw.isdigit() and len(raw) < 20 and int(raw) <= high:
            return [int(raw)]
        parts = [raw]
    else:
        parts = raw.split(b",")
    if len(parts) > len(loaded.key) or (not prefix and len(parts) != len(loaded.key)):
        raise invalid(parameter, raw.decode("latin-1"), key_form(loaded),
                      reason=f"has {len(parts)} component(s), the key has {len(loaded.key)}: "
                             "must be " + key_form(loaded))
    components = []
    for name, part in zip(loaded.key, parts):
        try:
            text = unquote_to_bytes(part).decode()
        except UnicodeDecodeError:
            raise invalid(parameter, raw.decode("latin-1"), "UTF-8 text") from None
        if "\x00" in text:
            raise invalid(parameter, text.replace("\x00", "\\0"), key_form(loaded),
                          reason="contains a NUL byte")
        components.append(typed.parse_value(loaded.schema[name].type, text, parameter))
    return components


# Row ranges -------------------------------------------------------------------------------

def row_range(params: Params, loaded: Any) -> tuple[int, int]:
    """Return [begin, end) from start/stop (positions) and key_start/key_stop (keys)."""
    n = loaded.row_count
    start = params.integer("start", None, maximum=n,
                           what=f"a row position from 0 to {n} (the row count)")
    stop = params.integer("stop", None, maximum=n,
                          what=f"a row position from 0 to {n} (the row count)")
    begin = 0 if start is None else start
    end = n if stop is None else stop
    if begin > end:
        raise ApiError(400, "invalid_range", f"start={begin} is greater than stop={end}",
                       parameter="start", allowed="start <= stop")
    key_start = params.raw.get("key_start")
    key_stop = params.raw.get("key_stop")
    if key_start is not None:
        components = parse_key(loaded, key_start, "key_start", prefix=True)
        begin = max(begin, typed.key_position(loaded, components, "left"))
    if key_stop is not None:
        components = parse_key(loaded, key_stop, "key_stop", prefix=True)
        end = min(end, typed.key_position(loaded, components, "left"))
    return begin, max(begin, end)


# Filters ----------------------------------------------------------------------------------

Predicate = Callable[[int, int], np.ndarray]


@dataclass
class Filter:
    """One parsed `filter=column:op:value` with a predicate over a row range."""

    column: str
    op: str
    text: str
    predicate: Predicate


FILTER_FORM = ("column:op:value with op one of " + ", ".join(OPERATORS)
               + "; 'in' takes comma-separated values, 'isnull' takes true or false")


def _compare(values: np.ndarray, op: str, operand: Any) -> np.ndarray:
    if op == "eq":
        return values == operand
    if op == "ne":
        return values != operand
    if op == "lt":
        return values < operand
    if op == "le":
        return values <= operand
    if op == "gt":
        return values > operand
    return values >= operand


def _with_validity(column: Any, mask: np.ndarray, a: int, b: int) -> np.ndarray:
    if column.null_count:
        mask &= column.valid_mask(a, b)
    return mask


def parse_filter(loaded: Any, text: str) -> Filter:
    """Return a Filter for `column:op:value`, typed from the schema."""
    parts = text.split(":", 2)
    if len(parts) != 3:
        raise invalid("filter", text, FILTER_FORM)
    name, op, operand = parts
    if name not in loaded.schema:
        raise ApiError(400, "unknown_column", f"filter={text[:80]!r} names unknown column "
                       f"{name[:80]!r} of dataset {loaded.dataset!r}", parameter="filter",
                       allowed="columns: " + ", ".join(loaded.column_names))
    if op not in OPERATORS:
        raise ApiError(400, "unknown_operator", f"filter={text[:80]!r} uses unknown operator "
                       f"{op[:20]!r}", parameter="filter", allowed="operators: "
                       + ", ".join(OPERATORS))
    column = loaded.columns[name]
    type_name = loaded.schema[name].type

    if op == "isnull":
        expected = operand.lower()
        if expected not in ("true", "false"):
            raise invalid("filter", text, "isnull:true or isnull:false")

        def isnull(a: int, b: int) -> np.ndarray:
            if not column.null_count:
                return np.full(b - a, expected == "true")
            valid = column.valid_mask(a, b)
            return ~valid if expected == "true" else valid
        return Filter(name, op, operand, isnull)

    if type_name == "bool" and op not in ("eq", "ne", "in"):
        raise ApiError(400, "invalid_operator", f"filter={text[:80]!r}: operator {op!r} does "
                       f"not apply to bool column {name!r}", parameter="filter",
                       allowed="eq, ne, in, isnull")
    operands = operand.split(",") if op == "in" else [operand]
    typed_operands = [typed.parse_value(type_name, item, "filter") for item in operands]

    if type_name == "string" and column.encoding == "dictionary":
        return Filter(name, op, operand, _dictionary_predicate(loaded, name, op, typed_operands))
    if type_name == "string":
        return Filter(name, op, operand, _plain_string_predicate(column, op, typed_operands))

    values = column.values
    if op == "in":
        members = np.array(typed_operands, dtype=values.dtype)

        def member(a: int, b: int) -> np.ndarray:
            return _with_validity(column, np.isin(values[a:b], members), a, b)
        return Filter(name, op, operand, member)

    scalar = typed_operands[0]

    def compare(a: int, b: int) -> np.ndarray:
        return _with_validity(column, _compare(values[a:b], op, scalar), a, b)
    return Filter(name, op, operand, compare)


def _dictionary_predicate(loaded: Any, name: str, op: str, operands: list[str]) -> Predicate:
    column = loaded.columns[name]
    dictionary = loaded.dictionary_bytes(name)
    size = len(dictionary)
    codes = column.values

    def code_of(text: str) -> int | None:
        position = typed.dictionary_threshold(loaded, name, text, "left")
        if position < size and dictionary[position] == text.encode():
            return position
        return None

    if op in ("eq", "ne", "in"):
        found = [code for code in (code_of(t) for t in operands) if code is not None]
        member_codes = np.array(found, dtype=np.int64)

        def member(a: int, b: int) -> np.ndarray:
            mask = np.isin(codes[a:b], member_codes)
            if op == "ne":
                mask = ~mask
            return _with_validity(column, mask, a, b)
        return member

    # Dictionary values are sorted, so comparing values is comparing codes with a threshold.
    side = "right" if op in ("le", "gt") else "left"
    threshold = typed.dictionary_threshold(loaded, name, operands[0], side)

    def ordered(a: int, b: int) -> np.ndarray:
        chunk = codes[a:b]
        if threshold <= 0:
            below = np.zeros(b - a, dtype=bool)
        elif threshold >= size:
            below = np.ones(b - a, dtype=bool)
        else:
            below = chunk < chunk.dtype.type(threshold)
        mask = below if op in ("lt", "le") else ~below
        return _with_validity(column, mask, a, b)
    return ordered


def _plain_string_predicate(column: Any, op: str, operands: list[str]) -> Predicate:
    functions = {"eq": pc.equal, "ne": pc.not_equal, "lt": pc.less, "le": pc.less_equal,
                 "gt": pc.greater, "ge": pc.greater_equal}
    offsets_buffer = pa.py_buffer(column.offsets)
    data_buffer = pa.py_buffer(column.data)

    def strings(a: int, b: int) -> pa.Array:
        # A zero-copy Arrow view of rows [a, b) over the mapped offsets and bytes.
        return pa.Array.from_buffers(pa.large_string(), b - a,
                                     [None, offsets_buffer, data_buffer], offset=a)

    def predicate(a: int, b: int) -> np.ndarray:
        array = strings(a, b)
        if op == "in":
            result = pc.is_in(array, value_set=pa.array(operands, pa.large_string()))
        else:
            result = functions[op](array, pa.scalar(operands[0], pa.large_string()))
        mask = result.fill_null(False).to_numpy(zero_copy_only=False).copy()
        return _with_validity(column, mask, a, b)
    return predicate


def parse_filters(params: Params, loaded: Any) -> list[Filter]:
    """Return the request's filters (all must hold)."""
    return [parse_filter(loaded, text) for text in params.filters]


def matching(filters: list[Filter], a: int, b: int) -> np.ndarray:
    """Return the mask of rows in [a, b) that pass every filter."""
    mask = filters[0].predicate(a, b)
    for item in filters[1:]:
        mask &= item.predicate(a, b)
    return mask


# Cursors ----------------------------------------------------------------------------------

def _query_digest(params: Params) -> str:
    return hashlib.blake2b(params.canonical.encode(), digest_size=6).hexdigest()


def encode_cursor(loaded: Any, params: Params, position: int, end: int) -> str:
    """Return an opaque cursor to continue a listing at `position`."""
    document = {"d": loaded.dataset, "g": loaded.generation, "p": position, "e": end,
                "q": _query_digest(params)}
    return base64.urlsafe_b64encode(orjson.dumps(document)).decode().rstrip("=")


def decode_cursor(loaded: Any, params: Params, text: str) -> tuple[int, int]:
    """Return (position, end) of a cursor; 410 for another generation, 400 when invalid."""
    allowed = "a next_cursor value returned by this endpoint for the same query"
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        document = orjson.loads(raw)
        dataset, generation = document["d"], document["g"]
        position, end, digest = document["p"], document["e"], document["q"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise invalid("cursor", text, allowed, reason="not a cursor issued by this service")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (position, end)):
        raise invalid("cursor", text, allowed, reason="not a cursor issued by this service")
    if dataset != loaded.dataset:
        raise invalid("cursor", text, allowed, reason=f"issued for dataset {dataset!r}")
    if generation != loaded.generation:
        raise ApiError(410, "stale_cursor", f"cursor belongs to generation {generation!r} of "
                       f"dataset {loaded.dataset!r}, which now serves generation "
                       f"{loaded.generation!r}; start the listing again without a cursor",
                       parameter="cursor", allowed=allowed)
    if digest != _query_digest(params):
        raise invalid("cursor", text, allowed, reason="issued for a different query; repeat "
                      "the original parameters with the cursor")
    if not 0 <= position <= end <= loaded.row_count:
        raise invalid("cursor", text, allowed, reason="positions out of range")
    return position, end
