"""A modem worker: one thread owns one modem's port, pulls work from the store, handles its URCs, heals itself.

Lifecycle: connecting -> ready <-> busy, <-> searching (no network) -> faulted -> recovering -> ready. When idle it
waits on its own task queue (`tasks`: wake-ups, health checks, console calls, a stop, and its modem's URCs), never
polling. What happened at the modem (a part's +CMGS, a refusal, a timeout) is reported to the gateway, which
decides what becomes of the message; the worker decides what becomes of the modem (pause, search, heal).
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modemgw import at, dispatch, pdu
from modemgw.errors import CmeError, CmsError, ModemError, PortLost, ResponseError, WrongModem
from modemgw.gateway import REPORT_MODES, sent_today
from modemgw.modem import Identity, Modem, PendingSend, StoredMessage, identity_matches
from modemgw.pool.ports import same_port
from modemgw.pool.state import ModemState, Observed, health_changes
from modemgw.pool.storage import poll_reports, read_everything_stored, take_stored
from modemgw.pool.tasks import Call, Health, PortFound, Stop, Task, Wake
from modemgw.settings import ModemConfig, ModemSettings
from modemgw.store import Claimed, StoreError

if TYPE_CHECKING:
    from modemgw.pool.pool import Pool

log = logging.getLogger("modemgw.pool")


@dataclass(frozen=True)
class _Attached:
    """The modem a worker has open and initialised, made by `_connect` and dropped by `_close`. The code that talks
    to the modem is handed one, so the modem, its row id and its port are always there."""

    modem: Modem
    modem_id: int
    device: str


class ModemWorker(threading.Thread):
    """Owns one modem. Every modem conversation happens on this thread."""

    def __init__(self, pool: Pool, config: ModemConfig, order: int):
        super().__init__(name=f"modem-{config.label or config.device or config.imei}", daemon=True)
        self.pool = pool
        self.config = config
        self.order = order
        self.tasks: queue.Queue[Task] = queue.Queue()  # wake-ups, health checks, calls, a stop; the modem's URCs
        self.session: _Attached | None = None  # the open modem, while there is one
        self.modem_id: int | None = None  # the SIM's row, kept while detached (its state is still recorded)
        self.row: dict = {}  # the SIM's row as stored (settings, counters); what health checks see is `seen`
        self.seen: Observed | None = None  # the last health check: the live signal, registration, operator
        self._recorded: tuple[str, str | None] | None = None  # the state (and reason) the row holds, as we wrote it
        self.device = config.device
        self.imei = config.imei
        self.state = "connecting"
        self.window = dispatch.RateWindow()
        self.failures = 0
        self.recent: list[bool] = []      # outcomes of recent sends, for health-weighted dispatch
        self._stopping = False
        self._prefetched: Claimed | None = None  # claimed while the last send was in flight, not yet at the modem
        self._backoff = pool.settings.reconnect_min
        self._concat_ref = random.randrange(256)
        self._quota_reported = False
        self._wake_tried: frozenset | None = None  # the workers a pending wake-up has already been offered to
        self.hint: str | None = None  # a port where the watcher found this worker's modem
        self._opening: Modem | None = None  # a modem being initialised (not attached yet), for abort()
        self._deferred: collections.deque[Task] = collections.deque()  # tasks that arrived while the worker waited
        self._unsettled: list[tuple[str, Callable[[], object]]] = []  # outcomes the database refused, in order
        self._settle_backoff = 0.5
        self.searching_since: float | None = None  # no network since (wall clock); None while registered
        self._network_check_at = 0.0      # monotonic time of the next registration check while searching
        self._network_interval = pool.settings.network_check_min
        self._radio_reset_at: float | None = None
        self.paused_until = 0.0           # a network-side refusal while registered: no sends until then (monotonic)
        self._pause = pool.settings.network_check_min
        self.quota_blocked = False        # a daily or monthly quota stops this SIM (other modems take its routes)
        self._unreported = 0              # parts sent asking for a report since the last report came
        self._unreported_since = 0.0
        self._refused: set[str] = set()  # ports that held another modem
        # until its first attempt to connect has ended, a worker configured by path alone has not claimed that path
        # yet: the watcher must not give another port of the same modem a worker of its own meanwhile
        self.first_look_pending = bool(config.device)
        self.waiting = False          # blocked on its task queue (idle, or backing off): healthy however long
        self.pulse = time.monotonic()  # last sign of progress, for the watchdog

    # --- what the pool sees -------------------------------------------------------------------------

    @property
    def label(self) -> str:
        return self.row.get("label") or self.config.label or self.device or "?"

    @property
    def live(self) -> bool:
        """May take messages: online, port open, on the network."""
        return self.state in ("ready", "busy") and self.session is not None

    @property
    def attached(self) -> bool:
        """Its modem's port is open and initialised (it may still be searching for the network)."""
        return self.session is not None

    def candidate(self) -> dispatch.Candidate:
        errors = self.recent.count(False) / len(self.recent) if self.recent else 0.0
        delivered = self.row.get("delivered_total") or 0
        sent = self.row.get("sent_total") or 0
        return dispatch.Candidate(key=self.order, sent_today=self._sent_today(),
                                  signal_dbm=self._observed("signal_dbm"), error_rate=errors,
                                  delivery_rate=(delivered / sent) if sent else 1.0, order=self.order)

    def _sent_today(self) -> int:
        return sent_today(self.row)  # the gateway's one rule

    def modem_state(self) -> ModemState:
        """What outside readers may know about this worker's modem now (read from any thread)."""
        row, seen = self.row, self.seen
        return ModemState(modem_id=self.modem_id, label=self.label, device=self.device, imei=self.imei,
                          state=self.state, live=self.live, attached=self.attached, sent_today=self._sent_today(),
                          signal_dbm=self._observed("signal_dbm"), operator=self._observed("operator"),
                          reports=REPORT_MODES.get(row.get("report_mode") or ""), configured_label=self.config.label,
                          registration=self._observed("registration"),
                          last_seen=seen.at if seen is not None else row.get("last_seen"))

    def _observed(self, name: str):
        """`name` as the last health check saw it (live), else as the row has it."""
        seen = self.seen
        return getattr(seen, name) if seen is not None else self.row.get(name)

    def snapshot(self) -> dict:
        return self.modem_state().summary()

    def stop(self) -> None:
        self._stopping = True
        self.tasks.put(Stop())

    def abort(self) -> None:
        """Shutdown, after the grace: close the port under whatever the worker is doing (a command waiting on a
        silent modem, a settle loop at start-up), so the thread ends at once. A send cut off after its PDU went
        out is requeued flagged possible_duplicate, like any other port loss."""
        self._stopping = True
        self.tasks.put(Stop())
        session = self.session
        for modem in (session.modem if session is not None else None, self._opening):
            if modem is not None:
                modem.abort()

    # --- main loop -----------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self.pool.store.share_connection()
        except StoreError as error:  # the first transaction meets it again, and is handled there
            log.debug("%s: %s", self.label, error)
        while not self._stopping:
            self.pulse = time.monotonic()
            try:
                self._turn()
            except PortLost as error:
                self._lost(error)
            except ModemError as error:
                self._trouble(error)
            except StoreError as error:  # the database is unwell (full disk?): nothing is lost, wait and retry
                log.error("%s: database error: %s", self.label, error)
                self._wait(2.0)
            except Exception:  # a bug must not silently end the modem's thread
                log.exception("%s: unexpected error", self.label)
                self._wait(1.0)
        self._close()

    def _turn(self) -> None:
        if self._unsettled and not self._settle():
            self._wait(self._settle_backoff)  # the database still refuses: claim nothing new meanwhile
            self._settle_backoff = min(10.0, self._settle_backoff * 2)
            return
        session = self.session
        if session is None:
            self._connect()
        elif self.searching_since is not None:
            self._search(session)
        else:
            self._cycle(session)

    # --- outcomes the database could not take -----------------------------------------------------------

    def _durably(self, what: str, action: Callable[[], object]) -> None:
        """Record what happened at the modem (a part sent, a retry, a failure). When the database refuses (full
        disk, locked), the record is kept in order and replayed before this worker claims anything new, so a
        message that went out is never left `sending`, nor sent again because its +CMGS was not stored."""
        if self._unsettled:
            self._unsettled.append((what, action))
            return
        try:
            action()
        except StoreError as error:
            log.error("%s: cannot record %s yet (%s); kept, and recorded once the database works again",
                      self.label, what, error)
            self._unsettled.append((what, action))

    def _settle(self) -> bool:
        """Replay kept records, oldest first; True when none is left."""
        while self._unsettled:
            what, action = self._unsettled[0]
            try:
                action()
            except StoreError as error:
                log.warning("%s: database still refuses %s: %s", self.label, what, error)
                return False
            self._unsettled.pop(0)
            log.info("%s: recorded %s (kept while the database refused it)", self.label, what)
        self._settle_backoff = 0.5
        return True

    def _cycle(self, session: _Attached) -> None:
        """One turn: handle what arrived, send if allowed and there is work, else wait to be woken."""
        self._drain(session)
        if not self.row.get("enabled", 1):
            self._give_back("its modem was disabled")
            self._set_state("ready")
            self._handle(session, self._get(None))
            return
        blocked = self._blocked()
        if blocked is not None:
            self._give_back("its modem may not send now (a pause, a rate limit or a quota)")
        if blocked is None:
            claimed, self._prefetched = self._prefetched, None
            if claimed is None:
                self.pool.idle(self)  # idle before the claim, so a submit racing with it still wakes us
                claimed = self.pool.claim(self, session.modem_id)
            tried, self._wake_tried = self._wake_tried, None
            if claimed is not None:
                self.pool.busy(self)
                self._set_state("busy")
                self._send(session, claimed)
                return
            if tried is not None:  # woken for work this modem may not take (a route): pass the wake on
                self.pool.wake(1, tried=tried)
        else:
            self.pool.busy(self)
        self._set_state("ready")
        try:
            task = self._get(blocked)
        except queue.Empty:
            return
        self.pool.busy(self)
        self._handle(session, task)

    def _wait(self, seconds: float) -> None:
        """Wait before retrying; a stop, or a port handed over by the watcher, ends the wait at once. Anything else
        that arrives meanwhile (a URC announcing a stored report, a console call) is kept for when the worker is
        back at work: dropping it would leave that report on the SIM until the next restart."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                task = self._get(max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return
            match task:
                case Stop():
                    self._stopping = True
                    return
                case PortFound():
                    self._backoff = self.pool.settings.reconnect_min
                    return
                case _:
                    self._deferred.append(task)

    def _get(self, timeout: float | None) -> Task:
        """Wait for the next task; while waiting the worker counts as healthy however long it waits."""
        self.waiting = True
        try:
            return self.tasks.get(timeout=timeout)
        finally:
            self.waiting = False
            self.pulse = time.monotonic()

    def stalled(self, limit: float) -> bool:
        """Alive but stuck: working (not waiting) without progress for `limit` seconds, or its thread ended
        although nobody stopped it. The daemon stops feeding systemd's watchdog then, and systemd restarts it."""
        if not self.is_alive():
            return not self._stopping and self.ident is not None
        return not self.waiting and time.monotonic() - self.pulse > limit

    def _drain(self, session: _Attached) -> None:
        while self._deferred:
            self._handle(session, self._deferred.popleft())
        while True:
            try:
                task = self.tasks.get_nowait()
            except queue.Empty:
                return
            self._handle(session, task)

    def _handle(self, session: _Attached, task: Task) -> None:
        try:
            self._take(session, task)
        except StoreError:
            if isinstance(task, at.Urc):  # the database refused what it announced: handled again later
                self._deferred.appendleft(task)
            raise

    def _take(self, session: _Attached, task: Task) -> None:
        self.pulse = time.monotonic()  # each task is progress (a burst of URCs is work, not a hang)
        match task:
            case Call(function, future):
                try:
                    future.set_result(function(session.modem))
                except ModemError as error:
                    future.set_exception(error)
                    raise
                except Exception as error:  # noqa: BLE001 - handed to the caller; the worker goes on
                    future.set_exception(error)
            case Wake(tried) if tried is not None:
                self._wake_tried = tried
            case Stop():
                self._stopping = True
            case Health():
                self._health(session)
            case at.Urc():
                self._urc(session, task)

    def _blocked(self) -> float | None:
        """None when this SIM may send now; else seconds until a pause, a rate limit or a quota allows it."""
        paused = self.paused_until - time.monotonic()
        if paused > 0:
            return paused
        now = time.time()
        wait = self.window.wait(self.row.get("rate_per_minute"), now)
        if wait > 0:
            return wait
        quota = dispatch.quota_block(dispatch.QuotaState(
            self.row.get("quota_day"), self.row.get("quota_month"), self.row.get("sent_day") or 0,
            self.row.get("day_key"), self.row.get("sent_month") or 0, self.row.get("month_key")), now)
        self.quota_blocked = quota is not None
        if quota is not None:
            which, seconds = quota
            if not self._quota_reported:
                self._quota_reported = True
                self.pool.store.log_event("modem.quota_reached", modem_id=self.modem_id, quota=which)
                self.pool.gateway.emit("modem.quota_reached", {"modem_id": self.modem_id, "label": self.label,
                                                               "quota": which})
            return seconds
        self._quota_reported = False
        return None

    def _set_state(self, state: str, reason: str | None = None, fields: dict | None = None) -> None:
        """`fields`: more of the row (what a health check saw) written in the same commit as the state."""
        if state != self.state:
            self.state = state
            if self.modem_id is not None and state in ("ready", "faulted", "searching"):
                self._record_state(self.modem_id, "online" if state == "ready" else state, reason, fields)
            self.pool.changed()

    def _record_state(self, modem_id: int, state: str, reason: str | None, fields: dict | None = None) -> None:
        """Write the modem's state (and why) to its row, unless the row says so already: busy -> ready after each
        burst of sends, or the same outage noticed twice, must not cost a write (an SD card's wear). `fields` go in
        the same commit, so that the row never shows the one without the other (a lost registration, searching)."""
        recorded = self._recorded
        if recorded is not None and recorded[0] == state and reason in (None, recorded[1]):
            if fields:
                self.row = self.pool.store.update_modem(modem_id, **fields)
            return
        fields = fields or {}
        self.pool.store.set_modem_state(modem_id, state, reason, fields)
        self.row = {**self.row, **fields, "state": state}
        self._recorded = (state, reason)

    # --- sending: what happened goes to the gateway, which decides what becomes of the message ----------

    def _send(self, session: _Attached, claimed: Claimed) -> None:
        in_flight: int | None = None  # the part whose PDU may be on its way to the modem
        try:
            reference = claimed.concat_ref
            if reference is None and claimed.segments > 1:
                reference = self._concat_ref = (self._concat_ref + 1) % 256
                self.pool.store.set_concat_ref(claimed.id, reference)
            try:
                parts = pdu.encode_message(claimed.recipient, claimed.body, claimed.encoding,
                                           concat_reference=reference or 0, request_report=claimed.request_report,
                                           validity=claimed.validity)
            except pdu.PduError as error:
                self._send_failed(session, claimed, error)
                return
            marked = False
            for seq, part in enumerate(parts, start=1):
                if seq in claimed.sent_parts:
                    continue
                started = time.monotonic()
                in_flight = seq
                pending = session.modem.start_send(part)
                if seq == len(parts):
                    self._prefetch_during(session, pending)
                tp_mr = pending.result()
                in_flight = None
                marked = seq == len(parts)
                self._part_sent(session, claimed, seq, tp_mr, started, last=marked)
            if not marked:  # the last part had gone out before (recovered after a crash)
                self._durably(f"message {claimed.id} as sent", functools.partial(
                    self.pool.gateway.message_sent, claimed, session.modem_id, time.time()))
        except CmsError as error:  # the modem answered: this part did not go out
            if error.kind != "message":  # the network's or the modem's trouble: the next one would meet it too
                self._give_back(f"{error} on the message before it")
            self._send_refused(session, claimed, error)
            return
        except ModemError as error:  # a timeout, a lost port, a reply that makes no sense: the modem's side
            self._give_back(f"{error} on the message before it")
            self._send_failed(session, claimed, error, may_have_left=in_flight is not None and _may_have_left(error))
            raise
        except Exception as error:  # the database or a bug: the message must not stay `sending`
            self._give_back(f"{error} on the message before it")
            self._send_failed(session, claimed, error, may_have_left=in_flight is not None)
            raise
        self.recent = (self.recent + [True])[-20:]
        self.failures = 0
        self._pause = self.pool.settings.network_check_min

    # --- the next message, claimed while the modem sends this one (it waits in memory, never at the modem) ------

    def _prefetch_during(self, session: _Attached, pending: PendingSend) -> None:
        """While the modem sends the last part of a message (`pending`), claim the next one, so that it goes to the
        modem the moment the answer comes: the claim (a durable commit) leaves the send path, where with many modems
        on one slow core it was the largest share of a send's turnaround. Only when no other modem is idle (one would
        take that message at once), and only for a SIM without rate limits or quotas (the send in flight may use the
        last allowance). Nothing may escape here while the send is under way: its answer is taken in any case."""
        try:
            if self._may_prefetch():
                self._prefetched = self.pool.claim(self, session.modem_id, ahead=True)
        except StoreError as error:  # the database is unwell: the next turn claims (and meets it) as ever
            log.debug("%s: no claim ahead: %s", self.label, error)
        except BaseException:
            try:
                pending.result()
            except ModemError:
                pass
            raise

    def _may_prefetch(self) -> bool:
        row = self.row
        return (self._prefetched is None and not self._stopping and not self._unsettled and bool(row.get("enabled", 1))
                and self.searching_since is None and self.paused_until <= time.monotonic()
                and not (row.get("rate_per_minute") or row.get("quota_day") or row.get("quota_month"))
                and not self.pool.has_idle(besides=self))

    def _give_back(self, reason: str) -> None:
        """A message claimed ahead cannot follow (the send before it failed, the modem went away, stops or may not
        send now): back to the queue as it was, no attempt counted, no flag (it never reached a modem), for any
        modem; another is woken for it."""
        claimed, self._prefetched = self._prefetched, None
        if claimed is None or self.modem_id is None:
            return
        log.info("%s: message %s goes back to the queue unsent: %s", self.label, claimed.id, reason)
        self._durably(f"message {claimed.id} back to the queue", functools.partial(
            self.pool.store.give_back, claimed.id, self.modem_id, bool(claimed.sent_parts)))
        self.pool.wake(1, exclude=self)

    def _part_sent(self, session: _Attached, claimed: Claimed, seq: int, tp_mr: int, started: float,
                   last: bool) -> None:
        claimed.sent_parts[seq] = tp_mr
        self.pulse = time.monotonic()
        now = time.time()
        self.window.add(now)
        self._count(now)
        handed = self._prefetched.id if last and self._prefetched is not None else None  # it goes out next
        self._durably(f"part {seq} of message {claimed.id} (TP-MR {tp_mr})", functools.partial(
            self.pool.gateway.part_sent, claimed, seq, session.modem_id, tp_mr, now, last=last,
            sticky=self.pool.settings.sticky, handed=handed))
        self.pool.observe_send(self.pulse - started)
        if claimed.request_report:
            self._expect_report(session)

    def _send_refused(self, session: _Attached, claimed: Claimed, error: CmsError) -> None:
        """The modem or the network refused a part (+CMS ERROR): the gateway settles the message by the error's
        kind (errors.py); the network's side pauses or searches, the modem's side heals (the error goes on)."""
        self._send_failed(session, claimed, error)
        if error.kind == "message":  # this message's problem: the modem goes on
            return
        if error.kind == "modem":
            raise error
        self._network_refused(session, error)

    def _send_failed(self, session: _Attached, claimed: Claimed, error: Exception, *,
                     may_have_left: bool = False) -> None:
        """Report a send that did not (or, `may_have_left`, may not) go out; the gateway fails the message or
        puts it back in the queue (docs/design.md, "Error classes")."""
        self.recent = (self.recent + [False])[-20:]
        self._durably(f"the failed send of message {claimed.id}", functools.partial(
            self.pool.gateway.send_failed, claimed, error, session.modem_id, may_have_left=may_have_left,
            now=time.time()))

    def _count(self, now: float) -> None:
        """Keep the in-memory copy of the SIM's counters in step with what record_part_sent stored."""
        day, month = time.strftime("%Y-%m-%d", time.localtime(now)), time.strftime("%Y-%m", time.localtime(now))
        row = self.row
        row["sent_day"] = row.get("sent_day", 0) + 1 if row.get("day_key") == day else 1
        row["sent_month"] = row.get("sent_month", 0) + 1 if row.get("month_key") == month else 1
        row["day_key"], row["month_key"] = day, month

    # --- URCs: inbound messages and status reports ------------------------------------------------------

    def _urc(self, session: _Attached, urc: at.Urc) -> None:
        if urc.name == "PORT-LOST":
            raise PortLost(urc.line)
        try:
            self._take_urc(session, urc)
        except ResponseError as error:  # modem text that does not parse: logged, never the modem's fault
            log.warning("%s: ignored %r: %s", self.label, urc.line, error)

    def _take_urc(self, session: _Attached, urc: at.Urc) -> None:
        if urc.name in ("+CREG", "+CGREG", "+CEREG"):
            self._registration_urc(session, urc)
        elif urc.name in ("+CMTI", "+CDSI"):
            storage, index = at.urc_storage_index(urc)
            take_stored(session.modem, storage, index, functools.partial(self._commit_stored, session))
        elif urc.name in ("+CMT", "+CDS") and urc.pdu:
            self._take_direct(session, urc, urc.pdu)
        elif urc.name == "LATE-CMGS":
            self.pool.store.log_event("modem.late_cmgs", modem_id=session.modem_id, reference=urc.params[0],
                                      note="a send that timed out did go out; its retry may be a duplicate")
        elif urc.name in ("^RSSI", "+CSQN"):
            pass  # signal chatter; the health check reads the signal when it matters

    def _take_direct(self, session: _Attached, urc: at.Urc, data: str) -> None:
        """A message or a report delivered straight to us (+CMT, +CDS): committed, then acknowledged."""
        try:
            message = pdu.decode(data, tpdu_length=at.urc_pdu_length(urc))
        except (pdu.PduError, ModemError) as error:
            self.pool.store.log_event("inbound.undecodable", modem_id=session.modem_id, pdu=data, error=str(error))
            message = None
        if message is not None:
            self._commit(session, message)
        if session.modem.needs_ack:
            try:
                session.modem.ack()  # only after the commit: an unacknowledged message is delivered again
            except (CmsError, CmeError) as error:  # acknowledged too late (the commit waited for the disk)
                log.warning("%s: %s acknowledged too late (%s); the network may deliver it again, and the "
                            "duplicate is recognised", self.label, urc.name, error)

    def _commit_stored(self, session: _Attached, item: StoredMessage) -> None:
        if item.message is None:
            self.pool.store.log_event("inbound.undecodable", modem_id=session.modem_id, pdu=item.pdu,
                                      error=item.error)
        elif not isinstance(item.message, pdu.Submit):
            self._commit(session, item.message)

    def _commit(self, session: _Attached, message: object) -> None:
        if isinstance(message, pdu.StatusReport):
            self._unreported = 0
            self.pool.gateway.handle_report(session.modem_id, message)
        elif isinstance(message, pdu.Deliver):
            self.pool.gateway.handle_inbound(session.modem_id, message)

    # --- the report watchdog: a modem that accepts a report route and never uses it ------------------------

    def _expect_report(self, session: _Attached) -> None:
        if self._unreported == 0:
            self._unreported_since = time.monotonic()
        self._unreported += 1
        self._check_reports(session)

    def _check_reports(self, session: _Attached) -> None:
        """After each send and at each health check: reroute when the watchdog's limits are passed."""
        settings = self.pool.settings
        if (settings.report_watchdog and self._unreported >= settings.report_watchdog
                and time.monotonic() - self._unreported_since >= settings.report_watchdog_age
                and self.row.get("report_mode") != "none"):
            self._reroute_reports(session)

    def _reroute_reports(self, session: _Attached) -> None:
        """No report for report_watchdog sends: reports may be stored but never announced (poll the report
        storage), or never stored (ask for direct reports, ds=1); else say that none come. Remembered for the
        SIM (the modem row), so a restart starts with what works."""
        modem = session.modem
        sent, self._unreported = self._unreported, 0
        route = modem.state.report_route
        mode = "none"
        if route == 2 and self._poll_reports(session):
            mode = "poll"
        elif route != 1 and modem.raw("AT+CNMI=2,1,0,1,0").ok:
            modem.state.report_route, mode = 1, "ds=1"
        log.warning("%s: no status report for %d sends with CNMI ds=%d: %s", self.label, sent, route,
                    REPORT_MODES[mode])
        self.row = self.pool.store.update_modem(session.modem_id, report_mode=mode)
        self.pool.store.log_event("modem.reports_rerouted", modem_id=session.modem_id, mode=mode, sends=sent,
                                  route=route)

    def _apply_report_mode(self, session: _Attached) -> None:
        """At connect: the report route this SIM's watchdog settled on before."""
        modem = session.modem
        if (self.row.get("report_mode") == "ds=1" and modem.state.report_route != 1
                and modem.raw("AT+CNMI=2,1,0,1,0").ok):
            modem.state.report_route = 1

    def _poll_reports(self, session: _Attached) -> int:
        return poll_reports(session.modem, functools.partial(self._commit_stored, session))

    # --- health, and the network: waiting for registration, never resetting for it ------------------------

    def _health(self, session: _Attached) -> None:
        if self.row.get("report_mode") == "poll":
            self._poll_reports(session)
        self._check_reports(session)
        status = session.modem.network_status()
        self.seen = seen = Observed(status.signal.dbm, status.registration.state, status.operator, time.time())
        changes = health_changes(self.row, seen)
        if not status.registration.registered and self.searching_since is None:
            self._lose_network(session, status.registration.state, changes)  # the row's health and state: one commit
            return
        if changes:  # only what changed is written: an idle gateway writes nothing (SD cards wear out)
            self.row = self.pool.store.update_modem(session.modem_id, **changes)
        else:  # a read: the counters others keep (delivered_total, ...) for health-weighted dispatch
            self.row = self.pool.store.modem(session.modem_id)

    def _registration_urc(self, session: _Attached, urc: at.Urc) -> None:
        """`+CREG: <stat>[,<lac>,<ci>]` (after AT+CREG=1): lost, stop taking messages at once; while searching,
        check now rather than at the end of the interval."""
        if self.searching_since is not None:
            self._network_check_at = 0.0
            return
        registration = at.parse_creg(urc.line, reply=False)
        if not registration.registered and urc.name == "+CREG":
            self._lose_network(session, registration.state, {"registration": registration.state})

    def _network_refused(self, session: _Attached, error: CmsError) -> None:
        """A send refused for the network's sake (no service, network timeout, no SMSC): search if the SIM has lost
        its registration; otherwise pause this modem's sending, doubling up to network_check_max, since the next
        message would meet the same refusal (a SIM without SMS service, an operator outage)."""
        registration = session.modem.registration()
        if not registration.registered:
            self._lose_network(session, registration.state, {"registration": registration.state})
            return
        self.paused_until = time.monotonic() + self._pause
        log.warning("%s: %s while registered; no sends for %.0f s", self.label, error, self._pause)
        self.pool.store.update_modem(session.modem_id, last_error=f"{error} (sending paused {self._pause:.0f} s)")
        self._pause = min(self.pool.settings.network_check_max, self._pause * 2)
        self.pool.wake(1, exclude=self)

    def _lose_network(self, session: _Attached, state: str, seen: dict | None = None) -> None:
        """No network: stop taking messages and wait for registration with the port open and nothing reset (a
        reset would not bring the network back, and on real hardware drops the modem off USB). `seen`: what the
        check that found it saw, written in the commit that records the searching state."""
        if self.searching_since is not None:
            return
        self._give_back(f"no network ({state})")
        settings = self.pool.settings
        self.searching_since = time.time()
        self._network_interval = settings.network_check_min
        self._network_check_at = time.monotonic() + self._network_interval
        self._radio_reset_at = time.monotonic() + settings.radio_reset_after
        reason = f"no network ({state})"
        log.warning("%s: %s; messages wait for it or go to other modems", self.label, reason)
        self.pool.busy(self)
        self._set_state("searching", reason, seen)
        self.pool.gateway.emit("modem.offline", {"modem_id": self.modem_id, "label": self.label, "reason": reason})
        if session.modem.raw("AT+CREG=1").final != "OK":  # a URC when it registers again (else: checks alone)
            log.info("%s: AT+CREG=1 refused; registration is checked every %.0f-%.0f s", self.label,
                     settings.network_check_min, settings.network_check_max)
        self.pool.wake(1, exclude=self)  # a message this modem had avoided may now go to another

    def _search(self, session: _Attached) -> None:
        """One turn while there is no network: handle what arrives (inbound, console calls, a stop), and check
        the registration when a +CREG URC says it changed or when the (doubling) interval has passed."""
        self._drain(session)
        wait = self._network_check_at - time.monotonic()
        if wait > 0:
            try:
                task: Task | None = self._get(wait)
            except queue.Empty:
                task = None
            if task is not None:
                self._handle(session, task)
                if self._network_check_at > time.monotonic():
                    return
        if self._stopping or self.session is None or self.searching_since is None:
            return
        registration = session.modem.registration()
        if registration.registered:
            self._network_back(session, registration.state)
            return
        settings = self.pool.settings
        self._network_interval = min(settings.network_check_max, self._network_interval * 2)
        self._network_check_at = time.monotonic() + self._network_interval
        if self._radio_reset_at is not None and time.monotonic() >= self._radio_reset_at:
            self._radio_reset_at = time.monotonic() + settings.radio_reset_after
            self._select_network(session)

    def _select_network(self, session: _Attached) -> None:
        log.warning("%s: no network for %.0f s; asking the modem to select a network again (AT+COPS=0)",
                    self.label, time.time() - (self.searching_since or time.time()))
        try:
            session.modem.raw("AT+COPS=0", timeout=max(session.modem.settings.command_timeout, 45.0))
        except ModemError as error:  # selection can outlast any timeout with no network; not a fault
            log.info("%s: AT+COPS=0: %s", self.label, error)

    def _network_back(self, session: _Attached, state: str) -> None:
        seconds = time.time() - (self.searching_since or time.time())
        self.searching_since = None
        self._pause = self.pool.settings.network_check_min
        self.paused_until = 0.0
        log.info("%s: %s again after %.0f s without network", self.label, state, seconds)
        self._health(session)
        if self.searching_since is not None:  # lost again while the health check ran
            return
        self._set_state("ready")
        self.pool.gateway.emit("modem.online", {"modem_id": self.modem_id, "label": self.label})
        self.pool.wake(len(self.pool.workers))

    # --- identity: which modem is this worker's ----------------------------------------------------------

    @property
    def knows_identity(self) -> bool:
        return bool(self.config.imei or self.config.iccid or self.imei)

    def bound_to(self, identity: Identity, device: str | None = None) -> bool:
        """Whether this worker's modem is the one with `identity` (found on `device`): the configured IMEI/ICCID
        when there is one, else the IMEI last seen on its configured path, else (the very first time) whatever
        answers on that path. Paths move between boots; once known, the identity decides."""
        if self.config.imei or self.config.iccid:
            return identity_matches(identity, self.config.imei, self.config.iccid)
        if self.imei:
            return identity.imei == self.imei
        configured = self.config.device
        return bool(device and configured and same_port(device, configured))

    def _check(self, identity: Identity, device: str) -> str | None:
        """Why the modem on `device` must not be taken (before any PIN is entered), or None."""
        if self.knows_identity and not self.bound_to(identity, device):
            wanted = self.config.iccid and f"SIM {self.config.iccid}" or f"IMEI {self.config.imei or self.imei}"
            return f"holds IMEI {identity.imei} with SIM {identity.iccid or '?'}, not {wanted}"
        other = self.pool.attached_elsewhere(identity.imei, self)
        if other is not None:
            return f"IMEI {identity.imei} is attached already as {other.label} on {other.device} (another port of it)"
        if self.config.pin and (identity.iccid, self.config.pin) in self.pool.rejected_pins:
            return (f"SIM {identity.iccid or '?'} rejected this PIN before; not trying it again (each wrong PIN "
                    "costs one of three attempts): fix pin in the config and restart")
        return None

    # --- connecting, losing the port, healing ----------------------------------------------------------

    def _connect(self) -> None:
        try:
            self._try_connect()
        finally:
            if self.first_look_pending:
                self.first_look_pending = False
                self.pool.changed()

    def _try_connect(self) -> None:
        self._set_state("connecting" if self.modem_id is None else "recovering")
        device = self._find_device()
        if device is None and self.hint is not None:  # the watcher found it but the port is busy a moment
            self._wait(self.pool.settings.reconnect_min)
            return
        if device is None:
            wanted = self.config.iccid and f"SIM {self.config.iccid}" or self.imei and f"IMEI {self.imei}"
            self._retry_later(f"no port found for {wanted or self.device}")
            return
        opened = self._open(device)
        if opened is None:
            return
        modem, identity = opened
        try:
            session = self._attach(modem, device, identity)
        except BaseException:  # the database refused the modem's row: never keep a port that no session owns
            modem.close()
            self.pool.release_device(device)
            raise
        self._online(session, identity)

    def _open(self, device: str) -> tuple[Modem, Identity] | None:
        """Open and initialise the modem on `device` (claimed for this worker); None when that failed (the port
        is released and the worker waited its backoff)."""
        settings = ModemSettings(**{**vars(self.pool.settings.modem), "pin": self.config.pin,
                                    "storage": self.config.storage})
        try:
            modem = Modem.open(device, settings)
        except Exception as error:  # noqa: BLE001 - pyserial raises SerialException/OSError/ValueError here
            self.pool.release_device(device)
            self._retry_later(f"cannot open {device}: {error}")
            return None
        modem.events = self.tasks  # URCs arrive on the worker's own queue, beside wake-ups
        self._opening = modem
        try:
            identity = modem.initialize(lambda identity: self._check(identity, device))
        except ModemError as error:
            modem.close()
            self.pool.release_device(device)
            self._refused_by(modem, device, error)
            return None
        except BaseException:  # a bug: never keep a port (and its lock) that no worker owns
            modem.close()
            self.pool.release_device(device)
            raise
        finally:
            self._opening = None
        return modem, identity

    def _refused_by(self, modem: Modem, device: str, error: ModemError) -> None:
        """Initialising the modem on `device` failed: remember why (another modem there, a rejected PIN), retry."""
        if isinstance(error, WrongModem):
            self._refused.add(device)  # not this worker's modem: never tried again unless the watcher says so
            if device == self.hint:
                self.hint = None
            self.pool.port_released(device)
        elif isinstance(error, CmeError) and error.code == 16 and self.config.pin:
            self.pool.rejected_pins.add((modem.identity.iccid, self.config.pin))
        # shown once with its device, whether or not the modem's message named it (display only)
        self._retry_later(f"{device}: {str(error).removeprefix(f'{device}: ')}")

    def _attach(self, modem: Modem, device: str, identity: Identity) -> _Attached:
        """The modem's row (made or found by its identity, with the configured limits): the session begins."""
        store = self.pool.store
        self.device, self.imei = device, identity.imei
        limits = {key: value for key, value in (("rate_per_minute", self.config.rate_per_minute),
                                                 ("quota_day", self.config.quota_day),
                                                 ("quota_month", self.config.quota_month),
                                                 ("grp", self.config.group)) if value is not None}
        row = store.attach_modem(
            identity.imei, identity.iccid or None, imsi=identity.imsi, number=identity.number,
            manufacturer=identity.manufacturer, model=identity.model, profile=identity.profile, device=device,
            label=self.config.label, **limits)
        if self.config.label and row["label"] != self.config.label:
            row = store.update_modem(row["id"], label=self.config.label)
        window = dispatch.RateWindow(store.sent_in_window(row["id"], time.time() - 60))
        self.row, self.modem_id, self.window = row, row["id"], window
        self.seen, self._recorded = None, (row["state"], None) if row.get("state") else None
        self.session = session = _Attached(modem, row["id"], device)
        return session

    def _online(self, session: _Attached, identity: Identity) -> None:
        """A fresh session: read what the SIM stored meanwhile, check the network, and go to work."""
        self._backoff = self.pool.settings.reconnect_min
        self.failures = 0
        self.searching_since = None
        self._unreported = 0
        read_everything_stored(session.modem, functools.partial(self._commit_stored, session))
        self._apply_report_mode(session)
        self._health(session)
        if self.searching_since is not None:
            log.info("%s: on %s (IMEI %s); waiting for the network", self.label, session.device, identity.imei)
            return
        self._set_state("ready")
        self.pool.gateway.emit("modem.online", {"modem_id": self.modem_id, "label": self.label})
        log.info("%s: online on %s (IMEI %s)", self.label, session.device, identity.imei)

    def _find_device(self) -> str | None:
        """A port to try: where the watcher last saw this modem, where it was, where the config says (not one
        that held another modem). Which modem it really holds is checked before anything is changed on it."""
        for device in dict.fromkeys(path for path in (self.hint, self.device, self.config.device) if path):
            if device in self._refused and device != self.hint:
                continue
            if os.path.exists(device) and self.pool.claim_device(device, self):
                return device
        return None

    def _retry_later(self, reason: str) -> None:
        if (self.modem_id is not None and self.state != "faulted"
                and self._backoff >= self.pool.settings.reconnect_max / 4):
            self._set_state("faulted")
            self._record_state(self.modem_id, "offline", reason)
            self.pool.gateway.emit("modem.offline", {"modem_id": self.modem_id, "label": self.label,
                                                     "reason": reason})
        log.info("%s: %s; retrying in %.1f s", self.label, reason, self._backoff)
        self._wait(self._backoff)
        self._backoff = min(self.pool.settings.reconnect_max, self._backoff * 2)

    def _lost(self, error: Exception) -> None:
        log.warning("%s: port lost: %s", self.label, error)
        self._close()
        if self.modem_id is not None:
            self._record_state(self.modem_id, "offline", str(error))
            self.pool.gateway.emit("modem.offline", {"modem_id": self.modem_id, "label": self.label,
                                                     "reason": str(error)})
            self._unpin(self.modem_id)
        self._set_state("recovering")

    def _unpin(self, modem_id: int) -> None:
        """Messages whose first parts went out through this modem cannot wait for it: all parts go again."""
        for message_id in self.pool.store.pinned_to(modem_id):
            self.pool.store.unpin(message_id, f"{self.label} went away mid-message")
        self.pool.wake(1, exclude=self)

    def _trouble(self, error: ModemError) -> None:
        """Self-healing, staged: the link resyncs by itself; repeated trouble re-initialises (ATZ), then resets
        the modem (AT+CFUN=1,1) and re-opens it; a modem that still fails is faulted and retried with backoff."""
        self.failures += 1
        log.warning("%s: %s (failure %d)", self.label, error, self.failures)
        if self.modem_id is not None:
            self.pool.store.update_modem(self.modem_id, last_error=str(error))
        stages = self.pool.settings.failures_before_reset
        session = self.session
        if self.failures < stages - 1 or session is None:  # (no session: nothing open to heal)
            return
        try:
            if self.failures == stages - 1:
                session.modem.command("ATZ")
                session.modem.initialize(lambda identity: self._check(identity, session.device))
                return
            session.modem.raw("AT+CFUN=1,1")
        except ModemError as next_error:
            log.warning("%s: recovery step failed: %s", self.label, next_error)
        self._close()
        self._unpin(session.modem_id)
        self._set_state("faulted")

    def _close(self) -> None:
        try:
            self._give_back("its modem stopped" if self._stopping else "its modem went away")
        except StoreError as error:  # kept by _durably; a restart's recovery requeues it if it is lost
            log.error("%s: %s", self.label, error)
        self.searching_since = None
        self._deferred.clear()  # URCs of this port: what they announced is read from the SIM at the next connect
        session = self.session
        if session is not None:
            session.modem.close()  # the reader stops and the port's lock is released before anyone reopens it
            self.pool.release_device(session.device)
            self.session = None


def _may_have_left(error: ModemError) -> bool:
    """Whether a part's PDU may have reached the modem before `error`: the link says so (its prompt had come
    before the timeout or the port loss), or the modem's answer to it made no sense."""
    return bool(getattr(error, "after_payload", False)) or isinstance(error, ResponseError)


__all__ = ["ModemWorker"]
