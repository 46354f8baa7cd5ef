"""SQLite: the schema, its migrations, and every SQL statement of modemgw.

One connection per thread (WAL, synchronous=NORMAL, a busy timeout); every state change is one short
transaction. sqlite-utils creates nothing implicitly here: the schema is versioned SQL, applied at start-up
(`PRAGMA user_version`), and sqlite-utils serves the bulk inserts of a large submit.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import sqlite_utils

log = logging.getLogger("modemgw.store")

FINAL_STATUSES = ("sent", "delivered", "undelivered", "failed", "expired", "canceled")


class StoreError(Exception):
    """The database cannot do what was asked (full disk, corrupt file, ...).

    `kind` says why, from SQLite's error code: "full" (no space left), "locked" (another writer held the
    database past the busy timeout), "io", "readonly", "corrupt", "constraint" (a UNIQUE or similar rule), or
    "error" (anything else)."""

    def __init__(self, message: str, kind: str = "error"):
        super().__init__(message)
        self.kind = kind

    @classmethod
    def from_sqlite(cls, error: sqlite3.Error, message: str) -> StoreError:
        """`message` (which says what failed) as a StoreError of the kind that SQLite's error code names."""
        code = getattr(error, "sqlite_errorcode", None)
        return cls(message, SQLITE_KINDS.get(code & 0xFF if code is not None else None, "error"))


class NotFound(StoreError):
    """No row with that id."""


# Primary SQLite result codes (the low byte of an extended code) -> StoreError.kind
SQLITE_KINDS = {5: "locked", 6: "locked", 8: "readonly", 10: "io", 11: "corrupt", 13: "full", 14: "io",
                19: "constraint", 26: "corrupt"}
# Kinds that say the database cannot take writes (kept as the store's last write failure until a commit works).
UNHEALTHY_KINDS = frozenset({"full", "locked", "io", "readonly", "corrupt"})
# Free space under this on the database's filesystem makes Store.health() fail: the next batch, or the write-ahead
# log growing before its checkpoint (up to ~4 MiB), would fail with "disk full".
MIN_FREE_BYTES = 4 * 1024 * 1024
# Store.health() waits this long for the write lock: a busy timeout short enough for a health check.
HEALTH_BUSY_TIMEOUT_MS = 500
OWN_WRITE_PATIENCE = 3.0  # ... and this long for a write of this process (a large submit) to finish


MIGRATIONS: list[str] = [
    # 1: the whole schema as of the gateway core
    """
    CREATE TABLE modems (
        id INTEGER PRIMARY KEY,
        imei TEXT UNIQUE,
        iccid TEXT UNIQUE,
        imsi TEXT,
        label TEXT UNIQUE,
        grp TEXT,
        number TEXT,
        manufacturer TEXT,
        model TEXT,
        profile TEXT,
        device TEXT,
        enabled INTEGER NOT NULL DEFAULT 1,
        rate_per_minute INTEGER,
        quota_day INTEGER,
        quota_month INTEGER,
        day_key TEXT,
        sent_day INTEGER NOT NULL DEFAULT 0,
        month_key TEXT,
        sent_month INTEGER NOT NULL DEFAULT 0,
        sent_total INTEGER NOT NULL DEFAULT 0,
        failed_total INTEGER NOT NULL DEFAULT 0,
        delivered_total INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'offline',
        signal_dbm INTEGER,
        registration TEXT,
        operator TEXT,
        last_error TEXT,
        last_seen REAL,
        created_at REAL NOT NULL
    );
    CREATE TABLE submissions (
        id INTEGER PRIMARY KEY,
        idempotency_key TEXT UNIQUE,
        body_hash TEXT NOT NULL,
        result TEXT,
        api_key_id INTEGER,
        created_at REAL NOT NULL
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        submission_id INTEGER,
        recipient TEXT NOT NULL,
        body TEXT NOT NULL,
        encoding TEXT NOT NULL,
        segments INTEGER NOT NULL,
        status TEXT NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        due_at REAL NOT NULL,
        expires_at REAL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        client_ref TEXT,
        api_key_id INTEGER,
        route_modem TEXT,
        route_group TEXT,
        pinned_modem_id INTEGER,
        avoid_modem_id INTEGER,
        modem_id INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0,
        concat_ref INTEGER,
        request_report INTEGER NOT NULL DEFAULT 1,
        validity INTEGER,
        error_code INTEGER,
        error_reason TEXT,
        sent_at REAL,
        delivered_at REAL,
        report TEXT,
        possible_duplicate INTEGER NOT NULL DEFAULT 0,
        callback_url TEXT
    );
    CREATE INDEX messages_queue ON messages(priority DESC, id) WHERE status = 'queued';
    CREATE INDEX messages_scheduled ON messages(due_at) WHERE status = 'scheduled';
    CREATE INDEX messages_status ON messages(status, id);
    CREATE INDEX messages_recipient ON messages(recipient, id);
    CREATE INDEX messages_client_ref ON messages(client_ref) WHERE client_ref IS NOT NULL;
    CREATE INDEX messages_created ON messages(created_at);
    CREATE INDEX messages_modem ON messages(modem_id, id);
    CREATE INDEX messages_awaiting_report ON messages(sent_at) WHERE status = 'sent' AND report IS NULL;
    CREATE TABLE parts (
        message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        modem_id INTEGER,
        tp_mr INTEGER,
        sent_at REAL,
        report_status TEXT,
        report_code INTEGER,
        report_at REAL,
        PRIMARY KEY (message_id, seq)
    );
    CREATE INDEX parts_report ON parts(modem_id, tp_mr, sent_at);
    CREATE INDEX parts_sent ON parts(modem_id, sent_at);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        message_id INTEGER,
        modem_id INTEGER,
        kind TEXT NOT NULL,
        detail TEXT
    );
    CREATE INDEX events_message ON events(message_id, id);
    CREATE INDEX events_modem ON events(modem_id, id);
    CREATE TABLE inbox (
        id INTEGER PRIMARY KEY,
        modem_id INTEGER,
        sender TEXT NOT NULL,
        body TEXT NOT NULL,
        sent_at REAL,
        received_at REAL NOT NULL,
        parts INTEGER NOT NULL DEFAULT 1,
        partial INTEGER NOT NULL DEFAULT 0,
        read INTEGER NOT NULL DEFAULT 0,
        dedupe_key TEXT UNIQUE
    );
    CREATE INDEX inbox_sender ON inbox(sender, id);
    CREATE INDEX inbox_received ON inbox(received_at);
    CREATE TABLE inbox_parts (
        id INTEGER PRIMARY KEY,
        modem_id INTEGER,
        sender TEXT NOT NULL,
        reference INTEGER NOT NULL,
        total INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        encoding TEXT NOT NULL,
        payload BLOB NOT NULL,
        sent_at REAL,
        received_at REAL NOT NULL,
        dedupe_key TEXT UNIQUE
    );
    CREATE INDEX inbox_parts_group ON inbox_parts(sender, reference, total);
    CREATE TABLE inbox_seen (dedupe_key TEXT PRIMARY KEY, at REAL NOT NULL);
    CREATE TABLE optouts (
        number TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        source TEXT NOT NULL,
        note TEXT
    );
    CREATE TABLE sticky (
        recipient TEXT PRIMARY KEY,
        modem_id INTEGER NOT NULL,
        at REAL NOT NULL
    );
    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        prefix TEXT NOT NULL UNIQUE,
        hash TEXT NOT NULL,
        scopes TEXT NOT NULL,
        grp TEXT,
        rate_per_minute INTEGER,
        created_at REAL NOT NULL,
        last_used_at REAL,
        revoked_at REAL
    );
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL,
        created_at REAL NOT NULL,
        last_login_at REAL,
        disabled INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE webhooks (
        id INTEGER PRIMARY KEY,
        url TEXT NOT NULL,
        events TEXT NOT NULL,
        secret TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        created_at REAL NOT NULL
    );
    CREATE TABLE webhook_deliveries (
        id INTEGER PRIMARY KEY,
        webhook_id INTEGER NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
        event TEXT NOT NULL,
        payload TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL,
        last_status_code INTEGER,
        last_error TEXT,
        created_at REAL NOT NULL,
        delivered_at REAL
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
    """,
    # 2: webhook deliveries also go to a message's own callback_url (no subscription), carry their target
    # and event id, and are ordered per message; a settings table holds the gateway's signing secret.
    """
    CREATE TABLE webhook_deliveries_new (
        id INTEGER PRIMARY KEY,
        webhook_id INTEGER REFERENCES webhooks(id) ON DELETE CASCADE,
        url TEXT NOT NULL,
        event TEXT NOT NULL,
        event_id TEXT NOT NULL,
        message_id INTEGER,
        payload TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL,
        last_status_code INTEGER,
        last_error TEXT,
        created_at REAL NOT NULL,
        delivered_at REAL
    );
    INSERT INTO webhook_deliveries_new (id, webhook_id, url, event, event_id, payload, status, attempts,
        next_attempt_at, last_status_code, last_error, created_at, delivered_at)
        SELECT d.id, d.webhook_id, w.url, d.event, 'evt_' || d.id, d.payload, d.status, d.attempts,
               d.next_attempt_at, d.last_status_code, d.last_error, d.created_at, d.delivered_at
        FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id;
    DROP TABLE webhook_deliveries;
    ALTER TABLE webhook_deliveries_new RENAME TO webhook_deliveries;
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
    CREATE INDEX webhook_deliveries_order ON webhook_deliveries(url, message_id, id);
    CREATE INDEX webhook_deliveries_hook ON webhook_deliveries(webhook_id, id);
    CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 3: how a modem's status reports reach us when its first report route gave none (the report watchdog):
    # 'ds=1' (direct +CDS), 'poll' (stored, polled), 'none' (the modem or network gives none)
    """
    ALTER TABLE modems ADD COLUMN report_mode TEXT;
    """,
    # 4: web UI sessions kept on the server, so that logout, a password change, disabling or deleting a user end
    # them at once; the cookie carries only the session's random token, of which this keeps a SHA-256
    """
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at REAL NOT NULL,
        last_seen_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX sessions_user ON sessions(user_id);
    """,
    # 5: an Idempotency-Key belongs to the API key that sent it (gateway._scoped): earlier keys are scoped as
    # their submissions were made, so a client retrying across the upgrade still gets its first result
    """
    UPDATE submissions SET idempotency_key = CASE WHEN api_key_id IS NULL THEN 'local:'
        ELSE 'key' || api_key_id || ':' END || idempotency_key WHERE idempotency_key IS NOT NULL;
    """,
]


@dataclass
class Claimed:
    """A message a worker has claimed for sending."""

    id: int
    recipient: str
    body: str
    encoding: str
    segments: int
    request_report: bool
    validity: int | None
    concat_ref: int | None
    attempts: int
    sent_parts: dict[int, int]  # seq -> TP-MR of parts already sent (after a crash or a partial failure)


@dataclass(frozen=True)
class WriteFailure:
    """The store's last failed write (kept until a commit works again)."""
    at: float
    kind: str
    error: str


@contextmanager
def _busy_timeout(conn: sqlite3.Connection, milliseconds: int) -> Iterator[None]:
    """Wait at most `milliseconds` for other programs' locks inside the block; the connection's own timeout after."""
    normal = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    conn.execute(f"PRAGMA busy_timeout = {int(milliseconds)}")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(normal)}")


