"""A scheme node may be derived from two other nodes' scores (issue 16, item 3): `derive: {op: ratio | product |
difference, of: [a, b]}`. The UNDP Gender Development Index is the case: two HDI-style sub-indices on
sex-specific goalposts, GDI = HDI_female / HDI_male, then five groups on the ratio with inclusive bounds.
Every expected value below is worked by hand in the comments."""

import numpy as np
import polars as pl
import pytest
import yaml

from shequ.appraisal import SchemeError, load_scheme, run, units_from_frame
from shequ.appraisal.mc import Series, run_uncertainty
from shequ.appraisal.store import _score_table

# UNDP HDR technical notes, GDI goalposts: life expectancy female 22.5-87.5, male 17.5-82.5 years; expected
# schooling 0-18, mean schooling 0-15 years; GNI per capita 100-75,000 (2017 PPP $, logarithm).
GDI_SCHEME = {
    "scheme_id": "gdi", "version": "1", "level_names": {1: "指标", 2: "维度", 3: "分性别指数", 4: "指数"},
    "tree": {"root": "GDI", "nodes": [
        {"code": "GDI", "name": "性别发展指数", "derive": {"op": "ratio", "of": ["HDI_f", "HDI_m"]}},
        {"code": "HDI_f", "name": "女性HDI", "parent": "GDI", "aggregation": "geometric"},
        {"code": "HDI_m", "name": "男性HDI", "parent": "GDI", "aggregation": "geometric"},
        *[{"code": f"{d}_{s}", "parent": f"HDI_{s}"} for s in "fm" for d in ("health", "edu", "income")]]},
    "indicators": {"list": [
        {"code": "le_f", "parent": "health_f", "normalise": {"method": "goalposts", "min": 22.5, "max": 87.5,
                                                             "scale": 1}},
        {"code": "le_m", "parent": "health_m", "normalise": {"method": "goalposts", "min": 17.5, "max": 82.5,
                                                             "scale": 1}},
        *[{"code": f"eys_{s}", "parent": f"edu_{s}", "normalise": {"method": "goalposts", "min": 0, "max": 18,
                                                                  "scale": 1}} for s in "fm"],
        *[{"code": f"mys_{s}", "parent": f"edu_{s}", "normalise": {"method": "goalposts", "min": 0, "max": 15,
                                                                  "scale": 1}} for s in "fm"],
        *[{"code": f"gni_{s}", "parent": f"income_{s}",
           "normalise": {"method": "goalposts", "min": 100, "max": 75000, "log": True, "scale": 1}} for s in "fm"]]},
    "aggregate": {"method": "arithmetic"},           # education = mean of the two schooling indices
    "ranking": {"round": 3, "basis": "rounded", "ties": "min", "scopes": [{"name": "world"}]},
    "grades": {"round": 3, "bands": [                # UNDP's five GDI groups, bounds inclusive, on the 3-dp GDI;
        {"grade": "组1", "min": 0.975, "max": 1.025},  # the first band that holds the value wins, so group 2 is
        {"grade": "组2", "min": 0.950, "max": 1.050},  # [0.950, 0.975) and (1.025, 1.050], and so on
        {"grade": "组3", "min": 0.925, "max": 1.075},
        {"grade": "组4", "min": 0.900, "max": 1.100},
        {"grade": "组5"}]},
    "uncertainty": {"draws": 20, "seed": 3, "weights": {"noise": {2: 0.25}}},
}


def gni(index):
    """The GNI per capita whose log-goalpost index is ``index``: ln(g / 100) / ln(750) = index."""
    return 100 * 750 ** index


