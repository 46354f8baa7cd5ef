"""Conversations belong to a SIM: a reply leaves from the SIM the customer texted (checked at the simulated modems,
not only in our store), or from another one with a note when that SIM cannot send; a number that wrote to a SIM
recently gets our messages from it. Real daemon, three simulated SIMs, the API over real HTTP."""

from modemgw import auth
from modemgw.gateway import SubmitRequest
from tests.support import Client

CUSTOMER = "+447700906001"


def inbound(daemon, sim: int, sender: str, body: str) -> dict:
    """Text `body` from `sender` to the simulated SIM `sim`; the inbox row once stored."""
    daemon.simulator.inject_sms(sim, sender, body)
    assert daemon.wait_until(lambda: any(row["body"] == body for row in daemon.store.inbox()), 10)
    return next(row for row in daemon.store.inbox() if row["body"] == body)


def sim_of(daemon, modem_id: int) -> int:
    """The simulator's index of the modem whose row is `modem_id` (bound by IMEI)."""
    imei = daemon.store.modem(modem_id)["imei"]
    return next(index for index, device in enumerate(daemon.simulator.devices)
                if device.modem.identity.imei == imei)


def sent_to(daemon, sim: int, number: str) -> list:
    return [record for record in daemon.simulator.sent(sim) if record.recipient == number]


def settled(daemon, ids) -> bool:
    return all(row["status"] in ("sent", "delivered") for row in daemon.store.messages(ids))


def test_each_reply_leaves_from_the_sim_the_customer_texted(start_daemon):
    daemon = start_daemon(modems=3)
    rows = [inbound(daemon, sim, CUSTOMER, f"Question to SIM {sim}") for sim in (2, 1, 0)]
    assert len({row["modem_id"] for row in rows}) == 3  # the inbox records which SIM received each
    ids = []
    for row in rows:
        result = daemon.gateway.reply(row["id"], f"Answer to {row['body']}")
        ids += [message["id"] for message in result["messages"]]
    assert daemon.wait_until(lambda: settled(daemon, ids), 15)
    for row in rows:
        sim = sim_of(daemon, row["modem_id"])
        assert sim == int(row["body"][-1])
        texts = [record for record in sent_to(daemon, sim, CUSTOMER)]
        assert len(texts) == 1, f"SIM {sim} sent {len(texts)} messages to the customer"
    conversations = daemon.gateway.conversations()
    assert sorted((c["modem_id"], c["sender"], c["total"]) for c in conversations) == sorted(
        (row["modem_id"], CUSTOMER, 1) for row in rows)  # one conversation per (our SIM, their number)
    thread = daemon.gateway.conversation(CUSTOMER, sim=rows[0]["modem_id"])
    assert [(item["direction"], item["body"]) for item in thread] == [
        ("in", "Question to SIM 2"), ("out", "Answer to Question to SIM 2")]


def test_a_reply_whose_sim_cannot_send_leaves_from_another_and_says_so(start_daemon):
    daemon = start_daemon(modems=2)
    row = inbound(daemon, 0, CUSTOMER, "Are you open today?")
    daemon.gateway.update_modem(row["modem_id"], enabled=False)
    assert not daemon.gateway.sim_can_send(row["modem_id"])
    [message] = daemon.gateway.reply(row["id"], "Yes, until six.")["messages"]
    assert daemon.wait_until(lambda: settled(daemon, [message["id"]]), 10)
    sent = daemon.store.messages([message["id"]])[0]
    assert sent["modem_id"] != row["modem_id"] and sent["prefer_modem_id"] == row["modem_id"]
    assert len(sent_to(daemon, sim_of(daemon, sent["modem_id"]), CUSTOMER)) == 1
    [out] = [item for item in daemon.gateway.conversation(CUSTOMER, sim=row["modem_id"]) if item["direction"] == "out"]
    assert out["other_sim"]  # the conversation shows that another SIM sent it


def test_a_number_that_wrote_recently_gets_our_messages_from_the_sim_it_wrote_to(start_daemon):
    daemon = start_daemon(modems=3)
    row = inbound(daemon, 1, CUSTOMER, "Hello")
    result = daemon.gateway.submit("Your appointment is at 10:00", [CUSTOMER, "+447700906002"])
    ids = [message["id"] for message in result["messages"]]
    assert daemon.wait_until(lambda: settled(daemon, ids), 10)
    first, other = daemon.store.messages(ids)
    assert first["prefer_modem_id"] == first["modem_id"] == row["modem_id"]
    assert other["prefer_modem_id"] is None  # never wrote to us: any SIM
    assert len(sent_to(daemon, 1, CUSTOMER)) == 1


