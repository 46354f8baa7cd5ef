"""The address book as the gateway offers it to every edge: contacts, groups, their import and export (CSV, vCard).

`AddressBook` is a part of `Gateway` (a mixin over `self.store`); edges call these methods on the gateway.

A contact is a name, one number (E.164: normalised here, once, with the gateway's `default_region` and
`strict_numbers`), free fields (which fill `{placeholders}` when a message goes to the contact, so their names
are what a placeholder can name: a letter or `_`, then letters, digits and `_`), notes, and the groups it is in.
Every contact handed to an edge carries `opted_out` (its number is on the opt-out list).

Files people bring, and what becomes of them:
- CSV (whatever Excel or LibreOffice wrote: `modemgw.csvfile` finds the encoding and the delimiter). One column
  holds the number (`number`, else `phone`, `mobile`, `to`, `telefon`, ...: PHONE_COLUMNS); `name` (or `full
  name`, `display name`; else `first name` and `last name` joined) the name; `groups` (or `group`, `categories`)
  group names separated by `|`; `notes` (or `note`) the notes (column names in any case, `_` or `-` for blanks, and
  their German, French, Spanish and Italian names too); every other column becomes a free field named after the
  column (characters a placeholder cannot hold become `_`: `First Name` -> `First_Name`).
- vCard 3.0 and 4.0 (2.1's quoted-printable too): FN (else N) the name, TEL the number (the first of type
  cell/mobile, else the first), NOTE the notes, CATEGORIES the groups, EMAIL and ORG the fields `email` and
  `company`, and our own `X-MODEMGW-FIELD;X-NAME=<field>:<value>` any other field (so an export comes back whole).
A number already in the book updates that contact (its fields merged, its memberships added); a row or card that
cannot be taken is reported with its line and why, and the rest is imported. Exports are CSV (UTF-8 with a BOM,
so that Excel reads it as such; formula-safe by `csvfile.guard`: a cell that starts with `=`, `+`, `-`, `@`, a tab or
a carriage return gets a `'` in front, so that no spreadsheet runs it as a formula, unless it is a plain number such
as `+447700900123`; the import takes that `'` off again) and vCard 3.0.
"""

from __future__ import annotations

import csv
import io
import quopri
import time
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modemgw import csvfile, numbers
from modemgw.store import Duplicate, NotFound

if TYPE_CHECKING:
    from modemgw.settings import GatewaySettings
    from modemgw.store import Store

MAX_NAME = 100
MAX_NOTES = 2000
MAX_FIELDS = 30
MAX_FIELD_NAME = 40
MAX_FIELD_VALUE = 500
MAX_GROUP_NAME = 60
MAX_DESCRIPTION = 500
MAX_SEARCH = 100
MAX_LIST = 1000  # contacts in one call of `contacts` (the API's pages hold at most 500)
MAX_IMPORT_BYTES = csvfile.MAX_BYTES  # 5 MiB
MAX_IMPORT_CONTACTS = 50_000
MAX_IMPORT_GROUPS = 1000  # different group names one import may name
MAX_MEMBERS_AT_ONCE = 50_000
FORMATS = ("csv", "vcard")
# Field names a contact cannot have: they are the columns of an export (a field of that name would come back as
# the name, the number, ...).
RESERVED_FIELDS = ("name", "number", "groups", "notes")
GROUP_SEPARATOR = "|"  # between group names in a CSV cell
CONTACT_CHANGES = ("name", "number", "fields", "notes", "groups")
GROUP_CHANGES = ("name", "description")

# CSV columns with a role, by their name in lower case with `_` and `-` read as spaces: the first present wins.
# Besides English, the names German, French, Spanish and Italian exports use (Excel, Outlook, Google Contacts).
PHONE_COLUMNS = ("number", *csvfile.PHONE_COLUMNS, "mobile phone", "primary phone", "phone 1 value",
                 "business phone", "home phone", "telefon", "handy", "mobil", "mobiltelefon", "telefonnummer",
                 "handynummer", "rufnummer", "téléphone", "portable", "teléfono", "móvil", "celular", "telefono",
                 "cellulare", "numero", "número")
NAME_COLUMNS = ("name", "full name", "fullname", "display name", "contact name", "nom complet", "nombre completo")
FIRST_NAME_COLUMNS = ("first name", "firstname", "given name", "forename", "vorname", "prénom", "nombre")
LAST_NAME_COLUMNS = ("last name", "lastname", "surname", "family name", "nachname", "nom", "apellido",
                     "apellidos", "cognome")
