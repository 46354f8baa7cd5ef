"""Saved templates as the gateway offers them to every edge: named bodies with {placeholders} and spintax.

`TemplateLibrary` is a part of `Gateway` (a mixin over `self.store`); edges call these methods on the gateway.
A template is checked when it is saved, with the grammar that sends it (`text.Renderer`): its size first
(`text.MAX_BODY_CHARS`, before any parsing), then its spintax, then every `{` must open a placeholder or a
spintax group (a brace that is neither is almost always a typo: `{first name!}` would otherwise go out as
literal text to every recipient; `\\{` writes the character itself), and filled with sample values it must fit
one SMS (at most `text.MAX_PARTS` segments). Each template is shown with its placeholders and the segments of
that sample, so a person sees what a send will cost before choosing it.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

from modemgw import text
from modemgw.store import NotFound

if TYPE_CHECKING:
    from modemgw.settings import GatewaySettings
    from modemgw.store import Store

MAX_NAME_CHARS = 60
MAX_ID = 2**63 - 1  # the largest row id SQLite holds
SAMPLE_SEED = 0     # spintax choices of the sample are the same at every look


class LibraryError(ValueError):
    """A template that cannot be saved as given: `detail` says what to fix, `field` names the input at fault
    ("name", "body", "spintax"). (Not SubmitError, which lives in modemgw.gateway: that module imports this one.)"""

    def __init__(self, detail: str, field: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.field = field


def _is_placeholder(inner: str) -> bool:
    """Whether `{inner}` is a placeholder as `text` reads it (its rule of names, not a copy of it)."""
    return len(inner) <= text.MAX_FIELD_NAME + 32 and text.template_fields("{" + inner + "}") == [inner.strip()]


def _check_braces(body: str, spintax: bool) -> None:
    """Raise LibraryError at the first `{` that opens neither a placeholder nor (with `spintax`) a group of two
    or more choices. Runs after `text.Renderer` accepted the body (so spintax groups are balanced and nest at
    most text.MAX_NESTING deep); one pass, no regular expression."""
    hint = ("a placeholder is {name} (a letter or _, then letters, digits, _ . - or spaces; at most "
            f"{text.MAX_FIELD_NAME} characters){', spintax is {a|b}' if spintax else ''}; write \\{{ for the "
            "character itself")
    groups: list[list] = []  # open spintax groups: [position of "{", whether a "|" of its own was seen]
    position, end = 0, len(body)
    while position < end:
        char = body[position]
        if char == "\\" and position + 1 < end and body[position + 1] in "{}|\\":
            position += 2
            continue
        if char == "{" and not spintax:
            close = body.find("}", position + 1, position + 2 + text.MAX_FIELD_NAME + 32)
            if close < 0 or not _is_placeholder(body[position + 1:close]):
                spin = close > 0 and "|" in body[position:close]
                raise LibraryError(f"'{{' at character {position + 1} opens no placeholder"
                                   f"{' (it looks like spintax: turn spintax on)' if spin else ''}; {hint}", "body")
            position = close + 1
            continue
        if char == "{":
            groups.append([position, False])
        elif char == "|" and groups:
            groups[-1][1] = True
        elif char == "}" and groups:
            start, choices = groups.pop()
            if not choices and not _is_placeholder(body[start + 1:position]):
                raise LibraryError(f"'{{' at character {start + 1} opens neither a placeholder nor a choice of two "
                                   f"or more; {hint}", "body")
        position += 1


def _check_text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise LibraryError(f"{field} must be text, not {type(value).__name__}", field)
    if any("\ud800" <= char <= "\udfff" for char in value):
        raise LibraryError(f"{field} has a lone UTF-16 surrogate (a broken emoji); send valid Unicode", field)
    return value


def check_name(name: Any) -> str:
    """The name as it is saved (blanks around it removed). Raises LibraryError."""
    name = _check_text(name, "name")
    if len(name) > 4 * MAX_NAME_CHARS:  # bounded before any other work
        raise LibraryError(f"the name is {len(name):,} characters; at most {MAX_NAME_CHARS} are taken", "name")
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME_CHARS:
        raise LibraryError(f"the name must be 1 to {MAX_NAME_CHARS} characters (not counting blanks around it), "
                           f"not {len(name)}", "name")
    if any(char < " " or "\x7f" <= char <= "\x9f" for char in name):
        raise LibraryError("the name must be one line without control characters", "name")
    if name.isascii() and name.isdigit():
        raise LibraryError("the name must not be only digits (a number names a template by its id); add a letter",
                           "name")
    return name


def check_body(body: Any, spintax: bool) -> text.TextInfo:
    """Check a template's body as it would be sent: size, spintax, braces, and that its sample fits one SMS.
    Returns the sample's TextInfo. Raises LibraryError."""
    body = _check_text(body, "body")
    if len(body) > text.MAX_BODY_CHARS:  # before any parsing
        raise LibraryError(f"the body is {len(body):,} characters; at most {text.MAX_BODY_CHARS:,} are taken",
                           "body")
    if not body.strip():
        raise LibraryError("the body is empty: write the message text", "body")
    try:
        renderer = text.Renderer(body, spintax=spintax, templates=True)
    except text.TextError as error:
        raise LibraryError(f"the body's {'spintax' if spintax else 'text'} is not valid: {error}", "body") from None
    _check_braces(body, spintax)
    try:
        return _sample(renderer)
    except text.TextError as error:
        raise LibraryError(f"the body cannot be sent as one SMS with sample values: {error}", "body") from None


