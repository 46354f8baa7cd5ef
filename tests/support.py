"""Helpers shared by test modules: one place to import them from (test modules never import each other).

Fixtures live in `tests/conftest.py`; plain functions, classes and constants live here.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from modemgw.modem import ModemSettings

FAST = ModemSettings(command_timeout=2.0, send_timeout=5.0, prompt_timeout=2.0, ussd_timeout=2.0,
                     settle_delay=0.05)

MODEMGW = str(Path(sys.executable).parent / "modemgw")

PASSWORD = "correct horse battery"

# The GSM 03.38 default alphabet (128 codes less the escape) and its extension table.
GSM7_BASIC = ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
              "abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXTENSION = "\f^{}\\[~]|€"


# --- configuration and waiting ----------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's package (the `browser` fixture drives it)


def daemon_config(directory, **gateway):
    """A gateway configuration for tests: data in `directory`, HTTP on 127.0.0.1 port 0, short modem timeouts."""
    from modemgw import config as configuration

    config = configuration.load(None, directory)
    config.listen = "127.0.0.1:0"
    config.gateway.default_region = "GB"
    config.pool.reconnect_min, config.pool.reconnect_max = 0.05, 0.5
    config.pool.modem = ModemSettings(command_timeout=2.0, send_timeout=5.0, prompt_timeout=2.0, settle_delay=0.05)
    for key, value in gateway.items():
        setattr(config.gateway, key, value)
    return config


def require(program: str, package: str) -> str:
    """The path of a Debian-packaged program a test needs: skipped with the reason locally, a failure under CI
    (`CI` set), so that a claimed feature cannot go untested there."""
    import shutil

    path = shutil.which(program)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{program} is missing: .ci/run must install Debian's {package}")
        pytest.skip(f"{program} is not installed (apt-get install {package}); CI installs it")
    return path


def eventually(predicate, timeout: float = 15.0) -> bool:
    """Poll state that no event announces (a watcher's scans, a worker's `waiting`), briefly."""
    pause = threading.Event()
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return True
        pause.wait(0.02)
    return bool(predicate())


# --- HTTP API clients -------------------------------------------------------------------------------------------

class Client:
    """The REST API over real HTTP: `call` answers (status, headers, JSON body)."""

    def __init__(self, base, key):
        self.base, self.key = base, key

    def call(self, method, path, body=None, key="default", headers=None, raw=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.base + path.lstrip("/"), data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        key = self.key if key == "default" else key
        if key:
            request.add_header("Authorization", f"Bearer {key}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.headers, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            payload = error.read()
            return error.code, error.headers, json.loads(payload) if payload else None


class AppClient:
    """The same `call` as `Client`, through Flask's test client: no server, no sockets."""

    def __init__(self, test_client, key):
        self.test_client, self.key = test_client, key

    def call(self, method, path, body=None, key="default", headers=None, raw=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        sent = dict(headers or {})
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        key = self.key if key == "default" else key
        if key:
            sent["Authorization"] = f"Bearer {key}"
        response = self.test_client.open("/" + path.lstrip("/"), method=method, data=data, headers=sent)
        payload = response.get_data()
        return response.status_code, response.headers, json.loads(payload) if payload else None


# --- the web UI through a browser -------------------------------------------------------------------------------

def csrf_token(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def browser(address: str | None = None):
    """A person's browser; through the trusted proxy, it seems to come from `address`."""
    import requests

    http = requests.Session()
    if address:
        http.headers["X-Forwarded-For"] = address
    return http


def attempt(http, base: str, username: str, password: str):
    page = http.get(f"{base}ui/login", timeout=30)
    return http.post(f"{base}ui/login", timeout=60, allow_redirects=False, data={
        "username": username, "password": password, "csrf_token": csrf_token(page.text)})


def log_in(base: str, username: str, password: str = PASSWORD, address: str | None = None):
    http = browser(address)
    answer = attempt(http, base, username, password)
    assert answer.status_code == 302 and "/ui/login" not in answer.headers["Location"], answer.text
    return http


@contextlib.contextmanager
def running_daemon(tmp_path_factory, name: str, users: dict[str, str] | None = None, modems: int = 0,
                   settings: dict | None = None, **options):
    """A `Daemon` over HTTP for a test module to share (data in a fresh temporary directory named after `name`),
    started with `modems` simulated modems, all of them ready, and the web UI users `users` ({username: role},
    password PASSWORD); stopped on exit. `settings`: config file sections to apply (e.g. {"http":
    {"trusted_proxies": [...]}}); `options` go to `Daemon` (sim_send_latency, webhook_schedule, ...)."""
    from modemgw import config as configuration
    from modemgw.daemon import Daemon
    from modemgw.users import add_user

    config = daemon_config(tmp_path_factory.mktemp(name))
    if settings:
        configuration.apply(config, settings)
    daemon = Daemon(config, simulate=modems, **options).start()
    try:
        if modems:
            assert daemon.pool.wait_ready(10), daemon.pool.status()
        for username, role in (users or {}).items():
            add_user(daemon.store, username, PASSWORD, role)
        yield daemon
    finally:
        daemon.stop()


def logged_in_page(browser, daemon, username: str = "alice", password: str = PASSWORD, timeout: float = 15_000,
                   **context):
    """A page in a browser context of its own (its own cookies: another person's browser), logged in as
    `username` through the login form, showing the dashboard. `context`: Playwright's context options (viewport,
    is_mobile, ...). Closing the page closes its context; the `browser` fixture closes what is left."""
    from playwright.sync_api import expect

    page = browser.new_page(**context)
    page.set_default_timeout(timeout)
    page.goto(daemon.url)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    return page


# --- processes and receivers ------------------------------------------------------------------------------------

class Process:
    """A modemgw subprocess whose output lines are read as they come."""

    def __init__(self, *args, env=None):
        self.popen = subprocess.Popen([MODEMGW, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      env={**os.environ, **(env or {})})
        self.lines: queue.Queue = queue.Queue()
        self.reader = threading.Thread(target=lambda: [self.lines.put(line) for line in self.popen.stdout],
                                       daemon=True)
        self.reader.start()
        self.seen: list[str] = []

    def wait_for(self, text, timeout=30):
        while True:
            line = self.lines.get(timeout=timeout)
            self.seen.append(line)
            if text in line:
                return line

    def stop(self, sig=signal.SIGTERM):
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        status = self.popen.wait(timeout=20)
        self.reader.join(timeout=10)
        self.popen.stdout.close()
        return status


class Receiver:
    """Records what arrives at a pytest-httpserver path; answers with the statuses given, then 200."""

    def __init__(self, httpserver, path="/hook", statuses=()):
        self.arrived: queue.Queue = queue.Queue()
        self.statuses = list(statuses)
        httpserver.expect_request(path, method="POST").respond_with_handler(self.handle)
        self.url = httpserver.url_for(path)

    def handle(self, request):
        from werkzeug import Response

        status = self.statuses.pop(0) if self.statuses else 200
        self.arrived.put((status, dict(request.headers), request.get_data()))
        return Response("ok" if status == 200 else "down", status=status)

    def next(self, timeout=10):
        return self.arrived.get(timeout=timeout)

    def until(self, predicate, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            status, headers, body = self.next(max(0.01, deadline - time.monotonic()))
            event = json.loads(body)
            if status == 200 and predicate(event):
                return headers, body, event
