"""Command sequences on a link: initialise, identify, send, read and delete stored SMS, USSD, raw passthrough.

No SQL and no HTTP here. Vendor quirks are data (`DriverProfile`), chosen at identify time from the
manufacturer the modem reports, and stored on the instance.

URCs arrive on `Modem.events` (a queue of `at.Urc`) for the owner to handle: `+CMTI` (a message stored),
`+CMT` (a message delivered directly: acknowledge with `ack()` after committing it when `needs_ack`),
`+CDS` / `+CDSI` (status reports), and the rest (`^RSSI`, `+CREG`, ...). USSD answers are consumed here.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

import serial

from modemgw import at, pdu
from modemgw.errors import (
    CmeError,
    CmsError,
    CommandError,
    ModemError,
    ModemTimeout,
    PortLost,
    ResponseError,
    WrongModem,
)
from modemgw.link import Link, PendingPrompt, Reply
from modemgw.pdu import Deliver, StatusReport, Submit
from modemgw.settings import ModemSettings

log = logging.getLogger("modemgw.modem")

SILENT_TRIES = 3  # unanswered ATs at first contact before a warning names the port

# Ports already warned about as silent, forgotten when they answer: the watcher and the workers open a silent
# port again and again, and one warning per port says what there is to say.
_silent_ports: set[str] = set()
_silent_lock = threading.Lock()


@dataclass(frozen=True)
class DriverProfile:
    """What differs between modem families, as the driver needs to know it."""

    name: str
    matches: tuple[str, ...] = ()              # substrings of +CGMI (case-insensitive) that select it
    cpin_has_final: bool = True                # Wavecom answers AT+CPIN? with no OK
    iccid_commands: tuple[str, ...] = ("AT+CCID", "AT+ICCID", "AT^ICCID?", "AT+QCCID")
    report_routes: tuple[int, ...] = (2, 1)    # CNMI <ds> to try in order: 2 stored (+CDSI), 1 direct (+CDS)
    storage: str = "SM"
    ussd_packed: bool = False                  # Huawei wants (and answers) packed GSM-7 hex
    boot_settle_errors: tuple[int, ...] = (515, 14)  # CME codes meaning "busy, ask again"


DRIVER_PROFILES = (
    DriverProfile("huawei", ("huawei",), iccid_commands=("AT^ICCID?", "AT+CCID"), ussd_packed=True),
    DriverProfile("simcom", ("simcom",), iccid_commands=("AT+CCID", "AT+ICCID")),
    DriverProfile("quectel", ("quectel",), iccid_commands=("AT+QCCID", "AT+CCID")),
    DriverProfile("wavecom", ("wavecom",), cpin_has_final=False, iccid_commands=("AT+CCID",)),
)
GENERIC = DriverProfile("generic")


def profile_for(manufacturer: str) -> DriverProfile:
    folded = manufacturer.casefold()
    for profile in DRIVER_PROFILES:
        if any(token in folded for token in profile.matches):
            return profile
    return GENERIC


@dataclass
class Identity:
    manufacturer: str = ""
    model: str = ""
    revision: str = ""
    imei: str = ""
    imsi: str = ""
    iccid: str = ""
    number: str | None = None
    profile: str = "generic"


@dataclass
class NetworkStatus:
    registration: at.Registration
    signal: at.Signal
    operator: str | None
    smsc: str | None


@dataclass
class StoredMessage:
    """A message read from modem storage. `message` is None when the PDU did not decode (`error` says why);
    such a message is kept, never silently dropped."""

    index: int
    stat: int
    length: int
    pdu: str
    message: Deliver | Submit | StatusReport | None  # (a field named pdu shadows the module in this class)
    error: str | None = None


@dataclass
class UssdReply:
    status: int              # 0 done, 1 more input wanted, 2 ended by network, 4 not supported, 5 timed out
    text: str | None
    dcs: int | None


@dataclass
class _Settings:
    csms: int = 0
    report_route: int = 0


class PendingSend:
    """An SMS-SUBMIT under way (`Modem.start_send`): `result()` waits for the network's answer and gives its TP-MR."""

    def __init__(self, name: str, pending: PendingPrompt, timeout: float):
        self.name, self.pending, self.timeout = name, pending, timeout

    def result(self) -> int:
        """The TP-MR of the `+CMGS:` answer. Raises CmsError, PromptTimeout, ModemTimeout, PortLost, ResponseError."""
        reply = self.pending.result(self.timeout)
        line = reply.line("+CMGS:")
        if line is None:
            raise ResponseError(f"{self.name}: AT+CMGS answered OK without +CMGS: {reply.lines!r}")
        return at.parse_cmgs(line)


