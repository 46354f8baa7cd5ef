"""The address book: contacts and groups in the store, the gateway's rules, CSV and vCard import and export, and
the REST API (Flask's test client, and real HTTP for the file uploads and downloads)."""

import csv
import io
import json
import urllib.request

import pytest

from modemgw import auth, csvfile
from modemgw.book import BookError, export_csv
from modemgw.gateway import Gateway
from modemgw.settings import GatewaySettings
from modemgw.store import Duplicate, NotFound, Store
from tests.support import AppClient, Client


@pytest.fixture
def store(tmp_path):
    opened = Store(tmp_path / "book.sqlite")
    yield opened
    opened.close()


@pytest.fixture
def book(store):
    """The gateway's address book over a real store; national numbers are British."""
    return Gateway(store, GatewaySettings(default_region="GB"))


def comparable(contact):
    return {key: contact[key] for key in ("name", "number", "fields", "notes", "groups")}


# --- the store ------------------------------------------------------------------------------------------------

def test_contacts_by_ids_keeps_the_order_and_names_the_missing(book, store):
    ann = book.create_contact("Ann", "+447700900001")
    bob = book.create_contact("Bob", "+447700900002")
    assert [c["name"] for c in store.contacts_by_ids([bob["id"], ann["id"], bob["id"]])] == ["Bob", "Ann", "Bob"]
    with pytest.raises(NotFound) as missing:
        store.contacts_by_ids([ann["id"], 998, 999])
    assert "998" in str(missing.value) and "999" in str(missing.value)


def test_group_contacts_by_name_in_any_case_in_name_order(book, store):
    book.create_group("Night Shift")
    book.create_contact("zoe", "+447700900003", {"room": "7"}, groups=["night shift"])
    book.create_contact("Adam", "+447700900004", groups=["NIGHT SHIFT"])
    book.create_contact("Outsider", "+447700900005")
    members = store.group_contacts("nIGHT sHIFT")
    assert [c["name"] for c in members] == ["Adam", "zoe"]
    assert members[1]["fields"] == {"room": "7"} and members[1]["groups"] == ["Night Shift"]
    assert set(members[1]) == {"id", "name", "number", "fields", "notes", "groups", "created_at", "updated_at"}
    with pytest.raises(NotFound):
        store.group_contacts("day shift")


def test_deleting_a_group_keeps_its_contacts_and_deleting_a_contact_leaves_its_groups(book, store):
    staff = book.create_group("Staff", "everyone on the payroll")
    kept = book.create_contact("Kept", "+447700900006", groups=["Staff"])
    gone = book.create_contact("Gone", "+447700900007", groups=["Staff"])
    assert book.group(staff["id"])["members"] == 2
    book.delete_contact(gone["id"])
    assert book.group(staff["id"])["members"] == 1
    book.delete_group(staff["id"])
    assert book.contact(kept["id"])["groups"] == []
    with pytest.raises(NotFound):
        book.group(staff["id"])
    with pytest.raises(NotFound):
        book.delete_contact(gone["id"])


# --- the gateway's rules --------------------------------------------------------------------------------------

def test_create_normalises_the_number_and_refuses_a_second_contact_with_it(book):
    contact = book.create_contact("  Ann   Smith ", "07700 900123", {"room": "12", "floor": 3}, " vip \n")
    assert comparable(contact) == {"name": "Ann Smith", "number": "+447700900123",
                                   "fields": {"room": "12", "floor": "3"}, "notes": "vip", "groups": []}
    assert contact["opted_out"] is False
    with pytest.raises(Duplicate) as taken:
        book.create_contact("Ann again", "+44 7700 900123")
    assert "+447700900123" in str(taken.value)
    with pytest.raises(BookError) as bad:
        book.create_contact("Nobody", "12ab")
    assert bad.value.field == "number" and "not a phone number" in bad.value.detail


def test_strict_numbers_refuse_unallocated_ranges(store):
    strict = Gateway(store, GatewaySettings(default_region="GB", strict_numbers=True))
    with pytest.raises(BookError) as refused:
        strict.create_contact("Fiction", "+44 7700 900000")  # set aside for drama: possible, never allocated
    assert "allocated" in refused.value.detail


