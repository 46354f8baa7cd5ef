"""Inbound rules (issue #17): forward by e-mail through a real SMTP sink (aiosmtpd on 127.0.0.1), forward by SMS,
webhooks into a real receiver, auto-replies with their per-sender limit (also between two gateways answering each
other), stop, the dry run, the API, the regular expressions' guards, the mail outbox's retries and [smtp]."""

import hashlib
import hmac
import logging
import queue
import threading
import time
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from modemgw import auth, config as configuration
from modemgw.daemon import Daemon
from modemgw.mail import MailSender
from modemgw.rules import MATCHER, RegexCutOff, RegexMatcher, RuleError, regex_problem
from modemgw.settings import SmtpSettings
from modemgw.store import Store
from tests.support import AppClient, Receiver, daemon_config, eventually

ROOT = Path(__file__).resolve().parent.parent
CUSTOMER = "+447700900555"


# --- an SMTP sink: aiosmtpd on 127.0.0.1, a port of its own ------------------------------------------------------

class Sink:
    """aiosmtpd's handler: keeps each message; answers RCPT with `refuse` (e.g. "550 ...") when set."""

    def __init__(self, refuse: str | None = None):
        self.messages: queue.Queue = queue.Queue()
        self.refuse = refuse

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse:
            return self.refuse
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.put((envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(
            envelope.content, policy=policy.default)))
        return "250 Message accepted for delivery"


class SinkController(Controller):
    """aiosmtpd's Controller on port 0: the port the system chose is read before the readiness check connects."""

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@pytest.fixture
def smtp_sink():
    """Start SMTP sinks (`Sink`); returns (sink, port). All are stopped at the end."""
    started = []

    def start(refuse: str | None = None):
        sink = Sink(refuse)
        controller = SinkController(sink, hostname="127.0.0.1", port=0)
        controller.start()
        started.append(controller)
        return sink, controller.port

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture
def gateways(tmp_path):
    """Start daemons over simulated modems with `smtp` (SmtpSettings) and [gateway] options; stopped at the end."""
    running = []

    def start(modems=2, smtp=None, http=False, **gateway):
        config = daemon_config(tmp_path / f"data-{len(running) + 1}", **gateway)
        if smtp is not None:
            config.smtp = smtp
        daemon = Daemon(config, simulate=modems, sim_send_latency=0.01, sim_report_delay=0.05, http=http).start()
        running.append(daemon)
        assert daemon.pool.wait_ready(10), daemon.pool.status()
        return daemon

    yield start
    for daemon in reversed(running):
        daemon.stop()


def sim_id(daemon, name: str) -> int:
    """The modem row id of a simulated SIM ("sim0")."""
    return next(row["id"] for row in daemon.gateway.modems_now() if row["label"] == name)


def inbound_events(daemon) -> queue.Queue:
    """Each inbound.received event of `daemon` (emitted once the message's rules have run)."""
    events: queue.Queue = queue.Queue()
    daemon.gateway.subscribe(lambda event, data: events.put(data) if event == "inbound.received" else None)
    return events


def admin_client(daemon) -> AppClient:
    from modemgw.app import create_app

    app = create_app(daemon)
    app.config.update(TESTING=True)
    return AppClient(app.test_client(), auth.create_key(daemon.store, "rules-admin", ("admin",))[0])


# --- regular expressions ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern, problem", [
    ("(a+)+$", "quantifier inside a repeated group"),
    (r"(\w*)*x", "quantifier inside a repeated group"),
    (r"^(\d+\s?)+$", "quantifier inside a repeated group"),
    ("(a|ab)*c", "alternation inside a repeated group"),
    (r"(a)\1", "backreferences"),
    ("(?P<x>a)(?P=x)", "backreferences"),
    ("(?=ab)a", "lookarounds"),
    ("(?<!x)y", "lookarounds"),
    ("(unclosed", "not valid at character 1"),
    ("a" * 201, "at most 200"),
])
def test_regexes_that_can_backtrack_for_ever_are_refused(pattern, problem):
    assert problem in (regex_problem(pattern) or "")


@pytest.mark.parametrize("pattern", [r"order\s+\d+", "^(yes|no)$", "(ab)+", r"(\d{3}-)+\d{4}", "(a|b)*c",
                                     "(?i)balance", r"(a+)?b", r"\bcode:?\s*[0-9]{4,6}\b"])
