"""Quote-aware shards: split source files into byte ranges that start and end at record boundaries.

Rule: a record ends at a LF byte that lies outside quotes. Under RFC 4180 quoting (a quote
character appears only inside quoted fields, and a literal quote inside one is doubled) a byte is
inside quotes exactly when the number of quote characters before it in the data is odd. Doubled
quotes add two and leave the parity unchanged. So the planner counts quote characters in
fixed-size pieces (in parallel, in the worker pool), derives the parity at each tentative cut,
and moves every cut forward to the first LF at even parity. CRLF records end at their LF too.
A cut after a LF byte never falls inside a multi-byte UTF-8 character, because UTF-8 encodes
every byte of a multi-byte character at 0x80 or above.

A quote character inside an unquoted field (such as `5'10"` with `"` as the quote) is literal
text to the parsers but breaks the parity rule. The counting pass therefore also finds "stray"
quotes: a quote at even parity (so it would open a quoted field) that does not follow a
delimiter, a LF or another quote. A file with one is not cut: it becomes a single shard, which
parses exactly as one worker would, and a warning names its first stray quote's line.
"""

from __future__ import annotations

import csv
import itertools
import logging
import mmap
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger("rodata.etl")

BOM = b"\xef\xbb\xbf"
LF = 0x0A
SCAN_WINDOW = 1 << 20
# Larger shards amortize per-task costs, smaller ones balance the pool and bound worker memory
# (a worker keeps about 3x its shard size in memory: source bytes, Arrow table and output).
DEFAULT_SHARD_BYTES = 32 << 20


class SourceError(ValueError):
    """A source file cannot be read with the spec's settings; the message names the file."""


@dataclass(frozen=True)
class Header:
    """The header record of one source file: column names and where the data starts."""

    names: list[str]
    data_start: int       # byte offset of the first data record (after BOM and header)
    size: int             # file size in bytes
    trailing_delimiter: bool


@dataclass(frozen=True)
class Shard:
    """A byte range [start, end) of one source file, containing whole records only."""

    ordinal: int          # position in file order over all sources, from 0
    file_index: int
    path: str
    start: int
    end: int


