"""Golden tests: the engine, driven only by scheme files, reproduces COINr's ASEM example and UNDP's HDI 2022.

Data: tests/golden/ (see tests/golden/README.md for provenance and licences). Schemes:
models/schemes/reference/asem.yaml and hdi.yaml.
"""

import numpy as np
import polars as pl
import pytest

from shequ.appraisal import load_scheme, run, score_components, units_from_frame, weighted_components
from shequ.appraisal.engine import round_scores
from shequ.config import SCHEMES_DIR
from shequ.config import ROOT

GOLD = ROOT / "tests" / "golden"
ASEM_GROUPS = ["GDP_group", "GDPpc_group", "Pop_group", "EurAsia_group"]


@pytest.fixture(scope="module")
def asem():
    scheme = load_scheme(SCHEMES_DIR / "reference" / "asem.yaml")
    data = pl.read_csv(GOLD / "asem" / "input_iData.csv", null_values=["NA", ""], infer_schema_length=None)
    units = units_from_frame(data, scheme, unit="uCode", name="uName", groups=ASEM_GROUPS)
    return scheme, units, run(units, scheme)


def _expected(name: str) -> pl.DataFrame:
    return pl.read_csv(GOLD / "asem" / f"expected_{name}.csv", null_values=["NA", ""], infer_schema_length=None)


@pytest.mark.parametrize("stage", ["denominated", "imputed", "treated", "normalised", "aggregated"])
def test_asem_every_stage_matches_coinr(asem, stage):
    _, _, app = asem
    exp = _expected(stage)
    got = app.frame(stage).rename({"unit": "uCode"})
    cols = [c for c in exp.columns if c != "uCode"]
    assert len(cols) == (60 if stage == "aggregated" else 49)
    joined = exp.join(got, on="uCode", suffix="_got")
    assert joined.height == 51
    worst = 0.0
    for c in cols:
        e, g = joined[c].to_numpy().astype(float), joined[f"{c}_got"].to_numpy().astype(float)
        assert (np.isnan(e) == np.isnan(g)).all(), c
        ok = ~np.isnan(e)
        worst = max(worst, float(np.max(np.abs(e[ok] - g[ok]))) if ok.any() else 0.0)
    assert worst <= 1e-6, f"{stage}: max |diff| {worst}"


def test_asem_treatment_log_matches(asem):
    _, units, app = asem
    summary = {r["indicator"]: r for r in app.treat_summary}
    exp = _expected("treatment_summary")
    assert exp.height == 49
    for r in exp.iter_rows(named=True):
        s = summary[r["IndCode"]]
        assert (s["low"], s["high"]) == (int(r["Low"]), int(r["High"])), r["IndCode"]
    assert sum(s["low"] + s["high"] for s in summary.values()) == 35
    assert sum(1 for s in summary.values() if s["low"] + s["high"]) == 15
    flags = _expected("treatment_flags")
    code = {"No": 0, "WHigh": 1, "WLow": -1}
    idx = {c: i for i, c in enumerate(units.codes)}
    for r in flags.iter_rows(named=True):
        for c, v in r.items():
            if c != "UnitCode":
                assert app.treat_flags[idx[r["UnitCode"]], units.indicators.index(c)] == code[v], (r["UnitCode"], c)


def test_asem_561_ranks_on_published_rounding(asem):
    scheme, units, app = asem
    exp = _expected("results_ranks")
    scores = _expected("results_scores_2dp")
    idx = {c: i for i, c in enumerate(units.codes)}
    nodes = [c for c in exp.columns if c not in ("uCode", "uName")]
    hits = total = 0
    for r in exp.iter_rows(named=True):
        for n in nodes:
            total += 1
            hits += app.ranks[(n, "overall")][idx[r["uCode"]]] == r[n]
    assert (hits, total) == (561, 561)
    for r in scores.iter_rows(named=True):
        for n in nodes:
            assert round_scores(app.node(n)[idx[r["uCode"]]:idx[r["uCode"]] + 1], 2)[0] == pytest.approx(r[n], abs=1e-9)


def test_asem_group_ranks_follow_coinr_semantics(asem):
    """Within-group ranks (COINr get_results(use = "groupranks")): competition rank of the rounded Index among
    the units of the same EurAsia_group, recomputed here independently."""
    _, units, app = asem
    s = round_scores(app.node("Index"), 2)
    grp = units.groups["EurAsia_group"]
    got = app.ranks[("Index", "EurAsia_group")]
    for i in range(units.n):
        peers = s[grp == grp[i]]
        assert got[i] == 1 + int((peers > s[i]).sum())
    assert sorted(set(grp)) == ["Asia", "Europe"]
    assert (got == 1).sum() == 2


def test_asem_nominal_index_matches_coinr_v1(asem):
    _, units, app = asem
    exp = _expected("UA_nominal")
    idx = {c: i for i, c in enumerate(units.codes)}
    for r in exp.iter_rows(named=True):
        assert app.node("Index")[idx[r["uCode"]]] == pytest.approx(r["Score"], abs=1e-9)


# ---------------------------------------------------------------------------------------------------------
# HDI


@pytest.fixture(scope="module")
def hdi():
    scheme = load_scheme(SCHEMES_DIR / "reference" / "hdi.yaml")
    pub = pl.read_csv(GOLD / "hdi" / "hdr2022_published.csv", infer_schema_length=None)
    countries = pub.filter(~pl.col("is_aggregate") & pl.col("hdi_2022").is_not_null()).rename(
        {"le_2022": "le", "eys_2022": "eys", "mys_2022": "mys", "gnipc_2022": "gnipc"})
    units = units_from_frame(countries, scheme, unit="iso3", name="country", groups=["region"])
    return scheme, pub, countries, units, run(units, scheme)


