"""The running gateway: store, gateway, modem pool, scheduled jobs, the local control socket and HTTP.

`modemgw serve` and `modemgw demo` build a `Daemon`; tests build one too, on port 0 and a temporary directory.
The control socket (`<data>/modemgw.sock`, mode 0600) lets local administrators' commands (`modemgw send`,
`modemgw status`) reach the running daemon without a network round trip or an API key.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.background import BackgroundScheduler

from modemgw import config as configuration, control, memory
from modemgw.gateway import Gateway, ModemRequestError, SubmitError, SubmitRequest
from modemgw.pool import ModemConfig, ModemState, Pool
from modemgw.store import FINAL_STATUSES, NotFound, Store, StoreError

if TYPE_CHECKING:
    from modemgw.email_gateway import EmailGateway
    from modemgw.sim import Simulator
    from modemgw.smpp import SmppServer

log = logging.getLogger("modemgw.daemon")


# Requests served at once. An API request takes milliseconds, so six serve hundreds a second. Each request borrows a
# database connection from the store's pool (app.py `LentConnections`): idle threads keep none (#19: RSS <= 60 MB).
HTTP_THREADS = 6

class Daemon:
    """Everything `modemgw serve` runs, started and stopped as one."""

    def __init__(self, config: configuration.Config, simulate: int = 0, sim_send_latency: float = 0.5,
                 sim_report_delay: float = 2.0, sim_profile: str = "generic", http: bool = True,
                 webhook_schedule: tuple[float, ...] | None = None, intervals: dict[str, float] | None = None,
                 settle: bool = False):
        self.config = config
        self.settle = settle  # freeze what start-up made (memory.settle): `serve` and `demo`, not tests
        self.intervals = dict(intervals or {})  # seconds between runs of scheduled jobs, by name (tests shorten them)
        self.simulate = simulate
        self.sim_send_latency, self.sim_report_delay, self.sim_profile = sim_send_latency, sim_report_delay, sim_profile
        self.http_enabled = http
        self.webhook_schedule = webhook_schedule
        self.simulator: Simulator | None = None
        self.http_server: Any = None  # waitress's server (its type is private to waitress)
        self.http_port: int | None = None
        self._threads: list[threading.Thread] = []
        self._changed = threading.Condition()
        self._control: socket.socket | None = None
        self._stopping = False
        self.email: EmailGateway | None = None  # [email]: the embedded SMTP server (e-mail to SMS), when set
        self.smpp: SmppServer | None = None  # [smpp]: the SMPP server (Kannel, Jasmin, SMPP clients), when set

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "modemgw.sock"

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> Daemon:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # new: the owner's alone, whatever the umask
        memory.limit_arenas()  # before the threads start: each would keep an arena of its own (modemgw/memory.py)
        self.store = Store(self.data_dir / "modemgw.db")
        self.gateway = Gateway(self.store, self.config.gateway)
        self.gateway.subscribe(self._on_event)
        modems = list(self.config.modems)
        if self.simulate:
            from modemgw.sim import Simulator

            link_dir = self.data_dir / "sim"
            simulator = Simulator(self.simulate, self.sim_profile, link_dir=link_dir,
                                  send_latency=self.sim_send_latency, report_delay=self.sim_report_delay).start()
            self.simulator = simulator
            modems += [ModemConfig(device=device.device, label=device.modem.name) for device in simulator.devices]
            self.config.pool.ports = list(self.config.pool.ports) + [str(link_dir / "*")]
        self.pool = Pool(self.gateway, self.store, modems, self.config.pool)
        self.gateway.attach_pool(self.pool)
        from modemgw.views import message_view
        from modemgw.webhooks import RETRY_SCHEDULE, WebhookSender

        self.webhooks = WebhookSender(self.store, lambda message_id: message_view(self.gateway.message(
                                          message_id, timeline=False)),
                                      schedule=self.webhook_schedule or RETRY_SCHEDULE,
                                      callback_private_destinations=self.config.gateway.callback_private_destinations)
        self.gateway.subscribe(self.webhooks.on_event, recorder=True)
        self.webhooks.start()
        from modemgw.mail import MailSender

        self.mail = MailSender(self.store, self.config.smtp)  # [smtp]: inbound rules' e-mails (the mail outbox)
        self.gateway.attach_outboxes(self.mail, self.webhooks.wake)
        self.mail.start()
        if self.settle:  # before the ports open: a link's objects (gone with its modem) must stay collectable
            if self.http_enabled:
                from modemgw.app import preload

                preload()  # its modules (the web UI's too) are start-up's
            memory.settle()
        self.pool.start()
        self.scheduler = self._schedule()
        self._serve_control()
        if self.config.email.listen:
            from modemgw.email_gateway import EmailGateway

            self.email = EmailGateway(self.gateway, self.config.email).start()
        if self.config.smpp.listen:
            from modemgw.smpp import SmppServer

            self.smpp = SmppServer(self.gateway, self.config.smpp).start()
        if self.http_enabled:
            self._serve_http()
        return self

    def stop(self) -> None:
        if self._stopping:
            return  # stopped already (stopping twice is harmless)
        self._stopping = True
        if self.http_server is not None:
            self.http_server.close()
            # waitress's loop runs until its map is empty: a client's idle keep-alive connection would hold the
            # HTTP thread (and stop) for as long as the client keeps it open
            for channel in list(self.http_server._map.values()):
                try:
                    channel.close()
                except OSError:
                    pass
        if self._control is not None:
            try:
                self._control.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the control thread
            except OSError:
                pass
            self._control.close()
            self.socket_path.unlink(missing_ok=True)
        if self.email is not None:
            self.email.stop()
        if self.smpp is not None:
            self.smpp.stop()
        self.gateway.stop_pruning()  # a pruning pass under way ends at its next batch
        self.scheduler.shutdown(wait=False)
        self.pool.stop()
        self.webhooks.stop()
        self.mail.stop()
        self.gateway.close_inbound_rules()
        if self.simulator is not None:
            self.simulator.stop()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _on_event(self, event: str, data: dict) -> None:
        with self._changed:
            self._changed.notify_all()

    # --- scheduled jobs ----------------------------------------------------------------------------------

    def _schedule(self) -> BackgroundScheduler:
        """Periodic work that never sits in the send path: health, expiry, report deadlines, inbound flush,
        retention. Scheduled sends and retries are woken by the pool's alarm at their exact time."""
        from apscheduler.executors.pool import ThreadPoolExecutor as JobThreads

        # three threads, not APScheduler's ten (each ~100 KB); they borrow database connections (`_guard`)
        scheduler = BackgroundScheduler(executors={"default": JobThreads(3)},
                                        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30})
        jobs = [
            (self.pool.health_check, 30, "health"),
            (self.gateway.expire, 10, "expire"),
            (self.gateway.release_scheduled, 60, "release"),
            (self.gateway.close_overdue_reports, 300, "reports"),
            (self.gateway.flush_stale_inbound, 30, "inbound"),
            (self.gateway.prune, self.config.gateway.retention.interval_minutes * 60, "retention"),  # small batches
            (self.gateway.purge_rules_data, 86400, "rules-retention"),
            (self.gateway.roll_up_statistics, 3600, "statistics"),  # ended periods kept (store/stats.py)
            (memory.trim, memory.TRIM_SECONDS, "memory"),  # freed memory back to the system (modemgw/memory.py)
        ]
        unknown = set(self.intervals) - {name for _, _, name in jobs}
        if unknown:
            raise ValueError(f"no scheduled job named {', '.join(sorted(unknown))}; the jobs are "
                             f"{', '.join(name for _, _, name in jobs)}")
        soon = {"statistics": 60}  # first run a minute after the start, not an hour: an upgraded database has none
        # Each job up to 2 s after the one before (less for short intervals): jobs of the same interval never run
        # at the same moment, so no more than two borrow a connection at once and the pool's two (POOL_IDLE) serve
        # them. Three at once (health, inbound and expire every 30 s) opened and closed a third connection each
        # time: its schema parsed again and, as root, SQLite's fchown of the log file, a journal commit on an idle
        # SD card (benchmarks/cost.py --idle: 45 KiB per 2 minutes on 4 KiB blocks).
        for order, (function, seconds, name) in enumerate(jobs):
            seconds = self.intervals.get(name, seconds)
            offset = order * min(2.0, seconds / len(jobs))
            first = dt.datetime.now() + dt.timedelta(seconds=min(seconds, soon.get(name, seconds)) + offset)
            scheduler.add_job(self._guard(function), "interval", seconds=seconds, id=name, next_run_time=first)
        scheduler.start()
        return scheduler

    def _guard(self, function):
        def run() -> None:
            try:
                with self.store.lent():  # a job's thread borrows a connection (store/base.py POOL_IDLE)
                    function()
            except StoreError as error:
                log.error("%s: %s", function.__name__, error)
        run.__name__ = function.__name__
        return run

    # --- HTTP --------------------------------------------------------------------------------------------

    def _serve_http(self) -> None:
        from waitress.server import create_server

        from modemgw.app import create_app

        host, port = configuration.parse_listen(self.config.listen)
        self.app = create_app(self)
        # X-Forwarded-* reach the app, whose TrustedProxies middleware (app.py) believes them only from the
        # addresses of [http] trusted_proxies and drops them from anyone else
        self.http_server = create_server(self.app, host=host, port=port, threads=HTTP_THREADS,
                                         clear_untrusted_proxy_headers=False)
        self.http_port = self.http_server.effective_port
        thread = threading.Thread(target=self._run_http, name="http", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _run_http(self) -> None:
        try:
            self.http_server.run()
        except OSError:  # closed on stop
            if not self._stopping:
                raise

    @property
    def url(self) -> str:
        host, _ = configuration.parse_listen(self.config.listen)
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{shown}:{self.http_port}/"

    # --- control socket ------------------------------------------------------------------------------------

    def _serve_control(self) -> None:
        self.socket_path.unlink(missing_ok=True)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        previous = os.umask(0o177)
        try:
            server.bind(str(self.socket_path))
        finally:
            os.umask(previous)
        server.listen(16)
        self._control = server
        thread = threading.Thread(target=self._accept_loop, name="control", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept_loop(self) -> None:
        while not self._stopping and self._control is not None:
            try:
                connection, _ = self._control.accept()
            except OSError:
                return
            threading.Thread(target=self._converse, args=(connection,), name="control-client", daemon=True).start()

    def _converse(self, connection: socket.socket) -> None:
        with connection, connection.makefile("rwb") as stream:
            try:
                control.serve_lines(stream, self.control)
            except OSError:  # the client went away mid-reply
                pass

    def control(self, request: dict) -> dict:
        """One control request: submit, message, wait, status."""
        command = request.pop("command")
        try:
            if command == "submit":
                return {"ok": True, "result": self.gateway.send(SubmitRequest(**request))}
            if command == "message":
                return {"ok": True, "message": self.gateway.message(int(request["id"]))}
            if command == "wait":
                waited = self.wait_for_final(int(request["id"]), float(request.get("timeout", 60)),
                                             request.get("until", "final"))
                return {"ok": True, "message": waited}
            if command == "status":
                return {"ok": True, "modems": [state.summary() for state in self.gateway.modem_states()],
                        "queue": self.gateway.queue_depth(), "counts": self.gateway.status_counts(),
                        "url": self.url if self.http_server else None,
                        "unattached": dict(self.pool.unattached),
                        "smpp": self.smpp.sessions() if self.smpp is not None else None,
                        "storage": self.gateway.storage_summary()}  # database size, oldest kept, retention
            if command == "inspect":
                modems = self.inspect(min(30.0, float(request.get("timeout", 20))))
                return {"ok": True, "pid": os.getpid(), "modems": modems, "unattached": dict(self.pool.unattached)}
            if command == "at":  # at most a minute, like the API: the watchdog must not see a stuck worker
                return self.at_command(str(request["modem"]), str(request["line"]),
                                       min(60.0, max(0.1, float(request.get("timeout", 10)))))
        except SubmitError as error:
            return {"ok": False, "error": error.detail, "field": error.field}
        except (NotFound, StoreError) as error:
            return {"ok": False, "error": str(error)}
        return {"ok": False, "error": f"unknown command {command!r}"}

    def health(self) -> list[str]:
        """What is stuck or dead (empty when all is well): the watchdog is fed only while this is empty."""
        problems = self.pool.stalled()
        for thread in self._threads:
            if not thread.is_alive() and not self._stopping:
                problems.append(thread.name)
        if not self.webhooks.is_alive() and not self._stopping:
            problems.append("webhooks")
        if not self.mail.is_alive() and not self._stopping:
            problems.append("mail")
        if self.email is not None and not self.email.is_alive() and not self._stopping:
            problems.append("email")
        if self.smpp is not None and not self.smpp.is_alive() and not self._stopping:
            problems.append("smpp")
        if not self.scheduler.running and not self._stopping:
            problems.append("scheduler")
        return problems

    def summary(self) -> str:
        """One line for `systemctl status`: modems up and the queue."""
        live, count = self.gateway.modems_online()
        return f"{live}/{count} modems up, {self.gateway.queue_depth()} queued"

    def inspect(self, timeout: float) -> list[dict]:
        """Each modem as `modemgw doctor` wants it: state and last error, and for a live modem what it says now
        about its SIM, network, signal and SMSC (read-only queries, run on the modem's own worker)."""
        from concurrent.futures import ThreadPoolExecutor

        from modemgw.discovery import PortReport, inspect_modem

        def look(state: ModemState) -> dict:
            row = self.gateway.modem_now(state.modem_id) if state.modem_id is not None else {}
            entry = {**state.summary(), "last_error": row.get("last_error"), "answers_at": False}
            if state.attached and state.modem_id is not None:
                try:
                    port = PortReport(state.device or "", answers_at=True)
                    report = self.gateway.run_on_modem(
                        state.modem_id, functools.partial(inspect_modem, report=port, identify=False),
                        "no answer to the doctor's queries", timeout)
                    entry.update({key: value for key, value in report.as_dict().items() if key != "device"})
                except ModemRequestError as error:
                    entry["error"] = error.detail
            return entry

        states = self.gateway.modem_states()
        if not states:
            return []
        with ThreadPoolExecutor(max_workers=min(16, len(states))) as executor:  # all modems at once
            return list(executor.map(look, states))

    def at_command(self, name: str, line: str, timeout: float) -> dict:
        """One AT command line for `modemgw console`, on the modem's worker (the daemon owns the port)."""
        modem = self.gateway.find_modem(name)
        if modem is None:
            return {"ok": False, "error": f"no modem {name!r} in the running gateway"}
        if modem.modem_id is None:
            return {"ok": False, "error": f"{modem.label}: the modem is {modem.state}"}
        try:
            reply = self.gateway.at_command(modem.modem_id, line, timeout=timeout, wait=timeout + 30,
                                            by="modemgw console (control socket)")
        except SubmitError as error:  # the AT rule: no prompt commands, one line
            return {"ok": False, "error": error.detail}
        except ModemRequestError as error:
            return {"ok": False, "error": f"{modem.label}: {error.detail}"}
        return {"ok": True, "label": modem.label, "device": modem.device, "lines": reply.lines,
                "final": reply.final, "elapsed": reply.elapsed}

    def wait_until(self, predicate, timeout: float = 30.0) -> bool:
        """Wait until `predicate()` holds, re-checking whenever the gateway reports an event."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.5))
            return True

    def wait_for_final(self, message_id: int, timeout: float, until: str = "final") -> dict:
        """The message once it is final (or `delivered`/`undelivered` when until='report'), or as it stands at the
        timeout. Woken by the gateway's events, not by polling."""
        wanted = FINAL_STATUSES if until == "final" else ("delivered", "undelivered", "failed", "expired",
                                                           "canceled")
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                message = self.gateway.message(message_id, timeline=False)
                remaining = deadline - time.monotonic()
                if message["status"] in wanted or remaining <= 0:
                    return message
                self._changed.wait(min(remaining, 1.0))


def control_request(data_dir: Path, request: dict, timeout: float = 120.0) -> dict:
    """Send one request to the daemon running on `data_dir` (modemgw.control.daemon_request). Raises
    ConnectionError (control.ControlError) with what to do."""
    return control.daemon_request(data_dir, request, timeout)


__all__ = ["Daemon", "control_request"]
