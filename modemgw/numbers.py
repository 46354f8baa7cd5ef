"""Recipients to E.164, with the default region from config; alphanumeric sender rules. Pure.

Numbers are checked for a *possible* length and shape for their country (phonenumbers' metadata); the stricter
`strict=True` also demands an allocated range, which rejects typos but also fictional and newly opened ranges.
"""

from __future__ import annotations

import re

import phonenumbers


class NumberError(ValueError):
    """A recipient or sender that cannot be used; the message says what is wrong with it."""


_DIALLED = re.compile(r"[\s().\-/]")
MAX_NUMBER_CHARS = 40  # 15 digits (E.164), a leading 00 or +, and room for spaces, dashes and brackets


def normalize(number: str, region: str | None = None, strict: bool = False) -> str:
    """`number` as E.164 (`+4915112345678`). National numbers need `region` (ISO 3166 alpha-2, e.g. "DE").

    Raises NumberError naming the number and the problem.
    """
    raw = (number or "").strip()
    if not raw:
        raise NumberError("recipient is empty")
    if len(raw) > MAX_NUMBER_CHARS:  # before any other work, and never echoed whole
        raise NumberError(f"recipient {raw[:20]!r}... is {len(raw)} characters long; a phone number has at most 15 "
                          "digits")
    cleaned = _DIALLED.sub("", raw)
    if cleaned.startswith("00"):
        cleaned = "+" + cleaned[2:]
    if not re.fullmatch(r"\+?[0-9]+", cleaned):
        raise NumberError(f"{raw!r} is not a phone number (only digits, spaces, dashes, dots, brackets and a "
                          "leading + are allowed)")
    if not cleaned.startswith("+") and not region:
        raise NumberError(f"{raw!r} has no country code; write it as +<country><number> or configure "
                          "default_region")
    try:
        parsed = phonenumbers.parse(cleaned, None if cleaned.startswith("+") else (region or "").upper())
    except phonenumbers.NumberParseException as error:
        raise NumberError(f"{raw!r} is not a phone number: {error._msg}") from None
    reason = phonenumbers.is_possible_number_with_reason(parsed)
    if reason != phonenumbers.ValidationResult.IS_POSSIBLE:
        explanation = {
            phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "has an unknown country code",
            phonenumbers.ValidationResult.TOO_SHORT: "is too short",
            phonenumbers.ValidationResult.TOO_LONG: "is too long",
            phonenumbers.ValidationResult.INVALID_LENGTH: "has a length no number in its country has",
        }.get(reason, "is not a possible number")
        if not cleaned.startswith("+"):  # say which country it was read in: a foreign number without +country
            explanation += (f" as a number of {(region or '').upper()} (a number without +<country code> is read as "
                            "one of [gateway] default_region; write it with its country code)")
        raise NumberError(f"{raw!r} {explanation}")
    if strict and not phonenumbers.is_valid_number(parsed):
        raise NumberError(f"{raw!r} is not in any allocated number range")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def same_number(a: str, b: str) -> bool:
    """True when two renderings name the same subscriber: status reports may carry a national form."""
    digits_a, digits_b = re.sub(r"\D", "", a), re.sub(r"\D", "", b)
    if not digits_a or not digits_b:
        return False
    if digits_a == digits_b:
        return True
    shorter, longer = sorted((digits_a.lstrip("0"), digits_b.lstrip("0")), key=len)
    return len(shorter) >= 7 and longer.endswith(shorter)
