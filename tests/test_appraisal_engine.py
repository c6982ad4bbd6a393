"""The appraisal engine's methods on small hand-checkable data: every scoring method, imputation, eligibility,
aggregation, bonus, vetoes, grade bands, rank ties and tiered titles, each declared in a scheme file."""

import numpy as np
import polars as pl
import pytest
import yaml

from shequ.appraisal import SchemeError, load_scheme, run, units_from_frame
from shequ.appraisal.engine import round_scores
from shequ.appraisal.store import award_titles


def scheme_file(tmp_path, body: dict, name="s.yaml"):
    doc = {"scheme_id": "t", "version": "1", "tree": {"root": "idx", "nodes": [{"code": "idx"}]}, **body}
    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return load_scheme(p)


def one_indicator(tmp_path, method: dict, values, direction=1, **extra):
    s = scheme_file(tmp_path, {"indicators": {"list": [{"code": "x", "parent": "idx", "direction": direction,
                                                         "normalise": method}]}, **extra})
    df = pl.DataFrame({"u": [f"u{i}" for i in range(len(values))], "x": values}, strict=False)
    return run(units_from_frame(df, s, unit="u"), s)


@pytest.mark.parametrize("method,values,direction,expected", [
    ({"method": "minmax", "lo": 0, "hi": 100}, [2.0, 4.0, 6.0], 1, [0, 50, 100]),
    ({"method": "minmax", "lo": 0, "hi": 100}, [2.0, 4.0, 6.0], -1, [100, 50, 0]),
    ({"method": "zscore", "mean": 10, "sd": 2}, [1.0, 2.0, 3.0], 1, [8, 10, 12]),
    ({"method": "percentile"}, [5.0, 1.0, 3.0, 3.0], 1, [100, 0, 50, 50]),
    ({"method": "goalposts", "min": 20, "max": 85, "scale": 1}, [20.0, 52.5, 90.0], 1, [0, 0.5, 1]),
    ({"method": "target", "target": 0.8, "below": "pro_rata"}, [0.4, 0.8, 0.95], 1, [50, 100, 100]),
    ({"method": "target", "target": 0.9, "below": "stepped", "steps": [[0.8, 80], [0.6, 60]]},
     [0.5, 0.6, 0.75, 0.85, 0.9], 1, [0, 60, 80, 80, 100]),      # ratios 0.56, 0.67, 0.83, 0.94, 1
    ({"method": "target", "target": 30, "below": "zero"}, [29.0, 30.0], 1, [0, 100]),
    ({"method": "deduction", "target": 0, "per": 1, "points": 25}, [0.0, 1.0, 2.0, 5.0], -1, [100, 75, 50, 0]),
    ({"method": "deduction", "target": 10, "per": 2, "points": 5}, [10.0, 9.0, 7.0], 1, [100, 95, 90]),
    ({"method": "ordinal", "map": {4: 100, 3: 80, 2: 60, 1: 0}}, [4.0, 3.0, 1.0], 1, [100, 80, 0]),
    ({"method": "flag", "true": 100, "false": 0}, [1.0, 0.0], 1, [100, 0]),
    ({"method": "flag", "true": 100, "false": 0}, [1.0, 0.0], -1, [0, 100]),
    ({"method": "band", "min": 5, "max": 9}, [3.0, 7.0, 11.0, 30.0], 1, [50, 100, 50, 0]),
    ({"method": "distance_to_target", "target": 0.95}, [0.5, 0.725, 0.99], 1, [0, 50, 100]),
    ({"method": "distance_to_target", "target": 0.95}, [0.96, 0.98, 1.0], 1, [100, 100, 100]),   # all met
    ({"method": "distance_to_target", "target": 2}, [10.0, 6.0, 1.0], -1, [0, 50, 100]),
])
def test_scoring_methods(tmp_path, method, values, direction, expected):
    app = one_indicator(tmp_path, method, values, direction)
    assert app.normalised[:, 0] == pytest.approx(expected)


