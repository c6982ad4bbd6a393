"""Hypothesis properties of the value parser on hostile text (issue 13): it never raises, never returns a
non-finite value, gives the same answer for the same input, and its vectorised path agrees with the scalar one."""

import math

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shequ.values import parse_cells, parse_text

KINDS = [("count", "人"), ("count", "个"), ("amount", "万元"), ("amount", "元/月"), ("ratio", "%"), ("area", "平方米"),
         ("flag", "是/否"), ("ordinal", "等级"), ("survey", "%"), ("score", "分(百分制)"), ("rate_per", "人/万人")]
HOSTILE = ["inf", "nan", "1e308", "1e400", "9" * 401, "５６", "5\u20286", "1,234", "1.234,5", "５²", "e", "万", "%",
           "百分之", "-", "--1", "1-", "0x10", "1_000", "٣", "\x00", "\ufeff12", "12\u200b", "七成九", "壹万", "1e-400"]
text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from(list("0123456789.,，-+eE%万亿元人个 \u2028\u3000５６²约余以上")), max_size=30),
    st.sampled_from(HOSTILE),
    st.builds(lambda a, b: a + b, st.sampled_from(HOSTILE), st.sampled_from(HOSTILE)),
    st.integers(min_value=-10**400, max_value=10**400).map(str),
    st.floats().map(repr),
)
kinds = st.sampled_from(KINDS)
units = st.sampled_from(["", "%", "万元", "元", "亩", "平方米", "人", "个", "户"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text, kinds, units)
def test_parse_never_raises_and_never_returns_non_finite(raw, kind, column_unit):
    value_kind, target_unit = kind
    p = parse_text(raw, value_kind, target_unit, column_unit)
    assert (p.value is None) == (p.reason is not None)
    if p.value is not None:
        assert math.isfinite(p.value)
    else:
        assert p.reason and p.message
    parse_text.cache_clear()
    assert parse_text(raw, value_kind, target_unit, column_unit) == p      # same text, same reading


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(text, min_size=1, max_size=5), kinds)
def test_vectorised_and_scalar_paths_agree(raws, kind):
    value_kind, target_unit = kind
    df = pl.DataFrame({"raw_text": raws, "value_kind": [value_kind] * len(raws),
                       "target_unit": [target_unit] * len(raws), "column_unit": [""] * len(raws),
                       "table_unit": [""] * len(raws)})
    out = parse_cells(df)
    assert out.height == len(raws)
    for r in out.iter_rows(named=True):
        p = parse_text(r["raw_text"], value_kind, target_unit)
        assert r["reason"] == p.reason, (r, p)
        if p.value is None:
            assert r["value"] is None
        else:
            assert math.isfinite(r["value"]) and math.isclose(r["value"], p.value, rel_tol=1e-12, abs_tol=1e-12)
