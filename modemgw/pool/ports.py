"""One owner per serial port, however it is named (a udev symlink, the tty it points to): the register of who
holds which port (a worker, or the watcher probing it), and what counts as the same port."""

from __future__ import annotations

import os
import threading


class PortOwners:
    """Who holds each port. Thread-safe: workers claim and release ports, the watcher's probes claim them too."""

    def __init__(self) -> None:
        self._owners: dict[str, object] = {}
        self._lock = threading.Lock()

    def claim(self, device: str, owner: object) -> bool:
        """Take `device` for `owner`: False when another owner holds it (under this name or another)."""
        real = os.path.realpath(device)
        with self._lock:
            for path, holder in self._owners.items():
                if holder is not owner and (path == device or os.path.realpath(path) == real):
                    return False
            self._owners[device] = owner
            return True

    def release(self, device: str) -> None:
        with self._lock:
            self._owners.pop(device, None)

    def holder(self, device: str) -> object | None:
        """Who holds `device` (under this name or another), or None."""
        real = os.path.realpath(device)
        with self._lock:
            for path, holder in self._owners.items():
                if path == device or os.path.realpath(path) == real:
                    return holder
        return None

    def owners(self) -> list[object]:
        """Everyone holding a port now."""
        with self._lock:
            return list(self._owners.values())


def same_port(first: str, second: str) -> bool:
    """Whether two paths name one port (a symlink and its tty, or the same name)."""
    return first == second or os.path.realpath(first) == os.path.realpath(second)


__all__ = ["PortOwners", "same_port"]
