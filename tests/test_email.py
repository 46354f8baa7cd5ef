"""E-mail to SMS (modemgw/email_gateway.py): Debian's swaks and Python's smtplib send real mail to the embedded SMTP
server of a daemon over simulated modems, and the SMS arrive at the simulated SIMs; refusals come back with their
SMTP codes. The mail parsing (subject or body, quoted replies, signatures, HTML) is tested on real mail bytes."""

from __future__ import annotations

import os
import re
import smtplib
import sqlite3
import ssl
import subprocess
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from modemgw import config as configuration, users
from modemgw.daemon import Daemon
from modemgw.email_gateway import (
    MAX_RECIPIENTS,
    MailError,
    Recipient as Rcpt,
    html_to_text,
    idempotency_key,
    read_mail,
    recipient_of,
    strip_replies,
)
from tests.support import PASSWORD, daemon_config, eventually, require

ROOT = Path(__file__).resolve().parent.parent
NUMBER = "+447700900123"
OTHER = "+447700900456"


# --- a daemon with [email], and clients ------------------------------------------------------------------------

@pytest.fixture
def mail_daemon(tmp_path):
    """`start(modems=2, data="data", **email)`: a Daemon over simulated modems whose [email] listens on 127.0.0.1
    port 0 with the given options (as the configuration file would give them). Stopped at the end."""
    running = []

    def start(modems=2, data="data", http=False, **email):
        config = daemon_config(tmp_path / data)
        config.email = configuration.parse_email({"listen": "127.0.0.1:0", **email})
        daemon = Daemon(config, simulate=modems, sim_send_latency=0.02, sim_report_delay=0.05, http=http).start()
        running.append(daemon)
        if modems:
            assert daemon.pool.wait_ready(10), daemon.pool.status()
        return daemon

    yield start
    for daemon in reversed(running):
        daemon.stop()


def swaks(daemon, *options, to=f"{NUMBER}@sms.local", sender="app@example.com", body="Hello from mail",
          message_id="<one@example.com>", subject="Test"):
    """Send one mail with Debian's swaks: (exit code, the server's replies as "CODE text" lines)."""
    program = require("swaks", "swaks")
    command = [program, "--server", f"127.0.0.1:{daemon.email.port}", "--to", to, "--from", sender,
               "--timeout", "10", "--header", f"Subject: {subject}", "--body", body, *options]
    if message_id:
        command += ["--header", f"Message-Id: {message_id}"]
    # POSIXLY_CORRECT: swaks's option parser (Getopt::Long) would take "+4477..." for an option
    result = subprocess.run(command, capture_output=True, text=True, timeout=30,
                            env={**os.environ, "POSIXLY_CORRECT": "1"})
    replies = [line[3:].strip() for line in (result.stdout + result.stderr).splitlines()
               if line.startswith(("<- ", "<**"))]
    return result.returncode, replies


def sent_to(daemon) -> list[tuple[str, str]]:
    """(recipient, text) of every SMS the simulated SIMs sent."""
    return sorted((record.recipient, record.text) for index in range(len(daemon.simulator.devices))
                  for record in daemon.simulator.sent(index))


def wait_sent(daemon, count: int) -> list[tuple[str, str]]:
    assert eventually(lambda: len(sent_to(daemon)) >= count, 10), sent_to(daemon)
    return sent_to(daemon)


def settled(daemon) -> bool:
    """Nothing left to send."""
    return daemon.gateway.queue_depth() == 0 and all(message["status"] not in ("queued", "sending")
                                                     for message in daemon.gateway.messages(50))


def smtp(daemon) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", daemon.email.port, timeout=10)
    client.ehlo("client.example.com")
    return client


def mail(to=f"{NUMBER}@sms.local", sender="app@example.com", subject="Test", body="Hello", message_id=None):
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, subject
    if message_id:
        message["Message-ID"] = message_id
    message.set_content(body)
    return message


def audit(daemon, action):
    return [entry for entry in daemon.gateway.audit_log(50) if entry["action"] == action]


# --- the acceptance: swaks to a number, an unknown sender, the same Message-ID twice ---------------------------

