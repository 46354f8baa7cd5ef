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

The counts and medians of periods that have ended are kept in `stats_periods` (migration 17; 16 kept the medians
alone) by a roll-up the scheduler runs (`roll_up_periods`), and forgotten by triggers when a late report, a late
failure or pruning changes one of their days: a year's report by day reads 365 of them instead of ~7,000 count and
~22,000 delivery-time rows (benchmarks/million.py). A period not kept (this week, a day a late report changed) is
worked out from its day rows as before, so a report is the same with or without them.

The callers (modemgw.statistics) bound the range (about two years at most), give it as local dates (whole days),
and choose the period from `PERIODS`; the period's SQL is taken from a fixed table, never from the caller's text.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from modemgw.store.base import StoreBase

PERIODS = ("day", "week", "month")
_KINDS = ("sent", "delivered", "undelivered", "failed", "expired", "segment")  # the counts `stats_daily` keeps
ALL_SIMS = -1  # the modem_id of a kept period over all SIMs (`stats_periods`; 0 is "no SIM", as in `stats_daily`)
# The start (a local date, YYYY-MM-DD) of the period a local date falls in: weeks start on Monday ('weekday 0'
# moves to the next Sunday unless it is one; six days back is that week's Monday). Migration 16's triggers use the
# same expressions.
_DAY_PERIOD = {"day": "{0}", "week": "date({0}, 'weekday 0', '-6 days')", "month": "date({0}, 'start of month')"}


_COLUMNS = ", ".join(_KINDS)  # the count columns of `stats_periods`, in the order of _KINDS


@dataclass
class _Kept:
    """A period a roll-up kept (`StatsStore._kept`)."""
    end: str  # the day after it (when read with every SIM; "" otherwise)
    median: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    sims: dict[int, tuple[dict[str, int], dict[int, int]]] = field(default_factory=dict)  # modem id: counts, times


def _add(total: dict, more: dict) -> None:
    """Add the counts of `more` into `total` (both {key: count})."""
    for key, count in more.items():
        total[key] = total.get(key, 0) + count


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


def _runs(periods: list[tuple[str, str]], most: int = 4) -> list[tuple[str, str]]:
    """Adjoining periods ([start, end) dates, in order) joined into runs; more than `most` runs become one span
    (a query each is then dearer than reading the days between them)."""
    runs: list[tuple[str, str]] = []
    for start, end in periods:
        if runs and runs[-1][1] == start:
            runs[-1] = (runs[-1][0], end)
        else:
            runs.append((start, end))
    return runs if len(runs) <= most else [(runs[0][0], runs[-1][1])]


def _next_month(start: str) -> str:
    """The first day (YYYY-MM-DD) of the month after the one starting at `start`."""
    year, month = int(start[:4]), int(start[5:7])
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}-01"


def _period_end(period: str, start: str) -> str:
    """The day (YYYY-MM-DD) after the period of `period` that starts at `start`."""
    if period == "month":
        return _next_month(start)
    return (dt.date.fromisoformat(start) + dt.timedelta(days=7 if period == "week" else 1)).isoformat()


def _gaps(first: str, after: str, spans: dict[str, str]) -> list[tuple[str, str]]:
    """The runs of days in [first, after) outside the spans ({start: end}, not overlapping) that lie fully inside
    it."""
    gaps: list[tuple[str, str]] = []
    cursor = first
    for start in sorted(spans):
        end = spans[start]
        if start < first or end > after:
            continue
        if cursor < start:
            gaps.append((cursor, start))
        cursor = max(cursor, end)
    if cursor < after:
        gaps.append((cursor, after))
    return gaps


def _modem_clause(column: str, modem_id: int | None) -> tuple[str, tuple]:
    return (f" AND {column} = ?", (modem_id,)) if modem_id is not None else ("", ())


