"""Web UI sessions, users and the login throttle: over real HTTP against a running gateway on 127.0.0.1 (port 0),
the `modemgw users` commands through click's runner, and the session and throttle objects on a real database."""

import hashlib
import logging
import re
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from waitress.server import create_server
from werkzeug import security

import webui
from modemgw import config as configuration, users
from modemgw.app import TrustedProxies
from modemgw.cli import main
from modemgw.store import Store
from tests.support import PASSWORD, attempt, browser, csrf_token, eventually, log_in, running_daemon

TRUSTED = configuration.parse_trusted_proxies(["127.0.0.1", "10.0.0.0/8"])


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with running_daemon(tmp_path_factory, "sessions", {"alice": "admin"},  # the web UI needs no modems
                        settings={"http": {"trusted_proxies": ["127.0.0.1"]}}) as running:
        yield running


@pytest.fixture(scope="module")
def proxied(daemon):
    """The gateway's application served by a waitress that passes X-Forwarded-* on, so that the app's own
    TrustedProxies decides; requests from this test come from 127.0.0.1, the trusted "proxy"."""
    server = create_server(daemon.app, host="127.0.0.1", port=0, threads=8, clear_untrusted_proxy_headers=False)

    def serve():
        try:
            server.run()
        except OSError:  # closed below
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}/"
    server.close()
    for channel in list(server._map.values()):
        channel.close()
    thread.join(10)


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args, input=None):
        return runner.invoke(main, [str(arg) for arg in args], input=input, catch_exceptions=False)

    return invoke


def logged_in(http: requests.Session, base: str) -> bool:
    """Whether this browser's session still opens a page (else the gateway sends it to the login page)."""
    return http.get(f"{base}ui/messages", allow_redirects=False, timeout=30).status_code == 200


def post_form(http: requests.Session, base: str, path: str, **fields) -> requests.Response:
    page = http.get(f"{base}{path}", timeout=30)
    return http.post(f"{base}{path}", data={"csrf_token": csrf_token(page.text), **fields}, timeout=30)


# --- revocation ------------------------------------------------------------------------------------------------

def test_a_cookie_copied_before_logout_is_refused_after_it(daemon):
    base = daemon.url
    original = log_in(base, "alice")
    token = original.cookies["session"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token), "the cookie is a random token and nothing else"
    copy = requests.Session()
    copy.cookies.set("session", token)
    assert logged_in(copy, base)
    page = original.get(f"{base}ui/messages", timeout=30)
    out = original.post(f"{base}ui/logout", data={"csrf_token": csrf_token(page.text)}, allow_redirects=False,
                        timeout=30)
    assert out.status_code == 302 and out.headers["Location"] == "/ui/login"
    assert "session" not in original.cookies
    refused = copy.get(f"{base}ui/messages", allow_redirects=False, timeout=30)
    assert refused.status_code == 302 and refused.headers["Location"].startswith("/ui/login")
    assert "Max-Age=0" in refused.headers["Set-Cookie"], "the browser is told to forget it"
    token_hash = hashlib.sha256(token.encode()).hexdigest()
    assert daemon.store.query("SELECT COUNT(*) FROM sessions WHERE token_hash = ?", (token_hash,))[0][0] == 0


def test_a_disabled_users_open_session_is_refused_and_enabling_does_not_revive_it(daemon, run):
    webui.add_user(daemon.store, "dave", PASSWORD, "operator")
    dave = log_in(daemon.url, "dave")
    disabled = run("users", "disable", "dave", "--data", daemon.data_dir)  # another process's view: the database
    assert disabled.exit_code == 0 and "user dave disabled" in disabled.output
    assert not logged_in(dave, daemon.url)
    refused = attempt(browser(), daemon.url, "dave", PASSWORD)  # the right password: told why (issue #16)
    assert refused.status_code == 403 and "This account is disabled; ask an administrator." in refused.text
    guessed = attempt(browser(), daemon.url, "dave", "not his password")  # a wrong one learns nothing
    assert guessed.status_code == 401 and "Wrong username or password." in guessed.text
    assert run("users", "enable", "dave", "--data", daemon.data_dir).exit_code == 0
    assert not logged_in(dave, daemon.url)
    assert logged_in(log_in(daemon.url, "dave"), daemon.url)


