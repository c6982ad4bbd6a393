"""一票否决 explained wherever a result is shown: a community hit by a veto that still ranks first in its district
gets one plain-Chinese explanation (the item and its value, what it did, why the rank stands) in fact_explanation,
and the same words in the `shequ refresh` summary, the quarterly report and the 公示 workbook."""

import html

import pytest
from openpyxl import load_workbook

from shequ.cli import main
from shequ.exports import write_gongshi_xlsx
from shequ.report import write_report
from shequ.vetoes import explanations, rules_text, scheme_for
from shequ.warehouse import connect

Q = "2024Q2"


@pytest.fixture(scope="module")
def leader(built) -> dict:
    """A vetoed community ranked first in its district, with its explanation and the facts behind it."""
    with connect(built["warehouse"], read_only=True) as c:
        rows = c.execute("""
            SELECT r.entity_code, r.entity_name, r.scope_name, r.score_rounded, r.grade, r.vetoes, r.n_ranked
            FROM fact_ranking r WHERE r.period_key = ? AND r.entity_level = 'community'
              AND r.scope_level = 'district' AND r.rank = 1 AND r.vetoes IS NOT NULL
            ORDER BY r.n_ranked DESC, r.entity_code""", [Q]).fetchall()
        assert rows, "the sample has a vetoed community ranked first in its district"
        code, name, district, score, grade, vetoes, n = rows[0]
        details = [d for (d,) in c.execute("""SELECT detail FROM fact_explanation WHERE period_key = ?
                                              AND entity_code = ? AND kind = 'veto' ORDER BY position""",
                                           [Q, code]).fetchall()]
        best = c.execute("""SELECT max(score_rounded) FROM fact_ranking WHERE period_key = ? AND scope_name = ?
                            AND entity_level = 'community' AND scope_level = 'district'""",
                         [Q, district]).fetchall()[0][0]
        # the value the rule read: this quarter's, or the last one reported (carried forward)
        value = c.execute("""SELECT f.value FROM fact_indicator_value f JOIN dim_community d USING (community_key)
                             WHERE d.community_code = ? AND f.period_key <= ? AND f.indicator_code =
                             'new_illegal_structures' ORDER BY f.period_key DESC LIMIT 1""", [code, Q]).fetchall()
    return {"code": code, "name": name, "district": district, "score": score, "grade": grade, "vetoes": vetoes,
            "n": n, "details": details, "best": best, "value": value[0][0] if value else None}


def test_fact_explanation_names_the_item_the_value_the_effect_and_why_the_rank_stands(leader):
    scheme = scheme_for("default")
    assert leader["details"], "a vetoed community has a veto explanation"
    text = "；".join(leader["details"])
    # the item that hit, the indicator's Chinese name and the value it read
    assert "新增违法建筑" in leader["vetoes"] and "“新增违法建筑”" in text
    assert "新增违法建筑处数本季度为" in text
    assert f"本季度为 {leader['value']:.0f} 处（大于 0 即否决）" in text
    # what it did: the grade its score earns, dropped one band
    bands = [b["grade"] for b in scheme.section("grades")["bands"]]
    earned = next(b["grade"] for b in scheme.section("grades")["bands"] if leader["score"] >= b.get("min", -1e9))
    assert leader["grade"] == bands[min(bands.index(earned) + 1, len(bands) - 1)]
    assert f"等次由“{earned}”降一档为“{leader['grade']}”" in text
    # why it still ranks first: its score is the district's best, and the sentence says ranks go by the score
    assert leader["score"] == leader["best"]
    assert "排名只按综合得分高低排列" in text and f"仍列区内第 1 名（共 {leader['n']} 个社区参评）" in text
    # the general rule, in plain Chinese
    rule = rules_text(scheme)
    assert "名次只按综合得分从高到低排列" in rule and "仍可能排在区内第一名" in rule


def test_cli_refresh_summary_explains_the_veto(workspace, capsys, leader):
    assert main(["refresh", "--quarter", Q, "--warehouse", str(workspace["warehouse"]),
                 "--inbox", str(workspace["inbox"])]) == 0
    out = capsys.readouterr().out
    assert "一票否决：" in out and "仍可能排在区内第一名" in out
    line = next(ln for ln in out.splitlines() if f"{leader['district']} {leader['name']}（区内第 1 名" in ln)
    for d in leader["details"]:
        assert d in line                                    # whole, not cut at the terminal's width


def test_report_explains_the_veto(built, tmp_path, leader):
    out = tmp_path / "r.html"
    write_report(Q, out=out, warehouse=built["warehouse"])
    page = out.read_text(encoding="utf-8")
    assert '<h3 id="vetoes">等次与一票否决</h3>' in page
    assert html.escape(rules_text(scheme_for("default"))) in page
    for d in leader["details"]:
        assert page.count(html.escape(d)) >= 2              # the veto table and the community's own explanation
    # the community's explanation leads with the veto
    block = page[page.index(f'data-code="{leader["code"]}"'):]
    block = block[:block.index("</details>")]
    assert "一票否决" in block[:block.index("<dl>")] and block.index("<dt>一票否决</dt>") < block.index("<dt>优势</dt>")


def test_report_quality_section_reads_in_plain_chinese(built, tmp_path):
    out = tmp_path / "r.html"
    write_report(Q, out=out, warehouse=built["warehouse"])
    page = out.read_text(encoding="utf-8")
    six = page[page.index('<h2 id="quality">'):page.index('<h2 id="explain">')]
    import re

    headings = re.findall(r"<h[23][^>]*>(.*?)</h[23]>", six)
    assert headings and all(not re.search(r"[A-Za-z_]", h) for h in headings), headings
    for ident in ("validation_violation", "quality_hold", "outlier_flag", "check_result", "completeness_report",
                  "（open）", "modified_zscore"):
        assert ident not in six


