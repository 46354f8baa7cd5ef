"""Retention: how much the database holds and prunes (#19). Filled in by the retention work."""

from __future__ import annotations

from modemgw.store.base import StoreBase


class RetentionStore(StoreBase):
    """Pruning old rows in small batches, and the database's size and oldest rows."""
