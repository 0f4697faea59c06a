"""The ETL run: plan shards, parse them in a worker pool, assemble, sort, encode and publish.

Memory bound per process: a worker keeps one shard in memory about three times over (mapped
source bytes, parsed Arrow table, IPC output). A shard is at most --shard-mib of source text
(default 32 MiB), longer only by a record that straddles a cut. Assembly then writes each
output column a chunk of rows at a time (etl.assemble), and checks the key order one shard at
a time, so no process keeps a whole column in memory. Rows that are not already in key order are the
exception only in how they are sorted: by key partitions that each fit a fixed budget
(etl.sortkey.sort_by_partitions), with the permutation in a file.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from etl import publish
from etl.assemble import ColumnTask, shard_key_table, shard_keys, write_output_column
from etl.locate import describe, key_locations
from etl.parse import Reject
from etl.pool import Pool
from etl.progress import Progress
from etl.readers import reader_for
from etl.schema import Column, check_key, merge_inferred, pinned_spec, resolve_columns
from etl.sharding import DEFAULT_SHARD_BYTES, Header, Shard
from etl.shardwork import (
    ShardOutcome,
    ShardTask,
    peak_rss_kib,
    run_infer,
    run_shard,
)
from etl.sortkey import key_order_if_sorted, key_text, sort_by_partitions
from etl.spec import DatasetSpec, dump_spec, load_spec
from rodata import __version__ as RODATA_VERSION
from rodata import format as fmt

log = logging.getLogger("rodata.etl")
REJECTS_LISTED = 10_000


class DataError(RuntimeError):
    """The input data cannot be published; the message names file, line, column and reason."""


class UsageError(RuntimeError):
    """The command line or spec is invalid; the message names the option or field."""


@dataclass
class RunOptions:
    """Options of one `rodata-etl run` or `merge` (see etl.cli for their meaning and units)."""

    spec: str
    data_root: str
    source_dir: str = "."
    workers: int = 1
    max_rejects: int | None = None
    keep_generations: int = 2
    shard_bytes: int = DEFAULT_SHARD_BYTES
    rejects_file: str | None = None
    shard_index: int | None = None
    shard_count: int | None = None
    progress_interval: float = 1.0
    show_progress: bool = True


@dataclass
class Summary:
    """The result of a run; `as_dict()` is the JSON summary printed at the end."""

    dataset: str
    generation: str | None
    changed: bool
    rows_in: int = 0
    rows_published: int = 0
    rows_rejected: int = 0
    seconds: float = 0.0
    workers: int = 1
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        out = {
            "dataset": self.dataset,
            "generation": self.generation,
            "changed": self.changed,
            "rows_in": self.rows_in,
            "rows_published": self.rows_published,
            "rows_rejected": self.rows_rejected,
            "seconds": round(self.seconds, 3),
            "workers": self.workers,
            # Throughput of the parse and publish; an unchanged run parses nothing.
            "rows_per_second": (
                round(self.rows_in / self.seconds) if self.changed and self.seconds > 0 else 0
            ),
        }
        out.update(self.extra)
        return out


# ---------------------------------------------------------------------------------------------
# Sources


def resolve_sources(spec: DatasetSpec, source_dir: str) -> list[publish.SourceFile]:
    """Return the spec's source files in order: each entry's glob matches sorted by path."""
    base = Path(source_dir)
    found: list[publish.SourceFile] = []
    for pattern in spec.sources:
        full = str(base / pattern)
        matches = sorted(glob.glob(full)) if glob.has_magic(pattern) else [full]
        matches = [m for m in matches if os.path.isfile(m)]
        if not matches:
            raise DataError(
                f"{spec.path}: source {pattern!r} matches no file under --source-dir {source_dir}"
            )
        for match in matches:
            stat = os.stat(match)
            relative = os.path.relpath(match, base)
            if any(s.absolute == match for s in found):
                continue
            found.append(publish.SourceFile(relative, match, stat.st_size, stat.st_mtime_ns))
    return found


def read_headers(spec: DatasetSpec, sources: list[publish.SourceFile]) -> list[Header]:
    """Return each source's header; all sources must name the same columns in the same order."""
    headers = [
        reader_for(spec).read_header(s.absolute)
        for s in sources
    ]
    for source, header in zip(sources[1:], headers[1:]):
        if header.names != headers[0].names:
            raise DataError(
                f"{source.absolute}: line 1: header {header.names} differs from "
                f"{sources[0].absolute}'s {headers[0].names}; all sources need the same columns"
            )
    return headers


