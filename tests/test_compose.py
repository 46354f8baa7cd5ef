"""Compose checks everything before the confirm page (issue #15): every recipient with its line, template fields,
the segment limit, opt-outs and repeats; the confirm page sends the good rows only, keeps the uploaded file across
Back, offers the rejected rows as a formula-safe CSV, and queues a batch once however often its form is sent.

Real Chromium for the flows a person clicks through (Debian's chromium via Playwright, as tests/test_webui.py), the
Flask test client over a real daemon for the rest."""

import csv
import html
import io
import re

import pytest
from playwright import sync_api as playwright_api

from tests.support import PASSWORD, csrf_token, eventually, log_in, logged_in_page, running_daemon

LONG_BODY = "Long message " + "x" * 1987  # 2,000 GSM-7 characters: 14 segments, over the default limit of 10


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with running_daemon(tmp_path_factory, "compose", {"carla": "operator"}, modems=2, sim_send_latency=0.02,
                        sim_report_delay=0.1) as running:
        yield running


def logged_in(browser, daemon, width=1100):
    return logged_in_page(browser, daemon, "carla", viewport={"width": width, "height": 800})


def sent(daemon, marker: str) -> dict[str, str]:
    """The messages queued whose text holds `marker`: recipient -> text."""
    return {row["recipient"]: row["body"] for row in daemon.gateway.messages(500, search=marker)}


@pytest.fixture
def ui(daemon):
    """The UI through Flask's test client (same daemon, no browser), logged in."""
    from modemgw.app import create_app

    app = create_app(daemon)
    app.config.update(TESTING=True)
    client = app.test_client()
    page = client.get("/ui/login").get_data(as_text=True)
    answer = client.post("/ui/login", data={"username": "carla", "password": PASSWORD, "csrf_token": csrf_token(page)})
    assert answer.status_code == 302
    return client


def review(ui, data: dict, file: bytes | None = None, name="list.csv"):
    token = csrf_token(ui.get("/ui/compose").get_data(as_text=True))
    form = {"csrf_token": token, "body": "x", "to": ""} | data
    if file is not None:
        form["csv"] = (io.BytesIO(file), name)
    return ui.post("/ui/compose", data=form, content_type="multipart/form-data")


def hidden_fields(page: str, form_id="confirm-form") -> dict[str, str]:
    """The named fields of a form of `page`, as the browser would post them (its hidden inputs)."""
    form = page.split(f'id="{form_id}"', 1)[1].split("</form>", 1)[0]
    return {name: html.unescape(value) for name, value in re.findall(r'<input type="hidden" name="([^"]+)" '
                                                                      r'value="([^"]*)"', form)}


# --- in Chromium ------------------------------------------------------------------------------------------------

