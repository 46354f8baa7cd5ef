"""The audit log: every login, user and session change, API key, modem setting, USSD and AT command and opt-out
change leaves one entry saying who, from where, what, on what and whether it was allowed; no password, key or PIN
ever reaches it (nor the AT history). Over real HTTP against a running gateway with a simulated modem (a trusted
proxy on 127.0.0.1 names the client's address), the CLI through click's runner, and `GET /api/v1/audit`."""

import json
import re
import sqlite3
import threading
import time

import pytest
import requests
from click.testing import CliRunner

import webui
from modemgw import auth
from modemgw.cli import main
from modemgw.store import StoreError
from tests.support import PASSWORD, Client, attempt, browser, csrf_token, log_in, running_daemon

OFFICE = "198.51.100.7"   # the admin's desk, as the trusted proxy names it
ELSEWHERE = "198.51.100.8"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with running_daemon(tmp_path_factory, "audit", {"alice": "admin", "oscar": "operator"}, modems=2,
                        settings={"http": {"trusted_proxies": ["127.0.0.1"]}}, sim_send_latency=0.0,
                        sim_report_delay=0.05) as running:
        yield running


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args, input=None):
        return runner.invoke(main, [str(arg) for arg in args], input=input, catch_exceptions=False)

    return invoke


@pytest.fixture(scope="module")
def admin_key(daemon):
    return auth.create_key(daemon.store, "ops", ("admin",))


def entries(daemon, action: str, since_id: int = 0) -> list[dict]:
    """The audit entries of `action` (exactly) written after entry `since_id`, oldest first."""
    rows = daemon.gateway.audit_log(1000, action=action)
    return sorted((row for row in rows if row["action"] == action and row["id"] > since_id), key=lambda r: r["id"])


def last_id(daemon) -> int:
    rows = daemon.gateway.audit_log(1)
    return rows[0]["id"] if rows else 0


def one(daemon, action: str, since_id: int) -> dict:
    found = entries(daemon, action, since_id)
    assert len(found) == 1, (action, found)
    return found[0]


def post_form(http: requests.Session, base: str, path: str, **fields) -> requests.Response:
    page = http.get(f"{base}{path}", timeout=30)
    return http.post(f"{base}{path}", data={"csrf_token": csrf_token(page.text), **fields}, timeout=30)


def session_from(page: str, address: str) -> str:
    """The public id of the session listed on `page` as last used from `address`."""
    found = re.search(r"from " + re.escape(address) + r'</span>\s*<form[^>]*>.{0,400}?name="session_id" '
                      r'value="([0-9a-f]{16})"', page, re.S)
    assert found, page
    return found.group(1)


def opens(http: requests.Session, base: str) -> bool:
    return http.get(f"{base}ui/messages", allow_redirects=False, timeout=30).status_code == 200


def everything_written(daemon) -> str:
    """Every audit entry and every event, as text: where a secret must never be."""
    audit = daemon.store.query("SELECT actor, source, action, target, detail FROM audit")
    events = daemon.store.query("SELECT kind, detail FROM events")
    return json.dumps([list(row) for row in audit] + [list(row) for row in events])


# --- logins ----------------------------------------------------------------------------------------------------

def test_every_login_and_logout_is_audited_with_the_name_tried_and_the_address(daemon):
    start = last_id(daemon)
    assert attempt(browser(ELSEWHERE), daemon.url, "mallory", "a guess at it").status_code == 401
    assert attempt(browser(ELSEWHERE), daemon.url, "alice", "not her password").status_code == 401
    alice = log_in(daemon.url, "alice", address=OFFICE)
    page = alice.get(f"{daemon.url}ui/messages", timeout=30)
    alice.post(f"{daemon.url}ui/logout", data={"csrf_token": csrf_token(page.text)}, timeout=30)

    unknown, wrong = entries(daemon, "login.failure", start)
    assert (unknown["actor"], unknown["source"], unknown["target"], unknown["ok"]) == (
        "anonymous", ELSEWHERE, "user mallory", False)
    assert unknown["detail"]["known_user"] is False
    assert (wrong["target"], wrong["detail"]["known_user"], wrong["ok"]) == ("user alice", True, False)
    success = one(daemon, "login.success", start)
    assert (success["actor"], success["source"], success["target"], success["ok"]) == (
        "user alice", OFFICE, "user alice", True)
    logout = one(daemon, "logout", start)
    assert (logout["actor"], logout["source"]) == ("user alice", OFFICE)
    assert "not her password" not in everything_written(daemon) and "a guess at it" not in everything_written(daemon)


