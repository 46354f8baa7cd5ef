"""The `modemgw` command line: a thin layer over the library; library errors become click errors."""

from __future__ import annotations

import getpass  # at import: a command acting as the service user may not read the standard library then
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import click

from modemgw import __version__, pdu, text

DEFAULT_SIM_DIR = os.environ.get("MODEMGW_SIM_DIR", "/tmp/modemgw-sim")  # where `modemgw sim` puts its links
DEMO_PHONE = "+447700900555"  # who texts the demo's gateway in its banner and the README: a number one can answer


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="modemgw")
def main() -> None:
    """modemgw: an SMS gateway for a pool of USB GSM modems."""


def _print_json(value: dict) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _read_argument(value: str) -> str:
    """`-` reads standard input, so that texts with shell metacharacters need no quoting."""
    if value == "-":
        return sys.stdin.read().removesuffix("\n")
    return value


@main.group("pdu")
def pdu_group() -> None:
    """Decode and encode SMS PDUs (3GPP TS 23.040), as modems show them in their logs."""


@pdu_group.command("decode")
@click.argument("hex_pdu", metavar="HEX")
@click.option("--length", "tpdu_length", type=int, default=None,
              help="TPDU length as the modem reported it (+CMGL/+CMT/+CDS); settles whether an SMSC field leads.")
def pdu_decode(hex_pdu: str, tpdu_length: int | None) -> None:
    """Decode an SMS-DELIVER, SMS-SUBMIT or SMS-STATUS-REPORT and print it as JSON.

    HEX may start with the SMSC field or not; `-` reads it from standard input.
    """
    try:
        message = pdu.decode(_read_argument(hex_pdu), tpdu_length)
    except pdu.PduError as error:
        raise click.ClickException(f"cannot decode PDU: {error}") from None
    _print_json(pdu.as_dict(message))


@pdu_group.command("encode")
@click.option("--to", "recipient", required=True, help="Recipient: +E.164 for international, digits otherwise.")
@click.option("--text", "message", required=True, help="Message text; `-` reads standard input.")
@click.option("--no-report", is_flag=True, help="Do not request a delivery status report.")
@click.option("--validity", type=click.IntRange(min=1), default=None, metavar="SECONDS",
              help="Relative validity period (rounded up to what the PDU can express).")
@click.option("--encoding", type=click.Choice([text.GSM7, text.UCS2]), default=None,
              help="Force an encoding (default: GSM-7 when the text fits it, else UCS-2).")
@click.option("--smart", is_flag=True, help="Replace typographic look-alikes so that the text fits GSM-7.")
@click.option("--reference", type=click.IntRange(0, 65535), default=0,
              help="Concatenation reference for multi-part messages (above 255 uses a 16-bit header).")
@click.option("--smsc", default=None, help="Service centre number (default: the one stored on the SIM).")
def pdu_encode(recipient: str, message: str, no_report: bool, validity: int | None, encoding: str | None,
               smart: bool, reference: int, smsc: str | None) -> None:
    """Print the SMS-SUBMIT PDUs for a message, one line per part: TPDU length, then the hex for AT+CMGS."""
    message = _read_argument(message)
    if smart:
        message, _ = text.smart_encode(message)
    try:
        parts = pdu.encode_message(recipient, message, encoding, concat_reference=reference,
                                   concat_bits=16 if reference > 255 else 8, request_report=not no_report,
                                   validity=validity, smsc=smsc)
    except pdu.PduError as error:
        raise click.ClickException(str(error)) from None
    for part in parts:
        click.echo(f"{part.tpdu_length} {part.hex}")


@main.command("text-info")
@click.argument("message", metavar="TEXT")
@click.option("--smart", is_flag=True, help="Count after replacing typographic look-alikes with GSM-7.")
def text_info(message: str, smart: bool) -> None:
    """Print a text's encoding, characters and segments as JSON; `-` reads standard input."""
    try:
        result = text.info(_read_argument(message), smart=smart)
    except text.TextError as error:
        raise click.ClickException(str(error)) from None
    _print_json(result.as_dict())


# --- the simulated modem --------------------------------------------------------------------------------------

