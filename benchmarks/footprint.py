"""Footprint: memory and idle CPU of the gateway with 8 modems and 100,000 stored messages; RSS under load.

    python benchmarks/footprint.py [--quick] [--messages N] [--idle S] [--drain N] [--stored N]
                                   [--only idle,drain,stored] [--env NAME=VALUE] [--out DIR]

Three runs (`--only` picks some), each `modemgw serve` as a process of its own, HTTP included:

- idle: the database is filled first (`--messages`, default 100,000), through the store's own connection and
  schema: 95 % of the messages are history (delivered, each with its part and four events, over the last 30
  days) and 5 % are scheduled for the coming week, so the queue and the scheduled-message alarm are realistic.
  Two set-ups: `--simulate 8` (the simulated modems inside the gateway's process, as in `modemgw demo`), and
  `modemgw sim --count 8` as a separate process with the gateway configured with its 8 devices, so the gateway's
  own footprint is shown apart from the simulator's (as on a real appliance, with USB modems). After the banner
  (every modem online) and 5 s of settling, it reads VmRSS, VmHWM (peak RSS) and the thread count from
  /proc/<pid>/status and PSS from /proc/<pid>/smaps_rollup, then CPU time (utime + stime from /proc/<pid>/stat)
  over S seconds of idleness (default 60: the periodic jobs of 10 s and 30 s run in it), as % of one core.
- drain (`--drain N`, default 50,000): N messages submitted over the API in batches of 5,000 and sent through
  8 instant simulated modems (a process of their own) with a status report for each; the gateway's VmRSS is read
  every 50 ms: `peak_rss_mb` (the highest, or VmHWM), `steady_rss_mb` (the median over the drain's second half)
  and `rss_mb` once every message is delivered.
- stored (`--stored N`, default 1,000,000): a 30-day history of N messages (`modemgw.store.seed`, with parts,
  reports, inbound messages and webhook deliveries), then the read paths people use on it, each 3 times: the
  API's message list (first page, 20 pages by cursor, filters) and statistics, the web UI's dashboard, messages
  and statistics pages (logged in). A row per step: RSS after it, VmHWM so far, and its median time.

`--env NAME=VALUE` sets the gateway's environment (e.g. MALLOC_ARENA_MAX=4, to compare). Targets
(docs/design.md): RSS <= 60 MB, idle CPU <= 1 %.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from common import options, report, temporary_directory, terminate, track

from modemgw import auth, users
from modemgw.store import Store

TICKS = os.sysconf("SC_CLK_TCK")
MODEMS = 8
SUBMIT_BATCH = 5_000  # recipients per POST /api/v1/messages while draining
PASSWORD = "footprint benchmark"  # the web UI user's, in a temporary database


SEED_BATCH = 20_000  # messages per executemany: the seeding process's own memory stays flat up to 1,000,000


def _seed_rows(first: int, last: int, messages: int, now: float) -> tuple[list, list, list]:
    """The rows of messages first..last (1-based) of a `messages`-message history: 95 % delivered over the last 30
    days, 5 % scheduled for the coming week. Deterministic (a generator seeded by the batch's first number)."""
    rng = random.Random(first)
    history = messages * 95 // 100
    message_rows, part_rows, event_rows = [], [], []
    for n in range(first, last + 1):
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
    return message_rows, part_rows, event_rows


def seed(path: Path, messages: int) -> float:
    """Fill a fresh database with `messages` messages (up to a million and more: written in batches of
    SEED_BATCH, so this process never holds them all); returns the seconds it took."""
    started = time.perf_counter()
    store = Store(path)
    now = time.time()
    with store.transaction() as conn:
        conn.execute("INSERT INTO submissions (body_hash, created_at) VALUES ('seed', ?)", (now,))
    for first in range(1, messages + 1, SEED_BATCH):  # a transaction per batch: the WAL stays small
        message_rows, part_rows, event_rows = _seed_rows(first, min(messages, first + SEED_BATCH - 1), messages, now)
        with store.transaction() as conn:
            conn.executemany("INSERT INTO messages (id, submission_id, recipient, body, encoding, segments, status, "
                             "priority, due_at, created_at, sent_at, updated_at, delivered_at, report, modem_id, "
                             "attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", message_rows)
            conn.executemany("INSERT INTO parts (message_id, seq, modem_id, tp_mr, sent_at, report_status, "
                             "report_code, report_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", part_rows)
            conn.executemany("INSERT INTO events (at, message_id, modem_id, kind) VALUES (?, ?, ?, ?)", event_rows)
    store.connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return time.perf_counter() - started


def seed_history(path: Path, messages: int) -> float:
    """A history of `messages` messages over 30 days for the read paths: `modemgw.store.seed.seed_messages` (parts,
    events, status reports, inbound messages, webhook deliveries, audit, contacts; built inside SQLite, a million in
    about a minute), else `seed` above. Returns the seconds it took."""
    try:
        from modemgw.store.seed import seed_messages
    except ImportError:
        return seed(path, messages)
    started = time.perf_counter()
    store = Store(path)
    try:
        seed_messages(store, messages, days=30, modems=MODEMS)
        store.connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        store.close()
    return time.perf_counter() - started


# --- processes ------------------------------------------------------------------------------------------------

def spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    process = subprocess.Popen(args, start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=open(log, "w"), text=True,
                               env={**os.environ, "MODEMGW_LOG": "WARNING", **(env or {})})
    track(process)
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


# --- the two idle set-ups ---------------------------------------------------------------------------------------

def serve(data: Path, directory: Path, config: Path | None = None, simulate: int = 0, extra: tuple[str, ...] = (),
          env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """`modemgw serve` on `data`, started and running (every modem online); returns the process and its URL."""
    args = [sys.executable, "-m", "modemgw", "serve", "--data", str(data), "--listen", "127.0.0.1:0", *extra]
    if config:
        args += ["--config", str(config)]
    if simulate:
        args += ["--simulate", str(simulate)]
    log = directory / "serve.log"
    process = spawn(args, log, env)
    banner = wait_for_line(process, "modemgw is running", log)
    return process, banner.split("modemgw is running: ", 1)[1].split()[0]


def idle_setups(directory: Path, messages: int, settle: float, idle: float, env: dict[str, str]) -> list[dict]:
    """The two set-ups of the module's docstring, on `messages` stored messages."""
    data = directory / "data"
    data.mkdir()
    seconds = seed(data / "modemgw.db", messages)
    database_mb = database_size(data)
    print(f"stored {messages} messages in {seconds:.1f} s ({database_mb} MB)", flush=True)
    common = {"modems": MODEMS, "messages": messages, "database_mb": database_mb, "seed_s": round(seconds, 1)}
    rows = []

    gateway, _ = serve(data, directory, simulate=MODEMS, env=env)
    try:
        figures = measure({"gateway": gateway}, settle, idle)
    finally:
        terminate(gateway)
    rows.append({"setup": "serve --simulate 8", "process": "gateway with simulator inside", **common,
                 **figures["gateway"]})
    print(rows[-1], flush=True)

    simulator, config = simulator_process(directory / "idle-sim")
    try:
        gateway, _ = serve(data, directory, config=config, env=env)
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
    return rows


def database_size(data: Path) -> float:
    return round(sum(path.stat().st_size for path in data.glob("modemgw.db*")) / 2**20, 1)


# --- under load: draining, and reading a large history ---------------------------------------------------------

class Sampler(threading.Thread):
    """VmRSS of a process every `every` seconds, with the time it was read, until stopped."""

    def __init__(self, pid: int, every: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, float]] = []  # (time.monotonic(), MB)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self.samples.append((time.monotonic(), memory(self.pid)["rss_mb"]))
            except (OSError, KeyError):  # the process has ended
                return
            self.done.wait(self.every)

    def stop(self) -> None:
        self.done.set()
        self.join()

    def peak(self, since: float = 0.0) -> float:
        return max((mb for at, mb in self.samples if at >= since), default=0.0)

    def median(self, since: float, until: float) -> float:
        values = [mb for at, mb in self.samples if since <= at <= until]
        return statistics.median(values) if values else 0.0


class Client:
    """HTTP to the gateway with the standard library: an API key, and a web UI session (cookie and CSRF token)."""

    def __init__(self, url: str, key: str):
        self.url, self.key = url, key
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def call(self, path: str, body: dict | None = None, form: dict | None = None, api: bool = True) -> bytes:
        headers = {"Authorization": f"Bearer {self.key}"} if api else {}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        elif form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        request = urllib.request.Request(self.url + path.lstrip("/"), data=data, headers=headers)
        try:
            with self.opener.open(request, timeout=120) as answer:
                return answer.read()
        except urllib.error.HTTPError as error:
            raise SystemExit(f"{path}: HTTP {error.code}: {error.read()[:500]!r}") from None

    def log_in(self, username: str, password: str) -> None:
        page = self.call("ui/login", api=False).decode()
        marker = 'name="csrf_token" value="'
        token = page[page.index(marker) + len(marker):].split('"', 1)[0]
        self.call("ui/login", form={"username": username, "password": password, "csrf_token": token}, api=False)
        json.loads(self.call("ui/dashboard.json", api=False))  # without a session: the login page, or 401

    def counts(self) -> dict[str, float]:
        """Messages by status, from /metrics (which the gateway answers without touching the queue's path)."""
        counts = {}
        for line in self.call("metrics", api=False).decode().splitlines():
            if line.startswith("modemgw_messages{"):
                status = line.split('status="', 1)[1].split('"', 1)[0]
                counts[status] = float(line.rsplit(" ", 1)[1])
        return counts


def prepare(data: Path, ui_user: bool = False) -> str:
    """An API key (send, read) in the database at `data`, and the web UI user `footprint`; returns the key."""
    store = Store(data / "modemgw.db")
    try:
        key, _ = auth.create_key(store, "footprint", ("send", "read"))
        if ui_user:
            users.add_user(store, "footprint", PASSWORD, "admin")
    finally:
        store.close()
    return key


def simulator_process(directory: Path, extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, Path]:
    """`modemgw sim --count 8` as a process of its own (started and ready), and a config file for its devices,
    in `directory`."""
    directory.mkdir(exist_ok=True)
    links = directory / "dev"
    log = directory / "sim.log"
    simulator = spawn([sys.executable, "-m", "modemgw", "sim", "--count", str(MODEMS), "--link-dir", str(links),
                       *extra], log)
    wait_for_line(simulator, "simulated modem(s) ready", log)
    config = directory / "modemgw.toml"
    config.write_text("".join(f'[[modem]]\ndevice = "{links / f"sim{n}"}"\nlabel = "sim{n}"\n\n'
                              for n in range(MODEMS)))
    return simulator, config


def drain(directory: Path, count: int, settle: float, env: dict[str, str]) -> list[dict]:
    """RSS while `count` messages are submitted over the API (batches of SUBMIT_BATCH) and drained through 8
    instant simulated modems, status reports included (1 s after each send), sampled every 50 ms: the peak, the
    steady level (median of the second half of the drain) and the level once all is delivered. The simulator
    runs as a process of its own (it keeps every command and PDU it was sent, for tests: that is not the
    gateway's memory)."""
    data = directory / "drain"
    data.mkdir()
    key = prepare(data)
    simulator, config = simulator_process(directory / "drain-sim", ("--send-latency", "0", "--report-delay", "1"))
    try:
        gateway, url = serve(data, directory, config=config, env=env)
        try:
            client = Client(url, key)
            time.sleep(settle)
            before = memory(gateway.pid)
            sampler = Sampler(gateway.pid)
            sampler.start()
            started = time.monotonic()
            for first in range(0, count, SUBMIT_BATCH):
                numbers = [f"+4477009{10000 + n % 80000:05d}" for n in range(first, min(count, first + SUBMIT_BATCH))]
                client.call("api/v1/messages", {"to": numbers, "body": "Footprint: draining the queue"})
            submitted = time.monotonic()
            deadline = started + 60 + count / 20  # far beyond the ~300 msg/s of 8 instant modems
            while (counts := client.counts()).get("delivered", 0) < count:
                if time.monotonic() > deadline:
                    raise SystemExit(f"not drained in {deadline - started:.0f} s: {counts}")
                time.sleep(0.25)
            drained = time.monotonic()
            time.sleep(settle)
            after = memory(gateway.pid)
            sampler.stop()
        finally:
            terminate(gateway)
        simulator_after = memory(simulator.pid)
    finally:
        terminate(simulator)
    middle = started + (drained - started) / 2
    common = {"setup": f"drain {count} (instant modems, reports)", "modems": MODEMS, "messages": count}
    return [{**common, "process": "gateway alone", "database_mb": database_size(data),
             "idle_rss_mb": before["rss_mb"], "rss_mb": after["rss_mb"], "pss_mb": after["pss_mb"],
             "peak_rss_mb": round(max(sampler.peak(started), after["peak_rss_mb"]), 1),
             "steady_rss_mb": round(sampler.median(middle, drained), 1), "threads": after["threads"],
             "submit_s": round(submitted - started, 1), "drain_s": round(drained - started, 1),
             "msg_per_s": round(count / (drained - started), 1), "samples": len(sampler.samples)},
            {**common, "process": "simulator (modemgw sim)", **simulator_after}]


def read_paths(days_ago: float) -> list[tuple[str, str, bool]]:
    """(name, path, api) of the read paths people use on a large history: the API's message list (pages and
    filters) and statistics, the web UI's dashboard, messages list and statistics."""
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - days_ago * 86400))
    day = time.strftime("%Y-%m-%d", time.localtime(time.time() - days_ago * 86400))
    return [
        ("api messages, first page of 500", "api/v1/messages?limit=500", True),
        ("api messages, status=delivered", "api/v1/messages?status=delivered&limit=500", True),
        ("api messages, until", f"api/v1/messages?until={since}&limit=500", True),
        ("api messages, to", "api/v1/messages?to=%2B447700912345&limit=100", True),
        ("api stats, day", "api/v1/stats?period=day", True),
        ("api stats, month since", f"api/v1/stats?period=month&since={day}", True),
        ("ui dashboard", "", False),
        ("ui dashboard.json", "ui/dashboard.json", False),
        ("ui messages", "ui/messages", False),
        ("ui messages, delivered", "ui/messages?status=delivered", False),
        ("ui stats", "ui/stats", False),
        ("ui stats, week since", f"ui/stats?period=week&since={day}", False),
    ]