def test_a_csv_with_bad_rows_is_checked_before_sending_and_only_its_good_rows_go_once(browser, daemon, tmp_path):
    listing = tmp_path / "guests.csv"
    listing.write_text("phone,name,time\n+447700902001,Ann,9:30\n12ab,Bo,10:00\n+447700902003,Cy\n"
                       ",Di,11:00\n+447700902005,Ed,12:00\n")
    page = logged_in(browser, daemon)
    page.get_by_role("link", name="Compose").click()
    page.get_by_label("…or a CSV file").set_input_files(str(listing))
    page.get_by_label("Message", exact=True).fill("Hi {name}, see you at {time}. [batch-a]")
    page.get_by_role("button", name="Review…").click()

    rejected = page.locator("#rejected tbody tr")
    playwright_api.expect(rejected).to_have_count(3)
    playwright_api.expect(rejected.nth(0)).to_contain_text("line 3")
    playwright_api.expect(rejected.nth(0)).to_contain_text("12ab")
    playwright_api.expect(rejected.nth(1)).to_contain_text("line 4")
    playwright_api.expect(rejected.nth(1)).to_contain_text("short row")
    playwright_api.expect(rejected.nth(1)).to_contain_text("time")
    playwright_api.expect(rejected.nth(2)).to_contain_text("line 5")
    playwright_api.expect(rejected.nth(2)).to_contain_text("no phone number")
    playwright_api.expect(page.locator("#accepted tbody tr").nth(0)).to_contain_text("Hi Ann, see you at 9:30.")
    assert sent(daemon, "[batch-a]") == {}, "nothing is queued before the person confirms"

    page.get_by_role("button", name="Back").click()  # Back keeps the form and the file's rows
    playwright_api.expect(page.locator("#carried-file")).to_contain_text("guests.csv")
    playwright_api.expect(page.get_by_label("Message", exact=True)).to_have_value(
        "Hi {name}, see you at {time}. [batch-a]")
    page.get_by_role("button", name="Review…").click()  # no new upload
    playwright_api.expect(page.locator("#rejected tbody tr")).to_have_count(3)
    kept = page.content()

    page.get_by_role("button", name="Send the 2 good messages").click()
    playwright_api.expect(page.get_by_role("heading", name="Messages")).to_be_visible()
    expected = {"+447700902001": "Hi Ann, see you at 9:30. [batch-a]",
                "+447700902005": "Hi Ed, see you at 12:00. [batch-a]"}
    assert sent(daemon, "[batch-a]") == expected

    # Back to the confirm page and Send again. Chromium keeps no copy of a no-store page (it offers to send the
    # Review form again, which gives the same token: see test_the_same_confirm_form_sent_twice_queues_once); a
    # browser that does keep one shows this very page, served here as it was
    with pytest.raises(playwright_api.Error, match="ERR_CACHE_MISS"):
        page.go_back()
    page.route(f"{daemon.url}ui/kept-copy", lambda route: route.fulfill(body=kept, content_type="text/html"))
    page.goto(f"{daemon.url}ui/kept-copy")
    page.get_by_role("button", name="Send the 2 good messages").click()
    playwright_api.expect(page.locator(".flash")).to_contain_text("Already sent")
    assert sent(daemon, "[batch-a]") == expected, "nothing new was queued"


def test_a_semicolon_csv_in_windows_1252_fills_in_the_right_name(browser, daemon, tmp_path):
    listing = tmp_path / "kunden.csv"
    listing.write_bytes("name;mobile;note\nJörg Müller;+447700902101;Stammkunde, seit 2019\n".encode("cp1252"))
    page = logged_in(browser, daemon)
    page.goto(f"{daemon.url}ui/compose")
    page.get_by_label("…or a CSV file").set_input_files(str(listing))
    page.get_by_label("Message", exact=True).fill("Grüß Gott {name}! [batch-b]")
    page.get_by_role("button", name="Review…").click()
    playwright_api.expect(page.locator(".carried")).to_contain_text("semicolon-separated, Windows-1252")
    playwright_api.expect(page.locator("#accepted tbody tr")).to_have_count(1)
    playwright_api.expect(page.locator("#accepted")).to_contain_text("Grüß Gott Jörg Müller! [batch-b]")
    page.get_by_role("button", name="Send 1 message").click()
    playwright_api.expect(page.locator("#message-status")).to_be_visible()
    assert sent(daemon, "[batch-b]") == {"+447700902101": "Grüß Gott Jörg Müller! [batch-b]"}