@pytest.mark.parametrize("changes, field, words", [
    ({"name": "x" * 101}, "name", "at most 100"),
    ({"name": "   "}, "name", "empty"),
    ({"name": "a\x00b"}, "name", "control character"),
    ({"notes": "n" * 2001}, "notes", "at most 2000"),
    ({"fields": {f"f{i}": "v" for i in range(31)}}, "fields", "at most 30"),
    ({"fields": {"first name": "Ann"}}, "fields", "letters, digits and _"),
    ({"fields": {"2nd": "x"}}, "fields", "not start with a digit"),
    ({"fields": {"x" * 41: "v"}}, "fields", "1 to 40"),
    ({"fields": {"Number": "1"}}, "fields", "cannot be a field name"),
    ({"fields": {"room": "v" * 501}}, "fields", "at most 500"),
    ({"fields": {"room": ["a"]}}, "fields", "must be text"),
    ({"groups": ["a|b"]}, "groups", "cannot hold '|'"),
    ({"groups": "Staff"}, "groups", "a list of group names"),
    ({"colour": "red"}, "colour", "unknown field"),
])
def test_update_refuses_what_breaks_a_bound(book, changes, field, words):
    contact = book.create_contact("Bounded", "+447700900010")
    with pytest.raises(BookError) as refused:
        book.update_contact(contact["id"], **changes)
    assert refused.value.field == field and words in refused.value.detail
    assert comparable(book.contact(contact["id"])) == comparable(contact)


def test_update_replaces_fields_and_groups_and_keeps_the_rest(book):
    book.create_group("A")
    book.create_group("B")
    contact = book.create_contact("Carl", "+447700900011", {"x": "1", "y": "2"}, "note", ["A"])
    changed = book.update_contact(contact["id"], fields={"z": "3"}, groups=["b"])
    assert comparable(changed) == {"name": "Carl", "number": "+447700900011", "fields": {"z": "3"},
                                   "notes": "note", "groups": ["B"]}
    other = book.create_contact("Dora", "+447700900012")
    with pytest.raises(Duplicate):
        book.update_contact(other["id"], number="07700 900011")


def test_a_new_group_name_creates_the_group_as_an_import_does(book):
    book.create_group("Staff")
    ann = book.create_contact("Ann", "+447700900013", groups=["staff", "Night Shift", "night shift"])
    assert ann["groups"] == ["Night Shift", "Staff"]
    assert [(group["name"], group["members"]) for group in book.groups()] == [("Night Shift", 1), ("Staff", 1)]
    changed = book.update_contact(ann["id"], groups=["Drivers"])
    assert changed["groups"] == ["Drivers"] and [group["name"] for group in book.groups()] == [
        "Drivers", "Night Shift", "Staff"]


def test_a_contact_that_cannot_be_saved_creates_no_group(book):
    ann = book.create_contact("Ann", "+447700900014")
    bob = book.create_contact("Bob", "+447700900015")
    with pytest.raises(Duplicate, match="already in the address book"):
        book.create_contact("Ann again", "+447700900014", groups=["Ghosts"])
    with pytest.raises(Duplicate):
        book.update_contact(bob["id"], number="+447700900014", groups=["Ghosts"])
    with pytest.raises(NotFound):
        book.update_contact(999_999, groups=["Ghosts"])
    with pytest.raises(BookError):
        book.create_contact("", "+447700900016", groups=["Ghosts"])
    assert book.groups() == [] and book.contact(ann["id"])["groups"] == []


def test_group_names_are_unique_in_any_case_and_bounded(book):
    group = book.create_group("Staff")
    with pytest.raises(Duplicate):
        book.create_group("STAFF")
    with pytest.raises(BookError):
        book.create_group("g" * 61)
    with pytest.raises(BookError):
        book.create_group("a|b")
    renamed = book.update_group(group["id"], name="Team", description="all of us")
    assert (renamed["name"], renamed["description"]) == ("Team", "all of us")
    other = book.create_group("Other")
    with pytest.raises(Duplicate):
        book.update_group(other["id"], name="team")


