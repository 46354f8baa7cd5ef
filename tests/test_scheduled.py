"""Scheduled batches and message edits through the gateway and the API (real store, real Flask app), the message
list's filters in the API, and deleting a message. The pages are tested in Chromium in test_messages_ui.py."""

import datetime as dt
import time

import pytest

from modemgw.gateway import SubmitError, SubmitRequest
from modemgw.store import Conflict, NotFound
from modemgw.users import add_user
from tests.support import PASSWORD

LATER = 2 * 86400  # seconds ahead of now: far enough that nothing is released while a test runs


def numbers(count, start=0):
    return [f"+4477009{start + index:05d}" for index in range(count)]


@pytest.fixture
def gateway(app):
    return app.extensions["modemgw"].gateway


def schedule(gateway, count=3, body="See you tomorrow", start=0, **options):
    return gateway.submit(body, numbers(count, start), send_at=time.time() + LATER, **options)


# --- the gateway ------------------------------------------------------------------------------------------------

def test_batches_are_listed_with_count_first_due_and_body(gateway):
    first = schedule(gateway, 3, "First batch")
    second = gateway.submit("Second batch", numbers(2, 10), send_at=time.time() + LATER / 2)
    gateway.submit("Now", "+447700900099")  # queued: no batch of its own on the scheduled list
    batches = gateway.scheduled_batches()
    assert [batch["submission_id"] for batch in batches] == [second["submission_id"], first["submission_id"]]
    assert [(batch["count"], batch["body"]) for batch in batches] == [(2, "Second batch"), (3, "First batch")]
    assert batches[0]["first_due"] < batches[1]["first_due"]
    one = gateway.scheduled_batch(first["submission_id"])
    assert (one["count"], one["total"], one["body"]) == (3, 3, "First batch")
    assert [row["id"] for row in gateway.batch_messages(first["submission_id"], limit=2)] == \
        [message["id"] for message in first["messages"][:2]]
    with pytest.raises(NotFound):
        gateway.scheduled_batch(999_999)


def test_moving_a_batch_moves_every_message_and_its_validity(gateway):
    result = schedule(gateway, 3, validity=3600)
    new_time = time.time() + 3 * 86400
    moved = gateway.reschedule_batch(result["submission_id"], new_time)
    assert moved["ids"] == [message["id"] for message in result["messages"]]
    for message_id in moved["ids"]:
        row = gateway.message(message_id)
        assert row["status"] == "scheduled"
        assert row["due_at"] == pytest.approx(new_time)
        assert row["expires_at"] == pytest.approx(new_time + 3600)
        assert row["timeline"][-1]["kind"] == "message.rescheduled"
    with pytest.raises(SubmitError, match="not an ISO 8601 time"):
        gateway.reschedule_batch(result["submission_id"], "next Tuesday")
    gateway.cancel_submission(result["submission_id"])
    with pytest.raises(NotFound):  # nothing scheduled is left in it
        gateway.reschedule_batch(result["submission_id"], new_time)


def test_moving_a_batch_to_now_wakes_the_pool_and_it_is_sent(start_daemon):
    """The alarm was set for the old time (two days ahead): only `wake_at` can get these out now."""
    daemon = start_daemon(modems=2)
    result = schedule(daemon.gateway, 3)
    daemon.gateway.reschedule_batch(result["submission_id"], "now")  # explicitly: a past time is refused
    ids = [message["id"] for message in result["messages"]]
    assert daemon.wait_until(lambda: all(daemon.gateway.message(i, timeline=False)["status"] == "delivered"
                                         for i in ids), 15)


