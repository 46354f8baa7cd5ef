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

from flask import Blueprint, Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from modemgw import at, text
from modemgw.auth import ApiKey, Authenticator, AuthError
from modemgw.gateway import REPORT_MODES, Conflict, SubmitError
from modemgw.store import Conflict as DataConflict, Duplicate, NotFound, StoreError

api = Blueprint("api", __name__, url_prefix="/api/v1")
compat = Blueprint("compat", __name__)

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
    def __init__(self, status: int, kind: str, detail: str, **extra: Any):
        super().__init__(detail)
        self.status, self.kind, self.detail, self.extra = status, kind, detail, extra


def problem(status: int, kind: str, detail: str, **extra: Any) -> Response:
    body = {"type": f"urn:modemgw:problem:{kind}", "title": PROBLEM_TITLES.get(kind, kind), "status": status,
            "detail": detail, **{key: value for key, value in extra.items() if value is not None}}
    response = Response(json.dumps(body, ensure_ascii=False), status=status, mimetype="application/problem+json")
    return response


def storage_problem(error: StoreError) -> Response:
    """503 with Retry-After: the database is full, locked or failing (`reason` is StoreError.kind)."""
    stored = "" if request.method in ("GET", "HEAD") else "nothing was stored; "
    response = problem(503, "storage-error", f"{error}; {stored}try again in {STORAGE_RETRY_AFTER} s",
                       reason=error.kind, retry_after=STORAGE_RETRY_AFTER)
    response.headers["Retry-After"] = str(STORAGE_RETRY_AFTER)
    return response


def _daemon():
    return current_app.extensions["modemgw"]


def _iso(value: float | None) -> str | None:
    if value is None:
        return None
    return dt.datetime.fromtimestamp(value, dt.UTC).isoformat().replace("+00:00", "Z")


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
MAX_LABEL = 40  # characters of a modem's label or group (as the web UI has it)


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
}


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
    return _daemon().gateway.submit(
        body.get("body", body.get("message")), body.get("to"), recipients=body.get("recipients"),
        priority=body.get("priority", 0), send_at=body.get("send_at"), validity=body.get("validity"),
        route=body.get("modem") or body.get("group"), client_ref=body.get("client_ref"),
        idempotency_key=request.headers.get("Idempotency-Key"), spintax=body.get("spintax", False),
        smart_encoding=body.get("smart_encoding", False), api_key_id=key.id, key_group=key.group,
        callback_url=callback, request_report=body.get("request_report", True))


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


def message_view(row: dict, detail: bool = False) -> dict:
    view = {
        "id": row["id"], "to": row["recipient"], "body": row["body"], "status": row["status"],
        "segments": row["segments"], "encoding": row["encoding"], "priority": row["priority"],
        "client_ref": row["client_ref"], "modem_id": row["modem_id"], "created_at": _iso(row["created_at"]),
        "send_at": _iso(row["due_at"]) if row["status"] == "scheduled" else None,
        "expires_at": _iso(row["expires_at"]), "sent_at": _iso(row["sent_at"]),
        "delivered_at": _iso(row["delivered_at"]), "report": row["report"],
        "error": {"code": row["error_code"], "reason": row["error_reason"]} if row["error_reason"] else None,
        "possible_duplicate": bool(row["possible_duplicate"]), "attempts": row["attempts"],
        "callback_url": row["callback_url"],
    }
    if detail:
        view["parts"] = [{"seq": part["seq"], "modem_id": part["modem_id"], "reference": part["tp_mr"],
                          "sent_at": _iso(part["sent_at"]), "report": part["report_status"],
                          "report_code": part["report_code"], "report_at": _iso(part["report_at"])}
                         for part in row.get("parts", [])]
        view["timeline"] = [{"at": _iso(event["at"]), "event": event["kind"], "modem_id": event["modem_id"],
                             **({"detail": event["detail"]} if event["detail"] else {})}
                            for event in row.get("timeline", [])]
    return view


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


