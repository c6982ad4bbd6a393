"""The appraisal in the warehouse: three-level ranks, titles, rank intervals, explanations, review stages,
values held back by quality rules, and published versions with their diffs."""

import numpy as np
import pytest

from shequ.appraisal.reviews import load_reviews
from shequ.appraisal.store import publication_status, publish
from shequ.scoring import load_scheme, score_period
from shequ.warehouse import connect, frame

Q = "2024Q1"


def test_every_community_ranked_three_ways_with_intervals(con):
    r = frame(con, f"""SELECT * FROM fact_ranking WHERE period_key = '{Q}' AND entity_level = 'community'""")
    assert set(r["scope_level"]) == {"street", "district", "city"}
    per = r.group_by("entity_code").len()
    assert per["len"].min() == 3 and per["len"].max() == 3
    ranked = r.filter(r["rank"].is_not_null())
    assert ranked.height > 300
    assert (ranked["rank_low"] <= ranked["rank_median"]).all() and (ranked["rank_median"] <= ranked["rank_high"]).all()
    # the interval contains the nominal rank for most communities (200 draws around the nominal scheme)
    inside = ((ranked["rank_low"] <= ranked["rank"]) & (ranked["rank"] <= ranked["rank_high"])).mean()
    assert inside > 0.8
    areas = frame(con, f"SELECT * FROM fact_ranking WHERE period_key = '{Q}' AND entity_level <> 'community'")
    assert set(zip(areas["entity_level"], areas["scope_level"])) == {("street", "district"), ("district", "city")}


@pytest.fixture(scope="module")
def relaxed(tmp_path_factory, built):
    """The sample's best community scores 84.6 (< 优秀), so under the default scheme only 区级 titles are given.
    This copy relaxes the grade prerequisites so that every tier is awarded and the quotas bind."""
    import shutil

    import yaml

    d = tmp_path_factory.mktemp("relaxed")
    wh = d / "w.duckdb"
    shutil.copy(built["warehouse"], wh)
    doc = yaml.safe_load(open(load_scheme().path, encoding="utf-8"))
    doc["scheme_id"], doc["version"] = "relaxed", "t1"
    doc["awards"]["tiers"] = [
        {"tier": "区级", "scope": "district", "quota": {"share": 0.3}, "min_grade": "合格"},
        {"tier": "市级", "scope": "city", "quota": {"share": 0.1}, "requires": "区级", "min_grade": "合格"},
        {"tier": "省级", "scope": "province", "quota": {"count": 2}, "requires": "市级", "min_grade": "合格"}]
    p = d / "relaxed.yaml"
    p.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with connect(wh) as c:
        score_period(c, Q, load_scheme(p), draws=100)
        a = frame(c, f"SELECT * FROM fact_award WHERE period_key = '{Q}' AND scheme_id = 'relaxed'")
        r = frame(c, f"""SELECT entity_code, grade, rank FROM fact_ranking WHERE period_key = '{Q}'
                         AND scheme_id = 'relaxed' AND scope_level = 'city' AND entity_level = 'community'""")
    return a, r


def test_titles_are_nested_and_within_quota(relaxed):
    a, r = relaxed
    assert set(a["campaign"]) == {"示范社区", "平安社区", "民主法治社区"}
    tiers = {t: set(a.filter((a["tier"] == t) & (a["campaign"] == "示范社区"))["entity_code"])
             for t in ("区级", "市级", "省级")}
    assert all(tiers.values()) and tiers["省级"] <= tiers["市级"] <= tiers["区级"]
    assert len(tiers["省级"]) <= 2 * 3                                     # 2 per province, 3 provinces
    assert ((a["quota_position"] <= a["quota"]) | a["tied_at_quota"]).all()
    holders = r.filter(r["entity_code"].is_in(list(tiers["区级"])))
    assert holders["rank"].is_not_null().all() and set(holders["grade"]) <= {"优秀", "良好", "合格"}


def test_tie_flags_only_where_the_quota_binds(relaxed, con):
    a, _ = relaxed
    # default scheme on the sample: few communities reach 良好, so the 区级 quotas do not bind
    d = frame(con, f"SELECT * FROM fact_award WHERE period_key = '{Q}' AND scheme_id = 'default'")
    slack = d.filter(d["n_candidates"] <= d["quota"])
    assert slack.height > 0 and not slack["tie_flag"].any()              # nobody can lose a non-binding title
    binding = a.filter(a["n_candidates"] > a["quota"])
    assert binding.height > 0
    flagged = binding.filter(binding["tie_flag"])
    assert flagged.height > 0
    assert (flagged["rank_high"] > flagged["quota"]).all()
    assert not (binding.filter(~binding["tie_flag"])["rank_high"] > binding.filter(~binding["tie_flag"])["quota"]).any()
    # intervals are ranks among the tier's candidates, comparable with the quota position
    assert (a["rank_low"] >= 1).all() and (a["rank_high"] <= a["n_candidates"]).all()


