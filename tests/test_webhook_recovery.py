"""Recovering a failing webhook (issues #16, #17: a new user fixed webhook 2's URL and ~900 deliveries stayed on
their old retry times): a new URL or enabling the webhook makes its pending deliveries due at once, "Retry pending
now" and "Redeliver all dead" on the webhook's page (counted, audited) and in the API, the delivery log a page at
a time filtered by status, and the same event checkboxes on Settings' "Add webhook" as on the webhook's page.
Deliveries go to a real local receiver (pytest-httpserver); the UI runs in real headless Chromium."""

import time

import pytest
from playwright import sync_api as playwright_api

from modemgw import auth, webhooks
from modemgw.store import NotFound, Store
from tests.support import Client, Receiver, logged_in_page, running_daemon

# One retry an hour away, then dead: a failed delivery waits far longer than any test, unless something makes it
# due; a retried one that fails again is dead at once.
SCHEDULE = (3600.0,)
expect = playwright_api.expect


@pytest.fixture(scope="session")
def httpserver_listen_address():
    return ("127.0.0.1", 0)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with running_daemon(tmp_path_factory, "webhook-recovery", {"alice": "admin"},
                        webhook_schedule=SCHEDULE) as running:
        yield running


@pytest.fixture(scope="module")
def admin(daemon):
    return Client(daemon.url, auth.create_key(daemon.store, "recovery", ("admin",))[0])


def log(daemon, hook_id, **page):
    return webhooks.deliveries(daemon.store, hook_id, 1000, **page)


def statuses(daemon, hook_id):
    return sorted(row["status"] for row in log(daemon, hook_id))


def audited(daemon, action):
    return [(entry["target"], entry["detail"]) for entry in daemon.gateway.audit_log(action=action)]


def failed_once(daemon, receiver, count, events=("*",)):
    """A webhook to `receiver` whose `count` test deliveries each failed once and now wait an hour to retry."""
    hook = webhooks.create_webhook(daemon.store, receiver.url, list(events))
    for _ in range(count):
        daemon.webhooks.test(hook["id"])
    assert daemon.wait_until(lambda: [row["attempts"] for row in log(daemon, hook["id"])] == [1] * count, 10)
    assert all(row["next_attempt_at"] > time.time() + 3000 for row in log(daemon, hook["id"]))
    drain(receiver)
    return hook


def drain(receiver):
    """Forget what `receiver` answered so far: the test reads what comes next."""
    while not receiver.arrived.empty():
        receiver.arrived.get_nowait()


