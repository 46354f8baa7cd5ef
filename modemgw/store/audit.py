"""The audit log: administrative actions and logins, who did them, from where, and whether they were allowed."""

from __future__ import annotations

import json
import time
from typing import Any

from modemgw.store.base import StoreBase, _busy_timeout, sharing
from modemgw.store.errors import StoreError

MAX_DETAIL = 4000  # characters of one entry's detail JSON
# How long an entry waits for another program's write lock (the connection's own patience is 10 s): a login works
# while another program holds the database (its session waits in memory), and must not wait 10 s for its entry.
# An entry that cannot wait longer is logged by `Gateway.audit` instead.
AUDIT_PATIENCE_MS = 2000


class AuditStore(StoreBase):
    """Table `audit` (migration 7): append-only, read newest first."""

    @sharing  # a modem worker's entry: the shared connection before the write lock, as everywhere
    def add_audit(self, action: str, actor: str, source: str | None = None, target: str | None = None,
                  detail: dict | None = None, ok: bool = True, now: float | None = None) -> int:
        """Append one entry; its id. Waits at most AUDIT_PATIENCE_MS for another program's lock. Raises
        StoreError."""
        text = json.dumps(detail, ensure_ascii=False, default=str)[:MAX_DETAIL] if detail else None
        # the patience covers this process's writers too: one of them (a scheduled job) may be the one waiting
        # up to 10 s for another program's lock, holding ours meanwhile
        started = time.monotonic()
        if not self._write_lock.acquire(timeout=AUDIT_PATIENCE_MS / 1000):
            raise StoreError(f"database {self.path}: another write of this gateway held it for "
                             f"{AUDIT_PATIENCE_MS / 1000:g} s", "locked")
        try:
            left = max(1, AUDIT_PATIENCE_MS - int(1000 * (time.monotonic() - started)))
            with _busy_timeout(self.connection(), left), self.transaction() as conn:
                cursor = conn.execute("INSERT INTO audit (at, actor, source, action, target, detail, ok) "
                                      "VALUES (?, ?, ?, ?, ?, ?, ?)",
                                      (now or time.time(), actor[:200], (source or "")[:200] or None, action[:100],
                                       (target or "")[:200] or None, text, 1 if ok else 0))
                return int(cursor.lastrowid or 0)
        finally:
            self._write_lock.release()

    def audit_entries(self, limit: int = 100, *, before: int | None = None, action: str | None = None,
                      actor: str | None = None, since: float | None = None, until: float | None = None,
                      ok: bool | None = None) -> list[dict]:
        """At most `limit` entries, newest first, with ids below `before`; `action` matches a prefix ("login."
        finds every login), `actor` a substring."""
        filters: list[tuple[str, Any]] = [("id < ?", before), ("at >= ?", since), ("at < ?", until),
                                          ("ok = ?", None if ok is None else int(ok))]
        clauses = [clause for clause, value in filters if value is not None]
        params: list[Any] = [value for _, value in filters if value is not None]
        if action:
            clauses.append("substr(action, 1, ?) = ?")
            params += [len(action), action]
        if actor:
            clauses.append("instr(lower(actor), lower(?)) > 0")
            params.append(actor)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.query(f"SELECT * FROM audit {where} ORDER BY id DESC LIMIT ?", (*params, limit))
        return [dict(row) | {"detail": json.loads(row["detail"]) if row["detail"] else {}, "ok": bool(row["ok"])}
                for row in rows]
