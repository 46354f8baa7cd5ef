"""Conversations in the web UI, in real headless Chromium: answered from the inbox, each reply leaves from the SIM
the customer texted (checked at the simulated modems); opted-out numbers get a clear message, never a 500."""


import pytest
from playwright import sync_api as playwright_api

from tests.support import logged_in_page, running_daemon

CUSTOMER = "+447700907001"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with running_daemon(tmp_path_factory, "conversations", {"alice": "admin"}, modems=3, sim_send_latency=0.02,
                        sim_report_delay=0.05) as running:
        yield running


@pytest.fixture
def page(browser, daemon):
    page = logged_in_page(browser, daemon)
    yield page
    page.close()


def inbound(daemon, sim: int, sender: str, body: str) -> dict:
    daemon.simulator.inject_sms(sim, sender, body)
    assert daemon.wait_until(lambda: any(row["body"] == body for row in daemon.store.inbox()), 10)
    return next(row for row in daemon.store.inbox() if row["body"] == body)


def sim_index(daemon, modem_id: int) -> int:
    imei = daemon.store.modem(modem_id)["imei"]
    return next(index for index, device in enumerate(daemon.simulator.devices) if device.modem.identity.imei == imei)


def test_replies_from_the_inbox_leave_from_the_sim_each_customer_texted(page, daemon):
    rows = [inbound(daemon, sim, CUSTOMER, f"Hello SIM {sim}") for sim in (2, 0, 1)]
    page.get_by_role("link", name="Inbox").click()
    conversations = page.locator("ul.conversations li")
    for row in rows:
        label = daemon.store.modem(row["modem_id"])["label"]
        item = conversations.filter(has_text=row["body"])
        playwright_api.expect(item).to_contain_text(label)  # which SIM it came to
        item.get_by_role("link").click()
        playwright_api.expect(page.locator(".thread li.in")).to_contain_text(row["body"])
        playwright_api.expect(page.get_by_label(f"Reply from {label}")).to_be_visible()
        page.get_by_label(f"Reply from {label}").fill(f"Answer to {row['body']}")
        page.get_by_role("button", name="Send reply").click()
        playwright_api.expect(page.locator(".thread li.out")).to_contain_text(f"Answer to {row['body']}")
        page.get_by_role("link", name="Inbox").click()
    ids = [message["id"] for message in daemon.store.recent_messages(10, recipient=CUSTOMER)]
    assert len(ids) == 3
    assert daemon.wait_until(lambda: all(row["status"] in ("sent", "delivered") for row in daemon.store.messages(ids)),
                             10)
    for row in rows:  # at the simulator: each SIM sent exactly the answer to what it received
        sent = [record for record in daemon.simulator.sent(sim_index(daemon, row["modem_id"]))
                if record.recipient == CUSTOMER]
        assert len(sent) == 1, row


def test_an_opted_out_number_gets_a_clear_message_on_reply_and_on_send_again(page, daemon):
    number = "+447700907002"
    [message] = daemon.gateway.submit("Your order is ready", number, request_report=False)["messages"]
    row = inbound(daemon, 0, number, "STOP")
    assert daemon.gateway.optouts_among([number])
    page.goto(f"{daemon.url}ui/messages/{message['id']}")
    page.get_by_role("button", name="Send again").click()
    playwright_api.expect(page.get_by_role("status").first).to_contain_text(f"Not sent again: {number} has opted out")
    playwright_api.expect(page.get_by_role("heading", name=f"Message {message['id']}")).to_be_visible()
    page.goto(f"{daemon.url}ui/inbox/{number}?sim={row['modem_id']}")
    playwright_api.expect(page.get_by_role("alert")).to_contain_text("has opted out")
    page.get_by_role("textbox").fill("Are you sure?")
    page.get_by_role("button", name="Send reply").click()
    playwright_api.expect(page.get_by_role("status").first).to_contain_text(f"Not sent: {number} has opted out")
    assert [m["id"] for m in daemon.store.recent_messages(10, recipient=number)] == [message["id"]]


