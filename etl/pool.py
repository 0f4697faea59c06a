"""The worker pool: forked processes that die with the parent, or the parent itself for one."""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context

from etl.shardwork import init_worker


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

    def map(self, function, *iterables):
        if self.executor is None:
            return map(function, *iterables)
        return self.executor.map(function, *iterables)

    def run_all(self, function, tasks, on_done):
        """Run `function` over `tasks`, calling `on_done(task, result)` in completion order."""
        if self.executor is None:
            for task in tasks:
                on_done(task, function(task))
            return
        pending = {self.executor.submit(function, task): task for task in tasks}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                task = pending.pop(future)
                on_done(task, future.result())

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
