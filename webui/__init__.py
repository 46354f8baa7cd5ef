"""The web UI: a Flask blueprint with server-rendered pages, our own CSS and a little of our own JavaScript.

Sessions are signed cookies (HttpOnly, SameSite=Lax, Secure under HTTPS); every form carries a CSRF token;
failed logins are throttled; operators cannot touch keys, users, modem settings or the AT console.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import json
import secrets
import threading
import time
from collections import defaultdict

from flask import (Blueprint, Flask, abort, current_app, flash, g, jsonify, redirect, render_template, request,
                   session, url_for)
from werkzeug.security import check_password_hash, generate_password_hash

from modemgw import auth, text, webhooks
from modemgw.api import STORAGE_RETRY_AFTER
from modemgw.gateway import SubmitError
from modemgw.store import NotFound, Store, StoreError

ui = Blueprint("ui", __name__, template_folder="templates", static_folder="static", static_url_path="/ui/static")

ROLES = ("admin", "operator")
LOGIN_ATTEMPTS = 5          # failures before a pause
LOGIN_PAUSE = 60.0          # seconds
# werkzeug's scrypt takes 32 MiB for each check: at most two at once (a burst of logins must not cost a Pi
# hundreds of MB), and the dummy hash for unknown users is made at the first login, not at import (start-up peak).
_HASHING = threading.BoundedSemaphore(2)
_dummy_hash: str | None = None


def _check_password(stored: str | None, password: str) -> bool:
    """The same work whether the user exists or not (`stored` None: a dummy hash is checked)."""
    global _dummy_hash
    with _HASHING:
        if stored is None:
            if _dummy_hash is None:
                _dummy_hash = generate_password_hash(secrets.token_hex(16))
            check_password_hash(_dummy_hash, password)
            return False
        return check_password_hash(stored, password)


class UserError(ValueError):
    pass


def add_user(store: Store, username: str, password: str, role: str) -> int:
    """Create a web UI user; the password is stored hashed. Raises UserError."""
    if role not in ROLES:
        raise UserError(f"role must be admin or operator, not {role!r}")
    if not username.strip() or len(username) > 64:
        raise UserError("a username needs 1 to 64 characters")
    if len(password) < 10:
        raise UserError("a password needs at least 10 characters")
    try:
        with store.transaction() as conn:
            cursor = conn.execute("INSERT INTO users (username, password_hash, role, created_at) VALUES (?, ?, ?, ?)",
                                  (username.strip(), generate_password_hash(password), role, time.time()))
    except StoreError as error:
        raise UserError(f"user {username!r} exists already" if error.kind == "constraint" else str(error)) from None
    return cursor.lastrowid


def secret_key(store: Store) -> str:
    """The key that signs session cookies, made once per gateway and kept in its database."""
    return store.setting("session_secret", lambda: secrets.token_hex(32))


def init_app(app: Flask, daemon) -> None:
    app.secret_key = secret_key(daemon.store)
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=12))
    app.extensions["modemgw.login_failures"] = defaultdict(list)
    app.register_blueprint(ui)


# --- helpers ------------------------------------------------------------------------------------------------

def _daemon():
    return current_app.extensions["modemgw"]


def _store() -> Store:
    return _daemon().store


def _when(value: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value)) if value else "—"


@ui.app_template_filter("when")
def when_filter(value):
    return _when(value)


@ui.before_app_request
def load_user():
    g.user = None
    user_id = session.get("user_id")
    if user_id is not None:
        rows = _store().query("SELECT id, username, role, disabled FROM users WHERE id = ?", (user_id,))
        if rows and not rows[0]["disabled"]:
            g.user = dict(rows[0])
    if request.blueprint == "ui" and request.method == "POST":
        sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token")
        if not sent or not secrets.compare_digest(sent, session.get("csrf_token", "")):
            abort(400, description="This form has expired or did not come from this gateway (CSRF check). "
                                   "Reload the page and try again.")
    if request.blueprint == "ui" and request.url_rule is not None and request.url_rule.rule.startswith("/ui/static"):
        return None
    if request.blueprint == "ui":
        session.setdefault("csrf_token", secrets.token_urlsafe(32))
        if request.is_secure:
            current_app.config["SESSION_COOKIE_SECURE"] = True
    return None


@ui.app_context_processor
def inject():
    return {"user": g.get("user"), "csrf_token": session.get("csrf_token", "")}


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


# --- login ------------------------------------------------------------------------------------------------

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


@ui.route("/ui/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        failures = current_app.extensions["modemgw.login_failures"]
        key = (username.lower(), request.remote_addr)
        recent = [moment for moment in failures.get(key, []) if moment > time.time() - LOGIN_PAUSE]
        for stale in [other for other, moments in failures.items() if not moments or moments[-1] < time.time() - LOGIN_PAUSE]:
            del failures[stale]  # forget old failures so the table cannot grow without end
        failures[key] = recent
        if len(recent) >= LOGIN_ATTEMPTS:
            error = f"Too many failed attempts; wait {int(LOGIN_PAUSE)} seconds."
        else:
            rows = _store().query("SELECT * FROM users WHERE username = ? AND disabled = 0", (username,))
            stored = rows[0]["password_hash"] if rows else None
            if _check_password(stored, request.form.get("password", "")) and rows:
                session.clear()
                session["user_id"] = rows[0]["id"]
                session["csrf_token"] = secrets.token_urlsafe(32)
                session.permanent = True
                # bookkeeping only: one must be able to log in and look at a full or locked gateway
                _store().note_login(rows[0]["id"], time.time())
                return redirect(_local_target(request.args.get("next", "")) or url_for("ui.dashboard"))
            failures[key].append(time.time())
            error = "Wrong username or password."
    return render_template("login.html", error=error), 200 if error is None else 401


@ui.post("/ui/logout")
def logout():
    session.clear()
    return redirect(url_for("ui.login"))


# --- dashboard --------------------------------------------------------------------------------------------

def _today_start() -> float:
    now = time.localtime()
    return time.mktime((now.tm_year, now.tm_mon, now.tm_mday, 0, 0, 0, 0, 0, -1))


def _dashboard_data() -> dict:
    store, daemon = _store(), _daemon()
    start = _today_start()
    per_modem = defaultdict(lambda: {"sent": 0, "delivered": 0, "failed": 0})
    for row in store.query("SELECT modem_id, status, COUNT(*) AS n FROM messages WHERE created_at >= ? "
                           "GROUP BY modem_id, status", (start,)):
        bucket = per_modem[row["modem_id"]]
        if row["status"] in ("sent", "delivered", "undelivered"):
            bucket["sent"] += row["n"]
        if row["status"] == "delivered":
            bucket["delivered"] += row["n"]
        if row["status"] in ("failed", "undelivered"):
            bucket["failed"] += row["n"]
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
    for row in _store().query("SELECT sent_at FROM messages WHERE sent_at >= ?", (now - 24 * 3600,)):
        index = min(23, int((now - row[0]) // 3600))
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
        columns = reader.fieldnames or []
        phone = next((name for name in columns if name.strip().lower() in ("to", "phone", "number", "mobile")), None)
        if phone is None:
            raise SubmitError("the CSV needs a column named to, phone, number or mobile", "csv")
        rows = [{"to": row[phone], "fields": {key.strip(): value for key, value in row.items() if key}}
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
    flash(f"Queued {len(result['messages'])} message(s), {result['segments']} segment(s); "
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
    clauses, params = [], []
    if args.get("status"):
        clauses.append("status = ?")
        params.append(args["status"])
    if args.get("q"):
        clauses.append("(recipient LIKE ? OR body LIKE ? OR client_ref = ?)")
        params += [f"%{args['q']}%", f"%{args['q']}%", args["q"]]
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = _store().query(f"SELECT * FROM messages {where} ORDER BY id DESC LIMIT 200", params)
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
    flash("Canceled." if status == "canceled" else f"Not canceled: the message is {status}.")
    return redirect(url_for("ui.message", message_id=message_id))


@ui.post("/ui/messages/<id:message_id>/resend")
@login_required()
def resend(message_id: int):
    row = _store().message(message_id)
    result = _daemon().gateway.submit(row["body"], row["recipient"], priority=row["priority"])
    flash("Sent again as a new message.")
    return redirect(url_for("ui.message", message_id=result["messages"][0]["id"]))


# --- inbox ------------------------------------------------------------------------------------------------

@ui.get("/ui/inbox")
@login_required()
def inbox():
    rows = _store().query("SELECT sender, COUNT(*) AS total, SUM(read = 0) AS unread, MAX(received_at) AS last, "
                          "(SELECT body FROM inbox i2 WHERE i2.sender = inbox.sender ORDER BY id DESC LIMIT 1) "
                          "AS latest FROM inbox GROUP BY sender ORDER BY last DESC LIMIT 200")
    return render_template("inbox.html", conversations=rows)


@ui.route("/ui/inbox/<path:number>", methods=["GET", "POST"])
@login_required()
def conversation(number: str):
    store = _store()
    if request.method == "POST":
        body = request.form.get("body", "").replace("\r\n", "\n")
        try:
            _daemon().gateway.submit(body, number)
            flash("Reply queued.")
        except SubmitError as error:
            flash(f"Not sent: {error.detail}")
        except StoreError as error:
            flash(f"Not sent: {_storage_message(error)}")
        return redirect(url_for("ui.conversation", number=number))
    inbound = [dict(row) | {"direction": "in", "at": row["received_at"]}
               for row in store.query("SELECT * FROM inbox WHERE sender = ? ORDER BY id", (number,))]
    outbound = [dict(row) | {"direction": "out", "at": row["created_at"]}
                for row in store.query("SELECT * FROM messages WHERE recipient = ? ORDER BY id DESC LIMIT 100",
                                       (number,))]
    if request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none"):
        with store.transaction() as conn:  # opened by a person here, not by another site's <img> or link
            conn.execute("UPDATE inbox SET read = 1 WHERE sender = ?", (number,))
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
                fields = {"enabled": 1 if request.form.get("enabled") == "on" else 0}
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
                except StoreError as error:
                    if error.kind == "constraint":
                        raise ValueError(f"another modem is already labelled {label!r}") from None
                    raise
                daemon.pool.refresh(modem_id)
                flash("Settings saved.")
            elif action == "ussd":
                code = request.form.get("code", "").strip()
                if not code or any(char not in "0123456789*#+" for char in code):
                    raise ValueError("a USSD code has only digits, * and #, e.g. *100#")
                reply = daemon.pool.run_on(modem_id, lambda m: m.ussd(code), timeout=60)
                result = {"kind": "ussd", "command": code, "lines": [reply.text or f"(status {reply.status})"],
                          "final": ""}
            elif action == "at":
                command = request.form.get("command", "").strip()
                from modemgw.api import at_command_problem

                problem_text = at_command_problem(command)
                if problem_text:
                    raise ValueError(problem_text)
                reply = daemon.pool.run_on(modem_id, lambda m: m.raw(command, 10), timeout=60)
                store.log_event("modem.at_command", modem_id=modem_id, command=command, final=reply.final,
                                user=g.user["username"])
                result = {"kind": "at", "command": command, "lines": reply.lines, "final": reply.final,
                          "elapsed": round(reply.elapsed * 1000)}
        except (ValueError, KeyError, TimeoutError, Exception) as error:  # shown to the user, never a crash page
            result = {"kind": "error", "command": request.form.get("command") or request.form.get("code"),
                      "lines": [str(error) or error.__class__.__name__], "final": "ERROR"}
    history = [event for event in store.events(modem_id=modem_id, limit=50) if event["kind"] == "modem.at_command"]
    try:
        configured = daemon.pool.worker(modem_id).config.label
    except KeyError:
        configured = None
    return render_template("modem.html", m=row, result=result, history=history, configured_label=configured)


# --- settings (admin) --------------------------------------------------------------------------------------

@ui.route("/ui/settings", methods=["GET", "POST"])
@login_required("admin")
def settings():
    store = _store()
    created_key = None
    if request.method == "POST":
        action = request.form.get("action")
        try:
            if action == "key":
                scopes = auth.parse_scopes(request.form.getlist("scopes") or ["send"])
                created_key, _ = auth.create_key(store, request.form.get("name", ""), scopes)
            elif action == "revoke":
                auth.revoke_key(store, int(request.form["key_id"]))
                flash("Key revoked.")
            elif action == "webhook":
                events = request.form.getlist("events") or ["*"]
                hook = webhooks.create_webhook(store, request.form.get("url", ""), events)
                flash(f"Webhook added; its signing secret: {hook['secret']}")
            elif action == "test-webhook":
                _daemon().webhooks.on_event("modem.online", {"test": True, "label": "test event"})
                flash("Test event queued for subscribers of modem.online or *.")
            elif action == "replay":
                _daemon().webhooks.redeliver(int(request.form["webhook_id"]), int(request.form["delivery_id"]))
                flash("Delivery queued again.")
            elif action == "user":
                add_user(store, request.form.get("username", ""), request.form.get("password", ""),
                         request.form.get("role", "operator"))
                flash("User added.")
            elif action == "optout":
                from modemgw import numbers

                number = numbers.normalize(request.form.get("number", ""), _daemon().gateway.settings.default_region)
                store.add_optout(number, "ui", request.form.get("note") or None)
                flash(f"{number} opted out.")
            elif action == "optin":
                store.remove_optout(request.form.get("number", ""))
                flash("Removed from the opt-out list.")
        except (ValueError, NotFound, UserError) as error:
            flash(f"Not done: {error}")
    hooks = [hook | {"deliveries": webhooks.deliveries(store, hook["id"], 10)} for hook in webhooks.webhooks(store)]
    return render_template("settings.html", keys=auth.list_keys(store), created_key=created_key, hooks=hooks,
                           users=store.query("SELECT id, username, role, last_login_at FROM users ORDER BY id"),
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
