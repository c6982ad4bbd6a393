"""Correlations, their flags, Cronbach's alpha, the first principal component's share and the weight
optimisation on small constructed data whose answers are known by hand (shequ/appraisal/analysis.py)."""

import numpy as np
import polars as pl
import pytest
import yaml

from shequ.appraisal import load_scheme, run, units_from_frame
from shequ.appraisal.analysis import correlation, importances, optimise_weights, reliability
from shequ.robustness import parse_target


def _scheme(tmp_path, weights=(1, 1, 1)):
    ident = {"method": "identity"}
    doc = {"scheme_id": "t", "version": "1",
           "tree": {"root": "idx", "nodes": [{"code": "idx"}] + [
               {"code": c, "parent": "idx", "weight": w} for c, w in zip(("安居", "治理", "服务"), weights)]},
           "indicators": {"list": [{"code": c, "parent": p, "normalise": ident} for c, p in (
               ("a1", "安居"), ("a2", "安居"), ("b1", "治理"), ("b2", "治理"), ("c1", "服务"), ("c2", "服务"))]}}
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return load_scheme(p)


@pytest.fixture
def case(tmp_path):
    rng = np.random.default_rng(3)
    n = 40
    a1 = rng.normal(50, 10, n)
    b1 = rng.normal(50, 10, n)
    c1 = rng.normal(50, 10, n)
    df = pl.DataFrame({"u": [f"u{i}" for i in range(n)],
                       "a1": a1, "a2": 2 * a1 + rng.normal(0, 1, n),        # collinear with a1
                       "b1": b1, "b2": 100 - b1 + rng.normal(0, 4, n),      # negatively correlated with b1
                       "c1": c1, "c2": rng.normal(50, 10, n)})             # unrelated
    s = _scheme(tmp_path)
    return df, s, run(units_from_frame(df, s, unit="u"), s)


def test_correlations_and_flags_match_numpy(case):
    df, _, app = case
    c = correlation(app)
    within = {(r["node_a"], r["node_b"]): r for r in c.filter(pl.col("kind") == "within").iter_rows(named=True)}
    for a, b in (("a1", "a2"), ("b1", "b2"), ("c1", "c2")):
        assert within[(a, b)]["r"] == pytest.approx(np.corrcoef(df[a], df[b])[0, 1])
    assert within[("a1", "a2")]["flag"] == "collinear"
    assert within[("b1", "b2")]["flag"] == "negative"
    assert within[("c1", "c2")]["flag"] is None
    par = {r["node_a"]: r for r in c.filter(pl.col("kind") == "parent").iter_rows(named=True)}
    assert par["a1"]["r"] == pytest.approx(np.corrcoef(df["a1"], (df["a1"] + df["a2"]) / 2)[0, 1])
    assert par["安居"]["parent_code"] == "idx" and par["安居"]["n_units"] == 40
    # Spearman: rank correlation, equal to Pearson of the ranks
    sp = correlation(app, "spearman").filter((pl.col("node_a") == "c1") & (pl.col("node_b") == "c2"))["r"][0]
    ra = np.argsort(np.argsort(df["c1"].to_numpy()))
    rb = np.argsort(np.argsort(df["c2"].to_numpy()))
    assert sp == pytest.approx(np.corrcoef(ra, rb)[0, 1])


def test_cronbach_alpha_and_first_component_by_hand(case):
    df, _, app = case
    rel = {r["node_code"]: r for r in reliability(app).iter_rows(named=True)}
    for node, (x, y) in {"安居": ("a1", "a2"), "治理": ("b1", "b2"), "服务": ("c1", "c2")}.items():
        a, b = df[x].to_numpy(), df[y].to_numpy()
        alpha = 2 * (1 - (a.var(ddof=1) + b.var(ddof=1)) / (a + b).var(ddof=1))
        assert rel[node]["cronbach_alpha"] == pytest.approx(alpha)
        # two standardised items: eigenvalues 1 +- |r|, so the first component carries (1 + |r|) / 2
        assert rel[node]["pc1_share"] == pytest.approx((1 + abs(np.corrcoef(a, b)[0, 1])) / 2)
    assert rel["安居"]["cronbach_alpha"] > 0.8 and rel["治理"]["cronbach_alpha"] < 0
    assert rel["idx"]["n_children"] == 3


def test_optimised_weights_reach_a_reachable_target(case):
    _, _, app = case
    codes = ["安居", "治理", "服务"]
    # a target that some weights reach: the importances at weights 0.6 / 0.25 / 0.15
    target = dict(zip(codes, importances(app, codes, {"安居": 0.6, "治理": 0.25, "服务": 0.15})))
    assert abs(target["安居"] - 1 / 3) > 0.1           # far from what equal weights give
    res = optimise_weights(app, target, tolerance=0.02)
    assert res.ok and res.max_error <= 0.02
    assert sum(res.weights.values()) == pytest.approx(3)        # the three categories keep their total weight
    # the weights returned do give those importances when the index is recomputed with them
    got = importances(app, codes, res.weights)
    assert np.abs(got - np.array([target[c] for c in codes])).max() <= 0.02


def test_unreachable_target_is_reported_not_faked(tmp_path):
    """服务 copies 安居 exactly, so their importances are always equal: 0.6 vs 0.1 cannot be reached."""
    rng = np.random.default_rng(4)
    n = 30
    a = rng.normal(50, 10, n)
    df = pl.DataFrame({"u": [f"u{i}" for i in range(n)], "a1": a, "a2": a, "b1": rng.normal(50, 10, n),
                       "b2": rng.normal(50, 10, n), "c1": a, "c2": a})
    s = _scheme(tmp_path)
    app = run(units_from_frame(df, s, unit="u"), s)
    res = optimise_weights(app, {"安居": 0.6, "治理": 0.3, "服务": 0.1}, tolerance=0.02)
    assert not res.ok and res.max_error > 0.1
    assert "未能" in res.message


def test_target_text_parsing():
    assert parse_target("安居:0.3，治理：0.3, 服务:40%") == {"安居": 0.3, "治理": 0.3, "服务": 0.4}
    with pytest.raises(ValueError, match="目标格式"):
        parse_target("安居=abc,治理:1")


def test_sensitivity_needs_two_uncertain_assumptions(case, tmp_path):
    from shequ.appraisal import SchemeError
    from shequ.appraisal.analysis import factors, sensitivity

    _, _, app = case
    assert factors(app) == []                      # the constructed scheme declares no uncertainty section
    with pytest.raises(SchemeError, match="uncertainty"):
        sensitivity(app)
