"""AT protocol grammar (V.250, TS 27.007, TS 27.005): what a line is, and what it says. Pure functions.

A line from a modem is one of three things:
- a *final result* that ends the reply to the command in flight (`OK`, `ERROR`, `+CME ERROR: ...`, ...);
- an *unsolicited result code* (URC): news the modem volunteers at any moment, even in the middle of a reply;
- an *information line* that belongs to the reply of the command in flight.

A few prefixes are both URCs and replies (`+CREG:` is a URC after `AT+CREG=1` and the answer to `AT+CREG?`).
They belong to the reply only while the command in flight is the one that asks for them
(`expected_prefix(command)`); otherwise they are URCs. Nothing here looks at timing.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from modemgw.errors import CmeError, CmsError, CommandError, ModemError, ResponseError

# Anchored as a whole: every alternative must match the whole line (the python-gsmmodem regex did not).
_FINAL = re.compile(r"(?:OK|ERROR|NO CARRIER|BUSY|NO ANSWER|NO DIALTONE|COMMAND NOT SUPPORT"
                    r"|\+CME ERROR:.*|\+CMS ERROR:.*)")

# Prefixes that only ever arrive unsolicited.
URC_PREFIXES = (
    "+CMTI:", "+CMT:", "+CDS:", "+CDSI:", "+CBM:", "+CBMI:", "+CUSD:", "RING", "+CRING:", "+CLIP:", "+CCWA:",
    "^RSSI:", "^HCSQ:", "^MODE:", "^BOOT:", "^SRVST:", "^SIMST:", "^STIN:", "^DSFLOWRPT:", "^SYSSTART",
    "^CEND:", "^ORIG:", "^CONF:", "^CONN:", "+QIND:", "+QUSIM:", "+CTZV:", "+CTZE:", "+CTZU:", "*PSUTTZ:",
    "DST:", "+CSQN:", "+CIEV:", "+STIN:", "+PBREADY", "RDY", "SMS Ready", "Call Ready",
)
# Prefixes that are URCs unless the command in flight asked for them.
SHARED_PREFIXES = ("+CREG:", "+CGREG:", "+CEREG:", "+CPIN:", "+CFUN:")

# URCs whose header line is followed by one more line (the PDU, in PDU mode).
TWO_LINE_URCS = ("+CMT:", "+CDS:", "+CBM:")

PROMPT = "> "

log = logging.getLogger("modemgw.at")

# A modem's numbers are ASCII digits only: str.isdigit() and int() also take "²", "٣", "５", "1_0" and " 1 ".
_DIGITS = re.compile(r"[0-9]+")


def is_final(line: str) -> bool:
    """True when `line` ends a reply (OK or any final error)."""
    return _FINAL.fullmatch(line) is not None


def final_error(line: str, command: str = "") -> ModemError | None:
    """None for `OK`; otherwise the error value the final result stands for."""
    if line == "OK":
        return None
    if line.startswith("+CMS ERROR:"):
        return CmsError(line[len("+CMS ERROR:"):])
    if line.startswith("+CME ERROR:"):
        return CmeError(line[len("+CME ERROR:"):])
    return CommandError(line, command)


def expected_prefix(command: str) -> str | None:
    """The information-line prefix a command's reply carries: `AT+CREG?` -> `+CREG:`, `AT^SYSINFO` -> `^SYSINFO:`."""
    match = re.match(r"(?i)AT([+^$%*#][A-Z0-9]+)", command.strip())
    return match.group(1).upper() + ":" if match else None


def is_urc(line: str, expecting: str | None = None) -> bool:
    """True when `line` is unsolicited, given the prefix (if any) that the command in flight expects.

    `+CUSD:` is always unsolicited: the network's answer comes after (or, on some modems, before) the OK of
    `AT+CUSD=1,...`, and is never part of its reply.
    """
    if line.startswith("+CUSD:"):
        return True
    if expecting and line.startswith(expecting):
        return False
    return line.startswith(URC_PREFIXES) or line.startswith(SHARED_PREFIXES)


def is_two_line_urc(line: str) -> bool:
    return line.startswith(TWO_LINE_URCS)


# --- parameters -------------------------------------------------------------------------------------------------

def split_params(text: str) -> list[str]:
    """Split `a,"b,c",d` into ['a', 'b,c', 'd']: quotes removed, commas inside quotes kept."""
    params: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            params.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    params.append("".join(current).strip())
    return params


