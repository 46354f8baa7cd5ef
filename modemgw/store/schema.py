"""The schema: its migrations, in order, and applying them.

Each migration is one SQL script; a database's `PRAGMA user_version` is the number of migrations applied to it.
Existing databases depend on this list: a migration is never edited or reordered, only appended.
"""

from __future__ import annotations

import sqlite3

from modemgw.store.errors import StoreError

MIGRATIONS: list[str] = [
    # 1: the whole schema as of the gateway core
    """
    CREATE TABLE modems (
        id INTEGER PRIMARY KEY,
        imei TEXT UNIQUE,
        iccid TEXT UNIQUE,
        imsi TEXT,
        label TEXT UNIQUE,
        grp TEXT,
        number TEXT,
        manufacturer TEXT,
        model TEXT,
        profile TEXT,
        device TEXT,
        enabled INTEGER NOT NULL DEFAULT 1,
        rate_per_minute INTEGER,
        quota_day INTEGER,
        quota_month INTEGER,
        day_key TEXT,
        sent_day INTEGER NOT NULL DEFAULT 0,
        month_key TEXT,
        sent_month INTEGER NOT NULL DEFAULT 0,
        sent_total INTEGER NOT NULL DEFAULT 0,
        failed_total INTEGER NOT NULL DEFAULT 0,
        delivered_total INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'offline',
        signal_dbm INTEGER,
        registration TEXT,
        operator TEXT,
        last_error TEXT,
        last_seen REAL,
        created_at REAL NOT NULL
    );
    CREATE TABLE submissions (
        id INTEGER PRIMARY KEY,
        idempotency_key TEXT UNIQUE,
        body_hash TEXT NOT NULL,
        result TEXT,
        api_key_id INTEGER,
        created_at REAL NOT NULL
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        submission_id INTEGER,
        recipient TEXT NOT NULL,
        body TEXT NOT NULL,
        encoding TEXT NOT NULL,
        segments INTEGER NOT NULL,
        status TEXT NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        due_at REAL NOT NULL,
        expires_at REAL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        client_ref TEXT,
        api_key_id INTEGER,
        route_modem TEXT,
        route_group TEXT,
        pinned_modem_id INTEGER,
        avoid_modem_id INTEGER,
        modem_id INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0,
        concat_ref INTEGER,
        request_report INTEGER NOT NULL DEFAULT 1,
        validity INTEGER,
        error_code INTEGER,
        error_reason TEXT,
        sent_at REAL,
        delivered_at REAL,
        report TEXT,
        possible_duplicate INTEGER NOT NULL DEFAULT 0,
        callback_url TEXT
    );
    CREATE INDEX messages_queue ON messages(priority DESC, id) WHERE status = 'queued';
    CREATE INDEX messages_scheduled ON messages(due_at) WHERE status = 'scheduled';
    CREATE INDEX messages_status ON messages(status, id);
    CREATE INDEX messages_recipient ON messages(recipient, id);
    CREATE INDEX messages_client_ref ON messages(client_ref) WHERE client_ref IS NOT NULL;
    CREATE INDEX messages_created ON messages(created_at);
    CREATE INDEX messages_modem ON messages(modem_id, id);
    CREATE INDEX messages_awaiting_report ON messages(sent_at) WHERE status = 'sent' AND report IS NULL;
    CREATE TABLE parts (
        message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        modem_id INTEGER,
        tp_mr INTEGER,
        sent_at REAL,
        report_status TEXT,
        report_code INTEGER,
        report_at REAL,
        PRIMARY KEY (message_id, seq)
    );
    CREATE INDEX parts_report ON parts(modem_id, tp_mr, sent_at);
    CREATE INDEX parts_sent ON parts(modem_id, sent_at);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        message_id INTEGER,
        modem_id INTEGER,
        kind TEXT NOT NULL,
        detail TEXT
    );
    CREATE INDEX events_message ON events(message_id, id);
    CREATE INDEX events_modem ON events(modem_id, id);
    CREATE TABLE inbox (
        id INTEGER PRIMARY KEY,
        modem_id INTEGER,
        sender TEXT NOT NULL,
        body TEXT NOT NULL,
        sent_at REAL,
        received_at REAL NOT NULL,
        parts INTEGER NOT NULL DEFAULT 1,
        partial INTEGER NOT NULL DEFAULT 0,
        read INTEGER NOT NULL DEFAULT 0,
        dedupe_key TEXT UNIQUE
    );
    CREATE INDEX inbox_sender ON inbox(sender, id);
    CREATE INDEX inbox_received ON inbox(received_at);
    CREATE TABLE inbox_parts (
        id INTEGER PRIMARY KEY,
        modem_id INTEGER,
        sender TEXT NOT NULL,
        reference INTEGER NOT NULL,
        total INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        encoding TEXT NOT NULL,
        payload BLOB NOT NULL,
        sent_at REAL,
        received_at REAL NOT NULL,
        dedupe_key TEXT UNIQUE
    );
    CREATE INDEX inbox_parts_group ON inbox_parts(sender, reference, total);
    CREATE TABLE inbox_seen (dedupe_key TEXT PRIMARY KEY, at REAL NOT NULL);
    CREATE TABLE optouts (
        number TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        source TEXT NOT NULL,
        note TEXT
    );
    CREATE TABLE sticky (
        recipient TEXT PRIMARY KEY,
        modem_id INTEGER NOT NULL,
        at REAL NOT NULL
    );
    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        prefix TEXT NOT NULL UNIQUE,
        hash TEXT NOT NULL,
        scopes TEXT NOT NULL,
        grp TEXT,
        rate_per_minute INTEGER,
        created_at REAL NOT NULL,
        last_used_at REAL,
        revoked_at REAL
    );
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL,
        created_at REAL NOT NULL,
        last_login_at REAL,
        disabled INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE webhooks (
        id INTEGER PRIMARY KEY,
        url TEXT NOT NULL,
        events TEXT NOT NULL,
        secret TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        created_at REAL NOT NULL
    );
    CREATE TABLE webhook_deliveries (
        id INTEGER PRIMARY KEY,
        webhook_id INTEGER NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
        event TEXT NOT NULL,
        payload TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL,
        last_status_code INTEGER,
        last_error TEXT,
        created_at REAL NOT NULL,
        delivered_at REAL
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
    """,
    # 2: webhook deliveries also go to a message's own callback_url (no subscription), carry their target
    # and event id, and are ordered per message; a settings table holds the gateway's signing secret.
    """
    CREATE TABLE webhook_deliveries_new (
        id INTEGER PRIMARY KEY,
        webhook_id INTEGER REFERENCES webhooks(id) ON DELETE CASCADE,
        url TEXT NOT NULL,
        event TEXT NOT NULL,
        event_id TEXT NOT NULL,
        message_id INTEGER,
        payload TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL,
        last_status_code INTEGER,
        last_error TEXT,
        created_at REAL NOT NULL,
        delivered_at REAL
    );
    INSERT INTO webhook_deliveries_new (id, webhook_id, url, event, event_id, payload, status, attempts,
        next_attempt_at, last_status_code, last_error, created_at, delivered_at)
        SELECT d.id, d.webhook_id, w.url, d.event, 'evt_' || d.id, d.payload, d.status, d.attempts,
               d.next_attempt_at, d.last_status_code, d.last_error, d.created_at, d.delivered_at
        FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id;
    DROP TABLE webhook_deliveries;
    ALTER TABLE webhook_deliveries_new RENAME TO webhook_deliveries;
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
    CREATE INDEX webhook_deliveries_order ON webhook_deliveries(url, message_id, id);
    CREATE INDEX webhook_deliveries_hook ON webhook_deliveries(webhook_id, id);
    CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 3: how a modem's status reports reach us when its first report route gave none (the report watchdog):
    # 'ds=1' (direct +CDS), 'poll' (stored, polled), 'none' (the modem or network gives none)
    """
    ALTER TABLE modems ADD COLUMN report_mode TEXT;
    """,
    # 4: web UI sessions kept on the server, so that logout, a password change, disabling or deleting a user end
    # them at once; the cookie carries only the session's random token, of which this keeps a SHA-256
    """
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at REAL NOT NULL,
        last_seen_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX sessions_user ON sessions(user_id);
    """,
    # 5: an Idempotency-Key belongs to the API key that sent it (gateway._scoped): earlier keys are scoped as
    # their submissions were made, so a client retrying across the upgrade still gets its first result
    """
    UPDATE submissions SET idempotency_key = CASE WHEN api_key_id IS NULL THEN 'local:'
        ELSE 'key' || api_key_id || ':' END || idempotency_key WHERE idempotency_key IS NOT NULL;
    """,
    # 6: the office. A message may prefer the SIM a conversation belongs to (`prefer_modem_id`: a reply leaves from
    # the SIM the customer texted, or from another live one when that SIM cannot send) and remember the inbound
    # message it answers; conversations are (our SIM, their number). The address book (contacts, their groups) and
    # saved templates.
    """
    ALTER TABLE messages ADD COLUMN prefer_modem_id INTEGER;
    ALTER TABLE messages ADD COLUMN reply_to INTEGER;
    CREATE INDEX inbox_conversation ON inbox(modem_id, sender, id);
    CREATE TABLE contacts (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        number TEXT NOT NULL UNIQUE,
        fields TEXT NOT NULL DEFAULT '{}',
        notes TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX contacts_name ON contacts(name COLLATE NOCASE);
    CREATE TABLE contact_groups (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        description TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL
    );
    CREATE TABLE group_members (
        group_id INTEGER NOT NULL REFERENCES contact_groups(id) ON DELETE CASCADE,
        contact_id INTEGER NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
        PRIMARY KEY (group_id, contact_id)
    );
    CREATE INDEX group_members_contact ON group_members(contact_id);
    CREATE TABLE templates (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        body TEXT NOT NULL,
        spintax INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
    # 7: running the office. The audit log: every administrative action and login, who (a user, an API key, the
    # command line), from where, what, on what, whether it was allowed; and the web UI user who sent a message.
    """
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        source TEXT,
        action TEXT NOT NULL,
        target TEXT,
        detail TEXT,
        ok INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX audit_at ON audit(at);
    CREATE INDEX audit_action ON audit(action, id);
    ALTER TABLE messages ADD COLUMN user_id INTEGER;
    """,
    # 8: integrations. Inbound rules (forward by e-mail or SMS, webhook, auto-reply, stop), evaluated in `position`
    # order; the auto-replies sent per (rule, sender), for their rate limit; alert notifications already sent
    # (Alertmanager, Grafana), for de-duplication within a group interval; API keys that may pass their token in a
    # URL's query string (legacy devices).
    """
    CREATE TABLE inbound_rules (
        id INTEGER PRIMARY KEY,
        position INTEGER NOT NULL,
        name TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        match TEXT NOT NULL,
        action TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX inbound_rules_order ON inbound_rules(position, id);
    CREATE TABLE autoreplies (
        rule_id INTEGER NOT NULL,
        sender TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX autoreplies_recent ON autoreplies(rule_id, sender, at);
    CREATE TABLE alert_notifications (
        dedupe_key TEXT PRIMARY KEY,
        at REAL NOT NULL,
        message_ids TEXT
    );
    ALTER TABLE api_keys ADD COLUMN allow_query_token INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE mail_outbox (
        id INTEGER PRIMARY KEY,
        recipients TEXT NOT NULL,
        subject TEXT NOT NULL,
        body TEXT NOT NULL,
        source TEXT,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL,
        last_error TEXT,
        created_at REAL NOT NULL,
        sent_at REAL
    );
    CREATE INDEX mail_outbox_due ON mail_outbox(status, next_attempt_at);
    """,
    # 9: the SMPP server. Its users (system_id, a password hash, a throughput limit, whether it takes inbound SMS);
    # the user a message came from over SMPP (its delivery receipt goes back there); and the durable queue of
    # deliver_sm PDUs (receipts and inbound SMS) kept until a receiver of that user acknowledges them.
    """
    CREATE TABLE smpp_users (
        id INTEGER PRIMARY KEY,
        system_id TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        throughput INTEGER,
        receive_inbound INTEGER NOT NULL DEFAULT 0,
        disabled INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    );
    ALTER TABLE messages ADD COLUMN smpp_user_id INTEGER;
    CREATE TABLE smpp_outbox (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES smpp_users(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        message_id INTEGER,
        inbox_id INTEGER,
        payload TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        delivered_at REAL
    );
    CREATE INDEX smpp_outbox_due ON smpp_outbox(user_id, status, id);
    """,
    # 10: the parts of concatenated submit_sm the SMPP server answered ESME_ROK and holds until the last arrives
    # (a crash must not lose them). A group is (user_id, source, destination, reference, total), `group_key` its
    # random idempotency key; `part_id` the id the client was given (NULL for the part that completed it).
    """
    CREATE TABLE smpp_parts (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES smpp_users(id) ON DELETE CASCADE,
        group_key TEXT NOT NULL,
        source TEXT NOT NULL,
        destination TEXT NOT NULL,
        reference INTEGER NOT NULL,
        total INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        data_coding INTEGER NOT NULL,
        data TEXT NOT NULL,
        options TEXT NOT NULL,
        part_id TEXT,
        created_at REAL NOT NULL
    );
    CREATE INDEX smpp_parts_group ON smpp_parts(user_id, source, destination, reference, total);
    CREATE INDEX smpp_parts_key ON smpp_parts(group_key);
    """,
    # 11: the write path (#19): filled in by the write-path work.
    """
    SELECT 1;
    """,
    # 12: query indexes for a million messages (#19): filled in by the query work.
    """
    SELECT 1;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    """The number of migrations applied to the database of `conn`."""
    return conn.execute("PRAGMA user_version").fetchone()[0]


def migrate(conn: sqlite3.Connection, path: str) -> None:
    """Apply the migrations `conn`'s database lacks, each in its own transaction with its version number.
    Raises StoreError when the database is newer than this modemgw; sqlite3.Error as SQLite raised it (the
    caller rolls back: executescript leaves a failed script's transaction open)."""
    version = schema_version(conn)
    if version > SCHEMA_VERSION:
        raise StoreError(f"database {path} has schema version {version}, newer than this modemgw "
                         f"({SCHEMA_VERSION}); upgrade modemgw")
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        conn.executescript(f"BEGIN IMMEDIATE; {script}; PRAGMA user_version = {number}; COMMIT;")
