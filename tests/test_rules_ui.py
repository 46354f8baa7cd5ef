"""The inbound rules pages in real headless Chromium (Debian's chromium, driven by Playwright with executable_path):
an admin makes an auto-reply rule that answers a real (simulated) SMS, orders, disables, tests and deletes rules;
a dangerous regular expression is refused on the form; operators may not see the pages; no sideways scroll on a
360 px phone."""


import pytest
from playwright import sync_api as playwright_api

from tests.support import log_in, logged_in_page, running_daemon

PASSWORD = "correct horse battery"
CUSTOMER = "+447700900555"
expect = playwright_api.expect


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with running_daemon(tmp_path_factory, "rules-ui", {"alice": "admin", "oscar": "operator"}, modems=2,
                        sim_send_latency=0.01, sim_report_delay=0.05) as running:
        yield running


@pytest.fixture
def clean(daemon):
    """No rules before and after a test."""
    for rule in daemon.gateway.inbound_rules():
        daemon.gateway.delete_inbound_rule(rule["id"])
    yield daemon
    for rule in daemon.gateway.inbound_rules():
        daemon.gateway.delete_inbound_rule(rule["id"])


def test_an_admin_makes_an_auto_reply_that_answers_a_real_sms(browser, clean):
    daemon = clean
    page = logged_in_page(browser, daemon)
    page.get_by_role("navigation").get_by_role("link", name="Settings").click()
    page.get_by_role("link", name="Inbound rules").click()
    expect(page.get_by_role("heading", name="Inbound rules")).to_be_visible()
    page.get_by_role("link", name="New rule").click()
    page.get_by_label("Name").fill("Opening hours")
    page.get_by_label("First word").fill("hours")
    page.get_by_label("Action").select_option("autoreply")
    page.locator("#rule-body").fill("Hi {sender}, we are open 9-17 ({sim}).")
    page.get_by_role("button", name="Save rule").click()
    expect(page.locator(".flash")).to_contain_text("Rule Opening hours saved")
    expect(page.locator(".rule-summary")).to_contain_text("first word hours")
    # the dry run of this rule: nothing is sent
    page.locator("#test-from").fill(CUSTOMER)
    page.locator("#test-sim").select_option(label=f"sim1 ({daemon.simulator.modem('sim1').modem.identity.number})")
    page.locator("#test-text").fill("HOURS?")
    page.get_by_role("button", name="Test this rule").click()
    expect(page.locator("#test-result")).to_contain_text(f"answer {CUSTOMER} from sim1: Hi {CUSTOMER}, we are "
                                                         "open 9-17 (sim1).")
    assert daemon.gateway.messages(10) == []
    # a real SMS gets the answer, from the SIM it came to
    daemon.simulator.inject_sms("sim1", CUSTOMER, "hours please")
    sent = daemon.simulator.wait_until(lambda: daemon.simulator.modem("sim1").modem.sent, 10)
    assert sent[0].recipient == CUSTOMER and sent[0].text == f"Hi {CUSTOMER}, we are open 9-17 (sim1)."
    # the same test now says the limit holds
    page.get_by_role("button", name="Test this rule").click()
    expect(page.locator("#test-result")).to_contain_text(f"no answer: this rule answered {CUSTOMER}")
    rule = daemon.gateway.inbound_rules()[0]
    assert [(entry["action"], entry["actor"]) for entry in daemon.gateway.audit_log(10, action="rule.")
            if entry["target"] == f"rule {rule['id']}"] == [("rule.create", "user alice")]


