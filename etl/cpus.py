"""Worker count: how many CPUs this process may use, from the affinity mask and cgroup quota.

`os.cpu_count()` returns the CPUs of the machine, not those of the container. The count here is
the minimum of the affinity mask (`os.sched_getaffinity`) and the cgroup CPU quota rounded up:
cgroup v2 `cpu.max` ("max 100000" or "<quota> <period>") and cgroup v1 `cpu.cfs_quota_us` /
`cpu.cfs_period_us` (quota -1 = unlimited). An explicit `--workers` or the environment variable
RODATA_ETL_WORKERS wins over detection.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

ENV_WORKERS = "RODATA_ETL_WORKERS"


@dataclass(frozen=True)
class WorkerChoice:
    """The chosen worker count and a sentence saying where it came from (for the log)."""

    workers: int
    reason: str


def cgroup_cpu_limit(
    *, cgroup_root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")
) -> float | None:
    """Return the CPU quota of this process's cgroup in CPUs, or None when unlimited or unknown."""
    limits = []
    for v2_dir in _v2_dirs(cgroup_root, proc_cgroup):
        limit = _read_v2(v2_dir / "cpu.max")
        if limit is not None:
            limits.append(limit)
    for v1_dir in _v1_dirs(cgroup_root, proc_cgroup):
        limit = _read_v1(v1_dir)
        if limit is not None:
            limits.append(limit)
    return min(limits) if limits else None


def _cgroup_paths(proc_cgroup: Path) -> list[tuple[str, str]]:
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return []
    entries = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            entries.append((parts[1], parts[2]))
    return entries


def _v2_dirs(cgroup_root: Path, proc_cgroup: Path) -> list[Path]:
    # cgroup v2 (unified): the line "0::/path". A quota set on any ancestor applies as well.
    dirs = []
    for controllers, path in _cgroup_paths(proc_cgroup):
        if controllers != "":
            continue
        base = cgroup_root / "unified" if (cgroup_root / "unified").is_dir() else cgroup_root
        current = base / path.lstrip("/")
        while True:
            dirs.append(current)
            if current == base or base not in current.parents:
                break
            current = current.parent
    if not dirs:
        dirs.append(cgroup_root)
    return dirs


def _v1_dirs(cgroup_root: Path, proc_cgroup: Path) -> list[Path]:
    dirs = []
    for controllers, path in _cgroup_paths(proc_cgroup):
        if "cpu" not in controllers.split(","):
            continue
        for mount in ("cpu,cpuacct", "cpu", "cpuacct,cpu"):
            base = cgroup_root / mount
            if base.is_dir():
                # Inside a container the cgroup's own directory is usually mounted at the root.
                for candidate in (base / path.lstrip("/"), base):
                    if candidate.is_dir():
                        dirs.append(candidate)
                break
    return dirs


def _read_v2(path: Path) -> float | None:
    try:
        fields = path.read_text().split()
    except OSError:
        return None
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _read_v1(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text().strip())
        period = int((directory / "cpu.cfs_period_us").read_text().strip())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def affinity_count() -> int:
    """Return the number of CPUs in this process's affinity mask."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def choose_workers(
    requested: int | None = None,
    *,
    environ: dict[str, str] | None = None,
    cgroup_root: Path = Path("/sys/fs/cgroup"),
    proc_cgroup: Path = Path("/proc/self/cgroup"),
    affinity: int | None = None,
) -> WorkerChoice:
    """Return the worker count: `requested`, else RODATA_ETL_WORKERS, else detected CPUs."""
    environ = os.environ if environ is None else environ
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--workers must be >= 1 (got {requested})")
        return WorkerChoice(requested, f"{requested} worker(s) from --workers")

    from_env = environ.get(ENV_WORKERS, "").strip()
    if from_env:
        if not from_env.isdigit() or int(from_env) < 1:
            raise ValueError(f"{ENV_WORKERS} must be an integer >= 1 (got {from_env!r})")
        return WorkerChoice(int(from_env), f"{from_env} worker(s) from {ENV_WORKERS}")

    cpus = affinity if affinity is not None else affinity_count()
    quota = cgroup_cpu_limit(cgroup_root=cgroup_root, proc_cgroup=proc_cgroup)
    if quota is not None and math.ceil(quota) < cpus:
        workers = max(1, math.ceil(quota))
        return WorkerChoice(
            workers, f"{workers} worker(s) from the cgroup CPU quota of {quota:g} CPUs "
            f"(affinity mask allows {cpus})"
        )
    quota_text = "no cgroup CPU quota" if quota is None else f"cgroup quota {quota:g} CPUs"
    return WorkerChoice(cpus, f"{cpus} worker(s) from the CPU affinity mask ({quota_text})")
