"""API keys: created once and shown once, stored hashed, scoped, revocable, rate limited per key.

A key looks like `mgw_<prefix>_<secret>`: the prefix finds the row, the SHA-256 of the whole key is compared
in constant time. Keys are long random strings, so a fast hash is right for them (passwords, which people
choose, are hashed with werkzeug's slow scheme in `users`). Web UI users, their login check and throttle live in
`modemgw.users`; web UI sessions in `webui.sessions`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from modemgw.dispatch import RateWindow
from modemgw.store import Store

SCOPES = ("send", "read", "ussd", "book", "admin")  # ussd: allowed USSD codes (they can move money); book: contacts


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

