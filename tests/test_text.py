import random

import pytest
from hypothesis import given, strategies as st

from modemgw import text
from modemgw.text import GSM7, UCS2
from tests.support import GSM7_BASIC, GSM7_EXTENSION


def test_alphabet_has_the_3gpp_tables():
    assert len(set(GSM7_BASIC)) == 127  # 128 codes less the escape
    assert text.gsm7_septets(GSM7_BASIC) == bytes(code for code in range(128) if code != 0x1B)
    assert all(len(text.gsm7_septets(char)) == 2 for char in GSM7_EXTENSION)
    assert text.gsm7_septets("€") == b"\x1b\x65"


@pytest.mark.parametrize("body, encoding", [
    ("Hello, world!", GSM7),
    ("Price: 5€ [incl. {tax}]", GSM7),
    ("Ünïcödé? Not all: ï", UCS2),
    ("Hi 😀", UCS2),
    ("Привет", UCS2),
    ("curly ’quote’", UCS2),
    ("", GSM7),
])
def test_choose_encoding(body, encoding):
    assert text.choose_encoding(body) == encoding


@pytest.mark.parametrize("body, encoding, segments, units", [
    ("a" * 160, GSM7, 1, 160),
    ("a" * 161, GSM7, 2, 161),
    ("a" * 306, GSM7, 2, 306),
    ("a" * 307, GSM7, 3, 307),
    ("€" * 80, GSM7, 1, 160),
    ("€" * 81, GSM7, 2, 162),
    ("ж" * 70, UCS2, 1, 70),
    ("ж" * 71, UCS2, 2, 71),
    ("ж" * 134, UCS2, 2, 134),
    ("ж" * 135, UCS2, 3, 135),
    ("😀" * 35, UCS2, 1, 70),
    ("😀" * 36, UCS2, 2, 72),
    ("Hi 😀", UCS2, 1, 5),
])
def test_segment_counts(body, encoding, segments, units):
    result = text.info(body)
    assert (result.encoding, result.segments, result.units) == (encoding, segments, units)


def test_acceptance_400_gsm7_characters_with_euro():
    body = ("Your invoice of 12€ is due. " * 15)[:399] + "€"
    assert len(body) == 400
    result = text.info(body)
    assert result.encoding == GSM7
    assert result.segments == 3
    assert result.characters == 400


def test_escape_pair_is_never_split():
    body = "a" * 152 + "€" + "b" * 10
    parts = text.split(body)
    assert parts == ["a" * 152, "€" + "b" * 10]


def test_surrogate_pair_is_never_split():
    body = "ж" * 66 + "😀" + "жжж"  # 71 units: two parts of at most 67, and the pair would straddle 67
    parts = text.split(body)
    assert parts == ["ж" * 66, "😀жжж"]
    assert [text.utf16_units(part) for part in parts] == [66, 5]


def test_sixteen_bit_reference_leaves_less_room():
    assert len(text.split("a" * 306, concat_bits=16)) == 3
    assert [len(part) for part in text.split("a" * 304, concat_bits=16)] == [152, 152]


def test_forcing_gsm7_on_unicode_names_the_character():
    with pytest.raises(text.TextError, match=r"'ж' \(U\+0436\) at position 4 "):  # the 4th character, counted from 1
        text.split("abcж", GSM7)


def test_too_many_parts_is_refused():
    with pytest.raises(text.TextError, match="at most 255"):
        text.split("a" * 153 * 256)


def test_info_reports_the_characters_that_force_ucs2():
    result = text.info("Café ✓ ok ✓ 😀")
    assert result.unicode_characters == ["✓", "😀"]
    assert result.as_dict()["unicode_characters"] == ["✓", "😀"]


def test_info_remaining_counts_the_last_segment():
    result = text.info("a" * 200)
    assert (result.per_segment, result.remaining) == (153, 153 * 2 - 200)


@pytest.mark.parametrize("body, expected", [
    ("It’s “quoted” – yes…", "It's \"quoted\" - yes..."),
    ("a\u00a0b\u2009c", "a b c"),
    ("zero\u200bwidth", "zerowidth"),
    ("plain text", "plain text"),
])
def test_smart_encoding_makes_gsm7(body, expected):
    sent, _ = text.smart_encode(body)
    assert sent == expected
    assert text.is_gsm7(sent)


def test_smart_encoding_reports_replacements():
    _, made = text.smart_encode("“hi”…")
    assert made == {"“": '"', "”": '"', "…": "..."}


def test_smart_encoding_leaves_text_that_needs_ucs2_anyway():
    body = "It’s 😀"
    assert text.smart_encode(body) == (body, {})
    assert text.info(body, smart=True).encoding == UCS2


def test_smart_encoding_saves_segments():
    body = "Don’t forget — "* 5
    assert text.info(body).encoding == UCS2
    smart = text.info(body, smart=True)
    assert smart.encoding == GSM7
    assert smart.segments == 1
    assert smart.replacements == {"’": "'", "—": "-"}


# --- spintax ---------------------------------------------------------------------------------------------------