def test_hdi_193_values_ranks_and_groups(hdi):
    _, _, countries, units, app = hdi
    assert units.n == 193
    exp = countries["hdi_2022"].to_numpy()
    assert np.array_equal(round_scores(app.score, 3), exp)
    ranks = app.ranks[("HDI", "world")]
    assert np.array_equal(ranks, countries["hdi_rank_2022"].to_numpy())
    # shared ranks: 27 countries share the rank of a country above them (26 tie groups, 53 countries)
    _, counts = np.unique(ranks, return_counts=True)
    assert int((counts - 1).sum()) == 27 and int((counts > 1).sum()) == 26
    names = {"Very High": "极高人类发展水平", "High": "高人类发展水平", "Medium": "中等人类发展水平",
             "Low": "低人类发展水平"}
    assert list(app.grade) == [names[c] for c in countries["hdicode"].to_list()]


def test_hdi_ordinal_rank_on_full_values_would_not_match(hdi):
    """The tie policy matters: ordinal ranks on unrounded values match only 166 of 193."""
    _, _, countries, _, app = hdi
    from shequ.appraisal import rank_desc
    ordinal = rank_desc(app.score, None, "ordinal")
    assert int((ordinal == countries["hdi_rank_2022"].to_numpy()).sum()) == 166


def test_hdi_eleven_aggregates_from_aggregated_components(hdi):
    _, pub, countries, _, app = hdi
    agg = pub.filter(pl.col("is_aggregate"))
    assert agg.height == 11
    code_of = {"ZZA.VHHD": ("hdicode", "Very High"), "ZZB.HHD": ("hdicode", "High"),
               "ZZC.MHD": ("hdicode", "Medium"), "ZZD.LHD": ("hdicode", "Low"), "ZZE.AS": ("region", "AS"),
               "ZZF.EAP": ("region", "EAP"), "ZZG.ECA": ("region", "ECA"), "ZZH.LAC": ("region", "LAC"),
               "ZZI.SA": ("region", "SA"), "ZZJ.SSA": ("region", "SSA"), "ZZK.WORLD": ("world", "world")}
    members = pl.read_csv(GOLD / "hdi" / "hdr2022_published.csv", infer_schema_length=None).filter(
        ~pl.col("is_aggregate")).with_columns(pl.lit("world").alias("world"))  # incl. PRK, MCO (no HDI)
    rows = []
    for r in agg.iter_rows(named=True):
        col, val = code_of[r["iso3"]]
        m = members.filter(pl.col(col) == val).with_columns(pl.lit(r["iso3"]).alias("agg"))
        comp = weighted_components(m, "agg", ["le_2022", "gnipc_2022"], "pop_total_2022")
        # life expectancy and GNI per capita: population-weighted means of the members reproduce UNDP's
        assert comp["le_2022"][0] == pytest.approx(r["le_2022"], rel=1e-6), r["iso3"]
        assert comp["gnipc_2022"][0] == pytest.approx(r["gnipc_2022"], rel=1e-6), r["iso3"]
        # schooling aggregates use age-group populations the file does not carry: taken as published
        rows.append({"agg": r["iso3"], "le": comp["le_2022"][0], "gnipc": comp["gnipc_2022"][0],
                     "eys": r["eys_2022"], "mys": r["mys_2022"], "published": r["hdi_2022"]})
    comp = pl.DataFrame(rows)
    scored = score_components(app, comp, "agg")
    got = round_scores(scored["score"].to_numpy(), 3)
    assert np.array_equal(got, comp["published"].to_numpy())
    # the index of aggregated components is not the mean of member HDIs: it differs for most groups
    world_mean = float(np.mean(app.score))
    assert abs(world_mean - comp.filter(pl.col("agg") == "ZZK.WORLD")["published"][0]) > 0.005


def test_asem_uncertainty_agrees_with_coinr_stored_run(asem):
    """COINr's stored UA run has 100 draws; ours uses 2000 so that the comparison measures COINr's noise, not
    ours. Mean absolute difference of each rank statistic must stay below 0.5."""
    from shequ.appraisal.mc import Series, run_uncertainty

    _, units, app = asem
    ua = run_uncertainty(app, [Series("Index", "Index", None)], draws=2000)
    exp = _expected("UA_rankstats")
    idx = np.array([list(units.codes).index(c) for c in exp["uCode"]])
    st = ua.stats["Index"]
    for ours, theirs in (("mean", "Mean"), ("median", "Median"), ("q_low", "Q5"), ("q_high", "Q95")):
        mad = float(np.mean(np.abs(st[ours][idx] - exp[theirs].to_numpy())))
        assert mad < 0.5, (theirs, mad)
    # draws are reproducible from the seed, whatever the threading
    again = run_uncertainty(app, [Series("Index", "Index", None)], draws=200, threads=1)
    twice = run_uncertainty(app, [Series("Index", "Index", None)], draws=200, threads=2)
    assert np.array_equal(again.stats["Index"]["q_high"], twice.stats["Index"]["q_high"])
    assert {p["aggregation"] for p in twice.params} == {"arithmetic", "geometric"}
    assert {p["winmax"] for p in twice.params} == {1, 2, 3, 4, 5}
