"""Debian's Kannel in front of two appliances (issue #18's acceptance): Kannel's bearerbox and smsbox, configured
from the shipped deploy/scaling/kannel.conf (ports, addresses and secrets substituted), with one `smsc = smpp`
group per appliance; each appliance is a real `Daemon` with two simulated modems and its SMPP server on
127.0.0.1. Messages go in through Kannel's sendsms HTTP interface and come back as delivery reports on a local
HTTP receiver (Kannel's dlr-url).

What is waited on is always an event or a state: the receiver's count of reports, Kannel's admin status page
(an SMSC's "online"), an appliance's store. Kannel's processes are killed at the end whatever happens.
"""

from __future__ import annotations

import http.server
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ElementTree
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from modemgw.daemon import Daemon
from modemgw.settings import SmppSettings
from modemgw.smpp import accounts
from modemgw.store import Store
from tests.support import daemon_config, eventually, require

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "deploy" / "scaling" / "kannel.conf"
APPLIANCES = ("appliance1", "appliance2")
SYSTEM_ID, SMPP_PASSWORD = "kannel", "k4nn3l"  # an SMPP password has at most 8 characters
ADMIN_PASSWORD, APP_USER, APP_PASSWORD = "admin-pw", "app", "app-pw"
SENDER = "+447700900999"  # the application's number (the appliance sends from its SIMs' own)
# The values the test changes in the shipped file, and why: where things listen and log (debug, so that a failure
# shows what Kannel saw), the secrets, and the reconnect delay (5 s on a real site; 1 s here, so that an
# appliance's return is seen at once).
SUBSTITUTED = {
    "core": {"admin-port", "admin-password", "smsbox-port", "log-file", "log-level"},
    "smsbox": {"bearerbox-port", "sendsms-port", "log-file", "log-level"},
    "sendsms-user": {"password"},
    "smsc": {"host", "port", "smsc-password", "reconnect-delay"},
}
MAX_RESPONSE = 1 << 20  # Kannel's status page and answers are read up to this size


# --- Kannel's configuration file -----------------------------------------------------------------------------------

