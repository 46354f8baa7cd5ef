"""Idle latency: from handing a message to the gateway until the modem sees its AT+CMGS.

    python benchmarks/latency.py [--quick] [--samples N] [--out DIR]

The gateway is idle before each sample (the previous message has been sent, then 10 ms pass, as between
real one-time passcodes). Targets (docs/design.md): p50 <= 5 ms, p99 <= 25 ms from the HTTP 202. Two starts,
measured on the same daemon one after the other:

- `http`: a real `POST /api/v1/messages` on 127.0.0.1 (waitress, a bearer key made with auth.create_key,
  one kept-alive connection as an application server would hold). The clock starts when the request is
  written, so the figure includes HTTP parsing, the key check and the submit; it is an upper bound of
  "HTTP 202 -> AT+CMGS". The `after_202` columns start when the client has read the 202 instead: the send
  often starts before that answer has come back, so they are small or negative.
- `submit`: `gateway.submit()` called in-process (the CLI and web UI path, without HTTP).

Both ends use this process's monotonic clock: the simulated modem runs in the gateway's process, behind a
real pty, and a hook on it notes when `AT+CMGS=` arrives.
"""

from __future__ import annotations

import http.client
import json
import threading
import time

from common import options, percentiles, report, start_daemon

from modemgw import auth


def main() -> None:
    parser = options(__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=None, help="samples per start (default 500)")
    args = parser.parse_args()
    samples = args.samples or (30 if args.quick else 500)
    warmup = 5 if args.quick else 20
    daemon = start_daemon(1, 0.0, http=True)
    seen = threading.Event()
    arrival = {}

    def on_command(line: str) -> None:
        if line.startswith("AT+CMGS="):
            arrival["at"] = time.monotonic()
            seen.set()

    device = daemon.simulator.devices[0]
    daemon.simulator.call(lambda: setattr(device.modem, "on_command", on_command))
    key, _ = auth.create_key(daemon.store, "latency-benchmark", ("send",))
    connection = http.client.HTTPConnection("127.0.0.1", daemon.http_port, timeout=10)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    counter = [0]

    def by_submit() -> tuple[float, None]:
        started = time.monotonic()
        daemon.gateway.submit("Your code is 123456", f"+4477009{10000 + counter[0]:05d}", request_report=False)
        return started, None

    def by_http() -> tuple[float, float]:
        body = json.dumps({"to": f"+4477009{10000 + counter[0]:05d}", "body": "Your code is 123456",
                           "request_report": False})
        started = time.monotonic()
        connection.request("POST", "/api/v1/messages", body, headers)
        response = connection.getresponse()
        response.read()
        answered = time.monotonic()
        if response.status != 202:
            raise SystemExit(f"POST /api/v1/messages answered {response.status}")
        return started, answered

    def measure(start) -> tuple[list[float], list[float]]:
        latencies, after_202 = [], []
        for n in range(samples + warmup):
            counter[0] += 1
            seen.clear()
            sent_before = daemon.store.status_counts().get("sent", 0)
            started, answered = start()
            if not seen.wait(5):
                raise SystemExit("the modem never saw AT+CMGS")
            if n >= warmup:
                latencies.append((arrival["at"] - started) * 1000)
                if answered is not None:
                    after_202.append((arrival["at"] - answered) * 1000)
            daemon.wait_until(lambda: daemon.store.status_counts().get("sent", 0) > sent_before, 5)
            time.sleep(0.01)
        return latencies, after_202

    try:
        submit_ms, _ = measure(by_submit)
        http_ms, after_202_ms = measure(by_http)
    finally:
        connection.close()
        daemon.stop()
    rows = [{"start": "http", "samples": len(http_ms), **percentiles(http_ms),
             **{f"after_202_{name}": value for name, value in percentiles(after_202_ms).items()}},
            {"start": "submit", "samples": len(submit_ms), **percentiles(submit_ms)}]
    report("latency", rows, ["start", "samples", "p50_ms", "p99_ms", "max_ms", "after_202_p50_ms",
                             "after_202_p99_ms", "after_202_max_ms"], args.out, quick=args.quick)


if __name__ == "__main__":
    main()
