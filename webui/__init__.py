"""The web UI: a Flask blueprint with server-rendered pages, our own CSS and a little of our own JavaScript.

One blueprint, `ui`, defined here with what its pages share (the daemon, the gateway, `when`, the error pages);
the pages live in submodules that register on it:
- `webui.sessions`: server-side sessions, their cookies, the CSRF check of every form, login, logout, account;
- `webui.views`: dashboard (its chart is the template `_chart.html`), compose, messages, inbox, modems;
- `webui.settings`: the admin page (keys, webhooks, users, opt-outs).
Every form carries its CSRF token through the one macro `csrf_field` of `_forms.html`. Users are managed by
`modemgw.users` (shared with the CLI); everything else goes through the gateway, and modems through the pool.
"""

from __future__ import annotations

import time

from flask import Blueprint, Flask, current_app, render_template, request

from modemgw.gateway import Gateway
from modemgw.problems import STORAGE_RETRY_AFTER, problem
from modemgw.store import NotFound, StoreError
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


def storage_message(error: StoreError) -> str:
    """What a person reads when the database failed: why, and whether anything was saved."""
    reason = {"full": "the disk is full", "locked": "the database is locked by another program"}.get(
        error.kind, "the database failed")
    saved = "" if request.method in ("GET", "HEAD") else "nothing was saved; "
    return f"{reason} ({error}): {saved}try again in a moment."


@ui.app_errorhandler(403)
def forbidden(error):
    if request.path.startswith("/api/") or request.path == "/send":
        return problem(403, "forbidden", error.description)
    return render_template("error.html", code=403, message=error.description), 403


@ui.app_errorhandler(400)
def bad_request(error):
    if request.path.startswith("/api/") or request.path == "/send":
        return problem(400, "invalid-request", error.description)
    return render_template("error.html", code=400, message=error.description), 400


@ui.errorhandler(StoreError)
def storage_error(error: StoreError):
    """A page that says what happened, never a crash page (the API's own handler answers problem+json)."""
    if isinstance(error, NotFound):
        return render_template("error.html", code=404, title="Not found", message=str(error)), 404
    return (render_template("error.html", code=503, title="The database is unavailable",
                            message=storage_message(error)), 503, {"Retry-After": str(STORAGE_RETRY_AFTER)})


# The pages register on `ui`, defined above: imported last.
from webui import book, conversations, library, sessions, settings, views  # noqa: E402

__all__ = ["add_user", "book", "conversations", "daemon", "gateway", "init_app", "library", "sessions", "settings",
           "storage_message", "ui", "views", "when"]
