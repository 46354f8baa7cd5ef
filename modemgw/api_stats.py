"""The REST API's statistics (a route on the `/api/v1` blueprint of `modemgw.api`): `GET /api/v1/stats`, scope
`read`, the same report as the web UI's Statistics page (`Gateway.statistics`), as JSON.

Query: `period` (day, week or month; default day), `since` and `until` (local dates YYYY-MM-DD, both included; by
default the last 30 days, 12 weeks or 12 months up to today: the Statistics page's defaults too, so that the page
with From and To empty and this route without them give the same numbers), `modem_id` (one SIM). A week or month
report counts whole weeks (Monday to Sunday) or months: the answer's `since` and `until` are the dates it covers.
A range longer than two years, a wrong date or period answers 400 with the parameter at fault; an unknown parameter
too (a typo such as `perod` must not quietly give another report); an unknown SIM 404.
"""

from __future__ import annotations

from flask import request

from modemgw.api import _gateway, _whole, api, requires
from modemgw.problems import ApiProblem, problem
from modemgw.statistics import StatsError

STATS_ARGS = ("period", "since", "until", "modem_id")
MAX_ARG = 32  # characters of one query value: anything longer is refused before it is parsed


@api.errorhandler(StatsError)
def on_stats_error(error: StatsError):
    return problem(400, "invalid-request", error.detail, field=error.field)


@api.get("/stats")
@requires("read")
def get_stats():
    args = request.args
    for name in args:
        if name not in STATS_ARGS:
            raise ApiProblem(400, "invalid-request", f"unknown parameter '{name[:64]}' (parameters: "
                                                     f"{', '.join(STATS_ARGS)})", field=name[:64])
        if len(args.getlist(name)) > 1 or len(args[name]) > MAX_ARG:
            raise ApiProblem(400, "invalid-request", f"'{name}' must be given once, at most {MAX_ARG} characters",
                             field=name)
    return _gateway().statistics(args.get("period") or "day", args.get("since") or None, args.get("until") or None,
                                 _whole(args, "modem_id"))
