"""Looks at a database file read-only, without opening it as a `Store` (which would migrate it and create its
write-ahead log): for `modemgw doctor`, which may run as another user while the gateway works."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from modemgw.store.errors import StoreError


def _open(path: Path | str) -> sqlite3.Connection:
    try:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as error:
        raise StoreError.from_sqlite(error, f"{path}: cannot open: {error}") from None


def quick_check(path: Path | str) -> list[str]:
    """SQLite's quick_check of the file: ["ok"] when it is sound, else what is damaged. Raises StoreError (e.g.
    the file is not a database)."""
    connection = _open(path)
    try:
        return [row[0] for row in connection.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.Error as error:
        raise StoreError.from_sqlite(error, f"{path}: {error}") from None
    finally:
        connection.close()


def webhook_backlog(path: Path | str) -> tuple[int, float | None]:
    """(how many webhook deliveries wait, when the oldest of them was created). Raises StoreError (e.g. a
    database the gateway has not set up yet)."""
    connection = _open(path)
    try:
        return connection.execute("SELECT count(*), min(created_at) FROM webhook_deliveries WHERE status = 'pending' "
                                  "AND (webhook_id IS NULL OR webhook_id IN "
                                  "(SELECT id FROM webhooks WHERE enabled = 1))").fetchone()
    except sqlite3.Error as error:
        raise StoreError.from_sqlite(error, f"{path}: {error}") from None
    finally:
        connection.close()


def webhook_attempts(path: Path | str, limit: int = 50) -> list[tuple[dict, list[dict]]]:
    """Each enabled webhook subscription (id, url, events; never its secret) with its latest `limit` deliveries
    that were tried, newest first: what `modemgw.webhooks.failure_streak` judges. Raises StoreError."""
    connection = _open(path)
    connection.row_factory = sqlite3.Row
    try:
        hooks = [dict(row) for row in connection.execute(
            "SELECT id, url, events, enabled, created_at FROM webhooks WHERE enabled = 1 ORDER BY id")]
        return [(hook, [dict(row) for row in connection.execute(
            "SELECT id, url, event, status, attempts, last_status_code, last_error, created_at, next_attempt_at, "
            "delivered_at FROM webhook_deliveries WHERE webhook_id = ? AND attempts > 0 ORDER BY id DESC LIMIT ?",
            (hook["id"], limit))]) for hook in hooks]
    except sqlite3.Error as error:
        raise StoreError.from_sqlite(error, f"{path}: {error}") from None
    finally:
        connection.close()
