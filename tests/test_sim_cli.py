"""`modemgw sim` and `modemgw console` as a person uses them: separate processes, real ptys."""

import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from modemgw import pdu
from tests.support import Process

MODEMGW = str(Path(sys.executable).parent / "modemgw")


@pytest.fixture
def running_sim(tmp_path):
    """`modemgw sim --count 2` in its own process; yields (link_dir, printed modem lines)."""
    link_dir = tmp_path / "sim"
    errors = open(tmp_path / "sim.stderr", "w")
    process = subprocess.Popen([MODEMGW, "sim", "--count", "2", "--link-dir", str(link_dir), "--send-latency",
                                "0.05", "--report-delay", "0.1", "--outcome", "+1555=0x21,0x46"],
                               stdout=subprocess.PIPE, stderr=errors, text=True)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True)
    reader.start()
    printed = []
    while True:
        line = lines.get(timeout=30)
        if "ready" in line:
            break
        printed.append(line.split())
    yield link_dir, printed
    process.send_signal(signal.SIGTERM)
    status = process.wait(timeout=10)
    reader.join(timeout=10)
    process.stdout.close()
    errors.close()
    assert status == 0, (tmp_path / "sim.stderr").read_text()
    assert not (link_dir / "sim0").exists(), "links are removed when the simulator stops"


def run(*args, input=None):
    return subprocess.run([MODEMGW, *args], capture_output=True, text=True, input=input, timeout=60)


def test_sim_prints_one_line_per_modem(running_sim):
    link_dir, printed = running_sim
    assert [fields[0] for fields in printed] == ["sim0", "sim1"]
    for fields in printed:
        assert fields[1] == str(link_dir / fields[0])
        assert fields[2] == "IMEI" and len(fields[3]) == 15
        assert fields[4] == "ICCID" and fields[5].startswith("89")
        assert fields[6].startswith("+")


def test_console_csq_cgsn_and_a_pdu_sent_by_hand(running_sim):
    link_dir, printed = running_sim
    imei = printed[0][3]
    length, hex_pdu = run("pdu", "encode", "--to", printed[1][6], "--text", "typed by hand").stdout.split()
    session = run("console", str(link_dir / "sim0"),
                  input=f"AT+CSQ\nAT+CGSN\nAT+CMGS={length}\n{hex_pdu}\nAT+NOSUCH\nexit\n")
    assert session.returncode == 0, session.stderr
    out = session.stdout.splitlines()
    assert "+CSQ: 20,99" in out
    assert imei in out
    assert any(line.startswith("+CMGS: ") for line in out)
    assert sum(1 for line in out if line.startswith("OK  (") and line.endswith(" ms)")) == 3
    assert any(line.startswith("ERROR  (") for line in out)
    sent = run("sim", "sent", "--link-dir", str(link_dir), "--modem", "sim0").stdout
    assert "'typed by hand'" in sent


def test_console_shows_urcs_distinctly_and_reads_what_arrived(running_sim):
    link_dir, _printed = running_sim
    injected = run("sim", "inject", "sms", "--link-dir", str(link_dir), "--modem", "sim1", "--from", "+15550100",
                   "--text", "x" * 200, "--order", "2,1")
    assert injected.returncode == 0, injected.stderr
    assert "2 part(s)" in injected.stdout
    session = run("console", str(link_dir / "sim1"), input="AT+CNMI=2,1,0,0,0\nAT+CMGL=4\nexit\n")
    listed = [line for line in session.stdout.splitlines() if line.startswith("+CMGL:")]
    assert len(listed) == 2
    pdus = [pdu.decode(line) for line in session.stdout.splitlines() if line.startswith("07")]
    assert sorted(message.concat.sequence for message in pdus) == [1, 2]


def test_faults_through_the_control_channel(running_sim):
    link_dir, printed = running_sim
    moved = run("sim", "inject", "fault", "--link-dir", str(link_dir), "--modem", "sim1", "replug", "name=ttyUSB9")
    assert moved.returncode == 0, moved.stderr
    assert str(link_dir / "ttyUSB9") in moved.stdout
    listing = run("sim", "list", "--link-dir", str(link_dir)).stdout
    assert str(link_dir / "ttyUSB9") in listing and printed[1][3] in listing
    unknown = run("sim", "inject", "fault", "--link-dir", str(link_dir), "melt")
    assert unknown.returncode == 1
    assert "unknown fault 'melt'" in unknown.stderr


