"""Webhooks: subscriptions, and the durable outbox of deliveries (to subscriptions and to messages' own
callback URLs) that `modemgw.webhooks` fills from the gateway's events and its sender empties."""

from __future__ import annotations

import json
import zlib

from modemgw.store.base import StoreBase, inserted_id
from modemgw.store.errors import NotFound

# A preset dictionary for the payloads: the text every payload repeats (the field names of a message's JSON, event
# names, dates, null and false), so that zlib codes each payload's own values only. A message's delivered payload:
# 673 bytes of JSON, 321 compressed alone, 115 with this dictionary (a third of what each message kept for its
# webhook). NEVER CHANGE THIS TEXT: stored payloads name their dictionary by its Adler-32 (zlib's FDICT header),
# and are read with the one of that checksum. A better dictionary is a new constant added to PAYLOAD_DICTIONARIES
# (and written from then on): the old one stays for the payloads it coded.
PAYLOAD_DICTIONARY_1 = (
    b'{"event": "modem.offline", "timestamp": "2026-01-01T00:00:00.000000Z", "modem": {"modem_id": 1, "label": "", '
    b'"reason": "no network"}, "event_id": "evt_"} '
    b'{"event": "inbound.received", "timestamp": "2026-01-01T00:00:00.000000Z", "inbound": {"id": 1, "modem_id": 1, '
    b'"from": "+", "body": "", "sent_at": "2026-01-01T00:00:00Z", "received_at": "2026-01-01T00:00:00.000000Z"}, '
    b'"event_id": "evt_"} '
    b'"message.queued" "message.sending" "message.failed" "message.undelivered" "message.expired" "queued" "failed" '
    b'"error": {"code": 0, "reason": ""}, "encoding": "ucs2", "report": "undelivered", "possible_duplicate": true, '
    b'{"event": "message.sent", "timestamp": "2026-01-01T00:00:00.000000Z", "message_id": 1, "status": "sent", '
    b'"message": {"id": 1, "to": "+", "body": "", "status": "sent", "segments": 1, "encoding": "gsm7", "priority": 0, '
    b'"client_ref": null, "modem_id": 1, "created_at": "2026-01-01T00:00:00.000000Z", "send_at": null, '
    b'"expires_at": null, "sent_at": "2026-01-01T00:00:00.000000Z", "delivered_at": null, "report": null, '
    b'"error": null, "possible_duplicate": false, "attempts": 1, "callback_url": null, "preferred_modem_id": null, '
    b'"reply_to": null}, "event_id": "evt_"} '
    b'{"event": "message.delivered", "timestamp": "2026-01-01T00:00:00.000000Z", "message_id": 1, '
    b'"status": "delivered", "message": {"id": 1, "to": "+", "body": "", "status": "delivered", "segments": 1, '
    b'"encoding": "gsm7", "priority": 0, "client_ref": null, "modem_id": 1, "created_at": '
    b'"2026-01-01T00:00:00.000000Z", "send_at": null, "expires_at": null, "sent_at": "2026-01-01T00:00:00.000000Z", '
    b'"delivered_at": "2026-01-01T00:00:00.000000Z", "report": "delivered", "error": null, "possible_duplicate": '
    b'false, "attempts": 1, "callback_url": null, "preferred_modem_id": null, "reply_to": null}, "event_id": "evt_'
)
PAYLOAD_DICTIONARIES = {zlib.adler32(text): text for text in (PAYLOAD_DICTIONARY_1,)}
PAYLOAD_DICTIONARY = PAYLOAD_DICTIONARY_1  # the one new payloads are coded with
PAYLOAD_LEVEL = 6


def compress_payload(payload: str) -> bytes:
    """A payload as `webhook_payloads` keeps it: zlib with the preset dictionary."""
    coder = zlib.compressobj(PAYLOAD_LEVEL, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, PAYLOAD_DICTIONARY)
    return coder.compress(payload.encode()) + coder.flush()


