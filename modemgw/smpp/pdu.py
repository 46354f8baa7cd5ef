"""SMPP 3.4 PDUs (the specification's section 4): the header, the bodies the server reads (binds, submit_sm,
query_sm, cancel_sm, deliver_sm_resp) and writes (their responses, deliver_sm, generic_nack, enquire_link), TLVs,
and the texts and times they carry.

Pure functions over bytes. Every length is checked before anything is read: a command_length outside 16 to
MAX_PDU octets is refused before its body is read (`read_header`), a C-octet string longer than its field's
maximum, a short_message longer than its sm_length or a TLV that runs past the body raise `PduError` with the
status the answer carries (ESME_RINVCMDLEN for a truncated body). Our own codec rather than smpplib's classes:
those keep state in class attributes, write a 0 integer as an empty field, and are made for the client side.
"""

from __future__ import annotations

import datetime as dt
import struct
from dataclasses import dataclass, field

from modemgw import text as textmod

HEADER = struct.Struct(">IIII")  # command_length, command_id, command_status, sequence_number
HEADER_SIZE = HEADER.size
MAX_PDU = 64 * 1024  # the longest PDU we read: a 64 KB message_payload is longer than any SMS (255 × 140 octets)
MAX_SEQUENCE = 0x7FFFFFFF

# command_id (5.1.2.1)
GENERIC_NACK = 0x80000000
BIND_RECEIVER = 0x00000001
BIND_TRANSMITTER = 0x00000002
QUERY_SM = 0x00000003
SUBMIT_SM = 0x00000004
DELIVER_SM = 0x00000005
UNBIND = 0x00000006
REPLACE_SM = 0x00000007
CANCEL_SM = 0x00000008
BIND_TRANSCEIVER = 0x00000009
OUTBIND = 0x0000000B
ENQUIRE_LINK = 0x00000015
SUBMIT_MULTI = 0x00000021
ALERT_NOTIFICATION = 0x00000102
DATA_SM = 0x00000103
RESPONSE = 0x80000000  # a response's id is its request's with this bit set
BINDS = {BIND_RECEIVER: "receiver", BIND_TRANSMITTER: "transmitter", BIND_TRANSCEIVER: "transceiver"}
KNOWN_COMMANDS = {BIND_RECEIVER, BIND_TRANSMITTER, QUERY_SM, SUBMIT_SM, DELIVER_SM, UNBIND, REPLACE_SM, CANCEL_SM,
                  BIND_TRANSCEIVER, OUTBIND, ENQUIRE_LINK, SUBMIT_MULTI, ALERT_NOTIFICATION, DATA_SM}

# command_status (5.1.3)
ESME_ROK = 0x00
ESME_RINVMSGLEN = 0x01
ESME_RINVCMDLEN = 0x02
ESME_RINVCMDID = 0x03
ESME_RINVBNDSTS = 0x04
ESME_RALYBND = 0x05
ESME_RINVPRTFLG = 0x06
ESME_RINVREGDLVFLG = 0x07
ESME_RSYSERR = 0x08
ESME_RINVSRCADR = 0x0A
ESME_RINVDSTADR = 0x0B
ESME_RINVMSGID = 0x0C
ESME_RBINDFAIL = 0x0D
ESME_RINVPASWD = 0x0E
ESME_RINVSYSID = 0x0F
ESME_RCANCELFAIL = 0x11
ESME_RMSGQFUL = 0x14
ESME_RINVSERTYP = 0x15
ESME_RINVESMCLASS = 0x43
ESME_RSUBMITFAIL = 0x45
ESME_RINVDSTTON = 0x50
ESME_RINVSYSTYP = 0x53
ESME_RTHROTTLED = 0x58
ESME_RINVSCHED = 0x61
ESME_RINVEXPIRY = 0x62
ESME_RX_T_APPN = 0x64
ESME_RQUERYFAIL = 0x67
ESME_RINVOPTPARSTREAM = 0xC0
ESME_RINVPARLEN = 0xC2
ESME_RINVOPTPARAMVAL = 0xC4
ESME_RUNKNOWNERR = 0xFF

