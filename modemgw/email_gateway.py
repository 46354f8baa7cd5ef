"""E-mail to SMS: an embedded SMTP server (aiosmtpd) that turns mail to `<number>@<domain>` or `<group>@<domain>`
into SMS, through the gateway like every other edge.

Off unless `[email] listen` is set. `EmailGateway` runs aiosmtpd's `SMTP` protocol on an asyncio loop of its own in
one thread ("email"); the handler (`_Handler`) decides, at each SMTP step, with a proper reply code:
- MAIL FROM: the client's address must be in `allowed_networks` (loopback only by default, anywhere with `auth`),
  the session must have logged in as an enabled web UI user when `auth` is on (AUTH PLAIN or LOGIN, over STARTTLS
  when a certificate is configured; without TLS only from loopback, and only with `loopback_auth_without_tls`),
  and the envelope sender must match `allowed_senders` when that list is given. Each condition that is set
  must hold.
- RCPT TO: `<number>@<domain>` (a number the gateway can read, `+447700900123`, or a national one in the default
  region) or `<group>@<domain>` (an address-book group with members, any case); at most 50 per mail (452, the
  client sends the rest in another transaction); anything else is refused (550: this server relays no mail).
- DATA: at most `max_size` bytes (the SIZE extension announces it: 552 past it), lines of at most 1000 octets
  (aiosmtpd), a header section of at most 16 KB and 200 lines; only then is the mail parsed (the stdlib `email`
  package, `policy.default`). The text is the subject, the plain-text body, or both (`text`); the body is the
  text/plain part, or the text/html part with its tags stripped by a linear scanner (no regular expression);
  quoted replies (`>` lines, their "... wrote:" line, Outlook's "Original Message") and the signature after
  `-- ` are cut.

The SMS is queued by `Gateway.send`, which commits before it returns, and only then is `250` answered: a
gateway that stops after its 250 has the message in its database. A database that refuses the write gets `451`
(temporary: the client keeps the mail and tries again). The idempotency key is the mail's Message-ID with its
recipients (`mail:<Message-ID> <digest of the recipients>`): a re-delivered mail (the 250 was lost, the client
retried) sends nothing twice, and a mail whose recipients were split over two transactions (a 452) sends each
part once. Every accepted and refused mail is in the audit log (`email.accept`, `email.refuse`).

Database work and password checks run on a small thread pool, never on the SMTP loop, so one slow check does not
stall the other sessions.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import dataclasses
import functools
import hashlib
import html
import ipaddress
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from email import policy
from email.errors import MessageError
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Any, TypeVar

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, Session

from modemgw import users
from modemgw.gateway import Conflict as KeyConflict, Gateway, SubmitError, SubmitRequest
from modemgw.settings import EmailSettings
from modemgw.store import StoreError

log = logging.getLogger("modemgw.email")

MAX_RECIPIENTS = 50            # RCPT TO per mail; more get 452 and go in another transaction
MAX_HEADER_BYTES = 16 * 1024   # the header section, checked before the mail is parsed
MAX_HEADER_LINES = 200
MAX_MIME_HEADERS = 8 * 1024    # all Content-* fields of all parts together: the email package parses their
                               # parameters slowly (~1 ms each), and nesting multiplies them
MAX_MESSAGE_ID = 200           # longer Message-IDs are replaced by their digest in the idempotency key
MAX_CONNECTIONS = 32           # more at once are told 421 (try later)
MAX_REFUSALS = 10              # refused commands in one connection before it is closed (421)
IDLE_TIMEOUT = 60.0            # seconds a client may stay silent
MAX_REPLY = 400                # characters of a detail put in an SMTP reply
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))

T = TypeVar("T")


class MailError(Exception):
    """A mail that cannot become an SMS: `reply` is the SMTP reply ("550 5.6.0 ..."), `reason` a short word for
    the audit log."""

    def __init__(self, reply: str, reason: str):
        super().__init__(reply)
        self.reply = reply
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Recipient:
    """One RCPT TO address: a phone number (`kind` "number", `value` as written) or an address-book group."""

    kind: str
    value: str


@dataclasses.dataclass(frozen=True)
class Mail:
    """What the gateway takes from a mail: the SMS text, the Message-ID (None when there is none) and the
    subject."""

    text: str
    message_id: str | None
    subject: str


@dataclasses.dataclass(frozen=True)
class MailUser:
    """The web UI user a session logged in as (AUTH)."""

    id: int
    username: str


# --- pure parts: addresses, the mail's text -------------------------------------------------------------------

def _one_line(text: str, limit: int = MAX_REPLY) -> str:
    """`text` fit for an SMTP reply line: no line breaks (they would end the reply), bounded."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."


