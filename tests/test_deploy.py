"""The appliance's deployment files: udev rules, the systemd unit, install.sh and uninstall.sh.

Nothing here touches the machine it runs on: the unit is verified from a copy, the rules are checked by a parser
and run through a small evaluator written here, and install.sh / uninstall.sh work in a temporary DESTDIR.
Programs from Debian packages (systemd-analyze, shellcheck) skip when missing, except under CI (.ci/run installs
them), where a missing one is a failure.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import require

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "udev" / "99-modemgw.rules"
DEPLOY = ROOT / "deploy" / "raspberrypi"
UNIT = DEPLOY / "modemgw.service"
INSTALL = DEPLOY / "install.sh"
UNINSTALL = DEPLOY / "uninstall.sh"


# --------------------------------------------------------------------------------------------------------------
# udev rules: a parser as strict as udev (systemd 252) where it matters, stricter where udev only warns.

MATCH = frozenset({"==", "!="})
ASSIGN = frozenset({"=", "+=", "-=", ":="})
# key: (attribute: "required" | "optional" | "none", allowed operators)
KEYS: dict[str, tuple[str, frozenset[str]]] = {
    **{key: ("none", MATCH) for key in ("ACTION", "DEVPATH", "KERNEL", "SUBSYSTEM", "DRIVER", "KERNELS",
                                        "SUBSYSTEMS", "DRIVERS", "TAGS", "RESULT")},
    "ATTRS": ("required", MATCH), "CONST": ("required", MATCH), "TEST": ("optional", MATCH),
    "ATTR": ("required", MATCH | {"="}), "SYSCTL": ("required", MATCH | {"="}),
    "ENV": ("required", MATCH | {"=", "+="}),
    "TAG": ("none", MATCH | ASSIGN), "SYMLINK": ("none", MATCH | ASSIGN), "NAME": ("none", MATCH | {"=", ":="}),
    "OWNER": ("none", frozenset({"=", ":="})), "GROUP": ("none", frozenset({"=", ":="})),
    "MODE": ("none", frozenset({"=", ":="})), "OPTIONS": ("none", frozenset({"=", "+=", ":="})),
    "SECLABEL": ("required", frozenset({"=", "+=", ":="})), "RUN": ("optional", frozenset({"=", "+=", ":="})),
    "IMPORT": ("required", MATCH | {"=", "+="}), "PROGRAM": ("none", MATCH | {"="}),
    "LABEL": ("none", frozenset({"="})), "GOTO": ("none", frozenset({"="})),
}
ATTRIBUTES = {"IMPORT": {"program", "builtin", "file", "db", "cmdline", "parent"}, "RUN": {"program", "builtin"},
              "CONST": {"arch", "virt"}}
# Keys that act even when written with a match operator: a line of nothing else still does something.
ACTING = {"IMPORT", "PROGRAM"}

KEY = re.compile(r"[A-Z_]+")
ATTRIBUTE = re.compile(r"\{([^{}\"\s]*)\}")
OPERATOR = re.compile(r"==|!=|\+=|-=|:=|=(?![=~!<>])")
VALUE = re.compile(r'"((?:[^"\\]|\\.)*)"')


class RuleError(ValueError):
    pass


@dataclass
class Token:
    key: str
    attribute: str | None
    operator: str
    value: str


@dataclass
class Rule:
    line: int
    tokens: list[Token] = field(default_factory=list)


def parse_rules(text: str) -> list[Rule]:
    """The rules of a udev rules file; RuleError names the line of the first mistake."""
    logical: list[tuple[int, str]] = []
    pending, start = "", 0
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1]
            if number == len(lines) or (number == len(lines) - 1 and lines[-1] == ""):
                raise RuleError(f"line {number}: line continuation at the end of the file")
            continue
        logical.append((start, pending + line))
        pending = ""
    rules = []
    for number, line in logical:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        rules.append(_parse_line(number, line))
    labels: dict[str, int] = {}
    for rule in rules:
        for token in rule.tokens:
            if token.key == "LABEL":
                labels.setdefault(token.value, rule.line)
    for rule in rules:
        for token in rule.tokens:
            if token.key == "GOTO" and labels.get(token.value, 0) <= rule.line:
                raise RuleError(f"line {rule.line}: GOTO=\"{token.value}\" has no LABEL after it")
    return rules


def _parse_line(number: int, line: str) -> Rule:
    rule, position = Rule(number), 0

    def fail(problem: str) -> RuleError:
        return RuleError(f"line {number}, column {position + 1}: {problem}: {line.strip()!r}")

    while True:
        while position < len(line) and line[position] in " \t":
            position += 1
        key = KEY.match(line, position)
        if key is None:
            raise fail("expected a KEY")
        name, position = key.group(), key.end()
        if name not in KEYS:
            raise fail(f"unknown key {name}")
        attribute = ATTRIBUTE.match(line, position)
        if attribute:
            position = attribute.end()
        wants_attribute, operators = KEYS[name]
        if wants_attribute == "required" and not (attribute and attribute.group(1)):
            raise fail(f"{name} needs an {{attribute}}")
        if wants_attribute == "none" and attribute:
            raise fail(f"{name} takes no {{attribute}}")
        if attribute and name in ATTRIBUTES and attribute.group(1) not in ATTRIBUTES[name]:
            raise fail(f"{name}{{{attribute.group(1)}}} is not one of {sorted(ATTRIBUTES[name])}")
        while position < len(line) and line[position] in " \t":
            position += 1
        operator = OPERATOR.match(line, position)
        if operator is None:
            raise fail(f"expected an operator (== != = += -= :=) after {name}")
        if operator.group() not in operators:
            kind = "a match" if operators <= MATCH else "an assignment" if not operators & MATCH else "this"
            raise fail(f"{name} is {kind} key and takes {' '.join(sorted(operators))}, not {operator.group()}")
        position = operator.end()
        while position < len(line) and line[position] in " \t":
            position += 1
        value = VALUE.match(line, position)
        if value is None:
            raise fail(f"{name} needs a double-quoted value, closed on the same line")
        position = value.end()
        rule.tokens.append(Token(name, attribute.group(1) if attribute else None, operator.group(),
                                 value.group(1).replace('\\"', '"')))
        while position < len(line) and line[position] in " \t":
            position += 1
        if position == len(line):
            break
        if line[position] != ",":
            raise fail("expected ',' between KEY=\"value\" pairs (a comment must be on a line of its own)")
        position += 1
        if not line[position:].strip():
            raise fail("a ',' ends the line")
    if all(token.operator in MATCH and token.key not in ACTING for token in rule.tokens):
        raise RuleError(f"line {number}: only matches, no action: the line has no effect: {line.strip()!r}")
    return rule


# A small evaluator for what our rules use: it runs a parsed rules file against a described device the way udev
# does (all of a line's matches, then its imports, then its assignments; GOTO last).

@dataclass
class Device:
    kernel: str
    subsystem: str = "tty"
    action: str = "add"
    parent_subsystems: tuple[str, ...] = ("usb-serial", "usb", "usb", "pci", "platform")
    env: dict[str, str] = field(default_factory=dict)
    builtins: dict[str, dict[str, str]] = field(default_factory=dict)
    symlinks: list[str] = field(default_factory=list)
    group: str | None = None
    mode: str | None = None


def _pattern_matches(pattern: str, value: str) -> bool:
    return any(fnmatch.fnmatchcase(value, alternative) if alternative else value == ""
               for alternative in pattern.split("|"))


def _substitute(value: str, device: Device) -> str:
    def environment(match: re.Match) -> str:
        return device.env.get(match.group(1), "")

    value = re.sub(r"\$env\{([^}]*)\}", environment, value)
    if "$" in value or "%" in value:
        raise AssertionError(f"the evaluator does not know the substitution in {value!r}")
    return value


def evaluate(rules: list[Rule], device: Device) -> Device:
    index, labels = 0, {token.value: i for i, rule in enumerate(rules) for token in rule.tokens
                        if token.key == "LABEL"}
    while index < len(rules):
        rule, index = rules[index], index + 1
        if not all(_match(token, device) for token in rule.tokens if token.operator in MATCH
                   and token.key != "IMPORT"):
            continue
        for token in rule.tokens:
            if token.key == "IMPORT":
                assert token.attribute == "builtin", "the evaluator imports builtins only"
                device.env.update(device.builtins.get(token.value, {}))
        for token in rule.tokens:
            if token.operator in MATCH or token.key in ("IMPORT", "LABEL", "GOTO"):
                continue
            value = _substitute(token.value, device)
            if token.key == "ENV":
                device.env[token.attribute] = value
            elif token.key == "SYMLINK" and token.operator == "+=":
                device.symlinks.extend(value.split())
            elif token.key == "GROUP":
                device.group = value
            elif token.key == "MODE":
                device.mode = value
            else:
                raise AssertionError(f"the evaluator does not know {token.key}{token.operator}")
        for token in rule.tokens:
            if token.key == "GOTO":
                index = labels[token.value]
    return device


def _match(token: Token, device: Device) -> bool:
    if token.key == "SUBSYSTEMS":
        matched = any(_pattern_matches(token.value, name) for name in (device.subsystem,) + device.parent_subsystems)
    else:
        value = {"ACTION": device.action, "SUBSYSTEM": device.subsystem, "KERNEL": device.kernel}.get(token.key)
        if token.key == "ENV":
            value = device.env.get(token.attribute, "")
        if value is None:
            raise AssertionError(f"the evaluator does not know the match key {token.key}")
        matched = _pattern_matches(token.value, value)
    return matched if token.operator == "==" else not matched


def usb_device(kernel="ttyUSB2", vendor="12d1", product="1506", serial="0123456789AB", interface="02",
               path_tag="platform-fd500000_pcie-pci-0000_01_00_0-usb-0_1_2_1_2", **options) -> Device:
    """A tty of a USB modem, with what the usb_id and path_id builtins would report for it."""
    usb_id = {"ID_BUS": "usb", "ID_VENDOR_ID": vendor, "ID_MODEL_ID": product, "ID_USB_INTERFACE_NUM": interface}
    if serial:
        usb_id["ID_SERIAL_SHORT"] = serial
    path_id = {"ID_PATH": path_tag.replace("_", ":"), "ID_PATH_TAG": path_tag}
    return Device(kernel, builtins={"usb_id": usb_id, "path_id": path_id}, **options)


def test_udev_rules_are_valid():
    """The shipped rules pass the parser, and udevadm verify where the system has it (systemd 253 and newer)."""
    rules = parse_rules(RULES.read_text())
    assert any(token.key == "SYMLINK" for rule in rules for token in rule.tokens)
    udevadm = shutil.which("udevadm")
    if udevadm and subprocess.run([udevadm, "verify", "--help"], capture_output=True).returncode == 0:
        result = subprocess.run([udevadm, "verify", "--resolve-names=never", str(RULES)], capture_output=True,
                                text=True)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("text, problem", [
    ('KERNEL=="ttyUSB*", GROUP="dialout" # modems\n', "between"),
    ('KERNEL=="ttyUSB*" GROUP="dialout"\n', "between"),
    ('KERNEL=="ttyUSB*", GROUP="dialout",\n', "ends the line"),
    ('FOO=="1", GROUP="dialout"\n', "unknown key FOO"),
    ('kernel=="ttyUSB*", GROUP="dialout"\n', "expected a KEY"),
    ('KERNEL="ttyUSB*", GROUP="dialout"\n', "KERNEL is a match key"),
    ('KERNEL=="ttyUSB*", GROUP=="dialout"\n', "GROUP is an assignment key"),
    ('KERNEL=~"ttyUSB*", GROUP="dialout"\n', "expected an operator"),
    ('ENV{X}-="1"\n', "ENV is this key"),
    ('ENV=="1", GROUP="dialout"\n', "ENV needs an {attribute}"),
    ('KERNEL{x}=="1", GROUP="dialout"\n', "KERNEL takes no {attribute}"),
    ('IMPORT="usb_id"\n', "IMPORT needs an {attribute}"),
    ('IMPORT{builtn}="usb_id"\n', "is not one of"),
    ('KERNEL=="ttyUSB*", MODE="0660\n', "double-quoted value"),
    ("KERNEL=='ttyUSB*', MODE=\"0660\"\n", "double-quoted value"),
    ('KERNEL=="ttyUSB*", GOTO="nowhere"\nLABEL="elsewhere"\n', "no LABEL after it"),
    ('LABEL="end"\nKERNEL=="ttyUSB*", GOTO="end"\n', "no LABEL after it"),
    ('KERNEL=="ttyUSB*", SUBSYSTEM=="tty"\n', "no effect"),
    ('KERNEL=="ttyUSB*", \\\n', "continuation at the end"),
])
def test_udev_parser_rejects_broken_rules(text, problem):
    with pytest.raises(RuleError, match=re.escape(problem)):
        parse_rules(text)


def test_udev_parser_accepts_what_udev_accepts():
    rules = parse_rules('# comment\n\n  KERNEL == "ttyUSB*" ,  GROUP = "dialout"\n'
                        'SUBSYSTEM=="tty", \\\n    ENV{X}="a \\"quoted\\" word", GOTO="end"\n'
                        'ATTRS{idVendor}=="12d1", IMPORT{builtin}=="usb_id", TAG+="systemd", '
                        'RUN{program}+="/bin/true"\n'
                        'LABEL="end"\n')
    assert [rule.line for rule in rules] == [3, 4, 6, 7]
    assert rules[1].tokens[1] == Token("ENV", "X", "=", 'a "quoted" word')


def test_udev_names_by_serial_number():
    device = evaluate(parse_rules(RULES.read_text()), usb_device())
    assert device.symlinks == ["modemgw/12d1-1506-0123456789AB-if02"]
    assert (device.group, device.mode) == ("dialout", "0660")
    assert device.env["ID_MM_DEVICE_IGNORE"] == "1" and device.env["ID_MM_PORT_IGNORE"] == "1"


def test_udev_names_by_usb_port_without_serial_number():
    device = evaluate(parse_rules(RULES.read_text()),
                      usb_device("ttyUSB3", vendor="2c7c", product="0125", serial="", interface="03",
                                 path_tag="platform-fd500000_pcie-pci-0000_01_00_0-usb-0_1_3_1_3"))
    assert device.symlinks == ["modemgw/2c7c-0125-path-platform-fd500000_pcie-pci-0000_01_00_0-usb-0_1_3_1_3-if03"]
    assert device.env["ID_MM_DEVICE_IGNORE"] == "1"


def test_udev_names_by_usb_port_on_request():
    """Modems of one model that all report the same serial number: a local rule sets MODEMGW_BY_PATH=1."""
    device = evaluate(parse_rules(RULES.read_text()), usb_device(kernel="ttyACM0", env={"MODEMGW_BY_PATH": "1"}))
    assert device.symlinks == ["modemgw/12d1-1506-path-platform-fd500000_pcie-pci-0000_01_00_0-usb-0_1_2_1_2-if02"]


def test_udev_leaves_other_serial_devices_alone_unless_asked():
    rules = parse_rules(RULES.read_text())
    ftdi = evaluate(rules, usb_device(vendor="0403", product="6001", serial="A10KZ3F1", interface="00"))
    assert ftdi.symlinks == [] and ftdi.group is None and "ID_MM_DEVICE_IGNORE" not in ftdi.env
    opted_in = evaluate(rules, usb_device(vendor="0403", product="6001", serial="A10KZ3F1", interface="00",
                                          env={"MODEMGW_ANY": "1"}))
    assert opted_in.symlinks == ["modemgw/0403-6001-A10KZ3F1-if00"]
    local = evaluate(rules, usb_device(vendor="05c6", product="9091", serial="", interface="02",
                                       env={"MODEMGW_MODEM": "1"}))
    assert local.symlinks == ["modemgw/05c6-9091-path-platform-fd500000_pcie-pci-0000_01_00_0-usb-0_1_2_1_2-if02"]


@pytest.mark.parametrize("device", [
    usb_device(action="remove"),
    usb_device(kernel="ttyS0"),
    usb_device(subsystem="usb"),
    Device("ttyUSB0", parent_subsystems=("platform",)),
], ids=["remove", "not-usb-serial", "not-tty", "no-usb-parent"])
def test_udev_ignores_what_is_not_a_modem_port(device):
    assert evaluate(parse_rules(RULES.read_text()), device).symlinks == []


# --------------------------------------------------------------------------------------------------------------
# The systemd unit.

def test_unit_passes_systemd_analyze_verify(tmp_path):
    analyze = require("systemd-analyze", "systemd")
    executable = Path(sys.executable).parent / "modemgw"
    executable = str(executable) if executable.exists() else shutil.which("modemgw")
    assert executable and os.access(executable, os.X_OK), "ExecStart needs the modemgw script of this environment"
    text = UNIT.read_text()
    assert "ExecStart=/opt/modemgw/venv/bin/modemgw serve " in text
    unit = tmp_path / "modemgw.service"
    unit.write_text(text.replace("ExecStart=/opt/modemgw/venv/bin/modemgw", f"ExecStart={executable}"))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                            env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"})
    about_unit = [line for line in (result.stdout + result.stderr).splitlines() if "modemgw" in line]
    assert result.returncode == 0 and about_unit == [], result.stdout + result.stderr


def test_unit_security_exposure_is_no_worse_than_recorded(tmp_path):
    """`systemd-analyze security` rated the unit 1.9 before [2/8] (issue 13) and 1.6 after it; it must not slip."""
    analyze = require("systemd-analyze", "systemd")
    unit = tmp_path / "modemgw.service"
    unit.write_text(UNIT.read_text().replace("ExecStart=/opt/modemgw/venv/bin/modemgw", f"ExecStart={sys.executable}"))
    result = subprocess.run([analyze, "security", "--offline=true", str(unit)], capture_output=True, text=True)
    overall = [line for line in result.stdout.splitlines() if "Overall exposure level" in line]
    assert overall, result.stdout + result.stderr
    score = float(overall[0].split(":")[1].split()[0])
    assert score <= 1.6, overall[0]
    settings = unit_settings()
    assert settings["MemoryMax"] and settings["TasksMax"] and settings["ProcSubset"] == ["pid"]
    assert settings["UMask"] == ["0077"]  # the database (session secret, messages) is the service user's alone


def test_unit_verify_would_catch_a_mistake(tmp_path):
    """The check above is not vacuous: a misspelt directive is reported on a line naming the unit."""
    analyze = require("systemd-analyze", "systemd")
    unit = tmp_path / "modemgw.service"
    unit.write_text(UNIT.read_text().replace("ExecStart=/opt/modemgw/venv/bin/modemgw", "ExecStart=/bin/true")
                    .replace("WatchdogSec=60", "WatchdogSecs=60"))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert any("modemgw.service" in line and "WatchdogSecs" in line for line in result.stderr.splitlines())


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_unit_runs_the_daemon_confined():
    settings = unit_settings()
    expected = {
        "Type": "notify", "NotifyAccess": "main", "User": "modemgw", "Group": "modemgw",
        "SupplementaryGroups": "dialout", "Restart": "on-failure", "WatchdogSec": "60", "TimeoutStartSec": "90",
        "ProtectSystem": "strict", "ReadWritePaths": "/var/lib/modemgw", "StateDirectory": "modemgw",
        "StateDirectoryMode": "0750", "ProtectHome": "true", "PrivateTmp": "true", "NoNewPrivileges": "true",
        "DevicePolicy": "closed", "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "KillSignal": "SIGTERM",
    }
    assert {key: settings.get(key, [None])[-1] for key in expected} == expected
    assert settings["ExecStart"] == ["/opt/modemgw/venv/bin/modemgw serve --config /etc/modemgw/config.toml"]
    assert settings["DeviceAllow"] == ["char-ttyUSB rw", "char-ttyACM rw"]
    # DeviceAllow= groups resolve through /proc/devices at start: their drivers are loaded before the service.
    assert "modprobe@usbserial.service" in " ".join(settings["After"])
    assert "modprobe@cdc_acm.service" in " ".join(settings["After"])
    assert "PrivateDevices" not in settings, "PrivateDevices= would hide modems plugged in after the start"


# --------------------------------------------------------------------------------------------------------------
# install.sh and uninstall.sh, into a temporary DESTDIR.

SHELL_SCRIPTS = [INSTALL, UNINSTALL]


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda path: path.name)
def test_scripts_are_clean_shell(script):
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True).returncode == 0
    shellcheck = require("shellcheck", "shellcheck")
    result = subprocess.run([shellcheck, str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert os.access(script, os.X_OK)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root with its type, mode, size, mtime (ns) and symlink target."""
    state = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        target = os.readlink(path) if path.is_symlink() else None
        state[str(path.relative_to(root))] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), info.st_size,
                                              info.st_mtime_ns, target)
    return state


