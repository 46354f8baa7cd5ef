"""A page whose session has ended under it (issues #16, #17): the UI's JSON endpoints answer 401 with a small JSON
body instead of the login page's HTML (which fetch() followed and the scripts swallowed), the Dashboard and the
Messages pages say "You were logged out — log in again" with a link and stop polling; and a disabled user who
types the right password is told the account is disabled (a wrong password still reads as for anyone). Over real
HTTP against a running gateway, and in real headless Chromium with its clock driven by the test (no sleeps)."""

import json

import pytest
import requests
from playwright import sync_api as playwright_api

import webui
from modemgw import users
from tests.support import PASSWORD, attempt, browser as http_browser, csrf_token, log_in, running_daemon

LOGGED_OUT = "You were logged out — log in again"
expect = playwright_api.expect


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with running_daemon(tmp_path_factory, "logged-out", {"alice": "admin"}) as running:  # no modems: messages wait
        yield running


def user(daemon, name: str) -> int:
    return webui.add_user(daemon.store, name, PASSWORD, "operator")


def disable(daemon, name: str, disabled: bool = True) -> None:
    users.set_disabled(daemon.store, users.find_user(daemon.store, name)["id"], disabled)


def test_json_endpoints_answer_401_with_json_once_the_session_is_gone(daemon):
    user(daemon, "jules")
    http = log_in(daemon.url, "jules")
    assert http.get(f"{daemon.url}ui/dashboard.json", timeout=30).json()["modems"] == []
    page = http.get(f"{daemon.url}ui/compose", timeout=30)
    token = csrf_token(page.text)
    disable(daemon, "jules")  # her sessions end at once

    for path in ("ui/dashboard.json", "ui/messages/status.json?ids=1,2"):
        answer = http.get(daemon.url + path, allow_redirects=False, timeout=30)
        assert answer.status_code == 401, path
        assert answer.headers["Content-Type"] == "application/json"
        assert answer.json() == {"error": "logged_out", "detail": f"{LOGGED_OUT}.", "login": "/ui/login"}
        assert answer.headers["Cache-Control"] == "no-store"
    # no cookie at all: the same
    assert requests.get(f"{daemon.url}ui/dashboard.json", allow_redirects=False, timeout=30).status_code == 401
    # a script's POST (the compose counter asks for JSON) is told too; a form's POST still goes to the login page
    counted = http.post(f"{daemon.url}ui/preview", data={"body": "Hi"}, allow_redirects=False, timeout=30,
                        headers={"X-CSRF-Token": token, "Accept": "application/json"})
    assert counted.status_code == 401 and counted.json()["error"] == "logged_out"
    form = http.post(f"{daemon.url}ui/preview", data={"body": "Hi"}, allow_redirects=False, timeout=30)
    assert form.status_code == 302 and form.headers["Location"].startswith("/ui/login")
    # pages still go to the login page, with the way back
    shown = http.get(f"{daemon.url}ui/messages", allow_redirects=False, timeout=30)
    assert shown.status_code == 302 and shown.headers["Location"] == "/ui/login?next=/ui/messages"
    # a request that prefers JSON to HTML gets JSON; a browser's usual Accept gets the redirect
    wants = http.get(f"{daemon.url}ui/messages", allow_redirects=False, timeout=30,
                     headers={"Accept": "application/json"})
    assert wants.status_code == 401 and json.loads(wants.text)["login"] == "/ui/login"
    browsing = http.get(f"{daemon.url}ui/messages", allow_redirects=False, timeout=30,
                        headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert browsing.status_code == 302


def test_a_disabled_user_with_the_right_password_is_told_so_and_a_wrong_one_learns_nothing(daemon):
    user(daemon, "kim")
    disable(daemon, "kim")
    right = attempt(http_browser(), daemon.url, "kim", PASSWORD)
    assert right.status_code == 403 and "This account is disabled; ask an administrator." in right.text
    assert "Wrong username or password" not in right.text
    for name, password in (("kim", "not her password"), ("nobody-here", PASSWORD)):
        wrong = attempt(http_browser(), daemon.url, name, password)
        assert wrong.status_code == 401 and "Wrong username or password." in wrong.text
        assert "disabled" not in wrong.text
    entries = daemon.gateway.audit_log(action="login.failure")
    assert [entry["detail"] for entry in entries if entry["target"] == "user kim"][-1] == {
        "known_user": True, "disabled": True}
    assert all(not entry["ok"] for entry in entries)
    disable(daemon, "kim", False)
    assert attempt(http_browser(), daemon.url, "kim", PASSWORD).status_code == 302


def open_page(browser, daemon, name: str, path: str):
    """`name` logged in on `path` (e.g. "/ui/messages"), with the page's clock under the test's control: (page,
    requests it made to .json endpoints)."""
    page = browser.new_context().new_page()
    page.set_default_timeout(15_000)
    page.clock.install()
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if ".json" in request.url else None)
    page.goto(f"{daemon.url}ui/login?next={path}")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(daemon.url.rstrip("/") + path)
    return page, asked


