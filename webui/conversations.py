"""Conversations: the inbox grouped by (our SIM, their number), each thread with its replies."""

from __future__ import annotations

from flask import abort, g, redirect, render_template, request, url_for

from modemgw.gateway import SubmitError, SubmitRequest
from modemgw.store import StoreError
from webui import gateway, row_links, storage_message, ui
from webui.sessions import login_required, notice

# --- inbox ------------------------------------------------------------------------------------------------

def _sim() -> int | None:
    value = request.args.get("sim", "")
    return int(value) if value.isdigit() and len(value) <= 12 else None


@ui.get("/ui/inbox")
@login_required()
def inbox():
    conversations = gateway().conversations(200)
    senders = [c["sender"] for c in conversations]
    return render_template("inbox.html", conversations=conversations, names=gateway().contact_names(senders),
                           opted_out=gateway().optouts_among(senders),
                           link=row_links("ui.conversation", "number"))


def _reply(number: str, sim: int | None, thread: list[dict], body: str, labels: dict) -> None:
    """Send `body` as a reply in the conversation and say what happened: it answers the conversation's latest
    inbound message (so it leaves from the SIM that message came to, and the message page links back here)."""
    latest = next((item["id"] for item in reversed(thread) if item["direction"] == "in"), None)
    request_ = SubmitRequest(body, reply_to=latest, user_id=g.user["id"]) if latest is not None else \
        SubmitRequest(body, number, prefer_sim=sim, user_id=g.user["id"])
    result = gateway().send(request_)
    if result["skipped"]:
        notice(f"Not sent: {number} has opted out (it replied STOP, or was added to the opt-out list); it can text "
               "START to opt back in.")
    elif sim is not None and not gateway().sim_can_send(sim):
        notice(f"Reply queued. {labels.get(sim, 'This conversation’s SIM')} cannot send now, so it leaves from "
               "another SIM: the customer sees another number.")
    else:
        notice("Reply queued.")


@ui.route("/ui/inbox/<path:number>", methods=["GET", "POST"])
@login_required()
def conversation(number: str):
    """One conversation: what `number` sent to one of our SIMs (`?sim=` its modem id; without it, to any) and
    what we sent back. A reply leaves from the conversation's SIM while it can send."""
    sim = _sim()
    labels = {modem["id"]: modem["label"] for modem in gateway().modems_now()}
    if len(number) > 64 or (request.args.get("sim") and sim not in labels):
        abort(404, description=f"There is no conversation with {number[:64]} on that SIM.")
    if request.method == "POST":
        thread = gateway().conversation(number, sim=sim)
        try:
            _reply(number, sim, thread, request.form.get("body", "").replace("\r\n", "\n"), labels)
        except SubmitError as error:
            notice(f"Not sent: {error.detail}")
        except StoreError as error:
            notice(f"Not sent: {storage_message(error)}")
        return redirect(url_for("ui.conversation", number=number, sim=sim))
    # read only when opened by a person here, not by another site's <img> or link
    opened = request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")
    thread = gateway().conversation(number, sim=sim, mark_read=opened)
    if not thread:
        abort(404, description=f"There is no conversation with {number}"
                               f"{' on ' + labels[sim] if sim is not None else ''}.")
    try:
        gateway().normalize_number(number)
        unreachable = None
    except SubmitError as error:  # an alphanumeric sender, a short code the network does not route back, ...
        unreachable = error.detail
    return render_template("conversation.html", number=number, thread=thread, sim=sim, labels=labels,
                           sim_ok=sim is None or gateway().sim_can_send(sim), unreachable=unreachable,
                           contact=gateway().contact_names([number]).get(number),
                           opted_out=bool(gateway().optouts_among([number])))
