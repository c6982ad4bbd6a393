"""Readings that once gave a plausible but wrong value: units, duplicates, aliases, rejected files and candidates."""

import json

import polars as pl
import pytest
from openpyxl import Workbook

from conftest import run_quarter
from shequ.values import parse_cells, parse_text
from shequ.warehouse import connect


def _fact(wh, name, code, q="2024Q1"):
    with connect(wh, read_only=True) as c:
        return c.execute("""SELECT f.value, f.numerator, f.denominator, f.source_file FROM fact_indicator_value f
                            JOIN dim_community c USING (community_key)
                            WHERE c.name = ? AND f.indicator_code = ? AND f.period_key = ?""",
                         [name, code, q]).fetchall()


def _quarantine(wh, like):
    with connect(wh, read_only=True) as c:
        return dict(c.execute("""SELECT reason_code, count(*) FROM quarantine WHERE source_file LIKE ?
                                 GROUP BY 1""", [f"%{like}%"]).fetchall())


def test_corrected_rate_is_not_rebuilt_from_the_older_files_parts(workspace):
    p = workspace["inbox"] / "2024Q1" / "天桥区_2024Q1_更正.csv"
    p.write_bytes("街道,居委会,持证率\r\n北村街道,北村社区,50%\r\n".encode("gbk"))
    assert run_quarter(workspace["warehouse"], workspace["inbox"], "2024Q1").success
    value, num, den, src = _fact(workspace["warehouse"], "北村社区", "social_worker_cert_rate")[0]
    assert (value, num, den) == (0.5, None, None) and src.endswith("更正.csv")


def test_numerator_and_denominator_are_converted_to_catalogue_units(workspace):
    p = workspace["inbox"] / "2024Q1" / "天桥区_2024Q1_经费.csv"
    p.write_bytes("街道,居委会,月办公活动经费（万元）,辖区户数,综合服务设施建筑面积（亩）,服务户数\r\n"
                  "北村街道,北村社区,0.5,1500,1.2,1500\r\n".encode("gbk"))
    assert run_quarter(workspace["warehouse"], workspace["inbox"], "2024Q1").success
    value, num, den, _ = _fact(workspace["warehouse"], "北村社区", "office_funds_per_100hh_month")[0]
    assert num == pytest.approx(5000.0) and value == pytest.approx(5000 / 1500 * 100)
    value, num, _, _ = _fact(workspace["warehouse"], "北村社区", "service_facility_area_per_100hh")[0]
    assert num == pytest.approx(800.0) and value == pytest.approx(800 / 1500 * 100)


def test_prior_period_columns_are_refused_not_matched_on_the_leaf(workspace):
    wb = Workbook()
    ws = wb.active
    ws.append(["天桥区2024年第一季度治安情况"])
    ws.append(["街道", "社区名称", "本期", "上年同期"])
    ws.append(["街道", "社区名称", "刑事案件发案数", "刑事案件发案数"])
    ws.merge_cells("A2:A3")
    ws.merge_cells("B2:B3")
    ws.append(["北村街道", "北村社区", 2, 9])
    wb.save(workspace["inbox"] / "2024Q1" / "天桥区_2024Q1_治安.xlsx")
    assert run_quarter(workspace["warehouse"], workspace["inbox"], "2024Q1").success
    assert _fact(workspace["warehouse"], "北村社区", "criminal_cases")[0][0] == 2
    assert _quarantine(workspace["warehouse"], "治安") == {"prior_period_column": 1}


def test_two_headers_for_one_indicator_are_refused(workspace):
    p = workspace["inbox"] / "2024Q1" / "天桥区_2024Q1_重复列.csv"
    p.write_bytes("街道,居委会,参保率,医疗保险参保率\r\n北村街道,北村社区,95%,90%\r\n".encode("gbk"))
    assert run_quarter(workspace["warehouse"], workspace["inbox"], "2024Q1").success
    assert _quarantine(workspace["warehouse"], "重复列") == {"ambiguous_header": 2}


