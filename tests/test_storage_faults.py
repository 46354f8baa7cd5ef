"""A full disk, a locked database: the store's transactions, its health check, and the gateway as users see it.

The store tests use real SQLite files (`PRAGMA max_page_count` makes one connection's database "full" without
root). The acceptance test runs `modemgw serve` on a small tmpfs of its own (a user and mount namespace made by
`unshare`, so it needs no root) and fills that filesystem for real.
"""

import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from modemgw.store import Store, StoreError
from tests.support import csrf_token, eventually

MODEMGW = str(Path(sys.executable).parent / "modemgw")


@pytest.fixture
def store(tmp_path):
    opened = Store(tmp_path / "modemgw.db")
    yield opened
    opened.close()


def fill(store: Store) -> None:
    """Let this thread's connection grow the database by one page at most: larger writes fail with SQLITE_FULL."""
    conn = store.connection()
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0] + 1}")


def free(store: Store) -> None:
    store.connection().execute("PRAGMA max_page_count = 1073741823")


def big_write(store: Store) -> None:
    with store.transaction() as conn:
        conn.execute("INSERT INTO settings (name, value) VALUES ('big', ?)", ("x" * 100_000,))


# --- transactions ------------------------------------------------------------------------------------------------

def test_a_full_disk_is_a_store_error_even_when_sqlite_rolled_back_by_itself(store):
    fill(store)
    with pytest.raises(StoreError, match="database or disk is full") as raised:
        big_write(store)
    assert raised.value.kind == "full"
    assert "rollback" not in str(raised.value)
    assert not store.connection().in_transaction
    assert store.write_failure is not None and store.write_failure.kind == "full"
    assert store.query("SELECT count(*) FROM settings WHERE name = 'big'")[0][0] == 0
    free(store)
    big_write(store)
    assert store.write_failure is None, "a commit that works forgets the failure"


def test_the_blocks_own_error_survives_an_automatic_rollback(store):
    """The block caught SQLite's error (the transaction is already gone) and raised its own: that one is raised."""
    fill(store)
    with pytest.raises(ValueError, match="mine"), store.transaction() as conn:
        with pytest.raises(sqlite3.OperationalError):
            conn.execute("INSERT INTO settings (name, value) VALUES ('big', ?)", ("x" * 100_000,))
        assert not conn.in_transaction  # SQLite rolled back by itself
        raise ValueError("mine")
    free(store)
    with store.transaction() as conn:  # the connection is usable
        conn.execute("INSERT INTO settings (name, value) VALUES ('after', '1')")
    assert store.query("SELECT value FROM settings WHERE name = 'after'")[0][0] == "1"


def test_a_broken_rule_is_a_constraint_error_and_not_a_sick_database(store):
    with store.transaction() as conn:
        conn.execute("INSERT INTO settings (name, value) VALUES ('one', '1')")
    with pytest.raises(StoreError) as raised, store.transaction() as conn:
        conn.execute("INSERT INTO settings (name, value) VALUES ('one', '2')")
    assert raised.value.kind == "constraint"
    assert store.write_failure is None
    assert store.health()["status"] == "ok"


def test_reads_and_writes_of_a_locked_database(store, tmp_path):
    other = sqlite3.connect(tmp_path / "modemgw.db", isolation_level=None)  # another program writing
    other.execute("BEGIN IMMEDIATE")
    store.connection().execute("PRAGMA busy_timeout = 50")
    with pytest.raises(StoreError) as raised:
        big_write(store)
    assert raised.value.kind == "locked"
    assert store.query("SELECT count(*) FROM settings")[0][0] == 0, "reads still work (WAL)"
    started = time.monotonic()
    health = store.health()
    assert time.monotonic() - started < 5
    assert health["status"] == "locked" and "locked" in health["detail"]
    assert store.connection().execute("PRAGMA busy_timeout").fetchone()[0] == 50, "its own timeout is restored"
    started = time.monotonic()
    assert store.note_key_use(1, time.time()) is False, "bookkeeping gives up instead of failing a request"
    assert time.monotonic() - started < 2
    other.execute("ROLLBACK")
    other.close()
    health = store.health()
    assert health["status"] == "ok" and health["last_write_failure"] is None  # its probe write worked


# --- health --------------------------------------------------------------------------------------------------