def test_groups_count_members_and_opted_out_members(book, store):
    book.create_group("Customers")
    for position in range(3):
        book.create_contact(f"Customer {position}", f"+44770090002{position}", groups=["Customers"])
    book.opt_out("+447700900021", "test")
    [group] = book.groups()
    assert (group["members"], group["opted_out"]) == (3, 1)
    flags = {c["number"]: c["opted_out"] for c in book.contacts(group="customers")}
    assert flags == {"+447700900020": False, "+447700900021": True, "+447700900022": False}


def test_add_to_group_refuses_unknown_contacts_and_adds_nobody_then(book):
    group = book.create_group("Volunteers")
    ann = book.create_contact("Ann", "+447700900030")
    with pytest.raises(NotFound):
        book.add_to_group(group["id"], [ann["id"], 4242])
    assert book.group(group["id"])["members"] == 0
    assert book.add_to_group(group["id"], [ann["id"], ann["id"]])["members"] == 1
    book.remove_from_group(group["id"], ann["id"])
    with pytest.raises(NotFound):
        book.remove_from_group(group["id"], ann["id"])
    with pytest.raises(BookError):
        book.add_to_group(group["id"], [])


def test_search_finds_names_notes_fields_and_national_numbers(book):
    book.create_group("Plumbers")
    book.create_contact("Jürgen Müller", "+447700900040", {"company": "Pipes & Co"}, "prefers mornings")
    book.create_contact("Percy 100%", "+447700900041", groups=["Plumbers"])
    book.create_contact("Quinn", "+447700900042")

    def names(**query):
        return [c["name"] for c in book.contacts(**query)]

    assert names(search="müll") == ["Jürgen Müller"]
    assert names(search="MORNING") == ["Jürgen Müller"]
    assert names(search="pipes") == ["Jürgen Müller"]
    assert names(search="07700 900042") == ["Quinn"]
    assert names(search="100%") == ["Percy 100%"]  # % is a character here, not a wildcard
    assert names(search="_") == []
    assert names(group="plumbers") == ["Percy 100%"]
    with pytest.raises(NotFound):
        book.contacts(group="Electricians")
    with pytest.raises(BookError):
        book.contacts(search="x" * 101)


