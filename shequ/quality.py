"""Data-quality suites: Great Expectations 1.x suite JSON (expectations/*.json) executed as DuckDB SQL.

GX's own SQL data source fails on DuckDB upstream and importing GX costs 8-25 s, so the suites stay GX JSON
(the specification, loadable by ``gx.ExpectationSuite(**json)``) and are compiled here into one aggregate
query per table where possible; UnexpectedRowsExpectation queries run as written with ``{batch}`` replaced by
the table's rows for the period. An expectation type this executor does not know fails loudly: it never passes.

Severity (GX ``severity``): ``critical`` failures block downstream assets; ``warning`` and ``info`` do not.
"""

import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

from .config import EXPECTATIONS_DIR
from .warehouse import transaction

PERIOD_TABLES = {"stg_value", "fact_indicator_value", "agg_indicator_value", "fact_score", "fact_ranking", "fact_award",
                 "quarantine"}


class UnsupportedExpectation(ValueError):
    pass


@dataclass(frozen=True)
class Result:
    suite: str
    expectation: str          # type + its distinguishing kwargs
    severity: str
    success: bool
    unexpected: int
    checked: int
    detail: str = ""
    partial: tuple = ()       # GX partial_unexpected_list: up to 20 unexpected values, or rows as dicts


def partial_json(partial) -> str:
    """check_result.partial_unexpected: JSON text (dates, decimals as strings)."""
    return json.dumps(list(partial), ensure_ascii=False, default=str)


def load_suite(name: str, directory: Path = EXPECTATIONS_DIR) -> dict:
    path = Path(directory) / f"{name}.json"
    suite = json.loads(path.read_text(encoding="utf-8"))
    suite.setdefault("meta", {})
    return suite


def _q(col: str) -> str:
    return '"' + col.replace('"', '""') + '"'


def _lit(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (int, float)):
        return repr(v)
    return "'" + str(v).replace("'", "''") + "'"


def _label(exp: dict, i: int) -> str:
    """Unique within a suite (check_result keys on it): position, type and what it looks at."""
    kw = exp.get("kwargs", {})
    key = kw.get("column") or ",".join(kw.get("column_list", [])) or exp.get("meta", {}).get("notes", "")[:40]
    return f"{i:02d} {exp['type']}({key})" if key else f"{i:02d} {exp['type']}"


# kwargs each supported type understands; any other kwarg (row_condition, ignore_row_if, ...) fails loudly, since
# ignoring it would compute something other than what the suite says
_COMMON_KW = {"mostly", "result_format", "catch_exceptions", "description"}
_KWARGS = {
    "expect_column_values_to_not_be_null": {"column"},
    "expect_column_values_to_be_between": {"column", "min_value", "max_value", "strict_min", "strict_max"},
    "expect_column_values_to_be_in_set": {"column", "value_set"},
    "expect_column_values_to_be_unique": {"column"},
    "expect_compound_columns_to_be_unique": {"column_list"},
    "expect_table_row_count_to_be_between": {"min_value", "max_value", "strict_min", "strict_max"},
    "unexpected_rows_expectation": {"unexpected_rows_query"},
}


def _check_kwargs(name: str, exp: dict) -> None:
    t, kw = exp["type"], exp.get("kwargs", {})
    if t not in _KWARGS:
        raise UnsupportedExpectation(f"套件 {name}：不支持的期望类型 {t}（执行器不会让它默认通过）")
    extra = set(kw) - _KWARGS[t] - _COMMON_KW
    if t in ("expect_table_row_count_to_be_between", "unexpected_rows_expectation"):
        extra |= {"mostly"} & set(kw)
    if extra:
        raise UnsupportedExpectation(f"套件 {name}：{t} 的参数 {sorted(extra)} 执行器不支持（不会忽略后让它通过）")


def _success(exp: dict, unexpected: int, checked: int) -> bool:
    """GX semantics: without ``mostly`` no unexpected value is allowed; with it, the share of expected values
    among the non-null ones checked must reach ``mostly``."""
    mostly = exp.get("kwargs", {}).get("mostly")
    if mostly is None or checked == 0:
        return unexpected == 0
    return (checked - unexpected) / checked >= float(mostly)


