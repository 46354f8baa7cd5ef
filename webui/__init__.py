"""The web UI: a Flask blueprint with server-rendered pages, our own CSS and a little of our own JavaScript.

Sessions live on the server (`auth.Sessions`): the cookie (HttpOnly, SameSite=Lax, Secure under HTTPS or with
`secure_cookies`) carries only a random token, and nothing else ever goes into a cookie; one-time notices
("Settings saved.") are kept in memory. Every form carries a CSRF token; wrong passwords slow down their account
(`auth.LoginThrottle`); operators cannot touch keys, users, modem settings or the AT console.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import hmac
import io
import json
import logging
import secrets
import threading
import time
from collections import OrderedDict, defaultdict

from flask import Blueprint, Flask, abort, current_app, g, jsonify, redirect, render_template, request, url_for

from modemgw import auth, text, webhooks
from modemgw.api import STORAGE_RETRY_AFTER
from modemgw.at import redact
from modemgw.auth import UserError, add_user
from modemgw.gateway import SubmitError
from modemgw.store import Duplicate, NotFound, Store, StoreError

log = logging.getLogger("modemgw.webui")

ui = Blueprint("ui", __name__, template_folder="templates", static_folder="static", static_url_path="/ui/static")

SESSION_COOKIE = "session"
LOGIN_CSRF_COOKIE = "login_csrf"  # the login form's CSRF token, before there is a session


class Notices:
    """One-time messages for a session's next page, kept in memory (never in a cookie): at most `per_session`
    for each of at most `max_sessions` sessions, the oldest dropped."""

    def __init__(self, max_sessions: int = 1000, per_session: int = 10):
        self.max_sessions, self.per_session = max_sessions, per_session
        self._lock = threading.Lock()
        self._items: OrderedDict[str, list[str]] = OrderedDict()

    def add(self, key: str, message: str) -> None:
        with self._lock:
            items = self._items.setdefault(key, [])
            items.append(message)
            del items[:-self.per_session]
            self._items.move_to_end(key)
            while len(self._items) > self.max_sessions:
                self._items.popitem(last=False)

    def take(self, key: str) -> list[str]:
        with self._lock:
            return self._items.pop(key, [])


def init_app(app: Flask, daemon) -> None:
    app.extensions["modemgw.sessions"] = auth.Sessions(daemon.store)
    app.extensions["modemgw.login_throttle"] = auth.LoginThrottle()
    app.extensions["modemgw.notices"] = Notices()
    app.register_blueprint(ui)


# --- helpers ------------------------------------------------------------------------------------------------

def _daemon():
    return current_app.extensions["modemgw"]


def _store() -> Store:
    return _daemon().store


def _sessions() -> auth.Sessions:
    return current_app.extensions["modemgw.sessions"]


def _throttle() -> auth.LoginThrottle:
    return current_app.extensions["modemgw.login_throttle"]


def notice(message: str) -> None:
    """Show `message` once, on this session's next page (this one, when it renders a page)."""
    if g.get("session") is not None:
        current_app.extensions["modemgw.notices"].add(g.session.token_hash, message)


def _take_notices() -> list[str]:
    if g.get("session") is None:
        return []
    return current_app.extensions["modemgw.notices"].take(g.session.token_hash)


def _when(value: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value)) if value else "—"


@ui.app_template_filter("when")
def when_filter(value):
    return _when(value)


def _cookie_options() -> dict:
    secure = bool(current_app.config.get("SESSION_COOKIE_SECURE")) or request.is_secure
    return {"httponly": True, "samesite": "Lax", "secure": secure, "path": "/"}


@ui.before_request
def load_session():
    """The session of this request's cookie (g.session, g.user), the CSRF token its forms carry, and the CSRF
    check of every form sent."""
    g.user = g.session = None
    if request.endpoint == "ui.static":
        return None
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        g.session = _sessions().resolve(token)
        if g.session is None:
            g.drop_session_cookie = True  # ended, expired or revoked: the browser forgets it too
        else:
            g.user = {"id": g.session.user_id, "username": g.session.username, "role": g.session.role}
    if g.session is not None:
        g.csrf_token = g.session.csrf_token
    else:
        g.csrf_token = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not 32 <= len(g.csrf_token) <= 64:
            g.csrf_token = secrets.token_urlsafe(32)
            g.new_login_csrf = True
    if request.method == "POST":
        if g.session is None and request.endpoint != "ui.login":
            return redirect(url_for("ui.login"))  # a form sent after its session ended (a logout too)
        sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
        if not hmac.compare_digest(sent.encode(), g.csrf_token.encode()):
            abort(400, description="This form has expired or did not come from this gateway (CSRF check). "
                                   "Reload the page and try again.")
    return None