def test_a_mail_to_a_number_arrives_at_the_sim_as_an_sms(mail_daemon):
    daemon = mail_daemon()
    code, replies = swaks(daemon, body="Server room at 35 C\n\n-- \nThe monitoring box")
    assert code == 0, replies
    assert replies[-2].startswith("250 2.0.0 Queued: 1 SMS"), replies
    assert wait_sent(daemon, 1) == [(NUMBER, "Server room at 35 C")]
    [entry] = audit(daemon, "email.accept")
    assert entry["actor"] == "app@example.com" and entry["source"] == "127.0.0.1" and entry["ok"]
    assert entry["target"] == f"{NUMBER}@sms.local" and entry["detail"]["message_id"] == "<one@example.com>"
    [message] = daemon.gateway.messages(5)
    assert message["client_ref"] == "mail:<one@example.com>"


def test_an_unknown_sender_is_refused_with_a_5xx_and_nothing_is_sent(mail_daemon):
    daemon = mail_daemon(allowed_senders=["alarm@example.com", "@plant.example.com"])
    code, replies = swaks(daemon, sender="stranger@example.org")
    assert code != 0
    refusal = next(reply for reply in replies if reply[0] == "5")
    assert refusal.startswith("550 5.7.1 Sender <stranger@example.org> may not send mail here"), replies
    for sender, number in (("Alarm@Example.com", NUMBER), ("plc7@plant.example.com", OTHER)):
        code, replies = swaks(daemon, sender=sender, to=f"{number}@sms.local", message_id=None)
        assert code == 0, replies
    assert [recipient for recipient, _ in wait_sent(daemon, 2)] == [NUMBER, OTHER]
    [refused] = audit(daemon, "email.refuse")
    assert refused["actor"] == "stranger@example.org" and not refused["ok"]
    assert refused["detail"]["reason"] == "sender" and refused["detail"]["reply"] == "550"


def test_the_same_message_id_twice_sends_once(mail_daemon):
    daemon = mail_daemon()
    first = swaks(daemon, message_id="<retry@example.com>")
    second = swaks(daemon, message_id="<retry@example.com>")
    assert first[0] == second[0] == 0
    assert "Already accepted (same Message-ID)" in second[1][-2], second
    wait_sent(daemon, 1)
    assert eventually(lambda: settled(daemon), 10)
    assert sent_to(daemon) == [(NUMBER, "Hello from mail")]
    assert len(daemon.gateway.messages(10)) == 1
    assert [entry["detail"]["replay"] for entry in audit(daemon, "email.accept")] == [True, False]
    # another mail (another Message-ID) with the same text is another SMS
    assert swaks(daemon, message_id="<next@example.com>")[0] == 0
    assert len(wait_sent(daemon, 2)) == 2


def test_a_reused_message_id_with_other_text_is_refused_not_sent(mail_daemon):
    daemon = mail_daemon(modems=0)
    assert swaks(daemon, message_id="<same@example.com>", body="first")[0] == 0
    code, replies = swaks(daemon, message_id="<same@example.com>", body="second")
    assert code != 0 and any(reply.startswith("554 5.6.0 Message-ID <same@example.com> was already used")
                             for reply in replies), replies
    assert [message["body"] for message in daemon.gateway.messages(10)] == ["first"]


# --- recipients: groups, several, refused ones ------------------------------------------------------------------

def test_a_group_address_sends_to_every_member(mail_daemon):
    daemon = mail_daemon()
    daemon.gateway.create_group("staff")
    daemon.gateway.create_contact("Ann", NUMBER, groups=["staff"])
    daemon.gateway.create_contact("Bob", OTHER, groups=["staff"])
    code, replies = swaks(daemon, to="Staff@sms.local", body="Fire drill at 3")
    assert code == 0, replies
    assert any(reply.startswith("250 2.1.5 Recipient OK: group staff (2 members)") for reply in replies), replies
    assert wait_sent(daemon, 2) == [(NUMBER, "Fire drill at 3"), (OTHER, "Fire drill at 3")]


def test_several_recipients_in_one_mail_each_get_the_sms_once(mail_daemon):
    daemon = mail_daemon()
    daemon.gateway.create_group("oncall")
    daemon.gateway.create_contact("Ann", NUMBER, groups=["oncall"])
    third = "+447700900789"
    code, replies = swaks(daemon, to=f"{NUMBER}@sms.local,oncall@sms.local,{third}@SMS.LOCAL,07700900456@sms.local")
    assert code == 0, replies
    # Ann's number came twice: once by number, once by the group
    assert "skipped: 1 (opted out or repeated)" in replies[-2], replies
    assert eventually(lambda: settled(daemon) and len(sent_to(daemon)) == 3, 10), sent_to(daemon)
    assert [recipient for recipient, _ in sent_to(daemon)] == [NUMBER, OTHER, third]


