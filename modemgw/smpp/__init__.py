"""The SMPP 3.4 server (issue #18): modemgw as an SMSC for Kannel, Jasmin and SMPP applications.

`server.SmppServer` (the listener, the sessions, the outbox of deliver_sm), `session.Session` (one connection),
`pdu` (the codec), `receipts` (what receipts and inbound deliver_sm carry), `accounts` (the SMPP users of
`modemgw smpp-users`).
"""

from modemgw.smpp.server import SmppServer

__all__ = ["SmppServer"]
