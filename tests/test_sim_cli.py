"""`modemgw sim` and `modemgw console` as a person uses them: separate processes, real ptys."""

import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from modemgw import pdu

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



def test_a_bad_outcome_option_is_refused_with_its_form():
    result = run("sim", "--outcome", "+1555=soon")
    assert result.returncode == 2
    assert "PREFIX=ST[,ST...]" in result.stderr
