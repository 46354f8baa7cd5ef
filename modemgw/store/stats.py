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


def _day_period(period: str) -> str:
    """The SQL of a `stats_daily` row's period start; a period outside PERIODS is a bug of the caller."""
    if period not in _DAY_PERIOD:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, not {period!r}")
    return _DAY_PERIOD[period].format("day")


def _modem_clause(column: str, modem_id: int | None) -> tuple[str, tuple]:
    return (f" AND {column} = ?", (modem_id,)) if modem_id is not None else ("", ())


class StatsStore(StoreBase):
    """Counts, segments and delivery-time medians per period and per SIM; hourly sends for the dashboard."""

    # Each report reads its rows of `stats_daily` once (a MATERIALIZED view of the range) and sums them in SQL three
    # ways: per period, per SIM (NULL: none) and over all. Only those sums leave the database: a year by day is ~2,000
    # rows instead of the ~30,000 of the range, which Python summed in ~130 ms (benchmarks/million.py).

    def stats_counts(self, period: str, start: float, end: float, modem_id: int | None = None) -> list[dict]:
        """{"kind": "period" | "sim" | "all", "key" (the period's start date; the SIM's id, None for none; None),
        "status", "count"} for the messages counted in [start, end) (local midnights; see the module's docstring
        for which moment counts), optionally of one SIM."""
        return self._daily(period, start, end, modem_id, f"kind IN {COUNTED}", "kind AS status", ", status")

    def stats_segments(self, period: str, start: float, end: float, modem_id: int | None = None) -> list[dict]:
        """{"kind", "key" (as `stats_counts`), "segments"}: the parts the SIMs sent in [start, end) (local
        midnights)."""
        return [{"kind": row["kind"], "key": row["key"], "segments": row["count"]}
                for row in self._daily(period, start, end, modem_id, "kind = 'segment'", "NULL AS status", "")]

    def _daily(self, period: str, start: float, end: float, modem_id: int | None, kinds: str, status: str,
               by_status: str) -> list[dict]:
        """Rows of `stats_daily` in [start, end) of `kinds` (fixed SQL of this module), summed per period, per SIM
        and over all (and per `status` when `by_status`)."""
        where, params = _modem_clause("modem_id", modem_id)
        rows = self.query(
            f"WITH d AS MATERIALIZED (SELECT {_day_period(period)} AS period, NULLIF(modem_id, 0) AS modem_id, "
            f"{status}, count FROM stats_daily WHERE day >= date(?, 'unixepoch', 'localtime') "
            f"AND day < date(?, 'unixepoch', 'localtime') AND {kinds}{where}) "
            f"SELECT 'period' AS kind, period AS key, status, SUM(count) AS count FROM d GROUP BY period{by_status} "
            "HAVING SUM(count) != 0 "
            f"UNION ALL SELECT 'sim', modem_id, status, SUM(count) FROM d GROUP BY modem_id{by_status} "
            "HAVING SUM(count) != 0 "
            f"UNION ALL SELECT 'all', NULL, status, SUM(count) FROM d GROUP BY 'all'{by_status} "
            "HAVING SUM(count) != 0", (start, end, *params))
        return [dict(row) for row in rows]

    def stats_medians(self, period: str, start: float, end: float, modem_id: int | None = None) -> list[dict]:
        """{"kind", "key" (as `stats_counts`), "median"}: the median seconds from sent to delivered of the
        messages delivered that were sent in [start, end) (local midnights). Read from the delivery times
        `stats_daily` keeps per day and SIM (migration 12: to two significant figures, so the median is too): the
        middle time in order (positions (n + 1) / 2 and (n + 2) / 2 of n, the same one when n is odd), or the mean
        of the middle two, found by a running sum over the times of each group."""
        where, params = _modem_clause("modem_id", modem_id)
        rows = self.query(
            f"WITH t AS MATERIALIZED (SELECT {_day_period(period)} AS period, NULLIF(modem_id, 0) AS modem_id, "
            "CAST(substr(kind, 6) AS INTEGER) AS took, count FROM stats_daily "
            "WHERE day >= date(?, 'unixepoch', 'localtime') AND day < date(?, 'unixepoch', 'localtime') "
            f"AND kind >= 'took:' AND kind < 'took;'{where}), "
            "h AS (SELECT 'period' AS kind, period AS key, took, SUM(count) AS n FROM t GROUP BY period, took "
            "UNION ALL SELECT 'sim', modem_id, took, SUM(count) FROM t GROUP BY modem_id, took "
            "UNION ALL SELECT 'all', NULL, took, SUM(count) FROM t GROUP BY took), "
            "c AS (SELECT kind, key, took, SUM(n) OVER (PARTITION BY kind, key ORDER BY took ROWS UNBOUNDED "
            "PRECEDING) AS upto, SUM(n) OVER (PARTITION BY kind, key) AS total FROM h WHERE n > 0) "
            "SELECT kind, key, (MIN(CASE WHEN upto >= (total + 1) / 2 THEN took END) "
            "+ MIN(CASE WHEN upto >= (total + 2) / 2 THEN took END)) / 2.0 AS median FROM c GROUP BY kind, key",
            (start, end, *params))
        return [dict(row) for row in rows]

    def sent_per_hour_since(self, start: float, hours: int) -> dict[int, int]:
        """{hour index: messages sent}: hour i is [start + i h, start + (i + 1) h), for `hours` hours. A message
        counts in the hour its first part left a SIM (one of the modems known: the parts' (modem_id, sent_at)
        index finds them; an index on messages' sent_at would cost a page per message sent)."""
        rows = self.query(
            "SELECT CAST((sent_at - ?) / 3600 AS INTEGER) AS hour, COUNT(*) FROM parts INDEXED BY parts_sent "
            "WHERE modem_id IN (SELECT id FROM modems) AND sent_at >= ? AND sent_at < ? AND seq = 1 "
            "AND tp_mr IS NOT NULL GROUP BY 1", (start, start, start + hours * 3600))
        return {row[0]: row[1] for row in rows}
