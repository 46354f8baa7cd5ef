"""The README's examples, run as a new user would: curl against `modemgw demo` with its printed key, and the
Python snippets as written (only the URL, key and callback receiver supplied by the environment)."""

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support import MODEMGW, Process, Receiver

README = (Path(__file__).parent.parent / "README.md").read_text()
LOCAL_RECEIVER = "http://192.0.2.10/sms-events"  # the README's example receiver; tests use a local one


@pytest.fixture(scope="session")
def httpserver_listen_address():
    return ("127.0.0.1", 0)


def section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start:end if end > 0 else None]


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def curl_commands(block: str) -> list[str]:
    joined = block.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip().startswith("curl ")]


@pytest.fixture
def demo(tmp_path):
    process = Process("demo", "--listen", "127.0.0.1:0", "--data", str(tmp_path / "demo"))
    process.wait_for("modemgw is running")
    url = re.search(r"modemgw is running: (http://\S+)/ ", "".join(process.seen)).group(1)
    key = process.wait_for("API key").split()[-1]
    yield url, key
    process.stop()


# Each curl of a block prints its HTTP status on stderr (curl's %{stderr}), so that a block runs as written, its
# shell variables and pipes included, and every answer is still checked.
CURL_STATUS = "curl() { command curl --write-out '%{stderr}HTTP %{http_code}\\n' \"$@\"; echo; }\n"


def run_block(block: str, env: dict) -> tuple[list[str], list[str]]:
    """A README shell block run in order by bash (stopping at the first failing command): (the HTTP statuses of
    its curls, the non-empty lines it printed)."""
    script = "set -euo pipefail\n" + CURL_STATUS + "\n".join(
        line for line in block.splitlines() if not line.startswith("export MODEMGW_URL="))  # the demo's are given
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, (block, result.stdout, result.stderr)
    statuses = [line.split()[1] for line in result.stderr.splitlines() if line.startswith("HTTP ")]
    return statuses, [line for line in result.stdout.splitlines() if line.strip()]


def test_readme_curl_examples_work_against_the_demo_in_order(demo, httpserver):
    url, key = demo
    receiver = Receiver(httpserver, path="/sms-events")
    blocks = code_blocks(section("HTTP API"), "sh")
    env = {**os.environ, "MODEMGW_URL": url, "MODEMGW_KEY": key}
    answered = 0
    for block in blocks:
        statuses, printed = run_block(block.replace(LOCAL_RECEIVER, receiver.url), env)
        assert statuses and all(status.startswith("2") for status in statuses), (block, statuses, printed)
        answered += len(statuses)
        for body in printed:
            assert "urn:modemgw:problem" not in body, (block, body)
            json.loads(body)  # every answer is JSON
    assert answered >= 11 and answered > sum(len(curl_commands(block)) for block in blocks)  # the $(curl ...) too
    # the walk-through's cancel canceled the message it had just scheduled
    canceled = subprocess.run(["curl", "-s", f"{url}/api/v1/messages?status=canceled", "-H",
                               f"Authorization: Bearer {key}"], capture_output=True, text=True, timeout=30).stdout
    assert [(m["to"], m["body"]) for m in json.loads(canceled)["data"]] == [("+447700900126", "Later")]