def parse_error(message: str, line: str) -> ResponseError:
    """The error for modem text that does not parse: `message` names the line, and `line` is kept on the error."""
    error = ResponseError(message)
    error.line = line
    return error


def _after(line: str, prefix: str) -> str:
    if not line.startswith(prefix):
        raise parse_error(f"expected {prefix} but the modem said {line!r}", line)
    return line[len(prefix):].strip()


def is_number(value: str) -> bool:
    """True for a modem's decimal number: ASCII digits only (no sign, no spaces, no "_", no "²" or "٣")."""
    return _DIGITS.fullmatch(value) is not None


def parse_int(value: str, what: str, line: str) -> int:
    """`value` (a field of `line`) as a number. Raises ResponseError naming `what` and the line."""
    if not is_number(value) or len(value) > 18:  # int() also refuses more than 4300 digits, with ValueError
        raise parse_error(f"{what} is not a number in {line!r}", line)
    return int(value)


def parse_cmgs(line: str) -> int:
    """`+CMGS: <mr>[,<scts>]` -> TP-MR."""
    return parse_int(split_params(_after(line, "+CMGS:"))[0], "message reference", line)


@dataclass(frozen=True)
class Signal:
    rssi: int            # 0-31, 99 unknown
    ber: int             # 0-7, 99 unknown
    dbm: int | None      # -113..-51, None when unknown

    @property
    def bars(self) -> int:
        """0-5 bars, as phones show them: 5 from -65 dBm, one less per 10 dB, 0 below -105 dBm."""
        if self.dbm is None:
            return 0
        return sum(1 for threshold in (-105, -95, -85, -75, -65) if self.dbm >= threshold)


def csq_to_dbm(rssi: int) -> int | None:
    """TS 27.007 8.5: 0 is -113 dBm or less, 31 is -51 dBm or more, 99 is unknown."""
    if rssi == 99 or not 0 <= rssi <= 31:
        return None
    return -113 + 2 * rssi


def parse_csq(line: str) -> Signal:
    params = split_params(_after(line, "+CSQ:"))
    rssi = parse_int(params[0], "rssi", line)
    ber = parse_int(params[1], "ber", line) if len(params) > 1 and params[1] else 99
    return Signal(rssi, ber, csq_to_dbm(rssi))


REGISTRATION_STATES = {0: "not registered", 1: "registered (home)", 2: "searching", 3: "denied", 4: "unknown",
                       5: "registered (roaming)", 6: "registered (home, SMS only)",
                       7: "registered (roaming, SMS only)"}


@dataclass(frozen=True)
class Registration:
    stat: int
    lac: str | None = None
    cell: str | None = None

    @property
    def registered(self) -> bool:
        return self.stat in (1, 5, 6, 7)

    @property
    def state(self) -> str:
        return REGISTRATION_STATES.get(self.stat, f"state {self.stat}")


def parse_creg(line: str, reply: bool = True) -> Registration:
    """`+CREG: <n>,<stat>[,<lac>,<ci>]` (the reply to `AT+CREG?`) or, with `reply=False`, the URC
    `+CREG: <stat>[,<lac>,<ci>]`; also +CGREG and +CEREG."""
    prefix = line.split(":", 1)[0] + ":"
    params = split_params(_after(line, prefix))
    if reply:
        params = params[1:]
    if not params:
        raise parse_error(f"no registration state in {line!r}", line)
    stat = parse_int(params[0], "registration state", line)
    return Registration(stat, params[1] if len(params) > 1 else None, params[2] if len(params) > 2 else None)


def parse_cops(line: str) -> str | None:
    """`+COPS: <mode>[,<format>,<oper>[,<AcT>]]` -> the operator name, None when not registered."""
    params = split_params(_after(line, "+COPS:"))
    return params[2] if len(params) > 2 and params[2] else None


def parse_csca(line: str) -> str | None:
    params = split_params(_after(line, "+CSCA:"))
    return params[0] or None


@dataclass(frozen=True)
class StoredPdu:
    """One `+CMGL`/`+CMGR` entry in PDU mode."""

    index: int | None
    stat: int
    length: int
    pdu: str


