"""The AT engine rules (docs/design.md), each against the simulated modem over a real pty."""

import glob
import logging
import os
import pty
import queue
import select
import threading
import time
import tty

import pytest

from modemgw import pdu
from modemgw.errors import CmsError, ModemError, ModemTimeout, PortLost, PromptTimeout
from modemgw.modem import Modem, ModemSettings, identity_matches, probe
from tests.support import FAST, eventually


def other_number(sim, index=1):
    return sim.devices[index].modem.identity.number


def test_rule1_prompt_send_is_atomic_against_other_threads(make_sim, open_modem):
    sim = make_sim(send_latency=0.05)
    sim.fault(0, "slow-prompt", seconds=0.2)
    modem = open_modem(sim.devices[0].device)
    encoded = pdu.encode_message(other_number(sim), "atomic")[0]
    results = queue.Queue()
    sender = threading.Thread(target=lambda: results.put(modem.send_pdu(encoded)))
    sender.start()
    sim.wait_until(lambda: any(c.startswith("AT+CMGS") for c in sim.devices[0].modem.commands))
    assert modem.command("AT+CSQ").line("+CSQ:") == "+CSQ: 20,99"
    sender.join(5)
    assert isinstance(results.get(timeout=1), int)
    commands = sim.commands(0)
    assert commands.index("AT+CSQ") == commands.index(f"AT+CMGS={encoded.tpdu_length}") + 1
    assert [record.hex for record in sim.sent(0)] == [encoded.hex]


def test_rule1_missing_prompt_is_escaped_and_the_modem_is_usable_after(make_sim, open_modem):
    sim = make_sim()
    modem = open_modem(sim.devices[0].device)
    modem.settings.prompt_timeout = 0.3
    sim.fault(0, "no-prompt")
    encoded = pdu.encode_message(other_number(sim), "first")[0]
    with pytest.raises(PromptTimeout, match="no '> ' prompt"):
        modem.send_pdu(encoded)
    assert sim.sent(0) == []
    reference = modem.send_pdu(pdu.encode_message(other_number(sim), "second")[0])
    assert [record.reference for record in sim.sent(0)] == [reference]
    assert sim.sent(0)[0].text == "second"


def test_rule2_urc_in_the_middle_of_a_reply_is_a_urc_and_the_reply_is_intact(make_sim, open_modem):
    sim = make_sim()
    modem = open_modem(sim.devices[0].device)
    sim.inject_sms(0, "+15550001", "one")
    sim.inject_sms(0, "+15550002", "two")
    for _ in range(2):
        assert modem.events.get(timeout=2).name == "+CMTI"
    sim.fault(0, "urc-in-reply", line='+CMTI: "SM",7')
    stored = modem.list_stored()
    assert [(item.index, item.message.text) for item in stored] == [(1, "one"), (2, "two")]
    urc = modem.events.get(timeout=2)
    assert (urc.name, urc.params) == ("+CMTI", ("SM", "7"))


def test_rule2_urcs_before_the_prompt_and_before_the_result(make_sim, open_modem):
    sim = make_sim(send_latency=0.05)
    modem = open_modem(sim.devices[0].device)
    sim.fault(0, "urc-before-prompt")
    sim.fault(0, "urc-before-result")
    reference = modem.send_pdu(pdu.encode_message(other_number(sim), "interleaved")[0])
    assert sim.sent(0)[0].reference == reference
    names = {modem.events.get(timeout=2).name for _ in range(2)}
    assert names == {"+CIEV", "+CSQN"}


def test_rule3_final_results_end_replies_and_errors_are_classified(make_sim, open_modem):
    sim = make_sim()
    modem = open_modem(sim.devices[0].device)
    sim.fault(0, "cms-error", code=38)
    with pytest.raises(CmsError) as temporary:
        modem.send(other_number(sim), "x")
    assert (temporary.value.code, temporary.value.temporary) == (38, True)
    sim.fault(0, "cms-error", code=1)
    with pytest.raises(CmsError) as permanent:
        modem.send(other_number(sim), "x")
    assert (permanent.value.code, permanent.value.temporary) == (1, False)
    assert "unassigned" in str(permanent.value)


