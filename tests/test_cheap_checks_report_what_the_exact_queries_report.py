"""The checks' cheap screens (issue 11: the checks stage at national scale) report what the exact queries report.

The suite executor runs a cheap query first and the written one only when the cheap one finds something: the
uniqueness bitmap (``bitstring_agg`` over community_key, grouped by the key's other columns) before the hash
GROUP BY, and quality.SCREENS for the facts' and staged values' reference, validity, file and "staged but no
fact" queries. On a warehouse refreshed by the real job, each planted defect is run through both paths (the
screens on; the screens off, every query as written) and every check_result row must be the same."""

import pytest

from shequ import quality
from shequ.warehouse import connect

Q = "2024Q1"
SUITES = ("stg_value", "fact_indicator_value")

# each defect: the SQL that plants it, and the expectations (suite, label prefix) that must then fail
DEFECTS = {
    "staged_duplicate": (
        [f"INSERT INTO stg_value SELECT * FROM stg_value WHERE period_key = '{Q}' ORDER BY ALL LIMIT 3"],
        [("stg_value", "00 expect_compound_columns_to_be_unique")]),
    # the same cells sent again in another loaded file: the key without file_id repeats, the key does not
    "staged_again_in_another_file": (
        [f"""INSERT INTO stg_value SELECT (SELECT max(file_id) FROM raw_file WHERE status = 'loaded'
                                           AND file_id <> s.file_id), s.* EXCLUDE (file_id)
             FROM stg_value s WHERE period_key = '{Q}' ORDER BY ALL LIMIT 5"""],
        []),
    "staged_orphans": (
        [f"""INSERT INTO stg_value SELECT file_id, 987654, indicator_code, period_key, role, value, unit, qualifier,
                 raw_text, source_sheet, source_row, source_column, source_cell
             FROM stg_value WHERE period_key = '{Q}' ORDER BY ALL LIMIT 2""",
         f"""INSERT INTO stg_value SELECT file_id, community_key, 'no_such_indicator', period_key, role, value, unit,
                 qualifier, raw_text, source_sheet, source_row, source_column, source_cell
             FROM stg_value WHERE period_key = '{Q}' ORDER BY ALL LIMIT 1"""],
        [("stg_value", "04 unexpected_rows_expectation"),
         ("fact_indicator_value", "10 unexpected_rows_expectation")]),   # staged, no fact
    "staged_from_unknown_file": (
        [f"UPDATE stg_value SET file_id = 'not_a_file' WHERE rowid IN (SELECT rowid FROM stg_value "
         f"WHERE period_key = '{Q}' ORDER BY ALL LIMIT 4)"],
        [("stg_value", "05 unexpected_rows_expectation")]),
    "fact_duplicate": (
        [f"INSERT INTO fact_indicator_value SELECT * FROM fact_indicator_value WHERE period_key = '{Q}' "
         f"AND indicator_code = (SELECT min(indicator_code) FROM fact_indicator_value) ORDER BY ALL LIMIT 2"],
        [("fact_indicator_value", "01 expect_compound_columns_to_be_unique")]),
    "fact_orphans": (
        [f"UPDATE fact_indicator_value SET community_key = 987654 WHERE rowid IN (SELECT rowid FROM "
         f"fact_indicator_value WHERE period_key = '{Q}' ORDER BY ALL LIMIT 3 OFFSET 200)",
         f"UPDATE fact_indicator_value SET indicator_code = 'no_such_indicator' WHERE rowid IN (SELECT rowid FROM "
         f"fact_indicator_value WHERE period_key = '{Q}' ORDER BY ALL LIMIT 1 OFFSET 300)"],
        [("fact_indicator_value", "11 unexpected_rows_expectation")]),
    # staged cells without a fact: a few communities of one indicator, and every fact of another indicator
    "staged_without_fact": (
        [f"DELETE FROM fact_indicator_value WHERE rowid IN (SELECT rowid FROM fact_indicator_value "
         f"WHERE period_key = '{Q}' ORDER BY ALL LIMIT 3 OFFSET 400)",
         f"DELETE FROM fact_indicator_value WHERE period_key = '{Q}' AND indicator_code = (SELECT max(indicator_code) "
         f"FROM fact_indicator_value JOIN dim_indicator USING (indicator_code) WHERE period_key = '{Q}')"],
        [("fact_indicator_value", "10 unexpected_rows_expectation")]),
    "fact_outside_community_validity": (
        [f"""UPDATE dim_community SET valid_from = DATE '2030-01-01' WHERE community_key =
             (SELECT min(community_key) FROM fact_indicator_value WHERE period_key = '{Q}')"""],
        [("fact_indicator_value", "05 unexpected_rows_expectation")]),
    "fact_from_unknown_file": (
        [f"UPDATE fact_indicator_value SET file_id = 'not_a_file' WHERE rowid IN (SELECT rowid FROM "
         f"fact_indicator_value WHERE period_key = '{Q}' AND correction_id IS NULL ORDER BY ALL LIMIT 2 OFFSET 500)"],
        [("fact_indicator_value", "09 unexpected_rows_expectation")]),
}


def _check_rows(con, monkeypatch, cheap: bool):
    with monkeypatch.context() as m:
        if not cheap:     # every query as written: no screen, no bitmap (the hash pre-check stays, as before)
            m.setattr(quality, "SCREENS", {})
            m.setattr(quality, "_unique_by_bitmap", lambda *a, **k: False)
        results = [r for s in SUITES for r in quality.run_suite(con, s, Q)]
    rows = con.execute("""SELECT suite, expectation, severity, success, unexpected, checked, detail,
                                 partial_unexpected FROM check_result WHERE period_key = ? AND suite IN ?
                          ORDER BY suite, expectation""", [Q, list(SUITES)]).fetchall()
    return results, rows


