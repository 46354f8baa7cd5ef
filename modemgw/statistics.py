"""Statistics as the gateway offers them to every edge: what became of the messages, per day, week or month (the
gateway's local time) and per SIM, and the dashboard's messages sent per hour.

`Statistics` is a part of `Gateway` (a mixin over `self.store`; the SQL is `modemgw/store/stats.py`). One report
(`statistics()`) feeds the web UI's page, its CSV (`stats_csv`) and the API alike, so the three always agree.

What is counted, per period and per SIM (a message once, in the period it left a SIM, or, never sent, in the
period it failed or expired):
- `sent`: it left a SIM (status sent, delivered or undelivered);
- `delivered`: a status report said so; `delivery_rate` is delivered / sent (None when nothing was sent);
- `failed`: the modem or the network refused it (failed), or its report said it was not delivered (undelivered);
- `expired`: not sent within its validity; `no_report`: sent, and no report (yet, or none will come);
- `median_delivery_seconds`: the median time from sent to delivered of the delivered ones;
- `segments`: the SMS parts the SIMs sent in the period, which is what the operator charges.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import math
import threading
import time
from typing import TYPE_CHECKING, Any

from modemgw.csvfile import guard

if TYPE_CHECKING:
    from modemgw.store import Store

PERIODS = ("day", "week", "month")
MAX_DAYS = 731          # the longest range a report covers (two years): its queries stay bounded
MAX_HOURS = 24 * 7      # the longest hourly series the dashboard may ask for
HOUR_SETTLES = 60       # seconds after an hour ends when its count no longer changes (a send's commit comes late)
CLOCK_STEP = 5          # seconds the wall clock may move against the monotonic one before remembered hours go
_HOURS_LOCK = threading.Lock()  # the remembered hours of `sent_by_hour` (requests of several threads)
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
NUMBERS = ("sent", "delivered", "failed", "expired", "no_report", "delivery_rate", "median_delivery_seconds",
           "segments")
NO_SIM = "no SIM"  # the row of messages no SIM ever took (they expired, or failed before any send)
EARLIEST = dt.date(1970, 1, 2)  # dates a report may name: what the system's clock can turn into epoch seconds
LATEST = dt.date(9998, 12, 1)


class StatsError(ValueError):
    """A report that cannot be made as asked: `detail` says what to fix, `field` names the input at fault
    ("period", "since", "until", "modem_id"). (Not SubmitError, which lives in modemgw.gateway: that module
    imports this one.)"""

    def __init__(self, detail: str, field: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.field = field


# --- periods -------------------------------------------------------------------------------------------------

def parse_day(value: str | dt.date | None, field: str) -> dt.date | None:
    """A date given as YYYY-MM-DD (or a date); None for nothing. Raises StatsError."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        value = value.date()
    if not isinstance(value, dt.date):
        if not isinstance(value, str) or len(value) > 10:  # bounded before parsing
            raise StatsError(f"'{field}' must be a date as YYYY-MM-DD", field)
        try:
            value = dt.date.fromisoformat(value)
        except ValueError:
            raise StatsError(f"'{field}' must be a date as YYYY-MM-DD, such as 2024-03-31", field) from None
    if not EARLIEST <= value <= LATEST:
        raise StatsError(f"'{field}' must be between {EARLIEST} and {LATEST}", field)
    return value


def period_start(day: dt.date, period: str) -> dt.date:
    """The first day of the period `day` falls in (weeks start on Monday)."""
    if period == "week":
        return day - dt.timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return day


def next_period(start: dt.date, period: str) -> dt.date:
    """The first day of the period after the one starting at `start`."""
    if period == "week":
        return start + dt.timedelta(days=7)
    if period == "month":
        return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return start + dt.timedelta(days=1)


def period_label(start: dt.date, period: str) -> str:
    """How a person reads the period starting at `start`: "Mon 4 Mar 2024", "Week of 4 Mar 2024", "March 2024"."""
    if period == "month":
        return f"{MONTHS[start.month - 1]} {start.year}"
    day = f"{start.day} {MONTHS[start.month - 1][:3]} {start.year}"
    return f"Week of {day}" if period == "week" else f"{WEEKDAYS[start.weekday()]} {day}"


DEFAULT_RANGES = {"day": "the last 30 days", "week": "the last 12 weeks", "month": "the last 12 months"}  # in words


