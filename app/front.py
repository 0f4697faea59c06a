"""The lean ASGI layer in front of FastAPI.

GET and HEAD under /v1/ are handled here directly: the handlers build the whole body as
bytes (or, for raw column bytes, as a memoryview of the mapped pages) and this layer sends it
with two ASGI messages. Everything else (health, readiness, metrics, /docs, /openapi.json,
other methods, unknown paths) goes to FastAPI. Both paths share the request id, the access
log line and the metrics, which this layer owns.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import ApiError, error_body
from .handlers import Handlers, Reply, Request, error_reply
from .logs import AccessLog
from .metrics import REQUEST_METRICS

errors_log = logging.getLogger("rodata.api")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The access log writes the request id unescaped, so this pattern must admit no '"', backslash
# or control character (fullmatch, because '$' alone would let a trailing newline through).
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
_FALLBACK_ROUTES = {"/healthz": "healthz", "/readyz": "readyz", "/metrics": "metrics",
                    "/docs": "docs", "/openapi.json": "openapi"}


class _IdSource:
    """Request ids: a random per-process prefix and a counter (unique, and cheap per request)."""

    def __init__(self) -> None:
        self.prefix = os.urandom(4).hex().encode()
        self.counter = 0

    def next(self) -> bytes:
        self.counter += 1
        return b"%s-%x" % (self.prefix, self.counter)


class FrontApp:
    """ASGI app that serves /v1 GET/HEAD itself and passes every other request to `fallback`."""

    def __init__(self, fallback: ASGIApp, handlers: Handlers, *, access_log: bool,
                 fast_path: bool = True) -> None:
        self.fallback = fallback
        self.handlers = handlers
        self.access_log = access_log
        self.fast_path = fast_path
        self.metrics = REQUEST_METRICS
        self.ids = _IdSource()
        self.access = AccessLog()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.fallback(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"]
        path = scope["path"]

        request_id = None
        accept = if_none_match = None
        for name, value in scope["headers"]:
            if name == b"accept":
                accept = value.decode("latin-1")
            elif name == b"if-none-match":
                if_none_match = value.decode("latin-1")
            elif name == b"x-request-id" and _REQUEST_ID.fullmatch(value):
                request_id = value
        if request_id is None:
            request_id = self.ids.next()

        if self.fast_path and path.startswith("/v1/") and method in ("GET", "HEAD"):
            raw_path = scope.get("raw_path") or path.encode()
            request = Request(method, raw_path.split(b"?", 1)[0], scope["query_string"],
                              accept, if_none_match)
            try:
                reply = self.handlers.dispatch(request)
            except ApiError as error:
                reply = error_reply(error)
            except Exception:  # noqa: BLE001 - a bug must become a logged 500, not a dropped connection
                errors_log.exception("request failed", extra={"request_id": request_id.decode(),
                                                              "path": path})
                reply = Reply(500, error_body(500, "internal_error", "the server failed to "
                                              "answer; the error is logged with request id "
                                              + request_id.decode()))
            try:
                size = await self._send(reply, method, request_id, send)
            finally:
                if reply.lease is not None:
                    reply.lease.release()
            self._record(reply.route, method, reply.status, started, size, request_id, path,
                         reply.dataset, reply.generation)
            return

        # FastAPI handles the request; wrap send to learn the status and size for the log and metrics.
        state = {"status": 500, "size": 0}
        request_id_header = (b"x-request-id", request_id)

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                message["headers"] = list(message.get("headers", [])) + [request_id_header]
            elif message["type"] == "http.response.body":
                state["size"] += len(message.get("body", b""))
            await send(message)

        scope.setdefault("state", {})["request_id"] = request_id.decode()
        try:
            await self.fallback(scope, receive, send_wrapper)
        finally:
            route = _FALLBACK_ROUTES.get(path, "v1" if path.startswith("/v1/") else "other")
            self._record(route, method, state["status"], started, state["size"], request_id,
                         path, scope["state"].get("dataset"), scope["state"].get("generation"))

    async def _send(self, reply: Reply, method: str, request_id: bytes, send: Send) -> int:
        body = reply.body
        size = len(body) if isinstance(body, bytes) else body.nbytes
        headers = [(b"content-type", reply.content_type),
                   (b"x-request-id", request_id)]
        if reply.status != 304:
            headers.append((b"content-length", b"%d" % size))
        headers.extend(reply.headers)
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        if method == "HEAD" or reply.status == 304:
            await send({"type": "http.response.body", "body": b""})
            return 0
        await send({"type": "http.response.body", "body": body})
        return size

    def _record(self, route: str, method: str, status: int, started: float, size: int,
                request_id: bytes, path: str, dataset: str | None,
                generation: str | None) -> None:
        seconds = time.perf_counter() - started
        self.metrics.observe(route, method, status, seconds, size)
        if self.access_log:
            self.access.write(request_id, method, path, route, status, dataset, generation,
                              size, seconds)