@ui.after_request
def session_cookies(response):
    """Cookies follow the session: a new one after login, none after logout or once it is refused. No page of
    the UI is stored by the browser or a proxy (some show a new key or secret; all show a user's data)."""
    options = _cookie_options()
    if g.get("new_session_token"):
        response.set_cookie(SESSION_COOKIE, g.new_session_token, max_age=int(_sessions().lifetime), **options)
        response.delete_cookie(LOGIN_CSRF_COOKIE, **options)
    elif g.get("drop_session_cookie"):
        response.delete_cookie(SESSION_COOKIE, **options)
    if g.get("new_login_csrf") and not g.get("new_session_token"):
        response.set_cookie(LOGIN_CSRF_COOKIE, g.csrf_token, **options)
    if request.endpoint != "ui.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@ui.app_context_processor
def inject():
    return {"user": g.get("user"), "csrf_token": g.get("csrf_token", ""), "notices": _take_notices}


def login_required(role: str | None = None):
    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            if g.user is None:
                return redirect(url_for("ui.login", next=request.path))
            if role == "admin" and g.user["role"] != "admin":
                abort(403, description="Only administrators can do this.")
            return view(*args, **kwargs)
        return wrapper
    return decorate


# --- login, logout, own account --------------------------------------------------------------------------------

