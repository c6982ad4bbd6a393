"""The COINr methods the engine lacked (issue 16), each held to COINr's R source on small vectors: the
expected values are computed in each test by the formula written out independently (numpy on the raw vector),
and a few are literal numbers worked by hand:

- Box-Cox, COINr R/treat.R boxcox(x, lambda = 0.5, makepos = TRUE): x - min + 1 then (x^0.5 - 1) / 0.5.
  For x = (1 x12, 50, 60): 1 -> (1 - 1) / 0.5 = 0; 50 -> 2 (sqrt 50 - 1) = 2 (7.0710678 - 1) = 12.1421356;
  60 -> 2 (sqrt 60 - 1) = 2 (7.7459667 - 1) = 13.4919334.
- log_CT_plus, COINr R/treat.R log_CT_plus(): a = 0.01 (max - min). For x = (1 x12, 50, 60) the skew is positive:
  a = 0.01 x 59 = 0.59, log(x - 1 + 0.59): 1 -> ln 0.59 = -0.5276327; 60 -> ln 59.59 = 4.0874878. For the mirrored
  x = (-1 x12, -50, -60) the skew is negative: -log(max + a - x) = -log(-1 + 0.59 - x): -1 -> -ln 0.59 = 0.5276327;
  -60 -> -ln 59.59 = -4.0874878.
- dist2max, COINr R/normalise.R n_dist2max(): 1 - (max - x) / (max - min). x = (2, 4, 6, 10): 1 - 8/8 = 0,
  1 - 6/8 = 0.25, 1 - 4/8 = 0.5, 1 - 0/8 = 1.
- fracmax, n_fracmax(): x / max = (0.2, 0.4, 0.6, 1).
- dist2ref, n_dist2ref(x, iref = 3): 1 - (6 - x) / (6 - 2) = (0, 0.5, 1, 2); with cap_max (0, 0.5, 1, 1).
- rank, n_rank() = rank(x, ties.method = "min"): x = (5, 1, 3, 3) -> (4, 1, 2, 2) (the average would give 2.5).
- panel imputation, R/impute.R impute_panel(imp_type = "linear") = approx(t, y, rule = 2): a unit with 10 in
  2024Q1 and 22 in 2024Q4 gets 10 + (22 - 10) x 1/3 = 14 in 2024Q2 and 18 in 2024Q3.
"""

import numpy as np
import polars as pl
import pytest
import yaml

from shequ.appraisal import SchemeError, load_scheme, run, units_from_frame
from shequ.appraisal.engine import Units, _moments, normalise_column, panel_fill, treat, treat_column

OUTLIERS = np.array([1.0] * 12 + [50.0, 60.0])      # fails |skew| >= 2 and kurt >= 3.5 (skew 2.34, kurt 4.16)


def skew_type2(x):
    """e1071 type-2 skewness written out (COINr R/treat.R skew())."""
    x = np.asarray(x, float)
    n = len(x)
    d = x - x.mean()
    return np.sqrt(n) * (d ** 3).sum() / (d ** 2).sum() ** 1.5 * np.sqrt(n * (n - 1)) / (n - 2)


def test_the_outlier_vector_fails_the_skew_kurtosis_check():
    sk, ku = _moments(OUTLIERS)
    assert sk == pytest.approx(skew_type2(OUTLIERS)) and sk >= 2 and ku >= 3.5


@pytest.mark.parametrize("lam", [0.5, 0.0, 2.0, -1.0])
def test_boxcox_fallback_is_coinr_boxcox_on_the_original_column(lam):
    t, flags, label = treat_column(OUTLIERS, 2.0, 3.5, 0, {"method": "boxcox", "lambda": lam})
    shifted = OUTLIERS - OUTLIERS.min() + 1                         # makepos: x - min(x) + 1
    expected = np.log(shifted) if lam == 0 else (shifted ** lam - 1) / lam
    assert label == "boxcox" and (flags == 3).all()
    assert t == pytest.approx(expected, rel=1e-12)
    if lam == 0.5:
        assert t[[0, 12, 13]] == pytest.approx([0.0, 12.1421356, 13.4919334], abs=1e-7)


