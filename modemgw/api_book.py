"""The REST API's address book: contacts and groups (routes on the `/api/v1` blueprint of `modemgw.api`).

Reading needs the `read` scope; changes, imports and group membership need `book`. A contact or group that breaks
a rule answers 400 with the field at fault, a number or group name that is taken 409, an unknown id 404.
"""

from __future__ import annotations

from flask import Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from modemgw.api import ApiProblem, _check_fields, _gateway, _json_body, _whole, api, requires
from modemgw.book import MAX_IMPORT_BYTES, BookError
from modemgw.problems import problem
from modemgw.views import iso

MAX_PAGE = 500  # contacts in one page
CONTACT_FIELDS: dict[str, tuple] = {"name": (str,), "number": (str,), "fields": (dict,), "notes": (str,),
                                    "groups": (list,)}
GROUP_FIELDS: dict[str, tuple] = {"name": (str,), "description": (str,)}
# The media types an import is read as (`Content-Type`, without its parameters)
IMPORT_TYPES = {"text/csv": "csv", "application/csv": "csv", "text/comma-separated-values": "csv",
                "application/vnd.ms-excel": "csv", "text/vcard": "vcard", "text/x-vcard": "vcard",
                "text/directory": "vcard"}
EXPORT_TYPES = {"csv": ("text/csv; charset=utf-8", "contacts.csv"), "vcard": ("text/vcard; charset=utf-8",
                                                                               "contacts.vcf")}


@api.errorhandler(BookError)
def on_book_error(error: BookError):
    return problem(400, "invalid-request", error.detail, field=error.field)


def contact_view(contact: dict) -> dict:
    """A contact as the API shows it."""
    return {"id": contact["id"], "name": contact["name"], "number": contact["number"], "fields": contact["fields"],
            "notes": contact["notes"], "groups": contact["groups"], "opted_out": contact["opted_out"],
            "created_at": iso(contact["created_at"]), "updated_at": iso(contact["updated_at"])}


def group_view(group: dict) -> dict:
    """A group as the API shows it: its member counts too (`opted_out`: members on the opt-out list)."""
    return {"id": group["id"], "name": group["name"], "description": group["description"],
            "members": group["members"], "opted_out": group["opted_out"], "created_at": iso(group["created_at"])}


# --- contacts -----------------------------------------------------------------------------------------------------

@api.get("/contacts")
@requires("read")
def list_contacts():
    """Contacts in name order, a page at a time (`next_cursor` is the `cursor` of the next page)."""
    args = request.args
    limit = min(MAX_PAGE, max(1, _whole(args, "limit", 100) or 100))
    rows = _gateway().contacts(search=args.get("q") or None, group=args.get("group") or None, limit=limit + 1,
                               after=_whole(args, "cursor"))
    data = [contact_view(row) for row in rows[:limit]]
    return {"data": data, "next_cursor": data[-1]["id"] if len(rows) > limit else None}


@api.post("/contacts")
@requires("book")
def create_contact():
    body = _json_body()
    _check_fields(body, CONTACT_FIELDS)
    for name in ("name", "number"):
        if name not in body:
            raise ApiProblem(400, "invalid-request", f"'{name}' is missing", field=name)
    contact = _gateway().create_contact(body["name"], body["number"], body.get("fields"), body.get("notes", ""),
                                        body.get("groups", []))
    return contact_view(contact), 201


@api.get("/contacts/<id:contact_id>")
@requires("read")
def get_contact(contact_id: int):
    return contact_view(_gateway().contact(contact_id))


@api.patch("/contacts/<id:contact_id>")
@requires("book")
def update_contact(contact_id: int):
    body = _json_body()
    _check_fields(body, CONTACT_FIELDS)
    return contact_view(_gateway().update_contact(contact_id, **body))


@api.delete("/contacts/<id:contact_id>")
@requires("book")
def delete_contact(contact_id: int):
    _gateway().delete_contact(contact_id)
    return "", 204


@api.post("/contacts/import")
@requires("book")
def import_contacts():
    """The body is the file itself (`Content-Type: text/csv` or `text/vcard`), at most 5 MiB; `?group=` puts
    every imported contact into that group."""
    kind = IMPORT_TYPES.get((request.mimetype or "").lower())
    if kind is None:
        raise ApiProblem(415, "unsupported-media-type",
                         f"send the file with 'Content-Type: text/csv' or 'text/vcard' (got "
                         f"{request.content_type or 'no content type'!r})")
    too_large = f"the file is larger than {MAX_IMPORT_BYTES:,} bytes; split it"
    if (request.content_length or 0) > MAX_IMPORT_BYTES:
        raise ApiProblem(413, "payload-too-large", too_large)
    request.max_content_length = MAX_IMPORT_BYTES  # above the app's limit for JSON bodies
    try:
        data = request.get_data(cache=False)
    except RequestEntityTooLarge:  # a chunked body with no Content-Length
        raise ApiProblem(413, "payload-too-large", too_large) from None
    return _gateway().import_contacts(data, kind, request.args.get("group") or None)


@api.get("/contacts/export")
@requires("read")
def export_contacts():
    """Every contact (or `?group=`'s members) as a CSV or vCard file (`?format=csv|vcard`)."""
    kind = request.args.get("format", "csv")
    if kind not in EXPORT_TYPES:
        raise ApiProblem(400, "invalid-request", "'format' must be csv or vcard", field="format")
    media, filename = EXPORT_TYPES[kind]
    text = _gateway().export_contacts(kind, request.args.get("group") or None)
    return Response(text, content_type=media, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


# --- groups -------------------------------------------------------------------------------------------------------

@api.get("/groups")
@requires("read")
def list_groups():
    return {"data": [group_view(row) for row in _gateway().groups()]}


@api.post("/groups")
@requires("book")
def create_group():
    body = _json_body()
    _check_fields(body, GROUP_FIELDS)
    if "name" not in body:
        raise ApiProblem(400, "invalid-request", "'name' is missing", field="name")
    return group_view(_gateway().create_group(body["name"], body.get("description", ""))), 201


@api.get("/groups/<id:group_id>")
@requires("read")
def get_group(group_id: int):
    return group_view(_gateway().group(group_id))


@api.patch("/groups/<id:group_id>")
@requires("book")
def update_group(group_id: int):
    body = _json_body()
    _check_fields(body, GROUP_FIELDS)
    return group_view(_gateway().update_group(group_id, **body))


@api.delete("/groups/<id:group_id>")
@requires("book")
def delete_group(group_id: int):
    """The group goes; its contacts stay in the book."""
    _gateway().delete_group(group_id)
    return "", 204


@api.post("/groups/<id:group_id>/members")
@requires("book")
def add_group_members(group_id: int):
    body = _json_body()
    _check_fields(body, {"contact_ids": (list,)})
    if "contact_ids" not in body:
        raise ApiProblem(400, "invalid-request", "'contact_ids' is missing", field="contact_ids")
    return group_view(_gateway().add_to_group(group_id, body["contact_ids"]))


@api.delete("/groups/<id:group_id>/members/<id:contact_id>")
@requires("book")
def remove_group_member(group_id: int, contact_id: int):
    _gateway().remove_from_group(group_id, contact_id)
    return "", 204
