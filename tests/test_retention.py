"""Retention (#19): `[retention]` settings, the scheduler's pruning pass in small batches while messages are being
sent through simulated modems, what is never deleted, the database file that stops growing over fill and prune
cycles, `modemgw status`, the dashboard's database card (Chromium, also at 360 px), `modemgw vacuum`, and the
doctor's warning on a nearly full disk (a loop-mounted ext4 image)."""

import logging
import os
import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from playwright import sync_api as playwright_api

import webui
from modemgw import cli, config as configuration
from modemgw.cli import main
from modemgw.doctor import FAIL, WARN, Doctor
from modemgw.gateway import Gateway
from modemgw.retention import WAL_KEPT_BYTES, describe_bytes
from modemgw.settings import GatewaySettings, RetentionSettings
from modemgw.store import NotFound, Store
from modemgw.store.base import PAGE_SIZE
from tests.support import PASSWORD, daemon_config

DAY = 86400
FINAL = ("sent", "delivered", "undelivered", "failed", "expired", "canceled")


def numbers(count: int, start: int = 0) -> list[str]:
    return [f"+4477009{index:05d}" for index in range(start, start + count)]


def gateway_on(path: Path, **retention) -> Gateway:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return Gateway(Store(path), GatewaySettings(default_region="GB", retention=RetentionSettings(**retention)))


def finished(gateway: Gateway, count: int, body: str = "finished long ago") -> dict:
    """`count` messages that are final (scheduled, then canceled: no modem needed) in one submission."""
    result = gateway.submit(body, numbers(count), send_at=time.time() + 3 * DAY)
    gateway.cancel_submission(result["submission_id"])
    return result


def count(path: Path, sql: str, params=()) -> int:
    with sqlite3.connect(path) as connection:
        return connection.execute(sql, params).fetchone()[0]


# --- settings -----------------------------------------------------------------------------------------------------

def test_retention_settings_their_old_name_and_their_checks(tmp_path):
    def load(text: str):
        path = tmp_path / "config.toml"
        path.write_text(text)
        return configuration.load(path)

    defaults = configuration.load(None).gateway.retention
    assert (defaults.messages_days, defaults.inbox_days, defaults.webhook_deliveries_days, defaults.audit_days) == \
        (90, 90, 14, 365)
    loaded = load("[retention]\nmessages_days = 30\ninbox_days = 0\naudit_days = 730\nbatch_size = 200\n")
    assert (loaded.gateway.retention.messages_days, loaded.gateway.retention.inbox_days) == (30, 0)
    assert loaded.gateway.retention.batch_size == 200
    assert loaded.gateway.retention_days == 30  # what the mail outbox's pruning reads follows the new name
    old = load("[gateway]\nretention_days = 45\n")  # the old name alone still works
    assert old.gateway.retention.messages_days == 45
    assert load("[gateway]\nretention_days = 45\n[retention]\nmessages_days = 45\n").gateway.retention.messages_days \
        == 45
    for text, message in [
        ("[gateway]\nretention_days = 45\n[retention]\nmessages_days = 30\n",
         "config.toml:4: [retention] messages_days (30) disagrees with [gateway] retention_days (45), its old name"),
        ("[retention]\nbatch_size = 0\n", "config.toml:2: [retention] batch_size must be from 1 to 5000 rows"),
        ("[retention]\ninterval_minutes = 0.5\n", "[retention] interval_minutes must be at least 1 minute"),
        ("[retention]\naudit_days = -1\n", "config.toml:2: [retention] audit_days must not be negative"),
        ("[retention]\nmessage_days = 3\n", "config.toml:2: [retention] message_days is not an option here"),
    ]:
        with pytest.raises(configuration.ConfigError) as raised:
            load(text)
        assert message in str(raised.value)


def test_every_retention_option_is_documented():
    root = Path(__file__).parent.parent
    example, readme = (root / "deploy" / "config.example.toml").read_text(), (root / "README.md").read_text()
    for option in configuration.RETENTION_OPTIONS:
        assert f"\n{option} =" in example, option
        assert f"`{option}`" in readme, option
    assert "\n[retention]\n" in example and "### Retention" in readme


