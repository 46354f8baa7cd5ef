"""Saved templates: the store's rows, the gateway's checks (sizes, spintax, placeholders, names) and the REST API
(CRUD, duplicate names, problem answers, scopes), over a real SQLite store and the Flask test client."""

import pytest

from modemgw import auth, text
from modemgw.store import Duplicate, NotFound, Store
from modemgw.templates import MAX_NAME_CHARS, LibraryError
from tests.support import AppClient

# --- the store --------------------------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path):
    opened = Store(tmp_path / "templates.db")
    yield opened
    opened.close()


def test_the_store_keeps_finds_changes_and_deletes_templates(store):
    first = store.add_template("Reminder", "Hi {name}", False, 100.0)
    second = store.add_template("alert", "{A|B}", True, 101.0)
    assert (first["name"], first["body"], first["spintax"], first["created_at"]) == ("Reminder", "Hi {name}", 0, 100.0)
    assert [row["name"] for row in store.templates()] == ["alert", "Reminder"], "by name, whatever the case"
    assert store.template_by_name("REMINDER")["id"] == first["id"]
    changed = store.update_template(second["id"], {"body": "{C|D}", "spintax": False}, 150.0)
    assert (changed["body"], changed["spintax"], changed["created_at"], changed["updated_at"]) == ("{C|D}", 0, 101.0,
                                                                                                    150.0)
    store.delete_template(first["id"])
    with pytest.raises(NotFound):
        store.template(first["id"])
    with pytest.raises(NotFound):
        store.template_by_name("reminder")
    with pytest.raises(NotFound):
        store.delete_template(first["id"])
    with pytest.raises(NotFound):
        store.update_template(first["id"], {"body": "x"}, 160.0)


def test_the_store_refuses_a_taken_name_whatever_its_case(store):
    store.add_template("Reminder", "a", False, 1.0)
    other = store.add_template("Other", "b", False, 1.0)
    with pytest.raises(Duplicate) as refused:
        store.add_template("reMINDER", "c", False, 2.0)
    assert "exists already" in str(refused.value)
    with pytest.raises(Duplicate):
        store.update_template(other["id"], {"name": "REMINDER"}, 3.0)
    assert store.update_template(other["id"], {"name": "OTHER"}, 3.0)["name"] == "OTHER", "its own name, recased"
    with pytest.raises(ValueError):
        store.update_template(other["id"], {"created_at": 0}, 3.0)
    assert len(store.templates()) == 2


# --- the gateway ----------------------------------------------------------------------------------------------------


@pytest.fixture
def gateway(app):
    return app.extensions["modemgw"].gateway


def test_a_template_shows_its_placeholders_in_order_and_its_segments(gateway):
    saved = gateway.create_template("  Visit  ", "{Hi|Hello} {name}, your {thing} is due at {time}. Bye {name}",
                                    spintax=True)
    assert saved["name"] == "Visit", "blanks around the name are dropped"
    assert saved["placeholders"] == ["name", "thing", "time"]
    assert saved["spintax"] is True and saved["segments"] == 1 and saved["encoding"] == "gsm7"
    assert saved["sample"] in ("Hi name, your thing is due at time. Bye name",
                               "Hello name, your thing is due at time. Bye name")
    assert set(saved) >= {"id", "name", "body", "spintax", "placeholders", "created_at", "updated_at"}
    long = gateway.create_template("Long", "ж" * 70 + " {name}")
    assert (long["segments"], long["encoding"]) == (2, "ucs2")
    assert gateway.template(saved["id"]) == saved
    assert gateway.template(str(saved["id"]))["id"] == saved["id"], "a string of digits is an id"
    assert gateway.template("visit")["id"] == saved["id"], "a name, whatever its case"
    assert [row["name"] for row in gateway.templates()] == ["Long", "Visit"]
    for ref in ("nothing", "9" * 30, 10**30, -1, "x" * 500, "", True, None):
        with pytest.raises(NotFound):
            gateway.template(ref)


def test_escaped_braces_and_no_placeholders_are_fine(gateway):
    saved = gateway.create_template("Price", "Only \\{5\\} today | now")
    assert saved["placeholders"] == [] and saved["sample"] == "Only {5} today | now"


