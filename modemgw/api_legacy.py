"""The send URL for legacy devices (GET with a query token): routes on the `/api/v1` blueprint."""

from __future__ import annotations

from modemgw.api import api  # noqa: F401 - the blueprint these routes register on
