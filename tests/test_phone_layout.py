"""Every page of the web UI on a 360 px phone, in real headless Chromium (Debian's chromium, driven by Playwright
with executable_path), against the same page at 1366 px (issue #16 item 8):

- no page scrolls sideways (`scrollWidth <= clientWidth` of the document: with mobile emulation
  `window.innerWidth` grows with the content, so it proves nothing);
- every link, button and form control a desktop shows is shown on the phone too (compared by role and accessible
  name, page by page), and each one the phone shows lies inside the 360 px once scrolled into view, without a
  box of its own scrolled sideways to reach it (an action never hides in a table that scrolls without a hint);
- every table cell a phone shows is on screen, but for wide tables of numbers that scroll inside a `.table-wrap`;
- every label sits directly above its own input (or left of it, on the same row), so that a quota cannot be typed
  into the box of the label beside it.

The data fills every list, long texts included: a long link in a message and in an inbound SMS, long contact,
group, key, user, template and webhook names, several modems with quotas, sessions, webhooks with failed
deliveries, a scheduled batch, audit entries and statistics."""

from __future__ import annotations

import collections
import json
import os
import time

import pytest
from playwright import sync_api as playwright_api

from modemgw import webhooks
from modemgw.gateway import SubmitRequest
from tests import support
from tests.support import log_in, logged_in_page, running_daemon

PHONE = {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1366, "height": 900}}
LONG_LINK = "https://example.com/appointments/confirm/0123456789abcdefghijklmnopqrstuvwxyz0123456789?ref=sms-campaign"
LONG_NAME = "Maximilian-Alexander Bartholomew-Featherstonehaugh-Worthington of Little Snoring"
LONG_USER = "operator-with-a-rather-long-name-for-a-phone"
LONG_GROUP = "Patients-of-the-north-wing-with-a-long-group-name"
LONG_HOOK = "http://127.0.0.1:9/hooks/crm/an-endpoint-path-that-is-rather-long-and-has-no-break/inbound-and-delivery"
CUSTOMER = "+447700907101"
expect = playwright_api.expect

