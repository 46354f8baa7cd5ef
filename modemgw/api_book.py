"""The REST API's address book: contacts and groups (routes on the `/api/v1` blueprint of `modemgw.api`)."""

from __future__ import annotations

from modemgw.api import api  # noqa: F401 - the blueprint these routes register on
