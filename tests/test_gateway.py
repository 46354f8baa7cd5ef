"""Submission rules and the store beneath them, on real SQLite files."""

import datetime as dt
import sqlite3
import time

import pytest

from modemgw import pdu, text
from modemgw.errors import CmsError, ModemTimeout, PortLost
from modemgw.gateway import Conflict, Gateway, GatewaySettings, Route, SubmitError, failure_outcome
from modemgw.store import MIGRATIONS, Claimed, Store, StoreError


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "modemgw.db")
    yield store
    store.close()


@pytest.fixture
def gateway(store):
    return Gateway(store, GatewaySettings(default_region="GB"))


def modem(store, imei="356938030000005", iccid="8944010000000000001", label="a", **fields):
    return store.attach_modem(imei, iccid, label=label, **fields)


def test_schema_is_migrated_once_and_reopens(tmp_path):
    first = Store(tmp_path / "x.db")
    assert first.schema_version == len(MIGRATIONS)
    first.close()
    assert Store(tmp_path / "x.db").schema_version == len(MIGRATIONS)
    conn = sqlite3.connect(tmp_path / "x.db")
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer than this modemgw"):
        Store(tmp_path / "x.db")


def test_submit_normalises_and_reports_encoding_and_segments(gateway, store):
    result = gateway.submit("Hi 😀", ["07700 900123", "+44 7700 900124"])
    assert [m["to"] for m in result["messages"]] == ["+447700900123", "+447700900124"]
    assert {(m["encoding"], m["segments"], m["status"]) for m in result["messages"]} == {("ucs2", 1, "queued")}
    assert store.queue_depth() == 2
    assert store.events(message_id=result["messages"][0]["id"])[0]["kind"] == "message.created"


@pytest.mark.parametrize("kwargs, field, detail", [
    (dict(body="", to="+447700900123"), "body", "body is empty"),
    (dict(body="x", to=None), "to", "'to' is missing"),
    (dict(body="x", to="+44 abc"), "to", "is not a phone number"),
    (dict(body="x", to="12"), "to", "is too short"),
    (dict(body="x" * 2000, to="+447700900123"), "body", "body needs 14 segments (2000 septets, gsm7); the limit is 10"),
    (dict(body="x", to="+447700900123", priority=1000), "priority", "from -100 to 100"),
    (dict(body="x", to="+447700900123", send_at="tomorrow"), "send_at", "not an ISO 8601 time"),
    (dict(body="x", to="+447700900123", validity=-5), "validity", "from 1 to 38102400"),
    (dict(body="x", to="+447700900123", route="nowhere"), "modem", "no modem or modem group is called 'nowhere'"),
    (dict(body="{a|b", to="+447700900123", spintax=True), "body", "unclosed '{'"),
    (dict(body="Hi {name}", recipients=[{"to": "+447700900123", "fields": {"nom": "x"}}]), "recipients",
     "no value for {name} (this recipient has nom)"),
])
def test_submit_errors_name_the_field(gateway, store, kwargs, field, detail):
    with pytest.raises(SubmitError) as caught:
        gateway.submit(**kwargs)
    assert caught.value.field == field
    assert detail in caught.value.detail
    assert store.queue_depth() == 0


def test_bad_recipient_is_named_and_nothing_is_stored(gateway, store):
    with pytest.raises(SubmitError) as caught:
        gateway.submit("x", ["+447700900123", "+44 nonsense"])
    assert caught.value.recipient == "+44 nonsense"
    assert "recipient 2" in caught.value.detail
    assert store.queue_depth() == 0


def test_ten_thousand_recipients_in_one_transaction(gateway, store):
    numbers = [f"+4477009{n:05d}" for n in range(10_000)]
    started = time.perf_counter()
    result = gateway.submit("Campaign: 20% off today", numbers)
    elapsed = time.perf_counter() - started
    assert len(result["messages"]) == 10_000
    assert store.queue_depth() == 10_000
    print(f"10,000 recipients accepted in {elapsed:.2f} s")  # measured for real in benchmarks/
    with pytest.raises(SubmitError, match="at most 10000"):
        gateway.submit("x", numbers + ["+447700912345"])


