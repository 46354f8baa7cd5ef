"""The store's methods, called directly on real SQLite files: the schema and its migrations, the queue's order,
retries, status-report aggregation, the typed errors, and the reads the API and the web UI make."""

import hashlib
import sqlite3
import time

import pytest

from modemgw.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Conflict,
    Duplicate,
    NotFound,
    Store,
    StoreError,
    readonly,
)

TABLES = {"modems", "submissions", "messages", "parts", "events", "inbox", "inbox_parts", "inbox_seen", "optouts",
          "sticky", "api_keys", "users", "webhooks", "webhook_deliveries", "settings", "sessions", "audit",
          "inbound_rules", "autoreplies", "alert_notifications", "mail_outbox", "smpp_users", "smpp_outbox",
          "smpp_parts", "contacts", "contact_groups", "group_members", "templates", "stats_daily", "conversations",
          "webhook_payloads", "stats_took", "stats_periods"}


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "modemgw.db")
    yield store
    store.close()


def row(recipient="+447700900001", priority=0, due_at=None, segments=1, **fields):
    """A message row as the gateway prepares it."""
    now = time.time()
    return {"recipient": recipient, "body": "hello", "encoding": "gsm7", "segments": segments, "status": "queued",
            "priority": priority, "due_at": now - 1 if due_at is None else due_at, "created_at": now,
            "updated_at": now, "request_report": 1, **fields}


def submit(store, *rows, key=None) -> list[int]:
    result = store.insert_messages(list(rows), key, "hash", None, lambda submission, ids: {"ids": ids})
    return result["ids"]


def modem(store, label="a", imei="356938030000005", iccid="8944010000000000001"):
    return store.attach_modem(imei, iccid, label=label)["id"]


def claim(store, modem_id, label="a", others=(), now=None):
    return store.claim_next(modem_id, label, None, list(others), time.time() if now is None else now)


# --- schema -----------------------------------------------------------------------------------------------------

