"""Modems: their rows, bound by identity (IMEI, and the SIM's ICCID), their settings, state and counters."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from modemgw.store.base import StoreBase, inserted_id
from modemgw.store.errors import NotFound


class ModemStore(StoreBase):
    """Modem rows: attach by identity, settings, state."""

    def attach_modem(self, imei: str, iccid: str | None, **fields: Any) -> dict:
        """The modem row for this IMEI/ICCID (created on first sight), updated with `fields` (identity, device).
        A SIM moved to another modem keeps its row (limits and quotas belong to the SIM)."""
        now = time.time()
        with self.transaction() as conn:
            row = None
            if iccid:
                row = conn.execute("SELECT * FROM modems WHERE iccid = ?", (iccid,)).fetchone()
            if row is None:
                row = conn.execute("SELECT * FROM modems WHERE imei = ?", (imei,)).fetchone()
            if row is None:
                label = fields.pop("label", None) or f"modem-{imei[-4:]}"
                while conn.execute("SELECT 1 FROM modems WHERE label = ?", (label,)).fetchone():
                    label += "x"
                cursor = conn.execute("INSERT INTO modems (imei, iccid, label, created_at) VALUES (?, ?, ?, ?)",
                                      (imei, iccid, label, now))
                modem_id = inserted_id(cursor)
                self._event(conn, "modem.added", modem_id=modem_id, now=now, imei=imei, iccid=iccid)
            else:
                modem_id = row["id"]
                fields.pop("label", None) if row["label"] else None
                if row["imei"] != imei:
                    # another row may still hold this IMEI (the old SIM's); free it for this one
                    conn.execute("UPDATE modems SET imei = NULL WHERE imei = ? AND id != ?", (imei, modem_id))
            fields.update(imei=imei, iccid=iccid, last_seen=now)
            self._update_modem(conn, modem_id, fields)
            return dict(conn.execute("SELECT * FROM modems WHERE id = ?", (modem_id,)).fetchone())

    @staticmethod
    def _update_modem(conn: sqlite3.Connection, modem_id: int, fields: dict) -> None:
        allowed = {"imei", "iccid", "imsi", "label", "grp", "number", "manufacturer", "model", "profile", "device",
                   "enabled", "rate_per_minute", "quota_day", "quota_month", "state", "signal_dbm",
                   "registration", "operator", "last_error", "last_seen", "report_mode"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown modem fields: {', '.join(sorted(unknown))}")
        if fields:
            assignments = ", ".join(f"{name} = ?" for name in fields)
            conn.execute(f"UPDATE modems SET {assignments} WHERE id = ?", (*fields.values(), modem_id))

    def imei_last_on(self, device: str) -> str | None:
        """The IMEI of the modem most recently seen on `device`, if any."""
        rows = self.query("SELECT imei FROM modems WHERE device = ? AND imei IS NOT NULL "
                          "ORDER BY last_seen DESC LIMIT 1", (device,))
        return rows[0][0] if rows else None

    def update_modem(self, modem_id: int, **fields: Any) -> dict:
        """Change a modem's settings or state; its row after. Raises NotFound, Duplicate (the label is another
        modem's), ValueError (a field that is not a modem's). Only fields whose value differs are written, so a call
        that changes nothing writes nothing (an SD card's wear)."""
        with self.transaction() as conn:
            row = conn.execute("SELECT * FROM modems WHERE id = ?", (modem_id,)).fetchone()
            if row is None:
                raise NotFound(f"no modem {modem_id}")
            before = dict(row)
            changed = {name: value for name, value in fields.items() if name not in before or before[name] != value}
            self._update_modem(conn, modem_id, changed)
            if not changed:
                return before
            return dict(conn.execute("SELECT * FROM modems WHERE id = ?", (modem_id,)).fetchone())

    def set_modem_state(self, modem_id: int, state: str, error: str | None = None, fields: dict | None = None) -> None:
        """A modem's state (and its last error); a change of state is logged as an event. `fields`: more of the row
        (as `update_modem`), in the same commit. Raises ValueError (a field that is not a modem's)."""
        with self.transaction() as conn:
            previous = conn.execute("SELECT state FROM modems WHERE id = ?", (modem_id,)).fetchone()
            self._update_modem(conn, modem_id, {name: value for name, value in (fields or {}).items()
                                                if name not in ("state", "last_error", "last_seen")})
            conn.execute("UPDATE modems SET state = ?, last_error = COALESCE(?, last_error), last_seen = ? "
                         "WHERE id = ?", (state, error, time.time(), modem_id))
            if previous is not None and previous["state"] != state:
                detail: dict[str, Any] = {"error": error} if error else {}
                self._event(conn, f"modem.{state}", modem_id=modem_id, **detail)

    def modem(self, modem_id: int) -> dict:
        """One modem's row. Raises NotFound."""
        rows = self.query("SELECT * FROM modems WHERE id = ?", (modem_id,))
        if not rows:
            raise NotFound(f"no modem {modem_id}")
        return dict(rows[0])

    def modems(self) -> list[dict]:
        """Every modem's row, in id order."""
        return self.query_dicts("SELECT * FROM modems ORDER BY id")

    def sent_in_window(self, modem_id: int, since: float) -> list[float]:
        """Send times of parts since `since` (to rebuild a per-minute window after a restart)."""
        return [row[0] for row in self.query("SELECT sent_at FROM parts WHERE modem_id = ? AND sent_at >= ? "
                                             "ORDER BY sent_at", (modem_id, since))]
