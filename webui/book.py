"""The address book pages: contacts, groups, import and export.

Any logged-in user may read and change the book (an office tool, like the compose page). Everything goes through
the gateway's address book (`modemgw.book`); a form that breaks a rule comes back filled in, with what to fix.
Deleting a contact or a group takes a ticked "Yes, delete" box with the Delete button (checked here too, not only
by the browser): one stray click deletes nothing.
"""

from __future__ import annotations

from flask import Response, abort, redirect, render_template, request, url_for

from modemgw.book import FORMATS, MAX_IMPORT_BYTES, BookError, file_format
from modemgw.store import Duplicate, NotFound, StoreError
from webui import error_page, gateway, storage_message, ui
from webui.sessions import login_required, notice

PAGE = 50  # contacts on one page of the list
BLANK_FIELD_ROWS = 3  # empty name=value rows on a contact's form, for new fields
MAX_FORM_FIELDS = 60  # name=value rows a contact's form may send (30 fields, and blanks)
SHOWN_REJECTIONS = 500  # rejected lines listed on an import's result page
CONFIRMED = "yes"  # the value of a delete form's ticked "Yes, delete" box (`confirm`)
EXPORT_TYPES = {"csv": ("text/csv; charset=utf-8", "contacts.csv"),
                "vcard": ("text/vcard; charset=utf-8", "contacts.vcf")}


class ImportTooLarge(Exception):
    """An upload larger than an import may be, refused before its body is read."""


@ui.url_value_preprocessor
def import_limit(endpoint: str | None, values: dict | None) -> None:
    """The import form may send up to 5 MiB (and the form around it), more than the app's limit for other
    requests. Set before anything reads the body: URL value preprocessors run before the session's CSRF check,
    which reads the form."""
    if endpoint == "ui.contacts_import" and request.method == "POST":
        limit = MAX_IMPORT_BYTES + 64 * 1024
        if (request.content_length or 0) > limit:
            raise ImportTooLarge()
        request.max_content_length = limit


@ui.errorhandler(ImportTooLarge)
def import_too_large(error: ImportTooLarge):
    return error_page(413, f"An import may have at most {MAX_IMPORT_BYTES:,} bytes; split the file.",
                      title="The file is too large")


def _problem(error: Exception) -> str:
    """What a person reads when a change was refused."""
    if isinstance(error, BookError):
        return error.detail
    if isinstance(error, (Duplicate, NotFound)):
        return str(error)
    if isinstance(error, StoreError):
        return storage_message(error)
    raise error


# --- contacts -----------------------------------------------------------------------------------------------------

@ui.get("/ui/contacts")
@login_required()
def contacts():
    """The list: search, group filter, a page at a time (`cursor`: the last contact of the page before)."""
    args = request.args
    search, group = args.get("q", "").strip()[:200], args.get("group", "").strip()
    cursor = args.get("cursor", "")
    error = None
    try:
        rows = gateway().contacts(search=search or None, group=group or None, limit=PAGE + 1,
                                  after=int(cursor) if cursor.isdecimal() and len(cursor) < 19 else None)
    except (BookError, NotFound) as refused:
        rows, error = [], _problem(refused)
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    return render_template("contacts.html", rows=rows, groups=gateway().groups(), search=search, group=group,
                           next_cursor=rows[-1]["id"] if more else None, paged=bool(cursor), error=error)


def _form_fields() -> dict[str, str]:
    """The free fields of a contact's form: its name=value rows (blank rows left out). Raises BookError."""
    names, values = request.form.getlist("field_name"), request.form.getlist("field_value")
    if len(names) > MAX_FORM_FIELDS:
        raise BookError(f"at most {MAX_FORM_FIELDS} field rows", "fields")
    fields: dict[str, str] = {}
    for name, value in zip(names, values, strict=False):
        name, value = name.strip(), value.strip()
        if not name and not value:
            continue
        if not name:
            raise BookError(f"the value {value[:40]!r} has no field name", "fields")
        if name in fields:
            raise BookError(f"the field {name!r} is there twice", "fields")
        fields[name] = value
    return fields


def _form_contact() -> dict:
    """The contact a form sent, as `create_contact` and `update_contact` take it. Raises BookError."""
    form = request.form
    return {"name": form.get("name", ""), "number": form.get("number", ""), "notes": form.get("notes", ""),
            "fields": _form_fields(), "groups": form.getlist("groups")}


def _shown(contact: dict) -> dict:
    """A contact's form as sent back with an error: what was typed, field rows and all."""
    form = request.form
    rows = [{"name": name, "value": value} for name, value in
            zip(form.getlist("field_name"), form.getlist("field_value"), strict=False) if name or value]
    return {"name": form.get("name", ""), "number": form.get("number", ""), "notes": form.get("notes", ""),
            "groups": form.getlist("groups"), "field_rows": rows, "id": contact.get("id"),
            "opted_out": contact.get("opted_out", False)}


def _editable(contact: dict) -> dict:
    return contact | {"field_rows": [{"name": name, "value": value} for name, value in contact["fields"].items()]}


