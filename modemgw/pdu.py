"""SMS transfer-layer PDUs (3GPP TS 23.040): encode and decode SMS-SUBMIT, SMS-DELIVER and SMS-STATUS-REPORT.

Pure functions over bytes. Text encodings and segment sizes come from `modemgw.text`. Every malformed input
raises `PduError`, which names what was wrong and the octet offset where it was found; nothing else escapes
the decoders (no IndexError, StopIteration, ValueError or UnicodeError).

A PDU as modems show it (``AT+CMGL``, ``+CMT``, ``+CDS``) may or may not start with the service-centre address
(the RP-layer SMSC field); `decode` accepts both, and uses the TPDU length when the caller has it.
"""

from __future__ import annotations

import binascii
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass

from modemgw import text as textmod
from modemgw.text import BINARY, GSM7, UCS2

# TP-MTI values (first octet, bits 1..0), in the direction a modem sees them.
MTI_DELIVER = 0b00
MTI_SUBMIT = 0b01
MTI_STATUS_REPORT = 0b10

# Type-of-number values (TOA bits 6..4) and their names.
TON_NAMES = {0: "unknown", 1: "international", 2: "national", 3: "network", 4: "subscriber",
             5: "alphanumeric", 6: "abbreviated", 7: "reserved"}
TOA_INTERNATIONAL = 0x91  # international number, ISDN/E.164 numbering plan
TOA_UNKNOWN = 0x81        # unknown type (the network decides), ISDN numbering plan
TOA_ALPHANUMERIC = 0xD0   # alphanumeric, GSM-7 packed

# Information elements of the user-data header that we interpret (TS 23.040 9.2.3.24).
IEI_CONCAT_8 = 0x00
IEI_PORTS_8 = 0x04
IEI_PORTS_16 = 0x05
IEI_CONCAT_16 = 0x08
IEI_NATIONAL_SINGLE_SHIFT = 0x24
IEI_NATIONAL_LOCKING_SHIFT = 0x25

_BCD_DIGITS = "0123456789*#abc"  # semi-octet values 0-14 as TS 23.040 9.1.2.3 names them
_DIALLABLE = {char: value for value, char in enumerate(_BCD_DIGITS[:12])}  # a, b, c are never dialled


class PduError(ValueError):
    """A PDU is malformed or cannot be built; `offset` is the octet where the fault was found (or None)."""

    def __init__(self, reason: str, offset: int | None = None):
        super().__init__(reason if offset is None else f"{reason} (at octet {offset})")
        self.reason = reason
        self.offset = offset


# --- values ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Address:
    """A TP address: `number` is E.164 with '+' when international, digits otherwise, text when alphanumeric."""

    number: str
    type: str = "unknown"
    toa: int = TOA_UNKNOWN


@dataclass(frozen=True)
class Concat:
    """Concatenation header: parts with the same (sender, reference, total) form one message."""

    reference: int
    total: int
    sequence: int
    bits: int = 8


@dataclass(frozen=True)
class Ports:
    """Application port addressing (WAP push, vCards and the like)."""

    destination: int
    source: int
    bits: int = 16


@dataclass(frozen=True)
class InformationElement:
    iei: int
    data: bytes


@dataclass(frozen=True)
class DataCoding:
    """TP-DCS decoded (TS 23.038 clause 4)."""

    encoding: str
    message_class: int | None = None
    compressed: bool = False
    auto_delete: bool = False
    message_waiting: bool = False


@dataclass(frozen=True)
class UserData:
    """TP-UD decoded. `payload` is the undecoded body after the header: septet values (one per byte) for GSM-7,
    octets for UCS-2 and 8-bit, so that parts of a concatenated message can be joined before decoding."""

    encoding: str
    text: str | None
    payload: bytes
    header: tuple[InformationElement, ...] = ()
    concat: Concat | None = None
    ports: Ports | None = None


class _CarriesUserData:
    """Shortcuts for messages that carry user data."""

    user_data: UserData

    @property
    def text(self) -> str | None:
        return self.user_data.text

    @property
    def concat(self) -> Concat | None:
        return self.user_data.concat


@dataclass(frozen=True)
class Deliver(_CarriesUserData):
    """SMS-DELIVER: a message received from the network."""

    sender: Address
    timestamp: dt.datetime
    user_data: UserData
    coding: DataCoding
    pid: int = 0
    smsc: str | None = None
    more_messages: bool = False
    reply_path: bool = False
    status_report_indication: bool = False
    type: str = field(default="deliver", init=False)


@dataclass(frozen=True)
class Submit(_CarriesUserData):
    """SMS-SUBMIT: a message sent by us (decoded for diagnostics, encoded to send)."""

    recipient: Address
    user_data: UserData
    coding: DataCoding
    reference: int = 0
    pid: int = 0
    smsc: str | None = None
    request_report: bool = False
    reject_duplicates: bool = False
    reply_path: bool = False
    validity: int | dt.datetime | None = None  # seconds (relative) or a time (absolute)
    type: str = field(default="submit", init=False)


