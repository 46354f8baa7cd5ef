"""The store's foundation: a connection per thread, short write transactions, reads, the event log, and the
database's health. The subject modules (messages, dispatch, inbox, modems, admin, webhooks) build on `StoreBase`.

A connection per thread (WAL, synchronous=NORMAL, a busy timeout), its own or, for a thread that uses the database
now and then, one lent from a small pool for a block (`lent`: an HTTP request, a scheduled job), or, for the modem
workers, one they share, one read or transaction at a time (`share_connection`); every state change is one short
transaction, synced to the disk (synchronous=FULL for that commit) when something outside is told about it or
acts on it next: `transaction(durable=True)`. The schema is versioned SQL (`schema.py`), applied when a store
opens.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from modemgw.store.errors import UNHEALTHY_KINDS, StoreError
from modemgw.store.schema import migrate, schema_version

log = logging.getLogger("modemgw.store")

# Free space under this on the database's filesystem makes Store.health() fail: the next batch, or the write-ahead
# log growing before its checkpoint (up to ~4 MiB), would fail with "disk full".
MIN_FREE_BYTES = 4 * 1024 * 1024
# Store.health() waits this long for the write lock: a busy timeout short enough for a health check.
HEALTH_BUSY_TIMEOUT_MS = 500
OWN_WRITE_PATIENCE = 3.0  # ... and this long for a write of this process (a large submit) to finish


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


# A new database's page size. Every commit appends each page it changed, whole, to the write-ahead log: with
# SQLite's default of 4096 bytes, one message's life (queued, claimed, sent, its report, its webhook) wrote ~45
# pages, 180 KiB, to an SD card for ~900 bytes kept. Rows here are small (a message is ~170 bytes stored), so small
# pages hold them as well and each changed page costs less. On ext4 with 4 KiB blocks, as on a Pi's SD card, a
# message's life wrote 62 KiB at the block device with 1 KiB pages and 48 KiB with 512-byte ones (-23%; 152 KiB
# with 4 KiB pages); the price: ~6% more file for the same rows, and index keys longer than ~100 bytes (a long
# webhook URL) spill into an overflow page (benchmarks/cost.py, 2026-12-02). Reads of a million messages stay within
# their targets, a scan at most ~1.4x slower (benchmarks/million.py). Set once, when the file is created; existing
# files keep theirs.
PAGE_SIZE = 512


def _new_database(conn: sqlite3.Connection) -> None:
    """Settings that only an empty database file can take: its page size, and incremental vacuum (pruning gives
    free pages back to the file system a few at a time, instead of a VACUUM that rewrites the whole file)."""
    conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")


# The condition of the partial `messages_status` index (migration 12): most messages end sent or delivered, and
# keeping their entries cost two pages per message. SQLite uses a partial index only when the query states its
# condition, so a query on the other statuses adds `AND {UNSETTLED}` (sent and delivered are found otherwise:
# `stats_daily` counts them, lists read them in id order).
UNSETTLED = "status NOT IN ('sent', 'delivered')"
STATUSES = ("queued", "scheduled", "sending", "sent", "delivered", "undelivered", "failed", "expired", "canceled")

# Connections kept for the threads that use the database now and then and borrow one (`StoreBase.lent`): HTTP
# requests and scheduled jobs. Each connection costs ~1 MB (its schema, compiled statements and triggers, page
# cache): the six HTTP threads and three job threads kept nine of them, mostly idle, on a 60 MB budget.
POOL_IDLE = 2

# A message's routine steps, in the order they happen: told from its rows, not kept in the event log.
ROUTINE_EVENTS = ("message.created", "message.sending", "part.sent", "message.sent", "part.report",
                  "message.delivered", "message.undelivered")
FINAL_REPORTS = ("delivered", "failed")  # a part's report that is kept in its row (a pending one is logged)


_Store = TypeVar("_Store", bound="StoreBase")
_Args = ParamSpec("_Args")
_Result = TypeVar("_Result")


def sharing(method: Callable[Concatenate[_Store, _Args], _Result]) -> Callable[Concatenate[_Store, _Args], _Result]:
    """A store method that holds the modem workers' shared connection for its length when its thread shares one
    (`StoreBase.share_connection`): for a method that takes the write lock itself or uses `connection()` directly,
    so that the shared connection is always taken before the write lock."""
    @functools.wraps(method)
    def holding(self: _Store, *args: _Args.args, **kwargs: _Args.kwargs) -> _Result:
        with self._sharing():
            return method(self, *args, **kwargs)
    return holding


def inserted_id(cursor: sqlite3.Cursor) -> int:
    """The rowid of the row an INSERT made."""
    if cursor.lastrowid is None:  # only before any INSERT on this cursor
        raise StoreError("the insert made no row")
    return cursor.lastrowid


class StoreBase:
    """The database at `path`, opened once per thread and migrated to the latest schema. Raises StoreError."""

    min_free_bytes = MIN_FREE_BYTES  # health() fails under this much free space (settable per store)

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._write_failure: WriteFailure | None = None
        self._idle: list[sqlite3.Connection] = []  # the pool of `lent`: warm connections, the last returned on top
        self._pool_lock = threading.Lock()
        self._pool_closed = False  # after close(): a connection handed back is closed, not kept
        self._shared: sqlite3.Connection | None = None  # the modem workers' one connection (`share_connection`)
        self._share_lock = threading.RLock()
        _create_private(self.path)
        try:
            migrate(self.connection(), self.path)
        except sqlite3.Error as error:  # e.g. no space left for the schema of a new database
            self._rollback(self.connection())  # executescript leaves a failed script's transaction open
            raise StoreError.from_sqlite(error, f"database {self.path}: cannot update its schema: {error}") from None

    # --- connections and transactions --------------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use (for a thread that shares, the shared one: only inside
        `_sharing`, which the store's reads and transactions enter). Raises StoreError."""
        if getattr(self._local, "shares", False):
            if not getattr(self._local, "share_depth", 0):
                raise RuntimeError("a thread that shares the workers' connection used it outside _sharing()")
            if self._shared is None:
                self._shared = self._open()
            return self._shared
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self._local.conn = conn = self._open()
        return conn

    def _open(self) -> sqlite3.Connection:
        """A new connection, set up. Raises StoreError."""
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
        except sqlite3.Error as error:
            raise StoreError.from_sqlite(error, f"cannot open database {self.path}: {error}") from None
        conn.row_factory = sqlite3.Row
        try:
            if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
                _new_database(conn)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("PRAGMA foreign_keys=ON")
            # Each thread's connection has its own page cache: SQLite's default (2 MiB) times ~25 threads
            # (workers, HTTP, jobs, webhooks) was up to 50 MB of RSS on a 60 MB budget. The OS caches the file
            # anyway; 512 KiB keeps a query's working set (benchmarks/footprint.py, modemgw/memory.py).
            conn.execute("PRAGMA cache_size = -512")
        except sqlite3.Error as error:
            conn.close()
            raise StoreError.from_sqlite(error, f"cannot open database {self.path}: {error}") from None
        return conn

    def share_connection(self) -> None:
        """This thread (a modem's worker) uses, from now on, the one connection the store keeps for such threads,
        one thread at a time (`_sharing`: each read and each transaction holds it for its length, never across a
        modem's reply). A connection keeps every statement it compiled, with the triggers they fire: ~380 KiB for
        a worker's claim, records and reports (sqlite3_db_status), ~500 KiB with its schema; with 8 modems, one
        instead of eight was ~3 MB less while draining (benchmarks/footprint.py). Writes queue on the write lock
        anyway, and a worker's reads are a few rows."""
        if getattr(self._local, "conn", None) is not None:
            return  # it has its own already (a test's thread that also plays a worker)
        self._local.shares = True

    @contextmanager
    def _sharing(self) -> Iterator[None]:
        """Within the block, this thread holds the shared connection (when it shares one; else nothing)."""
        if not getattr(self._local, "shares", False):
            yield
            return
        with self._share_lock:
            self._local.share_depth = getattr(self._local, "share_depth", 0) + 1
            try:
                yield
            finally:
                self._local.share_depth -= 1

    @contextmanager
    def lent(self) -> Iterator[None]:
        """Within the block, this thread's connection is one of the store's pool (made when none is idle), handed back
        at the end: for threads that use the database now and then (an HTTP request, a scheduled job), so that a few
        warm connections serve them all instead of one each (~1 MB apiece). A thread that has a connection of its own
        keeps using it (the webhook sender, a test's thread), and a modem's worker its shared one. Not for a block that
        leaves a transaction open: a connection handed back inside one is closed (rolled back), never lent on."""
        if getattr(self._local, "conn", None) is not None or getattr(self._local, "shares", False):
            yield
            return
        with self._pool_lock:
            self._local.conn = self._idle.pop() if self._idle else None  # None: `connection()` opens one
        try:
            yield
        finally:
            conn, self._local.conn = getattr(self._local, "conn", None), None
            if conn is not None:
                if not conn.in_transaction:
                    with self._pool_lock:
                        if len(self._idle) < POOL_IDLE and not self._pool_closed:
                            self._idle.append(conn)
                            conn = None
                if conn is not None:
                    conn.close()

    @contextmanager
    def transaction(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; rolled back on any error, and SQLite errors become StoreError (a
        `Duplicate` or `Conflict` when a constraint refused the write).

        `durable`: the commit is on the disk when this returns (synchronous=FULL for this commit: the
        write-ahead log is synced). For a write that something outside is told about or acts on next: a
        submission answered 202/250/submit_sm_resp, an inbound SMS or report before the modem may forget it,
        a claim before its PDU goes to the modem (else a power cut could lose the claim and the message would
        go out again unflagged). Other commits (synchronous=NORMAL) survive a crash of the process but may be
        lost with the last second or so of work on a power cut: the WAL keeps them in order, so what survives
        is always a consistent past state.

        Writers of this process queue on a lock first: SQLite's own busy handler sleeps in steps of
        milliseconds when two writers collide, which would put sleeps in the send path. Other processes
        (the CLI) still meet the busy timeout.

        A write that fails because the database is unwell is remembered (`write_failure`, `health()`) until a
        commit works again. Raises StoreError; an exception of the block is raised as it is, after rollback.

        Nested in a transaction of the same thread, it is a savepoint of that one: its writes commit with the
        enclosing transaction's (a failure rolls back the nested block's writes only). So the gateway writes an
        event's outbox rows (webhook deliveries, SMPP receipts) in the commit that records the event itself: a
        crash cannot come between them. A durable nested block needs a durable enclosing one (SQLite cannot change
        the sync of a transaction under way): RuntimeError otherwise, a bug of the caller."""
        with self._sharing(), self._transaction_here(durable) as conn:
            yield conn

    @contextmanager
    def _transaction_here(self, durable: bool) -> Iterator[sqlite3.Connection]:
        if getattr(self._local, "depth", 0):
            if durable and not self._local.durable:
                raise RuntimeError("a durable write nested in a transaction that is not durable")
            with self._savepoint() as conn:
                yield conn
            return
        if not durable:
            with self._transaction() as conn:
                yield conn
        else:
            with self._write_lock:
                conn = self.connection()
                try:
                    conn.execute("PRAGMA synchronous=FULL")
                except sqlite3.Error as error:
                    raise self._write_failed(StoreError.from_sqlite(error, f"database {self.path}: {error}")) from None
                try:
                    with self._transaction(durable=True) as same:
                        yield same
                finally:
                    self._normal_sync(conn)
        # committed: the wake-ups run with the write lock released (and the sync back to NORMAL)
        callbacks, self._local.committed = getattr(self._local, "committed", []), []
        for callback in callbacks:
            self._run_after_commit(callback)

    @contextmanager
    def _transaction(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        conn = self.connection()
        with self._write_lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:
                raise self._write_failed(StoreError.from_sqlite(error, f"database {self.path}: {error}")) from None
            self._local.depth, self._local.durable, self._local.after, self._local.broken = 1, durable, [], None
            try:
                try:
                    yield conn
                    if self._local.broken is not None:  # SQLite ended it inside a nested block: no COMMIT
                        self._rollback(conn)
                        raise self._local.broken
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
                self._local.committed = self._local.after
            finally:
                self._local.depth, self._local.after, self._local.broken = 0, [], None

    @contextmanager
    def _savepoint(self) -> Iterator[sqlite3.Connection]:
        """A transaction nested in this thread's open one (`transaction`)."""
        conn = self.connection()
        if not conn.in_transaction:  # SQLite rolled the enclosing one back (disk full, I/O error): stop its writer
            raise self._local.broken or self._write_failed(StoreError(
                f"database {self.path}: the enclosing transaction was rolled back", "io"))
        depth = self._local.depth
        name, registered = f"nested_{depth}", len(self._local.after)
        try:
            conn.execute(f"SAVEPOINT {name}")
        except sqlite3.Error as error:
            raise self._write_failed(StoreError.from_sqlite(error, f"database {self.path}: {error}")) from None
        self._local.depth = depth + 1
        try:
            yield conn
            conn.execute(f"RELEASE {name}")
        except BaseException as error:
            del self._local.after[registered:]  # what the rolled-back block meant to do after the commit
            failure = (StoreError.from_sqlite(error, f"database {self.path}: {error}")
                       if isinstance(error, sqlite3.Error) else error if isinstance(error, StoreError) else None)
            if conn.in_transaction:
                try:
                    conn.execute(f"ROLLBACK TO {name}")
                    conn.execute(f"RELEASE {name}")
                except sqlite3.Error as failed:  # the enclosing transaction must not commit the block's writes
                    log.warning("database %s: rollback to a savepoint failed: %s", self.path, failed)
                    self._local.broken = self._local.broken or StoreError.from_sqlite(
                        failed, f"database {self.path}: rollback to a savepoint failed: {failed}")
            elif self._local.broken is None:  # SQLite rolled the whole transaction back (SQLITE_FULL, IOERR, ...)
                self._local.broken = failure or StoreError(
                    f"database {self.path}: the transaction was rolled back: {error}", "io")
            if failure is not None:
                self._write_failed(failure)
            if isinstance(error, sqlite3.Error) and failure is not None:
                raise failure from None
            raise
        finally:
            self._local.depth = depth

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` once this thread's open transaction has committed (not at all if it rolls back), or now
        when none is open: a wake-up for a thread that will read what the transaction writes (it must not look
        before the commit and find nothing). A callback's exception is logged."""
        if getattr(self._local, "depth", 0):
            self._local.after.append(callback)
        else:
            self._run_after_commit(callback)

    @staticmethod
    def _run_after_commit(callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:  # the commit stands; a wake-up that failed is the listener's fault alone
            log.exception("after a commit: %r failed", callback)

    def _normal_sync(self, conn: sqlite3.Connection) -> None:
        """Back to synchronous=NORMAL after a durable commit (a connection dropped by a failed rollback is
        closed already: it needs nothing)."""
        if conn is not self._held():
            return
        try:
            if not conn.in_transaction:
                conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as error:
            log.warning("database %s: cannot set synchronous=NORMAL again: %s", self.path, error)

    def _held(self) -> sqlite3.Connection | None:
        """The connection this thread works with now (its own, the shared one, or None), without opening one."""
        return self._shared if getattr(self._local, "shares", False) else getattr(self._local, "conn", None)

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
            if conn is self._shared:
                self._shared = None
            elif conn is getattr(self._local, "conn", None):
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
            with self._sharing():
                return self.connection().execute(sql, params).fetchall()
        except sqlite3.Error as error:
            raise StoreError.from_sqlite(error, f"database {self.path}: {error}") from None

    def query_dicts(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        """Rows of one read as dicts. `dict(row)` of a `sqlite3.Row` finds each column by a case-insensitive scan of
        the names: for 500 messages of ~35 columns that was 10 ms of a 20 ms API page; zip is 6x faster. Raises
        StoreError."""
        try:
            with self._sharing():
                cursor = self.connection().execute(sql, params)
                names = [column[0] for column in cursor.description or ()]
                rows = cursor.fetchall()
            return [dict(zip(names, row, strict=True)) for row in rows]
        except sqlite3.Error as error:
            raise StoreError.from_sqlite(error, f"database {self.path}: {error}") from None

    @sharing
    def _write_if_free(self, sql: str, params: Any = (), wait_ms: int = 100) -> bool:
        """One write statement, unless the database stays busy for `wait_ms` or fails: for bookkeeping that must
        never hold up or fail a request (when a key or a user was last seen). False when nothing was written."""
        if getattr(self._local, "depth", 0):
            return False  # inside this thread's transaction: its own BEGIN would end the enclosing one
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

    def close(self) -> None:
        """Close this thread's connection and the pool's idle ones (others close with their threads); from now on
        a lent connection handed back is closed too."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        with self._share_lock:
            shared, self._shared = self._shared, None
        if shared is not None:
            shared.close()
        with self._pool_lock:
            idle, self._idle, self._pool_closed = self._idle, [], True
        for conn in idle:
            conn.close()

    @property
    def schema_version(self) -> int:
        """The number of migrations applied (`len(MIGRATIONS)` once the store is open). Raises StoreError."""
        try:
            with self._sharing():
                return schema_version(self.connection())
        except sqlite3.Error as error:
            raise StoreError.from_sqlite(error, f"database {self.path}: {error}") from None

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

    @sharing
    def _probe(self) -> tuple[str, str] | None:
        """(kind, what is wrong), or None when the database reads and would take a write now."""
        if getattr(self._local, "depth", 0):
            raise RuntimeError("health() inside a transaction of the same thread")
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

    # --- time ranges of messages ------------------------------------------------------------------------

    def first_id_created(self, moment: float, table: str = "messages") -> int:
        """The smallest id of `table` (messages, or another whose rows have `created_at`: a name of this module's
        callers, never a user's) created at or after `moment` (one above the largest id when none was): a binary
        search over the primary key, about 20 lookups for a million rows, no index on created_at needed. It takes
        ids to grow with created_at, as the gateway writes them; a clock set back lets a few rows of the moment it
        went back fall outside a range that ought to hold them."""
        if table not in ("messages", "smpp_outbox"):
            raise ValueError(f"no time-ordered ids in table {table!r}")
        # two queries: SQLite reads MIN or MAX alone from the primary key's end, both at once by a scan
        first, last = (self.query(f"SELECT {end}(id) FROM {table}")[0][0] for end in ("MIN", "MAX"))
        if first is None or last is None:
            return 1
        low, up = first, last + 1  # ids below `low` were created before `moment`; `answer` at or after
        answer = up
        while low < up:
            middle = (low + up) // 2
            rows = self.query(f"SELECT id, created_at FROM {table} WHERE id >= ? AND id < ? ORDER BY id LIMIT 1",
                              (middle, up))
            if not rows:
                up = middle
            elif rows[0][1] >= moment:
                answer = up = rows[0][0]
            else:
                low = rows[0][0] + 1
        return answer

    # --- events ----------------------------------------------------------------------------------------
    # The event log keeps what only it can tell: retries, failures, a possible duplicate, a report that is not
    # final, cancels, edits, modems' changes. A message's routine steps (ROUTINE_EVENTS: accepted, handed to a
    # SIM, each part sent, sent, each final report, delivered or not) are not written there: the message's and
    # its parts' rows hold their times already, and writing them again cost 13 of the 45 pages a message wrote to
    # the disk (three tables' b-trees, three times). `_timeline` tells them from the rows when a timeline is read.

    def _timeline(self, message_id: int, kept: list[dict]) -> list[dict]:
        """A message's timeline: the events kept for it, with its routine steps told from its rows (a message
        stored before they were left out of the log has them logged already: then the log alone)."""
        if any(event["kind"] == "message.created" for event in kept):
            return kept
        rows = self.query("SELECT * FROM messages WHERE id = ?", (message_id,))
        if not rows:
            return kept
        message = rows[0]
        parts = self.query("SELECT * FROM parts WHERE message_id = ? ORDER BY seq", (message_id,))

        def step(at: float | None, kind: str, modem_id: int | None = None, **detail: Any) -> dict:
            return {"id": None, "at": at, "message_id": message_id, "modem_id": modem_id, "kind": kind,
                    "detail": detail}

        told = [step(message["created_at"], "message.created")]
        if message["claimed_at"] is not None and message["status"] in ("sending", "sent", "delivered", "undelivered"):
            told.append(step(message["claimed_at"], "message.sending", message["modem_id"]))
        told += [step(part["sent_at"], "part.sent", part["modem_id"], seq=part["seq"], reference=part["tp_mr"])
                 for part in parts if part["sent_at"] is not None and part["tp_mr"] is not None]
        recovered = any(event["kind"] == "message.sent" for event in kept)
        if message["sent_at"] is not None and not recovered and \
                message["status"] in ("sent", "delivered", "undelivered"):
            told.append(step(message["sent_at"], "message.sent", message["modem_id"]))
        final = [part for part in parts if part["report_at"] is not None and part["report_status"] in FINAL_REPORTS]
        told += [step(part["report_at"], "part.report", part["modem_id"], seq=part["seq"],
                      outcome=part["report_status"], code=part["report_code"]) for part in final]
        if message["status"] == "delivered":
            told.append(step(message["delivered_at"] or message["updated_at"], "message.delivered",
                             message["modem_id"]))
        elif message["status"] == "undelivered":
            failed = [part["report_at"] for part in final if part["report_status"] == "failed"]
            told.append(step(max(failed) if failed else message["updated_at"], "message.undelivered",
                             message["modem_id"]))
        order = {kind: rank for rank, kind in enumerate(ROUTINE_EVENTS)}
        merged = sorted(told + kept, key=lambda event: (event["at"] or 0, order.get(event["kind"], 3)))
        return merged

    @staticmethod
    def _event(conn: sqlite3.Connection, kind: str, message_id: int | None = None, modem_id: int | None = None,
               now: float | None = None, **detail: Any) -> None:
        conn.execute("INSERT INTO events (at, message_id, modem_id, kind, detail) VALUES (?, ?, ?, ?, ?)",
                     (now or time.time(), message_id, modem_id, kind,
                      json.dumps(detail, ensure_ascii=False) if detail else None))

    def log_event(self, kind: str, message_id: int | None = None, modem_id: int | None = None, **detail) -> None:
        """Append one event to the log. Raises StoreError."""
        with self.transaction() as conn:
            self._event(conn, kind, message_id, modem_id, **detail)

    def events(self, message_id: int | None = None, modem_id: int | None = None, limit: int = 200) -> list[dict]:
        """A message's events (oldest first: its timeline, the routine steps included), or a modem's or all
        (newest first: only those kept in the event log), details decoded."""
        if message_id is not None:
            rows = self.query("SELECT * FROM events WHERE message_id = ? ORDER BY id LIMIT ?", (message_id, limit))
            kept = [dict(row) | {"detail": json.loads(row["detail"]) if row["detail"] else {}} for row in rows]
            return self._timeline(message_id, kept)[:limit]
        elif modem_id is not None:
            rows = self.query("SELECT * FROM events WHERE modem_id = ? ORDER BY id DESC LIMIT ?", (modem_id, limit))
        else:
            rows = self.query("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,))
        return [dict(row) | {"detail": json.loads(row["detail"]) if row["detail"] else {}} for row in rows]