def test_table_unit_in_parentheses_and_amount_unit_line(workspace):
    wb = Workbook()
    ws = wb.active
    ws.append(["天桥区2024年第一季度集体经济（金额单位：元）"])
    ws.append(["街道", "社区名称", "社区集体经济年可支配收入"])
    ws.append(["北村街道", "北村社区", 356000])
    wb.save(workspace["inbox"] / "2024Q1" / "天桥区_2024Q1_集体经济.xlsx")
    assert run_quarter(workspace["warehouse"], workspace["inbox"], "2024Q1").success
    assert _fact(workspace["warehouse"], "北村社区", "collective_income")[0][0] == pytest.approx(35.6)


def test_json_unit_key_applies_to_string_values(workspace):
    p = workspace["inbox"] / "2024Q1" / "建邺区_2024Q1_工资.json"
    p.write_text(json.dumps({"期间": "2024年第一季度", "记录": [
        {"街道": "南湖街道", "社区": "沿河社区", "指标": "月均工资", "数值": "10200", "单位": "元/年"}]},
        ensure_ascii=False), encoding="utf-8")
    assert run_quarter(workspace["warehouse"], workspace["inbox"], "2024Q1").success
    assert _fact(workspace["warehouse"], "沿河社区", "staff_monthly_wage")[0][0] == pytest.approx(850.0)


def test_each_sheet_takes_its_own_title_period(workspace):
    wb = Workbook()
    for i, (title, q) in enumerate([("2023年第四季度", 3), ("2024年第一季度", 7)]):
        ws = wb.active if i == 0 else wb.create_sheet()
        ws.title = f"表{i + 1}"
        ws.append([f"天桥区{title}志愿者组织统计"])
        ws.append(["街道", "社区名称", "志愿者组织数"])
        ws.append(["北村街道", "北村社区", q])
    wb.save(workspace["inbox"] / "2024Q1" / "天桥区_两季度.xlsx")
    assert run_quarter(workspace["warehouse"], workspace["inbox"], "2024Q1").success
    assert _fact(workspace["warehouse"], "北村社区", "volunteer_orgs", "2024Q1")[0][0] == 7


def test_month_rows_roll_up_to_the_quarter(tmp_path):
    inbox = tmp_path / "inbox" / "2024Q1"
    inbox.mkdir(parents=True)
    (inbox / "天桥区_月报.csv").write_bytes(
        ("街道,居委会,月份,帮助就业安置人次,社区工作者人数,调解成功件数,受理纠纷件数,参保率\r\n"
         "北村街道,北村社区,2024年1月,1,7,1,2,90%\r\n"
         "北村街道,北村社区,2024年2月,2,8,2,2,91%\r\n"
         "北村街道,北村社区,2024年3月,3,9,3,4,93%\r\n"
         "北村街道,北村社区,9月份,5,5,1,1,95%\r\n").encode("gbk"))   # the folder names the year: 2024-09
    (inbox / "天桥区_2024Q1_累计.csv").write_bytes(
        "天桥区2024年1-9月累计培训情况\r\n街道,居委会,就业/技能/创业培训期数\r\n北村街道,北村社区,9\r\n".encode("gbk"))
    wh = tmp_path / "w.duckdb"
    assert run_quarter(wh, tmp_path / "inbox", "2024Q1").success
    with connect(wh, read_only=True) as c:
        got = dict(c.execute("""SELECT f.indicator_code, (f.value, f.qualifier) FROM fact_indicator_value f
                                WHERE f.period_key = '2024Q1'""").fetchall())
        q = dict(c.execute("SELECT reason_code, count(*) FROM quarantine GROUP BY 1").fetchall())
        sept = c.execute("SELECT count(*) FROM stg_value WHERE period_key = '2024-09'").fetchall()[0][0]
        quarters = c.execute("SELECT period_keys FROM raw_file WHERE source_file LIKE '%月报%'").fetchall()[0][0]
    assert got["jobs_placed"] == (6.0, "months:3/3")                       # flow: months added
    assert got["staff_count"] == (9.0, "months:3/3")                       # stock: the last month
    assert got["mediation_success_rate"][0] == pytest.approx(6 / 8)        # events: summed parts
    assert got["medical_insurance_rate"][0] == pytest.approx(0.93)         # end-of-period rate
    assert q == {}                                                # 1-9月累计 is year-to-date at 2024Q3
    assert sept == 5 and quarters == ["2024Q1", "2024Q3"]   # staged for 2024Q3, not folded into Q1
    from shequ.periods import classify_period

    assert classify_period("9月份") == (None, "month_without_year")