def parse_kannel_conf(text: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """[(group, [(key, value), ...]), ...] as Kannel's cfg.c reads a file: `key = value` lines, `#` comments, a
    group starts with `group = name` and ends at an empty line; values lose their quotes."""
    groups: list[tuple[str, list[tuple[str, str]]]] = []
    current: list[tuple[str, str]] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            current = None
            continue
        if line.startswith("#"):
            continue
        key, equals, value = line.partition("=")
        assert equals, f"kannel.conf line {number}: no '=' in {raw!r}"
        key, value = key.strip(), value.strip()
        assert "include" not in line, f"kannel.conf line {number}: Kannel reads any line with 'include' as one"
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if key == "group":
            current = []
            groups.append((value, current))
            continue
        assert current is not None, f"kannel.conf line {number}: {key} outside a group (an empty line ends one)"
        assert key not in dict(current), f"kannel.conf line {number}: {key} twice in one group"
        current.append((key, value))
    return groups


def render_kannel_conf(groups: list[tuple[str, list[tuple[str, str]]]]) -> str:
    def quoted(value: str) -> str:
        return f'"{value}"' if not value or any(character in value for character in ' #*"') else value

    return "\n".join("\n".join([f"group = {name}", *(f"{key} = {quoted(value)}" for key, value in pairs)]) + "\n"
                     for name, pairs in groups)


def derive_config(groups, values: dict[str, dict[str, str]], smscs: dict[str, dict[str, str]]):
    """The shipped groups with the SUBSTITUTED keys' values replaced: `values[group][key]` for single groups,
    `smscs[smsc-id][key]` for each appliance's group."""
    derived = []
    for name, pairs in groups:
        wanted = smscs[dict(pairs)["smsc-id"]] if name == "smsc" else values.get(name, {})
        assert set(wanted) == SUBSTITUTED.get(name, set()), (name, sorted(wanted))
        derived.append((name, [(key, str(wanted.get(key, value))) for key, value in pairs]))
    return derived


def test_the_shipped_kannel_conf_has_an_smpp_group_per_appliance():
    """The file the README points to: what Kannel needs to use two appliances, with DLRs, and nothing that would
    make Kannel listen beyond the machine or lose receipts."""
    groups = parse_kannel_conf(SHIPPED.read_text())
    names = [name for name, _ in groups]
    assert names == ["core", "smsbox", "sendsms-user", "smsc", "smsc"], names
    core, smsbox, user = (dict(pairs) for _, pairs in groups[:3])
    assert core["dlr-storage"] == "internal" and core["admin-interface"] == core["smsbox-interface"] == "127.0.0.1"
    assert smsbox["bearerbox-port"] == core["smsbox-port"] and smsbox["sendsms-port"]
    assert user["username"] and user["password"] and user["default-sender"]  # the README's curl gives no sender
    smscs = [dict(pairs) for name, pairs in groups if name == "smsc"]
    assert [smsc["smsc-id"] for smsc in smscs] == list(APPLIANCES)
    assert smscs[0]["host"] != smscs[1]["host"]
    for smsc in smscs:
        assert smsc["smsc"] == "smpp" and smsc["transceiver-mode"] == "true" and smsc["interface-version"] == "34"
        assert smsc["port"] == "2775" and smsc["smsc-username"] == SYSTEM_ID and "allowed-smsc-id" not in smsc
        assert len(smsc["smsc-password"]) <= accounts.MAX_PASSWORD  # a placeholder the appliance would take
        # the appliance's message ids are decimal, the same in submit_sm_resp and in receipts
        assert int(smsc["msg-id-type"], 0) == 0
        assert int(smsc["enquire-link-interval"]) < SmppSettings().enquire_link_timeout  # or it closes the bind
        assert int(smsc["max-pending-submits"]) <= SmppSettings().window  # more would be refused
    # one set of keys for both appliances: they differ in their address and name only
    assert {key for key, _ in groups[3][1]} == {key for key, _ in groups[4][1]}
    for name, pairs in groups:
        assert SUBSTITUTED.get(name, set()) <= {key for key, _ in pairs}, name


# jcli's parameters (Jasmin's management/jcli/modules.rst): SMPP client connectors, filters, MT routes
JCLI_KEYS = {
    "smppccm": {"cid", "logfile", "logrotate", "loglevel", "logprivacy", "host", "port", "ssl", "username", "password",
                "bind", "bind_to", "trx_to", "res_to", "pdu_red_to", "con_loss_retry", "con_loss_delay",
                "con_fail_retry", "con_fail_delay", "src_addr", "src_ton", "src_npi", "dst_ton", "dst_npi",
                "bind_ton", "bind_npi", "validity", "priority", "requeue_delay", "addr_range", "systype",
                "dlr_expiry", "submit_throughput", "proto_id", "coding", "elink_interval", "def_msg_id", "ripf",
                "dlr_msgid"},
    "filter": {"type", "fid"},
    "mtrouter": {"type", "order", "rate", "filters", "connectors", "connector"},
}


def test_the_shipped_jasmin_commands_add_a_connector_per_appliance():
    """deploy/scaling/jasmin-connectors.jcli (Jasmin is not a Debian package, so it is not run here): each
    interactive block uses jcli's own parameters and ends with `ok`; one connector per appliance, both in the route."""
    blocks: list[tuple[str, dict[str, str]]] = []
    current: dict[str, str] | None = None
    for line in (ROOT / "deploy" / "scaling" / "jasmin-connectors.jcli").read_text().splitlines():
        line = line.strip()
        if current is not None:
            if line == "ok":
                current = None
                continue
            key, _, value = line.partition(" ")
            assert key in JCLI_KEYS[blocks[-1][0]] and key not in current, (blocks[-1][0], line)
            current[key] = value.strip()
        elif line.endswith(" -a"):
            current = {}
            blocks.append((line.split()[0], current))
    assert current is None, "a block without its ok"
    connectors = [values for command, values in blocks if command == "smppccm"]
    assert [values["cid"] for values in connectors] == list(APPLIANCES)
    for values in connectors:
        assert values["bind"] == "transceiver" and values["port"] == "2775" and values["dlr_msgid"] == "0"
        assert len(values["username"]) <= accounts.MAX_SYSTEM_ID and len(values["password"]) <= accounts.MAX_PASSWORD
    [route] = [values for command, values in blocks if command == "mtrouter"]
    assert route["connectors"] == ";".join(f"smppc({name})" for name in APPLIANCES)


def test_the_test_config_is_the_shipped_one_with_ports_and_secrets_substituted():
    shipped = parse_kannel_conf(SHIPPED.read_text())
    derived = parse_kannel_conf(render_kannel_conf(derive_config(shipped, *_substitutions(
        tmp=Path("/tmp/x"), admin=1, smsbox=2, sendsms=3, receiver="http://127.0.0.1:4/dlr", smpp=(5, 6)))))
    assert [(name, [key for key, _ in pairs]) for name, pairs in derived] == \
        [(name, [key for key, _ in pairs]) for name, pairs in shipped]
    for (name, ours), (_, theirs) in zip(derived, shipped, strict=True):
        changed = {key for (key, value), (_, original) in zip(ours, theirs, strict=True) if value != original}
        assert changed <= SUBSTITUTED.get(name, set()), (name, changed)


def _substitutions(tmp: Path, admin: int, smsbox: int, sendsms: int, receiver: str, smpp: tuple[int, int]):
    values = {
        "core": {"admin-port": admin, "admin-password": ADMIN_PASSWORD, "smsbox-port": smsbox,
                 "log-file": tmp / "bearerbox.log", "log-level": 0},
        "smsbox": {"bearerbox-port": smsbox, "sendsms-port": sendsms, "log-file": tmp / "smsbox.log",
                   "log-level": 0},
        "sendsms-user": {"password": APP_PASSWORD},
    }
    smscs = {name: {"host": "127.0.0.1", "port": port, "smsc-password": SMPP_PASSWORD, "reconnect-delay": 1}
             for name, port in zip(APPLIANCES, smpp, strict=True)}
    return values, smscs


# --- the parts: free ports, the DLR receiver, Kannel's processes, appliances -------------------------------------

def free_ports(count: int) -> list[int]:
    """`count` different ports free on 127.0.0.1 (all held until each is chosen, then let go for Kannel)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class DlrReceiver:
    """The application's end of Kannel's dlr-url: records each report's query (Kannel fetches it with GET)."""

    def __init__(self):
        self.reports: list[dict[str, str]] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                query = self.path.partition("?")[2][:4096]
                report = dict(urllib.parse.parse_qsl(query))
                with receiver.changed:
                    receiver.reports.append(report)
                    receiver.changed.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/dlr"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def snapshot(self) -> list[dict[str, str]]:
        with self.changed:
            return list(self.reports)

    def tags(self) -> set[int]:
        return {int(report["ref"]) for report in self.snapshot()}

    def wait(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate(list(self.reports)):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(left)
            return True

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Kannel:
    """bearerbox and smsbox on one configuration file; killed by `stop` (nothing of theirs needs to survive)."""

    def __init__(self, directory: Path, config: str, admin: int, sendsms: int):
        self.directory, self.admin, self.sendsms = directory, admin, sendsms
        self.path = directory / "kannel.conf"
        self.path.write_text(config)
        self.processes: list[subprocess.Popen] = []

    def _run(self, program: str) -> None:
        with open(self.directory / f"{Path(program).name}.out", "wb") as output:  # the child keeps its own copy
            self.processes.append(subprocess.Popen([program, str(self.path)], stdout=output,
                                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                   start_new_session=True))

    def start(self, bearerbox: str, smsbox: str) -> Kannel:
        self._run(bearerbox)
        assert eventually(lambda: self._answers(self.admin, "/status.xml"), 10), self.logs()
        self._run(smsbox)
        assert eventually(lambda: self._answers(self.sendsms, "/cgi-bin/sendsms"), 10), self.logs()
        return self

    def _answers(self, port: int, path: str) -> bool:
        self._check_running()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # it answers (sendsms without parameters is a 4xx)
        except OSError:
            return False

    def _check_running(self) -> None:
        for process in self.processes:
            assert process.poll() is None, f"{process.args[0]} exited with {process.returncode}\n{self.logs()}"

    def smscs(self) -> dict[str, str]:
        """Each SMSC's status as the admin status page shows it ("online 3s", "re-connecting", ...)."""
        self._check_running()
        query = urllib.parse.urlencode({"password": ADMIN_PASSWORD})
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/status.xml?{query}", timeout=5) as answer:
            document = ElementTree.fromstring(answer.read(MAX_RESPONSE))
        return {smsc.findtext("id", ""): smsc.findtext("status", "") for smsc in document.iter("smsc")}

    def online(self, name: str) -> bool:
        return self.smscs().get(name, "").startswith("online")

    def send(self, to: str, text: str, tag: int, receiver: str, coding: int = 0) -> None:
        """One message through the sendsms interface, its DLR (delivered or failed) to `receiver` with `tag` as
        `ref`, as the README's example asks for it."""
        dlr_url = f"{receiver}?ref={tag}&status=%d&via=%i&id=%F"
        query = urllib.parse.urlencode({"username": APP_USER, "password": APP_PASSWORD, "from": SENDER, "to": to,
                                        "text": text, "charset": "UTF-8", "coding": coding, "dlr-mask": 3,
                                        "dlr-url": dlr_url})
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.sendsms}/cgi-bin/sendsms?{query}",
                                        timeout=10) as answer:
                status, body = answer.status, answer.read(MAX_RESPONSE).decode(errors="replace")
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read(MAX_RESPONSE).decode(errors="replace")
        assert status == 202 and body.startswith("0: Accepted"), (status, body)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
        for process in self.processes:
            process.wait(timeout=10)

    def log_lines(self, text: str) -> list[str]:
        """bearerbox's log lines that contain `text`."""
        path = self.directory / "bearerbox.log"
        return [line for line in path.read_text(errors="replace").splitlines() if text in line]

    def logs(self, lines: int = 40) -> str:
        found = []
        for name in ("bearerbox.log", "smsbox.log", "bearerbox.out", "smsbox.out"):
            path = self.directory / name
            if path.exists():
                found.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(found)


