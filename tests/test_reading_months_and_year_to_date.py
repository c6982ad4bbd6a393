"""Months, year-to-date and layouts: each input once gave a plausible wrong
value. The expected readings are written out per case."""

import pytest
from openpyxl import Workbook

from conftest import run_quarter
from shequ.periods import classify_period, ytd_quarter
from shequ.readers import read_file
from shequ.warehouse import connect, frame


def _run(tmp_path, files: dict, quarters):
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    for name, data in files.items():
        if isinstance(data, Workbook):
            data.save(inbox / name)
        else:
            (inbox / name).write_bytes(data.encode("gbk"))
    wh = tmp_path / "w.duckdb"
    for q in quarters:
        assert run_quarter(wh, inbox, q).success
    with connect(wh, read_only=True) as c:
        facts = {(k, p, n): (v, qual) for k, p, n, v, qual in c.execute(
            """SELECT f.indicator_code, f.period_key, c.name, f.value, f.qualifier FROM fact_indicator_value f
               JOIN dim_community c USING (community_key)""").fetchall()}
        q = dict(c.execute("SELECT reason_code, count(*) FROM quarantine GROUP BY 1").fetchall())
        stg = frame(c, "SELECT period_key, qualifier, source_cell FROM stg_value")
    return facts, q, stg


@pytest.mark.parametrize("text,ytd,plain", [
    ("天桥区2024年1月-9月社区工作统计表", "2024Q3", (None, "cumulative_period")),
    ("2024年1月至9月", "2024Q3", (None, "cumulative_period")),
    ("2024年7月-9月", None, ("2024Q3", None)),
    ("2023年12月至2024年2月", None, (None, "cumulative_period")),
    ("2024年前三季度", "2024Q3", (None, "cumulative_period")),
    ("2024年7月至9月（截止10月10日报送）", None, ("2024Q3", None)),
    ("第二季度（截至6月30日）", None, ("2024Q2", None)),
    ("天桥区2024年第三季度7月份报表", None, ("2024-07", None)),
    ("2024年第三季度1月份", None, (None, "conflicting_period")),
    ("2024年度社区建设情况统计表", None, (None, "not_a_quarter")),
    ("Sep 30 2024", None, (None, None)),
    ("Marketing 2024", None, (None, None)),
])
def test_period_texts(text, ytd, plain):
    assert ytd_quarter(text, 2024)[0] == ytd
    assert classify_period(text, 2024) == plain


def test_quarterly_flows_with_an_as_of_date_are_not_differenced(tmp_path):
    rows = "街道,居委会,帮助就业安置人次\r\n北村街道,北村社区,{}\r\n"
    facts, _, _ = _run(tmp_path, {"q2.csv": "天桥区2024年第二季度（截至6月30日）\r\n" + rows.format(50),
                                  "q3.csv": "天桥区2024年第三季度（截至9月30日）\r\n" + rows.format(60),
                                  "q3b.csv": "天桥区2024年7月至9月（截止10月10日报送）\r\n" + rows.format(60)},
                       ["2024Q2", "2024Q3"])
    assert facts[("jobs_placed", "2024Q3", "北村社区")] == (60, None)


def test_month_sheets_under_a_quarterly_title_roll_up(tmp_path):
    wb = Workbook()
    for i, m in enumerate(["7月", "8月", "9月"]):
        ws = wb.active if i == 0 else wb.create_sheet()
        ws.title = m
        ws.append(["天桥区2024年第三季度社区工作统计"])
        ws.append(["街道", "社区名称", "帮助就业安置人次"])
        ws.append(["北村街道", "北村社区", 10 + i])
    month_col = "街道,社区名称,月份,帮助就业安置人次\r\n" + "".join(
        f"北村街道,标山南社区,{m},{v}\r\n" for m, v in [(7, 1), (8, 2), (9, 3)])
    facts, q, _ = _run(tmp_path, {"天桥区_2024Q3_月报.xlsx": wb, "天桥区_2024Q3_月份列.csv": month_col}, ["2024Q3"])
    assert facts[("jobs_placed", "2024Q3", "北村社区")] == (33, "months:3/3")
    assert facts[("jobs_placed", "2024Q3", "标山南社区")] == (6, "months:3/3")
    assert "duplicate_in_file" not in q


