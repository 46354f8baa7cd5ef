"""Alerting systems' notifications (Prometheus Alertmanager, Grafana) turned into SMS, de-duplicated.

`Alerts` is a part of `Gateway` (a mixin over `self.store`); the API's receivers (modemgw/api_alerts.py) call
`Gateway.notify_alert`.

One notification is one SMS to each recipient, whatever the number of alerts grouped in it: a person paged at
night wants to know what is wrong, not to receive 40 messages. The text says the status, how many alerts fire,
what the group is and which instances, then each alert's summary, cut to fit the gateway's `max_segments` (and
kept GSM-7 whenever typographic look-alikes are all that stands in the way, so each segment holds 153 characters
rather than 67):

    [FIRING:2] HighLatency (api, db)
    api: Latency above 2s
    db: Latency above 5s

Both systems post the same shape: Alertmanager's webhook payload (version 4) and Grafana's webhook contact point
(Grafana 9+ unified alerting, version 1, a superset of it). Fields this module does not use are ignored, so a
newer sender that adds fields keeps working; the fields it uses are checked and bounded (`MAX_ALERTS` alerts are
read, each label map at most `MAX_PAIRS` pairs of bounded names and values).

De-duplication: Alertmanager re-sends a group after `repeat_interval`, an HA pair sends the same notification
twice, and a timed-out post is retried. A notification's identity is its sender, receiver, group key, status and
its alerts (fingerprint, start, status), with its recipients; the same identity within `[alerts]
group_interval` seconds sends nothing and answers what the first one sent. The payload does not carry the
sender's group interval, hence the setting.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modemgw import text

if TYPE_CHECKING:
    from modemgw.settings import GatewaySettings
    from modemgw.store import Store

log = logging.getLogger("modemgw.alerts")

SOURCES = ("alertmanager", "grafana")
STATUSES = ("firing", "resolved")
MAX_ALERTS = 1000          # alerts read from one notification; more are counted as left out ("+N more")
MAX_PAIRS = 256            # labels (or annotations) of one alert or group
MAX_NAME_CHARS = 1024      # a label's or annotation's name
MAX_VALUE_CHARS = 32768    # a label's or annotation's value (a long description fits)
MAX_KEY_CHARS = 8192       # groupKey, receiver
MAX_TIME_CHARS = 64        # startsAt
MAX_FINGERPRINT_CHARS = 128
MAX_TRUNCATED = 10**9      # truncatedAlerts
MAX_RECIPIENTS = 100       # numbers in ?to= (and groups in ?group=)
LABELS_SHOWN_CHARS = 100   # the "(api, db)" part of the first line, so that summaries keep some room
PIECE_CHARS = 4000         # of one label value or summary in the text (longer ones are cut there)
PENDING_WINDOW = 60.0      # a claim never recorded (its process died mid-send) is taken over after this long
SUMMARY_ANNOTATIONS = ("summary", "description", "message")  # the first an alert has is its summary
ELLIPSIS = "\u2026"        # smart encoding makes it "..." when the rest of the text is GSM-7


class AlertError(ValueError):
    """A notification that cannot be sent as given: `detail` says what to fix, `field` names the input at fault.
    (Not SubmitError, which lives in modemgw.gateway: that module imports this one.)"""

    def __init__(self, detail: str, field: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.field = field


@dataclass(frozen=True)
class Alert:
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    fingerprint: str


@dataclass(frozen=True)
class Notification:
    """One notification as both senders post it. `truncated`: alerts the sender left out (its `max_alerts`) and
    those past MAX_ALERTS."""

    source: str
    status: str
    receiver: str
    group_key: str
    group_labels: dict[str, str]
    common_annotations: dict[str, str]
    alerts: list[Alert]
    truncated: int


# --- reading a payload ----------------------------------------------------------------------------------------

def _string(payload: dict, name: str, limit: int, default: str = "") -> str:
    value = payload.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise AlertError(f"'{name}' must be a string, not {json.dumps(value)[:40]}", name)
    if len(value) > limit:
        raise AlertError(f"'{name}' is {len(value):,} characters; at most {limit:,} are taken", name)
    return value


def _string_map(value: Any, where: str, field: str) -> dict[str, str]:
    """A label or annotation map: at most MAX_PAIRS string pairs of bounded size; absent or null is empty."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise AlertError(f"{where} must be an object of strings", field)
    if len(value) > MAX_PAIRS:
        raise AlertError(f"{where} has {len(value)} entries; at most {MAX_PAIRS} are taken", field)
    for name, item in value.items():
        if len(name) > MAX_NAME_CHARS:
            raise AlertError(f"{where} has a name of {len(name):,} characters; at most {MAX_NAME_CHARS} are taken",
                             field)
        if not isinstance(item, str):
            raise AlertError(f"{where}: {name[:40]!r} must be a string, not {json.dumps(item)[:40]}", field)
        if len(item) > MAX_VALUE_CHARS:
            raise AlertError(f"{where}: {name[:40]!r} is {len(item):,} characters; at most {MAX_VALUE_CHARS:,} are "
                             "taken", field)
    return value


