"""Webhooks: a durable outbox of signed deliveries, retried with backoff for about a day, then dead-lettered.

Gateway events become rows in `webhook_deliveries` (one per subscription, plus one for a message's own
`callback_url`) in the thread that raised them. The sender posts them in two lanes, subscriptions and messages'
own callback URLs, each with a few worker threads, so that neither kind can starve the other. A lane has at
most one delivery in flight per destination (scheme, host, port): a slow receiver holds one worker and delays
only its own deliveries. Deliveries for one message to one URL go out in order. A slow or dead receiver never
delays a send.

Every delivery has one deadline for all of it (DNS, connect, TLS, request, status line and headers): a receiver
that trickles a byte every few seconds is cut off there, where a per-read timeout would wait for hours. The name
is resolved once, every address is checked (`urls.address_problem`) and the connection goes to a checked
address, with the name in Host, SNI and the certificate check: a DNS answer that changes between the check and
the connection (rebinding) cannot send a delivery elsewhere. Any failure of one delivery is a failed attempt of
that delivery alone; a URL that can never work (stored by an older version) is dead at once.

Signature: `X-Modemgw-Signature: sha256=<hex>` = HMAC-SHA256(secret, f"{timestamp}.{body}") with the timestamp
from `X-Modemgw-Timestamp` (Unix seconds). Receivers recompute it and reject old timestamps (replays).

A disabled subscription gets no new deliveries, and those it had pending wait until it is enabled again. Once a
receiver is fixed, nothing should wait out the backoffs its failures earned (up to 8 hours): a new URL or enabling
the subscription makes its pending deliveries due at once, and an admin can do the same by hand (`retry_pending`)
or queue every dead delivery again (`redeliver_dead`); each wakes the sender. A
subscription is *failing* when its receiver failed the last `FAILING_ATTEMPTS` attempts in a row (counted over
its tried deliveries, newest first, back to the last one delivered): the dashboard and `modemgw doctor` say so
until one gets through (`failure_streak`).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import http.client
import io
import json
import logging
import queue
import secrets
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from modemgw import urls
from modemgw.store import NotFound, Store, StoreError

log = logging.getLogger("modemgw.webhooks")

EVENTS = ("message.sent", "message.delivered", "message.undelivered", "message.failed", "message.expired",
          "inbound.received", "modem.offline", "modem.online", "modem.quota_reached")
TEST_EVENT = "webhook.test"  # sent to one subscription when an admin asks, whatever events it chose
FAILING_ATTEMPTS = 3       # failed attempts in a row that make a subscription "failing"
# Seconds before each retry: about a day in all, then the delivery is dead.
RETRY_SCHEDULE = (10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 28800)
DELIVERY_DEADLINE = 12.0   # seconds for all of one delivery: DNS, connect, TLS, request, status line and headers
LANE_WORKERS = 4           # deliveries in flight at once per lane (subscriptions; callback URLs)
MAX_DNS_LOOKUPS = 32       # lookups running at once (each in its own thread: the C resolver cannot be cut short)
_PAGE = 100                # due deliveries read at a time
_ERROR_CHARS = 500         # of a failure kept in last_error
_REST = 60.0               # seconds a delivery the sender could not handle waits before it is tried again


class DeliveryError(Exception):
    """One delivery attempt that failed before or instead of an HTTP answer; the message says why."""


# --- one delivery -----------------------------------------------------------------------------------------------

class _Lookup:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.addresses: list[tuple[int, tuple]] = []
        self.error: str | None = None


class Resolver:
    """getaddrinfo with a deadline. Each lookup runs in a thread of its own, as the C resolver cannot be cut
    short; a caller waits for it only until its deadline. Callers of one name share its lookup, and at most
    `limit` run at once, so a DNS server that never answers cannot pile threads up."""

    def __init__(self, getaddrinfo: Callable = socket.getaddrinfo, limit: int = MAX_DNS_LOOKUPS):
        self._getaddrinfo = getaddrinfo
        self._limit = limit
        self._lock = threading.Lock()
        self._running: dict[tuple[str, int], _Lookup] = {}

    def resolve(self, host: str, port: int, end: float) -> list[tuple[int, tuple]]:
        """(family, socket address) of each address of `host`, in the resolver's order, by `end` (a
        time.monotonic() value). Raises DeliveryError."""
        key = (host, port)
        with self._lock:
            lookup = self._running.get(key)
            if lookup is None:
                if len(self._running) >= self._limit:
                    raise DeliveryError(f"cannot resolve {host}: {self._limit} DNS lookups are pending already")
                lookup = self._running[key] = _Lookup()
                threading.Thread(target=self._look_up, args=(key, lookup), name="webhooks-dns", daemon=True).start()
        if not lookup.done.wait(max(0.0, end - time.monotonic())):
            raise DeliveryError(f"cannot resolve {host} within the delivery deadline")
        if lookup.error is not None:
            raise DeliveryError(f"cannot resolve {host}: {lookup.error}")
        return lookup.addresses

    def _look_up(self, key: tuple[str, int], lookup: _Lookup) -> None:
        try:
            infos = self._getaddrinfo(key[0], key[1], type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
            for family, _, _, _, sockaddr in infos:
                if (family, sockaddr) not in lookup.addresses:
                    lookup.addresses.append((family, sockaddr))
            if not lookup.addresses:
                lookup.error = "no address"
        except Exception as error:  # noqa: BLE001 - socket.gaierror, UnicodeError: each ends this lookup, never the thread's caller
            lookup.error = str(error) or type(error).__name__
        finally:
            with self._lock:
                self._running.pop(key, None)
            lookup.done.set()


_RESOLVER = Resolver()
_TLS: ssl.SSLContext | None = None
_TLS_LOCK = threading.Lock()


def _tls_context() -> ssl.SSLContext:
    """The system's trusted CAs, hostname checked (made once: loading the CAs takes a while)."""
    global _TLS
    with _TLS_LOCK:
        if _TLS is None:
            _TLS = ssl.create_default_context()
        return _TLS


