"""Hot-plug: notice serial ports appearing and disappearing under the configured globs (`gateway.ports`).

The watcher only reports; the pool decides (a modem it knows by identity gets its new port, an unknown modem gets
a worker, a port that is not a modem is left alone). With pyudev installed and netlink allowed, a kernel tty
event starts a scan at once; the globs are also re-read every `interval` seconds, which alone is enough (a
directory listing every few seconds costs nothing measurable) and is what runs in containers and tests.
"""

from __future__ import annotations

import glob
import logging
import os
import stat
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger("modemgw.hotplug")


class PortWatcher(threading.Thread):
    """Calls `appeared(path)` for each new port matching `patterns` and `vanished(path)` for each one gone.

    `appeared` returns True when the port is settled (taken, handed over, or not a modem), False to be asked
    again at the next scan (a modem still booting did not answer yet), None when it was busy (asked again, not
    counted as a try); after `attempts` tries the port is left alone until it disappears and comes back (or
    `recheck` asks for it). A port counts as new when its node was re-created, even under the same name.

    The ports due in one scan are asked about concurrently, up to `probes` at a time (a probe of a silent port
    takes seconds), so `appeared` must be safe to call from several threads at once. The scan waits for all
    their answers and keeps the count of tries on its own thread."""

    def __init__(self, patterns: list[str], appeared: Callable[[str], bool | None], vanished: Callable[[str], None],
                 interval: float = 2.0, attempts: int = 15, probes: int = 8):
        super().__init__(name="hotplug", daemon=True)
        self.patterns = list(patterns)
        self.appeared = appeared
        self.vanished = vanished
        self.interval = interval
        self.attempts = attempts
        self.probes = max(1, probes)
        self._executor: ThreadPoolExecutor | None = None  # made at the first scan with more than one port due
        self.present: dict[str, tuple] = {}  # port -> signature of its node
        self.pending: dict[str, int] = {}   # port -> tries so far, for ports not settled yet
        self._recheck: set[str] = set()
        self._lock = threading.Lock()
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
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def rescan(self) -> None:
        """Scan now (a udev event, or a caller that knows something changed)."""
        self._wake.set()

    def recheck(self, path: str) -> None:
        """Ask about `path` again at the next scan (a worker found another modem there and let it go)."""
        with self._lock:
            self._recheck.add(path)
        self._wake.set()

    def run(self) -> None:
        self._observer = self._udev_observer()
        while not self._stopping:
            self._wake.clear()  # before the scan: a wake-up during it is not lost
            try:
                self.scan()
            except Exception:  # the watcher must outlive one bad port
                log.exception("port scan failed")
            self._wake.wait(self.interval)

    def scan(self) -> None:
        current: dict[str, tuple] = {}
        for pattern in self.patterns:
            for path in glob.glob(pattern):
                if not _never_a_port(path):
                    current[path] = _signature(path)
        gone = [path for path in self.present if current.get(path) != self.present[path]]
        new = [path for path in current if self.present.get(path) != current[path]]
        self.present = current
        for path in sorted(gone):
            self.pending.pop(path, None)
            log.info("port %s disappeared", path)
            self.vanished(path)
        for path in sorted(new):
            log.info("port %s appeared", path)
            self.pending[path] = 0
        with self._lock:
            again, self._recheck = self._recheck, set()
        for path in again:
            if path in current:
                self.pending.setdefault(path, 0)
        for path, settled in self._ask(sorted(self.pending)):
            if settled:
                del self.pending[path]
            elif settled is None:
                continue  # busy: asked again, not a try
            elif self.pending[path] + 1 >= self.attempts:
                log.warning("port %s: no modem answered after %d tries; left alone until it is replugged", path,
                            self.attempts)
                del self.pending[path]
            else:
                self.pending[path] += 1
        self.scans += 1

    def _ask(self, paths: list[str]) -> list[tuple[str, bool | None]]:
        """`appeared` for each path, up to `probes` at a time. Paths not asked because the watcher is stopping
        are left out (no try counted)."""
        if len(paths) <= 1 or self.probes == 1:
            answers = []
            for path in paths:
                if self._stopping:
                    break
                answers.append((path, self._appeared(path)))
            return answers
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.probes, thread_name_prefix="probe")
        futures: list[tuple[str, Future]] = [(path, self._executor.submit(self._appeared, path)) for path in paths]
        answers = []
        for path, future in futures:
            if self._stopping:
                future.cancel()  # not started yet: never asked
            if not future.cancelled():
                answers.append((path, future.result()))
        return answers

    def _appeared(self, path: str) -> bool | None:
        """`appeared(path)`, on the scan's thread or a probe thread; an exception counts as a try."""
        if self._stopping:
            return None  # not asked: no try counted
        try:
            return self.appeared(path)
        except Exception:  # the other ports are still looked at
            log.exception("port %s: probing failed", path)
            return False

    def _udev_observer(self):
        try:
            import pyudev
        except ImportError:
            return None
        try:
            context = pyudev.Context()
            monitor = pyudev.Monitor.from_netlink(context)
            monitor.filter_by("tty")
            observer = pyudev.MonitorObserver(monitor, callback=lambda device: self.rescan(), name="udev")
            observer.start()
            log.info("listening for udev tty events; globs re-read every %g s as well", self.interval)
            return observer
        except Exception as error:  # noqa: BLE001 - no netlink in a container, or no permission: polling alone is fine
            log.info("udev events unavailable (%s); re-reading the port globs every %g s", error, self.interval)
            return None


def is_serial_node(path: str) -> bool:
    """Whether `path` (or what it links to) is a character device: a port worth probing, not a socket or a file
    that a glob also matched."""
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


def _never_a_port(path: str) -> bool:
    """Whether `path` is something a glob matched that no modem can be: a socket (the simulator's control socket
    beside its links), a FIFO or a directory. Ignored without a word; a character device is a port, and so is
    a path that is gone meanwhile or a plain file (the pool looks at those and leaves them alone)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISSOCK(mode) or stat.S_ISFIFO(mode) or stat.S_ISDIR(mode)


def _signature(path: str) -> tuple:
    """What identifies a port's node: the link itself and the device it leads to (re-created on a replug)."""
    try:
        link = os.lstat(path)
        node = os.stat(path)
    except OSError:
        return (None,)
    return (link.st_ino, link.st_ctime_ns, node.st_rdev, node.st_ino, node.st_ctime_ns)
