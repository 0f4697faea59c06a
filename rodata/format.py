"""The rodata store format: column files, generation manifests and the CURRENT pointer.

This module is the one place that reads and writes the bytes on disk; the ETL and the API
both import it. docs/format.md is the same specification with examples.

Column file (``*.rdc``), version 1.0, in byte order:

- 6 bytes: the magic string ``b"\\x93RDCOL"``.
- 1 byte each: the major and the minor format version (currently 1 and 0).
- 4 bytes: the header length H as an unsigned little-endian integer.
- H bytes: the header, UTF-8 JSON, padded with spaces and ended by ``\\n`` so that the first
  buffer starts at a multiple of ``ALIGNMENT`` (64 bytes).
- The buffers the header lists, each at a file offset that is a multiple of 64, with zero bytes
  between them. 64 bytes is the widest SIMD register and a cache line, and numpy maps an aligned
  little-endian array in place, so a reader never copies a column.

The header contains ``type`` (a logical type from TYPES), ``encoding`` ("plain" or "dictionary"),
``length`` (rows), ``null_count`` and ``buffers``: a mapping from buffer name to
``[offset, size in bytes, numpy dtype string]``. The buffers are:

- ``validity``: present only when ``null_count > 0``. A bitmap of ceil(length / 8) bytes, bit i
  (LSB first within each byte, as in Apache Arrow) is 1 when row i holds a value. A null row's
  slot in ``values`` is zero, so the bytes written do not depend on how a parser filled it.
- ``values``: fixed-width types, one little-endian element per row.
- ``offsets`` and ``data``: plain strings. ``offsets`` holds length + 1 int64 byte offsets into
  ``data``, which holds UTF-8 bytes; a null row is an empty string with its validity bit 0.
- ``codes``, ``dictionary_offsets`` and ``dictionary_data``: dictionary-encoded strings. The
  dictionary is unique and sorted by UTF-8 bytes, so comparing codes compares the strings; the
  code of a null row is 0.

A reader accepts every file whose major version it knows (a newer minor version only adds
optional header keys) and raises FormatError on any other.

Generation directory:

    <dataset dir>/CURRENT                         "<generation id>\\n", replaced atomically
    <dataset dir>/generations/<generation id>/manifest.json
    <dataset dir>/generations/<generation id>/columns/<NNNN>.rdc

Rows are stored sorted by the key columns, so those columns are the generation's sorted key
index: a lookup is a binary search over them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import mmap
import os
import re
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"\x93RDCOL"
FORMAT_VERSION = (1, 0)
SUPPORTED_MAJOR_VERSIONS = frozenset({1})
ALIGNMENT = 64
MANIFEST_NAME = "manifest.json"
CURRENT_NAME = "CURRENT"
GENERATIONS_DIR = "generations"
STAGING_DIR = ".staging"
COLUMN_SUFFIX = ".rdc"

_PREAMBLE = struct.Struct("<6sBBI")

# Logical type -> numpy dtype of its values buffer. Dates and timestamps use numpy's 64-bit
# datetime units so that a mapped buffer is already a datetime64 array; timestamps are UTC.
_FIXED_DTYPES: dict[str, str] = {
    "int8": "<i1",
    "int16": "<i2",
    "int32": "<i4",
    "int64": "<i8",
    "uint8": "<u1",
    "uint16": "<u2",
    "uint32": "<u4",
    "uint64": "<u8",
    "float32": "<f4",
    "float64": "<f8",
    "bool": "|b1",
    "date": "<M8[D]",
    "timestamp": "<M8[us]",
}
TYPES = frozenset(_FIXED_DTYPES) | {"string"}
ENCODINGS = frozenset({"plain", "dictionary"})
_CODE_DTYPES = (np.dtype("u1"), np.dtype("<u2"), np.dtype("<i4"))

# Generation ids and dataset names become directory names, so they are restricted to a
# character set that cannot form a path ("..", "/", NUL) on any platform.
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class FormatError(ValueError):
    """A file or directory does not follow the rodata store format."""


def numpy_dtype(type_name: str) -> np.dtype:
    """Return the numpy dtype of a fixed-width logical type's values."""
    try:
        return np.dtype(_FIXED_DTYPES[type_name])
    except KeyError:
        raise ValueError(
            f"type {type_name!r} has no fixed-width dtype; fixed-width types are "
            f"{', '.join(sorted(_FIXED_DTYPES))}"
        ) from None