def stored(directory: Path, count: int, settle: float, repeat: int, env: dict[str, str]) -> list[dict]:
    """RSS with `count` stored messages: idle, after logging in to the web UI (its password hash briefly takes
    32 MiB, which VmHWM keeps), then after each read path (`read_paths`, each `repeat` times, the API's message
    list also paged through 20 pages by cursor). The simulated modems are a process of their own, instant: the
    history's newest messages (queued, or sending when it "stopped") go out before the gateway is measured."""
    data = directory / "stored"
    data.mkdir()
    seconds = seed_history(data / "modemgw.db", count)
    key = prepare(data, ui_user=True)
    database_mb = database_size(data)
    print(f"stored {count} messages in {seconds:.1f} s ({database_mb} MB)", flush=True)
    common = {"process": "gateway alone", "modems": MODEMS, "messages": count, "database_mb": database_mb,
              "seed_s": round(seconds, 1)}
    rows = []
    simulator, config = simulator_process(directory / "stored-sim", ("--send-latency", "0"))
    try:
        gateway, url = serve(data, directory, config=config, env=env)
        try:
            client = Client(url, key)
            deadline = time.monotonic() + 120
            while any(client.counts().get(status, 0) for status in ("queued", "sending")):
                if time.monotonic() > deadline:
                    raise SystemExit(f"the seeded queue was not sent in 120 s: {client.counts()}")
                time.sleep(0.5)
            time.sleep(settle)
            rows.append({"setup": f"stored {count}: idle", **common, **memory(gateway.pid)})
            started = time.perf_counter()
            client.log_in("footprint", PASSWORD)
            rows.append({"setup": f"stored {count}: ui login", **common, **memory(gateway.pid),
                         "ms": round(1000 * (time.perf_counter() - started), 1)})
            steps = read_paths(15)
            steps.insert(1, ("api messages, 20 pages by cursor", "", True))
            for name, path, api in steps:
                times = []
                for _ in range(repeat):
                    started = time.perf_counter()
                    if name.startswith("api messages, 20 pages"):
                        cursor = None
                        for _ in range(20):
                            page = json.loads(client.call("api/v1/messages?limit=500" +
                                                          (f"&cursor={cursor}" if cursor else "")))
                            cursor = page["next_cursor"]
                    else:
                        client.call(path, api=api)
                    times.append(1000 * (time.perf_counter() - started))
                rows.append({"setup": f"stored {count}: {name}", **common, **memory(gateway.pid),
                             "ms": round(statistics.median(times), 1)})
                print(rows[-1], flush=True)
        finally:
            terminate(gateway)
    finally:
        terminate(simulator)
    return rows


