"""Hot-plug: modems appear, vanish and come back under other paths while the daemon runs; bound by identity.

Real daemon, real ptys: the simulators' links stand in for /dev/modemgw/*, which `gateway.ports` watches.
"""

import os
import pty
import threading

import pytest

from modemgw import config as configuration
from modemgw.daemon import Daemon
from modemgw.hotplug import PortWatcher, is_serial_node
from modemgw.pool import ModemConfig
from tests.support import daemon_config, eventually


@pytest.fixture
def start_daemon(tmp_path):
    running = []

    def start(modems=(), auto_attach=True):
        config = daemon_config(tmp_path / "data")
        config.pool.ports = [str(tmp_path / "usb*" / "sim*")]
        config.pool.hotplug_interval = 0.1
        config.pool.probe_timeout = 0.5
        config.pool.auto_attach = auto_attach
        config.modems = list(modems)
        daemon = Daemon(config, http=False).start()
        running.append(daemon)
        return daemon

    yield start
    for daemon in running:
        daemon.stop()


def sent_by(daemon, ids):
    return {row["modem_id"] for row in daemon.store.messages(ids) if row["status"] == "sent"}


def test_a_modem_plugged_in_while_running_is_attached_and_sends(start_daemon, make_sim, tmp_path):
    daemon = start_daemon()
    assert daemon.pool.workers == []
    sim = make_sim(count=1, link_dir=tmp_path / "usb1", send_latency=0.01)
    assert daemon.pool.wait_until(lambda: len(daemon.pool.workers) == 1 and daemon.pool.workers[0].live, 15)
    worker = daemon.pool.workers[0]
    assert worker.imei == sim.devices[0].modem.identity.imei
    assert worker.label == f"modem-{worker.imei[-4:]}"
    ids = [m["id"] for m in daemon.gateway.submit("Hello", ["+447700900001"], request_report=False)["messages"]]
    assert daemon.wait_until(lambda: sent_by(daemon, ids) == {worker.modem_id}, 10)


def test_an_unplugged_modem_comes_back_under_another_path_without_a_restart(start_daemon, make_sim, tmp_path):
    sim = make_sim(count=2, link_dir=tmp_path / "usb1", send_latency=0.01)
    imei = sim.devices[1].modem.identity.imei
    daemon = start_daemon([ModemConfig(imei=imei, label="office-2")])
    assert daemon.pool.wait_until(lambda: daemon.pool.workers[0].live, 15)
    worker = daemon.pool.workers[0]
    assert worker.device == str(tmp_path / "usb1" / "sim1")
    # sim0 was attached as an unknown modem; sim1 belongs to the configured entry, found by its IMEI
    assert daemon.pool.wait_until(lambda: len(daemon.pool.workers) == 2 and all(w.live for w in daemon.pool.workers),
                                  15)
    sim.fault(1, "unplug")
    assert eventually(lambda: daemon.store.modem(worker.modem_id)["state"] == "offline")
    sim.fault(1, "replug", name="sim7")  # the kernel gave it another name
    assert daemon.pool.wait_until(lambda: worker.live, 10), worker.snapshot()
    assert worker.device == str(tmp_path / "usb1" / "sim7")
    assert len(daemon.pool.workers) == 2  # the same worker, not a new one
    ids = [m["id"] for m in daemon.gateway.submit("Back", ["+447700900002"], route="office-2",
                                                  request_report=False)["messages"]]
    assert daemon.wait_until(lambda: sent_by(daemon, ids) == {worker.modem_id}, 10)
    rows = daemon.store.query("SELECT id, device, state FROM modems WHERE imei = ?", (imei,))
    assert [tuple(row) for row in rows] == [(worker.modem_id, str(tmp_path / "usb1" / "sim7"), "online")]


def test_an_entry_keyed_by_iccid_follows_the_sim(start_daemon, make_sim, tmp_path):
    sim = make_sim(count=2, link_dir=tmp_path / "usb1", seed=3)
    iccid = sim.devices[0].modem.identity.iccid
    daemon = start_daemon([ModemConfig(iccid=iccid, label="by-sim")])
    worker = daemon.pool.workers[0]
    assert daemon.pool.wait_until(lambda: worker.live, 15)
    assert worker.device == str(tmp_path / "usb1" / "sim0")
    assert daemon.store.modem(worker.modem_id)["iccid"] == iccid


