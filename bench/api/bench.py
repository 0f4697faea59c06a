"""API benchmark: the uvicorn ceiling, a plain FastAPI route and rodata's hot paths, one run.

Usage: python bench/api/bench.py --data-root DIR [--duration 10] [--connections 32]
                                 [--rounds 5] [--datasette DB --datasette-bin PATH]

Each server runs pinned to CPU 0 (`taskset -c 0`), wrk runs pinned to CPU 1 with one thread
and 32 connections. The scenarios run in turns, `--rounds` times, and the median of each
measure over the rounds is reported, because other processes on a shared machine disturb
single runs. The data root
must hold the flights dataset built by `rodata-etl`. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_up(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server at {url} did not come up")


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = open(log, "wb")  # noqa: SIM115 - kept open for the server's lifetime
    return subprocess.Popen(["taskset", "-c", "0", *command], env=env, stdout=handle,
                            stderr=subprocess.STDOUT, cwd=REPO)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s)$", text)
    assert match, text
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(url: str, duration: int, connections: int, headers: list[str]) -> dict[str, float]:
    command = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{duration}s",
               "--latency"]
    for header in headers:
        command += ["-H", header]
    output = subprocess.run(command + [url], capture_output=True, text=True, check=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}
    for label, key in (("50%", "p50"), ("99%", "p99")):
        result[key] = _ms(re.search(rf"\s{re.escape(label)}\s+(\S+)", output).group(1))
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", output)
    scale = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}[transfer.group(2)]
    result["bytes_per_s"] = float(transfer.group(1)) * scale
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    result["errors"] = int(errors.group(1)) if errors else 0
    socket_errors = re.search(r"Socket errors: (.*)", output)
    result["socket_errors"] = socket_errors.group(1) if socket_errors else ""
    return result


def median(results: list[dict[str, float]], key: str) -> float:
    """Return the median of one measure over the rounds."""
    return statistics.median(r[key] for r in results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True, type=Path)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--datasette", type=Path, help="SQLite file with a flights table "
                        "(id INTEGER PRIMARY KEY) to measure Datasette as well")
    parser.add_argument("--datasette-bin", default="datasette",
                        help="datasette executable (for instance from a separate virtualenv)")
    parser.add_argument("--log-dir", type=Path, default=Path("/tmp"))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian package 'wrk')")

    env = dict(os.environ, PYTHONPATH=str(REPO))
    bin_dir = Path(sys.executable).parent
    uvicorn = [str(bin_dir / "uvicorn"), "--loop", "uvloop", "--http", "httptools",
               "--no-access-log", "--log-level", "warning", "--host", "127.0.0.1"]
    ports = {name: free_port() for name in ("bare", "fastapi", "rodata", "datasette")}
    servers = [
        start(uvicorn + ["--port", str(ports["bare"]), "bench.api.anchors:bare"], env,
              args.log_dir / "bench-bare.log"),
        start(uvicorn + ["--port", str(ports["fastapi"]), "bench.api.anchors:fastapi_app"], env,
              args.log_dir / "bench-fastapi.log"),
        start([sys.executable, "-m", "app"],
              dict(env, RODATA_DATA_ROOT=str(args.data_root), RODATA_DATASETS="flights",
                   RODATA_PORT=str(ports["rodata"])),
              args.log_dir / "bench-rodata.log"),
    ]
    if args.datasette:
        servers.append(start([args.datasette_bin, "serve", "-i", str(args.datasette),
                              "-p", str(ports["datasette"]), "--setting", "max_returned_rows",
                              "1000"], env, args.log_dir / "bench-datasette.log"))
    rodata = f"http://127.0.0.1:{ports['rodata']}"
    scenarios = [
        ("bare ASGI, 20 B JSON (ceiling)", f"http://127.0.0.1:{ports['bare']}/", []),
        ("plain FastAPI route", f"http://127.0.0.1:{ports['fastapi']}/item/7", []),
        ("rodata key lookup (JSON row)", f"{rodata}/v1/datasets/flights/rows/123456", []),
        ("rodata 1,000-row slice, 3 columns (JSON)",
         (f"{rodata}/v1/datasets/flights/rows?start=100000&limit=1000"
         "&columns=id,carrier,dep_delay"), []),
        ("bare ASGI, 1 MiB body (ceiling for raw bytes)",
         f"http://127.0.0.1:{ports['bare']}/mib", []),
        ("rodata raw column, 1 MiB", (f"{rodata}/v1/datasets/flights/columns/id?start=100000"
         "&stop=231072"), ["Accept: application/octet-stream"]),
    ]
    if args.datasette:
        datasette = f"http://127.0.0.1:{ports['datasette']}"
        stem = args.datasette.stem
        scenarios += [
            ("Datasette row page (/flights/123456.json)",
             f"{datasette}/{stem}/flights/123456.json", []),
            ("Datasette 1,000-row slice, 3 columns",
             (f"{datasette}/{stem}/flights.json?_col=carrier&_col=dep_delay&_size=1000"
             "&id__gt=100000&_sort=id&_nocount=1&_nofacet=1&_nosuggest=1"), []),
        ]
    try:
        wait_up(f"http://127.0.0.1:{ports['bare']}/")
        wait_up(f"http://127.0.0.1:{ports['fastapi']}/item/1")
        wait_up(f"{rodata}/readyz")
        if args.datasette:
            wait_up(f"http://127.0.0.1:{ports['datasette']}/-/versions.json")
        runs: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in scenarios}
        for _ in range(args.rounds):
            for name, url, headers in scenarios:
                wrk(url, 2, args.connections, headers)  # warm-up
                result = wrk(url, args.duration, args.connections, headers)
                runs[name].append(result)
                print(f"{name}: {result}", file=sys.stderr)
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()

    # Each scenario's ratio to the ceiling is taken within a round (measured minutes apart at
    # most), then the median over rounds is reported, which damps other load on the machine.
    ceiling_runs = runs[scenarios[0][0]]
    print("| scenario | requests/s | p50 ms | p99 ms | MiB/s | of ceiling | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, _, _ in scenarios:
        results = runs[name]
        ratio = statistics.median(r["rps"] / c["rps"] for r, c in zip(results, ceiling_runs))
        errors = sum(r["errors"] for r in results)
        socket_errors = "; ".join(sorted({r["socket_errors"] for r in results} - {""}))
        print(f"| {name} | {median(results, 'rps'):,.0f} | {median(results, 'p50'):.2f} | "
              f"{median(results, 'p99'):.2f} | {median(results, 'bytes_per_s') / 2**20:,.1f} | "
              f"{ratio:.0%} | {errors} {socket_errors} |")
    print(f"\nload average at the end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
