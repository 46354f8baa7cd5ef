"""Simulated modems behind real pseudo-terminals, on one event-loop thread.

Each modem gets a pty: programs open its slave side (`/dev/pts/N`, or a stable symlink in a link directory)
exactly like a USB modem's tty. The loop keeps a slave descriptor open itself, so clients may close and
reopen the device as they would a real one. Unplugging closes the pty (the client's reads fail as on a real
unplug) and removes the link; replugging makes a new pty, under the same link name or another one.

Other threads and processes drive it through `Simulator` methods (marshalled onto the loop thread) or, when
a link directory is given, the JSON-lines control socket `<link-dir>/control.sock`.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import heapq
import itertools
import logging
import os
import selectors
import socket
import threading
import time
import tty
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modemgw import control
from modemgw.sim.interpreter import Faults, SimIdentity, SimModem
from modemgw.sim.network import Network, NetworkSettings
from modemgw.sim.profiles import PROFILES

log = logging.getLogger("modemgw.sim")

MAX_BACKLOG = 64 * 1024  # what a modem's UART buffer holds while nobody reads; older output is lost


def luhn_complete(digits: str) -> str:
    """`digits` plus its Luhn check digit (IMEIs and ICCIDs carry one)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 0:
            value *= 2
            value -= 9 if value > 9 else 0
        total += value
    return digits + str((10 - total % 10) % 10)


def make_identity(index: int, seed: int = 0) -> SimIdentity:
    """A plausible, unique identity per index: Luhn-valid IMEI and ICCID, UK drama-range numbers."""
    serial = f"{seed % 1000:03d}{index:03d}"
    return SimIdentity(
        imei=luhn_complete(f"35693803{serial}"),
        imsi=f"2340100{seed % 100:02d}{index:06d}",
        iccid=luhn_complete(f"894401{seed % 1000:03d}0000{index:06d}"),
        number=f"+447700900{index:03d}",
    )


@dataclass
class Device:
    """One simulated modem and its pty."""

    modem: SimModem
    link: Path | None
    master: int = -1
    keeper: int = -1          # our own slave descriptor, so the pty survives clients closing it
    path: str = ""
    generation: int = 0
    backlog: bytearray = field(default_factory=bytearray)

    @property
    def device(self) -> str:
        return str(self.link) if self.link else self.path


class _DeviceHost:
    """The `Host` a `SimModem` talks to: time, writes and callbacks, all on the loop thread."""

    def __init__(self, simulator: Simulator, device: Device):
        self.simulator = simulator
        self.device = device

    def now(self) -> float:
        return time.monotonic()

    def write(self, data: bytes, at: float) -> None:
        generation = self.device.generation
        self.simulator._schedule(at, lambda: self.simulator._write(self.device, data, generation))

    def call_at(self, at: float, action: Callable[[], None]) -> None:
        self.simulator._schedule(at, action)


