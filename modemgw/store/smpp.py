"""The SMPP server's data (migration 9): its users, and the durable queue of deliver_sm PDUs for them; and
(migration 10) the parts of concatenated submits held until their last part arrives (`smpp_parts`).

`smpp_outbox` rows: `kind` 'receipt' or 'inbound'; `status` 'pending' (to send, oldest first), 'delivered' (the
client's deliver_sm_resp said ESME_ROK), 'failed' (refused too often), or, for receipts, 'waiting' (what a
receipt needs that the message row does not hold: the ids the client was given, its source address, whether it
wants failures only; kept until the message is final) and 'done' (that waiting row was turned into receipts).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

from modemgw.store.base import StoreBase, inserted_id
from modemgw.store.errors import Conflict, NotFound

RECEIPT_STATUSES = ("delivered", "undelivered", "failed", "expired", "canceled")  # a message's final ones
USER_COLUMNS = "id, system_id, throughput, receive_inbound, disabled, created_at"  # never the password hash


class SmppStore(StoreBase):
    """Tables `smpp_users`, `smpp_outbox`, `smpp_parts` (migration 10); `messages.smpp_user_id`."""

    # --- users -------------------------------------------------------------------------------------------------

    def add_smpp_user(self, system_id: str, password_hash: str, throughput: int | None, receive_inbound: bool,
                      now: float) -> int:
        """A new SMPP user's id. Raises Duplicate (the system_id is taken), StoreError."""
        with self.transaction() as conn:
            return inserted_id(conn.execute(
                "INSERT INTO smpp_users (system_id, password_hash, throughput, receive_inbound, created_at) "
                "VALUES (?, ?, ?, ?, ?)", (system_id, password_hash, throughput, int(receive_inbound), now)))

    def smpp_users(self) -> list[dict]:
        """Every SMPP user (without its password hash), by system_id."""
        return self.query_dicts(f"SELECT {USER_COLUMNS} FROM smpp_users ORDER BY system_id")

    def smpp_users_with_hashes(self) -> list[dict]:
        """Every SMPP user with its password hash (for the server's check of its bound sessions)."""
        return self.query_dicts("SELECT * FROM smpp_users")

    def smpp_user_by_system_id(self, system_id: str) -> dict | None:
        """The user of that system_id, with its password hash (for a bind), or None."""
        rows = self.query("SELECT * FROM smpp_users WHERE system_id = ?", (system_id,))
        return dict(rows[0]) if rows else None

    def smpp_user(self, user_id: int) -> dict:
        """One user (without its password hash). Raises NotFound."""
        rows = self.query(f"SELECT {USER_COLUMNS} FROM smpp_users WHERE id = ?", (user_id,))
        if not rows:
            raise NotFound(f"no SMPP user {user_id}")
        return dict(rows[0])

    def change_smpp_user(self, user_id: int, **changes: object) -> None:
        """Set `password_hash`, `throughput` (None: no limit), `receive_inbound` or `disabled`. Raises NotFound."""
        allowed = ("password_hash", "throughput", "receive_inbound", "disabled")
        names = [name for name in changes if name in allowed]
        if len(names) != len(changes) or not names:
            raise ValueError(f"an SMPP user's changes are some of {', '.join(allowed)}, not {sorted(changes)}")
        assignments = ", ".join(f"{name} = ?" for name in names)
        values = [int(value) if isinstance(value, bool) else value for value in (changes[name] for name in names)]
        with self.transaction() as conn:
            if conn.execute(f"UPDATE smpp_users SET {assignments} WHERE id = ?", (*values, user_id)).rowcount == 0:
                raise NotFound(f"no SMPP user {user_id}")

    def delete_smpp_user(self, user_id: int) -> None:
        """Delete a user and its queued deliver_sm PDUs (its messages keep their history). Raises NotFound."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM smpp_outbox WHERE user_id = ?", (user_id,))
            if conn.execute("DELETE FROM smpp_users WHERE id = ?", (user_id,)).rowcount == 0:
                raise NotFound(f"no SMPP user {user_id}")

    # --- receipts ------------------------------------------------------------------------------------------------

    def note_smpp_receipt(self, user_id: int, message_id: int, details: dict, now: float) -> None:
        """Keep what the receipt of message `message_id` will need (a 'waiting' row) until the message is final."""
        with self.transaction() as conn:
            conn.execute("INSERT INTO smpp_outbox (user_id, kind, message_id, payload, status, created_at) "
                         "VALUES (?, 'receipt', ?, ?, 'waiting', ?)", (user_id, message_id, json.dumps(details), now))

    def queue_smpp_receipts(self, message_id: int, build: Callable[[dict, dict | None], list[dict]], now: float,
                            *, recover: bool = False) -> int:
        """When message `message_id` came over SMPP asking for a receipt and is final now, turn its waiting row
        into pending receipts (`build(message, waiting details)` gives their payloads), in one transaction, once.
        With `recover` (at start), a final message with no receipt row at all gets its receipts too (the row was
        lost in a crash): `build(message, None)`. Returns how many were queued."""
        rows = self.query("SELECT smpp_user_id FROM messages WHERE id = ?", (message_id,))
        if not rows or rows[0]["smpp_user_id"] is None:
            return 0  # the common case (not an SMPP message): read only
        with self.transaction() as conn:
            message = conn.execute("SELECT id, smpp_user_id, recipient, body, status, created_at, updated_at, "
                                   "delivered_at, error_code, request_report FROM messages WHERE id = ?",
                                   (message_id,)).fetchone()
            if message is None or message["status"] not in RECEIPT_STATUSES or not message["request_report"]:
                return 0
            user = conn.execute("SELECT id FROM smpp_users WHERE id = ?", (message["smpp_user_id"],)).fetchone()
            if user is None:
                return 0  # the user was deleted since
            waiting = conn.execute("SELECT id, payload FROM smpp_outbox WHERE message_id = ? AND kind = 'receipt' "
                                   "AND status = 'waiting'", (message_id,)).fetchone()
            if waiting is None:
                if not recover or conn.execute("SELECT 1 FROM smpp_outbox WHERE message_id = ? AND kind = 'receipt'",
                                               (message_id,)).fetchone():
                    return 0
                payloads = build(dict(message), None)
            else:
                payloads = build(dict(message), json.loads(waiting["payload"]))
                conn.execute("UPDATE smpp_outbox SET status = 'done', delivered_at = ? WHERE id = ?",
                             (now, waiting["id"]))
            conn.executemany("INSERT INTO smpp_outbox (user_id, kind, message_id, payload, created_at) "
                             "VALUES (?, 'receipt', ?, ?, ?)",
                             [(message["smpp_user_id"], message_id, json.dumps(payload), now) for payload in payloads])
            return len(payloads)

    def smpp_receipts_due(self, since: float) -> list[int]:
        """Messages final since `since` that came over SMPP asking for a receipt and have a waiting row, or no
        receipt row at all (for `queue_smpp_receipts(..., recover=True)` at start)."""
        # Not by reading every message: those with a waiting row are found from the outbox (per user, by its
        # index), and a row can only be missing for a message submitted just before a crash, so those are sought
        # among the messages created since `since` (an id range).
        statuses = ", ".join("?" * len(RECEIPT_STATUSES))
        final = (f"m.smpp_user_id IS NOT NULL AND m.request_report = 1 AND m.status IN ({statuses}) "
                 "AND m.updated_at >= ?")
        rows = self.query(
            f"SELECT m.id FROM messages m WHERE m.id IN (SELECT o.message_id FROM smpp_outbox o "
            "WHERE o.user_id IN (SELECT id FROM smpp_users) AND o.status = 'waiting' AND o.kind = 'receipt') "
            f"AND {final} UNION SELECT m.id FROM messages m WHERE m.id >= ? AND {final} AND NOT EXISTS "
            "(SELECT 1 FROM smpp_outbox o INDEXED BY smpp_outbox_message WHERE o.message_id = m.id "
            "AND o.kind = 'receipt') ORDER BY 1",
            (*RECEIPT_STATUSES, since, self.first_id_created(since), *RECEIPT_STATUSES, since))
        return [row["id"] for row in rows]

    # --- inbound SMS ---------------------------------------------------------------------------------------------

    def queue_smpp_inbound(self, inbox_id: int, build: Callable[[dict], dict], now: float, *,
                           recover: bool = False) -> int:
        """One pending deliver_sm of inbound message `inbox_id` for each enabled user that takes inbound SMS and
        has none of it yet (`build(inbox row with the SIM's number as our_number)` gives the payload); with
        `recover`, only users that existed when it arrived. Returns how many were queued."""
        with self.transaction() as conn:
            inbound = conn.execute("SELECT i.*, m.number AS our_number FROM inbox i LEFT JOIN modems m "
                                   "ON m.id = i.modem_id WHERE i.id = ?", (inbox_id,)).fetchone()
            if inbound is None:
                return 0
            users = conn.execute(
                "SELECT smpp_users.id FROM smpp_users WHERE receive_inbound = 1 AND disabled = 0 AND (? = 0 OR "
                "created_at <= ?) AND NOT EXISTS (SELECT 1 FROM smpp_outbox o INDEXED BY smpp_outbox_inbox "
                "WHERE o.inbox_id = ? AND o.user_id = smpp_users.id AND o.kind = 'inbound')",
                (int(recover), inbound["received_at"], inbox_id)
            ).fetchall()
            if not users:
                return 0
            payload = json.dumps(build(dict(inbound)))
            conn.executemany("INSERT INTO smpp_outbox (user_id, kind, inbox_id, payload, created_at) "
                             "VALUES (?, 'inbound', ?, ?, ?)", [(user["id"], inbox_id, payload, now) for user in users])
            return len(users)

    def smpp_inbound_due(self, since: float) -> list[int]:
        """Inbound messages received since `since` that a user taking inbound SMS (and existing then) has no
        deliver_sm of yet (for `queue_smpp_inbound(..., recover=True)` at start)."""
        rows = self.query(
            "SELECT i.id FROM inbox i INDEXED BY inbox_received WHERE i.received_at >= ? AND EXISTS (SELECT 1 "
            "FROM smpp_users WHERE receive_inbound = 1 AND disabled = 0 AND smpp_users.created_at <= i.received_at "
            "AND NOT EXISTS (SELECT 1 FROM smpp_outbox o INDEXED BY smpp_outbox_inbox WHERE o.inbox_id = i.id "
            "AND o.user_id = smpp_users.id AND o.kind = 'inbound')) ORDER BY i.id", (since,))
        return [row["id"] for row in rows]

    # --- the outbox ----------------------------------------------------------------------------------------------

    def smpp_pending(self, user_id: int, limit: int, skip: set[int] | frozenset[int] = frozenset()) -> list[dict]:
        """Up to `limit` pending deliver_sm rows of a user, oldest first, leaving out the ids in `skip` (in
        flight); `payload` decoded."""
        rows = self.query("SELECT id, kind, message_id, inbox_id, payload, attempts FROM smpp_outbox "
                          "WHERE user_id = ? AND status = 'pending' ORDER BY id LIMIT ?",
                          (user_id, limit + len(skip)))
        return [dict(row) | {"payload": json.loads(row["payload"])} for row in rows if row["id"] not in skip][:limit]

    def smpp_sent(self, row_id: int) -> None:
        """One more attempt at a row (its deliver_sm was written)."""
        with self.transaction() as conn:
            conn.execute("UPDATE smpp_outbox SET attempts = attempts + 1 WHERE id = ?", (row_id,))

    def smpp_delivered(self, row_id: int, now: float) -> None:
        """The client acknowledged the row's deliver_sm."""
        with self.transaction() as conn:
            conn.execute("UPDATE smpp_outbox SET status = 'delivered', delivered_at = ? WHERE id = ? "
                         "AND status = 'pending'", (now, row_id))

    def smpp_give_up(self, row_id: int, now: float) -> None:
        """The client refused the row's deliver_sm too often: it stays, as 'failed', out of the queue."""
        with self.transaction() as conn:
            conn.execute("UPDATE smpp_outbox SET status = 'failed', delivered_at = ? WHERE id = ? "
                         "AND status = 'pending'", (now, row_id))

    def smpp_pending_counts(self) -> dict[int, dict[str, int]]:
        """Per user id, its pending rows by kind ({"receipt": n, "inbound": n})."""
        counts: dict[int, dict[str, int]] = {}
        # per user through (user_id, status, id): the delivered rows of a week are not read
        for row in self.query("SELECT user_id, kind, COUNT(*) AS n FROM smpp_outbox WHERE user_id IN "
                              "(SELECT id FROM smpp_users) AND status = 'pending' GROUP BY user_id, kind"):
            counts.setdefault(row["user_id"], {"receipt": 0, "inbound": 0})[row["kind"]] = row["n"]
        return counts

    def purge_smpp_outbox(self, older_than: float) -> int:
        """Drop rows finished (delivered, failed, done) before `older_than`, and waiting rows of messages that are
        gone. Returns how many."""
        below = self.first_id_created(older_than, "smpp_outbox")  # a row finished then was created before
        with self.transaction() as conn:
            finished = conn.execute("DELETE FROM smpp_outbox WHERE id < ? AND status IN ('delivered', 'failed', "
                                    "'done') AND COALESCE(delivered_at, created_at) < ?", (below, older_than)).rowcount
            orphans = conn.execute("DELETE FROM smpp_outbox WHERE id < ? AND status = 'waiting' AND created_at < ? "
                                   "AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = smpp_outbox.message_id)",
                                   (below, older_than)).rowcount
            return finished + orphans

    # --- parts of concatenated submits (migration 10) ------------------------------------------------------------

    def add_smpp_part(self, user_id: int, source: str, destination: str, reference: int, total: int, seq: int,
                      data_coding: int, data: bytes, options: dict, part_id: str, group_key: str, now: float,
                      max_groups: int) -> dict:
        """Keep one part of a concatenated submit, committed before its ESME_ROK goes out. It joins the group of
        (user, source, destination, reference, total), or starts one keyed `group_key`. When it completes the
        group (every seq 1..total is there), its `part_id` is not kept: that part's answer is the message's id.
        Returns the group: {"group_key", "created_at", "complete", "rows": [...]} (see `_group`). Raises
        Conflict when `max_groups` groups are open already, StoreError."""
        with self.transaction(durable=True) as conn:  # its ESME_ROK goes out next
            row = conn.execute("SELECT group_key FROM smpp_parts WHERE user_id = ? AND source = ? AND destination = ? "
                               "AND reference = ? AND total = ? LIMIT 1",
                               (user_id, source, destination, reference, total)).fetchone()
            if row is not None:
                group_key = row["group_key"]
            elif conn.execute("SELECT COUNT(DISTINCT group_key) FROM smpp_parts").fetchone()[0] >= max_groups:
                raise Conflict(f"{max_groups} concatenated messages are being assembled already")
            row_id = inserted_id(conn.execute(
                "INSERT INTO smpp_parts (user_id, group_key, source, destination, reference, total, seq, data_coding, "
                "data, options, part_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (user_id, group_key, source, destination, reference, total, seq, data_coding, data.hex(),
                 json.dumps(options), part_id, now)))
            group = self._group(conn, group_key)
            if group["complete"]:
                conn.execute("UPDATE smpp_parts SET part_id = NULL WHERE id = ?", (row_id,))
                for part in group["rows"]:
                    if part["id"] == row_id:
                        part["part_id"] = None
            return group

    @staticmethod
    def _group(conn: sqlite3.Connection, group_key: str) -> dict:
        """A group of parts: `rows` in the order they came (id, seq, data_coding, data as bytes, options decoded,
        part_id, created_at...), `created_at` of its first part, `complete` when every seq is there."""
        rows = [dict(row) | {"data": bytes.fromhex(row["data"]), "options": json.loads(row["options"])}
                for row in conn.execute("SELECT id, user_id, source, destination, reference, total, seq, data_coding, "
                                        "data, options, part_id, created_at FROM smpp_parts WHERE group_key = ? "
                                        "ORDER BY id", (group_key,))]
        total = rows[0]["total"] if rows else 0
        return {"group_key": group_key, "created_at": min((row["created_at"] for row in rows), default=0.0),
                "complete": bool(rows) and len({row["seq"] for row in rows}) == total, "rows": rows}

    def smpp_part_groups_due(self, older_than: float) -> list[dict]:
        """The groups of parts whose first part came before `older_than`, oldest first (as `add_smpp_part`)."""
        with self.transaction() as conn:  # one consistent view of each group
            keys = [row["group_key"] for row in conn.execute(
                "SELECT group_key, MIN(created_at) AS first FROM smpp_parts GROUP BY group_key HAVING first < ? "
                "ORDER BY first", (older_than,))]
            return [self._group(conn, key) for key in keys]

    def smpp_parts_oldest(self) -> float | None:
        """When the oldest part still held came (None: none is held)."""
        rows = self.query("SELECT MIN(created_at) AS first FROM smpp_parts")
        return rows[0]["first"] if rows else None

    def delete_smpp_parts(self, group_key: str) -> None:
        """Drop a group of parts: its message is queued (or can never be)."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM smpp_parts WHERE group_key = ?", (group_key,))
