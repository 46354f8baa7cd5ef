"""The REST API's inbound rules (routes on the `/api/v1` blueprint of `modemgw.api`), for admins (`admin` scope).

A rule is {name, enabled, match, action, position}; `match` and `action` are replaced whole by PATCH. A rule that
cannot be saved answers 400 with the field at fault ("match.regex", "action.to", ...). `POST /rules/test` is the
dry run: what the rules would do with a message, doing nothing. Every change is in the audit log.
"""

from __future__ import annotations

from modemgw.api import _audit, _check_fields, _gateway, _json_body, api, requires
from modemgw.problems import ApiProblem, problem
from modemgw.rules import RuleError
from modemgw.views import iso

RULE_FIELDS: dict[str, tuple] = {"name": (str,), "enabled": (bool,), "match": (dict,), "action": (dict,),
                                 "position": (int,)}
TEST_FIELDS: dict[str, tuple] = {"from": (str,), "text": (str,), "sim": (int,), "rule_id": (int,), "rule": (dict,)}


def rule_view(rule: dict) -> dict:
    """A rule (modemgw.rules.describe) as the API shows it: times in ISO 8601."""
    return rule | {"created_at": iso(rule["created_at"]), "updated_at": iso(rule["updated_at"])}


@api.errorhandler(RuleError)
def on_rule_error(error: RuleError):
    return problem(400, "invalid-request", error.detail, field=error.field)


@api.get("/rules")
@requires("admin")
def list_rules():
    return {"data": [rule_view(rule) for rule in _gateway().inbound_rules()]}


@api.post("/rules")
@requires("admin")
def create_rule():
    body = _json_body()
    _check_fields(body, RULE_FIELDS, nullable=("position",))
    for name in ("name", "action"):
        if name not in body:
            raise ApiProblem(400, "invalid-request", f"'{name}' is missing", field=name)
    try:
        rule = _gateway().create_inbound_rule(body["name"], body.get("match") or {}, body["action"],
                                              enabled=body.get("enabled", True), position=body.get("position"))
    except RuleError as error:
        _audit("rule.create", None, {"name": str(body["name"])[:60], "error": error.detail}, ok=False)
        raise
    _audit("rule.create", f"rule {rule['id']}", {"name": rule["name"], "match": rule["match"],
                                                 "action": rule["action"]})
    return rule_view(rule), 201, {"Location": f"/api/v1/rules/{rule['id']}"}


@api.get("/rules/<id:rule_id>")
@requires("admin")
def get_rule(rule_id: int):
    return rule_view(_gateway().inbound_rule(rule_id))


@api.patch("/rules/<id:rule_id>")
@requires("admin")
def update_rule(rule_id: int):
    body = _json_body()
    _check_fields(body, RULE_FIELDS, nullable=("position",))
    try:
        rule = _gateway().update_inbound_rule(rule_id, **body)
    except RuleError as error:
        _audit("rule.update", f"rule {rule_id}", {"changed": sorted(body), "error": error.detail}, ok=False)
        raise
    _audit("rule.update", f"rule {rule_id}", {key: rule[key] for key in body})
    return rule_view(rule)


@api.delete("/rules/<id:rule_id>")
@requires("admin")
def delete_rule(rule_id: int):
    name = _gateway().inbound_rule(rule_id)["name"]
    _gateway().delete_inbound_rule(rule_id)
    _audit("rule.delete", f"rule {rule_id}", {"name": name})
    return "", 204


@api.post("/rules/test")
@requires("admin")
def test_rules():
    """The dry run: which rules a message from `from` to the SIM `sim` saying `text` would match, and what each
    would do; only rule `rule_id`, or the unsaved `rule`, when given. Nothing is sent or recorded."""
    body = _json_body()
    _check_fields(body, TEST_FIELDS, nullable=("sim", "rule_id", "rule"))
    for name in ("from", "text"):
        if name not in body:
            raise ApiProblem(400, "invalid-request", f"'{name}' is missing", field=name)
    result = _gateway().test_inbound_rules(body["from"], body["text"], body.get("sim"), rule_id=body.get("rule_id"),
                                           rule=body.get("rule"))
    return {"keyword": result["keyword"], "stopped_by": result["stopped_by"],
            "results": [{"rule": {key: item["rule"][key] for key in ("id", "name", "position", "enabled", "when",
                                                                     "then")},
                         "matched": item["matched"], "reason": item["reason"], "would": item["would"]}
                        for item in result["results"]]}