# --- pruning while sending ----------------------------------------------------------------------------------------

def test_a_pass_prunes_old_messages_while_300_are_sent_and_loses_none(tmp_path, start_daemon):
    path = tmp_path / "data" / "modemgw.db"
    seed = gateway_on(path)
    old = finished(seed, 4000)
    waiting = seed.submit("scheduled far ahead", numbers(1, 5000), send_at=time.time() + 30 * DAY)
    awaiting, reported = (seed.submit(f"sent {n}", numbers(1, 5001 + n))["messages"][0]["id"] for n in range(2))
    seed.store.close()
    ten_days_ago = time.time() - 10 * DAY
    with sqlite3.connect(path) as connection:  # ten days ago: the first sent and still waiting for its report
        connection.execute("UPDATE messages SET created_at = created_at - ?", (10 * DAY,))
        connection.execute("UPDATE submissions SET created_at = created_at - ?", (10 * DAY,))
        connection.execute("UPDATE events SET at = at - ?", (10 * DAY,))
        connection.execute("UPDATE messages SET status = 'sent', sent_at = ?, report = NULL WHERE id = ?",
                           (ten_days_ago, awaiting))
        connection.execute("UPDATE messages SET status = 'sent', sent_at = ?, report = 'none' WHERE id = ?",
                           (ten_days_ago, reported))
        connection.execute("INSERT INTO parts (message_id, seq, tp_mr, sent_at) VALUES (?, 1, 7, ?)",
                           (reported, ten_days_ago))
    daemon = start_daemon(modems=2, send_latency=0.02, report_delay=0.05,
                          retention=RetentionSettings(messages_days=1, batch_pause=0.01))
    gateway = daemon.gateway
    live = [message["id"] for index in range(30)
            for message in gateway.submit(f"live {index}", numbers(10, 6000 + 10 * index))["messages"]]
    assert len(live) == 300
    assert daemon.wait_until(lambda: gateway.message(live[0], timeline=False)["status"] != "queued", 10)

    result = gateway.prune()

    assert daemon.wait_until(lambda: all(gateway.message(message_id, timeline=False)["status"] in FINAL
                                         for message_id in live), 90)
    statuses = {message_id: gateway.message(message_id, timeline=False)["status"] for message_id in live}
    assert set(statuses.values()) <= {"sent", "delivered"}, statuses  # none lost, none failed
    sent_at = [gateway.message(message_id, timeline=False)["sent_at"] for message_id in live]
    during = [at for at in sent_at if result["at"] <= at <= result["at"] + result["seconds"]]
    assert during, (result, min(sent_at), max(sent_at))  # sends went on while the pass ran
    assert result["complete"] and result["failed_batches"] == 0, result
    assert result["deleted"]["messages"] == 4001 and result["batches"] >= 9, result
    for message_id in (old["messages"][0]["id"], old["messages"][-1]["id"], reported):
        with pytest.raises(NotFound):
            gateway.message(message_id)
    assert gateway.message(waiting["messages"][0]["id"])["status"] == "scheduled"  # unfinished: kept
    assert gateway.message(awaiting)["status"] == "sent"  # still waiting for its status report: kept
    assert count(path, "SELECT count(*) FROM parts WHERE message_id = ?", (reported,)) == 0
    assert count(path, "SELECT count(*) FROM events WHERE message_id = ?", (old["messages"][0]["id"],)) == 0
    assert count(path, "SELECT count(*) FROM submissions WHERE id = ?", (old["submission_id"],)) == 0
    assert count(path, "SELECT count(*) FROM submissions WHERE id = ?", (waiting["submission_id"],)) == 1
    assert gateway.storage_summary()["oldest_message_at"] < time.time() - 9 * DAY  # the kept ones are the oldest


