"""Progress lines on stderr for long runs: rows, bytes, rate and estimated time left."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def human_bytes(count: float) -> str:
    """Return `count` bytes in binary units, such as '1.5 GiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def human_count(count: float) -> str:
    """Return a row count or rate in short form, such as '2.1M'."""
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(count) >= threshold:
            return f"{count / threshold:.1f}{suffix}"
    return f"{count:.0f}"


class Progress:
    """Prints at most one progress line per `interval` seconds while shards finish."""

    def __init__(
        self, *, dataset: str, total_bytes: int, stream: TextIO = sys.stderr,
        interval: float = 1.0, clock=time.monotonic,
    ) -> None:
        self.dataset = dataset
        self.total_bytes = total_bytes
        self.stream = stream
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self.last_print = self.started
        self.rows = 0
        self.bytes = 0

    def advance(self, *, rows: int, nbytes: int) -> None:
        """Count one finished shard and print a line when `interval` has passed."""
        self.rows += rows
        self.bytes += nbytes
        now = self.clock()
        if now - self.last_print >= self.interval:
            self.last_print = now
            print(self.line(now), file=self.stream, flush=True)

    def line(self, now: float | None = None) -> str:
        """Return the current progress line."""
        now = self.clock() if now is None else now
        elapsed = max(now - self.started, 1e-9)
        rate = self.rows / elapsed
        fraction = self.bytes / self.total_bytes if self.total_bytes else 1.0
        if 0 < fraction < 1:
            eta = f"ETA {elapsed * (1 - fraction) / fraction:.0f} s"
        else:
            eta = "ETA -"
        return (
            f"{self.dataset}: {human_count(self.rows)} rows, {human_bytes(self.bytes)} of "
            f"{human_bytes(self.total_bytes)} ({fraction:.0%}), {human_count(rate)} rows/s, {eta}"
        )
