"""One SMPP connection: a reader thread that frames PDUs and answers what is quick (binds, enquire_link, responses
to our deliver_sm), and a worker thread that takes the client's submits, queries and unbind in order, so that a
slow database never stops enquire_link answers and the window of outstanding requests means something.

Framing: the 16-octet header first, its command_length checked (16 to 64 KB) before the body is read; a length
outside that loses the framing, so the session ends after a generic_nack. A body that does not parse, or a command
we do not know, gets a generic_nack and the session goes on. Nothing is polled: the reader waits on the socket
until the bind or idle deadline.
"""

from __future__ import annotations

import logging
import queue
import select
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modemgw.smpp import pdu
from modemgw.smpp.accounts import BindRefused, check_bind
from modemgw.store import StoreError

if TYPE_CHECKING:
    from modemgw.smpp.server import SmppServer

log = logging.getLogger("modemgw.smpp")

MAX_FAILED_BINDS = 3  # wrong binds on one connection before it is closed
WRITE_TIMEOUT = 10.0  # seconds a client may leave our PDUs unread (full buffers) before its session ends
RATE_WINDOW = 10.0  # seconds over which "submitted/s" is measured
SYSTEM_ID = "modemgw"  # ours, in bind responses


class _Closed(Exception):
    """The connection ended (the client closed it, or the server)."""


class _Idle(Exception):
    """No PDU within the deadline."""


@dataclass
class InFlight:
    """A deliver_sm of ours waiting for its deliver_sm_resp."""

    row_id: int
    user_id: int
    attempts: int
    sent_at: float  # monotonic