def test_a_time_more_than_a_minute_past_is_refused_and_now_is_explicit(gateway):
    result = schedule(gateway, 2)
    submission, message_id = result["submission_id"], result["messages"][0]["id"]
    before = gateway.message(message_id)
    for send_at in ("2020-01-01T08:00", dt.datetime(2020, 1, 1, 8, 0).timestamp(), time.time() - 120):
        with pytest.raises(SubmitError) as refused:
            gateway.reschedule_batch(submission, send_at)
        assert refused.value.field == "send_at" and "has passed: choose a later time, or Send now" in \
            refused.value.detail
        with pytest.raises(SubmitError, match="has passed"):
            gateway.edit_scheduled(message_id, send_at=send_at)
    with pytest.raises(SubmitError) as named:
        gateway.edit_scheduled(message_id, send_at="2020-01-01T08:00")
    assert named.value.detail.startswith("2020-01-01 08:00 has passed: choose a later time, or Send now")
    assert gateway.message(message_id) == before  # nothing moved, nothing on the timeline
    moments_ago = gateway.reschedule_batch(submission, time.time() - 30)  # within the minute: that is now
    assert moments_ago["due_at"] == pytest.approx(time.time(), abs=5)
    row = gateway.edit_scheduled(schedule(gateway, 1, start=50)["messages"][0]["id"], send_at="NOW")
    assert row["due_at"] == pytest.approx(time.time(), abs=5)


def test_a_refused_edit_changes_nothing_not_even_the_timeline(gateway):
    message_id = schedule(gateway, 1)["messages"][0]["id"]
    before = gateway.message(message_id)
    later = time.time() + 3 * 86400
    with pytest.raises(SubmitError, match="segments"):  # a good time with a text over the limit
        gateway.edit_scheduled(message_id, send_at=later, body="x" * 2000)
    with pytest.raises(SubmitError, match="has passed"):  # a good text with a past time
        gateway.edit_scheduled(message_id, send_at="2020-01-01T08:00:00Z", body="Changed")
    with pytest.raises(SubmitError, match="empty"):
        gateway.edit_scheduled(message_id, send_at=later, body=" ")
    assert gateway.message(message_id) == before
    assert [event["kind"] for event in before["timeline"]] == ["message.created"]
    gateway.edit_scheduled(message_id, send_at=before["due_at"], body=before["body"])  # the same: no event
    assert gateway.message(message_id)["timeline"] == before["timeline"]
    row = gateway.edit_scheduled(message_id, send_at=later, body="Changed")
    assert (row["due_at"], row["body"]) == (pytest.approx(later), "Changed")
    assert [event["kind"] for event in gateway.message(message_id)["timeline"]] == [
        "message.created", "message.rescheduled", "message.edited"]


def test_an_edited_text_is_checked_and_its_segments_recomputed(gateway):
    message_id = schedule(gateway, 1)["messages"][0]["id"]
    limit = gateway.settings.max_segments
    with pytest.raises(SubmitError) as refused:
        gateway.edit_scheduled(message_id, body="x" * (153 * limit + 1))
    assert refused.value.field == "body"
    assert f"needs {limit + 1} segments" in refused.value.detail and f"the limit is {limit}" in refused.value.detail
    assert gateway.message(message_id)["body"] == "See you tomorrow"  # unchanged
    with pytest.raises(SubmitError, match="empty"):
        gateway.edit_scheduled(message_id, body="   ")
    row = gateway.edit_scheduled(message_id, body="Tomorrow at 9 😀 " + "y" * 70)
    assert (row["encoding"], row["segments"]) == ("ucs2", 2)
    assert gateway.message(message_id)["timeline"][-1]["kind"] == "message.edited"


def test_only_scheduled_messages_are_edited(gateway):
    queued = gateway.submit("Now", "+447700900098")["messages"][0]["id"]
    with pytest.raises(Conflict, match="queued; only scheduled"):
        gateway.edit_scheduled(queued, send_at=time.time() + LATER)
    with pytest.raises(NotFound):
        gateway.edit_scheduled(999_999, body="Hi")


def test_canceling_a_batch_cancels_its_queued_and_scheduled_messages(gateway):
    result = schedule(gateway, 4)
    outcome = gateway.cancel_submission(result["submission_id"])
    assert outcome["canceled"] == [message["id"] for message in result["messages"]]
    assert outcome["statuses"] == {"canceled": 4}
    assert gateway.cancel_submission(result["submission_id"])["canceled"] == []
    assert gateway.scheduled_batches() == []