# What a person can press, follow or fill, found in the page (the header and main).
CONTROLS = ("a[href], button, summary, input:not([type=hidden]), select, textarea")
# Role and accessible name of each control (the parts of the accessible-name algorithm these pages use), and
# whether it is visible.
DESCRIBE = """elements => elements.map(el => {
  const norm = text => (text || '').replace(/\\s+/g, ' ').trim();
  const tag = el.tagName.toLowerCase(), type = (el.getAttribute('type') || '').toLowerCase();
  let role = {a: 'link', button: 'button', summary: 'button', select: 'combobox', textarea: 'textbox'}[tag];
  if (tag === 'input') role = ['submit', 'button', 'reset'].includes(type) ? 'button'
      : ['checkbox', 'radio', 'file'].includes(type) ? type : 'textbox';
  let name = norm(el.getAttribute('aria-label'));
  if (!name && el.getAttribute('aria-labelledby')) name = norm(el.getAttribute('aria-labelledby').split(' ')
      .map(id => (document.getElementById(id) || {}).textContent).join(' '));
  if (!name && el.labels && el.labels.length) name = norm([...el.labels].map(l => l.textContent).join(' '));
  if (!name && tag === 'input' && role === 'button') name = norm(el.value);
  if (!name && tag !== 'input' && tag !== 'select' && tag !== 'textarea') name = norm(el.textContent);
  if (!name) name = norm(el.getAttribute('title') || el.getAttribute('placeholder') || el.getAttribute('name'));
  const box = el.getBoundingClientRect();
  const visible = el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true}) && box.width > 0
      && box.height > 0;
  return {role, name, visible};
})"""
# Where a control is once scrolled into view, and the first box around it that had to scroll sideways for it.
PLACE = """el => {
  const box = el.getBoundingClientRect();
  let scrolled = null;
  for (let up = el.parentElement; up && up !== document.documentElement; up = up.parentElement) {
    if (up.scrollLeft > 0) { scrolled = up.tagName.toLowerCase() + '.' + up.className; break; }
  }
  return {x: box.x, width: box.width, scrolled};
}"""
# Every control of the page described; on a phone, each visible one then in turn scrolled into view if it is not
# (centred then, as Playwright's `scroll_into_view_if_needed` does: CDP DOM.scrollIntoViewIfNeeded) and PLACEd.
# One round trip per page instead of two per control (a page has up to a hundred).
SURVEY = f"""phone => {{
  const elements = [...document.querySelectorAll({json.dumps(CONTROLS)})];
  const described = ({DESCRIBE})(elements);
  if (phone) described.forEach((item, index) => {{
    if (!item.visible) return;
    elements[index].scrollIntoViewIfNeeded(true);
    item.place = ({PLACE})(elements[index]);
  }});
  return described;
}}"""
# Each visible table cell with something in it that lies beyond the right edge, unless the box that scrolls to it
# is a `.table-wrap` (a wide table of numbers scrolls inside it, with a shadow that says there is more); on a
# phone, each cell whose text is wider than the cell (cut off, where a card's cell must wrap).
CELLS = """width => {
  const wrong = [];
  for (const cell of document.querySelectorAll('td, th')) {
    const box = cell.getBoundingClientRect(), text = cell.textContent.replace(/\\s+/g, ' ').trim();
    if (!text || box.width === 0 || !cell.checkVisibility({checkVisibilityCSS: true})) continue;
    if (width <= 400 && cell.scrollWidth > cell.clientWidth + 1)  // its text runs out of its card, cut off
      wrong.push(`${text.slice(0, 40)} is cut (${cell.scrollWidth} px of text in ${cell.clientWidth})`);
    if (box.left >= 0 && box.right <= width + 1) continue;
    let clipped = false;  // a header row hidden on purpose (cards say each cell's column), read by screen readers
    for (let up = cell.parentElement; up && !clipped; up = up.parentElement) {
      const around = up.getBoundingClientRect();
      clipped = around.width <= 1 || around.height <= 1;
    }
    if (clipped) continue;
    let scroller = cell.parentElement;
    while (scroller && !(scroller.scrollWidth > scroller.clientWidth
                         && /(auto|scroll)/.test(getComputedStyle(scroller).overflowX)))
      scroller = scroller.parentElement;
    if (scroller && scroller.classList.contains('table-wrap')) continue;
    wrong.push(`${text.slice(0, 40)} is off-screen (x=${Math.round(box.left)}, ${Math.round(box.width)} wide)`);
  }
  return wrong;
}"""
# Each visible label against its own (visible, not wrapped) control: above it and overlapping it horizontally, or
# left of it on the same row, close by.
LABELS = """() => {
  const visible = el => el.checkVisibility({checkVisibilityCSS: true}) && el.getBoundingClientRect().width > 0;
  const wrong = [];
  for (const label of document.querySelectorAll('label')) {
    const input = label.control;
    if (!visible(label) || !input || label.contains(input) || !visible(input)) continue;
    const l = label.getBoundingClientRect(), i = input.getBoundingClientRect();
    const overlapX = l.left < i.right - 1 && i.left < l.right - 1;
    const above = l.bottom <= i.top + 2 && i.top - l.bottom < 24 && overlapX;
    const sameRow = l.top < i.bottom && i.top < l.bottom;
    const before = sameRow && l.right <= i.left + 1 && i.left - l.right < 40;
    if (!above && !before) wrong.push(`${label.textContent.trim()} (${Math.round(l.left)},${Math.round(l.top)} ` +
        `${Math.round(l.width)}x${Math.round(l.height)}) vs #${input.id} (${Math.round(i.left)},` +
        `${Math.round(i.top)} ${Math.round(i.width)}x${Math.round(i.height)})`);
  }
  return wrong;
}"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with running_daemon(tmp_path_factory, "phone-layout", {"alice": "admin", LONG_USER: "operator"}, modems=3,
                        sim_send_latency=0.01, sim_report_delay=0.03, webhook_schedule=(0.05, 0.05)) as running:
        yield running


@pytest.fixture(scope="module")
def site(daemon):
    """Data in every list, long texts included; the paths of every page that shows one thing."""
    gateway, store = daemon.gateway, daemon.store
    alice = next(user["id"] for user in store.users() if user["username"] == "alice")
    for _ in range(2):  # the operator's open sessions, listed (with End buttons) on Settings
        log_in(daemon.url, LONG_USER)
    refused = support.attempt(support.browser(), daemon.url, "someone-who-does-not-exist-with-a-long-name", "wrong")
    assert refused.status_code != 302  # an audit entry: a refused login
    gateway.create_key("an-integration-with-a-long-name-that-does-not-break", ["send", "read", "book"])
    gateway.create_key("spare", ["send"])
    revoked = gateway.create_key("retired", ["read"])[1]
    gateway.revoke_key(revoked.id)
    hook = gateway.create_webhook(LONG_HOOK, ["message.sent", "message.delivered", "message.failed"])
    gateway.create_webhook("http://127.0.0.1:9/short", ["*"])
    modems = store.modems()
    for index, modem in enumerate(modems):
        gateway.update_modem(modem["id"], label=f"SIM {index + 1} north-wing-reception"[:40], group="front-desk",
                             rate_per_minute=20, quota_day=500 + index, quota_month=9000)
    group = gateway.create_group(LONG_GROUP, "Everyone seen on the north wing this year, with a long description")
    gateway.create_group("VIP")
    contact = gateway.create_contact(LONG_NAME, "+447700907201", {"room": "12B", "doctor": "Dr Featherstonehaugh"},
                                     "Prefers a text in the morning. " * 6, [LONG_GROUP, "VIP"])
    gateway.create_contact("Bo", "+447700907202", groups=["VIP"])
    gateway.create_contact("Cy Who Opted Out", "+447700907203")
    gateway.opt_out("+447700907203", "web")
    template = gateway.create_template("Appointment reminder with a long name for the phone",
                                       "Hello {name}, your appointment in room {room} is confirmed: " + LONG_LINK
                                       + " Reply STOP to opt out.")
    gateway.create_template("Greeting", "{Hi|Hello} {name}!", spintax=True)
    sent = gateway.send(SubmitRequest(f"Your appointment: {LONG_LINK}", ["+447700907201", "+447700907202",
                                                                         CUSTOMER], user_id=alice))
    ids = [message["id"] for message in sent["messages"]]
    batch = gateway.send(SubmitRequest(f"Tomorrow's reminder: {LONG_LINK}", ["+447700907201", "+447700907202"],
                                       send_at=time.time() + 2 * 86400, user_id=alice))
    daemon.simulator.inject_sms(0, CUSTOMER, f"Can I move it? See {LONG_LINK} or call me")
    daemon.simulator.inject_sms(1, "+447700907201", "Thanks!")
    assert daemon.wait_until(lambda: len(store.inbox()) >= 2, 10)
    assert daemon.wait_until(lambda: all(row["status"] == "delivered" for row in store.messages(ids)), 20)
    assert support.eventually(lambda: any(row["attempts"] for row in webhooks.deliveries(store, hook["id"])), 10)
    inbound = next(row for row in store.inbox() if row["sender"] == CUSTOMER)
    return {
        "message": ids[0], "batch": batch["submission_id"], "scheduled": batch["messages"][0]["id"],
        "contact": contact["id"], "group": group["id"], "template": template["id"], "modem": modems[0]["id"],
        "webhook": hook["id"], "sim": inbound["modem_id"],
    }


@pytest.fixture(scope="module")
def pages(browser, daemon, site):
    """alice's desktop and her phone, one session shared (so that both see the same sessions as "this
    browser" and the same buttons)."""
    page = logged_in_page(browser, daemon, **DESKTOP)
    desktop = page.context
    phone_context = browser.new_context(storage_state=desktop.storage_state(), **PHONE)
    phone = phone_context.new_page()
    phone.set_default_timeout(15_000)
    yield {"desktop": page, "phone": phone}
    desktop.close()
    phone_context.close()