def test_gongshi_workbook_explains_the_veto(built, tmp_path, leader):
    out = tmp_path / "g.xlsx"
    with connect(built["warehouse"], read_only=True) as c:
        info = write_gongshi_xlsx(c, out, Q)
        n_vetoed = explanations(c, Q).height
    wb = load_workbook(out)
    ws = wb["一票否决说明"]
    assert [c.value for c in ws[3]] == ["序号", "社区", "街道", "区", "得分", "区内名次", "等次", "否决项", "说明"]
    rows = [[c.value for c in r] for r in ws.iter_rows(min_row=4, max_row=3 + n_vetoed)]
    assert info["vetoed"] == n_vetoed == len(rows)
    mine = next(r for r in rows if r[1] == leader["name"] and r[3] == leader["district"])
    assert mine[5] == 1 and mine[6] == leader["grade"] and mine[7] == leader["vetoes"]
    assert mine[8] == "；".join(leader["details"])
    notes = [ws.cell(row=r, column=1).value for r in range(4 + n_vetoed, ws.max_row + 1)]
    assert rules_text(scheme_for("default")) in notes
    # the ranks sheet shows the veto beside the first place, and states the rule under the list
    ranks = wb["社区得分与名次"]
    assert any(r[1].value == leader["name"] and r[5].value == 1 and r[8].value == leader["vetoes"]
               for r in ranks.iter_rows(min_row=4))
    assert any(rules_text(scheme_for("default")) == r[0].value for r in ranks.iter_rows(min_row=4))


def test_a_veto_that_excludes_titles_is_explained_and_applied(workspace):
    """A title holder given a 重大安全责任事故 loses its title, keeps the rank its score earns, and its explanation
    says so (the sample has no such incident: it is planted in a copy)."""
    from shequ.scoring import load_scheme, score_period

    with connect(workspace["warehouse"]) as c:
        code, key = c.execute("""
            SELECT r.entity_code, r.community_key FROM fact_award a JOIN fact_ranking r
              ON r.entity_code = a.entity_code AND r.period_key = a.period_key AND r.scope_level = 'district'
            WHERE a.period_key = ? AND a.title = '区级示范社区' AND r.vetoes IS NULL
              AND EXISTS (SELECT 1 FROM fact_indicator_value f WHERE f.community_key = r.community_key
                          AND f.period_key = a.period_key AND f.indicator_code = 'major_incident')
            ORDER BY r.rank, r.entity_code LIMIT 1""", [Q]).fetchall()[0]
        c.execute("""UPDATE fact_indicator_value SET value = 2 WHERE community_key = ? AND period_key = ?
                     AND indicator_code = 'major_incident'""", [key, Q])
        score_period(c, Q, load_scheme(), draws=20)
        rank, n, vetoes = c.execute("""SELECT rank, n_ranked, vetoes FROM fact_ranking WHERE entity_code = ?
                                       AND period_key = ? AND scope_level = 'district'""", [code, Q]).fetchall()[0]
        titles = c.execute("SELECT count(*) FROM fact_award WHERE entity_code = ? AND period_key = ?",
                           [code, Q]).fetchall()[0][0]
        (detail,) = c.execute("""SELECT detail FROM fact_explanation WHERE entity_code = ? AND period_key = ?
                                 AND kind = 'veto'""", [code, Q]).fetchall()[0]
    assert vetoes == "发生重大安全责任事故或群体性事件" and titles == 0
    assert detail.startswith("一票否决“发生重大安全责任事故或群体性事件”：重大安全责任事故/群体性事件/非正常上访本季度为 2 起"
                             "（大于 0 即否决）。后果：本季度不得评任何称号")
    assert f"这一项否决只取消评优资格，所以本社区仍列区内第 {rank} 名（共 {n} 个社区参评）。" in detail


def test_a_veto_that_caps_the_score_is_explained(workspace, tmp_path):
    """A scheme whose 新增违法建筑 veto caps the score at 60 (effect cap_score): the capped communities score 60.00,
    are ranked on it, and their explanation says the score was capped and ranks follow the capped score."""
    import yaml

    from shequ.config import SCHEMES_DIR
    from shequ.scoring import load_scheme, score_period

    doc = yaml.safe_load((SCHEMES_DIR / "default.yaml").read_text(encoding="utf-8"))
    doc["adjust"]["vetoes"] = [{"name": "新增违法建筑", "indicator": "new_illegal_structures", "op": ">", "value": 0,
                                "effect": "cap_score", "cap": 60}]
    path = tmp_path / "capped.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with connect(workspace["warehouse"]) as c:
        score_period(c, Q, load_scheme(path), draws=20)
        rows = c.execute("""SELECT r.score_rounded, r.rank, r.n_ranked, e.detail FROM fact_ranking r
                            JOIN fact_explanation e ON e.entity_code = r.entity_code AND e.period_key = r.period_key
                             AND e.scheme_id = r.scheme_id AND e.kind = 'veto'
                            WHERE r.period_key = ? AND r.scope_level = 'district' AND r.rank IS NOT NULL""",
                         [Q]).fetchall()
    assert rows and all(score <= 60 for score, *_ in rows)
    assert any(score == 60 for score, *_ in rows)
    for score, rank, n, detail in rows:
        assert "后果：综合得分封顶为 60.00 分。" in detail
        assert detail.endswith(f"排名按封顶后的得分排列，本社区列区内第 {rank} 名（共 {n} 个社区参评）。")
