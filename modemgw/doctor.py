"""`modemgw doctor`: checks the appliance and explains each problem with its fix.

Each check gives findings: ok, warn or fail, a one-line title, and for anything not ok the fix. The output is
plain text for an 80x24 serial console (no colour); the exit status is 0 when all is well, 1 with warnings
only, 2 with at least one failure. Modems are looked at through the running gateway when there is one (it owns
their ports), else by opening the configured ports directly, read-only.
"""

from __future__ import annotations

import glob
import grp
import os
import pwd
import shutil
import subprocess
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from modemgw import discovery, webhooks
from modemgw.config import Config
from modemgw.retention import describe_bytes
from modemgw.store import StoreError, readonly

OK, WARN, FAIL = "ok", "WARN", "FAIL"
SERVICE_USER = "modemgw"
WEBHOOK_BACKLOG = 100
WEBHOOK_AGE = 3600.0


@dataclass
class Finding:
    level: str
    title: str
    fix: str = ""

    def as_dict(self) -> dict:
        return {"level": self.level, "title": self.title, "fix": self.fix}


class Doctor:
    """Runs the checks. `gateway` is the running daemon's answer to the `inspect` control request, or None."""

    def __init__(self, config: Config, gateway: dict | None, config_path: Path | None, timeout: float = 1.0,
                 unreachable: str | None = None):
        self.config = config
        self.gateway = gateway
        self.unreachable = unreachable  # the control socket exists but refused this user
        self.config_path = config_path or Path("/etc/modemgw/config.toml")
        self.timeout = timeout
        self.findings: list[Finding] = []

    def add(self, level: str, title: str, fix: str = "") -> None:
        self.findings.append(Finding(level, title, fix))

    def run(self) -> list[Finding]:
        for check in (self.check_gateway, self.check_user, self.check_modem_manager, self.check_modems,
                      self.check_clock, self.check_disk, self.check_database, self.check_webhooks):
            try:
                check()
            except Exception as error:  # noqa: BLE001 - a check that breaks must not hide the others
                self.add(WARN, f"{check.__name__.replace('check_', '')} check could not run: {error}")
        return self.findings

    @property
    def status(self) -> int:
        levels = {finding.level for finding in self.findings}
        return 2 if FAIL in levels else 1 if WARN in levels else 0

    # --- the checks -------------------------------------------------------------------------------------

    def check_gateway(self) -> None:
        if self.unreachable:
            self.add(FAIL, f"cannot ask the running gateway: {self.unreachable}",
                     "run as root (sudo modemgw doctor) or as the service user; modems were not checked")
            return
        if self.gateway is None:
            self.add(WARN, f"the gateway is not running (no answer on {self.config.data_dir / 'modemgw.sock'})",
                     "sudo systemctl start modemgw; if it stops again: journalctl -u modemgw -n 50")
            return
        modems = self.gateway["modems"]
        live = sum(1 for modem in modems if modem["state"] in ("ready", "busy"))
        self.add(OK, f"the gateway is running (pid {self.gateway['pid']}), {live} of {len(modems)} modem(s) up")
        for device, reason in sorted(self.gateway.get("unattached", {}).items()):
            self.add(WARN, f"{device}: {reason}",
                     f"add it to {self.config_path} (modemgw discover --write) or set auto_attach = true")

    def _service_user(self) -> str:
        try:
            pwd.getpwnam(SERVICE_USER)
            return SERVICE_USER
        except KeyError:
            return pwd.getpwuid(os.getuid()).pw_name

    def check_user(self) -> None:
        user = self._service_user()
        try:
            record = pwd.getpwnam(user)
        except KeyError:
            return
        groups = {group.gr_gid for group in grp.getgrall() if user in group.gr_mem} | {record.pw_gid}
        try:
            dialout = grp.getgrnam("dialout")
        except KeyError:
            self.add(WARN, "this system has no dialout group", "serial ports need a group the service is in")
            return
        if record.pw_uid == 0 or dialout.gr_gid in groups:
            self.add(OK, f"service user {user} may open serial ports (group dialout)")
        else:
            self.add(FAIL, f"service user {user} is not in group dialout: it cannot open the modems",
                     f"sudo usermod -aG dialout {user}, then restart the service (or log in again)")
        for device in self._configured_devices():
            try:
                info = os.stat(device)
            except OSError:
                continue
            mode = info.st_mode
            may = (info.st_uid == record.pw_uid and mode & 0o600 == 0o600) or \
                  (info.st_gid in groups and mode & 0o060 == 0o060) or mode & 0o006 == 0o006 or record.pw_uid == 0
            if not may:
                group = _group_name(info.st_gid)
                self.add(FAIL, f"{device} is {oct(mode & 0o777)} for group {group}: {user} cannot open it",
                         "install the udev rules (GROUP=dialout, MODE=0660): deploy/raspberrypi/install.sh")

    def check_modem_manager(self) -> None:
        pids = [pid for pid, name in _processes() if name == "ModemManager"]
        if not pids:
            self.add(OK, "ModemManager is not running")
            return
        touched = []
        for device in self._configured_devices():
            users = [holder for holder in discovery.holders(device) if holder.startswith("ModemManager")]
            if users:
                touched.append(device)
        if touched:
            self.add(FAIL, f"ModemManager has {', '.join(touched)} open: it fights the gateway for the modem",
                     "install the udev rules (ID_MM_DEVICE_IGNORE=1) and replug, or: "
                     "sudo systemctl disable --now ModemManager")
        else:
            self.add(WARN, "ModemManager is running (it leaves our modems alone only with the udev rules)",
                     "if no other modem needs it: sudo systemctl disable --now ModemManager")

    def _configured_devices(self) -> list[str]:
        devices = [modem.device for modem in self.config.modems if modem.device]
        for pattern in self.config.pool.ports:
            devices += sorted(glob.glob(pattern))
        if self.gateway:
            devices += [modem["device"] for modem in self.gateway["modems"] if modem.get("device")]
        return [device for device in dict.fromkeys(devices) if os.path.exists(device)]

    def check_modems(self) -> None:
        if self.unreachable:
            return  # the gateway owns the ports: opening them here would only report them busy
        if self.gateway is not None:
            reports = self.gateway["modems"]
        else:
            devices = [device for device in self._configured_devices()
                       if discovery._is_char_device(device)]
            labels = {os.path.realpath(modem.device): modem.label for modem in self.config.modems
                      if modem.device and modem.label}
            reports = [{"label": labels.get(os.path.realpath(report.device), report.device), "state": None,
                        **report.as_dict()} for report in discovery.scan(devices, self.timeout)]
            missing = [modem.device for modem in self.config.modems
                       if modem.device and not os.path.exists(modem.device)]
            for device in missing:
                self.add(FAIL, f"{device} does not exist: the modem is unplugged, or has another name",
                         "lsusb; ls -l /dev/modemgw/; modemgw discover (and check the udev rules)")
        if not reports:
            self.add(FAIL, "no modem is configured or found",
                     f"plug one in and run: modemgw discover --write (config: {self.config_path})")
        pid = self.gateway["pid"] if self.gateway else None
        for report in reports:
            self._check_modem(report, pid)

    def _check_modem(self, report: dict, gateway_pid: int | None) -> None:
        name = report.get("label") or report["device"]
        where = f"{name} ({report['device']})" if report.get("device") and report["device"] != name else name
        # a modem searching for the network is up: the registration check below says what is wrong
        if report.get("state") is not None and report["state"] not in ("ready", "busy", "searching"):
            reason = report.get("last_error") or report.get("error") or "no reason recorded"
            self.add(FAIL, f"{where} is {report['state']}: {reason}", _offline_fix(reason, self.config_path))
        if not report.get("answers_at"):
            if report.get("state") in ("ready", "busy", "searching"):
                if report.get("error"):
                    self.add(WARN, f"{where}: up, but {report['error']}",
                             "a long command may be running; if it persists: journalctl -u modemgw")
                return
            held = [holder for holder in discovery.holders(report["device"], gateway_pid)] if report.get("device") \
                else []
            if held:
                self.add(FAIL, f"{where} is held by {', '.join(held)}",
                         "stop that program (gammu-smsd, smsd, minicom, ModemManager?) or let it have the modem")
            elif report.get("state") is None:
                self.add(FAIL, f"{where}: {report.get('error') or 'no answer to AT'}",
                         "replug the modem; if it persists, it may be another interface: modemgw discover")
            return
        pin = report.get("pin")
        if pin == "SIM PIN":
            self.add(FAIL, f"{where}: the SIM asks for its PIN",
                     f'add pin = "...." to its [[modem]] entry in {self.config_path}, then restart the gateway')
            return
        if pin == "SIM PUK":
            self.add(FAIL, f"{where}: the SIM is blocked (PUK needed after 3 wrong PINs)",
                     'modemgw console: AT+CPIN="<PUK>","<new PIN>" (PUK from the SIM card holder)')
            return
        if pin not in (None, "READY"):
            self.add(FAIL, f"{where}: SIM state {pin}", "check the SIM is inserted and seated; replug the modem")
            return
        if report.get("registered") is False:
            state = report.get("registration") or "not registered"
            fix = ("the operator refused the SIM: is it active and paid up? call the operator"
                   if "denied" in state else "check the antenna and coverage; a new SIM may need activating")
            self.add(FAIL, f"{where}: not on the network ({state})", fix)
        dbm = report.get("signal_dbm")
        if dbm is None and report.get("registered"):
            self.add(WARN, f"{where}: signal unknown", "check the antenna")
        elif dbm is not None and dbm < -105:
            self.add(WARN, f"{where}: weak signal ({dbm} dBm)",
                     "move the modem or fit an external antenna (a USB extension cable helps)")
        if pin == "READY" and not report.get("smsc"):
            self.add(FAIL, f"{where}: no SMS service centre number on the SIM: sends fail (CMS 330)",
                     f'modemgw console {name}: AT+CSCA="+<your operator\'s SMSC>",145')
        if report.get("reports"):  # the report watchdog switched this modem's report route
            fix = ("ask the operator whether the SIM's plan includes delivery reports" if "no status report comes"
                   in report["reports"] else "nothing to do; reports are matched as before")
            self.add(WARN, f"{where}: {report['reports']}", fix)
        if pin == "READY" and report.get("registered") and report.get("smsc") and (dbm is None or dbm >= -105):
            self.add(OK, f"{where}: SIM ready, {report.get('registration')}, {dbm} dBm, "
                         f"{report.get('operator') or '-'}")

    def check_clock(self) -> None:
        year = time.gmtime().tm_year
        if year < 2025:
            self.add(FAIL, f"the system clock says {time.strftime('%Y-%m-%d')}: report times and schedules are "
                           "wrong", "connect the network for NTP (a Pi has no battery clock): timedatectl")
            return
        synced = _ntp_synchronized()
        if synced is False:
            self.add(WARN, "the clock is not synchronised (a Pi has no battery-backed clock)",
                     "sudo timedatectl set-ntp true; check the network reaches an NTP server")
        else:
            self.add(OK, f"clock {time.strftime('%Y-%m-%d %H:%M %Z')}" + (" (NTP synchronised)" if synced else ""))

    def check_disk(self) -> None:
        directory = self.config.data_dir if self.config.data_dir.exists() else self.config.data_dir.parent
        usage = shutil.disk_usage(directory)
        free_mb = usage.free / 1e6
        share = usage.free / usage.total if usage.total else 0.0
        held = _database_bytes(self.config.data_dir)
        where = (f"{free_mb:.0f} MB ({share:.0%}) free of {usage.total / 1e9:.1f} GB for {self.config.data_dir}"
                 + (f" (the database holds {describe_bytes(held)})" if held else ""))
        retention = self.config.gateway.retention
        fix = (f"lower [retention] messages_days (now {retention.messages_days:g}) or inbox_days (now "
               f"{retention.inbox_days:g}) in {self.config_path}: the next hourly pruning pass frees what is older; "
               "sudo systemctl stop modemgw && sudo -u modemgw modemgw vacuum && sudo systemctl start modemgw gives "
               "the freed space back to the disk; or free space elsewhere (journalctl --vacuum-size=50M; old logs)")
        if free_mb < 100 or share < 0.02:
            self.add(FAIL, f"only {where}: the queue cannot grow", fix)
        elif free_mb < 200 or share < 0.10:
            self.add(WARN, f"the disk is nearly full: {where}", fix)
        elif free_mb < 500:
            self.add(WARN, f"{free_mb:.0f} MB free for {self.config.data_dir}", "free some space soon")
        else:
            self.add(OK, f"disk: {free_mb / 1000:.1f} GB free for {self.config.data_dir}")

    def _database(self) -> Path | None:
        path = self.config.data_dir / "modemgw.db"
        return path if path.exists() else None

    def check_database(self) -> None:
        path = self._database()
        if path is None:
            self.add(WARN, f"no database in {self.config.data_dir} yet", "it is created when the gateway starts")
            return
        result = readonly.quick_check(path)
        if result == ["ok"]:
            self.add(OK, "database integrity ok")
        else:
            self.add(FAIL, f"the database is damaged: {'; '.join(result[:3])}",
                     "stop the gateway; modemgw restore <latest backup> (keep the damaged file for support)")

    def _ui_url(self) -> str:
        return _loopback_url(self.config.listen)

    def _retry_command(self, webhook_id: int | str) -> str:
        """The API call that retries a webhook's pending deliveries now (an admin key)."""
        return (f"curl -X POST -H \"Authorization: Bearer $MODEMGW_KEY\" "
                f"{self._ui_url()}/api/v1/webhooks/{webhook_id}/retry")

    def check_webhooks(self) -> None:
        """Failing subscriptions (`webhooks.failing_from`: the last attempts in a row failed), each a failure
        naming its URL and last error; and the backlog. Read from the database file, read-only, daemon or not."""
        path = self._database()
        if path is None:
            return
        try:
            count, oldest = readonly.webhook_backlog(path)
            attempts = readonly.webhook_attempts(path)
        except StoreError:
            return
        for hook, attempted in attempts:
            failing = webhooks.failing_from(hook, attempted)
            if failing is not None:
                since = time.strftime("%Y-%m-%d %H:%M", time.localtime(failing["since"]))
                state = "its deliveries are dead letters" if failing["dead"] else "they are retried"
                self.add(FAIL, f"webhook {failing['url']} is failing: {failing['failed_attempts']} attempts in a "
                               f"row since {since}, the last: {failing['last_error']} ({state})",
                         "make the receiver answer 2xx (is it up? is the URL right?), or correct the URL in the web "
                         f"UI: Settings → Webhooks → {failing['url']} ({self._ui_url()}/ui/webhooks/{failing['id']}; "
                         "a new URL sends its pending deliveries at once). Then, there: Retry pending now / Redeliver "
                         f"all dead; or: {self._retry_command(failing['id'])} (and /redeliver-dead)")
        age = time.time() - oldest if oldest else 0.0
        if count > WEBHOOK_BACKLOG or age > WEBHOOK_AGE:
            self.add(WARN, f"{count} webhook deliveries waiting, the oldest for {age / 60:.0f} min",
                     "is the receiver up? Settings → Webhooks → its URL shows the last error; once it answers: "
                     f"Retry pending now there, or {self._retry_command('ID')} (ID: GET /api/v1/webhooks)")
        else:
            self.add(OK, f"webhook backlog: {count}")