def test_unfinished_messages_are_never_deleted_whatever_their_age(tmp_path):
    path = tmp_path / "modemgw.db"
    gateway = gateway_on(path, messages_days=1)
    queued = gateway.submit("queued", numbers(1))["messages"][0]["id"]
    scheduled = gateway.submit("scheduled", numbers(1, 1), send_at=time.time() + 60)["messages"][0]["id"]
    sending, awaiting, none, failed = (gateway.submit(f"m{n}", numbers(1, 2 + n))["messages"][0]["id"]
                                       for n in range(4))
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE messages SET status = 'sending' WHERE id = ?", (sending,))
        connection.execute("UPDATE messages SET status = 'sent', report = NULL WHERE id = ?", (awaiting,))
        connection.execute("UPDATE messages SET status = 'sent', report = 'none' WHERE id = ?", (none,))
        connection.execute("UPDATE messages SET status = 'failed' WHERE id = ?", (failed,))

    result = gateway.prune(now=time.time() + 365 * DAY)

    assert result["deleted"]["messages"] == 2
    kept = {row["id"]: row["status"] for row in gateway.store.messages([queued, scheduled, sending, awaiting, none,
                                                                        failed])}
    assert kept == {queued: "queued", scheduled: "scheduled", sending: "sending", awaiting: "sent"}


def test_inbox_webhook_deliveries_and_audit_each_keep_their_own_days(tmp_path):
    path = tmp_path / "modemgw.db"
    gateway = gateway_on(path, messages_days=0, inbox_days=30, webhook_deliveries_days=7, audit_days=100)
    store, now = gateway.store, time.time()
    inbound = [store.insert_inbound(1, "+447700900555", f"hello {n}", None, f"key-{n}") for n in range(3)]
    store.insert_inbound_part(1, "+447700900556", 9, 2, 1, "gsm", b"half", None, "part-1")  # never completed
    hook = store.add_webhook("http://192.0.2.1/hook", ["*"], "secret", now)
    store.add_webhook_deliveries("message.sent", None, [(hook["id"], hook["url"], f"evt_{n}", "{}") for n in range(3)],
                                 now)
    delivered, dead, pending = sorted(row["id"] for row in store.deliveries_for_webhook(hook["id"], after=0))
    store.record_webhook_attempt(delivered, 1, now, 200, None, None)
    store.record_webhook_attempt(dead, 1, now, 500, "HTTP 500", None)
    for n in range(3):
        gateway.audit("test.action", actor="tests", target=f"thing {n}")
    finished(gateway, 5)

    soon = gateway.prune(now=now + 8 * DAY)  # past the webhook deliveries' 7 days only
    assert soon["deleted"]["webhook_deliveries"] == 2 and soon["deleted"]["inbox"] == 0
    assert [row["id"] for row in store.deliveries_for_webhook(hook["id"], after=0)] == [pending]  # pending stays
    assert len(store.inbox(10)) == 3

    later = gateway.prune(now=now + 31 * DAY)
    assert later["deleted"]["inbox"] == 3 and later["deleted"]["inbox_parts"] == 1
    assert later["deleted"]["inbox_seen"] == 4 and later["deleted"]["audit"] == 0
    assert store.inbox(10) == [] and count(path, "SELECT count(*) FROM inbox WHERE id IN (?, ?, ?)", inbound) == 0
    assert count(path, "SELECT count(*) FROM audit") == 3

    last = gateway.prune(now=now + 101 * DAY)
    assert last["deleted"]["audit"] == 3 and count(path, "SELECT count(*) FROM audit") == 0
    assert "messages" not in last["deleted"]  # 0 days: messages are kept forever
    assert count(path, "SELECT count(*) FROM messages") == 5


def test_a_bad_batch_is_logged_and_skipped_and_the_rest_is_pruned(tmp_path, caplog):
    path = tmp_path / "modemgw.db"
    gateway = gateway_on(path, audit_days=1, batch_size=10, batch_pause=0)
    for n in range(50):
        gateway.audit("test.action", actor="tests", target=f"thing {n}")
    with sqlite3.connect(path) as connection:  # one row SQLite refuses to delete: its whole batch fails
        connection.execute("CREATE TRIGGER keep BEFORE DELETE ON audit WHEN old.target = 'thing 25' "
                           "BEGIN SELECT RAISE(ABORT, 'kept by the test'); END")

    with caplog.at_level(logging.WARNING, "modemgw.retention"):
        result = gateway.prune(now=time.time() + 2 * DAY)

    left = [entry["target"] for entry in gateway.store.audit_entries(100)]
    assert "thing 25" in left and 1 <= len(left) <= 10, left
    assert result["deleted"]["audit"] == 50 - len(left) and result["failed_batches"] == 1 and result["complete"]
    assert "a batch of" in caplog.text and "kept by the test" in caplog.text