PARTIAL = 20   # GX's partial_unexpected_list length: unexpected values or rows kept per expectation


def _aggregate(exp: dict) -> tuple[str, str, tuple[str, str] | None] | None:
    """(unexpected_expr, checked_expr, sample) for expectations computable in the table's single aggregate scan,
    in the hand-written forms (count(*) FILTER (WHERE ...)). ``sample`` is (column, condition): only when the scan
    finds unexpected values, ``SELECT column ... WHERE condition LIMIT 20`` lists them. Measured at 2M rows:
    5 such queries cost 0.03 s, ``min(column, 20) FILTER (...)`` inside the scan 0.06 s (on every run)."""
    t, kw = exp["type"], exp.get("kwargs", {})
    if t == "expect_column_values_to_not_be_null":
        c = _q(kw["column"])
        return f"count(*) FILTER (WHERE {c} IS NULL)", "count(*)", None
    if t == "expect_column_values_to_be_between":
        c = _q(kw["column"])
        conds = []
        lo, hi = kw.get("min_value"), kw.get("max_value")
        if lo is not None:
            conds.append(f"{c} {'<=' if kw.get('strict_min') else '<'} {_lit(lo)}")
        if hi is not None:
            conds.append(f"{c} {'>=' if kw.get('strict_max') else '>'} {_lit(hi)}")
        if not conds:
            raise UnsupportedExpectation(f"{exp['type']}({kw['column']}): 至少需要 min_value 或 max_value")
        cond = " OR ".join(conds)
        return f"count(*) FILTER (WHERE {cond})", f"count({c})", (c, cond)
    if t == "expect_column_values_to_be_in_set":
        c = _q(kw["column"])
        # a NULL in the list would make NOT IN never true (every row passes): nulls are not set members. A NULL
        # cell makes NOT IN NULL, which FILTER drops: nulls are skipped, as GX does
        values = ", ".join(_lit(v) for v in kw["value_set"] if v is not None)
        cond = f"{c} NOT IN ({values})"
        return f"count(*) FILTER (WHERE {cond})", f"count({c})", (c, cond)
    if t == "expect_table_row_count_to_be_between":
        lo, hi = kw.get("min_value"), kw.get("max_value")
        conds = []
        if lo is not None:
            conds.append(f"count(*) {'<=' if kw.get('strict_min') else '<'} {_lit(lo)}")
        if hi is not None:
            conds.append(f"count(*) {'>=' if kw.get('strict_max') else '>'} {_lit(hi)}")
        return f"CASE WHEN {' OR '.join(conds) or 'FALSE'} THEN 1 ELSE 0 END", "1", None
    return None


_ORDERED = re.compile(r"\border\s+by\b", re.IGNORECASE)


def _rows_of(con, query: str, limit: int = PARTIAL) -> list[dict]:
    """The first ``limit`` rows of a query as column -> value dicts.

    A query without ORDER BY returns its rows in whatever order DuckDB's threads finish (a PIVOT or a GROUP BY
    differs from run to run), so the examples would change between two checks of the same data: such a query's
    examples are the ``limit`` smallest rows (ORDER BY ALL, a top-N); a query that orders its rows keeps its order.
    """
    # every DuckDB type has an order (maps, unions, structs, lists, JSON and VARIANT included)
    order = "" if _ORDERED.search(query) else " ORDER BY ALL"
    rel = con.execute(f"SELECT * FROM ({query}){order} LIMIT {limit}")
    cols = [d[0] for d in rel.description]
    return [dict(zip(cols, r)) for r in rel.fetchall()]