def test_with_auto_attach_off_an_unknown_modem_is_left_alone(start_daemon, make_sim, tmp_path):
    sim = make_sim(count=2, link_dir=tmp_path / "usb1")
    daemon = start_daemon([ModemConfig(imei=sim.devices[0].modem.identity.imei)], auto_attach=False)
    assert daemon.pool.wait_until(lambda: daemon.pool.workers[0].live and daemon.pool.unattached, 15)
    other = sim.devices[1].modem.identity.imei
    assert daemon.pool.unattached == {
        str(tmp_path / "usb1" / "sim1"): f"modem IMEI {other} (SIM {sim.devices[1].modem.identity.iccid}) is not "
                                         "configured and auto_attach is off"}
    assert len(daemon.pool.workers) == 1


def test_a_port_where_nothing_answers_is_given_up_after_some_tries(tmp_path):
    master, slave = pty.openpty()  # a tty that never answers AT, like a modem's diagnostic interface
    try:
        (tmp_path / "ports").mkdir()
        (tmp_path / "ports" / "diag").symlink_to(os.ttyname(slave))
        asked, gone = [], []
        watcher = PortWatcher([str(tmp_path / "ports" / "*")], lambda path: asked.append(path) or False,
                              gone.append, interval=0.05, attempts=3)
        for _ in range(5):
            watcher.scan()
        assert asked == [str(tmp_path / "ports" / "diag")] * 3
        assert watcher.pending == {}
        (tmp_path / "ports" / "diag").unlink()
        watcher.scan()
        assert gone == [str(tmp_path / "ports" / "diag")]
        (tmp_path / "ports" / "diag").symlink_to(os.ttyname(slave))  # replugged: asked again
        watcher.scan()
        assert len(asked) == 4
    finally:
        os.close(master)
        os.close(slave)


def test_only_character_devices_count_as_serial_ports(tmp_path):
    master, slave = pty.openpty()
    try:
        (tmp_path / "modem").symlink_to(os.ttyname(slave))
        (tmp_path / "file").touch()
        assert is_serial_node(os.ttyname(slave)) and is_serial_node(str(tmp_path / "modem"))
        assert not is_serial_node(str(tmp_path / "file")) and not is_serial_node(str(tmp_path / "missing"))
    finally:
        os.close(master)
        os.close(slave)


def test_new_ports_are_asked_about_concurrently_and_their_tries_counted_each(tmp_path):
    ports = [str(tmp_path / name) for name in ("a", "b", "c")]
    for port in ports:
        open(port, "w").close()
    together = threading.Barrier(3, timeout=5)  # passes only when all three are being asked at once

    def appeared(path):
        together.wait()
        if path == ports[2]:
            raise OSError("a probe that fails counts as a try")
        return path == ports[0]  # "a" is settled; "b" and "c" are asked again at the next scan

    watcher = PortWatcher([str(tmp_path / "*")], appeared, lambda path: None, attempts=2)
    try:
        watcher.scan()
        assert watcher.pending == {ports[1]: 1, ports[2]: 1}
        watcher.appeared = lambda path: None if path == ports[1] else False  # "b" busy: asked again, no try
        watcher.scan()
        assert watcher.pending == {ports[1]: 1}
    finally:
        watcher.stop()


def test_hot_plug_options_are_read_from_the_config(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[gateway]\nports = ["/dev/modemgw/*"]\nauto_attach = false\nhotplug_interval = 5\n\n'
                    '[[modem]]\niccid = "8944100000000000005"\nlabel = "a"\n')
    config = configuration.load(path)
    assert config.pool.ports == ["/dev/modemgw/*"]
    assert config.pool.auto_attach is False and config.pool.hotplug_interval == 5.0
    assert config.modems[0].iccid == "8944100000000000005"



def test_device_entries_whose_modems_swap_paths_follow_their_modems_and_spend_no_pin(start_daemon, make_sim,
                                                                                       tmp_path):
    sim = make_sim(count=2, link_dir=tmp_path / "usb1", send_latency=0.01)
    first, second = sim.devices[0].modem, sim.devices[1].modem
    first.PIN, second.PIN = "1111", "2222"
    sim.fault(0, "pin", required=True)
    sim.fault(1, "pin", required=True)
    daemon = start_daemon([ModemConfig(device=str(tmp_path / "usb1" / "sim0"), label="A", pin="1111"),
                           ModemConfig(device=str(tmp_path / "usb1" / "sim1"), label="B", pin="2222")])
    a, b = daemon.pool.workers
    assert daemon.pool.wait_until(lambda: a.live and b.live, 15)
    sim.fault(0, "unplug")
    sim.fault(1, "unplug")
    assert daemon.pool.wait_until(lambda: not a.live and not b.live, 10)
    for index in (0, 1):
        sim.fault(index, "pin", required=True)  # a power cycle locks the SIM again
    sim.fault(0, "replug", name="sim1")  # the kernel hands the names out the other way round
    sim.fault(1, "replug", name="sim0")
    assert daemon.pool.wait_until(lambda: a.live and b.live, 15), [w.snapshot() for w in daemon.pool.workers]
    assert (a.imei, a.device) == (first.identity.imei, str(tmp_path / "usb1" / "sim1"))
    assert (b.imei, b.device) == (second.identity.imei, str(tmp_path / "usb1" / "sim0"))
    assert (first.pin_attempts, second.pin_attempts) == (3, 3)  # no PIN went to the wrong SIM
    assert len(daemon.pool.workers) == 2


