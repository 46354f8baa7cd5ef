"""The REST API: blueprint `/api/v1` and the cloud-style `POST /send`, thin over `gateway`.

JSON in and out. Every error is `application/problem+json` with a stable `type` (`urn:modemgw:problem:<kind>`),
a `title` and a `detail` that says what to fix; never an HTML page.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable, Iterable
from typing import Any

from flask import Blueprint, Flask, current_app, g, request
from werkzeug.exceptions import HTTPException

from modemgw import text, urls
from modemgw.auth import ApiKey, Authenticator, AuthError
from modemgw.gateway import Conflict, Gateway, ModemRequestError, SubmitError, SubmitRequest, at_command_problem
from modemgw.problems import STORAGE_RETRY_AFTER, ApiProblem, problem, storage_problem
from modemgw.store import Conflict as DataConflict, NotFound, StoreError
from modemgw.views import delivery_view, inbox_view, iso as _iso, message_view, modem_view, optout_view, webhook_view

api = Blueprint("api", __name__, url_prefix="/api/v1")
compat = Blueprint("compat", __name__)

# The problem helpers (modemgw.problems), the views (modemgw.views) and the AT rule (modemgw.gateway) were defined
# here; their old names stay importable from this module until every importer uses their owners.
__all__ = ["STORAGE_RETRY_AFTER", "ApiProblem", "_iso", "api", "at_command_problem", "compat", "message_view",
           "problem", "register_errors", "requires", "storage_problem"]


def _daemon():
    return current_app.extensions["modemgw"]


def _gateway() -> Gateway:
    return _daemon().gateway


# --- authentication -----------------------------------------------------------------------------------------

def requires(scope: str) -> Callable:
    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            authenticator: Authenticator = current_app.extensions["modemgw.auth"]
            try:
                key = authenticator.authenticate(request.headers.get("Authorization"))
            except AuthError as error:
                response = problem(401, "unauthorized", error.detail)
                response.headers["WWW-Authenticate"] = 'Bearer realm="modemgw"'
                return response
            if not key.allows(scope):
                return problem(403, "forbidden", f"this API key ({key.name}) has scopes {', '.join(key.scopes)}; "
                                                 f"this needs '{scope}'")
            wait = authenticator.throttle(key)
            if wait > 0:
                response = problem(429, "rate-limited", f"this key may make {key.rate_per_minute} requests a minute",
                                   retry_after=round(wait))
                response.headers["Retry-After"] = str(max(1, round(wait)))
                return response
            g.api_key = key
            return view(*args, **kwargs)
        return wrapper
    return decorate


def _audit(action: str, target: str | None = None, detail: dict | None = None, ok: bool = True) -> None:
    """Record an action of the calling API key in the audit log, with the client's address."""
    key = getattr(g, "api_key", None)
    actor = f"key {key.name} (#{key.id})" if key is not None else "anonymous"
    _gateway().audit(action, actor=actor, source=request.remote_addr, target=target, detail=detail, ok=ok)


# --- input ----------------------------------------------------------------------------------------------------