def test_ordinary_regexes_are_taken(pattern):
    assert regex_problem(pattern) is None


def test_a_slow_match_is_cut_off_and_the_next_works():
    matcher = RegexMatcher(time_limit=0.3)
    try:
        pattern = ".*.*.*.*.*x"  # polynomial: about a minute on 300 characters in `re`; no rule of syntax refuses it
        assert regex_problem(pattern) is None
        started = time.monotonic()
        with pytest.raises(RegexCutOff, match="longer than 0.3 s"):
            matcher.search(pattern, "a" * 300)
        assert time.monotonic() - started < 5
        assert matcher.search(r"order\s+\d+", "Re: ORDER  42 shipped") is True  # a new helper, any case
        assert matcher.search(r"order\s+\d+", "no number here") is False
    finally:
        matcher.close()


def test_the_classic_catastrophic_pattern_is_refused_by_the_api(gateways):
    client = admin_client(gateways(modems=0))
    status, _, problem = client.call("POST", "/api/v1/rules", {
        "name": "evil", "match": {"regex": "(a+)+$"}, "action": {"type": "stop"}})
    assert status == 400 and problem["field"] == "match.regex"
    assert "(a+)+" in problem["detail"]


# --- actions end to end -------------------------------------------------------------------------------------------

def test_an_inbound_sms_is_forwarded_by_email_through_the_smtp_relay(gateways, smtp_sink):
    sink, port = smtp_sink()
    daemon = gateways(smtp=SmtpSettings(host="127.0.0.1", port=port, from_address="sms@office.example"))
    client = admin_client(daemon)
    status, _, rule = client.call("POST", "/api/v1/rules", {
        "name": "to the office", "match": {"sim": sim_id(daemon, "sim0")},
        "action": {"type": "email", "to": "ops@office.example, boss@office.example"}})
    assert status == 201, rule
    daemon.simulator.inject_sms("sim1", CUSTOMER, "not for the office: another SIM")
    daemon.simulator.inject_sms("sim0", CUSTOMER, "Can you call me back? Zoë")
    mail_from, recipients, message = sink.messages.get(timeout=10)
    assert mail_from == "sms@office.example" and recipients == ["ops@office.example", "boss@office.example"]
    assert message["Subject"] == f"SMS from {CUSTOMER} to sim0"
    assert message["Auto-Submitted"] == "auto-generated"
    content = message.get_content()
    assert CUSTOMER in content and "sim0" in content and "Can you call me back? Zoë" in content
    assert eventually(lambda: daemon.gateway.mail_counts()["sent"] == 1, 5)
    assert sink.messages.empty()  # the message to sim1 matched nothing


def test_an_auto_reply_answers_once_per_sender_within_its_window(gateways):
    daemon = gateways()
    events = inbound_events(daemon)
    daemon.gateway.create_inbound_rule("thanks", {}, {
        "type": "autoreply", "body": "Thanks, we got your message to {sim}: {text}", "window_minutes": 60})
    for body in ("Hello", "Hello again"):
        daemon.simulator.inject_sms("sim1", CUSTOMER, body)
        events.get(timeout=10)  # the rules have run
    daemon.simulator.inject_sms("sim1", "+447700900666", "Me too")
    events.get(timeout=10)
    replies = daemon.gateway.messages(10)
    assert sorted(row["recipient"] for row in replies) == [CUSTOMER, "+447700900666"]
    first = next(row for row in replies if row["recipient"] == CUSTOMER)
    assert first["body"] == "Thanks, we got your message to sim1: Hello"
    # from the SIM that received it
    sent = daemon.simulator.wait_until(lambda: len(daemon.simulator.modem("sim1").modem.sent) >= 2 and
                                       daemon.simulator.modem("sim1").modem.sent, 10)
    assert {record.recipient for record in sent} == {CUSTOMER, "+447700900666"}
    assert daemon.simulator.sent("sim0") == []
    # the dry run says why a third message would get no answer
    test = daemon.gateway.test_inbound_rules(CUSTOMER, "Hello?", sim_id(daemon, "sim1"))
    assert test["results"][0]["matched"] and "no answer: this rule answered" in test["results"][0]["would"]


