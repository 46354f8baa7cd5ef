"""The hot queries find their rows through an index or the primary key, never by reading a whole table (#19).

Each case calls the real store or gateway function over a seeded database (`modemgw.store.seed`) while the store's
own connection traces what it runs (`set_trace_callback`, which gives the statement with its values), then asks
SQLite for the plan of every statement traced (`EXPLAIN QUERY PLAN`). A step that reads a table or an index whole
(`SCAN messages`, `SCAN p USING INDEX ...`) fails the case, naming the statement and its plan: a million messages
would make it slow (benchmarks/million.py times them). Scans of small tables (modems, webhooks), of a constant
row, of json_each's values and of a subquery's or CTE's own results are not reads of a big table. A case may allow
a scan in primary-key order that stops at its LIMIT (the newest page of an unfiltered list): named in the case.
"""

from __future__ import annotations

import collections
import datetime as dt
import time

import pytest

from modemgw.gateway import Gateway
from modemgw.store import Store
from modemgw.store.seed import seed_messages

# Tables that stay small whatever the traffic (a scan of them is cheap), and indexes a plan may walk in order from
# one end: a partial index of the queued messages (the claim), the conversations by their latest message (the
# list stops at its LIMIT), and the partial index of the scheduled messages by batch (it holds only those: Scheduled
# sums them all up, never the history).
SMALL = {"modems", "webhooks", "users", "api_keys", "settings", "sticky", "optouts", "sqlite_master",
         "smpp_users"}
ORDERED = {"messages_queue", "conversations_last", "messages_batches"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("plans") / "modemgw.db")
    seed_messages(store, 3_000, days=60, contacts=200, audit=300)
    yield Gateway(store)
    store.close()


def traced(store: Store, call) -> list[str]:
    """The statements `call()` runs on this thread's connection (triggers' own statements left out)."""
    statements: list[str] = []
    conn = store.connection()
    conn.set_trace_callback(statements.append)
    try:
        call()
    finally:
        conn.set_trace_callback(None)
    return [sql for sql in statements if sql.lstrip().split(" ", 1)[0].upper() in ("SELECT", "WITH", "UPDATE",
                                                                                   "DELETE")]


def table_scans(store: Store, sql: str, allowed: set[str]) -> list[str]:
    """The plan's steps that read a table (or an index) whole: `SCAN <table or alias>` other than of a small table,
    a subquery's or CTE's own rows, json_each's values, an ORDERED index, or a name in `allowed`."""
    plan = [row[3] for row in store.connection().execute(f"EXPLAIN QUERY PLAN {sql}")]
    own = {step.split()[1] for step in plan if step.split()[0] in ("MATERIALIZE", "CO-ROUTINE")}
    bad = []
    for step in plan:
        words = step.split()
        if words[0] != "SCAN" or len(words) < 2 or "VIRTUAL TABLE" in step:
            continue
        name, index = words[1], words[-1] if "INDEX" in words else None
        if name in own or name in SMALL or name == "CONSTANT" or index in ORDERED or name in allowed:
            continue
        bad.append(step)
    return bad


NOW = time.time()
DAY = 86400.0


