"""A busy modem claims its next message while the network answers the current one (issue #19, the "Pi core" run):
the claim, a durable commit, leaves the send path. A message claimed ahead has never reached a modem: when it
cannot follow (the modem went away, stops, may not send now) it goes back to the queue unflagged, its attempt not
counted, for any modem.
"""

from __future__ import annotations

from tests.support import eventually


def statuses(daemon, ids: list[int]) -> list[str]:
    return [daemon.gateway.message(message_id, timeline=False)["status"] for message_id in ids]


def test_the_next_message_is_claimed_while_the_modem_sends(start_daemon):
    daemon = start_daemon(modems=1, send_latency=0.3, report_delay=3600)
    ids = [message["id"] for message in daemon.gateway.submit("ahead", ["+447700900201", "+447700900202",
                                                                         "+447700900203"])["messages"]]
    # the first at the modem, the second claimed ahead of it: both `sending` while the network answers the first
    assert eventually(lambda: statuses(daemon, ids)[:2] == ["sending", "sending"], 10), statuses(daemon, ids)
    assert eventually(lambda: statuses(daemon, ids) == ["sent"] * 3, 10), statuses(daemon, ids)
    for message_id in ids:
        message = daemon.gateway.message(message_id, timeline=False)
        assert message["attempts"] == 1 and not message["possible_duplicate"], message
    recipients = [record.recipient for record in daemon.simulator.devices[0].modem.sent]
    assert recipients == ["+447700900201", "+447700900202", "+447700900203"]  # in the queue's order


def test_a_message_claimed_ahead_goes_back_unflagged_when_its_modem_goes_away(start_daemon):
    daemon = start_daemon(modems=1, send_latency=0.5, report_delay=3600)
    first, second = [message["id"] for message in daemon.gateway.submit(
        "ahead", ["+447700900211", "+447700900212"])["messages"]]
    assert eventually(lambda: statuses(daemon, [first, second]) == ["sending", "sending"], 10)
    daemon.simulator.fault(0, "unplug")  # while the network answers the first: its PDU had gone out
    assert eventually(lambda: statuses(daemon, [first, second]) == ["queued", "queued"], 10)
    held = daemon.gateway.message(second, timeline=False)
    assert held["attempts"] == 0 and not held["possible_duplicate"], held  # it never reached the modem
    assert daemon.gateway.message(first, timeline=False)["possible_duplicate"]  # it may have gone out
    daemon.simulator.fault(0, "replug")
    assert eventually(lambda: statuses(daemon, [first, second]) == ["sent", "sent"], 15)
    sent = daemon.gateway.message(second, timeline=False)
    assert sent["attempts"] == 1 and not sent["possible_duplicate"], sent


def test_two_messages_on_two_idle_modems_go_out_one_each(start_daemon):
    daemon = start_daemon(modems=2, send_latency=0.3, report_delay=3600)
    ids = [message["id"] for message in daemon.gateway.submit("spread", ["+447700900221", "+447700900222"])[
        "messages"]]
    assert eventually(lambda: statuses(daemon, ids) == ["sent", "sent"], 10)
    # an idle modem takes the second message at once: the busy one does not claim it ahead for itself
    assert sorted(len(device.modem.sent) for device in daemon.simulator.devices) == [1, 1]
