"""Compose: write a message, choose who gets it, review everything, then send.

A person fills in the compose form (numbers in the Recipients box, a CSV file, a contact group, a saved template,
options) and presses Review. Everything is checked then, before any Send button is shown: every recipient parsed
(named by its line in the file or in the box), every row's template fields present, the segment count against the
limit, opt-outs and repeats counted. `Gateway.plan` does the gateway's part (it checks a request like `send` but
queues nothing and does not stop at the first bad row); the page adds what only the file knows (an empty phone
cell, a short row). The confirm page lists who gets what, the rejected rows with their reasons (and a CSV of them
to fix and upload again, when they came from a file; said once, when it is the text that is too long for everyone),
the numbers that get more than one message, a warning when the chosen SIM is disabled or offline, and sends only
the good rows if the person chooses.

Nothing is kept on the server between the pages: the compose form's contents (the CSV file's rows too, so that
nobody uploads a file twice) travel in the forms as hidden fields, and are checked again at every step. The
confirm form carries a token that becomes the send's idempotency key: Back and Send again (or a form sent twice)
returns the first result and queues nothing new.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import secrets
from dataclasses import dataclass, field, replace

from flask import Response, g, jsonify, redirect, render_template, request, url_for
from werkzeug.datastructures import FileStorage, MultiDict

from modemgw import csvfile, text
from modemgw.gateway import Conflict, SubmitError, SubmitRequest
from modemgw.problems import STORAGE_RETRY_AFTER
from modemgw.store import NotFound, StoreError
from webui import gateway, storage_message, ui
from webui.sessions import login_required, notice

PREVIEW_ROWS = 20  # accepted rows shown with their text on the confirm page
LISTED_ROWS = 200  # rejected and skipped rows listed on the page (the download has them all)
MAX_BOX_CHARS = 1_000_000  # the Recipients box; long lists belong in a CSV file
MAX_FILE_NAME = 100
# The compose forms carry a CSV file's rows as a hidden field: allow one field as large as the whole request
# (MAX_CONTENT_LENGTH, 4 MB, still bounds it) instead of Werkzeug's 500 KB per field.
FORM_FIELD_LIMIT = 4 * 1024 * 1024


class DraftError(ValueError):
    """A compose or confirm form whose hidden fields were damaged or altered: review the message again."""


@ui.before_app_request
def _larger_form_fields() -> None:
    """Raise the per-field limit for the compose forms, before anything (the CSRF check) parses the form."""
    if request.endpoint in ("ui.compose", "ui.compose_rejected"):
        request.max_form_memory_size = FORM_FIELD_LIMIT


# --- the draft: what the compose form holds -------------------------------------------------------------------

@dataclass
class Draft:
    """The compose form's contents, carried from compose to confirm and back (the CSV's rows included)."""

    draft_id: str = ""
    body: str = ""
    box: str = ""  # the Recipients box, as typed
    table: csvfile.Table | None = None
    file_name: str = ""
    group: str = ""
    template: str = ""
    modem: str = ""
    priority: str = "0"
    send_at: str = ""
    smart: bool = False
    spintax: bool = False

    @classmethod
    def from_form(cls, form: MultiDict) -> Draft:
        """The draft of a posted compose or confirm form, without its file (see `load_file`)."""
        draft_id = form.get("draft", "")
        plain = draft_id.replace("-", "").replace("_", "")
        if not 8 <= len(draft_id) <= 64 or not plain.isascii() or not plain.isalnum():
            draft_id = new_draft_id()
        return cls(draft_id=draft_id, body=form.get("body", "").replace("\r\n", "\n"),
                   box=form.get("to", ""), group=form.get("group", "").strip(), template=form.get("template", ""),
                   modem=form.get("modem", "").strip(), priority=form.get("priority", "0").strip() or "0",
                   send_at=form.get("send_at", "").strip(), smart=form.get("smart") == "on",
                   spintax=form.get("spintax") == "on")

    def load_file(self, form: MultiDict, files: MultiDict) -> None:
        """The CSV file: a new upload replaces the rows the form carried. Raises csvfile.CsvError, DraftError."""
        upload: FileStorage | None = files.get("csv")
        if upload is not None and upload.filename:
            self.table, self.file_name = None, ""
            data = upload.read(csvfile.MAX_BYTES + 1)
            self.table = csvfile.read(data)
            self.file_name = upload.filename[-MAX_FILE_NAME:]
        elif form.get("table") and form.get("forget_file") != "on":
            self.table, self.file_name = table_from_json(form["table"])

    @property
    def table_json(self) -> str:
        return table_to_json(self.table, self.file_name) if self.table is not None else ""

    def get(self, name: str, default: str = "") -> str:
        """The form field `name` as the compose page shows it (the page reads a draft like a form)."""
        value = {"to": self.box, "body": self.body, "group": self.group, "template": self.template,
                 "modem": self.modem, "priority": self.priority, "send_at": self.send_at,
                 "smart": "on" if self.smart else "", "spintax": "on" if self.spintax else "",
                 "draft": self.draft_id}.get(name)
        return default if value is None else value


def new_draft_id() -> str:
    return secrets.token_urlsafe(12)


def table_to_json(table: csvfile.Table, name: str) -> str:
    """A compact form of a CSV's rows for a hidden field: each row is [line, cells, extra]."""
    rows = [[row.line, [row.values[column] for column in table.columns if column in row.values], row.extra]
            for row in table.rows]
    return json.dumps({"name": name, "columns": table.columns, "delimiter": table.delimiter,
                       "encoding": table.encoding, "rows": rows}, ensure_ascii=False, separators=(",", ":"))


