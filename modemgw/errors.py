"""Modem errors as values with meaning, and the one table that says which codes are temporary.

`temporary` answers "may the same message succeed if tried again later (or on another modem)?";
`kind` answers "what failed?", and decides what the pool does (docs/design.md, "Error classes"):
- `message`: this message was refused (bad number, barred, congestion, the network's catch-all 500): the message
  fails or retries, spending one of its attempts; the modem is fine and goes on with the next message.
- `network`: the SIM cannot reach the SMS service now (no service, network timeout, out of order, no SMSC):
  the message waits without spending an attempt (preferably for another modem); the modem checks its
  registration and waits for the network, and is never reset for it.
- `modem`: the modem or its port misbehaves (timeouts, no prompt, garbage, ME or SIM failure): the message is
  retried elsewhere without spending an attempt (unless its PDU may have left), and the modem heals in stages.
`modem_fault` (kind is not `message`) is kept for callers that only ask "is it the modem's side?".
"""

from __future__ import annotations


class ModemError(Exception):
    """Anything a modem or its port did wrong. Subclasses carry the details."""

    temporary = True
    kind = "modem"
    after_payload = False  # set by the link: the error came after a prompt command's payload was written
    reply: object = None   # set by the link: the Reply whose final result this error stands for

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


    @property
    def modem_fault(self) -> bool:
        return self.kind != "message"


class ModemTimeout(ModemError):
    """No final result in time; the link resynchronises before its next command."""


class PortLost(ModemError):
    """The serial port went away (unplugged, or the driver reset): every command in flight fails with this."""


class PromptTimeout(ModemTimeout):
    """`AT+CMGS` gave no `> ` prompt in time; the link sent ESC and resynchronised."""


class WrongModem(ModemError):
    """The port holds another modem (or another SIM) than the one a worker is bound to."""


class ResponseError(ModemError):
    """A reply that does not parse as the command's documented answer."""

    line: str | None = None  # the modem's line that did not parse


# code: (reason, temporary, modem_fault). TS 27.005 3.2.5 (300-511), TS 24.011 RP-cause (1-127) and
# TS 23.040 TP-FCS (128-255) as modems report them in +CMS ERROR.
CMS_ERRORS: dict[int, tuple[str, bool, bool]] = {
    1: ("unassigned (unallocated) number", False, False),
    8: ("operator determined barring", False, False),
    10: ("call barred", False, False),
    21: ("short message transfer rejected", False, False),
    27: ("destination out of service", True, False),
    28: ("unidentified subscriber", False, False),
    29: ("facility rejected", False, False),
    30: ("unknown subscriber", False, False),
    38: ("network out of order", True, True),
    41: ("temporary failure", True, False),
    42: ("congestion", True, False),
    47: ("resources unavailable, unspecified", True, True),
    50: ("requested facility not subscribed", False, True),
    69: ("requested facility not implemented", False, True),
    81: ("invalid short message transfer reference value", True, False),
    95: ("invalid message, unspecified", False, False),
    96: ("invalid mandatory information", False, False),
    97: ("message type non-existent or not implemented", False, False),
    98: ("message not compatible with short message protocol state", True, False),
    99: ("information element non-existent or not implemented", False, False),
    111: ("protocol error, unspecified", True, False),
    127: ("interworking, unspecified", True, False),
    128: ("telematic interworking not supported", False, False),
    129: ("short message type 0 not supported", False, False),
    130: ("cannot replace short message", False, False),
    143: ("unspecified TP-PID error", False, False),
    144: ("data coding scheme (alphabet) not supported", False, False),
    145: ("message class not supported", False, False),
    159: ("unspecified TP-DCS error", False, False),
    160: ("command cannot be actioned", False, False),
    161: ("command unsupported", False, False),
    175: ("unspecified TP-Command error", False, False),
    176: ("TPDU not supported", False, False),
    192: ("SC busy", True, False),
    193: ("no SC subscription", False, True),
    194: ("SC system failure", True, False),
    195: ("invalid SME address", False, False),
    196: ("destination SME barred", False, False),
    197: ("SM rejected, duplicate SM", False, False),
    198: ("TP-VPF not supported", False, False),
    199: ("TP-VP not supported", False, False),
    208: ("SIM SMS storage full", True, True),
    209: ("no SMS storage capability in SIM", False, True),
    210: ("error in MS", True, True),
    211: ("memory capacity exceeded", True, True),
    212: ("SIM application toolkit busy", True, True),
    213: ("SIM data download error", True, True),
    255: ("unspecified error cause", True, False),
    300: ("ME failure", True, True),
    301: ("SMS service of ME reserved", True, True),
    302: ("operation not allowed", True, True),
    303: ("operation not supported", False, True),
    304: ("invalid PDU mode parameter", False, False),
    305: ("invalid text mode parameter", False, False),
    310: ("SIM not inserted", True, True),
    311: ("SIM PIN required", True, True),
    312: ("PH-SIM PIN required", True, True),
    313: ("SIM failure", True, True),
    314: ("SIM busy", True, True),
    315: ("SIM wrong", True, True),
    316: ("SIM PUK required", True, True),
    317: ("SIM PIN2 required", True, True),
    318: ("SIM PUK2 required", True, True),
    320: ("memory failure", True, True),
    321: ("invalid memory index", False, False),
    322: ("memory full", True, True),
    330: ("SMSC address unknown", True, True),
    331: ("no network service", True, True),
    332: ("network timeout", True, True),
    340: ("no +CNMA acknowledgement expected", False, False),
    500: ("unknown error", True, False),  # many networks answer 500 to refuse one message
}

