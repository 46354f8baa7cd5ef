import datetime as dt

import pytest
from hypothesis import assume, given, strategies as st

from modemgw import pdu, text
from modemgw.pdu import Concat, PduError, Ports


def zone(hours: float) -> dt.timezone:
    return dt.timezone(dt.timedelta(hours=hours))


# Published PDUs (the TS 23.038 "hellohello" example, dreamfabric's SMS PDU pages, and the vectors that
# python-gsmmodem's and diafaan's documentation use), with what they must decode to.
PUBLISHED = [
    ("0011000B916407281553F80000AA0AE8329BFD4697D9EC37",
     dict(type="submit", smsc=None, number="+46708251358", text="hellohello", encoding="gsm7",
          validity=4 * 86400, request_report=False, reference=0)),
    ("07917283010010F5040BC87238880900F10000993092516195800AE8329BFD4697D9EC37",
     dict(type="deliver", smsc="+27381000015", number="27838890001", text="hellohello",
          timestamp=dt.datetime(1999, 3, 29, 15, 16, 59, tzinfo=zone(2)))),
    ("07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07",
     dict(type="deliver", smsc="+31624000000", number="+31641600986", text="How are you?")),
    ("06917228195339040B917228214365F700003130805120618005D4F29C2E03",
     dict(type="deliver", smsc="+2782913593", number="+27821234567", text="Test2",
          timestamp=dt.datetime(2013, 3, 8, 15, 2, 16, tzinfo=zone(2)))),
    ("07915892000000F0040B915892214365F700007040213252242331493A283D0795C3F33C88FE06C9CB6132885EC6D341EDF27C1E3E97"
     "E7207B3A0C0A5241E377BB1D7693E72E",
     dict(type="deliver", smsc="+85290000000", number="+85291234567",
          text="It is easy to read text messages via AT commands.",
          timestamp=dt.datetime(2007, 4, 12, 23, 25, 42, tzinfo=zone(8)))),
    ("06917228195339040B917228214365F70000313062315352800A800D8A5E98D337A910",
     dict(type="deliver", number="+27821234567", text="@{tést}!")),
    ("07911326040000F0310D0B911326880736F40000A90FF7FBDD454E87CDE1B0DB357EB701",
     dict(type="submit", smsc="+31624000000", number="+31628870634", validity=3 * 86400, reference=13,
          text="www.diafaan.com", request_report=True)),
    ("0006D60B911326880736F4111011719551401110117195714000",
     dict(type="status-report", number="+31628870634", reference=214, status="delivered", status_code=0,
          sc_timestamp=dt.datetime(2011, 1, 11, 17, 59, 15, tzinfo=zone(1)),
          discharge_time=dt.datetime(2011, 1, 11, 17, 59, 17, tzinfo=zone(1)))),
    ("0591721891F1400781721881F800003160526104848059050003C30101916536FB1DCABEEB2074D85E064941B19CAB060319A5C52228"
     "9C96D3D3ED32286C0FA7D96131BBEC024941B19CAB0603DDD36C36A88C87A7E565D0DB0D82C55EB0DB4B068BCD5C20",
     dict(type="deliver", number="2781188", smsc="+2781191",
          text="Hello!You have R 19.50 FREE airtime available. R 19.50 will expire on 01/07/2013. ",
          concat=dict(reference=0xC3, total=1, sequence=1, bits=8))),
    ("07914346466554F601000B914316565811F9000806304253F68449",
     dict(type="submit", number="+34616585119", smsc="+34646456456", text="あ叶葉", encoding="ucs2")),
    ("0591721891F101000B917228214365F700040C48656C6C6F20776F726C6421",
     dict(type="submit", number="+27821234567", text=None, encoding="8bit", data="48656C6C6F20776F726C6421")),
    ("0019000B917228001011F100003170013193008017D474BB3CA787DB70903DCC4E93D3F43C885E9ED301",
     dict(type="submit", text="Timestamp validity test", validity="2013-07-10T13:39:00+02:00")),
]


@pytest.mark.parametrize("hex_pdu, expected", PUBLISHED, ids=[f"vector{i}" for i in range(len(PUBLISHED))])
def test_published_vectors(hex_pdu, expected):
    decoded = pdu.as_dict(pdu.decode(hex_pdu))
    for key, value in expected.items():
        if isinstance(value, dt.datetime):
            value = value.isoformat()
        assert decoded[key] == value, key