def _remaining(end: float) -> float:
    left = end - time.monotonic()
    if left <= 0:
        raise TimeoutError("the delivery deadline passed")
    return left


class _DeadlineReader(io.RawIOBase):
    def __init__(self, owner: _DeadlineSocket):
        self.owner = owner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        sock = self.owner.sock
        sock.settimeout(_remaining(self.owner.end))
        return sock.recv_into(buffer)


class _DeadlineSocket:
    """What http.client uses of a socket (sendall, makefile, close), each call bounded by what is left of the
    delivery's deadline: a receiver that trickles a byte every few seconds is cut off at the deadline."""

    def __init__(self, sock: socket.socket, end: float):
        self.sock = sock
        self.end = end

    def sendall(self, data) -> None:
        view = memoryview(data).cast("B")
        while view:
            self.sock.settimeout(_remaining(self.end))
            view = view[self.sock.send(view):]

    def makefile(self, mode: str = "rb", *args, **kwargs) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self))

    def close(self) -> None:
        pass  # post() closes the real socket


class _PinnedConnection(http.client.HTTPConnection):
    """http.client over a socket connected beforehand, to an address that was checked."""

    def __init__(self, destination: urls.Destination, sock: _DeadlineSocket):
        super().__init__(destination.host, destination.port)
        self.sock = sock

    def connect(self) -> None:
        raise http.client.NotConnected("a delivery connects before its request, to a checked address")


def _addresses(destination: urls.Destination, end: float, resolver: Resolver) -> list[tuple[int, tuple]]:
    if destination.ip is None:
        return resolver.resolve(destination.host, destination.port, end)
    if destination.ip.version == 6:
        return [(socket.AF_INET6, (destination.host, destination.port, 0, 0))]
    return [(socket.AF_INET, (destination.host, destination.port))]


def _connect(destination: urls.Destination, addresses: list[tuple[int, tuple]], end: float,
             tls: ssl.SSLContext | None) -> socket.socket:
    """A socket connected to the first of `addresses` (all checked) that answers, with TLS for https (the name,
    not the address, for SNI and the certificate). Raises TimeoutError at the deadline, or DeliveryError."""
    failures = []
    for family, sockaddr in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(_remaining(end))
            sock.connect(sockaddr)
            if destination.scheme == "https":
                sock.settimeout(_remaining(end))  # ssl counts one timeout across all reads of the handshake
                sock = (tls or _tls_context()).wrap_socket(sock, server_hostname=destination.tls_name)
            return sock
        except TimeoutError:
            sock.close()
            raise
        except OSError as error:  # refused, unreachable, a TLS failure: the next address, if any
            sock.close()
            failures.append(f"{sockaddr[0]} port {sockaddr[1]}: {error.strerror or error}")
    raise DeliveryError("cannot connect: " + "; ".join(failures))