def test_the_outbox_moves_only_what_it_should(tmp_path):
    """The store's rules, on a real SQLite file: a new URL or enabling makes only pending deliveries due (never a
    delivered or dead one, never one of another webhook), retry keeps attempts, redeliver-dead resets them."""
    store = Store(tmp_path / "modemgw.db")
    try:
        now = time.time()
        hook = store.add_webhook("http://192.0.2.1/a", ["*"], "secret", now)
        other = store.add_webhook("http://192.0.2.2/b", ["*"], "secret", now)
        store.add_webhook_deliveries("webhook.test", None, [(hook["id"], hook["url"], f"evt_{index}", "{}")
                                                            for index in range(4)], now)
        store.add_webhook_deliveries("webhook.test", None, [(other["id"], other["url"], "evt_other", "{}")], now)
        waiting, dead, delivered, due = store.deliveries_for_webhook(hook["id"])[::-1]
        [theirs] = store.deliveries_for_webhook(other["id"])
        later = now + 3600
        store.record_webhook_attempt(waiting["id"], 3, now, 500, "HTTP 500", later)
        store.record_webhook_attempt(dead["id"], 5, now, 500, "HTTP 500", None)
        store.record_webhook_attempt(delivered["id"], 1, now, 200, None, None)
        store.record_webhook_attempt(theirs["id"], 1, now, 500, "HTTP 500", later)

        assert store.update_webhook(hook["id"], events=["message.sent"], now=now + 1)[1] == 0  # no new URL
        row, made_due = store.update_webhook(hook["id"], url="http://192.0.2.9/fixed", now=now + 1)
        assert made_due == 1 and row["url"] == "http://192.0.2.9/fixed"  # `due` was due already
        rows = {item["id"]: item for item in store.deliveries_for_webhook(hook["id"])}
        assert rows[waiting["id"]]["next_attempt_at"] == now + 1 and rows[waiting["id"]]["attempts"] == 3
        assert rows[due["id"]]["next_attempt_at"] == now and rows[due["id"]]["url"] == row["url"]
        assert rows[dead["id"]]["status"] == "dead" and rows[dead["id"]]["url"] == hook["url"]
        assert store.deliveries_for_webhook(other["id"])[0]["next_attempt_at"] == later  # another webhook's

        store.record_webhook_attempt(waiting["id"], 4, now, 500, "HTTP 500", later)
        store.update_webhook(hook["id"], enabled=False, now=now + 2)
        assert store.update_webhook(hook["id"], enabled=False, now=now + 2)[1] == 0  # disabled again: nothing
        assert store.update_webhook(hook["id"], enabled=True, now=now + 2)[1] == 1
        assert store.update_webhook(hook["id"], enabled=True, now=now + 3)[1] == 0  # enabled already: nothing

        store.record_webhook_attempt(waiting["id"], 5, now, 500, "HTTP 500", later)
        assert store.retry_pending_webhook_deliveries(hook["id"], now + 4) == 2  # every pending one, counted
        pending = {item["id"]: item for item in store.deliveries_for_webhook(hook["id"], status="pending")}
        assert pending[waiting["id"]]["next_attempt_at"] == now + 4 and pending[waiting["id"]]["attempts"] == 5
        assert pending[due["id"]]["next_attempt_at"] == now  # due earlier already: it keeps its place
        assert store.webhook_delivery_counts(hook["id"]) == {"pending": 2, "delivered": 1, "dead": 1, "more": 0}
        # beyond `most` deliveries the count stops (the page says "3+"): pending and dead stay exact
        assert store.webhook_delivery_counts(hook["id"], most=3) == {"pending": 2, "delivered": 0, "dead": 1, "more": 1}
        assert store.webhook_delivery_counts(hook["id"], most=4)["more"] == 0
        assert store.redeliver_dead_webhook_deliveries(hook["id"], now + 5) == 1
        again = {item["id"]: item for item in store.deliveries_for_webhook(hook["id"])}[dead["id"]]
        assert (again["status"], again["attempts"], again["url"]) == ("pending", 0, "http://192.0.2.9/fixed")
        assert store.redeliver_dead_webhook_deliveries(hook["id"], now + 5) == 0
        for call in (store.retry_pending_webhook_deliveries, store.redeliver_dead_webhook_deliveries):
            with pytest.raises(NotFound):
                call(999, now)
        with pytest.raises(NotFound):
            store.webhook_delivery_counts(999)
        # pages: newest first below a cursor, or the ones just above it, newest first too
        ids = [item["id"] for item in store.deliveries_for_webhook(hook["id"])]
        assert store.deliveries_for_webhook(hook["id"], 2) == store.deliveries_for_webhook(hook["id"])[:2]
        assert [item["id"] for item in store.deliveries_for_webhook(hook["id"], 2, before=ids[1])] == ids[2:4]
        assert [item["id"] for item in store.deliveries_for_webhook(hook["id"], 2, after=ids[3])] == ids[1:3]
    finally:
        store.close()


def test_a_new_url_sends_the_waiting_deliveries_at_once(daemon, httpserver):
    broken = Receiver(httpserver, "/typo", statuses=[500] * 5)
    fixed = Receiver(httpserver, "/fixed")
    hook = failed_once(daemon, broken, 5)
    row, made_due = daemon.webhooks.update(hook["id"], url=fixed.url)
    assert made_due == 5 and row["url"] == fixed.url
    # the sender is woken: they reach the new URL now, not in an hour
    arrived = {fixed.next(timeout=5)[1]["X-Modemgw-Event-Id"] for _ in range(5)}
    assert arrived == {row["event_id"] for row in log(daemon, hook["id"])}
    assert daemon.wait_until(lambda: statuses(daemon, hook["id"]) == ["delivered"] * 5, 5)
    # saving the same URL again, or only the events, moves nothing
    assert daemon.webhooks.update(hook["id"], url=fixed.url, events=["message.sent"])[1] == 0


def test_enabling_a_webhook_sends_the_waiting_deliveries_at_once(daemon, httpserver):
    receiver = Receiver(httpserver, "/enable", statuses=[503] * 3)
    hook = failed_once(daemon, receiver, 3)
    assert daemon.webhooks.update(hook["id"], enabled=False)[1] == 0  # disabling holds them; it makes nothing due
    assert daemon.webhooks.update(hook["id"], enabled=True)[1] == 3
    assert [receiver.next(timeout=5)[0] for _ in range(3)] == [200] * 3
    assert daemon.wait_until(lambda: statuses(daemon, hook["id"]) == ["delivered"] * 3, 5)


