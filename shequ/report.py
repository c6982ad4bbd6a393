"""Quarterly report (季度评比报告): one self-contained HTML file per quarter.

``write_report("2024Q3")`` reads the published snapshot (``shequ.snapshot``) on a short-lived read-only
connection, or a read-only connection the caller passes, and writes ``data/reports/report_2024Q3.html``
(next to any other warehouse: ``<its folder>/reports/``). The page holds:

- headline figures: communities ranked, mean score, grades, titles per campaign and tier, checks passed,
  reporting and on-time rates, and whether the quarter has been published (公示) or is a preview;
- ranking tables at the three levels: districts within their city, streets within their district, and the top
  and bottom ``top_n`` communities of each district;
- titles and ties (``fact_award``: quota, position, 并列于配额线 ``tied_at_quota``, 统计上并列 ``tie_flag``);
- a bump chart of the district rank of each district's current top communities over every quarter up to this one;
- category profiles (radar) of the five best and the five worst communities of the quarter;
- the quality summary (completeness, validation violations by importance, open outlier flags, quarantine by
  reason, check results by suite);
- every community's explanation (``fact_explanation``) in a collapsible ``<details>`` grouped by district;
- 稳健性与方法: the titles whose Monte Carlo interval crosses the quota line with the assumption that moves each
  community's rank most (``analysis_sensitivity``), the Sobol indices of each assumption, the city ranks with their
  intervals, the framework as a sunburst, the correlation heatmap of the categories with the flagged pairs
  (``analysis_correlation``) and Cronbach's alpha / first-component share (``analysis_reliability``).

plotly.js is embedded inline once (``plotly.offline.get_plotlyjs()``); every figure is written without it. The
page makes no network request. Every text from the warehouse goes through ``html.escape``: in the tables (``esc``)
and in the charts (``shequ.chart_text.plain``: plotly.js draws labels, legends, ticks and hover text as a subset of
HTML, so a name holding ``<b>`` would turn bold and ``<a href>`` would become a link). Hover text from data is passed as ``text``/``customdata`` and never spliced into a ``hovertemplate``,
so ``%{x}`` in a name stays text. A Content-Security-Policy meta tag allows exactly the page's own inline scripts
and style (by sha256) and nothing else: no network, no other script, no plugin, no form, no base URL.
"""

import base64
import datetime as dt
import functools
import hashlib
import html
import json
import os
import re
import time
from pathlib import Path

import duckdb
import plotly.graph_objects as go
import plotly.io as pio
import polars as pl
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from . import config
from .chart_text import plain
from .periods import quarter_label
from .snapshot import read_only, source_path
from .warehouse import frame

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True, "locale": "zh-CN",
                 "modeBarButtonsToRemove": ["sendDataToCloud"]}
FONT = '"Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "Microsoft YaHei", "PingFang SC", sans-serif'
GRADES = ["优秀", "良好", "合格", "不合格"]
IMPORTANCE = ["HIGH", "MEDIUM", "LOW"]
IMPORTANCE_ZH = {"HIGH": "高", "MEDIUM": "中", "LOW": "低"}
KIND_ZH = {"veto": "一票否决", "strength": "优势", "weakness": "短板", "movement": "变动", "driver": "主要驱动指标"}
# plain-Chinese names for what section 6 shows (the warehouse's table and method names stay out of the page)
OUTLIER_METHOD_ZH = {"zscore": "与本社区往季均值相差过大（Z 分数）",
                     "modified_zscore": "与本社区往季中位数相差过大（稳健 Z 分数）",
                     "minmax": "超出指标的合理取值范围"}
SUITE_ZH = {"dim_community": "社区登记表", "dim_indicator": "指标目录", "stg_value": "读入的原始数值",
            "fact_indicator_value": "入库数值", "agg_indicator_value": "街道和区的汇总值",
            "validation_rules": "业务校验规则", "validation_violation": "校验结果记录",
            "quality_hold": "暂停评分的数值", "outlier_flag": "离群值记录", "completeness_report": "上报完整性统计",
            "fact_score": "得分", "fact_ranking": "排名", "fact_award": "称号"}
SCOPE_ZH = {"street": "街道内", "district": "区内", "city": "市内"}


class NoDataError(LookupError):
    """The quarter has no ranking for the scheme in the warehouse."""


def reports_dir(warehouse: str | os.PathLike | None = None) -> Path:
    """data/reports for the default warehouse; ``<folder of the warehouse>/reports`` for any other."""
    wh = config.warehouse_path(warehouse)
    if wh.resolve() == config.DEFAULT_WAREHOUSE.resolve():
        return config.DATA_DIR / "reports"
    return wh.parent / "reports"


def report_path(quarter: str, warehouse: str | os.PathLike | None = None) -> Path:
    return reports_dir(warehouse) / f"report_{quarter}.html"


# ------------------------------------------------------------------ html helpers
def esc(v) -> str:
    """Escaped text of a value; None -> an em dash."""
    if v is None:
        return "—"
    if isinstance(v, float):
        return html.escape(f"{v:.2f}")
    if isinstance(v, bool):
        return "是" if v else "否"
    return html.escape(str(v))


def pct(v) -> str:
    return "—" if v is None else f"{v * 100:.1f}%"


def table(headers: list[str], rows: list[list], cls: str = "") -> str:
    """An HTML table; every cell escaped (a cell given as ``("raw", html)`` is trusted markup we built)."""
    def cell(v):
        if isinstance(v, tuple) and v and v[0] == "raw":
            return f"<td>{v[1]}</td>"
        num = isinstance(v, (int, float)) and not isinstance(v, bool)
        return f'<td class="num">{esc(v)}</td>' if num else f"<td>{esc(v)}</td>"
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cell(v) for v in r) + "</tr>" for r in rows)
    if not rows:
        body = f'<tr><td colspan="{len(headers)}" class="empty">（无）</td></tr>'
    return f'<table class="{esc(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


@functools.cache
def _template() -> dict:
    """plotly_white as the JSON plotly writes for ``template="plotly_white"`` (same key order)."""
    return go.Figure(layout_template="plotly_white").to_dict()["layout"]["template"]


def figure_div(fig: go.Figure, div_id: str, top: int = 60) -> str:
    # Assigning a template to a figure validates the whole template every time (about 30 ms, 48 times per
    # sample refresh); the page needs only its JSON, so the validated template's JSON is spliced into the
    # figure's dict once computed. The HTML is byte-identical (tests/test_report_figures_identical_html.py).
    fig.update_layout(font_family=FONT, margin=dict(l=60, r=30, t=top, b=50))
    spec = fig.to_dict()
    spec["layout"]["template"] = _template()
    return pio.to_html(spec, full_html=False, include_plotlyjs=False, config=PLOTLY_CONFIG, div_id=div_id,
                       validate=False)


# ------------------------------------------------------------------ data
def _q(con, sql: str, params: dict) -> pl.DataFrame:
    """DuckDB refuses named parameters a query does not use: pass only those it names."""
    return frame(con, sql, {k: v for k, v in params.items() if f"${k}" in sql})


