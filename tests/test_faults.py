"""Faults that must never strand a message, send one twice unflagged, or keep a modem away: unplug storms, network
outages, refusals that are the message's (not the modem's), a routed retry, a silent modem at shutdown.

The simulated modems run as their own `modemgw sim` process: what it transmitted (its list of PDUs, read over its
control socket) is the ground truth a message's `possible_duplicate` flag is checked against. The gateway runs
in this process (its logs are checked with caplog); `modemgw serve` runs as a subprocess where a signal is sent.
"""

import collections
import logging
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from modemgw import control
from modemgw.daemon import Daemon
from tests.support import daemon_config

MODEMGW = str(Path(sys.executable).parent / "modemgw")


class SimProcess:
    """`modemgw sim` in its own process, driven through its control socket."""

    def __init__(self, link_dir: Path, count: int, send_latency: float, report_delay: float = 600):
        self.link_dir = link_dir
        self.count = count
        self.popen = subprocess.Popen([MODEMGW, "sim", "--count", str(count), "--link-dir", str(link_dir),
                                       "--send-latency", str(send_latency), "--report-delay", str(report_delay)],
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in self.popen.stdout], daemon=True).start()
        while "ready" not in lines.get(timeout=30):
            pass

    def request(self, **request) -> dict:
        answer = control.request(self.link_dir / "control.sock", request, timeout=10)
        assert answer["ok"], answer
        return answer

    def fault(self, modem: str, kind: str, **params) -> None:
        self.request(command="fault", modem=modem, kind=kind, **params)

    def transmitted(self) -> collections.Counter:
        """How often each text went out, over all modems."""
        counter: collections.Counter = collections.Counter()
        for n in range(self.count):
            counter.update(record["text"] for record in self.request(command="sent", modem=f"sim{n}")["sent"])
        return counter

    def commands(self, modem: str) -> list[str]:
        return self.request(command="commands", modem=modem)["commands"]

    def stop(self) -> None:
        self.popen.send_signal(signal.SIGTERM)
        self.popen.wait(timeout=10)
        self.popen.stdout.close()


@pytest.fixture
def sim_process(tmp_path):
    started = []

    def start(count=4, send_latency=0.03, report_delay=600):
        sim = SimProcess(tmp_path / "usb", count, send_latency, report_delay)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


def config_for(tmp_path, sim, **gateway):
    config = daemon_config(tmp_path / "data", **gateway)
    config.modems = [configuration_modem(sim.link_dir / f"sim{n}", f"m{n}") for n in range(sim.count)]
    config.pool.ports = [str(sim.link_dir / "sim*")]
    config.pool.hotplug_interval = 0.2
    config.pool.network_check_min, config.pool.network_check_max = 0.1, 0.5
    return config


def configuration_modem(device, label):
    from modemgw.pool import ModemConfig

    return ModemConfig(device=str(device), label=label)


@pytest.fixture
def gateway(tmp_path):
    running = []

    def start(sim, pool=None, **gateway):
        config = config_for(tmp_path, sim, **gateway)
        for key, value in (pool or {}).items():
            setattr(config.pool, key, value)
        daemon = Daemon(config, http=False).start()
        running.append(daemon)
        assert daemon.pool.wait_ready(15), daemon.pool.status()
        return daemon

    yield start
    for daemon in running:
        daemon.stop()


def submit_batch(daemon, count, prefix="+4477009"):
    recipients = [{"to": f"{prefix}{n:05d}", "fields": {"n": n}} for n in range(count)]
    result = daemon.gateway.submit("message {n}", recipients=recipients, request_report=False)
    return [message["id"] for message in result["messages"]]


def statuses(daemon, ids):
    return collections.Counter(row["status"] for row in daemon.store.messages(ids))


class Chaos(threading.Thread):
    """Unplugs and replugs simulated modems on a schedule until stopped; every modem is plugged in at the end."""

    def __init__(self, sim, plan):
        super().__init__(daemon=True)
        self.sim, self.plan, self.done, self.unplugs = sim, plan, threading.Event(), 0

    def run(self):
        self.plan(self)

    def flap(self, modem, down, up):
        self.sim.fault(modem, "unplug")
        self.unplugs += 1
        self.done.wait(down)
        self.sim.fault(modem, "replug")
        self.done.wait(up)

    def finish(self):
        self.done.set()
        self.join(timeout=10)
        for n in range(self.sim.count):
            self.sim.fault(f"sim{n}", "replug")  # whatever the plan left unplugged