def test_rule4_a_late_reply_never_reaches_the_next_command(make_sim, open_modem):
    sim = make_sim()
    modem = open_modem(sim.devices[0].device)
    sim.fault(0, "delay-reply", seconds=0.6)
    with pytest.raises(ModemTimeout):
        modem.command("AT+CSQ", timeout=0.2)
    reply = modem.command("AT+CGSN")
    assert reply.lines == [sim.devices[0].modem.identity.imei]
    assert modem.command("AT+CSQ").lines == ["+CSQ: 20,99"]


def test_rule4_a_late_bare_ok_never_reaches_the_next_command(make_sim, open_modem):
    sim = make_sim()
    modem = open_modem(sim.devices[0].device)
    sim.fault(0, "delay-reply", seconds=0.5)
    with pytest.raises(ModemTimeout):
        modem.command("AT+CMGF=0", timeout=0.2)
    assert modem.command("AT+CIMI").lines == [sim.devices[0].modem.identity.imsi]


def test_rule4_garbage_bytes_do_not_stop_the_reader(make_sim, open_modem):
    sim = make_sim()
    modem = open_modem(sim.devices[0].device)
    sim.fault(0, "garbage", count=300)
    assert modem.command("AT+CGSN", timeout=1).lines[-1] == sim.devices[0].modem.identity.imei
    assert modem.link.lost is None


def test_rule4_a_hung_modem_times_out_and_recovers(make_sim, open_modem):
    sim = make_sim()
    modem = open_modem(sim.devices[0].device)
    sim.fault(0, "hang")
    with pytest.raises(ModemTimeout):
        modem.command("AT+CSQ", timeout=0.2)
    with pytest.raises(ModemTimeout, match="out of step"):
        modem.link.resync_timeout = 0.1
        modem.command("AT+CSQ", timeout=0.2)
    sim.fault(0, "unhang")
    assert modem.command("AT+CSQ").lines == ["+CSQ: 20,99"]


def test_rule5_unplug_during_a_send_fails_it_with_port_lost_within_a_second(make_sim, open_modem):
    sim = make_sim(send_latency=3.0)
    modem = open_modem(sim.devices[0].device)
    outcome = queue.Queue()

    def send():
        try:
            outcome.put(modem.send_pdu(pdu.encode_message(other_number(sim), "doomed")[0]))
        except Exception as error:  # the test inspects what was raised
            outcome.put(error)

    threading.Thread(target=send).start()
    sim.wait_until(lambda: sim.devices[0].modem.sent)
    unplugged = time.monotonic()
    sim.fault(0, "unplug")
    error = outcome.get(timeout=2)
    assert isinstance(error, PortLost)
    assert error.after_payload  # the PDU had gone out: a retry may duplicate it, and the pool flags it so
    assert time.monotonic() - unplugged < 1.0
    assert modem.events.get(timeout=1).name == "PORT-LOST"
    with pytest.raises(PortLost):
        modem.command("AT")


def test_closing_a_link_stops_its_reader_first_and_always_releases_the_port_lock(make_sim):
    """A reader left blocked on a closed descriptor kept the port's exclusive lock: the modem could never be opened
    again ("Could not exclusively lock port"). Closed while a command waits on a silent modem, 20 times over."""
    import serial

    sim = make_sim(count=1)
    device = sim.devices[0].device
    sim.fault(0, "hang")
    for _ in range(20):
        modem = Modem.open(device, FAST)
        outcome = queue.Queue()
        threading.Thread(target=lambda: outcome.put(pytest.raises(ModemError, modem.command, "AT+CSQ"))).start()
        assert eventually(lambda: modem.link._current is not None or not modem.link.dirty, 5)
        reader = modem.link._reader
        modem.close()
        assert not reader.is_alive()
        assert isinstance(outcome.get(timeout=2).value, PortLost)
    serial.Serial(device, exclusive=True).close()  # nobody holds the lock