def _status(value: Any, where: str, field: str) -> str:
    if value not in STATUSES:
        raise AlertError(f"{where} must be \"firing\" or \"resolved\", not {json.dumps(value)[:40]}", field)
    return value


def parse_notification(source: str, payload: dict) -> Notification:
    """Alertmanager's webhook payload (version 4) or Grafana's webhook contact point's (version 1), checked and
    bounded. Raises AlertError naming the field at fault."""
    if source not in SOURCES:
        raise ValueError(f"unknown alert source {source!r}")
    status = _status(payload.get("status"), "'status'", "status")
    items = payload.get("alerts")
    if not isinstance(items, list) or not items:
        raise AlertError("'alerts' must be a non-empty list of alerts (is this an Alertmanager or Grafana "
                         "webhook notification?)", "alerts")
    truncated = payload.get("truncatedAlerts") or 0
    if not isinstance(truncated, int) or isinstance(truncated, bool) or not 0 <= truncated <= MAX_TRUNCATED:
        raise AlertError("'truncatedAlerts' must be a whole number of alerts left out", "truncatedAlerts")
    alerts = []
    for position, item in enumerate(items[:MAX_ALERTS]):
        where = f"alerts[{position}]"
        if not isinstance(item, dict):
            raise AlertError(f"{where} must be an object", "alerts")
        labels = _string_map(item.get("labels"), f"{where}.labels", "alerts")
        starts_at = item.get("startsAt") or ""
        if not isinstance(starts_at, str) or len(starts_at) > MAX_TIME_CHARS:
            raise AlertError(f"{where}.startsAt must be an RFC 3339 time", "alerts")
        fingerprint = item.get("fingerprint")
        if fingerprint is None or fingerprint == "":  # a sender that gives none: the labels identify the alert
            fingerprint = hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]
        elif not isinstance(fingerprint, str) or len(fingerprint) > MAX_FINGERPRINT_CHARS:
            raise AlertError(f"{where}.fingerprint must be a string of at most {MAX_FINGERPRINT_CHARS} characters",
                             "alerts")
        alerts.append(Alert(
            status=status if item.get("status") is None else _status(item["status"], f"{where}.status", "alerts"),
            labels=labels, annotations=_string_map(item.get("annotations"), f"{where}.annotations", "alerts"),
            starts_at=starts_at, fingerprint=fingerprint))
    group_labels = _string_map(payload.get("groupLabels"), "'groupLabels'", "groupLabels")
    receiver = _string(payload, "receiver", MAX_KEY_CHARS)
    group_key = _string(payload, "groupKey", MAX_KEY_CHARS) or json.dumps([receiver, group_labels], sort_keys=True)
    # commonLabels is checked like the rest, but the text computes what the alerts share from the alerts themselves
    _string_map(payload.get("commonLabels"), "'commonLabels'", "commonLabels")
    return Notification(source, status, receiver, group_key, group_labels,
                        _string_map(payload.get("commonAnnotations"), "'commonAnnotations'", "commonAnnotations"),
                        alerts, truncated + max(0, len(items) - MAX_ALERTS))


# --- the text -------------------------------------------------------------------------------------------------

def _clean(value: str) -> str:
    """One line of at most PIECE_CHARS characters: runs of whitespace (newlines of a long description) become one
    space; a lone UTF-16 surrogate (JSON can carry one) becomes U+FFFD, since no SMS can."""
    line = " ".join(value[:2 * PIECE_CHARS].split())[:PIECE_CHARS]
    try:
        line.encode("utf-8")  # fails on a lone surrogate alone
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= char <= "\udfff" else char for char in line)
    return line


def _common(alerts: list[Alert]) -> dict[str, str]:
    common = dict(alerts[0].labels)
    for alert in alerts[1:]:
        common = {name: value for name, value in common.items() if alert.labels.get(name) == value}
    return common


def _own_labels(alerts: list[Alert], hidden: set[str]) -> list[str]:
    """What tells each alert apart from the others: its values of the labels not all of them share (in
    label-name order), leaving out `hidden` names (the group's labels, already in the title); "" for an alert
    with none."""
    if not alerts:
        return []
    common = _common(alerts)
    names = sorted({name for alert in alerts for name in alert.labels} - set(common) - hidden)
    return [_clean(" ".join(alert.labels[name] for name in names if name in alert.labels)) for alert in alerts]


