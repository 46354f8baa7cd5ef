"""API keys: created once and shown once, stored hashed, scoped, revocable, rate limited per key.

A key looks like `mgw_<prefix>_<secret>`: the prefix finds the row, the SHA-256 of the whole key is compared
in constant time. Keys are long random strings, so a fast hash is right for them (passwords, which people
choose, are hashed with werkzeug's slow scheme in the web UI).

Web UI users, their sessions and the login throttle live here too (the last part of this module).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from werkzeug import security

from modemgw.dispatch import RateWindow
from modemgw.store import Duplicate, NotFound, Store, StoreError

SCOPES = ("send", "read", "ussd", "admin")  # ussd: USSD codes of the allow-list (they can move money)


class AuthError(Exception):
    """Authentication failed (401) or the key lacks a scope (403: `status`)."""

    def __init__(self, detail: str, status: int = 401):
        super().__init__(detail)
        self.detail = detail
        self.status = status


@dataclass
class ApiKey:
    id: int
    name: str
    prefix: str
    scopes: tuple[str, ...]
    group: str | None
    rate_per_minute: int | None

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(text: str | list[str]) -> tuple[str, ...]:
    scopes = tuple(dict.fromkeys(item.strip() for item in (text.split(",") if isinstance(text, str) else text)
                                 if item.strip()))
    unknown = [scope for scope in scopes if scope not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"scopes must be a comma-separated list of {', '.join(SCOPES)}; got {text!r}")
    return scopes


def create_key(store: Store, name: str, scopes: tuple[str, ...], group: str | None = None,
               rate_per_minute: int | None = None) -> tuple[str, ApiKey]:
    """A new key; returns (the key itself, to be shown once, and its record)."""
    if not name.strip():
        raise ValueError("a key needs a name (who or what uses it)")
    prefix = secrets.token_hex(4)
    key = f"mgw_{prefix}_{secrets.token_urlsafe(24)}"
    key_id = store.add_api_key(name.strip(), prefix, _hash(key), ",".join(scopes), group, rate_per_minute, time.time())
    return key, ApiKey(key_id, name.strip(), prefix, scopes, group, rate_per_minute)


def list_keys(store: Store) -> list[dict]:
    """Every key's record (never its hash)."""
    return store.api_keys()


def revoke_key(store: Store, key_id: int) -> None:
    """Revoke a key now. Raises NotFound (no such key, or revoked already)."""
    store.revoke_key(key_id, time.time())


class Authenticator:
    """Checks bearer keys against the store, records last use, and applies per-key rate limits."""

    def __init__(self, store: Store):
        self.store = store
        self._windows: dict[int, RateWindow] = {}
        self._lock = threading.Lock()
        self._last_used: dict[int, float] = {}

    def authenticate(self, header: str | None) -> ApiKey:
        if not header:
            raise AuthError("no API key: send the header 'Authorization: Bearer <key>'")
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise AuthError("the Authorization header must be 'Bearer <key>'")
        parts = key.split("_")
        if len(parts) < 3 or parts[0] != "mgw":
            raise AuthError("that is not a modemgw API key (they start with 'mgw_')")
        row = self.store.api_key_by_prefix(parts[1])
        if row is None or not hmac.compare_digest(row["hash"], _hash(key)):
            raise AuthError("unknown API key")
        if row["revoked_at"] is not None:
            raise AuthError("this API key has been revoked")
        now = time.time()
        if now - self._last_used.get(row["id"], 0) > 60:  # at most one write a minute per key
            self._last_used[row["id"]] = now
            # bookkeeping only: a request must neither wait for nor fail on a busy, locked or full database
            self.store.note_key_use(row["id"], now)
        return ApiKey(row["id"], row["name"], row["prefix"], tuple(row["scopes"].split(",")), row["grp"],
                      row["rate_per_minute"])

    def throttle(self, key: ApiKey) -> float:
        """0 when the key may make another request now, else the seconds to wait (Retry-After)."""
        if not key.rate_per_minute:
            return 0.0
        with self._lock:
            window = self._windows.setdefault(key.id, RateWindow())
            now = time.time()
            wait = window.wait(key.rate_per_minute, now)
            if wait == 0:
                window.add(now)
            return wait


