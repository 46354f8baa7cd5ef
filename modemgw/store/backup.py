"""Backup and restore of the database with SQLite's online backup API.

A backup is a consistent copy taken while the gateway runs (the backup API copies pages under a read
transaction, and restarts if a writer changes them). It is written beside its destination under a temporary
name, checked (`PRAGMA quick_check`), and only then renamed into place, so a half-written backup never looks
like a good one. Restore checks the file the same way before it replaces anything, and keeps the database it
replaces.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from modemgw.store.schema import MIGRATIONS


class BackupError(Exception):
    """A backup or restore that could not be done; the message says why and what to do."""


@dataclass
class Summary:
    path: Path
    size: int
    schema: int
    messages: int
    modems: int

    def __str__(self) -> str:
        return (f"{self.path}: {self.size / 1e6:.1f} MB, schema {self.schema}, {self.messages} message(s), "
                f"{self.modems} modem(s)")


def check(path: Path) -> Summary:
    """Open `path` read-only and make sure it is a sound modemgw database this version can use."""
    if not path.is_file():
        raise BackupError(f"{path} does not exist or is not a file")
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as error:
        raise BackupError(f"{path}: cannot open: {error}") from None
    try:
        result = [row[0] for row in connection.execute("PRAGMA quick_check").fetchall()]
        if result != ["ok"]:
            raise BackupError(f"{path} is damaged: {'; '.join(result[:3])}")
        schema = connection.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"messages", "modems"} <= tables:
            raise BackupError(f"{path} is an SQLite file but not a modemgw database")
        if schema > len(MIGRATIONS):
            raise BackupError(f"{path} has schema {schema}, newer than this modemgw ({len(MIGRATIONS)}): "
                              "upgrade modemgw first")
        messages = connection.execute("SELECT count(*) FROM messages").fetchone()[0]
        modems = connection.execute("SELECT count(*) FROM modems").fetchone()[0]
    except sqlite3.DatabaseError as error:
        raise BackupError(f"{path} is not a usable SQLite database: {error}") from None
    finally:
        connection.close()
    return Summary(path, path.stat().st_size, schema, messages, modems)


def _copy(source: Path, target: Path, source_mode_ro: bool = True) -> None:
    """Online backup of `source` into `target` (created), in one step: a stepwise copy starts over whenever
    another connection writes between steps, and on a busy gateway never finishes; in WAL mode one step holds
    only a read transaction, so the gateway's writers go on. The copy is a plain (rollback-journal) file: it
    can be checked and restored from a read-only place without -wal/-shm files beside it."""
    uri = f"file:{source}?mode=ro" if source_mode_ro else f"file:{source}"
    with sqlite3.connect(uri, uri=True, timeout=30) as origin, sqlite3.connect(target) as copy:
        origin.backup(copy)
        copy.execute("PRAGMA journal_mode=DELETE")
    origin.close()
    copy.close()
    with open(target, "rb") as stream:
        os.fsync(stream.fileno())


def _exclusive(path: Path) -> None:
    """Create `path` empty, for this process alone (0600, never through a symlink someone left there)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    except FileExistsError:
        raise BackupError(f"{path} exists: another backup or restore is running, or one was interrupted; "
                          "remove it and try again") from None


def _new_name(path: Path) -> Path:
    """`path`, or `path-2`, `path-3`, ... : created empty and exclusively, so two restores in one second never
    write over the database the first one kept."""
    for number in range(1, 1000):
        candidate = path if number == 1 else path.with_name(f"{path.name}-{number}")
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            return candidate
        except FileExistsError:
            continue
    raise BackupError(f"too many files named {path.name}-N; clear some")


def backup(database: Path, destination: Path) -> Summary:
    """Copy the live `database` to `destination` (a file, or a directory for a dated file in it)."""
    if not database.is_file():
        raise BackupError(f"no database at {database}: is --data (or the config's data_dir) right?")
    if destination.is_dir():
        destination = destination / f"modemgw-{time.strftime('%Y%m%d-%H%M%S')}.db"
    if destination.exists():
        raise BackupError(f"{destination} exists; give a new name (a backup never overwrites)")
    temporary = destination.with_name(f".{destination.name}.partial")
    previous = os.umask(0o077)  # API key hashes, messages and numbers: for the administrator only
    try:
        _exclusive(temporary)
    except OSError as error:
        os.umask(previous)
        raise BackupError(f"backup to {destination} failed: {error}") from None
    except BackupError:
        os.umask(previous)
        raise
    try:
        _copy(database, temporary)
        summary = check(temporary)
        os.replace(temporary, destination)
    except (sqlite3.Error, OSError) as error:
        raise BackupError(f"backup to {destination} failed: {error}") from None
    finally:
        os.umask(previous)
        temporary.unlink(missing_ok=True)
    summary.path = destination
    return summary


def restore(source: Path, database: Path) -> tuple[Summary, Path | None]:
    """Replace `database` with the backup `source` (the gateway must be stopped). Returns the restored summary
    and where the replaced database was kept (None when there was none)."""
    summary = check(source)
    database.parent.mkdir(parents=True, exist_ok=True)
    temporary = database.with_name(f".{database.name}.restoring")
    kept = None
    try:
        _exclusive(temporary)
    except OSError as error:
        raise BackupError(f"restore into {database} failed (nothing was replaced): {error}") from None
    try:
        _copy(source, temporary)
        check(temporary)
        if database.exists():
            kept = _new_name(database.with_name(f"{database.name}.before-restore-{time.strftime('%Y%m%d-%H%M%S')}"))
            _copy(database, kept, source_mode_ro=False)  # folds the WAL in: the kept file stands alone
        owner = database.parent.stat()
        if os.geteuid() == 0:  # root restoring for the service: the file must stay the service user's
            os.chown(temporary, owner.st_uid, owner.st_gid)
        os.chmod(temporary, 0o640)
        os.replace(temporary, database)
        for suffix in ("-wal", "-shm"):  # the old database's journal must never be applied to the restored one
            Path(f"{database}{suffix}").unlink(missing_ok=True)
    except (sqlite3.Error, OSError) as error:
        raise BackupError(f"restore into {database} failed (nothing was replaced): {error}") from None
    finally:
        temporary.unlink(missing_ok=True)
    summary.path = database
    return summary, kept