def run_script(script: Path, destdir: Path, source: Path, *arguments: str, **environment) -> str:
    env = {**os.environ, "DESTDIR": str(destdir), "SOURCE": str(source), "PYTHON": sys.executable,
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", **environment}
    # From the repository's root, as an administrator would run it: its modemgw/ must not stand in for the venv's.
    result = subprocess.run(["bash", str(script), *arguments], capture_output=True, text=True, env=env, timeout=300,
                            cwd=ROOT)
    assert result.returncode == 0, f"{script.name} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A copy of the source tree, so that a test can change it (an upgrade) and nothing is built in the repo."""
    copy = tmp_path_factory.mktemp("source")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("pyproject.toml", "README.md", "LICENSE", "modemgw", "webui", "deploy", "udev"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, copy / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, copy / name)
    return copy


@pytest.fixture(scope="module")
def installed(tmp_path_factory, source) -> tuple[Path, str]:
    """install.sh run once into a fresh DESTDIR (a real venv with the project and its dependencies)."""
    destdir = tmp_path_factory.mktemp("root")
    return destdir, run_script(INSTALL, destdir, source)


def test_install_makes_the_expected_tree(installed):
    destdir, output = installed
    venv = destdir / "opt/modemgw/venv"
    version = subprocess.run([str(venv / "bin/modemgw"), "--version"], capture_output=True, text=True, check=True)
    assert "0.1.0" in version.stdout
    # the udev extra: hot-plug reacts to kernel events instead of waiting for the next re-read of the globs
    subprocess.run([str(venv / "bin/python"), "-I", "-c", "import pyudev"], check=True)
    for path in ("etc/modemgw/config.toml", "etc/udev/rules.d/99-modemgw.rules",
                 "etc/systemd/system/modemgw.service"):
        assert (destdir / path).is_file(), path
    assert (destdir / "etc/udev/rules.d/99-modemgw.rules").read_bytes() == RULES.read_bytes()
    assert (destdir / "etc/systemd/system/modemgw.service").read_bytes() == UNIT.read_bytes()
    assert stat.S_IMODE((destdir / "etc/modemgw/config.toml").stat().st_mode) == 0o640
    assert stat.S_IMODE((destdir / "var/lib/modemgw").stat().st_mode) == 0o750
    link = destdir / "usr/local/bin/modemgw"
    assert link.is_symlink() and os.readlink(link) == "/opt/modemgw/venv/bin/modemgw"
    assert "skipped    user modemgw (DESTDIR install)" in output
    assert "Next steps:" in output and "modemgw discover --write" in output and "modemgw doctor" in output


def test_install_configures_the_copied_example(installed, source):
    destdir, _ = installed
    path = destdir / "etc/modemgw/config.toml"
    example = (source / "deploy/config.example.toml").read_text().splitlines()
    changed = [line for line in path.read_text().splitlines() if line not in example]
    assert changed == ['ports = ["/dev/modemgw/*"]']
    # As the service will read it, with the installed package.
    check = ("import sys\nfrom modemgw import config\nc = config.load(sys.argv[1])\n"
             "print(c.pool.ports, c.data_dir)")
    result = subprocess.run([str(destdir / "opt/modemgw/venv/bin/python"), "-I", "-c", check, str(path)],
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "['/dev/modemgw/*'] /var/lib/modemgw"


def test_install_twice_changes_nothing(installed, source):
    destdir, _ = installed
    before = snapshot(destdir)
    output = run_script(INSTALL, destdir, source)
    assert snapshot(destdir) == before
    assert "source unchanged" in output and "kept       /etc/modemgw/config.toml" in output
    assert not re.search(r"^(created|updated|installed)", output, re.MULTILINE), output


def test_install_keeps_an_administrators_config(installed, source):
    destdir, _ = installed
    config = destdir / "etc/modemgw/config.toml"
    original = config.read_text()
    config.write_text(original + '\n[[modem]]\ndevice = "/dev/modemgw/12d1-1506-0123456789AB-if02"\n')
    try:
        output = run_script(INSTALL, destdir, source)
        assert "12d1-1506" in config.read_text() and "kept       /etc/modemgw/config.toml" in output
    finally:
        config.write_text(original)


def test_install_reports_a_config_that_does_not_load(installed, source):
    destdir, _ = installed
    config = destdir / "etc/modemgw/config.toml"
    original = config.read_text()
    config.write_text(original.replace('strategy = "least-used"', 'strategy = "fastest"'))
    try:
        env = {**os.environ, "DESTDIR": str(destdir), "SOURCE": str(source), "PYTHON": sys.executable}
        result = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 1
        assert re.search(r"^invalid .*config\.toml:\d+: \[gateway\] strategy must be one of", result.stdout,
                         re.MULTILINE), result.stdout
    finally:
        config.write_text(original)


@pytest.mark.parametrize("example, expected", [
    ('[gateway]\nstrategy = "round-robin"\n[http]\nlisten = "0.0.0.0:8080"\n',
     {"data_dir": "/var/lib/modemgw", "gateway": {"strategy": "round-robin", "ports": ["/dev/modemgw/*"]},
      "http": {"listen": "0.0.0.0:8080"}}),
    ('# nothing but a comment\n', {"data_dir": "/var/lib/modemgw", "gateway": {"ports": ["/dev/modemgw/*"]}}),
    ('data_dir = "/srv/sms"\n[http]\nlisten = "0.0.0.0:8080"\n[gateway]\nports = [\n  "/dev/ttyUSB*",\n]\n',
     {"data_dir": "/var/lib/modemgw", "http": {"listen": "0.0.0.0:8080"}, "gateway": {"ports": ["/dev/modemgw/*"]}}),
], ids=["no-ports", "empty", "multi-line-ports"])
def test_install_sets_ports_and_data_dir_in_any_example(installed, source, tmp_path, example, expected):
    """The example may change shape; the installed config still gets its ports and data_dir, and loads."""
    import tomllib

    from modemgw import config as configuration

    destdir, _ = installed
    variant = tmp_path / "source"
    shutil.copytree(source, variant, symlinks=True)
    (variant / "deploy/config.example.toml").write_text(example)
    config = destdir / "etc/modemgw/config.toml"
    original = config.read_text()
    config.unlink()
    try:
        # The package files are unchanged, so the venv is not rebuilt: only the config is written.
        output = run_script(INSTALL, destdir, variant)
        assert "source unchanged" in output
        assert tomllib.loads(config.read_text()) == expected
        configuration.load(config)
    finally:
        config.write_text(original)
        config.chmod(0o640)


def test_install_refuses_to_touch_the_system_without_root(tmp_path, source):
    command = ["bash", str(INSTALL)]
    if os.geteuid() == 0:
        setpriv = require("setpriv", "util-linux")
        command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    env = {key: value for key, value in os.environ.items() if key != "DESTDIR"}
    result = subprocess.run(command, capture_output=True, text=True, env={**env, "SOURCE": str(source)})
    assert result.returncode == 1
    assert "must run as root" in result.stderr and "DESTDIR" in result.stderr
    assert result.stdout == ""


def test_upgrade_then_uninstall(installed, source):
    """Last of the installed tests. A new version of the source is installed into the existing venv; uninstall.sh
    then removes the install but keeps config and data, and --purge removes those too."""
    destdir, _ = installed
    pyproject, package = source / "pyproject.toml", source / "modemgw/__init__.py"
    pyproject.write_text(pyproject.read_text().replace('version = "0.1.0.dev0"', 'version = "0.1.0.dev99"', 1))
    package.write_text(package.read_text().replace('__version__ = "0.1.0.dev0"', '__version__ = "0.1.0.dev99"', 1))
    venv = destdir / "opt/modemgw/venv"
    python_before = (venv / "bin/python").lstat()
    output = run_script(INSTALL, destdir, source)
    assert "installed  modemgw 0.1.0.dev99" in output and "created    /opt/modemgw/venv" not in output
    assert "kept       /etc/modemgw/config.toml" in output
    assert (venv / "bin/python").lstat().st_ino == python_before.st_ino
    version = subprocess.run([str(venv / "bin/modemgw"), "--version"], capture_output=True, text=True, check=True)
    assert "0.1.0.dev99" in version.stdout

    (destdir / "var/lib/modemgw/modemgw.db").write_bytes(b"messages")
    output = run_script(UNINSTALL, destdir, source)
    for path in ("opt/modemgw", "etc/udev/rules.d/99-modemgw.rules", "etc/systemd/system/modemgw.service",
                 "usr/local/bin/modemgw"):
        assert not (destdir / path).exists() and not (destdir / path).is_symlink(), path
    assert (destdir / "etc/modemgw/config.toml").is_file()
    assert (destdir / "var/lib/modemgw/modemgw.db").read_bytes() == b"messages"
    assert "kept       /var/lib/modemgw (uninstall.sh --purge deletes it)" in output

    run_script(UNINSTALL, destdir, source, "--purge")
    assert not (destdir / "etc/modemgw").exists() and not (destdir / "var/lib/modemgw").exists()


# --------------------------------------------------------------------------------------------------------------
# The documentation stays true to the files.

def test_udev_readme_rule_examples_parse():
    readme = (ROOT / "udev" / "README.md").read_text()
    examples = [block for block in re.findall(r"```sh\n(.*?)```", readme, re.S)
                if block.startswith("# /etc/udev/rules.d/")]
    assert len(examples) >= 3
    for block in examples:
        assert parse_rules(block), block


def test_deploy_readme_explains_every_line_of_the_unit():
    readme = (DEPLOY / "README.md").read_text()
    table = readme[readme.index("## The service and its hardening"):readme.index("### Watchdog")]
    unexplained = [key for key in unit_settings() if key not in table
                   and key not in ("Description", "ExecStart", "WantedBy")]
    assert unexplained == []
