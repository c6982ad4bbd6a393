"""Parity with GX itself, offline Data Docs, and the suite benchmark at CI size.

The parity test runs the shipped suites' column expectations through GX's own pandas engine and through the
DuckDB executor on small tables with planted defects, and asserts the same success and unexpected count per
expectation. unexpected_rows_expectation is SQL-only in GX (its pandas engine cannot run it), so those are
covered by the planted-defect tests in test_quality.py and test_dq.py instead."""

import json
import os
import re
import shutil

import pytest

from shequ.config import EXPECTATIONS_DIR
from shequ.quality import run_suite
from shequ.quality_bench import gx_validate, run as bench_run
from shequ.warehouse import connect

SUITES = ["stg_value", "fact_indicator_value", "agg_indicator_value", "fact_ranking", "fact_score", "dim_indicator",
          "dim_community", "quality_hold", "validation_violation", "outlier_flag", "completeness_report"]

# planted defects per table: each statement breaks at least one column expectation of its suite
DEFECTS = {
    "stg_value": ["UPDATE t SET role = 'numer' WHERE rowid % 7 = 0",
                  "INSERT INTO t SELECT * FROM t WHERE rowid < 3"],
    "fact_indicator_value": ["INSERT INTO t SELECT * FROM t WHERE rowid < 4"],
    "agg_indicator_value": ["UPDATE t SET entity_level = 'town' WHERE rowid % 11 = 0",
                            "INSERT INTO t SELECT * FROM t WHERE rowid < 2"],
    "fact_ranking": ["UPDATE t SET rank = 0 WHERE rowid % 13 = 0", "UPDATE t SET coverage = 1.5 WHERE rowid % 17 = 0",
                     "UPDATE t SET rank = NULL WHERE rowid % 19 = 0"],
    "fact_score": ["UPDATE t SET score = 100.5 WHERE rowid % 9 = 0", "UPDATE t SET node_level = 'leaf' WHERE rowid = 1"],
    "dim_indicator": ["UPDATE t SET aggregation = 'median' WHERE rowid % 5 = 0",
                      "INSERT INTO t SELECT * FROM t WHERE rowid < 2"],
    "dim_community": ["UPDATE t SET community_type = '乡镇' WHERE rowid % 6 = 0",
                      "INSERT INTO t SELECT * FROM t WHERE rowid < 2"],
}


def _plant_quality_tables(c):
    c.execute("""INSERT INTO quality_hold VALUES ('2024Q1', 1, 'a', 'VR01', 'HIGH', 'x', now()),
                 ('2024Q1', 1, 'a', 'VR01', 'HIGH', 'x', now()), ('2024Q1', 2, 'b', 'VR02', 'MEDIUM', 'y', now())""")
    c.execute("""INSERT INTO validation_violation VALUES ('2024Q1', 'VR01', 'HIGH', 'community', 'c1', 'n', 1, 3, '<=', 2,
                 now()), ('2024Q1', 'VR01', 'SEVERE', 'town', 'c1', 'n', 1, 3, '<=', 2, now())""")
    c.execute("""INSERT INTO outlier_flag VALUES ('2024Q1', 1, 'a', 'iqr', 5, 4, 3, 1, 1, 8, 'open', now()),
                 ('2024Q1', 1, 'a', 'zscore', 5, 4, 3, 1, 1, 8, 'done', now())""")
    c.execute("""INSERT INTO completeness_report VALUES ('2024Q1', 'street', 's1', 's', 10, 9, 0.9, 9, 0.9, 10, 9, 0.9,
                 DATE '2024-04-15'), ('2024Q1', 'town', 's2', 's', 10, 9, 1.2, 9, -0.1, 10, 9, 0.9, DATE '2024-04-15')""")


