"""Real, independent programs accept the simulated modem: gammu and smstools3 (Debian's packages).

CI installs both (.ci/run); on a machine without them these tests skip with the reason, and under CI a
missing program is a failure, so the claim cannot silently go untested.
"""

import os
import select
import signal
import subprocess
from pathlib import Path

from tests.support import require


def gammurc(tmp_path: Path, device: str) -> Path:
    config = tmp_path / "gammurc"
    config.write_text(f"[gammu]\ndevice = {device}\nconnection = at\nlogfile = {tmp_path / 'gammu.log'}\n"
                      "logformat = textall\n")
    return config


def test_gammu_identify_prints_the_imei(make_sim, tmp_path):
    gammu = require("gammu", "gammu")
    sim = make_sim(count=1)
    result = subprocess.run([gammu, "-c", str(gammurc(tmp_path, sim.devices[0].device)), "identify"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sim.devices[0].modem.identity.imei in result.stdout
    assert "SIMULATED" in result.stdout


def test_gammu_sendsms_goes_out_through_the_simulator(make_sim, tmp_path):
    gammu = require("gammu", "gammu")
    sim = make_sim(count=2, send_latency=0.05)
    recipient = sim.devices[1].modem.identity.number
    result = subprocess.run([gammu, "-c", str(gammurc(tmp_path, sim.devices[0].device)), "sendsms", "TEXT",
                             recipient, "-text", "hello from gammu"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    sent = sim.sent(0)
    assert [(record.recipient, record.text) for record in sent] == [(recipient, "hello from gammu")]
    assert f"reference={sent[0].reference}" in result.stdout + result.stderr
    arrived = sim.wait_until(lambda: list(sim.devices[1].modem.storages["SM"].slots.values()))
    assert len(arrived) == 1


def test_smstools_sends_a_spool_through_two_simulated_modems(make_sim, tmp_path):
    smsd = require("smsd", "smstools")
    sim = make_sim(count=3, send_latency=0.3)
    spool = {name: tmp_path / name for name in ("outgoing", "checked", "failed", "incoming", "sent", "stats")}
    for folder in spool.values():
        folder.mkdir()
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    handler = tmp_path / "handler.sh"
    handler.write_text(f'#!/bin/sh\necho "$1 $(basename "$2")" > {fifo}\n')
    handler.chmod(0o755)
    devices = "".join(f"\n[GSM{n}]\ndevice = {sim.devices[n].device}\nbaudrate = 115200\nincoming = no\n"
                      for n in (0, 1))
    config = tmp_path / "smsd.conf"
    config.write_text("devices = GSM0, GSM1\n" + "".join(f"{name} = {path}\n" for name, path in spool.items())
                      + f"logfile = {tmp_path / 'smsd.log'}\nloglevel = 7\ninfofile = {tmp_path / 'smsd.working'}\n"
                      f"pidfile = {tmp_path / 'smsd.pid'}\neventhandler = {handler}\n" + devices)
    recipient = sim.devices[2].modem.identity.number
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    keeper = os.open(fifo, os.O_WRONLY)  # a writer of our own: select waits for data, not for end-of-file
    process = subprocess.Popen([smsd, "-c", str(config), "-t"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for n in range(4):
            (spool["outgoing"] / f"msg{n}").write_text(f"To: {recipient.lstrip('+')}\n\nhello from smsd {n}\n")
        events = b""
        while events.count(b"\n") < 4:
            ready, _, _ = select.select([reader], [], [], 60)
            assert ready, f"smsd reported {events!r} in 60 s; log: {(tmp_path / 'smsd.log').read_text()[-2000:]}"
            events += os.read(reader, 4096)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        os.close(reader)
        os.close(keeper)
    assert sorted(events.decode().split("\n")[:4]) == [f"SENT msg{n}" for n in range(4)]
    assert sorted(path.name for path in spool["sent"].iterdir()) == [f"msg{n}" for n in range(4)]
    texts = sorted(record.text for device in (0, 1) for record in sim.sent(device))
    assert texts == [f"hello from smsd {n}" for n in range(4)]
    assert sim.sent(0) and sim.sent(1), "both modems carried part of the spool"
