"""Configuration: a TOML file, defaults for everything, and validation whose messages name the file, the line
and the option.

    [gateway]
    default_region = "GB"        # for national numbers
    max_segments = 10
    strategy = "least-used"      # or round-robin, health-weighted
    ports = ["/dev/modemgw/*"]   # where modems bound by IMEI may (re)appear

    [http]
    listen = "0.0.0.0:8080"

    [[modem]]
    device = "/dev/modemgw/12d1-1506-if00"   # and/or imei = "356938030000005"
    label = "office-1"
    group = "otp"
    pin = "1234"
    rate_per_minute = 20
    quota_day = 500

    [[route]]
    prefix = "+44"
    group = "uk"                 # or modem = "office-1"
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from modemgw import dispatch
from modemgw.settings import (
    EmailSettings,
    GatewaySettings,
    ModemConfig,
    PoolSettings,
    Route,
    SmppSettings,
    SmtpSettings,
)


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file, line and option."""


@dataclass
class Config:
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    pool: PoolSettings = field(default_factory=PoolSettings)
    modems: list[ModemConfig] = field(default_factory=list)
    listen: str = "127.0.0.1:8080"
    secure_cookies: bool = False     # session cookies only over HTTPS (a TLS proxy in front)
    metrics_auth: bool = False       # /metrics asks for an API key with the read scope
    trusted_proxies: tuple = ()      # networks (ipaddress) whose X-Forwarded-For/-Proto are believed
    smtp: SmtpSettings = field(default_factory=SmtpSettings)  # [smtp]: the relay e-mails go out through
    email: EmailSettings = field(default_factory=EmailSettings)  # [email]: e-mail to SMS (off without listen)
    smpp: SmppSettings = field(default_factory=SmppSettings)  # [smpp]: the SMPP server (off without listen)
    data_dir: Path = Path("/var/lib/modemgw")
    source: Path | None = None


GATEWAY_OPTIONS: dict[str, type | tuple] = {
    "default_region": str, "strict_numbers": bool, "max_segments": int, "max_recipients": int,
    "stop_words": list, "start_words": list, "report_window_hours": (int, float),
    "report_deadline_hours": (int, float), "inbound_assembly_timeout": (int, float), "retry_base": (int, float),
    "retry_max": (int, float), "max_attempts": int, "retention_days": (int, float),
    "strategy": str, "sticky_recipients": bool, "ports": list, "auto_attach": bool,
    "hotplug_interval": (int, float), "report_watchdog": int, "report_watchdog_minutes": (int, float),
    "ussd_allow": list, "callback_private_destinations": bool, "same_sim_days": (int, float),
}
HTTP_OPTIONS: dict[str, type | tuple] = {"listen": str, "secure_cookies": bool, "metrics_auth": bool,
                                         "trusted_proxies": list}
MODEM_OPTIONS: dict[str, type | tuple] = {
    "device": str, "imei": str, "iccid": str, "label": str, "group": str, "pin": str, "baudrate": int,
    "rate_per_minute": int, "quota_day": int, "quota_month": int, "storage": str,
}


def _line_of(text: str, option: str, section: str | None, index: int = 0) -> int | None:
    """Best-effort line number of `option` in `section` (the index-th table of that name)."""
    current, seen = None, -1
    for number, line in enumerate(text.splitlines(), start=1):
        header = re.match(r"\s*\[\[?\s*([A-Za-z_]+)\s*\]\]?", line)
        if header:
            current = header.group(1)
            if current == section:
                seen += 1
            continue
        if current == section and (section is None or seen == index) and re.match(rf"\s*{re.escape(option)}\s*=",
                                                                                   line):
            return number
    return None


