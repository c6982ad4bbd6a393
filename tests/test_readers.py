"""Readers on generated files: merged headers, title blocks, subtotal rows, footers, formulas, encodings."""

import json

import polars as pl
import pytest
from openpyxl import Workbook

from shequ.readers import FileRejected, read_file


def _survey_xlsx(path, formula_cell=True):
    wb = Workbook()
    ws = wb.active
    ws.title = "2024年第三季度"
    ws.append(["建邺区2024年第三季度社区建设情况统计表"])
    ws.merge_cells("A1:F1")
    ws.append(["填报单位：南湖街道办事处", None, "单位：万元"])
    ws.append(["序号", "街道", "社区名称", "居民自治", None, "经费保障"])
    ws.append(["序号", "街道", "社区名称", "住宅小区数（个）", "业委会组建率", "社区集体经济年可支配收入"])
    for c in ("A", "B", "C"):
        ws.merge_cells(f"{c}3:{c}4")
    ws.merge_cells("D3:E3")
    ws.append([1, "南湖街道", "南湖社区", 6, "79%", 52.5])
    ws.append([2, "南湖街道", "沿河社区", 8, 0.8, "=SUM(F5:F5)" if formula_cell else 10])
    ws.append([None, "南湖街道小计", None, "=SUM(D5:D6)", None, None])
    ws.append([None, "合计", None, 14, None, None])
    ws.append(["填表人：张三  审核人：李四"])
    ws.append(["注：参保率指医保参保率"])
    ws.column_dimensions["E"].hidden = True
    wb.save(path)


def test_xlsx_merged_header_title_subtotal_footer(tmp_path):
    p = tmp_path / "s.xlsx"
    _survey_xlsx(p)
    fr = read_file(p)
    cells = fr.cells
    assert set(cells["community_raw"]) == {"南湖社区", "沿河社区"}                 # 小计/合计 dropped
    assert set(cells["header_raw"]) == {"居民自治 » 住宅小区数(个)", "居民自治 » 业委会组建率",
                                        "经费保障 » 社区集体经济年可支配收入"}       # merged C3:E3 rebuilt
    assert fr.table_unit == "万元"
    assert any("2024年第三季度" in line for line in fr.title_lines)
    assert any(n.startswith("填表人") for n in fr.notes) and any(n.startswith("注") for n in fr.notes)
    assert any("隐藏列 E" in n for n in fr.notes)
    hit = cells.filter((pl.col("community_raw") == "南湖社区") & pl.col("header_raw").str.ends_with("组建率"))
    assert hit.row(0, named=True)["source_cell"] == "E5" and hit["raw_text"][0] == "79%"
    # the formula without a cached value is reported, never read as 0
    assert [(p["source_cell"], p["reason_code"]) for p in fr.problems] == [("F6", "formula_no_cache")]
    assert "F6" not in set(cells["source_cell"])


@pytest.mark.parametrize("encoding", ["gbk", "gb18030", "utf-8-sig", "utf-16", "big5"])
def test_csv_encodings_give_the_same_cells(tmp_path, encoding):
    text = "序号,街道,社区名称,参保率,办公用房面积\r\n1,南湖街道,南湖社区,95%,60平方米\r\n2,南湖街道,沿河社区,0.9,55\r\n"
    if encoding == "big5":  # a Taiwan/HK-style export: the same table in Traditional script
        text = "序號,街道,社區名稱,參保率,辦公用房面積\r\n1,南湖街道,南湖社區,95%,60平方米\r\n2,南湖街道,沿河社區,0.9,55\r\n"
    p = tmp_path / f"t_{encoding}.csv"
    p.write_bytes(text.encode(encoding))
    fr = read_file(p)
    assert fr.cells.height == 4
    assert set(fr.cells["header_raw"]) == {"参保率", "办公用房面积"}
    assert fr.cells.filter(pl.col("source_cell") == "R2C4")["raw_text"].item() == "95%"


