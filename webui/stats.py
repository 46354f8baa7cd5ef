"""The Statistics page (`ui.stats`): per day, week or month (the gateway's local time) and per SIM, how many
messages were sent, delivered and failed, the delivery rate, the median time to delivery and the segments (the
cost), as charts (server-rendered SVG, `webui.charts`) and tables, and the same table as CSV (`ui.stats_csv`).

Every number comes from one report, `Gateway.statistics` (the API's `GET /api/v1/stats` answers the same for the
same query, defaults included); every logged-in user may read it. The form is a GET form: it changes nothing, so it
carries no CSRF token (the token would end up in URLs and logs). Its From and To keep what the person typed, never
the report's widened range (a week or month report covers whole periods): otherwise every change of Period would
widen the range again, and a range left empty would not follow the period's default (30 days, 12 weeks, 12 months)
as the API's does.
"""

from __future__ import annotations

from typing import Any

from flask import Response, abort, render_template, request

from modemgw import statistics
from modemgw.statistics import MONTHS, PERIODS, StatsError
from modemgw.store import NotFound
from webui import charts, gateway, ui
from webui.sessions import login_required

MAX_ARG = 16  # characters of a date or an id in the query: anything longer is refused before parsing


def _args() -> dict[str, str]:
    """The form as sent (period, since, until, sim), each bounded before it is parsed."""
    args = {name: request.args.get(name, "").strip() for name in ("period", "since", "until", "sim")}
    for name, value in args.items():
        if len(value) > MAX_ARG:
            raise StatsError(f"'{name}' is too long: a date is YYYY-MM-DD", name)
    return args


def _report(args: dict[str, str]) -> dict[str, Any]:
    """The report the form asks for. Raises StatsError, NotFound (no such SIM), StoreError."""
    sim = args["sim"]
    if sim and not sim.isdecimal():
        raise StatsError("choose a SIM from the list", "sim")
    return gateway().statistics(args["period"] or "day", args["since"] or None, args["until"] or None,
                                int(sim) if sim else None)


def percent(rate: float | None) -> str:
    """A delivery rate for people: "97.5 %", "—" when nothing was sent."""
    return "—" if rate is None else f"{rate * 100:.1f} %"


def duration(seconds: float | None) -> str:
    """A time to delivery for people: "4.2 s", "3 min 20 s", "2 h 5 min", "1 d 3 h"; "—" for none."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s"


def _short(row: dict[str, Any], period: str) -> str:
    """A period's x label: "4 Mar" (a day, a week's Monday) or "Mar '24" (a month)."""
    year, month, day = (int(part) for part in row["start"].split("-"))
    if period == "month":
        return f"{MONTHS[month - 1][:3]} '{year % 100:02d}"
    return f"{day} {MONTHS[month - 1][:3]}"


def _detail(label: str, row: dict[str, Any]) -> str:
    return (f"{label}: {row['sent']} sent, {row['delivered']} delivered, {row['failed']} failed, "
            f"{row['expired']} expired, {row['segments']} segments")


def _series(rows: list[dict[str, Any]]) -> list[charts.Series]:
    """Delivered, failed, and the rest (sent with no report, expired): each message of the rows once."""
    return [charts.Series("Delivered", charts.DELIVERED, [row["delivered"] for row in rows]),
            charts.Series("Failed", charts.FAILED, [row["failed"] for row in rows]),
            charts.Series("Other: no report (yet), or expired", charts.OTHER,
                          [row["no_report"] + row["expired"] for row in rows])]


def _charts(report: dict[str, Any]) -> dict[str, Any]:
    period = report["period"]
    periods = report["periods"]
    over_time = charts.column_chart(
        f"Messages per {period}, {report['since']} to {report['until']}",
        [_short(row, period) for row in periods], _series(periods),
        details=[_detail(row["label"], row) for row in periods])
    sims = report["sims"]
    per_sim = charts.bar_chart(f"Messages per SIM, {report['since']} to {report['until']}",
                               [row["label"] for row in sims], _series(sims),
                               details=[_detail(row["label"], row) for row in sims]) if sims else None
    return {"over_time": over_time, "per_sim": per_sim}


def range_note(report: dict[str, Any], args: dict[str, str]) -> str:
    """Why the report covers the dates it does, for the line under the totals: the period's default range, or the
    whole weeks or months around the dates chosen."""
    period = report["period"]
    if not args.get("since"):
        default = statistics.DEFAULT_RANGES[period]
        return f"{default} up to {args['until']}" if args.get("until") else default
    if period == "day":
        return ""
    until = args.get("until") or "today"
    return f"the whole {period}s covering {args['since']} to {until}"


@ui.get("/ui/stats")
@login_required()
def stats():
    report, error, status, args = None, None, 200, {}
    try:
        args = _args()
        report = _report(args)
    except StatsError as problem:
        error, status = problem.detail, 400
    except NotFound:
        error, status = "There is no such SIM (it may have been removed): choose one from the list.", 404
    return render_template("stats.html", report=report, error=error, args=args, periods=PERIODS,
                           modems=gateway().modems_now(), charts=_charts(report) if report else None,
                           percent=percent, duration=duration,
                           range_note=range_note(report, args) if report else ""), status


@ui.get("/ui/stats.csv")
@login_required()
def stats_csv():
    """The page's table as CSV (formula-safe); a wrong form is the error page, a SIM that is gone a 404."""
    try:
        report = _report(_args())
    except StatsError as problem:
        abort(400, description=f"No CSV: {problem.detail}.")
    name = f"modemgw-stats-{report['period']}-{report['since']}-{report['until']}.csv"
    return Response(statistics.stats_csv(report), content_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


# --- the dashboard's chart ------------------------------------------------------------------------------------

@ui.app_template_global()
def hourly_chart(hours: list[dict[str, Any]]):
    """The dashboard's "messages sent per hour" (`Gateway.sent_by_hour`), drawn like the charts above: a y axis
    with tick numbers, an hour label every 3 or 6 hours, "now" at the right end."""
    labels = [f"{hour['hour']:02d}:00" for hour in hours]
    details = [f"{label}–{(hour['hour'] + 1) % 24:02d}:00: {hour['sent']} sent"
               for label, hour in zip(labels, hours, strict=True)]
    return charts.column_chart(f"Messages sent per hour, last {len(hours)} hours", labels,
                               [charts.Series("Sent", charts.SENT, [hour["sent"] for hour in hours])],
                               details=details, keys=[hour["hour"] for hour in hours], steps=(3, 6),
                               end_label="now", show_legend=False)