def test_a_pass_ends_at_its_next_batch_when_the_daemon_stops(start_daemon):
    daemon = start_daemon(modems=0, retention=RetentionSettings(messages_days=1, batch_size=20, batch_pause=0.05))
    finished(daemon.gateway, 2000)
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(daemon.gateway.prune(now=time.time() + 2 * DAY)))
    thread.start()
    assert daemon.wait_until(lambda: daemon.gateway.storage_summary()["oldest_message_at"] is not None and
                             daemon.gateway.status_counts().get("canceled", 2000) < 2000, 10)
    daemon.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert outcome["complete"] is False and 0 < outcome["deleted"]["messages"] < 2000, outcome


# --- the file stops growing ---------------------------------------------------------------------------------------

def fill_and_prune(gateway: Gateway, cycles: int) -> list[dict]:
    """`cycles` times: 2,000 final messages in, one pass a day later; the store's pages after each."""
    pages = []
    for _ in range(cycles):
        finished(gateway, 2000, "a message of some length, as people write them " * 2)
        result = gateway.prune(now=time.time() + 2 * DAY)
        assert result["deleted"]["messages"] == 2000 and result["complete"], result
        pages.append(gateway.store.pages())
    return pages


def test_the_file_stops_growing_over_fill_and_prune_cycles_and_gives_space_back(tmp_path):
    gateway = gateway_on(tmp_path / "modemgw.db", messages_days=1, batch_pause=0)
    pages = fill_and_prune(gateway, 5)
    assert pages[0]["auto_vacuum"] == "incremental"  # a new database
    assert pages[4]["page_count"] <= pages[1]["page_count"] * 1.02 + 8, pages
    reserve = (1 << 20) // pages[4]["page_size"]
    assert all(page["freelist_count"] <= reserve for page in pages), pages  # the rest went back to the disk
    sizes = gateway.store.file_sizes()
    assert sizes["database_bytes"] <= pages[4]["page_count"] * pages[4]["page_size"]
    assert sizes["wal_bytes"] <= WAL_KEPT_BYTES  # a log of the usual size is reused, not truncated


def test_an_old_database_reuses_its_pages_and_modemgw_vacuum_compacts_it(tmp_path, capsys):
    """An old database (no incremental vacuum, SQLite's 4 KiB pages) keeps what it has until `modemgw vacuum`:
    `modemgw status` says what the smaller pages of new databases would save; the vacuum compacts the file, turns
    on incremental vacuum and gives it those pages (through the rollback journal: not in WAL mode), every row kept."""
    path = tmp_path / "data" / "modemgw.db"
    path.parent.mkdir(mode=0o700)
    with sqlite3.connect(path) as connection:  # made before incremental vacuum: auto_vacuum NONE
        connection.execute("CREATE TABLE made_before (x)")
    gateway = gateway_on(path, messages_days=1, batch_pause=0)
    pages = fill_and_prune(gateway, 4)
    assert pages[0]["auto_vacuum"] == "none" and pages[3]["page_count"] <= pages[1]["page_count"] * 1.02 + 8, pages
    assert pages[3]["freelist_count"] > 100  # freed, reused, never given back
    assert pages[3]["page_size"] == 4096
    gateway.submit("kept through the vacuum", numbers(3))
    kept = gateway.store.query_dicts("SELECT * FROM messages ORDER BY id")
    assert len(kept) == 3
    cli._echo_storage(gateway.storage_summary())
    assert (f"database pages: 4096 bytes; new databases have {PAGE_SIZE}, which write less to the SD card per "
            "message: `modemgw vacuum` (gateway stopped) converts this one") in capsys.readouterr().out
    gateway.store.close()

    answer = CliRunner().invoke(main, ["vacuum", "--data", str(path.parent)])

    assert answer.exit_code == 0, answer.output
    assert "done:" in answer.output and "auto_vacuum incremental" in answer.output
    assert f"pages of {PAGE_SIZE} bytes (were 4096)" in answer.output
    store = Store(path)
    after = store.pages()
    assert after["auto_vacuum"] == "incremental" and after["freelist_count"] == 0 and after["page_size"] == PAGE_SIZE
    assert store.connection().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert after["page_count"] * PAGE_SIZE < pages[3]["page_count"] * 4096 - 100 * 4096
    assert store.query_dicts("SELECT * FROM messages ORDER BY id") == kept and kept
    assert "database.vacuum" in [entry["action"] for entry in store.audit_entries(5)]
    cli._echo_storage(Gateway(store).storage_summary())
    assert "database pages" not in capsys.readouterr().out

    again = CliRunner().invoke(main, ["vacuum", "--data", str(path.parent)])  # nothing left to convert
    assert again.exit_code == 0, again.output
    assert f"pages of {PAGE_SIZE} bytes" in again.output and "(were" not in again.output


