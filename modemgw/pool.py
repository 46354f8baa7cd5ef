"""Modem workers: one thread per modem owns its port, pulls work from the store, handles its URCs, heals itself.

Lifecycle of a worker: connecting -> ready <-> busy -> faulted -> recovering -> ready. A worker pulls: when
idle it waits on its own queue for a wake-up (a submit, a released schedule, a health check, a URC), never
polling. Modems are bound by identity (IMEI), not by tty path: after an unplug the worker looks for its IMEI
wherever it reappears among the configured ports: the pool's port watcher (modemgw.hotplug) probes each new
port and hands it to the worker bound to that identity, or starts a worker for a modem nobody configured.
"""

from __future__ import annotations

import collections
import functools
import heapq
import logging
import os
import queue
import random
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from modemgw import at, dispatch, pdu
from modemgw.errors import (
    CmeError,
    CmsError,
    ModemError,
    PortLost,
    ResponseError,
    WrongModem,
)
from modemgw.gateway import REPORT_MODES, Gateway
from modemgw.hotplug import PortWatcher
from modemgw.modem import Identity, Modem, ModemSettings, identity_matches, probe
from modemgw.store import Claimed, Store, StoreError

log = logging.getLogger("modemgw.pool")

WAKE = "wake"
HEALTH = "health"
STOP = "stop"
PORT = "port"    # the watcher found this worker's modem on a port (worker.hint)


@dataclass
class ModemConfig:
    """One configured modem: a device path, or an identity to find among the pool's ports: the modem's IMEI, or
    the SIM's ICCID (the SIM's settings follow it into another modem). Given together, all must match."""

    device: str | None = None
    imei: str | None = None
    iccid: str | None = None
    label: str | None = None
    group: str | None = None
    pin: str | None = None
    baudrate: int = 115200
    rate_per_minute: int | None = None
    quota_day: int | None = None
    quota_month: int | None = None
    storage: str | None = None


@dataclass
class PoolSettings:
    strategy: str = "least-used"
    sticky: bool = False
    ports: list[str] = field(default_factory=list)   # globs where modems may (re)appear (e.g. /dev/modemgw/*)
    auto_attach: bool = True          # start a worker for a modem found on `ports` that no [[modem]] names
    hotplug_interval: float = 2.0     # seconds between re-reads of the `ports` globs
    probe_timeout: float = 1.0        # per AT command when probing a new port
    reconnect_min: float = 0.2
    reconnect_max: float = 30.0
    modem: ModemSettings = field(default_factory=ModemSettings)
    failures_before_reset: int = 3    # modem faults in a row before AT+CFUN=1,1 (one fewer: ATZ and re-init)
    network_check_min: float = 1.0    # while a SIM has no network: first registration check after this long,
    network_check_max: float = 30.0   # ... doubling up to this (a +CREG URC checks at once)
    radio_reset_after: float = 600.0  # no network this long: switch the radio off and on once (never a reboot)
    shutdown_grace: float = 2.5       # at stop: sends in flight may finish this long, then every port is closed
    report_watchdog: int = 20         # this many sends asking for a report, none came back ...
    report_watchdog_age: float = 600.0  # ... the first of them this long ago: try another report route (0: off)


