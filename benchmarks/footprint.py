"""Footprint: memory and idle CPU of the gateway with 8 modems and 100,000 stored messages.

    python benchmarks/footprint.py [--quick] [--messages N] [--idle S] [--out DIR]

The database is filled first, through the store's own connection and schema: 95 % of the messages are
history (delivered, each with its part and four events: created, sending, sent, delivered, spread over the
last 30 days) and 5 % are scheduled for the coming week, so the queue and the scheduled-message alarm are
realistic. Then `modemgw serve` runs as a process of its own, HTTP included, in two set-ups:

- `--simulate 8`: the simulated modems run inside the gateway's process (as in `modemgw demo`);
- `modemgw sim --count 8` as a separate process and the gateway configured with its 8 devices, so the
  gateway's own footprint is shown apart from the simulator's (as on a real appliance, with USB modems).

After the banner (every modem online) and 5 s of settling, it reads VmRSS, VmHWM (peak RSS) and the thread
count from /proc/<pid>/status and PSS from /proc/<pid>/smaps_rollup, then CPU time (utime + stime from
/proc/<pid>/stat) over S seconds of idleness (default 60: the periodic jobs of 10 s and 30 s run in it),
as % of one core. Targets (docs/design.md): RSS <= 60 MB, idle CPU <= 1 %.
"""

from __future__ import annotations

import atexit
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import options, report, temporary_directory

from modemgw.store import Store

TICKS = os.sysconf("SC_CLK_TCK")
MODEMS = 8
_processes: list[subprocess.Popen] = []


def seed(path: Path, messages: int) -> float:
    """Fill a fresh database with `messages` messages; returns the seconds it took."""
    started = time.perf_counter()
    store = Store(path)
    now = time.time()
    rng = random.Random(1)
    history = messages * 95 // 100
    with store.transaction() as conn:
        conn.execute("INSERT INTO submissions (body_hash, created_at) VALUES ('seed', ?)", (now,))
        message_rows, part_rows, event_rows = [], [], []
        for n in range(1, messages + 1):
            recipient = f"+4477009{10000 + n % 80000:05d}"
            if n <= history:
                created = now - 30 * 86400 + 30 * 86400 * n / history
                sent, delivered = created + rng.uniform(0.01, 2), created + rng.uniform(3, 60)
                modem = n % MODEMS + 1
                message_rows.append((n, 1, recipient, "Your code is 123456", "gsm7", 1, "delivered", 0, created,
                                     created, sent, sent, delivered, "delivered", modem, 1))
                part_rows.append((n, 1, modem, n % 256, sent, "delivered", 0, delivered))
                event_rows += [(created, n, None, "message.created"), (created, n, modem, "message.sending"),
                               (sent, n, modem, "message.sent"), (delivered, n, modem, "message.delivered")]
            else:
                due = now + rng.uniform(3600, 7 * 86400)
                message_rows.append((n, 1, recipient, "Reminder: your appointment is tomorrow at 9:30", "gsm7", 1,
                                     "scheduled", 0, due, now, None, now, None, None, None, 0))
                event_rows.append((now, n, None, "message.created"))
        conn.executemany("INSERT INTO messages (id, submission_id, recipient, body, encoding, segments, status, "
                         "priority, due_at, created_at, sent_at, updated_at, delivered_at, report, modem_id, "
                         "attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", message_rows)
        conn.executemany("INSERT INTO parts (message_id, seq, modem_id, tp_mr, sent_at, report_status, report_code, "
                         "report_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", part_rows)
        conn.executemany("INSERT INTO events (at, message_id, modem_id, kind) VALUES (?, ?, ?, ?)", event_rows)
    store.connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return time.perf_counter() - started


# --- processes ------------------------------------------------------------------------------------------------

def spawn(args: list[str], log: Path) -> subprocess.Popen:
    process = subprocess.Popen(args, start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=open(log, "w"), text=True, env={**os.environ, "MODEMGW_LOG": "WARNING"})
    _processes.append(process)
    return process


def wait_for_line(process: subprocess.Popen, marker: str, log: Path, timeout: float = 120) -> str:
    """Read the process's output until a line containing `marker`; then keep draining it in the background."""
    found: list[str] = []

    def read() -> None:
        for line in process.stdout:
            if not found and marker in line:
                found.append(line)
                ready.set()
        ready.set()

    ready = threading.Event()
    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(timeout) or not found:
        raise SystemExit(f"{' '.join(process.args[:4])} did not start: {log.read_text()[-2000:]}")
    return found[0]


