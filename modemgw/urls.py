"""Webhook and callback URLs: complete validation when a URL is submitted, and the address policy that decides
where a delivery may go. Pure (no DNS, no sockets): `webhooks` resolves names and applies the policy to every
address it would connect to.

A URL is refused unless it is http:// or https://, has a host (an IDNA-encodable name of labels of 1-63
characters and at most 253 in all, a dotted-quad IPv4 address, or a bracketed IPv6 address), a port from 1 to
65535 when one is given, no user name or password, no whitespace or control character anywhere, and at most
`MAX_URL_LENGTH` characters. Everything the sender would later trip over (http.client's InvalidURL, the IDNA
codec's UnicodeError, urllib's ValueError) is caught here, with a message that says what to fix.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

MAX_URL_LENGTH = 2048
MAX_HOST_LENGTH = 253   # RFC 1035: a name of at most 255 octets on the wire, 253 characters written out
MAX_LABEL_LENGTH = 63
PRIVATE_SETTING = "[gateway] callback_private_destinations = true"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# A host name label once IDNA-encoded: letters, digits, hyphens (not first or last) and underscores (which
# DNS carries, and some office networks' names have).
_LABEL = re.compile(r"(?!-)[a-z0-9_-]+(?<!-)")
# A last label that URL parsers (browsers, WHATWG) read as part of an IPv4 address: "127.1", "0x7f.1", "2130706433"
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")


class UrlError(ValueError):
    """A URL that cannot be a delivery's destination. The message is a predicate ("has a space at character
    12 ..."); callers put the field's name in front of it."""


