"""The JSON-lines control sockets: the daemon's (`<data>/modemgw.sock`) and the simulator's
(`<link-dir>/control.sock`). One request object per line, one reply object per line; a reply has `ok`.

The client side lives here once (the CLI, the console and tests use it); each server keeps its own loop (the
daemon a thread per client, the simulator its event loop) and uses `serve_lines` or `answer` to read and write.
"""

from __future__ import annotations

import errno
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

MAX_LINE = 1 << 22  # a request or a reply (a 10,000-recipient submit fits); a longer line is refused


class ControlError(ConnectionError):
    """Nobody answers on the socket, or the answer is not a reply. The message says what to do."""


class NotRunning(ControlError):
    """No process listens on the socket (it does not exist, or nobody accepts)."""


class NotPermitted(ControlError):
    """A process listens, but this user may not talk to it (the socket is its owner's alone)."""


def request(path: Path | str, message: dict, timeout: float = 120.0) -> dict:
    """Send `message` to the socket at `path` and return the reply. Raises NotRunning, NotPermitted or
    ControlError."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps(message).encode() + b"\n")
            data = bytearray()
            while not data.endswith(b"\n"):
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
                if len(data) > MAX_LINE:
                    raise ControlError(f"{path}: the reply is longer than {MAX_LINE} bytes")
    except OSError as error:
        if error.errno in (errno.EACCES, errno.EPERM):
            raise NotPermitted(f"{path}: {error.strerror}") from None
        if error.errno in (errno.ENOENT, errno.ECONNREFUSED):
            raise NotRunning(f"{path}: {error.strerror}") from None
        raise ControlError(f"{path}: {error.strerror or error}") from None
    if not data:
        raise ControlError(f"{path}: no answer")
    try:
        reply = json.loads(data)
    except ValueError:
        raise ControlError(f"{path}: the answer is not JSON") from None
    if not isinstance(reply, dict):
        raise ControlError(f"{path}: the answer is not a reply object")
    return reply


def daemon_request(data_dir: Path | str, message: dict, timeout: float = 120.0) -> dict:
    """One request to the daemon running on `data_dir`. Raises ControlError (NotRunning, NotPermitted) saying
    what to do."""
    path = Path(data_dir) / "modemgw.sock"
    try:
        return request(path, message, timeout)
    except NotPermitted:
        raise  # "<path>: Permission denied": it runs, and this user may not talk to it
    except ControlError as error:
        raise type(error)(f"no modemgw daemon answers at {path} ({error}); start one with "
                          f"'modemgw serve --data {data_dir}' (or 'modemgw demo')") from None


def answer(line: bytes, handle: Callable[[dict], dict]) -> bytes:
    """The reply line to one request line: `handle(request)`, or `{"ok": false, "error": ...}` for a line that
    is not a request object (a bad client must not stop the server)."""
    try:
        message: Any = json.loads(line)
        if not isinstance(message, dict):
            raise ValueError("a request is a JSON object")
        reply = handle(message)
    except (ValueError, KeyError, TypeError) as error:
        reply = {"ok": False, "error": f"bad request: {error}"}
    return json.dumps(reply, default=str).encode() + b"\n"


class _Stream(Protocol):
    def readline(self, size: int = ..., /) -> bytes: ...
    def write(self, data: bytes, /) -> int: ...
    def flush(self) -> None: ...


def serve_lines(stream: _Stream, handle: Callable[[dict], dict]) -> None:
    """Answer requests from a blocking stream until the client closes it (the daemon, a thread per client)."""
    while True:
        line = stream.readline(MAX_LINE + 1)
        if not line:
            return
        if len(line) > MAX_LINE:
            stream.write(json.dumps({"ok": False, "error": f"request over {MAX_LINE} bytes"}).encode() + b"\n")
            stream.flush()
            return
        stream.write(answer(line, handle))
        stream.flush()
