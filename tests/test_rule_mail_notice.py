"""A rule's page names the missing SMTP relay only for a rule that forwards by e-mail (issues #16, #17: an
auto-reply rule's page said "No SMTP relay is configured: e-mails would wait in the outbox", which had nothing to
do with it). Over real HTTP against a running gateway with no `[smtp]` relay."""

import pytest

from tests.support import csrf_token, log_in, running_daemon

NO_RELAY = "No SMTP relay is configured"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with running_daemon(tmp_path_factory, "rule-notice", {"alice": "admin"}) as running:
        yield running


@pytest.fixture(scope="module")
def http(daemon):
    return log_in(daemon.url, "alice")


@pytest.mark.parametrize(("action", "warned"), [
    ({"type": "email", "to": "ops@office.example"}, True),
    ({"type": "autoreply", "body": "We are closed today."}, False),
    ({"type": "sms", "to": "+447700904001"}, False),
    ({"type": "webhook", "url": "https://crm.example.com/sms"}, False),
    ({"type": "stop"}, False),
], ids=["email", "autoreply", "sms", "webhook", "stop"])
def test_only_an_email_rule_warns_that_no_relay_is_configured(daemon, http, action, warned):
    assert daemon.gateway.mail_relay() is None
    rule = daemon.gateway.create_inbound_rule(f"Rule {action['type']}", {}, action)
    page = http.get(f"{daemon.url}ui/rules/{rule['id']}", timeout=30)
    assert page.status_code == 200
    assert (NO_RELAY in page.text) is warned
    assert ('id="rule-relay-warning"' in page.text) is warned


def test_the_new_rule_form_warns_for_the_email_action_it_starts_with_and_not_for_another(daemon, http):
    assert NO_RELAY in http.get(f"{daemon.url}ui/rules/new", timeout=30).text  # e-mail is the default action
    assert NO_RELAY not in http.get(f"{daemon.url}ui/rules/new?type=autoreply", timeout=30).text
    # a refused form is shown again as sent: the warning follows the action chosen there
    form = http.get(f"{daemon.url}ui/rules/new?type=autoreply", timeout=30)
    refused = http.post(f"{daemon.url}ui/rules/new", timeout=30, data={
        "csrf_token": csrf_token(form.text), "action": "save", "name": "", "type": "autoreply", "body": "Closed"})
    assert refused.status_code == 400 and NO_RELAY not in refused.text
    refused = http.post(f"{daemon.url}ui/rules/new", timeout=30, data={
        "csrf_token": csrf_token(form.text), "action": "save", "name": "", "type": "email", "to": "ops@office.example"})
    assert refused.status_code == 400 and NO_RELAY in refused.text