def table_from_json(value: str) -> tuple[csvfile.Table, str]:
    """The rows `table_to_json` wrote, checked (a form can be altered). Raises DraftError."""
    damaged = DraftError("the CSV rows this form carried are damaged; choose the file again")
    try:
        data = json.loads(value)
    except (ValueError, RecursionError):  # RecursionError: a form altered to nest arrays thousands deep
        raise damaged from None
    if not isinstance(data, dict):
        raise damaged
    columns, rows, name = data.get("columns"), data.get("rows"), data.get("name", "")
    delimiter, encoding = data.get("delimiter"), data.get("encoding")
    if (not isinstance(columns, list) or not all(isinstance(column, str) for column in columns)
            or len(set(columns)) != len(columns) or not isinstance(rows, list) or len(rows) > csvfile.MAX_ROWS
            or not isinstance(name, str) or delimiter not in csvfile.DELIMITERS or not isinstance(encoding, str)):
        raise damaged
    table_rows = []
    for row in rows:
        if (not isinstance(row, list) or len(row) != 3 or not isinstance(row[0], int) or not isinstance(row[1], list)
                or not isinstance(row[2], int) or len(row[1]) > len(columns)
                or not all(isinstance(cell, str) for cell in row[1])):
            raise damaged
        table_rows.append(csvfile.Row(row[0], dict(zip(columns, row[1], strict=False)),
                                      missing=columns[len(row[1]):], extra=max(0, row[2])))
    return csvfile.Table(columns, table_rows, delimiter, encoding[:20]), name[-MAX_FILE_NAME:]


def box_numbers(box: str, limit: int) -> list[tuple[int, str]]:
    """(line, number) of each number in the Recipients box: one or more a line, separated by commas or
    semicolons. Raises SubmitError past `limit` numbers."""
    if len(box) > MAX_BOX_CHARS:
        raise SubmitError(f"the Recipients box holds {len(box):,} characters; at most {MAX_BOX_CHARS:,} are taken: "
                          "put long lists in a CSV file", "to")
    found: list[tuple[int, str]] = []
    for line, content in enumerate(box.splitlines(), start=1):
        for item in content.replace(";", ",").split(","):
            if item.strip():
                found.append((line, item.strip()))
        if len(found) > limit:
            raise SubmitError(f"more than {limit:,} numbers in the Recipients box; at most {limit:,} in one "
                              "request", "to")
    return found


# --- the review: what would be sent, what not, and why ----------------------------------------------------------

