"""Pool utilisation with N simulated modems that take 0.5 s per AT+CMGS, and messages/s on one instant modem.

    python benchmarks/throughput.py [--quick]

Utilisation = achieved messages/s divided by what N modems can do (N / 0.5 s). Target: >= 99 %.
Per-message overhead on an instant modem: target <= 5 ms (>= 200 msg/s).
"""

from __future__ import annotations

import sys
import threading
import time

from common import report, start_daemon


def run(modems: int, latency: float, messages: int) -> dict:
    daemon = start_daemon(modems, latency)
    try:
        numbers = [f"+4477009{n:05d}" for n in range(messages)]
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
    else:
        row["overhead_ms"] = round(1000 / rate, 2)
    return row


def main() -> None:
    quick = "--quick" in sys.argv
    rows = []
    for modems in (1, 2, 4, 8) if not quick else (1, 2):
        rows.append(run(modems, 0.5, modems * (40 if not quick else 6)))
        print(rows[-1], flush=True)
    rows.append(run(1, 0.0, 2000 if not quick else 300))
    print(rows[-1], flush=True)
    for row in rows:
        row.setdefault("utilisation_pct", "-")
        row.setdefault("overhead_ms", "-")
    report("throughput", rows, ["modems", "latency_s", "messages", "seconds", "msg_per_s", "utilisation_pct",
                                "overhead_ms"])


if __name__ == "__main__":
    main()
