"""What one message costs: bytes written to the disk, CPU time and storage, modemgw beside smstools3 and gammu-smsd.

    python benchmarks/cost.py [--quick] [--messages N] [--only modemgw,smsd,gammu,floor] [--block-size 4096|1024]
                              [--idle S] [--out DIR]

On a Raspberry Pi the database lives on an SD card, which wears out with writes; so what matters is what one
message writes, end to end, with its delivery report. Every gateway meets the same simulated modems (modemgw's
own simulator behind real ptys, run by this script as peers.py does: 4 modems, 0.1 s per AT+CMGS, a status
report 0.2 s after each send, routed as each gateway asks with AT+CNMI: sent on at once (+CDS), or stored in
the modem's "SR" storage, made to hold 1000, and announced with +CDSI) and keeps its data on a file system of
its own: an ext4 image (4 KiB blocks as on a Pi's SD card; `--block-size 1024` is what mke2fs makes for an
image this small, and what runs before 2026-12-02 had; otherwise default options, its journal included; inode
tables initialised at mkfs so that no background zeroing is counted) on a loop device, mounted for the run. For
each gateway:

1. start it (modemgw: its database on the image; smsd and gammu-smsd: their spool, sent, inbox, report and
   log folders on the image) and send one warm-up message per modem, until its report is back;
2. modemgw only: stop it (its checkpoint folds the WAL into the database) and start it again, so that the
   database's size before is the size after a checkpoint, as after;
3. sync the file system, then read the loop device's sectors written (/sys/block/loopN/stat), and the
   process's write_bytes (/proc/<pid>/io) and CPU time (utime + stime, /proc/<pid>/stat; all processes of the
   gateway's process group: smsd forks a process per modem);
4. hand it N messages, each asking for a status report: modemgw one `POST /api/v1/messages` per message (the
   one-time-password case, row `modemgw`) or all N in one POST (the campaign case, row `modemgw campaign`),
   with a webhook subscribed to `message.delivered`, served by this script on 127.0.0.1; smsd and gammu-smsd
   one spool file per message (written to the image, so it counts: that is how they are given work);
5. wait until every message is delivered: modemgw has posted the `message.delivered` webhook of each (and a
   second later, when it has recorded the webhook's outcome); smsd has a file per report in its report folder;
   gammu-smsd has logged reading each ("processing incoming SMS"; `DeliveryReport = log`: with `sms`, its files
   backend stores 100 reports at most);
6. read write_bytes and CPU time (the process still runs), stop the gateway cleanly, sync, and read the
   device's sectors written again: journal, metadata, checkpoints and the files of shutdown all count.

Per message: bytes written at the block device (KiB), the process's write_bytes (KiB), CPU ms, and storage
growth (modemgw: `page_count * page_size` of the database, and its files' size after the checkpoint; peers:
the bytes of the files in their folders). Where modemgw's writes go is read from its WAL while it runs (the
file is read through a descriptor opened with O_NOATIME, so reading it writes nothing): WAL frames and commits
per message, and (from sqlite's dbstat after the run) the tables and indexes whose pages those frames were.

Rows `durable floor, 1 sync` and `3 syncs` (`floor`): no gateway, the least any gateway can write per message
when it makes 1 step (the acknowledgement) or 3 steps (the acknowledgement, the claim before the PDU goes out,
the report before the modem forgets it) durable: a 200-byte record per step, written in place into a file
prepared beforehand and fdatasync'd, on an image of its own. A sync writes at least one 4 KiB block.

`--idle S` also measures modemgw with the 4 modems and nothing to send: bytes written at the block device over
S seconds after a settle and a sync (a full run uses 600). The peers run with benchmarks/peers/*.reports.conf
(their tuned configuration, with status reports on). Needs root (mount, losetup) and a free loop device; the
image is unmounted, detached and removed at the end, also on Ctrl-C or failure.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import tempfile
import threading
import time
from collections import Counter
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import peers
from common import options, report

TICKS = os.sysconf("SC_CLK_TCK")
MODEMS = 4
SEND_LATENCY = 0.1
REPORT_DELAY = 0.2
REPORT_STORAGE = 1000
IMAGE_MB = 320
KIB = 1024


# --- a file system of its own on a loop device ----------------------------------------------------------------

def _run(args: list[str]) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if result.returncode:
        raise RuntimeError(f"{' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


class Volume:
    """An ext4 image on a loop device, mounted at `path`, in a temporary `directory` of its own (which also holds
    what is not measured: the simulated modems' links, modemgw's configuration and log). Its block device's
    sectors written are the bytes that reached the "disk", journal and metadata included."""

    open_volumes: list[Volume] = []

    block_size = 4096  # as on a Raspberry Pi's SD card (Raspberry Pi OS: ext4, 4 KiB blocks); `--block-size`

    def __init__(self, prefix: str, size_mb: int = IMAGE_MB):
        self.directory = directory = Path(tempfile.mkdtemp(prefix=prefix))
        self.image, self.path = directory / "image.ext4", directory / "mnt"
        self.device: str | None = None
        self.mounted = False
        Volume.open_volumes.append(self)
        with open(self.image, "wb") as image:
            image.truncate(size_mb * 2**20)
        # mke2fs makes 1 KiB blocks on an image this small ("small" in mke2fs.conf) unless told
        _run(["mkfs.ext4", "-q", "-b", str(Volume.block_size), "-E", "lazy_itable_init=0,lazy_journal_init=0",
              str(self.image)])
        self.device = _run(["losetup", "--find", "--show", str(self.image)]).strip()
        self.path.mkdir()
        _run(["mount", "-t", "ext4", "-o", "noatime", self.device, str(self.path)])  # as Raspberry Pi OS mounts it
        self.mounted = True

    def sync(self) -> None:
        _run(["sync", "--file-system", str(self.path)])

    def bytes_written(self) -> int:
        """Bytes written to the device so far, after a sync of its file system."""
        self.sync()
        fields = Path(f"/sys/block/{Path(self.device or '').name}/stat").read_text().split()
        return int(fields[6]) * 512  # sectors written, always in 512-byte units

    def close(self) -> None:
        if self.mounted:
            for attempt in range(10):
                result = subprocess.run(["umount", str(self.path)], capture_output=True, text=True)
                if result.returncode == 0:
                    break
                time.sleep(0.2 * (attempt + 1))  # a process that is stopping still holds a file
            else:
                print(f"could not unmount {self.path}: {result.stderr.strip()}; unmount it by hand", flush=True)
                return
            self.mounted = False
        if self.device:
            subprocess.run(["losetup", "--detach", self.device], capture_output=True)
            self.device = None
        shutil.rmtree(self.directory, ignore_errors=True)
        if self in Volume.open_volumes:
            Volume.open_volumes.remove(self)


def _clean_up() -> None:
    """At exit (also after Ctrl-C or an error): stop the gateways first, so that their file systems can go."""
    peers._terminate_all()
    for volume in reversed(list(Volume.open_volumes)):
        volume.close()


atexit.register(_clean_up)  # registered after peers' own, so it runs before it


def capability_problem() -> str | None:
    """Why this machine cannot run the measure (not root, no loop device, a missing program), or None."""
    if os.geteuid() != 0:
        return "cost.py mounts loop devices: run it as root"
    if not Path("/dev/loop-control").exists():
        return "no loop devices (/dev/loop-control is missing: modprobe loop)"
    for program in ("mkfs.ext4", "losetup", "mount", "umount"):
        if shutil.which(program) is None:
            return f"{program} is not installed"
    return None


# --- processes --------------------------------------------------------------------------------------------------

def _group(leader: int) -> list[int]:
    """The processes of `leader`'s process group (peers.spawn starts every gateway in a session of its own)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == leader:
                pids.append(int(entry.name))
    return pids