def appliance(directory: Path, smpp_port: int = 0) -> Daemon:
    """A modemgw appliance: two simulated modems, its SMPP server on 127.0.0.1 (a given port when it comes back)."""
    config = daemon_config(directory)
    config.smpp.listen = f"127.0.0.1:{smpp_port}"
    daemon = Daemon(config, simulate=2, sim_send_latency=0.02, sim_report_delay=0.05, http=False).start()
    assert daemon.pool.wait_ready(10), daemon.pool.status()
    return daemon


def smpp_port(daemon: Daemon) -> int:
    return daemon.smpp.port


def messages_of(daemon: Daemon) -> dict[str, dict]:
    """The appliance's messages by recipient."""
    return {row["recipient"]: row for row in daemon.gateway.messages(1000)}


# --- the acceptance test -------------------------------------------------------------------------------------------

TOTAL = 100


README_TAG, README_TO, README_TEXT = 0, "+447700900123", "Your code is 123456"  # sent by the README's curl


def recipient(tag: int) -> str:
    return README_TO if tag == README_TAG else f"+4477009{10000 + tag:05d}"


def text_of(tag: int) -> str:
    """Every tenth message in UCS-2 (Kannel's coding=2), the others in the GSM alphabet with characters beyond
    ASCII (Kannel's coding=0: GSM 03.38 septets, unpacked, data_coding 0)."""
    if tag == README_TAG:
        return README_TEXT
    return f"Привет {tag} от Kannel" if tag % 10 == 0 else f"Kannel {tag}: £5 off, café @ 10% (ok?)"


