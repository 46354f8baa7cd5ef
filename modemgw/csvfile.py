"""Reading the CSV files people upload (compose, the address book): whatever Excel or LibreOffice wrote.

The encoding is detected (UTF-8 with or without a BOM, UTF-16 with a BOM as Excel's "Unicode text" writes, else
Windows-1252, what Excel writes in western Europe), and so is the delimiter (comma, semicolon: Excel's default
where the decimal mark is a comma, or tab). Every row keeps the line of the file it starts on, so an error can
name it the way a person sees the file. The size is checked before anything is decoded; the `csv` module parses
(no regular expressions).

Writing: `guard` is the one formula-safe rule of every CSV the gateway exports (a cell a spreadsheet could run gets
a leading apostrophe; a plain number, such as a phone number, does not), and `unguard` its exact inverse, applied
to every cell `read` returns, so that our own exports come back as they were.
"""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass, field

MAX_BYTES = 5 * 1024 * 1024  # an upload larger than this is refused before it is read
MAX_ROWS = 100_000
DELIMITERS = (",", ";", "\t")
PHONE_COLUMNS = ("to", "phone", "number", "mobile", "msisdn", "tel", "telephone", "cell", "cellphone",
                 "phone number", "mobile number", "mobile phone", "gsm")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}
# A spreadsheet takes a cell that starts with one of these as a formula (CSV injection): `guard` writes it as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class CsvError(ValueError):
    """A file that cannot be read as a table at all (`line` names where, when one line is at fault)."""

    def __init__(self, detail: str, line: int | None = None):
        super().__init__(detail if line is None else f"line {line}: {detail}")
        self.detail = detail
        self.line = line


@dataclass
class Row:
    """One data row: the file `line` it starts on, its cells by column name, and the columns it lacks."""

    line: int
    values: dict[str, str]
    missing: list[str] = field(default_factory=list)  # columns after the row's last cell (a short row)
    extra: int = 0  # cells beyond the header's columns


@dataclass
class Table:
    columns: list[str]
    rows: list[Row]
    delimiter: str
    encoding: str

    @property
    def delimiter_name(self) -> str:
        return DELIMITER_NAMES.get(self.delimiter, repr(self.delimiter))


def decode(data: bytes) -> tuple[str, str]:
    """(text, encoding name) of an uploaded file."""
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8):].decode("utf-8", errors="replace"), "UTF-8"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", errors="replace"), "UTF-16"
    try:
        return data.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError:
        # Windows-1252 leaves five bytes undefined; they become U+FFFD rather than failing the whole file
        return data.decode("cp1252", errors="replace"), "Windows-1252"


def sniff_delimiter(text: str) -> str:
    """The delimiter of the header line: the one of comma, semicolon and tab that occurs most often outside
    quotes (a comma on a tie: the standard's)."""
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for char in text[:65536]:
        if char == '"':
            quoted = not quoted
        elif char in ("\n", "\r") and not quoted:
            if any(counts.values()):
                break
        elif char in counts and not quoted:
            counts[char] += 1
    best = max(DELIMITERS, key=lambda delimiter: (counts[delimiter], delimiter == ","))
    return best


def read(data: bytes, max_rows: int = MAX_ROWS) -> Table:
    """The table in an uploaded CSV file: its header's column names (trimmed; blank names become `column N`)
    and its data rows, blank lines left out. Raises CsvError."""
    if len(data) > MAX_BYTES:
        raise CsvError(f"the file has {len(data):,} bytes; at most {MAX_BYTES:,} can be read")
    text, encoding = decode(data)
    if not text.strip():
        raise CsvError("the file is empty")
    delimiter = sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    columns: list[str] | None = None
    rows: list[Row] = []
    line = 1
    try:
        for cells in reader:
            start, line = line, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            if columns is None:
                columns = [cell.strip() or f"column {position + 1}" for position, cell in enumerate(cells)]
                duplicate = next((name for name in columns if columns.count(name) > 1), None)
                if duplicate is not None:
                    raise CsvError(f"the header names the column {duplicate!r} twice", start)
                continue
            if len(rows) >= max_rows:
                raise CsvError(f"more than {max_rows:,} rows; split the file")
            values = {name: unguard(cell.strip()) for name, cell in zip(columns, cells, strict=False)}
            rows.append(Row(start, values, missing=columns[len(cells):], extra=max(0, len(cells) - len(columns))))
    except csv.Error as error:
        raise CsvError(f"not a readable CSV file ({error})", line) from None
    if columns is None:
        raise CsvError("the file is empty")
    return Table(columns, rows, delimiter, encoding)


NUMBER_SEPARATORS = " .-()"  # what may stand between the digits of a phone number or an amount


def plain_number(cell: str) -> bool:
    """Whether `cell` is only a number: an optional leading + or -, then digits, with spaces, dots, dashes or
    brackets between them (`+44 7700 900123`, `-12.50`, `+1 (555) 010-9999`). A spreadsheet that reads such a
    cell as a formula can at most do arithmetic with it: no function, no reference, no command can be in it.
    One pass over the characters, no regular expression."""
    body = cell[1:] if cell[:1] in ("+", "-") else cell
    if body.isascii() and body.isdigit():  # most: a number in E.164
        return True
    if not body or not body[0].isascii() or not (body[0].isdigit() or body[0] == "("):
        return False
    if not (body[-1].isascii() and (body[-1].isdigit() or body[-1] == ")")):
        return False
    digits = 0
    for char in body:
        if char.isascii() and char.isdigit():
            digits += 1
        elif char not in NUMBER_SEPARATORS:
            return False
    return digits > 0


def _needs_guard(cell: str) -> bool:
    """Whether a spreadsheet could run `cell` (after any `'`s a person put in front, so that `unguard` can tell
    our apostrophe from theirs): it starts with = + - @, a tab or a carriage return and is not a plain number."""
    core = cell.lstrip("'")
    return core[:1] in FORMULA_STARTS and not plain_number(core)


def guard(cell: str) -> str:
    """A cell written so that a spreadsheet shows it as text, never runs it as a formula: one starting with = + - @,
    a tab or a carriage return gets a leading apostrophe, as Excel itself writes it, unless it is a plain number
    (`plain_number`: a phone number in E.164 or an amount stays as it is, so that scripts read it unchanged).
    The one rule of every CSV export (messages, contacts, statistics, compose's rejected rows)."""
    if cell[:1] not in FORMULA_STARTS and cell[:1] != "'":  # most cells: nothing to look at further
        return cell
    return f"'{cell}" if _needs_guard(cell) else cell


def unguard(cell: str) -> str:
    """The cell `guard` wrote, as it was: its leading apostrophe dropped only where `guard` would have added it
    (`unguard(guard(x)) == x` for every text; a person's own `'+44...` or `'plain` stays)."""
    return cell[1:] if cell[:1] == "'" and _needs_guard(cell[1:]) else cell


def phone_column(columns: list[str]) -> str | None:
    """The column that holds the phone numbers, by its name (to, phone, number, mobile, ...; any case)."""
    for wanted in PHONE_COLUMNS:
        for name in columns:
            if name.strip().lower() == wanted:
                return name
    return None


__all__ = ["FORMULA_STARTS", "MAX_BYTES", "PHONE_COLUMNS", "CsvError", "Row", "Table", "decode", "guard",
           "phone_column", "plain_number", "read", "sniff_delimiter", "unguard"]