def test_tsv_utf16(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes("社区名称\t参保率\n南湖社区\t95%\n".encode("utf-16"))
    fr = read_file(p)
    assert fr.file_format == "tsv" and fr.cells["raw_text"].to_list() == ["95%"]


def test_mojibake_file_rejected(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("社区名称,说明\n南湖社区,。ㄒ唬┣袑加强┣ㄒ唬┣\n", encoding="utf-8")
    with pytest.raises(FileRejected) as e:
        read_file(p)
    assert e.value.reason == "mojibake"


def test_no_header_rejected_with_reason(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(FileRejected) as e:
        read_file(p)
    assert e.value.reason == "no_header" and "社区名称" in e.value.message


def test_json_long_and_nested(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(json.dumps({"区": "建邺区", "期间": "2024年第三季度", "记录": [
        {"街道": "南湖街道", "社区": "南湖社区", "指标": "业委会组建率", "数值": "79%"},
        {"街道": "南湖街道", "社区": "沿河社区", "values": {"住宅小区数": 6}}]}, ensure_ascii=False), encoding="utf-8")
    fr = read_file(p)
    rows = {(r["community_raw"], r["header_raw"]): r for r in fr.cells.iter_rows(named=True)}
    assert rows[("南湖社区", "业委会组建率")]["raw_text"] == "79%"
    assert rows[("南湖社区", "业委会组建率")]["period_raw"] == "2024年第三季度"
    assert rows[("沿河社区", "住宅小区数")]["raw_text"] == "6"


def test_unsupported_extension(tmp_path):
    p = tmp_path / "a.pdf"
    p.write_bytes(b"%PDF")
    with pytest.raises(FileRejected) as e:
        read_file(p)
    assert e.value.reason == "unsupported_format"


def test_transposed_month_sheets(tmp_path):
    """H25: indicators as rows, communities as columns, one sheet per month (7月, 8月, 9月份)."""
    from conftest import transposed_month_workbook

    wb = transposed_month_workbook(("北村社区", "标山社区"))
    for ws in wb.worksheets:
        ws.append(["填表人：张三"])
    p = tmp_path / "天桥区_2024年三季度月报.xlsx"
    wb.save(p)
    fr = read_file(p)
    c = fr.cells
    assert c.height == 3 * 2 * 2
    row = c.filter((pl.col("sheet") == "9月份") & (pl.col("community_raw") == "标山社区")
                   & pl.col("header_raw").str.starts_with("社区工作者人数")).row(0, named=True)
    assert (row["raw_text"], row["street_raw"], row["source_cell"], row["header_raw"]) == \
        ("10", "北村街道", "D5", "社区工作者人数(人)")
    assert any("转置" in n for n in fr.notes)


def test_subtotal_rows_are_checked_against_their_members(tmp_path):

    from shequ import pipeline
    from shequ.warehouse import connect

    wb = Workbook()
    ws = wb.active
    ws.append(["天桥区2024年第一季度统计表"])
    ws.append(["街道", "社区名称", "志愿者组织数", "健身器材套数"])
    ws.append(["北村街道", "北村社区", 2, 10])
    ws.append(["北村街道", "标山南社区", 3, 12])
    ws.append(["北村街道小计", None, 5, 25])          # 10 + 12 = 22, not 25
    ws.append(["合计", None, 5, 25])
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    wb.save(inbox / "天桥区_2024Q1.xlsx")
    with connect(tmp_path / "w.duckdb") as con:
        pipeline.stage_dimensions(con)
        (s,) = pipeline.stage_staged(con, inbox, "2024Q1")
        notes = con.execute("SELECT notes FROM raw_file").fetchall()[0][0]
    assert s.status == "loaded" and s.n_loaded == 4
    assert [n for n in notes if n.startswith("小计核对")] == ["小计核对不符：北村街道小计 健身器材套数 成员合计 22，小计 25"]
