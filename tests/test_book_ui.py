"""The address book pages in real headless Chromium (Debian's chromium, driven by Playwright with
executable_path): add and edit a contact, import a CSV into a group, the opted-out badge, the export links, and
no sideways scroll on a 360 px phone."""

import html

import pytest
from playwright import sync_api as playwright_api

from tests.support import csrf_token, log_in, logged_in_page, running_daemon

PASSWORD = "correct horse battery"
expect = playwright_api.expect


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with running_daemon(tmp_path_factory, "book-ui", {"oscar": "operator"}) as running:  # every user's book
        yield running


def test_add_a_contact_with_fields_and_a_group_then_edit_and_delete_it(browser, daemon):
    daemon.gateway.create_group("Front desk")
    page = logged_in_page(browser, daemon, "oscar")
    page.get_by_role("navigation").get_by_role("link", name="Contacts").click()
    expect(page.get_by_role("heading", name="Contacts")).to_be_visible()
    page.get_by_role("link", name="Add a contact").click()
    page.get_by_label("Name", exact=True).fill("Petra Pan")
    page.get_by_label("Number").fill("07700 900201")
    page.get_by_label("Field name 1").fill("room")
    page.get_by_label("Field value 1").fill("12b")
    page.get_by_label("Notes").fill("mornings only")
    page.get_by_label("Front desk").check()
    page.get_by_role("button", name="Add contact").click()
    row = page.locator("table.contacts tbody tr", has_text="Petra Pan")
    expect(row).to_contain_text("+447700900201")
    expect(row).to_contain_text("Front desk")
    [stored] = daemon.store.group_contacts("front desk")
    assert (stored["fields"], stored["notes"]) == ({"room": "12b"}, "mornings only")

    row.get_by_role("link", name="Petra Pan").click()
    expect(page.get_by_label("Field value 1")).to_have_value("12b")
    page.get_by_label("Field name 2").fill("bad name")
    page.get_by_label("Field value 2").fill("x")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_contain_text("letters, digits and _")
    expect(page.get_by_label("Field name 2")).to_have_value("bad name")  # the form comes back as typed
    page.get_by_label("Field name 2").fill("floor")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Petra Pan saved.")
    assert daemon.store.contact(stored["id"])["fields"] == {"room": "12b", "floor": "x"}
    # one click deletes nothing: the "Yes, delete" box must be ticked first (the browser asks for it)
    page.get_by_role("button", name="Delete this contact").click()
    expect(page.get_by_label("Yes, delete Petra Pan")).to_be_visible()
    assert page.evaluate("document.querySelector('#delete-contact [name=confirm]').validity.valueMissing")
    assert daemon.store.contact(stored["id"])["name"] == "Petra Pan"
    page.get_by_label("Yes, delete Petra Pan").check()
    page.get_by_role("button", name="Delete this contact").click()
    expect(page.get_by_role("status")).to_contain_text("Petra Pan deleted.")
    assert daemon.store.group_contacts("Front desk") == []


def test_import_a_windows_csv_into_a_new_group_lists_the_rejected_lines(browser, daemon, tmp_path):
    upload = tmp_path / "kunden.csv"
    upload.write_bytes("Name;Telefon;Stadt\r\nJürgen Müller;07700 900210;Köln\r\nOhne Nummer;;Bonn\r\n"
                       "Zoë Weiß;+44 7700 900211;Düsseldorf\r\n".encode("cp1252"))
    page = logged_in_page(browser, daemon, "oscar")
    page.goto(daemon.url + "ui/contacts")
    page.get_by_role("link", name="Import").first.click()
    page.get_by_label("CSV or vCard file").set_input_files(str(upload))
    page.get_by_label("or a new group").fill("Kunden 2024")
    page.get_by_role("button", name="Import").click()
    expect(page.locator("#created")).to_have_text("2")
    expect(page.locator("#rejected")).to_have_text("1")
    expect(page.locator("table.rejected tbody td")).to_have_text(["3", "no phone number"])
    expect(page.locator(".import-result")).to_contain_text("Stadt")
    page.get_by_role("link", name="See the contacts").click()
    expect(page.locator("table.contacts tbody tr")).to_have_count(2)
    expect(page.locator("table.contacts")).to_contain_text("Jürgen Müller")
    expect(page.get_by_label("Group")).to_have_value("Kunden 2024")
    page.get_by_role("link", name="Groups").click()
    group_row = page.locator("table.groups tbody tr", has_text="Kunden 2024")
    expect(group_row.locator(".members")).to_have_text("2")


