"""The quality stage's faster SQL (issue 11) gives what the plain SQL gave, on a refreshed warehouse with planted
oddities (a duplicated fact, a fact of a community outside the dimension, a community of no known type, an
indicator not applicable to a type):

- the validation rules' community table: one slice of facts per indicator joined on community_key, against
  DuckDB's PIVOT over the same rows;
- completeness: expected values counted per community type and received values looked up through community and
  indicator, against the community x indicator pairs built and joined to the facts."""

import pytest

from shequ import dq
from shequ.warehouse import connect

Q = "2024Q1"


def pivot_sql(needed, q):
    """The PIVOT the community table was built with before (shequ/dq.py _pivot, level community)."""
    codes = ", ".join(sorted({dq._lit(c) for c, _ in needed}))
    parts = sorted({p for _, p in needed})
    using = ", ".join(f"max({'reported_value' if p == 'reported' else p}) AS {p}" for p in parts)
    picked = ", ".join(f'p."{c}_{p}" AS {dq._col(c, p)}' for c, p in needed)
    return (f"SELECT p.community_key, NULL::VARCHAR AS entity_code, NULL::VARCHAR AS entity_name, {picked} FROM "
            f"(PIVOT (SELECT community_key, indicator_code, value, numerator, denominator, reported_value "
            f"FROM fact_indicator_value WHERE period_key = {dq._lit(q)} AND indicator_code IN ({codes})) "
            f"ON indicator_code IN ({codes}) USING {using} GROUP BY community_key) p "
            f"SEMI JOIN dim_community c USING (community_key)")


PAIRS = """    exp AS (SELECT comm.community_key, ind.indicator_code FROM comm JOIN ind
            ON ind.not_applicable_to IS NULL OR NOT list_contains(string_split(ind.not_applicable_to, '|'),
                                                                  comm.community_type)),
    ev AS (SELECT community_key, count(*) AS n FROM exp GROUP BY 1),
    rv AS (SELECT community_key, count(*) AS n FROM exp JOIN recv USING (community_key, indicator_code) GROUP BY 1),
"""


def plain_completeness_sql(q, cfg):
    sql = dq.completeness_sql(q, cfg)
    start, end = sql.index("    -- expected values:"), sql.index("    ro AS (")
    assert "ty AS (" in sql[start:end] and "rv AS (" in sql[start:end]
    return sql[:start] + PAIRS + sql[end:]


@pytest.mark.parametrize("oddities", [False, True])
def test_faster_validation_table_and_completeness_give_the_plain_sql_results(workspace, oddities):
    rules = dq.load_rules()
    needed = list(dict.fromkeys(it for r in rules if "community" in r.levels for it in r.left_items + r.right_items))
    cfg = dq.load_completeness_config()
    with connect(workspace["warehouse"]) as con:
        if oddities:
            code = needed[0][0]
            # a second row for two community x indicator cells, every part of it larger
            con.execute(f"""INSERT INTO fact_indicator_value SELECT * REPLACE (value + 5 AS value,
                    coalesce(numerator, 0) + 5 AS numerator, coalesce(denominator, 0) + 5 AS denominator,
                    coalesce(reported_value, 0) + 5 AS reported_value)
                FROM fact_indicator_value WHERE period_key = '{Q}' AND indicator_code = ? ORDER BY ALL LIMIT 2""",
                        [code])
            con.execute(f"""INSERT INTO fact_indicator_value SELECT * REPLACE (987654 AS community_key)
                FROM fact_indicator_value WHERE period_key = '{Q}' AND indicator_code = ? ORDER BY ALL LIMIT 1""",
                        [code])
            con.execute("""UPDATE dim_community SET community_type = '未知类型' WHERE community_key IN
                (SELECT community_key FROM dim_community ORDER BY community_key LIMIT 3)""")
            con.execute("""UPDATE dim_indicator SET not_applicable_to = '村代居|城市村'
                WHERE indicator_code IN (SELECT indicator_code FROM dim_indicator ORDER BY 1 LIMIT 5)""")
        fast = con.execute(f"SELECT * FROM ({dq._pivot('community', needed, Q)}) ORDER BY ALL").fetchall()
        plain = con.execute(f"SELECT * FROM ({pivot_sql(needed, Q)}) ORDER BY ALL").fetchall()
        con.execute("CREATE OR REPLACE TEMP TABLE _receipts (source_file VARCHAR, received_on DATE)")
        done = con.execute(f"SELECT * FROM ({dq.completeness_sql(Q, cfg)}) ORDER BY ALL").fetchall()
        pairs = con.execute(f"SELECT * FROM ({plain_completeness_sql(Q, cfg)}) ORDER BY ALL").fetchall()
        n_comm = con.execute(f"SELECT count(DISTINCT community_key) FROM fact_indicator_value WHERE "
                             f"period_key = '{Q}' AND community_key IN (SELECT community_key FROM dim_community)"
                             ).fetchall()[0][0]
    assert fast == plain and len(fast) == n_comm > 0
    assert done == pairs and len(done) > 0
    # the planted duplicate is read as the PIVOT read it (the larger value), and values reach the table
    assert any(v is not None for row in fast for v in row[3:])
