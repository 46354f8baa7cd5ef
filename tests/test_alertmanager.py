"""The real Prometheus Alertmanager (Debian's prometheus-alertmanager) against the gateway, configured with the
README's alertmanager.yml (only the address, the key and the intervals changed, so that it runs in seconds): an
alert added with the README's amtool command reaches the simulated SIMs as one SMS per recipient, Alertmanager's
repeats within the group interval send nothing, and the resolved notification sends the resolved text."""

import datetime as dt
import json
import re
import shlex
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from modemgw import auth
from modemgw.settings import AlertSettings
from tests.support import eventually, require

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
RECIPIENTS = {"+447700900123", "+447700900456"}  # the README's ?to=
FAST = {"group_wait: 30s": "group_wait: 0s", "group_interval: 5m": "group_interval: 1s",
        "repeat_interval: 4h": "repeat_interval: 1s"}


def readme_section(title: str) -> str:
    start = README.index(f"### {title}")
    return README[start:README.index("\n## ", start)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read()


def metric(base: str, name: str) -> float:
    """A counter of Alertmanager's own /metrics, for the webhook integration."""
    for line in get(base + "metrics").decode().splitlines():
        if line.startswith(name + "{") and 'integration="webhook"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def alertmanager(tmp_path):
    """Start Alertmanager with a configuration text on 127.0.0.1 (no cluster), ready; stopped at the end."""
    binary = require("prometheus-alertmanager", "prometheus-alertmanager")
    started = []

    def start(configuration: str) -> str:
        (tmp_path / "alertmanager.yml").write_text(configuration)
        port = free_port()
        log = (tmp_path / "alertmanager.log").open("w")
        process = subprocess.Popen([binary, f"--config.file={tmp_path / 'alertmanager.yml'}",
                                    f"--storage.path={tmp_path / 'am-data'}",
                                    f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                                   stdout=log, stderr=subprocess.STDOUT)
        started.append((process, log))
        base = f"http://127.0.0.1:{port}/"

        def ready() -> bool:
            assert process.poll() is None, (tmp_path / "alertmanager.log").read_text()
            try:
                return get(base + "-/ready") is not None
            except OSError:
                return False

        assert eventually(ready, 15), (tmp_path / "alertmanager.log").read_text()
        return base

    yield start
    for process, log in started:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


def test_alertmanager_pages_once_per_notification_and_when_resolved(start_daemon, alertmanager):
    amtool = require("amtool", "prometheus-alertmanager")
    daemon = start_daemon(modems=2, http=True, alerts=AlertSettings(group_interval=60))
    key = auth.create_key(daemon.store, "alertmanager", ("send",))[0]
    section = readme_section("Prometheus Alertmanager")
    configuration = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    for slow, fast in FAST.items():
        assert slow in configuration, slow
        configuration = configuration.replace(slow, fast)
    configuration = configuration.replace("http://127.0.0.1:8080/", daemon.url).replace('"mgw_..."', json.dumps(key))
    base = alertmanager(configuration)

    def sent() -> list:
        return [record for sim in (0, 1) for record in daemon.simulator.sent(sim)]

    # the README's amtool command, at this Alertmanager
    command = re.search(r"```sh\n(amtool .*?)```", section, re.S).group(1).replace("\\\n", " ")
    command = command.replace("http://127.0.0.1:9093", base.rstrip("/"))
    added = subprocess.run([amtool, *shlex.split(command)[1:]], capture_output=True, text=True, timeout=30)
    assert added.returncode == 0, added.stderr
    assert eventually(lambda: len(sent()) >= 2, 20), sent()
    assert {record.recipient for record in sent()} == RECIPIENTS
    messages = daemon.store.recent_messages(10, client_ref="alertmanager")
    assert [row["body"] for row in messages] == ["[FIRING:1] HighLatency (api page)\nLatency above 2s on api"] * 2
    assert {record.text for record in sent()} == {messages[0]["body"]}

    # Alertmanager repeats the notification (repeat_interval 1s): within [alerts] group_interval nothing is sent
    assert eventually(lambda: metric(base, "alertmanager_notifications_total") >= 3, 20), get(base + "metrics")
    assert metric(base, "alertmanager_notifications_failed_total") == 0
    assert len(sent()) == 2 and len(daemon.store.recent_messages(10, client_ref="alertmanager")) == 2

    # resolved: the same alert posted again with endsAt in the past
    [firing] = json.loads(get(base + "api/v2/alerts"))
    resolved = [{"labels": firing["labels"], "annotations": firing["annotations"], "startsAt": firing["startsAt"],
                 "endsAt": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")}]
    request = urllib.request.Request(base + "api/v2/alerts", data=json.dumps(resolved).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
    assert eventually(lambda: len(sent()) >= 4, 20), sent()
    resolved_texts = [row["body"] for row in daemon.store.recent_messages(2, client_ref="alertmanager")]
    assert resolved_texts == ["[RESOLVED] HighLatency (api page)\nLatency above 2s on api"] * 2
    firing_text = messages[0]["body"]
    assert sorted((record.recipient, record.text) for record in sent()) == sorted(
        (number, text) for number in RECIPIENTS for text in (firing_text, resolved_texts[0]))
