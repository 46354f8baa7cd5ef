"""The web UI in real headless Chromium (Debian's chromium, driven by Playwright with executable_path)."""


import pytest
from playwright import sync_api as playwright_api

from tests.support import logged_in_page, running_daemon

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with running_daemon(tmp_path_factory, "webui", {"alice": "admin", "oscar": "operator"}, modems=2,
                        sim_send_latency=0.05, sim_report_delay=0.2) as running:
        yield running


def test_login_refuses_a_wrong_password_and_shows_the_dashboard(browser, daemon):
    page = browser.new_page()
    page.goto(daemon.url)
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    playwright_api.expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    page = logged_in_page(browser, daemon)
    playwright_api.expect(page.locator("article.modem")).to_have_count(2)
    cookie = next(c for c in page.context.cookies() if c["name"] == "session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"


def test_compose_sends_and_the_message_reaches_delivered(browser, daemon):
    page = logged_in_page(browser, daemon)
    page.get_by_role("link", name="Compose").click()
    page.get_by_label("Recipients").fill("+447700901234")
    page.get_by_label("Message", exact=True).fill("Hello from the web UI 😀")
    playwright_api.expect(page.locator("#counter")).to_contain_text("UCS-2")
    playwright_api.expect(page.locator("#unicode mark")).to_have_text("😀")
    page.get_by_role("button", name="Review…").click()
    playwright_api.expect(page.locator("#recipient-count")).to_have_text("1")
    page.get_by_role("button", name="Send 1 message").click()
    playwright_api.expect(page.locator("#message-status")).to_have_text("delivered", timeout=20_000)
    playwright_api.expect(page.locator(".timeline")).to_contain_text("message.delivered")
    page.screenshot(path=str(daemon.data_dir / "message.png"), full_page=True)


def test_csv_upload_fills_placeholders(browser, daemon, tmp_path):
    csv_file = tmp_path / "guests.csv"
    csv_file.write_text("phone,name,time\n+447700901301,Ann,9:30\n+447700901302,Bo,10:00\n")
    page = logged_in_page(browser, daemon)
    page.get_by_role("link", name="Compose").click()
    page.get_by_label("…or a CSV file").set_input_files(str(csv_file))
    page.get_by_label("Message", exact=True).fill("Hi {name}, see you at {time}.")
    page.get_by_role("button", name="Review…").click()
    playwright_api.expect(page.locator("#recipient-count")).to_have_text("2")
    page.get_by_role("button", name="Send 2 messages").click()
    playwright_api.expect(page.get_by_role("heading", name="Messages")).to_be_visible()
    bodies = {row["recipient"]: row["body"] for row in daemon.store.query(
        "SELECT recipient, body FROM messages WHERE recipient IN ('+447700901301', '+447700901302')")}
    assert bodies == {"+447700901301": "Hi Ann, see you at 9:30.", "+447700901302": "Hi Bo, see you at 10:00."}


def test_an_inbound_reply_shows_in_the_inbox_and_is_answered(browser, daemon):
    daemon.simulator.inject_sms(0, "+447700905555", "Can we move to Friday?")
    assert daemon.wait_until(lambda: any(row["sender"] == "+447700905555" for row in daemon.store.inbox()), 10)
    page = logged_in_page(browser, daemon)
    page.get_by_role("link", name="Inbox").click()
    conversation = page.get_by_role("link", name="+447700905555")
    playwright_api.expect(conversation).to_contain_text("1 new")
    conversation.click()
    playwright_api.expect(page.locator(".thread li.in")).to_contain_text("Can we move to Friday?")
    page.get_by_label("Reply").fill("Friday is fine.")
    page.get_by_role("button", name="Send reply").click()
    playwright_api.expect(page.locator(".thread li.out")).to_contain_text("Friday is fine.")
    assert daemon.store.query("SELECT COUNT(*) FROM messages WHERE recipient = '+447700905555'")[0][0] == 1


def test_at_console_for_admins_only(browser, daemon):
    modem_id = daemon.store.modems()[0]["id"]
    page = logged_in_page(browser, daemon)
    page.goto(f"{daemon.url}ui/modems/{modem_id}")
    page.get_by_label("Command").fill("AT+CSQ")
    page.get_by_role("button", name="Run").click()
    playwright_api.expect(page.locator("#console-output")).to_contain_text("+CSQ: 20,99")
    playwright_api.expect(page.locator("#console-output")).to_contain_text("OK")
    operator = logged_in_page(browser, daemon, "oscar")
    operator.goto(f"{daemon.url}ui/modems/{modem_id}")
    playwright_api.expect(operator.get_by_role("heading", name="AT console")).to_have_count(0)
    token = operator.locator('meta[name="csrf-token"]').get_attribute("content")
    response = operator.request.post(f"{daemon.url}ui/modems/{modem_id}",
                                     form={"csrf_token": token, "action": "at", "command": "AT+CSQ"})
    assert response.status == 403
    assert operator.goto(f"{daemon.url}ui/settings").status == 403


def test_an_admin_renames_a_modem_and_a_duplicate_label_is_refused(browser, daemon):
    first, second = daemon.store.modems()[:2]
    page = logged_in_page(browser, daemon)
    page.goto(f"{daemon.url}ui/modems/{second['id']}")
    playwright_api.expect(page.locator("body")).to_contain_text(
        f"The configuration names it {second['label']}; that name comes back when the modem reconnects.")
    page.get_by_label("Label").fill(first["label"])
    page.get_by_role("button", name="Save").click()
    playwright_api.expect(page.locator("body")).to_contain_text(f"another modem is already labelled '{first['label']}'")
    page.get_by_label("Label").fill("front-desk")
    page.get_by_label("Group").fill("otp")
    page.get_by_role("button", name="Save").click()
    playwright_api.expect(page.locator("body")).to_contain_text("Settings saved.")
    row = daemon.store.modem(second["id"])
    assert (row["label"], row["grp"]) == ("front-desk", "otp")
    assert daemon.pool.wait_until(lambda: daemon.pool.worker(second["id"]).label == "front-desk", 5)
    daemon.store.update_modem(second["id"], label=second["label"], grp=second["grp"])  # as it was, for the others
    daemon.pool.refresh(second["id"])


def test_a_form_post_without_its_csrf_token_is_rejected(browser, daemon):
    page = logged_in_page(browser, daemon)
    response = page.request.post(f"{daemon.url}ui/compose", form={"to": "+447700901234", "body": "x",
                                                                  "confirm": "yes"})
    assert response.status == 400
    assert "CSRF" in response.text()
    assert daemon.store.query("SELECT COUNT(*) FROM messages WHERE body = 'x'")[0][0] == 0


@pytest.mark.parametrize("target, allowed", [
    ("/ui/messages", "/ui/messages"), ("//evil.example/x", None), ("/\\evil.example", None),
    ("/\t/evil.example", None), ("/\n/evil.example", None),
    ("https://evil.example", None), ("/ui/x?y=http://a", "/ui/x?y=http://a"), ("", None),
])
def test_login_only_returns_to_pages_of_this_site(target, allowed):
    import webui

    assert webui.sessions.local_target(target) == allowed


def test_the_pages_work_under_their_content_security_policy(browser, daemon):
    page = logged_in_page(browser, daemon)
    complaints = []
    page.on("console", lambda message: complaints.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: complaints.append(str(error)))
    response = page.goto(f"{daemon.url}ui/compose")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    page.get_by_label("Message", exact=True).fill("Grüße 😀")
    playwright_api.expect(page.locator("#counter")).to_contain_text("UCS-2")  # app.js runs, its fetch is allowed
    for path in ("", "ui/messages", "ui/inbox", "ui/modems", "ui/settings", "ui/account"):
        page.goto(f"{daemon.url}{path}")
        playwright_api.expect(page.locator("main h1")).to_be_visible()
    operator = logged_in_page(browser, daemon, "oscar")
    operator.on("console", lambda message: complaints.append(message.text) if message.type == "error" else None)
    operator.goto(f"{daemon.url}ui/messages")
    operator.goto(f"{daemon.url}ui/settings")  # an error page (403): its Back link is ours, no inline script
    operator.get_by_role("link", name="Back").click()
    playwright_api.expect(operator).to_have_url(f"{daemon.url}ui/messages")
    assert not [text for text in complaints if "Content Security Policy" in text or "Refused" in text], complaints


def test_an_admin_disables_a_user_whose_open_page_then_asks_for_a_login(browser, daemon):
    import webui

    webui.add_user(daemon.store, "uma", PASSWORD, "operator")
    uma = logged_in_page(browser, daemon, "uma")
    admin = logged_in_page(browser, daemon)
    admin.get_by_role("link", name="Settings").click()
    admin.get_by_role("button", name="Disable uma").click()
    playwright_api.expect(admin.get_by_role("status")).to_have_text("User disabled; their sessions have ended.")
    uma.get_by_role("link", name="Messages").click()
    playwright_api.expect(uma.get_by_role("heading", name="Log in to modemgw")).to_be_visible()
    admin.get_by_role("button", name="Enable uma").click()
    admin.get_by_label("New password for uma").fill("uma's new password")
    admin.get_by_role("button", name="Set password of uma").click()
    playwright_api.expect(admin.get_by_role("status")).to_have_text("Password set; that user's sessions have ended.")
    uma.get_by_label("Username").fill("uma")
    uma.get_by_label("Password").fill("uma's new password")
    uma.get_by_role("button", name="Log in").click()
    playwright_api.expect(uma.get_by_role("heading", name="Messages")).to_be_visible()  # back where it was going
    admin.get_by_role("button", name="Delete uma").click()
    playwright_api.expect(admin.get_by_role("status")).to_have_text("User deleted; their sessions have ended.")
    uma.reload()
    playwright_api.expect(uma.get_by_role("heading", name="Log in to modemgw")).to_be_visible()


def test_a_user_changes_their_own_password(browser, daemon):
    import webui

    webui.add_user(daemon.store, "vera", PASSWORD, "operator")
    elsewhere = logged_in_page(browser, daemon, "vera")
    page = logged_in_page(browser, daemon, "vera")
    page.get_by_role("link", name="vera").click()
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password (at least 10 characters)").fill("vera's better password")
    page.get_by_label("New password again").fill("vera's better password")
    page.get_by_role("button", name="Change password").click()
    playwright_api.expect(page.get_by_role("status")).to_have_text("Password changed. Your other sessions have ended.")
    page.get_by_role("link", name="Dashboard").click()
    playwright_api.expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    elsewhere.reload()
    playwright_api.expect(elsewhere.get_by_role("heading", name="Log in to modemgw")).to_be_visible()


def test_a_new_webhook_secret_is_shown_on_its_page_and_kept_out_of_cookies(browser, daemon):
    page = logged_in_page(browser, daemon)
    page.get_by_role("link", name="Settings").click()
    page.get_by_label("URL", exact=True).fill("http://127.0.0.1:9/sms-events")
    page.get_by_role("button", name="Add webhook").click()
    secret = page.locator("#new-webhook-secret").inner_text()
    assert len(secret) >= 32
    assert all(secret not in cookie["value"] for cookie in page.context.cookies())
    assert [cookie["name"] for cookie in page.context.cookies()] == ["session"]
    page.goto(f"{daemon.url}ui/settings")  # shown once
    playwright_api.expect(page.locator("#new-webhook-secret")).to_have_count(0)
