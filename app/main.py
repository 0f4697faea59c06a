"""The FastAPI application: lifespan, health, readiness, metrics, OpenAPI and the /v1 routes.

`create_app` returns the FastAPI app wrapped in `FrontApp`, which serves GET and HEAD under
/v1 itself with the same handlers the FastAPI routes below call. The routes here give the
OpenAPI document its parameters and responses, and serve /v1 when the fast path is off
(RODATA_FAST_PATH=false), so both paths behave the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import handlers as h
from .config import Settings
from .errors import ApiError, error_body
from .front import FrontApp
from .metrics import REGISTRY
from .store import Store

GET_HEAD = ["GET", "HEAD"]

ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "object", "properties": {
        "status": {"type": "integer"}, "code": {"type": "string"},
        "parameter": {"type": ["string", "null"]}, "message": {"type": "string"},
        "allowed": {"type": ["string", "null"]}}}},
}
ERRORS = {status: {"description": text, "content": {"application/json": {"schema": ERROR_SCHEMA}}}
          for status, text in [(400, "Invalid parameter"), (404, "Unknown dataset, column or key"),
                               (406, "No acceptable media type"),
                               (410, "Cursor from an older generation")]}
TABLE_CONTENT = {"application/json": {}, "text/csv": {},
                 "application/vnd.apache.arrow.stream": {}}
TABLE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "JSON (default), CSV or Arrow IPC stream, chosen by Accept",
          "content": TABLE_CONTENT},
    304: {"description": "Not modified (If-None-Match matched the ETag)"}, **ERRORS}

DatasetName = Annotated[str, Path(description="Dataset name", alias="name")]
Start = Annotated[str | None, Query(description="First row position (0-based, inclusive)")]
Stop = Annotated[str | None, Query(description="Last row position (exclusive)")]
KeyStart = Annotated[str | None, Query(description="First key (inclusive); a composite key "
                                       "may give only its leading components")]
KeyStop = Annotated[str | None, Query(description="Key where the range stops (exclusive)")]
Filters = Annotated[list[str] | None, Query(
    alias="filter", description="column:op:value, op one of eq, ne, lt, le, gt, ge, in "
    "(comma-separated values), isnull (true/false); repeat for AND")]


def _request(request: Request) -> h.Request:
    scope = request.scope
    raw_path = scope.get("raw_path") or scope["path"].encode()
    return h.Request(scope["method"], raw_path.split(b"?", 1)[0], scope["query_string"],
                     request.headers.get("accept"), request.headers.get("if-none-match"))


def create_app(settings: Settings) -> FrontApp:
    """Return the ASGI application for `settings`."""
    store = Store(settings)
    handlers = h.Handlers(settings, store)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await store.start(load_first=settings.workers > 1)
        flusher = asyncio.get_running_loop().create_task(flush_access_log())
        yield
        flusher.cancel()
        await store.stop()
        front.access.flush()

    async def flush_access_log() -> None:
        while True:
            await asyncio.sleep(0.2)
            front.access.flush()

    app = FastAPI(title="rodata", version="1", lifespan=lifespan,
                  description="Read-only datasets served from memory-mapped generations. "
                  "Errors share one JSON shape: {\"error\": {\"status\", \"code\", "
                  "\"parameter\", \"message\", \"allowed\"}}.")
    app.state.store = store
    app.state.settings = settings

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> Response:
        return Response(error.body(), status_code=error.status, media_type="application/json",
                        headers=error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        message = {404: f"no such resource: {request.url.path}",
                   405: f"method {request.method} is not allowed on {request.url.path}"}.get(
                       error.status_code, str(error.detail))
        return Response(error_body(error.status_code, code, message,
                                   allowed="GET, HEAD" if error.status_code == 405 else None),
                        status_code=error.status_code, media_type="application/json",
                        headers=getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> Response:
        first = error.errors()[0] if error.errors() else {}
        parameter = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return Response(error_body(400, "invalid_parameter",
                                   f"{parameter}: {first.get('msg', 'invalid')}",
                                   parameter=parameter),
                        status_code=400, media_type="application/json")

    def serve(request: Request) -> Response:
        reply = handlers.dispatch(_request(request))
        try:
            headers = {k.decode(): v.decode() for k, v in reply.headers}
            return Response(bytes(reply.body), status_code=reply.status,
                            media_type=reply.content_type.decode(), headers=headers)
        finally:
            if reply.lease is not None:
                reply.lease.release()

    @app.api_route("/healthz", methods=GET_HEAD, tags=["operations"])
    async def healthz() -> dict[str, str]:
        """Report liveness: 200 while the process runs. Never touches data."""
        return {"status": "ok"}

    @app.api_route("/readyz", methods=GET_HEAD, tags=["operations"],
                   responses={503: {"description": "Not ready (loading or shutting down)"}})
    async def readyz() -> JSONResponse:
        """Readiness: 200 when every dataset has a validated, pre-warmed generation loaded."""
        ready, reason = store.readiness()
        generations = {name: g.generation for name, g in sorted(store.current.items())}
        return JSONResponse({"ready": ready, "reason": reason, "generations": generations},
                            status_code=200 if ready else 503)

    @app.api_route("/metrics", methods=GET_HEAD, tags=["operations"],
                   response_class=Response,
                   responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
    async def metrics() -> Response:
        """Prometheus metrics (text exposition format)."""
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.api_route("/v1/datasets", methods=GET_HEAD, tags=["datasets"],
                   responses={304: {"description": "Not modified"}, **ERRORS})
    async def list_datasets(request: Request) -> Response:
        """List every dataset with its generation, row count, created time and size in bytes."""
        return serve(request)

    @app.api_route("/v1/datasets/{name}", methods=GET_HEAD, tags=["datasets"],
                   responses={304: {"description": "Not modified"}, **ERRORS})
    async def describe_dataset(request: Request, name: DatasetName) -> Response:
        """Return the schema (names, types, nullability, encodings), key columns, generation, row count
        and the request limits."""
        return serve(request)

    @app.api_route("/v1/datasets/{name}/rows/{key}", methods=GET_HEAD, tags=["rows"],
                   responses=TABLE_RESPONSES)
    async def get_row(request: Request, name: DatasetName,
                      key: Annotated[str, Path(description=(
                          "Key value; a composite key joins its components with ',' in key "
                          "column order (a ',' inside a component is sent as %2C)"))]) -> Response:
        """Return one row by key, found by binary search on the sorted key columns."""
        return serve(request)

    @app.api_route("/v1/datasets/{name}/rows", methods=GET_HEAD, tags=["rows"],
                   responses=TABLE_RESPONSES)
    async def list_rows(request: Request, name: DatasetName, start: Start = None,
                        stop: Stop = None, key_start: KeyStart = None, key_stop: KeyStop = None,
                        columns: Annotated[str | None, Query(
                            description="Comma-separated columns to return (default all)")] = None,
                        filter: Filters = None,
                        limit: Annotated[str | None, Query(
                            description="Rows per page (default and maximum in the dataset's "
                            "limits)")] = None,
                        cursor: Annotated[str | None, Query(
                            description="next_cursor of the previous page; bound to the "
                            "generation (410 once it is replaced)")] = None,
                        shape: Annotated[str | None, Query(
                            description="JSON rows as 'arrays' (default, in the order of "
                            "'columns') or 'objects'")] = None) -> Response:
        """Return a page of rows in key order: a row or key range, a projection and filters.

        The page ends at `limit` matches or when the rows scanned reach the per-request cap;
        `next_cursor` (JSON) or the X-Rodata-Next-Cursor header continues it."""
        return serve(request)

    @app.api_route("/v1/datasets/{name}/columns/{column}", methods=GET_HEAD, tags=["columns"],
                   responses={200: {"description": "JSON, CSV, Arrow, or with Accept: "
                                    "application/octet-stream the raw little-endian values "
                                    "(X-Rodata-Dtype, X-Rodata-Shape headers) of a fixed-width "
                                    "column", "content": {**TABLE_CONTENT,
                                                          "application/octet-stream": {}}},
                              304: {"description": "Not modified"}, **ERRORS})
    async def get_column(request: Request, name: DatasetName,
                         column: Annotated[str, Path(description="Column name")],
                         start: Start = None, stop: Stop = None) -> Response:
        """Return one column's values for the rows [start, stop)."""
        return serve(request)

    @app.api_route("/v1/datasets/{name}/aggregate", methods=GET_HEAD, tags=["aggregate"],
                   responses=TABLE_RESPONSES)
    async def aggregate(request: Request, name: DatasetName,
                        agg: Annotated[str | None, Query(description=(
                            "Comma-separated count or fn:column, fn one of count, sum, mean, "
                            "min, max (default count)"))] = None,
                        group_by: Annotated[str | None, Query(
                            description="A dictionary-encoded column to group by")] = None,
                        start: Start = None, stop: Stop = None, key_start: KeyStart = None,
                        key_stop: KeyStop = None, filter: Filters = None) -> Response:
        """count, sum, mean, min, max over a range and filters, optionally grouped; the range
        may cover at most the dataset's max_scan_rows rows."""
        return serve(request)

    def openapi() -> dict[str, Any]:
        # Each route serves GET and HEAD; FastAPI gives both the same operationId (and warns),
        # so the HEAD operations get a suffix to keep ids unique as OpenAPI requires.
        if app.openapi_schema is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                document = get_openapi(title=app.title, version=app.version,
                                       description=app.description, routes=app.routes)
            for operations in document["paths"].values():
                if "head" in operations:
                    operations["head"]["operationId"] += "_head"
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    access_log = settings.access_log and settings.log_level in ("debug", "info")
    front = FrontApp(app, handlers, access_log=access_log, fast_path=settings.fast_path)
    return front


def app_from_environment() -> FrontApp:
    """Return the app configured from the environment (for uvicorn's multi-worker mode)."""
    import pyarrow as pa

    from .config import load_settings
    from .logs import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level)
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    return create_app(settings)