def tables(path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_an_empty_file_is_migrated_to_the_latest_schema(tmp_path):
    path = tmp_path / "empty.db"
    path.touch()
    store = Store(path)
    assert store.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
    assert tables(path) == TABLES
    store.close()


def test_a_new_database_is_its_owners_alone(tmp_path):
    Store(tmp_path / "new.db").close()
    assert (tmp_path / "new.db").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("version", range(1, len(MIGRATIONS)))
def test_every_older_schema_is_migrated_to_the_latest_keeping_its_rows(tmp_path, version):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for number, script in enumerate(MIGRATIONS[:version], start=1):
        conn.executescript(f"{script}; PRAGMA user_version = {number};")
    conn.execute("INSERT INTO submissions (idempotency_key, body_hash, created_at) VALUES ('k1', 'h', 0)")
    conn.commit()
    conn.close()
    store = Store(path)
    assert store.schema_version == SCHEMA_VERSION
    assert tables(path) == TABLES
    [submission] = store.query("SELECT idempotency_key FROM submissions")
    assert submission[0] == ("local:k1" if version < 5 else "k1")  # migration 5 scopes the keys made before it
    store.close()


def test_the_migrations_are_never_edited():
    """Existing databases have run these scripts: a change goes in a new migration at the end."""
    first_five = hashlib.sha256("\0".join(MIGRATIONS[:5]).encode()).hexdigest()
    assert first_five == "3d3ce8218bb5e602723d84fd3b8b23df3898db41b49b1195f94ed5c57ca3afd9"


def test_a_database_newer_than_this_modemgw_is_refused(tmp_path):
    conn = sqlite3.connect(tmp_path / "new.db")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this modemgw"):
        Store(tmp_path / "new.db")


# --- the queue --------------------------------------------------------------------------------------------------

def test_claims_take_the_highest_priority_then_the_oldest_and_only_what_is_due(store):
    a = modem(store)
    low_old, high, low_new = submit(store, row(priority=0), row(priority=5), row(priority=0))
    [later] = submit(store, row(priority=9, due_at=time.time() + 3600))
    assert [claim(store, a).id for _ in range(3)] == [high, low_old, low_new]
    assert claim(store, a) is None  # `later` is not due yet
    assert claim(store, a, now=time.time() + 7200).id == later
    message = store.message(high)
    assert (message["status"], message["modem_id"], message["attempts"]) == ("sending", a, 1)
    assert [event["kind"] for event in store.events(message_id=high)] == ["message.created", "message.sending"]


def test_a_claim_honours_the_route(store):
    a, b = modem(store, "a"), modem(store, "b", "356938030000013", "8944010000000000019")
    [routed] = submit(store, row(route_modem="b"))
    assert claim(store, a, "a") is None
    assert claim(store, b, "b").id == routed


def test_requeue_puts_a_message_back_counting_its_attempt_or_not(store):
    a = modem(store)
    [message_id] = submit(store, row())
    claim(store, a)
    store.requeue(message_id, a, time.time() - 1, "CMS 42 congestion", code=42)
    message = store.message(message_id)
    assert (message["status"], message["attempts"], message["avoid_modem_id"]) == ("queued", 1, a)
    assert message["error_reason"] == "CMS 42 congestion"
    assert claim(store, a, others=[("b", None)]) is None, "another modem can take it: this one avoids it"
    assert claim(store, a).id == message_id, "no other modem can: it comes back here"
    store.requeue(message_id, a, time.time() - 1, "network", count_attempt=False, pin=True)
    message = store.message(message_id)
    assert (message["attempts"], message["pinned_modem_id"], message["avoid_modem_id"]) == (1, a, None)
    assert store.pinned_to(a) == [message_id]


def test_requeue_leaves_a_message_that_is_no_longer_sending(store):
    a = modem(store)
    [message_id] = submit(store, row())
    assert store.cancel(message_id) == "canceled"
    store.requeue(message_id, a, time.time(), "late")
    assert store.message(message_id)["status"] == "canceled"


def send(store, message_id, modem_id, segments, first_reference=1):
    claim(store, modem_id)
    now = time.time()
    for seq in range(1, segments + 1):
        store.record_part_sent(message_id, seq, modem_id, first_reference + seq - 1, now, last=seq == segments)


def test_a_message_is_delivered_when_every_part_is(store):
    a = modem(store)
    [message_id] = submit(store, row(segments=2))
    send(store, message_id, a, 2)
    assert store.message(message_id)["status"] == "sent"
    first = store.record_report(message_id, 1, a, "delivered", 0, time.time())
    assert first == {"status": "sent", "report": "pending", "changed": False}
    second = store.record_report(message_id, 2, a, "delivered", 0, time.time())
    assert second == {"status": "delivered", "report": "delivered", "changed": True}
    assert store.modem(a)["delivered_total"] == 1 and store.modem(a)["sent_total"] == 1
    assert store.message(message_id)["delivered_at"] is not None


def test_a_message_is_undelivered_when_any_part_failed_for_good(store):
    a = modem(store)
    [message_id] = submit(store, row(segments=2))
    send(store, message_id, a, 2)
    outcome = store.record_report(message_id, 1, a, "failed", 65, time.time())
    assert outcome == {"status": "undelivered", "report": "failed", "changed": True}
    assert store.record_report(message_id, 2, a, "delivered", 0, time.time())["status"] == "undelivered"
    assert store.modem(a)["delivered_total"] == 0


def test_report_candidates_are_matched_by_modem_and_reference_newest_first(store):
    a = modem(store)
    old, new = submit(store, row(), row())
    send(store, old, a, 1, first_reference=7)
    send(store, new, a, 1, first_reference=7)
    assert [candidate["message_id"] for candidate in store.candidates_for_report(a, 7, 0)] == [new, old]
    assert store.candidates_for_report(a, 8, 0) == []


def test_a_crash_leaves_nothing_sending(store):
    a = modem(store)
    done, half, none = submit(store, row(), row(segments=2), row())
    for _ in range(3):
        claim(store, a)
    store.record_part_sent(done, 1, a, 1, time.time())
    store.record_part_sent(half, 1, a, 2, time.time())
    recovered = {item["id"]: item["action"] for item in store.recover_in_flight()}
    assert recovered == {done: "sent", half: "requeued", none: "requeued"}
    assert store.message(half)["pinned_modem_id"] == a and store.message(half)["possible_duplicate"] == 1
    assert store.message(none)["pinned_modem_id"] is None


def test_expiry_says_why(store):
    [message_id] = submit(store, row(expires_at=time.time() - 1, route_modem="gone"))
    assert store.expire_due(time.time()) == [message_id]
    message = store.message(message_id)
    assert message["status"] == "expired"
    assert message["error_reason"] == "not sent within its validity: modem gone (its route) could not send it"


# --- typed errors -----------------------------------------------------------------------------------------------

def test_a_taken_modem_label_is_a_duplicate(store):
    modem(store, "a")
    b = modem(store, "b", "356938030000013", "8944010000000000019")
    with pytest.raises(Duplicate) as raised:
        store.update_modem(b, label="a")
    assert isinstance(raised.value, Conflict) and raised.value.kind == "constraint"
    assert store.modem(b)["label"] == "b"
    assert store.write_failure is None, "a broken rule is not an unwell database"


def test_a_taken_user_name_is_a_duplicate(store):
    store.add_user("ann", "hash", "admin", time.time())
    with pytest.raises(Duplicate):
        store.add_user("ann", "other", "operator", time.time())


def test_a_used_idempotency_key_is_a_duplicate_and_stores_nothing(store):
    submit(store, row(), key="local:k")
    with pytest.raises(Duplicate):
        submit(store, row(), row(), key="local:k")
    assert store.status_counts() == {"queued": 1}
    assert store.find_submission("local:k")["result"] is not None


def test_another_broken_rule_is_a_conflict_not_a_duplicate(store):
    with pytest.raises(Conflict) as raised, store.transaction() as conn:
        conn.execute("INSERT INTO users (username, password_hash, role, created_at) VALUES ('x', NULL, 'admin', 0)")
    assert not isinstance(raised.value, Duplicate)


@pytest.mark.parametrize("code, kind", [(13, "full"), (5, "locked"), (11, "corrupt"), (8, "readonly"),
                                        (1, "error"), (2067, "constraint"), (1299, "constraint")])
def test_sqlite_error_codes_become_kinds(code, kind):
    error = sqlite3.OperationalError("no")
    error.sqlite_errorcode = code
    converted = StoreError.from_sqlite(error, "it failed")
    assert converted.kind == kind and str(converted) == "it failed"
    assert isinstance(converted, Duplicate) is (code == 2067)
    assert isinstance(converted, Conflict) is (kind == "constraint")


@pytest.mark.parametrize("call", [
    lambda store: store.message(999),
    lambda store: store.modem(999),
    lambda store: store.update_modem(999, label="x"),
    lambda store: store.cancel(999),
    lambda store: store.user(999),
    lambda store: store.revoke_key(999, time.time()),
    lambda store: store.inbox_message(999),
    lambda store: store.delete_inbox_message(999),
    lambda store: store.webhook(999),
    lambda store: store.delete_webhook(999),
    lambda store: store.deliveries_for_webhook(999),
    lambda store: store.redeliver_webhook_delivery(999, 1, time.time()),
], ids=["message", "modem", "update_modem", "cancel", "user", "revoke_key", "inbox_message",
        "delete_inbox_message", "webhook", "delete_webhook", "deliveries_for_webhook", "redeliver"])
def test_a_missing_row_is_not_found(store, call):
    with pytest.raises(NotFound):
        call(store)


# --- reads for the API and the web UI ---------------------------------------------------------------------------

def test_recent_messages_filter_and_page(store):
    a = modem(store)
    ids = submit(store, row("+447700900001", client_ref="r1"), row("+447700900002"), row("+447700900001"))
    claim(store, a)
    assert [m["id"] for m in store.recent_messages(10)] == ids[::-1]
    assert [m["id"] for m in store.recent_messages(2)] == ids[:0:-1]
    assert [m["id"] for m in store.recent_messages(10, before=ids[2])] == ids[1::-1]
    assert [m["id"] for m in store.recent_messages(10, recipient="+447700900001")] == [ids[2], ids[0]]
    assert [m["id"] for m in store.recent_messages(10, status="sending", modem_id=a)] == [ids[0]]
    assert [m["id"] for m in store.recent_messages(10, client_ref="r1")] == [ids[0]]
    assert [m["id"] for m in store.recent_messages(10, search="900002")] == [ids[1]]
    assert [m["id"] for m in store.recent_messages(10, search="r1")] == [ids[0]]
    assert store.recent_messages(10, since=time.time() + 60) == []
    assert len(store.recent_messages(10, until=time.time() + 60)) == 3


def test_dashboard_counts_and_send_times(store):
    a = modem(store)
    sent, _ = submit(store, row(), row())
    send(store, sent, a, 1)
    counts = {(item["modem_id"], item["kind"]): item["count"]
              for item in store.day_counts_by_modem(time.strftime("%Y-%m-%d"))}
    assert counts == {(a, "sent"): 1}  # the queued one left no SIM
    assert store.day_counts_by_modem("2000-01-01") == []
    assert store.sent_per_hour_since(time.time() - 60, 1) == {0: 1} and store.sent_per_hour_since(time.time(), 1) == {}


def test_inbox_pages_conversations_and_reading(store):
    a = modem(store)
    first = store.insert_inbound(a, "+447700900001", "one", None, "k1")
    second = store.insert_inbound(a, "+447700900002", "two", None, "k2")
    third = store.insert_inbound(a, "+447700900001", "three", None, "k3")
    assert store.insert_inbound(a, "+447700900001", "one", None, "k1") is None  # a duplicate
    assert [m["id"] for m in store.inbox(10)] == [third, second, first]
    assert [m["id"] for m in store.inbox(10, before=third, sender="+447700900001")] == [first]
    [latest, other] = store.conversations()
    assert (latest["sender"], latest["total"], latest["unread"], latest["latest"]) == ("+447700900001", 2, 2, "three")
    assert other["sender"] == "+447700900002"
    store.mark_read("+447700900001")
    assert [m["read"] for m in store.inbox_from("+447700900001")] == [1, 1]
    assert store.inbox_message(second)["body"] == "two"
    store.delete_inbox_message(second)
    assert [m["id"] for m in store.inbox(10)] == [third, first]


def test_concatenated_parts_come_out_whole_once(store):
    a = modem(store)
    args = dict(sender="+447700900001", reference=9, total=2, encoding="gsm7", sent_at=None)
    assert store.insert_inbound_part(a, seq=2, payload=b"B", dedupe_key="p2", **args) is None
    assert store.insert_inbound_part(a, seq=2, payload=b"B", dedupe_key="p2", **args) is None
    parts = store.insert_inbound_part(a, seq=1, payload=b"A", dedupe_key="p1", **args)
    assert [part["payload"] for part in parts] == [b"A", b"B"]
    assert store.stale_inbound_groups(time.time() + 1) == []


def test_api_keys_are_stored_hashed_and_revoked_once(store):
    key_id = store.add_api_key("app", "abcd1234", "hash", "send,read", None, None, time.time())
    assert store.api_key_by_prefix("abcd1234")["hash"] == "hash"
    assert store.api_key_by_prefix("nothere") is None
    assert "hash" not in store.api_keys()[0]
    store.revoke_key(key_id, time.time())
    assert store.api_keys()[0]["revoked_at"] is not None
    with pytest.raises(NotFound):
        store.revoke_key(key_id, time.time())


def test_webhook_outbox(store):
    hook = store.add_webhook("http://192.0.2.1/hook", ["message.sent"], "secret", time.time())
    assert store.webhooks() == [hook] and hook["events"] == "message.sent"
    [message_id] = submit(store, row(callback_url="http://192.0.2.2/cb"))
    assert store.callback_url(message_id) == "http://192.0.2.2/cb" and store.callback_url(999) is None
    now = time.time()
    store.add_webhook_deliveries("message.sent", message_id, [(hook["id"], hook["url"], "evt_1", "{}"),
                                                              (None, "http://192.0.2.2/cb", "evt_2", "{}")], now)
    assert store.webhook_backlog() == 2
    [subscription] = store.due_webhook_deliveries(now, False, 0, set(), 10)
    [callback] = store.due_webhook_deliveries(now, True, 0, set(), 10)
    assert (subscription["event_id"], callback["event_id"]) == ("evt_1", "evt_2")
    store.record_webhook_attempt(subscription["id"], 1, now, 500, "HTTP 500", None)
    assert store.deliveries_for_webhook(hook["id"])[0]["status"] == "dead"
    again = store.redeliver_webhook_delivery(hook["id"], subscription["id"], now)
    assert (again["status"], again["attempts"]) == ("pending", 0)
    with pytest.raises(NotFound):
        store.redeliver_webhook_delivery(hook["id"], callback["id"], now)  # not this subscription's
    store.delete_webhook(hook["id"])
    assert store.webhook_backlog() == 1  # the subscription's deliveries went with it


def test_settings_are_made_once(store):
    assert store.setting("secret", lambda: "first") == "first"
    assert store.setting("secret", lambda: "second") == "first"


# --- read-only looks at a file (the doctor) ---------------------------------------------------------------------

def test_read_only_checks_of_a_database_file(store, tmp_path):
    store.add_webhook_deliveries("modem.online", None, [(None, "http://192.0.2.2/cb", "evt_1", "{}")], 1000.0)
    assert readonly.quick_check(store.path) == ["ok"]
    assert readonly.webhook_backlog(store.path) == (1, 1000.0)
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError):
        readonly.quick_check(tmp_path / "junk.db")
    (tmp_path / "blank.db").touch()
    with pytest.raises(StoreError):
        readonly.webhook_backlog(tmp_path / "blank.db")
