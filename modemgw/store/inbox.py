"""The inbox: inbound messages stored exactly once (deduplicated), concatenated parts assembled, and the
listings of the API and the web UI's conversations."""

from __future__ import annotations

import json
import time
from typing import Any

from modemgw.store.base import StoreBase
from modemgw.store.errors import NotFound


class InboxStore(StoreBase):
    """Inbound messages and their parts."""

    def insert_inbound(self, modem_id: int, sender: str, body: str, sent_at: float | None, dedupe_key: str,
                       parts: int = 1, partial: bool = False) -> int | None:
        """A complete inbound message; None when it is a duplicate of one already stored. Durable: the modem
        is told to forget it next."""
        now = time.time()
        with self.transaction(durable=True) as conn:
            if conn.execute("SELECT 1 FROM inbox_seen WHERE dedupe_key = ?", (dedupe_key,)).fetchone():
                return None
            cursor = conn.execute("INSERT OR IGNORE INTO inbox (modem_id, sender, body, sent_at, received_at, parts, "
                                  "partial, dedupe_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                  (modem_id, sender, body, sent_at, now, parts, 1 if partial else 0, dedupe_key))
            if cursor.rowcount == 0:
                return None
            conn.execute("INSERT OR IGNORE INTO inbox_seen (dedupe_key, at) VALUES (?, ?)", (dedupe_key, now))
            self._event(conn, "inbound.received", modem_id=modem_id, now=now, inbox_id=cursor.lastrowid,
                        sender=sender, partial=partial)
            return cursor.lastrowid

    def insert_inbound_part(self, modem_id: int, sender: str, reference: int, total: int, seq: int,
                            encoding: str, payload: bytes, sent_at: float | None, dedupe_key: str) -> list[dict] | None:
        """Store one part of a concatenated message; when all `total` parts are in, return them in order (and
        remove them); None while parts are missing or when this part is a duplicate. Durable, like a whole one."""
        now = time.time()
        with self.transaction(durable=True) as conn:
            if conn.execute("SELECT 1 FROM inbox_seen WHERE dedupe_key = ?", (dedupe_key,)).fetchone():
                return None
            conn.execute("INSERT OR IGNORE INTO inbox_parts (modem_id, sender, reference, total, seq, encoding, "
                         "payload, sent_at, received_at, dedupe_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (modem_id, sender, reference, total, seq, encoding, payload, sent_at, now, dedupe_key))
            conn.execute("INSERT OR IGNORE INTO inbox_seen (dedupe_key, at) VALUES (?, ?)", (dedupe_key, now))
            rows = conn.execute("SELECT * FROM inbox_parts WHERE sender = ? AND reference = ? AND total = ? "
                                "ORDER BY seq, id", (sender, reference, total)).fetchall()
            distinct = {row["seq"]: row for row in rows}
            if len(distinct) < total:
                return None
            conn.execute("DELETE FROM inbox_parts WHERE sender = ? AND reference = ? AND total = ?",
                         (sender, reference, total))
            return [dict(distinct[seq]) for seq in sorted(distinct)]

    def stale_inbound_groups(self, older_than: float) -> list[list[dict]]:
        """Incomplete concatenated messages whose newest part is older than `older_than`: removed and returned
        (each group's parts in order) so the gateway can store what arrived, flagged partial."""
        with self.transaction() as conn:
            groups = conn.execute("SELECT sender, reference, total FROM inbox_parts GROUP BY sender, reference, total "
                                  "HAVING MAX(received_at) < ?", (older_than,)).fetchall()
            result = []
            for group in groups:
                rows = conn.execute("SELECT * FROM inbox_parts WHERE sender = ? AND reference = ? AND total = ? "
                                    "ORDER BY seq, id", tuple(group)).fetchall()
                conn.execute("DELETE FROM inbox_parts WHERE sender = ? AND reference = ? AND total = ?", tuple(group))
                distinct = {row["seq"]: dict(row) for row in rows}
                result.append([distinct[seq] for seq in sorted(distinct)])
            return result

    # --- reading -----------------------------------------------------------------------------------------

    def inbox(self, limit: int = 100, *, before: int | None = None, sender: str | None = None) -> list[dict]:
        """At most `limit` inbound messages, newest first, with ids below `before` (a page's cursor), from
        `sender` when given."""
        filters = [("id < ?", before), ("sender = ?", sender)]
        clauses = [clause for clause, value in filters if value is not None]
        params: list[Any] = [value for _, value in filters if value is not None]
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return self.query_dicts(f"SELECT * FROM inbox {where} ORDER BY id DESC LIMIT ?",
                                (*params, limit))

    def inbox_message(self, inbox_id: int) -> dict:
        """One inbound message. Raises NotFound."""
        rows = self.query("SELECT * FROM inbox WHERE id = ?", (inbox_id,))
        if not rows:
            raise NotFound(f"no inbound message {inbox_id}")
        return dict(rows[0])

    def delete_inbox_message(self, inbox_id: int) -> None:
        """Delete one inbound message. Raises NotFound."""
        with self.transaction() as conn:
            if conn.execute("DELETE FROM inbox WHERE id = ?", (inbox_id,)).rowcount == 0:
                raise NotFound(f"no inbound message {inbox_id}")

    def conversations(self, limit: int = 200) -> list[dict]:
        """One row per conversation, (our SIM, their number), latest first: {"modem_id", "label" (the SIM's modem,
        or None), "sender", "total", "unread", "last" (received_at), "latest" (the body of the newest)}."""
        # `conversations` (migration 12) is kept by triggers on inbox: the newest are read by their index
        return self.query_dicts(
            "SELECT NULLIF(c.modem_id, 0) AS modem_id, c.sender, c.total, c.unread, c.last, c.newest, "
            "m.label AS label, m.number AS our_number, "
            "(SELECT body FROM inbox i2 WHERE i2.id = c.newest) AS latest FROM conversations c "
            "LEFT JOIN modems m ON m.id = NULLIF(c.modem_id, 0) ORDER BY c.last DESC LIMIT ?", (limit,))

    def inbox_from(self, sender: str, modem_id: int | None = None) -> list[dict]:
        """Every inbound message from `sender` (to the SIM `modem_id` when given), oldest first."""
        if modem_id is None:
            return self.query_dicts("SELECT * FROM inbox WHERE sender = ? ORDER BY id", (sender,))
        return self.query_dicts("SELECT * FROM inbox WHERE modem_id = ? AND sender = ? ORDER BY id",
                                (modem_id, sender))

    def conversation_messages(self, recipient: str, modem_id: int, limit: int = 100) -> list[dict]:
        """The newest `limit` messages to `recipient` that left from the SIM `modem_id` or were meant to (a reply
        that another SIM sent because this one could not), newest first."""
        return self.query_dicts(
            "SELECT * FROM messages WHERE recipient = ? AND (modem_id = ? OR prefer_modem_id = ?) "
            "ORDER BY id DESC LIMIT ?", (recipient, modem_id, modem_id, limit))

    def last_inbound_sims(self, senders: list[str], since: float) -> dict[str, int]:
        """For each of `senders` that wrote to us since `since`, the SIM (modem row id) of its latest message."""
        rows = self.query(
            "SELECT sender, modem_id FROM inbox WHERE id IN (SELECT MAX(id) FROM inbox WHERE sender IN "
            "(SELECT value FROM json_each(?)) AND received_at >= ? AND modem_id IS NOT NULL GROUP BY sender)",
            (json.dumps(sorted(set(senders))), since))
        return {row["sender"]: row["modem_id"] for row in rows}

    def mark_read(self, sender: str, modem_id: int | None = None) -> None:
        """Mark every inbound message from `sender` (to the SIM `modem_id` when given) read."""
        with self.transaction() as conn:
            if modem_id is None:
                conn.execute("UPDATE inbox SET read = 1 WHERE sender = ? AND read = 0", (sender,))
            else:
                conn.execute("UPDATE inbox SET read = 1 WHERE modem_id = ? AND sender = ? AND read = 0",
                             (modem_id, sender))