def test_modemgw_vacuum_refuses_while_the_gateway_runs(start_daemon):
    daemon = start_daemon(modems=0)
    answer = CliRunner().invoke(main, ["vacuum", "--data", str(daemon.data_dir)])
    assert answer.exit_code != 0 and "the gateway is running on this database: stop it first" in answer.output


# --- status, dashboard, doctor ------------------------------------------------------------------------------------

def test_modemgw_status_shows_the_database_size_oldest_message_and_retention(start_daemon):
    daemon = start_daemon(modems=1, retention=RetentionSettings(messages_days=1, inbox_days=0))
    first = daemon.gateway.submit("hello", numbers(1))["messages"][0]["id"]
    created = daemon.gateway.message(first)["created_at"]

    before = daemon.control({"command": "status"})["storage"]
    answer = CliRunner().invoke(main, ["status", "--data", str(daemon.data_dir)])
    storage = daemon.control({"command": "status"})["storage"]

    assert answer.exit_code == 0, answer.output
    shown = {f"database: {describe_bytes(seen['database_bytes'] + seen['wal_bytes'])} "
             f"({describe_bytes(seen['wal_bytes'])} of it write-ahead log), " for seen in (before, storage)}
    assert any(line in answer.output for line in shown), (shown, answer.output)  # the daemon may write meanwhile
    assert f"{describe_bytes(storage['disk_free_bytes'])[-2:]} free on its disk; " in answer.output
    assert f"oldest message {time.strftime('%Y-%m-%d %H:%M', time.localtime(created))}" in answer.output
    assert "retention: messages 1 day, inbox forever, webhook deliveries 14 days, audit 365 days" in answer.output
    assert storage["oldest_message_at"] == created and storage["retention"]["messages_days"] == 1
    assert storage["page_size"] == PAGE_SIZE and "database pages" not in answer.output  # a new database's pages


def test_the_dashboard_shows_the_database_card_also_on_a_phone(browser, start_daemon):
    daemon = start_daemon(modems=0, http=True)
    webui.add_user(daemon.store, "alice", PASSWORD, "admin")
    first = daemon.gateway.submit("hello", numbers(1))["messages"][0]["id"]
    created = daemon.gateway.message(first)["created_at"]
    for viewport in ({"width": 1280, "height": 800}, {"width": 360, "height": 740}):
        page = browser.new_page(viewport=viewport)
        page.set_default_timeout(15_000)
        page.goto(daemon.url)
        page.get_by_label("Username").fill("alice")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        card = page.locator("#storage")
        playwright_api.expect(card.get_by_role("heading", name="Database")).to_be_visible()
        summary = daemon.gateway.storage_summary()
        number, unit = card.locator("[data-field=database-size]").inner_text().split()
        shown = float(number) * {"KB": 1e3, "MB": 1e6, "GB": 1e9}[unit]
        assert shown == pytest.approx(summary["database_bytes"] + summary["wal_bytes"], rel=0.2)  # it may grow a bit
        assert card.locator("[data-field=oldest-message]").inner_text() == \
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))
        assert "Messages 90 days" in card.inner_text() and "Audit log 365 days" in card.inner_text()
        box = card.bounding_box()
        assert box["x"] + box["width"] <= viewport["width"]
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        page.close()