def storm(chaos):
    """An unplug/replug storm: one modem after another, each out for a moment."""
    pick = random.Random(7)
    while not chaos.done.is_set():
        chaos.flap(f"sim{pick.randrange(chaos.sim.count)}", 0.15, 0.2)


def flapping(chaos):
    """Rapid flapping: two modems' cables are loose, each out for a moment about twice a second, so they are cut
    off again and again in the middle of a send."""
    while not chaos.done.is_set() and chaos.unplugs < 60:
        chaos.flap(f"sim{1 + chaos.unplugs % 2}", 0.05, 0.2)


@pytest.mark.parametrize("plan", [storm, flapping], ids=["storm", "flapping"])
def test_every_message_sent_twice_across_unplugs_is_flagged_and_none_is_lost(sim_process, gateway, plan):
    sim = sim_process(count=4, send_latency=0.05)
    daemon = gateway(sim)
    ids = submit_batch(daemon, 300)
    chaos = Chaos(sim, plan)
    chaos.start()
    finished = daemon.wait_until(lambda: statuses(daemon, ids)["sent"] == 300, 90)
    chaos.finish()
    assert finished, statuses(daemon, ids)
    transmitted = sim.transmitted()
    assert set(transmitted) == {f"message {n}" for n in range(300)}, "every message went out"
    rows = {row["body"]: row for row in daemon.store.messages(ids)}
    twice = [text for text, count in transmitted.items() if count > 1]
    unflagged = [text for text in twice if not rows[text]["possible_duplicate"]]
    assert not unflagged, f"sent twice without possible_duplicate: {unflagged} ({chaos.unplugs} unplugs)"
    assert chaos.unplugs >= 8


def test_an_outage_of_every_sim_fails_nothing_and_every_modem_is_back_within_seconds(sim_process, gateway, caplog):
    """Scaled down from 180 s: with a 0.05 s retry backoff and 2 attempts per message, 3 s without network is 60
    backoffs long, so an outage that spent attempts would fail nearly every waiting message."""
    caplog.set_level(logging.INFO)
    sim = sim_process(count=4, send_latency=0.03)
    daemon = gateway(sim, retry_base=0.05, retry_max=0.05, max_attempts=2)
    ids = submit_batch(daemon, 300)
    assert daemon.wait_until(lambda: statuses(daemon, ids)["sent"] >= 40, 20)
    for n in range(4):
        sim.fault(f"sim{n}", "registration", lost=True)
    assert daemon.pool.wait_until(lambda: all(worker.state == "searching" for worker in daemon.pool.workers), 10), \
        daemon.pool.status()
    threading.Event().wait(3.0)  # the outage itself
    waiting = statuses(daemon, ids)
    assert waiting["failed"] == 0 and waiting["sent"] < 300, waiting
    for n in range(4):
        sim.fault(f"sim{n}", "registration", lost=False)
    back = time.monotonic()
    assert daemon.pool.wait_until(lambda: all(worker.live for worker in daemon.pool.workers), 5), \
        daemon.pool.status()
    assert time.monotonic() - back < 3.0
    assert daemon.wait_until(lambda: statuses(daemon, ids)["sent"] == 300, 60), statuses(daemon, ids)
    assert "exclusively lock" not in caplog.text
    for n in range(4):
        resets = [line for line in sim.commands(f"sim{n}") if line.upper().startswith(("ATZ", "AT+CFUN"))]
        assert resets == [], f"sim{n} was reset for a network outage: {resets}"
    modem_rows = {row["label"]: row for row in daemon.store.modems()}
    assert {row["state"] for row in modem_rows.values()} == {"online"}


def test_a_routed_message_retries_on_its_own_modem_after_a_temporary_error(sim_process, gateway):
    sim = sim_process(count=2, send_latency=0.01)
    daemon = gateway(sim, retry_base=0.3)
    sim.fault("sim0", "cms-error", code=42, count=1)
    [message] = daemon.gateway.submit("routed to m0", "+447700900123", route="m0")["messages"]
    final = daemon.wait_for_final(message["id"], 15)
    assert final["status"] == "sent", final
    assert final["modem_id"] == daemon.pool.workers[0].modem_id
    assert final["attempts"] == 2 and final["error_reason"] is None  # the congestion is history once it went out
    assert sim.transmitted() == {"routed to m0": 1}
    kinds = [event["kind"] for event in daemon.store.events(message_id=message["id"])]
    assert kinds.count("message.retry") == 1