def test_boxcox_without_makepos_transforms_the_values_as_they_are():
    x = OUTLIERS + 5
    t, _, _ = treat_column(x, 2.0, 3.5, 0, {"method": "boxcox", "lambda": 2, "makepos": False})
    assert t == pytest.approx((x ** 2 - 1) / 2, rel=1e-12)


def test_boxcox_is_applied_to_the_original_not_the_winsorised_column():
    """COINr's Treat(combine_treat = FALSE): when winsorising winmax points does not pass, f2 is applied to the
    original x. One point winsorised (60 -> 50) still fails (skew 2.29, kurt 3.79), so Box-Cox takes the 60."""
    t, flags, label = treat_column(OUTLIERS, 2.0, 3.5, 1, {"method": "boxcox", "lambda": 0.5})
    assert label == "boxcox"
    assert t[13] == pytest.approx(2 * (np.sqrt(60.0) - 1))


def test_log_ct_plus_positive_skew_is_coinr_log_ct():
    t, flags, label = treat_column(OUTLIERS, 2.0, 3.5, 0, "log_CT_plus")
    a = 0.01 * (OUTLIERS.max() - OUTLIERS.min())
    assert label == "log" and (flags == 2).all()
    assert t == pytest.approx(np.log(OUTLIERS - OUTLIERS.min() + a), rel=1e-12)
    assert t[[0, 13]] == pytest.approx([-0.5276327, 4.0874878], abs=1e-7)
    log_ct, _, _ = treat_column(OUTLIERS, 2.0, 3.5, 0, "log")
    assert np.array_equal(t, log_ct)


def test_log_ct_plus_negative_skew_is_mirrored():
    x = -OUTLIERS
    assert skew_type2(x) < 0
    t, flags, label = treat_column(x, 2.0, 3.5, 0, "log_CT_plus")
    a = 0.01 * (x.max() - x.min())
    assert label == "log_neg" and (flags == 2).all()
    assert t == pytest.approx(-np.log(x.max() + a - x), rel=1e-12)
    assert t[[0, 13]] == pytest.approx([0.5276327, -4.0874878], abs=1e-7)
    # the plain COIN Tool log would have stretched the long LOW tail instead
    plain, _, _ = treat_column(x, 2.0, 3.5, 0, "log")
    assert abs(skew_type2(t)) < abs(skew_type2(plain))


def scheme_file(tmp_path, body: dict):
    doc = {"scheme_id": "t", "version": "1", "tree": {"root": "idx", "nodes": [{"code": "idx"}]}, **body}
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return load_scheme(p)


def test_treat_fallback_from_a_scheme_and_screened_out_units_mapped_with_the_pool(tmp_path):
    """`treat: {fallback: {method: boxcox, lambda: 0.5}}`; a unit screened out (no other indicator) is mapped by
    the pool's fitted transformation (shift by the pool's minimum, held at 0 below it)."""
    s = scheme_file(tmp_path, {
        "indicators": {"list": [{"code": "x", "parent": "idx", "normalise": {"method": "identity"}},
                                {"code": "y", "parent": "idx", "normalise": {"method": "identity"}}]},
        "screen": {"min_availability": 1.0},
        "treat": {"method": "skew_kurt", "skew": 2, "kurt": 3.5, "winmax": 1,
                  "fallback": {"method": "boxcox", "lambda": 0.5}, "apply_to": "all"}})
    xs = [*OUTLIERS.tolist(), 0.0]
    df = pl.DataFrame({"u": [f"u{i:02d}" for i in range(len(xs))], "x": xs,
                       "y": [1.0] * len(OUTLIERS) + [None]}, strict=False)
    app = run(units_from_frame(df, s, unit="u"), s)
    assert not app.eligible[-1]
    expected = (np.sqrt(OUTLIERS - 1 + 1) - 1) / 0.5
    assert app.treated[:-1, 0] == pytest.approx(expected)
    assert app.treated[-1, 0] == pytest.approx((np.sqrt(0 + 1) - 1) / 0.5)     # 0 < pool min 1: held at 0
    assert [r["treatment"] for r in app.treat_summary if r["indicator"] == "x"] == ["boxcox"]