def run_suite(con: duckdb.DuckDBPyConnection, name: str, period_key: str | None = None,
              directory: Path = EXPECTATIONS_DIR, record: bool = True) -> list[Result]:
    """Run suite ``name`` against its table (suite meta.table, default: the suite name) for one period.

    Cost: one aggregate scan for every column and table expectation (the hand-written count(*) FILTER forms,
    each distinct aggregate once), a LIMIT 20 query per expectation that found unexpected values (its partial
    list), one GROUP BY per uniqueness expectation (duplicates, rows checked and examples in that one pass), and
    the unexpected-rows queries as written."""
    suite = load_suite(name, directory)
    table = suite["meta"].get("table", name)
    period_filter = suite["meta"].get("period_filter", table in PERIOD_TABLES)
    if period_filter and period_key and suite["meta"].get("include_months"):
        # staged month rows (2024-07 …) belong to their quarter's check
        batch = (f"(SELECT * FROM {table} WHERE period_key IN (SELECT period_key FROM dim_period WHERE period_key = "
                 f"{_lit(period_key)} OR (period_type = 'month' AND quarter_key = {_lit(period_key)})))")
    elif period_filter and period_key:
        batch = f"(SELECT * FROM {table} WHERE period_key = {_lit(period_key)})"
    else:
        batch = f"(SELECT * FROM {table})"
    # how many period_key values the batch can hold (None: as many as the table), for the bitmap screen's budget
    n_periods = None
    if period_filter and period_key:
        n_periods = 1 if not suite["meta"].get("include_months") else max(1, con.execute(
            "SELECT count(*) FROM dim_period WHERE period_key = ? OR (period_type = 'month' AND quarter_key = ?)",
            [period_key, period_key]).fetchall()[0][0])
    exps = suite.get("expectations", [])
    agg, rows, dups = [], [], []
    for i, exp in enumerate(exps):
        _check_kwargs(name, exp)
        if exp["type"] == "unexpected_rows_expectation":
            rows.append((i, exp))
            continue
        if exp["type"] in ("expect_compound_columns_to_be_unique", "expect_column_values_to_be_unique"):
            # its own GROUP BY: count(DISTINCT (a, b, ...)) inside the shared scan used 10x the memory
            dups.append((i, exp))
            continue
        a = _aggregate(exp)
        if a is None:
            raise UnsupportedExpectation(f"套件 {name}：不支持的期望类型 {exp['type']}（执行器不会让它默认通过）")
        agg.append((i, exp, a))

    def result(i, exp, u, c, partial, examples=None):
        note = exp.get("meta", {}).get("notes", "")
        return Result(name, _label(exp, i), exp.get("severity", "critical"), _success(exp, u, c), u, c,
                      (note + (f" 例：{examples}" if examples else "")).strip(), tuple(partial))

    results: dict[int, Result] = {}
    dup_checked: dict[int, str] = {}
    types = column_types(con, table) if dups else {}
    for i, exp in dups:  # rows with a key to check (GX skips rows whose key is all NULL): counted in the scan
        kw = exp["kwargs"]
        cols = [kw["column"]] if "column" in kw else list(kw["column_list"])
        dup_checked[i] = (f"count({_q(cols[0])})" if len(cols) == 1 else
                          "count(*) FILTER (WHERE " + " OR ".join(f"{_q(c)} IS NOT NULL" for c in cols) + ")")
    if agg or dups:
        # identical aggregates (count(*), count(col)) are listed once
        exprs: dict[str, int] = {}
        for _, _, (u_e, c_e, _) in agg:
            exprs.setdefault(u_e, len(exprs))
            exprs.setdefault(c_e, len(exprs))
        for e in dup_checked.values():
            exprs.setdefault(e, len(exprs))
        for i, exp in dups:   # the range of each integer key column, for the bitmap screen (_unique_by_bitmap)
            kw = exp["kwargs"]
            for c in [kw["column"]] if "column" in kw else kw["column_list"]:
                if types.get(c) in _INTEGER_TYPES:
                    exprs.setdefault(f"min({_q(c)})", len(exprs))
                    exprs.setdefault(f"max({_q(c)})", len(exprs))
        vals = con.execute(f"SELECT {', '.join(exprs)} FROM {batch} AS batch").fetchall()[0]
        for i, exp, (u_e, c_e, s_e) in agg:
            u, c = int(vals[exprs[u_e]] or 0), int(vals[exprs[c_e]] or 0)
            if s_e is None:   # nulls (GX lists None per unexpected row) or the row count (no values)
                partial = [None] * min(u, PARTIAL) if exp["type"].endswith("not_be_null") else []
            elif u:           # GX's partial list: the first 20 unexpected values in table order
                partial = [r[0] for r in con.execute(
                    f"SELECT {s_e[0]} FROM {batch} AS batch WHERE {s_e[1]} LIMIT {PARTIAL}").fetchall()]
            else:
                partial = []
            results[i] = result(i, exp, u, c, partial)
        dup_rows = {i: int(vals[exprs[e]] or 0) for i, e in dup_checked.items()}
    for i, exp in dups:
        # GX counts every row of a duplicated key as unexpected (both copies) and skips rows whose key is all
        # NULL (one group, dropped after HAVING): the hand-written GROUP BY ... HAVING count(*) > 1, which also
        # gives the examples (the 20 smallest duplicated keys with their row counts)
        kw = exp["kwargs"]
        cols = [kw["column"]] if "column" in kw else list(kw["column_list"])
        qc = ", ".join(_q(c) for c in cols)
        all_null = " AND ".join(f"{_q(c)} IS NULL" for c in cols)
        n_key = "n_rows" if "n_rows" not in cols else "n_rows_"
        key = "{" + ", ".join(f"{_lit(c)}: {_q(c)}" for c in cols) + f", '{n_key}': n" + "}"
        # first on the key's hash alone (one fixed-width column to group, about half the work at 1M rows): equal
        # keys have equal hashes, so no repeated hash means no duplicate and the exact query is needed only
        # when some hash repeats (a duplicate, or rarely a collision)
        bounds = {c: (vals[exprs[f"min({_q(c)})"]], vals[exprs[f"max({_q(c)})"]])
                  for c in cols if f"min({_q(c)})" in exprs}
        if _unique_by_bitmap(con, table, batch, cols, bounds, types, n_periods):
            repeated = 0
        else:
            repeated = con.execute(
                f"SELECT count(*) FROM (SELECT hash({qc}) AS h FROM {batch} AS batch WHERE NOT ({all_null}) "
                f"GROUP BY h HAVING count(*) > 1)").fetchall()[0][0]
        u, sample = (0, None) if not repeated else con.execute(
            f"SELECT coalesce(sum(n), 0), min({key}, {PARTIAL}) FROM (SELECT {qc}, count(*) AS n "
            f"FROM {batch} AS batch GROUP BY {qc} HAVING count(*) > 1) WHERE NOT ({all_null})").fetchall()[0]
        c = dup_rows[i]
        sample = list(sample or [])
        results[i] = result(i, exp, int(u), int(c), sample,
                            [tuple(r.values()) for r in sample[:3]] if sample else None)
    n_batch = None
    columns = table_columns(con, table) if rows else []
    for i, exp in rows:
        written = exp["kwargs"]["unexpected_rows_query"]
        query = written.replace("{batch}", _narrow(batch, written, columns))
        if "$period_key" in query:
            query = query.replace("$period_key", _lit(period_key))
        # a cheap query that finds nothing only when the written one finds nothing: then the written one (the
        # count, the examples) is not run. Keyed by the exact text: an edited query runs as written.
        screen = SCREENS.get(written)
        if screen is not None and screen(con, batch, columns, period_key) == 0:
            u = 0
        else:
            u = int(con.execute(f"SELECT count(*) FROM ({query})").fetchall()[0][0])
        sample = _rows_of(con, query) if u else []
        if n_batch is None:
            n_batch = int(con.execute(f"SELECT count(*) FROM {batch}").fetchall()[0][0])
        r = result(i, exp, u, n_batch, sample, [tuple(x.values()) for x in sample[:3]] if sample else None)
        results[i] = Result(r.suite, r.expectation, r.severity, u == 0, u, n_batch, r.detail, r.partial)
    out = [results[i] for i in range(len(exps))]
    if record:
        record_results(con, out, period_key or "*")
    return out