# TP-ST (TS 23.040 9.2.3.15): code -> readable reason. Ranges decide the outcome (see `status_outcome`).
STATUS_REASONS = {
    0x00: "received by the recipient",
    0x01: "forwarded to the recipient, delivery not confirmed",
    0x02: "replaced by the service centre",
    0x20: "congestion, still trying",
    0x21: "recipient busy, still trying",
    0x22: "no response from recipient, still trying",
    0x23: "service rejected, still trying",
    0x24: "quality of service not available, still trying",
    0x25: "error in recipient, still trying",
    0x40: "remote procedure error",
    0x41: "incompatible destination",
    0x42: "connection rejected by recipient",
    0x43: "not obtainable",
    0x44: "quality of service not available",
    0x45: "no interworking available",
    0x46: "validity period expired",
    0x47: "deleted by the sender",
    0x48: "deleted by service centre administration",
    0x49: "message does not exist",
    0x60: "congestion, service centre stopped trying",
    0x61: "recipient busy, service centre stopped trying",
    0x62: "no response from recipient, service centre stopped trying",
    0x63: "service rejected, service centre stopped trying",
    0x64: "quality of service not available, service centre stopped trying",
    0x65: "error in recipient, service centre stopped trying",
}


def status_outcome(code: int) -> str:
    """Map TP-ST to `delivered`, `pending` (the centre is still trying) or `failed` (it has stopped).

    0x00-0x1F: transaction completed; 0x20-0x3F: temporary error, still trying; 0x40-0x7F: permanent error or
    temporary error with no more attempts. Reserved values (bit 7 set) are treated as failures, since the
    centre reports nothing it will still do.
    """
    if code <= 0x1F:
        return "delivered"
    if code <= 0x3F:
        return "pending"
    return "failed"


def status_reason(code: int) -> str:
    """A readable reason for TP-ST `code`, including the service-centre-specific and reserved ranges."""
    if code in STATUS_REASONS:
        return STATUS_REASONS[code]
    if 0x10 <= code <= 0x1F or 0x30 <= code <= 0x3F or 0x50 <= code <= 0x5F or 0x70 <= code <= 0x7F:
        return f"service-centre specific status 0x{code:02X}"
    return f"reserved status 0x{code:02X}"


@dataclass(frozen=True)
class StatusReport:
    """SMS-STATUS-REPORT: the service centre's word on a message we sent (matched by `reference`, TP-MR)."""

    reference: int
    recipient: Address
    sc_timestamp: dt.datetime
    discharge_time: dt.datetime
    status_code: int
    smsc: str | None = None
    more_messages: bool = False
    report_qualifier: bool = False  # True: result of an SMS-COMMAND, False: of an SMS-SUBMIT
    user_data: UserData | None = None
    type: str = field(default="status-report", init=False)

    @property
    def status(self) -> str:
        return status_outcome(self.status_code)

    @property
    def reason(self) -> str:
        return status_reason(self.status_code)


@dataclass(frozen=True)
class EncodedPdu:
    """One PDU ready for ``AT+CMGS=<tpdu_length>``: `hex` includes the SMSC field; `tpdu_length` excludes it."""

    hex: str
    tpdu_length: int


# --- bit and digit helpers ------------------------------------------------------------------------------------

