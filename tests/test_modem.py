"""The driver against every simulated modem family, over real ptys."""

import pytest

from modemgw import pdu
from modemgw.errors import CmeError, CmsError, ModemError
from modemgw.modem import ModemSettings
from modemgw.sim import PROFILES
from tests.support import FAST

ALL_PROFILES = sorted(PROFILES)


def next_urc(modem, *names, timeout=2.0):
    """The next URC with one of `names`, passing over the chatter some families add (^RSSI, ^MODE, ...)."""
    while True:
        urc = modem.events.get(timeout=timeout)
        if urc.name in names:
            return urc


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_initialize_identifies_modem_and_sim(make_sim, open_modem, profile):
    sim = make_sim(count=1, profile=profile)
    modem = open_modem(sim.devices[0].device)
    simulated = sim.devices[0].modem
    identity = modem.identity
    assert identity.manufacturer == PROFILES[profile].manufacturer.strip()
    assert identity.model == PROFILES[profile].model.strip()
    assert (identity.imei, identity.imsi, identity.iccid, identity.number) == (
        simulated.identity.imei, simulated.identity.imsi, simulated.identity.iccid, simulated.identity.number)
    assert identity.profile == (profile if profile != "generic" else "generic")
    status = modem.network_status()
    assert status.registration.registered
    assert (status.signal.rssi, status.signal.dbm) == (20, -73)
    assert status.operator == "SimNet"
    assert status.smsc == simulated.identity.smsc


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_send_receive_and_status_report(make_sim, open_modem, profile):
    sim = make_sim(count=2, profile=profile, send_latency=0.01, report_delay=0.05)
    sender = open_modem(sim.devices[0].device)
    receiver = open_modem(sim.devices[1].device)
    body = "Grüße from the simulated network, long enough to need two parts. " * 3
    references = sender.send(receiver.identity.number, body, concat_reference=9)
    assert len(references) == 2
    assert [record.reference for record in sim.sent(0)] == references

    notices = [next_urc(receiver, "+CMTI") for _ in references]
    assert len(notices) == 2
    stored = receiver.list_stored()
    assert len(stored) == 2
    assert "".join(item.message.text for item in sorted(stored, key=lambda s: s.message.concat.sequence)) == body
    assert {item.message.sender.number for item in stored} == {sender.identity.number}
    for item in stored:
        receiver.delete_stored(item.index)
    assert receiver.list_stored() == []

    reports = []
    for _ in references:
        urc = next_urc(sender, "+CDS", "+CDSI")
        if urc.name == "+CDS":  # routed directly (SIM800 style): acknowledge after handling
            reports.append(pdu.decode(urc.pdu, tpdu_length=int(urc.params[-1])))
            sender.ack()
        else:
            storage, index = urc.params[0], int(urc.params[1])
            sender.select_storage(storage)
            item = sender.read_stored(index)
            sender.delete_stored(index)
            sender.select_storage("SM")
            reports.append(item.message)
    assert sorted(report.reference for report in reports) == sorted(references)
    assert {report.status for report in reports} == {"delivered"}


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_ussd_in_gsm7_and_ucs2(make_sim, open_modem, profile):
    sim = make_sim(count=1, profile=profile)
    modem = open_modem(sim.devices[0].device)
    assert modem.ussd("*100#").text == "Your balance is 12.50 EUR. Valid until 31/12/2026."
    assert modem.ussd("*101#").text == "Остаток: 100 ₽"
    assert modem.ussd("*#100#").text == modem.identity.number
    assert modem.ussd("*999#").status == 4


def test_direct_delivery_is_acknowledged_and_a_second_ack_is_refused(make_sim, open_modem):
    sim = make_sim(count=1)
    modem = open_modem(sim.devices[0].device)
    assert modem.needs_ack
    modem.command("AT+CNMI=2,2,0,1,0")
    sim.inject_sms(0, "+15550009", "direct to you")
    urc = next_urc(modem, "+CMT")
    assert pdu.decode(urc.pdu, tpdu_length=int(urc.params[-1])).text == "direct to you"
    modem.ack()
    with pytest.raises(CmsError) as refused:
        modem.ack()
    assert refused.value.code == 340


def test_unacknowledged_direct_delivery_is_stored_not_lost(make_sim, open_modem):
    sim = make_sim(count=1, ack_timeout=0.1)
    sim.network.settings.retry_delay = 0.05
    modem = open_modem(sim.devices[0].device)
    modem.command("AT+CNMI=2,2,0,1,0")
    sim.inject_sms(0, "+15550009", "ack me")
    assert modem.events.get(timeout=2).name == "+CMT"
    # No AT+CNMA: the modem stops routing (TS 27.005 3.4.1) and the network's retry lands in storage.
    sim.wait_until(lambda: sim.devices[0].modem.storages["SM"].slots)
    assert [item.message.text for item in modem.list_stored()] == ["ack me"]
    assert modem.command("AT+CNMI?").lines == ["+CNMI: 2,0,0,0,0"]