def test_recipients_that_are_no_number_or_group_or_another_domain_are_refused(mail_daemon):
    daemon = mail_daemon(modems=0)
    daemon.gateway.create_group("empty")
    client = smtp(daemon)
    client.mail("app@example.com")
    cases = {"someone@example.com": (550, "5.7.1"), "nobody@sms.local": (550, "5.1.1"),
             "empty@sms.local": (550, "5.1.1"), "+44123@sms.local": (550, "5.1.1")}
    for address, (code, status) in cases.items():
        answer = client.rcpt(address)
        assert answer[0] == code and answer[1].decode().startswith(status), (address, answer)
    assert b"relays no mail" in client.rcpt("someone@example.com")[1]
    assert b"no address-book group called 'nobody'" in client.rcpt("nobody@sms.local")[1]
    assert b"has no members" in client.rcpt("empty@sms.local")[1]
    client.quit()
    assert daemon.gateway.messages(5) == []


def test_more_than_50_recipients_are_told_to_come_back_in_another_transaction(mail_daemon):
    daemon = mail_daemon(modems=0)
    client = smtp(daemon)
    client.mail("app@example.com")
    numbers = [f"+4477009{index:05d}" for index in range(MAX_RECIPIENTS + 1)]
    answers = [client.rcpt(f"{number}@sms.local")[0] for number in numbers]
    assert answers == [250] * MAX_RECIPIENTS + [452]
    code, reply = client.data(mail(message_id="<many@example.com>").as_bytes())
    assert code == 250, reply
    # the client sends the rest in another transaction with the same Message-ID: that part is sent too
    client.mail("app@example.com")
    client.rcpt(f"{numbers[-1]}@sms.local")
    assert client.data(mail(message_id="<many@example.com>").as_bytes())[0] == 250
    client.quit()
    assert sorted(message["recipient"] for message in daemon.gateway.messages(100)) == numbers


def test_every_recipient_opted_out_is_a_refusal(mail_daemon):
    daemon = mail_daemon(modems=0)
    daemon.gateway.opt_out(NUMBER, "test")
    code, replies = swaks(daemon)
    assert code != 0 and any(reply.startswith("550 5.7.1 Nothing sent: every recipient has opted out")
                             for reply in replies), replies


# --- what the SMS says: subject, body, both; replies, signatures, HTML -----------------------------------------