def test_unknown_or_incomplete_fallback_is_refused_in_chinese(tmp_path):
    body = {"indicators": {"list": [{"code": "x", "parent": "idx"}]}}
    with pytest.raises(SchemeError, match="boxcox 时需要数值 lambda"):
        scheme_file(tmp_path, {**body, "treat": {"method": "skew_kurt", "fallback": {"method": "boxcox"}}})
    with pytest.raises(SchemeError, match="不支持"):
        scheme_file(tmp_path, {**body, "treat": {"method": "skew_kurt", "fallback": "sqrt"}})


X4 = np.array([2.0, 4.0, 6.0, 10.0])


def norm(x, m, direction=1, fit=None, codes=None):
    return normalise_column(np.asarray(x, float), m, direction, None, fit, codes)


def test_dist2max():
    mn, mx = X4.min(), X4.max()
    assert norm(X4, {"method": "dist2max"}) == pytest.approx(1 - (mx - X4) / (mx - mn))
    assert norm(X4, {"method": "dist2max"}) == pytest.approx([0, 0.25, 0.5, 1])
    # COINr multiplies by the direction first: -x, so the lowest value scores 1
    xd = -X4
    assert norm(X4, {"method": "dist2max"}, -1) == pytest.approx(1 - (xd.max() - xd) / (xd.max() - xd.min()))
    assert norm(X4, {"method": "dist2max", "scale": 100}) == pytest.approx([0, 25, 50, 100])


def test_fracmax():
    assert norm(X4, {"method": "fracmax"}) == pytest.approx(X4 / X4.max())
    assert norm(X4, {"method": "fracmax"}) == pytest.approx([0.2, 0.4, 0.6, 1.0])
    xd = -X4                                    # direction -1: (-x) / max(-x), as COINr computes it
    assert norm(X4, {"method": "fracmax"}, -1) == pytest.approx(xd / xd.max())


def test_dist2ref_by_position_and_by_unit_code():
    ref = X4[2]
    expected = 1 - (ref - X4) / (ref - X4.min())
    assert norm(X4, {"method": "dist2ref", "iref": 3}) == pytest.approx(expected)
    assert norm(X4, {"method": "dist2ref", "iref": 3}) == pytest.approx([0, 0.5, 1, 2])
    codes = np.array(["a", "b", "c", "d"])
    assert norm(X4, {"method": "dist2ref", "ref": "c"}, codes=codes) == pytest.approx(expected)
    assert norm(X4, {"method": "dist2ref", "ref": "c", "cap_max": True}, codes=codes) == pytest.approx(
        np.minimum(expected, 1))
    with pytest.raises(SchemeError, match="参照单位"):
        norm(X4, {"method": "dist2ref", "ref": "z"}, codes=codes)


def test_relative_parameters_come_from_the_fitted_units_only():
    x = np.array([2.0, 4.0, 6.0, 10.0, 20.0])
    fit = np.array([True, True, True, True, False])
    d = norm(x, {"method": "dist2max"}, fit=fit)
    assert d[:4] == pytest.approx([0, 0.25, 0.5, 1]) and d[4] == 1.0          # held to [0, 1]
    assert norm(x, {"method": "fracmax"}, fit=fit) == pytest.approx(x / 10)


def r_rank(x, ties):
    """R's rank(x, ties.method) written out: 1 + the number of values below (min), or below plus equal (max),
    or their mean (average)."""
    x = np.asarray(x, float)
    below = np.array([(x < v).sum() for v in x])
    equal = np.array([(x == v).sum() for v in x])
    return {"min": below + 1, "max": below + equal, "average": below + (equal + 1) / 2}[ties]


@pytest.mark.parametrize("ties", ["min", "max", "average"])
@pytest.mark.parametrize("values", [[5.0, 1.0, 3.0, 3.0], [2.0, 2.0, 2.0, 7.0, 1.0, 7.0]])
def test_rank_ties(values, ties):
    m = {"method": "rank", "ties": ties}
    assert norm(values, m) == pytest.approx(r_rank(values, ties))
    assert norm(values, m, -1) == pytest.approx(r_rank(-np.asarray(values), ties))
    p = norm(values, {"method": "percentile", "ties": ties})
    assert p == pytest.approx((r_rank(values, ties) - 1) / (len(values) - 1) * 100)    # COINr n_prank() x 100


