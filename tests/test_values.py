"""The cell value parser: exact readings and rejections, plus properties over generated inputs."""

import math

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shequ.values import parse_cells, parse_text


@pytest.mark.parametrize("raw,kind,unit,value,qual", [
    ("79%", "ratio", "%", 0.79, None),
    ("79％", "ratio", "%", 0.79, None),
    ("0.79", "ratio", "%", 0.79, None),
    ("79", "ratio", "%", 0.79, "percent_inferred"),
    ("百分之七十九", "ratio", "%", 0.79, None),
    ("七成九", "ratio", "%", 0.79, None),
    ("1", "ratio", "%", 1.0, "ambiguous_one"),
    ("95以上", "ratio", "%", 0.95, "ge"),
    ("290%", "ratio", "%", 2.9, None),               # not clipped here: the range check decides
    ("52000元", "amount", "万元", 5.2, None),
    ("64.95万", "amount", "万元", 64.95, None),
    ("1.2千万", "amount", "万元", 1200.0, None),
    ("1 420万元", "amount", "万元", 1420.0, None),
    ("2,031,600", "amount", "元/月", 2031600.0, None),
    ("850元/月", "amount", "元/月", 850.0, None),
    ("12600元/年", "amount", "元/月", 1050.0, None),
    ("400—500元", "amount", "元/月", 450.0, "range:400-500"),
    ("不少于5000元", "amount", "元/月", 5000.0, "ge"),
    ("60㎡", "area", "平方米", 60.0, None),
    ("60m²", "area", "平方米", 60.0, None),
    ("60平米", "area", "平方米", 60.0, None),
    ("60平方米左右", "area", "平方米", 60.0, "approx"),
    ("十二", "count", "个", 12.0, None),
    ("壹佰贰拾叁", "count", "个", 123.0, None),
    ("１２", "count", "个", 12.0, None),
    ("700余人", "count", "人次", 700.0, "approx_ge"),
    ("200多", "count", "人次", 200.0, "approx_ge"),
    ("2-3人", "count", "人", 2.5, "range:2-3"),
    ("无", "count", "个", 0.0, "none_as_zero"),
    ("是", "flag", "是/否", 1.0, None),
    ("否", "flag", "是/否", 0.0, None),
    ("良好", "ordinal", "等级", 3.0, None),
])
def test_readings(raw, kind, unit, value, qual):
    p = parse_text(raw, kind, unit)
    assert p.reason is None, p.message
    assert p.value == pytest.approx(value)
    assert p.qualifier == qual


def test_area_mu_converts():
    assert parse_text("0.09亩", "area", "平方米").value == pytest.approx(60.0)


@pytest.mark.parametrize("raw,kind,unit,reason", [
    ("无", "ratio", "%", "missing"),               # 无 is 0 for a count, missing for a ratio
    ("", "count", "个", "missing"),
    ("—", "count", "个", "missing"),
    ("暂无", "count", "个", "missing"),
    ("不适用", "count", "个", "not_applicable"),
    ("#DIV/0!", "ratio", "%", "formula_error"),
    ("abc", "count", "个", "unparseable_value"),
    ("350", "ratio", "%", "percent_out_of_scale"),
    ("60亩地", "area", "平方米", "unit_mismatch"),
    ("5元", "count", "个", "unit_mismatch"),
    ("3-1人", "count", "人", "unparseable_value"),
])
def test_rejections(raw, kind, unit, reason):
    p = parse_text(raw, kind, unit)
    assert p.value is None
    assert p.reason == reason
    assert p.message


def test_column_unit_converts_plain_numbers_in_vectorised_path():
    df = pl.DataFrame({"raw_text": ["5.2", "64.95万", "3"], "value_kind": ["amount"] * 3,
                       "target_unit": ["万元"] * 3, "column_unit": ["元", "元", ""], "table_unit": ["", "", "千元"]})
    out = parse_cells(df).sort("raw_text")
    got = dict(zip(out["raw_text"], out["value"]))
    assert got["5.2"] == pytest.approx(0.00052)       # 5.2 元 in a 元 column
    assert got["64.95万"] == pytest.approx(64.95)     # a unit in the cell beats the column's
    assert got["3"] == pytest.approx(0.3)             # table-level 单位：千元


@given(st.floats(min_value=0, max_value=0.999, allow_nan=False).map(lambda x: round(x, 4)))
def test_fraction_reads_as_itself(x):
    p = parse_text(repr(x), "ratio", "%")
    assert p.value == pytest.approx(x)


@given(st.floats(min_value=0, max_value=100, allow_nan=False).map(lambda x: round(x, 2)))
def test_percent_sign_always_divides(x):
    p = parse_text(f"{x}%", "ratio", "%")
    assert p.value == pytest.approx(x / 100)


@given(st.integers(min_value=0, max_value=10**9))
def test_thousands_separators(n):
    assert parse_text(f"{n:,}", "count", "个").value == n
    assert parse_text(f"{n:,}".replace(",", " "), "count", "个").value == n


@given(st.floats(min_value=0, max_value=1e7, allow_nan=False).map(lambda x: round(x, 2)))
def test_vectorised_path_equals_scalar_path(x):
    df = pl.DataFrame({"raw_text": [repr(x)], "value_kind": ["amount"], "target_unit": ["万元"],
                       "column_unit": ["元"], "table_unit": [""]})
    fast = parse_cells(df)["value"][0]
    slow = parse_text(repr(x), "amount", "万元", "元").value
    assert math.isclose(fast, slow, rel_tol=1e-12, abs_tol=1e-12)


@given(st.one_of(st.floats(min_value=-5, max_value=150, allow_nan=False).map(lambda x: round(x, 3)),
                 st.sampled_from([0.0, 1.0, 100.0, 100.5, 0.999, 1.001])),
       st.sampled_from(["", "%"]))
def test_vectorised_percent_rule_equals_scalar_rule(x, column_unit):
    raw = repr(x)
    df = pl.DataFrame({"raw_text": [raw], "value_kind": ["ratio"], "target_unit": ["%"],
                       "column_unit": [column_unit], "table_unit": [""]})
    fast = parse_cells(df).row(0, named=True)
    slow = parse_text(raw, "ratio", "%", column_unit)
    assert (fast["reason"], fast["qualifier"], fast["message"]) == (slow.reason, slow.qualifier, slow.message)
    assert fast["value"] == slow.value or math.isclose(fast["value"], slow.value)


@pytest.mark.parametrize("raw,kind,unit,value", [("優秀", "ordinal", "等級", 4.0), ("64.95萬", "amount", "万元", 64.95),
                                                 ("壹佰貳拾叁", "count", "个", 123.0)])
def test_traditional_values(raw, kind, unit, value):
    assert parse_text(raw, kind, unit).value == value


def test_traditional_missing_markers():
    assert parse_text("不適用", "count", "个").reason == "not_applicable"
    assert parse_text("暫無", "count", "个").reason == "missing"
