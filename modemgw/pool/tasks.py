"""What a worker finds on its task queue (`ModemWorker.tasks`), besides the URCs its modem puts there (`at.Urc`).

A worker waits on that one queue when idle, so a submit, a health check, a console call, a stop and a URC all
wake it the same way; nothing polls.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from modemgw import at

if TYPE_CHECKING:
    from modemgw.modem import Modem


@dataclass(frozen=True)
class Wake:
    """There may be work: claim a message. `tried` holds the workers this wake-up was offered to (this one included),
    so one that may not take the work (a route) passes it on to another; None for a plain nudge."""

    tried: frozenset | None = None


@dataclass(frozen=True)
class Health:
    """Check signal and registration (sent to idle workers only, and when the watcher saw the port vanish)."""


@dataclass(frozen=True)
class Stop:
    """End the thread (after closing the port)."""


@dataclass(frozen=True)
class PortFound:
    """The port watcher found this worker's modem on a port (`ModemWorker.hint`): stop waiting, connect now."""


@dataclass(frozen=True)
class Call:
    """Run `function(modem)` on the worker's thread (the port has one owner) and settle `future` with its result."""

    function: Callable[[Modem], Any]
    future: Future


Task: TypeAlias = "Wake | Health | Stop | PortFound | Call | at.Urc"

__all__ = ["Call", "Health", "PortFound", "Stop", "Task", "Wake"]