def test_paging_in_name_order_visits_every_contact_once(book):
    for position, name in enumerate(["delta", "Alpha", "charlie", "Bravo", "echo", "alpha", "Foxtrot"]):
        book.create_contact(name, f"+44770090016{position}")
    seen, after = [], None
    while True:
        page = book.contacts(limit=3, after=after)
        seen += [c["name"] for c in page]
        if len(page) < 3:
            break
        after = page[-1]["id"]
    assert [name.lower() for name in seen] == ["alpha", "alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]


# --- CSV ------------------------------------------------------------------------------------------------------

EXCEL_DE = ("Vorname;Nachname;Telefon;Gruppen;Notiz;Firma\r\n"
            "Jürgen;Müller;07700 900050;Kunden|Köln;Stammkunde;Müller & Söhne\r\n"
            "Anna;Schäfer;;Kunden;;\r\n"
            "Bernd;Böse;12ab;;;\r\n"
            ";;;;;\r\n"
            "Zoë;Weiß;+44 7700 900051;;\"zwei\r\nZeilen\";=1+2\r\n"
            "Ulf;Über;07700900050;;;doppelt\r\n")


def test_csv_from_excel_in_windows_1252_with_semicolons_names_each_bad_line(book):
    existing = book.create_contact("Old name", "+447700900051", {"kept": "yes", "Firma": "old"})
    result = book.import_contacts(EXCEL_DE.encode("cp1252"), "csv", "Import März")
    assert (result["created"], result["updated"]) == (1, 1)
    reasons = {item["line"]: item["reason"] for item in result["rejected"]}
    assert set(reasons) == {3, 4, 8}, result
    assert "no phone number" in reasons[3] and "not a phone number" in reasons[4] and "line 2" in reasons[8]
    assert result["fields"] == {"Vorname": "Vorname", "Nachname": "Nachname", "Firma": "Firma"}
    [jurgen] = book.contacts(search="900050")
    assert comparable(jurgen) == {
        "name": "Jürgen Müller", "number": "+447700900050", "notes": "Stammkunde",
        "fields": {"Vorname": "Jürgen", "Nachname": "Müller", "Firma": "Müller & Söhne"},
        "groups": ["Import März", "Kunden", "Köln"]}  # SQLite orders only ASCII letters in any case
    zoe = book.contact(existing["id"])  # the number was in the book: updated, fields merged, not duplicated
    assert comparable(zoe) == {"name": "Zoë Weiß", "number": "+447700900051", "notes": "zwei\nZeilen",
                               "fields": {"kept": "yes", "Firma": "=1+2", "Vorname": "Zoë", "Nachname": "Weiß"},
                               "groups": ["Import März"]}
    assert {g["name"]: g["members"] for g in book.groups()} == {"Import März": 2, "Köln": 1, "Kunden": 1}


def test_csv_without_a_phone_column_or_with_too_many_columns_is_refused_whole(book):
    with pytest.raises(BookError) as no_phone:
        book.import_contacts(b"name,email\nAnn,ann@example.com\n", "csv")
    assert "phone numbers" in no_phone.value.detail and no_phone.value.field == "file"
    wide = ",".join(["phone", *(f"c{i}" for i in range(31))]) + "\n+447700900060" + ",x" * 31 + "\n"
    with pytest.raises(BookError) as too_wide:
        book.import_contacts(wide.encode(), "csv")
    assert "at most 30 fields" in too_wide.value.detail
    assert book.contacts() == []


def test_csv_columns_become_placeholder_names(book):
    result = book.import_contacts("Mobile Number,First Name,Due-Date,2nd line,Größe\n07700900061,Ann,Fri,x,M\n"
                                  .encode(), "csv")
    assert result["fields"] == {"First Name": "First_Name", "Due-Date": "Due_Date", "2nd line": "_2nd_line",
                                "Größe": "Grosse"}
    assert book.contacts()[0]["fields"] == {"First_Name": "Ann", "Due_Date": "Fri", "_2nd_line": "x", "Grosse": "M"}
    with pytest.raises(BookError) as unnamed:
        book.import_contacts("phone,€\n07700900062,5\n".encode(), "csv")
    assert "'€' cannot name a field" in unnamed.value.detail


def test_csv_export_is_formula_safe_and_round_trips(book, store, tmp_path):
    book.create_group("=Group")
    book.create_contact("@SUM(A1)", "+447700900070", {"link": '=HYPERLINK("http://evil","x")', "plain": "ok",
                                                      "quoted": "'=already"}, "-2+3\nline two", ["=Group"])
    book.create_contact("Ann, the \"first\"", "+447700900071", {"plain": "+ also"})
    exported = book.export_contacts("csv")
    assert exported.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(exported[1:])))
    assert rows[0] == ["name", "number", "groups", "notes", "link", "plain", "quoted"]
    for row in rows[1:]:
        for cell in row:
            assert cell[:1] not in ("=", "+", "-", "@") or csvfile.plain_number(cell), row
    assert rows[1][0] == "'@SUM(A1)" and rows[1][4] == "'=HYPERLINK(\"http://evil\",\"x\")"
    assert [row[1] for row in rows[1:]] == ["+447700900070", "+447700900071"]  # numbers as they are
    assert rows[1][3] == "'-2+3\nline two" and rows[2][5] == "'+ also" and rows[1][6] == "''=already"
    copy = Gateway(Store(tmp_path / "copy.sqlite"), GatewaySettings(default_region="GB"))
    result = copy.import_contacts(exported.encode("utf-8"), "csv")
    assert (result["created"], result["rejected"]) == (2, [])
    assert [comparable(c) for c in copy.contacts()] == [comparable(c) for c in book.contacts()]


def test_an_export_written_before_the_plain_number_rule_still_imports(book):
    """Older exports wrote `'+447700900072`: the apostrophe of a number is taken off, a person's own text kept."""
    result = book.import_contacts("\ufeffname,number,notes\nOld,'+447700900072,'+1\n".encode(), "csv")
    assert (result["created"], result["rejected"]) == (1, [])
    assert [(c["number"], c["notes"]) for c in book.contacts()] == [("+447700900072", "'+1")]


