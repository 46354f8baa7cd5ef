"""Alert notifications already turned into SMS (Alertmanager, Grafana), for de-duplication (migration 8)."""

from __future__ import annotations

from modemgw.store.base import StoreBase


class AlertStore(StoreBase):
    """Table `alert_notifications`."""
