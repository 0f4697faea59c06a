"""Anchor apps for the API benchmark: the uvicorn ceiling and a plain FastAPI route.

`bare` is the smallest ASGI app that returns 20 bytes of JSON; `fastapi_app` is one plain
FastAPI route returning a small dict. Run with uvicorn, e.g.
`uvicorn bench.api.anchors:bare --loop uvloop --http httptools --no-access-log`.
"""

from __future__ import annotations

from fastapi import FastAPI

BODY = b'{"id":1,"ok":"yes!"}'  # 20 bytes
assert len(BODY) == 20
MIB = bytes(1 << 20)  # the ceiling for 1 MiB bodies: no work but the send


async def bare(scope, receive, send):
    """Send the same 20-byte JSON body, or 1 MiB of zero bytes on /mib, for every request."""
    if scope["type"] != "http":
        return
    body = MIB if scope["path"] == "/mib" else BODY
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


fastapi_app = FastAPI()


@fastapi_app.get("/item/{item_id}")
async def item(item_id: int) -> dict:
    """Return a small dict, the way a typical FastAPI route does."""
    return {"id": item_id, "ok": "yes"}