def _sim_dir_option(function):
    return click.option("--link-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="Where the running simulator keeps its links and control socket (default: `modemgw "
                             "sim --link-dir`, else $MODEMGW_SIM_DIR, else the simulator that runs: "
                             "/tmp/modemgw-sim, or the demo's).")(function)


def _answers(socket_path: Path) -> bool:
    """Whether something listens on the control socket at `socket_path` (a stale file does not)."""
    import socket

    if not socket_path.exists():
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(socket_path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _sim_link_dirs(link_dir: Path | None) -> list[Path]:
    """Where a simulator subcommand looks, in order: its own --link-dir, the group's (`modemgw sim --link-dir DIR
    list`), $MODEMGW_SIM_DIR; else a running `modemgw sim` (/tmp/modemgw-sim), then a running demo's simulator
    (`<demo data>/sim`): whichever answers first."""
    given = link_dir or click.get_current_context().meta.get("modemgw.sim_link_dir") or \
        os.environ.get("MODEMGW_SIM_DIR")
    if given:
        return [Path(given)]
    return [Path("/tmp/modemgw-sim"), _demo_dir() / "sim"]


@main.group("sim", invoke_without_command=True)
@click.option("--count", type=click.IntRange(1, 64), default=2, show_default=True, help="How many modems.")
@click.option("--profile", default="generic", show_default=True,
              help="Modem family: generic, huawei, simcom, quectel, wavecom (or a comma-separated list, one each).")
@click.option("--send-latency", type=click.FloatRange(min=0), default=0.5, show_default=True, metavar="S",
              help="Seconds a modem takes to answer AT+CMGS.")
@click.option("--report-delay", type=click.FloatRange(min=0), default=2.0, show_default=True, metavar="S",
              help="Seconds from a send to its status report.")
@click.option("--link-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for stable device links (name -> /dev/pts/N) and the control socket (default "
                   "/tmp/modemgw-sim, or $MODEMGW_SIM_DIR); the subcommands talk to the simulator there.")
@click.option("--seed", type=int, default=0, help="Varies IMEIs, ICCIDs and IMSIs between simulators.")
@click.option("--outcome", "outcomes", multiple=True, metavar="PREFIX=ST[,ST...]",
              help="Status reports for recipients starting with PREFIX carry these TP-ST codes in turn, e.g. "
                   "+4477009005=0x21,0 (pending, then delivered) or +1555=0x46 (expired). Repeatable.")
@click.pass_context
def sim_group(ctx: click.Context, count: int, profile: str, send_latency: float, report_delay: float,
              link_dir: Path | None, seed: int, outcomes: tuple[str, ...]) -> None:
    """Run simulated modems on pseudo-terminals until SIGINT or SIGTERM.

    Any program opens the printed devices like USB modems (pyserial, gammu, smstools, minicom). Subcommands
    drive a running simulator: inject inbound SMS and faults, list what it sent. They find a running `modemgw
    sim` or `modemgw demo` by themselves; --link-dir (here or after the subcommand) names another.
    """
    if ctx.invoked_subcommand is not None:
        ctx.meta["modemgw.sim_link_dir"] = link_dir  # `modemgw sim --link-dir DIR list` means DIR
        return
    link_dir = link_dir or Path(os.environ.get("MODEMGW_SIM_DIR") or DEFAULT_SIM_DIR)
    from modemgw.sim import NetworkSettings, Simulator

    settings = NetworkSettings(report_delay=report_delay, outcomes=_parse_outcomes(outcomes))
    profiles = profile.split(",")
    if len(profiles) not in (1, count):
        raise click.BadParameter(f"give one profile or {count}", param_hint="--profile")
    try:
        simulator = Simulator(count, profiles if len(profiles) > 1 else profiles[0], send_latency=send_latency,
                              link_dir=link_dir, seed=seed, settings=settings)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with simulator:
        for device in simulator.devices:
            info = simulator.describe(device)
            click.echo(f"{info['name']}  {info['device']}  IMEI {info['imei']}  ICCID {info['iccid']}  "
                       f"{info['number']}  ({info['profile']}, {info['path']})")
        click.echo(f"{count} simulated modem(s) ready; control socket {link_dir / 'control.sock'}; "
                   "Ctrl-C to stop.")
        sys.stdout.flush()
        stop.wait()
    click.echo("stopped")


def _parse_outcomes(outcomes: tuple[str, ...]) -> dict[str, list[int]]:
    parsed = {}
    for item in outcomes:
        prefix, separator, codes = item.partition("=")
        try:
            values = [int(code, 0) for code in codes.split(",")]
        except ValueError:
            values = []
        if not separator or not prefix or not values or not all(0 <= value <= 255 for value in values):
            raise click.BadParameter(f"{item!r} is not PREFIX=ST[,ST...] with TP-ST codes 0-255",
                                     param_hint="--outcome")
        parsed[prefix] = values
    return parsed


def _control(link_dir: Path | None, request: dict) -> dict:
    """`request` to the simulator's control socket (`_sim_link_dirs`: the one given, or the first that answers).
    Raises ClickException naming where it looked and how to start one."""
    from modemgw import control

    candidates = _sim_link_dirs(link_dir)
    found = next((directory for directory in candidates if _answers(directory / "control.sock")), candidates[0])
    path = found / "control.sock"
    try:
        reply = control.request(path, request, timeout=10)
    except control.ControlError as error:
        if len(candidates) > 1:
            looked = " nor at ".join(str(directory / "control.sock") for directory in candidates)
            raise click.ClickException(f"no simulator answers at {looked} (the demo's); start one with "
                                       "'modemgw sim' or 'modemgw demo', or name its --link-dir") from None
        raise click.ClickException(f"no simulator answers at {path} ({error}); start one with "
                                   f"'modemgw sim --link-dir {found}'") from None
    if not reply.get("ok"):
        raise click.ClickException(reply.get("error", "the simulator refused"))
    return reply


@sim_group.command("list")
@_sim_dir_option
def sim_list(link_dir: Path | None) -> None:
    """List the modems of a running simulator."""
    for info in _control(link_dir, {"command": "list"})["modems"]:
        state = "plugged" if info["plugged"] else "unplugged"
        click.echo(f"{info['name']}  {info['device']}  IMEI {info['imei']}  {info['number']}  {state}")


@sim_group.group("inject")
def sim_inject() -> None:
    """Inject inbound SMS or faults into a running simulator."""


@sim_inject.command("sms")
@_sim_dir_option
@click.option("--modem", "modem_name", default="sim0", show_default=True, help="Which modem receives it.")
@click.option("--from", "sender", required=True,
              help=f"Sender: a number (e.g. {DEMO_PHONE}, which the gateway can answer) or an alphanumeric name.")
@click.option("--text", "body", required=True, help="Message text; `-` reads standard input.")
@click.option("--parts", type=click.IntRange(1, 255), default=None, help="Split into this many parts.")
@click.option("--order", default=None, help="Deliver parts in this order, e.g. 3,1,2.")
@click.option("--encoding", type=click.Choice([text.GSM7, text.UCS2]), default=None)
def sim_inject_sms(link_dir: Path | None, modem_name: str, sender: str, body: str, parts: int | None, order: str | None,
                   encoding: str | None) -> None:
    """Deliver an inbound SMS (multi-part when long or when --parts says so)."""
    request: dict[str, object] = {"command": "sms", "modem": modem_name, "sender": sender,
                                  "text": _read_argument(body)}
    if parts:
        request["parts"] = parts
    if order:
        request["order"] = [int(part) for part in order.split(",")]
    if encoding:
        request["encoding"] = encoding
    reply = _control(link_dir, request)
    click.echo(f"delivered to {modem_name} in {reply['parts']} part(s)")


@sim_inject.command("fault", context_settings={"ignore_unknown_options": False})
@_sim_dir_option
@click.option("--modem", "modem_name", default="sim0", show_default=True)
@click.argument("kind")
@click.argument("params", nargs=-1, metavar="[KEY=VALUE]...")
def sim_inject_fault(link_dir: Path | None, modem_name: str, kind: str, params: tuple[str, ...]) -> None:
    """Inject a fault: unplug, replug [name=N], hang [seconds=S], unhang, cms-error code=C [count=N],
    registration lost=1|0, pin required=1|0, garbage [count=N], slow-prompt seconds=S, no-prompt,
    delay-reply seconds=S, urc-before-prompt, urc-before-result, urc-in-reply, signal rssi=N,
    smsc number=N (empty: none), lost-reports ds=N [stored=1], clear."""
    request: dict = {"command": "fault", "modem": modem_name, "kind": kind}
    for item in params:
        key, separator, value = item.partition("=")
        if not separator:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="PARAMS")
        request[key.replace("-", "_")] = _fault_value(value)
    info = _control(link_dir, request)["modem"]
    click.echo(f"{kind}: {info['name']} now {'plugged' if info['plugged'] else 'unplugged'} at {info['device']}")


def _fault_value(value: str):
    if value.startswith("+"):
        return value  # a phone number, not a number
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    return value


@sim_group.command("sent")
@_sim_dir_option
@click.option("--modem", "modem_name", default="sim0", show_default=True)
def sim_sent(link_dir: Path | None, modem_name: str) -> None:
    """Print what a simulated modem has transmitted: TP-MR, recipient, text and the PDU."""
    for record in _control(link_dir, {"command": "sent", "modem": modem_name})["sent"]:
        click.echo(f"{record['reference']}  {record['recipient']}  {record['text']!r}  {record['hex']}")


# --- the daemon ------------------------------------------------------------------------------------------------

def _demo_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(base) / "modemgw" / "demo"


def _data_option(function):
    return click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="Data directory (database, control socket); default from the config, else "
                             "/var/lib/modemgw.")(function)


def _demo_data_option(function):
    return click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="Data directory (database, control socket); default the demo's own, "
                             "$XDG_DATA_HOME/modemgw/demo (~/.local/share/modemgw/demo), never the installed "
                             "gateway's.")(function)


def _config_option(function):
    return click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="TOML configuration file (see docs and deploy/ for a commented example).")(function)


def _load_config(config_path: Path | None, data_dir: Path | None):
    from modemgw import config as configuration

    try:
        return configuration.load(config_path, data_dir)
    except configuration.ConfigError as error:
        raise click.ClickException(str(error)) from None


