import os

from hypothesis import HealthCheck, settings

# CI runs on 2 cores with a time budget: a fixed, modest number of examples, no per-example deadline (a busy
# machine must not turn into a flaky failure). `HYPOTHESIS_PROFILE=thorough` searches harder on demand.
settings.register_profile("ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                          derandomize=True)  # CI runs the same examples every time: a failure is a change, not luck
settings.register_profile("thorough", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


import pytest  # noqa: E402

from modemgw.modem import Modem, ModemSettings  # noqa: E402
from modemgw.sim import Simulator  # noqa: E402

FAST = ModemSettings(command_timeout=2.0, send_timeout=5.0, prompt_timeout=2.0, ussd_timeout=2.0,
                     settle_delay=0.05)


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


def daemon_config(directory, **gateway):
    """A gateway configuration for tests: data in `directory`, HTTP on 127.0.0.1 port 0, short modem timeouts."""
    from modemgw import config as configuration

    config = configuration.load(None, directory)
    config.listen = "127.0.0.1:0"
    config.gateway.default_region = "GB"
    config.pool.reconnect_min, config.pool.reconnect_max = 0.05, 0.5
    config.pool.modem = ModemSettings(command_timeout=2.0, send_timeout=5.0, prompt_timeout=2.0, settle_delay=0.05)
    for key, value in gateway.items():
        setattr(config.gateway, key, value)
    return config


def require(program: str, package: str) -> str:
    """The path of a Debian-packaged program a test needs: skipped with the reason locally, a failure under CI
    (`CI` set), so that a claimed feature cannot go untested there."""
    import shutil

    path = shutil.which(program)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{program} is missing: .ci/run must install Debian's {package}")
        pytest.skip(f"{program} is not installed (apt-get install {package}); CI installs it")
    return path


def eventually(predicate, timeout: float = 15.0) -> bool:
    """Poll state that no event announces (a watcher's scans, a worker's `waiting`), briefly."""
    import threading

    pause = threading.Event()
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return True
        pause.wait(0.02)
    return bool(predicate())
