"""The JSON shapes the edges share: a message (API, web UI, webhook payloads), an inbox message, a modem, a webhook
subscription and one of its deliveries. Pure functions over the store's rows (and the gateway's modem rows)."""

from __future__ import annotations

import datetime as dt

from modemgw.gateway import REPORT_MODES


def iso(value: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC with a `Z`, or None."""
    if value is None:
        return None
    return dt.datetime.fromtimestamp(value, dt.UTC).isoformat().replace("+00:00", "Z")


def message_view(row: dict, detail: bool = False) -> dict:
    """A message; with `detail`, its parts and timeline too (as `Gateway.message` reads them)."""
    view = {
        "id": row["id"], "to": row["recipient"], "body": row["body"], "status": row["status"],
        "segments": row["segments"], "encoding": row["encoding"], "priority": row["priority"],
        "client_ref": row["client_ref"], "modem_id": row["modem_id"], "created_at": iso(row["created_at"]),
        "send_at": iso(row["due_at"]) if row["status"] == "scheduled" else None,
        "expires_at": iso(row["expires_at"]), "sent_at": iso(row["sent_at"]),
        "delivered_at": iso(row["delivered_at"]), "report": row["report"],
        "error": {"code": row["error_code"], "reason": row["error_reason"]} if row["error_reason"] else None,
        "possible_duplicate": bool(row["possible_duplicate"]), "attempts": row["attempts"],
        "callback_url": row["callback_url"],
        # the SIM it was meant to leave from (a reply's, or the one its recipient wrote to), and the inbound it answers
        "preferred_modem_id": row.get("prefer_modem_id"), "reply_to": row.get("reply_to"),
    }
    if detail:
        view["parts"] = [{"seq": part["seq"], "modem_id": part["modem_id"], "reference": part["tp_mr"],
                          "sent_at": iso(part["sent_at"]), "report": part["report_status"],
                          "report_code": part["report_code"], "report_at": iso(part["report_at"])}
                         for part in row.get("parts", [])]
        view["timeline"] = [{"at": iso(event["at"]), "event": event["kind"], "modem_id": event["modem_id"],
                             **({"detail": event["detail"]} if event["detail"] else {})}
                            for event in row.get("timeline", [])]
    return view


def inbox_view(row: dict) -> dict:
    """An inbound message."""
    return {"id": row["id"], "from": row["sender"], "body": row["body"], "modem_id": row["modem_id"],
            "sent_at": iso(row["sent_at"]), "received_at": iso(row["received_at"]), "parts": row["parts"],
            "partial": bool(row["partial"]), "read": bool(row["read"])}


def optout_view(row: dict) -> dict:
    """A number on the opt-out list."""
    return {"number": row["number"], "source": row["source"], "note": row["note"],
            "created_at": iso(row["created_at"])}


def modem_view(row: dict) -> dict:
    """A modem as `Gateway.modems_now()` / `Gateway.modem_now()` give it (its row with `state` and `sent_today`)."""
    return {"id": row["id"], "label": row["label"], "group": row["grp"], "state": row["state"],
            "enabled": bool(row["enabled"]), "imei": row["imei"], "iccid": row["iccid"], "imsi": row["imsi"],
            "number": row["number"], "manufacturer": row["manufacturer"], "model": row["model"],
            "profile": row["profile"], "device": row["device"], "operator": row["operator"],
            "signal_dbm": row["signal_dbm"], "registration": row["registration"],
            "limits": {"rate_per_minute": row["rate_per_minute"], "quota_day": row["quota_day"],
                       "quota_month": row["quota_month"]},
            "sent_today": row["sent_today"], "sent_total": row["sent_total"], "failed_total": row["failed_total"],
            "delivered_total": row["delivered_total"], "last_error": row["last_error"],
            "reports": REPORT_MODES.get(row["report_mode"] or ""), "last_seen": iso(row["last_seen"])}


def webhook_view(row: dict, secret: bool = False) -> dict:
    """A webhook subscription; its secret only with `secret` (when it was just created)."""
    view = {"id": row["id"], "url": row["url"], "events": row["events"].split(","), "enabled": bool(row["enabled"]),
            "created_at": iso(row["created_at"])}
    if secret:
        view["secret"] = row["secret"]
    return view


def delivery_view(row: dict) -> dict:
    """One webhook delivery (an outbox row)."""
    return {"id": row["id"], "event": row["event"], "event_id": row["event_id"], "message_id": row["message_id"],
            "status": row["status"], "attempts": row["attempts"], "next_attempt_at": iso(row["next_attempt_at"]),
            "last_status_code": row["last_status_code"], "last_error": row["last_error"],
            "created_at": iso(row["created_at"]), "delivered_at": iso(row["delivered_at"])}


__all__ = ["delivery_view", "inbox_view", "iso", "message_view", "modem_view", "optout_view", "webhook_view"]
