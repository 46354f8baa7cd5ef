"""The AT engine rules (docs/design.md), each against the simulated modem over a real pty."""

import glob
import queue
import threading
import time

import pytest

from modemgw import pdu
from modemgw.errors import CmsError, ModemTimeout, PortLost, PromptTimeout
from modemgw.modem import locate


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
    assert time.monotonic() - unplugged < 1.0
    assert modem.events.get(timeout=1).name == "PORT-LOST"
    with pytest.raises(PortLost):
        modem.command("AT")


def test_rule5_a_replugged_modem_is_found_by_imei_under_another_path(make_sim, open_modem, tmp_path):
    sim = make_sim(count=3)
    imei = sim.devices[1].modem.identity.imei
    first = open_modem(sim.devices[1].device)
    assert first.identity.imei == imei
    sim.fault(1, "replug", name="ttyUSB7")
    first.command  # the old handle is dead: the next command fails with PortLost
    with pytest.raises(PortLost):
        first.command("AT")
    candidates = sorted(path for path in glob.glob(str(tmp_path / "dev" / "*")) if not path.endswith(".sock"))
    assert str(tmp_path / "dev" / "sim1") not in candidates
    found = locate(imei, candidates)
    assert found == str(tmp_path / "dev" / "ttyUSB7")
    again = open_modem(found)
    assert again.identity.imei == imei