def _run_daemon(daemon, banner) -> None:
    import faulthandler
    import logging

    faulthandler.enable()  # a watchdog abort (SIGABRT) leaves every thread's stack in the journal

    logging.basicConfig(level=os.environ.get("MODEMGW_LOG", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    stop = threading.Event()

    def on_signal(*_) -> None:
        stop.set()
        pool = getattr(daemon, "pool", None)
        if pool is not None:
            pool.changed()  # ends the start-up wait for modems at once (silent modems must not delay a stop)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    try:
        daemon.start()
    except OSError as error:
        raise click.ClickException(f"cannot start: {error}") from None
    from modemgw import systemd

    watchdog = None
    try:
        daemon.pool.wait_until(lambda: stop.is_set() or _all_online(daemon), 15)
        banner(daemon)
        sys.stdout.flush()
        systemd.notify("READY=1", f"STATUS={daemon.summary()}")
        interval = systemd.watchdog_interval()
        if interval:
            watchdog = systemd.Watchdog(interval, daemon.health, daemon.summary)
            watchdog.start()
        stop.wait()
    finally:
        systemd.notify("STOPPING=1")
        if watchdog is not None:
            watchdog.stop()
        daemon.stop()
    click.echo("stopped")


@main.command("serve")
@_config_option
@_data_option
@click.option("--listen", default=None, metavar="HOST:PORT", help="HTTP address (default 127.0.0.1:8080).")
@click.option("--simulate", type=click.IntRange(0, 64), default=0, metavar="N",
              help="Also run N simulated modems (no hardware needed).")
@click.option("--sim-send-latency", type=click.FloatRange(min=0), default=0.5, show_default=True, metavar="S")
@click.option("--sim-report-delay", type=click.FloatRange(min=0), default=2.0, show_default=True, metavar="S")
@click.option("--sim-profile", default="generic", show_default=True)
def serve(config_path, data_dir, listen, simulate, sim_send_latency, sim_report_delay, sim_profile) -> None:
    """Run the gateway: modem workers, queue, scheduler and HTTP, until SIGINT or SIGTERM."""
    from modemgw.daemon import Daemon

    config = _load_config(config_path, data_dir)
    if listen:
        config.listen = listen
    if not config.modems and not simulate and not config.pool.ports:
        raise click.ClickException("no modems configured: add [[modem]] entries to the config, or run with "
                                   "--simulate N to try it without hardware")
    daemon = Daemon(config, simulate=simulate, sim_send_latency=sim_send_latency, settle=True,
                    sim_report_delay=sim_report_delay, sim_profile=sim_profile)
    _run_daemon(daemon, _banner)


def _all_online(daemon) -> bool:
    live, count = daemon.gateway.modems_online()
    return live == count


def _banner(daemon) -> None:
    for modem in daemon.gateway.modem_states():
        click.echo(f"modem {modem.label}: {modem.state} on {modem.device} (IMEI {modem.imei})")
    click.echo(f"modemgw is running: {daemon.url} (health: {daemon.url}health); data in {daemon.data_dir}")
    click.echo(f"send from another terminal: modemgw send --data {daemon.data_dir} --to NUMBER --text TEXT")
    if getattr(daemon, "smpp", None) is not None:  # [smpp] listen: the port it got (port 0 picks a free one)
        host = daemon.config.smpp.listen.rpartition(":")[0]
        click.echo(f"SMPP server on {host or '0.0.0.0'}:{daemon.smpp.port} (users: modemgw smpp-users list)")


@main.command("demo")
@_config_option
@click.option("--listen", default=None, metavar="HOST:PORT",
              help="HTTP address (default 127.0.0.1:8080, or the config's [http] listen).")
@_demo_data_option
@click.option("--modems", type=click.IntRange(1, 16), default=3, show_default=True)
@click.option("--email", "email_listen", default=None, metavar="HOST:PORT",
              help="Also run the e-mail to SMS server there (e.g. 127.0.0.1:2525): mail to <number>@sms.local from "
                   "this machine becomes an SMS. Off by default.")
def demo(config_path: Path | None, listen: str | None, data_dir: Path | None, modems: int,
         email_listen: str | None) -> None:
    """Try modemgw with no hardware and no configuration: simulated modems and an embedded SQLite file.

    The first run over a data directory makes an admin login and an API key and prints both once; later runs
    reuse them and say how to set a new password or make another key. --config reads a configuration as serve
    does (the demo's simulated modems are added to it); its data_dir is used when the file names one other than
    the installed gateway's /var/lib/modemgw, else the demo's own."""
    from modemgw.config import Config, ConfigError, parse_listen
    from modemgw.daemon import Daemon

    config = _load_config(config_path, data_dir)
    if data_dir is None and (config_path is None or config.data_dir == Config().data_dir):
        config.data_dir = _demo_dir()  # never the installed gateway's database by accident
    if listen:
        config.listen = listen
    if email_listen:
        try:
            parse_listen(email_listen)
        except ConfigError:
            raise click.BadParameter(f"must be HOST:PORT (e.g. 127.0.0.1:2525), not {email_listen!r}",
                                     param_hint="--email") from None
        config.email.listen = email_listen  # [email]'s defaults: loopback clients only, <number>@sms.local
    config.gateway.default_region = config.gateway.default_region or "GB"
    config.gateway.callback_private_destinations = True  # a demo's callbacks go to a receiver on this machine
    daemon = Daemon(config, simulate=modems, sim_send_latency=0.3, sim_report_delay=1.0, settle=True)
    _run_daemon(daemon, _demo_banner)


def _demo_login(running) -> str:
    """The web UI line of the demo's banner: a new admin (its password shown once), or the existing one."""
    import secrets as random_secrets

    from modemgw import users

    data = running.data_dir
    admins = [user for user in users.list_users(running.store) if user["role"] == "admin" and not user["disabled"]]
    if admins:
        name = admins[0]["username"]
        return (f"web UI: {running.url} — log in as {name} (made by an earlier run, password shown then; a new "
                f"one: modemgw users passwd --data {data} {name})")
    username, password = f"admin-{random_secrets.token_hex(2)}", random_secrets.token_urlsafe(12)
    users.add_user(running.store, username, password, "admin")
    running.gateway.audit("user.add", actor="demo", target=f"user {username}", detail={"role": "admin"})
    return f"web UI: {running.url} — log in as {username} with password {password} (shown once)"


def _demo_key(running) -> str | None:
    """The demo's admin API key when this run made it (None: an earlier run did, and showed it then)."""
    if any(key["name"] == "demo" and not key["revoked_at"] for key in running.gateway.api_keys()):
        return None
    key, record = running.gateway.create_key("demo", ("send", "read", "admin"))
    running.gateway.audit("key.create", actor="demo", target=f"key demo (#{record.id})",
                          detail={"scopes": list(record.scopes)})
    return key


def _demo_banner(running) -> None:
    """What a newcomer needs to try the demo: where it runs, the login and key, the region numbers are read in,
    and the exact commands to send, to text the gateway from a simulated phone, and to reset a password."""
    data, region = running.data_dir, running.config.gateway.default_region
    login, key = _demo_login(running), _demo_key(running)
    _banner(running)
    click.echo(login)
    if key:
        click.echo(f"API key (admin, shown once): {key}")
    else:
        click.echo(f"API key: the one named 'demo' (made and shown by an earlier run); another: modemgw keys create "
                   f"--data {data} --name demo-2 --scopes send,read,admin")
    click.echo(f"default region: {region} (numbers without + and a country code are read as {region} numbers: "
               f"07700 900123 is +447700900123)")
    click.echo(f"try: curl -s -H \"Authorization: Bearer {key or '$MODEMGW_KEY'}\" -H 'Content-Type: application/json'"
               f" -d '{{\"to\": \"+447700900123\", \"body\": \"Hello\"}}' {running.url}api/v1/messages")
    numbers = ", ".join(f"{device.modem.name} {device.modem.identity.number}" for device in running.simulator.devices)
    click.echo(f"simulated SIMs: {numbers} (messages between them arrive in their inboxes)")
    link_dir = running.simulator.link_dir
    click.echo(f"simulator: links and control socket in {link_dir}")
    click.echo(f"text the gateway: modemgw sim --link-dir {link_dir} inject sms --modem sim0 --from {DEMO_PHONE} "
               "--text 'Hello gateway' (it lands in the Inbox; reply from there)")
    click.echo(f"try: modemgw send --data {data} --to +447700900123 --text 'Hello from modemgw' --wait")
    if running.email is not None:
        _demo_email_banner(running.email)


def _demo_email_banner(server) -> None:
    """The e-mail to SMS lines of the demo's banner: where the SMTP server listens, who may send, and a test mail
    with Debian's swaks (POSIXLY_CORRECT stops swaks from reading +447... as an option)."""
    settings = server.settings
    if settings.auth:
        who = "after SMTP AUTH as a web UI user"
    elif settings.allowed_networks is not None:
        who = "clients in " + ", ".join(str(network) for network in settings.allowed_networks)
    else:
        who = "clients on this machine only"
    host = server.host if ":" not in server.host else f"[{server.host}]"
    click.echo(f"e-mail to SMS: SMTP on {host}:{server.port} for <number>@{settings.domain} and "
               f"<group>@{settings.domain} ({who})")
    click.echo(f"try: POSIXLY_CORRECT=1 swaks --server {server.host} --port {server.port} --from demo@example.com "
               f"--to +447700900123@{settings.domain} --header 'Subject: Test' --body 'Hello by e-mail' "
               "(apt install swaks; the SMS shows on Messages)")


def _daemon_request(data_dir: Path | None, request: dict, timeout: float = 120.0) -> dict:
    from modemgw.control import daemon_request as control_request

    directory = data_dir or _default_data_dir()
    try:
        reply = control_request(directory, request, timeout)
    except ConnectionError as error:
        raise click.ClickException(str(error)) from None
    if not reply.get("ok"):
        field = f" ({reply['field']})" if reply.get("field") else ""
        raise click.ClickException(f"{reply.get('error')}{field}")
    return reply


def _admin_config(config_path: Path | None, data_dir: Path | None):
    """The configuration an administrator's command works on: with neither --config (nor an installed config)
    nor --data, the data directory of the daemon that runs here (the system one, else the demo's), like `send`."""
    config = _load_config(config_path, data_dir)
    if config_path is None and data_dir is None:
        config.data_dir = _default_data_dir()
    return config


def _default_data_dir() -> Path:
    """The daemon's data directory when none is given: the system one if a daemon runs there, else the demo's."""
    system = Path("/var/lib/modemgw")
    return system if (system / "modemgw.sock").exists() else _demo_dir()


@main.command("send")
@_data_option
@click.option("--to", "recipients", required=True, multiple=True, help="Recipient (repeatable).")
@click.option("--text", "body", required=True, help="Message text; `-` reads standard input.")
@click.option("--priority", type=click.IntRange(-100, 100), default=0)
@click.option("--send-at", default=None, metavar="ISO-TIME", help="Send later, e.g. 2026-12-01T09:00:00+01:00.")
@click.option("--validity", type=click.IntRange(min=1), default=None, metavar="SECONDS")
@click.option("--modem", "route", default=None, help="A modem label or group to send through.")
@click.option("--smart", is_flag=True, help="Smart encoding: replace look-alikes so the text fits GSM-7.")
@click.option("--wait", is_flag=True, help="Wait until the message is delivered (or finally fails).")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="How long --wait waits.")
def send(data_dir, recipients, body, priority, send_at, validity, route, smart, wait, timeout) -> None:
    """Queue an SMS on the running daemon and print its id (and, with --wait, its outcome)."""
    request = {"command": "submit", "to": list(recipients), "body": _read_argument(body), "priority": priority,
               "send_at": send_at, "validity": validity, "route": route, "smart_encoding": smart}
    result = _daemon_request(data_dir, request)["result"]
    for message in result["messages"]:
        click.echo(f"message {message['id']} to {message['to']}: {message['status']} "
                   f"({message['segments']} segment(s), {message['encoding']})")
    for skipped in result["skipped"]:
        click.echo(f"skipped {skipped['to']}: {skipped['reason']}")
    if wait:
        for message in result["messages"]:
            final = _daemon_request(data_dir, {"command": "wait", "id": message["id"], "timeout": timeout,
                                               "until": "report"}, timeout + 10)["message"]
            reason = f" ({final['error_reason']})" if final.get("error_reason") else ""
            click.echo(f"message {final['id']}: {final['status']}{reason}")


@main.command("status")
@_data_option
def status(data_dir) -> None:
    """The modem pool and the queue of the running daemon, as a table."""
    reply = _daemon_request(data_dir, {"command": "status"})
    click.echo(f"{'MODEM':<12} {'STATE':<11} {'SIGNAL':>7} {'TODAY':>6}  {'OPERATOR':<12} DEVICE")
    for modem in reply["modems"]:
        signal_text = f"{modem['signal_dbm']}dBm" if modem["signal_dbm"] is not None else "-"
        click.echo(f"{modem['label'][:12]:<12} {modem['state']:<11} {signal_text:>7} {modem['sent_today']:>6}  "
                   f"{(modem['operator'] or '-')[:12]:<12} {modem['device'] or '-'}")
    for device, reason in sorted(reply.get("unattached", {}).items()):
        click.echo(f"{'-':<12} {'left alone':<11} {'':>7} {'':>6}  {'':<12} {device}: {reason}")
    for modem in reply["modems"]:
        if modem.get("reports"):
            click.echo(f"{modem['label']}: {modem['reports']}")
    counts = ", ".join(f"{name} {count}" for name, count in sorted(reply["counts"].items())) or "no messages"
    click.echo(f"queue: {reply['queue']} waiting; {counts}")
    if reply.get("storage") is not None:  # the database's size, its oldest message, the retention in force
        _echo_storage(reply["storage"])
    if reply.get("smpp") is not None:  # [smpp] listen is set: the SMPP server's sessions
        sessions = reply["smpp"]
        click.echo(f"SMPP: {len(sessions)} session{'' if len(sessions) == 1 else 's'}")
        if sessions:
            click.echo(f"  {'SYSTEM_ID':<16} {'BIND':<12} {'PEER':<22} {'SINCE':<8} {'MSG/S':>6} {'WINDOW':>7} "
                       f"{'RECEIPTS':>8} {'INBOUND':>7}")
        for session in sessions:
            since = time.strftime("%H:%M:%S", time.localtime(session["since"]))
            window = f"{session['window']}/{session['window_size']}"
            click.echo(f"  {(session['system_id'] or '-')[:16]:<16} {session['bind']:<12} {session['peer'][:22]:<22} "
                       f"{since:<8} {session['submitted_per_second']:>6.1f} {window:>7} "
                       f"{session['receipts_pending']:>8} {session['inbound_pending']:>7}")


def _echo_storage(storage: dict) -> None:
    """Two lines of `modemgw status`: the database (file and write-ahead log, the disk's free space) and the
    oldest message kept, with what [retention] keeps."""
    from modemgw.retention import describe_bytes, describe_days

    oldest = storage.get("oldest_message_at")
    oldest_text = time.strftime("%Y-%m-%d %H:%M", time.localtime(oldest)) if oldest else "none"
    free = storage.get("disk_free_bytes")
    total = storage["database_bytes"] + storage["wal_bytes"]
    click.echo(f"database: {describe_bytes(total)} ({describe_bytes(storage['wal_bytes'])} of it write-ahead log)"
               f"{f', {describe_bytes(free)} free on its disk' if free is not None else ''}; "
               f"oldest message {oldest_text}")
    new_size = storage.get("new_page_size")
    if storage.get("page_size") not in (None, new_size):  # made by an older version
        click.echo(f"database pages: {storage['page_size']} bytes; new databases have {new_size}, which write less "
                   "to the SD card per message: `modemgw vacuum` (gateway stopped) converts this one")
    kept = storage.get("retention", {})
    click.echo("retention: " + ", ".join(f"{name} {describe_days(kept.get(key, 0))}" for name, key in (
        ("messages", "messages_days"), ("inbox", "inbox_days"), ("webhook deliveries", "webhook_deliveries_days"),
        ("audit", "audit_days"))))


@main.group("users")
def users_group() -> None:
    """Web UI users (admin or operator); passwords are stored hashed. Works on the data directory, daemon running
    or not: a disabled, deleted or re-passworded user's open sessions end at once."""


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def _os_user() -> str:
    """Who ran this command, as the audit log names them: the login name, and whom sudo ran it for."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = f"uid {os.getuid()}"
    sudo = os.environ.get("SUDO_USER")
    return f"{name} (sudo by {sudo[:64]})" if sudo and sudo != name else name


def _audit(store, action: str, target: str, detail: dict | None = None, ok: bool = True) -> None:
    """An entry in the audit log for a change made from the command line: actor "cli", source "console", and
    the system user who ran the command in its detail. A database that refuses it never fails the command."""
    from modemgw.gateway import Gateway

    Gateway(store).audit(action, actor="cli", source="console", target=target,
                         detail={**(detail or {}), "os_user": _os_user()}, ok=ok)


def _change_user(config_path, data_dir, username: str, change, action: str) -> None:
    """`change(store, user_id)` on the user of that name, audited as `action` (refused or not); library errors
    become ClickException."""
    from modemgw import users
    from modemgw.store import StoreError

    store = _store_for(config_path, data_dir)
    target = f"user {username[:users.MAX_USERNAME]}"
    try:
        change(store, users.find_user(store, username)["id"])
    except (users.UserError, StoreError) as error:
        _audit(store, action, target, {"error": str(error)}, ok=False)
        raise click.ClickException(str(error)) from None
    _audit(store, action, target)


@users_group.command("add")
@_config_option
@_data_option
@click.option("--username", required=True)
@click.option("--role", type=click.Choice(["admin", "operator"]), default="operator", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (for scripts).")
def users_add(config_path, data_dir, username, role, password_stdin) -> None:
    """Add a user; asks for the password (at least 10 characters) unless --password-stdin."""
    from modemgw import users

    password = _read_password(password_stdin)
    store = _store_for(config_path, data_dir)
    target = f"user {username.strip()[:users.MAX_USERNAME]}"
    try:
        users.add_user(store, username, password, role)
    except users.UserError as error:
        _audit(store, "user.add", target, {"role": role, "error": str(error)}, ok=False)
        raise click.ClickException(str(error)) from None
    _audit(store, "user.add", target, {"role": role})
    click.echo(f"user {username} ({role}) added")


@users_group.command("list")
@_config_option
@_data_option
def users_list(config_path, data_dir) -> None:
    """List users: id, name, role, enabled or disabled, last login (never a password)."""
    from modemgw import users

    for user in users.list_users(_store_for(config_path, data_dir)):
        login = time.strftime("%Y-%m-%d %H:%M", time.localtime(user["last_login_at"])) if user["last_login_at"] \
            else "never"
        state = "disabled" if user["disabled"] else "enabled"
        click.echo(f"{user['id']:>4}  {user['username'][:24]:<24} {user['role']:<9} {state:<9} last login {login}")


@users_group.command("passwd")
@_config_option
@_data_option
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (for scripts).")
def users_passwd(config_path, data_dir, username, password_stdin) -> None:
    """Set a user's password (asks for it unless --password-stdin); the user's sessions end."""
    from modemgw import users

    password = _read_password(password_stdin)
    _change_user(config_path, data_dir, username, lambda store, user_id: users.set_password(store, user_id, password),
                 "user.password")
    click.echo(f"password of {username} set; their sessions have ended")


@users_group.command("disable")
@_config_option
@_data_option
@click.argument("username")
def users_disable(config_path, data_dir, username) -> None:
    """Stop a user logging in; their open sessions end at once."""
    from modemgw import users

    _change_user(config_path, data_dir, username, lambda store, user_id: users.set_disabled(store, user_id, True),
                 "user.disable")
    click.echo(f"user {username} disabled; their sessions have ended")


@users_group.command("enable")
@_config_option
@_data_option
@click.argument("username")
def users_enable(config_path, data_dir, username) -> None:
    """Let a disabled user log in again."""
    from modemgw import users

    _change_user(config_path, data_dir, username, lambda store, user_id: users.set_disabled(store, user_id, False),
                 "user.enable")
    click.echo(f"user {username} enabled")


@users_group.command("delete")
@_config_option
@_data_option
@click.argument("username")
def users_delete(config_path, data_dir, username) -> None:
    """Delete a user; their sessions end. (`disable` keeps the account for later.)"""
    from modemgw import users

    _change_user(config_path, data_dir, username, users.delete_user, "user.delete")
    click.echo(f"user {username} deleted")


@main.group("smpp-users")
def smpp_users_group() -> None:
    """SMPP users: the system_id and password an SMPP client (Kannel, Jasmin, an application) binds with, its
    throughput and whether it gets inbound SMS. Passwords (1-8 characters, the protocol's limit) are stored hashed.
    Works on the data directory, daemon running or not; a change counts from the client's next bind."""


def _change_smpp_user(config_path, data_dir, system_id: str, change, action: str, detail: dict | None = None) -> None:
    """`change(store, user_id)` on the SMPP user of that system_id, audited as `action`; errors become
    ClickException."""
    from modemgw.smpp import accounts
    from modemgw.store import NotFound, StoreError

    store = _store_for(config_path, data_dir)
    target = f"smpp user {system_id[:accounts.MAX_SYSTEM_ID + 1]}"
    try:
        change(store, accounts.find_account(store, system_id)["id"])
    except (accounts.AccountError, NotFound, StoreError) as error:
        _audit(store, action, target, {**(detail or {}), "error": str(error)}, ok=False)
        raise click.ClickException(str(error)) from None
    _audit(store, action, target, detail)


@smpp_users_group.command("add")
@_config_option
@_data_option
@click.option("--system-id", required=True, help="What the client binds with (1-15 characters).")
@click.option("--throughput", type=int, default=None, help="Most submit_sm per second (more: ESME_RTHROTTLED); "
                                                           "default: no limit.")
@click.option("--receive-inbound", is_flag=True, help="Inbound SMS go to this user's receivers as deliver_sm.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (for scripts).")
def smpp_users_add(config_path, data_dir, system_id, throughput, receive_inbound, password_stdin) -> None:
    """Add an SMPP user; asks for the password (1-8 characters) unless --password-stdin."""
    from modemgw.smpp import accounts

    password = _read_password(password_stdin)
    store = _store_for(config_path, data_dir)
    target = f"smpp user {system_id[:accounts.MAX_SYSTEM_ID + 1]}"
    detail = {"throughput": throughput, "receive_inbound": receive_inbound}
    try:
        accounts.add_account(store, system_id, password, throughput=throughput, receive_inbound=receive_inbound)
    except accounts.AccountError as error:
        _audit(store, "smpp_user.add", target, {**detail, "error": str(error)}, ok=False)
        raise click.ClickException(str(error)) from None
    _audit(store, "smpp_user.add", target, detail)
    limit = f"{throughput} msg/s" if throughput else "no throughput limit"
    click.echo(f"SMPP user {system_id} added ({limit}{', receives inbound SMS' if receive_inbound else ''})")


@smpp_users_group.command("list")
@_config_option
@_data_option
def smpp_users_list(config_path, data_dir) -> None:
    """List SMPP users: id, system_id, throughput, inbound SMS, enabled or disabled (never a password)."""
    from modemgw.smpp import accounts

    users = accounts.list_accounts(_store_for(config_path, data_dir))
    if not users:
        click.echo("no SMPP users (add one: modemgw smpp-users add --system-id NAME)")
    for user in users:
        limit = f"{user['throughput']}/s" if user["throughput"] else "no limit"
        inbound = "inbound" if user["receive_inbound"] else "-"
        state = "disabled" if user["disabled"] else "enabled"
        click.echo(f"{user['id']:>4}  {user['system_id']:<16} {limit:<10} {inbound:<8} {state}")


@smpp_users_group.command("passwd")
@_config_option
@_data_option
@click.argument("system_id")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (for scripts).")
def smpp_users_passwd(config_path, data_dir, system_id, password_stdin) -> None:
    """Set an SMPP user's password (asks for it unless --password-stdin)."""
    from modemgw.smpp import accounts

    password = _read_password(password_stdin)
    _change_smpp_user(config_path, data_dir, system_id,
                      lambda store, user_id: accounts.change_account(store, user_id, password=password),
                      "smpp_user.password")
    click.echo(f"password of SMPP user {system_id} set; it counts from the client's next bind")


@smpp_users_group.command("set")
@_config_option
@_data_option
@click.argument("system_id")
@click.option("--throughput", type=int, default=None, help="Most submit_sm per second.")
@click.option("--no-limit", is_flag=True, help="Remove the throughput limit.")
@click.option("--receive-inbound/--no-receive-inbound", default=None, help="Whether inbound SMS go to this user.")
def smpp_users_set(config_path, data_dir, system_id, throughput, no_limit, receive_inbound) -> None:
    """Change an SMPP user's throughput or whether it receives inbound SMS."""
    from modemgw.smpp import accounts

    detail = {"throughput": None if no_limit else throughput, "receive_inbound": receive_inbound}
    _change_smpp_user(config_path, data_dir, system_id,
                      lambda store, user_id: accounts.change_account(store, user_id, throughput=throughput,
                                                                     no_limit=no_limit,
                                                                     receive_inbound=receive_inbound),
                      "smpp_user.update", detail)
    click.echo(f"SMPP user {system_id} changed; it counts from the client's next bind")


@smpp_users_group.command("disable")
@_config_option
@_data_option
@click.argument("system_id")
def smpp_users_disable(config_path, data_dir, system_id) -> None:
    """Refuse an SMPP user's binds (ESME_RBINDFAIL) from now on; sessions bound already run until they unbind."""
    from modemgw.smpp import accounts

    _change_smpp_user(config_path, data_dir, system_id,
                      lambda store, user_id: accounts.change_account(store, user_id, disabled=True),
                      "smpp_user.disable")
    click.echo(f"SMPP user {system_id} disabled")


@smpp_users_group.command("enable")
@_config_option
@_data_option
@click.argument("system_id")
def smpp_users_enable(config_path, data_dir, system_id) -> None:
    """Let a disabled SMPP user bind again."""
    from modemgw.smpp import accounts

    _change_smpp_user(config_path, data_dir, system_id,
                      lambda store, user_id: accounts.change_account(store, user_id, disabled=False),
                      "smpp_user.enable")
    click.echo(f"SMPP user {system_id} enabled")


@smpp_users_group.command("delete")
@_config_option
@_data_option
@click.argument("system_id")
def smpp_users_delete(config_path, data_dir, system_id) -> None:
    """Delete an SMPP user with its queued receipts and inbound SMS (its messages keep their history)."""
    from modemgw.smpp import accounts

    _change_smpp_user(config_path, data_dir, system_id, accounts.delete_account, "smpp_user.delete")
    click.echo(f"SMPP user {system_id} deleted")


@main.group("keys")
def keys_group() -> None:
    """API keys: create (shown once), list, revoke. Works on the data directory, daemon running or not."""


def _act_as_data_owner(data_dir: Path) -> None:
    """Run as root (sudo) on the service's data directory: become its owner first, so that no database file
    ends up owned by root, which the service could then not open."""
    if os.geteuid() != 0:
        return
    try:
        owner = data_dir.stat()
    except OSError:
        return
    if owner.st_uid == 0:
        return
    import pwd

    try:
        name = pwd.getpwuid(owner.st_uid).pw_name
        os.initgroups(name, owner.st_gid)
    except (KeyError, OSError):
        os.setgroups([owner.st_gid])
    os.setgid(owner.st_gid)
    os.setuid(owner.st_uid)


def _store_for(config_path: Path | None, data_dir: Path | None):
    from modemgw.store import Store, StoreError

    config = _admin_config(_system_config(config_path), data_dir)
    _act_as_data_owner(config.data_dir)
    try:
        config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return Store(config.data_dir / "modemgw.db")
    except (OSError, StoreError) as error:
        raise click.ClickException(f"cannot open the database in {config.data_dir}: {error}") from None


def _gateway_for(config_path: Path | None, data_dir: Path | None):
    """The gateway over the data directory's database, for commands that work daemon running or not."""
    from modemgw.gateway import Gateway

    return Gateway(_store_for(config_path, data_dir))


@keys_group.command("create")
@_config_option
@_data_option
@click.option("--name", required=True, help="Who or what uses the key (an application, a person).")
@click.option("--scopes", default="send,read", show_default=True,
              help="Comma-separated: send, read, ussd, book, admin.")
@click.option("--group", default=None, help="Route this key's messages to a modem group by default.")
@click.option("--rate", "rate_per_minute", type=click.IntRange(min=1), default=None,
              help="Requests a minute this key may make (default: unlimited).")
@click.option("--allow-query-token", is_flag=True, default=False,
              help="The key may also be passed in a URL (GET /api/v1/send?key=...) for devices that can only call "
                   "a URL. Off by default: URLs end up in logs. Give such a device a key of its own, scope send.")
def keys_create(config_path, data_dir, name, scopes, group, rate_per_minute, allow_query_token) -> None:
    """Create an API key and print it; it is stored hashed and cannot be shown again."""
    gateway = _gateway_for(config_path, data_dir)
    try:
        key, record = gateway.create_key(name, scopes, group, rate_per_minute, allow_query_token)
    except ValueError as error:
        _audit(gateway.store, "key.create", f"key {name.strip()[:100]}", {"scopes": scopes, "error": str(error)},
               ok=False)
        raise click.ClickException(str(error)) from None
    _audit(gateway.store, "key.create", f"key {record.name} (#{record.id})",
           {"scopes": list(record.scopes), "group": group, "rate_per_minute": rate_per_minute}
           | ({"allow_query_token": True} if allow_query_token else {}))
    click.echo(key)
    click.echo(f"key {record.id} '{record.name}' with scopes {','.join(record.scopes)}: store it now, it is "
               "not shown again", err=True)
    if allow_query_token:
        click.echo("this key may be passed in a URL (GET /api/v1/send?key=...): URLs end up in logs, so keep it to "
                   "the one device that needs it", err=True)


@keys_group.command("list")
@_config_option
@_data_option
def keys_list(config_path, data_dir) -> None:
    """List API keys (never the keys themselves)."""
    for key in _gateway_for(config_path, data_dir).api_keys():
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(key["last_used_at"])) if key["last_used_at"] \
            else "never"
        state = "revoked" if key["revoked_at"] else "active"
        in_url = "  key in URL allowed" if key.get("allow_query_token") else ""
        click.echo(f"{key['id']:>4}  mgw_{key['prefix']}_…  {key['name'][:24]:<24} {key['scopes']:<16} "
                   f"{state:<8} last used {used}{in_url}")


@keys_group.command("revoke")
@_config_option
@_data_option
@click.argument("key_id", type=int)
def keys_revoke(config_path, data_dir, key_id) -> None:
    """Revoke a key by its id (from `modemgw keys list`)."""
    from modemgw.store import NotFound

    gateway = _gateway_for(config_path, data_dir)
    name = next((key["name"] for key in gateway.api_keys() if key["id"] == key_id), None)
    target = f"key {name} (#{key_id})" if name is not None else f"key #{key_id}"
    try:
        gateway.revoke_key(key_id)
    except NotFound as error:
        _audit(gateway.store, "key.revoke", target, {"error": str(error)}, ok=False)
        raise click.ClickException(str(error)) from None
    _audit(gateway.store, "key.revoke", target)
    click.echo(f"key {key_id} revoked")


@main.command("backup")
@_config_option
@_data_option
@click.argument("destination", type=click.Path(path_type=Path))
def backup_command(config_path, data_dir, destination) -> None:
    """Copy the database to DESTINATION (a new file, or a directory for a dated one), consistently, while the
    gateway runs (SQLite's online backup); the copy is checked before it gets its name."""
    from modemgw.store import backup

    config = _admin_config(_system_config(config_path), data_dir)
    try:
        summary = backup.backup(config.data_dir / "modemgw.db", destination)
    except backup.BackupError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"backed up: {summary}")


