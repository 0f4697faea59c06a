"""Awkward and bad input: BOM, CRLF, trailing delimiter, long fields, markers, rejects."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest
from etl_helpers import current_dir, read_rows, write_spec
from support import run_etl


def setup(tmp_path: Path, csv_bytes: bytes, spec_text: str) -> tuple[Path, Path, Path]:
    sources = tmp_path / "src"
    sources.mkdir(exist_ok=True)
    (sources / "data.csv").write_bytes(csv_bytes)
    spec = write_spec(tmp_path / "spec.yaml", spec_text)
    return sources, spec, tmp_path / "root"


def etl(spec: Path, root: Path, sources: Path, *extra: str, check: bool = True):
    return run_etl("run", "--spec", str(spec), "--data-root", str(root), "--source-dir",
                   str(sources), "--no-progress", "--workers", "2", *extra, check=check)


def failed_run(tmp_path: Path, csv_bytes: bytes, spec_text: str) -> str:
    """Run the ETL on one source file, check that it fails with exit 1, return its stderr."""
    sources, spec, root = setup(tmp_path, csv_bytes, spec_text)
    result = etl(spec, root, sources, check=False)
    assert result.returncode == 1, result.stderr
    return result.stderr


SPEC = """\
name: demo
sources: [data.csv]
row_id: id
missing: []
columns:
  - {name: n, type: int8, missing: ["NA"]}
  - {name: text, type: string}