def test_rule5_a_replugged_modem_is_found_by_imei_under_another_path(make_sim, open_modem, tmp_path):
    sim = make_sim(count=3)
    imei = sim.devices[1].modem.identity.imei
    first = open_modem(sim.devices[1].device)
    assert first.identity.imei == imei
    sim.fault(1, "replug", name="ttyUSB7")
    with pytest.raises(PortLost):  # the old handle is dead
        first.command("AT")
    candidates = sorted(path for path in glob.glob(str(tmp_path / "dev" / "*")) if not path.endswith(".sock"))
    assert str(tmp_path / "dev" / "sim1") not in candidates
    probes = [probe(path) for path in candidates]  # found by identity, wherever it reappeared
    [found] = [item.device for item in probes if item.identity and identity_matches(item.identity, imei, None)]
    assert found == str(tmp_path / "dev" / "ttyUSB7")
    again = open_modem(found)
    assert again.identity.imei == imei


# --- first contact ------------------------------------------------------------------------------------------------

LINE_EMULATOR_ANSWERS = {
    "AT": [], "ATE0": [], "AT+CMEE=1": [], "AT+CGMI": ["Acme"], "AT+CGMM": ["Line-9"], "AT+CGMR": ["1.0"],
    "AT+CGSN": ["356938035643809"], "AT+CIMI": ["234150000000001"], "AT+CCID": ["+CCID: 8944100000000000001"],
    "AT+CPIN?": ["+CPIN: READY"], "AT+CMGF=0": [], "AT+CSMS=1": ["+CSMS: 1,1,1"],
    'AT+CPMS="SM","SM","SM"': ["+CPMS: 0,30,0,30,0,30"], "AT+CNMI=2,1,0,2,0": [], "AT+CSQ": ["+CSQ: 20,99"],
    "AT+CREG?": ["+CREG: 0,1"], "AT+COPS=3,0": [], "AT+COPS?": ['+COPS: 0,0,"Emu"'],
}


class LineEmulator(threading.Thread):
    """The plainest modem emulator, independent of modemgw.sim: it reads CR-terminated lines from a pty, ignores
    every line that does not start with "AT" (ESC is a byte like any other, and nothing before an "AT" is
    skipped), echoes nothing, answers OK or a table's lines, and ERROR to anything else."""

    def __init__(self):
        super().__init__(name="line-emulator", daemon=True)
        self.answers = dict(LINE_EMULATOR_ANSWERS)
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.lines: list[str] = []  # every line received, answered or ignored
        self._stop_reading, self._stop_writing = os.pipe()

    def run(self) -> None:
        buffer = b""
        while True:
            ready, _, _ = select.select([self.master, self._stop_reading], [], [])
            if self._stop_reading in ready:
                return
            buffer += os.read(self.master, 1024)
            while b"\r" in buffer:
                raw, buffer = buffer.split(b"\r", 1)
                line = raw.decode("latin-1")
                self.lines.append(line)
                if not line.startswith("AT"):
                    continue
                answer = self.answers.get(line)
                reply = "ERROR" if answer is None else "".join(f"{item}\r\n" for item in answer) + "OK"
                os.write(self.master, f"\r\n{reply}\r\n".encode())

    def close(self) -> None:
        os.write(self._stop_writing, b"x")
        self.join(timeout=2)
        for descriptor in (self.master, self.slave, self._stop_reading, self._stop_writing):
            os.close(descriptor)


@pytest.fixture
def line_emulator():
    emulator = LineEmulator()
    emulator.start()
    yield emulator
    emulator.close()


def test_a_modem_emulator_that_ignores_any_line_not_starting_with_at_initialises(line_emulator):
    started = time.monotonic()
    modem = Modem.open(line_emulator.path, FAST)
    try:
        identity = modem.initialize()
        elapsed = time.monotonic() - started
        status = modem.network_status()
    finally:
        modem.close()
    assert (identity.manufacturer, identity.imei, identity.iccid) == ("Acme", "356938035643809",
                                                                      "8944100000000000001")
    assert (status.operator, status.signal.rssi, status.registration.registered) == ("Emu", 20, True)
    # the ESC went out on a line of its own, which the emulator ignored; the AT after it was answered at once
    assert line_emulator.lines[:3] == ["\x1b", "AT", "ATE0"]
    assert elapsed < 5.0


