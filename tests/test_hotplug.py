"""Hot-plug: modems appear, vanish and come back under other paths while the daemon runs; bound by identity.

Real daemon, real ptys: the simulators' links stand in for /dev/modemgw/*, which `gateway.ports` watches.
"""

import os
import pty

import pytest

from modemgw import config as configuration
from modemgw.daemon import Daemon
from modemgw.hotplug import PortWatcher
from modemgw.pool import ModemConfig
from tests.conftest import daemon_config


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
    assert daemon.pool.wait_until(lambda: len(daemon.pool.workers) == 2 and all(w.live for w in daemon.pool.workers), 15)
    sim.fault(1, "unplug")
    assert daemon.pool.wait_until(lambda: not worker.live, 10)
    assert daemon.store.modem(worker.modem_id)["state"] == "offline"
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


def test_hot_plug_options_are_read_from_the_config(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[gateway]\nports = ["/dev/modemgw/*"]\nauto_attach = false\nhotplug_interval = 5\n\n'
                    '[[modem]]\niccid = "8944100000000000005"\nlabel = "a"\n')
    config = configuration.load(path)
    assert config.pool.ports == ["/dev/modemgw/*"]
    assert config.pool.auto_attach is False and config.pool.hotplug_interval == 5.0
    assert config.modems[0].iccid == "8944100000000000005"
