"""Messages as their senders see them: submissions (with their Idempotency-Keys), lookups and listings,
cancelling, retention, and the opt-out list that submissions are checked against."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from modemgw.store.base import STATUSES, UNSETTLED, StoreBase, inserted_id
from modemgw.store.errors import Conflict, Duplicate, NotFound, StoreError

# The filters of `recent_messages` that no index serves (a text search, the API key, the web UI user): a list that
# has one reads the messages one by one, and one that matches nothing read all of a million (1-2 s).
SCANNED = ("search", "api_key_id", "user_id")

FINAL_STATUSES = ("sent", "delivered", "undelivered", "failed", "expired", "canceled")
# A submission's messages: the run of ids it recorded (migration 13), read by primary key. A submission without
# messages (or none) has no run: nothing matches.
_OF_SUBMISSION = ("id BETWEEN (SELECT first_id FROM submissions WHERE id = ?) "
                  "AND (SELECT last_id FROM submissions WHERE id = ?) AND submission_id = ?")


def _of_submission(submission_id: int) -> tuple[int, int, int]:
    return (submission_id, submission_id, submission_id)


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
        already, StoreError (e.g. the disk is full): either way nothing was stored. The result and `body_hash` are
        kept only with an idempotency key (a replay answers with them; nothing else reads them): without one they
        were ~200 bytes of every single message's storage and a 5,000-recipient submit's 460 KB of JSON."""
        if not idempotency_key:
            body_hash = ""
        now = time.time()
        with self.transaction(durable=True) as conn:  # answered 202 / 250 / submit_sm_resp next
            try:
                cursor = conn.execute("INSERT INTO submissions (idempotency_key, body_hash, api_key_id, created_at) "
                                      "VALUES (?, ?, ?, ?)", (idempotency_key, body_hash, api_key_id, now))
            except sqlite3.IntegrityError:
                raise Duplicate("idempotency key already used") from None
            submission_id = inserted_id(cursor)
            before = conn.execute("SELECT IFNULL(MAX(id), 0) FROM messages").fetchone()[0]
            try:
                # every key any row has; a row without one stores NULL there (the keys are ours, never a caller's);
                # the submission's id goes with the values, not into each row's dict (a key more can double it)
                columns = [column for column in dict.fromkeys(column for row in rows for column in row)
                           if column != "submission_id"]
                if rows:
                    marks = ", ".join("?" * (len(columns) + 1))
                    conn.executemany(f"INSERT INTO messages ({', '.join(columns)}, submission_id) VALUES ({marks})",
                                     ([*(row.get(column) for column in columns), submission_id] for row in rows))
            except sqlite3.Error as error:
                raise StoreError.from_sqlite(error, f"cannot store messages: {error}") from None
            ids = [row[0] for row in conn.execute("SELECT id FROM messages WHERE id > ? AND submission_id = ? "
                                                  "ORDER BY id", (before, submission_id))]
            result = result_for(submission_id, ids)
            conn.execute("UPDATE submissions SET result = ?, first_id = ?, last_id = ? WHERE id = ?",
                         (json.dumps(result) if idempotency_key else None, ids[0] if ids else None,
                          ids[-1] if ids else None, submission_id))
            return result

    # --- queries ---------------------------------------------------------------------------------------

    def message(self, message_id: int) -> dict:
        """One message with its parts. Raises NotFound."""
        rows = self.query("SELECT * FROM messages WHERE id = ?", (message_id,))
        if not rows:
            raise NotFound(f"no message {message_id}")
        message = dict(rows[0])
        message["parts"] = self.query_dicts("SELECT * FROM parts WHERE message_id = ? ORDER BY seq",
                                            (message_id,))
        return message

    def messages(self, ids: list[int]) -> list[dict]:
        """The messages of these ids (without parts), in id order."""
        return self.query_dicts("SELECT * FROM messages WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id",
                                (json.dumps(ids),))

    def recent_messages(self, limit: int, *, before: int | None = None, status: str | None = None,
                        client_ref: str | None = None, modem_id: int | None = None, recipient: str | None = None,
                        since: float | None = None, until: float | None = None,
                        search: str | None = None, after: int | None = None, api_key_id: int | None = None,
                        user_id: int | None = None, from_id: int | None = None) -> list[dict]:
        """At most `limit` messages, newest first, with ids below `before` (a page's cursor; or, with `after`,
        the `limit` messages just above that id: the newer page) and not below `from_id`, matching every filter
        given: `since` <= created_at < `until`; sent with the API key `api_key_id` or by the web UI user `user_id`;
        `search` finds text in the recipient or the body, or an exact client_ref. No index serves the filters of
        SCANNED: the caller bounds the ids read (`Gateway.message_page`)."""
        # A time range is an id range (ids grow with created_at), found by `first_id_created`: the list then reads
        # by the primary key or (status, id), (modem_id, id), (recipient, id) whatever the range. `+created_at`
        # still holds every row to the range exactly, without letting the planner pick the time index instead.
        filters = [("id < ?", before), ("id > ?", after), ("id >= ?", from_id), ("client_ref = ?", client_ref),
                   ("modem_id = ?", modem_id), ("recipient = ?", recipient),
                   ("id >= ?", None if since is None else self.first_id_created(since)),
                   ("+created_at >= ?", since), ("id < ?", None if until is None else self.first_id_created(until)),
                   ("+created_at < ?", until), ("api_key_id = ?", api_key_id), ("user_id = ?", user_id)]
        clauses = [clause for clause, value in filters if value is not None]
        params: list[Any] = [value for _, value in filters if value is not None]
        if status in STATUSES:  # written out, so that a status of the partial index reads it (UNSETTLED)
            settled = status in ("sent", "delivered")
            clauses.append(f"status = '{status}'" + ("" if settled else f" AND {UNSETTLED}"))
        elif status is not None:
            clauses.append("status = ?")  # no such status: nothing matches
            params.append(status)
        if search is not None:
            clauses.append("(recipient LIKE ? OR body LIKE ? OR client_ref = ?)")
            params += [f"%{search}%", f"%{search}%", search]
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        order = "ASC" if after is not None else "DESC"
        found = self.query_dicts(f"SELECT * FROM messages {where} ORDER BY id {order} LIMIT ?", (*params, limit))
        return found[::-1] if after is not None else found

    def message_id_range(self) -> tuple[int, int] | None:
        """The lowest and highest message id (two reads at the primary key's ends), or None with no message."""
        low, high = (self.query(f"SELECT {end}(id) FROM messages")[0][0] for end in ("MIN", "MAX"))
        return None if low is None or high is None else (low, high)

    def callback_url(self, message_id: int) -> str | None:
        """The message's own callback URL (None: it has none, or there is no such message)."""
        rows = self.query("SELECT callback_url FROM messages WHERE id = ?", (message_id,))
        return rows[0][0] if rows else None

    def status_counts(self) -> dict[str, int]:
        """How many messages are in each status (none: not there). The statuses a message ends in are summed from
        `stats_daily` (migration 12: a few rows a day), the others counted in the (status, id) index: counting a
        million messages one by one took a third of a second, on every scrape of /metrics."""
        counts = {row[0]: row[1] for row in self.query(
            "SELECT kind, SUM(count) FROM stats_daily WHERE kind IN ('sent', 'delivered', 'undelivered', 'failed', "
            "'expired') GROUP BY kind HAVING SUM(count) > 0")}
        for status in ("queued", "scheduled", "sending", "canceled"):
            count = self.query(f"SELECT COUNT(*) FROM messages WHERE status = '{status}' AND {UNSETTLED}")[0][0]
            if count:
                counts[status] = count
        return counts

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

    # Retention (`purge`, and the batched pruning the scheduler runs) lives in store/retention.py.

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
        return self.query_dicts("SELECT * FROM optouts ORDER BY created_at DESC")

    # --- scheduled batches, edits and deletion (issue #16) ----------------------------------------------------
    # A batch is one submission: its messages share `submission_id`. Only scheduled messages are edited here
    # (a queued one may be claimed by a modem at any moment); every change is one transaction with its events.

    def scheduled_batches(self, limit: int, offset: int = 0) -> list[dict]:
        """Submissions that still have scheduled messages, the earliest due first: {"submission_id", "count",
        "first_due", "last_due", "created_at", "first_id", and the first scheduled message's "body",
        "recipient", "api_key_id", "user_id"}."""
        rows = self.query_dicts(
            "SELECT s.*, m.body, m.recipient, m.api_key_id, m.user_id FROM (SELECT submission_id, COUNT(*) AS count, "
            "MIN(due_at) AS first_due, MAX(due_at) AS last_due, MIN(created_at) AS created_at, MIN(id) AS first_id "
            "FROM messages INDEXED BY messages_batches WHERE status = 'scheduled' GROUP BY submission_id) s "
            "JOIN messages m ON m.id = s.first_id ORDER BY s.first_due, s.submission_id LIMIT ? OFFSET ?",
            (limit, offset))
        return rows

    def scheduled_batch(self, submission_id: int) -> dict:
        """One submission's scheduled messages summed up as in `scheduled_batches` (count 0 and no body when none
        is scheduled any more), with "total" (all its messages). Raises NotFound (no such submission)."""
        if not self.query("SELECT 1 FROM submissions WHERE id = ?", (submission_id,)):
            raise NotFound(f"no submission {submission_id}")
        row = self.query(
            "SELECT COUNT(*) AS total, SUM(status = 'scheduled') AS count, MIN(CASE WHEN status = 'scheduled' "
            "THEN due_at END) AS first_due, MAX(CASE WHEN status = 'scheduled' THEN due_at END) AS last_due, "
            "MIN(created_at) AS created_at, MIN(CASE WHEN status = 'scheduled' THEN id END) AS first_id "
            f"FROM messages WHERE {_OF_SUBMISSION}", _of_submission(submission_id))[0]
        batch = dict(row) | {"submission_id": submission_id, "count": row["count"] or 0, "body": None,
                             "recipient": None, "api_key_id": None, "user_id": None}
        if batch["first_id"] is not None:
            first = self.query("SELECT body, recipient, api_key_id, user_id FROM messages WHERE id = ?",
                               (batch["first_id"],))[0]
            batch |= dict(first)
        return batch

    def batch_messages(self, submission_id: int, limit: int, after: int | None = None) -> list[dict]:
        """Up to `limit` scheduled messages of a submission, by id, with ids above `after` (a page's cursor)."""
        return self.query_dicts(f"SELECT * FROM messages WHERE {_OF_SUBMISSION} AND status = 'scheduled' "
                                "AND id > ? ORDER BY id LIMIT ?", (*_of_submission(submission_id), after or 0, limit))

    def reschedule_batch(self, submission_id: int, due_at: float) -> list[int]:
        """Every scheduled message of a submission is due at `due_at` (its validity counted from then); their
        ids. The messages whose time changes get a `message.rescheduled` event, written in the same transaction
        as the change. Raises NotFound when the submission has no scheduled message (or does not exist)."""
        now = time.time()
        with self.transaction() as conn:
            rows = conn.execute(f"SELECT id, due_at FROM messages WHERE {_OF_SUBMISSION} AND status = 'scheduled' "
                                "ORDER BY id", _of_submission(submission_id)).fetchall()
            if not rows:
                raise NotFound(f"submission {submission_id} has no scheduled message (it was sent, canceled or "
                               "never existed)")
            moved = [row["id"] for row in rows if row["due_at"] != due_at]
            conn.execute("UPDATE messages SET due_at = ?, expires_at = CASE WHEN validity IS NOT NULL THEN ? + "
                         "validity ELSE expires_at END, updated_at = ? WHERE id IN (SELECT value FROM json_each(?))",
                         (due_at, due_at, now, json.dumps(moved)))
            conn.executemany("INSERT INTO events (at, message_id, kind, detail) VALUES (?, ?, ?, ?)",
                             [(now, message_id, "message.rescheduled", json.dumps({"due_at": due_at}))
                              for message_id in moved])
            return [row["id"] for row in rows]

    def edit_scheduled(self, message_id: int, *, due_at: float | None = None, body: str | None = None,
                       encoding: str | None = None, segments: int | None = None) -> dict:
        """Change a scheduled message's time (its validity counted from then) and/or its text (with the text's
        encoding and segments, as the gateway computed them, which checked everything before); the message
        afterwards. One UPDATE, and an event for each thing that really changed (`message.rescheduled`,
        `message.edited`), in one transaction: the timeline never tells of a change that was not made. Raises
        NotFound, Conflict (it is no longer scheduled: a modem may have it)."""
        now = time.time()
        with self.transaction() as conn:
            row = conn.execute("SELECT status, due_at, body FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                raise NotFound(f"no message {message_id}")
            if row["status"] != "scheduled":
                raise Conflict(f"message {message_id} is {row['status']}; only scheduled messages can be changed")
            moved = due_at is not None and due_at != row["due_at"]
            edited = body is not None and body != row["body"]
            if moved or edited:
                conn.execute(
                    "UPDATE messages SET due_at = CASE WHEN ? THEN ? ELSE due_at END, expires_at = CASE WHEN ? AND "
                    "validity IS NOT NULL THEN ? + validity ELSE expires_at END, body = CASE WHEN ? THEN ? ELSE body "
                    "END, encoding = CASE WHEN ? THEN ? ELSE encoding END, segments = CASE WHEN ? THEN ? ELSE "
                    "segments END, updated_at = ? WHERE id = ?",
                    (moved, due_at, moved, due_at, edited, body, edited, encoding, edited, segments, now, message_id))
            if moved:
                self._event(conn, "message.rescheduled", message_id, now=now, due_at=due_at)
            if edited:
                self._event(conn, "message.edited", message_id, now=now, segments=segments, encoding=encoding)
            return dict(conn.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone())

    def cancel_submission(self, submission_id: int) -> list[int]:
        """Cancel every message of a submission not yet sending (queued or scheduled); their ids (none: nothing
        was left to cancel). Raises NotFound (no such submission)."""
        now = time.time()
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM submissions WHERE id = ?", (submission_id,)).fetchone() is None:
                raise NotFound(f"no submission {submission_id}")
            ids = [row[0] for row in conn.execute(
                f"SELECT id FROM messages WHERE {_OF_SUBMISSION} AND status IN ('queued', 'scheduled') ORDER BY id",
                _of_submission(submission_id))]
            conn.execute("UPDATE messages SET status = 'canceled', updated_at = ? WHERE id IN "
                         "(SELECT value FROM json_each(?))", (now, json.dumps(ids)))
            conn.executemany("INSERT INTO events (at, message_id, kind) VALUES (?, ?, 'message.canceled')",
                             [(now, message_id) for message_id in ids])
            return ids

    def submission_status_counts(self, submission_id: int) -> dict[str, int]:
        """How many of a submission's messages are in each status."""
        return {row[0]: row[1] for row in self.query(
            f"SELECT status, COUNT(*) FROM messages WHERE {_OF_SUBMISSION} GROUP BY status",
            _of_submission(submission_id))}

    def delete_message(self, message_id: int) -> dict:
        """Delete a message with its parts and events; the row it was. Raises NotFound, Conflict (it is being
        sent now: its modem would record parts of a message that no longer exists)."""
        with self.transaction() as conn:
            row = conn.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                raise NotFound(f"no message {message_id}")
            if row["status"] == "sending":
                raise Conflict(f"message {message_id} is being sent now; delete it once it is sent or failed")
            conn.execute("DELETE FROM parts WHERE message_id = ?", (message_id,))
            conn.execute("DELETE FROM events WHERE message_id = ?", (message_id,))
            conn.execute("DELETE FROM messages WHERE id = ?", (message_id,))
            return dict(row)
