"""fact_score is built and written block by block of units (issue 11: whole, at 600,000 communities its
matrices and Arrow columns took several GB beside the Monte Carlo). The blocks together are the whole table: the
same rows in the same order, for the full table (every node, with values, weights and flags, a review stage's
reported values) and the aggregates-only one, whatever the block size."""

import numpy as np
import pyarrow as pa
import pytest


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from shequ.appraisal.engine import run
    from shequ.appraisal.store import load_units
    from shequ.bench import build_appraisal_bench
    from shequ.scoring import load_scheme
    from shequ.warehouse import connect

    db = tmp_path_factory.mktemp("blocks") / "a.duckdb"
    build_appraisal_bench(db, 900)
    scheme = load_scheme()
    with connect(db) as con:
        u, _ = load_units(con, "2024Q3", scheme)
    return run(u, scheme)


@pytest.mark.parametrize("full", [True, False])
@pytest.mark.parametrize("block", [1, 97, 500, 10_000])
def test_blocks_together_are_the_whole_table(app, full, block):
    from shequ.appraisal.store import _score_table, _score_tables

    rng = np.random.default_rng(3)
    reported = app.units.X.copy()
    reported[rng.random(reported.shape) < 0.1] += 1.0          # a review stage changed some values
    for rep in (None, reported):
        whole = _score_table(app, full, rep)
        parts = list(_score_tables(app, full, rep, block=block))
        assert len(parts) == -(-app.units.n // block)
        joined = pa.concat_tables([p.cast(whole.schema) if p.schema != whole.schema else p for p in parts])
        assert joined.num_rows == whole.num_rows > 0
        for name in whole.column_names:
            a, b = whole.column(name), joined.column(name)
            if pa.types.is_dictionary(a.type):
                a, b = a.cast(a.type.value_type), b.cast(a.type.value_type)
            assert a.to_pylist() == b.to_pylist(), name