class ModemWorker(threading.Thread):
    """Owns one modem. Every modem conversation happens on this thread."""

    def __init__(self, pool: Pool, config: ModemConfig, order: int):
        super().__init__(name=f"modem-{config.label or config.device or config.imei}", daemon=True)
        self.pool = pool
        self.config = config
        self.order = order
        self.inbox: queue.Queue = queue.Queue()
        self.modem: Modem | None = None
        self.modem_id: int | None = None
        self.row: dict = {}
        self.device = config.device
        self.imei = config.imei
        self.state = "connecting"
        self.window = dispatch.RateWindow()
        self.failures = 0
        self.recent: list[bool] = []      # outcomes of recent sends, for health-weighted dispatch
        self._stopping = False
        self._backoff = pool.settings.reconnect_min
        self._concat_ref = random.randrange(256)
        self._quota_reported = False
        self._wake_tried: frozenset | None = None  # the workers a pending wake-up has already been offered to
        self.hint: str | None = None  # a port where the watcher found this worker's modem
        self._opening: Modem | None = None  # a modem being initialised (not yet self.modem), for abort()
        self._deferred: collections.deque = collections.deque()  # items that arrived while the worker waited
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
        self.waiting = False          # blocked on the inbox (idle, or backing off): healthy however long
        self.pulse = time.monotonic()  # last sign of progress, for the watchdog

    # --- what the pool sees -------------------------------------------------------------------------

    @property
    def label(self) -> str:
        return self.row.get("label") or self.config.label or self.device or "?"

    @property
    def live(self) -> bool:
        """May take messages: online, port open, on the network."""
        return self.state in ("ready", "busy") and self.modem is not None

    @property
    def attached(self) -> bool:
        """Its modem's port is open and initialised (it may still be searching for the network)."""
        return self.modem is not None

    def candidate(self) -> dispatch.Candidate:
        errors = self.recent.count(False) / len(self.recent) if self.recent else 0.0
        delivered = self.row.get("delivered_total") or 0
        sent = self.row.get("sent_total") or 0
        return dispatch.Candidate(key=self.order, sent_today=self._sent_today(), signal_dbm=self.row.get("signal_dbm"),
                                  error_rate=errors, delivery_rate=(delivered / sent) if sent else 1.0, order=self.order)

    def _sent_today(self) -> int:
        return self.row.get("sent_day", 0) if self.row.get("day_key") == time.strftime("%Y-%m-%d") else 0

    def snapshot(self) -> dict:
        return {"label": self.label, "device": self.device, "imei": self.imei, "state": self.state,
                "modem_id": self.modem_id, "sent_today": self._sent_today(),
                "signal_dbm": self.row.get("signal_dbm"), "operator": self.row.get("operator"),
                "reports": REPORT_MODES.get(self.row.get("report_mode") or "")}

    def stop(self) -> None:
        self._stopping = True
        self.inbox.put(STOP)

    def abort(self) -> None:
        """Shutdown, after the grace: close the port under whatever the worker is doing (a command waiting on a
        silent modem, a settle loop at start-up), so the thread ends at once. A send cut off after its PDU went
        out is requeued flagged possible_duplicate, like any other port loss."""
        self._stopping = True
        self.inbox.put(STOP)
        for modem in (self.modem, self._opening):
            if modem is not None:
                modem.abort()

    # --- main loop -----------------------------------------------------------------------------------

    def run(self) -> None:
        while not self._stopping:
            self.pulse = time.monotonic()
            try:
                if self._unsettled and not self._settle():
                    self._wait(self._settle_backoff)  # the database still refuses: claim nothing new meanwhile
                    self._settle_backoff = min(10.0, self._settle_backoff * 2)
                    continue
                if self.modem is None:
                    self._connect()
                    continue
                if self.searching_since is not None:
                    self._search()
                    continue
                self._cycle()
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

    def _cycle(self) -> None:
        """One turn: handle what arrived, send if allowed and there is work, else wait to be woken."""
        self._drain()
        if not self.row.get("enabled", 1):
            self._set_state("ready")
            self._handle(self._get(None))
            return
        blocked = self._blocked()
        if blocked is None:
            self.pool.idle(self)  # idle before the claim, so a submit racing with it still wakes us
            claimed = self.pool.claim(self)
            tried, self._wake_tried = self._wake_tried, None
            if claimed is not None:
                self.pool.busy(self)
                self._set_state("busy")
                self._send(claimed)
                return
            if tried is not None:  # woken for work this modem may not take (a route): pass the wake on
                self.pool.wake(1, tried=tried)
        else:
            self.pool.busy(self)
        self._set_state("ready")
        try:
            item = self._get(blocked)
        except queue.Empty:
            return
        self.pool.busy(self)
        self._handle(item)

    def _wait(self, seconds: float) -> None:
        """Wait before retrying; a stop, or a port handed over by the watcher, ends the wait at once. Anything else
        that arrives meanwhile (a URC announcing a stored report, a console call) is kept for when the worker is
        back at work: dropping it would leave that report on the SIM until the next restart."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                item = self._get(max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return
            if item == STOP:
                self._stopping = True
                return
            if item == PORT:
                self._backoff = self.pool.settings.reconnect_min
                return
            self._deferred.append(item)

    def _get(self, timeout: float | None):
        """Wait for the next item; while waiting the worker counts as healthy however long it waits."""
        self.waiting = True
        try:
            return self.inbox.get(timeout=timeout)
        finally:
            self.waiting = False
            self.pulse = time.monotonic()

    def stalled(self, limit: float) -> bool:
        """Alive but stuck: working (not waiting) without progress for `limit` seconds, or its thread ended
        although nobody stopped it. The daemon stops feeding systemd's watchdog then, and systemd restarts it."""
        if not self.is_alive():
            return not self._stopping and self.ident is not None
        return not self.waiting and time.monotonic() - self.pulse > limit

    def _drain(self) -> None:
        while self._deferred:
            self._handle(self._deferred.popleft())
        while True:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                return
            self._handle(item)

    def _handle(self, item) -> None:
        try:
            self._take(item)
        except StoreError:
            if isinstance(item, at.Urc):  # the database refused what it announced: handled again later
                self._deferred.appendleft(item)
            raise

    def _take(self, item) -> None:
        self.pulse = time.monotonic()  # each item is progress (a burst of URCs is work, not a hang)
        if isinstance(item, tuple) and item[0] == "call":
            _, function, future = item
            try:
                future.set_result(function(self.modem))
            except ModemError as error:
                future.set_exception(error)
                raise
            except Exception as error:  # noqa: BLE001 - handed to the caller; the worker goes on
                future.set_exception(error)
        elif isinstance(item, tuple) and item[0] == WAKE:
            self._wake_tried = item[1]
        elif item == STOP:
            self._stopping = True
        elif item == HEALTH:
            self._health()
        elif isinstance(item, at.Urc):
            self._urc(item)

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

    def _set_state(self, state: str, reason: str | None = None) -> None:
        if state != self.state:
            self.state = state
            if self.modem_id is not None and state in ("ready", "faulted", "searching"):
                self.pool.store.set_modem_state(self.modem_id, "online" if state == "ready" else state, reason)
            self.pool.changed()

    # --- sending -------------------------------------------------------------------------------------

    def _send(self, claimed: Claimed) -> None:
        store = self.pool.store
        in_flight: int | None = None  # the part whose PDU may be on its way to the modem
        try:
            reference = claimed.concat_ref
            if reference is None and claimed.segments > 1:
                reference = self._concat_ref = (self._concat_ref + 1) % 256
                store.set_concat_ref(claimed.id, reference)
            try:
                parts = pdu.encode_message(claimed.recipient, claimed.body, claimed.encoding,
                                           concat_reference=reference or 0, request_report=claimed.request_report,
                                           validity=claimed.validity)
            except pdu.PduError as error:
                self._send_failed(claimed, error, retry=False, count_attempt=True, reason=f"cannot encode: {error}")
                return
            marked = False
            for seq, part in enumerate(parts, start=1):
                if seq in claimed.sent_parts:
                    continue
                started = time.monotonic()
                in_flight = seq
                tp_mr = self.modem.send_pdu(part)
                in_flight = None
                claimed.sent_parts[seq] = tp_mr
                self.pulse = time.monotonic()
                now = time.time()
                self.window.add(now)
                self._count(now)
                marked = seq == len(parts)
                self._durably(f"part {seq} of message {claimed.id} (TP-MR {tp_mr})", functools.partial(
                    store.record_part_sent, claimed.id, seq, self.modem_id, tp_mr, now, self.pool.settings.sticky,
                    claimed.recipient, last=marked))
                self.pool.observe_send(self.pulse - started)
                if claimed.request_report:
                    self._expect_report()
            if not marked:  # the last part had gone out before (recovered after a crash)
                self._durably(f"message {claimed.id} as sent", functools.partial(
                    store.mark_sent, claimed.id, self.modem_id, time.time()))
        except CmsError as error:  # the modem answered: this part did not go out
            self._send_refused(claimed, error)
            return
        except ModemError as error:  # a timeout, a lost port, a reply that makes no sense: the modem's side
            left = in_flight is not None and _may_have_left(error)
            self._send_failed(claimed, error, retry=True, count_attempt=left, possible_duplicate=left)
            raise
        except Exception as error:  # the database or a bug: the message must not stay `sending`
            left = in_flight is not None
            self._send_failed(claimed, error, retry=True, count_attempt=left, possible_duplicate=left,
                              avoid=False)
            raise
        self.recent = (self.recent + [True])[-20:]
        self.failures = 0
        self._pause = self.pool.settings.network_check_min
        self.pool.gateway.emit("message.sent", {"id": claimed.id, "modem_id": self.modem_id})

    def _send_refused(self, claimed: Claimed, error: CmsError) -> None:
        """The modem or the network refused a part (+CMS ERROR): what happens depends on what failed
        (errors.py, `kind`)."""
        if error.kind == "message":  # this message's problem: spend an attempt; the modem goes on
            self._send_failed(claimed, error, retry=error.temporary, count_attempt=True)
            return
        # the network's or the modem's side: the message loses nothing and goes (preferably) elsewhere
        self._send_failed(claimed, error, retry=True, count_attempt=False)
        if error.kind == "modem":
            raise error
        self._network_refused(error)

    def _count(self, now: float) -> None:
        """Keep the in-memory copy of the SIM's counters in step with what record_part_sent stored."""
        day, month = time.strftime("%Y-%m-%d", time.localtime(now)), time.strftime("%Y-%m", time.localtime(now))
        row = self.row
        row["sent_day"] = row.get("sent_day", 0) + 1 if row.get("day_key") == day else 1
        row["sent_month"] = row.get("sent_month", 0) + 1 if row.get("month_key") == month else 1
        row["day_key"], row["month_key"] = day, month

    def _send_failed(self, claimed: Claimed, error: Exception, *, retry: bool, count_attempt: bool,
                     possible_duplicate: bool = False, avoid: bool = True, reason: str | None = None) -> None:
        """Settle a claimed message that did not (or may not) go out: back to the queue, or failed for good.

        `count_attempt`: the attempt counts against max_attempts (the message's own refusal, or a PDU that may
        have left); `possible_duplicate`: the PDU may have left the modem, so a retry may deliver it twice."""
        store, settings = self.pool.store, self.pool.gateway.settings
        self.recent = (self.recent + [False])[-20:]
        code = getattr(error, "code", None)
        text = reason or str(error) or type(error).__name__
        if possible_duplicate:
            text = f"{text} (after its PDU was written: it may have been sent)"
        if not retry or count_attempt and claimed.attempts >= settings.max_attempts:
            if retry:
                text = f"gave up after {claimed.attempts} attempts: {text}"
            self._durably(f"the failure of message {claimed.id}", functools.partial(
                store.fail, claimed.id, self.modem_id, code, text, possible_duplicate=possible_duplicate))
            self.pool.gateway.emit("message.failed", {"id": claimed.id, "code": code, "reason": text})
            return
        message_level = count_attempt and not possible_duplicate
        delay = dispatch.retry_delay(claimed.attempts, settings.retry_base, settings.retry_max) if message_level \
            else 0.0
        self._durably(f"the retry of message {claimed.id}", functools.partial(
            store.requeue, claimed.id, self.modem_id, time.time() + delay, text, code=code,
            pin=bool(claimed.sent_parts), avoid=avoid, count_attempt=count_attempt,
            possible_duplicate=possible_duplicate))
        self.pool.wake(1, exclude=self, delay=delay)


    # --- URCs: inbound messages and status reports ------------------------------------------------------

    def _urc(self, urc: at.Urc) -> None:
        if urc.name == "PORT-LOST":
            raise PortLost(urc.line)
        try:
            self._take_urc(urc)
        except ResponseError as error:  # modem text that does not parse: logged, never the modem's fault
            log.warning("%s: ignored %r: %s", self.label, urc.line, error)

    def _take_urc(self, urc: at.Urc) -> None:
        if urc.name in ("+CREG", "+CGREG", "+CEREG"):
            self._registration_urc(urc)
        elif urc.name in ("+CMTI", "+CDSI"):
            storage, index = at.urc_storage_index(urc)
            self._take_stored(storage, index)
        elif urc.name in ("+CMT", "+CDS") and urc.pdu:
            try:
                message = pdu.decode(urc.pdu, tpdu_length=at.urc_pdu_length(urc))
            except (pdu.PduError, ModemError) as error:
                self.pool.store.log_event("inbound.undecodable", modem_id=self.modem_id, pdu=urc.pdu,
                                          error=str(error))
                message = None
            if message is not None:
                self._commit(message)
            if self.modem.needs_ack:
                try:
                    self.modem.ack()  # only after the commit: an unacknowledged message is delivered again
                except (CmsError, CmeError) as error:  # acknowledged too late (the commit waited for the disk)
                    log.warning("%s: %s acknowledged too late (%s); the network may deliver it again, and the "
                                "duplicate is recognised", self.label, urc.name, error)
        elif urc.name == "LATE-CMGS":
            self.pool.store.log_event("modem.late_cmgs", modem_id=self.modem_id, reference=urc.params[0],
                                      note="a send that timed out did go out; its retry may be a duplicate")
        elif urc.name in ("^RSSI", "+CSQN"):
            pass  # signal chatter; the health check reads the signal when it matters

    def _take_stored(self, storage: str, index: int) -> None:
        default = self.modem.settings.storage or self.modem.profile.storage
        switch = storage != default
        if switch:
            self.modem.select_storage(storage)
        try:
            item = self.modem.read_stored(index)
            if item is not None:
                self._commit_stored(item)
                self.modem.delete_stored(index)  # deleted only after it is safely in our database
        finally:
            if switch:
                self.modem.select_storage(default)

    def _commit_stored(self, item) -> None:
        if item.message is None:
            self.pool.store.log_event("inbound.undecodable", modem_id=self.modem_id, pdu=item.pdu, error=item.error)
        elif not isinstance(item.message, pdu.Submit):
            self._commit(item.message)

    def _commit(self, message) -> None:
        if isinstance(message, pdu.StatusReport):
            self._unreported = 0
            self.pool.gateway.handle_report(self.modem_id, message)
        elif isinstance(message, pdu.Deliver):
            self.pool.gateway.handle_inbound(self.modem_id, message)

    def _read_everything_stored(self) -> None:
        """At start-up: messages and reports that arrived while nobody listened."""
        storages = [self.modem.settings.storage or self.modem.profile.storage]
        if self.modem.state.report_route == 2:
            storages.append("SR")
        for storage in storages:
            if storage != storages[0]:
                try:
                    self.modem.select_storage(storage)
                except ModemError:
                    continue  # no separate report storage: reports land in the message storage
            try:
                for item in self.modem.list_stored(4):
                    if item.message is None or not isinstance(item.message, pdu.Submit):
                        self._commit_stored(item)
                        self.modem.delete_stored(item.index)
            finally:
                if storage != storages[0]:
                    self.modem.select_storage(storages[0])

    # --- health and recovery -------------------------------------------------------------------------

    # --- the report watchdog: a modem that accepts a report route and never uses it ------------------------

    def _expect_report(self) -> None:
        if self._unreported == 0:
            self._unreported_since = time.monotonic()
        self._unreported += 1
        self._check_reports()

    def _check_reports(self) -> None:
        """After each send and at each health check: reroute when the watchdog's limits are passed."""
        settings = self.pool.settings
        if (settings.report_watchdog and self._unreported >= settings.report_watchdog
                and time.monotonic() - self._unreported_since >= settings.report_watchdog_age
                and self.row.get("report_mode") != "none"):
            self._reroute_reports()

    def _reroute_reports(self) -> None:
        """No report for report_watchdog sends: reports may be stored but never announced (poll the report
        storage), or never stored (ask for direct reports, ds=1); else say that none come. Remembered for the
        SIM (the modem row), so a restart starts with what works."""
        sent, self._unreported = self._unreported, 0
        route = self.modem.state.report_route
        mode = "none"
        if route == 2 and self._poll_reports():
            mode = "poll"
        elif route != 1 and self.modem.raw("AT+CNMI=2,1,0,1,0").ok:
            self.modem.state.report_route, mode = 1, "ds=1"
        log.warning("%s: no status report for %d sends with CNMI ds=%d: %s", self.label, sent, route,
                    REPORT_MODES[mode])
        self.row = self.pool.store.update_modem(self.modem_id, report_mode=mode)
        self.pool.store.log_event("modem.reports_rerouted", modem_id=self.modem_id, mode=mode, sends=sent,
                                  route=route)

    def _apply_report_mode(self) -> None:
        """At connect: the report route this SIM's watchdog settled on before."""
        if (self.row.get("report_mode") == "ds=1" and self.modem.state.report_route != 1
                and self.modem.raw("AT+CNMI=2,1,0,1,0").ok):
            self.modem.state.report_route = 1

    def _poll_reports(self) -> int:
        """Read, commit and delete the reports in the report storage ("SR"); how many there were."""
        default = self.modem.settings.storage or self.modem.profile.storage
        try:
            self.modem.select_storage("SR")
        except ModemError:
            return 0
        try:
            found = 0
            for item in self.modem.list_stored(4):
                if isinstance(item.message, pdu.StatusReport):
                    found += 1
                    self._commit_stored(item)
                    self.modem.delete_stored(item.index)
            return found
        finally:
            self.modem.select_storage(default)

    def _health(self) -> None:
        if self.row.get("report_mode") == "poll":
            self._poll_reports()
        self._check_reports()
        status = self.modem.network_status()
        self.row = self.pool.store.update_modem(
            self.modem_id, signal_dbm=status.signal.dbm, registration=status.registration.state,
            operator=status.operator, last_seen=time.time())
        if not status.registration.registered:
            self._lose_network(status.registration.state)

    # --- the network: waiting for registration, never resetting for it ----------------------------------

    def _registration_urc(self, urc: at.Urc) -> None:
        """`+CREG: <stat>[,<lac>,<ci>]` (after AT+CREG=1): lost, stop taking messages at once; while searching,
        check now rather than at the end of the interval."""
        if self.searching_since is not None:
            self._network_check_at = 0.0
            return
        registration = at.parse_creg(urc.line, reply=False)
        if not registration.registered and urc.name == "+CREG":
            self._lose_network(registration.state)

    def _network_refused(self, error: CmsError) -> None:
        """A send refused for the network's sake (no service, network timeout, no SMSC): search if the SIM has lost
        its registration; otherwise pause this modem's sending, doubling up to network_check_max, since the next
        message would meet the same refusal (a SIM without SMS service, an operator outage)."""
        registration = self.modem.registration()
        if not registration.registered:
            self._lose_network(registration.state)
            return
        self.paused_until = time.monotonic() + self._pause
        log.warning("%s: %s while registered; no sends for %.0f s", self.label, error, self._pause)
        if self.modem_id is not None:
            self.pool.store.update_modem(self.modem_id, last_error=f"{error} (sending paused {self._pause:.0f} s)")
        self._pause = min(self.pool.settings.network_check_max, self._pause * 2)
        self.pool.wake(1, exclude=self)

    def _lose_network(self, state: str) -> None:
        """No network: stop taking messages and wait for registration with the port open and nothing reset (a
        reset would not bring the network back, and on real hardware drops the modem off USB)."""
        if self.searching_since is not None:
            return
        settings = self.pool.settings
        self.searching_since = time.time()
        self._network_interval = settings.network_check_min
        self._network_check_at = time.monotonic() + self._network_interval
        self._radio_reset_at = time.monotonic() + settings.radio_reset_after
        reason = f"no network ({state})"
        log.warning("%s: %s; messages wait for it or go to other modems", self.label, reason)
        self.pool.busy(self)
        self._set_state("searching", reason)
        self.pool.gateway.emit("modem.offline", {"modem_id": self.modem_id, "label": self.label, "reason": reason})
        if self.modem.raw("AT+CREG=1").final != "OK":  # a URC when it registers again (else: checks alone)
            log.info("%s: AT+CREG=1 refused; registration is checked every %.0f-%.0f s", self.label,
                     settings.network_check_min, settings.network_check_max)
        self.pool.wake(1, exclude=self)  # a message this modem had avoided may now go to another

    def _search(self) -> None:
        """One turn while there is no network: handle what arrives (inbound, console calls, a stop), and check
        the registration when a +CREG URC says it changed or when the (doubling) interval has passed."""
        self._drain()
        wait = self._network_check_at - time.monotonic()
        if wait > 0:
            try:
                item = self._get(wait)
            except queue.Empty:
                item = None
            if item is not None:
                self._handle(item)
                if self._network_check_at > time.monotonic():
                    return
        if self._stopping or self.modem is None or self.searching_since is None:
            return
        registration = self.modem.registration()
        if registration.registered:
            self._network_back(registration.state)
            return
        settings = self.pool.settings
        self._network_interval = min(settings.network_check_max, self._network_interval * 2)
        self._network_check_at = time.monotonic() + self._network_interval
        if self._radio_reset_at is not None and time.monotonic() >= self._radio_reset_at:
            self._radio_reset_at = time.monotonic() + settings.radio_reset_after
            log.warning("%s: no network for %.0f s; asking the modem to select a network again (AT+COPS=0)",
                        self.label, time.time() - self.searching_since)
            try:
                self.modem.raw("AT+COPS=0", timeout=max(self.modem.settings.command_timeout, 45.0))
            except ModemError as error:  # selection can outlast any timeout with no network; not a fault
                log.info("%s: AT+COPS=0: %s", self.label, error)

    def _network_back(self, state: str) -> None:
        seconds = time.time() - (self.searching_since or time.time())
        self.searching_since = None
        self._pause = self.pool.settings.network_check_min
        self.paused_until = 0.0
        log.info("%s: %s again after %.0f s without network", self.label, state, seconds)
        self._health()
        if self.searching_since is not None:  # lost again while the health check ran
            return
        self._set_state("ready")
        self.pool.gateway.emit("modem.online", {"modem_id": self.modem_id, "label": self.label})
        self.pool.wake(len(self.pool.workers))

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
        return device is not None and bool(self.config.device) and _same_port(device, self.config.device)

    def _connect(self) -> None:
        self._set_state("connecting" if self.modem_id is None else "recovering")
        device = self._find_device()
        if device is None and self.hint is not None:  # the watcher found it but the port is busy a moment
            self._wait(self.pool.settings.reconnect_min)
            return
        if device is None:
            wanted = self.config.iccid and f"SIM {self.config.iccid}" or self.imei and f"IMEI {self.imei}"
            self._retry_later(f"no port found for {wanted or self.device}")
            return
        settings = ModemSettings(**{**vars(self.pool.settings.modem), "pin": self.config.pin,
                                    "storage": self.config.storage})
        try:
            modem = Modem.open(device, settings)
        except Exception as error:  # noqa: BLE001 - pyserial raises SerialException/OSError/ValueError here
            self.pool.release_device(device)
            self._retry_later(f"cannot open {device}: {error}")
            return
        modem.events = self.inbox  # URCs arrive on the worker's own queue, beside wake-ups
        self._opening = modem
        try:
            identity = modem.initialize(lambda identity: self._check(identity, device))
        except ModemError as error:
            modem.close()
            self.pool.release_device(device)
            if isinstance(error, WrongModem):
                self._refused.add(device)  # not this worker's modem: never tried again unless the watcher says so
                if device == self.hint:
                    self.hint = None
                self.pool.port_released(device)
            elif isinstance(error, CmeError) and error.code == 16 and self.config.pin:
                self.pool.rejected_pins.add((modem.identity.iccid, self.config.pin))
            self._retry_later(str(error) if str(error).startswith(device) else f"{device}: {error}")
            return
        except BaseException:  # a bug: never keep a port (and its lock) that no worker owns
            modem.close()
            self.pool.release_device(device)
            raise
        finally:
            self._opening = None
        self.modem, self.device, self.imei = modem, device, identity.imei
        limits = {key: value for key, value in (("rate_per_minute", self.config.rate_per_minute),
                                                 ("quota_day", self.config.quota_day),
                                                 ("quota_month", self.config.quota_month),
                                                 ("grp", self.config.group)) if value is not None}
        self.row = self.pool.store.attach_modem(
            identity.imei, identity.iccid or None, imsi=identity.imsi, number=identity.number,
            manufacturer=identity.manufacturer, model=identity.model, profile=identity.profile, device=device,
            label=self.config.label, **limits)
        if self.config.label and self.row["label"] != self.config.label:
            self.row = self.pool.store.update_modem(self.row["id"], label=self.config.label)
        self.modem_id = self.row["id"]
        self.window = dispatch.RateWindow(self.pool.store.sent_in_window(self.modem_id, time.time() - 60))
        self._backoff = self.pool.settings.reconnect_min
        self.failures = 0
        self.searching_since = None
        self._unreported = 0
        self._read_everything_stored()
        self._apply_report_mode()
        self._health()
        if self.searching_since is not None:
            log.info("%s: on %s (IMEI %s); waiting for the network", self.label, device, identity.imei)
            return
        self._set_state("ready")
        self.pool.gateway.emit("modem.online", {"modem_id": self.modem_id, "label": self.label})
        log.info("%s: online on %s (IMEI %s)", self.label, device, identity.imei)

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
        if self.modem_id is not None and self.state != "faulted" and self._backoff >= self.pool.settings.reconnect_max / 4:
            self._set_state("faulted")
            self.pool.store.set_modem_state(self.modem_id, "offline", reason)
            self.pool.gateway.emit("modem.offline", {"modem_id": self.modem_id, "label": self.label,
                                                     "reason": reason})
        log.info("%s: %s; retrying in %.1f s", self.label, reason, self._backoff)
        self._wait(self._backoff)
        self._backoff = min(self.pool.settings.reconnect_max, self._backoff * 2)

    def _lost(self, error: Exception) -> None:
        log.warning("%s: port lost: %s", self.label, error)
        self._close()
        if self.modem_id is not None:
            self.pool.store.set_modem_state(self.modem_id, "offline", str(error))
            self.pool.gateway.emit("modem.offline", {"modem_id": self.modem_id, "label": self.label,
                                                     "reason": str(error)})
            self._unpin()
        self._set_state("recovering")

    def _unpin(self) -> None:
        """Messages whose first parts went out through this modem cannot wait for it: all parts go again."""
        for message_id in self.pool.store.pinned_to(self.modem_id):
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
        if self.failures < stages - 1:
            return
        try:
            if self.failures == stages - 1:
                self.modem.command("ATZ")
                device = self.device
                self.modem.initialize(lambda identity: self._check(identity, device))
                return
            self.modem.raw("AT+CFUN=1,1")
        except ModemError as next_error:
            log.warning("%s: recovery step failed: %s", self.label, next_error)
        self._close()
        self._unpin()
        self._set_state("faulted")

    def _close(self) -> None:
        self.searching_since = None
        self._deferred.clear()  # URCs of this port: what they announced is read from the SIM at the next connect
        if self.modem is not None:
            self.modem.close()  # the reader stops and the port's lock is released before anyone reopens it
            self.pool.release_device(self.device)
            self.modem = None


