"""Scheduled messages and their batches, as the gateway offers them to every edge; message deletion and live
statuses for the web UI's list.

`Scheduling` is a part of `Gateway` (a mixin over `self.store`, like `AddressBook` and `TemplateLibrary`); edges
call these methods on the gateway. A *batch* is one submission: its messages share `submission_id` (a compose
to 250 numbers for tomorrow 09:00 is one batch of 250). Only messages still `scheduled` can be moved or edited:
a queued one may be claimed by a modem at any moment. A new time more than PAST_GRACE (a minute) in the past is
refused (a typo in a date must not send a batch at once, silently); sending at once is asked for explicitly, with the
time "now" (SEND_NOW: the UI's "Send now" button). A time within that minute is now (the minute a person picked has
just begun). Every change of a due time tells the pool's alarm (`wake_at`), as `Gateway.send` does, so a message
moved earlier leaves on time. An edited text is checked as a submission's is (`text.info`: its encoding and
segments recomputed, at most the gateway's `max_segments`), so an edit can never queue what a send would have
refused. Everything is checked before anything is written: a refused edit leaves the message and its timeline as
they were.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from modemgw import text

if TYPE_CHECKING:
    from modemgw.settings import GatewaySettings
    from modemgw.store import Store

MAX_PAGE = 500          # rows of one page of batches or of a batch's messages
MAX_STATUS_IDS = 200    # messages one live-status request may ask about
SEND_NOW = "now"        # the time that sends at once (any case)
PAST_GRACE = 60         # seconds a new time may lie behind now and still mean now


def _submit_error(detail: str, field: str) -> Exception:
    """The gateway's SubmitError (modemgw.gateway imports this module, so it is looked up when needed)."""
    from modemgw.gateway import SubmitError

    return SubmitError(detail, field)


