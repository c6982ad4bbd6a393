"""Issue 11: the Monte Carlo's shortcuts give, bit for bit, what the plain computation gives. The index is
re-aggregated from summands prepared once per configuration (prepare_rows / prepared_rows against
aggregate_rows), the score is adjusted without the published bonus (adjusted_score against adjust_scores),
and run_uncertainty as a whole (configurations drawn up front, indicator columns and categories shared by the
configurations that compute them from the same inputs, a category's ranks computed once per configuration)
against a plain re-run of the whole engine in every draw, on generated units with ties, missing values,
ineligible units and small groups."""

import dataclasses

import numpy as np
import pytest

from shequ.appraisal.engine import (Groups, adjust_scores, adjusted_score, adjustments, aggregate, aggregate_rows,
                                    normalise, rank_desc, round_scores, treat)
from shequ.appraisal.mc import Series, _rank_stats, prepare_rows, prepared_rows, run_uncertainty


def _matrix(rng, n, k, lo=1.0):
    C = rng.uniform(lo, 100, (n, k))
    C[rng.random((n, k)) < 0.15] = np.nan                  # missing children
    C[: n // 20] = np.nan                                  # rows with no child at all
    C[n // 20: n // 10] = C[n // 10: n // 10 + n // 20]    # tied rows
    C[-5:, 0] = np.inf                                     # not finite: treated as missing
    return C


@pytest.mark.parametrize("k", [1, 3, 8, 13, 20])
@pytest.mark.parametrize("method", ["arithmetic", "geometric"])
def test_prepared_rows_equal_aggregate_rows(k, method):
    rng = np.random.default_rng(k)
    C = _matrix(rng, 5000, k)
    for floor in (None, 1.0):
        p = prepare_rows(C, method, floor)
        for _ in range(20):
            w = rng.uniform(0.5, 30, k)
            assert np.array_equal(prepared_rows(p, w), aggregate_rows(C, w, method, floor), equal_nan=True)
        # weights that are zero, negative or not finite take the masked weights, as aggregate_rows does
        for w in (np.r_[0.0, rng.uniform(1, 5, k - 1)], -rng.uniform(1, 5, k), np.r_[np.nan, np.ones(k - 1)]):
            assert np.array_equal(prepared_rows(p, w), aggregate_rows(C, w, method, floor), equal_nan=True)


def test_prepared_rows_with_every_child_scored_use_the_same_product():
    rng = np.random.default_rng(3)
    C = rng.uniform(0, 100, (3000, 13))
    p = prepare_rows(C, "arithmetic")
    for _ in range(10):
        w = rng.uniform(1, 20, 13)
        assert np.array_equal(prepared_rows(p, w), aggregate_rows(C, w, "arithmetic"), equal_nan=True)


def test_geometric_mean_of_non_positive_children_is_refused_as_before():
    C = np.array([[1.0, 0.0], [2.0, 3.0]])
    with pytest.raises(Exception) as plain:
        aggregate_rows(C, np.ones(2), "geometric")
    with pytest.raises(type(plain.value)):
        prepare_rows(C, "geometric")
    assert prepare_rows(C, "harmonic") is None          # no prepared form: the caller aggregates plainly


def _app(tmp_path, n=700):
    """Bench units, then made awkward: rows with nothing reported (no_data), rows below the coverage minimum,
    rows copied from others (ties), and a last street / district with only a few communities."""
    from shequ.appraisal.engine import run as run_engine
    from shequ.appraisal.store import load_units
    from shequ.bench import build_appraisal_bench
    from shequ.scoring import load_scheme
    from shequ.warehouse import connect

    db = tmp_path / "a.duckdb"
    build_appraisal_bench(db, n)
    scheme = load_scheme()
    with connect(db) as con:
        u, units_df = load_units(con, "2024Q3", scheme)
    rng = np.random.default_rng(11)
    n = u.n                           # the bench's communities and the registry's
    X = u.X.copy()
    X[rng.random(n) < 0.04] = np.nan
    thin = rng.random(n) < 0.05
    X[np.ix_(thin, rng.random(X.shape[1]) < 0.7)] = np.nan
    X[100:160] = X[200:260]
    u = dataclasses.replace(u, X=X, previous=None, _groups={})
    return scheme, u, units_df, run_engine


def _plain(app, series, draws, areas):
    """The whole engine re-run in every draw (treat, normalise, aggregate, adjust, round, rank), as the Monte
    Carlo is specified, with ranks stored per draw and sorted per unit."""
    scheme, u = app.scheme, app.units
    spec = scheme.section("uncertainty")
    winmaxes, norms = spec.get("winmax") or [None], spec.get("normalise") or [None]
    aggs = spec.get("aggregation") or [None]
    noise = {int(k): float(v) for k, v in ((spec.get("weights") or {}).get("noise") or {}).items()}
    rk = scheme.section("ranking")
    digits, mode = int(rk.get("round", 2)), rk.get("round_mode", "half_even")
    q = tuple(float(x) for x in spec.get("quantiles", [0.05, 0.95]))
    R = {s.name: np.zeros((draws, u.n), np.int32) for s in series}
    AR = {a.name: np.zeros((draws, a.members.n), np.int32) for a in areas}
    params = []
    for i, ss in enumerate(np.random.SeedSequence(int(spec.get("seed", 0))).spawn(draws)):
        rng = np.random.default_rng(ss)
        w = winmaxes[int(rng.integers(len(winmaxes)))]
        ni = int(rng.integers(len(norms)))
        agg = aggs[int(rng.integers(len(aggs)))]
        weights = {c: nd.weight * (1 + rng.uniform(-noise[nd.level], noise[nd.level]))
                   for c, nd in scheme.nodes.items() if noise.get(nd.level) and nd.parent is not None}
        Xt = treat(app.imputed, u, scheme, winmax=w, pool=app.eligible)[0] if w is not None else app.treated
        S = normalise(Xt, u, scheme, fit=app.eligible, relative_override=norms[ni])
        nodes = aggregate(S, u, scheme, weights, agg)
        score = adjust_scores(u, scheme, nodes[scheme.root], names=False, values=app.imputed)[0]
        for s in series:
            v = round_scores(score if s.node == scheme.root else nodes[s.node], digits, mode)
            mask = app.eligible & (s.mask if s.mask is not None else True)
            R[s.name][i] = np.nan_to_num(rank_desc(np.where(mask, v, np.nan), u.grouping(s.group)), nan=0)
        ok_u = app.eligible & np.isfinite(score)
        for a in areas:
            cnt = np.bincount(a.members.inv, weights=ok_u.astype(float), minlength=a.members.n)
            with np.errstate(invalid="ignore", divide="ignore"):
                v = np.where(cnt > 0, np.bincount(a.members.inv, weights=np.where(ok_u, score, 0.0),
                                                  minlength=a.members.n) / np.maximum(cnt, 1), np.nan)
            v = round_scores(v, digits, mode)
            ok = a.eligible & np.isfinite(v)
            AR[a.name][i] = np.nan_to_num(rank_desc(np.where(ok, v, np.nan), Groups(a.parent)), nan=0)
        params.append({"winmax": w, "normalise": (norms[ni] or {}).get("method"), "aggregation": agg,
                       "weights": {k: round(v, 6) for k, v in weights.items()}})
    stats = {s.name: _rank_stats(R[s.name], app.eligible & (s.mask if s.mask is not None else True), q)
             for s in series}
    stats.update({a.name: _rank_stats(AR[a.name], a.eligible, q) for a in areas})
    return stats, params


@pytest.mark.parametrize("variant", ["scheme", "noisy_indicators", "nothing_noisy"])
def test_monte_carlo_equals_the_engine_rerun_in_every_draw(tmp_path, variant):
    from shequ.appraisal.store import _area_series, award_titles

    scheme, u, units_df, run_engine = _app(tmp_path)
    doc = dict(scheme.doc)
    unc = dict(doc["uncertainty"], seed=5)
    if variant == "noisy_indicators":      # categories move in every draw: the plain path for every node
        unc["weights"] = {"noise": {1: 0.3, 2: 0.25}}
        unc["aggregation"] = ["arithmetic"]
    elif variant == "nothing_noisy":       # the index itself is fixed per configuration
        unc = {k: v for k, v in unc.items() if k not in ("weights", "winmax")}
    doc["uncertainty"] = unc
    scheme = dataclasses.replace(scheme, doc=doc)
    app = run_engine(u, scheme)
    candidates: dict = {}
    award_titles(app, units_df, candidates)
    root = scheme.root
    series = [Series(f"{root}@{s}", root, g) for s, g in
              (("street", "street_code"), ("district", "district_code"), ("city", "city_code"), ("all", None))]
    series += [Series(f"{c}/{t}", node, col, mask=m) for (c, t), (m, node, col) in candidates.items() if m.any()]
    series.append(Series("cat", "治安法治", "district_code"))
    assert {s.node for s in series} >= {root, "治安法治", "居民自治"}
    areas = _area_series(app, units_df)
    draws = 12
    got = run_uncertainty(app, series, draws=draws, areas=areas, chunk=5)
    want, params = _plain(app, series, draws, areas)
    assert got.params == params
    for name in want:
        for k in want[name]:
            assert np.array_equal(got.stats[name][k], want[name][k], equal_nan=True), (variant, name, k)
    one = run_uncertainty(app, series, draws=draws, areas=areas, threads=1)
    for name in want:
        for k in want[name]:
            assert np.array_equal(one.stats[name][k], want[name][k], equal_nan=True), (variant, name, k)


def test_adjusted_score_is_the_adjusted_score(tmp_path):
    scheme, u, _, run_engine = _app(tmp_path, 300)
    doc = dict(scheme.doc)
    adjust = dict(doc["adjust"])
    adjust["vetoes"] = [*adjust["vetoes"], {"name": "封顶", "indicator": "major_incident", "op": ">", "value": 0,
                                            "effect": "cap_score", "cap": 59}]
    doc["adjust"] = adjust
    scheme = dataclasses.replace(scheme, doc=doc)
    app = run_engine(u, scheme)
    adj = adjustments(u, scheme, app.imputed)
    rng = np.random.default_rng(2)
    for root in (app.nodes[scheme.root], rng.uniform(90, 110, u.n), np.full(u.n, np.nan)):
        assert np.array_equal(adjusted_score(root, adj),
                              adjust_scores(u, scheme, root, names=False, adj=adj)[0], equal_nan=True)


@pytest.mark.parametrize("with_inf", [False, True])
def test_series_ranked_together_equal_series_ranked_one_by_one(with_inf):
    from shequ.appraisal.mc import _desc_order, _ranks_in_order, _ranks_of_series

    rng = np.random.default_rng(4)
    n = 4000
    eligible = rng.random(n) < 0.9
    for _ in range(20):
        v = round_scores(rng.uniform(40, 100, n), 2)
        v[rng.random(n) < 0.03] = np.nan
        v[:400] = v[400:800]                                         # ties
        if with_inf:
            v[rng.random(n) < 0.01] = np.inf
            v[rng.random(n) < 0.01] = -np.inf
        v = np.where(eligible, v, np.nan)
        order = _desc_order(v, 2)
        small = Groups(np.arange(n) // 3)                            # groups of three
        big = Groups(np.arange(n) // 700)
        tier = eligible & (rng.random(n) < 0.4)
        masks = [eligible, eligible, eligible, tier, tier, tier]
        groups = [small, big, None, big, None, small]
        got = _ranks_of_series(order, v, masks, [True, True, True, False, False, False], groups)
        for r, m, g in zip(got, masks, groups):
            assert np.array_equal(r, _ranks_in_order(order, v, m, g))
