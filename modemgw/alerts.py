"""Alerting systems' notifications (Prometheus Alertmanager, Grafana) turned into SMS, de-duplicated.

`Alerts` is a part of `Gateway` (a mixin over `self.store`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modemgw.settings import GatewaySettings
    from modemgw.store import Store


class Alerts:
    """Alert notifications, through the gateway."""

    store: Store
    settings: GatewaySettings
