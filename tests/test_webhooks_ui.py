"""Managing webhooks: the page per webhook in real headless Chromium (edit, disable, test, delete after a
confirmation, the delivery log with redeliver), failing webhooks on the dashboard, the page on a 360 px phone,
and the API's twin `PATCH /api/v1/webhooks/<id>`. Deliveries go to a real local receiver (pytest-httpserver)."""


import time

import pytest
from playwright import sync_api as playwright_api

from modemgw import auth, webhooks
from modemgw.store.webhooks import COUNT_AT_MOST
from tests.support import Client, Receiver, logged_in_page, running_daemon
from webui import when

FAST_RETRIES = (0.05, 0.05, 0.05, 0.05)  # a delivery is dead after 5 attempts, within a second
expect = playwright_api.expect


@pytest.fixture(scope="session")
def httpserver_listen_address():
    return ("127.0.0.1", 0)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with running_daemon(tmp_path_factory, "webhooks-ui", {"alice": "admin", "oscar": "operator"}, modems=1,
                        sim_send_latency=0.01, sim_report_delay=0.05, webhook_schedule=FAST_RETRIES) as running:
        yield running


def deliveries(daemon, hook_id):
    return webhooks.deliveries(daemon.store, hook_id)


def audited(daemon, action):
    return [(entry["actor"], entry["target"]) for entry in daemon.gateway.audit_log(action=action)]