def test_a_deleted_message_leaves_no_parts_nor_events(start_daemon):
    daemon = start_daemon(modems=2)
    message_id = daemon.gateway.submit("Bye", "+447700900097")["messages"][0]["id"]
    assert daemon.wait_until(lambda: daemon.gateway.message(message_id)["status"] == "delivered", 15)
    assert daemon.gateway.message(message_id)["parts"]
    row = daemon.gateway.delete_message(message_id)
    assert (row["id"], row["status"]) == (message_id, "delivered")
    with pytest.raises(NotFound):
        daemon.gateway.message(message_id)
    assert daemon.store.events(message_id=message_id) == []
    with pytest.raises(NotFound):
        daemon.gateway.delete_message(message_id)


def test_live_statuses_are_bounded(gateway):
    ids = [message["id"] for message in schedule(gateway, 2)["messages"]]
    assert gateway.message_statuses([*ids, 999_999]) == dict.fromkeys(ids, "scheduled")
    with pytest.raises(SubmitError, match="at most 200"):
        gateway.message_statuses(list(range(1, 202)))


# --- the API ------------------------------------------------------------------------------------------------------

def test_api_lists_batches_and_pages_them(client, gateway):
    for index in range(3):
        schedule(gateway, index + 1, f"Batch {index}", start=index * 10)
    status, _, page = client.call("GET", "/api/v1/scheduled?limit=2")
    assert status == 200
    assert [(batch["count"], batch["body"]) for batch in page["data"]] == [(1, "Batch 0"), (2, "Batch 1")]
    assert page["data"][0]["first_send_at"].endswith("Z") and page["next_offset"] == 2
    status, _, rest = client.call("GET", f"/api/v1/scheduled?limit=2&offset={page['next_offset']}")
    assert [batch["body"] for batch in rest["data"]] == ["Batch 2"] and rest["next_offset"] is None


def test_api_edits_a_scheduled_message(client, gateway):
    message_id = schedule(gateway, 1)["messages"][0]["id"]
    status, _, view = client.call("PATCH", f"/api/v1/messages/{message_id}",
                                  {"send_at": "2099-01-02T03:04:00Z", "body": "Moved 😀"})
    assert status == 200, view
    assert (view["send_at"], view["body"], view["encoding"]) == ("2099-01-02T03:04:00Z", "Moved 😀", "ucs2")
    status, _, problem = client.call("PATCH", f"/api/v1/messages/{message_id}", {"body": "z" * 3000})
    assert status == 400 and problem["field"] == "body" and "the limit is 10" in problem["detail"]
    status, _, problem = client.call("PATCH", f"/api/v1/messages/{message_id}", {"sent_at": "2099-01-01"})
    assert status == 400 and "unknown field 'sent_at'" in problem["detail"]
    status, _, problem = client.call("PATCH", f"/api/v1/messages/{message_id}", {})
    assert status == 400 and "nothing to change" in problem["detail"]
    queued = gateway.submit("Now", "+447700900096")["messages"][0]["id"]
    status, _, problem = client.call("PATCH", f"/api/v1/messages/{queued}", {"body": "Changed"})
    assert status == 409 and "only scheduled messages" in problem["detail"]
    assert client.call("PATCH", "/api/v1/messages/999999", {"body": "Hi"})[0] == 404
    entries = gateway.audit_log(action="message.edit")
    assert [entry["target"] for entry in entries] == [f"message {message_id}"]