@pytest.mark.parametrize("text,key", [("第四季度社区统计 填报日期：2025年1月10日", None),
                                      ("天桥区第四季度报表_20250110", None), ("2024年1-3季度", None),
                                      ("天桥区_2024Q1_社区调查", "2024Q1")])
def test_dates_are_not_period_years(text, key):
    from shequ.periods import classify_period, explicit_year

    assert classify_period(text, explicit_year(text))[0] == key


def test_spaces_between_digits_and_foreign_count_units_are_refused():
    assert parse_text("2 3", "count", "个").reason == "unparseable_value"
    assert parse_text("12 34", "count", "个").reason == "unparseable_value"
    assert parse_text("5户", "count", "人").reason == "unit_mismatch"


def test_fullwidth_digits_in_the_vectorised_path():
    df = pl.DataFrame({"raw_text": ["１２", "12"], "value_kind": ["count"] * 2, "target_unit": ["个"] * 2,
                       "column_unit": [""] * 2, "table_unit": [""] * 2})
    assert sorted(parse_cells(df)["value"].to_list()) == [12.0, 12.0]


def test_conflicting_duplicates_are_both_refused_never_first_wins(workspace):
    p = workspace["inbox"] / "2024Q1" / "天桥区_2024Q1_重复行.csv"
    p.write_bytes("街道,居委会,志愿者组织数,群众文体队伍数\r\n北村街道,北村社区,约5,2\r\n北村街道,北村社区,3,2\r\n"
                  .encode("gbk"))
    assert run_quarter(workspace["warehouse"], workspace["inbox"], "2024Q1").success
    # neither 5 nor 3 comes from this file (the district's own file still supplies the fact); the equal 2 loads once
    assert all("重复行" not in f[3] for f in _fact(workspace["warehouse"], "北村社区", "volunteer_orgs"))
    assert [f[0] for f in _fact(workspace["warehouse"], "北村社区", "culture_teams") if "重复行" in f[3]] == [2.0]
    assert _quarantine(workspace["warehouse"], "重复行") == {"conflicting_duplicate": 2, "duplicate_in_file": 1}


def test_a_crashing_file_is_rejected_and_the_rest_loads(workspace, monkeypatch):
    import shequ.ingest

    real = shequ.ingest.Ingestor._normalise

    def boom(self, fr, path, rel, *a):
        if "炸" in rel:
            raise RuntimeError("模拟程序错误")
        return real(self, fr, path, rel, *a)

    monkeypatch.setattr(shequ.ingest.Ingestor, "_normalise", boom)
    (workspace["inbox"] / "2024Q1" / "天桥区_2024Q1_炸.csv").write_bytes(
        "街道,居委会,志愿者组织数\r\n北村街道,北村社区,4\r\n".encode("gbk"))
    (workspace["inbox"] / "2024Q1" / "天桥区_2024Q1_好.csv").write_bytes(
        "街道,居委会,志愿者组织数\r\n北村街道,北村社区,6\r\n".encode("gbk"))
    assert run_quarter(workspace["warehouse"], workspace["inbox"], "2024Q1").success
    with connect(workspace["warehouse"], read_only=True) as c:
        st = dict(c.execute("SELECT source_file, reason_code FROM raw_file WHERE source_file LIKE '%2024Q1_%'"
                            ).fetchall())
    assert st["2024Q1/天桥区_2024Q1_炸.csv"] == "internal_error"
    assert _fact(workspace["warehouse"], "北村社区", "volunteer_orgs")[0][0] == 6