def cases(gateway: Gateway) -> list[tuple[str, object, set[str]]]:
    store = gateway.store
    newest = store.query("SELECT id FROM messages ORDER BY id DESC LIMIT 1")[0][0]
    middle = newest // 2
    recipient = store.query("SELECT recipient FROM messages WHERE id = ?", (middle,))[0][0]
    ref = store.query("SELECT client_ref FROM messages WHERE client_ref IS NOT NULL LIMIT 1")[0][0]
    sender, sim = store.query("SELECT sender, modem_id FROM inbox ORDER BY id DESC LIMIT 1")[0]
    webhook = store.query("SELECT MIN(id) FROM webhooks")[0][0]
    submission = store.query("SELECT submission_id FROM messages WHERE id = ?", (middle,))[0][0]
    inbox_id = store.query("SELECT MAX(id) FROM inbox")[0][0]
    smpp_message = store.query("SELECT MAX(id) FROM messages WHERE status = 'delivered'")[0][0]
    if not store.smpp_users():  # an SMPP client with a receipt waiting for a delivered message
        user = store.add_smpp_user("plans", "x", None, True, NOW - 30 * DAY)
        with store.transaction() as conn:
            conn.execute("UPDATE messages SET smpp_user_id = ?, request_report = 1 WHERE id = ?", (user, smpp_message))
        store.note_smpp_receipt(user, smpp_message, {"id": "x"}, NOW)
    today = dt.date.today()
    return [
        ("queue claim", lambda: store.claim_next(1, "sim-1", None, [("sim-2", None)], NOW, sticky_to=[1, 2],
                                                 sending=[1, 2]), set()),
        ("scheduled release", lambda: store.release_scheduled(NOW - 30 * DAY), set()),
        ("expiry", lambda: store.expire_due(NOW - 30 * DAY), set()),
        ("next due", lambda: store.next_due(), set()),
        ("queue depth", lambda: gateway.queue_depth(), set()),
        ("report matching", lambda: store.candidates_for_report(1, 17, NOW - 3 * DAY), set()),
        ("webhook due deliveries", lambda: store.due_webhook_deliveries(NOW, False, 0, set(), 50), set()),
        ("webhook due callbacks", lambda: store.due_webhook_deliveries(NOW, True, 0, {"https://x.example"}, 50),
         set()),
        ("webhook next attempt", lambda: store.next_webhook_attempt_after(NOW), set()),
        ("webhook delivery log", lambda: store.deliveries_for_webhook(webhook, 51, status="dead"), set()),
        ("webhook delivery counts", lambda: store.webhook_delivery_counts(webhook), set()),
        # the newest page reads the primary key backwards and stops at its LIMIT
        ("message list", lambda: gateway.messages(51), {"messages"}),
        ("message list, older page", lambda: gateway.messages(51, before=middle), {"messages"}),
        ("message list, status", lambda: gateway.messages(51, status="failed"), set()),
        ("message list, recipient", lambda: gateway.messages(51, recipient=recipient), set()),
        ("message list, SIM", lambda: gateway.messages(51, modem_id=2, before=middle), set()),
        ("message list, client_ref", lambda: gateway.messages(51, client_ref=ref), set()),
        ("message list, since", lambda: gateway.messages(51, since=NOW - 10 * DAY), set()),
        ("message list, until", lambda: gateway.messages(51, until=NOW - 30 * DAY), set()),
        ("message list, since and until", lambda: gateway.messages(51, since=NOW - 40 * DAY, until=NOW - 30 * DAY),
         set()),
        ("message list, until and status", lambda: gateway.messages(51, until=NOW - 30 * DAY, status="failed"),
         set()),
        ("message detail", lambda: gateway.message(middle), set()),
        ("conversations", lambda: gateway.conversations(200), set()),
        ("one conversation", lambda: gateway.conversation(sender, sim=sim), set()),
        ("one conversation, any SIM", lambda: gateway.conversation(sender), set()),
        ("inbox", lambda: gateway.inbox(51, sender=sender), set()),
        ("statistics by day", lambda: gateway.statistics("day", today=today), set()),
        ("statistics by month, one SIM", lambda: gateway.statistics("month", modem_id=1, today=today), set()),
        ("statistics roll-up", lambda: gateway.roll_up_statistics(today=today), set()),
        ("statistics by week, kept medians", lambda: gateway.statistics("week", today=today), set()),
        ("dashboard counts", lambda: gateway.counts_by_modem(), set()),
        ("dashboard hours", lambda: gateway.sent_by_hour(NOW), set()),
        ("scheduled batches", lambda: gateway.scheduled_batches(51) if hasattr(gateway, "scheduled_batches")
         else store.scheduled_batches(51), set()),
        ("audit log", lambda: gateway.audit_log(51, action="login."), {"audit"}),
        # a submission's messages are a run of ids (migration 13): at a million stored, the submit that looked its
        # new messages up by submission_id read the whole table, ~0.3 s per one-time password
        ("submit", lambda: gateway.submit("Your code is 123456", "+447700900123"), set()),
        ("batch summary", lambda: store.scheduled_batch(submission), set()),
        ("batch messages", lambda: store.batch_messages(submission, 51), set()),
        ("batch status counts", lambda: store.submission_status_counts(submission), set()),
        ("batch cancel", lambda: store.cancel_submission(submission), set()),
        ("webhook delivery log, pending", lambda: store.deliveries_for_webhook(webhook, 51, status="pending"), set()),
        # the SMPP outbox: per message that came over SMPP, per inbound SMS, at start, per /metrics scrape, hourly
        ("SMPP receipts queued", lambda: store.queue_smpp_receipts(smpp_message, lambda m, d: [{"r": 1}], NOW),
         set()),
        ("SMPP receipts catch-up", lambda: store.smpp_receipts_due(NOW - 7 * DAY), set()),
        ("SMPP inbound queued", lambda: store.queue_smpp_inbound(inbox_id, lambda row: {"i": 1}, NOW), set()),
        ("SMPP inbound catch-up", lambda: store.smpp_inbound_due(NOW - 7 * DAY), set()),
        ("SMPP pending counts", lambda: store.smpp_pending_counts(), set()),
        ("SMPP outbox purge", lambda: store.purge_smpp_outbox(NOW - 7 * DAY), set()),
    ]


def test_the_hot_queries_search_indexes(gateway):
    failures = []
    seen = 0
    for name, call, allowed in cases(gateway):
        statements = traced(gateway.store, call)
        assert statements, f"{name}: no statement traced (is the case calling the store?)"
        seen += len(statements)
        for sql in statements:
            scans = table_scans(gateway.store, sql, allowed)
            if scans:
                failures.append(f"{name}: {scans} in\n    {sql[:400]}")
    assert not failures, "table scans in hot queries:\n" + "\n".join(failures)
    assert seen > 40


def test_a_scan_is_caught(gateway):
    """The check itself: a query by a column without an index is reported."""
    sql = "SELECT * FROM messages WHERE body = 'x'"
    assert table_scans(gateway.store, sql, set()) == ["SCAN messages"]
    assert table_scans(gateway.store, sql, {"messages"}) == []
    walk = table_scans(gateway.store, "SELECT id FROM messages m INDEXED BY messages_recipient ORDER BY recipient",
                       set())
    assert walk == ["SCAN m USING COVERING INDEX messages_recipient"]


