"""The admin page: API keys, webhooks, web UI users (through `modemgw.users`, as the CLI) with their open sessions,
and the opt-out list; it links to the audit log (`webui.audit_log`), where every change made here is recorded,
refused ones too. A new key or webhook secret is shown on its response alone (which no browser stores), never put
in a cookie."""

from __future__ import annotations

import time
from typing import Any

from flask import g, redirect, render_template, request, url_for

from modemgw import users, webhooks
from modemgw.store import NotFound
from webui import audit, audit_log, daemon, gateway, ui  # noqa: F401 - audit_log: the page /ui/audit, linked here
from webui.sessions import app_sessions, login_required, notice

# --- users and their sessions ----------------------------------------------------------------------------------
# What an admin does to another user, and its entry in the audit log (refusals too: "only refused" finds them).
USER_ACTIONS = {"disable": "user.disable", "enable": "user.enable", "delete": "user.delete",
                "password": "user.password", "revoke-session": "session.revoke", "end-sessions": "session.revoke_all"}
MAX_KEY_NAME = 100  # characters of an API key's name, as the form allows


def _user_action(action: str) -> None:
    """An admin disables, enables or deletes another user, gives them a new password, or ends one or all of their
    sessions; audited, refused or not. Raises UserError, NotFound, ValueError."""
    user_id = int(request.form.get("user_id", ""))
    target = f"user #{user_id}"
    detail = {"session": request.form.get("session_id", "")[:16]} if action == "revoke-session" else {}
    try:
        target = f"user {users.get_user(daemon().store, user_id)['username']}"
        if user_id == g.user["id"]:
            raise users.UserError("not your own account here (your password and sessions are under Account)")
        _apply_user_action(action, user_id)
    except (users.UserError, NotFound) as error:
        audit(USER_ACTIONS[action], target, detail | {"error": str(error)}, ok=False)
        raise
    audit(USER_ACTIONS[action], target, detail)


def _apply_user_action(action: str, user_id: int) -> None:
    store = daemon().store
    if action == "password":
        users.set_password(store, user_id, request.form.get("password", ""))
        notice("Password set; that user's sessions have ended.")
    elif action == "delete":
        users.delete_user(store, user_id)
        notice("User deleted; their sessions have ended.")
    elif action == "revoke-session":
        if not app_sessions().revoke(user_id, request.form.get("session_id", "")):
            raise users.UserError("that session has ended already")
        notice("Session ended; that browser must log in again.")
    elif action == "end-sessions":
        app_sessions().revoke_all(user_id)
        notice("All their sessions have ended.")
    else:
        users.set_disabled(store, user_id, action == "disable")
        notice("User disabled; their sessions have ended." if action == "disable" else "User enabled.")


def _add_user() -> None:
    """A new user, audited (refused or not). Raises UserError."""
    form = request.form
    username, role = form.get("username", "").strip(), form.get("role", "operator")
    try:
        users.add_user(daemon().store, username, form.get("password", ""), role)
    except users.UserError as error:
        audit("user.add", f"user {username[:users.MAX_USERNAME]}", {"role": role[:20], "error": str(error)},
              ok=False)
        raise
    audit("user.add", f"user {username}", {"role": role})
    notice("User added.")


def _sessions_by_user() -> dict[int, list[dict]]:
    """Every live session, by user id."""
    by_user: dict[int, list[dict]] = {}
    for session in app_sessions().listed(current=g.session):
        by_user.setdefault(session["user_id"], []).append(session)
    return by_user


# --- API keys ----------------------------------------------------------------------------------------------------

