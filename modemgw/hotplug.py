"""Hot-plug: notice serial ports appearing and disappearing under the configured globs (`gateway.ports`).

The watcher only reports; the pool decides (a modem it knows by identity gets its new port, an unknown modem gets
a worker, a port that is not a modem is left alone). With pyudev installed and netlink allowed, a kernel tty
event starts a scan at once; the globs are also re-read every `interval` seconds, which alone is enough (a
directory listing every few seconds costs nothing measurable) and is what runs in containers and tests.
"""

from __future__ import annotations

import glob
import logging
import threading
from typing import Callable

log = logging.getLogger("modemgw.hotplug")


class PortWatcher(threading.Thread):
    """Calls `appeared(path)` for each new port matching `patterns` and `vanished(path)` for each one gone.

    `appeared` returns True when the port is settled (taken, handed over, or not a modem), False to be asked
    again at the next scan (it was busy, or a modem still booting did not answer yet); after `attempts` tries
    the port is left alone until it disappears and comes back."""

    def __init__(self, patterns: list[str], appeared: Callable[[str], bool], vanished: Callable[[str], None],
                 interval: float = 2.0, attempts: int = 5):
        super().__init__(name="hotplug", daemon=True)
        self.patterns = list(patterns)
        self.appeared = appeared
        self.vanished = vanished
        self.interval = interval
        self.attempts = attempts
        self.present: set[str] = set()
        self.pending: dict[str, int] = {}   # port -> tries so far, for ports not settled yet
        self._wake = threading.Event()
        self._stopping = False
        self._observer = None
        self.scans = 0

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
        if self.is_alive():
            self.join(timeout=5)

    def rescan(self) -> None:
        """Scan now (a udev event, or a caller that knows something changed)."""
        self._wake.set()

    def run(self) -> None:
        self._observer = self._udev_observer()
        while not self._stopping:
            try:
                self.scan()
            except Exception:  # the watcher must outlive one bad port
                log.exception("port scan failed")
            self._wake.wait(self.interval)
            self._wake.clear()

    def scan(self) -> None:
        current: set[str] = set()
        for pattern in self.patterns:
            current.update(glob.glob(pattern))
        gone, new = self.present - current, current - self.present
        self.present = current
        for path in sorted(gone):
            self.pending.pop(path, None)
            log.info("port %s disappeared", path)
            self.vanished(path)
        for path in sorted(new):
            log.info("port %s appeared", path)
            self.pending[path] = 0
        for path in sorted(self.pending):
            if self._stopping:
                return
            tries = self.pending[path] + 1
            if self.appeared(path):
                del self.pending[path]
            elif tries >= self.attempts:
                log.warning("port %s: no modem answered after %d tries; left alone until it is replugged", path,
                            tries)
                del self.pending[path]
            else:
                self.pending[path] = tries
        self.scans += 1

    def _udev_observer(self):
        try:
            import pyudev
        except ImportError:
            return None
        try:
            context = pyudev.Context()
            monitor = pyudev.Monitor.from_netlink(context)
            monitor.filter_by("tty")
            observer = pyudev.MonitorObserver(monitor, callback=lambda device: self._wake.set(), name="udev")
            observer.start()
            log.info("listening for udev tty events; globs re-read every %.0f s as well", self.interval)
            return observer
        except Exception as error:  # no netlink in a container, or no permission: polling alone is fine
            log.info("udev events unavailable (%s); re-reading the port globs every %.0f s", error, self.interval)
            return None
