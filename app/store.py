"""Published generations that the service serves, and the switch to newer ones.

Each dataset has one current `LoadedGeneration`. A request takes a lease on it for as long as
it reads from it, including while its body is being sent. Switching to a newer generation is
therefore one assignment. New requests see the new generation, requests in flight finish on
the old mapping, and the old generation is closed when its last lease is returned.
All of this runs on the event loop thread; only opening and pre-warming run in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from rodata import format as fmt

from . import metrics
from .config import NAME_PATTERN, Settings
from .typed import INTEGER_TYPES, NUMERIC_TYPES

log = logging.getLogger("rodata.api.store")

PAGE = 4096


class LoadedGeneration:
    """One opened generation of a dataset, with the lookup structures derived from it."""

    def __init__(self, dataset: str, generation: Any, path: Path) -> None:
        self.dataset = dataset
        self.handle = generation
        self.path = path
        self.manifest = generation.manifest
        self.generation: str = self.manifest.generation
        self.columns: dict[str, Any] = generation.columns
        self.schema = {column.name: column for column in self.manifest.schema}
        self.column_names: list[str] = [column.name for column in self.manifest.schema]
        self.key: list[str] = list(self.manifest.key)
        self.key_unique: bool = bool(self.manifest.key_unique)
        # A single numeric key column allows the one-search lookup in the row handler.
        self.key_fixed = (len(self.key) == 1 and self.key[0] in self.schema
                          and self.schema[self.key[0]].type in NUMERIC_TYPES)
        # The largest value of a single integer key column's type, for parsing keys fast.
        key_type = self.schema[self.key[0]].type if self.key_fixed else None
        self.key_integer_max: int | None = (int(np.iinfo(key_type).max)
                                            if key_type in INTEGER_TYPES else None)
        self.row_count: int = int(self.manifest.row_count)
        # A missing key column file is reported by Store._open with a clear message.
        self.key_first: int | None = (self.columns[self.key[0]].values.item(0)
                                      if self.key_integer_max is not None and self.row_count
                                      and self.key[0] in self.columns else None)
        self.size_bytes: int = sum(int(entry["size"]) for entry in self.manifest.files.values())
        self._dictionaries: dict[str, list[str]] = {}
        self._row_reader: Any = None
        self._dictionary_arrays: dict[str, np.ndarray] = {}
        self._dictionary_bytes: dict[str, list[bytes]] = {}
        self.rows_scanned = metrics.REQUEST_METRICS.scanned(dataset)
        self.leases = 0
        self.retired = False
        self.closed = False

    def dictionary(self, name: str) -> list[str]:
        """Return the dictionary values of a dictionary-encoded column (cached)."""
        values = self._dictionaries.get(name)
        if values is None:
            values = self._dictionaries[name] = self.columns[name].dictionary_values()
        return values

    def row_reader(self) -> Any:
        """Return the generation's RowReader (built on first use)."""
        if self._row_reader is None:
            from app.encode import RowReader

            self._row_reader = RowReader(self)
        return self._row_reader

    def dictionary_array(self, name: str) -> np.ndarray:
        """Return the dictionary values as a numpy object array (cached)."""
        values = self._dictionary_arrays.get(name)
        if values is None:
            values = np.array(self.dictionary(name), dtype=object)
            self._dictionary_arrays[name] = values
        return values

    def dictionary_bytes(self, name: str) -> list[bytes]:
        """Return the dictionary values as UTF-8 bytes, the order the codes follow (cached)."""
        values = self._dictionary_bytes.get(name)
        if values is None:
            values = self._dictionary_bytes[name] = [v.encode() for v in self.dictionary(name)]
        return values

    def describe(self) -> dict[str, Any]:
        """Return the summary used by GET /v1/datasets."""
        return {"name": self.dataset, "generation": self.generation,
                "row_count": self.row_count, "created": self.manifest.created,
                "size_bytes": self.size_bytes}

    def prewarm(self) -> int:
        """Touch every page of the key columns so the first lookups do not wait for the disk.

        Returns the number of bytes touched. Reading one byte per page faults the page in;
        the values are summed only so that numpy cannot skip the reads.
        """
        touched = 0
        for name in self.key:
            column = self.columns[name]
            names = ("values", "offsets", "data", "dictionary_offsets", "dictionary_data")
            for attribute in names:
                array = getattr(column, attribute, None)
                if array is None or not isinstance(array, np.ndarray) or array.size == 0:
                    continue
                raw = array.reshape(-1).view(np.uint8)
                int(raw[::PAGE].sum(dtype=np.uint64))
                touched += raw.size
            if column.encoding == "dictionary":
                self.dictionary(name)
        self.row_reader()
        return touched

    def acquire(self) -> LoadedGeneration:
        """Take a lease; every acquire is paired with one release."""
        self.leases += 1
        return self

    def release(self) -> None:
        """Return a lease, closing the generation if it is retired and this was the last."""
        self.leases -= 1
        if self.retired and self.leases == 0:
            self.close()

    def retire(self) -> None:
        """Mark as replaced; the mapping is closed once no request holds a lease."""
        self.retired = True
        if self.leases == 0:
            self.close()

    def close(self) -> None:
        """Release the memory maps."""
        if self.closed:
            return
        self.closed = True
        self._dictionaries.clear()
        self._dictionary_bytes.clear()
        self._dictionary_arrays.clear()
        self._row_reader = None
        try:
            self.handle.close()
        except BufferError:
            # A numpy view on the map is still referenced, for instance by a transport
            # buffer. The map is then released when that view is garbage collected.
            log.warning("generation closed with live views", extra={
                "dataset": self.dataset, "generation": self.generation})
        log.info("generation released", extra={"dataset": self.dataset,
                                                "generation": self.generation})


