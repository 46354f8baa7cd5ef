"""Make the README's screenshots: a gateway over three simulated SIMs with a little office data, photographed in
headless Chromium at desktop (1366 px) and phone (390 px) width.

    .venv/bin/python docs/screenshots.py            # writes docs/screenshots/*.png

Needs Debian's chromium (`apt-get install chromium`) and the test extra (Playwright).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from playwright import sync_api

from modemgw import config as configuration
from modemgw.daemon import Daemon
from modemgw.users import add_user

OUT = Path(__file__).parent / "screenshots"
PASSWORD = "screenshot password"
PAGES = [("inbox", "ui/inbox"), ("conversation", None), ("contacts", "ui/contacts"), ("templates", "ui/templates"),
         ("compose", "ui/compose")]


def seed(daemon: Daemon) -> str:
    """Contacts in two groups, two templates, and customers who texted our SIMs; the path of one conversation."""
    gateway = daemon.gateway
    gateway.create_group("Patients", "appointment reminders")
    gateway.create_group("Staff")
    for name, number, groups in (("Anna Müller", "+447700900101", ["Patients"]),
                                 ("Björn Olsen", "+447700900102", ["Patients"]),
                                 ("Chloé Martin", "+447700900103", ["Patients", "Staff"]),
                                 ("Dev Patel", "+447700900104", ["Staff"])):
        gateway.create_contact(name, number, {"time": "10:30"}, groups=groups)
    gateway.opt_out("+447700900102", "keyword", "replied STOP")
    gateway.create_template("Reminder", "Hi {first_name}, a reminder of your appointment tomorrow at {time}. "
                                        "Reply C to cancel.")
    gateway.create_template("Closed", "{We are|The office is} closed today; back tomorrow at 8.", spintax=True)
    for sim, sender, body in ((0, "+447700900101", "Can I come at 11 instead?"),
                              (1, "+447700900103", "Running 10 minutes late, sorry"),
                              (2, "+447700900104", "Key is under the mat")):
        daemon.simulator.inject_sms(sim, sender, body)
    daemon.wait_until(lambda: len(daemon.store.inbox()) >= 3, 10)
    first = next(row for row in daemon.store.inbox() if row["sender"] == "+447700900101")
    gateway.reply(first["id"], "Yes, 11:00 is fine. See you then!")
    return f"ui/inbox/%2B447700900101?sim={first['modem_id']}"


def main() -> int:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as directory:
        config = configuration.load(None, Path(directory))
        config.listen = "127.0.0.1:0"
        config.gateway.default_region = "GB"
        daemon = Daemon(config, simulate=3, sim_send_latency=0.05, sim_report_delay=0.2).start()
        try:
            daemon.pool.wait_ready(10)
            add_user(daemon.store, "alice", PASSWORD, "admin")
            conversation = seed(daemon)
            with sync_api.sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, args=[
                    "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
                for width, height, suffix in ((1366, 800, "desktop"), (390, 844, "phone")):
                    page = browser.new_page(viewport={"width": width, "height": height})
                    page.goto(daemon.url)
                    page.get_by_label("Username").fill("alice")
                    page.get_by_label("Password").fill(PASSWORD)
                    page.get_by_role("button", name="Log in").click()
                    page.wait_for_load_state()
                    for name, path in PAGES:
                        page.goto(daemon.url + (path or conversation))
                        page.screenshot(path=str(OUT / f"{name}-{suffix}.png"), full_page=suffix == "desktop")
                        print(OUT / f"{name}-{suffix}.png")
                    page.close()
                browser.close()
        finally:
            daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
