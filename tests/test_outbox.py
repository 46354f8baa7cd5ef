"""An event and its outbox rows commit together (#19): a message's status report and the webhook deliveries it
causes are one transaction, so that a crash between two commits can no longer keep the report and lose its
webhook. The store's transactions nest as savepoints, and wake-ups wait for the commit."""

import datetime as dt
import sqlite3
import threading
import time

import pytest

from modemgw import pdu, webhooks
from modemgw.gateway import Gateway
from modemgw.store import Store, StoreError
from modemgw.webhooks import WebhookSender


def count(path, sql: str) -> int:
    """A count read through a connection of its own: what another thread or process sees (committed rows)."""
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchone()[0]


def test_a_nested_transaction_commits_with_the_enclosing_one(tmp_path):
    store = Store(tmp_path / "n.db")
    with store.transaction() as conn:
        conn.execute("INSERT INTO settings (name, value) VALUES ('outer', '1')")
        with store.transaction() as same:
            assert same is conn
            same.execute("INSERT INTO settings (name, value) VALUES ('inner', '1')")
        assert count(store.path, "SELECT COUNT(*) FROM settings WHERE name IN ('outer', 'inner')") == 0
    assert count(store.path, "SELECT COUNT(*) FROM settings WHERE name IN ('outer', 'inner')") == 2


def test_a_failed_nested_transaction_rolls_back_its_own_writes_only(tmp_path):
    store = Store(tmp_path / "n.db")
    with store.transaction() as conn:
        conn.execute("INSERT INTO settings (name, value) VALUES ('outer', '1')")
        with pytest.raises(StoreError), store.transaction() as same:
            same.execute("INSERT INTO settings (name, value) VALUES ('inner', '1')")
            same.execute("INSERT INTO nowhere VALUES (1)")  # no such table: a SQLite error
        with pytest.raises(KeyError), store.transaction() as same:
            same.execute("INSERT INTO settings (name, value) VALUES ('other', '1')")
            raise KeyError("the block's own error, raised as it is")
        conn.execute("INSERT INTO settings (name, value) VALUES ('after', '1')")
    keys = {row[0] for row in store.query("SELECT name FROM settings WHERE name IN ('outer', 'inner', 'other', "
                                          "'after')")}
    assert keys == {"outer", "after"}


def test_a_wake_up_waits_for_the_commit_and_is_dropped_with_a_rollback(tmp_path):
    store = Store(tmp_path / "n.db")
    seen: list[tuple[str, int]] = []

    def wake(name: str):
        return lambda: seen.append((name, count(store.path, "SELECT COUNT(*) FROM settings WHERE name = 'x'")))

    store.after_commit(wake("now"))  # no transaction open: at once
    assert seen == [("now", 0)]
    with store.transaction() as conn:
        conn.execute("INSERT INTO settings (name, value) VALUES ('x', '1')")
        store.after_commit(wake("committed"))
        with pytest.raises(ValueError), store.transaction():
            store.after_commit(wake("rolled back"))
            raise ValueError("nested block fails")
        assert seen == [("now", 0)]  # nothing yet: the row is not committed
    assert seen == [("now", 0), ("committed", 1)]  # after the commit, which another connection sees
    with pytest.raises(RuntimeError), store.transaction():
        store.after_commit(wake("never"))
        raise RuntimeError("the whole transaction fails")
    assert seen == [("now", 0), ("committed", 1)]


def test_a_durable_write_may_not_nest_in_one_that_is_not(tmp_path):
    """SQLite cannot sync a transaction already under way as FULL: the caller must open it durable."""
    store = Store(tmp_path / "n.db")
    with pytest.raises(RuntimeError, match="durable"), store.transaction(), store.transaction(durable=True):
        pass
    with store.transaction(durable=True) as conn, store.transaction(durable=True):
        conn.execute("INSERT INTO settings (name, value) VALUES ('durable', '1')")
    assert store.query("SELECT value FROM settings WHERE name = 'durable'")[0][0] == "1"


def sent_message(store: Store, gateway: Gateway, modem: dict) -> int:
    message_id = gateway.submit("Your code is 123456", "+447700900123")["messages"][0]["id"]
    now = time.time()
    claimed = store.claim_next(modem["id"], "a", None, [], now)
    assert claimed is not None
    gateway.part_sent(claimed, 1, modem["id"], 42, now, last=True)
    return message_id