def test_a_bad_number_and_a_too_long_body_are_shown_before_the_click(browser, daemon):
    page = logged_in(browser, daemon)
    page.goto(f"{daemon.url}ui/compose")
    page.get_by_label("Recipients").fill("+447700902201\n\n12ab")
    page.get_by_label("Message", exact=True).fill(LONG_BODY)
    counter = page.locator("#counter")
    playwright_api.expect(counter).to_contain_text("14 segments (limit 10)")
    assert "over" in (counter.get_attribute("class") or "")
    page.get_by_label("Message", exact=True).fill("Short")
    playwright_api.expect(counter).to_contain_text("1 segment (limit 10)")
    assert "over" not in (counter.get_attribute("class") or "")
    page.get_by_label("Message", exact=True).fill(LONG_BODY)

    page.get_by_role("button", name="Review…").click()
    playwright_api.expect(page.get_by_role("alert")).to_contain_text("needs 14 segments")
    playwright_api.expect(page.get_by_role("alert")).to_contain_text("the limit is 10")
    # the good number is not a "rejected row": the text is too long for everyone, said once at the top
    rows = page.locator("#rejected tbody tr")
    playwright_api.expect(rows).to_have_count(1)
    playwright_api.expect(rows.nth(0)).to_contain_text("box line 3")
    playwright_api.expect(rows.nth(0)).to_contain_text("12ab")
    playwright_api.expect(page.locator("#rejected")).not_to_contain_text("+447700902201")
    playwright_api.expect(page.locator("#rejected-count")).to_have_text("1")
    playwright_api.expect(page.locator("#rejected-lead")).to_have_text("These numbers are not sent.")
    playwright_api.expect(page.locator("#rejected-advice")).to_contain_text("Recipients box")
    playwright_api.expect(page.locator("#rejected-advice")).not_to_contain_text("upload")
    playwright_api.expect(page.locator("#download-rejected")).to_have_count(0)  # nothing came from a file
    playwright_api.expect(page.locator("#nothing-to-send")).to_contain_text("shorten the message")
    playwright_api.expect(page.locator("#send")).to_have_count(0)  # nothing good: no Send, only Back
    page.get_by_role("button", name="Back").click()
    playwright_api.expect(page.get_by_label("Recipients")).to_have_value("+447700902201\n\n12ab")
    assert daemon.gateway.messages(5, recipient="+447700902201") == []


def test_the_confirm_page_fits_a_phone(browser, daemon, tmp_path):
    listing = tmp_path / "wide.csv"
    rows = "".join(f"+4477009023{index:02d},Someone with a rather long name number {index},"
                   f"https://example.com/a/very/long/link/that/does/not/break/easily/{index}\n" for index in range(25))
    listing.write_text("phone,name,link\n" + rows + "not-a-number-at-all-and-rather-long-too,X,Y\n")
    page = logged_in(browser, daemon, width=360)
    page.goto(f"{daemon.url}ui/compose")
    page.get_by_label("…or a CSV file").set_input_files(str(listing))
    page.get_by_label("Message", exact=True).fill("Dear {name}, your appointment details are at {link} [batch-d]")
    page.get_by_role("button", name="Review…").click()
    playwright_api.expect(page.locator("#accepted tbody tr")).to_have_count(20)
    playwright_api.expect(page.get_by_text("…and 5 more.")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    page.get_by_role("button", name="Back").click()
    playwright_api.expect(page.get_by_role("button", name="Review…")).to_be_visible()  # the compose page, loaded
    page.wait_for_load_state()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360


# --- through the Flask test client -------------------------------------------------------------------------------

def test_the_rejected_rows_download_as_a_formula_safe_csv_with_reasons(ui):
    data = (b"name;phone;note\n=HYPERLINK(\"x\");+447700902401;ok\nBo;=1+2;@SUM(A1)\nCy;-5;x\n"
            b"Di;+447700902404;fine\n")
    page = review(ui, {"body": "Hi {name}"}, data, "club.csv")
    assert page.status_code == 200
    form = hidden_fields(page.get_data(as_text=True))
    answer = ui.post("/ui/compose/rejected.csv", data=form | {"action": "download"},
                     content_type="multipart/form-data")
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert 'filename="club-rejected.csv"' in answer.headers["Content-Disposition"]
    content = answer.get_data(as_text=True)
    assert content.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(content[1:]), delimiter=";"))
    assert rows[0] == ["name", "phone", "note", "reason", "line"]
    assert [row[:3] for row in rows[1:]] == [["Bo", "'=1+2", "'@SUM(A1)"], ["Cy", "-5", "x"]]  # a number stays
    assert [row[4] for row in rows[1:]] == ["line 3", "line 4"]
    assert all(row[3] for row in rows[1:])  # each with its reason