@dataclass(frozen=True)
class Destination:
    """A checked URL, as the sender connects to it."""

    scheme: str                # "http" or "https"
    host: str                  # ASCII: IDNA A-labels in lower case, or an IP address without brackets
    port: int
    target: str                # the request target: path and query ("/" at least), non-ASCII percent-encoded
    ip: IPAddress | None       # the address, when the host is an IP literal

    @property
    def host_header(self) -> str:
        """The Host header: the name as written (never the address the name resolved to)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == (443 if self.scheme == "https" else 80) else f"{host}:{self.port}"

    @property
    def tls_name(self) -> str:
        """The name for TLS SNI and the certificate check."""
        return self.host.rstrip(".")


def _shown(url: str) -> str:
    return repr(url if len(url) <= 80 else url[:60] + "...")


def _character_problem(url: str) -> str | None:
    for position, char in enumerate(url, start=1):
        category = unicodedata.category(char)
        if char == " ":
            return f"has a space at character {position} (write it as %20)"
        if char.isspace() or category[0] == "Z":
            return f"has whitespace (U+{ord(char):04X}) at character {position}"
        if category in ("Cc", "Cf", "Cs"):
            return f"has a control or invisible formatting character (U+{ord(char):04X}) at character {position}"
    return None


def _ascii_host(name: str) -> str:
    """`name` (lower case, no brackets) as IDNA A-labels, every label and the whole checked. Raises UrlError."""
    if "%" in name:
        raise UrlError(f"has a percent sign in its host {name!r}: write the host name as it is")
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError as error:
            raise UrlError(f"has a host {name!r} that is not a valid international domain name ({error})") from None
    bare = name[:-1] if name.endswith(".") else name
    if len(bare) > MAX_HOST_LENGTH:
        raise UrlError(f"has a host name of {len(bare)} characters; a DNS name has at most {MAX_HOST_LENGTH}")
    labels = bare.split(".")
    for label in labels:
        if not label:
            raise UrlError(f"has an empty label in its host {name!r} (two dots in a row, or a leading dot)")
        if len(label) > MAX_LABEL_LENGTH:
            raise UrlError(f"has a host label of {len(label)} characters ({label[:20]}...); a DNS label has at most "
                           f"{MAX_LABEL_LENGTH}")
        if not _LABEL.fullmatch(label):
            raise UrlError(f"has a host label {label!r} with a character a host name cannot have (letters, digits, "
                           "underscores, and hyphens not first or last)")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        try:
            return str(ipaddress.IPv4Address(bare))
        except ValueError:
            raise UrlError(f"has a host {name!r} that is not a valid IPv4 address (write four decimal numbers "
                           "0-255, e.g. 192.0.2.10)") from None
    return name


def _host_and_port(netloc: str) -> tuple[str, IPAddress | None, str]:
    """(host, ip or None, port text) of an authority without user info. Raises UrlError."""
    if netloc.startswith("["):
        match = re.fullmatch(r"\[([^\[\]]*)\](?::(.*))?", netloc)
        if not match:
            raise UrlError(f"has a malformed IPv6 address in {netloc!r} (write it as [2001:db8::1] or "
                           "[2001:db8::1]:8080)")
        literal, port = match.group(1), match.group(2) or ""
        if "%" in literal:
            raise UrlError(f"has an IPv6 zone index in {netloc!r}: link-local addresses are never a destination")
        try:
            ip = ipaddress.IPv6Address(literal)
        except ValueError:
            raise UrlError(f"has [{literal}], which is not a well-formed IPv6 address") from None
        return str(ip), ip, port
    host, colon, port = netloc.rpartition(":")
    if not colon:
        host, port = netloc, ""
    if ":" in host or "[" in netloc or "]" in netloc:
        raise UrlError(f"has a malformed host {netloc!r} (an IPv6 address goes in brackets: [2001:db8::1])")
    if not host:
        raise UrlError(f"has no host before its port: {netloc!r}")
    ascii_host = _ascii_host(host.lower())
    try:
        return ascii_host, ipaddress.IPv4Address(ascii_host), port
    except ValueError:
        return ascii_host, None, port


def _bad_ipv6_literal(url: str) -> bool:
    """Whether urlsplit refuses `url` for its bracketed host: a bracket that does not close (or open), or brackets
    round something that is no IP address (urlsplit's own checks, made here so that its message is never parsed)."""
    netloc = re.split(r"[/?#]", url.partition("://")[2], maxsplit=1)[0]
    if ("[" in netloc) != ("]" in netloc):
        return True
    if "[" not in netloc:
        return False
    literal = netloc.partition("[")[2].partition("]")[0]
    if literal.startswith("v"):  # IPvFuture: urlsplit's complaint names no IPv6
        return False
    try:
        ipaddress.ip_address(literal)
    except ValueError:
        return True
    return False


def parse(url: str) -> Destination:
    """The destination of a webhook or callback URL, checked completely. Raises UrlError."""
    if not isinstance(url, str):
        raise UrlError(f"must be a string, not {type(url).__name__}")
    if not url:
        raise UrlError("is empty")
    if len(url) > MAX_URL_LENGTH:
        raise UrlError(f"is {len(url)} characters long; at most {MAX_URL_LENGTH}")
    problem = _character_problem(url)
    if problem:
        raise UrlError(problem)
    try:
        parts = urlsplit(url)
    except ValueError as error:  # e.g. a bracket that does not close: "http://[::1/"
        hint = "; an IPv6 address is written [2001:db8::1]" if _bad_ipv6_literal(url) else ""
        raise UrlError(f"is not a valid URL ({error}{hint})") from None
    if parts.scheme.lower() not in ("http", "https") or not url[len(parts.scheme):].startswith("://"):
        raise UrlError(f"must be an http:// or https:// URL, not {_shown(url)}")
    scheme = parts.scheme.lower()
    if "@" in parts.netloc:
        raise UrlError("has a user name or password before its host: deliveries are signed instead (remove it)")
    if not parts.netloc:
        raise UrlError(f"has no host: {_shown(url)}")
    host, ip, port_text = _host_and_port(parts.netloc)
    if port_text == "":
        port = 443 if scheme == "https" else 80
    elif re.fullmatch(r"[0-9]{1,5}", port_text) and 1 <= int(port_text) <= 65535:
        port = int(port_text)
    else:
        raise UrlError(f"has the port {port_text!r}; a port is a number from 1 to 65535")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not target.isascii():
        target = quote(target, safe="".join(chr(code) for code in range(0x21, 0x7F)))
    return Destination(scheme, host, port, target, ip)


def problem(url: str) -> str | None:
    """Why `url` cannot be a destination, or None."""
    try:
        parse(url)
    except UrlError as error:
        return str(error)
    return None


def _unwrapped(ip: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped (::ffff:a.b.c.d) or NAT64 (64:ff9b::a.b.c.d) IPv6 address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def address_problem(address: str | IPAddress, *, private: bool) -> str | None:
    """Why a delivery must not connect to `address` (None: it may), as a phrase ("a link-local address ...").

    Never: link-local (169.254.0.0/16, fe80::/10: cloud metadata services answer there), multicast,
    unspecified, "this network" and reserved addresses. Loopback, private (LAN) and other addresses that are
    not globally routable only with `private` (subscriptions always; messages' own callback URLs with
    `[gateway] callback_private_destinations`)."""
    ip = _unwrapped(ipaddress.ip_address(address.split("%")[0]) if isinstance(address, str) else address)
    if ip.is_link_local:
        return "a link-local address (where cloud metadata services answer): never a destination"
    if ip.is_multicast:
        return "a multicast address: never a destination"
    if ip.is_unspecified or isinstance(ip, ipaddress.IPv4Address) and ip in _THIS_NETWORK:
        return "an unspecified address: never a destination"
    if ip.is_reserved and not ip.is_loopback:  # ::1 lies in the reserved ::/8
        return "a reserved address: never a destination"
    if private:
        return None
    if ip.is_loopback:
        kind = "a loopback address"
    elif ip.is_private or isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        kind = "a private (LAN) address"
    elif not ip.is_global:
        kind = "an address that is not globally routable"
    else:
        return None
    return f"{kind}: callbacks go there only with {PRIVATE_SETTING}"


def check_callback(url: str, *, private: bool) -> Destination:
    """A message's own callback URL, checked when it is submitted: the URL, and an address or a loopback name
    written in it against the policy (names are resolved, and checked again, at each delivery). Raises
    UrlError."""
    destination = parse(url)
    if destination.ip is not None:
        refused = address_problem(destination.ip, private=private)
        if refused:
            raise UrlError(f"points at {destination.ip}, {refused}")
    elif not private and (destination.host.rstrip(".") == "localhost"
                          or destination.host.rstrip(".").endswith(".localhost")):
        raise UrlError(f"points at {destination.host}, a loopback name: callbacks go there only with "
                       f"{PRIVATE_SETTING}")
    return destination