def load(con: duckdb.DuckDBPyConnection, quarter: str, scheme: str = "default") -> dict:
    """Everything the report shows, as polars frames and numbers, read from ``con`` (read-only use)."""
    p = {"q": quarter, "s": scheme}
    comm = _q(con, """
        SELECT r.entity_code AS code, r.entity_name AS name, c.street, c.street_code, c.district, c.district_code,
               c.city, r.score, r.score_rounded, r.grade, r.vetoes, r.eligibility_reason, r.coverage,
               max(r.rank) FILTER (WHERE r.scope_level = 'street') AS rank_street,
               max(r.rank) FILTER (WHERE r.scope_level = 'district') AS rank_district,
               max(r.n_ranked) FILTER (WHERE r.scope_level = 'district') AS n_district,
               max(r.rank) FILTER (WHERE r.scope_level = 'city') AS rank_city,
               max(r.n_ranked) FILTER (WHERE r.scope_level = 'city') AS n_city,
               max(r.rank_low) FILTER (WHERE r.scope_level = 'district') AS low_district,
               max(r.rank_high) FILTER (WHERE r.scope_level = 'district') AS high_district,
               max(r.rank_low) FILTER (WHERE r.scope_level = 'city') AS low_city,
               max(r.rank_high) FILTER (WHERE r.scope_level = 'city') AS high_city
        FROM fact_ranking r JOIN dim_community c USING (community_key)
        WHERE r.period_key = $q AND r.scheme_id = $s AND r.entity_level = 'community'
        GROUP BY ALL ORDER BY c.city, c.district, rank_district NULLS LAST, name""", p)
    if comm.height == 0:
        raise NoDataError(f"{quarter} 没有 {scheme} 方案的评比结果（先运行 shequ refresh）")
    areas = _q(con, """
        SELECT entity_level, entity_code AS code, entity_name AS name, scope_name, rank, n_ranked, score, grade,
               coverage, eligibility_reason, rank_low, rank_high
        FROM fact_ranking WHERE period_key = $q AND scheme_id = $s AND entity_level IN ('street', 'district')
        ORDER BY scope_name, rank NULLS LAST, name""", p)
    awards = _q(con, """
        SELECT a.campaign, a.tier, a.title, a.entity_code AS code, a.entity_name AS name, a.scope_level,
               a.scope_name, a.score, a.grade, a.quota, a.quota_position, a.n_candidates, a.tied_at_quota,
               a.rank_low, a.rank_high, a.tie_flag, c.street, c.district
        FROM fact_award a LEFT JOIN (SELECT DISTINCT community_code, street, district FROM dim_community) c
             ON c.community_code = a.entity_code
        WHERE a.period_key = $q AND a.scheme_id = $s
        ORDER BY CASE a.campaign WHEN '示范社区' THEN 0 WHEN '平安社区' THEN 1 ELSE 2 END,
                 CASE a.tier WHEN '省级' THEN 0 WHEN '市级' THEN 1 ELSE 2 END, a.scope_name, a.quota_position""", p)
    bump = _q(con, """
        SELECT r.period_key, r.entity_code AS code, r.entity_name AS name, r.scope_name AS district, r.rank
        FROM fact_ranking r
        WHERE r.scheme_id = $s AND r.entity_level = 'community' AND r.scope_level = 'district'
          AND r.period_key <= $q AND r.period_key LIKE '____Q_'
        ORDER BY r.period_key""", p)
    cats = _q(con, """
        SELECT entity_code AS code, node_code AS category, score FROM fact_score
        WHERE period_key = $q AND scheme_id = $s AND entity_level = 'community' AND node_level = 'category'
          AND stage = (SELECT max(stage) FROM fact_ranking WHERE period_key = $q AND scheme_id = $s
                       AND entity_level = 'community')""", p)
    expl = _q(con, """
        SELECT entity_code AS code, kind, position, node_code, value, detail FROM fact_explanation
        WHERE period_key = $q AND scheme_id = $s ORDER BY code, kind, position""", p)
    completeness = _q(con, """
        SELECT level, area_code, area_name, expected, received, reporting_rate, on_time, on_time_rate,
               expected_values, received_values, value_rate, due_date
        FROM completeness_report WHERE period_key = $q AND level IN ('city', 'district')
        ORDER BY level, area_code""", p)
    violations = _q(con, """
        SELECT importance, entity_level, count(*) AS n FROM validation_violation WHERE period_key = $q
        GROUP BY ALL""", p)
    held = _q(con, "SELECT count(*) AS n FROM quality_hold WHERE period_key = $q", p)["n"][0]
    outliers = _q(con, """
        SELECT method, count(*) FILTER (WHERE followup_status = 'open') AS open, count(*) AS total
        FROM outlier_flag WHERE period_key = $q GROUP BY 1 ORDER BY 1""", p)
    quarantine = _q(con, """
        SELECT q.reason_code AS reason, count(*) AS n, count(DISTINCT q.source_file) AS files,
               any_value(q.message) AS example
        FROM quarantine q LEFT JOIN raw_file f USING (file_id)
        WHERE q.period_key = $q OR (q.period_key IS NULL AND list_contains(f.period_keys, $q))
        GROUP BY 1 ORDER BY 2 DESC, 1""", p)
    checks = _q(con, """
        SELECT suite, count(*) AS total, count(*) FILTER (WHERE success) AS passed,
               count(*) FILTER (WHERE NOT success AND severity = 'critical') AS failed_critical,
               string_agg(CASE WHEN NOT success THEN expectation END, '；') AS failed
        FROM check_result WHERE period_key = $q GROUP BY 1 ORDER BY 1""", p)
    manual = _manual_inputs(con, p)
    from . import vetoes
    from .appraisal.store import publication_status

    pub = publication_status(con, quarter, scheme)
    sdef = vetoes.scheme_for(scheme)
    return {"quarter": quarter, "scheme": scheme, "scheme_name": (sdef.name if sdef is not None else "") or scheme,
            "veto_rules": vetoes.rules_text(sdef), "grade_rules": vetoes.grades_text(sdef),
            "vetoes": vetoes.explanations(con, quarter, scheme), "communities": comm, "areas": areas, "awards": awards,
            "bump": bump, "categories": cats, "explanations": expl, "completeness": completeness,
            "violations": violations, "held": int(held), "outliers": outliers, "quarantine": quarantine,
            "checks": checks, "publication": pub, **manual,
            **load_robustness(con, quarter, scheme)}