def test_two_gateways_answering_each_other_stop_after_the_limit(gateways):
    """Gateway A's and B's SIMs text each other (a relay thread per direction carries what one's SIM sent to the
    other's simulator, as the network would); both auto-reply to everything. Each answers once, then the limit."""
    first, second = gateways(modems=1), gateways(modems=1)
    number_of = {first: "+447700900801", second: "+447700900802"}  # each gateway's SIM as the other sees it
    for daemon in (first, second):
        daemon.gateway.create_inbound_rule("auto", {}, {"type": "autoreply", "body": "Auto-reply: {text}",
                                                         "window_minutes": 60})
    events = {first: inbound_events(first), second: inbound_events(second)}
    stop = threading.Event()

    def relay(source, target):
        seen = 0
        modem = source.simulator.modem(0).modem
        while not stop.is_set():
            try:
                records = source.simulator.wait_until(lambda: modem.sent[seen:], timeout=0.2)
            except TimeoutError:
                continue
            for record in records:
                assert record.recipient == number_of[target]
                target.simulator.inject_sms(0, number_of[source], record.text)
            seen += len(records)

    threads = [threading.Thread(target=relay, args=pair, daemon=True) for pair in ((first, second), (second, first))]
    for thread in threads:
        thread.start()
    try:
        first.simulator.inject_sms(0, number_of[second], "Hello from B's side")
        assert events[first].get(timeout=10)["body"] == "Hello from B's side"
        assert events[second].get(timeout=10)["body"] == "Auto-reply: Hello from B's side"
        assert events[first].get(timeout=10)["body"] == "Auto-reply: Auto-reply: Hello from B's side"
        # A's rules have run for B's answer (the event comes after them): A did not answer again
        assert [row["body"] for row in first.gateway.messages(10)] == ["Auto-reply: Hello from B's side"]
        assert [row["body"] for row in second.gateway.messages(10)] == ["Auto-reply: Auto-reply: Hello from B's side"]
        with pytest.raises(queue.Empty):
            events[second].get(timeout=0.5)  # nothing more reached B
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)


def test_stop_ends_the_rules_and_stop_words_go_through_none(gateways):
    daemon = gateways()
    events = inbound_events(daemon)
    gateway = daemon.gateway
    gateway.create_inbound_rule("quiet", {"keyword": "private"}, {"type": "stop"})
    gateway.create_inbound_rule("everything", {}, {"type": "email", "to": ["ops@office.example"]})
    gateway.create_inbound_rule("answer", {}, {"type": "autoreply", "body": "Thanks!"})
    for body in ("PRIVATE: the code is 1234", "STOP", "Hello"):
        daemon.simulator.inject_sms("sim0", CUSTOMER, body)
        events.get(timeout=10)
    assert [mail["body"].rstrip().rsplit("\n", 1)[-1] for mail in gateway.mail_outbox()] == ["Hello"]
    assert gateway.mail_relay() is None and gateway.mail_counts()["pending"] == 1  # no [smtp]: it waits
    assert gateway.optouts_among([CUSTOMER]) == {CUSTOMER}
    # no answer to the STOP; "Hello" from an opted-out number gets none either
    assert gateway.messages(10) == []
    dry = gateway.test_inbound_rules(CUSTOMER, "private stuff")
    assert [item["matched"] for item in dry["results"]] == [True, False, False]
    assert "not evaluated" in dry["results"][1]["reason"] and dry["stopped_by"] == dry["results"][0]["rule"]["id"]
    assert gateway.test_inbound_rules(CUSTOMER, "stop.")["keyword"] is True


def test_a_failing_rule_does_not_stop_the_others(gateways, caplog):
    daemon = gateways()
    events = inbound_events(daemon)
    gateway = daemon.gateway
    group = gateway.create_group("Staff")
    gateway.create_inbound_rule("to staff", {}, {"type": "sms", "group": "Staff"})
    gateway.delete_group(group["id"])  # the rule's group is gone: its forward fails
    gateway.create_inbound_rule("slow", {"regex": ".*.*.*.*.*.*x"}, {"type": "email", "to": ["a@office.example"]})
    gateway.create_inbound_rule("mail", {}, {"type": "email", "to": ["ops@office.example"]})
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="modemgw.rules"):
        daemon.simulator.inject_sms("sim0", CUSTOMER, "a" * 400)
        event = events.get(timeout=15)
    assert time.monotonic() - started < 10
    assert [mail["recipients"] for mail in gateway.mail_outbox()] == [["ops@office.example"]]
    assert gateway.inbox_message(event["id"])["body"] == "a" * 400
    logged = caplog.text
    assert "rule 1 (to staff) failed" in logged and "no contact group called 'Staff'" in logged
    assert "rule 2 (slow) skipped" in logged and "longer than" in logged


