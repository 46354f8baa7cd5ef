import pytest
from hypothesis import given, strategies as st

from modemgw import at
from modemgw.errors import CmeError, CmsError, CommandError, ResponseError


@pytest.mark.parametrize("line, final", [
    ("OK", True), ("ERROR", True), ("+CME ERROR: 10", True), ("+CMS ERROR: 330", True),
    ("+CMS ERROR: network timeout", True), ("NO CARRIER", True), ("BUSY", True), ("NO ANSWER", True),
    ("NO DIALTONE", True), ("COMMAND NOT SUPPORT", True),
    ("OK then", False), ("NOT OK", False), ("ERRORS", False), ("+CMGS: 12", False), ("", False),
    ("TERROR", False), ("+CME ERRORX", False),
])
def test_final_results_are_anchored(line, final):
    assert at.is_final(line) is final


@pytest.mark.parametrize("line, kind, code, temporary, modem_fault", [
    ("+CMS ERROR: 38", CmsError, 38, True, True),
    ("+CMS ERROR: 1", CmsError, 1, False, False),
    ("+CMS ERROR: 331", CmsError, 331, True, True),
    ("+CMS ERROR: Network timeout", CmsError, 332, True, True),
    ("+CMS ERROR: 304", CmsError, 304, False, False),
    ("+CMS ERROR: 600", CmsError, 600, True, False),  # an unlisted code: one message refused, not the modem
    ("+CME ERROR: 11", CmeError, 11, True, True),
    ("+CME ERROR: SIM not inserted", CmeError, 10, True, True),
    ("+CME ERROR: 515", CmeError, 515, True, True),
    ("+CME ERROR: 21", CmeError, 21, False, False),
])
def test_errors_carry_code_and_class(line, kind, code, temporary, modem_fault):
    error = at.final_error(line)
    assert isinstance(error, kind)
    assert (error.code, error.temporary, error.modem_fault) == (code, temporary, modem_fault)
    assert str(code) in str(error)


def test_plain_error_names_the_command():
    error = at.final_error("COMMAND NOT SUPPORT", "AT+CNMI=2,1,0,2,0")
    assert isinstance(error, CommandError)
    assert str(error) == "AT+CNMI=2,1,0,2,0 answered COMMAND NOT SUPPORT"
    assert at.final_error("OK") is None


@pytest.mark.parametrize("command, prefix", [
    ("AT+CREG?", "+CREG:"), ("at+csq", "+CSQ:"), ("AT^SYSINFO", "^SYSINFO:"), ("AT+CMGS=23", "+CMGS:"),
    ("ATE0", None), ("AT", None),
])
def test_expected_prefix(command, prefix):
    assert at.expected_prefix(command) == prefix


@pytest.mark.parametrize("line, expecting, urc", [
    ('+CMTI: "SM",3', None, True),
    ('+CMTI: "SM",3', "+CMGL:", True),
    ("+CREG: 1", None, True),
    ("+CREG: 0,1", "+CREG:", False),
    ("+CPIN: READY", "+CPIN:", False),
    ("+CPIN: READY", None, True),
    ("^RSSI: 18", "+CSQ:", True),
    ("+CSQ: 20,99", "+CSQ:", False),
    ("+CUSD: 0,\"hi\",15", "+CUSD:", True),
    ("RING", None, True),
    ("SMS Ready", None, True),
    ("+CMGL: 1,0,,23", "+CMGL:", False),
    ("0791447700", "+CMGL:", False),
])
def test_urc_or_reply(line, expecting, urc):
    assert at.is_urc(line, expecting) is urc


def test_urcs_with_a_pdu_line():
    assert at.is_two_line_urc("+CMT: ,24") and at.is_two_line_urc("+CDS: 25")
    assert not at.is_two_line_urc('+CMTI: "SM",1')


@pytest.mark.parametrize("text, params", [
    ('1,"a,b",3', ["1", "a,b", "3"]), ("", [""]), ('"",12,,"x"', ["", "12", "", "x"]),
])
def test_split_params(text, params):
    assert at.split_params(text) == params