def counters(leaders: list[int]) -> dict:
    """write_bytes and CPU seconds (user + system, children reaped included) of the leaders' process groups."""
    written, cpu = 0, 0
    for leader in leaders:
        for pid in _group(leader):
            try:
                io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # it just ended: its parent's counters have it
            written += int(io["write_bytes"])
            cpu += sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    return {"write_bytes": written, "cpu_s": cpu / TICKS}


def folder_bytes(path: Path) -> tuple[int, int]:
    """The size of the files under `path` and the blocks they take, in bytes (stat only: no atime changes)."""
    size = blocks = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                status = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            size += status.st_size
            blocks += status.st_blocks * 512
    return size, blocks


def count_lines(path: Path, text: bytes) -> int:
    """Lines of the file at `path` that contain `text`, read through a descriptor opened with O_NOATIME."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOATIME)
    except FileNotFoundError:
        return 0
    with os.fdopen(descriptor, "rb") as file:
        return sum(text in line for line in file)


def count_files(folder: Path) -> int:
    """Files in `folder`, listed through a descriptor opened with O_NOATIME: a poll must not write to the disk (a
    directory's atime would, under relatime, after every change)."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOATIME)
    try:
        return len(os.listdir(descriptor))
    finally:
        os.close(descriptor)


# --- where modemgw's writes go: its WAL, read while it runs ---------------------------------------------------

class WalFrames(threading.Thread):
    """Counts the frames and commits written to an SQLite WAL file, read every few milliseconds.

    A WAL starts again from its beginning after a checkpoint, with new salts in its header; frames are told
    apart by their salts, so a pass finds the new ones since the last (of the old generation too, when the file
    started over in between). A frame that was overwritten before it was seen is missed: the poll is frequent
    (every 5 ms) and the log holds ~1000 frames before it starts over, so few are. Frames already in the log
    when it is made are not counted."""

    def __init__(self, path: Path):
        super().__init__(name="wal-frames", daemon=True)
        self.path = path
        self.frames = self.commits = 0
        self.pages: Counter[int] = Counter()  # page number -> frames
        self._descriptor: int | None = None
        self._salts: tuple[int, int] | None = None
        self._next = 0  # the next frame index to look at in the current generation
        self._page_size = 0
        self._stop_event = threading.Event()
        self._counting = False
        self.scan()  # what is in the log already was written before: skipped
        self._counting = True

    def run(self) -> None:
        while not self._stop_event.wait(0.005):
            self.scan()

    def stop(self) -> None:
        """Stop reading (after a last pass) and close the file: an open file would keep its file system busy."""
        self._stop_event.set()
        if self.is_alive():
            self.join(5)
        if self._descriptor is not None:
            self.scan()
            os.close(self._descriptor)
            self._descriptor = None

    def scan(self) -> None:
        if self._descriptor is None:
            try:
                self._descriptor = os.open(self.path, os.O_RDONLY | os.O_NOATIME)
            except FileNotFoundError:
                return
        header = os.pread(self._descriptor, 32, 0)
        if len(header) < 32:
            return
        _magic, _version, page_size, _checkpoint, salt1, salt2, _sum1, _sum2 = struct.unpack(">8I", header)
        self._page_size = page_size
        if (salt1, salt2) != self._salts:
            if self._salts is not None:
                self._read_frames(self._salts)  # the rest of the old generation, where not yet overwritten
            self._salts, self._next = (salt1, salt2), 0
        self._read_frames(self._salts)

    def _read_frames(self, salts: tuple[int, int]) -> None:
        frame = 24 + self._page_size
        while True:
            header = os.pread(self._descriptor, 16, 32 + self._next * frame)  # type: ignore[arg-type]
            if len(header) < 16:
                return
            page, commit, salt1, salt2 = struct.unpack(">4I", header)
            if (salt1, salt2) != salts:
                return
            if self._counting:
                self.frames += 1
                self.commits += commit != 0  # a commit frame holds the database's size in pages
                self.pages[page] += 1
            self._next += 1


def page_owners(database: Path) -> dict[int, str]:
    """Page number -> the table or index it belongs to (sqlite's dbstat), read after the run."""
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        try:
            return {page: name for name, page in conn.execute("SELECT name, pageno FROM dbstat")}
        except sqlite3.OperationalError:
            return {}  # an sqlite built without dbstat


def database_bytes(database: Path) -> dict:
    """The database's page_count * page_size, and the size of its files (after a checkpoint: the WAL is empty)."""
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    files = sum(path.stat().st_size for path in database.parent.glob(database.name + "*")
                if not path.name.endswith("-shm"))
    return {"pages_bytes": pages * page_size, "files_bytes": files, "page_size": page_size}


# --- a webhook receiver ---------------------------------------------------------------------------------------

class Receiver:
    """An HTTP server on 127.0.0.1 (port 0) that takes modemgw's webhooks and notes each delivered message."""

    def __init__(self):
        self.delivered: set[int] = set()
        self.posts = 0
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(length, 1 << 20)) if 0 <= length <= 1 << 20 else b""
                self.send_response(204)
                self.end_headers()
                try:
                    event = json.loads(body)
                except ValueError:
                    return
                with receiver._changed:
                    receiver.posts += 1
                    if isinstance(event, dict) and event.get("event") == "message.delivered":
                        receiver.delivered.add(event.get("message_id"))
                    receiver._changed.notify_all()

            def log_message(self, *args):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, name="webhooks", daemon=True).start()

    def wait(self, ids: set[int], timeout: float) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: ids <= self.delivered, timeout):
                missing = len(ids - self.delivered)
                raise TimeoutError(f"{missing} of {len(ids)} delivery webhooks did not come in {timeout:g} s")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the runs -------------------------------------------------------------------------------------------------

