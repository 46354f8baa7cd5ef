"""The SMPP 3.4 server: modemgw as an SMSC for Kannel, Jasmin and SMPP applications (`[smpp] listen`).

Threads: one accepts connections (at most `max_sessions` at once: more are closed at once), two per session
(session.py), and one outbox thread that sends the durable deliver_sm queue (`smpp_outbox`: receipts and inbound
SMS) to the bound receivers of each user, within `window` deliver_sm in flight per session, again after
`resend_timeout` without an answer; it also queues parts of concatenated submits that never completed, after
`assembly_timeout`. Everything goes through the gateway façade (`Gateway.send`) and the store's SMPP methods.

Message ids: a submit_sm_resp's message_id is the gateway's message id in decimal, the id the API, the web UI
and `modemgw status` show. A message the client split (a UDH, or the sar_* TLVs) is queued whole once its last
part arrives: that part's response carries the message id, the earlier parts' responses carry ids of their own
(16 decimal digits, never a message id), and each id the client was given gets its own receipt. Each part is
committed to the database (`smpp_parts`) before its ESME_ROK goes out, so a crash or a restart loses none: the
last part may come after a restart, and groups older than `assembly_timeout` are queued at start too. A group is
queued with an idempotency key of its own, so a retry after a crash between the queuing and the parts' deletion
finds the message queued already instead of queuing it twice.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from collections import Counter
from dataclasses import asdict

from modemgw import config as configuration
from modemgw.gateway import Gateway, SubmitError, SubmitRequest
from modemgw.settings import SmppSettings
from modemgw.smpp import accounts, pdu, receipts
from modemgw.smpp.session import InFlight, Session
from modemgw.store import Conflict, NotFound, StoreError

log = logging.getLogger("modemgw.smpp")

MAX_ATTEMPTS = 10  # a deliver_sm the client refuses this often leaves the queue ('failed')
CATCH_UP = 7 * 86400  # at start, receipts and inbound SMS of the last week that were never queued are
KEEP_FINISHED = 7 * 86400  # delivered outbox rows are kept this long (the web UI and status count the pending)
PURGE_EVERY = 3600.0
# How often the users of the bound sessions are compared with the database: `modemgw smpp-users` (another process)
# may have disabled or deleted one, or given it a new password, and its sessions must not go on sending.
ACCOUNTS_EVERY = 5.0
MAX_ASSEMBLIES = 200  # concatenated submits being assembled at once (all users); more: ESME_RMSGQFUL
# submit errors by the request's field at fault (Gateway.send's SubmitError.field)
FIELD_STATUS = {"to": pdu.ESME_RINVDSTADR, "body": pdu.ESME_RINVMSGLEN, "validity": pdu.ESME_RINVEXPIRY,
                "send_at": pdu.ESME_RINVSCHED, "priority": pdu.ESME_RINVPRTFLG}


class SmppServer:
    """`start()`, `stop()`, `port` (the bound port: `127.0.0.1:0` in tests), `sessions()` for status."""

    def __init__(self, gateway: Gateway, settings: SmppSettings):
        self.gateway = gateway
        self.store = gateway.store
        self.settings = settings
        self.port: int | None = None
        self.counters: Counter[str] = Counter()
        self._listener: socket.socket | None = None
        self._sessions: list[Session] = []
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._dirty = True
        self._running = False
        self._paused: dict[int, float] = {}  # user id -> monotonic time its deliveries may go again
        self._threads: list[threading.Thread] = []
        self.accounts_every = ACCOUNTS_EVERY  # seconds (tests make it short)

    # --- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> SmppServer:
        if self.settings.listen is None:
            raise ValueError("[smpp] listen is not set")
        host, port = configuration.parse_listen(self.settings.listen)
        try:
            listener = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                                            backlog=16)
        except OSError as error:
            raise OSError(error.errno, f"[smpp] listen {self.settings.listen}: {error.strerror} (another SMSC or "
                                       f"modemgw on that port? set another port)") from None
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._running = True
        self.gateway.subscribe(self.on_event, recorder=True)
        for target, name in ((self._accept_loop, "smpp-accept"), (self._outbox_loop, "smpp-outbox")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("SMPP server listening on %s:%d", host, self.port)
        return self

    def stop(self) -> None:
        """Unbind every client, stop every thread. Parts of unfinished concatenated submits stay in the database:
        their last part may come after the next start (or they are queued once `assembly_timeout` has passed)."""
        if not self._running:
            return
        self._running = False
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
            except OSError:
                pass
            self._listener.close()
        with self._lock:
            sessions = list(self._sessions)
            self._wake.notify_all()
        for session in sessions:
            session.unbind()
        for session in sessions:
            session.join(2.0)
        for thread in self._threads:
            thread.join(5.0)

    def is_alive(self) -> bool:
        return all(thread.is_alive() for thread in self._threads)

    # --- connections ----------------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while self._running:
            try:
                sock, address = self._listener.accept()
            except OSError:
                return
            peer = f"{address[0]}:{address[1]}"
            with self._lock:
                if not self._running or len(self._sessions) >= self.settings.max_sessions:
                    full = True
                else:
                    full = False
                    session = Session(self, sock, peer)
                    self._sessions.append(session)
            if full:
                log.warning("SMPP %s: %d sessions already (max_sessions); connection closed", peer,
                            self.settings.max_sessions)
                self.count("connections_refused")
                sock.close()
                continue
            session.start()

    def session_bound(self, session: Session) -> None:
        self.wake()

    def session_ended(self, session: Session) -> None:
        with self._lock:
            if session in self._sessions:
                self._sessions.remove(session)
            session.in_flight.clear()  # their rows stay pending: another receiver, or this one again, gets them
        try:
            session.sock.close()
        except OSError:
            pass
        self.wake()

    def sessions(self) -> list[dict]:
        """Each session: system_id, bind, peer, since, submitted_per_second, window (in use), window_size,
        deliveries_in_flight, and the user's pending receipts and inbound SMS."""
        with self._lock:
            sessions = list(self._sessions)
        try:
            pending = self.store.smpp_pending_counts()
        except StoreError:
            pending = {}
        rows = []
        for session in sessions:
            counts = pending.get(session.user["id"], {}) if session.user else {}
            rows.append(session.summary() | {"receipts_pending": counts.get("receipt", 0),
                                             "inbound_pending": counts.get("inbound", 0)})
        return rows

    def metrics(self) -> dict:
        """For /metrics: sessions by (system_id, bind), counters since start (submits by result, deliver_sm by the
        client's answer, rows queued by kind), and pending rows by (system_id, kind)."""
        with self._lock:
            sessions = Counter((session.user["system_id"] if session.user else "", session.bind_type or "unbound")
                               for session in self._sessions)
            counters = dict(self.counters)
        try:
            names = {user["id"]: user["system_id"] for user in self.store.smpp_users()}
            pending = {(names.get(user_id, str(user_id)), kind): count
                       for user_id, kinds in self.store.smpp_pending_counts().items() for kind, count in kinds.items()}
        except StoreError:
            pending = {}
        return {"sessions": dict(sessions),
                "submits": {"accepted": counters.get("submits", 0), "refused": counters.get("submits_refused", 0),
                            "throttled": counters.get("submits_throttled", 0),
                            "window_full": counters.get("submits_refused_window", 0)},
                "deliver_sm": {"delivered": counters.get("deliveries", 0),
                               "refused": counters.get("deliveries_refused", 0)},
                "queued": {"receipt": counters.get("receipts_queued", 0),
                           "inbound": counters.get("inbound_queued", 0)},
                "pending": pending}

    def count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.counters[name] += amount

    # --- submit_sm, query_sm, cancel_sm -----------------------------------------------------------------------

    def submit(self, user: dict, request: pdu.Submit) -> tuple[int, str]:
        """(command_status, message_id) for one submit_sm of `user`."""
        try:
            status, message_id = self._submit(user, request)
        except pdu.PduError as error:
            log.info("SMPP %s: submit_sm refused: %s", user["system_id"], error)
            status, message_id = error.status, ""
        self.count("submits" if status == pdu.ESME_ROK else "submits_refused")
        return status, message_id

    def _submit(self, user: dict, request: pdu.Submit) -> tuple[int, str]:
        if request.dest_ton == pdu.TON_ALPHANUMERIC or not request.destination_addr.strip():
            raise pdu.PduError(f"destination_addr {request.destination_addr!r} is not a number", pdu.ESME_RINVDSTADR)
        if request.priority_flag > 3:
            raise pdu.PduError(f"priority_flag {request.priority_flag} is not 0-3", pdu.ESME_RINVPRTFLG)
        payload = request.tlvs.get(pdu.TAG_MESSAGE_PAYLOAD)
        if payload is not None and request.short_message:
            raise pdu.PduError("both short_message and message_payload are set", pdu.ESME_RINVMSGLEN)
        data = payload if payload is not None else request.short_message
        segment = None
        if request.esm_class & pdu.ESM_UDHI:
            segment, data = pdu.split_udh(data)
        else:
            segment = pdu.sar_segment(request.tlvs, data)
        now = time.time()
        send_at = pdu.parse_time(request.schedule_delivery_time, now, "schedule_delivery_time", pdu.ESME_RINVSCHED)
        expires = pdu.parse_time(request.validity_period, now, "validity_period", pdu.ESME_RINVEXPIRY)
        if expires is not None and expires <= max(now, send_at or now):
            raise pdu.PduError(f"validity_period {request.validity_period!r} has passed", pdu.ESME_RINVEXPIRY)
        if segment is not None and segment.total > 1:
            if not 1 <= segment.sequence <= segment.total:
                raise pdu.PduError(f"part {segment.sequence} of {segment.total}", pdu.ESME_RINVESMCLASS)
            if len(segment.data) > pdu.MAX_SHORT_MESSAGE:  # what is held stays small (200 × 255 × 254)
                raise pdu.PduError("a part of a concatenated message is at most 254 octets", pdu.ESME_RINVMSGLEN)
            pdu.check_text(request.data_coding, segment.data)
            return self._part(user, request, segment)
        body = pdu.decode_text(request.data_coding, data)
        message_id = self._queue(user, request, body, [])
        return pdu.ESME_ROK, message_id

    def _part(self, user: dict, request: pdu.Submit, segment: pdu.Segment) -> tuple[int, str]:
        """One part of a message the client split: committed (`smpp_parts`) before its ESME_ROK, queued whole with
        the others once the last arrives."""
        part_id = str(10**15 + secrets.randbelow(9 * 10**15))
        options = {name: value for name, value in asdict(request).items() if name not in ("short_message", "tlvs")}
        try:
            group = self.store.add_smpp_part(
                user["id"], request.source_addr, request.destination_addr, segment.reference, segment.total,
                segment.sequence, request.data_coding, segment.data, options, part_id, secrets.token_hex(12),
                time.time(), MAX_ASSEMBLIES)
        except Conflict:
            raise pdu.PduError("too many concatenated messages are being assembled", pdu.ESME_RMSGQFUL) from None
        except StoreError as error:
            log.error("SMPP %s: a part of a concatenated submit_sm was not stored: %s", user["system_id"], error)
            raise pdu.PduError(str(error), pdu.ESME_RSYSERR) from None
        if len(group["rows"]) > len({row["seq"] for row in group["rows"]}):
            log.info("SMPP %s: part %d of %d came again; the later one counts", user["system_id"],
                     segment.sequence, segment.total)
        if not group["complete"]:
            self.wake()  # its deadline
            return pdu.ESME_ROK, part_id
        # on failure the parts stay: the client may send the last part again, or they go after assembly_timeout
        return pdu.ESME_ROK, self._queue_group(user, group, lenient=False)

    def _queue_group(self, user: dict, group: dict, lenient: bool) -> str:
        """Queue the parts of a group that arrived as one message (the later copy of a part that came twice
        counts), then drop them; the message's id. Raises PduError (the parts are kept)."""
        rows = group["rows"]
        parts = {row["seq"]: row["data"] for row in rows}
        request = pdu.Submit(**rows[0]["options"], short_message=b"", tlvs={})  # the first part's fields
        body = pdu.decode_text(request.data_coding, b"".join(parts[seq] for seq in sorted(parts)), lenient=lenient)
        ids = [row["part_id"] for row in rows if row["part_id"]]
        message_id = self._queue(user, request, body, ids, idempotency_key=f"smpp-parts:{group['group_key']}",
                                 base=group["created_at"])
        try:
            self.store.delete_smpp_parts(group["group_key"])
        except StoreError as error:  # queued again later under the same key: found queued, not queued twice
            log.error("SMPP %s: parts of message %s not dropped: %s", user["system_id"], message_id, error)
        return message_id

    def _queue(self, user: dict, request: pdu.Submit, body: str, part_ids: list[str],
               idempotency_key: str | None = None, base: float | None = None) -> str:
        """Queue the message through the gateway; its id. Relative times count from `base` (default now: a group
        of parts gives its first part's time, so that queuing it again makes the same request for the idempotency
        key). Raises PduError."""
        now = time.time() if base is None else base
        send_at = pdu.parse_time(request.schedule_delivery_time, now, "schedule_delivery_time", pdu.ESME_RINVSCHED)
        expires = pdu.parse_time(request.validity_period, now, "validity_period", pdu.ESME_RINVEXPIRY)
        start = max(now, send_at or now)
        validity = max(1, round(expires - start)) if expires is not None else None
        wanted = receipts.receipt_wanted(request.registered_delivery)
        to = pdu.address_in(request.dest_ton, request.destination_addr)
        try:
            result = self.gateway.send(SubmitRequest(
                body, to, priority=request.priority_flag * 10, send_at=send_at if send_at and send_at > now else None,
                validity=validity, request_report=wanted != receipts.RECEIPT_NONE, smpp_user_id=user["id"],
                idempotency_key=idempotency_key))
        except SubmitError as error:
            raise pdu.PduError(error.detail, FIELD_STATUS.get(error.field or "", pdu.ESME_RSUBMITFAIL)) from None
        except Conflict as error:  # a group's key queued a different request: it was queued, by an older modemgw
            raise pdu.PduError(str(error), pdu.ESME_RSUBMITFAIL) from None
        except StoreError as error:
            log.error("SMPP %s: submit_sm not stored: %s", user["system_id"], error)
            raise pdu.PduError(str(error), pdu.ESME_RSYSERR) from None
        if not result["messages"]:
            reason = result["skipped"][0]["reason"] if result["skipped"] else "not queued"
            raise pdu.PduError(f"{to}: {reason}", pdu.ESME_RSUBMITFAIL)
        message_id = result["messages"][0]["id"]
        if wanted != receipts.RECEIPT_NONE and not result.get("idempotent_replay"):  # noted the first time
            details = {"ids": [*part_ids, str(message_id)], "registered_delivery": wanted,
                       "source_addr": request.source_addr, "source_ton": request.source_ton,
                       "source_npi": request.source_npi}
            try:
                self.store.note_smpp_receipt(user["id"], message_id, details, now)
                self._queue_receipts(message_id)  # it may be final already (failed at once)
            except StoreError as error:  # the message is queued: its receipt is found again at the next start
                log.error("SMPP %s: receipt of message %d not noted: %s", user["system_id"], message_id, error)
        return str(message_id)

    def _own_message(self, user: dict, message_id: str) -> dict | None:
        """The message of that id that `user` submitted, or None."""
        if not message_id.isdigit() or len(message_id) > 15:
            return None
        try:
            message = self.gateway.message(int(message_id), timeline=False)
        except NotFound:
            return None
        return message if message.get("smpp_user_id") == user["id"] else None

    def query(self, user: dict, message_id: str) -> tuple[int, bytes]:
        """query_sm: (command_status, query_sm_resp body)."""
        try:
            message = self._own_message(user, message_id)
        except StoreError:
            return pdu.ESME_RSYSERR, b""
        if message is None:
            return pdu.ESME_RQUERYFAIL, b""
        final = message.get("delivered_at") or message.get("updated_at")
        state = receipts.message_state(message["status"])
        final_date = pdu.absolute_time(final) if state not in (pdu.ENROUTE, pdu.ACCEPTED) and final else ""
        return pdu.ESME_ROK, pdu.query_resp_body(message_id, final_date, state, (message.get("error_code") or 0))

    def cancel(self, user: dict, message_id: str) -> int:
        """cancel_sm: a message of this user's that has not left yet is canceled."""
        try:
            message = self._own_message(user, message_id)
            if message is None or message["status"] not in ("queued", "scheduled"):
                return pdu.ESME_RCANCELFAIL  # unknown, another user's, or on its way already
            if self.gateway.cancel(int(message_id)) != "canceled":
                return pdu.ESME_RCANCELFAIL
        except (NotFound, StoreError):
            return pdu.ESME_RCANCELFAIL
        self.on_event("message.canceled", {"id": int(message_id)})  # its receipt (the gateway emits no event)
        return pdu.ESME_ROK

    # --- receipts and inbound SMS: the gateway's events, the outbox --------------------------------------------

    def on_event(self, event: str, data: dict) -> None:
        """Gateway listener: queue the receipt of a final message that came over SMPP, and inbound SMS for the
        users that take them (durable at once; the outbox thread sends them)."""
        if not self._running:
            return
        try:
            if event in ("message.delivered", "message.undelivered", "message.failed", "message.expired",
                         "message.canceled"):
                self._queue_receipts(int(data["id"]))
            elif event == "inbound.received":
                self._queue_inbound(int(data["id"]))
        except StoreError as error:  # found again at the next start (CATCH_UP)
            log.error("SMPP: %s %s not queued for SMPP clients: %s", event, data.get("id"), error)

    def _queue_receipts(self, message_id: int, recover: bool = False) -> None:
        queued = self.store.queue_smpp_receipts(message_id, receipts.receipts, time.time(), recover=recover)
        if queued:
            # a recorder: maybe inside the event's transaction, which may yet roll back (and be retried)
            self.store.after_commit(lambda: self._queued("receipts_queued", queued))

    def _queue_inbound(self, inbox_id: int, recover: bool = False) -> None:
        queued = self.store.queue_smpp_inbound(inbox_id, receipts.inbound, time.time(), recover=recover)
        if queued:
            # a recorder: maybe inside the event's transaction, which may yet roll back (and be retried)
            self.store.after_commit(lambda: self._queued("inbound_queued", queued))

    def _queued(self, counter: str, count: int) -> None:
        """Rows committed to the outbox: counted, and the outbox thread woken."""
        self.count(counter, count)
        self.wake()

    def catch_up(self) -> None:
        """Queue what a crash may have left out: receipts of messages that became final, and inbound SMS that
        arrived, while no server ran or between their commit and their outbox row."""
        since = time.time() - CATCH_UP
        for message_id in self.store.smpp_receipts_due(since):
            self._queue_receipts(message_id, recover=True)
        for inbox_id in self.store.smpp_inbound_due(since):
            self._queue_inbound(inbox_id, recover=True)

    def wake(self) -> None:
        with self._wake:
            self._dirty = True
            self._wake.notify_all()

    def delivery_answered(self, session: Session, sequence: int, status: int) -> None:
        """A deliver_sm_resp (or generic_nack) for our deliver_sm `sequence` on `session`."""
        with self._lock:
            flight = session.in_flight.get(sequence)
        if flight is None:
            return
        try:  # recorded before it leaves in_flight: the outbox thread must not see it pending and free meanwhile
            if status == pdu.ESME_ROK:
                self.store.smpp_delivered(flight.row_id, time.time())
                self.count("deliveries")
            else:
                log.info("SMPP %s: deliver_sm refused with 0x%02x", session.peer, status)
                self.count("deliveries_refused")
                if flight.attempts + 1 >= MAX_ATTEMPTS:
                    self.store.smpp_give_up(flight.row_id, time.time())
                else:
                    with self._lock:
                        self._paused[flight.user_id] = time.monotonic() + self.settings.resend_timeout
        except StoreError as error:
            log.error("SMPP: outbox row %d not recorded (%s); it goes again", flight.row_id, error)
        with self._lock:
            session.in_flight.pop(sequence, None)
        self.wake()

    def _outbox_loop(self) -> None:
        try:
            self.catch_up()
        except StoreError as error:
            log.error("SMPP: catching up on receipts and inbound SMS failed: %s", error)
        next_purge = next_accounts = time.monotonic()
        while self._running:
            with self._wake:
                if not self._dirty:
                    self._wake.wait(max(0.0, self._next_deadline(next_purge, next_accounts) - time.monotonic()))
                self._dirty = False
            if not self._running:
                return
            try:
                if time.monotonic() >= next_accounts:
                    next_accounts = time.monotonic() + self.accounts_every
                    self._check_accounts()
                self._expire_flights()
                self._flush_assemblies()
                self._deliver()
                if time.monotonic() >= next_purge:
                    self.store.purge_smpp_outbox(time.time() - KEEP_FINISHED)
                    next_purge = time.monotonic() + PURGE_EVERY
            except StoreError as error:
                log.error("SMPP outbox: %s", error)
                with self._wake:
                    self._wake.wait(1.0)  # the database refuses: try again in a second, not in a loop
            except Exception:
                log.exception("SMPP outbox failed")

    def _next_deadline(self, next_purge: float, next_accounts: float) -> float:
        deadlines = [next_purge]
        with self._lock:
            if any(session.user is not None for session in self._sessions):  # no session bound: no check to make
                deadlines.append(next_accounts)
        try:
            oldest = self.store.smpp_parts_oldest()
        except StoreError:
            oldest = None
        if oldest is not None:  # the oldest group of parts is due then (a wall-clock time made monotonic)
            deadlines.append(time.monotonic() + oldest + self.settings.assembly_timeout - time.time())
        with self._lock:
            deadlines += list(self._paused.values())
            for session in self._sessions:
                deadlines += [flight.sent_at + self.settings.resend_timeout for flight in session.in_flight.values()]
        return min(deadlines)

    def _check_accounts(self) -> None:
        """Unbind the sessions whose user was disabled, deleted or given a new password since it bound (with an
        unbind PDU, as when the server stops: the client's next bind is refused, or takes the new password), and
        apply a new throughput to the others at once. Raises StoreError."""
        with self._lock:
            bound = [session for session in self._sessions if session.user is not None and not session.closed]
        if not bound:
            return
        users = accounts.current_accounts(self.store)
        for session in bound:
            assert session.user is not None
            user = users.get(session.user["id"])
            reason = ("was deleted" if user is None else "was disabled" if user["disabled"]
                      else "has a new password" if user["credential"] != session.user.get("credential") else None)
            if reason is not None:
                log.warning("SMPP %s: user %s %s: its %s session is unbound", session.peer,
                            session.user["system_id"], reason, session.bind_type)
                self.count("sessions_unbound_by_account")
                session.unbind()
            elif user is not None and user != session.user:
                session.user = user  # a new throughput applies to the next submit_sm

    def _expire_flights(self) -> None:
        now = time.monotonic()
        with self._lock:
            for session in self._sessions:
                for sequence, flight in list(session.in_flight.items()):
                    if flight.sent_at + self.settings.resend_timeout <= now:
                        log.info("SMPP %s: no deliver_sm_resp within %g s; it goes again", session.peer,
                                 self.settings.resend_timeout)
                        del session.in_flight[sequence]
            for user_id, until in list(self._paused.items()):
                if until <= now:
                    del self._paused[user_id]

    def _flush_assemblies(self) -> None:
        """Queue the parts that arrived of concatenated submits whose first part is older than
        `assembly_timeout` (also those held when the server last stopped or crashed). Raises StoreError."""
        older_than = time.time() - self.settings.assembly_timeout
        oldest = self.store.smpp_parts_oldest()  # a read: the common case (nothing due) takes no write lock
        if oldest is None or oldest >= older_than:
            return
        groups = self.store.smpp_part_groups_due(older_than)
        if not groups:
            return
        users = {user["id"]: user for user in self.store.smpp_users()}
        for group in groups:
            user = users.get(group["rows"][0]["user_id"])
            if user is None:  # the user was deleted since
                self.store.delete_smpp_parts(group["group_key"])
                continue
            have = sorted({row["seq"] for row in group["rows"]})
            if not group["complete"]:
                log.warning("SMPP %s: only parts %s of %d arrived; queuing them", user["system_id"],
                            ",".join(map(str, have)), group["rows"][0]["total"])
            try:
                self._queue_group(user, group, lenient=True)
            except pdu.PduError as error:
                if error.status == pdu.ESME_RSYSERR:  # the database: try again (the loop waits a second)
                    raise StoreError(f"parts of a concatenated submit not queued: {error}") from None
                log.error("SMPP %s: the parts that arrived cannot be queued: %s", user["system_id"], error)
                self.store.delete_smpp_parts(group["group_key"])

    def _deliver(self) -> None:
        """Send pending rows to each receiving session, up to its window."""
        with self._lock:
            sessions = [session for session in self._sessions if session.receives and session.user is not None]
            paused = {user_id for user_id, until in self._paused.items() if until > time.monotonic()}
        for session in sessions:
            assert session.user is not None
            user_id = session.user["id"]
            if user_id in paused:
                continue
            with self._lock:
                free = self.settings.window - len(session.in_flight)
                busy = {flight.row_id for other in self._sessions if other.user and other.user["id"] == user_id
                        for flight in other.in_flight.values()}
            if free <= 0:
                continue
            for row in self.store.smpp_pending(user_id, free, busy):
                sequence = session.next_sequence()
                with self._lock:
                    session.in_flight[sequence] = InFlight(row["id"], user_id, row["attempts"], time.monotonic())
                self.store.smpp_sent(row["id"])
                body = pdu.deliver_body(receipts.from_payload(row["payload"]))
                if not session.send(pdu.encode(pdu.DELIVER_SM, sequence, body)):
                    break


__all__ = ["SmppServer"]