_INTEGER_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}
# the bitmap screen's budget: groups x key range, in bits (2**29 bits = 64 MB of aggregate state per thread)
BITMAP_BITS = 2**29


def column_types(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    """Column name -> DuckDB type name of ``table`` as an unqualified name resolves it (see table_columns)."""
    return dict(con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? "
                            "AND schema_name = 'main' AND database_name = current_database()", [table]).fetchall())


def _unique_by_bitmap(con, table: str, batch: str, cols: list[str], bounds: dict, types: dict,
                      n_periods: int | None) -> bool:
    """True only when the batch's rows are certainly unique on ``cols``; False means "not shown", and the hash
    screen and the exact GROUP BY decide as before.

    Grouping every row by its key's hash builds a hash table as large as the batch (3.7 s CPU of the checks' 19 s
    at 100,000 communities: 11.8M staged values). One key column (the axis) becomes a bit position instead:
    an integer column of modest range (community_key) as itself, any other column (fact_score's entity_code) as
    its number in the batch's distinct values (a dictionary of about 100,000 codes, looked up per row). One bit
    per position in each group of the key's other columns (``bitstring_agg``) holds the same question in a few
    megabytes: a group whose row count equals its number of set bits has no two rows at the same position, so no
    two rows with the same key. A NULL on the axis, or more rows than bits, only makes the screen give way to the
    exact path (never a pass). The other columns enter the grouping from the fewest distinct values up (DuckDB's
    column statistics, ``stats()``, read at plan time) while groups x positions stays within BITMAP_BITS: a
    column left out (file_id: hundreds of file versions) makes the grouped key a subset of the key, and rows
    unique on a subset of their key are unique on the whole key; it can only make the screen give way more often
    (a cell sent again in a later file version repeats the key without file_id)."""
    try:
        st = con.execute(f"SELECT {', '.join(f'stats({_q(x)})' for x in cols)} FROM {_q(table)} LIMIT 1").fetchall()
    except duckdb.Error:
        st = []
    distinct: dict[str, float] = {}
    for x, v in zip(cols, st[0] if st else [None] * len(cols)):
        n = v.get("approx_unique") if isinstance(v, dict) else None
        if x == "period_key" and n_periods is not None:
            n = n_periods
        distinct[x] = max(1.0, float(n)) if isinstance(n, (int, float)) else float("inf")
    best = None       # (axis, width, bit expression, join): the integer column of the smallest range
    for c, (lo, hi) in bounds.items():
        if lo is not None and hi is not None and int(hi) - int(lo) < BITMAP_BITS \
                and (best is None or int(hi) - int(lo) + 1 < best[1]):
            best = (c, int(hi) - int(lo) + 1, f"bitstring_agg(batch.{_q(c)}, {int(lo)}, {int(hi)})", "")
    if best is None:  # the column of the most distinct values, numbered
        c = max(cols, key=lambda x: (distinct[x] if distinct[x] != float("inf") else 0, -cols.index(x)))
        width = con.execute(f"SELECT count({_q(c)}) FROM (SELECT DISTINCT {_q(c)} FROM {batch})").fetchall()[0][0]
        if not width or width > BITMAP_BITS:
            return False
        # a row with a NULL code finds no number (LEFT JOIN): it is counted and sets no bit
        best = (c, width, f"bitstring_agg(d._k, 1, {width})",
                f" LEFT JOIN (SELECT {_q(c)}, (row_number() OVER ())::BIGINT AS _k FROM (SELECT DISTINCT {_q(c)} "
                f"FROM {batch} WHERE {_q(c)} IS NOT NULL)) d ON d.{_q(c)} = batch.{_q(c)}")
    c, width, bits, join = best
    others = [x for x in cols if x != c]
    groups, chosen = 1.1, []     # 10% over the estimates (HyperLogLog's error is a few percent)
    for x in sorted(others, key=lambda x: distinct[x]):
        if groups * distinct[x] * width > BITMAP_BITS:
            break
        groups *= distinct[x]
        chosen.append(x)
    by = f" GROUP BY {', '.join(f'batch.{_q(x)}' for x in others if x in chosen)}" if chosen else ""
    try:
        bad = con.execute(f"SELECT count(*) FILTER (WHERE n <> coalesce(bits, 0)) FROM (SELECT count(*) AS n, "
                          f"bit_count({bits}) AS bits FROM {batch} AS batch{join}{by})").fetchall()[0][0]
    except (duckdb.OutOfRangeException, duckdb.InvalidInputException):   # the table changed under the screen
        return False
    return bad == 0