def _key_action(action: str) -> str | None:
    """Create a key (returned: shown once) or revoke one; audited, refused or not. Raises ValueError, NotFound."""
    form = request.form
    if action == "key":
        name, scopes = form.get("name", "").strip(), form.getlist("scopes") or ["send"]
        in_url = form.get("allow_query_token") == "1"  # may be passed in a URL (legacy devices): off unless ticked
        try:
            if len(name) > MAX_KEY_NAME:
                raise ValueError(f"a key's name has at most {MAX_KEY_NAME} characters")
            key, record = gateway().create_key(name, scopes, allow_query_token=in_url)
        except ValueError as error:
            audit("key.create", f"key {name[:MAX_KEY_NAME]}", {"scopes": scopes[:10], "error": str(error)}, ok=False)
            raise
        audit("key.create", f"key {record.name} (#{record.id})",
              {"scopes": list(record.scopes)} | ({"allow_query_token": True} if in_url else {}))
        return key
    key_id = int(form.get("key_id", ""))
    key_name = next((key["name"] for key in gateway().api_keys() if key["id"] == key_id), None)
    target = f"key {key_name} (#{key_id})" if key_name is not None else f"key #{key_id}"
    try:
        gateway().revoke_key(key_id)
    except NotFound as error:
        audit("key.revoke", target, {"error": str(error)}, ok=False)
        raise
    audit("key.revoke", target)
    notice("Key revoked.")
    return None


def _key_or_webhook(action: str) -> tuple[str | None, str | None]:
    """Keys and webhooks: (a new key, a new webhook secret), each shown once. Raises ValueError, NotFound."""
    form = request.form
    if action in ("key", "revoke"):
        return _key_action(action), None
    if action == "webhook":  # edited, tested and replayed on its own page (webhook_page)
        url, events = form.get("url", ""), form.getlist("events") or ["*"]
        try:
            hook = gateway().create_webhook(url, events)
        except ValueError as error:  # what was refused, bounded: the URL's check says what is wrong with it
            audit("webhook.create", "webhook", {"url": url[:300], "events": events[:20], "error": str(error)[:300]},
                  ok=False)
            raise
        audit("webhook.create", f"webhook {hook['id']}", {"url": hook["url"], "events": hook["events"]})
        return None, hook["secret"]
    return None, None


def _user_or_optout(action: str) -> None:
    """Users and opt-outs. Raises UserError, ValueError (SubmitError), NotFound."""
    if action == "user":
        _add_user()
    elif action in USER_ACTIONS:
        _user_action(action)
    elif action in ("optout", "optin"):
        _optout_action(action)


def _optout_action(action: str) -> None:
    """A person adds a number to the opt-out list or takes one off; audited, refused or not. Raises ValueError
    (SubmitError), NotFound."""
    form = request.form
    number = form.get("number", "")
    try:
        if action == "optout":
            number, created = gateway().opt_out(number, "ui", form.get("note") or None)
        else:
            number = gateway().opt_in(number)
    except (ValueError, NotFound) as error:
        audit(f"optout.{'add' if action == 'optout' else 'remove'}", number[:40], {"error": str(error)}, ok=False)
        raise
    if action == "optout":
        audit("optout.add", number, {"created": created, "note": form.get("note") or None})
        notice(f"{number} opted out.")
    else:
        audit("optout.remove", number)
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
    failing_ids = {hook["id"] for hook in daemon().webhooks.failing()}
    hooks = [hook | {"failing": hook["id"] in failing_ids} for hook in gateway().webhooks()]
    return render_template("settings.html", keys=gateway().api_keys(), created_key=created_key,
                           created_secret=created_secret, hooks=hooks, users=users.list_users(store),
                           sessions=_sessions_by_user(), optouts=gateway().optouts(), events=webhooks.EVENTS)


# --- one webhook: /ui/webhooks/<id> (the list and the form that adds one are on Settings) --------------------------

# What an admin does on a webhook's page, and its entry in the audit log (refusals too).
WEBHOOK_ACTIONS = {"save": "webhook.update", "enable": "webhook.update", "disable": "webhook.update",
                   "delete": "webhook.delete", "test": "webhook.test", "redeliver": "webhook.redeliver",
                   "retry": "webhook.retry", "redeliver-dead": "webhook.redeliver_dead"}
