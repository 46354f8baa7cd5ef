"""The simulated modem's AT interpreter: bytes in, timed bytes out, as a real modem behaves on its serial port.

It does no I/O and has no clock or thread of its own: a `Host` (the pty runner, or a test's manual clock)
tells it the time, writes what it emits, and calls it back later. Vendor differences come from its `Profile`.

Behaviour follows V.250 / TS 27.007 / TS 27.005 as modems implement them: echo until `ATE0`, `\\r\\n`-framed
replies, the exact `\\r\\n> ` prompt, Ctrl-Z to send and ESC to cancel, ERROR for unknown commands and unknown
`?`/`=?` queries, input that does not start with AT ignored, commands processed strictly one after another.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from modemgw import pdu, text
from modemgw.sim.profiles import Profile

CTRL_Z = 0x1A
ESC = 0x1B

STAT_NAMES = {0: "REC UNREAD", 1: "REC READ", 2: "STO UNSENT", 3: "STO SENT", 4: "ALL"}
STAT_CODES = {name: code for code, name in STAT_NAMES.items()}

CMS_TEXT = {300: "ME failure", 302: "operation not allowed", 303: "operation not supported",
            304: "invalid PDU mode parameter", 305: "invalid text mode parameter", 311: "SIM PIN required",
            321: "invalid memory index", 322: "memory full", 330: "SMSC address unknown",
            331: "no network service", 332: "network timeout", 340: "no +CNMA acknowledgement expected",
            500: "unknown error"}
CME_TEXT = {3: "operation not allowed", 4: "operation not supported", 10: "SIM not inserted",
            11: "SIM PIN required", 12: "SIM PUK required", 16: "incorrect password", 21: "invalid index",
            30: "no network service", 100: "unknown",
            515: "please wait, initialisation or command processing in progress"}



# A simulated modem keeps this many of its last commands and transmitted messages (up to twice as many, trimmed in
# one go): a demo that runs for weeks must not grow with every message (they took ~0.8 KB each).
KEPT_RECORDS = 20_000


def _bound(records: list) -> None:
    if len(records) > 2 * KEPT_RECORDS:
        del records[:-KEPT_RECORDS]

class Host(Protocol):
    def now(self) -> float: ...
    def write(self, data: bytes, at: float) -> None: ...
    def call_at(self, at: float, action: Callable[[], None]) -> None: ...


class NetworkPort(Protocol):
    def submit(self, modem: SimModem, message: pdu.Submit, reference: int) -> None: ...
    def ussd(self, modem: SimModem, request: str) -> tuple[int, str]: ...
    def redeliver_later(self, modem: SimModem, kind: str, encoded: pdu.EncodedPdu) -> None: ...
    def memory_available(self, modem: SimModem) -> None: ...


@dataclass
class SimIdentity:
    imei: str
    imsi: str
    iccid: str
    number: str
    operator: str = "SimNet"
    smsc: str = "+447700900999"
    rssi: int = 20


@dataclass
class Stored:
    stat: int
    encoded: pdu.EncodedPdu


@dataclass
class Storage:
    name: str
    capacity: int
    slots: dict[int, Stored] = field(default_factory=dict)

    def add(self, item: Stored) -> int | None:
        for index in range(1, self.capacity + 1):
            if index not in self.slots:
                self.slots[index] = item
                return index
        return None


@dataclass
class SentRecord:
    """What the simulated modem transmitted: the exact PDU hex and the TP-MR it answered with."""

    hex: str
    tpdu_length: int
    reference: int
    recipient: str
    text: str | None


class CommandFailed(Exception):
    """Ends the command line with this final result (ERROR, +CME ERROR: n, +CMS ERROR: n, ...)."""

    def __init__(self, final: str):
        super().__init__(final)
        self.final = final


_EXTENDED = re.compile(r"([+^$%*#&][A-Za-z0-9]+|[A-Za-z]\d*|&[A-Za-z]\d*)(=\?|\?|=)?")


@dataclass
class Faults:
    hang_until: float | None = None                  # ignore everything until then (inf: until cleared)
    cms_errors: list[int] = field(default_factory=list)  # next sends fail with these codes, in order
    registration_lost: bool = False
    pin_required: bool = False
    prompt_delay: float = 0.0
    no_prompt: int = 0                               # this many sends get no prompt
    reply_delay: float = 0.0                         # the next reply comes this late
    urc_before_prompt: int = 0
    urc_before_result: int = 0
    urc_in_next_reply: str | None = None
    reports_lost_route: int | None = None            # CNMI <ds> accepted, but its reports never come (firmware bug)
    reports_lost_stored: bool = False                # ... or are stored in "SR" without their +CDSI


class SimModem:
    """One simulated modem: identity, SIM, settings and message storage, driven through `receive`."""

    PIN = "1234"

    def __init__(self, name: str, identity: SimIdentity, profile: Profile, host: Host,
                 network: NetworkPort | None = None, send_latency: float = 0.0, ack_timeout: float = 10.0,
                 ussd_delay: float = 0.05, seed: int = 0):
        self.name = name
        self.identity = identity
        self.profile = profile
        self.host = host
        self.network = network
        self.send_latency = send_latency
        self.ack_timeout = ack_timeout
        self.ussd_delay = ussd_delay
        self.random = random.Random(seed)
        self.storages = {name: Storage(name, 30 if name == "SM" else 100) for name in profile.storages}
        self.sent: list[SentRecord] = []  # what it transmitted, the last KEPT_RECORDS or so
        self.commands: list[str] = []  # its command lines, for tests and diagnostics, likewise
        self.on_command: Callable[[str], None] | None = None  # benchmarks time commands as the modem sees them
        self.faults = Faults()
        self.plugged = True
        self.reference = self.random.randrange(256)
        self._input = bytearray()
        self._busy_until = 0.0
        self._pump_scheduled = False
        self.reset()

    # --- state -----------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Power-on defaults (ATZ, AT&F, AT+CFUN=1,1, replug). The SIM's storage survives."""
        self.echo = True
        self.verbose_errors = 0  # AT+CMEE
        self.pdu_mode = True     # AT+CMGF=0
        self.cnmi = self.profile.default_cnmi
        self.csms = 0
        self.charset = "GSM"
        self.radio_on = True
        self.busy_left = 0
        self.cpms = ["SM", "SM", "SM"]
        self.creg_n = 0
        self._prompt: dict | None = None
        self._pending_ack: list[tuple[str, pdu.EncodedPdu]] = []
        self.pin_ok = not self.faults.pin_required
        self.pin_attempts = 3

    @property
    def registered(self) -> bool:
        return self.radio_on and self.pin_ok and not self.faults.registration_lost

    def set_registration_lost(self, lost: bool) -> None:
        """The network goes away (or comes back), as when the antenna is pulled or the cell fails."""
        before = self.registered
        self.faults.registration_lost = lost
        self._registration_changed(before)

    def _registration_changed(self, before: bool) -> None:
        """`+CREG: <stat>` (with location for `AT+CREG=2`) when registration changed and the host asked for it."""
        if self.creg_n and self.registered != before:
            stat = 1 if self.registered else (2 if self.radio_on and self.pin_ok else 0)
            self.emit_urc(f"+CREG: {stat}" + (',"00A1","1B2C"' if self.creg_n == 2 else ""))

    def boot(self) -> None:
        """What the modem prints when it powers up."""
        for line in self.profile.boot_urcs:
            self.emit_urc(line)

    # --- output ------------------------------------------------------------------------------------------

    def _write(self, data: bytes, delay: float = 0.0) -> None:
        self.host.write(data, self.host.now() + delay)

    def emit_urc(self, line: str, delay: float = 0.0) -> None:
        self._write(f"\r\n{line}\r\n".encode("latin-1", errors="replace"), delay)

    def _format(self, lines: list[str], final: str) -> bytes:
        out = ""
        if lines:
            indent = self.profile.info_indent
            shown = [indent + line for line in lines]
            urc = self.faults.urc_in_next_reply or self.profile.urc_in_replies
            if urc and len(shown) >= 2:
                shown.insert(len(shown) // 2 or 1, urc)
                self.faults.urc_in_next_reply = None
            out += "\r\n" + "\r\n".join(shown) + "\r\n"
        if final:
            out += f"\r\n{final}\r\n"
        return out.encode("latin-1", errors="replace")

    def cme(self, code: int) -> CommandFailed:
        if self.verbose_errors == 0:
            return CommandFailed("ERROR")
        detail = CME_TEXT.get(code, str(code)) if self.verbose_errors == 2 else str(code)
        return CommandFailed(f"+CME ERROR: {detail}")

    def cms(self, code: int) -> CommandFailed:
        detail = CMS_TEXT.get(code, str(code)) if self.verbose_errors == 2 else str(code)
        return CommandFailed(f"+CMS ERROR: {detail}")

    # --- input -------------------------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Bytes from the serial line."""
        self._input += data
        self._pump()

    def _pump(self) -> None:
        self._pump_scheduled = False
        now = self.host.now()
        if self.faults.hang_until is not None:
            if now < self.faults.hang_until:
                self._input.clear()
                return
            self.faults.hang_until = None
        while self._input:
            if now < self._busy_until:
                if not self._pump_scheduled:
                    self._pump_scheduled = True
                    self.host.call_at(self._busy_until, self._pump)
                return
            if self._prompt is not None:
                if not self._take_prompt_input():
                    return
                continue
            end = self._input.find(b"\r")
            if end < 0:
                if len(self._input) > 4096:  # a modem's line buffer overflows; it forgets the line
                    self._input.clear()
                return
            raw = bytes(self._input[:end])
            del self._input[:end + 1]
            line = raw.decode("latin-1").replace("\n", "").strip()
            if self.echo:
                self._write(raw.replace(b"\n", b"") + b"\r")
            start = line.upper().find("AT")  # V.250: whatever precedes the "AT" prefix is ignored
            if start >= 0:
                self._run_line(line[start:])

    def _finish(self, lines: list[str], final: str, delay: float = 0.0) -> None:
        delay += self.faults.reply_delay
        self.faults.reply_delay = 0.0
        self._write(self._format(lines, final), delay)
        self._busy_until = self.host.now() + delay

    def _run_line(self, line: str) -> None:
        self.commands.append(line)
        _bound(self.commands)
        if self.on_command is not None:
            self.on_command(line)
        body = line[2:]
        lines: list[str] = []
        try:
            if self.busy_left:
                self.busy_left -= 1
                raise self.cme(515)
            position = 0
            while position < len(body):
                if body[position] in "; ":
                    position += 1
                    continue
                match = _EXTENDED.match(body, position)
                if not match:
                    raise CommandFailed("ERROR")
                name = match.group(1).upper()
                op = match.group(2) or ""
                position = match.end()
                args = ""
                if op == "=" or name[0] in "+^$%*#" and op == "":
                    end = body.find(";", position) if not name.startswith("+CUSD") else -1
                    end = len(body) if end < 0 else end
                    args = body[position:end]
                    position = end
                result = self._execute(name, op, args)
                if result is None:  # the command took over (prompt, or a reply of its own)
                    return
                lines += result
        except CommandFailed as failure:
            self._finish(lines, failure.final)
            return
        if lines and lines[0] == "\0no-final":
            self._finish(lines[1:], "")
            return
        self._finish(lines, "OK")

    # --- commands ----------------------------------------------------------------------------------------

    def _unknown(self) -> CommandFailed:
        return CommandFailed(self.profile.unknown_command)

    def _need_sim(self, sms: bool = False) -> None:
        if not self.pin_ok:
            raise self.cms(311) if sms else self.cme(11)

    def _execute(self, name: str, op: str, args: str) -> list[str] | None:
        handler = _HANDLERS.get(name)
        if handler is None:
            if name in self.profile.extra_commands and op in ("", "?"):
                return list(self.profile.extra_commands[name])
            if name in self.profile.iccid_commands and op in ("", "?"):
                return [self.identity.iccid if name == "+CCID" else f"{name}: {self.identity.iccid}"]
            raise self._unknown()
        return handler(self, op, args)

    # basic commands

    def _basic(self, name: str, op: str) -> list[str]:
        letter, digits = name[0], name[1:] or "0"
        if name.startswith("&"):
            if name in ("&F", "&F0"):
                self.reset()
                self.echo = True
            return []
        if letter == "E":
            self.echo = digits == "1"
        elif letter == "Z":
            self.reset()
        elif letter == "I":
            return [self.profile.manufacturer, self.profile.model, f"Revision: {self.profile.revision}"]
        elif letter in "VQXS":
            pass
        else:
            raise self._unknown()
        return []

    # identity

    def _ident(self, value: str, op: str) -> list[str]:
        if op == "=?":
            return []
        if op:
            raise self._unknown()
        return [value]

    def _cgsn(self, op: str, args: str) -> list[str]:
        return self._ident(self.identity.imei, op)

    def _cimi(self, op: str, args: str) -> list[str]:
        self._need_sim()
        return self._ident(self.identity.imsi, op)

    def _cnum(self, op: str, args: str) -> list[str]:
        self._need_sim()
        if op:
            return []
        return [f'+CNUM: "","{self.identity.number}",145']

    def _cpin(self, op: str, args: str) -> list[str]:
        if op == "?":
            state = "READY" if self.pin_ok else ("SIM PUK" if self.pin_attempts == 0 else "SIM PIN")
            if not self.profile.cpin_final_ok:
                return ["\0no-final", f"+CPIN: {state}"]
            return [f"+CPIN: {state}"]
        if op == "=":
            if self.pin_ok:
                raise self.cme(3)
            if self.pin_attempts == 0:
                raise self.cme(12)
            if args.strip().strip('"') == self.PIN:
                self.pin_ok = True
                self.faults.pin_required = False
                return []
            self.pin_attempts -= 1
            raise self.cme(16)
        if op == "=?":
            return []
        raise self._unknown()

    def _cfun(self, op: str, args: str) -> list[str]:
        if op == "?":
            return [f"+CFUN: {1 if self.radio_on else 0}"]
        if op == "=?":
            return ["+CFUN: (0,1,4),(0,1)"]
        if op != "=":
            raise self._unknown()
        params = [part.strip() for part in args.split(",")]
        if params[0] not in ("0", "1", "4"):
            raise self.cme(4)
        if len(params) > 1 and params[1] == "1":  # reset: the modem reboots and prints its boot lines
            self.reset()
            self.host.call_at(self.host.now() + 0.01, self.boot)
            return []
        before = self.registered
        self.radio_on = params[0] == "1"
        self._registration_changed(before)
        if self.radio_on:
            self.busy_left = self.profile.busy_after_cfun
        return []

    def _cmee(self, op: str, args: str) -> list[str]:
        if op == "?":
            return [f"+CMEE: {self.verbose_errors}"]
        if op == "=?":
            return ["+CMEE: (0-2)"]
        if op == "=" and args.strip() in ("0", "1", "2"):
            self.verbose_errors = int(args)
            return []
        raise CommandFailed("ERROR")

    def _csq(self, op: str, args: str) -> list[str]:
        if op == "=?":
            return ["+CSQ: (0-31,99),(0-7,99)"]
        if op:
            raise self._unknown()
        rssi = self.identity.rssi if self.registered or self.radio_on and not self.faults.registration_lost else 99
        return [f"+CSQ: {rssi if self.radio_on else 99},99"]

    def _creg(self, op: str, args: str, name: str = "+CREG") -> list[str]:
        if op == "?":
            stat = 1 if self.registered else (2 if self.radio_on and self.pin_ok else 0)
            return [f"{name}: {self.creg_n},{stat}"]
        if op == "=?":
            return [f"{name}: (0-2)"]
        if op == "=":
            if args.strip() not in ("0", "1", "2"):
                raise self.cme(4)
            if name == "+CREG":
                self.creg_n = int(args)
            return []
        raise self._unknown()

    def _cgreg(self, op: str, args: str) -> list[str]:
        return self._creg(op, args, "+CGREG")

    def _cops(self, op: str, args: str) -> list[str]:
        if op == "?":
            return [f'+COPS: 0,0,"{self.identity.operator}",7' if self.registered else "+COPS: 0"]
        if op == "=?":
            return [f'+COPS: (2,"{self.identity.operator}","{self.identity.operator[:8]}","26201",7),,(0-4),(0-2)']
        if op == "=":
            return []
        raise self._unknown()

    def _csca(self, op: str, args: str) -> list[str]:
        if op == "?":
            self._need_sim(sms=True)
            return [f'+CSCA: "{self.identity.smsc}",{145 if self.identity.smsc.startswith("+") else 129}']
        if op == "=":
            self.identity.smsc = args.split(",")[0].strip().strip('"')
            return []
        if op == "=?":
            return []
        raise self._unknown()

    def _cscs(self, op: str, args: str) -> list[str]:
        if op == "?":
            return [f'+CSCS: "{self.charset}"']
        if op == "=?":
            return ['+CSCS: ("GSM","IRA","UCS2")']
        if op == "=" and args.strip().strip('"').upper() in ("GSM", "IRA", "UCS2"):
            self.charset = args.strip().strip('"').upper()
            return []
        raise CommandFailed("ERROR")

    def _gcap(self, op: str, args: str) -> list[str]:
        return ["+GCAP: +CGSM"]

    def _accept(self, op: str, args: str) -> list[str]:
        """Settings a modem accepts that change nothing we simulate (flow control, baud rate, CLIP, ...)."""
        if op == "?":
            raise self._unknown()
        return []

    # message service settings

    def _cmgf(self, op: str, args: str) -> list[str]:
        if op == "?":
            return [f"+CMGF: {0 if self.pdu_mode else 1}"]
        if op == "=?":
            return ["+CMGF: (0,1)"]
        if op == "=" and args.strip() in ("0", "1"):
            self.pdu_mode = args.strip() == "0"
            return []
        raise CommandFailed("ERROR")

    def _csms(self, op: str, args: str) -> list[str]:
        if op == "?":
            return [f"+CSMS: {self.csms},1,1,1"]
        if op == "=?":
            return ["+CSMS: (0,1)"]
        if op == "=" and args.strip() in ("0", "1"):
            self.csms = int(args)
            return ["+CSMS: 1,1,1"]
        raise self.cms(303)

    def _cnmi(self, op: str, args: str) -> list[str]:
        if not self.profile.cnmi_supported:
            raise self._unknown()
        if op == "?":
            return ["+CNMI: " + ",".join(str(value) for value in self.cnmi)]
        if op == "=?":
            return ["+CNMI: (0-2),(0-3),(0,2),(0-2),(0,1)"]
        if op != "=":
            raise self._unknown()
        try:
            values = [int(part) if part.strip() else 0 for part in args.split(",")]
        except ValueError:
            raise self.cms(303) from None
        values += [0] * (5 - len(values))
        mode, mt, bm, ds, bfr = values[:5]
        if mode > 3 or mt > 3 or ds not in self.profile.report_routes:
            raise self.cms(303)
        self.cnmi = (mode, mt, bm, ds, bfr)
        return []

    def _cpms(self, op: str, args: str) -> list[str]:
        names = list(self.storages)
        if op == "=?":
            listed = ",".join(f'"{name}"' for name in names)
            plain = ",".join(f'"{name}"' for name in names if name != "SR")
            return [f"+CPMS: ({listed}),({plain}),({plain})"]
        if op == "?":
            self._need_sim(sms=True)
            parts = [f'"{name}",{len(self.storages[name].slots)},{self.storages[name].capacity}'
                     for name in self.cpms]
            return ["+CPMS: " + ",".join(parts)]
        if op != "=":
            raise self._unknown()
        self._need_sim(sms=True)
        wanted = [part.strip().strip('"').upper() for part in args.split(",") if part.strip()]
        if not wanted or any(name not in self.storages for name in wanted):
            raise self.cms(302)
        for position, name in enumerate(wanted[:3]):
            self.cpms[position] = name
        parts = [f"{len(self.storages[name].slots)},{self.storages[name].capacity}" for name in self.cpms]
        return ["+CPMS: " + ",".join(parts)]

    # messages

    def _cmgs(self, op: str, args: str) -> list[str] | None:
        if op == "=?":
            return []
        if op != "=":
            raise self._unknown()
        self._need_sim(sms=True)
        if self.pdu_mode:
            try:
                length = int(args.strip())
            except ValueError:
                raise self.cms(304) from None
            if not 7 <= length <= 164:
                raise self.cms(304)
            self._prompt = {"mode": "pdu", "length": length, "data": bytearray()}
        else:
            recipient = args.split(",")[0].strip().strip('"')
            if not recipient:
                raise self.cms(305)
            self._prompt = {"mode": "text", "recipient": recipient, "data": bytearray()}
        if self.faults.urc_before_prompt:
            self.faults.urc_before_prompt -= 1
            self._urc_now()
        if self.faults.no_prompt:
            self.faults.no_prompt -= 1
            self._prompt["silent"] = True
            return None
        self._write(b"\r\n> ", self.faults.prompt_delay)
        self._busy_until = self.host.now() + self.faults.prompt_delay
        return None

    def _urc_now(self) -> None:
        """An unsolicited code that lands at an awkward moment: a new-message indicator."""
        self.emit_urc('+CIEV: "MESSAGE",1')

    def _take_prompt_input(self) -> bool:
        """Consume prompt-mode input up to Ctrl-Z or ESC; False while it is incomplete."""
        prompt = self._prompt
        if prompt is None:
            return True
        for position, byte in enumerate(self._input):
            if byte in (CTRL_Z, ESC):
                body = bytes(prompt["data"]) + bytes(self._input[:position])
                del self._input[:position + 1]
                if self.echo and not prompt.get("silent"):
                    self._write(body)
                self._prompt = None
                if byte == ESC:
                    self._finish([], "OK")
                else:
                    self._submit(prompt, body)
                return True
        # Without Ctrl-Z nothing is sent, prompt shown or not: keep reading.
        prompt["data"] += self._input
        self._input.clear()
        return False

    def _submit(self, prompt: dict, body: bytes) -> None:
        raw = body.decode("latin-1").replace("\r", "").replace("\n", "")
        try:
            if prompt["mode"] == "pdu":
                message = pdu.decode(raw.strip(), tpdu_length=prompt["length"])
                if not isinstance(message, pdu.Submit):
                    raise pdu.PduError("not an SMS-SUBMIT")
                encoded = pdu.EncodedPdu(raw.strip().upper(), prompt["length"])
            else:
                encoded = self._text_submit(prompt, raw)
                message = pdu.decode(encoded.hex)
                if not isinstance(message, pdu.Submit):
                    raise pdu.PduError("not an SMS-SUBMIT")
        except (pdu.PduError, text.TextError):
            self._finish([], self.cms(304 if prompt["mode"] == "pdu" else 305).final)
            return
        if self.faults.cms_errors:
            self._finish([], self.cms(self.faults.cms_errors.pop(0)).final, self.send_latency)
            return
        if not self.registered:
            self._finish([], self.cms(331).final, self.send_latency)
            return
        if not self.identity.smsc and (prompt["mode"] != "pdu" or raw.strip().startswith("00")):
            self._finish([], self.cms(330).final)  # no SMSC in the PDU and none stored on the SIM
            return
        reference = self.reference
        self.reference = (self.reference + 1) % 256
        self.sent.append(SentRecord(encoded.hex, encoded.tpdu_length, reference, message.recipient.number,
                                    message.text))
        _bound(self.sent)
        if self.faults.urc_before_result:
            self.faults.urc_before_result -= 1
            self.emit_urc("+CSQN: 20,99", self.send_latency / 2)
        self._finish([f"+CMGS: {reference}"], "OK", self.send_latency)
        if self.network is not None:
            network = self.network
            self.host.call_at(self.host.now() + self.send_latency,
                              lambda: network.submit(self, message, reference))

    def _text_submit(self, prompt: dict, body: str) -> pdu.EncodedPdu:
        encoding = text.choose_encoding(body)
        return pdu.encode_submit(prompt["recipient"], body, encoding, request_report=False)

    def _storage(self, position: int) -> Storage:
        return self.storages[self.cpms[position]]

    def _cmgr(self, op: str, args: str) -> list[str]:
        if op == "=?":
            return []
        if op != "=":
            raise self._unknown()
        self._need_sim(sms=True)
        try:
            index = int(args.strip())
        except ValueError:
            raise self.cms(321) from None
        storage = self._storage(0)
        item = storage.slots.get(index)
        if item is None:
            if index < 1 or index > storage.capacity:
                raise self.cms(321)
            return []  # an empty slot: just OK, as most modems answer
        lines = self._listing(None, item)
        if item.stat == 0:
            item.stat = 1
        return lines

    def _listing(self, index: int | None, item: Stored) -> list[str]:
        head = "+CMGL: " if index is not None else "+CMGR: "
        prefix = f"{index}," if index is not None else ""
        if self.pdu_mode:
            return [f"{head}{prefix}{item.stat},,{item.encoded.tpdu_length}", item.encoded.hex]
        message = pdu.decode(item.encoded.hex)
        if isinstance(message, pdu.StatusReport):
            return [f'{head}{prefix}"{STAT_NAMES[item.stat]}",6,{message.reference},"{message.recipient.number}"']
        if isinstance(message, pdu.Deliver):
            stamp = message.timestamp
            quarters = int((stamp.utcoffset() or dt.timedelta()).total_seconds() // 900)
            header = f'"{message.sender.number}",,"{stamp:%y/%m/%d,%H:%M:%S}{quarters:+03d}"'
        else:
            header = f'"{message.recipient.number}",'
        return [f'{head}{prefix}"{STAT_NAMES[item.stat]}",{header}', message.text or ""]

    def _cmgl(self, op: str, args: str) -> list[str]:
        if op == "=?":
            texts = '+CMGL: ("REC UNREAD","REC READ","STO UNSENT","STO SENT","ALL")'
            return ["+CMGL: (0-4)" if self.pdu_mode else texts]
        self._need_sim(sms=True)
        wanted_text = args.strip().strip('"').upper()
        if self.pdu_mode:
            if not wanted_text:
                wanted = 0
            elif wanted_text.isdigit() and int(wanted_text) in STAT_NAMES:
                wanted = int(wanted_text)
            else:
                raise self.cms(304)
        else:
            if (wanted_text or "REC UNREAD") not in STAT_CODES:
                raise self.cms(305)
            wanted = STAT_CODES[wanted_text or "REC UNREAD"]
        lines: list[str] = []
        for index, item in sorted(self._storage(0).slots.items()):
            if wanted in (4, item.stat):
                lines += self._listing(index, item)
                if item.stat == 0:
                    item.stat = 1
        return lines

    def _cmgd(self, op: str, args: str) -> list[str]:
        if op == "=?":
            return ["+CMGD: (1-30),(0-4)"]
        if op != "=":
            raise self._unknown()
        self._need_sim(sms=True)
        parts = [part.strip() for part in args.split(",")]
        try:
            index = int(parts[0]) if parts[0] else 0
            flag = int(parts[1]) if len(parts) > 1 and parts[1] else 0
        except ValueError:
            raise self.cms(321) from None
        storage = self._storage(0)
        if flag == 0:
            if not 1 <= index <= storage.capacity:
                raise self.cms(321)
            storage.slots.pop(index, None)
        else:
            keep = {1: (0, 2, 3), 2: (0, 2), 3: (0,), 4: ()}.get(flag)
            if keep is None:
                raise self.cms(321)
            storage.slots = {key: item for key, item in storage.slots.items() if item.stat in keep}
        if self.network is not None:
            self.network.memory_available(self)
        return []

    def _cnma(self, op: str, args: str) -> list[str]:
        if op == "=?":
            return ["+CNMA: (0-2)"]
        if not self._pending_ack:
            raise self.cms(340)
        self._pending_ack.pop(0)
        return []

    def _cusd(self, op: str, args: str) -> list[str]:
        if op == "?":
            return ["+CUSD: 1"]
        if op == "=?":
            return ["+CUSD: (0,1,2)"]
        if op != "=":
            raise self._unknown()
        params = [part.strip() for part in _split_quoted(args)]
        if params[0] == "2" or len(params) < 2:
            return []
        self._need_sim()
        if not self.registered:
            raise self.cme(30)
        request = params[1]
        if self.profile.ussd_packed:
            try:
                request = pdu.decode_gsm7_packed(bytes.fromhex(request))
            except ValueError:
                raise self.cme(4) from None
        status, reply = self.network.ussd(self, request) if self.network else (4, "")
        self.host.call_at(self.host.now() + self.ussd_delay, lambda: self._ussd_reply(status, reply))
        return []

    def _ussd_reply(self, status: int, reply: str) -> None:
        if not reply:
            self.emit_urc(f"+CUSD: {status}")
            return
        if text.is_gsm7(reply):
            encoded = pdu.encode_gsm7_packed(reply).hex().upper() if self.profile.ussd_packed else reply
            self.emit_urc(f'+CUSD: {status},"{encoded}",15')
        else:
            self.emit_urc(f'+CUSD: {status},"{reply.encode("utf-16-be").hex().upper()}",72')

    # --- from the network ------------------------------------------------------------------------------

    def deliver_sms(self, encoded: pdu.EncodedPdu, message_class: int | None = None) -> bool:
        """A message arrives from the network. False when it cannot be taken now (memory full)."""
        _mode, mt, _bm, _ds, _bfr = self.cnmi
        if not self.pin_ok or not self.radio_on:
            return False
        direct = mt == 2 and message_class != 2 or mt == 3 and message_class == 3
        if direct:
            self._direct("+CMT", encoded)
            return True
        storage = self._storage(2)
        index = storage.add(Stored(0, encoded))
        if index is None:
            return False
        if mt in (1, 2, 3):
            self.emit_urc(f'+CMTI: "{storage.name}",{index}')
        return True

    def deliver_report(self, encoded: pdu.EncodedPdu) -> bool:
        """A status report arrives from the service centre."""
        ds = self.cnmi[3]
        if ds == self.faults.reports_lost_route:
            if self.faults.reports_lost_stored:
                storage = self.storages.get("SR") or self._storage(2)
                return storage.add(Stored(0, encoded)) is not None  # stored, never announced
            return True  # taken from the network, then neither stored nor announced
        if ds == 1:
            self._direct("+CDS", encoded)
            return True
        if ds == 2:
            storage = self.storages.get("SR") or self._storage(2)
            index = storage.add(Stored(0, encoded))
            if index is None:
                return False
            self.emit_urc(f'+CDSI: "{storage.name}",{index}')
        return True

    def _direct(self, kind: str, encoded: pdu.EncodedPdu) -> None:
        if self.pdu_mode:
            header = f"{kind}: ,{encoded.tpdu_length}" if kind == "+CMT" else f"{kind}: {encoded.tpdu_length}"
            self._write(f"\r\n{header}\r\n{encoded.hex}\r\n".encode())
        else:
            message = pdu.decode(encoded.hex)
            if isinstance(message, pdu.Deliver):
                self._write(f'\r\n+CMT: "{message.sender.number}",,"{message.timestamp:%y/%m/%d,%H:%M:%S}+00"'
                            f'\r\n{message.text or ""}\r\n'.encode())
            else:
                self._write(f'\r\n+CDS: 6,{message.reference},"{message.recipient.number}"\r\n'.encode())
        if self.csms == 1:
            entry = (kind, encoded)
            self._pending_ack.append(entry)
            self.host.call_at(self.host.now() + self.ack_timeout, lambda: self._ack_missed(entry))

    def _ack_missed(self, entry: tuple[str, pdu.EncodedPdu]) -> None:
        """TS 27.005 3.4.1: with no +CNMA in time, the ME stops routing (mt=ds=0); the network retries later."""
        if not any(pending is entry for pending in self._pending_ack):
            return
        kind, encoded = entry
        self._pending_ack.clear()
        mode, _mt, bm, _ds, bfr = self.cnmi
        self.cnmi = (mode, 0, bm, 0, bfr)
        if self.network is not None:
            self.network.redeliver_later(self, kind, encoded)

    # --- faults ------------------------------------------------------------------------------------------

    def inject_garbage(self, count: int = 32) -> None:
        self._write(bytes(self.random.randrange(256) for _ in range(count)))


def _split_quoted(args: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in args:
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _basic_handler(name: str):
    def handler(modem: SimModem, op: str, args: str) -> list[str]:
        return modem._basic(name, op)
    return handler


def _identity_handler(attribute: str):
    def handler(modem: SimModem, op: str, args: str) -> list[str]:
        return modem._ident(getattr(modem.profile, attribute), op)
    return handler


_HANDLERS: dict[str, Callable[[SimModem, str, str], list[str] | None]] = {
    "+CGMI": _identity_handler("manufacturer"), "+GMI": _identity_handler("manufacturer"),
    "+CGMM": _identity_handler("model"), "+GMM": _identity_handler("model"),
    "+CGMR": _identity_handler("revision"), "+GMR": _identity_handler("revision"),
    "+CGSN": SimModem._cgsn, "+GSN": SimModem._cgsn, "+CIMI": SimModem._cimi, "+CNUM": SimModem._cnum,
    "+CPIN": SimModem._cpin, "+CFUN": SimModem._cfun, "+CMEE": SimModem._cmee, "+CSQ": SimModem._csq,
    "+CREG": SimModem._creg, "+CGREG": SimModem._cgreg, "+COPS": SimModem._cops, "+CSCA": SimModem._csca,
    "+CSCS": SimModem._cscs, "+GCAP": SimModem._gcap, "+CMGF": SimModem._cmgf, "+CSMS": SimModem._csms,
    "+CNMI": SimModem._cnmi, "+CPMS": SimModem._cpms, "+CMGS": SimModem._cmgs, "+CMGR": SimModem._cmgr,
    "+CMGL": SimModem._cmgl, "+CMGD": SimModem._cmgd, "+CNMA": SimModem._cnma, "+CUSD": SimModem._cusd,
    "+IFC": SimModem._accept, "+IPR": SimModem._accept, "+ICF": SimModem._accept, "+CLIP": SimModem._accept,
    "+CRC": SimModem._accept, "+CVHU": SimModem._accept,
}
for _letter in ("E0", "E1", "E", "V", "V0", "V1", "Q", "Q0", "Z", "Z0", "I", "I0", "X", "X4", "&F", "&F0",
                "&C", "&C1", "&D", "&D0", "&D2", "&W", "&W0", "S0", "S7"):
    _HANDLERS.setdefault(_letter, _basic_handler(_letter))
