"""Settings: the plain dataclasses the configuration fills in and the gateway, the pool and the modem driver read.

A leaf module: it imports nothing that opens a port, starts a thread or touches the database, so reading and
checking a configuration (`modemgw.config`) loads none of that. The classes are re-exported by the modules that
use them (`modemgw.gateway`, `modemgw.pool`, `modemgw.modem`), where they were defined before.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_RECIPIENTS = 10_000


@dataclass
class ModemSettings:
    pin: str | None = None
    command_timeout: float = 5.0
    send_timeout: float = 60.0          # per part, from AT+CMGS to +CMGS
    prompt_timeout: float = 5.0
    ussd_timeout: float = 20.0
    storage: str | None = None          # override the profile's storage (SM, ME, MT)
    settle_attempts: int = 10           # AT retries while a modem boots
    settle_delay: float = 0.2


@dataclass
class ModemConfig:
    """One configured modem: a device path, or an identity to find among the pool's ports: the modem's IMEI, or
    the SIM's ICCID (the SIM's settings follow it into another modem). Given together, all must match."""

    device: str | None = None
    imei: str | None = None
    iccid: str | None = None
    label: str | None = None
    group: str | None = None
    pin: str | None = None
    baudrate: int = 115200
    rate_per_minute: int | None = None
    quota_day: int | None = None
    quota_month: int | None = None
    storage: str | None = None


@dataclass
class PoolSettings:
    strategy: str = "least-used"
    sticky: bool = False
    ports: list[str] = field(default_factory=list)   # globs where modems may (re)appear (e.g. /dev/modemgw/*)
    auto_attach: bool = True          # start a worker for a modem found on `ports` that no [[modem]] names
    hotplug_interval: float = 2.0     # seconds between re-reads of the `ports` globs
    probe_timeout: float = 1.0        # per AT command when probing a new port
    reconnect_min: float = 0.2
    reconnect_max: float = 30.0
    modem: ModemSettings = field(default_factory=ModemSettings)
    failures_before_reset: int = 3    # modem faults in a row before AT+CFUN=1,1 (one fewer: ATZ and re-init)
    network_check_min: float = 1.0    # while a SIM has no network: first registration check after this long,
    network_check_max: float = 30.0   # ... doubling up to this (a +CREG URC checks at once)
    radio_reset_after: float = 600.0  # no network this long: switch the radio off and on once (never a reboot)
    shutdown_grace: float = 2.5       # at stop: sends in flight may finish this long, then every port is closed
    report_watchdog: int = 20         # this many sends asking for a report, none came back ...
    report_watchdog_age: float = 600.0  # ... the first of them this long ago: try another report route (0: off)


@dataclass
class Route:
    prefix: str
    modem: str | None = None
    group: str | None = None


@dataclass
class AlertReceiver:
    """Who gets the SMS of an alerting system's receiver (`[alerts.receivers.<name>]`): numbers and/or
    address-book groups."""

    to: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


@dataclass
class AlertSettings:
    """`[alerts]`: the Alertmanager and Grafana receivers (modemgw.alerts)."""

    group_interval: float = 300.0         # a repeated notification within this many seconds sends nothing
    priority: int = 0                     # of the alert SMS (higher goes first)
    receivers: dict[str, AlertReceiver] = field(default_factory=dict)  # receiver name ("*": any other) -> who


@dataclass
class EmailSettings:
    """`[email]`: the embedded SMTP server that turns mail to `<number>@<domain>` or `<group>@<domain>` into SMS
    (modemgw/email_gateway.py); off while `listen` is None. Every condition that is set must hold for a mail to be
    taken: the client's network, a login (`auth`), the envelope sender."""

    listen: str | None = None                     # HOST:PORT, e.g. "127.0.0.1:2525"
    domain: str = "sms.local"                     # the part after @ in the addresses it accepts (lower case)
    allowed_senders: tuple[str, ...] = ()         # envelope senders ("a@example.com", "@example.com"); () any
    allowed_networks: tuple | None = None         # ipaddress networks; None: loopback only, or anywhere with auth
    auth: bool = False                            # require SMTP AUTH as an enabled web UI user
    loopback_auth_without_tls: bool = False       # AUTH without STARTTLS from loopback (local scripts)
    tls_certificate: str | None = None            # PEM files for STARTTLS
    tls_key: str | None = None
    text: str = "body"                            # "subject", "body" (else the subject) or "both"
    max_size: int = 64 * 1024                     # bytes of a whole mail (the SIZE extension)

    def networks(self) -> tuple | None:
        """The client networks that may send: the configured ones; else loopback alone, or None (anywhere) when a
        login is required."""
        if self.allowed_networks is not None:
            return self.allowed_networks
        if self.auth:
            return None
        import ipaddress

        return (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@dataclass
class SmppSettings:
    """`[smpp]`: the SMPP 3.4 server (modemgw/smpp/): Kannel, Jasmin and SMPP applications bind to it as ESMEs
    with the users of `modemgw smpp-users`; off while `listen` is None."""

    listen: str | None = None             # HOST:PORT, e.g. "0.0.0.0:2775" (2775 by convention)
    system_type: str | None = None        # when set, a bind must carry this system_type
    window: int = 10                      # requests of one session waiting for their response; more: ESME_RMSGQFUL
    enquire_link_timeout: float = 60.0    # seconds without any PDU from a client before its session is closed
    bind_timeout: float = 10.0            # seconds a new connection has to bind
    max_sessions: int = 32                # connections at once; more are closed at once
    resend_timeout: float = 30.0          # seconds for a deliver_sm_resp before the deliver_sm goes again
    assembly_timeout: float = 60.0        # seconds for the parts of a concatenated submit to arrive


@dataclass
class SmtpSettings:
    """`[smtp]`: the relay that e-mails go out through (inbound rules' forwards; modemgw.mail). None of it set:
    e-mails wait in the outbox."""

    host: str | None = None               # the relay's name or address; None: no relay
    port: int = 25                        # 587 for submission with STARTTLS
    starttls: bool = False                # upgrade the connection with STARTTLS (the certificate is checked)
    username: str | None = None           # log in (AUTH) when set
    password: str | None = None
    from_address: str | None = None       # `from`; None: modemgw@<this host's name>
    timeout: float = 30.0                 # seconds for each step of a conversation with the relay


@dataclass
class RetentionSettings:
    """`[retention]`: how many days the database keeps what is finished (0: forever), and how the scheduler prunes
    the rest (modemgw/retention.py): often, in small batches, so that a pass never holds up a send."""

    messages_days: float = 90             # final messages (with their parts, events, submissions); never unfinished
    inbox_days: float = 90                # inbound messages (and their de-duplication keys)
    webhook_deliveries_days: float = 14   # delivered and dead webhook deliveries; pending ones always stay
    audit_days: float = 365               # the audit log
    interval_minutes: float = 60          # between pruning passes
    batch_size: int = 500                 # rows deleted per transaction (the write lock is shared with sends)
    batch_pause: float = 0.05             # seconds between batches, when sends may take the write lock


@dataclass
class GatewaySettings:
    default_region: str | None = None
    strict_numbers: bool = False
    max_segments: int = 10
    max_recipients: int = MAX_RECIPIENTS
    routes: list[Route] = field(default_factory=list)
    stop_words: tuple[str, ...] = ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT")
    start_words: tuple[str, ...] = ("START", "UNSTOP")
    report_window: float = 3 * 86400      # a status report matches parts sent this recently
    report_deadline: float = 2 * 86400    # no report by then: `report: none`
    inbound_assembly_timeout: float = 600.0
    retry_base: float = 5.0
    retry_max: float = 600.0
    max_attempts: int = 6
    retention_days: float = 90           # old name of [retention] messages_days (also the mail outbox's days)
    ussd_allow: tuple[str, ...] = ()      # USSD codes non-admins may send (e.g. "*100#"); admins may send any
    callback_private_destinations: bool = False  # messages' callback URLs may point at loopback and LAN addresses
    same_sim_days: float = 30.0           # a number that wrote to a SIM this recently gets our messages from it
    alerts: AlertSettings = field(default_factory=AlertSettings)  # [alerts]: Alertmanager and Grafana receivers
    retention: RetentionSettings = field(default_factory=RetentionSettings)  # [retention]: what is kept how long


__all__ = ["MAX_RECIPIENTS", "AlertReceiver", "AlertSettings", "EmailSettings", "GatewaySettings", "ModemConfig",
           "ModemSettings", "PoolSettings", "RetentionSettings", "Route", "SmppSettings", "SmtpSettings"]
