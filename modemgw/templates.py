"""Saved templates as the gateway offers them to every edge: named bodies with {placeholders} and spintax.

`TemplateLibrary` is a part of `Gateway` (a mixin over `self.store`); edges call these methods on the gateway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modemgw.settings import GatewaySettings
    from modemgw.store import Store


class TemplateLibrary:
    """Saved templates, through the gateway."""

    store: Store
    settings: GatewaySettings