def test_parsers():
    assert at.parse_cmgs("+CMGS: 17") == 17
    assert at.parse_cmgs("+CMGS: 255,\"26/01/01,00:00:00+00\"") == 255
    signal = at.parse_csq("+CSQ: 20,99")
    assert (signal.rssi, signal.dbm, signal.bars) == (20, -73, 4)
    assert at.parse_csq("+CSQ: 99,99").dbm is None
    assert at.parse_creg("+CREG: 0,1").registered
    assert at.parse_creg('+CREG: 2,5,"1A2B","01C3D4E5",7').state == "registered (roaming)"
    assert at.parse_creg('+CREG: 2,"1A2B","01C3D4E5"', reply=False).state == "searching"
    assert at.parse_cops('+COPS: 0,0,"SimNet",7') == "SimNet"
    assert at.parse_cops("+COPS: 0") is None
    assert at.parse_csca('+CSCA: "+447700900999",145') == "+447700900999"


def test_parse_cmgl_and_cmgr():
    lines = ["+CMGL: 1,0,,23", "0011AA", "+CMGL: 4,1,\"x\",5", "0022BB"]
    assert [(e.index, e.stat, e.length, e.pdu) for e in at.parse_cmgl(lines)] == [
        (1, 0, 23, "0011AA"), (4, 1, 5, "0022BB")]
    entry = at.parse_cmgr(["+CMGR: 1,,23", "0011AA"], 7)
    assert (entry.index, entry.stat, entry.length, entry.pdu) == (7, 1, 23, "0011AA")
    assert at.parse_cmgr([], 7) is None


def test_parse_urc():
    urc = at.parse_urc('+CMTI: "SM",3')
    assert (urc.name, urc.params) == ("+CMTI", ("SM", "3"))
    assert at.urc_storage_index(urc) == ("SM", 3)
    assert at.urc_pdu_length(at.parse_urc("+CMT: ,24", pdu="00")) == 24
    assert at.parse_urc("RING").name == "RING"


def test_quote_refuses_what_cannot_be_quoted():
    assert at.quote("*100#") == '"*100#"'
    with pytest.raises(ValueError):
        at.quote('a"b')


# --- modem text that does not parse -------------------------------------------------------------------------------

@pytest.mark.parametrize("parse, line", [
    (at.parse_cmgs, "+CMGS: 5²"), (at.parse_cmgs, "+CMGS: ٣"), (at.parse_cmgs, "+CMGS: 1_0"),
    (at.parse_csq, "+CSQ: ５,99"), (at.parse_csq, "+CSQ: 2,9⁹"), (at.parse_csq, "+CSQ:"),
    (at.parse_creg, "+CREG: 0,١"), (at.parse_creg, "+CREG: 0"), (at.parse_creg, "+CREG: 0,-1"),
    (at.parse_cmgs, "+CMGS: " + "9" * 5000),  # int() refuses that many digits with ValueError
    (lambda line: at.urc_storage_index(at.parse_urc(line)), '+CMTI: "SM",²'),
    (lambda line: at.urc_storage_index(at.parse_urc(line)), '+CMTI: "SM"'),
    (lambda line: at.urc_pdu_length(at.parse_urc(line)), "+CMT"),
    (lambda line: at.urc_pdu_length(at.parse_urc(line)), "+CDS: 2 5"),
    (lambda line: at.parse_cmgr([line, "00"], 1), "+CMGR: 1"),
    (lambda line: at.parse_cmgr([line, "00"], 1), "+CMGR: 1,,٢٣"),
])
def test_modem_numbers_are_ascii_digits_and_anything_else_is_a_response_error(parse, line):
    with pytest.raises(ResponseError) as caught:
        parse(line)
    assert caught.value.line == line


@pytest.mark.parametrize("line, code, reason", [
    ("+CMS ERROR: 5²00", None, "5²00"),
    ("+CMS ERROR: ٣٣١", None, "٣٣١"),
    ("+CME ERROR: 1_0", None, "1_0"),
    ("+CMS ERROR: 331", 331, "no network service"),
    ("+CME ERROR: 0010", 10, "SIM not inserted"),
])
def test_error_codes_are_ascii_digits(line, code, reason):
    error = at.final_error(line)
    assert (error.code, error.reason) == (code, reason)


