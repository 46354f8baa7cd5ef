"""Statistics: the numbers per period and per SIM against messages with known outcomes (the store's own outcome
methods, at chosen times), the API that answers the same report, the page and its CSV (formula-safe), the
dashboard's hourly sends and modem cards, and the SVG charts' round ticks and labels that never overlap."""

import csv
import datetime as dt
import io
import itertools
import re
import sqlite3
import time

import pytest

import webui
from modemgw.gateway import Gateway
from modemgw.statistics import MAX_DAYS, StatsError
from modemgw.store import NotFound, Store
from tests.support import PASSWORD, csrf_token
from webui import charts

TODAY = dt.date.today()


def noon(days_ago: int) -> float:
    """Local noon `days_ago` days before today (far from any period's edge whatever the time zone)."""
    return time.mktime((TODAY - dt.timedelta(days=days_ago)).timetuple()) + 12 * 3600


def submit(store: Store, at: float, segments: int = 1, **fields) -> int:
    row = {"recipient": "+447700900001", "body": "hello", "encoding": "gsm7", "segments": segments,
           "status": "queued", "priority": 0, "due_at": at - 1, "created_at": at - 5, "updated_at": at - 5,
           "request_report": 1, **fields}
    return store.insert_messages([row], None, "hash", None, lambda submission, ids: {"ids": ids})["ids"][0]


def sent(store: Store, modem_id: int, label: str, at: float, segments: int = 1) -> int:
    """A message that left SIM `modem_id` at `at`, every part with its +CMGS."""
    message_id = submit(store, at, segments)
    assert store.claim_next(modem_id, label, None, [], at).id == message_id
    for seq in range(1, segments + 1):
        store.record_part_sent(message_id, seq, modem_id, seq, at, last=seq == segments)
    return message_id


def report(store: Store, message_id: int, modem_id: int, at: float, outcome: str = "delivered") -> None:
    for seq in range(1, store.message(message_id)["segments"] + 1):
        store.record_report(message_id, seq, modem_id, outcome, 0 if outcome == "delivered" else 65, at)


def known_traffic(store: Store) -> dict[str, int]:
    """Two SIMs and messages with known outcomes: two days ago, yesterday, today, and 40 days ago (outside the
    default range). Returns the SIMs' ids."""
    a = store.attach_modem("356938030000005", "8944010000000000001", label="sim-a")["id"]
    b = store.attach_modem("356938030000013", "8944010000000000002", label="=HYPERLINK(\"x\")")["id"]
    # two days ago: a delivers after 10 s and 40 s (2 segments), b's is undelivered
    first = noon(2)
    report(store, sent(store, a, "sim-a", first), a, first + 10)
    report(store, sent(store, a, "sim-a", first + 60, segments=2), a, first + 100)
    report(store, sent(store, b, "b", first + 120), b, first + 130, outcome="failed")
    # yesterday: b sends 3 segments with no report (yet), a delivers after 20 s
    second = noon(1)
    sent(store, b, "b", second, segments=3)
    report(store, sent(store, a, "sim-a", second + 60), a, second + 80)
    # today: a refuses one (failed now), one expires before any SIM took it
    failing = submit(store, time.time())
    assert store.claim_next(a, "sim-a", None, [], time.time()).id == failing
    store.fail(failing, a, 500, "refused by the network")
    expiring = submit(store, time.time(), expires_at=time.time() - 1)
    assert store.expire_due(time.time()) == [expiring]
    # 40 days ago: outside the last 30 days
    old = noon(40)
    report(store, sent(store, a, "sim-a", old), a, old + 5)
    return {"a": a, "b": b}


@pytest.fixture
def gateway(tmp_path):
    store = Store(tmp_path / "modemgw.db")
    yield Gateway(store)
    store.close()


def numbers(row: dict) -> tuple:
    return (row["sent"], row["delivered"], row["failed"], row["expired"], row["no_report"], row["delivery_rate"],
            row["median_delivery_seconds"], row["segments"])


# --- the report ----------------------------------------------------------------------------------------------

