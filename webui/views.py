"""The pages every logged-in user sees: dashboard, compose, messages, inbox and modems, all through the gateway
(also a modem's state, settings, USSD and AT console: the gateway asks the pool)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time

from flask import abort, g, jsonify, redirect, render_template, request, url_for

from modemgw import text
from modemgw.gateway import SubmitError, SubmitRequest, sent_today
from modemgw.problems import STORAGE_RETRY_AFTER
from modemgw.store import NotFound, StoreError
from webui import gateway, storage_message, ui
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


# --- compose ----------------------------------------------------------------------------------------------

def _recipients_from_form() -> tuple[list[str] | None, list[dict] | None, list[str]]:
    """(plain numbers, or recipients with CSV fields, and the CSV's column names)."""
    upload = request.files.get("csv")
    if upload and upload.filename:
        raw = upload.read().decode("utf-8-sig", errors="replace")
        reader = csv.DictReader(io.StringIO(raw))
        columns = list(reader.fieldnames or [])
        phone = next((name for name in columns if name.strip().lower() in ("to", "phone", "number", "mobile")), None)
        if phone is None:
            raise SubmitError("the CSV needs a column named to, phone, number or mobile", "csv")
        rows: list[dict] = [{"to": row[phone], "fields": {key.strip(): value for key, value in row.items() if key}}
                            for row in reader if row.get(phone)]
        return None, rows, columns
    numbers = [item.strip() for item in request.form.get("to", "").replace(";", "\n").replace(",", "\n")
               .splitlines() if item.strip()]
    return numbers, None, []


def _submit_options() -> dict:
    form = request.form
    options = {"priority": int(form.get("priority") or 0), "spintax": form.get("spintax") == "on",
               "smart_encoding": form.get("smart") == "on", "route": form.get("modem") or None}
    if form.get("send_at"):
        options["send_at"] = dt.datetime.fromisoformat(form["send_at"]).astimezone().isoformat()
    return options


@ui.route("/ui/compose", methods=["GET", "POST"])
@login_required()
def compose():
    modems = gateway().modems_now()
    if request.method == "GET":
        return render_template("compose.html", modems=modems, form={})
    body = request.form.get("body", "").replace("\r\n", "\n")
    try:
        if request.form.get("recipients_json"):  # the confirmation step carries the CSV's rows
            numbers, recipients, columns = None, json.loads(request.form["recipients_json"]), []
            if not isinstance(recipients, list) or not all(isinstance(item, dict) for item in recipients):
                raise SubmitError("the recipient list of this form is damaged; start again from Compose", "csv")
        else:
            numbers, recipients, columns = _recipients_from_form()
        options = _submit_options()
        count = len(recipients if recipients is not None else numbers)
        if count == 0:
            raise SubmitError("add at least one recipient (or upload a CSV)", "to")
        info = text.info(body or " ", smart=options["smart_encoding"])
        opted = gateway().optouts_among([item if isinstance(item, str) else item["to"]
                                         for item in (numbers or recipients or [])])
        if request.form.get("confirm") != "yes":
            return render_template("confirm.html", body=body, numbers=numbers, recipients=recipients,
                                   columns=columns, count=count, info=info, opted=len(opted), form=request.form,
                                   recipients_json=json.dumps(recipients) if recipients else "")
        result = gateway().send(SubmitRequest(body, numbers, recipients=recipients, **options))
    except (SubmitError, ValueError) as error:
        detail = getattr(error, "detail", str(error))
        return render_template("compose.html", modems=modems, form=request.form, error=detail), 400
    except StoreError as error:  # the form stays filled in, to be sent again when the database works
        return (render_template("compose.html", modems=modems, form=request.form, error=storage_message(error)),
                503, {"Retry-After": str(STORAGE_RETRY_AFTER)})
    notice(f"Queued {len(result['messages'])} message(s), {result['segments']} segment(s); "
           f"{len(result['skipped'])} skipped (opted out or repeated).")
    if len(result["messages"]) == 1:
        return redirect(url_for("ui.message", message_id=result["messages"][0]["id"]))
    return redirect(url_for("ui.messages"))


@ui.post("/ui/preview")
@login_required()
def preview():
    body = request.form.get("body", "")
    try:
        rendered = text.render(body, spintax=True, seed=0) if request.form.get("spintax") == "on" else body
        info = text.info(rendered or "", smart=request.form.get("smart") == "on")
    except text.TextError as error:
        return jsonify(error=str(error)), 400
    return jsonify(info.as_dict() | {"text": rendered})


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
    result = gateway().resend(message_id)
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
