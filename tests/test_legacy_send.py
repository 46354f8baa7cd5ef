"""The send URL for legacy devices (`GET /api/v1/send`, modemgw.api_legacy) over real HTTP against a gateway with
simulated modems: plain-text answers, the key in the URL only from a key created to allow it, the refusal saying
why, parameters as devices write them, and a key in a URL never written to a log."""

import logging
import os
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from playwright import sync_api as playwright_api

from modemgw import auth
from modemgw.cli import main
from tests.support import eventually, logged_in_page, running_daemon

README = (Path(__file__).parent.parent / "README.md").read_text()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with running_daemon(tmp_path_factory, "legacy", {"alice": "admin"}, modems=2, sim_send_latency=0.02,
                        sim_report_delay=0.05) as running:
        yield running


@pytest.fixture(scope="module")
def panel_key(daemon):
    """A key for one alarm panel: send only, allowed in a URL."""
    return auth.create_key(daemon.store, "alarm-panel", ("send",), allow_query_token=True)[0]


def get(daemon, query: str, headers: dict | None = None, method: str = "GET") -> tuple[int, Any, str]:
    """GET /api/v1/send?<query> over HTTP, the query sent exactly as written: (status, headers, text)."""
    request = urllib.request.Request(f"{daemon.url}api/v1/send?{query}", headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def ids(answer: str) -> list[int]:
    first = answer.splitlines()[0]
    assert re.fullmatch(r"OK \d+(,\d+)*", first), answer
    return [int(number) for number in first[3:].split(",")]


def test_a_device_sends_with_its_key_in_the_url_and_reads_ok_and_the_id(daemon, panel_key):
    status, headers, answer = get(daemon, f"key={panel_key}&to=+447700900301&text=Intruder+alarm%3A+zone+3+%2B+4")
    assert status == 200 and headers["Content-Type"] == "text/plain; charset=utf-8", answer
    assert headers["Cache-Control"] == "no-store"  # the URL carried a key
    [message_id] = ids(answer)
    assert answer == f"OK {message_id}\n"
    message = daemon.gateway.message(message_id)
    # `+` in the number stays a plus (devices write it unencoded); in the text it is a space, %2B a plus
    assert message["recipient"] == "+447700900301" and message["body"] == "Intruder alarm: zone 3 + 4"
    key_id = next(key["id"] for key in daemon.gateway.api_keys() if key["name"] == "alarm-panel")
    assert message["api_key_id"] == key_id
    assert eventually(lambda: daemon.gateway.message(message_id)["status"] in ("sent", "delivered"), 15)


def test_several_recipients_get_one_message_each_in_the_order_given(daemon, panel_key):
    status, _, answer = get(daemon, f"token={panel_key}&to=07700900302,+447700900303&to=%2B447700900304"
                                    "&message=Power%20restored")
    assert status == 200, answer
    first, second, third = ids(answer)
    assert [daemon.gateway.message(number)["recipient"] for number in (first, second, third)] == [
        "+447700900302", "+447700900303", "+447700900304"]
    assert {daemon.gateway.message(number)["body"] for number in (first, second, third)} == {"Power restored"}


def test_access_token_priority_modem_and_case_insensitive_names(daemon, panel_key):
    label = daemon.gateway.modems_now()[1]["label"]
    status, _, answer = get(daemon, f"ACCESS_TOKEN={panel_key}&To=%2B447700900305&Text=UPS+on+battery"
                                    f"&priority=50&modem={quote(label)}")
    assert status == 200, answer
    message = daemon.gateway.message(ids(answer)[0])
    assert message["priority"] == 50 and message["body"] == "UPS on battery"
    assert eventually(lambda: daemon.gateway.message(message["id"])["modem_id"] is not None, 15)
    assert daemon.gateway.message(message["id"])["modem_id"] == daemon.gateway.modems_now()[1]["id"]


def test_a_key_not_created_for_urls_is_refused_saying_why_and_the_refusal_is_audited(daemon):
    key = auth.create_key(daemon.store, "billing-app", ("send",))[0]
    before = len(daemon.gateway.messages(500))
    status, headers, answer = get(daemon, f"key={key}&to=%2B447700900306&text=hello")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer"), answer
    assert answer.startswith("ERROR 401 this API key (billing-app) may not be passed in a URL")
    assert "--allow-query-token" in answer and "Authorization: Bearer" in answer and answer.count("\n") == 1
    assert len(daemon.gateway.messages(500)) == before
    [entry] = daemon.gateway.audit_log(1, action="key.url_refused")
    assert entry["target"].startswith("key billing-app") and not entry["ok"]
    assert key not in str(entry)
    # the same key in the Authorization header is fine, here as everywhere
    status, _, answer = get(daemon, "to=%2B447700900306&text=hello", {"Authorization": f"Bearer {key}"})
    assert status == 200 and daemon.gateway.message(ids(answer)[0])["body"] == "hello"


@pytest.mark.parametrize(("query", "status", "reason"), [
    ("to=%2B447700900307&text=x", 401, "no API key: pass key=<key>"),
    ("key=mgw_00000000_nothing&to=%2B447700900307&text=x", 401, "unknown API key"),
    ("key=something-else&to=%2B447700900307&text=x", 401, "that is not a modemgw API key"),
    ("key={key}&to=%2B447700900307&text=x&from=alarm", 400, "unknown parameter 'from' (parameters: key, token"),
    ("key={key}&to=%2B447700900307&text=x&message=y", 400, "give one of text, message, once"),
    ("key={key}&token={key}&to=%2B447700900307&text=x", 400, "give one of key, token, access_token, once"),
    ("key={key}&text=x", 400, "no recipient: pass to=<number>"),
    ("key={key}&to=%2B447700900307", 400, "no text: pass text="),
    ("key={key}&to=%2B447700900307&text=+++", 400, "no text"),
    ("key={key}&to=12ab&text=x", 400, "recipient 1: '12ab' is not a phone number"),
    ("key={key}&to=%2B447700900307&text=x&priority=high", 400, "priority must be a whole number"),
    ("key={key}&to=%2B447700900307&text=x&priority=500", 400, "priority must be a whole number from -100 to 100"),
    ("key={key}&to=%2B447700900307&text=x&modem=nowhere", 400, "no modem or modem group is called 'nowhere'"),
    ("key={key}&to=%2B447700900307&text=x&modem=a&group=b", 400, "give 'modem' or 'group', not both"),
    ("key={key}&to=%2B447700900307&text=caf%E9", 400, "'text' is not valid UTF-8 (byte 4)"),
    ("key={key}&to=%2B447700900307&text=x&charset=ebcdic", 400, "charset must be utf-8, iso-8859-1 or windows-1252"),
])
def test_refusals_are_one_plain_line_with_the_status(daemon, panel_key, query, status, reason):
    before = len(daemon.gateway.messages(500))
    got, headers, answer = get(daemon, query.format(key=panel_key))
    assert (got, headers["Content-Type"]) == (status, "text/plain; charset=utf-8"), answer
    assert answer.startswith(f"ERROR {status} {reason}") and answer.endswith("\n") and answer.count("\n") == 1
    assert len(daemon.gateway.messages(500)) == before  # nothing queued


def test_a_key_without_the_send_scope_and_a_revoked_key(daemon):
    reader, record = auth.create_key(daemon.store, "panel-reader", ("read",), allow_query_token=True)
    status, _, answer = get(daemon, f"key={reader}&to=%2B447700900308&text=x")
    assert status == 403 and answer.startswith("ERROR 403 this API key (panel-reader) has scopes read")
    sender, record = auth.create_key(daemon.store, "old-panel", ("send",), allow_query_token=True)
    daemon.gateway.revoke_key(record.id)
    status, _, answer = get(daemon, f"key={sender}&to=%2B447700900308&text=x")
    assert status == 401 and answer == "ERROR 401 this API key has been revoked\n"


def test_a_key_and_a_header_together_are_refused(daemon, panel_key):
    status, _, answer = get(daemon, f"key={panel_key}&to=%2B447700900309&text=x",
                            {"Authorization": f"Bearer {panel_key}"})
    assert status == 400 and answer.startswith("ERROR 400 give the key once")


def test_the_key_rate_limit_applies(daemon):
    key = auth.create_key(daemon.store, "chatty-plc", ("send",), rate_per_minute=2, allow_query_token=True)[0]
    answers = [get(daemon, f"key={key}&to=%2B447700900310&text=tick+{number}") for number in range(3)]
    assert [status for status, _, _ in answers] == [200, 200, 429]
    _, headers, answer = answers[2]
    assert int(headers["Retry-After"]) >= 1 and answer.startswith("ERROR 429 this key may make 2 requests a minute")


def test_opted_out_recipients_are_skipped_on_their_own_lines(daemon, panel_key):
    daemon.gateway.opt_out("+447700900311", "api")
    status, _, answer = get(daemon, f"key={panel_key}&to=%2B447700900311,%2B447700900312&text=Door+open")
    assert status == 200
    lines = answer.splitlines()
    assert len(ids(answer)) == 1 and lines[1:] == ["SKIPPED +447700900311 opted out"]
    status, _, answer = get(daemon, f"key={panel_key}&to=%2B447700900311&text=Door+open")
    assert status == 422 and answer == "ERROR 422 +447700900311: opted out; nothing was sent\n"


def test_latin1_devices_say_so_and_unicode_arrives_whole(daemon, panel_key):
    status, _, answer = get(daemon, f"key={panel_key}&to=%2B447700900313&text=Temp%E9rature+%B0C&charset=iso-8859-1")
    assert status == 200 and daemon.gateway.message(ids(answer)[0])["body"] == "Température °C"
    status, _, answer = get(daemon, f"key={panel_key}&to=%2B447700900313&text={quote('Печь 🔥 горит')}")
    assert status == 200 and daemon.gateway.message(ids(answer)[0])["body"] == "Печь 🔥 горит"


def test_a_long_query_is_refused_before_it_is_read(daemon, panel_key):
    status, _, answer = get(daemon, f"key={panel_key}&to=%2B447700900314&text={'a' * 40_000}")
    assert status == 414 and answer.startswith("ERROR 414 the URL's query is 40,") and "POST /api/v1/messages" in answer


def test_head_sends_nothing(daemon, panel_key):
    before = len(daemon.gateway.messages(500))
    status, headers, _ = get(daemon, f"key={panel_key}&to=%2B447700900315&text=x", method="HEAD")
    assert status == 405 and headers["Allow"] == "GET"
    assert len(daemon.gateway.messages(500)) == before


def test_no_key_from_a_url_reaches_a_log(daemon, panel_key, caplog):
    """Waitress writes no access log and the gateway logs paths, never URLs: a key in the query, accepted or
    refused, appears in no log record."""
    plain = auth.create_key(daemon.store, "plain", ("send",))[0]
    caplog.set_level(logging.DEBUG)
    status, _, answer = get(daemon, f"key={panel_key}&to=%2B447700900316&text=logged%3F")
    assert status == 200 and eventually(lambda: daemon.gateway.message(ids(answer)[0])["sent_at"] is not None, 15)
    get(daemon, f"key={plain}&to=%2B447700900316&text=refused")
    get(daemon, f"key={panel_key}&to=garbage&text=bad")
    get(daemon, f"key={panel_key}&to=%2B447700900316&text={'b' * 40_000}")
    assert any(record.name.startswith("modemgw.") for record in caplog.records)  # the capture sees the gateway
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert panel_key not in logged and plain not in logged
    assert panel_key[:12] not in logged


def test_keys_create_with_allow_query_token_on_the_command_line(daemon):
    runner = CliRunner()
    created = runner.invoke(main, ["keys", "create", "--data", str(daemon.data_dir), "--name", "printer",
                                   "--scopes", "send", "--allow-query-token"], catch_exceptions=False)
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert "may be passed in a URL" in created.stderr
    listed = runner.invoke(main, ["keys", "list", "--data", str(daemon.data_dir)], catch_exceptions=False).stdout
    assert re.search(r"printer .* key in URL allowed", listed) and not re.search(r"plain .* key in URL", listed)
    [entry] = daemon.gateway.audit_log(1, action="key.create", actor="cli")
    assert entry["detail"]["allow_query_token"] is True
    status, _, answer = get(daemon, f"key={key}&to=%2B447700900317&text=Toner+low")
    assert status == 200 and daemon.gateway.message(ids(answer)[0])["body"] == "Toner low"
    plain = runner.invoke(main, ["keys", "create", "--data", str(daemon.data_dir), "--name", "scanner"],
                          catch_exceptions=False).stdout.strip()
    assert get(daemon, f"key={plain}&to=%2B447700900317&text=x")[0] == 401  # off by default


def test_the_readme_send_url_example_works(daemon, panel_key):
    """The README's curl lines for devices, as written, with this gateway's URL and a key allowed in URLs."""
    start = README.index("### Legacy devices: a send URL")
    block = re.search(r"```sh\n(.*?)```", README[start:README.index("\n### ", start + 1)], re.S).group(1)
    env = {**os.environ, "MODEMGW_URL": daemon.url.rstrip("/"), "MODEMGW_URL_KEY": panel_key}
    result = subprocess.run(["sh", "-ec", block], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, (block, result.stdout, result.stderr)
    first, second = result.stdout.splitlines()
    assert daemon.gateway.message(ids(first)[0])["body"] == "Intruder alarm zone 3"
    assert [daemon.gateway.message(number)["body"] for number in ids(second)] == ["Alarm: fire panel"] * 2


# --- the web UI: the tick box ---------------------------------------------------------------------------------

@pytest.mark.parametrize("width", [1280, 360])
def test_an_admin_creates_a_key_for_urls_in_the_web_ui(browser, daemon, width):
    page = logged_in_page(browser, daemon, viewport={"width": width, "height": 800})
    page.goto(f"{daemon.url}ui/settings")
    name = f"nvr-{width}"
    page.locator("#key-name").fill(name)
    box = page.get_by_label("May be passed in a URL")
    playwright_api.expect(box).not_to_be_checked()  # off unless asked for
    box.check()
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-key").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # no sideways scroll on a phone
    row = page.locator("#keys tr", has_text=name)
    playwright_api.expect(row).to_contain_text("key in URL allowed")
    page.close()
    status, _, answer = get(daemon, f"key={key}&to=%2B447700900318&text=Camera+3+motion")
    assert status == 200, answer
    [entry] = daemon.gateway.audit_log(1, action="key.create", actor="user alice")
    assert entry["detail"] == {"scopes": ["send", "read"], "allow_query_token": True}
