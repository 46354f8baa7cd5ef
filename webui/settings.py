"""The admin page: API keys, webhooks, web UI users (through `modemgw.users`, as the CLI) and the opt-out list.
A new key or webhook secret is shown on its response alone (which no browser stores), never put in a cookie."""

from __future__ import annotations

from flask import g, render_template, request

from modemgw import users, webhooks
from modemgw.store import NotFound
from webui import daemon, gateway, ui
from webui.sessions import login_required, notice

USER_ACTIONS = ("disable", "enable", "delete", "password")


def _user_action(action: str) -> None:
    """An admin disables, enables or deletes another user, or gives them a new password. Raises UserError,
    NotFound, ValueError."""
    store = daemon().store
    user_id = int(request.form.get("user_id", ""))
    if user_id == g.user["id"]:
        raise users.UserError("not your own account here (change your password under Account)")
    if action == "password":
        users.set_password(store, user_id, request.form.get("password", ""))
        notice("Password set; that user's sessions have ended.")
    elif action == "delete":
        users.delete_user(store, user_id)
        notice("User deleted; their sessions have ended.")
    else:
        users.set_disabled(store, user_id, action == "disable")
        notice("User disabled; their sessions have ended." if action == "disable" else "User enabled.")


def _key_or_webhook(action: str) -> tuple[str | None, str | None]:
    """Keys and webhooks: (a new key, a new webhook secret), each shown once. Raises ValueError, NotFound."""
    form = request.form
    if action == "key":
        return gateway().create_key(form.get("name", ""), form.getlist("scopes") or ["send"])[0], None
    if action == "revoke":
        gateway().revoke_key(int(form["key_id"]))
        notice("Key revoked.")
    elif action == "webhook":
        return None, gateway().create_webhook(form.get("url", ""), form.getlist("events") or ["*"])["secret"]
    elif action == "test-webhook":
        daemon().webhooks.on_event("modem.online", {"test": True, "label": "test event"})
        notice("Test event queued for subscribers of modem.online or *.")
    elif action == "replay":
        daemon().webhooks.redeliver(int(form["webhook_id"]), int(form["delivery_id"]))
        notice("Delivery queued again.")
    return None, None


def _user_or_optout(action: str) -> None:
    """Users and opt-outs. Raises UserError, ValueError (SubmitError), NotFound."""
    form = request.form
    if action == "user":
        users.add_user(daemon().store, form.get("username", ""), form.get("password", ""),
                       form.get("role", "operator"))
        notice("User added.")
    elif action in USER_ACTIONS:
        _user_action(action)
    elif action == "optout":
        number, _ = gateway().opt_out(form.get("number", ""), "ui", form.get("note") or None)
        notice(f"{number} opted out.")
    elif action == "optin":
        gateway().opt_in(form.get("number", ""))
        notice("Removed from the opt-out list.")


@ui.route("/ui/settings", methods=["GET", "POST"])
@login_required("admin")
def settings():
    """Keys, webhooks, users and opt-outs."""
    store = daemon().store
    created_key = created_secret = None
    if request.method == "POST":
        action = request.form.get("action", "")
        try:
            created_key, created_secret = _key_or_webhook(action)
            _user_or_optout(action)
        except (ValueError, NotFound, users.UserError) as error:
            notice(f"Not done: {error}")
    hooks = [hook | {"deliveries": gateway().webhook_deliveries(hook["id"])[:10]} for hook in gateway().webhooks()]
    return render_template("settings.html", keys=gateway().api_keys(), created_key=created_key,
                           created_secret=created_secret, hooks=hooks, users=users.list_users(store),
                           optouts=gateway().optouts(), events=webhooks.EVENTS)