def post(url: str, body: bytes, headers: dict[str, str], *, deadline: float = DELIVERY_DEADLINE,
         private: bool = True, resolver: Resolver | None = None, tls: ssl.SSLContext | None = None) -> int:
    """POST `body` to `url` within `deadline` seconds all told; the HTTP status of the answer (a redirect is not
    followed: a receiver may not send a delivery elsewhere). `private`: loopback and LAN addresses may be
    reached (link-local, multicast and the like never are). `tls`: whom https receivers must prove to be
    (default: the system's trusted CAs).

    Raises urls.UrlError (the URL can never work), DeliveryError, TimeoutError (the deadline passed), OSError or
    http.client.HTTPException (what the connection met)."""
    destination = urls.parse(url)
    end = time.monotonic() + deadline
    addresses = _addresses(destination, end, resolver or _RESOLVER)
    for _, sockaddr in addresses:
        refused = urls.address_problem(sockaddr[0], private=private)
        if refused:
            where = f"{destination.host} is" if destination.ip else f"{destination.host} resolves to {sockaddr[0]},"
            raise DeliveryError(f"{where} {refused}")
    sock = _connect(destination, addresses, end, tls)
    try:
        connection = _PinnedConnection(destination, _DeadlineSocket(sock, end))
        connection.request("POST", destination.target, body,
                           {**headers, "Host": destination.host_header, "Connection": "close"})
        return connection.getresponse().status
    finally:
        sock.close()


def destination_problem(url: str, private: bool = True, deadline: float = DELIVERY_DEADLINE) -> str | None:
    """Why a delivery must not go to `url` (None: it may): the URL itself, or an address its host resolves to
    (`urls.address_problem`; `private` as for `post`)."""
    try:
        destination = urls.parse(url)
        for _, sockaddr in _addresses(destination, time.monotonic() + deadline, _RESOLVER):
            refused = urls.address_problem(sockaddr[0], private=private)
            if refused:
                return f"{destination.host} resolves to {sockaddr[0]}, {refused}"
    except (urls.UrlError, DeliveryError) as error:
        return str(error)
    return None


# --- subscriptions --------------------------------------------------------------------------------------------

