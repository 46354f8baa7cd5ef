"""The saved templates pages: the list with a form for a new one (`ui.templates`), and one template to edit, see
what it costs (its placeholders and the segments of a sample) and delete (`ui.template`). Any logged-in user may
manage templates; a template is chosen in Compose (`ui.compose?template=<id>`). The live segment counter is
Compose's (`data-preview` of app.js over `ui.preview`)."""

from __future__ import annotations

from flask import abort, redirect, render_template, request, url_for

from modemgw.store import Duplicate, NotFound
from modemgw.templates import LibraryError
from webui import gateway, ui
from webui.sessions import login_required, notice


def _form() -> dict:
    """The template form as sent: name, body, and whether spintax is on (sizes are checked by the gateway)."""
    return {"name": request.form.get("name", ""), "body": request.form.get("body", ""),
            "spintax": request.form.get("spintax") == "on"}


def _list_page(form: dict | None = None, error: str | None = None, field: str | None = None, status: int = 200):
    return render_template("templates.html", templates=gateway().templates(), form=form or {}, error=error,
                           field=field), status


@ui.get("/ui/templates")
@login_required()
def templates():
    return _list_page()


@ui.post("/ui/templates")
@login_required()
def create_template():
    form = _form()
    try:
        saved = gateway().create_template(form["name"], form["body"], spintax=form["spintax"])
    except LibraryError as error:
        return _list_page(form, error.detail, error.field, 400)
    except Duplicate as error:
        return _list_page(form, str(error), "name", 409)
    notice(f"Template {saved['name']} saved.")
    return redirect(url_for("ui.template", template_id=saved["id"]))


def _template_or_404(template_id: int) -> dict:
    try:
        return gateway().template(template_id)
    except NotFound:
        abort(404, description=f"There is no template {template_id}; it may have been deleted.")


@ui.get("/ui/templates/<id:template_id>")
@login_required()
def template(template_id: int):
    return render_template("template.html", t=_template_or_404(template_id), form=None, error=None, field=None)


@ui.post("/ui/templates/<id:template_id>")
@login_required()
def update_template(template_id: int):
    form = _form()
    try:
        saved = gateway().update_template(template_id, **form)
    except NotFound:
        abort(404, description=f"There is no template {template_id}; it may have been deleted.")
    except (LibraryError, Duplicate) as error:
        detail, field, status = ((error.detail, error.field, 400) if isinstance(error, LibraryError)
                                 else (str(error), "name", 409))
        return render_template("template.html", t=_template_or_404(template_id), form=form, error=detail,
                               field=field), status
    notice("Template saved.")
    return redirect(url_for("ui.template", template_id=saved["id"]))


@ui.post("/ui/templates/<id:template_id>/delete")
@login_required()
def delete_template(template_id: int):
    try:
        name = gateway().template(template_id)["name"]
        gateway().delete_template(template_id)
    except NotFound:
        abort(404, description=f"There is no template {template_id}; it may have been deleted already.")
    notice(f"Template {name} deleted.")
    return redirect(url_for("ui.templates"))