class Simulator:
    """N simulated modems on ptys, joined by one simulated network. Use as a context manager."""

    def __init__(self, count: int = 1, profile: str | list[str] = "generic", *, send_latency: float = 0.0,
                 report_delay: float = 0.05, link_dir: str | Path | None = None, control: bool = True,
                 seed: int = 0, ack_timeout: float = 10.0, settings: NetworkSettings | None = None,
                 names: list[str] | None = None):
        profiles = [profile] * count if isinstance(profile, str) else list(profile)
        unknown = [name for name in profiles if name not in PROFILES]
        if unknown:
            raise ValueError(f"unknown modem profile {unknown[0]!r}; choose from {', '.join(PROFILES)}")
        self.link_dir = Path(link_dir) if link_dir else None
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = itertools.count()
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        self._calls: list[tuple[Callable[[], Any], Future]] = []
        self._calls_lock = threading.Lock()
        self._changed = threading.Condition()  # notified after every turn of the loop
        self._turns = 0
        self._running = False
        self._thread: threading.Thread | None = None
        self._control: socket.socket | None = None
        self._clients: dict[int, tuple[socket.socket, bytearray]] = {}
        settings = settings or NetworkSettings(report_delay=report_delay)
        self.network = Network(self._schedule, time.monotonic, settings)
        self.devices: list[Device] = []
        names = names or [f"sim{index}" for index in range(count)]
        for index, profile_name in enumerate(profiles):
            device = Device(modem=None, link=self.link_dir / names[index] if self.link_dir else None)  # type: ignore[arg-type]
            device.modem = SimModem(names[index], make_identity(index, seed), PROFILES[profile_name],
                                    _DeviceHost(self, device), self.network, send_latency=send_latency,
                                    ack_timeout=ack_timeout, seed=seed * 1000 + index)
            self.network.attach(device.modem)
            self.devices.append(device)
        self._want_control = control and self.link_dir is not None

    # --- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> Simulator:
        if self.link_dir:
            self.link_dir.mkdir(parents=True, exist_ok=True)
        self._selector.register(self._wake_read, selectors.EVENT_READ, ("wake", None))
        for device in self.devices:
            self._plug(device)
        if self._want_control and self.link_dir is not None:
            path = self.link_dir / "control.sock"
            path.unlink(missing_ok=True)
            self._control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._control.bind(str(path))
            self._control.listen(8)
            self._control.setblocking(False)
            self._selector.register(self._control, selectors.EVENT_READ, ("control", None))
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="modem-sim", daemon=True)
        self._thread.start()
        for device in self.devices:
            self.call(device.modem.boot)
        return self

    def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        os.write(self._wake_write, b"x")
        if self._thread:
            self._thread.join(timeout=5)
        for device in self.devices:
            self._unplug(device)
        if self._control is not None and self.link_dir is not None:
            self._control.close()
            (self.link_dir / "control.sock").unlink(missing_ok=True)
        for sock, _ in self._clients.values():
            sock.close()
        os.close(self._wake_read)
        os.close(self._wake_write)
        self._selector.close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # --- driving it from other threads ------------------------------------------------------------------

    def call(self, function: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Run `function` on the loop thread and return its result."""
        if threading.current_thread() is self._thread:
            return function()
        future: Future = Future()
        with self._calls_lock:
            self._calls.append((function, future))
        os.write(self._wake_write, b"x")
        return future.result(timeout)

    def wait_until(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Wait until `predicate()` (run on the loop thread) is true; return its value, or raise TimeoutError.

        Tests wait on this instead of sleeping: it re-checks after every event the simulator handles.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._changed:
                turn = self._turns
            value = self.call(predicate)
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"simulator condition not met in {timeout:g} s")
            with self._changed:
                self._changed.wait_for(functools.partial(self._moved_on, turn), remaining)

    def _moved_on(self, turn: int) -> bool:
        return self._turns != turn

    def modem(self, which: int | str) -> Device:
        if isinstance(which, int):
            return self.devices[which]
        for device in self.devices:
            if which in (device.modem.name, device.device, device.path, device.modem.identity.imei):
                return device
        raise KeyError(f"no simulated modem {which!r}; have {', '.join(d.modem.name for d in self.devices)}")

    def inject_sms(self, which: int | str, sender: str, body: str, **options) -> int:
        """Deliver an inbound SMS to a modem; returns the number of parts."""
        device = self.modem(which)
        return len(self.call(lambda: self.network.inject(device.modem, sender, body, **options)))

    def sent(self, which: int | str) -> list:
        device = self.modem(which)
        return self.call(lambda: list(device.modem.sent))

    def commands(self, which: int | str) -> list[str]:
        device = self.modem(which)
        return self.call(lambda: list(device.modem.commands))

    def fault(self, which: int | str, kind: str, **params) -> dict:
        """Inject a fault (see FAULTS); returns the modem's description afterwards."""
        device = self.modem(which)
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; choose from {', '.join(sorted(FAULTS))}")
        return self.call(lambda: (FAULTS[kind](self, device, **params), self.describe(device))[1])

    def describe(self, device: Device) -> dict:
        identity = device.modem.identity
        return {"name": device.modem.name, "device": device.device, "path": device.path,
                "plugged": device.master >= 0, "profile": device.modem.profile.name, "imei": identity.imei,
                "iccid": identity.iccid, "imsi": identity.imsi, "number": identity.number}

    # --- the loop ----------------------------------------------------------------------------------------

    def _schedule(self, at: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (at, next(self._sequence), action))
        if self._thread is not None and threading.current_thread() is not self._thread:
            os.write(self._wake_write, b"x")

    def _loop(self) -> None:
        while self._running:
            timeout = None
            if self._timers:
                timeout = max(0.0, self._timers[0][0] - time.monotonic())
            for key, mask in self._selector.select(timeout):
                kind, device = key.data
                try:
                    if kind == "wake":
                        self._drain_wake()
                    elif kind == "pty":
                        self._pty_event(device, mask, key.fd)
                    elif kind == "control":
                        self._accept()
                    elif kind == "client" and isinstance(key.fileobj, socket.socket):
                        self._client_readable(key.fileobj)
                except Exception:
                    log.exception("simulator: %s event failed", kind)
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _, _, action = heapq.heappop(self._timers)
                try:
                    action()
                except Exception:
                    log.exception("simulator: a timed action failed")
            with self._changed:
                self._turns += 1
                self._changed.notify_all()

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_read, 4096):
                pass
        except BlockingIOError:
            pass
        with self._calls_lock:
            calls, self._calls = self._calls, []
        for function, future in calls:
            try:
                future.set_result(function())
            except Exception as error:  # noqa: BLE001 - handed to the caller's thread, which raises it
                future.set_exception(error)

    def _pty_event(self, device: Device, mask: int, fd: int) -> None:
        if device.master < 0 or fd != device.master:
            return  # unplugged by an earlier event of the same select() batch (and perhaps replugged since)
        if mask & selectors.EVENT_READ:
            try:
                data = os.read(device.master, 4096)
            except BlockingIOError:
                data = None
            except OSError as error:
                if error.errno != errno.EIO:
                    raise
                data = None
            if data:
                device.modem.receive(data)
        if mask & selectors.EVENT_WRITE and device.master >= 0:
            self._flush(device)

    # --- ptys -------------------------------------------------------------------------------------------

    def _plug(self, device: Device) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        flags = fcntl.fcntl(master, fcntl.F_GETFD)
        fcntl.fcntl(master, fcntl.F_SETFD, flags | fcntl.FD_CLOEXEC)
        device.master, device.keeper = master, slave
        device.path = os.ttyname(slave)
        device.generation += 1
        device.backlog.clear()
        device.modem.plugged = True
        if device.link:
            device.link.unlink(missing_ok=True)
            device.link.symlink_to(device.path)
        self._selector.register(master, selectors.EVENT_READ, ("pty", device))

    def _unplug(self, device: Device) -> None:
        if device.master < 0:
            return
        path = device.path
        self._selector.unregister(device.master)
        os.close(device.master)
        os.close(device.keeper)
        device.master = device.keeper = -1
        device.generation += 1
        device.modem.plugged = False
        if device.link and device.link.is_symlink() and os.readlink(device.link) == path:
            device.link.unlink()  # only its own: another modem may have been plugged in under that name since

    def _write(self, device: Device, data: bytes, generation: int) -> None:
        if device.master < 0 or generation != device.generation:
            return  # written by a modem that has since been unplugged
        device.backlog += data
        if len(device.backlog) > MAX_BACKLOG:
            del device.backlog[:len(device.backlog) - MAX_BACKLOG]
        self._flush(device)

    def _flush(self, device: Device) -> None:
        try:
            while device.backlog:
                written = os.write(device.master, device.backlog)
                del device.backlog[:written]
        except BlockingIOError:
            pass
        except OSError as error:
            if error.errno != errno.EIO:
                raise
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if device.backlog else 0)
        self._selector.modify(device.master, events, ("pty", device))

    # --- control socket ----------------------------------------------------------------------------------

    def _accept(self) -> None:
        if self._control is None:
            return
        try:
            sock, _ = self._control.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        self._clients[sock.fileno()] = (sock, bytearray())
        self._selector.register(sock, selectors.EVENT_READ, ("client", None))

    def _client_readable(self, sock: socket.socket) -> None:
        _, buffer = self._clients[sock.fileno()]
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except ConnectionError:
            data = b""
        if not data:
            self._selector.unregister(sock)
            self._clients.pop(sock.fileno(), None)
            sock.close()
            return
        buffer += data
        while b"\n" in buffer:
            line, _, rest = bytes(buffer).partition(b"\n")
            buffer[:] = rest
            reply = control.answer(line, self._control_request)
            sock.setblocking(True)
            sock.sendall(reply)
            sock.setblocking(False)
        if len(buffer) > control.MAX_LINE:  # a client that never ends its line: let it go
            self._selector.unregister(sock)
            self._clients.pop(sock.fileno(), None)
            sock.close()

    def _control_request(self, request: dict) -> dict:
        try:
            command = request.pop("command")
            if command == "list":
                return {"ok": True, "modems": [self.describe(device) for device in self.devices]}
            device = self.modem(request.pop("modem", 0))
            if command == "sms":
                options = {key: request[key] for key in ("encoding", "parts", "order", "reference",
                                                           "concat_bits", "message_class") if key in request}
                parts = self.network.inject(device.modem, request["sender"], request["text"], **options)
                return {"ok": True, "parts": len(parts)}
            if command == "fault":
                kind = request.pop("kind")
                if kind not in FAULTS:
                    raise ValueError(f"unknown fault {kind!r}; choose from {', '.join(sorted(FAULTS))}")
                FAULTS[kind](self, device, **request)
                return {"ok": True, "modem": self.describe(device)}
            if command == "sent":
                return {"ok": True, "sent": [vars(record) for record in device.modem.sent]}
            if command == "commands":  # every command line the modem received, oldest first (ground truth)
                return {"ok": True, "commands": list(device.modem.commands)}
            raise ValueError(f"unknown command {command!r}")
        except (ValueError, KeyError, TypeError) as error:
            return {"ok": False, "error": str(error)}


