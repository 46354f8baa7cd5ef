"""Message text: encoding choice, segment splitting and counting, smart encoding, spintax and templates.

Everything here is pure. The GSM 03.38 alphabet (basic table and extension table) comes from the `gsm0338`
codec; this module turns it into lookup tables once, because a bulk submit measures every recipient's text.

Lengths follow TS 23.038 / 23.040: a GSM-7 segment holds 160 septets (153 after an 8-bit concatenation header,
152 after a 16-bit one), an extension character (``€ [ ] { } | ^ ~ \\`` and form feed) costs two septets, a
UCS-2 segment holds 70 UTF-16 code units (67, or 66 with a 16-bit header), and an emoji outside the BMP is a
surrogate pair of two units. A split never separates an escape pair or a surrogate pair.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)

GSM7 = "gsm7"
UCS2 = "ucs2"
BINARY = "8bit"
ENCODINGS = (GSM7, UCS2, BINARY)

ESCAPE = 0x1B
MAX_PARTS = 255  # TP-UDH concatenation counts parts in one octet
# The longest text or template any function here takes, checked before any other work: 255 segments of 160
# characters, with room for template fields and spintax alternatives. Every parser below is linear, and this
# bounds their work (a request cannot hold a thread for long; the watchdog must never starve).
MAX_BODY_CHARS = 4 * MAX_PARTS * 160
MAX_FIELD_NAME = 64  # characters of a template field name

# Payload capacity per segment: (single, with 8-bit concat header, with 16-bit concat header),
# in septets for GSM-7, UTF-16 code units for UCS-2, octets for 8-bit data.
CAPACITY = {
    GSM7: (160, 153, 152),
    UCS2: (70, 67, 66),
    BINARY: (140, 134, 133),
}


class TextError(ValueError):
    """A message text cannot be encoded, split, expanded or filled in as asked."""


class SpintaxError(TextError):
    """Unbalanced or empty spintax; `position` is the offset of the fault (0 for the first character). The message
    counts characters from 1, as a person does ("at character 7" is the 7th character)."""

    def __init__(self, message: str, position: int):
        super().__init__(f"{message} at character {position + 1}")
        self.position = position


class TemplateError(TextError):
    """A template names fields that the recipient does not have; `missing` lists them."""

    def __init__(self, missing: list[str], available: list[str]):
        names = ", ".join(repr(name) for name in missing)
        have = ", ".join(repr(name) for name in available) or "none"
        plural = "s" if len(missing) > 1 else ""
        super().__init__(f"missing template field{plural} {names} (fields given: {have})")
        self.missing = missing
        self.available = available


def _build_alphabet() -> tuple[dict[str, bytes], tuple[str, ...], dict[int, str]]:
    """Read the 3GPP tables out of the gsm0338 codec: char -> septets, basic decode table, extension table."""
    basic = [""] * 128
    extension: dict[int, str] = {}
    encode: dict[str, bytes] = {}
    for code in range(128):
        if code == ESCAPE:
            continue
        char = bytes([code]).decode("gsm03.38")
        basic[code] = char
        encode.setdefault(char, bytes([code]))
    for code in range(128):
        try:
            char = bytes([ESCAPE, code]).decode("gsm03.38")
        except UnicodeDecodeError:
            continue
        if char:
            extension[code] = char
            encode.setdefault(char, bytes([ESCAPE, code]))
    return encode, tuple(basic), extension


_ENCODE, _BASIC, _EXTENSION = _build_alphabet()


def is_gsm7(text: str) -> bool:
    """True when every character of `text` is in the GSM 03.38 basic or extension table."""
    encode = _ENCODE
    return all(char in encode for char in text)


def non_gsm7_characters(text: str) -> list[str]:
    """The distinct characters that force UCS-2, in order of first appearance."""
    seen: dict[str, None] = {}
    for char in text:
        if char not in _ENCODE:
            seen.setdefault(char, None)
    return list(seen)


def gsm7_septets(text: str) -> bytes:
    """Septet values (one per byte, escape pairs expanded) for GSM-7 `text`.

    Raises TextError naming the first character outside the alphabet.
    """
    encode = _ENCODE
    try:
        return b"".join([encode[char] for char in text])
    except KeyError:
        bad = non_gsm7_characters(text)[0]
        raise TextError(
            f"character {bad!r} (U+{ord(bad):04X}) at position {text.index(bad) + 1} is not in the GSM-7 alphabet"
        ) from None


def septets_to_text(septets: bytes) -> str:
    """Decode septet values to text, following TS 23.038 for escapes.

    An escape followed by a code with no extension character shows the basic character (6.2.1.1); escape-escape
    shows a space (reserved for a further table); a trailing lone escape is dropped.
    """
    out: list[str] = []
    basic = _BASIC
    i, n = 0, len(septets)
    while i < n:
        code = septets[i] & 0x7F
        if code != ESCAPE:
            out.append(basic[code])
            i += 1
            continue
        if i + 1 >= n:
            break
        following = septets[i + 1] & 0x7F
        if following == ESCAPE:
            out.append(" ")
        else:
            out.append(_EXTENSION.get(following, basic[following]))
        i += 2
    return "".join(out)


def utf16_units(text: str) -> int:
    """Number of UTF-16 code units: characters outside the BMP (emoji) count two."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def choose_encoding(text: str) -> str:
    """GSM-7 when every character fits its tables, else UCS-2."""
    return GSM7 if is_gsm7(text) else UCS2


