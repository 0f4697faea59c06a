"""ETL benchmark: rodata-etl beside DuckDB, polars and pyarrow on the same CSV and cores.

Each tool converts the same ~1 GB CSV into a columnar file on disk, on 1 core (taskset -c 0) and
on 2 cores (taskset -c 0,1), in one session. The CSV is flights repeated 30 times with a unique
id column (see make_input.py).

- rodata-etl: `run` of bench/etl/flights30.yaml into a fresh data root (typed, validated,
  keyed, checksummed, fsynced and published generation).
- DuckDB: `COPY (SELECT * FROM read_csv(...)) TO 'out.parquet'` with `SET threads`.
- polars: `read_csv` then `write_ipc`, with POLARS_MAX_THREADS.
- pyarrow: `pyarrow.csv.read_csv` then `write_feather`, with the CPU and I/O pools sized.

The anchors read "NA" as missing, as the rodata spec declares. Wall time comes from hyperfine
(mean of --runs runs, with one warm-up run so the input is in the page cache), peak RSS from one
extra run under /usr/bin/time -v.

Usage: python bench/etl/bench.py --csv /path/flights30.csv --work DIR [--runs 3]
Writes DIR/results.json and prints a Markdown table. `--table-only` prints the table again from
an existing DIR/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


TOOLS = ("rodata-etl", "duckdb", "polars", "pyarrow")


def commands(csv: Path, work: Path, threads: int) -> dict[str, tuple[str, str]]:
    """Return {tool: (prepare command, benchmark command)} for `threads` threads.

    Each prepare command ends with `sync`, so that no run starts while the kernel is still
    writing back the previous run's output (rodata-etl fsyncs its generation and would wait).
    """
    python = shlex.quote(sys.executable)
    out = work / f"out-{threads}"
    root = out / "rodata-root"
    csv_text = str(csv).replace("'", "''")
    duckdb_sql = (
        f"SET threads={threads}; COPY (SELECT * FROM read_csv('{csv_text}', nullstr='NA')) "
        f"TO '{out}/duckdb.parquet' (FORMAT parquet)"
    )
    return {
        "rodata-etl": (
            f"rm -rf {root} && sync",
            (f"env PYTHONPATH={REPO} {python} -m etl run --spec {REPO}/bench/etl/flights30.yaml "
            f"--data-root {root} --source-dir {csv.parent} --workers {threads} --no-progress "
            "--log-level warning"),
        ),
        "duckdb": (
            f"rm -f {out}/duckdb.parquet && sync",
            f"{python} -c {shlex.quote(f'import duckdb; duckdb.connect().execute({duckdb_sql!r})')}",
        ),
        "polars": (
            f"rm -f {out}/polars.arrow && sync",
            f"env POLARS_MAX_THREADS={threads} {python} -c " + shlex.quote(
                f"import polars as pl; pl.read_csv({str(csv)!r}, null_values=['NA'])"
                f".write_ipc({str(out / 'polars.arrow')!r})"
            ),
        ),
        "pyarrow": (
            f"rm -f {out}/pyarrow.feather && sync",
            f"{python} -c " + shlex.quote(
                "import pyarrow as pa, pyarrow.csv as c, pyarrow.feather as f; "
                f"pa.set_cpu_count({threads}); pa.set_io_thread_count({threads}); "
                f"t = c.read_csv({str(csv)!r}, convert_options=c.ConvertOptions("
                "null_values=['NA'])); "
                f"f.write_feather(t, {str(out / 'pyarrow.feather')!r})"
            ),
        ),
    }


def peak_rss_kib(command: str, cores: str) -> int:
    """Run `command` once under /usr/bin/time -v and return its peak RSS in KiB."""
    result = subprocess.run(
        ["taskset", "-c", cores, "/usr/bin/time", "-v", "sh", "-c", command],
        capture_output=True, text=True, check=True,
    )
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark rodata-etl against anchors.")
    parser.add_argument("--csv", required=True, type=Path, help="input CSV (make_input.py)")
    parser.add_argument("--work", required=True, type=Path, help="scratch directory")
    parser.add_argument("--runs", type=int, default=3, help="hyperfine runs per command")
    parser.add_argument("--rows", type=int, default=10_103_280, help="data rows in the CSV")
    parser.add_argument("--table-only", action="store_true",
                        help="print the table from an existing results.json and exit")
    parser.add_argument("--interleave", action="store_true",
                        help="instead of hyperfine, run the tools round-robin --runs times under "
                             "/usr/bin/time -v and report the fastest run of each (steadier "
                             "when other work shares the machine)")
    args = parser.parse_args()
    if args.table_only:
        print(markdown(json.loads((args.work / "results.json").read_text())))
        return
    if args.interleave:
        interleave(args)
        return

    results = {"machine": {
        "cpus_allowed": len(os.sched_getaffinity(0)),
        "cpu": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_before": os.getloadavg(),
    }, "runs": []}
    for threads, cores in ((1, "0"), (2, "0,1")):
        (args.work / f"out-{threads}").mkdir(parents=True, exist_ok=True)
        for tool, (prepare, command) in commands(args.csv, args.work, threads).items():
            export = args.work / f"hyperfine-{tool}-{threads}.json"
            subprocess.run(
                ["hyperfine", "--runs", str(args.runs), "--warmup", "1", "--prepare", prepare,
                 "--export-json", str(export), "--command-name", f"{tool} x{threads}",
                 f"taskset -c {cores} {command}"],
                check=True, stdout=sys.stderr,
            )
            mean = json.loads(export.read_text())["results"][0]
            subprocess.run(["sh", "-c", prepare], check=True)
            rss = peak_rss_kib(command, cores)
            results["runs"].append({
                "tool": tool, "threads": threads, "mean_s": mean["mean"],
                "stddev_s": mean["stddev"] or 0.0, "rows_per_s": args.rows / mean["mean"],
                # CPU seconds (user + system, all processes) vary less than wall time on a
                # machine shared with other work.
                "cpu_s": mean["user"] + mean["system"],
                "peak_rss_mib": rss / 1024, "command": command,
            })
    results["machine"]["load_average_after"] = os.getloadavg()
    (args.work / "results.json").write_text(json.dumps(results, indent=2))
    print(markdown(results))


def timed_run(command: str, cores: str) -> dict:
    """Run `command` once under /usr/bin/time -v; return wall and CPU seconds and peak RSS."""
    result = subprocess.run(
        ["taskset", "-c", cores, "/usr/bin/time", "-v", "sh", "-c", command],
        capture_output=True, text=True, check=True,
    )

    def field(label: str) -> str:
        return re.search(rf"{re.escape(label)}: (\S+)", result.stderr).group(1)

    wall = 0.0
    for part in field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":"):
        wall = wall * 60 + float(part)
    return {
        "wall_s": wall,
        "cpu_s": float(field("User time (seconds)")) + float(field("System time (seconds)")),
        "peak_rss_mib": int(field("Maximum resident set size (kbytes)")) / 1024,
    }


def interleave(args) -> None:
    """Run every (tool, cores) pair once per round, --runs rounds; keep each pair's fastest."""
    results = {"machine": {
        "cpus_allowed": len(os.sched_getaffinity(0)), "cpu": _cpu_model(),
        "kernel": platform.release(), "python": platform.python_version(),
        "load_average_before": os.getloadavg(), "mode": "interleaved, fastest of --runs",
    }, "runs": []}
    # Each tool's 1-core and 2-core runs follow each other, so the two runs of a per-round
    # speedup are seconds apart.
    pairs = []
    for threads, cores in ((1, "0"), (2, "0,1")):
        (args.work / f"out-{threads}").mkdir(parents=True, exist_ok=True)
        for tool, (prepare, command) in commands(args.csv, args.work, threads).items():
            pairs.append((tool, threads, cores, prepare, command))
    pairs.sort(key=lambda pair: list(TOOLS).index(pair[0]))
    samples: dict[tuple[str, int], list[dict]] = {}
    for round_number in range(args.runs):
        for tool, threads, cores, prepare, command in pairs:
            subprocess.run(["sh", "-c", prepare], check=True)
            sample = timed_run(command, cores)
            print(f"round {round_number + 1}: {tool} x{threads}: {sample}", file=sys.stderr)
            samples.setdefault((tool, threads), []).append(sample)
    for tool, threads, _, _, command in pairs:
        runs = samples[(tool, threads)]
        best = min(runs, key=lambda s: s["wall_s"])
        results["runs"].append({
            "tool": tool, "threads": threads, "mean_s": best["wall_s"],
            "stddev_s": 0.0, "rows_per_s": args.rows / best["wall_s"],
            "cpu_s": min(s["cpu_s"] for s in runs),
            "peak_rss_mib": max(s["peak_rss_mib"] for s in runs),
            "walls_s": [s["wall_s"] for s in runs], "command": command,
        })
    results["machine"]["load_average_after"] = os.getloadavg()
    (args.work / "results.json").write_text(json.dumps(results, indent=2))
    print(markdown(results))