def test_the_same_confirm_form_sent_twice_queues_once(ui, daemon):
    page = review(ui, {"to": "+447700902501, +447700902502\n+447700902501", "body": "twice? [batch-f]"})
    text = page.get_data(as_text=True)
    assert "Send 2 messages" in text and 'id="skipped-count">1<' in text  # the repeat is counted and listed
    assert "box line 2" in text
    form = hidden_fields(text) | {"action": "send"}
    first = ui.post("/ui/compose", data=form, content_type="multipart/form-data")
    assert first.status_code == 302
    assert set(sent(daemon, "[batch-f]")) == {"+447700902501", "+447700902502"}
    again = ui.post("/ui/compose", data=form, content_type="multipart/form-data", follow_redirects=True)
    assert "Already sent" in again.get_data(as_text=True)
    assert len(daemon.gateway.messages(50, search="[batch-f]")) == 2
    # the same compose form reviewed again (a reload of the confirm page) has the same token
    again = review(ui, {"to": "+447700902501, +447700902502\n+447700902501", "body": "twice? [batch-f]",
                        "draft": form["draft"]})
    assert hidden_fields(again.get_data(as_text=True))["token"] == form["token"]


def test_opted_out_recipients_are_counted_and_listed(ui, daemon):
    daemon.gateway.opt_out("+447700902601", "test")
    page = review(ui, {"to": "+447700902601\n+447700902602", "body": "Hello [batch-g]"}).get_data(as_text=True)
    assert 'id="recipient-count">1<' in page and 'id="skipped-count">1<' in page
    assert "opted out" in page and "+447700902601" in page


@pytest.mark.parametrize("data, file, expected", [
    ({"body": "Hi", "to": "+447700902701"}, b"phone\n+447700902702\n", "not both"),
    ({"body": "Hi"}, None, "add at least one recipient"),
    ({"body": "   ", "to": "+447700902701"}, None, "the message is empty"),
    ({"body": "Hi"}, b"name,city\nAnn,Oslo\n", "needs a column of phone numbers"),
    ({"body": "Hi"}, b"", "empty"),
    ({"body": "Hi"}, b"phone,Phone ,phone\n+447700902701,1,2\n", "twice"),
    ({"body": "Hi", "to": "+447700902701", "priority": "soon"}, None, "priority must be a whole number"),
    ({"body": "Hi", "to": "+447700902701", "send_at": "tomorrow"}, None, "is not a date and time"),
    ({"body": "Hi", "to": "+447700902701", "modem": "nosuchsim"}, None, "nosuchsim"),
    ({"body": "Hi", "table": "{not json"}, None, "damaged"),
    ({"body": "Hi", "table": '{"columns": ["phone"], "rows": [[2, [1], 0]], "delimiter": ",", "encoding": "x"}'},
     None, "damaged"),
    ({"body": "Hi", "to": "+447700902701", "action": "send", "accepted": "[1]"}, None, "damaged"),
    ({"body": "Hi", "table": "[" * 100_000}, None, "damaged"),
    ({"body": "Hi", "to": "+447700902701", "action": "send", "accepted": "[" * 100_000}, None, "damaged"),
    ({"body": "Hi", "to": "12ab", "action": "send", "accepted": '{"box": [], "file": []}'}, None, "nothing to send"),
    ({"body": "Hi {", "to": "+447700902701", "spintax": "on"}, None, "body"),
])
def test_every_mistake_is_a_message_on_the_compose_page_never_a_crash(ui, daemon, data, file, expected):
    answer = review(ui, data, file)
    text = answer.get_data(as_text=True)
    assert answer.status_code == 400, text[:2000]
    assert expected in text, text[:3000]
    assert 'name="body"' in text  # the form is there again, filled in
    assert daemon.gateway.messages(5, recipient="+447700902701") == []