class Store:
    """The datasets the service serves and the loop that picks up newly published generations."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.current: dict[str, LoadedGeneration] = {}
        # Generation ids that failed to open, per dataset, so the failure is logged once and
        # retried only when CURRENT names another generation.
        self.rejected: dict[str, str] = {}
        self.current_errors: dict[str, str] = {}
        self.missing_logged: set[str] = set()
        self.invalid_names: set[str] = set()
        self.draining = False
        self.loaded_once = False
        self._task: asyncio.Task[None] | None = None

    # Readiness ---------------------------------------------------------------------------

    def dataset_names(self) -> list[str]:
        """Return the configured dataset names, or those with a CURRENT file under the root."""
        if self.settings.datasets:
            return list(self.settings.datasets)
        names = []
        try:
            entries = sorted(self.settings.data_root.iterdir())
        except OSError as error:
            log.error("cannot list the data root", extra={
                "data_root": str(self.settings.data_root), "error": str(error)})
            return list(self.current)
        for entry in entries:
            if not (entry / "CURRENT").is_file():
                continue
            if NAME_PATTERN.match(entry.name):
                names.append(entry.name)
            elif entry.name not in self.invalid_names:
                # Logged once, because a user who sees the directory expects it to be served.
                self.invalid_names.add(entry.name)
                log.warning("ignoring a directory with a CURRENT file: its name is not a valid "
                            "dataset name (letters, digits, '_', '.', '-', starting with a letter "
                            "or digit); rename it", extra={"directory": str(entry)})
        return names

    def readiness(self) -> tuple[bool, str]:
        """Return whether the service is ready and, if not, why."""
        if self.draining:
            return False, "shutting down"
        if not self.loaded_once:
            return False, "loading generations"
        expected = self.settings.datasets or tuple(self.current)
        if not expected:
            reason = f"no dataset with a CURRENT file under {self.settings.data_root}"
            if self.invalid_names:
                reason += ("; ignored directories with invalid names: "
                           + ", ".join(repr(name) for name in sorted(self.invalid_names)))
            return False, reason
        missing = [name for name in expected if name not in self.current]
        if missing:
            return False, "no generation loaded for: " + ", ".join(missing)
        return True, "ready"

    # Loading -----------------------------------------------------------------------------

    def _open(self, name: str, generation_id: str) -> LoadedGeneration:
        """Open, validate and pre-warm one generation (runs in a worker thread)."""
        started = time.perf_counter()
        path = self.settings.data_root / name / "generations" / generation_id
        handle = fmt.open_generation(path, verify_checksums=self.settings.verify_checksums)
        try:
            loaded = LoadedGeneration(name, handle, path)
            if loaded.generation != generation_id:
                raise fmt.FormatError(f"{path}/manifest.json names generation "
                                      f"{loaded.generation!r}, but CURRENT names "
                                      f"{generation_id!r}")
            missing = [key for key in loaded.key if key not in loaded.columns]
            if missing:
                raise fmt.FormatError(f"{path}: key columns {missing} have no column file")
            touched = loaded.prewarm()
        except BaseException:
            handle.close()
            raise
        log.info("generation opened", extra={
            "dataset": name, "generation": generation_id, "rows": loaded.row_count,
            "prewarmed_bytes": touched, "verify_checksums": self.settings.verify_checksums,
            "seconds": round(time.perf_counter() - started, 3)})
        return loaded

    async def refresh(self) -> None:
        """Load every dataset whose CURRENT names a generation other than the one served."""
        for name in self.dataset_names():
            try:
                generation_id = fmt.read_current(self.settings.data_root / name)
            except (OSError, ValueError) as error:
                # Logged once per distinct problem, not on every poll.
                if self.current_errors.get(name) != str(error):
                    self.current_errors[name] = str(error)
                    log.error("cannot read CURRENT; keeping the generation served", extra={
                        "dataset": name, "error": f"{type(error).__name__}: {error}"})
                continue
            self.current_errors.pop(name, None)
            if generation_id is None:
                if name not in self.current and name not in self.missing_logged:
                    self.missing_logged.add(name)
                    directory = self.settings.data_root / name
                    message = ("no published generation yet; not ready until the ETL "
                               "publishes one")
                    if not directory.is_dir():
                        message = ("dataset directory not found; check RODATA_DATASETS for a "
                                   "misspelt name, or run the ETL to publish the dataset")
                    log.warning(message, extra={"dataset": name,
                                                "current": str(directory / "CURRENT")})
                continue
            served = self.current.get(name)
            if served is not None and served.generation == generation_id:
                continue
            if self.rejected.get(name) == generation_id:
                continue
            try:
                loaded = await asyncio.to_thread(self._open, name, generation_id)
            except (OSError, ValueError, KeyError, TypeError) as error:
                # FormatError is a ValueError. The previous generation, if any, keeps serving.
                self._reject(name, generation_id, error)
                continue
            self._install(loaded)
        self.loaded_once = True
        metrics.READY.set(1 if self.readiness()[0] else 0)

    def _reject(self, name: str, generation_id: str, error: BaseException) -> None:
        self.rejected[name] = generation_id
        metrics.GENERATION_REJECTED.labels(name).inc()
        served = self.current.get(name)
        log.error("new generation rejected; keeping the one served", extra={
            "dataset": name, "generation": generation_id,
            "serving": served.generation if served else None,
            "error": f"{type(error).__name__}: {error}"})

    def _install(self, loaded: LoadedGeneration) -> None:
        name = loaded.dataset
        old = self.current.get(name)
        loaded.acquire()  # the store's own lease, returned when the generation is replaced
        self.current[name] = loaded
        self.rejected.pop(name, None)
        metrics.GENERATION_SWITCHES.labels(name).inc()
        metrics.GENERATION_ROWS.labels(name).set(loaded.row_count)
        metrics.GENERATION.labels(name, loaded.generation).set(1)
        if old is not None:
            metrics.GENERATION.remove(name, old.generation)
            log.info("generation switched", extra={
                "dataset": name, "generation": loaded.generation, "previous": old.generation,
                "previous_leases": old.leases - 1})
            old.retire()
            old.release()

    async def run(self) -> None:
        """Poll CURRENT files until cancelled."""
        while True:
            try:
                await self.refresh()
            except Exception:  # the poller must survive any surprise and keep serving
                log.exception("generation refresh failed")
            await asyncio.sleep(self.settings.reload_seconds)

    async def start(self, *, load_first: bool = False) -> None:
        """Start the polling task on the running loop.

        With `load_first`, the first load finishes before this returns, so the caller starts
        serving with its generations in place. Several worker processes share one socket, and a
        200 from /readyz in one of them tells nothing about the others, so each worker loads first.
        """
        if load_first:
            try:
                await self.refresh()
            except Exception:  # the poller below retries, and a worker that returns 503 can recover
                log.exception("first generation load failed")
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        """Stop polling and release every generation."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for loaded in self.current.values():
            loaded.retire()
            loaded.release()
        self.current.clear()