def test_undecodable_stored_message_is_kept_with_its_error(make_sim, open_modem):
    sim = make_sim(count=1)
    modem = open_modem(sim.devices[0].device)
    good = pdu.encode_deliver("+15550001", "fine", timestamp=pdu.dt.datetime(2026, 1, 1, tzinfo=pdu.dt.timezone.utc))
    broken = pdu.EncodedPdu(good.hex[:-6], good.tpdu_length - 3)
    from modemgw.sim.interpreter import Stored

    sim.call(lambda: [sim.devices[0].modem.storages["SM"].add(Stored(0, item)) for item in (good, broken)])
    stored = modem.list_stored()
    assert [item.message.text if item.message else None for item in stored] == ["fine", None]
    assert "PDU ends inside user data" in stored[1].error
    assert stored[1].pdu == broken.hex


def test_sim_pin_is_entered_from_settings(make_sim, open_modem):
    sim = make_sim(count=1)
    sim.fault(0, "pin", required=True)
    with pytest.raises(ModemError, match="asks for its PIN and none is configured"):
        open_modem(sim.devices[0].device)
    modem = open_modem(sim.devices[0].device, settings=ModemSettings(**{**vars(FAST), "pin": "1234"}))
    assert modem.pin_state() == "READY"


def test_wrong_pin_is_an_error_with_its_reason(make_sim, open_modem):
    sim = make_sim(count=1)
    sim.fault(0, "pin", required=True)
    with pytest.raises(CmeError, match="incorrect password"):
        open_modem(sim.devices[0].device, settings=ModemSettings(**{**vars(FAST), "pin": "0000"}))


def test_wavecom_busy_after_cfun_is_waited_out(make_sim, open_modem):
    sim = make_sim(count=1, profile="wavecom")
    modem = open_modem(sim.devices[0].device, initialize=False)
    modem.command("AT+CFUN=1")
    assert modem.initialize().imei == sim.devices[0].modem.identity.imei


def test_lost_registration_fails_sends_as_a_modem_fault(make_sim, open_modem):
    sim = make_sim(count=2)
    modem = open_modem(sim.devices[0].device)
    sim.fault(0, "registration", lost=True)
    assert not modem.registration().registered
    with pytest.raises(CmsError) as caught:
        modem.send(sim.devices[1].modem.identity.number, "x")
    assert (caught.value.code, caught.value.temporary, caught.value.modem_fault) == (331, True, True)


def test_raw_passthrough_returns_any_final(make_sim, open_modem):
    sim = make_sim(count=1, profile="huawei")
    modem = open_modem(sim.devices[0].device)
    assert modem.raw("AT+NOPE").final == "COMMAND NOT SUPPORT"
    assert modem.raw("AT^SYSINFO").lines == ["^SYSINFO: 2,3,0,5,1,,4"]


def test_messages_stored_while_nobody_listened_are_listed(make_sim, open_modem):
    sim = make_sim(count=1)
    sim.inject_sms(0, "+15550001", "while you were away")
    modem = open_modem(sim.devices[0].device)
    assert [(item.stat, item.message.text) for item in modem.list_stored()] == [(0, "while you were away")]
    assert [(item.stat, item.message.text) for item in modem.list_stored()] == [(1, "while you were away")]


def test_status_report_outcomes_follow_the_recipient_prefix(make_sim, open_modem):
    from modemgw.sim import NetworkSettings

    sim = make_sim(count=1, settings=NetworkSettings(report_delay=0.02, outcomes={"+1555": [0x21, 0x46]}))
    modem = open_modem(sim.devices[0].device)
    [reference] = modem.send("+15551234", "will expire")
    modem.send("+4930123456", "will arrive")
    modem.select_storage("SR")
    reports = []
    for _ in range(3):
        urc = next_urc(modem, "+CDSI")
        reports.append(modem.read_stored(int(urc.params[1])).message)
    by_recipient = sorted((r.recipient.number, r.status, r.status_code) for r in reports)
    assert by_recipient == [("+15551234", "failed", 0x46), ("+15551234", "pending", 0x21),
                            ("+4930123456", "delivered", 0)]
    assert {r.reference for r in reports if r.recipient.number == "+15551234"} == {reference}
    assert [r.reason for r in reports if r.status == "failed"] == ["validity period expired"]


def test_a_modem_refused_by_the_check_gets_no_pin(make_sim, open_modem):
    from modemgw.errors import WrongModem

    sim = make_sim(count=1)
    sim.fault(0, "pin", required=True)
    modem = open_modem(sim.devices[0].device, initialize=False)
    seen = []
    with pytest.raises(WrongModem, match="not the modem wanted"):
        modem.initialize(lambda identity: seen.append((identity.imei, identity.iccid)) or "not the modem wanted")
    identity = sim.devices[0].modem.identity
    assert seen == [(identity.imei, identity.iccid)]  # both known before the decision
    assert not any(command.startswith("AT+CPIN=") for command in sim.commands(0))
    assert sim.devices[0].modem.pin_attempts == 3


@pytest.mark.parametrize("given, card", [
    ('"89440100000000000019"', "89440100000000000019"),
    ("8944100000000000001F", "8944100000000000001"),      # odd length, F padding
    ("984401000000000000F1", "8944100000000000001"),      # nibble-swapped EF_ICCID with its padding
    ("98440100000000000091", "89441000000000000019"),
])
def test_iccids_are_compared_as_printed_on_the_card(given, card):
    from modemgw.modem import Identity, identity_matches, normalize_iccid

    assert normalize_iccid(given) == card
    assert identity_matches(Identity(imei="1", iccid=given), None, card)