@pytest.fixture
def small_disk(tmp_path):
    """A 3 GB ext4 file system on a loop-mounted sparse image (we run as root); skipped with the reason when it
    cannot be mounted, a failure under CI."""
    image, mount = tmp_path / "disk.img", tmp_path / "disk"
    mount.mkdir()
    try:
        with open(image, "wb") as handle:
            handle.truncate(3 * 1024 ** 3)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True, capture_output=True,
                       timeout=60)
        subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", b"") or b""
        if os.environ.get("CI"):
            pytest.fail(f"cannot loop-mount an ext4 image (CI runs as root with loop devices): {error} "
                        f"{detail.decode(errors='replace')}")
        pytest.skip(f"cannot loop-mount an ext4 image here (root and a loop device are needed): {error}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True, timeout=30)


def test_doctor_warns_when_the_data_directorys_disk_is_nearly_full(small_disk):
    data = small_disk / "modemgw"
    gateway = gateway_on(data / "modemgw.db")
    finished(gateway, 100)
    gateway.store.close()
    config = daemon_config(data)

    def disk_finding():
        doctor = Doctor(config, None, Path("/etc/modemgw/config.toml"))
        doctor.check_disk()
        [finding] = doctor.findings
        return finding

    assert disk_finding().level == "ok"
    filler = small_disk / "filler"
    total = os.statvfs(small_disk).f_blocks * os.statvfs(small_disk).f_frsize
    subprocess.run(["fallocate", "-l", str(os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
                                          - int(total * 0.08)), str(filler)], check=True, timeout=30)
    warning = disk_finding()  # 8 % free: over 200 MB, under 10 %
    assert warning.level == WARN and warning.title.startswith("the disk is nearly full: ")
    usage = shutil.disk_usage(small_disk)
    free_mb = usage.free / 1e6
    assert f"{free_mb:.0f} MB (8%) free of {usage.total / 1e9:.1f} GB for {data}" in warning.title
    assert "(the database holds " in warning.title and " KB)" in warning.title
    assert "lower [retention] messages_days (now 90)" in warning.fix and "modemgw vacuum" in warning.fix
    assert "journalctl --vacuum-size=50M" in warning.fix
    subprocess.run(["fallocate", "-l", str(int(free_mb * 1e6) - 50_000_000), str(small_disk / "more")], check=True,
                   timeout=30)
    failure = disk_finding()  # 50 MB free
    assert failure.level == FAIL and "the queue cannot grow" in failure.title and "modemgw vacuum" in failure.fix


def test_modemgw_vacuum_keeps_the_page_size_while_another_program_has_the_file_open(tmp_path):
    """Changing the page size needs the file to itself (SQLite leaves WAL mode for it): with a sqlite3 shell open on
    it, the vacuum still compacts, and the pages stay as they are."""
    path = tmp_path / "data" / "modemgw.db"
    path.parent.mkdir(mode=0o700)
    with sqlite3.connect(path) as connection:  # SQLite's 4 KiB pages: an older modemgw's
        connection.execute("CREATE TABLE made_before (x)")
    gateway = gateway_on(path)
    gateway.submit("kept", numbers(2))
    gateway.store.close()
    other = sqlite3.connect(path)
    try:
        assert other.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 2
        answer = CliRunner().invoke(main, ["vacuum", "--data", str(path.parent)])
    finally:
        other.close()
    assert answer.exit_code == 0, answer.output
    assert "pages of 4096 bytes" in answer.output and "(were" not in answer.output
    store = Store(path)
    assert store.pages()["page_size"] == 4096 and store.pages()["auto_vacuum"] == "incremental"
    assert store.connection().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.query("SELECT COUNT(*) FROM messages")[0][0] == 2
