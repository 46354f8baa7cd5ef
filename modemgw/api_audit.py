"""The REST API's audit log (a route on the `/api/v1` blueprint of `modemgw.api`): `GET /api/v1/audit`, for keys
with the `admin` scope, newest first, a page at a time (`cursor`: the previous page's `next_cursor`).

Filters: `action` (a prefix: `login.` finds every login entry), `actor` (text in who did it: `alice`, `key ops`,
`cli`), `since` and `until` (ISO 8601 times), `ok` (`false`: only what was refused or failed). The entries are
written where the actions happen; secrets never reach them (`Gateway.audit`)."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from flask import request

from modemgw.api import _gateway, _page, _page_args, api, requires
from modemgw.problems import ApiProblem
from modemgw.views import iso

MAX_FILTER = 100  # characters of the action or actor filter


def audit_view(row: dict) -> dict:
    """An audit entry as the API shows it: its time in ISO 8601."""
    return {"id": row["id"], "at": iso(row["at"]), "actor": row["actor"], "source": row["source"],
            "action": row["action"], "target": row["target"], "detail": row["detail"], "ok": row["ok"]}


def _moment(args, name: str) -> float | None:
    """An ISO 8601 time (a time without a zone is the gateway's local time) as a timestamp, or None. Raises
    ApiProblem naming `name`."""
    value = args.get(name)
    if not value:
        return None
    if len(value) > 64:
        raise ApiProblem(400, "invalid-request", f"'{name}' is longer than any time", field=name)
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.astimezone()
        return moment.timestamp()
    except (ValueError, OverflowError, OSError):
        raise ApiProblem(400, "invalid-request", f"'{name}' must be an ISO 8601 time such as 2026-05-01T08:00:00Z, "
                                                 f"not {value!r}", field=name) from None


def _text(args, name: str) -> str | None:
    value = args.get(name)
    if value is not None and len(value) > MAX_FILTER:
        raise ApiProblem(400, "invalid-request", f"'{name}' is longer than {MAX_FILTER} characters", field=name)
    return value or None


@api.get("/audit")
@requires("admin")
def list_audit() -> dict:
    args = request.args
    limit, cursor = _page_args(args)
    filters: dict[str, Any] = {"action": _text(args, "action"), "actor": _text(args, "actor"),
                               "since": _moment(args, "since"), "until": _moment(args, "until")}
    ok = args.get("ok")
    if ok not in (None, "", "true", "false"):
        raise ApiProblem(400, "invalid-request", f"'ok' must be true or false, not {ok[:20]!r}", field="ok")
    filters["ok"] = None if not ok else ok == "true"
    return _page(functools.partial(_gateway().audit_log, **filters), limit, cursor, audit_view)