def confirm_page(page, daemon, tmp_path):
    """The confirm step after a review with a CSV file: accepted, rejected and skipped rows, long texts."""
    listing = tmp_path / "patients.csv"
    rows = [("+447700907301", "Ann"), ("not-a-number-at-all-and-rather-long-too", "Bo"), ("+447700907203", "Cy"),
            ("+447700907301", "Ann again")]  # accepted, rejected, skipped (opted out), repeated
    listing.write_text("phone,name,link\n" + "".join(f"{number},{name},{LONG_LINK}\n" for number, name in rows))
    page.goto(daemon.url + "ui/compose")
    page.get_by_label("…or a CSV file").set_input_files(str(listing))
    page.get_by_label("Message", exact=True).fill("Hi {name}, your booking: {link}")
    page.get_by_role("button", name="Review…").click()
    expect(page.get_by_role("heading", name="Confirm")).to_be_visible()


def import_result(page, daemon, tmp_path):
    """The import page after a file with rejected rows."""
    upload = tmp_path / "book.csv"
    upload.write_text(f"name,number,notes\n{LONG_NAME},+447700907401,x\nNo number at all here,,y\n"
                      "Bad,not-a-number-and-rather-long-too-for-a-phone,z\n")
    page.goto(daemon.url + "ui/contacts/import")
    page.get_by_label("CSV or vCard file").set_input_files(str(upload))
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("heading", name="Imported")).to_be_visible()


