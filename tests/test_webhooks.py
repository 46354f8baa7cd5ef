"""Webhooks into a real local HTTP receiver (pytest-httpserver on 127.0.0.1), and into receivers that misbehave:
a tar-pit that trickles one byte at a time, names that resolve where they must not."""

import hashlib
import hmac
import http.server
import json
import queue
import select
import socket
import ssl
import subprocess
import threading
import time
import zlib

import pytest

from modemgw import auth, webhooks
from modemgw.daemon import Daemon
from modemgw.gateway import SubmitError
from modemgw.store import Store, webhooks as store_webhooks
from tests.support import Client, Receiver, daemon_config, eventually, require

FAST_RETRIES = (0.05, 0.05, 0.05, 0.05)


@pytest.fixture(scope="session")
def httpserver_listen_address():
    return ("127.0.0.1", 0)


def start(data_dir, private_callbacks=False, **options):
    """A daemon with one simulated modem. `private_callbacks`: messages' callback URLs may reach 127.0.0.1, where
    the test receivers listen ([gateway] callback_private_destinations, at submit and in the sender)."""
    config = daemon_config(data_dir, callback_private_destinations=private_callbacks)
    daemon = Daemon(config, simulate=1, sim_send_latency=0.01, sim_report_delay=0.05,
                    webhook_schedule=FAST_RETRIES, **options).start()
    daemon.webhooks.callback_private_destinations = private_callbacks
    assert daemon.pool.wait_ready(10)
    return daemon


@pytest.fixture
def daemon(tmp_path):
    running = start(tmp_path / "data")
    yield running
    running.stop()


def verify(secret: str, headers: dict, body: bytes) -> bool:
    """The README's verification recipe."""
    timestamp = headers["X-Modemgw-Timestamp"]
    expected = "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["X-Modemgw-Signature"]) and abs(time.time() - int(timestamp)) < 300


def test_subscription_receives_signed_events_in_order(daemon, httpserver):
    receiver = Receiver(httpserver)
    hook = webhooks.create_webhook(daemon.store, receiver.url, ["message.sent", "message.delivered"])
    [message] = daemon.gateway.submit("Hello", "+447700901234")["messages"]
    events = []
    for _ in range(2):
        _status, headers, body = receiver.next()
        assert verify(hook["secret"], headers, body)
        events.append(json.loads(body))
    assert [event["event"] for event in events] == ["message.sent", "message.delivered"]
    for event in events:
        assert event["message_id"] == message["id"] and event["timestamp"].endswith("Z")
        assert event["message"]["to"] == "+447700901234"
    assert events[1]["status"] == "delivered"
    assert headers["X-Modemgw-Event"] == "message.delivered"
    assert headers["X-Modemgw-Event-Id"] == events[1]["event_id"]


def test_a_failing_receiver_is_retried_until_it_recovers(daemon, httpserver):
    receiver = Receiver(httpserver, statuses=[500, 503])
    hook = webhooks.create_webhook(daemon.store, receiver.url, ["message.sent"])
    daemon.gateway.submit("Retry me", "+447700901234")
    assert [receiver.next()[0] for _ in range(3)] == [500, 503, 200]
    assert daemon.wait_until(lambda: webhooks.deliveries(daemon.store, hook["id"])[0]["status"] == "delivered", 5)
    [delivery] = webhooks.deliveries(daemon.store, hook["id"])
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == ("delivered", 3, 200)


def test_a_dead_receiver_is_dead_lettered_and_can_be_replayed(daemon, httpserver):
    receiver = Receiver(httpserver, statuses=[500] * (len(FAST_RETRIES) + 1))
    hook = webhooks.create_webhook(daemon.store, receiver.url, ["message.sent"])
    daemon.gateway.submit("Nobody home", "+447700901234")
    for _ in range(len(FAST_RETRIES) + 1):
        assert receiver.next()[0] == 500
    assert daemon.wait_until(lambda: webhooks.deliveries(daemon.store, hook["id"])[0]["status"] == "dead", 5)
    [delivery] = webhooks.deliveries(daemon.store, hook["id"])
    daemon.webhooks.redeliver(hook["id"], delivery["id"])
    assert receiver.next()[0] == 200