def raw(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


REPLY = raw("""From: Ann <ann@example.com>
To: +447700900123@sms.local
Subject: Re: Pump 3
Message-ID: <reply@example.com>

Restarted it, all good now.

On Tue, 1 Dec 2026 at 09:12, Pump Controller <pump@example.com> wrote:
> Pump 3 stopped
> at 09:11
>> older quote

--
Ann Example
Plant manager
""")


def test_the_body_without_quoted_replies_and_signature_is_the_text():
    mail_ = read_mail(REPLY, "body")
    assert mail_.text == "Restarted it, all good now."
    assert mail_.message_id == "<reply@example.com>" and mail_.subject == "Re: Pump 3"
    assert read_mail(REPLY, "subject").text == "Re: Pump 3"
    assert read_mail(REPLY, "both").text == "Re: Pump 3\nRestarted it, all good now."


def test_outlook_originals_and_a_signature_delimiter_with_its_space_are_cut():
    text = "Yes, go ahead.\n\n-----Original Message-----\nFrom: x\nSubject: y\n\nold text"
    assert strip_replies(text).strip() == "Yes, go ahead."
    assert strip_replies("Call me.\n-- \nBob\n> not reached").strip() == "Call me."
    assert strip_replies("Line one\n> quoted\nLine two").split("\n") == ["Line one", "Line two"]
    assert strip_replies("a -- b stays\n-- not a delimiter either") == "a -- b stays\n-- not a delimiter either"


def test_an_empty_body_falls_back_to_the_subject_and_no_text_at_all_is_refused():
    only_subject = raw("From: a@example.com\nSubject: Door 4 open\n\n")
    assert read_mail(only_subject, "body").text == "Door 4 open"
    with pytest.raises(MailError) as refused:
        read_mail(raw("From: a@example.com\nSubject: \n\n> only a quote\n"), "body")
    assert refused.value.reply.startswith("550 5.6.0 The mail has no text to send")
    with pytest.raises(MailError) as refused:
        read_mail(raw("From: a@example.com\n\nbody only\n"), "subject")
    assert "it needs a subject" in refused.value.reply


def test_the_plain_part_of_an_alternative_mail_is_taken_and_html_only_mail_is_stripped_of_its_tags():
    message = mail(body="Plain version")
    message.add_alternative("<p>HTML <b>version</b></p>", subtype="html")
    assert read_mail(message.as_bytes(), "body").text == "Plain version"
    html_only = EmailMessage()
    html_only["Subject"] = "x"
    html_only.set_content("<html><head><title>T</title><style>p {color: red}</style></head><body>"
                          "<p>Tank&nbsp;2 is <b>low</b> &amp; falling</p><script>alert(1)</script>"
                          "<div>Check&#33;<br>Now</div><blockquote>old <blockquote>older</blockquote> quote"
                          "</blockquote><!-- a comment --><p title=\"a > b\">2 < 3</p></body></html>", subtype="html")
    assert read_mail(html_only.as_bytes(), "body").text == "Tank 2 is low & falling\nCheck!\nNow\n2 < 3"


def test_a_mail_in_another_charset_is_read_as_text():
    latin = "From: a@example.com\r\nSubject: =?iso-8859-1?q?M=FCller?=\r\nContent-Type: text/plain; " \
            "charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\xfc\xdfe\r\n"
    parsed = read_mail(latin.encode("latin-1"), "both")
    assert parsed.text == "Müller\nGrüße"
    unknown = b"From: a@example.com\r\nContent-Type: text/plain; charset=x-unknown\r\n\r\nplain \xe2\x82\xac\r\n"
    assert read_mail(unknown, "body").text == "plain €"


def test_the_html_stripper_and_reply_cutter_are_linear_on_hostile_input():
    hostile = ["<" * 60_000, "<a" * 30_000, '<a title="' + "x" * 60_000, "<blockquote>" * 5_000 + "x",
               "&" * 60_000, "<!--" * 15_000, "<a b='>" * 8_000, ">\n" * 30_000, "-" * 60_000]
    for text in hostile:
        started = time.perf_counter()
        html_to_text(text)
        strip_replies(text)
        assert time.perf_counter() - started < 1.0, text[:20]


def test_an_oversized_header_section_is_refused_before_parsing():
    many = raw("".join(f"X-Header-{index}: {index}\n" for index in range(300)) + "\nbody\n")
    with pytest.raises(MailError) as refused:
        read_mail(many, "body")
    assert refused.value.reply.startswith("552 5.3.4")
    with pytest.raises(MailError):
        read_mail(b"Subject: " + b"x" * 20_000 + b"\r\n\r\nbody", "body")


def test_a_mime_structure_too_costly_to_parse_is_refused_before_parsing():
    nested = "".join(f"Content-Type: multipart/mixed; boundary=b{index}\r\n\r\n--b{index}\r\n" for index in range(900))
    folded = "Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\nContent-Type: text/plain;\r\n " + \
        ";\r\n ".join(f"name*{index}*=utf-8''a" for index in range(2000)) + "\r\n\r\nbody\r\n--z--\r\n"
    for body in (nested + "Content-Type: text/plain\r\n\r\nhi\r\n", folded):
        started = time.perf_counter()
        with pytest.raises(MailError) as refused:
            read_mail(("From: a@example.com\r\nSubject: x\r\n" + body).encode(), "body")
        assert refused.value.reply.startswith("552 5.3.4 The mail's MIME structure is too large")
        assert time.perf_counter() - started < 0.5
    ordinary = mail(body="See the log")
    ordinary.add_attachment(b"x" * 20_000, maintype="application", subtype="octet-stream", filename="log.bin")
    assert read_mail(ordinary.as_bytes(), "body").text == "See the log"


def test_the_idempotency_key_is_the_message_id_with_its_recipients():
    one = [Rcpt("number", NUMBER)]
    assert idempotency_key("<a@b>", one).startswith("mail:<a@b> ")
    assert idempotency_key("<a@b>", one) != idempotency_key("<a@b>", [Rcpt("number", OTHER)])
    assert idempotency_key("<a@b>", [Rcpt("group", "Staff")]) == idempotency_key("<a@b>", [Rcpt("group", "staff")])
    assert len(idempotency_key("<" + "x" * 1000 + ">", one)) <= 255
    assert idempotency_key(None, one) is None
    assert recipient_of('"+447700900123"@SMS.local', "sms.local") == Rcpt("number", NUMBER)


def test_subject_and_both_modes_end_to_end(mail_daemon):
    daemon = mail_daemon(text="both")
    assert swaks(daemon, subject="Alarm", body="Zone 2")[0] == 0
    assert wait_sent(daemon, 1) == [(NUMBER, "Alarm\nZone 2")]
    other = mail_daemon(data="data-2", modems=0, text="subject")
    assert swaks(other, subject="Only this", body="not this")[0] == 0
    assert [message["body"] for message in other.gateway.messages(5)] == ["Only this"]


def test_an_html_only_mail_through_smtp(mail_daemon):
    daemon = mail_daemon(modems=0)
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "app@example.com", f"{NUMBER}@sms.local", "x"
    message.set_content("<p>Backup <i>failed</i></p><p>on nas-1</p>", subtype="html")
    with smtp(daemon) as client:
        client.send_message(message)
    assert [item["body"] for item in daemon.gateway.messages(5)] == ["Backup failed\non nas-1"]


# --- sizes -------------------------------------------------------------------------------------------------------

def test_the_size_limit_is_announced_and_a_larger_mail_gets_552(mail_daemon):
    daemon = mail_daemon(modems=0, max_size=2048)
    client = smtp(daemon)
    assert client.has_extn("size") and client.esmtp_features["size"] == "2048"
    code, reply = client.mail("app@example.com", ["SIZE=5000"])
    assert code == 552, reply
    client.quit()
    code, replies = swaks(daemon, body="\n".join(["x" * 70] * 45))
    assert code != 0 and any(reply.startswith("552") for reply in replies), replies
    code, replies = swaks(daemon, body="\n".join(["y" * 70] * 23))  # fits the mail, not 10 SMS segments
    assert code != 0 and any(reply.startswith("550 5.6.0") and "segments" in reply for reply in replies), replies
    assert daemon.gateway.messages(5) == []


def test_too_many_refused_commands_close_the_connection(mail_daemon):
    daemon = mail_daemon(modems=0)
    client = smtp(daemon)
    client.mail("app@example.com")
    answers = [client.rcpt(f"x{index}@example.com")[0] for index in range(10)]
    assert answers == [550] * 9 + [421]
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.noop()


# --- who may send: networks, AUTH over STARTTLS -----------------------------------------------------------------

def test_the_client_network_allow_list(mail_daemon):
    daemon = mail_daemon(modems=0, allowed_networks=["127.0.0.2/32", "10.0.0.0/8"])
    code, replies = swaks(daemon)
    assert code != 0 and any(reply.startswith("550 5.7.1 Your address 127.0.0.1 may not send mail here")
                             for reply in replies), replies
    code, replies = swaks(daemon, "--local-interface", "127.0.0.2")
    assert code == 0, replies
    assert [entry["source"] for entry in audit(daemon, "email.accept")] == ["127.0.0.2"]
    assert [entry["detail"]["reason"] for entry in audit(daemon, "email.refuse")] == ["network"]


def test_by_default_only_loopback_clients_may_send():
    settings = configuration.parse_email({"listen": "0.0.0.0:2525"})
    assert [str(network) for network in settings.networks()] == ["127.0.0.0/8", "::1/128"]
    assert configuration.parse_email({"listen": "0.0.0.0:2525", "auth": True,
                                      "loopback_auth_without_tls": True}).networks() is None


@pytest.fixture
def certificate(tmp_path):
    require("openssl", "openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=sms.local"],
                   check=True, capture_output=True, timeout=30)
    return str(cert), str(key)


