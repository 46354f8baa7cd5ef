"""The AT console (modemgw.console) on a simulated modem over a real pty: what a person types, what they see."""

import io

import serial

from modemgw import pdu
from modemgw.console import Console
from modemgw.link import Link


def session(device, typed: str, timeout: float = 2.0) -> tuple[int, str]:
    port = serial.Serial(str(device), 115200, timeout=None, exclusive=True)
    out = io.StringIO()
    console: Console | None = None
    link = Link(port, on_urc=lambda urc: console.on_urc(urc) if console else None, name=str(device))
    console = Console(link, stdin=io.StringIO(typed), stdout=out, timeout=timeout)
    try:
        status = console.run()
    finally:
        link.close()
    return status, out.getvalue()


def test_commands_show_their_reply_final_result_and_time(make_sim):
    sim = make_sim(count=1)
    status, shown = session(sim.devices[0].device, "ATE0\nAT+CSQ\nAT+NOPE?\nhelp\nhello\nexit\n")
    assert status == 0
    assert "+CSQ: 20,99" in shown and "ERROR  (" in shown and "OK  (" in shown
    assert "Commands of the console itself" in shown and "not an AT command" in shown


def test_a_prompt_command_takes_the_next_line_and_an_empty_line_cancels_it(make_sim):
    sim = make_sim(count=2)
    encoded = pdu.encode_message(sim.devices[1].modem.identity.number, "typed at the console")[0]
    typed = f"ATE0\nAT+CMGS={encoded.tpdu_length}\n{encoded.hex}\nAT+CMGS={encoded.tpdu_length}\n\nexit\n"
    status, shown = session(sim.devices[0].device, typed, timeout=5)
    assert status == 0 and "+CMGS:" in shown
    assert [record.text for record in sim.sent(0)] == ["typed at the console"]  # the cancelled one never went


def test_timeout_is_set_by_the_console_command_and_a_bad_one_says_how(make_sim):
    sim = make_sim(count=1)
    _, shown = session(sim.devices[0].device, "timeout 3\ntimeout x\nexit\n")
    assert "timeout 3 s" in shown and "usage: timeout SECONDS" in shown


def test_an_unplugged_modem_ends_the_console_with_status_1(make_sim):
    sim = make_sim(count=1)
    sim.fault(0, "hang")  # the command waits; the unplug then ends it
    device = sim.devices[0].device
    port = serial.Serial(str(device), 115200, timeout=None, exclusive=True)
    out = io.StringIO()
    link = Link(port, name=str(device))
    console = Console(link, stdin=io.StringIO("AT+CSQ\nAT\n"), stdout=out, timeout=5)
    sim.fault(0, "unplug")
    try:
        assert console.run() == 1
    finally:
        link.close()
    assert "port lost" in out.getvalue()
