"""Headers, units and checks: each input once gave a plausible wrong value (group-changed headers, units, coverage, spread)."""

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


def test_streets_below_minimum_coverage_get_no_rank(workspace):
    from shequ.scoring import load_scheme, score_period
    from shequ.warehouse import connect

    with connect(workspace["warehouse"]) as c:
        keep = c.execute("""SELECT min(community_key) FROM dim_community WHERE street = '南湖街道'""").fetchall()[0][0]
        c.execute("""DELETE FROM fact_indicator_value WHERE period_key = '2024Q1' AND community_key IN
                     (SELECT community_key FROM dim_community WHERE street = '南湖街道' AND community_key <> ?)""",
                  [keep])
        score_period(c, "2024Q1", load_scheme())
        row = c.execute("""SELECT rank, coverage, eligibility_reason, grade FROM fact_ranking WHERE period_key = '2024Q1'
                           AND entity_level = 'street' AND entity_name = '南湖街道'""").fetchall()[0]
    assert row[0] is None and row[1] == pytest.approx(1 / 9) and row[2] == "coverage_below_min" and row[3] is None


def test_month_rows_are_inside_the_staging_check(workspace):
    from shequ.quality import run_suite
    from shequ.warehouse import connect

    with connect(workspace["warehouse"]) as c:
        c.execute("""INSERT INTO stg_value SELECT file_id, 999999, 'no_such_indicator', '2024-02', role, value, unit,
                     qualifier, raw_text, source_sheet, source_row, source_column, source_cell
                     FROM stg_value WHERE period_key = '2024Q1' LIMIT 2""")
        failed = [r for r in run_suite(c, "stg_value", "2024Q1", record=False) if not r.success]
    assert failed and all(r.severity == "critical" for r in failed)


def test_null_in_a_value_set_does_not_let_everything_pass(built, tmp_path):
    import json

    from shequ.quality import run_suite
    from shequ.warehouse import connect

    (tmp_path / "dim_community.json").write_text(json.dumps({"name": "dim_community", "meta": {}, "expectations": [
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "community_type",
                                                                 "value_set": ["居委会", None]}}]}))
    with connect(built["warehouse"], read_only=True) as c:
        (r,) = run_suite(c, "dim_community", None, directory=tmp_path, record=False)
    assert not r.success and r.unexpected == 2            # the two 村代居 are outside {居委会}


def test_an_indicator_without_spread_in_a_city_is_not_scored(workspace):
    from shequ.scoring import load_scheme, score_period
    from shequ.warehouse import connect

    with connect(workspace["warehouse"]) as c:
        c.execute("""UPDATE fact_indicator_value SET value = 50 WHERE period_key = '2024Q1'
                     AND indicator_code = 'criminal_cases' AND community_key IN
                     (SELECT community_key FROM dim_community WHERE city = '泰州市')""")
        score_period(c, "2024Q1", load_scheme())
        n = c.execute("""SELECT count(*) FROM fact_score s JOIN dim_community d ON d.community_code = s.entity_code
                         WHERE s.period_key = '2024Q1' AND s.node_code = 'criminal_cases' AND d.city = '泰州市'""").fetchall()
        other = c.execute("""SELECT count(*) FROM fact_score s JOIN dim_community d ON d.community_code = s.entity_code
                             WHERE s.period_key = '2024Q1' AND s.node_code = 'criminal_cases' AND d.city = '济南市'""").fetchall()
    assert n == [(0,)] and other[0][0] == 75


@pytest.mark.parametrize("raw,kind,unit,value,qual", [("九成以上", "ratio", "%", 0.9, "ge"),
                                                      ("1.5万人", "count", "人", 15000, None),
                                                      ("10万", "count", "人次", 100000, None),
                                                      ("64.95万", "amount", "万元", 64.95, None)])
def test_wan_as_a_multiplier_and_qualifiers_after_chinese_numerals(raw, kind, unit, value, qual):
    p = parse_text(raw, kind, unit)
    assert (p.value, p.qualifier) == (pytest.approx(value), qual)
