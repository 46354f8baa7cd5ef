"""Submit throughput over SMPP (one bind) beside the HTTP API's, to instant simulated modems.

    python benchmarks/smpp.py [--quick] [--messages N] [--window W] [--modems M] [--out DIR]

One gateway with M instant simulated modems (default 2), its SMPP server and HTTP on 127.0.0.1. Each row sends
N messages (default 2000) one way, then waits until the modems have sent them all:

- `smpp`: one bind_transmitter; `concurrency` submit_sm in flight at once (1, then the window W, default 10:
  the server's `[smpp] window`, as Kannel's max-pending-submits and Jasmin keep it full);
- `http`: `POST /api/v1/messages`, one message each, on `concurrency` kept-alive connections (1, then W threads).

Columns: `accepted_per_s` (answers per second, first request to last answer: what a client can hand over),
`sent_per_s` (first request to the last `message.sent`: the pace through to the modems' AT+CMGS, which the
modems' own work shares the two cores with), and each answer's latency (`p50_ms`, `p99_ms`, `max_ms`; with a
window, time waiting behind the others included).

The SMPP client is a few lines over a raw socket (no library's overhead in the measure); the server's answers are
checked (ESME_ROK and a message id) and a refusal stops the run.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import struct
import threading
import time
from collections import deque

from common import options, percentiles, report, temporary_directory

from modemgw import auth
from modemgw.smpp import accounts

HEADER = struct.Struct(">IIII")  # command_length, command_id, command_status, sequence_number
BIND_TRANSMITTER, SUBMIT_SM, UNBIND = 0x00000002, 0x00000004, 0x00000006
RESPONSE = 0x80000000
TEXT = "Benchmark message"  # the GSM default alphabet's letters are ASCII's: data_coding 0, one septet per octet


def recipient(n: int) -> str:
    return f"4477009{10000 + n % 90000:05d}"  # international without "+" (TON 1); not the simulated SIMs' numbers


class Esme:
    """A minimal SMPP 3.4 client: one bind_transmitter, submit_sm written ahead of their answers."""

    def __init__(self, port: int, system_id: str, password: str):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()
        self.sequence = 0
        body = system_id.encode() + b"\0" + password.encode() + b"\0" + b"\0" + bytes([0x34, 0, 0]) + b"\0"
        self.write(BIND_TRANSMITTER, body)
        command, status, _, _ = self.read()
        if command != BIND_TRANSMITTER | RESPONSE or status != 0:
            raise SystemExit(f"bind_transmitter answered 0x{command:08x} with status 0x{status:02x}")

    def write(self, command: int, body: bytes) -> int:
        self.sequence += 1
        self.sock.sendall(HEADER.pack(HEADER.size + len(body), command, 0, self.sequence) + body)
        return self.sequence

    def submit(self, n: int) -> int:
        """Write one submit_sm (no receipt asked: reports would only add work beside the measure)."""
        text = TEXT.encode()
        body = (b"\0" + bytes([0, 0]) + b"\0" + bytes([1, 1]) + recipient(n).encode() + b"\0"
                + bytes([0, 0, 0]) + b"\0" + b"\0" + bytes([0, 0, 0, 0, len(text)]) + text)
        return self.write(SUBMIT_SM, body)

    def read(self) -> tuple[int, int, int, bytes]:
        """(command_id, command_status, sequence_number, body) of the next PDU."""
        while True:
            if len(self.buffer) >= HEADER.size:
                length, command, status, sequence = HEADER.unpack_from(self.buffer)
                if not HEADER.size <= length <= 65536:
                    raise SystemExit(f"the server sent a PDU of {length} octets")
                if len(self.buffer) >= length:
                    body = bytes(self.buffer[HEADER.size:length])
                    del self.buffer[:length]
                    return command, status, sequence, body
            data = self.sock.recv(65536)
            if not data:
                raise SystemExit("the server closed the SMPP connection")
            self.buffer += data

    def close(self) -> None:
        try:
            self.write(UNBIND, b"")
            self.read()
        finally:
            self.sock.close()


def run_smpp(port: int, messages: int, window: int) -> tuple[float, float, list[float]]:
    """(first write, last answer, each answer's latency in ms) for `messages` submit_sm, `window` at once."""
    esme = Esme(port, "bench", "bench")
    written: dict[int, float] = {}
    latencies: list[float] = []
    order: deque[int] = deque()
    started = time.monotonic()
    sent = 0
    try:
        while len(latencies) < messages:
            while sent < messages and len(written) < window:
                sequence = esme.submit(sent)
                written[sequence] = time.monotonic()
                order.append(sequence)
                sent += 1
            command, status, sequence, body = esme.read()
            if command != SUBMIT_SM | RESPONSE:
                continue  # enquire_link and the like: nothing the benchmark asked for
            if status != 0 or not body.rstrip(b"\0").isdigit():
                raise SystemExit(f"submit_sm answered status 0x{status:02x} ({body!r}) with {len(written)} "
                                 f"submits outstanding (window {window})")
            latencies.append((time.monotonic() - written.pop(sequence)) * 1000)
        return started, time.monotonic(), latencies
    finally:
        esme.close()


def run_http(port: int, key: str, messages: int, connections: int) -> tuple[float, float, list[float]]:
    """(first request, last answer, each answer's latency in ms) for `messages` POSTs over `connections`."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(messages))
    failures: list[str] = []

    def worker() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            while True:
                with lock:
                    n = next(counter, None)
                if n is None or failures:
                    return
                body = json.dumps({"to": "+" + recipient(n), "body": TEXT, "request_report": False})
                begun = time.monotonic()
                connection.request("POST", "/api/v1/messages", body, headers)
                response = connection.getresponse()
                response.read()
                elapsed = (time.monotonic() - begun) * 1000
                if response.status != 202:
                    failures.append(f"POST /api/v1/messages answered {response.status}")
                    return
                with lock:
                    latencies.append(elapsed)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(failures[0])
    return started, time.monotonic(), latencies


def start_daemon(modems: int):
    """common.start_daemon's gateway (instant modems, status reports far away), with HTTP and SMPP on 127.0.0.1."""
    from modemgw import config as configuration
    from modemgw.daemon import Daemon

    config = configuration.load(None, temporary_directory("modemgw-bench-"))
    config.listen = "127.0.0.1:0"
    config.smpp.listen = "127.0.0.1:0"
    daemon = Daemon(config, simulate=modems, sim_send_latency=0.0, sim_report_delay=3600.0, http=True).start()
    if not daemon.pool.wait_ready(30):
        daemon.stop()
        raise SystemExit(f"modems did not come up: {daemon.pool.status()}")
    return daemon


def main() -> None:
    parser = options(__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=None, help="messages per row (default 2000)")
    parser.add_argument("--window", type=int, default=10, help="SMPP window / HTTP connections (default 10)")
    parser.add_argument("--modems", type=int, default=2, help="instant simulated modems (default 2)")
    args = parser.parse_args()
    messages = args.messages or (100 if args.quick else 2000)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "Task queue depth" while W connections wait
    daemon = start_daemon(args.modems)
    rows = []
    try:
        accounts.add_account(daemon.store, "bench", "bench")  # no throughput limit: the server's own pace
        key, _ = auth.create_key(daemon.store, "smpp-benchmark", ("send",))
        sent, last_sent = [0], [0.0]
        done = threading.Condition()

        def count(event: str, data: dict) -> None:  # the measurement itself must not load the database
            if event == "message.sent":
                with done:
                    sent[0] += 1
                    last_sent[0] = time.monotonic()
                    done.notify_all()

        daemon.gateway.subscribe(count)
        assert daemon.smpp is not None and daemon.http_port is not None
        for interface, concurrency in (("smpp", 1), ("smpp", args.window), ("http", 1), ("http", args.window)):
            with done:
                target = sent[0] + messages
            if interface == "smpp":
                started, answered, latencies = run_smpp(daemon.smpp.port or 0, messages, concurrency)
            else:
                started, answered, latencies = run_http(daemon.http_port, key, messages, concurrency)
            with done:
                if not done.wait_for(lambda target=target: sent[0] >= target, 600):
                    raise SystemExit(f"only {daemon.store.status_counts()} after 600 s")
                finished = last_sent[0]
            rows.append({"interface": interface, "concurrency": concurrency, "messages": messages,
                         "modems": args.modems, "accepted_per_s": round(messages / (answered - started), 1),
                         "sent_per_s": round(messages / (finished - started), 1), **percentiles(latencies)})
            print(rows[-1], flush=True)
    finally:
        daemon.stop()
    report("smpp", rows, ["interface", "concurrency", "messages", "accepted_per_s", "sent_per_s", "p50_ms",
                          "p99_ms", "max_ms"], args.out, quick=args.quick)


if __name__ == "__main__":
    main()
