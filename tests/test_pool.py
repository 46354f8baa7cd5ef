"""The gateway core end to end: daemon, modem workers and simulated modems on real ptys and SQLite."""

import collections
import dataclasses
import os
import queue
import time

import pytest

from modemgw import config as configuration
from modemgw.daemon import Daemon
from modemgw.gateway import Gateway
from modemgw.pool import Alarm, Health, ModemConfig, Pool, PortFound, PortOwners, Stop, Wake, same_port
from modemgw.store import Store, StoreError
from tests.support import daemon_config


def make_config(tmp_path, **gateway):
    return daemon_config(tmp_path / "data", **gateway)


def counts(daemon):
    return daemon.store.status_counts()


def test_a_message_reaches_delivered(start_daemon):
    daemon = start_daemon()
    [message] = daemon.gateway.submit("Your code is 123456", "+447700901234")["messages"]
    final = daemon.wait_for_final(message["id"], 10, until="report")
    assert final["status"] == "delivered"
    [part] = final["parts"]
    sent = [record for device in daemon.simulator.devices for record in device.modem.sent]
    assert [(record.reference, record.text) for record in sent] == [(part["tp_mr"], "Your code is 123456")]
    kinds = [event["kind"] for event in daemon.store.events(message_id=message["id"])]
    assert kinds[:2] == ["message.created", "message.sending"]
    assert {"part.sent", "message.sent", "part.report", "message.delivered"} <= set(kinds)


def test_least_used_spreads_a_thousand_messages_evenly(start_daemon):
    daemon = start_daemon(modems=4, send_latency=0.02)
    numbers = [f"+4477009{n:05d}" for n in range(1000)]
    daemon.gateway.submit("Campaign", numbers, request_report=False)
    assert daemon.wait_until(lambda: counts(daemon).get("sent", 0) == 1000, 120), counts(daemon)
    per_modem = collections.Counter(row["modem_id"] for row in daemon.store.query("SELECT modem_id FROM messages"))
    assert len(per_modem) == 4
    # even within 6 %: a modem whose thread the scheduler runs late on two shared cores takes a few fewer (238 seen)
    assert all(235 <= sent <= 265 for sent in per_modem.values()), per_modem


def test_a_per_minute_limit_on_one_sim_holds(start_daemon):
    daemon = start_daemon(modems=2)
    limited = daemon.pool.workers[0]
    daemon.store.update_modem(limited.modem_id, rate_per_minute=3)
    limited.row = daemon.store.modem(limited.modem_id)
    daemon.gateway.submit("Limited", [f"+4477009{n:05d}" for n in range(30)], request_report=False)
    assert daemon.wait_until(lambda: counts(daemon).get("sent", 0) == 30, 30), counts(daemon)
    per_modem = collections.Counter(row["modem_id"] for row in daemon.store.query("SELECT modem_id FROM messages"))
    assert per_modem[limited.modem_id] <= 3
    assert per_modem[daemon.pool.workers[1].modem_id] >= 27


def test_an_unplugged_modem_fails_over_and_rejoins_when_replugged(start_daemon):
    daemon = start_daemon(modems=2, send_latency=0.05)
    sim = daemon.simulator
    first, second = daemon.pool.workers
    ids = [m["id"] for m in daemon.gateway.submit("Batch", [f"+4477009{n:05d}" for n in range(40)],
                                                  request_report=False)["messages"]]
    assert daemon.wait_until(lambda: counts(daemon).get("sent", 0) >= 6, 10)
    sim.fault(0, "unplug")
    assert daemon.wait_until(lambda: counts(daemon).get("sent", 0) == 40, 20), counts(daemon)
    assert {row["status"] for row in daemon.store.messages(ids)} == {"sent"}
    assert daemon.store.modem(first.modem_id)["state"] == "offline"
    sim.fault(0, "replug", name="ttyUSB5")  # back under another path: found again by its IMEI
    assert daemon.pool.wait_until(lambda: first.live, 15), first.snapshot()
    assert first.device.endswith("ttyUSB5")
    more = [m["id"] for m in daemon.gateway.submit("After", [f"+4477008{n:05d}" for n in range(20)],
                                                   request_report=False)["messages"]]
    assert daemon.wait_until(lambda: all(r["status"] == "sent" for r in daemon.store.messages(more)), 20)
    assert {r["modem_id"] for r in daemon.store.messages(more)} == {first.modem_id, second.modem_id}


def test_a_three_part_inbound_message_out_of_order_is_one_row_exactly_once(start_daemon):
    daemon = start_daemon(modems=1)
    sim = daemon.simulator
    body = "This reply is long enough to need three parts. " * 9
    device = sim.devices[0]
    encoded = sim.call(lambda: sim.network.inject(device.modem, "+447700900777", body, order=[3, 1, 2]))
    assert len(encoded) == 3
    assert daemon.wait_until(lambda: len(daemon.store.inbox()) == 1, 10)
    sim.call(lambda: [sim.network.offer(device.modem, "sms", item) for item in encoded])  # the network repeats
    assert daemon.wait_until(lambda: sim.call(lambda: not device.modem.storages["SM"].slots), 10)
    [row] = daemon.store.inbox()
    assert (row["sender"], row["body"], row["parts"], row["partial"]) == ("+447700900777", body, 3, 0)