def is_valid_name(name: str) -> bool:
    """Return True when ``name`` can be a dataset name or a generation id."""
    return bool(_NAME_PATTERN.match(name)) and ".." not in name


def _aligned(offset: int) -> int:
    return -(-offset // ALIGNMENT) * ALIGNMENT


# --- writing -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ColumnData:
    """An in-memory column, ready for write_column. Build it with fixed, strings or dictionary."""

    type: str
    encoding: str
    length: int
    buffers: dict[str, np.ndarray]
    valid: np.ndarray | None

    @classmethod
    def fixed(cls, type_name: str, values: np.ndarray, valid: np.ndarray | None = None) -> ColumnData:
        """Make a fixed-width column; ``valid`` is a bool array (True = value present) or None."""
        dtype = numpy_dtype(type_name)
        values = np.ascontiguousarray(values, dtype=dtype)
        _check_1d("values", values)
        valid = _normalize_valid(valid, len(values))
        if valid is not None:
            # Zero the slots of null rows so the file bytes are independent of the parser.
            values = np.where(valid, values, np.zeros(1, dtype=dtype)).astype(dtype, copy=False)
        return cls(type_name, "plain", len(values), {"values": values}, valid)

    @classmethod
    def strings(
        cls, offsets: np.ndarray, data: np.ndarray | bytes, valid: np.ndarray | None = None
    ) -> ColumnData:
        """Make a plain string column from int64 offsets (length + 1) and UTF-8 bytes."""
        offsets = np.ascontiguousarray(offsets, dtype="<i8")
        data = np.frombuffer(data, dtype="<u1") if isinstance(data, bytes) else data
        data = np.ascontiguousarray(data, dtype="<u1")
        _check_offsets("offsets", offsets, len(data))
        length = len(offsets) - 1
        valid = _normalize_valid(valid, length)
        return cls("string", "plain", length, {"offsets": offsets, "data": data}, valid)

    @classmethod
    def dictionary(
        cls,
        codes: np.ndarray,
        dictionary_offsets: np.ndarray,
        dictionary_data: np.ndarray | bytes,
        valid: np.ndarray | None = None,
    ) -> ColumnData:
        """Make a dictionary-encoded string column; the dictionary must be unique and sorted."""
        codes = np.ascontiguousarray(codes)
        if codes.dtype not in _CODE_DTYPES:
            allowed = ", ".join(dtype.str for dtype in _CODE_DTYPES)
            raise ValueError(f"codes dtype must be one of {allowed}, got {codes.dtype.str}")
        _check_1d("codes", codes)
        dictionary_offsets = np.ascontiguousarray(dictionary_offsets, dtype="<i8")
        if isinstance(dictionary_data, bytes):
            dictionary_data = np.frombuffer(dictionary_data, dtype="<u1")
        dictionary_data = np.ascontiguousarray(dictionary_data, dtype="<u1")
        _check_offsets("dictionary_offsets", dictionary_offsets, len(dictionary_data))
        size = len(dictionary_offsets) - 1
        if len(codes) and (int(codes.min()) < 0 or int(codes.max()) >= max(size, 1)):
            raise ValueError(f"codes must lie in [0, {size}) for a dictionary of {size} values")
        valid = _normalize_valid(valid, len(codes))
        if valid is not None:
            codes = np.where(valid, codes, np.zeros(1, dtype=codes.dtype)).astype(codes.dtype, copy=False)
        buffers = {
            "codes": codes,
            "dictionary_offsets": dictionary_offsets,
            "dictionary_data": dictionary_data,
        }
        return cls("string", "dictionary", len(codes), buffers, valid)


def _check_1d(name: str, array: np.ndarray) -> None:
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")


def _check_offsets(name: str, offsets: np.ndarray, data_size: int) -> None:
    _check_1d(name, offsets)
    if len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != data_size:
        raise ValueError(f"{name} must start at 0 and end at the data size {data_size}")
    if len(offsets) > 1 and bool(np.any(np.diff(offsets) < 0)):
        raise ValueError(f"{name} must not decrease")


def _normalize_valid(valid: np.ndarray | None, length: int) -> np.ndarray | None:
    """Return a bool array of ``length`` items, or None when every row has a value."""
    if valid is None:
        return None
    valid = np.asarray(valid, dtype=bool)
    if valid.shape != (length,):
        raise ValueError(f"validity must have shape ({length},), got {valid.shape}")
    return None if bool(valid.all()) else valid


@dataclasses.dataclass(frozen=True)
class FileDigest:
    """Size in bytes and SHA-256 (hex) of a written file."""

    size: int
    sha256: str


class ColumnWriter:
    """Writes one column file whose sizes are known before its rows, a chunk of rows at a time.

    The header fixes where every buffer starts, so each chunk of rows goes straight to its place
    in the validity, values (or codes), offsets and data buffers. The writer keeps no more than
    the chunk it is given in memory, whatever the column's length, so the ETL can write columns
    larger than its memory. ``close`` checks that every buffer is complete, fsyncs the file and
    returns its digest.

    The constructor takes the sizes: ``length`` rows, ``null_count`` of them null, and
    ``data_bytes`` of UTF-8 for a plain string column. A dictionary column also gets its sorted
    dictionary and code dtype there.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        type_name: str,
        encoding: str,
        length: int,
        null_count: int,
        *,
        data_bytes: int = 0,
        dictionary: tuple[np.ndarray, np.ndarray] | None = None,
        code_dtype: np.dtype | str | None = None,
    ) -> None:
        self.path = Path(path)
        self.type = type_name
        self.encoding = encoding
        self.length = length
        self.null_count = null_count
        buffers = self._buffer_sizes(data_bytes, dictionary, code_dtype)
        header, self._layout, self._size = _plan_file(
            type_name, encoding, length, null_count, buffers
        )
        self._handle = open(self.path, "xb")  # noqa: SIM115 - closed by close()
        self._handle.write(header)
        # The file gets its final size now: the padding between buffers and any buffer not
        # yet written read as zeros, and offsets[0] = 0 needs no write at all.
        self._handle.truncate(self._size)
        self._handle.flush()
        self._written = dict.fromkeys(self._layout, 0)
        self._written["offsets"] = 8 if "offsets" in self._layout else 0
        self._rows = 0
        self._nulls = 0
        self._pending_bits = np.zeros(0, dtype=bool)  # validity bits not yet a whole byte
        if dictionary is not None:
            self._append("dictionary_offsets", np.ascontiguousarray(dictionary[0], dtype="<i8"))
            self._append("dictionary_data", np.ascontiguousarray(dictionary[1], dtype="<u1"))

    def _buffer_sizes(self, data_bytes, dictionary, code_dtype) -> list[tuple[str, int, str]]:
        length = self.length
        buffers: list[tuple[str, int, str]] = []
        if self.null_count:
            buffers.append(("validity", -(-length // 8), "|u1"))
        if self.type != "string":
            dtype = numpy_dtype(self.type)
            buffers.append(("values", length * dtype.itemsize, dtype.str))
        elif self.encoding == "plain":
            buffers += [("offsets", (length + 1) * 8, "<i8"), ("data", data_bytes, "|u1")]
        else:
            if dictionary is None or code_dtype is None:
                raise ValueError("a dictionary column needs its dictionary and code dtype")
            codes = np.dtype(code_dtype)
            if codes not in _CODE_DTYPES:
                allowed = ", ".join(dtype.str for dtype in _CODE_DTYPES)
                raise ValueError(f"codes dtype must be one of {allowed}, got {codes.str}")
            offsets, data = dictionary
            buffers += [("codes", length * codes.itemsize, codes.str),
                        ("dictionary_offsets", len(offsets) * 8, "<i8"),
                        ("dictionary_data", len(data), "|u1")]
        return buffers

    def append(self, rows: ColumnData) -> None:
        """Write the next rows, given as a ColumnData of this column's type and encoding."""
        if (rows.type, rows.encoding) != (self.type, self.encoding):
            raise ValueError(
                f"{self.path}: cannot append {rows.encoding} {rows.type} rows to a "
                f"{self.encoding} {self.type} column"
            )
        if self._rows + rows.length > self.length:
            raise ValueError(f"{self.path}: more than the {self.length} rows announced")
        if self.type != "string":
            self._append("values", rows.buffers["values"])
        elif self.encoding == "plain":
            # Chunk offsets start at 0; in the file they continue from the data written so far.
            base = self._written["data"]
            self._append("offsets", rows.buffers["offsets"][1:] + base)
            self._append("data", rows.buffers["data"])
        else:
            self._append("codes", rows.buffers["codes"])
        self._append_validity(rows.valid, rows.length)
        self._rows += rows.length

    def _append_validity(self, valid: np.ndarray | None, length: int) -> None:
        if valid is None:
            valid = np.ones(length, dtype=bool)
        else:
            self._nulls += int(length - np.count_nonzero(valid))
        if not self.null_count:
            if self._nulls:
                raise ValueError(f"{self.path}: null rows in a column announced without nulls")
            return
        # Bits pack eight to a byte, LSB first. A chunk that ends mid-byte leaves its last bits
        # pending until the next chunk (or close) completes the byte.
        bits = np.concatenate([self._pending_bits, valid]) if len(self._pending_bits) else valid
        whole = len(bits) - len(bits) % 8
        self._append("validity", np.packbits(bits[:whole], bitorder="little"))
        self._pending_bits = np.array(bits[whole:], dtype=bool)

    def _append(self, name: str, array: np.ndarray) -> None:
        offset, size, _ = self._layout[name]
        # A uint8 view: the buffer protocol does not export datetime64 arrays.
        view = memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
        position = self._written[name]
        if position + len(view) > size:
            raise ValueError(f"{self.path}: buffer {name!r} overflows its {size} bytes")
        done = 0
        while done < len(view):
            done += os.pwrite(self._handle.fileno(), view[done:], offset + position + done)
        self._written[name] = position + len(view)

    def close(self) -> FileDigest:
        """Finish the file: check that every buffer is complete, fsync it, return its digest."""
        try:
            if len(self._pending_bits):
                self._append("validity", np.packbits(self._pending_bits, bitorder="little"))
                self._pending_bits = np.zeros(0, dtype=bool)
            incomplete = [f"{name} ({self._written[name]} of {size} bytes)"
                          for name, (_, size, _) in self._layout.items()
                          if self._written[name] != size]
            if self._rows != self.length or self._nulls != self.null_count or incomplete:
                raise ValueError(
                    f"{self.path}: {self._rows} of {self.length} rows and {self._nulls} of "
                    f"{self.null_count} nulls written; incomplete buffers: "
                    f"{', '.join(incomplete) or 'none'}"
                )
            os.fsync(self._handle.fileno())
        finally:
            self._handle.close()
        return FileDigest(self._size, sha256_file(self.path))


def _plan_file(
    type_name: str, encoding: str, length: int, null_count: int,
    buffers: list[tuple[str, int, str]],
) -> tuple[bytes, dict[str, list[Any]], int]:
    """Return (preamble and padded header, buffer layout, file size) of a column file."""
    # The header's size depends on the offsets it lists, and the offsets depend on its size,
    # so lay the buffers out after a header size estimate and grow it until both agree.
    header_room = ALIGNMENT
    while True:
        layout: dict[str, list[Any]] = {}
        offset = _aligned(_PREAMBLE.size + header_room)
        for name, size, dtype in buffers:
            layout[name] = [offset, size, dtype]
            offset = _aligned(offset + size)
        header = {
            "type": type_name,
            "encoding": encoding,
            "length": length,
            "null_count": null_count,
            "buffers": layout,
        }
        header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        if len(header_bytes) <= header_room:
            break
        header_room = _aligned(len(header_bytes) + _PREAMBLE.size) - _PREAMBLE.size

    header_size = _aligned(_PREAMBLE.size + header_room) - _PREAMBLE.size
    header_bytes = header_bytes[:-1] + b" " * (header_size - len(header_bytes)) + b"\n"
    return _PREAMBLE.pack(MAGIC, *FORMAT_VERSION, header_size) + header_bytes, layout, offset


def write_column(path: str | os.PathLike[str], column: ColumnData) -> FileDigest:
    """Write ``column`` to a new file at ``path``, fsync it, and return its digest."""
    null_count = 0 if column.valid is None else int(column.length - column.valid.sum())
    options: dict[str, Any] = {}
    if column.encoding == "dictionary":
        options["dictionary"] = (column.buffers["dictionary_offsets"],
                                 column.buffers["dictionary_data"])
        options["code_dtype"] = column.buffers["codes"].dtype
    elif column.type == "string":
        options["data_bytes"] = int(column.buffers["data"].nbytes)
    writer = ColumnWriter(path, column.type, column.encoding, column.length, null_count, **options)
    writer.append(column)
    return writer.close()


# --- reading -------------------------------------------------------------------------------


class Column:
    """A column file mapped read-only; every array attribute is a view into the mapping."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as handle:
            try:
                self._mmap = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError:
                raise FormatError(f"{self.path}: empty file, not a rodata column") from None
        header = self._read_header()
        self.type: str = header["type"]
        self.encoding: str = header["encoding"]
        self.length: int = header["length"]
        self.null_count: int = header["null_count"]
        buffers = {name: self._map_buffer(name, *spec) for name, spec in header["buffers"].items()}
        self._check_buffers(buffers)

        self.validity: np.ndarray | None = buffers.get("validity")
        self.values: np.ndarray | None = buffers.get("values", buffers.get("codes"))
        self.offsets: np.ndarray | None = buffers.get("offsets")
        self.data: np.ndarray | None = buffers.get("data")
        self.dictionary_offsets: np.ndarray | None = buffers.get("dictionary_offsets")
        self.dictionary_data: np.ndarray | None = buffers.get("dictionary_data")
        self._dictionary: list[str] | None = None

    def _read_header(self) -> dict[str, Any]:
        if len(self._mmap) < _PREAMBLE.size:
            raise FormatError(f"{self.path}: file too short for a rodata column header")
        magic, major, minor, header_size = _PREAMBLE.unpack_from(self._mmap, 0)
        if magic != MAGIC:
            raise FormatError(f"{self.path}: not a rodata column file (magic {magic!r})")
        if major not in SUPPORTED_MAJOR_VERSIONS:
            raise FormatError(
                f"{self.path}: column format version {major}.{minor} is not supported; this "
                f"reader accepts major versions {sorted(SUPPORTED_MAJOR_VERSIONS)}. "
                "Rebuild the generation with a matching rodata-etl."
            )
        end = _PREAMBLE.size + header_size
        if end > len(self._mmap):
            raise FormatError(f"{self.path}: header of {header_size} bytes runs past the end of the file")
        try:
            header = json.loads(bytes(self._mmap[_PREAMBLE.size : end]))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise FormatError(f"{self.path}: header is not valid JSON: {error}") from None
        missing = {"type", "encoding", "length", "null_count", "buffers"} - set(header)
        if missing:
            raise FormatError(f"{self.path}: header lacks {', '.join(sorted(missing))}")
        if header["type"] not in TYPES or header["encoding"] not in ENCODINGS:
            raise FormatError(
                f"{self.path}: unknown type {header['type']!r} or encoding {header['encoding']!r}"
            )
        return header

    def _map_buffer(self, name: str, offset: int, size: int, dtype_text: str) -> np.ndarray:
        dtype = np.dtype(dtype_text)
        if offset % ALIGNMENT or offset + size > len(self._mmap) or size % dtype.itemsize:
            raise FormatError(
                f"{self.path}: buffer {name!r} at offset {offset} with {size} bytes is misaligned "
                f"or runs past the end of the file ({len(self._mmap)} bytes)"
            )
        if size == 0:
            return np.empty(0, dtype=dtype)
        return np.frombuffer(self._mmap, dtype=dtype, count=size // dtype.itemsize, offset=offset)

    def _check_buffers(self, buffers: dict[str, np.ndarray]) -> None:
        if self.type != "string":
            expected = {"values"}
        elif self.encoding == "plain":
            expected = {"offsets", "data"}
        else:
            expected = {"codes", "dictionary_offsets", "dictionary_data"}
        if self.null_count:
            expected.add("validity")
        if set(buffers) != expected:
            raise FormatError(
                f"{self.path}: buffers {sorted(buffers)} do not match a {self.encoding} "
                f"{self.type} column, which has {sorted(expected)}"
            )
        row_buffer = buffers.get("values", buffers.get("codes"))
        if row_buffer is not None and len(row_buffer) != self.length:
            raise FormatError(f"{self.path}: {len(row_buffer)} values for {self.length} rows")
        if "offsets" in buffers and len(buffers["offsets"]) != self.length + 1:
            raise FormatError(f"{self.path}: {len(buffers['offsets'])} offsets for {self.length} rows")
        if "validity" in buffers and len(buffers["validity"]) != -(-self.length // 8):
            raise FormatError(f"{self.path}: validity bitmap size does not match {self.length} rows")

    @property
    def nbytes(self) -> int:
        """Size of the mapped file in bytes."""
        return len(self._mmap)

    def valid_mask(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Return a bool array, True where rows ``start:stop`` hold a value (copies that slice)."""
        stop = self.length if stop is None else stop
        if self.validity is None:
            return np.ones(stop - start, dtype=bool)
        first_byte = start // 8
        bits = np.unpackbits(self.validity[first_byte : -(-stop // 8)], bitorder="little")
        skip = start - first_byte * 8
        return bits[skip : skip + stop - start].astype(bool)

    def dictionary_values(self) -> list[str]:
        """Return the dictionary of a dictionary-encoded column, in code order."""
        if self.encoding != "dictionary":
            raise ValueError(f"{self.path}: column is not dictionary-encoded")
        if self._dictionary is None:
            size = len(self.dictionary_offsets) - 1
            self._dictionary = _decode_strings(self.dictionary_offsets, self.dictionary_data, 0, size)
        return self._dictionary

    def string_at(self, row: int) -> str | None:
        """Return the string in ``row``, or None for a null."""
        return self.to_pylist(row, row + 1)[0]

    def to_pylist(self, start: int = 0, stop: int | None = None) -> list[Any]:
        """Return rows ``start:stop`` as Python values, None for nulls; copies only that slice."""
        stop = self.length if stop is None else stop
        if not 0 <= start <= stop <= self.length:
            raise IndexError(f"row range {start}:{stop} outside 0:{self.length}")
        if self.type != "string":
            items = self.values[start:stop].tolist()
        elif self.encoding == "plain":
            items = _decode_strings(self.offsets, self.data, start, stop)
        else:
            dictionary = self.dictionary_values()
            items = [dictionary[code] for code in self.values[start:stop].tolist()]
        if self.validity is not None:
            mask = self.valid_mask(start, stop)
            items = [item if present else None for item, present in zip(items, mask.tolist())]
        return items

    def close(self) -> None:
        """Drop this column's views and release the mapping.

        Views that a caller still references keep the mapping alive, because mmap raises
        BufferError on close while buffers are exported. It is then unmapped when the last of
        them is garbage collected.
        """
        self.validity = self.values = self.offsets = self.data = None
        self.dictionary_offsets = self.dictionary_data = None
        try:
            self._mmap.close()
        except BufferError:
            pass


def _decode_strings(offsets: np.ndarray, data: np.ndarray, start: int, stop: int) -> list[str]:
    bounds = offsets[start : stop + 1].tolist()
    if not bounds:
        return []
    blob = data[bounds[0] : bounds[-1]].tobytes()
    base = bounds[0]
    return [blob[a - base : b - base].decode("utf-8") for a, b in zip(bounds, bounds[1:])]


def open_column(path: str | os.PathLike[str]) -> Column:
    """Map the column file at ``path`` read-only; raises FormatError when it is not one."""
    return Column(path)


# --- manifests and generations -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ColumnSchema:
    """One column's entry in a manifest."""

    name: str
    type: str
    nullable: bool
    encoding: str
    file: str
    null_count: int = 0


@dataclasses.dataclass(frozen=True)
class Manifest:
    """Contents of a generation: schema, row count, key, files with checksums and provenance."""

    dataset: str
    generation: str
    created: str
    row_count: int
    key: list[str]
    key_unique: bool
    schema: list[ColumnSchema]
    files: dict[str, dict[str, Any]]
    sources: list[dict[str, Any]]
    input_fingerprint: str
    etl_version: str
    format_version: tuple[int, int] = FORMAT_VERSION
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def column(self, name: str) -> ColumnSchema:
        """Return the schema entry of column ``name``; raises KeyError when absent."""
        for entry in self.schema:
            if entry.name == name:
                return entry
        raise KeyError(name)

    def to_json(self) -> str:
        """Serialize to the manifest.json text (sorted keys, so equal manifests are equal bytes)."""
        document = dataclasses.asdict(self)
        document["format_version"] = list(self.format_version)
        return json.dumps(document, sort_keys=True, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, *, source: str = "manifest") -> Manifest:
        """Parse manifest text; raises FormatError naming ``source`` when it is invalid."""
        try:
            document = json.loads(text)
            version = tuple(document["format_version"])
            if version[0] not in SUPPORTED_MAJOR_VERSIONS:
                raise FormatError(
                    f"{source}: generation format version {version[0]}.{version[1]} is not "
                    f"supported; this reader accepts major versions {sorted(SUPPORTED_MAJOR_VERSIONS)}"
                )
            document["format_version"] = version
            document["schema"] = [ColumnSchema(**entry) for entry in document["schema"]]
            known = {field.name for field in dataclasses.fields(cls)}
            return cls(**{key: value for key, value in document.items() if key in known})
        except FormatError:
            raise
        except (ValueError, KeyError, TypeError, IndexError) as error:
            raise FormatError(f"{source}: invalid manifest: {error!r}") from None


def write_manifest(generation_dir: str | os.PathLike[str], manifest: Manifest) -> None:
    """Write manifest.json into ``generation_dir`` and fsync it."""
    path = Path(generation_dir) / MANIFEST_NAME
    with open(path, "x", encoding="utf-8") as handle:
        handle.write(manifest.to_json())
        handle.flush()
        os.fsync(handle.fileno())


def read_manifest(generation_dir: str | os.PathLike[str]) -> Manifest:
    """Read and validate the manifest of ``generation_dir``."""
    path = Path(generation_dir) / MANIFEST_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FormatError(f"{path}: missing; the generation is incomplete or not a generation") from None
    return Manifest.from_json(text, source=str(path))


def generation_dir(dataset_dir: str | os.PathLike[str], generation: str) -> Path:
    """Return the directory of ``generation`` inside ``dataset_dir``."""
    if not is_valid_name(generation):
        raise FormatError(f"invalid generation id {generation!r}")
    return Path(dataset_dir) / GENERATIONS_DIR / generation


def read_current(dataset_dir: str | os.PathLike[str]) -> str | None:
    """Return the generation id that CURRENT names, or None when nothing is published yet."""
    path = Path(dataset_dir) / CURRENT_NAME
    try:
        generation = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise FormatError(f"{path}: not an ASCII generation id") from None
    if not is_valid_name(generation):
        raise FormatError(f"{path}: invalid generation id {generation!r}")
    return generation


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a directory's entries to disk, so a rename in it survives a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_current(dataset_dir: str | os.PathLike[str], generation: str) -> None:
    """Point CURRENT at ``generation`` atomically: readers see the old or the new id, never a mix."""
    dataset_dir = Path(dataset_dir)
    target = generation_dir(dataset_dir, generation)
    if not (target / MANIFEST_NAME).is_file():
        raise FormatError(f"{target}: refusing to publish a generation without a manifest")
    temporary = dataset_dir / f".{CURRENT_NAME}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="ascii") as handle:
        handle.write(generation + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, dataset_dir / CURRENT_NAME)
    fsync_dir(dataset_dir)


def sha256_file(path: str | os.PathLike[str], *, chunk_size: int = 32 << 20) -> str:
    """Return the SHA-256 (hex) of a file, hashed through memory maps of ``chunk_size`` bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        # Hashing a memory map avoids copying the file into Python buffers. One window is
        # mapped at a time, because mapped file pages count in the process's RSS while mapped.
        for start in range(0, size, chunk_size):
            length = min(chunk_size, size - start)
            with mmap.mmap(handle.fileno(), length, access=mmap.ACCESS_READ, offset=start) as window:
                view = memoryview(window)
                digest.update(view)
                view.release()
    return digest.hexdigest()


class Generation:
    """An opened generation: its manifest and its memory-mapped columns by name."""

    def __init__(self, path: str | os.PathLike[str], *, verify_checksums: bool = False) -> None:
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self._check_files(verify_checksums)
        self.columns: dict[str, Column] = {}
        for entry in self.manifest.schema:
            column = open_column(self.path / entry.file)
            if column.length != self.manifest.row_count or column.type != entry.type:
                raise FormatError(
                    f"{column.path}: {column.type} column of {column.length} rows, but the "
                    f"manifest declares {entry.type} with {self.manifest.row_count} rows"
                )
            self.columns[entry.name] = column

    def _check_files(self, verify_checksums: bool) -> None:
        # Sizes are cheap to check and catch truncation. Checksums read every byte, so they are
        # optional and off by default to keep start-up fast on large generations.
        for relative, expected in sorted(self.manifest.files.items()):
            path = self.path / relative
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                raise FormatError(f"{path}: listed in the manifest but missing") from None
            if size != expected["size"]:
                raise FormatError(f"{path}: {size} bytes, manifest says {expected['size']}")
            if verify_checksums and sha256_file(path) != expected["sha256"]:
                raise FormatError(f"{path}: SHA-256 does not match the manifest")

    @property
    def nbytes(self) -> int:
        """Total size of the generation's column files in bytes."""
        return sum(entry["size"] for entry in self.manifest.files.values())

    def close(self) -> None:
        """Release every mapping (see Column.close for views still held elsewhere)."""
        for column in self.columns.values():
            column.close()


def open_generation(path: str | os.PathLike[str], *, verify_checksums: bool = False) -> Generation:
    """Open the generation directory at ``path``, validating its manifest and file sizes."""
    return Generation(path, verify_checksums=verify_checksums)


def column_file_name(index: int) -> str:
    """Return the relative path of the column at schema position ``index``.

    Files are named by position, not by column name, so any column name is safe on disk.
    """
    return f"columns/{index:04d}{COLUMN_SUFFIX}"


def encode_strings(items: Iterable[str | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Encode Python strings as (offsets, data, valid) for ColumnData.strings; None is null."""
    offsets = [0]
    chunks: list[bytes] = []
    valid: list[bool] = []
    total = 0
    for item in items:
        encoded = b"" if item is None else item.encode("utf-8")
        chunks.append(encoded)
        total += len(encoded)
        offsets.append(total)
        valid.append(item is not None)
    data = np.frombuffer(b"".join(chunks), dtype="<u1")
    return np.array(offsets, dtype="<i8"), data, np.array(valid, dtype=bool)
