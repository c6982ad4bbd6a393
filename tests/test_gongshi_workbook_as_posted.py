"""The 公示 workbook as it is posted: the 公示期 (start, end), where to send objections (office, phone, address)
and the issuing office under every list, from models/publish/gongshi.yaml (unfilled items marked, never invented);
the scheme named in Chinese; one number format for every score on every sheet."""

import datetime as dt

import yaml
from openpyxl import load_workbook

from shequ.cli import main
from shequ.exports import GONGSHI_CONFIG, SCORE_FORMAT, write_gongshi_xlsx
from shequ.vetoes import scheme_for
from shequ.warehouse import connect

Q = "2024Q2"
DAY = dt.date(2024, 10, 21)


def _notes(ws) -> list[str]:
    """The merged note rows under a list (after the blank row that ends the table)."""
    blank = next(r for r in range(4, ws.max_row + 1) if ws.cell(row=r, column=1).value is None)
    return [ws.cell(row=r, column=1).value for r in range(blank + 1, ws.max_row + 1)]


def test_default_notice_marks_what_is_still_to_be_filled(built, tmp_path):
    doc = yaml.safe_load(GONGSHI_CONFIG.read_text(encoding="utf-8"))
    assert doc["period"]["days"] == 7 and doc["period"]["start"] is None
    out = tmp_path / "g.xlsx"
    with connect(built["warehouse"], read_only=True) as c:
        info = write_gongshi_xlsx(c, out, Q, today=DAY)
    assert info["period"] == (DAY, DAY + dt.timedelta(days=7))       # not published: starts on the day it is made
    assert set(info["unfilled"]) == {"发布单位", "受理异议的科室", "联系电话", "地址"}
    wb = load_workbook(out)
    for ws in wb:
        notes = _notes(ws)
        assert "公示期：2024年10月21日至2024年10月28日（7 天）。" in notes, ws.title
        objection = next(n for n in notes if n.startswith("公示期间对结果有异议的"))
        issuer = next(n for n in notes if n.startswith("发布单位："))
        for text in (objection, issuer):
            assert "（请在 models/publish/gongshi.yaml 填写" in text
            cell = next(c for row in ws.iter_rows() for c in row if c.value == text)
            assert cell.fill.fgColor.rgb.endswith("FFF59D")           # marked to be filled
        assert not any(ch.isdigit() for ch in objection.split("联系电话：")[1].split("；")[0])   # no invented phone
        # the scheme by its Chinese name and version, not its id
        sub = ws["A2"].value
        assert f"评价方案：{scheme_for('default').name}（2024.2 版）" in sub and "评价方案：default" not in sub


def test_filled_notice_and_publication_date(workspace, tmp_path, capsys):
    from shequ.appraisal.store import publish
    from shequ.scoring import load_scheme

    notice = tmp_path / "gongshi.yaml"
    notice.write_text(yaml.safe_dump({
        "issuer": "天桥区社区建设领导小组办公室",
        "period": {"start": None, "days": 5},
        "objections": {"office": "区民政局基层政权科", "phone": "0531-00000000", "address": "天桥区示例路 1 号"},
    }, allow_unicode=True), encoding="utf-8")
    with connect(workspace["warehouse"]) as c:
        publish(c, Q, load_scheme(), by="测试")
        published = c.execute("SELECT published_at FROM appraisal_publication WHERE period_key = ?",
                              [Q]).fetchall()[0][0].date()
    out = tmp_path / "g.xlsx"
    assert main(["export", "gongshi", "--quarter", Q, "--warehouse", str(workspace["warehouse"]),
                 "--out", str(out), "--notice", str(notice)]) == 0
    said = capsys.readouterr().out
    end = published + dt.timedelta(days=5)
    assert f"公示期 {published:%Y-%m-%d} 至 {end:%Y-%m-%d}" in said and "尚未填写" not in said
    for ws in load_workbook(out):
        notes = _notes(ws)
        assert f"公示期：{published:%Y年%m月%d日}至{end:%Y年%m月%d日}（5 天）。" in notes
        assert ("公示期间对结果有异议的，请向区民政局基层政权科反映。联系电话：0531-00000000；"
                "地址：天桥区示例路 1 号。") in notes
        assert "发布单位：天桥区社区建设领导小组办公室" in notes
        assert not any("请在" in n for n in notes)
    # an explicit start date wins over the publication date
    notice.write_text(yaml.safe_dump({"period": {"start": "2024-11-01"}}, allow_unicode=True), encoding="utf-8")
    with connect(workspace["warehouse"], read_only=True) as c:
        info = write_gongshi_xlsx(c, out, Q, notice=notice)
    assert info["period"] == (dt.date(2024, 11, 1), dt.date(2024, 11, 8))


def test_every_score_on_every_sheet_has_one_number_format(built, tmp_path):
    out = tmp_path / "g.xlsx"
    with connect(built["warehouse"], read_only=True) as c:
        write_gongshi_xlsx(c, out, Q)
    wb = load_workbook(out)
    seen = 0
    for ws in wb:
        headers = [c.value for c in ws[3]]
        col = headers.index("得分") + 1
        for r in range(4, ws.max_row + 1):
            cell = ws.cell(row=r, column=col)
            if isinstance(cell.value, (int, float)):
                assert cell.number_format == SCORE_FORMAT == "0.00", (ws.title, cell.coordinate)
                assert round(cell.value, 2) == cell.value
                seen += 1
    assert seen > 100