def test_an_opted_out_contact_shows_its_badge_and_counts_in_its_group(browser, daemon):
    daemon.gateway.create_group("Newsletter")
    daemon.gateway.create_contact("Quiet Quentin", "+447700900220", groups=["Newsletter"])
    daemon.gateway.create_contact("Loud Lisa", "+447700900221", groups=["Newsletter"])
    daemon.gateway.opt_out("+447700900220", "test")
    page = logged_in_page(browser, daemon, "oscar")
    page.goto(daemon.url + "ui/contacts?group=Newsletter")
    quiet = page.locator("table.contacts tbody tr", has_text="Quiet Quentin")
    expect(quiet.locator(".badge.optout")).to_have_text("opted out")
    expect(page.locator("table.contacts tbody tr", has_text="Loud Lisa").locator(".badge.optout")).to_have_count(0)
    quiet.get_by_role("link", name="Quiet Quentin").click()
    expect(page.get_by_role("heading", name="Quiet Quentin")).to_contain_text("opted out")
    page.goto(daemon.url + "ui/groups")
    expect(page.locator("table.groups tbody tr", has_text="Newsletter").locator(".opted")).to_have_text("1")


def test_the_export_links_download_csv_and_vcard(browser, daemon):
    daemon.gateway.create_group("Export me")
    daemon.gateway.create_contact("=Formula Fred", "+447700900230", {"code": "@risk"}, groups=["Export me"])
    page = logged_in_page(browser, daemon, "oscar")
    page.goto(daemon.url + "ui/contacts?group=Export+me")
    with page.expect_download() as download:
        page.get_by_role("link", name="CSV").click()
    text = download.value.path().read_bytes().decode("utf-8-sig")
    assert download.value.suggested_filename == "contacts.csv"
    assert text.splitlines() == ["name,number,groups,notes,code", "'=Formula Fred,+447700900230,Export me,,'@risk"]
    with page.expect_download() as download:
        page.get_by_role("link", name="vCard").click()
    card = download.value.path().read_bytes().decode("utf-8")
    assert download.value.suggested_filename == "contacts.vcf"
    assert "FN:=Formula Fred\r\n" in card and card.count("BEGIN:VCARD") == 1