def test_full_disk_loses_nothing_and_says_so(tmp_path):
    store = Store(tmp_path / "small.db")
    gateway = Gateway(store, GatewaySettings())
    gateway.submit("before", "+447700900001")
    store.connection().execute("PRAGMA max_page_count = " + str(
        store.connection().execute("PRAGMA page_count").fetchone()[0] + 2))
    with pytest.raises(StoreError, match="full"):
        gateway.submit("x" * 150, [f"+4477009{n:05d}" for n in range(2000)])
    assert [m["body"] for m in store.messages(list(range(1, 10)))] == ["before"]


def test_idempotency_key_replays_and_conflicts(gateway, store):
    first = gateway.submit("OTP 1234", "+447700900123", idempotency_key="k1")
    again = gateway.submit("OTP 1234", "+447700900123", idempotency_key="k1")
    assert again["messages"] == first["messages"] and again["idempotent_replay"]
    assert store.queue_depth() == 1
    with pytest.raises(Conflict, match="different request"):
        gateway.submit("OTP 9999", "+447700900123", idempotency_key="k1")


def test_opted_out_recipients_are_reported_as_skipped(gateway, store):
    store.add_optout("+447700900124", "api")
    result = gateway.submit("Sale!", ["+447700900123", "+447700900124"])
    assert [m["to"] for m in result["messages"]] == ["+447700900123"]
    assert result["skipped"] == [{"to": "+447700900124", "reason": "opted out", "line": 2}]


def test_templates_and_spintax_per_recipient(gateway, store):
    result = gateway.submit("{Hi|Hello} {name}, your table is at {time}.", recipients=[
        {"to": "+447700900123", "fields": {"name": "Ann", "time": "19:00"}},
        {"to": "+447700900124", "fields": {"name": "Bo", "time": "20:30"}},
    ], spintax=True, seed=3)
    bodies = [m["body"] for m in store.messages([m["id"] for m in result["messages"]])]
    assert bodies[0].endswith("Ann, your table is at 19:00.") and bodies[1].endswith("Bo, your table is at 20:30.")
    assert all(body.split()[0] in ("Hi", "Hello") for body in bodies)


def test_scheduled_validity_priority_and_route(gateway, store):
    modem(store, label="office", grp="otp")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    result = gateway.submit("later", "+447700900123", send_at=later.isoformat(), validity=600, priority=5,
                            route="otp", client_ref="order-7")
    row = store.message(result["messages"][0]["id"])
    assert row["status"] == "scheduled"
    assert row["due_at"] == pytest.approx(later.timestamp(), abs=1)
    assert row["expires_at"] == pytest.approx(later.timestamp() + 600, abs=1)
    assert (row["priority"], row["route_group"], row["client_ref"]) == (5, "otp", "order-7")


def test_claim_order_priority_then_age_and_routes(gateway, store):
    a = modem(store, label="a", grp="bulk")
    b = modem(store, imei="356938030000013", iccid="8944010000000000019", label="b", grp="otp")
    gateway.settings.routes = [Route("+4477009002", group="otp")]
    low = gateway.submit("low", "+447700900123")["messages"][0]["id"]
    high = gateway.submit("high", "+447700900124", priority=9)["messages"][0]["id"]
    routed = gateway.submit("routed", "+447700900201")["messages"][0]["id"]
    now = time.time() + 1
    assert store.claim_next(a["id"], "a", "bulk", [("other", None)], now).id == high
    assert store.claim_next(a["id"], "a", "bulk", [("other", None)], now).id == low
    assert store.claim_next(a["id"], "a", "bulk", [("other", None)], now) is None  # routed to group otp
    assert store.claim_next(b["id"], "b", "otp", [("other", None)], now).id == routed