def test_pending_deliveries_survive_a_restart(tmp_path, httpserver):
    receiver = Receiver(httpserver, statuses=[503] * 3)
    first = start(tmp_path / "data")
    try:
        webhooks.create_webhook(first.store, receiver.url, ["message.sent"])
        [message] = first.gateway.submit("Across restarts", "+447700901234")["messages"]
        assert receiver.next()[0] == 503
    finally:
        first.stop()
    second = start(tmp_path / "data")
    try:
        _headers, _body, event = receiver.until(lambda event: event["message_id"] == message["id"])
        assert event["event"] == "message.sent"
    finally:
        second.stop()


def test_cloud_style_send_with_a_callback_url(tmp_path, httpserver):
    receiver = Receiver(httpserver, path="/sms-status")
    daemon = start(tmp_path / "data", private_callbacks=True)
    try:
        key = auth.create_key(daemon.store, "app", ("send", "read"))[0]
        client = Client(daemon.url, key)
        status, _, body = client.call("POST", "/send", {"to": "+447700901234", "message": "Hi",
                                                        "callback_url": receiver.url})
        assert status == 202
        headers, raw, event = receiver.until(lambda event: event["status"] == "delivered")
        assert (event["message_id"], event["status"]) == (body["message_id"], "delivered")
        assert event["timestamp"]
        assert verify(webhooks.callback_secret(daemon.store), headers, raw)
    finally:
        daemon.stop()


def test_webhook_api_create_list_deliveries_and_replay(daemon, httpserver):
    receiver = Receiver(httpserver)
    admin = Client(daemon.url, auth.create_key(daemon.store, "admin", ("admin",))[0])
    status, _, hook = admin.call("POST", "/api/v1/webhooks", {"url": receiver.url, "events": ["message.sent"]})
    assert status == 201 and hook["secret"].startswith("whsec_")
    status, _, body = admin.call("POST", "/api/v1/webhooks", {"url": receiver.url, "events": ["message.lost"]})
    assert status == 400 and "events must be" in body["detail"]
    daemon.gateway.submit("Listed", "+447700901234")
    receiver.next()
    assert daemon.wait_until(lambda: admin.call("GET", f"/api/v1/webhooks/{hook['id']}/deliveries")[2]["data"][0]
                             ["status"] == "delivered", 5)
    status, _, listing = admin.call("GET", f"/api/v1/webhooks/{hook['id']}/deliveries")
    delivery = listing["data"][0]
    status, _, replayed = admin.call("POST", f"/api/v1/webhooks/{hook['id']}/deliveries/{delivery['id']}/redeliver")
    assert status == 202 and replayed["status"] == "pending"
    assert receiver.next()[0] == 200
    reader = Client(daemon.url, auth.create_key(daemon.store, "reader", ("read",))[0])
    assert reader.call("GET", "/api/v1/webhooks")[0] == 403


@pytest.mark.parametrize("url, allowed", [
    ("http://127.0.0.1:8080/hook", True), ("http://192.168.1.20/hook", True), ("http://10.0.0.5/x", True),
    ("http://169.254.169.254/latest/meta-data", False), ("http://0.0.0.0/x", False), ("http://[fe80::1]/x", False),
    ("http://224.0.0.1/x", False),
])
def test_deliveries_never_go_to_link_local_multicast_or_unspecified_addresses(url, allowed):
    assert (webhooks.destination_problem(url) is None) is allowed


def test_a_receiver_cannot_redirect_a_delivery(daemon, httpserver):
    httpserver.expect_request("/moved", method="POST").respond_with_data("", status=302,
                                                                        headers={"Location": "/elsewhere"})
    elsewhere = Receiver(httpserver, path="/elsewhere")
    hook = webhooks.create_webhook(daemon.store, httpserver.url_for("/moved"), ["message.sent"])
    daemon.gateway.submit("x", "+447700901234")
    assert daemon.wait_until(
        lambda: (webhooks.deliveries(daemon.store, hook["id"]) or [{}])[0].get("attempts", 0) >= 1, 5)
    assert webhooks.deliveries(daemon.store, hook["id"])[0]["status"] != "delivered"
    assert elsewhere.arrived.empty()


# --- URLs that can never work, receivers that misbehave --------------------------------------------------------

BAD_CALLBACKS = [  # (URL, what the refusal says)
    ("http://127.0.0.1:18499/a b", "has a space at character 25"),
    ("http://" + "a" * 64 + ".example.com/status", "host label of 64 characters"),
    ("http://[::1/", "Invalid IPv6 URL"),
]