def test_an_sms_forward_reaches_its_number_and_never_loops_between_our_sims(gateways):
    daemon = gateways()
    events = inbound_events(daemon)
    sim1_number = next(row["number"] for row in daemon.gateway.modems_now() if row["label"] == "sim1")
    daemon.gateway.create_inbound_rule("forward", {}, {"type": "sms", "to": [sim1_number],
                                                        "body": "{sender} wrote to {sim}: {text}"})
    daemon.simulator.inject_sms("sim0", CUSTOMER, "Is the shop open?")
    events.get(timeout=10)
    forwarded = events.get(timeout=10)  # our own forward, arriving at sim1 over the simulated network
    assert forwarded["body"] == f"{CUSTOMER} wrote to sim0: Is the shop open?"
    assert forwarded["modem_id"] == sim_id(daemon, "sim1")
    assert [row["recipient"] for row in daemon.gateway.messages(10)] == [sim1_number]  # not forwarded again


def test_a_webhook_rule_posts_the_message_signed(gateways, httpserver):
    receiver = Receiver(httpserver, path="/crm")
    daemon = gateways(callback_private_destinations=True)
    rule = daemon.gateway.create_inbound_rule("crm", {"sender": "+4477009005*"}, {"type": "webhook",
                                                                                   "url": receiver.url})
    daemon.simulator.inject_sms("sim0", "+447700900999", "not this sender")
    daemon.simulator.inject_sms("sim0", CUSTOMER, "Order 42 please")
    headers, body, event = receiver.until(lambda event: event["event"] == "inbound.rule")
    assert event["rule"] == {"id": rule["id"], "name": "crm"}
    assert event["inbound"]["from"] == CUSTOMER and event["inbound"]["body"] == "Order 42 please"
    assert event["inbound"]["sim"] == "sim0"
    secret = daemon.gateway.callback_secret()
    expected = "sha256=" + hmac.new(secret.encode(), headers["X-Modemgw-Timestamp"].encode() + b"." + body,
                                    hashlib.sha256).hexdigest()
    assert headers["X-Modemgw-Signature"] == expected
    assert receiver.arrived.empty()


def test_a_loopback_webhook_is_refused_unless_callbacks_may_reach_the_lan(gateways):
    gateway = gateways(modems=0).gateway
    with pytest.raises(RuleError) as refused:
        gateway.create_inbound_rule("crm", {}, {"type": "webhook", "url": "http://127.0.0.1:9/hook"})
    assert refused.value.field == "action.url" and "callback_private_destinations" in refused.value.detail


@pytest.fixture(scope="session")
def httpserver_listen_address():
    return ("127.0.0.1", 0)


# --- the API --------------------------------------------------------------------------------------------------------

