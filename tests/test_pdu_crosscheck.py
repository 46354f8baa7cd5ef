"""Our encoder checked by an independent decoder: python-gsmmodem-new's `pdu` module.

Only where that decoder is right: GSM-7 (with escapes and 8-bit concatenation), BMP-only UCS-2, alphanumeric
senders, timestamps and status reports. Its known faults (emoji, 16-bit references, DCS groups other than 00)
are covered by our own vectors in test_pdu.py instead. Two characters are left out of the texts given to it:
its table has '`' for 0x5F, where TS 23.038 has '§', and it drops the extension form feed (ESC 0x0A); and
its two-digit years pivot at 1969 (Python's strptime), so dates stay before 2069. Its unpacker also drops a
final '@' (septet 0) when the septets (with the header's) fill the last octet exactly, taking it for padding;
`their_text` puts that one '@' back, only where our decoder has it.
"""

import datetime as dt

from gsmmodem import pdu as theirs
from hypothesis import given, strategies as st

from modemgw import pdu, text
from tests.support import GSM7_BASIC, GSM7_EXTENSION

numbers = st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True)
bmp_text = st.text(alphabet=st.characters(max_codepoint=0xFFFF, exclude_categories=["Cs"]), max_size=400)
gsm7_text = st.text(alphabet=(GSM7_BASIC + GSM7_EXTENSION).replace("§", "").replace("\f", ""), max_size=500)
zones = st.integers(-48, 56).map(lambda quarters: dt.timezone(dt.timedelta(minutes=15 * quarters)))
moments = st.builds(dt.datetime, st.integers(2000, 2068), st.integers(1, 12), st.integers(1, 28),
                    st.integers(0, 23), st.integers(0, 59), st.integers(0, 59), tzinfo=zones)


def their_text(parts: list[pdu.EncodedPdu]) -> str:
    texts = []
    for part in parts:
        got = theirs.decodeSmsPdu(part.hex)["text"]
        if got + "@" == pdu.decode(part.hex).text:
            got += "@"  # their known fault: a final '@' (septet 0) that ends on an octet boundary is taken for padding
        texts.append(got)
    return "".join(texts)


@given(numbers, gsm7_text, st.integers(0, 255))
def test_gsm7_messages_decode_the_same(recipient, body, reference):
    parts = pdu.encode_message(recipient, body, concat_reference=reference)
    assert all(pdu.decode(part.hex).user_data.encoding == "gsm7" for part in parts)
    assert their_text(parts) == body
    first = theirs.decodeSmsPdu(parts[0].hex)
    assert first["number"] == recipient
    assert first["tpdu_length"] == parts[0].tpdu_length
    if len(parts) > 1:
        concat = first["udh"][0]
        assert (concat.reference, concat.parts, concat.number) == (reference, len(parts), 1)


@given(numbers, bmp_text)
def test_bmp_ucs2_messages_decode_the_same(recipient, body):
    parts = pdu.encode_message(recipient, body, "ucs2")
    assert their_text(parts) == body


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", min_size=1, max_size=11),
       moments, gsm7_text.filter(lambda body: len(text.gsm7_septets(body)) <= 160))
def test_deliver_sender_time_and_text_decode_the_same(sender, moment, body):
    decoded = theirs.decodeSmsPdu(pdu.encode_deliver(sender, body, timestamp=moment, smsc="+447785016005").hex)
    assert decoded["type"] == "SMS-DELIVER"
    assert decoded["number"] == sender
    assert decoded["smsc"] == "+447785016005"
    assert decoded["text"] == body
    assert decoded["time"] == moment


@given(st.integers(0, 255), numbers, st.integers(0, 255), moments, moments)
def test_status_reports_decode_the_same(reference, recipient, status, sc_time, discharge):
    encoded = pdu.encode_status_report(reference, recipient, status, sc_timestamp=sc_time, discharge_time=discharge)
    decoded = theirs.decodeSmsPdu(encoded.hex)
    assert decoded["type"] == "SMS-STATUS-REPORT"
    assert (decoded["reference"], decoded["number"], decoded["status"]) == (reference, recipient, status)
    assert (decoded["time"], decoded["discharge"]) == (sc_time, discharge)
