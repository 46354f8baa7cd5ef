"""Dispatch: the queue as the modems see it. Releasing scheduled messages, claiming the next message a modem
may send (atomically, by the rules of `modemgw.dispatch`), recording each part's +CMGS and its status report, retries,
failures, expiry, and recovery after a crash."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from modemgw.store.base import UNSETTLED, StoreBase


@dataclass
class Claimed:
    """A message a worker has claimed for sending."""

    id: int
    recipient: str
    body: str
    encoding: str
    segments: int
    request_report: bool
    validity: int | None
    concat_ref: int | None
    attempts: int
    sent_parts: dict[int, int]  # seq -> TP-MR of parts already sent (after a crash or a partial failure)


def day_key(moment: float) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(moment))


def month_key(moment: float) -> str:
    return time.strftime("%Y-%m", time.localtime(moment))


class DispatchStore(StoreBase):
    """The queue: claim, send outcomes, status reports, expiry and crash recovery."""

    def release_scheduled(self, now: float) -> int:
        """Scheduled messages whose time has come become queued."""
        with self.transaction() as conn:
            return conn.execute("UPDATE messages SET status = 'queued', updated_at = ? "
                                "WHERE status = 'scheduled' AND due_at <= ?", (now, now)).rowcount

    def next_due(self) -> float | None:
        """The earliest time a scheduled or backed-off message becomes sendable (None when none waits)."""
        row = self.query(f"SELECT MIN(due_at) FROM messages WHERE status IN ('queued', 'scheduled') AND {UNSETTLED}")[0]
        return row[0]

    def queue_depth(self) -> int:
        """How many messages are queued (due now or backing off)."""
        return self.query("SELECT COUNT(*) FROM messages WHERE status = 'queued'")[0][0]

    def claim_next(self, modem_id: int, label: str, group: str | None, others: list[tuple[str, str | None]],
                   now: float, sticky_to: list[int] | None = None, sending: list[int] | None = None,
                   ahead: bool = False) -> Claimed | None:
        """Atomically take the next message this modem may send: highest priority, then oldest, among those
        due now whose route allows this modem. A retry avoids the modem it failed on while one of `others`
        (label, group of the other modems that can send now) is allowed by its route; otherwise it comes back
        here. `sticky_to` (live modem ids) keeps recipients with the modem they had before. A message that prefers
        a SIM (a reply, or to a number that wrote to it) waits for that SIM while it is among `sending` (the
        modems that can send now); when it is not, or when it failed there, any modem its route allows takes it.
        `ahead`: claimed while the modem still sends the one before: not handed to the modem yet (`claimed_at`
        stays NULL until `record_part_sent(handed=...)` of the one before), so that a crash in between does not
        flag it a possible duplicate (`recover_in_flight`).
        """
        sticky_clause = ""
        params: list[Any] = [now, label, group, modem_id, modem_id, json.dumps(others), modem_id,
                             json.dumps(sending or [])]
        if sticky_to is not None:
            sticky_clause = ("AND NOT EXISTS (SELECT 1 FROM sticky s WHERE s.recipient = m.recipient "
                             "AND s.modem_id != ? AND s.modem_id IN (SELECT value FROM json_each(?)))")
            params += [modem_id, json.dumps(sticky_to)]
        # durable: its PDU goes to the modem next, and a claim lost with a power cut would send it again unflagged
        with self.transaction(durable=True) as conn:
            row = conn.execute(
                "SELECT * FROM messages m INDEXED BY messages_queue WHERE status = 'queued' AND due_at <= ? "
                "AND (route_modem IS NULL OR route_modem = ?) AND (route_group IS NULL OR route_group = ?) "
                "AND (pinned_modem_id IS NULL OR pinned_modem_id = ?) "
                "AND (avoid_modem_id IS NULL OR avoid_modem_id != ? OR NOT EXISTS (SELECT 1 FROM json_each(?) o "
                "WHERE (m.route_modem IS NULL OR m.route_modem = json_extract(o.value, '$[0]')) "
                "AND (m.route_group IS NULL OR m.route_group = json_extract(o.value, '$[1]')))) "
                "AND (m.prefer_modem_id IS NULL OR m.prefer_modem_id = ? OR m.prefer_modem_id = m.avoid_modem_id "
                f"OR m.prefer_modem_id NOT IN (SELECT value FROM json_each(?))) {sticky_clause} "
                "ORDER BY priority DESC, id LIMIT 1", params).fetchone()
            if row is None:
                return None
            conn.execute("UPDATE messages SET status = 'sending', modem_id = ?, attempts = attempts + 1, "
                         "updated_at = ?, claimed_at = ? WHERE id = ?", (modem_id, now, None if ahead else now,
                                                                          row["id"]))
            sent = {part["seq"]: part["tp_mr"] for part in conn.execute(
                "SELECT seq, tp_mr FROM parts WHERE message_id = ? AND tp_mr IS NOT NULL", (row["id"],))}
            return Claimed(row["id"], row["recipient"], row["body"], row["encoding"], row["segments"],
                           bool(row["request_report"]), row["validity"], row["concat_ref"], row["attempts"] + 1,
                           sent)

    def set_concat_ref(self, message_id: int, reference: int) -> None:
        """The concatenation reference a message's parts carry (kept for the parts still to send)."""
        with self.transaction() as conn:
            conn.execute("UPDATE messages SET concat_ref = ? WHERE id = ?", (reference, message_id))

    def record_part_sent(self, message_id: int, seq: int, modem_id: int, tp_mr: int, now: float,
                         sticky: bool = False, recipient: str | None = None, last: bool = False,
                         handed: int | None = None) -> None:
        """One part has its +CMGS: record it and count it against the SIM's limits, in one transaction;
        with `last`, the message is marked sent in the same transaction (one commit per SMS on the hot path).
        `handed`: the message claimed ahead goes to the modem next (its `claimed_at`, in the same commit)."""
        day, month = day_key(now), month_key(now)
        with self.transaction() as conn:
            conn.execute("INSERT INTO parts (message_id, seq, modem_id, tp_mr, sent_at) VALUES (?, ?, ?, ?, ?) "
                         "ON CONFLICT (message_id, seq) DO UPDATE SET modem_id = excluded.modem_id, "
                         "tp_mr = excluded.tp_mr, sent_at = excluded.sent_at, report_status = NULL, "
                         "report_code = NULL, report_at = NULL", (message_id, seq, modem_id, tp_mr, now))
            conn.execute(
                "UPDATE modems SET sent_day = CASE WHEN day_key = ? THEN sent_day + 1 ELSE 1 END, day_key = ?, "
                "sent_month = CASE WHEN month_key = ? THEN sent_month + 1 ELSE 1 END, month_key = ? WHERE id = ?",
                (day, day, month, month, modem_id))
            if last:
                self._mark_sent(conn, message_id, modem_id, now)
            if handed is not None:
                conn.execute("UPDATE messages SET claimed_at = ? WHERE id = ? AND status = 'sending' AND "
                             "claimed_at IS NULL", (now, handed))
            if sticky and recipient:
                conn.execute("INSERT INTO sticky (recipient, modem_id, at) VALUES (?, ?, ?) ON CONFLICT (recipient) "
                             "DO UPDATE SET modem_id = excluded.modem_id, at = excluded.at",
                             (recipient, modem_id, now))

    def mark_sent(self, message_id: int, modem_id: int, now: float) -> None:
        """Every part has its +CMGS: the message is sent (and counted for its modem)."""
        with self.transaction() as conn:
            self._mark_sent(conn, message_id, modem_id, now)

    def _mark_sent(self, conn: sqlite3.Connection, message_id: int, modem_id: int, now: float) -> None:
        # an error of an earlier attempt is history now (the events keep it)
        conn.execute("UPDATE messages SET status = 'sent', sent_at = ?, updated_at = ?, pinned_modem_id = NULL, "
                     "avoid_modem_id = NULL, error_code = NULL, error_reason = NULL WHERE id = ?",
                     (now, now, message_id))
        conn.execute("UPDATE modems SET sent_total = sent_total + 1 WHERE id = ?", (modem_id,))

    def requeue(self, message_id: int, modem_id: int, due_at: float, reason: str, *, code: int | None = None,
                pin: bool = False, avoid: bool = True, count_attempt: bool = True,
                possible_duplicate: bool = False) -> None:
        """Back to the queue: after a temporary error (retry at `due_at`, elsewhere when possible), or when a
        modem went away under it. `pin` keeps it on this modem (its first parts went out through it)."""
        now = time.time()
        with self.transaction() as conn:
            self._attempt_ended(conn, message_id)
            conn.execute(
                "UPDATE messages SET status = 'queued', due_at = ?, updated_at = ?, error_code = ?, "
                "error_reason = ?, pinned_modem_id = ?, avoid_modem_id = ?, "
                "attempts = attempts - ?, possible_duplicate = MAX(possible_duplicate, ?) "
                "WHERE id = ? AND status = 'sending'",
                (due_at, now, code, reason, modem_id if pin else None, modem_id if avoid and not pin else None,
                 0 if count_attempt else 1, 1 if possible_duplicate else 0, message_id))
            self._event(conn, "message.retry", message_id, modem_id, now=now, reason=reason, code=code,
                        due_at=due_at)

    def give_back(self, message_id: int, modem_id: int, pin: bool) -> None:
        """A message claimed ahead that will not go to this modem now (the send before it failed, the modem went
        away, stops or may not send): queued again as it was, its attempt not counted, no event (it never reached a
        modem). `pin`: some of its parts went out through this modem before, the rest must follow them."""
        with self.transaction() as conn:
            conn.execute("UPDATE messages SET status = 'queued', attempts = MAX(0, attempts - 1), claimed_at = NULL, "
                         "updated_at = ?, pinned_modem_id = CASE WHEN ? THEN ? ELSE pinned_modem_id END "
                         "WHERE id = ? AND status = 'sending'", (time.time(), pin, modem_id, message_id))

    def _attempt_ended(self, conn: sqlite3.Connection, message_id: int) -> None:
        """A sending attempt that did not end sent: its "handed to a SIM" step goes to the event log (the row's
        `claimed_at` tells only the latest attempt's; see store/base.py `_timeline`)."""
        row = conn.execute("SELECT modem_id, claimed_at FROM messages WHERE id = ? AND status = 'sending'",
                           (message_id,)).fetchone()
        if row is not None and row["claimed_at"] is not None:
            self._event(conn, "message.sending", message_id, row["modem_id"], now=row["claimed_at"])

    def unpin(self, message_id: int, reason: str) -> None:
        """A pinned message's modem is gone: send all its parts again elsewhere (a possible partial duplicate)."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM parts WHERE message_id = ?", (message_id,))
            conn.execute("UPDATE messages SET pinned_modem_id = NULL, possible_duplicate = 1, concat_ref = NULL "
                         "WHERE id = ?", (message_id,))
            self._event(conn, "message.resend_all_parts", message_id, reason=reason)

    def pinned_to(self, modem_id: int) -> list[int]:
        """Queued messages that must go out through this modem (their first parts did)."""
        return [row[0] for row in self.query("SELECT id FROM messages WHERE status = 'queued' AND "
                                             "pinned_modem_id = ?", (modem_id,))]

    def fail(self, message_id: int, modem_id: int | None, code: int | None, reason: str, *,
             possible_duplicate: bool = False) -> None:
        """A permanent failure: the message is failed with the modem's `code` and a readable `reason`."""
        now = time.time()
        with self.transaction() as conn:
            self._attempt_ended(conn, message_id)
            conn.execute("UPDATE messages SET status = 'failed', error_code = ?, error_reason = ?, updated_at = ?, "
                         "pinned_modem_id = NULL, possible_duplicate = MAX(possible_duplicate, ?) WHERE id = ?",
                         (code, reason, now, 1 if possible_duplicate else 0, message_id))
            if modem_id is not None:
                conn.execute("UPDATE modems SET failed_total = failed_total + 1 WHERE id = ?", (modem_id,))
            self._event(conn, "message.failed", message_id, modem_id, now=now, code=code, reason=reason)

    def recover_in_flight(self, rebooted: bool = True) -> list[dict]:
        """After a crash: messages left `sending`. Those whose every part has its +CMGS are sent; the rest go
        back to the queue for their missing parts only (pinned to their modem), flagged as possible duplicates
        (the modem may have sent the part whose +CMGS we never recorded). A message claimed ahead and never handed
        to its modem (`claimed_at` NULL) goes back unflagged, unless the machine was `rebooted` since the gateway
        last started: a power cut may have lost the unsynced commit that handed it over (store/base.py)."""
        recovered = []
        now = time.time()
        with self.transaction(durable=True) as conn:
            for row in conn.execute(f"SELECT * FROM messages WHERE status = 'sending' AND {UNSETTLED}").fetchall():
                done = conn.execute("SELECT COUNT(*) FROM parts WHERE message_id = ? AND tp_mr IS NOT NULL",
                                    (row["id"],)).fetchone()[0]
                if row["claimed_at"] is None and done < row["segments"] and not rebooted:
                    conn.execute("UPDATE messages SET status = 'queued', attempts = MAX(0, attempts - 1), "
                                 "updated_at = ? WHERE id = ?", (now, row["id"]))
                    recovered.append({"id": row["id"], "action": "given back (claimed ahead, never at a modem)"})
                    continue
                if done >= row["segments"]:
                    conn.execute("UPDATE messages SET status = 'sent', sent_at = COALESCE(sent_at, ?), "
                                 "updated_at = ? WHERE id = ?", (now, now, row["id"]))
                    self._event(conn, "message.sent", row["id"], row["modem_id"], now=now, recovered=True)
                    recovered.append({"id": row["id"], "action": "sent"})
                    continue
                self._attempt_ended(conn, row["id"])
                conn.execute("UPDATE messages SET status = 'queued', possible_duplicate = 1, updated_at = ?, "
                             "pinned_modem_id = CASE WHEN ? > 0 THEN modem_id END WHERE id = ?",
                             (now, done, row["id"]))
                self._event(conn, "message.possible_duplicate", row["id"], row["modem_id"], now=now,
                            reason="in flight when the gateway stopped; unsent parts are sent again",
                            parts_sent=done)
                recovered.append({"id": row["id"], "action": "requeued"})
        return recovered

    def expire_due(self, now: float) -> list[int]:
        """Queued and scheduled messages past their validity become expired; their ids."""
        with self.transaction() as conn:
            ids = [row[0] for row in conn.execute(
                f"SELECT id FROM messages WHERE status IN ('queued', 'scheduled') AND {UNSETTLED} "
                "AND expires_at IS NOT NULL "
                "AND expires_at <= ?", (now,))]
            if ids:
                # the reason says whether a route kept it waiting for a modem that never came (a routed retry
                # may use only the modems its route names; without one, it waits for its validity)
                conn.execute(
                    "UPDATE messages SET status = 'expired', updated_at = ?, error_reason = 'not sent within its "
                    "validity' || CASE WHEN route_modem IS NOT NULL THEN ': modem ' || route_modem || "
                    "' (its route) could not send it' WHEN route_group IS NOT NULL THEN ': no modem of group ' || "
                    "route_group || ' (its route) could send it' ELSE '' END || "
                    "COALESCE(' (last error: ' || error_reason || ')', '') "
                    "WHERE id IN (SELECT value FROM json_each(?))",
                    (now, json.dumps(ids)))
                conn.executemany("INSERT INTO events (at, message_id, kind) VALUES (?, ?, 'message.expired')",
                                 [(now, message_id) for message_id in ids])
            return ids

    # --- status reports ----------------------------------------------------------------------------------

    def candidates_for_report(self, modem_id: int, tp_mr: int, since: float) -> list[sqlite3.Row]:
        """Parts this modem sent with this TP-MR since `since`, newest first (TP-MR wraps at 256)."""
        return self.query(
            "SELECT p.message_id, p.seq, p.sent_at, m.recipient FROM parts p JOIN messages m ON m.id = p.message_id "
            "WHERE p.modem_id = ? AND p.tp_mr = ? AND p.sent_at >= ? ORDER BY p.sent_at DESC",
            (modem_id, tp_mr, since))

    def record_report(self, message_id: int, seq: int, modem_id: int, outcome: str, code: int,
                      now: float) -> dict:
        """Store a part's report and aggregate the message: delivered when every part is, undelivered when
        any part failed for good. Returns the message's status, report and whether it changed. Durable: the
        modem is told to forget the report next."""
        with self.transaction(durable=True) as conn:
            conn.execute("UPDATE parts SET report_status = ?, report_code = ?, report_at = ? "
                         "WHERE message_id = ? AND seq = ?", (outcome, code, now, message_id, seq))
            message = conn.execute("SELECT status, segments FROM messages WHERE id = ?", (message_id,)).fetchone()
            outcomes = [row[0] for row in conn.execute(
                "SELECT report_status FROM parts WHERE message_id = ?", (message_id,))]
            status, report = message["status"], "pending"
            if "failed" in outcomes:
                status, report = "undelivered", "failed"
            elif len(outcomes) >= message["segments"] and all(item == "delivered" for item in outcomes):
                status, report = "delivered", "delivered"
            changed = status != message["status"]
            conn.execute("UPDATE messages SET status = ?, report = ?, updated_at = ?, "
                         "delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END WHERE id = ?",
                         (status, report, now, status, now, message_id))
            if outcome not in ("delivered", "failed"):  # a final report is the part's row (ROUTINE_EVENTS)
                self._event(conn, "part.report", message_id, modem_id, now=now, seq=seq, outcome=outcome,
                            code=code)
            if changed and status == "delivered":
                conn.execute("UPDATE modems SET delivered_total = delivered_total + 1 WHERE id = ?", (modem_id,))
            return {"status": status, "report": report, "changed": changed}

    def close_reports(self, sent_before: float) -> int:
        """Messages sent before `sent_before` with no report at all get `report: none` (they stay sent)."""
        with self.transaction() as conn:
            return conn.execute("UPDATE messages SET report = 'none' WHERE status = 'sent' AND report IS NULL "
                                "AND sent_at < ?", (sent_before,)).rowcount