# --- web UI users, sessions and the login throttle -------------------------------------------------------------

ROLES = ("admin", "operator")
MAX_USERNAME = 64
MIN_PASSWORD, MAX_PASSWORD = 10, 1024
SESSION_LIFETIME = 12 * 3600.0  # a session ends this long after its login, however much it is used
SESSION_IDLE = 2 * 3600.0       # ... or when unused this long
SESSION_TOUCH = 60.0            # its last use is written at most this often (SD cards wear)
# werkzeug's scrypt takes 32 MiB for each check: at most two at once (a burst of logins must not cost a Pi
# hundreds of MB), and the dummy hash for unknown users is made at the first login, not at import (start-up peak).
_HASHING = threading.BoundedSemaphore(2)
_dummy_hash: str | None = None


class UserError(ValueError):
    """A web UI user cannot be added or changed as asked; the message says why."""


class LoginError(Exception):
    """A login refused: `status` 400 (a name or password longer than any can be), 401 (wrong name or password)
    or 429 (too many wrong passwords for that account: try again after `retry_after` seconds)."""

    def __init__(self, detail: str, status: int, retry_after: int | None = None):
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.retry_after = retry_after


def _check_password(stored: str | None, password: str) -> bool:
    """The same work whether the user exists or not (`stored` None: a dummy hash is checked)."""
    global _dummy_hash
    with _HASHING:
        if stored is None:
            if _dummy_hash is None:
                _dummy_hash = security.generate_password_hash(secrets.token_hex(16))
            security.check_password_hash(_dummy_hash, password)
            return False
        return security.check_password_hash(stored, password)


