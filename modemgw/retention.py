"""Retention as the gateway offers it (#19). Filled in by the retention work."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modemgw.store import Store


class Retention:
    """A part of `Gateway` (a mixin over `self.store`)."""

    store: Store