@main.command("restore")
@_config_option
@_data_option
@click.argument("source", type=click.Path(path_type=Path))
def restore_command(config_path, data_dir, source) -> None:
    """Replace the database with the backup SOURCE. Stop the gateway first (sudo systemctl stop modemgw);
    the database replaced is kept beside it as modemgw.db.before-restore-<time>."""
    from modemgw.store import backup

    config = _admin_config(_system_config(config_path), data_dir)
    _refuse_while_running(config, "restore")
    try:
        summary, kept = backup.restore(source, config.data_dir / "modemgw.db")
    except backup.BackupError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"restored: {summary}")
    if kept:
        click.echo(f"the database it replaced is kept as {kept}")


def _refuse_while_running(config, step: str) -> None:
    """A rewrite of the database file (restore, vacuum) may not run under a gateway that has it open."""
    from modemgw.control import daemon_request as control_request

    try:
        control_request(config.data_dir, {"command": "status"}, timeout=5)
    except (ConnectionError, ValueError):
        return
    raise click.ClickException("the gateway is running on this database: stop it first "
                               f"(sudo systemctl stop modemgw), {step}, then start it again")


@main.command("vacuum")
@_config_option
@_data_option
def vacuum_command(config_path, data_dir) -> None:
    """Compact the database (SQLite's VACUUM) and turn on incremental vacuum, so that from then on the hourly
    pruning gives freed space back to the disk; a database made by an older version also gets the smaller pages
    new ones have (each message then writes about a quarter less to the SD card). Stop the gateway first (sudo
    systemctl stop modemgw): the rewrite holds the database for as long as it takes (minutes for a large one on a
    Pi), and needs about the database's size free on its disk (twice that when the page size changes)."""
    import shutil

    from modemgw.retention import describe_bytes
    from modemgw.store import StoreError

    config = _admin_config(_system_config(config_path), data_dir)
    _refuse_while_running(config, "run modemgw vacuum")
    database = config.data_dir / "modemgw.db"
    if not database.exists():
        raise click.ClickException(f"no database in {config.data_dir} (is --data right?)")
    size = database.stat().st_size + (database.with_name("modemgw.db-wal").stat().st_size
                                      if database.with_name("modemgw.db-wal").exists() else 0)
    free = shutil.disk_usage(config.data_dir).free
    gateway = _gateway_for(config_path, data_dir)
    pages = gateway.storage_summary()
    if pages["page_size"] not in (None, pages["new_page_size"]):
        size *= 2  # the rollback journal holds the old pages while the file is rewritten with new ones
    if free < size:
        raise click.ClickException(f"VACUUM needs about {describe_bytes(size)} free beside the database, and "
                                   f"{config.data_dir}'s disk has {describe_bytes(free)}: free space first "
                                   "(journalctl --vacuum-size=50M; old logs), or lower [retention] and let the "
                                   "gateway prune first")
    click.echo(f"compacting {database} ({describe_bytes(size)}) ...")
    try:
        result = gateway.vacuum_database()
    except StoreError as error:
        _audit(gateway.store, "database.vacuum", str(database), {"error": str(error)}, ok=False)
        raise click.ClickException(f"{error}: the database is unchanged") from None
    _audit(gateway.store, "database.vacuum", str(database), result)
    pages = (f"pages of {result['page_size']} bytes" if result["page_size"] == result["page_size_before"] else
             f"pages of {result['page_size']} bytes (were {result['page_size_before']})")
    click.echo(f"done: {describe_bytes(result['before_bytes'])} before, {describe_bytes(result['after_bytes'])} "
               f"now; auto_vacuum {result['auto_vacuum']}; {pages}")