def _create_private(path: str) -> None:
    """A new database file is the owner's alone (0600), whatever the umask: it holds the web UI's sessions (token
    hashes), key hashes and every message. SQLite gives its -wal and -shm files the same mode. An existing file is left
    as it is (a restore or an administrator may have set its group)."""
    if path == ":memory:" or path.startswith("file:"):
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    except FileExistsError:
        pass
    except OSError as error:
        raise StoreError(f"cannot create database {path}: {error}", "io") from None


def day_key(moment: float) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(moment))


def month_key(moment: float) -> str:
    return time.strftime("%Y-%m", time.localtime(moment))


class Store:
    """The database at `path`, opened once per thread."""

    min_free_bytes = MIN_FREE_BYTES  # health() fails under this much free space (settable per store)

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._write_failure: WriteFailure | None = None
        _create_private(self.path)
        try:
            self._migrate()
        except sqlite3.Error as error:  # e.g. no space left for the schema of a new database
            self._rollback(self.connection())  # executescript leaves a failed script's transaction open
            raise StoreError.from_sqlite(error, f"database {self.path}: cannot update its schema: {error}") from None

    # --- connections and transactions --------------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use. Raises StoreError."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
            except sqlite3.Error as error:
                raise StoreError.from_sqlite(error, f"cannot open database {self.path}: {error}") from None
            conn.row_factory = sqlite3.Row
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA busy_timeout=10000")
                conn.execute("PRAGMA foreign_keys=ON")
            except sqlite3.Error as error:
                conn.close()
                raise StoreError.from_sqlite(error, f"cannot open database {self.path}: {error}") from None
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; rolled back on any error, and SQLite errors become StoreError.

        Writers of this process queue on a lock first: SQLite's own busy handler sleeps in steps of
        milliseconds when two writers collide, which would put sleeps in the send path. Other processes
        (the CLI) still meet the busy timeout.

        A write that fails because the database is unwell is remembered (`write_failure`, `health()`) until a
        commit works again. Raises StoreError; an exception of the block is raised as it is, after rollback."""
        conn = self.connection()
        with self._write_lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:
                raise self._write_failed(StoreError.from_sqlite(error, f"database {self.path}: {error}")) from None
            try:
                yield conn
            except sqlite3.Error as error:
                self._rollback(conn)
                raise self._write_failed(StoreError.from_sqlite(error, f"database {self.path}: {error}")) from None
            except BaseException as error:
                self._rollback(conn)
                if isinstance(error, StoreError):
                    self._write_failed(error)
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as error:
                self._rollback(conn)
                raise self._write_failed(StoreError.from_sqlite(
                    error, f"database {self.path}: commit failed: {error}")) from None
            self._write_worked()

    def _rollback(self, conn: sqlite3.Connection) -> None:
        """End a failed transaction. SQLite may have rolled it back by itself (SQLITE_FULL, IOERR, BUSY can):
        then a ROLLBACK would fail with "no transaction is active". A failing ROLLBACK is logged, never raised:
        the error that led here is the one to report. A connection still stuck in its transaction is dropped
        (closing it rolls back), so that the thread's next transaction starts clean."""
        if not conn.in_transaction:
            return
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error as error:
            log.warning("database %s: rollback failed: %s", self.path, error)
        if conn.in_transaction:
            self._local.conn = None
            try:
                conn.close()
            except sqlite3.Error as error:
                log.warning("database %s: close failed: %s", self.path, error)

    def _write_failed(self, error: StoreError) -> StoreError:
        """Remember a failed write that says the database is unwell (not a broken rule); returns `error`."""
        if error.kind in UNHEALTHY_KINDS:
            if self._write_failure is None:
                log.error("database %s: writes fail: %s", self.path, error)
            self._write_failure = WriteFailure(time.time(), error.kind, str(error))
        return error

    def _write_worked(self) -> None:
        if self._write_failure is not None:
            self._write_failure = None
            log.info("database %s: writes work again", self.path)

    @property
    def write_failure(self) -> WriteFailure | None:
        """The last failed write since the last commit that worked, or None."""
        return self._write_failure

    def query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        """Rows of one read. Raises StoreError."""
        try:
            return self.connection().execute(sql, params).fetchall()
        except sqlite3.Error as error:
            raise StoreError.from_sqlite(error, f"database {self.path}: {error}") from None

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # --- health ----------------------------------------------------------------------------------------

    def free_bytes(self) -> int | None:
        """Free space (for this user) on the database's filesystem; None if it cannot be read."""
        try:
            stat = os.statvfs(os.path.dirname(os.path.abspath(self.path)))
        except OSError:
            return None
        return stat.f_bavail * stat.f_frsize

    def health(self) -> dict:
        """Whether the database works: {"status", "detail", "free_bytes", "last_write_failure"}.

        `status` is "ok" or the kind of trouble ("full", "locked", "io", "readonly", "corrupt", "error");
        `detail` says what is wrong. Checked without writing while all is well (SD cards wear): a read, then
        `BEGIN IMMEDIATE` with a short busy timeout and ROLLBACK (a writer of another process holding the database
        shows as "locked"). Only while a failed write is remembered does it write one tiny row, to see whether
        space has come back; when that commits, the failure is forgotten. Free space under `min_free_bytes`
        counts as "full". Never raises."""
        free = self.free_bytes()
        trouble = self._probe()
        if trouble is None and free is not None and free < self.min_free_bytes:
            trouble = ("full", (f"only {free // 1024} KiB free on the filesystem of {self.path} (under "
                                f"{self.min_free_bytes // 1024} KiB)"))
        failure = self._write_failure
        return {"status": trouble[0] if trouble else "ok", "detail": trouble[1] if trouble else None,
                "free_bytes": free,
                "last_write_failure": {"at": failure.at, "error": failure.error} if failure else None}

    def _probe(self) -> tuple[str, str] | None:
        """(kind, what is wrong), or None when the database reads and would take a write now."""
        try:
            self.query("SELECT count(*) FROM sqlite_master")
            conn = self.connection()
        except StoreError as error:
            return error.kind, str(error)
        # a write of this gateway may hold the lock a while (a 10,000-recipient submit takes about a second)
        if not self._write_lock.acquire(timeout=OWN_WRITE_PATIENCE):
            return "locked", (f"database {self.path}: a write of this gateway has waited or worked for more than "
                              f"{OWN_WRITE_PATIENCE:g} s")
        try:
            with _busy_timeout(conn, HEALTH_BUSY_TIMEOUT_MS):
                conn.execute("BEGIN IMMEDIATE")
            if self._write_failure is None:
                conn.execute("ROLLBACK")
                return None
            conn.execute("INSERT INTO settings (name, value) VALUES ('health_probe', ?) ON CONFLICT (name) "
                         "DO UPDATE SET value = excluded.value", (str(time.time()),))
            conn.execute("COMMIT")
            self._write_worked()
            return None
        except sqlite3.Error as error:
            self._rollback(conn)
            failure = StoreError.from_sqlite(error, f"database {self.path}: {error}")
            return failure.kind, str(failure)
        finally:
            self._write_lock.release()

    def note_key_use(self, key_id: int, at: float) -> bool:
        """Record when an API key was last used, if the database is free now (False when not recorded)."""
        return self._write_if_free("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (at, key_id))

    def note_login(self, user_id: int, at: float) -> bool:
        """Record when a web UI user last logged in, if the database is free now (False when not recorded)."""
        return self._write_if_free("UPDATE users SET last_login_at = ? WHERE id = ?", (at, user_id))

    def _write_if_free(self, sql: str, params: Any = (), wait_ms: int = 100) -> bool:
        """One write statement, unless the database stays busy for `wait_ms` or fails: for bookkeeping that must
        never hold up or fail a request (when a key or a user was last seen). False when nothing was written."""
        try:
            conn = self.connection()
        except StoreError:
            return False
        if not self._write_lock.acquire(timeout=wait_ms / 1000):
            return False
        try:
            with _busy_timeout(conn, wait_ms):
                conn.execute("BEGIN IMMEDIATE")
            conn.execute(sql, params)
            conn.execute("COMMIT")
        except sqlite3.Error:
            self._rollback(conn)
            return False
        finally:
            self._write_lock.release()
        self._write_worked()
        return True

    def _migrate(self) -> None:
        conn = self.connection()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(f"database {self.path} has schema version {version}, newer than this modemgw "
                             f"({len(MIGRATIONS)}); upgrade modemgw")
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            conn.executescript(f"BEGIN IMMEDIATE; {script}; PRAGMA user_version = {number}; COMMIT;")

    @property
    def schema_version(self) -> int:
        return self.query("PRAGMA user_version")[0][0]

    # --- events ----------------------------------------------------------------------------------------

    @staticmethod
    def _event(conn: sqlite3.Connection, kind: str, message_id: int | None = None, modem_id: int | None = None,
               now: float | None = None, **detail: Any) -> None:
        conn.execute("INSERT INTO events (at, message_id, modem_id, kind, detail) VALUES (?, ?, ?, ?, ?)",
                     (now or time.time(), message_id, modem_id, kind,
                      json.dumps(detail, ensure_ascii=False) if detail else None))

    def log_event(self, kind: str, message_id: int | None = None, modem_id: int | None = None, **detail) -> None:
        with self.transaction() as conn:
            self._event(conn, kind, message_id, modem_id, **detail)

    def events(self, message_id: int | None = None, modem_id: int | None = None, limit: int = 200) -> list[dict]:
        if message_id is not None:
            rows = self.query("SELECT * FROM events WHERE message_id = ? ORDER BY id LIMIT ?", (message_id, limit))
        elif modem_id is not None:
            rows = self.query("SELECT * FROM events WHERE modem_id = ? ORDER BY id DESC LIMIT ?", (modem_id, limit))
        else:
            rows = self.query("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,))
        return [dict(row) | {"detail": json.loads(row["detail"]) if row["detail"] else {}} for row in rows]

    # --- modems ----------------------------------------------------------------------------------------

    def attach_modem(self, imei: str, iccid: str | None, **fields: Any) -> dict:
        """The modem row for this IMEI/ICCID (created on first sight), updated with `fields` (identity, device).
        A SIM moved to another modem keeps its row (limits and quotas belong to the SIM)."""
        now = time.time()
        with self.transaction() as conn:
            row = None
            if iccid:
                row = conn.execute("SELECT * FROM modems WHERE iccid = ?", (iccid,)).fetchone()
            if row is None:
                row = conn.execute("SELECT * FROM modems WHERE imei = ?", (imei,)).fetchone()
            if row is None:
                label = fields.pop("label", None) or f"modem-{imei[-4:]}"
                while conn.execute("SELECT 1 FROM modems WHERE label = ?", (label,)).fetchone():
                    label += "x"
                cursor = conn.execute("INSERT INTO modems (imei, iccid, label, created_at) VALUES (?, ?, ?, ?)",
                                      (imei, iccid, label, now))
                modem_id = cursor.lastrowid
                self._event(conn, "modem.added", modem_id=modem_id, now=now, imei=imei, iccid=iccid)
            else:
                modem_id = row["id"]
                fields.pop("label", None) if row["label"] else None
                if row["imei"] != imei:
                    # another row may still hold this IMEI (the old SIM's); free it for this one
                    conn.execute("UPDATE modems SET imei = NULL WHERE imei = ? AND id != ?", (imei, modem_id))
            fields.update(imei=imei, iccid=iccid, last_seen=now)
            self._update_modem(conn, modem_id, fields)
            return dict(conn.execute("SELECT * FROM modems WHERE id = ?", (modem_id,)).fetchone())

    @staticmethod
    def _update_modem(conn: sqlite3.Connection, modem_id: int, fields: dict) -> None:
        allowed = {"imei", "iccid", "imsi", "label", "grp", "number", "manufacturer", "model", "profile", "device",
                   "enabled", "rate_per_minute", "quota_day", "quota_month", "state", "signal_dbm",
                   "registration", "operator", "last_error", "last_seen", "report_mode"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown modem fields: {', '.join(sorted(unknown))}")
        if fields:
            assignments = ", ".join(f"{name} = ?" for name in fields)
            conn.execute(f"UPDATE modems SET {assignments} WHERE id = ?", (*fields.values(), modem_id))

    def imei_last_on(self, device: str) -> str | None:
        """The IMEI of the modem most recently seen on `device`, if any."""
        rows = self.query("SELECT imei FROM modems WHERE device = ? AND imei IS NOT NULL "
                          "ORDER BY last_seen DESC LIMIT 1", (device,))
        return rows[0][0] if rows else None

    def update_modem(self, modem_id: int, **fields: Any) -> dict:
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM modems WHERE id = ?", (modem_id,)).fetchone() is None:
                raise NotFound(f"no modem {modem_id}")
            self._update_modem(conn, modem_id, fields)
            return dict(conn.execute("SELECT * FROM modems WHERE id = ?", (modem_id,)).fetchone())

    def set_modem_state(self, modem_id: int, state: str, error: str | None = None) -> None:
        with self.transaction() as conn:
            previous = conn.execute("SELECT state FROM modems WHERE id = ?", (modem_id,)).fetchone()
            conn.execute("UPDATE modems SET state = ?, last_error = COALESCE(?, last_error), last_seen = ? "
                         "WHERE id = ?", (state, error, time.time(), modem_id))
            if previous is not None and previous["state"] != state:
                self._event(conn, f"modem.{state}", modem_id=modem_id, **({"error": error} if error else {}))

    def modem(self, modem_id: int) -> dict:
        rows = self.query("SELECT * FROM modems WHERE id = ?", (modem_id,))
        if not rows:
            raise NotFound(f"no modem {modem_id}")
        return dict(rows[0])

    def modems(self) -> list[dict]:
        return [dict(row) for row in self.query("SELECT * FROM modems ORDER BY id")]

    def sent_in_window(self, modem_id: int, since: float) -> list[float]:
        """Send times of parts since `since` (to rebuild a per-minute window after a restart)."""
        return [row[0] for row in self.query("SELECT sent_at FROM parts WHERE modem_id = ? AND sent_at >= ? "
                                             "ORDER BY sent_at", (modem_id, since))]

    # --- submit ----------------------------------------------------------------------------------------

    def find_submission(self, key: str) -> sqlite3.Row | None:
        rows = self.query("SELECT * FROM submissions WHERE idempotency_key = ?", (key,))
        return rows[0] if rows else None

    def insert_messages(self, rows: list[dict], idempotency_key: str | None, body_hash: str,
                        api_key_id: int | None, result_for: Callable[[int, list[int]], dict]) -> dict:
        """Insert a submission, its messages and its result (`result_for(submission id, message ids)`) in one
        transaction, and return the result. Raises StoreError (e.g. the disk is full): then nothing was stored."""
        now = time.time()
        with self.transaction() as conn:
            try:
                cursor = conn.execute("INSERT INTO submissions (idempotency_key, body_hash, api_key_id, created_at) "
                                      "VALUES (?, ?, ?, ?)", (idempotency_key, body_hash, api_key_id, now))
            except sqlite3.IntegrityError:
                raise StoreError("idempotency key already used", "constraint") from None
            submission_id = cursor.lastrowid
            for row in rows:
                row["submission_id"] = submission_id
            try:
                sqlite_utils.Database(conn)["messages"].insert_all(rows, batch_size=1000)
            except sqlite3.Error as error:
                raise StoreError.from_sqlite(error, f"cannot store messages: {error}") from None
            ids = [row[0] for row in conn.execute("SELECT id FROM messages WHERE submission_id = ? ORDER BY id",
                                                  (submission_id,))]
            conn.executemany("INSERT INTO events (at, message_id, kind, detail) VALUES (?, ?, ?, NULL)",
                             [(now, message_id, "message.created") for message_id in ids])
            result = result_for(submission_id, ids)
            conn.execute("UPDATE submissions SET result = ? WHERE id = ?", (json.dumps(result), submission_id))
            return result

    def setting(self, name: str, create: Callable[[], str]) -> str:
        """A gateway-wide setting (e.g. a secret), made by `create()` the first time it is asked for."""
        rows = self.query("SELECT value FROM settings WHERE name = ?", (name,))
        if rows:
            return rows[0][0]
        with self.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO settings (name, value) VALUES (?, ?)", (name, create()))
        return self.query("SELECT value FROM settings WHERE name = ?", (name,))[0][0]

    def optouts_among(self, numbers: list[str]) -> set[str]:
        if not numbers:
            return set()
        rows = self.query("SELECT number FROM optouts WHERE number IN (SELECT value FROM json_each(?))",
                          (json.dumps(numbers),))
        return {row[0] for row in rows}

    # --- opt-outs --------------------------------------------------------------------------------------

    def add_optout(self, number: str, source: str, note: str | None = None) -> bool:
        with self.transaction() as conn:
            cursor = conn.execute("INSERT OR IGNORE INTO optouts (number, created_at, source, note) "
                                  "VALUES (?, ?, ?, ?)", (number, time.time(), source, note))
            return cursor.rowcount == 1

    def remove_optout(self, number: str) -> bool:
        with self.transaction() as conn:
            return conn.execute("DELETE FROM optouts WHERE number = ?", (number,)).rowcount == 1

    def optouts(self) -> list[dict]:
        return [dict(row) for row in self.query("SELECT * FROM optouts ORDER BY created_at DESC")]

    # --- dispatch --------------------------------------------------------------------------------------

    def release_scheduled(self, now: float) -> int:
        """Scheduled messages whose time has come become queued."""
        with self.transaction() as conn:
            return conn.execute("UPDATE messages SET status = 'queued', updated_at = ? "
                                "WHERE status = 'scheduled' AND due_at <= ?", (now, now)).rowcount

    def next_due(self) -> float | None:
        """The earliest time a scheduled or backed-off message becomes sendable (None when none waits)."""
        row = self.query("SELECT MIN(due_at) FROM messages WHERE status IN ('queued', 'scheduled')")[0]
        return row[0]

    def queue_depth(self) -> int:
        return self.query("SELECT COUNT(*) FROM messages WHERE status = 'queued'")[0][0]

    def claim_next(self, modem_id: int, label: str, group: str | None, others: list[tuple[str, str | None]],
                   now: float, sticky_to: list[int] | None = None) -> Claimed | None:
        """Atomically take the next message this modem may send: highest priority, then oldest, among those
        due now whose route allows this modem. A retry avoids the modem it failed on while one of `others`
        (label, group of the other modems that can send now) is allowed by its route; otherwise it comes back
        here. `sticky_to` (live modem ids) keeps recipients with the modem they had before.
        """
        sticky_clause = ""
        params: list[Any] = [now, label, group, modem_id, modem_id, json.dumps(others)]
        if sticky_to is not None:
            sticky_clause = ("AND NOT EXISTS (SELECT 1 FROM sticky s WHERE s.recipient = m.recipient "
                             "AND s.modem_id != ? AND s.modem_id IN (SELECT value FROM json_each(?)))")
            params += [modem_id, json.dumps(sticky_to)]
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT * FROM messages m INDEXED BY messages_queue WHERE status = 'queued' AND due_at <= ? "
                "AND (route_modem IS NULL OR route_modem = ?) AND (route_group IS NULL OR route_group = ?) "
                "AND (pinned_modem_id IS NULL OR pinned_modem_id = ?) "
                "AND (avoid_modem_id IS NULL OR avoid_modem_id != ? OR NOT EXISTS (SELECT 1 FROM json_each(?) o "
                "WHERE (m.route_modem IS NULL OR m.route_modem = json_extract(o.value, '$[0]')) "
                f"AND (m.route_group IS NULL OR m.route_group = json_extract(o.value, '$[1]')))) {sticky_clause} "
                "ORDER BY priority DESC, id LIMIT 1", params).fetchone()
            if row is None:
                return None
            conn.execute("UPDATE messages SET status = 'sending', modem_id = ?, attempts = attempts + 1, "
                         "updated_at = ? WHERE id = ?", (modem_id, now, row["id"]))
            self._event(conn, "message.sending", row["id"], modem_id, now=now)
            sent = {part["seq"]: part["tp_mr"] for part in conn.execute(
                "SELECT seq, tp_mr FROM parts WHERE message_id = ? AND tp_mr IS NOT NULL", (row["id"],))}
            return Claimed(row["id"], row["recipient"], row["body"], row["encoding"], row["segments"],
                           bool(row["request_report"]), row["validity"], row["concat_ref"], row["attempts"] + 1,
                           sent)

    def set_concat_ref(self, message_id: int, reference: int) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE messages SET concat_ref = ? WHERE id = ?", (reference, message_id))

    def record_part_sent(self, message_id: int, seq: int, modem_id: int, tp_mr: int, now: float,
                         sticky: bool = False, recipient: str | None = None, last: bool = False) -> None:
        """One part has its +CMGS: record it and count it against the SIM's limits, in one transaction;
        with `last`, the message is marked sent in the same transaction (one commit per SMS on the hot path)."""
        day, month = day_key(now), month_key(now)
        with self.transaction() as conn:
            conn.execute("INSERT INTO parts (message_id, seq, modem_id, tp_mr, sent_at) VALUES (?, ?, ?, ?, ?) "
                         "ON CONFLICT (message_id, seq) DO UPDATE SET modem_id = excluded.modem_id, "
                         "tp_mr = excluded.tp_mr, sent_at = excluded.sent_at, report_status = NULL, "
                         "report_code = NULL, report_at = NULL", (message_id, seq, modem_id, tp_mr, now))
            conn.execute(
                "UPDATE modems SET sent_day = CASE WHEN day_key = ? THEN sent_day + 1 ELSE 1 END, day_key = ?, "
                "sent_month = CASE WHEN month_key = ? THEN sent_month + 1 ELSE 1 END, month_key = ? WHERE id = ?",
                (day, day, month, month, modem_id))
            self._event(conn, "part.sent", message_id, modem_id, now=now, seq=seq, reference=tp_mr)
            if last:
                self._mark_sent(conn, message_id, modem_id, now)
            if sticky and recipient:
                conn.execute("INSERT INTO sticky (recipient, modem_id, at) VALUES (?, ?, ?) ON CONFLICT (recipient) "
                             "DO UPDATE SET modem_id = excluded.modem_id, at = excluded.at",
                             (recipient, modem_id, now))

    def mark_sent(self, message_id: int, modem_id: int, now: float) -> None:
        with self.transaction() as conn:
            self._mark_sent(conn, message_id, modem_id, now)

    def _mark_sent(self, conn: sqlite3.Connection, message_id: int, modem_id: int, now: float) -> None:
        # an error of an earlier attempt is history now (the events keep it)
        conn.execute("UPDATE messages SET status = 'sent', sent_at = ?, updated_at = ?, pinned_modem_id = NULL, "
                     "avoid_modem_id = NULL, error_code = NULL, error_reason = NULL WHERE id = ?",
                     (now, now, message_id))
        conn.execute("UPDATE modems SET sent_total = sent_total + 1 WHERE id = ?", (modem_id,))
        self._event(conn, "message.sent", message_id, modem_id, now=now)

    def requeue(self, message_id: int, modem_id: int, due_at: float, reason: str, *, code: int | None = None,
                pin: bool = False, avoid: bool = True, count_attempt: bool = True,
                possible_duplicate: bool = False) -> None:
        """Back to the queue: after a temporary error (retry at `due_at`, elsewhere when possible), or when a
        modem went away under it. `pin` keeps it on this modem (its first parts went out through it)."""
        now = time.time()
        with self.transaction() as conn:
            conn.execute(
                "UPDATE messages SET status = 'queued', due_at = ?, updated_at = ?, error_code = ?, "
                "error_reason = ?, pinned_modem_id = ?, avoid_modem_id = ?, "
                "attempts = attempts - ?, possible_duplicate = MAX(possible_duplicate, ?) "
                "WHERE id = ? AND status = 'sending'",
                (due_at, now, code, reason, modem_id if pin else None, modem_id if avoid and not pin else None,
                 0 if count_attempt else 1, 1 if possible_duplicate else 0, message_id))
            self._event(conn, "message.retry", message_id, modem_id, now=now, reason=reason, code=code,
                        due_at=due_at)

    def unpin(self, message_id: int, reason: str) -> None:
        """A pinned message's modem is gone: send all its parts again elsewhere (a possible partial duplicate)."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM parts WHERE message_id = ?", (message_id,))
            conn.execute("UPDATE messages SET pinned_modem_id = NULL, possible_duplicate = 1, concat_ref = NULL "
                         "WHERE id = ?", (message_id,))
            self._event(conn, "message.resend_all_parts", message_id, reason=reason)

    def pinned_to(self, modem_id: int) -> list[int]:
        return [row[0] for row in self.query("SELECT id FROM messages WHERE status = 'queued' AND "
                                             "pinned_modem_id = ?", (modem_id,))]

    def fail(self, message_id: int, modem_id: int | None, code: int | None, reason: str, *,
             possible_duplicate: bool = False) -> None:
        now = time.time()
        with self.transaction() as conn:
            conn.execute("UPDATE messages SET status = 'failed', error_code = ?, error_reason = ?, updated_at = ?, "
                         "pinned_modem_id = NULL, possible_duplicate = MAX(possible_duplicate, ?) WHERE id = ?",
                         (code, reason, now, 1 if possible_duplicate else 0, message_id))
            if modem_id is not None:
                conn.execute("UPDATE modems SET failed_total = failed_total + 1 WHERE id = ?", (modem_id,))
            self._event(conn, "message.failed", message_id, modem_id, now=now, code=code, reason=reason)

    def recover_in_flight(self) -> list[dict]:
        """After a crash: messages left `sending`. Those whose every part has its +CMGS are sent; the rest go
        back to the queue for their missing parts only (pinned to their modem), flagged as possible duplicates
        (the modem may have sent the part whose +CMGS we never recorded)."""
        recovered = []
        now = time.time()
        with self.transaction() as conn:
            for row in conn.execute("SELECT * FROM messages WHERE status = 'sending'").fetchall():
                done = conn.execute("SELECT COUNT(*) FROM parts WHERE message_id = ? AND tp_mr IS NOT NULL",
                                    (row["id"],)).fetchone()[0]
                if done >= row["segments"]:
                    conn.execute("UPDATE messages SET status = 'sent', sent_at = COALESCE(sent_at, ?), "
                                 "updated_at = ? WHERE id = ?", (now, now, row["id"]))
                    self._event(conn, "message.sent", row["id"], row["modem_id"], now=now, recovered=True)
                    recovered.append({"id": row["id"], "action": "sent"})
                    continue
                conn.execute("UPDATE messages SET status = 'queued', possible_duplicate = 1, updated_at = ?, "
                             "pinned_modem_id = CASE WHEN ? > 0 THEN modem_id END WHERE id = ?",
                             (now, done, row["id"]))
                self._event(conn, "message.possible_duplicate", row["id"], row["modem_id"], now=now,
                            reason="in flight when the gateway stopped; unsent parts are sent again",
                            parts_sent=done)
                recovered.append({"id": row["id"], "action": "requeued"})
        return recovered

    def expire_due(self, now: float) -> list[int]:
        with self.transaction() as conn:
            ids = [row[0] for row in conn.execute(
                "SELECT id FROM messages WHERE status IN ('queued', 'scheduled') AND expires_at IS NOT NULL "
                "AND expires_at <= ?", (now,))]
            if ids:
                # the reason says whether a route kept it waiting for a modem that never came (a routed retry
                # may use only the modems its route names; without one, it waits for its validity)
                conn.execute(
                    "UPDATE messages SET status = 'expired', updated_at = ?, error_reason = 'not sent within its "
                    "validity' || CASE WHEN route_modem IS NOT NULL THEN ': modem ' || route_modem || "
                    "' (its route) could not send it' WHEN route_group IS NOT NULL THEN ': no modem of group ' || "
                    "route_group || ' (its route) could send it' ELSE '' END || "
                    "COALESCE(' (last error: ' || error_reason || ')', '') WHERE id IN (SELECT value FROM json_each(?))",
                    (now, json.dumps(ids)))
                conn.executemany("INSERT INTO events (at, message_id, kind) VALUES (?, ?, 'message.expired')",
                                 [(now, message_id) for message_id in ids])
            return ids

    def cancel(self, message_id: int) -> str:
        """Cancel a message not yet sending; returns its status afterwards. Raises NotFound."""
        with self.transaction() as conn:
            row = conn.execute("SELECT status FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                raise NotFound(f"no message {message_id}")
            if row["status"] in ("queued", "scheduled"):
                conn.execute("UPDATE messages SET status = 'canceled', updated_at = ? WHERE id = ?",
                             (time.time(), message_id))
                self._event(conn, "message.canceled", message_id)
                return "canceled"
            return row["status"]

    # --- status reports ----------------------------------------------------------------------------------

    def candidates_for_report(self, modem_id: int, tp_mr: int, since: float) -> list[sqlite3.Row]:
        """Parts this modem sent with this TP-MR since `since`, newest first (TP-MR wraps at 256)."""
        return self.query(
            "SELECT p.message_id, p.seq, p.sent_at, m.recipient FROM parts p JOIN messages m ON m.id = p.message_id "
            "WHERE p.modem_id = ? AND p.tp_mr = ? AND p.sent_at >= ? ORDER BY p.sent_at DESC",
            (modem_id, tp_mr, since))

    def record_report(self, message_id: int, seq: int, modem_id: int, outcome: str, code: int,
                      now: float) -> dict:
        """Store a part's report and aggregate the message: delivered when every part is, undelivered when
        any part failed for good. Returns the message's status, report and whether it changed."""
        with self.transaction() as conn:
            conn.execute("UPDATE parts SET report_status = ?, report_code = ?, report_at = ? "
                         "WHERE message_id = ? AND seq = ?", (outcome, code, now, message_id, seq))
            message = conn.execute("SELECT status, segments FROM messages WHERE id = ?", (message_id,)).fetchone()
            outcomes = [row[0] for row in conn.execute(
                "SELECT report_status FROM parts WHERE message_id = ?", (message_id,))]
            status, report = message["status"], "pending"
            if "failed" in outcomes:
                status, report = "undelivered", "failed"
            elif len(outcomes) >= message["segments"] and all(item == "delivered" for item in outcomes):
                status, report = "delivered", "delivered"
            changed = status != message["status"]
            conn.execute("UPDATE messages SET status = ?, report = ?, updated_at = ?, "
                         "delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END WHERE id = ?",
                         (status, report, now, status, now, message_id))
            self._event(conn, "part.report", message_id, modem_id, now=now, seq=seq, outcome=outcome, code=code)
            if changed:
                self._event(conn, f"message.{status}", message_id, modem_id, now=now)
                if status == "delivered":
                    conn.execute("UPDATE modems SET delivered_total = delivered_total + 1 WHERE id = ?",
                                 (modem_id,))
            return {"status": status, "report": report, "changed": changed}

    def close_reports(self, sent_before: float) -> int:
        """Messages sent before `sent_before` with no report at all get `report: none` (they stay sent)."""
        with self.transaction() as conn:
            return conn.execute("UPDATE messages SET report = 'none' WHERE status = 'sent' AND report IS NULL "
                                "AND sent_at < ?", (sent_before,)).rowcount

    # --- inbound ---------------------------------------------------------------------------------------

    def insert_inbound(self, modem_id: int, sender: str, body: str, sent_at: float | None, dedupe_key: str,
                       parts: int = 1, partial: bool = False) -> int | None:
        """A complete inbound message; None when it is a duplicate of one already stored."""
        now = time.time()
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM inbox_seen WHERE dedupe_key = ?", (dedupe_key,)).fetchone():
                return None
            cursor = conn.execute("INSERT OR IGNORE INTO inbox (modem_id, sender, body, sent_at, received_at, parts, "
                                  "partial, dedupe_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                  (modem_id, sender, body, sent_at, now, parts, 1 if partial else 0, dedupe_key))
            if cursor.rowcount == 0:
                return None
            conn.execute("INSERT OR IGNORE INTO inbox_seen (dedupe_key, at) VALUES (?, ?)", (dedupe_key, now))
            self._event(conn, "inbound.received", modem_id=modem_id, now=now, inbox_id=cursor.lastrowid,
                        sender=sender, partial=partial)
            return cursor.lastrowid

    def insert_inbound_part(self, modem_id: int, sender: str, reference: int, total: int, seq: int,
                            encoding: str, payload: bytes, sent_at: float | None, dedupe_key: str) -> list[dict] | None:
        """Store one part of a concatenated message; when all `total` parts are in, return them in order (and
        remove them); None while parts are missing or when this part is a duplicate."""
        now = time.time()
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM inbox_seen WHERE dedupe_key = ?", (dedupe_key,)).fetchone():
                return None
            conn.execute("INSERT OR IGNORE INTO inbox_parts (modem_id, sender, reference, total, seq, encoding, "
                         "payload, sent_at, received_at, dedupe_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (modem_id, sender, reference, total, seq, encoding, payload, sent_at, now, dedupe_key))
            conn.execute("INSERT OR IGNORE INTO inbox_seen (dedupe_key, at) VALUES (?, ?)", (dedupe_key, now))
            rows = conn.execute("SELECT * FROM inbox_parts WHERE sender = ? AND reference = ? AND total = ? "
                                "ORDER BY seq, id", (sender, reference, total)).fetchall()
            distinct = {row["seq"]: row for row in rows}
            if len(distinct) < total:
                return None
            conn.execute("DELETE FROM inbox_parts WHERE sender = ? AND reference = ? AND total = ?",
                         (sender, reference, total))
            return [dict(distinct[seq]) for seq in sorted(distinct)]

    def stale_inbound_groups(self, older_than: float) -> list[list[dict]]:
        """Incomplete concatenated messages whose newest part is older than `older_than`: removed and returned
        (each group's parts in order) so the gateway can store what arrived, flagged partial."""
        with self.transaction() as conn:
            groups = conn.execute("SELECT sender, reference, total FROM inbox_parts GROUP BY sender, reference, total "
                                  "HAVING MAX(received_at) < ?", (older_than,)).fetchall()
            result = []
            for group in groups:
                rows = conn.execute("SELECT * FROM inbox_parts WHERE sender = ? AND reference = ? AND total = ? "
                                    "ORDER BY seq, id", tuple(group)).fetchall()
                conn.execute("DELETE FROM inbox_parts WHERE sender = ? AND reference = ? AND total = ?", tuple(group))
                distinct = {row["seq"]: dict(row) for row in rows}
                result.append([distinct[seq] for seq in sorted(distinct)])
            return result

    def inbox(self, limit: int = 100) -> list[dict]:
        return [dict(row) for row in self.query("SELECT * FROM inbox ORDER BY id DESC LIMIT ?", (limit,))]

    # --- webhook deliveries: the sender's statements (modemgw.webhooks) ----------------------------------------
    # A lane is one kind of delivery: messages' own callback URLs (webhook_id NULL), or subscriptions.

    def due_webhook_deliveries(self, now: float, callbacks: bool, after_id: int, skip_urls: set[str],
                               limit: int) -> list[dict]:
        """Pending deliveries of one lane due by `now`, with ids above `after_id`, oldest first, none to the
        URLs in `skip_urls` (their destination is busy); only the first pending one per (URL, message), so that
        each goes out in order. Raises StoreError."""
        rows = self.query(
            "SELECT d.* FROM webhook_deliveries d WHERE d.status = 'pending' AND d.next_attempt_at <= ? "
            "AND (d.webhook_id IS NULL) = ? AND d.id > ? AND d.url NOT IN (SELECT value FROM json_each(?)) "
            "AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.status = 'pending' "
            "AND e.message_id = d.message_id AND e.url = d.url AND e.id < d.id) ORDER BY d.id LIMIT ?",
            (now, int(callbacks), after_id, json.dumps(sorted(skip_urls)), limit))
        return [dict(row) for row in rows]

    def next_webhook_attempt_after(self, now: float) -> float | None:
        """When the next pending delivery that is not due yet falls due (None: none waits). Raises StoreError."""
        return self.query("SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending' "
                          "AND next_attempt_at > ?", (now,))[0][0]

    def record_webhook_attempt(self, delivery_id: int, attempts: int, now: float, status_code: int | None,
                               error: str | None, retry_at: float | None) -> None:
        """The outcome of a delivery's attempt number `attempts`: delivered when there is no `error`; else
        pending again at `retry_at`, or dead when there is none. Raises StoreError."""
        with self.transaction() as conn:
            if error is None:
                conn.execute("UPDATE webhook_deliveries SET status = 'delivered', attempts = ?, delivered_at = ?, "
                             "last_status_code = ?, last_error = NULL WHERE id = ?",
                             (attempts, now, status_code, delivery_id))
            elif retry_at is None:
                conn.execute("UPDATE webhook_deliveries SET status = 'dead', attempts = ?, last_status_code = ?, "
                             "last_error = ? WHERE id = ?", (attempts, status_code, error, delivery_id))
            else:
                conn.execute("UPDATE webhook_deliveries SET attempts = ?, next_attempt_at = ?, last_status_code = ?, "
                             "last_error = ? WHERE id = ?", (attempts, retry_at, status_code, error, delivery_id))

    # --- queries ---------------------------------------------------------------------------------------

    def message(self, message_id: int) -> dict:
        rows = self.query("SELECT * FROM messages WHERE id = ?", (message_id,))
        if not rows:
            raise NotFound(f"no message {message_id}")
        message = dict(rows[0])
        message["parts"] = [dict(row) for row in self.query("SELECT * FROM parts WHERE message_id = ? ORDER BY seq",
                                                            (message_id,))]
        return message

    def messages(self, ids: list[int]) -> list[dict]:
        rows = self.query("SELECT * FROM messages WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id",
                          (json.dumps(ids),))
        return [dict(row) for row in rows]

    def status_counts(self) -> dict[str, int]:
        return {row[0]: row[1] for row in self.query("SELECT status, COUNT(*) FROM messages GROUP BY status")}

    def purge(self, before: float) -> int:
        """Retention: delete final messages (and their parts and events) created before `before`."""
        with self.transaction() as conn:
            ids = json.dumps([row[0] for row in conn.execute(
                "SELECT id FROM messages WHERE created_at < ? AND status IN (SELECT value FROM json_each(?))",
                (before, json.dumps(FINAL_STATUSES)))])
            conn.execute("DELETE FROM events WHERE message_id IN (SELECT value FROM json_each(?))", (ids,))
            deleted = conn.execute("DELETE FROM messages WHERE id IN (SELECT value FROM json_each(?))", (ids,)).rowcount
            conn.execute("DELETE FROM inbox_seen WHERE at < ?", (before,))
            return deleted

    # --- web UI users and sessions -----------------------------------------------------------------------------
    # Passwords are hashed, and tokens made, by modemgw.auth; a session is stored under the SHA-256 of its token.

    def users(self) -> list[dict]:
        """Every web UI user, without password hashes."""
        return [dict(row) for row in self.query("SELECT id, username, role, disabled, created_at, last_login_at "
                                                "FROM users ORDER BY id")]

    def user(self, user_id: int) -> dict:
        """One user, with its password hash. Raises NotFound."""
        rows = self.query("SELECT * FROM users WHERE id = ?", (user_id,))
        if not rows:
            raise NotFound(f"no user {user_id}")
        return dict(rows[0])

    def user_by_name(self, username: str) -> dict | None:
        """The user of that exact name, with its password hash, or None."""
        rows = self.query("SELECT * FROM users WHERE username = ?", (username,))
        return dict(rows[0]) if rows else None

    def add_user(self, username: str, password_hash: str, role: str, now: float) -> int:
        """A new user's id. Raises StoreError (kind "constraint" when the name is taken)."""
        with self.transaction() as conn:
            return conn.execute("INSERT INTO users (username, password_hash, role, created_at) VALUES (?, ?, ?, ?)",
                                (username, password_hash, role, now)).lastrowid

    def set_password_hash(self, user_id: int, password_hash: str, keep_session: str | None = None) -> None:
        """Change a user's password and end its sessions, all but `keep_session` (a token hash). Raises
        NotFound."""
        with self.transaction() as conn:
            if conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id)).rowcount == 0:
                raise NotFound(f"no user {user_id}")
            conn.execute("DELETE FROM sessions WHERE user_id = ? AND token_hash IS NOT ?", (user_id, keep_session))

    def set_user_disabled(self, user_id: int, disabled: bool) -> bool:
        """Disable a user (ending its sessions) or enable it again. False, and nothing changed, when that would
        leave no enabled admin. Raises NotFound."""
        with self.transaction() as conn:
            if disabled and self._last_admin(conn, user_id):
                return False
            if conn.execute("UPDATE users SET disabled = ? WHERE id = ?", (int(disabled), user_id)).rowcount == 0:
                raise NotFound(f"no user {user_id}")
            if disabled:
                conn.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
            return True

    def delete_user(self, user_id: int) -> bool:
        """Delete a user and its sessions. False, and nothing deleted, when it is the last enabled admin. Raises
        NotFound."""
        with self.transaction() as conn:
            if self._last_admin(conn, user_id):
                return False
            conn.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
            if conn.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount == 0:
                raise NotFound(f"no user {user_id}")
            return True

    @staticmethod
    def _last_admin(conn: sqlite3.Connection, user_id: int) -> bool:
        """Whether `user_id` is the only enabled admin."""
        row = conn.execute("SELECT role = 'admin' AND disabled = 0 FROM users WHERE id = ?", (user_id,)).fetchone()
        return bool(row and row[0]) and conn.execute(
            "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0").fetchone()[0] == 1

    def session(self, token_hash: str) -> dict | None:
        """A stored session with its user's name, role and state, or None."""
        rows = self.query("SELECT s.token_hash, s.user_id, s.created_at, s.last_seen_at, s.expires_at, u.username, "
                          "u.role, u.disabled FROM sessions s JOIN users u ON u.id = s.user_id "
                          "WHERE s.token_hash = ?", (token_hash,))
        return dict(rows[0]) if rows else None

    def save_session(self, token_hash: str, user_id: int, password_hash: str, created_at: float,
                     last_seen_at: float, expires_at: float) -> bool:
        """Store a session, if the database is free now, and only while its user is enabled and still has
        `password_hash` (a session made while the database refused writes must not outlive a change made since).
        False when nothing could be written."""
        return self._write_if_free(
            "INSERT OR IGNORE INTO sessions (token_hash, user_id, created_at, last_seen_at, expires_at) "
            "SELECT ?, id, ?, ?, ? FROM users WHERE id = ? AND disabled = 0 AND password_hash = ?",
            (token_hash, created_at, last_seen_at, expires_at, user_id, password_hash))

    def touch_session(self, token_hash: str, at: float) -> bool:
        """Record a session's last use, if the database is free now (False when not recorded)."""
        return self._write_if_free("UPDATE sessions SET last_seen_at = ? WHERE token_hash = ?", (at, token_hash))

    def end_session(self, token_hash: str) -> bool:
        """Delete a session, if the database is free now (False when it could not)."""
        return self._write_if_free("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))

    def end_stale_sessions(self, now: float, seen_before: float) -> bool:
        """Delete sessions past their end, or unused since `seen_before`, if the database is free now."""
        return self._write_if_free("DELETE FROM sessions WHERE expires_at <= ? OR last_seen_at < ?",
                                   (now, seen_before))
