"""The one JSON error shape that every 4xx and 5xx response of the service uses.

```json
{"error": {"status": 400, "code": "invalid_parameter", "parameter": "limit",
           "message": "limit='-1' is invalid: must be an integer from 1 to 10000",
           "allowed": "an integer from 1 to 10000"}}
```
`parameter` and `allowed` are null when they do not apply.
"""

from __future__ import annotations

import orjson


class ApiError(Exception):
    """A request the service cannot serve. It becomes a JSON error response."""

    def __init__(self, status: int, code: str, message: str, *, parameter: str | None = None,
                 allowed: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.parameter = parameter
        self.allowed = allowed
        self.headers = headers or {}

    def body(self) -> bytes:
        """Return the encoded JSON error document."""
        return error_body(self.status, self.code, self.message, parameter=self.parameter,
                          allowed=self.allowed)


def error_body(status: int, code: str, message: str, *, parameter: str | None = None,
               allowed: str | None = None) -> bytes:
    """Return the encoded JSON error document for the given fields."""
    return orjson.dumps({"error": {"status": status, "code": code, "parameter": parameter,
                                   "message": message, "allowed": allowed}})


def invalid(parameter: str, value: object, allowed: str, *, reason: str | None = None) -> ApiError:
    """Return a 400 error for a query parameter that has an invalid value."""
    shown = value if isinstance(value, str) else str(value)
    if len(shown) > 80:
        shown = shown[:80] + "..."
    message = f"{parameter}={shown!r} is invalid: " + (reason or f"must be {allowed}")
    return ApiError(400, "invalid_parameter", message, parameter=parameter, allowed=allowed)


def not_found(code: str, message: str, *, parameter: str | None = None,
              allowed: str | None = None) -> ApiError:
    """Return a 404 error."""
    return ApiError(404, code, message, parameter=parameter, allowed=allowed)
