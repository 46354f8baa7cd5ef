"""The Statistics page and the dashboard's chart in real headless Chromium (Debian's chromium, driven by Playwright
with executable_path), on a desktop (1366 px) and on a phone (360 px, mobile emulation): no sideways scroll, the
chart that shows has its axis tick numbers, readable, and the period form works."""

import itertools
import re
import time

import pytest
from playwright import sync_api as playwright_api

from tests.support import logged_in_page, running_daemon

PASSWORD = "correct horse battery"
expect = playwright_api.expect
DESKTOP = {"viewport": {"width": 1366, "height": 800}}
PHONE = {"viewport": {"width": 360, "height": 740}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with running_daemon(tmp_path_factory, "stats-ui", {"oscar": "operator"}) as running:
        fill(running)
        yield running


def fill(running):
    """Two SIMs, one with a long name, and 60 messages over the last 30 days and hours, some delivered, some not."""
    store = running.store
    sims = [store.attach_modem(f"35693803000{index:04d}", None, label=label)["id"]
            for index, label in enumerate(["front-desk", "Ein-sehr-langer-SIM-Name-ohne-Leerzeichen-1234567890"])]
    running.gateway.update_modem(sims[0], quota_day=500)
    now = time.time()
    for index in range(60):  # the last 30 days and the last hours, on both SIMs, some delivered, some not
        at = now - index * 11 * 3600
        modem_id = sims[index % 2]
        row = {"recipient": "+447700900001", "body": "hello", "encoding": "gsm7", "segments": 1 + index % 3,
               "status": "queued", "priority": 0, "due_at": at - 1, "created_at": at - 5, "updated_at": at - 5,
               "request_report": 1}
        [message_id] = store.insert_messages([row], None, "h", None, lambda submission, ids: {"ids": ids})["ids"]
        assert store.claim_next(modem_id, "x", None, [], at).id == message_id
        for seq in range(1, row["segments"] + 1):
            store.record_part_sent(message_id, seq, modem_id, seq, at, last=seq == row["segments"])
        if index % 4:
            for seq in range(1, row["segments"] + 1):
                store.record_report(message_id, seq, modem_id, "delivered" if index % 5 else "failed", 0,
                                    at + 5 + index)


def no_sideways_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def visible_ticks(page) -> list[str]:
    """The tick numbers of the first chart drawing that shows, and their rendered font size (CSS px)."""
    chart = page.locator("svg.plot:visible").first
    expect(chart).to_be_visible()
    return chart.locator("text.tick").all_text_contents()


def tick_font_px(page) -> float:
    return page.locator("svg.plot:visible text.tick").first.evaluate("t => t.getBoundingClientRect().height")


@pytest.mark.parametrize("context", [DESKTOP, PHONE], ids=["1366px", "360px-mobile"])
def test_the_statistics_page_fits_and_its_charts_have_numbers(browser, daemon, context):
    complaints = []
    page = logged_in_page(browser, daemon, "oscar", **context)
    page.on("console", lambda message: complaints.append(message.text) if message.type == "error" else None)
    if context is PHONE:
        page.goto(daemon.url + "ui/stats")
    else:
        page.get_by_role("navigation").get_by_role("link", name="Statistics").click()
    expect(page.get_by_role("heading", name="Statistics", exact=True)).to_be_visible()
    ticks = visible_ticks(page)
    assert ticks[0] == "0" and len(ticks) >= 3 and all(re.fullmatch(r"\d+", tick) for tick in ticks)
    assert tick_font_px(page) >= 9, "tick numbers readable"
    assert page.locator("svg.plot:visible").count() == 2  # per day and per SIM, one drawing each
    assert page.locator("svg.plot:visible text.xlabel").count() >= 3
    expect(page.locator("table.stats tfoot")).to_contain_text("Total")
    assert no_sideways_scroll(page), page.evaluate("document.documentElement.scrollWidth")
    tops = sorted(page.locator(".stats-form label").evaluate_all("ls => ls.map(l => l.getBoundingClientRect().top)"))
    assert all(b - a <= 2 or b - a >= 20 for a, b in itertools.pairwise(tops)), f"labels on a row line up: {tops}"
    page.get_by_label("Period", exact=True).select_option("week")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("heading", name="Per week", exact=True)).to_be_visible()
    expect(page.locator("table.stats tbody th").first).to_contain_text("Week of")
    assert no_sideways_scroll(page)
    page.get_by_label("SIM", exact=True).select_option(label="front-desk")
    page.get_by_role("button", name="Show").click()
    expect(page.locator(".stats-note").first).to_contain_text("SIM front-desk")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the table as CSV").click()
    assert download.value.suggested_filename.startswith("modemgw-stats-week-")
    page.screenshot(path=str(daemon.data_dir / f"stats-{context['viewport']['width']}.png"), full_page=True)
    assert not [text for text in complaints if "Content Security Policy" in text or "Refused" in text], complaints


@pytest.mark.parametrize("context", [DESKTOP, PHONE], ids=["1366px", "360px-mobile"])
def test_the_dashboard_chart_has_an_axis_hours_and_now_at_the_right(browser, daemon, context):
    page = logged_in_page(browser, daemon, "oscar", **context)
    expect(page.get_by_role("heading", name="Messages sent per hour, last 24 hours")).to_be_visible()
    ticks = visible_ticks(page)
    assert ticks[0] == "0" and len(ticks) >= 2
    chart = page.locator("svg.plot:visible").first
    hours = chart.locator("text.xlabel:not(.end)").all_text_contents()
    assert hours and all(re.fullmatch(r"\d\d:00", hour) and int(hour[:2]) % 3 == 0 for hour in hours)
    now = chart.locator("text.xlabel.end")
    expect(now).to_have_text("now")
    box, frame = now.bounding_box(), chart.bounding_box()
    assert box["x"] + box["width"] > frame["x"] + frame["width"] * 0.9, "now at the right end"
    expect(page.locator("article.modem").first).to_contain_text("segments used (daily quota)")
    expect(page.locator("article.modem").last).to_contain_text("no daily quota")
    assert no_sideways_scroll(page), page.evaluate("document.documentElement.scrollWidth")
    page.screenshot(path=str(daemon.data_dir / f"dashboard-{context['viewport']['width']}.png"), full_page=True)


def test_the_range_typed_stays_while_the_period_changes(browser, daemon):
    """Day, week, month, week: From and To keep what was typed (the report alone counts whole weeks or months);
    left empty, they stay empty and each period has its default, as GET /api/v1/stats has."""
    page = logged_in_page(browser, daemon, "oscar", **DESKTOP)
    page.goto(daemon.url + "ui/stats")
    expect(page.get_by_label("From", exact=True)).to_have_value("")
    page.get_by_label("Period", exact=True).select_option("week")
    page.get_by_role("button", name="Show").click()
    expect(page.locator(".stats-note").first).to_contain_text("(the last 12 weeks)")
    page.get_by_label("From", exact=True).fill("2026-11-02")
    page.get_by_label("To", exact=True).fill("2026-12-01")
    for period, covered in (("day", "From 2026-11-02 to 2026-12-01"), ("week", "From 2026-11-02 to 2026-12-06"),
                            ("month", "From 2026-11-01 to 2026-12-31"), ("week", "From 2026-11-02 to 2026-12-06")):
        page.get_by_label("Period", exact=True).select_option(period)
        page.get_by_role("button", name="Show").click()
        expect(page.locator(".stats-note").first).to_contain_text(covered)
        expect(page.get_by_label("From", exact=True)).to_have_value("2026-11-02")
        expect(page.get_by_label("To", exact=True)).to_have_value("2026-12-01")