class TarPit:
    """A receiver on 127.0.0.1 that reads the request, then answers one byte every `interval` seconds for ever (a
    status line, then one endless header): no single read ever times out, only a deadline for the whole delivery
    ends it. `closed` gets how long each connection stayed open."""

    ANSWER = b"HTTP/1.1 200 OK\r\nX-Slow: "

    def __init__(self, interval: float = 0.25):
        self.interval = interval
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/slow"
        self.connected = threading.Event()
        self.closed: queue.Queue = queue.Queue()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, name="tar-pit", daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._trickle, args=(conn,), name="tar-pit-conn", daemon=True).start()

    def _trickle(self, conn):
        opened = time.monotonic()
        self.connected.set()
        sent = 0
        try:
            while not self.stopping.is_set():
                readable, _, _ = select.select([conn], [], [], self.interval)
                if readable:
                    if not conn.recv(65536):
                        break  # the sender hung up
                    continue  # the request: read and ignored
                conn.sendall(self.ANSWER[sent:sent + 1] or b"a")
                sent += 1
        except OSError:
            pass
        finally:
            conn.close()
            self.closed.put(time.monotonic() - opened)

    def stop(self):
        self.stopping.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        except OSError:
            pass
        self.listener.close()
        self.thread.join(5)


class FakeDns:
    """getaddrinfo answering from a list, one answer per lookup (as a rebinding DNS server does)."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.lookups: list[str] = []

    def __call__(self, host, port, *args, **kwargs):
        self.lookups.append(host)
        address = self.answers[min(len(self.lookups), len(self.answers)) - 1]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]


@pytest.fixture
def outbox(tmp_path):
    return Store(tmp_path / "modemgw.db")


@pytest.fixture
def tarpit():
    pit = TarPit()
    yield pit
    pit.stop()


def add_delivery(store, url, webhook_id=None, message_id=None, n=0):
    """A pending delivery written straight into the outbox, as any version of the gateway may have left it."""
    payload = json.dumps({"event": "message.sent", "message_id": message_id, "n": n})
    with store.transaction() as conn:
        delivery_id = conn.execute("INSERT INTO webhook_deliveries (webhook_id, url, event, event_id, message_id, "
                                   "status, next_attempt_at, created_at) VALUES (?, ?, 'message.sent', ?, ?, "
                                   "'pending', 0, 0)", (webhook_id, url, f"evt_{time.monotonic_ns()}",
                                                        message_id)).lastrowid
        conn.execute("INSERT INTO webhook_payloads (delivery_id, payload) VALUES (?, ?)", (delivery_id, payload))
        return delivery_id


def delivery(store, delivery_id):
    return dict(store.query("SELECT * FROM webhook_deliveries WHERE id = ?", (delivery_id,))[0])


def sender_for(store, **options):
    """A sender over `store` with a short deadline and one retry; callbacks may reach 127.0.0.1."""
    options = {"deadline": 1.5, "schedule": (0.05,), "callback_private_destinations": True, **options}
    sender = webhooks.WebhookSender(store, lambda message_id: {}, **options)
    sender.start()
    return sender


def test_bad_callback_and_webhook_urls_are_refused_when_submitted(daemon):
    client = Client(daemon.url, auth.create_key(daemon.store, "app", ("send",))[0])
    admin = Client(daemon.url, auth.create_key(daemon.store, "admin", ("admin",))[0])
    for url, words in BAD_CALLBACKS:
        for path, body in (("/send", {"to": "+447700901234", "message": "Hi", "callback_url": url}),
                           ("/api/v1/messages", {"to": "+447700901234", "body": "Hi", "callback_url": url})):
            status, headers, problem = client.call("POST", path, body)
            assert (status, headers["Content-Type"], problem["field"]) == (400, "application/problem+json",
                                                                           "callback_url")
            assert problem["detail"].startswith("callback_url ") and words in problem["detail"]
        status, _, problem = admin.call("POST", "/api/v1/webhooks", {"url": url, "events": ["*"]})
        assert (status, problem["field"]) == (400, "url") and words in problem["detail"]
    assert daemon.store.query("SELECT COUNT(*) FROM messages")[0][0] == 0
    assert webhooks.webhooks(daemon.store) == []


def test_callbacks_reach_loopback_and_the_lan_only_when_configured(daemon):
    for url, words in (("http://127.0.0.1:8080/cb", "a loopback address"),
                       ("http://192.168.1.20/cb", "a private (LAN) address"),
                       ("http://localhost:8080/cb", "a loopback name")):
        with pytest.raises(SubmitError) as caught:
            daemon.gateway.submit("x", "+447700901234", callback_url=url)
        assert caught.value.field == "callback_url"
        assert words in caught.value.detail and "[gateway] callback_private_destinations = true" in caught.value.detail
    daemon.gateway.settings.callback_private_destinations = True
    assert daemon.gateway.submit("x", "+447700901234", callback_url="http://127.0.0.1:8080/cb")["messages"]
    with pytest.raises(SubmitError, match="link-local"):  # cloud metadata: never, whatever the setting
        daemon.gateway.submit("x", "+447700901234", callback_url="http://169.254.169.254/latest/meta-data")
    assert webhooks.create_webhook(daemon.store, "http://127.0.0.1:8080/hook", ["*"])  # admins' subscriptions may


def test_bad_urls_and_a_tar_pit_hold_up_no_other_delivery(outbox, tarpit, httpserver):
    """The acceptance test: a tar-pit first in line, then rows with URLs an older version stored unchecked; every
    other delivery still arrives within seconds, and the bad ones end dead with the reason."""
    receiver = Receiver(httpserver)
    hook = webhooks.create_webhook(outbox, receiver.url, ["*"])
    slow = add_delivery(outbox, tarpit.url, message_id=1)
    invalid = [add_delivery(outbox, url, message_id=2 + n) for n, (url, _) in enumerate(BAD_CALLBACKS)]
    good = [add_delivery(outbox, receiver.url + "?callback", message_id=10),
            add_delivery(outbox, receiver.url, webhook_id=hook["id"], message_id=1),
            add_delivery(outbox, receiver.url, webhook_id=hook["id"], message_id=2)]
    sender = sender_for(outbox, deadline=1.5)
    try:
        assert tarpit.connected.wait(5)
        assert sorted(json.loads(receiver.next(timeout=5)[2])["message_id"] for _ in good) == [1, 2, 10]
        assert tarpit.closed.empty()  # all of them arrived while the tar-pit held its delivery
        assert eventually(lambda: all(delivery(outbox, row)["status"] != "pending" for row in [slow, *invalid, *good]),
                          15)
    finally:
        sender.stop()
    assert [delivery(outbox, row)["status"] for row in good] == ["delivered"] * 3
    for row, (_, words) in zip(invalid, BAD_CALLBACKS, strict=False):
        dead = delivery(outbox, row)
        assert (dead["status"], dead["attempts"]) == ("dead", 1)  # never valid: no retry
        assert dead["last_error"].startswith("invalid URL: the URL ") and words in dead["last_error"]
    dead = delivery(outbox, slow)
    assert (dead["status"], dead["attempts"]) == ("dead", 2)
    assert "deadline (1.5 s)" in dead["last_error"]
    for _ in range(2):  # each attempt was cut off at the deadline, though a byte came every 0.25 s
        assert tarpit.closed.get(timeout=5) < 1.5 + 1.0


def test_subscriptions_and_callbacks_do_not_starve_each_other(outbox, tarpit, httpserver):
    """One worker per lane: a subscription stuck in the tar-pit holds its lane; messages' callbacks still go out."""
    receiver = Receiver(httpserver)
    stuck = webhooks.create_webhook(outbox, tarpit.url, ["*"])
    add_delivery(outbox, tarpit.url, webhook_id=stuck["id"], message_id=1)
    add_delivery(outbox, receiver.url, message_id=1)
    sender = sender_for(outbox, workers=1, deadline=5.0)
    try:
        assert tarpit.connected.wait(5)
        assert json.loads(receiver.next(timeout=5)[2])["message_id"] == 1
        assert tarpit.closed.empty()
    finally:
        sender.stop()