def main() -> None:
    parser = options(__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=None, help="stored messages when idle (default 100000)")
    parser.add_argument("--idle", type=float, default=None, help="seconds of idleness measured (default 60)")
    parser.add_argument("--drain", type=int, default=None, metavar="N",
                        help="messages submitted and drained while RSS is sampled (default 50000; 0: skip)")
    parser.add_argument("--stored", type=int, default=None, metavar="N",
                        help="stored messages under the read paths (default 1000000; 0: skip)")
    parser.add_argument("--only", default="idle,drain,stored", help="which runs: idle, drain, stored (comma-separated)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for the gateway (e.g. MALLOC_ARENA_MAX=2); repeatable")
    args = parser.parse_args()
    messages = args.messages or (10_000 if args.quick else 100_000)
    drain_count = (500 if args.quick else 50_000) if args.drain is None else args.drain
    stored_count = (5_000 if args.quick else 1_000_000) if args.stored is None else args.stored
    idle = args.idle or (2.0 if args.quick else 60.0)
    settle = 0.5 if args.quick else 5.0
    env = dict(item.split("=", 1) for item in args.env)
    runs = {name.strip() for name in args.only.split(",")}
    directory = temporary_directory("modemgw-footprint-")
    rows = []
    if "idle" in runs:
        rows += idle_setups(directory, messages, settle, idle, env)
    if "drain" in runs and drain_count:
        rows += drain(directory, drain_count, settle, env)
        print(rows[-2], flush=True)
    if "stored" in runs and stored_count:
        rows += stored(directory, stored_count, settle, 1 if args.quick else 3, env)
    report("footprint", rows, ["setup", "process", "messages", "rss_mb", "pss_mb", "peak_rss_mb", "steady_rss_mb",
                               "threads", "idle_cpu_pct", "ms"], args.out, quick=args.quick, env=env)


if __name__ == "__main__":
    main()