DELIVERY_PAGE = 50  # rows of the delivery log a page shows


def _webhook(webhook_id: int) -> dict:
    """A subscription's record. Raises NotFound (shown as the 404 page)."""
    for hook in gateway().webhooks():
        if hook["id"] == webhook_id:
            return hook
    raise NotFound(f"There is no webhook {webhook_id}; Settings lists them.")


def _made_due(made_due: int) -> str:
    """What saving or enabling did to the deliveries that waited for a retry."""
    if not made_due:
        return ""
    return f" {_plural(made_due, 'pending delivery', 'pending deliveries')} that waited for a retry " \
           f"{'goes' if made_due == 1 else 'go'} out now."


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _recover(action: str, hook: dict) -> str:
    """"Retry pending now" (`retry`: every pending delivery due now) or "Redeliver all dead" (`redeliver-dead`:
    every dead one queued again, its attempts starting over), audited with the count: what to tell the admin.
    Raises NotFound."""
    sender, target = daemon().webhooks, f"webhook {hook['id']}"
    held = "; they go out once the webhook is enabled" if not hook["enabled"] else ""
    if action == "retry":
        count = sender.retry_pending(hook["id"])
        audit("webhook.retry", target, {"pending": count})
        if not count:
            return "No delivery is pending."
        return f"{_plural(count, 'pending delivery is', 'pending deliveries are')} due now" + \
            (f"{held}." if held else "; they go out one at a time.")
    count = sender.redeliver_dead(hook["id"])
    audit("webhook.redeliver_dead", target, {"requeued": count})
    if not count:
        return "No delivery is dead."
    return f"{_plural(count, 'dead delivery', 'dead deliveries')} queued again, their attempts starting over{held}."


def _webhook_action(action: str, hook: dict) -> str | None:
    """Do one action of the webhook page, audited: what to tell the admin, or None (deleted: back to Settings).
    Raises ValueError (urls.UrlError, a bad event list, a disabled webhook's test), NotFound."""
    form, sender, target = request.form, daemon().webhooks, f"webhook {hook['id']}"
    if action == "save":
        url, events, enabled = form.get("url", "").strip(), form.getlist("events"), form.get("enabled") == "on"
        events = ["*"] if "*" in events else events  # all events: the others ticked too say nothing more
        _, made_due = sender.update(hook["id"], url=url, events=events, enabled=enabled)
        audit("webhook.update", target, {"url": url, "events": events, "enabled": enabled} |
              ({"made_due": made_due} if made_due else {}))
        return "Webhook saved." + _made_due(made_due)
    if action in ("enable", "disable"):
        _, made_due = sender.update(hook["id"], enabled=action == "enable")
        audit("webhook.update", target, {"enabled": action == "enable"} | ({"made_due": made_due} if made_due else {}))
        if action == "enable":
            return "Webhook enabled." + (_made_due(made_due) or " Deliveries that waited go out now.")
        return "Webhook disabled: it gets no new deliveries, and those pending wait until it is enabled again."
    if action == "delete":
        gateway().delete_webhook(hook["id"])
        audit("webhook.delete", target, {"url": hook["url"]})
        return None
    if action == "test":
        event_id = sender.test(hook["id"])
        audit("webhook.test", target, {"event_id": event_id})
        return f"Test event {event_id} queued; its delivery shows in the log below."
    if action in ("retry", "redeliver-dead"):
        return _recover(action, hook)
    delivery_id = int(form.get("delivery_id", ""))  # redeliver
    sender.redeliver(hook["id"], delivery_id)
    audit("webhook.redeliver", target, {"delivery_id": delivery_id})
    return f"Delivery {delivery_id} queued again (its attempts start over)."


def _cursor(value: str | None) -> int | None:
    """A page's cursor from the query string: a delivery id, or None (absent, or not a whole number)."""
    value = (value or "").strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 18 else None


