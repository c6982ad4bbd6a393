"""The quarterly HTML report (shequ/report.py, `shequ report`, asset quarterly_report) and the printable 公示
workbook (`shequ export gongshi`): values match the warehouse, the page is self-contained and escaped, and no text
cell of the workbook can become a formula."""

import html
import re

import pytest
from openpyxl import load_workbook
from plotly.offline import get_plotlyjs

from conftest import QUARTERS
from shequ.cli import main
from shequ.exports import FORMULA_PREFIXES, safe_text, write_gongshi_xlsx
from shequ.report import report_path, write_report
from shequ.warehouse import connect

Q = "2024Q2"


@pytest.fixture(scope="module")
def report(built, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / f"report_{Q}.html"
    info = write_report(Q, out=out, warehouse=built["warehouse"])
    return info, out.read_text(encoding="utf-8")


def test_the_asset_wrote_one_report_per_quarter(built):
    for q in QUARTERS:
        p = report_path(q, built["warehouse"])
        assert p == built["warehouse"].parent / "reports" / f"report_{q}.html" and p.stat().st_size > 1_000_000
        assert "社区建设三级评比报告" in p.read_text(encoding="utf-8")


def test_report_values_match_the_warehouse(report, con):
    info, page = report
    n_titles = con.execute("SELECT count(*) FROM fact_award WHERE period_key = ?", [Q]).fetchall()[0][0]
    assert info["titles"] == n_titles > 0
    assert f"{n_titles} 个" in page
    n_comm = con.execute("""SELECT count(*), avg(score) FROM fact_ranking WHERE period_key = ?
                            AND entity_level = 'community' AND scope_level = 'city' AND rank IS NOT NULL""",
                         [Q]).fetchall()[0]
    assert info["ranked"] == n_comm[0] and f"{info['ranked']} / {info['communities']}" in page
    assert info["mean_score"] == round(n_comm[1], 2) and f"{n_comm[1]:.2f}" in page
    # the top community of each district: name and score in its district table row
    tops = con.execute("""SELECT scope_name, entity_name, score FROM fact_ranking WHERE period_key = ?
                          AND entity_level = 'community' AND scope_level = 'district' AND rank = 1""", [Q]).fetchall()
    assert len(tops) == 4
    for district, name, score in tops:
        assert re.search(rf"<td class=\"num\">1</td><td>{re.escape(name)}</td><td>[^<]*</td>"
                         rf"<td class=\"num\">{score:.2f}</td>", page), (district, name)
    # every title holder with its title, and the 统计上并列 marks
    for title, name in con.execute("SELECT title, entity_name FROM fact_award WHERE period_key = ?", [Q]).fetchall():
        assert f"<td>{title}</td><td>{name}</td>" in page
    ties = con.execute("SELECT count(*) FROM fact_award WHERE period_key = ? AND tie_flag", [Q]).fetchall()[0][0]
    assert page.count('<span class="tie">统计上并列</span>') == ties == info["tie_flag"]
    # each community's explanation, in a <details> of its own
    codes = [r[0] for r in con.execute("""SELECT entity_code FROM fact_ranking WHERE period_key = ?
                                          AND entity_level = 'community' AND scope_level = 'city'""", [Q]).fetchall()]
    assert page.count('<details class="community"') == len(codes)
    for code in codes:
        assert f'data-code="{code}"' in page
    for (detail,) in con.execute("SELECT detail FROM fact_explanation WHERE period_key = ?", [Q]).fetchall():
        assert f"<dd>{html.escape(detail)}</dd>" in page
    # quality summary and the preview mark
    assert "未发布（预览）" in page and "上报完整性与及时性" in page and "待核实的离群值" in page
    passed, total = con.execute("SELECT count(*) FILTER (WHERE success), count(*) FROM check_result "
                                "WHERE period_key = ?", [Q]).fetchall()[0]
    assert f"{passed} / {total}" in page


def test_report_is_self_contained_with_one_plotly_bundle(report):
    _, page = report
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.I)          # no external script at all
    assert not re.search(r"<link[^>]*\bhref\s*=\s*[\"']?(https?:)?//", page, re.I)
    assert not re.search(r"<(img|iframe)[^>]*\bsrc\s*=\s*[\"']?(https?:)?//", page, re.I)
    bundle = get_plotlyjs()
    assert page.count(bundle[:2000]) == 1 and page.count(bundle[-2000:]) == 1
    assert page.count("Plotly.newPlot(") == 6     # six figures (three in 稳健性与方法), none with its own bundle
    assert 4_500_000 < len(page.encode()) < 6_500_000