class Pool:
    """All modem workers, and the choice of whom to wake."""

    def __init__(self, gateway: Gateway, store: Store, configs: list[ModemConfig],
                 settings: PoolSettings | None = None):
        self.gateway = gateway
        self.store = store
        self.settings = settings or PoolSettings()
        if self.settings.strategy not in dispatch.STRATEGIES:
            raise ValueError(f"unknown strategy {self.settings.strategy!r}; choose from "
                             f"{', '.join(dispatch.STRATEGIES)}")
        self.workers = [ModemWorker(self, config, order) for order, config in enumerate(configs)]
        self._idle: set[ModemWorker] = set()
        self._devices: dict[str, object] = {}
        self._started = False
        self.unattached: dict[str, str] = {}  # ports with a modem the pool left alone, and why (doctor shows them)
        self.rejected_pins: set[tuple[str, str]] = set()  # (ICCID, PIN) pairs a SIM refused: never tried twice
        self.watcher = PortWatcher(self.settings.ports, self.port_appeared, self.port_vanished,
                                   self.settings.hotplug_interval) if self.settings.ports else None
        self._lock = threading.Lock()
        self._attach_lock = threading.Lock()
        self._round_robin = dispatch.RoundRobin()
        self._changed = threading.Condition()
        self.alarm = Alarm(self._alarm_rang)
        gateway.wake = self.wake
        gateway.wake_at = self.alarm.at

    def start(self) -> None:
        for message in self.store.recover_in_flight():
            log.warning("message %s was in flight when the gateway stopped: %s", message["id"], message["action"])
        self._started = True
        for worker in self.workers:
            if not worker.knows_identity and worker.config.device:  # the modem last seen on its path, if any
                worker.imei = self.store.imei_last_on(worker.config.device)
            worker.start()
        if self.watcher is not None:
            self.watcher.start()
        self.alarm.start()
        due = self.store.next_due()
        if due is not None:
            self.alarm.at(due)

    def stop(self) -> None:
        """Stop every worker at once: sends in flight get `shutdown_grace` to finish, then every port is closed
        under whatever is still running (a silent modem, a start-up settle loop), all within a few seconds."""
        if self.watcher is not None:
            self.watcher.stop()
        self.alarm.stop()
        workers = list(self.workers)
        for worker in workers:
            worker.stop()
        deadline = time.monotonic() + self.settings.shutdown_grace
        for worker in workers:
            if worker.is_alive():
                worker.join(timeout=max(0.0, deadline - time.monotonic()))
        late = [worker for worker in workers if worker.is_alive()]
        for worker in late:
            log.warning("%s: still busy at shutdown (%s); closing its port", worker.label, worker.state)
            worker.abort()
        deadline = time.monotonic() + 2.0
        for worker in late:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                log.error("%s: the worker thread did not stop", worker.label)

    # --- ports -------------------------------------------------------------------------------------------

    def claim_device(self, device: str, owner: object) -> bool:
        """One owner per serial port (however it is named): False when another worker, or a probe, holds it."""
        real = os.path.realpath(device)
        with self._lock:
            for path, holder in self._devices.items():
                if holder is not owner and (path == device or os.path.realpath(path) == real):
                    return False
            self._devices[device] = owner
            return True

    def release_device(self, device: str | None) -> None:
        with self._lock:
            self._devices.pop(device, None)

    def holder(self, device: str) -> object | None:
        real = os.path.realpath(device)
        with self._lock:
            for path, holder in self._devices.items():
                if path == device or os.path.realpath(path) == real:
                    return holder
        return None

    # --- hot-plug ----------------------------------------------------------------------------------------

    def port_appeared(self, device: str) -> bool | None:
        """The watcher saw a new port: hand it to the worker whose modem is there, or start a worker for an
        unknown modem. True when settled; False to be asked again (no answer yet); None when busy."""
        if not _is_serial_node(device):
            return True  # a socket or a plain file among the globs: nothing to probe
        holder = self.holder(device)
        if isinstance(holder, ModemWorker) and holder.attached and holder.device and _same_port(device, holder.device):
            return True
        if holder is not None:
            return None  # a worker is trying it, or a probe runs: ask again, it may not stay with them
        for worker in self.workers:
            if not worker.knows_identity and worker.config.device and _same_port(device, worker.config.device):
                self._hand_over(worker, device)  # its configured port, first sight: it takes what answers there
                return True
        with self._lock:
            unknown_busy = any(isinstance(owner, ModemWorker) and not owner.knows_identity and not owner.live
                               for owner in self._devices.values())
        if unknown_busy:
            return None  # a worker is still finding out which modem it has: this port may be another port of it
        probing = object()  # the owner of this port while this call probes it (probes run in parallel)
        if not self.claim_device(device, probing):
            return None
        try:
            found = probe(device, self.settings.probe_timeout)
        finally:
            self.release_device(device)
        if found.identity is None or not found.identity.imei:
            log.info("%s: no modem answers here (yet): %s", device, found.error)
            return False
        return self._place(found.identity, device)

    def _place(self, identity: Identity, device: str) -> bool:
        """Hand a probed port to its worker, or attach its modem. One at a time: the watcher probes ports in
        parallel, and two AT ports of one new modem must not get a worker each."""
        with self._attach_lock:
            for worker in self.workers:
                if worker.bound_to(identity, device):
                    self._hand_over(worker, device)
                    return True
            if not self.settings.auto_attach:
                reason = (f"modem IMEI {identity.imei} (SIM {identity.iccid or '?'}) is not configured and "
                          "auto_attach is off")
                log.warning("%s: %s; left alone", device, reason)
                self.unattached[device] = reason
                self.changed()
                return True
            log.info("%s: new modem IMEI %s (SIM %s); attaching it", device, identity.imei, identity.iccid or "?")
            self.add_worker(ModemConfig(device=device, imei=identity.imei))
            return True

    def _hand_over(self, worker: ModemWorker, device: str) -> None:
        if worker.attached and worker.device and os.path.exists(worker.device):
            return  # its modem is up: this is another AT interface of the same modem
        worker.hint = device
        worker._refused.discard(device)
        worker.inbox.put(PORT)

    def port_released(self, device: str) -> None:
        """A worker let go of a port that holds another modem: the watcher probes it again."""
        if self.watcher is not None:
            self.watcher.recheck(device)

    def attached_elsewhere(self, imei: str, worker: ModemWorker) -> ModemWorker | None:
        """The live worker (other than `worker`) that already drives the modem with this IMEI."""
        for other in self.workers:
            if other is not worker and other.attached and other.imei == imei:
                return other
        return None

    def port_vanished(self, device: str) -> None:
        """A port went away: its worker (if any) checks its link now rather than at the next health check."""
        self.unattached.pop(device, None)
        for worker in self.workers:
            if worker.attached and worker.device and _same_port(device, worker.device):
                worker.inbox.put(HEALTH)

    def add_worker(self, config: ModemConfig) -> ModemWorker:
        """A worker for a modem that appeared at run time (auto-attach), started at once."""
        with self._lock:
            worker = ModemWorker(self, config, len(self.workers))
            self.workers = [*self.workers, worker]  # a new list: readers iterate the old one undisturbed
        if self._started:
            worker.start()
        return worker

    # --- dispatch ----------------------------------------------------------------------------------------

    def idle(self, worker: ModemWorker) -> None:
        with self._lock:
            self._idle.add(worker)

    def busy(self, worker: ModemWorker) -> None:
        with self._lock:
            self._idle.discard(worker)

    def claim(self, worker: ModemWorker) -> Claimed | None:
        live = [other for other in self.workers if other.live and other.row.get("enabled", 1)]
        # the modems that could take a message this one failed: a retry comes back here when none allows it
        others = [(other.label, other.row.get("grp")) for other in live
                  if other is not worker and not other.quota_blocked]
        sticky_to = [other.modem_id for other in live] if self.settings.sticky else None
        return self.store.claim_next(worker.modem_id, worker.label, worker.row.get("grp"), others, time.time(),
                                     sticky_to)

    def wake(self, count: int = 1, exclude: ModemWorker | None = None, delay: float = 0.0,
             tried: frozenset = frozenset()) -> None:
        """Wake up to `count` idle workers, chosen by the strategy (now, or after `delay` seconds). A woken
        worker that may not take the work passes the wake to one not in `tried`."""
        if delay > 0:
            self.alarm.at(time.time() + delay)
            return
        with self._lock:
            idle = [worker for worker in self._idle if worker is not exclude and worker.live and worker not in tried]
            by_order = {worker.order: worker for worker in idle}
            chosen = dispatch.choose([worker.candidate() for worker in idle], self.settings.strategy,
                                     count, self._round_robin)
            for order in chosen:
                worker = by_order[order]
                self._idle.discard(worker)
                worker.inbox.put((WAKE, tried | {worker}))
        if not chosen and exclude is not None and exclude.live:
            exclude.inbox.put(WAKE)

    def observe_send(self, seconds: float) -> None:
        """Hook for metrics (the daemon installs one)."""

    def worker(self, modem_id: int) -> ModemWorker:
        for worker in self.workers:
            if worker.modem_id == modem_id:
                return worker
        raise KeyError(modem_id)

    def run_on(self, modem_id: int, function, timeout: float = 30.0):
        """Run `function(modem)` on the modem's own worker thread (the port has one owner) and return its result.
        Raises KeyError (no such modem), ModemError (offline, or what the modem said), TimeoutError."""
        worker = self.worker(modem_id)
        if not worker.attached:
            raise ModemError(f"modem {worker.label} is {worker.state}")
        future: Future = Future()
        worker.inbox.put(("call", function, future))
        return future.result(timeout)

    def refresh(self, modem_id: int) -> None:
        """The modem's row changed (enabled, limits, label): let its worker see it and try again."""
        worker = self.worker(modem_id)
        worker.row = self.store.modem(modem_id)
        worker.inbox.put(WAKE)

    def health_check(self) -> None:
        """Ask idle workers to check signal and registration (busy ones are not interrupted)."""
        with self._lock:
            idle = list(self._idle)
        for worker in idle:
            worker.inbox.put(HEALTH)

    def status(self) -> list[dict]:
        return [worker.snapshot() for worker in self.workers]

    def stalled(self) -> list[str]:
        """Workers (and the alarm) that are stuck: what the watchdog must not paper over."""
        modem = self.settings.modem
        limit = modem.send_timeout + modem.prompt_timeout + 2 * modem.command_timeout + 60
        stuck = [worker.label for worker in self.workers if worker.stalled(limit)]
        if self._started and not self.alarm.is_alive():
            stuck.append("alarm")
        return stuck

    def _alarm_rang(self) -> None:
        """A scheduled message or a backed-off retry has become due."""
        self.gateway.release_scheduled()
        self.wake(len(self.workers))

    def changed(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait_until(self, predicate, timeout: float = 10.0) -> bool:
        """Wait until `predicate()` holds; re-checked whenever a worker changes state (start-up and tests)."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """True once every worker is online."""
        return self.wait_until(lambda: all(worker.live for worker in self.workers), timeout)


def _may_have_left(error: ModemError) -> bool:
    """Whether a part's PDU may have reached the modem before `error`: the link says so (its prompt had come
    before the timeout or the port loss), or the modem's answer to it made no sense."""
    return bool(getattr(error, "after_payload", False)) or isinstance(error, ResponseError)


def _is_serial_node(path: str) -> bool:
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


def _same_port(first: str, second: str) -> bool:
    return first == second or os.path.realpath(first) == os.path.realpath(second)


class Alarm(threading.Thread):
    """One thread that calls `ring()` at the times asked for (the earliest first): scheduled sends and retries
    wake the pool on time without anyone polling the queue."""

    def __init__(self, ring):
        super().__init__(name="pool-alarm", daemon=True)
        self.ring = ring
        self._times: list[float] = []
        self._condition = threading.Condition()
        self._stopping = False

    def at(self, when: float) -> None:
        with self._condition:
            heapq.heappush(self._times, when)
            self._condition.notify()

    def stop(self) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify()
        if self.is_alive():
            self.join(timeout=5)

    def run(self) -> None:
        while True:
            with self._condition:
                while not self._stopping:
                    now = time.time()
                    if self._times and self._times[0] <= now:
                        break
                    self._condition.wait(self._times[0] - now if self._times else None)
                if self._stopping:
                    return
                while self._times and self._times[0] <= time.time():
                    heapq.heappop(self._times)
            try:
                self.ring()
            except Exception:  # the alarm must keep ringing for the next due message
                log.exception("alarm callback failed")