def test_ucs2_pdu_whose_length_overruns_is_refused_precisely():
    # A UCS-2 SMS-SUBMIT captured with UDL 0xA0 (160 octets) for 10 octets of data.
    with pytest.raises(PduError, match=r"user data length 160 octets is more than 140 \(at octet 13\)"):
        pdu.decode("0041010C910661345542F60008A0050003000301306F3044")


@pytest.mark.parametrize("raw, expected", [
    ("51117200000000", dt.datetime(2015, 11, 27, tzinfo=zone(0))),
    ("51117200000080", dt.datetime(2015, 11, 27, tzinfo=zone(2))),
    ("70402132522423", dt.datetime(2007, 4, 12, 23, 25, 42, tzinfo=zone(8))),
    ("7040213252242B", dt.datetime(2007, 4, 12, 23, 25, 42, tzinfo=zone(-8))),
    ("99211132532549", dt.datetime(1999, 12, 11, 23, 35, 52, tzinfo=zone(-3.5))),
])
def test_timestamps_with_positive_and_negative_zones(raw, expected):
    assert pdu._read_timestamp(pdu._Reader(bytes.fromhex(raw)), "t") == expected
    assert pdu._encode_timestamp(expected).hex().upper() == raw


def test_encode_matches_the_published_submit():
    encoded = pdu.encode_submit("+46708251358", "hellohello", request_report=False, validity=4 * 86400)
    assert encoded.hex == "0011000B916407281553F80000AA0AE8329BFD4697D9EC37"
    assert encoded.tpdu_length == 23


@pytest.mark.parametrize("number, body, kwargs, expected", [
    ("+27820001111", "Hello World!", dict(request_report=False),
     "0001000B917228001011F100000CC8329BFD065DDF72363904"),
    ("+123456789", "世界您好！", dict(request_report=False, validity=52 * 7 * 86400, smsc="+44000000000",
                                     encoding="ucs2"),
     "07914400000000F01100099121436587F90008F40A4E16754C60A8597DFF01"),
])
def test_encode_matches_published_vectors(number, body, kwargs, expected):
    encoding = kwargs.pop("encoding", "gsm7")
    assert pdu.encode_submit(number, body, encoding, **kwargs).hex == expected


LOREM = ("Lorem ipsum dolor sit amet, consectetur adipisicing elit, sed do eiusmod tempor incididunt ut labore et "
         "dolore magna aliqua.Ut enim ad minim veniam, quinostrud exercitation ullamco laboris nisi ut aliquip ex "
         "ea commodo consequat.Duis aute irure dolor in reprehenderit in voluptate velit esse cillum doloe eu fugiat "
         "nulla pariatur.Excepteur sint occaecat cupidatat non proident, sunt in culpa qui officia deserunt mollit "
         "anim id est laborum")


def test_concatenated_gsm7_with_fill_bits_matches_published_parts():
    parts = text.split(LOREM)
    encoded = [pdu.encode_submit("+15125551234", part, request_report=False, reject_duplicates=True,
                                 concat=Concat(0, len(parts), index))
               for index, part in enumerate(parts, start=1)]
    assert [item.hex[:40] for item in encoded] == [
        "0045000B915121551532F40000A0050003000301",
        "0045000B915121551532F40000A0050003000302",
        "0045000B915121551532F400008C050003000303",
    ]
    assert encoded[0].hex.endswith("B14AFA7DD")
    assert encoded[2].hex.endswith("79BD0D")


def test_encode_message_splits_and_numbers_parts():
    parts = pdu.encode_message("+4917012345678", "x" * 400, concat_reference=42)
    decoded = [pdu.decode(part.hex) for part in parts]
    assert [item.concat for item in decoded] == [Concat(42, 3, n, 8) for n in (1, 2, 3)]
    assert "".join(item.text for item in decoded) == "x" * 400
    assert all(item.request_report for item in decoded)


def test_sixteen_bit_concatenation_round_trip():
    parts = pdu.encode_message("+4917012345678", "ж" * 200, concat_reference=0xBEEF, concat_bits=16)
    decoded = [pdu.decode(part.hex) for part in parts]
    assert [item.concat for item in decoded] == [Concat(0xBEEF, 4, n, 16) for n in (1, 2, 3, 4)]
    assert "".join(item.text for item in decoded) == "ж" * 200


def test_national_number_and_report_and_validity():
    encoded = pdu.encode_submit("0701234567", "hi", validity=3600)
    decoded = pdu.decode(encoded.hex)
    assert decoded.recipient == pdu.Address("0701234567", "unknown", 0x81)
    assert decoded.request_report is True
    assert decoded.validity == 3600


