"""Data Docs pages per quarter x suite list each failed expectation's unexpected values (GX partial lists from
check_result.partial_unexpected); the index links to those pages and to one page per suite; every link is local."""

import html
import json
import re

from shequ import dq
from shequ.quality import run_suite
from shequ.warehouse import connect

Q = "2024Q1"


def _cells(page: str) -> list[str]:
    """Innermost table cells as text (GX nests the unexpected-values table inside the results table)."""
    return [html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
            for c in re.findall(r"<td[^>]*>((?:(?!<td).)*?)</td>", page, re.S)]


def test_failed_expectation_page_lists_its_unexpected_values(workspace, tmp_path):
    from shequ.datadocs import build

    with connect(workspace["warehouse"]) as c:
        # planted: two node scores above 100 and a deputy paid above the director
        c.execute(f"""UPDATE fact_score SET score = 100.5 + rowid % 2 WHERE rowid IN (SELECT rowid FROM fact_score
                      WHERE period_key = '{Q}' AND node_level = 'indicator' ORDER BY rowid LIMIT 2)""")
        k, code = c.execute("""SELECT f.community_key, d.community_code FROM fact_indicator_value f
                               JOIN dim_community d USING (community_key) WHERE period_key = ? AND
                               indicator_code = 'director_monthly_wage' ORDER BY 1 LIMIT 1""", [Q]).fetchall()[0]
        c.execute("""UPDATE fact_indicator_value SET value = 99999 WHERE community_key = ? AND period_key = ?
                     AND indicator_code = 'deputy_director_monthly_wage'""", [k, Q])
        got = {r.expectation: r for r in run_suite(c, "fact_score", Q)}
        dq.run_validation(c, Q)
        stored = c.execute("""SELECT expectation, partial_unexpected FROM check_result WHERE period_key = ?
                              AND suite = 'fact_score' AND NOT success""", [Q]).fetchall()
    score = next(r for e, r in got.items() if "between(score)" in e)
    assert (score.success, score.unexpected) == (False, 2) and sorted(score.partial) == [100.5, 101.5]
    assert any(sorted(json.loads(p)) == [100.5, 101.5] for _, p in stored)   # kept in check_result

    index = build(workspace["warehouse"], tmp_path / "docs")
    docs = index.parent
    text = index.read_text(encoding="utf-8")
    links = re.findall(r'<a href="([^"]+)"', text)
    page_rel = f"validations/fact_score/{Q}/run/result.html"
    assert page_rel in links and "expectations/fact_score.html" in links
    assert f"validations/validation_rules/{Q}/run/result.html" in links
    page = (docs / page_rel).read_text(encoding="utf-8")
    cells = _cells(page)
    assert "异常值样例" in page and "100.5" in cells and "101.5" in cells
    # the planted values are listed under their expectation
    i = page.index("100.5</")
    assert "score" in page[max(0, i - 6000):i]
    rules = (docs / f"validations/validation_rules/{Q}/run/result.html").read_text(encoding="utf-8")
    listed = [c for c in _cells(rules) if "entity_code=" in c]
    assert any(f"entity_code={code}" in c and "left_value=99999" in c for c in listed), listed
    # the suite page exists and every local link of every page resolves
    assert "node_level" in (docs / "expectations/fact_score.html").read_text(encoding="utf-8")
    for p in [index, *sorted(docs.rglob("validations/**/*.html")), *sorted((docs / "expectations").glob("*.html"))]:
        for ref in re.findall(r'<a[^>]+href="([^"#]+)"', p.read_text(encoding="utf-8")):
            if not ref.startswith(("http://", "https://", "mailto:")):
                assert (p.parent / ref).resolve().is_file(), (p, ref)
