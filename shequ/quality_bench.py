"""Suite executor benchmark: the same 11 expectations on an N-row fact table, three ways.

1. hand-written DuckDB SQL (one aggregate scan plus one GROUP BY for the key, written out by hand);
2. the GX suite JSON compiled by shequ.quality.run_suite;
3. Great Expectations' own pandas engine (the table copied to pandas first; the copy is timed separately).

    python -m shequ.quality_bench --rows 10000000 [--no-gx] [--out result.json]

Each run also checks that the three agree on every unexpected count (a benchmark of different answers would
be meaningless). Figures go into README "数据质量 › 基准".
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from .quality import run_suite

PERIOD = "2024Q3"
UNITS = ["个", "人", "%", "万元", "平方米"]
SUITE = {
    "name": "bench_fact",
    "meta": {"table": "bench_fact", "period_filter": False},
    "expectations": [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}, "severity": "warning"},
        {"type": "expect_compound_columns_to_be_unique",
         "kwargs": {"column_list": ["community_key", "indicator_code", "period_key"]}, "severity": "critical"},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "value"}, "severity": "critical"},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "source_file"}, "severity": "critical"},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "unit"}, "severity": "critical"},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "indicator_code"},
         "severity": "critical"},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "value", "min_value": -100000,
                                                                  "max_value": 1000000}, "severity": "critical"},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "numerator", "min_value": 0},
         "severity": "critical"},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "denominator", "min_value": 0,
                                                                  "strict_min": True}, "severity": "critical"},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "period_key", "value_set": [PERIOD]},
         "severity": "critical"},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "unit", "value_set": UNITS},
         "severity": "critical"},
    ],
}

HAND_SQL = f"""
SELECT count(*) AS n,
       count(*) FILTER (WHERE value IS NULL), count(*) FILTER (WHERE source_file IS NULL),
       count(*) FILTER (WHERE unit IS NULL), count(*) FILTER (WHERE indicator_code IS NULL),
       count(*) FILTER (WHERE value < -100000 OR value > 1000000),
       count(*) FILTER (WHERE numerator < 0), count(*) FILTER (WHERE denominator <= 0),
       count(*) FILTER (WHERE period_key <> '{PERIOD}'),
       count(*) FILTER (WHERE unit NOT IN ({", ".join(f"'{u}'" for u in UNITS)}))
