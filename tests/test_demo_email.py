"""E-mail to SMS tried with the demo (issues #16, #17): `modemgw demo --email HOST:PORT` runs the embedded SMTP
server (loopback clients, <number>@sms.local) and its banner's swaks command, run as printed, queues the SMS; the
demo reads `--config FILE` as `serve` does. Real `modemgw` processes, Debian's swaks, the API over real HTTP."""

import json
import re
import subprocess
import urllib.request

import pytest

from tests.support import MODEMGW, Process, require


def api(url: str, key: str, path: str) -> dict:
    request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture
def demos():
    started = []

    def start(*args, env=None):
        process = Process("demo", "--listen", "127.0.0.1:0", *args, env=env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def test_the_demo_runs_email_to_sms_and_its_banner_sends_a_test_mail(tmp_path, demos):
    require("swaks", "swaks")
    demo = demos("--data", str(tmp_path / "demo"), "--email", "127.0.0.1:0")
    url = re.search(r"modemgw is running: (http://\S+/) ", demo.wait_for("modemgw is running")).group(1)
    key = demo.wait_for("API key (admin, shown once)").split()[-1]
    listening = demo.wait_for("e-mail to SMS:")
    assert re.search(r"SMTP on 127\.0\.0\.1:\d+ for <number>@sms\.local and <group>@sms\.local "
                     r"\(clients on this machine only\)", listening), listening
    command = demo.wait_for("swaks").strip()
    assert command.startswith("try: POSIXLY_CORRECT=1 swaks ") and command.endswith(")")
    runnable = command.removeprefix("try: ").rsplit(" (", 1)[0]  # the line as a person copies it
    sent = subprocess.run(["bash", "-c", runnable], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert sent.returncode == 0 and "250 2.0.0 Queued: 1 SMS" in sent.stdout, sent.stdout + sent.stderr
    [message] = api(url, key, "api/v1/messages")["data"]
    assert (message["to"], message["body"]) == ("+447700900123", "Hello by e-mail")
    assert message["client_ref"].startswith("mail:")


def test_the_demo_reads_a_config_and_runs_no_email_server_unless_asked(tmp_path, demos):
    config = tmp_path / "demo.toml"
    config.write_text('[gateway]\ndefault_region = "DE"\n')
    demo = demos("--config", str(config), env={"XDG_DATA_HOME": str(tmp_path / "xdg")})
    running = demo.wait_for("modemgw is running")
    assert f"data in {tmp_path / 'xdg' / 'modemgw' / 'demo'}" in running  # the demo's own, not /var/lib/modemgw
    assert "default region: DE" in demo.wait_for("default region:")
    demo.wait_for("try: modemgw send")  # the banner's last line without --email
    demo.stop()
    while not demo.lines.empty():  # everything it printed, to its end
        demo.seen.append(demo.lines.get_nowait())
    assert not any("e-mail to SMS" in line or "swaks" in line for line in demo.seen)
    assert not any("listening on" in line and "sms.local" in line for line in demo.seen)


def test_a_bad_email_address_is_refused_before_anything_starts(tmp_path):
    result = subprocess.run([MODEMGW, "demo", "--data", str(tmp_path / "demo"), "--email", "2525"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--email" in result.stderr and "HOST:PORT" in result.stderr
    assert not (tmp_path / "demo").exists()
