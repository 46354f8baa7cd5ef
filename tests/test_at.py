import pytest

from modemgw import at
from modemgw.errors import CmeError, CmsError, CommandError


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
    ("+CMS ERROR: 600", CmsError, 600, True, True),
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