def terminate(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if process in _processes:
        _processes.remove(process)


atexit.register(lambda: [terminate(process) for process in reversed(list(_processes))])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


# --- /proc ------------------------------------------------------------------------------------------------------

def memory(pid: int) -> dict:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    rollup = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])

    def mb(value: str) -> float:
        return round(int(value.split()[0]) / 1024, 1)  # kB

    return {"rss_mb": mb(status["VmRSS"]), "pss_mb": mb(rollup["Pss"]), "peak_rss_mb": mb(status["VmHWM"]),
            "threads": int(status["Threads"])}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14 and 15 of stat)


def measure(processes: dict[str, subprocess.Popen], settle: float, idle: float) -> dict[str, dict]:
    time.sleep(settle)
    before = {name: (cpu_seconds(process.pid), time.monotonic()) for name, process in processes.items()}
    time.sleep(idle)
    result = {}
    for name, process in processes.items():
        cpu, at = before[name]
        used = cpu_seconds(process.pid) - cpu
        result[name] = {**memory(process.pid), "idle_s": round(time.monotonic() - at, 1),
                        "idle_cpu_s": round(used, 2), "idle_cpu_pct": round(100 * used / (time.monotonic() - at), 2)}
    return result


# --- the two set-ups --------------------------------------------------------------------------------------------

def serve(data: Path, directory: Path, config: Path | None = None, simulate: int = 0) -> subprocess.Popen:
    args = [sys.executable, "-m", "modemgw", "serve", "--data", str(data), "--listen", "127.0.0.1:0"]
    if config:
        args += ["--config", str(config)]
    if simulate:
        args += ["--simulate", str(simulate)]
    log = directory / "serve.log"
    process = spawn(args, log)
    wait_for_line(process, "modemgw is running", log)
    return process


def main() -> None:
    parser = options(__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=None, help="stored messages (default 100000)")
    parser.add_argument("--idle", type=float, default=None, help="seconds of idleness measured (default 60)")
    args = parser.parse_args()
    messages = args.messages or (10_000 if args.quick else 100_000)
    idle = args.idle or (2.0 if args.quick else 60.0)
    settle = 0.5 if args.quick else 5.0
    directory = temporary_directory("modemgw-footprint-")
    data = directory / "data"
    data.mkdir()
    seconds = seed(data / "modemgw.db", messages)
    database_mb = round(sum(path.stat().st_size for path in data.glob("modemgw.db*")) / 2**20, 1)
    print(f"stored {messages} messages in {seconds:.1f} s ({database_mb} MB)", flush=True)
    common = {"modems": MODEMS, "messages": messages, "database_mb": database_mb}
    rows = []

    gateway = serve(data, directory, simulate=MODEMS)
    try:
        figures = measure({"gateway": gateway}, settle, idle)
    finally:
        terminate(gateway)
    rows.append({"setup": "serve --simulate 8", "process": "gateway with simulator inside", **common,
                 **figures["gateway"]})
    print(rows[-1], flush=True)

    links = directory / "dev"
    log = directory / "sim.log"
    simulator = spawn([sys.executable, "-m", "modemgw", "sim", "--count", str(MODEMS), "--link-dir", str(links)], log)
    try:
        wait_for_line(simulator, "simulated modem(s) ready", log)
        config = directory / "modemgw.toml"
        config.write_text("".join(f'[[modem]]\ndevice = "{links / f"sim{n}"}"\nlabel = "sim{n}"\n\n'
                                  for n in range(MODEMS)))
        gateway = serve(data, directory, config=config)
        try:
            figures = measure({"gateway": gateway, "simulator": simulator}, settle, idle)
        finally:
            terminate(gateway)
    finally:
        terminate(simulator)
    rows.append({"setup": "serve + sim process", "process": "gateway alone", **common, **figures["gateway"]})
    rows.append({"setup": "serve + sim process", "process": "simulator (modemgw sim)", **common,
                 **figures["simulator"]})
    for row in rows[1:]:
        print(row, flush=True)
    report("footprint", rows, ["setup", "process", "messages", "rss_mb", "pss_mb", "peak_rss_mb", "threads",
                               "idle_s", "idle_cpu_pct"], args.out, quick=args.quick, seed_s=round(seconds, 1))


if __name__ == "__main__":
    main()
