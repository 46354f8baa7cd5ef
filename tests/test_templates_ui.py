"""Saved templates in the web UI, in real headless Chromium (Debian's chromium, driven by Playwright with
executable_path): create, see the placeholders and segments, edit with the live counter, refusals, delete, the
way to Compose, and no sideways scroll on a 360 px phone."""


import pytest
from playwright import sync_api as playwright_api

from tests.support import logged_in_page, running_daemon

expect = playwright_api.expect


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with running_daemon(tmp_path_factory, "templates-ui", {"olga": "operator"}) as running:  # any user's templates
        yield running


@pytest.fixture
def page(browser, daemon):
    opened = logged_in_page(browser, daemon, "olga")
    yield opened
    opened.close()
    for template in daemon.gateway.templates():
        daemon.gateway.delete_template(template["id"])


def no_sideways_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth") <= 360


def test_create_see_edit_and_delete_a_template(page, daemon):
    page.get_by_role("link", name="Templates").click()
    expect(page.get_by_role("heading", name="Templates", exact=True)).to_be_visible()
    page.get_by_label("Name").fill("Appointment")
    page.get_by_label("Message").fill("Hi {name}, see you at {time}.")
    expect(page.locator("#counter")).to_contain_text("1 segment")  # the live counter of Compose
    page.get_by_role("button", name="Save template").click()

    expect(page.get_by_role("heading", name="Appointment")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Template Appointment saved.")
    expect(page.locator("#placeholders")).to_have_text("Placeholders: {name}, {time}")
    expect(page.locator("#segments")).to_contain_text("1 segment (GSM-7)")
    expect(page.locator("#sample")).to_have_text("Hi name, see you at time.")

    page.get_by_label("Message").fill("ж" * 70 + " {name}")
    expect(page.locator("#counter")).to_contain_text("UCS-2")
    expect(page.locator("#unicode mark")).to_have_text("ж")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#segments")).to_contain_text("2 segments (UCS-2 (Unicode))")
    expect(page.locator("#placeholders")).to_have_text("Placeholders: {name}")
    saved = daemon.gateway.template("appointment")
    assert saved["body"] == "ж" * 70 + " {name}" and saved["segments"] == 2

    page.get_by_role("link", name="Templates").click()
    use = page.get_by_role("link", name="Use in compose: Appointment")
    assert use.get_attribute("href") == f"/ui/compose?template={saved['id']}"
    page.get_by_role("link", name="Appointment", exact=True).click()
    page.get_by_role("button", name="Delete template").click()
    expect(page.get_by_role("status")).to_contain_text("Template Appointment deleted.")
    expect(page.locator("table.templates")).to_contain_text("No templates yet")
    assert daemon.gateway.templates() == []


def test_a_bad_template_is_refused_with_the_form_kept_and_spintax_previews(page, daemon):
    page.goto(f"{daemon.url}ui/templates")
    page.get_by_label("Name").fill("Greeting")
    page.get_by_label("Message").fill("{Hi|Hello} {name}")
    page.get_by_role("button", name="Save template").click()
    expect(page.get_by_role("alert")).to_contain_text("turn spintax on")
    expect(page.get_by_label("Message")).to_have_value("{Hi|Hello} {name}")
    page.get_by_label("Spintax").check()
    expect(page.locator("#spin")).to_contain_text("Preview: H")
    page.get_by_role("button", name="Save template").click()
    expect(page.locator("#placeholders")).to_have_text("Placeholders: {name}")
    expect(page.get_by_label("Spintax")).to_be_checked()

    page.goto(f"{daemon.url}ui/templates")
    page.get_by_label("Name").fill("GREETING")
    page.get_by_label("Message").fill("Hello")
    page.get_by_role("button", name="Save template").click()
    expect(page.get_by_role("alert")).to_contain_text("a template named 'Greeting' exists already")
    assert [row["name"] for row in daemon.gateway.templates()] == ["Greeting"]


def test_a_missing_template_is_an_error_page_with_a_way_back(page, daemon):
    page.goto(f"{daemon.url}ui/templates")
    answer = page.goto(f"{daemon.url}ui/templates/987654")
    assert answer.status == 404
    expect(page.get_by_role("alert")).to_have_text("There is no template 987654; it may have been deleted.")
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    page.get_by_role("link", name="Back").click()
    expect(page.get_by_role("heading", name="Templates", exact=True)).to_be_visible()
    page.goto(f"{daemon.url}ui/no-such-page")
    page.get_by_role("link", name="Dashboard", exact=True).last.click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()


def test_no_sideways_scroll_at_360_px(page, daemon):
    daemon.gateway.create_template("A long name without any spaces at all, really", "Dear {first name}, " +
                                   "averyveryverylongwordwithoutanyspacesthatcouldoverflowaphonescreen" * 3)
    saved = daemon.gateway.create_template("Short", "{Hi|Hello} {name}", spintax=True)
    page.set_viewport_size({"width": 360, "height": 740})
    for path in ("ui/templates", f"ui/templates/{saved['id']}", "ui/templates/987654", "ui/no-such-page"):
        page.goto(daemon.url + path)
        expect(page.locator("main")).to_be_visible()
        assert no_sideways_scroll(page), (path, page.evaluate("document.documentElement.scrollWidth"))
    long = daemon.gateway.template("A long name without any spaces at all, really")
    page.goto(f"{daemon.url}ui/templates/{long['id']}")
    assert no_sideways_scroll(page)
    expect(page.locator("#sample")).to_be_visible()
