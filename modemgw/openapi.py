"""The OpenAPI 3.1 description of the HTTP API, served at `/openapi.json` (tests check responses against it)."""

from __future__ import annotations

from modemgw import __version__
from modemgw.webhooks import EVENTS

STATUSES = ["scheduled", "queued", "sending", "sent", "delivered", "undelivered", "failed", "expired", "canceled"]


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict) -> dict:
    kind = schema.get("type")
    if kind:
        return {**schema, "type": [kind, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


TIME = {"type": "string", "format": "date-time"}
PROBLEM = {"application/problem+json": {"schema": _ref("Problem")}}


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _errors(*codes: int) -> dict:
    text = {400: "Invalid request", 401: "No valid API key", 403: "The key lacks the scope", 404: "Not found",
            409: "Conflict", 413: "Body too large", 415: "Body is not JSON", 429: "Rate limited (Retry-After)",
            502: "The modem failed", 503: "Storage unavailable (Retry-After)", 504: "The modem did not answer"}
    return {str(code): {"description": text[code], "content": PROBLEM} for code in codes}


AUTH = (401, 403, 429)


def _op(summary: str, scope: str | None, responses: dict, body: dict | None = None, parameters: list | None = None,
        errors: tuple = ()) -> dict:
    operation: dict = {"summary": summary, "responses": {**responses, **_errors(*(AUTH if scope else ()), *errors)}}
    if scope:
        operation["security"] = [{"bearer": []}]
        operation["description"] = f"Needs the `{scope}` scope (or `admin`)."
    if body is not None:
        operation["requestBody"] = {"required": True, "content": _json(body)}
    if parameters:
        operation["parameters"] = parameters
    return operation


def _path_id(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "integer"}}


def _query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _list(item: str) -> dict:
    return {"type": "object", "required": ["data", "next_cursor"],
            "properties": {"data": {"type": "array", "items": _ref(item)},
                           "next_cursor": {"type": ["integer", "null"]}}}


SCHEMAS = {
    "Problem": {"type": "object", "required": ["type", "title", "status", "detail"], "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "field": {"type": "string"}, "recipient": {"type": "string"},
        "retry_after": {"type": "integer"},
        "reason": {"type": "string", "description": "storage errors: full, locked, io, readonly, corrupt, error"}}},
    "SubmitRequest": {"type": "object", "additionalProperties": False, "properties": {
        "to": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 10000}]},
        "recipients": {"type": "array", "maxItems": 10000, "items": {"anyOf": [
            {"type": "object", "required": ["to"], "properties": {"to": {"type": "string"},
                                                                   "fields": {"type": "object"}}},
            {"type": "object", "required": ["group"], "properties": {"group": {"type": "string"}},
             "description": "every member of an address-book group"},
            {"type": "object", "required": ["contact"], "properties": {"contact": {"type": "integer"}},
             "description": "an address-book contact"}]}},
        "groups": {"type": "array", "items": {"type": "string"},
                   "description": "address-book groups: each member gets the message, its name and fields fill "
                                  "{placeholders}"},
        "contacts": {"type": "array", "items": {"type": "integer"}, "description": "address-book contact ids"},
        "template": {"oneOf": [{"type": "integer"}, {"type": "string"}],
                     "description": "a saved template (id or name) as the body"},
        "reply_to": {"type": "integer", "description": "an inbound message's id: the message goes to its sender, "
                                                       "from the SIM it came to while that SIM can send"},
        "body": {"type": "string"}, "message": {"type": "string", "description": "alias of body"},
        "priority": {"type": "integer", "minimum": -100, "maximum": 100},
        "send_at": {"oneOf": [TIME, {"type": "number"}]}, "validity": {"type": "integer", "minimum": 1},
        "modem": {"type": "string"}, "group": {"type": "string"}, "client_ref": {"type": "string"},
        "callback_url": {"type": "string", "format": "uri"}, "spintax": {"type": "boolean"},
        "smart_encoding": {"type": "boolean"}, "request_report": {"type": "boolean"}}},
    "SubmitResult": {"type": "object", "required": ["submission_id", "messages", "skipped", "segments"],
                     "properties": {
                         "submission_id": {"type": "integer"}, "segments": {"type": "integer"},
                         "idempotent_replay": {"type": "boolean"},
                         "messages": {"type": "array", "items": {"type": "object", "required": [
                             "id", "to", "status", "segments", "encoding"], "properties": {
                             "id": {"type": "integer"}, "to": {"type": "string"}, "status": {"enum": STATUSES},
                             "segments": {"type": "integer"}, "encoding": {"enum": ["gsm7", "ucs2"]}}}},
                         "skipped": {"type": "array", "items": {"type": "object", "properties": {
                             "to": {"type": "string"}, "reason": {"type": "string"}}}}}},
    "Message": {"type": "object", "required": ["id", "to", "body", "status", "segments", "encoding"], "properties": {
        "id": {"type": "integer"}, "to": {"type": "string"}, "body": {"type": "string"},
        "status": {"enum": STATUSES}, "segments": {"type": "integer"}, "encoding": {"enum": ["gsm7", "ucs2"]},
        "priority": {"type": "integer"}, "client_ref": {"type": ["string", "null"]},
        "modem_id": {"type": ["integer", "null"]}, "created_at": TIME, "send_at": _nullable(TIME),
        "preferred_modem_id": {"type": ["integer", "null"], "description": "the SIM it was meant to leave from "
                                                                            "(when modem_id differs, that SIM could "
                                                                            "not send)"},
        "reply_to": {"type": ["integer", "null"], "description": "the inbound message it answers"},
        "expires_at": _nullable(TIME), "sent_at": _nullable(TIME), "delivered_at": _nullable(TIME),
        "report": {"type": ["string", "null"]}, "possible_duplicate": {"type": "boolean"},
        "attempts": {"type": "integer"}, "callback_url": {"type": ["string", "null"]},
        "error": _nullable({"type": "object", "properties": {"code": {"type": ["integer", "null"]},
                                                               "reason": {"type": "string"}}}),
        "parts": {"type": "array", "items": {"type": "object"}},
        "timeline": {"type": "array", "items": {"type": "object"}}}},
    "MessageUpdate": {"type": "object", "additionalProperties": False, "minProperties": 1, "properties": {
        "send_at": {"oneOf": [TIME, {"const": "now"}, {"type": "number"}], "description": "the new time (one more "
                    "than a minute past is refused: 400), or \"now\" to send at once"},
        "body": {"type": "string", "minLength": 1, "description": "the new text: its encoding and segments are "
                                                                  "recomputed, at most the gateway's max_segments"}}},
    "Batch": {"type": "object", "required": ["submission_id", "count", "first_send_at", "body"], "properties": {
        "submission_id": {"type": "integer"}, "count": {"type": "integer", "description": "its scheduled messages"},
        "first_send_at": TIME, "last_send_at": TIME, "created_at": TIME,
        "body": {"type": "string", "description": "its first scheduled message's text"},
        "to": {"type": "string", "description": "its first scheduled message's recipient"},
        "api_key_id": {"type": ["integer", "null"]}, "user_id": {"type": ["integer", "null"]}}},
    "BatchChange": {"type": "object", "required": ["submission_id", "count", "message_ids"], "properties": {
        "submission_id": {"type": "integer"}, "count": {"type": "integer"},
        "message_ids": {"type": "array", "items": {"type": "integer"}}, "send_at": TIME,
        "statuses": {"type": "object", "additionalProperties": {"type": "integer"},
                     "description": "how many of its messages are in each status now"}}},
    "Preview": {"type": "object", "required": ["encoding", "characters", "segments"], "properties": {
        "encoding": {"enum": ["gsm7", "ucs2"]}, "characters": {"type": "integer"}, "units": {"type": "integer"},
        "segments": {"type": "integer"}, "per_segment": {"type": "integer"}, "remaining": {"type": "integer"},
        "unicode_characters": {"type": "array", "items": {"type": "string"}},
        "replacements": {"type": "object"}, "text": {"type": "string"}, "variants": {"type": "integer"}}},
    "Modem": {"type": "object", "required": ["id", "label", "state", "enabled"], "properties": {
        "id": {"type": "integer"}, "label": {"type": ["string", "null"]}, "group": {"type": ["string", "null"]},
        "state": {"type": "string"}, "enabled": {"type": "boolean"}, "imei": {"type": ["string", "null"]},
        "iccid": {"type": ["string", "null"]}, "imsi": {"type": ["string", "null"]},
        "number": {"type": ["string", "null"]}, "operator": {"type": ["string", "null"]},
        "signal_dbm": {"type": ["integer", "null"]}, "limits": {"type": "object"},
        "sent_today": {"type": "integer"},
        "reports": {"type": ["string", "null"], "description": "set when the report watchdog changed how this "
                    "modem's status reports arrive, or found that none do"}}},
    "ModemUpdate": {"type": "object", "additionalProperties": False, "properties": {
        "enabled": {"type": "boolean"}, "label": {"type": "string", "minLength": 1}, "group": {"type": "string"},
        "rate_per_minute": {"type": ["integer", "null"], "minimum": 1},
        "quota_day": {"type": ["integer", "null"], "minimum": 1},
        "quota_month": {"type": ["integer", "null"], "minimum": 1}}},
    "Inbound": {"type": "object", "required": ["id", "from", "body"], "properties": {
        "id": {"type": "integer"}, "from": {"type": "string"}, "body": {"type": "string"},
        "modem_id": {"type": ["integer", "null"]}, "sent_at": _nullable(TIME), "received_at": TIME,
        "parts": {"type": "integer"}, "partial": {"type": "boolean"}, "read": {"type": "boolean"}}},
    "OptOut": {"type": "object", "required": ["number"], "properties": {
        "number": {"type": "string"}, "source": {"type": "string"}, "note": {"type": ["string", "null"]},
        "created_at": TIME}},
    "Webhook": {"type": "object", "required": ["id", "url", "events"], "properties": {
        "id": {"type": "integer"}, "url": {"type": "string"},
        "events": {"type": "array", "items": {"enum": [*EVENTS, "*"]}}, "enabled": {"type": "boolean"},
        "secret": {"type": "string", "description": "shown when created"}, "created_at": TIME}},
    "Delivery": {"type": "object", "required": ["id", "event", "status"], "properties": {
        "id": {"type": "integer"}, "event": {"type": "string"}, "event_id": {"type": "string"},
        "message_id": {"type": ["integer", "null"]}, "status": {"enum": ["pending", "delivered", "dead"]},
        "attempts": {"type": "integer"}}},
    # --- schemas: address book ---
    "Contact": {"type": "object", "required": ["id", "name", "number", "fields", "notes", "groups", "opted_out"],
                "properties": {
                    "id": {"type": "integer"}, "name": {"type": "string"},
                    "number": {"type": "string", "description": "E.164"},
                    "fields": {"type": "object", "additionalProperties": {"type": "string"},
                               "description": "free fields: each fills {placeholders} of that name"},
                    "notes": {"type": "string"}, "groups": {"type": "array", "items": {"type": "string"}},
                    "opted_out": {"type": "boolean", "description": "the number is on the opt-out list"},
                    "created_at": TIME, "updated_at": TIME}},
    "ContactInput": {"type": "object", "additionalProperties": False, "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 100}, "number": {"type": "string"},
        "fields": {"type": "object", "maxProperties": 30, "additionalProperties": {"type": "string", "maxLength": 500},
                   "description": "names of 1-40 letters, digits and _ (not name, number, groups, notes)"},
        "notes": {"type": "string", "maxLength": 2000},
        "groups": {"type": "array", "items": {"type": "string"},
                   "description": "group names (a group not there yet is created); on PATCH the contact is in "
                                  "exactly these"}}},
    "Group": {"type": "object", "required": ["id", "name", "description", "members", "opted_out"], "properties": {
        "id": {"type": "integer"}, "name": {"type": "string"}, "description": {"type": "string"},
        "members": {"type": "integer"}, "opted_out": {"type": "integer", "description": "members opted out"},
        "created_at": TIME}},
    "GroupInput": {"type": "object", "additionalProperties": False, "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 60}, "description": {"type": "string"}}},
    "ImportResult": {"type": "object", "required": ["created", "updated", "rejected"], "properties": {
        "created": {"type": "integer"}, "updated": {"type": "integer"},
        "rejected": {"type": "array", "items": {"type": "object", "required": ["line", "reason"], "properties": {
            "line": {"type": "integer", "description": "the file's line where the row or card starts"},
            "reason": {"type": "string"}}}},
        "fields": {"type": "object", "additionalProperties": {"type": "string"},
                   "description": "CSV columns that became free fields, and the field each became"}}},
    # --- schemas: the audit log ---
    "AuditEntry": {"type": "object", "required": ["id", "at", "actor", "action", "ok"], "properties": {
        "id": {"type": "integer"}, "at": TIME,
        "actor": {"type": "string", "description": "who: user alice, key ops (#3), cli, anonymous (a failed login)"},
        "source": {"type": ["string", "null"], "description": "from where: the client's address, console, local"},
        "action": {"type": "string", "description": "login.success, user.disable, key.create, modem.at, ..."},
        "target": {"type": ["string", "null"], "description": "on what: user bob, key ops (#3), modem sim1 (#2)"},
        "detail": {"type": "object", "description": "what was asked (never a password, key or PIN) and, when "
                                                    "refused, why (error)"},
        "ok": {"type": "boolean", "description": "false: refused or failed"}}},
    # --- schemas: templates ---
    "Template": {"type": "object", "required": ["id", "name", "body", "spintax", "placeholders", "segments",
                                                "created_at", "updated_at"], "properties": {
        "id": {"type": "integer"}, "name": {"type": "string"}, "body": {"type": "string"},
        "spintax": {"type": "boolean"},
        "placeholders": {"type": "array", "items": {"type": "string"}, "description": "in order of first use"},
        "segments": {"type": ["integer", "null"], "description": "of the sample (each placeholder filled with its "
                     "name, spintax chosen once): about what one message costs"},
        "encoding": {"enum": ["gsm7", "ucs2", None]}, "sample": {"type": ["string", "null"]},
        "created_at": TIME, "updated_at": TIME}},
    "TemplateNew": {"type": "object", "additionalProperties": False, "required": ["name", "body"], "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 60, "description": "unique, whatever its case"},
        "body": {"type": "string", "minLength": 1, "description": "{placeholders}; with spintax, {a|b} choices"},
        "spintax": {"type": "boolean"}}},
    "TemplateUpdate": {"type": "object", "additionalProperties": False, "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 60}, "body": {"type": "string", "minLength": 1},
        "spintax": {"type": "boolean"}}},
}


