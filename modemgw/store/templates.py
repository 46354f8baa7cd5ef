"""Saved message templates: a name, a body with {placeholders} and spintax."""

from __future__ import annotations

from modemgw.store.base import StoreBase


class TemplateStore(StoreBase):
    """Saved templates (table `templates`; migration 6)."""
