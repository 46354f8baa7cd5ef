"""systemd integration without a dependency: sd_notify over $NOTIFY_SOCKET (READY, STATUS, WATCHDOG).

The unit (deploy/raspberrypi/modemgw.service) is Type=notify with WatchdogSec: the daemon says READY=1 once it
serves, and WATCHDOG=1 every half interval only while nothing is stuck (Daemon.health), so systemd restarts a
gateway that hangs instead of leaving the queue unattended. Outside systemd every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

log = logging.getLogger("modemgw.systemd")


def notify(*states: str) -> bool:
    """Send `READY=1`, `STATUS=...`, `WATCHDOG=1`, ... to systemd; False when not run by systemd (or it fails)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(states).encode())
        return True
    except OSError as error:
        log.warning("cannot notify systemd at %s: %s", address, error)
        return False


def watchdog_interval() -> float | None:
    """Seconds between the pings systemd expects ($WATCHDOG_USEC), or None without a watchdog for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1e6


class Watchdog(threading.Thread):
    """Pings systemd every half interval while `healthy()` returns no problems; logs what is stuck otherwise."""

    def __init__(self, interval: float, healthy, status=None):
        super().__init__(name="watchdog", daemon=True)
        self.interval = interval
        self.healthy = healthy
        self.status = status
        self._halt = threading.Event()
        self._reported: list[str] = []
        self.pings = 0

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        while not self._halt.wait(self.interval / 2):
            try:
                problems = self.healthy()
            except Exception as error:  # noqa: BLE001 - the check itself failing is a problem, and must not end this thread
                problems = [f"health check failed: {error}"]
            if problems != self._reported:  # said once, not every half interval
                if problems:
                    log.error("not feeding the watchdog (systemd will restart us): stuck: %s", ", ".join(problems))
                else:
                    log.info("all well again; feeding the watchdog")
                self._reported = problems
            if problems:
                continue
            states = ["WATCHDOG=1"]
            if self.status:
                try:
                    states.append(f"STATUS={self.status()}")
                except Exception:  # noqa: BLE001, S110 - the status line is a nicety; the ping is what matters
                    pass
            if notify(*states):
                self.pings += 1