def test_an_error_keeps_the_uploaded_files_rows(ui):
    answer = review(ui, {"body": "Hi", "priority": "soon"}, b"phone\n+447700902801\n", "keep.csv")
    text = answer.get_data(as_text=True)
    assert answer.status_code == 400 and "keep.csv" in text and 'name="table"' in text
    table = re.search(r'name="table" value="([^"]*)"', text).group(1)
    again = review(ui, {"body": "Hi [batch-h]", "table": html.unescape(table)})
    assert "Send 1 message" in again.get_data(as_text=True)
    forgotten = review(ui, {"body": "Hi", "table": html.unescape(table), "forget_file": "on"})
    assert "add at least one recipient" in forgotten.get_data(as_text=True)


def test_the_live_counter_is_told_the_limit(ui, daemon):
    token = csrf_token(ui.get("/ui/compose").get_data(as_text=True))
    answer = ui.post("/ui/preview", data={"csrf_token": token, "body": LONG_BODY})
    assert answer.json["segments"] == 14 and answer.json["max_segments"] == daemon.gateway.settings.max_segments


def test_a_large_csv_round_trips_through_the_confirm_form(daemon):
    """8,000 rows: the rows the forms carry are larger than Werkzeug's default limit for one field (over real HTTP:
    the test client spools such a request to a file it never closes)."""
    data = "phone,name,note\n" + "".join(f"+4479111{index:05d},Person {index},{'n' * 40}\n"
                                         for index in range(8000))
    http = log_in(daemon.url, "carla")
    try:
        token = csrf_token(http.get(f"{daemon.url}ui/compose", timeout=30).text)
        page = http.post(f"{daemon.url}ui/compose", data={"csrf_token": token, "body": "Hi {name}"},
                         files={"csv": ("big.csv", data.encode(), "text/csv")}, timeout=60)
        assert page.status_code == 200, page.text[:500]
        assert 'id="recipient-count">8000<' in page.text
        form = hidden_fields(page.text)
        assert len(form["table"]) > 500_000  # over Werkzeug's default per-field limit
        back = http.post(f"{daemon.url}ui/compose", files={name: (None, value) for name, value in
                                                            (form | {"action": "back"}).items()}, timeout=60)
        assert back.status_code == 200 and "8000 row(s)" in back.text
    finally:
        http.close()


def test_a_group_is_sent_to_its_good_members_only(ui, daemon):
    gateway = daemon.gateway
    gateway.create_group("Choir")
    gateway.create_contact("Ann Lee", "+447700903001", {"voice": "alto"}, groups=["Choir"])
    gateway.create_contact("Bo Berg", "+447700903002", {}, groups=["Choir"])  # no voice: rejected
    gateway.create_contact("Cy Moss", "+447700903003", {"voice": "bass"}, groups=["Choir"])
    gateway.opt_out("+447700903003", "test")
    page = ui.get("/ui/compose").get_data(as_text=True)
    assert "Choir (3 members, 1 opted out)" in page
    answer = review(ui, {"group": "Choir", "body": "Hi {first_name}, {voice} rehearsal [batch-i]"})
    text = answer.get_data(as_text=True)
    assert answer.status_code == 200, text[:3000]
    assert 'id="recipient-count">1<' in text and "Hi Ann, alto rehearsal [batch-i]" in text
    assert "group Choir" in text and "{voice}" in text  # Bo's row says which placeholder has no value
    assert 'id="skipped-count">1<' in text  # Cy opted out
    form = hidden_fields(text)
    assert ui.post("/ui/compose", data=form | {"action": "send"}, content_type="multipart/form-data").status_code == 302
    assert sent(daemon, "[batch-i]") == {"+447700903001": "Hi Ann, alto rehearsal [batch-i]"}

    answer = review(ui, {"group": "Choir", "body": "Hi {first_name} [batch-j]"})  # every member is good
    form = hidden_fields(answer.get_data(as_text=True))
    assert '"group":true' in form["accepted"]
    assert ui.post("/ui/compose", data=form | {"action": "send"}, content_type="multipart/form-data").status_code == 302
    assert sent(daemon, "[batch-j]") == {"+447700903001": "Hi Ann [batch-j]", "+447700903002": "Hi Bo [batch-j]"}