# ---------------------------------------------------------------------------------------------
# Run


class SourceDigests(threading.Thread):
    """Computes the sources' SHA-256 in a background thread while the workers parse."""

    def __init__(self, sources: list[publish.SourceFile]) -> None:
        super().__init__(name="source-digests", daemon=True)
        self.sources = sources
        self.result: list[publish.SourceFile] | None = None
        self.error: OSError | None = None

    def run(self) -> None:
        try:
            self.result = [
                publish.SourceFile(s.path, s.absolute, s.size, s.mtime_ns,
                                   fmt.sha256_file(s.absolute))
                for s in self.sources
            ]
        except OSError as error:  # reported by digests()
            self.error = error

    def digests(self) -> list[publish.SourceFile]:
        if self.ident is not None:  # started as a thread; unchanged_generation calls run()
            self.join()
        if self.error is not None:
            raise DataError(f"cannot read a source file while hashing it: {self.error}")
        assert self.result is not None
        return self.result


def current_manifest(dataset_dir: Path):
    """Return the manifest of the generation CURRENT names, or None."""
    generation = fmt.read_current(dataset_dir)
    if generation is None:
        return None
    try:
        return fmt.read_manifest(dataset_dir / publish.GENERATIONS / generation)
    except (OSError, fmt.FormatError) as error:
        log.warning("cannot read the current generation %s of %s: %s", generation,
                    dataset_dir.name, error)
        return None


def unchanged_generation(spec, sources, dataset_dir: Path) -> str | None:
    """Return the current generation when it was built from exactly these sources and spec."""
    manifest = current_manifest(dataset_dir)
    if manifest is None:
        return None
    recorded = manifest.extra.get("source_stats")
    stats = [[s.path, s.size, s.mtime_ns] for s in sources]
    if recorded != stats or manifest.extra.get("spec_digest") != spec.digest():
        return None
    hashed = SourceDigests(sources)
    hashed.run()
    fingerprint = publish.input_fingerprint(hashed.digests(), spec.digest())
    return manifest.generation if fingerprint == manifest.input_fingerprint else None


def choose_shard_bytes(total: int, parts: int, limit: int) -> int:
    """Return the shard size: at most `limit`, and small enough to give every part work."""
    if total <= 0:
        return limit
    # Below 64 KiB per part the per-task cost dominates, unless the caller asks for less.
    return min(limit, max(1 << 16, -(-total // max(parts, 1))))


def infer_types(pool: Pool, spec, headers, shards) -> dict[str, str]:
    """Infer one storage type per column over every shard of the input."""
    names = tuple(headers[0].names)
    missing = {name: spec.missing_for(name) for name in names}
    tasks = [
        reader_for(spec).infer_task(shard, names, missing, headers[shard.file_index])
        for shard in shards
    ]
    merged = {name: "null" for name in names}
    for result in pool.map(run_infer, tasks):
        for name, (inferred, _) in result.items():
            merged[name] = merge_inferred(merged[name], inferred)
    return {name: ("string" if kind == "null" else kind) for name, kind in merged.items()}


def parse_shards(
    pool: Pool, spec, columns, headers, shards: list[Shard], work_dir: Path, progress: Progress | None
) -> list[ShardOutcome]:
    """Parse `shards` in the pool into Arrow files under `work_dir`; return outcomes by ordinal."""
    plan = reader_for(spec).read_plan(columns)
    tasks = [
        ShardTask(shard, plan, headers[shard.file_index].trailing_delimiter,
                  str(work_dir / f"shard-{shard.ordinal:06d}.arrow"))
        for shard in shards
    ]
    outcomes: dict[int, ShardOutcome] = {}

    def done(task: ShardTask, outcome: ShardOutcome) -> None:
        outcomes[outcome.ordinal] = outcome
        pool.peak_rss_kib = max(pool.peak_rss_kib, outcome.peak_rss_kib)
        if progress is not None:
            progress.advance(rows=outcome.records, nbytes=outcome.nbytes)

    pool.run_all(run_shard, tasks, done)
    return [outcomes[shard.ordinal] for shard in shards]


def check_rejects(outcomes, limit: int, rejects_file: Path) -> int:
    """Write the reject file; raise DataError when the rejects exceed `limit`."""
    count = sum(o.reject_count for o in outcomes)
    if count == 0:
        # A reject file left by an earlier run would describe data that is no longer there.
        rejects_file.unlink(missing_ok=True)
        return 0
    listed: list[Reject] = [r for o in outcomes for r in o.rejects][:REJECTS_LISTED]
    rejects_file.parent.mkdir(parents=True, exist_ok=True)
    temporary = rejects_file.with_name(rejects_file.name + ".part")
    with open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "line", "column", "reason"])
        for reject in listed:
            writer.writerow([reject.file, reject.line, reject.column, reject.reason])
    os.replace(temporary, rejects_file)
    first = listed[0]
    where = f"{first.file}: line {first.line}" + (f", column {first.column!r}" if first.column else "")
    if count > limit:
        raise DataError(
            f"{count} record(s) rejected, more than the limit of {limit}; first: {where}: "
            f"{first.reason}. All rejects (up to {REJECTS_LISTED}) are listed in {rejects_file}. "
            "Fix the source, correct the spec, or raise --max-rejects / max_rejects."
        )
    log.warning("%d record(s) rejected (limit %d), listed in %s; first: %s: %s",
                count, limit, rejects_file, where, first.reason)
    return count


def new_generation_id(fingerprint: str) -> str:
    """Return a generation name that sorts by creation time."""
    now = datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S%fZ}-{fingerprint[:8]}"


