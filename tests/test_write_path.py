"""What one message costs the disk (#19): the pages a message's life writes to the write-ahead log, the commits
that must survive a power cut, and the timeline told from the rows instead of an event row per step."""

import json
import os
import sqlite3
import time

from modemgw.gateway import Gateway
from modemgw.store import Store
from modemgw.store.base import PAGE_SIZE, ROUTINE_EVENTS
from modemgw.views import message_view

# Bytes appended to the write-ahead log per message over its whole life (submitted alone, claimed, sent, one
# status report, one webhook delivery of the message's JSON stored and delivered), in KiB. Measured 19.3 on 512-byte
# pages when this was written (36.8 pages; 33.5 pages of 1 KiB, 34.7 KiB, before; the same life wrote 45 pages of
# 4 KiB, 180 KiB, before #19); the bound catches a routine event row, an index or a commit per message coming back,
# or bigger pages, not the noise of page splits.
MAX_KIB_PER_MESSAGE = 21


def wal_frames(path) -> int:
    size = os.path.getsize(f"{path}-wal")
    return 0 if size == 0 else (size - 32) // (PAGE_SIZE + 24)


def life(store: Store, gateway: Gateway, modem: dict, number: int) -> int:
    """One message from submit to its delivered webhook, through the store's functions the gateway's threads
    call, in this thread; the message's id."""
    message_id = gateway.submit(f"Your code is {number:06d}", f"+4477009{number:05d}")["messages"][0]["id"]
    now = time.time()
    claimed = store.claim_next(modem["id"], "a", None, [], now)
    assert claimed is not None and claimed.id == message_id
    store.record_part_sent(message_id, 1, modem["id"], number % 256, now, last=True)
    assert store.record_report(message_id, 1, modem["id"], "delivered", 0, now)["status"] == "delivered"
    payload = {"event": "message.delivered", "event_id": f"evt_{number}", "message_id": message_id,
               "status": "delivered", "message": message_view(gateway.message(message_id, timeline=False))}
    store.add_webhook_deliveries("message.delivered", message_id, [
        (None, "http://127.0.0.1:9/hook", f"evt_{number}", json.dumps(payload))], now)
    [delivery] = store.due_webhook_deliveries(now + 1, True, 0, set(), 10)
    store.record_webhook_attempt(delivery["id"], 1, now, 200, None, True)
    return message_id


