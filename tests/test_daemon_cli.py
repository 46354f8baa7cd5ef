"""`modemgw demo`, `serve`, `send` and `status` as separate processes, and what a crash leaves behind."""

import collections
import signal
import sqlite3
import subprocess

from modemgw.daemon import control_request
from tests.support import MODEMGW


def run(*args, timeout=120):
    return subprocess.run([MODEMGW, *args], capture_output=True, text=True, timeout=timeout)


def test_demo_then_send_from_another_terminal_reaches_delivered(processes, tmp_path):
    demo = processes("demo", "--listen", "127.0.0.1:0", "--data", str(tmp_path / "demo"))
    demo.wait_for("modemgw is running")
    sent = run("send", "--data", str(tmp_path / "demo"), "--to", "+447700901234", "--text", "Hello from modemgw",
               "--wait", "--timeout", "30")
    assert sent.returncode == 0, sent.stderr
    assert "queued" in sent.stdout
    assert sent.stdout.strip().splitlines()[-1].endswith(": delivered")
    status = run("status", "--data", str(tmp_path / "demo"))
    assert status.returncode == 0, status.stderr
    assert status.stdout.count(" ready ") == 3
    assert "delivered 1" in status.stdout
    assert demo.stop() == 0


def test_serve_refuses_to_start_without_modems(tmp_path):
    result = run("serve", "--data", str(tmp_path))
    assert result.returncode == 1
    assert "no modems configured" in result.stderr


def test_send_without_a_daemon_says_how_to_start_one(tmp_path):
    result = run("send", "--data", str(tmp_path), "--to", "+447700901234", "--text", "x")
    assert result.returncode == 1
    assert "modemgw serve --data" in result.stderr


def test_a_bad_recipient_is_named(processes, tmp_path):
    demo = processes("demo", "--listen", "127.0.0.1:0", "--data", str(tmp_path / "demo"))
    demo.wait_for("modemgw is running")
    result = run("send", "--data", str(tmp_path / "demo"), "--to", "+44 12ab", "--text", "x")
    assert result.returncode == 1
    assert "'+44 12ab' is not a phone number" in result.stderr


def test_kill_9_while_sending_loses_nothing_and_flags_possible_duplicates(processes, tmp_path):
    link_dir, data = tmp_path / "sim", tmp_path / "data"
    sim = processes("sim", "--count", "4", "--link-dir", str(link_dir), "--send-latency", "0.05",
                    "--report-delay", "60")
    sim.wait_for("ready")
    config = tmp_path / "modemgw.toml"
    config.write_text("".join(f'[[modem]]\ndevice = "{link_dir / f"sim{n}"}"\nlabel = "m{n}"\n' for n in range(4)))
    serve_args = ("serve", "--config", str(config), "--data", str(data), "--listen", "127.0.0.1:0")
    first = processes(*serve_args)
    first.wait_for("modemgw is running")
    recipients = [{"to": f"+4477009{n:05d}", "fields": {"n": n}} for n in range(500)]
    result = control_request(data, {"command": "submit", "body": "message {n}", "recipients": recipients})["result"]
    ids = [message["id"] for message in result["messages"]]
    control_request(data, {"command": "wait", "id": ids[100], "timeout": 60})  # well into the batch
    first.stop(signal.SIGKILL)

    second = processes(*serve_args)
    second.wait_for("modemgw is running")
    for message_id in ids:
        final = control_request(data, {"command": "wait", "id": message_id, "timeout": 60})["message"]
        assert final["status"] == "sent", final
    second.stop()

    transmitted = collections.Counter()
    for n in range(4):
        reply = run("sim", "sent", "--link-dir", str(link_dir), "--modem", f"sim{n}").stdout
        transmitted.update(line.split("  ")[2].strip("'") for line in reply.splitlines())
    assert set(transmitted) == {f"message {n}" for n in range(500)}, "every message went out"
    duplicated = {text for text, count in transmitted.items() if count > 1}
    assert len(duplicated) <= 4, duplicated  # at most the one each modem had in flight
    db = sqlite3.connect(data / "modemgw.db")
    flagged = {row[0] for row in db.execute("SELECT body FROM messages WHERE possible_duplicate = 1")}
    db.close()
    assert duplicated <= flagged
    assert len(flagged) <= 4