class StatsStore(StoreBase):
    """Counts, segments and delivery-time medians per period and per SIM; hourly sends for the dashboard."""

    def stats_report(self, period: str, periods: list[tuple[str, str]], modem_id: int | None = None
                     ) -> tuple[dict[tuple[str, Any], dict[str, int]], dict[tuple[str, Any], float]]:
        """(counts, medians) of `periods` ([start, end) local dates, in order, adjoining: the whole periods of `period`
        a report covers), optionally of one SIM.

        counts: {("period", start) | ("sim", modem id, None for none): {kind: count}}, kind a counted status (see the
        module's docstring for which moment counts) or "segment"; only kinds with a count, and a key without any is left
        out. medians: {("period", start) | ("sim", modem id) | ("all", None): median seconds from sent to delivered} of
        the messages delivered that were sent then; a key without deliveries is left out. The medians come from the
        delivery times `stats_took` keeps per day and SIM (to two significant figures, so the medians are too).

        What a roll-up kept (`roll_up_periods`: periods that ended) is read rather than worked out again: each period's
        counts and median, and for the numbers per SIM and over all, the counts and times of the whole months in the
        range, and of the whole weeks in the days between them. The rest (this month, the range's first days, a period a
        late report changed) is added up from the day rows, in SQL: one row per period or SIM leaves the database (a
        year by day is 365 rows, not the ~7,000 of its days, kinds and SIMs)."""
        if period not in _DAY_PERIOD:
            raise ValueError(f"period must be one of {', '.join(PERIODS)}, not {period!r}")
        if not periods:
            return {}, {}
        first, after = periods[0][0], periods[-1][1]
        counts: dict[tuple[str, Any], dict[str, int]] = {}
        medians: dict[tuple[str, Any], float] = {}
        # each period: kept, or added up from its days
        kept = self._kept(period, first, after, modem_id)
        for start, row in kept.items():
            if row.counts:
                counts[("period", start)] = row.counts
            if row.median is not None:
                medians[("period", start)] = row.median
        runs = _runs([(start, end) for start, end in periods if start not in kept])
        expression = _DAY_PERIOD[period].format("day")
        for start, found in self._count_rows(expression, "1", runs, modem_id):
            if start not in kept:
                _add(counts.setdefault(("period", start), {}), found)
        histograms: dict[str, dict[int, int]] = defaultdict(dict)
        for start, took, count in self._took_rows(expression, runs, modem_id):
            if start not in kept:
                histograms[start][took] = histograms[start].get(took, 0) + count  # a period may span two runs
        medians.update({("period", start): _median(times) for start, times in histograms.items()})
        # per SIM and over all: kept months, then kept weeks in the days between them (a year's first, partial
        # month), then the day rows left
        covers = {start: row for start, row in self._kept("month", first, after, None, every_sim=True).items()
                  if row.end <= after}
        gaps = _gaps(first, after, {start: row.end for start, row in covers.items()})
        for gap_first, gap_after in gaps:
            if _period_end("week", gap_first) <= gap_after:  # long enough to hold a whole week
                covers.update({start: row for start, row in self._kept("week", gap_first, gap_after, None,
                                                                        every_sim=True).items()
                               if row.end <= gap_after})
        gaps = _gaps(first, after, {start: row.end for start, row in covers.items()})
        per_sim: dict[Any, dict[str, int]] = defaultdict(dict)
        for sim, found in self._count_rows("NULLIF(modem_id, 0)", "modem_id", gaps, modem_id):
            _add(per_sim[sim], found)
        times_per_sim: dict[Any, dict[int, int]] = defaultdict(dict)
        for sim, took, count in self._took_rows("NULLIF(modem_id, 0)", gaps, modem_id):
            times_per_sim[sim][took] = times_per_sim[sim].get(took, 0) + count  # the same time may come from two gaps
        for row in covers.values():
            for sim, (sim_counts, times) in row.sims.items():
                if modem_id is None or sim == modem_id:
                    _add(per_sim[sim or None], sim_counts)
                    _add(times_per_sim[sim or None], times)
        counts.update({("sim", sim): found for sim, found in per_sim.items() if found})
        everyone: dict[int, int] = {}
        for sim, times in times_per_sim.items():
            if times:
                medians[("sim", sim)] = _median(times)
            _add(everyone, times)
        if everyone:
            medians[("all", None)] = _median(everyone)
        return {key: found for key, found in counts.items() if found}, medians

    def _kept(self, period: str, first: str, after: str, modem_id: int | None,
              every_sim: bool = False) -> dict[str, _Kept]:
        """{start: _Kept} of the periods of `period` starting in [first, after) that a roll-up kept (those with a
        row for all SIMs): the counts and median of all SIMs, or of `modem_id` (none when it had nothing then);
        with `every_sim` (months and weeks), each SIM's counts and times too (what `stats_report` merges)."""
        target = ALL_SIMS if modem_id is None else modem_id
        sims = "" if every_sim else " AND modem_id IN (?, ?)"
        rows = self.query(f"SELECT start, modem_id, median, took, {_COLUMNS} FROM stats_periods WHERE period = ? "
                          f"AND start >= ? AND start < ?{sims}",
                          (period, first, after, *(() if every_sim else (ALL_SIMS, target))))
        found = {row[0]: _Kept(end=_period_end(period, row[0]) if every_sim else "") for row in rows
                 if row[1] == ALL_SIMS}
        for start, sim, median, took, *numbers in rows:
            row = found.get(start)
            if row is None:
                continue
            sim_counts = {kind: count for kind, count in zip(_KINDS, numbers, strict=True) if count}
            if sim == target:
                row.median, row.counts = median, sim_counts
            if every_sim and sim != ALL_SIMS:
                times = {int(seconds): count for seconds, count in json.loads(took).items()} if took else {}
                row.sims[sim] = (sim_counts, times)
        return found

    def _count_rows(self, key: str, group: str, runs: list[tuple[str, str]],
                    modem_id: int | None) -> list[tuple[Any, dict[str, int]]]:
        """(key, {kind: count}) of `stats_daily` over the days of `runs` ([start, end) dates), added up per key (a
        fixed expression of this module; `group` what to group by: a column groups faster than an expression)."""
        where, params = _modem_clause("modem_id", modem_id)
        columns = ", ".join(f"SUM(count) FILTER (WHERE kind = '{kind}')" for kind in _KINDS)  # CASE: 2.5x slower
        found: list[tuple[Any, dict[str, int]]] = []
        for run_first, run_after in runs:
            for row in self.query(f"SELECT {key}, {columns} FROM stats_daily WHERE day >= ? AND day < ?{where} "
                                  f"GROUP BY {group}", (run_first, run_after, *params)):
                found.append((row[0], {kind: count for kind, count in zip(_KINDS, row[1:], strict=True) if count}))
        return found

    def _took_rows(self, key: str, runs: list[tuple[str, str]], modem_id: int | None) -> list[tuple]:
        """(key, seconds, count) of `stats_took` over the days of `runs` ([start, end) dates), added up per key (a
        fixed expression of this module) and time."""
        where, params = _modem_clause("modem_id", modem_id)
        rows: list[Any] = []
        for run_first, run_after in runs:
            rows += self.query(f"SELECT {key}, took, SUM(count) FROM stats_took WHERE day >= ? AND day < ?{where} "
                               "GROUP BY 1, 2 HAVING SUM(count) > 0", (run_first, run_after, *params))
        return rows

    def roll_up_periods(self, period: str, periods: list[tuple[str, str]], budget: float = 0.02) -> int:
        """Keep the counts and delivery-time medians of `periods` ([start, end) local dates that ended: their day rows
        no longer change but for a late report, a late failure or pruning, and a trigger of migration 17 forgets what
        was kept when they do) in `stats_periods`, for each SIM (with its times, which the reports of longer ranges
        merge, for weeks and months) and for all SIMs, where not kept yet. Each transaction works at most about `budget`
        seconds, so sends never wait long on it. Returns how many periods it kept."""
        if period not in _DAY_PERIOD:
            raise ValueError(f"period must be one of {', '.join(PERIODS)}, not {period!r}")
        kept = {row[0] for row in self.query(
            "SELECT start FROM stats_periods WHERE period = ? AND modem_id = ?", (period, ALL_SIMS))}
        todo = [(start, end) for start, end in periods if start not in kept]
        done = 0
        while todo:
            if done:
                time.sleep(budget / 4)  # the write lock is free a moment: a send waiting for it goes first
            with self.transaction() as conn:
                began = time.monotonic()
                while todo and time.monotonic() - began < budget:
                    start, end = todo.pop(0)
                    times: dict[int, dict[int, int]] = defaultdict(dict)
                    for sim, took, count in conn.execute(
                            "SELECT modem_id, took, SUM(count) FROM stats_took WHERE day >= ? AND day < ? "
                            "GROUP BY 1, 2 HAVING SUM(count) > 0", (start, end)):
                        times[sim][took] = count
                    counts: dict[int, dict[str, int]] = defaultdict(dict)
                    for sim, kind, count in conn.execute(
                            "SELECT modem_id, kind, SUM(count) FROM stats_daily WHERE day >= ? AND day < ? "
                            "GROUP BY 1, 2 HAVING SUM(count) != 0", (start, end)):
                        if kind in _KINDS:
                            counts[sim][kind] = count
                    everyone: dict[int, int] = {}
                    total: dict[str, int] = {}
                    rows: list[tuple] = []
                    for sim in times.keys() | counts.keys():
                        _add(everyone, times[sim])
                        _add(total, counts[sim])
                        rows.append((period, start, sim, *(counts[sim].get(kind, 0) for kind in _KINDS),
                                     _median(times[sim]) if times[sim] else None,
                                     json.dumps(times[sim]) if period != "day" and times[sim] else None))
                    rows.append((period, start, ALL_SIMS, *(total.get(kind, 0) for kind in _KINDS),
                                 _median(everyone) if everyone else None, None))
                    conn.executemany(f"INSERT OR REPLACE INTO stats_periods (period, start, modem_id, {_COLUMNS}, "
                                     f"median, took) VALUES (?, ?, ?, {', '.join('?' * len(_KINDS))}, ?, ?)", rows)
                    done += 1
        return done

    def first_stats_day(self) -> str | None:
        """The first local day (YYYY-MM-DD) with a count or a delivery time kept, or None."""
        days = tuple(self.query("SELECT (SELECT MIN(day) FROM stats_daily), (SELECT MIN(day) FROM stats_took)")[0])
        return min((day for day in days if day is not None), default=None)

    def day_counts_by_modem(self, day: str) -> list[dict]:
        """{"modem_id" (None: no SIM), "kind", "count"} of one local day (YYYY-MM-DD) from `stats_daily`: the
        messages that left each SIM that day (sent, delivered, undelivered) and those that failed that day: a few
        rows, where counting the day's messages read every one of them (tens of thousands on a busy day, on every
        poll of the dashboard)."""
        return self.query_dicts(
            "SELECT NULLIF(modem_id, 0) AS modem_id, kind, count FROM stats_daily WHERE day = ? "
            "AND kind IN ('sent', 'delivered', 'undelivered', 'failed') AND count != 0", (day,))

    def sent_per_hour_since(self, start: float, hours: int) -> dict[int, int]:
        """{hour index: messages sent}: hour i is [start + i h, start + (i + 1) h), for `hours` hours. A message
        counts in the hour its first part left a SIM (one of the modems known: the parts' (modem_id, sent_at)
        index finds them; an index on messages' sent_at would cost a page per message sent)."""
        rows = self.query(
            "SELECT CAST((sent_at - ?) / 3600 AS INTEGER) AS hour, COUNT(*) FROM parts INDEXED BY parts_sent "
            "WHERE modem_id IN (SELECT id FROM modems) AND sent_at >= ? AND sent_at < ? AND seq = 1 "
            "AND tp_mr IS NOT NULL GROUP BY 1", (start, start, start + hours * 3600))
        return {row[0]: row[1] for row in rows}