def build_generation(
    pool: Pool, spec: DatasetSpec, columns: list[Column], outcomes: list[ShardOutcome],
    staged: Path,
) -> tuple[int, list, dict]:
    """Sort, encode and write every column under `staged/columns`; return rows, schema, files."""
    output_columns: list[Column] = []
    if spec.row_id:
        output_columns.append(Column(spec.row_id, "int64", False, ()))
    output_columns.extend(columns)
    shard_files = tuple(o.output for o in outcomes)
    shard_records = tuple(o.records for o in outcomes)

    def task(position: int, column: Column, permutation: str | None) -> ColumnTask:
        relative = fmt.column_file_name(position)
        return ColumnTask(
            column.name, column.type, column.nullable, column.encoding, shard_files,
            shard_records, column.name == spec.row_id, permutation, str(staged / relative),
            relative,
        )

    positions = {c.name: i for i, c in enumerate(output_columns)}
    by_name = {c.name: c for c in output_columns}
    key_tasks = [task(positions[name], by_name[name], None) for name in spec.key]
    order = key_order_if_sorted(shard_keys(key_tasks))
    permutation_path = None
    if order is None:
        log.info("%s: rows are not in key order; sorting by %s", spec.name, spec.key)
        permutation_path = str(staged.parent / f"{staged.name}.permutation.npy")
        order = sort_by_partitions(
            lambda index: shard_key_table(key_tasks, index), len(shard_files),
            sum(o.rows for o in outcomes), permutation_path,
        )
    if order.duplicate_rows and not spec.allow_duplicate_keys:
        try:
            locations = key_locations(key_tasks, outcomes, order.example,
                                      delimiter=spec.csv.delimiter, quote=spec.csv.quote)
        except (OSError, ValueError) as error:
            # The duplicate is the error to report; not finding its lines must not hide it.
            log.warning("%s: cannot locate the duplicate key's rows: %s", spec.name, error)
            locations = []
        where = f" ({describe(locations)})" if locations else ""
        raise DataError(
            f"{spec.path}: {order.duplicate_rows} row(s) repeat the key {spec.key} of an earlier "
            f"row, for example {key_text(order.example)}{where}; make the key unique or set "
            "allow_duplicate_keys: true in the spec"
        )

    (staged / "columns").mkdir(parents=True)
    tasks = [task(i, c, permutation_path) for i, c in enumerate(output_columns)]
    # The costliest columns go first (strings, then the widest types), so that no worker is
    # still busy with a long column at the end while the others wait.
    scheduled = sorted(tasks, key=assembly_cost, reverse=True)
    finished = dict(zip((t.relative for t in scheduled), pool.map(write_output_column, scheduled)))
    schema, files, row_count = [], {}, 0
    for column_task in tasks:
        entry, length, digest, peak_kib = finished[column_task.relative]
        schema.append(entry)
        files[column_task.relative] = digest
        row_count = length
        pool.peak_rss_kib = max(pool.peak_rss_kib, peak_kib)
    if permutation_path is not None:
        os.unlink(permutation_path)
    return row_count, schema, files


