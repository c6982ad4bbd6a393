"""Shortcuts the quarter's SQL stages take at national scale (issue 11) give what the plain computation gives:

- fact_indicator_value groups file versions a second time only for the communities a later file revised; every
  other cell has one version and passes straight through (checked against the SQL grouping every community);
- outliers skip the history statistics of a method whose min_history exceeds the quarters loaded (checked against
  the SQL computing them), and count a cell's history only for the values out of range.
"""

import shutil

import pytest

from shequ import dq
from shequ.warehouse import FACT_ORDER, bind, build_facts, connect, model_sql

Q = "2024Q1"
COLS = ("file_id, community_key, indicator_code, period_key, role, value, unit, qualifier, raw_text, source_sheet, "
        "source_row, source_column, source_cell")


@pytest.fixture
def wh(tmp_path, template):
    db = tmp_path / "t.duckdb"
    shutil.copy(template, db)
    return db


def _file(con, file_id, seq):
    con.execute("INSERT INTO raw_file (file_id, ingest_seq, source_file, size_bytes, modified_at, file_format, "
                "encoding, period_keys, status, reason_code, message, n_cells, n_loaded, n_quarantined, ingested_at, "
                "notes) VALUES (?, ?, ?, 1, TIMESTAMP '2024-04-10 09:00', 'csv', 'utf-8', ['2024Q1'], 'loaded', NULL, "
                "NULL, 0, 0, 0, now(), [])", [file_id, seq, f"{file_id}.csv"])


def _stage(con, file_id, rows):
    """rows: (community_key, indicator_code, role, value, row)."""
    con.executemany(f"INSERT INTO stg_value ({COLS}) VALUES (?, ?, ?, '{Q}', ?, ?, '', NULL, ?, 'S', ?, 'C', ?)",
                    [[file_id, k, code, role, v, str(v), r, f"C{r}"] for k, code, role, v, r in rows])


def test_revised_communities_regroup_and_the_rest_pass_through_as_the_plain_sql(wh):
    with connect(wh) as con:
        ratio, scale = con.execute("""SELECT indicator_code, coalesce(ratio_scale, 1) FROM dim_indicator
            WHERE aggregation = 'ratio' AND time_rollup <> 'ratio_of_sums' ORDER BY 1 LIMIT 1""").fetchall()[0]
        plain = con.execute("""SELECT indicator_code FROM dim_indicator WHERE aggregation <> 'ratio'
            AND time_rollup = 'last' ORDER BY 1 LIMIT 1""").fetchall()[0][0]
        a, b, c = [r[0] for r in con.execute("SELECT community_key FROM dim_community WHERE valid_to IS NULL "
                                             "ORDER BY community_key LIMIT 3").fetchall()]
        _file(con, "f1", 1)
        _file(con, "f2", 2)
        _stage(con, "f1", [(a, ratio, "value", 0.5, 2), (a, ratio, "numerator", 3, 2), (a, ratio, "denominator", 4, 2),
                           (a, plain, "value", 7, 2), (b, ratio, "numerator", 1, 3), (b, ratio, "denominator", 2, 3),
                           (b, plain, "value", 8, 3), (c, plain, "value", 9, 4)])
        # f2 revises community a's rate, stating the value alone: its parts are not taken from f1
        _stage(con, "f2", [(a, ratio, "value", 0.6, 12)])
        n = build_facts(con, Q)
        got = con.execute("""SELECT community_key, indicator_code, value, numerator, denominator, file_id, source_row,
                                    n_versions FROM fact_indicator_value WHERE period_key = ?
                             ORDER BY community_key, indicator_code""", [Q]).fetchall()
        # the plain SQL: every community through the second grouping
        sql = model_sql("fact_indicator_value")
        assert sql.count("HAVING min(ingest_seq) < max(ingest_seq)") == 1
        plain_sql = sql.replace("HAVING min(ingest_seq) < max(ingest_seq)", "")
        cols = "* EXCLUDE (loaded_at)"
        fast = con.execute(f"SELECT {cols} FROM ({sql}) ORDER BY ALL", bind(sql, {"period_key": Q})).fetchall()
        slow = con.execute(f"SELECT {cols} FROM ({plain_sql}) ORDER BY ALL",
                           bind(plain_sql, {"period_key": Q})).fetchall()
        order = con.execute(f"SELECT {FACT_ORDER.replace('period_key, ', '')} FROM fact_indicator_value "
                            "ORDER BY rowid").fetchall()
    assert n == 5
    expected = sorted([(a, ratio, 0.6, None, None, "f2", 12, 2), (a, plain, 7.0, None, None, "f1", 2, 1),
                       (b, ratio, 1 / 2 * scale, 1.0, 2.0, "f1", 3, 1), (b, plain, 8.0, None, None, "f1", 3, 1),
                       (c, plain, 9.0, None, None, "f1", 4, 1)], key=lambda r: (r[0], r[1]))
    assert got == expected
    assert fast == slow and len(fast) == 5
    assert order == sorted(order)                    # written in FACT_ORDER (one period: indicator, community)