def _missing_references(refs: list[tuple[str, str, str]]):
    """Screen for "a row whose column has no row in its dimension": the batch's distinct values looked up, not
    every row (at 100,000 communities, 7M fact rows: 0.23 s against 3.0 s CPU for the three NOT EXISTS over the
    rows). A row is unexpected exactly when one of its values has no match, so the count is 0 exactly when the
    written query finds no row (a NULL value matches nothing in both)."""
    # count(1), not count(*): a * would keep the whole batch (_narrow)
    sql = " + ".join(f"(SELECT count(1) FROM (SELECT DISTINCT {_q(c)} FROM {{batch}}) b WHERE NOT EXISTS "
                     f"(SELECT 1 FROM {d} x WHERE x.{_q(dc)} = b.{_q(c)}))" for c, d, dc in refs)

    def screen(con, batch, columns, period_key):
        return con.execute("SELECT " + sql.replace("{batch}", _narrow(batch, sql, columns))).fetchall()[0][0]
    return screen


def _staged_without_fact(con, batch, columns, period_key):
    """Screen for the facts suite's "staged but no fact" EXCEPT: per indicator, the communities staged in the
    quarter (and its months) as a bitmap (``bitstring_agg``) and the communities with a fact as another; a bit
    set in the first and not in the second is a staged community x indicator without a fact. The EXCEPT built
    hash tables of both sides on (community_key, indicator_code) joined to raw_file's 64-character file_id
    (2.4 s CPU at 100,000 communities). The staged side is wider than the written query's (any file, any
    period row of the quarter or its months: it can only find more), so 0 here means the EXCEPT finds nothing;
    a NULL community on the staged side, or a range beyond BITMAP_BITS, runs the written query (None)."""
    if period_key is None:
        return None
    staged = (f"(SELECT community_key, indicator_code FROM stg_value WHERE period_key = {_lit(period_key)} "
              f"OR period_key IN (SELECT period_key FROM dim_period WHERE period_type = 'month' "
              f"AND quarter_key = {_lit(period_key)}))")
    facts = _narrow(batch, "SELECT community_key, indicator_code FROM {batch}", columns)
    lo, hi, nulls = con.execute(
        f"SELECT min(community_key), max(community_key), count(*) FILTER (WHERE community_key IS NULL) "
        f"FROM (SELECT * FROM {staged} UNION ALL SELECT community_key, indicator_code FROM {facts})").fetchall()[0]
    if nulls or lo is None:
        return None if nulls else 0      # nothing staged and no fact: the EXCEPT is empty
    # indicators (groups of each side): DuckDB's estimate of stg_value's distinct codes, read at plan time
    est = con.execute("SELECT stats(indicator_code) FROM stg_value LIMIT 1").fetchall()
    groups = est[0][0].get("approx_unique") if est and isinstance(est[0][0], dict) else None
    if not isinstance(groups, (int, float)) or (int(hi) - int(lo) + 1) * (groups * 1.25 + 1) > BITMAP_BITS:
        return None
    bits = f"bitstring_agg(community_key, {int(lo)}, {int(hi)})"
    return con.execute(
        f"SELECT count(*) FROM (SELECT indicator_code, {bits} AS b FROM {staged} GROUP BY ALL) s "
        f"LEFT JOIN (SELECT indicator_code, {bits} AS b FROM {facts} WHERE community_key IS NOT NULL GROUP BY ALL) f "
        f"ON f.indicator_code = s.indicator_code WHERE f.b IS NULL OR bit_count(s.b & ~f.b) > 0").fetchall()[0][0]