# TLV tags (5.3.2)
TAG_RECEIPTED_MESSAGE_ID = 0x001E
TAG_USER_MESSAGE_REFERENCE = 0x0204
TAG_SAR_MSG_REF_NUM = 0x020C
TAG_SAR_TOTAL_SEGMENTS = 0x020E
TAG_SAR_SEGMENT_SEQNUM = 0x020F
TAG_SC_INTERFACE_VERSION = 0x0210
TAG_NETWORK_ERROR_CODE = 0x0423
TAG_MESSAGE_PAYLOAD = 0x0424
TAG_MESSAGE_STATE = 0x0427

# message_state (5.2.28)
ENROUTE, DELIVERED, EXPIRED, DELETED, UNDELIVERABLE, ACCEPTED, UNKNOWN, REJECTED = 1, 2, 3, 4, 5, 6, 7, 8

# addresses (5.2.5, 5.2.6)
TON_UNKNOWN, TON_INTERNATIONAL, TON_NATIONAL, TON_ALPHANUMERIC = 0, 1, 2, 5
NPI_UNKNOWN, NPI_ISDN = 0, 1

# esm_class (5.2.12)
ESM_UDHI = 0x40
ESM_RECEIPT = 0x04

INTERFACE_VERSION = 0x34


class PduError(ValueError):
    """A PDU that cannot be read: `status` is the command_status to answer with."""

    def __init__(self, detail: str, status: int = ESME_RINVCMDLEN):
        super().__init__(detail)
        self.status = status


@dataclass(frozen=True)
class Header:
    length: int
    command_id: int
    status: int
    sequence: int


def read_header(data: bytes) -> Header:
    """The 16-octet header. Raises PduError (ESME_RINVCMDLEN) for a command_length outside 16..MAX_PDU: the
    framing is lost then, and the session must end after its generic_nack."""
    if len(data) != HEADER_SIZE:
        raise PduError(f"a PDU header is {HEADER_SIZE} octets, got {len(data)}")
    length, command_id, status, sequence = HEADER.unpack(data)
    if not HEADER_SIZE <= length <= MAX_PDU:
        raise PduError(f"command_length {length} is outside {HEADER_SIZE} to {MAX_PDU} octets")
    return Header(length, command_id, status, sequence)


def encode(command_id: int, sequence: int, body: bytes = b"", status: int = ESME_ROK) -> bytes:
    """One whole PDU: the header (its length computed) and `body`."""
    return HEADER.pack(HEADER_SIZE + len(body), command_id, status, sequence) + body


class _Reader:
    """Reads the fields of one body in order; every read checks the bytes left first."""

    def __init__(self, data: bytes):
        self.data = data
        self.position = 0

    def left(self) -> int:
        return len(self.data) - self.position

    def int8(self, name: str) -> int:
        if self.left() < 1:
            raise PduError(f"the body ends before {name}")
        value = self.data[self.position]
        self.position += 1
        return value

    def octets(self, count: int, name: str) -> bytes:
        if self.left() < count:
            raise PduError(f"{name} needs {count} octets, {self.left()} are left")
        value = self.data[self.position:self.position + count]
        self.position += count
        return value

    def cstring(self, maximum: int, name: str, status: int = ESME_RINVCMDLEN) -> str:
        """A C-octet string of at most `maximum` octets with its NUL; ASCII (other bytes as latin-1)."""
        end = self.data.find(b"\x00", self.position, self.position + maximum)
        if end < 0:
            if self.left() < maximum:
                raise PduError(f"the body ends inside {name}")
            raise PduError(f"{name} is longer than {maximum - 1} characters", status)
        value = self.data[self.position:end].decode("latin-1")
        self.position = end + 1
        return value

    def tlvs(self) -> dict[int, bytes]:
        """The optional parameters after the mandatory ones (the last of a repeated tag wins)."""
        found: dict[int, bytes] = {}
        while self.left():
            if self.left() < 4:
                raise PduError("a TLV header is cut short", ESME_RINVOPTPARSTREAM)
            tag, length = struct.unpack_from(">HH", self.data, self.position)
            self.position += 4
            if self.left() < length:
                raise PduError(f"TLV 0x{tag:04x} says {length} octets, {self.left()} are left", ESME_RINVOPTPARSTREAM)
            found[tag] = self.data[self.position:self.position + length]
            self.position += length
        return found


def _cstring(value: str, maximum: int) -> bytes:
    raw = value.encode("latin-1", errors="replace")[:maximum - 1]
    return raw + b"\x00"


