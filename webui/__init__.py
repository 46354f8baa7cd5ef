"""The web UI: a Flask blueprint with server-rendered pages, our own CSS and a little of our own JavaScript.

One blueprint, `ui`, defined here with what its pages share (the daemon, the gateway, `when`, the error pages);
the pages live in submodules that register on it:
- `webui.sessions`: server-side sessions, their cookies, the CSRF check of every form, login, logout, account;
- `webui.views`: dashboard (its chart is the template `_chart.html`), modems;
- `webui.messages`: the messages list (pages, filters, live statuses, CSV), a message, Scheduled;
- `webui.compose`: compose, the review of every recipient row, the confirm step;
- `webui.conversations`: the inbox by (our SIM, their number), replies;
- `webui.book`: contacts and groups; `webui.library`: saved templates; `webui.rules`: inbound rules (admins);
- `webui.messages`: messages and scheduled batches; `webui.stats`: statistics (SVG charts from `webui.charts`);
- `webui.settings`: the admin page (keys, webhooks, users, opt-outs).
Every form carries its CSRF token through the one macro `csrf_field` of `_forms.html`. Users are managed by
`modemgw.users` (shared with the CLI); everything else goes through the gateway, and modems through the pool.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, urlencode

from flask import Blueprint, Flask, Response, current_app, g, make_response, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from modemgw.app import is_machine_path
from modemgw.gateway import Gateway, ModemRequestError, SubmitError
from modemgw.problems import STORAGE_RETRY_AFTER, problem
from modemgw.store import Conflict as DataConflict, NotFound, StoreError
from modemgw.users import add_user  # for callers that set up a UI user through this package

ui = Blueprint("ui", __name__, template_folder="templates", static_folder="static", static_url_path="/ui/static")


def init_app(app: Flask, daemon) -> None:
    """Register the UI on `app`, with its session store, login throttle and notices over `daemon`'s store."""
    from modemgw.users import LoginThrottle
    from webui.sessions import Notices, Sessions

    app.extensions["modemgw.sessions"] = Sessions(daemon.store)
    app.extensions["modemgw.login_throttle"] = LoginThrottle()
    app.extensions["modemgw.notices"] = Notices()
    app.register_blueprint(ui)


def daemon():
    """The running daemon (its gateway, pool, store and webhooks)."""
    return current_app.extensions["modemgw"]


def gateway() -> Gateway:
    return daemon().gateway


def when(value: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value)) if value else "—"


@ui.app_template_filter("when")
def when_filter(value):
    return when(value)


_PLACEHOLDERS = ("MODEMGW0PLACEHOLDER", 918273645546372819)  # path parts url_for leaves as they are (text, ids)
_PATH_SAFE = "!$&'()*+,/:;=@"  # what werkzeug's converters leave unquoted in a path part (BaseConverter.to_url)
_QUERY_SAFE = "!$'()*,/:;?@"  # ... and in the query string (werkzeug.routing.rules._urlencode)


def row_links(endpoint: str, name: str) -> Callable[..., str]:
    """url_for(endpoint, **{name: value}, **query) for the rows of a long list, built once: werkzeug's url_for
    takes ~40 µs, which was half of a 200-row page (the inbox's conversations: 9 of 20 ms at a million
    messages). The link of a row is the URL built for a placeholder with the row's value quoted in its place, as
    url_for quotes it (tests/test_ui_links.py holds them equal); query arguments that are None are left out, as
    url_for leaves them."""
    for placeholder in _PLACEHOLDERS:
        try:
            values: dict[str, Any] = {name: placeholder}
            built = url_for(endpoint, **values)
            break
        except ValueError:  # a converter of numbers (an id) refuses the text
            continue
    else:
        raise ValueError(f"{endpoint}: no placeholder fits its '{name}'")
    before, _, after = built.partition(str(placeholder))

    def link(value: Any, **query: Any) -> str:
        url = f"{before}{quote(str(value), safe=_PATH_SAFE)}{after}"
        arguments = [(key, str(item)) for key, item in query.items() if item is not None]
        return f"{url}?{urlencode(arguments, safe=_QUERY_SAFE)}" if arguments else url
    return link


def audit(action: str, target: str | None = None, detail: dict | None = None, ok: bool = True,
          actor: str | None = None) -> None:
    """Record an action of the logged-in user (or `actor`) in the audit log, with the client's address."""
    from flask import g

    user = getattr(g, "user", None)
    who = actor or (f"user {user['username']}" if user else "anonymous")
    gateway().audit(action, actor=who, source=request.remote_addr, target=target, detail=detail, ok=ok)


def storage_message(error: StoreError) -> str:
    """What a person reads when the database failed: why, and whether anything was saved."""
    reason = {"full": "the disk is full", "locked": "the database is locked by another program"}.get(
        error.kind, "the database failed")
    saved = "" if request.method in ("GET", "HEAD") else "nothing was saved; "
    return f"{reason} ({error}): {saved}try again in a moment."