GROUP_COLUMNS = ("groups", "group", "categories", "gruppen", "gruppe", "kategorien", "groupes", "grupos")
NOTES_COLUMNS = ("notes", "note", "notiz", "notizen", "bemerkung", "notas")


class BookError(ValueError):
    """A contact, group, import or export request that breaks a rule: `detail` says what to fix, `field` names
    the input at fault."""

    def __init__(self, detail: str, field: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.field = field


# --- the rules for one value ----------------------------------------------------------------------------------

def _one_line(value: Any, what: str, limit: int, field_name: str) -> str:
    """`value` as one line of text (runs of blanks, tabs and line breaks become one space), 1 to `limit`
    characters. Raises BookError."""
    if not isinstance(value, str):
        raise BookError(f"{what} must be text", field_name)
    if len(value) > limit * 4:  # before any work on it
        raise BookError(f"{what} is longer than {limit} characters", field_name)
    text = " ".join(value.split())
    if not text:
        raise BookError(f"{what} is empty", field_name)
    if len(text) > limit:
        raise BookError(f"{what} is {len(text)} characters long; at most {limit}", field_name)
    if any(char < " " or char == "\x7f" for char in text):
        raise BookError(f"{what} has a control character", field_name)
    return text


def check_name(value: Any) -> str:
    return _one_line(value, "the name", MAX_NAME, "name")


def check_group_name(value: Any, field_name: str = "name") -> str:
    name = _one_line(value, "the group name", MAX_GROUP_NAME, field_name)
    if GROUP_SEPARATOR in name:
        raise BookError(f"a group name cannot hold {GROUP_SEPARATOR!r} (it separates group names in CSV files)",
                        field_name)
    return name


def check_notes(value: Any) -> str:
    if not isinstance(value, str):
        raise BookError("the notes must be text", "notes")
    if len(value) > MAX_NOTES:
        raise BookError(f"the notes are {len(value)} characters long; at most {MAX_NOTES}", "notes")
    return value.replace("\r\n", "\n").strip()


def field_name_problem(name: Any) -> str | None:
    """Why `name` cannot name a free field, or None: 1-40 of ASCII letters, digits and `_`, not starting with a
    digit (so that `{name}` is a placeholder), and none of name, number, groups, notes."""
    if not isinstance(name, str) or not 0 < len(name) <= MAX_FIELD_NAME:
        return f"a field name must be 1 to {MAX_FIELD_NAME} characters"
    if not all(char.isascii() and (char.isalnum() or char == "_") for char in name) or name[0].isdigit():
        return (f"the field name {name!r} may hold only letters, digits and _ (and not start with a digit), so "
                f"that {{{name}}} can be a placeholder")
    if name.lower() in RESERVED_FIELDS:
        return f"{name!r} cannot be a field name: the contact's {name.lower()} has its own place"
    return None


def check_fields(value: Any) -> dict[str, str]:
    """Free fields: an object of at most 30 names (see field_name_problem) to text of at most 500 characters
    (numbers are taken as their text). Raises BookError."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BookError("the fields must be an object of names to values", "fields")
    if len(value) > MAX_FIELDS:
        raise BookError(f"{len(value)} fields; a contact has at most {MAX_FIELDS}", "fields")
    fields: dict[str, str] = {}
    for name, item in value.items():
        problem = field_name_problem(name)
        if problem:
            raise BookError(problem, "fields")
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            item = str(item)
        if not isinstance(item, str):
            raise BookError(f"the field {name!r} must be text", "fields")
        if len(item) > MAX_FIELD_VALUE:
            raise BookError(f"the field {name!r} is {len(item)} characters long; at most {MAX_FIELD_VALUE}",
                            "fields")
        fields[name] = item.strip()
    return fields


def field_name_for(column: str) -> str:
    """The free field a CSV column becomes: accents dropped (`Größe` -> `Grosse`), then each run of characters a
    placeholder cannot hold turned into one `_` (`First Name` -> `First_Name`, `2nd phone` -> `_2nd_phone`); ""
    when nothing is left."""
    out: list[str] = []
    plain = unicodedata.normalize("NFKD", column.strip()[:MAX_FIELD_NAME * 2].replace("ß", "ss"))
    for char in plain:
        if unicodedata.combining(char):
            continue
        if char.isascii() and (char.isalnum() or char == "_"):
            out.append(char)
        elif out and out[-1] != "_":
            out.append("_")
    name = "".join(out).strip("_")[:MAX_FIELD_NAME].rstrip("_")
    return f"_{name}"[:MAX_FIELD_NAME] if name[:1].isdigit() else name


def _legacy_number(value: str) -> str:
    """A phone number cell as exports before the plain-number rule wrote it (`'+447700900123`): the apostrophe
    off, as no phone number holds one."""
    return value[1:] if value[:1] == "'" and csvfile.plain_number(value[1:]) else value


def _column_key(column: str) -> str:
    return " ".join(column.lower().replace("_", " ").replace("-", " ").split())


# --- reading files -------------------------------------------------------------------------------------------

@dataclass
class _Candidate:
    """One contact as a file gives it (not checked yet): the file `line` it starts on."""

    line: int
    number: str
    name: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    notes: str = ""
    groups: list[str] = field(default_factory=list)
    problem: str | None = None  # why it cannot be taken, when the file already says so


@dataclass
class _Roles:
    """Which CSV column plays which part; `fields` maps each other column to its field."""

    phone: str
    name: str | None
    first: str | None
    last: str | None
    groups: str | None
    notes: str | None
    fields: dict[str, str]


def _roles(columns: list[str]) -> _Roles:
    """The columns' parts. Raises BookError (no phone column, too many fields)."""
    keys = {column: _column_key(column) for column in columns}

    def first_of(wanted: tuple[str, ...], taken: set[str]) -> str | None:
        for key in wanted:
            for column in columns:
                if keys[column] == key and column not in taken:
                    return column
        return None

    phone = first_of(PHONE_COLUMNS, set())
    if phone is None:
        raise BookError(f"no column holds the phone numbers: name one of {', '.join(PHONE_COLUMNS[:10])}, ...",
                        "file")
    name = first_of(NAME_COLUMNS, {phone})
    groups = first_of(GROUP_COLUMNS, {phone})
    notes = first_of(NOTES_COLUMNS, {phone})
    first = first_of(FIRST_NAME_COLUMNS, {phone})
    last = first_of(LAST_NAME_COLUMNS, {phone})
    special = {phone, name, groups, notes}
    fields: dict[str, str] = {}
    used = set(RESERVED_FIELDS)
    for column in columns:
        if column in special:
            continue
        base = field_name_for(column)
        if not base:
            raise BookError(f"the column {column!r} cannot name a field: give it a name with letters or digits",
                            "file")
        candidate, suffix = base, 2
        while candidate.lower() in used:
            candidate = f"{base[:MAX_FIELD_NAME - 1 - len(str(suffix))]}_{suffix}"
            suffix += 1
        used.add(candidate.lower())
        fields[column] = candidate
    if len(fields) > MAX_FIELDS:
        raise BookError(f"the file has {len(fields)} columns besides number, name, groups and notes; a contact has "
                        f"at most {MAX_FIELDS} fields", "file")
    return _Roles(phone, name, first, last, groups, notes, fields)


def _csv_candidates(data: bytes) -> tuple[list[_Candidate], dict[str, str]]:
    """The contacts of a CSV file, and which column became which field. Raises BookError."""
    try:
        table = csvfile.read(data, max_rows=MAX_IMPORT_CONTACTS)
    except csvfile.CsvError as error:
        raise BookError(str(error), "file") from None
    roles = _roles(table.columns)
    found = []
    for row in table.rows:
        values = row.values  # formula-safe cells of our own exports are read back as they were (csvfile.unguard)
        candidate = _Candidate(row.line, _legacy_number(values.get(roles.phone, "")))
        if row.extra:
            candidate.problem = (f"{row.extra} more cell(s) than the header has columns (a value with an unquoted "
                                 f"{table.delimiter_name}?)")
        if roles.name:
            candidate.name = values.get(roles.name, "")
        if not candidate.name.strip():
            candidate.name = " ".join(values.get(column, "") for column in (roles.first, roles.last) if column)
        if roles.notes:
            candidate.notes = values.get(roles.notes, "")
        if roles.groups:
            candidate.groups = [name for name in values.get(roles.groups, "").split(GROUP_SEPARATOR) if name.strip()]
        candidate.fields = {field_name: values[column] for column, field_name in roles.fields.items()
                            if values.get(column)}
        found.append(candidate)
    return found, roles.fields


# vCard: RFC 6350 (4.0), RFC 2426 (3.0), and 2.1's quoted-printable, read character by character (no regular
# expressions); property names are compared in lower case.

def _vcard_lines(text: str) -> list[tuple[int, str]]:
    """Logical lines with the file line each starts on: folded lines (a line starting with a blank continues
    the one before) joined, and 2.1's quoted-printable soft line breaks (`=` at the end) too. Parts are joined
    once per logical line (a photo folded into thousands of lines must not cost quadratic time)."""
    lines: list[tuple[int, list[str], bool]] = []  # (first line, parts, quoted-printable)
    for number, raw in enumerate(text.split("\n"), start=1):
        raw = raw.removesuffix("\r")
        if raw[:1] in (" ", "\t") and lines:
            lines[-1][1].append(raw[1:])
        elif lines and lines[-1][2] and lines[-1][1][-1].endswith("="):
            parts = lines[-1][1]
            parts[-1] = parts[-1][:-1]
            parts.append(raw)
        elif raw.strip():
            lines.append((number, [raw], _quoted_printable(raw)))
    return [(number, "".join(parts)) for number, parts, _ in lines]


def _quoted_printable(line: str) -> bool:
    head = line[:line.find(":")] if ":" in line else ""
    return "quoted-printable" in head.lower()


def _split_unquoted(text: str, separator: str) -> list[str]:
    """`text` split at `separator`s outside double quotes."""
    parts, current, quoted = [], [], False
    for char in text:
        if char == '"':
            quoted = not quoted
            current.append(char)
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _content_line(line: str) -> tuple[str, dict[str, list[str]], str] | None:
    """(property name in lower case without its group, parameters {name: values, lower-case names}, raw value),
    or None for a line with no `:` outside quotes."""
    quoted = False
    for position, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char == ":" and not quoted:
            head, value = line[:position], line[position + 1:]
            break
    else:
        return None
    name, *raw_params = _split_unquoted(head, ";")
    params: dict[str, list[str]] = {}
    for raw in raw_params:
        key, equals, values = raw.partition("=")
        if not equals:  # 2.1: TEL;CELL:...
            key, values = "type", key
        params.setdefault(key.strip().lower(), []).extend(  # TYPE=cell,voice and TYPE="cell,voice" alike
            piece.strip() for item in _split_unquoted(values, ",") for piece in item.strip().strip('"').split(","))
    return name.rpartition(".")[2].strip().lower(), params, value


def _unescape_parts(value: str, separators: str = "") -> list[str]:
    r"""`value` unescaped (`\n` and `\N` a line break, `\,` `\;` `\\` the character), split at the `separators`
    that are not escaped."""
    parts, current = [], []
    escaped = False
    for char in value:
        if escaped:
            current.append("\n" if char in "nN" else char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in separators:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    return _unescape_parts(value)[0]


def _decoded(value: str, params: dict[str, list[str]]) -> str:
    """A 2.1 value in quoted-printable, decoded in its CHARSET (UTF-8 when none or unknown)."""
    if "quoted-printable" not in [item.lower() for item in params.get("encoding", [])]:
        return value
    raw = quopri.decodestring(value.encode("ascii", errors="replace"))
    charset = (params.get("charset") or ["utf-8"])[0]
    try:
        return raw.decode(charset, errors="replace")
    except LookupError:
        return raw.decode("utf-8", errors="replace")


def _tel(value: str) -> str:
    """A TEL value as dialled: 4.0's `tel:` URI without its scheme and parameters (`;ext=...`)."""
    if value[:4].lower() == "tel:":
        value = value[4:].partition(";")[0]
    return value.strip()


def _vcard_candidate(line: int, properties: list[tuple[str, dict[str, list[str]], str]]) -> _Candidate:
    candidate = _Candidate(line, "")
    full_name = structured = ""
    mobile = phone = None
    for name, params, raw in properties:
        value = _decoded(raw, params)
        types = {item.lower() for item in params.get("type", [])}
        if name == "fn" and not full_name:
            full_name = _unescape(value)
        elif name == "n" and not structured:
            family, given, additional, prefix, suffix, *_ = [*_unescape_parts(value, ";"), "", "", "", "", ""]
            structured = " ".join(part for part in (prefix, given, additional, family, suffix) if part.strip())
        elif name == "tel":
            number = _tel(_unescape(value))
            if number and phone is None:
                phone = number
            if number and mobile is None and types & {"cell", "mobile"}:
                mobile = number
        elif name == "note":
            candidate.notes = "\n".join(filter(None, (candidate.notes, _unescape(value))))
        elif name == "categories":
            candidate.groups += [group for group in _unescape_parts(value, ",") if group.strip()]
        elif name == "email" and "email" not in candidate.fields:
            candidate.fields["email"] = _unescape(value).strip()
        elif name == "org" and "company" not in candidate.fields:
            candidate.fields["company"] = _unescape_parts(value, ";")[0].strip()
        elif name == "x-modemgw-field":
            candidate.fields[(params.get("x-name") or [""])[0]] = _unescape(value)
    candidate.number = mobile or phone or ""
    candidate.name = full_name.strip() or structured
    return candidate


def _vcard_candidates(data: bytes) -> list[_Candidate]:
    """The contacts of a vCard file (one card or many). Raises BookError."""
    if len(data) > MAX_IMPORT_BYTES:
        raise BookError(f"the file has {len(data):,} bytes; at most {MAX_IMPORT_BYTES:,} can be imported", "file")
    text, _ = csvfile.decode(data)
    found: list[_Candidate] = []
    card: list[tuple[str, dict[str, list[str]], str]] | None = None
    start = 0
    for line, content in _vcard_lines(text):
        parsed = _content_line(content)
        if parsed is None:
            continue
        name, _, value = parsed
        if name == "begin" and value.strip().lower() == "vcard":
            if card is not None:
                found.append(_Candidate(start, "", problem="this card has no END:VCARD"))
            if len(found) >= MAX_IMPORT_CONTACTS:
                raise BookError(f"more than {MAX_IMPORT_CONTACTS:,} cards; split the file", "file")
            card, start = [], line
        elif name == "end" and value.strip().lower() == "vcard" and card is not None:
            found.append(_vcard_candidate(start, card))
            card = None
        elif card is not None:
            card.append(parsed)
    if card is not None:
        found.append(_Candidate(start, "", problem="this card has no END:VCARD"))
    if not found:
        raise BookError("no vCard in the file (no card starts with a line begin:vcard)", "file")
    return found


def file_format(data: bytes, filename: str = "") -> str:
    """"vcard" for a vCard file (named .vcf or .vcard, or starting with its first line), else "csv"."""
    if filename.lower().endswith((".vcf", ".vcard")):
        return "vcard"
    start, _ = csvfile.decode(data[:256])
    return "vcard" if start.lstrip("\ufeff \t\r\n").lower().startswith("begin:vcard") else "csv"


# --- writing files -------------------------------------------------------------------------------------------

def export_csv(contacts: list[dict]) -> str:
    """The contacts as CSV: name, number, groups (separated by `|`), notes, then every field that any of them has
    (in name order); formula-safe; with a UTF-8 BOM for Excel."""
    field_names = sorted({name for contact in contacts for name in contact["fields"]})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["name", "number", "groups", "notes", *field_names])
    for contact in contacts:
        cells = [contact["name"], contact["number"], GROUP_SEPARATOR.join(contact["groups"]), contact["notes"],
                 *(contact["fields"].get(name, "") for name in field_names)]
        writer.writerow([csvfile.guard(cell) for cell in cells])
    return "\ufeff" + out.getvalue()


def _vcard_escape(value: str) -> str:
    return (value.replace("\\", "\\\\").replace("\r\n", "\n").replace("\n", "\\n").replace(",", "\\,")
            .replace(";", "\\;"))


def _folded(line: str) -> str:
    """A content line folded at 75 octets of UTF-8 (RFC 6350 3.2), never inside a character; CRLF after."""
    out: list[str] = []
    current: list[str] = []
    size = 0
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > 75:
            out.append("".join(current))
            current, size = [" "], 1
        current.append(char)
        size += width
    out.append("".join(current))
    return "\r\n".join(out) + "\r\n"


def _property(name: str, value: str) -> str:
    """One vCard line: `name` (with its parameters, written in lower case here) upper-cased, and its value."""
    return _folded(f"{name.upper()}:{value}")


def export_vcard(contacts: list[dict]) -> str:
    """The contacts as vCard 3.0 (what phones and mail programs import most widely)."""
    out = []
    for contact in contacts:
        given, _, family = contact["name"].rpartition(" ")
        out += [_property("begin", "VCARD"), _property("version", "3.0"),
                _property("fn", _vcard_escape(contact["name"])),
                _property("n", f"{_vcard_escape(family)};{_vcard_escape(given)};;;"),
                _property("tel;type=cell", contact["number"])]
        if contact["notes"]:
            out.append(_property("note", _vcard_escape(contact["notes"])))
        if contact["groups"]:
            out.append(_property("categories", ",".join(_vcard_escape(name) for name in contact["groups"])))
        for name, value in contact["fields"].items():
            out.append(_folded(f"X-MODEMGW-FIELD;X-NAME={name}:{_vcard_escape(value)}"))
        out.append(_property("end", "VCARD"))
    return "".join(out)


# --- the gateway's part ----------------------------------------------------------------------------------------

class AddressBook:
    """Contacts and groups, through the gateway. Raises BookError (a request that breaks a rule), NotFound (no
    such contact or group), Duplicate (a number or a group name that is taken), StoreError."""

    store: Store
    settings: GatewaySettings

    # --- numbers and views ---

    def _book_number(self, raw: Any) -> str:
        if not isinstance(raw, str):
            raise BookError("the number must be text", "number")
        try:
            return numbers.normalize(raw, self.settings.default_region, self.settings.strict_numbers)
        except numbers.NumberError as error:
            raise BookError(f"the number: {error}", "number") from None

    def _marked(self, contacts: list[dict]) -> list[dict]:
        """Contacts with `opted_out` (their number is on the opt-out list)."""
        opted = self.store.optouts_among([contact["number"] for contact in contacts])
        return [contact | {"opted_out": contact["number"] in opted} for contact in contacts]

    def _number_free(self, number: str, contact_id: int | None = None) -> None:
        """Raise Duplicate when another contact than `contact_id` has `number` (checked before new groups are
        created for a contact that could not be saved; the store checks it again as it writes)."""
        other = self.store.contacts_by_numbers([number]).get(number)
        if other is not None and other["id"] != contact_id:
            raise Duplicate(f"{number} is already in the address book, as contact {other['id']} ({other['name']})")

    def _group_names(self, names: Any) -> list[str]:
        """The group names a contact is to be in, checked, each once. Raises BookError."""
        if isinstance(names, str) or not isinstance(names, (list, tuple)):
            raise BookError("the groups must be a list of group names", "groups")
        if len(names) > MAX_IMPORT_GROUPS:
            raise BookError(f"{len(names)} groups; at most {MAX_IMPORT_GROUPS}", "groups")
        return list(dict.fromkeys(check_group_name(name, "groups") for name in names))

    def _group_ids(self, names: list[str]) -> list[int]:
        """The ids of the groups named (checked by `_group_names`), creating those that do not exist yet, as an
        import does: a contact saved with a new group name puts it in that new group."""
        try:
            return self.store.group_ids(names)
        except NotFound:
            pass
        ids = []
        for name in names:
            try:
                ids += self.store.group_ids([name])
            except NotFound:
                try:
                    ids.append(self.store.add_group(name, "", time.time())["id"])
                except Duplicate:  # created by someone else meanwhile
                    ids += self.store.group_ids([name])
        return ids

    # --- contacts ---

    def contact_names(self, numbers: list[str]) -> dict[str, dict]:
        """The address book's {"id", "name"} for each of `numbers` (E.164) that is a contact (the inbox shows
        names instead of bare numbers)."""
        found = self.store.contacts_by_numbers(list(dict.fromkeys(numbers))[:1000])
        return {number: {"id": contact["id"], "name": contact["name"]} for number, contact in found.items()}

    def contacts(self, search: str | None = None, group: str | None = None, limit: int = 100,
                 after: int | None = None) -> list[dict]:
        """Contacts in name order: at most `limit` (1-1000), after the contact `after` (the last of the previous
        page). `search` finds text in the name, notes and fields, and digits in the number (`07700 900123` finds
        +447700900123); `group` keeps the members of that group (any case). Raises NotFound (no such group, or
        `after` was deleted), BookError."""
        if not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
            raise BookError(f"the limit must be from 1 to {MAX_LIST}", "limit")
        text = digits = None
        if search is not None and search.strip():
            if len(search) > MAX_SEARCH:
                raise BookError(f"the search is longer than {MAX_SEARCH} characters", "q")
            text = search.strip()
            only_digits = "".join(char for char in text if char.isdigit())
            if len(only_digits) >= 3 and all(char.isdigit() or char in " +-()./" for char in text):
                digits = only_digits.lstrip("0") or only_digits
        return self._marked(self.store.contacts(limit, after=after, text=text, digits=digits,
                                                group=group.strip() if group else None))

    def contact(self, contact_id: int) -> dict:
        """One contact. Raises NotFound."""
        return self._marked([self.store.contact(contact_id)])[0]

    def create_contact(self, name: str, number: str, fields: dict | None = None, notes: str = "",
                       groups: list[str] | tuple[str, ...] = ()) -> dict:
        """A new contact in `groups` (names; those that do not exist yet are created, as an import creates them).
        Everything is checked, and the number found free, before a group is created. Raises BookError, Duplicate
        (the number is in the book)."""
        checked = (check_name(name), self._book_number(number), check_fields(fields), check_notes(notes))
        names = self._group_names(groups)
        if names:
            self._number_free(checked[1])
        group_ids = self._group_ids(names)
        return self._marked([self.store.add_contact(*checked, group_ids, time.time())])[0]

    def update_contact(self, contact_id: int, **changes: Any) -> dict:
        """Change a contact's name, number, fields (all replaced), notes or groups (names; the contact is in
        exactly those afterwards; those that do not exist yet are created, once all else is checked and the contact
        found). Raises BookError, NotFound, Duplicate."""
        unknown = [name for name in changes if name not in CONTACT_CHANGES]
        if unknown:
            raise BookError(f"unknown field {unknown[0]!r} (fields: {', '.join(CONTACT_CHANGES)})", unknown[0])
        checked: dict[str, Any] = {}
        if "name" in changes:
            checked["name"] = check_name(changes["name"])
        if "number" in changes:
            checked["number"] = self._book_number(changes["number"])
        if "fields" in changes:
            checked["fields"] = check_fields(changes["fields"])
        if "notes" in changes:
            checked["notes"] = check_notes(changes["notes"] if changes["notes"] is not None else "")
        if "groups" in changes:
            names = self._group_names(changes["groups"] or [])
            self.store.contact(contact_id)  # raises NotFound before any group is created
            if "number" in checked:
                self._number_free(checked["number"], contact_id)
            checked["group_ids"] = self._group_ids(names)
        return self._marked([self.store.update_contact(contact_id, time.time(), **checked)])[0]

    def delete_contact(self, contact_id: int) -> None:
        """Delete a contact (its groups stay). Raises NotFound."""
        self.store.delete_contact(contact_id)

    # --- groups ---

    def groups(self) -> list[dict]:
        """Every group in name order: {"id", "name", "description", "members", "opted_out", "created_at"}."""
        return self.store.groups()

    def group(self, group_id: int) -> dict:
        """One group with its member counts. Raises NotFound."""
        return self.store.group(group_id)

    def create_group(self, name: str, description: str = "") -> dict:
        """A new group. Raises BookError, Duplicate (that name, in any case, is taken)."""
        return self.store.add_group(check_group_name(name), self._description(description), time.time())

    @staticmethod
    def _description(value: Any) -> str:
        if value is None:
            return ""
        if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
            raise BookError(f"the description must be text of at most {MAX_DESCRIPTION} characters", "description")
        return value.strip()

    def update_group(self, group_id: int, **changes: Any) -> dict:
        """Rename a group or change its description. Raises BookError, NotFound, Duplicate."""
        unknown = [name for name in changes if name not in GROUP_CHANGES]
        if unknown:
            raise BookError(f"unknown field {unknown[0]!r} (fields: {', '.join(GROUP_CHANGES)})", unknown[0])
        name = check_group_name(changes["name"]) if "name" in changes else None
        description = self._description(changes["description"]) if "description" in changes else None
        return self.store.update_group(group_id, name=name, description=description)

    def delete_group(self, group_id: int) -> None:
        """Delete a group; its contacts stay in the book. Raises NotFound."""
        self.store.delete_group(group_id)

    def add_to_group(self, group_id: int, contact_ids: list[int]) -> dict:
        """Put contacts into a group (those in it stay): the group after. Raises BookError, NotFound (no such group
        or contact: then nobody joins)."""
        if not isinstance(contact_ids, list) or not contact_ids or not all(
                isinstance(item, int) and not isinstance(item, bool) for item in contact_ids):
            raise BookError("'contact_ids' must be a non-empty list of contact ids", "contact_ids")
        if len(contact_ids) > MAX_MEMBERS_AT_ONCE:
            raise BookError(f"{len(contact_ids)} contacts; at most {MAX_MEMBERS_AT_ONCE} at once", "contact_ids")
        self.store.add_group_members(group_id, contact_ids)
        return self.store.group(group_id)

    def remove_from_group(self, group_id: int, contact_id: int) -> None:
        """Take a contact out of a group. Raises NotFound (no such group, or the contact is not in it)."""
        self.store.remove_group_member(group_id, contact_id)

    # --- import and export ---

    def import_contacts(self, data: bytes, fmt: str, group: str | None = None) -> dict:
        """Contacts from a CSV or vCard file (`fmt`), all of them also put into `group` when given (created when
        missing, as are the groups the file names): {"created", "updated", "rejected": [{"line", "reason"}],
        "fields": {column: field}} (CSV columns that became free fields). A number already in the book updates
        that contact: a name, notes or fields the file gives replace its own (other fields stay), and it joins the
        file's groups (leaving none). Raises BookError (the file as a whole cannot be read)."""
        if fmt not in FORMATS:
            raise BookError(f"the format must be {' or '.join(FORMATS)}", "format")
        if len(data) > MAX_IMPORT_BYTES:
            raise BookError(f"the file has {len(data):,} bytes; at most {MAX_IMPORT_BYTES:,} can be imported", "file")
        extra = [check_group_name(group, "group")] if group is not None and group.strip() else []
        if fmt == "csv":
            candidates, columns = _csv_candidates(data)
        else:
            candidates, columns = _vcard_candidates(data), {}
        accepted: dict[str, dict] = {}
        lines: dict[str, int] = {}
        rejected: list[dict] = []
        for candidate in candidates:
            try:
                contact = self._checked_candidate(candidate, extra)
            except BookError as error:
                rejected.append({"line": candidate.line, "reason": error.detail})
                continue
            if contact["number"] in lines:
                rejected.append({"line": candidate.line,
                                 "reason": f"{contact['number']} is on line {lines[contact['number']]} already"})
                continue
            lines[contact["number"]] = candidate.line
            accepted[contact["number"]] = contact
        if len({name.lower() for contact in accepted.values() for name in contact["groups"]}) > MAX_IMPORT_GROUPS:
            raise BookError(f"the file names more than {MAX_IMPORT_GROUPS} groups", "file")
        rows = self._merged(accepted, lines, rejected)
        created, updated = self.store.import_contacts(rows, time.time()) if rows else (0, 0)
        rejected.sort(key=lambda item: item["line"])
        return {"created": created, "updated": updated, "rejected": rejected, "fields": columns}

    def _checked_candidate(self, candidate: _Candidate, extra_groups: list[str]) -> dict:
        """One contact of a file, checked: {"name" ("" when the file gives none), "number", "fields", "notes",
        "groups"}. Raises BookError."""
        if candidate.problem:
            raise BookError(candidate.problem)
        if not candidate.number.strip():
            raise BookError("no phone number")
        number = self._book_number(candidate.number)
        name = check_name(candidate.name) if candidate.name.strip() else ""
        fields = check_fields(candidate.fields)
        groups = [check_group_name(group, "groups") for group in candidate.groups]
        return {"name": name, "number": number, "fields": fields, "notes": check_notes(candidate.notes),
                "groups": list(dict.fromkeys([*groups, *extra_groups]))}

    def _merged(self, accepted: dict[str, dict], lines: dict[str, int], rejected: list[dict]) -> list[dict]:
        """The imported contacts merged with those already in the book (by number), ready to write; those that
        would break a bound go to `rejected`."""
        existing = self.store.contacts_by_numbers(list(accepted))
        rows = []
        for number, contact in accepted.items():
            old = existing.get(number)
            fields = {**(old["fields"] if old else {}), **contact["fields"]}
            if len(fields) > MAX_FIELDS:
                rejected.append({"line": lines[number], "reason": f"{number} would have {len(fields)} fields; a "
                                                                  f"contact has at most {MAX_FIELDS}"})
                continue
            rows.append({"number": number, "name": contact["name"] or (old["name"] if old else number),
                         "fields": fields, "notes": contact["notes"] or (old["notes"] if old else ""),
                         "groups": contact["groups"]})
        return rows

    def export_contacts(self, fmt: str, group: str | None = None) -> str:
        """Every contact (or `group`'s members) as a CSV (formula-safe, with a BOM) or vCard 3.0 file. Raises
        BookError, NotFound (no such group)."""
        if fmt not in FORMATS:
            raise BookError(f"the format must be {' or '.join(FORMATS)}", "format")
        contacts = self.store.contacts(None, group=group.strip() if group else None)
        return export_csv(contacts) if fmt == "csv" else export_vcard(contacts)


__all__ = ["FORMATS", "MAX_IMPORT_BYTES", "MAX_IMPORT_CONTACTS", "AddressBook", "BookError", "check_fields",
           "export_csv", "export_vcard", "field_name_for", "file_format"]