# --- faults ---------------------------------------------------------------------------------------------

def _fault_unplug(simulator: Simulator, device: Device) -> None:
    simulator._unplug(device)


def _fault_replug(simulator: Simulator, device: Device, name: str | None = None) -> None:
    simulator._unplug(device)
    if name and simulator.link_dir:
        device.link = simulator.link_dir / name
    simulator._plug(device)
    device.modem.reset()
    device.modem.boot()
    simulator.network.memory_available(device.modem)


def _fault_hang(simulator: Simulator, device: Device, seconds: float | None = None) -> None:
    device.modem.faults.hang_until = float("inf") if seconds is None else time.monotonic() + seconds


def _fault_unhang(simulator: Simulator, device: Device) -> None:
    device.modem.faults.hang_until = None


def _fault_cms(simulator: Simulator, device: Device, code: int = 331, count: int = 1) -> None:
    device.modem.faults.cms_errors += [int(code)] * int(count)


def _fault_registration(simulator: Simulator, device: Device, lost: bool = True) -> None:
    device.modem.set_registration_lost(bool(lost))


def _fault_pin(simulator: Simulator, device: Device, required: bool = True) -> None:
    device.modem.faults.pin_required = bool(required)
    device.modem.pin_ok = not required


def _fault_garbage(simulator: Simulator, device: Device, count: int = 32) -> None:
    device.modem.inject_garbage(int(count))