def test_retry_prefers_another_modem_unless_alone(gateway, store):
    a = modem(store, label="a")
    b = modem(store, imei="356938030000013", iccid="8944010000000000019", label="b")
    message_id = gateway.submit("x", "+447700900123")["messages"][0]["id"]
    now = time.time() + 1
    store.claim_next(a["id"], "a", None, [("other", None)], now)
    store.requeue(message_id, a["id"], now, "temporary failure", code=41)
    assert store.claim_next(a["id"], "a", None, [("b", None)], now + 1) is None
    assert store.claim_next(a["id"], "a", None, [], now + 1).id == message_id  # a is the only live modem
    store.requeue(message_id, a["id"], now, "temporary failure", code=41)
    assert store.claim_next(b["id"], "b", None, [("a", None)], now + 1).id == message_id


def test_a_routed_retry_comes_back_to_its_modem_when_no_other_modem_is_allowed(gateway, store):
    a = modem(store, label="a", grp="uk")
    modem(store, imei="356938030000013", iccid="8944010000000000019", label="b", grp="de")
    to_a = gateway.submit("x", "+447700900123", route="a")["messages"][0]["id"]
    to_uk = gateway.submit("y", "+447700900124", route="uk")["messages"][0]["id"]
    now = time.time() + 1
    assert [store.claim_next(a["id"], "a", "uk", [("b", "de")], now).id for _ in range(2)] == [to_a, to_uk]
    for message_id in (to_a, to_uk):
        store.requeue(message_id, a["id"], now, "congestion", code=42)
    # b is live but its label and group are not what either route allows: the retries come back to a
    assert store.claim_next(a["id"], "a", "uk", [("b", "de")], now + 1).id == to_a
    assert store.claim_next(a["id"], "a", "uk", [("b", "de")], now + 1).id == to_uk
    store.requeue(to_uk, a["id"], now, "congestion", code=42)
    assert store.claim_next(a["id"], "a", "uk", [("c", "uk")], now + 1) is None  # c of group uk may take it


def test_crash_recovery_requeues_only_unsent_parts_and_flags_duplicates(gateway, store):
    a = modem(store, label="a")
    whole = gateway.submit("one part", "+447700900123")["messages"][0]["id"]
    split = gateway.submit("x" * 300, "+447700900124")["messages"][0]["id"]
    now = time.time() + 1
    for _ in range(2):
        store.claim_next(a["id"], "a", None, [("other", None)], now)
    store.record_part_sent(whole, 1, a["id"], 10, now)
    store.record_part_sent(split, 1, a["id"], 11, now)
    recovered = {item["id"]: item["action"] for item in store.recover_in_flight()}
    assert recovered == {whole: "sent", split: "requeued"}
    row = store.message(split)
    assert (row["status"], row["possible_duplicate"], row["pinned_modem_id"]) == ("queued", 1, a["id"])
    claimed = store.claim_next(a["id"], "a", None, [("other", None)], now)
    assert claimed.id == split and claimed.sent_parts == {1: 11}


def report(reference, recipient, code):
    moment = dt.datetime.now(dt.UTC)
    return pdu.StatusReport(reference, pdu.Address(recipient, "international", 0x91), moment, moment, code)


def test_reports_match_modem_reference_and_recipient_newest_first(gateway, store):
    a = modem(store, label="a")
    old = gateway.submit("old", "+447700900123")["messages"][0]["id"]
    new = gateway.submit("new", "+447700900124")["messages"][0]["id"]
    now = time.time()
    for message_id, at in ((old, now - 100), (new, now)):
        store.claim_next(a["id"], "a", None, [("other", None)], now + 1)
        store.record_part_sent(message_id, 1, a["id"], 42, at)
        store.mark_sent(message_id, a["id"], at)
    assert gateway.handle_report(a["id"], report(42, "+447700900124", 0))["message_id"] == new
    assert store.message(new)["status"] == "delivered"
    assert gateway.handle_report(a["id"], report(42, "07700900123", 0x46))["message_id"] == old  # national form
    assert store.message(old)["status"] == "undelivered"
    assert gateway.handle_report(a["id"], report(43, "+447700900124", 0)) is None
    assert store.events()[0]["kind"] == "report.unmatched"


