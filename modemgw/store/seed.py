"""Seeding a database with a realistic history, fast: for benchmarks and tests only (benchmarks/million.py,
tests/test_query_plans.py), never for the gateway itself.

The rows are those the gateway writes (messages with their parts and events, inbound messages, webhook deliveries,
audit entries, contacts), generated inside SQLite from a counter (a recursive CTE) in large transactions, so that
a million messages take well under a minute instead of the hours the gateway's own one-message-at-a-time writes
would. Values come from a multiplicative hash of each row's number, so a seed is the same every time.

What a seeded history looks like (`seed_messages`): messages spread evenly over `days` up to now, ids growing with
`created_at` (as the gateway's do); of the settled ones 85 % delivered, 5 % sent (no report, or none yet), 3 %
undelivered, 4 % failed, 2 % expired, 1 % canceled; the newest few are queued, scheduled (due in the coming week)
or sending; 85 % one segment, 12 % two, 3 % three; recipients drawn from `recipients` numbers; 30 % with a
client_ref; about 5 inbound messages for every 100 sent, from the same numbers; a webhook delivery for every 10th
message.
"""

from __future__ import annotations

import json
import time

from modemgw.store.base import StoreBase

CHUNK = 50_000  # messages per transaction: big enough to be fast, small enough to keep the WAL short

# A number in [0, m) from row number k and a salt: Knuth's multiplicative hash (its high bits), deterministic.
_HASH = "(((({k}) * 2654435761 + {salt}) % 4294967296) / 65536 % {m})"


def _h(k: str, salt: int, m: int | str) -> str:
    return _HASH.format(k=k, salt=salt, m=m)


# the status of message number x (of n): the newest 0.5 % are still on their way (the newest 4 being sent: one per
# SIM, as a gateway has them)
_STATUS = (f"CASE WHEN x > :n - 4 THEN 'sending' WHEN x > :n - :n / 200 THEN CASE WHEN {_h('x', 7, 10)} < 6 "
           "THEN 'scheduled' ELSE 'queued' END "
           f"ELSE CASE WHEN {_h('x', 11, 100)} < 85 THEN 'delivered' WHEN {_h('x', 11, 100)} < 90 THEN 'sent' "
           f"WHEN {_h('x', 11, 100)} < 93 THEN 'undelivered' WHEN {_h('x', 11, 100)} < 97 THEN 'failed' "
           f"WHEN {_h('x', 11, 100)} < 99 THEN 'expired' ELSE 'canceled' END END")

_BODIES = ("'Your verification code is ' || printf('%06d', {h})",
           "'Reminder: your appointment is tomorrow at ' || ({h} % 12 + 8) || ':00. Reply STOP to opt out.'",
           "'Order ' || {h} || ' has been dispatched and will arrive within two working days. Track it online "
           "with the reference on your receipt; call us if anything is wrong with your delivery.'",
           "'Alert: disk usage on host-' || ({h} % 40) || ' is above 90 %'")