# GET /api/v1/stats (modemgw.api_stats): the numbers of a period, a SIM or the whole range (modemgw.statistics)
_STATS_NUMBERS = {
    "sent": {"type": "integer", "description": "left a SIM (sent, delivered or undelivered)"},
    "delivered": {"type": "integer"}, "failed": {"type": "integer", "description": "failed or undelivered"},
    "expired": {"type": "integer"}, "no_report": {"type": "integer", "description": "sent, no report (yet)"},
    "delivery_rate": {"type": ["number", "null"], "description": "delivered / sent"},
    "median_delivery_seconds": {"type": ["number", "null"]},
    "segments": {"type": "integer", "description": "SMS parts the SIMs sent (the cost)"}}
_STATS_ROW = {"type": "object", "required": list(_STATS_NUMBERS), "properties": _STATS_NUMBERS}
STATS = {"type": "object", "required": ["period", "since", "until", "modem_id", "timezone", "totals", "periods",
                                        "sims"], "properties": {
    "period": {"enum": ["day", "week", "month"]}, "since": {"type": "string", "format": "date"},
    "until": {"type": "string", "format": "date"}, "modem_id": {"type": ["integer", "null"]},
    "timezone": {"type": "string"}, "totals": _STATS_ROW,
    "periods": {"type": "array", "items": {**_STATS_ROW, "required": ["start", "end", "label", *_STATS_NUMBERS],
                                           "properties": {"start": {"type": "string", "format": "date"},
                                                          "end": {"type": "string", "format": "date"},
                                                          "label": {"type": "string"}, **_STATS_NUMBERS}}},
    "sims": {"type": "array", "items": {**_STATS_ROW, "required": ["modem_id", "label", *_STATS_NUMBERS],
                                        "properties": {"modem_id": {"type": ["integer", "null"]},
                                                       "label": {"type": "string"}, **_STATS_NUMBERS}}}}}


