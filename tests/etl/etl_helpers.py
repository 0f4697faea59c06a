"""Helpers for the ETL tests: read a published dataset back and compare generations."""

from __future__ import annotations

from pathlib import Path

from rodata import format as fmt


def current_dir(dataset_dir: Path) -> Path | None:
    generation = fmt.read_current(dataset_dir)
    return None if generation is None else fmt.generation_dir(dataset_dir, generation)


def read_rows(dataset_dir: Path) -> dict[str, list]:
    """Return every column of the current generation as a Python list."""
    generation = fmt.open_generation(current_dir(dataset_dir), verify_checksums=True)
    try:
        return {name: column.to_pylist() for name, column in generation.columns.items()}
    finally:
        generation.close()


def column_bytes(generation_dir: Path) -> dict[str, bytes]:
    """Return the bytes of every file of a generation except the manifest's own metadata."""
    files = {
        str(path.relative_to(generation_dir)): path.read_bytes()
        for path in sorted((generation_dir / "columns").iterdir())
    }
    manifest = fmt.read_manifest(generation_dir)
    files["schema"] = repr(manifest.schema).encode()
    files["checksums"] = repr(sorted(manifest.files.items())).encode()
    files["row_count"] = str(manifest.row_count).encode()
    return files


def write_csv(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def write_spec(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