def _manual_inputs(con, p: dict) -> dict:
    """The quarter's manual corrections and bonus events with their audit columns (all of them, revoked too:
    the report shows what was changed by hand and what was taken back). Empty on a warehouse without the
    tables (a snapshot older than migration 0005)."""
    have = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables WHERE table_name IN "
                                      "('manual_correction', 'manual_bonus')").fetchall()}
    out = {"corrections": pl.DataFrame(), "bonuses": pl.DataFrame()}
    names = "(SELECT community_code, arg_max(name, valid_from) AS name, arg_max(street, valid_from) AS street " \
            "FROM dim_community GROUP BY 1)"
    if "manual_correction" in have:
        out["corrections"] = _q(con, f"""
            SELECT m.correction_id, n.name, n.street, m.community_code, coalesce(i.name_zh, m.indicator_code) AS indicator,
                   i.unit, m.previous_value, m.previous_source, m.value, m.raw_text, m.reason, m.recorded_by,
                   m.recorded_at, m.active, m.superseded_by, m.revoked_by, m.revoked_at, m.revoke_reason
            FROM manual_correction m LEFT JOIN {names} n USING (community_code)
            LEFT JOIN dim_indicator i USING (indicator_code)
            WHERE m.period_key = $q ORDER BY m.correction_id""", p)
    if "manual_bonus" in have:
        out["bonuses"] = _q(con, f"""
            SELECT b.bonus_id, n.name, n.street, b.community_code, b.points, b.reason, b.document, b.recorded_by,
                   b.recorded_at, b.active, b.revoked_by, b.revoked_at, b.revoke_reason
            FROM manual_bonus b LEFT JOIN {names} n USING (community_code)
            WHERE b.period_key = $q ORDER BY b.bonus_id""", p)
    return out


def _num(v) -> str:
    return "—" if v is None else f"{v:g}"


def _manual_section(d: dict) -> str:
    """八、人工更正与加分: every correction and bonus event of the quarter, who, when, why, previous value."""
    out = ['<h2 id="manual">八、人工更正与加分</h2>',
           "<p>人工更正优先于文件中的数值（刷新该季度时生效）；人工加分与方案中的加分项一起计入并受加分封顶约束。"
           "记录从不删除：撤销或被新更正取代的记录也列在这里。时间为北京时间。</p>"]
    c, b = d.get("corrections"), d.get("bonuses")
    out.append("<h3>人工更正</h3>")
    if c is None or not c.height:
        out.append("<p>本季度没有人工更正。</p>")
    else:
        out.append(table(["编号", "社区", "指标", "原值", "原值来源", "更正值", "原因", "更正人", "时间", "状态"],
                         [[f"#{r['correction_id']}", f"{r['name']}（{r['street']}）", r["indicator"],
                           _num(r["previous_value"]), r["previous_source"] or "—",
                           f"{_num(r['value'])}（填写：{r['raw_text']}）", r["reason"], r["recorded_by"],
                           str(r["recorded_at"]),
                           "生效" if r["active"] else (f"被 #{r['superseded_by']} 取代" if r["superseded_by"] else
                                                      f"已撤销：{r['revoked_by']}，{r['revoked_at']}，{r['revoke_reason']}")]
                          for r in c.iter_rows(named=True)], "manual-corrections"))
    out.append("<h3>人工加分</h3>")
    if b is None or not b.height:
        out.append("<p>本季度没有人工加分。</p>")
    else:
        out.append(table(["编号", "社区", "分值", "事由", "文号", "录入人", "时间", "状态"],
                         [[f"#{r['bonus_id']}", f"{r['name']}（{r['street']}）", f"+{_num(r['points'])}", r["reason"],
                           r["document"] or "—", r["recorded_by"], str(r["recorded_at"]),
                           "生效" if r["active"] else f"已撤销：{r['revoked_by']}，{r['revoked_at']}，{r['revoke_reason']}"]
                          for r in b.iter_rows(named=True)], "manual-bonuses"))
    return "\n".join(out)


def _has_table(con, name: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                            [name]).fetchall()[0][0])


def load_robustness(con: duckdb.DuckDBPyConnection, quarter: str, scheme: str = "default") -> dict:
    """The robustness analysis of the quarter (analysis_* tables; empty frames in a warehouse without them):
    sensitivity of the rank shift and of each community's rank, correlations and reliability, and the framework
    (each indicator's mean effective share of the index, under its category)."""
    p = {"q": quarter, "s": scheme}
    out = {"sensitivity": pl.DataFrame(), "sensitivity_units": pl.DataFrame(), "correlation": pl.DataFrame(),
           "reliability": pl.DataFrame()}
    if _has_table(con, "analysis_sensitivity"):
        out["sensitivity"] = _q(con, """
            SELECT factor, factor_label, si, sti, si_low, si_high, sti_low, sti_high, sti_half, n_base, n_runs, n_boot
            FROM analysis_sensitivity WHERE period_key = $q AND scheme_id = $s AND target = 'rank_shift'
            ORDER BY sti DESC NULLS LAST""", p)
        out["sensitivity_units"] = _q(con, """
            SELECT entity_code AS code, factor, factor_label, sti FROM analysis_sensitivity
            WHERE period_key = $q AND scheme_id = $s AND target = 'rank'""", p)
    if _has_table(con, "analysis_correlation"):
        out["correlation"] = _q(con, """
            SELECT a.kind, a.node_a, coalesce(ia.name_zh, a.node_a) AS name_a, a.node_b,
                   coalesce(ib.name_zh, a.node_b) AS name_b, a.parent_code, a.level, a.r, a.flag
            FROM analysis_correlation a LEFT JOIN dim_indicator ia ON ia.indicator_code = a.node_a
                 LEFT JOIN dim_indicator ib ON ib.indicator_code = a.node_b
            WHERE a.period_key = $q AND a.scheme_id = $s AND a.method = 'pearson'""", p)
    if _has_table(con, "analysis_reliability"):
        out["reliability"] = _q(con, """
            SELECT node_code, level, n_children, n_units, cronbach_alpha, pc1_share FROM analysis_reliability
            WHERE period_key = $q AND scheme_id = $s ORDER BY level DESC, node_code""", p)
    out["framework"] = _q(con, """
        WITH w AS (
            SELECT node_code, avg(weight) AS share FROM fact_score
            WHERE period_key = $q AND scheme_id = $s AND entity_level = 'community' AND node_level = 'indicator'
              AND stage = (SELECT max(stage) FROM fact_ranking WHERE period_key = $q AND scheme_id = $s
                           AND entity_level = 'community')
            GROUP BY 1)
        SELECT w.node_code AS code, coalesce(i.name_zh, w.node_code) AS name, coalesce(i.category, '其他') AS category,
               w.share FROM w LEFT JOIN dim_indicator i ON i.indicator_code = w.node_code
        WHERE w.share > 0 ORDER BY category, code""", p)
    return out


def headline(d: dict) -> dict:
    """The headline numbers (also returned by write_report, and asserted by the tests)."""
    comm = d["communities"]
    ranked = comm.filter(pl.col("rank_district").is_not_null())
    city = d["completeness"].filter(pl.col("level") == "city")
    exp, rec, ont = (int(city[c].sum()) if city.height else 0 for c in ("expected", "received", "on_time"))
    aw = d["awards"]
    return {
        "communities": comm.height,
        "ranked": ranked.height,
        "mean_score": round(float(ranked["score"].mean()), 2) if ranked.height else None,
        "grades": {g: int((ranked["grade"] == g).sum()) for g in GRADES},
        "titles": aw.height,
        "titles_by": {(r["campaign"], r["tier"]): r["n"] for r in
                      aw.group_by("campaign", "tier").agg(pl.len().alias("n")).iter_rows(named=True)},
        "tie_flag": int(aw["tie_flag"].fill_null(False).sum()) if aw.height else 0,
        "tied_at_quota": int(aw["tied_at_quota"].sum()) if aw.height else 0,
        "checks_total": int(d["checks"]["total"].sum()) if d["checks"].height else 0,
        "checks_passed": int(d["checks"]["passed"].sum()) if d["checks"].height else 0,
        "reporting_rate": rec / exp if exp else None,
        "on_time_rate": ont / exp if exp else None,
        "vetoed": d["vetoes"].height,
        "vetoed_first": d["vetoes"].filter(pl.col("rank") == 1).height,
        "published": d["publication"]["version_id"] if d["publication"] else None,
        "published_matches": d["publication"]["matches_live"] if d["publication"] else None,
    }