def _json_body() -> dict:
    if not request.is_json:
        raise ApiProblem(415, "unsupported-media-type",
                         f"send the body as JSON with 'Content-Type: application/json' (got "
                         f"{request.content_type or 'no content type'!r})")
    try:  # JSON is UTF-8 (RFC 8259): anything else is refused, never sent on as U+FFFD
        raw = request.get_data(cache=True).decode("utf-8")
    except UnicodeDecodeError as error:
        raise ApiProblem(400, "invalid-encoding", f"the body is not valid UTF-8 (byte {error.start}); send JSON "
                                                  "as UTF-8") from None
    try:
        body = json.loads(raw or "null")
    except json.JSONDecodeError as error:
        raise ApiProblem(400, "invalid-json", f"the body is not valid JSON: {error.msg} at line {error.lineno}, "
                                              f"column {error.colno}") from None
    except RecursionError:  # the parser gave up on nesting thousands deep
        raise ApiProblem(400, "invalid-json", f"the body nests deeper than {MAX_JSON_DEPTH} levels") from None
    if not isinstance(body, dict):
        raise ApiProblem(400, "invalid-request", "the body must be a JSON object")
    if _depth(body) > MAX_JSON_DEPTH:
        raise ApiProblem(400, "invalid-json", f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    return body


MAX_JSON_DEPTH = 16  # the deepest request (recipients -> fields) needs 4


def _depth(value: Any, limit: int = MAX_JSON_DEPTH + 1) -> int:
    """How deep `value` nests, counted up to `limit` (the walk stops there)."""
    if limit <= 0 or not isinstance(value, (dict, list)):
        return 0
    items = value.values() if isinstance(value, dict) else value
    return 1 + max((_depth(item, limit - 1) for item in items), default=0)


def _check_fields(body: dict, allowed: dict[str, tuple], nullable: Iterable[str] = ()) -> None:
    """Refuse unknown fields and wrong types by name. `null` is taken only for the fields named in `nullable`
    (e.g. a limit that null removes); elsewhere it is a wrong type, not a crash further on."""
    for name, value in body.items():
        if name not in allowed:
            raise ApiProblem(400, "invalid-request", f"unknown field '{name}' (fields: {', '.join(allowed)})",
                             field=name)
        types = allowed[name]
        if value is None and name not in nullable:
            raise ApiProblem(400, "invalid-request", f"'{name}' must not be null (leave it out instead)",
                             field=name)
        if value is not None and not isinstance(value, types) or isinstance(value, bool) and bool not in types:
            names = " or ".join("string" if t is str else "integer" if t is int else "boolean" if t is bool else
                                "list" if t is list else "object" if t is dict else t.__name__ for t in types)
            raise ApiProblem(400, "invalid-request", f"'{name}' must be {names}, not {json.dumps(value)}",
                             field=name)


SUBMIT_FIELDS: dict[str, tuple] = {
    "to": (str, list), "recipients": (list,), "body": (str,), "message": (str,), "priority": (int,),
    "send_at": (str, int, float), "validity": (int,), "modem": (str,), "group": (str,), "client_ref": (str,),
    "callback_url": (str,), "spintax": (bool,), "smart_encoding": (bool,), "request_report": (bool,),
    "groups": (list,), "contacts": (list,), "template": (int, str), "reply_to": (int,),
}


def _book_recipients(body: dict) -> tuple[list | None, list | None, list | None]:
    """(recipients, groups, contacts): `recipients` items may name an address-book group (`{"group": "staff"}`)
    or contact (`{"contact": 12}`) besides numbers with fields; they join the `groups` and `contacts` lists."""
    recipients, groups, contacts = body.get("recipients"), body.get("groups"), body.get("contacts")
    if not isinstance(recipients, list):
        return recipients, groups, contacts
    plain = []
    for item in recipients:
        if isinstance(item, dict) and "to" not in item and len(item) == 1 and ("group" in item or "contact" in item):
            if "group" in item:
                groups = [*(groups or []), item["group"]]
            else:
                contacts = [*(contacts or []), item["contact"]]
        else:
            plain.append(item)
    return plain or None, groups, contacts


def _submit(body: dict, key: ApiKey) -> dict:
    _check_fields(body, SUBMIT_FIELDS, nullable=SUBMIT_FIELDS)  # cloud APIs' clients send null for "not given"
    if "body" in body and "message" in body:
        raise ApiProblem(400, "invalid-request", "give 'body' or its alias 'message', not both", field="body")
    callback = body.get("callback_url")
    if callback is not None and not callback.startswith(("http://", "https://")):
        raise ApiProblem(400, "invalid-request", "'callback_url' must be an http:// or https:// URL",
                         field="callback_url")
    if body.get("modem") and body.get("group"):
        raise ApiProblem(400, "invalid-request", "give 'modem' or 'group', not both", field="modem")
    recipients, groups, contacts = _book_recipients(body)
    return _gateway().send(SubmitRequest(
        body.get("body", body.get("message")), body.get("to"), recipients=recipients, groups=groups,
        contacts=contacts, template=body.get("template"), reply_to=body.get("reply_to"),
        priority=body.get("priority", 0), send_at=body.get("send_at"), validity=body.get("validity"),
        route=body.get("modem") or body.get("group"), client_ref=body.get("client_ref"),
        idempotency_key=request.headers.get("Idempotency-Key"), spintax=body.get("spintax", False),
        smart_encoding=body.get("smart_encoding", False), api_key_id=key.id, key_group=key.group,
        callback_url=callback, request_report=body.get("request_report", True)))


MAX_ID = 2**63 - 1


def _whole(args, name: str, default: int | None = None) -> int | None:
    value = args.get(name)
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except ValueError:
        raise ApiProblem(400, "invalid-request", f"'{name}' must be a whole number, not {value!r}",
                         field=name) from None
    if not 0 <= number <= MAX_ID:
        raise ApiProblem(400, "invalid-request", f"'{name}' is out of range", field=name)
    return number


def _page_args(args) -> tuple[int, int | None]:
    return min(500, max(1, _whole(args, "limit", 50) or 50)), _whole(args, "cursor")


def _page(rows_below: Callable[..., list[dict]], limit: int, cursor: int | None, view) -> dict:
    """Newest first, `limit` rows below `cursor` (`rows_below(count, before=cursor)` reads them); `next_cursor`
    is set when more rows follow."""
    rows = rows_below(limit + 1, before=cursor)
    data = [view(row) for row in rows[:limit]]
    return {"data": data, "next_cursor": data[-1]["id"] if len(rows) > limit else None}


# --- messages -------------------------------------------------------------------------------------------------

@api.post("/messages")
@requires("send")
def create_messages():
    result = _submit(_json_body(), g.api_key)
    return result, 202


@api.post("/messages/preview")
@requires("send")
def preview():
    body = _json_body()
    _check_fields(body, {"body": (str,), "message": (str,), "smart_encoding": (bool,), "spintax": (bool,)})
    message = body.get("body", body.get("message"))
    if not message:
        raise ApiProblem(400, "invalid-request", "'body' is empty", field="body")
    try:
        rendered = text.render(message, spintax=True, seed=0) if body.get("spintax") else message
        info = text.info(rendered, smart=body.get("smart_encoding", False))
    except text.TextError as error:
        raise ApiProblem(400, "invalid-request", f"body: {error}", field="body") from None
    result = info.as_dict() | {"text": info.text}
    if body.get("spintax"):
        result["variants"] = text.variant_count(message)
    return result


MESSAGE_TEXT_FILTERS = {"status": ("status", 20), "client_ref": ("client_ref", 128), "to": ("recipient", 40),
                        "q": ("search", 100)}  # query parameter: (filter, its longest sensible value)


def _message_filters(args) -> dict[str, Any]:
    """The filters of a message list (`GET /messages`; the web UI's CSV export offers the same): status,
    client_ref, to, q (text in the number or the body, or an exact client_ref), modem or modem_id, api_key_id,
    user_id (the web UI user who sent it), since and until (ISO 8601 times of creation)."""
    filters: dict[str, Any] = {}
    for name, (key, longest) in MESSAGE_TEXT_FILTERS.items():
        if args.get(name):
            if len(args[name]) > longest:
                raise ApiProblem(400, "invalid-request", f"'{name}' is longer than {longest} characters", field=name)
            filters[key] = args[name]
    if args.get("modem") and args.get("modem_id") and args["modem"] != args["modem_id"]:
        raise ApiProblem(400, "invalid-request", "give 'modem_id' or its alias 'modem', not both", field="modem_id")
    for name, key in (("modem", "modem_id"), ("modem_id", "modem_id"), ("api_key_id", "api_key_id"),
                      ("user_id", "user_id")):
        if args.get(name):
            filters[key] = _whole(args, name)
    for name in ("since", "until"):
        if args.get(name):
            if len(args[name]) > 64:
                raise ApiProblem(400, "invalid-request", f"'{name}' is longer than any time", field=name)
            try:
                moment = dt.datetime.fromisoformat(args[name].replace("Z", "+00:00"))
            except ValueError:
                raise ApiProblem(400, "invalid-request", f"'{name}' must be an ISO 8601 time", field=name) from None
            if moment.tzinfo is None:
                moment = moment.astimezone()
            try:
                filters[name] = moment.timestamp()
            except (OverflowError, ValueError, OSError):
                raise ApiProblem(400, "invalid-request", f"'{name}' is out of range", field=name) from None
    return filters


@api.get("/messages")
@requires("read")
def list_messages():
    limit, cursor = _page_args(request.args)
    filters = _message_filters(request.args)
    rows, scanned_to = _gateway().message_page(limit + 1, before=cursor, **filters)
    data = [message_view(row) for row in rows[:limit]]
    # a search reads a window of messages per request: a page may be short (even empty) with more to read below
    following = data[-1]["id"] if len(rows) > limit else scanned_to
    return {"data": data, "next_cursor": following}


@api.get("/messages/<id:message_id>")
@requires("read")
def get_message(message_id: int):
    return message_view(_gateway().message(message_id), detail=True)


@api.delete("/messages/<id:message_id>")
@requires("send")
def cancel_message(message_id: int):
    status = _gateway().cancel(message_id)
    if status != "canceled":
        raise ApiProblem(409, "conflict", f"message {message_id} is {status}; only queued or scheduled messages "
                                          "can be canceled")
    return {"id": message_id, "status": status}


@api.patch("/messages/<id:message_id>")
@requires("send")
def edit_message(message_id: int):
    """A scheduled message's new time (`send_at`: a time more than a minute past is refused, "now" sends at once)
    and/or text (`body`, checked as a submission's is); a refused edit changes nothing."""
    body = _json_body()
    _check_fields(body, {"send_at": (str, int, float), "body": (str,)})
    if not body:
        raise ApiProblem(400, "invalid-request", "nothing to change: give 'send_at' or 'body'", field="send_at")
    row = _gateway().edit_scheduled(message_id, send_at=body.get("send_at"), body=body.get("body"))
    _audit("message.edit", f"message {message_id}", {"changed": sorted(body)})
    return message_view(row)


# --- scheduled batches (a batch is one submission) -------------------------------------------------------------

def _batch_view(row: dict) -> dict:
    """A batch: its scheduled messages' count and times, and its first scheduled message's text and number."""
    return {"submission_id": row["submission_id"], "count": row["count"], "first_send_at": _iso(row["first_due"]),
            "last_send_at": _iso(row["last_due"]), "created_at": _iso(row["created_at"]), "body": row["body"],
            "to": row["recipient"], "api_key_id": row["api_key_id"], "user_id": row["user_id"]}


@api.get("/scheduled")
@requires("read")
def list_scheduled():
    limit = min(500, max(1, _whole(request.args, "limit", 50) or 50))
    offset = _whole(request.args, "offset", 0) or 0
    rows = _gateway().scheduled_batches(limit + 1, offset)
    return {"data": [_batch_view(row) for row in rows[:limit]],
            "next_offset": offset + limit if len(rows) > limit else None}


@api.patch("/submissions/<id:submission_id>")
@requires("send")
def reschedule_submission(submission_id: int):
    """Move every scheduled message of a batch to `send_at` (a time more than a minute past is refused, "now" sends
    them at once)."""
    body = _json_body()
    _check_fields(body, {"send_at": (str, int, float)})
    if "send_at" not in body:
        raise ApiProblem(400, "invalid-request", "give 'send_at', the batch's new time", field="send_at")
    result = _gateway().reschedule_batch(submission_id, body["send_at"])
    _audit("batch.reschedule", f"submission {submission_id}", {"send_at": _iso(result["due_at"]),
                                                               "messages": len(result["ids"])})
    return {"submission_id": submission_id, "send_at": _iso(result["due_at"]), "count": len(result["ids"]),
            "message_ids": result["ids"]}


@api.post("/submissions/<id:submission_id>/cancel")
@requires("send")
def cancel_submission(submission_id: int):
    """Cancel every message of a batch that is not yet sending (queued or scheduled)."""
    result = _gateway().cancel_submission(submission_id)
    if not result["canceled"]:
        now = ", ".join(f"{count} {status}" for status, count in sorted(result["statuses"].items())) or "none"
        raise ApiProblem(409, "conflict", f"submission {submission_id} has no queued or scheduled message left to "
                                          f"cancel (its messages: {now})")
    _audit("batch.cancel", f"submission {submission_id}", {"messages": len(result["canceled"])})
    return {"submission_id": submission_id, "count": len(result["canceled"]), "message_ids": result["canceled"],
            "statuses": result["statuses"]}


# --- modems ---------------------------------------------------------------------------------------------------

@api.get("/modems")
@requires("read")
def list_modems():
    return {"data": [modem_view(row) for row in _gateway().modems_now()]}


@api.get("/modems/<id:modem_id>")
@requires("read")
def get_modem(modem_id: int):
    return modem_view(_gateway().modem_now(modem_id))


@api.patch("/modems/<id:modem_id>")
@requires("admin")
def update_modem(modem_id: int):
    body = _json_body()
    _check_fields(body, {"enabled": (bool,), "label": (str,), "group": (str,), "rate_per_minute": (int,),
                         "quota_day": (int,), "quota_month": (int,)},
                  nullable=("rate_per_minute", "quota_day", "quota_month", "group"))
    before = modem_view(_gateway().modem_now(modem_id))
    target = f"modem {before['label']} (#{modem_id})"
    try:
        after = modem_view(_gateway().update_modem(modem_id, **body))
    except SubmitError as error:
        _audit("modem.update", target, {"error": error.detail}, ok=False)
        raise
    changes = {name: [_modem_field(before, name), _modem_field(after, name)] for name in body
               if _modem_field(before, name) != _modem_field(after, name)}
    _audit("modem.update", target, {"changes": changes})
    return after


def _modem_field(view: dict, name: str) -> Any:
    """A settable field of a modem as `modem_view` shows it (the limits are nested)."""
    return view.get("limits", {}).get(name) if name in ("rate_per_minute", "quota_day", "quota_month") \
        else view.get(name)


@api.post("/modems/<id:modem_id>/ussd")
@requires("ussd")
def ussd(modem_id: int):
    body = _json_body()
    _check_fields(body, {"code": (str,)})
    code = body.get("code", "")
    reply = _gateway().ussd(modem_id, code, admin=g.api_key.allows("admin"), by=f"API key {g.api_key.name}",
                            actor=f"key {g.api_key.name} (#{g.api_key.id})", source=request.remote_addr or "unknown")
    return {"code": code, "status": reply.status, "text": reply.text}


@api.post("/modems/<id:modem_id>/at")
@requires("admin")
def at_command(modem_id: int):
    body = _json_body()
    _check_fields(body, {"command": (str,), "timeout": (int, float)})
    command = body.get("command", "").strip()
    reply = _gateway().at_command(modem_id, command, timeout=float(body.get("timeout", 10)),
                                  by=f"API key {g.api_key.name}", key=g.api_key.name,
                                  actor=f"key {g.api_key.name} (#{g.api_key.id})",
                                  source=request.remote_addr or "unknown")
    return {"command": command, "lines": reply.lines, "final": reply.final,
            "elapsed_ms": round(reply.elapsed * 1000, 1)}


# --- inbox and opt-outs ----------------------------------------------------------------------------------------

@api.get("/inbox")
@requires("read")
def list_inbox():
    args = request.args
    limit, cursor = _page_args(args)
    return _page(functools.partial(_gateway().inbox, sender=args.get("from") or None), limit, cursor, inbox_view)


@api.get("/inbox/<id:inbox_id>")
@requires("read")
def get_inbox(inbox_id: int):
    return inbox_view(_gateway().inbox_message(inbox_id))


@api.post("/inbox/<id:inbox_id>/reply")
@requires("send")
def reply_inbox(inbox_id: int):
    """Answer an inbound message: to its sender, from the SIM it came to (while that SIM can send)."""
    body = _json_body()
    fields = {name: SUBMIT_FIELDS[name] for name in ("body", "message", "template", "priority", "client_ref",
                                                      "callback_url", "request_report", "spintax", "smart_encoding")}
    _check_fields(body, fields, nullable=fields)
    _gateway().inbox_message(inbox_id)  # 404 when there is none
    return _gateway().send(SubmitRequest(
        body.get("body", body.get("message")), reply_to=inbox_id, template=body.get("template"),
        priority=body.get("priority", 0), client_ref=body.get("client_ref"),
        idempotency_key=request.headers.get("Idempotency-Key"), spintax=body.get("spintax", False),
        smart_encoding=body.get("smart_encoding", False), api_key_id=g.api_key.id, key_group=g.api_key.group,
        callback_url=body.get("callback_url"), request_report=body.get("request_report", True))), 202


@api.delete("/inbox/<id:inbox_id>")
@requires("send")
def delete_inbox(inbox_id: int):
    _gateway().delete_inbox_message(inbox_id)
    return "", 204


@api.get("/optouts")
@requires("read")
def list_optouts():
    return {"data": [optout_view(row) for row in _gateway().optouts()]}


@api.post("/optouts")
@requires("send")
def add_optout():
    body = _json_body()
    _check_fields(body, {"number": (str,), "note": (str,)})
    try:
        number, created = _gateway().opt_out(body.get("number", ""), "api", body.get("note"))
    except SubmitError as error:
        _audit("optout.add", body.get("number", "")[:40], {"error": error.detail}, ok=False)
        raise
    _audit("optout.add", number, {"created": created, "note": body.get("note")})
    return {"number": number, "created": created}, 201 if created else 200


@api.delete("/optouts/<path:number>")
@requires("send")
def remove_optout(number: str):
    try:
        normalized = _gateway().opt_in(number)
    except (SubmitError, NotFound) as error:
        _audit("optout.remove", number[:40], {"error": getattr(error, "detail", None) or str(error)}, ok=False)
        raise
    _audit("optout.remove", normalized)
    return "", 204


# --- webhooks -------------------------------------------------------------------------------------------------

@api.get("/webhooks")
@requires("admin")
def list_webhooks():
    gateway = _gateway()
    return {"data": [webhook_view(row) for row in gateway.webhooks()], "callback_secret": gateway.callback_secret()}


@api.post("/webhooks")
@requires("admin")
def create_webhook():
    body = _json_body()
    _check_fields(body, {"url": (str,), "events": (list,)})
    if "url" not in body:
        raise ApiProblem(400, "invalid-request", "'url' is missing", field="url")
    row = _gateway().create_webhook(body["url"], body.get("events") or ["*"])
    _audit("webhook.create", f"webhook {row['id']}", {"url": row["url"], "events": row["events"]})
    return webhook_view(row, secret=True), 201


@api.patch("/webhooks/<id:webhook_id>")
@requires("admin")
def update_webhook(webhook_id: int):
    """Change a subscription's `url`, `events` or `enabled` (the fields given); checked like a new one. A disabled
    subscription gets no new deliveries; its pending ones wait until it is enabled again."""
    body = _json_body()
    _check_fields(body, {"url": (str,), "events": (list,), "enabled": (bool,)})
    if not body:
        raise ApiProblem(400, "invalid-request", "give at least one of 'url', 'events', 'enabled'")
    try:
        row, _ = _daemon().webhooks.update(webhook_id, url=body.get("url"), events=body.get("events"),
                                           enabled=body.get("enabled"))
    except urls.UrlError as error:
        raise ApiProblem(400, "invalid-request", str(error), field="url") from None
    except ValueError as error:
        raise ApiProblem(400, "invalid-request", str(error), field="events") from None
    _audit("webhook.update", f"webhook {webhook_id}", body)
    return webhook_view(row)


@api.delete("/webhooks/<id:webhook_id>")
@requires("admin")
def delete_webhook(webhook_id: int):
    _gateway().delete_webhook(webhook_id)
    _audit("webhook.delete", f"webhook {webhook_id}")
    return "", 204


@api.get("/webhooks/<id:webhook_id>/deliveries")
@requires("admin")
def webhook_deliveries(webhook_id: int):
    """A subscription's deliveries, newest first, a page at a time (`cursor`: the previous page's `next_cursor`),
    only those in `status` (pending, delivered, dead) when given."""
    from modemgw.webhooks import DELIVERY_STATUSES

    status = request.args.get("status") or None
    if status is not None and status not in DELIVERY_STATUSES:
        raise ApiProblem(400, "invalid-request", f"'status' must be one of {', '.join(DELIVERY_STATUSES)}",
                         field="status")
    limit, cursor = _page_args(request.args)
    return _page(functools.partial(_daemon().webhooks.deliveries, webhook_id, status=status), limit, cursor,
                 delivery_view)


@api.post("/webhooks/<id:webhook_id>/retry")
@requires("admin")
def retry_webhook(webhook_id: int):
    """Every pending delivery of a subscription due now (after its receiver was fixed): how many."""
    try:
        count = _daemon().webhooks.retry_pending(webhook_id)
    except NotFound as error:
        _audit("webhook.retry", f"webhook {webhook_id}", {"error": str(error)}, ok=False)
        raise
    _audit("webhook.retry", f"webhook {webhook_id}", {"pending": count})
    return {"webhook_id": webhook_id, "pending": count}, 202


@api.post("/webhooks/<id:webhook_id>/redeliver-dead")
@requires("admin")
def redeliver_dead(webhook_id: int):
    """Every dead delivery of a subscription queued again, due now, its attempts starting over: how many."""
    try:
        count = _daemon().webhooks.redeliver_dead(webhook_id)
    except NotFound as error:
        _audit("webhook.redeliver_dead", f"webhook {webhook_id}", {"error": str(error)}, ok=False)
        raise
    _audit("webhook.redeliver_dead", f"webhook {webhook_id}", {"requeued": count})
    return {"webhook_id": webhook_id, "requeued": count}, 202


@api.post("/webhooks/<id:webhook_id>/deliveries/<id:delivery_id>/redeliver")
@requires("admin")
def redeliver(webhook_id: int, delivery_id: int):
    row = _daemon().webhooks.redeliver(webhook_id, delivery_id)
    _audit("webhook.redeliver", f"webhook {webhook_id}", {"delivery_id": delivery_id})
    return delivery_view(row), 202


# --- cloud-style compatibility ---------------------------------------------------------------------------------

@compat.post("/send")
@requires("send")
def send_compat():
    """`{"to", "message"}` -> `{"message_id", "status"}`, as common cloud SMS APIs answer."""
    result = _submit(_json_body(), g.api_key)
    if not result["messages"]:
        skipped = result["skipped"][0] if result["skipped"] else {"to": "?", "reason": "no recipient"}
        raise ApiProblem(422, "invalid-request", f"{skipped['to']}: {skipped['reason']}", field="to")
    first = result["messages"][0]
    response = {"message_id": first["id"], "status": first["status"]}
    if len(result["messages"]) > 1:
        response["message_ids"] = [message["id"] for message in result["messages"]]
    return response, 202


# --- errors ---------------------------------------------------------------------------------------------------

def register_errors(app: Flask) -> None:
    @app.errorhandler(ApiProblem)
    def on_problem(error: ApiProblem):
        return problem(error.status, error.kind, error.detail, **error.extra)

    @app.errorhandler(Conflict)
    def on_conflict(error: Conflict):
        return problem(409, "idempotency-conflict", error.detail, field=error.field)

    @app.errorhandler(SubmitError)
    def on_submit_error(error: SubmitError):
        status = {"forbidden": 403, "conflict": 409}.get(error.kind, 400)
        return problem(status, error.kind, error.detail, field=error.field, recipient=error.recipient)

    @app.errorhandler(ModemRequestError)
    def on_modem_request_error(error: ModemRequestError):
        if error.reason == "unattached":
            return problem(409, "conflict", error.detail)
        return problem(504 if error.reason == "timeout" else 502, "modem-error", error.detail)

    @app.errorhandler(NotFound)
    def on_not_found(error: NotFound):
        return problem(404, "not-found", str(error))

    @app.errorhandler(DataConflict)
    def on_data_conflict(error: DataConflict):
        # a rule of the data (a taken name), not the storage: retrying cannot help
        return problem(409, "conflict", str(error))

    @app.errorhandler(StoreError)
    def on_store_error(error: StoreError):
        return storage_problem(error)  # the store logs when writes start failing and when they work again

    @app.errorhandler(HTTPException)
    def on_http_error(error: HTTPException):
        kind = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large",
                400: "invalid-request"}.get(error.code or 400, "invalid-request")
        detail = error.description or error.name
        if error.code == 404:
            detail = f"no such endpoint: {request.method} {request.path}"
        elif error.code == 413:
            detail = f"the body is larger than {current_app.config['MAX_CONTENT_LENGTH'] // 1024} KiB"
        response = problem(error.code or 400, kind, detail)
        for name, value in error.get_headers():  # 405's Allow (RFC 9110 15.5.6), 401's WWW-Authenticate, ...
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def on_unexpected(error: Exception):
        current_app.logger.exception("unexpected error on %s %s", request.method, request.path)
        return problem(500, "internal-error", "the gateway failed on this request; the error is in its log")


# Routes of other subjects register on `api`, defined above: imported last.
from modemgw import api_alerts, api_audit, api_book, api_legacy, api_rules, api_stats, api_templates  # noqa: E402,F401