@pytest.mark.parametrize("name, body, spintax, field, words", [
    ("", "x", False, "name", "1 to 60 characters"),
    ("   ", "x", False, "name", "1 to 60 characters"),
    ("n" * (MAX_NAME_CHARS + 1), "x", False, "name", "1 to 60 characters"),
    ("n" * 100_000, "x", False, "name", "at most 60"),
    ("two\nlines", "x", False, "name", "one line"),
    ("123", "x", False, "name", "only digits"),
    ("ok", "", False, "body", "empty"),
    ("ok", "  \n ", False, "body", "empty"),
    ("ok", "x" * (text.MAX_BODY_CHARS + 1), False, "body", "at most 163,200"),
    ("ok", "{" * (text.MAX_BODY_CHARS + 1), True, "body", "at most 163,200"),
    ("ok", "a" * (256 * 153), False, "body", "segments"),
    ("ok", "{Hi|Hello {name}", True, "body", "unclosed"),
    ("ok", "Hi} there", True, "body", "unexpected '}'"),
    ("ok", "Hi {first name!}", False, "body", "'{' at character 4 opens no placeholder"),
    ("ok", "Hi {name", False, "body", "opens no placeholder"),
    ("ok", "{Hi|Hello} {name}", False, "body", "turn spintax on"),
    ("ok", "Hi {just text!}", True, "body", "neither a placeholder nor a choice"),
    ("ok", "broken \ud83d emoji", False, "body", "surrogate"),
    ("ok", 5, False, "body", "must be text"),
    ("ok", "x", "yes", "spintax", "true or false"),
], ids=["empty-name", "blank-name", "long-name", "huge-name", "newline-name", "digits-name", "empty-body",
        "blank-body", "long-body", "long-spintax", "too-many-segments", "unclosed-spintax", "stray-closer",
        "bad-placeholder", "unclosed-placeholder", "spintax-off", "single-choice", "surrogate", "not-text",
        "spintax-type"])
def test_a_bad_template_is_refused_saying_what_to_fix(gateway, name, body, spintax, field, words):
    with pytest.raises(LibraryError) as refused:
        gateway.create_template(name, body, spintax=spintax)
    assert refused.value.field == field and words in refused.value.detail, refused.value.detail
    assert gateway.templates() == []


def test_an_update_is_checked_as_a_whole(gateway):
    saved = gateway.create_template("Greeting", "{Hi|Hello} {name}", spintax=True)
    with pytest.raises(LibraryError) as refused:
        gateway.update_template(saved["id"], spintax=False)  # the body needs spintax
    assert refused.value.field == "body" and "turn spintax on" in refused.value.detail
    with pytest.raises(LibraryError) as unknown:
        gateway.update_template(saved["id"], colour="red")
    assert unknown.value.field == "colour"
    other = gateway.create_template("Other", "x")
    with pytest.raises(Duplicate):
        gateway.update_template(other["id"], name="greeting")
    changed = gateway.update_template(saved["id"], body="Hello {first}, {last}", spintax=False, name="Hello")
    assert (changed["name"], changed["placeholders"], changed["spintax"]) == ("Hello", ["first", "last"], False)
    assert changed["updated_at"] >= saved["updated_at"] and changed["created_at"] == saved["created_at"]
    assert gateway.update_template(saved["id"]) == changed, "nothing to change"
    gateway.delete_template(saved["id"])
    with pytest.raises(NotFound):
        gateway.update_template(saved["id"], body="x")
    with pytest.raises(NotFound):
        gateway.delete_template(saved["id"])


# --- the API ------------------------------------------------------------------------------------------------------


def keyed(app, *scopes):
    daemon = app.extensions["modemgw"]
    return AppClient(app.test_client(), auth.create_key(daemon.store, "-".join(scopes), scopes)[0])


def test_the_api_creates_reads_changes_and_deletes_templates(app):
    api = keyed(app, "read", "book")
    status, headers, made = api.call("POST", "/api/v1/templates", {"name": "Reminder", "spintax": True,
                                                                   "body": "{Hi|Hello} {name}, see you at {time}."})
    assert status == 201, made
    assert headers["Location"] == f"/api/v1/templates/{made['id']}"
    assert made["placeholders"] == ["name", "time"] and made["segments"] == 1 and made["spintax"] is True
    assert made["created_at"].endswith("Z")
    status, _, listed = api.call("GET", "/api/v1/templates")
    assert status == 200 and [row["id"] for row in listed["data"]] == [made["id"]]
    status, _, one = api.call("GET", f"/api/v1/templates/{made['id']}")
    assert status == 200 and one == made
    status, _, changed = api.call("PATCH", f"/api/v1/templates/{made['id']}", {"body": "Bye {who}", "spintax": False})
    assert status == 200 and (changed["body"], changed["placeholders"], changed["spintax"]) == ("Bye {who}",
                                                                                                ["who"], False)
    status, _, _ = api.call("DELETE", f"/api/v1/templates/{made['id']}")
    assert status == 204
    for method in ("GET", "DELETE"):
        status, headers, problem = api.call(method, f"/api/v1/templates/{made['id']}")
        assert status == 404 and headers["Content-Type"] == "application/problem+json", problem
    status, _, problem = api.call("PATCH", f"/api/v1/templates/{made['id']}", {"body": "x"})
    assert status == 404