def test_ordinal_labels_in_text_are_mapped(tmp_path):
    s = scheme_file(tmp_path, {"indicators": {"list": [{"code": "x", "parent": "idx", "normalise": {
        "method": "ordinal", "map": {"优秀": 100, "良好": 80, "合格": 60, "不合格": 0}}}]}})
    df = pl.DataFrame({"u": ["a", "b", "c"], "x": ["良好", "不合格", "优秀"]})
    assert run(units_from_frame(df, s, unit="u"), s).score == pytest.approx([80, 0, 100])


def _tree(tmp_path, extra: dict, agg="arithmetic", weights=(1, 1)):
    return scheme_file(tmp_path, {
        "tree": {"root": "idx", "nodes": [{"code": "idx", "aggregation": agg}]},
        "indicators": {"list": [{"code": "a", "parent": "idx", "weight": weights[0],
                                 "normalise": {"method": "identity"}},
                                {"code": "b", "parent": "idx", "weight": weights[1],
                                 "normalise": {"method": "identity"}}]}, **extra})


def test_aggregations_and_weights_renormalised_over_missing(tmp_path):
    df = pl.DataFrame({"u": ["p", "q"], "a": [4.0, 9.0], "b": [16.0, None]})
    s = _tree(tmp_path, {}, "arithmetic", (1, 2))
    app = run(units_from_frame(df, s, unit="u"), s)
    assert app.score == pytest.approx([(4 + 2 * 16) / 3, 9.0])   # q: only a has data -> a alone
    s = _tree(tmp_path, {}, "geometric", (1, 1))
    assert run(units_from_frame(df, s, unit="u"), s).score[0] == pytest.approx(8.0)
    s = _tree(tmp_path, {}, "harmonic", (1, 1))
    assert run(units_from_frame(df, s, unit="u"), s).score[0] == pytest.approx(2 / (1 / 4 + 1 / 16))


def test_geometric_mean_refuses_zero_unless_floored(tmp_path):
    df = pl.DataFrame({"u": ["p"], "a": [0.0], "b": [16.0]})
    s = _tree(tmp_path, {}, "geometric")
    with pytest.raises(SchemeError, match="几何平均"):
        run(units_from_frame(df, s, unit="u"), s)
    s = _tree(tmp_path, {"aggregate": {"method": "arithmetic", "geometric_floor": 1}}, "geometric")
    assert run(units_from_frame(df, s, unit="u"), s).score[0] == pytest.approx(4.0)


@pytest.mark.parametrize("step,expected", [
    ({"method": "mean"}, 4.0), ({"method": "median"}, 3.0),
    ({"method": "group_mean", "group": "g"}, 5.5), ({"method": "group_median", "group": "g"}, 5.5),
    ({"method": "constant", "value": 0}, 0.0),
])
def test_imputation(tmp_path, step, expected):
    s = _tree(tmp_path, {"impute": [step]})
    df = pl.DataFrame({"u": ["p", "q", "r", "s"], "g": ["x", "x", "y", "x"], "a": [None, 3.0, 1.0, 8.0],
                       "b": [1.0, 1.0, 1.0, 1.0]})
    app = run(units_from_frame(df, s, unit="u", groups=["g"]), s)
    assert app.imputed[0, 0] == pytest.approx(expected)
    assert app.imputed_mask[0, 0] and not app.imputed_mask[1, 0]


def test_last_value_then_group_mean(tmp_path):
    s = _tree(tmp_path, {"impute": [{"method": "last_value"}, {"method": "group_mean", "group": "g"}]})
    df = pl.DataFrame({"u": ["p", "q", "r"], "g": ["x", "x", "x"], "a": [None, None, 6.0], "b": [1.0] * 3})
    prev = pl.DataFrame({"u": ["p"], "a": [2.0], "b": [1.0]})
    app = run(units_from_frame(df, s, unit="u", groups=["g"], previous=prev), s)
    assert app.imputed[:, 0] == pytest.approx([2.0, 4.0, 6.0])   # q: mean of p (carried) and r