def assembly_cost(task: ColumnTask) -> int:
    """Return a rough relative cost of assembling a column: strings first, then by width."""
    if task.type == "string":
        return 16
    return 1 if task.type == "bool" else fmt.numpy_dtype(task.type).itemsize


def write_manifest(
    staged: Path, *, spec, generation, row_count, schema, files, sources, fingerprint, extra
) -> None:
    """Write the generation's manifest (format module) and fsync it."""
    manifest = fmt.Manifest(
        dataset=spec.name,
        generation=generation,
        created=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        row_count=row_count,
        key=list(spec.key),
        key_unique=not spec.allow_duplicate_keys,
        schema=schema,
        files=files,
        sources=[{"path": s.path, "size": s.size, "sha256": s.sha256} for s in sources],
        input_fingerprint=fingerprint,
        etl_version=RODATA_VERSION,
        format_version=fmt.FORMAT_VERSION,
        extra=extra,
    )
    fmt.write_manifest(staged, manifest)


# ---------------------------------------------------------------------------------------------
# Commands


def prepare(options: RunOptions):
    """Load the spec and sources; return (spec, sources, headers, dataset directory)."""
    spec = load_spec(options.spec)
    sources = resolve_sources(spec, options.source_dir)
    headers = read_headers(spec, sources)
    dataset_dir = Path(options.data_root) / spec.name
    return spec, sources, headers, dataset_dir


def finish_and_publish(
    *, pool: Pool, options, spec, columns, sources, digests: SourceDigests, outcomes,
    dataset_dir: Path, staging_root: Path, rows_rejected, started, workers, inferred_path=None,
) -> Summary:
    """Assemble outcomes into a generation and publish it, unless the inputs are unchanged."""
    hashed = digests.digests()
    fingerprint = publish.input_fingerprint(hashed, spec.digest())
    rows_in = sum(o.records for o in outcomes)
    current = current_manifest(dataset_dir)
    if current is not None and current.input_fingerprint == fingerprint:
        log.info("%s: sources and spec equal those of generation %s; nothing to publish",
                 spec.name, current.generation)
        return Summary(spec.name, current.generation, False, rows_in, current.row_count,
                       rows_rejected, time.monotonic() - started, workers)

    generation = new_generation_id(fingerprint)
    staged = staging_root / generation
    staged.mkdir(parents=True)
    # Staged only: nothing is visible until publish_generation() renames it into place.
    log.info("%s: building generation %s in staging", spec.name, generation)
    row_count, schema, files = build_generation(pool, spec, columns, outcomes, staged)
    extra = {
        "spec_digest": spec.digest(),
        "source_stats": [[s.path, s.size, s.mtime_ns] for s in sources],
        "rows_in": rows_in,
        "rows_rejected": rows_rejected,
        "row_id": spec.row_id,
    }
    write_manifest(
        staged, spec=spec, generation=generation, row_count=row_count, schema=schema, files=files,
        sources=hashed, fingerprint=fingerprint, extra=extra,
    )
    publish.publish_generation(dataset_dir, staged, generation)
    publish.prune_generations(dataset_dir, options.keep_generations)
    seconds = time.monotonic() - started
    log.info("%s: published generation %s: %d rows in %.2f s", spec.name, generation,
             row_count, seconds)
    extra_summary = {
        "path": str(dataset_dir / publish.GENERATIONS / generation),
        # With one worker the tasks run in the parent, so both numbers are the parent's.
        "peak_rss_mib_parent": round(peak_rss_kib() / 1024),
        "peak_rss_mib_worker": round(
            max(pool.peak_rss_kib, max((o.peak_rss_kib for o in outcomes), default=0)) / 1024
        ),
    }
    if inferred_path:
        extra_summary["inferred_spec"] = str(inferred_path)
    return Summary(spec.name, generation, True, rows_in, row_count, rows_rejected, seconds,
                   workers, extra_summary)