def client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test's self-signed certificate
    return context


def test_auth_over_starttls_maps_the_mail_to_a_web_ui_user(mail_daemon, certificate):
    cert, key = certificate
    daemon = mail_daemon(modems=0, auth=True, tls_certificate=cert, tls_key=key)
    alice = users.add_user(daemon.store, "alice", PASSWORD, "operator")
    client = smtp(daemon)
    assert client.has_extn("starttls") and not client.has_extn("auth")  # no AUTH in clear text
    assert client.docmd("AUTH", "PLAIN AGFsaWNlAHg=")[0] == 538
    code, reply = client.mail("app@example.com")
    assert code == 530 and b"Authentication required: STARTTLS, then AUTH" in reply
    client.starttls(context=client_tls())
    client.ehlo("client.example.com")
    assert "PLAIN" in client.esmtp_features["auth"] and "LOGIN" in client.esmtp_features["auth"]
    with pytest.raises(smtplib.SMTPAuthenticationError) as wrong:
        client.login("alice", "not the password")
    assert wrong.value.smtp_code == 535
    client.login("alice", PASSWORD)
    client.send_message(mail(message_id="<auth@example.com>"))
    client.quit()
    [message] = daemon.gateway.messages(5, user_id=alice)
    assert message["recipient"] == NUMBER
    assert [entry["actor"] for entry in audit(daemon, "email.accept")] == ["user alice"]
    refused = audit(daemon, "email.refuse")
    assert {entry["detail"]["reason"] for entry in refused} >= {"auth", "password"}
    # AUTH LOGIN too, and a disabled user cannot
    client = smtp(daemon)
    client.starttls(context=client_tls())
    client.ehlo("client.example.com")
    client.user, client.password = "alice", PASSWORD
    assert client.auth("LOGIN", client.auth_login)[0] == 235
    client.quit()
    users.add_user(daemon.store, "admin", PASSWORD, "admin")
    users.set_disabled(daemon.store, alice, True)
    client = smtp(daemon)
    client.starttls(context=client_tls())
    client.ehlo("client.example.com")
    with pytest.raises(smtplib.SMTPAuthenticationError):
        client.login("alice", PASSWORD)
    client.quit()