@dataclass
class Review:
    """The checked draft: `Gateway.plan`'s answer with each row named as a person finds it ("line 4", "box line
    2", "group Staff"), the file's own rejections (empty phone, short row) merged in."""

    accepted: list[dict] = field(default_factory=list)  # {"where", "line", "to", "text", "segments", "encoding"}
    rejected: list[dict] = field(default_factory=list)  # {"where", "line", "to", "reason", "values"}
    skipped: list[dict] = field(default_factory=list)  # {"where", "line", "to", "reason"}
    segments: int = 0
    max_segments: int = 0
    encoding: str | None = None
    problems: list[str] = field(default_factory=list)  # about the message as a whole
    notes: list[str] = field(default_factory=list)  # worth knowing, not wrong
    repeats: list[str] = field(default_factory=list)  # numbers that get more than one message, and where from
    sim_warning: str | None = None  # the chosen SIM is disabled or offline: the messages would wait
    # the text is too long for every recipient: said once at the top, its rows not listed as bad rows
    text_too_long: bool = False
    # which rows a Send queues: the box's positions, the file's lines, the whole group or its good members
    send: dict = field(default_factory=dict)  # {"box": [int], "file": [int], "group": bool, "members": [dict]}

    @property
    def listed(self) -> list[dict]:
        """The rejected rows the page lists (and the download holds): all of them, except those refused only for
        the text when it is too long for everyone (the page says that once instead)."""
        if not self.text_too_long:
            return self.rejected
        return [item for item in self.rejected if not item["text"]]

    @property
    def downloadable(self) -> bool:
        """Whether a listed row came from the CSV file: only those can be fixed in a file and uploaded again."""
        return any(item["kind"] == "file" for item in self.listed)

    @property
    def rejected_lead(self) -> str:
        """The first words of the Rejected section, naming what the listed rows are."""
        kinds = {item["kind"] for item in self.listed}
        noun = {"file": "rows", "box": "numbers", "group": "contacts"}.get(kinds.pop()) if len(kinds) == 1 else None
        return f"These {noun or 'recipients'} are not sent."

    def advice(self, file_name: str) -> list[str]:
        """What to fix for the listed rows, by where they came from (and for a text too long on some rows)."""
        kinds = {item["kind"] for item in self.listed}
        said = []
        if "file" in kinds:
            said.append(f"Rows of {file_name or 'the CSV file'}: download them with the reason of each, fix them in "
                        "the file, and upload it again (or go Back and choose the fixed file).")
        if "box" in kinds:
            said.append("Numbers in the Recipients box: go Back, correct or remove them, and review again.")
        if "group" in kinds:
            said.append("Contacts of a group: correct them under Contacts (a missing field is added on the "
                        "contact's page), or write the message without the placeholders they lack.")
        if any(item["text"] for item in self.listed):
            said.append("Rows whose text is too long: shorten the message, or the fields that make it long.")
        return said

    @property
    def left_out(self) -> tuple[int, int]:
        """(rejected, skipped) recipients that a Send of this review does not hand to the gateway, for the notice
        after sending (the gateway does not see them again, so cannot count them). Skipped members of a group sent
        whole are not among them: the gateway skips them again and counts them itself."""
        skipped = len(self.skipped)
        if self.send.get("group"):
            skipped = sum(1 for item in self.skipped if isinstance(item.get("line"), int))
        return len(self.rejected), skipped


