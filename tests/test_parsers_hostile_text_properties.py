"""Hypothesis properties of the text and value parsers on hostile text (issue 13, item 2).

Complements tests/test_values.py (readings of well-formed numbers) and the value-parser properties of the bounds
branch (never raises, never non-finite, vectorised = scalar): here the label normalisation (shequ/text.py) is total
and idempotent, the decode ladder only ever fails with DecodeError, and a number with hostile characters around or
inside it (line separators, bidi marks, zero-width characters, full-width digits) is read as itself or not at all,
never as another number.
"""

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shequ.text import DecodeError, clean_text, decode_bytes, squash
from shequ.values import parse_text

SEPARATORS = ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\r", "\n", "\t", "\u3000", "\xa0"]
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e",
             "\u2066", "\u2067", "\u2068", "\u2069", "\ufeff", "\u00ad"]
HOSTILE_CHARS = SEPARATORS + INVISIBLE + list("()（）=+-@<>/\\'\"|;:,，.。%％") + ["社区", "區", "乾", "(shè)", "ｱ", "①"]
hostile_text = st.one_of(
    st.text(max_size=60),
    st.lists(st.one_of(st.sampled_from(HOSTILE_CHARS), st.text(max_size=3)), max_size=20).map("".join),
)
KINDS = [("count", "个"), ("count", "人"), ("amount", "元"), ("area", "平方米"), ("ratio", "%"), ("score", "分")]
settings.register_profile("hostile", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
HOSTILE = settings.get_profile("hostile")


@HOSTILE
@given(hostile_text)
def test_clean_text_is_total_and_idempotent(text):
    once = clean_text(text)
    assert isinstance(once, str)
    assert clean_text(once) == once
    assert once == once.strip()


@HOSTILE
@given(hostile_text)
def test_squash_is_idempotent_and_has_no_whitespace(text):
    once = squash(text)
    assert squash(once) == once
    assert not any(ch.isspace() for ch in once)


@HOSTILE
@given(st.binary(max_size=300))
def test_decode_ladder_fails_only_with_decode_error(data):
    try:
        text, enc = decode_bytes(data)
    except DecodeError as e:
        assert str(e)            # a message for the rejection
        return
    assert isinstance(text, str)
    assert enc in {"utf-8-sig", "utf-16", "utf-8", "gb18030", "big5"}


@HOSTILE
@given(st.text(max_size=80), st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]))
def test_unicode_encodings_round_trip(text, enc):
    """Any text saved as UTF-8 (with or without BOM) or UTF-16 with BOM reads back as itself."""
    got, _ = decode_bytes(text.encode(enc))
    assert got == text


SAMPLE_CHARS = "社区居委会街道南湖天桥建邺姜堰江宁秣陵数值参保率满意度办公用房面积平方米是否优秀良好合格"


@HOSTILE
@given(st.text(alphabet=SAMPLE_CHARS + "0123456789,.%\n", max_size=60))
def test_gb18030_table_text_round_trips(body):
    """A GBK/GB18030 table (a header line of Chinese, then anything of the survey's alphabet) reads back as itself."""
    text = "序号,街道,社区名称,参保率\n" + body
    got, enc = decode_bytes(text.encode("gb18030"))
    assert got == text and enc == "gb18030"


numbers = st.one_of(st.integers(0, 10**9).map(str),
                    st.tuples(st.integers(0, 10**6), st.integers(0, 9999)).map(lambda t: f"{t[0]}.{t[1]:04d}"))


def _reads(raw, kind):
    p = parse_text(raw, *kind)
    assert (p.value is None) == (p.reason is not None), p
    assert p.value is None or math.isfinite(p.value)
    return p.value


@HOSTILE
@given(numbers, st.sampled_from(SEPARATORS + INVISIBLE), st.booleans(), st.sampled_from(KINDS))
def test_hostile_characters_around_a_number_never_make_another_number(num, ch, before, kind):
    plain = _reads(num, kind)
    got = _reads(ch + num if before else num + ch, kind)
    assert got is None or got == plain, (num, ch, got, plain)


@HOSTILE
@given(numbers, numbers, st.sampled_from(SEPARATORS + INVISIBLE), st.sampled_from(KINDS))
def test_hostile_characters_inside_a_number_never_split_it(a, b, ch, kind):
    """'5<U+2028>6' is one cell: read as 56 (the invisible character dropped) or not at all, never as 5 or 6."""
    got = _reads(a + ch + b, kind)
    joined = _reads(a + b, kind) if "." not in a or "." not in b else None
    assert got is None or got == joined, (a, ch, b, got)


@HOSTILE
@given(numbers, st.sampled_from(KINDS))
def test_full_width_digits_read_as_the_ascii_number(num, kind):
    full = num.translate(str.maketrans("0123456789.", "０１２３４５６７８９．"))
    assert _reads(full, kind) == _reads(num, kind)


@HOSTILE
@given(hostile_text, st.sampled_from(KINDS))
def test_same_text_same_reading(raw, kind):
    first = parse_text(raw, *kind)
    parse_text.cache_clear()
    assert parse_text(raw, *kind) == first