def test_health_writes_nothing_while_all_is_well(store):
    before = store.connection().total_changes
    health = store.health()
    assert health == {"status": "ok", "detail": None, "free_bytes": health["free_bytes"], "last_write_failure": None}
    assert health["free_bytes"] > 0
    assert store.connection().total_changes == before
    assert not store.query("SELECT 1 FROM settings WHERE name = 'health_probe'")


def test_health_probes_with_a_write_only_after_a_failed_one(store):
    fill(store)
    for n in range(10_000):  # tiny rows until not one more fits: then the probe's row cannot fit either
        try:
            with store.transaction() as conn:
                conn.execute("INSERT INTO settings (name, value) VALUES (?, 'x')", (str(n),))
        except StoreError:
            break
    health = store.health()
    assert health["status"] == "full" and health["detail"].endswith("database or disk is full")
    assert health["last_write_failure"]["error"].endswith("database or disk is full")
    free(store)
    health = store.health()
    assert health["status"] == "ok" and health["last_write_failure"] is None, "its probe write worked"
    assert store.query("SELECT 1 FROM settings WHERE name = 'health_probe'")


def test_low_free_space_fails_health(store):
    store.min_free_bytes = store.free_bytes() * 2
    health = store.health()
    assert health["status"] == "full" and "free on the filesystem" in health["detail"]


# --- the gateway on a full filesystem --------------------------------------------------------------------------

def unshare_available(directory: Path) -> bool:
    """Whether this user may make a user and mount namespace and mount a tmpfs in it (root or not)."""
    try:
        return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "mount", "-t", "tmpfs", "-o",
                               "size=64k", "tmpfs", str(directory)], capture_output=True, timeout=10,
                              check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class Gateway:
    """`modemgw serve` with simulated modems, its data directory on a tmpfs of `size` in its own namespace, an
    API key and a web UI user."""

    password = "correct horse battery"

    def __init__(self, base: Path, size: str = "16m"):
        data = base / "data"
        data.mkdir()
        modemgw, quoted = shlex.quote(MODEMGW), shlex.quote(str(data))
        script = (f"mount -t tmpfs -o size={size} tmpfs {quoted} && "
                  f"{modemgw} keys create --data {quoted} --name test --scopes send,read > {base / 'key'} && "
                  f"echo {shlex.quote(self.password)} | {modemgw} users add --data {quoted} --username alice "
                  f"--password-stdin > /dev/null && "
                  f"exec {modemgw} serve --data {quoted} --listen 127.0.0.1:0 --simulate 2 "
                  f"--sim-send-latency 0.5 --sim-report-delay 0.2")
        self.process = subprocess.Popen(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env={**os.environ, "MODEMGW_LOG": "WARNING"})
        self.output: list[str] = []
        self.url: str | None = None
        self.started = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()  # the log must never fill the pipe and block the gateway
        if not self.started.wait(60) or self.url is None:
            self.stop()
            raise AssertionError("modemgw serve did not start:\n" + "".join(self.output))
        self.data_dir = data  # as the gateway sees it; the test sees its tmpfs through its mount namespace:
        self.data = Path(f"/proc/{self.process.pid}/root") / str(data).lstrip("/")
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {(base / 'key').read_text().split()[0]}"

    def _read(self) -> None:
        for line in self.process.stdout:
            self.output.append(line)
            if line.startswith("modemgw is running: "):
                self.url = line.split()[3]
                self.started.set()
        self.started.set()  # ended: started or not

    def browser(self) -> requests.Session:
        """A web UI session, logged in as alice."""
        session = requests.Session()
        login = session.get(f"{self.url}ui/login", timeout=30)
        answer = session.post(f"{self.url}ui/login", timeout=30, data={
            "username": "alice", "password": self.password, "csrf_token": csrf_token(login.text)})
        assert answer.status_code == 200 and "Dashboard" in answer.text, answer.text
        return session

    def submit(self, text: str) -> requests.Response:
        return self.http.post(f"{self.url}api/v1/messages", json={"to": "+447700900123", "body": text}, timeout=30)

    def health(self) -> requests.Response:
        return requests.get(f"{self.url}health", timeout=30)

    def status(self, message_id: int) -> str:
        return self.http.get(f"{self.url}api/v1/messages/{message_id}", timeout=30).json()["status"]

    def fill_disk(self) -> Path:
        """A file that takes every free byte of the tmpfs (written until ENOSPC)."""
        filler = self.data / "filler"
        with open(filler, "wb", buffering=0) as file:
            block = b"\0" * 65536
            try:
                while True:
                    file.write(block)
            except OSError as error:
                assert error.errno == 28, error  # ENOSPC
        for size in (4096, 512, 1):  # the last partial block too
            try:
                with open(filler, "ab", buffering=0) as file:
                    while True:
                        file.write(b"\0" * size)
            except OSError:
                pass
        return filler

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.reader.join(timeout=10)
        self.process.stdout.close()