def _on_distinct(sql: str):
    """A screen that is the written query's own test run on the batch's distinct values of the columns it reads
    (``{batch}`` in ``sql`` stands for them): a condition on a row's values holds for some row exactly when it
    holds for some distinct combination of them, so the count is 0 exactly when the written query finds no row."""
    def screen(con, batch, columns, period_key):
        return con.execute(sql.replace("{batch}", _narrow(batch, sql, columns))).fetchall()[0][0]
    return screen


# screens for the shipped suites' most expensive unexpected-rows queries, keyed by the query's exact text:
# screen(con, batch, columns, period_key) -> 0 only when the written query finds no row (None: run it).
# tests/test_cheap_checks_report_what_the_exact_queries_report.py plants each defect and compares.
_DIMS = [("community_key", "dim_community", "community_key"), ("indicator_code", "dim_indicator", "indicator_code"),
         ("period_key", "dim_period", "period_key")]
SCREENS = {
    "SELECT f.community_key, f.indicator_code, f.period_key FROM {batch} f WHERE NOT EXISTS (SELECT 1 FROM "
    "dim_community c WHERE c.community_key = f.community_key) OR NOT EXISTS (SELECT 1 FROM dim_indicator i WHERE "
    "i.indicator_code = f.indicator_code) OR NOT EXISTS (SELECT 1 FROM dim_period p WHERE p.period_key = "
    "f.period_key)": _missing_references(_DIMS),
    "SELECT s.community_key, s.indicator_code FROM stg_value s JOIN raw_file f ON f.file_id = s.file_id AND "
    "f.status = 'loaded' JOIN dim_period p ON p.period_key = s.period_key WHERE s.period_key = $period_key OR "
    "(p.period_type = 'month' AND p.quarter_key = $period_key) EXCEPT SELECT community_key, indicator_code FROM "
    "{batch}": _staged_without_fact,
    "SELECT f.community_key FROM {batch} f JOIN dim_community c USING (community_key) JOIN dim_period p USING "
    "(period_key) WHERE c.valid_from > p.end_date OR (c.valid_to IS NOT NULL AND c.valid_to <= p.end_date)":
        _on_distinct("SELECT count(1) FROM (SELECT DISTINCT f.community_key, f.period_key FROM {batch} f) AS d "
                     "JOIN dim_community c USING (community_key) JOIN dim_period p USING (period_key) WHERE "
                     "c.valid_from > p.end_date OR (c.valid_to IS NOT NULL AND c.valid_to <= p.end_date)"),
    "SELECT f.file_id FROM {batch} f WHERE f.correction_id IS NULL AND NOT EXISTS (SELECT 1 FROM raw_file r WHERE "
    "r.file_id = f.file_id)":
        _on_distinct("SELECT count(1) FROM (SELECT DISTINCT f.file_id FROM {batch} f WHERE f.correction_id IS NULL) "
                     "AS d WHERE NOT EXISTS (SELECT 1 FROM raw_file r WHERE r.file_id = d.file_id)"),
    "SELECT s.file_id FROM {batch} s LEFT JOIN raw_file f ON f.file_id = s.file_id AND f.status = 'loaded' WHERE "
    "f.file_id IS NULL":
        _on_distinct("SELECT count(1) FROM (SELECT DISTINCT s.file_id FROM {batch} s) AS d LEFT JOIN raw_file f ON "
                     "f.file_id = d.file_id AND f.status = 'loaded' WHERE f.file_id IS NULL"),
}


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """The columns of ``table`` as an unqualified name resolves it: in the current database's main schema (a lake
    reader attaches catalogues that hold tables of the same name)."""
    return [c for (c,) in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = ? "
                                      "AND schema_name = 'main' AND database_name = current_database() "
                                      "ORDER BY column_index", [table]).fetchall()]