def test_rank_min_ties_literal_and_default_unchanged(tmp_path):
    assert norm([5.0, 1.0, 3.0, 3.0], {"method": "rank", "ties": "min"}) == pytest.approx([4, 1, 2, 2])
    assert norm([5.0, 1.0, 3.0, 3.0], {"method": "rank"}) == pytest.approx([4, 1, 2.5, 2.5])
    with pytest.raises(SchemeError, match="ties"):
        scheme_file(tmp_path, {"indicators": {"list": [{"code": "x", "parent": "idx",
                                                         "normalise": {"method": "rank", "ties": "dense"}}]}})


def test_new_normalisations_declared_in_a_scheme(tmp_path):
    s = scheme_file(tmp_path, {"indicators": {"list": [
        {"code": "a", "parent": "idx", "normalise": {"method": "dist2max", "scale": 100}},
        {"code": "b", "parent": "idx", "normalise": {"method": "fracmax", "scale": 100}},
        {"code": "c", "parent": "idx", "normalise": {"method": "dist2ref", "ref": "u3", "cap_max": True,
                                                     "scale": 100}},
        {"code": "d", "parent": "idx", "normalise": {"method": "rank", "ties": "min"}}]}})
    df = pl.DataFrame({"u": ["u1", "u2", "u3", "u4"], "a": X4, "b": X4, "c": X4, "d": [5.0, 1.0, 3.0, 3.0]})
    app = run(units_from_frame(df, s, unit="u"), s)
    assert app.normalised[:, 0] == pytest.approx([0, 25, 50, 100])
    assert app.normalised[:, 1] == pytest.approx([20, 40, 60, 100])
    assert app.normalised[:, 2] == pytest.approx([0, 50, 100, 100])
    assert app.normalised[:, 3] == pytest.approx([4, 1, 2, 2])
    with pytest.raises(SchemeError, match="ref"):
        scheme_file(tmp_path, {"indicators": {"list": [{"code": "x", "parent": "idx",
                                                         "normalise": {"method": "dist2ref"}}]}})


def approx_rule2(t, y, t0, kind="linear"):
    """R's stats::approx(t, y, xout = t0, rule = 2, method) for one series, written out."""
    t, y = np.asarray(t, float), np.asarray(y, float)
    ok = np.isfinite(y)
    t, y = t[ok], y[ok]
    if not len(t):
        return np.nan
    if t0 <= t.min():
        return y[t.argmin()]
    if t0 >= t.max():
        return y[t.argmax()]
    i1 = np.nonzero(t <= t0)[0][np.argmax(t[t <= t0])]
    i2 = np.nonzero(t >= t0)[0][np.argmin(t[t >= t0])]
    if kind == "constant" or t[i1] == t[i2]:
        return y[i1]
    return y[i1] + (y[i2] - y[i1]) * (t0 - t[i1]) / (t[i2] - t[i1])


def test_panel_interpolation_matches_approx_rule_2():
    # quarters 2024Q1..Q4 as 0..3; the appraised quarter is t = 1 (2024Q2); 5 units x 2 indicators
    times = np.array([0.0, 2.0, 3.0])
    H = np.array([
        [[10, 1], [np.nan, 5], [7, np.nan], [np.nan, np.nan], [3, 3]],     # t = 0
        [[np.nan, 2], [8, np.nan], [np.nan, np.nan], [np.nan, np.nan], [4, 4]],   # t = 2
        [[22, 9], [np.nan, 9], [np.nan, np.nan], [6, np.nan], [5, 5]],     # t = 3
    ], dtype=float)
    X = np.array([[np.nan, np.nan], [np.nan, np.nan], [np.nan, np.nan], [np.nan, np.nan], [100, np.nan]])
    for kind in ("linear", "constant"):
        out = panel_fill(X, H, times, 1.0, kind)
        for i in range(5):
            for j in range(2):
                want = X[i, j] if np.isfinite(X[i, j]) else approx_rule2(times, H[:, i, j], 1.0, kind)
                assert out[i, j] == pytest.approx(want, nan_ok=True), (kind, i, j)
    lin = panel_fill(X, H, times, 1.0)
    assert lin[0, 0] == pytest.approx(14.0)       # 10 + (22 - 10) x 1/3 (2024Q1 10, 2024Q4 22; Q3 missing)
    assert lin[0, 1] == pytest.approx(1.5)        # 1 + (2 - 1) x 1/2
    assert lin[1, 0] == 8 and lin[2, 0] == 7      # one side only: its nearest value (rule = 2)
    assert np.isnan(lin[3, 1])                    # never observed: stays missing
    assert lin[4, 0] == 100                       # reported values are untouched


