"""The schema: its migrations, in order, and applying them.

Each migration is one SQL script; a database's `PRAGMA user_version` is the number of migrations applied to it.
Existing databases depend on this list: a migration is never edited or reordered, only appended.
"""

from __future__ import annotations

import sqlite3

from modemgw.store.errors import StoreError

# Migration 12's delivery times: `stats_daily` rows of kind 'took:<s>' count the messages delivered `s` seconds
# after they were sent (to two significant figures: whole seconds under 100 s, then 10 s steps, 100 s steps, ...),
# filed under the local day they were sent, per SIM. The statistics' medians are read from them (a year's report
# reads a few thousand rows, not every delivered message) and are exact to that precision.
_TOOK_BUCKET = ("(WITH d(s) AS (SELECT MAX(0, CAST({m}.delivered_at - {m}.sent_at AS INTEGER))) SELECT CASE "
                "WHEN s < 100 THEN s WHEN s < 1000 THEN s / 10 * 10 WHEN s < 10000 THEN s / 100 * 100 "
                "WHEN s < 100000 THEN s / 1000 * 1000 ELSE s / 10000 * 10000 END FROM d)")
_TOOK_ADD = ("INSERT INTO stats_daily (day, kind, modem_id, count) SELECT date({m}.sent_at, 'unixepoch', 'localtime'), "
             "'took:' || " + _TOOK_BUCKET + ", IFNULL({m}.modem_id, 0), 1 WHERE {m}.status = 'delivered' "
             "AND {m}.sent_at IS NOT NULL AND {m}.delivered_at IS NOT NULL "
             "ON CONFLICT (day, kind, modem_id) DO UPDATE SET count = count + 1;")
_TOOK_REMOVE = ("UPDATE stats_daily SET count = count - 1 WHERE {m}.status = 'delivered' AND {m}.sent_at IS NOT NULL "
                "AND {m}.delivered_at IS NOT NULL AND day = date({m}.sent_at, 'unixepoch', 'localtime') "
                "AND kind = 'took:' || " + _TOOK_BUCKET + " AND modem_id = IFNULL({m}.modem_id, 0);")
_TOOK = f"""
    CREATE TRIGGER stats_took_added AFTER INSERT ON messages WHEN NEW.status = 'delivered' BEGIN
        {_TOOK_ADD.format(m="NEW")}
    END;
    CREATE TRIGGER stats_took_changed AFTER UPDATE OF status, sent_at, delivered_at, modem_id ON messages
    WHEN (OLD.status = 'delivered' OR NEW.status = 'delivered') AND (OLD.status IS NOT NEW.status
        OR OLD.sent_at IS NOT NEW.sent_at OR OLD.delivered_at IS NOT NEW.delivered_at
        OR OLD.modem_id IS NOT NEW.modem_id) BEGIN
        {_TOOK_REMOVE.format(m="OLD")}
        {_TOOK_ADD.format(m="NEW")}
    END;
    CREATE TRIGGER stats_took_deleted AFTER DELETE ON messages WHEN OLD.status = 'delivered' BEGIN
        {_TOOK_REMOVE.format(m="OLD")}
    END;
    INSERT INTO stats_daily (day, kind, modem_id, count)
    SELECT date(m.sent_at, 'unixepoch', 'localtime'), 'took:' || {_TOOK_BUCKET.format(m="m")}, IFNULL(m.modem_id, 0),
        COUNT(*) FROM messages m WHERE m.status = 'delivered' AND m.sent_at IS NOT NULL AND m.delivered_at IS NOT NULL
    GROUP BY 1, 2, 3;
"""

# Migration 17: forget the kept periods (day, week, month) around a day whose counts or delivery times change. A
# trigger's UPDATE never changes a row's day (its key), so NEW.day is the only day an update touches.
_FORGET = """
        DELETE FROM stats_periods WHERE period = 'day' AND start = {0}.day;
        DELETE FROM stats_periods WHERE period = 'week' AND start = date({0}.day, 'weekday 0', '-6 days');
        DELETE FROM stats_periods WHERE period = 'month' AND start = date({0}.day, 'start of month');"""
_PERIOD_TRIGGERS = "".join(
    f"\n    CREATE TRIGGER stats_periods_{table}_{event} AFTER {event.upper()} ON {table} BEGIN"
    f"{_FORGET.format(row)}\n    END;"
    for table in ("stats_daily", "stats_took")
    for event, row in (("insert", "NEW"), ("update", "NEW"), ("delete", "OLD")))