def default_since(until: dt.date, period: str) -> dt.date:
    """The start of the default range: the last 30 days by day, the last 12 weeks or 12 months."""
    if period == "week":
        return until - dt.timedelta(weeks=11)
    if period == "month":
        month = until.year * 12 + until.month - 1 - 11
        return dt.date(month // 12, month % 12 + 1, 1)
    return until - dt.timedelta(days=29)


def _midnight(day: dt.date) -> float:
    """Epoch seconds of `day`'s local midnight (the system's time zone, with its daylight saving)."""
    return time.mktime(day.timetuple())


def _numbers(counts: dict[str, int], median: float | None) -> dict[str, Any]:
    """A row's numbers from its counts ({status or "segment": count}; see the module's docstring)."""
    get = counts.get
    delivered, undelivered, no_report = get("delivered", 0), get("undelivered", 0), get("sent", 0)
    sent = delivered + undelivered + no_report
    return {"sent": sent, "delivered": delivered, "failed": get("failed", 0) + undelivered,
            "expired": get("expired", 0), "no_report": no_report,
            "delivery_rate": round(delivered / sent, 4) if sent else None,
            "median_delivery_seconds": round(median, 1) if median is not None else None,
            "segments": get("segment", 0)}


class Statistics:
    """Reports over the store (`self.store`): per period and per SIM, and the dashboard's hourly sends."""

    store: Store

    def statistics(self, period: str = "day", since: str | dt.date | None = None, until: str | dt.date | None = None,
                   modem_id: int | None = None, *, today: dt.date | None = None) -> dict[str, Any]:
        """The report for `period` ("day", "week" or "month") from `since` to `until` (local dates, both
        included; a week or month range is widened to whole periods here, in the computation: callers keep the
        dates they were given), of one SIM (`modem_id`) or all. Without `until`, up to today; without `since`, the
        last 30 days by day, 12 weeks by week, 12 months by month (`default_since`: the page and the API alike).

        Returns {"period", "since", "until" (the dates covered), "modem_id", "timezone", "totals",
        "periods": [{"start", "end", "label", numbers...}] (every period, empty ones too, oldest first),
        "sims": [{"modem_id", "label", numbers...}]} with the numbers of the module's docstring. Raises
        StatsError (a wrong input), NotFound (no such SIM), StoreError."""
        if period not in PERIODS:
            raise StatsError(f"'period' must be one of {', '.join(PERIODS)}", "period")
        last = parse_day(until, "until") or today or dt.date.today()
        first = parse_day(since, "since") or default_since(last, period)
        if first > last:
            raise StatsError(f"'since' ({first}) is after 'until' ({last}): swap them", "since")
        if (last - first).days + 1 > MAX_DAYS:
            raise StatsError(f"the range {first} to {last} is {(last - first).days + 1} days; a report covers at "
                             f"most {MAX_DAYS} (two years): choose a later 'since' or an earlier 'until'", "since")
        first, after = period_start(first, period), next_period(period_start(last, period), period)
        modems = [self.store.modem(modem_id)] if modem_id is not None else self.store.modems()
        start = _midnight(first)
        bounds = [first]  # the periods' starts, then the day after the last
        while bounds[-1] < after:
            bounds.append(next_period(bounds[-1], period))
        days = [day.isoformat() for day in bounds]
        spans = list(itertools.pairwise(days))

        counted, medians = self.store.stats_report(period, spans, modem_id)
        total: dict[str, int] = {}
        for key, counts in counted.items():
            if key[0] == "sim":
                for kind, count in counts.items():
                    total[kind] = total.get(kind, 0) + count
        counted[("all", None)] = total
        nothing: dict[str, int] = {}

        def numbers(key: tuple[str, Any]) -> dict[str, Any]:
            return _numbers(counted.get(key, nothing), medians.get(key))

        periods = [{"start": start, "end": (following - dt.timedelta(days=1)).isoformat(),
                    "label": period_label(day, period), **numbers(("period", start))}
                   for day, following, start in zip(bounds[:-1], bounds[1:], days[:-1], strict=True)]
        sims = [{"modem_id": modem["id"], "label": modem["label"] or f"modem {modem['id']}",
                 **numbers(("sim", modem["id"]))} for modem in modems]
        known = {modem["id"] for modem in modems}
        for key in sorted((key for key in counted if key[0] == "sim"
                           and key[1] not in known), key=lambda key: (key[1] is not None, key[1] or 0)):
            sims.append({"modem_id": key[1], "label": NO_SIM if key[1] is None else f"modem {key[1]} (removed)",
                         **numbers(key)})
        return {"period": period, "since": first.isoformat(), "until": (after - dt.timedelta(days=1)).isoformat(),
                "modem_id": modem_id, "timezone": time.strftime("%Z", time.localtime(start)) or "local",
                "totals": numbers(("all", None)), "periods": periods, "sims": sims}

    def roll_up_statistics(self, today: dt.date | None = None) -> int:
        """Keep the counts and delivery-time medians of the periods that ended more than two days ago (a report
        comes late now and then: a kept period it changes is forgotten, and kept again at the next roll-up), so that
        reports over long ranges read them instead of every day's rows (modemgw/store/stats.py). For the scheduler
        (hourly). Returns how many periods it kept. Raises StoreError."""
        first = self.store.first_stats_day()
        if first is None:
            return 0
        today = today or dt.date.today()
        horizon = today - dt.timedelta(days=2)  # periods that ended before this day
        # no further back than a report reaches (a Pi without a clock may have filed a send under 1970)
        oldest = max(dt.date.fromisoformat(first), today - dt.timedelta(days=MAX_DAYS + 31))
        kept = 0
        for period in PERIODS:
            spans = []
            day = period_start(oldest, period)
            while next_period(day, period) <= horizon:
                spans.append((day.isoformat(), next_period(day, period).isoformat()))
                day = next_period(day, period)
            kept += self.store.roll_up_periods(period, spans)
        return kept

    def sent_by_hour(self, now: float, hours: int = 24) -> list[dict[str, Any]]:
        """Messages sent in each of the last `hours` clock hours (local time), oldest first, the last one being
        the hour in progress: [{"start" (epoch seconds), "hour" (0-23, local), "sent"}]."""
        if not 1 <= hours <= MAX_HOURS:
            raise StatsError(f"'hours' must be 1 to {MAX_HOURS}", "hours")
        local = time.localtime(now)
        current = math.floor(now) - local.tm_min * 60 - local.tm_sec  # this local hour's start (any UTC offset)
        start = current - (hours - 1) * 3600
        starts = [start + index * 3600 for index in range(hours)]
        with _HOURS_LOCK:
            known = dict(self._hours_sent())
        sent: list[int | None] = [known.get(hour) if hour + 3600 + HOUR_SETTLES <= now else None  # (the clock
                                  for hour in starts]                                        # may be set back)
        missing = [index for index, count in enumerate(sent) if count is None]
        for _, run in itertools.groupby(enumerate(missing), key=lambda pair: pair[1] - pair[0]):
            indexes = [index for _, index in run]  # consecutive hours not remembered: one query
            counts = self.store.sent_per_hour_since(starts[indexes[0]], len(indexes))
            for offset, index in enumerate(indexes):
                sent[index] = counts.get(offset, 0)
        ended = {hour: count for hour, count in zip(starts, sent, strict=True)
                 if count is not None and hour not in known and hour + 3600 + HOUR_SETTLES <= now}
        with _HOURS_LOCK:
            remembered = self._hours_sent()
            remembered.update(ended)
            for hour in [hour for hour in remembered if hour < now - (MAX_HOURS + 1) * 3600]:
                del remembered[hour]
        return [{"start": hour, "hour": time.localtime(hour).tm_hour, "sent": count or 0}
                for hour, count in zip(starts, sent, strict=True)]

    def _hours_sent(self) -> dict[int, int]:
        """{start of a clock hour that ended (epoch seconds): messages sent in it}, remembered: a past hour's count
        does not change, and counting a busy day's hours again on every dashboard view read tens of thousands of
        parts (50 ms at 33,000 a day). Only the hours not remembered yet, the one in progress among them, are
        counted. A count stays what it was if retention prunes those messages later (they were sent)."""
        remembered: dict[int, int] = self.__dict__.setdefault("_sent_hours", {})
        clock = self.__dict__.setdefault("_sent_hours_clock", [time.time() - time.monotonic()])
        offset = time.time() - time.monotonic()
        if abs(offset - clock[0]) > CLOCK_STEP:  # the clock was set (back or on): sends may land in known hours
            remembered.clear()
        clock[0] = offset
        return remembered

    def _forget_hour(self, at: float) -> None:
        """A send recorded late (`Gateway.part_sent`: its commit waited, e.g. for a full disk): the remembered hour
        it falls in is counted again at the next view."""
        with _HOURS_LOCK:
            remembered = self._hours_sent()
            for hour in [hour for hour in remembered if hour <= at < hour + 3600]:
                del remembered[hour]


# --- CSV ---------------------------------------------------------------------------------------------------------

CSV_COLUMNS = ("row", "from", "to", "period", "SIM", "sent", "delivered", "failed", "expired", "no report",
               "delivery rate", "median seconds to delivery", "segments")


def stats_csv(report: dict[str, Any]) -> str:
    """A report (`Statistics.statistics`) as CSV for a spreadsheet: a row per period, a row per SIM, then the
    totals; text cells formula-safe (a SIM's label is anyone's text); a UTF-8 BOM for Excel."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    sims = report["sims"]
    everyone = sims[0]["label"] if report["modem_id"] is not None and sims else "all SIMs"

    def write(kind: str, start: str, end: str, label: str, sim: str, row: dict[str, Any]) -> None:
        values = ["" if row[name] is None else row[name] for name in NUMBERS]
        writer.writerow([guard(cell) for cell in (kind, start, end, label, sim)] + values)

    for row in report["periods"]:
        write("period", row["start"], row["end"], row["label"], everyone, row)
    whole = f"{report['since']} to {report['until']}"
    for row in sims:
        write("SIM", report["since"], report["until"], whole, row["label"], row)
    write("total", report["since"], report["until"], whole, everyone, report["totals"])
    return "\ufeff" + out.getvalue()
