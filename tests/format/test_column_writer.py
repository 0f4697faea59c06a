"""ColumnWriter: a column written a chunk of rows at a time is the file write_column writes."""

from __future__ import annotations

import numpy as np
import pytest

from rodata import format as fmt

ROWS = 1000
# Uneven chunk sizes, most not multiples of 8, so validity bytes straddle chunk boundaries.
CHUNKS = [1, 7, 3, 13, 200, 8, 768]


def rng():
    return np.random.default_rng(7)


def slices():
    start = 0
    for size in CHUNKS:
        yield start, start + size
        start += size
    assert start == ROWS


def strings(count: int) -> list[str | None]:
    words = ["", "a", "NA", "naïve", "日本語", "x" * 300]
    picks = rng().integers(0, len(words) + 1, count)
    return [None if pick == len(words) else words[pick] for pick in picks]


def fixed_column(type_name: str, valid: np.ndarray | None) -> fmt.ColumnData:
    values = rng().integers(0, 120, ROWS).astype(fmt.numpy_dtype(type_name))
    return fmt.ColumnData.fixed(type_name, values, valid)


def string_column(items: list[str | None], encoding: str) -> fmt.ColumnData:
    offsets, data, valid = fmt.encode_strings(items)
    if encoding == "plain":
        return fmt.ColumnData.strings(offsets, data, valid)
    distinct = sorted({item for item in items if item is not None}, key=str.encode)
    dict_offsets, dict_data, _ = fmt.encode_strings(distinct)
    codes = np.array([0 if item is None else distinct.index(item) for item in items], np.uint8)
    return fmt.ColumnData.dictionary(codes, dict_offsets, dict_data, valid)


def chunk_of(column: fmt.ColumnData, start: int, stop: int) -> fmt.ColumnData:
    valid = None if column.valid is None else column.valid[start:stop]
    if column.type != "string":
        return fmt.ColumnData.fixed(column.type, column.buffers["values"][start:stop], valid)
    if column.encoding == "plain":
        offsets = column.buffers["offsets"][start : stop + 1]
        data = column.buffers["data"][offsets[0] : offsets[-1]]
        return fmt.ColumnData.strings(offsets - offsets[0], data, valid)
    return fmt.ColumnData.dictionary(column.buffers["codes"][start:stop],
                                     column.buffers["dictionary_offsets"],
                                     column.buffers["dictionary_data"], valid)


def writer_for(path, column: fmt.ColumnData) -> fmt.ColumnWriter:
    null_count = 0 if column.valid is None else int(ROWS - column.valid.sum())
    if column.encoding == "dictionary":
        return fmt.ColumnWriter(path, "string", "dictionary", ROWS, null_count,
                                dictionary=(column.buffers["dictionary_offsets"],
                                            column.buffers["dictionary_data"]),
                                code_dtype=column.buffers["codes"].dtype)
    return fmt.ColumnWriter(path, column.type, column.encoding, ROWS, null_count,
                            data_bytes=int(column.buffers.get("data", np.zeros(0)).nbytes))


def columns() -> dict[str, fmt.ColumnData]:
    some_null = rng().random(ROWS) > 0.3
    items = strings(ROWS)
    return {
        "int32": fixed_column("int32", None),
        "int16-nulls": fixed_column("int16", some_null),
        "float64-nulls": fixed_column("float64", some_null),
        "timestamp-nulls": fixed_column("timestamp", some_null),
        "bool-nulls": fixed_column("bool", some_null),
        "string-plain": string_column(items, "plain"),
        "string-dictionary": string_column(items, "dictionary"),
    }


@pytest.mark.parametrize("case", list(columns()))
def test_chunked_file_equals_whole_file(tmp_path, case):
    column = columns()[case]
    whole = fmt.write_column(tmp_path / "whole.rdc", column)

    writer = writer_for(tmp_path / "chunked.rdc", column)
    for start, stop in slices():
        writer.append(chunk_of(column, start, stop))
    chunked = writer.close()

    assert (tmp_path / "chunked.rdc").read_bytes() == (tmp_path / "whole.rdc").read_bytes()
    assert chunked == whole
    reopened = fmt.open_column(tmp_path / "chunked.rdc")
    try:
        assert reopened.length == ROWS
        assert reopened.null_count == (0 if column.valid is None else int(ROWS - column.valid.sum()))
    finally:
        reopened.close()


def test_close_rejects_missing_rows(tmp_path):
    column = fixed_column("int64", None)
    writer = writer_for(tmp_path / "short.rdc", column)
    writer.append(chunk_of(column, 0, 999))
    with pytest.raises(ValueError, match="999 of 1000 rows"):
        writer.close()


def test_append_rejects_extra_rows(tmp_path):
    column = fixed_column("int64", None)
    writer = writer_for(tmp_path / "long.rdc", column)
    writer.append(column)
    with pytest.raises(ValueError, match="more than the 1000 rows announced"):
        writer.append(chunk_of(column, 0, 1))


def test_append_rejects_unannounced_nulls(tmp_path):
    valid = np.ones(ROWS, dtype=bool)
    valid[5] = False
    writer = fmt.ColumnWriter(tmp_path / "c.rdc", "int8", "plain", ROWS, 0)
    with pytest.raises(ValueError, match="null rows in a column announced without nulls"):
        writer.append(fixed_column("int8", valid))


def test_close_rejects_wrong_null_count(tmp_path):
    column = fixed_column("int8", rng().random(ROWS) > 0.5)
    writer = fmt.ColumnWriter(tmp_path / "c.rdc", "int8", "plain", ROWS, 3)
    writer.append(column)
    with pytest.raises(ValueError, match="nulls written"):
        writer.close()


def test_append_rejects_another_type(tmp_path):
    writer = fmt.ColumnWriter(tmp_path / "c.rdc", "int8", "plain", ROWS, 0)
    with pytest.raises(ValueError, match="cannot append plain int16 rows to a plain int8 column"):
        writer.append(fixed_column("int16", None))
