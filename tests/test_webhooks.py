"""Webhooks into a real local HTTP receiver (pytest-httpserver on 127.0.0.1)."""

import hashlib
import hmac
import json
import queue
import time

import pytest
from werkzeug import Response

from modemgw import auth, webhooks
from modemgw.daemon import Daemon
from tests.conftest import daemon_config
from tests.test_api import Client

FAST_RETRIES = (0.05, 0.05, 0.05, 0.05)


@pytest.fixture(scope="session")
def httpserver_listen_address():
    return ("127.0.0.1", 0)


def start(data_dir, **options):
    config = daemon_config(data_dir)
    daemon = Daemon(config, simulate=1, sim_send_latency=0.01, sim_report_delay=0.05,
                    webhook_schedule=FAST_RETRIES, **options).start()
    assert daemon.pool.wait_ready(10)
    return daemon


@pytest.fixture
def daemon(tmp_path):
    running = start(tmp_path / "data")
    yield running
    running.stop()


class Receiver:
    """Records what arrives; answers with the statuses given, then 200."""

    def __init__(self, httpserver, path="/hook", statuses=()):
        self.arrived: queue.Queue = queue.Queue()
        self.statuses = list(statuses)
        httpserver.expect_request(path, method="POST").respond_with_handler(self.handle)
        self.url = httpserver.url_for(path)

    def handle(self, request):
        status = self.statuses.pop(0) if self.statuses else 200
        self.arrived.put((status, dict(request.headers), request.get_data()))
        return Response("ok" if status == 200 else "down", status=status)

    def next(self, timeout=10):
        return self.arrived.get(timeout=timeout)

    def until(self, predicate, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            status, headers, body = self.next(max(0.01, deadline - time.monotonic()))
            event = json.loads(body)
            if status == 200 and predicate(event):
                return headers, body, event


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
        status, headers, body = receiver.next()
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
        headers, body, event = receiver.until(lambda event: event["message_id"] == message["id"])
        assert event["event"] == "message.sent"
    finally:
        second.stop()


def test_cloud_style_send_with_a_callback_url(tmp_path, httpserver):
    receiver = Receiver(httpserver, path="/sms-status")
    daemon = start(tmp_path / "data")
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
    assert daemon.wait_until(lambda: (webhooks.deliveries(daemon.store, hook["id"]) or [{}])[0].get("attempts", 0) >= 1, 5)
    assert webhooks.deliveries(daemon.store, hook["id"])[0]["status"] != "delivered"
    assert elsewhere.arrived.empty()
