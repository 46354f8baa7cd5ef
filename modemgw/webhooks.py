"""Webhooks: a durable outbox of signed deliveries, retried with backoff for about a day, then dead-lettered.

Gateway events become rows in `webhook_deliveries` (one per subscription, plus one for a message's own
`callback_url`) in the thread that raised them; one sender thread posts them. A slow or dead receiver delays
only other deliveries, never a send. Deliveries for one message to one URL go out in order.

Signature: `X-Modemgw-Signature: sha256=<hex>` = HMAC-SHA256(secret, f"{timestamp}.{body}") with the timestamp
from `X-Modemgw-Timestamp` (Unix seconds). Receivers recompute it and reject old timestamps (replays).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
import urllib.error
import urllib.request
from typing import Callable

from modemgw.store import NotFound, Store, StoreError

log = logging.getLogger("modemgw.webhooks")

EVENTS = ("message.sent", "message.delivered", "message.undelivered", "message.failed", "message.expired",
          "inbound.received", "modem.offline", "modem.online", "modem.quota_reached")
# Seconds before each retry: about a day in all, then the delivery is dead.
RETRY_SCHEDULE = (10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 28800)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A receiver may not bounce a delivery elsewhere (that would let a callback URL reach any address)."""

    def redirect_request(self, *args, **kwargs):
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def destination_problem(url: str) -> str | None:
    """Why a delivery must not go to `url`: link-local (cloud metadata), multicast or unspecified addresses.
    LAN and loopback receivers are allowed: they are what an office gateway calls."""
    import ipaddress
    import socket
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname
    if not host:
        return "the URL has no host"
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError as error:
        return f"cannot resolve {host}: {error}"
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved:
            return f"{host} resolves to {ip}, where deliveries are not sent"
    return None


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def callback_secret(store: Store) -> str:
    """The secret that signs deliveries to messages' own callback URLs (created on first use)."""
    return store.setting("callback_secret", lambda: secrets.token_urlsafe(32))


def create_webhook(store: Store, url: str, events: list[str]) -> dict:
    if not url.startswith(("http://", "https://")):
        raise ValueError("a webhook URL must start with http:// or https://")
    unknown = [event for event in events if event != "*" and event not in EVENTS]
    if unknown or not events:
        raise ValueError(f"events must be a non-empty list of {', '.join(EVENTS)} (or '*'); got {events!r}")
    secret = "whsec_" + secrets.token_urlsafe(24)
    with store.transaction() as conn:
        cursor = conn.execute("INSERT INTO webhooks (url, events, secret, created_at) VALUES (?, ?, ?, ?)",
                              (url, ",".join(events), secret, time.time()))
    return webhook(store, cursor.lastrowid)


def webhook(store: Store, webhook_id: int) -> dict:
    rows = store.query("SELECT * FROM webhooks WHERE id = ?", (webhook_id,))
    if not rows:
        raise NotFound(f"no webhook {webhook_id}")
    return dict(rows[0])


def webhooks(store: Store) -> list[dict]:
    return [dict(row) for row in store.query("SELECT * FROM webhooks ORDER BY id")]


def delete_webhook(store: Store, webhook_id: int) -> None:
    with store.transaction() as conn:
        if conn.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,)).rowcount == 0:
            raise NotFound(f"no webhook {webhook_id}")


def deliveries(store: Store, webhook_id: int, limit: int = 100) -> list[dict]:
    webhook(store, webhook_id)
    return [dict(row) for row in store.query("SELECT * FROM webhook_deliveries WHERE webhook_id = ? "
                                             "ORDER BY id DESC LIMIT ?", (webhook_id, limit))]