def test_eligibility_reasons(tmp_path):
    s = _tree(tmp_path, {"screen": {"min_availability": 0.6, "by": "count"}})
    df = pl.DataFrame({"u": ["full", "half", "none"], "a": [1.0, 2.0, None], "b": [1.0, None, None]})
    app = run(units_from_frame(df, s, unit="u"), s)
    assert list(app.reason) == [None, "coverage_below_min", "no_data"]
    r = app.ranks[("idx", "overall")]
    assert r[0] == 1 and np.isnan(r[1]) and np.isnan(r[2])


def test_bonus_cap_vetoes_and_grades(tmp_path):
    s = _tree(tmp_path, {
        "adjust": {"bonus": {"cap": 3, "max_score": 100, "items": [
            {"name": "特色", "indicator": "f", "op": ">=", "value": 1, "points": 2},
            {"name": "先进", "indicator": "g", "op": ">=", "value": 1, "points": 2}]},
            "vetoes": [{"name": "重大事故", "indicator": "v", "op": ">", "value": 0, "effect": "cap_score", "cap": 59.99},
                       {"name": "违建", "indicator": "w", "op": ">", "value": 0, "effect": "drop_grade"}]},
        "ranking": {"round": 2, "round_mode": "half_up", "basis": "rounded", "ties": "min"},
        "grades": {"round": 2, "round_mode": "half_up",
                   "bands": [{"grade": "优秀", "min": 85}, {"grade": "良好", "min": 70}, {"grade": "合格", "min": 60},
                             {"grade": "不合格"}]}})
    df = pl.DataFrame({"u": ["a", "b", "c", "d", "e"], "a": [80.0, 99.0, 90.0, 84.995, 84.99],
                       "b": [80.0, 99.0, 90.0, 84.995, 84.99], "f": [1.0, 1, 0, 0, 0], "g": [1.0, 1, 0, 0, 0],
                       "v": [0.0, 0, 1, 0, 0], "w": [0.0, 0, 0, 1, 0]})
    app = run(units_from_frame(df, s, unit="u"), s)
    assert app.bonus == pytest.approx([3, 1, 0, 0, 0])  # 2 + 2 capped at 3; b: 99 + 3 stops at 100, so 1 counted
    assert app.score[:3] == pytest.approx([83, 100, 59.99])             # max 100; veto caps c
    assert list(app.grade) == ["良好", "优秀", "不合格", "良好", "良好"]   # d: 84.995 -> 85.00 优秀, dropped one grade
    assert app.vetoes[2] == ("重大事故",) and app.vetoes[0] == ()


def test_ranks_on_rounded_scores_share_ties(tmp_path):
    app = one_indicator(tmp_path, {"method": "identity"}, [90.001, 90.004, 89.0, 95.0],
                        ranking={"round": 2, "basis": "rounded", "ties": "min"})
    assert list(app.ranks[("idx", "overall")]) == [2, 2, 4, 1]
    full = one_indicator(tmp_path, {"method": "identity"}, [90.001, 90.004, 89.0, 95.0],
                         ranking={"round": 2, "basis": "full", "ties": "min"})
    assert list(full.ranks[("idx", "overall")]) == [3, 2, 4, 1]


def test_round_half_up_versus_half_even():
    x = np.array([84.995, 0.125, 2.5])
    assert list(round_scores(x, 2, "half_up")) == [85.0, 0.13, 2.5]
    assert list(round_scores(np.array([0.5, 1.5, 2.5]), 0)) == [0.0, 2.0, 2.0]