def test_a_saved_template_is_chosen_by_link_and_by_the_select(browser, daemon):
    saved = daemon.gateway.create_template("Reminder", "{Hi|Hello} {name}, see you soon", spintax=True)
    page = logged_in(browser, daemon)
    page.goto(f"{daemon.url}ui/compose?template={saved['id']}")
    playwright_api.expect(page.get_by_label("Message", exact=True)).to_have_value("{Hi|Hello} {name}, see you soon")
    playwright_api.expect(page.get_by_label("Spintax")).to_be_checked()
    page.goto(f"{daemon.url}ui/compose")
    playwright_api.expect(page.get_by_label("Spintax")).not_to_be_checked()
    page.get_by_label("Saved template").select_option(label="Reminder")
    playwright_api.expect(page.get_by_label("Message", exact=True)).to_have_value("{Hi|Hello} {name}, see you soon")
    playwright_api.expect(page.get_by_label("Spintax")).to_be_checked()
    page.goto(f"{daemon.url}ui/compose?template=999999")
    playwright_api.expect(page.get_by_role("alert")).to_contain_text("no saved template")


def test_the_chosen_sim_is_the_route_and_stays_chosen_on_the_way_back(ui, daemon):
    label = daemon.gateway.modems_now()[1]["label"]
    compose = ui.get("/ui/compose").get_data(as_text=True)
    assert '<label for="modem">Send from SIM</label>' in compose and '<option value="">Any</option>' in compose
    answer = review(ui, {"to": "+447700903101", "body": "From one SIM [batch-k]", "modem": label})
    form = hidden_fields(answer.get_data(as_text=True))
    back = ui.post("/ui/compose", data=form | {"action": "back"}, content_type="multipart/form-data")
    assert f'<option value="{label}" selected>' in back.get_data(as_text=True)
    assert ui.post("/ui/compose", data=form | {"action": "send"}, content_type="multipart/form-data").status_code == 302
    [message] = daemon.gateway.messages(5, search="[batch-k]")
    assert message["route_modem"] == label


# --- the new-user review (issue #15): a SIM that cannot send, repeated numbers, what the Rejected section says -----

def test_a_disabled_sim_is_marked_warned_about_and_its_waiting_message_says_why(browser, daemon):
    modem = daemon.gateway.modems_now()[0]
    label = modem["label"]
    daemon.gateway.update_modem(modem["id"], enabled=False)
    try:
        page = logged_in(browser, daemon)
        page.goto(f"{daemon.url}ui/compose")
        sims = page.get_by_label("Send from SIM")
        playwright_api.expect(sims.locator("option", has_text=label)).to_have_text(f"{label} — disabled")
        page.get_by_label("Recipients").fill("+447700904101")
        page.get_by_label("Message", exact=True).fill("From a disabled SIM [batch-l]")
        sims.select_option(label=f"{label} — disabled")
        page.get_by_role("button", name="Review…").click()
        playwright_api.expect(page.locator("#sim-warning")).to_have_text(
            f"{label} is disabled: these messages wait until it is enabled again (or choose Any).")
        page.get_by_role("button", name="Send 1 message").click()
        playwright_api.expect(page.locator("#message-status")).to_have_text("queued")
        playwright_api.expect(page.locator("#sim-wait")).to_contain_text(f"Waiting for SIM {label}, which is disabled")
        playwright_api.expect(page.locator("#sim-wait")).to_contain_text("Cancel it and Send again")
        [message] = daemon.gateway.messages(5, search="[batch-l]")
        assert message["status"] == "queued" and message["route_modem"] == label
    finally:
        daemon.gateway.update_modem(modem["id"], enabled=True)
    # enabled again: it leaves, and its page says nothing about waiting
    assert eventually(lambda: daemon.gateway.messages(5, search="[batch-l]")[0]["status"] != "queued")
    page.reload()
    playwright_api.expect(page.locator("#sim-wait")).to_have_count(0)