def test_a_webhook_is_edited_tested_disabled_and_deleted_on_its_page(browser, daemon, httpserver):
    failing = Receiver(httpserver, "/down", statuses=[500] * 5)  # five failed attempts: a dead letter
    fixed = Receiver(httpserver, "/up")
    page = logged_in_page(browser, daemon)
    page.goto(daemon.url + "ui/settings")
    page.get_by_label("URL", exact=True).fill(failing.url)
    page.locator("#add-webhook").get_by_label("message.sent").check()  # the same checkboxes as the webhook's page
    page.get_by_role("button", name="Add webhook").click()
    expect(page.locator("#new-webhook-secret")).to_contain_text("whsec_")
    [hook] = [row for row in daemon.gateway.webhooks() if row["url"] == failing.url]
    assert audited(daemon, "webhook.create") == [("user alice", f"webhook {hook['id']}")]

    [message] = daemon.gateway.submit("Webhook log", "+447700902001", request_report=False)["messages"]
    assert daemon.wait_until(lambda: [d["status"] for d in deliveries(daemon, hook["id"])] == ["dead"], 10)

    # failing: named on the dashboard with a link to its page
    page.goto(daemon.url)
    notice = page.locator("#failing-webhooks")
    expect(notice).to_contain_text(failing.url)
    expect(notice).to_contain_text("the last 5 attempts failed")
    expect(notice).to_contain_text("HTTP 500")
    notice.get_by_role("link", name=failing.url).click()
    expect(page.get_by_role("heading", name=f"Webhook {hook['id']}")).to_be_visible()

    # the delivery log: time, event, the message (a link), the status and error, attempts, next attempt
    row = page.locator("table.deliveries tbody tr").first
    expect(row.locator("td[data-label=Time] time")).to_have_text(when(deliveries(daemon, hook["id"])[0]["created_at"]))
    expect(row.locator("td[data-label=Event]")).to_have_text("message.sent")
    expect(row.locator("td[data-label=Result]")).to_contain_text("dead")
    expect(row.locator("td[data-label=Result]")).to_contain_text("HTTP 500")
    expect(row.locator("td[data-label=Attempts]")).to_have_text("5")
    expect(row.locator("td[data-label='Next attempt']")).to_have_text("—")
    expect(page.locator(".webhook-failing")).to_contain_text("the last 5 attempts in a row failed")

    # fix the URL and the events, then redeliver: it reaches the new URL, and the webhook is no longer failing
    page.get_by_label("URL", exact=True).fill(fixed.url)
    page.get_by_label("message.delivered").check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Webhook saved.")
    changed = webhooks.webhook(daemon.store, hook["id"])
    assert (changed["url"], changed["events"], changed["enabled"]) == (fixed.url, "message.sent,message.delivered", 1)
    page.get_by_role("button", name=f"Redeliver delivery {deliveries(daemon, hook['id'])[0]['id']}").click()
    status, headers, body = fixed.next()
    assert status == 200 and headers["X-Modemgw-Event"] == "message.sent"
    page.wait_for_load_state()  # the Redeliver form's own page first: a reload during it lost the page (CI)
    page.reload()
    expect(row.locator("td[data-label=Result]")).to_contain_text("HTTP 200")
    expect(row.get_by_role("link", name=f"message {message['id']}")).to_be_visible()
    row.get_by_role("link", name=f"message {message['id']}").click()
    expect(page.get_by_role("heading", name=f"Message {message['id']}")).to_be_visible()
    page.go_back()
    page.goto(daemon.url)
    expect(page.locator("#failing-webhooks")).to_have_count(0)

    # a test event, signed, whatever events the webhook chose
    page.goto(f"{daemon.url}ui/webhooks/{hook['id']}")
    page.get_by_role("button", name="Send a test event").click()
    expect(page.get_by_role("status")).to_contain_text("Test event evt_")
    _, headers, body = fixed.next()
    assert headers["X-Modemgw-Event"] == "webhook.test" and b'"test": true' in body

    # disabled: no new deliveries, and the test button says it cannot be used
    page.get_by_role("button", name="Disable").click()
    expect(page.locator("#webhook-state")).to_have_text("disabled")
    expect(page.get_by_role("button", name="Send a test event")).to_be_disabled()
    before = len(deliveries(daemon, hook["id"]))
    witness = Receiver(httpserver, "/witness")  # an enabled webhook: its delivery is queued with any other's
    watching = webhooks.create_webhook(daemon.store, witness.url, ["message.sent"])
    [other] = daemon.gateway.submit("While disabled", "+447700902002", request_report=False)["messages"]
    witness.until(lambda event: event["message_id"] == other["id"])
    assert len(deliveries(daemon, hook["id"])) == before
    webhooks.delete_webhook(daemon.store, watching["id"])
    page.get_by_role("button", name="Enable").click()
    expect(page.locator("#webhook-state")).to_have_text("enabled")

    # delete asks first; "Keep it" keeps it, "Delete for good" deletes it
    page.get_by_role("button", name="Delete…").click()
    expect(page.locator("#confirm-delete")).to_contain_text("This cannot be undone")
    page.get_by_role("link", name="Keep it").click()
    assert webhooks.webhook(daemon.store, hook["id"])
    page.get_by_role("button", name="Delete…").click()
    page.get_by_role("button", name="Delete for good").click()
    expect(page.get_by_role("heading", name="Settings")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("deleted")
    assert all(row["id"] != hook["id"] for row in daemon.gateway.webhooks())
    target = ("user alice", f"webhook {hook['id']}")
    for action in ("webhook.update", "webhook.test", "webhook.redeliver", "webhook.delete"):
        assert target in audited(daemon, action), action
    assert page.goto(f"{daemon.url}ui/webhooks/{hook['id']}").status == 404


def test_operators_see_a_failing_webhook_but_not_its_page(browser, daemon, httpserver):
    receiver = Receiver(httpserver, "/operators", statuses=[503] * 5)
    hook = webhooks.create_webhook(daemon.store, receiver.url, ["*"])
    try:
        daemon.webhooks.test(hook["id"])
        assert daemon.wait_until(lambda: deliveries(daemon, hook["id"])[0]["status"] == "dead", 10)
        page = logged_in_page(browser, daemon, "oscar")
        expect(page.locator("#failing-webhooks")).to_contain_text(receiver.url)
        expect(page.locator("#failing-webhooks")).to_contain_text("tell an administrator")
        expect(page.locator("#failing-webhooks a")).to_have_count(0)
        assert page.goto(f"{daemon.url}ui/webhooks/{hook['id']}").status == 403
    finally:
        webhooks.delete_webhook(daemon.store, hook["id"])


def test_the_webhook_pages_fit_a_360_px_phone(browser, daemon, httpserver):
    receiver = Receiver(httpserver, "/a-rather-long-path/for-a-receiver/that-never-answers-well/" + "x" * 60,
                        statuses=[500] * 5)
    hook = webhooks.create_webhook(daemon.store, receiver.url, ["*"])
    try:
        [message] = daemon.gateway.submit("Phone", "+447700902003", request_report=False)["messages"]
        assert daemon.wait_until(lambda: any(d["status"] == "dead" and d["message_id"] == message["id"]
                                             for d in deliveries(daemon, hook["id"])), 10)
        page = logged_in_page(browser, daemon, viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True,
                         device_scale_factor=2)
        for path in ("", "ui/settings", f"ui/webhooks/{hook['id']}"):
            page.goto(daemon.url + path)
            scroll, client = page.evaluate("[document.documentElement.scrollWidth, "
                                           "document.documentElement.clientWidth]")
            assert scroll <= client, (path, scroll, client)
        # every cell of the log is shown on the phone, each with its column's name
        row = page.locator("table.deliveries tbody tr").first
        for label in ("Time", "Event", "Message", "Result", "Attempts", "Next attempt"):
            expect(row.locator(f"td[data-label='{label}']")).to_be_visible()
        expect(row.get_by_role("button", name="Redeliver")).to_be_visible()
    finally:
        webhooks.delete_webhook(daemon.store, hook["id"])


def test_the_api_patches_a_webhook_and_a_disabled_one_gets_no_new_deliveries(daemon, httpserver):
    receiver = Receiver(httpserver, "/api-hook")
    admin = Client(daemon.url, auth.create_key(daemon.store, "hooks", ("admin",))[0])
    status, _, hook = admin.call("POST", "/api/v1/webhooks", {"url": receiver.url, "events": ["message.sent"]})
    assert status == 201
    path = f"/api/v1/webhooks/{hook['id']}"
    status, _, changed = admin.call("PATCH", path, {"enabled": False, "events": ["message.sent", "modem.online"]})
    assert status == 200 and changed["enabled"] is False and changed["events"] == ["message.sent", "modem.online"]
    assert "secret" not in changed
    witness = Receiver(httpserver, "/api-witness")  # an enabled webhook: its delivery is queued with any other's
    watching = webhooks.create_webhook(daemon.store, witness.url, ["message.sent"])
    [quiet] = daemon.gateway.submit("Not for a disabled webhook", "+447700902004", request_report=False)["messages"]
    witness.until(lambda event: event["message_id"] == quiet["id"])
    assert admin.call("GET", path + "/deliveries")[2]["data"] == []
    webhooks.delete_webhook(daemon.store, watching["id"])
    status, _, problem = admin.call("PATCH", path, {"url": "http://exa mple.org/"})
    assert status == 400 and problem["field"] == "url" and "space" in problem["detail"]
    status, _, problem = admin.call("PATCH", path, {"events": ["message.lost"]})
    assert status == 400 and problem["field"] == "events"
    status, _, problem = admin.call("PATCH", path, {"enabled": "yes"})
    assert status == 400 and problem["field"] == "enabled"
    assert admin.call("PATCH", path, {})[0] == 400
    status, _, everything = admin.call("PATCH", path, {"events": ["message.sent", "*"]})
    assert status == 200 and everything["events"] == ["*"]  # "*" beside other names means every event
    assert admin.call("PATCH", "/api/v1/webhooks/999999", {"enabled": True})[0] == 404
    status, _, changed = admin.call("PATCH", path, {"enabled": True})
    assert status == 200 and changed["enabled"] is True
    [message] = daemon.gateway.submit("For an enabled one", "+447700902005", request_report=False)["messages"]
    receiver.until(lambda event: event.get("message_id") == message["id"])
    actor = f"key hooks (#{auth.list_keys(daemon.store)[-1]['id']})"
    assert (actor, f"webhook {hook['id']}") in audited(daemon, "webhook.update")
    assert admin.call("DELETE", path)[0] == 204
    assert (actor, f"webhook {hook['id']}") in audited(daemon, "webhook.delete")


def test_a_webhook_with_more_than_10000_deliveries_shows_10000_plus_on_a_phone_and_a_laptop(browser, daemon,
                                                                                             httpserver):
    receiver = Receiver(httpserver, "/many")
    hook = webhooks.create_webhook(daemon.store, receiver.url, ["message.sent"])
    try:
        # 10,001 delivered, written in one transaction (no store call writes delivered rows): more than the page
        # counts exactly. Pending and dead stay 0, counted exactly (any of them would lower "delivered" below 10,000)
        now = time.time()
        rows = [(hook["id"], receiver.url, f"evt_many_{n}", now - n, now - n) for n in range(COUNT_AT_MOST + 1)]
        started = time.monotonic()
        with daemon.store.transaction() as conn:
            conn.executemany("INSERT INTO webhook_deliveries (webhook_id, url, event, event_id, status, attempts, "
                             "last_status_code, created_at, delivered_at) VALUES (?, ?, 'message.sent', ?, "
                             "'delivered', 1, 200, ?, ?)", rows)
        assert time.monotonic() - started < 2
        for viewport, phone in (({"width": 360, "height": 740}, True), ({"width": 1366, "height": 800}, False)):
            page = logged_in_page(browser, daemon, viewport=viewport, is_mobile=phone, has_touch=phone,
                                  device_scale_factor=2 if phone else 1)
            page.goto(f"{daemon.url}ui/webhooks/{hook['id']}")
            counts = page.locator("#delivery-counts")
            expect(counts).to_have_text("0 pending · 0 dead · 10,000+ delivered")
            expect(page.locator("#log-status option[value='']")).to_have_text("all (10,000+)")
            expect(page.locator("#log-status option[value=delivered]")).to_have_text("delivered (10,000+)")
            expect(page.locator("#log-status option[value=dead]")).to_have_text("dead (0)")
            expect(counts).to_be_visible()
            scroll, client = page.evaluate("[document.documentElement.scrollWidth, "
                                           "document.documentElement.clientWidth]")
            assert scroll <= client, (viewport, scroll, client)
            # the words "10,000+ delivered" themselves: on screen, not clipped by the paragraph or the viewport
            # the words "10,000+ delivered" themselves: laid out, and within the viewport's width
            left, right, width, height = page.evaluate("""() => {
                const text = document.getElementById('delivery-counts').firstChild, words = '10,000+ delivered';
                const range = document.createRange(), at = text.data.indexOf(words);
                range.setStart(text, at);
                range.setEnd(text, at + words.length);
                const box = range.getBoundingClientRect();
                return [box.left, box.right, box.width, box.height];
            }""")
            assert width > 0 and height > 0 and left >= 0 and right <= viewport["width"], (viewport, left, right)
            page.close()
    finally:
        webhooks.delete_webhook(daemon.store, hook["id"])
