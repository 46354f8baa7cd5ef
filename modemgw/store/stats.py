"""Statistics: what became of the messages of a time range, per period (day, week, month in the gateway's local
time) and per SIM, counted in SQL so that only a few rows per period leave the database.

A message is counted once, in the period of the moment it left a SIM (`sent_at`: sent, delivered, undelivered)
or, never sent, of the moment it failed or expired (`updated_at`: nothing changes a failed or expired message
afterwards). Segments are the parts a SIM sent (with their +CMGS) in the period: what the operator charges.
Medians of the time to delivery (`delivered_at - sent_at`) are computed here with window functions (SQLite has
no median): at most two rows per group come back.

The callers (modemgw.statistics) bound the range (about two years at most) and choose the period from
`PERIODS`; the period's SQL is taken from a fixed table, never from the caller's text.
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


def _period(period: str, column: str) -> str:
    """The SQL of `column`'s period start; a period outside PERIODS is a bug of the caller."""
    if period not in _PERIOD_START:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, not {period!r}")
    return _PERIOD_START[period].format(column)


def _modem_clause(column: str, modem_id: int | None) -> tuple[str, tuple]:
    return (f" AND {column} = ?", (modem_id,)) if modem_id is not None else ("", ())


class StatsStore(StoreBase):
    """Counts, segments and delivery-time medians per period and per SIM; hourly sends for the dashboard."""

    def stats_counts(self, period: str, start: float, end: float, modem_id: int | None = None) -> list[dict]:
        """{"period": start date, "modem_id", "status", "count"} for the messages counted in [start, end) (see the
        module's docstring for which moment counts), optionally of one SIM."""
        moment = "CASE WHEN status IN ('sent', 'delivered', 'undelivered') THEN sent_at ELSE updated_at END"
        where, params = _modem_clause("modem_id", modem_id)
        rows = self.query(
            f"SELECT {_period(period, 'at')} AS period, modem_id, status, COUNT(*) AS count FROM ("
            f"SELECT {moment} AS at, modem_id, status FROM messages "
            f"WHERE status IN ('sent', 'delivered', 'undelivered', 'failed', 'expired'){where}) "
            "WHERE at >= ? AND at < ? GROUP BY 1, 2, 3", (*params, start, end))
        return [dict(row) for row in rows]

    def stats_segments(self, period: str, start: float, end: float, modem_id: int | None = None) -> list[dict]:
        """{"period", "modem_id", "segments"}: the parts each SIM sent in [start, end), per period."""
        where, params = _modem_clause("modem_id", modem_id)
        rows = self.query(
            f"SELECT {_period(period, 'sent_at')} AS period, modem_id, COUNT(*) AS segments FROM parts "
            f"WHERE tp_mr IS NOT NULL AND sent_at >= ? AND sent_at < ?{where} GROUP BY 1, 2",
            (start, end, *params))
        return [dict(row) for row in rows]

    def stats_medians(self, period: str, start: float, end: float, modem_id: int | None = None) -> list[dict]:
        """{"kind", "key", "median"}: the median seconds from sent to delivered of the messages delivered that were
        sent in [start, end): per period (kind "period", key its start date), per SIM (kind "sim", key the modem
        id) and over all (kind "all"). Window functions number each group's durations in order; the middle one
        (or the mean of the middle two) is the median."""
        where, params = _modem_clause("modem_id", modem_id)
        rows = self.query(
            f"WITH took AS (SELECT {_period(period, 'sent_at')} AS period, modem_id, delivered_at - sent_at AS s "
            "FROM messages WHERE status = 'delivered' AND delivered_at IS NOT NULL "
            f"AND sent_at >= ? AND sent_at < ?{where}), "
            "ranked AS ("
            "SELECT 'period' AS kind, period AS key, s, ROW_NUMBER() OVER (PARTITION BY period ORDER BY s) AS n, "
            "COUNT(*) OVER (PARTITION BY period) AS total FROM took "
            "UNION ALL SELECT 'sim', modem_id, s, ROW_NUMBER() OVER (PARTITION BY modem_id ORDER BY s), "
            "COUNT(*) OVER (PARTITION BY modem_id) FROM took "
            "UNION ALL SELECT 'all', NULL, s, ROW_NUMBER() OVER (ORDER BY s), COUNT(*) OVER () FROM took) "
            "SELECT kind, key, AVG(s) AS median FROM ranked WHERE n IN ((total + 1) / 2, (total + 2) / 2) "
            "GROUP BY kind, key", (start, end, *params))
        return [dict(row) for row in rows]

    def sent_per_hour_since(self, start: float, hours: int) -> dict[int, int]:
        """{hour index: messages sent}: hour i is [start + i h, start + (i + 1) h), for `hours` hours."""
        rows = self.query(
            "SELECT CAST((sent_at - ?) / 3600 AS INTEGER) AS hour, COUNT(*) FROM messages "
            "WHERE sent_at >= ? AND sent_at < ? GROUP BY 1", (start, start, start + hours * 3600))
        return {row[0]: row[1] for row in rows}