def test_multipart_message_is_delivered_when_every_part_is(gateway, store):
    a = modem(store, label="a")
    message_id = gateway.submit("y" * 300, "+447700900123")["messages"][0]["id"]
    store.claim_next(a["id"], "a", None, [("other", None)], time.time() + 1)
    for seq, reference in ((1, 7), (2, 8)):
        store.record_part_sent(message_id, seq, a["id"], reference, time.time())
    store.mark_sent(message_id, a["id"], time.time())
    gateway.handle_report(a["id"], report(7, "+447700900123", 0))
    assert store.message(message_id)["status"] == "sent"
    gateway.handle_report(a["id"], report(8, "+447700900123", 0x21))
    assert store.message(message_id)["report"] == "pending"
    gateway.handle_report(a["id"], report(8, "+447700900123", 0))
    row = store.message(message_id)
    assert (row["status"], row["report"]) == ("delivered", "delivered") and row["delivered_at"]


def test_no_report_by_the_deadline_leaves_sent_with_report_none(gateway, store):
    a = modem(store, label="a")
    message_id = gateway.submit("z", "+447700900123")["messages"][0]["id"]
    store.claim_next(a["id"], "a", None, [("other", None)], time.time() + 1)
    store.record_part_sent(message_id, 1, a["id"], 1, time.time() - 10)
    store.mark_sent(message_id, a["id"], time.time() - 10)
    gateway.settings.report_deadline = 5
    assert gateway.close_overdue_reports() == 1
    assert (store.message(message_id)["status"], store.message(message_id)["report"]) == ("sent", "none")


def deliver_parts(body, sender="+447700900555", reference=77, bits=8):
    pieces = text.split(body, concat_bits=bits)
    moment = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
    return [pdu.decode(pdu.encode_deliver(sender, piece, text.choose_encoding(body), timestamp=moment,
                                          concat=pdu.Concat(reference, len(pieces), n, bits)).hex)
            for n, piece in enumerate(pieces, start=1)]


@pytest.mark.parametrize("bits", [8, 16])
def test_inbound_parts_in_any_order_make_one_message_once(gateway, store, bits):
    body = "Grüße 😀 " * 20
    parts = deliver_parts(body, bits=bits)
    assert len(parts) == 3
    results = [gateway.handle_inbound(1, parts[index]) for index in (2, 0, 1)]
    assert results[:2] == [None, None] and results[2] is not None
    assert [gateway.handle_inbound(1, part) for part in parts] == [None, None, None]  # duplicates dropped
    assert [(row["body"], row["parts"], row["partial"]) for row in store.inbox()] == [(body, 3, 0)]


def test_incomplete_inbound_is_flushed_partial_after_the_timeout(gateway, store):
    parts = deliver_parts("w" * 400)
    gateway.handle_inbound(1, parts[0])
    gateway.handle_inbound(1, parts[2])
    gateway.settings.inbound_assembly_timeout = -1
    [inbox_id] = gateway.flush_stale_inbound()
    row = store.inbox()[0]
    assert row["id"] == inbox_id and row["partial"] == 1
    assert row["body"].endswith("[parts 2 of 3 never arrived]")


def test_stop_and_start_keywords_maintain_the_opt_out_list(gateway, store):
    moment = dt.datetime.now(dt.UTC)
    for body in ("stop", "START", "Stop."):
        gateway.handle_inbound(1, pdu.decode(pdu.encode_deliver("+447700900555", body, timestamp=moment).hex))
        moment += dt.timedelta(seconds=1)
    assert [row["number"] for row in store.optouts()] == ["+447700900555"]
    assert len(store.inbox()) == 3


def test_expiry_and_cancel(gateway, store):
    expiring = gateway.submit("x", "+447700900123", validity=1)["messages"][0]["id"]
    cancelable = gateway.submit("y", "+447700900124")["messages"][0]["id"]
    store.connection().execute("UPDATE messages SET expires_at = 0 WHERE id = ?", (expiring,))
    assert gateway.expire() == [expiring]
    assert gateway.cancel(cancelable) == "canceled"
    assert gateway.cancel(expiring) == "expired"
    assert store.queue_depth() == 0