FROM bench_fact"""
HAND_DUP = """SELECT coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM bench_fact
              GROUP BY community_key, indicator_code, period_key HAVING count(*) > 1)"""


def make_table(con: duckdb.DuckDBPyConnection, n: int) -> None:
    """N fact-like rows (68 indicators per community) with a few planted defects of each kind."""
    units = "[" + ", ".join(f"'{u}'" for u in UNITS) + "]"
    con.execute(f"""CREATE OR REPLACE TABLE bench_fact AS
        SELECT (i // 68)::INTEGER AS community_key, 'ind_' || (i % 68) AS indicator_code,
               CASE WHEN i % 1000003 = 7 THEN '2024Q2' ELSE '{PERIOD}' END AS period_key,
               CASE WHEN i % 999983 = 11 THEN NULL WHEN i % 500009 = 5 THEN 2e6 ELSE (i % 977) * 1.5 END AS value,
               CASE WHEN i % 3 = 0 THEN (i % 50)::DOUBLE - CASE WHEN i % 700001 = 0 THEN 100 ELSE 0 END END
                   AS numerator,
               CASE WHEN i % 3 = 0 THEN 50.0 - CASE WHEN i % 800011 = 0 THEN 50 ELSE 0 END END AS denominator,
               CASE WHEN i % 900007 = 3 THEN '亩' ELSE {units}[1 + i % 5] END AS unit,
               'file_' || (i // 6800) || '.csv' AS source_file
        FROM range({n}) t(i)""")
    # duplicated keys: a few rows copied
    con.execute("INSERT INTO bench_fact SELECT * FROM bench_fact WHERE community_key % 50000 = 1 "
                "AND indicator_code = 'ind_0'")


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def run(n: int, gx: bool = True, repeat: int = 5) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        con = duckdb.connect(str(Path(tmp) / "b.duckdb"))
        con.execute("CREATE TABLE check_result (period_key VARCHAR, suite VARCHAR, expectation VARCHAR, "
                    "severity VARCHAR, success BOOLEAN, unexpected BIGINT, checked BIGINT, detail VARCHAR, "
                    "checked_at TIMESTAMP, partial_unexpected VARCHAR)")
        suite_dir = Path(tmp) / "suites"
        suite_dir.mkdir()
        (suite_dir / "bench_fact.json").write_text(json.dumps(SUITE, ensure_ascii=False), encoding="utf-8")
        make_table(con, n)
        rows = con.execute("SELECT count(*) FROM bench_fact").fetchall()[0][0]

        def hand():
            v = con.execute(HAND_SQL).fetchall()[0]
            d = con.execute(HAND_DUP).fetchall()[0][0]
            return [int(v[0] > 0), int(d), *map(int, v[1:])]

        def compiled():
            return [r.unexpected for r in run_suite(con, "bench_fact", None, suite_dir, record=False)]

        # interleaved, best of ``repeat`` each: load from other jobs on the machine hits both alike
        hand_t, comp_t = [], []
        for _ in range(repeat):
            hand_t.append(_timed(hand)[0])
            comp_t.append(_timed(compiled)[0])
        hand_s, comp_s = min(hand_t), min(comp_t)
        hand_res, comp_res = hand(), compiled()
        # row-count expectation: hand gives "has rows" (1), the suite gives unexpected 0 when it has rows
        hand_res[0] = 0 if hand_res[0] else 1
        out = {"rows": rows, "expectations": len(SUITE["expectations"]), "hand_sql_s": round(hand_s, 3),
               "compiled_suite_s": round(comp_s, 3), "compiled_over_hand": round(comp_s / hand_s, 2),
               "hand_unexpected": hand_res, "compiled_unexpected": comp_res}
        if gx:
            copy_s, df = _timed(lambda: con.sql("SELECT * FROM bench_fact").df())
            import_s, gxv = _timed(_gx_validator)
            gx_s, gx_res = _timed(lambda: gxv(df))
            out.update({"pandas_copy_s": round(copy_s, 3), "gx_import_s": round(import_s, 3),
                        "gx_pandas_s": round(gx_s, 3), "gx_over_compiled": round(gx_s / comp_s, 2),
                        "gx_plus_copy_over_compiled": round((gx_s + copy_s) / comp_s, 2),
                        "gx_unexpected": gx_res})
        con.close()
    return out


def _gx_validator():
    import great_expectations  # noqa: F401  (timed: the import alone costs seconds)

    def validate(df):
        res = gx_validate(df, SUITE)
        return [r["unexpected"] if r["unexpected"] is not None else (0 if r["success"] else 1) for r in res]
    return validate


def gx_validate(df, suite: dict) -> list[dict]:
    """Run a suite dict through GX's own pandas engine; per expectation: success and unexpected_count."""
    import great_expectations as gx

    ctx = gx.get_context(mode="ephemeral")
    ds = ctx.data_sources.add_pandas("shequ")
    asset = ds.add_dataframe_asset("t")
    batch = asset.add_batch_definition_whole_dataframe("b").get_batch(batch_parameters={"dataframe": df})
    gsuite = gx.ExpectationSuite(name=suite["name"], expectations=[
        {"type": e["type"], "kwargs": e["kwargs"], "meta": e.get("meta", {}), "severity": e.get("severity",
                                                                                                "critical")}
        for e in suite["expectations"]])
    result = batch.validate(gsuite, result_format="SUMMARY")
    # GX does not keep the suite's order and fills in default kwargs: match each result to the expectation whose
    # type and stated kwargs it carries
    def same(r, e):
        kw = r.expectation_config.kwargs
        return r.expectation_config.type == e["type"] and all(
            (list(kw.get(k)) if isinstance(v, list) else kw.get(k)) == v for k, v in e["kwargs"].items())
    out = []
    for e in suite["expectations"]:
        r = next(r for r in result.results if same(r, e))
        out.append({"type": e["type"], "success": bool(r.success), "unexpected": r.result.get("unexpected_count"),
                    "partial": r.result.get("partial_unexpected_list"),
                    "exception": r.exception_info if not r.success else None})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m shequ.quality_bench")
    p.add_argument("--rows", type=int, default=int(os.environ.get("SHEQU_BENCH_ROWS", 20000)))
    p.add_argument("--no-gx", action="store_true")
    p.add_argument("--out")
    a = p.parse_args(argv)
    res = run(a.rows, gx=not a.no_gx)
    text = json.dumps(res, ensure_ascii=False, indent=2)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
