"""Run `rodata-api` as a subprocess on a free port and talk to it over a real socket."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """Return a TCP port the OS just reported free on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def api_command() -> list[str]:
    """Return the command that starts the service: the console script when installed."""
    script = shutil.which("rodata-api", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "app"]


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


class ApiServer:
    """One `rodata-api` process with its environment, port and captured log."""

    def __init__(self, data_root: Path, log_path: Path, **settings: str) -> None:
        self.port = free_port()
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if not k.startswith("RODATA_")}
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        env.update({"RODATA_DATA_ROOT": str(data_root), "RODATA_PORT": str(self.port),
                    "RODATA_RELOAD_SECONDS": "0.2"})
        env.update(settings)
        self.log_file = open(log_path, "wb")  # noqa: SIM115 - open for the process lifetime
        self.process = subprocess.Popen(api_command(), env=env, stdout=self.log_file,
                                        stderr=subprocess.STDOUT, cwd=REPO)

    def request(self, path: str, *, method: str = "GET", headers: dict[str, str] | None = None,
                timeout: float = 10) -> Response:
        """Send one request on a new connection; the path is sent exactly as given."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.putrequest(method, path, skip_accept_encoding=True)
            for name, value in (headers or {}).items():
                connection.putheader(name, value)
            connection.endheaders()
            response = connection.getresponse()
            body = response.read()
            return Response(response.status, {k.lower(): v for k, v in response.getheaders()},
                            body)
        finally:
            connection.close()

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait until /readyz returns 200; fail with the server log otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"rodata-api exited with {self.process.returncode}:\n"
                                     + self.log())
            try:
                if self.request("/readyz", timeout=2).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("rodata-api did not become ready:\n" + self.log())

    def log(self) -> str:
        """Return what the server has logged so far."""
        if not self.log_file.closed:
            self.log_file.flush()
        return self.log_path.read_text(errors="replace")

    def log_records(self) -> list[dict]:
        """Return the JSON log lines as dicts."""
        records = []
        for line in self.log().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send `sig` and return the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError("rodata-api did not stop after the signal:\n" + self.log())
        finally:
            self.log_file.close()