def delivered_report() -> pdu.StatusReport:
    moment = dt.datetime.now(dt.UTC)
    encoded = pdu.encode_status_report(42, "+447700900123", 0, sc_timestamp=moment, discharge_time=moment)
    report = pdu.decode(encoded.hex, encoded.tpdu_length)
    assert isinstance(report, pdu.StatusReport)
    return report


def test_a_reports_webhook_deliveries_commit_with_the_report(tmp_path):
    """The report, the message's new status and the webhook delivery it causes are one commit (synced: the modem
    forgets the report next); listeners that are not recorders hear of it after that commit, when another
    connection reads all of it."""
    store = Store(tmp_path / "o.db")
    gateway = Gateway(store)
    modem = store.attach_modem("356938030000005", "8944010000000000001", label="a")
    sender = WebhookSender(store, lambda message_id: {"id": message_id, **gateway.message(message_id)})
    woken: list[int] = []
    sender.wake = lambda: woken.append(count(store.path, "SELECT COUNT(*) FROM webhook_deliveries"))  # type: ignore
    gateway.subscribe(sender.on_event, recorder=True)
    heard: list[tuple[str, int, int]] = []
    gateway.subscribe(lambda event, data: heard.append((
        event, count(store.path, f"SELECT COUNT(*) FROM messages WHERE id = {data['id']} AND status = 'delivered'"),
        count(store.path, "SELECT COUNT(*) FROM webhook_deliveries WHERE event = 'message.delivered'"))))
    webhooks.create_webhook(store, "http://127.0.0.1:9/hook", ["message.delivered"])
    message_id = sent_message(store, gateway, modem)

    conn = store.connection()
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    report = delivered_report()
    assert gateway.handle_report(modem["id"], report)["status"] == "delivered"
    conn.set_trace_callback(None)
    assert [s for s in statements if s in ("BEGIN IMMEDIATE", "COMMIT")] == ["BEGIN IMMEDIATE", "COMMIT"]
    assert any("INSERT INTO webhook_deliveries" in s for s in statements)
    assert statements[statements.index("BEGIN IMMEDIATE") - 1] == "PRAGMA synchronous=FULL"
    assert heard[-1] == ("message.delivered", 1, 1)
    assert woken == [1]  # the sender was woken once the delivery could be read
    [delivery] = store.query("SELECT message_id, status FROM webhook_deliveries WHERE event = 'message.delivered'")
    assert tuple(delivery) == (message_id, "pending")


def test_a_failing_recorder_loses_neither_the_report_nor_the_other_recorders_rows(tmp_path, caplog):
    store = Store(tmp_path / "o.db")
    gateway = Gateway(store)
    modem = store.attach_modem("356938030000005", "8944010000000000001", label="a")

    def broken(event: str, data: dict) -> None:
        with store.transaction() as conn:
            conn.execute("INSERT INTO settings (name, value) VALUES ('half-written', '1')")
            raise ValueError("a recorder's bug")

    sender = WebhookSender(store, lambda message_id: {"id": message_id, **gateway.message(message_id)})
    gateway.subscribe(broken, recorder=True)
    gateway.subscribe(sender.on_event, recorder=True)
    webhooks.create_webhook(store, "http://127.0.0.1:9/hook", ["*"])
    message_id = sent_message(store, gateway, modem)
    assert gateway.handle_report(modem["id"], delivered_report())["status"] == "delivered"
    assert "listener failed for message.delivered" in caplog.text
    # the broken recorder's write went with its savepoint
    assert not store.query("SELECT 1 FROM settings WHERE name = 'half-written'")
    assert store.message(message_id)["status"] == "delivered"
    events = [row[0] for row in store.query("SELECT event FROM webhook_deliveries ORDER BY id")]
    assert events == ["message.sent", "message.delivered"]


