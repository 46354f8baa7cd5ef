"""An idle gateway writes nothing to its data directory (issue #19: SD cards wear out with writes).

A real daemon with 4 simulated modems runs its periodic work (health checks, expiry, report closing, scheduled
release, inbound flush, retention, hot-plug scans) many times over at very short intervals, while a monitor polls
/health and /metrics; once it has settled, no file of its data directory changes and SQLite's `data_version`, read
from a connection of our own, stays the same. A health state that did change (signal moved a bar, registration lost)
is written; a signal wiggle of a CSQ step or two is not.
"""

from __future__ import annotations

import contextlib
import sqlite3
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from modemgw.daemon import Daemon
from modemgw.pool.state import LAST_SEEN_EVERY, SIGNAL_STEP_DB, Observed, health_changes
from tests.support import daemon_config, eventually

# The scheduled jobs run at very short intervals; the pruning pass ("retention") separately, below: when it finds
# nothing to do it still truncates the (empty) write-ahead log, which touches the file each time.
JOBS = ("health", "expire", "release", "reports", "inbound", "rules-retention")
INTERVAL = 0.1  # seconds between runs of every scheduled job (30 s to a day in service)
ROUNDS = 5       # each job and each modem's health check runs at least this often in the idle window


class Watch:
    """What of the data directory a write would change: SQLite's data_version (seen from our own connection: it
    changes when any other connection commits) and every file's size and modification time."""

    def __init__(self, data: Path):
        self.data = data
        self.db = sqlite3.connect(data / "modemgw.db", isolation_level=None)

    def version(self) -> int:
        return self.db.execute("PRAGMA data_version").fetchone()[0]

    def files(self) -> dict[str, tuple[int, int]]:
        found = {}
        for path in sorted(self.data.rglob("*")):
            try:
                status = path.lstat()
            except FileNotFoundError:  # gone between listing and looking: shows as a difference
                continue
            found[str(path.relative_to(self.data))] = (status.st_size, status.st_mtime_ns)
        return found

    def row(self, modem_id: int) -> dict:
        self.db.row_factory = sqlite3.Row
        return dict(self.db.execute("SELECT * FROM modems WHERE id = ?", (modem_id,)).fetchone())


@pytest.fixture
def idle_daemon(tmp_path):
    with running(tmp_path, JOBS) as daemon:
        yield daemon


@contextlib.contextmanager
def running(tmp_path: Path, jobs: tuple[str, ...]) -> Iterator[Daemon]:
    """A daemon on 4 simulated modems, ready, with `jobs` (and the hot-plug scan) every INTERVAL seconds."""
    config = daemon_config(tmp_path / "data")
    config.pool.hotplug_interval = INTERVAL
    daemon = Daemon(config, simulate=4, sim_send_latency=0.01, sim_report_delay=0.02, http=True,
                    intervals=dict.fromkeys(jobs, INTERVAL)).start()
    try:
        assert daemon.pool.wait_ready(10), daemon.pool.status()
        yield daemon
    finally:
        daemon.stop()


def health_checks(daemon: Daemon) -> dict[int, float]:
    """Per modem row, when its last health check heard it (the pool's live state)."""
    return {state.modem_id: state.last_seen or 0.0 for state in daemon.pool.states() if state.modem_id is not None}


def job_runs_after(daemon: Daemon, rounds: int):
    """A predicate: every shortened scheduled job has run at least `rounds` more times than when this was called."""
    jobs = [name for name, seconds in daemon.intervals.items() if seconds == INTERVAL]
    start = {name: daemon.scheduler.get_job(name).next_run_time for name in jobs}

    def done() -> bool:
        return all((daemon.scheduler.get_job(name).next_run_time - start[name]).total_seconds()
                   >= rounds * INTERVAL * 0.99 for name in jobs)
    return done


def checked_again(daemon: Daemon, rounds: int):
    """A predicate: every modem's health check has run `rounds` more times than when this was called."""
    seen = [health_checks(daemon)]

    def done() -> bool:
        now = health_checks(daemon)
        if all(now[modem] > seen[-1][modem] for modem in seen[0]):
            seen.append(now)
        return len(seen) > rounds
    return done


def settle(daemon: Daemon, watch: Watch) -> None:
    """Until a round of health checks and jobs changed nothing: what follows activity once (the first health checks
    writing what they found, a checkpoint moving the write-ahead log into the database) is over by then. A gateway
    that writes on every round never settles, and fails here."""
    for _round in range(10):
        version, files = watch.version(), watch.files()
        assert eventually(checked_again(daemon, 2), 20), daemon.pool.status()
        assert eventually(job_runs_after(daemon, 2), 20)
        if watch.version() == version and watch.files() == files:
            return
    pytest.fail("the data directory changed in each of 10 rounds of periodic work with nothing to do")


def poll_monitoring(daemon: Daemon) -> None:
    for path in ("health", "metrics"):
        with urllib.request.urlopen(f"{daemon.url}{path}", timeout=10) as response:
            assert response.status == 200
            response.read()