class Scheduling:
    """Scheduled batches (list, move, cancel), single scheduled messages (move, edit), deletion, live statuses.
    Raises NotFound (no such message or submission), Conflict (the message is no longer scheduled, or is being
    sent), SubmitError (a time or a text that breaks a rule), StoreError."""

    store: Store
    settings: GatewaySettings
    wake_at: Callable[[float], None]

    # --- reading ---

    def scheduled_batches(self, limit: int = 100, offset: int = 0) -> list[dict]:
        """Submissions with scheduled messages, the earliest due first: each with `submission_id`, `count` (its
        scheduled messages), `first_due`, `last_due`, `created_at`, and its first scheduled message's `body`,
        `recipient`, `api_key_id` and `user_id`."""
        return self.store.scheduled_batches(max(1, min(limit, MAX_PAGE)), max(0, offset))

    def scheduled_batch(self, submission_id: int) -> dict:
        """One batch as in `scheduled_batches`, with `total` (all its messages, whatever their status); `count`
        is 0 when none is scheduled any more. Raises NotFound."""
        return self.store.scheduled_batch(submission_id)

    def batch_messages(self, submission_id: int, limit: int = 100, after: int | None = None) -> list[dict]:
        """Up to `limit` scheduled messages of a batch, by id, with ids above `after`."""
        return self.store.batch_messages(submission_id, max(1, min(limit, MAX_PAGE)), after)

    def message_statuses(self, ids: list[int]) -> dict[int, str]:
        """The status of each of these messages (at most MAX_STATUS_IDS; deleted ones are left out): what an open
        list of messages polls to stay live."""
        if len(ids) > MAX_STATUS_IDS:
            raise _submit_error(f"{len(ids)} messages asked about; at most {MAX_STATUS_IDS} at once", "ids")
        return {row["id"]: row["status"] for row in self.store.messages(ids)} if ids else {}

    # --- changing ---

    def _due(self, send_at: Any) -> float:
        """`send_at` (ISO 8601, Unix seconds, or a datetime; without a zone, the gateway's local time; or "now") as
        Unix seconds. A time more than PAST_GRACE seconds ago is refused, naming it (and how to send at once); a
        time within that grace is now. Raises SubmitError."""
        from modemgw.gateway import _epoch

        if isinstance(send_at, bool):
            raise _submit_error("send_at must be a time (ISO 8601 or Unix seconds), not true or false", "send_at")
        if isinstance(send_at, str) and len(send_at) > 64:
            raise _submit_error("send_at is longer than any time (at most 64 characters)", "send_at")
        now = time.time()
        if isinstance(send_at, str) and send_at.strip().lower() == SEND_NOW:
            return now
        due = _epoch(send_at, "send_at")
        if due is None:
            raise _submit_error("send_at is empty: give the new time (e.g. 2026-12-01T09:30:00+01:00), or \"now\"",
                                "send_at")
        if due < now - PAST_GRACE:
            shown = time.strftime("%Y-%m-%d %H:%M", time.localtime(due))
            raise _submit_error(f"{shown} has passed: choose a later time, or Send now (in the API: send_at "
                                f'"{SEND_NOW}")', "send_at")
        return max(now, due)

    def checked_body(self, body: Any) -> text.TextInfo:
        """What an edited text costs (`text.info`), refused as a submission's would be: not text, empty, broken
        Unicode, or more segments than the gateway's `max_segments`. Raises SubmitError naming `body`."""
        if not isinstance(body, str):
            raise _submit_error("body must be text", "body")
        if len(body) > text.MAX_BODY_CHARS:
            raise _submit_error(f"body is {len(body)} characters; the most any SMS can carry is "
                                f"{text.MAX_BODY_CHARS}", "body")
        if any("\ud800" <= char <= "\udfff" for char in body):
            raise _submit_error("body has a lone UTF-16 surrogate (a broken emoji); send valid Unicode", "body")
        if not body.strip():
            raise _submit_error("body is empty: write the message's text", "body")
        limit = self.settings.max_segments
        try:
            info = text.info(body)
        except text.TextError as error:  # longer than any SMS (255 segments)
            raise _submit_error(f"body: {error}; the limit is {limit} segments", "body") from None
        if info.segments > limit:
            units = "septets" if info.encoding == text.GSM7 else "UTF-16 units"
            raise _submit_error(f"the text needs {info.segments} segments ({info.units} {units}, "
                                f"{'GSM-7' if info.encoding == text.GSM7 else 'UCS-2'}); the limit is {limit}: "
                                "shorten it", "body")
        return info

    def reschedule_batch(self, submission_id: int, send_at: Any) -> dict:
        """Move every scheduled message of a batch to `send_at` (see `_due`; "now" sends them at once):
        {"submission_id", "due_at", "ids"}. Raises SubmitError (nothing is moved), NotFound (no scheduled message
        in that batch)."""
        due = self._due(send_at)
        ids = self.store.reschedule_batch(submission_id, due)
        self.wake_at(due)
        return {"submission_id": submission_id, "due_at": due, "ids": ids}

    def edit_scheduled(self, message_id: int, *, send_at: Any = None, body: Any = None) -> dict:
        """Change a scheduled message's time (see `_due`; "now" sends it at once) and/or text (re-checked, its
        encoding and segments recomputed); the message afterwards. Both are checked before anything is written, and
        the store writes the change with its timeline events in one transaction: a refused edit changes nothing.
        Raises SubmitError, NotFound, Conflict (no longer scheduled)."""
        if send_at is None and body is None:
            raise _submit_error("nothing to change: give send_at or body", "send_at")
        info = self.checked_body(body) if body is not None else None
        due = self._due(send_at) if send_at is not None else None
        row = self.store.edit_scheduled(message_id, due_at=due, body=None if info is None else info.text,
                                        encoding=None if info is None else info.encoding,
                                        segments=None if info is None else info.segments)
        if due is not None:
            self.wake_at(due)
        return row

    def cancel_submission(self, submission_id: int) -> dict:
        """Cancel every message of a batch not yet sending (queued or scheduled): {"submission_id", "canceled"
        (their ids), "statuses" (how many of its messages are in each status now)}. Raises NotFound."""
        ids = self.store.cancel_submission(submission_id)
        return {"submission_id": submission_id, "canceled": ids,
                "statuses": self.store.submission_status_counts(submission_id)}

    def delete_message(self, message_id: int) -> dict:
        """Delete a message with its parts and timeline (not while it is being sent); the row it was. Raises
        NotFound, Conflict."""
        return self.store.delete_message(message_id)


__all__ = ["MAX_PAGE", "MAX_STATUS_IDS", "PAST_GRACE", "SEND_NOW", "Scheduling"]