_MESSAGES = f"""
WITH RECURSIVE c(x) AS (SELECT :first UNION ALL SELECT x + 1 FROM c WHERE x < :last),
g AS (SELECT x, {_STATUS} AS status, :t0 + (x - 1) * :step AS created,
             CASE WHEN {_h('x', 3, 100)} < 85 THEN 1 WHEN {_h('x', 3, 100)} < 97 THEN 2 ELSE 3 END AS segments,
             1 + {_h('x', 5, ':modems')} AS sim, 2 + {_h('x', 13, 5)} AS send_delay,
             CASE WHEN {_h('x', 17, 100)} = 0 THEN 3600 ELSE 3 END + {_h('x', 19, 60)} AS took
      FROM c)
INSERT INTO messages (id, submission_id, recipient, body, encoding, segments, status, priority, due_at, expires_at,
    created_at, updated_at, client_ref, api_key_id, modem_id, attempts, request_report, error_code, error_reason,
    sent_at, delivered_at, report, prefer_modem_id, user_id{{claimed}})
SELECT :base + x, :base_submission + (x - 1) / 20 + 1, printf('+4477%08d', {_h('x', 23, ':recipients')} * 7 + 1000),
    CASE {_h('x', 29, 4)} WHEN 0 THEN {_BODIES[0].format(h=_h('x', 31, 1000000))}
        WHEN 1 THEN {_BODIES[1].format(h=_h('x', 31, 1000000))}
        WHEN 2 THEN {_BODIES[2].format(h=_h('x', 31, 1000000))} ELSE {_BODIES[3].format(h=_h('x', 31, 1000000))} END,
    'gsm7', segments, status, CASE WHEN {_h('x', 37, 50)} = 0 THEN 5 ELSE 0 END,
    CASE WHEN status = 'scheduled' THEN :now + 3600 + {_h('x', 41, 7 * 86400)} ELSE created END,
    CASE WHEN status = 'expired' THEN created + 86400 END,
    created,
    CASE WHEN status = 'delivered' THEN created + send_delay + took
         WHEN status IN ('sent', 'sending') THEN created + send_delay
         WHEN status = 'undelivered' THEN created + send_delay + took
         WHEN status = 'failed' THEN created + send_delay
         WHEN status = 'expired' THEN created + 86400 WHEN status = 'canceled' THEN created + 600 ELSE created END,
    CASE WHEN {_h('x', 43, 10)} < 3 THEN 'order-' || (:base + x) END,
    CASE WHEN {_h('x', 47, 10)} < 7 THEN 1 + {_h('x', 53, 3)} END,
    CASE WHEN status IN ('delivered', 'sent', 'undelivered', 'failed', 'sending') THEN sim END,
    CASE WHEN status IN ('queued', 'scheduled', 'canceled') THEN 0 ELSE 1 END, 1,
    CASE WHEN status = 'failed' THEN 500 WHEN status = 'undelivered' THEN 65 END,
    CASE WHEN status = 'failed' THEN 'refused by the network (unknown error)'
         WHEN status = 'undelivered' THEN 'the network gave up' END,
    CASE WHEN status IN ('delivered', 'sent', 'undelivered') THEN created + send_delay END,
    CASE WHEN status = 'delivered' THEN created + send_delay + took END,
    CASE WHEN status = 'delivered' THEN 'delivered' WHEN status = 'undelivered' THEN 'failed'
         WHEN status = 'sent' AND created < :now - 86400 THEN 'none' END,
    CASE WHEN {_h('x', 59, 50)} = 0 THEN sim END,
    CASE WHEN {_h('x', 47, 10)} >= 7 AND {_h('x', 61, 2)} = 0 THEN 1 END{{claimed_value}}
FROM g
"""
# when a modem took the message (migration 11's column; the timeline's "handed to a SIM")
_CLAIMED = ("CASE WHEN status IN ('delivered', 'sent', 'undelivered', 'failed', 'sending') "
            "THEN created + send_delay - 1 END")

_SUBMISSIONS = """
WITH RECURSIVE c(x) AS (SELECT :first UNION ALL SELECT x + 1 FROM c WHERE x < :last)
INSERT INTO submissions (id, body_hash, api_key_id, created_at, result{ranged})
SELECT :base_submission + x, 'seed', NULL, :t0 + (x - 1) * 20 * :step, '{{}}'{range_values} FROM c
"""
# each submission's run of message ids (migration 13), when the schema has it: 20 messages each, as _MESSAGES
_RANGE = ", :base + (x - 1) * 20 + 1, MIN(:base + x * 20, :base + :n)"

# the parts of the messages with ids in [:lo, :hi] that a SIM sent (a failed message's too: it failed at its first)
_PARTS = """
WITH RECURSIVE s(seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM s WHERE seq < 3)
INSERT INTO parts (message_id, seq, modem_id, tp_mr, sent_at, report_status, report_code, report_at)
SELECT m.id, s.seq, m.modem_id, (m.id * 3 + s.seq) % 256, COALESCE(m.sent_at, m.updated_at),
       CASE m.status WHEN 'delivered' THEN 'delivered' WHEN 'undelivered' THEN 'failed' END,
       CASE m.status WHEN 'delivered' THEN 0 WHEN 'undelivered' THEN 65 END,
       CASE WHEN m.status IN ('delivered', 'undelivered') THEN m.updated_at END
FROM messages m JOIN s ON s.seq <= CASE WHEN m.status = 'failed' THEN 1 ELSE m.segments END
WHERE m.id BETWEEN :lo AND :hi AND m.status IN ('delivered', 'sent', 'undelivered', 'failed')
ORDER BY m.id, s.seq
"""

# the events the gateway writes for those messages: what only the log tells (a failure, an expiry, a cancel, a
# retry); a message's routine steps are told from its rows (store/base.py `_timeline`), not logged
_EVENTS = """
WITH m AS (SELECT * FROM messages WHERE id BETWEEN :lo AND :hi),
e(at, message_id, modem_id, kind, detail) AS (
    SELECT updated_at, id, modem_id, 'message.' || status, CASE WHEN status = 'failed' THEN
        json_object('code', error_code, 'reason', error_reason) END FROM m
        WHERE status IN ('failed', 'expired', 'canceled')
    UNION ALL SELECT COALESCE(sent_at, updated_at) - 30, id, modem_id, 'message.retry',
        json_object('reason', 'the network is busy', 'code', 42, 'due_at', COALESCE(sent_at, updated_at) - 2)
        FROM m WHERE id % 50 = 0 AND status IN ('delivered', 'sent', 'undelivered', 'failed'))
INSERT INTO events (at, message_id, modem_id, kind, detail) SELECT * FROM e ORDER BY at, message_id
"""

