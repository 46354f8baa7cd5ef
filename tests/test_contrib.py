"""contrib/: the Zabbix media type (its webhook JavaScript run for real, in Node.js when installed and in Chromium's
page context always, with a small stand-in for Zabbix's HttpRequest that makes real HTTP requests), the Zabbix
alert script and the Nagios/Icinga notification script run against a gateway with simulated modems, the Nagios
command definitions run through /bin/sh as Nagios runs them, and shellcheck on every script."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from modemgw import auth
from tests.support import eventually, require, running_daemon

CONTRIB = Path(__file__).resolve().parent.parent / "contrib"
ZABBIX_SH = CONTRIB / "zabbix" / "modemgw.sh"
NOTIFY = CONTRIB / "nagios" / "notify-by-modemgw"
WEBHOOK_JS = CONTRIB / "zabbix" / "modemgw_webhook.js"
MEDIA_TYPE = CONTRIB / "zabbix" / "modemgw_media_type.yaml"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with running_daemon(tmp_path_factory, "contrib", modems=2, sim_send_latency=0.02,
                        sim_report_delay=0.05) as running:
        yield running


@pytest.fixture(scope="module")
def key(daemon):
    return auth.create_key(daemon.store, "monitoring", ("send",))[0]


@pytest.fixture
def env(daemon, key, tmp_path):
    """The scripts' environment: the gateway's URL and key in a settings file (as installed), no MODEMGW_* else."""
    settings = tmp_path / "modemgw-notify.conf"
    settings.write_text(f'# written by the test\nMODEMGW_URL="{daemon.url}"\n  MODEMGW_KEY = {key}\n')
    settings.chmod(0o600)
    clean = {name: value for name, value in os.environ.items() if not name.startswith("MODEMGW_")}
    return clean | {"MODEMGW_CONF": str(settings)}


def run(*command, env, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(part) for part in command], capture_output=True, text=True, env=env, input=stdin,
                          timeout=60)


def queued(daemon, result: subprocess.CompletedProcess) -> list[dict]:
    """The messages a script says it queued (`queued: message 12 13`), as the gateway has them."""
    assert result.returncode == 0, (result.stdout, result.stderr)
    found = re.fullmatch(r"queued: message ([\d ]+)\n", result.stdout)
    assert found, result.stdout
    return [daemon.gateway.message(int(number)) for number in found.group(1).split()]


def test_the_scripts_are_executable_posix_sh():
    for script in (ZABBIX_SH, NOTIFY):
        assert os.access(script, os.X_OK), script
        assert script.read_text().startswith("#!/bin/sh\n")


@pytest.mark.parametrize("script", [ZABBIX_SH, NOTIFY], ids=["zabbix", "nagios"])
def test_shellcheck_passes(script):
    shellcheck = require("shellcheck", "shellcheck")
    result = subprocess.run([shellcheck, "--shell=sh", "--severity=style", str(script)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout


# --- Zabbix: the alert script -----------------------------------------------------------------------------------

def test_zabbix_alert_script_sends_subject_and_message_to_each_number(daemon, env):
    subject = 'Problem: Disk "/" on web-1 is 95% full'
    message = "Severity: High\nOperational data: 95 %\tC:\\ é 😀"
    result = run(ZABBIX_SH, "+447700900501, 07700900502", subject, message, "4711", env=env)
    first, second = queued(daemon, result)
    assert [first["recipient"], second["recipient"]] == ["+447700900501", "+447700900502"]
    assert first["body"] == second["body"] == f"{subject}\n{message}"
    assert first["client_ref"] == "zabbix-4711"
    key_id = next(row["id"] for row in daemon.gateway.api_keys() if row["name"] == "monitoring")
    assert first["api_key_id"] == key_id
    assert eventually(lambda: daemon.gateway.message(first["id"])["status"] in ("sent", "delivered"), 15)


def test_zabbix_alert_script_sends_one_part_when_the_other_is_empty_or_repeated(daemon, env):
    [alone] = queued(daemon, run(ZABBIX_SH, "+447700900503", "", "Only the message", env=env))
    assert alone["body"] == "Only the message" and alone["client_ref"] is None
    [repeated] = queued(daemon, run(ZABBIX_SH, "+447700900503", "Problem: x", "Problem: x\nHost: y", env=env))
    assert repeated["body"] == "Problem: x\nHost: y"


def test_zabbix_alert_script_failures_say_why_and_exit_1(daemon, env, tmp_path):
    before = len(daemon.gateway.messages(500))
    refused = run(ZABBIX_SH, "12ab", "Problem", "text", env=env)
    assert refused.returncode == 1
    assert refused.stderr == ("modemgw.sh: the gateway answered 400: recipient 1: '12ab' is not a phone number (only "
                              "digits, spaces, dashes, dots, brackets and a leading + are allowed)\n")
    wrong_key = run(ZABBIX_SH, "+447700900504", "Problem", "text", env=env | {"MODEMGW_KEY": "mgw_00000000_x"})
    assert wrong_key.returncode == 1 and "answered 401: unknown API key" in wrong_key.stderr
    unreachable = run(ZABBIX_SH, "+447700900504", "Problem", "text",
                      env=env | {"MODEMGW_URL": "http://127.0.0.1:9", "MODEMGW_TIMEOUT": "5"})
    assert unreachable.returncode == 1 and "cannot reach the gateway at http://127.0.0.1:9" in unreachable.stderr
    unset = run(ZABBIX_SH, "+447700900504", "Problem", "text", env=env | {"MODEMGW_CONF": str(tmp_path / "none")})
    assert unset.returncode == 1 and "no gateway URL: set MODEMGW_URL in" in unset.stderr
    assert run(ZABBIX_SH, "+447700900504", "", " ", env=env).stderr.endswith("both empty: nothing to send\n")
    assert len(daemon.gateway.messages(500)) == before


def test_no_key_on_a_command_line_or_left_in_a_file(daemon, env, key, tmp_path):
    """The key reaches curl in a header file made for it (mode 0600), removed afterwards; never in an argument."""
    shim = tmp_path / "bin"
    shim.mkdir()
    seen = tmp_path / "seen"
    (shim / "curl").write_text("#!/bin/sh\n"  # records its arguments and its header file's mode, then is curl
                               f'printf "%s\\n" "$*" >> {seen}\n'
                               'for arg; do case $arg in @/*) '
                               f'stat -c "%a" "${{arg#@}}" >> {seen};; esac; done\n'
                               f'exec {shutil.which("curl")} "$@"\n')
    (shim / "curl").chmod(0o755)
    shimmed = env | {"PATH": f"{shim}:{env['PATH']}", "TMPDIR": str(tmp_path)}
    queued(daemon, run(ZABBIX_SH, "+447700900505", "Problem", "text", env=shimmed))
    queued(daemon, run(NOTIFY, "-t", "+447700900505", "-T", "text", env=shimmed))
    recorded = seen.read_text()
    assert "Authorization" not in recorded and key not in recorded and recorded.count("600\n") == 2
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bin", "modemgw-notify.conf", "seen"]


# --- Nagios and Icinga: notify-by-modemgw ----------------------------------------------------------------------

def test_notify_by_modemgw_with_options(daemon, env):
    label = daemon.gateway.modems_now()[1]["label"]
    [message] = queued(daemon, run(NOTIFY, "-t", "+447700900510", "-p", "30", "-m", label, "-r", "nagios-web-1",
                                   "-T", "-PROBLEM- web-1 is DOWN", env=env))
    assert message["body"] == "-PROBLEM- web-1 is DOWN" and message["priority"] == 30
    assert message["client_ref"] == "nagios-web-1"
    assert eventually(lambda: daemon.gateway.message(message["id"])["modem_id"] is not None, 15)
    assert daemon.gateway.message(message["id"])["modem_id"] == daemon.gateway.modems_now()[1]["id"]


def test_notify_by_modemgw_takes_operands_or_standard_input(daemon, env):
    [from_words] = queued(daemon, run(NOTIFY, "-t", "+447700900511", "RECOVERY:", "db-1", "is", "UP", env=env))
    assert from_words["body"] == "RECOVERY: db-1 is UP"
    piped = queued(daemon, run(NOTIFY, "-t", "+447700900511 +447700900512", env=env,
                               stdin="***** Nagios *****\nHost: db-1\nState: DOWN\n"))
    assert [message["recipient"] for message in piped] == ["+447700900511", "+447700900512"]
    assert {message["body"] for message in piped} == {"***** Nagios *****\nHost: db-1\nState: DOWN"}


def test_notify_by_modemgw_environment_wins_and_usage_errors(daemon, env, key):
    direct = env | {"MODEMGW_CONF": "", "MODEMGW_URL": daemon.url, "MODEMGW_KEY": key}
    queued(daemon, run(NOTIFY, "-t", "+447700900513", "-T", "from the environment", env=direct))
    key_file = Path(env["MODEMGW_CONF"]).parent / "key"
    key_file.write_text(key + "\n")
    by_file = env | {"MODEMGW_CONF": "", "MODEMGW_URL": daemon.url, "MODEMGW_KEY_FILE": str(key_file)}
    queued(daemon, run(NOTIFY, "-t", "+447700900513", "-T", "key from a file", env=by_file))
    assert run(NOTIFY, "-T", "no number", env=env).returncode == 2
    assert run(NOTIFY, "-t", "+447700900513", "-x", env=env).returncode == 2
    empty = run(NOTIFY, "-t", "+447700900513", env=env, stdin="\n  \n")
    assert empty.returncode == 1 and "no text to send" in empty.stderr
    priority = run(NOTIFY, "-t", "+447700900513", "-p", "07", "-T", "x", env=env)
    assert priority.returncode == 1 and "from -100 to 100, not '07'" in priority.stderr
    missing = run(NOTIFY, "-t", "+447700900513", "-c", "/nonexistent/modemgw.conf", "-T", "x", env=env)
    assert missing.returncode == 1 and "cannot read the settings file /nonexistent/modemgw.conf" in missing.stderr
    opted = daemon.gateway.opt_out("+447700900514", "api")[0]
    skipped = run(NOTIFY, "-t", opted, "-T", "x", env=env)
    assert skipped.returncode == 1 and "nothing was queued" in skipped.stderr and "opted out" in skipped.stderr


NAGIOS_MACROS = {"$CONTACTPAGER$": "+447700900520", "$HOSTNAME$": "web-1", "$HOSTSTATE$": "DOWN",
                 "$HOSTOUTPUT$": "CRITICAL - Host Unreachable (192.0.2.7)", "$NOTIFICATIONTYPE$": "PROBLEM",
                 "$SHORTDATETIME$": "2026-12-01 10:00:00", "$SERVICEDESC$": "HTTP", "$SERVICESTATE$": "CRITICAL",
                 "$SERVICEOUTPUT$": "connect to address 192.0.2.7 and port 80: Connection refused"}


def test_the_nagios_command_definitions_run_as_nagios_runs_them(daemon, env):
    """Each command_line with its macros filled in, through /bin/sh -c (Nagios's way with quotes in a line)."""
    definitions = (CONTRIB / "nagios" / "modemgw-commands.cfg").read_text()
    commands = dict(re.findall(r"command_name\s+(\S+)\n\s+command_line\s+(.+)\n", definitions))
    assert set(commands) == {"notify-host-by-modemgw", "notify-service-by-modemgw"}
    contact = re.search(r"define contact \{(.*?)\}", definitions, re.S).group(1)
    assert re.search(r"host_notification_commands\s+notify-host-by-modemgw", contact)
    assert re.search(r"service_notification_commands\s+notify-service-by-modemgw", contact)
    bodies = {}
    for name, line in commands.items():
        assert line.startswith("/usr/local/bin/notify-by-modemgw ")
        line = line.replace("/usr/local/bin/notify-by-modemgw", str(NOTIFY))
        for macro, value in NAGIOS_MACROS.items():
            line = line.replace(macro, value)
        assert "$" not in line, line  # every macro used is one Nagios fills
        [message] = queued(daemon, run("/bin/sh", "-c", line, env=env))
        assert message["recipient"] == "+447700900520" and message["client_ref"] == "nagios-web-1"
        bodies[name] = message["body"]
    assert bodies == {
        "notify-host-by-modemgw": "PROBLEM: web-1 is DOWN (CRITICAL - Host Unreachable (192.0.2.7)) "
                                  "2026-12-01 10:00:00",
        "notify-service-by-modemgw": "PROBLEM: HTTP on web-1 is CRITICAL: connect to address 192.0.2.7 and port 80: "
                                     "Connection refused 2026-12-01 10:00:00"}


ICINGA_MACROS = {"$user.pager$": "+447700900521", "$host.name$": "db-1", "$host.display_name$": "db-1",
                 "$host.state$": "DOWN", "$host.output$": "PING CRITICAL - Packet loss = 100%",
                 "$notification.type$": "PROBLEM", "$icinga.short_date_time$": "2026-12-01 10:05:00",
                 "$service.display_name$": "disk /", "$service.state$": "CRITICAL",
                 "$service.output$": 'DISK CRITICAL - free space: / 3 % "quoted" $(not run) `nor this`'}


def test_the_icinga2_notification_commands_give_the_script_what_it_takes(daemon, env):
    """Each NotificationCommand's arguments, as Icinga 2 passes them (no shell: one argument each)."""
    config = (CONTRIB / "nagios" / "modemgw-icinga2.conf").read_text()
    blocks = dict(re.findall(r'object NotificationCommand "([^"]+)" \{(.*?)\n\}', config, re.S))
    assert set(blocks) == {"modemgw-host-notification", "modemgw-service-notification"}
    for name in blocks:
        assert re.search(rf'command = "{name}"', config)  # an apply Notification uses it
    bodies = {}
    for name, block in blocks.items():
        assert 'command = [ "/usr/local/bin/notify-by-modemgw" ]' in block
        arguments = re.findall(r'"(-\w)" = (?:\{\s*value = )?"([^"]*)"', block)
        assert [option for option, _ in arguments] == ["-t", "-r", "-T"]
        argv = [NOTIFY]
        for option, value in arguments:
            for macro, filled in ICINGA_MACROS.items():
                value = value.replace(macro, filled)
            assert "$" not in value.replace(ICINGA_MACROS["$service.output$"], ""), value
            argv += [option, value]
        [message] = queued(daemon, run(*argv, env=env))
        assert message["recipient"] == "+447700900521" and message["client_ref"] == "icinga-db-1"
        bodies[name] = message["body"]
    assert bodies["modemgw-host-notification"] == ("PROBLEM: db-1 is DOWN (PING CRITICAL - Packet loss = 100%) "
                                                   "2026-12-01 10:05:00")
    assert bodies["modemgw-service-notification"] == (
        f"PROBLEM: disk / on db-1 is CRITICAL: {ICINGA_MACROS['$service.output$']} 2026-12-01 10:05:00")


# --- Zabbix: the media type and its webhook JavaScript ---------------------------------------------------------

def media_type() -> dict:
    document = yaml.safe_load(MEDIA_TYPE.read_text())
    assert document["zabbix_export"]["version"] == "6.0"
    [media] = document["zabbix_export"]["media_types"]
    return media


def test_the_media_type_is_a_zabbix_6_webhook_with_the_same_script():
    media = media_type()
    assert media["type"] == "WEBHOOK" and media["name"] == "modemgw SMS"
    parameters = {item["name"]: item["value"] for item in media["parameters"]}
    assert parameters == {"api_key": "<PLACE API KEY>", "event_id": "{EVENT.ID}", "HTTPProxy": "",
                          "message": "{ALERT.MESSAGE}", "modem": "", "priority": "{EVENT.NSEVERITY}",
                          "subject": "{ALERT.SUBJECT}", "to": "{ALERT.SENDTO}", "url": "<PLACE GATEWAY URL>"}
    assert media["script"] == WEBHOOK_JS.read_text()
    assert re.fullmatch(r"\d+s", media["timeout"]) and 1 <= int(media["timeout"][:-1]) <= 60
    templates = {(item["event_source"], item["operation_mode"]) for item in media["message_templates"]}
    assert {("TRIGGERS", "PROBLEM"), ("TRIGGERS", "RECOVERY"), ("TRIGGERS", "UPDATE")} <= templates
    for item in media["message_templates"]:
        assert set(item) == {"event_source", "operation_mode", "subject", "message"}
        assert len(item["subject"]) + len(item["message"]) < 160  # before macros: an SMS, not a letter
    # Zabbix runs webhooks in Duktape (ECMAScript 5.1): no arrow functions, let, const or template strings
    assert not re.search(r"=>|`|\b(let|const|class)\s", media["script"])


# A stand-in for what Zabbix gives a webhook: `Zabbix.log` and an `HttpRequest` whose post is synchronous, as
# Zabbix's is. `post(url, data, headers)` is the engine's own real HTTP request (curl from Node.js, a synchronous
# XMLHttpRequest in Chromium); it answers [status, body].
ZABBIX_STANDIN = """
function zabbixRun(script, value, post) {
    var logs = [];
    function HttpRequest() { this.headers = []; this.status = 0; this.proxy = null; }
    HttpRequest.prototype.addHeader = function (header) { this.headers.push(header); };
    HttpRequest.prototype.setProxy = function (proxy) { this.proxy = proxy; };
    HttpRequest.prototype.getStatus = function () { return this.status; };
    HttpRequest.prototype.post = function (url, data) {
        var answer = post(url, data, this.headers);
        this.status = answer[0];
        return answer[1];
    };
    var Zabbix = { log: function (level, message) { logs.push([level, String(message)]); } };
    try {
        var result = new Function('value', 'HttpRequest', 'Zabbix', script)(value, HttpRequest, Zabbix);
        return { result: result, logs: logs };
    } catch (error) {
        return { error: String(error), logs: logs };
    }
}
"""

NODE_POST = """
const { execFileSync } = require('child_process');
function post(url, data, headers) {
    const args = ['--silent', '--request', 'POST', '--data-binary', '@-', '--write-out', '\\n%{http_code}'];
    headers.forEach(function (header) { args.push('--header', header); });
    const out = execFileSync('curl', args.concat([url]), { input: data }).toString();
    const cut = out.lastIndexOf('\\n');
    return [parseInt(out.slice(cut + 1), 10), out.slice(0, cut)];
}
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
process.stdout.write(JSON.stringify(zabbixRun(input.script, input.value, post)));
"""

BROWSER_POST = """
function post(url, data, headers) {
    var request = new XMLHttpRequest();
    request.open('POST', url, false);
    headers.forEach(function (header) {
        var colon = header.indexOf(':');
        request.setRequestHeader(header.slice(0, colon).trim(), header.slice(colon + 1).trim());
    });
    request.send(data);
    return [request.status, request.responseText];
}
"""


def _node():
    return shutil.which("node") or shutil.which("nodejs")


@pytest.fixture(scope="module")
def chromium_page(daemon, browser):
    """A page on the gateway's own origin (so that its XMLHttpRequest is same-origin), CSP bypassed so that the
    stand-in may compile the script with `new Function`, as Zabbix compiles it."""
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    page.goto(daemon.url + "health")
    yield page
    context.close()


def run_webhook(engine: str, params: dict, request) -> dict:
    """The media type's script run in `engine` ("node" or "chromium") with `params` as Zabbix passes them."""
    script, value = media_type()["script"], json.dumps(params)
    if engine == "node":
        node = _node()
        if node is None:
            pytest.skip("Node.js is not installed; the webhook runs in Chromium (the other parameter)")
        result = subprocess.run([node, "-e", ZABBIX_STANDIN + NODE_POST], input=json.dumps(
            {"script": script, "value": value}), capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)
    page = request.getfixturevalue("chromium_page")
    return page.evaluate("([script, value]) => { " + ZABBIX_STANDIN + BROWSER_POST +
                         " return zabbixRun(script, value, post); }", [script, value])


@pytest.mark.parametrize("engine", ["node", "chromium"])
def test_the_webhook_sends_through_the_gateway(daemon, key, engine, request):
    params = {"url": daemon.url, "api_key": key, "to": "+447700900530,07700900531", "event_id": "90210",
              "subject": "Problem: Zabbix agent on web-2 is unreachable", "priority": "5", "modem": "",
              "message": "High on web-2 at 10:00:00 2026.12.01. \"quoted\" \\ é 😀", "HTTPProxy": ""}
    outcome = run_webhook(engine, params, request)
    assert "error" not in outcome, outcome
    found = re.fullmatch(r"queued: message (\d+), (\d+)", outcome["result"])
    assert found, outcome
    first, second = (daemon.gateway.message(int(number)) for number in found.groups())
    assert [first["recipient"], second["recipient"]] == ["+447700900530", "+447700900531"]
    assert first["body"] == second["body"] == f"{params['subject']}\n{params['message']}"
    assert first["priority"] == 5 and first["client_ref"] == "zabbix-90210"
    assert all(key not in message for _, message in outcome["logs"])  # the key is never logged
    assert eventually(lambda: daemon.gateway.message(first["id"])["status"] in ("sent", "delivered"), 15)


@pytest.mark.parametrize("engine", ["node", "chromium"])
def test_the_webhook_reports_what_is_wrong(daemon, key, engine, request):
    base = {"url": daemon.url, "api_key": key, "to": "+447700900532", "subject": "Problem", "message": "text",
            "priority": "{EVENT.NSEVERITY}", "event_id": "{EVENT.ID}", "modem": "", "HTTPProxy": ""}
    outcome = run_webhook(engine, base | {"to": "12ab"}, request)
    assert outcome["error"] == ("Sending failed: the gateway answered 400: recipient 1: '12ab' is not a phone "
                                "number (only digits, spaces, dashes, dots, brackets and a leading + are allowed)")
    assert [3, outcome["error"].replace("Sending failed: ", "[ modemgw webhook ] sending failed: ")] in \
        outcome["logs"]
    outcome = run_webhook(engine, base | {"api_key": "<PLACE API KEY>"}, request)
    assert outcome["error"] == 'Sending failed: the parameter "api_key" is not set (in the media type)'
    outcome = run_webhook(engine, base | {"to": "{ALERT.SENDTO}"}, request)
    assert outcome["error"].startswith('Sending failed: the parameter "to" is not set (the user\'s media')
    outcome = run_webhook(engine, base | {"api_key": "mgw_00000000_x"}, request)
    assert outcome["error"] == "Sending failed: the gateway answered 401: unknown API key"
    # macros the media type's test page leaves unfilled are ignored, not sent
    outcome = run_webhook(engine, base | {"subject": "", "message": "Test message"}, request)
    [message] = [daemon.gateway.message(int(number)) for number in outcome["result"].split()[-1:]]
    assert message["body"] == "Test message" and message["priority"] == 0 and message["client_ref"] is None


# --- the README's copies --------------------------------------------------------------------------------------

def readme_section(title: str) -> str:
    readme = (CONTRIB.parent / "README.md").read_text()
    start = readme.index(f"\n### {title}\n")
    return readme[start:readme.find("\n## ", start + 1)].split("\n### ", 2)[1]


def test_the_readme_shows_the_shipped_configuration():
    """The Integrations section's Nagios and Icinga 2 blocks are the files' own text, and the Zabbix steps name
    the files and parameters that exist: a copy that drifted would be pasted by someone."""
    blocks = re.findall(r"```\n(.*?)```", readme_section("Nagios and Icinga"), re.S)
    assert len(blocks) == 2
    assert blocks[0] in (CONTRIB / "nagios" / "modemgw-commands.cfg").read_text()
    assert blocks[1] in (CONTRIB / "nagios" / "modemgw-icinga2.conf").read_text()
    zabbix = readme_section("Zabbix")
    names = {item["name"] for item in media_type()["parameters"]}
    assert "`url`" in zabbix and "`api_key`" in zabbix and {"url", "api_key"} <= names
    assert "**modemgw SMS**" in zabbix and media_type()["name"] == "modemgw SMS"
    for path in ("modemgw_media_type.yaml", "modemgw_webhook.js", "modemgw.sh"):
        assert path in zabbix and (CONTRIB / "zabbix" / path).exists()
