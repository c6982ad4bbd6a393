"""Regressions for the third review (headers, units, checks): each input once gave a plausible wrong value."""

import pytest

from shequ.catalogue import HeaderMatcher
from shequ.values import parse_text


@pytest.mark.parametrize("header,expect", [
    ("上一季度 » 刑事案件发案数", "prior_period_column"), ("前一季度 » 刑事案件发案数", "prior_period_column"),
    ("2023年 » 参保率", "prior_period_column"), ("同比增减 » 参保率", "prior_period_column"),
    ("目标值 » 参保率", "prior_period_column"), ("计划 » 参保率", "prior_period_column"),
    ("养老保险 » 参保率", "ambiguous_header"), ("居民 » 平均年龄", "ambiguous_header"),
])
def test_headers_whose_group_changes_the_meaning_are_refused(header, expect):
    m = HeaderMatcher().match(header)
    assert m.targets == () and m.reason == expect


@pytest.mark.parametrize("header,code,role", [
    ("已组建业委会 » 小区数", "owners_committee_rate", "numerator"),   # the whole text is an alias
    ("居民自治 » 住宅小区数(个)", "residential_compounds", "value"),     # a catalogue category as group
    ("本期 » 刑事案件发案数", "criminal_cases", "value"),
    ("卫生计生 » 计划生育月服务参服率", "family_planning_service_rate", "value"),  # 计划生育 is not 计划
])
def test_neutral_groups_and_whole_aliases_still_match(header, code, role):
    (t, *_) = HeaderMatcher().match(header).targets
    assert (t.indicator_code, t.role) == (code, role)


@pytest.mark.parametrize("raw,kind,unit,col,value,reason", [
    ("一万二", "amount", "万元", "", 1.2, None),
    ("壹万贰仟", "amount", "万元", "", 1.2, None),
    ("5000元/月", "amount", "万元", "", None, "unit_mismatch"),
    ("5000", "amount", "万元", "元/月", None, "unit_mismatch"),
    ("4.5", "survey", "%", "分", None, "unit_mismatch"),
    ("85", "ratio", "%", "人", None, "unit_mismatch"),
    ("37", "count", "户", "人", None, "unit_mismatch"),
    ("600", "rate_per", "平方米/百户", "平方米", None, "unit_mismatch"),
    ("0.02", "rate_per", "元/百户/月", "万元", None, "unit_mismatch"),
    ("0.5", "flag", "是/否", "", None, "unparseable_value"),
    ("没有", "flag", "是/否", "", 0.0, None),
    ("–", "count", "个", "", None, "missing"),
])
def test_units_written_in_headers_and_cells(raw, kind, unit, col, value, reason):
    p = parse_text(raw, kind, unit, col)
    assert (p.value if value is None else pytest.approx(p.value)) == value and p.reason == reason


def test_header_units_on_the_vectorised_path():
    import polars as pl

    from shequ.values import parse_cells

    df = pl.DataFrame({"raw_text": ["37", "4.5", "0.5"], "value_kind": ["count", "survey", "flag"],
                       "target_unit": ["户", "%", "是/否"], "column_unit": ["人", "分", ""], "table_unit": [""] * 3})
    assert parse_cells(df)["reason"].to_list().count(None) == 0
