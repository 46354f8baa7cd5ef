"""The send URL for legacy devices: `GET /api/v1/send?key=...&to=...&text=...`, on the `/api/v1` blueprint.

Alarm panels, PLCs, NVRs, UPSs and printers can often do nothing but call a URL, and read at most the first line
of the answer. So this route takes everything from the query string and answers plain text, one line that starts
with `OK` or `ERROR` (and the matching HTTP status):

    OK 123              one message queued (several recipients: `OK 123,124`, in the order given)
    SKIPPED +44... opted out      after the OK line, one line per recipient that got no message
    ERROR 401 <reason>  refused; the reason says what to fix

The key may come in the query (`key`, `token` or `access_token`) only when it was created to allow it
(`modemgw keys create --allow-query-token`, or the web UI's tick box): a URL is written into the access logs of
every proxy it passes, browser histories and the device's own log. A key that was not is refused, saying why. The
`Authorization: Bearer` header works here as everywhere. The gateway itself never logs a query string (waitress
writes no access log; the error logs name the path alone).

Parameters (names in any case; a documented set, anything else is refused by name so that a typo cannot send a
message without what was meant): `key`/`token`/`access_token`, `to` (repeatable, comma-separated numbers; a
literal `+` stays a plus, as devices write numbers unencoded), `text`/`message` (`+` or `%20` for spaces), and
optional `priority` (-100..100), `modem` or `group` (a route), `charset` (`utf-8`, the default, or `iso-8859-1`
/ `windows-1252` for devices that percent-encode Latin-1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from flask import Response, current_app, request

from modemgw.api import _gateway, api
from modemgw.auth import ApiKey, Authenticator, AuthError
from modemgw.gateway import SubmitError, SubmitRequest
from modemgw.problems import STORAGE_RETRY_AFTER
from modemgw.store import StoreError

MAX_QUERY_BYTES = 32 * 1024  # about 10 SMS of emoji, percent-encoded; longer texts go through the JSON API
MAX_PARAMETERS = 64          # name=value pairs in one query
KEY_NAMES = ("key", "token", "access_token")
TEXT_NAMES = ("text", "message")
CHARSETS = {"utf-8": "utf-8", "utf8": "utf-8", "iso-8859-1": "latin-1", "latin1": "latin-1", "latin-1": "latin-1",
            "windows-1252": "cp1252", "cp1252": "cp1252"}
PARAMETERS = (*KEY_NAMES, "to", *TEXT_NAMES, "priority", "modem", "group", "charset")
LONGEST = {"priority": 4, "modem": 64, "group": 64, "charset": 16, **dict.fromkeys(KEY_NAMES, 200)}


class LegacyError(Exception):
    """A refusal: `ERROR <status> <reason>` with that HTTP status (and headers such as Retry-After)."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers or {}


def _answer(status: int, lines: list[str], headers: dict[str, str] | None = None) -> Response:
    """Plain text, one line each (a reason never spans lines), never cached: the URL may carry a key."""
    text = "".join(" ".join(line.split()) + "\n" for line in lines)
    response = Response(text, status=status, mimetype="text/plain")
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _pairs(query: bytes) -> list[tuple[str, bytes]]:
    """The query's (lower-case name, raw value) pairs, in order; empty pairs (`&&`) left out. Bounded first."""
    if len(query) > MAX_QUERY_BYTES:
        raise LegacyError(414, f"the URL's query is {len(query):,} bytes; at most {MAX_QUERY_BYTES:,} are taken "
                               "(send longer texts with POST /api/v1/messages)")
    pairs: list[tuple[str, bytes]] = []
    for item in query.split(b"&"):
        if not item:
            continue
        if len(pairs) == MAX_PARAMETERS:
            raise LegacyError(400, f"more than {MAX_PARAMETERS} parameters")
        raw_name, _, value = item.partition(b"=")
        try:
            name = unquote_to_bytes(raw_name.replace(b"+", b" ")).decode("utf-8").strip().lower()
        except UnicodeDecodeError:
            raise LegacyError(400, "a parameter's name is not UTF-8") from None
        if name not in PARAMETERS:
            shown = name if len(name) <= 40 and name.isprintable() else name[:40].encode("unicode_escape").decode()
            raise LegacyError(400, f"unknown parameter '{shown}' (parameters: {', '.join(PARAMETERS)})")
        pairs.append((name, value))
    return pairs


def _decode(name: str, value: bytes, charset: str) -> str:
    """A value percent-decoded. `+` is a space, except in `to`: devices write `to=+4477...` unencoded."""
    data = unquote_to_bytes(value if name == "to" else value.replace(b"+", b" "))
    try:
        return data.decode(charset)
    except UnicodeDecodeError as error:
        raise LegacyError(400, f"'{name}' is not valid {charset.upper()} (byte {error.start + 1}); percent-encode "
                               "the text as UTF-8, or pass charset=iso-8859-1 or charset=windows-1252") from None


@dataclass
class LegacyRequest:
    """What a send URL asks for, decoded and bounded."""

    to: list[str] = field(default_factory=list)
    text: str | None = None
    key: str | None = None
    priority: str | None = None
    modem: str | None = None
    group: str | None = None