def test_api_refuses_a_past_time_and_sends_now_when_asked(client, gateway):
    result = schedule(gateway, 2)
    submission, message_id = result["submission_id"], result["messages"][0]["id"]
    for path in (f"/api/v1/messages/{message_id}", f"/api/v1/submissions/{submission}"):
        status, headers, problem = client.call("PATCH", path, {"send_at": "2020-01-01T08:00:00Z"})
        assert status == 400 and headers["Content-Type"] == "application/problem+json"
        assert problem["field"] == "send_at" and "has passed: choose a later time, or Send now" in problem["detail"]
        assert 'send_at "now"' in problem["detail"]
    status, _, problem = client.call("PATCH", f"/api/v1/messages/{message_id}",
                                     {"send_at": "2020-01-01T08:00:00Z", "body": "New text"})
    assert status == 400 and gateway.message(message_id)["body"] == "See you tomorrow"
    assert [event["kind"] for event in gateway.message(message_id)["timeline"]] == ["message.created"]
    status, _, moved = client.call("PATCH", f"/api/v1/submissions/{submission}", {"send_at": "now"})
    assert status == 200 and moved["count"] == 2
    sent_at = dt.datetime.fromisoformat(moved["send_at"].replace("Z", "+00:00")).timestamp()
    assert sent_at == pytest.approx(time.time(), abs=5)


def test_api_moves_and_cancels_a_batch_audited(client, gateway):
    result = schedule(gateway, 3)
    submission = result["submission_id"]
    status, _, moved = client.call("PATCH", f"/api/v1/submissions/{submission}", {"send_at": "2099-05-01T08:00:00Z"})
    assert status == 200 and moved["count"] == 3 and moved["send_at"] == "2099-05-01T08:00:00Z"
    may_first = dt.datetime(2099, 5, 1, 8, tzinfo=dt.UTC).timestamp()
    assert {gateway.message(m["id"])["due_at"] for m in result["messages"]} == {may_first}
    status, _, canceled = client.call("POST", f"/api/v1/submissions/{submission}/cancel")
    assert status == 200 and canceled["message_ids"] == [m["id"] for m in result["messages"]]
    assert canceled["statuses"] == {"canceled": 3}
    status, _, problem = client.call("POST", f"/api/v1/submissions/{submission}/cancel")
    assert status == 409 and "3 canceled" in problem["detail"]
    assert client.call("POST", "/api/v1/submissions/999999/cancel")[0] == 404
    assert client.call("PATCH", f"/api/v1/submissions/{submission}", {"send_at": "2099-05-01T08:00:00Z"})[0] == 404
    assert [entry["action"] for entry in gateway.audit_log(action="batch.cancel")] == ["batch.cancel"]
    reschedule = gateway.audit_log(action="batch.reschedule")
    assert reschedule[0]["actor"].startswith("key tests") and reschedule[0]["target"] == f"submission {submission}"


def test_api_message_filters(client, app, gateway):
    store = app.extensions["modemgw"].store
    user_id = add_user(store, "ann", PASSWORD, "operator")
    key_row = next(key for key in gateway.api_keys() if key["name"] == "tests")
    by_user = gateway.send(SubmitRequest("From the office", numbers(2, 40), user_id=user_id))
    by_key = gateway.send(SubmitRequest("From the CRM", numbers(2, 50), api_key_id=key_row["id"],
                                        client_ref="crm-7"))

    def ids(query):
        status, _, page = client.call("GET", f"/api/v1/messages?{query}")
        assert status == 200, page
        return [row["id"] for row in page["data"]]

    user_ids = [m["id"] for m in reversed(by_user["messages"])]
    key_ids = [m["id"] for m in reversed(by_key["messages"])]
    assert ids(f"user_id={user_id}") == user_ids
    assert ids(f"api_key_id={key_row['id']}") == key_ids
    assert ids("q=office") == user_ids
    assert ids("q=crm-7") == key_ids  # an exact client_ref
    assert ids("since=2000-01-01T00:00:00Z&until=2001-01-01T00:00:00Z") == []
    assert ids("modem_id=12345") == [] and ids("modem=12345") == []
    status, _, problem = client.call("GET", "/api/v1/messages?q=" + "a" * 101)
    assert status == 400 and problem["field"] == "q"
    status, _, problem = client.call("GET", "/api/v1/messages?api_key_id=seven")
    assert status == 400 and problem["field"] == "api_key_id"
