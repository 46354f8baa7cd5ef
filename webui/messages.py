"""Messages and Scheduled: the pages where a person finds what was sent and changes what is still to go.

- Messages (`/ui/messages`): every message, newest first, in pages of PAGE_SIZE with "Older →" / "← Newer" links
  that carry the cursor (an id), so nothing is ever out of reach however many there are; filters by creation
  date, status, SIM, sender (an API key or a web UI user), client_ref and text; the statuses of the rows still
  on their way stay live (`static/messages.js` polls `message_statuses`); the filtered list as CSV (every
  matching row, streamed page by page; formula-safe; the columns and rows `GET /api/v1/messages` gives).
- A message: its facts, a timeline in words (`describe_event`), cancel, send again, delete (admins).
- Scheduled (`/ui/scheduled`): scheduled messages by batch (one submission), each with its count, first due
  time and text: move a batch, cancel a batch; a batch's messages, each movable and editable (its text checked
  by the gateway as a submission's is) or cancelable.
Everything goes through the gateway; deleting a message, moving or canceling a batch and editing a message are
audited.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
from collections.abc import Iterator
from typing import Any

from flask import Response, abort, jsonify, redirect, render_template, request, stream_with_context, url_for

from modemgw import csvfile, pdu
from modemgw.gateway import SubmitError
from modemgw.scheduling import SEND_NOW
from modemgw.store import Conflict, NotFound, StoreError
from modemgw.users import list_users
from modemgw.views import message_view
from webui import audit, daemon, gateway, storage_message, ui, when
from webui.sessions import login_required, notice

PAGE_SIZE = 50          # messages on one page of the list
EXPORT_PAGE = 500       # rows read at a time while the CSV export streams
EXPORT_CHUNK = 100      # rows written to the client at a time: its download starts after 100 rows, not 500
BATCH_PAGE = 100        # messages on one page of a batch
BATCHES_PAGE = 25       # batches on one page of the scheduled list: each is a card with two forms (100 took ~12 ms
                        # of rendering on a fast core, and a long scroll on a phone)
STATUSES = ("scheduled", "queued", "sending", "sent", "delivered", "undelivered", "failed", "expired", "canceled")
SETTLED = ("delivered", "undelivered", "failed", "expired", "canceled")  # statuses that never change again
MAX_STATUS_QUERY = 4000  # characters of the live poll's id list
# The CSV's columns: `GET /api/v1/messages`'s fields in its order, its `error` object as two columns.
CSV_COLUMNS = ("id", "to", "body", "status", "segments", "encoding", "priority", "client_ref", "modem_id",
               "created_at", "send_at", "expires_at", "sent_at", "delivered_at", "report", "error_code",
               "error_reason", "possible_duplicate", "attempts", "callback_url", "preferred_modem_id", "reply_to")


# --- what people read ------------------------------------------------------------------------------------------

def sim_labels() -> dict[int, str]:
    """Each modem's name as a person knows it: its label, and its SIM's number when known ("SIM 2 (+44…)")."""
    labels = {}
    for modem in gateway().modems_now():
        name = modem["label"] or f"modem {modem['id']}"
        labels[modem["id"]] = f"{name} ({modem['number']})" if modem.get("number") else name
    return labels


def _seconds(value: float) -> str:
    seconds = max(0, round(value))
    return f"{seconds} s" if seconds < 120 else f"{round(seconds / 60)} min"


def describe_event(event: dict, labels: dict[int, str], segments: int = 1) -> str:
    """One timeline event in words: "Sent by SIM 2 (+44…), reference 17", "Delivered", "Retry in 30 s: <reason>".
    `labels` names modems by id (`sim_labels`); `segments` is the message's (a part is named only when it has
    several). Unknown events are named by their kind, readably."""
    kind, detail = event["kind"], event.get("detail") or {}
    modem_id = event.get("modem_id")
    sim = labels.get(modem_id, f"modem {modem_id}") if modem_id is not None else "a SIM"
    reason = detail.get("reason") or "no reason given"
    code = f" (error {detail['code']})" if detail.get("code") is not None else ""
    part = f"Part {detail.get('seq')} of {segments}" if segments > 1 and detail.get("seq") is not None else ""
    if kind == "message.created":
        return "Accepted"
    if kind == "message.sending":
        return f"Handed to {sim} to send"
    if kind == "part.sent":
        reference = f", reference {detail['reference']}" if detail.get("reference") is not None else ""
        return f"{part + ' sent' if part else 'Sent'} by {sim}{reference}"
    if kind == "message.sent":
        return "Sent (found sent after a restart)" if detail.get("recovered") else "Sent: the network took every part"
    if kind == "message.retry":
        due = detail.get("due_at")
        wait = f"Retry in {_seconds(due - event['at'])}" if isinstance(due, (int, float)) else "Retry"
        return f"{wait}: {reason}{code}"
    if kind == "message.resend_all_parts":
        return f"Every part will be sent again: {reason}"
    if kind == "message.failed":
        return f"Failed: {reason}{code}"
    if kind == "message.possible_duplicate":
        return f"May have been sent twice: {reason}"
    if kind == "part.report":
        outcome = {"delivered": "delivered", "pending": "not yet delivered, the network keeps trying",
                   "failed": "not delivered"}.get(str(detail.get("outcome")), str(detail.get("outcome")))
        why = f" ({pdu.status_reason(detail['code'])})" if isinstance(detail.get("code"), int) and \
            detail.get("outcome") != "delivered" else ""
        return f"Status report{' for ' + part.lower() if part else ''} from {sim}: {outcome}{why}"
    if kind == "message.delivered":
        return "Delivered"
    if kind == "message.undelivered":
        return "Not delivered: the network gave up"
    if kind == "message.expired":
        return "Expired: not sent within its validity"
    if kind == "message.canceled":
        return "Canceled"
    if kind == "message.rescheduled":
        return f"Moved to {when(detail.get('due_at'))}"
    if kind == "message.edited":
        segments_now = detail.get("segments")
        return f"Text changed ({segments_now} segment{'' if segments_now == 1 else 's'})" if segments_now else \
            "Text changed"
    return kind.replace(".", " ").replace("_", " ").capitalize()


def senders() -> tuple[dict[int, str], dict[int, str]]:
    """(API keys' names by id, web UI users' names by id): who may have sent a message."""
    keys = {key["id"]: key["name"] for key in gateway().api_keys()}
    users = {user["id"]: user["username"] for user in list_users(daemon().store)}
    return keys, users


def sender_of(message: dict, keys: dict[int, str], users: dict[int, str]) -> str:
    if message.get("user_id") is not None:
        return f"web UI user {users.get(message['user_id'], '#' + str(message['user_id']))}"
    if message.get("api_key_id") is not None:
        return f"API key {keys.get(message['api_key_id'], '#' + str(message['api_key_id']))}"
    return "the command line or the gateway itself"


# --- the list: filters, pages, live statuses, CSV ----------------------------------------------------------------

def _whole(value: str | None) -> int | None:
    """A row id from the query string, or None (absent, or not a sensible id: it matches nothing anyway)."""
    if value and len(value) <= 19 and value.isascii() and value.isdigit() and int(value) < 2**63:  # SQLite's
        return int(value)
    return None


def _day(value: str, what: str, problems: list[str]) -> float | None:
    """Local midnight starting the day `value` (YYYY-MM-DD), or None (with what is wrong in `problems`)."""
    try:
        day = dt.date.fromisoformat(value) if len(value) == 10 else None
    except ValueError:
        day = None
    if day is None:
        problems.append(f"{what}: {value[:20]!r} is not a date (YYYY-MM-DD); that filter is left out")
        return None
    return time.mktime((day.year, day.month, day.day, 0, 0, 0, 0, 0, -1))


def list_filters(args) -> tuple[dict[str, Any], list[str]]:
    """The gateway's message filters from the page's query string (status, modem, sender "key:<id>" or
    "user:<id>", from and to dates (both included), client_ref, q), and what was wrong with any left out."""
    filters: dict[str, Any] = {}
    problems: list[str] = []
    status = args.get("status", "")
    if status:
        if status in STATUSES:
            filters["status"] = status
        else:
            problems.append(f"status: {status[:20]!r} is not a status; that filter is left out")
    if args.get("modem"):
        filters["modem_id"] = _whole(args["modem"]) or -1
    sender = args.get("sender", "")
    if sender:
        kind, _, number = sender.partition(":")
        if kind in ("key", "user") and _whole(number) is not None:
            filters["api_key_id" if kind == "key" else "user_id"] = _whole(number)
        else:
            problems.append(f"sender: {sender[:30]!r} is neither an API key nor a user; that filter is left out")
    since = _day(args["from"], "From", problems) if args.get("from") else None
    if since is not None:
        filters["since"] = since
    until = _day(args["to"], "To", problems) if args.get("to") else None
    if until is not None:
        next_day = time.localtime(until + 36 * 3600)  # the next day's midnight, whatever the clock change
        filters["until"] = time.mktime((next_day.tm_year, next_day.tm_mon, next_day.tm_mday, 0, 0, 0, 0, 0, -1))
    for name, key, longest in (("client_ref", "client_ref", 128), ("q", "search", 100)):
        value = args.get(name, "").strip()
        if len(value) > longest:
            problems.append(f"{'Reference' if name == 'client_ref' else 'Text'} is longer than {longest} "
                            "characters; that filter is left out")
        elif value:
            filters[key] = value
    return filters, problems


FILTER_ARGS = ("q", "status", "modem", "sender", "from", "to", "client_ref")


def _kept_args(args) -> dict[str, str]:
    """The filters a page's links carry on (never the cursor)."""
    return {name: args[name] for name in FILTER_ARGS if args.get(name)}


