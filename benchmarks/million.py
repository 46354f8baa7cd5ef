"""A million messages: every list, filter, statistics and dashboard query a user can trigger, timed over a database
holding a year of traffic.

    python benchmarks/million.py [--quick] [--messages N] [--db PATH] [--runs R] [--no-serve] [--out DIR]

The database is seeded by `modemgw.store.seed.seed_messages` (messages with their parts and events, inbound
messages, webhook deliveries, audit entries and contacts, over 365 days and 4 SIMs; see that module for the
proportions). `--db PATH` keeps the seeded file: a later run with the same PATH reuses it (seeding a million takes
a minute or two), and seeds it only when it does not exist yet.

Each query goes through the real code: the API's routes and the web UI's pages through Flask's test client (with
an API key, and a logged-in admin's session), over a `Daemon` with no modems, as a user would trigger them. Each
runs R times (default 30) after one warm-up (5 times only when the warm-up took over a second: p99 is then the
max); the table shows p50 and p99 (nearest rank) in milliseconds. Target
(issue #19): every query <= 20 ms p99.

Then, unless `--no-serve`, `modemgw serve` runs as its own process over the same database, the API and pages are
asked for again over HTTP, and its RSS and peak RSS (VmHWM) are read: the footprint with a million stored.
"""

from __future__ import annotations

import datetime as dt
import http.cookiejar
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from common import options, percentiles, report, temporary_directory, terminate, track

from modemgw import auth, memory, users
from modemgw.store import Store
from modemgw.store.seed import seed_messages

PASSWORD = "million benchmark"  # the web UI admin's, in the benchmark's database
TARGET_MS = 20.0
SLOW_MS, SLOW_RUNS = 1000.0, 5  # a query whose warm-up took over a second runs 5 times only


def seed(path: Path, messages: int) -> dict:
    """Seed `path` with `messages` messages (printing progress); what was written."""
    store = Store(path)
    try:
        return seed_messages(store, messages, progress=lambda done, total: print(
            f"  seeded {done:,} of {total:,} messages", flush=True) if done % 200_000 == 0 or done == total else None)
    finally:
        store.close()


def daemon_over(path: Path):
    """A Daemon (no modems, no HTTP server) whose data directory holds `path` (as a symbolic link)."""
    from modemgw import config as configuration
    from modemgw.daemon import Daemon

    data = temporary_directory("modemgw-million-")
    (data / "modemgw.db").symlink_to(path.resolve())
    config = configuration.load(None, data)
    config.listen = "127.0.0.1:0"
    config.gateway.retention_days = 100_000  # the seeded history must stay as it is
    return Daemon(config, simulate=0, http=False).start(), data


def credentials(store: Store) -> str:
    """An API key that may read and administer, and a web UI admin "bench" (created once per database)."""
    if not any(user["username"] == "bench" for user in users.list_users(store)):
        users.add_user(store, "bench", PASSWORD, "admin")
    return auth.create_key(store, "million benchmark", ("send", "read", "admin"))[0]


