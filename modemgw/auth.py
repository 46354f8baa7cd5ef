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
MAX_KEY_CHARS = 200  # ours are 45; anything much longer is not one (and is not hashed)


class AuthError(Exception):
    """Authentication failed (401) or the key lacks a scope (403: `status`). `key`: the valid key that was refused
    (one passed in a URL that may not be), so that the refusal can be recorded against it."""

    def __init__(self, detail: str, status: int = 401, key: ApiKey | None = None):
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.key = key


@dataclass
class ApiKey:
    id: int
    name: str
    prefix: str
    scopes: tuple[str, ...]
    group: str | None
    rate_per_minute: int | None
    allow_query_token: bool = False  # may be passed in a URL (GET /api/v1/send), where URLs end up in logs

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
               rate_per_minute: int | None = None, allow_query_token: bool = False) -> tuple[str, ApiKey]:
    """A new key; returns (the key itself, to be shown once, and its record). `allow_query_token`: the key may
    also be given in a URL's query string (`GET /api/v1/send?key=...`, for devices that can only call a URL). Off
    unless asked for: a URL is written into access logs, proxy logs and browser histories, so such a key must be
    one of its own, for that device alone."""
    if not name.strip():
        raise ValueError("a key needs a name (who or what uses it)")
    prefix = secrets.token_hex(4)
    key = f"mgw_{prefix}_{secrets.token_urlsafe(24)}"
    key_id = store.add_api_key(name.strip(), prefix, _hash(key), ",".join(scopes), group, rate_per_minute, time.time(),
                               allow_query_token)
    return key, ApiKey(key_id, name.strip(), prefix, scopes, group, rate_per_minute, allow_query_token)


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
        """The key of an `Authorization: Bearer <key>` header. Raises AuthError."""
        if not header:
            raise AuthError("no API key: send the header 'Authorization: Bearer <key>'")
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise AuthError("the Authorization header must be 'Bearer <key>'")
        return self._check(key)

    def authenticate_query(self, key: str) -> ApiKey:
        """A key given in a URL's query string: accepted only from a key created to allow it (`modemgw keys create
        --allow-query-token`). Raises AuthError, whose detail says why a valid key was refused."""
        record = self._check(key.strip())
        if not record.allow_query_token:
            raise AuthError(f"this API key ({record.name}) may not be passed in a URL: URLs are written into "
                            "access and proxy logs. Send it in the header 'Authorization: Bearer <key>', or create a "
                            "key for this device with 'modemgw keys create --allow-query-token' (or the web UI's "
                            "'may be passed in a URL'); as this key has now been in a URL, consider revoking it",
                            key=record)
        return record

    def _check(self, key: str) -> ApiKey:
        """The record of a key given in full; its last use noted. Raises AuthError."""
        if len(key) > MAX_KEY_CHARS:
            raise AuthError("that is not a modemgw API key (it is too long)")
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
                      row["rate_per_minute"], bool(row.get("allow_query_token")))

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