def test_a_group_imported_from_an_excel_csv_gets_a_template_and_the_opted_out_member_is_skipped(page, daemon,
                                                                                                    tmp_path):
    """The office flow end to end: a semicolon CSV in Windows-1252 imported into a new group, one member opted out,
    a saved template with {name} chosen in compose: the confirm page lists the opted-out one as skipped, and the
    two others get their own names."""
    members = [("Jörg Müller", "+447700907101"), ("Zoë Brontë", "+447700907102"), ("Åsa Öberg", "+447700907103")]
    csv = tmp_path / "patients.csv"
    csv.write_bytes(("Name;Mobile;Time\r\n" + "".join(f"{name};{number};10:30\r\n" for name, number in members))
                    .encode("cp1252"))
    daemon.gateway.opt_out(members[2][1], "keyword", "replied STOP")
    page.goto(f"{daemon.url}ui/contacts/import")
    page.get_by_label("CSV or vCard file").set_input_files(str(csv))
    page.get_by_label("or a new group").fill("Patients")
    page.get_by_role("button", name="Import").click()
    playwright_api.expect(page.locator(".import-result")).to_contain_text("3")
    page.goto(f"{daemon.url}ui/templates")
    page.get_by_label("Name").fill("Reminder")
    page.get_by_label("Message").fill("Hi {name}, see you tomorrow at {Time}.")
    page.get_by_role("button", name="Save template").click()
    page.goto(f"{daemon.url}ui/compose")
    page.get_by_label("…or a contact group").select_option("Patients")
    page.get_by_label("Saved template").select_option(label="Reminder")
    playwright_api.expect(page.get_by_label("Message")).to_have_value("Hi {name}, see you tomorrow at {Time}.")
    page.get_by_role("button", name="Review…").click()
    playwright_api.expect(page.locator("#recipient-count")).to_have_text("2")
    playwright_api.expect(page.locator("#skipped")).to_contain_text(members[2][1])
    playwright_api.expect(page.locator("#skipped")).to_contain_text("opted out")
    playwright_api.expect(page.locator("#accepted")).to_contain_text("Hi Jörg Müller, see you tomorrow at 10:30.")
    page.locator("#send").click()
    playwright_api.expect(page.get_by_role("heading", name="Messages")).to_be_visible()
    bodies = {row["recipient"]: row["body"] for number in (members[0][1], members[1][1], members[2][1])
              for row in daemon.store.recent_messages(10, recipient=number)}
    assert bodies == {members[0][1]: "Hi Jörg Müller, see you tomorrow at 10:30.",
                      members[1][1]: "Hi Zoë Brontë, see you tomorrow at 10:30."}


def test_a_long_link_in_a_conversation_never_makes_a_phone_scroll_sideways(browser, daemon):
    link = "https://shop.example/track?id=" + "A1B2C3D4" * 20
    row = inbound(daemon, 1, "+447700907201", f"Where is my parcel? {link}")
    [message] = daemon.gateway.reply(row["id"], f"Here: {link}")["messages"]
    daemon.gateway.create_contact("Grace Hopper", "+447700907201")
    phone = logged_in_page(browser, daemon, viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    for path in ("ui/inbox", f"ui/inbox/%2B447700907201?sim={row['modem_id']}", "ui/inbox/%2B447700907201",
                 f"ui/messages/{message['id']}"):
        phone.goto(daemon.url + path)
        width = phone.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert width[0] <= width[1], (path, width)
    phone.goto(daemon.url + "ui/inbox")
    playwright_api.expect(phone.locator("ul.conversations")).to_contain_text("Grace Hopper")  # the contact's name
    phone.close()


def test_unknown_conversations_are_not_found_and_unanswerable_senders_get_no_reply_box(page, daemon):
    assert page.goto(f"{daemon.url}ui/inbox/garbage").status == 404
    row = inbound(daemon, 0, "+447700907301", "Hi")
    assert page.goto(f"{daemon.url}ui/inbox/%2B447700907301?sim=999999").status == 404
    assert page.goto(f"{daemon.url}ui/inbox/%2B447700907301?sim={row['modem_id']}").status == 200
    playwright_api.expect(page.get_by_role("link", name="Add to contacts")).to_be_visible()
    inbound(daemon, 0, "MyBank", "Your code is 123456")  # an alphanumeric sender
    page.goto(f"{daemon.url}ui/inbox/MyBank")
    playwright_api.expect(page.get_by_role("status").last).to_contain_text("cannot be answered by SMS")
    playwright_api.expect(page.get_by_role("button", name="Send reply")).to_have_count(0)