def test_export_csv_lists_every_field_of_any_contact():
    contacts = [{"name": "A", "number": "+1", "groups": [], "notes": "", "fields": {"b": "1"}},
                {"name": "B", "number": "+2", "groups": ["g"], "notes": "", "fields": {"a": "2"}}]
    assert export_csv(contacts).splitlines()[0] == "\ufeffname,number,groups,notes,a,b"


# --- vCard ------------------------------------------------------------------------------------------------------

def test_vcard_round_trip_keeps_everything(book, tmp_path):
    book.create_group("Familie, erweitert")
    book.create_group("Nachbarn; links")
    book.create_contact("Ünal Öztürk-Łukasiewicz " + "ä" * 60, "+447700900080",
                        {"room": "3; left", "greeting": "Dear Ü,\nwelcome", "emoji": "🙂" * 40},
                        "line one\nline two, with comma; and semicolon \\ backslash",
                        ["Familie, erweitert", "Nachbarn; links"])
    book.create_contact("Solo", "+447700900081")
    exported = book.export_contacts("vcard")
    lines = exported.split("\r\n")
    assert lines[0] == "BEGIN:VCARD" and all(len(line.encode()) <= 75 for line in lines)
    copy = Gateway(Store(tmp_path / "copy.sqlite"), GatewaySettings(default_region="GB"))
    result = copy.import_contacts(exported.encode(), "vcard")
    assert (result["created"], result["updated"], result["rejected"]) == (2, 0, [])
    assert [comparable(c) for c in copy.contacts()] == [comparable(c) for c in book.contacts()]
    again = copy.import_contacts(exported.encode(), "vcard")
    assert (again["created"], again["updated"]) == (0, 2)


VCARDS = (
    "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Simon Perreault\r\nN:Perreault;Simon;;;ing. jr,M.Sc.\r\n"
    "TEL;VALUE=uri;PREF=1;TYPE=\"voice,home\":tel:+1-418-656-9254;ext=102\r\n"
    "TEL;VALUE=uri;TYPE=\"cell,voice\":tel:+44-7700-900090\r\n"
    "NOTE:folded across\r\n  two lines\\, with a comma\r\nCATEGORIES:Work,Friends\r\n"
    "EMAIL;TYPE=work:simon@example.com\r\nitem1.ORG:Viagenie;R&D\r\nEND:VCARD\r\n"
    "BEGIN:VCARD\nVERSION:2.1\nN;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:M=C3=BCller;J=C3=BCr=\ngen;;;\n"
    "TEL;HOME:+44 7700 900091\nTEL;CELL:07700 900092\nEND:VCARD\n"
    "BEGIN:VCARD\nVERSION:3.0\nFN:No Phone\nEMAIL:x@example.com\nEND:VCARD\n"
    "BEGIN:VCARD\nVERSION:3.0\nTEL;TYPE=CELL:+447700900093\nEND:VCARD\n"
    "BEGIN:VCARD\nVERSION:3.0\nFN:Cut off\nTEL:+447700900094\n"
)


def test_vcard_import_reads_3_0_4_0_and_2_1_and_names_bad_cards(book):
    result = book.import_contacts(VCARDS.encode(), "vcard", "Phone book")
    assert result["created"] == 3
    assert [(item["line"], item["reason"]) for item in result["rejected"]] == [
        (20, "no phone number"), (29, "this card has no END:VCARD")]
    simon, jurgen, nameless = [book.contacts(search=number)[0] for number in ("900090", "900092", "900093")]
    assert comparable(simon) == {"name": "Simon Perreault", "number": "+447700900090",
                                 "notes": "folded across two lines, with a comma",
                                 "fields": {"email": "simon@example.com", "company": "Viagenie"},
                                 "groups": ["Friends", "Phone book", "Work"]}
    assert (jurgen["name"], jurgen["number"]) == ("Jürgen Müller", "+447700900092")  # the mobile, not the first
    assert nameless["name"] == "+447700900093"


def test_vcard_with_a_huge_folded_photo_reads_in_linear_time(book):
    photo = "\r\n ".join(["QUJD" * 18] * 60_000)
    card = f"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Pic\r\nTEL:+447700900095\r\nPHOTO;ENCODING=b:{photo}\r\nEND:VCARD\r\n"
    assert len(card) < 5 * 1024 * 1024
    assert book.import_contacts(card.encode(), "vcard")["created"] == 1