def _unit_costs(text: str, encoding: str) -> list[int]:
    if encoding == GSM7:
        encode = _ENCODE
        return [len(encode[char]) for char in text]
    return [2 if ord(char) > 0xFFFF else 1 for char in text]


def capacity(encoding: str, parts: int, concat_bits: int = 8) -> int:
    """Payload units one segment holds: single when `parts` is 1, else after a concatenation header."""
    single, with8, with16 = CAPACITY[encoding]
    if parts <= 1:
        return single
    return with16 if concat_bits == 16 else with8


def split(text: str, encoding: str | None = None, concat_bits: int = 8) -> list[str]:
    """Split `text` into segment texts that each fit one SMS.

    `encoding` defaults to `choose_encoding(text)`; `concat_bits` (8 or 16) is the reference size of the
    concatenation header used when more than one part is needed. Escape pairs and surrogate pairs are never split.
    Raises TextError when GSM-7 is forced on text outside the alphabet or more than 255 parts would be needed.
    """
    if concat_bits not in (8, 16):
        raise TextError(f"concatenation reference must be 8 or 16 bits, not {concat_bits}")
    encoding = encoding or choose_encoding(text)
    if encoding == GSM7 and not is_gsm7(text):
        gsm7_septets(text)  # raises with the offending character
    if encoding not in (GSM7, UCS2):
        raise TextError(f"text cannot be split as {encoding!r}; use split_data for 8-bit data")
    costs = _unit_costs(text, encoding)
    if sum(costs) <= capacity(encoding, 1):
        return [text]
    limit = capacity(encoding, 2, concat_bits)
    parts: list[str] = []
    start = used = 0
    for index, cost in enumerate(costs):
        if used + cost > limit:
            parts.append(text[start:index])
            start, used = index, 0
        used += cost
    parts.append(text[start:])
    if len(parts) > MAX_PARTS:
        raise TextError(f"text needs {len(parts)} segments; an SMS can be concatenated from at most {MAX_PARTS}")
    return parts


def split_data(data: bytes, concat_bits: int = 8) -> list[bytes]:
    """Split 8-bit data into segment payloads (140 octets single, 134/133 per part when concatenated)."""
    if len(data) <= capacity(BINARY, 1):
        return [data]
    limit = capacity(BINARY, 2, concat_bits)
    parts = [data[i:i + limit] for i in range(0, len(data), limit)]
    if len(parts) > MAX_PARTS:
        raise TextError(f"data needs {len(parts)} segments; at most {MAX_PARTS} can be concatenated")
    return parts


# --- smart encoding -------------------------------------------------------------------------------------------

# Look-alikes that phones and word processors put in text, each replaced by GSM-7 characters that read the same.
SMART_REPLACEMENTS: dict[str, str] = {
    **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\u0060\u00b4\u02bc\u2039\u203a", "'"),
    **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb", '"'),
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2043\ufe63\uff0d", "-"),
    "\u2026": "...",
    **dict.fromkeys("\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000",
                    " "),
    **dict.fromkeys("\u200b\u200c\u200d\u2060\ufeff\u00ad", ""),
    "\u2022": "-",
    "\u00b7": ".",
    "\u2044": "/",
    "\u2215": "/",
    "\u02c6": "^",
    "\u02dc": "~",
    "\u00d7": "x",
    "\u00f7": "/",
    "\u2122": "TM",
    "\u00a9": "(C)",
    "\u00ae": "(R)",
    "\u00bc": "1/4",
    "\u00bd": "1/2",
    "\u00be": "3/4",
    "\uff01": "!",
    "\uff1f": "?",
    "\uff0c": ",",
    "\uff0e": ".",
    "\uff1a": ":",
    "\uff1b": ";",
}
_SMART_TABLE = str.maketrans(SMART_REPLACEMENTS)