def test_rows_without_a_community_are_quarantined_not_dropped(workspace):
    p = workspace["inbox"] / "2024Q1" / "天桥区_2024Q1_空名.csv"
    p.write_bytes("街道,居委会,志愿者组织数,文体队伍数\r\n北村街道,北村社区,4,2\r\n北村街道,,7,1\r\n"
                  "合计,,11,3\r\n".encode("gbk"))
    assert run_quarter(workspace["warehouse"], workspace["inbox"], "2024Q1").success
    assert _quarantine(workspace["warehouse"], "空名") == {"no_community": 2}
    with connect(workspace["warehouse"], read_only=True) as c:
        assert c.execute("SELECT n_cells, n_loaded FROM raw_file WHERE source_file LIKE '%空名%'").fetchall() \
            == [(4, 2)]


def test_csv_with_a_title_line_and_quarter_in_the_name(workspace):
    p = workspace["inbox"] / "天桥区_2024Q1_补报.csv"          # inbox root, no folder
    p.write_bytes("天桥区社区建设补报表\r\n街道,居委会,志愿者组织数\r\n北村街道,北村社区,8\r\n".encode("gbk"))
    assert run_quarter(workspace["warehouse"], workspace["inbox"], "2024Q1").success
    assert _fact(workspace["warehouse"], "北村社区", "volunteer_orgs")[0][0] == 8


def test_rejected_file_is_read_again_and_can_load(workspace):
    p = workspace["inbox"] / "2024Q1" / "天桥区_2024Q1_新社区.csv"
    p.write_bytes("街道,居委会,志愿者组织数\r\n北村街道,北村社区,x\r\n".encode("gbk"))
    assert run_quarter(workspace["warehouse"], workspace["inbox"], "2024Q1").success
    with connect(workspace["warehouse"], read_only=True) as c:
        first = c.execute("SELECT status, reason_code FROM raw_file WHERE source_file LIKE '%新社区%'").fetchall()
    assert first == [("rejected", "no_values")]
    assert run_quarter(workspace["warehouse"], workspace["inbox"], "2024Q1").success  # read again, same verdict
    with connect(workspace["warehouse"], read_only=True) as c:
        assert c.execute("SELECT count(*) FROM raw_file WHERE source_file LIKE '%新社区%'").fetchall() == [(1,)]
        assert c.execute("SELECT count(*) FROM quarantine WHERE source_file LIKE '%新社区%'").fetchall() == [(1,)]


def test_alias_validity_is_respected():
    import datetime as dt

    from shequ.registry import load_aliases, load_communities, match_frame, resolve_communities
    from shequ.registry import dim_community_frame

    al = load_aliases().filter(pl.col("valid_to").is_not_null()).row(0, named=True)
    dim = dim_community_frame(load_communities()).with_row_index("community_key").with_columns(
        pl.col("community_key").cast(pl.Int32))
    street = dim.filter(pl.col("community_code") == al["community_code"])["street"][0]
    reg = match_frame(dim, load_aliases())

    def at(d):
        refs = pl.DataFrame({"ref_id": [0], "street_raw": [street], "community_raw": [al["alias"]],
                             "as_of": [d], "district_hint": [None]}, schema_overrides={"district_hint": pl.String})
        return resolve_communities(refs, reg)["community_key"][0]

    assert at(al["valid_to"] - dt.timedelta(days=1)) is not None
    assert at(al["valid_to"]) is None


def test_transposed_month_sheets_roll_up_to_the_quarter(tmp_path):
    from conftest import transposed_month_workbook

    wb = transposed_month_workbook()
    (tmp_path / "inbox").mkdir()
    wb.save(tmp_path / "inbox" / "天桥区_2024年第三季度月报.xlsx")
    wh = tmp_path / "w.duckdb"
    assert run_quarter(wh, tmp_path / "inbox", "2024Q3").success
    assert _fact(wh, "北村社区", "jobs_placed", "2024Q3")[0][0] == 33        # 10 + 11 + 12
    assert _fact(wh, "标山南社区", "staff_count", "2024Q3")[0][0] == 10        # September's
    assert _fact(wh, "北村社区", "jobs_placed", "2024Q3")[0][3] == "天桥区_2024年第三季度月报.xlsx"