def _summary(alert: Alert) -> str:
    for name in SUMMARY_ANNOTATIONS:
        if alert.annotations.get(name):
            return _clean(alert.annotations[name])
    return ""


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[:limit - 1].rstrip() + ELLIPSIS


def _listing(identifiers: list[str], more: int) -> str:
    """"api, db, +3 more": the identifiers that fit in LABELS_SHOWN_CHARS, then how many did not (with `more`, the
    alerts the notification left out)."""
    shown: list[str] = []
    length = 0
    for item in identifiers:
        item = _clip(item, LABELS_SHOWN_CHARS)
        if shown and length + len(item) > LABELS_SHOWN_CHARS:
            break
        shown.append(item)
        length += len(item) + 2
    more += len(identifiers) - len(shown)
    return ", ".join([*shown, f"+{more} more"] if more else shown)


def _segments(candidate: str) -> int:
    try:
        return text.info(candidate).segments
    except text.TextError:  # more than any SMS holds (text.MAX_PARTS segments)
        return text.MAX_PARTS + 1


def fit(message: str, max_segments: int) -> str:
    """`message` in at most `max_segments` SMS segments: GSM-7 when typographic look-alikes are all that stands in
    the way (smart encoding), else cut at the longest prefix that fits with an ellipsis."""
    message = message[:max_segments * 160 + 1]  # no SMS holds more characters than this: bound the work
    whole = text.smart_encode(message)[0]
    if _segments(whole) <= max_segments:
        return whole

    def cut(length: int) -> str:
        return text.smart_encode(message[:length].rstrip() + ELLIPSIS)[0]

    low, high = 0, len(message)  # cut(low) fits (an ellipsis alone does); find the longest that does
    while low < high:
        middle = (low + high + 1) // 2
        if _segments(cut(middle)) <= max_segments:
            low = middle
        else:
            high = middle - 1
    return cut(low)


def alert_text(notification: Notification, max_segments: int) -> str:
    """The SMS of one notification, within `max_segments`: "[FIRING:2] HighLatency (api, db)", then each alert's
    summary (its `summary`, else `description`, else `message` annotation; one line when they all share one), then
    the alerts of the group that resolved meanwhile. A resolved notification: "[RESOLVED] HighLatency (api, db)"
    and its summaries."""
    alerts = notification.alerts
    firing = [index for index, alert in enumerate(alerts) if alert.status == "firing"]
    resolved = [index for index, alert in enumerate(alerts) if alert.status == "resolved"]
    shown = firing if notification.status == "firing" and firing else list(range(len(alerts)))
    head = f"[FIRING:{len(firing)}]" if notification.status == "firing" else "[RESOLVED]"
    name = _clean(" ".join(value for _, value in sorted(notification.group_labels.items())))
    if not name:
        name = ", ".join(dict.fromkeys(_clean(alerts[index].labels["alertname"]) for index in shown
                                       if alerts[index].labels.get("alertname"))) or "alert"
    hidden = set(notification.group_labels) | ({"alertname"} if name != "alert" else set())
    own = _own_labels(alerts, hidden)  # what tells each alert apart from the rest of its group

    def distinct(indexes: list[int]) -> list[str]:
        return list(dict.fromkeys(own[index] for index in indexes if own[index]))

    identifiers = distinct(shown)
    if not identifiers:  # one alert, or all alike: what it has beyond the title, as Alertmanager's own title shows
        extra = {label: value for label, value in _common([alerts[index] for index in shown]).items()
                 if label not in hidden}
        identifiers = [_clean(" ".join(value for _, value in sorted(extra.items())))] if extra else []
    listing = _listing(identifiers, notification.truncated)
    first = f"{head} {name}" + (f" ({listing})" if listing else "")
    lines = [first]
    common = notification.common_annotations
    shared = next((_clean(common[key]) for key in SUMMARY_ANNOTATIONS if common.get(key)), "")
    summaries = list(dict.fromkeys(_summary(alerts[index]) for index in shown))
    if shared or len(summaries) == 1:
        lines.append(shared or summaries[0])
    else:
        budget = max_segments * 160 - len(first)  # the rest would be cut anyway: stop reading alerts there
        for index in shown:
            summary = _summary(alerts[index])
            if summary:
                lines.append(f"{own[index]}: {summary}" if own[index] else summary)
                budget -= len(lines[-1]) + 1
            if budget < 0:
                break
    if notification.status == "firing" and resolved and firing:
        gone = distinct(resolved)
        lines.append(f"Resolved: {', '.join(gone)}" if gone else f"{len(resolved)} resolved")
    return fit("\n".join(line for line in lines if line), max_segments)