class Session:
    """One client's connection, from accept to close."""

    def __init__(self, server: SmppServer, sock: socket.socket, peer: str):
        self.server = server
        self.settings = server.settings
        self.sock = sock
        self.peer = peer
        self.connected_at = time.time()
        self.bound_at: float | None = None
        self.bind_type: str | None = None  # "transmitter", "receiver" or "transceiver" once bound
        self.user: dict | None = None
        self.closed = False
        self._buffer = bytearray()
        self._opened = self._last_received = time.monotonic()
        self._unbinding = False
        self._write_lock = threading.Lock()
        self._requests: queue.Queue = queue.Queue()
        self._outstanding = 0  # requests queued for the worker or in its hands (the window in use)
        self._lock = threading.Lock()
        self._sequence = 0
        self._failed_binds = 0
        self._tokens = 0.0
        self._refilled = time.monotonic()
        self._submits: deque[float] = deque()
        self.in_flight: dict[int, InFlight] = {}  # our deliver_sm by sequence number (the server's outbox thread)
        self.reader = threading.Thread(target=self._read_loop, name=f"smpp-{peer}", daemon=True)
        self.worker = threading.Thread(target=self._work_loop, name=f"smpp-work-{peer}", daemon=True)

    def start(self) -> Session:
        self.sock.settimeout(WRITE_TIMEOUT)  # for sendall; the reader waits with select()
        self.reader.start()
        self.worker.start()
        return self

    # --- what others read ------------------------------------------------------------------------------------

    @property
    def receives(self) -> bool:
        """Bound as a receiver or transceiver: deliver_sm may go to it."""
        return not self.closed and self.bind_type in ("receiver", "transceiver")

    @property
    def transmits(self) -> bool:
        return self.bind_type in ("transmitter", "transceiver")

    def window_in_use(self) -> int:
        with self._lock:
            return self._outstanding

    def submit_rate(self) -> float:
        """submit_sm per second over the last RATE_WINDOW seconds."""
        now = time.monotonic()
        with self._lock:
            while self._submits and self._submits[0] < now - RATE_WINDOW:
                self._submits.popleft()
            return len(self._submits) / RATE_WINDOW

    def summary(self) -> dict:
        return {"system_id": self.user["system_id"] if self.user else None, "bind": self.bind_type or "unbound",
                "peer": self.peer, "since": self.bound_at or self.connected_at,
                "submitted_per_second": round(self.submit_rate(), 2), "window": self.window_in_use(),
                "window_size": self.settings.window, "deliveries_in_flight": len(self.in_flight)}

    # --- writing ---------------------------------------------------------------------------------------------

    def next_sequence(self) -> int:
        with self._lock:
            self._sequence = self._sequence % pdu.MAX_SEQUENCE + 1
            return self._sequence

    def send(self, data: bytes) -> bool:
        """Write one PDU; False (and the session closed) when the client cannot take it."""
        if self.closed:
            return False
        try:
            with self._write_lock:
                self.sock.sendall(data)
            return True
        except OSError as error:
            log.info("SMPP %s: cannot write to the client (%s); closing", self.peer, error)
            self.close()
            return False

    def respond(self, request: pdu.Header, status: int = pdu.ESME_ROK, body: bytes = b"") -> None:
        self.send(pdu.encode(request.command_id | pdu.RESPONSE, request.sequence, body, status))

    def nack(self, sequence: int, status: int) -> None:
        self.send(pdu.encode(pdu.GENERIC_NACK, sequence, status=status))

    def close(self) -> None:
        """End the session (from any thread): the reader wakes and leaves, the worker after it."""
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._requests.put(None)

    def unbind(self) -> None:
        """Ask a bound client to unbind (server stopping); the socket closes after."""
        if self.bind_type is not None and not self.closed:
            self.send(pdu.encode(pdu.UNBIND, self.next_sequence()))
        self.close()

    def join(self, timeout: float) -> None:
        for thread in (self.reader, self.worker):
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(timeout)

    # --- reading ---------------------------------------------------------------------------------------------

    def _fill(self, count: int, deadline: float) -> bytes:
        while len(self._buffer) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Idle()
            try:
                readable, _, _ = select.select([self.sock], [], [], remaining)
                if not readable:
                    continue
                data = self.sock.recv(65536)
            except (OSError, ValueError):  # closed under us
                raise _Closed() from None
            if not data:
                raise _Closed()
            self._buffer += data
        chunk = bytes(self._buffer[:count])
        del self._buffer[:count]
        return chunk

    def _deadline(self) -> float:
        """Unbound: `bind_timeout` from the connection (enquire_link does not keep an unbound connection open);
        bound: `enquire_link_timeout` from the last PDU."""
        if self.bind_type is None:
            return self._opened + self.settings.bind_timeout
        return self._last_received + self.settings.enquire_link_timeout

    def _read_loop(self) -> None:
        try:
            while not self.closed:
                header_bytes = self._fill(pdu.HEADER_SIZE, self._deadline())
                try:
                    header = pdu.read_header(header_bytes)
                except pdu.PduError as error:
                    sequence = int.from_bytes(header_bytes[12:16], "big")
                    log.warning("SMPP %s: %s; closing after a generic_nack", self.peer, error)
                    self.nack(sequence, error.status)
                    break
                body = self._fill(header.length - pdu.HEADER_SIZE, self._deadline())
                self._last_received = time.monotonic()
                self._dispatch(header, body)
                self._last_received = time.monotonic()  # a bind's password check takes our time, not theirs
        except _Idle:
            what = "bind" if self.bind_type is None else "PDU (enquire_link)"
            log.info("SMPP %s: no %s within %g s; closing", self.peer, what,
                     self.settings.bind_timeout if self.bind_type is None else self.settings.enquire_link_timeout)
        except _Closed:
            pass
        except Exception:  # a bug must close this session, never leave it half alive
            log.exception("SMPP %s: session failed", self.peer)
        finally:
            self.close()
            self.server.session_ended(self)

    def _dispatch(self, header: pdu.Header, body: bytes) -> None:
        command = header.command_id
        if command & pdu.RESPONSE:
            self._response(header, body)
        elif command == pdu.ENQUIRE_LINK:
            self.respond(header)
        elif command in pdu.BINDS:
            self._bind(header, body)
        elif command in (pdu.SUBMIT_SM, pdu.QUERY_SM, pdu.CANCEL_SM):
            self._request(header, body)
        elif command == pdu.UNBIND:
            if self.bind_type is None or self._unbinding:
                self.respond(header, pdu.ESME_RINVBNDSTS)
            else:
                self._unbinding = True  # after the requests before it; the window does not apply
                self._enqueue(header, body, force=True)
        elif command in pdu.KNOWN_COMMANDS:  # deliver_sm, data_sm, submit_multi, replace_sm, outbind, alerts
            log.info("SMPP %s: %s is not supported; generic_nack", self.peer, pdu.command_name(command))
            self.nack(header.sequence, pdu.ESME_RINVCMDID)
        else:
            log.info("SMPP %s: unknown command_id 0x%08x; generic_nack", self.peer, command)
            self.nack(header.sequence, pdu.ESME_RINVCMDID)

    def _response(self, header: pdu.Header, body: bytes) -> None:
        command = header.command_id
        if command in (pdu.DELIVER_SM | pdu.RESPONSE, pdu.GENERIC_NACK):
            self.server.delivery_answered(self, header.sequence, header.status)
        elif command == pdu.UNBIND | pdu.RESPONSE:
            self.close()
        # enquire_link_resp and anything else: the PDU itself showed the link is alive

    def _bind(self, header: pdu.Header, body: bytes) -> None:
        if self.bind_type is not None:
            self.respond(header, pdu.ESME_RALYBND, pdu.bind_resp_body(SYSTEM_ID))
            return
        try:
            bind = pdu.read_bind(body)
        except pdu.PduError as error:
            log.info("SMPP %s: bind refused: %s", self.peer, error)
            self.respond(header, error.status, pdu.bind_resp_body(SYSTEM_ID))
            self._bind_failed()
            return
        status = pdu.ESME_ROK
        if self.settings.system_type is not None and bind.system_type != self.settings.system_type:
            log.info("SMPP %s: bind of %r refused: system_type %r is not %r", self.peer, bind.system_id,
                     bind.system_type, self.settings.system_type)
            status = pdu.ESME_RINVSYSTYP
        else:
            try:
                user = check_bind(self.server.gateway.store, bind.system_id, bind.password)
            except BindRefused as error:
                log.warning("SMPP %s: bind refused: %s", self.peer, error.detail)
                status = {"system_id": pdu.ESME_RINVSYSID, "password": pdu.ESME_RINVPASWD}.get(error.reason,
                                                                                               pdu.ESME_RBINDFAIL)
            except StoreError as error:
                log.error("SMPP %s: bind of %r not checked: %s", self.peer, bind.system_id, error)
                status = pdu.ESME_RSYSERR
        if status != pdu.ESME_ROK:
            self.respond(header, status, pdu.bind_resp_body(SYSTEM_ID))
            self.server.count("binds_refused")
            self._bind_failed()
            return
        self.user = user
        throughput = user.get("throughput")
        self._tokens = float(throughput or 0)
        self._refilled = time.monotonic()
        self.bind_type = pdu.BINDS[header.command_id]
        self.bound_at = time.time()
        version = bind.interface_version if bind.interface_version >= pdu.INTERFACE_VERSION else None
        self.respond(header, pdu.ESME_ROK, pdu.bind_resp_body(SYSTEM_ID, version))
        log.info("SMPP %s: %s bound as %s", self.peer, user["system_id"], self.bind_type)
        self.server.count("binds")
        self.server.session_bound(self)

    def _bind_failed(self) -> None:
        self._failed_binds += 1
        if self._failed_binds >= MAX_FAILED_BINDS:
            log.warning("SMPP %s: %d failed binds; closing", self.peer, self._failed_binds)
            self.close()

    def _throttled(self) -> bool:
        """The user's throughput (submit_sm per second, a one-second burst) is spent."""
        throughput = self.user.get("throughput") if self.user else None
        if not throughput:
            return False
        now = time.monotonic()
        self._tokens = min(float(throughput), self._tokens + (now - self._refilled) * throughput)
        self._refilled = now
        if self._tokens < 1:
            return True
        self._tokens -= 1
        return False

    def _request(self, header: pdu.Header, body: bytes) -> None:
        if not self.transmits:
            self.respond(header, pdu.ESME_RINVBNDSTS, pdu.message_id_body("")
                         if header.command_id == pdu.SUBMIT_SM else b"")
            return
        if header.command_id == pdu.SUBMIT_SM and self._throttled():
            self.server.count("submits_throttled")
            self.respond(header, pdu.ESME_RTHROTTLED, pdu.message_id_body(""))
            return
        self._enqueue(header, body)

    def _enqueue(self, header: pdu.Header, body: bytes, force: bool = False) -> None:
        with self._lock:
            full = self._outstanding >= self.settings.window and not force
            if not full:
                self._outstanding += 1
        if full:
            self.server.count("submits_refused_window")
            self.respond(header, pdu.ESME_RMSGQFUL, pdu.message_id_body("")
                         if header.command_id == pdu.SUBMIT_SM else b"")
            return
        self._requests.put((header, body))

    # --- the worker ----------------------------------------------------------------------------------------------

    def _work_loop(self) -> None:
        while True:
            item = self._requests.get()
            if item is None or self.closed:
                return
            header, body = item
            try:
                answer = self._handle(header, body)
            except Exception:
                log.exception("SMPP %s: %s failed", self.peer, pdu.command_name(header.command_id))
                answer = pdu.encode(header.command_id | pdu.RESPONSE, header.sequence, status=pdu.ESME_RSYSERR)
            with self._lock:  # out of the window before the answer leaves: the client may send the next at once
                self._outstanding -= 1
            self.send(answer)
            if header.command_id == pdu.UNBIND:
                log.info("SMPP %s: %s unbound", self.peer, self.user["system_id"] if self.user else "?")
                self.close()

    def _handle(self, header: pdu.Header, body: bytes) -> bytes:
        """The answer (a whole PDU) to one request of the worker's queue."""
        command = header.command_id
        if command == pdu.UNBIND:
            return pdu.encode(pdu.UNBIND | pdu.RESPONSE, header.sequence)
        try:
            if command == pdu.SUBMIT_SM:
                request = pdu.read_submit(body)
            else:
                query = pdu.read_query(body) if command == pdu.QUERY_SM else pdu.read_cancel(body)
        except pdu.PduError as error:
            log.info("SMPP %s: malformed %s (%s); generic_nack", self.peer, pdu.command_name(command), error)
            return pdu.encode(pdu.GENERIC_NACK, header.sequence, status=error.status)
        assert self.user is not None
        response = command | pdu.RESPONSE
        if command == pdu.SUBMIT_SM:
            with self._lock:
                self._submits.append(time.monotonic())
            status, message_id = self.server.submit(self.user, request)
            return pdu.encode(response, header.sequence, pdu.message_id_body(message_id), status)
        if command == pdu.QUERY_SM:
            status, answer = self.server.query(self.user, query.message_id)
            return pdu.encode(response, header.sequence, answer, status)
        return pdu.encode(response, header.sequence, status=self.server.cancel(self.user, query.message_id))
