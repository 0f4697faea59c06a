"""Small generations written with rodata.format's writer, for API tests that need exact data."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

from rodata import format as fmt


def column_data(type_name: str, values: list[Any], encoding: str = "plain") -> fmt.ColumnData:
    """Return ColumnData for Python values (None = null)."""
    valid = np.array([v is not None for v in values], dtype=bool)
    has_nulls = not valid.all()
    if type_name == "string":
        if encoding == "dictionary":
            dictionary = sorted({v for v in values if v is not None}, key=lambda s: s.encode())
            index = {v: i for i, v in enumerate(dictionary)}
            codes = np.array([index.get(v, 0) for v in values], dtype=np.uint8 if len(dictionary) < 256 else np.int32)
            offsets, data, _ = fmt.encode_strings(dictionary)
            return fmt.ColumnData.dictionary(codes, offsets, data, valid if has_nulls else None)
        offsets, data, _ = fmt.encode_strings(values)
        return fmt.ColumnData.strings(offsets, data, valid if has_nulls else None)
    dtype = fmt.numpy_dtype(type_name)
    filler = {"date": np.datetime64(0, "D"), "timestamp": np.datetime64(0, "us")}.get(type_name, 0)
    array = np.array([filler if v is None else v for v in values], dtype=dtype)
    return fmt.ColumnData.fixed(type_name, array, valid if has_nulls else None)


def write_generation(data_root: Path, dataset: str, generation: str,
                     columns: dict[str, tuple], key: list[str], *, publish: bool = True,
                     key_unique: bool = True) -> Path:
    """Write a generation; `columns` maps name -> (type, values[, encoding]), rows sorted by key."""
    dataset_dir = Path(data_root) / dataset
    gen_dir = dataset_dir / "generations" / generation
    (gen_dir / "columns").mkdir(parents=True)
    schema = []
    files = {}
    row_count = None
    for index, (name, spec) in enumerate(columns.items()):
        type_name, values = spec[0], spec[1]
        encoding = spec[2] if len(spec) > 2 else "plain"
        relative = fmt.column_file_name(index)
        digest = fmt.write_column(gen_dir / relative, column_data(type_name, values, encoding))
        files[relative] = {"size": digest.size, "sha256": digest.sha256}
        nulls = sum(v is None for v in values)
        schema.append(fmt.ColumnSchema(name, type_name, nulls > 0, encoding, relative, nulls))
        row_count = len(values)
    manifest = fmt.Manifest(
        dataset=dataset, generation=generation,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        row_count=row_count or 0, key=key, key_unique=key_unique, schema=schema, files=files,
        sources=[], input_fingerprint="test", etl_version="test")
    fmt.write_manifest(gen_dir, manifest)
    if publish:
        fmt.write_current(dataset_dir, generation)
    return gen_dir