def _payload(stored: bytes | str | None) -> str | None:
    """A payload as `webhook_payloads` keeps it: compressed with a preset dictionary (named by its Adler-32 in the
    zlib header), compressed alone (before the dictionary), or text as migration 14 moved it there. None when it
    names a dictionary this version does not have (a newer gateway's: the delivery cannot be sent as it was), or
    does not decode whole."""
    if stored is None or isinstance(stored, str):
        return stored
    try:
        if len(stored) >= 6 and stored[1] & 0x20:  # FDICT: the dictionary's Adler-32 follows the two header bytes
            dictionary = PAYLOAD_DICTIONARIES.get(int.from_bytes(stored[2:6], "big"))
            if dictionary is None:
                return None
            decoder = zlib.decompressobj(zdict=dictionary)
            text = decoder.decompress(stored) + decoder.flush()
            if not decoder.eof or decoder.unused_data:  # cut short (or followed by bytes): not what was written
                return None
            return text.decode()
        return zlib.decompress(stored).decode()
    except (zlib.error, UnicodeDecodeError):  # damaged: its delivery ends dead, the others go on
        return None


COUNT_AT_MOST = 10_000  # deliveries a webhook's page counts exactly; beyond, "10,000+" (webhook_delivery_counts)

class WebhookStore(StoreBase):
    """Webhook subscriptions and the delivery outbox."""

    # --- subscriptions -------------------------------------------------------------------------------------------

    def add_webhook(self, url: str, events: list[str], secret: str, now: float) -> dict:
        """A new subscription of `url` to `events` (names, or "*"), signed with `secret`: its row."""
        with self.transaction() as conn:
            webhook_id = inserted_id(conn.execute("INSERT INTO webhooks (url, events, secret, created_at) "
                                                  "VALUES (?, ?, ?, ?)", (url, ",".join(events), secret, now)))
        return self.webhook(webhook_id)

    def webhook(self, webhook_id: int) -> dict:
        """One subscription (with its secret). Raises NotFound."""
        rows = self.query("SELECT * FROM webhooks WHERE id = ?", (webhook_id,))
        if not rows:
            raise NotFound(f"no webhook {webhook_id}")
        return dict(rows[0])

    def webhooks(self) -> list[dict]:
        """Every subscription, oldest first."""
        return self.query_dicts("SELECT * FROM webhooks ORDER BY id")

    def update_webhook(self, webhook_id: int, *, url: str | None = None, events: list[str] | None = None,
                       enabled: bool | None = None, now: float | None = None) -> tuple[dict, int]:
        """Change a subscription's URL, events or state (None: unchanged): (its row, how many of its pending
        deliveries were made due). Its pending deliveries go to the new URL (a corrected typo must reach the
        receiver); those already delivered or dead keep the URL they went to. A new URL, or enabling it, makes its
        pending deliveries due at `now`: the receiver was fixed, so they must not wait out backoffs the old URL
        earned (up to 8 hours). Raises NotFound."""
        with self.transaction() as conn:
            row = conn.execute("SELECT * FROM webhooks WHERE id = ?", (webhook_id,)).fetchone()
            if row is None:
                raise NotFound(f"no webhook {webhook_id}")
            conn.execute("UPDATE webhooks SET url = ?, events = ?, enabled = ? WHERE id = ?",
                         (row["url"] if url is None else url, row["events"] if events is None else ",".join(events),
                          row["enabled"] if enabled is None else int(enabled), webhook_id))
            new_url = url is not None and url != row["url"]
            if new_url:
                conn.execute("UPDATE webhook_deliveries SET url = ? WHERE webhook_id = ? AND status = 'pending'",
                             (url, webhook_id))
            made_due = 0
            if now is not None and (new_url or enabled and not row["enabled"]):
                made_due = conn.execute("UPDATE webhook_deliveries SET next_attempt_at = ? WHERE webhook_id = ? "
                                        "AND status = 'pending' AND next_attempt_at > ?",
                                        (now, webhook_id, now)).rowcount
            return dict(conn.execute("SELECT * FROM webhooks WHERE id = ?", (webhook_id,)).fetchone()), made_due

    def delete_webhook(self, webhook_id: int) -> None:
        """Delete a subscription and its deliveries. Raises NotFound."""
        with self.transaction() as conn:
            if conn.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,)).rowcount == 0:
                raise NotFound(f"no webhook {webhook_id}")

    def deliveries_for_webhook(self, webhook_id: int, limit: int = 100, *, before: int | None = None,
                               after: int | None = None, status: str | None = None) -> list[dict]:
        """At most `limit` deliveries of a subscription, newest first: with ids below `before` (a page's cursor),
        or, with `after`, the `limit` oldest above it (the page before, still shown newest first); only those in
        `status` when given. Raises NotFound (no such subscription)."""
        self.webhook(webhook_id)
        filters = [("id < ?", before), ("id > ?", after), ("status = ?", status)]
        clauses = [clause for clause, value in filters if value is not None]
        params = [value for _, value in filters if value is not None]
        where = "".join(f" AND {clause}" for clause in clauses)
        order = "ASC" if after is not None else "DESC"
        # pending and dead deliveries are few: found through (status, next_attempt_at), not by reading every one of
        # the subscription's (a week of delivered ones) for the few of that status
        index = "webhook_deliveries_due" if status in ("pending", "dead") else "webhook_deliveries_hook"
        rows = self.query_dicts(f"SELECT * FROM webhook_deliveries INDEXED BY {index} "
                                f"WHERE webhook_id = ?{where} ORDER BY id {order} LIMIT ?",
                                (webhook_id, *params, limit))
        return rows[::-1] if after is not None else rows

    def webhook_delivery_counts(self, webhook_id: int, most: int = COUNT_AT_MOST) -> dict[str, int]:
        """How many deliveries of a subscription are in each status (pending, delivered, dead; 0 when none), and
        "more": 1 when the subscription has more than `most` deliveries, then "delivered" is a lower bound (what
        `most` less the pending and dead leaves): counting a month of deliveries to the last one read ~90,000
        index entries (10 ms) on every view of the webhook's page. Raises NotFound (no such subscription)."""
        self.webhook(webhook_id)
        # pending and dead are few: counted through (status, next_attempt_at); delivered is the rest of the
        # subscription's, counted in its (webhook_id, id) index alone: no row of the table is read
        counts = {"pending": 0, "delivered": 0, "dead": 0, "more": 0}
        for row in self.query("SELECT status, COUNT(*) FROM webhook_deliveries INDEXED BY webhook_deliveries_due "
                              "WHERE status IN ('pending', 'dead') AND webhook_id = ? GROUP BY status", (webhook_id,)):
            counts[row[0]] = row[1]
        total = self.query("SELECT COUNT(*) FROM (SELECT 1 FROM webhook_deliveries INDEXED BY webhook_deliveries_hook "
                           "WHERE webhook_id = ? LIMIT ?)", (webhook_id, most + 1))[0][0]
        if total > most:
            total, counts["more"] = most, 1
        counts["delivered"] = max(0, total - counts["pending"] - counts["dead"])
        return counts

    def attempted_webhook_deliveries(self, webhook_id: int, limit: int = 50) -> list[dict]:
        """A subscription's latest `limit` deliveries that were tried at least once, newest first (what tells
        whether its receiver is failing: `modemgw.webhooks.failure_streak`)."""
        return self.query_dicts(
            "SELECT id, url, event, status, attempts, last_status_code, last_error, created_at, next_attempt_at, "
            "delivered_at FROM webhook_deliveries WHERE webhook_id = ? AND attempts > 0 ORDER BY id DESC LIMIT ?",
            (webhook_id, limit))

    # --- the outbox: its writers (modemgw.webhooks) --------------------------------------------------------------

    def add_webhook_deliveries(self, event: str, message_id: int | None,
                               deliveries: list[tuple[int | None, str, str, str]], now: float) -> None:
        """Queue one event's deliveries, due `now`, in one transaction. Each is (the subscription's id, or None
        for a message's own callback URL; the URL; the event id; the payload, JSON)."""
        with self.transaction() as conn:
            for webhook_id, url, event_id, payload in deliveries:
                delivery_id = inserted_id(conn.execute(
                    "INSERT INTO webhook_deliveries (webhook_id, url, event, event_id, message_id, status, "
                    "next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)",
                    (webhook_id, url, event, event_id, message_id, now, now)))
                conn.execute("INSERT INTO webhook_payloads (delivery_id, payload) VALUES (?, ?)",
                             (delivery_id, compress_payload(payload)))

    def redeliver_webhook_delivery(self, webhook_id: int, delivery_id: int, now: float) -> dict:
        """Send a subscription's delivery again from `now` (attempts start over), to the subscription's URL as it
        is now: its row. Raises NotFound."""
        with self.transaction() as conn:
            changed = conn.execute("UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, "
                                   "attempts = 0, url = (SELECT url FROM webhooks WHERE id = ?) "
                                   "WHERE id = ? AND webhook_id = ?",
                                   (now, webhook_id, delivery_id, webhook_id)).rowcount
            if not changed:
                raise NotFound(f"no delivery {delivery_id} for webhook {webhook_id}")
            return dict(conn.execute("SELECT * FROM webhook_deliveries WHERE id = ?", (delivery_id,)).fetchone())

    def retry_pending_webhook_deliveries(self, webhook_id: int, now: float) -> int:
        """Make every pending delivery of a subscription due at `now` (their attempts so far still count, and a
        failure goes on with the retry schedule from there): how many are pending. Raises NotFound."""
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM webhooks WHERE id = ?", (webhook_id,)).fetchone() is None:
                raise NotFound(f"no webhook {webhook_id}")
            return conn.execute("UPDATE webhook_deliveries SET next_attempt_at = MIN(next_attempt_at, ?) "
                                "WHERE webhook_id = ? AND status = 'pending'", (now, webhook_id)).rowcount

    def redeliver_dead_webhook_deliveries(self, webhook_id: int, now: float) -> int:
        """Send every dead delivery of a subscription again from `now` (attempts start over), to the subscription's
        URL as it is now: how many. Raises NotFound."""
        with self.transaction() as conn:
            row = conn.execute("SELECT url FROM webhooks WHERE id = ?", (webhook_id,)).fetchone()
            if row is None:
                raise NotFound(f"no webhook {webhook_id}")
            return conn.execute("UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, attempts = 0, "
                                "url = ? WHERE webhook_id = ? AND status = 'dead'",
                                (now, row["url"], webhook_id)).rowcount

    def webhook_backlog(self) -> int:
        """How many deliveries wait to be sent (due or backing off; not those a disabled subscription holds)."""
        return self.query("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending' AND (webhook_id IS NULL "
                          "OR webhook_id IN (SELECT id FROM webhooks WHERE enabled = 1))")[0][0]

    # --- the outbox: its sender --------------------------------------------------------------------------------------
    # A lane is one kind of delivery: messages' own callback URLs (webhook_id NULL), or subscriptions. Deliveries
    # of a disabled subscription wait (they go out when it is enabled again, or are deleted with it).

    def due_webhook_deliveries(self, now: float, callbacks: bool, after_id: int, skip_urls: set[str],
                               limit: int) -> list[dict]:
        """Pending deliveries of one lane due by `now`, with ids above `after_id`, oldest first, none to the
        URLs in `skip_urls` (their destination is busy); only the first pending one per (URL, message), so that
        each goes out in order; with its "payload" (text; None if lost). Raises StoreError."""
        rows = self.query(
            "SELECT d.*, (SELECT payload FROM webhook_payloads WHERE delivery_id = d.id) AS payload "
            "FROM webhook_deliveries d WHERE d.status = 'pending' AND d.next_attempt_at <= ? "
            "AND (d.webhook_id IS NULL) = ? AND d.id > ? AND d.url NOT IN (SELECT value FROM json_each(?)) "
            "AND (d.webhook_id IS NULL OR d.webhook_id IN (SELECT id FROM webhooks WHERE enabled = 1)) "
            "AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.status = 'pending' "
            "AND e.message_id = d.message_id AND e.url = d.url AND e.id < d.id) ORDER BY d.id LIMIT ?",
            (now, int(callbacks), after_id, json.dumps(sorted(skip_urls)), limit))
        return [dict(row) | {"payload": _payload(row["payload"])} for row in rows]

    def next_webhook_attempt_after(self, now: float) -> float | None:
        """When the next pending delivery that is not due yet falls due (None: none waits). Raises StoreError."""
        return self.query("SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending' "
                          "AND next_attempt_at > ? AND (webhook_id IS NULL OR webhook_id IN "
                          "(SELECT id FROM webhooks WHERE enabled = 1))", (now,))[0][0]

    def record_webhook_attempt(self, delivery_id: int, attempts: int, now: float, status_code: int | None,
                               error: str | None, retry_at: float | None) -> None:
        """The outcome of a delivery's attempt number `attempts`: delivered when there is no `error`; else
        pending again at `retry_at`, or dead when there is none. Raises StoreError."""
        with self.transaction() as conn:
            if error is None:
                conn.execute("UPDATE webhook_deliveries SET status = 'delivered', attempts = ?, delivered_at = ?, "
                             "last_status_code = ?, last_error = NULL WHERE id = ?",
                             (attempts, now, status_code, delivery_id))
            elif retry_at is None:
                conn.execute("UPDATE webhook_deliveries SET status = 'dead', attempts = ?, last_status_code = ?, "
                             "last_error = ? WHERE id = ?", (attempts, status_code, error, delivery_id))
            else:
                conn.execute("UPDATE webhook_deliveries SET attempts = ?, next_attempt_at = ?, last_status_code = ?, "
                             "last_error = ? WHERE id = ?", (attempts, retry_at, status_code, error, delivery_id))