def test_an_inbound_sms_and_its_webhook_delivery_commit_together_before_its_rules_run(tmp_path):
    store = Store(tmp_path / "o.db")
    gateway = Gateway(store)
    modem = store.attach_modem("356938030000005", "8944010000000000001", label="a")
    sender = WebhookSender(store, lambda message_id: {"id": message_id})
    gateway.subscribe(sender.on_event, recorder=True)
    webhooks.create_webhook(store, "http://127.0.0.1:9/hook", ["inbound.received"])
    conn = store.connection()
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    moment = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
    deliver = pdu.decode(pdu.encode_deliver("+447700900555", "Is my table booked?", timestamp=moment).hex)
    assert isinstance(deliver, pdu.Deliver)
    inbox_id = gateway.handle_inbound(modem["id"], deliver)
    conn.set_trace_callback(None)
    inserted = [n for n, s in enumerate(statements) if s.startswith(("INSERT INTO inbox ", "INSERT INTO webhook"))]
    commits = [n for n, s in enumerate(statements) if s == "COMMIT"]
    assert len(inserted) >= 2 and not any(inserted[0] < n < inserted[-1] for n in commits), statements
    [row] = store.query("SELECT event FROM webhook_deliveries")
    assert row[0] == "inbound.received" and inbox_id is not None


def full_after(store: Store, pages: int) -> None:
    """The database file may grow by `pages` pages more: then writes fail with SQLITE_FULL (a full disk)."""
    conn = store.connection()
    conn.execute("VACUUM")
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0] + pages}")


def test_a_concatenated_sms_whose_commit_fails_is_stored_by_the_retry(tmp_path):
    """The last part, the parts it completes and the assembled SMS with its webhook deliveries are one commit: when
    it fails (the disk is full), the parts are still held and the worker's retry of the same part stores the SMS
    (when the last part's commit stood alone, the retry found it seen and dropped it: the SMS was lost)."""
    moment = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)

    def part(seq: int) -> pdu.Deliver:
        deliver = pdu.decode(pdu.encode_deliver("+447700900555", f"part {seq} " + "x" * 120, timestamp=moment,
                                                concat=pdu.Concat(7, 2, seq)).hex)
        assert isinstance(deliver, pdu.Deliver)
        return deliver

    for slack in range(0, 12, 2):  # the SQLITE_FULL falls on one statement or another of the transaction
        store = Store(tmp_path / f"c{slack}.db")
        gateway = Gateway(store)
        modem = store.attach_modem("356938030000005", "8944010000000000001", label="a")
        sender = WebhookSender(store, lambda message_id: {"id": message_id})
        gateway.subscribe(sender.on_event, recorder=True)
        for number in range(60):  # many subscriptions: the webhook rows make the transaction large
            webhooks.create_webhook(store, f"http://127.0.0.1:9/{number}/" + "p" * 1500, ["inbound.received"])
        assert gateway.handle_inbound(modem["id"], part(1)) is None
        full_after(store, slack)
        try:
            first = gateway.handle_inbound(modem["id"], part(2))
        except StoreError as error:
            assert error.kind == "full", error
            first = None
        store.connection().execute("PRAGMA max_page_count = 1073741823")  # space again
        retried = gateway.handle_inbound(modem["id"], part(2))
        assert (first is None) != (retried is None), (slack, first, retried)  # stored once, by one or the other
        assert store.query("SELECT COUNT(*) FROM inbox")[0][0] == 1
        assert store.query("SELECT COUNT(*) FROM inbox_parts")[0][0] == 0
        assert store.query("SELECT COUNT(*) FROM webhook_deliveries")[0][0] == 60
        store.close()


