"""Administration: API keys (stored hashed), web UI users and their server-side sessions, and gateway-wide
settings (secrets). Keys, passwords and tokens are made and hashed by `modemgw.auth`; this stores the hashes."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from modemgw.store.base import StoreBase, inserted_id
from modemgw.store.errors import NotFound


class AdminStore(StoreBase):
    """API keys, users, sessions and settings."""

    # --- API keys ----------------------------------------------------------------------------------------------

    def add_api_key(self, name: str, prefix: str, key_hash: str, scopes: str, group: str | None,
                    rate_per_minute: int | None, now: float, allow_query_token: bool = False) -> int:
        """A new key's id. `allow_query_token`: the key may also be passed in a URL's query string (legacy
        devices' send URL). Raises Duplicate (the prefix is taken), StoreError."""
        with self.transaction() as conn:
            return inserted_id(conn.execute(
                "INSERT INTO api_keys (name, prefix, hash, scopes, grp, rate_per_minute, created_at, "
                "allow_query_token) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (name, prefix, key_hash, scopes, group, rate_per_minute, now, int(allow_query_token))))

    def api_keys(self) -> list[dict]:
        """Every API key, without its hash."""
        return self.query_dicts("SELECT id, name, prefix, scopes, grp, rate_per_minute, created_at, "
                                "last_used_at, revoked_at, allow_query_token FROM api_keys "
                                "ORDER BY id")

    def api_key_by_prefix(self, prefix: str) -> dict | None:
        """The key whose prefix this is, with its hash, or None."""
        rows = self.query("SELECT * FROM api_keys WHERE prefix = ?", (prefix,))
        return dict(rows[0]) if rows else None

    def revoke_key(self, key_id: int, now: float) -> None:
        """Revoke a key from `now` on. Raises NotFound (no such key, or revoked already)."""
        with self.transaction() as conn:
            if conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                            (now, key_id)).rowcount == 0:
                raise NotFound(f"no active key {key_id}")

    def note_key_use(self, key_id: int, at: float) -> bool:
        """Record when an API key was last used, if the database is free now (False when not recorded)."""
        return self._write_if_free("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (at, key_id))

    # --- web UI users and sessions -----------------------------------------------------------------------------
    # Passwords are hashed, and tokens made, by modemgw.auth; a session is stored under the SHA-256 of its token.

    def users(self) -> list[dict]:
        """Every web UI user, without password hashes."""
        return self.query_dicts("SELECT id, username, role, disabled, created_at, last_login_at "
                                "FROM users ORDER BY id")

    def user(self, user_id: int) -> dict:
        """One user, with its password hash. Raises NotFound."""
        rows = self.query("SELECT * FROM users WHERE id = ?", (user_id,))
        if not rows:
            raise NotFound(f"no user {user_id}")
        return dict(rows[0])

    def user_by_name(self, username: str) -> dict | None:
        """The user of that exact name, with its password hash, or None."""
        rows = self.query("SELECT * FROM users WHERE username = ?", (username,))
        return dict(rows[0]) if rows else None

    def add_user(self, username: str, password_hash: str, role: str, now: float) -> int:
        """A new user's id. Raises Duplicate (the name is taken), StoreError."""
        with self.transaction() as conn:
            return inserted_id(conn.execute("INSERT INTO users (username, password_hash, role, created_at) "
                                            "VALUES (?, ?, ?, ?)", (username, password_hash, role, now)))

    def set_password_hash(self, user_id: int, password_hash: str, keep_session: str | None = None) -> None:
        """Change a user's password and end its sessions, all but `keep_session` (a token hash). Raises
        NotFound."""
        with self.transaction() as conn:
            if conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id)).rowcount == 0:
                raise NotFound(f"no user {user_id}")
            conn.execute("DELETE FROM sessions WHERE user_id = ? AND token_hash IS NOT ?", (user_id, keep_session))

    def set_user_disabled(self, user_id: int, disabled: bool) -> bool:
        """Disable a user (ending its sessions) or enable it again. False, and nothing changed, when that would
        leave no enabled admin. Raises NotFound."""
        with self.transaction() as conn:
            if disabled and self._last_admin(conn, user_id):
                return False
            if conn.execute("UPDATE users SET disabled = ? WHERE id = ?", (int(disabled), user_id)).rowcount == 0:
                raise NotFound(f"no user {user_id}")
            if disabled:
                conn.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
            return True

    def delete_user(self, user_id: int) -> bool:
        """Delete a user and its sessions. False, and nothing deleted, when it is the last enabled admin. Raises
        NotFound."""
        with self.transaction() as conn:
            if self._last_admin(conn, user_id):
                return False
            conn.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
            if conn.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount == 0:
                raise NotFound(f"no user {user_id}")
            return True

    @staticmethod
    def _last_admin(conn: sqlite3.Connection, user_id: int) -> bool:
        """Whether `user_id` is the only enabled admin."""
        row = conn.execute("SELECT role = 'admin' AND disabled = 0 FROM users WHERE id = ?", (user_id,)).fetchone()
        return bool(row and row[0]) and conn.execute(
            "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0").fetchone()[0] == 1

    def note_login(self, user_id: int, at: float) -> bool:
        """Record when a web UI user last logged in, if the database is free now (False when not recorded)."""
        return self._write_if_free("UPDATE users SET last_login_at = ? WHERE id = ?", (at, user_id))

    def session(self, token_hash: str) -> dict | None:
        """A stored session with its user's name, role and state, or None."""
        rows = self.query("SELECT s.token_hash, s.user_id, s.created_at, s.last_seen_at, s.expires_at, u.username, "
                          "u.role, u.disabled FROM sessions s JOIN users u ON u.id = s.user_id "
                          "WHERE s.token_hash = ?", (token_hash,))
        return dict(rows[0]) if rows else None

    def save_session(self, token_hash: str, user_id: int, password_hash: str, created_at: float,
                     last_seen_at: float, expires_at: float) -> bool:
        """Store a session, if the database is free now, and only while its user is enabled and still has
        `password_hash` (a session made while the database refused writes must not outlive a change made since).
        False when nothing could be written."""
        return self._write_if_free(
            "INSERT OR IGNORE INTO sessions (token_hash, user_id, created_at, last_seen_at, expires_at) "
            "SELECT ?, id, ?, ?, ? FROM users WHERE id = ? AND disabled = 0 AND password_hash = ?",
            (token_hash, created_at, last_seen_at, expires_at, user_id, password_hash))

    def touch_session(self, token_hash: str, at: float) -> bool:
        """Record a session's last use, if the database is free now (False when not recorded)."""
        return self._write_if_free("UPDATE sessions SET last_seen_at = ? WHERE token_hash = ?", (at, token_hash))

    def end_session(self, token_hash: str) -> bool:
        """Delete a session, if the database is free now (False when it could not)."""
        return self._write_if_free("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))

    def user_sessions(self, user_id: int | None = None) -> list[dict]:
        """The stored sessions of one user (of every user when None), last used first; stale ones included (the
        caller knows the timeouts)."""
        where, params = ("WHERE user_id = ?", (user_id,)) if user_id is not None else ("", ())
        return self.query_dicts(
            f"SELECT token_hash, user_id, created_at, last_seen_at, expires_at FROM sessions {where} "
            "ORDER BY last_seen_at DESC, created_at DESC", params)

    def end_user_sessions(self, user_id: int, prefix: str | None = None, keep: str | None = None) -> int:
        """End a user's sessions now: those whose token hash starts with `prefix` (every one when None), all but
        `keep` (a token hash). How many ended. Raises StoreError (a person asked: they must learn it failed)."""
        with self.transaction() as conn:
            return conn.execute(
                "DELETE FROM sessions WHERE user_id = ? AND (? IS NULL OR substr(token_hash, 1, length(?)) = ?) "
                "AND token_hash IS NOT ?", (user_id, prefix, prefix, prefix, keep)).rowcount

    def end_stale_sessions(self, now: float, seen_before: float) -> bool:
        """Delete sessions past their end, or unused since `seen_before`, if the database is free now."""
        return self._write_if_free("DELETE FROM sessions WHERE expires_at <= ? OR last_seen_at < ?",
                                   (now, seen_before))

    # --- settings ------------------------------------------------------------------------------------------------

    def set_setting(self, name: str, value: str) -> None:
        """Set a gateway-wide setting."""
        with self.transaction() as conn:
            conn.execute("INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET "
                         "value = excluded.value", (name, value))

    def setting(self, name: str, create: Callable[[], str]) -> str:
        """A gateway-wide setting (e.g. a secret), made by `create()` the first time it is asked for."""
        rows = self.query("SELECT value FROM settings WHERE name = ?", (name,))
        if rows:
            return rows[0][0]
        with self.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO settings (name, value) VALUES (?, ?)", (name, create()))
        return self.query("SELECT value FROM settings WHERE name = ?", (name,))[0][0]