def test_inject_without_a_running_simulator_says_how_to_start_one(tmp_path):
    result = run("sim", "inject", "sms", "--link-dir", str(tmp_path), "--from", "+1", "--text", "x")
    assert result.returncode == 1
    assert "modemgw sim --link-dir" in result.stderr



def test_the_groups_link_dir_is_honoured_by_its_subcommands(running_sim, tmp_path):
    link_dir, printed = running_sim
    listing = run("sim", "--link-dir", str(link_dir), "list")
    assert listing.returncode == 0, listing.stderr
    assert [line.split()[:2] for line in listing.stdout.splitlines()] == [[fields[0], fields[1]] for fields in printed]
    injected = run("sim", "--link-dir", str(link_dir), "inject", "sms", "--modem", "sim1", "--from", "+447700900555",
                   "--text", "Through the group's option")
    assert injected.stdout.strip() == "delivered to sim1 in 1 part(s)", injected.stderr
    elsewhere = run("sim", "--link-dir", str(tmp_path / "none"), "list")  # not the default, not the running one
    assert elsewhere.returncode == 1 and str(tmp_path / "none" / "control.sock") in elsewhere.stderr


def _without_sim_dir(**extra):
    return {**{name: value for name, value in os.environ.items() if name != "MODEMGW_SIM_DIR"}, **extra}


def _answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def test_sim_commands_find_the_demos_simulator_without_being_told(tmp_path):
    if _answers(Path("/tmp/modemgw-sim/control.sock")):
        pytest.skip("a `modemgw sim` runs in /tmp/modemgw-sim on this machine: it would be found first")
    # a short directory: the demo's control socket lies deep in it, and a socket's path has at most 107 bytes
    xdg = Path(tempfile.mkdtemp(prefix="xdg", dir="/tmp"))
    env = _without_sim_dir(XDG_DATA_HOME=str(xdg))
    nothing = subprocess.run([MODEMGW, "sim", "list"], capture_output=True, text=True, env=env, timeout=60)
    demo_sim = xdg / "modemgw" / "demo" / "sim"
    assert nothing.returncode == 1 and str(demo_sim / "control.sock") in nothing.stderr
    assert "modemgw demo" in nothing.stderr
    demo = Process("demo", "--listen", "127.0.0.1:0", "--modems", "1", env=env)
    try:
        command = demo.wait_for("text the gateway:").split("text the gateway: ", 1)[1].split(" (", 1)[0]
        assert command.startswith(f"modemgw sim --link-dir {demo_sim} inject sms --modem sim0 --from +447700900555")
        listing = subprocess.run([MODEMGW, "sim", "list"], capture_output=True, text=True, env=env, timeout=60)
        assert listing.stdout.split()[:2] == ["sim0", str(demo_sim / "sim0")], listing.stderr
        injected = subprocess.run([MODEMGW, "sim", "inject", "sms", "--from", "+447700900555", "--text", "Hi there"],
                                  capture_output=True, text=True, env=env, timeout=60)
        assert injected.stdout.strip() == "delivered to sim0 in 1 part(s)", injected.stderr
        exact = subprocess.run(["bash", "-c", command.replace("modemgw ", f"{MODEMGW} ", 1)], capture_output=True,
                               text=True, env=env, timeout=60)
        assert exact.stdout.strip() == "delivered to sim0 in 1 part(s)", exact.stderr
        status = subprocess.run([MODEMGW, "status"], capture_output=True, text=True, env=env, timeout=60)
        assert status.returncode == 0 and "sim0" in status.stdout, status.stderr
    finally:
        stopped = demo.stop()
        shutil.rmtree(xdg, ignore_errors=True)
        assert stopped == 0
    log = "".join(demo.seen)
    assert "modemgw.hotplug: port" in log and "control.sock" not in log, log  # the socket is no port


def test_a_bad_outcome_option_is_refused_with_its_form():
    result = run("sim", "--outcome", "+1555=soon")
    assert result.returncode == 2
    assert "PREFIX=ST[,ST...]" in result.stderr