# ------------------------------------------------------------------ sections
def _cards(h: dict) -> str:
    titles = "；".join(f"{t}{c} {n}" for (c, t), n in sorted(h["titles_by"].items())) or "无"
    pub = f"已公示（版本 {h['published']}）" if h["published"] else "未发布（预览）"
    if h["published"] and not h["published_matches"]:
        pub += "；当前结果与公示版本不同"
    cards = [
        ("参评社区", f"{h['ranked']} / {h['communities']}", "已排名 / 全部社区"),
        ("平均得分", "—" if h["mean_score"] is None else f"{h['mean_score']:.2f}", "已排名社区的综合得分均值"),
        ("等次", "，".join(f"{g} {n}" for g, n in h["grades"].items()), "已排名社区"),
        ("称号", f"{h['titles']} 个", titles),
        ("一票否决", f"{h['vetoed']} 个社区", f"其中 {h['vetoed_first']} 个仍列区内第 1 名：否决只降等次或取消评优资格，"
                                              "不改变名次（见“等次与一票否决”）"),
        ("统计上并列", f"{h['tie_flag']} 个", f"蒙特卡洛名次区间跨过配额线；配额线上并列入选 {h['tied_at_quota']} 个"),
        ("检查通过", f"{h['checks_passed']} / {h['checks_total']}", "本季度全部质量检查项"),
        ("上报率", pct(h["reporting_rate"]), f"及时率 {pct(h['on_time_rate'])}"),
        ("公示状态", pub, ""),
    ]
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="k">{esc(k)}</div><div class="v">{esc(v)}</div>'
        f'<div class="n">{esc(n)}</div></div>' for k, v, n in cards) + "</div>"


def _rank_interval(lo, hi) -> str:
    if lo is None or hi is None:
        return "—"
    return f"{lo:.0f}–{hi:.0f}"


def _ranking_sections(d: dict, top_n: int) -> str:
    areas = d["areas"]
    out = ["<h2 id=\"rank\">二、排名</h2>", "<h3>区（市内排名）</h3>"]
    dist = areas.filter(pl.col("entity_level") == "district")
    # streets and districts carry a Monte Carlo interval only when the scheme computes one for areas
    mc = areas["rank_low"].is_not_null().any()
    iv = ["名次区间（5%–95%）"] if mc else []
    out.append(table(["市", "名次", "区", "得分", "等次", "参评社区占比", *iv, "未参评原因"],
                     [[r["scope_name"], r["rank"], r["name"], r["score"], r["grade"], pct(r["coverage"])]
                      + ([_rank_interval(r["rank_low"], r["rank_high"])] if mc else []) + [r["eligibility_reason"]]
                      for r in dist.iter_rows(named=True)], "rank"))
    out.append("<h3>街道（区内排名）</h3>")
    st = areas.filter(pl.col("entity_level") == "street")
    out.append(table(["区", "名次", "参评数", "街道", "得分", "等次", "参评社区占比", *iv, "未参评原因"],
                     [[r["scope_name"], r["rank"], r["n_ranked"], r["name"], r["score"], r["grade"], pct(r["coverage"])]
                      + ([_rank_interval(r["rank_low"], r["rank_high"])] if mc else []) + [r["eligibility_reason"]]
                      for r in st.iter_rows(named=True)], "rank"))
    out.append(f"<h3>社区（区内排名：各区前 {top_n} 名与后 {top_n} 名）</h3>")
    comm = d["communities"]
    headers = ["区内名次", "社区", "街道", "得分", "等次", "街道内名次", "市内名次", "区内名次区间（5%–95%）", "否决项"]
    for (district,), g in comm.group_by("district", maintain_order=True):
        ranked = g.filter(pl.col("rank_district").is_not_null()).sort("rank_district", "name")
        unranked = g.filter(pl.col("rank_district").is_null())
        n = ranked.height
        picks = ranked if n <= 2 * top_n else pl.concat([ranked.head(top_n), ranked.tail(top_n)])
        rows = []
        for i, r in enumerate(picks.iter_rows(named=True)):
            if n > 2 * top_n and i == top_n:
                rows.append([("raw", '<span class="gap">⋯</span>')] + [""] * (len(headers) - 1))
            rows.append([r["rank_district"], r["name"], r["street"], r["score"], r["grade"], r["rank_street"],
                         r["rank_city"], _rank_interval(r["low_district"], r["high_district"]), r["vetoes"]])
        out.append(f"<h4>{esc(district)}（参评 {n} 个社区"
                   + (f"，未参评 {unranked.height} 个" if unranked.height else "") + "）</h4>")
        out.append(table(headers, rows, "rank"))
        if unranked.height:
            out.append(table(["社区", "街道", "未参评原因"],
                             [[r["name"], r["street"], r["eligibility_reason"]] for r in unranked.iter_rows(named=True)]))
    return "\n".join(out)


def _veto_section(d: dict) -> str:
    """等次与一票否决 in plain Chinese: how grades are given, what each veto does, why a vetoed community keeps
    its rank, and every vetoed community of the quarter with its explanation (fact_explanation)."""
    v = d["vetoes"]
    out = ['<h3 id="vetoes">等次与一票否决</h3>', f"<p>{esc(d['grade_rules'])}</p>", f"<p>{esc(d['veto_rules'])}</p>"]
    if not v.height:
        return "\n".join(out + ["<p>本季度没有社区触及一票否决。</p>"])
    first = v.filter(pl.col("rank") == 1).height
    out.append(f"<p>本季度 <b>{v.height}</b> 个社区触及一票否决，其中 <b>{first}</b> 个仍列所在区第 1 名。</p>")
    out.append(table(["区", "区内名次", "社区", "等次", "否决项", "说明"],
                     [[r["district"], r["rank"], r["name"], r["grade"], r["vetoes"], r["detail"]]
                      for r in v.iter_rows(named=True)], "vetoes"))
    return "\n".join(out)


