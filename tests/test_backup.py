"""`modemgw backup` while the gateway runs, and `modemgw restore` with it stopped, as an administrator runs them."""

import hashlib
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from modemgw.daemon import Daemon
from tests.support import daemon_config

MODEMGW = str(Path(sys.executable).parent / "modemgw")


def run(*args):
    return subprocess.run([MODEMGW, *map(str, args)], capture_output=True, text=True, timeout=120)


def count(path):
    with sqlite3.connect(path) as connection:
        value = connection.execute("SELECT count(*) FROM messages").fetchone()[0]
    connection.close()
    return value


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def daemon(start_daemon):
    return start_daemon(modems=1, send_latency=0.0)


def test_a_backup_taken_while_messages_pour_in_is_consistent(daemon, tmp_path):
    daemon.gateway.submit("before", [f"+4477009{n:05d}" for n in range(500)], request_report=False)
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            daemon.gateway.submit("during", [f"+4477008{n:05d}"], request_report=False)
            n += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        result = run("backup", "--data", daemon.data_dir, tmp_path / "copy.db")
    finally:
        stop.set()
        writer.join()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"backed up: {tmp_path / 'copy.db'}: ")
    copied = count(tmp_path / "copy.db")
    assert 500 <= copied <= count(daemon.data_dir / "modemgw.db")
    with sqlite3.connect(tmp_path / "copy.db") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    connection.close()
    assert stat.S_IMODE((tmp_path / "copy.db").stat().st_mode) == 0o600
    assert not list(tmp_path.glob(".*partial"))


def test_backup_into_a_directory_gets_a_dated_name_and_never_overwrites(daemon, tmp_path):
    (tmp_path / "backups").mkdir()
    first = run("backup", "--data", daemon.data_dir, tmp_path / "backups")
    assert first.returncode == 0, first.stderr
    [made] = list((tmp_path / "backups").glob("modemgw-*.db"))
    again = run("backup", "--data", daemon.data_dir, made)
    assert again.returncode == 1 and "exists; give a new name" in again.stderr


def test_restore_refuses_while_the_gateway_runs_then_restores_and_keeps_the_old(daemon, tmp_path):
    daemon.gateway.submit("kept", ["+447700900001", "+447700900002"], request_report=False)
    assert run("backup", "--data", daemon.data_dir, tmp_path / "copy.db").returncode == 0
    daemon.gateway.submit("after the backup", ["+447700900003"], request_report=False)
    refused = run("restore", "--data", daemon.data_dir, tmp_path / "copy.db")
    assert refused.returncode == 1 and "the gateway is running on this database: stop it first" in refused.stderr
    daemon.stop()
    restored = run("restore", "--data", daemon.data_dir, tmp_path / "copy.db")
    assert restored.returncode == 0, restored.stderr
    assert count(daemon.data_dir / "modemgw.db") == 2
    [kept] = list(daemon.data_dir.glob("modemgw.db.before-restore-*"))
    assert count(kept) == 3 and f"kept as {kept}" in restored.stdout
    again = Daemon(daemon_config(daemon.data_dir), http=False).start()
    try:
        assert [row["body"] for row in again.store.query("SELECT body FROM messages")] == ["kept", "kept"]
    finally:
        again.stop()


@pytest.mark.parametrize("damage, message", [
    (lambda path: path.write_bytes(path.read_bytes()[:4096] + b"\0" * 100), "not a usable SQLite database"),
    (lambda path: path.write_text("not a database"), "not a usable SQLite database"),
    (lambda path: sqlite3.connect(path).execute("PRAGMA user_version = 99").connection.commit(),
     "has schema 99, newer than this modemgw"),
])
def test_restore_refuses_a_bad_backup_and_replaces_nothing(start_daemon, tmp_path, damage, message):
    daemon = start_daemon(modems=0)
    data = daemon.data_dir
    daemon.gateway.submit("precious", ["+447700900001"], request_report=False)
    daemon.stop()
    assert run("backup", "--data", data, tmp_path / "copy.db").returncode == 0
    damage(tmp_path / "copy.db")
    before = digest(data / "modemgw.db")
    result = run("restore", "--data", data, tmp_path / "copy.db")
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert digest(data / "modemgw.db") == before
    assert not list(data.glob("modemgw.db.before-restore-*"))


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can act as another user; CI runs as root")
def test_root_writing_the_service_database_acts_as_its_owner(tmp_path):
    base = Path(tempfile.mkdtemp(prefix="mg", dir="/tmp"))
    try:
        base.chmod(0o755)
        data = base / "data"
        data.mkdir()
        os.chown(data, 65534, 65534)  # the service user's directory (nobody here)
        result = run("keys", "create", "--data", data, "--name", "app")
        assert result.returncode == 0, result.stderr
        assert {(path.name, path.stat().st_uid) for path in data.iterdir()} == {("modemgw.db", 65534)}
    finally:
        shutil.rmtree(base)


def test_two_restores_in_one_second_keep_both_replaced_databases(start_daemon, tmp_path):
    daemon = start_daemon(modems=0)
    data = daemon.data_dir
    daemon.gateway.submit("original", [f"+4477009{n:05d}" for n in range(5)], request_report=False)
    daemon.stop()
    assert run("backup", "--data", data, tmp_path / "five.db").returncode == 0
    empty = start_daemon(modems=0)
    empty.stop()
    assert run("backup", "--data", empty.data_dir, tmp_path / "none.db").returncode == 0
    assert run("restore", "--data", data, tmp_path / "none.db").returncode == 0
    assert run("restore", "--data", data, tmp_path / "five.db").returncode == 0
    kept = sorted(data.glob("modemgw.db.before-restore-*"), key=lambda path: path.stat().st_mtime_ns)
    assert [count(path) for path in kept] == [5, 0]
    assert count(data / "modemgw.db") == 5


def test_a_backup_is_a_standalone_rollback_journal_file_with_nothing_beside_it(daemon, tmp_path):
    assert run("backup", "--data", daemon.data_dir, tmp_path / "copy.db").returncode == 0
    assert (tmp_path / "copy.db").read_bytes()[18:20] == b"\x01\x01"  # rollback journal, not WAL
    assert sorted(path.name for path in tmp_path.iterdir()) == ["copy.db", "data"]


def test_a_backup_never_writes_through_a_file_or_link_left_at_its_temporary_name(daemon, tmp_path):
    from modemgw.store import backup

    target = tmp_path / "copy.db"
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / ".copy.db.partial").symlink_to(victim)  # left by someone else
    with pytest.raises(backup.BackupError, match="exists"):
        backup.backup(daemon.data_dir / "modemgw.db", target)
    assert victim.read_text() == "precious" and not target.exists()
    assert (tmp_path / ".copy.db.partial").is_symlink()  # not ours: not removed either


def test_serve_creates_a_new_data_directory_0700_and_its_database_0600_under_umask_022(tmp_path):
    data = tmp_path / "new" / "data"
    process = subprocess.Popen([str(Path(sys.executable).parent / "modemgw"), "serve", "--data", str(data),
                                "--simulate", "1", "--sim-send-latency", "0.01", "--listen", "127.0.0.1:0"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, umask=0o022)
    try:
        for line in process.stdout:
            if "modemgw is running" in line:
                break
        modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in [data, *data.glob("modemgw.db*")]}
    finally:
        process.terminate()
        process.wait(timeout=15)
        process.stdout.close()
    assert modes["data"] == 0o700
    assert modes["modemgw.db"] == 0o600
    assert all(mode == 0o600 for name, mode in modes.items() if name.startswith("modemgw.db")), modes