def test_a_throttled_account_is_audited_once_a_minute_not_once_a_request(daemon):
    webui.add_user(daemon.store, "tess", PASSWORD, "operator")
    start = last_id(daemon)
    statuses = [attempt(browser(ELSEWHERE), daemon.url, "tess", f"wrong {n}").status_code for n in range(10)]
    assert statuses.count(429) >= 3, statuses
    throttled = one(daemon, "login.throttled", start)
    assert (throttled["actor"], throttled["target"], throttled["ok"]) == ("anonymous", "user tess", False)
    assert throttled["detail"]["retry_after"] >= 1
    assert len(entries(daemon, "login.failure", start)) == statuses.count(401)


def test_a_login_while_another_program_holds_the_database_waits_briefly_for_its_entry(daemon, caplog):
    blocker = sqlite3.connect(daemon.data_dir / "modemgw.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        answer = attempt(browser(OFFICE), daemon.url, "alice", PASSWORD)
        took = time.monotonic() - started
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert answer.status_code == 302 and "/ui/login" not in answer.headers["Location"]
    assert took < 6, f"the login waited {took:.1f} s for its audit entry"
    assert any("audit entry login.success by user alice" in record.getMessage() for record in caplog.records)



def test_an_entry_waits_briefly_also_behind_a_write_of_its_own_gateway_stuck_on_another_program(daemon):
    """A scheduled job of the gateway that waits (up to 10 s) for another program's lock holds the gateway's own
    write lock meanwhile: an audit entry waited behind it, and a login took 15.7 s (seen in CI)."""
    blocker = sqlite3.connect(daemon.data_dir / "modemgw.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    outcome: list[str] = []

    def job() -> None:  # what `expire` does every 10 s: a write of this process, waiting for the blocker
        try:
            with daemon.store.transaction() as conn:
                conn.execute("SELECT 1")
            outcome.append("written")
        except StoreError as error:
            outcome.append(error.kind)

    stuck = threading.Thread(target=job)
    stuck.start()
    try:
        lock, waiting, deadline = daemon.store._write_lock, threading.Event(), time.monotonic() + 5
        while lock.acquire(blocking=False):  # until the job holds the gateway's lock (and waits in SQLite's)
            lock.release()
            assert time.monotonic() < deadline, "the job never took the gateway's write lock"
            waiting.wait(0.01)
        started = time.monotonic()
        with pytest.raises(StoreError) as refused:
            daemon.store.add_audit("test.entry", "user alice")
        took = time.monotonic() - started
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        stuck.join(15)
    assert refused.value.kind == "locked" and took < 4, f"the entry waited {took:.1f} s"
    assert outcome == ["written"]  # the job goes on once the other program lets go


# --- users and sessions ----------------------------------------------------------------------------------------

def test_an_admins_user_changes_are_audited_and_end_the_users_sessions(daemon):
    base = daemon.url
    admin = log_in(base, "alice", address=OFFICE)
    start = last_id(daemon)
    added = post_form(admin, base, "ui/settings", action="user", username="bob", password="bob's first password",
                      role="operator")
    assert "User added." in added.text
    bob_id = daemon.store.user_by_name("bob")["id"]
    bob = log_in(base, "bob", "bob's first password", address=ELSEWHERE)
    assert "User disabled; their sessions have ended." in post_form(admin, base, "ui/settings", action="disable",
                                                                      user_id=bob_id).text
    assert not opens(bob, base), "a disabled user's open session is refused at its next request"
    post_form(admin, base, "ui/settings", action="enable", user_id=bob_id)
    post_form(admin, base, "ui/settings", action="password", user_id=bob_id, password="bob's second password")
    refused = post_form(admin, base, "ui/settings", action="password", user_id=bob_id, password="short")
    assert "Not done: a password needs 10 to 1024 characters" in refused.text
    alice_id = daemon.store.user_by_name("alice")["id"]
    assert "Not done: not your own account here" in post_form(admin, base, "ui/settings", action="disable",
                                                              user_id=alice_id).text
    post_form(admin, base, "ui/settings", action="delete", user_id=bob_id)

    expected = [("user.add", "user bob", True), ("user.disable", "user bob", True), ("user.enable", "user bob", True),
                ("user.password", "user bob", True), ("user.password", "user bob", False),
                ("user.disable", "user alice", False), ("user.delete", "user bob", True)]
    rows = sorted((row for row in daemon.gateway.audit_log(100, action="user.") if row["id"] > start),
                  key=lambda row: row["id"])
    assert [(row["action"], row["target"], row["ok"]) for row in rows] == expected
    assert all((row["actor"], row["source"]) == ("user alice", OFFICE) for row in rows)
    assert rows[0]["detail"] == {"role": "operator"}
    assert "a password needs 10" in rows[4]["detail"]["error"]
    written = everything_written(daemon)
    assert "bob's first password" not in written and "bob's second password" not in written and "short" not in written


def test_an_admin_ends_one_session_of_a_user_and_then_all_of_them(daemon):
    base = daemon.url
    webui.add_user(daemon.store, "carol", PASSWORD, "operator")
    carol_id = daemon.store.user_by_name("carol")["id"]
    phone, desk, laptop = (log_in(base, "carol", address=address) for address in (OFFICE, ELSEWHERE, "203.0.113.5"))
    admin = log_in(base, "alice", address=OFFICE)
    page = admin.get(f"{base}ui/settings", timeout=30).text
    assert len(re.findall(r'aria-label="End carol\'s session', page)) == 3, page
    desk_session = session_from(page, ELSEWHERE)
    start = last_id(daemon)
    ended = post_form(admin, base, "ui/settings", action="revoke-session", user_id=carol_id, session_id=desk_session)
    assert "Session ended; that browser must log in again." in ended.text
    assert [opens(http, base) for http in (phone, desk, laptop)] == [True, False, True], "only that one ended"
    again = post_form(admin, base, "ui/settings", action="revoke-session", user_id=carol_id, session_id=desk_session)
    assert "Not done: that session has ended already" in again.text
    assert "All their sessions have ended." in post_form(admin, base, "ui/settings", action="end-sessions",
                                                         user_id=carol_id).text
    assert not any(opens(http, base) for http in (phone, desk, laptop))
    revoked, refused = entries(daemon, "session.revoke", start)
    assert (revoked["actor"], revoked["source"], revoked["target"], revoked["ok"]) == (
        "user alice", OFFICE, "user carol", True)
    assert revoked["detail"] == {"session": desk_session} and refused["ok"] is False
    everyone = one(daemon, "session.revoke_all", start)
    assert (everyone["target"], everyone["ok"]) == ("user carol", True)


def test_a_user_sees_their_own_sessions_and_ends_the_others(daemon):
    base = daemon.url
    webui.add_user(daemon.store, "dora", PASSWORD, "operator")
    here, there, third = (log_in(base, "dora", address=address) for address in (OFFICE, ELSEWHERE, "203.0.113.9"))
    page = here.get(f"{base}ui/account", timeout=30).text
    assert page.count("this browser") == 1 and page.count('name="session_id"') == 2, page
    assert re.search(r"from 198\.51\.100\.7</span>\s*<strong class=\"this-session\">this browser", page), page
    start = last_id(daemon)
    other = session_from(page, ELSEWHERE)
    assert "That session has ended." in post_form(here, base, "ui/account", action="revoke", session_id=other).text
    assert [opens(here, base), opens(there, base), opens(third, base)] == [True, False, True]
    refused = post_form(here, base, "ui/account", action="revoke", session_id="0" * 16)
    assert "Not done: no such other session of yours" in refused.text
    assert "Your other sessions have ended." in post_form(here, base, "ui/account", action="revoke-others").text
    assert opens(here, base) and not opens(there, base) and not opens(third, base)
    rows = entries(daemon, "session.revoke", start)
    assert [(row["actor"], row["target"], row["ok"]) for row in rows] == [("user dora", "user dora", True),
                                                                          ("user dora", "user dora", False)]
    assert one(daemon, "session.revoke_all", start)["source"] == OFFICE


def test_someone_elses_session_cannot_be_ended_from_the_account_page(daemon):
    base = daemon.url
    webui.add_user(daemon.store, "emil", PASSWORD, "operator")
    webui.add_user(daemon.store, "fay", PASSWORD, "operator")
    emil, fay = log_in(base, "emil"), log_in(base, "fay")
    fay_id = daemon.store.user_by_name("fay")["id"]
    fays = webui.sessions.Sessions(daemon.store).listed(fay_id)[0]["id"]
    answer = post_form(emil, base, "ui/account", action="revoke", session_id=fays)
    assert "Not done: no such other session of yours" in answer.text
    assert opens(fay, base)


def test_changing_ones_own_password_is_audited_without_the_password(daemon):
    base = daemon.url
    webui.add_user(daemon.store, "gus", PASSWORD, "operator")
    gus = log_in(base, "gus", address=OFFICE)
    start = last_id(daemon)
    post_form(gus, base, "ui/account", password="not my password", new_password="gus's new password",
              repeat_password="gus's new password")
    post_form(gus, base, "ui/account", password=PASSWORD, new_password="gus's new password",
              repeat_password="gus's new password")
    refused, done = entries(daemon, "user.password", start)
    assert (refused["actor"], refused["target"], refused["ok"], refused["detail"]["error"]) == (
        "user gus", "user gus", False, "The current password is wrong.")
    assert (done["ok"], done["detail"], done["source"]) == (True, {"own": True}, OFFICE)
    assert "gus's new password" not in everything_written(daemon)


def test_the_users_commands_are_audited_as_the_command_line(daemon, run):
    start = last_id(daemon)
    data = daemon.data_dir
    assert run("users", "add", "--data", data, "--username", "hal", "--password-stdin",
               input="hal's long password\n").exit_code == 0
    assert run("users", "passwd", "hal", "--data", data, "--password-stdin",
               input="hal's newer password\n").exit_code == 0
    assert run("users", "disable", "hal", "--data", data).exit_code == 0
    assert run("users", "enable", "hal", "--data", data).exit_code == 0
    assert run("users", "delete", "hal", "--data", data).exit_code == 0
    assert run("users", "disable", "nobody", "--data", data).exit_code == 1
    rows = sorted((row for row in daemon.gateway.audit_log(100, action="user.") if row["id"] > start),
                  key=lambda row: row["id"])
    assert [(row["action"], row["target"], row["ok"]) for row in rows] == [
        ("user.add", "user hal", True), ("user.password", "user hal", True), ("user.disable", "user hal", True),
        ("user.enable", "user hal", True), ("user.delete", "user hal", True), ("user.disable", "user nobody", False)]
    assert all((row["actor"], row["source"]) == ("cli", "console") and row["detail"]["os_user"] for row in rows)
    written = everything_written(daemon)
    assert "hal's long password" not in written and "hal's newer password" not in written


# --- API keys --------------------------------------------------------------------------------------------------

def test_keys_made_and_revoked_in_the_ui_and_the_cli_are_audited_without_the_key(daemon, run):
    base = daemon.url
    admin = log_in(base, "alice", address=OFFICE)
    start = last_id(daemon)
    made = post_form(admin, base, "ui/settings", action="key", name="billing", scopes=["send", "read"])
    key = re.search(r'id="new-key">([^<]+)<', made.text).group(1)
    key_id = next(row["id"] for row in daemon.gateway.api_keys() if row["name"] == "billing")
    assert "Key revoked." in post_form(admin, base, "ui/settings", action="revoke", key_id=key_id).text
    assert "Not done: no active key" in post_form(admin, base, "ui/settings", action="revoke", key_id=key_id).text
    assert "Not done: scopes must be" in post_form(admin, base, "ui/settings", action="key", name="bad",
                                                   scopes="everything").text
    created = run("keys", "create", "--data", daemon.data_dir, "--name", "reports", "--scopes", "read")
    cli_key = created.output.splitlines()[0]
    cli_id = next(row["id"] for row in daemon.gateway.api_keys() if row["name"] == "reports")
    assert run("keys", "revoke", "--data", daemon.data_dir, cli_id).exit_code == 0

    made_rows, revoked_rows = entries(daemon, "key.create", start), entries(daemon, "key.revoke", start)
    assert [(row["actor"], row["source"], row["target"], row["ok"]) for row in made_rows] == [
        ("user alice", OFFICE, f"key billing (#{key_id})", True), ("user alice", OFFICE, "key bad", False),
        ("cli", "console", f"key reports (#{cli_id})", True)]
    assert made_rows[0]["detail"] == {"scopes": ["send", "read"]}
    assert [(row["actor"], row["target"], row["ok"]) for row in revoked_rows] == [
        ("user alice", f"key billing (#{key_id})", True), ("user alice", f"key billing (#{key_id})", False),
        ("cli", f"key reports (#{cli_id})", True)]
    written = everything_written(daemon)
    assert key[len("mgw_12345678_"):] not in written and cli_key[len("mgw_12345678_"):] not in written


# --- modems: settings, USSD, AT --------------------------------------------------------------------------------

def test_modem_settings_changed_in_the_ui_and_the_api_are_audited_with_before_and_after(daemon, admin_key):
    first, second = daemon.store.modems()[:2]
    admin = log_in(daemon.url, "alice", address=OFFICE)
    start = last_id(daemon)
    post_form(admin, daemon.url, f"ui/modems/{second['id']}", action="settings", enabled="on",
              label="front-desk", group="", rate_per_minute="", quota_day="50", quota_month="")
    refused = post_form(admin, daemon.url, f"ui/modems/{second['id']}", action="settings", enabled="on",
                        label=first["label"], group="", rate_per_minute="", quota_day="", quota_month="")
    assert "already labelled" in refused.text
    api = Client(daemon.url, admin_key[0])
    status, _, _ = api.call("PATCH", f"api/v1/modems/{second['id']}", {"label": second["label"], "quota_day": None})
    assert status == 200
    status, _, _ = api.call("PATCH", f"api/v1/modems/{second['id']}", {"label": first["label"]})
    assert status == 409
    ui_done, ui_refused, api_done, api_refused = entries(daemon, "modem.update", start)
    assert (ui_done["actor"], ui_done["source"], ui_done["target"], ui_done["ok"]) == (
        "user alice", OFFICE, f"modem {second['label']} (#{second['id']})", True)
    assert ui_done["detail"]["changes"] == {"label": [second["label"], "front-desk"], "quota_day": [None, 50]}
    assert ui_refused["ok"] is False and "already labelled" in ui_refused["detail"]["error"]
    assert (api_done["actor"], api_done["source"], api_done["target"]) == (
        f"key ops (#{admin_key[1].id})", "127.0.0.1", f"modem front-desk (#{second['id']})")
    assert api_done["detail"]["changes"] == {"label": ["front-desk", second["label"]], "quota_day": [50, None]}
    assert api_refused["ok"] is False
    daemon.pool.refresh(second["id"])


def test_at_commands_from_the_ui_console_never_keep_a_pin(daemon):
    modem_id = daemon.store.modems()[0]["id"]
    admin = log_in(daemon.url, "alice", address=OFFICE)
    start = last_id(daemon)
    pages = [post_form(admin, daemon.url, f"ui/modems/{modem_id}", action="at", command=command).text
             for command in ('AT+CPIN="1234"', "AT+CPIN=1234", "AT+CSQ;+CPIN=4321", "AT+CSQ")]
    rows = entries(daemon, "modem.at", start)
    assert [row["detail"]["command"] for row in rows] == ["AT+CPIN=***", "AT+CPIN=***", "AT+CSQ;+CPIN=***", "AT+CSQ"]
    assert all((row["actor"], row["source"], row["target"]) == ("user alice", OFFICE, f"modem #{modem_id}")
               for row in rows)
    assert rows[-1]["ok"] and rows[-1]["detail"]["final"] == "OK"
    history = [entry["detail"]["command"] for entry in daemon.gateway.at_history(modem_id)]
    assert "AT+CPIN=***" in history and "AT+CSQ;+CPIN=***" in history
    written = everything_written(daemon)
    assert "1234" not in written and "4321" not in written and "1234" not in json.dumps(history)
    for page in pages[:2]:  # neither the page's history nor the command shown back
        assert "1234" not in page


def test_at_and_ussd_from_the_api_and_the_console_are_audited(daemon, admin_key):
    modem = daemon.store.modems()[0]
    api = Client(daemon.url, admin_key[0])
    start = last_id(daemon)
    assert api.call("POST", f"api/v1/modems/{modem['id']}/at", {"command": "AT+CPIN=9876"})[0] == 200
    assert api.call("POST", f"api/v1/modems/{modem['id']}/at", {"command": "AT+CMGS=12"})[0] == 400
    assert api.call("POST", f"api/v1/modems/{modem['id']}/ussd", {"code": "*#100#"})[0] == 200
    console = daemon.at_command(modem["label"], "AT+CPIN=5555", 5)
    assert "error" not in console, console
    at_rows = entries(daemon, "modem.at", start)
    assert [(row["actor"], row["source"], row["ok"]) for row in at_rows] == [
        (f"key ops (#{admin_key[1].id})", "127.0.0.1", True), (f"key ops (#{admin_key[1].id})", "127.0.0.1", False),
        ("modemgw console (control socket)", "local", True)]
    assert "prompt" in at_rows[1]["detail"]["error"]
    ussd = one(daemon, "modem.ussd", start)
    assert (ussd["actor"], ussd["target"], ussd["ok"], ussd["detail"]["code"]) == (
        f"key ops (#{admin_key[1].id})", f"modem #{modem['id']}", True, "*#100#")
    written = everything_written(daemon)
    assert "9876" not in written and "5555" not in written


def test_ussd_from_the_ui_is_audited_and_a_refused_code_too(daemon):
    modem_id = daemon.store.modems()[0]["id"]
    operator = log_in(daemon.url, "oscar", address=ELSEWHERE)
    start = last_id(daemon)
    post_form(operator, daemon.url, f"ui/modems/{modem_id}", action="ussd", code="*#100#")
    refused = one(daemon, "modem.ussd", start)
    assert (refused["actor"], refused["source"], refused["ok"]) == ("user oscar", ELSEWHERE, False)
    assert "ussd_allow" in refused["detail"]["error"]


# --- opt-outs --------------------------------------------------------------------------------------------------

def test_opt_out_list_changes_by_people_are_audited(daemon, admin_key):
    admin = log_in(daemon.url, "alice", address=OFFICE)
    api = Client(daemon.url, admin_key[0])
    start = last_id(daemon)
    post_form(admin, daemon.url, "ui/settings", action="optout", number="07700 900111")
    post_form(admin, daemon.url, "ui/settings", action="optin", number="+447700900111")
    assert "Not done" in post_form(admin, daemon.url, "ui/settings", action="optout", number="not a number").text
    assert api.call("POST", "api/v1/optouts", {"number": "+447700900222", "note": "asked by phone"})[0] == 201
    assert api.call("DELETE", "api/v1/optouts/+447700900222")[0] == 204
    assert api.call("DELETE", "api/v1/optouts/+447700900222")[0] == 404
    added, removed = entries(daemon, "optout.add", start), entries(daemon, "optout.remove", start)
    assert [(row["actor"], row["target"], row["ok"]) for row in added] == [
        ("user alice", "+447700900111", True), ("user alice", "not a number", False),
        (f"key ops (#{admin_key[1].id})", "+447700900222", True)]
    assert added[2]["detail"] == {"created": True, "note": "asked by phone"}
    assert [(row["actor"], row["target"], row["ok"]) for row in removed] == [
        ("user alice", "+447700900111", True), (f"key ops (#{admin_key[1].id})", "+447700900222", True),
        (f"key ops (#{admin_key[1].id})", "+447700900222", False)]


# --- reading the log -------------------------------------------------------------------------------------------

def test_the_api_reads_the_log_with_filters_and_a_cursor_for_admin_keys_only(daemon, admin_key):
    api = Client(daemon.url, admin_key[0])
    for number in range(5):
        daemon.gateway.audit("test.paging", actor=f"robot {number}", source="local", target=f"item {number}")
    daemon.gateway.audit("test.refusal", actor="robot", source="local", ok=False)
    status, _, page = api.call("GET", "api/v1/audit?action=test.paging&limit=2")
    assert status == 200 and [row["target"] for row in page["data"]] == ["item 4", "item 3"]
    assert page["data"][0]["at"].endswith("Z") or "+" in page["data"][0]["at"]
    status, _, second = api.call("GET", f"api/v1/audit?action=test.paging&limit=2&cursor={page['next_cursor']}")
    assert [row["target"] for row in second["data"]] == ["item 2", "item 1"]
    status, _, robot = api.call("GET", "api/v1/audit?actor=ROBOT%203")
    assert [row["target"] for row in robot["data"]] == ["item 3"]
    future = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() + 3600))
    assert api.call("GET", f"api/v1/audit?since={future}")[2]["data"] == []
    assert api.call("GET", f"api/v1/audit?action=test.paging&until={future}")[2]["data"]
    refused = api.call("GET", "api/v1/audit?ok=false&limit=500")[2]["data"]
    assert refused and all(not row["ok"] for row in refused)
    status, _, problem = api.call("GET", "api/v1/audit?since=yesterday")
    assert status == 400 and problem["field"] == "since"
    assert api.call("GET", "api/v1/audit?ok=maybe")[0] == 400
    assert api.call("GET", f"api/v1/audit?actor={'x' * 101}")[0] == 400
    sender = auth.create_key(daemon.store, "sender", ("send", "read"))[0]
    assert Client(daemon.url, sender).call("GET", "api/v1/audit")[0] == 403