def test_per_day_and_per_sim_the_numbers_are_those_of_the_messages(gateway):
    sims = known_traffic(gateway.store)
    result = gateway.statistics(today=TODAY)
    assert result["period"] == "day" and result["until"] == TODAY.isoformat()
    assert result["since"] == (TODAY - dt.timedelta(days=29)).isoformat() and len(result["periods"]) == 30
    by_day = {row["start"]: numbers(row) for row in result["periods"]}
    empty = (0, 0, 0, 0, 0, None, None, 0)
    assert by_day.pop((TODAY - dt.timedelta(days=2)).isoformat()) == (3, 2, 1, 0, 0, 0.6667, 25.0, 4)
    assert by_day.pop((TODAY - dt.timedelta(days=1)).isoformat()) == (2, 1, 0, 0, 1, 0.5, 20.0, 4)
    assert by_day.pop(TODAY.isoformat()) == (0, 0, 1, 1, 0, None, None, 0)
    assert set(by_day.values()) == {empty}  # the 40-day-old message is outside the range
    assert numbers(result["totals"]) == (5, 3, 2, 1, 1, 0.6, 20.0, 8)
    per_sim = {row["label"]: (row["modem_id"], numbers(row)) for row in result["sims"]}
    assert per_sim == {"sim-a": (sims["a"], (3, 3, 1, 0, 0, 1.0, 20.0, 4)),
                       '=HYPERLINK("x")': (sims["b"], (2, 0, 1, 0, 1, 0.0, None, 4)),
                       "no SIM": (None, (0, 0, 0, 1, 0, None, None, 0))}
    assert [row["label"] for row in result["periods"][-1:]] == [
        f"{('Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun')[TODAY.weekday()]} {TODAY.day} "
        f"{TODAY.strftime('%b')} {TODAY.year}"]