def _legacy_send() -> dict:
    """GET /api/v1/send (modemgw.api_legacy): the send URL for devices that can only call a URL; plain text."""
    text = {"text/plain": {"schema": {"type": "string"}}}
    errors = {400: "Invalid request (unknown or repeated parameter, bad number, no text)", 401: "No valid key, or a "
              "key in the URL that was not created with --allow-query-token", 403: "The key lacks the send scope",
              409: "Conflict", 414: "Query longer than 32 KiB", 422: "No recipient left (opted out)",
              429: "Rate limited (Retry-After)", 503: "Storage unavailable (Retry-After)"}
    string = {"type": "string"}
    parameters = [
        _query("key", string, "the API key, only one created with --allow-query-token (URLs end up in logs)"),
        _query("token", string, "alias of key"), _query("access_token", string, "alias of key"),
        _query("to", string, "number(s), comma-separated (the parameter may repeat); a literal + is kept"),
        _query("text", string, "the message, URL-encoded (+ or %20 for a space)"),
        _query("message", string, "alias of text"),
        _query("priority", {"type": "integer", "minimum": -100, "maximum": 100}, "higher goes first (default 0)"),
        _query("modem", string, "send from this modem (label)"), _query("group", string, "or this modem group"),
        _query("charset", {"enum": ["utf-8", "iso-8859-1", "windows-1252"]}, "how the text is encoded")]
    return {"get": {
        "summary": "Send from a URL (alarm panels, PLCs, NVRs, printers): plain text OK <id>[,<id>...] or "
                   "ERROR <status> <reason>",
        "description": "Needs the `send` scope. The key may be given in the query only when it was created with "
                       "`--allow-query-token`; the Authorization header works too. One message per recipient; "
                       "after the OK line, one `SKIPPED <number> <reason>` line per recipient that got none.",
        "security": [{"bearer": []}, {"query_key": []}], "parameters": parameters,
        "responses": {"200": {"description": "Queued: OK and the message ids", "content": text},
                      **{str(code): {"description": what, "content": text} for code, what in errors.items()}}}}


