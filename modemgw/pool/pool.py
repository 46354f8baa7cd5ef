"""The pool: every modem worker, the choice of whom to wake, the ports they hold, and what the hot-plug watcher
found (each new port goes to the worker bound to its modem, or an unknown modem gets a worker of its own)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from modemgw import dispatch
from modemgw.errors import ModemError
from modemgw.gateway import Gateway
from modemgw.hotplug import PortWatcher, is_serial_node
from modemgw.modem import Identity, Modem, probe
from modemgw.pool.alarm import Alarm
from modemgw.pool.ports import PortOwners, same_port
from modemgw.pool.state import ModemState
from modemgw.pool.tasks import Call, Health, PortFound, Wake
from modemgw.pool.worker import ModemWorker
from modemgw.settings import ModemConfig, PoolSettings
from modemgw.store import Claimed, Store

log = logging.getLogger("modemgw.pool")


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
        self.ports = PortOwners()
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
        for message in self.store.recover_in_flight(rebooted=self._rebooted()):
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

    # --- what outside readers see (web UI, metrics, daemon, API, CLI) ---------------------------------------

    def states(self) -> list[ModemState]:
        """Every modem's state now, in the workers' order."""
        return [worker.modem_state() for worker in self.workers]

    def find(self, name: str) -> ModemState | None:
        """The modem whose label, IMEI or device path (or the device that path points to) is `name`."""
        worker = self._named(name)
        return worker.modem_state() if worker is not None else None

    def state_of(self, modem_id: int) -> ModemState | None:
        """The modem whose row is `modem_id`, or None."""
        for worker in self.workers:
            if worker.modem_id == modem_id:
                return worker.modem_state()
        return None

    def _named(self, name: str) -> ModemWorker | None:
        for worker in self.workers:
            if name in (worker.label, worker.imei) or (worker.device and same_port(name, worker.device)):
                return worker
        return None

    def status(self) -> list[dict]:
        return [state.summary() for state in self.states()]

    # --- ports -------------------------------------------------------------------------------------------

    def claim_device(self, device: str, owner: object) -> bool:
        """One owner per serial port (however it is named): False when another worker, or a probe, holds it."""
        return self.ports.claim(device, owner)

    def release_device(self, device: str) -> None:
        self.ports.release(device)

    def holder(self, device: str) -> object | None:
        return self.ports.holder(device)

    # --- hot-plug ----------------------------------------------------------------------------------------

    def port_appeared(self, device: str) -> bool | None:
        """The watcher saw a new port: hand it to the worker whose modem is there, or start a worker for an
        unknown modem. True when settled; False to be asked again (no answer yet); None when busy."""
        if not is_serial_node(device):
            return True  # a socket or a plain file among the globs: nothing to probe
        holder = self.holder(device)
        if isinstance(holder, ModemWorker) and holder.attached and holder.device and same_port(device, holder.device):
            return True
        if holder is not None:
            return None  # a worker is trying it, or a probe runs: ask again, it may not stay with them
        for worker in self.workers:
            if not worker.knows_identity and worker.config.device and same_port(device, worker.config.device):
                self._hand_over(worker, device)  # its configured port, first sight: it takes what answers there
                return True
        if any(isinstance(owner, ModemWorker) and not owner.knows_identity and not owner.live
               for owner in self.ports.owners()) or any(worker.first_look_pending and not worker.knows_identity
                                                        for worker in self.workers):
            # a worker is still finding out which modem it has (or has not looked at its port yet, which a loaded
            # machine may delay past the watcher's first scan): this port may be another port of the same modem
            return None
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
        worker.tasks.put(PortFound())

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
            if worker.attached and worker.device and same_port(device, worker.device):
                worker.tasks.put(Health())

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

    def has_idle(self, besides: ModemWorker) -> bool:
        """Whether a live, enabled worker other than `besides` waits for work: it would take a message at once, so
        `besides` must not claim one ahead of its current send."""
        with self._lock:
            return any(worker is not besides and worker.live and worker.row.get("enabled", 1) for worker in self._idle)

    def _rebooted(self) -> bool:
        """Whether the machine started again since the gateway last started here (its boot id changed, or is
        unknown): then a power cut may have lost commits that were not synced (store/base.py)."""
        try:
            with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
                boot = file.read(64).strip()
        except OSError:
            return True
        last = self.store.setting("boot_id", lambda: "")
        if last != boot:
            self.store.set_setting("boot_id", boot)
        return last != boot

    def claim(self, worker: ModemWorker, modem_id: int, ahead: bool = False) -> Claimed | None:
        """The next message `worker` (attached as `modem_id`) may send, claimed; None when there is none.
        `ahead`: while the modem still sends the one before (`DispatchStore.claim_next`)."""
        live = [other for other in self.workers if other.live and other.row.get("enabled", 1)]
        # the modems that could take a message this one failed: a retry comes back here when none allows it
        others = [(other.label, other.row.get("grp")) for other in live
                  if other is not worker and not other.quota_blocked]
        sticky_to = [other.modem_id for other in live if other.modem_id is not None] if self.settings.sticky \
            else None
        sending = [other.modem_id for other in live if other.modem_id is not None and not other.quota_blocked]
        return self.store.claim_next(modem_id, worker.label, worker.row.get("grp"), others, time.time(), sticky_to,
                                     sending, ahead=ahead)

    def wake(self, count: int = 1, exclude: ModemWorker | None = None, delay: float = 0.0,
             tried: frozenset = frozenset()) -> None:
        """Wake up to `count` idle workers, chosen by the strategy (now, or after `delay` seconds). A woken
        worker that may not take the work passes the wake to one not in `tried`."""
        if delay > 0:
            self.alarm.at(time.time() + delay)
            return
        with self._lock:
            # a disabled modem would swallow the wake-up and leave the work to nobody
            idle = [worker for worker in self._idle if worker is not exclude and worker.live and worker not in tried
                    and worker.row.get("enabled", 1)]
            by_order = {worker.order: worker for worker in idle}
            chosen = dispatch.choose([worker.candidate() for worker in idle], self.settings.strategy,
                                     count, self._round_robin)
            for order in chosen:
                worker = by_order[order]
                self._idle.discard(worker)
                worker.tasks.put(Wake(tried | {worker}))
        if not chosen and exclude is not None and exclude.live:
            exclude.tasks.put(Wake())

    def observe_send(self, seconds: float) -> None:
        """Hook for metrics (the daemon installs one)."""

    def worker(self, modem_id: int) -> ModemWorker:
        for worker in self.workers:
            if worker.modem_id == modem_id:
                return worker
        raise KeyError(modem_id)

    def run_on(self, modem_id: int, function: Callable[[Modem], Any], timeout: float = 30.0) -> Any:
        """Run `function(modem)` on the modem's own worker thread (the port has one owner) and return its result.
        Raises KeyError (no such modem), ModemError (offline, or what the modem said), TimeoutError."""
        worker = self.worker(modem_id)
        if not worker.attached:
            raise ModemError(f"modem {worker.label} is {worker.state}")
        future: Future = Future()
        worker.tasks.put(Call(function, future))
        return future.result(timeout)

    def refresh(self, modem_id: int) -> None:
        """The modem's row changed (enabled, limits, label): let its worker see it and try again."""
        worker = self.worker(modem_id)
        worker.row = self.store.modem(modem_id)
        worker.tasks.put(Wake())

    def health_check(self) -> None:
        """Ask idle workers to check signal and registration (busy ones are not interrupted)."""
        with self._lock:
            idle = list(self._idle)
        for worker in idle:
            worker.tasks.put(Health())

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

    def wait_until(self, predicate: Callable[[], object], timeout: float = 10.0) -> bool:
        """Wait until `predicate()` holds; re-checked whenever a worker changes state (start-up and tests)."""
        with self._changed:
            return bool(self._changed.wait_for(predicate, timeout))

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """True once every worker is online."""
        return self.wait_until(lambda: all(worker.live for worker in self.workers), timeout)


__all__ = ["Pool"]
