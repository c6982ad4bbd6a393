"""The robustness analysis (shequ/appraisal/analysis.py) reproduces COINr's published ASEM sensitivity analysis.

COINr's stored run (vignettes/SA_results.RDS, exported to tests/golden/asem/expected_SA_*.csv; provenance in
tests/golden/README.md) is get_sensitivity(SA_type = "SA", N = 100, Nboot = 100) on the four uncertain
assumptions of models/schemes/reference/asem.yaml (winmax 1-5, min-max [1, 100] or z-score (10, 2), level 2 and
3 weights x (1 + U(-0.25, 0.25)) from 100 noisy weight sets, arithmetic or geometric mean): 600 runs, target =
the mean absolute rank shift against the nominal ranks.

Tolerance: both runs are Monte Carlo estimates with different random numbers (R's and numpy's), so they cannot
agree digit for digit. Ours uses N = 2000 (12 000 runs, about 10 s) so that its own sampling error is small.
Each index must agree within 3 combined standard errors: |ours - COINr| <= 3 sqrt(se_COINr^2 + se_ours^2), where
se = (q95 - q5) / 3.29 of the 5-95 % bootstrap interval (a normal interval is 3.29 se wide). For a correct
method each comparison fails with probability about 0.3 %. Besides the band, the ordering COINr reports
(aggregation matters most, winsorisation depth least) must hold, and the half-sample estimate must be close.
"""

import numpy as np
import polars as pl
import pytest

from shequ.appraisal import load_scheme, run, units_from_frame
from shequ.appraisal.analysis import sa_sample, sensitivity, sobol
from shequ.config import ROOT, SCHEMES_DIR

GOLD = ROOT / "tests" / "golden" / "asem"
Z = 3.29  # width of a 5-95 % normal interval in standard errors


@pytest.fixture(scope="module")
def asem():
    scheme = load_scheme(SCHEMES_DIR / "reference" / "asem.yaml")
    data = pl.read_csv(GOLD / "input_iData.csv", null_values=["NA", ""], infer_schema_length=None)
    units = units_from_frame(data, scheme, unit="uCode", name="uName",
                             groups=["GDP_group", "GDPpc_group", "Pop_group", "EurAsia_group"])
    app = run(units, scheme)
    return app, sensitivity(app, N=2000, seed=20221, nboot=200)


def test_sobol_indices_match_coinr_within_sampling_error(asem):
    _, sa = asem
    exp = pl.read_csv(GOLD / "expected_SA_sensitivity_indices.csv")
    assert [f.name for f in sa.factors] == exp["Variable"].to_list()
    assert sa.runs == 2000 * (4 + 2)
    for i, row in enumerate(exp.iter_rows(named=True)):
        for ours, theirs in (("si", "Si"), ("sti", "STi")):
            se_t = (row[f"{theirs}_q95"] - row[f"{theirs}_q5"]) / Z
            se_o = (sa.index[f"{ours}_high"][i] - sa.index[f"{ours}_low"][i]) / Z
            diff = abs(sa.index[ours][i] - row[theirs])
            assert diff <= 3 * np.hypot(se_t, se_o), (row["Variable"], ours, sa.index[ours][i], row[theirs])
    # the conclusions COINr draws: aggregation matters most, winsorisation depth least
    assert int(np.argmax(sa.index["sti"])) == 3 and int(np.argmin(sa.index["sti"])) == 0
    # convergence: the estimate on half the sample is close to the full one
    assert np.max(np.abs(sa.index_half["sti"] - sa.index["sti"])) < 0.1


def test_rank_statistics_match_coinr(asem):
    """Rank statistics over the 2N random runs (A and B), as COINr's RankStats; mean |difference| < 0.5."""
    app, sa = asem
    exp = pl.read_csv(GOLD / "expected_SA_rankstats.csv")
    idx = np.array([list(app.units.codes).index(c) for c in exp["uCode"]])
    assert np.array_equal(sa.nominal_rank[idx], exp["Nominal"].to_numpy())
    for ours, theirs in (("mean", "Mean"), ("median", "Median"), ("q_low", "Q5"), ("q_high", "Q95")):
        mad = float(np.mean(np.abs(sa.rank_stats[ours][idx] - exp[theirs].to_numpy())))
        assert mad < 0.5, (theirs, mad)


def test_per_community_indices_and_reproducible(asem):
    app, sa = asem
    # every unit gets indices; a unit whose rank never moves has none (zero variance), others are in [~0, ~1]
    sti = sa.units["sti"]
    assert sti.shape == (4, app.units.n)
    moving = np.nanstd(sa.ranks, axis=0) > 0
    assert np.isfinite(sti[:, moving]).all()
    assert (sti[:, moving] > -0.05).all()
    again = sensitivity(app, N=50, seed=5, nboot=10)
    twice = sensitivity(app, N=50, seed=5, nboot=10)
    assert np.array_equal(again.index["sti"], twice.index["sti"], equal_nan=True)


def test_estimators_on_an_additive_function():
    """y = x1 + 2 x2 + 3 x3 on U(0,1): exact first-order = total = (1, 4, 9) / 14 (COINr's SA_estimate
    example)."""
    rng = np.random.default_rng(1)
    N, d = 20000, 3
    X = sa_sample(N, d, rng)
    y = X @ np.array([1.0, 2.0, 3.0])
    est = sobol(y, N, d, nboot=50, rng=rng)
    exact = np.array([1, 4, 9]) / 14
    assert np.allclose(est["sti"], exact, atol=0.02)
    assert np.allclose(est["si"], exact, atol=0.05)
    assert (est["sti_low"] <= est["sti"]).all() and (est["sti"] <= est["sti_high"]).all()
