"""Idle latency: from handing a message to the gateway until the modem sees its AT+CMGS.

    python benchmarks/latency.py [--samples N]

The gateway is idle before each sample (the previous message has been sent). Targets: p50 <= 5 ms,
p99 <= 25 ms. The clock is the same process's monotonic clock at both ends (the simulated modem runs in the
gateway's process, behind a real pty). Until the REST API lands the start is `gateway.submit()`; the HTTP
202 start replaces it then.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time

from common import report, start_daemon


def main() -> None:
    samples = int(sys.argv[sys.argv.index("--samples") + 1]) if "--samples" in sys.argv else 300
    daemon = start_daemon(1, 0.0)
    seen = threading.Event()
    arrival = {}

    def on_command(line: str) -> None:
        if line.startswith("AT+CMGS="):
            arrival["at"] = time.monotonic()
            seen.set()

    device = daemon.simulator.devices[0]
    daemon.simulator.call(lambda: setattr(device.modem, "on_command", on_command))
    latencies = []
    try:
        for n in range(samples + 20):
            seen.clear()
            sent_before = daemon.store.status_counts().get("sent", 0)
            started = time.monotonic()
            daemon.gateway.submit("Your code is 123456", f"+4477009{n:05d}", request_report=False)
            if not seen.wait(5):
                raise SystemExit("the modem never saw AT+CMGS")
            if n >= 20:  # warm-up excluded
                latencies.append((arrival["at"] - started) * 1000)
            daemon.wait_until(lambda: daemon.store.status_counts().get("sent", 0) > sent_before, 5)
            time.sleep(0.01)  # idle again, as between real one-time passcodes
    finally:
        daemon.stop()
    latencies.sort()
    row = {"samples": len(latencies), "p50_ms": round(statistics.median(latencies), 2),
           "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 2), "max_ms": round(latencies[-1], 2)}
    report("latency", [row], ["samples", "p50_ms", "p99_ms", "max_ms"])


if __name__ == "__main__":
    main()