def _tlv(tag: int, value: bytes) -> bytes:
    return struct.pack(">HH", tag, len(value)) + value


def tlv_int(tlvs: dict[int, bytes], tag: int) -> int | None:
    """A TLV's value as an unsigned integer (1, 2 or 4 octets), or None when absent. Raises PduError."""
    value = tlvs.get(tag)
    if value is None:
        return None
    if len(value) not in (1, 2, 4):
        raise PduError(f"TLV 0x{tag:04x} has {len(value)} octets, not an integer's 1, 2 or 4", ESME_RINVPARLEN)
    return int.from_bytes(value, "big")


# --- bodies the server reads --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bind:
    """bind_transmitter / bind_receiver / bind_transceiver (4.1.1, 4.1.3, 4.1.5)."""

    system_id: str
    password: str
    system_type: str
    interface_version: int
    addr_ton: int
    addr_npi: int
    address_range: str


def read_bind(body: bytes) -> Bind:
    reader = _Reader(body)
    bind = Bind(reader.cstring(16, "system_id", ESME_RINVSYSID), reader.cstring(9, "password", ESME_RINVPASWD),
                reader.cstring(13, "system_type", ESME_RINVSYSTYP), reader.int8("interface_version"),
                reader.int8("addr_ton"), reader.int8("addr_npi"), reader.cstring(41, "address_range"))
    reader.tlvs()
    return bind


@dataclass(frozen=True)
class Submit:
    """submit_sm (4.4.1), and deliver_sm (4.6.1), whose layout is the same."""

    service_type: str
    source_ton: int
    source_npi: int
    source_addr: str
    dest_ton: int
    dest_npi: int
    destination_addr: str
    esm_class: int
    protocol_id: int
    priority_flag: int
    schedule_delivery_time: str
    validity_period: str
    registered_delivery: int
    replace_if_present: int
    data_coding: int
    sm_default_msg_id: int
    short_message: bytes
    tlvs: dict[int, bytes] = field(default_factory=dict)


def read_submit(body: bytes) -> Submit:
    reader = _Reader(body)
    service_type = reader.cstring(6, "service_type", ESME_RINVSERTYP)
    source_ton, source_npi = reader.int8("source_addr_ton"), reader.int8("source_addr_npi")
    source_addr = reader.cstring(21, "source_addr", ESME_RINVSRCADR)
    dest_ton, dest_npi = reader.int8("dest_addr_ton"), reader.int8("dest_addr_npi")
    destination = reader.cstring(21, "destination_addr", ESME_RINVDSTADR)
    esm_class, protocol_id, priority = reader.int8("esm_class"), reader.int8("protocol_id"), reader.int8(
        "priority_flag")
    schedule = reader.cstring(17, "schedule_delivery_time", ESME_RINVSCHED)
    validity = reader.cstring(17, "validity_period", ESME_RINVEXPIRY)
    registered, replace, coding, default_id = (reader.int8("registered_delivery"), reader.int8("replace_if_present"),
                                               reader.int8("data_coding"), reader.int8("sm_default_msg_id"))
    length = reader.int8("sm_length")
    short_message = reader.octets(length, "short_message")
    return Submit(service_type, source_ton, source_npi, source_addr, dest_ton, dest_npi, destination, esm_class,
                  protocol_id, priority, schedule, validity, registered, replace, coding, default_id, short_message,
                  reader.tlvs())


@dataclass(frozen=True)
class Query:
    """query_sm (4.8.1) and cancel_sm (4.9.1): the message asked about and the address it was submitted from."""

    message_id: str
    source_addr: str


def read_query(body: bytes) -> Query:
    reader = _Reader(body)
    message_id = reader.cstring(65, "message_id", ESME_RINVMSGID)
    reader.int8("source_addr_ton")
    reader.int8("source_addr_npi")
    query = Query(message_id, reader.cstring(21, "source_addr", ESME_RINVSRCADR))
    reader.tlvs()
    return query


