"""The inbound rules pages (admins): forward, auto-reply, webhook, stop; with a dry run.

- `ui.rules` (/ui/rules): the rules in the order they run, each moved up or down, enabled or disabled in place;
  "Test the rules" (sender, SIM, text: which rules match and what each would do, nothing sent); the mail outbox's
  state (is a relay configured, what waits, what failed).
- `ui.new_rule` (/ui/rules/new) and `ui.rule` (/ui/rules/<id>): the form (every field shown; each says which
  action uses it), "Test this rule", and delete after a confirmation.
Every change is in the audit log; the rules themselves are checked by the gateway (`modemgw.rules`).
"""

from __future__ import annotations

from flask import abort, redirect, render_template, request, url_for

from modemgw.rules import ACTION_FIELDS, ACTIONS, PLACEHOLDERS, RuleError
from modemgw.store import NotFound
from webui import audit, gateway, ui
from webui.sessions import login_required, notice

ACTION_NAMES = {"email": "Forward by e-mail", "sms": "Forward by SMS", "webhook": "Call a webhook",
                "autoreply": "Auto-reply", "stop": "Stop (no later rule runs)"}
MAX_FORM_FIELD = 4000  # characters of any one field of the form; the gateway applies the real limits


def _field(name: str) -> str:
    return request.form.get(name, "")[:MAX_FORM_FIELD]


def _number(value: str, digits: int = 18) -> int | None:
    """A whole number written in ASCII digits (at most `digits` of them), else None."""
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) <= digits else None


def _form() -> dict:
    """The rule form as sent, as text (shown again as typed when it is refused)."""
    return {name: _field(name) for name in ("name", "sim", "sender", "keyword", "regex", "type", "to", "group",
                                            "subject", "body", "url", "window_minutes")} | {
        "enabled": request.form.get("enabled") == "on"}


def _rule_parts(form: dict) -> tuple[dict, dict]:
    """(match, action) from the form: the match's filled fields, and the fields the chosen action takes. Raises
    RuleError."""
    match: dict = {name: form[name] for name in ("sender", "keyword", "regex") if form[name].strip()}
    if form["sim"].strip():
        sim = _number(form["sim"])
        if sim is None:
            raise RuleError("choose a SIM from the list", "match.sim")
        match["sim"] = sim
    kind = form["type"]
    if kind not in ACTIONS:
        raise RuleError("choose what the rule does", "action.type")
    action: dict = {"type": kind}
    for name in ACTION_FIELDS[kind]:
        value = form[name]
        if not value.strip():
            continue
        if name == "window_minutes":
            minutes = _number(value, 9)
            if minutes is None:
                raise RuleError("the auto-reply window must be a whole number of minutes", "action.window_minutes")
            action[name] = minutes
        else:
            action[name] = value
    return match, action


def _form_of(rule: dict) -> dict:
    """A saved rule as the form shows it."""
    match, action = rule["match"], rule["action"]
    return {"name": rule["name"], "enabled": rule["enabled"], "sim": str(match.get("sim") or ""),
            "sender": match.get("sender", ""), "keyword": match.get("keyword", ""), "regex": match.get("regex", ""),
            "type": action["type"], "to": ", ".join(action.get("to", [])), "group": action.get("group", ""),
            "subject": action.get("subject", ""), "body": action.get("body", ""), "url": action.get("url", ""),
            "window_minutes": str(action.get("window_minutes", ""))}


def _choices() -> dict:
    """What the form offers: the SIMs, the contact groups, the actions, the placeholders."""
    sims = [{"id": row["id"], "label": row["label"] or f"#{row['id']}", "number": row.get("number")}
            for row in gateway().modems_now()]
    return {"sims": sims, "groups": [row["name"] for row in gateway().groups()], "actions": ACTION_NAMES,
            "placeholders": PLACEHOLDERS}


def _dry_run(rule_id: int | None = None) -> tuple[dict | None, dict, str | None, str | None]:
    """The dry run of the test form: (result, the form as sent, error, field at fault)."""
    sent = {"from": _field("test_from"), "sim": _field("test_sim"), "text": _field("test_text")}
    sim = _number(sent["sim"])
    try:
        return gateway().test_inbound_rules(sent["from"], sent["text"], sim, rule_id=rule_id), sent, None, None
    except RuleError as error:
        return None, sent, error.detail, error.field


def _list_page(test: dict | None = None, test_form: dict | None = None, error: str | None = None, status: int = 200):
    return render_template("rules.html", rules=gateway().inbound_rules(), test=test, test_form=test_form or {},
                           error=error, relay=gateway().mail_relay(), mail=gateway().mail_counts(),
                           outbox=gateway().mail_outbox(5), **_choices()), status