def test_a_new_password_from_the_command_line_ends_the_users_sessions(daemon, run):
    webui.add_user(daemon.store, "carl", PASSWORD, "operator")
    carl = log_in(daemon.url, "carl")
    changed = run("users", "passwd", "carl", "--data", daemon.data_dir, "--password-stdin",
                  input="a much better password\n")
    assert changed.exit_code == 0, changed.output
    assert not logged_in(carl, daemon.url)
    assert attempt(browser(), daemon.url, "carl", PASSWORD).status_code == 401
    assert logged_in(log_in(daemon.url, "carl", "a much better password"), daemon.url)


def test_an_admin_disables_enables_resets_and_deletes_a_user_from_the_settings_page(daemon):
    base = daemon.url
    webui.add_user(daemon.store, "erin", PASSWORD, "operator")
    erin, admin = log_in(base, "erin"), log_in(base, "alice")
    erin_id = daemon.store.user_by_name("erin")["id"]

    def act(action, user_id=erin_id, **fields):
        return post_form(admin, base, "ui/settings", action=action, user_id=user_id, **fields).text

    assert "User disabled; their sessions have ended." in act("disable")
    assert not logged_in(erin, base)
    assert "User enabled." in act("enable")
    erin = log_in(base, "erin")
    assert "Not done: a password needs 10 to 1024 characters" in act("password", password="short")
    assert logged_in(erin, base)
    assert "Password set; that user&#39;s sessions have ended." in act("password", password="a brand new password")
    assert not logged_in(erin, base)
    erin = log_in(base, "erin", "a brand new password")
    assert "User deleted; their sessions have ended." in act("delete")
    assert not logged_in(erin, base)
    assert daemon.store.user_by_name("erin") is None
    alice_id = daemon.store.user_by_name("alice")["id"]
    assert "Not done: not your own account here" in act("disable", user_id=alice_id)
    webui.add_user(daemon.store, "olga", PASSWORD, "operator")
    operator = log_in(base, "olga")
    page = operator.get(f"{base}ui/messages", timeout=30)
    refused = operator.post(f"{base}ui/settings", timeout=30, data={
        "csrf_token": csrf_token(page.text), "action": "disable", "user_id": alice_id})
    assert refused.status_code == 403, "operators cannot touch users"


def test_changing_ones_own_password_ends_the_other_sessions_and_keeps_this_one(daemon):
    base = daemon.url
    webui.add_user(daemon.store, "frank", PASSWORD, "operator")
    here, elsewhere = log_in(base, "frank"), log_in(base, "frank")
    wrong = post_form(here, base, "ui/account", password="not the password", new_password="another long password",
                      repeat_password="another long password")
    assert wrong.status_code == 400 and "The current password is wrong." in wrong.text
    differ = post_form(here, base, "ui/account", password=PASSWORD, new_password="another long password",
                       repeat_password="another long passwort")
    assert differ.status_code == 400 and "the two new passwords differ" in differ.text
    changed = post_form(here, base, "ui/account", password=PASSWORD, new_password="another long password",
                        repeat_password="another long password")
    assert changed.status_code == 200 and "Password changed. Your other sessions have ended." in changed.text
    assert logged_in(here, base) and not logged_in(elsewhere, base)
    assert attempt(browser(), base, "frank", PASSWORD).status_code == 401
    assert logged_in(log_in(base, "frank", "another long password"), base)


# --- secrets and headers ---------------------------------------------------------------------------------------

def test_a_new_key_and_webhook_secret_are_shown_on_their_page_and_never_put_in_a_cookie(daemon):
    base = daemon.url
    admin = log_in(base, "alice")
    made = post_form(admin, base, "ui/settings", action="webhook", url="http://127.0.0.1:9/hook")
    secret = re.search(r'id="new-webhook-secret">([^<]+)<', made.text).group(1)
    made_key = post_form(admin, base, "ui/settings", action="key", name="billing", scopes="send")
    key = re.search(r'id="new-key">([^<]+)<', made_key.text).group(1)
    for answer, shown in ((made, secret), (made_key, key)):
        assert answer.headers["Cache-Control"] == "no-store"
        assert shown not in answer.headers.get("Set-Cookie", "")
    assert list(admin.cookies.keys()) == ["session"]
    assert all(shown not in admin.cookies["session"] for shown in (secret, key))
    again = admin.get(f"{base}ui/settings", timeout=30)
    assert secret not in again.text and key not in again.text, "shown once"