def test_the_api_retries_pending_deliveries_now_and_redelivers_the_dead(daemon, admin, httpserver):
    receiver = Receiver(httpserver, "/api-recover", statuses=[500] * 8)  # 4 first attempts, 4 retries; then 200
    hook = failed_once(daemon, receiver, 4)
    path = f"/api/v1/webhooks/{hook['id']}"

    status, _, answer = admin.call("POST", path + "/retry")
    assert (status, answer) == (202, {"webhook_id": hook["id"], "pending": 4})
    # retried at once; still failing, and the schedule has no retry left: dead
    assert daemon.wait_until(lambda: statuses(daemon, hook["id"]) == ["dead"] * 4, 5)
    status, _, page = admin.call("GET", path + "/deliveries?status=dead")
    assert status == 200 and [row["attempts"] for row in page["data"]] == [2] * 4 and page["next_cursor"] is None

    drain(receiver)
    status, _, answer = admin.call("POST", path + "/redeliver-dead")
    assert (status, answer) == (202, {"webhook_id": hook["id"], "requeued": 4})
    assert [receiver.next(timeout=5)[0] for _ in range(4)] == [200] * 4  # the receiver works again
    assert daemon.wait_until(lambda: statuses(daemon, hook["id"]) == ["delivered"] * 4, 5)
    assert [row["attempts"] for row in log(daemon, hook["id"])] == [1] * 4  # attempts started over
    assert admin.call("POST", path + "/redeliver-dead")[2]["requeued"] == 0
    assert admin.call("POST", path + "/retry")[2]["pending"] == 0

    target = f"webhook {hook['id']}"
    assert (target, {"pending": 4}) in audited(daemon, "webhook.retry")
    assert (target, {"requeued": 4}) in audited(daemon, "webhook.redeliver_dead")
    for action in ("retry", "redeliver-dead"):
        status, _, problem = admin.call("POST", f"/api/v1/webhooks/999999/{action}")
        assert status == 404 and problem["type"].endswith("not-found"), problem
        assert admin.call("POST", f"{path}/{action}", key=None)[0] == 401
    read_only = auth.create_key(daemon.store, "reader", ("read",))[0]
    assert admin.call("POST", path + "/retry", key=read_only)[0] == 403
    assert ("webhook 999999", {"error": "no webhook 999999"}) in audited(daemon, "webhook.retry")


def fill_log(daemon, count, dead_every=3):
    """A disabled webhook (nothing is sent) with `count` deliveries, every `dead_every`th of them dead: its row."""
    hook = webhooks.create_webhook(daemon.store, "http://127.0.0.1:9/never", ["*"])
    daemon.webhooks.update(hook["id"], enabled=False)
    now = time.time()
    daemon.store.add_webhook_deliveries("webhook.test", None, [(hook["id"], hook["url"], f"evt_log{index}", "{}")
                                                               for index in range(count)], now)
    for index, row in enumerate(reversed(log(daemon, hook["id"]))):
        if index % dead_every == 0:
            daemon.store.record_webhook_attempt(row["id"], 1, now, 500, "HTTP 500", None)
    return hook


