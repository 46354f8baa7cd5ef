"""Messages as their senders see them: submissions (with their Idempotency-Keys), lookups and listings,
cancelling, retention, and the opt-out list that submissions are checked against."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import sqlite_utils

from modemgw.store.base import StoreBase, inserted_id
from modemgw.store.errors import Duplicate, NotFound, StoreError

FINAL_STATUSES = ("sent", "delivered", "undelivered", "failed", "expired", "canceled")


class MessageStore(StoreBase):
    """Submissions, message queries, cancel, purge and opt-outs."""

    # --- submit ----------------------------------------------------------------------------------------

    def find_submission(self, key: str) -> sqlite3.Row | None:
        """The submission made with this (scoped) Idempotency-Key, or None."""
        rows = self.query("SELECT * FROM submissions WHERE idempotency_key = ?", (key,))
        return rows[0] if rows else None

    def insert_messages(self, rows: list[dict], idempotency_key: str | None, body_hash: str,
                        api_key_id: int | None, result_for: Callable[[int, list[int]], dict]) -> dict:
        """Insert a submission, its messages and its result (`result_for(submission id, message ids)`) in one
        transaction, and return the result. Raises Duplicate when another submission has `idempotency_key`
        already, StoreError (e.g. the disk is full): either way nothing was stored."""
        now = time.time()
        with self.transaction() as conn:
            try:
                cursor = conn.execute("INSERT INTO submissions (idempotency_key, body_hash, api_key_id, created_at) "
                                      "VALUES (?, ?, ?, ?)", (idempotency_key, body_hash, api_key_id, now))
            except sqlite3.IntegrityError:
                raise Duplicate("idempotency key already used") from None
            submission_id = inserted_id(cursor)
            for row in rows:
                row["submission_id"] = submission_id
            try:
                sqlite_utils.Database(conn).table("messages").insert_all(rows, batch_size=1000)
            except sqlite3.Error as error:
                raise StoreError.from_sqlite(error, f"cannot store messages: {error}") from None
            ids = [row[0] for row in conn.execute("SELECT id FROM messages WHERE submission_id = ? ORDER BY id",
                                                  (submission_id,))]
            conn.executemany("INSERT INTO events (at, message_id, kind, detail) VALUES (?, ?, ?, NULL)",
                             [(now, message_id, "message.created") for message_id in ids])
            result = result_for(submission_id, ids)
            conn.execute("UPDATE submissions SET result = ? WHERE id = ?", (json.dumps(result), submission_id))
            return result

    # --- queries ---------------------------------------------------------------------------------------

    def message(self, message_id: int) -> dict:
        """One message with its parts. Raises NotFound."""
        rows = self.query("SELECT * FROM messages WHERE id = ?", (message_id,))
        if not rows:
            raise NotFound(f"no message {message_id}")
        message = dict(rows[0])
        message["parts"] = [dict(row) for row in self.query("SELECT * FROM parts WHERE message_id = ? ORDER BY seq",
                                                            (message_id,))]
        return message

    def messages(self, ids: list[int]) -> list[dict]:
        """The messages of these ids (without parts), in id order."""
        rows = self.query("SELECT * FROM messages WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id",
                          (json.dumps(ids),))
        return [dict(row) for row in rows]

    def recent_messages(self, limit: int, *, before: int | None = None, status: str | None = None,
                        client_ref: str | None = None, modem_id: int | None = None, recipient: str | None = None,
                        since: float | None = None, until: float | None = None,
                        search: str | None = None) -> list[dict]:
        """At most `limit` messages, newest first, with ids below `before` (a page's cursor), matching every
        filter given: `since` <= created_at < `until`; `search` finds text in the recipient or the body, or an
        exact client_ref."""
        filters = [("id < ?", before), ("status = ?", status), ("client_ref = ?", client_ref),
                   ("modem_id = ?", modem_id), ("recipient = ?", recipient), ("created_at >= ?", since),
                   ("created_at < ?", until)]
        clauses = [clause for clause, value in filters if value is not None]
        params: list[Any] = [value for _, value in filters if value is not None]
        if search is not None:
            clauses.append("(recipient LIKE ? OR body LIKE ? OR client_ref = ?)")
            params += [f"%{search}%", f"%{search}%", search]
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.query(f"SELECT * FROM messages {where} ORDER BY id DESC LIMIT ?", (*params, limit))
        return [dict(row) for row in rows]

    def callback_url(self, message_id: int) -> str | None:
        """The message's own callback URL (None: it has none, or there is no such message)."""
        rows = self.query("SELECT callback_url FROM messages WHERE id = ?", (message_id,))
        return rows[0][0] if rows else None

    def status_counts(self) -> dict[str, int]:
        """How many messages are in each status."""
        return {row[0]: row[1] for row in self.query("SELECT status, COUNT(*) FROM messages GROUP BY status")}

    def status_counts_by_modem(self, since: float) -> list[dict]:
        """{"modem_id", "status", "count"} for the messages created since `since`."""
        return [dict(row) for row in self.query("SELECT modem_id, status, COUNT(*) AS count FROM messages "
                                                "WHERE created_at >= ? GROUP BY modem_id, status", (since,))]

    def sent_times(self, since: float) -> list[float]:
        """When each message sent since `since` was sent (a message's time is its last part's)."""
        return [row[0] for row in self.query("SELECT sent_at FROM messages WHERE sent_at >= ?", (since,))]

    # --- changes ---------------------------------------------------------------------------------------

    def cancel(self, message_id: int) -> str:
        """Cancel a message not yet sending; returns its status afterwards. Raises NotFound."""
        with self.transaction() as conn:
            row = conn.execute("SELECT status FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                raise NotFound(f"no message {message_id}")
            if row["status"] in ("queued", "scheduled"):
                conn.execute("UPDATE messages SET status = 'canceled', updated_at = ? WHERE id = ?",
                             (time.time(), message_id))
                self._event(conn, "message.canceled", message_id)
                return "canceled"
            return row["status"]

    def purge(self, before: float) -> int:
        """Retention: delete final messages (and their parts and events) created before `before`."""
        with self.transaction() as conn:
            ids = json.dumps([row[0] for row in conn.execute(
                "SELECT id FROM messages WHERE created_at < ? AND status IN (SELECT value FROM json_each(?))",
                (before, json.dumps(FINAL_STATUSES)))])
            conn.execute("DELETE FROM events WHERE message_id IN (SELECT value FROM json_each(?))", (ids,))
            deleted = conn.execute("DELETE FROM messages WHERE id IN (SELECT value FROM json_each(?))", (ids,)).rowcount
            conn.execute("DELETE FROM inbox_seen WHERE at < ?", (before,))
            return deleted

    # --- opt-outs --------------------------------------------------------------------------------------

    def optouts_among(self, numbers: list[str]) -> set[str]:
        """Those of `numbers` that opted out."""
        if not numbers:
            return set()
        rows = self.query("SELECT number FROM optouts WHERE number IN (SELECT value FROM json_each(?))",
                          (json.dumps(numbers),))
        return {row[0] for row in rows}

    def add_optout(self, number: str, source: str, note: str | None = None) -> bool:
        """Opt `number` out; False when it was already."""
        with self.transaction() as conn:
            cursor = conn.execute("INSERT OR IGNORE INTO optouts (number, created_at, source, note) "
                                  "VALUES (?, ?, ?, ?)", (number, time.time(), source, note))
            return cursor.rowcount == 1

    def remove_optout(self, number: str) -> bool:
        """Opt `number` in again; False when it was not opted out."""
        with self.transaction() as conn:
            return conn.execute("DELETE FROM optouts WHERE number = ?", (number,)).rowcount == 1

    def optouts(self) -> list[dict]:
        """The opt-out list, newest first."""
        return [dict(row) for row in self.query("SELECT * FROM optouts ORDER BY created_at DESC")]