def _award_sections(d: dict) -> str:
    aw = d["awards"]
    out = ['<h2 id="titles">三、称号与并列</h2>',
           "<p>配额位次：在该范围全部合格候选中的位次；<b>配额线并列</b>：与配额内最后一名同分而入选；"
           "<b>统计上并列</b>：蒙特卡洛名次区间（5%–95%）跨过配额线，名次对权重与方法的选择敏感。</p>"]
    if aw.height == 0:
        return "\n".join(out + ["<p>本季度无称号。</p>"])
    quota = (aw.group_by("campaign", "tier", "scope_name", maintain_order=True)
             .agg(pl.col("quota").first(), pl.len().alias("n"), pl.col("n_candidates").first(),
                  pl.col("tied_at_quota").sum().alias("tied"), pl.col("tie_flag").fill_null(False).sum().alias("tf")))
    out.append("<h3>配额与入选</h3>")
    out.append(table(["创建", "层级", "范围", "配额", "入选", "候选数", "配额线并列入选", "统计上并列"],
                     [[r["campaign"], r["tier"], r["scope_name"], r["quota"], r["n"], r["n_candidates"], r["tied"],
                       r["tf"]] for r in quota.iter_rows(named=True)]))
    for (campaign,), g in aw.group_by("campaign", maintain_order=True):
        out.append(f"<h3>{esc(campaign)}</h3>")
        rows = [[r["title"], r["name"], r["street"], r["district"], r["scope_name"], r["score"], r["grade"],
                 f"{r['quota_position']} / {r['quota']}",
                 "是" if r["tied_at_quota"] else "",
                 _rank_interval(r["rank_low"], r["rank_high"]),
                 ("raw", '<span class="tie">统计上并列</span>') if r["tie_flag"] else ""]
                for r in g.iter_rows(named=True)]
        out.append(table(["称号", "社区", "街道", "区", "评比范围", "得分", "等次", "配额位次", "配额线并列",
                          "名次区间（5%–95%）", "标注"], rows, "awards"))
    return "\n".join(out)


def bump_figure(d: dict, per_district: int = 3) -> go.Figure:
    """District rank across the quarters up to this one of each district's current top ``per_district``."""
    comm = d["communities"].filter(pl.col("rank_district") <= per_district).sort("district", "rank_district")
    bump = d["bump"]
    quarters = sorted(bump["period_key"].unique().to_list())
    fig = go.Figure()
    for r in comm.iter_rows(named=True):
        s = bump.filter(pl.col("code") == r["code"]).sort("period_key")
        ranks = dict(zip(s["period_key"], s["rank"]))
        label = plain(f"{r['name']}（{r['district']}）")
        fig.add_trace(go.Scatter(
            x=[quarter_label(q) for q in quarters], y=[ranks.get(q) for q in quarters], mode="lines+markers",
            name=label, connectgaps=False, text=[label] * len(quarters),
            # the name comes in through %{text}: spliced into the template, a %{x} inside it would be filled in
            hovertemplate="%{text}<br>%{x}：区内第 %{y} 名<extra></extra>"))
    fig.update_layout(title=f"{quarter_label(d['quarter'])} 各区前 {per_district} 名社区的区内名次变化",
                      xaxis_title="季度", yaxis_title="区内名次", height=520, legend_title_text="社区（区）")
    worst = bump.filter(pl.col("code").is_in(comm["code"].to_list()))["rank"].max() or 1
    fig.update_yaxes(range=[worst + 0.5, 0.5], dtick=1 if worst <= 20 else 5)
    return fig


def profile_picks(d: dict, n: int = 5) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The ``n`` best and ``n`` worst ranked communities of the quarter by rounded score (name breaks ties)."""
    ranked = d["communities"].filter(pl.col("rank_district").is_not_null())
    top = ranked.sort(["score_rounded", "name"], descending=[True, False]).head(n)
    bottom = ranked.sort(["score_rounded", "name"], descending=[False, False]).head(n)
    return top, bottom


def profile_figure(d: dict, n: int = 5) -> go.Figure:
    top, bottom = profile_picks(d, n)
    cats = d["categories"]
    order = sorted(cats["category"].unique().to_list())
    fig = make_subplots(rows=1, cols=2, specs=[[{"type": "polar"}, {"type": "polar"}]],
                        subplot_titles=[f"得分最高的 {n} 个社区", f"得分最低的 {n} 个社区"])
    for col, picks in ((1, top), (2, bottom)):
        for r in picks.iter_rows(named=True):
            s = dict(cats.filter(pl.col("code") == r["code"]).select("category", "score").iter_rows())
            vals = [s.get(c) for c in order]
            theta = [plain(c) for c in order]
            fig.add_trace(go.Scatterpolar(r=vals + vals[:1], theta=theta + theta[:1], mode="lines+markers",
                                          name=plain(f"{r['name']}（{r['district']}，{r['score']:.2f}）"),
                                          legendgroup=str(col)), row=1, col=col)
    fig.update_polars(radialaxis_range=[0, 100])
    fig.for_each_annotation(lambda a: a.update(y=a.y + 0.07, font_size=14))
    fig.update_layout(title=f"{quarter_label(d['quarter'])} 领先与落后社区的类别得分（0–100）", height=660,
                      legend=dict(orientation="h", y=-0.08))
    return fig


def district_figure(d: dict) -> go.Figure:
    ranked = d["communities"].filter(pl.col("rank_district").is_not_null())
    fig = go.Figure()
    for (district,), g in ranked.group_by("district", maintain_order=True):
        fig.add_trace(go.Box(y=g["score"].to_list(), name=plain(district), boxpoints="all", jitter=0.4,
                             text=[plain(n) for n in g["name"]], hovertemplate="%{text}：%{y:.2f}<extra></extra>"))
    fig.update_layout(title=f"{quarter_label(d['quarter'])} 各区社区综合得分分布", yaxis_title="综合得分（0–100）",
                      xaxis_title="区", showlegend=False, height=420)
    return fig


def _profile_table(d: dict, n: int) -> str:
    top, bottom = profile_picks(d, n)
    cats = d["categories"]
    order = sorted(cats["category"].unique().to_list())
    rows = []
    for label, picks in (("领先", top), ("落后", bottom)):
        for r in picks.iter_rows(named=True):
            s = dict(cats.filter(pl.col("code") == r["code"]).select("category", "score").iter_rows())
            rows.append([label, r["name"], r["district"], r["score"]] +
                        [None if s.get(c) is None else round(s[c], 1) for c in order])
    return table(["", "社区", "区", "综合得分", *order], rows, "profile")


def framework_figure(d: dict) -> go.Figure:
    """The framework as a sunburst: index -> categories -> indicators, sized by each indicator's mean effective
    share of the index (weights re-normalised over the children with data, as fact_score records them)."""
    fw = d["framework"]
    ids, labels, parents, values = ["root"], ["综合指数"], [""], [float(fw["share"].sum()) if fw.height else 0.0]
    for (cat,), g in fw.group_by("category", maintain_order=True):
        ids.append(f"c:{cat}")
        labels.append(plain(cat))
        parents.append("root")
        values.append(float(g["share"].sum()))
        for r in g.iter_rows(named=True):
            ids.append(f"i:{r['code']}")
            labels.append(plain(r["name"]))
            parents.append(f"c:{cat}")
            values.append(float(r["share"]))
    # "remainder": a parent's own value (0) plus its children, so rounding in the sums cannot hide a branch
    sizes = [v if i.startswith("i:") else 0.0 for i, v in zip(ids, values)]
    fig = go.Figure(go.Sunburst(ids=ids, labels=labels, parents=parents, values=sizes, branchvalues="remainder",
                                text=[f"{v * 100:.1f}%" for v in values],
                                hovertemplate="%{label}：占综合指数 %{text}<extra></extra>"))
    fig.update_layout(title=f"{quarter_label(d['quarter'])} 评价框架（扇区大小 = 实际权重）", height=620)
    return fig


def correlation_figure(d: dict) -> go.Figure:
    """Heatmap of the correlations between the categories (siblings under the index), ranked communities."""
    c = d["correlation"]
    top = c.filter(pl.col("kind") == "within")
    if top.height:
        top = top.filter(pl.col("level") == top["level"].max())
    names = sorted(set(top["name_a"].to_list()) | set(top["name_b"].to_list())) if top.height else []
    pos = {n: i for i, n in enumerate(names)}
    z = [[1.0 if i == j else None for j in range(len(names))] for i in range(len(names))]
    for r in top.iter_rows(named=True):
        i, j = pos[r["name_a"]], pos[r["name_b"]]
        z[i][j] = z[j][i] = None if r["r"] is None else round(r["r"], 2)
    labels = [plain(n) for n in names]
    fig = go.Figure(go.Heatmap(z=z, x=labels, y=labels, zmin=-1, zmax=1, colorscale="RdBu", reversescale=False,
                               text=[[("—" if v is None else f"{v:.2f}") for v in row] for row in z],
                               texttemplate="%{text}", hovertemplate="%{y} 与 %{x}：r = %{text}<extra></extra>",
                               colorbar=dict(title="相关系数")))
    fig.update_layout(title=f"{quarter_label(d['quarter'])} 各类别得分之间的相关（皮尔逊）", height=640,
                      yaxis=dict(autorange="reversed"))
    return fig


def uncertainty_figure(d: dict) -> go.Figure:
    """Each ranked community's city rank with its Monte Carlo interval (5%-95%), by city (COINr plot_uncertainty)."""
    comm = d["communities"].filter(pl.col("rank_city").is_not_null()).sort("city", "rank_city")
    fig = go.Figure()
    for (city,), g in comm.group_by("city", maintain_order=True):
        lo = [None if a is None or b is None else b - a for a, b in zip(g["low_city"], g["rank_city"])]
        hi = [None if a is None or b is None else a - b for a, b in zip(g["high_city"], g["rank_city"])]
        fig.add_trace(go.Scatter(
            x=g["rank_city"].to_list(), y=g["rank_city"].to_list(), mode="markers", name=plain(city),
            error_y=dict(type="data", array=hi, arrayminus=lo, thickness=1, width=0),
            text=[plain(f"{n}（{dd}）") for n, dd in zip(g["name"], g["district"])],
            customdata=[[_rank_interval(a, b)] for a, b in zip(g["low_city"], g["high_city"])],
            hovertemplate="%{text}<br>市内第 %{x} 名，区间 %{customdata[0]}<extra></extra>"))
    fig.update_layout(title=f"{quarter_label(d['quarter'])} 市内名次与蒙特卡洛区间（5%–95%）", height=520,
                      xaxis_title="市内名次（公布）", yaxis_title="名次（竖线：区间）", legend_title_text="市")
    fig.update_yaxes(autorange="reversed")
    return fig


