"""Pool utilisation with N simulated modems that take 0.5 s per AT+CMGS, and messages/s on one instant modem.

    python benchmarks/throughput.py [--quick] [--per-modem K] [--modems 1,2,4,8,16] [--out DIR]

Each N (1, 2, 4, 8, 16) sends K messages per modem (default 40: 20 s of modem time at any N), all submitted at
once. Utilisation = achieved messages/s divided by what N modems can do (N / 0.5 s); target >= 99 %.

- `utilisation_pct`: the clock runs from the submit to the last `message.sent` event (the strict figure: it
  includes storing the batch, waking the workers and the last commit);
- `steady_pct`: from the first AT+CMGS to the last one + 0.5 s, as the simulated modems see them (how busy
  the modems are kept once there is work; the measure benchmarks/peers.py uses for all three gateways);
- `overhead_ms`: what each send costs beyond the modem's 0.5 s (by the strict clock).

Per-message overhead on an instant modem: target <= 5 ms (>= 200 msg/s).
"""

from __future__ import annotations

import threading
import time

from common import options, report, start_daemon


def run(modems: int, latency: float, messages: int) -> dict:
    daemon = start_daemon(modems, latency)
    try:
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

        def on_command(line: str) -> None:
            if line.startswith("AT+CMGS="):
                commands.append(time.perf_counter())

        for device in daemon.simulator.devices:
            daemon.simulator.call(lambda device=device: setattr(device.modem, "on_command", on_command))
        started = time.perf_counter()
        daemon.gateway.submit("Benchmark message", numbers, request_report=False)
        done = finished.wait(600)
        elapsed = time.perf_counter() - started
        if not done:
            raise SystemExit(f"only {daemon.store.status_counts()} after {elapsed:.0f} s")
    finally:
        daemon.stop()
    rate = messages / elapsed
    row = {"modems": modems, "latency_s": latency, "messages": messages, "seconds": round(elapsed, 2),
           "msg_per_s": round(rate, 1)}
    if latency:
        row["utilisation_pct"] = round(100 * rate / (modems / latency), 1)
        busy = max(commands) + latency - min(commands)
        row["steady_pct"] = round(100 * messages / busy / (modems / latency), 1)
        row["overhead_ms"] = round(1000 * (elapsed * modems / messages - latency), 2)  # per send, beyond the modem's
    else:
        row["overhead_ms"] = round(1000 / rate, 2)
    return row


def main() -> None:
    parser = options(__doc__.splitlines()[0])
    parser.add_argument("--per-modem", type=int, default=None, help="messages per modem at 0.5 s (default 40)")
    parser.add_argument("--modems", default=None, help="modem counts at 0.5 s (default 1,2,4,8,16; --quick: 1,2)")
    args = parser.parse_args()
    per_modem = args.per_modem or (4 if args.quick else 40)
    counts = [int(n) for n in args.modems.split(",")] if args.modems else [1, 2] if args.quick else [1, 2, 4, 8, 16]
    rows = []
    for modems in counts:
        rows.append(run(modems, 0.5, modems * per_modem))
        print(rows[-1], flush=True)
    rows.append(run(1, 0.0, 300 if args.quick else 2000))
    print(rows[-1], flush=True)
    report("throughput", rows, ["modems", "latency_s", "messages", "seconds", "msg_per_s", "utilisation_pct",
                                "steady_pct", "overhead_ms"], args.out, quick=args.quick)


if __name__ == "__main__":
    main()
