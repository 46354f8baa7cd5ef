"""One serial port: a reader thread that frames lines (and the bare `> ` prompt), and one command at a time.

The only module that touches pyserial. The port is passed in open; the link never builds it.

Rules (docs/design.md, "AT engine rules"):
1. One command in flight; a prompt command (`AT+CMGS`) is one atomic step: command, `> `, payload + Ctrl-Z,
   final result. No prompt in time: ESC, then resynchronise.
2. URCs are recognised by prefix at every moment, also in the middle of a reply, and never join a reply.
3. A reply ends only on an anchored final result.
4. After any timeout the link is *dirty*: before the next command it sends `AT` and waits for an `OK` that no
   stray reply lines preceded, then for a quiet moment, so a late reply never reaches the next command. Tries
   alternate between ESC (on a write of its own) then CR AT, and a bare AT. Bytes are decoded with
   errors="replace"; nothing kills the reader.
5. A lost port fails the command in flight at once with PortLost, and every later one.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import serial

from modemgw import at
from modemgw.errors import ModemError, ModemTimeout, PortLost, PromptTimeout

log = logging.getLogger("modemgw.link")

CTRL_Z = b"\x1a"
ESC = b"\x1b"
_HEX_LINE = re.compile(r"[0-9A-Fa-f]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # never part of a modem's line (echoed ESC, NUL, ...)


@dataclass
class Reply:
    """A command's complete reply: information lines (URCs excluded) and the final result."""

    command: str
    lines: list[str]
    final: str
    elapsed: float

    @property
    def ok(self) -> bool:
        return self.final == "OK"

    def line(self, prefix: str) -> str | None:
        """The first information line starting with `prefix`."""
        return next((line for line in self.lines if line.startswith(prefix)), None)


@dataclass
class _InFlight:
    command: str
    expect: str | None
    ends_with: str | None = None       # a prefix that ends the reply when the modem sends no final result
    wants_prompt: bool = False
    resync: bool = False
    lines: list[str] = field(default_factory=list)
    final: str | None = None
    prompted: bool = False
    error: Exception | None = None
    echo: set[str] = field(default_factory=set)
    payload: bytes | None = None       # written by the reader the moment `> ` arrives (no thread hand-off)
    payload_at: float | None = None


class PendingPrompt:
    """A prompt command under way (`Link.start_prompt`): its reply, once, by `result()`, which lets go of the link."""

    def __init__(self, link: Link, flight: _InFlight, started: float, prompt_timeout: float):
        self.link, self.flight, self.started, self.prompt_timeout = link, flight, started, prompt_timeout
        self._done = False

    def result(self, timeout: float = 60.0, check: bool = True) -> Reply:
        """Wait for the reply: `prompt_timeout` from the command for the prompt, then `timeout` from the payload
        for the final result. Raises as `Link.prompt_command` does (PromptTimeout after sending ESC, ModemTimeout
        and PortLost flagged `after_payload` once the prompt had come, the final result's error when `check`)."""
        if self._done:
            raise RuntimeError(f"{self.flight.command}: the reply was taken already")
        self._done = True
        link, flight = self.link, self.flight
        try:
            with link._state:
                link._state.wait_for(lambda: flight.prompted or flight.final or flight.error,
                                     max(0.0, self.prompt_timeout - (time.monotonic() - self.started)))
                if flight.error is None and flight.final is None and not flight.prompted:
                    link._current = None
                    link._dirty = True
            if flight.error is None and flight.final is None and not flight.prompted:
                link._write(ESC)
                raise PromptTimeout(f"{flight.command}: no '> ' prompt in {self.prompt_timeout:g} s (sent ESC)")
            try:  # `timeout` is for the network's answer: it runs from the payload
                elapsed = link._wait(flight, timeout, flight.payload_at or self.started)
            except ModemError as error:
                # a timeout, a lost port, a closed link after the prompt: the payload may have gone out (and the
                # modem may have sent it), so a retry may duplicate it
                error.after_payload = flight.prompted
                raise
            return link._finish(flight, elapsed, check)
        finally:
            link._command_lock.release()


