"""Scan a generation several times larger than the API's memory limit, end to end.

Usage (as root, on a machine with cgroup v1 memory controller or cgroup v2):
    python bench/api/memory_proof.py --work-dir DIR [--rows 160000000] [--limit-mib 1024]

1. Writes a generation of `--rows` rows (int64 id, int64 x = id % 1000, float64 y = id / 2,
   int32 z = id % 7; 28 bytes a row, about 4.2 GiB at the default) with rodata.format, then
   evicts its files from the page cache so that the server's reads are charged to its cgroup.
2. Creates a memory cgroup limited to `--limit-mib` and starts `rodata-api` inside it.
3. Reads every column completely as raw bytes (64 MiB requests), checking each chunk against
   the values it must hold, and sums every column with `aggregate` in ranges of at most
   RODATA_MAX_SCAN_ROWS rows, checking the sums against closed forms.
4. Reports the cgroup's peak usage, its OOM kill count and the server's state, then stops
   the server and removes the cgroup.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from rodata import format as fmt

COLUMNS = (("id", "int64"), ("x", "int64"), ("y", "float64"), ("z", "int32"))
CHUNK_ROWS = 10_000_000


def column_values(name: str, start: int, stop: int) -> np.ndarray:
    """Return the expected values of column `name` in rows [start, stop)."""
    ids = np.arange(start, stop, dtype=np.int64)
    if name == "id":
        return ids
    if name == "x":
        return ids % 1000
    if name == "y":
        return ids / 2
    return (ids % 7).astype(np.int32)


def write_generation(root: Path, rows: int) -> Path:
    """Write and publish the test generation; return its directory."""
    dataset_dir = root / "big"
    gen_dir = dataset_dir / "generations" / "g1"
    (gen_dir / "columns").mkdir(parents=True)
    schema, files = [], {}
    for index, (name, type_name) in enumerate(COLUMNS):
        relative = fmt.column_file_name(index)
        values = column_values(name, 0, rows)
        digest = fmt.write_column(gen_dir / relative, fmt.ColumnData.fixed(type_name, values))
        del values
        files[relative] = {"size": digest.size, "sha256": digest.sha256}
        schema.append(fmt.ColumnSchema(name, type_name, False, "plain", relative, 0))
        print(f"wrote column {name}: {digest.size / 2**30:.2f} GiB", flush=True)
    manifest = fmt.Manifest(dataset="big", generation="g1", created="2026-01-01T00:00:00Z",
                            row_count=rows, key=["id"], key_unique=True, schema=schema,
                            files=files, sources=[], input_fingerprint="memory-proof",
                            etl_version="memory-proof")
    fmt.write_manifest(gen_dir, manifest)
    fmt.write_current(dataset_dir, "g1")
    return gen_dir


def evict(gen_dir: Path) -> None:
    """Drop the generation's pages from the page cache (only these files)."""
    for path in (gen_dir / "columns").iterdir():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


class MemoryCgroup:
    """A cgroup with a memory limit: v1 under /sys/fs/cgroup/memory, else v2."""

    def __init__(self, name: str, limit: int) -> None:
        v1 = Path("/sys/fs/cgroup/memory")
        if (v1 / "memory.limit_in_bytes").exists():
            self.path = v1 / name
            self.path.mkdir()
            (self.path / "memory.limit_in_bytes").write_text(str(limit))
            self.version = 1
        else:
            self.path = Path("/sys/fs/cgroup") / name
            self.path.mkdir()
            (self.path / "memory.max").write_text(str(limit))
            (self.path / "memory.swap.max").write_text("0")
            self.version = 2

    def stats(self) -> dict[str, int]:
        """Return peak usage, current usage and OOM kills."""
        if self.version == 1:
            oom = dict(line.split() for line in
                       (self.path / "memory.oom_control").read_text().splitlines())
            return {"peak_bytes": int((self.path / "memory.max_usage_in_bytes").read_text()),
                    "usage_bytes": int((self.path / "memory.usage_in_bytes").read_text()),
                    "limit_bytes": int((self.path / "memory.limit_in_bytes").read_text()),
                    "failcnt": int((self.path / "memory.failcnt").read_text()),
                    "oom_kill": int(oom.get("oom_kill", 0))}
        events = dict(line.split() for line in
                      (self.path / "memory.events").read_text().splitlines())
        peak = self.path / "memory.peak"
        return {"peak_bytes": int(peak.read_text()) if peak.exists() else -1,
                "usage_bytes": int((self.path / "memory.current").read_text()),
                "limit_bytes": int((self.path / "memory.max").read_text()),
                "failcnt": int(events.get("max", 0)), "oom_kill": int(events.get("oom_kill", 0))}

    def remove(self) -> None:
        """Remove the (empty) cgroup."""
        self.path.rmdir()