def test_imports_are_bounded(book):
    with pytest.raises(BookError) as large:
        book.import_contacts(b"phone\n" + b"+447700900096\n" * 400_000, "csv")
    assert "at most 5,242,880" in large.value.detail
    with pytest.raises(BookError) as rows:
        book.import_contacts(b"phone\n" + b"1\n" * 50_001, "csv")
    assert "more than 50,000 rows" in rows.value.detail
    with pytest.raises(BookError) as cards:
        book.import_contacts(b"BEGIN:VCARD\nEND:VCARD\n" * 50_001, "vcard")
    assert "more than 50,000 cards" in cards.value.detail
    with pytest.raises(BookError):
        book.import_contacts(b"phone\n1\n", "xlsx")
    with pytest.raises(BookError) as empty:
        book.import_contacts(b"nothing here", "vcard")
    assert "no vCard" in empty.value.detail


# --- the REST API -------------------------------------------------------------------------------------------------

@pytest.fixture
def editor(app):
    """An API client whose key may read and change the book (and nothing else)."""
    daemon = app.extensions["modemgw"]
    return AppClient(app.test_client(), auth.create_key(daemon.store, "office", ("read", "book"))[0])


def test_api_contacts_crud(editor):
    status, _, group = editor.call("POST", "/api/v1/groups", {"name": "Staff", "description": "payroll"})
    assert status == 201 and (group["members"], group["opted_out"]) == (0, 0)
    status, _, created = editor.call("POST", "/api/v1/contacts", {
        "name": "Ann", "number": "07700 900100", "fields": {"room": "4"}, "groups": ["staff"]})
    assert status == 201
    assert {key: created[key] for key in ("name", "number", "fields", "groups", "opted_out")} == {
        "name": "Ann", "number": "+447700900100", "fields": {"room": "4"}, "groups": ["Staff"], "opted_out": False}
    assert created["created_at"].endswith("Z")
    status, _, again = editor.call("POST", "/api/v1/contacts", {"name": "Ann 2", "number": "+447700900100"})
    assert status == 409 and "already in the address book" in again["detail"]
    status, _, patched = editor.call("PATCH", f"/api/v1/contacts/{created['id']}", {"notes": "on leave",
                                                                                     "groups": []})
    assert status == 200 and (patched["notes"], patched["groups"]) == ("on leave", [])
    status, _, fetched = editor.call("GET", f"/api/v1/contacts/{created['id']}")
    assert status == 200 and fetched == patched
    status, _, members = editor.call("POST", f"/api/v1/groups/{group['id']}/members",
                                     {"contact_ids": [created["id"]]})
    assert status == 200 and members["members"] == 1
    assert editor.call("DELETE", f"/api/v1/groups/{group['id']}/members/{created['id']}")[0] == 204
    assert editor.call("DELETE", f"/api/v1/groups/{group['id']}/members/{created['id']}")[0] == 404
    assert editor.call("DELETE", f"/api/v1/contacts/{created['id']}")[0] == 204
    assert editor.call("GET", f"/api/v1/contacts/{created['id']}")[0] == 404
    assert editor.call("DELETE", f"/api/v1/groups/{group['id']}")[0] == 204
    assert editor.call("GET", "/api/v1/groups")[2] == {"data": []}


def test_api_creates_a_contact_in_a_new_group_as_the_readme_does(editor):
    """README, E-mail to SMS: one call makes the group "staff" with its first member on a fresh gateway."""
    status, _, created = editor.call("POST", "/api/v1/contacts", {"name": "Ann", "number": "+447700900789",
                                                                 "groups": ["staff"]})
    assert status == 201 and created["groups"] == ["staff"], created
    status, _, groups = editor.call("GET", "/api/v1/groups")
    assert [(group["name"], group["members"]) for group in groups["data"]] == [("staff", 1)]
    status, _, patched = editor.call("PATCH", f"/api/v1/contacts/{created['id']}", {"groups": ["staff", "Drivers"]})
    assert status == 200 and patched["groups"] == ["Drivers", "staff"]


