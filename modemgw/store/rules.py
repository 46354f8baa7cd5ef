"""Inbound rules (migration 8): what happens to an inbound SMS after STOP/START, in order; the auto-replies sent,
for their rate limit; and the outbox of e-mails the rules forward.

Rows only: whether a rule is a good rule (its match, its action, its regular expression) is decided by
`modemgw.rules`, and when an e-mail is tried again by `modemgw.mail`. A rule's `match` and `action` are JSON
objects, stored as text and handed back decoded. Positions are 1..n with no gaps: every change of order renumbers
them in the same transaction, so two rules never share a place.
"""

from __future__ import annotations

import json
import sqlite3

from modemgw.store.base import StoreBase, inserted_id
from modemgw.store.errors import NotFound

# The columns an update may change; anything else is refused by name (never written into the SQL text).
RULE_COLUMNS = ("name", "enabled", "match", "action")


def _rule(row: sqlite3.Row) -> dict:
    rule = dict(row)
    rule["enabled"] = bool(rule["enabled"])
    rule["match"] = json.loads(rule["match"])
    rule["action"] = json.loads(rule["action"])
    return rule


def _mail(row: sqlite3.Row) -> dict:
    mail = dict(row)
    mail["recipients"] = json.loads(mail["recipients"])
    return mail


