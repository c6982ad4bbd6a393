"""Issue 11 (national scale): the Monte Carlo sets up and draws one group of configurations at a time (one
winsorisation depth's treated matrix, one normalisation's categories and prepared index), filling the same
chunk of draws across groups. Pinned here: any chunk size, down to one draw, gives bit for bit the statistics
of the whole engine re-run in every draw with every draw's ranks held and sorted at once; and the Monte
Carlo's peak memory does not grow with the winsorisation depths the scheme declares (holding every depth's
treated matrix and every configuration's arrays at once is what made the ranking stage peak at 9.4 GB at
600,000 communities)."""

import dataclasses
import importlib.util
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from shequ.appraisal.mc import Series, run_uncertainty


def _fast_paths():
    """The plain reference (the engine re-run per draw, _plain) and its awkward units (_app) of the fast-path
    tests, loaded by file so the reference is the same code whatever pytest's import mode."""
    spec = importlib.util.spec_from_file_location(
        "_mc_fast_paths_reference", Path(__file__).with_name("test_monte_carlo_fast_paths.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _with_uncertainty(scheme, **changes):
    doc = dict(scheme.doc)
    doc["uncertainty"] = {**doc["uncertainty"], **changes}
    return dataclasses.replace(scheme, doc=doc)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    ref = _fast_paths()
    scheme, u, units_df, run_engine = ref._app(tmp_path_factory.mktemp("mc"), 600)
    return ref, scheme, u, units_df, run_engine


def test_any_chunk_size_gives_the_unchunked_statistics(bench):
    from shequ.appraisal.store import _area_series, award_titles

    ref, scheme, u, units_df, run_engine = bench
    app = run_engine(u, _with_uncertainty(scheme, seed=17))
    candidates: dict = {}
    award_titles(app, units_df, candidates)
    root = app.scheme.root
    series = [Series(f"{root}@{s}", root, g) for s, g in
              (("street", "street_code"), ("district", "district_code"), ("city", "city_code"))]
    series += [Series(f"{c}/{t}", node, col, mask=m) for (c, t), (m, node, col) in candidates.items() if m.any()]
    areas = _area_series(app, units_df)
    draws = 23                               # more configurations drawn than fit one chunk of 3
    want, params = ref._plain(app, series, draws, areas)   # every draw held, sorted per unit: no chunks
    for chunk in (1, 3, draws):
        got = run_uncertainty(app, series, draws=draws, areas=areas, chunk=chunk)
        assert got.params == params, chunk
        for name in want:
            for k in want[name]:
                assert np.array_equal(got.stats[name][k], want[name][k], equal_nan=True), (chunk, name, k)


def _peak(app, series, draws):
    tracemalloc.start()
    run_uncertainty(app, series, draws=draws, threads=1, chunk=4)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_peak_memory_does_not_grow_with_the_winsorisation_depths(bench):
    _, scheme, u, _, run_engine = bench
    root = scheme.root
    series = [Series(f"{root}@street", root, "street_code")]
    # one depth against five, with both normalisations and both aggregations: 4 against 20 configurations.
    # One depth's treated matrix is held at a time, and per normalisation one group's categories and index.
    one = run_engine(u, _with_uncertainty(scheme, winmax=[3]))
    every = run_engine(u, _with_uncertainty(scheme))
    assert len(every.scheme.section("uncertainty")["winmax"]) == 5
    small, large = _peak(one, series, 40), _peak(every, series, 40)
    assert large <= 1.2 * small, (small, large)