# Three countries, each dimension index chosen so the geometric means are exact by hand:
#   A: female dimensions 0.84, 0.84, 0.84 -> HDI_f 0.84; male 0.80 x3 -> HDI_m 0.80
#      le_f = 22.5 + 65 x 0.84 = 77.1; eys_f = 18 x 0.84 = 15.12; mys_f = 15 x 0.84 = 12.6
#      le_m = 17.5 + 65 x 0.80 = 69.5; eys_m = 14.4; mys_m = 12.0
#   B: female health (87.5 - 22.5) / 65 = 1, education (12.24 / 18 + 9 / 15) / 2 = (0.68 + 0.60) / 2 = 0.64,
#      income 0.8 -> HDI_f = (1 x 0.64 x 0.8)^(1/3) = 0.512^(1/3) = 0.8; male 0.85 x3 -> HDI_m 0.85
#      le_m = 17.5 + 65 x 0.85 = 72.75; eys_m = 15.3; mys_m = 12.75
#   C: female 0.78 x3 -> HDI_f 0.78 (le_f = 22.5 + 50.7 = 73.2; eys_f = 14.04; mys_f = 11.7); male as A, 0.80
COUNTRIES = pl.DataFrame({
    "iso": ["A", "B", "C"],
    "le_f": [77.1, 87.5, 73.2], "eys_f": [15.12, 12.24, 14.04], "mys_f": [12.6, 9.0, 11.7],
    "gni_f": [gni(0.84), gni(0.8), gni(0.78)],
    "le_m": [69.5, 72.75, 69.5], "eys_m": [14.4, 15.3, 14.4], "mys_m": [12.0, 12.75, 12.0],
    "gni_m": [gni(0.8), gni(0.85), gni(0.8)],
})


