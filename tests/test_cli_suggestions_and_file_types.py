"""CLI for people (issue 14, item 5): `shequ refresh` prints candidates for unknown communities and headers
(未知社区「新材社区」，是否为：新村社区（南湖街道）？), names a file's real type from its first bytes (a PDF renamed
.csv says PDF), and shows progress inside the quarter (stage, file 2/3) as plain lines when piped."""

import zipfile
from pathlib import Path

import pytest

from shequ.cli import main
from shequ.filetypes import real_kind
from shequ.readers import FileRejected, read_file

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 32


def _docx(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<w:document/>")


def _xlsx(path: Path) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    wb.active.append(["街道", "社区", "常住人口"])
    wb.active.append(["南湖街道", "南湖社区", 7000])
    wb.save(path)


@pytest.mark.parametrize("name,make,label", [
    ("上报.csv", lambda p: p.write_bytes(PDF), "PDF 文档"),
    ("上报.json", lambda p: p.write_bytes(PNG), "PNG 图片"),
    ("上报.xlsx", _docx, "Word 文档（docx）"),
    ("上报.csv", _xlsx, "Excel 工作簿（xlsx）"),
])
def test_a_renamed_file_is_refused_with_its_real_type(tmp_path, name, make, label):
    p = tmp_path / name
    make(p)
    with pytest.raises(FileRejected) as e:
        read_file(p)
    assert e.value.reason == "wrong_file_type"
    assert f"文件扩展名为 {p.suffix}，但内容实为{label}" in e.value.message


def test_real_files_pass_the_type_check(tmp_path):
    csv_ = tmp_path / "a.csv"
    csv_.write_text("街道,社区,常住人口\n南湖街道,南湖社区,7000\n", encoding="gbk")
    xlsx = tmp_path / "a.xlsx"
    _xlsx(xlsx)
    assert real_kind(csv_) is None and real_kind(xlsx) == "xlsx"
    assert read_file(csv_).cells.height and read_file(xlsx).cells.height
    pdf = tmp_path / "a.pdf"
    pdf.write_bytes(PDF)
    with pytest.raises(FileRejected) as e:
        read_file(pdf)
    assert e.value.reason == "unsupported_format" and "内容为PDF 文档" in e.value.message


def test_wrong_file_type_has_a_chinese_reason_label():
    from shequ.cli import reason_labels

    assert reason_labels()["wrong_file_type"] == "文件类型与扩展名不符"


def test_refresh_prints_candidates_real_types_and_progress(tmp_path, capsys):
    inbox = tmp_path / "inbox" / "2024Q3"
    inbox.mkdir(parents=True)
    # 新材社区 is not in the registry (新村社区 is, in 南湖街道); 居民满意程度调查 is no catalogue header
    (inbox / "建邺区南湖街道_2024Q3.csv").write_text(
        "街道,社区,常住人口,居民满意程度调查,办公用房面积（平方米）\n"
        "南湖街道,南湖社区,7500,0.9,350\n"
        "南湖街道,新材社区,3000,0.8,200\n"
        "南湖街道,沿河社区,6100,0.85,300\n", encoding="utf-8")
    (inbox / "建邺区莫愁湖街道_2024Q3.csv").write_bytes(PDF)      # a PDF renamed .csv
    wh = tmp_path / "warehouse.duckdb"
    rc = main(["refresh", "--inbox", str(tmp_path / "inbox"), "--warehouse", str(wh), "--quarter", "2024Q3"])
    out = capsys.readouterr().out
    flat = out.replace("\n", "")
    # candidates, in the words the analyst reads
    assert "未知社区「新材社区」，是否为：新村社区（南湖街道）" in flat
    assert "未知表头「居民满意程度调查」，是否为：" in flat
    # the renamed PDF is named as a PDF, with the Chinese label of its reason
    assert "内容实为PDF" in out and "wrong_file_type（文件类型与扩展名不符）" in out
    from shequ.warehouse import connect

    with connect(wh, read_only=True) as con:
        (msg,) = con.execute("SELECT message FROM raw_file WHERE reason_code = 'wrong_file_type'").fetchall()[0]
    assert msg.startswith("2024Q3/建邺区莫愁湖街道_2024Q3.csv：文件扩展名为 .csv，但内容实为PDF 文档")
    # progress inside the quarter, one plain line per stage and file when piped
    for line in ("2024Q3 读取文件 1/2：", "2024Q3 读取文件 2/2：", "2024Q3 生成事实表（含人工更正）",
                 "2024Q3 数据质量规则、离群值、完整性", "2024Q3 评分、排名、称号（含人工加分）"):
        assert line in out, line
    assert out.index("读取文件 1/2") < out.index("生成事实表") < out.index("评分、排名、称号")
    assert rc in (0, 1)
