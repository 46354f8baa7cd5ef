"""The saved templates pages."""

from __future__ import annotations

from webui import ui  # noqa: F401 - the blueprint these pages register on