def test_tiered_titles_quota_ties_prerequisites_and_vetoes(tmp_path):
    s = _tree(tmp_path, {
        "adjust": {"vetoes": [{"name": "事故", "indicator": "v", "op": ">", "value": 0, "effect": "exclude_titles"}]},
        "ranking": {"round": 2, "basis": "rounded", "ties": "min", "scopes": [{"name": "district", "by": "district_code"}]},
        "grades": {"round": 2, "bands": [{"grade": "优秀", "min": 85}, {"grade": "良好", "min": 70}, {"grade": "合格"}]},
        "awards": {"quota_rounding": "floor", "tie_at_quota": "include",
                   "campaigns": [{"campaign": "示范社区", "node": "idx"}],
                   "tiers": [{"tier": "区级", "scope": "district", "quota": {"share": 0.5}, "min_grade": "良好"},
                             {"tier": "市级", "scope": "city", "quota": {"count": 1}, "requires": "区级",
                              "min_grade": "优秀"}]}})
    scores = [95.0, 90.0, 88.0, 88.0, 60.0, 99.0, 86.0, 75.0, 72.0, 71.0]
    df = pl.DataFrame({"u": [f"c{i}" for i in range(10)], "a": scores, "b": scores,
                       "v": [0.0] * 5 + [1.0] + [0.0] * 4,
                       "district_code": ["D1"] * 5 + ["D2"] * 5, "district": ["一区"] * 5 + ["二区"] * 5,
                       "city_code": ["C"] * 10, "city": ["市"] * 10, "street_code": ["S"] * 10, "street": ["街"] * 10,
                       "province_code": ["P"] * 10, "province": ["省"] * 10})
    u = units_from_frame(df, s, unit="u", groups=["district_code", "city_code"])
    app = run(u, s)
    aw = award_titles(app, df.rename({"u": "community_code"}))
    d = aw.filter(pl.col("tier") == "区级").sort("entity_code")
    # D1: quota floor(0.5 x 5) = 2 -> c0, c1; D2: c5 vetoed, quota 2 -> c6, c7 (c8 not tied)
    assert d["entity_code"].to_list() == ["c0", "c1", "c6", "c7"]
    assert d.filter(pl.col("entity_code") == "c7")["quota_position"][0] == 2
    city = aw.filter(pl.col("tier") == "市级")
    assert city["entity_code"].to_list() == ["c0"]            # best 区级 holder; c5 (99, vetoed) never a candidate
    # tie at the quota line: c2 and c3 tie at 88 for the 2nd place when c1 drops below
    df2 = df.with_columns(pl.Series("a", [95.0, 80.0, 88.0, 88.0, 60.0, 99.0, 86.0, 75.0, 72.0, 71.0]),
                          pl.Series("b", [95.0, 80.0, 88.0, 88.0, 60.0, 99.0, 86.0, 75.0, 72.0, 71.0]))
    app2 = run(units_from_frame(df2, s, unit="u", groups=["district_code", "city_code"]), s)
    aw2 = award_titles(app2, df2.rename({"u": "community_code"})).filter(pl.col("scope_code") == "D1")
    assert sorted(aw2["entity_code"].to_list()) == ["c0", "c2", "c3"]
    # c2 and c3 are ordered by code at 88.00: c2 takes the 2nd place, c3 is admitted as tied with it
    assert aw2.filter(pl.col("entity_code") == "c3")["tied_at_quota"][0]
    assert aw2["tied_at_quota"].sum() == 1


@pytest.mark.parametrize("body,message", [
    ({"indicators": {"list": [{"code": "x", "parent": "idx", "normalise": {"method": "magic"}}]}}, "不支持"),
    ({"indicators": {"list": [{"code": "x", "parent": "idx", "normalise": {"method": "target"}}]}}, "需要 target"),
    ({"indicators": {"list": [{"code": "x", "parent": "nowhere"}]}}, "不存在"),
    ({"indicators": {"list": [{"code": "x", "parent": "idx"}]}, "impute": [{"method": "guess"}]}, "插补方法"),
    ({"indicators": {"list": [{"code": "x", "parent": "idx"}]},
      "adjust": {"vetoes": [{"name": "v", "indicator": "x", "effect": "banish"}]}}, "否决项"),
])
def test_scheme_errors_are_named(tmp_path, body, message):
    with pytest.raises(SchemeError, match=message):
        scheme_file(tmp_path, body)


