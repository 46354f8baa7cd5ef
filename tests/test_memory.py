"""The daemon's memory stays bounded (issue #19, item 4; benchmarks/footprint.py measures the RSS itself).

What grew while the gateway drained 50,000 messages was not Python objects but memory below them: SQLite's page
cache (one per thread's connection, 2 MiB each by default) and glibc's malloc arenas (one per thread, each
keeping its high-water mark). These tests hold the remedies in place, without timing or RSS thresholds: every
connection's cache is bounded, the daemon trims malloc's free memory on a schedule, and the Python heap does not
grow with the number of messages sent (no per-message cache left untrimmed).
"""

from __future__ import annotations

import gc
import platform
import threading
import tracemalloc

import pytest

from modemgw import memory
from modemgw.store import Store

GLIBC = platform.libc_ver()[0] == "glibc"
MAX_CACHE_KIB = 1024  # the most a connection's page cache may take; SQLite's default was 2048


def cache_kib(conn) -> float:
    """A connection's page-cache limit in KiB (negative `cache_size` is KiB, positive is pages)."""
    size = conn.execute("PRAGMA cache_size").fetchone()[0]
    return -size if size < 0 else size * conn.execute("PRAGMA page_size").fetchone()[0] / 1024


def test_every_connection_has_a_bounded_page_cache(tmp_path):
    store = Store(tmp_path / "modemgw.db")
    sizes = [cache_kib(store.connection())]

    def other_thread() -> None:  # each thread opens its own connection: each must be bounded
        sizes.append(cache_kib(store.connection()))
        store.close()

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    store.close()
    assert len(sizes) == 2 and all(0 < size <= MAX_CACHE_KIB for size in sizes), sizes


@pytest.mark.skipif(not GLIBC, reason="malloc tuning is glibc's (a no-op elsewhere)")
def test_malloc_is_tuned_on_glibc():
    assert memory.limit_arenas() is True  # mallopt(M_ARENA_MAX) accepted
    memory.trim()  # True when it released something: either way it must not fail
    assert memory._glibc() is not None


def test_the_daemon_trims_freed_memory_on_a_schedule(start_daemon):
    daemon = start_daemon(modems=0)
    job = daemon.scheduler.get_job("memory")
    assert job is not None, [job.id for job in daemon.scheduler.get_jobs()]
    assert job.trigger.interval.total_seconds() == memory.TRIM_SECONDS
    job.func()  # the guarded job runs (and raises nothing) whatever the C library


class Delivered:
    """Counts `message.delivered` events (a gateway listener); `wait_for(n)` until n have come."""

    def __init__(self) -> None:
        self.count = 0
        self.changed = threading.Condition()

    def __call__(self, event: str, data: dict) -> None:
        if event == "message.delivered":
            with self.changed:
                self.count += 1
                self.changed.notify_all()

    def wait_for(self, count: int, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.count >= count, timeout)


def drain(daemon, delivered: Delivered, count: int, start: int) -> None:
    """Submit `count` messages at once and wait until every one is delivered (status report included)."""
    daemon.gateway.submit("Memory test", [f"+4477009{10000 + n:05d}" for n in range(start, start + count)])
    assert delivered.wait_for(start + count, 120), (delivered.count, daemon.store.status_counts())


def gateway_heap() -> int:
    """Bytes of the traced Python heap, less what the simulated modems keep (every command and PDU they were sent,
    for tests: on an appliance they are not in the gateway's process)."""
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, "*/modemgw/sim/*",
                                                                             all_frames=True)])
    return sum(stat.size for stat in snapshot.statistics("filename"))


def test_the_python_heap_does_not_grow_with_the_messages_sent(start_daemon):
    """After a first batch (lazy imports, caches of the SQL statements and of the templates fill), a second batch
    of the same size leaves the traced Python heap where it was, within far less than a dict entry per message:
    a cache keyed by message id that is never trimmed (in the pool, the gateway, the webhooks) would show here."""
    daemon = start_daemon(modems=4, send_latency=0, report_delay=0.01)
    delivered = Delivered()
    daemon.gateway.subscribe(delivered)
    count = 600
    tracemalloc.start(64)  # deep enough to see the simulator's thread at the root of its allocations
    try:
        drain(daemon, delivered, count, 0)
        before = gateway_heap()
        drain(daemon, delivered, count, count)
        grown = gateway_heap() - before
    finally:
        tracemalloc.stop()
    # A dict keyed by message id (a listener keeping {id: event}) made it grow ~150 KB here, a clean run ~50 KB:
    # the send-rate window (a float per send in the last minute) and what does not grow with the count.
    assert grown < 100_000, f"the Python heap grew {grown} bytes over {count} messages: what keeps them?"


def test_a_simulated_modem_keeps_its_last_records_only():
    """A demo runs for weeks on the simulated modems: what they transmitted and heard is kept, bounded."""
    from modemgw.sim.interpreter import KEPT_RECORDS, _bound

    records = list(range(2 * KEPT_RECORDS))
    _bound(records)
    assert len(records) == 2 * KEPT_RECORDS  # within the bound: kept whole
    records.append(-1)
    _bound(records)
    assert len(records) == KEPT_RECORDS and records[-1] == -1 and records[0] == KEPT_RECORDS + 1