def run(options: RunOptions) -> Summary:
    """Run the whole ETL for one dataset in this process and its worker pool."""
    started = time.monotonic()
    spec, sources, headers, dataset_dir = prepare(options)
    workers = options.workers
    with publish.dataset_lock(dataset_dir):
        publish.clean_staging(dataset_dir)
        unchanged = unchanged_generation(spec, sources, dataset_dir)
        if unchanged is not None:
            log.info("%s: sources and spec equal those of generation %s; nothing to publish",
                     spec.name, unchanged)
            manifest = current_manifest(dataset_dir)
            return Summary(spec.name, unchanged, False, manifest.extra.get("rows_in", 0),
                           manifest.row_count, manifest.extra.get("rows_rejected", 0),
                           time.monotonic() - started, workers)

        staging_root = dataset_dir / publish.STAGING
        work_dir = staging_root / f"run-{os.getpid()}"
        work_dir.mkdir(parents=True)
        digests = SourceDigests(sources)
        digests.start()
        pool = Pool(workers)
        killed = True
        try:
            total = sum(h.size - h.data_start for h in headers)
            shard_bytes = choose_shard_bytes(total, workers, options.shard_bytes)
            files = [(s.absolute, h) for s, h in zip(sources, headers)]
            shards = reader_for(spec).plan_shards(
                files, shard_bytes=shard_bytes, map_function=pool.map
            )
            log.info("%s: %d source file(s), %d bytes, %d shard(s) on %d worker(s)",
                     spec.name, len(sources), total, len(shards), workers)

            inferred_path = None
            inferred = None
            if not spec.fully_typed() or len(spec.columns) < len(headers[0].names):
                inferred = infer_types(pool, spec, headers, shards)
                columns = resolve_columns(spec, headers[0].names, inferred)
                inferred_path = dataset_dir / "inferred-spec.yaml"
                dump_spec(pinned_spec(spec, columns), inferred_path)
                log.info("%s: inferred column types %s; the spec with these types pinned is "
                         "in %s", spec.name,
                         {c.name: c.type for c in columns}, inferred_path)
            else:
                columns = resolve_columns(spec, headers[0].names)
            columns = force_key_not_null(spec, columns)
            check_key(spec, columns)

            progress = None
            if options.show_progress:
                progress = Progress(dataset=spec.name, total_bytes=total,
                                    interval=options.progress_interval)
            outcomes = parse_shards(pool, spec, columns, headers, shards, work_dir, progress)

            limit = options.max_rejects if options.max_rejects is not None else spec.max_rejects
            rejects_file = Path(options.rejects_file or dataset_dir / "rejects.csv")
            rows_rejected = check_rejects(outcomes, limit, rejects_file)
            summary = finish_and_publish(
                pool=pool, options=options, spec=spec, columns=columns, sources=sources,
                digests=digests, outcomes=outcomes, dataset_dir=dataset_dir,
                staging_root=staging_root, rows_rejected=rows_rejected, started=started,
                workers=workers, inferred_path=inferred_path,
            )
            killed = False
            return summary
        finally:
            pool.close(kill=killed)
            publish.clean_staging(dataset_dir, quiet=True)


def force_key_not_null(spec: DatasetSpec, columns: list[Column]) -> list[Column]:
    """Return `columns` with key columns made non-nullable (a key value may not be missing)."""
    return [
        replace(c, nullable=False) if c.name in spec.key else c
        for c in columns
    ]


def shard_run_dir(spec: DatasetSpec, sources, dataset_dir: Path, shard_count: int) -> Path:
    """Return the staging directory that the processes of one sharded run share."""
    stats = repr([(s.path, s.size, s.mtime_ns) for s in sources])
    key = hashlib.sha256(f"{spec.digest()}\n{stats}\n{shard_count}".encode()).hexdigest()[:16]
    return dataset_dir / publish.STAGING / f"shards-{shard_count}-{key}"


