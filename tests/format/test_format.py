"""Round trips and rejection tests for rodata.format."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from rodata import format as fmt


def write_and_open(tmp_path, column: fmt.ColumnData, name: str = "c.rdc") -> fmt.Column:
    path = tmp_path / name
    fmt.write_column(path, column)
    return fmt.open_column(path)


FIXED_CASES = [
    ("int8", [-128, 0, 127]),
    ("int16", [-32768, 5, 32767]),
    ("int32", [-(2**31), 7, 2**31 - 1]),
    ("int64", [-(2**63), 0, 2**63 - 1]),
    ("uint8", [0, 1, 255]),
    ("uint16", [0, 1, 65535]),
    ("uint32", [0, 1, 2**32 - 1]),
    ("uint64", [0, 1, 2**64 - 1]),
    ("float32", [-1.5, 0.0, 3.25]),
    ("float64", [-1e300, float("inf"), 2.5]),
    ("bool", [True, False, True]),
    ("date", np.array(["1970-01-01", "2013-01-01", "2099-12-31"], dtype="M8[D]")),
    ("timestamp", np.array(["2013-01-01T05:00:00", "1969-12-31T23:59:59.5", "2038-01-19T03:14:08"], dtype="M8[us]")),
]


@pytest.mark.parametrize(("type_name", "items"), FIXED_CASES, ids=[case[0] for case in FIXED_CASES])
def test_fixed_round_trip(tmp_path, type_name, items):
    values = np.asarray(items, dtype=fmt.numpy_dtype(type_name))
    column = write_and_open(tmp_path, fmt.ColumnData.fixed(type_name, values))

    assert column.type == type_name
    assert column.length == 3
    assert column.null_count == 0
    assert column.validity is None
    assert column.values.dtype == fmt.numpy_dtype(type_name)
    np.testing.assert_array_equal(column.values, values)


@pytest.mark.parametrize(("type_name", "items"), FIXED_CASES, ids=[case[0] for case in FIXED_CASES])
def test_fixed_nulls_round_trip(tmp_path, type_name, items):
    values = np.asarray(items, dtype=fmt.numpy_dtype(type_name))
    valid = np.array([True, False, True])
    column = write_and_open(tmp_path, fmt.ColumnData.fixed(type_name, values, valid))

    assert column.null_count == 1
    np.testing.assert_array_equal(column.valid_mask(), valid)
    assert column.to_pylist()[1] is None
    assert column.to_pylist()[0] == values[0].item()
    # A null slot is stored as zero whatever the caller passed in it.
    assert column.values[1] == np.zeros(1, dtype=values.dtype)[0]


def test_values_are_zero_copy_views(tmp_path):
    column = write_and_open(tmp_path, fmt.ColumnData.fixed("int64", np.arange(1000)))

    assert not column.values.flags.owndata
    assert not column.values.flags.writeable
    # The buffer's file offset is aligned, so the mapped address is aligned too (mmap is page aligned).
    assert column.values.ctypes.data % fmt.ALIGNMENT == 0


def test_buffers_start_at_aligned_offsets(tmp_path):
    offsets, data, valid = fmt.encode_strings(["a", None, "ccc"])
    path = tmp_path / "s.rdc"
    fmt.write_column(path, fmt.ColumnData.strings(offsets, data, valid))
    raw = path.read_bytes()

    magic, major, minor, header_size = struct.unpack_from("<6sBBI", raw)
    header = json.loads(raw[12 : 12 + header_size])
    assert (magic, major, minor) == (b"\x93RDCOL", 1, 0)
    assert (12 + header_size) % 64 == 0
    assert raw[12 + header_size - 1 : 12 + header_size] == b"\n"
    assert set(header["buffers"]) == {"validity", "offsets", "data"}
    for offset, _size, _dtype in header["buffers"].values():
        assert offset % 64 == 0
    assert len(raw) % 64 == 0


def test_long_header_grows_to_fit(tmp_path):
    # A dictionary column has the most buffers, so its header passes the first 64-byte guess.
    offsets, data, _ = fmt.encode_strings(["AA", "B6", "UA"])
    column = write_and_open(
        tmp_path, fmt.ColumnData.dictionary(np.array([2, 0, 1, 0], dtype="<u1"), offsets, data, np.array([1, 1, 0, 1], bool))
    )

    assert column.to_pylist() == ["UA", "AA", None, "AA"]


def test_plain_strings_round_trip(tmp_path):
    items = ["NA", "", None, "snowman \u2603", "x" * 200_000]
    offsets, data, valid = fmt.encode_strings(items)
    column = write_and_open(tmp_path, fmt.ColumnData.strings(offsets, data, valid))

    assert column.encoding == "plain"
    assert column.null_count == 1
    assert column.to_pylist() == items
    assert column.to_pylist(3, 5) == items[3:5]
    assert column.string_at(0) == "NA"
    assert column.string_at(2) is None


def test_dictionary_round_trip(tmp_path):
    dictionary = ["AA", "B6", "UA"]
    offsets, data, _ = fmt.encode_strings(dictionary)
    codes = np.array([2, 2, 0, 1, 0], dtype="<u1")
    column = write_and_open(tmp_path, fmt.ColumnData.dictionary(codes, offsets, data))

    assert column.encoding == "dictionary"
    assert column.dictionary_values() == dictionary
    assert column.to_pylist() == ["UA", "UA", "AA", "B6", "AA"]
    np.testing.assert_array_equal(column.values, codes)


def test_dictionary_rejects_codes_out_of_range():
    offsets, data, _ = fmt.encode_strings(["a"])

    with pytest.raises(ValueError, match="codes must lie in"):
        fmt.ColumnData.dictionary(np.array([1], dtype="<u1"), offsets, data)


@pytest.mark.parametrize("type_name", sorted(fmt.TYPES - {"string"}))
def test_empty_fixed_column(tmp_path, type_name):
    column = write_and_open(tmp_path, fmt.ColumnData.fixed(type_name, np.empty(0, fmt.numpy_dtype(type_name))))

    assert column.length == 0
    assert len(column.values) == 0
    assert column.to_pylist() == []


def test_empty_string_columns(tmp_path):
    offsets, data, valid = fmt.encode_strings([])
    plain = write_and_open(tmp_path, fmt.ColumnData.strings(offsets, data, valid), "plain.rdc")
    dictionary = write_and_open(
        tmp_path, fmt.ColumnData.dictionary(np.empty(0, "<u1"), offsets, data), "dict.rdc"
    )

    assert plain.to_pylist() == []
    assert dictionary.to_pylist() == []
    assert dictionary.dictionary_values() == []


def test_valid_mask_slices_across_bytes(tmp_path):
    valid = np.arange(37) % 3 != 0
    column = write_and_open(tmp_path, fmt.ColumnData.fixed("int32", np.arange(37), valid))

    for start, stop in [(0, 37), (5, 6), (7, 17), (16, 24), (30, 37), (37, 37)]:
        np.testing.assert_array_equal(column.valid_mask(start, stop), valid[start:stop])


def test_unsupported_major_version_rejected(tmp_path):
    path = tmp_path / "c.rdc"
    fmt.write_column(path, fmt.ColumnData.fixed("int8", np.arange(3)))
    raw = bytearray(path.read_bytes())
    raw[6] = 2
    path.write_bytes(bytes(raw))

    with pytest.raises(fmt.FormatError, match=r"version 2\.0 is not supported"):
        fmt.open_column(path)


def test_newer_minor_version_accepted(tmp_path):
    path = tmp_path / "c.rdc"
    fmt.write_column(path, fmt.ColumnData.fixed("int8", np.arange(3)))
    raw = bytearray(path.read_bytes())
    raw[7] = 9
    path.write_bytes(bytes(raw))

    assert fmt.open_column(path).to_pylist() == [0, 1, 2]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"\x93NUMPY\x01\x00\x10\x00\x00\x00", "not a rodata column"),
        (b"\x93RDCOL\x01\x00\xff\xff\x00\x00{}", "runs past the end"),
    ],
)
def test_corrupt_files_rejected(tmp_path, content, message):
    path = tmp_path / "bad.rdc"
    path.write_bytes(content)

    with pytest.raises(fmt.FormatError, match=message):
        fmt.open_column(path)


def test_truncated_buffer_rejected(tmp_path):
    path = tmp_path / "c.rdc"
    fmt.write_column(path, fmt.ColumnData.fixed("int64", np.arange(100)))
    path.write_bytes(path.read_bytes()[:200])

    with pytest.raises(fmt.FormatError, match="runs past the end"):
        fmt.open_column(path)


def test_write_refuses_to_overwrite(tmp_path):
    # A mapped file must never be rewritten in place, so the writer only creates new files.
    path = tmp_path / "c.rdc"
    fmt.write_column(path, fmt.ColumnData.fixed("int8", np.arange(3)))

    with pytest.raises(FileExistsError):
        fmt.write_column(path, fmt.ColumnData.fixed("int8", np.arange(3)))


def test_output_is_deterministic(tmp_path):
    values = np.array([5, 6, 7], dtype="<i4")
    valid = np.array([True, False, True])
    first = fmt.write_column(tmp_path / "a.rdc", fmt.ColumnData.fixed("int32", values, valid))
    garbage = values.copy()
    garbage[1] = 12345
    second = fmt.write_column(tmp_path / "b.rdc", fmt.ColumnData.fixed("int32", garbage, valid))

    assert first == second
    assert first.sha256 == fmt.sha256_file(tmp_path / "a.rdc")


def make_generation(dataset_dir, generation: str, ids: list[int]) -> fmt.Manifest:
    target = dataset_dir / fmt.GENERATIONS_DIR / generation
    (target / "columns").mkdir(parents=True)
    path = fmt.column_file_name(0)
    digest = fmt.write_column(target / path, fmt.ColumnData.fixed("int64", np.array(ids)))
    manifest = fmt.Manifest(
        dataset=dataset_dir.name,
        generation=generation,
        created="2026-12-04T20:00:00Z",
        row_count=len(ids),
        key=["id"],
        key_unique=True,
        schema=[fmt.ColumnSchema("id", "int64", False, "plain", path)],
        files={path: {"size": digest.size, "sha256": digest.sha256}},
        sources=[],
        input_fingerprint="test",
        etl_version="test",
    )
    fmt.write_manifest(target, manifest)
    return manifest


def test_generation_round_trip(tmp_path):
    dataset_dir = tmp_path / "flights"
    written = make_generation(dataset_dir, "g1", [1, 2, 3])
    fmt.write_current(dataset_dir, "g1")

    assert fmt.read_current(dataset_dir) == "g1"
    generation = fmt.open_generation(fmt.generation_dir(dataset_dir, "g1"), verify_checksums=True)
    assert generation.manifest == written
    assert generation.columns["id"].to_pylist() == [1, 2, 3]
    generation.close()


def test_empty_generation_loads(tmp_path):
    dataset_dir = tmp_path / "empty"
    make_generation(dataset_dir, "g0", [])

    generation = fmt.open_generation(fmt.generation_dir(dataset_dir, "g0"))
    assert generation.manifest.row_count == 0
    assert generation.columns["id"].to_pylist() == []


def test_current_switch_is_a_rename(tmp_path):
    dataset_dir = tmp_path / "flights"
    make_generation(dataset_dir, "g1", [1])
    make_generation(dataset_dir, "g2", [1, 2])
    fmt.write_current(dataset_dir, "g1")
    fmt.write_current(dataset_dir, "g2")

    assert fmt.read_current(dataset_dir) == "g2"
    assert sorted(p.name for p in dataset_dir.iterdir()) == ["CURRENT", "generations"]


def test_current_refuses_incomplete_generation(tmp_path):
    dataset_dir = tmp_path / "flights"
    (dataset_dir / fmt.GENERATIONS_DIR / "g1").mkdir(parents=True)

    with pytest.raises(fmt.FormatError, match="without a manifest"):
        fmt.write_current(dataset_dir, "g1")
    assert fmt.read_current(dataset_dir) is None


def test_checksum_mismatch_detected(tmp_path):
    dataset_dir = tmp_path / "flights"
    make_generation(dataset_dir, "g1", [1, 2, 3])
    column_path = fmt.generation_dir(dataset_dir, "g1") / fmt.column_file_name(0)
    raw = bytearray(column_path.read_bytes())
    raw[-1] ^= 0xFF
    column_path.write_bytes(bytes(raw))

    fmt.open_generation(fmt.generation_dir(dataset_dir, "g1"))  # sizes match: accepted
    with pytest.raises(fmt.FormatError, match="SHA-256 does not match"):
        fmt.open_generation(fmt.generation_dir(dataset_dir, "g1"), verify_checksums=True)


def test_missing_file_detected(tmp_path):
    dataset_dir = tmp_path / "flights"
    make_generation(dataset_dir, "g1", [1])
    (fmt.generation_dir(dataset_dir, "g1") / fmt.column_file_name(0)).unlink()

    with pytest.raises(fmt.FormatError, match="listed in the manifest but missing"):
        fmt.open_generation(fmt.generation_dir(dataset_dir, "g1"))


def test_manifest_version_rejected(tmp_path):
    dataset_dir = tmp_path / "flights"
    make_generation(dataset_dir, "g1", [1])
    path = fmt.generation_dir(dataset_dir, "g1") / fmt.MANIFEST_NAME
    document = json.loads(path.read_text())
    document["format_version"] = [7, 0]
    path.write_text(json.dumps(document))

    with pytest.raises(fmt.FormatError, match=r"generation format version 7\.0 is not supported"):
        fmt.read_manifest(path.parent)


@pytest.mark.parametrize("name", ["..", "../x", "a/b", "a\0b", "", ".hidden", "x" * 200])
def test_invalid_names_rejected(tmp_path, name):
    assert not fmt.is_valid_name(name)
    with pytest.raises(fmt.FormatError, match="invalid generation id"):
        fmt.generation_dir(tmp_path, name)


def test_current_with_path_trick_rejected(tmp_path):
    (tmp_path / "CURRENT").write_text("../../etc\n")

    with pytest.raises(fmt.FormatError, match="invalid generation id"):
        fmt.read_current(tmp_path)