class Link:
    """AT command channel over one open serial port."""

    def __init__(self, port: serial.SerialBase, on_urc: Callable[[at.Urc], None] | None = None,
                 on_lost: Callable[[Exception], None] | None = None, name: str | None = None,
                 resync_timeout: float = 2.0, quiet_time: float = 0.05, resync_attempts: int = 5):
        self.port = port
        self.name = name or getattr(port, "port", None) or "modem"
        self.on_urc = on_urc or (lambda urc: None)
        self.on_lost = on_lost or (lambda error: None)
        self.resync_timeout = resync_timeout
        self.resync_attempts = resync_attempts
        self.quiet_time = quiet_time
        self._command_lock = threading.Lock()  # one command in flight
        self._state = threading.Condition()    # guards everything below; notified on every line
        self._current: _InFlight | None = None
        self._partial = bytearray()
        self._pending_urc: str | None = None
        self._lines_seen = 0
        self._dirty = True  # the port may still carry a previous owner's late reply: resync before the first command
        self._answered = False  # a clean OK ever came on this link (first contact made)
        self._unanswered_tries = 0  # resync tries since the last clean OK: ESC and bare AT alternate on it
        self._lost: Exception | None = None
        self._closing = False
        self._reader = threading.Thread(target=self._read_loop, name=f"link-{self.name}", daemon=True)
        self._reader.start()

    # --- public --------------------------------------------------------------------------------------

    @property
    def lost(self) -> Exception | None:
        return self._lost

    @property
    def dirty(self) -> bool:
        """True until a clean OK to AT (first contact), and again after a timeout: the next command resyncs."""
        return self._dirty

    @property
    def answered(self) -> bool:
        """True once the modem gave a clean OK on this link."""
        return self._answered

    def resync(self, timeout: float | None = None) -> None:
        """One try of what the link does before a command when it is dirty: AT (ESC first on every other try),
        then a clean OK and a quiet moment. Done when it returns; raises ModemTimeout (the link stays dirty),
        PortLost. Waiting for a booting modem is tries of this with pauses between (Modem._settle)."""
        timeout = self.resync_timeout if timeout is None else timeout
        with self._command_lock:
            if self._lost is not None:
                raise PortLost(f"{self.name}: {self._lost}")
            self._dirty = True
            if not self._resync_try(timeout):
                raise ModemTimeout(f"{self.name}: no clean OK to AT in {timeout:g} s")

    def command(self, command: str, timeout: float = 5.0, *, expect: str | None = None,
                ends_with: str | None = None, check: bool = True) -> Reply:
        """Send one command line and return its reply.

        `expect` overrides the information prefix the reply carries (default from the command name);
        `ends_with` names a prefix that completes the reply for modems that omit the final result.
        Raises ModemTimeout, PortLost, and (when `check`) the final result's error (CmeError, CmsError,
        CommandError).
        """
        with self._command_lock:
            self._ensure_ready()
            flight = _InFlight(command, expect or at.expected_prefix(command), ends_with)
            flight.echo.add(command)
            return self._finish(flight, self._exchange(flight, command.encode() + b"\r", timeout), check)

    def prompt_command(self, command: str, payload: str | Callable[[], str | None], timeout: float = 60.0,
                       prompt_timeout: float = 5.0, check: bool = True) -> Reply:
        """`command`, wait for `> `, then `payload` + Ctrl-Z, as one step no other command can enter.

        `payload` may be a function called once the prompt has come (the console asks its user then);
        when it returns None the input is cancelled with ESC. Raises PromptTimeout (after sending ESC) when
        no prompt comes, ModemTimeout, PortLost, or the error of the final result (e.g. CmsError) when `check`.
        """
        if isinstance(payload, str):
            return self.start_prompt(command, payload, prompt_timeout).result(timeout, check)
        with self._command_lock:
            self._ensure_ready()
            flight = _InFlight(command, at.expected_prefix(command), wants_prompt=True)
            flight.echo.add(command)
            started = time.monotonic()
            with self._state:
                self._begin(flight)
            self._write(command.encode() + b"\r")
            with self._state:
                self._state.wait_for(lambda: flight.prompted or flight.final or flight.error, prompt_timeout)
                if flight.error is None and flight.final is None and not flight.prompted:
                    self._current = None
                    self._dirty = True
            if flight.error is None and flight.final is None and not flight.prompted:
                self._write(ESC)
                raise PromptTimeout(f"{command}: no '> ' prompt in {prompt_timeout:g} s (sent ESC)")
            if flight.prompted and flight.final is None and flight.error is None:
                try:
                    body = payload()
                except BaseException:
                    self._abandon(flight)
                    raise
                if body is None:
                    self._write(ESC)
                else:
                    flight.echo.add(body)
                    self._write(body.encode() + CTRL_Z)
                    started = time.monotonic()  # `timeout` is for the network's answer, not for typing
            try:
                elapsed = self._wait(flight, timeout, started)
            except ModemError as error:
                # a timeout, a lost port, a closed link after the prompt: the payload may have gone out (and the
                # modem may have sent it), so a retry may duplicate it
                error.after_payload = flight.prompted
                raise
            return self._finish(flight, elapsed, check)

    def start_prompt(self, command: str, payload: str, prompt_timeout: float = 5.0) -> PendingPrompt:
        """The first half of `prompt_command` with a payload known in advance: `command` is written (the reader
        writes `payload` + Ctrl-Z the moment `> ` arrives) and this returns at once, so the caller may do other work
        while the modem works (the pool claims the next message meanwhile). The link is held, no other command can
        enter, until the returned `PendingPrompt.result()` has been called, which the caller must do in every case.
        Raises PortLost, ModemTimeout (a dirty link that does not resync)."""
        self._command_lock.acquire()
        try:
            self._ensure_ready()
            flight = _InFlight(command, at.expected_prefix(command), wants_prompt=True)
            flight.echo.update((command, payload))
            flight.payload = payload.encode() + CTRL_Z
            started = time.monotonic()
            with self._state:
                self._begin(flight)
            self._write(command.encode() + b"\r")
        except BaseException:
            self._command_lock.release()
            raise
        return PendingPrompt(self, flight, started, prompt_timeout)

    def _abandon(self, flight: _InFlight) -> None:
        """Give up a prompt command: ESC out of the modem's prompt, and resync before the next command."""
        with self._state:
            if self._current is flight:
                self._current = None
            self._dirty = True
        try:
            self._write(ESC)
        except PortLost:
            pass

    def close(self) -> None:
        """Stop the reader, then close the port (releasing its lock); commands in flight fail with PortLost.

        The reader must be out of the port before the descriptor closes: a thread blocked in select() on a closed
        descriptor keeps the open file, and with it the exclusive lock, so the device could never be opened again
        (measured: 2 of 4 modems lost for good after an outage), and the descriptor's number may be reused by the
        next port opened, whose bytes that thread would then steal."""
        self._closing = True
        with self._state:
            if self._lost is None:
                self._lost = PortLost("link closed")
        self._fail(PortLost(f"{self.name}: link closed"))
        if threading.current_thread() is not self._reader:
            for _attempt in range(20):
                try:
                    self.port.cancel_read()  # wakes the reader out of select(); it sees _closing and returns
                except Exception:  # noqa: BLE001 - a port that is already gone cannot be cancelled
                    break
                self._reader.join(timeout=0.1)
                if not self._reader.is_alive():
                    break
            if self._reader.is_alive():
                log.error("%s: the reader thread did not stop; closing the port under it", self.name)
        try:
            self.port.close()
        except Exception as error:  # noqa: BLE001 - closing a vanished device may raise anything pyserial has
            log.debug("%s: close: %s", self.name, error)
        if threading.current_thread() is not self._reader:
            self._reader.join(timeout=2)

    # --- command plumbing ----------------------------------------------------------------------------

    def _begin(self, flight: _InFlight) -> None:
        if self._lost is not None:
            raise PortLost(f"{self.name}: {self._lost}")
        self._current = flight

    def _exchange(self, flight: _InFlight, data: bytes, timeout: float) -> float:
        started = time.monotonic()
        with self._state:
            self._begin(flight)
        self._write(data)
        return self._wait(flight, timeout, started)

    def _wait(self, flight: _InFlight, timeout: float, started: float | None = None) -> float:
        started = started or time.monotonic()
        remaining = max(0.0, timeout - (time.monotonic() - started))  # a prompt command may have waited already
        with self._state:
            done = self._state.wait_for(lambda: flight.final is not None or flight.error is not None, remaining)
            if self._current is flight:
                self._current = None
            if not done:
                self._dirty = True
        if flight.error is not None:
            raise flight.error
        if not done:
            raise ModemTimeout(f"{self.name}: {flight.command} got no final result in {timeout:g} s")
        return time.monotonic() - started

    def _finish(self, flight: _InFlight, elapsed: float, check: bool) -> Reply:
        reply = Reply(flight.command, flight.lines, flight.final or "", elapsed)
        if check:
            error = at.final_error(reply.final, flight.command) if reply.final != "" else None
            if error is not None:
                error.reply = reply
                raise error
        return reply

    def _write(self, data: bytes) -> None:
        if self._lost is not None:
            raise PortLost(f"{self.name}: {self._lost}")
        try:
            self.port.write(data)
            log.debug("%s <- %r", self.name, data)
        except (serial.SerialException, OSError, TypeError, AttributeError) as error:
            self._port_lost(error)
            raise PortLost(f"{self.name}: write failed: {error}") from None

    def _ensure_ready(self) -> None:
        """Rule 4: after a timeout, prove the modem is in step again before anything else is sent."""
        if self._lost is not None:
            raise PortLost(f"{self.name}: {self._lost}")
        if not self._dirty:
            return
        for _attempt in range(self.resync_attempts):
            if self._resync_try(self.resync_timeout):
                return
        raise ModemTimeout(f"{self.name}: no clean OK to AT after a timeout; the modem is out of step")

    def _resync_try(self, timeout: float) -> bool:
        """Send AT and wait for a clean OK and a quiet moment; True when in step (the link is clean again).

        Every other try starts with ESC on a write of its own: a modem left waiting at "> " would take our AT as
        PDU text, and ESC cancels that input. A CR follows, so that the ESC (ignored by a modem at its command
        line) ends a line of its own and AT starts a fresh one: emulators that read lines and ignore those not
        starting with "AT" do not skip bytes before the AT. The other tries are a bare AT, in case the ESC
        itself is what the other end does not take."""
        flight = _InFlight("AT", None, resync=True)
        flight.echo.add("AT")  # echo may be on again (power-up, ATZ, a reset)
        escape = self._unanswered_tries % 2 == 0
        self._unanswered_tries += 1
        try:
            if escape:
                self._write(ESC)
            self._exchange(flight, b"\rAT\r" if escape else b"AT\r", timeout)
        except ModemTimeout:
            return False
        with self._state:
            seen = self._lines_seen
            self._state.wait_for(lambda: self._lines_seen != seen, self.quiet_time)
            quiet = self._lines_seen == seen
        if quiet:
            self._dirty = False
            self._answered = True
            self._unanswered_tries = 0
        return quiet

    # --- reader thread ---------------------------------------------------------------------------------

    def _read_loop(self) -> None:
        while not self._closing:
            try:
                data = self.port.read(max(1, self.port.in_waiting))
            except (serial.SerialException, OSError, TypeError, AttributeError) as error:
                if not self._closing:
                    self._port_lost(error)
                return
            if data:
                log.debug("%s -> %r", self.name, data)
                self._feed(data)

    def _port_lost(self, error: Exception) -> None:
        with self._state:
            if self._lost is not None:
                return
            self._lost = error
        log.warning("%s: port lost: %s", self.name, error)
        self._fail(PortLost(f"{self.name}: port lost: {error}"))
        self.on_lost(error)

    def _fail(self, error: Exception) -> None:
        with self._state:
            if self._current is not None and self._current.final is None:
                self._current.error = error
            self._state.notify_all()

    def _feed(self, data: bytes) -> None:
        buffer = self._partial
        buffer += data
        while True:
            cut = min((index for index in (buffer.find(b"\r"), buffer.find(b"\n")) if index >= 0), default=-1)
            if cut < 0:
                break
            raw = bytes(buffer[:cut])
            del buffer[:cut + 1]
            line = _CONTROL.sub("", raw.decode("utf-8", errors="replace")).strip()
            if line:
                self._line(line)
        if buffer == b"> " or buffer == b">":
            with self._state:
                flight = self._current
                if flight is not None and flight.wants_prompt:
                    buffer.clear()
                    flight.prompted = True
                    self._give_payload(flight)
                    if self._awaited(flight):
                        self._state.notify_all()
                elif buffer == b"> ":
                    buffer.clear()  # a stray prompt (ours was given up): forget it

    def _give_payload(self, flight: _InFlight) -> None:
        """On the reader thread, under _state: the PDU goes out the moment its prompt arrives, rather than after
        waking the sender (a thread hand-off per send, which adds up with many modems on few cores)."""
        if flight.payload is None or flight.payload_at is not None:
            return
        flight.payload_at = time.monotonic()
        try:
            self._write(flight.payload)
        except PortLost:
            pass  # _write failed the flight already

    @staticmethod
    def _awaited(flight: _InFlight) -> bool:
        """Under _state: whether the thread waiting on `flight` has something to do now: its final result or error
        came, or its prompt did and it writes the payload itself. Other lines wake nobody: each needless wake-up of a
        sender is a context switch and a fight for the GIL, and with many modems on one core those add up."""
        return (flight.final is not None or flight.error is not None
                or (flight.prompted and flight.payload_at is None))

    def _line(self, line: str) -> None:
        urcs: list[at.Urc] = []
        with self._state:
            flight = self._current
            self._lines_seen += 1
            if self._pending_urc is not None:
                header, self._pending_urc = self._pending_urc, None
                if _HEX_LINE.fullmatch(line):
                    urcs.append(at.parse_urc(header, pdu=line))
                    line = ""
                else:  # the header promised a PDU that never came: report it bare, then read this line
                    urcs.append(at.parse_urc(header))
            if line:
                urcs += self._classify(line)
            if flight is None or self._awaited(flight):  # no command in flight: a resync may await a quiet moment
                self._state.notify_all()
        for urc in urcs:
            self._deliver_urc(urc)

    def _classify(self, line: str) -> list[at.Urc]:
        """Place one line: a URC (returned), part of the reply in flight, or a stray. Caller holds _state."""
        flight = self._current
        urcs: list[at.Urc] = []
        if at.is_urc(line, flight.expect if flight is not None else None):
            if at.is_two_line_urc(line):
                self._pending_urc = line
                return []
            return [at.parse_urc(line)]
        if flight is None:
            log.info("%s: stray line with no command in flight: %r", self.name, line)
        elif line in flight.echo:
            pass  # the modem echoes (echo was still on, or came back after a reset)
        elif line == ">" and flight.wants_prompt and not flight.prompted:
            flight.prompted = True  # "> " arrived together with more bytes (a URC right after the prompt)
            self._give_payload(flight)
        elif flight.resync:
            if line == "OK" and not flight.lines:
                flight.final = line
            elif at.is_final(line):
                flight.lines.clear()  # the end of a late reply, not the answer to our AT
            else:
                if line.startswith("+CMGS:"):
                    log.warning("%s: late %s after a send timed out: that message did go out", self.name, line)
                    urcs.append(at.parse_urc("LATE-CMGS: " + line[len("+CMGS:"):].strip()))
                flight.lines.append(line)
        elif at.is_final(line):
            flight.final = line
        elif flight.ends_with and line.startswith(flight.ends_with):
            flight.lines.append(line)
            flight.final = "OK"
        else:
            flight.lines.append(line)
        return urcs

    def _deliver_urc(self, urc: at.Urc) -> None:
        try:
            self.on_urc(urc)
        except Exception:  # a consumer's fault must not kill the reader (rule 4)
            log.exception("%s: URC handler failed for %r", self.name, urc.line)