@api.get("/messages")
@requires("read")
def list_messages():
    args = request.args
    limit, cursor = _page_args(args)
    filters: dict[str, Any] = {}
    for name in ("status", "client_ref"):
        if args.get(name):
            filters[name] = args[name]
    if args.get("modem"):
        filters["modem_id"] = _whole(args, "modem")
    if args.get("to"):
        filters["recipient"] = args["to"]
    for name in ("since", "until"):
        if args.get(name):
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
    return _page(functools.partial(_daemon().store.recent_messages, **filters), limit, cursor, message_view)


@api.get("/messages/<id:message_id>")
@requires("read")
def get_message(message_id: int):
    return message_view(_daemon().gateway.message(message_id), detail=True)


@api.delete("/messages/<id:message_id>")
@requires("send")
def cancel_message(message_id: int):
    status = _daemon().gateway.cancel(message_id)
    if status != "canceled":
        raise ApiProblem(409, "conflict", f"message {message_id} is {status}; only queued or scheduled messages "
                                          "can be canceled")
    return {"id": message_id, "status": status}


# --- modems ---------------------------------------------------------------------------------------------------

def _modem_view(row: dict) -> dict:
    daemon = _daemon()
    try:
        worker = daemon.pool.worker(row["id"])
        state = worker.state
    except KeyError:
        state = "offline"
    return {"id": row["id"], "label": row["label"], "group": row["grp"], "state": state,
            "enabled": bool(row["enabled"]), "imei": row["imei"], "iccid": row["iccid"], "imsi": row["imsi"],
            "number": row["number"], "manufacturer": row["manufacturer"], "model": row["model"],
            "profile": row["profile"], "device": row["device"], "operator": row["operator"],
            "signal_dbm": row["signal_dbm"], "registration": row["registration"],
            "limits": {"rate_per_minute": row["rate_per_minute"], "quota_day": row["quota_day"],
                       "quota_month": row["quota_month"]},
            "sent_today": row["sent_day"] if row["day_key"] == dt.date.today().isoformat() else 0,
            "sent_total": row["sent_total"], "failed_total": row["failed_total"],
            "delivered_total": row["delivered_total"], "last_error": row["last_error"],
            "reports": REPORT_MODES.get(row["report_mode"] or ""), "last_seen": _iso(row["last_seen"])}


@api.get("/modems")
@requires("read")
def list_modems():
    return {"data": [_modem_view(row) for row in _daemon().store.modems()]}


@api.get("/modems/<id:modem_id>")
@requires("read")
def get_modem(modem_id: int):
    return _modem_view(_daemon().store.modem(modem_id))


@api.patch("/modems/<id:modem_id>")
@requires("admin")
def update_modem(modem_id: int):
    body = _json_body()
    _check_fields(body, {"enabled": (bool,), "label": (str,), "group": (str,), "rate_per_minute": (int,),
                         "quota_day": (int,), "quota_month": (int,)},
                  nullable=("rate_per_minute", "quota_day", "quota_month", "group"))
    for name in ("rate_per_minute", "quota_day", "quota_month"):
        if body.get(name) is not None and not 1 <= body[name] <= 1_000_000_000:
            raise ApiProblem(400, "invalid-request", f"'{name}' must be from 1 to 1000000000 (null removes the "
                                                     "limit)", field=name)
    if "label" in body and not 0 < len(body["label"].strip()) <= MAX_LABEL:
        raise ApiProblem(400, "invalid-request", f"'label' must be 1 to {MAX_LABEL} characters", field="label")
    if "group" in body and body["group"] is not None and len(body["group"]) > MAX_LABEL:
        raise ApiProblem(400, "invalid-request", f"'group' must be at most {MAX_LABEL} characters", field="group")
    fields = {("grp" if name == "group" else name): (int(value) if isinstance(value, bool) else value)
              for name, value in body.items()}
    daemon = _daemon()
    try:
        row = daemon.store.update_modem(modem_id, **fields)
    except Duplicate:  # the only unique field one may set here is the label
        raise ApiProblem(409, "conflict", f"another modem is already labelled {body.get('label')!r}",
                         field="label") from None
    try:
        daemon.pool.refresh(modem_id)
    except KeyError:
        pass
    return _modem_view(row)


