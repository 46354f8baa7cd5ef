import asyncio
import functools
import os
from pathlib import Path

from hypothesis import HealthCheck, settings

# CI runs on 2 cores with a time budget: a fixed, modest number of examples, no per-example deadline (a busy
# machine must not turn into a flaky failure). `HYPOTHESIS_PROFILE=thorough` searches harder on demand.
settings.register_profile("ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                          derandomize=True)  # CI runs the same examples every time: a failure is a change, not luck
settings.register_profile("thorough", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Playwright's assertions wait as long as the pages' actions do (`support.logged_in_page`: 15 s), not 5 s: a form
# posted while another test syncs a loop device on the same disk (benchmarks/cost.py) waits for its durable commit.
# A state that never comes still fails, 10 s later.
from playwright.sync_api import expect  # noqa: E402

expect.set_options(timeout=15_000)


import pytest  # noqa: E402

from modemgw.modem import Modem  # noqa: E402
from modemgw.sim import Simulator  # noqa: E402
from tests.support import CHROMIUM, FAST, Process, daemon_config  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# How xdist shares the suite out among its workers (pyproject's addopts: `-n 4 --dist loadscope`, refined here).
# Work units: a module that declares a module-, class- or package-scoped fixture (a daemon with its data) is one
# unit, so that the fixture is made once; every test of any other module is a unit of its own (spread, they
# balance the load). Units are queued longest first, so that no long one is left to run alone at the end: the
# seconds below were measured (`pytest --durations`, on 2 busy cores) and need not be exact (a prefix counts for
# each test it starts); a test not listed counts half a second. The order of the tests and how they are shared out
# change no result: no test may depend on another's order.
SLOW_TESTS = {
    "tests/test_benchmarks.py::test_cost": 75, "tests/test_openapi.py": 30, "tests/test_phone_layout.py": 20,
    "tests/test_benchmarks.py::test_million": 40, "tests/test_benchmarks.py::test_footprint": 33,
    "tests/test_deploy.py::test_install_makes": 20, "tests/test_daemon_cli.py::test_kill_9": 19,
    "tests/test_benchmarks.py::test_peers": 13, "tests/test_benchmarks.py::test_smpp": 12,
    "tests/test_faults.py::test_every_message_sent_twice": 11, "tests/test_retention.py::test_a_pass_prunes": 11,
    "tests/test_pool.py::test_least_used_spreads": 11, "tests/test_memory.py::test_the_python_heap": 95,
    "tests/test_deploy.py::test_upgrade": 10, "tests/test_faults.py::test_an_outage": 10,
    "tests/test_faults.py::test_sigterm": 10, "tests/test_benchmarks.py::test_throughput": 9,
    "tests/test_sim_cli.py::test_sim_commands_find": 9, "tests/test_daemon_cli.py::test_demo_then_send": 9,
    "tests/test_sessions.py::test_rss_stays_flat": 9,
}
SHARED_SCOPES = ('scope="module"', 'scope="class"', 'scope="package"')


@functools.cache
def _kept_whole(module: str) -> bool:
    """Whether the test module (a path from the root) declares a fixture shared by its tests. Read from its source
    because xdist's controller, which shares the work out, sees test ids only."""
    try:
        source = (ROOT / module).read_text(encoding="utf-8")
    except OSError:
        return True
    return any(scope in source for scope in SHARED_SCOPES)


def _unit(nodeid: str) -> str:
    module = nodeid.split("::", 1)[0]
    return module if _kept_whole(module) else nodeid


def _estimate(nodeid: str) -> float:
    return next((seconds for prefix, seconds in SLOW_TESTS.items() if nodeid.startswith(prefix)), 0.5)


def pytest_collection_modifyitems(config, items):
    """Each work unit's tests together, the units longest first (see SLOW_TESTS); xdist keeps this order."""
    units: dict[str, list] = {}
    for item in items:
        units.setdefault(_unit(item.nodeid), []).append(item)
    ordered = sorted(units.values(), key=lambda unit: -sum(_estimate(item.nodeid) for item in unit))  # stable
    items[:] = [item for unit in ordered for item in unit]


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadscope` with the work units of `_unit`, in the order of the collection (longest first)."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    config.option.loadscopereorder = False  # xdist would put the units with most tests first
    return Scheduling(config, log)


@pytest.fixture(scope="session")
def _chromium():
    """Debian's headless Chromium, driven by Playwright with `executable_path` (`playwright install` cannot
    download here), started once per test process (each xdist worker has its own): starting Playwright's driver
    and Chromium costs seconds, which a module no longer pays. Missing, it skips with why, and fails under CI.

    Yields (the browser, Playwright's event loop): see `browser` for why the loop is handed on."""
    from playwright import sync_api as playwright_api

    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run must install Debian's chromium")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); CI installs it")
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        loop = asyncio.get_running_loop()  # Playwright's sync API marks its loop as this thread's running loop
        yield chromium, loop
        asyncio._set_running_loop(loop)  # as Playwright left it, so that it can stop
        chromium.close()


@pytest.fixture(scope="module")
def browser(_chromium):
    """The shared Chromium for one test module; at the module's end every context (and page) its tests opened is
    closed, so that no page of a stopped daemon lives on into the next module.

    Between sync calls Playwright leaves its event loop marked as the main thread's running loop. A module that
    uses no browser must not inherit that mark (an `asyncio` loop run in the main thread, as `EmailGateway.start`
    does, would refuse to start), so it is set for a browser module and cleared after it."""
    chromium, loop = _chromium
    asyncio._set_running_loop(loop)
    yield chromium
    for context in chromium.contexts:
        context.close()
    asyncio._set_running_loop(None)


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