def _narrow(batch: str, query: str, columns: list[str]) -> str:
    """The batch with only the table's columns the query names. ``SELECT *`` in the batch made DuckDB carry every
    column through the joins it builds for NOT EXISTS subqueries (measured: 0.8 s against 0.2 s CPU at 700,000
    fact rows); the rows are the same. A query that could read columns without naming them keeps the whole batch:
    ``*``, NATURAL JOIN, COLUMNS(...), PIVOT / UNPIVOT (they group by or unpivot the columns not named), a
    positional reference (#1), or the batch's alias used as a value (``SELECT b FROM {batch} b`` is the whole row
    as a struct; ``to_json(b)``)."""
    flat = query.replace("{batch}", "_batch_")
    if not columns or re.search(r"\*\s*(?:FROM|EXCLUDE|REPLACE|,|\))|\.\*|\bNATURAL\b|\bCOLUMNS\s*\(|\bSELECT\s+\*"
                                r"|\b(?:UN)?PIVOT(?:_WIDER|_LONGER)?\b|#\s*\d", flat, re.IGNORECASE):
        return batch
    for alias in re.findall(r"\{batch\}\s+(?:AS\s+)?([A-Za-z_][A-Za-z0-9_]*)", query, re.IGNORECASE):
        if alias.upper() in _NOT_ALIASES:
            continue
        # the alias anywhere but before a dot (b.col) or where it is declared: the whole row is used
        uses = re.finditer(rf"(?<![A-Za-z0-9_.]){re.escape(alias)}(?![A-Za-z0-9_])(?!\s*\.)", flat, re.IGNORECASE)
        declared = {m.end(1) for m in re.finditer(rf"_batch_\s+(?:AS\s+)?({re.escape(alias)})(?![A-Za-z0-9_])",
                                                   flat, re.IGNORECASE)}
        if any(m.end() not in declared for m in uses):
            return batch
    named = [c for c in columns if re.search(rf"(?<![A-Za-z0-9_]){re.escape(c)}(?![A-Za-z0-9_])", query, re.IGNORECASE)]
    if not named or not batch.startswith("(SELECT * FROM "):
        return batch
    return "(SELECT " + ", ".join(_q(c) for c in named) + batch[len("(SELECT *"):]