def recipient_of(address: str, domain: str) -> Recipient:
    """The recipient that `address` (a RCPT TO, as aiosmtpd read it) names in `domain`. Raises MailError (550 for
    another domain or a local part that can be neither)."""
    local, at, where = address.rpartition("@")
    if not at or where.lower().rstrip(".") != domain:
        raise MailError(f"550 5.7.1 <{_one_line(address, 200)}>: this server relays no mail; write to "
                        f"<number>@{domain} or <group>@{domain}", "relay")
    if len(local) > 2 and local[0] == local[-1] == '"':
        local = local[1:-1]
    local = local.strip()
    if not local or len(local) > 100:
        raise MailError(f"550 5.1.1 <{_one_line(address, 200)}>: give a phone number or an address-book group "
                        f"before @{domain}", "recipient")
    if local[0] == "+" or local[0].isdigit():
        return Recipient("number", local)
    return Recipient("group", local)


def _content(part: Message) -> str:
    """A text part's content as text: its declared charset, or UTF-8 (with replacements) when that is unknown."""
    try:
        content = part.get_content() if isinstance(part, EmailMessage) else None
    except (LookupError, ValueError):  # an unknown charset; undecodable text or base64 (UnicodeError, binascii)
        content = None
    if isinstance(content, str):
        return content
    payload = part.get_payload(decode=True)
    return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


BLOCK_TAGS = frozenset({"address", "article", "blockquote", "br", "dd", "div", "dl", "dt", "footer", "h1", "h2",
                        "h3", "h4", "h5", "h6", "header", "hr", "li", "ol", "p", "pre", "section", "table", "td",
                        "th", "tr", "ul"})
# Their content is no text of the mail: scripts, styles, the head, and quoted replies (Gmail, Thunderbird and
# Apple Mail quote in a <blockquote>).
SKIPPED_TAGS = frozenset({"script", "style", "head", "title", "template", "blockquote"})


def _tag_end(markup: str, start: int) -> int:
    """The index of the `>` that closes the tag opened at `start`, skipping quoted attribute values; -1 when the
    tag never closes. One pass over the characters: linear."""
    quote = ""
    for index in range(start, len(markup)):
        char = markup[index]
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == ">":
            return index
    return -1


def _tag_name(tag: str) -> tuple[str, bool, bool]:
    """(lower-case name, closing, self-closing) of a tag's inside (`/div`, `br/`, `a href="..."`)."""
    closing = tag.startswith("/")
    body = tag[1:] if closing else tag
    end = 0
    while end < len(body) and end < 32 and not body[end].isspace() and body[end] not in "/>":
        end += 1
    return body[:end].lower(), closing, tag.endswith("/")


def html_to_text(markup: str) -> str:
    """The text a reader sees in an HTML part: tags removed, block elements on lines of their own, scripts,
    styles and quoted replies (`<blockquote>`) left out, entities decoded, white space as HTML shows it. A scan
    with `str.find`, linear in the input whatever it holds (no regular expression that could backtrack)."""
    out: list[str] = []
    skipping, depth = "", 0
    position, length = 0, len(markup)
    while position < length:
        opening = markup.find("<", position)
        if opening < 0:
            if not skipping:
                out.append(_spaces(markup[position:]))
            break
        if not skipping:
            out.append(_spaces(markup[position:opening]))
        following = markup[opening + 1:opening + 2]
        if not (following.isalpha() or following in ("/", "!", "?")):  # "a < b" is text, not a tag
            if not skipping:
                out.append("<")
            position = opening + 1
            continue
        if markup.startswith("<!--", opening):
            end = markup.find("-->", opening + 4)
            position = length if end < 0 else end + 3
            continue
        end = _tag_end(markup, opening + 1)
        if end < 0:
            break  # a tag that never closes: the rest is markup
        name, closing, self_closing = _tag_name(markup[opening + 1:end])
        position = end + 1
        if skipping:
            if name == skipping:
                depth += -1 if closing else 0 if self_closing else 1
                if depth == 0:
                    skipping = ""
            continue
        if name in SKIPPED_TAGS and not closing and not self_closing:
            skipping, depth = name, 1
        elif name in BLOCK_TAGS:
            out.append("\n")
    lines = (" ".join(line.split()) for line in html.unescape("".join(out)).split("\n"))
    return "\n".join(line for line in lines if line)  # an SMS has no room for a page's empty lines


