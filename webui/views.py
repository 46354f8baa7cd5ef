"""The pages every logged-in user sees: dashboard, messages, inbox and modems, all through the gateway (also a
modem's state, settings, USSD and AT console: the gateway asks the pool). Compose is `webui.compose`."""

from __future__ import annotations

import time

from flask import abort, g, jsonify, redirect, render_template, request, url_for

from modemgw.gateway import SubmitError, sent_today
from modemgw.store import NotFound
from webui import compose, gateway, ui  # noqa: F401 - compose registers the compose pages on `ui`
from webui.sessions import login_required, notice

SIGNAL_BARS = (-105, -95, -85, -75, -65)  # dBm at which the 1st to 5th bar lights


# --- dashboard --------------------------------------------------------------------------------------------

def _today_start() -> float:
    now = time.localtime()
    return time.mktime((now.tm_year, now.tm_mon, now.tm_mday, 0, 0, 0, 0, 0, -1))


def _modem_card(modem: dict, today: dict[str, int]) -> dict:
    """A modem (as `Gateway.modems_now` shows it) on the dashboard and the modems page."""
    signal = modem["signal_dbm"]
    bars = 0 if signal is None else sum(1 for threshold in SIGNAL_BARS if signal >= threshold)
    quota, used = modem["quota_day"], sent_today(modem)
    return {"id": modem["id"], "label": modem["label"], "operator": modem["operator"] or "—",
            "signal_dbm": signal, "bars": bars, "registration": modem["registration"] or "—",
            "state": modem["state"], "enabled": bool(modem["enabled"]), "today": today,
            "quota": f"{used} / {quota}" if quota else f"{used} / —"}


def _dashboard_data() -> dict:
    per_modem = gateway().counts_by_modem(_today_start())
    modems = [_modem_card(modem, per_modem.get(modem["id"], {"sent": 0, "delivered": 0, "failed": 0}))
              for modem in gateway().modems_now()]
    totals = {name: sum(bucket[name] for bucket in per_modem.values()) for name in ("sent", "delivered", "failed")}
    return {"modems": modems, "queue": gateway().queue_depth(), "totals": totals}


@ui.get("/")
@login_required()
def dashboard():
    return render_template("dashboard.html", data=_dashboard_data(), hours=gateway().sent_per_hour(time.time()))


@ui.get("/ui/dashboard.json")
@login_required()
def dashboard_json():
    return jsonify(_dashboard_data())


# --- compose: webui/compose.py (compose, the confirm page, preview) -------------------------------------------

# --- messages ---------------------------------------------------------------------------------------------

@ui.get("/ui/messages")
@login_required()
def messages():
    args = request.args
    rows = gateway().messages(200, status=args.get("status") or None, search=args.get("q") or None)
    return render_template("messages.html", rows=rows, args=args)


@ui.get("/ui/messages/<id:message_id>")
@login_required()
def message(message_id: int):
    try:
        row = gateway().message(message_id)
    except NotFound:
        abort(404)
    labels = {modem["id"]: modem["label"] for modem in gateway().modems_now()}
    return render_template("message.html", m=row, labels=labels)


@ui.post("/ui/messages/<id:message_id>/cancel")
@login_required()
def cancel(message_id: int):
    status = gateway().cancel(message_id)
    notice("Canceled." if status == "canceled" else f"Not canceled: the message is {status}.")
    return redirect(url_for("ui.message", message_id=message_id))


@ui.post("/ui/messages/<id:message_id>/resend")
@login_required()
def resend(message_id: int):
    try:
        result = gateway().resend(message_id)
    except SubmitError as error:
        notice(f"Not sent again: {error.detail}")
        return redirect(url_for("ui.message", message_id=message_id))
    if not result["messages"]:  # the recipient opted out since
        notice(f"Not sent again: {result['skipped'][0]['to']} has opted out (it replied STOP, or was added to the "
               "opt-out list); it can text START to opt back in.")
        return redirect(url_for("ui.message", message_id=message_id))
    notice("Sent again as a new message.")
    return redirect(url_for("ui.message", message_id=result["messages"][0]["id"]))


# --- modems -----------------------------------------------------------------------------------------------

@ui.get("/ui/modems")
@login_required()
def modems():
    return render_template("modems.html", data=_dashboard_data())


def _limit(name: str) -> int | None:
    value = request.form.get(name, "").strip()
    return int(value) if value else None


def _by() -> str:
    return f"web UI user {g.user['username']}"


def _modem_action(modem_id: int, action: str | None, modem: dict) -> tuple[dict, dict | None]:
    """A modem page's form applied: (the modem now, what the modem answered). Raises SubmitError, ValueError,
    NotFound, ModemRequestError."""
    form = request.form
    if action == "settings":
        modem = gateway().update_modem(
            modem_id, enabled=form.get("enabled") == "on", label=form.get("label", modem["label"]),
            group=form.get("group", modem["grp"] or "").strip() or None, rate_per_minute=_limit("rate_per_minute"),
            quota_day=_limit("quota_day"), quota_month=_limit("quota_month"))
        notice("Settings saved.")
        return modem, None
    if action == "ussd":
        code = form.get("code", "").strip()
        reply = gateway().ussd(modem_id, code, admin=g.user["role"] == "admin", by=_by())
        return modem, {"kind": "ussd", "command": code, "lines": [reply.text or f"(status {reply.status})"],
                       "final": ""}
    if action == "at":
        command = form.get("command", "").strip()
        reply = gateway().at_command(modem_id, command, timeout=10, by=_by(), user=g.user["username"])
        return modem, {"kind": "at", "command": command, "lines": reply.lines, "final": reply.final,
                       "elapsed": round(reply.elapsed * 1000)}
    return modem, None


@ui.route("/ui/modems/<id:modem_id>", methods=["GET", "POST"])
@login_required()
def modem(modem_id: int):
    try:
        row = gateway().modem_now(modem_id)
    except NotFound:
        abort(404)
    result = None
    if request.method == "POST":
        action = request.form.get("action")
        if action in ("settings", "at") and g.user["role"] != "admin":
            abort(403, description="Only administrators can change modem settings or use the AT console.")
        try:
            row, result = _modem_action(modem_id, action, row)
        except Exception as error:  # noqa: BLE001 - the modem's answer or failure is shown, never a crash page
            result = {"kind": "error", "command": request.form.get("command") or request.form.get("code") or "",
                      "lines": [str(error) or error.__class__.__name__], "final": "ERROR"}
    state = next((state for state in gateway().modem_states() if state.modem_id == modem_id), None)
    return render_template("modem.html", m=row, result=result, history=gateway().at_history(modem_id),
                           configured_label=state.configured_label if state is not None else None)
