"""Issue 11 item 4: re-running one quarter costs the same with 20 quarters of history loaded as with none.

The fact table carries no key index, rows are written period-first, and a quarter's re-run deletes and appends
only that quarter (shequ.warehouse.replace_rows, the step build_facts runs). Synthetic facts are generated in
DuckDB (2,000 communities x 70 indicators = 140,000 rows a quarter), enough for the replace to take a measurable
time; the two warehouses are timed alternately, on one DuckDB thread, in CPU seconds of this process (other
processes on a busy machine do not count) and compared by the median of 5.
"""

import statistics
import time

import duckdb

from shequ.periods import quarters_between
from shequ.warehouse import FACT_ORDER, ensure_schema, replace_rows

N_COMMUNITIES, N_INDICATORS = 2_000, 70

# one quarter of synthetic facts, every column of fact_indicator_value, values varying by quarter
FACTS = f"""
SELECT c.i AS community_key, printf('ind_%02d', k.j) AS indicator_code, $period_key AS period_key,
       round((hash(c.i, k.j, $period_key) % 10000) / 100.0, 2) AS value, NULL::DOUBLE AS reported_value,
       NULL::DOUBLE AS numerator, NULL::DOUBLE AS denominator, '%' AS unit, NULL AS qualifier,
       printf('inbox/%s/district_%03d.csv', $period_key, c.i // 250) AS source_file, NULL AS source_sheet,
       (c.i % 250) + 2 AS source_row, printf('col_%02d', k.j) AS source_column, NULL AS source_cell,
       printf('%064d', c.i // 250) AS file_id, 1 AS n_versions, TIMESTAMP '2026-12-01 00:00:00' AS loaded_at
FROM range({N_COMMUNITIES}) c(i) CROSS JOIN range({N_INDICATORS}) k(j)
"""


def _rerun(con, q: str) -> float:
    t0 = time.process_time()
    n = replace_rows(con, "fact_indicator_value", FACTS, {"period_key": q}, order_by=FACT_ORDER)
    elapsed = time.process_time() - t0
    assert n == N_COMMUNITIES * N_INDICATORS
    return elapsed


def test_rerun_of_one_quarter_does_not_grow_with_history(tmp_path):
    q = "2024Q3"
    bare = duckdb.connect(str(tmp_path / "bare.duckdb"))
    full = duckdb.connect(str(tmp_path / "history.duckdb"))
    for con in (bare, full):
        ensure_schema(con)
        con.execute("SET threads = 1")
    history = quarters_between("2020Q1", "2024Q4")
    assert len(history) == 20 and q in history
    for hq in history:                                  # 20 quarters loaded, the way build_facts writes them
        replace_rows(full, "fact_indicator_value", FACTS, {"period_key": hq}, order_by=FACT_ORDER)
    replace_rows(bare, "fact_indicator_value", FACTS, {"period_key": q}, order_by=FACT_ORDER)
    for con in (bare, full):
        con.execute("CHECKPOINT")
    t_bare, t_full = [], []
    for _ in range(5):                                  # alternate, so machine load hits both alike
        t_bare.append(_rerun(bare, q))
        t_full.append(_rerun(full, q))
    # only that quarter was replaced: the history is intact, the quarter not duplicated
    per_q = dict(full.execute("SELECT period_key, count(*) FROM fact_indicator_value GROUP BY ALL").fetchall())
    assert per_q == {hq: N_COMMUNITIES * N_INDICATORS for hq in history}
    assert bare.execute("SELECT count(*) FROM fact_indicator_value").fetchall()[0][0] == N_COMMUNITIES * N_INDICATORS
    # no key index on the fact table
    assert full.execute("SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'fact_indicator_value' "
                        "AND constraint_type IN ('PRIMARY KEY', 'FOREIGN KEY', 'UNIQUE')").fetchall()[0][0] == 0
    m_bare, m_full = statistics.median(t_bare), statistics.median(t_full)
    assert m_full <= 1.2 * m_bare, (t_bare, t_full)
    for con in (bare, full):
        con.close()
