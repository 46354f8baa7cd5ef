"""Inbound rules (migration 8): what happens to an inbound SMS after STOP/START, in order; the auto-replies sent,
for their rate limit; and the outbox of e-mails the rules forward."""

from __future__ import annotations

from modemgw.store.base import StoreBase


class RulesStore(StoreBase):
    """Tables `inbound_rules`, `autoreplies`, `mail_outbox`."""