def _log_args(args) -> dict[str, str]:
    """The delivery log's filter and cursor as the query string gave them (kept across an action's redirect)."""
    return {name: args[name] for name in ("status", "before", "after") if _log_value(args, name)}


def _log_value(args, name: str) -> str | None:
    value = args.get(name, "")
    if name == "status":
        return value if value in webhooks.DELIVERY_STATUSES else None
    return value if _cursor(value) is not None else None


def _delivery_log(webhook_id: int, args) -> dict:
    """One page of a webhook's delivery log, newest first: its rows, the cursors of the pages older and newer
    (None: there is none), the status filter, and the counts per status."""
    sender = daemon().webhooks
    status = _log_value(args, "status")
    before, after = _cursor(args.get("before")), _cursor(args.get("after"))
    older = newer = None
    rows = None
    if after is not None:  # the page above a cursor (Newer); when it is the newest, it is shown as the first page
        above = sender.deliveries(webhook_id, DELIVERY_PAGE + 1, after=after, status=status)
        if len(above) > DELIVERY_PAGE:
            rows = above[-DELIVERY_PAGE:]
            newer, older = rows[0]["id"], rows[-1]["id"]
        else:
            after = None
    if rows is None:
        rows = sender.deliveries(webhook_id, DELIVERY_PAGE + 1, before=before, status=status)
        if len(rows) > DELIVERY_PAGE:
            rows = rows[:DELIVERY_PAGE]
            older = rows[-1]["id"]
        if before is not None:
            newer = rows[0]["id"] if rows else before - 1  # past the end: back to the rows above its cursor
    return {"deliveries": rows, "older": older, "newer": newer, "status": status,
            "paged": before is not None or after is not None, "counts": sender.delivery_counts(webhook_id)}


@ui.route("/ui/webhooks/<id:webhook_id>", methods=["GET", "POST"])
@login_required("admin")
def webhook_page(webhook_id: int):
    """One webhook: edit its URL and events, enable or disable it, delete it (after a confirmation), send it a
    test event, retry its pending deliveries now or redeliver all its dead ones, and its delivery log (a page at a
    time, filtered by status) with redeliver."""
    hook = _webhook(webhook_id)
    confirm_delete, status, form = False, 200, None
    if request.method == "POST":
        action = request.form.get("action", "")
        if action == "delete-ask":
            confirm_delete = True
        elif action in WEBHOOK_ACTIONS:
            try:
                said = _webhook_action(action, hook)
            except (ValueError, NotFound) as error:
                audit(WEBHOOK_ACTIONS[action], f"webhook {webhook_id}", {"error": str(error)}, ok=False)
                notice(f"Not done: {error}")
                status, form = 400, (request.form if action == "save" else None)
            else:
                notice(said or f"Webhook {hook['url']} deleted, with its delivery log.")
                back: dict[str, Any] = _log_args(request.args)  # the log's page and filter stay as they were
                return redirect(url_for("ui.webhook_page", webhook_id=webhook_id, **back) if said
                                else url_for("ui.settings") + "#webhooks")
    failing = next((item for item in daemon().webhooks.failing() if item["id"] == webhook_id), None)
    return render_template("webhook.html", hook=hook, failing=failing, events=webhooks.EVENTS,
                           chosen=form.getlist("events") if form else hook["events"].split(","),
                           url_value=form.get("url", "") if form else hook["url"], confirm_delete=confirm_delete,
                           statuses=webhooks.DELIVERY_STATUSES, page_size=DELIVERY_PAGE, now=time.time(),
                           **_delivery_log(webhook_id, request.args)), status


@ui.context_processor
def _failing_webhooks() -> dict:
    """`failing_webhooks()` for the dashboard's notice: read only on the pages that call it."""
    return {"failing_webhooks": lambda: daemon().webhooks.failing()}