def readme_sendsms(sendsms_port: int, receiver: str) -> None:
    """The README's sendsms example (### Scaling out), run by bash as written but for the port, the password and
    the application's address; its dlr-url asks for the report of message README_TAG."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("### Scaling out")
    [block] = re.findall(r"```sh\n(.*?)```", readme[start:readme.index("\n## ", start)], re.S)
    script = (block.replace("http://127.0.0.1:13013/", f"http://127.0.0.1:{sendsms_port}/")
              .replace("password=changeme", f"password={APP_PASSWORD}")
              .replace("http://app.example/sms-dlr", receiver).replace("ref=4711", f"ref={README_TAG}"))
    assert script.count(str(sendsms_port)) == 1 and receiver in script, script
    result = subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0 and result.stdout.startswith("0: Accepted"), (result.stdout, result.stderr)


@pytest.fixture
def parts(tmp_path):
    """Everything the acceptance test starts, stopped at its end whatever happens: appliances (a list, so that
    one restarted is stopped too), Kannel, the DLR receiver."""
    started: dict = {"appliances": [], "kannel": None, "receiver": None}
    yield started
    if started["kannel"] is not None:
        started["kannel"].stop()
    for daemon in started["appliances"]:
        daemon.stop()
    if started["receiver"] is not None:
        started["receiver"].close()


def test_kannel_spreads_over_two_appliances_and_loses_nothing_when_one_goes_away(tmp_path, parts):
    """100 messages through sendsms (the first by the README's curl), eight requests at a time: spread over both
    appliances, each reported delivered. Then the first appliance's SIMs lose their network, so that it queues what
    Kannel hands it and none of its messages is between modem and network (the simulated network lives in the
    appliance's process and would go with it; a real one keeps its reports); it is stopped while Kannel is handing
    it messages, and everything else goes through the second; it starts again on its database and port, and what
    it held goes out and is reported. No submit is refused, no receipt goes unmatched but a duplicate's."""
    bearerbox, smsbox = require("bearerbox", "kannel"), require("smsbox", "kannel")
    first, second = appliance(tmp_path / "a"), appliance(tmp_path / "b")
    parts["appliances"] += [first, second]
    for daemon in (first, second):
        accounts.add_account(daemon.store, SYSTEM_ID, SMPP_PASSWORD)
    receiver = parts["receiver"] = DlrReceiver()
    ports = dict(zip(("admin", "smsbox", "sendsms"), free_ports(3), strict=True))
    values, smscs = _substitutions(tmp_path, ports["admin"], ports["smsbox"], ports["sendsms"], receiver.url,
                                   (smpp_port(first), smpp_port(second)))
    config = render_kannel_conf(derive_config(parse_kannel_conf(SHIPPED.read_text()), values, smscs))
    kannel = parts["kannel"] = Kannel(tmp_path, config, ports["admin"], ports["sendsms"]).start(bearerbox, smsbox)
    assert eventually(lambda: all(kannel.online(name) for name in APPLIANCES), 15), (kannel.smscs(), kannel.logs())

    def send(tags) -> None:
        """Through sendsms, as applications do: several at once, so that Kannel keeps its window to each
        appliance full."""
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda tag: kannel.send(recipient(tag), text_of(tag), tag, receiver.url,
                                                  coding=2 if tag % 10 == 0 else 0), tags))

    def delivered(tags: set[int], timeout: float = 30) -> None:
        assert receiver.wait(lambda reports: tags <= {int(report["ref"]) for report in reports}, timeout), \
            (sorted(tags - receiver.tags()), kannel.smscs(), refused(), kannel.logs())

    def refused() -> list[str]:
        """The appliances' refusals of Kannel's submit_sm (a temporary one makes Kannel wait sms-resend-freq)."""
        return kannel.log_lines("in response to submit_sm")

    # 1. both appliances up: Kannel spreads the messages over both, and every one is reported delivered
    readme_sendsms(ports["sendsms"], receiver.url)
    send(range(1, 40))
    delivered(set(range(40)))
    by_smsc = {name: [r for r in receiver.snapshot() if r["via"] == name] for name in APPLIANCES}
    assert all(by_smsc.values()), {name: len(reports) for name, reports in by_smsc.items()}

    # 2. the first appliance's SIMs lose their network: it still accepts what Kannel hands it, and queues it
    for sim in range(2):
        first.simulator.fault(sim, "registration", lost=True)  # its sends fail (CMS 331) and wait in its queue
    send(range(40, 70))
    assert eventually(lambda: len(messages_of(first)) + len(messages_of(second)) >= 70, 15), \
        (len(messages_of(first)), len(messages_of(second)), refused(), kannel.smscs())
    # nothing of the first's is between its modem and the network any more
    assert eventually(lambda: not {"sending", "sent"} & set(first.store.status_counts()), 15), \
        first.store.status_counts()
    waiting = {tag for tag in range(40, 70) if messages_of(first).get(recipient(tag), {}).get("status") == "queued"}
    assert waiting, "Kannel handed the first appliance nothing while its SIMs were without network"

    # 3. the first appliance goes away while Kannel hands it messages; then Kannel routes everything to the other
    sender = threading.Thread(target=send, args=(range(70, 85),))
    sender.start()
    before = len(messages_of(first))
    eventually(lambda: len(messages_of(first)) > before or not sender.is_alive(), 10)
    first.stop()
    stopped_at = time.time()
    sender.join(30)
    assert not sender.is_alive()
    assert eventually(lambda: not kannel.online(APPLIANCES[0]), 10), kannel.smscs()
    send(range(85, TOTAL))
    store = Store(tmp_path / "a" / "modemgw.db")  # what the stopped appliance kept, read from its database
    try:
        kept = {row["recipient"]: row for row in store.recent_messages(1000)}
    finally:
        store.close()
    # held there: queued (or caught in a send that failed for want of network); its delivered ones were reported
    held = {number for number, row in kept.items() if row["status"] != "delivered"}
    held_tags = {tag for tag in range(TOTAL) if recipient(tag) in held}
    assert waiting <= held_tags
    delivered(set(range(TOTAL)) - held_tags)
    reports = {int(report["ref"]): report for report in receiver.snapshot()}
    assert all(reports[tag]["via"] == APPLIANCES[1] for tag in range(85, TOTAL)), "after the stop, only the second"
    early = [tag for tag in held_tags if tag in reports and reports[tag]["via"] == APPLIANCES[0]]
    assert early == [], "held by the stopped appliance, yet reported delivered through it"

    # 4. it comes back (same database, same port): what it held goes out, and its receipts reach Kannel
    restarted = appliance(tmp_path / "a", smpp_port(first))
    parts["appliances"].append(restarted)
    assert eventually(lambda: kannel.online(APPLIANCES[0]), 15), (kannel.smscs(), kannel.logs())
    delivered(set(range(TOTAL)))

    everything = receiver.snapshot()
    assert sorted(int(report["ref"]) for report in everything) == list(range(TOTAL)), "one report per message"
    assert {report["status"] for report in everything} == {"1"}, "every report says delivered (Kannel's %d = 1)"
    reports = {int(report["ref"]): report for report in everything}
    # what it held when it went away went out after it came back, from its own modems
    back = messages_of(restarted)
    for tag in waiting:
        assert reports[tag]["via"] == APPLIANCES[0] and back[recipient(tag)]["sent_at"] > stopped_at, tag
    # every text arrived whole at an appliance, whichever coding Kannel used (GSM 03.38 septets or UCS-2)
    others = messages_of(second)
    for tag in range(TOTAL):
        row = back.get(recipient(tag)) if reports[tag]["via"] == APPLIANCES[0] else others.get(recipient(tag))
        assert row is not None and row["status"] == "delivered" and row["body"] == text_of(tag), (tag, row)
        assert reports[tag]["id"] == str(row["id"]), "%F: the appliance's message id"
    # a submit in the first appliance's hands as it stopped may be stored there while its answer never left: Kannel
    # sends it again through the second (at least once, never lost); at most its max-pending-submits of them
    twice = set(back) & set(others)
    pending = int(next(dict(pairs) for name, pairs in parse_kannel_conf(config) if name == "smsc")[
        "max-pending-submits"])
    assert len(twice) <= pending, sorted(twice)
    # and every receipt the appliances sent matched a message Kannel had handed them, once: the copy of a message
    # sent twice is the only one Kannel cannot place (it never learnt that id)
    unmatched = kannel.log_lines("got DLR but could not find message")
    assert len(unmatched) <= len(twice), "\n".join(unmatched)
    assert refused() == [], "the appliances refused submits that Kannel kept within their window"