def test_a_rejected_pin_is_not_tried_again(start_daemon, make_sim, tmp_path):
    sim = make_sim(count=1, link_dir=tmp_path / "usb1")
    sim.fault(0, "pin", required=True)
    daemon = start_daemon([ModemConfig(device=str(tmp_path / "usb1" / "sim0"), label="A", pin="9999")])
    modem = sim.devices[0].modem
    assert eventually(lambda: daemon.pool.rejected_pins)
    identified = sim.commands(0).count("AT+CGSN")
    assert eventually(lambda: sim.commands(0).count("AT+CGSN") >= identified + 2)  # it kept retrying...
    assert modem.pin_attempts == 2  # ...without spending another attempt
    assert not daemon.pool.workers[0].live


def test_a_second_port_of_a_modem_still_booting_gets_no_worker_of_its_own(start_daemon, make_sim, tmp_path):
    sim = make_sim(count=2, link_dir=tmp_path / "usb1")
    first, second = sim.devices[0].modem, sim.devices[1].modem
    second.identity.imei, second.identity.iccid = first.identity.imei, first.identity.iccid  # one modem, 2 ports
    sim.fault(0, "hang", seconds=1.0)  # still booting when the gateway starts
    daemon = start_daemon([ModemConfig(device=str(tmp_path / "usb1" / "sim0"), label="office")])
    assert daemon.pool.wait_until(lambda: daemon.pool.workers[0].live, 15)
    watcher = daemon.pool.watcher
    assert eventually(lambda: str(tmp_path / "usb1" / "sim1") not in watcher.pending
                      and str(tmp_path / "usb1" / "sim1") in watcher.present)
    assert [(w.label, w.device) for w in daemon.pool.workers] == [("office", str(tmp_path / "usb1" / "sim0"))]


def test_modems_keyed_by_imei_that_swap_paths_between_two_scans_both_come_back(start_daemon, make_sim, tmp_path):
    sim = make_sim(count=2, link_dir=tmp_path / "usb1", send_latency=0.01)
    first, second = sim.devices[0].modem, sim.devices[1].modem
    daemon = start_daemon([ModemConfig(imei=first.identity.imei, label="A"),
                           ModemConfig(imei=second.identity.imei, label="B")])
    a, b = daemon.pool.workers
    assert daemon.pool.wait_until(lambda: a.live and b.live, 15)
    sim.fault(0, "replug", name="sim1")
    sim.fault(1, "replug", name="sim0")
    assert daemon.pool.wait_until(lambda: a.live and b.live and a.device != b.device and
                                  a.device.endswith("sim1"), 15), [w.snapshot() for w in daemon.pool.workers]


def test_a_port_seen_before_a_configured_worker_looked_at_its_own_waits_for_it(make_sim, tmp_path):
    """On a loaded machine the watcher's first scan can come before a worker configured by path has claimed that
    path: another port of the same modem must not get a worker of its own meanwhile (the configured one would then
    be locked out for good as "attached already")."""
    from modemgw.gateway import Gateway
    from modemgw.pool import Pool, PoolSettings
    from modemgw.store import Store

    sim = make_sim(count=2, link_dir=tmp_path / "usb1")
    first, second = sim.devices[0].modem, sim.devices[1].modem
    second.identity.imei, second.identity.iccid = first.identity.imei, first.identity.iccid  # one modem, 2 ports
    store = Store(tmp_path / "modemgw.db")
    try:
        pool = Pool(Gateway(store), store, [ModemConfig(device=str(tmp_path / "usb1" / "sim0"), label="office")],
                    PoolSettings(ports=[str(tmp_path / "usb1" / "sim*")], probe_timeout=0.5))
        worker = pool.workers[0]
        assert worker.first_look_pending  # not started: it has not looked at its port yet
        assert pool.port_appeared(str(tmp_path / "usb1" / "sim1")) is None  # asked again later, no try counted
        assert len(pool.workers) == 1
        worker.first_look_pending = False  # what its first connect attempt ends with, whatever it found
        assert pool.port_appeared(str(tmp_path / "usb1" / "sim1")) is True  # probed now: a modem, so attached
        assert len(pool.workers) == 2
    finally:
        store.close()