def test_migration_2_keeps_webhook_deliveries(tmp_path):
    conn = sqlite3.connect(tmp_path / "old.db")
    conn.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    conn.execute("INSERT INTO webhooks (id, url, events, secret, created_at) VALUES (1, 'http://h/x', '*', 's', 0)")
    conn.execute("INSERT INTO webhook_deliveries (webhook_id, event, payload, status, created_at) "
                 "VALUES (1, 'message.sent', '{}', 'pending', 0)")
    conn.commit()
    conn.close()
    store = Store(tmp_path / "old.db")
    [row] = store.query("SELECT url, event, event_id, status FROM webhook_deliveries")
    assert tuple(row) == ("http://h/x", "message.sent", "evt_1", "pending")


# --- send outcomes: the worker says what happened, the gateway decides (docs/design.md, "Error classes") ------

OUTCOME_SETTINGS = GatewaySettings(retry_base=5.0, retry_max=600.0, max_attempts=3)
MAY_BE_SENT = " (after its PDU was written: it may have been sent)"


def claimed(attempts=1, sent_parts=None, message_id=1):
    return Claimed(message_id, "+447700900123", "x", "gsm7", 1, True, None, None, attempts, dict(sent_parts or {}))


@pytest.mark.parametrize("error, attempts, left, expected", [
    # a message that cannot be encoded fails at once
    (pdu.PduError("bad"), 1, False, dict(retry=False, reason="cannot encode: bad", count_attempt=True)),
    # the message's own refusal: permanent fails; temporary retries after a doubling backoff, spending attempts
    (CmsError(1), 1, False, dict(retry=False, code=1, count_attempt=True)),
    (CmsError(42), 1, False, dict(retry=True, code=42, delay=5.0, count_attempt=True)),
    (CmsError(42), 2, False, dict(retry=True, code=42, delay=10.0, count_attempt=True)),
    (CmsError(500), 3, False, dict(retry=False, code=500, count_attempt=True,
                                   reason="gave up after 3 attempts: +CMS ERROR 500: unknown error")),
    # the network's or the modem's side: back at once, no attempt spent, however many there were
    (CmsError(38), 9, False, dict(retry=True, code=38)),
    (CmsError(310), 9, True, dict(retry=True, code=310)),  # an answer: the PDU did not leave
    (ModemTimeout("no +CMGS"), 9, False, dict(retry=True)),
    # a PDU that may have left: flagged and counted, back at once (never on a backoff), given up at the limit
    (ModemTimeout("no +CMGS"), 1, True, dict(retry=True, count_attempt=True, possible_duplicate=True,
                                             reason="no +CMGS" + MAY_BE_SENT)),
    (PortLost("gone"), 3, True, dict(retry=False, count_attempt=True, possible_duplicate=True,
                                     reason="gave up after 3 attempts: gone" + MAY_BE_SENT)),
    # the database or a bug: the modem is not to blame, so the retry need not avoid it
    (RuntimeError("bug"), 1, False, dict(retry=True, avoid=False)),
    (RuntimeError(), 1, True, dict(retry=True, avoid=False, count_attempt=True, possible_duplicate=True,
                                   reason="RuntimeError" + MAY_BE_SENT)),
])
def test_the_failure_outcome_follows_the_error_classes(error, attempts, left, expected):
    outcome = failure_outcome(claimed(attempts), error, left, OUTCOME_SETTINGS)
    expected.setdefault("reason", str(error))
    assert {key: getattr(outcome, key) for key in expected} == expected
    for key, default in (("delay", 0.0), ("count_attempt", False), ("possible_duplicate", False), ("avoid", True),
                         ("code", None)):
        if key not in expected:
            assert getattr(outcome, key) == default, key


def test_a_retry_of_a_message_whose_first_parts_went_out_is_pinned_to_its_modem():
    assert failure_outcome(claimed(sent_parts={1: 7}), PortLost("gone"), False, OUTCOME_SETTINGS).pin
    assert not failure_outcome(claimed(), PortLost("gone"), False, OUTCOME_SETTINGS).pin


