"""The shortcuts taken for speed (issue 11) give what the plain computation gives: the Monte Carlo's 16-bit radix
order of rounded scores, the suite executor's narrowed batch for unexpected-rows queries and its hash pre-check
for uniqueness, on planted defects as well as clean data."""

import json

import duckdb
import numpy as np
import pytest

from shequ import quality
from shequ.appraisal.engine import round_scores
from shequ.appraisal.mc import _desc_order


@pytest.mark.parametrize("mode", ["half_even", "half_up"])
def test_radix_order_of_rounded_scores_is_the_float_sort(mode):
    rng = np.random.default_rng(7)
    for _ in range(100):
        x = rng.uniform(-30, 140, 3000)
        x[rng.random(3000) < 0.05] = np.nan
        x[:300] = x[300:600]                            # ties
        v = round_scores(x, 2, mode)
        assert np.array_equal(_desc_order(v, 2), np.argsort(-v, kind="stable"))


def test_scores_the_radix_order_cannot_take_use_the_float_sort():
    rng = np.random.default_rng(8)
    cases = [rng.uniform(0, 100, 500),                                 # not rounded
             np.r_[round_scores(rng.uniform(0, 100, 500), 2), np.inf, -np.inf],
             np.r_[round_scores(rng.uniform(0, 100, 500), 2), 1000.0],  # a span of more than 65,535 steps
             np.full(10, np.nan)]
    for v in cases:
        assert np.array_equal(_desc_order(v, 2), np.argsort(-v, kind="stable"))
        assert np.array_equal(_desc_order(v, None), np.argsort(-v, kind="stable"))


SUITE = {
    "name": "t",
    "meta": {"table": "t"},
    "expectations": [
        {"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": ["k", "c", "period_key"]}},
        {"type": "unexpected_rows_expectation", "kwargs": {"unexpected_rows_query":
            "SELECT f.k, f.c FROM {batch} f WHERE NOT EXISTS (SELECT 1 FROM d WHERE d.k = f.k) "
            "OR NOT EXISTS (SELECT 1 FROM d WHERE d.c = f.c)"}},
        {"type": "unexpected_rows_expectation", "kwargs": {"unexpected_rows_query":
            "SELECT s.* FROM {batch} s WHERE s.v > 90"}},
        {"type": "unexpected_rows_expectation", "kwargs": {"unexpected_rows_query":
            "SELECT a.k FROM {batch} a JOIN {batch} b ON a.k = b.k AND a.c <> b.c WHERE a.v * 2 > b.v + 150"}},
    ],
}


def _run(con, tmp_path, narrow: bool):
    original = quality._narrow
    try:
        if not narrow:
            quality._narrow = lambda batch, query, columns: batch
        return quality.run_suite(con, "t", "2024Q1", directory=tmp_path, record=False)
    finally:
        quality._narrow = original


@pytest.mark.parametrize("defects", [False, True])
def test_narrowed_batch_and_hash_precheck_report_what_the_plain_queries_report(tmp_path, defects):
    (tmp_path / "t.json").write_text(json.dumps(SUITE), encoding="utf-8")
    con = duckdb.connect()
    con.execute("CREATE TABLE d AS SELECT i AS k, 'c' || (i % 7) AS c FROM range(500) r(i)")
    con.execute("""CREATE TABLE t AS SELECT i % 500 AS k, 'c' || (i % 7) AS c, (i * 37 % 100)::DOUBLE AS v,
                   repeat('x', 50) AS wide, CASE WHEN i < 3000 THEN '2024Q1' ELSE '2024Q2' END AS period_key
                   FROM range(3500) r(i) WHERE i % 500 <> i % 7 OR i < 500""")
    con.execute("DELETE FROM t WHERE v > 90 OR v * 2 > 150")
    if defects:
        con.execute("INSERT INTO t SELECT k, c, 95, 'y', period_key FROM t WHERE k < 3 AND period_key = '2024Q1'")
        con.execute("INSERT INTO t VALUES (9999, 'c1', 80, 'z', '2024Q1'), (NULL, NULL, 1, 'n', NULL)")
    got, want = _run(con, tmp_path, True), _run(con, tmp_path, False)
    assert got == want
    assert [r.success for r in got] == ([False, False, False, False] if defects else [True, True, True, True])
    # the full-table query keeps the whole batch; the NOT EXISTS query is narrowed to the columns it names
    cols = ["k", "c", "v", "wide", "period_key"]
    batch = "(SELECT * FROM t WHERE period_key = '2024Q1')"
    assert quality._narrow(batch, SUITE["expectations"][2]["kwargs"]["unexpected_rows_query"], cols) == batch
    assert quality._narrow(batch, SUITE["expectations"][1]["kwargs"]["unexpected_rows_query"], cols) == \
        '(SELECT "k", "c" FROM t WHERE period_key = \'2024Q1\')'


