"""The inbound rules pages (admins): forward, auto-reply, webhook, stop; with a dry run."""

from __future__ import annotations

from webui import ui  # noqa: F401 - the blueprint these pages register on