def modems(directory: Path) -> peers.Modems:
    """The simulated modems every gateway meets; their status-report storage ("SR") holds REPORT_STORAGE reports.

    gammu-smsd takes each report when the modem announces it (+CDSI) but never deletes it from the modem, so at the
    simulator's usual 100 a modem stops taking reports after its 100th; a modem that keeps more lets every
    gateway finish the run (modemgw and smsd read and delete theirs)."""
    sim = peers.Modems(MODEMS, directory / "dev", SEND_LATENCY, REPORT_DELAY)
    for device in sim.sim.devices:
        sim.sim.call(lambda modem=device.modem: setattr(modem.storages["SR"], "capacity", REPORT_STORAGE))
    return sim


def per_message(row: dict, count: int, before: dict, after: dict, device_bytes: int, storage: int) -> dict:
    row.update(messages=count, device_kib=round(device_bytes / count / KIB, 2),
               process_kib=round((after["write_bytes"] - before["write_bytes"]) / count / KIB, 2),
               cpu_ms=round((after["cpu_s"] - before["cpu_s"]) * 1000 / count, 2),
               storage_bytes=round(storage / count), device_bytes_total=device_bytes)
    return row


def run_modemgw(count: int, campaign: bool) -> dict:
    volume = Volume("modemgw-cost-")
    directory = volume.directory
    sim = modems(directory)
    receiver = Receiver()
    data = volume.path / "data"
    gateway = peers.Modemgw("default", directory, data=data, report=True)
    database = data / "modemgw.db"
    wal: WalFrames | None = None
    started = time.monotonic()
    try:
        gateway.start(sim.devices)
        gateway.request("POST", "/api/v1/webhooks", {"url": receiver.url, "events": ["message.delivered"]}, 201)
        warm_up = peers.recipients(MODEMS)
        ids = {message["id"] for message in _submit(gateway, warm_up)}
        receiver.wait(ids, 60)
        gateway.stop()  # its checkpoint: the database's size before is that after a checkpoint, as after
        size_before = database_bytes(database)
        gateway.start(sim.devices)
        time.sleep(1.0)  # its start-up writes are done
        device_before = volume.bytes_written()
        before = counters([gateway.process.pid])
        wal = WalFrames(data / "modemgw.db-wal")
        wal.start()
        numbers = peers.recipients(count)
        if campaign:
            ids = {message["id"] for message in _submit(gateway, numbers)}
        else:
            ids = set()
            for number in numbers:
                ids |= {message["id"] for message in _submit(gateway, [number])}
        receiver.wait(ids, 120 + count * 0.5)
        time.sleep(1.0)  # the webhook's outcome is recorded after its answer
        after = counters([gateway.process.pid])
        wal.stop()
        gateway.stop()
        device_bytes = volume.bytes_written() - device_before
        size_after = database_bytes(database)
        owners = page_owners(database)
    finally:
        if wal is not None:
            wal.stop()
        gateway.stop()
        receiver.close()
        sim.stop()
        volume.close()
    storage = size_after["pages_bytes"] - size_before["pages_bytes"]
    row = per_message({"gateway": "modemgw campaign" if campaign else "modemgw",
                       "submit": f"1 POST of {count}" if campaign else "1 POST per message"},
                      count, before, after, device_bytes, storage)
    by_owner: Counter[str] = Counter()
    for page, frames in wal.pages.items():
        by_owner[owners.get(page, "other (freed or new pages)")] += frames
    row.update(files_bytes=round((size_after["files_bytes"] - size_before["files_bytes"]) / count),
               wal_frames=round(wal.frames / count, 2), commits=round(wal.commits / count, 2),
               wal_kib=round(wal.frames * (24 + size_after["page_size"]) / count / KIB, 2),
               page_size=size_after["page_size"],
               frames_by_table={name: round(frames / count, 2) for name, frames in by_owner.most_common()},
               run_s=round(time.monotonic() - started, 1))
    return row


