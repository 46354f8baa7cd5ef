"""The SMPP server's data (migration 9): its users, and the durable queue of deliver_sm PDUs for them."""

from __future__ import annotations

from modemgw.store.base import StoreBase


class SmppStore(StoreBase):
    """Tables `smpp_users`, `smpp_outbox`; `messages.smpp_user_id`."""