def test_report_escapes_text_from_the_warehouse(workspace, tmp_path):
    evil = '<script>alert("x")</script>社区'
    with connect(workspace["warehouse"]) as c:
        code = c.execute("""SELECT entity_code FROM fact_ranking WHERE period_key = ? AND entity_level = 'community'
                            AND scope_level = 'district' AND rank = 1 LIMIT 1""", [Q]).fetchall()[0][0]
        c.execute("UPDATE fact_ranking SET entity_name = ? WHERE entity_code = ? AND period_key = ?", [evil, code, Q])
        c.execute("UPDATE fact_explanation SET detail = ? WHERE entity_code = ? AND period_key = ?",
                  ["<b>坏</b>&说明", code, Q])
    out = tmp_path / "r.html"
    write_report(Q, out=out, warehouse=workspace["warehouse"])
    page = out.read_text(encoding="utf-8")
    assert evil not in page and html.escape(evil) in page
    assert "<b>坏</b>" not in page and "&lt;b&gt;坏&lt;/b&gt;&amp;说明" in page


def test_report_cli_exit_codes(built, tmp_path, capsys):
    wh = str(built["warehouse"])
    out = tmp_path / "r.html"
    assert main(["report", "--quarter", Q, "--warehouse", wh, "--out", str(out)]) == 0
    assert out.stat().st_size > 1_000_000 and "报告已写出" in capsys.readouterr().out
    assert main(["report", "--quarter", "2024年第二季度", "--warehouse", wh, "--out", str(out)]) == 0
    assert main(["report", "--quarter", "1999Q1", "--warehouse", wh, "--out", str(tmp_path / "x.html")]) == 1
    assert not (tmp_path / "x.html").exists()
    assert main(["report", "--quarter", "2024Q9", "--warehouse", wh]) == 2
    assert main(["report", "--quarter", Q, "--warehouse", str(tmp_path / "none.duckdb")]) == 2
    assert main(["report", "--warehouse", wh, "--out", str(out)]) == 0    # default: the latest quarter
    assert "2024年第二季度" in out.read_text(encoding="utf-8")[:20_000]


# ------------------------------------------------------------------ 公示 workbook
def test_safe_text():
    for bad in ("=cmd|' /C calc'!A0", "+1", "-2", "@SUM(A1:A2)", "\t=1", "\r=1"):
        assert safe_text(bad) == "'" + bad
    assert safe_text("河南社区") == "河南社区" and safe_text(3.5) == 3.5 and safe_text(None) is None
    assert safe_text("社区-2") == "社区-2"


def test_gongshi_workbook(built, con, tmp_path):
    out = tmp_path / "g.xlsx"
    with connect(built["warehouse"], read_only=True) as c:
        info = write_gongshi_xlsx(c, out, Q)
    wb = load_workbook(out)
    assert wb.sheetnames == ["称号", "社区得分与名次", "一票否决说明"]
    titles, ranks = wb["称号"], wb["社区得分与名次"]
    assert titles["A1"].value == "2024年第二季度社区建设三级评比结果公示（称号）"
    assert "未发布（预览）" in titles["A2"].value and info["version_id"] is None
    assert [c.value for c in titles[3]] == ["序号", "称号", "社区", "街道", "区", "得分", "等次", "配额位次", "配额",
                                             "统计上并列标注"]
    assert [c.value for c in ranks[3]] == ["序号", "社区", "街道", "区", "得分", "区内名次", "参评数", "等次", "否决项",
                                            "资格说明"]
    n_awards = con.execute("SELECT count(*) FROM fact_award WHERE period_key = ?", [Q]).fetchall()[0][0]
    n_comm = con.execute("""SELECT count(*) FROM fact_ranking WHERE period_key = ? AND entity_level = 'community'
                            AND scope_level = 'district'""", [Q]).fetchall()[0][0]
    # the lists, then a blank row and the notice (公示期, objections, issuer; the ranks also state the rules)
    assert titles.max_row == 3 + n_awards + 1 + 3 and ranks.max_row == 3 + n_comm + 1 + 2 + 3
    ties = con.execute("SELECT count(*) FROM fact_award WHERE period_key = ? AND tie_flag", [Q]).fetchall()[0][0]
    assert sum("统计上并列" in (r[9].value or "") for r in titles.iter_rows(min_row=4)) == ties
    top = con.execute("""SELECT entity_name, score_rounded FROM fact_ranking WHERE period_key = ? AND rank = 1
                         AND entity_level = 'community' AND scope_level = 'district' ORDER BY scope_name
                         LIMIT 1""", [Q]).fetchall()[0]
    assert any(r[1].value == top[0] and r[4].value == top[1] and r[5].value == 1 for r in ranks.iter_rows(min_row=4))
    for ws in (titles, ranks):
        assert ws.freeze_panes == "A4" and ws.print_title_rows == "$3:$3"
        assert ws.page_setup.orientation == "landscape" and int(ws.page_setup.paperSize) == 9
        assert ws.sheet_properties.pageSetUpPr.fitToPage and ws.page_setup.fitToWidth == 1
        assert ws.page_setup.fitToHeight == 0
        assert ws.column_dimensions["B"].width >= 14