def read_cancel(body: bytes) -> Query:
    reader = _Reader(body)
    reader.cstring(6, "service_type", ESME_RINVSERTYP)
    message_id = reader.cstring(65, "message_id", ESME_RINVMSGID)
    reader.int8("source_addr_ton")
    reader.int8("source_addr_npi")
    source = reader.cstring(21, "source_addr", ESME_RINVSRCADR)
    reader.int8("dest_addr_ton")
    reader.int8("dest_addr_npi")
    reader.cstring(21, "destination_addr", ESME_RINVDSTADR)
    return Query(message_id, source)


def read_message_id(body: bytes) -> str:
    """The message_id of a submit_sm_resp or deliver_sm_resp (empty for the latter, usually)."""
    if not body:
        return ""
    return _Reader(body).cstring(65, "message_id")


# --- bodies the server writes -------------------------------------------------------------------------------


def bind_resp_body(system_id: str, interface_version: int | None = None) -> bytes:
    """A bind_*_resp body: our system_id, and sc_interface_version when the client told its own (4.1.2)."""
    body = _cstring(system_id, 16)
    if interface_version is not None:
        body += _tlv(TAG_SC_INTERFACE_VERSION, bytes([INTERFACE_VERSION]))
    return body


def message_id_body(message_id: str) -> bytes:
    """A submit_sm_resp body (4.4.2); deliver_sm_resp's is `message_id_body("")`."""
    return _cstring(message_id, 65)


def query_resp_body(message_id: str, final_date: str, state: int, error_code: int) -> bytes:
    """A query_sm_resp body (4.8.2)."""
    return _cstring(message_id, 65) + _cstring(final_date, 17) + bytes([state, error_code & 0xFF])


@dataclass(frozen=True)
class Deliver:
    """What a deliver_sm carries (4.6.1): an inbound SMS, or a delivery receipt (`esm_class` ESM_RECEIPT with
    `receipted_message_id` and `message_state`)."""

    source_addr: str
    destination_addr: str
    data_coding: int
    message: bytes
    esm_class: int = 0
    source_ton: int = TON_UNKNOWN
    source_npi: int = NPI_UNKNOWN
    dest_ton: int = TON_UNKNOWN
    dest_npi: int = NPI_UNKNOWN
    receipted_message_id: str | None = None
    message_state: int | None = None
    network_error: int | None = None      # a GSM error code (network_error_code type 3)


MAX_SHORT_MESSAGE = 254  # sm_length is one octet; longer texts go in message_payload (5.3.2.32)


def deliver_body(deliver: Deliver) -> bytes:
    """A deliver_sm body; a message longer than short_message may hold goes whole in message_payload."""
    short, payload = (deliver.message, b"") if len(deliver.message) <= MAX_SHORT_MESSAGE else (b"", deliver.message)
    body = (_cstring("", 6) + bytes([deliver.source_ton, deliver.source_npi]) + _cstring(deliver.source_addr, 21)
            + bytes([deliver.dest_ton, deliver.dest_npi]) + _cstring(deliver.destination_addr, 21)
            + bytes([deliver.esm_class, 0, 0]) + _cstring("", 17) + _cstring("", 17)
            + bytes([0, 0, deliver.data_coding, 0, len(short)]) + short)
    if payload:
        body += _tlv(TAG_MESSAGE_PAYLOAD, payload)
    if deliver.receipted_message_id is not None:
        body += _tlv(TAG_RECEIPTED_MESSAGE_ID, _cstring(deliver.receipted_message_id, 65))
    if deliver.message_state is not None:
        body += _tlv(TAG_MESSAGE_STATE, bytes([deliver.message_state]))
    if deliver.network_error is not None:
        body += _tlv(TAG_NETWORK_ERROR_CODE, bytes([3]) + (deliver.network_error & 0xFFFF).to_bytes(2, "big"))
    return body


# --- addresses ----------------------------------------------------------------------------------------------


def address_in(ton: int, addr: str) -> str:
    """A number as the gateway reads it: international (TON 1) gets its "+"."""
    addr = addr.strip()
    if ton == TON_INTERNATIONAL and addr and not addr.startswith("+"):
        return "+" + addr
    return addr


def address_out(number: str) -> tuple[int, int, str]:
    """(TON, NPI, address) for a number or sender the gateway holds: "+44..." is international without its "+",
    other digits unknown/ISDN, anything else alphanumeric."""
    if number.startswith("+") and number[1:].isdigit():
        return TON_INTERNATIONAL, NPI_ISDN, number[1:]
    if number.isdigit():
        return TON_UNKNOWN, NPI_ISDN, number
    return TON_ALPHANUMERIC, NPI_UNKNOWN, number[:20]