def test_an_open_dashboard_says_its_user_was_logged_out_and_stops_polling(browser, daemon):
    user(daemon, "lena")
    page, asked = open_page(browser, daemon, "lena", "/")  # the dashboard
    page.clock.run_for(5_500)  # one poll: still logged in, nothing said
    expect(page.get_by_role("alert")).to_have_count(0)
    assert len(asked) == 1
    disable(daemon, "lena")
    page.clock.run_for(5_500)
    notice = page.get_by_role("alert")
    expect(notice).to_have_text(LOGGED_OUT)
    link = notice.get_by_role("link", name="log in again")
    expect(link).to_have_attribute("href", "/ui/login?next=%2F")
    polled = len(asked)
    page.clock.run_for(60_000)  # a minute more: no more polls, one notice
    page.evaluate("0")  # a round trip: a request the clock started would have been reported before it
    assert len(asked) == polled == 2
    expect(page.get_by_role("alert")).to_have_count(1)
    # the link logs in again and comes back; disabled, she is told why
    link.click()
    page.get_by_label("Username").fill("lena")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("This account is disabled; ask an administrator.")
    disable(daemon, "lena", False)
    page.get_by_label("Username").fill("lena")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(daemon.url)
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()


def test_the_messages_page_says_so_too_when_its_session_is_ended(browser, daemon):
    user(daemon, "mo")
    daemon.gateway.submit("Waiting for a modem", "+447700903001")  # no modem: it stays queued, so it is polled
    page, asked = open_page(browser, daemon, "mo", "/ui/messages")
    expect(page.locator("[data-message-id][data-pending]").first).to_be_visible()
    page.clock.run_for(3_000)
    expect(page.get_by_role("alert")).to_have_count(0)
    assert len(asked) == 1
    http = log_in(daemon.url, "alice")  # an admin ends all of mo's sessions from Settings
    settings = http.get(f"{daemon.url}ui/settings", timeout=30)
    mo = users.find_user(daemon.store, "mo")["id"]
    ended = http.post(f"{daemon.url}ui/settings", timeout=30, data={
        "action": "end-sessions", "user_id": str(mo), "csrf_token": csrf_token(settings.text)})
    assert ended.status_code == 200 and "All their sessions have ended." in ended.text
    page.clock.run_for(3_000)
    expect(page.get_by_role("alert")).to_have_text(LOGGED_OUT)
    expect(page.get_by_role("link", name="log in again")).to_have_attribute("href", "/ui/login?next=%2Fui%2Fmessages")
    polled = len(asked)
    page.clock.run_for(30_000)
    page.evaluate("0")
    assert len(asked) == polled >= 2  # none after the notice (how many before it depends on when the
    # first answer came back: after the clock stopped, on a slow machine)