def _escaped(message: str) -> str:
    """`message` as a template body that renders to itself: a group send fills {placeholders} with each member's
    fields, and an alert's text ({job="api"}) must go out as written."""
    return message.replace("\\", "\\\\").replace("{", "\\{").replace("}", "\\}")


def dedupe_key(notification: Notification, to: list[str], groups: list[str]) -> str:
    """The identity of a notification: its sender, receiver, group, status and alerts (fingerprint, start,
    status), with its recipients."""
    identity = {"source": notification.source, "receiver": notification.receiver,
                "group_key": notification.group_key, "status": notification.status,
                "alerts": sorted([alert.fingerprint, alert.starts_at, alert.status] for alert in notification.alerts),
                "to": sorted(to), "groups": sorted(groups)}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


class Alerts:
    """Alert notifications, through the gateway."""

    store: Store
    settings: GatewaySettings
    send: Callable[[Any], dict]

    def alert_recipients(self, receiver: str, to: list[str] | None, groups: list[str] | None
                         ) -> tuple[list[str], list[str]]:
        """Who gets a notification: the numbers and groups the request names (the receiver's URL), else the
        `[alerts.receivers]` entry of its receiver, else the `"*"` entry. Raises AlertError when none applies."""
        if to or groups:
            return list(to or []), list(groups or [])
        receivers = self.settings.alerts.receivers
        route = receivers.get(receiver) or receivers.get("*")
        if route is None:
            raise AlertError(f"no recipients for receiver {receiver[:100]!r}: add ?to=+44... or ?group=<address-book "
                             f"group> to the webhook URL, or configure [alerts.receivers.\"{receiver[:100]}\"] (or "
                             "[alerts.receivers.\"*\"] for any receiver)", "to")
        return list(route.to), list(route.groups)

    def notify_alert(self, source: str, payload: dict, to: list[str] | None = None, groups: list[str] | None = None,
                     api_key_id: int | None = None, key_group: str | None = None) -> dict:
        """Send one SMS for an Alertmanager or Grafana (`source`) notification to `to` and the members of
        `groups` (or its receiver's configured recipients), unless the same notification was sent within
        `[alerts] group_interval`.

        Returns {"duplicate": False, "text", "message_ids", "submission_id", "skipped", "segments"} for a new
        notification, or {"duplicate": True, "message_ids" (those of the first copy; empty while it is still being
        sent), "first_sent_at" (epoch seconds)}. Raises AlertError (the payload or its recipients), the gateway's
        SubmitError (a bad number, an unknown group), StoreError."""
        notification = parse_notification(source, payload)
        numbers, group_names = self.alert_recipients(notification.receiver, to, groups)
        message = alert_text(notification, self.settings.max_segments)
        key = dedupe_key(notification, numbers, group_names)
        window = self.settings.alerts.group_interval
        if window > 0:
            earlier = self.store.claim_alert(key, time.time(), window, PENDING_WINDOW)
            if earlier is not None:
                log.info("%s notification %s (%s) repeated within %ss: not sent again", source,
                         notification.group_key[:200], notification.status, window)
                return {"duplicate": True, "message_ids": earlier["message_ids"] or [],
                        "first_sent_at": earlier["at"]}
        from modemgw.gateway import SubmitRequest  # modemgw.gateway imports this module

        try:
            result = self.send(SubmitRequest(
                _escaped(message) if group_names else message, numbers or None, groups=group_names or None,
                priority=self.settings.alerts.priority, client_ref=source, api_key_id=api_key_id,
                key_group=key_group))
        except BaseException:
            if window > 0:
                self._release(key)  # the sender's retry must be able to send it
            raise
        ids = [item["id"] for item in result["messages"]]
        if window > 0:
            try:
                self.store.record_alert(key, ids)
            except Exception:  # the SMS are queued: a failure here must not make the sender post it again
                log.exception("%s notification %s sent as messages %s, but not recorded for de-duplication",
                              source, notification.group_key[:200], ids)
        log.info("%s notification %s (%s, %d alerts) sent as messages %s", source, notification.group_key[:200],
                 notification.status, len(notification.alerts), ids)
        return {"duplicate": False, "text": message, "message_ids": ids, "submission_id": result["submission_id"],
                "skipped": result["skipped"], "segments": result["segments"]}

    def _release(self, key: str) -> None:
        """Forget the claim of a notification whose send failed; a database that refuses is logged (the claim
        then lapses after PENDING_WINDOW), never raised over the send's own error."""
        try:
            self.store.release_alert(key)
        except Exception:
            log.exception("the claim of a failed alert notification was not released; a retry sends it after %ss",
                          PENDING_WINDOW)