def _spaces(text: str) -> str:
    """HTML text's line breaks are spaces: only block elements break lines."""
    return text.replace("\r", " ").replace("\n", " ")


def strip_replies(text: str) -> str:
    """The author's own text: the signature (from a `-- ` line on), a forwarded or replied-to original
    (Outlook's "-----Original Message-----" and on), quoted lines (`>`) and the "On ..., X wrote:" line that
    introduces them are cut."""
    kept: list[str] = []
    for line in text.split("\n"):
        bare = line.strip()
        if line.rstrip() == "--" or bare.lower() in ("-----original message-----", "--- original message ---"):
            break
        if line.startswith(">"):
            while kept and not kept[-1].strip():
                kept.pop()
            if kept and kept[-1].rstrip().endswith("wrote:"):
                kept.pop()
            continue
        kept.append(line)
    return "\n".join(kept)


def tidy(text: str) -> str:
    """Line breaks as `\\n`, no trailing spaces, at most one blank line in a row, nothing around."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    kept: list[str] = []
    for line in lines:
        if line or (kept and kept[-1]):
            kept.append(line)
    return "\n".join(kept).strip()


def _message_id(message: Message) -> str | None:
    """The Message-ID as written (unparsed: a malformed one is still an identity), unfolded; None without one."""
    for name, value in message.raw_items():
        if name.lower() == "message-id":
            flat = " ".join(str(value).split())
            return flat or None
    return None


def read_mail(raw: bytes, mode: str) -> Mail:
    """The SMS a mail asks for: `raw` is the whole mail (already bounded by the SMTP server's SIZE); `mode` is
    "subject", "body" (falling back to the subject when the body has no text) or "both" (subject, a line break,
    body). The header section's size is checked before anything is parsed. Raises MailError."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        end = raw.find(b"\n\n")
    header = raw if end < 0 else raw[:end]
    if len(header) > MAX_HEADER_BYTES or header.count(b"\n") >= MAX_HEADER_LINES:
        raise MailError(f"552 5.3.4 The mail's header section is larger than {MAX_HEADER_BYTES // 1024} KB or "
                        f"{MAX_HEADER_LINES} lines", "headers")
    if _mime_header_bytes(raw) > MAX_MIME_HEADERS:
        raise MailError(f"552 5.3.4 The mail's MIME structure is too large (its Content- header fields take more "
                        f"than {MAX_MIME_HEADERS // 1024} KB): send the text without so many parts", "mime")
    try:
        message = BytesParser(policy=policy.default).parsebytes(raw)
        subject = tidy(" ".join(str(message.get("subject") or "").split()))
        body = ""
        if mode != "subject":
            part = message.get_body(preferencelist=("plain",)) if isinstance(message, EmailMessage) else None
            if part is not None:
                body = tidy(strip_replies(_content(part)))
            else:
                part = message.get_body(preferencelist=("html",)) if isinstance(message, EmailMessage) else None
                if part is not None:
                    body = tidy(strip_replies(html_to_text(_content(part))))
        message_id = _message_id(message)
    except (MessageError, LookupError, ValueError, TypeError, IndexError, AttributeError, RecursionError) as error:
        # the email package's parsers raise these on malformed input; the mail cannot be read, whatever we retry
        raise MailError(f"554 5.6.0 The mail cannot be read: {_one_line(type(error).__name__)}", "unreadable") \
            from None
    if mode == "subject":
        text = subject
    elif mode == "both":
        text = "\n".join(part for part in (subject, body) if part)
    else:
        text = body or subject
    if not text:
        wanted = {"subject": "a subject", "both": "a subject or a text body"}.get(mode, "a text body or a subject")
        raise MailError(f"550 5.6.0 The mail has no text to send: it needs {wanted} (after quoted replies and the "
                        "signature are cut)", "empty")
    return Mail(text, message_id, subject)


def _mime_header_bytes(raw: bytes) -> int:
    """The bytes of every `Content-*` header field in the mail, folded lines included, wherever they are (the
    top-level header and each part's): one pass over the lines, before anything is parsed."""
    total, inside = 0, False
    for line in raw.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            total += len(line) if inside else 0
            continue
        inside = line[:8].lower() == b"content-"
        total += len(line) if inside else 0
    return total


def idempotency_key(message_id: str | None, recipients: list[Recipient]) -> str | None:
    """`mail:<Message-ID> <digest>`: the same mail to the same recipients is one submission, whatever the number of
    deliveries. The digest of the recipients lets a mail split over two transactions send each part. None without
    a Message-ID (such a mail has no identity to repeat)."""
    if not message_id:
        return None
    identity = message_id if len(message_id) <= MAX_MESSAGE_ID else \
        "sha256:" + hashlib.sha256(message_id.encode("utf-8", "surrogateescape")).hexdigest()
    names = sorted({f"{recipient.kind}:{recipient.value.casefold()}" for recipient in recipients})
    digest = hashlib.sha256("\n".join(names).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return f"mail:{identity} {digest}"


def client_address(peer: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The client's IP address from a socket's peer name; an IPv4 address mapped into IPv6 as IPv4."""
    try:
        address = ipaddress.ip_address(peer[0] if isinstance(peer, tuple) else peer)
    except (TypeError, ValueError, IndexError):
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def sender_allowed(sender: str, allowed: tuple[str, ...]) -> bool:
    """Whether envelope `sender` is in `allowed` (addresses, or `@domain` for a whole domain); any case."""
    address = sender.strip().lower()
    domain = "@" + address.rpartition("@")[2]
    return address in allowed or domain in allowed


# --- the SMTP handler ------------------------------------------------------------------------------------------

class _Session(Session):
    """aiosmtpd's session, less the log warning its deprecated `login_data` writes at every AUTH, plus a count of
    refused commands."""

    refusals = 0

    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class _Busy(asyncio.Protocol):
    """The answer to a client past MAX_CONNECTIONS: 421, and the connection is closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(b"421 4.3.2 Too many connections: try again later\r\n")
        transport.close()


class _Smtp(SMTP):
    """aiosmtpd's SMTP with our session class, counted among the open connections."""

    def __init__(self, connections: set, handler: Any, **options: Any):
        self._connections = connections
        super().__init__(handler, **options)

    def _create_session(self) -> Session:
        return _Session(self.loop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._connections.add(self)  # a second time after STARTTLS: the same connection
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._connections.discard(self)
        super().connection_lost(error)


class _Handler:
    """The SMTP steps' decisions (aiosmtpd calls `handle_*` and `auth_*` by name)."""

    def __init__(self, owner: EmailGateway):
        self.owner = owner
        self.settings = owner.settings
        self.gateway = owner.gateway

    # --- who may send ---

    def _peer(self, session: Session) -> tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address | None]:
        address = client_address(session.peer)
        return (str(address) if address is not None else str(session.peer)), address

    def _network_allowed(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        networks = self.settings.networks()
        if networks is None:
            return True
        return address is not None and any(address.version == network.version and address in network
                                           for network in networks)

    async def _refuse(self, server: SMTP, session: Session, reply: str, *, reason: str, actor: str,
                      target: str | None = None, detail: dict | None = None) -> str:
        """Record a refusal in the audit log and answer `reply`; a connection refused too often is closed."""
        source, _ = self._peer(session)
        entry = {"reason": reason, "reply": reply[:3], **(detail or {})}
        await self.owner.run(functools.partial(self.gateway.audit, "email.refuse", actor=actor[:200], source=source,
                                               target=target, detail=entry, ok=False))
        if isinstance(session, _Session):
            session.refusals += 1
            if session.refusals >= MAX_REFUSALS and server.transport is not None:
                server.loop.call_soon(server.transport.close)
                return "421 4.7.0 Too many refused commands: closing the connection"
        return reply

    def _actor(self, session: Session, sender: str | None) -> str:
        user = session.auth_data if session.authenticated else None
        if isinstance(user, MailUser):
            return f"user {user.username}"
        return sender or "anonymous"

    # --- SMTP steps ---

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        """No AUTH line when logging in is off (aiosmtpd would announce an empty one)."""
        session.host_name = hostname
        if self.settings.auth:
            return responses
        return [line for line in responses if not line.startswith("250-AUTH")]

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        source, peer = self._peer(session)
        actor = self._actor(session, address)
        if not self._network_allowed(peer):
            why = "only loopback clients may while [email] allowed_networks is not set" \
                if self.settings.allowed_networks is None else "not in [email] allowed_networks"
            return await self._refuse(server, session, f"550 5.7.1 Your address {source} may not send mail here "
                                      f"({why})", reason="network", actor=actor)
        if self.settings.auth and not session.authenticated:
            how = "STARTTLS, then AUTH" if self.settings.tls_certificate else "AUTH"
            return await self._refuse(server, session, f"530 5.7.0 Authentication required: {how} with a web UI "
                                      "user's name and password", reason="auth", actor=actor)
        if self.settings.allowed_senders and not sender_allowed(address, self.settings.allowed_senders):
            return await self._refuse(server, session, f"550 5.7.1 Sender <{_one_line(address, 200)}> may not send "
                                      "mail here (not in [email] allowed_senders)", reason="sender", actor=actor)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        actor = self._actor(session, envelope.mail_from)
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return f"452 4.5.3 Too many recipients: at most {MAX_RECIPIENTS} in one mail; send the rest in another"
        try:
            recipient = recipient_of(address, self.settings.domain)
            if recipient.kind == "number":
                try:
                    described = self.gateway.normalize_number(recipient.value)
                except SubmitError as error:
                    raise MailError(f"550 5.1.1 <{_one_line(address, 200)}>: {_one_line(error.detail)}",
                                    "number") from None
            else:
                described = await self._group(address, recipient.value)
        except MailError as error:
            return await self._refuse(server, session, error.reply, reason=error.reason, actor=actor,
                                      target=address[:200])
        except StoreError:
            return "451 4.3.0 The gateway cannot read its address book now: try again later"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return f"250 2.1.5 Recipient OK: {_one_line(described, 200)}"

    async def _group(self, address: str, name: str) -> str:
        """"group NAME (N members)" for an address-book group with members. Raises MailError, StoreError."""
        groups = await self.owner.run(self.gateway.groups)
        found = next((group for group in groups if group["name"].casefold() == name.casefold()), None)
        if found is None:
            raise MailError(f"550 5.1.1 <{_one_line(address, 200)}>: no phone number, and no address-book group "
                            f"called {_one_line(name, 100)!r}", "group")
        if not found["members"]:
            raise MailError(f"550 5.1.1 <{_one_line(address, 200)}>: the group {found['name']!r} has no members",
                            "group")
        return f"group {found['name']} ({found['members']} members)"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        source, _ = self._peer(session)
        actor = self._actor(session, envelope.mail_from)
        target = ", ".join(envelope.rcpt_tos)[:200]
        raw = envelope.original_content or b""
        try:  # on a worker thread: parsing a large mail must not stall the other sessions
            mail = await self.owner.run(read_mail, raw if isinstance(raw, bytes) else bytes(raw), self.settings.text)
        except MailError as error:
            return await self._refuse(server, session, error.reply, reason=error.reason, actor=actor, target=target,
                                      detail={"size": len(raw)})
        recipients = [recipient_of(address, self.settings.domain) for address in envelope.rcpt_tos]  # checked
        numbers = list(dict.fromkeys(item.value for item in recipients if item.kind == "number"))
        groups = list(dict.fromkeys(item.value for item in recipients if item.kind == "group"))
        key = idempotency_key(mail.message_id, recipients)
        user = session.auth_data if session.authenticated and isinstance(session.auth_data, MailUser) else None
        request = SubmitRequest(body=mail.text, to=numbers or None, groups=groups or None, idempotency_key=key,
                                client_ref=f"mail:{mail.message_id}"[:128] if mail.message_id else None,
                                user_id=user.id if user else None)
        detail: dict[str, Any] = {"message_id": (mail.message_id or "")[:200] or None, "size": len(raw),
                                  "sender": (envelope.mail_from or "")[:200]}
        try:
            result = await self.owner.run(self.gateway.send, request)
        except KeyConflict:
            return await self._refuse(server, session, f"554 5.6.0 Message-ID {_one_line(mail.message_id or '', 200)}"
                                      " was already used for another mail to these recipients: give each mail its "
                                      "own Message-ID", reason="message-id", actor=actor, target=target, detail=detail)
        except SubmitError as error:
            return await self._refuse(server, session, f"550 5.6.0 {_one_line(error.detail)}", reason="invalid",
                                      actor=actor, target=target, detail=detail)
        except StoreError as error:
            log.error("mail from %s to %s not queued: %s", envelope.mail_from, target, error)
            return "451 4.3.0 The gateway cannot store the message now: nothing was queued; try again later"
        queued, skipped = len(result["messages"]), len(result["skipped"])
        replay = bool(result.get("idempotent_replay"))
        await self.owner.run(functools.partial(
            self.gateway.audit, "email.accept", actor=actor[:200], source=source, target=target,
            detail={**detail, "submission_id": result["submission_id"], "messages": queued, "skipped": skipped,
                    "replay": replay}))
        if not queued and skipped:
            return (f"550 5.7.1 Nothing sent: every recipient has opted out or was repeated ({skipped} skipped)"
                    if not replay else "250 2.0.0 Already accepted (same Message-ID): nothing more to send")
        what = f"{queued} SMS (submission {result['submission_id']})" + \
            (f", skipped: {skipped} (opted out or repeated)" if skipped else "")
        if replay:
            return f"250 2.0.0 Already accepted (same Message-ID): {what}; nothing is sent twice"
        return f"250 2.0.0 Queued: {what}"

    async def handle_exception(self, error: Exception) -> str:
        """A fault of ours (a bug): the client is told to try again later, so its mail is kept, not lost."""
        log.error("e-mail to SMS: unexpected error", exc_info=error)
        return "451 4.3.0 Internal error in the gateway: try again later"

    # --- AUTH (PLAIN and LOGIN), against the web UI's users ---

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        blob = await server.challenge_auth("") if len(args) == 1 else _b64(args[1])
        if blob is MISSING:
            return AuthResult(success=False, handled=True)  # aiosmtpd has answered
        if not isinstance(blob, bytes) or blob.count(b"\0") != 2:
            return AuthResult(success=False, handled=False, message="501 5.5.2 AUTH PLAIN needs base64 of "
                                                                   "\"\\0user\\0password\"")
        _, login, password = blob.split(b"\0")
        return await self._login(server, login, password)

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        login = await server.challenge_auth(server.AuthLoginUsernameChallenge) if len(args) == 1 else _b64(args[1])
        if login is MISSING:
            return AuthResult(success=False, handled=True)
        if not isinstance(login, bytes):
            return AuthResult(success=False, handled=False, message="501 5.5.2 Cannot decode base64")
        password = await server.challenge_auth(server.AuthLoginPasswordChallenge)
        if not isinstance(password, bytes):
            return AuthResult(success=False, handled=True)
        return await self._login(server, login, password)

    async def _login(self, server: SMTP, login: bytes, password: bytes) -> AuthResult:
        session = server.session
        assert session is not None
        source, peer = self._peer(session)
        name = login.decode("utf-8", "replace")[:users.MAX_USERNAME + 1]

        async def refuse(reply: str, reason: str) -> AuthResult:
            answer = await self._refuse(server, session, reply, reason=reason, actor=f"user {name}" if name else
                                        "anonymous", detail={"stage": "auth"})
            return AuthResult(success=False, handled=False, message=answer)

        if not self._network_allowed(peer):
            return await refuse(f"554 5.7.1 Your address {source} may not use this server (not in [email] "
                                "allowed_networks)", "network")
        if session.ssl is None and not (self.settings.loopback_auth_without_tls and peer is not None
                                        and peer.is_loopback):
            return await refuse("538 5.7.11 Encryption required: send STARTTLS before AUTH", "tls")
        try:
            text = password.decode("utf-8")
            user = await self.owner.run(users.check_login, self.gateway.store, self.owner.throttle, name, text)
        except UnicodeDecodeError:
            return await refuse("535 5.7.8 Authentication credentials invalid", "password")
        except users.LoginError as error:
            if error.status == 429:
                return await refuse(f"454 4.7.0 {_one_line(error.detail)}", "throttled")
            return await refuse("535 5.7.8 Authentication credentials invalid", "password")
        except StoreError:
            return AuthResult(success=False, handled=False,
                              message="454 4.7.0 Temporary authentication failure: the gateway cannot read its users")
        return AuthResult(success=True, auth_data=MailUser(int(user["id"]), str(user["username"])))


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError):
        return None


# --- the server ------------------------------------------------------------------------------------------------

class EmailGateway:
    """The embedded SMTP server: `start()` binds `[email] listen` (its port is `port`, e.g. for port 0) and serves
    on a thread of its own until `stop()`."""

    def __init__(self, gateway: Gateway, settings: EmailSettings, throttle: users.LoginThrottle | None = None):
        self.gateway = gateway
        self.settings = settings
        self.throttle = throttle or users.LoginThrottle()
        self.port: int | None = None
        self.host: str | None = None
        self._handler = _Handler(self)
        self._connections: set[_Smtp] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._tls: ssl.SSLContext | None = None
        self._server: asyncio.AbstractServer | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="email-work")

    def _tls_context(self) -> ssl.SSLContext | None:
        if not self.settings.tls_certificate:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.settings.tls_certificate, self.settings.tls_key)
        except (OSError, ssl.SSLError) as error:
            raise OSError(f"[email] tls_certificate {self.settings.tls_certificate} with tls_key "
                          f"{self.settings.tls_key} cannot be loaded: {error}") from None
        return context

    def start(self) -> EmailGateway:
        """Bind and serve. Raises OSError (the address is taken, the certificate cannot be read)."""
        from modemgw.config import parse_listen

        assert self.settings.listen, "[email] listen is not set"
        host, port = parse_listen(self.settings.listen)
        self._tls = self._tls_context()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self._socket = socket.create_server((host, port), family=family, backlog=32)
        except OSError as error:
            raise OSError(error.errno, f"[email] listen {self.settings.listen}: {error.strerror}") from None
        self.host, self.port = host, self._socket.getsockname()[1]
        mail_log = logging.getLogger("mail.log")  # aiosmtpd logs every command at INFO: only its warnings
        if mail_log.level == logging.NOTSET:
            mail_log.setLevel(logging.WARNING)
        self._loop = asyncio.new_event_loop()
        try:  # bound here, in the caller's thread, so that a mistake is the caller's error
            self._server = self._loop.run_until_complete(self._loop.create_server(self._protocol, sock=self._socket))
        except BaseException:
            self._loop.close()
            self._socket.close()
            raise
        self._thread = threading.Thread(target=self._run, name="email", daemon=True)
        self._thread.start()
        log.info("e-mail to SMS: listening on %s:%s for <number>@%s and <group>@%s", host, self.port,
                 self.settings.domain, self.settings.domain)
        return self

    def _protocol(self) -> asyncio.BaseProtocol:
        if len(self._connections) >= MAX_CONNECTIONS:
            return _Busy()
        return _Smtp(self._connections, self._handler, loop=self._loop, hostname=self.settings.domain,
                     ident="modemgw e-mail to SMS", data_size_limit=self.settings.max_size, enable_SMTPUTF8=True,
                     decode_data=False, tls_context=self._tls, timeout=IDLE_TIMEOUT,
                     auth_require_tls=not self.settings.loopback_auth_without_tls,
                     auth_exclude_mechanism=() if self.settings.auth else ("PLAIN", "LOGIN"))

    def _run(self) -> None:
        loop, server = self._loop, self._server
        assert loop is not None and server is not None
        asyncio.set_event_loop(loop)
        loop.run_forever()
        server.close()
        for connection in list(self._connections):
            if connection.transport is not None:
                connection.transport.close()
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(server.wait_closed())
        loop.close()

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` on the worker threads (database work, password checks), off the SMTP loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(function, *args))

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Stop serving: open sessions are closed (a mail not yet answered 250 is retried by its client)."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        if self._socket is not None:
            self._socket.close()
        self._pool.shutdown(wait=False)


__all__ = ["MAX_RECIPIENTS", "EmailGateway", "Mail", "MailError", "Recipient", "html_to_text", "idempotency_key",
           "read_mail", "recipient_of", "strip_replies", "tidy"]
