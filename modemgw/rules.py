"""Inbound rules as the gateway offers them: managed by edges, applied to every inbound SMS after STOP/START.

`InboundRules` is a part of `Gateway` (a mixin over `self.store`); edges call these methods on the gateway.

A rule is a `match` and an `action`, evaluated in order (`position`) for every stored inbound message:

- match (every condition given must hold; none: every message): `sim` (the modem row id the message came to),
  `sender` (exact, in E.164 when it is a number, or a prefix ending in `*`: "+4477*"), `keyword` (the first word
  of the text, any case, "." "," "!" "?" ":" ";" around it ignored), `regex` (a regular expression searched in
  the text, case-insensitive, rules below).
- action: `email` (to addresses, through the `[smtp]` relay: `mail_outbox`, sent by `modemgw.mail.MailSender`),
  `sms` (forward to numbers and/or an address-book group), `webhook` (a signed POST through the webhook outbox's
  callback lane), `autoreply` (answer the sender from the SIM it wrote to, at most once per `window_minutes` per
  sender and rule), `stop` (no later rule runs). Texts are templates with the placeholders {sender}, {text},
  {sim}, {time} and {rule}.

Nothing here waits on the network: an inbound message's rules only write rows (an e-mail to the outbox, a webhook
delivery, a queued SMS) that their own threads send. A rule that fails (a bad row, a full disk) is logged, and the
next rule runs: one bad rule never stops the inbound path. STOP/START replies go through no rule (an opt-out is
never answered nor forwarded), and they are handled before any rule (`Gateway._keywords`).

Regular expressions, two guards. Python's `re` backtracks and cannot be interrupted (it holds the GIL), so:
1. When a rule is saved, its pattern (at most `MAX_PATTERN` characters) must compile, and constructs that
   backtrack exponentially are refused: backreferences, lookarounds, conditionals, a quantifier inside a
   repeated group (`(a+)+`, `(\\w*)*`) and an alternation inside a repeated group (`(a|ab)*`).
2. Patterns that pass can still take polynomial time (`.*.*.*.*x` on 300 characters takes a minute), so a match
   runs in a helper process (`RegexMatcher`: plain Python, `re` only), on the first `REGEX_INPUT_CHARS`
   characters of the text, with a time limit (`REGEX_TIME_LIMIT`). A match cut off counts as no match and is
   logged; the helper is killed and started again for the next one.
"""

from __future__ import annotations

import atexit
import datetime as dt
import importlib
import json
import logging
import os
import re
import secrets
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from modemgw import numbers, text, urls
from modemgw.store import NotFound

if TYPE_CHECKING:
    from modemgw.gateway import SubmitRequest
    from modemgw.mail import MailSender
    from modemgw.settings import GatewaySettings
    from modemgw.store import Store

log = logging.getLogger("modemgw.rules")

ACTIONS = ("email", "sms", "webhook", "autoreply", "stop")
MATCH_FIELDS = ("sim", "sender", "keyword", "regex")
ACTION_FIELDS = {"email": ("to", "subject", "body"), "sms": ("to", "group", "body"), "webhook": ("url",),
                 "autoreply": ("body", "window_minutes"), "stop": ()}
PLACEHOLDERS = {"sender": "the sender's number (or name)", "text": "the message's text",
                "sim": "the SIM it came to (its label)", "time": "when it arrived (local time)",
                "rule": "this rule's name"}
DEFAULT_SUBJECT = "SMS from {sender} to {sim}"
DEFAULT_EMAIL_BODY = "From: {sender}\nTo SIM: {sim}\nReceived: {time}\n\n{text}\n"
DEFAULT_SMS_BODY = "{sender}: {text}"
DEFAULT_WINDOW = 1440       # minutes between two auto-replies to one sender (a day)
MAX_WINDOW = 30 * 1440      # minutes: a month
MAX_RULES = 200
MAX_NAME = 60
MAX_PATTERN = 200           # characters of a regular expression
MAX_KEYWORD = 40
MAX_SENDER = 40
MAX_SUBJECT = 200
MAX_TEMPLATE = 2000         # characters of a body template
MAX_TARGETS = 10            # e-mail addresses, or numbers, of one action
MAX_ADDRESS = 254
MAX_URL = 2048
REGEX_INPUT_CHARS = 2000    # of a text, what a regular expression sees
REGEX_TIME_LIMIT = 0.5      # seconds one match may take (wall clock: room for a busy machine)
WEBHOOK_EVENT = "inbound.rule"
KEYWORD_PUNCTUATION = ".,!?:;"


