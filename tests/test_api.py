"""The REST API on a live server on 127.0.0.1 (port 0), over simulated modems."""

import json
import urllib.error
import urllib.request

import pytest

from modemgw import auth
from modemgw.daemon import Daemon
from modemgw.gateway import SubmitError
from tests.support import Client, daemon_config, running_daemon


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with running_daemon(tmp_path_factory, "api", modems=2, sim_send_latency=0.02, sim_report_delay=0.05) as running:
        yield running


@pytest.fixture(scope="module")
def key(daemon):
    return auth.create_key(daemon.store, "tests", ("send", "read"))[0]


@pytest.fixture(scope="module")
def client(daemon, key):
    return Client(daemon.url, key)


def test_post_message_then_it_is_delivered(client, daemon):
    status, _, body = client.call("POST", "/api/v1/messages", {"to": "+447700901234", "body": "Hello",
                                                                "client_ref": "order-1"})
    assert status == 202
    [message] = body["messages"]
    assert (message["status"], message["segments"], message["encoding"]) == ("queued", 1, "gsm7")
    daemon.wait_for_final(message["id"], 10, until="report")
    status, _, detail = client.call("GET", f"/api/v1/messages/{message['id']}")
    assert status == 200
    assert (detail["status"], detail["report"], detail["client_ref"]) == ("delivered", "delivered", "order-1")
    assert detail["parts"][0]["reference"] is not None and detail["parts"][0]["report"] == "delivered"
    assert [event["event"] for event in detail["timeline"]][:2] == ["message.created", "message.sending"]


def test_cloud_style_send(client, daemon):
    status, _, body = client.call("POST", "/send", {"to": "+447700901235", "message": "Your code is 4321"})
    assert status == 202
    assert set(body) == {"message_id", "status"} and body["status"] == "queued"


@pytest.mark.parametrize("payload, field, words", [
    ({"body": "hi"}, "to", "'to' is missing"),
    ({"to": "+447700901234"}, "body", "body is empty"),
    ({"to": "12ab", "body": "hi"}, "to", "'12ab' is not a phone number"),
    ({"to": "+447700901234", "body": "x" * 50 * 153}, "body", "needs 50 segments"),
    ({"to": "+447700901234", "body": 42}, "body", "'body' must be string, not 42"),
    ({"to": "+447700901234", "body": "hi", "priority": "high"}, "priority", "must be integer"),
    ({"to": "+447700901234", "body": "hi", "txt": "?"}, "txt", "unknown field 'txt'"),
    ({"to": [f"+4477009{n:05d}" for n in range(10_001)], "body": "hi"}, "to", "at most 10000"),
    ({"to": "+447700901234", "body": "hi", "send_at": "soon"}, "send_at", "ISO 8601"),
    ({"to": "+447700901234", "body": "hi", "callback_url": "ftp://x"}, "callback_url", "http:// or https://"),
])
def test_bad_input_gets_a_problem_that_names_it(client, payload, field, words):
    status, headers, body = client.call("POST", "/api/v1/messages", payload)
    assert status == 400
    assert headers["Content-Type"] == "application/problem+json"
    assert body["type"].startswith("urn:modemgw:problem:") and body["title"]
    assert body.get("field") == field
    assert words in body["detail"]


def test_bad_json_wrong_type_and_wrong_key(client):
    status, headers, body = client.call("POST", "/api/v1/messages", raw=b'{"to": ')
    assert (status, body["type"]) == (400, "urn:modemgw:problem:invalid-json")
    assert "line 1" in body["detail"]
    status, _, body = client.call("POST", "/api/v1/messages", raw=b"[1, 2]")
    assert status == 400 and "JSON object" in body["detail"]
    status, headers, body = client.call("GET", "/api/v1/messages", key="mgw_00000000_wrong")
    assert (status, body["detail"]) == (401, "unknown API key")
    assert headers["WWW-Authenticate"].startswith("Bearer")
    status, _, body = client.call("GET", "/api/v1/messages", key=None)
    assert status == 401 and "Authorization: Bearer" in body["detail"]
    status, headers, body = client.call("GET", "/api/v1/nothing")
    assert status == 404 and headers["Content-Type"] == "application/problem+json"