def test_rules_are_ordered_disabled_tested_and_deleted(browser, clean):
    daemon = clean
    gateway = daemon.gateway
    for name, action in (("Forward all", {"type": "email", "to": ["ops@office.example"]}),
                         ("Quiet senders", {"type": "stop"})):
        gateway.create_inbound_rule(name, {"sender": "+4477009005*"} if name == "Quiet senders" else {}, action)
    page = logged_in_page(browser, daemon)
    page.goto(daemon.url + "ui/rules")
    expect(page.locator(".rule-name")).to_have_text(["Forward all", "Quiet senders"])
    expect(page.locator("#mail")).to_contain_text("No SMTP relay is configured")
    page.get_by_role("button", name="Move Quiet senders up").click()
    expect(page.locator(".rule-name")).to_have_text(["Quiet senders", "Forward all"])
    expect(page.get_by_role("button", name="Move Quiet senders up")).to_be_disabled()
    # the stop rule runs first: the forward is not evaluated for those senders
    page.locator("#test-from").fill(CUSTOMER)
    page.locator("#test-text").fill("Hello")
    page.get_by_role("button", name="Test the rules").click()
    expect(page.locator("#test-result li.matched")).to_have_count(1)
    expect(page.locator("#test-result")).to_contain_text("not evaluated: rule 'Quiet senders' stops the rules")
    page.get_by_role("button", name="Disable Quiet senders").click()
    expect(page.locator(".flash")).to_contain_text("Rule Quiet senders disabled.")
    page.locator("#test-from").fill(CUSTOMER)
    page.locator("#test-text").fill("Hello")
    page.get_by_role("button", name="Test the rules").click()
    expect(page.locator("#test-result")).to_contain_text("the rule is disabled")
    expect(page.locator("#test-result pre")).to_contain_text("e-mail to ops@office.example (no [smtp] relay")
    # delete after a confirmation
    quiet = next(rule for rule in gateway.inbound_rules() if rule["name"] == "Quiet senders")
    page.get_by_role("link", name="Edit Quiet senders").click()
    page.get_by_role("button", name="Delete…").click()
    expect(page.locator("#confirm-delete")).to_contain_text("Delete this rule?")
    page.get_by_role("button", name="Delete for good").click()
    expect(page.locator(".rule-name")).to_have_text(["Forward all"])
    assert [rule["name"] for rule in gateway.inbound_rules()] == ["Forward all"]
    assert [entry["action"] for entry in gateway.audit_log(10, action="rule.")
            if entry["target"] == f"rule {quiet['id']}"] == ["rule.delete", "rule.update", "rule.update"]


def test_a_dangerous_regular_expression_is_refused_on_the_form(browser, clean):
    daemon = clean
    page = logged_in_page(browser, daemon)
    page.goto(daemon.url + "ui/rules/new")
    page.get_by_label("Name").fill("Catastrophe")
    page.get_by_label("Text matches (regular expression)").fill("(a+)+$")
    page.get_by_label("Action").select_option("stop")
    page.get_by_role("button", name="Save rule").click()
    expect(page.locator("#rule-error")).to_contain_text("a quantifier inside a repeated group")
    expect(page.get_by_label("Text matches (regular expression)")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Text matches (regular expression)")).to_have_value("(a+)+$")  # kept as typed
    assert daemon.gateway.inbound_rules() == []


def test_operators_cannot_manage_rules(daemon):
    http = log_in(daemon.url, "oscar")
    assert http.get(daemon.url + "ui/rules", timeout=30).status_code == 403
    assert http.get(daemon.url + "ui/rules/new", timeout=30).status_code == 403


def test_no_sideways_scroll_at_360_px(browser, clean):
    daemon = clean
    long_word = "Weiterleitung-an-die-Buchhaltungsabteilung-" + "x" * 30
    rule = daemon.gateway.create_inbound_rule(
        long_word[:60], {"regex": r"(?:rechnung|invoice)\s*nummer\s*" + "[0-9]" * 20},
        {"type": "email", "to": ["buchhaltung-und-controlling-abteilung@sehr-lange-firmendomain.example"]})
    daemon.gateway.create_inbound_rule("Stop", {}, {"type": "stop"})
    daemon.gateway.queue_mail(["buchhaltung-und-controlling-abteilung@sehr-lange-firmendomain.example"],
                              "Subject " + long_word, "Body")
    page = logged_in_page(browser, daemon, viewport={"width": 360, "height": 740})
    for path, test in (("ui/rules", "Test the rules"), ("ui/rules/new", None), (f"ui/rules/{rule['id']}",
                                                                                  "Test this rule")):
        page.goto(daemon.url + path)
        if test:
            page.locator("#test-from").fill(CUSTOMER)
            page.locator("#test-text").fill("Rechnung nummer " + "1" * 20 + " " + long_word)
            page.get_by_role("button", name=test).click()
            expect(page.locator("#test-result")).to_be_visible()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 360, (path, width)
    page.goto(daemon.url + f"ui/rules/{rule['id']}")
    page.get_by_role("button", name="Delete…").click()
    expect(page.get_by_role("button", name="Delete for good")).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