# --- error pages ------------------------------------------------------------------------------------------------
# Every error on a path of the web UI is a page in the app's layout with a way back, never JSON nor a traceback;
# the API's paths (modemgw.app.is_machine_path) keep their problem+json. Errors in the UI's own views come here
# through the blueprint's handler; errors on paths no view matched (a 404, a 405) through modemgw.app, which asks
# `error_page_for`. Flask picks 403 and 400 handlers by code before any other, whatever the path: those two look
# at the path themselves.

PAGE_TITLES = {400: "Request refused", 403: "Not allowed", 404: "Not found", 405: "Not possible here",
               409: "Conflict", 413: "Too large", 500: "Something went wrong", 502: "The modem failed",
               503: "The database is unavailable", 504: "The modem did not answer"}
FALLBACK_PAGE = ('<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Error {code} · modemgw</title>'
                 '</head><body><main><h1>Error {code}</h1><p>{message}</p><p><a href="{home}">Dashboard</a></p>'
                 '</main></body></html>')
UNEXPECTED = "The gateway failed on this page; the error is in its log. Go back and try again."


def _menu_user() -> None:
    """Read the session when no view of the UI did (a path no view matched, a static file), so that the error page
    shows the app's menu to whoever is logged in; when the database fails, the page goes without the menu."""
    if g.get("user") is not None:
        return
    g.user = None
    from webui.sessions import SESSION_COOKIE

    try:
        session = current_app.extensions["modemgw.sessions"].resolve(request.cookies.get(SESSION_COOKIE))
    except StoreError:  # the database may be why this page is shown
        return
    if session is not None:
        g.user = {"id": session.user_id, "username": session.username, "role": session.role}
        g.csrf_token = session.csrf_token  # the menu's logout form


def error_page(code: int, message: str, title: str | None = None, headers: Iterable[tuple[str, str]] = ()
               ) -> Response:
    """`error.html` in the app's layout: what happened, a link to the dashboard and Back. Should the layout itself
    fail (it is an error page: anything may be broken), a plain page says the same."""
    try:
        _menu_user()
        body = render_template("error.html", code=code, title=title or PAGE_TITLES.get(code), message=message)
    except Exception:  # the last resort must not fail
        current_app.logger.exception("the error page for %s %s failed", request.method, request.path)
        body = FALLBACK_PAGE.format(code=code, message=html.escape(message), home=html.escape(request.script_root
                                                                                               + "/"))
    response = make_response(body, code)
    for name, value in headers:
        response.headers[name] = value
    return response


def _http_message(error: HTTPException) -> str:
    """What a person reads: the view's own description, or a plain sentence for werkzeug's defaults."""
    if error.description and error.description != type(error).description:
        return error.description
    return {404: f"There is no page at {request.path}.",
            405: f"{request.path} does not take {request.method} requests; open it from the menu instead.",
            413: "What was sent is too large for the gateway."}.get(error.code or 400, error.description or
                                                                     error.name)


def error_page_for(error: BaseException):
    """The page for any error raised while answering a path of the UI."""
    if isinstance(error, HTTPException):
        if error.code is None or error.code < 400:  # a redirect raised as an exception is no error
            return error
        headers = [(name, value) for name, value in error.get_headers() if name.lower() != "content-type"]
        return error_page(error.code, _http_message(error), headers=headers)  # keeps 405's Allow
    if isinstance(error, NotFound):
        return error_page(404, str(error))
    if isinstance(error, DataConflict):  # a rule of the data (a taken name): retrying cannot help
        return error_page(409, str(error))
    if isinstance(error, StoreError):
        return error_page(503, storage_message(error), headers=[("Retry-After", str(STORAGE_RETRY_AFTER))])
    if isinstance(error, SubmitError):
        return error_page({"forbidden": 403, "conflict": 409}.get(error.kind, 400), error.detail)
    if isinstance(error, ModemRequestError):
        return error_page({"unattached": 409, "timeout": 504}.get(error.reason, 502), error.detail)
    current_app.logger.exception("unexpected error on %s %s", request.method, request.path)
    return error_page(500, UNEXPECTED)


@ui.app_errorhandler(403)
def forbidden(error):
    if is_machine_path(request.path):
        return problem(403, "forbidden", error.description)
    return error_page_for(error)


@ui.app_errorhandler(400)
def bad_request(error):
    if is_machine_path(request.path):
        return problem(400, "invalid-request", error.description)
    return error_page_for(error)


@ui.errorhandler(Exception)
def page_error(error: Exception):
    """Any error in a view of the UI: its page (the database's 503 with Retry-After), never a crash page."""
    return error_page_for(error)


# The pages register on `ui`, defined above: imported last.
from webui import book, conversations, library, messages, rules, sessions, settings, stats, views  # noqa: E402

__all__ = ["add_user", "audit", "book", "conversations", "daemon", "error_page", "error_page_for", "gateway",
           "init_app", "library", "messages", "rules", "sessions", "settings", "stats", "storage_message", "ui",
           "views", "when"]