@ui.route("/ui/rules", methods=["GET", "POST"])
@login_required("admin")
def rules():
    if request.method == "GET":
        return _list_page()
    action = request.form.get("action", "")
    if action == "test":
        result, sent, error, _ = _dry_run()
        return _list_page(result, sent, error, 400 if error else 200)
    if action not in ("up", "down", "enable", "disable"):
        abort(400, description="Unknown action; use the buttons of the rules page.")
    rule_id = _number(request.form.get("rule_id", ""))
    if rule_id is None:
        abort(400, description="No rule was named; use the buttons of the rules page.")
    try:
        if action in ("up", "down"):
            rule = gateway().move_inbound_rule(rule_id, -1 if action == "up" else 1)
            audit("rule.update", f"rule {rule_id}", {"position": rule["position"]})
            notice(f"Rule {rule['name']} is now number {rule['position']}.")
        else:
            rule = gateway().update_inbound_rule(rule_id, enabled=action == "enable")
            audit("rule.update", f"rule {rule_id}", {"enabled": rule["enabled"]})
            notice(f"Rule {rule['name']} {'enabled' if rule['enabled'] else 'disabled'}.")
    except NotFound:
        abort(404, description=f"There is no rule {rule_id}; it may have been deleted.")
    return redirect(url_for("ui.rules") + f"#rule-{rule_id}")


def _rule_page(rule: dict | None, form: dict, error: str | None = None, field: str | None = None,
               test: dict | None = None, test_form: dict | None = None, confirm_delete: bool = False,
               status: int = 200):
    """The rule's page. The missing SMTP relay is named only for a rule that forwards by e-mail (the form's action
    as saved or as sent): another rule sends no mail, so the warning would only alarm."""
    relay = gateway().mail_relay()
    return render_template("rule.html", rule=rule, form=form, error=error, field=field, test=test,
                           test_form=test_form or {}, confirm_delete=confirm_delete, relay=relay,
                           relay_missing=not relay and form.get("type") == "email", **_choices()), status


@ui.route("/ui/rules/new", methods=["GET", "POST"])
@login_required("admin")
def new_rule():
    if request.method == "GET":
        return _rule_page(None, {"enabled": True, "type": request.args.get("type", "email")[:20]})
    form = _form()
    try:
        match, action = _rule_parts(form)
        rule = gateway().create_inbound_rule(form["name"], match, action, enabled=form["enabled"])
    except RuleError as error:
        audit("rule.create", None, {"name": form["name"][:60], "error": error.detail}, ok=False)
        return _rule_page(None, form, error.detail, error.field, status=400)
    audit("rule.create", f"rule {rule['id']}", {"name": rule["name"], "match": rule["match"],
                                                "action": rule["action"]})
    notice(f"Rule {rule['name']} saved: it runs as number {rule['position']}.")
    return redirect(url_for("ui.rule", rule_id=rule["id"]))


def _rule_or_404(rule_id: int) -> dict:
    try:
        return gateway().inbound_rule(rule_id)
    except NotFound:
        abort(404, description=f"There is no rule {rule_id}; it may have been deleted.")


@ui.route("/ui/rules/<id:rule_id>", methods=["GET", "POST"])
@login_required("admin")
def rule(rule_id: int):
    saved = _rule_or_404(rule_id)
    if request.method == "GET":
        return _rule_page(saved, _form_of(saved))
    action = request.form.get("action", "save")
    if action == "test":
        result, sent, error, _ = _dry_run(rule_id)
        return _rule_page(saved, _form_of(saved), error, test=result, test_form=sent, status=400 if error else 200)
    if action == "delete-ask":
        return _rule_page(saved, _form_of(saved), confirm_delete=True)
    if action == "delete":
        try:
            gateway().delete_inbound_rule(rule_id)
        except NotFound:
            abort(404, description=f"There is no rule {rule_id}; it was deleted already.")
        audit("rule.delete", f"rule {rule_id}", {"name": saved["name"]})
        notice(f"Rule {saved['name']} deleted.")
        return redirect(url_for("ui.rules"))
    if action != "save":
        abort(400, description="Unknown action; use the buttons of the rule's page.")
    form = _form()
    try:
        match, rule_action = _rule_parts(form)
        changed = gateway().update_inbound_rule(rule_id, name=form["name"], enabled=form["enabled"], match=match,
                                                action=rule_action)
    except RuleError as error:
        audit("rule.update", f"rule {rule_id}", {"error": error.detail}, ok=False)
        return _rule_page(saved, form, error.detail, error.field, status=400)
    audit("rule.update", f"rule {rule_id}", {"name": changed["name"], "enabled": changed["enabled"],
                                             "match": changed["match"], "action": changed["action"]})
    notice("Rule saved.")
    return redirect(url_for("ui.rule", rule_id=rule_id))