def test_the_audit_page_filters_and_pages_for_admins_only(daemon):
    for number in range(105):
        daemon.gateway.audit("test.page", actor="pager", source="local", target=f"row {number}", ok=number % 2 == 0)
    daemon.gateway.audit("test.page", actor="pager", source="local", target="with a secret",
                         detail={"password": "hunter2 hunter2", "pin": "1234", "note": "kept"})
    admin = log_in(daemon.url, "alice")
    page = admin.get(f"{daemon.url}ui/audit", params={"action": "test.page", "actor": "PAGER"}, timeout=30).text
    assert page.count("<tr class=") == 100 and "note: kept" in page and "hunter2" not in page
    older = re.search(r'href="([^"]+)" rel="next">Older entries', page).group(1).replace("&amp;", "&")
    rest = admin.get(daemon.url.rstrip("/") + older, timeout=30).text
    assert rest.count("<tr class=") == 6 and "row 0<" in rest and "Newest entries" in rest
    assert 'rel="next"' not in rest
    refused = admin.get(f"{daemon.url}ui/audit", params={"action": "test.page", "refused": "1"}, timeout=30).text
    assert refused.count('class="refused"') == 52 and refused.count("<tr class=") == 52
    today = time.strftime("%Y-%m-%d")
    dated = admin.get(f"{daemon.url}ui/audit", params={"action": "test.page", "since": today, "until": today},
                      timeout=30).text
    assert dated.count("<tr class=") == 100
    tomorrow = time.strftime("%Y-%m-%d", time.localtime(time.time() + 86400))
    none = admin.get(f"{daemon.url}ui/audit", params={"action": "test.page", "since": tomorrow}, timeout=30).text
    assert "No entries match these filters." in none
    for name in ("from", "since"):  # the page's name (as on Messages), and the one older links carry
        bad = admin.get(f"{daemon.url}ui/audit", params={"action": "test.page", name: "31/12/2026", "to": today},
                        timeout=30)
        assert bad.status_code == 200 and "From: &#39;31/12/2026&#39; is not a date (YYYY-MM-DD); that filter is " \
            "left out" in bad.text
        assert bad.text.count("<tr class=") == 100  # the other filters still apply
    xx = admin.get(f"{daemon.url}ui/audit", params={"from": "xx", "to": "2026-13-01"}, timeout=30).text
    assert "From: &#39;xx&#39; is not a date" in xx and "To: &#39;2026-13-01&#39; is not a date" in xx
    assert admin.get(f"{daemon.url}ui/audit", params={"action": "test.page", "from": tomorrow},
                     timeout=30).text.count("No entries match these filters.") == 1
    assert "Audit log" in admin.get(f"{daemon.url}ui/settings", timeout=30).text
    operator = log_in(daemon.url, "oscar")
    assert operator.get(f"{daemon.url}ui/audit", timeout=30).status_code == 403