@pytest.mark.parametrize("budget", [quality.BITMAP_BITS, 20_000, 1])
@pytest.mark.parametrize("defect", ["clean", *DEFECTS, "all"])
def test_screens_give_every_check_result_the_exact_queries_give(workspace, monkeypatch, defect, budget):
    # budget: the bitmap with every key column, with some left out (grouped by a subset of the key), and none
    monkeypatch.setattr(quality, "BITMAP_BITS", budget)
    planted = list(DEFECTS) if defect == "all" else [] if defect == "clean" else [defect]
    with connect(workspace["warehouse"]) as con:
        for d in planted:
            for sql in DEFECTS[d][0]:
                con.execute(sql)
        cheap, cheap_rows = _check_rows(con, monkeypatch, cheap=True)
        exact, exact_rows = _check_rows(con, monkeypatch, cheap=False)
    assert cheap == exact
    assert cheap_rows == exact_rows and len(cheap_rows) == len(cheap)
    for d in planted:     # the defect is caught (by both paths: they are equal)
        for s, e in DEFECTS[d][1]:
            assert [r for r in cheap if r.suite == s and r.expectation.startswith(e) and not r.success], (d, s, e)
    if defect == "clean":
        assert not [r for r in cheap if r.severity == "critical" and not r.success]


def test_screens_are_taken_on_a_clean_quarter_and_find_each_planted_defect(workspace):
    """The shipped suites' queries have their screens (an edited query would run as written), the screens find
    nothing on a clean quarter, and something wherever the written query finds a row."""
    import json

    from shequ.config import EXPECTATIONS_DIR

    screened = {}
    for s in SUITES:
        suite = json.loads((EXPECTATIONS_DIR / f"{s}.json").read_text(encoding="utf-8"))
        for e in suite["expectations"]:
            q = e["kwargs"].get("unexpected_rows_query")
            if q in quality.SCREENS:
                screened[q] = s
    assert len(screened) == len(quality.SCREENS) == 5

    def counts(con):
        out = []
        for q, s in screened.items():
            batch = (f"(SELECT * FROM {s} WHERE period_key = '{Q}')" if s == "fact_indicator_value" else
                     f"(SELECT * FROM {s} WHERE period_key IN (SELECT period_key FROM dim_period WHERE period_key = "
                     f"'{Q}' OR (period_type = 'month' AND quarter_key = '{Q}')))")
            cols = quality.table_columns(con, s)
            exact = con.execute(f"SELECT count(*) FROM ({q.replace('{batch}', batch).replace('$period_key', repr(Q))})"
                                ).fetchall()[0][0]
            out.append((quality.SCREENS[q](con, batch, cols, Q), exact))
        return out

    with connect(workspace["warehouse"]) as con:
        assert all(screen == 0 and exact == 0 for screen, exact in counts(con))
        for d in DEFECTS:
            for sql in DEFECTS[d][0]:
                con.execute(sql)
        found = counts(con)
    assert all(exact > 0 for _, exact in found)
    assert all(screen is None or screen > 0 for screen, _ in found)


def test_a_key_column_left_out_of_the_bitmap_grouping_still_proves_uniqueness(tmp_path, monkeypatch):
    """stg_value at national scale: file_id (hundreds of versions) does not fit the bitmap budget and is left out;
    the key without it is unique, so the screen passes and the exact query is skipped; a duplicate, and a cell
    sent again in another file, still give the exact query's results."""
    import json

    import duckdb

    suite = {"name": "t", "meta": {"table": "t"}, "expectations": [
        {"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": ["file_id", "k", "code"]}}]}
    (tmp_path / "t.json").write_text(json.dumps(suite), encoding="utf-8")
    con = duckdb.connect()
    # 400 files of 25 communities each, 3 codes: the key without file_id is unique
    con.execute("""CREATE TABLE t AS SELECT sha256((k // 25)::VARCHAR) AS file_id, k::INTEGER AS k, code
                   FROM range(10000) r(k), (VALUES ('a'), ('b'), ('c')) c(code)""")
    n_files, = con.execute("SELECT stats(file_id)['approx_unique'] FROM t LIMIT 1").fetchall()[0]
    assert n_files > 100
    # room for the codes' groups (3 x 10,000 bits, with the 10% margin) but not for the files'
    monkeypatch.setattr(quality, "BITMAP_BITS", 200_000)
    screened = []
    real = quality._unique_by_bitmap
    monkeypatch.setattr(quality, "_unique_by_bitmap", lambda *a: screened.append(real(*a)) or screened[-1])

    def both():
        cheap = quality.run_suite(con, "t", None, directory=tmp_path, record=False)
        with monkeypatch.context() as m:
            m.setattr(quality, "_unique_by_bitmap", lambda *a, **k: False)
            exact = quality.run_suite(con, "t", None, directory=tmp_path, record=False)
        assert cheap == exact
        return cheap[0]

    r = both()
    assert r.success and screened == [True]
    con.execute("INSERT INTO t SELECT sha256('other'), k, code FROM t WHERE k < 3 AND code = 'a'")  # sent again
    r = both()
    assert r.success and screened[-1] is False          # the screen gives way; the exact path finds no duplicate
    con.execute("INSERT INTO t SELECT * FROM t WHERE k = 7 AND code = 'b'")                            # a duplicate
    r = both()
    assert not r.success and r.unexpected == 2 and screened[-1] is False