def at_command_problem(command: str) -> str | None:
    """Why `command` may not go to a modem from the API or the UI console, or None when it may. Judged as the modem
    reads it (spaces dropped, any case: `at+cm gs=20` is AT+CMGS=20)."""
    from modemgw.at import normalize_command

    if len(command) > 512:
        return "'command' is longer than 512 characters"
    upper = normalize_command(command)
    if not upper.startswith("AT") or any(char < " " or char == "\x7f" for char in command):
        return "'command' must be one AT command line, e.g. AT+CSQ"
    if any(name in upper for name in ("+CMGS", "+CMGW", "+CMSS", "+CMGC")) or _cnma_with_pdu(upper):
        return "commands that wait for a '> ' prompt (or send) are not available here; use the messages API"
    return None


def _cnma_with_pdu(normal: str) -> bool:
    """`AT+CNMA=<n>,<length>`: an acknowledgement that carries a PDU, after a prompt."""
    position = normal.find("+CNMA=")
    if position < 0:
        return False
    params = normal[position + len("+CNMA="):].split(";")[0].split(",")
    return len(params) > 1 and params[1] != ""


def _run_on_modem(modem_id: int, function, what: str):
    from modemgw.errors import ModemError

    daemon = _daemon()
    daemon.store.modem(modem_id)
    try:
        return daemon.pool.run_on(modem_id, function, timeout=60)
    except KeyError:
        raise ApiProblem(409, "conflict", f"modem {modem_id} is not attached to this gateway") from None
    except ModemError as error:
        raise ApiProblem(502, "modem-error", f"{what}: {error}") from None
    except TimeoutError:
        raise ApiProblem(504, "modem-error", f"{what}: the modem did not answer in time") from None


@api.post("/modems/<id:modem_id>/ussd")
@requires("ussd")
def ussd(modem_id: int):
    body = _json_body()
    _check_fields(body, {"code": (str,)})
    code = body.get("code", "")
    refusal = _daemon().gateway.ussd_problem(code, admin=g.api_key.allows("admin"))
    if refusal:
        raise ApiProblem(403 if "ussd_allow" in refusal else 400, "forbidden" if "ussd_allow" in refusal
                         else "invalid-request", refusal, field="code")
    reply = _run_on_modem(modem_id, lambda modem: modem.ussd(code), f"USSD {code}")
    _daemon().store.log_event("modem.ussd", modem_id=modem_id, code=code, status=reply.status,
                              by=f"API key {g.api_key.name}")
    return {"code": code, "status": reply.status, "text": reply.text}


@api.post("/modems/<id:modem_id>/at")
@requires("admin")
def at_command(modem_id: int):
    body = _json_body()
    _check_fields(body, {"command": (str,), "timeout": (int, float)})
    command = body.get("command", "").strip()
    problem_text = at_command_problem(command)
    if problem_text:
        raise ApiProblem(400, "invalid-request", problem_text, field="command")
    timeout = min(60.0, float(body.get("timeout", 10)))
    reply = _run_on_modem(modem_id, lambda modem: modem.raw(command, timeout), command)
    _daemon().store.log_event("modem.at_command", modem_id=modem_id, command=at.redact(command), final=reply.final,
                              key=g.api_key.name, by=f"API key {g.api_key.name}")
    return {"command": command, "lines": reply.lines, "final": reply.final,
            "elapsed_ms": round(reply.elapsed * 1000, 1)}


# --- inbox and opt-outs ----------------------------------------------------------------------------------------

def _inbox_view(row: dict) -> dict:
    return {"id": row["id"], "from": row["sender"], "body": row["body"], "modem_id": row["modem_id"],
            "sent_at": _iso(row["sent_at"]), "received_at": _iso(row["received_at"]), "parts": row["parts"],
            "partial": bool(row["partial"]), "read": bool(row["read"])}


@api.get("/inbox")
@requires("read")
def list_inbox():
    args = request.args
    limit, cursor = _page_args(args)
    return _page(functools.partial(_daemon().store.inbox, sender=args.get("from") or None), limit, cursor,
                 _inbox_view)


@api.get("/inbox/<id:inbox_id>")
@requires("read")
def get_inbox(inbox_id: int):
    return _inbox_view(_daemon().store.inbox_message(inbox_id))