# --- diagnostics on a port ---------------------------------------------------------------------------------------

SYSTEM_CONFIG = Path("/etc/modemgw/config.toml")


def _system_config(config_path: Path | None) -> Path | None:
    """The config to read: the one given, else the installed one when it exists."""
    return config_path or (SYSTEM_CONFIG if SYSTEM_CONFIG.exists() else None)


def _daemon_modems(data_dir: Path) -> list[dict] | None:
    """The running daemon's modems (it owns their ports), or None when no daemon answers."""
    from modemgw.control import daemon_request as control_request

    try:
        reply = control_request(data_dir, {"command": "status"}, timeout=10)
    except (ConnectionError, ValueError):
        return None
    return reply.get("modems") if reply.get("ok") else None


@main.command("discover")
@_config_option
@_data_option
@click.option("--ports", "pattern", default=None, metavar="GLOB",
              help="Probe the ports matching GLOB (default: every serial port the system lists).")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=1.0, show_default=True, metavar="S",
              help="Seconds to wait for each AT reply.")
@click.option("--write", is_flag=True, help="Add entries for newly found modems to the config file.")
@click.option("--json", "as_json", is_flag=True, help="Print what was found as JSON.")
def discover(config_path, data_dir, pattern, timeout, write, as_json) -> None:
    """Find modems on serial ports: which port answers AT, the modem's IMEI and its SIM's ICCID, PIN and network
    state. Prints [[modem]] config entries for those not configured yet (--write adds them). Read-only: no PIN
    is entered and no setting changed. Ports the running gateway owns are shown, not probed."""
    from modemgw import discovery

    path = _system_config(config_path)
    config = _admin_config(path if path is None or path.exists() or not write else None, data_dir)
    owned = {os.path.realpath(modem["device"]): modem for modem in _daemon_modems(config.data_dir) or []
             if modem.get("device")}
    ports = [port for port in discovery.serial_ports(pattern) if os.path.realpath(port) not in owned]
    reports = discovery.scan(ports, timeout)
    found = discovery.group(reports)
    new = [modem for modem in found if not discovery.known(config, modem.report)]
    if as_json:
        _print_json({"ports": [report.as_dict() for report in reports], "gateway": list(owned.values()),
                     "new": [discovery.config_entry(modem) for modem in new]})
        return
    for entry in owned.values():
        click.echo(f"{entry['device']}: in use by the running gateway as {entry['label']} ({entry['state']})")
    for report in reports:
        click.echo(discovery.describe(report))
    click.echo(f"\n{len(found)} modem(s) on {len(reports)} port(s) probed"
               + (f", {len(owned)} in use by the gateway" if owned else ""))
    for modem in found:
        if len(modem.ports) > 1:
            click.echo(f"IMEI {modem.report.imei} answers on {', '.join(modem.ports)}: {modem.device} is used")
    if not found and not owned:
        _say("no modem answered. Is it plugged in (lsusb)? Still in mass-storage mode (usb_modeswitch)? "
             "May this user open the ports (group dialout)? Try: modemgw doctor")
        sys.exit(1)
    if not new:
        click.echo("every modem found is already in the configuration" if found else "")
        return
    entries = "\n".join(discovery.config_entry(modem) for modem in new)
    if not write:
        click.echo(f"\n# new modem(s); add to {path or SYSTEM_CONFIG} (or run with --write):\n")
        click.echo(entries, nl=False)
        return
    target = config_path or SYSTEM_CONFIG
    _append_config(target, entries)
    _say(f"added {len(new)} modem(s) to {target}; restart the gateway to use them "
         "(sudo systemctl restart modemgw)")
    if not config.pool.ports:
        _say(f"note: [gateway] ports is empty in {target}: modems are looked for only at their device "
             'paths; ports = ["/dev/modemgw/*"] lets them move (the udev rules make those names)')


