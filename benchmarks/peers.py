"""modemgw, gammu-smsd and smstools3's smsd side by side, on the same simulated modems (0.5 s per AT+CMGS).

    python benchmarks/peers.py [--quick] [--per-modem K] [--only GATEWAY[:CONFIG],...] [--modems 1,2] [--out DIR]

Every gateway runs as its own process against simulated modems that this script runs (modemgw.sim's
Simulator, behind real ptys), so all three meet the same modems and the same clock: a hook on each simulated
modem notes when an `AT+CMGS=` arrives. For each gateway and configuration (the peers' default and tuned
configurations are in benchmarks/peers/, with comments on what was tuned and why; modemgw has one, its
default), and for 1 and 2 modems:

1. start the gateway; one warm-up message per modem proves every modem is up;
2. hand it K messages per modem at once (modemgw: one `POST /api/v1/messages`; gammu-smsd: files in its
   outbox, split evenly between its processes, one process per modem; smsd: files in its outgoing folder),
   and wait until the simulated modems have transmitted every one (distinct recipients, so a resend does not
   count twice);
3. utilisation = messages / (last AT+CMGS + 0.5 s - first AT+CMGS) / (N / 0.5 s): how busy the modems are
   kept while there is work. The time to pick the work up is measured apart, as idle latency:
4. with one modem: idle latency, one message at a time at a random moment after the gateway went idle (spread
   over its polling period, so the phase of its poll is not always the same), from the hand-over (the HTTP
   request written; the file renamed into the spool) to its AT+CMGS at the modem.

A peer that is not installed is skipped with a message saying so (Debian: gammu-smsd, smstools). Every
process started is stopped on exit, also on Ctrl-C; everything lives in temporary directories.
"""

from __future__ import annotations

import atexit
import http.client
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from string import Template

from common import options, report, temporary_directory

from modemgw import auth
from modemgw.sim import Simulator
from modemgw.store import Store

SEND_LATENCY = 0.5
CONFIGS = Path(__file__).parent / "peers"
TEXT = "Your code is 123456"

# --- processes: every one started is stopped, also on Ctrl-C and SIGTERM -----------------------------------

_processes: list[subprocess.Popen] = []


def spawn(args: list[str], **options) -> subprocess.Popen:
    process = subprocess.Popen(args, start_new_session=True, stdin=subprocess.DEVNULL, **options)
    _processes.append(process)
    return process


def terminate(process: subprocess.Popen) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if process in _processes:
        _processes.remove(process)


def _terminate_all() -> None:
    for process in reversed(list(_processes)):
        terminate(process)


atexit.register(_terminate_all)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds the finally blocks, then atexit


# --- the simulated modems, with a clock on every AT+CMGS ------------------------------------------------------