def test_scopes_and_rate_limit(client, daemon):
    reader = auth.create_key(daemon.store, "reader", ("read",))[0]
    status, _, body = client.call("POST", "/api/v1/messages", {"to": "+447700901234", "body": "x"}, key=reader)
    assert status == 403 and "needs 'send'" in body["detail"]
    limited = auth.create_key(daemon.store, "limited", ("read",), rate_per_minute=2)[0]
    statuses = [client.call("GET", "/api/v1/messages?limit=1", key=limited)[0] for _ in range(3)]
    assert statuses == [200, 200, 429]
    status, headers, body = client.call("GET", "/api/v1/messages?limit=1", key=limited)
    assert status == 429 and int(headers["Retry-After"]) >= 1


def test_idempotency_key(client):
    payload = {"to": "+447700901236", "body": "Once only"}
    first = client.call("POST", "/api/v1/messages", payload, headers={"Idempotency-Key": "abc-1"})
    again = client.call("POST", "/api/v1/messages", payload, headers={"Idempotency-Key": "abc-1"})
    assert first[2]["messages"] == again[2]["messages"]
    status, _, body = client.call("POST", "/api/v1/messages", {**payload, "body": "Other"},
                                  headers={"Idempotency-Key": "abc-1"})
    assert (status, body["type"]) == (409, "urn:modemgw:problem:idempotency-conflict")


def test_scheduled_message_can_be_canceled(client):
    status, _, body = client.call("POST", "/api/v1/messages", {"to": "+447700901237", "body": "Later",
                                                                "send_at": "2099-01-01T09:00:00Z"})
    message_id = body["messages"][0]["id"]
    assert body["messages"][0]["status"] == "scheduled"
    status, _, body = client.call("DELETE", f"/api/v1/messages/{message_id}")
    assert (status, body["status"]) == (200, "canceled")
    status, _, body = client.call("DELETE", f"/api/v1/messages/{message_id}")
    assert (status, body["status"]) == (200, "canceled")  # DELETE is idempotent
    status, _, body = client.call("GET", "/api/v1/messages/999999")
    assert status == 404


def test_a_sent_message_cannot_be_canceled(client, daemon):
    _, _, body = client.call("POST", "/api/v1/messages", {"to": "+447700901238", "body": "Now"})
    message_id = body["messages"][0]["id"]
    daemon.wait_for_final(message_id, 10)
    status, _, body = client.call("DELETE", f"/api/v1/messages/{message_id}")
    assert status == 409 and "only queued or scheduled messages" in body["detail"]


def test_list_filters_and_cursor(client, daemon):
    for n in range(3):
        client.call("POST", "/api/v1/messages", {"to": f"+4477009012{n}", "body": "page", "client_ref": "pages"})
    status, _, page = client.call("GET", "/api/v1/messages?client_ref=pages&limit=2")
    assert status == 200 and len(page["data"]) == 2 and page["next_cursor"]
    status, _, rest = client.call("GET", f"/api/v1/messages?client_ref=pages&limit=2&cursor={page['next_cursor']}")
    assert len(rest["data"]) == 1 and rest["next_cursor"] is None
    ids = [item["id"] for item in page["data"] + rest["data"]]
    assert ids == sorted(ids, reverse=True)


def test_preview_counts_and_names_unicode(client):
    status, _, body = client.call("POST", "/api/v1/messages/preview", {"body": "Hi 😀 “there”"})
    assert status == 200
    assert (body["encoding"], body["segments"], body["unicode_characters"]) == ("ucs2", 1, ["😀", "“", "”"])
    status, _, body = client.call("POST", "/api/v1/messages/preview", {"body": "“there”", "smart_encoding": True})
    assert (body["encoding"], body["text"]) == ("gsm7", '"there"')


