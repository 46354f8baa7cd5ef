"""Finding modems on serial ports: which ports answer AT, which modem and SIM each one is, who holds a port.

`modemgw discover` and `modemgw doctor` build on this. Nothing here changes a modem's settings: a probe
sends AT, ATE0, CMEE and read-only queries, never a PIN (a wrong PIN guess costs one of three attempts).
"""

from __future__ import annotations

import errno
import glob
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import serial

from modemgw.errors import ModemError
from modemgw.modem import Modem, ModemSettings

STABLE_DIRS = ("/dev/modemgw", "/dev/serial/by-id", "/dev/serial/by-path")


@dataclass
class PortReport:
    """One serial port, as a probe found it."""

    device: str
    answers_at: bool = False
    error: str | None = None
    holders: list[str] = field(default_factory=list)   # "name (pid N)" of other processes with it open
    manufacturer: str = ""
    model: str = ""
    imei: str = ""
    iccid: str = ""
    imsi: str = ""
    number: str | None = None
    profile: str = ""
    pin: str | None = None             # READY, SIM PIN, SIM PUK, or None when unknown
    registration: str | None = None    # registered-home, searching, denied, ...
    registered: bool | None = None
    signal_dbm: int | None = None
    operator: str | None = None
    smsc: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def console_ttys() -> set[str]:
    """The kernel's console ttys (e.g. a Pi's serial console): never probed, AT would land on a login prompt."""
    try:
        names = Path("/sys/class/tty/console/active").read_text().split()
    except OSError:
        names = []
    return {os.path.realpath(f"/dev/{name}") for name in names}


def serial_ports(pattern: str | None = None) -> list[str]:
    """Ports to probe: those matching `pattern`, or every serial port pyserial lists (USB, ACM, UART), shown
    under their stable names where udev made one. The system console is left out."""
    if pattern:
        found = sorted(path for path in glob.glob(pattern) if _is_char_device(path))
    else:
        from serial.tools import list_ports

        found = sorted(port.device for port in list_ports.comports())
    consoles = console_ttys()
    ports = [stable_name(path) for path in found if os.path.realpath(path) not in consoles]
    return list(dict.fromkeys(ports))


def _is_char_device(path: str) -> bool:
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


def stable_name(device: str) -> str:
    """`device` under a name that survives replugging (/dev/modemgw/..., /dev/serial/by-id/...), if it has one."""
    real = os.path.realpath(device)
    for directory in STABLE_DIRS:
        for link in sorted(glob.glob(f"{directory}/*")):
            if os.path.realpath(link) == real and link != real:
                return link if not device.startswith(STABLE_DIRS) else device
    return device


def holders(device: str, exclude_pid: int | None = None) -> list[str]:
    """Other processes that have `device` open, as "name (pid N)", from /proc (only those we may look at)."""
    real = os.path.realpath(device)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in (os.getpid(), exclude_pid):
            continue
        try:
            descriptors = list((entry / "fd").iterdir())
        except OSError:
            continue
        targets = {}
        for descriptor in descriptors:
            try:
                targets[descriptor.name] = os.readlink(descriptor)
            except OSError:
                continue
        if real in targets.values() and not _pty_owner(entry, targets, real):
            try:
                found.append(f"{(entry / 'comm').read_text().strip()} (pid {entry.name})")
            except OSError:
                continue
    return found


def _pty_owner(process: Path, targets: dict[str, str], real: str) -> bool:
    """Whether `process` is the other end of the pseudo-terminal `real` (it holds its master: a terminal
    emulator, or the modem simulator), which is not a program competing for the port."""
    if not real.startswith("/dev/pts/"):
        return False
    index = real.rsplit("/", 1)[1]
    for descriptor, target in targets.items():
        if target in ("/dev/ptmx", "/dev/pts/ptmx"):
            try:
                info = (process / "fdinfo" / descriptor).read_text()
            except OSError:
                continue
            if f"tty-index:\t{index}\n" in info:
                return True
    return False


# Another program has the port: it holds it exclusively (EBUSY), or has flock()ed it (pyserial's exclusive=True
# answers EWOULDBLOCK, "Could not exclusively lock port").
PORT_BUSY_ERRNOS = frozenset({errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK})