# TS 27.007 9.2: +CME ERROR codes.
CME_ERRORS: dict[int, tuple[str, bool, bool]] = {
    0: ("phone failure", True, True),
    1: ("no connection to phone", True, True),
    3: ("operation not allowed", True, True),
    4: ("operation not supported", False, True),
    5: ("PH-SIM PIN required", True, True),
    10: ("SIM not inserted", True, True),
    11: ("SIM PIN required", True, True),
    12: ("SIM PUK required", True, True),
    13: ("SIM failure", True, True),
    14: ("SIM busy", True, True),
    15: ("SIM wrong", True, True),
    16: ("incorrect password", False, True),
    17: ("SIM PIN2 required", True, True),
    18: ("SIM PUK2 required", True, True),
    20: ("memory full", True, True),
    21: ("invalid index", False, False),
    22: ("not found", False, False),
    23: ("memory failure", True, True),
    24: ("text string too long", False, False),
    25: ("invalid characters in text string", False, False),
    26: ("dial string too long", False, False),
    27: ("invalid characters in dial string", False, False),
    30: ("no network service", True, True),
    31: ("network timeout", True, True),
    32: ("network not allowed - emergency calls only", True, True),
    100: ("unknown", True, True),
    515: ("please wait, initialisation or command processing in progress", True, True),
}

# The network's side (kind "network"): the SIM cannot reach the SMS service now. Waiting costs the message
# nothing and resetting the modem would not help (docs/design.md, "Error classes").
NETWORK_CMS = frozenset({
    38,   # RP: network out of order
    47,   # RP: resources unavailable
    50,   # RP: requested facility not subscribed (the SIM has no SMS service)
    69,   # RP: requested facility not implemented
    193,  # TP-FCS: no SC subscription
    330,  # SMSC address unknown (none stored on the SIM)
    331,  # no network service
    332,  # network timeout
})
NETWORK_CME = frozenset({30, 31, 32})  # no network service, network timeout, emergency calls only


def _lookup(table: dict[int, tuple[str, bool, bool]], detail: str) -> tuple[int | None, str, bool, bool]:
    """Code, reason, temporary, modem_fault for a numeric or verbose error detail."""
    detail = detail.strip()
    # ASCII digits only: str.isdigit() also takes "²" and "٣", which int() then refuses or reads as a number
    if detail.isascii() and detail.isdigit() and len(detail) <= 9:
        code = int(detail)
        if code in table:
            return (code, *table[code])
        return code, f"error {code}", True, True  # vendor codes (512+): assume the modem, and try again
    folded = detail.casefold()
    for code, (reason, temporary, modem_fault) in table.items():
        if reason.casefold() == folded:
            return code, reason, temporary, modem_fault
    return None, detail or "unknown error", True, True


class CmsError(ModemError):
    """`+CMS ERROR: <code|text>`: a message-service failure (mostly AT+CMGS)."""

    def __init__(self, detail: str | int):
        self.code, self.reason, self.temporary, modem_side = _lookup(CMS_ERRORS, str(detail))
        if self.code in NETWORK_CMS:
            self.kind = "network"
        elif self.code in CMS_ERRORS:
            self.kind = "modem" if modem_side else "message"
        else:  # a vendor's or an unlisted code: most often one message refused; resetting the modem would not help
            self.kind = "message"
        label = f"+CMS ERROR {self.code}" if self.code is not None else "+CMS ERROR"
        super().__init__(f"{label}: {self.reason}")


class CmeError(ModemError):
    """`+CME ERROR: <code|text>`: an equipment failure (SIM, network, memory, ...)."""

    def __init__(self, detail: str | int):
        self.code, self.reason, self.temporary, modem_side = _lookup(CME_ERRORS, str(detail))
        self.kind = "network" if self.code in NETWORK_CME else "modem" if modem_side else "message"
        label = f"+CME ERROR {self.code}" if self.code is not None else "+CME ERROR"
        super().__init__(f"{label}: {self.reason}")


class CommandError(ModemError):
    """A plain final error (`ERROR`, `COMMAND NOT SUPPORT`, `NO CARRIER`, ...) to a command."""

    def __init__(self, final: str, command: str = ""):
        self.final = final
        self.command = command
        super().__init__(f"{command or 'command'} answered {final}")