def test_kept_medians_give_the_same_reports_and_a_late_report_or_pruning_forgets_them(tmp_path):
    from modemgw.settings import GatewaySettings, RetentionSettings

    store = Store(tmp_path / "modemgw.db")
    gateway = Gateway(store, GatewaySettings(retention=RetentionSettings(messages_days=60)))
    sims = {"a": store.attach_modem("356938030000005", "8944010000000000001", label="a")["id"],
            "b": store.attach_modem("356938030000013", "8944010000000000002", label="b")["id"]}
    for days, sim, took in ((75, "b", 300), (40, "a", 5), (20, "b", 12), (10, "b", 7), (10, "b", 31), (10, "b", 90),
                            (9, "a", 4), (2, "a", 10), (1, "b", 20)):  # oldest first: ids grow with time
        at = noon(days) + took
        report(store, sent(store, sims[sim], sim, at), sims[sim], at + took)
    asks = [{"period": period, "since": TODAY - dt.timedelta(days=100), "modem_id": modem_id}
            for period in ("day", "week", "month") for modem_id in (None, sims["a"], sims["b"])]
    before = [gateway.statistics(today=TODAY, **ask) for ask in asks]

    assert gateway.roll_up_statistics(today=TODAY) > 0
    assert gateway.roll_up_statistics(today=TODAY) == 0  # all kept already
    kept = {(row["period"], row["start"], row["modem_id"]): row["median"]
            for row in store.query("SELECT * FROM stats_periods")}
    ten = (TODAY - dt.timedelta(days=10)).isoformat()
    assert kept[("day", ten, -1)] == kept[("day", ten, sims["b"])] == 31
    assert ("day", ten, sims["a"]) not in kept  # a SIM without deliveries that day has no median
    assert max(start for period, start, _ in kept if period == "day") <= (TODAY - dt.timedelta(days=3)).isoformat()
    assert all(TODAY.isoformat() >= start for _, start, _ in kept)
    assert [gateway.statistics(today=TODAY, **ask) for ask in asks] == before  # the same with the kept medians

    def median_of(day: str, **ask) -> float | None:
        result = gateway.statistics(today=TODAY, since=TODAY - dt.timedelta(days=100), **ask)
        return next(row["median_delivery_seconds"] for row in result["periods"] if row["start"] == day)

    # the report reads the kept median (here made up, to tell it from one worked out)
    with sqlite3.connect(tmp_path / "modemgw.db") as conn:
        conn.execute("UPDATE stats_periods SET median = 999 WHERE period = 'day' AND start = ? AND modem_id = -1",
                     (ten,))
    assert median_of(ten) == 999 and median_of(ten, modem_id=sims["b"]) == 31
    # ... and its kept counts (made up too), and the SIM totals add up the kept month's counts
    with sqlite3.connect(tmp_path / "modemgw.db") as conn:
        conn.execute("UPDATE stats_periods SET sent = 70, segment = 71 WHERE period = 'day' AND start = ? "
                     "AND modem_id = -1", (ten,))
    made_up = gateway.statistics(today=TODAY, since=TODAY - dt.timedelta(days=100))
    assert [(row["no_report"], row["sent"], row["segments"]) for row in made_up["periods"]
            if row["start"] == ten] == [(70, 73, 71)]
    month = (TODAY - dt.timedelta(days=40)).replace(day=1)
    if month.month != (TODAY - dt.timedelta(days=10)).month and month != TODAY.replace(day=1):
        with sqlite3.connect(tmp_path / "modemgw.db") as conn:
            conn.execute("UPDATE stats_periods SET delivered = 50 WHERE period = 'month' AND start = ? "
                         "AND modem_id = ?", (month.isoformat(), sims["a"]))
        whole = gateway.statistics(today=TODAY, since=month, until=TODAY)
        assert next(row["delivered"] for row in whole["sims"] if row["modem_id"] == sims["a"]) == 50 + 2
        with sqlite3.connect(tmp_path / "modemgw.db") as conn:
            conn.execute("DELETE FROM stats_periods WHERE period = 'month' AND start = ?", (month.isoformat(),))
    # a report that says "undelivered", days late, changes that day's counts alone: its kept periods go too
    nine = (TODAY - dt.timedelta(days=9)).isoformat()
    assert ("day", nine, -1) in kept
    undelivered = sent(store, sims["a"], "a", noon(9) + 60)
    assert not store.query("SELECT * FROM stats_periods WHERE period = 'day' AND start = ?", (nine,))
    assert gateway.roll_up_statistics(today=TODAY) >= 1
    report(store, undelivered, sims["a"], time.time(), outcome="failed")
    assert not store.query("SELECT * FROM stats_periods WHERE period = 'day' AND start = ?", (nine,))
    by_day = {row["start"]: row for row in gateway.statistics(today=TODAY, since=TODAY - dt.timedelta(days=100),
                                                             modem_id=sims["a"])["periods"]}
    assert (by_day[nine]["sent"], by_day[nine]["delivered"], by_day[nine]["failed"]) == (2, 1, 1)
    assert gateway.roll_up_statistics(today=TODAY) >= 1  # kept again
    # a report that comes days late changes that day: its kept medians (day, week, month) are forgotten
    late = sent(store, sims["b"], "b", noon(10) + 600)
    report(store, late, sims["b"], time.time())
    assert median_of(ten) == median_of(ten, modem_id=sims["b"]) == (31 + 90) / 2
    day = TODAY - dt.timedelta(days=10)
    around = (("day", ten), ("week", (day - dt.timedelta(days=day.weekday())).isoformat()),
              ("month", day.replace(day=1).isoformat()))
    assert not [row for row in store.query("SELECT period, start FROM stats_periods") if tuple(row) in around]
    again = [(period, start, -1) for period, start in around if (period, start, -1) in kept]
    assert ("day", ten, -1) in again and gateway.roll_up_statistics(today=TODAY) == len(again)  # kept again
    assert median_of(ten) == (31 + 90) / 2

    # pruning the messages of 75 days ago forgets that day's median too
    old = (TODAY - dt.timedelta(days=75)).isoformat()
    assert store.query("SELECT median FROM stats_periods WHERE period = 'day' AND start = ? AND modem_id = -1",
                       (old,))[0][0] == 300
    assert gateway.prune()["deleted"]["messages"] >= 1
    assert not store.query("SELECT * FROM stats_periods WHERE period = 'day' AND start = ?", (old,))
    assert median_of(old) is None
    store.close()