class _Checker:
    def __init__(self, path: Path | None, text: str):
        self.path = path
        self.text = text

    def fail(self, section: str | None, option: str, problem: str, index: int = 0) -> ConfigError:
        line = _line_of(self.text, option, section, index) if self.path else None
        where = f"{self.path}:{line}" if line else f"{self.path}" if self.path else "configuration"
        name = f"[{section}] {option}" if section else option
        return ConfigError(f"{where}: {name} {problem}")

    def table(self, data: dict, section: str, options: dict, index: int = 0) -> dict:
        for key, value in data.items():
            if key not in options:
                known = ", ".join(sorted(options))
                raise self.fail(section, key, f"is not an option here (known: {known})", index)
            expected = options[key]
            if isinstance(value, bool) and expected in (int, (int, float)):
                raise self.fail(section, key, "must be a number, not true/false", index)
            if not isinstance(value, expected):
                names = " or ".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
                raise self.fail(section, key, f"must be {names.replace('str', 'a string')}, not {value!r}", index)
            if expected in (int, (int, float)) and value < 0:
                raise self.fail(section, key, f"must not be negative ({value})", index)
        return data


def load(path: str | Path | None = None, data_dir: str | Path | None = None) -> Config:
    """Read and validate a configuration file (or the defaults when `path` is None). Raises ConfigError."""
    config = Config()
    text, raw = "", {}
    if path is not None:
        config.source = Path(path)
        try:
            text = Path(path).read_text()
        except OSError as error:
            raise ConfigError(f"{path}: cannot read the configuration: {error.strerror}") from None
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: not valid TOML: {error}") from None
    apply(config, raw, _Checker(config.source, text))
    if data_dir is not None:
        config.data_dir = Path(data_dir)
    return config


def apply(config: Config, raw: dict[str, Any], checker: _Checker | None = None) -> Config:
    checker = checker or _Checker(None, "")
    for section in raw:
        if section not in ("gateway", "http", "modem", "route", "data_dir", "alerts", "email", "smtp", "smpp",
                           "retention"):
            raise checker.fail(None, section, "is not a section of the configuration (known: gateway, http, "
                                              "modem, route, data_dir, alerts, email, smtp, smpp, retention)")
    if "data_dir" in raw:
        config.data_dir = Path(raw["data_dir"])
    gateway = checker.table(raw.get("gateway", {}), "gateway", GATEWAY_OPTIONS)
    settings = config.gateway
    for key, value in gateway.items():
        if key in ("report_window_hours", "report_deadline_hours"):
            setattr(settings, key.replace("_hours", ""), float(value) * 3600)
        elif key == "ussd_allow":
            if not all(isinstance(item, str) and item and set(item) <= set("0123456789*#+") for item in value):
                raise checker.fail("gateway", key, f"must be a list of USSD codes such as \"*100#\", not {value!r}")
            settings.ussd_allow = tuple(value)
        elif key in ("stop_words", "start_words"):
            setattr(settings, key, tuple(str(word).upper() for word in value))
        elif key == "strategy":
            if value not in dispatch.STRATEGIES:
                raise checker.fail("gateway", key, f"must be one of {', '.join(dispatch.STRATEGIES)}, not {value!r}")
            config.pool.strategy = value
        elif key == "sticky_recipients":
            config.pool.sticky = value
        elif key == "ports":
            if not all(isinstance(item, str) and item.startswith("/") for item in value):
                raise checker.fail("gateway", key, f"must be a list of absolute paths or globs, not {value!r}")
            config.pool.ports = list(value)
        elif key == "auto_attach":
            config.pool.auto_attach = value
        elif key == "hotplug_interval":
            if value < 0.1:
                raise checker.fail("gateway", key, f"must be at least 0.1 seconds, not {value!r}")
            config.pool.hotplug_interval = float(value)
        elif key == "report_watchdog":
            config.pool.report_watchdog = value
        elif key == "report_watchdog_minutes":
            config.pool.report_watchdog_age = float(value) * 60
        elif key in {item.name for item in fields(GatewaySettings)}:
            setattr(settings, key, value)
    if settings.same_sim_days < 0:
        raise checker.fail("gateway", "same_sim_days", f"must be 0 (off) or more days, not {settings.same_sim_days!r}")
    if settings.max_segments < 1 or settings.max_segments > 255:
        raise checker.fail("gateway", "max_segments", "must be from 1 to 255")
    http = raw.get("http", {})
    checker.table(http, "http", HTTP_OPTIONS)
    config.secure_cookies = http.get("secure_cookies", config.secure_cookies)
    config.metrics_auth = http.get("metrics_auth", config.metrics_auth)
    if "trusted_proxies" in http:
        config.trusted_proxies = parse_trusted_proxies(http["trusted_proxies"], checker)
    if "listen" in http:
        config.listen = http["listen"]
        parse_listen(config.listen, checker)
    modems = raw.get("modem", [])
    if not isinstance(modems, list):
        raise checker.fail(None, "modem", "must be written as [[modem]] tables")
    for index, item in enumerate(modems):
        checker.table(item, "modem", MODEM_OPTIONS, index)
        if not {"device", "imei", "iccid"} & set(item):
            raise checker.fail("modem", "device", f"(or imei, or iccid) is needed in [[modem]] number {index + 1}",
                               index)
        for key, digits in (("imei", (14, 15)), ("iccid", tuple(range(18, 23)))):
            value = item.get(key)
            padded_iccid = key == "iccid" and value is not None and value[:-1].isdigit() and value[-1:] in ("F", "f")
            if value is not None and not ((value.isdigit() or padded_iccid) and len(value) in digits):
                raise checker.fail("modem", key, f"must be {digits[0]}-{digits[-1]} digits, not {value!r}", index)
        config.modems.append(ModemConfig(**item))
    labels = [modem.label for modem in config.modems if modem.label]
    if len(labels) != len(set(labels)):
        raise checker.fail("modem", "label", "must be unique among modems")
    for index, item in enumerate(raw.get("route", [])):
        checker.table(item, "route", {"prefix": str, "modem": str, "group": str}, index)
        if "prefix" not in item or ("modem" in item) == ("group" in item):
            raise checker.fail("route", "prefix", "needs a prefix and exactly one of modem or group", index)
        settings.routes.append(Route(item["prefix"], item.get("modem"), item.get("group")))
    if "alerts" in raw:
        _apply_alerts(settings, raw["alerts"], checker)
    if "email" in raw:
        config.email = parse_email(raw["email"], checker)
    if "smtp" in raw:
        config.smtp = parse_smtp(raw["smtp"], checker)
    if "smpp" in raw:
        config.smpp = parse_smpp(raw["smpp"], checker)
    _apply_retention(settings, raw.get("retention", {}), "retention_days" in gateway, checker)
    return config