def test_panel_imputation_step_in_a_run(tmp_path):
    s = scheme_file(tmp_path, {"indicators": {"list": [{"code": "x", "parent": "idx",
                                                         "normalise": {"method": "identity"}}]},
                               "impute": [{"method": "panel"}, {"method": "constant", "value": 0}]})
    X = np.array([[np.nan], [5.0], [np.nan]])
    H = np.array([[[10.0], [1.0], [np.nan]], [[22.0], [1.0], [np.nan]]])
    u = Units(codes=np.array(["a", "b", "c"]), names=np.array(["a", "b", "c"]), X=X, indicators=["x"],
              history=H, history_t=np.array([0.0, 3.0]), t_now=1.0)
    app = run(u, s)
    assert app.imputed[:, 0] == pytest.approx([14.0, 5.0, 0.0])    # c: no history, the next step's constant
    assert app.imputed_mask[:, 0].tolist() == [True, False, True]
    # without a history (no panel loaded) the step is skipped, as last_value is without a previous quarter
    u2 = Units(codes=u.codes, names=u.names, X=X, indicators=["x"])
    assert run(u2, s).imputed[:, 0] == pytest.approx([0.0, 5.0, 0.0])


def test_treat_still_pools_winsorisation(tmp_path):
    """The default log fallback is unchanged by the new fallbacks (same call path)."""
    s = scheme_file(tmp_path, {"indicators": {"list": [{"code": "x", "parent": "idx",
                                                         "normalise": {"method": "identity"}}]},
                               "treat": {"method": "skew_kurt", "winmax": 0, "fallback": "log", "apply_to": "all"}})
    u = units_from_frame(pl.DataFrame({"u": [f"u{i}" for i in range(14)], "x": OUTLIERS}), s, unit="u")
    Xt, _, _ = treat(OUTLIERS[:, None], u, s)
    a = 0.01 * 59
    assert Xt[:, 0] == pytest.approx(np.log(OUTLIERS - 1 + a))


def test_the_warehouse_loads_the_panel_only_when_the_scheme_asks(con):
    """load_units reads the other quarters (both sides, within `window`) only for a scheme with a panel step; the
    default scheme reads none. The stack holds each quarter's reported values of the same communities."""
    import copy

    from shequ.appraisal.store import load_units

    default = load_scheme()
    u, _ = load_units(con, "2024Q1", default)
    assert u.history is None
    panel = copy.copy(default)
    panel.doc = {**default.doc, "impute": [{"method": "panel", "window": 1}]}
    u, units_df = load_units(con, "2024Q1", panel)
    assert u.history_t.tolist() == [2023 * 4 + 3, 2024 * 4 + 1] and u.t_now == 2024 * 4
    assert u.history.shape == (2, u.n, len(panel.indicators))
    ind = panel.indicators[0]
    facts = con.sql(f"""SELECT d.community_code, f.value FROM fact_indicator_value f JOIN dim_community d
                        USING (community_key) WHERE f.period_key = '2024Q2' AND f.indicator_code = '{ind}'""").pl()
    got = dict(zip(u.codes.tolist(), u.history[1, :, 0].tolist()))
    for code, v in facts.iter_rows():
        if code in got and v is not None:
            assert got[code] == pytest.approx(v)
    later = copy.copy(default)
    later.doc = {**default.doc, "impute": [{"method": "panel", "window": 1, "later": False}]}
    assert load_units(con, "2024Q1", later)[0].history_t.tolist() == [2023 * 4 + 3]


@pytest.mark.parametrize("step,message", [({"method": "panel", "type": "spline"}, "type 应为 linear"),
                                          ({"method": "panel", "window": 0}, "window"),
                                          ({"method": "panel", "window": "all"}, "window")])
def test_bad_panel_step_is_refused_in_chinese(tmp_path, step, message):
    with pytest.raises(SchemeError, match=message):
        scheme_file(tmp_path, {"indicators": {"list": [{"code": "x", "parent": "idx"}]}, "impute": [step]})