def test_deliveries_for_one_message_and_url_stay_in_order_across_retries(outbox, httpserver):
    receiver = Receiver(httpserver, statuses=[500, 503])
    for n in range(5):
        add_delivery(outbox, receiver.url, message_id=7, n=n)
    sender = sender_for(outbox, schedule=(0.05, 0.05))
    try:
        arrived = [receiver.next() for _ in range(7)]
    finally:
        sender.stop()
    assert [(status, json.loads(body)["n"]) for status, _, body in arrived] == [
        (500, 0), (503, 0), (200, 0), (200, 1), (200, 2), (200, 3), (200, 4)]


def test_callbacks_to_the_lan_are_refused_at_delivery_unless_configured(outbox, httpserver):
    """An older row, or a name that resolves to a LAN address: checked at each delivery. Subscriptions may."""
    receiver = Receiver(httpserver)
    hook = webhooks.create_webhook(outbox, receiver.url, ["*"])
    callback = add_delivery(outbox, receiver.url, message_id=1)
    subscription = add_delivery(outbox, receiver.url, webhook_id=hook["id"], message_id=1)
    sender = sender_for(outbox, callback_private_destinations=False, schedule=())
    try:
        assert receiver.next()[0] == 200
        assert eventually(lambda: [delivery(outbox, row)["status"] for row in (callback, subscription)]
                          == ["dead", "delivered"], 10)
    finally:
        sender.stop()
    assert receiver.arrived.empty()
    assert "127.0.0.1 is a loopback address: callbacks go there only with [gateway] callback_private_destinations" \
        in delivery(outbox, callback)["last_error"]


