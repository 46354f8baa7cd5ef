"""The README's examples, run as a new user would: curl against `modemgw demo` with its printed key, and the
Python snippets as written (only the URL, key and callback receiver supplied by the environment)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import Process, Receiver

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


def test_readme_curl_examples_work_against_the_demo(demo, httpserver):
    url, key = demo
    receiver = Receiver(httpserver, path="/sms-events")
    commands = [command for block in code_blocks(section("HTTP API"), "sh") for command in curl_commands(block)]
    assert len(commands) >= 10
    env = {**os.environ, "MODEMGW_URL": url, "MODEMGW_KEY": key}
    for command in commands:
        command = command.replace(LOCAL_RECEIVER, receiver.url)
        result = subprocess.run(["bash", "-c", command + " -w '\\n%{http_code}'"], capture_output=True, text=True,
                                env=env, timeout=60)
        body, _, status = result.stdout.rpartition("\n")
        assert status.startswith("2"), (command, status, body)
        assert "urn:modemgw:problem" not in body, (command, body)
        json.loads(body)  # every answer is JSON


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
