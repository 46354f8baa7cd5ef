"""Retention: pruning old rows in small batches, giving the freed pages back, and how big and how old the database is.

Every subject is pruned as a walk: `prune_candidates` reads the next few hundred rows that may go (a read: it
takes no write lock, and sends go on meanwhile), `prune_delete` deletes them in one short transaction that checks
again, row by row, that each may still go (a message may have changed since it was read). The caller
(modemgw/retention.py) pauses between batches, so that the write lock, which sends share, is free most of the
time, and goes on past a batch that failed (the walk's cursor is returned with the candidates).

What may go (the cut-off is "older than `before`"):
- `messages`: final messages (sent, delivered, undelivered, failed, expired, canceled), never one that is sent
  and still waits for its status report (`report IS NULL`): with it its parts, its events, and its submission
  once no message of that submission is left;
- `submissions`: old submissions none of whose messages is left (an earlier purge, deleted messages);
- `events`: the log's rows of messages that are gone, and those of no message (modems, inbound);
- `inbox`, `inbox_parts` (parts of a long message never completed), `inbox_seen` (de-duplication keys);
- `webhook_deliveries`: delivered and dead ones (a pending one stays, whatever its age);
- `audit`: the audit log's entries.
"""

from __future__ import annotations

import json
import os
import sqlite3
from typing import Any

from modemgw.store.base import PAGE_SIZE, UNSETTLED, StoreBase, _busy_timeout, sharing
from modemgw.store.errors import StoreError
from modemgw.store.messages import FINAL_STATUSES as FINAL

SUBJECTS = ("messages", "submissions", "events", "inbox", "inbox_parts", "inbox_seen", "webhook_deliveries", "audit")
AUTO_VACUUM_MODES = {0: "none", 1: "full", 2: "incremental"}

# The condition a message must meet to be deleted: final, and not waiting for its status report.
_MESSAGE_GOES = ("status IN (SELECT value FROM json_each(?)) AND NOT (status = 'sent' AND report IS NULL) "
                 "AND created_at < ?")