class Modem:
    """A modem on an open serial port, driven through a `Link`."""

    def __init__(self, port: serial.SerialBase, settings: ModemSettings | None = None, name: str | None = None):
        self.settings = settings or ModemSettings()
        self.events: queue.Queue = queue.Queue()
        self._ussd: queue.Queue = queue.Queue()
        self.identity = Identity()
        self.profile = GENERIC
        self.state = _Settings()
        # a resync try waits no longer than a command would (a probe's short timeout makes a dead port cheap)
        self.link = Link(port, self._on_urc, self._on_lost, name=name,
                         resync_timeout=min(2.0, self.settings.command_timeout))
        self.name = self.link.name
        self._closed = threading.Event()  # set by close(): ends the settle and busy waits at once

    @classmethod
    def open(cls, device: str, settings: ModemSettings | None = None, baudrate: int = 115200) -> Modem:
        """Open `device` exclusively (one owner per serial port) and wrap it. Raises PortLost-like
        `serial.SerialException` when it cannot be opened."""
        port = serial.Serial(device, baudrate, timeout=None, exclusive=True)
        return cls(port, settings, name=device)

    @property
    def needs_ack(self) -> bool:
        """Direct deliveries (+CMT, +CDS) must be acknowledged with `ack()` (phase 2+ message service)."""
        return self.state.csms == 1

    # --- URCs ----------------------------------------------------------------------------------------

    def _on_urc(self, urc: at.Urc) -> None:
        if urc.name == "+CUSD":
            self._ussd.put(urc)
            return
        self.events.put(urc)

    def _on_lost(self, error: Exception) -> None:
        self.events.put(at.Urc("PORT-LOST", (str(error),), str(error)))

    # --- commands ------------------------------------------------------------------------------------

    def command(self, command: str, timeout: float | None = None, **options) -> Reply:
        return self.link.command(command, timeout or self.settings.command_timeout, **options)

    def raw(self, command: str, timeout: float | None = None) -> Reply:
        """Send any command and return its reply whatever the final result (diagnostics)."""
        return self.link.command(command, timeout or self.settings.command_timeout, check=False)

    def _value(self, command: str, prefix: str | None = None) -> str:
        """The single information line of a reply, with `prefix` removed when given."""
        reply = self.command(command)
        lines = [line for line in reply.lines if line]
        if prefix:
            line = reply.line(prefix)
            if line is None:
                raise ResponseError(f"{command}: no {prefix} line in {lines!r}")
            return line[len(prefix):].strip()
        if not lines:
            raise ResponseError(f"{command}: empty reply")
        return lines[0].strip()

    # --- initialisation --------------------------------------------------------------------------------

    def initialize(self, check: Callable[[Identity], str | None] | None = None) -> Identity:
        """Bring the modem to a known state and identify it and its SIM. Raises ModemError.

        `check` sees the modem's IMEI and the SIM's ICCID before anything is changed (no PIN is entered): a
        worker bound to an identity refuses another modem with the reason `check` returns (WrongModem)."""
        self._settle()
        self.command("ATE0")
        self._try("AT+CMEE=1")
        self.identify()
        self.identity.iccid = self.read_iccid() or ""
        problem = check(self.identity) if check else None
        if problem:
            raise WrongModem(f"{self.name}: {problem}")
        self._unlock()
        self._identify_sim()
        self._configure_messaging()
        return self.identity

    def _settle(self) -> None:
        """Wait out a booting modem: AT until it answers OK (a modem is slow only at power-up).

        While the link is out of step (first contact, or after a timeout) each try is one resync (ESC first on
        every other try, see `Link.resync`). A port that never answered is named in a warning after a few tries.
        Raises ModemTimeout, PortLost (also when closed meanwhile)."""
        tries = self.settings.settle_attempts
        timeout = min(1.0, self.settings.command_timeout)
        last: Exception | None = None
        for attempt in range(tries):
            if attempt:
                self._pause(self.settings.settle_delay)
            try:
                if self.link.dirty:
                    self.link.resync(timeout)
                else:
                    self.command("AT", timeout=timeout)
                _answered(self.name)
                return
            except (ModemTimeout, CommandError, CmeError) as error:
                last = error
            if attempt + 1 == min(tries, SILENT_TRIES) and not self.link.answered:
                _warn_silent(self.name, attempt + 1, timeout)
        raise ModemTimeout(f"{self.name}: no OK to AT after {tries} tries ({last})")

    def _pause(self, seconds: float) -> None:
        """Wait between tries; raises PortLost at once when the modem is closed meanwhile (shutdown)."""
        if self._closed.wait(seconds):
            raise PortLost(f"{self.name}: closed")

    def _try(self, command: str) -> Reply | None:
        """A command that some modems lack: None when refused."""
        try:
            return self.command(command)
        except (CommandError, CmeError, CmsError) as error:
            log.info("%s: %s refused (%s); going on without it", self.name, command, error)
            return None

    def _retry_busy(self, command: str, **options) -> Reply:
        """A command that a modem may refuse while busy after CFUN/boot (CME 515, SIM busy)."""
        for _attempt in range(self.settings.settle_attempts):
            try:
                return self.command(command, **options)
            except CmeError as error:
                if error.code not in self.profile.boot_settle_errors:
                    raise
                self._pause(self.settings.settle_delay)
        return self.command(command, **options)

    def identify(self) -> Identity:
        """Manufacturer, model, revision and IMEI; chooses the driver profile."""
        manufacturer = self._retry_busy("AT+CGMI").lines
        self.identity.manufacturer = _strip_prefix(manufacturer[0] if manufacturer else "", "+CGMI:")
        self.profile = profile_for(self.identity.manufacturer)
        self.identity.profile = self.profile.name
        self.identity.model = _strip_prefix(self._value("AT+CGMM"), "+CGMM:")
        self.identity.revision = _strip_prefix(self._value("AT+CGMR"), "+CGMR:")
        self.identity.imei = _strip_prefix(self._value("AT+CGSN"), "+CGSN:")
        return self.identity

    def pin_state(self) -> str:
        """`READY`, `SIM PIN`, `SIM PUK`, ... from AT+CPIN?."""
        ends_with = None if self.profile.cpin_has_final else "+CPIN:"
        reply = self._retry_busy("AT+CPIN?", ends_with=ends_with)
        line = reply.line("+CPIN:")
        if line is None:
            raise ResponseError(f"{self.name}: AT+CPIN? gave no +CPIN line: {reply.lines!r}")
        return line[len("+CPIN:"):].strip()

    def _unlock(self) -> None:
        state = self.pin_state()
        if state == "READY":
            return
        if state != "SIM PIN":
            raise CmeError(12 if state == "SIM PUK" else 11)
        if not self.settings.pin:
            raise ModemError(f"{self.name}: the SIM asks for its PIN and none is configured")
        self.command(f"AT+CPIN={at.quote(self.settings.pin)}")
        for _attempt in range(self.settings.settle_attempts):
            if self.pin_state() == "READY":
                return
            self._pause(self.settings.settle_delay)
        raise ModemError(f"{self.name}: the SIM did not become ready after its PIN was entered")

    def read_iccid(self) -> str | None:
        """The SIM's ICCID (most modems give it before the PIN is entered); None when no command gives it."""
        for command in self.profile.iccid_commands:
            reply = self._try(command)
            if reply and reply.lines:
                value = normalize_iccid(reply.lines[0].split(":", 1)[-1])
                if value:
                    return value
        return None

    def _identify_sim(self) -> None:
        self.identity.imsi = _strip_prefix(self._value("AT+CIMI"), "+CIMI:")
        self.identity.iccid = self.identity.iccid or self.read_iccid() or ""
        reply = self._try("AT+CNUM")
        line = reply.line("+CNUM:") if reply else None
        if line:
            params = at.split_params(line[len("+CNUM:"):])
            self.identity.number = params[1] if len(params) > 1 and params[1] else None

    def _configure_messaging(self) -> None:
        self.command("AT+CMGF=0")
        reply = self._try("AT+CSMS=1")
        self.state.csms = 1 if reply is not None else 0
        storage = self.settings.storage or self.profile.storage
        self.command(f'AT+CPMS="{storage}","{storage}","{storage}"')
        for route in self.profile.report_routes:
            if self._try(f"AT+CNMI=2,1,0,{route},0") is not None:
                self.state.report_route = route
                return
        self.state.report_route = 0
        self._try("AT+CNMI=2,1,0,0,0")

    # --- status --------------------------------------------------------------------------------------

    def signal(self) -> at.Signal:
        return at.parse_csq(self.command("AT+CSQ").line("+CSQ:") or "+CSQ: 99,99")

    def registration(self) -> at.Registration:
        line = self.command("AT+CREG?").line("+CREG:")
        if line is None:
            raise ResponseError(f"{self.name}: AT+CREG? gave no +CREG line")
        return at.parse_creg(line)

    def operator(self) -> str | None:
        self._try("AT+COPS=3,0")
        line = self.command("AT+COPS?").line("+COPS:")
        return at.parse_cops(line) if line else None

    def smsc(self) -> str | None:
        reply = self._try("AT+CSCA?")
        line = reply.line("+CSCA:") if reply else None
        return at.parse_csca(line) if line else None

    def network_status(self) -> NetworkStatus:
        return NetworkStatus(self.registration(), self.signal(), self.operator(), self.smsc())

    # --- sending -------------------------------------------------------------------------------------

    def send_pdu(self, encoded: pdu.EncodedPdu, timeout: float | None = None) -> int:
        """Send one SMS-SUBMIT; return its TP-MR. Raises CmsError (see `temporary`), PromptTimeout,
        ModemTimeout or PortLost."""
        return self.start_send(encoded, timeout).result()

    def start_send(self, encoded: pdu.EncodedPdu, timeout: float | None = None) -> PendingSend:
        """Begin sending one SMS-SUBMIT and return at once (the PDU follows the prompt by itself): the caller may
        do other work while the network answers, then must take `result()` (the TP-MR), which frees the port.
        Raises PortLost, ModemTimeout; `result()` raises as `send_pdu` does."""
        pending = self.link.start_prompt(f"AT+CMGS={encoded.tpdu_length}", encoded.hex, self.settings.prompt_timeout)
        return PendingSend(self.name, pending, timeout or self.settings.send_timeout)

    def send(self, recipient: str, text: str, *, request_report: bool = True, validity: int | None = None,
             concat_reference: int = 0) -> list[int]:
        """Split, encode and send a text; one TP-MR per part. Stops at the first failing part (raises)."""
        parts = pdu.encode_message(recipient, text, request_report=request_report, validity=validity,
                                   concat_reference=concat_reference)
        return [self.send_pdu(part) for part in parts]

    # --- storage -------------------------------------------------------------------------------------

    def select_storage(self, storage: str) -> None:
        """Make `storage` the one CMGL/CMGR/CMGD read (e.g. "SR" for stored status reports)."""
        default = self.settings.storage or self.profile.storage
        self.command(f'AT+CPMS="{storage}","{default}","{default}"')

    def list_stored(self, stat: int = 4) -> list[StoredMessage]:
        """All messages in the read storage (stat 4), decoded; undecodable ones kept with their error."""
        reply = self.command(f"AT+CMGL={stat}", timeout=max(self.settings.command_timeout, 30.0))
        return [_stored(entry) for entry in at.parse_cmgl(reply.lines)]

    def read_stored(self, index: int) -> StoredMessage | None:
        entry = at.parse_cmgr(self.command(f"AT+CMGR={index}").lines, index)
        return _stored(entry) if entry else None

    def delete_stored(self, index: int) -> None:
        self.command(f"AT+CMGD={index}")

    def ack(self) -> None:
        """Acknowledge a direct delivery (+CMT / +CDS) after it has been committed."""
        self.command("AT+CNMA")

    # --- USSD ----------------------------------------------------------------------------------------

    def ussd(self, code: str, timeout: float | None = None) -> UssdReply:
        """Send a USSD code (e.g. `*100#`) and wait for the network's answer, decoded from GSM-7 or UCS-2."""
        while not self._ussd.empty():
            self._ussd.get_nowait()
        request = pdu.encode_gsm7_packed(code).hex().upper() if self.profile.ussd_packed else code
        self.command(f"AT+CUSD=1,{at.quote(request)},15", timeout=self.settings.command_timeout)
        try:
            urc = self._ussd.get(timeout=timeout or self.settings.ussd_timeout)
        except queue.Empty:
            raise ModemTimeout(f"{self.name}: no answer to USSD {code}") from None
        return decode_ussd(urc, self.profile.ussd_packed)

    # --- lifecycle -----------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the port. Safe from another thread: a settle or busy wait ends at once, and the command in
        flight fails with PortLost."""
        self._closed.set()
        self.link.close()

    def abort(self) -> None:
        """Stop a modem another thread is using (shutdown, while its worker may be settling): same as close()."""
        self.close()


def _warn_silent(name: str, tries: int, timeout: float) -> None:
    with _silent_lock:
        first = name not in _silent_ports
        _silent_ports.add(name)
    level = logging.WARNING if first else logging.INFO
    log.log(level, "%s: no answer to AT after %d tries (%g s each, ESC+AT and bare AT); is this the modem's AT "
            "port?", name, tries, timeout)


def _answered(name: str) -> None:
    with _silent_lock:
        _silent_ports.discard(name)


def _strip_prefix(value: str, prefix: str) -> str:
    value = value.strip()
    return value[len(prefix):].strip() if value.startswith(prefix) else value


def _stored(entry: at.StoredPdu) -> StoredMessage:
    try:
        message = pdu.decode(entry.pdu, tpdu_length=entry.length)
        return StoredMessage(entry.index or 0, entry.stat, entry.length, entry.pdu, message)
    except pdu.PduError as error:
        log.warning("stored message %s does not decode: %s", entry.index, error)
        return StoredMessage(entry.index or 0, entry.stat, entry.length, entry.pdu, None, str(error))


def ussd_alphabet(dcs: int) -> str:
    """The alphabet of a USSD/CBS data coding scheme (TS 23.038 clause 5)."""
    group = dcs >> 4
    if group == 0b0001 and dcs & 0x0F == 0x01:
        return pdu.UCS2
    if group in (0b0100, 0b0101, 0b0110, 0b0111, 0b1001):
        return (pdu.GSM7, pdu.BINARY, pdu.UCS2, pdu.GSM7)[(dcs >> 2) & 0x03]
    if group == 0b1111:
        return pdu.BINARY if dcs & 0x04 else pdu.GSM7
    return pdu.GSM7


def decode_ussd(urc: at.Urc, packed: bool = False) -> UssdReply:
    """`+CUSD: <m>[,<str>,<dcs>]`: the text decoded by its data coding scheme. Modems hand GSM-7 text over
    as characters, except those (`packed`) that pass the packed septets on as hex."""
    params = urc.params
    if not params:
        raise at.parse_error(f"malformed +CUSD: {urc.line!r}", urc.line)
    status = at.parse_int(params[0], "+CUSD status", urc.line)
    if len(params) < 2:
        return UssdReply(status, None, None)
    raw = params[1]
    field = params[2] if len(params) > 2 else ""
    # no data coding scheme (or not one that fits an octet): the text is read as it came
    dcs = int(field) if at.is_number(field) and len(field) <= 3 and int(field) <= 0xFF else 15
    is_hex = raw != "" and len(raw) % 2 == 0 and all(char in "0123456789abcdefABCDEF" for char in raw)
    alphabet = ussd_alphabet(dcs)
    if alphabet == pdu.UCS2 and is_hex:
        return UssdReply(status, bytes.fromhex(raw).decode("utf-16-be", errors="replace"), dcs)
    if alphabet == pdu.GSM7 and packed and is_hex:
        return UssdReply(status, pdu.decode_gsm7_packed(bytes.fromhex(raw)), dcs)
    return UssdReply(status, raw, dcs)


@dataclass
class Probe:
    """What `probe` found on a port."""

    device: str
    identity: Identity | None = None
    error: str | None = None
    answers_at: bool = False


def probe(device: str, timeout: float = 1.0) -> Probe:
    """Open `device`, see whether it answers AT, and identify the modem (IMEI) without configuring it."""
    result = Probe(device)
    try:
        modem = Modem.open(device, ModemSettings(command_timeout=timeout, settle_attempts=2, settle_delay=0.1))
    except (serial.SerialException, OSError) as error:
        result.error = f"cannot open: {error}"
        return result
    try:
        modem._settle()
        result.answers_at = True
        modem.command("ATE0")
        result.identity = modem.identify()
        result.identity.iccid = modem.read_iccid() or ""
    except ModemError as error:
        result.error = str(error)
    finally:
        modem.close()
    return result


def identity_matches(identity: Identity, imei: str | None, iccid: str | None) -> bool:
    return ((not imei or identity.imei == imei)
            and (not iccid or normalize_iccid(identity.iccid) == normalize_iccid(iccid)) and bool(imei or iccid))


def normalize_iccid(value: str) -> str:
    """An ICCID as printed on the card: quotes and the F padding of odd lengths removed, and the nibble-swapped
    form some modems give (`98...` for `89...`, the SIM's raw EF_ICCID bytes) put right."""
    value = value.strip().strip('"').upper().rstrip("F")
    if value.startswith("98") and len(value) >= 18 and at.is_number(value.replace("F", "")):
        swapped = "".join(value[i + 1:i + 2] + value[i] for i in range(0, len(value), 2)).rstrip("F")
        if swapped.startswith("89"):
            return swapped
    return value