def test_the_api_answers_a_taken_name_with_409(app):
    api = keyed(app, "read", "book")
    assert api.call("POST", "/api/v1/templates", {"name": "Reminder", "body": "a"})[0] == 201
    status, headers, problem = api.call("POST", "/api/v1/templates", {"name": "REMINDER", "body": "b"})
    assert (status, headers["Content-Type"], problem["type"]) == (409, "application/problem+json",
                                                                  "urn:modemgw:problem:conflict")
    assert "exists already" in problem["detail"]
    other = api.call("POST", "/api/v1/templates", {"name": "Other", "body": "c"})[2]
    assert api.call("PATCH", f"/api/v1/templates/{other['id']}", {"name": "reminder"})[0] == 409


@pytest.mark.parametrize("body, field, words", [
    ({"name": "x", "body": "{Hi|Hello", "spintax": True}, "body", "unclosed"),
    ({"name": "x", "body": "Hi {first name!}"}, "body", "opens no placeholder"),
    ({"name": "x", "body": "x" * (text.MAX_BODY_CHARS + 1)}, "body", "at most 163,200"),
    ({"name": "n" * 61, "body": "x"}, "name", "1 to 60"),
    ({"name": "x"}, "body", "'body' is missing"),
    ({"body": "x"}, "name", "'name' is missing"),
    ({"name": "x", "body": "x", "colour": "red"}, "colour", "unknown field"),
    ({"name": "x", "body": "x", "spintax": "yes"}, "spintax", "must be boolean"),
    ({"name": None, "body": "x"}, "name", "must not be null"),
], ids=["spintax", "placeholder", "long-body", "long-name", "no-body", "no-name", "unknown", "type", "null"])
def test_the_api_refuses_a_bad_template_by_field(app, body, field, words):
    api = keyed(app, "read", "book")
    status, headers, problem = api.call("POST", "/api/v1/templates", body)
    assert (status, headers["Content-Type"]) == (400, "application/problem+json"), problem
    assert problem["field"] == field and words in problem["detail"], problem
    assert api.call("GET", "/api/v1/templates")[2]["data"] == []


def test_the_api_needs_read_to_read_and_book_to_change(app):
    writer = keyed(app, "book")
    reader = keyed(app, "read")
    sender = keyed(app, "send")
    admin = keyed(app, "admin")
    status, _, made = writer.call("POST", "/api/v1/templates", {"name": "A", "body": "a"})
    assert status == 201
    assert writer.call("GET", "/api/v1/templates")[0] == 403, "book alone does not read"
    assert reader.call("GET", f"/api/v1/templates/{made['id']}")[0] == 200
    status, _, problem = reader.call("POST", "/api/v1/templates", {"name": "B", "body": "b"})
    assert status == 403 and "'book'" in problem["detail"]
    assert reader.call("PATCH", f"/api/v1/templates/{made['id']}", {"body": "c"})[0] == 403
    assert reader.call("DELETE", f"/api/v1/templates/{made['id']}")[0] == 403
    assert sender.call("GET", "/api/v1/templates")[0] == 403
    assert keyed(app, "read").call("GET", "/api/v1/templates", key=None)[0] == 401
    assert admin.call("PATCH", f"/api/v1/templates/{made['id']}", {"name": "Admin's"})[0] == 200
    assert admin.call("DELETE", f"/api/v1/templates/{made['id']}")[0] == 204
    assert reader.call("GET", "/api/v1/templates")[2]["data"] == []


def test_the_api_bounds_what_it_reads(app):
    api = keyed(app, "read", "book")
    status, _, problem = api.call("POST", "/api/v1/templates", raw=b"not json", headers={"Content-Type": "text/plain"})
    assert status == 415, problem
    status, _, problem = api.call("POST", "/api/v1/templates", raw=b"{" * 10_000)
    assert status == 400 and problem["type"] == "urn:modemgw:problem:invalid-json"
    assert api.call("GET", f"/api/v1/templates/{2**64}")[0] == 404, "an id SQLite cannot hold names no template"