def _facts(con, rows):
    con.execute("INSERT INTO raw_file (file_id, ingest_seq, source_file, size_bytes, modified_at, file_format, "
                "encoding, period_keys, status, reason_code, message, n_cells, n_loaded, n_quarantined, ingested_at, "
                "notes) VALUES ('f', 1, 'x.csv', 1, NULL, 'csv', 'utf-8', [], 'loaded', NULL, NULL, 0, 0, 0, now(), [])")
    con.executemany("INSERT INTO fact_indicator_value VALUES (?, ?, ?, ?, NULL, NULL, NULL, '', NULL, 'x.csv', NULL, "
                    "NULL, NULL, NULL, 'f', 1, now(), NULL)", rows)


@pytest.mark.parametrize("n_quarters", [1, 3, 4, 12])
def test_outliers_without_the_statistics_no_cell_can_use_flag_what_the_plain_sql_flags(wh, n_quarters):
    quarters = []
    y, q = 2024, 1
    for _ in range(n_quarters):
        quarters.insert(0, f"{y}Q{q}")
        y, q = (y, q - 1) if q > 1 else (y - 1, 4)
    with connect(wh) as con:
        keys = [r[0] for r in con.execute("SELECT community_key FROM dim_community WHERE valid_to IS NULL "
                                          "ORDER BY community_key LIMIT 3").fetchall()]
        rows = []
        for i, p in enumerate(quarters):
            last = p == Q
            rows.append((keys[0], "criminal_cases", p, 40.0 if last else 10.0 + (i % 3)))   # a spike
            rows.append((keys[1], "criminal_cases", p, 10.0 + (i % 3)))
            rows.append((keys[2], "staff_avg_age", p, 75.0 if last else 40.0))             # above valid_max 70
        _facts(con, rows)
        methods = dq.load_outlier_methods()
        hq = dq.history_quarters(con, Q)
        capped = dq.history_quarters(con, Q, enough=4)              # what run_outliers asks
        stored = [dq.run_outliers(con, Q), con.execute(
            "SELECT community_key, indicator_code, method, value, statistic, threshold, center, spread, n_history "
            "FROM outlier_flag ORDER BY ALL").fetchall()]
        fast = con.execute(f"SELECT * FROM ({dq.outlier_sql(Q, methods, hq)}) ORDER BY ALL").fetchall()
        plain = con.execute(f"SELECT * FROM ({dq.outlier_sql(Q, methods)}) ORDER BY ALL").fetchall()
    assert hq == n_quarters and capped == min(n_quarters, 4)
    assert fast == plain
    assert stored == [len(plain), plain]
    assert [(r[0], r[1], r[2], r[3], r[-1]) for r in fast if r[2] == "minmax"] == [
        (keys[2], "staff_avg_age", "minmax", 75.0, n_quarters)]      # n: the cell's quarters of history
    assert any(r[2] == "modified_zscore" for r in fast) == (n_quarters >= 4)