def _and(items: list[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _kind(source: object) -> str:
    """Where a plan's row came from, as the Rejected section groups them: "file", "box" or "group"."""
    if source in ("recipients", "file"):
        return "file"
    return "box" if source == "to" else "group"


def _where(line: int | None, source: str) -> str:
    if source == "file":
        return f"line {line}"
    if source == "box":
        return f"box line {line}"
    return source


def _phone_column(table: csvfile.Table) -> str:
    phone = csvfile.phone_column(table.columns)
    if phone is None:
        raise SubmitError(f"the CSV file needs a column of phone numbers named phone, to, number or mobile (any "
                          f"case); its header (read as {table.delimiter_name}-separated {table.encoding}) names "
                          f"{', '.join(table.columns)}", "csv")
    return phone


def _file_row_problem(row: csvfile.Row, phone: str, fields: list[str], columns: int) -> str | None:
    """Why a CSV row cannot be sent, as only the file can tell (the gateway checks the rest)."""
    if phone in row.missing:
        return (f"short row: it has {columns - len(row.missing)} of the {columns} columns and no '{phone}' cell "
                "(is a delimiter missing?)")
    if not row.values[phone]:
        return f"no phone number: the '{phone}' cell is empty"
    used = [name for name in fields if name in row.missing]
    if used:
        names = ", ".join(f"'{name}'" for name in used)
        return (f"short row: it has {columns - len(row.missing)} of the {columns} columns, so no {names} for the "
                f"message's {', '.join('{' + name + '}' for name in used)}")
    return None


def _request(draft: Draft, to: list[str] | None, recipients: list[dict] | None, groups: list[str] | None,
             token: str | None = None) -> SubmitRequest:
    """The request a draft makes, to plan or to send. Raises SubmitError for an option that is not valid."""
    try:
        priority = int(draft.priority)
    except ValueError:
        raise SubmitError("priority must be a whole number from -100 to 100", "priority") from None
    send_at = None
    if draft.send_at:
        try:
            send_at = dt.datetime.fromisoformat(draft.send_at).astimezone().isoformat()
        except ValueError:
            raise SubmitError(f"Send at: {draft.send_at[:40]!r} is not a date and time", "send_at") from None
    return SubmitRequest(draft.body, to, recipients=recipients, groups=groups, priority=priority, send_at=send_at,
                         route=draft.modem or None, spintax=draft.spintax, smart_encoding=draft.smart,
                         idempotency_key=None if token is None else "ui-confirm:" + token, user_id=g.user["id"])


def _body_problem(draft: Draft, fields: list[str], max_segments: int) -> str | None:
    """Why the message as written cannot go to anyone (its length), said once rather than on every row."""
    if fields or draft.spintax:
        return None  # each row's text differs: the rows say it
    try:
        info = text.info(draft.body, smart=draft.smart)
    except text.TextError as error:
        return f"The message is too long: {error}."
    if info.segments > max_segments:
        return (f"The message needs {info.segments} segments ({info.characters:,} characters, "
                f"{'GSM-7' if info.encoding == 'gsm7' else 'UCS-2'}); the limit is {max_segments}: shorten it.")
    return None


def review(draft: Draft) -> Review:
    """Check a draft in full. Raises SubmitError (for the request as a whole), StoreError."""
    settings = gateway().settings
    if not draft.body.strip():
        raise SubmitError("the message is empty: write its text under Message (or choose a template)", "body")
    try:
        text.check_length(draft.body, "the message")
    except text.TextError as error:
        raise SubmitError(str(error), "body") from None
    numbers = box_numbers(draft.box, settings.max_recipients)
    if numbers and draft.table is not None:
        raise SubmitError(f"give the numbers in the Recipients box or in a CSV file, not both (the box holds "
                          f"{len(numbers)}, {draft.file_name or 'the file'} {len(draft.table.rows)} rows): empty the "
                          "box or tick “Forget this file”", "to")
    if not numbers and draft.table is None and not draft.group:
        raise SubmitError("add at least one recipient: numbers in the Recipients box, a CSV file or a group", "to")
    try:
        fields = text.template_fields(draft.body, spintax=draft.spintax)
    except text.TextError:
        fields = []  # the plan says what is wrong with the body
    result = Review(max_segments=settings.max_segments)
    by_line: dict[int, csvfile.Row] = {}
    recipients: list[dict] | None = None
    if draft.table is not None:
        table = draft.table
        phone = _phone_column(table)
        recipients = []
        for row in table.rows:
            by_line[row.line] = row
            problem = _file_row_problem(row, phone, fields, len(table.columns))
            if problem is not None:
                result.rejected.append({"where": _where(row.line, "file"), "line": row.line, "kind": "file",
                                        "text": False, "to": row.values.get(phone, ""), "reason": problem,
                                        "values": row.values})
            else:
                recipients.append({"to": row.values[phone], "fields": dict(row.values), "line": row.line})
        if not table.rows:
            result.problems.append(f"{draft.file_name or 'The CSV file'} has a header but no rows.")
        extra = [row.line for row in table.rows if row.extra]
        if extra:
            result.notes.append(f"{len(extra)} row(s) have more cells than the header has columns (line "
                                f"{', '.join(str(line) for line in extra[:10])}{', …' if len(extra) > 10 else ''}): "
                                "the extra cells are left out. A cell that holds the delimiter needs quotes.")
    to = [number for _, number in numbers] or None
    groups = [draft.group] if draft.group else None
    planned: dict = {"accepted": [], "rejected": [], "skipped": [], "segments": 0, "encoding": None}
    if to or recipients or groups:
        planned = gateway().plan(_request(draft, to, recipients or None, groups))
    result.segments, result.encoding = planned["segments"], planned["encoding"]
    result.max_segments = planned.get("max_segments", settings.max_segments)

    def where(item: dict) -> str:
        line, source = item.get("line"), item.get("source")
        if isinstance(source, str) and source.startswith(("group ", "contact ")):
            return source
        if not isinstance(line, int):
            return f"group {draft.group}" if draft.group else "—"
        if recipients is not None:
            return _where(line, "file")
        if 1 <= line <= len(numbers):
            return _where(numbers[line - 1][0], "box")
        return "—"

    send: dict = {"box": [], "file": [], "group": False, "members": []}
    for item in planned["accepted"]:
        place = where(item)
        result.accepted.append(item | {"where": place})
        if item.get("source") == "recipients":
            send["file"].append(item["line"])
        elif item.get("source") == "to":
            send["box"].append(item["line"])
        else:
            send["members"].append({"to": item["to"], "fields": item.get("fields") or {}})
    for_text = _refused_for_text(draft, fields, to, recipients, groups, planned["rejected"])
    for item in planned["rejected"]:
        found = by_line.get(item["line"]) if item.get("source") == "recipients" else None
        result.rejected.append(item | {"where": where(item), "values": found.values if found is not None else None,
                                       "kind": _kind(item.get("source")), "text": _key(item) in for_text})
    result.rejected.sort(key=lambda item: (not isinstance(item["line"], int), item["line"] or 0))
    result.skipped = [item | {"where": where(item)} for item in planned["skipped"]]
    if draft.group and not any(str(item.get("source", "")).startswith("group ") for item in planned["rejected"]):
        send["group"], send["members"] = True, []  # the whole group, as the address book holds it
    result.send = send
    problem = _body_problem(draft, fields, result.max_segments)
    if problem is not None:
        result.problems.append(problem)
    too_long = [item for item in result.rejected if item["text"]]
    if too_long and not result.accepted:  # nobody can get the text as it is: say so once, list no row for it
        result.text_too_long = True
        if problem is None:
            example = too_long[0]
            filled = " once the fields are filled in" if fields else ""
            result.problems.append(f"The text is too long for every recipient{filled} ({example['where']}: "
                                   f"{example['reason']}): shorten the message.")
    result.repeats = _repeats(result.accepted)
    result.sim_warning = sim_warning(draft.modem)
    return result


def _key(item: dict) -> tuple:
    return item.get("source"), item.get("line"), item.get("to")


def _refused_for_text(draft: Draft, fields: list[str], to: list[str] | None, recipients: list[dict] | None,
                      groups: list[str] | None, rejected: list[dict]) -> set[tuple]:
    """Which of the plan's rejected rows were refused for their text (too long, empty) rather than for themselves
    (a bad number, a missing field): the gateway's plan again with a short text that has the same placeholders.
    A row it still refuses is at fault itself; the others only for the text. Planned only when rows were refused."""
    if not rejected:
        return set()
    short = " ".join(["x", *("{" + name + "}" for name in fields)])
    try:
        again = gateway().plan(_request(replace(draft, body=short, spintax=False), to, recipients or None, groups))
    except SubmitError:  # not expected (the real plan passed the same request): then list every row as it is
        return set()
    still = {_key(item) for item in again["rejected"]}
    return {_key(item) for item in rejected} - still


def _repeats(accepted: list[dict]) -> list[str]:
    """A note for each number that gets more than one message (rows of a file with the same number and different
    fields, e.g. two appointments; a number both in the file and in the group): they are all sent, and said so."""
    places: dict[str, list[dict]] = {}
    for item in accepted:
        places.setdefault(item["to"], []).append(item)
    notes = []
    for number, items in places.items():
        if len(items) < 2:
            continue
        lines = [str(item["line"]) for item in items if item.get("source") == "recipients"]
        where = [f"line {lines[0]}" if len(lines) == 1 else f"lines {_and(lines)}"] if lines else []
        where += [f"in {item['where']}" if item["where"].startswith(("group ", "contact ")) else item["where"]
                  for item in items if item.get("source") != "recipients"]
        notes.append(f"{number} appears on {_and(where)}: it gets {len(items)} messages.")
    return notes


def sim_trouble(label: str | None) -> tuple[str, dict] | None:
    """Why the SIM labelled `label` sends nothing now: ("disabled" or "offline", its modem as `modems_now` shows
    it); None when it can send, or when no SIM has that label (a modem group's name). Raises StoreError."""
    if not label:
        return None
    for modem in gateway().modems_now():
        if modem["label"] == label:
            if not modem["enabled"]:
                return "disabled", modem
            if not modem["online"]:
                return "offline", modem
            return None
    return None


def sim_warning(label: str | None) -> str | None:
    """The confirm page's warning when the chosen SIM cannot send now: the messages would wait for it."""
    trouble = sim_trouble(label)
    if trouble is None:
        return None
    if trouble[0] == "disabled":
        return f"{label} is disabled: these messages wait until it is enabled again (or choose Any)."
    state = trouble[1]["state"]
    detail = f" ({state})" if state != "offline" else ""
    return f"{label} is offline{detail}: these messages wait until it is back online (or choose Any)."


@ui.app_template_global()
def sim_wait(message: dict) -> str | None:
    """On a message's page: why a queued message waits, when it may leave only from a SIM that is disabled or
    offline (its `route_modem`, the SIM chosen on Compose or by the API's `modem`); None otherwise."""
    label = message.get("route_modem")
    if message.get("status") != "queued" or not label:
        return None
    try:
        trouble = sim_trouble(label)
    except StoreError:
        return None
    if trouble is None:
        return None
    until = "it is enabled again (on the Modems page)" if trouble[0] == "disabled" else "it is back online"
    return (f"Waiting for SIM {label}, which is {trouble[0]}: this message may leave only from that SIM, so it waits "
            f"until {until}. To send it now from any SIM, Cancel it and Send again.")


def _send_request(draft: Draft, chosen: dict | None, token: str) -> SubmitRequest:
    """The request a confirmed draft sends: only the rows the review accepted (`chosen`: the box's positions, the
    file's lines, the whole group or its accepted members), or the whole draft when the form names none. Raises
    SubmitError, DraftError."""
    numbers = box_numbers(draft.box, gateway().settings.max_recipients)
    rows: list[dict] | None = None
    if draft.table is not None:
        phone = _phone_column(draft.table)
        rows = [{"to": row.values.get(phone, ""), "fields": dict(row.values), "line": row.line}
                for row in draft.table.rows]
    groups = [draft.group] if draft.group else None
    members: list[dict] = []
    if chosen is not None:
        box, lines = set(chosen["box"]), set(chosen["file"])
        numbers = [item for position, item in enumerate(numbers, start=1) if position in box]
        if rows is not None:
            rows = [item for item in rows if item["line"] in lines]
        if not chosen.get("group"):
            groups, members = None, chosen["members"]
    if members:  # some of a group's members: as rows with their fields (the numbers of the box likewise)
        rows = [*(rows or []), *({"to": number, "fields": {}, "line": line} for line, number in numbers), *members]
        numbers = []
    to = [number for _, number in numbers] or None
    if not (to or rows or groups):
        raise SubmitError("nothing to send: no recipient was accepted", "to")
    return _request(draft, to, rows or None, groups, token)


def confirm_token(draft: Draft, chosen: dict) -> str:
    """The confirm form's one-time token: the draft's id and what it sends. The same form sent twice (Back, then
    Send again; a reload of the confirm page) has the same token, so it queues once; a changed draft is another
    request."""
    content = json.dumps([draft.body, draft.box, draft.table_json, draft.group, draft.modem, draft.priority,
                          draft.send_at, draft.smart, draft.spintax, chosen], sort_keys=True, ensure_ascii=False)
    return f"{draft.draft_id}.{hashlib.sha256(content.encode()).hexdigest()[:24]}"


def _left_out(form: MultiDict) -> tuple[int, int]:
    """The confirm form's `left_out` field: (rejected, skipped) rows the review left out of the send (only told in
    the notice; a damaged value counts as none)."""
    parts = form.get("left_out", "").split(",")
    if len(parts) != 2 or not all(part.isdecimal() and len(part) <= 7 for part in parts):
        return 0, 0
    return int(parts[0]), int(parts[1])


def _chosen(form: MultiDict) -> dict | None:
    """Which rows the confirm form sends (see `Review.send`), checked (a form can be altered). Raises DraftError."""
    if not form.get("accepted"):
        return None
    damaged = DraftError("this confirmation form is damaged; review the message again")
    try:
        chosen = json.loads(form["accepted"])
    except (ValueError, RecursionError):
        raise damaged from None
    if not isinstance(chosen, dict):
        raise damaged
    box, lines, members = chosen.get("box", []), chosen.get("file", []), chosen.get("members", [])
    if (not isinstance(box, list) or not isinstance(lines, list) or not isinstance(members, list)
            or not all(isinstance(item, int) for item in [*box, *lines])
            or not all(isinstance(item, dict) and isinstance(item.get("to"), str)
                       and isinstance(item.get("fields"), dict) for item in members)):
        raise damaged
    return {"box": box, "file": lines, "group": chosen.get("group") is True,
            "members": [{"to": item["to"], "fields": item["fields"]} for item in members]}


# --- pages ------------------------------------------------------------------------------------------------------

def _compose_page(draft: Draft, error: str | None = None, status: int = 200, headers: dict | None = None):
    try:
        groups, templates = gateway().groups(), gateway().templates()
    except StoreError:  # the page still shows (with what the person typed); the lists come back with the database
        groups, templates = [], []
    page = render_template("compose.html", modems=gateway().modems_now(), form=draft, draft=draft, groups=groups,
                           templates=templates, error=error, max_segments=gateway().settings.max_segments)
    return page, status, headers or {}


def _template_draft(template_id: str) -> tuple[Draft, str | None]:
    """A new draft with saved template `template_id` chosen (its text and spintax setting), or why not."""
    draft = Draft(draft_id=new_draft_id())
    try:
        chosen = gateway().template(template_id[:100])
    except NotFound:
        return draft, f"There is no saved template {template_id[:40]!r}; choose one from the list."
    draft.template, draft.body, draft.spintax = str(chosen["id"]), chosen["body"], bool(chosen.get("spintax"))
    return draft, None


def _confirm_page(draft: Draft):
    result = review(draft)
    token = confirm_token(draft, result.send)
    return render_template("confirm.html", draft=draft, review=result, token=token, preview_rows=PREVIEW_ROWS,
                           listed_rows=LISTED_ROWS, accepted_json=json.dumps(result.send, separators=(",", ":")))


def _send(draft: Draft, form: MultiDict):
    chosen = _chosen(form)
    token = form.get("token", "")
    if not 8 <= len(token) <= 200:
        token = confirm_token(draft, chosen or {})
    result = gateway().send(_send_request(draft, chosen, token))
    count = len(result["messages"])
    if result.get("idempotent_replay"):
        notice(f"Already sent: this batch was queued before ({count} message(s)); nothing new was queued. "
               "Its messages are listed here.")
        return redirect(url_for("ui.messages"))
    rejected, skipped = _left_out(form)
    said = (f"Queued {count} message(s), {result['segments']} segment(s); "
            f"{skipped + len(result['skipped'])} skipped (opted out or repeated)")
    if rejected:
        rows = ("row" if rejected == 1 else "rows") if draft.table is not None else \
            ("recipient" if rejected == 1 else "recipients")
        said += f"; {rejected} rejected {rows} {'was' if rejected == 1 else 'were'} not sent"
    notice(said + ".")
    if count == 1:
        return redirect(url_for("ui.message", message_id=result["messages"][0]["id"]))
    return redirect(url_for("ui.messages"))


@ui.route("/ui/compose", methods=["GET", "POST"])
@login_required()
def compose():
    """GET: the form (`?template=<id>` chooses a saved template). POST: Review (the confirm page), Back (the form
    again, filled in, the file's rows kept) or Send (`action=send`; `confirm=yes` from older forms)."""
    if request.method == "GET":
        if request.args.get("template"):
            draft, error = _template_draft(request.args["template"])
            return _compose_page(draft, error)
        return _compose_page(Draft(draft_id=new_draft_id()))
    form = request.form
    draft = Draft.from_form(form)
    action = form.get("action") or ("send" if form.get("confirm") == "yes" else "review")
    try:
        draft.load_file(form, request.files)
        if action == "back":
            return _compose_page(draft)
        if action == "send":
            return _send(draft, form)
        return _confirm_page(draft)
    except Conflict:
        return _compose_page(draft, "This confirmation was already used to send a different batch. Review the "
                                    "message again to send it.", 409)
    except (SubmitError, DraftError, csvfile.CsvError) as error:
        return _compose_page(draft, getattr(error, "detail", None) or str(error), 400)
    except StoreError as error:  # the form stays filled in, to be sent again when the database works
        return _compose_page(draft, storage_message(error), 503, {"Retry-After": str(STORAGE_RETRY_AFTER)})


def rejected_csv(draft: Draft, result: Review) -> str:
    """The listed rejected rows that came from the file (only those can be fixed there) as CSV: the file's columns
    (or `to`), then `reason` and `line`; formula-safe."""
    columns = list(draft.table.columns) if draft.table is not None else ["to"]
    reason = next(name for name in ("reason", "rejected reason", "modemgw reason") if name not in columns)
    line = next(name for name in ("line", "file line", "modemgw line") if name not in columns)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=draft.table.delimiter if draft.table is not None else ",",
                        lineterminator="\r\n")
    writer.writerow([csvfile.guard(name) for name in [*columns, reason, line]])
    for item in result.listed:
        if item["kind"] != "file" and draft.table is not None:
            continue
        values = item.get("values") or {"to": item.get("to") or ""}
        cells = [values.get(name, "") for name in columns]
        writer.writerow([csvfile.guard(str(cell)) for cell in [*cells, item["reason"], item["where"]]])
    return out.getvalue()


@ui.post("/ui/compose/rejected.csv")
@login_required()
def compose_rejected():
    """The confirm page's rejected rows as a CSV file (UTF-8 with a BOM, as Excel opens it; the file's own
    delimiter), to fix and upload again."""
    form = request.form
    draft = Draft.from_form(form)
    try:
        draft.load_file(form, request.files)
        data = rejected_csv(draft, review(draft))
    except (SubmitError, DraftError, csvfile.CsvError) as error:
        return _compose_page(draft, getattr(error, "detail", None) or str(error), 400)
    except StoreError as error:
        return _compose_page(draft, storage_message(error), 503, {"Retry-After": str(STORAGE_RETRY_AFTER)})
    stem = "".join(char if char.isascii() and (char.isalnum() or char in "-_") else "-"
                   for char in (draft.file_name.rsplit(".", 1)[0] or "recipients"))[:60]
    return Response("\ufeff" + data, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{stem}-rejected.csv"'})


@ui.post("/ui/preview")
@login_required()
def preview():
    """The live counter's numbers for the text being typed: characters, encoding, segments and the limit."""
    body = request.form.get("body", "")
    try:
        rendered = text.render(body, spintax=True, seed=0) if request.form.get("spintax") == "on" else body
        info = text.info(rendered or "", smart=request.form.get("smart") == "on")
    except text.TextError as error:
        return jsonify(error=str(error)), 400
    return jsonify(info.as_dict() | {"text": rendered, "max_segments": gateway().settings.max_segments})


__all__ = ["Draft", "DraftError", "Review", "box_numbers", "compose", "compose_rejected", "confirm_token",
           "preview", "rejected_csv", "review", "sim_trouble", "sim_wait", "sim_warning", "table_from_json",
           "table_to_json"]
