"""Conversations: the inbox grouped by (our SIM, their number), each thread with its replies."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for

from modemgw.gateway import SubmitError, SubmitRequest
from modemgw.store import StoreError
from webui import gateway, storage_message, ui
from webui.sessions import login_required, notice

# --- inbox ------------------------------------------------------------------------------------------------

def _sim() -> int | None:
    value = request.args.get("sim", "")
    return int(value) if value.isdigit() and len(value) <= 12 else None


@ui.get("/ui/inbox")
@login_required()
def inbox():
    return render_template("inbox.html", conversations=gateway().conversations(200))


@ui.route("/ui/inbox/<path:number>", methods=["GET", "POST"])
@login_required()
def conversation(number: str):
    """One conversation: what `number` sent to one of our SIMs (`?sim=` its modem id; without it, to any) and
    what we sent back. A reply leaves from the conversation's SIM while it can send."""
    sim = _sim()
    labels = {modem["id"]: modem["label"] for modem in gateway().modems_now()}
    if request.method == "POST":
        body = request.form.get("body", "").replace("\r\n", "\n")
        try:
            result = gateway().send(SubmitRequest(body, number, prefer_sim=sim))
            if result["skipped"]:
                notice(f"Not sent: {number} has opted out (it replied STOP, or was added to the opt-out list); it "
                       "can text START to opt back in.")
            elif sim is not None and not gateway().sim_can_send(sim):
                notice(f"Reply queued. {labels.get(sim, 'This conversation’s SIM')} cannot send now, so it leaves "
                       "from another SIM: the customer sees another number.")
            else:
                notice("Reply queued.")
        except SubmitError as error:
            notice(f"Not sent: {error.detail}")
        except StoreError as error:
            notice(f"Not sent: {storage_message(error)}")
        return redirect(url_for("ui.conversation", number=number, sim=sim))
    # read only when opened by a person here, not by another site's <img> or link
    opened = request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")
    thread = gateway().conversation(number, sim=sim, mark_read=opened)
    return render_template("conversation.html", number=number, thread=thread, sim=sim, labels=labels,
                           sim_ok=sim is None or gateway().sim_can_send(sim),
                           opted_out=bool(gateway().optouts_among([number])))
