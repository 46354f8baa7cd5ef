"""Web UI sessions and who is logged in: the server-side session store, its cookies, the CSRF check of every
form, login (checked by `modemgw.users` and its throttle), logout, and a user's own account page (their password,
their open sessions: this browser's marked, the others to end one by one or all at once). Logins (successful,
failed with the name tried, throttled), logouts, password changes and ended sessions go to the audit log.

Sessions live on the server (`Sessions`): the cookie (HttpOnly, SameSite=Lax, Secure under HTTPS or with
`secure_cookies`) carries only a random token, and nothing else ever goes into a cookie; one-time notices
("Settings saved.") are kept in memory (`Notices`). Every form carries a CSRF token derived from the session's
token (the login form's own, before there is a session, from a cookie of its own); wrong passwords slow down
their account (`users.LoginThrottle`); operators cannot reach the admin pages (`login_required("admin")`). A
script's request (a `.json` endpoint, or one that prefers JSON) whose session is gone gets 401 with a small JSON
body rather than the login page, so the page can say so (app.js shows "You were logged out").
Sessions are the web UI's alone, so they live here rather than with the API keys (`modemgw.auth`).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import abort, current_app, g, jsonify, redirect, render_template, request, url_for

from modemgw import users
from modemgw.store import NotFound, Store
from webui import audit, ui

log = logging.getLogger("modemgw.webui")

SESSION_COOKIE = "session"
LOGIN_CSRF_COOKIE = "login_csrf"  # the login form's CSRF token, before there is a session
SESSION_LIFETIME = 12 * 3600.0  # a session ends this long after its login, however much it is used
SESSION_IDLE = 2 * 3600.0       # ... or when unused this long
SESSION_TOUCH = 60.0            # its last use is written at most this often (SD cards wear)
SESSION_ID_LENGTH = 16          # hex digits of a token's SHA-256 that name a session on the pages (never the token)
HEX = frozenset("0123456789abcdef")


# --- the session store ------------------------------------------------------------------------------------------

def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def is_session_id(value: str) -> bool:
    """Whether `value` can be a session's public id (as `Sessions.listed` shows it)."""
    return len(value) == SESSION_ID_LENGTH and all(char in HEX for char in value)


@dataclass
class Session:
    """A live web UI session. `csrf_token` goes into its pages' forms; it is derived from the session's token
    (never stored), which it does not reveal."""

    token_hash: str
    user_id: int
    username: str
    role: str
    created_at: float
    last_seen_at: float
    expires_at: float
    csrf_token: str
    password_hash: str | None = None  # kept while unsaved: to save it later, and to notice a new password