class Modems:
    """`count` simulated modems behind ptys in `directory`. Status reports (for messages that ask) come
    `report_delay` seconds after a send: far away by default, so that they do not disturb a timing."""

    def __init__(self, count: int, directory: Path, send_latency: float = SEND_LATENCY, report_delay: float = 3600.0):
        self.send_latency = send_latency
        self.sim = Simulator(count, send_latency=send_latency, report_delay=report_delay, link_dir=directory,
                             control=False).start()
        self.cmgs: list[float] = []
        self._changed = threading.Condition()
        for device in self.sim.devices:
            self.sim.call(lambda device=device: setattr(device.modem, "on_command", self._command))

    def _command(self, line: str) -> None:  # on the simulator's thread, as the modem reads the line
        if line.startswith("AT+CMGS="):
            at = time.monotonic()
            with self._changed:
                self.cmgs.append(at)
                self._changed.notify_all()

    @property
    def devices(self) -> list[str]:
        return [device.device for device in self.sim.devices]

    def wait_cmgs(self, count: int, timeout: float) -> float:
        """The time of the count-th AT+CMGS since the start."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.cmgs) >= count, timeout):
                raise TimeoutError(f"no AT+CMGS in {timeout:g} s")
            return self.cmgs[count - 1]

    def received(self) -> set[str]:
        return {record.recipient for index in range(len(self.sim.devices)) for record in self.sim.sent(index)}

    def wait_received(self, recipients: list[str], timeout: float) -> None:
        """Until the modems have transmitted a message to every one of `recipients` (polled: a benchmark may)."""
        deadline = time.monotonic() + timeout
        wanted = set(recipients)
        while not wanted <= self.received():
            if time.monotonic() > deadline:
                missing = len(wanted - self.received())
                raise TimeoutError(f"{missing} of {len(wanted)} messages not transmitted in {timeout:g} s")
            time.sleep(0.05)
        time.sleep(self.send_latency + 0.1)  # the last one's +CMGS: the gateway is idle again

    def stop(self) -> None:
        self.sim.stop()


_serial = [0]


def recipients(count: int) -> list[str]:
    """Fresh numbers that are not simulated SIMs (those would receive the message and answer with +CMTI)."""
    start = _serial[0]
    _serial[0] += count
    return [f"+4477009{10000 + n:05d}" for n in range(start, start + count)]


# --- the gateways --------------------------------------------------------------------------------------------

class Modemgw:
    """`modemgw serve` as a process. `data`: its data directory (default `directory`/data; kept, with its key, when
    started again); `report`: its messages ask for status reports."""

    name, program = "modemgw", None

    def __init__(self, config: str, directory: Path, data: Path | None = None, report: bool = False):
        self.config, self.directory = config, directory
        self.data, self.report = data or directory / "data", report
        self.process: subprocess.Popen | None = None
        self.key: str | None = None

    def start(self, devices: list[str]) -> None:
        data = self.data
        data.mkdir(exist_ok=True)
        if self.key is None:
            store = Store(data / "modemgw.db")
            self.key, _ = auth.create_key(store, "peers-benchmark", ("send", "read", "admin"))
            store.close()
        config = self.directory / "modemgw.toml"
        config.write_text('[gateway]\ndefault_region = "GB"\n\n[http]\nlisten = "127.0.0.1:0"\n' + "".join(
            f'\n[[modem]]\ndevice = "{device}"\nlabel = "sim{n}"\n' for n, device in enumerate(devices)))
        self.process = spawn([sys.executable, "-m", "modemgw", "serve", "--config", str(config), "--data", str(data)],
                             stdout=subprocess.PIPE, stderr=open(self.directory / "modemgw.log", "a"), text=True,
                             env={**os.environ, "MODEMGW_LOG": "WARNING"})
        for line in self.process.stdout:  # the banner comes once every modem is online
            if line.startswith("modemgw is running: "):
                self.url = line.split()[3]
                break
        else:
            raise RuntimeError(f"modemgw did not start: {(self.directory / 'modemgw.log').read_text()[-2000:]}")
        threading.Thread(target=self.process.stdout.read, daemon=True).start()
        host, _, port = self.url.removeprefix("http://").strip("/").rpartition(":")
        self.http = http.client.HTTPConnection(host, int(port), timeout=30)  # kept alive, as an application's

    def submit(self, numbers: list[str]) -> float:
        started = time.monotonic()
        self.request("POST", "/api/v1/messages", {"to": numbers, "body": TEXT, "request_report": self.report}, 202)
        return started

    def request(self, method: str, path: str, body: dict | None = None, expect: int = 200) -> dict:
        """One API call with the benchmark's key; its JSON answer (RuntimeError when the status is not `expect`)."""
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        self.http.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = self.http.getresponse()
        answer = response.read()
        if response.status != expect:
            raise RuntimeError(f"{method} {path} answered {response.status}: {answer[:500]!r}")
        return json.loads(answer) if answer else {}

    def stop(self) -> None:
        if self.process is not None:
            if hasattr(self, "http"):
                self.http.close()
            terminate(self.process)


class GammuSmsd:
    """One gammu-smsd per modem (it drives one), each with its own files-backend spool. Status reports are
    asked for in its configuration (`DeliveryReport`), not per message: `report` is accepted for symmetry."""

    name, program = "gammu-smsd", "gammu-smsd"

    def __init__(self, config: str, directory: Path, report: bool = False):
        self.config, self.directory, self.report = config, directory, report
        self.spools: list[Path] = []
        self.processes: list[subprocess.Popen] = []
        self._next = 0

    def start(self, devices: list[str]) -> None:
        template = Template((CONFIGS / f"gammu-smsd.{self.config}.conf").read_text())
        for n, device in enumerate(devices):
            spool = self.directory / f"gammu{n}"  # a fresh runtime directory per process and run
            for folder in ("inbox", "outbox", "sent", "error", "staging"):
                (spool / folder).mkdir(parents=True)
            config = spool / "smsdrc"
            config.write_text(template.substitute(device=device, spool=spool))
            self.spools.append(spool)
            self.processes.append(spawn([shutil.which("gammu-smsd"), "-c", str(config)],
                                        stdout=subprocess.DEVNULL, stderr=open(spool / "stderr.log", "w")))

    def submit(self, numbers: list[str]) -> float:
        staged = []
        for number in numbers:  # split evenly between the processes
            spool = self.spools[self._next % len(self.spools)]
            # OUT<priority><date>_<time>_<serial>_<number>_<any>
            name = f"OUTA20260101_000000_00_{number}_{self._next}.txt"
            self._next += 1
            (spool / "staging" / name).write_text(TEXT)
            staged.append((spool / "staging" / name, spool / "outbox" / name))
        started = time.monotonic()
        for source, target in staged:
            os.rename(source, target)
        return started

    def stop(self) -> None:
        for process in self.processes:
            terminate(process)