def test_the_api_pages_a_delivery_log_and_filters_it_by_status(daemon, admin):
    hook = fill_log(daemon, 120)
    path = f"/api/v1/webhooks/{hook['id']}/deliveries"
    seen, cursor = [], None
    while True:
        status, _, page = admin.call("GET", path + "?limit=50" + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200
        seen += [row["id"] for row in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [row["id"] for row in log(daemon, hook["id"])] and len(seen) == 120  # newest first, each once
    status, _, dead = admin.call("GET", path + "?status=dead&limit=500")
    assert {row["status"] for row in dead["data"]} == {"dead"} and len(dead["data"]) == 40
    status, _, problem = admin.call("GET", path + "?status=lost")
    assert status == 400 and problem["field"] == "status" and "pending, delivered, dead" in problem["detail"]


def test_the_webhook_page_pages_its_log_filters_it_and_recovers_it(browser, daemon, httpserver):
    big = fill_log(daemon, 120)
    page = logged_in_page(browser, daemon)
    page.goto(f"{daemon.url}ui/webhooks/{big['id']}")
    rows = page.locator("table.deliveries tbody tr")
    newest_first = [row["id"] for row in log(daemon, big["id"])]
    expect(rows).to_have_count(50)
    expect(rows.first).to_have_attribute("data-delivery", str(newest_first[0]))
    expect(page.get_by_role("link", name="← Newer")).to_have_count(0)
    page.get_by_role("link", name="Older →").click()
    expect(rows.first).to_have_attribute("data-delivery", str(newest_first[50]))
    page.get_by_role("link", name="Older →").click()
    expect(rows).to_have_count(20)
    expect(rows.last).to_have_attribute("data-delivery", str(newest_first[-1]))
    expect(page.get_by_role("link", name="Older →")).to_have_count(0)
    page.get_by_role("link", name="← Newer").click()
    expect(rows.first).to_have_attribute("data-delivery", str(newest_first[50]))
    page.get_by_role("link", name="← Newer").click()
    expect(rows.first).to_have_attribute("data-delivery", str(newest_first[0]))
    expect(page.get_by_role("link", name="← Newer")).to_have_count(0)
    # filtered: only the dead ones, with their count in the choice
    page.get_by_label("Show").select_option("dead")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_label("Show").locator("option:checked")).to_have_text("dead (40)")
    expect(rows).to_have_count(40)
    for cell in rows.locator("td[data-label=Result] span.status").all_text_contents():
        assert cell == "dead"
    expect(page.locator("#delivery-counts")).to_have_text(
        "80 pending (held while the webhook is disabled) · 40 dead · 0 delivered")

    # a failing webhook: its deliveries wait an hour; the page retries them now, they die, and come back
    receiver = Receiver(httpserver, "/page-recover", statuses=[500] * 6)
    hook = failed_once(daemon, receiver, 3)
    page.goto(f"{daemon.url}ui/webhooks/{hook['id']}")
    expect(page.get_by_role("button", name="Redeliver all dead (0)")).to_be_disabled()
    page.get_by_role("button", name="Retry pending now (3)").click()
    expect(page.get_by_role("status")).to_have_text("3 pending deliveries are due now; they go out one at a time.")
    assert daemon.wait_until(lambda: statuses(daemon, hook["id"]) == ["dead"] * 3, 5)
    page.reload()
    expect(page.get_by_role("button", name="Retry pending now (0)")).to_be_disabled()
    page.get_by_role("button", name="Redeliver all dead (3)").click()
    expect(page.get_by_role("status")).to_have_text("3 dead deliveries queued again, their attempts starting over.")
    assert daemon.wait_until(lambda: statuses(daemon, hook["id"]) == ["delivered"] * 3, 5)
    page.reload()
    expect(page.locator("#delivery-counts")).to_have_text("0 pending · 0 dead · 3 delivered")
    target = f"webhook {hook['id']}"
    assert (target, {"pending": 3}) in audited(daemon, "webhook.retry")
    assert (target, {"requeued": 3}) in audited(daemon, "webhook.redeliver_dead")

    # saving a corrected URL says how many waiting deliveries it sent at once
    broken = Receiver(httpserver, "/page-typo", statuses=[500] * 2)
    fixed = Receiver(httpserver, "/page-fixed")
    typo = failed_once(daemon, broken, 2)
    page.goto(f"{daemon.url}ui/webhooks/{typo['id']}")
    page.get_by_label("URL", exact=True).fill(fixed.url)
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text(
        "Webhook saved. 2 pending deliveries that waited for a retry go out now.")
    assert [fixed.next(timeout=5)[0] for _ in range(2)] == [200, 200]


def test_settings_adds_a_webhook_with_the_same_event_checkboxes_as_its_page(browser, daemon, httpserver):
    receiver = Receiver(httpserver, "/added")
    page = logged_in_page(browser, daemon)
    page.goto(f"{daemon.url}ui/settings")
    form = page.locator("#add-webhook")
    expect(form.locator("select[multiple]")).to_have_count(0)  # no Ctrl-click list any more
    form.get_by_label("URL", exact=True).fill(receiver.url)
    form.get_by_label("message.delivered").check()
    form.get_by_label("message.failed").check()
    form.get_by_role("button", name="Add webhook").click()
    expect(page.locator("#new-webhook-secret")).to_contain_text("whsec_")
    [hook] = [row for row in daemon.gateway.webhooks() if row["url"] == receiver.url]
    assert hook["events"] == "message.delivered,message.failed"
    on_settings = page.locator("#add-webhook fieldset.webhook-events input[type=checkbox]")
    names = [on_settings.nth(index).get_attribute("value") for index in range(on_settings.count())]
    page.goto(f"{daemon.url}ui/webhooks/{hook['id']}")
    on_page = page.locator("fieldset.webhook-events input[type=checkbox]")
    assert names == [on_page.nth(index).get_attribute("value") for index in range(on_page.count())]
    assert names == ["*", *webhooks.EVENTS]
    expect(page.get_by_label("message.delivered")).to_be_checked()
    expect(page.get_by_label("message.sent")).not_to_be_checked()


def test_the_recovery_and_the_paged_log_fit_a_360_px_phone(browser, daemon):
    hook = fill_log(daemon, 60)
    page = logged_in_page(browser, daemon, viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True,
                     device_scale_factor=2)
    for path in ("ui/settings", f"ui/webhooks/{hook['id']}", f"ui/webhooks/{hook['id']}?status=dead"):
        page.goto(daemon.url + path)
        scroll, client = page.evaluate("[document.documentElement.scrollWidth, "
                                       "document.documentElement.clientWidth]")
        assert scroll <= client, (path, scroll, client)
    for name in ("Retry pending now", "Redeliver all dead", "Filter"):
        expect(page.get_by_role("button", name=name)).to_be_visible()
    page.goto(f"{daemon.url}ui/webhooks/{hook['id']}")
    expect(page.get_by_role("link", name="Older →")).to_be_visible()