@pytest.mark.parametrize("payload, field, words", [
    ({"number": "+447700900101"}, "name", "'name' is missing"),
    ({"name": "A", "number": "+447700900101", "fields": {"bad name": "x"}}, "fields", "letters, digits and _"),
    ({"name": "A", "number": "not a number"}, "number", "not a phone number"),
    ({"name": "A", "number": "+447700900101", "fields": "x"}, "fields", "must be object"),
    ({"name": "A", "number": "+447700900101", "tags": []}, "tags", "unknown field"),
    ({"name": "A", "number": "+447700900101", "groups": [" "]}, "groups", "the group name is empty"),
])
def test_api_refuses_a_bad_contact_naming_the_field(editor, payload, field, words):
    status, headers, problem = editor.call("POST", "/api/v1/contacts", payload)
    assert status == 400 and headers["Content-Type"] == "application/problem+json"
    assert problem["field"] == field and words in problem["detail"], problem


def test_api_pages_search_and_filter(editor):
    editor.call("POST", "/api/v1/groups", {"name": "Evens"})
    for position in range(7):
        editor.call("POST", "/api/v1/contacts", {"name": f"Person {position}", "number": f"+44770090011{position}",
                                                 "groups": ["Evens"] if position % 2 == 0 else []})
    seen, cursor = [], None
    while True:
        status, _, page = editor.call("GET", "/api/v1/contacts?limit=3" + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200
        seen += [contact["name"] for contact in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"Person {position}" for position in range(7)]
    status, _, evens = editor.call("GET", "/api/v1/contacts?group=evens&q=Person")
    assert [contact["name"] for contact in evens["data"]] == ["Person 0", "Person 2", "Person 4", "Person 6"]
    assert evens["next_cursor"] is None
    assert editor.call("GET", "/api/v1/contacts?group=odds")[0] == 404
    assert editor.call("GET", "/api/v1/contacts?limit=x")[0] == 400


def test_api_scopes_read_may_look_book_may_change(app, client, editor):
    assert client.call("GET", "/api/v1/contacts")[0] == 200  # send,read
    status, _, problem = client.call("POST", "/api/v1/contacts", {"name": "A", "number": "+447700900120"})
    assert status == 403 and "'book'" in problem["detail"]
    assert client.call("POST", "/api/v1/groups", {"name": "G"})[0] == 403
    assert client.call("POST", "/api/v1/contacts/import", raw=b"phone\n+447700900120\n",
                       headers={"Content-Type": "text/csv"})[0] == 403
    writer_only = AppClient(app.test_client(), auth.create_key(app.extensions["modemgw"].store, "w", ("book",))[0])
    assert writer_only.call("GET", "/api/v1/contacts")[0] == 403
    assert writer_only.call("POST", "/api/v1/groups", {"name": "G"})[0] == 201
    assert client.call("GET", "/api/v1/contacts")[0] == 200
    assert auth.parse_scopes("read,book") == ("read", "book")


def test_api_import_wants_a_file_type(editor):
    status, _, problem = editor.call("POST", "/api/v1/contacts/import", {"phone": "+447700900130"})
    assert status == 415 and "text/csv" in problem["detail"]
    status, _, problem = editor.call("POST", "/api/v1/contacts/import", raw=b"name,email\nA,a@b\n",
                                     headers={"Content-Type": "text/csv"})
    assert status == 400 and problem["field"] == "file"
    status, _, problem = editor.call("GET", "/api/v1/contacts/export?format=xlsx")
    assert status == 400 and problem["field"] == "format"


@pytest.fixture
def served(start_daemon):
    """A gateway serving HTTP on 127.0.0.1, and a key that may read and change the book."""
    daemon = start_daemon(modems=0, http=True)
    return daemon, auth.create_key(daemon.store, "office", ("read", "book"))[0]


def http(daemon, key, method, path, data=None, content_type=None):
    request = urllib.request.Request(daemon.url + path.lstrip("/"), data=data, method=method,
                                     headers={"Authorization": f"Bearer {key}",
                                              **({"Content-Type": content_type} if content_type else {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def test_http_import_into_a_group_then_export_both_formats(served):
    daemon, key = served
    body = "name;Telefon;Abteilung\r\nÄrztin Özdemir;07700 900140;Kardiologie\r\nBad;123;x\r\n".encode("cp1252")
    status, _, raw = http(daemon, key, "POST", "/api/v1/contacts/import?group=Klinik", body,
                          "text/csv; charset=windows-1252")
    result = json.loads(raw)
    assert status == 200 and (result["created"], result["updated"]) == (1, 0), result
    assert [item["line"] for item in result["rejected"]] == [3]
    status, headers, raw = http(daemon, key, "GET", "/api/v1/contacts/export?format=csv&group=klinik")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert 'filename="contacts.csv"' in headers["Content-Disposition"]
    text = raw.decode("utf-8")
    assert text.startswith("\ufeffname,number,groups,notes,Abteilung\r\n")
    assert "Ärztin Özdemir,+447700900140,Klinik,,Kardiologie" in text
    status, headers, raw = http(daemon, key, "GET", "/api/v1/contacts/export?format=vcard")
    assert status == 200 and headers["Content-Type"].startswith("text/vcard")
    assert "FN:Ärztin Özdemir\r\n" in raw.decode() and "TEL;TYPE=CELL:+447700900140\r\n" in raw.decode()
    status, _, raw = http(daemon, key, "POST", "/api/v1/contacts/import", raw, "text/vcard")
    assert status == 200 and json.loads(raw)["updated"] == 1


def test_http_import_over_5_mb_is_refused_before_it_is_read(served):
    daemon, key = served
    body = b"phone\n" + b"+447700900150\n" * 380_000  # 5.3 MB: above the import limit, above the app's 4 MiB
    status, headers, raw = http(daemon, key, "POST", "/api/v1/contacts/import", body, "text/csv")
    assert status == 413 and headers["Content-Type"] == "application/problem+json"
    assert "5,242,880 bytes" in json.loads(raw)["detail"]
    # 50,000 contacts in 4.7 MB: above the app's limit for JSON bodies, within the import's limits
    under = b"phone,notes\n" + b"".join(b"+447700%06d,%s\n" % (number, b"n" * 80) for number in range(50_000))
    assert 4 * 1024 * 1024 < len(under) < 5 * 1024 * 1024
    status, _, raw = http(daemon, key, "POST", "/api/v1/contacts/import", under, "text/csv")
    assert status == 200, raw[:300]
    result = json.loads(raw)
    assert (result["created"], result["rejected"]) == (50_000, [])
    client = Client(daemon.url, key)
    assert client.call("GET", "/api/v1/contacts?limit=1")[2]["next_cursor"] is not None


def test_ui_import_takes_up_to_5_mb_and_refuses_more_with_a_page(served):
    import webui
    from tests.support import PASSWORD, csrf_token, log_in

    daemon, _ = served
    webui.add_user(daemon.store, "oscar", PASSWORD, "operator")
    http_session = log_in(daemon.url, "oscar")
    token = csrf_token(http_session.get(f"{daemon.url}ui/contacts/import", timeout=30).text)
    # 2,400 contacts with long notes: 4.7 MB, above the app's 4 MiB limit for other requests
    big = b"phone,notes\n" + b"".join(b"+447700%06d,%s\n" % (number, b"n" * 1900) for number in range(2400))
    assert 4 * 1024 * 1024 < len(big) < 5 * 1024 * 1024
    answer = http_session.post(f"{daemon.url}ui/contacts/import", data={"csrf_token": token, "new_group": "Big"},
                               files={"file": ("big.csv", big, "text/csv")}, timeout=60)
    assert answer.status_code == 200 and '<b id="created">2400</b>' in answer.text, answer.text[:2000]
    assert daemon.gateway.groups()[0]["members"] == 2400
    huge = big + b"+447799000000,x\n" * 60_000  # 5.6 MB
    answer = http_session.post(f"{daemon.url}ui/contacts/import", data={"csrf_token": token},
                               files={"file": ("huge.csv", huge, "text/csv")}, timeout=60)
    assert answer.status_code == 413 and "text/html" in answer.headers["Content-Type"]
    assert "at most 5,242,880 bytes" in answer.text
