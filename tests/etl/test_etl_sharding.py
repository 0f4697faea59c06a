"""Quote-aware shard planning and byte-identical output for 1 and N workers."""

from __future__ import annotations

import csv
import io
import itertools
import random

import pytest
from etl_helpers import column_bytes, current_dir, read_rows, write_spec

from etl import assemble, sharding, sortkey
from etl.engine import RunOptions, run
from etl.sharding import plan_shards, read_header

TEXTS = [
    "plain", "comma, inside", 'say ""hi""', "line\nbreak", "crlf\r\nbreak", "café",
    "日本語テキスト", "emoji 🛫✈️🛬", "", "NA", "mixed, \"quotes\"\nand ü", "x" * 300,
]


def tricky_csv(rows: int, seed: int = 7, newline: str = "\n", prefix: str = "k") -> str:
    """Return CSV text whose quoted fields hold delimiters, newlines, quotes and multi-byte text."""
    rng = random.Random(seed)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=newline, quoting=csv.QUOTE_MINIMAL)
    writer.writerow(["code", "label", "amount", "note"])
    for index in range(rows):
        writer.writerow([
            f"{prefix}{index:05d}",
            rng.choice(TEXTS) + rng.choice(["", " ü", "ß"]),
            str(rng.randint(-10_000, 10_000)),
            rng.choice(TEXTS),
        ])
    return buffer.getvalue()


