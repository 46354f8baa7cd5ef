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
from modemgw.settings import GatewaySettings, ModemConfig, PoolSettings, Route


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
    data_dir: Path = Path("/var/lib/modemgw")
    source: Path | None = None


GATEWAY_OPTIONS: dict[str, type | tuple] = {
    "default_region": str, "strict_numbers": bool, "max_segments": int, "max_recipients": int,
    "stop_words": list, "start_words": list, "report_window_hours": (int, float),
    "report_deadline_hours": (int, float), "inbound_assembly_timeout": (int, float), "retry_base": (int, float),
    "retry_max": (int, float), "max_attempts": int, "retention_days": int,
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
        if section not in ("gateway", "http", "modem", "route", "data_dir"):
            raise checker.fail(None, section, "is not a section of the configuration (known: gateway, http, "
                                              "modem, route, data_dir)")
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
    return config


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