@main.command("doctor")
@_config_option
@_data_option
@click.option("--timeout", type=click.FloatRange(min=0.1), default=1.0, show_default=True, metavar="S",
              help="Seconds per AT reply when the doctor opens ports itself (no gateway running).")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def doctor(config_path, data_dir, timeout, as_json) -> None:
    """Check the appliance and explain each problem with its fix: service user and serial permissions,
    ModemManager, ports held by other programs, each modem's SIM PIN, network, signal and SMSC, the clock, disk
    space, database integrity and the webhook backlog. Exit status: 0 all well, 1 warnings, 2 problems."""
    from modemgw.control import NotPermitted, daemon_request as control_request
    from modemgw.doctor import Doctor, render

    path = _system_config(config_path)
    config = _admin_config(path, data_dir)
    unreachable = None
    gateway: dict | None
    try:
        reply = control_request(config.data_dir, {"command": "inspect"}, timeout=60)
        gateway = reply if reply.get("ok") else None
    except NotPermitted as error:  # it runs, but this user may not talk to it
        gateway, unreachable = None, str(error)
    except ConnectionError:
        gateway = None
    checker = Doctor(config, gateway, path, timeout, unreachable=unreachable)
    findings = checker.run()
    if as_json:
        _print_json({"status": checker.status, "findings": [finding.as_dict() for finding in findings]})
    else:
        click.echo(f"modemgw doctor, {time.strftime('%Y-%m-%d %H:%M')}, config {path or '(defaults)'}")
        click.echo(render(findings))
    sys.exit(checker.status)


