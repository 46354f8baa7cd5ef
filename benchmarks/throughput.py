"""Pool utilisation with N simulated modems that take 0.5 s per AT+CMGS, and messages/s on one instant modem.

    python benchmarks/throughput.py [--quick] [--per-modem K] [--modems 1,2,4,8,16] [--pin | --sim-process]
                                    [--out DIR]

Each N (1, 2, 4, 8, 16) sends K messages per modem (default 40: 20 s of modem time at any N), all submitted at
once. Utilisation = achieved messages/s divided by what N modems can do (N / 0.5 s); target >= 99 %.

- `utilisation_pct`: the clock runs from the submit to the last `message.sent` event (the strict figure: it
  includes storing the batch, waking the workers and the last commit);
- `steady_pct`: from the first AT+CMGS to the last one + 0.5 s, as the simulated modems see them (how busy
  the modems are kept once there is work; the measure benchmarks/peers.py uses for all three gateways);
- `overhead_ms`: what each send costs beyond the modem's 0.5 s (by the strict clock).

By default the simulated modems run inside the gateway's process (as `modemgw demo` does). `--sim-process` runs
them in a process of their own, so the figures are the gateway's alone, and adds what each send costs it:

- `cpu_ms`: the gateway process's CPU time (user + system) per send;
- `vcsw`, `ivcsw`: its voluntary context switches (a thread blocking: roughly its thread wake-ups) and
  involuntary ones (a thread preempted) per send;
- `turnaround_ms` (mean, `turnaround_p90_ms`, `turnaround_max_ms`): from the modem writing its `+CMGS:` answer to
  the next `AT+CMGS=` it reads on the same port (the gateway's whole share of a send cycle);
- `prompt_ms`: from `AT+CMGS=` read to the PDU's Ctrl-Z read (both sides: the prompt, and the PDU written back);
- `late_ms`: how late the simulator answered after the PDU (its own timer slack; a real modem has none).

`--pin` is the "Pi core" run: as `--sim-process`, with the gateway pinned to one core and the simulator to
another (sched_setaffinity; needs 2 cores), so the gateway has one core, as on a Raspberry Pi where one core is
several times slower. Targets: 16 modems >= 99 % on one pinned core, >= 99.5 % on two.

Per-message overhead on an instant modem: target <= 5 ms (>= 200 msg/s).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import statistics
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

from common import options, report, start_daemon, temporary_directory


def simulated_modems(connection: Connection, count: int, latency: float, directory: str, core: int | None) -> None:
    """The simulator's process (`--sim-process`, `--pin`): `count` modems on ptys under `directory`; sends their
    paths, then on "stop" each modem's timeline of sends (perf_counter: the same clock as the gateway's process)."""
    if core is not None:
        os.sched_setaffinity(0, {core})  # before any thread starts: they inherit it
    from modemgw.sim import Simulator

    sim = Simulator(count, send_latency=latency, report_delay=3600.0, link_dir=Path(directory), control=False)
    timelines: dict[int, list[tuple[float, str]]] = {index: [] for index in range(count)}
    index_of = {id(device): index for index, device in enumerate(sim.devices)}
    write = sim._write

    def timed_write(device, data: bytes, generation: int) -> None:  # on the simulator's thread
        write(device, data, generation)
        if b"+CMGS:" in data:
            timelines[index_of[id(device)]].append((time.perf_counter(), "answer"))

    sim._write = timed_write  # type: ignore[method-assign]
    sim.start()
    for index, device in enumerate(sim.devices):
        def on_command(line: str, timeline=timelines[index]) -> None:
            if line.startswith("AT+CMGS="):
                timeline.append((time.perf_counter(), "cmgs"))

        receive = device.modem.receive

        def timed_receive(data: bytes, receive=receive, timeline=timelines[index]) -> None:
            if b"\x1a" in data:
                timeline.append((time.perf_counter(), "pdu"))
            receive(data)

        def hook(device=device, on_command=on_command, timed_receive=timed_receive) -> None:
            device.modem.on_command = on_command
            device.modem.receive = timed_receive
        sim.call(hook)
    connection.send([device.device for device in sim.devices])
    try:
        connection.recv()  # "stop"
        connection.send(sim.call(lambda: {index: list(timeline) for index, timeline in timelines.items()}))
    finally:
        sim.stop()


def send_cycles(timelines: dict[int, list[tuple[float, str]]], latency: float) -> dict:
    """Where a modem's time between two sends goes, per send (milliseconds), from each modem's timeline."""
    turnaround, prompt, late = [], [], []
    for timeline in timelines.values():
        cmgs_at = pdu_at = answer_at = None
        for at, kind in timeline:
            if kind == "cmgs":
                if answer_at is not None:
                    turnaround.append(1000 * (at - answer_at))
                cmgs_at, pdu_at, answer_at = at, None, None
            elif kind == "pdu" and cmgs_at is not None:
                pdu_at = at
                prompt.append(1000 * (at - cmgs_at))
            elif kind == "answer" and pdu_at is not None:
                answer_at = at
                late.append(1000 * (at - pdu_at - latency))
    if not turnaround:
        return {}
    ordered = sorted(turnaround)
    return {"turnaround_ms": round(statistics.fmean(turnaround), 2),
            "turnaround_p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 2),
            "turnaround_max_ms": round(ordered[-1], 2), "prompt_ms": round(statistics.fmean(prompt), 2),
            "late_ms": round(statistics.fmean(late), 2)}


def run(modems: int, latency: float, messages: int, separate: bool = False,
        cores: tuple[int, int] | None = None) -> dict:
    """One measure: `messages` to `modems` modems at `latency` s per send. `separate`: the simulator in its own
    process; `cores`: (the gateway's, the simulator's) core, pinned."""
    child = connection = None
    if separate:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no thread of ours comes along
        connection, theirs = context.Pipe()
        child = context.Process(target=simulated_modems, daemon=True, args=(
            theirs, modems, latency, str(temporary_directory("modemgw-bench-dev-")), cores and cores[1]))
        child.start()
        devices = connection.recv()
    try:
        if cores is not None:
            os.sched_setaffinity(0, {cores[0]})  # this thread, and every thread the daemon starts from now on
        daemon = gateway_on(devices) if separate else start_daemon(modems, latency)
        try:
            row = measure(daemon, modems, latency, messages)
        finally:
            daemon.stop()
            if cores is not None:
                os.sched_setaffinity(0, range(os.cpu_count() or 1))
        if connection is not None:
            connection.send("stop")
            timelines = connection.recv()
            commands = [at for timeline in timelines.values() for at, kind in timeline if kind == "cmgs"]
            if latency and commands:
                busy = max(commands) + latency - min(commands)
                row["steady_pct"] = round(100 * messages / busy / (modems / latency), 2)
            row.update(send_cycles(timelines, latency))
    finally:
        if child is not None:
            child.join(timeout=10)
            if child.is_alive():
                child.kill()
    return row


def gateway_on(devices: list[str]):
    """A daemon (no HTTP) driving the modems on `devices`, as `[[modem]]` entries: the simulator runs elsewhere."""
    from modemgw import config as configuration
    from modemgw.daemon import Daemon
    from modemgw.settings import ModemConfig

    config = configuration.load(None, temporary_directory("modemgw-bench-"))
    config.modems = [ModemConfig(device=device, label=f"sim{index}") for index, device in enumerate(devices)]
    daemon = Daemon(config, http=False).start()
    if not daemon.pool.wait_ready(30):
        daemon.stop()
        raise SystemExit(f"modems did not come up: {daemon.pool.status()}")
    return daemon


def measure(daemon, modems: int, latency: float, messages: int) -> dict:
    numbers = [f"+4477009{10000 + n:05d}" for n in range(messages)]  # not the simulated SIMs' own numbers
    finished = threading.Event()
    sent = [0]

    def count(event: str, data: dict) -> None:  # the measurement itself must not load the database
        if event == "message.sent":
            sent[0] += 1
            if sent[0] == messages:
                finished.set()

    daemon.gateway.subscribe(count)
    commands: list[float] = []  # when each AT+CMGS reaches a simulated modem (on the simulator's thread)
    if daemon.simulator is not None:
        def on_command(line: str) -> None:
            if line.startswith("AT+CMGS="):
                commands.append(time.perf_counter())

        for device in daemon.simulator.devices:
            daemon.simulator.call(lambda device=device: setattr(device.modem, "on_command", on_command))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    daemon.gateway.submit("Benchmark message", numbers, request_report=False)
    done = finished.wait(600)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    if not done:
        raise SystemExit(f"only {daemon.store.status_counts()} after {elapsed:.0f} s")
    rate = messages / elapsed
    row = {"modems": modems, "latency_s": latency, "messages": messages, "seconds": round(elapsed, 2),
           "msg_per_s": round(rate, 1)}
    if latency:
        row["utilisation_pct"] = round(100 * rate / (modems / latency), 2)
        row["overhead_ms"] = round(1000 * (elapsed * modems / messages - latency), 2)  # per send, beyond the modem's
    else:
        row["overhead_ms"] = round(1000 / rate, 2)
    if latency and commands:
        busy = max(commands) + latency - min(commands)
        row["steady_pct"] = round(100 * messages / busy / (modems / latency), 2)
    if daemon.simulator is None:  # the process is the gateway alone: what a send costs it
        cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
        row["cpu_ms"] = round(1000 * cpu / messages, 3)
        row["vcsw"] = round((after.ru_nvcsw - usage.ru_nvcsw) / messages, 1)
        row["ivcsw"] = round((after.ru_nivcsw - usage.ru_nivcsw) / messages, 2)
    return row


def main() -> None:
    parser = options(__doc__.splitlines()[0])
    parser.add_argument("--per-modem", type=int, default=None, help="messages per modem at 0.5 s (default 40)")
    parser.add_argument("--modems", default=None, help="modem counts at 0.5 s (default 1,2,4,8,16; --quick: 1,2)")
    placement = parser.add_mutually_exclusive_group()
    placement.add_argument("--sim-process", action="store_true",
                           help="the simulated modems in a process of their own; adds CPU, context switches and the "
                                "turnaround per send")
    placement.add_argument("--pin", action="store_true",
                           help="as --sim-process, with the gateway pinned to one core and the simulator to another")
    args = parser.parse_args()
    cores = None
    if args.pin:
        allowed = sorted(os.sched_getaffinity(0))
        if len(allowed) < 2:
            raise SystemExit("--pin needs 2 cores (the gateway on one, the simulator on another); this process may "
                             f"use {allowed}")
        cores = (allowed[0], allowed[1])
    separate = args.sim_process or args.pin
    per_modem = args.per_modem or (4 if args.quick else 40)
    counts = [int(n) for n in args.modems.split(",")] if args.modems else [1, 2] if args.quick else [1, 2, 4, 8, 16]
    load = os.getloadavg()
    rows = []
    for modems in counts:
        rows.append(run(modems, 0.5, modems * per_modem, separate, cores))
        print(rows[-1], flush=True)
    rows.append(run(1, 0.0, 300 if args.quick else 2000, separate, cores))
    print(rows[-1], flush=True)
    columns = ["modems", "latency_s", "messages", "seconds", "msg_per_s", "utilisation_pct", "steady_pct",
               "overhead_ms"]
    if separate:
        columns += ["cpu_ms", "vcsw", "ivcsw", "turnaround_ms", "turnaround_p90_ms", "turnaround_max_ms", "prompt_ms",
                    "late_ms"]
    report("throughput", rows, columns, args.out, quick=args.quick,
           placement="pinned" if args.pin else "sim-process" if separate else "one process",
           cores=list(cores) if cores else None, load_before=[round(value, 2) for value in load],
           load_after=[round(value, 2) for value in os.getloadavg()])


if __name__ == "__main__":
    main()