def test_kept_months_and_the_days_around_them_add_up_alike(gateway):
    """A range from the middle of a month to the middle of another: the medians per SIM and over all merge the kept
    times of the whole month between with the day rows of both ends, where the same time may come twice."""
    store = gateway.store
    sim = store.attach_modem("356938030000005", "8944010000000000001", label="a")["id"]
    this_month = TODAY.replace(day=1)
    start = (this_month - dt.timedelta(days=80)).replace(day=15)  # three months back, mid-month
    middle = (start.replace(day=28) + dt.timedelta(days=10)).replace(day=10)  # the whole month after it
    end = (middle.replace(day=28) + dt.timedelta(days=10)).replace(day=5)  # and a day of the month after that
    for day, took, count in ((start + dt.timedelta(days=5), 10, 5), (middle, 50, 3), (end, 10, 1)):
        for _ in range(count):
            at = time.mktime(day.timetuple()) + 12 * 3600
            report(store, sent(store, sim, "a", at), sim, at + took)

    def medians() -> list:
        return [(result["totals"]["median_delivery_seconds"], [row["median_delivery_seconds"] for row in
                                                               result["sims"]])
                for result in (gateway.statistics(period, since=start, until=end + dt.timedelta(days=3),
                                                  today=TODAY, modem_id=modem_id)
                               for period in ("day", "week", "month") for modem_id in (None, sim))]

    before = medians()
    assert before[0] == (10.0, [10.0])  # six of 10 s, three of 50 s
    assert gateway.roll_up_statistics(today=TODAY) > 0
    assert medians() == before


def test_one_sim_only(gateway):
    sims = known_traffic(gateway.store)
    result = gateway.statistics(modem_id=sims["b"], today=TODAY)
    assert numbers(result["totals"]) == (2, 0, 1, 0, 1, 0.0, None, 4)
    assert [row["modem_id"] for row in result["sims"]] == [sims["b"]]
    with pytest.raises(NotFound):
        gateway.statistics(modem_id=999, today=TODAY)


@pytest.mark.parametrize("period", ["week", "month"])
def test_weeks_and_months_are_whole_and_add_up_to_the_same_totals(gateway, period):
    known_traffic(gateway.store)
    since = TODAY - dt.timedelta(days=50)
    result = gateway.statistics(period, since=since.isoformat(), until=TODAY.isoformat())
    starts = [dt.date.fromisoformat(row["start"]) for row in result["periods"]]
    if period == "week":
        assert all(start.weekday() == 0 for start in starts) and result["periods"][0]["label"].startswith("Week of")
        assert dt.date.fromisoformat(result["until"]).weekday() == 6
    else:
        assert all(start.day == 1 for start in starts)
    assert starts[0] <= since and dt.date.fromisoformat(result["until"]) >= TODAY
    # the 40-day-old message is in the range now
    assert numbers(result["totals"])[:5] == (6, 4, 2, 1, 1)
    for name in ("sent", "delivered", "failed", "expired", "segments"):
        assert sum(row[name] for row in result["periods"]) == result["totals"][name] == \
            sum(row[name] for row in result["sims"])


def test_default_ranges_and_refused_inputs(gateway):
    assert gateway.statistics("week", today=TODAY)["since"] == (
        TODAY - dt.timedelta(weeks=11, days=TODAY.weekday())).isoformat()
    assert len(gateway.statistics("month", today=TODAY)["periods"]) == 12
    longest = gateway.statistics("day", since=(TODAY - dt.timedelta(days=MAX_DAYS - 1)).isoformat(), today=TODAY)
    assert len(longest["periods"]) == MAX_DAYS
    for call, field in [(dict(period="year"), "period"), (dict(since="yesterday"), "since"),
                        (dict(since="2024-02-30"), "since"), (dict(until="2024-03-01T00:00:00"), "until"),
                        (dict(since="2024-03-02", until="2024-03-01"), "since"),
                        (dict(since="2020-01-01", until="2024-01-01"), "since"), (dict(since="0001-01-01"), "since")]:
        with pytest.raises(StatsError) as refused:
            gateway.statistics(**call)
        assert refused.value.field == field and refused.value.detail