def _submit(gateway: peers.Modemgw, numbers: list[str]) -> list[dict]:
    answer = gateway.request("POST", "/api/v1/messages", {"to": numbers, "body": peers.TEXT}, 202)
    messages = answer.get("messages") or answer.get("data") or []
    if len(messages) != len(numbers):
        raise RuntimeError(f"POST /api/v1/messages answered {len(messages)} messages for {len(numbers)}: {answer}")
    return messages


def run_peer(kind, count: int) -> dict:
    volume = Volume(f"modemgw-cost-{kind.name}-")
    directory = volume.directory
    sim = modems(directory)
    gateway = kind("reports", volume.path, report=True)
    started = time.monotonic()

    def reports() -> int:
        if kind is peers.Smsd:
            return count_files(gateway.spool / "report")
        # one line per report read (there is no inbound SMS in the run); at its default log level no other
        return sum(count_lines(spool / "smsd.log", b"processing incoming SMS") for spool in gateway.spools)

    def wait_reports(total: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while reports() < total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{total - reports()} of {total} status reports not stored in {timeout:g} s")
            time.sleep(0.1)

    try:
        gateway.start(sim.devices)
        warm_up = peers.recipients(MODEMS)
        gateway.submit(warm_up)
        sim.wait_received(warm_up, 120)
        wait_reports(len(warm_up), 60)
        time.sleep(1.0)
        leaders = [process.pid for process in ([gateway.process] if kind is peers.Smsd else gateway.processes)]
        storage_before = folder_bytes(volume.path)
        device_before = volume.bytes_written()
        before = counters(leaders)
        numbers = peers.recipients(count)
        gateway.submit(numbers)
        sim.wait_received(numbers, 120 + count * 2.0)
        wait_reports(len(warm_up) + count, 120)
        after = counters(leaders)
        gateway.stop()
        device_bytes = volume.bytes_written() - device_before
        storage_after = folder_bytes(volume.path)
    finally:
        gateway.stop()
        sim.stop()
        volume.close()
    row = per_message({"gateway": kind.name, "submit": "1 spool file per message"}, count, before, after,
                      device_bytes, storage_after[0] - storage_before[0])
    row.update(storage_blocks_bytes=round((storage_after[1] - storage_before[1]) / count),
               run_s=round(time.monotonic() - started, 1))
    return row


def run_idle(seconds: float, settle: float) -> dict:
    """modemgw with MODEMS modems and nothing to send: bytes written to its device over `seconds`."""
    volume = Volume("modemgw-cost-idle-")
    directory = volume.directory
    sim = modems(directory)
    data = volume.path / "data"
    gateway = peers.Modemgw("default", directory, data=data, report=True)
    wal: WalFrames | None = None
    try:
        gateway.start(sim.devices)
        time.sleep(settle)
        device_before = volume.bytes_written()
        before = counters([gateway.process.pid])
        wal = WalFrames(data / "modemgw.db-wal")
        wal.start()
        time.sleep(seconds)
        after = counters([gateway.process.pid])
        wal.stop()
        device_bytes = volume.bytes_written() - device_before  # while it runs: no shutdown writes
    finally:
        if wal is not None:
            wal.stop()
        gateway.stop()
        sim.stop()
        volume.close()
    return {"gateway": "modemgw idle", "modems": MODEMS, "idle_s": seconds, "device_bytes": device_bytes,
            "device_mb_per_day": round(device_bytes * 86400 / seconds / 1e6, 2),
            "process_write_bytes": after["write_bytes"] - before["write_bytes"],
            "cpu_ms": round((after["cpu_s"] - before["cpu_s"]) * 1000, 1),
            "wal_frames": wal.frames, "commits": wal.commits}


RECORD = 200  # bytes a durable gateway must make durable at least, per step: a message's row is bigger
FLOOR_SYNCS = (1, 3)  # the acknowledgement alone; the acknowledgement, the claim before the PDU, the report


def run_floor(count: int, syncs: int) -> dict:
    """The least any gateway can write that makes `syncs` steps of each message durable (the 202, the claim before
    its PDU goes out, the report before the modem forgets it): a 200-byte record per step, written in place into a
    file written and synced beforehand (so no step changes the file's size or allocates a block: no metadata, no
    journal) and fdatasync'd. Each sync writes at least the file system block that holds its record (4 KiB on the
    default image; with `--block-size 1024`, the 1 KiB buffers it changed): no database, page size or file layout
    can write less per synced step on that file system."""
    volume = Volume("floor-cost-", size_mb=max(32, count * syncs * RECORD // 2**20 * 2))  # small: mkfs is I/O
    try:
        path = volume.path / "journal"
        size = count * syncs * RECORD
        with open(path, "wb") as prepared:
            prepared.write(b"\0" * size)
            prepared.flush()
            os.fsync(prepared.fileno())
        descriptor = os.open(path, os.O_WRONLY)
        try:
            device_before = volume.bytes_written()
            started = time.process_time()
            for step in range(count * syncs):
                os.pwrite(descriptor, step.to_bytes(8, "big") * (RECORD // 8), step * RECORD)
                os.fdatasync(descriptor)
            cpu = time.process_time() - started
            device_bytes = volume.bytes_written() - device_before
        finally:
            os.close(descriptor)
    finally:
        volume.close()
    return {"gateway": f"durable floor, {syncs} sync{'s' if syncs > 1 else ''}",
            "submit": f"{RECORD} bytes synced {syncs}x per message", "messages": count,
            "device_kib": round(device_bytes / count / KIB, 2), "cpu_ms": round(cpu * 1000 / count, 2),
            "storage_bytes": RECORD * syncs, "device_bytes_total": device_bytes}


def ratios(rows: list[dict]) -> list[dict]:
    """modemgw's figures over each peer's, per measure (below 1: modemgw costs less)."""
    by_name = {row["gateway"]: row for row in rows if "error" not in row}
    lines = []
    for ours in ("modemgw", "modemgw campaign"):
        for theirs in ("gammu-smsd", "smsd"):
            if ours in by_name and theirs in by_name:
                line = {"ratio": f"{ours} / {theirs}"}
                for field in ("device_kib", "process_kib", "cpu_ms", "storage_bytes"):
                    mine, peer = by_name[ours][field], by_name[theirs][field]
                    line[field] = round(mine / peer, 2) if peer else None
                lines.append(line)
    return lines


def print_table(lines: list[dict]) -> None:
    columns = list(dict.fromkeys(key for line in lines for key in line))
    widths = [max(len(column), *(len(str(line.get(column, "-"))) for line in lines)) for column in columns]
    print("  ".join(column.ljust(width) for column, width in zip(columns, widths, strict=True)))
    for line in lines:
        print("  ".join(str(line.get(column, "-")).ljust(width) for column, width in zip(columns, widths, strict=True)))


def main() -> None:
    parser = options(__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=None, help="messages per gateway (default 500; --quick: 40)")
    parser.add_argument("--only", default=None, help="some of modemgw,smsd,gammu,floor (default: all)")
    parser.add_argument("--block-size", type=int, default=4096, choices=(1024, 4096),
                        help="the images' file system block size (default 4096, as on a Pi's SD card; before "
                             "2026-12-02 the runs had mke2fs's 1024 for a small image)")
    parser.add_argument("--idle", type=float, default=0.0,
                        help="seconds of idle modemgw measured (default 0: skipped; a full run uses 600)")
    args = parser.parse_args()
    problem = capability_problem()
    if problem:
        raise SystemExit(problem)
    Volume.block_size = args.block_size
    count = args.messages or (40 if args.quick else 500)
    wanted = {"modemgw", "smsd", "gammu", "floor"} if not args.only else {item.strip() for item in args.only.split(",")}
    unknown = wanted - {"modemgw", "smsd", "gammu", "floor"}
    if unknown:
        raise SystemExit(f"--only: unknown {', '.join(sorted(unknown))}; choose from modemgw, smsd, gammu, floor")
    plan: list[tuple[str, object]] = []
    if "modemgw" in wanted:
        plan += [("modemgw", False), ("modemgw campaign", True)]
    skipped = []
    for name, kind, package in (("gammu", peers.GammuSmsd, "gammu-smsd"), ("smsd", peers.Smsd, "smstools")):
        if name in wanted:
            if shutil.which(kind.program) is None:
                print(f"skipping {kind.name}: {kind.program} is not installed (Debian: apt-get install {package})")
                skipped.append({"gateway": kind.name, "reason": f"{kind.program} not installed (package {package})"})
            else:
                plan.append((kind.name, kind))
    load_before = os.getloadavg()  # the machine's load, for whoever reads the figures
    rows = []
    if "floor" in wanted:
        for syncs in FLOOR_SYNCS:
            try:  # --quick: fewer, so that a quick run (the test suite's) is no storm of syncs on a shared disk
                row = run_floor(min(count, 10) if args.quick else count, syncs)
            except (RuntimeError, OSError) as error:
                print(f"durable floor, {syncs} syncs, failed: {error}", flush=True)
                row = {"gateway": f"durable floor, {syncs} sync{'s' if syncs > 1 else ''}", "error": str(error)}
            print(row, flush=True)
            rows.append(row)
    for name, what in plan:
        try:
            row = run_modemgw(count, what) if isinstance(what, bool) else run_peer(what, count)
        except (TimeoutError, RuntimeError, OSError) as error:
            print(f"{name} failed: {error}", flush=True)
            row = {"gateway": name, "error": str(error)}
        print(row, flush=True)
        rows.append(row)
    idle = None
    if args.idle > 0:
        idle = run_idle(args.idle, 2.0 if args.quick else 10.0)
        print(idle, flush=True)
    print()
    lines = ratios(rows)
    report("cost", rows, ["gateway", "submit", "messages", "device_kib", "process_kib", "cpu_ms", "storage_bytes",
                          "wal_frames", "commits", "run_s"], args.out, quick=args.quick, modems=MODEMS,
           send_latency_s=SEND_LATENCY, report_delay_s=REPORT_DELAY, block_size=Volume.block_size,
           load_average_before=load_before,
           load_average_after=os.getloadavg(),
           skipped=skipped, ratios=lines, idle=idle)
    if lines:
        print()
        print_table(lines)
    if idle:
        print(f"\nidle, {MODEMS} modems, {idle['idle_s']:g} s: {idle['device_bytes']} bytes at the block device "
              f"({idle['device_mb_per_day']} MB a day), {idle['wal_frames']} WAL frames, {idle['commits']} commits")
    if any(row.get("gateway") == "modemgw" for row in rows if "error" not in row):
        print("\nmodemgw's WAL frames per message, by table or index:")
        for name, frames in next(row for row in rows if row["gateway"] == "modemgw")["frames_by_table"].items():
            print(f"  {name:40} {frames}")
    if any("error" in row for row in rows):
        raise SystemExit("some runs failed (see 'error' in the rows)")


if __name__ == "__main__":
    main()