class RulesStore(StoreBase):
    """Tables `inbound_rules`, `autoreplies`, `mail_outbox`."""

    # --- rules ---------------------------------------------------------------------------------------------------

    def rules(self) -> list[dict]:
        """Every rule, in the order they are evaluated. Raises StoreError."""
        return [_rule(row) for row in self.query("SELECT * FROM inbound_rules ORDER BY position, id")]

    def rule(self, rule_id: int) -> dict:
        """One rule. Raises NotFound, StoreError."""
        rows = self.query("SELECT * FROM inbound_rules WHERE id = ?", (rule_id,))
        if not rows:
            raise NotFound(f"no inbound rule {rule_id}")
        return _rule(rows[0])

    def add_rule(self, name: str, enabled: bool, match: dict, action: dict, now: float,
                 position: int | None = None) -> dict:
        """A new rule, last in the order (or at `position`, 1-based, the others moving down): its row. Raises
        StoreError."""
        with self.transaction() as conn:
            last = conn.execute("SELECT COALESCE(MAX(position), 0) FROM inbound_rules").fetchone()[0]
            rule_id = inserted_id(conn.execute(
                "INSERT INTO inbound_rules (position, name, enabled, match, action, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (last + 1, name, int(enabled), json.dumps(match), json.dumps(action), now, now)))
            if position is not None:
                self._place(conn, rule_id, position)
        return self.rule(rule_id)

    def update_rule(self, rule_id: int, changes: dict, now: float, position: int | None = None) -> dict:
        """Change a rule's `name`, `enabled`, `match` or `action` (the keys of `changes`) and/or move it to
        `position` (1-based; past the end means last): its row after. Raises NotFound, StoreError; ValueError for
        another key."""
        unknown = sorted(set(changes) - set(RULE_COLUMNS))
        if unknown:
            raise ValueError(f"inbound rules have no column {', '.join(unknown)}")
        values = {column: json.dumps(value) if column in ("match", "action") else
                  int(value) if column == "enabled" else value for column, value in changes.items()}
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM inbound_rules WHERE id = ?", (rule_id,)).fetchone() is None:
                raise NotFound(f"no inbound rule {rule_id}")
            assignments = "".join(f"{column} = ?, " for column in RULE_COLUMNS if column in values)
            conn.execute(f"UPDATE inbound_rules SET {assignments}updated_at = ? WHERE id = ?",
                         (*(values[column] for column in RULE_COLUMNS if column in values), now, rule_id))
            if position is not None:
                self._place(conn, rule_id, position)
        return self.rule(rule_id)

    @staticmethod
    def _place(conn: sqlite3.Connection, rule_id: int, position: int) -> None:
        """Put `rule_id` at `position` (1-based, clamped to 1..n) and renumber every rule 1..n."""
        order = [row[0] for row in conn.execute("SELECT id FROM inbound_rules ORDER BY position, id")]
        order.remove(rule_id)
        order.insert(max(0, min(len(order), position - 1)), rule_id)
        conn.executemany("UPDATE inbound_rules SET position = ? WHERE id = ?",
                         [(index, rule) for index, rule in enumerate(order, start=1)])

    def delete_rule(self, rule_id: int) -> None:
        """Delete a rule and its auto-reply log; the rules after it move up. Raises NotFound, StoreError."""
        with self.transaction() as conn:
            if conn.execute("DELETE FROM inbound_rules WHERE id = ?", (rule_id,)).rowcount == 0:
                raise NotFound(f"no inbound rule {rule_id}")
            conn.execute("DELETE FROM autoreplies WHERE rule_id = ?", (rule_id,))
            order = [row[0] for row in conn.execute("SELECT id FROM inbound_rules ORDER BY position, id")]
            conn.executemany("UPDATE inbound_rules SET position = ? WHERE id = ?",
                             [(index, rule) for index, rule in enumerate(order, start=1)])

    # --- the auto-reply log ----------------------------------------------------------------------------------------

    def claim_autoreply(self, rule_id: int, sender: str, since: float, now: float) -> bool:
        """Whether rule `rule_id` may answer `sender` now: it has not since `since`. When it may, the answer is
        recorded in the same transaction, so two messages from one sender arriving on two SIMs at once get one
        answer between them. Older entries of this (rule, sender) are dropped. Raises StoreError."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM autoreplies WHERE rule_id = ? AND sender = ? AND at <= ?",
                         (rule_id, sender, since))
            if conn.execute("SELECT 1 FROM autoreplies WHERE rule_id = ? AND sender = ? AND at > ? LIMIT 1",
                            (rule_id, sender, since)).fetchone() is not None:
                return False
            conn.execute("INSERT INTO autoreplies (rule_id, sender, at) VALUES (?, ?, ?)", (rule_id, sender, now))
            return True

    def last_autoreply(self, rule_id: int, sender: str) -> float | None:
        """When rule `rule_id` last answered `sender` (None: never, or so long ago the entry was dropped)."""
        return self.query("SELECT MAX(at) FROM autoreplies WHERE rule_id = ? AND sender = ?",
                          (rule_id, sender))[0][0]

    def purge_autoreplies(self, older_than: float) -> int:
        """Drop auto-reply entries from before `older_than` (past every rule's window): how many."""
        with self.transaction() as conn:
            return conn.execute("DELETE FROM autoreplies WHERE at < ?", (older_than,)).rowcount

    # --- the mail outbox --------------------------------------------------------------------------------------------

    def add_mail(self, recipients: list[str], subject: str, body: str, source: str | None, now: float) -> int:
        """Queue an e-mail, due `now`: its id. Raises StoreError."""
        with self.transaction() as conn:
            return inserted_id(conn.execute(
                "INSERT INTO mail_outbox (recipients, subject, body, source, status, attempts, next_attempt_at, "
                "created_at) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?)",
                (json.dumps(recipients), subject, body, source, now, now)))

    def mail(self, mail_id: int) -> dict:
        """One e-mail of the outbox. Raises NotFound, StoreError."""
        rows = self.query("SELECT * FROM mail_outbox WHERE id = ?", (mail_id,))
        if not rows:
            raise NotFound(f"no e-mail {mail_id} in the outbox")
        return _mail(rows[0])

    def recent_mail(self, limit: int = 50) -> list[dict]:
        """The latest `limit` e-mails of the outbox, newest first. Raises StoreError."""
        return [_mail(row) for row in self.query("SELECT * FROM mail_outbox ORDER BY id DESC LIMIT ?", (limit,))]

    def due_mail(self, now: float, limit: int) -> list[dict]:
        """Pending e-mails due by `now`, oldest first. Raises StoreError."""
        return [_mail(row) for row in self.query(
            "SELECT * FROM mail_outbox WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY id LIMIT ?",
            (now, limit))]

    def next_mail_after(self, now: float) -> float | None:
        """When the next pending e-mail that is not due yet falls due (None: none waits). Raises StoreError."""
        return self.query("SELECT MIN(next_attempt_at) FROM mail_outbox WHERE status = 'pending' "
                          "AND next_attempt_at > ?", (now,))[0][0]

    def mail_backlog(self) -> dict[str, int]:
        """E-mails by status (pending, sent, dead). Raises StoreError."""
        return {row[0]: row[1] for row in self.query("SELECT status, COUNT(*) FROM mail_outbox GROUP BY status")}

    def record_mail_attempt(self, mail_id: int, attempts: int, now: float, error: str | None,
                            retry_at: float | None) -> None:
        """The outcome of an e-mail's attempt number `attempts`: sent when there is no `error`; else pending again
        at `retry_at`, or dead when there is none. Raises StoreError."""
        with self.transaction() as conn:
            if error is None:
                conn.execute("UPDATE mail_outbox SET status = 'sent', attempts = ?, sent_at = ?, last_error = NULL "
                             "WHERE id = ?", (attempts, now, mail_id))
            elif retry_at is None:
                conn.execute("UPDATE mail_outbox SET status = 'dead', attempts = ?, last_error = ? WHERE id = ?",
                             (attempts, error, mail_id))
            else:
                conn.execute("UPDATE mail_outbox SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ?",
                             (attempts, retry_at, error, mail_id))

    def purge_mail(self, older_than: float) -> int:
        """Drop sent and dead e-mails created before `older_than`: how many. Raises StoreError."""
        with self.transaction() as conn:
            return conn.execute("DELETE FROM mail_outbox WHERE status != 'pending' AND created_at < ?",
                                (older_than,)).rowcount
