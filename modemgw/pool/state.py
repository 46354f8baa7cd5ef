"""What the pool shows outside readers (web UI, metrics, the daemon, the API, the CLI) about each modem."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModemState:
    """One worker's modem at one moment, read-only. `modem_id` is None until a modem was first attached;
    `configured_label` is the label its [[modem]] entry gives (None for an auto-attached modem)."""

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

    def summary(self) -> dict:
        """The dict `Pool.status()` lists (and the control socket, `modemgw status` and the API show)."""
        return {"label": self.label, "device": self.device, "imei": self.imei, "state": self.state,
                "modem_id": self.modem_id, "sent_today": self.sent_today, "signal_dbm": self.signal_dbm,
                "operator": self.operator, "reports": self.reports}


__all__ = ["ModemState"]