def _contact_page(contact: dict, error: str | None = None, status: int = 200):
    return render_template("contact.html", contact=contact, groups=gateway().groups(), error=error,
                           blank_rows=BLANK_FIELD_ROWS), status


@ui.route("/ui/contacts/new", methods=["GET", "POST"])
@login_required()
def contact_new():
    if request.method == "GET":
        preset = request.args.get("group", "")
        return _contact_page({"id": None, "name": "", "number": request.args.get("number", "")[:40], "notes": "",
                              "groups": [preset] if preset else [], "field_rows": [], "opted_out": False})
    try:
        contact = gateway().create_contact(**_form_contact())
    except (BookError, StoreError) as refused:
        return _contact_page(_shown({}), _problem(refused), 400)
    notice(f"{contact['name']} ({contact['number']}) added.")
    return redirect(url_for("ui.contacts", q=contact["number"]))


@ui.route("/ui/contacts/<id:contact_id>", methods=["GET", "POST"])
@login_required()
def contact(contact_id: int):
    """A contact's page: change it, or delete it (`action=delete` with `confirm=yes`, the ticked "Yes, delete")."""
    current = gateway().contact(contact_id)  # NotFound: the 404 page
    if request.method == "GET":
        return _contact_page(_editable(current))
    try:
        if request.form.get("action") == "delete":
            if request.form.get("confirm") != CONFIRMED:
                return _contact_page(_editable(current), f"Nothing was deleted: tick “Yes, delete {current['name']}” "
                                                         "next to the Delete button to delete this contact.", 400)
            gateway().delete_contact(contact_id)
            notice(f"{current['name']} deleted.")
            return redirect(url_for("ui.contacts"))
        changed = gateway().update_contact(contact_id, **_form_contact())
    except (BookError, StoreError) as refused:
        return _contact_page(_shown(current), _problem(refused), 400)
    notice(f"{changed['name']} saved.")
    return redirect(url_for("ui.contact", contact_id=contact_id))


# --- groups -------------------------------------------------------------------------------------------------------

def _group_action(action: str) -> str:
    """A groups page form applied: what to tell. Raises BookError, NotFound, Duplicate, StoreError."""
    form = request.form
    if action == "create":
        group = gateway().create_group(form.get("name", ""), form.get("description", ""))
        return f"Group {group['name']} added."
    raw_id = form.get("group_id", "")
    group_id = int(raw_id) if raw_id.isdecimal() and len(raw_id) < 19 else 0  # 0: no group, NotFound
    if action == "rename":
        group = gateway().update_group(group_id, name=form.get("name", ""),
                                       description=form.get("description", ""))
        return f"Group {group['name']} saved."
    if action == "delete":
        name = gateway().group(group_id)["name"]
        if form.get("confirm") != CONFIRMED:
            raise BookError(f"Nothing was deleted: tick “Yes, delete” next to group {name}'s Delete button to delete "
                            "it.", "confirm")
        gateway().delete_group(group_id)
        return f"Group {name} deleted; its contacts stay in the address book."
    raise BookError(f"unknown action {action[:20]!r}")


@ui.route("/ui/groups", methods=["GET", "POST"])
@login_required()
def groups():
    """Groups with their member counts (and how many opted out): add, rename, delete (with `confirm=yes`)."""
    error = None
    if request.method == "POST":
        try:
            notice(_group_action(request.form.get("action", "")))
            return redirect(url_for("ui.groups"))
        except (BookError, StoreError) as refused:
            error = _problem(refused)
    return render_template("groups.html", groups=gateway().groups(), error=error), 400 if error else 200


# --- import and export --------------------------------------------------------------------------------------------

@ui.route("/ui/contacts/import", methods=["GET", "POST"])
@login_required()
def contacts_import():
    """Upload a CSV or vCard file, optionally into a group (an existing one, or a new one by name); the result page
    lists each rejected line and why."""
    groups_now = gateway().groups()
    if request.method == "GET":
        return render_template("contact_import.html", groups=groups_now, result=None, error=None,
                               chosen=request.args.get("group", ""))
    form = request.form
    group = form.get("new_group", "").strip() or form.get("group", "").strip() or None
    upload = request.files.get("file")
    try:
        if upload is None or not upload.filename:
            raise BookError("choose a file to import", "file")
        data = upload.read(MAX_IMPORT_BYTES + 1)
        result = gateway().import_contacts(data, file_format(data, upload.filename), group)
    except (BookError, StoreError) as refused:
        return render_template("contact_import.html", groups=groups_now, result=None, error=_problem(refused),
                               chosen=group or ""), 400
    return render_template("contact_import.html", groups=gateway().groups(), result=result, error=None,
                           chosen=group or "", shown=SHOWN_REJECTIONS, group=group)


@ui.get("/ui/contacts/export")
@login_required()
def contacts_export():
    """Every contact (or a group's) as a CSV or vCard download."""
    kind = request.args.get("format", "csv")
    if kind not in FORMATS:
        abort(400, description="The export format must be csv or vcard.")
    group = request.args.get("group", "").strip() or None
    media, filename = EXPORT_TYPES[kind]
    return Response(gateway().export_contacts(kind, group), content_type=media,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