def sign(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def callback_secret(store: Store) -> str:
    """The secret that signs deliveries to messages' own callback URLs (created on first use)."""
    return store.setting("callback_secret", lambda: secrets.token_urlsafe(32))


def _check_url(url: str) -> None:
    try:
        urls.parse(url)
    except urls.UrlError as error:
        raise urls.UrlError(f"url {error}") from None


def _events(events: list[str]) -> list[str]:
    """The events a subscription gets, checked: ["*"] when "*" is among them (stored otherwise, it would match
    only the names beside it). Raises ValueError."""
    unknown = [event for event in events if not isinstance(event, str) or event != "*" and event not in EVENTS]
    if unknown or not events:
        raise ValueError(f"events must be a non-empty list of {', '.join(EVENTS)} (or '*'); got {events!r}")
    return ["*"] if "*" in events else list(dict.fromkeys(events))


def create_webhook(store: Store, url: str, events: list[str]) -> dict:
    """A new subscription. Raises urls.UrlError (for `url`) or ValueError (for `events`)."""
    _check_url(url)
    events = _events(events)
    secret = "whsec_" + secrets.token_urlsafe(24)
    return store.add_webhook(url, events, secret, time.time())


def update_webhook(store: Store, webhook_id: int, *, url: str | None = None, events: list[str] | None = None,
                   enabled: bool | None = None) -> tuple[dict, int]:
    """Change a subscription's URL, events or state (None: unchanged): (its row, how many of its pending
    deliveries were made due now). Its pending deliveries follow a new URL, and a new URL or enabling it makes them
    due at once (the receiver was fixed: they must not wait out the old URL's backoffs). Checked like a new one.
    Raises urls.UrlError (for `url`), ValueError (for `events`), NotFound."""
    if url is not None:
        _check_url(url)
    if events is not None:
        events = _events(events)
    return store.update_webhook(webhook_id, url=url, events=events, enabled=enabled, now=time.time())


def webhook(store: Store, webhook_id: int) -> dict:
    """One subscription. Raises NotFound."""
    return store.webhook(webhook_id)


def webhooks(store: Store) -> list[dict]:
    """Every subscription."""
    return store.webhooks()


def delete_webhook(store: Store, webhook_id: int) -> None:
    """Delete a subscription and its deliveries. Raises NotFound."""
    store.delete_webhook(webhook_id)


DELIVERY_STATUSES = ("pending", "delivered", "dead")  # what a delivery log can be filtered by


def deliveries(store: Store, webhook_id: int, limit: int = 100, *, before: int | None = None,
               after: int | None = None, status: str | None = None) -> list[dict]:
    """A subscription's deliveries, newest first: the latest `limit`, or a page of them (`before`: ids below
    that cursor; `after`: the `limit` just above it), only those in `status` when given. Raises NotFound,
    ValueError (a status other than pending, delivered or dead)."""
    if status is not None and status not in DELIVERY_STATUSES:
        raise ValueError(f"status must be one of {', '.join(DELIVERY_STATUSES)}, not {status!r}")
    return store.deliveries_for_webhook(webhook_id, limit, before=before, after=after, status=status)


def delivery_counts(store: Store, webhook_id: int) -> dict[str, int]:
    """How many deliveries of a subscription are pending, delivered and dead. Raises NotFound."""
    return store.webhook_delivery_counts(webhook_id)


def failure_streak(attempted: list[dict]) -> list[dict]:
    """The deliveries of a subscription's current run of failures, newest first, from its tried deliveries newest
    first (`attempts` > 0): back to the first one delivered, which ends the run (a receiver that took a later
    delivery is up again, whatever older ones still retry). Every attempt of each counts as a failure."""
    streak = []
    for row in attempted:
        if row["status"] == "delivered":
            break
        streak.append(row)
    return streak


def failing_from(hook: dict, attempted: list[dict]) -> dict | None:
    """What the dashboard and the doctor say about a subscription whose receiver is failing (None: it is not, or
    it is disabled): id, url, the failed attempts in a row, the newest delivery's last error, whether it is dead,
    and since when (the oldest failing delivery's creation)."""
    streak = failure_streak(attempted)
    failed = sum(row["attempts"] for row in streak)
    if not hook["enabled"] or failed < FAILING_ATTEMPTS:
        return None
    newest = streak[0]
    return {"id": hook["id"], "url": hook["url"], "failed_attempts": failed,
            "last_error": newest["last_error"] or f"HTTP {newest['last_status_code']}",
            "last_status_code": newest["last_status_code"], "dead": newest["status"] == "dead",
            "since": streak[-1]["created_at"]}


def failing(store: Store) -> list[dict]:
    """The enabled subscriptions whose receivers are failing (`failing_from`), oldest subscription first."""
    found = []
    for hook in store.webhooks():
        if hook["enabled"]:
            judged = failing_from(hook, store.attempted_webhook_deliveries(hook["id"]))
            if judged is not None:
                found.append(judged)
    return found


def _iso_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- the sender -----------------------------------------------------------------------------------------------

@dataclass
class _Job:
    row: dict             # the delivery as read from the outbox
    secret: str
    private: bool         # loopback and LAN destinations allowed
    destination: tuple    # (scheme, host, port): one delivery in flight per destination and lane
    lane: _Lane


@dataclass
class _Outcome:
    job: _Job
    status_code: int | None = None
    error: str | None = None   # None: delivered
    permanent: bool = False    # retrying cannot help: dead at once


def _destination_of(url: str) -> tuple:
    try:
        destination = urls.parse(url)
    except urls.UrlError:
        return ("invalid", url)
    return (destination.scheme, destination.host, destination.port)


class _Lane:
    """One kind of delivery (subscriptions, or messages' own callback URLs) and the worker threads that post
    it: at most `size` deliveries in flight, at most one per destination. Its bookkeeping belongs to the
    sender's thread; the workers only take jobs and hand back outcomes."""

    def __init__(self, name: str, callbacks: bool, size: int, attempt: Callable[[_Job], _Outcome],
                 finished: Callable[[_Outcome], None]):
        self.name = name
        self.callbacks = callbacks
        self.size = size
        self._attempt = attempt
        self._finished = finished
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self.in_flight: dict[int, tuple] = {}        # delivery id -> destination
        self.busy: dict[tuple, set[str]] = {}        # destination in flight -> its URLs seen (skipped when reading)

    def keep_workers(self) -> None:
        self._threads = [thread for thread in self._threads if thread.is_alive()]
        while len(self._threads) < self.size:
            thread = threading.Thread(target=self._work, name=f"webhooks-{self.name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                outcome = self._attempt(job)
            except Exception as error:  # noqa: BLE001 - _attempt catches everything; this keeps the worker whatever happens
                outcome = _Outcome(job, error=f"{type(error).__name__}: {error}")
            self._finished(outcome)

    def idle(self) -> int:
        return self.size - len(self.in_flight)

    def skip_urls(self) -> set[str]:
        return set().union(*self.busy.values())

    def start(self, job: _Job) -> None:
        self.in_flight[job.row["id"]] = job.destination
        self.busy.setdefault(job.destination, set()).add(job.row["url"])
        self._jobs.put(job)

    def finish(self, delivery_id: int) -> None:
        destination = self.in_flight.pop(delivery_id, None)
        if destination is not None and destination not in self.in_flight.values():
            self.busy.pop(destination, None)

    def stop(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)


class WebhookSender(threading.Thread):
    """Turns gateway events into deliveries and posts them. This thread reads due deliveries, hands them to
    its lanes' workers and records their outcomes; the workers only post (they never touch the database).
    `deadline` bounds each delivery; `callback_private_destinations` lets messages' own callback URLs reach
    loopback and LAN addresses (subscriptions always may)."""

    def __init__(self, store: Store, message_view: Callable[[int], dict], deadline: float = DELIVERY_DEADLINE,
                 schedule: tuple[float, ...] = RETRY_SCHEDULE, *, callback_private_destinations: bool = False,
                 workers: int = LANE_WORKERS, resolver: Resolver | None = None):
        super().__init__(name="webhooks", daemon=True)
        self.store = store
        self.message_view = message_view
        self.deadline = deadline
        self.schedule = schedule
        self.callback_private_destinations = callback_private_destinations
        self.resolver = resolver or _RESOLVER
        self._lanes = (_Lane("subscriptions", False, workers, self._attempt, self._finished),
                       _Lane("callbacks", True, workers, self._attempt, self._finished))
        self._outcomes: queue.SimpleQueue[_Outcome] = queue.SimpleQueue()
        self._unrecorded: deque[_Outcome] = deque()
        self._resting: dict[int, float] = {}        # delivery id -> time.monotonic() before which it waits
        self._wake = threading.Condition()
        self._poked = False
        self._stopping = False

    # --- events -> outbox ----------------------------------------------------------------------------

    def _has_callback(self, message_id: int) -> bool:
        return bool(self.store.callback_url(message_id))

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
        deliveries = []
        for webhook_id, url in targets:
            event_id = "evt_" + secrets.token_hex(12)
            deliveries.append((webhook_id, url, event_id,
                               json.dumps({**payload, "event_id": event_id}, ensure_ascii=False)))
        self.store.add_webhook_deliveries(event, message_id, deliveries, time.time())
        self.store.after_commit(self.wake)  # in the event's own transaction, when a recorder (Gateway.subscribe)

    def redeliver(self, webhook_id: int, delivery_id: int) -> dict:
        """Send a delivery again (its attempts start over): its row. Raises NotFound."""
        row = self.store.redeliver_webhook_delivery(webhook_id, delivery_id, time.time())
        self.wake()  # only now: the answer shows the delivery as queued, whatever the sender does next
        return row

    def deliveries(self, webhook_id: int, limit: int = 100, *, before: int | None = None, after: int | None = None,
                   status: str | None = None) -> list[dict]:
        """A subscription's deliveries, newest first, a page at a time (`deliveries`). Raises NotFound,
        ValueError (an unknown status)."""
        return deliveries(self.store, webhook_id, limit, before=before, after=after, status=status)

    def delivery_counts(self, webhook_id: int) -> dict[str, int]:
        """How many deliveries of a subscription are pending, delivered and dead. Raises NotFound."""
        return delivery_counts(self.store, webhook_id)

    def backlog(self) -> int:
        """How many deliveries wait to be sent."""
        return self.store.webhook_backlog()

    def failing(self) -> list[dict]:
        """The enabled subscriptions whose receivers are failing (`failing_from`)."""
        return failing(self.store)

    def update(self, webhook_id: int, *, url: str | None = None, events: list[str] | None = None,
               enabled: bool | None = None) -> tuple[dict, int]:
        """`update_webhook` (a new URL or enabling it makes the pending deliveries due now), then the sender
        looks at the outbox at once: (the row, how many pending deliveries were made due). Raises urls.UrlError
        (for `url`), ValueError (for `events`), NotFound."""
        row, made_due = update_webhook(self.store, webhook_id, url=url, events=events, enabled=enabled)
        self.wake()
        return row, made_due

    def retry_pending(self, webhook_id: int) -> int:
        """Make every pending delivery of a subscription due now ("Retry pending now": after its receiver was
        fixed, nothing should wait out a backoff of hours), and wake the sender: how many are pending. Their
        attempts so far still count. A disabled subscription's stay held until it is enabled. Raises NotFound."""
        count = self.store.retry_pending_webhook_deliveries(webhook_id, time.time())
        self.wake()
        return count

    def redeliver_dead(self, webhook_id: int) -> int:
        """Queue every dead delivery of a subscription again, due now, its attempts starting over, to the
        subscription's URL as it is now ("Redeliver all dead"), and wake the sender: how many. Raises NotFound."""
        count = self.store.redeliver_dead_webhook_deliveries(webhook_id, time.time())
        self.wake()
        return count

    def test(self, webhook_id: int) -> str:
        """Queue a `webhook.test` event for one subscription, whatever events it chose: its event id. Raises
        NotFound, ValueError (the subscription is disabled: the delivery would only wait)."""
        hook = webhook(self.store, webhook_id)
        if not hook["enabled"]:
            raise ValueError(f"webhook {webhook_id} is disabled: enable it, then send a test event")
        event_id = "evt_" + secrets.token_hex(12)
        payload = {"event": TEST_EVENT, "event_id": event_id, "timestamp": _iso_now(), "webhook_id": webhook_id,
                   "test": True}
        self.store.add_webhook_deliveries(TEST_EVENT, None, [(webhook_id, hook["url"], event_id,
                                                              json.dumps(payload))], time.time())
        self.wake()
        return event_id

    # --- sending -------------------------------------------------------------------------------------

    def wake(self) -> None:
        with self._wake:
            self._poked = True  # remembered, so a wake-up between a check and the wait is not lost
            self._wake.notify()

    def stop(self) -> None:
        """Stop taking deliveries. One in flight ends by its deadline; its outcome is not recorded, so it is
        sent again after a restart (receivers tell repeats by X-Modemgw-Event-Id)."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self.is_alive():
            self.join(timeout=5)

    def run(self) -> None:
        while not self._stopping:
            with self._wake:
                self._poked = False
            try:
                self._record_outcomes()
                wait = self._dispatch()
            except StoreError as error:  # a full or locked database: the outbox is intact, try again shortly
                log.error("webhook sender: %s", error)
                wait = 5.0
            except Exception:  # the outbox survives any fault; try again shortly
                log.exception("webhook sender")
                wait = 5.0
            with self._wake:
                if not self._poked and not self._stopping:
                    self._wake.wait(wait)
        for lane in self._lanes:
            lane.stop()

    def _dispatch(self) -> float | None:
        """Start due deliveries on idle workers; seconds until the next one falls due (None: none waits). One
        that is due but held (its destination busy, no worker idle, an earlier one to its URL in flight)
        starts when a delivery ends, which wakes this thread."""
        now = time.time()
        self._resting = {key: until for key, until in self._resting.items() if until > time.monotonic()}
        for lane in self._lanes:
            lane.keep_workers()
            self._fill(lane, now)
        waits = []
        next_at = self.store.next_webhook_attempt_after(now)
        if next_at is not None:
            waits.append(next_at - time.time())
        if self._resting:
            waits.append(min(self._resting.values()) - time.monotonic())
        return max(0.05, min(waits)) if waits else None

    def _fill(self, lane: _Lane, now: float) -> None:
        after = 0
        while lane.idle() > 0:
            rows = self.store.due_webhook_deliveries(now, lane.callbacks, after, lane.skip_urls(), _PAGE)
            for row in rows:
                after = row["id"]
                if row["id"] in lane.in_flight or row["id"] in self._resting:
                    continue
                try:
                    self._start(lane, row)
                except StoreError:
                    raise
                except Exception:  # one delivery the sender cannot handle must not hold up the others
                    log.exception("webhook delivery %s", row["id"])
                    self._resting[row["id"]] = time.monotonic() + _REST
                if lane.idle() == 0:
                    return
            if len(rows) < _PAGE:
                return

    def _start(self, lane: _Lane, row: dict) -> None:
        destination = _destination_of(row["url"])
        if destination in lane.busy:
            lane.busy[destination].add(row["url"])  # its other deliveries are skipped until it is free
            return
        private = self.callback_private_destinations if lane.callbacks else True
        if row["payload"] is None:  # lost, damaged, or coded with a dictionary this version lacks
            self._record(_Outcome(_Job(row, "", private, destination, lane), permanent=True,
                                  error="its payload cannot be read (lost, damaged, or written by a newer modemgw)"))
            return
        try:
            secret = self._secret(row)
        except NotFound:  # the subscription was deleted meanwhile (its deliveries normally go with it)
            self._record(_Outcome(_Job(row, "", private, destination, lane), error="the subscription was deleted",
                                  permanent=True))
            return
        lane.start(_Job(row, secret, private, destination, lane))

    def _secret(self, row: dict) -> str:
        if row["webhook_id"] is None:
            return callback_secret(self.store)
        return webhook(self.store, row["webhook_id"])["secret"]

    def _attempt(self, job: _Job) -> _Outcome:
        """One POST of a delivery (in a lane's worker). Never raises: any fault is a failed attempt of this
        delivery alone."""
        row = job.row
        try:
            body = row["payload"].encode()
            timestamp = str(int(time.time()))
            headers = {"Content-Type": "application/json", "User-Agent": "modemgw-webhooks",
                       "X-Modemgw-Event": row["event"], "X-Modemgw-Event-Id": row["event_id"],
                       "X-Modemgw-Timestamp": timestamp, "X-Modemgw-Signature": sign(job.secret, timestamp, body)}
            status_code = post(row["url"], body, headers, deadline=self.deadline, private=job.private,
                               resolver=self.resolver)
        except urls.UrlError as error:
            return _Outcome(job, error=f"invalid URL: the URL {error}", permanent=True)
        except TimeoutError:
            return _Outcome(job, error=f"no complete answer within the delivery deadline ({self.deadline:g} s)")
        except DeliveryError as error:
            return _Outcome(job, error=str(error))
        except Exception as error:  # noqa: BLE001 - OSError, http.client's and ssl's errors, a bad row
            return _Outcome(job, error=f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)
        if 200 <= status_code < 300:
            return _Outcome(job, status_code)
        return _Outcome(job, status_code, f"HTTP {status_code}")

    def _finished(self, outcome: _Outcome) -> None:
        self._outcomes.put(outcome)
        self.wake()

    def _record_outcomes(self) -> None:
        """Record what the workers did, in order, in one transaction (one commit for all the outcomes that came
        in meanwhile, not one each: fewer pages written). If the database refuses it, every outcome is kept for the
        next round (their deliveries stay in flight meanwhile, so none is posted twice)."""
        while True:
            try:
                self._unrecorded.append(self._outcomes.get_nowait())
            except queue.Empty:
                break
        if not self._unrecorded:
            return
        with self.store.transaction():
            for outcome in self._unrecorded:
                self._record(outcome)
        self._unrecorded.clear()

    def _record(self, outcome: _Outcome) -> None:
        """Write one attempt's outcome and free its worker. Raises StoreError (the outcome is then still to be
        recorded, and its delivery stays in flight)."""
        row = outcome.job.row
        try:
            attempts = row["attempts"] + 1
            now = time.time()
            error = None if outcome.error is None else outcome.error.encode("utf-8", "replace").decode()
            retry_at = None
            if error is not None and not outcome.permanent and attempts <= len(self.schedule):
                retry_at = now + self.schedule[attempts - 1]
            self.store.record_webhook_attempt(row["id"], attempts, now, outcome.status_code,
                                              error and error[:_ERROR_CHARS], retry_at)
            if error is not None and retry_at is None:
                log.warning("webhook delivery %s to %s is dead after %d attempts: %s", row["id"], row["url"],
                            attempts, error)
        except StoreError:
            raise
        except Exception:  # cannot happen with a sane row; the delivery rests, then is tried as it stands
            log.exception("webhook delivery %s: its attempt cannot be recorded", row.get("id"))
            self._resting[row["id"]] = time.monotonic() + _REST
        # freed once recorded: until the commit the row is still pending, and must not be taken again
        self.store.after_commit(functools.partial(outcome.job.lane.finish, row["id"]))
