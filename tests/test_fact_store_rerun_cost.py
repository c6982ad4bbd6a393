"""Issue 11 item 4: re-running one quarter costs the same with 40 quarters of history loaded as with none.

The fact table carries no key index, rows are written period-first, and a quarter's re-run deletes and appends
only that quarter (shequ.warehouse.replace_rows, the step build_facts runs). The synthetic facts and the two
warehouses are those of `shequ bench --rerun` (shequ/rerun_bench.py), at 2,000 communities x 70 indicators =
140,000 rows a quarter, enough for the replace to take a measurable time; the two warehouses are timed
alternately, on one DuckDB thread, in CPU seconds of this process (other processes on a busy machine do not
count) and compared by the median of 5.
"""

import statistics

import duckdb

from shequ.rerun_bench import N_INDICATORS, build_pair, history_quarters, rerun, run_rerun_bench, synthetic_facts

N_COMMUNITIES = 2_000


def test_rerun_of_one_quarter_does_not_grow_with_history(tmp_path):
    q = "2024Q3"
    history = history_quarters(40)
    assert len(history) == 40 and q in history and len(set(history)) == 40
    bare = duckdb.connect(str(tmp_path / "bare.duckdb"))
    full = duckdb.connect(str(tmp_path / "history.duckdb"))
    for con in (bare, full):
        con.execute("SET threads = 1")
    sql = synthetic_facts(N_COMMUNITIES)
    build_pair(bare, full, sql, q, history)
    per_q = N_COMMUNITIES * N_INDICATORS
    before = dict(full.execute("SELECT period_key, sum(hash(community_key, indicator_code, value)) "
                               "FROM fact_indicator_value WHERE period_key <> ? GROUP BY ALL", [q]).fetchall())
    t_bare, t_full = [], []
    for _ in range(5):                                  # alternate, so machine load hits both alike
        t_bare.append(rerun(bare, sql, q)[1])
        t_full.append(rerun(full, sql, q)[1])
    # only that quarter was replaced: the history is intact (same rows), the quarter not duplicated
    counts = dict(full.execute("SELECT period_key, count(*) FROM fact_indicator_value GROUP BY ALL").fetchall())
    assert counts == {hq: per_q for hq in history}
    after = dict(full.execute("SELECT period_key, sum(hash(community_key, indicator_code, value)) "
                              "FROM fact_indicator_value WHERE period_key <> ? GROUP BY ALL", [q]).fetchall())
    assert after == before
    assert bare.execute("SELECT count(*) FROM fact_indicator_value").fetchall()[0][0] == per_q
    # no key index on the fact table
    assert full.execute("SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'fact_indicator_value' "
                        "AND constraint_type IN ('PRIMARY KEY', 'FOREIGN KEY', 'UNIQUE')").fetchall()[0][0] == 0
    m_bare, m_full = statistics.median(t_bare), statistics.median(t_full)
    assert m_full <= 1.2 * m_bare, (t_bare, t_full)
    for con in (bare, full):
        con.close()


def test_rerun_bench_reports_both_warehouses(tmp_path):
    res = run_rerun_bench(300, n_history=4, repeats=1, out=tmp_path)
    assert res["rows_per_quarter"] == 300 * N_INDICATORS
    assert res["rows_bare"] == 300 * N_INDICATORS and res["rows_history"] == 4 * 300 * N_INDICATORS
    assert res["history_quarters"] == 4 and res["ratio_wall"] > 0 and res["ratio_cpu"] is not None
    assert (tmp_path / "rerun_result.json").exists()
    assert not (tmp_path / "rerun_history.duckdb").exists()     # removed unless --keep
