"""Run a command and report the peak anonymous and file-backed resident memory of its processes.

Usage: python bench/etl/peak_memory.py [--interval 0.02] [--limit-mib N] -- COMMAND [ARGS...]

`ru_maxrss` and `/usr/bin/time` report one number, resident set size, which counts the pages
of mapped files as well as the process's own (anonymous) memory. Mapped file pages are page
cache: under a memory limit the kernel drops them and reads them again later, while
anonymous memory can only grow until the limit kills the process. This script polls
/proc/<pid>/status of the command and all its descendants and prints, for the largest
process, the peak of each kind separately, and the peak of the anonymous memory summed over
all its processes at one sample (what a pod's memory limit would see, apart from page cache).
Sampling every --interval seconds can miss a peak shorter than that.

With --limit-mib (as root) the command runs in a new memory cgroup with that limit and no
swap, as in a Kubernetes pod, and the report adds the cgroup's peak usage and OOM kill count.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.api.memory_proof import MemoryCgroup  # found through the path above


def children(pid: int) -> list[int]:
    found = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(child) for child in handle.read().split()]
        except FileNotFoundError:
            continue
    return found


def tree(pid: int) -> list[int]:
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        queue += children(current)
    return pids


def resident_kib(pid: int) -> tuple[int, int] | None:
    """Return (RssAnon, RssFile + RssShmem) of `pid` in KiB, or None once it has exited."""
    fields = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                name, _, value = line.partition(":")
                if name in ("RssAnon", "RssFile", "RssShmem"):
                    fields[name] = int(value.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        return None
    if "RssAnon" not in fields:
        return None
    return fields["RssAnon"], fields.get("RssFile", 0) + fields.get("RssShmem", 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=0.02,
                        help="seconds between samples (default: %(default)s)")
    parser.add_argument("--limit-mib", type=int, help="run in a memory cgroup of this size")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")

    cgroup = None
    enter = None
    if args.limit_mib:
        cgroup = MemoryCgroup(f"rodata-peak-memory-{os.getpid()}", args.limit_mib << 20)
        procs = cgroup.path / "cgroup.procs"

        def enter() -> None:
            # Runs in the child before exec, so every page the command touches is charged.
            procs.write_text(str(os.getpid()))

    started = time.monotonic()
    process = subprocess.Popen(command, preexec_fn=enter)  # noqa: PLW1509 - no threads here
    peak_anon = peak_file = peak_total = peak_anon_sum = 0
    while process.poll() is None:
        anon_sum = 0
        for pid in tree(process.pid):
            sample = resident_kib(pid)
            if sample is None:
                continue
            anon, mapped = sample
            anon_sum += anon
            peak_anon = max(peak_anon, anon)
            peak_file = max(peak_file, mapped)
            peak_total = max(peak_total, anon + mapped)
        peak_anon_sum = max(peak_anon_sum, anon_sum)
        time.sleep(args.interval)
    report = {
        "exit_code": process.returncode,
        "wall_s": round(time.monotonic() - started, 2),
        "peak_anon_mib": round(peak_anon / 1024),
        "peak_file_mib": round(peak_file / 1024),
        "peak_rss_mib": round(peak_total / 1024),
        "peak_anon_all_processes_mib": round(peak_anon_sum / 1024),
    }
    if cgroup is not None:
        stats = cgroup.stats()
        report["cgroup_limit_mib"] = args.limit_mib
        report["cgroup_peak_mib"] = round(stats["peak_bytes"] / 2**20)
        report["cgroup_oom_kills"] = stats["oom_kill"]
        cgroup.remove()
    print(json.dumps(report), file=sys.stderr)
    # A command killed by a signal exits as a shell reports it: 128 + the signal number.
    code = process.returncode
    sys.exit(128 - code if code < 0 else code)


if __name__ == "__main__":
    main()