HAZARDS = [   # queries that read columns they do not name: narrowing must keep the whole batch
    "SELECT b FROM {batch} b WHERE b.v > 50",                                     # the whole row as a struct
    "SELECT to_json(b) FROM {batch} AS b WHERE b.k < 5",
    "SELECT #1, #2 FROM {batch} WHERE v > 60",                                    # positional references
    "SELECT * FROM (PIVOT {batch} ON c USING count(*)) WHERE k < 3",             # groups by the unnamed columns
    "SELECT k FROM (UNPIVOT {batch} ON v INTO NAME n VALUE x) WHERE x > 80",
]


@pytest.mark.parametrize("query", HAZARDS)
def test_queries_reading_unnamed_columns_see_the_whole_batch(tmp_path, query):
    suite = {"name": "h", "meta": {"table": "t"}, "expectations": [
        {"type": "unexpected_rows_expectation", "kwargs": {"unexpected_rows_query": query}}]}
    (tmp_path / "h.json").write_text(json.dumps(suite), encoding="utf-8")
    con = duckdb.connect()
    con.execute("""CREATE TABLE t AS SELECT i % 50 AS k, 'c' || (i % 3) AS c, (i * 37 % 100)::DOUBLE AS v,
                   'w' || (i % 4) AS wide, '2024Q1' AS period_key FROM range(400) r(i)""")
    cols = ["k", "c", "v", "wide", "period_key"]
    batch = "(SELECT * FROM t WHERE period_key = '2024Q1')"
    assert quality._narrow(batch, query, cols) == batch
    original = quality._narrow
    try:
        got = quality.run_suite(con, "h", "2024Q1", directory=tmp_path, record=False)
        quality._narrow = lambda batch, query, columns: batch
        want = quality.run_suite(con, "h", "2024Q1", directory=tmp_path, record=False)
    finally:
        quality._narrow = original
    assert got == want and got[0].unexpected > 0


def test_an_alias_used_only_before_a_dot_is_narrowed():
    cols = ["k", "c", "v", "wide", "period_key"]
    batch = "(SELECT * FROM t WHERE period_key = '2024Q1')"
    assert quality._narrow(batch, "SELECT b.k FROM {batch} AS b WHERE b.v > 1", cols) == \
        '(SELECT "k", "v" FROM t WHERE period_key = \'2024Q1\')'


def test_columns_come_from_the_current_database_not_an_attached_one(tmp_path):
    """A lake reader attaches catalogues holding tables of the same name: the batch's columns are the current
    database's, in its order (another catalogue's columns would be narrowed into the batch)."""
    (tmp_path / "t.json").write_text(json.dumps(SUITE), encoding="utf-8")
    con = duckdb.connect()
    con.execute(f"ATTACH '{tmp_path / 'other.duckdb'}' AS other")
    con.execute("CREATE TABLE other.t (only_there VARCHAR, v DOUBLE, k INTEGER)")
    con.execute("CREATE TABLE d AS SELECT i AS k, 'c' || (i % 7) AS c FROM range(50) r(i)")
    con.execute("CREATE TABLE t AS SELECT i % 50 AS k, 'c' || (i % 7) AS c, 10.0 AS v, 'x' AS wide, "
                "'2024Q1' AS period_key FROM range(50) r(i)")
    assert quality.table_columns(con, "t") == ["k", "c", "v", "wide", "period_key"]
    got = quality.run_suite(con, "t", "2024Q1", directory=tmp_path, record=False)
    assert [r.success for r in got] == [True, True, True, True]