def _robustness_section(d: dict, divs: dict) -> str:
    out = ['<h2 id="robust">九、稳健性与方法</h2>',
           "<p>评比结果取决于若干方法选择：异常值处理深度、标准化方法、类别权重和汇总方法。本节说明这些选择对名次的影响，"
           "哪些社区的称号会因选择不同而改变，以及各类别之间的相关与内部一致性。方法见 docs/robustness.md。</p>",
           "<h3>称号是否取决于权重与方法的选择</h3>"]
    aw = d["awards"]
    su = d["sensitivity_units"]
    top_factor, weight_sti = {}, {}
    if su.height:
        for (code,), g in su.filter(pl.col("sti").is_not_null()).group_by("code"):
            best = g.sort("sti", descending=True).row(0, named=True)
            top_factor[code] = best["factor_label"]
            w = g.filter(pl.col("factor") == "Weights")
            weight_sti[code] = w["sti"][0] if w.height else None
    dep = aw.filter(pl.col("tie_flag").fill_null(False)) if aw.height else aw
    if aw.height:
        out.append(f"<p>本季度 {aw.height} 个称号中，{dep.height} 个的蒙特卡洛名次区间（5%–95%）跨过配额线："
                   "换一组合理的权重或方法，这些社区可能落选，配额线外的社区可能入选。"
                   "“对名次影响最大的假设”取自敏感性分析中该社区名次的总效应指数。</p>")
        out.append(table(["称号", "社区", "区", "评比范围", "配额位次", "名次区间（5%–95%）", "对名次影响最大的假设",
                          "权重的总效应指数"],
                         [[r["title"], r["name"], r["district"], r["scope_name"], f"{r['quota_position']} / {r['quota']}",
                           _rank_interval(r["rank_low"], r["rank_high"]), top_factor.get(r["code"]),
                           None if weight_sti.get(r["code"]) is None else round(weight_sti[r["code"]], 2)]
                          for r in dep.iter_rows(named=True)], "awards"))
    else:
        out.append("<p>本季度无称号。</p>")
    out.append("<h3>各项假设对名次的影响</h3>")
    sa = d["sensitivity"]
    if sa.height:
        r0 = sa.row(0, named=True)
        out.append(f"<p>敏感性分析：按方案中声明的不确定假设重算 {r0['n_runs']} 次（基础样本 N = {r0['n_base']}），"
                   "输出为全部参评社区市内名次相对公布名次的平均变动。一阶指数 = 只改变该假设时名次变动的方差份额；"
                   "总效应指数 = 含与其他假设交互作用的份额。区间为自助法 5%–95%"
                   f"（{r0['n_boot']} 次）；“半样本总效应”接近全样本时说明样本量已足够。</p>")
        out.append(table(["假设", "一阶指数", "一阶区间", "总效应指数", "总效应区间", "半样本总效应"],
                         [[r["factor_label"], _num3(r["si"]), _iv(r["si_low"], r["si_high"]), _num3(r["sti"]),
                           _iv(r["sti_low"], r["sti_high"]), _num3(r["sti_half"])] for r in sa.iter_rows(named=True)]))
    else:
        out.append("<p>本季度尚未做敏感性分析（资产 analysis_sensitivity 未运行）。</p>")
    out.append("<h3>名次的不确定区间</h3>")
    out.append(divs["fig_uncertainty"])
    out.append("<h3>评价框架</h3>")
    out.append(divs["fig_framework"])
    out.append("<h3>类别之间的相关</h3>")
    out.append(divs["fig_corr"])
    c = d["correlation"]
    flagged = c.filter(pl.col("flag").is_not_null()) if c.height else c
    zh = {"collinear": "高度相关（r > 0.9，可能重复计分）", "negative": "负相关（r < −0.4，可能相互抵消）"}
    out.append("<p>提示的指标对：同一上级之下相关系数高于 0.9 或低于 −0.4（COINr 的阈值）。</p>")
    out.append(table(["上级", "指标甲", "指标乙", "相关系数", "提示"],
                     [[r["parent_code"], r["name_a"], r["name_b"], _num3(r["r"]), zh.get(r["flag"], r["flag"])]
                      for r in flagged.sort("parent_code", "r").iter_rows(named=True)] if flagged.height else []))
    rel = d["reliability"]
    out.append("<p>内部一致性：克龙巴赫 α（0.7 以上通常视为一致）与第一主成分解释的方差份额。</p>")
    out.append(table(["类别/指数", "下级个数", "参与计算的社区", "克龙巴赫 α", "第一主成分份额"],
                     [["综合指数" if r["level"] == rel["level"].max() else r["node_code"], r["n_children"],
                       r["n_units"], _num3(r["cronbach_alpha"]), pct(r["pc1_share"])]
                      for r in rel.iter_rows(named=True)] if rel.height else []))
    return "\n".join(out)


