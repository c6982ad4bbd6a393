"""The suite executor on planted defects: what is caught, what is not, and unsupported types fail loudly."""

import json

import pytest

from shequ.quality import UnsupportedExpectation, run_suite
from shequ.warehouse import connect


def _results(wh, suite, q="2024Q1"):
    with connect(wh) as c:
        return {r.expectation + "|" + r.detail[:12]: r for r in run_suite(c, suite, q, record=False)}


def test_clean_warehouse_passes_every_critical_expectation(built):
    for suite in ("dim_community", "dim_indicator", "stg_value", "fact_indicator_value", "agg_indicator_value",
                  "fact_ranking", "fact_score"):
        with connect(built["warehouse"], read_only=True) as c:
            res = run_suite(c, suite, "2024Q1", record=False)
        assert [r.expectation for r in res if r.severity == "critical" and not r.success] == [], suite


def test_planted_rank_inversion_is_caught(workspace):
    wh = workspace["warehouse"]
    with connect(wh) as c:
        c.execute("""UPDATE fact_ranking SET rank = n_ranked WHERE period_key = '2024Q1' AND rank = 1
                     AND entity_level = 'community' AND scope_level = 'district' AND scope_name = '姜堰区'""")
    failed = [r for r in _results(wh, "fact_ranking").values() if not r.success]
    notes = {r.detail.split(" 例")[0] for r in failed}
    assert any(n.startswith("名次与得分一致") for n in notes)
    assert any(n.startswith("每个范围的最高名次为 1") for n in notes)
    assert all(r.severity == "critical" for r in failed)


def test_planted_range_and_ratio_defects(workspace):
    wh = workspace["warehouse"]
    with connect(wh) as c:
        c.execute("""UPDATE fact_indicator_value SET value = 1.7 WHERE period_key = '2024Q1'
                     AND indicator_code = 'medical_insurance_rate' AND community_key = 1""")
        c.execute("""UPDATE fact_indicator_value SET numerator = denominator + 5 WHERE period_key = '2024Q1'
                     AND indicator_code = 'owners_committee_rate' AND community_key = 2""")
    res = [r for r in _results(wh, "fact_indicator_value").values() if not r.success]
    by_note = {r.detail.split(" 例")[0][:10]: r for r in res}
    assert by_note["取值必须在目录规定的"].unexpected == 1 and by_note["取值必须在目录规定的"].severity == "critical"
    assert by_note["比率类指标：分子不应"].unexpected == 1 and by_note["比率类指标：分子不应"].severity == "warning"
    # the other critical expectations still pass: a defect is reported where it is, nowhere else
    assert sum(r.severity == "critical" for r in res) == 1


def test_planted_duplicate_and_orphan_in_staging(workspace):
    wh = workspace["warehouse"]
    with connect(wh) as c:
        c.execute("INSERT INTO stg_value SELECT * FROM stg_value WHERE period_key = '2024Q1' LIMIT 3")
        c.execute("""INSERT INTO stg_value SELECT file_id, 424242, indicator_code, period_key, role, value, unit,
                     qualifier, raw_text, source_sheet, source_row, source_column, source_cell
                     FROM stg_value WHERE period_key = '2024Q1' LIMIT 1""")
    res = _results(wh, "stg_value")
    dup = next(r for k, r in res.items() if "expect_compound_columns_to_be_unique" in k)
    # GX counts every row of a duplicated key (both copies): 3 duplicated rows are 6 unexpected rows
    assert dup.unexpected == 6 and not dup.success
    orphan = next(r for r in res.values() if r.detail.startswith("暂存值引用的社区"))
    assert orphan.unexpected == 1


def test_unknown_expectation_type_fails_loudly(tmp_path, built):
    d = tmp_path / "suites"
    d.mkdir()
    (d / "fact_indicator_value.json").write_text(json.dumps({
        "name": "fact_indicator_value", "meta": {"table": "fact_indicator_value"},
        "expectations": [{"type": "expect_column_kl_divergence_to_be_less_than", "kwargs": {"column": "value"}}]}))
    with connect(built["warehouse"], read_only=True) as c, pytest.raises(UnsupportedExpectation, match="不支持"):
        run_suite(c, "fact_indicator_value", "2024Q1", directory=d, record=False)


def test_suites_are_valid_gx_json():
    """Every suite parses as GX 1.x JSON structure (GX itself is imported only in the parity test of a later issue)."""
    from shequ.config import EXPECTATIONS_DIR

    for p in EXPECTATIONS_DIR.glob("*.json"):
        doc = json.loads(p.read_text(encoding="utf-8"))
        assert doc["name"] == p.stem and doc["expectations"]
        for e in doc["expectations"]:
            assert e["type"].startswith("expect_") or e["type"] == "unexpected_rows_expectation"
            assert e.get("severity", "critical") in ("critical", "warning", "info")


def test_rate_with_zero_denominator_is_reported_not_silently_dropped(workspace):
    p = workspace["inbox"] / "2024Q1" / "天桥区_2024Q1_业委会.csv"
    p.write_bytes("街道,居委会,已组建业委会小区数,应组建业委会小区数\r\n北村街道,北村社区,0,0\r\n".encode("gbk"))
    from conftest import run_quarter

    res = run_quarter(workspace["warehouse"], workspace["inbox"], "2024Q1")
    assert res.success
    with connect(workspace["warehouse"]) as c:
        r = [x for x in run_suite(c, "fact_indicator_value", "2024Q1", record=False)
             if x.detail.startswith("已暂存")]
    # the newer file supplies the cell (all roles from one file): 0/0 is no value, and the warning names it
    # rather than the fact silently keeping the older file's rate or silently dropping the cell
    assert not r[0].success and r[0].unexpected == 1 and r[0].severity == "warning"
    assert "owners_committee_rate" in r[0].detail


def test_every_expectation_keeps_its_own_check_result_row(built):
    with connect(built["warehouse"], read_only=True) as c:
        n_rows = c.execute("""SELECT count(*) FROM check_result WHERE period_key = '2024Q1'
                              AND suite = 'fact_indicator_value'""").fetchall()[0][0]
    n_exp = len(json.loads((__import__("shequ.config", fromlist=["x"]).EXPECTATIONS_DIR
                            / "fact_indicator_value.json").read_text(encoding="utf-8"))["expectations"])
    assert n_rows == n_exp