def test_the_rules_api_creates_orders_changes_tests_and_deletes(gateways):
    daemon = gateways(modems=0)
    client = admin_client(daemon)
    made = []
    for name, action in (("first", {"type": "stop"}), ("second", {"type": "autoreply", "body": "Hi {sender}"}),
                         ("third", {"type": "email", "to": ["x@office.example"]})):
        status, headers, rule = client.call("POST", "/api/v1/rules", {"name": name, "action": action,
                                                                      "match": {"keyword": "Info"}})
        assert status == 201 and headers["Location"] == f"/api/v1/rules/{rule['id']}"
        made.append(rule)
    assert [rule["position"] for rule in made] == [1, 2, 3]
    status, _, moved = client.call("PATCH", f"/api/v1/rules/{made[2]['id']}", {"position": 1, "enabled": False})
    assert status == 200 and moved["position"] == 1 and moved["enabled"] is False
    status, _, listed = client.call("GET", "/api/v1/rules")
    assert [rule["name"] for rule in listed["data"]] == ["third", "first", "second"]
    assert listed["data"][2]["then"] == "auto-reply (at most once per sender a day)"
    assert listed["data"][2]["action"]["window_minutes"] == 1440
    status, _, tested = client.call("POST", "/api/v1/rules/test", {"from": CUSTOMER, "text": "info, please"})
    assert status == 200
    assert [(item["rule"]["name"], item["matched"]) for item in tested["results"]] == [
        ("third", False), ("first", True), ("second", False)]
    assert tested["results"][0]["reason"] == "the rule is disabled" and tested["stopped_by"] == made[0]["id"]
    status, _, tested = client.call("POST", "/api/v1/rules/test", {"from": CUSTOMER, "text": "info",
                                                                   "rule_id": made[1]["id"]})
    assert tested["results"][0]["would"] == f"answer {CUSTOMER} from the SIM it came to: Hi {CUSTOMER}"
    status, _, tested = client.call("POST", "/api/v1/rules/test", {"from": CUSTOMER, "text": "hello", "rule": {
        "name": "unsaved", "match": {"regex": "^hel+o$"}, "action": {"type": "sms", "to": "07700 900123",
                                                                      "body": "{sender}: {text}"}}})
    assert tested["results"][0]["would"] == f"SMS to +447700900123: {CUSTOMER}: hello"
    assert len(client.call("GET", "/api/v1/rules")[2]["data"]) == 3  # the unsaved rule was not saved
    assert client.call("DELETE", f"/api/v1/rules/{made[0]['id']}")[0] == 204
    assert client.call("GET", f"/api/v1/rules/{made[0]['id']}")[0] == 404
    assert [rule["position"] for rule in client.call("GET", "/api/v1/rules")[2]["data"]] == [1, 2]
    actions = [entry["action"] for entry in daemon.gateway.audit_log(20, action="rule.")]
    assert actions.count("rule.create") == 3 and "rule.update" in actions and "rule.delete" in actions


@pytest.mark.parametrize("body, field", [
    ({"name": "x", "action": {"type": "email"}}, "action.to"),
    ({"name": "x", "action": {"type": "email", "to": "not-an-address"}}, "action.to"),
    ({"name": "x", "action": {"type": "email", "to": "a@b.example", "body": "{nope}"}}, "action.body"),
    ({"name": "x", "action": {"type": "autoreply"}}, "action.body"),
    ({"name": "x", "action": {"type": "autoreply", "body": "hi", "window_minutes": 0}}, "action.window_minutes"),
    ({"name": "x", "action": {"type": "stop", "url": "http://x.example"}}, "action.url"),
    ({"name": "x", "action": {"type": "dance"}}, "action.type"),
    ({"name": "x", "action": {"type": "sms", "to": "12"}}, "action.to"),
    ({"name": "x", "action": {"type": "sms", "group": "nobody"}}, "action.group"),
    ({"name": "x", "match": {"sim": 99}, "action": {"type": "stop"}}, "match.sim"),
    ({"name": "x", "match": {"keyword": "two words"}, "action": {"type": "stop"}}, "match.keyword"),
    ({"name": "x", "match": {"sender": "+44*7*"}, "action": {"type": "stop"}}, "match.sender"),
    ({"name": "x", "match": {"color": "red"}, "action": {"type": "stop"}}, "match"),
    ({"name": " ", "action": {"type": "stop"}}, "name"),
    ({"name": "x"}, "action"),
])
def test_a_bad_rule_is_refused_naming_its_field(gateways, body, field):
    client = admin_client(gateways(modems=0))
    status, _, problem = client.call("POST", "/api/v1/rules", body)
    assert status == 400 and problem["field"] == field, problem


def test_rules_need_the_admin_scope(gateways):
    daemon = gateways(modems=0)
    client = admin_client(daemon)
    key = auth.create_key(daemon.store, "sender", ("send", "read"))[0]
    assert client.call("GET", "/api/v1/rules", key=key)[0] == 403
    assert client.call("POST", "/api/v1/rules/test", {"from": CUSTOMER, "text": "x"}, key=key)[0] == 403


def test_senders_match_exactly_in_any_form_or_by_prefix(gateways):
    gateway = gateways(modems=0).gateway
    exact = gateway.create_inbound_rule("exact", {"sender": "07700 900555"}, {"type": "stop"})
    assert exact["match"]["sender"] == CUSTOMER
    gateway.create_inbound_rule("bank", {"sender": "MyBank"}, {"type": "stop"})
    gateway.create_inbound_rule("prefix", {"sender": "+44 77*"}, {"type": "stop"})

    def matched(sender):  # each rule is a stop rule: the first that matches is the only one
        return [item["rule"]["name"] for item in gateway.test_inbound_rules(sender, "hi")["results"] if item["matched"]]

    assert matched("07700900555") == ["exact"]  # the national form of the same number
    assert matched("MYBANK") == ["bank"]
    assert matched("+447712345678") == ["prefix"]
    assert matched("+447911123456") == []
    assert matched("+33612345678") == []