class Smsd:
    """One smsd for all the modems (devices = GSM0, GSM1, ...), one spool. `report`: every message file asks for
    a status report (`Report: yes`)."""

    name, program = "smsd", "smsd"

    def __init__(self, config: str, directory: Path, report: bool = False):
        self.config, self.directory, self.report = config, directory, report
        self.process: subprocess.Popen | None = None
        self._next = 0

    def start(self, devices: list[str]) -> None:
        spool = self.spool = self.directory / "smsd"
        for folder in ("outgoing", "checked", "failed", "incoming", "sent", "staging", "report"):
            (spool / folder).mkdir(parents=True)
        names = [f"GSM{n}" for n in range(len(devices))]
        config = spool / "smsd.conf"
        config.write_text(f"devices = {', '.join(names)}\n"
                          + Template((CONFIGS / f"smsd.{self.config}.conf").read_text()).substitute(spool=spool)
                          + "".join(f"\n[{name}]\ndevice = {device}\n"
                                    for name, device in zip(names, devices, strict=False)))
        self.process = spawn([shutil.which("smsd"), "-c", str(config), "-t"], stdout=subprocess.DEVNULL,
                             stderr=open(spool / "stderr.log", "w"))

    def submit(self, numbers: list[str]) -> float:
        staged = []
        for number in numbers:
            name = f"bench{self._next}"
            self._next += 1
            header = "Report: yes\n" if self.report else ""
            (self.spool / "staging" / name).write_text(f"To: {number.lstrip('+')}\n{header}\n{TEXT}\n")
            staged.append((self.spool / "staging" / name, self.spool / "outgoing" / name))
        started = time.monotonic()
        for source, target in staged:
            os.rename(source, target)
        return started

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process)


# How long each configuration may take to notice new work: idle-latency samples are spread over it.
POLL_PERIOD = {("modemgw", "default"): 0.2, ("gammu-smsd", "default"): 30.0, ("gammu-smsd", "tuned"): 1.0,
               ("smsd", "default"): 10.0, ("smsd", "tuned"): 1.0}


def run(kind, config: str, modems: int, per_modem: int, samples: int) -> dict:
    directory = temporary_directory(f"modemgw-peers-{kind.name}-")
    sim = Modems(modems, directory / "dev")
    gateway = kind(config, directory)
    period = POLL_PERIOD[(kind.name, config)]
    started = time.monotonic()
    try:
        gateway.start(sim.devices)
        warm_up = recipients(modems)
        gateway.submit(warm_up)
        sim.wait_received(warm_up, 120 + 2 * period)
        batch = recipients(modems * per_modem)
        mark = len(sim.cmgs)
        handed = gateway.submit(batch)
        sim.wait_received(batch, 60 + 4 * per_modem + period)
        times = sim.cmgs[mark:]
        busy = times[-1] + SEND_LATENCY - times[0]
        rate = len(batch) / busy
        row = {"gateway": kind.name, "config": config, "modems": modems, "messages": len(batch),
               "busy_s": round(busy, 2), "msg_per_s": round(rate, 2),
               "utilisation_pct": round(100 * rate / (modems / SEND_LATENCY), 1),
               "first_cmgs_s": round(times[0] - handed, 3)}
        latencies = []
        for _ in range(samples):
            time.sleep(random.uniform(0.1, 0.1 + period))
            number = recipients(1)
            mark = len(sim.cmgs)
            handed = gateway.submit(number)
            latencies.append((sim.wait_cmgs(mark + 1, 60 + 2 * period) - handed) * 1000)
            sim.wait_received(number, 30)
        if latencies:
            row.update(idle_samples=len(latencies), idle_p50_ms=round(statistics.median(latencies), 1),
                       idle_min_ms=round(min(latencies), 1), idle_max_ms=round(max(latencies), 1))
    finally:
        gateway.stop()
        sim.stop()
    row["run_s"] = round(time.monotonic() - started, 1)
    print(row, flush=True)
    return row