def run_shard_part(options: RunOptions) -> Summary:
    """Parse the shards that belong to process `shard_index` of `shard_count` into staging."""
    started = time.monotonic()
    spec, sources, headers, dataset_dir = prepare(options)
    index, count = options.shard_index, options.shard_count
    if not spec.fully_typed() or len(spec.columns) < len(headers[0].names):
        raise UsageError(
            f"{spec.path}: a sharded run (--shard-count) needs a type for every column, because "
            "separate processes cannot infer one schema together; run once without "
            "--shard-count and pin the inferred spec it writes"
        )
    columns = force_key_not_null(spec, resolve_columns(spec, headers[0].names))
    check_key(spec, columns)
    work_dir = shard_run_dir(spec, sources, dataset_dir, count)
    work_dir.mkdir(parents=True, exist_ok=True)

    total = sum(h.size - h.data_start for h in headers)
    # Every process plans alike, so the plan may depend only on the inputs and the shard count.
    shard_bytes = choose_shard_bytes(total, count, options.shard_bytes)
    pool = Pool(options.workers)
    killed = True
    try:
        files = [(s.absolute, h) for s, h in zip(sources, headers)]
        shards = reader_for(spec).plan_shards(
            files, shard_bytes=shard_bytes, map_function=pool.map
        )
        mine = [s for s in shards if s.ordinal % count == index]
        log.info("%s: shard process %d of %d takes %d of %d shard(s)", spec.name, index, count,
                 len(mine), len(shards))
        progress = None
        if options.show_progress:
            progress = Progress(dataset=spec.name, total_bytes=sum(s.end - s.start for s in mine),
                                interval=options.progress_interval)
        outcomes = parse_shards(pool, spec, columns, headers, mine, work_dir, progress)
        pool.close()
        killed = False
    finally:
        pool.close(kill=killed)

    marker = work_dir / f"done-{index}.json"
    temporary = marker.with_name(marker.name + ".part")
    temporary.write_text(json.dumps({"shards": len(shards),
                                     "outcomes": [asdict(o) for o in outcomes]}))
    os.replace(temporary, marker)
    # Nothing is published until the merge, which also applies the reject limit to the whole
    # dataset, so this summary counts parsed rows only.
    rows = sum(o.rows for o in outcomes)
    return Summary(spec.name, None, False, sum(o.records for o in outcomes), 0,
                   sum(o.reject_count for o in outcomes), time.monotonic() - started,
                   options.workers, {"rows_parsed": rows, "shard_index": index,
                                     "shard_count": count,
                                     "staging": str(work_dir)})


def merge(options: RunOptions) -> Summary:
    """Assemble the outputs of all shard processes and publish one generation."""
    started = time.monotonic()
    spec, sources, headers, dataset_dir = prepare(options)
    count = options.shard_count
    columns = force_key_not_null(spec, resolve_columns(spec, headers[0].names))
    work_dir = shard_run_dir(spec, sources, dataset_dir, count)
    with publish.dataset_lock(dataset_dir):
        outcomes: list[ShardOutcome] = []
        missing = [index for index in range(count)
                   if not (work_dir / f"done-{index}.json").is_file()]
        if missing:
            listed = ", ".join(str(index) for index in missing)
            raise DataError(
                f"shard process(es) {listed} of {count} have not finished: no done-<index>.json "
                f"in {work_dir}; run `rodata-etl run ... --shard-index I --shard-count {count}` "
                "for each before merging"
            )
        for index in range(count):
            marker = work_dir / f"done-{index}.json"
            for item in json.loads(marker.read_text())["outcomes"]:
                item["rejects"] = [Reject(**r) for r in item["rejects"]]
                outcomes.append(ShardOutcome(**item))
        outcomes.sort(key=lambda o: o.ordinal)
        if [o.ordinal for o in outcomes] != list(range(len(outcomes))):
            raise DataError(f"{work_dir}: shard outputs are incomplete or from different runs")
        staging_root = dataset_dir / publish.STAGING
        keep = {work_dir.name}
        publish.clean_staging(dataset_dir, keep=keep)
        limit = options.max_rejects if options.max_rejects is not None else spec.max_rejects
        rejects_file = Path(options.rejects_file or dataset_dir / "rejects.csv")
        digests = SourceDigests(sources)
        digests.start()
        pool = Pool(options.workers)
        killed = True
        try:
            rows_rejected = check_rejects(outcomes, limit, rejects_file)
            summary = finish_and_publish(
                pool=pool, options=options, spec=spec, columns=columns, sources=sources,
                digests=digests, outcomes=outcomes, dataset_dir=dataset_dir,
                staging_root=staging_root, rows_rejected=rows_rejected, started=started,
                workers=options.workers,
            )
            killed = False
            keep = set()
            return summary
        finally:
            pool.close(kill=killed)
            # A failed merge keeps the shard outputs, so that a merge with a higher
            # --max-rejects, or after a full disk is cleared, does not parse everything again.
            if keep:
                log.info("%s: shard outputs kept in %s for the next merge", spec.name, work_dir)
            publish.clean_staging(dataset_dir, keep=keep, quiet=True)