def _alert_receivers() -> dict:
    """POST /api/v1/integrations/alertmanager and /grafana (modemgw.api_alerts): alerting systems' webhooks."""
    pairs = {"type": "object", "maxProperties": 256, "additionalProperties": {"type": "string", "maxLength": 32768}}
    string = {"type": "string"}
    alert: dict = {
        "status": {"enum": ["firing", "resolved"]}, "labels": pairs, "annotations": pairs,
        "startsAt": {"type": "string", "maxLength": 64}, "endsAt": string, "generatorURL": string,
        "fingerprint": {"type": "string", "maxLength": 128}}
    grafana_alert = {**alert, "values": {"type": ["object", "null"]}, "valueString": string, "silenceURL": string,
                     "dashboardURL": string, "panelURL": string, "imageURL": string}
    fields: dict = {
        "version": string, "groupKey": {"type": "string", "maxLength": 8192},
        "truncatedAlerts": {"type": "integer", "minimum": 0}, "status": {"enum": ["firing", "resolved"]},
        "receiver": {"type": "string", "maxLength": 8192}, "groupLabels": pairs, "commonLabels": pairs,
        "commonAnnotations": pairs, "externalURL": string}

    def payload(items: dict, extra: dict) -> dict:
        return {"type": "object", "required": ["status", "alerts"], "properties": {
            **fields, **extra, "alerts": {"type": "array", "minItems": 1, "items": {"type": "object",
                                                                                   "properties": items},
                                          "description": "the first 1000 are read; more count as left out"}}}

    notification = payload(alert, {})
    grafana = payload(grafana_alert, {"orgId": {"type": "integer"}, "title": string, "state": string,
                                      "message": string})
    result = {"type": "object", "required": ["duplicate", "message_ids"], "properties": {
        "duplicate": {"type": "boolean", "description": "the same notification came within [alerts] "
                                                        "group_interval: nothing was sent now"},
        "message_ids": {"type": "array", "items": {"type": "integer"},
                        "description": "the messages queued (for a duplicate: by its first copy)"},
        "text": {"type": "string", "description": "the SMS text"}, "submission_id": {"type": "integer"},
        "segments": {"type": "integer"}, "first_sent_at": TIME,
        "skipped": {"type": "array", "items": {"type": "object"}, "description": "recipients that got none "
                                                                                 "(opted out)"}}}
    parameters = [
        _query("to", {"type": "string"}, "numbers, comma-separated (may repeat); a literal + is kept"),
        _query("group", {"type": "string"}, "an address-book group (may repeat)")]

    def receiver(summary: str, body: dict) -> dict:
        operation = _op(summary, "send", {
            "202": {"description": "Queued: one SMS per recipient", "content": _json(result)},
            "200": {"description": "A repeat within [alerts] group_interval: nothing sent",
                    "content": _json(result)}},
            body=body, parameters=parameters, errors=(400, 413, 415, 503))
        operation["security"] = [{"bearer": []}, {"basic": []}]
        operation["description"] += (" The key as a bearer token, or as the password of HTTP Basic (any user). "
                                      "Recipients from ?to= and ?group=, else [alerts.receivers] by receiver name.")
        return {"post": operation}

    return {"/api/v1/integrations/alertmanager": receiver(
                "Prometheus Alertmanager's webhook (payload version 4): one SMS per notification", notification),
            "/api/v1/integrations/grafana": receiver(
                "Grafana's webhook contact point (unified alerting): one SMS per notification", grafana)}


