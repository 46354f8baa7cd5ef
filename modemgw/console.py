"""An interactive AT console for diagnostics, built on the same link as the daemon.

Plain text for an 80x24 serial terminal: no colour, no cursor tricks. Each reply shows its final result and
how long it took; URCs are printed as they arrive, marked `URC` so they never pass for a reply. After a
`> ` prompt (AT+CMGS, AT+CMGW) the next line typed is sent with Ctrl-Z; an empty line cancels with ESC.
Input and output streams are parameters, so tests and other programs can drive it.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from modemgw import at
from modemgw.errors import ModemError, PortLost
from modemgw.link import Reply

HELP = """\
Type AT commands as on any terminal (AT+CSQ, AT+CGSN, AT+CMGL=4, ...).
After '> ' type the PDU (or text in text mode) and Enter; an empty line cancels.
Commands of the console itself: help, timeout SECONDS, exit (or Ctrl-D)."""

PROMPT_COMMANDS = ("AT+CMGS=", "AT+CMGW")
PROMPT = "AT> "


class ConsoleLink(Protocol):
    """What the console needs of a link: a `Link` on an open port, or a `GatewayLink` through the daemon."""

    name: str

    def command(self, command: str, timeout: float, *, check: bool = ...) -> Reply: ...

    def prompt_command(self, command: str, payload: Any, timeout: float = ..., prompt_timeout: float = ...,
                       check: bool = ...) -> Reply: ...

    def close(self) -> None: ...


class Console:
    """Reads commands from `stdin`, runs them on `link`, writes what happens to `stdout`."""

    def __init__(self, link: ConsoleLink, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout, timeout: float = 10.0,
                 history_file: str | None = None):
        self.link = link
        self.stdin = stdin
        self.stdout = stdout
        self.timeout = timeout
        self._write_lock = threading.Lock()
        self._interactive = stdin.isatty() if hasattr(stdin, "isatty") else False
        self._readline: Any = None
        if self._interactive:
            self._setup_history(history_file)

    def _setup_history(self, history_file: str | None) -> None:
        try:
            import readline
        except ImportError:  # some Pythons are built without it; the console works, minus history
            return
        self._readline = readline
        self._history = history_file or os.path.expanduser("~/.modemgw_console_history")
        try:
            readline.read_history_file(self._history)
        except OSError:
            pass

    def say(self, text: str) -> None:
        with self._write_lock:
            self.stdout.write(text + "\n")
            self.stdout.flush()

    def on_urc(self, urc: at.Urc) -> None:
        """Print a URC as it arrives; at an interactive prompt, on its own line with the input redrawn."""
        text = f"URC  {urc.line}" + (f"\nURC  {urc.pdu}" if urc.pdu else "")
        if self._readline is None:
            self.say(text)
            return
        with self._write_lock:
            self.stdout.write("\r" + text + "\n" + PROMPT + self._readline.get_line_buffer())
            self.stdout.flush()

    def _read(self, prompt: str) -> str | None:
        if self._interactive:
            try:
                return input(prompt)
            except EOFError:
                return None
        line = self.stdin.readline()
        if not line:
            return None
        return line.rstrip("\r\n")

    def _payload(self) -> Callable[[], str | None]:
        def ask() -> str | None:
            if not self._interactive:
                self.say("> ")
            text = self._read("> ")
            return text if text else None
        return ask

    def run(self) -> int:
        """The read-eval-print loop; returns an exit status (1 when the port was lost)."""
        self.say(f"modemgw console on {self.link.name}. 'help' for help, 'exit' or Ctrl-D to quit.")
        while True:
            line = self._read(PROMPT if self._interactive else "")
            if line is None:
                break
            line = line.strip()
            if not line:
                continue
            if self._interactive and self._readline is not None:
                try:
                    self._readline.write_history_file(self._history)
                except OSError:
                    pass
            lowered = line.lower()
            if lowered in ("exit", "quit"):
                break
            if lowered == "help":
                self.say(HELP)
                continue
            if lowered.startswith("timeout"):
                self._set_timeout(line)
                continue
            if not lowered.startswith("at") and line != "A/":
                self.say("not an AT command; 'help' for help")
                continue
            if not self.execute(line):
                return 1
        return 0

    def _set_timeout(self, line: str) -> None:
        try:
            self.timeout = float(line.split()[1])
            self.say(f"timeout {self.timeout:g} s")
        except (IndexError, ValueError):
            self.say("usage: timeout SECONDS")

    def execute(self, command: str) -> bool:
        """Run one command and print its reply; False when the port is gone."""
        try:
            if command.upper().startswith(PROMPT_COMMANDS):
                reply = self.link.prompt_command(command, self._payload(), timeout=self.timeout,
                                                 prompt_timeout=self.timeout, check=False)
            else:
                reply = self.link.command(command, self.timeout, check=False)
        except PortLost as error:
            self.say(f"port lost: {error}")
            return False
        except Refused as error:
            self.say(str(error))
            return True
        except ModemError as error:
            self.say(f"no answer: {error}")
            return True
        for line in reply.lines:
            self.say(line)
        self.say(f"{reply.final or '(no final result)'}  ({reply.elapsed * 1000:.0f} ms)")
        return True


class Refused(ModemError):
    """The gateway would not run this command (it owns the port; prompt commands go through the messages API)."""


class GatewayLink:
    """A console's link to a modem the running gateway owns: each line goes through the control socket and runs
    on the modem's worker, between the gateway's own commands. URCs stay with the gateway."""

    def __init__(self, data_dir, modem: str, request):
        self.data_dir = data_dir
        self.modem = modem
        self.request = request   # control_request(data_dir, request, timeout)
        self.name = f"{modem} (through the running gateway; URCs are handled by it)"

    def command(self, command: str, timeout: float, *, check: bool = False) -> Reply:
        try:
            reply = self.request(self.data_dir, {"command": "at", "modem": self.modem, "line": command,
                                                 "timeout": timeout}, timeout + 40)
        except ConnectionError as error:
            raise PortLost(f"the gateway went away: {error}") from None
        if not reply.get("ok"):
            raise Refused(reply.get("error", "refused"))
        return Reply(command, reply["lines"], reply["final"], reply["elapsed"])

    def prompt_command(self, command: str, payload: Any, timeout: float = 60.0, prompt_timeout: float = 5.0,
                       check: bool = True) -> Reply:
        raise Refused("commands that wait for a '> ' prompt are not available while the gateway owns the modem; "
                      "send through the messages API, or stop the gateway and open the port itself")

    def close(self) -> None:
        pass