def load(tmp_path, doc, name="s.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return load_scheme(p)


@pytest.fixture
def gdi(tmp_path):
    s = load(tmp_path, GDI_SCHEME)
    return run(units_from_frame(COUNTRIES, s, unit="iso"), s)


def test_sex_specific_hdis_on_their_own_goalposts(gdi):
    assert gdi.nodes["health_f"] == pytest.approx([0.84, 1.0, 0.78])
    assert gdi.nodes["health_m"] == pytest.approx([0.80, 0.85, 0.80])   # same 69.5 years: 0.80 on male posts
    assert gdi.nodes["edu_f"] == pytest.approx([0.84, 0.64, 0.78])
    assert gdi.nodes["HDI_f"] == pytest.approx([0.84, 0.80, 0.78])
    assert gdi.nodes["HDI_m"] == pytest.approx([0.80, 0.85, 0.80])


def test_gdi_is_the_ratio_and_grouped_with_inclusive_bounds(gdi):
    # A: 0.84 / 0.80 = 1.05; B: 0.80 / 0.85 = 0.941176...; C: 0.78 / 0.80 = 0.975
    assert gdi.nodes["GDI"] == pytest.approx([1.05, 0.9411764705882353, 0.975])
    assert gdi.score_rounded.tolist() == [1.05, 0.941, 0.975]
    # A 1.050: outside group 1's 1.025, on group 2's upper bound (inclusive) -> 组2
    # B 0.941: below 0.950, inside [0.925, 1.075] -> 组3
    # C 0.975: on group 1's lower bound (inclusive) -> 组1
    assert gdi.grade.tolist() == ["组2", "组3", "组1"]
    assert gdi.ranks[("GDI", "world")].tolist() == [1, 3, 2]


def test_derived_nodes_are_stored_like_other_nodes(gdi):
    t = pl.from_arrow(_score_table(gdi, True))
    got = {(r["entity_code"], r["node_code"]): r for r in t.iter_rows(named=True)}
    assert got[("B", "GDI")]["score"] == pytest.approx(0.8 / 0.85)
    assert got[("B", "GDI")]["node_level"] == "指数" and got[("B", "HDI_f")]["node_level"] == "分性别指数"
    assert got[("C", "HDI_m")]["score"] == pytest.approx(0.8)
    # a ratio has no weighted shares: the sub-indices (and everything under them) carry no weight
    assert got[("A", "HDI_f")]["weight"] is None and got[("A", "le_f")]["weight"] is None
    assert got[("A", "GDI")]["weight"] == 1.0


def test_monte_carlo_recomputes_the_ratio_in_every_draw(gdi):
    """Dimension weights x U(0.75, 1.25) move each HDI; the GDI is re-derived from them in every draw."""
    ua = run_uncertainty(gdi, [Series("gdi", "GDI", None)])
    st = ua.stats["gdi"]
    assert np.isfinite(st["median"]).all() and (st["q_low"] >= 1).all() and (st["q_high"] <= 3).all()
    # A and C have equal dimension indices, so their HDIs (and GDIs 1.05, 0.975) do not move with the weights.
    # B's HDI_f = exp((w1 ln 1 + w2 ln 0.64 + w3 ln 0.8) / (w1 + w2 + w3)) lies in [0.773, 0.833] for weights in
    # [0.75, 1.25] (0.773 at w = 0.75, 1.25, 1.25; 0.833 at 1.25, 0.75, 0.75), so its GDI in [0.909, 0.980]:
    # never above A's 1.05, sometimes above C's 0.975. A is first in every draw; B is 2nd or 3rd.
    assert st["q_low"][0] == st["q_high"][0] == 1
    R = np.array([p["weights"] for p in ua.params])
    assert len(R) == 20 and 2 <= st["q_low"][1] <= st["q_high"][1] == 3


def test_product_and_difference_and_ratio_by_zero(tmp_path):
    doc = {"scheme_id": "d", "version": "1",
           "tree": {"root": "idx", "nodes": [
               {"code": "idx"},
               {"code": "gap", "parent": "idx", "weight": 2, "derive": {"op": "difference", "of": ["x", "y"]}},
               {"code": "prod", "parent": "side", "derive": {"op": "product", "of": ["x", "y"]}},
               {"code": "rat", "parent": "side", "derive": {"op": "ratio", "of": ["x", "y"]}},
               {"code": "side", "parent": "idx", "weight": 0}]},
           "indicators": {"list": [{"code": "x", "parent": "idx", "normalise": {"method": "identity"}},
                                   {"code": "y", "parent": "idx", "normalise": {"method": "identity"}}]}}
    s = load(tmp_path, doc)
    df = pl.DataFrame({"u": ["p", "q", "r"], "x": [10.0, 4.0, 3.0], "y": [6.0, 8.0, 0.0]})
    app = run(units_from_frame(df, s, unit="u"), s)
    assert app.nodes["gap"].tolist() == [4.0, -4.0, 3.0]           # 10 - 6, 4 - 8, 3 - 0
    assert app.nodes["prod"].tolist() == [60.0, 32.0, 0.0]         # 10 x 6, 4 x 8, 3 x 0
    assert app.nodes["rat"][:2].tolist() == [10 / 6, 0.5] and np.isnan(app.nodes["rat"][2])   # 3 / 0: no score
    # idx = (x + y + 2 gap + 0 side) / 4: p (10 + 6 + 8) / 4 = 6; q (4 + 8 - 8) / 4 = 1; r (3 + 0 + 6) / 4 = 2.25
    assert app.score.tolist() == [6.0, 1.0, 2.25]


@pytest.mark.parametrize("derive,message", [
    ({"op": "quotient", "of": ["x", "y"]}, "运算 'quotient' 不支持"),
    ({"op": "ratio", "of": ["x"]}, "应恰好列出两个节点"),
    ({"op": "ratio", "of": ["x", "nope"]}, "引用的节点 nope 不存在"),
    ({"op": "ratio", "of": ["d", "x"]}, "不能引用自身"),
    ("ratio", "derive 应为映射"),
])
def test_bad_derive_is_refused_in_chinese(tmp_path, derive, message):
    doc = {"scheme_id": "d", "version": "1",
           "tree": {"root": "idx", "nodes": [{"code": "idx"}, {"code": "d", "parent": "idx", "derive": derive}]},
           "indicators": {"list": [{"code": "x", "parent": "idx"}, {"code": "y", "parent": "idx"}]}}
    with pytest.raises(SchemeError, match=message):
        load(tmp_path, doc)


def test_cycles_and_stray_children_are_refused(tmp_path):
    base = {"scheme_id": "d", "version": "1",
            "indicators": {"list": [{"code": "x", "parent": "idx"}, {"code": "y", "parent": "idx"}]}}
    cyc = {**base, "tree": {"root": "idx", "nodes": [
        {"code": "idx"}, {"code": "p", "parent": "idx", "derive": {"op": "ratio", "of": ["q", "x"]}},
        {"code": "q", "parent": "idx", "derive": {"op": "ratio", "of": ["p", "x"]}}]}}
    with pytest.raises(SchemeError, match="环"):
        load(tmp_path, cyc)
    stray = {**base, "tree": {"root": "r", "nodes": [
        {"code": "r", "derive": {"op": "ratio", "of": ["idx", "x"]}}, {"code": "idx", "parent": "r"},
        {"code": "z", "parent": "r"}]},
        "indicators": {"list": [{"code": "x", "parent": "idx"}, {"code": "w", "parent": "z"}]}}
    with pytest.raises(SchemeError, match="不是它的运算对象"):
        load(tmp_path, stray)
