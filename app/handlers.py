"""The /v1 resources, written against a minimal request and reply so that the lean ASGI fast
path and the FastAPI routes run the same code.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import encode, query, typed
from .aggregate import compute
from .config import Settings
from .errors import ApiError, invalid, not_found
from .store import LoadedGeneration, Store

JSON = "application/json"
CSV = "text/csv"
ARROW = "application/vnd.apache.arrow.stream"
RAW = "application/octet-stream"
CONTENT_TYPES = {JSON: b"application/json", CSV: b"text/csv; charset=utf-8",
                 ARROW: b"application/vnd.apache.arrow.stream", RAW: b"application/octet-stream"}
CACHE_CONTROL = b"public, no-cache"
AGGREGATES = ("count", "sum", "mean", "min", "max")

ROWS_PARAMS = ("start", "stop", "key_start", "key_stop", "columns", "filter", "limit", "cursor",
               "shape")
COLUMN_PARAMS = ("start", "stop")
AGGREGATE_PARAMS = ("agg", "group_by", "start", "stop", "key_start", "key_stop", "filter")


@dataclass(slots=True)
class Request:
    """The parts of an HTTP request that the handlers read."""

    method: str
    raw_path: bytes
    query_string: bytes
    accept: str | None = None
    if_none_match: str | None = None


@dataclass(slots=True)
class Reply:
    """A complete response; `lease` is returned once the body has been sent."""

    status: int
    body: bytes | memoryview
    content_type: bytes = b"application/json"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    route: str = "other"
    dataset: str | None = None
    generation: str | None = None
    lease: LoadedGeneration | None = None


def error_reply(error: ApiError, route: str = "other") -> Reply:
    """Return the JSON error reply for an ApiError."""
    headers = [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    return Reply(error.status, error.body(), headers=headers, route=route)


# Content negotiation --------------------------------------------------------------------

_ACCEPT_CACHE: dict[tuple[str, tuple[str, ...]], str | None] = {}


def negotiate(accept: str | None, offered: tuple[str, ...]) -> str:
    """Return the offered media type the Accept header prefers; 406 when none is acceptable."""
    if not accept:
        return offered[0]
    cache_key = (accept, offered)
    if cache_key in _ACCEPT_CACHE:
        chosen = _ACCEPT_CACHE[cache_key]
    else:
        chosen = _negotiate(accept, offered)
        if len(_ACCEPT_CACHE) < 1024:
            _ACCEPT_CACHE[cache_key] = chosen
    if chosen is None:
        raise ApiError(406, "not_acceptable", f"none of the media types in Accept: "
                       f"{accept[:120]!r} is available for this resource",
                       parameter="Accept", allowed=", ".join(offered))
    return chosen


def _negotiate(accept: str, offered: tuple[str, ...]) -> str | None:
    best: tuple[float, int, str] | None = None
    for order, item in enumerate(accept.split(",")):
        parts = [p.strip() for p in item.split(";")]
        media = parts[0].lower()
        quality = 1.0
        for parameter in parts[1:]:
            if parameter.lower().startswith("q="):
                try:
                    quality = float(parameter[2:])
                except ValueError:
                    quality = 0.0
        if quality <= 0:
            continue
        for rank, candidate in enumerate(offered):
            if media == candidate or media == "*/*" or (
                    media.endswith("/*") and candidate.startswith(media[:-1])):
                score = (quality, -order if media != "*/*" else -1000 - rank, candidate)
                if best is None or score[:2] > best[:2]:
                    best = score
                break
    return None if best is None else best[2]


_ETAG_MEDIA = {media: b"|" + media.encode() for media in CONTENT_TYPES}


def make_etag(generation: str, request: Request, media: str) -> bytes:
    """Return a strong ETag from the generation and the request (path, query, media type)."""
    digest = hashlib.blake2b(b"%s?%s%s" % (request.raw_path, request.query_string,
                                           _ETAG_MEDIA[media]), digest_size=8).hexdigest()
    return f'"{generation}.{digest}"'.encode()


def _matches(if_none_match: str | None, etag: bytes) -> bool:
    if not if_none_match:
        return False
    tag = etag.decode()
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == tag:
            return True
    return False


class Handlers:
    """The /v1 resources over the store's current generations."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store

    # Dispatch ------------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Reply:
        """Route a GET or HEAD under /v1 and return the reply (errors included)."""
        segments = request.raw_path.split(b"/")
        # segments: ['', 'v1', 'datasets', name, resource, argument]
        if len(segments) < 3 or segments[1] != b"v1" or segments[2] != b"datasets":
            raise not_found("not_found", "no such resource; resources are under "
                            "/v1/datasets", allowed="/v1/datasets")
        if len(segments) == 3:
            return self.datasets(request)

        route = _route_name(segments)
        # A segment that is literally a served dataset's name needs no percent-decoding or
        # name check: served names already passed that check, and they are ASCII, so no
        # other byte string decodes to one.
        name = segments[3].decode("latin-1")
        loaded = self.store.current.get(name)
        if loaded is None:
            try:
                name = query.path_name(segments[3], "dataset")
            except ApiError as error:
                return error_reply(error, route)
            loaded = self.store.current.get(name)
        if loaded is None:
            error = not_found("unknown_dataset", f"dataset {name!r} is not served here",
                              parameter="dataset",
                              allowed="datasets: " + ", ".join(sorted(self.store.current)))
            reply = error_reply(error, route)
            reply.dataset = name
            return reply

        # The lease keeps this generation's mapping open until the reply has been sent.
        loaded.acquire()
        try:
            reply = self._dataset_route(request, loaded, segments[4:])
        except ApiError as error:
            reply = error_reply(error, route)
            reply.dataset = name
            reply.generation = loaded.generation
            loaded.release()
            return reply
        except BaseException:
            loaded.release()
            raise

        reply.dataset = name
        reply.generation = loaded.generation
        reply.lease = loaded
        return reply

    def _dataset_route(self, request: Request, loaded: LoadedGeneration,
                       rest: list[bytes]) -> Reply:
        if not rest:
            return self.dataset(request, loaded)
        resource = rest[0]
        if resource == b"rows" and len(rest) == 1:
            return self.rows(request, loaded)
        if resource == b"rows" and len(rest) == 2 and rest[1]:
            return self.row(request, loaded, rest[1])
        if resource == b"columns" and len(rest) == 2:
            column = query.path_name(rest[1], "column", strict=False)
            return self.column(request, loaded, column)
        if resource == b"aggregate" and len(rest) == 1:
            return self.aggregate(request, loaded)
        raise not_found("not_found", f"no such resource under /v1/datasets/{loaded.dataset}",
                        allowed="rows, rows/{key}, columns/{column}, aggregate")

    def _cached(self, request: Request, generation: str, media: str,
                route: str) -> tuple[bytes, Reply | None]:
        etag = make_etag(generation, request, media)
        if _matches(request.if_none_match, etag):
            return etag, Reply(304, b"", content_type=CONTENT_TYPES[media],
                               headers=_cache_headers(etag), route=route)
        return etag, None

    # Resources -----------------------------------------------------------------------------

    def datasets(self, request: Request) -> Reply:
        """GET /v1/datasets."""
        query.Params(request.query_string, ())
        media = negotiate(request.accept, (JSON,))
        current = [self.store.current[name] for name in sorted(self.store.current)]
        version = ",".join(f"{g.dataset}={g.generation}" for g in current)
        etag, cached = self._cached(request, version, media, "datasets")
        if cached:
            return cached
        body = encode.json_bytes({"datasets": [g.describe() for g in current]})
        return Reply(200, body, headers=_cache_headers(etag), route="datasets")

    def dataset(self, request: Request, loaded: LoadedGeneration) -> Reply:
        """GET /v1/datasets/{name}: schema, key, generation and row count."""
        query.Params(request.query_string, ())
        media = negotiate(request.accept, (JSON,))
        etag, cached = self._cached(request, loaded.generation, media, "dataset")
        if cached:
            return cached
        manifest = loaded.manifest
        document = {
            **loaded.describe(),
            "key": loaded.key,
            "key_unique": loaded.key_unique,
            "key_form": query.key_form(loaded),
            "schema": [{"name": c.name, "type": c.type, "nullable": c.nullable,
                        "encoding": c.encoding, "null_count": c.null_count}
                       for c in manifest.schema],
            "format_version": manifest.format_version,
            "limits": {"default_limit": self.settings.default_limit,
                       "max_limit": self.settings.max_limit,
                       "max_column_values": self.max_column_values,
                       "max_raw_bytes": self.settings.max_raw_bytes,
                       "max_scan_rows": self.settings.max_scan_rows},
        }
        return Reply(200, encode.json_bytes(document), headers=_cache_headers(etag),
                     route="dataset")

    @property
    def max_column_values(self) -> int:
        """Maximum values in one JSON, CSV or Arrow column response."""
        return self.settings.max_limit * 10

    def row(self, request: Request, loaded: LoadedGeneration, raw_key: bytes) -> Reply:
        """GET /v1/datasets/{name}/rows/{key}: one row by key, by binary search."""
        if request.query_string:
            query.Params(request.query_string, ())  # rejects every parameter
        media = negotiate(request.accept, (JSON, CSV, ARROW))
        components = query.parse_key(loaded, raw_key, "key", prefix=False)
        etag, cached = self._cached(request, loaded.generation, media, "row")
        if cached:
            return cached
        start, stop = self._find(loaded, components)
        if start == stop:
            shown = raw_key.decode("latin-1")[:80]
            raise not_found("key_not_found", f"no row of dataset {loaded.dataset!r} has key "
                            f"{shown!r} in generation {loaded.generation!r}",
                            parameter="key", allowed=query.key_form(loaded))
        # NOTE: a non-unique key returns its first row; rows?key_start=&key_stop= lists all.
        rows = slice(start, start + 1)
        loaded.rows_scanned.inc()
        names = loaded.column_names
        if media == JSON:
            body = loaded.row_reader().document(start)
        else:
            body = self._table(loaded, names, rows, media)
        return Reply(200, body, content_type=CONTENT_TYPES[media], headers=_cache_headers(etag),
                     route="row")

    @staticmethod
    def _find(loaded: LoadedGeneration, components: list[Any]) -> tuple[int, int]:
        """Return the rows [start, stop) with this full key."""
        if loaded.key_unique and len(components) == 1 and loaded.key_fixed:
            values = loaded.columns[loaded.key[0]].values
            key = components[0]
            if loaded.key_integer_max is not None and loaded.row_count:
                # Unique sorted integers rise by at least 1 per row, so key k can only sit at
                # or before k - first. Dense keys such as a row id sit exactly there, which
                # one read confirms without a binary search.
                guess = key - loaded.key_first
                if 0 <= guess < loaded.row_count and values.item(guess) == key:
                    return guess, guess + 1
            # One binary search and one comparison for the common unique numeric key.
            position = int(values.searchsorted(key))
            if position < loaded.row_count and values.item(position) == key:
                return position, position + 1
            return position, position
        return typed.key_range(loaded, components)

    def _table(self, loaded: LoadedGeneration, names: list[str], rows: encode.Rows,
               media: str) -> bytes:
        if media == CSV:
            return encode.csv_bytes(names, [encode.to_python(loaded, n, rows, for_json=False)
                                            for n in names])
        metadata = {"dataset": loaded.dataset, "generation": loaded.generation}
        return encode.arrow_bytes(names, [encode.arrow_array(loaded, n, rows) for n in names],
                                  metadata)

    def rows(self, request: Request, loaded: LoadedGeneration) -> Reply:
        """GET /v1/datasets/{name}/rows: a page of rows by range, projection and filters."""
        params = query.Params(request.query_string, ROWS_PARAMS)
        media = negotiate(request.accept, (JSON, CSV, ARROW))
        limit = params.integer("limit", self.settings.default_limit, minimum=1,
                               maximum=self.settings.max_limit)
        names = params.names("columns", loaded, loaded.column_names)
        shape = params.get("shape") or "arrays"
        if shape not in ("arrays", "objects"):
            raise invalid("shape", shape, "arrays or objects")
        filters = query.parse_filters(params, loaded)
        begin, end = query.row_range(params, loaded)
        cursor = params.get("cursor")
        if cursor is not None:
            begin, end = query.decode_cursor(loaded, params, cursor)
        etag, cached = self._cached(request, loaded.generation, media, "rows")
        if cached:
            return cached

        if not filters:
            stop = min(end, begin + limit)
            selection: encode.Rows = slice(begin, stop)
            position = stop
            scanned = stop - begin
            count = stop - begin
        else:
            selection, position, scanned = self._scan(loaded, filters, begin, end, limit)
            count = len(selection)
        loaded.rows_scanned.inc(scanned)
        next_cursor = (query.encode_cursor(loaded, params, position, end)
                       if position < end else None)

        headers = _cache_headers(etag)
        if next_cursor:
            headers.append((b"x-rodata-next-cursor", next_cursor.encode()))
        if media == JSON:
            columns = [encode.to_python(loaded, n, selection, for_json=True) for n in names]
            if shape == "objects":
                rows = [dict(zip(names, values)) for values in zip(*columns)]
            else:
                # Arrays (orjson writes tuples as arrays) cost a tenth of building a dict per
                # row, and repeat no column names.
                rows = list(zip(*columns))
            document = {"dataset": loaded.dataset, "generation": loaded.generation,
                        "columns": names, "row_count": count, "rows_scanned": scanned,
                        "rows": rows, "next_cursor": next_cursor}
            body = encode.json_bytes(document)
        else:
            body = self._table(loaded, names, selection, media)
        return Reply(200, body, content_type=CONTENT_TYPES[media], headers=headers,
                     route="rows")

    def _scan(self, loaded: LoadedGeneration, filters: list[query.Filter], begin: int,
              end: int, limit: int) -> tuple[np.ndarray, int, int]:
        """Return (row positions, next position, rows scanned), scanning at most the cap."""
        found: list[np.ndarray] = []
        matched = 0
        position = begin
        budget = self.settings.max_scan_rows
        while position < end and matched < limit and budget > 0:
            chunk_end = min(end, position + query.SCAN_CHUNK, position + budget)
            hits = np.flatnonzero(query.matching(filters, position, chunk_end)) + position
            need = limit - matched
            if hits.size >= need:
                hits = hits[:need]
                found.append(hits)
                budget -= int(hits[-1]) + 1 - position
                position = int(hits[-1]) + 1
                matched += need
                break
            found.append(hits)
            matched += hits.size
            budget -= chunk_end - position
            position = chunk_end
        scanned = self.settings.max_scan_rows - budget
        rows = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
        return rows.astype(np.int64, copy=False), position, scanned

    def column(self, request: Request, loaded: LoadedGeneration, name: str) -> Reply:
        """GET /v1/datasets/{name}/columns/{column}: one column's values for a row range."""
        if name not in loaded.schema:
            raise not_found("unknown_column", f"dataset {loaded.dataset!r} has no column "
                            f"{name!r}", parameter="column",
                            allowed="columns: " + ", ".join(loaded.column_names))
        params = query.Params(request.query_string, COLUMN_PARAMS)
        column = loaded.columns[name]
        type_name = loaded.schema[name].type
        fixed = type_name != "string"
        media = negotiate(request.accept, (JSON, CSV, ARROW, RAW) if fixed else (JSON, CSV, ARROW))
        n = loaded.row_count
        start = params.integer("start", 0, maximum=n,
                               what=f"a row position from 0 to {n} (the row count)")
        if media == RAW:
            itemsize = column.values.dtype.itemsize
            cap = max(1, self.settings.max_raw_bytes // itemsize)
            cap_text = f"{cap} rows ({self.settings.max_raw_bytes} bytes) per raw request"
        else:
            cap = self.max_column_values
            cap_text = f"{cap} values per {media} request"
        stop = params.integer("stop", min(n, start + cap), maximum=n,
                              what=f"a row position from start to {n} (the row count)")
        if start > stop:
            raise ApiError(400, "invalid_range", f"start={start} is greater than stop={stop}",
                           parameter="start", allowed="start <= stop")
        if stop - start > cap:
            raise invalid("stop", str(stop), f"at most start + {cap}",
                          reason=f"the range has {stop - start} rows; the maximum is "
                                 f"{cap_text}: split it into several requests")
        etag, cached = self._cached(request, loaded.generation, media, "column")
        if cached:
            return cached
        loaded.rows_scanned.inc(stop - start)
        headers = _cache_headers(etag)
        headers.append((b"x-rodata-start", str(start).encode()))
        headers.append((b"x-rodata-stop", str(stop).encode()))
        rows = slice(start, stop)

        if media == RAW:
            values = column.values[start:stop]
            # A byte view of the mapped pages: the transport writes from the page cache and
            # no copy is made in Python. Bytes of null rows are unspecified.
            body = memoryview(values.view(np.uint8))
            headers.append((b"x-rodata-dtype", values.dtype.str.encode()))
            headers.append((b"x-rodata-shape", str(stop - start).encode()))
            if column.null_count:
                nulls = int((~column.valid_mask(start, stop)).sum())
                headers.append((b"x-rodata-null-count", str(nulls).encode()))
            else:
                headers.append((b"x-rodata-null-count", b"0"))
            return Reply(200, body, content_type=CONTENT_TYPES[RAW], headers=headers,
                         route="column_raw")
        if media == JSON:
            values = encode.to_python(loaded, name, rows, for_json=True)
            body = encode.json_bytes({"dataset": loaded.dataset,
                                      "generation": loaded.generation, "column": name,
                                      "type": type_name, "start": start, "stop": stop,
                                      "values": values})
        else:
            body = self._table(loaded, [name], rows, media)
        return Reply(200, body, content_type=CONTENT_TYPES[media], headers=headers,
                     route="column")

    def aggregate(self, request: Request, loaded: LoadedGeneration) -> Reply:
        """GET /v1/datasets/{name}/aggregate: count/sum/mean/min/max, optionally grouped."""
        params = query.Params(request.query_string, AGGREGATE_PARAMS)
        media = negotiate(request.accept, (JSON, CSV, ARROW))
        specs = self._aggregate_specs(params, loaded)
        group_by = params.get("group_by")
        if group_by is not None:
            if group_by not in loaded.schema:
                raise ApiError(400, "unknown_column", f"group_by={group_by[:80]!r} names an "
                               f"unknown column of dataset {loaded.dataset!r}",
                               parameter="group_by", allowed=self._dictionary_columns(loaded))
            if loaded.columns[group_by].encoding != "dictionary":
                raise invalid("group_by", group_by, self._dictionary_columns(loaded),
                              reason="not a dictionary-encoded column; must be one of "
                                     + self._dictionary_columns(loaded))

        filters = query.parse_filters(params, loaded)
        begin, end = query.row_range(params, loaded)
        if end - begin > self.settings.max_scan_rows:
            raise ApiError(400, "range_too_large", f"the range [{begin}, {end}) has "
                           f"{end - begin} rows; an aggregate scans at most "
                           f"{self.settings.max_scan_rows} rows per request: narrow it with "
                           "start/stop or key_start/key_stop and combine the results",
                           parameter="stop",
                           allowed=f"stop - start <= {self.settings.max_scan_rows}")
        etag, cached = self._cached(request, loaded.generation, media, "aggregate")
        if cached:
            return cached

        table, matched = compute(loaded, specs, group_by, filters, begin, end)
        loaded.rows_scanned.inc(end - begin)

        if media == JSON:
            names = list(table)
            results = [dict(zip(names, [encode.json_safe(v) for v in values]))
                       for values in zip(*table.values())]
            body = encode.json_bytes({"dataset": loaded.dataset,
                                      "generation": loaded.generation, "start": begin,
                                      "stop": end, "rows_scanned": end - begin,
                                      "rows_matched": matched, "group_by": group_by,
                                      "results": results})
        elif media == CSV:
            body = encode.csv_bytes(list(table), list(table.values()))
        else:
            body = encode.arrow_table_bytes(table)
        return Reply(200, body, content_type=CONTENT_TYPES[media],
                     headers=_cache_headers(etag), route="aggregate")

    @staticmethod
    def _dictionary_columns(loaded: LoadedGeneration) -> str:
        names = [n for n in loaded.column_names if loaded.columns[n].encoding == "dictionary"]
        return "dictionary-encoded columns: " + (", ".join(names) or "(none)")

    @staticmethod
    def _aggregate_specs(params: query.Params, loaded: LoadedGeneration) -> list[tuple[str, str | None]]:
        form = ("comma-separated count or fn:column with fn one of sum, mean, min, max, count; "
                "sum and mean need a numeric column, min and max a numeric, date or "
                "timestamp column")
        raw = params.get("agg") or "count"
        specs: list[tuple[str, str | None]] = []
        for part in raw.split(","):
            function, _, name = part.strip().partition(":")
            if function not in AGGREGATES:
                raise invalid("agg", raw, form, reason=f"unknown function {function[:20]!r}; "
                              "must be " + form)
            if not name:
                if function != "count":
                    raise invalid("agg", raw, form, reason=f"{function} needs a column; "
                                  "must be " + form)
                specs.append(("count", None))
                continue
            if name not in loaded.schema:
                raise ApiError(400, "unknown_column", f"agg={raw[:80]!r} names unknown column "
                               f"{name[:80]!r}", parameter="agg",
                               allowed="columns: " + ", ".join(loaded.column_names))
            type_name = loaded.schema[name].type
            if function in ("sum", "mean") and type_name not in typed.NUMERIC_TYPES | {"bool"}:
                raise invalid("agg", raw, form, reason=f"{function} needs a numeric column, "
                              f"{name!r} is {type_name}")
            if function in ("min", "max") and type_name not in (
                    typed.NUMERIC_TYPES | {"date", "timestamp"}):
                raise invalid("agg", raw, form, reason=f"{function} needs a numeric, date or "
                              f"timestamp column, {name!r} is {type_name}")
            specs.append((function, name))
        return specs


def _route_name(segments: list[bytes]) -> str:
    """Return the metrics label of a /v1/datasets/{name}/... path."""
    if len(segments) == 4:
        return "dataset"
    resource = segments[4]
    if resource == b"rows":
        return "row" if len(segments) > 5 else "rows"
    if resource == b"columns":
        return "column"
    if resource == b"aggregate":
        return "aggregate"
    return "other"


def _cache_headers(etag: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"etag", etag), (b"cache-control", CACHE_CONTROL), (b"vary", b"Accept")]