# --- texts --------------------------------------------------------------------------------------------------

# data_coding values the server takes in a submit_sm: 0 the SMSC default alphabet (we read GSM 03.38 unpacked,
# one septet per octet, as the specification says: a client that sends Latin-1 with 0 should send 3 instead);
# 1 IA5 (ASCII); 3 Latin-1; 8 UCS-2 (UTF-16 big-endian, surrogate pairs allowed); 0xF0/0xF1 a message class with
# the default alphabet.
TEXT_CODINGS = {0: "gsm7", 1: "ascii", 3: "latin-1", 8: "ucs2", 0xF0: "gsm7", 0xF1: "gsm7", 0xF2: "gsm7",
                0xF3: "gsm7"}


def check_text(data_coding: int, data: bytes) -> str:
    """The kind of text (`TEXT_CODINGS`) of a short message, message_payload or one part of either, after
    checking its octets. Raises PduError for a coding the gateway cannot send as text (8-bit binary, for
    example) or octets that cannot be in it."""
    kind = TEXT_CODINGS.get(data_coding)
    if kind is None:
        raise PduError(f"data_coding 0x{data_coding:02x} is not a text coding the gateway sends (use 0 GSM, 1 ASCII, "
                       f"3 Latin-1 or 8 UCS-2)", ESME_RSUBMITFAIL)
    if kind == "gsm7" and any(octet > 0x7F for octet in data):
        raise PduError("data_coding 0 carries GSM 03.38 septets, one per octet (0-127); send Latin-1 text with "
                       "data_coding 3", ESME_RSUBMITFAIL)
    if kind == "ascii" and any(octet > 0x7F for octet in data):
        raise PduError("data_coding 1 (IA5) carries ASCII only; send Latin-1 text with data_coding 3",
                       ESME_RSUBMITFAIL)
    if kind == "ucs2" and len(data) % 2:
        raise PduError("a UCS-2 message (or part) has an even number of octets", ESME_RINVMSGLEN)
    return kind


def decode_text(data_coding: int, data: bytes, *, lenient: bool = False) -> str:
    """The text of a short message or message_payload (or of parts joined). Raises PduError (`check_text`), and
    for a UCS-2 text with half a surrogate pair unless `lenient` (the parts that arrived of a message whose
    other parts never did: a "?" takes its place)."""
    kind = check_text(data_coding, data)
    if kind == "gsm7":
        return textmod.septets_to_text(data)
    if kind == "ucs2":
        try:
            return data.decode("utf-16-be", errors="replace" if lenient else "strict")
        except UnicodeDecodeError:
            raise PduError("the UCS-2 message has half a surrogate pair (a broken emoji)", ESME_RSUBMITFAIL) from None
    return data.decode("latin-1")


def encode_text(body: str) -> tuple[int, bytes]:
    """(data_coding, octets) for a deliver_sm: GSM 03.38 unpacked (0) when every character has a septet, else
    UCS-2 (8)."""
    if textmod.is_gsm7(body):
        return 0, textmod.gsm7_septets(body)
    return 8, body.encode("utf-16-be", errors="surrogatepass")


# --- concatenation (a UDH in the short message, or the sar_* TLVs) -----------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One part of a message the client split: its reference (8- and 16-bit references are kept apart), how many
    parts, which one, and the text's octets without the header."""

    reference: int
    total: int
    sequence: int
    data: bytes


def split_udh(data: bytes) -> tuple[Segment | None, bytes]:
    """(the concatenation element, the octets after the UDH) of a short message with esm_class UDHI. A header
    without a concatenation element is dropped (ports and the like have no meaning for a modem's text). Raises
    PduError when the header runs past the message."""
    if not data:
        raise PduError("esm_class says the message starts with a UDH, but it is empty", ESME_RINVESMCLASS)
    length = data[0]
    if length + 1 > len(data):
        raise PduError(f"the UDH says {length} octets, the message has {len(data) - 1}", ESME_RINVESMCLASS)
    header, rest = data[1:length + 1], data[length + 1:]
    position, segment = 0, None
    while position + 2 <= len(header):
        iei, size = header[position], header[position + 1]
        value = header[position + 2:position + 2 + size]
        if len(value) != size:
            raise PduError("an element of the UDH runs past the header", ESME_RINVESMCLASS)
        if iei == 0x00 and size == 3:
            segment = Segment(value[0], value[1], value[2], b"")
        elif iei == 0x08 and size == 4:
            segment = Segment(int.from_bytes(value[:2], "big") | 0x10000, value[2], value[3], b"")
        position += 2 + size
    if segment is not None:
        segment = Segment(segment.reference, segment.total, segment.sequence, rest)
    return segment, rest