def pack_septets(septets: bytes, fill_bits: int = 0) -> bytes:
    """Pack 7-bit values into octets, least significant bit first, after `fill_bits` zero bits."""
    value = 0
    for index, septet in enumerate(septets):
        value |= (septet & 0x7F) << (7 * index)
    total_bits = fill_bits + 7 * len(septets)
    return (value << fill_bits).to_bytes((total_bits + 7) // 8, "little")


def unpack_septets(data: bytes, count: int | None = None, skip_bits: int = 0) -> bytes:
    """Unpack `count` 7-bit values (all that fit when None) starting `skip_bits` into `data`."""
    if count is None:
        count = max(0, (len(data) * 8 - skip_bits) // 7)
    value = int.from_bytes(data, "little") >> skip_bits
    return bytes((value >> (7 * index)) & 0x7F for index in range(count))


def decode_gsm7_packed(data: bytes, count: int | None = None) -> str:
    """Text of packed GSM-7 octets (USSD and cell broadcast style, where no septet count is sent).

    Without `count`, a trailing CR that only pads the last octet (TS 23.038 6.1.2.3.1) is removed.
    """
    septets = unpack_septets(data, count)
    if count is None and septets.endswith(b"\r\r"):
        septets = septets[:-1]  # the second CR only protected a wanted final CR
    elif count is None and len(data) % 7 == 0 and septets.endswith(b"\r"):
        septets = septets[:-1]  # a CR that only filled the last octet
    return textmod.septets_to_text(septets)


def encode_gsm7_packed(text: str) -> bytes:
    """Packed GSM-7 for USSD: when 7 spare bits would remain, a CR pads them (TS 23.038 6.1.2.3.1)."""
    septets = textmod.gsm7_septets(text)
    if len(septets) % 8 == 7 or len(septets) % 8 == 0 and septets.endswith(b"\r"):
        septets += b"\r"  # a CR that only pads, or a second CR so that a wanted final CR survives
    return pack_septets(septets)


def _swap_bcd(octet: int) -> tuple[int, int]:
    return octet & 0x0F, octet >> 4


def _encode_digits(digits: str, what: str) -> bytes:
    try:
        values = [_DIALLABLE[char] for char in digits]
    except KeyError as error:
        raise PduError(f"{what} {digits!r} has a character that is not a dialling digit: {error.args[0]!r}") from None
    if len(values) % 2:
        values.append(0xF)
    return bytes(values[i] | (values[i + 1] << 4) for i in range(0, len(values), 2))


def _decode_digits(data: bytes, count: int) -> str:
    out: list[str] = []
    for octet in data:
        for nibble in _swap_bcd(octet):
            if len(out) < count and nibble != 0xF:
                out.append(_BCD_DIGITS[nibble])
    return "".join(out)


def _split_number(number: str, what: str) -> tuple[str, int]:
    """Digits and TOA for a dialled number: '+' makes it international."""
    cleaned = number.strip().replace(" ", "").replace("-", "")
    if cleaned.startswith("+"):
        digits, toa = cleaned[1:], TOA_INTERNATIONAL
    elif cleaned.startswith("00") and len(cleaned) > 2:
        digits, toa = cleaned[2:], TOA_INTERNATIONAL
    else:
        digits, toa = cleaned, TOA_UNKNOWN
    if not digits:
        raise PduError(f"{what} is empty")
    if len(digits) > 20:
        raise PduError(f"{what} {number!r} has {len(digits)} digits; at most 20 fit in an address")
    return digits, toa


# --- reading --------------------------------------------------------------------------------------------------

class _Reader:
    """Cursor over PDU octets that turns every overrun into a PduError with the absolute offset."""

    def __init__(self, data: bytes, base: int = 0):
        self.data = data
        self.pos = 0
        self.base = base

    @property
    def offset(self) -> int:
        return self.base + self.pos

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def octet(self, what: str) -> int:
        if self.pos >= len(self.data):
            raise PduError(f"PDU ends where {what} should be", self.offset)
        value = self.data[self.pos]
        self.pos += 1
        return value

    def take(self, count: int, what: str) -> bytes:
        if count > self.remaining:
            raise PduError(f"PDU ends inside {what}: {count} octets needed, {self.remaining} left", self.offset)
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def end(self) -> None:
        if self.remaining:
            raise PduError(f"{self.remaining} unexpected octets after the end of the PDU", self.offset)


def _read_address(reader: _Reader, what: str) -> Address:
    start = reader.offset
    length = reader.octet(f"{what} length")
    toa = reader.octet(f"{what} type")
    ton = (toa >> 4) & 0x07
    if ton == 5:
        if length > 22:
            raise PduError(f"{what}: alphanumeric address of {length} semi-octets is longer than 11 characters", start)
        raw = reader.take((length + 1) // 2, what)
        septets = unpack_septets(raw, length * 4 // 7)
        return Address(textmod.septets_to_text(septets), "alphanumeric", toa)
    if length > 20:
        raise PduError(f"{what}: address length {length} is more than 20 digits", start)
    digits = _decode_digits(reader.take((length + 1) // 2, what), length)
    number = "+" + digits if ton == 1 and digits else digits
    return Address(number, TON_NAMES[ton], toa)


def _read_smsc(reader: _Reader) -> str | None:
    start = reader.offset
    length = reader.octet("SMSC length")
    if length == 0:
        return None
    if length > 12:
        raise PduError(f"SMSC field length {length} is more than 12 octets", start)
    toa = reader.octet("SMSC type")
    if not toa & 0x80:  # TS 24.008 10.5.4.7: the type-of-address octet always has bit 8 set
        raise PduError(f"SMSC type of address 0x{toa:02X} lacks its extension bit: no SMSC field here", start + 1)
    digits = _decode_digits(reader.take(length - 1, "SMSC address"), (length - 1) * 2)
    return "+" + digits if (toa >> 4) & 0x07 == 1 and digits else digits


def _read_timestamp(reader: _Reader, what: str) -> dt.datetime:
    start = reader.offset
    raw = reader.take(7, what)
    values = []
    for octet in raw[:6]:
        low, high = _swap_bcd(octet)
        if low > 9 or high > 9:
            raise PduError(f"{what} has a non-decimal semi-octet 0x{octet:02X}", start)
        values.append(low * 10 + high)
    zone_low, zone_high = _swap_bcd(raw[6])
    if (zone_low & 0x07) > 9 or zone_high > 9:
        raise PduError(f"{what} has a non-decimal time zone 0x{raw[6]:02X}", start + 6)
    quarters = (zone_low & 0x07) * 10 + zone_high
    if quarters > 79:  # +/- 19:45 is the widest zone the field may carry
        raise PduError(f"{what} time zone of {quarters} quarter hours is out of range", start + 6)
    if zone_low & 0x08:
        quarters = -quarters
    year, month, day, hour, minute, second = values
    century = 1900 if year >= 90 else 2000  # SMS began in 1992; "99" is 1999, not 2099
    try:
        return dt.datetime(century + year, month, day, hour, minute, second,
                           tzinfo=dt.timezone(dt.timedelta(minutes=15 * quarters)))
    except ValueError as error:
        raise PduError(f"{what} is not a valid date and time ({error})", start) from None


def decode_dcs(dcs: int) -> DataCoding:
    """TP-DCS to encoding and message class (TS 23.038 clause 4; reserved groups read as GSM-7)."""
    group = dcs >> 4
    if group <= 0b0111:  # general data coding (00xx) and automatic deletion (01xx) groups
        alphabet = (dcs >> 2) & 0x03
        compressed = bool(dcs & 0x20)
        encoding = (GSM7, BINARY, UCS2, GSM7)[alphabet]
        return DataCoding(BINARY if compressed else encoding,
                          message_class=(dcs & 0x03) if dcs & 0x10 else None,
                          compressed=compressed, auto_delete=bool(dcs & 0x40))
    if group in (0b1100, 0b1101):
        return DataCoding(GSM7, message_waiting=True)
    if group == 0b1110:
        return DataCoding(UCS2, message_waiting=True)
    if group == 0b1111:
        return DataCoding(BINARY if dcs & 0x04 else GSM7, message_class=dcs & 0x03)
    return DataCoding(GSM7)  # 1000..1011: reserved coding groups


def _parse_header(header: bytes, start: int) -> tuple[tuple[InformationElement, ...], Concat | None, Ports | None]:
    elements = []
    concat = ports = None
    reader = _Reader(header, start)
    while reader.remaining:
        iei = reader.octet("information element identifier")
        length = reader.octet("information element length")
        element_start = reader.offset
        data = reader.take(length, f"information element 0x{iei:02X}")
        elements.append(InformationElement(iei, data))
        expected = {IEI_CONCAT_8: 3, IEI_CONCAT_16: 4, IEI_PORTS_8: 2, IEI_PORTS_16: 4}.get(iei)
        if expected is not None and length != expected:
            raise PduError(f"information element 0x{iei:02X} has length {length}, expected {expected}",
                           element_start - 1)
        if iei in (IEI_CONCAT_8, IEI_CONCAT_16):
            reference = data[0] if iei == IEI_CONCAT_8 else int.from_bytes(data[:2], "big")
            total, sequence = data[-2], data[-1]
            # TS 23.040 9.2.3.24.1: a zero count or a sequence beyond it means the element is ignored.
            if total and 1 <= sequence <= total:
                concat = Concat(reference, total, sequence, 8 if iei == IEI_CONCAT_8 else 16)
        elif iei == IEI_PORTS_8:
            ports = Ports(data[0], data[1], 8)
        elif iei == IEI_PORTS_16:
            ports = Ports(int.from_bytes(data[:2], "big"), int.from_bytes(data[2:], "big"), 16)
    return tuple(elements), concat, ports


def decode_payload(encoding: str, payload: bytes) -> str | None:
    """Text of an undecoded payload (`UserData.payload`, or several parts' payloads joined); None for 8-bit."""
    if encoding == GSM7:
        return textmod.septets_to_text(payload)
    if encoding == UCS2:
        return payload.decode("utf-16-be", errors="replace")
    return None


def _read_user_data(reader: _Reader, coding: DataCoding, has_header: bool) -> UserData:
    udl_offset = reader.offset
    udl = reader.octet("user data length")
    if coding.encoding == GSM7:
        if udl > 160:
            raise PduError(f"user data length {udl} septets is more than 160", udl_offset)
        raw = reader.take((udl * 7 + 7) // 8, f"user data ({udl} septets)")
    else:
        if udl > 140:
            raise PduError(f"user data length {udl} octets is more than 140", udl_offset)
        raw = reader.take(udl, f"user data ({udl} octets)")
    header: tuple[InformationElement, ...] = ()
    concat = ports = None
    header_octets = 0
    if has_header:
        if not raw:
            raise PduError("user data header indicated but user data is empty", udl_offset + 1)
        header_octets = raw[0] + 1
        if header_octets > len(raw):
            raise PduError(f"user data header of {raw[0]} octets is longer than the user data", udl_offset + 1)
        header, concat, ports = _parse_header(raw[1:header_octets], udl_offset + 2)
    if coding.encoding == GSM7:
        header_septets = (header_octets * 8 + 6) // 7
        if header_septets > udl:
            raise PduError(f"user data header needs {header_septets} septets but UDL is {udl}", udl_offset)
        payload = unpack_septets(raw, udl)[header_septets:]
    else:
        payload = raw[header_octets:]
        if coding.encoding == UCS2 and len(payload) % 2:
            raise PduError(f"UCS-2 user data has an odd number of octets ({len(payload)})", udl_offset)
    return UserData(coding.encoding, decode_payload(coding.encoding, payload), payload, header, concat, ports)


def _read_deliver(reader: _Reader, smsc: str | None) -> Deliver:
    first = reader.octet("first octet")
    sender = _read_address(reader, "originating address")
    pid = reader.octet("protocol identifier")
    dcs = reader.octet("data coding scheme")
    coding = decode_dcs(dcs)
    timestamp = _read_timestamp(reader, "service centre timestamp")
    user_data = _read_user_data(reader, coding, bool(first & 0x40))
    reader.end()
    return Deliver(sender=sender, timestamp=timestamp, user_data=user_data, coding=coding, pid=pid, smsc=smsc,
                   more_messages=not first & 0x04, reply_path=bool(first & 0x80),
                   status_report_indication=bool(first & 0x20))


def _read_validity(reader: _Reader, vpf: int) -> int | dt.datetime | None:
    if vpf == 0b10:
        return relative_validity_seconds(reader.octet("validity period"))
    if vpf == 0b11:
        return _read_timestamp(reader, "absolute validity period")
    if vpf == 0b01:
        raw = reader.take(7, "enhanced validity period")
        kind = raw[0] & 0x07
        if kind == 1:
            return relative_validity_seconds(raw[1])
        if kind == 2:
            return raw[1]
        if kind == 3:
            hours, minutes, seconds = ((lo * 10 + hi) for lo, hi in map(_swap_bcd, raw[1:4]))
            return hours * 3600 + minutes * 60 + seconds
    return None


def _read_submit(reader: _Reader, smsc: str | None) -> Submit:
    first = reader.octet("first octet")
    reference = reader.octet("message reference")
    recipient = _read_address(reader, "destination address")
    pid = reader.octet("protocol identifier")
    dcs = reader.octet("data coding scheme")
    coding = decode_dcs(dcs)
    validity = _read_validity(reader, (first >> 3) & 0x03)
    user_data = _read_user_data(reader, coding, bool(first & 0x40))
    reader.end()
    return Submit(recipient=recipient, user_data=user_data, coding=coding, reference=reference, pid=pid,
                  smsc=smsc, request_report=bool(first & 0x20), reject_duplicates=bool(first & 0x04),
                  reply_path=bool(first & 0x80), validity=validity)


def _read_status_report(reader: _Reader, smsc: str | None) -> StatusReport:
    first = reader.octet("first octet")
    reference = reader.octet("message reference")
    recipient = _read_address(reader, "recipient address")
    sc_timestamp = _read_timestamp(reader, "service centre timestamp")
    discharge_time = _read_timestamp(reader, "discharge time")
    status_code = reader.octet("status")
    user_data = None
    if reader.remaining:
        indicator = reader.octet("parameter indicator")
        while indicator & 0x80 and reader.remaining:  # extension octets carry nothing we use
            indicator_ext = reader.octet("parameter indicator extension")
            if not indicator_ext & 0x80:
                break
        if indicator & 0x01:
            reader.octet("protocol identifier")
        coding = decode_dcs(reader.octet("data coding scheme")) if indicator & 0x02 else DataCoding(GSM7)
        if indicator & 0x04:
            user_data = _read_user_data(reader, coding, bool(first & 0x40))
    reader.end()
    return StatusReport(reference=reference, recipient=recipient, sc_timestamp=sc_timestamp,
                        discharge_time=discharge_time, status_code=status_code, smsc=smsc,
                        more_messages=not first & 0x04, report_qualifier=bool(first & 0x20),
                        user_data=user_data)


_READERS: dict[int, Callable[[_Reader, str | None], Deliver | Submit | StatusReport]] = {
    MTI_DELIVER: _read_deliver, MTI_SUBMIT: _read_submit, MTI_STATUS_REPORT: _read_status_report}


def _from_hex(pdu: str | bytes) -> bytes:
    if isinstance(pdu, (bytes, bytearray)):
        return bytes(pdu)
    cleaned = "".join(pdu.split())
    if len(cleaned) % 2:
        raise PduError(f"hex PDU has an odd number of digits ({len(cleaned)})", len(cleaned) // 2)
    try:
        return binascii.unhexlify(cleaned)
    except (binascii.Error, ValueError):
        for index, char in enumerate(cleaned):
            if char not in "0123456789abcdefABCDEF":
                raise PduError(f"{char!r} is not a hex digit", index // 2) from None
        raise PduError("not a hex PDU", 0) from None


def decode_tpdu(data: bytes, smsc: str | None = None, base: int = 0) -> Deliver | Submit | StatusReport:
    """Decode a TPDU (no SMSC field) by its message type indicator."""
    if not data:
        raise PduError("PDU is empty", base)
    mti = data[0] & 0x03
    if mti not in _READERS:
        raise PduError("message type indicator 3 is reserved", base)
    return _READERS[mti](_Reader(data, base), smsc)


def _decode_with_smsc(data: bytes) -> Deliver | Submit | StatusReport:
    reader = _Reader(data)
    smsc = _read_smsc(reader)
    return decode_tpdu(data[reader.pos:], smsc, reader.pos)


def decode(pdu: str | bytes, tpdu_length: int | None = None) -> Deliver | Submit | StatusReport:
    """Decode a PDU in hex (or bytes), with or without the leading SMSC field.

    `tpdu_length` is the length modems report beside a PDU (``+CMGL: ...,<length>``); with it the SMSC field's
    presence is certain. Without it, the reading that consumes the PDU exactly wins, the SMSC reading first.
    Raises PduError.
    """
    data = _from_hex(pdu)
    if not data:
        raise PduError("PDU is empty", 0)
    if tpdu_length is not None:
        prefix = len(data) - tpdu_length
        if prefix == 0:
            return decode_tpdu(data)
        if prefix < 0 or data[0] != prefix - 1:
            raise PduError(f"PDU of {len(data)} octets does not fit TPDU length {tpdu_length}", 0)
        return _decode_with_smsc(data)
    try:
        return _decode_with_smsc(data)
    except PduError as with_smsc:
        try:
            return decode_tpdu(data)
        except PduError:
            raise with_smsc from None


# --- encoding -------------------------------------------------------------------------------------------------

def relative_validity_octet(seconds: int) -> int:
    """TP-VP (relative) for a validity of at least `seconds`, rounded up; 5 minutes to 63 weeks."""
    if not isinstance(seconds, (int, float)) or seconds <= 0:
        raise PduError(f"validity must be a positive number of seconds, not {seconds!r}")
    seconds = int(-(-seconds // 1))
    minutes = -(-seconds // 60)
    if minutes <= 12 * 60:
        return max(0, -(-minutes // 5) - 1)
    if minutes <= 24 * 60:
        return 143 + -(-(minutes - 12 * 60) // 30)
    days = -(-minutes // (24 * 60))
    if days <= 30:
        return 166 + days
    weeks = -(-days // 7)
    return min(255, 192 + weeks)


def relative_validity_seconds(octet: int) -> int:
    """Seconds of a relative TP-VP octet (TS 23.040 9.2.3.12.1)."""
    if octet <= 143:
        return (octet + 1) * 5 * 60
    if octet <= 167:
        return 12 * 3600 + (octet - 143) * 30 * 60
    if octet <= 196:
        return (octet - 166) * 86400
    return (octet - 192) * 7 * 86400


def _encode_address(address: str, what: str) -> bytes:
    digits, toa = _split_number(address, what)
    return bytes([len(digits), toa]) + _encode_digits(digits, what)


def _encode_sender(sender: str) -> bytes:
    """Originating address: a number, or alphanumeric text (up to 11 GSM-7 characters)."""
    if not sender.strip().lstrip("+"):
        raise PduError(f"sender {sender!r} is empty")
    if sender.strip().replace(" ", "").replace("-", "").lstrip("+").isdigit():
        return _encode_address(sender, "sender")
    try:
        septets = textmod.gsm7_septets(sender)
    except textmod.TextError as error:
        raise PduError(f"alphanumeric sender: {error}") from None
    if len(septets) > 11:
        raise PduError(f"alphanumeric sender {sender!r} needs {len(septets)} septets; at most 11 fit")
    packed = pack_septets(septets)
    return bytes([(len(septets) * 7 + 3) // 4, TOA_ALPHANUMERIC]) + packed


def encode_smsc(smsc: str | None) -> bytes:
    """The RP-layer SMSC field: a zero octet (use the SIM's) or length, TOA and digits."""
    if not smsc:
        return b"\x00"
    digits, toa = _split_number(smsc, "SMSC")
    encoded = _encode_digits(digits, "SMSC")
    return bytes([len(encoded) + 1, toa]) + encoded


def _encode_timestamp(moment: dt.datetime) -> bytes:
    offset = moment.utcoffset() or dt.timedelta(0)
    quarters = int(offset.total_seconds() / 900)  # towards zero, alike for both signs
    if abs(quarters) > 79:
        raise PduError(f"time zone {offset} is beyond the +/-19:45 a PDU can carry")
    if not 1990 <= moment.year <= 2089:
        raise PduError(f"year {moment.year} cannot be told apart from another century in a PDU (1990-2089)")
    values = [moment.year % 100, moment.month, moment.day, moment.hour, moment.minute, moment.second]
    octets = [(value % 10) << 4 | (value // 10) for value in values]
    zone = abs(quarters)
    octets.append((zone % 10) << 4 | (zone // 10) | (0x08 if quarters < 0 else 0))
    return bytes(octets)


def _header_bytes(concat: Concat | None, ports: Ports | None) -> bytes:
    elements = b""
    if concat is not None:
        if concat.bits == 16:
            elements += bytes([IEI_CONCAT_16, 4]) + concat.reference.to_bytes(2, "big")
        else:
            elements += bytes([IEI_CONCAT_8, 3, concat.reference])
        elements += bytes([concat.total, concat.sequence])
    if ports is not None:
        if not all(0 <= port < (1 << ports.bits) for port in (ports.destination, ports.source)):
            raise PduError(f"ports {ports.destination}/{ports.source} do not fit {ports.bits} bits")
        if ports.bits == 8:
            elements += bytes([IEI_PORTS_8, 2, ports.destination, ports.source])
        else:
            elements += bytes([IEI_PORTS_16, 4]) + ports.destination.to_bytes(2, "big") \
                + ports.source.to_bytes(2, "big")
    return bytes([len(elements)]) + elements if elements else b""


def _check_concat(concat: Concat | None) -> None:
    if concat is None:
        return
    if concat.bits not in (8, 16):
        raise PduError(f"concatenation reference must be 8 or 16 bits, not {concat.bits}")
    if not 0 <= concat.reference < (1 << concat.bits):
        raise PduError(f"concatenation reference {concat.reference} does not fit {concat.bits} bits")
    if not 1 <= concat.sequence <= concat.total <= 255:
        raise PduError(f"part {concat.sequence} of {concat.total} is not a valid concatenation position")


def _encode_user_data(payload: str | bytes, encoding: str, concat: Concat | None,
                      ports: Ports | None) -> tuple[bytes, int]:
    """TP-UDL and TP-UD for one part; raises PduError when the part does not fit one SMS."""
    _check_concat(concat)
    header = _header_bytes(concat, ports)
    if encoding == GSM7:
        if not isinstance(payload, str):
            raise PduError("GSM-7 user data must be text")
        try:
            septets = textmod.gsm7_septets(payload)
        except textmod.TextError as error:
            raise PduError(str(error)) from None
        header_septets = (len(header) * 8 + 6) // 7
        udl = header_septets + len(septets)
        if udl > 160:
            raise PduError(f"part needs {udl} septets; one SMS holds 160")
        fill = header_septets * 7 - len(header) * 8
        return bytes([udl]) + header + pack_septets(septets, fill), udl
    if encoding == UCS2:
        if not isinstance(payload, str):
            raise PduError("UCS-2 user data must be text")
        body = payload.encode("utf-16-be", errors="surrogatepass")
    elif encoding == BINARY:
        if not isinstance(payload, (bytes, bytearray)):
            raise PduError("8-bit user data must be bytes")
        body = bytes(payload)
    else:
        raise PduError(f"unknown encoding {encoding!r}; expected one of {', '.join(textmod.ENCODINGS)}")
    udl = len(header) + len(body)
    if udl > 140:
        raise PduError(f"part needs {udl} octets; one SMS holds 140")
    return bytes([udl]) + header + body, udl


def _dcs_for(encoding: str, message_class: int | None) -> int:
    alphabet = {GSM7: 0x00, BINARY: 0x04, UCS2: 0x08}[encoding]
    if message_class is None:
        return alphabet
    if not 0 <= message_class <= 3:
        raise PduError(f"message class must be 0 to 3, not {message_class}")
    return 0x10 | alphabet | message_class


def encode_submit(recipient: str, payload: str | bytes, encoding: str = GSM7, *, reference: int = 0,
                  request_report: bool = True, validity: int | None = None, concat: Concat | None = None,
                  ports: Ports | None = None, message_class: int | None = None, reject_duplicates: bool = False,
                  smsc: str | None = None) -> EncodedPdu:
    """One SMS-SUBMIT. `payload` must fit one SMS (see `encode_message` to split). Raises PduError.

    `validity` is in seconds (relative format, rounded up to what TP-VP can express); `reference` is TP-MR,
    which modems usually overwrite with their own counter and return in ``+CMGS``.
    """
    if encoding not in textmod.ENCODINGS:
        raise PduError(f"unknown encoding {encoding!r}; expected one of {', '.join(textmod.ENCODINGS)}")
    user_data, _ = _encode_user_data(payload, encoding, concat, ports)
    first = MTI_SUBMIT | (0x04 if reject_duplicates else 0) | (0x10 if validity is not None else 0) \
        | (0x20 if request_report else 0) | (0x40 if concat is not None or ports is not None else 0)
    tpdu = bytes([first, reference & 0xFF]) + _encode_address(recipient, "recipient") \
        + bytes([0x00, _dcs_for(encoding, message_class)])
    if validity is not None:
        tpdu += bytes([relative_validity_octet(validity)])
    tpdu += user_data
    return EncodedPdu((encode_smsc(smsc) + tpdu).hex().upper(), len(tpdu))


def encode_message(recipient: str, message: str | bytes, encoding: str | None = None, *, concat_reference: int = 0,
                   concat_bits: int = 8, request_report: bool = True, validity: int | None = None,
                   message_class: int | None = None, smsc: str | None = None) -> list[EncodedPdu]:
    """SMS-SUBMIT PDUs for a whole message, split into concatenated parts when it does not fit one SMS.

    Text gets GSM-7 when it fits the alphabet, else UCS-2 (or `encoding` when given); bytes are sent as 8-bit
    data. `concat_reference` (0-255, or 0-65535 with `concat_bits=16`) is the caller's: it must differ between
    consecutive multi-part messages to the same recipient. Raises PduError.
    """
    if isinstance(message, (bytes, bytearray)):
        encoding = BINARY
        try:
            parts: list = textmod.split_data(bytes(message), concat_bits)
        except textmod.TextError as error:
            raise PduError(str(error)) from None
    else:
        encoding = encoding or textmod.choose_encoding(message)
        try:
            parts = textmod.split(message, encoding, concat_bits)
        except textmod.TextError as error:
            raise PduError(str(error)) from None
    total = len(parts)
    return [
        encode_submit(recipient, part, encoding, request_report=request_report, validity=validity,
                      concat=Concat(concat_reference, total, index, concat_bits) if total > 1 else None,
                      message_class=message_class, smsc=smsc)
        for index, part in enumerate(parts, start=1)
    ]


def encode_deliver(sender: str, payload: str | bytes, encoding: str = GSM7, *, timestamp: dt.datetime,
                   concat: Concat | None = None, ports: Ports | None = None, message_class: int | None = None,
                   status_report_indication: bool = False, smsc: str | None = None) -> EncodedPdu:
    """One SMS-DELIVER as a network would hand it to a modem (the simulator's inbound path). Raises PduError."""
    if encoding not in textmod.ENCODINGS:
        raise PduError(f"unknown encoding {encoding!r}; expected one of {', '.join(textmod.ENCODINGS)}")
    user_data, _ = _encode_user_data(payload, encoding, concat, ports)
    first = MTI_DELIVER | 0x04 | (0x20 if status_report_indication else 0) \
        | (0x40 if concat is not None or ports is not None else 0)
    tpdu = bytes([first]) + _encode_sender(sender) + bytes([0x00, _dcs_for(encoding, message_class)]) \
        + _encode_timestamp(timestamp) + user_data
    return EncodedPdu((encode_smsc(smsc) + tpdu).hex().upper(), len(tpdu))


def encode_status_report(reference: int, recipient: str, status_code: int, *, sc_timestamp: dt.datetime,
                         discharge_time: dt.datetime, smsc: str | None = None) -> EncodedPdu:
    """One SMS-STATUS-REPORT as a service centre would send it (the simulator's report path). Raises PduError."""
    if not 0 <= reference <= 255:
        raise PduError(f"message reference {reference} is not 0-255")
    if not 0 <= status_code <= 255:
        raise PduError(f"status {status_code} is not 0-255")
    tpdu = bytes([MTI_STATUS_REPORT | 0x04, reference]) + _encode_address(recipient, "recipient") \
        + _encode_timestamp(sc_timestamp) + _encode_timestamp(discharge_time) + bytes([status_code])
    return EncodedPdu((encode_smsc(smsc) + tpdu).hex().upper(), len(tpdu))


# --- presentation ---------------------------------------------------------------------------------------------

def _plain(value):
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return value.hex().upper()
    if is_dataclass(value):
        return {item.name: _plain(getattr(value, item.name)) for item in fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def as_dict(message: Deliver | Submit | StatusReport) -> dict:
    """A JSON-ready summary for people and APIs: type, number, text, encoding, concat, reference, status, times."""
    out: dict = {"type": message.type, "smsc": message.smsc}
    if isinstance(message, StatusReport):
        out.update(number=message.recipient.number, number_type=message.recipient.type,
                   reference=message.reference, status=message.status, status_code=message.status_code,
                   reason=message.reason, sc_timestamp=_plain(message.sc_timestamp),
                   discharge_time=_plain(message.discharge_time))
        if message.user_data is not None:
            out.update(text=message.user_data.text, encoding=message.user_data.encoding)
        return out
    address = message.sender if isinstance(message, Deliver) else message.recipient
    user_data = message.user_data
    out.update(number=address.number, number_type=address.type, text=user_data.text,
               encoding=user_data.encoding, message_class=message.coding.message_class,
               concat=_plain(user_data.concat), ports=_plain(user_data.ports))
    if user_data.text is None:
        out["data"] = user_data.payload.hex().upper()
    if isinstance(message, Deliver):
        out["timestamp"] = _plain(message.timestamp)
    else:
        out.update(reference=message.reference, request_report=message.request_report,
                   validity=_plain(message.validity))
    other = [element for element in user_data.header
             if element.iei not in (IEI_CONCAT_8, IEI_CONCAT_16, IEI_PORTS_8, IEI_PORTS_16)]
    if other:
        out["header"] = _plain(other)
    return out