def log_in(client) -> None:
    page = client.get("/ui/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token, "no CSRF field on the login page"
    answer = client.post("/ui/login", data={"username": "bench", "password": PASSWORD, "csrf_token": token.group(1)})
    assert answer.status_code == 302 and "/ui/login" not in answer.headers["Location"], answer.get_data(as_text=True)


def facts(store: Store) -> dict:
    """What the queries ask about: ids, a busy recipient, a client_ref, times, a conversation's number."""
    one = store.query
    newest, oldest = one("SELECT MAX(id), MIN(id) FROM messages")[0]
    middle = (newest + oldest) // 2
    recipient = one("SELECT recipient FROM messages WHERE id = ?", (middle,))[0][0]
    client_ref = one("SELECT client_ref FROM messages WHERE client_ref IS NOT NULL AND id <= ? ORDER BY id DESC "
                     "LIMIT 1", (middle,))[0][0]
    sender, sim = one("SELECT sender, modem_id FROM inbox ORDER BY id DESC LIMIT 1")[0]
    webhook = one("SELECT MIN(id) FROM webhooks")[0][0]
    word = one("SELECT name FROM contacts ORDER BY id LIMIT 1 OFFSET 100")[0][0].split()[1]
    return {"newest": newest, "middle": middle, "deep": oldest + (newest - oldest) // 10, "recipient": recipient,
            "client_ref": client_ref, "sender": sender, "sim": sim, "webhook": webhook, "word": word}


def queries(f: dict) -> list[tuple[str, str, str]]:
    """(name, kind, path): kind "api" (the bearer key), "post" (a submit with the key, answered 202), "ui" (the
    session), or "csv" (the first chunk only)."""
    today = dt.date.today()
    iso = lambda days: (dt.datetime.now(dt.UTC) - dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    day = lambda days: (today - dt.timedelta(days=days)).isoformat()
    to = urllib.parse.quote(f["recipient"])
    sender = urllib.parse.quote(f["sender"])
    return [
        # a one-time password submitted (202; no modem takes it): its lookups must not grow with the history
        ("API submit one message (POST)", "post", "/api/v1/messages"),
        ("API messages, newest page", "api", "/api/v1/messages"),
        ("API messages, status=delivered", "api", "/api/v1/messages?status=delivered"),
        ("API messages, status=failed", "api", "/api/v1/messages?status=failed"),
        ("API messages, status=queued", "api", "/api/v1/messages?status=queued"),
        ("API messages, status=canceled, deep cursor", "api", f"/api/v1/messages?status=canceled&cursor={f['deep']}"),
        ("API messages, to=<number>", "api", f"/api/v1/messages?to={to}"),
        ("API messages, modem_id=2", "api", "/api/v1/messages?modem_id=2"),
        ("API messages, modem_id=2, deep cursor", "api", f"/api/v1/messages?modem_id=2&cursor={f['deep']}"),
        ("API messages, client_ref=<ref>", "api", f"/api/v1/messages?client_ref={f['client_ref']}"),
        ("API messages, since=30 days ago", "api", f"/api/v1/messages?since={iso(30)}"),
        ("API messages, until=180 days ago", "api", f"/api/v1/messages?until={iso(180)}"),
        ("API messages, one week 200 days ago", "api", f"/api/v1/messages?since={iso(207)}&until={iso(200)}"),
        ("API messages, until=180 days ago, status=failed", "api",
         f"/api/v1/messages?until={iso(180)}&status=failed"),
        ("API messages, cursor in the middle", "api", f"/api/v1/messages?cursor={f['middle']}"),
        ("API messages, cursor deep (10 %)", "api", f"/api/v1/messages?cursor={f['deep']}"),
        ("API messages, limit=500", "api", "/api/v1/messages?limit=500"),
        ("API messages, q=<text> (search)", "api", "/api/v1/messages?q=dispatched"),
        # filters no index serves, matching nothing: a page reads one window of ids (Gateway.message_page)
        ("API messages, q=<text found nowhere>", "api", "/api/v1/messages?q=zebra%20crossing"),
        ("API messages, api_key_id=<a key that sent none>", "api", "/api/v1/messages?api_key_id=999999"),
        ("API message detail", "api", f"/api/v1/messages/{f['middle']}"),
        ("API inbox", "api", "/api/v1/inbox"),
        ("API inbox, from=<number>", "api", f"/api/v1/inbox?from={sender}"),
        ("API stats, by day, 30 days", "api", "/api/v1/stats?period=day"),
        ("API stats, by day, 30 days, one SIM", "api", "/api/v1/stats?period=day&modem_id=1"),
        ("API stats, by week, 12 weeks", "api", "/api/v1/stats?period=week"),
        ("API stats, by month, 1 year", "api", "/api/v1/stats?period=month"),
        ("API stats, by day, 1 year", "api", f"/api/v1/stats?period=day&since={day(364)}"),
        ("API stats, by month, 1 year, one SIM", "api", "/api/v1/stats?period=month&modem_id=2"),
        ("API scheduled batches", "api", "/api/v1/scheduled"),
        ("API audit log", "api", "/api/v1/audit"),
        ("API audit log, action=login.", "api", "/api/v1/audit?action=login."),
        ("API webhook deliveries", "api", f"/api/v1/webhooks/{f['webhook']}/deliveries"),
        ("API webhook deliveries, status=dead", "api", f"/api/v1/webhooks/{f['webhook']}/deliveries?status=dead"),
        ("API contacts, search", "api", f"/api/v1/contacts?q={urllib.parse.quote(f['word'])}"),
        ("UI dashboard", "ui", "/"),
        ("UI dashboard.json (its poll)", "ui", "/ui/dashboard.json"),
        ("UI messages", "ui", "/ui/messages"),
        ("UI messages, status=failed", "ui", "/ui/messages?status=failed"),
        ("UI messages, SIM 3", "ui", "/ui/messages?modem=3"),
        ("UI messages, from/to one week", "ui", f"/ui/messages?from={day(207)}&to={day(200)}"),
        ("UI messages, to a day 180 days ago", "ui", f"/ui/messages?to={day(180)}"),
        ("UI messages, client_ref", "ui", f"/ui/messages?client_ref={f['client_ref']}"),
        ("UI messages, sender key:1", "ui", "/ui/messages?sender=key:1"),
        ("UI messages, q=<text> (search)", "ui", "/ui/messages?q=dispatched"),
        ("UI messages, q=<text found nowhere>", "ui", "/ui/messages?q=zebra%20crossing"),
        ("UI messages, older page (deep)", "ui", f"/ui/messages?before={f['deep']}"),
        ("UI message", "ui", f"/ui/messages/{f['middle']}"),
        ("UI messages CSV export, first chunk", "csv", "/ui/messages/export.csv"),
        ("UI scheduled", "ui", "/ui/scheduled"),
        ("UI inbox (conversations)", "ui", "/ui/inbox"),
        ("UI one conversation", "ui", f"/ui/inbox/{sender}?sim={f['sim']}"),
        ("UI statistics (30 days)", "ui", "/ui/stats"),
        ("UI statistics, by month", "ui", "/ui/stats?period=month"),
        ("UI audit log", "ui", "/ui/audit"),
        ("UI webhook deliveries", "ui", f"/ui/webhooks/{f['webhook']}"),
        ("UI contacts, search", "ui", f"/ui/contacts?q={urllib.parse.quote(f['word'])}"),
    ]


def statistics_roll_up(gateway) -> dict:
    """The scheduler's statistics roll-up (hourly, first a minute after the start), run now so the queries find
    the medians kept, as they would a minute after `modemgw serve` starts: how long it took and, when it had
    periods to keep (a new database), how long a year's report by day took before it (`gateway.statistics`)."""
    since = dt.date.today() - dt.timedelta(days=364)
    began = time.perf_counter()
    gateway.statistics("day", since=since)
    before_ms = (time.perf_counter() - began) * 1000
    began = time.perf_counter()
    kept = gateway.roll_up_statistics()
    took_ms = (time.perf_counter() - began) * 1000
    result = {"periods_kept": kept, "ms": round(took_ms, 1),
              "year_by_day_before_ms": round(before_ms, 1) if kept else None}
    print(f"statistics roll-up: {kept} periods kept in {took_ms:.0f} ms"
          + (f"; a year's report by day took {before_ms:.0f} ms before it" if kept else ""), flush=True)
    return result


def run_once(client, key: str, kind: str, path: str) -> float:
    """Milliseconds for one request (the whole answer read; for "csv" its first chunk), checked for 200 (202 for
    "post")."""
    headers = {"Authorization": f"Bearer {key}"} if kind in ("api", "post") else {}
    started = time.perf_counter()
    if kind == "post":
        response = client.post(path, headers=headers, json={"to": "+447700900123", "body": "Your code is 123456"})
    else:
        response = client.get(path, headers=headers, buffered=kind != "csv")
    if kind == "csv":
        next(iter(response.response))
    else:
        response.get_data()
    took = (time.perf_counter() - started) * 1000
    response.close()
    if response.status_code != (202 if kind == "post" else 200):
        raise SystemExit(f"{kind} {path}: {response.status_code} {response.get_data(as_text=True)[:500]}")
    return took


def time_queries(app, key: str, f: dict, runs: int) -> list[dict]:
    client = app.test_client()
    log_in(client)
    rows = []
    for name, kind, path in queries(f):
        warm = run_once(client, key, kind, path)  # warm-up: its pages in SQLite's and the OS's caches
        count = runs if warm < SLOW_MS else min(runs, SLOW_RUNS)  # a query of seconds: fewer runs (p99 = max)
        figures = percentiles([run_once(client, key, kind, path) for _ in range(count)])
        rows.append({"query": name, "runs": count, **figures, "ok": "yes" if figures["p99_ms"] <= TARGET_MS else "NO"})
        print(f"  {name}: p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms", flush=True)
    return rows


# --- modemgw serve over the same database: its memory ---------------------------------------------------------

def serve_rss(data: Path, key: str, f: dict, rounds: int) -> dict:
    """`modemgw serve` on `data` (no modems): every query asked over HTTP `rounds` times, then its memory."""
    # one configured modem that is never plugged in: serve needs one, and no simulator shares the process
    config = data / "million.toml"
    config.write_text('[[modem]]\ndevice = "/nonexistent/ttyUSB-million"\nlabel = "absent"\n')
    args = [sys.executable, "-m", "modemgw", "serve", "--data", str(data), "--config", str(config), "--listen",
            "127.0.0.1:0"]
    log = data / "serve.log"
    process = subprocess.Popen(args, start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=open(log, "w"), text=True, env={**os.environ, "MODEMGW_LOG": "WARNING"})
    track(process)
    base = None
    deadline = time.monotonic() + 120
    while base is None and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise SystemExit(f"modemgw serve ended before it was running: {log.read_text()[-2000:]}")
        if "modemgw is running: " in line:
            base = line.split("modemgw is running: ", 1)[1].split()[0].rstrip("/")
    if base is None:
        raise SystemExit("modemgw serve did not start")
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{base}/ui/login", timeout=30).read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    opener.open(f"{base}/ui/login", data=urllib.parse.urlencode(
        {"username": "bench", "password": PASSWORD, "csrf_token": token}).encode(), timeout=60).read()
    for _ in range(rounds):
        for _name, kind, path in queries(f):
            if kind == "post":
                continue  # reads only: the footprint of the read paths
            request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {key}"}
                                             if kind == "api" else {})
            with opener.open(request, timeout=120) as answer:
                answer.read(1 << 16) if kind == "csv" else answer.read()
    status = dict(line.split(":", 1) for line in Path(f"/proc/{process.pid}/status").read_text().splitlines()
                  if ":" in line)
    figures = {"rss_mb": round(int(status["VmRSS"].split()[0]) / 1024, 1),
               "peak_rss_mb": round(int(status["VmHWM"].split()[0]) / 1024, 1), "rounds": rounds}
    terminate(process)
    return figures