def smart_encode(text: str) -> tuple[str, dict[str, str]]:
    """Replace typographic look-alikes with GSM-7 characters, but only when that makes the whole text GSM-7.

    Returns the text to send and the replacements made ({original: replacement}). When some other character
    needs UCS-2 anyway, the text is returned unchanged: UCS-2 shows the originals at no extra cost.
    """
    if is_gsm7(text):
        return text, {}
    replaced = text.translate(_SMART_TABLE)
    if not is_gsm7(replaced):
        return text, {}
    made = {char: SMART_REPLACEMENTS[char] for char in non_gsm7_characters(text)}
    return replaced, made


# --- counting -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TextInfo:
    """What a text costs to send, in the terms cloud SMS APIs use."""

    text: str
    encoding: str
    characters: int       # Unicode code points of the text as it will be sent
    units: int            # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int         # the `num_segments` of cloud APIs
    per_segment: int      # capacity of each segment at this count
    remaining: int        # units still free in the last segment
    unicode_characters: list[str] = field(default_factory=list)  # what forces UCS-2
    replacements: dict[str, str] = field(default_factory=dict)   # what smart encoding changed

    def as_dict(self) -> dict:
        return {
            "encoding": self.encoding,
            "characters": self.characters,
            "units": self.units,
            "segments": self.segments,
            "per_segment": self.per_segment,
            "remaining": self.remaining,
            "unicode_characters": list(self.unicode_characters),
            "replacements": dict(self.replacements),
        }


def check_length(text: str, what: str = "text") -> None:
    """Raise TextError when `text` is longer than anything this module takes (MAX_BODY_CHARS)."""
    if len(text) > MAX_BODY_CHARS:
        raise TextError(f"{what} is {len(text):,} characters; at most {MAX_BODY_CHARS:,} are taken (an SMS is at "
                        f"most {MAX_PARTS} segments of 160 characters)")


def info(text: str, smart: bool = False, concat_bits: int = 8) -> TextInfo:
    """Encoding, size and segment count of `text` (after smart encoding when `smart`). Raises TextError (too long
    for any SMS)."""
    check_length(text)
    replacements: dict[str, str] = {}
    if smart:
        text, replacements = smart_encode(text)
    encoding = choose_encoding(text)
    parts = split(text, encoding, concat_bits)
    per_segment = capacity(encoding, len(parts), concat_bits)
    last_used = sum(_unit_costs(parts[-1], encoding))
    units = len(gsm7_septets(text)) if encoding == GSM7 else utf16_units(text)
    return TextInfo(
        text=text,
        encoding=encoding,
        characters=len(text),
        units=units,
        segments=len(parts),
        per_segment=per_segment,
        remaining=per_segment - last_used,
        unicode_characters=non_gsm7_characters(text) if encoding == UCS2 else [],
        replacements=replacements,
    )


# --- spintax and templates ------------------------------------------------------------------------------------
#
# One grammar serves both, so that `{Hi|Hello} {name}` works: a brace group with `|` is a spintax choice (only
# when spintax is on), a group holding just a field name is a placeholder (only when fields are used), anything
# else stays literal text. `\{`, `\}`, `\|` and `\\` are literal characters whenever either feature is on.

MAX_NESTING = 20  # spintax groups inside groups; deeper is a mistake (and would exhaust the parser's stack)


@dataclass(frozen=True)
class _Field:
    name: str


@dataclass(frozen=True)
class _Choice:
    options: tuple[tuple, ...]  # each option is a sequence of nodes


def _field_name(text: str) -> str | None:
    """The field name a placeholder's text holds (`{ first name }` -> 'first name'), or None: a letter or `_`, then
    letters, digits, `_`, `.`, `-` and spaces, at most MAX_FIELD_NAME characters; blanks around it are ignored.
    No regular expression: the one this replaces backtracked quadratically on spaces (128 KB took 42 s)."""
    if len(text) > MAX_FIELD_NAME + 32:  # room for blanks around a name, and no work at all on long text
        return None
    name = text.strip()
    if not 0 < len(name) <= MAX_FIELD_NAME or not (name[0].isascii() and name[0].isalpha() or name[0] == "_"):
        return None
    if all(char.isalnum() or char in "_ .-" for char in name):
        return name
    return None


def _parse(body: str, spintax: bool, fields: bool) -> tuple:
    """Parse `body` into a sequence of nodes: str, _Field, _Choice. Raises SpintaxError, TextError (too long)."""
    check_length(body, "the body")
    nodes, position = _parse_sequence(body, 0, spintax, fields, depth=0)
    if position < len(body):  # only a stray `}` or `|` at top level stops the sequence early
        raise SpintaxError(f"unexpected {body[position]!r} outside a {{...}} group; write \\{body[position]} "
                           f"for the character itself", position)
    return nodes