# Migration 16's delivery times: the same, in `stats_took` (the seconds a number, not part of a kind's name).
_TOOK_ROW_ADD = ("INSERT INTO stats_took (day, modem_id, took, count) SELECT date({m}.sent_at, 'unixepoch', "
                 "'localtime'), IFNULL({m}.modem_id, 0), " + _TOOK_BUCKET + ", 1 WHERE {m}.status = 'delivered' "
                 "AND {m}.sent_at IS NOT NULL AND {m}.delivered_at IS NOT NULL "
                 "ON CONFLICT (day, modem_id, took) DO UPDATE SET count = count + 1;")
_TOOK_ROW_REMOVE = ("UPDATE stats_took SET count = count - 1 WHERE {m}.status = 'delivered' "
                    "AND {m}.sent_at IS NOT NULL AND {m}.delivered_at IS NOT NULL "
                    "AND day = date({m}.sent_at, 'unixepoch', 'localtime') "
                    "AND modem_id = IFNULL({m}.modem_id, 0) AND took = " + _TOOK_BUCKET + ";")
_TOOK_TABLE = f"""
    CREATE TRIGGER stats_took_added AFTER INSERT ON messages WHEN NEW.status = 'delivered' BEGIN
        {_TOOK_ROW_ADD.format(m="NEW")}
    END;
    CREATE TRIGGER stats_took_changed AFTER UPDATE OF status, sent_at, delivered_at, modem_id ON messages
    WHEN (OLD.status = 'delivered' OR NEW.status = 'delivered') AND (OLD.status IS NOT NEW.status
        OR OLD.sent_at IS NOT NEW.sent_at OR OLD.delivered_at IS NOT NEW.delivered_at
        OR OLD.modem_id IS NOT NEW.modem_id) BEGIN
        {_TOOK_ROW_REMOVE.format(m="OLD")}
        {_TOOK_ROW_ADD.format(m="NEW")}
    END;
    CREATE TRIGGER stats_took_deleted AFTER DELETE ON messages WHEN OLD.status = 'delivered' BEGIN
        {_TOOK_ROW_REMOVE.format(m="OLD")}
    END;
"""

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
    # 11: fewer pages written per message (#19). Every commit writes each page it changed to the WAL, and every
    # b-tree (table or index) a commit touches is at least one page. `parts` and `sticky` were rowid tables with
    # their primary key as a second b-tree: WITHOUT ROWID makes the key the table (one b-tree, two pages less per
    # message). `messages_modem` held an entry for every queued message under modem NULL, moved when it was
    # claimed: partial, it is written once, when a modem takes the message (`modem_id = ?` still finds it).
    # Submissions' idempotency keys were UNIQUE, an index entry (NULL) even for the many without a key: a partial
    # unique index holds only the keys. `claimed_at`: when a modem took the message (its timeline's "handed to a
    # SIM", which is no longer an event row: see store/base.py `_timeline`).
    """
    CREATE TABLE parts_new (
        message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        modem_id INTEGER,
        tp_mr INTEGER,
        sent_at REAL,
        report_status TEXT,
        report_code INTEGER,
        report_at REAL,
        PRIMARY KEY (message_id, seq)
    ) WITHOUT ROWID;
    INSERT INTO parts_new SELECT message_id, seq, modem_id, tp_mr, sent_at, report_status, report_code, report_at
        FROM parts;
    DROP TABLE parts;
    ALTER TABLE parts_new RENAME TO parts;
    CREATE INDEX parts_report ON parts(modem_id, tp_mr, sent_at);
    CREATE INDEX parts_sent ON parts(modem_id, sent_at);
    CREATE TABLE sticky_new (
        recipient TEXT PRIMARY KEY,
        modem_id INTEGER NOT NULL,
        at REAL NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO sticky_new SELECT recipient, modem_id, at FROM sticky;
    DROP TABLE sticky;
    ALTER TABLE sticky_new RENAME TO sticky;
    DROP INDEX messages_modem;
    CREATE INDEX messages_modem ON messages(modem_id, id) WHERE modem_id IS NOT NULL;
    CREATE TABLE submissions_new (
        id INTEGER PRIMARY KEY,
        idempotency_key TEXT,
        body_hash TEXT NOT NULL,
        result TEXT,
        api_key_id INTEGER,
        created_at REAL NOT NULL
    );
    INSERT INTO submissions_new SELECT id, idempotency_key, body_hash, result, api_key_id, created_at FROM submissions;
    DROP TABLE submissions;
    ALTER TABLE submissions_new RENAME TO submissions;
    CREATE UNIQUE INDEX submissions_key ON submissions(idempotency_key) WHERE idempotency_key IS NOT NULL;
    ALTER TABLE messages ADD COLUMN claimed_at REAL;
    """,
    # 12: queries over a million messages (#19). `stats_daily`: the statistics' counts per
    # local day, SIM (0: none) and kind (a counted status, or 'segment' for a part a SIM sent), kept by triggers in
    # the transaction that changes a message or a part, so that a year's report reads a few thousand rows instead
    # of a million (modemgw/store/stats.py says what counts and when). `conversations`: the inbox per (SIM, sender),
    # kept by triggers on `inbox`, for the conversations list. Both are filled from the rows already stored.
    # Delivery times per day and SIM for the medians (`_TOOK` above). `messages_created` goes: a time range of
    # messages is an id range (`StoreBase.first_id_created`), and the index cost a page per message.
    # `messages_status` keeps only the messages not (yet) sent or delivered: most messages end there, their
    # counts come from `stats_daily`, and their entries cost two pages per message (store/base.py UNSETTLED).
    """
    CREATE TABLE stats_daily (
        day TEXT NOT NULL,
        kind TEXT NOT NULL,
        modem_id INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (day, kind, modem_id)
    ) WITHOUT ROWID;
    CREATE TRIGGER stats_message_added AFTER INSERT ON messages
    WHEN NEW.status IN ('sent', 'delivered', 'undelivered', 'failed', 'expired') BEGIN
        INSERT INTO stats_daily (day, kind, modem_id, count)
        SELECT date(at, 'unixepoch', 'localtime'), NEW.status, IFNULL(NEW.modem_id, 0), 1
        FROM (SELECT CASE WHEN NEW.status IN ('sent', 'delivered', 'undelivered') THEN NEW.sent_at
                     ELSE NEW.updated_at END AS at) WHERE at IS NOT NULL
        ON CONFLICT (day, kind, modem_id) DO UPDATE SET count = count + 1;
    END;
    CREATE TRIGGER stats_message_changed AFTER UPDATE OF status, sent_at, updated_at, modem_id ON messages
    WHEN (OLD.status IN ('sent', 'delivered', 'undelivered', 'failed', 'expired')
          OR NEW.status IN ('sent', 'delivered', 'undelivered', 'failed', 'expired'))
        AND (OLD.status IS NOT NEW.status OR OLD.modem_id IS NOT NEW.modem_id
             OR CASE WHEN OLD.status IN ('sent', 'delivered', 'undelivered') THEN OLD.sent_at ELSE OLD.updated_at END
                IS NOT CASE WHEN NEW.status IN ('sent', 'delivered', 'undelivered') THEN NEW.sent_at
                            ELSE NEW.updated_at END) BEGIN
        UPDATE stats_daily SET count = count - 1
        WHERE OLD.status IN ('sent', 'delivered', 'undelivered', 'failed', 'expired') AND kind = OLD.status
            AND modem_id = IFNULL(OLD.modem_id, 0) AND day = date(CASE WHEN OLD.status IN ('sent', 'delivered',
            'undelivered') THEN OLD.sent_at ELSE OLD.updated_at END, 'unixepoch', 'localtime');
        INSERT INTO stats_daily (day, kind, modem_id, count)
        SELECT date(at, 'unixepoch', 'localtime'), NEW.status, IFNULL(NEW.modem_id, 0), 1
        FROM (SELECT CASE WHEN NEW.status IN ('sent', 'delivered', 'undelivered') THEN NEW.sent_at
                     ELSE NEW.updated_at END AS at)
        WHERE at IS NOT NULL AND NEW.status IN ('sent', 'delivered', 'undelivered', 'failed', 'expired')
        ON CONFLICT (day, kind, modem_id) DO UPDATE SET count = count + 1;
    END;
    CREATE TRIGGER stats_message_deleted AFTER DELETE ON messages
    WHEN OLD.status IN ('sent', 'delivered', 'undelivered', 'failed', 'expired') BEGIN
        UPDATE stats_daily SET count = count - 1 WHERE kind = OLD.status AND modem_id = IFNULL(OLD.modem_id, 0)
            AND day = date(CASE WHEN OLD.status IN ('sent', 'delivered', 'undelivered') THEN OLD.sent_at
                           ELSE OLD.updated_at END, 'unixepoch', 'localtime');
    END;
    CREATE TRIGGER stats_part_added AFTER INSERT ON parts
    WHEN NEW.tp_mr IS NOT NULL AND NEW.sent_at IS NOT NULL BEGIN
        INSERT INTO stats_daily (day, kind, modem_id, count)
        VALUES (date(NEW.sent_at, 'unixepoch', 'localtime'), 'segment', IFNULL(NEW.modem_id, 0), 1)
        ON CONFLICT (day, kind, modem_id) DO UPDATE SET count = count + 1;
    END;
    CREATE TRIGGER stats_part_changed AFTER UPDATE OF tp_mr, sent_at, modem_id ON parts
    WHEN (OLD.tp_mr IS NULL) IS NOT (NEW.tp_mr IS NULL) OR OLD.sent_at IS NOT NEW.sent_at
        OR OLD.modem_id IS NOT NEW.modem_id BEGIN
        UPDATE stats_daily SET count = count - 1
        WHERE OLD.tp_mr IS NOT NULL AND OLD.sent_at IS NOT NULL AND kind = 'segment'
            AND modem_id = IFNULL(OLD.modem_id, 0) AND day = date(OLD.sent_at, 'unixepoch', 'localtime');
        INSERT INTO stats_daily (day, kind, modem_id, count)
        SELECT date(NEW.sent_at, 'unixepoch', 'localtime'), 'segment', IFNULL(NEW.modem_id, 0), 1
        WHERE NEW.tp_mr IS NOT NULL AND NEW.sent_at IS NOT NULL
        ON CONFLICT (day, kind, modem_id) DO UPDATE SET count = count + 1;
    END;
    CREATE TRIGGER stats_part_deleted AFTER DELETE ON parts
    WHEN OLD.tp_mr IS NOT NULL AND OLD.sent_at IS NOT NULL BEGIN
        UPDATE stats_daily SET count = count - 1 WHERE kind = 'segment' AND modem_id = IFNULL(OLD.modem_id, 0)
            AND day = date(OLD.sent_at, 'unixepoch', 'localtime');
    END;
    INSERT INTO stats_daily (day, kind, modem_id, count)
    SELECT date(at, 'unixepoch', 'localtime'), status, IFNULL(modem_id, 0), COUNT(*) FROM (
        SELECT CASE WHEN status IN ('sent', 'delivered', 'undelivered') THEN sent_at ELSE updated_at END AS at,
            status, modem_id FROM messages WHERE status IN ('sent', 'delivered', 'undelivered', 'failed', 'expired'))
    WHERE at IS NOT NULL GROUP BY 1, 2, 3;
    INSERT INTO stats_daily (day, kind, modem_id, count)
    SELECT date(sent_at, 'unixepoch', 'localtime'), 'segment', IFNULL(modem_id, 0), COUNT(*) FROM parts
    WHERE tp_mr IS NOT NULL AND sent_at IS NOT NULL GROUP BY 1, 2, 3;
    CREATE TABLE conversations (
        modem_id INTEGER NOT NULL,
        sender TEXT NOT NULL,
        total INTEGER NOT NULL,
        unread INTEGER NOT NULL,
        last REAL NOT NULL,
        newest INTEGER NOT NULL,
        PRIMARY KEY (modem_id, sender)
    ) WITHOUT ROWID;
    CREATE INDEX conversations_last ON conversations(last);
    CREATE TRIGGER conversation_added AFTER INSERT ON inbox BEGIN
        INSERT INTO conversations (modem_id, sender, total, unread, last, newest)
        VALUES (IFNULL(NEW.modem_id, 0), NEW.sender, 1, NEW.read = 0, NEW.received_at, NEW.id)
        ON CONFLICT (modem_id, sender) DO UPDATE SET total = total + 1, unread = unread + (NEW.read = 0),
            last = MAX(last, NEW.received_at), newest = MAX(newest, NEW.id);
    END;
    CREATE TRIGGER conversation_read AFTER UPDATE OF read ON inbox WHEN (OLD.read = 0) IS NOT (NEW.read = 0) BEGIN
        UPDATE conversations SET unread = unread + (NEW.read = 0) - (OLD.read = 0)
        WHERE modem_id = IFNULL(OLD.modem_id, 0) AND sender = OLD.sender;
    END;
    CREATE TRIGGER conversation_deleted AFTER DELETE ON inbox BEGIN
        UPDATE conversations SET total = total - 1, unread = unread - (OLD.read = 0),
            last = IFNULL((SELECT MAX(received_at) FROM inbox WHERE modem_id IS OLD.modem_id AND sender = OLD.sender),
                          0),
            newest = IFNULL((SELECT MAX(id) FROM inbox WHERE modem_id IS OLD.modem_id AND sender = OLD.sender), 0)
        WHERE modem_id = IFNULL(OLD.modem_id, 0) AND sender = OLD.sender;
        DELETE FROM conversations WHERE modem_id = IFNULL(OLD.modem_id, 0) AND sender = OLD.sender AND total <= 0;
    END;
    INSERT INTO conversations (modem_id, sender, total, unread, last, newest)
    SELECT IFNULL(modem_id, 0), sender, COUNT(*), SUM(read = 0), MAX(received_at), MAX(id) FROM inbox
    GROUP BY IFNULL(modem_id, 0), sender;
    """ + _TOOK + """
    DROP INDEX messages_created;
    DROP INDEX messages_status;
    CREATE INDEX messages_status ON messages(status, id) WHERE status NOT IN ('sent', 'delivered');
    """,
    # 13: a submission's messages by their ids (#19). They are inserted in one transaction, so their ids are one
    # run: `first_id` and `last_id` bound it, and the lookups of a submission's messages (its result at submit,
    # a batch's summary, status counts and cancel) read that run of rows, where asking `messages` by submission_id
    # read the whole table (~0.3 s per submit with a million messages stored: no index, and one would cost a page
    # per message written).
    """
    ALTER TABLE submissions ADD COLUMN first_id INTEGER;
    ALTER TABLE submissions ADD COLUMN last_id INTEGER;
    UPDATE submissions SET first_id = r.first_id, last_id = r.last_id
    FROM (SELECT submission_id, MIN(id) AS first_id, MAX(id) AS last_id FROM messages
          WHERE submission_id IS NOT NULL GROUP BY submission_id) AS r
    WHERE r.submission_id = submissions.id;
    """,
    # 14: a webhook delivery's payload in a table of its own (#19). Written once, read to post, never changed;
    # the delivery's row is updated after each attempt, and SQLite rewrites a changed row whole: with the payload
    # in it (a message's JSON, ~1.3 KB, more than a 1 KiB page holds) each outcome rewrote its overflow pages and
    # freed and allocated pages, ~9 of the ~42 pages a message's life appended to the write-ahead log.
    """
    CREATE TABLE webhook_payloads (delivery_id INTEGER PRIMARY KEY, payload NOT NULL);  -- zlib, or text moved here
    INSERT INTO webhook_payloads (delivery_id, payload) SELECT id, payload FROM webhook_deliveries;
    ALTER TABLE webhook_deliveries DROP COLUMN payload;
    CREATE TRIGGER webhook_payload_deleted AFTER DELETE ON webhook_deliveries BEGIN
        DELETE FROM webhook_payloads WHERE delivery_id = OLD.id;
    END;
    """,
    # 15: the SMPP outbox by message and by inbound SMS (#19). Each message that came over SMPP looked its receipt
    # rows up by message_id, and each inbound SMS its deliver_sm rows by inbox_id, reading the whole outbox (~two
    # rows per SMPP message for a week: 64-101 ms at 400,000 rows, inside the report's or the SMS's transaction),
    # and the catch-up at start did so per message (minutes).
    """
    CREATE INDEX smpp_outbox_message ON smpp_outbox(message_id) WHERE message_id IS NOT NULL;
    CREATE INDEX smpp_outbox_inbox ON smpp_outbox(inbox_id) WHERE inbox_id IS NOT NULL;
    """,
    # 16: delivery times in a table of their own, and kept medians (#19). A year's statistics by day read ~22,000
    # delivery-time rows of `stats_daily` (its counts read past them too: they share its days) and worked out 365
    # medians from them: 130-200 ms at a million messages. `stats_took` holds them with the time as a number, and
    # `stats_medians` keeps the median and the times (JSON {seconds: count}) of each period that has ended (day,
    # week, month; per SIM, and -1 for all SIMs), written by the scheduler's roll-up (modemgw/store/stats.py). The
    # triggers on `stats_took` forget the kept medians of the periods around a day whose times change (a late
    # report, pruning): finding none to forget is a read, so the send path writes nothing more.
    f"""
    CREATE TABLE stats_took (
        day TEXT NOT NULL,
        modem_id INTEGER NOT NULL,
        took INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (day, modem_id, took)
    ) WITHOUT ROWID;
    INSERT INTO stats_took (day, modem_id, took, count)
    SELECT day, modem_id, CAST(substr(kind, 6) AS INTEGER), SUM(count) FROM stats_daily
    WHERE kind >= 'took:' AND kind < 'took;' GROUP BY 1, 2, 3;
    DELETE FROM stats_daily WHERE kind >= 'took:' AND kind < 'took;';
    DROP TRIGGER stats_took_added;
    DROP TRIGGER stats_took_changed;
    DROP TRIGGER stats_took_deleted;
    {_TOOK_TABLE}
    CREATE TABLE stats_medians (
        period TEXT NOT NULL,
        start TEXT NOT NULL,
        modem_id INTEGER NOT NULL,
        median REAL,
        took TEXT,
        PRIMARY KEY (period, start, modem_id)
    ) WITHOUT ROWID;
    CREATE TRIGGER stats_medians_added AFTER INSERT ON stats_took BEGIN
        DELETE FROM stats_medians WHERE period = 'day' AND start = NEW.day;
        DELETE FROM stats_medians WHERE period = 'week' AND start = date(NEW.day, 'weekday 0', '-6 days');
        DELETE FROM stats_medians WHERE period = 'month' AND start = date(NEW.day, 'start of month');
    END;
    CREATE TRIGGER stats_medians_changed AFTER UPDATE ON stats_took BEGIN
        DELETE FROM stats_medians WHERE period = 'day' AND start IN (OLD.day, NEW.day);
        DELETE FROM stats_medians WHERE period = 'week' AND start IN (date(OLD.day, 'weekday 0', '-6 days'),
                                                                      date(NEW.day, 'weekday 0', '-6 days'));
        DELETE FROM stats_medians WHERE period = 'month' AND start IN (date(OLD.day, 'start of month'),
                                                                       date(NEW.day, 'start of month'));
    END;
    CREATE TRIGGER stats_medians_deleted AFTER DELETE ON stats_took BEGIN
        DELETE FROM stats_medians WHERE period = 'day' AND start = OLD.day;
        DELETE FROM stats_medians WHERE period = 'week' AND start = date(OLD.day, 'weekday 0', '-6 days');
        DELETE FROM stats_medians WHERE period = 'month' AND start = date(OLD.day, 'start of month');
    END;
    """,
    # 17: the counts of ended periods kept too (#19). A year's statistics by day still added up ~7,300 `stats_daily`
    # rows twice (per day, and per SIM): ~11 ms of a 33 ms report at a million messages. `stats_periods` replaces
    # `stats_medians`: for each period that has ended (day, week, month) and each SIM (-1: all SIMs; 0: none), its
    # counts, its median and (weeks, months) its delivery times, written by the scheduler's roll-up
    # (modemgw/store/stats.py). The triggers forget a kept period when its counts (`stats_daily`) or times
    # (`stats_took`) change: a late report, a message that fails days after, pruning. On the send path they find
    # nothing to forget (today is never kept): a read, no page written. The roll-up keeps the periods again.
    f"""
    DROP TRIGGER stats_medians_added;
    DROP TRIGGER stats_medians_changed;
    DROP TRIGGER stats_medians_deleted;
    DROP TABLE stats_medians;
    CREATE TABLE stats_periods (
        period TEXT NOT NULL,
        start TEXT NOT NULL,
        modem_id INTEGER NOT NULL,
        sent INTEGER NOT NULL DEFAULT 0,
        delivered INTEGER NOT NULL DEFAULT 0,
        undelivered INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        expired INTEGER NOT NULL DEFAULT 0,
        segment INTEGER NOT NULL DEFAULT 0,
        median REAL,
        took TEXT,
        PRIMARY KEY (period, start, modem_id)
    ) WITHOUT ROWID;
    {_PERIOD_TRIGGERS}
    """,
    # 18: Scheduled's batches from an index alone (#19). Summing up the scheduled messages per submission read each
    # one's row (3,000 scheduled in 250 batches: 7 ms of a 17 ms page at a million messages); this index holds what
    # the sums need, in submission order (2.3 ms). Only scheduled messages have entries: a message sent at once
    # writes nothing more.
    """
    CREATE INDEX messages_batches ON messages(submission_id, due_at, created_at) WHERE status = 'scheduled';
    """,
    # 19: nothing to change in the tables, but webhook payloads are now written zlib-coded with a preset dictionary
    # (store/webhooks.py) that an older modemgw cannot read: its sender would fail on every due delivery. The new
    # version number makes an older modemgw refuse this database ("newer than this modemgw") instead.
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
