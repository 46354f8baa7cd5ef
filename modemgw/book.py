"""The address book as the gateway offers it to every edge: contacts, groups, their import and export (CSV, vCard).

`AddressBook` is a part of `Gateway` (a mixin over `self.store`); edges call these methods on the gateway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modemgw.settings import GatewaySettings
    from modemgw.store import Store


class AddressBook:
    """Contacts and groups, through the gateway."""

    store: Store
    settings: GatewaySettings
