"""Shapes district offices send: legacy .xls (generated with xlwt, no committed binaries), printed-form
community headers, pinyin annotations in values."""

import polars as pl
import pytest
import xlwt

from shequ.readers import read_file
from shequ.values import parse_text


def test_xls_read_through_calamine_with_hidden_column_and_hidden_sheet(tmp_path):
    wb = xlwt.Workbook(encoding="utf-8")
    ws = wb.add_sheet("南湖街道")
    ws.write_merge(0, 0, 0, 2, "建邺区2024年第三季度统计表")
    for c, v in enumerate(["街道", "社区（居委会）名称", "志愿者组织数"]):
        ws.write(1, c, v)
    for c, v in enumerate(["南湖街道", "新村社区", 3]):
        ws.write(2, c, v)
    ws.col(2).hidden = True
    old = wb.add_sheet("上季度")
    old.write(0, 0, "x")
    old.visibility = 1
    p = tmp_path / "a.xls"
    wb.save(p)
    fr = read_file(p)
    assert fr.file_format == "xls"
    assert fr.cells.select("community_raw", "header_raw", "raw_text", "source_cell").rows() == \
        [("新村社区", "志愿者组织数", "3", "C3")]
    assert "跳过隐藏工作表 上季度" in fr.notes and any("隐藏列 C" in n for n in fr.notes)
    assert any("2024年第三季度" in t for t in fr.title_lines)


@pytest.mark.parametrize("header", ["社区（居委会）名称", "居委会名称", "单位名称", "社区名称", "名称", "社区　名称",
                                    "社區名稱", "【社区名称】"])
def test_printed_form_community_headers(tmp_path, header):
    p = tmp_path / "h.csv"
    p.write_text(f"{header},志愿者组织数\n新村社区,3\n", encoding="utf-8")
    assert read_file(p).cells.select("community_raw", "raw_text").rows() == [("新村社区", "3")]


def test_pinyin_and_traditional_in_values():
    assert parse_text("優(yōu)秀", "ordinal", "等级").value == 4
    assert parse_text("不適用", "count", "个").reason == "not_applicable"