# about 5 inbound messages for every 100 messages: from the numbers messages go to, to the SIMs, all read but the
# newest
_INBOX = f"""
WITH RECURSIVE c(x) AS (SELECT :first UNION ALL SELECT x + 1 FROM c WHERE x < :last)
INSERT INTO inbox (modem_id, sender, body, sent_at, received_at, parts, partial, read, dedupe_key)
SELECT 1 + {_h('x', 71, ':modems')}, printf('+4477%08d', {_h('x', 73, ':recipients')} * 7 + 1000),
    CASE {_h('x', 79, 3)} WHEN 0 THEN 'Yes, that works for me' WHEN 1 THEN 'STOP' ELSE 'Can you call me back?' END,
    :t0 + (x - 1) * :inbox_step - 5, :t0 + (x - 1) * :inbox_step, 1, 0,
    CASE WHEN x > :inbound - 20 THEN 0 ELSE 1 END, 'seed:' || :nonce || ':' || x FROM c
"""

_DELIVERIES = """
INSERT INTO webhook_deliveries (webhook_id, url, event, event_id, message_id{payload_column}, status, attempts,
    next_attempt_at, last_status_code, last_error, created_at, delivered_at)
SELECT :webhook, 'https://crm.example.com/sms-hook', 'message.' || status, 'evt_seed_' || id, id{payload_value},
    CASE WHEN id % 97 = 0 THEN 'dead'
    WHEN updated_at > :now - 60 THEN 'pending' ELSE 'delivered' END,
    CASE WHEN id % 97 = 0 THEN 12 ELSE 1 END, updated_at, CASE WHEN id % 97 = 0 THEN 503 ELSE 200 END,
    CASE WHEN id % 97 = 0 THEN 'HTTP 503' END, updated_at, CASE WHEN id % 97 != 0 THEN updated_at + 0.2 END
FROM messages m WHERE id BETWEEN :lo AND :hi AND id % 10 = 0 AND status IN ('delivered', 'undelivered', 'failed')
ORDER BY id
"""
_PAYLOAD = "json_object('event', 'message.' || m.status, 'id', m.id, 'to', m.recipient)"
# the payloads of the deliveries just seeded, where they have a table of their own (migration 14)
_PAYLOADS = f"""
INSERT INTO webhook_payloads (delivery_id, payload)
SELECT d.id, {_PAYLOAD} FROM webhook_deliveries d JOIN messages m ON m.id = d.message_id WHERE d.id > :after
"""

_AUDIT = f"""
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < :count)
INSERT INTO audit (at, actor, source, action, target, detail, ok)
SELECT :t0 + (x - 1) * :step, CASE {_h('x', 83, 3)} WHEN 0 THEN 'user admin' WHEN 1 THEN 'user alice'
    ELSE 'API key crm' END, '192.0.2.' || {_h('x', 89, 200)},
    CASE {_h('x', 97, 5)} WHEN 0 THEN 'login.ok' WHEN 1 THEN 'login.failed' WHEN 2 THEN 'message.delete'
    WHEN 3 THEN 'key.create' ELSE 'modem.update' END, 'seed ' || x, NULL, CASE WHEN {_h('x', 97, 5)} = 1 THEN 0
    ELSE 1 END FROM c
"""