def test_percentile_is_fitted_on_eligible_units_only(tmp_path):
    s = scheme_file(tmp_path, {"indicators": {"list": [
        {"code": "x", "parent": "idx", "normalise": {"method": "percentile"}},
        {"code": "y", "parent": "idx", "normalise": {"method": "identity"}}]},
        "screen": {"min_availability": 1.0, "by": "count"}})
    df = pl.DataFrame({"u": ["a", "b", "c", "d"], "x": [1.0, 2.0, 3.0, 100.0], "y": [1.0, 1.0, 1.0, None]})
    app = run(units_from_frame(df, s, unit="u"), s)
    assert list(app.eligible) == [True, True, True, False]
    assert app.normalised[:3, 0] == pytest.approx([0, 50, 100])      # d (ineligible) does not move them


def test_ordinal_numeric_codes_written_as_text(tmp_path):
    s = scheme_file(tmp_path, {"indicators": {"list": [{"code": "x", "parent": "idx", "normalise": {
        "method": "ordinal", "map": {4: 100, 3: 80, 2: 60, 1: 0}}}]}})
    df = pl.DataFrame({"u": ["a", "b", "c"], "x": ["4", "3", "1"]})
    assert run(units_from_frame(df, s, unit="u"), s).score == pytest.approx([100, 80, 0])


def test_half_up_is_symmetric_for_negative_scores():
    assert list(round_scores(np.array([-84.995, -0.125, 84.995]), 2, "half_up")) == [-85.0, -0.13, 85.0]


def test_a_veto_reads_the_imputed_value_it_is_scored_on(tmp_path):
    s = _tree(tmp_path, {"impute": [{"method": "last_value"}],
                         "adjust": {"vetoes": [{"name": "事故", "indicator": "a", "op": ">", "value": 0,
                                                "effect": "cap_score", "cap": 10}]}})
    df = pl.DataFrame({"u": ["p", "q"], "a": [None, 0.0], "b": [50.0, 50.0]})
    prev = pl.DataFrame({"u": ["p"], "a": [2.0], "b": [50.0]})
    app = run(units_from_frame(df, s, unit="u", previous=prev), s)
    assert app.vetoes[0] == ("事故",) and app.score[0] == pytest.approx(10)


def test_quota_shares_do_not_gain_a_title_from_float_error(tmp_path):
    s = _tree(tmp_path, {
        "ranking": {"round": 2, "basis": "rounded", "ties": "min"},
        "awards": {"quota_rounding": "ceil", "tie_at_quota": "exclude",
                   "campaigns": [{"campaign": "示范社区", "node": "idx"}],
                   "tiers": [{"tier": "区级", "scope": "district", "quota": {"share": 0.07}}]}})
    n = 100
    vals = [float(v) for v in range(n)]
    df = pl.DataFrame({"u": [f"c{i:03d}" for i in range(n)], "a": vals, "b": vals,
                       "district_code": ["D"] * n, "district": ["区"] * n})
    app = run(units_from_frame(df, s, unit="u", groups=["district_code"]), s)
    aw = award_titles(app, df.rename({"u": "community_code"}))
    assert aw.height == 7 and aw["quota"][0] == 7                        # 0.07 x 100 = 7, not 8


def test_published_bonus_has_no_float_noise(tmp_path):
    """A bonus stopped by max_score is max_score - root; it is published rounded by the ranking's declared
    rounding, so 100 - 98.1 reads 1.9, not 1.9000000000000057."""
    s = _tree(tmp_path, {
        "adjust": {"bonus": {"cap": 3, "max_score": 100, "items": [
            {"name": "特色", "indicator": "f", "op": ">=", "value": 1, "points": 3}]}},
        "ranking": {"round": 2, "round_mode": "half_up", "basis": "rounded", "ties": "min"}})
    df = pl.DataFrame({"u": ["a", "b"], "a": [98.1, 50.0], "b": [98.1, 50.0], "f": [1.0, 1.0]})
    app = run(units_from_frame(df, s, unit="u"), s)
    assert 100 - 98.1 != 1.9                       # the noise this test guards against
    assert list(app.bonus) == [1.9, 3.0]