@pytest.mark.parametrize("path", ["ui/login", "ui/static/app.css", "health", "openapi.json", "api/v1/messages"])
def test_every_response_forbids_framing_and_sniffing_and_keeps_the_referrer(daemon, path):
    answer = requests.get(f"{daemon.url}{path}", timeout=30)
    assert answer.headers["X-Frame-Options"] == "DENY"
    policy = answer.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy and "default-src 'self'" in policy
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Referrer-Policy"] == "same-origin"


def test_ui_pages_are_not_stored_but_static_files_may_be(daemon):
    admin = log_in(daemon.url, "alice")
    for path in ("ui/login", "", "ui/settings", "ui/account"):
        assert admin.get(f"{daemon.url}{path}", timeout=30).headers["Cache-Control"] == "no-store", path
    assert "no-store" not in requests.get(f"{daemon.url}ui/static/app.js", timeout=30).headers.get("Cache-Control", "")


# --- the login throttle, through a trusted proxy ----------------------------------------------------------------

def test_five_failed_logins_from_one_address_do_not_stop_admin_logging_in_from_another(daemon, proxied, caplog):
    caplog.set_level(logging.INFO, logger="modemgw.webui")
    webui.add_user(daemon.store, "grace", PASSWORD, "admin")
    attacker = browser("198.51.100.7")
    for _ in range(5):
        assert attempt(attacker, proxied, "grace", "not her password").status_code == 401
    admin = log_in(proxied, "grace", address="203.0.113.9")
    assert logged_in(admin, proxied)
    messages = [record.getMessage() for record in caplog.records if record.name == "modemgw.webui"]
    failed = [message for message in messages if message.startswith("web UI login failed for 'grace'")]
    assert failed == ["web UI login failed for 'grace' from 198.51.100.7"] * 5, messages
    assert "web UI login: grace from 203.0.113.9" in messages


def test_more_wrong_passwords_make_the_account_wait_but_never_lock_it(daemon, proxied):
    webui.add_user(daemon.store, "heidi", PASSWORD, "admin")
    attacker = browser("198.51.100.8")
    for _ in range(6):
        assert attempt(attacker, proxied, "heidi", "not her password").status_code == 401
    owner = browser("203.0.113.10")
    refused = attempt(owner, proxied, "heidi", PASSWORD)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert "Too many wrong passwords for this account: try again in 1 s." in refused.text
    assert eventually(lambda: attempt(owner, proxied, "heidi", PASSWORD).status_code == 302, timeout=10)


def test_https_at_a_trusted_proxy_makes_the_session_cookie_secure(daemon, proxied):
    http = browser("203.0.113.11")
    http.headers["X-Forwarded-Proto"] = "https"
    page = http.get(f"{proxied}ui/login", timeout=30)
    assert "Secure" in page.headers["Set-Cookie"]
    answer = http.post(f"{proxied}ui/login", allow_redirects=False, timeout=30,
                       cookies={"login_csrf": page.cookies["login_csrf"]},  # requests keeps Secure ones for https
                       data={"username": "alice", "password": PASSWORD, "csrf_token": csrf_token(page.text)})
    assert answer.status_code == 302
    cookie = next(value for value in answer.raw.headers.getlist("Set-Cookie") if value.startswith("session="))
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    plain = attempt(browser(), proxied, "alice", PASSWORD)
    assert "Secure" not in plain.headers["Set-Cookie"]