@api.delete("/inbox/<id:inbox_id>")
@requires("send")
def delete_inbox(inbox_id: int):
    _daemon().store.delete_inbox_message(inbox_id)
    return "", 204


@api.get("/optouts")
@requires("read")
def list_optouts():
    return {"data": [{"number": row["number"], "source": row["source"], "note": row["note"],
                      "created_at": _iso(row["created_at"])} for row in _daemon().store.optouts()]}


@api.post("/optouts")
@requires("send")
def add_optout():
    from modemgw import numbers

    body = _json_body()
    _check_fields(body, {"number": (str,), "note": (str,)})
    try:
        number = numbers.normalize(body.get("number", ""), _daemon().gateway.settings.default_region)
    except numbers.NumberError as error:
        raise ApiProblem(400, "invalid-request", str(error), field="number") from None
    created = _daemon().store.add_optout(number, "api", body.get("note"))
    return {"number": number, "created": created}, 201 if created else 200


@api.delete("/optouts/<path:number>")
@requires("send")
def remove_optout(number: str):
    from modemgw import numbers

    try:
        normalized = numbers.normalize(number, _daemon().gateway.settings.default_region)
    except numbers.NumberError as error:
        raise ApiProblem(400, "invalid-request", str(error), field="number") from None
    if not _daemon().store.remove_optout(normalized):
        raise NotFound(f"{normalized} is not on the opt-out list")
    return "", 204


# --- webhooks -------------------------------------------------------------------------------------------------

def _webhook_view(row: dict, secret: bool = False) -> dict:
    view = {"id": row["id"], "url": row["url"], "events": row["events"].split(","), "enabled": bool(row["enabled"]),
            "created_at": _iso(row["created_at"])}
    if secret:
        view["secret"] = row["secret"]
    return view


def _delivery_view(row: dict) -> dict:
    return {"id": row["id"], "event": row["event"], "event_id": row["event_id"], "message_id": row["message_id"],
            "status": row["status"], "attempts": row["attempts"], "next_attempt_at": _iso(row["next_attempt_at"]),
            "last_status_code": row["last_status_code"], "last_error": row["last_error"],
            "created_at": _iso(row["created_at"]), "delivered_at": _iso(row["delivered_at"])}


@api.get("/webhooks")
@requires("admin")
def list_webhooks():
    from modemgw import webhooks

    return {"data": [_webhook_view(row) for row in webhooks.webhooks(_daemon().store)],
            "callback_secret": webhooks.callback_secret(_daemon().store)}


@api.post("/webhooks")
@requires("admin")
def create_webhook():
    from modemgw import urls, webhooks

    body = _json_body()
    _check_fields(body, {"url": (str,), "events": (list,)})
    if "url" not in body:
        raise ApiProblem(400, "invalid-request", "'url' is missing", field="url")
    try:
        row = webhooks.create_webhook(_daemon().store, body["url"], body.get("events") or ["*"])
    except urls.UrlError as error:  # checked in full: a bad URL must never reach the outbox
        raise ApiProblem(400, "invalid-request", str(error), field="url") from None
    except ValueError as error:
        raise ApiProblem(400, "invalid-request", str(error), field="events") from None
    return _webhook_view(row, secret=True), 201


@api.delete("/webhooks/<id:webhook_id>")
@requires("admin")
def delete_webhook(webhook_id: int):
    from modemgw import webhooks

    webhooks.delete_webhook(_daemon().store, webhook_id)
    return "", 204


@api.get("/webhooks/<id:webhook_id>/deliveries")
@requires("admin")
def webhook_deliveries(webhook_id: int):
    from modemgw import webhooks

    return {"data": [_delivery_view(row) for row in webhooks.deliveries(_daemon().store, webhook_id)]}


@api.post("/webhooks/<id:webhook_id>/deliveries/<id:delivery_id>/redeliver")
@requires("admin")
def redeliver(webhook_id: int, delivery_id: int):
    return _delivery_view(_daemon().webhooks.redeliver(webhook_id, delivery_id)), 202


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
        return problem(400, error.kind, error.detail, field=error.field, recipient=error.recipient)

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