def _sample(renderer: text.Renderer) -> text.TextInfo:
    """The text of `renderer` with each placeholder filled with its own name (`{first_name}` -> "first_name": never
    longer than the placeholder, so a sample is never over the size bound) and spintax chosen with a fixed seed.
    Raises TextError (more segments than an SMS can have)."""
    rendered = renderer.render({name: name for name in renderer.fields}, random.Random(SAMPLE_SEED))
    return text.info(rendered)


def describe(row: dict) -> dict:
    """A template row as every edge shows it: {"id", "name", "body", "spintax", "placeholders" (in order of first
    use), "segments", "encoding" and "sample" (the body with each placeholder filled with its name, spintax chosen
    once: what one message of it costs, about), "created_at", "updated_at"}."""
    spintax = bool(row["spintax"])
    placeholders: list[str] = []
    segments: int | None = None
    encoding: str | None = None
    sample: str | None = None
    try:
        renderer = text.Renderer(row["body"], spintax=spintax, templates=True)
        placeholders = renderer.fields
        info = _sample(renderer)
        segments, encoding, sample = info.segments, info.encoding, info.text
    except text.TextError:
        pass  # saved by an older version that checked less: shown, and refused when it is sent
    return {"id": row["id"], "name": row["name"], "body": row["body"], "spintax": spintax,
            "placeholders": placeholders, "segments": segments, "encoding": encoding, "sample": sample,
            "created_at": row["created_at"], "updated_at": row["updated_at"]}


def _spintax(value: Any) -> bool:
    if not isinstance(value, (bool, int)) or value not in (0, 1):
        raise LibraryError(f"spintax must be true or false, not {value!r}", "spintax")
    return bool(value)


class TemplateLibrary:
    """Saved templates, through the gateway."""

    store: Store
    settings: GatewaySettings

    def templates(self) -> list[dict]:
        """Every saved template (see `describe`), by name. Raises StoreError."""
        return [describe(row) for row in self.store.templates()]

    def template(self, ref: int | str) -> dict:
        """A template by its id (an int, or a string of digits) or its name (any other string, whatever its case).
        Raises NotFound, StoreError."""
        if isinstance(ref, str) and ref.strip().isascii() and ref.strip().isdigit():
            ref = int(ref.strip()) if len(ref.strip()) <= 19 else -1
        if isinstance(ref, bool) or not isinstance(ref, (int, str)):
            raise NotFound(f"no template {ref!r} (give a template's id or name)")
        if isinstance(ref, int):
            if not 0 < ref <= MAX_ID:
                raise NotFound(f"no template {ref}")
            return describe(self.store.template(ref))
        name = ref.strip()
        if not name or len(name) > MAX_NAME_CHARS:
            raise NotFound(f"no template named {name[:MAX_NAME_CHARS]!r}")
        return describe(self.store.template_by_name(name))

    def create_template(self, name: str, body: str, spintax: bool = False) -> dict:
        """Save a new template. Raises LibraryError (what to fix), Duplicate (the name is taken, whatever its
        case), StoreError."""
        name, spintax = check_name(name), _spintax(spintax)
        check_body(body, spintax)
        return describe(self.store.add_template(name, body, spintax, time.time()))

    def update_template(self, template_id: int, **changes: Any) -> dict:
        """Change a template's `name`, `body` and/or `spintax`; the result is checked as a whole (turning spintax
        off must leave a body that is valid without it). Raises LibraryError, NotFound, Duplicate, StoreError."""
        unknown = sorted(set(changes) - {"name", "body", "spintax"})
        if unknown:
            raise LibraryError(f"unknown field {unknown[0]!r} (fields: name, body, spintax)", unknown[0])
        current = self.store.template(template_id)
        if "name" in changes:
            changes["name"] = check_name(changes["name"])
        if "spintax" in changes:
            changes["spintax"] = _spintax(changes["spintax"])
        if "body" in changes or "spintax" in changes:
            check_body(changes.get("body", current["body"]), changes.get("spintax", bool(current["spintax"])))
        if not changes:
            return describe(current)
        return describe(self.store.update_template(template_id, changes, time.time()))

    def delete_template(self, template_id: int) -> None:
        """Delete a saved template. Raises NotFound, StoreError."""
        self.store.delete_template(template_id)