def _spread(ratios: list[float]) -> str:
    """Return 'median x (each ratio)' for per-round ratios."""
    each = ", ".join(f"{ratio:.2f}" for ratio in ratios)
    return f"{statistics.median(ratios):.2f}x ({each})"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def markdown(results: dict) -> str:
    """Return the results as a Markdown table with ratios to the fastest anchor."""
    runs = results["runs"]
    lines = [
        "| tool | cores | wall s (± sd) | rows/s | CPU s (user + sys) | peak RSS MiB |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        lines.append(
            f"| {run['tool']} | {run['threads']} | {run['mean_s']:.2f} (± {run['stddev_s']:.2f}) "
            f"| {run['rows_per_s'] / 1e6:.2f}M | {run['cpu_s']:.2f} | {run['peak_rss_mib']:.0f} |"
        )
    by = {(r["tool"], r["threads"]): r for r in runs}
    ours1, ours2 = by[("rodata-etl", 1)], by[("rodata-etl", 2)]
    lines.append("")
    lines.append(f"- rodata-etl 2 workers / 1 worker: {ours1['mean_s'] / ours2['mean_s']:.2f}x")
    for threads in (1, 2):
        anchors = [r for r in runs if r["threads"] == threads and r["tool"] != "rodata-etl"]
        fastest = min(anchors, key=lambda r: r["mean_s"])
        ours = by[("rodata-etl", threads)]
        lines.append(
            f"- {threads} core(s): fastest anchor {fastest['tool']} {fastest['mean_s']:.2f} s; "
            f"rodata-etl takes {ours['mean_s'] / fastest['mean_s']:.2f}x its time"
        )
    if "walls_s" in ours1:
        # Interleaved runs: two runs of the same round saw the same load, so the median of the
        # per-round ratios is steadier than the ratio of two fastest runs.
        lines += ["", "Per-round ratios, median (each round):"]
        speedups = [one / two for one, two in zip(ours1["walls_s"], ours2["walls_s"])]
        lines.append(f"- rodata-etl 2 workers / 1 worker: {_spread(speedups)}")
        for threads in (1, 2):
            ours = by[("rodata-etl", threads)]
            for anchor in runs:
                if anchor["threads"] != threads or anchor["tool"] == "rodata-etl":
                    continue
                shares = [o / a for o, a in zip(ours["walls_s"], anchor["walls_s"])]
                lines.append(f"- {threads} core(s), rodata-etl time / {anchor['tool']} time: "
                             f"{_spread(shares)}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