_FIRST_NAMES = ("Alice", "Bob", "Chloé", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kasia", "Liam")
_LAST_NAMES = ("Smith", "Jones", "Müller", "Rossi", "Dubois", "Nowak", "García", "Silva", "Khan", "Novak")

_CONTACTS = f"""
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < :count)
INSERT OR IGNORE INTO contacts (name, number, fields, notes, created_at, updated_at)
SELECT json_extract(:first_names, '$[' || {_h('x', 101, len(_FIRST_NAMES))} || ']') || ' '
    || json_extract(:last_names, '$[' || {_h('x', 103, len(_LAST_NAMES))} || ']') || ' ' || x,
    printf('+4477%08d', x * 7 + 1000), json_object('company', 'Company ' || (x % 300)),
    CASE WHEN x % 5 = 0 THEN 'prefers mornings' ELSE '' END, :now, :now FROM c
"""


def _modems(conn, count: int, now: float) -> None:
    """`count` SIMs (ids 1..count), as the gateway records modems it has seen."""
    for number in range(1, count + 1):
        conn.execute("INSERT OR IGNORE INTO modems (id, imei, iccid, label, number, manufacturer, model, state, "
                     "signal_dbm, registration, operator, last_seen, created_at) VALUES (?, ?, ?, ?, ?, 'Quectel', "
                     "'EC25', 'offline', -71, 'home', 'Seednet', ?, ?)",
                     (number, f"35693803{number:07d}", f"89440100000{number:09d}", f"sim-{number}",
                      f"+447700{number:06d}", now, now))


def seed_messages(store: StoreBase, n: int, *, days: float = 365.0, modems: int = 4, recipients: int = 50_000,
                  now: float | None = None, contacts: int = 5_000, audit: int = 20_000,
                  progress=None) -> dict:
    """Add `n` messages sent over the last `days` (up to `now`) through `modems` SIMs to `recipients` numbers,
    with their parts, events, inbound messages, webhook deliveries, audit entries and `contacts` contacts (see
    the module's docstring); returns what was written, {"messages", "parts", "events", "inbox",
    "webhook_deliveries", "audit", "contacts", "seconds"}. `progress(done, n)` is called after each transaction.
    Adds to what the database holds (ids continue); meant for an empty one. Raises StoreError."""
    started = time.perf_counter()
    now = time.time() if now is None else now
    t0 = now - days * 86400
    step = days * 86400 / max(1, n)
    inbound = n // 20
    conn = store.connection()
    before = {table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
              for table in ("parts", "events", "webhook_deliveries")}
    claimed = any(row[1] == "claimed_at" for row in conn.execute("PRAGMA table_info(messages)"))
    messages_sql = _MESSAGES.format(claimed=", claimed_at" if claimed else "",
                                    claimed_value=f", {_CLAIMED}" if claimed else "")
    conn.execute("PRAGMA cache_size = -262144")  # 256 MiB while seeding: the indexes' pages stay in memory
    try:
        with store.transaction() as tx:
            _modems(tx, modems, now)
            tx.execute("INSERT INTO webhooks (url, events, secret, enabled, created_at) VALUES "
                       "('https://crm.example.com/sms-hook', '*', 'seed-secret', 1, ?)", (t0,))
            webhook = tx.execute("SELECT MAX(id) FROM webhooks").fetchone()[0]
            base = tx.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()[0]
            base_submission = tx.execute("SELECT COALESCE(MAX(id), 0) FROM submissions").fetchone()[0]
            ranged = any(row[1] == "first_id" for row in tx.execute("PRAGMA table_info(submissions)"))
            separate = bool(tx.execute("SELECT 1 FROM sqlite_master WHERE name = 'webhook_payloads'").fetchone())
            tx.execute(_SUBMISSIONS.format(ranged=", first_id, last_id" if ranged else "",
                                           range_values=_RANGE if ranged else ""),
                       {"first": 1, "last": (n + 19) // 20, "base_submission": base_submission, "t0": t0,
                        "step": step, "base": base, "n": n})
        for first in range(1, n + 1, CHUNK):
            last = min(n, first + CHUNK - 1)
            values = {"first": first, "last": last, "n": n, "t0": t0, "step": step, "now": now, "modems": modems,
                      "recipients": recipients, "base": base, "base_submission": base_submission}
            with store.transaction() as tx:
                tx.execute(messages_sql, values)
                bounds = {"lo": base + first, "hi": base + last, "now": now, "webhook": webhook}
                tx.execute(_PARTS, bounds)
                tx.execute(_EVENTS, bounds)
                if separate:
                    after = tx.execute("SELECT IFNULL(MAX(id), 0) FROM webhook_deliveries").fetchone()[0]
                    tx.execute(_DELIVERIES.format(payload_column="", payload_value=""), bounds)
                    tx.execute(_PAYLOADS, {"after": after})
                else:
                    tx.execute(_DELIVERIES.format(payload_column=", payload", payload_value=f", {_PAYLOAD}"), bounds)
            if progress is not None:
                progress(last, n)
        with store.transaction() as tx:
            if inbound:
                tx.execute(_INBOX, {"first": 1, "last": inbound, "inbound": inbound, "t0": t0,
                                    "inbox_step": days * 86400 / inbound, "modems": modems, "recipients": recipients,
                                    "nonce": f"{now:.6f}"})
            if audit:
                tx.execute(_AUDIT, {"count": audit, "t0": t0, "step": days * 86400 / audit})
            if contacts:
                tx.execute(_CONTACTS, {"count": contacts, "now": now, "first_names": json.dumps(_FIRST_NAMES),
                                       "last_names": json.dumps(_LAST_NAMES)})
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.execute("PRAGMA cache_size = -2000")
    after = {table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
             for table in ("parts", "events", "webhook_deliveries")}
    return {"messages": n, "parts": after["parts"] - before["parts"], "events": after["events"] - before["events"],
            "inbox": inbound, "webhook_deliveries": after["webhook_deliveries"] - before["webhook_deliveries"],
            "audit": audit, "contacts": contacts, "seconds": round(time.perf_counter() - started, 1)}
