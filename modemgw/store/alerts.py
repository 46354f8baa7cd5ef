"""Alert notifications already turned into SMS (Alertmanager, Grafana), for de-duplication (migration 8).

A notification is *claimed* before its SMS is queued and *recorded* (with the ids of its messages) after, so two
copies that arrive together (an Alertmanager retry, or both members of an HA pair) cannot both send: the second
finds the first one's claim. A claim whose send failed is *released*, so the sender's retry can send. Rows older
than the de-duplication window are useless and are deleted whenever a new notification is claimed.
"""

from __future__ import annotations

import json

from modemgw.store.base import StoreBase


class AlertStore(StoreBase):
    """Table `alert_notifications`: (dedupe_key, at, message_ids as a JSON list; NULL while its send runs)."""

    def claim_alert(self, dedupe_key: str, now: float, window: float, pending_window: float) -> dict | None:
        """Claim the notification `dedupe_key` at `now`: None when it is ours to send (no copy of it within
        `window` seconds), else the earlier copy's row {"dedupe_key", "at", "message_ids"} (`message_ids` None
        while that copy's send is still running). A claim that was never recorded (its process died while sending)
        is taken over after `pending_window` seconds. Raises StoreError."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM alert_notifications WHERE at < ?", (now - window,))
            row = conn.execute("SELECT dedupe_key, at, message_ids FROM alert_notifications WHERE dedupe_key = ?",
                               (dedupe_key,)).fetchone()
            if row is not None and not (row["message_ids"] is None and row["at"] < now - pending_window):
                return {"dedupe_key": row["dedupe_key"], "at": row["at"],
                        "message_ids": None if row["message_ids"] is None else json.loads(row["message_ids"])}
            conn.execute("INSERT INTO alert_notifications (dedupe_key, at, message_ids) VALUES (?, ?, NULL) "
                         "ON CONFLICT (dedupe_key) DO UPDATE SET at = excluded.at, message_ids = NULL",
                         (dedupe_key, now))
        return None

    def record_alert(self, dedupe_key: str, message_ids: list[int]) -> None:
        """The messages a claimed notification queued (an empty list: it queued none, e.g. every recipient had
        opted out). Raises StoreError."""
        with self.transaction() as conn:
            conn.execute("UPDATE alert_notifications SET message_ids = ? WHERE dedupe_key = ?",
                         (json.dumps(list(message_ids)), dedupe_key))

    def release_alert(self, dedupe_key: str) -> None:
        """Forget a claim whose send failed, so the same notification sent again is sent. Raises StoreError."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM alert_notifications WHERE dedupe_key = ? AND message_ids IS NULL",
                         (dedupe_key,))