def test_forty_parallel_wrong_attempts_make_at_most_the_allowed_password_checks(daemon, monkeypatch):
    webui.add_user(daemon.store, "ivan", PASSWORD, "operator")
    checks, original = [], security.check_password_hash

    def counted(stored, password):  # werkzeug's own check, counted
        checks.append(password)
        return original(stored, password)

    monkeypatch.setattr(security, "check_password_hash", counted)
    throttle = daemon.app.extensions["modemgw.login_throttle"]
    admitted = throttle.checks
    page = requests.get(f"{daemon.url}ui/login", timeout=30)
    form = {"username": "ivan", "password": "not his password", "csrf_token": csrf_token(page.text)}
    start, statuses = threading.Barrier(40), []

    def one():
        start.wait(30)
        statuses.append(requests.post(f"{daemon.url}ui/login", data=form, cookies=page.cookies, timeout=120,
                                      allow_redirects=False).status_code)

    threads = [threading.Thread(target=one) for _ in range(40)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    elapsed = time.monotonic() - began
    # five wrong passwords cost nothing, the sixth makes the next check wait 1 s, the seventh 2 s, ...: the k-th
    # check after the first six is due 2**k - 1 s after the burst began at the earliest
    later = 0
    while 2 ** (later + 1) - 1 <= elapsed:
        later += 1
    assert len(statuses) == 40
    assert 6 <= len(checks) <= 6 + later, (len(checks), elapsed)
    assert statuses.count(401) == len(checks) and statuses.count(429) == 40 - len(checks)
    assert throttle.checks - admitted == len(checks)


def test_a_username_over_64_characters_is_refused_before_any_work(daemon):
    throttle = daemon.app.extensions["modemgw.login_throttle"]
    remembered, admitted = len(throttle), throttle.checks
    refused = attempt(browser(), daemon.url, "a" * 65, PASSWORD)
    assert refused.status_code == 400 and "A username has at most 64 characters" in refused.text
    assert (len(throttle), throttle.checks) == (remembered, admitted)
    assert attempt(browser(), daemon.url, "a" * 64, PASSWORD).status_code == 401  # checked (as no account)
    assert throttle.checks == admitted + 1


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def test_rss_stays_flat_under_300_failed_logins_with_450_kb_usernames(daemon):
    throttle = daemon.app.extensions["modemgw.login_throttle"]
    remembered, admitted = len(throttle), throttle.checks
    http = browser()
    token = csrf_token(http.get(f"{daemon.url}ui/login", timeout=30).text)

    def fail(n):
        answer = http.post(f"{daemon.url}ui/login", timeout=30, data={
            "username": f"{n:03d}" + "x" * 450_000, "password": "not a password", "csrf_token": token})
        assert answer.status_code == 400

    for n in range(30):  # warm-up: the server's and the parser's buffers
        fail(n)
    before = rss_kib()
    for n in range(300):
        fail(n)
    grown = rss_kib() - before
    assert grown < 16 * 1024, f"RSS grew by {grown} KiB over 300 failed logins"  # it was 140 MB: names kept 60 s
    assert (len(throttle), throttle.checks) == (remembered, admitted)


def test_the_daemons_own_server_lets_a_trusted_proxy_name_the_client(daemon, caplog):
    caplog.set_level(logging.WARNING, logger="modemgw.webui")
    attempt(browser("198.51.100.99"), daemon.url, "nobody here", "not a password")
    assert "web UI login failed for 'nobody here' from 198.51.100.99" in [record.getMessage() for record in
                                                                        caplog.records]


# --- the pieces, on a real database and a clock of our own ---------------------------------------------------

@pytest.mark.parametrize("peer, forwarded_for, proto, client, scheme", [
    ("127.0.0.1", "203.0.113.9", "https", "203.0.113.9", "https"),          # the proxy names its client
    ("192.0.2.50", "203.0.113.9", "https", "192.0.2.50", "http"),           # anyone else's headers are ignored
    ("127.0.0.1", "203.0.113.9, 10.1.2.3", "http", "203.0.113.9", "http"),  # a chain of trusted proxies
    ("127.0.0.1", "10.1.2.3, 198.51.100.1, 10.9.9.9", "", "198.51.100.1", "http"),  # what the client wrote: not
    ("127.0.0.1", "", "https", "127.0.0.1", "https"),
    ("127.0.0.1", "203.0.113.9, not-an-address", "", "127.0.0.1", "http"),
    ("127.0.0.1", "[2001:db8::1]:4711", "", "2001:db8::1", "http"),
    ("127.0.0.1", "203.0.113.9:4711", "ftp", "203.0.113.9", "http"),
    ("::ffff:127.0.0.1", "203.0.113.9", "", "203.0.113.9", "http"),          # IPv4 seen through IPv6
])
def test_trusted_proxies_name_the_client_and_the_scheme(peer, forwarded_for, proto, client, scheme):
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        return []

    environ = {"REMOTE_ADDR": peer, "wsgi.url_scheme": "http", "HTTP_X_FORWARDED_FOR": forwarded_for,
               "HTTP_X_FORWARDED_PROTO": proto, "HTTP_X_FORWARDED_HOST": "evil.example", "HTTP_FORWARDED": "for=x"}
    TrustedProxies(app, TRUSTED)(environ, None)
    assert (seen["REMOTE_ADDR"], seen["wsgi.url_scheme"]) == (client, scheme)
    assert not [name for name in seen if "FORWARDED" in name], "no proxy header reaches the application"


def test_trusted_proxies_in_the_configuration(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[http]\ntrusted_proxies = ["127.0.0.1", "10.0.0.0/8", "::1"]\n')
    assert [str(network) for network in configuration.load(path).trusted_proxies] == \
        ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    assert configuration.load(None).trusted_proxies == ()
    path.write_text('[http]\nlisten = "127.0.0.1:8080"\ntrusted_proxies = ["nginx"]\n')
    with pytest.raises(configuration.ConfigError) as caught:
        configuration.load(path)
    assert "config.toml:3: [http] trusted_proxies must be a list of addresses or networks" in str(caught.value)


class Clock:
    def __init__(self):
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "modemgw.db")
    users.add_user(store, "alice", PASSWORD, "admin")
    yield store
    store.close()


def test_a_session_ends_after_two_hours_unused_or_twelve_hours_after_login(store):
    clock = Clock()
    sessions = webui.sessions.Sessions(store, clock=clock)
    idle, _ = sessions.open(store.user_by_name("alice"))
    busy, _ = sessions.open(store.user_by_name("alice"))
    clock.now += 2 * 3600 - 60
    assert sessions.resolve(idle) is not None and sessions.resolve(busy) is not None
    for _ in range(5):  # used every 1 h 58 min: alive until the twelfth hour
        clock.now += 2 * 3600 - 120
        assert sessions.resolve(busy) is not None
    assert sessions.resolve(idle) is None, "unused for over 2 hours"
    clock.now += 700  # 12 h and 40 s after the login, 700 s after its last use
    assert sessions.resolve(busy) is None, "12 hours after its login"
    assert store.query("SELECT COUNT(*) FROM sessions")[0][0] == 0


def test_the_last_use_is_written_at_most_once_a_minute(store):
    clock = Clock()
    sessions = webui.sessions.Sessions(store, clock=clock)
    token, session = sessions.open(store.user_by_name("alice"))

    def written():
        return store.session(session.token_hash)["last_seen_at"]

    opened = written()
    for _ in range(59):
        clock.now += 1
        assert sessions.resolve(token) is not None
    assert written() == opened
    clock.now += 1
    sessions.resolve(token)
    assert written() == clock.now


def test_logging_in_and_out_works_while_another_program_holds_the_database(store, tmp_path):
    clock = Clock()
    sessions = webui.sessions.Sessions(store, clock=clock)
    alice = store.user_by_name("alice")
    blocker = sqlite3.connect(tmp_path / "modemgw.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        token, session = sessions.open(alice)  # not written: kept in memory meanwhile
        assert sessions.resolve(token) is not None and store.session(session.token_hash) is None
        gone, other = sessions.open(alice)
        sessions.end(other)  # a logout works although nothing can be deleted now
        assert sessions.resolve(gone) is None
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    clock.now += 61
    assert sessions.resolve(token) is not None  # saved at its next use
    assert store.session(session.token_hash) is not None
    assert webui.sessions.Sessions(store, clock=clock).resolve(token) is not None, "a restarted gateway knows it"
    assert webui.sessions.Sessions(store, clock=clock).resolve(gone) is None


def test_a_session_kept_in_memory_ends_with_a_new_password_too(store, tmp_path):
    sessions = webui.sessions.Sessions(store, clock=Clock())
    blocker = sqlite3.connect(tmp_path / "modemgw.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        token, _ = sessions.open(store.user_by_name("alice"))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    users.set_password(store, store.user_by_name("alice")["id"], "a different password")
    assert sessions.resolve(token) is None


def test_wrong_passwords_make_the_account_wait_longer_each_time_and_a_right_one_clears_it():
    clock = Clock()
    throttle = users.LoginThrottle(clock=clock)

    def wrong():
        assert throttle.admit("admin", True) == 0
        throttle.done("admin", True, False)

    for _ in range(6):  # five cost nothing; the sixth starts the waits
        wrong()
    for wait in (1, 2, 4, 8, 16, 32, 60, 60):
        assert throttle.admit("admin", True) == pytest.approx(wait)
        clock.now += wait - 0.5
        assert throttle.admit("ADMIN", True) == pytest.approx(0.5), "attempts while it waits change nothing"
        clock.now += 0.5
        wrong()
    assert throttle.refused == 16
    clock.now += 60
    assert throttle.admit("admin", True) == 0
    throttle.done("admin", True, True)
    assert throttle.admit("admin", True) == 0 and len(throttle) == 1


def test_the_throttle_is_bounded_and_made_up_names_cannot_push_an_account_out():
    clock = Clock()
    throttle = users.LoginThrottle(max_entries=1000, clock=clock)
    for _ in range(6):
        throttle.admit("admin", True)
        throttle.done("admin", True, False)
    for n in range(5000):
        assert throttle.admit(f"nobody-{n}", False) == 0
        throttle.done(f"nobody-{n}", False, False)
    assert len(throttle) == 1001
    assert throttle.admit("admin", True) > 0, "admin still waits"
    for n in range(1500):
        throttle.admit(f"user-{n}", True)
        throttle.done(f"user-{n}", True, False)
    assert len(throttle) == 2000


# --- the `modemgw users` commands ------------------------------------------------------------------------------

def test_users_commands_add_list_passwd_disable_enable_delete(tmp_path, run):
    data = tmp_path / "data"
    for name, role in (("root", "admin"), ("ops", "operator")):
        added = run("users", "add", "--data", data, "--username", name, "--role", role, "--password-stdin",
                    input=PASSWORD + "\n")
        assert added.exit_code == 0 and f"user {name} ({role}) added" in added.output
    assert re.search(r"root\s+admin\s+enabled\s+last login never", run("users", "list", "--data", data).output)
    assert run("users", "disable", "ops", "--data", data).exit_code == 0
    assert re.search(r"ops\s+operator\s+disabled", run("users", "list", "--data", data).output)
    assert run("users", "enable", "ops", "--data", data).exit_code == 0
    assert re.search(r"ops\s+operator\s+enabled", run("users", "list", "--data", data).output)
    changed = run("users", "passwd", "ops", "--data", data, "--password-stdin", input="a whole new password\n")
    assert changed.exit_code == 0 and "password of ops set" in changed.output
    store = Store(data / "modemgw.db")
    assert security.check_password_hash(store.user_by_name("ops")["password_hash"], "a whole new password")
    store.close()
    for args, message in [
        (("passwd", "ops", "--password-stdin"), "a password needs 10 to 1024 characters"),
        (("disable", "root"), "that is the only enabled admin: add or enable another admin first"),
        (("delete", "root"), "that is the only enabled admin"),
        (("disable", "nobody"), "no user 'nobody'"),
    ]:
        result = run("users", *args, "--data", data, input="short\n")
        assert result.exit_code == 1 and message in result.output, result.output
    assert run("users", "delete", "ops", "--data", data).exit_code == 0
    listed = run("users", "list", "--data", data).output
    assert "root" in listed and "ops" not in listed


def test_the_users_commands_are_documented(run):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    commands = run("users", "--help").output
    for command in ("add", "list", "passwd", "disable", "enable", "delete"):
        assert f"  {command} " in commands
        assert f"modemgw users {command}" in readme, command


def test_users_are_managed_by_one_module_for_cli_and_web_ui():
    """`modemgw users` and the web UI's settings page both go through modemgw.users; the CLI never imports webui."""
    import inspect

    from modemgw import cli
    from webui import settings, views

    for command in cli.users_group.commands.values():
        source = inspect.getsource(command.callback)
        assert "webui" not in source and "auth." not in source, command.name
    assert "users.add_user(" in inspect.getsource(settings) and "users.set_disabled(" in inspect.getsource(settings)
    assert ".pool.workers" not in inspect.getsource(views) and ".store." not in inspect.getsource(views)