def test_sent_by_hour_counts_clock_hours_up_to_now(gateway):
    store = gateway.store
    a = store.attach_modem("356938030000005", None, label="a")["id"]
    now = time.time()
    local = time.localtime(now)
    hour_start = now - local.tm_min * 60 - local.tm_sec - (now % 1)
    for at in (hour_start + 1, hour_start + 2, hour_start - 3600 * 5 + 10, hour_start - 3600 * 24 + 10):
        sent(store, a, "a", at)
    hours = gateway.sent_by_hour(now)
    assert len(hours) == 24 and hours[-1]["hour"] == local.tm_hour
    assert [hour["sent"] for hour in hours][-1] == 2 and hours[-6]["sent"] == 1 and sum(h["sent"] for h in hours) == 3



def test_sent_by_hour_remembers_the_hours_that_ended_and_counts_the_current_one(gateway):
    """A busy day's hours were counted again on every dashboard view (50 ms at 33,000 sends a day): an hour that
    ended is counted once and remembered; the hour in progress is counted each time."""
    store = gateway.store
    a = store.attach_modem("356938030000005", None, label="a")["id"]
    now = time.time()
    local = time.localtime(now)
    hour_start = now - local.tm_min * 60 - local.tm_sec - (now % 1)
    sent(store, a, "a", hour_start - 3 * 3600 + 10)
    sent(store, a, "a", hour_start + 1)
    first = [hour["sent"] for hour in gateway.sent_by_hour(now)]
    assert first[-4] == 1 and first[-1] == 1 and sum(first) == 2
    sent(store, a, "a", hour_start + 2)  # the hour in progress: counted again
    sent(store, a, "a", hour_start - 3 * 3600 + 20)  # written to a past hour behind the gateway's back: not read
    second = [hour["sent"] for hour in gateway.sent_by_hour(now + 1)]
    assert second[-1] == 2 and second[-4] == 1 and sum(second) == 3
    assert [hour["sent"] for hour in gateway.sent_by_hour(now, hours=168)][-4] == 1  # a longer series reuses them
    # a send recorded late through the gateway (its commit waited, e.g. for a full disk) makes its hour count again
    late = submit(store, hour_start - 3 * 3600 + 30)
    claimed = store.claim_next(a, "a", None, [], hour_start - 3 * 3600 + 30)
    assert claimed.id == late
    gateway.part_sent(claimed, 1, a, 9, hour_start - 3 * 3600 + 30, last=True)
    assert [hour["sent"] for hour in gateway.sent_by_hour(now + 2)][-4] == 3


# --- the API -------------------------------------------------------------------------------------------------

def test_the_api_answers_the_same_report(client):
    daemon = client.test_client.application.extensions["modemgw"]
    sims = known_traffic(daemon.store)
    status, _, body = client.call("GET", f"/api/v1/stats?period=day&until={TODAY}")
    assert status == 200, body
    assert body == daemon.gateway.statistics(until=TODAY.isoformat())
    assert numbers(body["totals"]) == (5, 3, 2, 1, 1, 0.6, 20.0, 8)
    status, _, body = client.call("GET", f"/api/v1/stats?period=month&modem_id={sims['a']}")
    assert status == 200 and body["sims"][0]["label"] == "sim-a" and body["totals"]["sent"] == 4
    for query, field in [("period=year", "period"), ("since=31/12/2024", "since"), ("perod=week", "perod"),
                         ("since=2020-01-01&until=2024-01-01", "since"), ("modem_id=x", "modem_id"),
                         ("since=" + "9" * 40, "since")]:
        status, headers, body = client.call("GET", f"/api/v1/stats?{query}")
        assert status == 400 and body["field"] == field and headers["Content-Type"] == "application/problem+json"
    status, _, body = client.call("GET", "/api/v1/stats?modem_id=999")
    assert status == 404 and body["type"] == "urn:modemgw:problem:not-found"
    assert client.call("GET", "/api/v1/stats", key=None)[0] == 401