def _iso_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class WebhookSender(threading.Thread):
    """Turns gateway events into deliveries and posts them."""

    def __init__(self, store: Store, message_view: Callable[[int], dict], timeout: float = 10.0,
                 schedule: tuple[float, ...] = RETRY_SCHEDULE):
        super().__init__(name="webhooks", daemon=True)
        self.store = store
        self.message_view = message_view
        self.timeout = timeout
        self.schedule = schedule
        self._wake = threading.Condition()
        self._poked = False
        self._stopping = False

    # --- events -> outbox ----------------------------------------------------------------------------

    def _has_callback(self, message_id: int) -> bool:
        rows = self.store.query("SELECT callback_url FROM messages WHERE id = ?", (message_id,))
        return bool(rows and rows[0][0])

    def on_event(self, event: str, data: dict) -> None:
        """Gateway listener: store the deliveries this event causes (fast; the sender posts them later)."""
        if event not in EVENTS:
            return
        targets = [(row["id"], row["url"]) for row in webhooks(self.store)
                   if row["enabled"] and (row["events"] == "*" or event in row["events"].split(","))]
        message_id = data.get("id") if event.startswith("message.") else None
        if not targets and (message_id is None or not self._has_callback(message_id)):
            return  # nobody listens: this runs in the send path, so the message is not even loaded
        payload: dict = {"event": event, "timestamp": _iso_now()}
        if message_id is not None:
            try:
                message = self.message_view(message_id)
            except NotFound:
                return
            payload.update(message_id=message_id, status=message["status"], message=message)
            if message.get("callback_url"):
                targets.append((None, message["callback_url"]))
        elif event == "inbound.received":
            payload["inbound"] = data
        else:
            payload["modem"] = data
        if not targets:
            return
        now = time.time()
        with self.store.transaction() as conn:
            for webhook_id, url in targets:
                event_id = "evt_" + secrets.token_hex(12)
                body = json.dumps({**payload, "event_id": event_id}, ensure_ascii=False)
                conn.execute("INSERT INTO webhook_deliveries (webhook_id, url, event, event_id, message_id, payload, "
                             "status, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                             (webhook_id, url, event, event_id, message_id, body, now, now))
        self.wake()

    def redeliver(self, webhook_id: int, delivery_id: int) -> dict:
        with self.store.transaction() as conn:
            changed = conn.execute("UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, "
                                   "attempts = 0 WHERE id = ? AND webhook_id = ?",
                                   (time.time(), delivery_id, webhook_id)).rowcount
            row = conn.execute("SELECT * FROM webhook_deliveries WHERE id = ?", (delivery_id,)).fetchone()
        if not changed:
            raise NotFound(f"no delivery {delivery_id} for webhook {webhook_id}")
        self.wake()  # only now: the answer shows the delivery as queued, whatever the sender does next
        return dict(row)

    def backlog(self) -> int:
        return self.store.query("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'")[0][0]

    # --- sending -------------------------------------------------------------------------------------

    def wake(self) -> None:
        with self._wake:
            self._poked = True  # remembered, so a wake-up between a check and the wait is not lost
            self._wake.notify()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self.is_alive():
            self.join(timeout=self.timeout + 5)

    def run(self) -> None:
        while not self._stopping:
            with self._wake:
                self._poked = False
            try:
                due = self._due()
                for row in due:
                    if self._stopping:
                        return
                    self._post(row)
                if due:
                    continue
                wait = self._next_due_in()
            except StoreError as error:  # a full or locked database: the outbox is intact, try again shortly
                log.error("webhook sender: %s", error)
                wait = 5.0
            except Exception:  # the outbox survives any fault; try again shortly
                log.exception("webhook sender")
                wait = 5.0
            with self._wake:
                if not self._poked and not self._stopping:
                    self._wake.wait(wait)

    def _due(self) -> list[dict]:
        """Due deliveries, oldest first, but only the first pending one per (url, message): in order."""
        rows = self.store.query(
            "SELECT d.* FROM webhook_deliveries d WHERE d.status = 'pending' AND d.next_attempt_at <= ? AND NOT "
            "EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.status = 'pending' AND e.message_id = d.message_id "
            "AND e.url = d.url AND e.id < d.id) ORDER BY d.id LIMIT 50", (time.time(),))
        return [dict(row) for row in rows]

    def _next_due_in(self) -> float | None:
        row = self.store.query("SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending'")[0]
        return None if row[0] is None else max(0.05, row[0] - time.time())

    def _secret(self, row: dict) -> str:
        if row["webhook_id"] is None:
            return callback_secret(self.store)
        return webhook(self.store, row["webhook_id"])["secret"]

    def _post(self, row: dict) -> None:
        try:
            secret = self._secret(row)
        except NotFound:  # the subscription was deleted meanwhile
            return
        body = row["payload"].encode()
        timestamp = str(int(time.time()))
        request = urllib.request.Request(row["url"], data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "modemgw-webhooks",
            "X-Modemgw-Event": row["event"], "X-Modemgw-Event-Id": row["event_id"],
            "X-Modemgw-Timestamp": timestamp, "X-Modemgw-Signature": sign(secret, timestamp, body)})
        status_code, error = None, destination_problem(row["url"])
        try:
            if error is not None:
                raise ValueError(error)
            with _OPENER.open(request, timeout=self.timeout) as response:
                status_code = response.status
        except urllib.error.HTTPError as failure:
            status_code, error = failure.code, f"HTTP {failure.code}"
        except (urllib.error.URLError, OSError, ValueError) as failure:
            error = str(getattr(failure, "reason", failure))
            status_code = None
        now = time.time()
        attempts = row["attempts"] + 1
        with self.store.transaction() as conn:
            if status_code is not None and 200 <= status_code < 300:
                conn.execute("UPDATE webhook_deliveries SET status = 'delivered', attempts = ?, delivered_at = ?, "
                             "last_status_code = ?, last_error = NULL WHERE id = ?",
                             (attempts, now, status_code, row["id"]))
            elif attempts > len(self.schedule):
                conn.execute("UPDATE webhook_deliveries SET status = 'dead', attempts = ?, last_status_code = ?, "
                             "last_error = ? WHERE id = ?", (attempts, status_code, error, row["id"]))
                log.warning("webhook delivery %s to %s is dead after %d attempts: %s", row["id"], row["url"],
                            attempts, error)
            else:
                conn.execute("UPDATE webhook_deliveries SET attempts = ?, next_attempt_at = ?, last_status_code = ?, "
                             "last_error = ? WHERE id = ?",
                             (attempts, now + self.schedule[attempts - 1], status_code, error, row["id"]))
