"""一票否决 (vetoes) explained in plain Chinese, the same words wherever a result is shown.

The per-community sentence is made once, by ``models/sql/explanation.sql`` (``fact_explanation`` rows of kind
``veto``): which item hit and the value, what it did, and why the community keeps its rank. This module reads
those rows for the CLI summary, the report, the 公示 workbook and the notebooks, and words the general rule of the
scheme (``rules_text``): ranks are taken on the score; a veto acts on the grade or the titles, not on the rank.
"""

import duckdb
import polars as pl

from . import config
from .warehouse import frame

EFFECT_ZH = {
    "drop_grade": "等次降一档",
    "exclude_titles": "不得评任何称号",
    "cap_score": "综合得分封顶",
}


def scheme_for(scheme_id: str):
    """The scheme of ``scheme_id`` from models/schemes/ (the file whose ``scheme_id`` matches), or None."""
    import yaml

    from .appraisal.scheme import SchemeError, load_scheme, parse_yaml

    for path in sorted(config.SCHEMES_DIR.glob("*.yaml")):
        try:
            doc = parse_yaml(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(doc, dict) and str(doc.get("scheme_id")) == scheme_id:
            try:
                return load_scheme(path)
            except SchemeError:
                return None
    return None


def rules_text(scheme) -> str:
    """The scheme's 一票否决 items and what each does, and why a vetoed community can still rank first."""
    vetoes = ((scheme.section("adjust") or {}).get("vetoes") or []) if scheme is not None else []
    if not vetoes:
        return "本评价方案没有一票否决项。"
    items = "；".join(
        f"“{v['name']}”{EFFECT_ZH.get(v['effect'], v['effect'])}"
        + (f"（封顶 {float(v['cap']):.2f} 分）" if v["effect"] == "cap_score" and "cap" in v else "")
        for v in vetoes)
    capped = any(v["effect"] == "cap_score" for v in vetoes)
    return (f"一票否决项：{items}。名次只按综合得分从高到低排列；一票否决不扣分"
            + ("（封顶项除外）" if capped else "")
            + "，也不改变名次，它只降低等次或取消评优资格。所以触及一票否决的社区仍可能排在区内第一名，"
              "但它的等次会降一档，或者不能获得称号。")


def grades_text(scheme) -> str:
    """How grades are given, e.g. 等次按综合得分（四舍五入保留 2 位小数）划分：85 分及以上为优秀，…"""
    spec = (scheme.section("grades") or {}) if scheme is not None else {}
    bands = spec.get("bands") or []
    if not bands:
        return ""
    parts = []
    for b in bands:
        if "min" in b and "max" in b:
            parts.append(f"{b['min']:g}–{b['max']:g} 分为{b['grade']}")
        elif "min" in b:
            parts.append(f"{b['min']:g} 分及以上为{b['grade']}" if b.get("min_inclusive", True)
                         else f"高于 {b['min']:g} 分为{b['grade']}")
        elif "max" in b:
            parts.append(f"{b['max']:g} 分及以下为{b['grade']}")
        else:
            parts.append(f"其余为{b['grade']}")
    digits = spec.get("round")
    how = f"（四舍五入保留 {digits} 位小数）" if digits is not None else ""
    return f"等次按综合得分{how}划分：" + "，".join(parts) + "。"


def explanations(con: duckdb.DuckDBPyConnection, quarter: str, scheme: str = "default",
                 ranking: str = "fact_ranking") -> pl.DataFrame:
    """One row per community hit by a veto in ``quarter``: code, name, district, district rank, number ranked,
    grade and the explanation (the ``veto`` sentences of fact_explanation joined with '；'), best rank first.
    ``ranking`` may name a published ranking source (a subquery) instead of fact_ranking."""
    return frame(con, f"""
        SELECT r.entity_code AS code, r.entity_name AS name, r.scope_name AS district, r.rank, r.n_ranked,
               r.grade, r.vetoes,
               (SELECT string_agg(e.detail, '；' ORDER BY e.position) FROM fact_explanation e
                WHERE e.period_key = r.period_key AND e.scheme_id = r.scheme_id AND e.entity_code = r.entity_code
                  AND e.kind = 'veto') AS detail
        FROM {ranking} r
        WHERE r.period_key = $q AND r.scheme_id = $s AND r.entity_level = 'community'
          AND r.scope_level = 'district' AND r.vetoes IS NOT NULL
        ORDER BY r.rank NULLS LAST, r.scope_name, r.entity_name""", {"q": quarter, "s": scheme})
