"""The REST API's saved templates (routes on the `/api/v1` blueprint of `modemgw.api`).

Reading needs the `read` scope; saving, changing and deleting the `book` scope (the address book's, which covers
what a sender keeps for later). A template that cannot be saved answers 400 with the field at fault; a name that
is taken 409 (the app's handler of the store's Duplicate).
"""

from __future__ import annotations

from modemgw.api import _check_fields, _gateway, _json_body, api, requires
from modemgw.problems import ApiProblem, problem
from modemgw.templates import LibraryError
from modemgw.views import iso

TEMPLATE_FIELDS: dict[str, tuple] = {"name": (str,), "body": (str,), "spintax": (bool,)}


def template_view(template: dict) -> dict:
    """A template (modemgw.templates.describe) as the API shows it: times in ISO 8601."""
    return template | {"created_at": iso(template["created_at"]), "updated_at": iso(template["updated_at"])}


@api.errorhandler(LibraryError)
def on_library_error(error: LibraryError):
    return problem(400, "invalid-request", error.detail, field=error.field)


@api.get("/templates")
@requires("read")
def list_templates():
    return {"data": [template_view(row) for row in _gateway().templates()]}


@api.post("/templates")
@requires("book")
def create_template():
    body = _json_body()
    _check_fields(body, TEMPLATE_FIELDS)
    for name in ("name", "body"):
        if name not in body:
            raise ApiProblem(400, "invalid-request", f"'{name}' is missing", field=name)
    row = _gateway().create_template(body["name"], body["body"], spintax=body.get("spintax", False))
    return template_view(row), 201, {"Location": f"/api/v1/templates/{row['id']}"}


@api.get("/templates/<id:template_id>")
@requires("read")
def get_template(template_id: int):
    return template_view(_gateway().template(template_id))


@api.patch("/templates/<id:template_id>")
@requires("book")
def update_template(template_id: int):
    body = _json_body()
    _check_fields(body, TEMPLATE_FIELDS)
    return template_view(_gateway().update_template(template_id, **body))


@api.delete("/templates/<id:template_id>")
@requires("book")
def delete_template(template_id: int):
    _gateway().delete_template(template_id)
    return "", 204