def test_spintax_chooses_every_option_with_a_seed():
    seen = {text.render("{Hi|Hello|Hey} there", spintax=True, seed=seed) for seed in range(60)}
    assert seen == {"Hi there", "Hello there", "Hey there"}


def test_spintax_is_reproducible_with_a_seed():
    body = "{a|b|c}{d|e|f}{g|h|i}{j|k|l}"
    first = [text.render(body, spintax=True, seed=seed) for seed in range(10)]
    second = [text.render(body, spintax=True, seed=seed) for seed in range(10)]
    assert first == second
    assert len(set(first)) > 1


def test_spintax_nesting():
    body = "{Good {morning|evening}|Hi}!"
    seen = {text.render(body, spintax=True, rng=random.Random(seed)) for seed in range(80)}
    assert seen == {"Good morning!", "Good evening!", "Hi!"}
    assert text.variant_count(body) == 3


def test_spintax_escapes():
    assert text.render(r"\{not|spun\} a\|b {x|x}", spintax=True, seed=1) == "{not|spun} a|b x"


def test_spintax_keeps_a_group_without_options_literal():
    assert text.render("see {this} {a|a}", spintax=True, seed=0) == "see {this} a"


def test_spintax_empty_option_is_allowed():
    assert {text.render("x{|!}", spintax=True, seed=seed) for seed in range(30)} == {"x", "x!"}


@pytest.mark.parametrize("body, offset, said", [
    ("Hello {a|b", 6, "at character 7"),  # the `{` is the 7th character: a person counts from 1
    ("Hello {a|{b|c}", 6, "at character 7"),
    ("Hello a|b}", 9, "at character 10"),
    ("{a", 0, "at character 1"),
])
def test_spintax_errors_name_the_position_counted_from_one(body, offset, said):
    with pytest.raises(text.SpintaxError) as caught:
        text.render(body, spintax=True)
    assert caught.value.position == offset  # the attribute stays an offset into the string
    assert str(caught.value).endswith(said)
    assert body[int(said.rsplit(" ", 1)[1]) - 1] in "{}|"  # the character named is the one at fault


def test_without_spintax_or_fields_the_body_is_untouched():
    body = r"{a|b} \{ {name}"
    assert text.render(body) == body


# --- templates -------------------------------------------------------------------------------------------------

def test_template_fills_fields():
    assert text.render("Hi {name}, your code is { code }.", {"name": "Ann", "code": 1234}) == \
        "Hi Ann, your code is 1234."


def test_template_missing_field_is_named():
    with pytest.raises(text.TemplateError) as caught:
        text.render("Hi {name}, see you {when}", {"name": "Ann"})
    assert caught.value.missing == ["when"]
    assert "missing template field 'when'" in str(caught.value)
    assert "'name'" in str(caught.value)


def test_template_field_names_with_spaces_and_dots():
    assert text.template_fields("Dear {first name} {user.last}") == ["first name", "user.last"]
    assert text.render("Dear {first name}", {"first name": "Bo"}) == "Dear Bo"


def test_template_leaves_non_field_braces():
    assert text.render("JSON {\"a\": 1} for {who}", {"who": "you"}) == "JSON {\"a\": 1} for you"
    assert text.render(r"literal \{who} for {who}", {"who": "you"}) == "literal {who} for you"


def test_template_with_spintax():
    body = "{Hi|Hello} {name}!"
    results = {text.render(body, {"name": "Eve"}, spintax=True, seed=seed) for seed in range(40)}
    assert results == {"Hi Eve!", "Hello Eve!"}
    assert text.template_fields(body, spintax=True) == ["name"]


def test_renderer_parses_once_for_many_recipients():
    renderer = text.Renderer("Hi {name}")
    assert [renderer.render({"name": name}) for name in ("a", "b")] == ["Hi a", "Hi b"]
    assert renderer.fields == ["name"]


# --- properties ------------------------------------------------------------------------------------------------

@given(st.text(max_size=1200))
def test_split_round_trips_and_every_part_fits(body):
    encoding = text.choose_encoding(body)
    parts = text.split(body)
    assert "".join(parts) == body
    limit = text.capacity(encoding, len(parts))
    for part in parts:
        size = len(text.gsm7_septets(part)) if encoding == GSM7 else text.utf16_units(part)
        assert size <= limit
    assert text.info(body).segments == len(parts)


@given(st.text(alphabet=GSM7_BASIC + GSM7_EXTENSION, max_size=600))
def test_gsm7_septets_round_trip(body):
    assert text.septets_to_text(text.gsm7_septets(body)) == body


@given(st.text(max_size=200), st.dictionaries(st.from_regex(r"[a-z]{1,5}", fullmatch=True), st.text(max_size=5)))
def test_render_never_raises_anything_but_text_errors(body, fields):
    try:
        text.render(body, fields, spintax=True, seed=0)
    except text.TextError:
        pass


def test_deep_spintax_nesting_is_a_spintax_error_not_a_crash():
    with pytest.raises(text.SpintaxError, match="nested deeper"):
        text.render("{" * 500, spintax=True)
    with pytest.raises(text.SpintaxError):
        text.variant_count("{" * 498 + "x" + "}" * 498)
