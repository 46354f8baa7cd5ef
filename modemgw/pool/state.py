"""What the pool shows outside readers (web UI, metrics, the daemon, the API, the CLI) about each modem, and what of
a health check is worth writing to the database (an idle gateway writes nothing: SD cards wear out)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# A health check writes the signal when it moved this far from the stored value (or appeared or vanished). Real
# modems' readings wiggle by 1-4 dB from one check to the next (one or two CSQ steps of 2 dB), and a threshold between
# bars would be crossed back and forth by such a wiggle; 6 dB is more than the wiggle and less than a bar (10 dB).
SIGNAL_STEP_DB = 6
# ... and `last_seen` when the stored one is this old (seconds), even when nothing else changed: readers of the row
# alone (a stopped gateway's database, the doctor, the API until it shows the live value) see it at most this stale,
# for 4 small writes an hour with 4 modems. Any other write of the row carries the current `last_seen` too.
LAST_SEEN_EVERY = 3600.0


@dataclass(frozen=True)
class Observed:
    """What a modem's last health check saw (wall-clock `at`). Kept in memory as the pool's live state; written to
    the modem's row only when `health_changes` says it is worth it."""

    signal_dbm: int | None
    registration: str | None
    operator: str | None
    at: float


def health_changes(stored: dict[str, Any], seen: Observed) -> dict[str, Any]:
    """The modem row's fields to write after a health check that saw `seen`, against the `stored` row: nothing while
    the registration, the operator and the signal (within SIGNAL_STEP_DB) are what the row says and its last_seen is
    younger than LAST_SEEN_EVERY; otherwise everything the check saw, last_seen included."""
    signal, before = seen.signal_dbm, stored.get("signal_dbm")
    moved = (signal is None) != (before is None) or (signal is not None and before is not None
                                                     and abs(signal - before) >= SIGNAL_STEP_DB)
    changed = (moved or seen.registration != stored.get("registration") or seen.operator != stored.get("operator")
               or seen.at - (stored.get("last_seen") or 0.0) >= LAST_SEEN_EVERY)
    if not changed:
        return {}
    return {"signal_dbm": signal, "registration": seen.registration, "operator": seen.operator, "last_seen": seen.at}


@dataclass(frozen=True)
class ModemState:
    """One worker's modem at one moment, read-only. `modem_id` is None until a modem was first attached;
    `configured_label` is the label its [[modem]] entry gives (None for an auto-attached modem). Signal, registration,
    operator and last_seen are what the last health check saw (live: the row has them only when they changed)."""

    modem_id: int | None
    label: str
    device: str | None
    imei: str | None
    state: str            # connecting, ready, busy, searching, faulted, recovering
    live: bool            # may take messages: online, port open, on the network
    attached: bool        # its port is open and initialised (it may still be searching for the network)
    sent_today: int
    signal_dbm: int | None
    operator: str | None
    reports: str | None   # how status reports reach us when the report watchdog changed the route (REPORT_MODES)
    configured_label: str | None
    registration: str | None = None
    last_seen: float | None = None  # wall clock of the last health check (or attach) that heard the modem

    def summary(self) -> dict:
        """The dict `Pool.status()` lists (and the control socket, `modemgw status` and the API show)."""
        return {"label": self.label, "device": self.device, "imei": self.imei, "state": self.state,
                "modem_id": self.modem_id, "sent_today": self.sent_today, "signal_dbm": self.signal_dbm,
                "operator": self.operator, "reports": self.reports}

    def observed(self) -> dict[str, Any]:
        """The row fields this live state knows better than the database (the health check writes them only when they
        changed): overlay a modem's row with them to show it as it is now, e.g. `row | state.observed()`."""
        fields = {"signal_dbm": self.signal_dbm, "registration": self.registration, "operator": self.operator,
                  "last_seen": self.last_seen}
        return fields if self.last_seen is not None else {}


__all__ = ["LAST_SEEN_EVERY", "SIGNAL_STEP_DB", "ModemState", "Observed", "health_changes"]