"""


def test_bom_crlf_trailing_delimiter(tmp_path):
    data = b"\xef\xbb\xbfn,text,\r\n1,a,\r\n2,\"b,\r\nc\",\r\n"
    sources, spec, root = setup(tmp_path, data, SPEC)
    etl(spec, root, sources)
    rows = read_rows(root / "demo")
    assert rows == {"id": [1, 2], "n": [1, 2], "text": ["a", "b,\r\nc"]}


def test_text_na_stays_text_unless_declared(tmp_path):
    data = b"n,text\nNA,NA\n3,\n"
    sources, spec, root = setup(tmp_path, data, SPEC)
    etl(spec, root, sources)
    rows = read_rows(root / "demo")
    assert rows["n"] == [None, 3]
    assert rows["text"] == ["NA", ""]


def test_text_marker_declared_missing(tmp_path):
    spec_text = SPEC.replace("{name: text, type: string}",
                             "{name: text, type: string, missing: [\"NA\", \"\"]}")
    sources, spec, root = setup(tmp_path, b"n,text\n1,NA\n2,\n3,x\n", spec_text)
    etl(spec, root, sources)
    assert read_rows(root / "demo")["text"] == [None, None, "x"]


def test_field_over_128_kib(tmp_path):
    long_text = "é" * (100 * 1024)  # 200 KiB of UTF-8
    data = f'n,text\n1,"{long_text}"\n2,short\n'.encode()
    sources, spec, root = setup(tmp_path, data, SPEC)
    etl(spec, root, sources, "--shard-mib", "0.01")
    rows = read_rows(root / "demo")
    assert rows["text"] == [long_text, "short"]


def read_rejects(root: Path) -> list[dict]:
    with open(root / "demo" / "rejects.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


BAD = (
    b"n,text\n"
    b"1,ok\n"
    b"300,overflow\n"          # line 3: 300 does not fit int8
    b"2,\"multi\nline\"\n"     # lines 4-5
    b"x7,not a number\n"       # line 6
    b"4,bad \xff\xfe utf8\n"   # line 7
    b"5,too,many\n"            # line 8
    b"6,fine\n"                # line 9
)


def test_rejects_over_limit_publish_nothing(tmp_path):
    sources, spec, root = setup(tmp_path, BAD, SPEC)
    result = etl(spec, root, sources, check=False)
    assert result.returncode == 1
    assert "4 record(s) rejected, more than the limit of 0" in result.stderr
    assert "data.csv: line 3, column 'n': invalid int8 value '300'" in result.stderr
    assert current_dir(root / "demo") is None
    assert not list((root / "demo" / ".staging").iterdir())

    rejects = read_rejects(root)
    by_line = {int(r["line"]): r for r in rejects}
    assert sorted(by_line) == [3, 6, 7, 8]
    assert by_line[3]["column"] == "n"
    assert by_line[6]["reason"] == "invalid int8 value 'x7'"
    assert by_line[7] == {"file": str(sources / "data.csv"), "line": "7", "column": "text",
                          "reason": "invalid UTF-8 byte sequence"}
    assert by_line[8]["reason"] == "expected 2 fields, found 3"


def test_rejects_within_limit_publish_good_rows(tmp_path):
    sources, spec, root = setup(tmp_path, BAD, SPEC)
    result = etl(spec, root, sources, "--max-rejects", "4")
    assert '"rows_rejected": 4' in result.stdout
    rows = read_rows(root / "demo")
    assert len(read_rejects(root)) == 4
    # Ids are record positions in the file, so rejected records leave gaps.
    assert rows["id"] == [1, 3, 7]
    assert rows["n"] == [1, 2, 6]
    assert rows["text"] == ["ok", "multi\nline", "fine"]


def test_rejects_identical_for_any_shard_size(tmp_path):
    sources, spec, _ = setup(tmp_path, BAD * 40, SPEC.replace("row_id: id\n", "row_id: id\nallow_duplicate_keys: true\n"))
    header_lines = 39  # the header line repeats as a record in the copies after the first
    outcomes = []
    for shard_mib in ("1", "0.0001"):
        target = tmp_path / f"root-{shard_mib}"
        etl(spec, target, sources, "--max-rejects", "1000", "--shard-mib", shard_mib,
            "--rejects-file", str(target / "rejects.csv"))
        outcomes.append((read_rows(target / "demo"), (target / "rejects.csv").read_text()))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][1].count("\n") == 1 + 40 * 4 + header_lines


def test_missing_value_in_non_nullable_column(tmp_path):
    spec_text = SPEC.replace("{name: text, type: string}", "{name: text, type: string, "
                             "nullable: false, missing: [\"\"]}")
    stderr = failed_run(tmp_path, b"n,text\n1,a\n2,\n", spec_text)
    assert "line 3, column 'text': missing value in a non-nullable column" in stderr


def test_duplicate_keys_rejected_unless_allowed(tmp_path):
    spec_text = "name: demo\nsources: [data.csv]\nkey: [k]\nmissing: []\ncolumns:\n" \
                "  - {name: k, type: string}\n  - {name: v, type: int64}\n"
    sources, spec, root = setup(tmp_path, b"k,v\nb,1\na,2\nb,3\n", spec_text)
    result = etl(spec, root, sources, check=False)
    assert result.returncode == 1
    data_csv = sources / "data.csv"
    assert (f"1 row(s) repeat the key ['k'] of an earlier row, for example b "
            f"({data_csv} line 2 and line 4);") in result.stderr

    write_spec(spec, spec_text + "allow_duplicate_keys: true\n")
    etl(spec, root, sources)
    assert not (root / "demo" / "rejects.csv").exists()
    rows = read_rows(root / "demo")
    # Stable sort: duplicates stay in source order.
    assert rows == {"k": ["a", "b", "b"], "v": [2, 1, 3]}


@pytest.mark.parametrize("shard_mib", ["64", "0.00003"])  # one shard per file, or ~31 bytes
def test_duplicate_key_error_names_file_and_line(tmp_path, shard_mib):
    # The lines count a quoted newline, a blank line and a rejected record before the repeat,
    # and the two rows sit in different files (and, with tiny shards, different shards).
    spec_text = "name: demo\nsources: ['*.csv']\nkey: [k]\nmissing: []\nmax_rejects: 5\n" \
                "columns:\n  - {name: k, type: string}\n  - {name: v, type: string}\n" \
                "  - {name: n, type: int64}\n"
    sources, spec, root = setup(tmp_path, b"", spec_text)
    (sources / "data.csv").unlink()
    first = sources / "a.csv"
    first.write_bytes(b'k,v,n\nz,"two\nlines",1\n\nb,x,not-a-number\nc,y,3\n')
    second = sources / "b.csv"
    second.write_bytes(b"k,v,n\nd,z,4\nc,w,5\n")
    result = etl(spec, root, sources, "--shard-mib", shard_mib, check=False)
    assert result.returncode == 1, result.stderr
    assert f"for example c ({first} line 6 and {second} line 3);" in result.stderr


def test_timestamps_in_named_time_zone(tmp_path):
    # New York local times: winter is UTC-5, summer UTC-4. On 2013-11-03 01:30 happened twice
    # and on 2013-03-10 02:30 never happened; an offset is not expected in this column.
    spec_text = "name: demo\nsources: [data.csv]\nkey: [n]\nmissing: [NA]\nmax_rejects: 3\n" \
                "columns:\n  - {name: n, type: int64}\n" \
                "  - {name: t, type: timestamp, timezone: America/New_York}\n"
    data = (b"n,t\n1,2013-01-01 05:00:00\n2,2013-07-01T05:00:00\n3,2013-11-03 01:30:00\n"
            b"4,2013-03-10 02:30:00\n5,2013-01-01T05:00:00Z\n6,NA\n")
    sources, spec, root = setup(tmp_path, data, spec_text)
    etl(spec, root, sources, "--rejects-file", str(tmp_path / "rejects.csv"))
    rows = read_rows(root / "demo")
    assert rows["n"] == [1, 2, 6]
    # The store keeps UTC and reads back naive datetimes in UTC.
    assert rows["t"] == [dt.datetime(2013, 1, 1, 10), dt.datetime(2013, 7, 1, 9), None]
    with open(tmp_path / "rejects.csv", newline="") as handle:
        rejects = list(csv.DictReader(handle))
    assert [(r["line"], r["column"]) for r in rejects] == [("4", "t"), ("5", "t"), ("6", "t")]
    assert [r["reason"] for r in rejects] == [
        ("invalid timestamp value '2013-11-03 01:30:00': this local time occurs twice in "
        "America/New_York (clocks were set back)"),
        ("invalid timestamp value '2013-03-10 02:30:00': this local time does not exist in "
        "America/New_York (clocks were set forward)"),
        ("invalid timestamp value '2013-01-01T05:00:00Z': the column's timezone is "
        "America/New_York, so values carry no zone offset"),
    ]


@pytest.mark.parametrize(("spec_tail", "data", "reason"), [
    # A column's own missing list replaces the default [""].
    ("  - {name: v, type: int64, missing: [NA]}\n", b"n,v\n1,NA\n2,\n",
     ("line 3, column 'v': invalid int64 value '': an empty field, and this column's missing "
     "markers are ['NA']; add \"\" to them if it means missing")),
    ("  - {name: v, type: timestamp}\n", b"n,v\n1,2013-01-01 05:00:00\n",
     ("line 2, column 'v': invalid timestamp value '2013-01-01 05:00:00': it has no zone offset; "
     "add one (such as Z) or declare the column's timezone")),
    # The reader's shared markers ([""], from column n) are not v's own ([NA]); the reason
    # must still be "missing value", not "invalid".
    ("  - {name: v, type: int64, nullable: false, missing: [NA]}\n", b"n,v\n1,NA\n2,5\n",
     "line 2, column 'v': missing value in a non-nullable column"),
])
def test_reject_reason_names_cause(tmp_path, spec_tail, data, reason):
    spec_text = ("name: demo\nsources: [data.csv]\nkey: [n]\ncolumns:\n"
                 "  - {name: n, type: int64}\n" + spec_tail)
    assert reason in failed_run(tmp_path, data, spec_text)


def test_composite_key_sorted_by_utf8_bytes(tmp_path):
    spec_text = "name: demo\nsources: [data.csv]\nkey: [a, b]\nmissing: []\ncolumns:\n" \
                "  - {name: a, type: string}\n  - {name: b, type: int32}\n"
    data = "a,b\nz,1\nä,2\nZ,3\nz,0\na,9\n".encode()
    sources, spec, root = setup(tmp_path, data, spec_text)
    etl(spec, root, sources)
    rows = read_rows(root / "demo")
    assert list(zip(rows["a"], rows["b"])) == [("Z", 3), ("a", 9), ("z", 0), ("z", 1), ("ä", 2)]


def test_header_mismatch_between_sources(tmp_path):
    sources, spec, root = setup(tmp_path, b"n,text\n1,a\n", SPEC.replace("[data.csv]", "['*.csv']"))
    (sources / "other.csv").write_bytes(b"n,label\n1,a\n")
    result = etl(spec, root, sources, check=False)
    assert result.returncode == 1
    assert "other.csv: line 1: header ['n', 'label'] differs" in result.stderr


def test_missing_source_names_pattern(tmp_path):
    sources, spec, root = setup(tmp_path, b"n,text\n", SPEC.replace("[data.csv]", "[nope.csv]"))
    result = etl(spec, root, sources, check=False)
    assert result.returncode == 1
    assert "source 'nope.csv' matches no file under --source-dir" in result.stderr


def test_empty_input_publishes_zero_rows(tmp_path):
    sources, spec, root = setup(tmp_path, b"n,text\n", SPEC)
    result = etl(spec, root, sources)
    assert '"rows_published": 0' in result.stdout
    assert read_rows(root / "demo") == {"id": [], "n": [], "text": []}


def test_spec_error_is_usage_error(tmp_path):
    sources, spec, root = setup(tmp_path, b"n,text\n", SPEC.replace("int8", "int9"))
    result = etl(spec, root, sources, check=False)
    assert result.returncode == 2
    assert "type 'int9' is unknown" in result.stderr
