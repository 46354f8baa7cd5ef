"""Inbound rules as the gateway offers them: managed by edges, applied to every inbound SMS after STOP/START.

`InboundRules` is a part of `Gateway` (a mixin over `self.store`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modemgw.settings import GatewaySettings
    from modemgw.store import Store


class InboundRules:
    """Inbound rules, through the gateway."""

    store: Store
    settings: GatewaySettings

    def apply_inbound_rules(self, inbox_id: int, modem_id: int | None, sender: str, body: str) -> None:
        """Evaluate the rules for a stored inbound message (called by `Gateway._store_inbound` after STOP/START).
        Never raises for one bad rule: every background path survives a single bad item."""