class Sessions:
    """Web UI sessions kept on the server: the cookie carries a random token, the store its SHA-256, the user,
    and when the session began, was last used and ends. A session ends at logout, when its user is disabled,
    deleted or given a new password (whichever process did it: each request reads its row and user), after
    `lifetime`, or after `idle` unused; its last use is written at most every `touch_every` seconds.

    Logging in must work on a full or locked database: a session that cannot be written is kept in memory
    (checked against its user's row at each request, and saved when the database takes writes again), and a
    session ended while it cannot be deleted is remembered as ended until it is."""

    def __init__(self, store: Store, lifetime: float = SESSION_LIFETIME, idle: float = SESSION_IDLE,
                 touch_every: float = SESSION_TOUCH, max_entries: int = 10_000, clock=time.time):
        self.store = store
        self.lifetime, self.idle, self.touch_every = lifetime, idle, touch_every
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._unsaved: OrderedDict[str, Session] = OrderedDict()
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._addresses: OrderedDict[str, str] = OrderedDict()  # where each session was last used from

    @staticmethod
    def _csrf(token: str) -> str:
        return hmac.new(token.encode(), b"modemgw web UI forms", hashlib.sha256).hexdigest()

    def open(self, user: dict) -> tuple[str, Session]:
        """A new session for `user` (its store row, with the password hash): the token for the cookie, and the
        session. Records the login and forgets stale sessions when the database takes writes."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        session = Session(_token_hash(token), user["id"], user["username"], user["role"], now, now,
                          now + self.lifetime, self._csrf(token))
        if self.store.save_session(session.token_hash, user["id"], user["password_hash"], now, now,
                                   session.expires_at):
            self.store.note_login(user["id"], now)  # bookkeeping only
            self.store.end_stale_sessions(now, now - self.idle)
        else:
            session.password_hash = user["password_hash"]
            with self._lock:
                self._unsaved[session.token_hash] = session
                self._trim(self._unsaved)
        self._retry_ends()
        return token, session

    def resolve(self, token: str | None) -> Session | None:
        """The live session of a cookie's token, or None (no such session, ended, expired, or its user is
        disabled, deleted or has a new password). Raises StoreError when the database cannot be read."""
        if not token or len(token) > 128:
            return None
        token_hash = _token_hash(token)
        with self._lock:
            if token_hash in self._ended:
                return None
            unsaved = self._unsaved.get(token_hash)
        session = self._check_unsaved(unsaved) if unsaved else self._stored(token_hash, token)
        if session is None:
            return None
        now = self._clock()
        if now >= session.expires_at or now - session.last_seen_at >= self.idle:
            self.end(session)
            return None
        if now - session.last_seen_at >= self.touch_every:
            self._touch(session, now)
        return session

    def _stored(self, token_hash: str, token: str) -> Session | None:
        row = self.store.session(token_hash)
        if row is None or row["disabled"]:
            return None
        return Session(token_hash, row["user_id"], row["username"], row["role"], row["created_at"],
                       row["last_seen_at"], row["expires_at"], self._csrf(token))

    def _check_unsaved(self, session: Session) -> Session | None:
        try:
            user = self.store.user(session.user_id)
        except NotFound:
            user = None
        if user is None or user["disabled"] or user["password_hash"] != session.password_hash:
            with self._lock:
                self._unsaved.pop(session.token_hash, None)
            return None
        return session

    def _touch(self, session: Session, now: float) -> None:
        if session.password_hash is None:
            self.store.touch_session(session.token_hash, now)  # when the database is busy: at the next request
            return
        session.last_seen_at = now
        if self.store.save_session(session.token_hash, session.user_id, session.password_hash,
                                   session.created_at, now, session.expires_at):
            with self._lock:
                self._unsaved.pop(session.token_hash, None)
            session.password_hash = None

    def end(self, session: Session) -> None:
        """End a session (logout) at once, also while the database cannot delete it yet."""
        with self._lock:
            self._unsaved.pop(session.token_hash, None)
            self._addresses.pop(session.token_hash, None)
        if not self.store.end_session(session.token_hash):
            with self._lock:
                self._ended[session.token_hash] = None
                self._trim(self._ended)
        self._retry_ends()

    # --- what a person sees of their sessions, and ends ---------------------------------------------------------
    # A session is shown by a short public id (the first 16 hex digits of its token's SHA-256): enough to tell a
    # user's sessions apart and to end one, and useless for taking it over (the cookie's token cannot be found
    # from it). Where a session was last used from is kept in memory only (the sessions table has no column for
    # it, and it changes with every network a phone joins): after a restart it is known again from its next use.

    def note_address(self, session: Session, address: str | None) -> None:
        """Remember the client address `session` was last used from."""
        if not address:
            return
        with self._lock:
            self._addresses[session.token_hash] = address[:64]
            self._addresses.move_to_end(session.token_hash)
            self._trim(self._addresses)

    def listed(self, user_id: int | None = None, current: Session | None = None) -> list[dict]:
        """The live sessions of one user (of every user when None), last used first, each a dict: `id` (its
        public id), `user_id`, `created_at`, `last_seen_at`, `expires_at`, `address` (last used from, or None
        when this process has not seen it used) and `current` (it is `current`, this browser's). Raises
        StoreError."""
        rows = self.store.user_sessions(user_id)
        now = self._clock()
        with self._lock:
            ended = set(self._ended)
            unsaved = [session for session in self._unsaved.values() if user_id in (None, session.user_id)]
            addresses = {row["token_hash"]: self._addresses.get(row["token_hash"]) for row in rows}
            addresses.update((session.token_hash, self._addresses.get(session.token_hash)) for session in unsaved)
        stored = {row["token_hash"] for row in rows}
        rows += [{"token_hash": session.token_hash, "user_id": session.user_id, "created_at": session.created_at,
                  "last_seen_at": session.last_seen_at, "expires_at": session.expires_at}
                 for session in unsaved if session.token_hash not in stored]
        live = [row for row in rows if row["token_hash"] not in ended and now < row["expires_at"]
                and now - row["last_seen_at"] < self.idle]
        live.sort(key=lambda row: (row["last_seen_at"], row["created_at"]), reverse=True)
        return [{"id": row["token_hash"][:SESSION_ID_LENGTH], "user_id": row["user_id"],
                 "created_at": row["created_at"], "last_seen_at": row["last_seen_at"],
                 "expires_at": row["expires_at"], "address": addresses.get(row["token_hash"]),
                 "current": current is not None and row["token_hash"] == current.token_hash} for row in live]

    def revoke(self, user_id: int, session_id: str) -> bool:
        """End the session of `user_id` whose public id is `session_id`, at once: whether there was one.
        Raises StoreError (nothing ended: the person must learn it)."""
        if not is_session_id(session_id):
            return False
        with self._lock:
            gone = [token_hash for token_hash, session in self._unsaved.items()
                    if session.user_id == user_id and token_hash.startswith(session_id)]
            self._forget(gone)
        return self.store.end_user_sessions(user_id, prefix=session_id) + len(gone) > 0

    def revoke_all(self, user_id: int, keep: Session | None = None) -> None:
        """End every session of `user_id` at once, but `keep` (this browser's, when a user ends their others).
        Raises StoreError."""
        keep_hash = keep.token_hash if keep is not None else None
        with self._lock:
            self._forget([token_hash for token_hash, session in self._unsaved.items()
                          if session.user_id == user_id and token_hash != keep_hash])
        self.store.end_user_sessions(user_id, keep=keep_hash)

    def _forget(self, token_hashes: list[str]) -> None:
        """Drop unsaved sessions (under the lock)."""
        for token_hash in token_hashes:
            self._unsaved.pop(token_hash, None)
            self._addresses.pop(token_hash, None)

    def _retry_ends(self) -> None:
        with self._lock:
            pending = list(self._ended)
        for token_hash in pending:
            if not self.store.end_session(token_hash):
                return
            with self._lock:
                self._ended.pop(token_hash, None)

    def _trim(self, table: OrderedDict) -> None:
        while len(table) > self.max_entries:
            table.popitem(last=False)


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


# --- per request: the session, its cookies, the CSRF check -------------------------------------------------------

def _sessions() -> Sessions:
    return current_app.extensions["modemgw.sessions"]


def app_sessions() -> Sessions:
    """This app's session store: the users section of Settings lists and ends other users' sessions with it."""
    return _sessions()


def _throttle() -> users.LoginThrottle:
    return current_app.extensions["modemgw.login_throttle"]


def _store() -> Store:
    return current_app.extensions["modemgw"].store


def notice(message: str) -> None:
    """Show `message` once, on this session's next page (this one, when it renders a page)."""
    if g.get("session") is not None:
        current_app.extensions["modemgw.notices"].add(g.session.token_hash, message)


def _take_notices() -> list[str]:
    if g.get("session") is None:
        return []
    return current_app.extensions["modemgw.notices"].take(g.session.token_hash)


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
            _sessions().note_address(g.session, request.remote_addr)
    if g.session is not None:
        g.csrf_token = g.session.csrf_token
    else:
        g.csrf_token = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not 32 <= len(g.csrf_token) <= 64:
            g.csrf_token = secrets.token_urlsafe(32)
            g.new_login_csrf = True
    if request.method == "POST":
        if g.session is None and request.endpoint != "ui.login":
            if wants_json():  # a script's request (the compose counter): it must learn, not follow a redirect
                return logged_out()
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
    # only with a page (the login form carries the token): a logged-out page's poll answered 401 at the same
    # moment would set a token of its own over the form's, and the login would fail its CSRF check
    if g.get("new_login_csrf") and not g.get("new_session_token") and response.mimetype == "text/html":
        response.set_cookie(LOGIN_CSRF_COOKIE, g.csrf_token, **options)
    if request.endpoint != "ui.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@ui.app_context_processor
def inject():
    return {"user": g.get("user"), "csrf_token": g.get("csrf_token", ""), "notices": _take_notices}


LOGGED_OUT = "You were logged out — log in again."


def wants_json() -> bool:
    """Whether this request is a script's rather than a page's: a JSON endpoint of the UI (its path ends with
    .json), or a request that prefers JSON to HTML (Accept). A script must be told that its session is gone: a
    redirect to the login page would be followed by fetch() and answer 200 with HTML."""
    if request.path.endswith(".json"):
        return True
    accepted = request.accept_mimetypes  # the quality of each ("*/*": equal, so a page's)
    return accepted["application/json"] > accepted["text/html"]


def logged_out():
    """The answer to a script whose session is gone (logged out, ended, expired, the user disabled or deleted):
    401 with a small JSON body, which the UI's scripts show as a notice with a link to log in again."""
    response = jsonify(error="logged_out", detail=LOGGED_OUT, login=url_for("ui.login"))
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Session realm="modemgw web UI"'  # a cookie session: no browser prompt
    return response


def login_required(role: str | None = None):
    """A view for logged-in users only (others go to the login page; a script's request, `wants_json`, gets 401
    with a JSON body instead); `role="admin"`: for admins only (403)."""
    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            if g.user is None:
                if wants_json():
                    return logged_out()
                return redirect(url_for("ui.login", next=request.path))
            if role == "admin" and g.user["role"] != "admin":
                abort(403, description="Only administrators can do this.")
            return view(*args, **kwargs)
        return wrapper
    return decorate


# --- login, logout, own account --------------------------------------------------------------------------------

def local_target(target: str) -> str | None:
    """`target` when it is a path on this site; never another host (//host, /\\host, scheme:, or any of them
    hidden behind whitespace or control characters that browsers drop)."""
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
    _sessions().note_address(g.session, request.remote_addr)
    g.new_session_token = token
    g.user = {"id": g.session.user_id, "username": g.session.username, "role": g.session.role}


THROTTLED_AUDIT_EVERY = 60.0  # seconds between two `login.throttled` entries for one account
_THROTTLED_LOCK = threading.Lock()


def _audit_refused_login(username: str, error: users.LoginError) -> None:
    """A refused login in the audit log, with the name tried: `login.failure` for a wrong name or password (each
    cost a password check, which the throttle bounds), `login.throttled` for an attempt the throttle refused
    unchecked, at most once a minute for each account (they cost nothing, so they could flood the log). The
    refusals of names longer than any can be are left out for the same reason."""
    target = f"user {username}" if username else None
    if error.status in (401, 403):  # 403: a disabled account's right password
        try:
            known = users.find_user(_store(), username)
        except users.UserError:
            known = None
        audit("login.failure", target, {"known_user": known is not None,
                                        "disabled": bool(known and known["disabled"])}, ok=False, actor="anonymous")
    elif error.status == 429:
        now = time.monotonic()
        noted: OrderedDict[str, float] = current_app.extensions.setdefault("modemgw.throttled_audit", OrderedDict())
        key = username.lower()
        with _THROTTLED_LOCK:
            if now - noted.get(key, -THROTTLED_AUDIT_EVERY) < THROTTLED_AUDIT_EVERY:
                return
            noted[key] = now
            noted.move_to_end(key)
            while len(noted) > 1000:
                noted.popitem(last=False)
        audit("login.throttled", target, {"retry_after": error.retry_after}, ok=False, actor="anonymous")


@ui.route("/ui/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        return render_template("login.html", error=None)
    username = request.form.get("username", "").strip()
    try:
        user = users.check_login(_store(), _throttle(), username, request.form.get("password", ""))
    except users.LoginError as error:
        if error.status in (401, 403):  # not the refusals without a check: they could flood the log
            log.warning("web UI login failed for %r from %s%s", username, request.remote_addr,
                        " (the account is disabled)" if error.status == 403 else "")
        _audit_refused_login(username, error)
        headers = {"Retry-After": str(error.retry_after)} if error.retry_after else {}
        return render_template("login.html", error=error.detail), error.status, headers
    _start_session(user)
    log.info("web UI login: %s from %s", user["username"], request.remote_addr)
    audit("login.success", f"user {user['username']}")
    return redirect(local_target(request.args.get("next", "")) or url_for("ui.dashboard"))


@ui.post("/ui/logout")
def logout():
    audit("logout", f"user {g.user['username']}")
    _sessions().end(g.session)
    current_app.extensions["modemgw.notices"].take(g.session.token_hash)
    g.drop_session_cookie = True
    return redirect(url_for("ui.login"))


def _own_sessions_action(action: str) -> None:
    """End one of this user's other sessions, or all of them (never this browser's: that is Log out)."""
    me = f"user {g.user['username']}"
    if action == "revoke-others":
        _sessions().revoke_all(g.user["id"], keep=g.session)
        audit("session.revoke_all", me, {"kept": "this session"})
        notice("Your other sessions have ended.")
        return
    session_id = request.form.get("session_id", "")
    if session_id == g.session.token_hash[:SESSION_ID_LENGTH] or not _sessions().revoke(g.user["id"], session_id):
        audit("session.revoke", me, {"session": session_id[:16]}, ok=False)
        notice("Not done: no such other session of yours (it may have ended already). To end this one, log out.")
        return
    audit("session.revoke", me, {"session": session_id})
    notice("That session has ended.")


def _change_own_password() -> str | None:
    """This user's new password (their other sessions end, this browser gets a new one); or why not."""
    new = request.form.get("new_password", "")
    store = _store()
    me = f"user {g.user['username']}"
    try:
        if new != request.form.get("repeat_password", ""):
            raise users.UserError("the two new passwords differ")
        users.check_login(store, _throttle(), g.user["username"], request.form.get("password", ""))
        users.set_password(store, g.user["id"], new)
        _start_session(users.get_user(store, g.user["id"]))
    except users.LoginError as refused:
        error = "The current password is wrong." if refused.status == 401 else refused.detail
    except (users.UserError, NotFound) as refused:
        error = str(refused)
    else:
        audit("user.password", me, {"own": True})
        notice("Password changed. Your other sessions have ended.")
        return None
    audit("user.password", me, {"own": True, "error": error}, ok=False)
    return error


@ui.route("/ui/account", methods=["GET", "POST"])
@login_required()
def account():
    """Any user changes their own password (their other sessions end, this browser gets a new one), sees their
    sessions (this browser's marked) and ends the others."""
    error = None
    if request.method == "POST":
        action = request.form.get("action", "password")
        if action in ("revoke", "revoke-others"):
            _own_sessions_action(action)
            return redirect(url_for("ui.account"))
        error = _change_own_password()
        if error is None:
            return redirect(url_for("ui.account"))
    sessions = _sessions().listed(g.user["id"], current=g.session)
    return render_template("account.html", error=error, sessions=sessions, idle_hours=_sessions().idle / 3600,
                           lifetime_hours=_sessions().lifetime / 3600), 200 if error is None else 400
