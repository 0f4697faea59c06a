"""Publishing: staging directories, the dataset lock, atomic switch of CURRENT, retention.

A generation is built under <dataset>/.staging/<generation>/, every file is fsynced (the format
writer fsyncs column files; the manifest and directories are fsynced here), the directory is
renamed into <dataset>/generations/ and only then CURRENT is replaced atomically. Until that last
step readers see the previous generation. A run that dies earlier leaves only files under
.staging/, which no reader opens and which the next run deletes.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rodata import format as fmt

log = logging.getLogger("rodata.etl")
STAGING = fmt.STAGING_DIR
GENERATIONS = fmt.GENERATIONS_DIR
LOCK_FILE = ".lock"


class LockedError(RuntimeError):
    """Another ETL run holds the dataset's lock."""


@dataclass(frozen=True)
class SourceFile:
    """A source file as recorded in the manifest: path relative to --source-dir, size, digest."""

    path: str
    absolute: str
    size: int
    mtime_ns: int
    sha256: str = ""


def fsync_directory(path: Path) -> None:
    """Flush a directory entry change (create, rename, unlink) to disk."""
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_file(path: Path) -> None:
    """Flush one file's data to disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


@contextmanager
def dataset_lock(dataset_dir: Path):
    """Hold an exclusive lock on the dataset for the duration of a run or merge."""
    dataset_dir.mkdir(parents=True, exist_ok=True)
    with open(dataset_dir / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise LockedError(
                f"{dataset_dir}: another rodata-etl run holds {dataset_dir / LOCK_FILE}; "
                "wait for it to finish"
            ) from error
        yield


def clean_staging(
    dataset_dir: Path, *, keep: set[str] = frozenset(), quiet: bool = False
) -> list[str]:
    """Delete everything under .staging/ except names in `keep`; return the names removed.

    Called at the start of a run (leftovers of interrupted runs, logged) and at its end (the
    run's own scratch files, with `quiet`).
    """
    staging = dataset_dir / STAGING
    removed = []
    if not staging.is_dir():
        return removed
    for entry in sorted(staging.iterdir()):
        if entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry.name)
    if removed and not quiet:
        log.info("removed %d leftover(s) of interrupted runs from %s", len(removed), staging)
    return removed


def input_fingerprint(sources: list[SourceFile], spec_digest: str) -> str:
    """Return the digest of everything a generation is built from: format, spec and sources."""
    digest = hashlib.sha256()
    digest.update(f"format {fmt.FORMAT_VERSION}\nspec {spec_digest}\n".encode())
    for source in sources:
        digest.update(f"{source.path}\0{source.size}\0{source.sha256}\n".encode())
    return digest.hexdigest()


def publish_generation(dataset_dir: Path, staged: Path, generation: str) -> Path:
    """Move a complete, fsynced generation from staging into generations/ and switch CURRENT."""
    generations = dataset_dir / GENERATIONS
    generations.mkdir(parents=True, exist_ok=True)
    fsync_directory(staged)
    target = generations / generation
    os.rename(staged, target)
    fsync_directory(generations)
    fsync_directory(staged.parent)
    fmt.write_current(dataset_dir, generation)
    return target


def prune_generations(dataset_dir: Path, keep_old: int) -> list[str]:
    """Delete all but the `keep_old` newest generations besides the one CURRENT names.

    Readers that still map files of a deleted generation keep working: unlinked files stay
    readable through open mappings until they are unmapped.
    """
    generations = dataset_dir / GENERATIONS
    current = fmt.read_current(dataset_dir)
    if not generations.is_dir():
        return []
    others = sorted(
        (entry for entry in generations.iterdir() if entry.is_dir() and entry.name != current),
        key=lambda entry: entry.name,
        reverse=True,
    )
    removed = []
    for entry in others[keep_old:]:
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry.name)
    if removed:
        fsync_directory(generations)
        log.info("removed old generation(s) %s of %s", ", ".join(removed), dataset_dir.name)
    return removed