def test_column_expectations_match_gx_pandas_engine(workspace, tmp_path):
    wh = workspace["warehouse"]
    compared = partials = 0
    with connect(wh) as c:
        _plant_quality_tables(c)
        for suite in SUITES:
            spec = json.loads((EXPECTATIONS_DIR / f"{suite}.json").read_text(encoding="utf-8"))
            table = spec["meta"].get("table", suite)
            cols = [e for e in spec["expectations"] if e["type"] != "unexpected_rows_expectation"]
            where = "WHERE period_key = '2024Q1'" if "period_key" in [r[0] for r in c.execute(
                f"DESCRIBE {table}").fetchall()] else ""
            # a small table: 300 rows of the quarter, then the planted defects
            c.execute(f"CREATE OR REPLACE TABLE t AS SELECT * FROM {table} {where} ORDER BY ALL LIMIT 300")
            for stmt in DEFECTS.get(suite, []):
                c.execute(stmt)
            d = tmp_path / suite
            d.mkdir()
            (d / "t.json").write_text(json.dumps({"name": "t", "expectations": cols, "meta": {"table": "t",
                                      "period_filter": False}}, ensure_ascii=False), encoding="utf-8")
            ours = run_suite(c, "t", None, d, record=False)
            df = c.sql("SELECT * FROM t").df()
            theirs = gx_validate(df, {"name": suite, "expectations": cols})
            for e, o, g in zip(cols, ours, theirs):
                info = g["exception"] or {}
                raised = info.get("raised_exception") if "raised_exception" in info else any(
                    isinstance(v, dict) and v.get("raised_exception") for v in info.values())
                assert not raised, (suite, e, info)             # GX computed it, rather than failing on it
                expected_unexpected = g["unexpected"] if g["unexpected"] is not None else o.unexpected
                assert (o.success, o.unexpected) == (g["success"], expected_unexpected), (suite, e["type"], e["kwargs"])
                if e["type"] in ("expect_column_values_to_be_between", "expect_column_values_to_be_in_set"):
                    # GX's partial_unexpected_list: the first 20 unexpected values in row order, as ours
                    assert [_norm(v) for v in o.partial] == [_norm(v) for v in g["partial"]], (suite, e["kwargs"])
                    partials += bool(o.partial)
                compared += 1
            if DEFECTS.get(suite) or suite in ("quality_hold", "validation_violation", "outlier_flag",
                                               "completeness_report"):
                assert any(not o.success for o in ours), suite   # the planted defects were caught by both
    assert compared >= 30
    assert partials >= 5                                          # lists compared where defects were planted


def _norm(v):
    if v is None or isinstance(v, str):
        return v
    try:
        return round(float(v), 9)
    except (TypeError, ValueError):
        return str(v)


def test_unsupported_kwarg_fails_loudly(tmp_path, built):
    d = tmp_path / "s"
    d.mkdir()
    (d / "fact_indicator_value.json").write_text(json.dumps({"name": "fact_indicator_value", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "value", "row_condition": "x > 1"}}]}))
    from shequ.quality import UnsupportedExpectation
    with connect(built["warehouse"], read_only=True) as c, pytest.raises(UnsupportedExpectation, match="row_condition"):
        run_suite(c, "fact_indicator_value", "2024Q1", d, record=False)


def test_data_docs_are_offline(built, tmp_path):
    from shequ.datadocs import build

    index = build(built["warehouse"], tmp_path / "docs")
    pages = [index, *sorted((tmp_path / "docs" / "validations").rglob("*.html"))]
    assert len(pages) > 10
    for page in pages:
        text = page.read_text(encoding="utf-8")
        refs = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', text)
        refs += re.findall(r'<img[^>]+src="([^"]+)"', text)
        assert refs, page
        for ref in refs:
            assert not re.match(r"(https?:)?//", ref), (page, ref)     # no CDN, no network
            assert (page.parent / ref).resolve().is_file(), (page, ref)
    fa = (tmp_path / "docs" / "static" / "vendor").rglob("fa-solid-900.woff2")
    assert list(fa)                                                   # the fonts Font Awesome's CSS loads


@pytest.mark.bench
def test_suite_benchmark_agrees_with_hand_sql_and_gx():
    res = bench_run(int(os.environ.get("SHEQU_BENCH_ROWS", 20000)), gx=True, repeat=1)
    assert res["hand_unexpected"] == res["compiled_unexpected"] == res["gx_unexpected"]
    assert res["compiled_unexpected"][1] > 0 and res["compiled_unexpected"][6] > 0   # planted defects found