@pytest.fixture
def outcomes(store):
    """A gateway whose wake-ups and events are recorded, with one modem and one message claimed by it."""
    gateway = Gateway(store, OUTCOME_SETTINGS)
    seen = []
    gateway.wake = lambda count: seen.append(("wake", count))
    gateway.wake_at = lambda when: seen.append(("wake_at", when))
    gateway.subscribe(lambda event, data: seen.append((event, data)))
    a = modem(store)
    message_id = gateway.submit("x", "+447700900123", request_report=False)["messages"][0]["id"]
    seen.clear()
    return gateway, a["id"], message_id, seen


def test_a_temporary_refusal_requeues_after_the_backoff_and_wakes_the_pool_then(outcomes, store):
    gateway, modem_id, message_id, seen = outcomes
    now = time.time() + 1
    taken = store.claim_next(modem_id, "a", None, [("other", None)], now)
    outcome = gateway.send_failed(taken, CmsError(42), modem_id, now=now)
    assert (outcome.retry, outcome.delay) == (True, 5.0)
    row = store.message(message_id)
    assert (row["status"], row["due_at"], row["error_code"], row["avoid_modem_id"]) == ("queued", now + 5, 42, modem_id)
    assert seen == [("wake_at", now + 5)]


def test_a_network_refusal_requeues_at_once_without_spending_an_attempt(outcomes, store):
    gateway, modem_id, message_id, seen = outcomes
    now = time.time() + 1
    taken = store.claim_next(modem_id, "a", None, [("other", None)], now)
    gateway.send_failed(taken, CmsError(38), modem_id, now=now)
    row = store.message(message_id)
    assert (row["status"], row["due_at"], row["attempts"]) == ("queued", now, taken.attempts - 1)
    assert seen == [("wake", 1)]


def test_a_permanent_refusal_fails_the_message_and_says_why(outcomes, store):
    gateway, modem_id, message_id, seen = outcomes
    taken = store.claim_next(modem_id, "a", None, [("other", None)], time.time() + 1)
    gateway.send_failed(taken, CmsError(1), modem_id)
    row = store.message(message_id)
    assert (row["status"], row["error_code"]) == ("failed", 1)
    assert seen == [("message.failed", {"id": message_id, "code": 1, "reason": str(CmsError(1))})]


def test_the_last_part_sent_marks_the_message_sent_and_announces_it(outcomes, store):
    gateway, modem_id, message_id, seen = outcomes
    now = time.time() + 1
    taken = store.claim_next(modem_id, "a", None, [("other", None)], now)
    gateway.part_sent(taken, 1, modem_id, 77, now, last=True)
    row = store.message(message_id)
    assert (row["status"], [part["tp_mr"] for part in row["parts"]]) == ("sent", [77])
    assert seen == [("message.sent", {"id": message_id, "modem_id": modem_id})]


def test_an_outcome_the_database_refuses_raises_and_is_recorded_and_announced_when_made_again(outcomes, store,
                                                                                           tmp_path):
    gateway, modem_id, message_id, seen = outcomes
    now = time.time() + 1
    taken = store.claim_next(modem_id, "a", None, [("other", None)], now)
    other = sqlite3.connect(tmp_path / "modemgw.db", isolation_level=None)  # another writer holds the database
    other.execute("BEGIN IMMEDIATE")
    store.connection().execute("PRAGMA busy_timeout = 50")
    try:
        with pytest.raises(StoreError):
            gateway.send_failed(taken, CmsError(1), modem_id, now=now)
        assert store.message(message_id)["status"] == "sending" and seen == []  # nothing recorded, nothing said
    finally:
        other.execute("ROLLBACK")
        other.close()
    gateway.send_failed(taken, CmsError(1), modem_id, now=now)  # the worker's replay (ModemWorker._durably)
    assert store.message(message_id)["status"] == "failed"
    assert [event for event, _ in seen] == ["message.failed"]
