"""The shortcut for a number with at most one plain unit (852.03元, 78.1%, 1.5万, 137.9亩) gives exactly what the
full parser gives, for every indicator kind, header unit and table unit: same value, unit, qualifier, reason and
message."""

import itertools

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shequ.catalogue import load_catalogue
from shequ.values import _SIMPLE_UNITS, _parse_simple, parse_text

_full = parse_text.__wrapped__   # the uncached parser: nothing the shortcut computed can be served back
KINDS = sorted({(k, u) for k, u in load_catalogue().select("value_kind", "unit").iter_rows()}
               | {("count", "人"), ("count", "个"), ("amount", "万元"), ("amount", "元/月"), ("area", "平方米")})
UNITS = ["", "%", "万元", "元", "元/月", "亩", "平方米", "人", "个", "户"]
NUMBERS = ["0", "1", "-1", "0.5", "1.0", "99.9", "100", "150", "852.03", "00007"]
LONG = ["1" + "0" * 290, "9" * 300, "9" * 301]   # near the 300-character limit of the shortcut


def test_simple_forms_match_the_full_parser_on_a_grid():
    checked = 0
    grid = itertools.chain(
        itertools.product(KINDS, NUMBERS, ["", *_SIMPLE_UNITS], ["", "%", "万元", "亩", "人"], ["", "万元"]),
        itertools.product(KINDS, LONG, ["", "%", "万元", "元", "万"], [""], [""]))
    for (kind, target), num, suffix, col, table in grid:
        raw = num + suffix
        assert _parse_simple.__wrapped__(raw, kind, target, col, table) == _full(raw, kind, target, col, table), \
            (raw, kind, target, col, table)
        checked += 1
    assert checked > 5_000


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from(list("0123456789.-+eE%万亿元人个户亩平方米/月年次 ")), max_size=24),
       st.sampled_from(KINDS), st.sampled_from(UNITS), st.sampled_from(["", "万元", "亩", "%"]))
def test_any_text_gets_the_full_parsers_answer(raw, kind, column_unit, table_unit):
    assert _parse_simple.__wrapped__(raw, kind[0], kind[1], column_unit, table_unit) == \
        _full(raw, kind[0], kind[1], column_unit, table_unit)


def test_the_shortcut_is_what_parse_cells_uses_for_unit_cells():
    cells = pl.DataFrame({"raw_text": ["852.03元", "78.1%", "1.5万", "137.9亩", "3户"],
                          "value_kind": ["amount", "ratio", "count", "area", "count"],
                          "target_unit": ["元/月", "%", "人", "平方米", "人"],
                          "column_unit": ["", "", "", "", ""], "table_unit": ["", "", "", "", ""]})
    from shequ.values import parse_cells

    out = parse_cells(cells)
    assert out["value"].to_list()[:4] == [852.03, 0.7809999999999999, 15000.0, 137.9 * 2000.0 / 3.0]
    assert out["reason"].to_list() == [None, None, None, None, "unit_mismatch"]
