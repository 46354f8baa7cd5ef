"""The pages every logged-in user sees: dashboard and modems, all through the gateway (also a modem's state,
settings, USSD and AT console: the gateway asks the pool). Compose is `webui.compose`, messages `webui.messages`."""

from __future__ import annotations

import time

from flask import abort, g, jsonify, render_template, request

from modemgw import at
from modemgw.gateway import SubmitError, sent_today
from modemgw.retention import describe_bytes, describe_days
from modemgw.store import NotFound
from webui import audit, compose, daemon, gateway, ui  # noqa: F401 - compose registers the compose pages on `ui`
from webui.sessions import login_required, notice

SIGNAL_BARS = (-105, -95, -85, -75, -65)  # dBm at which the 1st to 5th bar lights


# --- dashboard --------------------------------------------------------------------------------------------

def _modem_card(modem: dict, today: dict[str, int]) -> dict:
    """A modem (as `Gateway.modems_now` shows it) on the dashboard and the modems page."""
    signal = modem["signal_dbm"]
    bars = 0 if signal is None else sum(1 for threshold in SIGNAL_BARS if signal >= threshold)
    quota, used = modem["quota_day"], sent_today(modem)
    return {"id": modem["id"], "label": modem["label"], "operator": modem["operator"] or "—",
            "signal_dbm": signal, "bars": bars, "registration": modem["registration"] or "—",
            "state": modem["state"], "enabled": bool(modem["enabled"]), "today": today,
            "quota": _quota_text(used, quota)}


def _quota_text(used: int, quota: int | None) -> str:
    """A SIM's daily quota in words. It counts segments (SMS parts), which is why it may differ from the
    messages sent today."""
    if not quota:
        return "no daily quota"
    return f"{used} of {quota} segments used (daily quota)"


def _dashboard_data() -> dict:
    per_modem = gateway().counts_by_modem()
    modems = [_modem_card(modem, per_modem.get(modem["id"], {"sent": 0, "delivered": 0, "failed": 0}))
              for modem in gateway().modems_now()]
    totals = {name: sum(bucket[name] for bucket in per_modem.values()) for name in ("sent", "delivered", "failed")}
    return {"modems": modems, "queue": gateway().queue_depth(), "totals": totals}


@ui.get("/")
@login_required()
def dashboard():
    # the chart (webui.stats' `hourly_chart`) counts clock hours of the gateway's time, the last one in progress
    return render_template("dashboard.html", data=_dashboard_data(), hours=gateway().sent_by_hour(time.time()),
                           storage=_storage_card())


def _storage_card() -> dict:
    """The dashboard's database card: its size (file and write-ahead log), the disk's free space, the oldest
    message kept and what [retention] keeps (`Gateway.storage_summary`)."""
    summary = gateway().storage_summary()
    kept = summary["retention"]
    return {"size": describe_bytes(summary["database_bytes"] + summary["wal_bytes"]),
            "wal": describe_bytes(summary["wal_bytes"]), "free": describe_bytes(summary["disk_free_bytes"]),
            "oldest_message_at": summary["oldest_message_at"], "oldest_inbox_at": summary["oldest_inbox_at"],
            "retention": [("Messages", describe_days(kept["messages_days"])),
                          ("Inbox", describe_days(kept["inbox_days"])),
                          ("Webhook deliveries", describe_days(kept["webhook_deliveries_days"])),
                          ("Audit log", describe_days(kept["audit_days"]))]}


@ui.get("/ui/dashboard.json")
@login_required()
def dashboard_json():
    return jsonify(_dashboard_data())


# --- compose: webui/compose.py (compose, the confirm page, preview) -------------------------------------------

# --- messages, a message, scheduled: webui/messages.py ----------------------------------------------------

# --- modems -----------------------------------------------------------------------------------------------

@ui.get("/ui/modems")
@login_required()
def modems():
    return render_template("modems.html", data=_dashboard_data(), smpp=_smpp_sessions())


def _smpp_sessions() -> list[dict] | None:
    """The SMPP server's sessions (`SmppServer.sessions`), or None when `[smpp] listen` is not set."""
    server = getattr(daemon(), "smpp", None)
    return server.sessions() if server is not None else None


def _limit(name: str) -> int | None:
    value = request.form.get(name, "").strip()
    return int(value) if value else None


def _by() -> str:
    return f"web UI user {g.user['username']}"


MODEM_SETTINGS = (("enabled", "enabled"), ("label", "label"), ("group", "grp"), ("rate_per_minute", "rate_per_minute"),
                  ("quota_day", "quota_day"), ("quota_month", "quota_month"))  # (what people call it, its column)


def _save_modem_settings(modem_id: int, modem: dict) -> dict:
    """The settings form applied, and audited (`modem.update`: each changed field, before and after; a refusal
    with its reason). Raises SubmitError, ValueError, NotFound."""
    form = request.form
    target = f"modem {modem['label']} (#{modem_id})"
    try:
        changed = gateway().update_modem(
            modem_id, enabled=form.get("enabled") == "on", label=form.get("label", modem["label"]),
            group=form.get("group", modem["grp"] or "").strip() or None, rate_per_minute=_limit("rate_per_minute"),
            quota_day=_limit("quota_day"), quota_month=_limit("quota_month"))
    except (SubmitError, ValueError, NotFound) as error:
        audit("modem.update", target, {"error": getattr(error, "detail", None) or str(error)}, ok=False)
        raise
    changes = {name: [modem.get(column), changed.get(column)] for name, column in MODEM_SETTINGS
               if modem.get(column) != changed.get(column)}
    audit("modem.update", target, {"changes": changes})
    return changed


def _modem_action(modem_id: int, action: str | None, modem: dict) -> tuple[dict, dict | None]:
    """A modem page's form applied: (the modem now, what the modem answered). USSD and AT requests are audited by
    the gateway (a PIN in an AT command masked there, and in the command shown back here). Raises SubmitError,
    ValueError, NotFound, ModemRequestError."""
    form = request.form
    actor, source = f"user {g.user['username']}", request.remote_addr or "unknown"
    if action == "settings":
        modem = _save_modem_settings(modem_id, modem)
        notice("Settings saved.")
        return modem, None
    if action == "ussd":
        code = form.get("code", "").strip()
        reply = gateway().ussd(modem_id, code, admin=g.user["role"] == "admin", by=_by(), actor=actor, source=source)
        return modem, {"kind": "ussd", "command": code, "lines": [reply.text or f"(status {reply.status})"],
                       "final": ""}
    if action == "at":
        command = form.get("command", "").strip()
        reply = gateway().at_command(modem_id, command, timeout=10, by=_by(), actor=actor, source=source,
                                     user=g.user["username"])
        return modem, {"kind": "at", "command": at.redact(command), "lines": reply.lines, "final": reply.final,
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
            result = {"kind": "error", "command": at.redact(request.form.get("command") or "")
                      or request.form.get("code") or "", "lines": [str(error) or error.__class__.__name__],
                      "final": "ERROR"}
    state = next((state for state in gateway().modem_states() if state.modem_id == modem_id), None)
    return render_template("modem.html", m=row, result=result, history=gateway().at_history(modem_id),
                           configured_label=state.configured_label if state is not None else None)