def test_an_offline_sim_is_marked_and_warned_about(ui, daemon):
    ghost = daemon.store.attach_modem("356938035643809", "8944010000000000999", label="ghost-sim")  # no worker
    compose = ui.get("/ui/compose").get_data(as_text=True)
    assert ">ghost-sim — offline</option>" in compose
    online = daemon.gateway.modems_now()[1]["label"]
    assert f">{online}</option>" in compose  # a SIM that can send is named alone
    text = review(ui, {"to": "+447700904201", "body": "Hi [batch-m]", "modem": "ghost-sim"}).get_data(as_text=True)
    assert ("ghost-sim is offline: these messages wait until it is back online (or choose Any)." in text)
    assert 'id="sim-warning"' not in review(ui, {"to": "+447700904201", "body": "Hi [batch-m]",
                                                 "modem": online}).get_data(as_text=True)
    assert 'id="sim-warning"' not in review(ui, {"to": "+447700904201", "body": "Hi [batch-m]"}).get_data(as_text=True)
    assert ghost["label"] == "ghost-sim"


def test_a_number_on_two_lines_gets_two_messages_and_the_notice_counts_the_rejected_rows(browser, daemon, tmp_path):
    listing = tmp_path / "appointments.csv"
    listing.write_text("phone,name,time\n+447700904301,Ann,9:00\n12ab,Bo,10:00\n+447700904302,Cy,11:00\n"
                       ",Di,12:00\n+447700904303,Ed\n+447700904301,Ann,15:00\n")
    page = logged_in(browser, daemon)
    page.goto(f"{daemon.url}ui/compose")
    page.get_by_label("…or a CSV file").set_input_files(str(listing))
    page.get_by_label("Message", exact=True).fill("Hi {name}, see you at {time} [batch-n]")
    page.get_by_role("button", name="Review…").click()
    playwright_api.expect(page.locator("#repeats li")).to_have_text(
        ["+447700904301 appears on lines 2 and 7: it gets 2 messages."])
    playwright_api.expect(page.locator("#recipient-count")).to_have_text("3")
    playwright_api.expect(page.locator("#rejected-count")).to_have_text("3")
    playwright_api.expect(page.locator("#rejected-lead")).to_have_text("These rows are not sent.")
    playwright_api.expect(page.locator("#rejected-advice")).to_contain_text("fix them in the file, and upload it")
    playwright_api.expect(page.locator("#download-rejected")).to_be_visible()
    page.get_by_role("button", name="Send the 3 good messages").click()
    playwright_api.expect(page.locator(".flash")).to_have_text(
        "Queued 3 message(s), 3 segment(s); 0 skipped (opted out or repeated); 3 rejected rows were not sent.")
    assert sorted(sent_all(daemon, "[batch-n]")) == [
        ("+447700904301", "Hi Ann, see you at 15:00 [batch-n]"), ("+447700904301", "Hi Ann, see you at 9:00 [batch-n]"),
        ("+447700904302", "Hi Cy, see you at 11:00 [batch-n]")]


def sent_all(daemon, marker: str) -> list[tuple[str, str]]:
    """Every message queued whose text holds `marker`, as (recipient, text): repeats included."""
    return [(row["recipient"], row["body"]) for row in daemon.gateway.messages(500, search=marker)]


def test_the_notice_counts_the_skipped_and_rejected_recipients_of_the_box(ui, daemon):
    daemon.gateway.opt_out("+447700904401", "test")
    page = review(ui, {"to": "+447700904401\n+447700904402\n12ab", "body": "Hello [batch-o]"}).get_data(as_text=True)
    form = hidden_fields(page) | {"action": "send"}
    assert form["left_out"] == "1,1"
    answer = ui.post("/ui/compose", data=form, content_type="multipart/form-data", follow_redirects=True)
    assert ("Queued 1 message(s), 1 segment(s); 1 skipped (opted out or repeated); 1 rejected recipient was not "
            "sent.") in html.unescape(answer.get_data(as_text=True))
    assert set(sent(daemon, "[batch-o]")) == {"+447700904402"}
    # an altered count is only a number in a notice: a damaged one counts as none
    again = hidden_fields(review(ui, {"to": "+447700904403", "body": "Hi [batch-o2]"}).get_data(as_text=True))
    answer = ui.post("/ui/compose", data=again | {"action": "send", "left_out": "9" * 50}, follow_redirects=True,
                     content_type="multipart/form-data")
    assert "Queued 1 message(s), 1 segment(s); 0 skipped (opted out or repeated)." in answer.get_data(as_text=True)