def _fault_slow_prompt(simulator: Simulator, device: Device, seconds: float = 1.0) -> None:
    device.modem.faults.prompt_delay = float(seconds)


def _fault_no_prompt(simulator: Simulator, device: Device, count: int = 1) -> None:
    device.modem.faults.no_prompt += int(count)


def _fault_delay_reply(simulator: Simulator, device: Device, seconds: float = 1.0) -> None:
    device.modem.faults.reply_delay = float(seconds)


def _fault_urc_before_prompt(simulator: Simulator, device: Device, count: int = 1) -> None:
    device.modem.faults.urc_before_prompt += int(count)


def _fault_urc_before_result(simulator: Simulator, device: Device, count: int = 1) -> None:
    device.modem.faults.urc_before_result += int(count)


def _fault_urc_in_reply(simulator: Simulator, device: Device, line: str = "^RSSI: 17") -> None:
    device.modem.faults.urc_in_next_reply = line


def _fault_signal(simulator: Simulator, device: Device, rssi: int = 20) -> None:
    device.modem.identity.rssi = int(rssi)


def _fault_smsc(simulator: Simulator, device: Device, number: str = "") -> None:
    """Set the SIM's stored service centre number; empty, as on some new SIMs, makes sends fail with CMS 330."""
    device.modem.identity.smsc = str(number)


def _fault_lost_reports(simulator: Simulator, device: Device, ds: int = 2, stored: bool = False) -> None:
    """The modem accepts AT+CNMI with this <ds> but never delivers a report through it (seen in the field);
    with `stored`, reports land in its report storage without the +CDSI that should announce them."""
    device.modem.faults.reports_lost_route = int(ds)
    device.modem.faults.reports_lost_stored = stored in (True, "1", "true", "yes")


def _fault_clear(simulator: Simulator, device: Device) -> None:
    device.modem.faults = Faults()
    device.modem.pin_ok = True


FAULTS: dict[str, Callable[..., None]] = {
    "unplug": _fault_unplug, "replug": _fault_replug, "hang": _fault_hang, "unhang": _fault_unhang,
    "cms-error": _fault_cms, "registration": _fault_registration, "pin": _fault_pin,
    "garbage": _fault_garbage, "slow-prompt": _fault_slow_prompt, "no-prompt": _fault_no_prompt,
    "delay-reply": _fault_delay_reply, "urc-before-prompt": _fault_urc_before_prompt,
    "urc-before-result": _fault_urc_before_result, "urc-in-reply": _fault_urc_in_reply,
    "signal": _fault_signal, "smsc": _fault_smsc, "lost-reports": _fault_lost_reports, "clear": _fault_clear,
}