def _say(text: str) -> None:
    """A message wrapped for an 80-column serial console."""
    import textwrap

    click.echo(textwrap.fill(text, 80, break_on_hyphens=False, break_long_words=False))


def _append_config(target: Path, entries: str) -> None:
    """Append to the config atomically, and only if the result still loads (a broken config stops the daemon)."""
    from modemgw import config as configuration

    try:
        old = target.read_text() if target.exists() else "# modemgw configuration (see deploy/config.example.toml)\n"
    except OSError as error:
        raise click.ClickException(f"cannot read {target}: {error.strerror}") from None
    text = old + ("" if old.endswith("\n") else "\n") + "\n" + entries
    temporary = target.with_name(f".{target.name}.new")
    previous = os.umask(0o027)  # PINs live in the config: never world-readable, not even for a moment
    try:
        temporary.write_text(text)
        if target.exists():  # same mode and owners (root:modemgw 0640 on an appliance): the service must read it
            info = target.stat()
            os.chmod(temporary, info.st_mode & 0o7777)
            if os.geteuid() == 0:
                os.chown(temporary, info.st_uid, info.st_gid)
        elif os.geteuid() == 0:  # a new config in /etc/modemgw (root:modemgw 0750): readable by the service's group
            os.chown(temporary, 0, target.parent.stat().st_gid)
        configuration.load(temporary)
        os.replace(temporary, target)
    except configuration.ConfigError as error:
        temporary.unlink(missing_ok=True)
        raise click.ClickException(f"not written, the result would not load: {error}") from None
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise click.ClickException(f"cannot write {target}: {error.strerror or error}") from None
    finally:
        os.umask(previous)