def test_messages_stored_while_the_gateway_was_down_are_read_at_start_up(tmp_path):
    config = make_config(tmp_path)
    daemon = Daemon(config, simulate=1, http=False)
    from modemgw.sim import Simulator

    # The same simulated SIM before the gateway starts: inject first, then start the daemon on it.
    daemon.simulator = None
    sim = Simulator(1, link_dir=tmp_path / "early").start()
    try:
        sim.inject_sms(0, "+447700900888", "while you were out")
        config.modems = [configuration.ModemConfig(device=sim.devices[0].device, label="early")]
        daemon.simulate = 0
        daemon.start()
        try:
            assert daemon.wait_until(lambda: len(daemon.store.inbox()) == 1, 10)
            assert daemon.store.inbox()[0]["body"] == "while you were out"
            sim.wait_until(lambda: not sim.devices[0].modem.storages["SM"].slots)  # deleted after storing
        finally:
            daemon.stop()
    finally:
        sim.stop()


def test_a_permanent_error_fails_with_the_modems_reason_and_a_temporary_one_retries(start_daemon):
    daemon = start_daemon(modems=2, retry_base=0.05)
    sim = daemon.simulator
    for index in (0, 1):
        sim.fault(index, "cms-error", code=1)
    [message] = daemon.gateway.submit("x", "+447700901234")["messages"]
    final = daemon.wait_for_final(message["id"], 10)
    assert (final["status"], final["error_code"]) == ("failed", 1)
    assert "unassigned (unallocated) number" in final["error_reason"]
    for index in (0, 1):
        sim.fault(index, "clear")  # one of the two code-1 faults is still waiting for a send
        sim.fault(index, "cms-error", code=42)
    [retried] = daemon.gateway.submit("y", "+447700901235", request_report=False)["messages"]
    final = daemon.wait_for_final(retried["id"], 10)
    assert final["status"] == "sent" and final["attempts"] >= 2
    kinds = [event["kind"] for event in daemon.store.events(message_id=retried["id"])]
    assert "message.retry" in kinds


def test_outside_readers_get_read_only_modem_states_and_find_a_modem_by_any_of_its_names(start_daemon):
    daemon = start_daemon(modems=2)
    states = daemon.pool.states()
    assert [(state.live, state.attached, state.state) for state in states] == [(True, True, "ready")] * 2
    first = states[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.state = "faulted"
    for name in (first.label, first.imei, first.device, os.path.realpath(first.device)):
        assert daemon.pool.find(name).modem_id == first.modem_id, name
    assert daemon.pool.find("no such modem") is None
    assert daemon.pool.state_of(states[1].modem_id).label == states[1].label
    assert daemon.pool.state_of(10_000) is None
    assert daemon.pool.status() == [state.summary() for state in daemon.pool.states()]


def test_a_port_has_one_owner_under_any_of_its_names(tmp_path):
    port = tmp_path / "ttyUSB0"
    port.touch()
    (tmp_path / "modem").symlink_to(port)
    owners = PortOwners()
    worker, probe = object(), object()
    assert owners.claim(str(port), worker) and owners.claim(str(port), worker)  # again: still its own
    assert not owners.claim(str(tmp_path / "modem"), probe)  # the same port under its stable name
    assert owners.holder(str(tmp_path / "modem")) is worker and owners.owners() == [worker]
    owners.release(str(port))
    assert owners.holder(str(port)) is None
    assert owners.claim(str(tmp_path / "modem"), probe)
    assert same_port(str(tmp_path / "modem"), str(port)) and not same_port(str(port), str(tmp_path / "other"))


def test_the_alarm_rings_at_the_times_asked_for_the_earliest_first():
    rang = queue.Queue()
    alarm = Alarm(lambda: rang.put(time.time()))
    alarm.start()
    try:
        now = time.time()
        alarm.at(now + 3600)  # far away: must not hold up the nearer one
        alarm.at(now + 0.05)
        assert rang.get(timeout=5) >= now + 0.05
        assert rang.empty()
    finally:
        alarm.stop()
    assert not alarm.is_alive()


class Refusing:
    """An outcome the database refuses `times` times, then records."""

    def __init__(self, times, done):
        self.times, self.done = times, done

    def __call__(self):
        if self.times:
            self.times -= 1
            raise StoreError("database is locked", "locked")
        self.done.append(self)


def test_outcomes_the_database_refuses_are_kept_in_order_and_replayed(tmp_path):
    store = Store(tmp_path / "modemgw.db")
    try:
        worker = Pool(Gateway(store), store, [ModemConfig(device=str(tmp_path / "ttyUSB0"))]).workers[0]
        done = []
        first, second = Refusing(2, done), Refusing(0, done)
        worker._durably("the first", first)
        worker._durably("the second", second)  # kept behind the first, not recorded out of order
        assert done == [] and not worker._settle()
        assert worker._settle() and done == [first, second] and not worker._unsettled
    finally:
        store.close()


def test_a_port_found_or_a_stop_ends_a_backoff_wait_and_other_tasks_are_kept_for_later(tmp_path):
    store = Store(tmp_path / "modemgw.db")
    try:
        worker = Pool(Gateway(store), store, [ModemConfig(device=str(tmp_path / "ttyUSB0"))]).workers[0]
        worker._backoff = 8.0
        for task in (Health(), Wake(), PortFound()):
            worker.tasks.put(task)
        started = time.monotonic()
        worker._wait(30)
        assert time.monotonic() - started < 5
        assert list(worker._deferred) == [Health(), Wake()] and worker._backoff == worker.pool.settings.reconnect_min
        worker.tasks.put(Stop())
        worker._wait(30)
        assert worker._stopping
    finally:
        store.close()
