"""Web UI users: adding, listing, new passwords, disabling, enabling and deleting them (never the last enabled
admin), password hashing, the login check and the login throttle. The CLI's `modemgw users` and the web UI both
use this module; neither keeps rules of its own.

Passwords, which people choose, are hashed with werkzeug's slow scheme (API keys, long random strings, are
hashed fast in `auth`). The last-admin rule is applied by the store in the same transaction as the change
(`set_user_disabled`, `delete_user` answer False when it refuses), so two admins cannot disable each other at
once. Every change that should end a user's sessions (new password, disabled, deleted) ends them in the store,
whichever process made it.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from werkzeug import security

from modemgw.store import Duplicate, Store, StoreError

ROLES = ("admin", "operator")
MAX_USERNAME = 64
MIN_PASSWORD, MAX_PASSWORD = 10, 1024
# werkzeug's scrypt takes 32 MiB for each check: at most two at once (a burst of logins must not cost a Pi
# hundreds of MB), and the dummy hash for unknown users is made at the first login, not at import (start-up peak).
_HASHING = threading.BoundedSemaphore(2)
_dummy_hash: str | None = None


class UserError(ValueError):
    """A web UI user cannot be added or changed as asked; the message says why."""


DISABLED = "This account is disabled; ask an administrator."


class LoginError(Exception):
    """A login refused: `status` 400 (a name or password longer than any can be), 401 (wrong name or password),
    403 (the right password of a disabled account: told only to whoever has the password, so a wrong one still
    reads 401) or 429 (too many wrong passwords for that account: try again after `retry_after` seconds)."""

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


def get_user(store: Store, user_id: int) -> dict:
    """The user with that id, with its password hash (a new session records it). Raises NotFound."""
    return store.user(user_id)


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
    before any work (and never kept); otherwise the throttle decides whether the password is checked at all. A
    disabled account's right password is refused as such (403, `DISABLED`), and counts as no wrong password; a
    wrong one reads as for any account (401). Raises LoginError, StoreError (the database cannot be read)."""
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
        correct = user is not None and _check_password(user["password_hash"], password)
        if user is None:
            _check_password(None, password)  # the same work as for a real user: timing tells nothing
    finally:
        throttle.done(username, known, correct)
    if not correct or user is None:
        raise LoginError("Wrong username or password.", 401)
    if user["disabled"]:  # said only to whoever has the password: a guess learns nothing about the account
        raise LoginError(DISABLED, 403)
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


__all__ = ["DISABLED", "MAX_PASSWORD", "MAX_USERNAME", "MIN_PASSWORD", "ROLES", "LoginError", "LoginThrottle",
           "UserError", "add_user", "check_login", "delete_user", "find_user", "get_user", "list_users",
           "set_disabled", "set_password"]
