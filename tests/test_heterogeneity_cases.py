"""One generated fixture per heterogeneity case in tests/fixtures/heterogeneity_cases.csv (copied from the
domain research), asserting the exact reading or the exact rejection. test_every_case_has_a_test fails when a
case is added to the list without a test here."""

import csv
import shutil

import polars as pl
import pytest
from openpyxl import Workbook

from shequ import pipeline
from shequ.catalogue import HeaderMatcher
from shequ.config import ROOT
from shequ.periods import classify_period, excel_date_period, parse_month, ytd_quarter
from shequ.readers import FileRejected, read_file
from shequ.text import clean_text, decode_bytes
from shequ.values import parse_text
from shequ.warehouse import connect, frame

CASES = [r["id"] for r in csv.DictReader(open(ROOT / "tests" / "fixtures" / "heterogeneity_cases.csv",
                                              encoding="utf-8"))]


def ingest(tmp_path, template, files: dict[str, bytes | Workbook], quarter="2024Q1"):
    """Ingest the given files into a fresh copy of a warehouse with dimensions; return (facts, stg, quarantine,
    summaries)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    db = tmp_path / "w.duckdb"
    shutil.copy(template, db)
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    for name, data in files.items():
        p = inbox / name
        if isinstance(data, Workbook):
            data.save(p)
        else:
            p.write_bytes(data)
    with connect(db) as con:
        summaries = pipeline.stage_staged(con, inbox, quarter)
        pipeline.stage_facts(con, quarter)
        facts = frame(con, """SELECT c.name, f.indicator_code, f.value, f.numerator, f.denominator, f.reported_value,
                                     f.qualifier, f.source_cell FROM fact_indicator_value f
                              JOIN dim_community c USING (community_key)""")
        stg = frame(con, "SELECT s.*, c.name FROM stg_value s JOIN dim_community c USING (community_key)")
        q = frame(con, "SELECT * FROM quarantine")
    return facts, stg, q, summaries


def val(facts, name, code):
    r = facts.filter((pl.col("name") == name) & (pl.col("indicator_code") == code))
    assert r.height == 1, (name, code, facts.filter(pl.col("name") == name))
    return r.row(0, named=True)


def gbk_csv(rows: list[str]) -> bytes:
    return "\r\n".join(rows).encode("gbk")


# ---------------------------------------------------------------------------------------------- layout
def case_H01(tmp_path, template):
    wb = Workbook()
    ws = wb.active
    ws.append(["建邺区2024年第一季度社区建设情况统计表"])
    ws.append(["序号", "社区名称", "基本情况", None, "经费保障"])
    ws.append(["序号", "社区名称", "住宅小区数", "业委会组建率", "社区集体经济年可支配收入"])
    ws.append(["序号", "社区名称", "个", "%", "万元"])
    for c in ("A", "B"):
        ws.merge_cells(f"{c}2:{c}4")
    ws.merge_cells("C2:D2")
    ws.append([1, "建邺区南湖街道南湖社区", 6, 79, 52.5])
    facts, *_ = ingest(tmp_path, template, {"h01.xlsx": wb})
    assert val(facts, "南湖社区", "residential_compounds")["value"] == 6
    assert val(facts, "南湖社区", "owners_committee_rate")["value"] == pytest.approx(0.79)
    assert val(facts, "南湖社区", "collective_income")["value"] == 52.5


def case_H02(tmp_path, template):
    facts, _, q, (s,) = ingest(tmp_path, template, {"h02_2024Q1.csv": gbk_csv([
        "街道,居委会,志愿者组织数", "北村街道,北村社区,2", "北村街道,标山南社区,3", "北村街道小计,,6", "合计,,5",
        "全区,,5"])})
    assert sorted(facts["name"]) == ["北村社区", "标山南社区"] and q.height == 0
    assert s.notes == ["小计核对不符：北村街道小计 志愿者组织数 成员合计 5，小计 6"]


def case_H03(tmp_path, template):
    wb = Workbook()
    ws = wb.active
    ws.append(["建邺区2020年第三季度社区建设情况统计表"])
    ws.append(["填报单位：南湖街道办事处", None, "单位：万元"])
    ws.append(["街道", "社区名称", "社区集体经济年可支配收入"])
    ws.append(["南湖街道", "南湖社区", 52])
    fr = read_file(_save(tmp_path, wb, "h03.xlsx"))
    assert fr.reporter == "南湖街道办事处" and fr.sheet_units["Sheet"] == "万元"
    facts, *_ = ingest(tmp_path, template, {"h03.xlsx": wb}, "2020Q3")
    assert val(facts, "南湖社区", "collective_income")["value"] == 52          # 万元, from the title block


def _save(tmp_path, wb, name):
    p = tmp_path / name
    wb.save(p)
    return p


def case_H04(tmp_path, template):
    fr = read_file(_csv(tmp_path, "h04.csv", ["社区名称,参保率", "南湖社区,95%", "填表人:张三 审核人:李四",
                                              "注:参保率指医保参保率"]))
    assert fr.cells.height == 1
    # the footer is kept as a note without the names (PIPL, docs/limits-and-privacy.md)
    assert fr.notes == ["填表人：已隐去 审核人：已隐去", "注:参保率指医保参保率"]


def _csv(tmp_path, name, rows, enc="gbk"):
    p = tmp_path / name
    p.write_bytes("\r\n".join(rows).encode(enc))
    return p


# ---------------------------------------------------------------------------------------------- encodings
ENC_ROWS = ["社区名称,参保率", "南湖社区,95%"]


@pytest.mark.parametrize("case,enc,expect", [("H05", "gbk", "gb18030"), ("H07", "utf-8-sig", "utf-8-sig"),
                                             ("H11", "utf-16", "utf-16")])
def test_encodings(tmp_path, case, enc, expect):
    rows = [r.replace(",", "\t") for r in ENC_ROWS] if case == "H11" else ENC_ROWS
    fr = read_file(_csv(tmp_path, f"{case}.{'txt' if case == 'H11' else 'csv'}", rows, enc))
    assert fr.encoding == expect and fr.cells.select("community_raw", "header_raw", "raw_text").row(0) == \
        ("南湖社区", "参保率", "95%")


def case_H05(tmp_path, template):
    assert decode_bytes(b"\xc9\xe7\xc7\xf8") == ("社区", "gb18030")


def case_H06(tmp_path, template):
    assert decode_bytes("䶮㙟社区".encode("gb18030"))[0] == "䶮㙟社区"


def case_H07(tmp_path, template):
    fr = read_file(_csv(tmp_path, "h07.csv", ENC_ROWS, "utf-8-sig"))
    assert fr.cells["header_raw"].to_list() == ["参保率"]          # no BOM left on the first header


def case_H08(tmp_path, template):
    fr = read_file(_csv(tmp_path, "h08.csv", ["社區名稱,參保率", "南湖社區,95%"], "big5"))
    assert fr.encoding == "big5" and fr.cells.row(0, named=True)["header_raw"] == "参保率"


def case_H09(tmp_path, template):
    assert clean_text("建鄴區濱湖街道社區居委會") == "建邺区滨湖街道社区居委会"
    assert clean_text("乾城社区") == "乾城社区"
    facts, *_ = ingest(tmp_path, template, {"h09_2024Q1.csv": gbk_csv(["街道,社區名稱,志願者組織數",
                                                                       "濱湖街道,乾城社區,3"])})
    assert val(facts, "乾城社区", "volunteer_orgs")["value"] == 3


def case_H09b(tmp_path, template):
    assert clean_text("社區(qū)居委會(huì)") == "社区居委会"


def case_H10(tmp_path, template):
    with pytest.raises(FileRejected) as e:
        read_file(_csv(tmp_path, "h10.csv", ["社区名称,说明", "南湖社区,。ㄒ唬┣袑(shí)加强┣ㄒ唬"], "utf-8"))
    assert e.value.reason == "mojibake"


def case_H11(tmp_path, template):
    fr = read_file(_csv(tmp_path, "h11.txt", ["社区名称\t参保率", "南湖社区\t95%"], "utf-16"))
    assert fr.file_format == "tsv"


# ---------------------------------------------------------------------------------------------- values
def case_H12(tmp_path, template):
    assert parse_text("52000元", "amount", "万元", "万元").value == pytest.approx(5.2)   # cell beats column
    assert parse_text("64.95万", "amount", "万元").value == pytest.approx(64.95)
    assert parse_text("1.2千万", "amount", "万元").value == pytest.approx(1200)
    assert parse_text("3", "amount", "万元", "", "千元").value == pytest.approx(0.3)      # table 单位：千元


def case_H13(tmp_path, template):
    for raw in ("60㎡", "60m2", "60平米", "60m²", "60平方米"):
        assert parse_text(raw, "area", "平方米").value == 60
    assert parse_text("0.09亩", "area", "平方米").value == pytest.approx(60.0)


def case_H14(tmp_path, template):
    for raw, q in [("79%", None), ("79％", None), ("0.79", None), ("79", "percent_inferred"), ("百分之七十九", None),
                   ("七成九", None)]:
        p = parse_text(raw, "ratio", "%")
        assert (p.value, p.qualifier) == (pytest.approx(0.79), q)
    assert parse_text("1", "ratio", "%").qualifier == "ambiguous_one"


def case_H14b(tmp_path, template):
    assert parse_text("290%", "ratio", "%").value == pytest.approx(2.9)      # not clipped by the parser
    facts, _, q, _ = ingest(tmp_path, template, {"h14b_2024Q1.csv": gbk_csv(["街道,居委会,参保率",
                                                                             "北村街道,北村社区,290%"])})
    assert q["reason_code"].to_list() == ["out_of_range"]                  # 参保率 is bounded by definition


def case_H14c(tmp_path, template):
    p = parse_text("95以上", "ratio", "%")
    assert (p.value, p.qualifier) == (pytest.approx(0.95), "ge")
    assert parse_text("100", "ratio", "%").value == 1.0


def case_H15(tmp_path, template):
    for raw, v in [("十二", 12), ("两", 2), ("一百二十三", 123), ("壹佰贰拾叁", 123), ("二〇二〇", 2020), ("廿", 20)]:
        assert parse_text(raw, "count", "个").value == v, raw


def case_H15b(tmp_path, template):
    for name in ("三里河社区", "四室一站", "第一书记", "新村二社区"):
        assert clean_text(name) == name
    assert HeaderMatcher().match("规范化功能室(“四室一站”等)配置完成率").targets[0].indicator_code == "standard_rooms_rate"


def case_H16(tmp_path, template):
    for raw, unit, v, q in [("700余人", "人次", 700, "approx_ge"), ("200多", "人次", 200, "approx_ge"),
                            ("近300人", "人", 300, "approx_le"), ("2-3人", "人", 2.5, "range:2-3"),
                            ("400—500元", "元/月", 450, "range:400-500"), ("不少于5000元", "元/月", 5000, "ge")]:
        p = parse_text(raw, "amount" if "元" in unit else "count", unit)
        assert (p.value, p.qualifier) == (v, q), raw
    assert parse_text("60平方米左右", "area", "平方米").qualifier == "approx"
    assert parse_text("约25%", "ratio", "%").qualifier == "approx"


def case_H17(tmp_path, template):
    for raw in ("2,031,600", "2 031 600", "2031600", "２０３１６００"):
        assert parse_text(raw, "count", "个").value == 2031600
    assert parse_text("1 420万元", "amount", "万元").value == 1420


# ---------------------------------------------------------------------------------------------- periods
def case_H18(tmp_path, template):
    for t in ("2020年第三季度", "2020年三季度", "三季度", "第3季度", "2020Q3", "2020-Q3", "20年Q3", "Q3", "7-9月",
              "二〇二〇年第三季度"):
        assert classify_period(t, 2020) == ("2020Q3", None), t


def case_H18b(tmp_path, template):
    for t in ("9月份", "九月份", "2020年9月", "2020.09", "2020/9", "202009", "Sep-20"):
        assert classify_period(t, 2020) == ("2020-09", None), t
    assert parse_month("9月份") is None                                     # no year: never guessed


def case_H18c(tmp_path, template):
    for t, q in [("上半年", "2020Q2"), ("1-6月", "2020Q2"), ("截至9月30日", "2020Q3"), ("截止今年上半年", "2020Q2"),
                 ("2020年前三季度", "2020Q3"), ("1月至9月", "2020Q3")]:
        assert ytd_quarter(t, 2020) == (q, None), t
    for t in ("2020年度", "全年"):   # a year is not filed under any quarter (annual titles over quarterly files)
        assert ytd_quarter(t, 2020) == (None, None) and classify_period(t, 2020) == (None, "not_a_quarter")
    assert classify_period("第二季度（截至6月30日）", 2020) == ("2020Q2", None)   # an as-of date, not ytd


def case_H18d(tmp_path, template):
    assert excel_date_period("2020-09-01 00:00:00") == ("2020-09", None)
    assert excel_date_period("44075") == ("2020-09", None)
    assert excel_date_period("2020-01-06 00:00:00") == (None, "date_as_period")   # "1-6" became 1月6日


# ---------------------------------------------------------------------------------------------- names
def case_H19(tmp_path, template):
    rows = ["街道,居委会,志愿者组织数"] + [f"北村街道,{n},{i}" for i, n in enumerate(
        ["北村社区", "标山南社区居委会", "生产路社区居民委员会", "济洛路居委会", "蓝翔路", "北园路社區"], 1)]
    facts, _, q, _ = ingest(tmp_path, template, {"h19_2024Q1.csv": gbk_csv(rows)})
    assert q.height == 0 and facts.height == 6
    assert val(facts, "北园路社区", "volunteer_orgs")["value"] == 6


def case_H19b(tmp_path, template):
    rows = ["居委会,志愿者组织数", "天桥区北村街道北村社区,1", "北村街道-标山南社区,2", "北村街道生产路社区(筹),3",
            "北村街道 济 洛 路 社 区,4"]
    facts, _, q, _ = ingest(tmp_path, template, {"h19b_天桥区_2024Q1.csv": gbk_csv(rows)})
    assert q.height == 0 and sorted(facts["value"]) == [1, 2, 3, 4]
    assert val(facts, "生产路社区", "volunteer_orgs")["qualifier"] == "preparatory"   # (筹) kept as status


def case_H19c(tmp_path, template):
    rows = ["街道,社区名称,志愿者组织数", "南湖街道,新村社区,1", "兴隆街道,新村社区,2"]
    facts, stg, q, _ = ingest(tmp_path, template, {"h19c_2024Q1.csv": gbk_csv(rows)})
    assert stg["community_key"].n_unique() == 2 and q.height == 0
    _, _, q2, _ = ingest(tmp_path / "b", template, {"h19c_2024Q1.csv": gbk_csv(["社区名称,志愿者组织数",
                                                                                "新村社区,1"])})
    assert q2["reason_code"].to_list() == ["ambiguous_community"]


def case_H20(tmp_path, template):
    rows = ["街道,社区名称,志愿者组织数", "兴隆街道,金沙社区,1"]
    _, stg, _, _ = ingest(tmp_path, template, {"h20_2023Q4.csv": gbk_csv(rows)}, "2023Q4")
    assert stg.height == 1                                                  # valid before the merger
    _, _, q, _ = ingest(tmp_path / "b", template, {"h20_2024Q1.csv": gbk_csv(rows)})
    assert q["reason_code"].to_list() == ["community_not_valid"]            # merged away on 2024-01-01


def case_H21(tmp_path, template):
    rows = ["街道,社区名称,实施物业管理的小区占比,志愿者组织数", "双闸街道,金胜社区,0,0"]
    facts, _, q, _ = ingest(tmp_path, template, {"h21_2024Q1.csv": gbk_csv(rows)})
    assert q["reason_code"].to_list() == ["not_applicable"]                # 村代居: not 0, not applicable
    assert val(facts, "金胜社区", "volunteer_orgs")["value"] == 0           # a real 0 stays a 0


def case_H22(tmp_path, template):
    _, _, q, _ = ingest(tmp_path, template, {"h22_2024Q1.csv": gbk_csv(["街道,社区名称,志愿者组织数",
                                                                        "罗塘街道,业舍社区,2"])})
    assert q["reason_code"].to_list() == ["unknown_community"] and "叶舍社区（同音" in q["message"][0]


def case_H24(tmp_path, template):
    for raw, kind, reason in [("", "count", "missing"), ("无", "ratio", "missing"), ("/", "count", "missing"),
                              ("—", "count", "missing"), ("-", "count", "missing"), ("暂无", "count", "missing"),
                              ("未统计", "count", "missing"), ("不适用", "count", "not_applicable"),
                              ("#DIV/0!", "ratio", "formula_error")]:
        assert parse_text(raw, kind, "%" if kind == "ratio" else "个").reason == reason, raw
    assert parse_text("无", "count", "个").value == 0 and parse_text("0", "count", "个").value == 0


def case_H25(tmp_path, template):
    from conftest import transposed_month_workbook

    wb = transposed_month_workbook(title=False)
    facts, *_ = ingest(tmp_path, template, {"天桥区_2024年月报.xlsx": wb}, "2024Q3")
    assert val(facts, "北村社区", "jobs_placed")["value"] == 33
    assert val(facts, "标山南社区", "jobs_placed")["qualifier"] == "months:3/3"


def case_H26(tmp_path, template):
    m = HeaderMatcher()
    for h in ("参保率", "医疗保险参保率", "合作医疗参保率", "參保率"):
        assert [t.indicator_code for t in m.match(clean_text(h)).targets] == ["medical_insurance_rate"], h


def case_H27(tmp_path, template):
    rows = ["街道,居委会,已组建业委会小区数,应组建业委会小区数,业委会组建率", "北村街道,北村社区,45,57,79%",
            "北村街道,标山南社区,45,57,85%"]
    facts, *_ = ingest(tmp_path, template, {"h27_2024Q1.csv": gbk_csv(rows)})
    r = val(facts, "北村社区", "owners_committee_rate")
    assert (r["numerator"], r["denominator"], r["reported_value"]) == (45, 57, 0.79)
    assert r["value"] == pytest.approx(45 / 57)                               # recomputed, 0.789
    db = tmp_path / "w.duckdb"
    from shequ.quality import run_suite

    with connect(db) as c:
        bad = [x for x in run_suite(c, "fact_indicator_value", "2024Q1", record=False)
               if x.detail.startswith("上报比率与分子")][0]
    assert bad.unexpected == 1                                               # only 85% vs 0.789 is flagged


def case_H28(tmp_path, template):
    for raw, v in [("优秀", 4), ("良好", 3), ("合格", 2), ("不合格", 1), ("优", 4), ("良", 3), ("中", 2), ("差", 1),
                   ("A", 4), ("B", 3), ("C", 2), ("D", 1), ("★★★", 3), ("三星级", 3)]:
        assert parse_text(raw, "ordinal", "等级").value == v, raw


def case_H29(tmp_path, template):
    assert parse_text("850元/月", "amount", "元/月").value == 850
    assert parse_text("12600元/年", "amount", "元/月").value == 1050
    assert parse_text("200元/百户/月", "rate_per", "元/百户/月").value == 200


def case_H30(tmp_path, template):
    a = gbk_csv(["街道,居委会,志愿者组织数", "北村街道,北村社区,2"])
    b = gbk_csv(["街道,居委会,志愿者组织数", "北村街道,北村社区,5"])
    facts, stg, _, _ = ingest(tmp_path, template, {"北村社区_2024Q1.csv": a, "北村社区_2024Q1(修改后).csv": b})
    assert val(facts, "北村社区", "volunteer_orgs")["value"] == 5 and stg.height == 2   # both versions kept


def case_H31(tmp_path, template):
    wb = Workbook()
    ws = wb.active
    ws.append(["天桥区2024年第一季度"])
    ws.append(["街道", "社区名称", "志愿者组织数", "健身器材套数", "参保率"])
    ws.append(["北村街道", "北村社区", "'45", "=SUM(C3:C3)", "#DIV/0!"])
    ws.column_dimensions["D"].hidden = True
    facts, _, q, (s,) = ingest(tmp_path, template, {"h31.xlsx": wb})
    assert val(facts, "北村社区", "volunteer_orgs")["value"] == 45
    assert sorted(q["reason_code"]) == ["formula_error", "formula_no_cache"]
    assert any("隐藏列 D" in n for n in s.notes)


def test_every_case_has_a_test():
    have = {n[len("case_"):] for n in globals() if n.startswith("case_")}
    assert sorted(set(CASES) - have) == [] and len(CASES) == 39


@pytest.mark.parametrize("case", CASES)
def test_case(case, tmp_path, template):
    globals()[f"case_{case}"](tmp_path, template)