def test_a_text_too_long_for_every_row_of_a_file_is_said_once_with_no_download(ui):
    page = review(ui, {"body": LONG_BODY}, b"phone\n+447700904501\n+447700904502\n", "two.csv")
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "needs 14 segments" in text and "shorten it" in text
    assert text.count("needs 14 segments") == 1  # once, at the top: no row lists it
    assert 'id="rejected"' not in text and 'id="rejected-count"' not in text and "download" not in text.lower()
    assert "upload" not in text  # nothing in the file is wrong
    assert "go Back, shorten the message, and review again" in text


def test_a_template_too_long_for_everyone_is_said_once_and_a_few_long_rows_are_listed(ui):
    body = "Hi {name}, " + "z" * 1400 + " {note}"  # 1,420 characters with a short note: the limit is 1,530
    everyone = review(ui, {"body": body.replace("z", "zz")},
                      b"phone,name,note\n+447700904601,Ann,x\n+447700904602,Bo,y\n")
    text = html.unescape(everyone.get_data(as_text=True))
    assert "The text is too long for every recipient once the fields are filled in (line 2: the text needs" in text
    assert 'id="rejected"' not in text and 'id="download-rejected"' not in text
    # one row's field makes its text too long, the other fits: that row is listed, with what to shorten
    some = review(ui, {"body": body},
                  f"phone,name,note\n+447700904603,Ann,short\n+447700904604,Bo,{'n' * 300}\n12ab,Cy,x\n".encode())
    text = html.unescape(some.get_data(as_text=True))
    assert 'id="recipient-count">1<' in text and 'id="rejected-count">2<' in text
    rejected = text.split('id="rejected"', 1)[1].split("</table>", 1)[0]
    assert "line 3" in rejected and "needs" in rejected and "line 4" in rejected and "12ab" in rejected
    advice = text.split('id="rejected-advice"', 1)[1].split("</div>", 1)[0]
    assert "shorten the message, or the fields" in advice and "upload it again" in advice
    assert 'id="download-rejected"' in text


def test_a_groups_rejected_members_are_fixed_in_the_address_book_not_in_a_file(ui, daemon):
    daemon.gateway.create_group("Band")
    daemon.gateway.create_contact("Eve Ash", "+447700904701", {"instrument": "drums"}, groups=["Band"])
    daemon.gateway.create_contact("Flo Birch", "+447700904702", {}, groups=["Band"])
    text = html.unescape(review(ui, {"group": "Band", "body": "Bring the {instrument} [batch-p]"})
                         .get_data(as_text=True))
    assert 'id="rejected-count">1<' in text and "{instrument}" in text
    assert '<p id="rejected-lead">These contacts are not sent.</p>' in text
    advice = text.split('id="rejected-advice"', 1)[1].split("</div>", 1)[0]
    assert "Contacts" in advice and "contact's page" in advice and "upload" not in advice
    assert 'id="download-rejected"' not in text


def test_on_a_phone_each_option_label_sits_over_its_own_input(browser, daemon):
    page = logged_in(browser, daemon, width=360)
    page.goto(f"{daemon.url}ui/compose")
    for name in ("Send at (optional)", "Priority", "Send from SIM"):
        label, field = page.locator("label", has_text=name).bounding_box(), page.get_by_label(name).bounding_box()
        assert label["y"] + label["height"] <= field["y"] + 1 and abs(label["x"] - field["x"]) < 5, (name, label, field)
        assert field["x"] + field["width"] <= 360
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
