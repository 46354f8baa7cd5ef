"""The daemon's memory on a small appliance: fewer malloc arenas, and freed memory handed back to the system.

Measured with benchmarks/footprint.py (`--drain`): the gateway's Python heap hardly grows while it drains tens of
thousands of messages (tracemalloc: a few MB of lazily imported code and templates, then flat), yet its RSS grew
from ~53 MB idle to ~135 MB after 50,000 messages. Besides SQLite's page caches (one per thread's connection,
bounded in `store/base.py`), it was memory glibc's malloc had been given back but kept: each thread that
allocates may get an arena of its own (up to 8 per core, and the daemon has ~40 threads), each arena keeps its
high-water mark, and freed chunks in the middle of a heap are never returned. Two remedies, both no-ops where the
C library is not glibc (together with the smaller page caches: ~75 MB after 50,000 messages):

- `limit_arenas()`: at most `ARENAS` malloc arenas (what `MALLOC_ARENA_MAX=2` in the environment does, which the
  systemd unit also sets; this covers a gateway started by hand or in a container). Called before the threads
  start, as arenas already made stay.
- `trim()`: `malloc_trim(0)`, which returns the free pages of every arena to the system. The daemon runs it as a
  scheduled job (`memory`, every TRIM_SECONDS), never in the send path; it locks one arena at a time while it
  trims it, for milliseconds (15-30 ms for a fragmented 200 MB heap, measured on a loaded machine), so a send
  may rarely wait that long for a malloc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import threading

log = logging.getLogger("modemgw.memory")

ARENAS = 2          # malloc arenas: contention among our threads is low (the GIL), and each arena keeps its peak
TRIM_SECONDS = 30   # between two malloc_trim(0) runs of the daemon's scheduler
_M_ARENA_MAX = -8   # mallopt's parameter number (glibc malloc.h)

_lock = threading.Lock()
_libc: ctypes.CDLL | None = None
_looked = False


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has mallopt and malloc_trim), else None; looked up once."""
    global _libc, _looked
    with _lock:
        if not _looked:
            _looked = True
            try:
                library = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                if hasattr(library, "malloc_trim") and hasattr(library, "mallopt"):
                    library.malloc_trim.argtypes, library.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
                    library.mallopt.argtypes, library.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
                    _libc = library
            except OSError as error:  # no C library to load (a static or exotic build): nothing to tune
                log.debug("no C library for memory tuning: %s", error)
        return _libc


def limit_arenas(count: int = ARENAS) -> bool:
    """Let malloc make at most `count` arenas from now on; True when glibc took the setting."""
    library = _glibc()
    return bool(library is not None and library.mallopt(_M_ARENA_MAX, count) == 1)


def trim() -> bool:
    """Hand the free memory of every malloc arena back to the system; True when glibc released some."""
    library = _glibc()
    return bool(library is not None and library.malloc_trim(0) == 1)


__all__ = ["ARENAS", "TRIM_SECONDS", "limit_arenas", "trim"]


def settle() -> None:
    """Once start-up has made what lives as long as the process (`modemgw serve`, `demo`: `Daemon(settle=True)`,
    before the modems' ports open): collect once, then move what start-up made (modules, the web
    app, templates, settings: ~50,000 objects) out of the cyclic garbage collector's view (`gc.freeze`). A full
    collection walked all of them: a pause of ~30 ms for every thread now and then, a send or a request among them
    (measured at a million messages stored: benchmarks/million.py); now it walks what came since (~1 ms). What is
    frozen is never collected: only what lives as long as the process may be there (not a port's link, which
    goes with its modem). Not for tests that start many
    daemons in one process: each would freeze the one before it."""
    gc.collect()
    gc.freeze()

