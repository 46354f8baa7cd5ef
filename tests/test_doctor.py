"""`modemgw doctor` itself: findings for an 80-column console, exit statuses, fixes, and checks that break.

The appliance tests (tests/test_appliance.py) run `modemgw doctor` against simulated modems; these look at the
doctor's own rules with real files in a temporary directory.
"""

import json
import subprocess

import pytest

from modemgw import doctor, webhooks
from modemgw.config import ModemConfig
from modemgw.doctor import FAIL, OK, WARN, Doctor, Finding
from modemgw.store import Store
from tests.support import MODEMGW, Receiver, daemon_config


def make_doctor(tmp_path, gateway=None, modems=()):
    """A doctor for a gateway whose data is in tmp_path/data, with no ports to scan beyond `modems`."""
    config = daemon_config(tmp_path / "data")
    config.pool.ports = []
    config.modems = list(modems)
    return Doctor(config, gateway, tmp_path / "config.toml", timeout=0.2)


def test_findings_are_rendered_for_an_80_column_console():
    findings = [
        Finding(OK, "the gateway is running (pid 4242), 2 of 2 modem(s) up", "never shown for an ok finding"),
        Finding(WARN, "a warning whose title is much longer than one line of a serial console, so that it has "
                      "to be wrapped onto a second line under its own text", "a fix that is also long enough to "
                      "need wrapping onto a second line, indented under the first line of the fix text"),
        Finding(FAIL, "office (/dev/ttyUSB2): the SIM asks for its PIN", 'add pin = "...." to its [[modem]] entry'),
    ]
    lines = doctor.render(findings).splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[0] == "ok    the gateway is running (pid 4242), 2 of 2 modem(s) up"
    assert "never shown" not in "\n".join(lines)
    assert lines[1].startswith("WARN  a warning whose title")
    assert lines[2] == "      that it has to be wrapped onto a second line under its own text"
    assert lines[3].startswith("      fix: a fix that is also long") and lines[4].startswith("           ")
    assert lines[5:] == ["FAIL  office (/dev/ttyUSB2): the SIM asks for its PIN",
                         '      fix: add pin = "...." to its [[modem]] entry',
                         "-- 1 problem(s), 1 warning(s)"]
    assert doctor.render([findings[0]]).splitlines()[-1] == "-- all well"
    assert all(len(line) <= 40 for line in doctor.render(findings, width=40).splitlines())


def test_the_exit_status_is_0_when_all_is_well_1_with_warnings_and_2_with_a_failure(tmp_path):
    checked = make_doctor(tmp_path)
    assert checked.status == 0  # nothing found yet
    checked.add(OK, "database integrity ok")
    assert checked.status == 0
    checked.add(WARN, "ModemManager is running", "sudo systemctl disable --now ModemManager")
    assert checked.status == 1
    checked.add(FAIL, "no modem is configured or found", "modemgw discover --write")
    assert checked.status == 2
    checked.add(WARN, "weak signal", "move the modem")
    assert checked.status == 2  # a later warning does not lower it


def test_a_gateway_that_is_not_running_is_a_warning_with_its_fix(tmp_path):
    checked = make_doctor(tmp_path)
    checked.check_gateway()
    [finding] = checked.findings
    assert finding.level == WARN and str(tmp_path / "data" / "modemgw.sock") in finding.title
    assert finding.fix.startswith("sudo systemctl start modemgw")
    assert "      fix: sudo systemctl start modemgw;" in doctor.render(checked.findings)
    assert checked.status == 1


def test_a_configured_modem_that_is_missing_fails_with_how_to_find_it(tmp_path):
    missing = tmp_path / "ttyUSB9"
    checked = make_doctor(tmp_path, modems=[ModemConfig(device=str(missing), label="office")])
    checked.check_modems()
    by_title = {finding.title: finding for finding in checked.findings}
    gone = by_title[f"{missing} does not exist: the modem is unplugged, or has another name"]
    assert gone.level == FAIL and "modemgw discover" in gone.fix
    assert by_title["no modem is configured or found"].fix.endswith(f"(config: {tmp_path / 'config.toml'})")
    assert checked.status == 2


def test_a_sound_database_passes_and_a_new_install_has_none_yet(tmp_path):
    checked = make_doctor(tmp_path)
    checked.check_database()
    assert [(f.level, f.fix) for f in checked.findings] == [(WARN, "it is created when the gateway starts")]
    (tmp_path / "data").mkdir()
    Store(tmp_path / "data" / "modemgw.db").close()
    again = make_doctor(tmp_path)
    again.check_database()
    again.check_webhooks()
    assert [(f.level, f.title) for f in again.findings] == [(OK, "database integrity ok"),
                                                            (OK, "webhook backlog: 0")]


