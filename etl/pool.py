"""The worker pool: forked processes that die with the parent, or the parent itself for one.

SIGINT and SIGTERM raise an exception in the main thread wherever it happens to be. Inside
concurrent.futures that can be just after a lock was taken and before anything guards it (a
future's condition, the executor's work-id queue). The executor's manager thread then waits
for that lock for good, and shutting the pool down after Ctrl-C hung. So every call into the
executor runs with those signals deferred. Only the wait for the next finished task, which
holds no lock, takes them at once.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context

from etl.shardwork import init_worker

DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the block runs, then act on them as usual."""
    if threading.current_thread() is not threading.main_thread():
        yield  # Python runs signal handlers in the main thread only, so nothing to hold
        return
    received: list[tuple[int, object]] = []
    previous = {number: signal.signal(number, lambda n, frame: received.append((n, frame)))
                for number in DEFERRED_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number, frame in received:
            handler = previous[number]
            if callable(handler):
                handler(number, frame)  # raises KeyboardInterrupt or the CLI's Terminated
            elif handler == signal.SIG_DFL:
                signal.raise_signal(number)


class Pool:
    """A process pool, or the calling process itself for one worker."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.peak_rss_kib = 0  # largest peak RSS a worker task reported
        self.executor = None
        if workers > 1:
            self.executor = ProcessPoolExecutor(
                max_workers=workers, mp_context=get_context("fork"), initializer=init_worker
            )

    def map(self, function: Callable, *iterables: Iterable) -> list:
        """Return `function` applied to each set of arguments, in order."""
        if self.executor is None:
            return list(map(function, *iterables))
        calls = list(zip(*iterables))
        results: list = [None] * len(calls)
        for index, result in self._completed(function, calls):
            results[index] = result
        return results

    def run_all(self, function: Callable, tasks: Iterable, on_done: Callable) -> None:
        """Run `function` over `tasks`, calling `on_done(task, result)` in completion order."""
        if self.executor is None:
            for task in tasks:
                on_done(task, function(task))
            return
        tasks = list(tasks)
        for index, result in self._completed(function, [(task,) for task in tasks]):
            on_done(tasks[index], result)

    def _completed(self, function: Callable, calls: list[tuple]) -> Iterator[tuple[int, object]]:
        """Yield (index, result) of each call as it finishes."""
        # Finished futures arrive through a queue that their done-callbacks feed, so that the
        # wait takes no lock that an interrupt could leave held.
        finished: queue.SimpleQueue[Future] = queue.SimpleQueue()
        pending: dict[Future, int] = {}
        with deferred_signals():
            for index, arguments in enumerate(calls):
                future = self.executor.submit(function, *arguments)
                pending[future] = index
                future.add_done_callback(finished.put)
        while pending:
            future = finished.get()
            with deferred_signals():
                index = pending.pop(future)
                result = future.result()
            yield index, result

    def close(self, *, kill: bool = False) -> None:
        if self.executor is None:
            return
        if kill:
            # Our own worker processes: stop them now instead of waiting for queued shards.
            for process in list(getattr(self.executor, "_processes", {}).values()):
                if process.is_alive():
                    process.kill()
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.executor = None
