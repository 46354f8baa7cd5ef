"""The daemon's memory stays bounded (issue #19, item 4; benchmarks/footprint.py measures the RSS itself).

What grew while the gateway drained 50,000 messages was not Python objects but memory below them: SQLite's page
cache (one per thread's connection, 2 MiB each by default) and glibc's malloc arenas (one per thread, each
keeping its high-water mark). These tests hold the remedies in place, without timing or RSS thresholds: every
connection's cache is bounded, the daemon trims malloc's free memory on a schedule, and the simulated modems keep
a bounded history. (A test that the traced Python heap does not grow over a second batch of messages was dropped:
a planted leak of a dict entry per message grew it 150 KB, a clean run 50 KB, and one clean run under parallel
load 443 KB; benchmarks/footprint.py --drain measures it instead.)
"""

from __future__ import annotations

import platform
import threading

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


def test_a_simulated_modem_keeps_its_last_records_only():
    """A demo runs for weeks on the simulated modems: what they transmitted and heard is kept, bounded."""
    from modemgw.sim.interpreter import KEPT_RECORDS, _bound

    records = list(range(2 * KEPT_RECORDS))
    _bound(records)
    assert len(records) == 2 * KEPT_RECORDS  # within the bound: kept whole
    records.append(-1)
    _bound(records)
    assert len(records) == KEPT_RECORDS and records[-1] == -1 and records[0] == KEPT_RECORDS + 1


def test_the_modem_workers_share_one_connection(start_daemon):
    """Each connection keeps the statements it compiled (~380 KiB for a worker's): the workers share one."""
    from concurrent.futures import Future

    from modemgw.pool.tasks import Call

    daemon = start_daemon(modems=2)
    store = daemon.store

    def on_the_workers_thread(modem) -> int:
        with store._sharing():
            return id(store.connection())

    seen = []
    for worker in daemon.pool.workers:
        done: Future = Future()
        worker.tasks.put(Call(on_the_workers_thread, done))
        seen.append(done.result(10))
    assert seen[0] == seen[1] and id(store.connection()) != seen[0]  # this thread's: its own


def test_threads_that_share_the_connection_take_turns(tmp_path):
    """Reads and transactions of threads sharing the connection never mix: each holds it for its length (a read
    in a thread's own transaction sees its writes), and every write commits."""
    store = Store(tmp_path / "modemgw.db")
    errors: list[BaseException] = []

    def work(number: int) -> None:
        store.share_connection()
        try:
            for step in range(40):
                with store.transaction(durable=step % 10 == 0) as conn:
                    conn.execute("INSERT INTO settings (name, value) VALUES (?, ?)", (f"t{number}-{step}", "x"))
                    assert store.query("SELECT value FROM settings WHERE name = ?", (f"t{number}-{step}",))
                    if step == 5:
                        raise ValueError("rolled back")
        except ValueError:
            pass
        except BaseException as error:  # reported below
            errors.append(error)
        try:
            for step in range(6, 40):
                with store.transaction() as conn:
                    conn.execute("INSERT INTO settings (name, value) VALUES (?, ?)", (f"u{number}-{step}", "y"))
                assert store.query_dicts("SELECT COUNT(*) AS n FROM settings")[0]["n"] >= step - 6
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(number,)) for number in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    counts = store.query("SELECT SUM(name LIKE 't%'), SUM(name LIKE 'u%') FROM settings")[0]
    assert tuple(counts) == (6 * 5, 6 * 34)  # steps 0-4 of each thread, then 6-39; step 5 rolled back
    store.close()


def test_settling_moves_what_start_up_made_out_of_the_collectors_way():
    """`memory.settle()` (run by `modemgw serve` and `demo` once started) freezes what exists, so that a full
    collection no longer walks it; in a process of its own (freezing this one would keep the tests' garbage)."""
    import subprocess
    import sys

    script = ("import gc, flask; from modemgw import memory; before = len(gc.get_objects()); memory.settle(); "
              "print(before, len(gc.get_objects()), gc.get_freeze_count())")
    before, after, frozen = map(int, subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                                    check=True, timeout=60).stdout.split())
    assert before > 10_000 and frozen >= before // 2 and after < 100


def test_threads_that_use_the_database_now_and_then_share_a_few_connections(tmp_path):
    """`Store.lent()`: a thread borrows a pooled connection for a block and hands it back; the next borrower, on
    another thread, gets the same warm one; at most POOL_IDLE stay idle; a thread with its own keeps it."""
    from modemgw.store.base import POOL_IDLE

    store = Store(tmp_path / "modemgw.db")
    used: list = []

    def borrow(hold: threading.Event | None = None, ready: threading.Barrier | None = None) -> None:
        with store.lent():
            used.append(store.connection())
            store.query("SELECT COUNT(*) FROM messages")
            if ready is not None:
                ready.wait(10)
                hold.wait(10)

    for _ in range(3):  # one after another: the same connection each time
        thread = threading.Thread(target=borrow)
        thread.start()
        thread.join()
    assert len(used) == 3 and used[0] is used[1] is used[2]
    hold, ready = threading.Event(), threading.Barrier(POOL_IDLE + 3)
    threads = [threading.Thread(target=borrow, args=(hold, ready)) for _ in range(POOL_IDLE + 2)]
    for thread in threads:
        thread.start()
    ready.wait(10)  # all borrowing at once: each its own connection
    assert len({id(conn) for conn in used[3:]}) == POOL_IDLE + 2
    hold.set()
    for thread in threads:
        thread.join()
    assert len(store._idle) == POOL_IDLE  # the others were closed
    mine = store.connection()
    with store.lent():
        assert store.connection() is mine  # a thread with its own connection keeps it
    store.close()
    assert store._idle == []


def test_the_gateways_http_threads_keep_no_connection_between_requests(start_daemon):
    """Six waitress threads served 24 requests at once: afterwards at most POOL_IDLE connections are left of theirs
    (the open connections of this process counted before and after; the file's descriptors say nothing: SQLite
    keeps a closed connection's open while another connection of the process holds a lock)."""
    import gc
    import sqlite3
    import urllib.error
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    from modemgw.store.base import POOL_IDLE

    daemon = start_daemon(modems=0, http=True)

    def open_connections() -> int:
        gc.collect()
        count = 0
        for thing in gc.get_objects():
            if isinstance(thing, sqlite3.Connection):
                try:
                    thing.total_changes  # a closed connection raises
                except sqlite3.ProgrammingError:
                    continue
                count += 1
        return count

    def health(_) -> int:  # reads the database; 503 with no modem online
        try:
            return urllib.request.urlopen(daemon.url + "health", timeout=10).status
        except urllib.error.HTTPError as error:
            return error.code

    before = open_connections()
    with ThreadPoolExecutor(8) as requests:
        answers = list(requests.map(health, range(24)))
    assert answers == [503] * 24
    # a request hands its connection back once waitress has written the answer: a moment after the client read it
    assert daemon.wait_until(lambda: open_connections() <= before + POOL_IDLE, 5), open_connections() - before