def _password_hash(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise UserError(f"a password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return security.generate_password_hash(password)


def add_user(store: Store, username: str, password: str, role: str) -> int:
    """Create a web UI user; the password is stored hashed. Raises UserError."""
    if role not in ROLES:
        raise UserError(f"role must be admin or operator, not {role!r}")
    name = username.strip()
    if not name or len(name) > MAX_USERNAME:
        raise UserError(f"a username needs 1 to {MAX_USERNAME} characters")
    try:
        return store.add_user(name, _password_hash(password), role, time.time())
    except Duplicate:
        raise UserError(f"user {name!r} exists already") from None
    except StoreError as error:
        raise UserError(str(error)) from None


def list_users(store: Store) -> list[dict]:
    """Every web UI user (never a password hash)."""
    return store.users()


def find_user(store: Store, username: str) -> dict:
    """The user of that name. Raises UserError."""
    user = store.user_by_name(username.strip()) if len(username) <= MAX_USERNAME else None
    if user is None:
        raise UserError(f"no user {username!r}")
    return user


def set_password(store: Store, user_id: int, password: str) -> None:
    """Give a user a new password; every session of that user ends. Raises UserError, NotFound."""
    store.set_password_hash(user_id, _password_hash(password))


def set_disabled(store: Store, user_id: int, disabled: bool) -> None:
    """Disable a user (its sessions end at once; it cannot log in) or enable it again. Raises UserError (the
    last enabled admin cannot be disabled), NotFound."""
    if not store.set_user_disabled(user_id, disabled):
        raise UserError("that is the only enabled admin: add or enable another admin first")


def delete_user(store: Store, user_id: int) -> None:
    """Delete a user; its sessions end at once. Raises UserError (not the last enabled admin), NotFound."""
    if not store.delete_user(user_id):
        raise UserError("that is the only enabled admin: add or enable another admin first")


def check_login(store: Store, throttle: LoginThrottle, username: str, password: str) -> dict:
    """The enabled user whose name and password these are. A name or password too long to be one is refused
    before any work (and never kept); otherwise the throttle decides whether the password is checked at all.
    Raises LoginError, StoreError (the database cannot be read)."""
    if len(username) > MAX_USERNAME or len(password) > MAX_PASSWORD:
        raise LoginError(f"A username has at most {MAX_USERNAME} characters, a password at most {MAX_PASSWORD}.",
                         400)
    user = store.user_by_name(username) if username else None
    known = user is not None
    wait = throttle.admit(username, known)
    if wait > 0:
        seconds = max(1, -int(-wait // 1))  # whole seconds, rounded up
        raise LoginError(f"Too many wrong passwords for this account: try again in {seconds} s.", 429, seconds)
    correct = False
    try:
        correct = user is not None and _check_password(user["password_hash"], password) and not user["disabled"]
        if user is None:
            _check_password(None, password)  # the same work as for a real user: timing tells nothing
    finally:
        throttle.done(username, known, correct)
    if not correct or user is None:
        raise LoginError("Wrong username or password.", 401)
    return user


@dataclass
class _Failures:
    count: int = 0          # wrong passwords in a row
    checking: int = 0       # checks admitted and not yet done
    last: float = 0.0       # when the last wrong one was found


class LoginThrottle:
    """Wrong passwords slow down their account, whatever address they come from: the first `free_failures` in a
    row cost nothing; after each further one, the account's next check waits `base_delay`, doubling up to
    `max_delay`. Not a lock-out anyone can hold: attempts refused while waiting count for nothing, a check is
    due again at most `max_delay` after the last wrong password, and a right one clears the account.

    Admission and counting happen under one lock, and a check counts from its admission: N parallel attempts
    make at most the allowed number of checks. At most `max_entries` accounts are remembered (the longest
    quiet forgotten first), and names that are no account in a table of their own, so that made-up names cannot
    push a real account out. `checks` and `refused` count admitted and refused attempts."""

    def __init__(self, free_failures: int = 5, base_delay: float = 1.0, max_delay: float = 60.0,
                 max_entries: int = 1000, clock=time.monotonic):
        self.free_failures, self.base_delay, self.max_delay = free_failures, base_delay, max_delay
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._tables: dict[bool, OrderedDict[str, _Failures]] = {True: OrderedDict(), False: OrderedDict()}
        self.checks = 0
        self.refused = 0

    def admit(self, username: str, known: bool) -> float:
        """0 when a check of `username`'s password may start now (report its outcome with `done`), else the
        seconds to wait. `known`: the name is an account."""
        key = username.lower()
        with self._lock:
            table = self._tables[known]
            entry = table.get(key)
            if entry is None:
                entry = table[key] = _Failures()
                while len(table) > self.max_entries:
                    table.popitem(last=False)
            wait = self._wait(entry)
            if wait > 0:
                self.refused += 1
                return wait
            entry.checking += 1
            self.checks += 1
            return 0.0

    def _wait(self, entry: _Failures) -> float:
        if entry.count + entry.checking <= self.free_failures:
            return 0.0
        if entry.checking:  # the checks under way may fail: the next waits for their outcome
            return self.base_delay
        delay = min(self.max_delay, self.base_delay * 2 ** (entry.count - self.free_failures - 1))
        return max(0.0, entry.last + delay - self._clock())

    def done(self, username: str, known: bool, correct: bool) -> None:
        """The outcome of a check `admit` allowed."""
        key = username.lower()
        with self._lock:
            table = self._tables[known]
            entry = table.get(key)
            if entry is None:  # forgotten meanwhile (the table overflowed)
                if correct:
                    return
                entry = table[key] = _Failures()
                while len(table) > self.max_entries:
                    table.popitem(last=False)
            entry.checking = max(0, entry.checking - 1)
            if correct:
                entry.count = 0
                if not entry.checking:
                    del table[key]
                return
            entry.count += 1
            entry.last = self._clock()
            table.move_to_end(key)

    def __len__(self) -> int:
        with self._lock:
            return sum(len(table) for table in self._tables.values())


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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
        if not self.store.end_session(session.token_hash):
            with self._lock:
                self._ended[session.token_hash] = None
                self._trim(self._ended)
        self._retry_ends()

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