def comparison(rows: list[dict]) -> list[dict]:
    """One line per measure: modemgw, then each peer configuration, with the ratio modemgw / peer."""
    by_key = {(row["gateway"], row["config"], row["modems"]): row for row in rows}
    peers = [(gateway, config) for gateway, config in dict.fromkeys((row["gateway"], row["config"]) for row in rows)
             if gateway != "modemgw"]
    lines = []
    for measure, modems, field in (("utilisation % (1 modem)", 1, "utilisation_pct"),
                                   ("utilisation % (2 modems)", 2, "utilisation_pct"),
                                   ("idle latency p50 ms", 1, "idle_p50_ms"),
                                   ("idle latency max ms", 1, "idle_max_ms")):
        ours = by_key.get(("modemgw", "default", modems), {}).get(field)
        if ours is None:
            continue
        line = {"measure": measure, "modemgw": ours}
        for gateway, config in peers:
            theirs = by_key.get((gateway, config, modems), {}).get(field)
            if theirs is not None:
                line[f"{gateway} {config}"] = theirs
                line[f"ratio vs {gateway} {config}"] = round(ours / theirs, 4) if theirs else None
        lines.append(line)
    return lines


def main() -> None:
    parser = options(__doc__.splitlines()[0])
    parser.add_argument("--per-modem", type=int, default=None, help="messages per modem in the batch (default 20)")
    parser.add_argument("--only", default=None, help="e.g. modemgw,gammu-smsd:tuned (default: all)")
    parser.add_argument("--modems", default=None, help="modem counts, e.g. 1,2 (default; --quick: 1)")
    args = parser.parse_args()
    per_modem = args.per_modem or (3 if args.quick else 20)
    plan = [(Modemgw, "default"), (GammuSmsd, "default"), (GammuSmsd, "tuned"), (Smsd, "default"), (Smsd, "tuned")]
    if args.quick:  # modemgw and one peer, a few messages
        plan = [(Modemgw, "default"), (Smsd, "tuned")]
    if args.only:
        wanted = [item.strip() for item in args.only.split(",")]
        plan = [(kind, config) for kind, config in [(Modemgw, "default"), (GammuSmsd, "default"),
                                                    (GammuSmsd, "tuned"), (Smsd, "default"), (Smsd, "tuned")]
                if kind.name in wanted or f"{kind.name}:{config}" in wanted]
    counts = [int(n) for n in args.modems.split(",")] if args.modems else [1] if args.quick else [1, 2]
    skipped = []
    for kind in (GammuSmsd, Smsd):
        if shutil.which(kind.program) is None and any(item[0] is kind for item in plan):
            package = "gammu-smsd" if kind is GammuSmsd else "smstools"
            print(f"skipping {kind.name}: {kind.program} is not installed (Debian: apt-get install {package})")
            skipped.append({"gateway": kind.name, "reason": f"{kind.program} not installed (package {package})"})
            plan = [item for item in plan if item[0] is not kind]
    rows = []
    for kind, config in plan:
        for modems in counts:
            samples = 0
            if modems == 1:
                samples = 2 if args.quick else (4 if POLL_PERIOD[(kind.name, config)] >= 30 else
                                                8 if POLL_PERIOD[(kind.name, config)] >= 10 else
                                                30 if kind is Modemgw else 12)
            try:
                rows.append(run(kind, config, modems, per_modem, samples))
            except (TimeoutError, RuntimeError, OSError) as error:
                print(f"{kind.name} {config} with {modems} modem(s) failed: {error}", flush=True)
                rows.append({"gateway": kind.name, "config": config, "modems": modems, "error": str(error)})
    print()
    report("peers", rows, ["gateway", "config", "modems", "messages", "msg_per_s", "utilisation_pct",
                           "first_cmgs_s", "idle_samples", "idle_p50_ms", "idle_min_ms", "idle_max_ms", "run_s"],
           args.out, quick=args.quick, send_latency_s=SEND_LATENCY, skipped=skipped,
           comparison=comparison(rows))
    print()
    lines = comparison(rows)
    columns = list(dict.fromkeys(key for line in lines for key in line))
    widths = [max(len(column), *(len(str(line.get(column, "-"))) for line in lines)) for column in columns]
    print("  ".join(column.ljust(width) for column, width in zip(columns, widths, strict=False)))
    for line in lines:
        print("  ".join(str(line.get(column, "-")).ljust(width)
                        for column, width in zip(columns, widths, strict=False)))
    if any("error" in row for row in rows):
        raise SystemExit("some runs failed (see 'error' in the rows)")


if __name__ == "__main__":
    main()
