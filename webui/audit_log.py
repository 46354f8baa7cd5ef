"""The audit log's page for admins (`/ui/audit`, linked from Settings): who did what, when, from where, on what,
and whether it was allowed, newest first, with filters (action prefix, actor, dates, only refused) and a cursor
("Older entries") instead of page numbers, so that entries written meanwhile never shift a page. A filter that
cannot be read (a date that is not YYYY-MM-DD) is left out, and the page says so, as Messages does: never a list
that looks filtered and is not.

The entries are written where the actions happen (`webui.audit`, `modemgw.api._audit`, the gateway's USSD and AT
requests, the CLI); this only reads them through the gateway."""

from __future__ import annotations

import datetime as dt
import json
import time

from flask import render_template, request

from webui import gateway, ui
from webui.sessions import login_required

PAGE = 100         # entries a page
MAX_FILTER = 100   # characters of a filter's text
DATE_ARGS = {"from": "since", "to": "until"}  # the page's date filters, and the other name each is known by
ACTION_FAMILIES = ("login.", "logout", "user.", "session.", "key.", "modem.", "optout.", "webhook.", "message.")


def _day_start(value: str, what: str, problems: list[str], days: int = 0) -> float | None:
    """Local midnight of a YYYY-MM-DD date (`days` later), or None: when empty, and when it is not such a date (then
    `problems` says so, naming `what`, and that the filter is left out, as the Messages page does)."""
    if not value:
        return None
    try:
        day = dt.date.fromisoformat(value) + dt.timedelta(days=days) if len(value) == 10 else None
    except (ValueError, OverflowError):
        day = None
    if day is None:
        problems.append(f"{what}: {value[:20]!r} is not a date (YYYY-MM-DD); that filter is left out")
        return None
    return time.mktime((day.year, day.month, day.day, 0, 0, 0, 0, 0, -1))


def detail_text(detail: dict) -> str:
    """An entry's detail as one line a person reads: `name: value`, values that are not text as JSON."""
    return "; ".join(f"{name}: {value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)}"
                     for name, value in detail.items())


@ui.get("/ui/audit")
@login_required("admin")
def audit_log() -> tuple[str, int]:
    args = request.args
    shown = {name: args.get(name, "")[:MAX_FILTER].strip() for name in ("action", "actor")}
    for name, other in DATE_ARGS.items():  # from/to as on Messages; since/until as the API and older links say
        shown[name] = (args.get(name) or args.get(other, ""))[:MAX_FILTER].strip()
    refused = args.get("refused") == "1"
    problems: list[str] = []
    filters: dict = {"action": shown["action"] or None, "actor": shown["actor"] or None,
                     "ok": False if refused else None,
                     "since": _day_start(shown["from"], "From", problems),
                     "until": _day_start(shown["to"], "To", problems, days=1)}  # to the end of that day
    before = args.get("before", "")
    filters["before"] = int(before) if before.isascii() and before.isdigit() and len(before) < 19 else None
    rows = gateway().audit_log(PAGE + 1, **filters)
    entries = [row | {"detail_text": detail_text(row["detail"])} for row in rows[:PAGE]]
    older = entries[-1]["id"] if len(rows) > PAGE else None
    query = {name: value for name, value in shown.items() if value} | ({"refused": "1"} if refused else {})
    return render_template("audit.html", entries=entries, shown=shown, refused=refused, problems=problems,
                           older=older, query=query, paged=filters["before"] is not None, families=ACTION_FAMILIES), 200
