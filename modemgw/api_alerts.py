"""Receivers for alerting systems (Prometheus Alertmanager, Grafana): routes on the `/api/v1` blueprint.

    POST /api/v1/integrations/alertmanager   Alertmanager's webhook_config (payload version 4)
    POST /api/v1/integrations/grafana        Grafana's webhook contact point (unified alerting, version 1)

Each notification becomes one SMS per recipient (`Gateway.notify_alert`, modemgw/alerts.py): 202 with the
messages queued, or 200 with what the first copy sent when the same notification came within `[alerts]
group_interval`. Recipients come from the URL (`?to=+447700900123,+447700900456`, `?group=on-call`, both
repeatable) or, with neither, from `[alerts.receivers]` by the notification's receiver name.

Both systems authenticate with an API key of the `send` scope, as a bearer token (Alertmanager's
`http_config.authorization.credentials`, Grafana's "Authorization Header") or as the password of HTTP Basic
(`http_config.basic_auth`, Grafana's "Username"/"Password"; any user name). A refused notification is a 4xx,
which Alertmanager does not retry; a 503 (the database) it retries.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable
from urllib.parse import unquote

from flask import current_app, g, request

from modemgw.alerts import MAX_RECIPIENTS, AlertError
from modemgw.api import _gateway, _json_body, api, requires
from modemgw.problems import ApiProblem, problem
from modemgw.views import iso

MAX_BODY_BYTES = 2 * 1024 * 1024   # 1000 alerts with long descriptions; more: set the sender's max_alerts
MAX_QUERY_CHARS = 8192
MAX_PARAMETER_CHARS = 4096
MAX_BASIC_CHARS = 1024             # base64 of "user:mgw_..." is far shorter
QUERY_PARAMETERS = ("to", "group")
CHALLENGES = 'Bearer realm="modemgw", Basic realm="modemgw"'


@api.errorhandler(AlertError)
def on_alert_error(error: AlertError):
    return problem(400, "invalid-request", error.detail, field=error.field)


# --- authentication: a bearer key, or the key as HTTP Basic's password ------------------------------------------

def _basic_key(header: str) -> str:
    """The API key in `Authorization: Basic base64(user:key)` (any user; a key given as the user name with an empty
    password is taken too). Raises ApiProblem 401."""
    encoded = header.partition(" ")[2].strip()
    if len(encoded) > MAX_BASIC_CHARS:
        raise ApiProblem(401, "unauthorized", "the Basic credentials are too long for an API key")
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ApiProblem(401, "unauthorized", "the Basic credentials must be base64 of 'user:password'; give the "
                                              "API key as the password") from None
    user, separator, password = decoded.partition(":")
    key = password or user
    if not separator or not key:
        raise ApiProblem(401, "unauthorized", "the Basic credentials must be 'user:password' with the API key as "
                                              "the password")
    return key


def bearer_or_basic(view: Callable) -> Callable:
    """Let `requires` (outside which this runs) check a key given as HTTP Basic's password as well as a bearer
    key: Alertmanager's `basic_auth` and Grafana's user and password send it so. The Basic header is rewritten to
    the bearer form in this request's environment, so the one `requires` applies its checks, scopes and rate
    limit alike; a 401 offers both schemes."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        header = request.headers.get("Authorization", "")
        try:
            if header[:6].lower() == "basic ":
                request.environ["HTTP_AUTHORIZATION"] = f"Bearer {_basic_key(header)}"
        except ApiProblem as error:
            response = problem(error.status, error.kind, error.detail)
        else:
            response = current_app.make_response(view(*args, **kwargs))
        if response.status_code == 401:
            response.headers["WWW-Authenticate"] = CHALLENGES
        return response
    return wrapper


# --- input ------------------------------------------------------------------------------------------------------

def _query() -> dict[str, list[str]]:
    """The query string's parameters, read so that `+` stays a plus (`?to=+44...` is how people write it; form
    decoding would make it a space) and `%2B` is one too. Unknown parameters are refused by name."""
    raw = request.query_string
    if len(raw) > MAX_QUERY_CHARS:
        raise ApiProblem(400, "invalid-request", f"the query string is longer than {MAX_QUERY_CHARS} characters")
    try:
        decoded = raw.decode("ascii")
    except UnicodeDecodeError:
        raise ApiProblem(400, "invalid-request", "the query string must be URL-encoded ASCII") from None
    found: dict[str, list[str]] = {}
    for pair in decoded.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        name, value = unquote(name, errors="replace"), unquote(value, errors="replace")
        if name not in QUERY_PARAMETERS:
            raise ApiProblem(400, "invalid-request", f"unknown query parameter {name[:40]!r} (parameters: to, group)",
                             field=name[:40])
        if len(value) > MAX_PARAMETER_CHARS:
            raise ApiProblem(400, "invalid-request", f"'{name}' is longer than {MAX_PARAMETER_CHARS} characters",
                             field=name)
        found.setdefault(name, []).append(value)
    return found


def _recipients(query: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """(numbers, groups) named in the URL: `to` is a comma-separated list of numbers, `group` an address-book
    group's name; both may repeat."""
    numbers = [item.strip() for value in query.get("to", []) for item in value.split(",") if item.strip()]
    groups = [value.strip() for value in query.get("group", []) if value.strip()]
    for name, items in (("to", numbers), ("group", groups)):
        if len(items) > MAX_RECIPIENTS:
            raise ApiProblem(400, "invalid-request", f"'{name}' names {len(items)} recipients; at most "
                                                     f"{MAX_RECIPIENTS} (put them in an address-book group)",
                             field=name)
    return numbers, groups


def _payload() -> dict:
    """The notification's JSON object, at most MAX_BODY_BYTES (checked before it is read when the length is
    given, and before it is parsed either way)."""
    tell = (f"the notification is larger than {MAX_BODY_BYTES // 1024} KiB; set max_alerts in the receiver's "
            "webhook_config (Alertmanager) or the contact point's Max Alerts (Grafana)")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiProblem(413, "payload-too-large", tell)
    if len(request.get_data(cache=True)) > MAX_BODY_BYTES:
        raise ApiProblem(413, "payload-too-large", tell)
    return _json_body()


def _receive(source: str):
    query = _query()
    numbers, groups = _recipients(query)
    payload = _payload()
    result = _gateway().notify_alert(source, payload, numbers or None, groups or None, api_key_id=g.api_key.id,
                                     key_group=g.api_key.group)
    if result["duplicate"]:
        return result | {"first_sent_at": iso(result["first_sent_at"])}, 200
    return result, 202


# --- routes -----------------------------------------------------------------------------------------------------

@api.post("/integrations/alertmanager")
@bearer_or_basic
@requires("send")
def alertmanager_receiver():
    """Prometheus Alertmanager's webhook: one SMS per notification."""
    return _receive("alertmanager")


@api.post("/integrations/grafana")
@bearer_or_basic
@requires("send")
def grafana_receiver():
    """Grafana's webhook contact point: one SMS per notification."""
    return _receive("grafana")