def test_explanations_name_strengths_weaknesses_and_drivers(con):
    e = frame(con, f"SELECT * FROM fact_explanation WHERE period_key = '{Q}'")
    assert set(e["kind"]) == {"strength", "weakness", "movement", "driver", "veto"}
    assert (e.filter(e["kind"] == "strength")["value"] > 0).all()
    assert (e.filter(e["kind"] == "weakness")["value"] < 0).all()
    one = e.filter(e["entity_code"] == e["entity_code"][0])
    assert one.filter(one["kind"] == "driver").height <= 3
    assert all("分" in d for d in e["detail"])
    # movement equals the change of the final score between the two quarters
    mv = frame(con, f"""SELECT m.value, a.score - b.score AS delta FROM fact_explanation m
        JOIN fact_ranking a ON a.entity_code = m.entity_code AND a.period_key = '{Q}' AND a.scope_level = 'district'
        JOIN fact_ranking b ON b.entity_code = m.entity_code AND b.period_key = '2023Q4' AND b.scope_level = 'district'
        WHERE m.period_key = '{Q}' AND m.kind = 'movement'""")
    assert mv.height > 0 and np.allclose(mv["value"], mv["delta"])


def _community(c, district="天桥区"):
    return c.execute(f"""SELECT entity_code, score FROM fact_ranking WHERE period_key = '{Q}' AND scope_level = 'city'
                         AND entity_level = 'community' AND rank IS NOT NULL AND entity_code IN
                         (SELECT community_code FROM dim_community WHERE district = '{district}')
                         ORDER BY rank LIMIT 1""").fetchall()[0]


def test_review_stages_override_reported_values(workspace, tmp_path):
    reviews = tmp_path / "reviews"
    reviews.mkdir()
    with connect(workspace["warehouse"]) as c:
        code, before = _community(c)
        (reviews / "天桥区复评.csv").write_text(
            "季度,社区编码,评审阶段,指标,核定值,评审人,说明\n"
            f"2024年第一季度,{code},街道初评,居民对社区工作满意度,0.5,街道,入户抽查\n"
            f"2024Q1,{code},区复评,resident_satisfaction_rate,0.4,区考核组,第三方调查\n", encoding="gbk")
        loads = load_reviews(c, reviews, ["自评", "街道初评", "区复评"])
        assert [(x.rows, x.error) for x in loads] == [(2, None)]
        score_period(c, Q, load_scheme(), draws=20)
        row = c.execute(f"""SELECT stage, score, self_score, self_gap FROM fact_ranking WHERE period_key = '{Q}'
                            AND entity_code = ? AND scope_level = 'city'""", [code]).fetchall()[0]
        stages = dict(c.execute(f"""SELECT stage, score FROM fact_score WHERE period_key = '{Q}' AND entity_code = ?
                                    AND node_level = 'index'""", [code]).fetchall())
    assert row[0] == "区复评" and row[2] == pytest.approx(before)
    assert row[1] < before and row[3] == pytest.approx(before - row[1])
    assert set(stages) == {"自评", "街道初评", "区复评"} and stages["区复评"] < stages["街道初评"] < stages["自评"]


def test_a_bad_review_file_is_rejected_whole_with_row_and_reason(workspace, tmp_path):
    reviews = tmp_path / "reviews"
    reviews.mkdir()
    (reviews / "bad.csv").write_text("季度,社区编码,评审阶段,指标,核定值\n2024Q1,000000000000,区复评,office_area,30\n",
                                     encoding="utf-8")
    with connect(workspace["warehouse"]) as c:
        (res,) = load_reviews(c, reviews, ["自评", "街道初评", "区复评"])
        n = c.execute("SELECT count(*) FROM review_adjustment WHERE source_file = 'bad.csv'").fetchall()[0][0]
    assert res.rows == 0 and "bad.csv 第 2 行" in res.error and "不在登记表中" in res.error and n == 0


def test_values_held_by_a_quality_rule_are_not_scored(workspace):
    with connect(workspace["warehouse"]) as c:
        code, _ = _community(c)
        key = c.execute("""SELECT community_key FROM fact_ranking WHERE entity_code = ? AND period_key = ?
                           LIMIT 1""", [code, Q]).fetchall()[0][0]
        c.execute("""CREATE TABLE IF NOT EXISTS quality_hold (period_key VARCHAR, community_key INTEGER,
                     indicator_code VARCHAR, rule_id VARCHAR, importance VARCHAR, reason VARCHAR,
                     detected_at TIMESTAMP)""")
        c.execute("INSERT INTO quality_hold VALUES (?, ?, 'resident_satisfaction_rate', 'test', 'HIGH', 't', now())",
                  [Q, key])
        score_period(c, Q, load_scheme(), draws=0)
        n = c.execute("""SELECT count(*) FROM fact_score WHERE period_key = ? AND entity_code = ?
                         AND node_code = 'resident_satisfaction_rate' AND flag IS DISTINCT FROM 'imputed'""",
                      [Q, code]).fetchall()[0][0]
    assert n == 0