def test_three_unknown_errors_fail_three_messages_and_never_reset_the_modem(sim_process, gateway):
    sim = sim_process(count=1, send_latency=0.01)
    daemon = gateway(sim, max_attempts=1)
    sim.fault("sim0", "cms-error", code=500, count=3)
    ids = [daemon.gateway.submit(f"refused {n}", f"+44770090012{n}")["messages"][0]["id"] for n in range(3)]
    for message_id in ids:
        final = daemon.wait_for_final(message_id, 15)
        assert final["status"] == "failed" and final["error_code"] == 500, final
    [after] = daemon.gateway.submit("and then one that goes", "+447700900129")["messages"]
    assert daemon.wait_for_final(after["id"], 15)["status"] == "sent"
    resets = [line for line in sim.commands("sim0") if line.upper().startswith(("ATZ", "AT+CFUN"))]
    assert resets == []
    assert daemon.pool.workers[0].live and daemon.pool.workers[0].failures == 0


def serve(tmp_path, sim):
    config = tmp_path / "modemgw.toml"
    config.write_text("".join(f'[[modem]]\ndevice = "{sim.link_dir / f"sim{n}"}"\nlabel = "m{n}"\n'
                              for n in range(sim.count)))
    data = tmp_path / "data"
    process = subprocess.Popen([MODEMGW, "serve", "--config", str(config), "--data", str(data), "--listen",
                                "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    return process, lines, data


def wait_for_line(lines, text, timeout=30):
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        seen.append(line)
        if text in line:
            return seen


@pytest.mark.parametrize("when", ["at start-up", "while sending"])
def test_sigterm_with_four_silent_modems_exits_within_five_seconds(sim_process, tmp_path, when):
    sim = sim_process(count=4, send_latency=0.05)
    if when == "at start-up":
        for n in range(4):
            sim.fault(f"sim{n}", "hang")
    process, lines, data = serve(tmp_path, sim)
    try:
        if when == "at start-up":
            wait_for_line(lines, "sim3")  # its worker is trying the silent port
        else:
            wait_for_line(lines, "modemgw is running")
            from modemgw.daemon import control_request

            recipients = [{"to": f"+4477009{n:05d}", "fields": {"n": n}} for n in range(200)]
            control_request(data, {"command": "submit", "body": "message {n}", "recipients": recipients})
            for n in range(4):
                sim.fault(f"sim{n}", "hang")  # each modem now holds a send that will never be answered
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert time.monotonic() - started < 5.0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
    assert not os.path.exists(data / "modemgw.sock")


@pytest.mark.parametrize("stored, mode", [(False, "ds=1"), (True, "poll")], ids=["dropped", "stored-unannounced"])
def test_a_modem_that_never_reports_on_its_route_is_switched_to_one_that_does(sim_process, gateway, caplog, stored,
                                                                                mode):
    sim = sim_process(count=1, send_latency=0.01, report_delay=0.05)
    sim.fault("sim0", "lost-reports", ds=2, stored=stored)  # it accepts AT+CNMI=2,1,0,2,0, and then...
    daemon = gateway(sim, pool={"report_watchdog": 5, "report_watchdog_age": 0.5})
    worker = daemon.pool.workers[0]
    first = [daemon.gateway.submit(f"unreported {n}", f"+44770090010{n}")["messages"][0]["id"] for n in range(5)]
    assert daemon.wait_until(lambda: statuses(daemon, first)["sent"] == 5, 10)
    assert daemon.store.modem(worker.modem_id)["report_mode"] is None  # 5 sends, but the first is too recent
    threading.Event().wait(0.6)  # the watchdog's age passes; the reports had time to come (the simulator: 0.05 s)
    daemon.pool.health_check()  # the periodic check (every 30 s) sees 5 sends and no report
    assert daemon.wait_until(lambda: daemon.store.modem(worker.modem_id)["report_mode"] == mode, 15), \
        daemon.store.modem(worker.modem_id)
    assert "no status report for 5 sends with CNMI ds=2" in caplog.text
    assert mode in worker.snapshot()["reports"] or "polled" in worker.snapshot()["reports"]
    if mode == "poll":  # the reports that had been stored unannounced are read at once
        for message_id in first:
            assert daemon.wait_for_final(message_id, 10, until="report")["status"] == "delivered"
    else:  # they were lost, but the route now works
        assert statuses(daemon, first)["delivered"] == 0
        [after] = daemon.gateway.submit("reported", "+447700900200")["messages"]
        assert daemon.wait_for_final(after["id"], 10, until="report")["status"] == "delivered"
        assert "AT+CNMI=2,1,0,1,0" in sim.commands("sim0")