def test_a_name_is_resolved_once_and_the_checked_address_is_the_one_connected(httpserver):
    receiver = Receiver(httpserver)
    url = f"http://hooks.example.test:{httpserver.port}/hook"
    dns = FakeDns("127.0.0.1", "169.254.169.254")  # rebinding: the next answer points at cloud metadata
    resolver = webhooks.Resolver(getaddrinfo=dns)
    assert webhooks.post(url, b"{}", {"Content-Type": "application/json"}, deadline=5, resolver=resolver) == 200
    assert dns.lookups == ["hooks.example.test"]
    assert receiver.next()[1]["Host"] == f"hooks.example.test:{httpserver.port}"  # the name, not the address
    with pytest.raises(webhooks.DeliveryError, match="resolves to 169.254.169.254, a link-local address"):
        webhooks.post(url, b"{}", {}, deadline=5, resolver=resolver)
    assert dns.lookups == ["hooks.example.test"] * 2 and receiver.arrived.empty()
    with pytest.raises(webhooks.DeliveryError, match="a loopback address: callbacks go there only with"):
        webhooks.post(url, b"{}", {}, deadline=5, resolver=webhooks.Resolver(getaddrinfo=FakeDns("127.0.0.1")),
                      private=False)


def test_a_dns_lookup_that_hangs_ends_at_the_deadline():
    release = threading.Event()
    calls = []

    def hanging(host, port, **kwargs):
        calls.append(host)
        release.wait(10)
        raise socket.gaierror(-2, "Name or service not known")

    resolver = webhooks.Resolver(getaddrinfo=hanging)
    try:
        for _ in range(2):  # the second delivery waits for the lookup already running, not for a new one
            with pytest.raises(webhooks.DeliveryError, match="cannot resolve slow-dns.example.test within the "
                                                             "delivery deadline"):
                webhooks.post("http://slow-dns.example.test/x", b"{}", {}, deadline=0.2, resolver=resolver)
        assert calls == ["slow-dns.example.test"]
    finally:
        release.set()


class BrokenResolver:
    def resolve(self, host, port, end):
        raise RuntimeError("resolver bug")


def test_any_fault_of_one_delivery_is_a_failed_attempt_of_that_delivery(outbox, httpserver):
    receiver = Receiver(httpserver)
    broken = add_delivery(outbox, "http://hooks.example.test/x", message_id=1)
    fine = add_delivery(outbox, receiver.url, message_id=2)
    sender = sender_for(outbox, resolver=BrokenResolver(), schedule=(0.05, 0.05))
    try:
        assert json.loads(receiver.next()[2])["message_id"] == 2
        assert eventually(lambda: [delivery(outbox, row)["status"] for row in (broken, fine)] == ["dead", "delivered"],
                          10)
    finally:
        sender.stop()
    row = delivery(outbox, broken)
    assert (row["attempts"], row["last_error"]) == (3, "RuntimeError: resolver bug")


