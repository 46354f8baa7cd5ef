"""Pool utilisation with N simulated modems that take 0.5 s per AT+CMGS, and messages/s on one instant modem.

    python benchmarks/throughput.py [--quick] [--per-modem K] [--out DIR]

Each N (1, 2, 4, 8, 16) sends K messages per modem (default 40: 20 s of modem time at any N), all submitted at
once; the clock runs from the submit to the last `message.sent` event. Utilisation = achieved messages/s
divided by what N modems can do (N / 0.5 s). Target: >= 99 %. Per-message overhead on an instant modem:
target <= 5 ms (>= 200 msg/s).
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
        row["overhead_ms"] = round(1000 * (elapsed * modems / messages - latency), 2)  # per send, beyond the modem's
    else:
        row["overhead_ms"] = round(1000 / rate, 2)
    return row


def main() -> None:
    parser = options(__doc__.splitlines()[0])
    parser.add_argument("--per-modem", type=int, default=None, help="messages per modem at 0.5 s (default 40)")
    args = parser.parse_args()
    per_modem = args.per_modem or (4 if args.quick else 40)
    rows = []
    for modems in (1, 2) if args.quick else (1, 2, 4, 8, 16):
        rows.append(run(modems, 0.5, modems * per_modem))
        print(rows[-1], flush=True)
    rows.append(run(1, 0.0, 300 if args.quick else 2000))
    print(rows[-1], flush=True)
    report("throughput", rows, ["modems", "latency_s", "messages", "seconds", "msg_per_s", "utilisation_pct",
                                "overhead_ms"], args.out, quick=args.quick)


if __name__ == "__main__":
    main()
