"""The administrator's commands on the appliance: discover, doctor, console through the gateway.

Simulated modems run as `modemgw sim` (its own process) or in-process; every command runs as the installed
`modemgw` script in a subprocess, as an administrator would type it.
"""

import os
import queue
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import tomllib
from pathlib import Path

import pytest
import serial

from modemgw.daemon import Daemon
from tests.support import daemon_config

MODEMGW = str(Path(sys.executable).parent / "modemgw")


def run(*args, input=None, timeout=60):
    return subprocess.run([MODEMGW, *map(str, args)], capture_output=True, text=True, input=input, timeout=timeout)


@pytest.fixture
def short_path():
    """A short directory, so that paths in the output are as short as real ones (/dev/modemgw/...)."""
    path = Path(tempfile.mkdtemp(prefix="mg", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sim_process(short_path):
    """`modemgw sim --count 3` in its own process; yields (link_dir, {name: (imei, iccid, number)})."""
    link_dir = short_path / "usb"
    process = subprocess.Popen([MODEMGW, "sim", "--count", "3", "--link-dir", str(link_dir), "--profile",
                                "generic,huawei,quectel"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    modems = {}
    while True:
        line = lines.get(timeout=30)
        if "ready" in line:
            break
        fields = line.split()
        modems[fields[0]] = (fields[3], fields[5], fields[6])
    yield link_dir, modems
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    process.stdout.close()


def fault(link_dir, modem, *params):
    result = run("sim", "inject", "fault", "--link-dir", link_dir, "--modem", modem, *params)
    assert result.returncode == 0, result.stderr


def test_discover_finds_simulated_modems_and_prints_their_entries(sim_process, tmp_path):
    link_dir, modems = sim_process
    result = run("discover", "--ports", f"{link_dir}/*", "--data", tmp_path / "data")
    assert result.returncode == 0, result.stderr
    for name, (imei, iccid, _number) in modems.items():
        assert f"{link_dir / name}: " in result.stdout and f"IMEI {imei}" in result.stdout
        assert f'iccid = "{iccid}"' in result.stdout and f'device = "{link_dir / name}"' in result.stdout
    assert "control.sock" not in result.stdout  # not a serial port: not probed
    assert "3 modem(s) on 3 port(s) probed" in result.stdout
    assert max(len(line.replace(str(link_dir), "/dev/modemgw")) for line in result.stdout.splitlines()) <= 80


def test_discover_write_adds_new_modems_once_and_the_config_loads(sim_process, tmp_path):
    link_dir, modems = sim_process
    config = tmp_path / "config.toml"
    config.write_text('[gateway]\nports = ["/dev/modemgw/*"]\n\n[[modem]]\n'
                      f'imei = "{modems["sim0"][0]}"\nlabel = "office-1"\n')
    config.chmod(0o640)
    if os.geteuid() == 0:
        os.chown(config, 0, 65534)  # root:<service group>, as install.sh leaves it
    result = run("discover", "--ports", f"{link_dir}/*", "--config", config, "--write")
    assert result.returncode == 0, result.stderr
    assert "added 2 modem(s)" in result.stdout
    written = tomllib.loads(config.read_text())
    assert [entry.get("iccid") for entry in written["modem"]] == [None, modems["sim1"][1], modems["sim2"][1]]
    assert written["modem"][0] == {"imei": modems["sim0"][0], "label": "office-1"}
    assert stat.S_IMODE(config.stat().st_mode) == 0o640  # kept for the service
    assert os.geteuid() != 0 or config.stat().st_gid == 65534
    again = run("discover", "--ports", f"{link_dir}/*", "--config", config, "--write")
    assert "every modem found is already in the configuration" in again.stdout
    assert tomllib.loads(config.read_text()) == written


def test_discover_says_what_to_check_when_nothing_answers(tmp_path):
    result = run("discover", "--ports", f"{tmp_path}/nothing*", "--data", tmp_path / "data")
    assert result.returncode == 1
    assert "no modem answered" in result.stdout and "dialout" in result.stdout


def doctor_lines(result, tmp_path):
    text = result.stdout.replace(str(tmp_path), "/tmp/x")
    assert max(len(line) for line in text.splitlines()) <= 80, "readable on an 80x24 serial console"
    assert "\x1b" not in text, "no colour codes"
    return text


def test_doctor_names_each_broken_modem_and_its_fix_without_a_gateway(sim_process, short_path):
    tmp_path = short_path
    link_dir, modems = sim_process
    fault(link_dir, "sim0", "pin", "required=1")
    fault(link_dir, "sim1", "smsc", "number=")
    config = tmp_path / "config.toml"
    config.write_text("".join(f'[[modem]]\ndevice = "{link_dir / name}"\nlabel = "{name}"\n\n' for name in modems)
                      + f'[[modem]]\ndevice = "{tmp_path / "ttyUSB9"}"\n')
    with serial.Serial(str(link_dir / "sim2"), exclusive=True):  # another program holds the third modem
        result = run("doctor", "--config", config, "--data", tmp_path / "data")
    output = re.sub(r"\n +", " ", doctor_lines(result, tmp_path))  # wrapped lines joined
    assert result.returncode == 2, output
    assert "FAIL  sim0 (/tmp/x/usb/sim0): the SIM asks for its PIN" in output
    assert 'fix: add pin = "...." to its [[modem]] entry in /tmp/x/config.toml' in output
    assert "FAIL  sim1 (/tmp/x/usb/sim1): no SMS service centre number on the SIM" in output
    assert 'fix: modemgw console sim1: AT+CSCA="+<your operator\'s SMSC>",145' in output
    me = f"{Path('/proc/self/comm').read_text().strip()} (pid {os.getpid()})"
    assert f"FAIL  sim2 (/tmp/x/usb/sim2) is held by {me} fix: stop that program" in output
    assert "FAIL  /tmp/x/ttyUSB9 does not exist: the modem is unplugged, or has another name" in output
    assert "WARN  the gateway is not running" in output


@pytest.fixture
def gateway(short_path):
    daemon = Daemon(daemon_config(short_path / "data"), simulate=2, sim_send_latency=0.01, sim_report_delay=0.05,
                    http=False).start()
    assert daemon.pool.wait_ready(10)
    yield daemon
    daemon.stop()


def test_doctor_through_the_running_gateway(gateway, short_path):
    tmp_path = short_path
    (tmp_path / "empty.toml").write_text("")
    healthy = run("doctor", "--data", gateway.data_dir, "--config", tmp_path / "empty.toml")
    output = re.sub(r"\n +", " ", doctor_lines(healthy, tmp_path))
    assert healthy.returncode in (0, 1) and "FAIL" not in output, output
    assert "the gateway is running" in output and "2 of 2 modem(s) up" in output
    assert "ok    sim0 (/tmp/x/data/sim/sim0): SIM ready, registered (home), -73 dBm, SimNet" in output
    assert "database integrity ok" in output
    gateway.simulator.fault(1, "registration", lost=True)
    broken = run("doctor", "--data", gateway.data_dir, "--config", tmp_path / "empty.toml")
    output = re.sub(r"\n +", " ", doctor_lines(broken, tmp_path))
    assert broken.returncode == 2
    assert "FAIL  sim1 (" in output and "not on the network (searching)" in output
    assert "fix: check the antenna and coverage" in output


def test_console_goes_through_the_gateway_when_it_owns_the_modem(gateway):
    result = run("console", "sim1", "--data", gateway.data_dir, input="AT+CSQ\nAT+CMGS=20\nAT+CGSN\nexit\n")
    assert result.returncode == 0, result.stderr
    assert "sim1 (through the running gateway" in result.stdout
    assert "+CSQ:" in result.stdout and result.stdout.count("OK  (") == 2
    assert gateway.simulator.devices[1].modem.identity.imei in result.stdout
    assert "prompt commands" in result.stdout or "'> ' prompt" in result.stdout
    assert gateway.pool.states()[1].live  # the gateway kept its modem


def test_console_on_an_unknown_name_says_which_modems_there_are(gateway):
    result = run("console", "office-9", "--data", gateway.data_dir)
    assert result.returncode == 1
    assert "office-9 is neither a device nor a modem of the running gateway (its modems: sim0, sim1)" in \
        result.stderr