def test_publish_freezes_and_a_correction_makes_a_new_version_with_a_diff(workspace):
    scheme = load_scheme()
    with connect(workspace["warehouse"]) as c:
        v1 = publish(c, Q, scheme, by="测试", note="首次公示")
        assert v1["new"] and v1["version_id"] == f"{Q}-default-v1"
        again = publish(c, Q, scheme)
        assert not again["new"] and again["version_id"] == v1["version_id"]
        frozen = c.execute("SELECT count(*), sum(rank) FROM published_ranking WHERE version_id = ?",
                           [v1["version_id"]]).fetchall()[0]
        # a correction: the best community's satisfaction was overstated
        code, _ = _community(c)
        c.execute(f"""UPDATE fact_indicator_value SET value = 0.1 WHERE period_key = '{Q}'
                      AND indicator_code IN ('resident_satisfaction_rate', 'property_satisfaction_rate')
                      AND community_key IN (SELECT community_key FROM dim_community WHERE community_code = ?)""", [code])
        score_period(c, Q, scheme, draws=20)
        st = publication_status(c, Q, "default")
        assert st["version_id"] == v1["version_id"] and not st["matches_live"]
        assert c.execute("SELECT count(*), sum(rank) FROM published_ranking WHERE version_id = ?",
                         [v1["version_id"]]).fetchall()[0] == frozen
        v2 = publish(c, Q, scheme, note="更正满意度")
        diff = frame(c, "SELECT * FROM publication_diff WHERE version_id = ?", [v2["version_id"]])
    assert v2["new"] and v2["supersedes"] == v1["version_id"] and v2["version_id"].endswith("-v2")
    mine = diff.filter(diff["entity_code"] == code)
    assert "rank" in set(mine["change"]) and "score" in set(mine["change"])
    assert v2["changes"] == diff.height > 0


def test_area_scores_as_index_of_aggregated_components(workspace, tmp_path):
    """areas.method = aggregate_components (as the HDI does for regions): a street is scored from its
    aggregated indicators, not as the mean of its communities' scores."""
    import yaml

    doc = yaml.safe_load(open(load_scheme().path, encoding="utf-8"))
    doc["areas"] = {"method": "aggregate_components", "min_coverage": 0.6}
    doc["scheme_id"], doc["version"] = "components", "t1"
    p = tmp_path / "components.yaml"
    p.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with connect(workspace["warehouse"]) as c:
        score_period(c, Q, load_scheme(p), draws=0)
        got = frame(c, f"""SELECT a.entity_code, a.score AS comp, m.score AS mean FROM fact_ranking a
                           JOIN fact_ranking m ON m.entity_code = a.entity_code AND m.period_key = a.period_key
                            AND m.entity_level = a.entity_level AND m.scheme_id = 'default'
                           WHERE a.period_key = '{Q}' AND a.scheme_id = 'components' AND a.entity_level = 'street'""")
    assert got.height == 20 and got["comp"].is_not_null().all()
    # relative indicators are scored against the street's own city: the component index stays near the member
    # mean (scoring them against a wrong city dropped them and put streets about 20 points higher)
    assert (abs(got["comp"] - got["mean"]) < 12).all(), got.sort("comp")
    assert ((got["comp"] >= 0) & (got["comp"] <= 100)).all()
    assert (abs(got["comp"] - got["mean"]) > 1e-6).sum() >= 15


def test_bundled_review_file_is_read_and_applied(built):
    """data/reviews/ ships a GBK review file for 2024Q4 (shequ sample writes it); the refresh loads it."""
    from shequ import config

    files = sorted(config.DEFAULT_REVIEWS.glob("*.csv"))
    assert files and files[0].read_bytes().decode("gbk").startswith("季度,社区编码,评审阶段")
    with connect(built["warehouse"], read_only=True) as c:
        rows = c.execute("SELECT stage, count(*) FROM review_adjustment WHERE period_key = '2024Q4' GROUP BY 1"
                         ).fetchall()
    assert dict(rows) == {"街道初评": 2, "区复评": 2}


def test_indicators_not_applicable_to_village_style_communities_are_not_scored(con):
    """村代居 are not scored on the compound / property indicators (catalogue not_applicable_to = 村代居|城市村)."""
    rows = con.execute(f"""SELECT count(*) FROM fact_score s JOIN dim_community c ON c.community_code = s.entity_code
                           JOIN dim_indicator i ON i.indicator_code = s.node_code
                           WHERE s.period_key = '{Q}' AND c.community_type = '村代居'
                             AND i.not_applicable_to LIKE '%村代居%'""").fetchall()[0][0]
    villages = con.execute("SELECT count(*) FROM dim_community WHERE community_type = '村代居'").fetchall()[0][0]
    assert villages >= 2 and rows == 0
    ranked = con.execute(f"""SELECT count(*) FROM fact_ranking r JOIN dim_community c ON c.community_code = r.entity_code
                             WHERE r.period_key = '{Q}' AND c.community_type = '村代居' AND r.rank IS NOT NULL""").fetchall()
    assert ranked[0][0] >= 2 * 3

