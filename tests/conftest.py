import os

from hypothesis import HealthCheck, settings

# CI runs on 2 cores with a time budget: a fixed, modest number of examples, no per-example deadline (a busy
# machine must not turn into a flaky failure). `HYPOTHESIS_PROFILE=thorough` searches harder on demand.
settings.register_profile("ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                          derandomize=True)  # CI runs the same examples every time: a failure is a change, not luck
settings.register_profile("thorough", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


import pytest  # noqa: E402

from modemgw.modem import Modem  # noqa: E402
from modemgw.sim import Simulator  # noqa: E402
from tests.support import CHROMIUM, FAST, Process, daemon_config  # noqa: E402


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium, driven by Playwright with `executable_path` (`playwright install` cannot
    download here); one per test module. Missing, it skips the module with why, and fails it under CI."""
    from playwright import sync_api as playwright_api

    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run must install Debian's chromium")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); CI installs it")
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield chromium
        chromium.close()


@pytest.fixture
def make_sim(tmp_path):
    """Start simulators on real ptys; all are stopped at the end of the test."""
    started = []

    def make(count=2, profile="generic", **options):
        options.setdefault("link_dir", tmp_path / "dev")
        sim = Simulator(count, profile, **options).start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def open_modem():
    """Open (and by default initialise) the driver on a simulated device; closed at the end of the test."""
    opened = []

    def open_(device, initialize=True, settings=FAST):
        modem = Modem.open(str(device), settings)
        opened.append(modem)
        if initialize:
            try:
                modem.initialize()
            except Exception:
                modem.close()  # let go of the port, as a daemon would before trying again
                raise
        return modem

    yield open_
    for modem in opened:
        modem.close()


@pytest.fixture
def start_daemon(tmp_path):
    """Start `Daemon`s over simulated modems (data in tmp_path/data, then data-2, ...), each ready before it is
    returned; every one is stopped at the end of the test. `**gateway` sets [gateway] options."""
    from modemgw.daemon import Daemon

    running = []

    def start(modems=2, send_latency=0.02, report_delay=0.05, http=False, **gateway):
        name = "data" if not running else f"data-{len(running) + 1}"
        daemon = Daemon(daemon_config(tmp_path / name, **gateway), simulate=modems, sim_send_latency=send_latency,
                        sim_report_delay=report_delay, http=http).start()
        running.append(daemon)
        if modems:
            assert daemon.pool.wait_ready(10), daemon.pool.status()
        return daemon

    yield start
    for daemon in reversed(running):
        daemon.stop()


@pytest.fixture
def app(start_daemon):
    """The gateway's Flask application over a real store and gateway with no modems, served by nothing: for
    tests of validation and problem answers that need no server and no modem."""
    from modemgw.app import create_app

    application = create_app(start_daemon(modems=0))
    application.config.update(TESTING=True)
    return application


@pytest.fixture
def client(app):
    """`app` through Flask's test client, with an API key that may send and read (`tests.support.AppClient`)."""
    from modemgw import auth
    from tests.support import AppClient

    daemon = app.extensions["modemgw"]
    return AppClient(app.test_client(), auth.create_key(daemon.store, "tests", ("send", "read"))[0])


@pytest.fixture
def processes():
    """Start modemgw subprocesses (`tests.support.Process`); any still running are killed at the end."""
    import signal

    started = []

    def start(*args, **options):
        process = Process(*args, **options)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop(signal.SIGKILL)