def test_a_check_that_raises_does_not_hide_the_others(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "modemgw.db").write_text("not a database")  # quick_check raises StoreError on it
    checked = make_doctor(tmp_path)
    findings = checked.run()
    broken = [f for f in findings if f.title.startswith("database check could not run: ")]
    assert len(broken) == 1 and broken[0].level == WARN, findings
    titles = "\n".join(f.title for f in findings)
    assert "the gateway is not running" in titles  # a check before it
    assert "free for" in titles and ("clock" in titles or "system clock" in titles)  # checks around it
    assert "no modem is configured or found" in titles
    assert checked.status == 2  # the missing modem still fails the run
    assert "database check could not run" in doctor.render(findings)


# --- failing webhooks ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def httpserver_listen_address():
    return ("127.0.0.1", 0)


def _webhook_findings(checked):
    return [finding for finding in checked.findings if finding.title.startswith("webhook http")]


def test_a_webhook_whose_deliveries_fail_is_a_failure_naming_its_url_and_last_error(tmp_path, start_daemon,
                                                                                     httpserver):
    receiver = Receiver(httpserver, "/down", statuses=[500] * 3)  # then 200
    daemon = start_daemon(modems=0)
    hook = webhooks.create_webhook(daemon.store, receiver.url, ["message.delivered"])
    daemon.webhooks.test(hook["id"])
    assert daemon.wait_until(lambda: webhooks.deliveries(daemon.store, hook["id"])[0]["attempts"] == 1, 10)
    healthy = make_doctor(tmp_path)
    healthy.check_webhooks()
    assert _webhook_findings(healthy) == [] and healthy.status == 0  # one failed attempt is not yet failing

    for _ in range(2):
        daemon.webhooks.test(hook["id"])
    assert daemon.wait_until(lambda: [d["attempts"] for d in webhooks.deliveries(daemon.store, hook["id"])]
                             == [1, 1, 1], 10)
    checked = make_doctor(tmp_path)  # the daemon runs: the doctor reads the database file read-only
    checked.check_webhooks()
    [finding] = _webhook_findings(checked)
    assert finding.level == FAIL and checked.status == 2
    assert receiver.url in finding.title and "3 attempts in a row" in finding.title
    assert "the last: HTTP 500 (they are retried)" in finding.title
    assert f"/ui/webhooks/{hook['id']}" in finding.fix and "2xx" in finding.fix
    # what exists, by name: the page's buttons, and the API call with this webhook's id
    assert f"Settings → Webhooks → {receiver.url}" in finding.fix
    assert "Retry pending now / Redeliver all dead" in finding.fix
    api = f"http://{checked.config.listen}/api/v1"  # [http] listen: the address the doctor names
    assert f"curl -X POST -H \"Authorization: Bearer $MODEMGW_KEY\" {api}/webhooks/{hook['id']}/retry" in finding.fix
    rendered = doctor.render(checked.findings)
    assert all(len(line) <= 80 for line in rendered.splitlines()) and "-- 1 problem(s)" in rendered

    # the command itself: exit status 2, the webhook named (the daemon answers its other questions)
    result = subprocess.run([MODEMGW, "doctor", "--data", str(daemon.data_dir), "--json"], capture_output=True,
                            text=True, timeout=120)
    report = json.loads(result.stdout)
    assert result.returncode == 2 and report["status"] == 2
    assert any(item["level"] == FAIL and receiver.url in item["title"] for item in report["findings"])

    # disabled, it is not reported: nobody expects its deliveries
    daemon.webhooks.update(hook["id"], enabled=False)
    quiet = make_doctor(tmp_path)
    quiet.check_webhooks()
    assert _webhook_findings(quiet) == []

    # enabled again, its waiting deliveries go out at once (not at their retry times, 10 s away) and get through
    # (the receiver answers 200 now): no longer failing, daemon or not
    assert daemon.webhooks.update(hook["id"], enabled=True)[1] == 3
    assert daemon.wait_until(lambda: [d["status"] for d in webhooks.deliveries(daemon.store, hook["id"])]
                             == ["delivered"] * 3, 5)
    daemon.stop()
    recovered = make_doctor(tmp_path)
    recovered.check_webhooks()
    assert _webhook_findings(recovered) == []
    assert [(f.level, f.title) for f in recovered.findings] == [(OK, "webhook backlog: 0")]