def test_homophone_and_typo_names_get_candidates_but_never_land(workspace):
    p = workspace["inbox"] / "2024Q1" / "姜堰区_2024Q1_错字.csv"
    p.write_bytes("街道,社区名称,志愿者组织数\r\n罗塘街道,业舍社区,4\r\n".encode("gbk"))
    before = _fact(workspace["warehouse"], "叶舍社区", "volunteer_orgs")[0][0]
    assert run_quarter(workspace["warehouse"], workspace["inbox"], "2024Q1").success
    assert _fact(workspace["warehouse"], "叶舍社区", "volunteer_orgs")[0][0] == before   # not applied
    with connect(workspace["warehouse"], read_only=True) as c:
        (reason, msg), = c.execute("SELECT reason_code, message FROM quarantine WHERE source_file LIKE '%错字%'"
                                   ).fetchall()
    assert reason == "unknown_community" and "可能是：叶舍社区（同音" in msg and "人工确认" in msg


def test_year_to_date_values_are_levels_for_stocks_and_differenced_for_flows(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name, title, jobs, staff, med in [("h1.csv", "天桥区2024年上半年累计", 30, 7, (5, 6)),
                                          ("q3.csv", "天桥区截至2024年9月30日累计", 50, 8, (9, 11)),
                                          ("bad.csv", "天桥区截至2024年8月15日累计", 40, 8, (7, 9))]:
        (inbox / name).write_bytes((f"{title}\r\n街道,居委会,帮助就业安置人次,社区工作者人数,调解成功件数,受理纠纷件数\r\n"
                                    f"北村街道,北村社区,{jobs},{staff},{med[0]},{med[1]}\r\n").encode("gbk"))
    wh = tmp_path / "w.duckdb"
    for q in ("2024Q2", "2024Q3"):
        assert run_quarter(wh, inbox, q).success
    with connect(wh, read_only=True) as c:
        got = {(k, q): (v, n, d, qual) for k, q, v, n, d, qual in c.execute(
            """SELECT indicator_code, period_key, value, numerator, denominator, qualifier
               FROM fact_indicator_value""").fetchall()}
        bad = c.execute("SELECT reason_code, count(*) FROM quarantine WHERE source_file = 'bad.csv' GROUP BY 1"
                        ).fetchall()
    assert got[("jobs_placed", "2024Q3")][0] == 20 and got[("jobs_placed", "2024Q3")][3] == "ytd_differenced"
    assert got[("staff_count", "2024Q3")][0] == 8 and got[("staff_count", "2024Q3")][3] == "ytd"   # a level
    v, n, d, _ = got[("mediation_success_rate", "2024Q3")]
    assert (n, d) == (4, 5) and v == pytest.approx(0.8)          # (9-5)/(11-6): the quarter's own cases
    # 上半年 is year-to-date at Q2: the level counts for a stock; a flow would need Q1's year-to-date to
    # difference, so it stays out of the fact table and the warning expectation names it
    assert got[("staff_count", "2024Q2")][0] == 7
    assert ("jobs_placed", "2024Q2") not in got
    with connect(wh, read_only=True) as c:
        from shequ.quality import run_suite

        miss = [r for r in run_suite(c, "fact_indicator_value", "2024Q2", record=False)
                if r.detail.startswith("已暂存")][0]
    assert miss.unexpected == 2 and "jobs_placed" in miss.detail   # jobs and the mediation rate
    assert bad == [("cumulative_period", 4)]                     # not ending at a quarter end


def test_a_file_for_a_district_outside_the_registry_is_rejected_as_such(workspace):
    p = workspace["inbox"] / "2024Q1" / "鼓楼区_2024Q1.csv"
    p.write_bytes("街道,社区名称,志愿者组织数\r\n宁海路街道,颐和路社区,3\r\n".encode("gbk"))
    assert run_quarter(workspace["warehouse"], workspace["inbox"], "2024Q1").success
    with connect(workspace["warehouse"], read_only=True) as c:
        (reason, msg), = c.execute("SELECT reason_code, message FROM raw_file WHERE source_file LIKE '%鼓楼%'"
                                   ).fetchall()
    assert reason == "unknown_district" and "鼓楼区" in msg