@pytest.fixture
def gateway(tmp_path):
    if not unshare_available(tmp_path):
        reason = "needs `unshare --user --map-root-user --mount` (user namespaces) to mount a tmpfs without root"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI must allow it")
        pytest.skip(reason)
    running = Gateway(tmp_path)
    yield running
    running.stop()


def test_a_full_filesystem_answers_503_loses_nothing_and_sending_resumes(gateway):
    before = [gateway.submit(f"before {n}") for n in range(6)]  # 2 modems, 0.5 s a send: 1.5 s of work
    assert all(response.status_code == 202 for response in before), [response.text for response in before]
    ids = [response.json()["messages"][0]["id"] for response in before]
    assert gateway.health().status_code == 200

    filler = gateway.fill_disk()  # while the first messages are still being sent
    refused = gateway.submit("while full")
    assert refused.status_code == 503, refused.text
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert int(refused.headers["Retry-After"]) > 0
    problem = refused.json()
    assert problem["type"] == "urn:modemgw:problem:storage-error" and problem["reason"] == "full"
    assert "nothing was stored" in problem["detail"]
    health = gateway.health()
    assert health.status_code == 503
    assert health.json()["status"] != "ok" and health.json()["database"]["status"] == "full", health.json()
    assert gateway.status(ids[0]) in ("queued", "sending", "sent", "delivered"), "reads still work"
    browser = gateway.browser()  # logging in works too
    compose = browser.get(f"{gateway.url}ui/compose", timeout=30)
    page = browser.post(f"{gateway.url}ui/compose", timeout=30, data={
        "to": "+447700900123", "body": "typed in the web UI", "confirm": "yes", "csrf_token": csrf_token(compose.text)})
    assert page.status_code == 503 and "Retry-After" in page.headers
    assert "the disk is full" in page.text and "typed in the web UI" in page.text, "said, and the form kept"
    # the modems finish what they had taken meanwhile, and their workers meet the full disk
    eventually(lambda: any("modemgw.pool" in line and "database" in line for line in gateway.output), timeout=5)
    assert gateway.submit("still full").status_code == 503

    filler.unlink()
    assert eventually(lambda: gateway.health().status_code == 200, timeout=10), gateway.health().json()
    database = gateway.health().json()["database"]
    assert database["status"] == "ok" and database["last_write_failure"] is None, database
    after = gateway.submit("after")
    assert after.status_code == 202, after.text
    ids.append(after.json()["messages"][0]["id"])

    def statuses() -> dict[int, str]:
        return {message_id: gateway.status(message_id) for message_id in ids}

    assert eventually(lambda: set(statuses().values()) <= {"sent", "delivered"}, timeout=20), statuses()
    assert not any("Traceback" in line or "unexpected error" in line for line in gateway.output), \
        "".join(gateway.output)


def test_health_says_locked_while_another_program_holds_the_database(gateway):
    # e.g. someone's sqlite3 shell in a write transaction; it runs in the gateway's namespaces to see its tmpfs
    # (SQLite itself resolves /proc/<pid>/root to "/", so the test cannot open the file through that path)
    program = (f"import sqlite3, sys\n"
               f"conn = sqlite3.connect({str(gateway.data_dir / 'modemgw.db')!r}, isolation_level=None)\n"
               f"conn.execute('BEGIN IMMEDIATE')\nprint('locked', flush=True)\nsys.stdin.readline()\n"
               f"conn.execute('ROLLBACK')\n")
    holder = subprocess.Popen(["nsenter", "-t", str(gateway.process.pid), "-U", "-m", "--preserve-credentials",
                               sys.executable, "-c", program], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        started = time.monotonic()
        health = gateway.health()
        assert time.monotonic() - started < 5, "a health check answers promptly"
        assert health.status_code == 503 and health.json()["database"]["status"] == "locked", health.json()
        assert gateway.http.get(f"{gateway.url}api/v1/messages", timeout=30).status_code == 200, "reads work"
        holder.stdin.write("\n")
        holder.stdin.close()
        assert holder.wait(timeout=10) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        holder.stdout.close()
    assert gateway.health().status_code == 200