def _loopback_url(listen: str) -> str:
    """The gateway's HTTP address as seen from this machine (a wildcard listen address is reached on loopback)."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _offline_fix(reason: str, config_path: Path) -> str:
    lowered = reason.lower()
    if "pin" in lowered:
        return f'add pin = "...." to its [[modem]] entry in {config_path}, then restart the gateway'
    if "no port found" in lowered or "cannot open" in lowered:
        return "replug the modem (a powered USB hub helps); check: lsusb, ls -l /dev/modemgw/"
    if "not registered" in lowered:
        return "check the antenna and coverage; is the SIM active?"
    return "replug the modem; if it persists: modemgw console <label> and journalctl -u modemgw"


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _processes() -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((int(entry.name), (entry / "comm").read_text().strip()))
            except OSError:
                continue
    return found


def _database_bytes(data_dir: Path) -> int:
    """The database's file and write-ahead log in `data_dir`, in bytes (0 when there is none)."""
    total = 0
    for name in ("modemgw.db", "modemgw.db-wal"):
        try:
            total += (data_dir / name).stat().st_size
        except OSError:
            pass
    return total


def _ntp_synchronized() -> bool | None:
    if Path("/run/systemd/timesync/synchronized").exists():
        return True
    if shutil.which("timedatectl"):
        try:
            result = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                                    capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if result.returncode == 0 and result.stdout.strip() in ("yes", "no"):
            return result.stdout.strip() == "yes"
    return None


def render(findings: list[Finding], width: int = 80) -> str:
    """Plain text for a serial console: the level in a 5-column gutter, titles and fixes wrapped to `width`."""
    lines = []
    for finding in findings:
        lines += textwrap.wrap(finding.title, width, initial_indent=f"{finding.level:<5} ",
                               subsequent_indent=" " * 6)
        if finding.fix and finding.level != OK:
            lines += textwrap.wrap(finding.fix, width, initial_indent="      fix: ", subsequent_indent=" " * 11)
    failures = sum(1 for finding in findings if finding.level == FAIL)
    warnings = sum(1 for finding in findings if finding.level == WARN)
    lines.append(f"-- {failures} problem(s), {warnings} warning(s)" if failures or warnings else "-- all well")
    return "\n".join(lines)