# --- the mail outbox and [smtp] -----------------------------------------------------------------------------------

def test_mail_is_retried_while_the_relay_is_down_and_dead_when_refused(tmp_path, smtp_sink):
    store = Store(tmp_path / "mail.db")
    down = MailSender(store, SmtpSettings(host="127.0.0.1", port=9, timeout=2), schedule=(60,))
    first = store.add_mail(["ops@office.example"], "Subject", "Body", "test", time.time())
    down.send_due()
    row = store.mail(first)
    assert row["status"] == "pending" and row["attempts"] == 1 and "relay 127.0.0.1:9" in row["last_error"]
    assert row["next_attempt_at"] > time.time() + 30
    sink, port = smtp_sink(refuse="550 5.1.1 No such user here")
    refusing = MailSender(store, SmtpSettings(host="127.0.0.1", port=port), schedule=(60,))
    second = store.add_mail(["nobody@office.example"], "Subject", "Body", "test", time.time())
    refusing.send_due()
    row = store.mail(second)
    assert row["status"] == "dead" and row["attempts"] == 1 and "550" in row["last_error"]
    assert store.mail(first)["status"] == "pending"  # not due yet: untouched
    assert sink.messages.empty()


def test_the_mail_sender_thread_sends_when_woken(tmp_path, smtp_sink):
    sink, port = smtp_sink()
    store = Store(tmp_path / "mail.db")
    sender = MailSender(store, SmtpSettings(host="127.0.0.1", port=port))
    sender.start()
    try:
        store.add_mail(["ops@office.example"], "Line one\nline two", "Body\n", "test", time.time())
        sender.wake()
        _, recipients, message = sink.messages.get(timeout=10)
        assert recipients == ["ops@office.example"] and message["Subject"] == "Line one line two"
        assert message["From"].startswith("modemgw@")
    finally:
        sender.stop()
    assert not sender.is_alive()


def test_smtp_settings_are_read_and_checked(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[smtp]\nhost = "mail.office.example"\nport = 587\nstarttls = true\nusername = "gw"\n'
                    'password = "secret"\nfrom = "sms@office.example"\ntimeout = 10\n')
    smtp = configuration.load(path).smtp
    assert (smtp.host, smtp.port, smtp.starttls, smtp.username, smtp.from_address, smtp.timeout) == (
        "mail.office.example", 587, True, "gw", "sms@office.example", 10.0)
    assert configuration.load(None).smtp == SmtpSettings()
    for text, message in (('[smtp]\nport = 70000\n', "config.toml:2: [smtp] port must be from 1 to 65535"),
                          ('[smtp]\nhost = "x"\nfrom = "nobody"\n', "config.toml:3: [smtp] from must be an e-mail"),
                          ('[smtp]\nusername = "gw"\n', "[smtp] username needs a password"),
                          ('[smtp]\nrelay = "x"\n', "config.toml:2: [smtp] relay is not an option here")):
        path.write_text(text)
        with pytest.raises(configuration.ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            configuration.load(path)


def test_every_smtp_option_is_documented():
    example = (ROOT / "deploy" / "config.example.toml").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "[smtp]" in example
    for option in configuration.SMTP_OPTIONS:
        assert f"{option} =" in example, option
        assert f"`{option}`" in readme.split("### Configuration", 1)[1], option
    assert "### Inbound rules, forwarding and auto-replies" in readme.split("## Integrations", 1)[1]


def test_the_shared_matcher_is_stopped_with_the_daemon(gateways):
    daemon = gateways(modems=0)
    daemon.gateway.create_inbound_rule("re", {"regex": "x+"}, {"type": "stop"})
    assert daemon.gateway.test_inbound_rules(CUSTOMER, "xx")["results"][0]["matched"]
    process = MATCHER._process
    assert process is not None and process.poll() is None
    daemon.stop()
    assert process.poll() is not None
    assert daemon.gateway.test_inbound_rules(CUSTOMER, "y")["results"][0]["matched"] is False  # a new helper
    MATCHER.close()