def at_console(page, daemon, site):
    """A modem's page after an AT command: its output and the history."""
    page.goto(f"{daemon.url}ui/modems/{site['modem']}")
    page.get_by_label("Command").fill("AT+CSQ")
    page.get_by_role("button", name="Run").click()
    expect(page.locator("#console-output")).to_contain_text("OK")


def delete_asked(page, daemon, site):
    """A webhook's page asking to confirm its deletion."""
    page.goto(f"{daemon.url}ui/webhooks/{site['webhook']}")
    page.get_by_role("button", name="Delete…").click()
    expect(page.locator("#confirm-delete")).to_be_visible()


NOT_PAGES = ("ui.login", "ui.logout", "ui.static", "ui.contacts_export")  # besides .json and .csv: no page of the UI


def paths(daemon, site) -> list[str]:
    """Every page of the UI that a GET shows: those that show one thing (of `site`), then every route of the UI's
    blueprint with no parameter (the nav's pages, and any page added later)."""
    shown = [
        "", "ui/compose", "ui/messages", f"ui/messages/{site['message']}", "ui/scheduled",
        f"ui/scheduled/{site['batch']}", f"ui/scheduled/messages/{site['scheduled']}", "ui/inbox",
        f"ui/inbox/{CUSTOMER}?sim={site['sim']}", f"ui/inbox/{CUSTOMER}", "ui/contacts",
        f"ui/contacts/{site['contact']}", "ui/contacts/new", "ui/groups", "ui/contacts/import", "ui/templates",
        f"ui/templates/{site['template']}", "ui/modems", f"ui/modems/{site['modem']}", "ui/stats",
        "ui/stats?period=week", "ui/settings", f"ui/webhooks/{site['webhook']}", "ui/audit", "ui/account",
        "ui/messages/987654",  # the error page (a 404 in the app's layout)
    ]
    for rule in daemon.app.url_map.iter_rules():
        path = rule.rule.lstrip("/")
        if (rule.endpoint.startswith("ui.") and "GET" in (rule.methods or ()) and not rule.arguments
                and rule.endpoint not in NOT_PAGES and not path.endswith((".json", ".csv")) and path not in shown):
            shown.append(path)
    return shown


# A visible field's hint (its placeholder) cut short: the text measured in the field's font against its width.
PLACEHOLDERS = """() => {
  const canvas = document.createElement("canvas").getContext("2d");
  const cut = [];
  for (const field of document.querySelectorAll("input[placeholder], textarea[placeholder]")) {
    const box = field.getBoundingClientRect();
    if (!box.width || field.type === "hidden" || getComputedStyle(field).visibility === "hidden") continue;
    if (field.tagName === "TEXTAREA") continue;  // a textarea wraps its hint
    const style = getComputedStyle(field);
    canvas.font = style.font;
    const room = field.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const need = canvas.measureText(field.placeholder).width;
    if (need > room + 1) cut.push(`${JSON.stringify(field.placeholder)} of #${field.id || field.name} needs ` +
                                  `${need.toFixed(0)} px, has ${room.toFixed(0)}`);
  }
  return cut;
}"""


