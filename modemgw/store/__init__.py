"""The store: modemgw's SQLite database, and the only code with SQL in it.

`Store` is composed of one class per subject, each in its own module over `StoreBase` (base.py: connections,
transactions, reads, the event log, health):

- `messages.py`: submissions, message queries, cancel, retention, opt-outs
- `dispatch.py`: the queue as the modems see it: claim, part results, status reports, retries, expiry, recovery
- `inbox.py`: inbound messages, exactly once, and assembled
- `modems.py`: modem rows, bound by identity
- `admin.py`: API keys, web UI users and sessions, settings
- `webhooks.py`: webhook subscriptions and the delivery outbox
- `book.py`: the address book (contacts and groups)
- `audit.py`: the audit log
- `templates.py`: saved message templates
- `stats.py`: statistics per period and per SIM, and the dashboard's sends per hour
- `retention.py`: pruning old rows in small batches, the database's size and oldest rows

`schema.py` holds the migrations, `errors.py` the errors (never matched by their text), `backup.py` the online
backup and checked restore, and `readonly.py` the doctor's read-only looks at a database file.
"""

from __future__ import annotations

from modemgw.store.admin import AdminStore
from modemgw.store.alerts import AlertStore
from modemgw.store.audit import AuditStore
from modemgw.store.base import HEALTH_BUSY_TIMEOUT_MS, MIN_FREE_BYTES, OWN_WRITE_PATIENCE, StoreBase, WriteFailure
from modemgw.store.book import BookStore
from modemgw.store.dispatch import Claimed, DispatchStore, day_key, month_key
from modemgw.store.errors import SQLITE_KINDS, UNHEALTHY_KINDS, Conflict, Duplicate, NotFound, StoreError
from modemgw.store.inbox import InboxStore
from modemgw.store.messages import FINAL_STATUSES, MessageStore
from modemgw.store.modems import ModemStore
from modemgw.store.retention import RetentionStore
from modemgw.store.rules import RulesStore
from modemgw.store.schema import MIGRATIONS, SCHEMA_VERSION
from modemgw.store.smpp import SmppStore
from modemgw.store.stats import StatsStore
from modemgw.store.templates import TemplateStore
from modemgw.store.webhooks import WebhookStore

__all__ = ["FINAL_STATUSES", "HEALTH_BUSY_TIMEOUT_MS", "MIGRATIONS", "MIN_FREE_BYTES", "OWN_WRITE_PATIENCE",
           "SCHEMA_VERSION", "SQLITE_KINDS", "UNHEALTHY_KINDS", "Claimed", "Conflict", "Duplicate", "NotFound",
           "Store", "StoreBase", "StoreError", "WriteFailure", "day_key", "month_key"]


class Store(MessageStore, DispatchStore, InboxStore, ModemStore, AdminStore, WebhookStore, BookStore, TemplateStore,
            AuditStore, StatsStore, RulesStore, AlertStore, SmppStore, RetentionStore):
    """The database at `path`, opened once per thread (one connection each), migrated when opened. Raises
    StoreError (its subclasses NotFound, Conflict, Duplicate say what a caller may do)."""