def _inbound_rules() -> dict:
    """/api/v1/rules (modemgw.api_rules): inbound rules (admins), and their dry run."""
    from modemgw.rules import ACTIONS, MAX_KEYWORD, MAX_PATTERN, MAX_SENDER, MAX_WINDOW, PLACEHOLDERS

    placeholders = ", ".join("{" + name + "}" for name in PLACEHOLDERS)
    match = {"type": "object", "additionalProperties": False, "description": "every condition given must hold; "
             "none: every message", "properties": {
                 "sim": {"type": ["integer", "null"], "minimum": 1, "description": "a modem's id: the SIM it came to"},
                 "sender": {"type": ["string", "null"], "maxLength": MAX_SENDER,
                            "description": "exact (E.164 or a name), or a prefix ending in * (+4477*)"},
                 "keyword": {"type": ["string", "null"], "maxLength": MAX_KEYWORD,
                             "description": "the text's first word, any case"},
                 "regex": {"type": ["string", "null"], "maxLength": MAX_PATTERN,
                           "description": "searched in the text, any case; no backreferences, lookarounds, nor "
                                          "quantifiers or alternations inside a repeated group"}}}
    action = {"type": "object", "required": ["type"], "additionalProperties": False, "properties": {
        "type": {"enum": list(ACTIONS)},
        "to": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 10}],
               "description": "email: addresses; sms: numbers"},
        "group": {"type": "string", "description": "sms: an address-book group"},
        "subject": {"type": "string", "description": f"email; placeholders {placeholders}"},
        "body": {"type": "string", "description": f"email, sms, autoreply; placeholders {placeholders}"},
        "url": {"type": "string", "description": "webhook: signed like a message's callback_url"},
        "window_minutes": {"type": "integer", "minimum": 1, "maximum": MAX_WINDOW,
                           "description": "autoreply: at most one answer per sender in this time (default 1440)"}}}
    common = {"name": {"type": "string", "minLength": 1, "maxLength": 60}, "enabled": {"type": "boolean"},
              "match": match, "action": action,
              "position": {"type": ["integer", "null"], "minimum": 1, "description": "1: evaluated first"}}
    rule = {"type": "object", "required": ["id", "position", "name", "enabled", "match", "action", "when", "then",
                                           "created_at", "updated_at"], "properties": {
        "id": {"type": "integer"}, "position": {"type": "integer"}, "name": {"type": "string"},
        "enabled": {"type": "boolean"}, "match": {"type": "object"},
        "action": {"type": "object", "required": ["type"], "properties": {"type": {"enum": list(ACTIONS)}}},
        "when": {"type": "string"}, "then": {"type": "string"}, "created_at": TIME, "updated_at": TIME}}
    test_body = {"type": "object", "required": ["from", "text"], "additionalProperties": False, "properties": {
        "from": {"type": "string", "minLength": 1, "maxLength": MAX_SENDER}, "text": {"type": "string"},
        "sim": {"type": ["integer", "null"], "minimum": 1}, "rule_id": {"type": ["integer", "null"], "minimum": 1},
        "rule": {"type": ["object", "null"], "description": "an unsaved rule {name, match, action} to try"}}}
    test_result = {"type": "object", "required": ["keyword", "stopped_by", "results"], "properties": {
        "keyword": {"type": "boolean", "description": "a STOP/START reply: no rule runs"},
        "stopped_by": {"type": ["integer", "null"], "description": "the stop rule that ends the run"},
        "results": {"type": "array", "items": {"type": "object", "required": ["rule", "matched", "reason", "would"],
                                               "properties": {
            "rule": {"type": "object", "required": ["id", "name"], "properties": {
                "id": {"type": ["integer", "null"]}, "name": {"type": "string"},
                "position": {"type": ["integer", "null"]}, "enabled": {"type": "boolean"},
                "when": {"type": "string"}, "then": {"type": "string"}}},
            "matched": {"type": "boolean"}, "reason": {"type": ["string", "null"], "description": "why not"},
            "would": {"type": ["string", "null"], "description": "what it would do (nothing is done)"}}}}}}
    one = _json(rule)
    return {
        "/api/v1/rules": {
            "get": _op("Inbound rules, in the order they are evaluated", "admin", {"200": {
                "description": "Every rule", "content": _json({"type": "object", "required": ["data"], "properties": {
                    "data": {"type": "array", "items": rule}}})}}),
            "post": _op("Add an inbound rule (last, or at position)", "admin", {"201": {"description": "Saved",
                                                                                        "content": one}},
                        body={"type": "object", "required": ["name", "action"], "additionalProperties": False,
                              "properties": common}, errors=(400, 413, 415, 503))},
        "/api/v1/rules/{rule_id}": {
            "parameters": [_path_id("rule_id")],
            "get": _op("An inbound rule", "admin", {"200": {"description": "The rule", "content": one}},
                       errors=(404,)),
            "patch": _op("Change a rule: name, enabled, match or action (each replaced whole), position", "admin", {
                "200": {"description": "Changed", "content": one}},
                body={"type": "object", "additionalProperties": False, "properties": common},
                errors=(400, 404, 413, 415, 503)),
            "delete": _op("Delete an inbound rule", "admin", {"204": {"description": "Deleted"}}, errors=(404, 503))},
        "/api/v1/rules/test": {"post": _op(
            "Dry run: what the rules would do with a message (nothing is sent or recorded)", "admin", {
                "200": {"description": "Each rule: matched or why not, and what it would do",
                        "content": _json(test_result)}}, body=test_body, errors=(400, 404, 413, 415, 503))},
    }