def test_a_garbled_cmgl_entry_is_left_out_and_the_others_are_listed(caplog):
    lines = ["+CMGL: 1,0,,23", "0011AA", "+CMGL: 2", "0022BB", "+CMGL: 3,1,,2³", "0033CC",
             "+CMGL: 4,1,,5", "+CMGL: 5,0,,7", "0055EE"]
    entries = at.parse_cmgl(lines)
    assert [(e.index, e.stat, e.length, e.pdu) for e in entries] == [
        (1, 0, 23, "0011AA"), (4, 1, 5, ""), (5, 0, 7, "0055EE")]  # entry 4 came without its PDU line
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 2
    assert "'+CMGL: 2'" in warnings[0] and "'+CMGL: 3,1,,2³'" in warnings[1]


def test_ussd_fields_are_ascii_digits():
    from modemgw.modem import decode_ussd

    with pytest.raises(ResponseError):
        decode_ussd(at.parse_urc('+CUSD: ²,"x",15'))
    assert decode_ussd(at.parse_urc('+CUSD: 0,"hi",1٥')).dcs == 15  # not a coding scheme: the text as it came
    assert decode_ussd(at.parse_urc('+CUSD: 0,"hi",15')).text == "hi"


# Fuzz: lines as a modem (or line noise) might send them, over every parser of modem text.
URC_LIKE_PREFIXES = ["+CMTI:", "+CDSI:", "+CMT:", "+CDS:", "+CUSD:", "+CMGL:", "+CMGR:", "+CREG:", "+CGREG:",
                     "+CSQ:", "+COPS:", "+CMGS:", "+CSCA:", "+CME ERROR:", "+CMS ERROR:", "RING", "OK", "ERROR", ""]
UNICODE_DIGITS = "²³¹٣٥５０①⁵߃႑𝟘"
field = st.one_of(
    st.text(alphabet="0123456789" + UNICODE_DIGITS + ' ,"_-+.:;ABCFSMabc\x1b\t', max_size=8),
    st.sampled_from(["", '""', '"SM"', '"SR"', "5²00", "٣", "５", "1_0", " 1", "-1", "+1", "0x1F", "1e3",
                     "9" * 30, "00", "99", "15", "72", "0791", '"a,b"', '"']),
    st.integers(min_value=0, max_value=600).map(str),
)
urc_like_line = st.builds(lambda prefix, space, fields: prefix + space + ",".join(fields),
                          st.sampled_from(URC_LIKE_PREFIXES), st.sampled_from(["", " ", "  "]),
                          st.lists(field, max_size=6))
pdu_like_line = st.one_of(urc_like_line, st.text(alphabet="0123456789ABCDEF" + UNICODE_DIGITS, max_size=12))


def _parsers(line: str, following: list[str]):
    from modemgw.modem import decode_ussd

    urc = at.parse_urc(line, pdu=following[0] if following else None)
    return [
        lambda: at.is_final(line), lambda: at.is_urc(line, "+CREG:"), lambda: at.is_two_line_urc(line),
        lambda: at.final_error(line, "AT"),
        lambda: urc, lambda: at.urc_storage_index(urc), lambda: at.urc_pdu_length(urc),
        lambda: at.parse_cmgl([line, *following]), lambda: at.parse_cmgr([line, *following], 1),
        lambda: at.parse_creg(line), lambda: at.parse_creg(line, reply=False), lambda: at.parse_csq(line),
        lambda: at.parse_cops(line), lambda: at.parse_cmgs(line), lambda: at.parse_csca(line),
        lambda: decode_ussd(urc), lambda: decode_ussd(urc, packed=True),
    ]


@given(urc_like_line, st.lists(pdu_like_line, max_size=4))
def test_the_at_parsers_raise_nothing_but_their_parse_error(line, following):
    for parse in _parsers(line, following):
        try:
            parse()
        except ResponseError as error:
            assert error.line in [line, *following]


@pytest.mark.parametrize("command, shown", [
    ("AT+CPIN=1234", "AT+CPIN=***"),
    ('at+cpin="1234"', "AT+CPIN=***"),
    ("AT+CSQ;+CPIN=1234", "AT+CSQ;+CPIN=***"),          # a compound line: the PIN is not at the start
    ('ATE0+CLCK="SC",0,"1234"', "ATE0+CLCK=***"),
    ("ATD**04*1111*2222*2222#", "ATD**04***"),           # the supplementary-service code that changes a PIN
    ("AT+CPIN?", "AT+CPIN?"), ("AT+CPIN=?", "AT+CPIN=?"), ("AT+CSQ", "AT+CSQ"),
])
def test_secrets_are_masked_wherever_they_sit_in_a_command_line(command, shown):
    assert at.redact(command) == shown