def inspect_port(device: str, timeout: float = 1.0) -> PortReport:
    """Open `device` and find out what it is, read-only. Errors are recorded in the report, never raised."""
    report = PortReport(device)
    try:
        modem = Modem.open(device, ModemSettings(command_timeout=timeout, settle_attempts=2, settle_delay=0.1))
    except (serial.SerialException, OSError, ValueError) as error:
        report.holders = holders(device)
        busy = " (in use)" if report.holders or getattr(error, "errno", None) in PORT_BUSY_ERRNOS else ""
        report.error = f"cannot open{busy}: {error}"
        return report
    try:
        modem._settle()
        report.answers_at = True
        modem.command("ATE0")
        modem._try("AT+CMEE=1")
        inspect_modem(modem, report)
    except ModemError as error:
        report.error = str(error)
    finally:
        modem.close()
    return report


def inspect_modem(modem: Modem, report: PortReport, identify: bool = True) -> PortReport:
    """Fill `report` from an open modem with read-only queries (the daemon runs this on its own workers)."""
    if identify:
        identity = modem.identify()
        identity.iccid = modem.read_iccid() or ""
    identity = modem.identity
    for name in ("manufacturer", "model", "imei", "iccid", "imsi", "number", "profile"):
        setattr(report, name, getattr(identity, name))
    report.pin = modem.pin_state()
    if report.pin == "READY":
        if identify:
            modem._identify_sim()
            report.imsi, report.number = identity.imsi, identity.number
        status = modem.network_status()
        report.registration = status.registration.state
        report.registered = status.registration.registered
        report.signal_dbm = status.signal.dbm
        report.operator = status.operator
        report.smsc = status.smsc
    return report


def scan(devices: list[str], timeout: float = 1.0) -> list[PortReport]:
    """Probe many ports at once (a port that does not answer costs a couple of timeouts)."""
    if not devices:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(devices))) as executor:
        return list(executor.map(lambda device: inspect_port(device, timeout), devices))


@dataclass
class FoundModem:
    """A modem and the ports of it that answer AT (multi-interface modems often have two)."""

    report: PortReport
    ports: list[str]

    @property
    def device(self) -> str:
        return self.ports[0]


def group(reports: list[PortReport]) -> list[FoundModem]:
    """One entry per IMEI; the AT port listed first is the lowest-numbered interface that answered."""
    modems: dict[str, FoundModem] = {}
    for report in sorted(reports, key=lambda item: item.device):
        if not report.answers_at or not report.imei:
            continue
        if report.imei in modems:
            modems[report.imei].ports.append(report.device)
        else:
            modems[report.imei] = FoundModem(report, [report.device])
    return list(modems.values())


def config_entry(found: FoundModem) -> str:
    """A [[modem]] table for the config: keyed by the SIM's ICCID when readable (limits and quotas belong to the
    SIM), else by the modem's IMEI; the device is where to look first."""
    report = found.report
    lines = ["[[modem]]"]
    if report.iccid:
        lines.append(f'iccid = "{report.iccid}"')
    else:
        lines.append(f'imei = "{report.imei}"')
    lines.append(f'device = "{found.device}"')
    lines.append(f'label = "modem-{report.imei[-4:]}"')
    if report.pin and report.pin != "READY":
        lines.append(f'# pin = "...."            # the SIM asks for its PIN ({report.pin})')
    comment = ", ".join(part for part in (f"{report.manufacturer} {report.model}".strip(),
                                          f"IMEI {report.imei}",
                                          report.number and f"number {report.number}") if part)
    return f"# {comment}\n" + "\n".join(lines) + "\n"


def known(config, report: PortReport) -> bool:
    """Whether a loaded configuration already has an entry for this modem or SIM."""
    for modem in config.modems:
        if (modem.imei and modem.imei == report.imei) or (modem.iccid and modem.iccid == report.iccid):
            return True
        if modem.device and not (modem.imei or modem.iccid) and os.path.realpath(modem.device) == \
                os.path.realpath(report.device):
            return True
    return False


def describe(report: PortReport) -> str:
    """One or two lines about a port, for 80 columns."""
    if not report.answers_at:
        held = f"; held by {', '.join(report.holders)}" if report.holders else ""
        return f"{report.device}: {report.error or 'no answer to AT'}{held}"
    head = f"{report.device}: {report.manufacturer} {report.model} IMEI {report.imei}".rstrip()
    if report.pin is None:
        return head
    sim = f"SIM {report.iccid or '?'}"
    if report.pin != "READY":
        return f"{head}\n    {sim}, asks for {report.pin}"
    network = report.registration or "registration unknown"
    signal = f"{report.signal_dbm} dBm" if report.signal_dbm is not None else "no signal"
    return f"{head}\n    {sim} {report.number or ''}, {network}, {signal}, {report.operator or '-'}"