def _num3(v) -> str:
    """Robustness statistics (indices, correlations, alpha) to three decimals."""
    return "—" if v is None else f"{v:.3f}"


def _iv(lo, hi) -> str:
    return "—" if lo is None or hi is None else f"{lo:.3f} – {hi:.3f}"


def _quality_section(d: dict) -> str:
    out = ['<h2 id="quality">六、数据是否齐全可信</h2>', "<h3>上报完整性与及时性</h3>"]
    c = d["completeness"]
    out.append(table(["层级", "地区", "应报社区", "已报社区", "上报率", "及时报送", "及时率", "应报数值", "已报数值",
                      "数值完整率", "截止日期"],
                     [["市" if r["level"] == "city" else "区", r["area_name"], r["expected"], r["received"],
                       pct(r["reporting_rate"]), r["on_time"], pct(r["on_time_rate"]), r["expected_values"],
                       r["received_values"], pct(r["value_rate"]), str(r["due_date"])]
                      for r in c.iter_rows(named=True)]))
    v = d["violations"]
    by_imp = {i: int(v.filter(pl.col("importance") == i)["n"].sum()) for i in IMPORTANCE}
    out.append("<h3>校验规则发现的问题</h3>")
    out.append("<p>校验规则检查数值之间是否矛盾（例如已成立业委会的小区数不能多于住宅小区数）。"
               "重要性为“高”的问题，有关数值暂不参与评分，核实后再计入。</p>")
    out.append(table(["重要性", "问题数", "其中社区", "街道", "区"],
                     [[IMPORTANCE_ZH[i], by_imp[i]] +
                      [int(v.filter((pl.col("importance") == i) & (pl.col("entity_level") == lv))["n"].sum())
                       for lv in ("community", "street", "district")] for i in IMPORTANCE]))
    out.append(f"<p>因重要性为“高”的问题暂不参与评分的数值：<b>{d['held']}</b> 个。</p>")
    o = d["outliers"]
    out.append("<h3>需要核实的异常数值</h3>")
    out.append(f"<p>待核实的离群值：<b>{int(o['open'].sum()) if o.height else 0}</b> 个"
               f"（共标记 {int(o['total'].sum()) if o.height else 0} 个）。离群值只标记、待核实，不删除，也不影响评分。</p>")
    out.append(table(["发现方式", "待核实", "全部标记"],
                     [[OUTLIER_METHOD_ZH.get(r["method"], r["method"]), r["open"], r["total"]]
                      for r in o.iter_rows(named=True)]))
    qz = d["quarantine"]
    from .cli import reason_labels

    labels = reason_labels()
    out.append("<h3>没有入库的单元格与文件（按原因）</h3>")
    out.append(table(["原因", "原因代码", "单元格/文件数", "涉及文件", "示例说明"],
                     [[labels.get(r["reason"], r["reason"]), r["reason"], r["n"], r["files"], r["example"]]
                      for r in qz.iter_rows(named=True)]))
    ch = d["checks"]
    out.append("<h3>自动质量检查（按检查对象）</h3>")
    out.append(table(["检查对象", "检查项", "通过", "未通过", "其中须处理后才能发布", "未通过的检查项"],
                     [[SUITE_ZH.get(r["suite"], r["suite"]), r["total"], r["passed"], r["total"] - r["passed"],
                       r["failed_critical"], r["failed"]] for r in ch.iter_rows(named=True)]))
    return "\n".join(out)


def _explanation_section(d: dict) -> str:
    out = ['<h2 id="explain">七、各社区得分解释</h2>',
           "<p>一票否决：触及的否决项、数值、后果，以及为什么名次不变；优势/短板：与本区中位数相差最大的类别；"
           "变动：综合得分与区内名次较上季度的变化；主要驱动指标：贡献变化最大的三个指标。点击展开。</p>"]
    # the detail lines of each (community, kind) in position order, gathered in one pass (a filter per
    # community and kind cost about 0.3 s per report)
    texts: dict[tuple, list] = {}
    for code, kind, detail in d["explanations"].sort("position", maintain_order=True).select(
            "code", "kind", "detail").iter_rows():
        texts.setdefault((code, kind), []).append(detail)
    for (district,), g in d["communities"].group_by("district", maintain_order=True):
        g = g.sort("rank_district", "name", nulls_last=True)
        inner = []
        for r in g.iter_rows(named=True):
            parts = []
            for kind in ("veto", "strength", "weakness", "movement", "driver"):
                rows = texts.get((r["code"], kind), [])
                if rows:
                    parts.append(f"<dt>{KIND_ZH[kind]}</dt>" + "".join(f"<dd>{esc(t)}</dd>" for t in rows))
            body = f"<dl>{''.join(parts)}</dl>" if parts else "<p>（本季度无解释记录）</p>"
            rank = f"区内第 {r['rank_district']} 名" if r["rank_district"] is not None else \
                f"未参评（{r['eligibility_reason']}）"
            score = "—" if r["score"] is None else f"{r['score']:.2f}"
            veto = f"，一票否决：{esc(r['vetoes'])}" if r["vetoes"] else ""
            inner.append(f'<details class="community" data-code="{esc(r["code"])}"><summary>'
                         f"{esc(r['name'])}（{esc(r['street'])}）　得分 {esc(score)}，{esc(rank)}，"
                         f"{esc(r['grade'])}{veto}</summary>{body}</details>")
        out.append(f'<details class="district"><summary>{esc(district)}（{g.height} 个社区）</summary>'
                   + "".join(inner) + "</details>")
    return "\n".join(out)