def test_modems_patch_ussd_and_the_at_console_only_for_admins(client, daemon):
    admin = Client(daemon.url, auth.create_key(daemon.store, "admin", ("admin",))[0])
    status, _, listing = client.call("GET", "/api/v1/modems")
    assert status == 200 and len(listing["data"]) == 2
    modem_id = listing["data"][0]["id"]
    assert listing["data"][0]["state"] in ("ready", "busy") and listing["data"][0]["imei"]
    status, _, body = client.call("POST", f"/api/v1/modems/{modem_id}/ussd", {"code": "*100#"})
    assert status == 403 and "'ussd'" in body["detail"]  # USSD can move money: a scope of its own
    ussd = Client(daemon.url, auth.create_key(daemon.store, "balance", ("ussd",))[0])
    status, _, body = ussd.call("POST", f"/api/v1/modems/{modem_id}/ussd", {"code": "*100#"})
    assert status == 403 and "ussd_allow" in body["detail"]  # and only the codes an admin allowed
    daemon.gateway.settings.ussd_allow = ("*100#",)
    status, _, body = ussd.call("POST", f"/api/v1/modems/{modem_id}/ussd", {"code": "*100#"})
    assert status == 200 and body["text"].startswith("Your balance is")
    assert ussd.call("POST", f"/api/v1/modems/{modem_id}/ussd", {"code": "*#100#"})[0] == 403
    status, _, body = admin.call("POST", f"/api/v1/modems/{modem_id}/ussd", {"code": "*#100#"})
    assert status == 200
    status, _, body = client.call("POST", f"/api/v1/modems/{modem_id}/at", {"command": "AT+CSQ"})
    assert status == 403
    status, _, body = admin.call("POST", f"/api/v1/modems/{modem_id}/at", {"command": "AT+CSQ"})
    assert (status, body["lines"], body["final"]) == (200, ["+CSQ: 20,99"], "OK")
    for sneaky in ("AT+CM GS=20", "at+cmgs=20", "AT + CMGS = 20", "AT+CNMA=1, 20"):  # a modem ignores the spaces
        status, _, body = admin.call("POST", f"/api/v1/modems/{modem_id}/at", {"command": sneaky})
        assert status == 400 and "prompt" in body["detail"], sneaky
    status, _, body = admin.call("POST", f"/api/v1/modems/{modem_id}/at", {"command": 'AT+CPIN="1234"'})
    audit = [(event["kind"], event["detail"]) for event in daemon.store.events(modem_id=modem_id)]
    commands = [detail.get("command") or detail.get("code") for kind, detail in audit if kind.startswith("modem.")]
    assert 'AT+CPIN=***' in commands and "*100#" in commands and "*#100#" in commands
    assert not any("1234" in str(detail) for _, detail in audit)  # the PIN is never stored
    assert all(detail.get("by") for kind, detail in audit if kind in ("modem.ussd", "modem.at_command"))
    status, _, body = admin.call("PATCH", f"/api/v1/modems/{modem_id}", {"rate_per_minute": 30, "label": "front"})
    assert (status, body["label"], body["limits"]["rate_per_minute"]) == (200, "front", 30)
    status, _, body = admin.call("PATCH", f"/api/v1/modems/{modem_id}", {"rate_per_minute": 0})
    assert status == 400 and body["field"] == "rate_per_minute"
    assert client.call("PATCH", f"/api/v1/modems/{modem_id}", {"enabled": False})[0] == 403


def test_a_keys_group_is_its_default_route(client, daemon):
    [_first, second] = daemon.store.modems()
    daemon.store.update_modem(second["id"], grp="otp")
    daemon.pool.refresh(second["id"])
    otp = Client(daemon.url, auth.create_key(daemon.store, "otp-app", ("send", "read"), group="otp")[0])
    _status, _, body = otp.call("POST", "/api/v1/messages", {"to": "+447700901299", "body": "Code 1"})
    final = daemon.wait_for_final(body["messages"][0]["id"], 10)
    assert final["modem_id"] == second["id"]


def test_metrics_show_modems_queue_and_latency(client, daemon):
    request = urllib.request.Request(daemon.url + "metrics")
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    assert "modemgw_messages_sent_total{modem=" in text
    assert "modemgw_queue_depth" in text and "modemgw_webhook_backlog" in text
    assert "modemgw_send_seconds_bucket" in text
    assert 'modemgw_modem_up{modem="' in text


@pytest.mark.parametrize("payload, field", [
    ({"to": "+447700901234", "body": "x", "send_at": 1e308}, "send_at"),
    ({"to": "+447700901234", "body": "x", "send_at": 99999999999999999999999}, "send_at"),
    ({"to": "+447700901234", "body": "x", "validity": 99999999999999999999}, "validity"),
    ({"to": "+447700901234", "body": "\ud800"}, "body"),
])
def test_values_out_of_range_are_refused_not_crashed_on(client, payload, field):
    status, _, body = client.call("POST", "/api/v1/messages", raw=json.dumps(payload).encode())
    assert (status, body.get("field")) == (400, field)
    assert client.call("GET", "/api/v1/messages?limit=5")[0] == 200