def check(page, where: str) -> tuple[list[str], collections.Counter]:
    """What is wrong with the page as shown (sideways scroll, a control off-screen, a label away from its
    input), and the role and name of every visible control."""
    problems = []
    width = page.evaluate("document.documentElement.clientWidth")
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    if scroll_width > width:
        problems.append(f"{where}: the page scrolls sideways ({scroll_width} > {width})")
    problems += [f"{where}: cell {text}" for text in page.evaluate(CELLS, width)]
    shown: collections.Counter = collections.Counter()
    for item in page.evaluate(SURVEY, width <= 400):
        if not item["visible"]:
            continue
        shown[(item["role"], item["name"])] += 1
        if width > 400:
            continue
        place = item["place"]
        if not (place["x"] >= 0 and place["x"] + place["width"] <= width + 1):
            problems.append(f"{where}: {item['role']} {item['name']!r} is off-screen at x={place['x']:.0f}, "
                            f"{place['width']:.0f} wide")
        elif place["scrolled"]:
            problems.append(f"{where}: {item['role']} {item['name']!r} shows only after {place['scrolled']} "
                            "scrolls sideways")
    problems += [f"{where}: label {text}" for text in page.evaluate(LABELS)]
    problems += [f"{where}: placeholder {text}" for text in page.evaluate(PLACEHOLDERS)]
    return problems, shown


def compare(daemon, pages, path, prepare=None) -> list[str]:
    found = {}
    problems = []
    for kind in ("desktop", "phone"):
        page = pages[kind]
        if prepare:
            prepare(page)  # a page reached by a click: its stylesheet may still be loading when its content shows
            page.wait_for_load_state()
        else:
            page.goto(daemon.url + path)
        expect(page.locator("main h1").first).to_be_visible()
        trouble, found[kind] = check(page, f"{path} ({kind})")
        if os.environ.get("PHONE_LAYOUT_SHOTS"):  # a directory: each page as shown, to look at
            name = "".join(c if c.isalnum() else "-" for c in path) or "dashboard"
            page.screenshot(path=os.path.join(os.environ["PHONE_LAYOUT_SHOTS"], f"{name}-{kind}.png"), full_page=True)
        problems += trouble
    missing = found["desktop"] - found["phone"]
    problems += [f"{path}: the phone hides {role} {name!r} that the desktop shows" for (role, name) in missing]
    return problems


def test_every_page_fits_a_phone_and_hides_nothing_a_desktop_shows(daemon, site, pages, tmp_path):
    problems = []
    for path in paths(daemon, site):
        problems += compare(daemon, pages, path)
    problems += compare(daemon, pages, "ui/compose (confirm)", lambda page: confirm_page(page, daemon, tmp_path))
    problems += compare(daemon, pages, "ui/contacts/import (result)", lambda page: import_result(page, daemon,
                                                                                                 tmp_path))
    problems += compare(daemon, pages, "ui/modems/<id> (AT console)", lambda page: at_console(page, daemon, site))
    problems += compare(daemon, pages, "ui/webhooks/<id> (delete?)", lambda page: delete_asked(page, daemon, site))
    assert not problems, "\n".join(problems)


def test_the_login_page_fits_a_phone(browser, daemon):
    context = browser.new_context(**PHONE)
    page = context.new_page()
    page.goto(daemon.url + "ui/login")
    problems, shown = check(page, "ui/login (phone)")
    context.close()
    assert not problems, "\n".join(problems)
    assert ("button", "Log in") in shown and ("textbox", "Username") in shown


def test_every_page_links_a_favicon_that_loads_under_the_content_security_policy(daemon, pages):
    """No page logs a 404 for /favicon.ico any more: base.html links an SVG icon, served as image/svg+xml, and an
    image of it loads in the page itself, so the Content-Security-Policy (img-src 'self') lets it through."""
    page = pages["desktop"]
    failed = []
    page.on("response", lambda response: failed.append(response.url) if response.status >= 400 else None)
    page.goto(daemon.url)
    icon = page.locator('link[rel="icon"]')
    assert icon.get_attribute("type") == "image/svg+xml"
    href = icon.evaluate("link => link.href")
    assert href.endswith("/favicon.svg")
    answer = page.request.get(href)
    assert answer.status == 200 and answer.headers["content-type"].startswith("image/svg+xml")
    width = page.evaluate("""href => new Promise(done => {
      const image = new Image();
      image.onload = () => done(image.naturalWidth);
      image.onerror = () => done(0);
      image.src = href;
    })""", href)
    assert width > 0, "the icon did not load in the page (refused by the Content-Security-Policy, or not an SVG)"
    assert not failed, failed
