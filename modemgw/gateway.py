"""The façade every entry point uses (API, web UI, CLI, scheduler): submit, cancel, query, inbound and report
handling, and the events other parts listen to (webhooks, metrics, the pool's wake-ups)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modemgw import at, dispatch, numbers, pdu, text, urls
from modemgw.alerts import Alerts
from modemgw.book import AddressBook
from modemgw.errors import CmsError, ModemError
from modemgw.retention import Retention
from modemgw.rules import InboundRules
from modemgw.scheduling import Scheduling
from modemgw.settings import MAX_RECIPIENTS, GatewaySettings, Route
from modemgw.statistics import HOUR_SETTLES, Statistics
from modemgw.store import Claimed, Duplicate, NotFound, Store, StoreError
from modemgw.store.messages import SCANNED
from modemgw.templates import TemplateLibrary

if TYPE_CHECKING:
    from modemgw.modem import Modem
    from modemgw.pool import Pool
    from modemgw.pool.state import ModemState

log = logging.getLogger("modemgw.gateway")


@dataclass(frozen=True)
class SubmitRequest:
    """One submission, as every edge hands it to the gateway (API, web UI, CLI, control socket): the text (`body`)
    to `to` (a number or a list) or to `recipients` ([{"to": ..., "fields": {...}}], for templates), with its
    options. Checked by `Gateway.send`, never here (an edge passes what it was given)."""

    body: str | None = None
    to: str | list[str] | None = None
    recipients: list[dict] | None = None
    priority: int = 0
    send_at: float | dt.datetime | str | None = None
    validity: int | None = None
    route: str | None = None              # a modem's label or a group
    client_ref: str | None = None
    idempotency_key: str | None = None
    spintax: bool = False
    smart_encoding: bool = False
    api_key_id: int | None = None
    key_group: str | None = None          # the API key's group: its default route
    callback_url: str | None = None
    request_report: bool = True
    seed: int | None = None               # makes spintax choices reproducible
    groups: list[str] | None = None       # address-book groups: each member, its name and fields fill placeholders
    contacts: list[int] | None = None     # address-book contacts by id, likewise
    template: int | str | None = None     # a saved template (id or name) as the body, when no body is given
    reply_to: int | None = None           # the inbound message answered: to its sender, from the SIM it came to
    prefer_sim: int | None = None         # a modem row id to send from while it can (a conversation's SIM)
    user_id: int | None = None            # the web UI user who sent it
    smpp_user_id: int | None = None       # the SMPP user who sent it (its delivery receipt goes back there)


@dataclass(slots=True)  # a campaign makes thousands at once: no __dict__ each
class Entry:
    """One recipient as given: the raw number, the fields its placeholders take, the line of the file or list
    it came from (1-based), and where it came from ("to", "recipients", "group <name>", "contact <id>")."""

    raw: str
    fields: dict | None
    line: int | None
    source: str


class SubmitError(ValueError):
    """A submission that cannot be accepted. `field` names the input at fault, `recipient` the recipient."""

    def __init__(self, detail: str, field: str | None = None, recipient: str | None = None,
                 kind: str = "invalid-request"):
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.recipient = recipient
        self.kind = kind


class Conflict(SubmitError):
    """The idempotency key was used before with a different request."""

    def __init__(self, detail: str):
        super().__init__(detail, "Idempotency-Key", kind="idempotency-conflict")


# How a modem's status reports reach us after the report watchdog found none on its first route (pool/worker.py):
# shown by the API, `modemgw status` and the doctor.
REPORT_MODES = {
    "ds=1": "no status report came with stored reports (CNMI ds=2); switched to direct reports (ds=1)",
    "poll": "status reports are stored but never announced (+CDSI); the report storage is polled",
    "none": "no status report comes from this modem or its network: messages stay 'sent', never 'delivered'",
}

MAX_LABEL = 40  # characters of a modem's label or group (API and web UI alike)
MAX_LIMIT = 1_000_000_000  # the largest rate limit or quota a modem may be given
MODEM_FIELDS = ("enabled", "label", "group", "rate_per_minute", "quota_day", "quota_month")
SECRET_FIELDS = {"password", "pin", "puk", "secret", "token", "key", "api_key"}  # never written to the audit log
# Message ids a page of a list with a filter no index serves reads at most (`Gateway.message_page`): ~20 ms for a
# text search on the development machine, ~5 ms for an API key.
SCAN_WINDOW = 10_000
MAX_AT_COMMAND = 512  # characters of one AT command line from the API, the UI or the console


class ModemRequestError(Exception):
    """A USSD or AT request that got no answer from its modem. `reason`: "unattached" (no worker of this gateway
    drives that modem), "modem" (it is offline, or refused: the detail says what it said), or "timeout"."""

    def __init__(self, detail: str, reason: str):
        super().__init__(detail)
        self.detail = detail
        self.reason = reason


def sent_today(row: dict) -> int:
    """Messages a modem sent today (local date), from its row: the day's counter only counts on its own day."""
    return (row.get("sent_day") or 0) if row.get("day_key") == time.strftime("%Y-%m-%d") else 0


def at_command_problem(command: str) -> str | None:
    """Why `command` may not go to a modem from the API, the UI console or `modemgw console`, or None when it may.
    Judged as the modem reads it (spaces dropped, any case: `at+cm gs=20` is AT+CMGS=20)."""
    if len(command) > MAX_AT_COMMAND:
        return f"'command' is longer than {MAX_AT_COMMAND} characters"
    upper = at.normalize_command(command)
    if not upper.startswith("AT") or any(char < " " or char == "\x7f" for char in command):
        return "'command' must be one AT command line, e.g. AT+CSQ"
    if any(name in upper for name in ("+CMGS", "+CMGW", "+CMSS", "+CMGC")) or _cnma_with_pdu(upper):
        return "commands that wait for a '> ' prompt (or send) are not available here; use the messages API"
    return None


def _cnma_with_pdu(normal: str) -> bool:
    """`AT+CNMA=<n>,<length>`: an acknowledgement that carries a PDU, after a prompt."""
    position = normal.find("+CNMA=")
    if position < 0:
        return False
    params = normal[position + len("+CNMA="):].split(";")[0].split(",")
    return len(params) > 1 and params[1] != ""


def modem_changes_problem(changes: dict) -> tuple[str, str] | None:
    """(field, why) when `changes` to a modem break a rule, else None: one label rule (1-40 characters, not
    blank), a group of at most 40 characters (None removes it), limits from 1 to 1000000000 (None removes them)."""
    for name in changes:
        if name not in MODEM_FIELDS:
            return name, f"unknown field '{name}' (fields: {', '.join(MODEM_FIELDS)})"
    for name in ("rate_per_minute", "quota_day", "quota_month"):
        if changes.get(name) is not None and not 1 <= changes[name] <= MAX_LIMIT:
            return name, f"'{name}' must be from 1 to {MAX_LIMIT} (null removes the limit)"
    if "label" in changes and not 0 < len((changes["label"] or "").strip()) <= MAX_LABEL:
        return "label", f"'label' must be 1 to {MAX_LABEL} characters"
    if changes.get("group") is not None and len(changes["group"]) > MAX_LABEL:
        return "group", f"'group' must be at most {MAX_LABEL} characters"
    return None


def _scoped(idempotency_key: str | None, api_key_id: int | None) -> str | None:
    """An Idempotency-Key belongs to the API key that sent it (another key's request with the same key is another
    request, and must never see the first one's result); local submits (UI, CLI) share one scope."""
    if not idempotency_key:
        return None
    return f"key{api_key_id}:{idempotency_key}" if api_key_id is not None else f"local:{idempotency_key}"