@pytest.mark.parametrize("seconds, octet, back", [
    (60, 0, 300), (300, 0, 300), (301, 1, 600), (12 * 3600, 143, 12 * 3600), (16 * 3600, 151, 16 * 3600),
    (86400, 167, 86400), (3 * 86400, 169, 3 * 86400), (30 * 86400, 196, 30 * 86400),
    (5 * 7 * 86400, 197, 5 * 7 * 86400), (10**9, 255, 63 * 7 * 86400),
])
def test_relative_validity_rounds_up(seconds, octet, back):
    assert pdu.relative_validity_octet(seconds) == octet
    assert pdu.relative_validity_seconds(octet) == back


def test_eight_bit_data_and_ports_round_trip():
    encoded = pdu.encode_submit("+15551234", b"\x00\x01\xfe\xff", "8bit", ports=Ports(2948, 9200))
    decoded = pdu.decode(encoded.hex)
    assert decoded.user_data.payload == b"\x00\x01\xfe\xff"
    assert decoded.user_data.ports == Ports(2948, 9200, 16)
    assert decoded.text is None


def test_flash_message_class():
    decoded = pdu.decode(pdu.encode_submit("+15551234", "flash", message_class=0).hex)
    assert decoded.coding.message_class == 0


MOMENT = dt.datetime(2026, 11, 25, 18, 30, 5, tzinfo=zone(-3.5))


def test_deliver_with_alphanumeric_sender_round_trip():
    encoded = pdu.encode_deliver("MyBank", "Your code is 1234", timestamp=MOMENT, smsc="+447785016005")
    decoded = pdu.decode(encoded.hex)
    assert decoded.sender == pdu.Address("MyBank", "alphanumeric", 0xD0)
    assert decoded.timestamp == MOMENT
    assert decoded.smsc == "+447785016005"
    assert decoded.text == "Your code is 1234"


def test_status_report_outcomes():
    for code, outcome in [(0x00, "delivered"), (0x01, "delivered"), (0x21, "pending"), (0x30, "pending"),
                          (0x46, "failed"), (0x62, "failed"), (0x80, "failed")]:
        encoded = pdu.encode_status_report(200, "+15551234", code, sc_timestamp=MOMENT, discharge_time=MOMENT)
        report = pdu.decode(encoded.hex)
        assert (report.reference, report.status_code, report.status) == (200, code, outcome)
        assert report.recipient.number == "+15551234"
    assert pdu.status_reason(0x46) == "validity period expired"
    assert pdu.status_reason(0x35) == "service-centre specific status 0x35"


def test_status_report_with_optional_parameters():
    # TP-PI 0x06 (DCS and UDL present), DCS 0 (GSM-7), UDL 2, "hi".
    tpdu = bytes.fromhex("06D60B911326880736F41110117195514011101171957140") + bytes([0, 0x06, 0x00, 0x02]) \
        + pdu.pack_septets(text.gsm7_septets("hi"))
    report = pdu.decode(tpdu.hex())
    assert report.user_data.text == "hi"
    assert report.status == "delivered"


@pytest.mark.parametrize("dcs, encoding, message_class", [
    (0x00, "gsm7", None), (0x04, "8bit", None), (0x08, "ucs2", None), (0x10, "gsm7", 0), (0x11, "gsm7", 1),
    (0x18, "ucs2", 0), (0x0C, "gsm7", None),  # 00xx: general group; alphabet 11 is reserved -> GSM-7
    (0x40, "gsm7", None), (0x48, "ucs2", None), (0x52, "gsm7", 2),  # 01xx: automatic deletion group
    (0xF0, "gsm7", 0), (0xF1, "gsm7", 1), (0xF4, "8bit", 0), (0xF6, "8bit", 2),  # 1111: class group
    (0xC0, "gsm7", None), (0xD8, "gsm7", None), (0xE0, "ucs2", None),  # message waiting groups
    (0x20, "8bit", None),  # compressed: delivered as data, never mis-read as text
])
def test_data_coding_groups(dcs, encoding, message_class):
    coding = pdu.decode_dcs(dcs)
    assert (coding.encoding, coding.message_class) == (encoding, message_class)


def deliver_tpdu(dcs: int, user_data: bytes, first: int = 0x04) -> bytes:
    return bytes([first]) + bytes.fromhex("0B917228214365F7") + bytes([0, dcs]) \
        + bytes.fromhex("31308051206180") + user_data


