"""The TLS set-up the deployment guide recommends, run for real: the shipped nginx configuration
(deploy/raspberrypi/nginx-modemgw.conf) in Debian's nginx, in front of a running gateway, on 127.0.0.1.

Only the addresses, ports and certificate paths of the shipped file are replaced; the rest is used as written.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from modemgw import auth, config as configuration
from modemgw.daemon import Daemon
from tests.support import daemon_config, eventually, require

SITE = Path(__file__).resolve().parent.parent / "deploy" / "raspberrypi" / "nginx-modemgw.conf"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.fixture
def gateway(tmp_path):
    config = daemon_config(tmp_path / "data")
    config.secure_cookies = True
    config.trusted_proxies = configuration.parse_trusted_proxies(["127.0.0.1"])  # nginx, as the guide says
    daemon = Daemon(config, simulate=1, sim_send_latency=0.01, sim_report_delay=0.05).start()
    assert daemon.pool.wait_ready(10)
    yield daemon
    daemon.stop()


@pytest.fixture
def nginx(tmp_path, gateway):
    """nginx with the shipped site on free ports; yields (https port, http port, CA file, its process)."""
    program = require("nginx", "nginx-light")
    openssl = require("openssl", "openssl")
    cert, key = tmp_path / "modemgw.crt", tmp_path / "modemgw.key"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    https_port, http_port = free_port(), free_port()
    site = SITE.read_text()
    for old, new in (("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"),
                     ("listen 80;", f"listen 127.0.0.1:{http_port};"),
                     ("/etc/modemgw/tls/modemgw.crt", str(cert)), ("/etc/modemgw/tls/modemgw.key", str(key)),
                     ("http://127.0.0.1:8080", f"http://127.0.0.1:{gateway.http_port}"),
                     ("/var/log/nginx/modemgw.access.log", str(tmp_path / "access.log"))):
        assert old in site, f"the shipped configuration no longer has {old!r}"
        site = site.replace(old, new)
    site = "\n".join(line for line in site.splitlines() if "listen [::]" not in line)  # no IPv6 needed here
    (tmp_path / "site.conf").write_text(site)
    temporary = " ".join(f"{kind}_temp_path {tmp_path / kind};" for kind in ("client_body", "proxy", "fastcgi",
                                                                              "uwsgi", "scgi"))
    (tmp_path / "nginx.conf").write_text(
        ("user root;\n" if os.geteuid() == 0 else "") +
        f"daemon off;\npid {tmp_path / 'nginx.pid'};\nerror_log {tmp_path / 'error.log'};\nevents {{}}\n"
        f"http {{\naccess_log off;\n{temporary}\ninclude {tmp_path / 'site.conf'};\n}}\n")
    process = subprocess.Popen([program, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e",
                                str(tmp_path / "error.log")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert eventually(lambda: accepts(https_port) or process.poll() is not None, 10) and process.poll() is None, \
            (tmp_path / "error.log").read_text() if (tmp_path / "error.log").exists() else process.stdout.read()
        yield https_port, http_port, cert, process
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()


def test_the_shipped_nginx_site_serves_the_gateway_over_https_only(nginx, gateway, tmp_path):
    https_port, http_port, cert, process = nginx
    context = ssl.create_default_context(cafile=str(cert))

    secure = http.client.HTTPSConnection("localhost", https_port, context=context, timeout=10)
    plain = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
    try:
        check(secure, plain, gateway)
        # the access log: the path and the outcome, never the query string (numbers, search words)
        key = auth.create_key(gateway.store, "log-reader", ("read",))[0]
        secure.request("GET", "/api/v1/messages?to=%2B447700900123&q=brightorange",
                       headers={"Authorization": f"Bearer {key}"})
        response = secure.getresponse()
        response.read()
        assert response.status == 200
        for method, path in (("GET", "/ui/inbox/%2B447700900777"), ("DELETE", "/api/v1/optouts/+447700900888")):
            secure.request(method, path, headers={"Authorization": f"Bearer {key}"})
            secure.getresponse().read()  # whatever the answer (a login page, a refusal): it is logged
    finally:
        secure.close()
        plain.close()
    log = tmp_path / "access.log"
    process.send_signal(signal.SIGUSR1)  # reopen the logs: what the buffer holds is written first
    assert eventually(lambda: log.exists() and "GET /api/v1/messages HTTP/1.1\" 200" in log.read_text(), 10), \
        log.read_text() if log.exists() else "no access log"
    written = log.read_text()
    assert "brightorange" not in written and "447700900123" not in written and "?" not in written, written
    assert "447700900777" not in written and "447700900888" not in written, written
    assert '"GET /ui/inbox/(number) HTTP/1.1"' in written and '"DELETE /api/v1/optouts/(number) HTTP/1.1"' in written
    assert "POST /api/v1/messages HTTP/1.1\" 202" in written and "/ui/login" in written


def check(secure, plain, gateway):
    secure.request("GET", "/health")
    response = secure.getresponse()
    assert response.status == 200 and json.loads(response.read())["status"] == "ok"

    key = auth.create_key(gateway.store, "through-nginx", ("send", "read"))[0]
    secure.request("POST", "/api/v1/messages", json.dumps({"to": "+447700900123", "body": "over TLS"}),
                   {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    response = secure.getresponse()
    body = json.loads(response.read())
    assert response.status == 202, body
    assert gateway.wait_for_final(body["messages"][0]["id"], 10)["status"] == "sent"

    secure.request("GET", "/ui/login")
    response = secure.getresponse()
    response.read()
    cookies = response.headers.get_all("Set-Cookie") or []
    assert response.status == 200 and all("Secure" in cookie and "HttpOnly" in cookie for cookie in cookies), cookies

    plain.request("GET", "/ui/login", headers={"Host": "modemgw.lan"})
    response = plain.getresponse()
    response.read()
    assert response.status == 301 and response.headers["Location"] == "https://modemgw.lan/ui/login"