def document() -> dict:
    messages_filters = [
        _query("status", {"enum": STATUSES}, "only messages in this status"),
        _query("to", {"type": "string"}, "recipient in E.164"),
        _query("since", TIME, "created at or after"), _query("until", TIME, "created before"),
        _query("client_ref", {"type": "string"}, "your reference"),
        _query("modem", {"type": "integer"}, "modem id"),
        _query("modem_id", {"type": "integer"}, "modem id (the same as modem)"),
        _query("api_key_id", {"type": "integer"}, "sent with this API key"),
        _query("user_id", {"type": "integer"}, "sent by this web UI user"),
        _query("q", {"type": "string", "maxLength": 100}, "text in the number or the body, or an exact client_ref"),
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "page size (default 50)"),
        _query("cursor", {"type": "integer"}, "next_cursor of the previous page (with q, api_key_id or user_id a "
               "page reads at most 10,000 messages: it may be short, even empty, while next_cursor is set)"),
    ]
    paths = {
        "/health": {"get": _op("Liveness, a modem summary and the database's health", None, {
            "200": {"description": "At least one modem online and the database works",
                    "content": _json({"type": "object"})},
            "503": {"description": "No modem online, or the database fails (see `database`)",
                    "content": _json({"type": "object"})}})},
        "/metrics": {"get": _op("Prometheus metrics", None, {
            "200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}
        })},
        "/send": {"post": _op("Send one SMS, cloud style: {to, message} -> {message_id, status}", "send", {
            "202": {"description": "Accepted", "content": _json({"type": "object", "required": ["message_id",
                                                                                                "status"]})}},
            body=_ref("SubmitRequest"), errors=(400, 409, 413, 415, 503))},
        "/api/v1/send": _legacy_send(),
        "/api/v1/messages": {
            "post": _op("Queue a message to one or many recipients", "send", {
                "202": {"description": "Accepted", "content": _json(_ref("SubmitResult"))}},
                body=_ref("SubmitRequest"), errors=(400, 409, 413, 415, 503)),
            "get": _op("List messages, newest first", "read", {
                "200": {"description": "A page", "content": _json(_list("Message"))}},
                parameters=messages_filters, errors=(400,))},
        "/api/v1/messages/preview": {"post": _op("Encoding, characters and segments of a text; sends nothing",
                                                 "send", {"200": {"description": "Counted",
                                                                  "content": _json(_ref("Preview"))}},
                                                 body={"type": "object", "properties": {
                                                     "body": {"type": "string"}, "message": {"type": "string"},
                                                     "smart_encoding": {"type": "boolean"},
                                                     "spintax": {"type": "boolean"}}},
                                                 errors=(400, 415))},
        "/api/v1/messages/{message_id}": {
            "parameters": [_path_id("message_id")],
            "get": _op("A message with its parts and timeline", "read", {
                "200": {"description": "The message", "content": _json(_ref("Message"))}}, errors=(404,)),
            "delete": _op("Cancel a queued or scheduled message", "send", {
                "200": {"description": "Canceled", "content": _json({"type": "object"})}}, errors=(404, 409)),
            "patch": _op("Change a scheduled message's time or text (the text is checked as a submission's)", "send", {
                "200": {"description": "The message now", "content": _json(_ref("Message"))}},
                body=_ref("MessageUpdate"), errors=(400, 404, 409, 415, 503))},
        "/api/v1/scheduled": {"get": _op("Batches with scheduled messages, the earliest due first", "read", {
            "200": {"description": "A page", "content": _json({
                "type": "object", "required": ["data", "next_offset"], "properties": {
                    "data": {"type": "array", "items": _ref("Batch")},
                    "next_offset": {"type": ["integer", "null"]}}})}}, parameters=[
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "page size (default 50)"),
            _query("offset", {"type": "integer", "minimum": 0}, "next_offset of the previous page")],
            errors=(400,))},
        "/api/v1/submissions/{submission_id}": {"patch": _op(
            "Move every scheduled message of a batch (a submission) to a new time", "send", {
                "200": {"description": "Moved", "content": _json(_ref("BatchChange"))}},
            body={"type": "object", "additionalProperties": False, "required": ["send_at"], "properties": {
                "send_at": {"oneOf": [TIME, {"const": "now"}, {"type": "number"}], "description": "the new time (one "
                            "more than a minute past is refused: 400), or \"now\" to send at once"}}},
            parameters=[_path_id("submission_id")], errors=(400, 404, 415, 503))},
        "/api/v1/submissions/{submission_id}/cancel": {"post": _op(
            "Cancel every queued or scheduled message of a batch (a submission)", "send", {
                "200": {"description": "Canceled", "content": _json(_ref("BatchChange"))}},
            parameters=[_path_id("submission_id")], errors=(404, 409, 503))},
        "/api/v1/inbox": {"get": _op("Inbound messages, newest first", "read", {
            "200": {"description": "A page", "content": _json(_list("Inbound"))}}, parameters=[
            _query("from", {"type": "string"}, "sender"), messages_filters[-2], messages_filters[-1]],
            errors=(400,))},
        "/api/v1/inbox/{inbox_id}": {
            "parameters": [_path_id("inbox_id")],
            "get": _op("An inbound message", "read", {"200": {"description": "It",
                                                              "content": _json(_ref("Inbound"))}}, errors=(404,)),
            "delete": _op("Delete an inbound message", "send", {"204": {"description": "Deleted"}}, errors=(404,))},
        "/api/v1/inbox/{inbox_id}/reply": {"post": _op(
            "Reply to an inbound message, from the SIM it came to (another one when that SIM cannot send)", "send",
            {"202": {"description": "Queued (or skipped: opted out)", "content": _json(_ref("SubmitResult"))}},
            body={"type": "object", "properties": {
                "body": {"type": "string"}, "message": {"type": "string"}, "template": {"type": ["integer", "string"]},
                "priority": {"type": "integer"}, "client_ref": {"type": "string"},
                "callback_url": {"type": "string"}, "request_report": {"type": "boolean"},
                "spintax": {"type": "boolean"}, "smart_encoding": {"type": "boolean"}}},
            parameters=[_path_id("inbox_id")], errors=(400, 404, 503))},
        "/api/v1/optouts": {
            "get": _op("The opt-out list", "read", {"200": {"description": "All", "content": _json({
                "type": "object", "properties": {"data": {"type": "array", "items": _ref("OptOut")}}})}}),
            "post": _op("Add a number to the opt-out list", "send", {
                "201": {"description": "Added", "content": _json({"type": "object"})},
                "200": {"description": "Already there", "content": _json({"type": "object"})}},
                body={"type": "object", "required": ["number"], "properties": {
                    "number": {"type": "string"}, "note": {"type": "string"}}}, errors=(400, 415))},
        "/api/v1/optouts/{number}": {"delete": _op("Remove a number from the opt-out list", "send", {
            "204": {"description": "Removed"}}, parameters=[{"name": "number", "in": "path", "required": True,
                                                            "schema": {"type": "string"}}], errors=(400, 404))},
        "/api/v1/stats": {"get": _op(
            "Statistics per day, week or month (the gateway's local time) and per SIM: sent, delivered, failed, "
            "delivery rate, median time to delivery, segments", "read", {
                "200": {"description": "The report", "content": _json(STATS)}}, parameters=[
                _query("period", {"enum": ["day", "week", "month"]}, "the periods of the report (default day)"),
                _query("since", {"type": "string", "format": "date"}, "first local date (default: 30 days, 12 "
                                                                      "weeks or 12 months before until)"),
                _query("until", {"type": "string", "format": "date"}, "last local date, included (default today)"),
                _query("modem_id", {"type": "integer"}, "one SIM only")], errors=(400, 404))},
        "/api/v1/modems": {"get": _op("The modems", "read", {"200": {"description": "All", "content": _json({
            "type": "object", "properties": {"data": {"type": "array", "items": _ref("Modem")}}})}})},
        "/api/v1/modems/{modem_id}": {
            "parameters": [_path_id("modem_id")],
            "get": _op("A modem", "read", {"200": {"description": "It", "content": _json(_ref("Modem"))}},
                       errors=(404,)),
            "patch": _op("Enable or disable a modem, rename it, set its limits", "admin", {
                "200": {"description": "Updated", "content": _json(_ref("Modem"))}}, body=_ref("ModemUpdate"),
                errors=(400, 404, 409, 415))},
        "/api/v1/modems/{modem_id}/ussd": {"post": _op("Send a USSD code (e.g. *100#) and return the answer; codes "
                                                      "outside the gateway's ussd_allow list need admin", "ussd", {
            "200": {"description": "The network's answer", "content": _json({"type": "object"})}},
            parameters=[_path_id("modem_id")], body={"type": "object", "required": ["code"], "properties": {
                "code": {"type": "string"}}}, errors=(400, 404, 409, 415, 502, 504))},
        "/api/v1/modems/{modem_id}/at": {"post": _op("Run one AT command on the modem (diagnostics)", "admin", {
            "200": {"description": "The reply", "content": _json({"type": "object"})}},
            parameters=[_path_id("modem_id")], body={"type": "object", "required": ["command"], "properties": {
                "command": {"type": "string"}, "timeout": {"type": "number"}}},
            errors=(400, 404, 409, 415, 502, 504))},
        "/api/v1/webhooks": {
            "get": _op("Webhook subscriptions and the secret that signs callback_url deliveries", "admin", {
                "200": {"description": "All", "content": _json({"type": "object"})}}),
            "post": _op("Subscribe a URL to events", "admin", {
                "201": {"description": "Created, with its signing secret", "content": _json(_ref("Webhook"))}},
                body={"type": "object", "required": ["url"], "properties": {
                    "url": {"type": "string"}, "events": {"type": "array", "items": {"enum": [*EVENTS, "*"]}}}},
                errors=(400, 415))},
        "/api/v1/webhooks/{webhook_id}": {
            "parameters": [_path_id("webhook_id")],
            "patch": _op("Change a subscription's URL or events, or enable or disable it (a disabled one gets no new "
                         "deliveries; its pending ones wait)", "admin", {
                "200": {"description": "Updated", "content": _json(_ref("Webhook"))}},
                body={"type": "object", "minProperties": 1, "properties": {
                    "url": {"type": "string"}, "events": {"type": "array", "minItems": 1,
                                                          "items": {"enum": [*EVENTS, "*"]}},
                    "enabled": {"type": "boolean"}}}, errors=(400, 404, 415)),
            "delete": _op("Unsubscribe", "admin", {"204": {"description": "Deleted"}}, errors=(404,))},
        "/api/v1/webhooks/{webhook_id}/deliveries": {"get": _op("A subscription's deliveries, a page at a time",
                                                                "admin", {
            "200": {"description": "Newest first", "content": _json(_list("Delivery"))}},
            parameters=[_path_id("webhook_id"),
                        _query("status", {"enum": ["pending", "delivered", "dead"]}, "only deliveries in this state"),
                        _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "page size (default 50)"),
                        _query("cursor", {"type": "integer"}, "next_cursor of the previous page")],
            errors=(400, 404))},
        "/api/v1/webhooks/{webhook_id}/retry": {"post": _op(
            "Retry pending now: every pending delivery of the subscription is due at once (their attempts so far "
            "still count); for after its receiver was fixed", "admin", {"202": {
                "description": "Due now (a disabled subscription's wait until it is enabled)",
                "content": _json({"type": "object", "required": ["webhook_id", "pending"], "properties": {
                    "webhook_id": {"type": "integer"},
                    "pending": {"type": "integer", "description": "how many are pending"}}})}},
            parameters=[_path_id("webhook_id")], errors=(404,))},
        "/api/v1/webhooks/{webhook_id}/redeliver-dead": {"post": _op(
            "Redeliver all dead: every dead delivery of the subscription is queued again, due now, its attempts "
            "starting over, to the subscription's URL", "admin", {"202": {
                "description": "Queued",
                "content": _json({"type": "object", "required": ["webhook_id", "requeued"], "properties": {
                    "webhook_id": {"type": "integer"},
                    "requeued": {"type": "integer", "description": "how many were queued again"}}})}},
            parameters=[_path_id("webhook_id")], errors=(404,))},
        "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver": {"post": _op(
            "Send a delivery again", "admin", {"202": {"description": "Queued",
                                                        "content": _json(_ref("Delivery"))}},
            parameters=[_path_id("webhook_id"), _path_id("delivery_id")], errors=(404,))},
        # --- address book: contacts and groups ---
        "/api/v1/contacts": {
            "get": _op("Contacts in name order, a page at a time", "read", {
                "200": {"description": "A page", "content": _json(_list("Contact"))}}, parameters=[
                _query("q", {"type": "string", "maxLength": 100}, "text in the name, notes or fields, or digits of "
                                                                   "the number"),
                _query("group", {"type": "string"}, "only members of the group of this name"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "page size (default 100)"),
                _query("cursor", {"type": "integer"}, "next_cursor of the previous page")], errors=(400, 404)),
            "post": _op("Add a contact", "book", {"201": {"description": "Added", "content": _json(_ref("Contact"))}},
                        body={**_ref("ContactInput"), "required": ["name", "number"]}, errors=(400, 409, 415))},
        "/api/v1/contacts/{contact_id}": {
            "parameters": [_path_id("contact_id")],
            "get": _op("A contact", "read", {"200": {"description": "It", "content": _json(_ref("Contact"))}},
                       errors=(404,)),
            "patch": _op("Change a contact (what is given; fields and groups are replaced)", "book", {
                "200": {"description": "Changed", "content": _json(_ref("Contact"))}}, body=_ref("ContactInput"),
                errors=(400, 404, 409, 415)),
            "delete": _op("Delete a contact", "book", {"204": {"description": "Deleted"}}, errors=(404,))},
        "/api/v1/contacts/import": {"post": {
            **_op("Import contacts from a CSV or vCard file (at most 5 MiB, 50,000 contacts); a number already in "
                  "the book updates that contact", "book", {
                      "200": {"description": "What was imported, and each rejected line with why",
                              "content": _json(_ref("ImportResult"))}},
                  parameters=[_query("group", {"type": "string"}, "put every imported contact into this group "
                                                                  "(created when missing)")],
                  errors=(400, 413, 415)),
            "requestBody": {"required": True, "content": {
                "text/csv": {"schema": {"type": "string"}}, "text/vcard": {"schema": {"type": "string"}}}}}},
        "/api/v1/contacts/export": {"get": _op("Every contact (or a group's) as a file", "read", {
            "200": {"description": "The file", "content": {"text/csv": {"schema": {"type": "string"}},
                                                           "text/vcard": {"schema": {"type": "string"}}}}},
            parameters=[_query("format", {"enum": ["csv", "vcard"]}, "csv (formula-safe, UTF-8 with a BOM; the "
                                                                    "default) or vcard (3.0)"),
                        _query("group", {"type": "string"}, "only members of the group of this name")],
            errors=(400, 404))},
        "/api/v1/groups": {
            "get": _op("Contact groups with their member counts", "read", {"200": {
                "description": "All", "content": _json({"type": "object", "required": ["data"], "properties": {
                    "data": {"type": "array", "items": _ref("Group")}}})}}),
            "post": _op("Add a group", "book", {"201": {"description": "Added", "content": _json(_ref("Group"))}},
                        body={**_ref("GroupInput"), "required": ["name"]}, errors=(400, 409, 415))},
        "/api/v1/groups/{group_id}": {
            "parameters": [_path_id("group_id")],
            "get": _op("A group", "read", {"200": {"description": "It", "content": _json(_ref("Group"))}},
                       errors=(404,)),
            "patch": _op("Rename a group or change its description", "book", {
                "200": {"description": "Changed", "content": _json(_ref("Group"))}}, body=_ref("GroupInput"),
                errors=(400, 404, 409, 415)),
            "delete": _op("Delete a group (its contacts stay)", "book", {"204": {"description": "Deleted"}},
                          errors=(404,))},
        "/api/v1/groups/{group_id}/members": {"post": _op("Put contacts into a group", "book", {
            "200": {"description": "The group after", "content": _json(_ref("Group"))}},
            parameters=[_path_id("group_id")], body={"type": "object", "required": ["contact_ids"], "properties": {
                "contact_ids": {"type": "array", "items": {"type": "integer"}, "minItems": 1}}},
            errors=(400, 404, 415))},
        "/api/v1/groups/{group_id}/members/{contact_id}": {"delete": _op(
            "Take a contact out of a group", "book", {"204": {"description": "Removed"}},
            parameters=[_path_id("group_id"), _path_id("contact_id")], errors=(404,))},
        # --- the audit log ---
        "/api/v1/audit": {"get": _op("The audit log, newest first: logins, users, sessions, keys, modem settings, "
                                     "USSD and AT commands, opt-outs, webhooks", "admin", {
            "200": {"description": "A page", "content": _json(_list("AuditEntry"))}}, parameters=[
            _query("action", {"type": "string", "maxLength": 100}, "entries whose action starts with this (login.)"),
            _query("actor", {"type": "string", "maxLength": 100}, "entries whose actor contains this (any case)"),
            _query("since", TIME, "at or after"), _query("until", TIME, "before"),
            _query("ok", {"type": "boolean"}, "false: only what was refused or failed"),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "page size (default 50)"),
            _query("cursor", {"type": "integer"}, "next_cursor of the previous page")], errors=(400,))},
        # --- templates ---
        "/api/v1/templates": {
            "get": _op("Saved templates, by name", "read", {"200": {"description": "Every template", "content": _json(
                {"type": "object", "required": ["data"], "properties": {
                    "data": {"type": "array", "items": _ref("Template")}}})}}),
            "post": _op("Save a template (checked as it would be sent)", "book", {
                "201": {"description": "Saved", "content": _json(_ref("Template"))}},
                body=_ref("TemplateNew"), errors=(400, 409, 413, 415, 503))},
        "/api/v1/templates/{template_id}": {
            "parameters": [_path_id("template_id")],
            "get": _op("A template with its placeholders and segments", "read", {
                "200": {"description": "The template", "content": _json(_ref("Template"))}}, errors=(404,)),
            "patch": _op("Change a template's name, body or spintax", "book", {
                "200": {"description": "Changed", "content": _json(_ref("Template"))}},
                body=_ref("TemplateUpdate"), errors=(400, 404, 409, 413, 415, 503)),
            "delete": _op("Delete a template", "book", {"204": {"description": "Deleted"}}, errors=(404, 503))},
        **_alert_receivers(),
        **_inbound_rules(),
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "modemgw", "version": __version__,
                 "description": "On-premises SMS gateway. Errors are application/problem+json. Webhooks are "
                                "signed: X-Modemgw-Signature = sha256=HMAC(secret, timestamp + '.' + body)."},
        "paths": paths,
        "components": {"schemas": SCHEMAS,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "mgw_... API key"},
                                           "basic": {"type": "http", "scheme": "basic", "description":
                                                     "the mgw_... API key as the password (alert receivers)"},
                                           "query_key": {"type": "apiKey", "in": "query", "name": "key",
                                                         "description": "GET /api/v1/send only, and only a key "
                                                                        "created with --allow-query-token"}}},
    }