def test_a_chosen_sim_or_route_wins_and_the_window_can_be_turned_off(start_daemon):
    daemon = start_daemon(modems=2, same_sim_days=0)
    row = inbound(daemon, 0, CUSTOMER, "Hi")
    [plain] = daemon.gateway.submit("No preference", CUSTOMER, request_report=False)["messages"]
    assert daemon.store.messages([plain["id"]])[0]["prefer_modem_id"] is None
    other = next(modem for modem in daemon.store.modems() if modem["id"] != row["modem_id"])
    [routed] = daemon.gateway.reply(row["id"], "From the other SIM", route=other["label"])["messages"]
    assert daemon.wait_until(lambda: settled(daemon, [routed["id"]]), 10)
    assert daemon.store.messages([routed["id"]])[0]["modem_id"] == other["id"]


def test_a_reply_to_an_opted_out_number_is_skipped_and_says_why(start_daemon):
    daemon = start_daemon(modems=1)
    row = inbound(daemon, 0, CUSTOMER, "STOP")
    result = daemon.gateway.reply(row["id"], "Sorry to see you go")
    assert result["messages"] == [] and result["skipped"][0]["reason"] == "opted out"
    assert daemon.store.recent_messages(10, recipient=CUSTOMER) == []


def test_the_api_replies_to_an_inbound_message_from_its_sim(start_daemon):
    daemon = start_daemon(modems=2, http=True)
    client = Client(daemon.url, auth.create_key(daemon.store, "app", ("send", "read"))[0])
    row = inbound(daemon, 1, CUSTOMER, "What time?")
    status, _, body = client.call("POST", f"api/v1/inbox/{row['id']}/reply", {"body": "Nine o'clock"})
    assert status == 202, body
    message_id = body["messages"][0]["id"]
    assert daemon.wait_until(lambda: settled(daemon, [message_id]), 10)
    status, _, message = client.call("GET", f"api/v1/messages/{message_id}")
    assert (message["to"], message["modem_id"], message["preferred_modem_id"], message["reply_to"]) == (
        CUSTOMER, row["modem_id"], row["modem_id"], row["id"])
    status, _, problem = client.call("POST", "api/v1/inbox/999999/reply", {"body": "x"})
    assert status == 404, problem
    status, _, problem = client.call("POST", f"api/v1/inbox/{row['id']}/reply", {"body": "x", "to": "+4477"})
    assert status == 400 and problem["field"] == "to"
    status, _, body = client.call("POST", "api/v1/messages", {"body": "Also by reply_to", "reply_to": row["id"]})
    assert status == 202 and body["messages"][0]["to"] == CUSTOMER


def test_plan_lists_every_bad_row_with_its_line_and_queues_nothing(start_daemon):
    daemon = start_daemon(modems=0)
    daemon.store.add_optout("+447700906009", "api")
    plan = daemon.gateway.plan(SubmitRequest("Hi {name}, see you at {time}.", recipients=[
        {"to": "+447700906001", "fields": {"name": "Ann", "time": "9:00"}, "line": 2},
        {"to": "12ab", "fields": {"name": "Bad", "time": "9:30"}, "line": 3},
        {"to": "+447700906003", "fields": {"name": "Short"}, "line": 5},
        {"to": "+447700906009", "fields": {"name": "Gone", "time": "10:00"}, "line": 6},
        {"to": "+447700906001", "fields": {"name": "Ann", "time": "9:00"}, "line": 7}]))
    assert [(row["line"], row["to"], row["text"]) for row in plan["accepted"]] == [
        (2, "+447700906001", "Hi Ann, see you at 9:00.")]
    assert [(row["line"], row["to"]) for row in plan["rejected"]] == [(3, "12ab"), (5, "+447700906003")]
    assert "no value for {time}" in plan["rejected"][1]["reason"]
    assert [(row["line"], row["reason"]) for row in plan["skipped"]] == [
        (6, "opted out"), (7, "duplicate recipient in this request")]
    assert (plan["segments"], plan["max_segments"]) == (1, 10)
    assert daemon.store.queue_depth() == 0
    too_long = daemon.gateway.plan(SubmitRequest("x" * 2000, ["+447700906001"]))
    assert too_long["accepted"] == [] and "14 segments" in too_long["rejected"][0]["reason"]