def test_auth_without_tls_only_from_loopback_when_allowed(mail_daemon):
    daemon = mail_daemon(modems=0, auth=True, loopback_auth_without_tls=True)
    users.add_user(daemon.store, "robot", PASSWORD, "operator")
    code, replies = swaks(daemon)
    assert code != 0 and any(reply.startswith("530 5.7.0") for reply in replies), replies
    code, replies = swaks(daemon, "--auth", "PLAIN", "--auth-user", "robot", "--auth-password", PASSWORD)
    assert code == 0, replies
    assert len(daemon.gateway.messages(5)) == 1


def test_auth_needs_a_way_to_log_in_safely():
    with pytest.raises(configuration.ConfigError, match=r"auth needs tls_certificate and tls_key"):
        configuration.parse_email({"listen": "127.0.0.1:2525", "auth": True})


def test_a_certificate_that_cannot_be_read_stops_the_start_with_its_name(tmp_path):
    from modemgw.email_gateway import EmailGateway
    from modemgw.gateway import Gateway
    from modemgw.store import Store

    store = Store(tmp_path / "modemgw.db")
    settings = configuration.parse_email({"listen": "127.0.0.1:0", "tls_certificate": str(tmp_path / "none.pem"),
                                          "tls_key": str(tmp_path / "none.key")})
    with pytest.raises(OSError, match=r"\[email\] tls_certificate .*none\.pem"):
        EmailGateway(Gateway(store), settings).start()
    store.close()


# --- nothing lost after 250 ---------------------------------------------------------------------------------------

def test_a_database_that_refuses_gets_451_and_the_retry_sends_once(mail_daemon):
    daemon = mail_daemon()
    database = sqlite3.connect(daemon.store.path)
    database.execute("CREATE TRIGGER refuse_mail BEFORE INSERT ON messages BEGIN "
                     "SELECT RAISE(ABORT, 'the database refuses (test)'); END")
    database.commit()
    code, replies = swaks(daemon, message_id="<flaky@example.com>")
    assert code != 0 and any(reply.startswith("451 4.3.0") for reply in replies), replies
    assert daemon.gateway.messages(5) == []
    database.execute("DROP TRIGGER refuse_mail")
    database.commit()
    database.close()
    assert swaks(daemon, message_id="<flaky@example.com>")[0] == 0  # the client's retry
    assert wait_sent(daemon, 1) == [(NUMBER, "Hello from mail")]


def test_a_mail_answered_250_is_sent_after_a_gateway_restart(mail_daemon):
    first = mail_daemon(modems=0)  # no modem: the SMS stays queued
    code, replies = swaks(first, message_id="<restart@example.com>")
    assert code == 0 and replies[-2].startswith("250 2.0.0 Queued"), replies
    first.stop()
    again = mail_daemon(modems=2)  # the same data directory, now with modems
    assert again.store.path == first.store.path
    assert wait_sent(again, 1) == [(NUMBER, "Hello from mail")]