RETENTION_OPTIONS: dict[str, type | tuple] = {
    "messages_days": (int, float), "inbox_days": (int, float), "webhook_deliveries_days": (int, float),
    "audit_days": (int, float), "interval_minutes": (int, float), "batch_size": int, "batch_pause": (int, float),
}


def _apply_retention(settings: GatewaySettings, raw: Any, old_name_given: bool, checker: _Checker) -> None:
    """`[retention]` into `settings.retention`. `[gateway] retention_days` is the old name of `messages_days`: it
    still works alone; given with a different `messages_days` it is refused (which one was meant?). A
    `messages_days` above 0 also becomes `retention_days`, which the mail outbox's pruning reads (rules.py)."""
    if not isinstance(raw, dict):
        raise checker.fail(None, "retention", "must be a table: [retention]")
    checker.table(raw, "retention", RETENTION_OPTIONS)
    retention = settings.retention
    if old_name_given:
        if "messages_days" in raw and raw["messages_days"] != settings.retention_days:
            raise checker.fail("retention", "messages_days", (
                f"({raw['messages_days']}) disagrees with [gateway] retention_days ({settings.retention_days}), "
                "its old name: keep only [retention] messages_days"))
        retention.messages_days = settings.retention_days
    for key, value in raw.items():
        setattr(retention, key, float(value) if key != "batch_size" else value)
    if retention.messages_days > 0:
        settings.retention_days = retention.messages_days
    if retention.interval_minutes < 1:
        raise checker.fail("retention", "interval_minutes",
                           f"must be at least 1 minute, not {retention.interval_minutes!r}")
    if not 1 <= retention.batch_size <= 5000:
        raise checker.fail("retention", "batch_size", f"must be from 1 to 5000 rows, not {retention.batch_size!r}")
    if retention.batch_pause > 10:
        raise checker.fail("retention", "batch_pause", f"must be at most 10 seconds, not {retention.batch_pause!r}")


