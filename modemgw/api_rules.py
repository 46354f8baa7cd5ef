"""The REST API's inbound rules (routes on the `/api/v1` blueprint of `modemgw.api`)."""

from __future__ import annotations

from modemgw.api import api  # noqa: F401 - the blueprint these routes register on