def get(url: str, accept: str | None = None) -> tuple[bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.read(), {k.lower(): v for k, v in response.getheaders()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=160_000_000)
    parser.add_argument("--limit-mib", type=int, default=1024)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args()

    root = args.work_dir / "data"
    gen_dir = root / "big" / "generations" / "g1"
    if not gen_dir.exists():
        write_generation(root, args.rows)
    size = sum(p.stat().st_size for p in (gen_dir / "columns").iterdir())
    rows = fmt.read_manifest(gen_dir).row_count
    evict(gen_dir)
    print(f"generation: {rows} rows, {size / 2**30:.2f} GiB; memory limit {args.limit_mib} MiB",
          flush=True)

    port = args.port
    if port == 0:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
    cgroup = MemoryCgroup(f"rodata-memory-proof-{os.getpid()}", args.limit_mib * 2**20)
    env = dict(os.environ, PYTHONPATH=str(REPO), RODATA_DATA_ROOT=str(root),
               RODATA_PORT=str(port), RODATA_ACCESS_LOG="false")
    # The shell moves itself into the cgroup, then becomes the server, so every byte the
    # server ever maps or allocates is charged to the limited cgroup.
    procs = cgroup.path / "cgroup.procs"
    server = subprocess.Popen(["sh", "-c", f'echo $$ > {procs} && exec "$0" -m app',
                               sys.executable], env=env, cwd=REPO,
                              stdout=open(args.work_dir / "server.log", "wb"),  # noqa: SIM115
                              stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                get(base + "/readyz")
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("server did not become ready; see server.log") from None
                time.sleep(0.2)

        started = time.monotonic()
        sent = 0
        info = json.loads(get(base + "/v1/datasets/big")[0])
        max_raw = info["limits"]["max_raw_bytes"]
        max_scan = info["limits"]["max_scan_rows"]
        for name, type_name in COLUMNS:
            itemsize = np.dtype(fmt.numpy_dtype(type_name)).itemsize
            step = max_raw // itemsize
            for start in range(0, rows, step):
                stop = min(rows, start + step)
                body, headers = get(f"{base}/v1/datasets/big/columns/{name}?start={start}"
                                    f"&stop={stop}", "application/octet-stream")
                values = np.frombuffer(body, dtype=headers["x-rodata-dtype"])
                if not np.array_equal(values, column_values(name, start, stop)):
                    raise SystemExit(f"column {name} rows {start}:{stop} differ")
                sent += len(body)
            print(f"raw scan of {name} done, {sent / 2**30:.2f} GiB so far, "
                  f"cgroup {cgroup.stats()}", flush=True)
        for name, _ in COLUMNS:
            total = 0.0
            for start in range(0, rows, max_scan):
                stop = min(rows, start + max_scan)
                document = json.loads(get(f"{base}/v1/datasets/big/aggregate?agg=sum:{name}"
                                          f"&start={start}&stop={stop}")[0])
                total += document["results"][0][f"sum:{name}"]
            n = rows
            expected = {"id": n * (n - 1) / 2, "y": n * (n - 1) / 4,
                        "x": (n // 1000) * 499500 + sum(range(n % 1000)),
                        "z": (n // 7) * 21 + sum(range(n % 7))}[name]
            if abs(total - expected) > 1e-9 * abs(expected):
                raise SystemExit(f"sum of {name} is {total}, expected {expected}")
            print(f"aggregate scan of {name} done: sum {total:.6g} matches", flush=True)
        seconds = time.monotonic() - started
        status = os.popen(f"grep -E 'VmHWM|VmRSS|RssAnon|RssFile' /proc/{server.pid}/status"
                          ).read()
        alive = server.poll() is None
        ready = alive and get(base + "/readyz")[1] is not None
        stats = cgroup.stats()
        print(json.dumps({"rows": rows, "generation_bytes": size, "raw_bytes_sent": sent,
                          "seconds": round(seconds, 1), "server_alive": alive,
                          "server_ready": ready, "cgroup": stats,
                          "server_status": status.split("\n")}, indent=2))
        ok = alive and stats["oom_kill"] == 0
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
        print(f"server exit status: {server.returncode}")
        cgroup.remove()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