def parse_cmgl(lines: list[str]) -> list[StoredPdu]:
    """`+CMGL: <index>,<stat>,[<alpha>],<length>` each followed by a PDU line.

    An entry whose header does not parse is left out with a warning naming its line (it stays in the modem's
    storage), so that one garbled entry does not hide the others. Raises nothing."""
    entries = []
    position = 0
    while position < len(lines):
        line = lines[position]
        position += 1
        if not line.startswith("+CMGL:"):
            continue
        pdu_line = ""  # stays empty when a header follows at once: this entry came without its PDU
        if position < len(lines) and not lines[position].startswith("+CMGL:"):
            pdu_line = lines[position]
            position += 1
        try:
            params = split_params(_after(line, "+CMGL:"))
            if len(params) < 3:
                raise parse_error(f"+CMGL entry without index, status and length: {line!r}", line)
            entries.append(StoredPdu(parse_int(params[0], "index", line), parse_int(params[1], "status", line),
                                     parse_int(params[-1], "length", line), pdu_line.strip()))
        except ResponseError as error:
            log.warning("stored message left out of the list: %s", error)
    return entries


def parse_cmgr(lines: list[str], index: int) -> StoredPdu | None:
    """`+CMGR: <stat>,[<alpha>],<length>` followed by the PDU; None for an empty slot. Raises ResponseError."""
    for position, line in enumerate(lines):
        if line.startswith("+CMGR:"):
            params = split_params(_after(line, "+CMGR:"))
            if len(params) < 2:
                raise parse_error(f"+CMGR without status and length: {line!r}", line)
            pdu_line = lines[position + 1] if position + 1 < len(lines) else ""
            return StoredPdu(index, parse_int(params[0], "status", line), parse_int(params[-1], "length", line),
                             pdu_line.strip())
    return None


# --- unsolicited result codes -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Urc:
    """An unsolicited result code: `name` is its prefix without the colon, `params` its fields."""

    name: str
    params: tuple[str, ...]
    line: str
    pdu: str | None = None  # the second line of +CMT / +CDS / +CBM


def parse_urc(line: str, pdu: str | None = None) -> Urc:
    if ":" in line:
        name, rest = line.split(":", 1)
        return Urc(name.strip(), tuple(split_params(rest.strip())), line, pdu)
    return Urc(line.strip(), (), line, pdu)


def urc_storage_index(urc: Urc) -> tuple[str, int]:
    """`+CMTI: "SM",3` / `+CDSI: "SR",1` -> ('SM', 3)."""
    if len(urc.params) < 2:
        raise parse_error(f"{urc.name} without storage and index: {urc.line!r}", urc.line)
    return urc.params[0], parse_int(urc.params[1], "index", urc.line)


def urc_pdu_length(urc: Urc) -> int:
    """`+CMT: [<alpha>],<length>` / `+CDS: <length>` -> TPDU length. Raises ResponseError."""
    if not urc.params:
        raise parse_error(f"{urc.name} without a length: {urc.line!r}", urc.line)
    return parse_int(urc.params[-1], "length", urc.line)


def quote(text: str) -> str:
    """An AT string parameter: quotes and backslashes cannot be sent inside one, so they are refused."""
    if '"' in text or "\r" in text or "\n" in text:
        raise ValueError(f"{text!r} cannot be sent as an AT string parameter")
    return f'"{text}"'


# Commands whose parameters are secrets (PIN, PUK, facility passwords): never written to a log or a history.
SECRET_COMMANDS = ("+CPIN", "+CPIN2", "+CPWD", "+CLCK", "^CPIN", "+CPINR")


def normalize_command(command: str) -> str:
    """`command` as a modem reads it: upper case, spaces outside quotes dropped (V.250 5.2.1: `AT+CM GS=1` is
    `AT+CMGS=1`), quoted strings kept as written."""
    out: list[str] = []
    quoted = False
    for char in command:
        if char == '"':
            quoted = not quoted
        if quoted or char == '"':
            out.append(char)
        elif char not in " \t":
            out.append(char.upper())
    return "".join(out)


def redact(command: str) -> str:
    """`command` fit for a log, a history or the audit log: from the first parameter of a secret-bearing command
    on, replaced by `***`, wherever it sits in the line (`AT+CSQ;+CPIN=1234`, `ATE0+CPIN=1234`), and the
    supplementary-service codes that change a PIN (`ATD**04*old*new*new#`)."""
    normal = normalize_command(command)
    cuts = []
    for name in SECRET_COMMANDS:
        start = normal.find(name + "=")
        while start >= 0 and normal[start + len(name) + 1:start + len(name) + 2] == "?":  # a test command
            start = normal.find(name + "=", start + 1)
        if start >= 0:
            cuts.append(start + len(name) + 1)
    if normal.startswith("ATD") and ("**04" in normal or "**05" in normal):
        cuts.append(normal.index("**0") + 4)
    return normal[:min(cuts)] + "***" if cuts else command

