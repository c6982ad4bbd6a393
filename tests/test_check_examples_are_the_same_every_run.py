"""A custom-query expectation lists the same examples every time the same data is checked.

A PIVOT or GROUP BY returns its rows in the order DuckDB's threads finish; the examples (check_result.detail and
partial_unexpected) must not depend on that. A query that orders its own rows keeps the author's order.
"""
import json

import duckdb

from shequ import quality


def _suite(tmp_path, query):
    suite = {"name": "h", "meta": {"table": "t"}, "expectations": [
        {"type": "unexpected_rows_expectation", "kwargs": {"unexpected_rows_query": query}}]}
    (tmp_path / "h.json").write_text(json.dumps(suite), encoding="utf-8")


def _con(threads):
    con = duckdb.connect(config={"threads": threads})
    con.execute("""CREATE TABLE t AS SELECT i % 5000 AS k, 'c' || (i % 3) AS c, (i * 37 % 100)::DOUBLE AS v,
                   '2024Q1' AS period_key FROM range(200000) r(i)""")
    return con


def test_unordered_query_examples_are_the_smallest_rows_whatever_the_threads(tmp_path):
    _suite(tmp_path, "SELECT * FROM (PIVOT {batch} ON c USING count(*)) WHERE k % 7 = 3")
    runs = [quality.run_suite(_con(n), "h", "2024Q1", directory=tmp_path, record=False)[0] for n in (1, 2, 4, 4)]
    assert all((r.detail, r.partial) == (runs[0].detail, runs[0].partial) for r in runs)
    r = runs[0]
    assert r.unexpected == len([k for k in range(5000) if k % 7 == 3])
    # the 20 smallest rows in full-row order: k = 3, 10, 17, ... with v rising inside each k
    ks = [row["k"] for row in r.partial]
    assert len(ks) == quality.PARTIAL and ks == sorted(ks) and ks[0] == 3
    assert list(r.partial) == sorted(r.partial, key=lambda d: tuple(d.values()))


def test_ordered_query_keeps_its_own_order(tmp_path):
    _suite(tmp_path, "SELECT k, sum(v) AS s FROM {batch} GROUP BY k HAVING k < 100 ORDER BY k DESC")
    r = quality.run_suite(_con(2), "h", "2024Q1", directory=tmp_path, record=False)[0]
    assert r.unexpected == 100
    assert [row["k"] for row in r.partial] == list(range(99, 79, -1))
    assert "例：[(99," in r.detail