def _local_target(target: str) -> str | None:
    """`target` when it is a path on this site; never another host (//host, /\\host, scheme:, or any of them
    hidden behind whitespace or control characters that browsers drop)."""
    from urllib.parse import urlsplit

    if not target.startswith("/") or any(char <= " " or char == "\x7f" or char == "\\" for char in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or target.startswith("//"):
        return None
    return target


def _start_session(user: dict) -> None:
    """A new session for `user` (a store row) in place of this request's, sent as this response's cookie."""
    if g.session is not None:
        _sessions().end(g.session)
    token, g.session = _sessions().open(user)
    g.new_session_token = token
    g.user = {"id": g.session.user_id, "username": g.session.username, "role": g.session.role}


@ui.route("/ui/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        return render_template("login.html", error=None)
    username = request.form.get("username", "").strip()
    try:
        user = auth.check_login(_store(), _throttle(), username, request.form.get("password", ""))
    except auth.LoginError as error:
        if error.status == 401:  # not the refusals without a check: they could flood the log
            log.warning("web UI login failed for %r from %s", username, request.remote_addr)
        headers = {"Retry-After": str(error.retry_after)} if error.retry_after else {}
        return render_template("login.html", error=error.detail), error.status, headers
    _start_session(user)
    log.info("web UI login: %s from %s", user["username"], request.remote_addr)
    return redirect(_local_target(request.args.get("next", "")) or url_for("ui.dashboard"))


@ui.post("/ui/logout")
def logout():
    _sessions().end(g.session)
    current_app.extensions["modemgw.notices"].take(g.session.token_hash)
    g.drop_session_cookie = True
    return redirect(url_for("ui.login"))


@ui.route("/ui/account", methods=["GET", "POST"])
@login_required()
def account():
    """Any user changes their own password; their other sessions end, this browser gets a new one."""
    error = None
    if request.method == "POST":
        new = request.form.get("new_password", "")
        try:
            if new != request.form.get("repeat_password", ""):
                raise UserError("the two new passwords differ")
            auth.check_login(_store(), _throttle(), g.user["username"], request.form.get("password", ""))
            auth.set_password(_store(), g.user["id"], new)
            _start_session(_store().user(g.user["id"]))
            notice("Password changed. Your other sessions have ended.")
            return redirect(url_for("ui.account"))
        except auth.LoginError as refused:
            error = "The current password is wrong." if refused.status == 401 else refused.detail
        except (UserError, NotFound) as refused:
            error = str(refused)
    return render_template("account.html", error=error), 200 if error is None else 400


# --- dashboard --------------------------------------------------------------------------------------------

def _today_start() -> float:
    now = time.localtime()
    return time.mktime((now.tm_year, now.tm_mon, now.tm_mday, 0, 0, 0, 0, 0, -1))


def _dashboard_data() -> dict:
    store, daemon = _store(), _daemon()
    start = _today_start()
    per_modem: defaultdict[int, dict[str, int]] = defaultdict(lambda: {"sent": 0, "delivered": 0, "failed": 0})
    for row in store.status_counts_by_modem(start):
        bucket = per_modem[row["modem_id"]]
        if row["status"] in ("sent", "delivered", "undelivered"):
            bucket["sent"] += row["count"]
        if row["status"] == "delivered":
            bucket["delivered"] += row["count"]
        if row["status"] in ("failed", "undelivered"):
            bucket["failed"] += row["count"]
    states = {worker.modem_id: worker.state for worker in daemon.pool.workers}
    modems = []
    for row in store.modems():
        signal = row["signal_dbm"]
        bars = 0 if signal is None else sum(1 for threshold in (-105, -95, -85, -75, -65) if signal >= threshold)
        quota = row["quota_day"]
        used = row["sent_day"] if row["day_key"] == time.strftime("%Y-%m-%d") else 0
        modems.append({"id": row["id"], "label": row["label"], "operator": row["operator"] or "—",
                       "signal_dbm": signal, "bars": bars, "registration": row["registration"] or "—",
                       "state": states.get(row["id"], "offline"), "enabled": bool(row["enabled"]),
                       "today": per_modem[row["id"]], "quota": f"{used} / {quota}" if quota else f"{used} / —"})
    totals = {"sent": 0, "delivered": 0, "failed": 0}
    for bucket in per_modem.values():
        for name in totals:
            totals[name] += bucket[name]
    return {"modems": modems, "queue": store.queue_depth(), "totals": totals}


def _throughput_svg() -> str:
    """Messages sent per hour over the last 24 hours, as an inline SVG bar chart made here."""
    now = time.time()
    hours = [0] * 24
    for sent_at in _store().sent_times(now - 24 * 3600):
        index = min(23, int((now - sent_at) // 3600))
        hours[23 - index] += 1
    top = max(hours) or 1
    width, height, bar = 480, 120, 20
    rects = []
    for position, count in enumerate(hours):
        size = round((height - 20) * count / top)
        rects.append(f'<rect x="{position * bar + 2}" y="{height - 15 - size}" width="{bar - 4}" height="{size}">'
                     f"<title>{count} sent, {23 - position} h ago</title></rect>")
    return (f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="Messages sent per hour, '
            f'last 24 hours; busiest hour {top}">' + "".join(rects) +
            f'<text x="0" y="{height - 2}">24 h ago</text><text x="{width - 30}" y="{height - 2}">now</text></svg>')


@ui.get("/")
@login_required()
def dashboard():
    return render_template("dashboard.html", data=_dashboard_data(), chart=_throughput_svg())


@ui.get("/ui/dashboard.json")
@login_required()
def dashboard_json():
    return jsonify(_dashboard_data())


# --- compose ----------------------------------------------------------------------------------------------

def _recipients_from_form() -> tuple[list[str] | None, list[dict] | None, list[str]]:
    """(plain numbers, or recipients with CSV fields, and the CSV's column names)."""
    upload = request.files.get("csv")
    if upload and upload.filename:
        raw = upload.read().decode("utf-8-sig", errors="replace")
        reader = csv.DictReader(io.StringIO(raw))
        columns = list(reader.fieldnames or [])
        phone = next((name for name in columns if name.strip().lower() in ("to", "phone", "number", "mobile")), None)
        if phone is None:
            raise SubmitError("the CSV needs a column named to, phone, number or mobile", "csv")
        rows: list[dict] = [{"to": row[phone], "fields": {key.strip(): value for key, value in row.items() if key}}
                            for row in reader if row.get(phone)]
        return None, rows, columns
    numbers = [item.strip() for item in request.form.get("to", "").replace(";", "\n").replace(",", "\n")
               .splitlines() if item.strip()]
    return numbers, None, []


def _submit_options() -> dict:
    form = request.form
    options = {"priority": int(form.get("priority") or 0), "spintax": form.get("spintax") == "on",
               "smart_encoding": form.get("smart") == "on", "route": form.get("modem") or None}
    if form.get("send_at"):
        options["send_at"] = dt.datetime.fromisoformat(form["send_at"]).astimezone().isoformat()
    return options


@ui.route("/ui/compose", methods=["GET", "POST"])
@login_required()
def compose():
    modems = _store().modems()
    if request.method == "GET":
        return render_template("compose.html", modems=modems, form={})
    body = request.form.get("body", "").replace("\r\n", "\n")
    try:
        if request.form.get("recipients_json"):  # the confirmation step carries the CSV's rows
            numbers, recipients, columns = None, json.loads(request.form["recipients_json"]), []
            if not isinstance(recipients, list) or not all(isinstance(item, dict) for item in recipients):
                raise SubmitError("the recipient list of this form is damaged; start again from Compose", "csv")
        else:
            numbers, recipients, columns = _recipients_from_form()
        options = _submit_options()
        count = len(recipients if recipients is not None else numbers)
        if count == 0:
            raise SubmitError("add at least one recipient (or upload a CSV)", "to")
        info = text.info(body or " ", smart=options["smart_encoding"])
        opted = _store().optouts_among([item if isinstance(item, str) else item["to"]
                                        for item in (numbers or recipients or [])])
        if request.form.get("confirm") != "yes":
            return render_template("confirm.html", body=body, numbers=numbers, recipients=recipients,
                                   columns=columns, count=count, info=info, opted=len(opted), form=request.form,
                                   recipients_json=json.dumps(recipients) if recipients else "")
        result = _daemon().gateway.submit(body, numbers, recipients=recipients, **options)
    except (SubmitError, ValueError) as error:
        detail = getattr(error, "detail", str(error))
        return render_template("compose.html", modems=modems, form=request.form, error=detail), 400
    except StoreError as error:  # the form stays filled in, to be sent again when the database works
        return (render_template("compose.html", modems=modems, form=request.form, error=_storage_message(error)),
                503, {"Retry-After": str(STORAGE_RETRY_AFTER)})
    notice(f"Queued {len(result['messages'])} message(s), {result['segments']} segment(s); "
          f"{len(result['skipped'])} skipped (opted out or repeated).")
    if len(result["messages"]) == 1:
        return redirect(url_for("ui.message", message_id=result["messages"][0]["id"]))
    return redirect(url_for("ui.messages"))


@ui.post("/ui/preview")
@login_required()
def preview():
    body = request.form.get("body", "")
    try:
        rendered = text.render(body, spintax=True, seed=0) if request.form.get("spintax") == "on" else body
        info = text.info(rendered or "", smart=request.form.get("smart") == "on")
    except text.TextError as error:
        return jsonify(error=str(error)), 400
    return jsonify(info.as_dict() | {"text": rendered})


# --- messages ---------------------------------------------------------------------------------------------

@ui.get("/ui/messages")
@login_required()
def messages():
    args = request.args
    rows = _store().recent_messages(200, status=args.get("status") or None, search=args.get("q") or None)
    return render_template("messages.html", rows=rows, args=args)


@ui.get("/ui/messages/<id:message_id>")
@login_required()
def message(message_id: int):
    try:
        row = _daemon().gateway.message(message_id)
    except NotFound:
        abort(404)
    labels = {modem["id"]: modem["label"] for modem in _store().modems()}
    return render_template("message.html", m=row, labels=labels)


@ui.post("/ui/messages/<id:message_id>/cancel")
@login_required()
def cancel(message_id: int):
    status = _daemon().gateway.cancel(message_id)
    notice("Canceled." if status == "canceled" else f"Not canceled: the message is {status}.")
    return redirect(url_for("ui.message", message_id=message_id))


@ui.post("/ui/messages/<id:message_id>/resend")
@login_required()
def resend(message_id: int):
    row = _store().message(message_id)
    result = _daemon().gateway.submit(row["body"], row["recipient"], priority=row["priority"])
    notice("Sent again as a new message.")
    return redirect(url_for("ui.message", message_id=result["messages"][0]["id"]))


# --- inbox ------------------------------------------------------------------------------------------------

@ui.get("/ui/inbox")
@login_required()
def inbox():
    return render_template("inbox.html", conversations=_store().conversations(200))


@ui.route("/ui/inbox/<path:number>", methods=["GET", "POST"])
@login_required()
def conversation(number: str):
    store = _store()
    if request.method == "POST":
        body = request.form.get("body", "").replace("\r\n", "\n")
        try:
            _daemon().gateway.submit(body, number)
            notice("Reply queued.")
        except SubmitError as error:
            notice(f"Not sent: {error.detail}")
        except StoreError as error:
            notice(f"Not sent: {_storage_message(error)}")
        return redirect(url_for("ui.conversation", number=number))
    inbound = [row | {"direction": "in", "at": row["received_at"]} for row in store.inbox_from(number)]
    outbound = [row | {"direction": "out", "at": row["created_at"]}
                for row in store.recent_messages(100, recipient=number)]
    if request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none"):
        store.mark_read(number)  # opened by a person here, not by another site's <img> or link
    thread = sorted(inbound + outbound, key=lambda item: item["at"])
    return render_template("conversation.html", number=number, thread=thread)


# --- modems -----------------------------------------------------------------------------------------------

@ui.get("/ui/modems")
@login_required()
def modems():
    return render_template("modems.html", data=_dashboard_data())


@ui.route("/ui/modems/<id:modem_id>", methods=["GET", "POST"])
@login_required()
def modem(modem_id: int):
    store, daemon = _store(), _daemon()
    try:
        row = store.modem(modem_id)
    except NotFound:
        abort(404)
    result = None
    if request.method == "POST":
        action = request.form.get("action")
        if action in ("settings", "at") and g.user["role"] != "admin":
            abort(403, description="Only administrators can change modem settings or use the AT console.")
        try:
            if action == "settings":
                fields: dict[str, int | str | None] = {"enabled": 1 if request.form.get("enabled") == "on" else 0}
                for name in ("rate_per_minute", "quota_day", "quota_month"):
                    value = request.form.get(name, "").strip()
                    fields[name] = int(value) if value else None
                label = request.form.get("label", row["label"]).strip()
                if not label or len(label) > 40:
                    raise ValueError("a label has 1 to 40 characters")
                fields["label"] = label
                fields["grp"] = request.form.get("group", row["grp"] or "").strip() or None
                try:
                    row = store.update_modem(modem_id, **fields)
                except Duplicate:
                    raise ValueError(f"another modem is already labelled {label!r}") from None
                daemon.pool.refresh(modem_id)
                notice("Settings saved.")
            elif action == "ussd":
                code = request.form.get("code", "").strip()
                refusal = daemon.gateway.ussd_problem(code, admin=g.user["role"] == "admin")
                if refusal:
                    raise ValueError(refusal)
                reply = daemon.pool.run_on(modem_id, lambda m: m.ussd(code), timeout=60)
                store.log_event("modem.ussd", modem_id=modem_id, code=code, status=reply.status,
                                by=f"web UI user {g.user['username']}")
                result = {"kind": "ussd", "command": code, "lines": [reply.text or f"(status {reply.status})"],
                          "final": ""}
            elif action == "at":
                command = request.form.get("command", "").strip()
                from modemgw.api import at_command_problem

                problem_text = at_command_problem(command)
                if problem_text:
                    raise ValueError(problem_text)
                reply = daemon.pool.run_on(modem_id, lambda m: m.raw(command, 10), timeout=60)
                store.log_event("modem.at_command", modem_id=modem_id, command=redact(command), final=reply.final,
                                user=g.user["username"], by=f"web UI user {g.user['username']}")
                result = {"kind": "at", "command": command, "lines": reply.lines, "final": reply.final,
                          "elapsed": round(reply.elapsed * 1000)}
        except Exception as error:  # noqa: BLE001 - the modem's answer or failure is shown, never a crash page
            result = {"kind": "error", "command": request.form.get("command") or request.form.get("code") or "",
                      "lines": [str(error) or error.__class__.__name__], "final": "ERROR"}
    history = [event for event in store.events(modem_id=modem_id, limit=50) if event["kind"] == "modem.at_command"]
    for event in history:  # entries from before PINs were masked are masked when shown
        event["detail"]["command"] = redact(str(event["detail"].get("command", "")))
    try:
        configured = daemon.pool.worker(modem_id).config.label
    except KeyError:
        configured = None
    return render_template("modem.html", m=row, result=result, history=history, configured_label=configured)


# --- settings (admin) --------------------------------------------------------------------------------------

USER_ACTIONS = ("disable", "enable", "delete", "password")


def _user_action(store: Store, action: str) -> None:
    """An admin disables, enables or deletes another user, or gives them a new password. Raises UserError,
    NotFound, ValueError."""
    user_id = int(request.form.get("user_id", ""))
    if user_id == g.user["id"]:
        raise UserError("not your own account here (change your password under Account)")
    if action == "password":
        auth.set_password(store, user_id, request.form.get("password", ""))
        notice("Password set; that user's sessions have ended.")
    elif action == "delete":
        auth.delete_user(store, user_id)
        notice("User deleted; their sessions have ended.")
    else:
        auth.set_disabled(store, user_id, action == "disable")
        notice("User disabled; their sessions have ended." if action == "disable" else "User enabled.")


@ui.route("/ui/settings", methods=["GET", "POST"])
@login_required("admin")
def settings():
    """Keys, webhooks, users and opt-outs. A new key or webhook secret is shown on this response alone (which
    no browser stores), never put in a cookie."""
    store = _store()
    created_key = created_secret = None
    if request.method == "POST":
        action = request.form.get("action")
        try:
            if action == "key":
                scopes = auth.parse_scopes(request.form.getlist("scopes") or ["send"])
                created_key, _ = auth.create_key(store, request.form.get("name", ""), scopes)
            elif action == "revoke":
                auth.revoke_key(store, int(request.form["key_id"]))
                notice("Key revoked.")
            elif action == "webhook":
                events = request.form.getlist("events") or ["*"]
                created_secret = webhooks.create_webhook(store, request.form.get("url", ""), events)["secret"]
            elif action == "test-webhook":
                _daemon().webhooks.on_event("modem.online", {"test": True, "label": "test event"})
                notice("Test event queued for subscribers of modem.online or *.")
            elif action == "replay":
                _daemon().webhooks.redeliver(int(request.form["webhook_id"]), int(request.form["delivery_id"]))
                notice("Delivery queued again.")
            elif action == "user":
                add_user(store, request.form.get("username", ""), request.form.get("password", ""),
                         request.form.get("role", "operator"))
                notice("User added.")
            elif action in USER_ACTIONS:
                _user_action(store, action)
            elif action == "optout":
                from modemgw import numbers

                number = numbers.normalize(request.form.get("number", ""), _daemon().gateway.settings.default_region)
                store.add_optout(number, "ui", request.form.get("note") or None)
                notice(f"{number} opted out.")
            elif action == "optin":
                store.remove_optout(request.form.get("number", ""))
                notice("Removed from the opt-out list.")
        except (ValueError, NotFound, UserError) as error:
            notice(f"Not done: {error}")
    hooks = [hook | {"deliveries": webhooks.deliveries(store, hook["id"], 10)} for hook in webhooks.webhooks(store)]
    return render_template("settings.html", keys=auth.list_keys(store), created_key=created_key,
                           created_secret=created_secret, hooks=hooks, users=auth.list_users(store),
                           optouts=store.optouts(), events=webhooks.EVENTS)


@ui.app_errorhandler(403)
def forbidden(error):
    if request.path.startswith("/api/") or request.path == "/send":
        from modemgw.api import problem

        return problem(403, "forbidden", error.description)
    return render_template("error.html", code=403, message=error.description), 403


@ui.app_errorhandler(400)
def bad_request(error):
    if request.path.startswith("/api/") or request.path == "/send":
        from modemgw.api import problem

        return problem(400, "invalid-request", error.description)
    return render_template("error.html", code=400, message=error.description), 400


def _storage_message(error: StoreError) -> str:
    reason = {"full": "the disk is full", "locked": "the database is locked by another program"}.get(
        error.kind, "the database failed")
    saved = "" if request.method in ("GET", "HEAD") else "nothing was saved; "
    return f"{reason} ({error}): {saved}try again in a moment."


@ui.errorhandler(StoreError)
def storage_error(error: StoreError):
    """A page that says what happened, never a crash page (the API's own handler answers problem+json)."""
    if isinstance(error, NotFound):
        return render_template("error.html", code=404, title="Not found", message=str(error)), 404
    return (render_template("error.html", code=503, title="The database is unavailable",
                            message=_storage_message(error)), 503, {"Retry-After": str(STORAGE_RETRY_AFTER)})