# --- the page, its CSV, the dashboard ---------------------------------------------------------------------------

@pytest.fixture
def ui(app):
    daemon = app.extensions["modemgw"]
    webui.add_user(daemon.store, "stella", PASSWORD, "operator")
    client = app.test_client()
    token = csrf_token(client.get("/ui/login").get_data(as_text=True))
    answer = client.post("/ui/login", data={"username": "stella", "password": PASSWORD, "csrf_token": token})
    assert answer.status_code == 302
    return client


def test_the_page_shows_tables_and_charts_with_numbers(ui, app):
    known_traffic(app.extensions["modemgw"].store)
    page = ui.get("/ui/stats").get_data(as_text=True)
    assert '<a href="/ui/stats">Statistics</a>' in page
    assert "<h2>Per day</h2>" in page and "<h2>Per SIM</h2>" in page
    assert '<tfoot><tr><th scope="row">Total</th><td class="num">5</td><td class="num">3</td>' in page
    assert "60.0 %" in page and "20.0 s" in page
    assert page.count('<svg class="plot plot-wide"') == 2 and page.count('<svg class="plot plot-narrow"') == 2
    ticks = re.findall(r'<text class="tick"[^>]*>([^<]+)</text>', page)
    assert "0" in ticks and all(re.fullmatch(r"\d+(\.\d+)?[kM]?", tick) for tick in ticks)
    assert "=HYPERLINK(&#34;x&#34;)" in page or "=HYPERLINK(&quot;x&quot;)" in page  # escaped, not markup
    answer = ui.get("/ui/stats?since=2024-03-02&until=2024-03-01")
    assert answer.status_code == 400 and "is after" in answer.get_data(as_text=True)
    assert ui.get("/ui/stats?sim=12345").status_code == 404
    assert ui.get("/ui/stats?period=week").status_code == 200 and ui.get("/ui/stats?period=month").status_code == 200


@pytest.mark.parametrize("period", ["day", "week", "month"])
def test_the_page_and_the_api_have_the_same_defaults(ui, client, period):
    """The README: `GET /api/v1/stats?period=week` gives the Statistics page's numbers, without since/until."""
    known_traffic(client.test_client.application.extensions["modemgw"].store)
    status, _, api = client.call("GET", f"/api/v1/stats?period={period}")
    assert status == 200
    page = ui.get(f"/ui/stats?period={period}&since=&until=&sim=").get_data(as_text=True)  # Period changed, Show
    assert f"From {api['since']} to {api['until']} (the last " in page
    totals = api["totals"]
    assert (f'<tfoot><tr><th scope="row">Total</th><td class="num">{totals["sent"]}</td><td class="num">'
            f'{totals["delivered"]}</td><td class="num">{totals["failed"]}</td>') in page
    assert page.count('<tr><th scope="row">') - 1 - len(api["sims"]) == len(api["periods"])  # its rows, the total
    assert 'name="since" type="date" value=""' in page and 'name="until" type="date" value=""' in page


def test_the_range_chosen_stays_as_chosen_whatever_the_period(ui):
    """Day 11-02..12-01, then week, month and week again: the form keeps 11-02..12-01; only the report counts
    whole weeks or months (it used to widen the form's dates at each change)."""
    since, until = "2026-11-02", "2026-12-01"
    covered = []
    for period in ("day", "week", "month", "week"):
        page = ui.get(f"/ui/stats?period={period}&since={since}&until={until}").get_data(as_text=True)
        assert f'name="since" type="date" value="{since}"' in page and f'name="until" type="date" value="{until}"' \
            in page
        covered.append(re.search(r"From (\d{4}-\d\d-\d\d) to (\d{4}-\d\d-\d\d)", page).groups())
        if period != "day":
            assert f"(the whole {period}s covering {since} to {until})" in page
    assert covered == [(since, until), ("2026-11-02", "2026-12-06"), ("2026-11-01", "2026-12-31"),
                       ("2026-11-02", "2026-12-06")]
    page = ui.get("/ui/stats").get_data(as_text=True)
    assert "Hover" not in page and "The tables below carry the numbers." in page


