"""The robustness tables fill on every refresh (correlations and reliability with the ranking, the Sobol
sensitivity as its own asset), and the report's section 稳健性与方法 shows them, escaped."""

import re

import pytest

from shequ.report import write_report
from shequ.warehouse import connect

Q = "2024Q2"


def test_every_quarter_has_its_analysis_rows(con, built):
    from conftest import QUARTERS

    for q in QUARTERS:
        n_corr, flagged = con.execute("""SELECT count(*), count(flag) FROM analysis_correlation
                                         WHERE period_key = ? AND scheme_id = 'default'""", [q]).fetchall()[0]
        assert n_corr > 200
        rel = con.execute("""SELECT count(*), count(cronbach_alpha) FROM analysis_reliability
                             WHERE period_key = ? AND scheme_id = 'default'""", [q]).fetchall()[0]
        assert rel[0] == 14 and rel[1] >= 12       # 13 categories + the index; a one-indicator category has none
        sa = con.execute("""SELECT factor, sti, sti_low, sti_high, n_base, n_runs FROM analysis_sensitivity
                            WHERE period_key = ? AND scheme_id = 'default' AND target = 'rank_shift'""",
                         [q]).fetchall()
        assert {r[0] for r in sa} == {"Winmax", "Normalisation", "Weights", "Aggregation"}
        assert all(r[4] == 100 and r[5] == 600 for r in sa)
        assert all(r[1] is None or r[2] <= r[1] <= r[3] for r in sa)
        per_unit = con.execute("""SELECT count(DISTINCT entity_code) FROM analysis_sensitivity
                                  WHERE period_key = ? AND target = 'rank'""", [q]).fetchall()[0][0]
        ranked = con.execute("""SELECT count(*) FROM fact_ranking WHERE period_key = ? AND scope_level = 'city'
                                AND entity_level = 'community' AND rank IS NOT NULL""", [q]).fetchall()[0][0]
        assert per_unit == ranked


def test_report_section_shows_the_tables(built, con, tmp_path):
    out = tmp_path / "r.html"
    write_report(Q, out=out, warehouse=built["warehouse"])
    page = out.read_text(encoding="utf-8")
    sec = page[page.index('<h2 id="robust">九、稳健性与方法</h2>'):]
    for h in ("称号是否取决于权重与方法的选择", "各项假设对名次的影响", "名次的不确定区间", "评价框架", "类别之间的相关"):
        assert f"<h3>{h}</h3>" in sec
    # the Sobol table carries the warehouse's numbers, with Chinese names of the assumptions
    for label, sti in con.execute("""SELECT factor_label, sti FROM analysis_sensitivity WHERE period_key = ?
                                     AND scheme_id = 'default' AND target = 'rank_shift' AND sti IS NOT NULL""",
                                  [Q]).fetchall():
        assert re.search(rf"<td>{label}</td>.*?<td>{sti:.3f}</td>", sec)
    # the titles whose interval crosses the quota line are listed
    tied = con.execute("SELECT count(*) FROM fact_award WHERE period_key = ? AND tie_flag", [Q]).fetchall()[0][0]
    assert f"个称号中，{tied} 个的蒙特卡洛名次区间" in sec
    # one sunburst (the framework) and one heatmap (the correlations), next to the rank-interval plot
    assert sec.count('"type":"sunburst"') == 1 and sec.count('"zmin":-1') == 1


def test_robustness_labels_are_escaped(workspace, tmp_path):
    evil = '<b>坏</b>%{x}社区'
    with connect(workspace["warehouse"]) as c:
        code = c.execute("""SELECT entity_code FROM fact_ranking WHERE period_key = ? AND entity_level = 'community'
                            AND scope_level = 'city' AND rank = 1 LIMIT 1""", [Q]).fetchall()[0][0]
        c.execute("UPDATE fact_ranking SET entity_name = ? WHERE entity_code = ? AND period_key = ?", [evil, code, Q])
        c.execute("UPDATE dim_indicator SET name_zh = ? WHERE indicator_code = 'resident_satisfaction_rate'",
                  ['<a href="x">满意</a>'])
    out = tmp_path / "r.html"
    write_report(Q, out=out, warehouse=workspace["warehouse"])
    sec = out.read_text(encoding="utf-8").split('id="robust"')[1]
    assert "<b>坏</b>" not in sec and '<a href="x">' not in sec
    # chart labels go through chart_text.plain: entities, so plotly draws them as text and fills no template
    assert '&lt;a href=\\"x\\"&gt;' in sec          # the indicator name in the sunburst
    assert "&lt;b&gt;" in sec and "&#37;{x}" in sec       # the community in the rank-interval plot


def test_optimise_weights_cli_prints_weights_that_do_what_it_says(built, capsys):
    from shequ.appraisal.analysis import importances
    from shequ.appraisal.store import final_appraisal
    from shequ.cli import main
    from shequ.scoring import load_scheme
    from shequ.snapshot import read_only, source_path

    target = {"社区服务": 0.3, "满意度": 0.3, "治安法治": 0.4}
    rc = main(["appraise", "optimise-weights", "--quarter", Q, "--warehouse", str(built["warehouse"]),
               "--target", "社区服务:0.3，满意度:0.3，治安法治:0.4", "--tolerance", "0.03"])
    out = capsys.readouterr().out
    line = [x for x in out.splitlines() if x.startswith("weights: ")][0]
    weights = {k: float(v) for k, v in (p.split("=") for p in line[len("weights: "):].split(", "))}
    assert set(weights) == set(target)
    scheme = load_scheme()
    assert sum(weights.values()) == pytest.approx(sum(scheme.nodes[c].weight for c in target), abs=0.02)
    with read_only(source_path(built["warehouse"])) as c:
        app, _ = final_appraisal(c, Q, scheme)
    got = importances(app, list(target), weights)
    err = max(abs(g - t) for g, t in zip(got, target.values()))
    # exit 0 exactly when the printed weights meet the tolerance (2-dp rounding of the weights aside)
    assert (rc == 0) == (err <= 0.03 + 0.002) and ("已找到权重" in out) == (rc == 0)
    assert main(["appraise", "optimise-weights", "--quarter", Q, "--warehouse", str(built["warehouse"]),
                 "--target", "不存在的类别:1,满意度:1"]) == 2
