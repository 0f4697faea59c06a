"""Compare one row served by the rodata API with the same record in its source CSV file.

Exit status 0 when every column of the CSV record matches the served row, 1 on a mismatch or a
missing row, 2 on usage errors. The last line of stdout is a JSON report.
Matching rules: "NA" or an empty field equals null, numbers compare numerically (relative
tolerance 1e-9), timestamps compare as instants (naive ones taken as UTC), the rest as text.
"""

import argparse
import csv
import json
import math
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime

NULL_FIELDS = {"", "NA"}


def parse_instant(text: str) -> datetime | None:
    """Return text as an aware datetime, or None when it is not an ISO 8601 timestamp."""
    try:
        # Python 3.11 parses a trailing "Z" as UTC.
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def values_match(source: str, served: object) -> bool:
    """Return whether a CSV field and a served JSON value denote the same value."""
    if source in NULL_FIELDS or served is None:
        return source in NULL_FIELDS and served is None
    if isinstance(served, bool):
        return source.strip().lower() in ({"true", "1"} if served else {"false", "0"})
    if isinstance(served, (int, float)):
        try:
            return math.isclose(float(source), float(served), rel_tol=1e-9, abs_tol=1e-12)
        except ValueError:
            return False
    served_text = str(served)
    if served_text == source:
        return True
    source_instant, served_instant = parse_instant(source), parse_instant(served_text)
    return source_instant is not None and source_instant == served_instant


def read_source_record(path: str, row: int | None, key_column: str | None, key: str) -> dict:
    """Return the CSV record at 1-based data row `row`, or the first whose key_column equals key."""
    with open(path, newline="", encoding="utf-8") as handle:
        for number, record in enumerate(csv.DictReader(handle), start=1):
            if row is not None and number == row:
                return record
            if key_column is not None and record.get(key_column) == key:
                return record
    where = f"data row {row}" if row is not None else f"{key_column}={key!r}"
    raise LookupError(f"{path}: no record with {where}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="API base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--key", required=True, help="row key as it appears in the URL")
    parser.add_argument("--csv", required=True, help="source CSV file")
    selector = parser.add_mutually_exclusive_group(required=True)
    selector.add_argument("--source-row", type=int, help="1-based data row of the record")
    selector.add_argument("--key-column", help="CSV column that contains the key")
    args = parser.parse_args()

    # The key goes into the URL as given: a composite key's separating commas stay literal.
    url = f"{args.url}/v1/datasets/{args.dataset}/rows/{urllib.parse.quote(args.key, safe=',:')}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            served = json.load(response)["row"]
        source = read_source_record(args.csv, args.source_row, args.key_column, args.key)
    except (urllib.error.URLError, LookupError, KeyError, OSError) as error:
        print(json.dumps({"url": url, "error": str(error)}))
        return 1

    mismatches = [
        {"column": column, "source": value, "served": served.get(column, "<missing>")}
        for column, value in source.items()
        if column not in served or not values_match(value, served[column])
    ]
    print(json.dumps({"url": url, "columns": len(source), "mismatches": mismatches}))
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