class RetentionStore(StoreBase):
    """Pruning old rows in small batches, the freelist and the write-ahead log, the database's size and oldest
    rows, and VACUUM."""

    # --- pruning: one batch at a time ---------------------------------------------------------------------

    def prune_candidates(self, subject: str, before: float, cursor: Any, limit: int) -> tuple[list[int], Any]:
        """The ids of at most `limit` rows of `subject` (one of SUBJECTS) older than `before` that may go, after
        `cursor` (None: from the oldest), and the cursor of the next batch (None: the walk is done). A read:
        no write lock is taken. Raises StoreError, ValueError (an unknown subject)."""
        if subject == "messages":
            # walked in id order, which is the order they were created in (no index on created_at: it cost a page
            # per message sent), within the ids created before `before` (`first_id_created`)
            below = self.first_id_created(before)
            rows = self.query(f"SELECT id FROM messages WHERE id > ? AND id < ? AND {_MESSAGE_GOES} ORDER BY id "
                              "LIMIT ?", (cursor or 0, below, json.dumps(FINAL), before, limit))
            return [row[0] for row in rows], (rows[-1][0] if len(rows) == limit else None)
        if subject == "submissions":
            bound = self._first_live_submission()
            rows = self.query("SELECT id FROM submissions WHERE id > ? AND id < ? AND created_at < ? ORDER BY id "
                              "LIMIT ?", (cursor or 0, bound, before, limit))
            return [row[0] for row in rows], (rows[-1][0] if len(rows) == limit else None)
        if subject == "inbox":
            at, last = cursor if cursor is not None else (float("-inf"), 0)
            rows = self.query("SELECT id, received_at FROM inbox WHERE received_at >= ? AND (received_at > ? OR "
                              "id > ?) AND received_at < ? ORDER BY received_at, id LIMIT ?",
                              (at, at, last, before, limit))
            return [row[0] for row in rows], ((rows[-1][1], rows[-1][0]) if len(rows) == limit else None)
        if subject == "inbox_parts":
            rows = self.query("SELECT id FROM inbox_parts WHERE id > ? AND received_at < ? ORDER BY id LIMIT ?",
                              (cursor or 0, before, limit))
            return [row[0] for row in rows], (rows[-1][0] if len(rows) == limit else None)
        if subject == "inbox_seen":  # no index on `at`: walked in rowid order, which is the order keys came in
            rows = self.query("SELECT rowid FROM inbox_seen WHERE rowid > ? AND at < ? ORDER BY rowid LIMIT ?",
                              (cursor or 0, before, limit))
            return [row[0] for row in rows], (rows[-1][0] if len(rows) == limit else None)
        if subject == "audit":
            at, last = cursor if cursor is not None else (float("-inf"), 0)
            rows = self.query("SELECT id, at FROM audit WHERE at >= ? AND (at > ? OR id > ?) AND at < ? "
                              "ORDER BY at, id LIMIT ?", (at, at, last, before, limit))
            return [row[0] for row in rows], ((rows[-1][1], rows[-1][0]) if len(rows) == limit else None)
        if subject == "events":  # rows are appended in time order: the walk stops at the first one too young
            rows = self.query("SELECT id, at, message_id FROM events WHERE id > ? ORDER BY id LIMIT ?",
                              (cursor or 0, limit))
            old = _prefix_older(rows, 1, before)
            live = {row[0] for row in self.query(
                "SELECT id FROM messages WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(sorted({row[2] for row in old if row[2] is not None})),))}
            ids = [row[0] for row in old if row[2] is None or row[2] not in live]
            return ids, (old[-1][0] if len(old) == limit else None)
        if subject == "webhook_deliveries":  # likewise, no index on created_at: a walk in id order
            rows = self.query("SELECT id, created_at, status FROM webhook_deliveries WHERE id > ? ORDER BY id "
                              "LIMIT ?", (cursor or 0, limit))
            old = _prefix_older(rows, 1, before)
            return ([row[0] for row in old if row[2] in ("delivered", "dead")],
                    old[-1][0] if len(old) == limit else None)
        raise ValueError(f"unknown retention subject {subject!r} (known: {', '.join(SUBJECTS)})")

    def prune_delete(self, subject: str, before: float, ids: list[int]) -> int:
        """Delete those of `ids` (from `prune_candidates`) that may still go, in one transaction; how many rows of
        `subject` went. Raises StoreError (nothing deleted), ValueError (an unknown subject)."""
        if not ids:
            return 0
        if subject not in SUBJECTS:
            raise ValueError(f"unknown retention subject {subject!r} (known: {', '.join(SUBJECTS)})")
        listed = json.dumps(ids)
        with self.transaction() as conn:
            if subject == "messages":
                return self._delete_messages(conn, listed, before)
            if subject == "submissions":
                bound = self._first_live_submission(conn)
                return conn.execute("DELETE FROM submissions WHERE id IN (SELECT value FROM json_each(?)) AND id < ? "
                                    "AND created_at < ?", (listed, bound, before)).rowcount
            if subject == "events":
                return conn.execute(
                    "DELETE FROM events WHERE id IN (SELECT value FROM json_each(?)) AND at < ? AND (message_id IS "
                    "NULL OR NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = events.message_id))",
                    (listed, before)).rowcount
            if subject == "inbox":
                return conn.execute("DELETE FROM inbox WHERE id IN (SELECT value FROM json_each(?)) "
                                    "AND received_at < ?", (listed, before)).rowcount
            if subject == "inbox_parts":
                return conn.execute("DELETE FROM inbox_parts WHERE id IN (SELECT value FROM json_each(?)) "
                                    "AND received_at < ?", (listed, before)).rowcount
            if subject == "inbox_seen":
                return conn.execute("DELETE FROM inbox_seen WHERE rowid IN (SELECT value FROM json_each(?)) AND at < ?",
                                    (listed, before)).rowcount
            if subject == "webhook_deliveries":
                return conn.execute("DELETE FROM webhook_deliveries WHERE id IN (SELECT value FROM json_each(?)) AND "
                                    "status IN ('delivered', 'dead') AND created_at < ?", (listed, before)).rowcount
            return conn.execute("DELETE FROM audit WHERE id IN (SELECT value FROM json_each(?)) AND at < ?",
                                (listed, before)).rowcount

    def _delete_messages(self, conn: sqlite3.Connection, listed: str, before: float) -> int:
        """Messages of `listed` that may still go, with their parts and events; then each of their submissions
        that has no message left. A submission's messages are inserted together in one transaction (one
        `insert_messages`), so their ids are consecutive among the rows that exist: a submission has a message left
        exactly when the nearest remaining message below or above the ones deleted belongs to it. That takes two
        lookups by primary key, where asking `messages` by submission_id would read the whole table."""
        rows = conn.execute(f"SELECT id, submission_id FROM messages WHERE id IN (SELECT value FROM json_each(?)) "
                            f"AND {_MESSAGE_GOES}", (listed, json.dumps(FINAL), before)).fetchall()
        if not rows:
            return 0
        going = json.dumps([row[0] for row in rows])
        conn.execute("DELETE FROM events WHERE message_id IN (SELECT value FROM json_each(?))", (going,))
        conn.execute("DELETE FROM parts WHERE message_id IN (SELECT value FROM json_each(?))", (going,))
        deleted = conn.execute("DELETE FROM messages WHERE id IN (SELECT value FROM json_each(?))", (going,)).rowcount
        spans: dict[int, list[int]] = {}
        for message_id, submission_id in rows:
            if submission_id is not None:
                span = spans.setdefault(submission_id, [message_id, message_id])
                span[0], span[1] = min(span[0], message_id), max(span[1], message_id)
        for submission_id, (low, high) in spans.items():
            below = conn.execute("SELECT submission_id FROM messages WHERE id < ? ORDER BY id DESC LIMIT 1",
                                 (low,)).fetchone()
            above = conn.execute("SELECT submission_id FROM messages WHERE id > ? ORDER BY id LIMIT 1",
                                 (high,)).fetchone()
            if submission_id not in (below and below[0], above and above[0]):
                conn.execute("DELETE FROM submissions WHERE id = ?", (submission_id,))
        return deleted

    def _first_live_submission(self, conn: sqlite3.Connection | None = None) -> float:
        """The submission of the oldest message left (no submission below it has any message: submissions and
        their messages get ids in the same order); infinity when no message is left, 0 when the oldest has none."""
        sql = "SELECT submission_id FROM messages ORDER BY id LIMIT 1"
        try:
            row = (conn.execute(sql).fetchone() if conn is not None else next(iter(self.query(sql)), None))
        except sqlite3.Error as error:
            raise StoreError.from_sqlite(error, f"database {self.path}: {error}") from None
        if row is None:
            return float("inf")
        return row[0] if row[0] is not None else 0

    def purge(self, before: float) -> int:
        """Final messages created before `before` (with their parts, events and submissions) and inbound
        de-duplication keys older than that, all in batches; how many messages went. The old all-at-once
        retention's name (`Gateway.purge`); the scheduler runs `Gateway.prune`. Raises StoreError."""
        deleted = 0
        for subject in ("messages", "submissions", "events", "inbox_seen"):
            cursor = None
            while True:
                ids, cursor = self.prune_candidates(subject, before, cursor, 500)
                count = self.prune_delete(subject, before, ids)
                deleted += count if subject == "messages" else 0
                if cursor is None:
                    break
        return deleted

    # --- the file: freed pages, the write-ahead log, VACUUM -----------------------------------------------------

    @sharing
    def pages(self) -> dict:
        """{"page_size", "page_count", "freelist_count", "auto_vacuum" ("none", "full" or "incremental")}.
        Raises StoreError."""
        conn = self.connection()
        try:
            values = {name: conn.execute(f"PRAGMA {name}").fetchone()[0]
                      for name in ("page_size", "page_count", "freelist_count", "auto_vacuum")}
        except sqlite3.Error as error:
            raise StoreError.from_sqlite(error, f"database {self.path}: {error}") from None
        values["auto_vacuum"] = AUTO_VACUUM_MODES.get(values["auto_vacuum"], str(values["auto_vacuum"]))
        return values

    def incremental_vacuum(self, pages: int) -> int:
        """Give at most `pages` free pages back to the file system (auto_vacuum = INCREMENTAL; nothing otherwise),
        in one short transaction; how many pages the freelist lost. In WAL mode the file shrinks at the next
        checkpoint. Raises StoreError."""
        with self.transaction() as conn:
            before = conn.execute("PRAGMA freelist_count").fetchone()[0]
            for _ in range(min(max(0, int(pages)), before)):  # each step of the statement frees one page, and
                conn.execute("PRAGMA incremental_vacuum(1)")   # Python's execute steps a row-less statement once
            return before - conn.execute("PRAGMA freelist_count").fetchone()[0]

    @sharing
    def checkpoint(self, truncate: bool = False, busy_ms: int = 100) -> dict:
        """Copy the write-ahead log into the database: PASSIVE (never waits), or TRUNCATE (empties the log file,
        which otherwise keeps its largest size) waiting at most `busy_ms` for readers. This gateway's writers wait
        meanwhile (the write lock), so call it when nothing is being sent. {"busy": whether it could not finish,
        "log_frames", "checkpointed_frames"}. Raises StoreError."""
        conn = self.connection()
        mode = "TRUNCATE" if truncate else "PASSIVE"
        with self._write_lock:
            try:
                with _busy_timeout(conn, busy_ms):
                    busy, log_frames, done = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
            except sqlite3.Error as error:
                raise StoreError.from_sqlite(error, f"database {self.path}: checkpoint: {error}") from None
        return {"busy": bool(busy), "log_frames": log_frames, "checkpointed_frames": done}

    @sharing
    def vacuum(self) -> dict:
        """Rewrite the whole database compactly (VACUUM) with auto_vacuum = INCREMENTAL, so that from then on
        pruning gives freed pages back to the file system, and with the page size new databases get (PAGE_SIZE:
        each page a commit changes is written whole, so a file made with bigger pages writes more per message);
        then empty the write-ahead log. A new page size needs the rollback journal for the rewrite (SQLite cannot
        change it in WAL mode): the file goes back to WAL after. Needs about the database's size free on its file
        system (twice that for a new page size), and holds the database for as long as it takes (seconds to
        minutes): run it while the gateway is stopped. {"before_bytes", "after_bytes", "auto_vacuum",
        "page_size_before", "page_size"}. Raises StoreError."""
        before = self.file_sizes()
        conn = self.connection()
        with self._write_lock:
            try:
                size_before = conn.execute("PRAGMA page_size").fetchone()[0]
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                resize = size_before != PAGE_SIZE
                if resize:
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                    try:  # another process with the file open (a sqlite3 shell) refuses it: the size stays then
                        with _busy_timeout(conn, 1000):
                            resize = conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0] == "delete"
                    except sqlite3.OperationalError:
                        resize = False
                if resize:
                    conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
                    conn.execute("PRAGMA synchronous = FULL")  # the rewrite in rollback mode: a power cut mid-way
                try:
                    conn.execute("VACUUM")
                finally:
                    if resize:
                        conn.execute("PRAGMA journal_mode = WAL").fetchone()
                        conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.Error as error:
                raise self._write_failed(StoreError.from_sqlite(
                    error, f"database {self.path}: VACUUM failed: {error}")) from None
        after = self.file_sizes()
        return {"before_bytes": before["database_bytes"] + before["wal_bytes"],
                "after_bytes": after["database_bytes"] + after["wal_bytes"],
                "auto_vacuum": self.pages()["auto_vacuum"], "page_size_before": size_before,
                "page_size": self.pages()["page_size"]}

    # --- how big, how old ----------------------------------------------------------------------------------

    def file_sizes(self) -> dict:
        """{"database_bytes", "wal_bytes"}: the file and its write-ahead log as they are on disk (0 when absent)."""
        sizes = {}
        for key, suffix in (("database_bytes", ""), ("wal_bytes", "-wal")):
            try:
                sizes[key] = os.stat(self.path + suffix).st_size
            except OSError:
                sizes[key] = 0
        return sizes

    def oldest_kept(self) -> dict:
        """{"message_at": when the oldest message left was created, "inbox_at": when the oldest inbound message
        left came; None when there is none}. Raises StoreError."""
        message = next(iter(self.query("SELECT created_at FROM messages ORDER BY id LIMIT 1")), [None])[0]
        inbox = self.query("SELECT min(received_at) FROM inbox")[0][0]
        return {"message_at": message, "inbox_at": inbox}

    def in_flight(self) -> int:
        """How many messages are queued or being sent: 0 means a checkpoint that holds writers back costs no send
        anything. Raises StoreError."""
        return self.query(f"SELECT count(*) FROM messages WHERE status IN ('queued', 'sending') AND {UNSETTLED}")[0][0]


def _prefix_older(rows: list[sqlite3.Row], column: int, before: float) -> list[sqlite3.Row]:
    """The rows before the first whose `column` is not older than `before` (rows in the order they were added)."""
    for index, row in enumerate(rows):
        if row[column] >= before:
            return rows[:index]
    return rows


__all__ = ["AUTO_VACUUM_MODES", "SUBJECTS", "RetentionStore"]