def test_the_csv_is_the_table_and_formula_safe(ui, app):
    known_traffic(app.extensions["modemgw"].store)
    answer = ui.get(f"/ui/stats.csv?period=day&until={TODAY}")
    assert answer.status_code == 200 and answer.content_type == "text/csv; charset=utf-8"
    assert "attachment" in answer.headers["Content-Disposition"]
    text = answer.get_data(as_text=True)
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text[1:])))
    assert rows[0][:5] == ["row", "from", "to", "period", "SIM"]
    assert len([row for row in rows if row[0] == "period"]) == 30
    by_sim = {row[4]: row for row in rows if row[0] == "SIM"}
    assert "'=HYPERLINK(\"x\")" in by_sim and by_sim["sim-a"][5:] == ["3", "3", "1", "0", "0", "1.0", "20.0", "4"]
    assert rows[-1][0] == "total" and rows[-1][5:] == ["5", "3", "2", "1", "1", "0.6", "20.0", "8"]
    assert ui.get("/ui/stats.csv?period=year").status_code == 400


def test_the_dashboard_says_what_its_chart_and_its_quotas_count(ui, app):
    daemon = app.extensions["modemgw"]
    a = daemon.store.attach_modem("356938030000005", None, label="sim-a")["id"]
    daemon.store.attach_modem("356938030000013", None, label="sim-b")
    daemon.gateway.update_modem(a, quota_day=500)
    sent(daemon.store, a, "sim-a", time.time(), segments=2)
    page = ui.get("/").get_data(as_text=True)
    assert "Messages sent per hour, last 24 hours" in page
    assert "2 of 500 segments used (daily quota)" in page and "no daily quota" in page and "quota 0 / —" not in page
    svg = page[page.index('<svg class="plot plot-wide"'):]
    svg = svg[:svg.index("</svg>")]
    assert re.search(r'<text class="xlabel end" x="[\d.]+" [^>]*text-anchor="end"[^>]*>now</text>', svg)
    labels = re.findall(r'<text class="xlabel" [^>]*>(\d\d):00</text>', svg)
    assert labels and all(int(hour) % 3 == 0 for hour in labels)
    assert re.findall(r'<text class="tick"[^>]*>([^<]+)</text>', svg)[:2] == ["0", "1"]


def test_the_dashboard_counts_what_left_each_sim_today(ui, app):
    """"sent today" is what left a SIM today (the statistics' day), read from `stats_daily`: a message sent
    yesterday and delivered today is not in it; one that failed today is."""
    daemon = app.extensions["modemgw"]
    sims = known_traffic(daemon.store)  # today: sim-a refused one (failed); yesterday and before: sent
    report(daemon.store, sent(daemon.store, sims["a"], "sim-a", time.time() - 5), sims["a"], time.time())
    sent(daemon.store, sims["b"], "b", time.time() - 3, segments=2)
    late = sent(daemon.store, sims["b"], "b", noon(1))
    report(daemon.store, late, sims["b"], time.time())  # sent yesterday, delivered today
    data = ui.get("/ui/dashboard.json").get_json()
    assert data["totals"] == {"sent": 2, "delivered": 1, "failed": 1}
    cards = {card["id"]: card["today"] for card in data["modems"]}
    assert cards == {sims["a"]: {"sent": 1, "delivered": 1, "failed": 1}, sims["b"]: {"sent": 1, "delivered": 0,
                                                                                      "failed": 0}}