def test_a_new_database_has_small_pages_and_incremental_vacuum(tmp_path):
    store = Store(tmp_path / "new.db")
    conn = store.connection()
    assert conn.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE == 512
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_existing_database_keeps_its_page_size(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    store = Store(path)
    assert store.connection().execute("PRAGMA page_size").fetchone()[0] == 4096
    assert store.connection().execute("PRAGMA auto_vacuum").fetchone()[0] == 0


def test_one_messages_life_writes_few_pages(tmp_path):
    store = Store(tmp_path / "w.db")
    gateway = Gateway(store)
    modem = store.attach_modem("356938030000005", "8944010000000000001", label="a")
    for number in range(20):  # the tables' first pages: not what a message costs in the long run
        life(store, gateway, modem, number)
    conn = store.connection()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA wal_autocheckpoint = 0")  # every frame stays in the log to be counted
    count = 100
    for number in range(20, 20 + count):
        life(store, gateway, modem, number)
    frames = wal_frames(store.path)
    assert frames > 0
    kib = frames * (PAGE_SIZE + 24) / 1024 / count
    assert kib <= MAX_KIB_PER_MESSAGE, f"{kib:.1f} KiB ({frames / count:.1f} pages) per message"
    assert conn.execute("SELECT COUNT(*) FROM events WHERE message_id IS NOT NULL").fetchone()[0] == 0  # none logged


def test_acknowledging_commits_are_synced_and_the_others_are_not(tmp_path):
    """A submit (answered 202, 250 or submit_sm_resp next), a claim (its PDU goes out next), a report and an
    inbound SMS (the modem forgets them next) commit with synchronous=FULL; a part's +CMGS with NORMAL (a power
    cut that loses it leaves the message sending: it is flagged a possible duplicate at start)."""
    store = Store(tmp_path / "d.db")
    gateway = Gateway(store)
    modem = store.attach_modem("356938030000005", "8944010000000000001", label="a")
    conn = store.connection()
    seen: list[str] = []
    conn.set_trace_callback(seen.append)

    def synced(action) -> bool:
        seen.clear()
        action()
        assert "COMMIT" in seen, seen
        pragmas = [statement for statement in seen[:seen.index("BEGIN IMMEDIATE")] if "synchronous" in statement]
        full = pragmas == ["PRAGMA synchronous=FULL"]
        assert "PRAGMA synchronous=NORMAL" in seen[seen.index("COMMIT"):] if full else not pragmas, seen
        return full

    submitted: dict = {}
    assert synced(lambda: submitted.update(gateway.submit("Hello", "+447700900123")))
    message_id = submitted["messages"][0]["id"]
    now = time.time()
    assert synced(lambda: store.claim_next(modem["id"], "a", None, [], now))
    assert not synced(lambda: store.record_part_sent(message_id, 1, modem["id"], 7, now, last=True))
    assert synced(lambda: store.record_report(message_id, 1, modem["id"], "delivered", 0, now))
    assert synced(lambda: store.insert_inbound(modem["id"], "+447700900123", "Hi", now, "key-1"))
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL again after each


def test_the_timeline_tells_the_routine_steps_from_the_rows(tmp_path):
    store = Store(tmp_path / "t.db")
    gateway = Gateway(store)
    modem = store.attach_modem("356938030000005", "8944010000000000001", label="a")
    delivered = life(store, gateway, modem, 1)
    timeline = gateway.message(delivered)["timeline"]
    assert [event["kind"] for event in timeline] == [
        "message.created", "message.sending", "part.sent", "message.sent", "part.report", "message.delivered"]
    assert [event["kind"] for event in timeline] == [kind for kind in ROUTINE_EVENTS if kind != "message.undelivered"]
    sent = timeline[2]
    assert (sent["modem_id"], sent["detail"]) == (modem["id"], {"seq": 1, "reference": 1})
    assert timeline[4]["detail"] == {"seq": 1, "outcome": "delivered", "code": 0}
    assert [event["at"] for event in timeline] == sorted(event["at"] for event in timeline)


def test_a_retried_message_keeps_each_attempt(tmp_path):
    store = Store(tmp_path / "r.db")
    gateway = Gateway(store)
    a = store.attach_modem("356938030000005", "8944010000000000001", label="a")
    b = store.attach_modem("356938030000013", "8944010000000000019", label="b")
    message_id = gateway.submit("Hello", "+447700900123")["messages"][0]["id"]
    now = time.time()
    store.claim_next(a["id"], "a", None, [], now)
    store.requeue(message_id, a["id"], now, "no network", code=30)
    store.claim_next(b["id"], "b", None, [], now + 1)
    store.record_part_sent(message_id, 1, b["id"], 9, now + 1.5, last=True)
    store.record_report(message_id, 1, b["id"], "pending", 48, now + 2)
    store.record_report(message_id, 1, b["id"], "failed", 65, now + 3)
    timeline = gateway.message(message_id)["timeline"]
    assert [(event["kind"], event["modem_id"]) for event in timeline] == [
        ("message.created", None), ("message.sending", a["id"]), ("message.retry", a["id"]),
        ("message.sending", b["id"]), ("part.sent", b["id"]), ("message.sent", b["id"]),
        ("part.report", b["id"]), ("part.report", b["id"]), ("message.undelivered", b["id"])]
    assert [event["detail"].get("outcome") for event in timeline if event["kind"] == "part.report"] == [
        "pending", "failed"]


def test_a_message_logged_before_the_change_keeps_its_logged_timeline(tmp_path):
    """Messages stored by an older modemgw have their routine steps in the event log: told once, not twice."""
    store = Store(tmp_path / "o.db")
    gateway = Gateway(store)
    message_id = gateway.submit("Hello", "+447700900123")["messages"][0]["id"]
    store.log_event("message.created", message_id)
    assert [event["kind"] for event in gateway.message(message_id)["timeline"]] == ["message.created"]


def test_a_message_claimed_ahead_is_flagged_only_once_it_was_handed_to_the_modem(tmp_path):
    """Claimed while the modem sends the one before (the durable claim off the send path), a message is handed
    over in the commit that records the send before it. A crash before that gives it back unflagged, after it
    flags it; after a reboot (a power cut may have lost that unsynced commit) it is flagged either way."""
    store = Store(tmp_path / "a.db")
    gateway = Gateway(store)
    modem = store.attach_modem("356938030000005", "8944010000000000001", label="a")
    first, second, third = (gateway.submit(f"m{n}", f"+44770090012{n}")["messages"][0]["id"] for n in range(3))
    now = time.time()
    assert store.claim_next(modem["id"], "a", None, [], now).id == first
    assert store.claim_next(modem["id"], "a", None, [], now, ahead=True).id == second
    assert store.message(second)["claimed_at"] is None
    assert {item["id"]: item["action"] for item in store.recover_in_flight(rebooted=False)}[second].startswith(
        "given back")
    after = store.message(second)
    assert (after["status"], after["possible_duplicate"], after["attempts"]) == ("queued", 0, 0)
    assert store.message(first)["possible_duplicate"] == 1  # it was at the modem

    assert store.claim_next(modem["id"], "a", None, [], now).id == first
    assert store.claim_next(modem["id"], "a", None, [], now, ahead=True).id == second
    store.record_part_sent(first, 1, modem["id"], 3, now, last=True, handed=second)
    assert store.message(second)["claimed_at"] == now
    assert store.claim_next(modem["id"], "a", None, [], now, ahead=True).id == third
    store.recover_in_flight(rebooted=False)
    assert (store.message(second)["possible_duplicate"], store.message(third)["possible_duplicate"]) == (1, 0)

    assert store.claim_next(modem["id"], "a", None, [], now).id == second  # flagged already
    assert store.claim_next(modem["id"], "a", None, [], now, ahead=True).id == third
    store.recover_in_flight(rebooted=True)
    assert store.query("SELECT COUNT(*) FROM messages WHERE possible_duplicate = 1")[0][0] == 3


def test_a_message_given_back_keeps_no_trace_of_the_claim(tmp_path):
    store = Store(tmp_path / "g.db")
    gateway = Gateway(store)
    modem = store.attach_modem("356938030000005", "8944010000000000001", label="a")
    message_id = gateway.submit("Hello", "+447700900123")["messages"][0]["id"]
    store.claim_next(modem["id"], "a", None, [], time.time(), ahead=True)
    store.give_back(message_id, modem["id"], pin=False)
    after = store.message(message_id)
    assert (after["status"], after["attempts"], after["claimed_at"], after["pinned_modem_id"]) == ("queued", 0, None,
                                                                                                   None)
    assert [event["kind"] for event in gateway.message(message_id)["timeline"]] == ["message.created"]


def test_only_a_submission_with_an_idempotency_key_keeps_its_result(tmp_path):
    """A replay answers with the first request's result, compared by the request's hash: nothing else reads them,
    so a submission without a key keeps neither (they were ~230 bytes of each single message's storage)."""
    store = Store(tmp_path / "r.db")
    gateway = Gateway(store)
    plain = gateway.submit("Hello", ["+447700900123", "+447700900124"])
    keyed = gateway.submit("Hello", "+447700900125", idempotency_key="order-7")
    rows = {row["id"]: row for row in store.query_dicts("SELECT id, body_hash, result FROM submissions")}
    assert (rows[plain["submission_id"]]["body_hash"], rows[plain["submission_id"]]["result"]) == ("", None)
    assert len(rows[keyed["submission_id"]]["body_hash"]) == 64
    assert json.loads(rows[keyed["submission_id"]]["result"]) == keyed
    replay = gateway.submit("Hello", "+447700900125", idempotency_key="order-7")
    assert replay == keyed | {"idempotent_replay": True}
    assert plain["messages"][1]["to"] == "+447700900124"  # the answer itself is whole either way