def test_resync_tries_alternate_esc_and_a_bare_at(line_emulator):
    line_emulator.answers = {}  # ERROR to everything: never a clean OK
    modem = Modem.open(line_emulator.path, ModemSettings(command_timeout=0.1, settle_attempts=4, settle_delay=0.01))
    try:
        with pytest.raises(ModemTimeout, match="no OK to AT after 4 tries"):
            modem.initialize()
    finally:
        modem.close()
    assert line_emulator.lines == ["\x1b", "AT", "AT", "\x1b", "AT", "AT"]


def test_a_port_where_nothing_answers_is_given_up_quickly_with_one_warning_naming_it(tmp_path, caplog):
    master, slave = pty.openpty()  # nothing reads or answers on the other side
    port = tmp_path / "ttyUSB2"
    port.symlink_to(os.ttyname(slave))
    caplog.set_level(logging.INFO, logger="modemgw")
    try:
        started = time.monotonic()
        found = probe(str(port), timeout=0.2)
        elapsed = time.monotonic() - started
        assert (found.answers_at, found.identity) == (False, None)
        assert "no OK to AT" in found.error
        assert elapsed < 2.5  # 2 tries of 0.2 s, not 2 x 5 resyncs of 2 s
        warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert warnings[0].startswith(f"{port}: no answer to AT after 2 tries")
        assert "is this the modem's AT port?" in warnings[0]
        caplog.clear()
        probe(str(port), timeout=0.2)  # asked again (the watcher's next scan): said once is enough
        assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    finally:
        os.close(master)
        os.close(slave)


def test_abort_stops_a_modem_settling_on_another_thread_at_once():
    master, slave = pty.openpty()
    modem = Modem.open(os.ttyname(slave), ModemSettings(command_timeout=1.0, settle_attempts=100, settle_delay=0.3))
    outcome = queue.Queue()

    def initialize():
        try:
            modem.initialize()
        except ModemError as error:
            outcome.put(error)

    try:
        threading.Thread(target=initialize).start()
        assert select.select([master], [], [], 5)[0]  # its first AT is out: it is settling
        aborted = time.monotonic()
        modem.abort()
        assert isinstance(outcome.get(timeout=2), PortLost)
        assert time.monotonic() - aborted < 1.0
    finally:
        os.close(master)
        os.close(slave)


class _Noticed(logging.Handler):
    """Sets `event` when a record at WARNING or above mentions `text`."""

    def __init__(self, text: str):
        super().__init__(logging.WARNING)
        self.text = text
        self.event = threading.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.messages.append(record.getMessage())
            self.event.set()


def test_with_default_settings_a_silent_port_is_named_in_a_warning_within_10_s(tmp_path):
    master, slave = pty.openpty()
    port = tmp_path / "ttyUSB3"
    port.symlink_to(os.ttyname(slave))
    noticed = _Noticed(str(port))
    logging.getLogger("modemgw").addHandler(noticed)
    modem = Modem.open(str(port), ModemSettings())
    outcome = queue.Queue()

    def initialize():
        try:
            modem.initialize()
        except ModemError as error:
            outcome.put(error)

    try:
        started = time.monotonic()
        threading.Thread(target=initialize).start()
        assert noticed.event.wait(10)
        assert time.monotonic() - started < 10
        expected = f"{port}: no answer to AT after 3 tries (1 s each, ESC+AT and bare AT); is this the modem's AT port?"
        assert noticed.messages == [expected]
        modem.abort()
        assert isinstance(outcome.get(timeout=2), PortLost)
    finally:
        logging.getLogger("modemgw").removeHandler(noticed)
        modem.close()
        os.close(master)
        os.close(slave)