def _parameters(pairs: list[tuple[str, bytes]]) -> LegacyRequest:
    """Each parameter once (aliases count as one), `to` as a list of numbers, every value decoded and bounded."""
    raw: dict[str, list[bytes]] = {}
    for name, value in pairs:
        raw.setdefault(name, []).append(value)
    charsets = raw.pop("charset", [b"utf-8"])
    if len(charsets) > 1:
        raise LegacyError(400, "give 'charset' once")
    charset_name = unquote_to_bytes(charsets[0][:40]).decode("latin-1").strip().lower()
    if charset_name not in CHARSETS:
        raise LegacyError(400, f"charset must be utf-8, iso-8859-1 or windows-1252, not '{charset_name[:20]}'")
    charset = CHARSETS[charset_name]
    found = LegacyRequest()
    for canonical, names in (("key", KEY_NAMES), ("text", TEXT_NAMES), ("priority", ("priority",)),
                             ("modem", ("modem",)), ("group", ("group",))):
        given = [(name, value) for name in names for value in raw.get(name, [])]
        if len(given) > 1:
            raise LegacyError(400, f"give one of {', '.join(names)}, once" if len(names) > 1
                              else f"give '{canonical}' once")
        if given:
            name, value = given[0]
            decoded = _decode(name, value, charset)
            if name in LONGEST and len(decoded) > LONGEST[name]:
                raise LegacyError(400, f"'{name}' is longer than {LONGEST[name]} characters")
            setattr(found, canonical, decoded)
    for value in raw.get("to", []):
        found.to += [number.strip() for number in _decode("to", value, charset).split(",") if number.strip()]
    return found


def _authenticate(key: str | None) -> ApiKey:
    """The calling key, from the query (only a key created to allow it) or the Authorization header; with the send
    scope and within its rate limit."""
    authenticator: Authenticator = current_app.extensions["modemgw.auth"]
    header = request.headers.get("Authorization")
    unauthorized = {"WWW-Authenticate": 'Bearer realm="modemgw"'}
    if key is not None and header:
        raise LegacyError(400, "give the key once: in the URL (key=...) or in the Authorization header, not both")
    if key is None and not header:
        raise LegacyError(401, "no API key: pass key=<key> (a key created with --allow-query-token) or the header "
                               "'Authorization: Bearer <key>'", unauthorized)
    try:
        found = authenticator.authenticate_query(key) if key is not None else authenticator.authenticate(header)
    except AuthError as error:
        if error.key is not None:  # a valid key in a URL that must not be: its owner should know it leaked
            _gateway().audit("key.url_refused", actor=f"key {error.key.name} (#{error.key.id})",
                             source=request.remote_addr, target=f"key {error.key.name} (#{error.key.id})",
                             detail={"path": request.path}, ok=False)
        raise LegacyError(401, error.detail, unauthorized) from None
    if not found.allows("send"):
        raise LegacyError(403, f"this API key ({found.name}) has scopes {', '.join(found.scopes)}; sending needs "
                               "'send'")
    wait = authenticator.throttle(found)
    if wait > 0:
        raise LegacyError(429, f"this key may make {found.rate_per_minute} requests a minute; try again in "
                               f"{max(1, round(wait))} s", {"Retry-After": str(max(1, round(wait)))})
    return found


def _send() -> Response:
    asked = _parameters(_pairs(request.query_string))
    key = _authenticate(asked.key)
    if not asked.to:
        raise LegacyError(400, "no recipient: pass to=<number> (several: to=<number>,<number>)")
    if asked.text is None or not asked.text.strip():
        raise LegacyError(400, "no text: pass text=<the message>, URL-encoded (a space as + or %20)")
    if asked.modem and asked.group:
        raise LegacyError(400, "give 'modem' or 'group', not both")
    priority = 0
    if asked.priority is not None:
        try:
            priority = int(asked.priority)
        except ValueError:
            raise LegacyError(400, f"priority must be a whole number from -100 to 100, not '{asked.priority}'") \
                from None
    result = _gateway().send(SubmitRequest(asked.text, asked.to, priority=priority,
                                           route=asked.modem or asked.group or None, api_key_id=key.id,
                                           key_group=key.group))
    if not result["messages"]:
        first = result["skipped"][0] if result["skipped"] else {"to": "?", "reason": "no recipient"}
        raise LegacyError(422, f"{first['to']}: {first['reason']}; nothing was sent")
    return _answer(200, ["OK " + ",".join(str(message["id"]) for message in result["messages"]),
                         *(f"SKIPPED {item['to']} {item['reason']}" for item in result["skipped"])])


@api.get("/send")
def legacy_send():
    """Queue an SMS from a URL: plain text `OK <id>[,<id>...]` (200) or `ERROR <status> <reason>`."""
    if request.method == "HEAD":  # a link checker or proxy looking: never a message
        return _answer(405, ["ERROR 405 HEAD sends nothing; call this URL with GET"], {"Allow": "GET"})
    try:
        return _send()
    except LegacyError as error:
        return _answer(error.status, [f"ERROR {error.status} {error.reason}"], error.headers)
    except SubmitError as error:
        status = {"forbidden": 403, "conflict": 409}.get(error.kind, 400)
        return _answer(status, [f"ERROR {status} {error.detail}"])
    except StoreError as error:
        return _answer(503, [f"ERROR 503 {error}; nothing was stored; try again in {STORAGE_RETRY_AFTER} s"],
                       {"Retry-After": str(STORAGE_RETRY_AFTER)})
    except Exception:
        # the path alone, never request.url: the query may hold a key
        current_app.logger.exception("unexpected error on %s %s", request.method, request.path)
        return _answer(500, ["ERROR 500 the gateway failed on this request; the error is in its log"])