ALERT_OPTIONS: dict[str, type | tuple] = {"group_interval": (int, float, str), "priority": int, "receivers": dict}
ALERT_RECEIVER_OPTIONS: dict[str, type | tuple] = {"to": list, "groups": list}
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(value: Any) -> float:
    """Seconds from a number of seconds or an Alertmanager-style duration ("30s", "5m", "1h"). Raises ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"must be seconds or a duration such as \"5m\", not {value!r}")
    if isinstance(value, str):
        number, unit = (value[:-1], DURATION_UNITS[value[-1]]) if value[-1:] in DURATION_UNITS else (value, 1)
        if len(value) > 20 or not number.replace(".", "", 1).isdigit():
            raise ValueError(f"must be seconds or a duration such as \"30s\", \"5m\" or \"1h\", not {value!r}")
        value = float(number) * unit
    if not 0 <= value <= 7 * 86400:
        raise ValueError(f"must be from 0 (off) to 7 days, not {value!r} seconds")
    return float(value)


def _apply_alerts(settings: GatewaySettings, raw: Any, checker: _Checker) -> None:
    """`[alerts]`: the de-duplication window, the SMS priority, and `[alerts.receivers.<name>]` (`to`: numbers,
    checked now with the gateway's default region; `groups`: address-book groups, which may be made later)."""
    from modemgw import numbers
    from modemgw.settings import AlertReceiver

    if not isinstance(raw, dict):
        raise checker.fail(None, "alerts", "must be written as an [alerts] table")
    checker.table(raw, "alerts", ALERT_OPTIONS)
    alerts = settings.alerts
    if "group_interval" in raw:
        try:
            alerts.group_interval = parse_duration(raw["group_interval"])
        except ValueError as error:
            raise checker.fail("alerts", "group_interval", str(error)) from None
    if "priority" in raw:
        if raw["priority"] > 100:
            raise checker.fail("alerts", "priority", f"must be from 0 to 100, not {raw['priority']}")
        alerts.priority = raw["priority"]
    for name, item in raw.get("receivers", {}).items():
        where = f"receivers.{name}"
        if not isinstance(item, dict):
            raise checker.fail("alerts", where, "must be a table with `to` and/or `groups`")
        checker.table(item, f"alerts.{where}", ALERT_RECEIVER_OPTIONS)
        to, groups = item.get("to", []), item.get("groups", [])
        if not to and not groups:
            raise checker.fail("alerts", where, "needs `to` (phone numbers) and/or `groups` (address-book groups)")
        if not all(isinstance(group, str) and 0 < len(group) <= 100 for group in groups):
            raise checker.fail("alerts", where, f"groups must be a list of group names, not {groups!r}")
        normalized = []
        for number in to:
            try:
                normalized.append(numbers.normalize(number if isinstance(number, str) else repr(number),
                                                    settings.default_region, settings.strict_numbers))
            except numbers.NumberError as error:
                raise checker.fail("alerts", where, f"to: {error}") from None
        alerts.receivers[name] = AlertReceiver(tuple(normalized), tuple(groups))


def parse_listen(listen: str, checker: _Checker | None = None) -> tuple[str, int]:
    host, separator, port = listen.rpartition(":")
    if not separator or not port.isdigit() or not 0 <= int(port) <= 65535:
        problem = f"must be HOST:PORT (e.g. 0.0.0.0:8080), not {listen!r}"
        raise (checker.fail("http", "listen", problem) if checker else ConfigError(f"listen {problem}"))
    return host.strip("[]") or "0.0.0.0", int(port)


def parse_trusted_proxies(items: list, checker: _Checker | None = None) -> tuple:
    """`[http] trusted_proxies`: addresses and networks ("127.0.0.1", "10.0.0.0/8", "::1") as ipaddress networks."""
    import ipaddress

    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except (TypeError, ValueError):
            problem = f"must be a list of addresses or networks such as \"127.0.0.1\" or \"10.0.0.0/8\", not {item!r}"
            raise (checker.fail("http", "trusted_proxies", problem) if checker
                   else ConfigError(f"trusted_proxies {problem}")) from None
    return tuple(networks)


EMAIL_OPTIONS: dict[str, type | tuple] = {
    "listen": str, "domain": str, "allowed_senders": list, "allowed_networks": list, "auth": bool,
    "loopback_auth_without_tls": bool, "tls_certificate": str, "tls_key": str, "text": str, "max_size": int,
}
EMAIL_TEXT_MODES = ("body", "subject", "both")


def parse_email(raw: Any, checker: _Checker | None = None) -> EmailSettings:
    """`[email]`: the embedded SMTP server (modemgw.email_gateway). Nobody may send through it unless something
    says who: with no `allowed_networks`, only loopback clients may (or, with `auth`, anyone who logs in)."""
    import ipaddress

    checker = checker or _Checker(None, "")
    if not isinstance(raw, dict):
        raise checker.fail(None, "email", "must be written as an [email] table")
    checker.table(raw, "email", EMAIL_OPTIONS)
    email = EmailSettings()
    if "listen" in raw:
        try:
            parse_listen(raw["listen"])
        except ConfigError:
            raise checker.fail("email", "listen", f"must be HOST:PORT (e.g. 127.0.0.1:2525), not {raw['listen']!r}") \
                from None
        email.listen = raw["listen"]
    if "domain" in raw:
        domain = raw["domain"].strip().lower().rstrip(".")
        if not domain or len(domain) > 253 or "@" in domain or any(char.isspace() for char in domain):
            raise checker.fail("email", "domain", f"must be a mail domain such as \"sms.example.com\", not "
                                                  f"{raw['domain']!r}")
        email.domain = domain
    senders = raw.get("allowed_senders", [])
    for sender in senders:
        if not isinstance(sender, str) or not 3 <= len(sender) <= 254 or "@" not in sender[:-1] \
                or any(char.isspace() for char in sender):
            raise checker.fail("email", "allowed_senders", "must be a list of addresses (\"alarm@example.com\") or "
                                                           f"domains (\"@example.com\"), not {sender!r}")
    email.allowed_senders = tuple(sender.lower() for sender in senders)
    if "allowed_networks" in raw:
        networks = []
        for item in raw["allowed_networks"]:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except (TypeError, ValueError):
                raise checker.fail("email", "allowed_networks", "must be a list of addresses or networks such as "
                                                                f"\"192.168.1.0/24\", not {item!r}") from None
        if not networks:
            raise checker.fail("email", "allowed_networks", "is empty, so nobody could send: list networks such as "
                                                            "\"192.168.1.0/24\", or leave it out (loopback only)")
        email.allowed_networks = tuple(networks)
    email.auth = raw.get("auth", email.auth)
    email.loopback_auth_without_tls = raw.get("loopback_auth_without_tls", email.loopback_auth_without_tls)
    email.tls_certificate, email.tls_key = raw.get("tls_certificate"), raw.get("tls_key")
    if bool(email.tls_certificate) != bool(email.tls_key):
        raise checker.fail("email", "tls_certificate" if email.tls_key else "tls_key",
                           "is needed too: STARTTLS needs both tls_certificate and tls_key (PEM files)")
    if email.auth and not email.tls_certificate and not email.loopback_auth_without_tls:
        raise checker.fail("email", "auth", "needs tls_certificate and tls_key (AUTH is only accepted over "
                                            "STARTTLS), or loopback_auth_without_tls = true for local clients")
    if "text" in raw:
        if raw["text"] not in EMAIL_TEXT_MODES:
            raise checker.fail("email", "text", f"must be one of {', '.join(EMAIL_TEXT_MODES)}, not {raw['text']!r}")
        email.text = raw["text"]
    if "max_size" in raw:
        if not 1024 <= raw["max_size"] <= 1024 * 1024:  # parsing costs ~10 us a byte: a mail is no upload
            raise checker.fail("email", "max_size", f"must be from 1024 to 1048576 bytes (1 MB), not "
                                                    f"{raw['max_size']}")
        email.max_size = raw["max_size"]
    return email


SMTP_OPTIONS: dict[str, type | tuple] = {"host": str, "port": int, "starttls": bool, "username": str,
                                         "password": str, "from": str, "timeout": (int, float)}


def parse_smtp(raw: Any, checker: _Checker | None = None) -> SmtpSettings:
    """`[smtp]`: the relay e-mails go out through (modemgw.mail). Raises ConfigError."""
    checker = checker or _Checker(None, "")
    if not isinstance(raw, dict):
        raise checker.fail(None, "smtp", "must be written as an [smtp] table")
    checker.table(raw, "smtp", SMTP_OPTIONS)
    smtp = SmtpSettings(host=raw.get("host") or None, port=raw.get("port", 25), starttls=raw.get("starttls", False),
                        username=raw.get("username") or None, password=raw.get("password"),
                        from_address=raw.get("from") or None, timeout=float(raw.get("timeout", 30)))
    if smtp.host is not None and (len(smtp.host) > 253 or any(char <= " " or char in "/@" for char in smtp.host)):
        raise checker.fail("smtp", "host", f"must be a host name or address such as \"mail.example.com\", "
                                           f"not {smtp.host!r}")
    if not 1 <= smtp.port <= 65535:
        raise checker.fail("smtp", "port", f"must be from 1 to 65535 (25, or 587 with starttls), not {smtp.port}")
    if not 0 < smtp.timeout <= 600:
        raise checker.fail("smtp", "timeout", f"must be more than 0 and at most 600 seconds, not {smtp.timeout:g}")
    if smtp.username and smtp.password is None:
        raise checker.fail("smtp", "username", "needs a password too")
    if smtp.from_address is not None:
        local, at, domain = smtp.from_address.rpartition("@")
        if not at or not local or "." not in domain and domain != "localhost" or any(
                char <= " " or char in "<>,;\"" for char in smtp.from_address):
            raise checker.fail("smtp", "from", f"must be an e-mail address such as \"sms@example.com\", "
                                               f"not {smtp.from_address!r}")
    return smtp


SMPP_OPTIONS: dict[str, type | tuple] = {
    "listen": str, "system_type": str, "window": int, "enquire_link_timeout": (int, float),
    "bind_timeout": (int, float), "max_sessions": int, "resend_timeout": (int, float),
    "assembly_timeout": (int, float),
}
SMPP_LIMITS: dict[str, tuple[float, float, str]] = {  # option: (lowest, highest, unit)
    "window": (1, 1000, "requests"), "enquire_link_timeout": (5, 3600, "seconds"), "bind_timeout": (1, 600, "seconds"),
    "max_sessions": (1, 1000, "sessions"), "resend_timeout": (1, 3600, "seconds"),
    "assembly_timeout": (1, 3600, "seconds"),
}


def parse_smpp(raw: Any, checker: _Checker | None = None) -> SmppSettings:
    """`[smpp]`: the SMPP 3.4 server (modemgw.smpp). Off without `listen`; who may bind is the list of
    `modemgw smpp-users`. Raises ConfigError."""
    checker = checker or _Checker(None, "")
    if not isinstance(raw, dict):
        raise checker.fail(None, "smpp", "must be written as an [smpp] table")
    checker.table(raw, "smpp", SMPP_OPTIONS)
    smpp = SmppSettings()
    if "listen" in raw:
        try:
            parse_listen(raw["listen"])
        except ConfigError:
            raise checker.fail("smpp", "listen", f"must be HOST:PORT (e.g. 0.0.0.0:2775), not {raw['listen']!r}") \
                from None
        smpp.listen = raw["listen"]
    if "system_type" in raw:
        if not 0 < len(raw["system_type"]) <= 12 or not raw["system_type"].isascii():
            raise checker.fail("smpp", "system_type", f"must be 1 to 12 ASCII characters (a bind's system_type), not "
                                                      f"{raw['system_type']!r}")
        smpp.system_type = raw["system_type"]
    for name, (lowest, highest, unit) in SMPP_LIMITS.items():
        if name in raw:
            if not lowest <= raw[name] <= highest:
                raise checker.fail("smpp", name, f"must be from {lowest:g} to {highest:g} {unit}, not {raw[name]!r}")
            setattr(smpp, name, type(getattr(smpp, name))(raw[name]))
    return smpp