@main.command("console")
@click.argument("modem", metavar="LABEL|DEVICE")
@_config_option
@_data_option
@click.option("--baud", type=int, default=115200, show_default=True)
@click.option("--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Seconds to wait for each reply.")
def console(modem: str, config_path, data_dir, baud: int, timeout: float) -> None:
    """Interactive AT console on a modem, with history, reply timing and URCs marked.

    When the running gateway owns the modem (named by label, device or IMEI), commands go through it, between
    its own; otherwise DEVICE is opened directly."""
    import serial

    from modemgw.console import Console, GatewayLink
    from modemgw.control import daemon_request as control_request
    from modemgw.link import Link

    config = _admin_config(_system_config(config_path), data_dir)
    owned = _daemon_modems(config.data_dir)
    if owned is not None:
        match = [item for item in owned if modem in (item["label"], item["imei"], item["device"]) or (
            item["device"] and os.path.realpath(modem) == os.path.realpath(item["device"]))]
        if match:
            through = GatewayLink(config.data_dir, match[0]["label"], control_request)
            sys.exit(Console(through, timeout=timeout).run())
    device = modem
    if not os.path.exists(device):
        known = ", ".join(item["label"] for item in owned or []) or "none (is the gateway running?)"
        raise click.ClickException(f"{device} is neither a device nor a modem of the running gateway "
                                   f"(its modems: {known})")
    try:
        port = serial.Serial(device, baud, timeout=None, exclusive=True)
    except (serial.SerialException, OSError) as error:
        raise click.ClickException(f"cannot open {device}: {error}") from None
    session: Console | None = None
    link = Link(port, on_urc=lambda urc: session.on_urc(urc) if session else None, name=device)
    session = Console(link, timeout=timeout)
    try:
        status = session.run()
    finally:
        link.close()
    sys.exit(status)


if __name__ == "__main__":  # pragma: no cover
    main()
