"""The pool's alarm: one thread that wakes the pool when a scheduled send or a backed-off retry falls due."""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("modemgw.pool")


class Alarm(threading.Thread):
    """One thread that calls `ring()` at the times asked for (the earliest first): scheduled sends and retries
    wake the pool on time without anyone polling the queue."""

    def __init__(self, ring: Callable[[], None]):
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


__all__ = ["Alarm"]