def test_gongshi_neutralises_formula_text(workspace, tmp_path):
    """Names and notes planted with formula prefixes come back as text that starts with the quote."""
    planted = {"name": "=cmd|' /C calc'!A0", "grade": "+1", "vetoes": "-2", "title": "@SUM(A1:A9)"}
    with connect(workspace["warehouse"]) as c:
        (code,) = c.execute("""SELECT r.entity_code FROM fact_award a JOIN fact_ranking r
                                 ON r.entity_code = a.entity_code AND r.period_key = a.period_key
                                 WHERE a.period_key = ? AND r.scope_level = 'district' LIMIT 1""", [Q]).fetchall()[0]
        # (dim_community is referenced by foreign keys, which DuckDB does not let an UPDATE touch)
        c.execute("UPDATE fact_award SET entity_name = ?, title = ? WHERE entity_code = ? AND period_key = ?",
                  [planted["name"], planted["title"], code, Q])
        c.execute("""UPDATE fact_ranking SET entity_name = ?, vetoes = ?, grade = ? WHERE entity_code = ?
                     AND period_key = ?""", [planted["name"], planted["vetoes"], planted["grade"], code, Q])
    out = tmp_path / "g.xlsx"
    assert main(["export", "gongshi", "--quarter", Q, "--warehouse", str(workspace["warehouse"]),
                 "--out", str(out)]) == 0
    wb = load_workbook(out)
    seen = set()
    for ws in wb:
        for row in ws.iter_rows():
            for cell in row:
                if isinstance(cell.value, str):
                    assert cell.data_type == "s", cell.coordinate
                    assert not cell.value.startswith(FORMULA_PREFIXES), (ws.title, cell.coordinate, cell.value)
                    for k, v in planted.items():
                        if cell.value == "'" + v:
                            seen.add(k)
                            assert cell.quotePrefix
    assert seen == set(planted)


def test_gongshi_shows_the_published_version(workspace, tmp_path):
    from shequ.appraisal.store import publish
    from shequ.scoring import load_scheme

    with connect(workspace["warehouse"]) as c:
        vid = publish(c, Q, load_scheme(), by="测试")["version_id"]
    out = tmp_path / "g.xlsx"
    assert main(["export", "gongshi", "--quarter", Q, "--warehouse", str(workspace["warehouse"]),
                 "--out", str(out)]) == 0
    sub = load_workbook(out)["称号"]["A2"].value
    assert f"公示版本：{vid}" in sub and "未发布" not in sub
    rep = tmp_path / "r.html"
    assert write_report(Q, out=rep, warehouse=workspace["warehouse"])["published"] == vid
    page = rep.read_text(encoding="utf-8")
    assert f"已公示版本 {vid}" in page and "与公示版本不同" not in page
    # a later change of the live ranking: the workbook keeps listing the published rows and says it differs
    with connect(workspace["warehouse"]) as c:
        code, old = c.execute("""SELECT entity_code, score_rounded FROM fact_ranking WHERE period_key = ?
                                 AND entity_level = 'community' AND scope_level = 'district' AND rank = 1
                                 LIMIT 1""", [Q]).fetchall()[0]
        c.execute("UPDATE fact_ranking SET score_rounded = 12.34 WHERE entity_code = ? AND period_key = ?", [code, Q])
    assert main(["export", "gongshi", "--quarter", Q, "--warehouse", str(workspace["warehouse"]),
                 "--out", str(out)]) == 0
    ws = load_workbook(out)["社区得分与名次"]
    assert "与此版本不同" in ws["A2"].value
    scores = [r[4].value for r in ws.iter_rows(min_row=4)]
    assert 12.34 not in scores and round(old, 2) in scores
    write_report(Q, out=rep, warehouse=workspace["warehouse"])
    assert "与公示版本不同" in rep.read_text(encoding="utf-8")


def test_gongshi_cli_exit_codes(built, tmp_path):
    wh = str(built["warehouse"])
    assert main(["export", "gongshi", "--quarter", Q, "--warehouse", wh, "--out", str(tmp_path / "a.xlsx")]) == 0
    assert main(["export", "gongshi", "--quarter", "1999Q1", "--warehouse", wh,
                 "--out", str(tmp_path / "b.xlsx")]) == 1
    assert not (tmp_path / "b.xlsx").exists()
    assert main(["export", "gongshi", "--warehouse", wh]) == 2                       # a quarter is required
    assert main(["export", "gongshi", "--quarter", "2024Q1:2024Q2", "--warehouse", wh]) == 2
    assert main(["export", "gongshi", "--quarter", "bad", "--warehouse", wh]) == 2
    assert main(["export", "gongshi", "--quarter", Q, "--warehouse", str(tmp_path / "none.duckdb")]) == 2