# --- the charts ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("maximum, ticks", [
    (0, [0, 1]), (1, [0, 1]), (3, [0, 1, 2, 3]), (7, [0, 2, 4, 6, 8]), (10, [0, 2, 4, 6, 8, 10]),
    (101, [0, 50, 100, 150]), (1234, [0, 500, 1000, 1500]), (99_999, [0, 20000, 40000, 60000, 80000, 100000]),
])
def test_ticks_are_round_and_cover_the_largest_value(maximum, ticks):
    assert charts.nice_ticks(maximum) == ticks


def test_ticks_of_fractions_and_their_texts():
    assert charts.nice_ticks(0.3, whole=False) == [0, 0.1, 0.2, 0.3]
    assert charts.nice_ticks(float("nan")) == [0, 1]
    assert [charts.tick_text(v) for v in (0, 950, 1500, 25_000, 1_500_000)] == ["0", "950", "1500", "25k", "1.5M"]


def test_labels_are_thinned_to_fit():
    assert charts.label_step(slot=30, width=40) == 2
    assert charts.label_step(slot=13, width=39, steps=(3, 6)) == 6
    assert charts.label_step(slot=29, width=39, steps=(3, 6)) == 3
    hours = [f"{hour:02d}:00" for hour in range(24)]
    shown = charts.thin_labels(hours, 13, 13, keys=list(range(24)), steps=(3, 6))
    assert [label for label in shown if label] == ["00:00", "06:00", "12:00", "18:00"]
    days = [f"{day} Mar" for day in range(1, 31)]
    shown = charts.thin_labels(days, 10, 13)
    assert shown[-1] == "30 Mar" and 3 <= len([label for label in shown if label]) <= 8


def _extents(svg: str) -> list[tuple[float, float]]:
    """Left and right of every x label of a drawing, by the chart's own width estimate."""
    out = []
    for x, anchor, text in re.findall(r'<text class="xlabel[^"]*" x="([\d.]+)" y="[\d.]+" text-anchor="(\w+)"'
                                      r'[^>]*>([^<]*)</text>', svg):
        width = charts.text_width(text, charts.WIDE.font)
        left = float(x) - {"start": 0, "middle": width / 2, "end": width}[anchor]
        out.append((left, left + width))
    return sorted(out)


@pytest.mark.parametrize("count", [1, 7, 12, 24, 30, 53, 120, 731])
def test_x_labels_never_overlap_nor_leave_the_drawing(count):
    labels = [f"{index % 28 + 1} Mar" for index in range(count)]
    figure = str(charts.column_chart("t", labels, [charts.Series("Sent", charts.SENT, [index % 5 for index in
                                                                                      range(count)])],
                                     end_label="now"))
    for layout in (charts.WIDE, charts.NARROW):
        svg = figure[figure.index(f'class="plot {layout.css}"'):]
        svg = svg[:svg.index("</svg>")]
        extents = _extents(svg)
        assert extents and all(left >= 0 and right <= layout.width for left, right in extents)
        assert all(right <= following for (_, right), (following, _) in itertools.pairwise(extents))
        assert svg.count("<g class=\"bar\">") == count


def test_every_text_of_a_chart_is_escaped():
    figure = str(charts.column_chart('<script>alert("x")</script>', ["<b>"], [charts.Series("A&B", "#000", [3])]))
    assert "<script>" not in figure and "<b>" not in figure and "&lt;b&gt;" in figure and "A&amp;B" in figure
    bars = str(charts.bar_chart("t", ["</svg><img src=x>"], [charts.Series("n", "#000", [2])]))
    assert "<img" not in bars and bars.count("</svg>") == 3  # its two drawings and one legend swatch, no more


def test_long_sim_labels_are_cut_short_ones_kept_whole():
    long = "Ein-sehr-langer-SIM-Name-ohne-Leerzeichen-1234567890"
    bars = str(charts.bar_chart("t", ["front-desk", long], [charts.Series("n", "#000", [2, 3])]))
    assert ">front-desk</text>" in bars and f"<title>{long}: 3 n</title>" in bars
    assert re.search(r">Ein-sehr-[^<]*…</text>", bars) and f">{long}</text>" not in bars