def sar_segment(tlvs: dict[int, bytes], data: bytes) -> Segment | None:
    """The part that the sar_msg_ref_num, sar_total_segments and sar_segment_seqnum TLVs describe, if any."""
    reference = tlv_int(tlvs, TAG_SAR_MSG_REF_NUM)
    total = tlv_int(tlvs, TAG_SAR_TOTAL_SEGMENTS)
    sequence = tlv_int(tlvs, TAG_SAR_SEGMENT_SEQNUM)
    if reference is None or total is None or sequence is None:
        return None
    return Segment(reference | 0x20000, total, sequence, data)


# --- times (7.1.1) --------------------------------------------------------------------------------------------

MAX_RELATIVE = 63 * 7 * 86400  # the longest validity an SMS can carry


def parse_time(value: str, now: float, what: str, status: int) -> float | None:
    """The epoch time `value` names: absolute `YYMMDDhhmmsstnn+`/`-` (nn quarter hours from UTC) or relative
    `YYMMDDhhmmss000R` from `now` (a year 365 days, a month 30). Empty: None. Raises PduError with `status`."""
    if value == "":
        return None
    if len(value) != 16 or not value[:15].isdigit() or value[15] not in "+-R":
        raise PduError(f"{what} {value!r} is not YYMMDDhhmmsstnnp (p is +, - or R)", status)
    numbers = [int(value[index:index + 2]) for index in range(0, 12, 2)]
    if value[15] == "R":
        years, months, days, hours, minutes, seconds = numbers
        span = ((years * 365 + months * 30 + days) * 86400 + hours * 3600 + minutes * 60 + seconds)
        return now + span
    year, month, day, hour, minute, second = numbers
    tenths, quarters = int(value[12]), int(value[13:15])
    if quarters > 48:
        raise PduError(f"{what} {value!r}: the offset from UTC is at most 48 quarter hours", status)
    offset = dt.timedelta(minutes=15 * quarters) * (1 if value[15] == "+" else -1)
    try:
        moment = dt.datetime(2000 + year, month, day, hour, minute, second, tenths * 100000,
                             tzinfo=dt.timezone(offset))
    except ValueError:
        raise PduError(f"{what} {value!r} is not a date", status) from None
    return moment.timestamp()


def receipt_date(moment: float) -> str:
    """YYMMDDhhmm in local time, as receipts write dates (Appendix B)."""
    return dt.datetime.fromtimestamp(moment).strftime("%y%m%d%H%M")


def absolute_time(moment: float) -> str:
    """`YYMMDDhhmmss000+` in UTC, for query_sm_resp's final_date."""
    return dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%y%m%d%H%M%S") + "000+"


COMMAND_NAMES = {BIND_RECEIVER: "bind_receiver", BIND_TRANSMITTER: "bind_transmitter", QUERY_SM: "query_sm",
                 SUBMIT_SM: "submit_sm", DELIVER_SM: "deliver_sm", UNBIND: "unbind", REPLACE_SM: "replace_sm",
                 CANCEL_SM: "cancel_sm", BIND_TRANSCEIVER: "bind_transceiver", OUTBIND: "outbind",
                 ENQUIRE_LINK: "enquire_link", SUBMIT_MULTI: "submit_multi", ALERT_NOTIFICATION: "alert_notification",
                 DATA_SM: "data_sm", GENERIC_NACK: "generic_nack"}


def command_name(command_id: int) -> str:
    base = COMMAND_NAMES.get(command_id & ~RESPONSE if command_id != GENERIC_NACK else command_id)
    if base is None:
        return f"0x{command_id:08x}"
    return base + ("_resp" if command_id & RESPONSE and command_id != GENERIC_NACK else "")