def test_time_ranges_become_id_ranges(gateway):
    """`first_id_created` finds the first id of a moment by the primary key, as a scan of created_at would."""
    store = gateway.store
    for days in (0.5, 10, 30, 59, 100):
        moment = NOW - days * DAY
        expected = store.query("SELECT MIN(id) FROM messages NOT INDEXED WHERE created_at >= ?", (moment,))[0][0]
        newest = store.query("SELECT MAX(id) FROM messages")[0][0]
        assert store.first_id_created(moment) == (expected if expected is not None else newest + 1)
    assert store.first_id_created(NOW + DAY) == store.query("SELECT MAX(id) FROM messages")[0][0] + 1
    since, until = NOW - 40 * DAY, NOW - 30 * DAY
    listed = gateway.messages(500, since=since, until=until)
    expected = [row[0] for row in store.query("SELECT id FROM messages NOT INDEXED WHERE created_at >= ? AND "
                                              "created_at < ? ORDER BY id DESC LIMIT 500", (since, until))]
    assert [row["id"] for row in listed] == expected and len(expected) > 10


def test_the_side_tables_agree_with_the_rows(tmp_path):
    """`stats_daily`, `stats_took` and `conversations` (kept by triggers) say what the messages, parts and inbox say,
    after sends, reports, failures, deletions (a part deleted with its message) and reading."""
    store = Store(tmp_path / "modemgw.db")
    seed_messages(store, 400, days=10, contacts=0, audit=0)
    gateway = Gateway(store)
    sent = [row[0] for row in store.query("SELECT id FROM messages WHERE status = 'sent' ORDER BY id LIMIT 3")]
    store.record_report(sent[0], 1, 1, "delivered", 0, NOW)
    store.record_report(sent[1], 1, 1, "failed", 65, NOW)
    for message_id in [row[0] for row in store.query("SELECT id FROM messages WHERE status IN ('delivered', "
                                                     "'failed') ORDER BY id LIMIT 5")]:
        gateway.delete_message(message_id)
    store.unpin(sent[2], "test")
    sender, sim = store.query("SELECT sender, modem_id FROM inbox ORDER BY id DESC LIMIT 1")[0]
    store.mark_read(sender, sim)
    store.delete_inbox_message(store.query("SELECT MIN(id) FROM inbox")[0][0])
    counted = ("SELECT day, kind, modem_id, count FROM stats_daily WHERE count != 0 AND kind NOT LIKE 'took:%' "
               "ORDER BY 1, 2, 3")
    raw = ("SELECT * FROM (SELECT date(CASE WHEN status IN ('sent', 'delivered', 'undelivered') THEN sent_at ELSE "
           "updated_at END, 'unixepoch', 'localtime') AS day, status AS kind, IFNULL(modem_id, 0) AS modem_id, "
           "COUNT(*) AS count FROM messages WHERE status IN ('sent', 'delivered', 'undelivered', 'failed', 'expired') "
           "GROUP BY 1, 2, 3 UNION ALL SELECT date(sent_at, 'unixepoch', 'localtime'), 'segment', IFNULL(modem_id, 0), "
           "COUNT(*) FROM parts WHERE tp_mr IS NOT NULL AND sent_at IS NOT NULL GROUP BY 1, 2, 3) ORDER BY 1, 2, 3")
    assert [tuple(row) for row in store.query(counted)] == [tuple(row) for row in store.query(raw)]
    took = collections.Counter()  # delivery times to two significant figures, per local day sent and SIM
    for row in store.query("SELECT sent_at, delivered_at, modem_id FROM messages WHERE status = 'delivered'"):
        seconds = max(0, int(row["delivered_at"] - row["sent_at"]))
        step = 1 if seconds < 100 else 10 ** (len(str(seconds)) - 2)
        day = time.strftime("%Y-%m-%d", time.localtime(row["sent_at"]))
        took[(day, row["modem_id"] or 0, seconds // step * step)] += 1
    assert len(took) > 10
    assert {(row[0], row[1], row[2]): row[3] for row in store.query(
        "SELECT day, modem_id, took, count FROM stats_took WHERE count != 0")} == took
    assert not store.query("SELECT * FROM stats_daily WHERE kind LIKE 'took:%'")  # migration 16 moved them
    assert store.status_counts() == {row[0]: row[1] for row in store.query(
        "SELECT status, COUNT(*) FROM messages NOT INDEXED GROUP BY status")}
    kept = "SELECT modem_id, sender, total, unread, last, newest FROM conversations ORDER BY 1, 2"
    grouped = ("SELECT IFNULL(modem_id, 0), sender, COUNT(*), SUM(read = 0), MAX(received_at), MAX(id) FROM inbox "
               "GROUP BY 1, 2 ORDER BY 1, 2")
    assert [tuple(row) for row in store.query(kept)] == [tuple(row) for row in store.query(grouped)]
    store.close()
