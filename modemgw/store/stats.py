"""Statistics: what became of the messages of a time range, per period (day, week, month in the gateway's local
time) and per SIM, counted in SQL so that only a few rows per period leave the database.

A message is counted once, in the period of the moment it left a SIM (`sent_at`: sent, delivered, undelivered)
or, never sent, of the moment it failed or expired (`updated_at`: nothing changes a failed or expired message
afterwards). Segments are the parts a SIM sent (with their +CMGS) in the period: what the operator charges.
Medians of the time to delivery (`delivered_at - sent_at`) come from the delivery times `stats_daily` keeps per
day and SIM, to two significant figures (whole seconds under 100 s).

Counts and segments are read from `stats_daily` (migration 12): a row per local day, kind (a counted status, or
'segment') and SIM (0: none), kept by triggers in the same transaction as the change to a message or a part, so a
year's report reads a few thousand rows rather than every message. A day is filed under the local date the
gateway's time zone gave it when it was written: changing the zone leaves earlier days where they were.

The callers (modemgw.statistics) bound the range (about two years at most), give it as local midnights (whole
days), and choose the period from `PERIODS`; the period's SQL is taken from a fixed table, never from the caller's
text.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from modemgw.store.base import StoreBase

# The start (a local date, YYYY-MM-DD) of the period a moment (epoch seconds) falls in: weeks start on Monday
# ('weekday 0' moves to the next Sunday unless it is one; six days back is that week's Monday).
_PERIOD_START = {
    "day": "date({0}, 'unixepoch', 'localtime')",
    "week": "date({0}, 'unixepoch', 'localtime', 'weekday 0', '-6 days')",
    "month": "date({0}, 'unixepoch', 'localtime', 'start of month')",
}
PERIODS = tuple(_PERIOD_START)
COUNTED = "('sent', 'delivered', 'undelivered', 'failed', 'expired')"  # the statuses `stats_daily` counts
# The same for a local date (YYYY-MM-DD) already: the rows of `stats_daily`
_DAY_PERIOD = {"day": "{0}", "week": "date({0}, 'weekday 0', '-6 days')", "month": "date({0}, 'start of month')"}


def _period(period: str, column: str) -> str:
    """The SQL of `column`'s period start; a period outside PERIODS is a bug of the caller."""
    if period not in _PERIOD_START:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, not {period!r}")
    return _PERIOD_START[period].format(column)


def _median(counts: dict[int, int]) -> float:
    """The median of values given as {value: how many times}: the middle one, or the mean of the middle two."""
    total = sum(counts.values())
    middle = ((total + 1) // 2, (total + 2) // 2)  # 1-based positions: the same one when `total` is odd
    found: list[int] = []
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        found += [value for position in middle[len(found):] if position <= seen]
        if len(found) == 2:
            break
    return sum(found) / 2


def _modem_clause(column: str, modem_id: int | None) -> tuple[str, tuple]:
    return (f" AND {column} = ?", (modem_id,)) if modem_id is not None else ("", ())


class StatsStore(StoreBase):
    """Counts, segments and delivery-time medians per period and per SIM; hourly sends for the dashboard."""

    def stats_counts(self, period: str, start: float, end: float, modem_id: int | None = None) -> list[dict]:
        """{"period": start date, "modem_id", "status", "count"} for the messages counted in [start, end) (local
        midnights; see the module's docstring for which moment counts), optionally of one SIM."""
        return self._daily(period, start, end, modem_id, segments=False)

    def stats_segments(self, period: str, start: float, end: float, modem_id: int | None = None) -> list[dict]:
        """{"period", "modem_id", "segments"}: the parts each SIM sent in [start, end) (local midnights), per
        period."""
        return self._daily(period, start, end, modem_id, segments=True)

    def _daily(self, period: str, start: float, end: float, modem_id: int | None, segments: bool) -> list[dict]:
        """Rows of `stats_daily` in [start, end) summed per period and SIM: the segments, or the messages per
        status."""
        if period not in _DAY_PERIOD:
            raise ValueError(f"period must be one of {', '.join(PERIODS)}, not {period!r}")
        where, params = _modem_clause("modem_id", modem_id)
        kinds, columns, group = (("kind = 'segment'", "SUM(count) AS segments", "1, 2") if segments else
                                 (f"kind IN {COUNTED}", "kind AS status, SUM(count) AS count", "1, 2, 3"))
        rows = self.query(
            f"SELECT {_DAY_PERIOD[period].format('day')} AS period, NULLIF(modem_id, 0) AS modem_id, {columns} "
            "FROM stats_daily WHERE day >= date(?, 'unixepoch', 'localtime') AND day < date(?, 'unixepoch', "
            f"'localtime') AND {kinds}{where} GROUP BY {group} HAVING SUM(count) != 0", (start, end, *params))
        return [dict(row) for row in rows]

    def stats_medians(self, period: str, start: float, end: float, modem_id: int | None = None) -> list[dict]:
        """{"kind", "key", "median"}: the median seconds from sent to delivered of the messages delivered that were
        sent in [start, end) (local midnights): per period (kind "period", key its start date), per SIM (kind
        "sim", key the modem id) and over all (kind "all"). Read from the delivery times `stats_daily` keeps per
        day and SIM (migration 12: to two significant figures, so the median is too), a few rows per day: the
        middle one (or the mean of the middle two) of the times in order."""
        if period not in _DAY_PERIOD:
            raise ValueError(f"period must be one of {', '.join(PERIODS)}, not {period!r}")
        where, params = _modem_clause("modem_id", modem_id)
        rows = self.query(
            f"SELECT {_DAY_PERIOD[period].format('day')} AS period, NULLIF(modem_id, 0) AS modem_id, "
            "CAST(substr(kind, 6) AS INTEGER) AS took, SUM(count) AS count FROM stats_daily "
            "WHERE day >= date(?, 'unixepoch', 'localtime') AND day < date(?, 'unixepoch', 'localtime') "
            f"AND kind >= 'took:' AND kind < 'took;'{where} GROUP BY 1, 2, 3 HAVING SUM(count) > 0",
            (start, end, *params))
        groups: dict[tuple[str, Any], dict[int, int]] = defaultdict(dict)
        for period_start, sim, took, count in rows:
            for key in (("period", period_start), ("sim", sim), ("all", None)):
                counts = groups[key]
                counts[took] = counts.get(took, 0) + count
        return [{"kind": kind, "key": key, "median": _median(counts)} for (kind, key), counts in groups.items()]

    def sent_per_hour_since(self, start: float, hours: int) -> dict[int, int]:
        """{hour index: messages sent}: hour i is [start + i h, start + (i + 1) h), for `hours` hours. A message
        counts in the hour its first part left a SIM (one of the modems known: the parts' (modem_id, sent_at)
        index finds them; an index on messages' sent_at would cost a page per message sent)."""
        rows = self.query(
            "SELECT CAST((sent_at - ?) / 3600 AS INTEGER) AS hour, COUNT(*) FROM parts INDEXED BY parts_sent "
            "WHERE modem_id IN (SELECT id FROM modems) AND sent_at >= ? AND sent_at < ? AND seq = 1 "
            "AND tp_mr IS NOT NULL GROUP BY 1", (start, start, start + hours * 3600))
        return {row[0]: row[1] for row in rows}