def records_of(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


@pytest.mark.parametrize("shard_bytes", [1, 7, 64, 97, 1000, 4096])
def test_shards_cut_at_record_boundaries(tmp_path, shard_bytes):
    data = tricky_csv(300).encode()
    path = tmp_path / "input.csv"
    path.write_bytes(data)
    header = read_header(path, delimiter=",", quote='"')
    shards = plan_shards([(str(path), header)], shard_bytes=shard_bytes, quote='"')

    assert len(shards) > 1  # quoting by the rules finds no stray quote, so the file is cut
    assert shards[0].start == header.data_start
    assert shards[-1].end == len(data)
    assert all(a.end == b.start for a, b in itertools.pairwise(shards))
    pieces = [records_of(data[s.start:s.end]) for s in shards]
    assert [r for piece in pieces for r in piece] == records_of(data)[1:]


def test_bom_and_crlf_header(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfa,b\r\n1,2\r\n")
    header = read_header(path, delimiter=",", quote='"')
    assert header.names == ["a", "b"]
    assert header.data_start == 3 + len(b"a,b\r\n")


@pytest.mark.parametrize(("head", "names"), [
    (b'id,height_in",x\n', ["id", 'height_in"', "x"]),     # a quote inside an unquoted name
    (b'id,"two\nlines",x\n', ["id", "two\nlines", "x"]),  # a quoted name across lines
    (b'id,"say ""hi""",x\n', ["id", 'say "hi"', "x"]),
])
def test_header_parsed_like_records(tmp_path, head, names):
    path = tmp_path / "input.csv"
    path.write_bytes(head + b"1,2,3\n4,5,6\n")
    header = read_header(path, delimiter=",", quote='"')
    assert header.names == names
    assert header.data_start == len(head)


def test_long_header_read_in_windows(tmp_path, monkeypatch):
    # A header longer than the read window, with a two-byte character across a window edge.
    monkeypatch.setattr(sharding, "SCAN_WINDOW", 7)
    head = 'alpha,"b\nä",ééé,"q ""x"""\n'.encode()
    path = tmp_path / "input.csv"
    path.write_bytes(head + b"1,2,3,4\n")
    header = read_header(path, delimiter=",", quote='"')
    assert header.names == ["alpha", "b\nä", "ééé", 'q "x"']
    assert header.data_start == len(head)


SPEC = """\
name: tricky
sources: [input*.csv]
key: [code]
missing: []
columns:
  - {name: code, type: string}
  - {name: label, type: string}
  - {name: amount, type: int32}
  - {name: note, type: string, missing: ["NA"]}
"""


def cut_positions_land_inside_quotes_and_characters(data: bytes, start: int, step: int):
    """Return (inside quoted field, inside multi-byte character) counts of tentative cuts."""
    inside_quotes = inside_character = 0
    for cut in range(start + step, len(data), step):
        if data[:cut].count(b'"') % 2 == 1:
            inside_quotes += 1
        if 0x80 <= data[cut] <= 0xBF:
            inside_character += 1
    return inside_quotes, inside_character


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_one_and_many_workers_byte_identical(tmp_path, monkeypatch, newline):
    sources = tmp_path / "src"
    sources.mkdir()
    first = tricky_csv(1500, seed=1, newline=newline).encode()
    second = tricky_csv(700, seed=2, newline=newline, prefix="j").encode()
    (sources / "input1.csv").write_bytes(first)
    (sources / "input2.csv").write_bytes(second)
    spec = write_spec(tmp_path / "tricky.yaml", SPEC)

    # The premise: with these shard sizes, tentative cuts fall inside quoted fields and inside
    # multi-byte UTF-8 characters, so the planner has to move them.
    data_start = first.index(b"\n") + 1
    quotes, characters = cut_positions_land_inside_quotes_and_characters(first, data_start, 997)
    assert quotes > 5
    assert characters > 0

    results = {}
    for workers, shard_bytes, tiny in ((1, 1 << 20, False), (3, 997, False), (2, 4099, False),
                                       (2, 997, True)):
        if tiny:
            # Columns written 13 rows at a time (validity bytes straddle chunks) and the key
            # sorted in partitions of a few dozen rows: the streamed paths must not show.
            monkeypatch.setattr(assemble, "CHUNK_ROWS", 13)
            monkeypatch.setattr(sortkey, "SORT_BUDGET_BYTES", 4096)
        root = tmp_path / f"root-{workers}-{shard_bytes}-{tiny}"
        summary = run(RunOptions(spec=str(spec), data_root=str(root), source_dir=str(sources),
                                 workers=workers, shard_bytes=shard_bytes, show_progress=False))
        assert summary.rows_published == 2200
        results[(workers, shard_bytes, tiny)] = column_bytes(current_dir(root / "tricky"))

    reference = results[(1, 1 << 20, False)]
    for key, files in results.items():
        assert files == reference, f"output of {key} differs from one worker"

    rows = read_rows(tmp_path / "root-1-1048576-False" / "tricky")
    expected = records_of(first)[1:] + records_of(second)[1:]
    expected.sort(key=lambda r: r[0].encode())
    assert rows["code"] == [r[0] for r in expected]
    assert rows["label"] == [r[1] for r in expected]
    assert rows["amount"] == [int(r[2]) for r in expected]
    assert rows["note"] == [None if r[3] == "NA" else r[3] for r in expected]


def stray_quote_csv(rows: int) -> bytes:
    """Return CSV with quotes inside unquoted fields (5'10") and quoted fields with newlines."""
    lines = ["code,label,amount,note"]
    for index in range(rows):
        label = f"{index % 7}'1{index % 10}\" tall" if index % 3 else f"say \"\"{index}\"\""
        note = f'"line {index}\nnext, part"' if index % 2 else "plain"
        lines.append(f"k{index:05d},{label},{index},{note}")
    return ("\n".join(lines) + "\n").encode()


def test_stray_quotes_read_as_one_shard(tmp_path, caplog):
    data = stray_quote_csv(400)
    path = tmp_path / "input.csv"
    path.write_bytes(data)
    header = read_header(path, delimiter=",", quote='"')
    shards = plan_shards([(str(path), header)], shard_bytes=97, quote='"', delimiter=",")
    assert [(s.start, s.end) for s in shards] == [(header.data_start, len(data))]
    # The first data row's label, say ""0"", is unquoted text with quotes in it.
    assert f"{path}: line 2: a quote character inside an unquoted field" in caplog.text


def test_stray_quotes_same_rows_for_any_workers(tmp_path):
    sources = tmp_path / "src"
    sources.mkdir()
    data = stray_quote_csv(900)
    (sources / "input1.csv").write_bytes(data)
    (sources / "input2.csv").write_bytes(tricky_csv(300, prefix="j").encode())
    spec = write_spec(tmp_path / "tricky.yaml", SPEC)
    expected = records_of(data)[1:] + records_of(tricky_csv(300, prefix="j").encode())[1:]
    expected.sort(key=lambda r: r[0].encode())
    for workers, shard_bytes in ((1, 1 << 20), (2, 997)):
        root = tmp_path / f"root-{workers}"
        run(RunOptions(spec=str(spec), data_root=str(root), source_dir=str(sources),
                       workers=workers, shard_bytes=shard_bytes, show_progress=False))
        rows = read_rows(root / "tricky")
        assert rows["code"] == [r[0] for r in expected]
        assert rows["label"] == [r[1] for r in expected]
        assert rows["note"] == [None if r[3] == "NA" else r[3] for r in expected]