def test_a_full_disk_under_a_recorder_fails_the_report_as_full_and_keeps_nothing_of_it(tmp_path):
    """SQLite rolls the whole transaction back on SQLITE_FULL, also inside a recorder's savepoint: the report is
    refused with kind "full" (the worker keeps it and retries), nothing of it is committed, nobody is woken."""
    store = Store(tmp_path / "f.db")
    gateway = Gateway(store)
    modem = store.attach_modem("356938030000005", "8944010000000000001", label="a")
    sender = WebhookSender(store, lambda message_id: {"id": message_id, "status": "delivered", "body": "p" * 3000})
    woken: list[int] = []
    sender.wake = lambda: woken.append(1)  # type: ignore[method-assign]
    gateway.subscribe(sender.on_event, recorder=True)
    for number in range(40):
        webhooks.create_webhook(store, f"http://127.0.0.1:9/{number}", ["message.delivered"])
    message_id = sent_message(store, gateway, modem)
    woken.clear()
    full_after(store, 6)
    with pytest.raises(StoreError) as refused:
        gateway.handle_report(modem["id"], delivered_report())
    assert refused.value.kind == "full"
    assert store.message(message_id)["status"] == "sent"
    assert not store.query("SELECT 1 FROM webhook_deliveries WHERE event = 'message.delivered'")
    assert woken == []
    store.connection().execute("PRAGMA max_page_count = 1073741823")
    assert gateway.handle_report(modem["id"], delivered_report())["status"] == "delivered"  # the retry
    assert store.query("SELECT COUNT(*) FROM webhook_deliveries WHERE event = 'message.delivered'")[0][0] == 40
    assert woken == [1]  # once, after the commit of the report and its 40 deliveries


def test_wake_ups_run_after_the_write_lock_is_released(tmp_path):
    store = Store(tmp_path / "w.db")
    seen: list[tuple[bool, int]] = []

    def wake() -> None:
        # is the lock free for another thread? (this thread holds an RLock re-entrantly: ask from another one)
        free: list[bool] = []

        def try_lock() -> None:
            free.append(store._write_lock.acquire(timeout=0.5))
            if free[0]:
                store._write_lock.release()

        probe = threading.Thread(target=try_lock)
        probe.start()
        probe.join()
        seen.append((free[0], store.connection().execute("PRAGMA synchronous").fetchone()[0]))

    for durable in (False, True):
        with store.transaction(durable=durable) as conn:
            conn.execute("INSERT INTO settings (name, value) VALUES (?, '1')", (f"w{durable}",))
            store.after_commit(wake)
    assert seen == [(True, 1), (True, 1)]  # lock free, synchronous back to NORMAL (1)


def test_a_nested_health_check_or_bookkeeping_write_leaves_the_transaction_alone(tmp_path):
    store = Store(tmp_path / "h.db")
    with pytest.raises(StoreError), store.transaction() as conn:
        conn.execute("INSERT INTO settings (name, value) VALUES ('a', '1')")
        assert store._write_if_free("INSERT INTO settings (name, value) VALUES ('free', '1')") is False
        assert conn.in_transaction
        conn.execute("INSERT INTO settings (name, value) VALUES ('b', '1')")
        raise StoreError("the block fails")
    assert not store.query("SELECT 1 FROM settings WHERE name IN ('a', 'b', 'free')")


def test_the_outcomes_that_came_in_together_are_recorded_in_one_commit(tmp_path):
    """The sender records every outcome its workers handed back meanwhile in one transaction, and frees each
    delivery's place in flight only after the commit (until then its row still says pending)."""
    from modemgw.webhooks import _Job, _Outcome

    store = Store(tmp_path / "r.db")
    sender = WebhookSender(store, lambda message_id: {"id": message_id})
    hook = webhooks.create_webhook(store, "http://127.0.0.1:9/hook", ["*"])
    store.add_webhook_deliveries("message.sent", None, [(hook["id"], hook["url"], f"evt_{n}", "{}")
                                                        for n in range(3)], time.time())
    lane = sender._lanes[0]
    rows = store.due_webhook_deliveries(time.time() + 1, False, 0, set(), 10)
    assert len(rows) == 3 and all(row["payload"] == "{}" for row in rows)
    jobs = [_Job(row, "secret", True, ("http", "127.0.0.1", 9), lane) for row in rows]
    for job in jobs:
        lane.in_flight[job.row["id"]] = job.destination
        sender._outcomes.put(_Outcome(job, 200))
    in_flight_at_commit: list[int] = []
    conn = store.connection()
    conn.set_trace_callback(lambda sql: in_flight_at_commit.append(len(lane.in_flight)) if sql == "COMMIT" else None)
    sender._record_outcomes()
    conn.set_trace_callback(None)
    assert in_flight_at_commit == [3]  # one commit, with all three still held in flight
    assert lane.in_flight == {}
    assert [row[0] for row in store.query("SELECT status FROM webhook_deliveries")] == ["delivered"] * 3
