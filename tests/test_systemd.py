"""sd_notify: READY once serving, WATCHDOG pings only while nothing is stuck; a real notify socket."""

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from modemgw import systemd
from tests.support import eventually

MODEMGW = str(Path(sys.executable).parent / "modemgw")


@pytest.fixture
def notify_socket(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(30)
    yield sock, str(tmp_path / "notify")
    sock.close()


def receive_until(sock, wanted):
    seen = []
    while True:
        datagram = sock.recv(4096).decode()
        seen.append(datagram)
        if wanted in datagram.split("\n"):
            return seen


def test_serve_says_ready_and_feeds_the_watchdog(notify_socket, tmp_path):
    sock, path = notify_socket
    process = subprocess.Popen([MODEMGW, "serve", "--simulate", "1", "--sim-send-latency", "0", "--data",
                                str(tmp_path / "data"), "--listen", "127.0.0.1:0"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env={**os.environ, "NOTIFY_SOCKET": path,
                                                               "WATCHDOG_USEC": "200000"})
    try:
        ready = receive_until(sock, "READY=1")
        assert any("STATUS=1/1 modems up, 0 queued" in datagram for datagram in ready)
        pings = receive_until(sock, "WATCHDOG=1")
        assert "WATCHDOG=1\nSTATUS=1/1 modems up, 0 queued" in pings
        process.send_signal(signal.SIGTERM)
        receive_until(sock, "STOPPING=1")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def test_the_watchdog_is_not_fed_while_something_is_stuck(notify_socket, monkeypatch):
    sock, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    problems = ["modem-1"]
    watchdog = systemd.Watchdog(0.02, lambda: list(problems))
    watchdog.start()
    try:
        sock.settimeout(0.3)
        with pytest.raises(socket.timeout):
            sock.recv(4096)
        problems.clear()
        sock.settimeout(10)
        assert sock.recv(4096) == b"WATCHDOG=1"
    finally:
        watchdog.stop()
        watchdog.join(5)



def test_a_worker_stuck_in_a_modem_call_and_a_dead_thread_show_in_health(start_daemon):
    daemon = start_daemon(modems=1)
    worker = daemon.pool.workers[0]
    assert daemon.health() == []
    assert eventually(lambda: worker.waiting) and not worker.stalled(0.0)  # idle: waiting, however long
    inside, release = threading.Event(), threading.Event()
    calling = threading.Thread(target=daemon.pool.run_on,
                               args=(worker.modem_id, lambda modem: inside.set() or release.wait(10)))
    calling.start()
    assert inside.wait(10)
    assert worker.stalled(0.0) and not worker.stalled(3600)
    release.set()
    calling.join(10)
    daemon.pool.alarm.stop()  # a thread that died
    assert daemon.health() == ["alarm"]


def test_without_systemd_notify_does_nothing(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert systemd.notify("READY=1") is False
    assert systemd.watchdog_interval() is None  # the watchdog is another process's
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd.watchdog_interval() == 30.0
