"""Generation switches under load, rejected generations, stale cursors and SIGTERM."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import threading
import time

import numpy as np
import pytest
from api_builders import write_generation
from api_server import ApiServer

from app.config import load_settings
from app.main import create_app
from rodata import format as fmt

ROWS = 3000

def objects(document: dict) -> list[dict]:
    """Return the rows of a JSON page (arrays in 'columns' order) as dicts."""
    return [dict(zip(document["columns"], row)) for row in document["rows"]]



def flip_columns(number: int) -> dict[str, tuple]:
    ids = list(range(ROWS))
    return {"id": ("int64", ids), "gen": ("int32", [number] * ROWS),
            "v": ("int64", [i * number for i in ids])}


def wait_for(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


@pytest.fixture
def flip(tmp_path):
    root = tmp_path / "data"
    write_generation(root, "flip", "g1", flip_columns(1), ["id"])
    server = ApiServer(root, tmp_path / "api.log", RODATA_DATASETS="flip")
    server.wait_ready()
    yield root, server
    if server.process.poll() is None:
        assert server.stop() == 0, server.log()


def served_generation(server: ApiServer) -> str:
    return server.request("/readyz").json()["generations"].get("flip")


def test_switch_under_load(flip):
    root, server = flip
    problems: list[str] = []
    seen: set[int] = set()
    stop = threading.Event()

    def client(worker: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            key = (i * 37 + worker) % ROWS
            try:
                row = server.request(f"/v1/datasets/flip/rows/{key}")
                page = server.request(f"/v1/datasets/flip/rows?start={key // 2}&limit=200")
            except OSError as error:
                problems.append(f"connection error: {error}")
                continue
            for response in (row, page):
                if response.status != 200:
                    problems.append(f"status {response.status}: {response.body[:200]!r}")
            if problems:
                return
            document = row.json()
            number = document["row"]["gen"]
            seen.add(number)
            if document["generation"] != f"g{number}" or document["row"]["v"] != key * number:
                problems.append(f"mixed row: {document}")
            rows = page.json()
            numbers = {r["gen"] for r in objects(rows)}
            if len(numbers) != 1 or rows["generation"] != f"g{numbers.pop()}":
                problems.append(f"mixed page in {rows['generation']}")
            if any(r["v"] != r["id"] * r["gen"] for r in objects(rows)):
                problems.append("page values do not match their generation")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        for number in range(2, 6):
            time.sleep(0.4)
            write_generation(root, "flip", f"g{number}", flip_columns(number), ["id"])
            wait_for(lambda n=number: served_generation(server) == f"g{n}")
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not problems, problems[:5]
    assert {1, 5} <= seen
    assert len(seen) >= 3
    released = [r for r in server.log_records() if r.get("message") == "generation released"]
    assert {r["generation"] for r in released} >= {"g1", "g2", "g3"}


def test_stale_cursor_gets_410(flip):
    root, server = flip
    page = server.request("/v1/datasets/flip/rows?limit=10").json()
    cursor = page["next_cursor"]
    write_generation(root, "flip", "g2", flip_columns(2), ["id"])
    wait_for(lambda: served_generation(server) == "g2")
    response = server.request(f"/v1/datasets/flip/rows?limit=10&cursor={cursor}")
    assert response.status == 410
    error = response.json()["error"]
    assert error["code"] == "stale_cursor"
    assert "generation 'g1'" in error["message"]
    assert "now serves generation 'g2'" in error["message"]


def test_broken_generation_rejected(flip):
    root, server = flip
    # Truncate a column file after the manifest recorded its size: the open must fail.
    gen_dir = write_generation(root, "flip", "g2", flip_columns(2), ["id"], publish=False)
    column = gen_dir / fmt.column_file_name(2)
    column.write_bytes(column.read_bytes()[:100])
    fmt.write_current(root / "flip", "g2")
    wait_for(lambda: any(r.get("message", "").startswith("new generation rejected")
                         for r in server.log_records()))
    assert served_generation(server) == "g1"
    assert server.request("/readyz").status == 200
    assert server.request("/v1/datasets/flip/rows/7").json()["row"]["gen"] == 1
    record = next(r for r in server.log_records()
                  if r.get("message", "").startswith("new generation rejected"))
    assert record["generation"] == "g2"
    assert record["serving"] == "g1"
    assert "bytes, manifest says" in record["error"]

    # A generation without a manifest (incomplete copy) is rejected the same way.
    incomplete = write_generation(root, "flip", "g3", flip_columns(3), ["id"], publish=False)
    (incomplete / "manifest.json").unlink()
    (root / "flip" / "CURRENT").write_text("g3\n")
    wait_for(lambda: any(r.get("generation") == "g3" and "rejected" in r.get("message", "")
                         for r in server.log_records()))
    assert served_generation(server) == "g1"

    # A good generation published afterwards is picked up.
    write_generation(root, "flip", "g4", flip_columns(4), ["id"])
    wait_for(lambda: served_generation(server) == "g4")
    assert server.request("/v1/datasets/flip/rows/7").json()["row"]["v"] == 28
    shutil.rmtree(gen_dir)


def write_wide(root, rows: int) -> None:
    """Publish dataset `wide`: one int64 column `id` of `rows` rows (0, 1, 2, ...)."""
    dataset_dir = root / "wide" / "generations" / "g1"
    (dataset_dir / "columns").mkdir(parents=True)
    digest = fmt.write_column(dataset_dir / fmt.column_file_name(0),
                              fmt.ColumnData.fixed("int64", np.arange(rows, dtype=np.int64)))
    manifest = fmt.Manifest(
        dataset="wide", generation="g1", created="2026-01-01T00:00:00+00:00", row_count=rows,
        key=["id"], key_unique=True,
        schema=[fmt.ColumnSchema("id", "int64", False, "plain", fmt.column_file_name(0), 0)],
        files={fmt.column_file_name(0): {"size": digest.size, "sha256": digest.sha256}},
        sources=[], input_fingerprint="test", etl_version="test")
    fmt.write_manifest(dataset_dir, manifest)
    fmt.write_current(root / "wide", "g1")


def test_sigterm_drains_then_exits_zero(tmp_path):
    rows = 4 * 1024 * 1024  # 32 MiB of int64: a response that takes a while to read slowly
    big = tmp_path / "big"
    write_wide(big, rows)

    # The drain phase is long enough for a loaded CI machine to reach /readyz inside it.
    server = ApiServer(big, tmp_path / "api.log", RODATA_DRAIN_SECONDS="3.0",
                       RODATA_GRACE_SECONDS="10")
    server.wait_ready()

    # An in-flight request: read the status line, then read the body slowly.
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.sendall(b"GET /v1/datasets/wide/columns/id?start=0&stop=4194304 HTTP/1.1\r\n"
                 b"Host: test\r\nAccept: application/octet-stream\r\n\r\n")
    received = sock.recv(65536)
    assert received.startswith(b"HTTP/1.1 200")

    server.process.send_signal(signal.SIGTERM)
    # Draining: readiness fails first while the server still accepts requests.
    wait_for(lambda: server.request("/readyz").status == 503, timeout=2.5)
    ready = server.request("/readyz")
    assert ready.status == 503
    assert ready.json()["reason"] == "shutting down"

    # Finish reading the in-flight body: every byte arrives although shutdown has begun.
    header_end = received.index(b"\r\n\r\n") + 4
    body = bytearray(received[header_end:])
    time.sleep(3.5)  # past the drain phase: uvicorn is now waiting for this request
    while len(body) < rows * 8:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        body.extend(chunk)
    sock.close()
    assert len(body) == rows * 8
    assert np.frombuffer(bytes(body[-8:]), dtype="<i8")[0] == rows - 1

    assert server.process.wait(timeout=15) == 0, server.log()
    server.log_file.close()
    messages = [r.get("message") for r in server.log_records()]
    assert "shutdown requested; readiness now fails" in messages
    assert messages.index("shutdown requested; readiness now fails") < messages.index("stopped")


def test_checksum_pass_rejects_altered_bytes(tmp_path):
    root = tmp_path / "data"
    write_generation(root, "flip", "g1", flip_columns(1), ["id"])
    server = ApiServer(root, tmp_path / "api.log", RODATA_VERIFY_CHECKSUMS="true")
    try:
        server.wait_ready()
        gen_dir = write_generation(root, "flip", "g2", flip_columns(2), ["id"], publish=False)
        # Same size, one byte changed: only the optional checksum pass can see it.
        column = gen_dir / fmt.column_file_name(2)
        data = bytearray(column.read_bytes())
        data[-1] ^= 0xFF
        column.write_bytes(bytes(data))
        fmt.write_current(root / "flip", "g2")
        wait_for(lambda: any(r.get("generation") == "g2" and "rejected" in r.get("message", "")
                             for r in server.log_records()))
        record = next(r for r in server.log_records()
                      if r.get("generation") == "g2" and "rejected" in r.get("message", ""))
        assert "SHA-256 does not match" in record["error"]
        assert served_generation(server) == "g1"
    finally:
        assert server.stop() == 0, server.log()


def test_several_workers_serve(tmp_path):
    root = tmp_path / "data"
    write_generation(root, "flip", "g1", flip_columns(1), ["id"])
    server = ApiServer(root, tmp_path / "api.log", RODATA_WORKERS="2")
    try:
        server.wait_ready()
        # Every worker must serve once /readyz returns 200, whichever worker took that probe.
        # New connections spread over both processes that share the socket.
        statuses = [server.request(f"/v1/datasets/flip/rows/{key}").status
                    for key in range(60)]
        assert statuses == [200] * 60, statuses
        assert server.request("/v1/datasets/flip/rows/5").json()["row"]["v"] == 5
    finally:
        assert server.stop() == 0, server.log()

    # One JSON access line per request, none of uvicorn's plain ones, and the start and stop
    # lines that a single worker writes too.
    records = server.log_records()
    rows = [r for r in records if r.get("logger") == "rodata.api.access"
            and r.get("route") == "row"]
    assert len(rows) == 61
    assert not [r for r in records if r.get("logger") == "uvicorn.access"]
    messages = [r.get("message") for r in records]
    assert "starting" in messages
    assert messages[-1] == "stopped"


async def ready_at_startup(app) -> bool:
    """Run the app's ASGI lifespan start-up; return /readyz's verdict the moment it completes."""
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}},
                                   inbox.get, outbox.put))
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    ready = app.fallback.state.store.readiness()[0]
    await inbox.put({"type": "lifespan.shutdown"})
    assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
    await task
    return ready


def test_each_worker_loads_before_serving(tmp_path):
    # uvicorn lets a worker accept connections once its lifespan start-up completes. With
    # several workers on one socket, that must not happen before the worker has its generation.
    root = tmp_path / "data"
    write_generation(root, "flip", "g1", flip_columns(1), ["id"])
    env = {"RODATA_DATA_ROOT": str(root), "RODATA_WORKERS": "2"}
    assert asyncio.run(ready_at_startup(create_app(load_settings(env))))


def test_grace_period_bounds_shutdown(tmp_path):
    rows = 4 * 1024 * 1024
    write_wide(tmp_path / "data", rows)
    server = ApiServer(tmp_path / "data", tmp_path / "api.log", RODATA_GRACE_SECONDS="1")
    server.wait_ready()
    # A client that requests 32 MiB and never reads: the response cannot finish.
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.sendall(b"GET /v1/datasets/wide/columns/id HTTP/1.1\r\nHost: test\r\n"
                 b"Accept: application/octet-stream\r\n\r\n")
    time.sleep(0.5)
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    status = server.process.wait(timeout=20)
    elapsed = time.monotonic() - started
    sock.close()
    server.log_file.close()
    assert status == 0, server.log()
    assert elapsed < 8, elapsed
    assert any("timeout graceful shutdown exceeded" in r.get("message", "")
               for r in server.log_records()), server.log()