@pytest.mark.parametrize("dcs", [0x00, 0x40, 0xF0, 0xF1, 0xC8, 0x10])
def test_gsm7_is_decoded_in_every_group(dcs):
    septets = text.gsm7_septets("Group test €")
    tpdu = deliver_tpdu(dcs, bytes([len(septets)]) + pdu.pack_septets(septets))
    assert pdu.decode(tpdu.hex()).text == "Group test €"


@pytest.mark.parametrize("dcs", [0x08, 0x48, 0xE0, 0x19])
def test_ucs2_is_decoded_in_every_group(dcs):
    body = "Ωmega 😀".encode("utf-16-be")
    assert pdu.decode(deliver_tpdu(dcs, bytes([len(body)]) + body).hex()).text == "Ωmega 😀"


def test_unknown_escape_shows_the_basic_character():
    # ESC + 'A' has no extension character: TS 23.038 says show 'A'; ESC ESC shows a space.
    assert text.septets_to_text(bytes([0x1B, 0x41, 0x1B, 0x1B, 0x42])) == "A B"


def test_with_and_without_smsc_and_with_length():
    with_smsc = "07917283010010F5040BC87238880900F10000993092516195800AE8329BFD4697D9EC37"
    without = with_smsc[16:]
    assert pdu.decode(with_smsc).text == pdu.decode(without).text == "hellohello"
    assert pdu.decode(with_smsc, tpdu_length=len(without) // 2).smsc == "+27381000015"
    assert pdu.decode(without, tpdu_length=len(without) // 2).smsc is None
    with pytest.raises(PduError, match="does not fit TPDU length"):
        pdu.decode(with_smsc, tpdu_length=3)


@pytest.mark.parametrize("hex_pdu, message", [
    ("", "PDU is empty"),
    ("0G", "'G' is not a hex digit"),
    ("001", "odd number of digits"),
    ("0003", "message type indicator 3 is reserved"),
    ("0011000B916407281553F80000AA0AE8329BFD4697D9EC", "PDU ends inside user data"),
    ("0011000B916407281553F80000AA0AE8329BFD4697D9EC3700", "unexpected octets after the end"),
    ("00040B917228214365F7000031308051206180A1", "user data length 161 septets is more than 160"),
    ("00040B917228214365F70000313380512061800100", "not a valid date and time"),
    ("0044" "0B917228214365F7" "0008" "31308051206180" "07" "0500030A020141", "odd number of octets"),
    ("0044" "0B917228214365F7" "0000" "31308051206180" "03" "0A0500", "longer than the user data"),
    ("0044" "0B917228214365F7" "0004" "31308051206180" "05" "04000201FF", "element 0x00 has length 2, expected 3"),
])
def test_malformed_pdus_name_what_and_where(hex_pdu, message):
    with pytest.raises(PduError, match=message) as caught:
        pdu.decode(hex_pdu)
    assert caught.value.offset is not None


def test_every_truncation_of_a_valid_pdu_is_a_pdu_error():
    for hex_pdu, _ in PUBLISHED:
        data = bytes.fromhex(hex_pdu)
        for cut in range(len(data)):
            with pytest.raises(PduError):
                pdu.decode(data[:cut])


@pytest.mark.parametrize("bad, message", [
    (dict(recipient="+12ab"), "not a dialling digit"),
    (dict(recipient=""), "recipient is empty"),
    (dict(recipient="+" + "1" * 21), "at most 20"),
    (dict(payload="x" * 161), "one SMS holds 160"),
    (dict(payload="ж" * 71, encoding="ucs2"), "one SMS holds 140"),
    (dict(payload="ж"), "not in the GSM-7 alphabet"),
    (dict(concat=Concat(256, 2, 1)), "does not fit 8 bits"),
    (dict(concat=Concat(1, 2, 3)), "not a valid concatenation position"),
    (dict(validity=0), "validity must be a positive number"),
    (dict(encoding="latin1"), "unknown encoding"),
])
def test_encode_refuses_what_cannot_be_sent(bad, message):
    arguments = dict(recipient="+15551234", payload="hello", encoding="gsm7") | bad
    with pytest.raises(PduError, match=message):
        pdu.encode_submit(arguments.pop("recipient"), arguments.pop("payload"), arguments.pop("encoding"),
                          **arguments)


# --- properties ------------------------------------------------------------------------------------------------

numbers = st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True)


@given(numbers, st.text(max_size=1000), st.integers(0, 255))
def test_any_text_survives_segments_pdus_and_decode(recipient, body, reference):
    parts = pdu.encode_message(recipient, body, concat_reference=reference)
    decoded = [pdu.decode(part.hex, tpdu_length=part.tpdu_length) for part in parts]
    assert "".join(item.text for item in decoded) == body
    assert all(item.recipient.number == recipient for item in decoded)
    if len(parts) > 1:
        assert [item.concat.sequence for item in decoded] == list(range(1, len(parts) + 1))


def test_a_thousand_character_unicode_text_with_emoji_round_trips():
    body = ("Grüße aus Köln 😀🎉 — ünïcödé ✓ 你好 " * 40)[:1000]
    assert len(body) == 1000
    parts = pdu.encode_message("+4917012345678", body)
    assert "".join(pdu.decode(part.hex).text for part in parts) == body
    joined = b"".join(pdu.decode(part.hex).user_data.payload for part in parts)
    assert pdu.decode_payload("ucs2", joined) == body


@given(st.binary(max_size=200))
def test_random_bytes_raise_only_pdu_error(data):
    for decoder in (pdu.decode, pdu.decode_tpdu):
        try:
            decoder(data)
        except PduError:
            pass


@given(st.binary(min_size=1, max_size=200), st.integers(0, 200))
def test_random_bytes_with_a_length_raise_only_pdu_error(data, length):
    try:
        pdu.decode(data, tpdu_length=length)
    except PduError:
        pass


@given(st.text(alphabet="0123456789abcdefABCDEFxyz \n", max_size=120))
def test_random_hex_raises_only_pdu_error(hex_text):
    try:
        pdu.decode(hex_text)
    except PduError:
        pass


@given(st.sampled_from([p for p, _ in PUBLISHED]), st.integers(0, 10**6), st.integers(0, 255))
def test_single_octet_corruption_raises_only_pdu_error(hex_pdu, position, value):
    data = bytearray(bytes.fromhex(hex_pdu))
    data[position % len(data)] = value
    try:
        pdu.decode(bytes(data))
    except PduError:
        pass


@given(st.text(alphabet="ABCXYZabcxyz0189 &@£$€[]-_.", min_size=1, max_size=11))
def test_alphanumeric_sender_round_trip(sender):
    assume(len(text.gsm7_septets(sender)) <= 11 and sender.strip()
           and not sender.replace(" ", "").replace("-", "").lstrip("+").isdigit())
    encoded = pdu.encode_deliver(sender, "x", timestamp=MOMENT)
    assert pdu.decode(encoded.hex).sender.number == sender


def test_packed_gsm7_for_ussd_pads_with_cr():
    packed = pdu.encode_gsm7_packed("1234567")  # 7 septets leave 7 spare bits: a CR fills them
    assert len(packed) == 7
    assert pdu.decode_gsm7_packed(packed) == "1234567"
    assert pdu.decode_gsm7_packed(pdu.encode_gsm7_packed("*100#")) == "*100#"


def test_a_pdu_without_smsc_is_not_misread_as_having_one():
    # Found by review: "04 0B 91 ..." also parses as a 4-octet SMSC field; its type octet lacks bit 8.
    hex_pdu = ("040B919574380185F400004250607080330032E3F7994C0E8BDB6EB2380C08A7C969B5792D260340A0321CD01E03D280B1"
               "9B4C168BC7E2F2B9AD0600D0EA31")
    assert pdu.decode(hex_pdu).sender.number == pdu.decode(hex_pdu, 63).sender.number == "+59478310584"


@pytest.mark.parametrize("call, message", [
    (lambda: pdu.encode_message("+491", bytes(134 * 256)), "at most 255"),
    (lambda: pdu.encode_submit("+491", b"x", "8bit", ports=Ports(70000, 1)), "do not fit 16 bits"),
    (lambda: pdu.encode_deliver("+491", "x", timestamp=dt.datetime(2026, 1, 1, tzinfo=zone(20))), "19:45"),
    (lambda: pdu.encode_deliver("+491", "x", timestamp=dt.datetime(1985, 1, 1, tzinfo=zone(0))), "century"),
    (lambda: pdu.encode_deliver("", "x", timestamp=MOMENT), "is empty"),
])
def test_encoders_raise_only_pdu_error(call, message):
    with pytest.raises(PduError, match=message):
        call()


def test_fractional_validity_rounds_up():
    assert pdu.decode(pdu.encode_message("+491", "x", validity=7200.5)[0].hex).validity == 7500


def test_ussd_keeps_a_wanted_final_cr():
    assert pdu.decode_gsm7_packed(pdu.encode_gsm7_packed("abcdefg\r")) == "abcdefg\r"