def main() -> None:
    parser = options(__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=None, help="messages to seed (default 1,000,000; quick 20,000)")
    parser.add_argument("--db", type=Path, default=None,
                        help="the database file to seed, or to reuse when it exists (kept after the run)")
    parser.add_argument("--runs", type=int, default=None, help="runs of each query (default 30; quick 5)")
    parser.add_argument("--no-serve", action="store_true", help="skip the RSS of `modemgw serve`")
    args = parser.parse_args()
    messages = args.messages or (20_000 if args.quick else 1_000_000)
    runs = args.runs or (5 if args.quick else 30)

    path = args.db.resolve() if args.db else temporary_directory("modemgw-million-db-") / "modemgw.db"
    seeded = None
    if path.exists():
        print(f"reusing {path}", flush=True)
    else:
        print(f"seeding {messages:,} messages into {path}", flush=True)
        seeded = seed(path, messages)
        print(f"  {seeded}", flush=True)
    daemon, data = daemon_over(path)
    try:
        key = credentials(daemon.store)
        f = facts(daemon.store)
        stored = daemon.store.query("SELECT COUNT(*) FROM messages")[0][0]
        size_mb = round(sum(os.path.getsize(p) for p in (str(path), f"{path}-wal") if os.path.exists(p)) / 2**20, 1)
        print(f"{stored:,} messages stored, database {size_mb} MB; load average {os.getloadavg()}", flush=True)
        roll_up = statistics_roll_up(daemon.gateway)
        from modemgw.app import create_app

        app = create_app(daemon)
        app.config.update(TESTING=True)
        memory.settle()  # as `modemgw serve` does once started
        load_before = os.getloadavg()[0]
        rows = time_queries(app, key, f, runs)
        load_after = os.getloadavg()[0]
    finally:
        daemon.stop()
    serve = None if args.no_serve else serve_rss(data, key, f, rounds=1 if args.quick else 3)
    if serve:
        print(f"modemgw serve over {stored:,} messages: RSS {serve['rss_mb']} MB, peak {serve['peak_rss_mb']} MB")
    slow = [row["query"] for row in rows if row["ok"] == "NO"]
    report("million", rows, ["query", "p50_ms", "p99_ms", "max_ms", "ok"], args.out, quick=args.quick,
           messages=stored, database_mb=size_mb, seeded=seeded, target_p99_ms=TARGET_MS, runs=runs,
           load_average=[round(load_before, 2), round(load_after, 2)], serve=serve, over_target=slow,
           statistics_roll_up=roll_up)
    print(f"{len(rows) - len(slow)} of {len(rows)} queries within {TARGET_MS:g} ms p99"
          + (f"; over: {', '.join(slow)}" if slow else ""))


if __name__ == "__main__":
    main()