def test_an_idle_gateway_writes_nothing_and_a_changed_health_state_is_written(idle_daemon):
    daemon = idle_daemon
    modems = [state.modem_id for state in daemon.pool.states()]
    assert len(modems) == 4 and None not in modems
    sent = daemon.gateway.submit("before the idle time", "+447700900123")["messages"][0]["id"]  # a message, its report
    assert daemon.wait_for_final(sent, 10, until="report")["status"] == "delivered"
    watch = Watch(daemon.data_dir)
    settle(daemon, watch)
    version, files = watch.version(), watch.files()
    assert "modemgw.db" in files

    health, jobs = checked_again(daemon, ROUNDS), job_runs_after(daemon, ROUNDS)

    def idle_long_enough() -> bool:
        poll_monitoring(daemon)
        return health() and jobs()
    assert eventually(idle_long_enough, 30)
    assert watch.version() == version, "a commit while idle"
    assert watch.files() == files, "a file of the data directory changed while idle"

    # a wiggle of one CSQ step (2 dB) is kept in memory only: the live state shows it, the row does not change
    rssi = daemon.simulator.modem(0).modem.identity.rssi
    stored = watch.row(modems[0])["signal_dbm"]
    daemon.simulator.fault(0, "signal", rssi=rssi + 1)
    assert eventually(lambda: daemon.pool.state_of(modems[0]).signal_dbm == stored + 2, 10)
    assert watch.version() == version and watch.files() == files
    assert watch.row(modems[0])["signal_dbm"] == stored
    shown = daemon.gateway.modem_now(modems[0])  # what the UI, the API and /metrics show: the live state
    assert shown["signal_dbm"] == stored + 2 and shown["last_seen"] > watch.row(modems[0])["last_seen"]

    # the signal falls two bars (20 dB): written, with when it was seen
    daemon.simulator.fault(0, "signal", rssi=rssi - 10)
    assert eventually(lambda: watch.row(modems[0])["signal_dbm"] == stored - 20, 10)
    assert watch.version() != version
    assert watch.row(modems[0])["last_seen"] >= health_checks(daemon)[modems[0]] - LAST_SEEN_EVERY

    # registration lost: written (and the modem searches); back again: written again
    before = watch.row(modems[1])["registration"]
    daemon.simulator.fault(1, "registration", lost=True)
    assert eventually(lambda: watch.row(modems[1])["registration"] != before, 10)
    assert watch.row(modems[1])["state"] == "searching"  # in the same commit: never the one without the other
    daemon.simulator.fault(1, "registration", lost=False)
    assert eventually(lambda: watch.row(modems[1])["registration"] == before, 15)
    assert eventually(lambda: daemon.pool.state_of(modems[1]).live, 10)

    # and quiet again once that is written
    settle(daemon, watch)
    version, files = watch.version(), watch.files()
    assert eventually(checked_again(daemon, 2), 20)
    assert watch.version() == version and watch.files() == files


def test_a_pruning_pass_with_nothing_to_prune_writes_nothing(tmp_path):
    with running(tmp_path, ("retention",)) as daemon:
        watch = Watch(daemon.data_dir)
        assert eventually(job_runs_after(daemon, 3), 20)  # what starting wrote is checkpointed by now
        version, files = watch.version(), watch.files()
        assert eventually(job_runs_after(daemon, 3), 20)
        assert watch.version() == version and watch.files() == files


@pytest.mark.parametrize(("stored", "seen", "written"), [
    ({"signal_dbm": -73, "registration": "home", "operator": "Op", "last_seen": 1000.0},
     Observed(-73, "home", "Op", 1030.0), False),                            # nothing changed
    ({"signal_dbm": -73, "registration": "home", "operator": "Op", "last_seen": 1000.0},
     Observed(-73 - SIGNAL_STEP_DB + 2, "home", "Op", 1030.0), False),       # a wiggle
    ({"signal_dbm": -73, "registration": "home", "operator": "Op", "last_seen": 1000.0},
     Observed(-73 + SIGNAL_STEP_DB, "home", "Op", 1030.0), True),            # a real change
    ({"signal_dbm": -73, "registration": "home", "operator": "Op", "last_seen": 1000.0},
     Observed(None, "home", "Op", 1030.0), True),                            # no signal any more
    ({"signal_dbm": None, "registration": "home", "operator": "Op", "last_seen": 1000.0},
     Observed(-99, "home", "Op", 1030.0), True),                             # a signal again
    ({"signal_dbm": -73, "registration": "home", "operator": "Op", "last_seen": 1000.0},
     Observed(-73, "roaming", "Op", 1030.0), True),                          # registration
    ({"signal_dbm": -73, "registration": "home", "operator": "Op", "last_seen": 1000.0},
     Observed(-73, "home", "Other", 1030.0), True),                          # operator
    ({"signal_dbm": -73, "registration": "home", "operator": "Op", "last_seen": 1000.0},
     Observed(-73, "home", "Op", 1000.0 + LAST_SEEN_EVERY), True),           # a coarse last_seen
    ({}, Observed(-73, "home", "Op", 1030.0), True),                         # a row never checked
])
def test_what_a_health_check_writes(stored, seen, written):
    changes = health_changes(stored, seen)
    if written:
        assert changes == {"signal_dbm": seen.signal_dbm, "registration": seen.registration,
                           "operator": seen.operator, "last_seen": seen.at}
    else:
        assert changes == {}


def test_a_modem_update_that_changes_nothing_writes_nothing(tmp_path):
    from modemgw.store import Store

    store = Store(tmp_path / "modemgw.db")
    row = store.attach_modem("356938035643809", "8944500102198304826", device="/dev/ttyUSB0", label="one")
    watch = Watch(tmp_path)
    version = watch.version()
    assert store.update_modem(row["id"], label="one", enabled=1, operator=row["operator"]) == row
    assert watch.version() == version
    assert store.update_modem(row["id"], label="two")["label"] == "two"
    assert watch.version() != version
    with pytest.raises(ValueError, match="unknown modem fields: colour"):
        store.update_modem(row["id"], label="two", colour="red")