# --- configuration ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("[email]\nlisten = \"2525\"\n", "config.toml:2: [email] listen must be HOST:PORT"),
    ("[email]\nlisten = \"127.0.0.1:2525\"\nallowed_networks = []\n", "config.toml:3: [email] allowed_networks is "
                                                                     "empty, so nobody could send"),
    ("[email]\nallowed_networks = [\"10.0.0.300/8\"]\n", "config.toml:2: [email] allowed_networks must be a list"),
    ("[email]\nallowed_senders = [\"alarm\"]\n", "config.toml:2: [email] allowed_senders must be a list"),
    ("[email]\ntext = \"html\"\n", "config.toml:2: [email] text must be one of body, subject, both"),
    ("[email]\ntls_certificate = \"/etc/ssl/x.pem\"\n", "[email] tls_key is needed too"),
    ("[email]\nauth = true\n", "config.toml:2: [email] auth needs tls_certificate and tls_key"),
    ("[email]\nmax_size = 100\n", "config.toml:2: [email] max_size must be from 1024"),
    ("[email]\nport = 25\n", "config.toml:2: [email] port is not an option here"),
    ("[email]\ndomain = \"a b\"\n", "config.toml:2: [email] domain must be a mail domain"),
])
def test_a_bad_email_section_names_file_line_and_option(tmp_path, text, message):
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(configuration.ConfigError) as caught:
        configuration.load(path)
    assert message in str(caught.value)


def test_the_email_section_is_off_by_default_and_read_from_the_file(tmp_path):
    assert configuration.load(None).email.listen is None
    path = tmp_path / "config.toml"
    path.write_text('[email]\nlisten = "0.0.0.0:2525"\ndomain = "SMS.Example.com"\nallowed_networks = '
                    '["192.168.1.0/24"]\nallowed_senders = ["Alarm@Example.com"]\ntext = "both"\n')
    email = configuration.load(path).email
    assert (email.listen, email.domain, email.text, email.allowed_senders) == (
        "0.0.0.0:2525", "sms.example.com", "both", ("alarm@example.com",))
    assert [str(network) for network in email.networks()] == ["192.168.1.0/24"]


def example_section(name: str) -> str:
    """The lines of deploy/config.example.toml from its `[name]` header (commented or not) to the next header."""
    lines = (ROOT / "deploy" / "config.example.toml").read_text().splitlines()
    start = next(index for index, line in enumerate(lines) if line.lstrip("# ").startswith(f"[{name}]"))
    end = next((index for index in range(start + 1, len(lines)) if lines[index].lstrip("# ").startswith("[")),
               len(lines))
    return "\n".join(lines[start:end])


def test_every_email_option_is_documented():
    section = example_section("email")
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("### Configuration"):]
    for option in configuration.EMAIL_OPTIONS:
        assert f"{option} =" in section, option
        assert f"`{option}`" in table, f"{option} is not in the README's configuration table"
    assert configuration.load(ROOT / "deploy" / "config.example.toml").email.listen is None  # off in the example


def readme_section(title: str) -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index(f"### {title}")
    ends = [index for index in (readme.find("\n## ", start), readme.find("\n### ", start + 1)) if index > 0]
    return readme[start:min(ends) if ends else None]


def test_the_readme_examples_work_as_written(mail_daemon):
    import tomllib

    section = readme_section("E-mail to SMS")
    [toml] = re.findall(r"```toml\n(.*?)```", section, re.S)
    email = configuration.parse_email(tomllib.loads(toml)["email"])
    assert (email.listen, email.domain) == ("127.0.0.1:2525", "sms.local")
    require("swaks", "swaks")
    daemon = mail_daemon(http=True)  # a fresh gateway: the README's own API call makes the group "staff"
    key = daemon.gateway.create_key("demo", ("send", "read", "admin"))[0]
    [block] = re.findall(r"```sh\n(.*?)```", section, re.S)
    script = "set -euo pipefail\n" + block.replace("127.0.0.1:2525", f"127.0.0.1:{daemon.email.port}")
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "MODEMGW_URL": daemon.url.rstrip("/"), "MODEMGW_KEY": key})
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert eventually(lambda: len(sent_to(daemon)) == 3 and settled(daemon), 10), sent_to(daemon)
    assert sent_to(daemon) == [(NUMBER, "Temperature 35 C"), (OTHER, "Fire drill at 15:00"),
                               ("+447700900789", "Fire drill at 15:00")]