@ui.get("/ui/messages")
@login_required()
def messages():
    args = request.args
    filters, problems = list_filters(args)
    before, after = _whole(args.get("before")), _whole(args.get("after"))
    older = newer = searched_to = None
    if after is not None:
        rows, scanned_to = gateway().message_page(PAGE_SIZE + 1, after=after, **filters)
        if len(rows) <= PAGE_SIZE and scanned_to is None:  # the newest page: shown whole, as the first page
            return redirect(url_for("ui.messages", **_kept_args(args)))
        if scanned_to is not None:  # a search's window ended: the matches in it, and newer ones to search above it
            rows = rows[-PAGE_SIZE:]
            newer, older = scanned_to, after + 1
        else:
            rows = rows[-PAGE_SIZE:]
            newer, older = rows[0]["id"], rows[-1]["id"]
    else:
        rows, scanned_to = gateway().message_page(PAGE_SIZE + 1, before=before, **filters)
        if len(rows) > PAGE_SIZE:
            rows = rows[:PAGE_SIZE]
            older = rows[-1]["id"]
        elif scanned_to is not None:  # a search read its window: older messages are left to search
            older = searched_to = scanned_to
        if before is not None and rows:
            newer = rows[0]["id"]
        elif before is not None:
            newer = before - 1  # an empty page past the end: back to the rows above its cursor
    keys, users = senders()
    modems = gateway().modems_now()
    # when the oldest message searched was created (the first at or above the window's end: ids may have gaps)
    edge = [] if searched_to is None else gateway().messages(1, after=searched_to - 1)
    searched = edge[0]["created_at"] if edge else None
    return render_template("messages.html", rows=rows, args=args, kept=_kept_args(args), problems=problems,
                           older=older, newer=newer, searched=searched, labels=sim_labels(), keys=keys, users=users,
                           statuses=STATUSES, settled=SETTLED, modems=modems,
                           names={modem["id"]: modem["label"] or f"modem {modem['id']}" for modem in modems})