def read_header(path: str | Path, *, delimiter: str, quote: str) -> Header:
    """Parse the header record of `path` and return the column names and data offset."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            size = path.stat().st_size
            head = handle.read(SCAN_WINDOW)
            offset = len(BOM) if head.startswith(BOM) else 0
            names, end = _first_record(head, offset, delimiter, quote, complete=len(head) >= size)
            while end is None:
                more = handle.read(SCAN_WINDOW)
                head += more
                names, end = _first_record(head, offset, delimiter, quote,
                                           complete=not more or len(head) >= size)
    except OSError as error:
        raise SourceError(f"{path}: cannot read source file: {error.strerror}") from error
    except UnicodeDecodeError as error:
        raise SourceError(f"{path}: line 1: the header is not valid UTF-8 ({error.reason})") from error
    if not names or names == [""]:
        raise SourceError(f"{path}: line 1: missing header line naming the columns")
    trailing = len(names) > 1 and names[-1] == ""
    if trailing:
        names = names[:-1]
    if any(not name for name in names):
        raise SourceError(f"{path}: line 1: the header has an empty column name: {names!r}")
    if len(set(names)) != len(names):
        raise SourceError(f"{path}: line 1: the header names a column twice: {names!r}")
    return Header(names=names, data_start=end, size=size, trailing_delimiter=trailing)


def _first_record(data: bytes, offset: int, delimiter: str, quote: str, *,
                  complete: bool) -> tuple[list[str], int | None]:
    """Return the first record of `data[offset:]` and the offset just after it.

    The record is parsed as the shard parser reads records, so a quote inside an unquoted
    header field is literal text, and a quoted field may span lines. Unless `complete` is
    true (`data` is the whole file), only whole lines are read, and the end is None when the
    record needs more of the file.
    """
    consumed = offset
    exhausted = False

    def lines():
        nonlocal consumed, exhausted
        while consumed < len(data):
            stop = data.find(b"\n", consumed)
            if stop < 0 and not complete:
                break  # a partial line, maybe cut inside a UTF-8 character
            stop = len(data) if stop < 0 else stop + 1
            line = data[consumed:stop].decode("utf-8")
            consumed = stop
            yield line
        exhausted = True

    # The reader asks for a line only while its record is unfinished.
    record = next(csv.reader(lines(), delimiter=delimiter, quotechar=quote, strict=False), [])
    if exhausted and not complete:
        return record, None
    return record, consumed


@dataclass(frozen=True)
class QuoteCount:
    """The quotes of one piece of a file, and where its first stray quote could be.

    A quote is a candidate stray when the byte before it is not a delimiter, LF or quote.
    It is stray when it lies at even parity over the whole file, which depends on the pieces
    before. So the offsets of the first candidate at an even and at an odd position within
    the piece are kept (-1 for none), and the planner picks one once the parity is known.
    """

    count: int
    first_candidate_even: int = -1
    first_candidate_odd: int = -1

    def stray_offset(self, quotes_before: int) -> int:
        """Return the offset of the first stray quote, given the quotes before the piece."""
        return self.first_candidate_odd if quotes_before & 1 else self.first_candidate_even


def count_quotes(path: str, start: int, end: int, quote: int, delimiter: int) -> QuoteCount:
    """Count the `quote` bytes in [start, end) of `path` and find stray candidates (in a worker).

    `start` is at least 1: the header line comes before every piece.
    """
    needle = bytes((quote,))
    if end <= start:
        return QuoteCount(0)
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
        # find() is a memchr scan over the mapping with no copy, several times faster than
        # reading and counting; quote-free text (the common case) needs nothing else.
        first = view.find(needle, start, end)
        if first < 0:
            return QuoteCount(0)
        total = 0
        candidates = {0: -1, 1: -1}  # parity of the quote's index in the piece: first offset
        for block_start in range(first, end, 16 << 20):
            block_end = min(block_start + (16 << 20), end)
            # One byte before the block, so that every quote's predecessor is at hand.
            data = np.frombuffer(view[block_start - 1 : block_end], dtype=np.uint8)
            positions = np.flatnonzero(data[1:] == quote)
            before = data[positions]
            candidate = (before != delimiter) & (before != LF) & (before != quote)
            for parity in (0, 1):
                if candidates[parity] < 0:
                    hits = np.flatnonzero(candidate & (((np.arange(len(positions)) + total) & 1)
                                                       == parity))
                    if hits.size:
                        candidates[parity] = block_start + int(positions[hits[0]])
            total += len(positions)
        return QuoteCount(total, candidates[0], candidates[1])


def next_record_start(path: str, position: int, limit: int, inside: bool, quote: int) -> int:
    """Return the offset after the first LF at or after `position` that lies outside quotes.

    `inside` is the quote state just before `position`. Returns `limit` when no such LF exists.
    """
    with open(path, "rb") as handle:
        handle.seek(position)
        while position < limit:
            window = handle.read(min(SCAN_WINDOW, limit - position))
            if not window:
                break
            data = np.frombuffer(window, dtype=np.uint8)
            is_quote = data == quote
            # Parity of quotes strictly before each byte, continuing from the state before.
            parity = (np.cumsum(is_quote, dtype=np.int64) - is_quote + int(inside)) & 1
            hits = np.flatnonzero((data == LF) & (parity == 0))
            if hits.size:
                return position + int(hits[0]) + 1
            inside = bool((int(inside) + int(is_quote.sum())) & 1)
            position += len(window)
    return limit


def plan_shards(
    files: list[tuple[str, Header]],
    *,
    shard_bytes: int,
    quote: str,
    delimiter: str = ",",
    map_function: Callable[..., Iterable] = map,
) -> list[Shard]:
    """Split every file's data into shards of about `shard_bytes`, cut at record boundaries.

    `map_function` runs the quote counting, for example a process pool's `map`.
    """
    quote_byte = ord(quote)
    pieces: list[tuple[int, int, int]] = []   # (file index, start, end)
    for file_index, (_path, header) in enumerate(files):
        start = header.data_start
        while start < header.size:
            end = min(start + shard_bytes, header.size)
            pieces.append((file_index, start, end))
            start = end

    counts = list(
        map_function(
            count_quotes,
            [files[f][0] for f, _, _ in pieces],
            [s for _, s, _ in pieces],
            [e for _, _, e in pieces],
            [quote_byte] * len(pieces),
            [ord(delimiter)] * len(pieces),
        )
    )

    shards: list[Shard] = []
    for file_index, (path, header) in enumerate(files):
        cuts = [header.data_start]
        if _first_stray_quote(path, file_index, pieces, counts) is None:
            quotes_before = 0
            for (piece_file, _start, end), count in zip(pieces, counts):
                if piece_file != file_index:
                    continue
                quotes_before += count.count
                if end >= header.size:
                    break
                cut = next_record_start(path, end, header.size, bool(quotes_before & 1),
                                        quote_byte)
                if cut > cuts[-1]:
                    cuts.append(cut)
        if cuts[-1] < header.size:
            cuts.append(header.size)
        for start, end in itertools.pairwise(cuts):
            if end > start:
                shards.append(Shard(len(shards), file_index, path, start, end))
    return shards


def _first_stray_quote(path: str, file_index: int, pieces: list[tuple[int, int, int]],
                       counts: list[QuoteCount]) -> int | None:
    """Return the offset of the file's first stray quote, logging a warning, or None."""
    quotes_before = 0
    for (piece_file, _start, _end), count in zip(pieces, counts):
        if piece_file != file_index:
            continue
        offset = count.stray_offset(quotes_before)
        if offset >= 0:
            # NOTE: the single shard costs memory in proportion to the file (about 3x its
            # size in one worker), so a large file with stray quotes may need a bigger limit.
            log.warning(
                "%s: line %d: a quote character inside an unquoted field; the file is read "
                "as one shard (no parallel parsing, memory grows with its size). Quote the "
                "field and double the quote, or set csv.quote to a character the file does "
                "not contain", path, first_line_number(path, offset),
            )
            return offset
        quotes_before += count.count
    return None


def first_line_number(path: str, offset: int) -> int:
    """Return the 1-based line number of the byte at `offset` (counts LF bytes before it)."""
    count = 0
    with open(path, "rb") as handle:
        remaining = offset
        while remaining > 0:
            block = handle.read(min(remaining, 16 << 20))
            if not block:
                break
            count += block.count(b"\n")
            remaining -= len(block)
    return count + 1