# words that may follow {batch} without being its alias
_NOT_ALIASES = {"WHERE", "JOIN", "LEFT", "RIGHT", "INNER", "OUTER", "FULL", "CROSS", "SEMI", "ANTI", "ASOF",
                "POSITIONAL", "NATURAL", "ON", "USING", "GROUP", "ORDER", "HAVING", "LIMIT", "OFFSET", "UNION",
                "EXCEPT", "INTERSECT", "WINDOW", "QUALIFY", "SAMPLE", "TABLESAMPLE", "AS", "LATERAL"}


def record_results(con: duckdb.DuckDBPyConnection, results: list[Result], period_key: str) -> None:
    """Replace the quarter's rows of these results in check_result: one DELETE and one INSERT for the whole list
    (row by row it was two statements per expectation, about 1,100 per sample refresh)."""
    now = dt.datetime.now()
    latest = list({(r.suite, r.expectation): r for r in results}.values())  # a key listed twice: the last wins
    if not latest:
        return
    cols = list(zip(*[(r.suite, r.expectation, r.severity, r.success, r.unexpected, r.checked, r.detail[:2000],
                       partial_json(r.partial[:PARTIAL])) for r in latest]))
    with transaction(con):
        con.execute("""DELETE FROM check_result USING (SELECT unnest(?::VARCHAR[]) AS s, unnest(?::VARCHAR[]) AS e) k
                       WHERE period_key = ? AND suite = k.s AND expectation = k.e""",
                    [list(cols[0]), list(cols[1]), period_key])
        con.execute("""INSERT INTO check_result (period_key, suite, expectation, severity, success, unexpected,
                                                 checked, detail, checked_at, partial_unexpected)
                       SELECT ?, unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]),
                              unnest(?::BOOLEAN[]), unnest(?::BIGINT[]), unnest(?::BIGINT[]), unnest(?::VARCHAR[]), ?,
                              unnest(?::VARCHAR[])""",
                    [period_key, *[list(c) for c in cols[:7]], now, list(cols[7])])