@pytest.fixture
def tls_receiver(tmp_path):
    """An HTTPS receiver on 127.0.0.1 with a certificate for hooks.example.test from a CA of its own; yields
    (port, a client context trusting that CA, what it saw: SNI names and Host headers)."""
    openssl = require("openssl", "openssl")  # skipped locally without it, a failure under CI

    def run(*args):
        subprocess.run([openssl, *args], cwd=tmp_path, check=True, capture_output=True, timeout=30)

    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *curve, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=modemgw test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *curve, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=hooks.example.test")
    (tmp_path / "server.ext").write_text("subjectAltName=DNS:hooks.example.test\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-out", "server.pem", "-extfile", "server.ext")
    seen = {"sni": [], "host": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            seen["host"].append(self.headers["Host"])
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    server_context.sni_callback = lambda connection, name, context: seen["sni"].append(name)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="tls-receiver",
                              daemon=True)
    thread.start()
    client_context = ssl.create_default_context(cafile=tmp_path / "ca.pem")
    yield server.server_address[1], client_context, seen
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_https_keeps_the_name_for_sni_and_the_certificate_while_connecting_to_the_checked_address(tls_receiver):
    port, context, seen = tls_receiver
    resolver = webhooks.Resolver(getaddrinfo=FakeDns("127.0.0.1"))
    assert webhooks.post(f"https://hooks.example.test:{port}/hook", b"{}", {}, resolver=resolver, tls=context) == 204
    assert (seen["sni"], seen["host"]) == (["hooks.example.test"], [f"hooks.example.test:{port}"])
    with pytest.raises(webhooks.DeliveryError, match="Hostname mismatch|CERTIFICATE_VERIFY_FAILED"):
        webhooks.post(f"https://other.example.test:{port}/hook", b"{}", {}, resolver=resolver, tls=context)
    with pytest.raises(webhooks.DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):  # the system's CAs by default
        webhooks.post(f"https://hooks.example.test:{port}/hook", b"{}", {}, resolver=resolver)


def test_payloads_go_out_byte_exact_whichever_way_they_were_stored(outbox, httpserver):
    """Payloads are kept compressed with a preset dictionary (a message's delivered payload: 673 bytes of JSON, 321
    compressed alone, ~115 with it). Each stored form an earlier version left (text, zlib alone) goes out as it was
    written; one coded with a dictionary this version lacks (a newer gateway's), cut short or not zlib at all ends
    dead with the reason, not retried for hours, and holds up no other delivery."""
    receiver = Receiver(httpserver)
    assert zlib.adler32(store_webhooks.PAYLOAD_DICTIONARY_1) == 3617788187  # stored payloads name it: never change it
    message = {"id": 7, "to": "+447700900123", "body": "Grüße, 你好 €5", "status": "delivered", "segments": 1,
               "encoding": "ucs2", "priority": 0, "client_ref": "order-7", "modem_id": 1,
               "created_at": "2026-12-02T11:25:31.123456Z", "send_at": None, "expires_at": None,
               "sent_at": "2026-12-02T11:25:31.623456Z", "delivered_at": "2026-12-02T11:25:33.123456Z",
               "report": "delivered", "error": None, "possible_duplicate": False, "attempts": 1, "callback_url": None,
               "preferred_modem_id": None, "reply_to": None}
    texts = [json.dumps({"event": "message.delivered", "timestamp": "2026-12-02T11:25:33.223456Z", "message_id": 7,
                         "status": "delivered", "message": message, "n": n, "event_id": f"evt_{n:024x}"},
                        ensure_ascii=False) for n in range(4)]
    coded = store_webhooks.compress_payload(texts[2])
    assert len(coded) < len(zlib.compress(texts[2].encode(), 9)) / 2
    stored = [texts[0], zlib.compress(texts[1].encode(), 6), coded,
              coded[:2] + (12345).to_bytes(4, "big") + coded[6:],  # names a dictionary nobody has
              coded[:-9],  # cut short: it would decode to part of the JSON
              b"\x78\x9c not zlib at all"]
    ids = []
    for n, payload in enumerate(stored):
        ids.append(add_delivery(outbox, receiver.url, message_id=10 + n))
        with outbox.transaction() as conn:
            conn.execute("UPDATE webhook_payloads SET payload = ? WHERE delivery_id = ?", (payload, ids[-1]))
    sender = sender_for(outbox)
    try:
        arrived = sorted(receiver.next(timeout=5)[2].decode() for _ in range(3))
        assert arrived == sorted(texts[:3])
        assert eventually(lambda: all(delivery(outbox, row)["status"] == "dead" for row in ids[3:]), 10)
    finally:
        sender.stop()
    for row in ids[3:]:
        assert "payload cannot be read" in delivery(outbox, row)["last_error"]
        assert delivery(outbox, row)["attempts"] <= 1
    assert receiver.arrived.empty()
