"""Users, sessions and the audit log in real headless Chromium (Debian's chromium, driven by Playwright with
executable_path): an admin disables a user whose open page then asks for a login, ends one session of a user and
only that one, a user ends their other sessions from their account page, and the users, account and audit pages
fit a 360 px phone with every button on screen."""


import pytest
from playwright import sync_api as playwright_api

import webui
from tests.support import logged_in_page, running_daemon

PASSWORD = "correct horse battery"
PHONE = {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2,
         "user_agent": "Mozilla/5.0 (Linux; Android 14; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) "
                       "Chrome/120.0 Mobile Safari/537.36"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with running_daemon(tmp_path_factory, "users-ui", {"alice": "admin"}) as running:  # these pages need no modem
        yield running


def asks_for_login(page) -> None:
    page.get_by_role("link", name="Messages").click()
    playwright_api.expect(page.get_by_role("heading", name="Log in to modemgw")).to_be_visible()


def still_works(page) -> None:
    page.get_by_role("link", name="Messages").click()
    playwright_api.expect(page.get_by_role("heading", name="Messages")).to_be_visible()


def other_session_ids(page, daemon) -> list[str]:
    """The ids of this user's other sessions, as this browser's account page lists them."""
    page.goto(f"{daemon.url}ui/account")
    playwright_api.expect(page.locator("#sessions li.current")).to_have_count(1)
    others = page.locator("#sessions button[data-session]")
    return [others.nth(index).get_attribute("data-session") for index in range(others.count())]


def test_an_admin_disables_a_user_whose_open_session_is_refused_at_its_next_request(browser, daemon):
    webui.add_user(daemon.store, "uma", PASSWORD, "operator")
    uma = logged_in_page(browser, daemon, "uma")
    admin = logged_in_page(browser, daemon)
    admin.get_by_role("link", name="Settings").click()
    playwright_api.expect(admin.get_by_role("list", name="Sessions of uma").get_by_role("listitem")).to_have_count(1)
    admin.get_by_role("button", name="Disable uma").click()
    playwright_api.expect(admin.get_by_role("status")).to_have_text("User disabled; their sessions have ended.")
    playwright_api.expect(admin.get_by_role("list", name="Sessions of uma")).to_have_count(0)
    asks_for_login(uma)
    uma.get_by_label("Username").fill("uma")
    uma.get_by_label("Password").fill(PASSWORD)
    uma.get_by_role("button", name="Log in").click()  # the right password: told why, as only she can be
    playwright_api.expect(uma.get_by_role("alert")).to_have_text("This account is disabled; ask an administrator.")
    admin.get_by_role("link", name="Audit log", exact=True).click()
    admin.get_by_label("Action starts with").fill("user.disable")
    admin.get_by_role("button", name="Filter").click()
    row = admin.locator("table.audit tbody tr").first
    playwright_api.expect(row).to_contain_text("user alice")
    playwright_api.expect(row).to_contain_text("user uma")
    playwright_api.expect(row).to_contain_text("done")


def test_ending_one_session_of_a_user_ends_only_that_one(browser, daemon):
    webui.add_user(daemon.store, "vic", PASSWORD, "operator")
    desk, phone = logged_in_page(browser, daemon, "vic"), logged_in_page(browser, daemon, "vic", **PHONE)
    others = other_session_ids(desk, daemon)
    assert len(others) == 1
    phone_session = others[0]  # the desk's account page lists the phone's session as the other one
    admin = logged_in_page(browser, daemon)
    admin.goto(f"{daemon.url}ui/settings#users")
    sessions = admin.get_by_role("list", name="Sessions of vic")
    playwright_api.expect(sessions.get_by_role("listitem")).to_have_count(2)
    sessions.locator(f'button[data-session="{phone_session}"]').click()
    playwright_api.expect(admin.get_by_role("status")).to_have_text("Session ended; that browser must log in again.")
    playwright_api.expect(admin.get_by_role("list", name="Sessions of vic").get_by_role("listitem")).to_have_count(1)
    asks_for_login(phone)
    still_works(desk)
    admin.get_by_role("button", name="End every session of vic").click()
    playwright_api.expect(admin.get_by_role("status")).to_have_text("All their sessions have ended.")
    asks_for_login(desk)


def test_a_user_ends_their_other_sessions_from_their_account_page(browser, daemon):
    webui.add_user(daemon.store, "wendy", PASSWORD, "operator")
    here = logged_in_page(browser, daemon, "wendy")
    second, third = logged_in_page(browser, daemon, "wendy"), logged_in_page(browser, daemon, "wendy")
    second_others, third_others = other_session_ids(second, daemon), other_session_ids(third, daemon)
    second_id = next(session for session in third_others if session not in second_others)  # third sees second
    here.get_by_role("link", name="wendy").click()
    listed = here.get_by_role("list", name="Your sessions").get_by_role("listitem")
    playwright_api.expect(listed).to_have_count(3)
    playwright_api.expect(here.locator("#sessions li.current")).to_contain_text("this browser")
    here.locator(f'#sessions button[data-session="{second_id}"]').click()
    playwright_api.expect(here.get_by_role("status")).to_have_text("That session has ended.")
    playwright_api.expect(listed).to_have_count(2)
    asks_for_login(second)
    still_works(third)
    here.goto(f"{daemon.url}ui/account")
    here.get_by_role("button", name="End all other sessions").click()
    playwright_api.expect(here.get_by_role("status")).to_have_text("Your other sessions have ended.")
    playwright_api.expect(listed).to_have_count(1)
    playwright_api.expect(here.get_by_role("button", name="End all other sessions")).to_have_count(0)
    asks_for_login(third)
    still_works(here)


@pytest.fixture(scope="module")
def crowded(browser, daemon):
    """Long names, sessions to list (alice has another one: her account page offers to end it), keys and audit
    entries with long words: what makes a narrow page overflow if anything does. The admin's phone, logged in."""
    webui.add_user(daemon.store, "xavier-with-a-rather-long-name-for-a-phone", PASSWORD, "operator")
    logged_in_page(browser, daemon, "xavier-with-a-rather-long-name-for-a-phone")
    daemon.gateway.create_key("an-integration-with-a-long-name-that-does-not-break", ["send", "read", "book"])
    failed = browser.new_page()
    failed.goto(f"{daemon.url}ui/login")
    failed.get_by_label("Username").fill("someone-who-does-not-exist-and-has-a-long-name")
    failed.get_by_label("Password").fill("wrong password")
    failed.get_by_role("button", name="Log in").click()
    playwright_api.expect(failed.get_by_role("alert")).to_be_visible()
    logged_in_page(browser, daemon)
    return logged_in_page(browser, daemon, **PHONE)


@pytest.mark.parametrize("path", ["ui/settings", "ui/account", "ui/audit", "ui/audit?refused=1&action=login."])
def test_the_users_account_and_audit_pages_fit_a_phone_with_every_button_on_screen(daemon, crowded, path):
    page = crowded  # an admin's phone
    page.goto(f"{daemon.url}{path}")
    playwright_api.expect(page.locator("main h1")).to_be_visible()
    width = page.evaluate("document.documentElement.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    buttons = page.locator("main button")
    assert buttons.count() >= 1
    for index in range(buttons.count()):
        button = buttons.nth(index)
        button.scroll_into_view_if_needed()
        assert button.is_visible(), button.inner_text()
        box = button.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, (
            button.get_attribute("aria-label") or button.inner_text(), box, width)
    if path == "ui/settings":
        playwright_api.expect(page.get_by_role("button", name="Disable xavier-with-a-rather-long-name-for-a-phone")
                              ).to_be_visible()
    elif path == "ui/account":
        playwright_api.expect(page.get_by_role("button", name="End all other sessions")).to_be_visible()
    else:
        playwright_api.expect(page.locator("table.audit tbody tr").first).to_contain_text("login.")
    page.screenshot(path=str(daemon.data_dir / f"{path.replace('/', '-').replace('?', '-')}-phone.png"),
                    full_page=True)