class RuleError(ValueError):
    """A rule that cannot be saved as given, or a dry run that cannot run: `detail` says what to fix, `field`
    names the input at fault ("name", "match.regex", "action.to", ...)."""

    def __init__(self, detail: str, field: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.field = field


# --- regular expressions ---------------------------------------------------------------------------------------

_PARSER: Any = importlib.import_module("re._parser")  # the parser `re` compiles with: the pattern as `re` reads it
_OPS: Any = importlib.import_module("re._constants")
_REPEATS = {_OPS.MAX_REPEAT, _OPS.MIN_REPEAT, *([_OPS.POSSESSIVE_REPEAT] if hasattr(_OPS, "POSSESSIVE_REPEAT")
                                               else [])}
REGEX_FLAGS = re.IGNORECASE


def _backtracking(items: Any, repeated: bool) -> str | None:
    """What in a parsed pattern can backtrack exponentially (None: nothing). `repeated`: inside a group that
    repeats (more than once)."""
    for op, value in items:
        if op in (_OPS.GROUPREF, _OPS.GROUPREF_EXISTS):
            return "backreferences (\\1, (?P=name), (?(1)...)) are not allowed"
        if op in (_OPS.ASSERT, _OPS.ASSERT_NOT):
            return "lookarounds ((?=...), (?!...), (?<=...), (?<!...)) are not allowed"
        if op in _REPEATS:
            low, high, body = value
            if repeated and low != high:
                return ("a quantifier inside a repeated group, such as (a+)+ or (\\w*)*, is not allowed: it can take "
                        "forever on some texts; write the group once, e.g. a+ or \\w*")
            found = _backtracking(body, repeated or high > 1)
        elif op is _OPS.BRANCH:
            if repeated:
                return ("an alternation inside a repeated group, such as (a|ab)*, is not allowed: it can take "
                        "forever on some texts")
            found = next((problem for branch in value[1] if (problem := _backtracking(branch, repeated))), None)
        elif op is _OPS.SUBPATTERN:
            found = _backtracking(value[-1], repeated)
        elif op is getattr(_OPS, "ATOMIC_GROUP", None):
            found = _backtracking(value, repeated)
        else:
            found = None
        if found:
            return found
    return None


def regex_problem(pattern: str) -> str | None:
    """Why `pattern` may not be a rule's regular expression (None: it may). Bounded, compiled once here (never
    matched here), and refused when it can backtrack exponentially (see the module's docstring)."""
    if len(pattern) > MAX_PATTERN:
        return f"the regular expression is {len(pattern)} characters; at most {MAX_PATTERN} are taken"
    if any(char in "\r\n\x00" for char in pattern):
        return "the regular expression must be one line"
    try:
        re.compile(pattern, REGEX_FLAGS)
        parsed = _PARSER.parse(pattern, REGEX_FLAGS)
    except re.error as error:
        where = f" at character {error.pos + 1}" if error.pos is not None else ""
        return f"the regular expression is not valid{where}: {error.msg}"
    except (RecursionError, OverflowError):
        return "the regular expression nests too deeply"
    return _backtracking(parsed, False)


# The helper process: plain Python with `re` (no site, no modemgw), one request per line on stdin, one answer per
# line on stdout ("1" found, "0" not, "E" the pattern failed). Patterns are compiled once and kept.
_HELPER = """
import json, re, sys
compiled = {}
out = sys.stdout
out.write("ready\\n")
out.flush()
for line in sys.stdin:
    try:
        request = json.loads(line)
        pattern = compiled.get(request["p"])
        if pattern is None:
            if len(compiled) >= 256:
                compiled.clear()
            pattern = compiled[request["p"]] = re.compile(request["p"], request["f"])
        out.write("1\\n" if pattern.search(request["t"]) else "0\\n")
    except Exception:
        out.write("E\\n")
    out.flush()
"""


class RegexCutOff(Exception):
    """A match took longer than the time limit, or no helper process could run it."""


class RegexMatcher:
    """Searches rules' regular expressions in a helper process, each search within `time_limit` seconds: a pattern
    that would backtrack for minutes is cut off (the helper is killed, and started again on the next search), and
    never holds up the inbound path. One search at a time (they take microseconds)."""

    def __init__(self, time_limit: float = REGEX_TIME_LIMIT, start_timeout: float = 10.0):
        self.time_limit = time_limit
        self.start_timeout = start_timeout
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._pending = b""

    def search(self, pattern: str, subject: str) -> bool:
        """Whether `pattern` is found in (the first REGEX_INPUT_CHARS characters of) `subject`. Raises RegexCutOff."""
        request = (json.dumps({"p": pattern, "f": int(REGEX_FLAGS), "t": subject[:REGEX_INPUT_CHARS]}) + "\n").encode()
        with self._lock:
            process = self._running()
            try:
                assert process.stdin is not None
                process.stdin.write(request)
                process.stdin.flush()
                answer = self._line(process, self.time_limit)
            except (OSError, ValueError) as error:
                self._stop()
                raise RegexCutOff(f"the regular expression helper failed: {error}") from None
            if answer is None:
                self._stop()
                raise RegexCutOff(f"the regular expression took longer than {self.time_limit:g} s on this text")
            if answer == b"E":
                raise RegexCutOff("the regular expression failed on this text")
            return answer == b"1"

    def close(self) -> None:
        """Stop the helper process (a later search starts a new one)."""
        with self._lock:
            self._stop()

    def _running(self) -> subprocess.Popen:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self._stop()
        try:
            process = subprocess.Popen([sys.executable, "-I", "-S", "-c", _HELPER], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True)
        except OSError as error:
            raise RegexCutOff(f"cannot start the regular expression helper: {error.strerror or error}") from None
        self._process, self._pending = process, b""
        if self._line(process, self.start_timeout) != b"ready":
            self._stop()
            raise RegexCutOff("the regular expression helper did not start")
        return process

    def _line(self, process: subprocess.Popen, timeout: float) -> bytes | None:
        """The helper's next answer line, or None when none came within `timeout` seconds (or it ended)."""
        assert process.stdout is not None
        descriptor = process.stdout.fileno()
        end = time.monotonic() + timeout
        while b"\n" not in self._pending:
            left = end - time.monotonic()
            if left <= 0 or not select.select([descriptor], [], [], left)[0]:
                return None
            chunk = os.read(descriptor, 4096)
            if not chunk:
                return None
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line.strip()

    def _stop(self) -> None:
        process, self._process, self._pending = self._process, None, b""
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


MATCHER = RegexMatcher()
atexit.register(MATCHER.close)


# --- checking rules ---------------------------------------------------------------------------------------------

def _text(value: Any, field: str, limit: int, *, multiline: bool = False) -> str:
    """`value` as text of at most `limit` characters, checked before anything else reads it. Raises RuleError."""
    if not isinstance(value, str):
        raise RuleError(f"{field} must be text, not {type(value).__name__}", field)
    if len(value) > limit:
        raise RuleError(f"{field} is {len(value):,} characters; at most {limit:,} are taken", field)
    if any("\ud800" <= char <= "\udfff" for char in value):
        raise RuleError(f"{field} has a lone UTF-16 surrogate (a broken emoji); send valid Unicode", field)
    if any((char < " " and not (multiline and char in "\n\t")) or "\x7f" <= char <= "\x9f" for char in value):
        raise RuleError(f"{field} must not contain control characters{'' if multiline else ' (one line)'}", field)
    return value


def check_name(value: Any) -> str:
    """A rule's name as saved (blanks around it dropped). Raises RuleError."""
    name = _text(value, "name", 4 * MAX_NAME).strip()
    if not 1 <= len(name) <= MAX_NAME:
        raise RuleError(f"the name must be 1 to {MAX_NAME} characters, not {len(name)}", "name")
    return name


def check_template(value: Any, field: str, limit: int = MAX_TEMPLATE, *, multiline: bool = True) -> str:
    """A text with placeholders ({sender}, {text}, {sim}, {time}, {rule}). Raises RuleError."""
    template = _text(value, field, limit, multiline=multiline)
    if not template.strip():
        raise RuleError(f"{field} is empty: write the text", field)
    try:
        used = text.template_fields(template)
    except text.TextError as error:
        raise RuleError(f"{field}: {error}", field) from None
    unknown = [name for name in used if name not in PLACEHOLDERS]
    if unknown:
        raise RuleError(f"{field}: {{{unknown[0]}}} is not a placeholder here; use "
                        f"{', '.join('{' + name + '}' for name in PLACEHOLDERS)} (write \\{{ for a brace itself)",
                        field)
    return template


def check_address(value: str, field: str = "action.to") -> str:
    """An e-mail address (the domain in lower case). Raises RuleError. A plain check of its shape (one @, a local
    part, a domain of letters, digits, - and .): the relay decides whether it exists."""
    address = value.strip()
    local, at, domain = address.rpartition("@")
    labels = domain.split(".")
    if (not at or not local or not domain or len(address) > MAX_ADDRESS or "@" in local
            or any(char <= " " or char in '<>()[]\\,;:"' or char == "\x7f" for char in address)
            or not all(label and all(char.isalnum() or char == "-" for char in label) for label in labels)):
        raise RuleError(f"{address[:60]!r} is not an e-mail address such as ops@example.com", field)
    return f"{local}@{domain.lower()}"


def _targets(value: Any, field: str) -> list[str]:
    """A list of strings, or one string split at commas (and semicolons, spaces, new lines)."""
    if isinstance(value, str):
        if len(value) > MAX_TARGETS * (MAX_ADDRESS + 2):
            raise RuleError(f"{field} is too long: at most {MAX_TARGETS} addresses or numbers", field)
        value = [item for item in value.replace(";", ",").replace("\n", ",").split(",") if item.strip()]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise RuleError(f"{field} must be a list of texts (or one text, comma-separated)", field)
    if len(value) > MAX_TARGETS:
        raise RuleError(f"{field} has {len(value)} entries; at most {MAX_TARGETS}", field)
    return [_text(item, field, MAX_ADDRESS + 2).strip() for item in value]


def _whole(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RuleError(f"{field} must be a whole number from {low} to {high}, not {value!r}", field)
    return value


def first_word(body: str) -> str:
    """The first word of a text, without the punctuation around it: what a keyword is compared with."""
    words = body[:200].split(None, 1)
    return words[0].strip(KEYWORD_PUNCTUATION) if words else ""


def _describe_match(match: dict, labels: dict[int, str]) -> str:
    parts = []
    if match.get("sim") is not None:
        parts.append(f"to SIM {labels.get(match['sim'], '#' + str(match['sim']))}")
    if match.get("sender"):
        sender = match["sender"]
        parts.append(f"from numbers starting {sender[:-1]}" if sender.endswith("*") else f"from {sender}")
    if match.get("keyword"):
        parts.append(f"first word {match['keyword']}")
    if match.get("regex"):
        parts.append(f"text matching /{match['regex']}/")
    return ", ".join(parts) or "every message"


def _describe_action(action: dict) -> str:
    kind = action["type"]
    if kind == "email":
        return "e-mail to " + ", ".join(action["to"])
    if kind == "sms":
        return "forward by SMS to " + ", ".join([*action.get("to", []), *(
            [f"group {action['group']}"] if action.get("group") else [])])
    if kind == "webhook":
        return f"webhook {action['url']}"
    if kind == "autoreply":
        return f"auto-reply (at most once per sender {_per(action['window_minutes'])})"
    return "stop: no later rule runs"


def _per(minutes: int) -> str:
    """A rate window in words: "a day", "every 2 days", "an hour", "every 90 minutes"."""
    for size, unit in ((1440, "day"), (60, "hour"), (1, "minute")):
        if minutes % size == 0:
            count = minutes // size
            return f"{'an' if unit == 'hour' else 'a'} {unit}" if count == 1 else f"every {count} {unit}s"
    return f"every {minutes} minutes"


def describe(rule: dict, labels: dict[int, str] | None = None) -> dict:
    """A rule as every edge shows it: its row (id, position, name, enabled, match, action, created_at, updated_at)
    with `when` and `then`, one line each for people."""
    return rule | {"when": _describe_match(rule["match"], labels or {}), "then": _describe_action(rule["action"])}


class _Inbound:
    """One inbound message as the rules see it (real, or a dry run's)."""

    def __init__(self, inbox_id: int | None, modem_id: int | None, sender: str, body: str, sim: str,
                 region: str | None):
        self.inbox_id, self.modem_id, self.sender, self.body, self.sim = inbox_id, modem_id, sender, body, sim
        self.received = time.time()
        try:
            self.number: str | None = numbers.normalize(sender, region)
        except numbers.NumberError:
            self.number = None  # an alphanumeric sender ("BANK"): no answer can reach it
        self.forms = {sender.strip().casefold(), *([self.number.casefold()] if self.number else [])}
        self.word = first_word(body).casefold()

    def values(self, rule: dict) -> dict[str, str]:
        return {"sender": self.number or self.sender, "text": self.body, "sim": self.sim, "rule": rule["name"],
                "time": time.strftime("%Y-%m-%d %H:%M", time.localtime(self.received))}


def render(template: str, values: dict[str, str]) -> str:
    """A checked template with its placeholders filled."""
    return text.Renderer(template, templates=True).render(values)


class InboundRules:
    """Inbound rules, through the gateway."""

    store: Store
    settings: GatewaySettings
    send: Callable[[SubmitRequest], dict]
    mail_sender: MailSender | None = None                  # attach_outboxes: sends the mail outbox
    _wake_webhooks: Callable[[], None] | None = None        # attach_outboxes: the webhook sender's wake-up

    def attach_outboxes(self, mail: MailSender | None, wake_webhooks: Callable[[], None] | None) -> None:
        """The threads that empty the outboxes rules write to (the daemon's): woken when a rule queues work."""
        self.mail_sender = mail
        self._wake_webhooks = wake_webhooks

    def close_inbound_rules(self) -> None:
        """At shutdown: stop the regular expressions' helper process (a later match starts it again)."""
        MATCHER.close()

    # --- managing rules -----------------------------------------------------------------------------------------

    def _sim_labels(self) -> dict[int, str]:
        return {row["id"]: row["label"] or f"#{row['id']}" for row in self.store.modems()}

    def inbound_rules(self) -> list[dict]:
        """Every rule in the order they are evaluated (`describe`). Raises StoreError."""
        labels = self._sim_labels()
        return [describe(rule, labels) for rule in self.store.rules()]

    def inbound_rule(self, rule_id: int) -> dict:
        """One rule (`describe`). Raises NotFound, StoreError."""
        return describe(self.store.rule(rule_id), self._sim_labels())

    def check_rule_match(self, match: Any) -> dict:
        """A rule's match as saved: the conditions given (null or empty ones left out). Raises RuleError."""
        if match is None:
            return {}
        if not isinstance(match, dict):
            raise RuleError("match must be an object with any of sim, sender, keyword, regex", "match")
        unknown = [key for key in match if key not in MATCH_FIELDS]
        if unknown:
            raise RuleError(f"match has no field {str(unknown[0])[:40]!r} (fields: {', '.join(MATCH_FIELDS)})",
                            "match")
        checked: dict = {}
        sim = match.get("sim")
        if sim is not None:
            sim = _whole(sim, "match.sim", 1, 2**63 - 1)
            try:
                self.store.modem(sim)
            except NotFound:
                raise RuleError(f"there is no SIM (modem) {sim}; give a modem's id from the modems list",
                                "match.sim") from None
            checked["sim"] = sim
        sender = match.get("sender")
        if sender is not None and _text(sender, "match.sender", MAX_SENDER).strip():
            checked["sender"] = self._check_sender(sender.strip())
        keyword = match.get("keyword")
        if keyword is not None and _text(keyword, "match.keyword", MAX_KEYWORD).strip():
            word = keyword.strip().strip(KEYWORD_PUNCTUATION)
            if not word or any(char.isspace() for char in word):
                raise RuleError("match.keyword must be one word (it is compared with the first word of the text)",
                                "match.keyword")
            checked["keyword"] = word
        pattern = match.get("regex")
        if pattern is not None and _text(pattern, "match.regex", MAX_PATTERN):
            problem = regex_problem(pattern)
            if problem:
                raise RuleError(problem, "match.regex")
            checked["regex"] = pattern
        return checked

    def _check_sender(self, sender: str) -> str:
        """An exact sender in E.164 when it is a number (else as written: an alphanumeric name), or a prefix
        ending in `*` with the blanks in it dropped."""
        if sender.endswith("*"):
            prefix = "".join(sender[:-1].split())
            if not prefix or "*" in prefix:
                raise RuleError("match.sender: a prefix is the start of a number followed by one *, e.g. +4477*",
                                "match.sender")
            return prefix + "*"
        if "*" in sender:
            raise RuleError("match.sender: * may only end a prefix, e.g. +4477*", "match.sender")
        if sender.lstrip("+").replace(" ", "").replace("-", "").isdigit():
            try:
                return numbers.normalize(sender, self.settings.default_region)
            except numbers.NumberError as error:
                raise RuleError(f"match.sender: {error}", "match.sender") from None
        return sender

    def check_rule_action(self, action: Any) -> dict:
        """A rule's action as saved, defaults filled in. Raises RuleError."""
        if not isinstance(action, dict) or "type" not in action:
            raise RuleError(f"action must be an object with a type: {', '.join(ACTIONS)}", "action.type")
        kind = action["type"]
        if kind not in ACTIONS:
            raise RuleError(f"action.type must be one of {', '.join(ACTIONS)}, not {str(kind)[:40]!r}", "action.type")
        unknown = [key for key in action if key != "type" and key not in ACTION_FIELDS[kind]]
        if unknown:
            fields = ", ".join(ACTION_FIELDS[kind]) or "none"
            raise RuleError(f"a {kind} action has no field {str(unknown[0])[:40]!r} (its fields: {fields})",
                            f"action.{str(unknown[0])[:40]}")
        given = {key: value for key, value in action.items() if value is not None and value != ""}
        checked: dict = {"type": kind}
        if kind == "email":
            if "to" not in given:
                raise RuleError("an e-mail action needs 'to': the addresses to forward to", "action.to")
            checked["to"] = [check_address(item) for item in _targets(given["to"], "action.to")]
            if not checked["to"]:
                raise RuleError("an e-mail action needs at least one address in 'to'", "action.to")
            checked["subject"] = check_template(given.get("subject", DEFAULT_SUBJECT), "action.subject",
                                                MAX_SUBJECT, multiline=False)
            checked["body"] = check_template(given.get("body", DEFAULT_EMAIL_BODY), "action.body")
        elif kind == "sms":
            numbers_given = _targets(given.get("to", []), "action.to")
            checked["to"] = []
            for number in numbers_given:
                try:
                    checked["to"].append(numbers.normalize(number, self.settings.default_region))
                except numbers.NumberError as error:
                    raise RuleError(f"action.to: {error}", "action.to") from None
            if given.get("group") is not None:
                name = _text(given["group"], "action.group", 100).strip()
                try:
                    checked["group"] = self.store.group_named(name)["name"]
                except NotFound:
                    raise RuleError(f"there is no contact group called {name!r}", "action.group") from None
            if not checked["to"] and not checked.get("group"):
                raise RuleError("an SMS forward needs numbers in 'to' and/or a contact group in 'group'", "action.to")
            checked["body"] = check_template(given.get("body", DEFAULT_SMS_BODY), "action.body")
        elif kind == "webhook":
            url = _text(given.get("url", ""), "action.url", MAX_URL).strip()
            if not url:
                raise RuleError("a webhook action needs 'url': where to POST the message", "action.url")
            try:
                urls.check_callback(url, private=self.settings.callback_private_destinations)
            except urls.UrlError as error:
                raise RuleError(f"action.url {error}", "action.url") from None
            checked["url"] = url
        elif kind == "autoreply":
            if "body" not in given:
                raise RuleError("an auto-reply needs 'body': the answer's text", "action.body")
            checked["body"] = check_template(given["body"], "action.body")
            checked["window_minutes"] = _whole(given.get("window_minutes", DEFAULT_WINDOW), "action.window_minutes",
                                               1, MAX_WINDOW)
            sample = render(checked["body"], {name: name for name in PLACEHOLDERS} | {"text": ""})
            if text.info(sample).segments > self.settings.max_segments:
                raise RuleError(f"the answer needs more than {self.settings.max_segments} segments (the gateway's "
                                "max_segments); shorten it", "action.body")
        return checked

    def create_inbound_rule(self, name: Any, match: Any, action: Any, *, enabled: Any = True,
                            position: Any = None) -> dict:
        """Save a new rule, last in the order (or at `position`, 1-based). Raises RuleError, StoreError."""
        if not isinstance(enabled, bool):
            raise RuleError("enabled must be true or false", "enabled")
        if position is not None:
            position = _whole(position, "position", 1, MAX_RULES)
        name = check_name(name)
        match, action = self.check_rule_match(match), self.check_rule_action(action)
        if len(self.store.rules()) >= MAX_RULES:
            raise RuleError(f"there are {MAX_RULES} rules already; delete one first", "name")
        return describe(self.store.add_rule(name, enabled, match, action, time.time(), position), self._sim_labels())

    def update_inbound_rule(self, rule_id: int, **changes: Any) -> dict:
        """Change a rule's `name`, `enabled`, `match`, `action` (each replaced whole) and/or `position` (1-based:
        where it moves in the order). Raises RuleError, NotFound, StoreError."""
        unknown = sorted(set(changes) - {"name", "enabled", "match", "action", "position"})
        if unknown:
            raise RuleError(f"unknown field {unknown[0]!r} (fields: name, enabled, match, action, position)",
                            unknown[0])
        self.store.rule(rule_id)  # NotFound before any other complaint
        checked: dict = {}
        if "name" in changes:
            checked["name"] = check_name(changes["name"])
        if "enabled" in changes:
            if not isinstance(changes["enabled"], bool):
                raise RuleError("enabled must be true or false", "enabled")
            checked["enabled"] = changes["enabled"]
        if "match" in changes:
            checked["match"] = self.check_rule_match(changes["match"])
        if "action" in changes:
            checked["action"] = self.check_rule_action(changes["action"])
        position = None
        if changes.get("position") is not None:
            position = _whole(changes["position"], "position", 1, MAX_RULES)
        return describe(self.store.update_rule(rule_id, checked, time.time(), position), self._sim_labels())

    def move_inbound_rule(self, rule_id: int, offset: int) -> dict:
        """Move a rule `offset` places (-1: up, earlier; 1: down). Raises NotFound, StoreError."""
        rule = self.store.rule(rule_id)
        return describe(self.store.update_rule(rule_id, {}, time.time(), max(1, rule["position"] + offset)),
                        self._sim_labels())

    def delete_inbound_rule(self, rule_id: int) -> None:
        """Delete a rule (and its auto-reply log). Raises NotFound, StoreError."""
        self.store.delete_rule(rule_id)

    # --- evaluating rules -----------------------------------------------------------------------------------------

    def _is_keyword(self, body: str) -> bool:
        """Whether `body` is a STOP or START reply (as `Gateway._keywords` reads it): no rule runs for it."""
        word = body.strip().strip(".!").upper()
        return word in self.settings.stop_words or word in self.settings.start_words

    def _sim_name(self, modem_id: int | None) -> str:
        if modem_id is None:
            return "unknown SIM"
        try:
            return self.store.modem(modem_id)["label"] or f"SIM #{modem_id}"
        except NotFound:
            return f"SIM #{modem_id}"

    def _why_not(self, rule: dict, inbound: _Inbound) -> str | None:
        """Why `rule` does not match `inbound` (None: it matches). Raises RegexCutOff."""
        match = rule["match"]
        if match.get("sim") is not None and match["sim"] != inbound.modem_id:
            wanted = self._sim_name(match["sim"])
            if inbound.modem_id is None:
                return f"the rule is for messages to {wanted} (choose that SIM to test it)"
            return f"it came to {inbound.sim}, not to {wanted}"
        sender = match.get("sender")
        if sender:
            if sender.endswith("*"):
                prefix = sender[:-1].casefold()
                if not any(form.startswith(prefix) for form in inbound.forms):
                    return f"the sender {inbound.number or inbound.sender} does not start with {sender[:-1]}"
            elif sender.casefold() not in inbound.forms:
                return f"the sender {inbound.number or inbound.sender} is not {sender}"
        keyword = match.get("keyword")
        if keyword and keyword.casefold() != inbound.word:
            return f"the first word is {first_word(inbound.body)[:40]!r}, not {keyword!r}"
        pattern = match.get("regex")
        if pattern and not MATCHER.search(pattern, inbound.body):
            return f"the text does not match /{pattern}/"
        return None

    def apply_inbound_rules(self, inbox_id: int, modem_id: int | None, sender: str, body: str) -> None:
        """Evaluate the rules for a stored inbound message (called by `Gateway._inbound_recorded` after STOP/START).
        Never raises for one bad rule: every background path survives a single bad item."""
        try:
            if self._is_keyword(body):
                return  # an opt-out (or back in) is never answered nor forwarded
            rules = [rule for rule in self.store.rules() if rule["enabled"]]
            if not rules:
                return
            inbound = _Inbound(inbox_id, modem_id, sender, body, self._sim_name(modem_id), self.settings.default_region)
        except Exception:  # the inbound message is stored; its rules must never fail the worker
            log.exception("inbound %s: the rules could not be read; none ran", inbox_id)
            return
        for rule in rules:
            try:
                reason = self._why_not(rule, inbound)
                if reason is not None:
                    continue
                if rule["action"]["type"] == "stop":
                    log.info("inbound %s: rule %s (%s) stops the rules", inbox_id, rule["id"], rule["name"])
                    return
                outcome = self._act(rule, inbound)
                log.info("inbound %s: rule %s (%s): %s", inbox_id, rule["id"], rule["name"], outcome)
            except RegexCutOff as error:
                log.warning("inbound %s: rule %s (%s) skipped: %s", inbox_id, rule["id"], rule["name"], error)
            except Exception:  # one bad rule (a full disk, a bug) must not stop the others
                log.exception("inbound %s: rule %s (%s) failed", inbox_id, rule["id"], rule["name"])

    def _act(self, rule: dict, inbound: _Inbound) -> str:
        """Carry out a matching rule's action for a real inbound message (rows only: threads send them); what was
        done. Raises StoreError and the like (the caller logs them)."""
        from modemgw.gateway import SubmitRequest

        action, values = rule["action"], inbound.values(rule)
        kind = action["type"]
        if kind == "email":
            mail_id = self.queue_mail(action["to"], render(action["subject"], values), render(action["body"], values),
                                      source=f"rule {rule['id']}, inbound {inbound.inbox_id}")
            return f"e-mail {mail_id} queued to {', '.join(action['to'])}"
        if kind == "sms":
            if inbound.number is not None and inbound.number in self._our_numbers():
                return "not forwarded: it came from one of our own SIMs (a forward loop)"
            targets = [number for number in action.get("to", []) if number != inbound.number]
            if not targets and not action.get("group"):
                return "not forwarded: its only recipient is its sender"
            result = self.send(SubmitRequest(render(action["body"], values), to=targets or None,
                                             groups=[action["group"]] if action.get("group") else None))
            return f"forwarded as SMS {[message['id'] for message in result['messages']]}"
        if kind == "webhook":
            self._queue_rule_webhook(rule, inbound)
            return f"webhook queued for {action['url']}"
        if kind == "autoreply":
            if inbound.number is None:
                return f"no auto-reply: the sender {inbound.sender!r} cannot receive SMS"
            now = time.time()
            if not self.store.claim_autoreply(rule["id"], inbound.number, now - action["window_minutes"] * 60, now):
                return f"no auto-reply: {inbound.number} was answered within the last {action['window_minutes']} min"
            result = self.send(SubmitRequest(render(action["body"], values), reply_to=inbound.inbox_id))
            if result["skipped"]:
                return f"no auto-reply: {result['skipped'][0]['reason']}"
            return f"auto-reply {result['messages'][0]['id']} queued"
        return "nothing"

    def _our_numbers(self) -> set[str]:
        return {row["number"] for row in self.store.modems() if row.get("number")}

    def _queue_rule_webhook(self, rule: dict, inbound: _Inbound) -> None:
        """A delivery in the webhook outbox's callback lane (signed with the callback secret, like a message's own
        callback_url), and a wake-up for its sender."""
        from modemgw.webhooks import callback_secret

        callback_secret(self.store)  # created now when it is not yet: the sender signs with it
        event_id = "evt_" + secrets.token_hex(12)
        payload = {"event": WEBHOOK_EVENT, "event_id": event_id,
                   "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                   "rule": {"id": rule["id"], "name": rule["name"]},
                   "inbound": {"id": inbound.inbox_id, "from": inbound.number or inbound.sender, "body": inbound.body,
                               "modem_id": inbound.modem_id, "sim": inbound.sim}}
        self.store.add_webhook_deliveries(WEBHOOK_EVENT, None, [(None, rule["action"]["url"], event_id,
                                                                 json.dumps(payload, ensure_ascii=False))],
                                          time.time())
        if self._wake_webhooks is not None:
            self._wake_webhooks()

    # --- the dry run ----------------------------------------------------------------------------------------------

    def test_inbound_rules(self, sender: Any, body: Any, sim: Any = None, *, rule_id: int | None = None,
                           rule: dict | None = None) -> dict:
        """What the rules would do with a message from `sender` to the SIM `sim` (a modem id, or None) saying
        `body`, doing nothing: every rule in order (only rule `rule_id`, or an unsaved `rule` {name, match,
        action}, when given), each with whether it matched, why not, and what it would do.

        Returns {"keyword": bool (a STOP/START reply: no rule runs), "results": [{"rule", "matched", "reason",
        "would"}], "stopped_by": the id of the stop rule that ends the run, or None}. Raises RuleError, NotFound,
        StoreError."""
        sender = _text(sender, "from", MAX_SENDER).strip()
        if not sender:
            raise RuleError("'from' is empty: give the sender's number", "from")
        body = _text(body, "text", text.MAX_BODY_CHARS, multiline=True)
        if sim is not None:
            sim = _whole(sim, "sim", 1, 2**63 - 1)
        labels = self._sim_labels()
        if rule is not None:
            if not isinstance(rule, dict):
                raise RuleError("rule must be an object with name, match and action", "rule")
            candidate = {"id": None, "position": None, "enabled": True, "name": check_name(rule.get("name", "test")),
                         "match": self.check_rule_match(rule.get("match")),
                         "action": self.check_rule_action(rule.get("action"))}
            rules = [describe(candidate, labels)]
        elif rule_id is not None:
            rules = [describe(self.store.rule(_whole(rule_id, "rule_id", 1, 2**63 - 1)), labels)]
        else:
            rules = [describe(row, labels) for row in self.store.rules()]
        inbound = _Inbound(None, sim, sender, body, labels.get(sim, f"SIM #{sim}") if sim is not None
                           else "unknown SIM", self.settings.default_region)
        if self._is_keyword(body):
            return {"keyword": True, "results": [{"rule": row, "matched": False, "would": None,
                                                  "reason": "a STOP/START reply goes through no rule"}
                                                 for row in rules], "stopped_by": None}
        results: list[dict] = []
        stopper: dict | None = None
        for row in rules:
            if stopper is not None:
                results.append({"rule": row, "matched": False, "would": None,
                                "reason": f"not evaluated: rule {stopper['name']!r} stops the rules before it"})
                continue
            if not row["enabled"] and rule_id is None:
                results.append({"rule": row, "matched": False, "would": None, "reason": "the rule is disabled"})
                continue
            try:
                reason = self._why_not(row, inbound)
            except RegexCutOff as error:
                reason = f"skipped: {error}"
            if reason is not None:
                results.append({"rule": row, "matched": False, "would": None, "reason": reason})
                continue
            if row["action"]["type"] == "stop":
                stopper = row
            results.append({"rule": row, "matched": True, "reason": None, "would": self._would(row, inbound)})
        return {"keyword": False, "results": results, "stopped_by": stopper["id"] if stopper is not None else None}

    def _would(self, rule: dict, inbound: _Inbound) -> str:
        """What a matching rule would do with `inbound`, in words, doing nothing."""
        action, values = rule["action"], inbound.values(rule)
        kind = action["type"]
        if kind == "email":
            relay = "" if self.mail_relay() else " (no [smtp] relay is configured: it would wait in the outbox)"
            return (f"e-mail to {', '.join(action['to'])}{relay}, subject {render(action['subject'], values)!r}:\n"
                    f"{render(action['body'], values)}")
        if kind == "sms":
            targets = [*action.get("to", []), *([f"group {action['group']}"] if action.get("group") else [])]
            return f"SMS to {', '.join(targets)}: {render(action['body'], values)}"
        if kind == "webhook":
            return f"POST to {action['url']} (event {WEBHOOK_EVENT}) with the message, signed with the callback secret"
        if kind == "autoreply":
            if inbound.number is None:
                return f"no answer: the sender {inbound.sender!r} cannot receive SMS"
            if self.store.optouts_among([inbound.number]):
                return f"no answer: {inbound.number} has opted out"
            answered = self.store.last_autoreply(rule["id"], inbound.number) if rule["id"] is not None else None
            if answered is not None and answered > time.time() - action["window_minutes"] * 60:
                return (f"no answer: this rule answered {inbound.number} at "
                        f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(answered))} (once per "
                        f"{action['window_minutes']} minutes)")
            source = inbound.sim if inbound.modem_id is not None else "the SIM it came to"
            return f"answer {inbound.number} from {source}: {render(action['body'], values)}"
        return "stop: no later rule runs"

    # --- the mail outbox ------------------------------------------------------------------------------------------

    def mail_relay(self) -> str | None:
        """The SMTP relay e-mails go through ("host:port"), or None when none is configured (they wait)."""
        sender = self.mail_sender
        return sender.relay if sender is not None else None

    def queue_mail(self, recipients: list[str], subject: str, body: str, source: str | None = None) -> int:
        """Queue an e-mail to `recipients` (checked addresses) in the durable outbox, for the mail sender's thread
        (nothing here waits on SMTP): its id. The subject is made one line of at most MAX_SUBJECT characters.
        Raises StoreError."""
        subject = " ".join(subject.split())[:MAX_SUBJECT] or "(no subject)"
        mail_id = self.store.add_mail(list(recipients), subject, body, source, time.time())
        if self.mail_sender is not None:
            self.mail_sender.wake()
        return mail_id

    def mail_outbox(self, limit: int = 50) -> list[dict]:
        """The latest e-mails of the outbox, newest first. Raises StoreError."""
        return self.store.recent_mail(limit)

    def mail_counts(self) -> dict[str, int]:
        """E-mails of the outbox by status: pending, sent, dead. Raises StoreError."""
        return {"pending": 0, "sent": 0, "dead": 0} | self.store.mail_backlog()

    def purge_rules_data(self) -> int:
        """Housekeeping (daily): auto-reply entries past the longest window, sent and dead e-mails past
        `retention_days`. How many rows went. Raises StoreError."""
        now = time.time()
        return (self.store.purge_autoreplies(now - MAX_WINDOW * 60)
                + self.store.purge_mail(now - self.settings.retention_days * 86400))


__all__ = ["ACTIONS", "MATCHER", "PLACEHOLDERS", "InboundRules", "RegexCutOff", "RegexMatcher", "RuleError",
           "check_address", "describe", "first_word", "regex_problem", "render"]