def test_the_quick_start_runs_as_written_and_the_api_walk_through_after_it(tmp_path, httpserver):
    """The Quick start's commands from another terminal, against `modemgw demo` in its default data directory:
    a send that is delivered, the status table, and a customer texting the gateway, which can be answered; then
    the HTTP API's examples, in order, on the same gateway (its message ids no longer start at 1)."""
    env = {**{name: value for name, value in os.environ.items() if name != "MODEMGW_SIM_DIR"},
           "XDG_DATA_HOME": str(tmp_path / "xdg")}
    quick = code_blocks(section("Quick start"), "sh")[1]
    commands = [line.split("   #")[0].replace(".venv/bin/modemgw", MODEMGW) for line in quick.splitlines()]
    assert len(commands) == 3
    process = Process("demo", "--listen", "127.0.0.1:0", "--modems", "2", env=env)
    try:
        url = re.search(r"modemgw is running: (http://\S+)/ ", process.wait_for("modemgw is running")).group(1)
        key = process.wait_for("API key").split()[-1]
        region = process.wait_for("default region:")
        assert "default region: GB" in region and "07700 900123 is +447700900123" in region
        outputs = [subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, timeout=120)
                   for command in commands]
        assert [output.returncode for output in outputs] == [0, 0, 0], [output.stderr for output in outputs]
        assert "delivered" in outputs[0].stdout and "sim0" in outputs[1].stdout
        assert outputs[2].stdout.strip() == "delivered to sim0 in 1 part(s)"
        api = ["-H", f"Authorization: Bearer {key}", "-H", "Content-Type: application/json"]
        inbox: list = []
        for _ in range(200):  # the gateway reads the SIM's new message within moments
            inbox = json.loads(subprocess.run(["curl", "-s", f"{url}/api/v1/inbox", *api], capture_output=True,
                                              text=True, timeout=30).stdout)["data"]
            if inbox:
                break
            threading.Event().wait(0.05)
        assert [(entry["from"], entry["body"]) for entry in inbox] == [("+447700900555", "Hello gateway")]
        reply = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", f"{url}/api/v1/inbox/{inbox[0]['id']}/reply",
                                *api, "-d", '{"body": "Thanks, we got it."}'], capture_output=True, text=True,
                               timeout=30).stdout
        body, _, status = reply.rpartition("\n")
        assert status == "202" and json.loads(body)["messages"][0]["to"] == "+447700900555", reply
        receiver = Receiver(httpserver, path="/sms-events")
        for block in code_blocks(section("HTTP API"), "sh"):
            statuses, _ = run_block(block.replace(LOCAL_RECEIVER, receiver.url),
                                    {**env, "MODEMGW_URL": url, "MODEMGW_KEY": key})
            assert all(status.startswith("2") for status in statuses), (block, statuses)
    finally:
        process.stop()


def test_the_demo_run_again_keeps_its_admin_and_key(tmp_path):
    """A second run over the same data directory adds no admin and no key: it names the admin, says how to give it
    a new password, and does not show (or make) a key; the first run's key still works."""
    data = tmp_path / "demo"
    first = Process("demo", "--listen", "127.0.0.1:0", "--modems", "1", "--data", str(data))
    login = first.wait_for("web UI:")
    admin = re.search(r"log in as (\S+) with password \S+ \(shown once\)", login).group(1)
    key = first.wait_for("API key").split()[-1]
    assert first.stop() == 0
    again = Process("demo", "--listen", "127.0.0.1:0", "--modems", "1", "--data", str(data))
    try:
        url = re.search(r"modemgw is running: (http://\S+)/ ", again.wait_for("modemgw is running")).group(1)
        login = again.wait_for("web UI:")
        assert f"log in as {admin} (made by an earlier run" in login and "password" in login
        assert f"modemgw users passwd --data {data} {admin}" in login
        key_line = again.wait_for("API key")
        assert "shown once" not in key_line and "modemgw keys create" in key_line
        again.wait_for("try: modemgw send")
        assert "mgw_" not in "".join(again.seen)  # no key printed at all
        keys = subprocess.run(["curl", "-s", f"{url}/api/v1/modems", "-H", f"Authorization: Bearer {key}", "-w",
                               "\n%{http_code}"], capture_output=True, text=True, timeout=30).stdout
        assert keys.endswith("\n200")  # the first run's key still works
    finally:
        assert again.stop() == 0
    listed = subprocess.run([MODEMGW, "users", "list", "--data", str(data)], capture_output=True, text=True,
                            timeout=60)
    assert listed.stdout.count("admin-") == 1, listed.stdout
    keys = subprocess.run([MODEMGW, "keys", "list", "--data", str(data)], capture_output=True, text=True, timeout=60)
    assert keys.stdout.count("demo") == 1, keys.stdout


def test_readme_python_send_example_and_its_callback(demo, httpserver):
    url, key = demo
    receiver = Receiver(httpserver, path="/callback")
    [send_example, verify_example] = code_blocks(README, "python")[:2]
    result = subprocess.run([sys.executable, "-c", send_example], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "MODEMGW_URL": url, "MODEMGW_KEY": key, "CALLBACK_URL": receiver.url})
    assert result.returncode == 0, result.stderr
    answer = eval(result.stdout)  # the example prints the JSON answer as a Python dict
    headers, body, event = receiver.until(lambda event: event["status"] == "delivered", timeout=30)
    assert (event["message_id"], event["status"]) == (answer["message_id"], "delivered")
    assert event["timestamp"].endswith("Z")
    namespace: dict = {}
    exec(verify_example, namespace)
    secret = subprocess.run(["curl", "-s", url + "/api/v1/webhooks", "-H", f"Authorization: Bearer {key}"],
                            capture_output=True, text=True, timeout=30).stdout
    assert namespace["verify"](json.loads(secret)["callback_secret"], headers, body)
    assert not namespace["verify"]("wrong-secret", headers, body)
