"""Conversations: the inbox grouped by (our SIM, their number), each thread with its replies."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for

from modemgw.gateway import SubmitError
from modemgw.store import StoreError
from webui import gateway, storage_message, ui
from webui.sessions import login_required, notice

# --- inbox ------------------------------------------------------------------------------------------------

@ui.get("/ui/inbox")
@login_required()
def inbox():
    return render_template("inbox.html", conversations=gateway().conversations(200))


@ui.route("/ui/inbox/<path:number>", methods=["GET", "POST"])
@login_required()
def conversation(number: str):
    if request.method == "POST":
        body = request.form.get("body", "").replace("\r\n", "\n")
        try:
            gateway().submit(body, number)
            notice("Reply queued.")
        except SubmitError as error:
            notice(f"Not sent: {error.detail}")
        except StoreError as error:
            notice(f"Not sent: {storage_message(error)}")
        return redirect(url_for("ui.conversation", number=number))
    # read only when opened by a person here, not by another site's <img> or link
    opened = request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")
    thread = gateway().conversation(number, mark_read=opened)
    return render_template("conversation.html", number=number, thread=thread)