def test_no_sideways_scroll_at_360_px(browser, daemon):
    long_group = "Gruppe-mit-einem-sehr-langen-Namen-ohne-Leerzeichen-" + "x" * 8
    daemon.gateway.create_group(long_group)
    for position in range(4):
        daemon.gateway.create_contact("Maximiliane-Theodora-Wilhelmina-Konstantinopolous-" + "y" * 30 + str(position),
                                      f"+44770090024{position}", {"Abteilung": "z" * 200}, groups=[long_group])
    daemon.gateway.opt_out("+447700900240", "test")
    page = logged_in_page(browser, daemon, "oscar", viewport={"width": 360, "height": 740})
    contact_id = daemon.gateway.contacts(search="+447700900241")[0]["id"]
    for path in ("ui/contacts", f"ui/contacts?group={long_group}", "ui/groups", "ui/contacts/new",
                 f"ui/contacts/{contact_id}", "ui/contacts/import"):
        page.goto(daemon.url + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 360, (path, width)
    expect(page.get_by_role("button", name="Import")).to_be_in_viewport()


def test_deleting_a_group_takes_a_ticked_yes_delete_box(browser, daemon):
    daemon.gateway.create_group("Old list")
    daemon.gateway.create_contact("Kept Karl", "+447700900250", groups=["Old list"])
    page = logged_in_page(browser, daemon, "oscar")
    page.goto(daemon.url + "ui/groups")
    page.get_by_role("button", name="Delete group Old list").click()  # not ticked: the browser asks, nothing goes
    expect(page.get_by_label("Yes, delete group Old list")).to_be_visible()
    assert [group["name"] for group in daemon.gateway.groups() if group["name"] == "Old list"] == ["Old list"]
    page.get_by_label("Yes, delete group Old list").check()
    page.get_by_role("button", name="Delete group Old list").click()
    expect(page.get_by_role("status")).to_contain_text("Group Old list deleted; its contacts stay")
    assert "Old list" not in [group["name"] for group in daemon.gateway.groups()]
    assert daemon.gateway.contacts(search="+447700900250")[0]["name"] == "Kept Karl"


def test_a_delete_form_without_the_tick_deletes_nothing_whatever_the_browser_does(daemon):
    """The server checks the tick too (an old page, a script, a browser that ignores `required`)."""
    group = daemon.gateway.create_group("Server side")
    contact = daemon.gateway.create_contact("Sam Server", "+447700900260", groups=["Server side"])
    http = log_in(daemon.url, "oscar", PASSWORD)
    try:
        token = csrf_token(http.get(f"{daemon.url}ui/groups", timeout=30).text)
        answer = http.post(f"{daemon.url}ui/contacts/{contact['id']}", timeout=30,
                           data={"csrf_token": token, "action": "delete"}, allow_redirects=False)
        assert answer.status_code == 400
        assert "Nothing was deleted: tick “Yes, delete Sam Server”" in html.unescape(answer.text)
        assert daemon.gateway.contact(contact["id"])["name"] == "Sam Server"
        answer = http.post(f"{daemon.url}ui/groups", timeout=30, allow_redirects=False,
                           data={"csrf_token": token, "action": "delete", "group_id": str(group["id"])})
        assert answer.status_code == 400 and "Nothing was deleted" in answer.text
        assert daemon.gateway.group(group["id"])["name"] == "Server side"
        answer = http.post(f"{daemon.url}ui/contacts/{contact['id']}", timeout=30, allow_redirects=False,
                           data={"csrf_token": token, "action": "delete", "confirm": "yes"})
        assert answer.status_code == 302
        answer = http.post(f"{daemon.url}ui/groups", timeout=30, allow_redirects=False,
                           data={"csrf_token": token, "action": "delete", "group_id": str(group["id"]),
                                 "confirm": "yes"})
        assert answer.status_code == 302
        assert "Server side" not in [row["name"] for row in daemon.gateway.groups()]
    finally:
        http.close()


def test_on_a_phone_each_import_label_sits_over_its_own_input(browser, daemon):
    daemon.gateway.create_group("Phone import")
    page = logged_in_page(browser, daemon, "oscar", viewport={"width": 360, "height": 740})
    page.goto(daemon.url + "ui/contacts/import")
    pairs = [(page.get_by_text("Put them all in the group"), page.get_by_label("Put them all in the group")),
             (page.get_by_text("or a new group"), page.get_by_label("or a new group"))]
    for label, field in pairs:
        label_box, field_box = label.bounding_box(), field.bounding_box()
        assert label_box["y"] + label_box["height"] <= field_box["y"] + 1, (label_box, field_box)  # just above it
        assert field_box["y"] - (label_box["y"] + label_box["height"]) < 20
        assert abs(label_box["x"] - field_box["x"]) < 5  # and left-aligned with it
        assert field_box["x"] + field_box["width"] <= 360
    # the second label is below the first input, not beside it
    assert pairs[1][0].bounding_box()["y"] >= pairs[0][1].bounding_box()["y"] + pairs[0][1].bounding_box()["height"]
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