@ui.get("/ui/messages/status.json")
@login_required()
def message_statuses():
    """{"statuses": {id: status}} for the ids asked about (`ids=1,2,3`): what messages.js polls."""
    raw = request.args.get("ids", "")
    if len(raw) > MAX_STATUS_QUERY:
        return jsonify(error=f"too many ids: at most {MAX_STATUS_QUERY} characters of them"), 400
    ids = [number for number in (_whole(item) for item in raw.split(",") if item) if number is not None]
    try:
        statuses = gateway().message_statuses(ids)
    except SubmitError as error:
        return jsonify(error=error.detail), 400
    return jsonify(statuses={str(key): value for key, value in statuses.items()}, settled=list(SETTLED))


def _csv_cells(row: dict) -> list:
    """A message's CSV cells, in CSV_COLUMNS order: its API view (`message_view`), flattened. Every text is guarded
    against formulas (a new column is too); numbers and None (an empty cell) go to csv as they are."""
    view = message_view(row)
    error = view["error"]
    view["error_code"], view["error_reason"] = (error["code"], error["reason"]) if error else (None, None)
    view["possible_duplicate"] = "true" if view["possible_duplicate"] else "false"
    return [csvfile.guard(value) if type(value) is str else value for value in map(view.__getitem__, CSV_COLUMNS)]


