"""Encoding of typed Arrow columns into rodata column data (see rodata.format).

Fixed-width types become plain little-endian arrays; null slots hold zero so that the bytes do
not depend on how the input was sharded. Strings become UTF-8 bytes plus int64 offsets, or a
dictionary when that is smaller: with encoding `auto` a string column is dictionary-encoded when
it has at most DICTIONARY_MAX_VALUES distinct values and at most one distinct value per
DICTIONARY_MIN_REPEAT rows. Such columns (airline codes, airports) then cost one or two bytes
per row. Dictionary values are sorted by UTF-8 bytes, so code order equals value order.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rodata import format as fmt

DICTIONARY_MAX_VALUES = 65536
DICTIONARY_MIN_REPEAT = 4


def encode_column(values: pa.Array, storage_type: str, *, encoding: str = "auto") -> fmt.ColumnData:
    """Return the ColumnData of `values`, a whole column or a chunk of one, as `storage_type`."""
    valid = None
    if values.null_count:
        valid = values.is_valid().to_numpy(zero_copy_only=False)

    if storage_type == "string":
        return _encode_strings(values, valid, encoding)

    # The raw value buffer is used as is: ColumnData.fixed zeroes the slots of null rows.
    if storage_type == "bool":
        bits = np.frombuffer(values.buffers()[1], dtype=np.uint8)
        array = np.unpackbits(bits, bitorder="little")[values.offset : values.offset + len(values)]
        array = array.astype(np.bool_)
    elif storage_type == "date":
        days = _value_buffer(values, np.dtype("<i4"))
        array = days.astype("<i8").view("<M8[D]")
    elif storage_type == "timestamp":
        array = _value_buffer(values, np.dtype("<i8")).view("<M8[us]")
    else:
        array = _value_buffer(values, fmt.numpy_dtype(storage_type))
    return fmt.ColumnData.fixed(storage_type, array, valid)


def _value_buffer(values: pa.Array, dtype: np.dtype) -> np.ndarray:
    """Return the fixed-width value buffer of `values` as a numpy view (null slots unspecified)."""
    if len(values) == 0:
        return np.zeros(0, dtype)
    buffer = values.buffers()[1]
    return np.frombuffer(buffer, dtype=dtype)[values.offset : values.offset + len(values)]


def dictionary_codes(values: pa.Array, encoding: str) -> tuple[np.ndarray, pa.Array] | None:
    """Return (codes, sorted dictionary) when the column should be dictionary-encoded.

    Codes index the dictionary sorted by UTF-8 bytes; null rows get code 0.
    """
    if encoding == "plain" or len(values) == 0:
        return None
    encoded = pc.dictionary_encode(values, null_encoding="mask")
    distinct = encoded.dictionary
    if encoding == "auto" and (
        len(distinct) > DICTIONARY_MAX_VALUES
        or len(distinct) * DICTIONARY_MIN_REPEAT > len(values)
    ):
        return None
    order = byte_order(distinct)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    indices = pc.fill_null(encoded.indices, 0).to_numpy(zero_copy_only=False)
    codes = rank[indices] if len(order) else np.zeros(len(values), np.int64)
    return codes, distinct.take(pa.array(order))


def byte_order(strings: pa.Array) -> np.ndarray:
    """Return the indices that sort `strings` by UTF-8 bytes."""
    # Arrow compares binary values byte by byte, which is UTF-8 byte order for strings.
    return pc.sort_indices(strings.cast(pa.large_binary())).to_numpy()


def code_dtype(dictionary_size: int) -> np.dtype:
    """Return the narrowest code dtype for a dictionary of `dictionary_size` values."""
    if dictionary_size <= 256:
        return np.dtype(np.uint8)
    return np.dtype("<u2") if dictionary_size <= 65536 else np.dtype("<i4")


def _encode_strings(values: pa.Array, valid: np.ndarray | None, encoding: str):
    encoded = dictionary_codes(values, encoding)
    if encoded is not None:
        codes, dictionary = encoded
        dict_offsets, dict_data = string_buffers(dictionary)
        return fmt.ColumnData.dictionary(codes.astype(code_dtype(len(dictionary))), dict_offsets,
                                         dict_data, valid)
    offsets, data = string_buffers(values)
    return fmt.ColumnData.strings(offsets, data, valid)


def string_buffers(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Return (int64 offsets of n + 1 entries starting at 0, uint8 UTF-8 bytes) of `values`."""
    if values.null_count:
        # Null slots may cover bytes in Arrow; stored null rows must be empty strings.
        values = pc.if_else(values.is_valid(), values, pa.scalar("", values.type))
    large = values.cast(pa.large_string())
    if isinstance(large, pa.ChunkedArray):
        large = large.combine_chunks()
    _, offsets_buffer, data_buffer = large.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype="<i8")[large.offset : large.offset + len(large) + 1]
    start, stop = int(offsets[0]), int(offsets[-1])
    data = (
        np.frombuffer(data_buffer, dtype=np.uint8)[start:stop]
        if data_buffer is not None else np.zeros(0, np.uint8)
    )
    return (offsets - start).astype("<i8"), data