def test_each_sheet_takes_its_own_year(tmp_path):
    wb = Workbook()
    ws = wb.active
    ws.title = "上年同期"
    ws.append(["天桥区2023年9月社区工作"])
    ws.append(["街道", "社区名称", "社区工作者人数"])
    ws.append(["北村街道", "北村社区", 5])
    ws = wb.create_sheet("9月")
    ws.append(["街道", "社区名称", "社区工作者人数"])
    ws.append(["北村街道", "北村社区", 50])
    _, _, stg = _run(tmp_path, {"天桥区2024年9月月报.xlsx": wb}, ["2024Q3"])
    assert sorted(stg["period_key"]) == ["2023-09", "2024-09"]


def test_partial_months_do_not_pose_as_a_quarter(tmp_path):
    rows = ("街道,居委会,月份,帮助就业安置人次,社区工作者人数\r\n北村街道,北村社区,2024年7月,5,7\r\n"
            "北村街道,北村社区,2024年9月,6,8\r\n北村街道,标山南社区,2024年7月,5,7\r\n")
    facts, _, _ = _run(tmp_path, {"天桥区_2024Q3.csv": rows}, ["2024Q3"])
    assert ("jobs_placed", "2024Q3", "北村社区") not in facts            # 2 of 3 months: no quarterly sum
    assert facts[("staff_count", "2024Q3", "北村社区")] == (8, "months:2/3")   # the level at the quarter's end
    assert ("staff_count", "2024Q3", "标山南社区") not in facts          # July alone is not the end of Q3


def test_cell_references_follow_a_table_that_does_not_start_at_a1(tmp_path):
    wb = Workbook()
    ws = wb.active
    ws["B2"] = "天桥区2024年第一季度"
    ws["B3"], ws["C3"], ws["D3"], ws["E3"] = "街道", "社区名称", "志愿者组织数", "参保率"
    ws["B4"], ws["C4"], ws["D4"], ws["E4"] = "北村街道", "北村社区", 3, "#DIV/0!"
    _, q, stg = _run(tmp_path, {"天桥区_2024Q1.xlsx": wb}, ["2024Q1"])
    assert stg["source_cell"].to_list() == ["D4"] and q == {"formula_error": 1}


def test_transposed_columns_without_a_suffix_are_kept(tmp_path):
    wb = Workbook()
    ws = wb.active
    ws.append(["天桥区2024年第一季度"])
    ws.append(["街道", None, "北村街道", "北村街道", "北村街道", None])
    ws.append(["指标", "单位", "北村社区", "标山南社区", "生产路", "合计"])
    ws.append(["志愿者组织数", "个", 1, 2, 3, 6])
    facts, q, _ = _run(tmp_path, {"天桥区_2024Q1.xlsx": wb}, ["2024Q1"])
    assert facts[("volunteer_orgs", "2024Q1", "生产路社区")] == (3, None) and q == {}


def test_units_row_and_subtotal_label_in_the_community_column(tmp_path):
    wb = Workbook()
    ws = wb.active
    ws.append(["天桥区2024年第一季度"])
    ws.append(["序号", "街道", "社区名称", "业委会组建率(%)", "志愿者组织数"])
    ws.append(["序号", "街道", "社区名称", "%", "个"])
    for c in "ABC":
        ws.merge_cells(f"{c}2:{c}3")
    ws.append([1, "北村街道", "北村社区", 80, 2])
    ws.append([2, "北村街道", "标山南社区", 70, "3个"])
    ws.append([3, None, "北村街道小计", None, 9])
    p = tmp_path / "x.xlsx"
    wb.save(p)
    fr = read_file(p)
    assert "居民自治" not in fr.cells["header_raw"].to_list()[0] and "业委会组建率(%)" in set(fr.cells["header_raw"])
    facts, q, _ = _run(tmp_path, {"天桥区_2024Q1.xlsx": wb}, ["2024Q1"])
    assert facts[("owners_committee_rate", "2024Q1", "北村社区")][0] == pytest.approx(0.8) and q == {}
    with connect(tmp_path / "w.duckdb", read_only=True) as c:
        notes = c.execute("SELECT notes FROM raw_file").fetchall()[0][0]
    assert not any(n.startswith("小计核对") for n in notes)   # 3个 is not comparable: no false alarm