def _epoch(value: float | dt.datetime | str | None, what: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        number = float(value)
        if not 0 <= number <= 253402300799:  # up to 9999-12-31; also refuses NaN and infinity
            raise SubmitError(f"{what} {value!r} is not a time (Unix seconds, or ISO 8601)", what)
        return number
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise SubmitError(f"{what} {value!r} is not an ISO 8601 time (e.g. 2026-12-01T09:30:00+01:00)",
                              what) from None
    if value.tzinfo is None:
        value = value.astimezone()
    try:
        return value.timestamp()
    except (OverflowError, ValueError, OSError):
        raise SubmitError(f"{what} {value.isoformat()} is out of range", what) from None


# --- send outcomes: the decision (pure) ------------------------------------------------------------------------


@dataclass(frozen=True)
class FailureOutcome:
    """What becomes of a claimed message whose send failed: failed for good (`retry` False), or back to the queue
    `delay` seconds from now. `count_attempt`: the attempt counts against max_attempts; `possible_duplicate`: its
    PDU may have left the modem; `pin`: its first parts went out through this modem, so the rest must too;
    `avoid`: another modem should take the retry when one can (the modem failed it, not the database or a bug)."""

    retry: bool
    reason: str
    code: int | None = None
    delay: float = 0.0
    count_attempt: bool = False
    possible_duplicate: bool = False
    pin: bool = False
    avoid: bool = True


def failure_outcome(claimed: Claimed, error: Exception, may_have_left: bool,
                    settings: GatewaySettings) -> FailureOutcome:
    """The rule of docs/design.md "Error classes" for a send of `claimed` that failed with `error`: a message that
    cannot be encoded fails; a refusal of the message (`kind` message) spends an attempt and, when temporary,
    retries after a backoff; the network's or the modem's side (or a bug, or the database) puts it back at once
    without spending one, unless its PDU `may_have_left` the modem: then it is flagged possible_duplicate and
    counted. A message whose counted attempts reach max_attempts fails."""
    code = getattr(error, "code", None)
    reason = str(error) or type(error).__name__
    if isinstance(error, pdu.PduError):
        return FailureOutcome(retry=False, reason=f"cannot encode: {error}", code=code, count_attempt=True)
    if isinstance(error, CmsError):  # the modem answered: this part did not go out
        message_level = error.kind == "message"
        retry, count, duplicate = error.temporary if message_level else True, message_level, False
    else:  # a timeout, a lost port, a reply that makes no sense; or the database, or a bug
        retry, count, duplicate = True, may_have_left, may_have_left
    if duplicate:
        reason = f"{reason} (after its PDU was written: it may have been sent)"
    if not retry or count and claimed.attempts >= settings.max_attempts:
        if retry:
            reason = f"gave up after {claimed.attempts} attempts: {reason}"
        return FailureOutcome(retry=False, reason=reason, code=code, count_attempt=count,
                              possible_duplicate=duplicate)
    delay = dispatch.retry_delay(claimed.attempts, settings.retry_base, settings.retry_max) \
        if count and not duplicate else 0.0
    return FailureOutcome(retry=True, reason=reason, code=code, delay=delay, count_attempt=count,
                          possible_duplicate=duplicate, pin=bool(claimed.sent_parts),
                          avoid=isinstance(error, ModemError))


# --- end of send outcomes (pure) -------------------------------------------------------------------------------


def _contact_fields(contact: dict) -> dict:
    """The placeholders a contact fills: its free fields, `name`, `number`, and `first_name` (its own field when it
    has one, else the first word of its name)."""
    name = contact.get("name") or ""
    return {"first_name": name.split(" ")[0] if name else "", **(contact.get("fields") or {}), "name": name,
            "number": contact["number"]}


class Gateway(AddressBook, TemplateLibrary, Scheduling, Statistics, InboundRules, Alerts, Retention):
    """Business rules over the store. Thread-safe: every call uses the calling thread's connection."""

    scan_window = SCAN_WINDOW  # ids a page of a search reads at most (`message_page`; tests make it small)

    def __init__(self, store: Store, settings: GatewaySettings | None = None):
        self.store = store
        self.settings = settings or GatewaySettings()
        self._listeners: list[Callable[[str, dict], None]] = []
        self._recorders: list[Callable[[str, dict], None]] = []  # subscribe(recorder=True)
        self.wake: Callable[[int], None] = lambda count: None  # the pool installs its own
        self.wake_at: Callable[[float], None] = lambda when: None
        self.modem_labels: Callable[[], dict[str, str | None]] = self._labels_from_store
        self.pool: Pool | None = None  # attach_pool: the modems' workers, for the modem operations

    def attach_pool(self, pool: Pool) -> None:
        """The pool whose workers drive this gateway's modems (states, USSD and AT requests, row changes)."""
        self.pool = pool

    # --- the audit log ---------------------------------------------------------------------------------

    def audit(self, action: str, *, actor: str, source: str | None = None, target: str | None = None,
              detail: dict | None = None, ok: bool = True) -> None:
        """Record an administrative action or a login: `action` ("key.create", "login.failure", "modem.at", ...),
        who (`actor`: "user alice", "key ops (#3)", "cli"), from where (`source`: the client's address), on what
        (`target`), with what (`detail`; secrets are dropped and PINs in AT commands masked) and whether it was
        allowed (`ok`). A database that refuses the entry is logged, never the caller's failure."""
        clean = {key: (at.redact(value) if key == "command" and isinstance(value, str) else value)
                 for key, value in (detail or {}).items() if key.lower() not in SECRET_FIELDS}
        try:
            self.store.add_audit(action, actor, source, target, clean or None, ok)
        except StoreError as error:
            log.error("audit entry %s by %s on %s not recorded: %s", action, actor, target, error)

    def audit_log(self, limit: int = 100, **filters: Any) -> list[dict]:
        """Audit entries, newest first (`AuditStore.audit_entries` filters: before, action, actor, since, until,
        ok)."""
        return self.store.audit_entries(limit, **filters)

    # --- events ------------------------------------------------------------------------------------------

    def subscribe(self, listener: Callable[[str, dict], None], *, recorder: bool = False) -> None:
        """`listener(event, data)` for message.sent/delivered/undelivered/failed/expired, inbound.received,
        modem.online/offline/quota_reached. Listeners must not block.

        A `recorder` writes the event's outbox rows (webhook deliveries, SMPP receipts): for the message events it
        is called inside the transaction that records the event (`_recording`), so that the two commit together
        and a crash cannot keep the one and lose the other; its store writes nest there, and it wakes its sender
        with `store.after_commit` (a sender woken before the commit would find nothing). The other listeners are
        called after the commit, when what they are told about can be read."""
        (self._recorders if recorder else self._listeners).append(listener)

    def emit(self, event: str, data: dict) -> None:
        """Tell the recorders, then the other listeners, about an event already committed."""
        self._notify(self._recorders + self._listeners, event, data)

    @staticmethod
    def _notify(listeners: list[Callable[[str, dict], None]], event: str, data: dict) -> None:
        for listener in listeners:
            try:
                listener(event, data)
            except Exception:  # one listener's fault must not stop a send or the others
                log.exception("listener failed for %s", event)

    @contextmanager
    def _recording(self, durable: bool = False) -> Iterator[list[tuple[str, dict]]]:
        """One store transaction for a change and the events it causes: the block records the change and
        appends its events (name, data) to the list it is given; the recorders write their outbox rows in the
        same transaction, the other listeners hear of the events after the commit. Raises StoreError (nothing
        recorded, no event told)."""
        events: list[tuple[str, dict]] = []
        with self.store.transaction(durable=durable):
            yield events
            for event, data in events:
                self._notify(self._recorders, event, data)
        for event, data in events:
            self._notify(self._listeners, event, data)

    # --- USSD ------------------------------------------------------------------------------------------

    def ussd_problem(self, code: str, admin: bool) -> str | None:
        """Why `code` may not be sent (by an admin when `admin`), or None. USSD moves money on many networks
        (transfers, bundles): only admins may send codes outside `ussd_allow`."""
        if not code or len(code) > 64 or any(char not in "0123456789*#+" for char in code):
            return "the USSD code must be 1-64 of the characters 0-9 * # +, such as *100#"
        if not admin and code not in self.settings.ussd_allow:
            allowed = ", ".join(self.settings.ussd_allow) or "none"
            return f"USSD {code} is not in the gateway's ussd_allow list (allowed: {allowed}); an admin may send it"
        return None

    # --- submit ----------------------------------------------------------------------------------------

    def _labels_from_store(self) -> dict[str, str | None]:
        return {row["label"]: row["grp"] for row in self.store.modems()}

    def _route(self, recipient: str, hint: str | None, labels: dict[str, str | None],
               key_group: str | None) -> tuple[str | None, str | None]:
        if hint:
            if hint in labels:
                return hint, None
            if hint in set(labels.values()) or any(route.group == hint for route in self.settings.routes):
                return None, hint
            raise SubmitError(f"no modem or modem group is called {hint!r}", "modem")
        matches = [route for route in self.settings.routes if recipient.startswith(route.prefix)]
        if matches:
            best = max(matches, key=lambda route: len(route.prefix))
            return best.modem, best.group
        return None, key_group

    def submit(self, body: str | None = None, to: str | list[str] | None = None, **options: Any) -> dict:
        """The short form of `send` for scripts and tests: `submit("Hi", "+44...", priority=5)`."""
        return self.send(SubmitRequest(body, to, **options))

    def send(self, submission: SubmitRequest) -> dict:
        """Validate, normalise and queue a message to one or many recipients in one transaction.

        Returns {"submission_id", "messages": [...], "skipped": [...], "segments"}. Raises SubmitError (with the
        field and recipient at fault), Conflict, or StoreError (nothing stored).
        """
        body, to, recipients, priority = submission.body, submission.to, submission.recipients, submission.priority
        send_at, validity, route, client_ref = (submission.send_at, submission.validity, submission.route,
                                                submission.client_ref)
        spintax, smart_encoding, request_report = submission.spintax, submission.smart_encoding, \
            submission.request_report
        idempotency_key, api_key_id, callback_url = (submission.idempotency_key, submission.api_key_id,
                                                     submission.callback_url)
        request = {"body": body, "to": to, "recipients": recipients, "priority": priority,
                   "send_at": send_at if not isinstance(send_at, dt.datetime) else send_at.isoformat(),
                   "validity": validity, "route": route, "client_ref": client_ref, "spintax": spintax,
                   "smart_encoding": smart_encoding, "request_report": request_report, "callback_url": callback_url,
                   "groups": submission.groups, "contacts": submission.contacts, "template": submission.template,
                   "reply_to": submission.reply_to, "prefer_sim": submission.prefer_sim}
        if idempotency_key is not None and not 0 < len(idempotency_key) <= 255:
            raise SubmitError("Idempotency-Key must be 1 to 255 characters", "idempotency_key")
        key = _scoped(idempotency_key, api_key_id)
        # only a replay compares requests: without a key there is nothing to hash (or to keep: insert_messages)
        body_hash = hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest() if key \
            else ""
        if key:
            previous = self.store.find_submission(key)
            if previous is not None:
                if previous["body_hash"] != body_hash:
                    raise Conflict(f"Idempotency-Key {idempotency_key!r} was used for a different request")
                if previous["result"]:
                    return json.loads(previous["result"]) | {"idempotent_replay": True}
        prepared, skipped, _, _ = self._prepare(submission)

        def result_for(submission_id: int, ids: list[int]) -> dict:
            return {
                "submission_id": submission_id,
                "messages": [{"id": message_id, "to": row["recipient"], "status": row["status"],
                              "segments": row["segments"], "encoding": row["encoding"]}
                             for message_id, row in zip(ids, prepared, strict=False)],
                "skipped": skipped,
                "segments": sum(row["segments"] for row in prepared),
            }

        try:
            result = self.store.insert_messages(prepared, key, body_hash, api_key_id, result_for)
        except Duplicate:  # the idempotency key: a concurrent request with the same key won
            if key:
                previous = self.store.find_submission(key)
                if previous is not None and previous["body_hash"] == body_hash and previous["result"]:
                    return json.loads(previous["result"]) | {"idempotent_replay": True}
                raise Conflict(f"Idempotency-Key {idempotency_key!r} was used for a different request") from None
            raise
        due_now = sum(1 for row in prepared if row["status"] == "queued")
        if due_now:
            self.wake(due_now)
        if len(prepared) > due_now:
            self.wake_at(min(row["due_at"] for row in prepared if row["status"] == "scheduled"))
        return result

    def plan(self, submission: SubmitRequest) -> dict:
        """What `send` would queue for `submission`, row by row, queuing nothing and not stopping at a bad row:
        {"accepted": [{"line", "to", "text", "segments", "encoding", "source", "fields"}], "rejected": [{"line",
        "to", "reason"}], "skipped": [{"line", "to", "reason"}] (opted out, repeated), "segments" (of the accepted),
        "max_segments", "encoding" (of the first accepted, else None)}. Raises SubmitError only for what concerns
        the whole request (no body, a bad option, an unknown group or route, too many recipients)."""
        rows, skipped, rejected, meta = self._prepare(submission, collect=True)
        accepted = [{"line": info.line, "to": row["recipient"], "text": row["body"], "segments": row["segments"],
                     "encoding": row["encoding"], "source": info.source, "fields": info.fields or {}}
                    for row, info in zip(rows, meta, strict=True)]
        return {"accepted": accepted, "rejected": rejected, "skipped": skipped,
                "segments": sum(row["segments"] for row in rows), "max_segments": self.settings.max_segments,
                "encoding": rows[0]["encoding"] if rows else None}

    def _body(self, submission: SubmitRequest) -> tuple[str, bool]:
        """The text to send and whether it has spintax: the request's body, or its saved template's."""
        body, spintax = submission.body, submission.spintax
        if submission.template is not None:
            if body not in (None, ""):
                raise SubmitError("give either 'body' or 'template', not both", "template")
            if not isinstance(submission.template, (int, str)) or isinstance(submission.template, bool):
                raise SubmitError("template must be a saved template's id or name", "template")
            try:
                saved = self.template(submission.template)
            except NotFound:
                raise SubmitError(f"no saved template {submission.template!r}", "template") from None
            return saved["body"], spintax or bool(saved["spintax"])
        if body is None or not isinstance(body, str) or body == "":
            raise SubmitError("body is empty: give the message text in 'body'", "body")
        return body, spintax

    def _prepare(self, submission: SubmitRequest, collect: bool = False
                 ) -> tuple[list[dict], list[dict], list[dict], list[Entry]]:
        """The rows to insert, the recipients skipped (opted out, repeated), the recipients rejected (only with
        `collect`; else the first bad one raises SubmitError) and each row's entry. Raises SubmitError."""
        priority, send_at, validity, route, client_ref = (submission.priority, submission.send_at,
                                                          submission.validity, submission.route, submission.client_ref)
        smart_encoding, api_key_id = submission.smart_encoding, submission.api_key_id
        key_group, callback_url, request_report, seed = (submission.key_group, submission.callback_url,
                                                         submission.request_report, submission.seed)
        body, spintax = self._body(submission)
        try:  # the size first: nothing below may walk a body that no SMS could carry
            text.check_length(body, "body")
        except text.TextError as error:
            raise SubmitError(str(error), "body") from None
        if any("\ud800" <= char <= "\udfff" for char in body):
            raise SubmitError("body has a lone UTF-16 surrogate (a broken emoji); send valid Unicode", "body")
        for name, value, limit in (("client_ref", client_ref, 128), ("modem", route, 64)):
            if value is not None and (not isinstance(value, str) or len(value) > limit):
                raise SubmitError(f"{name} must be a string of at most {limit} characters", name)
        if callback_url is not None:
            try:
                urls.check_callback(callback_url, private=self.settings.callback_private_destinations)
            except urls.UrlError as error:
                raise SubmitError(f"callback_url {error}", "callback_url") from None
        reply = self._replied(submission.reply_to)
        entries = self._entries(submission, reply)
        if not isinstance(priority, int) or isinstance(priority, bool) or not -100 <= priority <= 100:
            raise SubmitError("priority must be a whole number from -100 to 100 (higher goes first)", "priority")
        now = time.time()
        due = _epoch(send_at, "send_at")
        if validity is not None and (not isinstance(validity, int) or not 0 < validity <= 63 * 7 * 86400):
            raise SubmitError("validity must be a number of seconds from 1 to 38102400 (63 weeks, the most an "
                              "SMS can carry)", "validity")
        start = max(now, due or now)
        expires = start + validity if validity else None
        templated = any(entry.fields is not None for entry in entries)
        try:  # the body's size is checked first, before any parsing (text.MAX_BODY_CHARS)
            renderer = text.Renderer(body, spintax=spintax, templates=templated)
        except text.TextError as error:
            raise SubmitError(f"body: {error}", "body") from None
        labels = self.modem_labels()
        if route:
            self._route("", route, labels, key_group)  # an unknown modem or group concerns every recipient
        rng = random.Random(seed)
        rows: list[dict] = []
        meta: list[Entry] = []
        skipped: list[dict] = []
        rejected: list[dict] = []

        def refuse(entry: Entry, number: str, reason: str, field: str) -> None:
            if not collect:
                where = f"line {entry.line}" if entry.source == "recipients" and entry.line else \
                    f"recipient {entry.line}" if entry.source in ("to", "recipients") else entry.source
                raise SubmitError(f"{where}: {reason}", field, number)
            rejected.append({"line": entry.line, "to": number, "reason": reason, "source": entry.source})

        normalized: list[tuple[str, Entry]] = []
        for entry in entries:
            try:
                normalized.append((numbers.normalize(entry.raw, self.settings.default_region,
                                                     self.settings.strict_numbers), entry))
            except numbers.NumberError as error:
                refuse(entry, str(entry.raw), str(error), "to")
        opted_out = self.store.optouts_among([number for number, _ in normalized])
        preferred = self._preferred_sims([number for number, _ in normalized], submission, reply)
        seen: set = set()
        cache: dict[str, tuple[str, text.TextInfo]] = {}
        for number, entry in normalized:
            if number in opted_out:
                skipped.append({"to": number, "reason": "opted out", "line": entry.line})
                continue
            try:
                rendered = renderer.render(entry.fields, rng)
            except text.TemplateError as error:
                have = ", ".join(sorted(str(key) for key in (entry.fields or {}))) or "no fields"
                missing = ", ".join("{" + name + "}" for name in error.missing)
                refuse(entry, number, f"no value for {missing} (this recipient has {have})", "recipients")
                continue
            identity = number if entry.source != "recipients" else (number, rendered)
            if identity in seen:
                skipped.append({"to": number, "reason": "duplicate recipient in this request", "line": entry.line})
                continue
            seen.add(identity)
            if rendered not in cache:
                try:
                    info = text.info(rendered, smart=smart_encoding)
                except text.TextError as error:  # longer than any SMS (255 segments)
                    refuse(entry, number, f"{error}; the limit is {self.settings.max_segments} segments", "body")
                    continue
                cache[rendered] = (info.text, info)
            sent_text, info = cache[rendered]
            if not sent_text.strip():
                refuse(entry, number, "the message text is empty after filling the template", "body")
                continue
            if info.segments > self.settings.max_segments:
                units = "septets" if info.encoding == "gsm7" else "UTF-16 units"
                refuse(entry, number, f"{'the text' if templated else 'body'} needs {info.segments} segments "
                                      f"({info.units} {units}, {info.encoding}); the limit is "
                                      f"{self.settings.max_segments}", "body")
                continue
            route_modem, route_group = self._route(number, route, labels, key_group)
            rows.append({
                "recipient": number, "body": sent_text, "encoding": info.encoding, "segments": info.segments,
                "status": "scheduled" if due and due > now else "queued", "priority": priority,
                "due_at": start, "expires_at": expires, "created_at": now, "updated_at": now,
                "client_ref": client_ref, "api_key_id": api_key_id, "route_modem": route_modem,
                "route_group": route_group, "request_report": 1 if request_report else 0, "validity": validity,
                "callback_url": callback_url, "prefer_modem_id": self._allowed(preferred.get(number), route_modem,
                                                                               route_group),
                "reply_to": reply["id"] if reply is not None else None, "user_id": submission.user_id,
                "smpp_user_id": submission.smpp_user_id,
                # no "submission_id": the store adds it as it inserts, not to the dicts (21 keys: a 22nd doubles
                # each dict, 464 -> 832 bytes, ~1.8 MB for a 5,000-recipient submit)
            })
            meta.append(entry)
        if not rows and not skipped and not rejected:
            raise SubmitError("no recipients", "to")
        return rows, skipped, rejected, meta

    def _replied(self, reply_to: int | None) -> dict | None:
        """The inbound message a submission answers (its sender and the SIM it came to)."""
        if reply_to is None:
            return None
        if not isinstance(reply_to, int) or isinstance(reply_to, bool):
            raise SubmitError("reply_to must be an inbound message's id", "reply_to")
        try:
            return self.store.inbox_message(reply_to)
        except NotFound:
            raise SubmitError(f"no inbound message {reply_to} to reply to", "reply_to") from None

    def _preferred_sims(self, recipients: list[str], submission: SubmitRequest, reply: dict | None) -> dict[str, int]:
        """The SIM (modem row id) each recipient's message should leave from while it can: the SIM a reply's
        message came to, the conversation's SIM the request names, else the SIM the number last wrote to within
        `same_sim_days`. An explicit route (a modem or group) decides instead."""
        if submission.route:
            return {}
        if reply is not None and reply["modem_id"] is not None:
            return dict.fromkeys(recipients, reply["modem_id"])
        if submission.prefer_sim is not None:
            if not isinstance(submission.prefer_sim, int) or isinstance(submission.prefer_sim, bool):
                raise SubmitError("prefer_sim must be a modem's id", "prefer_sim")
            return dict.fromkeys(recipients, submission.prefer_sim)
        if self.settings.same_sim_days <= 0 or not recipients:
            return {}
        return self.store.last_inbound_sims(recipients, time.time() - self.settings.same_sim_days * 86400)

    def _allowed(self, modem_id: int | None, route_modem: str | None, route_group: str | None) -> int | None:
        """`modem_id` when the message's route lets that modem send it (else no preference: it would wait for a
        modem that may never take it)."""
        if modem_id is None:
            return None
        if route_modem is None and route_group is None:
            return modem_id
        try:
            row = self.store.modem(modem_id)
        except NotFound:
            return None
        if (route_modem is None or row["label"] == route_modem) and (route_group is None or row["grp"] == route_group):
            return modem_id
        return None

    def _entries(self, submission: SubmitRequest, reply: dict | None) -> list[Entry]:
        """Every recipient of a request: its numbers (`to`), its rows (`recipients`), its groups' and contacts'
        members (whose name and fields fill placeholders), or the sender a reply answers."""
        to, recipients = submission.to, submission.recipients
        if to is not None and recipients is not None:
            raise SubmitError("give either 'to' or 'recipients', not both", "to")
        entries: list[Entry] = []
        if reply is not None:
            if to is not None or recipients is not None:
                raise SubmitError("a reply goes to the sender of the message it answers: leave out 'to'", "to")
            entries.append(Entry(reply["sender"], None, None, "reply"))
        if recipients is not None:
            if not isinstance(recipients, list) or not recipients:
                raise SubmitError("'recipients' must be a non-empty list of {to, fields}", "recipients")
            for position, item in enumerate(recipients):
                if not isinstance(item, dict) or "to" not in item:
                    raise SubmitError(f"recipients[{position}] must be an object with 'to'", "recipients")
                fields = item.get("fields") or {}
                if not isinstance(fields, dict):
                    raise SubmitError(f"recipients[{position}].fields must be an object", "recipients")
                line = item.get("line")
                entries.append(Entry(item["to"], fields, line if isinstance(line, int) and not isinstance(
                    line, bool) else position + 1, "recipients"))
        elif isinstance(to, str):
            entries.append(Entry(to, None, 1, "to"))
        elif isinstance(to, list) and to:
            entries.extend(Entry(item, None, position + 1, "to") for position, item in enumerate(to))
        elif to is not None:
            raise SubmitError("'to' must be a phone number or a list of them", "to")
        entries.extend(self._book_entries(submission.groups, submission.contacts))
        if not entries:
            raise SubmitError("'to' is missing: give a phone number or a list of them (or groups or contacts)", "to")
        if len(entries) > self.settings.max_recipients:
            raise SubmitError(f"{len(entries)} recipients; at most {self.settings.max_recipients} in one request",
                              "to")
        for entry in entries:
            if not isinstance(entry.raw, str):
                raise SubmitError(f"recipient {entry.raw!r} must be a string", "to", str(entry.raw))
        return entries

    def _book_entries(self, groups: list[str] | None, contacts: list[int] | None) -> list[Entry]:
        """The members of address-book `groups` and the `contacts`, each with its name and fields."""
        entries: list[Entry] = []
        if groups is not None:
            if not isinstance(groups, list) or not all(isinstance(name, str) and 0 < len(name) <= 100
                                                       for name in groups):
                raise SubmitError("'groups' must be a list of group names", "groups")
            for name in dict.fromkeys(groups):
                try:
                    members = self.store.group_contacts(name)
                except NotFound:
                    raise SubmitError(f"no contact group called {name!r}", "groups") from None
                entries.extend(Entry(contact["number"], _contact_fields(contact), None, f"group {name}")
                               for contact in members)
        if contacts is not None:
            if not isinstance(contacts, list) or not all(isinstance(item, int) and not isinstance(item, bool)
                                                         for item in contacts):
                raise SubmitError("'contacts' must be a list of contact ids", "contacts")
            try:
                found = self.store.contacts_by_ids(list(dict.fromkeys(contacts)))
            except NotFound as error:
                raise SubmitError(str(error), "contacts") from None
            entries.extend(Entry(contact["number"], _contact_fields(contact), None, f"contact {contact['id']}")
                           for contact in found)
        return entries

    # --- queries and changes ----------------------------------------------------------------------------

    def message(self, message_id: int, timeline: bool = True) -> dict:
        """A message with its parts, and (with `timeline`) its events. Raises NotFound."""
        message = self.store.message(message_id)
        if timeline:
            message["timeline"] = self.store.events(message_id=message_id)
        return message

    def cancel(self, message_id: int) -> str:
        return self.store.cancel(message_id)

    # --- the edges' façade: messages, inbox, opt-outs, modems, keys, webhooks, counts ----------------------------
    # API, web UI, CLI, metrics and the control socket read and change the gateway through these methods alone:
    # never through the store or the pool's workers. Each raises NotFound for an unknown id, StoreError when the
    # database fails, SubmitError for a request that breaks a rule.

    def messages(self, limit: int, *, before: int | None = None, **filters: Any) -> list[dict]:
        """Up to `limit` messages, newest first, with ids below `before`; filters: status, client_ref, modem_id,
        recipient, since, until."""
        return self.store.recent_messages(limit, before=before, **filters)

    def message_page(self, limit: int, *, before: int | None = None, after: int | None = None,
                     **filters: Any) -> tuple[list[dict], int | None]:
        """A page of `messages` (newest first; with `after`, the `limit` messages just above that id), and where
        a search stopped: with a filter no index serves (a text, an API key, a web UI user), a page reads at
        most `scan_window` (SCAN_WINDOW) message ids, so that a search matching nothing answers in milliseconds,
        not a second or more over a million messages. Returns (rows, scanned_to): `scanned_to` is set when the
        window ended before `limit` rows were found and messages remain beyond it: the cursor to go on from (ids
        below it; with `after`, above it). The API's `next_cursor` and the web UI's "Search older" are that
        cursor."""
        if not any(filters.get(name) is not None for name in SCANNED):
            return self.store.recent_messages(limit, before=before, after=after, **filters), None
        ids = self.store.message_id_range()
        if ids is None:
            return [], None
        lowest, highest = ids
        # a time range is an id range: the windows go over it only
        if filters.get("since") is not None:
            lowest = max(lowest, self.store.first_id_created(filters["since"]))
        if filters.get("until") is not None:
            highest = min(highest, self.store.first_id_created(filters["until"]) - 1)
        if lowest > highest:
            return [], None
        if after is not None:
            top = min(after + self.scan_window, highest)
            rows = self.store.recent_messages(limit, after=after, before=top + 1, **filters)
            return rows, top if len(rows) < limit and top < highest else None
        start = highest + 1 if before is None else min(before, highest + 1)
        floor = max(lowest, start - self.scan_window)
        rows = self.store.recent_messages(limit, before=start, from_id=floor, **filters)
        return rows, floor if len(rows) < limit and floor > lowest else None

    def inbox(self, limit: int, *, before: int | None = None, sender: str | None = None) -> list[dict]:
        """Up to `limit` inbound messages, newest first, with ids below `before` (from `sender` when given)."""
        return self.store.inbox(limit, before=before, sender=sender)

    def inbox_message(self, inbox_id: int) -> dict:
        return self.store.inbox_message(inbox_id)

    def delete_inbox_message(self, inbox_id: int) -> None:
        self.store.delete_inbox_message(inbox_id)

    def normalize_number(self, number: str, field: str = "number") -> str:
        """`number` in E.164, as the opt-out list keeps it. Raises SubmitError naming `field`."""
        try:
            return numbers.normalize(number, self.settings.default_region)
        except numbers.NumberError as error:
            raise SubmitError(str(error), field) from None

    # (optouts() and queue_depth() are in the web UI façade below)

    def opt_out(self, number: str, source: str, note: str | None = None) -> tuple[str, bool]:
        """Put `number` (normalised once, here) on the opt-out list: (the number, whether it is new there).
        Raises SubmitError for a number that does not parse."""
        normalized = self.normalize_number(number)
        return normalized, self.store.add_optout(normalized, source, note)

    def opt_in(self, number: str) -> str:
        """Take `number` (normalised first) off the opt-out list and return it normalised. Raises SubmitError,
        NotFound when it is not there."""
        normalized = self.normalize_number(number)
        if not self.store.remove_optout(normalized):
            raise NotFound(f"{normalized} is not on the opt-out list")
        return normalized

    def status_counts(self) -> dict[str, int]:
        """Messages by status."""
        return self.store.status_counts()

    # modems: the row (label, limits, counters) with what its worker says now

    def modem_states(self) -> list[ModemState]:
        """What each worker of the pool says about its modem now (none before a pool is attached)."""
        return self.pool.states() if self.pool is not None else []

    def find_modem(self, name: str) -> ModemState | None:
        """The modem of this gateway whose label, IMEI or device path is `name`."""
        return self.pool.find(name) if self.pool is not None else None

    def _with_state(self, row: dict) -> dict:
        state = self.pool.state_of(row["id"]) if self.pool is not None else None
        live = state.observed() if state is not None else {}  # the health check writes only what changed
        return row | live | {"state": state.state if state is not None else "offline",
                      "online": state is not None and state.live, "sent_today": sent_today(row)}

    def modems_now(self) -> list[dict]:
        """Every modem's row, with `state` (its worker's, "offline" without one), `online` (it may take messages
        now) and `sent_today` (computed here alone)."""
        return [self._with_state(row) for row in self.store.modems()]

    def modem_now(self, modem_id: int) -> dict:
        """One modem as `modems_now()` shows it. Raises NotFound."""
        return self._with_state(self.store.modem(modem_id))

    def modems_online(self) -> tuple[int, int]:
        """(modems that may take messages now, modems of the pool)."""
        states = self.modem_states()
        return sum(1 for state in states if state.live), len(states)

    def update_modem(self, modem_id: int, **changes: Any) -> dict:
        """Change a modem's `enabled`, `label`, `group` or limits (`rate_per_minute`, `quota_day`,
        `quota_month`; None removes a limit or the group) and let its worker see it. Returns the modem as
        `modem_now()` shows it. Raises SubmitError (a rule; kind "conflict" for a label another modem has),
        NotFound."""
        refusal = modem_changes_problem(changes)
        if refusal is not None:
            raise SubmitError(refusal[1], refusal[0])
        fields = {("grp" if name == "group" else name): (int(value) if isinstance(value, bool) else value)
                  for name, value in changes.items()}
        try:
            row = self.store.update_modem(modem_id, **fields)
        except Duplicate:  # the only unique field one may set here is the label
            raise SubmitError(f"another modem is already labelled {changes.get('label')!r}", "label",
                              kind="conflict") from None
        if self.pool is not None:
            try:
                self.pool.refresh(modem_id)
            except KeyError:  # no worker drives it now: it reads its row when it attaches
                pass
        return self._with_state(row)

    def run_on_modem(self, modem_id: int, function: Callable[[Modem], Any], what: str,
                     timeout: float = 60.0) -> Any:
        """`function(modem)` on the modem's own worker (its port has one owner). Raises NotFound,
        ModemRequestError."""
        self.store.modem(modem_id)
        if self.pool is None:
            raise ModemRequestError(f"modem {modem_id} is not attached to this gateway", "unattached")
        try:
            return self.pool.run_on(modem_id, function, timeout=timeout)
        except KeyError:
            raise ModemRequestError(f"modem {modem_id} is not attached to this gateway", "unattached") from None
        except ModemError as error:
            raise ModemRequestError(f"{what}: {error}", "modem") from None
        except TimeoutError:
            raise ModemRequestError(f"{what}: the modem did not answer in time", "timeout") from None

    def ussd(self, modem_id: int, code: str, *, admin: bool, by: str, actor: str | None = None,
             source: str = "local") -> Any:
        """Send USSD `code` on the modem and return its reply (`status`, `text`); the event log says `by` whom,
        the audit log (`modem.ussd`, refused or failed ones too) who (`actor`, else `by`) from where (`source`:
        the client's address; "local" for the control socket and scripts).
        Raises SubmitError (kind "forbidden" for a code outside ussd_allow), NotFound, ModemRequestError."""
        target, shown = f"modem #{modem_id}", code[:64]
        refusal = self.ussd_problem(code, admin=admin)
        try:
            if refusal:
                # a well-formed code that only an admin may send is forbidden to this caller, not invalid
                forbidden = self.ussd_problem(code, admin=True) is None
                raise SubmitError(refusal, "code", kind="forbidden" if forbidden else "invalid-request")
            reply = self.run_on_modem(modem_id, lambda modem: modem.ussd(code), f"USSD {code}")
        except (SubmitError, NotFound, ModemRequestError) as error:
            self.audit("modem.ussd", actor=actor or by, source=source, target=target, ok=False,
                       detail={"code": shown, "error": getattr(error, "detail", None) or str(error)})
            raise
        self.store.log_event("modem.ussd", modem_id=modem_id, code=code, status=reply.status, by=by)
        self.audit("modem.ussd", actor=actor or by, source=source, target=target,
                   detail={"code": shown, "status": reply.status})
        return reply

    def at_command(self, modem_id: int, command: str, *, timeout: float = 10.0, wait: float = 60.0, by: str,
                   actor: str | None = None, source: str = "local", **audit: Any) -> Any:
        """Run one AT command line on the modem (at most 60 s) and return its reply (`lines`, `final`,
        `elapsed`), waiting `wait` seconds for the worker; the event log keeps it and `by` whom, with `audit` (e.g.
        the key's name), and the audit log (`modem.at`, refused or failed ones too) who (`actor`, else `by`) from
        where (`source`: the client's address; "local" for the control socket and scripts). A PIN, PUK or
        facility password is masked in both and in any error, also inside a compound line (`AT+CSQ;+CPIN=1234`).
        Raises SubmitError (at_command_problem), NotFound, ModemRequestError."""
        shown = at.redact(command[:MAX_AT_COMMAND])
        target = f"modem #{modem_id}"
        try:
            refusal = at_command_problem(command)
            if refusal:
                raise SubmitError(refusal, "command")
            timeout = min(60.0, max(0.1, timeout))
            try:
                reply = self.run_on_modem(modem_id, lambda modem: modem.raw(command, timeout), shown, wait)
            except ModemRequestError as failed:  # a timeout's text quotes the command as the link sent it
                clean = failed.detail.replace(command.strip(), shown) if command.strip() else failed.detail
                raise ModemRequestError(clean, failed.reason) from None
        except (SubmitError, NotFound, ModemRequestError) as error:
            self.audit("modem.at", actor=actor or by, source=source, target=target, ok=False,
                       detail={"command": shown, "error": getattr(error, "detail", None) or str(error)})
            raise
        self.store.log_event("modem.at_command", modem_id=modem_id, command=shown, final=reply.final, **audit, by=by)
        self.audit("modem.at", actor=actor or by, source=source, target=target,
                   detail={"command": shown, "final": reply.final})
        return reply

    # API keys and webhooks

    def create_key(self, name: str, scopes: str | list[str] | tuple[str, ...], group: str | None = None,
                   rate_per_minute: int | None = None, allow_query_token: bool = False) -> tuple[str, Any]:
        """A new API key (shown once) and its record; `allow_query_token`: it may be passed in a URL (legacy
        devices, `auth.create_key`). Raises ValueError for unknown scopes or a bad name (empty, or over 100
        characters)."""
        from modemgw import auth

        if len(name.strip()) > 100:
            raise ValueError("a key's name has at most 100 characters")
        return auth.create_key(self.store, name, auth.parse_scopes(list(scopes) if not isinstance(scopes, str)
                                                                   else scopes), group, rate_per_minute,
                               allow_query_token)

    def api_keys(self) -> list[dict]:
        """Every API key's record (never the key)."""
        from modemgw import auth

        return auth.list_keys(self.store)

    def revoke_key(self, key_id: int) -> None:
        """Raises NotFound."""
        from modemgw import auth

        auth.revoke_key(self.store, key_id)

    def webhooks(self) -> list[dict]:
        from modemgw import webhooks

        return webhooks.webhooks(self.store)

    def callback_secret(self) -> str:
        """The secret that signs deliveries to messages' own callback URLs."""
        from modemgw import webhooks

        return webhooks.callback_secret(self.store)

    def create_webhook(self, url: str, events: list[str]) -> dict:
        """Subscribe `url` to `events`. Raises SubmitError naming the field at fault (the URL is checked in full:
        a bad one must never reach the outbox)."""
        from modemgw import webhooks

        try:
            return webhooks.create_webhook(self.store, url, events)
        except urls.UrlError as error:
            raise SubmitError(str(error), "url") from None
        except ValueError as error:
            raise SubmitError(str(error), "events") from None

    def delete_webhook(self, webhook_id: int) -> None:
        from modemgw import webhooks

        webhooks.delete_webhook(self.store, webhook_id)

    def webhook_deliveries(self, webhook_id: int) -> list[dict]:
        from modemgw import webhooks

        return webhooks.deliveries(self.store, webhook_id)

    # --- end of the edges' façade ------------------------------------------------------------------------------

    # --- delivery reports --------------------------------------------------------------------------------

    def handle_report(self, modem_id: int, report: pdu.StatusReport) -> dict | None:
        """Match a status report to the part it is about: same modem, same TP-MR, same recipient, sent within
        the window, newest first. Returns what changed, or None when nothing matched (logged)."""
        now = time.time()
        candidates = self.store.candidates_for_report(modem_id, report.reference, now - self.settings.report_window)
        match = next((row for row in candidates if numbers.same_number(row["recipient"], report.recipient.number)),
                     None)
        if match is None:
            self.store.log_event("report.unmatched", modem_id=modem_id, reference=report.reference,
                                 recipient=report.recipient.number, status=report.status, code=report.status_code)
            return None
        outcome = report.status
        with self._recording(durable=True) as events:  # durable: the modem forgets the report next
            result = self.store.record_report(match["message_id"], match["seq"], modem_id, outcome,
                                              report.status_code, now)
            if result["changed"] and result["status"] in ("delivered", "undelivered"):
                events.append((f"message.{result['status']}", {"id": match["message_id"],
                                                               "status_code": report.status_code,
                                                               "reason": report.reason}))
        return {"message_id": match["message_id"], "seq": match["seq"]} | result

    def close_overdue_reports(self) -> int:
        return self.store.close_reports(time.time() - self.settings.report_deadline)

    # --- send outcomes: what a modem worker reports about the message it claimed ---------------------------------
    # The worker says what happened at the modem; the gateway decides what becomes of the message. Each call may
    # raise StoreError (nothing recorded): the worker keeps it and makes it again, in order, once the database
    # works (ModemWorker._durably), so what it records depends on its arguments alone (`now` included).

    def part_sent(self, claimed: Claimed, seq: int, modem_id: int, tp_mr: int, now: float, *, last: bool = False,
                  sticky: bool = False, handed: int | None = None) -> None:
        """Part `seq` of `claimed` has its +CMGS (TP-MR `tp_mr`) from modem `modem_id`: recorded and counted
        against the SIM's limits; with `last`, the message is sent, in the same transaction; `handed`: the message
        claimed ahead goes to the modem next. Raises StoreError."""
        with self._recording() as events:
            self.store.record_part_sent(claimed.id, seq, modem_id, tp_mr, now, sticky, claimed.recipient, last=last,
                                        handed=handed)
            if last:
                events.append(("message.sent", {"id": claimed.id, "modem_id": modem_id}))
        if time.time() - now > HOUR_SETTLES:  # recorded late: the dashboard may have counted that hour already
            self._forget_hour(now)

    def message_sent(self, claimed: Claimed, modem_id: int, now: float) -> None:
        """Every part of `claimed` has its +CMGS, the last ones from before (recovered after a crash): the message
        is sent. Raises StoreError."""
        with self._recording() as events:
            self.store.mark_sent(claimed.id, modem_id, now)
            events.append(("message.sent", {"id": claimed.id, "modem_id": modem_id}))

    def send_failed(self, claimed: Claimed, error: Exception, modem_id: int, *, may_have_left: bool = False,
                    now: float | None = None) -> FailureOutcome:
        """A send of `claimed` on modem `modem_id` failed with `error` (`may_have_left`: after its PDU was
        written). The message fails for good, or goes back to the queue, after a backoff or at once, preferably
        for another modem (failure_outcome); the pool is woken for it. Raises StoreError (nothing recorded)."""
        now = time.time() if now is None else now
        outcome = failure_outcome(claimed, error, may_have_left, self.settings)
        if not outcome.retry:
            with self._recording() as events:
                self.store.fail(claimed.id, modem_id, outcome.code, outcome.reason,
                                possible_duplicate=outcome.possible_duplicate)
                events.append(("message.failed", {"id": claimed.id, "code": outcome.code, "reason": outcome.reason}))
            return outcome
        self.store.requeue(claimed.id, modem_id, now + outcome.delay, outcome.reason, code=outcome.code,
                           pin=outcome.pin, avoid=outcome.avoid, count_attempt=outcome.count_attempt,
                           possible_duplicate=outcome.possible_duplicate)
        if outcome.delay > 0:
            self.wake_at(now + outcome.delay)
        else:
            self.wake(1)
        return outcome

    # --- end of send outcomes ------------------------------------------------------------------------------------

    # --- inbound -----------------------------------------------------------------------------------------

    def handle_inbound(self, modem_id: int, message: pdu.Deliver) -> int | None:
        """Store an inbound SMS (reassembling concatenated ones; duplicates dropped). Returns the inbox id
        once a message is complete, None while parts are missing or for a duplicate. Call before deleting
        the message from the SIM."""
        user_data = message.user_data
        sender = message.sender.number
        sent_at = message.timestamp.timestamp()
        concat = user_data.concat
        key_material = f"{sender}|{message.timestamp.isoformat()}|{user_data.encoding}|{user_data.payload.hex()}"
        if concat is not None:
            key_material += f"|{concat.bits}:{concat.reference}:{concat.total}:{concat.sequence}"
        dedupe_key = hashlib.sha256(key_material.encode()).hexdigest()
        # One durable transaction for the SMS (its last part, the parts it consumes, the assembled message) and
        # its recorders' outbox rows: the modem forgets the SMS next, and a failed commit must leave the parts held
        # for the retry (a part already marked seen by an earlier commit would be dropped as a duplicate).
        with self.store.transaction(durable=True):
            if concat is None or concat.total == 1:
                body = user_data.text if user_data.text is not None else user_data.payload.hex()
                data = self._record_inbound(modem_id, sender, body, sent_at, dedupe_key, 1, False)
            else:
                # 8- and 16-bit references are separate name spaces
                reference = concat.reference | (0x10000 if concat.bits == 16 else 0)
                parts = self.store.insert_inbound_part(modem_id, sender, reference,
                                                       concat.total, concat.sequence, user_data.encoding,
                                                       user_data.payload, sent_at, dedupe_key)
                data = None if parts is None else self._record_inbound(*self._assembled(modem_id, parts, False))
        return None if data is None else self._inbound_recorded(data)

    def _assembled(self, modem_id: int, parts: list[dict], partial: bool) -> tuple:
        """The arguments of `_record_inbound` for a concatenated message from its parts (in order)."""
        encoding = parts[0]["encoding"]
        payload = b"".join(part["payload"] for part in parts)
        body = pdu.decode_payload(encoding, payload)
        if body is None:
            body = payload.hex()
        if partial:
            have = [part["seq"] for part in parts]
            missing = [seq for seq in range(1, parts[0]["total"] + 1) if seq not in have]
            body += f" [parts {', '.join(map(str, missing))} of {parts[0]['total']} never arrived]"
        key = hashlib.sha256(("assembled|" + "|".join(part["dedupe_key"] for part in parts)).encode()).hexdigest()
        return (modem_id or parts[0]["modem_id"], parts[0]["sender"], body, parts[0]["sent_at"], key, len(parts),
                partial)

    def _record_inbound(self, modem_id: int, sender: str, body: str, sent_at: float | None, dedupe_key: str,
                        parts: int, partial: bool) -> dict | None:
        """Inside the caller's durable transaction: store an inbound SMS, and its recorders' outbox rows (webhook
        deliveries, SMPP deliver_sm) in the same commit. The event's data; None for a duplicate."""
        inbox_id = self.store.insert_inbound(modem_id, sender, body, sent_at, dedupe_key, parts, partial)
        if inbox_id is None:
            return None
        data = {"id": inbox_id, "from": sender, "body": body, "modem_id": modem_id, "partial": partial}
        self._notify(self._recorders, "inbound.received", data)
        return data

    def _inbound_recorded(self, data: dict) -> int:
        """After the commit: STOP/START, the inbound rules (a rule may take 0.5 s: never under the write lock),
        then the other listeners. The inbox id."""
        self._keywords(data["from"], data["body"])
        self.apply_inbound_rules(data["id"], data["modem_id"], data["from"], data["body"])
        self._notify(self._listeners, "inbound.received", data)
        return data["id"]

    def _keywords(self, sender: str, body: str) -> None:
        word = body.strip().strip(".!").upper()
        try:
            number = numbers.normalize(sender, self.settings.default_region)
        except numbers.NumberError:
            return  # alphanumeric senders cannot be messaged back; nothing to opt out
        if word in self.settings.stop_words:
            if self.store.add_optout(number, "keyword", f"replied {word}"):
                self.store.log_event("optout.added", number=number, keyword=word)
        elif word in self.settings.start_words and self.store.remove_optout(number):
            self.store.log_event("optout.removed", number=number, keyword=word)

    def flush_stale_inbound(self) -> list[int]:
        """Store incomplete concatenated messages whose missing parts are overdue, flagged partial (the parts
        taken and the messages stored in one transaction: a failure keeps the parts for the next run)."""
        older_than = time.time() - self.settings.inbound_assembly_timeout
        with self.store.transaction(durable=True):
            recorded = [self._record_inbound(*self._assembled(parts[0]["modem_id"], parts, True))
                        for parts in self.store.stale_inbound_groups(older_than)]
        return [self._inbound_recorded(data) for data in recorded if data is not None]

    # --- housekeeping ----------------------------------------------------------------------------------

    def release_scheduled(self) -> int:
        released = self.store.release_scheduled(time.time())
        if released:
            self.wake(released)
        return released

    def expire(self) -> list[int]:
        expired = self.store.expire_due(time.time())
        # told after the commit, each in its own transaction: thousands of a campaign may expire at once, and
        # their outbox rows in one transaction would hold the write lock (and the sends) for seconds
        for message_id in expired:
            self.emit("message.expired", {"id": message_id})
        return expired

    def purge(self) -> int:
        return self.store.purge(time.time() - self.settings.retention_days * 86400)

    # --- web UI façade (webui/): what its pages read and change, beyond submit, cancel and message -------------
    # Reads the edges' façade above has no counterpart for (dashboard counts and chart, conversations, the AT
    # console's history, resend); other entry points may use them too.

    def queue_depth(self) -> int:
        """How many messages wait in the queue now."""
        return self.store.queue_depth()

    def counts_by_modem(self, day: dt.date | None = None) -> dict[int | None, dict[str, int]]:
        """Per modem row id, the messages that left it on `day` (default today, local time: the statistics' day)
        and are now sent (sent, delivered or undelivered), delivered, and failed (a failed send that day, or
        undelivered)."""
        counts: dict[int | None, dict[str, int]] = {}
        for row in self.store.day_counts_by_modem((day or dt.date.today()).isoformat()):
            bucket = counts.setdefault(row["modem_id"], {"sent": 0, "delivered": 0, "failed": 0})
            if row["kind"] in ("sent", "delivered", "undelivered"):
                bucket["sent"] += row["count"]
            if row["kind"] == "delivered":
                bucket["delivered"] += row["count"]
            if row["kind"] in ("failed", "undelivered"):
                bucket["failed"] += row["count"]
        return counts

    def resend(self, message_id: int) -> dict:
        """Submit a message's body to its recipient again, as a new message with its priority (from the SIM it
        was meant to leave from, when it had one); `submit`'s result, whose `messages` is empty and `skipped`
        says why when the recipient has opted out since. Raises NotFound, SubmitError, StoreError."""
        row = self.store.message(message_id)
        return self.submit(row["body"], row["recipient"], priority=row["priority"],
                           prefer_sim=row.get("prefer_modem_id"))

    def reply(self, inbox_id: int, body: str | None = None, **options: Any) -> dict:
        """Answer an inbound message: to its sender, from the SIM it came to while that SIM can send (else from
        another, and the message says so); `send`'s result. Raises SubmitError, StoreError."""
        return self.send(SubmitRequest(body, reply_to=inbox_id, **options))

    def sim_can_send(self, modem_id: int | None) -> bool:
        """Whether the SIM (modem row id) is online and enabled now, so that a message preferring it leaves from
        it (see `Pool.claim`)."""
        state = self.pool.state_of(modem_id) if self.pool is not None and modem_id is not None else None
        if state is None or not state.live or modem_id is None:
            return False
        try:
            return bool(self.store.modem(modem_id)["enabled"])
        except NotFound:
            return False

    def conversations(self, limit: int = 200) -> list[dict]:
        """The inbox grouped by conversation, (our SIM, their number), newest first; each with the SIM's `label`
        and `our_number` (when the SIM knows it)."""
        return self.store.conversations(limit)

    def conversation(self, number: str, *, sim: int | None = None, mark_read: bool = False) -> list[dict]:
        """Messages from and to `number` (with the SIM `sim` when given: its conversation), oldest first, each with
        `direction` ("in" or "out") and `at`; an outgoing message that left from another SIM than the one it was
        meant for has `other_sim` set. With `mark_read`, the inbound ones are marked read (only when a person
        opened the conversation)."""
        inbound = [row | {"direction": "in", "at": row["received_at"]} for row in self.store.inbox_from(number, sim)]
        rows = self.store.recent_messages(100, recipient=number) if sim is None else \
            self.store.conversation_messages(number, sim)
        outbound = [row | {"direction": "out", "at": row["created_at"],
                           "other_sim": bool(row["prefer_modem_id"] and row["modem_id"]
                                             and row["modem_id"] != row["prefer_modem_id"])} for row in rows]
        if mark_read:
            self.store.mark_read(number, sim)
        return sorted(inbound + outbound, key=lambda item: item["at"])

    def at_history(self, modem_id: int, limit: int = 50) -> list[dict]:
        """The AT commands people sent to a modem, among its last `limit` events; PINs masked (also in entries
        from before they were masked when recorded)."""
        history = [event for event in self.store.events(modem_id=modem_id, limit=limit)
                   if event["kind"] == "modem.at_command"]
        for event in history:
            event["detail"]["command"] = at.redact(str(event["detail"].get("command", "")))
        return history

    def optouts(self) -> list[dict]:
        """The opt-out list, newest first."""
        return self.store.optouts()

    def optouts_among(self, recipients: list[str]) -> set[str]:
        """Which of `recipients` are on the opt-out list."""
        return self.store.optouts_among(recipients)

    # --- end of the web UI façade --------------------------------------------------------------------------------


__all__ = ["MAX_LABEL", "MAX_RECIPIENTS", "Conflict", "FailureOutcome", "Gateway", "GatewaySettings",
           "ModemRequestError", "NotFound", "Route", "SubmitError", "at_command_problem", "failure_outcome",
           "modem_changes_problem", "sent_today"]