def _parse_sequence(body: str, position: int, spintax: bool, fields: bool, depth: int) -> tuple[tuple, int]:
    nodes: list = []
    literal: list[str] = []
    n = len(body)
    while position < n:
        char = body[position]
        if char == "\\" and position + 1 < n and body[position + 1] in "{}|\\":
            literal.append(body[position + 1])
            position += 2
        elif char == "{":
            node, position = _parse_group(body, position, spintax, fields, depth)
            if isinstance(node, str):
                literal.append(node)
            else:
                nodes.append("".join(literal))
                literal = []
                nodes.append(node)
        elif char in "|}" and depth > 0:
            break
        elif char in "|}" and spintax:
            if char == "|":  # a lone bar at top level is ordinary text
                literal.append(char)
                position += 1
                continue
            break
        else:
            literal.append(char)
            position += 1
    nodes.append("".join(literal))
    return tuple(node for node in nodes if node != ""), position


def _parse_group(body: str, start: int, spintax: bool, fields: bool, depth: int):
    """Parse the group opening at `start`; return (node or literal text, position after it)."""
    if not spintax:
        # a placeholder is short: look for its `}` nearby only (a body of many `{` must not cost quadratic time)
        end = body.find("}", start + 1, start + 2 + MAX_FIELD_NAME + 32) if fields else -1
        name = _field_name(body[start + 1:end]) if end > 0 else None
        if name:
            return _Field(name), end + 1
        return "{", start + 1
    if depth >= MAX_NESTING:
        raise SpintaxError(f"spintax nested deeper than {MAX_NESTING} levels", start)
    options: list[tuple] = []
    position = start + 1
    while True:
        nodes, position = _parse_sequence(body, position, spintax, fields, depth + 1)
        options.append(nodes)
        if position >= len(body):
            raise SpintaxError("unclosed '{' (add '}' or write \\{ for the character itself)", start)
        if body[position] == "}":
            position += 1
            break
        position += 1  # past "|"
    if len(options) == 1:
        only = options[0]
        name = _field_name(only[0]) if fields and len(only) == 1 and isinstance(only[0], str) else None
        if name:
            return _Field(name), position
        if len(only) <= 1 and all(isinstance(node, str) for node in only):
            return "{" + (only[0] if only else "") + "}", position
        return _Choice((("{",) + only + ("}",),)), position
    return _Choice(tuple(options)), position


def _field_names(nodes: tuple) -> list[str]:
    names: dict[str, None] = {}
    for node in nodes:
        if isinstance(node, _Field):
            names.setdefault(node.name, None)
        elif isinstance(node, _Choice):
            for option in node.options:
                names.update(dict.fromkeys(_field_names(option)))
    return list(names)


def _expand(nodes: tuple, rng: random.Random, values: dict[str, str], out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, _Field):
            out.append(values[node.name])
        else:
            _expand(rng.choice(node.options), rng, values, out)


def _count(nodes: tuple) -> int:
    total = 1
    for node in nodes:
        if isinstance(node, _Choice):
            total *= sum(_count(option) for option in node.options)
    return total


def template_fields(body: str, spintax: bool = False) -> list[str]:
    """The `{field}` names a template uses, in order of first appearance."""
    return _field_names(_parse(body, spintax, fields=True))


def variant_count(body: str) -> int:
    """How many different texts the spintax in `body` can produce (placeholders count once)."""
    return _count(_parse(body, spintax=True, fields=True))


class Renderer:
    """A body parsed once, rendered for many recipients (a bulk submit parses the body once, not per recipient)."""

    def __init__(self, body: str, spintax: bool = False, templates: bool = True):
        self.body = body
        self.spintax = spintax
        self.templates = templates
        self._nodes = _parse(body, spintax, templates) if (spintax or templates) else (body,)
        self.fields = _field_names(self._nodes)

    def render(self, values: dict | None = None, rng: random.Random | None = None) -> str:
        """The text for one recipient. Raises TemplateError when `values` lacks a field the body uses.

        A body without placeholders renders to itself (escapes resolved) whatever `values` holds.
        """
        values = values or {}
        if self.fields:
            missing = [name for name in self.fields if name not in values or values[name] is None]
            if missing:
                raise TemplateError(missing, sorted(str(key) for key in values))
        text_values = {name: str(values[name]) for name in self.fields}
        out: list[str] = []
        _expand(self._nodes, rng or random.Random(), text_values, out)
        return "".join(out)


def render(body: str, values: dict | None = None, spintax: bool = False, rng: random.Random | None = None,
           seed: int | None = None) -> str:
    """Expand spintax (when `spintax`) and fill `{field}` placeholders from `values` (when given).

    With neither spintax nor values the body is returned exactly as written. `seed` makes the spintax choice
    reproducible when no `rng` is passed. Raises SpintaxError or TemplateError.
    """
    if not spintax and values is None:
        return body
    if rng is None:
        rng = random.Random(seed)
    return Renderer(body, spintax=spintax, templates=values is not None).render(values, rng)
