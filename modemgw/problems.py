"""problem+json (RFC 9457) for every HTTP edge (API, web UI): the problem kinds and their titles, `ApiProblem`
(raised by a view, turned into a response by the app's error handler), and the 503 of a failing database."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, request

from modemgw.store import StoreError

PROBLEM_TITLES = {
    "invalid-request": "The request is not valid",
    "invalid-json": "The body is not valid JSON",
    "unsupported-media-type": "The body must be JSON",
    "unauthorized": "Authentication required",
    "forbidden": "The API key lacks the scope for this",
    "not-found": "Not found",
    "method-not-allowed": "Method not allowed",
    "payload-too-large": "The request body is too large",
    "rate-limited": "Too many requests",
    "idempotency-conflict": "Idempotency-Key reused with a different request",
    "conflict": "The resource is not in a state that allows this",
    "storage-error": "The gateway could not store the request",
    "modem-error": "The modem could not do this",
    "internal-error": "Internal error",
}
STORAGE_RETRY_AFTER = 10  # seconds a client waits before retrying a request refused by a failing database


class ApiProblem(Exception):
    """A request refused with `status` and a problem `kind` (urn:modemgw:problem:<kind>); `extra` adds members
    such as `field`."""

    def __init__(self, status: int, kind: str, detail: str, **extra: Any):
        super().__init__(detail)
        self.status, self.kind, self.detail, self.extra = status, kind, detail, extra


def problem(status: int, kind: str, detail: str, **extra: Any) -> Response:
    """The application/problem+json response; members of `extra` that are None are left out."""
    body = {"type": f"urn:modemgw:problem:{kind}", "title": PROBLEM_TITLES.get(kind, kind), "status": status,
            "detail": detail, **{key: value for key, value in extra.items() if value is not None}}
    return Response(json.dumps(body, ensure_ascii=False), status=status, mimetype="application/problem+json")


def storage_problem(error: StoreError) -> Response:
    """503 with Retry-After: the database is full, locked or failing (`reason` is StoreError.kind)."""
    stored = "" if request.method in ("GET", "HEAD") else "nothing was stored; "
    response = problem(503, "storage-error", f"{error}; {stored}try again in {STORAGE_RETRY_AFTER} s",
                       reason=error.kind, retry_after=STORAGE_RETRY_AFTER)
    response.headers["Retry-After"] = str(STORAGE_RETRY_AFTER)
    return response


__all__ = ["PROBLEM_TITLES", "STORAGE_RETRY_AFTER", "ApiProblem", "problem", "storage_problem"]