def test_listing_with_an_ancient_since_and_a_duplicate_label(client, daemon):
    assert client.call("GET", "/api/v1/messages?since=0001-01-01T00:00:00%2B05:00")[0] == 200  # early, not broken
    assert client.call("GET", "/api/v1/messages?since=0001-01-01T00:00:00%2005:00")[0] == 400
    admin = Client(daemon.url, auth.create_key(daemon.store, "admin2", ("admin",))[0])
    [first, second] = daemon.store.modems()
    status, _, body = admin.call("PATCH", f"/api/v1/modems/{second['id']}", {"label": first["label"]})
    assert status == 409 and body["field"] == "label"
    status, _, body = admin.call("PATCH", f"/api/v1/modems/{second['id']}", {"rate_per_minute": 10**20})
    assert status == 400


def test_prompt_commands_cannot_be_chained_into_the_at_console(client, daemon):
    admin = Client(daemon.url, auth.create_key(daemon.store, "admin3", ("admin",))[0])
    modem_id = daemon.store.modems()[0]["id"]
    for command in ('AT+CSQ;+CMGS="+447700900123"', "AT+CMGC=2", "AT+CNMA=0,14"):  # all wait for a '> '
        status, _, body = admin.call("POST", f"/api/v1/modems/{modem_id}/at", {"command": command})
        assert status == 400 and "prompt" in body["detail"], command


def test_metrics_can_require_a_read_key_and_cookies_can_be_https_only(tmp_path):
    import requests

    from modemgw import auth

    config = daemon_config(tmp_path)
    config.metrics_auth = config.secure_cookies = True
    running = Daemon(config, http=True).start()
    try:
        url = running.url
        refused = requests.get(f"{url}metrics", timeout=10)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
        sender, _ = auth.create_key(running.store, "sender", ("send",))
        reader, _ = auth.create_key(running.store, "prometheus", ("read",))
        refused = requests.get(f"{url}metrics", headers={"Authorization": f"Bearer {sender}"}, timeout=10)
        assert refused.status_code == 403
        allowed = requests.get(f"{url}metrics", headers={"Authorization": f"Bearer {reader}"}, timeout=10)
        assert allowed.status_code == 200 and "modemgw_queue_depth" in allowed.text
        login = requests.get(f"{url}ui/login", timeout=10)
        assert "Secure" in login.headers["Set-Cookie"]
    finally:
        running.stop()


def test_optouts_are_normalised_once_by_the_gateway(daemon):
    admin = Client(daemon.url, auth.create_key(daemon.store, "optouts", ("send", "read"))[0])
    status, _, body = admin.call("POST", "/api/v1/optouts", {"number": "+44 7700 900777", "note": "asked"})
    assert (status, body) == (201, {"number": "+447700900777", "created": True})
    assert admin.call("POST", "/api/v1/optouts", {"number": "+447700900777"})[:3:2] == (200, {
        "number": "+447700900777", "created": False})
    assert "+447700900777" in [row["number"] for row in admin.call("GET", "/api/v1/optouts")[2]["data"]]
    status, _, body = admin.call("POST", "/api/v1/optouts", {"number": "not a number"})
    assert (status, body["field"]) == (400, "number")
    assert admin.call("DELETE", "/api/v1/optouts/+44%207700%20900777")[0] == 204
    status, _, body = admin.call("DELETE", "/api/v1/optouts/+447700900777")
    assert status == 404 and "+447700900777" in body["detail"]


def test_the_gateway_is_the_modems_facade(daemon):
    modems = daemon.gateway.modems_now()
    assert [row["online"] for row in modems] == [True, True] and all(row["state"] in ("ready", "busy")
                                                                     for row in modems)
    assert daemon.gateway.modems_online() == (2, 2)
    with pytest.raises(SubmitError) as refused:
        daemon.gateway.update_modem(modems[0]["id"], label=" ")
    assert refused.value.field == "label"
    with pytest.raises(SubmitError) as refused:
        daemon.gateway.at_command(modems[0]["id"], "AT+CMGS=20", by="test")
    assert refused.value.field == "command"
