"""The address book pages: contacts, groups, import and export."""

from __future__ import annotations

from webui import ui  # noqa: F401 - the blueprint these pages register on
