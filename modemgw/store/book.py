"""The address book: contacts (name, number, free fields, notes) and their groups."""

from __future__ import annotations

from modemgw.store.base import StoreBase


class BookStore(StoreBase):
    """Contacts and contact groups (tables `contacts`, `contact_groups`, `group_members`; migration 6)."""