CSS = """
body{font-family:%s;margin:0 auto;max-width:1280px;padding:24px;color:#1f2933;line-height:1.55}
h1{font-size:26px;margin-bottom:4px}h2{border-bottom:2px solid #c62828;padding-bottom:4px;margin-top:40px}
h3{margin-top:26px}h4{margin:18px 0 6px}
.meta{color:#52606d;font-size:14px}.preview{color:#b71c1c;font-weight:bold}
.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:12px;margin:18px 0}
.card{border:1px solid #d9e2ec;border-radius:6px;padding:10px 14px;background:#f8fafc}
.card .k{color:#52606d;font-size:13px}.card .v{font-size:20px;font-weight:bold;margin:2px 0}
.card .n{color:#7b8794;font-size:12px}
table{border-collapse:collapse;margin:8px 0 14px;font-size:13px}
th,td{border:1px solid #d9e2ec;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f4f8}td.num{text-align:right;font-variant-numeric:tabular-nums}td.empty{color:#7b8794}
.tie{color:#b45309;font-weight:bold}.gap{color:#7b8794}
table.vetoes td:nth-child(-n+5),table.vetoes th{white-space:nowrap}
nav a{margin-right:14px}details{margin:4px 0}details.district>summary{font-weight:bold;font-size:16px}
details.community{margin-left:18px}dl{margin:4px 0 8px 18px}dt{font-weight:bold;margin-top:4px}dd{margin-left:18px}
@media print{details{display:block}nav{display:none}}
""" % FONT


def render(d: dict, top_n: int = 5, generated_at: dt.datetime | None = None) -> str:
    """The whole page as one string."""
    h = headline(d)
    label = quarter_label(d["quarter"])
    when = (generated_at or dt.datetime.now()).strftime("%Y-%m-%d %H:%M")
    pub = (f"已公示版本 {esc(h['published'])}" if h["published"]
           else '<span class="preview">未发布（预览）</span>')
    if h["published"] and not h["published_matches"]:
        pub += '<span class="preview">（本报告为仓库当前结果，与公示版本不同；更正须重新公示）</span>'
    figs = {
        "fig_districts": district_figure(d),
        "fig_bump": bump_figure(d),
        "fig_profiles": profile_figure(d, 5),
        "fig_uncertainty": uncertainty_figure(d),
        "fig_framework": framework_figure(d),
        "fig_corr": correlation_figure(d),
    }
    divs = {k: figure_div(f, k, top=120 if k == "fig_profiles" else 60) for k, f in figs.items()}
    body = [
        f"<h1>{esc(label)}社区建设三级评比报告</h1>",
        f'<p class="meta">评比方案 {esc(d["scheme_name"])}　{pub}　生成时间 {esc(when)}</p>',
        '<nav><a href="#summary">概况</a><a href="#rank">排名</a><a href="#titles">称号</a>'
        '<a href="#bump">名次变化</a><a href="#profiles">类别画像</a><a href="#quality">数据质量</a>'
        '<a href="#explain">得分解释</a><a href="#manual">人工更正</a><a href="#robust">稳健性与方法</a></nav>',
        '<h2 id="summary">一、概况</h2>', _cards(h), divs["fig_districts"],
        _ranking_sections(d, top_n),
        _veto_section(d),
        _award_sections(d),
        '<h2 id="bump">四、名次变化</h2>', divs["fig_bump"],
        '<h2 id="profiles">五、领先与落后社区的类别画像</h2>', divs["fig_profiles"], _profile_table(d, 5),
        _quality_section(d),
        _explanation_section(d),
        _manual_section(d),
        _robustness_section(d, divs),
        f'<p class="meta">数据来源：shequ 指标仓库只读快照；本页离线可用（图表脚本已内嵌）。</p>',
    ]
    head = (f"<title>{esc(label)}社区建设三级评比报告</title><style>{CSS}</style>"
            f"<script type=\"text/javascript\">{get_plotlyjs()}</script></head><body>")
    rest = head + "\n".join(body) + "</body></html>\n"
    return ("<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{csp(rest)}">' + rest)


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


# plotly.js adds its own rules through empty <style id="plotly.js-style-..."> elements filled by CSSOM insertRule
EMPTY_STYLE = _sha256("")


@functools.cache
def bundle_style_hashes() -> tuple[str, ...]:
    """The style elements plotly.js itself creates when it loads (its bundled maplibre stylesheet, written as
    ``e=document.createElement("style");e.id="...",e.textContent='...'``): their hashes, so the policy allows them
    and no CSP violation is reported. A literal with escapes is not decoded (none in plotly.js 3); the browser
    test would report its violation."""
    lits = re.findall(r'createElement\("style"\);(\w+)\.id="[^"]*",\1\.textContent=\'([^\'\\]*)\'', get_plotlyjs())
    return tuple(_sha256(t) for _, t in lits)


def element_texts(page: str, tag: str) -> list[str]:
    """The texts of ``<tag ...>text</tag>`` in ``page``, as ``re.findall(r"<tag[^>]*>(.*?)</tag>", page, re.S)``
    finds them, by str.find: the regex's lazy scan through the 4.6 MB plotly.js script took 90 ms per report."""
    out, pos, opening, closing = [], 0, "<" + tag, "</" + tag + ">"
    while (i := page.find(opening, pos)) != -1:
        j = page.find(">", i + len(opening))
        k = -1 if j == -1 else page.find(closing, j + 1)
        if k == -1:          # no complete element from here on (none can start later either)
            break
        out.append(page[j + 1:k])
        pos = k + len(closing)
    return out


def csp(page: str) -> str:
    """The page's Content-Security-Policy: nothing by default; scripts and style elements only those written in
    ``page`` (sha256 of each, as the browser hashes them); style attributes (plotly's divs and SVG) allowed;
    images only as data: URLs (plotly's PNG export). No connect, font, frame, object, form or base URL. Every
    text from the warehouse is escaped (``esc``), so no <script> or <style> in ``page`` comes from data."""
    scripts = sorted({_sha256(s) for s in element_texts(page, "script")})
    styles = sorted({_sha256(s) for s in element_texts(page, "style")}
                    | {EMPTY_STYLE, *bundle_style_hashes()})
    return ("default-src 'none'; script-src " + " ".join(scripts) + "; style-src 'unsafe-inline'; "
            "style-src-elem " + " ".join(styles) + "; style-src-attr 'unsafe-inline'; img-src data:; "
            "base-uri 'none'; form-action 'none'")


def build_report(con: duckdb.DuckDBPyConnection, quarter: str, scheme: str = "default", top_n: int = 5) -> tuple[str, dict]:
    d = load(con, quarter, scheme)
    return render(d, top_n), headline(d)


def write_report(quarter: str, out: str | os.PathLike | None = None, warehouse: str | os.PathLike | None = None,
                 scheme: str = "default", con: duckdb.DuckDBPyConnection | None = None, top_n: int = 5) -> dict:
    """Write the report of ``quarter``; reads ``con`` if given, else the snapshot of ``warehouse`` (read-only,
    closed straight after). Raises NoDataError when the quarter has no ranking. Returns path, bytes, seconds
    and the headline numbers."""
    t0 = time.perf_counter()
    if con is None:
        with read_only(source_path(warehouse)) as c:
            page, h = build_report(c, quarter, scheme, top_n)
    else:
        page, h = build_report(con, quarter, scheme, top_n)
    out = Path(out) if out else report_path(quarter, warehouse)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    h = {k: v for k, v in h.items() if k != "titles_by"} | {
        "titles_by": json.dumps({f"{t}{c}": n for (c, t), n in h["titles_by"].items()}, ensure_ascii=False)}
    return {"path": str(out), "bytes": out.stat().st_size, "seconds": round(time.perf_counter() - t0, 3), **h}
