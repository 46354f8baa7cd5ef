"""Recipients to E.164 (modemgw.numbers): a table of cases, and the bounds that come before any parsing."""

import pytest

from modemgw import numbers


@pytest.mark.parametrize("raw, region, expected", [
    ("+447700900123", None, "+447700900123"),
    ("+44 (0)7700 900-123", None, "+447700900123"),
    ("004915112345678", None, "+4915112345678"),
    ("07700 900123", "GB", "+447700900123"),
    ("0151 12345678", "de", "+4915112345678"),
    ("  +1 415.555.2671 ", None, "+14155552671"),
])
def test_numbers_are_normalised_to_e164(raw, region, expected):
    assert numbers.normalize(raw, region) == expected


@pytest.mark.parametrize("raw, region, words", [
    ("", "GB", "empty"),
    ("07700 900123", None, "no country code"),
    ("+44 12ab", None, "not a phone number"),
    ("+999 123456", None, "not a phone number"),
    ("+44 77", None, "too short"),
    ("+44" + "1" * 40, None, "characters long"),
    ("1 " * 500_000, "GB", "characters long"),  # refused before any parsing, and not echoed whole
])
def test_what_is_not_a_number_is_refused_with_the_reason(raw, region, words):
    with pytest.raises(numbers.NumberError, match=words) as caught:
        numbers.normalize(raw, region)
    assert len(str(caught.value)) < 200


def test_strict_numbers_refuse_ranges_set_aside_for_drama_that_are_otherwise_possible():
    assert numbers.normalize("+44 7700 900000", None) == "+447700900000"  # Ofcom's range for TV and films
    with pytest.raises(numbers.NumberError, match="allocated"):
        numbers.normalize("+44 7700 900000", None, strict=True)


@pytest.mark.parametrize("a, b, same", [
    ("+447700900123", "+447700900123", True),
    ("+447700900123", "07700900123", True),      # a status report with the national form
    ("+447700900123", "447700900123", True),
    ("+447700900123", "+447700900124", False),
    ("+447700900123", "", False),
    ("123", "+44123", False),                    # too short to trust a suffix match
])
def test_same_number_accepts_a_national_rendering_only(a, b, same):
    assert numbers.same_number(a, b) is same


def test_a_national_number_that_does_not_fit_the_default_region_says_which_region_it_was_read_in():
    with pytest.raises(numbers.NumberError, match=r"too long as a number of GB .*default_region"):
        numbers.normalize("0151 98765432", "GB")  # a German mobile written nationally, on a British gateway
    assert numbers.normalize("0151 98765432", "DE") == "+4915198765432"
