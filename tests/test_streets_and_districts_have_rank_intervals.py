"""Streets and districts get a Monte Carlo rank interval like communities (issue 16): in every draw the area score
is the mean of its ranked members' index scores (areas: member_mean, with areas.min_coverage), ranked within the
parent area; fact_ranking's street/district rows carry the median and the 5th-95th percentile rank, widened to
hold the published rank."""

import copy
import dataclasses

import numpy as np
import polars as pl
import pytest

from shequ.appraisal import load_scheme, run
from shequ.appraisal.mc import run_uncertainty
from shequ.appraisal.store import _area_rows, _area_series, load_units


def test_every_ranked_street_and_district_has_a_finite_interval_holding_its_rank(con):
    rows = con.sql("""SELECT period_key, entity_level, entity_code, rank, rank_median, rank_low, rank_high, n_ranked
                      FROM fact_ranking WHERE entity_level IN ('street', 'district')""").pl()
    assert rows.height
    ranked = rows.filter(pl.col("rank").is_not_null())
    assert ranked.height and set(ranked["entity_level"]) == {"street", "district"}
    for r in ranked.iter_rows(named=True):
        assert all(np.isfinite(r[k]) for k in ("rank_median", "rank_low", "rank_high")), r
        assert r["rank_low"] <= r["rank"] <= r["rank_high"], r
        assert 1 <= r["rank_low"] <= r["rank_median"] <= r["rank_high"] <= r["n_ranked"], r
    # an area that is not ranked (below min_coverage) has no interval
    unranked = rows.filter(pl.col("rank").is_null())
    assert unranked.select(pl.col("rank_median").is_null().all()).item()
    # the draws move at least some area ranks (the interval is not just the nominal rank repeated)
    assert ranked.filter(pl.col("rank_high") > pl.col("rank_low")).height > 0


@pytest.mark.parametrize("thin", [False, True])
def test_draws_without_variation_reproduce_the_published_area_ranks(con, thin):
    """With no uncertain choice declared every draw is the nominal configuration, so each area's rank in every
    draw must equal the rank _area_rows publishes: the per-draw area scoring is the nominal one. ``thin``: one
    street keeps a single ranked community (coverage below areas.min_coverage 0.6), so it is unranked in both."""
    scheme = load_scheme()
    scheme = copy.copy(scheme)
    scheme.doc = {**scheme.doc, "uncertainty": {"draws": 3, "seed": 7}}
    period = con.execute("SELECT max(period_key) FROM fact_ranking").fetchall()[0][0]
    u, units_df = load_units(con, period, scheme)
    app = run(u, scheme)
    if thin:
        street = units_df["street_code"].to_numpy()
        members = np.nonzero(street == street[0])[0]
        assert len(members) >= 3
        eligible = app.eligible.copy()
        eligible[members[1:]] = False
        app = dataclasses.replace(app, eligible=eligible)
    areas = _area_series(app, units_df)
    if thin:
        assert not areas[0].eligible[list(areas[0].members.labels).index(street[0])]
    ua = run_uncertainty(app, [], areas=areas)
    nominal, _ = _area_rows(app, units_df, period, con)
    for a in areas:
        level = a.name[1:]
        nom = nominal.filter(pl.col("entity_level") == level)
        rank = dict(zip(nom["entity_code"].to_list(), nom["rank"].to_list()))
        st = ua.stats[a.name]
        for k, code in enumerate(a.members.labels):
            if rank[code] is None:
                assert np.isnan(st["median"][k])
            else:
                assert st["q_low"][k] == st["median"][k] == st["q_high"][k] == rank[code], (level, code)