@ui.get("/ui/messages/export.csv")
@login_required()
def messages_export():
    """Every message the list's filters match (not just a page), newest first, as CSV: read EXPORT_PAGE rows at
    a time while it streams (so a long list costs no memory), sent EXPORT_CHUNK rows at a time."""
    filters, _ = list_filters(request.args)
    first, scanned_to = gateway().message_page(EXPORT_PAGE, **filters)  # a database error is still a page here

    def lines() -> Iterator[str]:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        rows, below, started = first, scanned_to, True
        while True:
            for start in range(0, max(len(rows), 1), EXPORT_CHUNK):
                writer.writerows(_csv_cells(row) for row in rows[start:start + EXPORT_CHUNK])
                yield ("\ufeff" if started else "") + out.getvalue()
                started = False
                out.seek(0)
                out.truncate()
            if len(rows) == EXPORT_PAGE:
                below = rows[-1]["id"]
            elif below is None:  # the last rows, or a search's last window
                return
            rows, below = gateway().message_page(EXPORT_PAGE, before=below, **filters)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Response(stream_with_context(lines()), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="messages-{stamp}.csv"'})


# --- one message ---------------------------------------------------------------------------------------------------

@ui.get("/ui/messages/<id:message_id>")
@login_required()
def message(message_id: int):
    try:
        row = gateway().message(message_id)
    except NotFound:
        abort(404)
    labels = sim_labels()
    keys, users = senders()
    timeline = [event | {"text": describe_event(event, labels, row["segments"])} for event in row["timeline"]]
    return render_template("message.html", m=row, labels=labels, timeline=timeline,
                           sender=sender_of(row, keys, users), settled=SETTLED)


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


@ui.post("/ui/messages/<id:message_id>/delete")
@login_required("admin")
def delete_message(message_id: int):
    """Delete a message with its parts and timeline (the page asks first); audited."""
    try:
        row = gateway().delete_message(message_id)
    except Conflict as error:
        notice(f"Not deleted: {error}")
        return redirect(url_for("ui.message", message_id=message_id))
    audit("message.delete", f"message {message_id}", {"to": row["recipient"], "status": row["status"],
                                                      "created_at": row["created_at"]})
    notice(f"Message {message_id} to {row['recipient']} deleted, with its parts and timeline.")
    return redirect(url_for("ui.messages"))


# --- scheduled ---------------------------------------------------------------------------------------------------

def local_input(value: float | None) -> str:
    """Unix seconds as a datetime-local field's value (the gateway's local time, to the minute)."""
    return time.strftime("%Y-%m-%dT%H:%M", time.localtime(value)) if value else ""


@ui.app_template_filter("local_input")
def local_input_filter(value):
    return local_input(value)


def _back_to_batch(submission_id: int):
    target = request.form.get("back", "")
    if target == "list":
        return redirect(url_for("ui.scheduled"))
    return redirect(url_for("ui.scheduled_batch", submission_id=submission_id))


@ui.get("/ui/scheduled")
@login_required()
def scheduled():
    offset = _whole(request.args.get("offset")) or 0
    batches = gateway().scheduled_batches(BATCHES_PAGE + 1, offset)
    more = len(batches) > BATCHES_PAGE
    keys, users = senders()
    return render_template("scheduled.html", batches=batches[:BATCHES_PAGE], keys=keys, users=users,
                           offset=offset, next_offset=offset + BATCHES_PAGE if more else None,
                           previous_offset=max(0, offset - BATCHES_PAGE) if offset else None, sender_of=sender_of)


@ui.get("/ui/scheduled/<id:submission_id>")
@login_required()
def scheduled_batch(submission_id: int):
    batch = gateway().scheduled_batch(submission_id)
    after = _whole(request.args.get("after"))
    rows = gateway().batch_messages(submission_id, BATCH_PAGE + 1, after)
    more = len(rows) > BATCH_PAGE
    rows = rows[:BATCH_PAGE]
    keys, users = senders()
    return render_template("scheduled.html", batch=batch, rows=rows, after=after,
                           next_after=rows[-1]["id"] if more else None, keys=keys, users=users, sender_of=sender_of)


def _send_now() -> bool:
    """The form's "Send now" button was pressed (rather than the one that saves the typed time)."""
    return request.form.get("action", "") == "now"


@ui.app_template_global()
def earliest_input() -> str:
    """The earliest time a datetime-local field may offer (`min`): this minute (a time more than a minute past is
    refused; "Send now" sends at once)."""
    return local_input(time.time())


@ui.post("/ui/scheduled/<id:submission_id>/move")
@login_required()
def scheduled_move(submission_id: int):
    """Move a batch to the time typed, or (its "Send now" button) send it at once; a past time is refused."""
    send_at = SEND_NOW if _send_now() else request.form.get("send_at", "")
    try:
        result = gateway().reschedule_batch(submission_id, send_at)
    except SubmitError as error:
        notice(f"Not moved: {error.detail}")
        return _back_to_batch(submission_id)
    except NotFound as error:
        notice(f"Not moved: {error}")
        return redirect(url_for("ui.scheduled"))
    audit("batch.reschedule", f"submission {submission_id}", {"send_at": when(result["due_at"]),
                                                              "messages": len(result["ids"])})
    count = len(result["ids"])
    if send_at == SEND_NOW:
        notice(f"Batch {submission_id}: {count} message{'' if count == 1 else 's'} sent now (they leave as soon as "
               "a SIM can send them).")
    else:
        notice(f"Batch {submission_id}: {count} message{'' if count == 1 else 's'} now due "
               f"{when(result['due_at'])}.")
    return _back_to_batch(submission_id)


@ui.post("/ui/scheduled/<id:submission_id>/cancel")
@login_required()
def scheduled_cancel(submission_id: int):
    result = gateway().cancel_submission(submission_id)
    count = len(result["canceled"])
    if count:
        audit("batch.cancel", f"submission {submission_id}", {"messages": count})
        notice(f"Batch {submission_id}: {count} message{'' if count == 1 else 's'} canceled.")
    else:
        notice(f"Batch {submission_id} had nothing left to cancel: its messages are sent, canceled or failed.")
    return redirect(url_for("ui.scheduled"))


@ui.route("/ui/scheduled/messages/<id:message_id>", methods=["GET", "POST"])
@login_required()
def scheduled_message(message_id: int):
    """One scheduled message: its time and its text, changed together ("Save"), or its text saved and the message
    sent at once ("Send now"); the gateway checks both before it writes anything (a time more than a minute past
    is refused, the text's segments against the limit) and a refusal keeps what was typed on the page."""
    row = gateway().message(message_id, timeline=False)
    error, code, send_at = None, 200, local_input(row["due_at"])
    if request.method == "POST":
        body = request.form.get("body", "").replace("\r\n", "\n")
        send_at = request.form.get("send_at", "") or send_at
        changes: dict[str, Any] = {}
        if body != row["body"]:
            changes["body"] = body
        if _send_now():
            changes["send_at"] = SEND_NOW
        elif send_at != local_input(row["due_at"]):
            changes["send_at"] = send_at
        try:
            if changes:
                row = gateway().edit_scheduled(message_id, **changes)
                audit("message.edit", f"message {message_id}", {"changed": sorted(changes)}
                      | ({"send_at": SEND_NOW} if changes.get("send_at") == SEND_NOW else {}))
                saved = "Saved" if changes.get("send_at") != SEND_NOW else "Sent now"
                notice(f"{saved}." if "body" not in changes else
                       f"{saved}: {row['segments']} segment{'' if row['segments'] == 1 else 's'}, "
                       f"{'GSM-7' if row['encoding'] == 'gsm7' else 'UCS-2 (Unicode)'}.")
            else:
                notice("Nothing changed.")
            if changes.get("send_at") == SEND_NOW:  # its page shows it leave
                return redirect(url_for("ui.message", message_id=message_id))
            return redirect(url_for("ui.scheduled_batch", submission_id=row["submission_id"])
                            if row["submission_id"] else url_for("ui.message", message_id=message_id))
        except SubmitError as refusal:
            error, code = f"Not saved: {refusal.detail}", 400
            row = row | {"body": body}
        except Conflict as refusal:  # sent or canceled meanwhile: the page says what it is now
            error, code = f"Not saved: {refusal}", 409
            row = gateway().message(message_id, timeline=False)
        except NotFound:  # deleted meanwhile: the 404 page
            raise
        except StoreError as failure:
            error, code = f"Not saved: {storage_message(failure)}", 503
            row = row | {"body": body}
    return render_template("scheduled.html", edit=row, error=error, send_at=send_at,
                           max_segments=gateway().settings.max_segments), code


@ui.post("/ui/scheduled/messages/<id:message_id>/cancel")
@login_required()
def scheduled_message_cancel(message_id: int):
    row = gateway().message(message_id, timeline=False)
    status = gateway().cancel(message_id)
    notice(f"Message {message_id} canceled." if status == "canceled" else
           f"Message {message_id} not canceled: it is {status}.")
    if row["submission_id"] and gateway().scheduled_batch(row["submission_id"])["count"]:
        return redirect(url_for("ui.scheduled_batch", submission_id=row["submission_id"]))
    return redirect(url_for("ui.scheduled"))


__all__ = ["CSV_COLUMNS", "PAGE_SIZE", "cancel", "delete_message", "describe_event", "earliest_input", "list_filters",
           "local_input", "message", "message_statuses", "messages", "messages_export", "resend", "scheduled",
           "scheduled_batch", "scheduled_cancel", "scheduled_message", "scheduled_message_cancel", "scheduled_move",
           "sender_of", "senders", "sim_labels"]
