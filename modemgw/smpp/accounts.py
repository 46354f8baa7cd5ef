"""SMPP users (the ESMEs that may bind): adding, listing, new passwords, disabling, enabling, deleting, and the
bind check. `modemgw smpp-users` and the server both use this module.

An SMPP password is at most 8 characters (the bind's password field is 9 octets with its NUL), so it is hashed
with the same slow scheme as the web UI's passwords (werkzeug's), and binds check it at most two at a time.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time

from werkzeug import security

from modemgw.store import Duplicate, NotFound, Store, StoreError

MAX_SYSTEM_ID = 15  # characters: system_id is a 16-octet C-octet string
MAX_PASSWORD = 8  # characters: password is a 9-octet C-octet string
MAX_THROUGHPUT = 10_000  # submit_sm per second
_HASHING = threading.BoundedSemaphore(2)  # a check costs 32 MiB (scrypt): a burst of binds must not cost hundreds
_dummy_hash: str | None = None


class AccountError(ValueError):
    """An SMPP user cannot be added or changed as asked; the message says why."""


class BindRefused(Exception):
    """A bind refused: `reason` is "system_id" (unknown), "password" (wrong) or "disabled"."""

    def __init__(self, detail: str, reason: str):
        super().__init__(detail)
        self.detail = detail
        self.reason = reason


def _check_system_id(system_id: str) -> str:
    if not 0 < len(system_id) <= MAX_SYSTEM_ID or not system_id.isascii() or not system_id.isprintable() \
            or " " in system_id:
        raise AccountError(f"a system_id is 1 to {MAX_SYSTEM_ID} printable ASCII characters without spaces")
    return system_id


def _password_hash(password: str) -> str:
    if not 0 < len(password) <= MAX_PASSWORD or not password.isascii() or not password.isprintable():
        raise AccountError(f"an SMPP password is 1 to {MAX_PASSWORD} printable ASCII characters (the protocol's "
                           f"limit)")
    return security.generate_password_hash(password)


def _check_throughput(throughput: int | None) -> int | None:
    if throughput is not None and not 1 <= throughput <= MAX_THROUGHPUT:
        raise AccountError(f"throughput is 1 to {MAX_THROUGHPUT} messages per second (leave it out for no limit)")
    return throughput


def add_account(store: Store, system_id: str, password: str, *, throughput: int | None = None,
                receive_inbound: bool = False) -> int:
    """A new SMPP user's id; the password is stored hashed. Raises AccountError."""
    _check_system_id(system_id)
    try:
        return store.add_smpp_user(system_id, _password_hash(password), _check_throughput(throughput),
                                   receive_inbound, time.time())
    except Duplicate:
        raise AccountError(f"SMPP user {system_id!r} exists already") from None
    except StoreError as error:
        raise AccountError(str(error)) from None


def list_accounts(store: Store) -> list[dict]:
    """Every SMPP user (never a password hash)."""
    return store.smpp_users()


def find_account(store: Store, system_id: str) -> dict:
    """The SMPP user of that system_id (without its hash). Raises AccountError."""
    user = store.smpp_user_by_system_id(system_id) if len(system_id) <= MAX_SYSTEM_ID else None
    if user is None:
        raise AccountError(f"no SMPP user {system_id!r} (see modemgw smpp-users list)")
    return {key: value for key, value in user.items() if key != "password_hash"}


def change_account(store: Store, user_id: int, *, password: str | None = None, throughput: int | None = None,
                   no_limit: bool = False, receive_inbound: bool | None = None, disabled: bool | None = None) -> None:
    """Change an SMPP user: a new password, a throughput (or `no_limit`), whether it takes inbound SMS, disabled
    or enabled (None: unchanged). A running server unbinds the sessions of a user disabled or given a new password
    within seconds, and applies a new throughput to them (SmppServer._check_accounts). Raises AccountError,
    NotFound."""
    changes: dict[str, object] = {}
    if password is not None:
        changes["password_hash"] = _password_hash(password)
    if no_limit or throughput is not None:
        changes["throughput"] = None if no_limit else _check_throughput(throughput)
    if receive_inbound is not None:
        changes["receive_inbound"] = receive_inbound
    if disabled is not None:
        changes["disabled"] = disabled
    if not changes:
        raise AccountError("nothing to change")
    try:
        store.change_smpp_user(user_id, **changes)
    except NotFound:
        raise
    except StoreError as error:
        raise AccountError(str(error)) from None


def delete_account(store: Store, user_id: int) -> None:
    """Delete an SMPP user and its queued receipts and inbound SMS. Raises NotFound, StoreError."""
    store.delete_smpp_user(user_id)


def check_bind(store: Store, system_id: str, password: str) -> dict:
    """The enabled user binding with this system_id and password (without its hash). Raises BindRefused,
    StoreError. An unknown system_id costs the same hash check as a known one."""
    global _dummy_hash
    user = store.smpp_user_by_system_id(system_id) if len(system_id) <= MAX_SYSTEM_ID else None
    with _HASHING:
        if user is None:
            if _dummy_hash is None:
                _dummy_hash = security.generate_password_hash(secrets.token_hex(4))
            security.check_password_hash(_dummy_hash, password)
            raise BindRefused(f"no SMPP user {system_id!r}", "system_id")
        if not security.check_password_hash(user["password_hash"], password):
            raise BindRefused(f"wrong password for SMPP user {system_id!r}", "password")
    if user["disabled"]:
        raise BindRefused(f"SMPP user {system_id!r} is disabled", "disabled")
    return _without_hash(user)


def _without_hash(user: dict) -> dict:
    """A user's row as the server keeps it: the password hash replaced by its `credential` (a fingerprint that
    tells a new password from the one a session bound with, and cannot be checked against a password)."""
    row = {key: value for key, value in user.items() if key != "password_hash"}
    row["credential"] = hashlib.sha256(user["password_hash"].encode()).hexdigest()[:16]
    return row


def current_accounts(store: Store) -> dict[int, dict]:
    """{user id: the user as `check_bind` gives it} for every SMPP user: what the server compares its bound
    sessions with (a user disabled, deleted or given a new password by `modemgw smpp-users`, another process).
    Raises StoreError."""
    return {user["id"]: _without_hash(user) for user in store.smpp_users_with_hashes()}


__all__ = ["MAX_PASSWORD", "MAX_SYSTEM_ID", "AccountError", "BindRefused", "add_account", "change_account",
           "check_bind", "current_accounts", "delete_account", "find_account", "list_accounts"]
