"""DHIS2-grade data-quality checks over the warehouse, as plain DuckDB SQL (callable from a notebook):

- validation rules (models/quality/validation_rules.csv): left side, operator, right side over indicator codes,
  importance HIGH/MEDIUM/LOW, the levels they apply to and a missing-value strategy; violations are error
  events in ``validation_violation``; the fact values a HIGH community rule caught go to ``quality_hold``, which
  keeps them out of scoring (models/sql/scoring_input.sql);
- outliers per community x indicator over its quarters (models/quality/outlier_methods.csv): z-score, modified
  z-score (median/MAD) and min-max bounds; a follow-up flag in ``outlier_flag``, never a deletion or a hold;
- completeness and timeliness (models/quality/completeness.yaml): expected reports against received, reporting
  rate and on-time rate per street, district and city in ``completeness_report``;
- the release snapshot ``ranking_release``: the check results in force when a quarter's ranking was produced.

    from shequ import dq
    from shequ.warehouse import connect
    with connect("data/warehouse.duckdb") as con:
        dq.stage_quality(con, "2024Q3")
"""

import csv
import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb
import yaml

from .config import MODELS
from .quality import PARTIAL, Result, record_results
from .warehouse import transaction

QUALITY_DIR = MODELS / "quality"
RULES_CSV = QUALITY_DIR / "validation_rules.csv"
OUTLIER_CSV = QUALITY_DIR / "outlier_methods.csv"
COMPLETENESS_YAML = QUALITY_DIR / "completeness.yaml"

OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "compulsory_pair", "exclusive_pair")
IMPORTANCE = ("HIGH", "MEDIUM", "LOW")
STRATEGIES = ("SKIP_IF_ANY_VALUE_MISSING", "SKIP_IF_ALL_VALUES_MISSING", "NEVER_SKIP")
LEVELS = ("community", "street", "district")
PARTS = ("value", "numerator", "denominator", "reported")
VALIDATION_SUITE = "validation_rules"     # the suite name rule outcomes are recorded under in check_result

_TOKEN = re.compile(r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<item>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_]+)?)"
                    r"|(?P<op>[-+*/()]))")


class RuleError(ValueError):
    pass


def _lit(v) -> str:
    return "NULL" if v is None else "'" + str(v).replace("'", "''") + "'"


def tokens(expr: str) -> list[tuple[str, str]]:
    """(kind, text) tokens of a rule expression; anything else is an error, never ignored."""
    out, pos, expr = [], 0, expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise RuleError(f"表达式无法解析：{expr!r}（位置 {pos}）")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
    if not out:
        raise RuleError("空表达式")
    return out


def items(expr: str) -> list[tuple[str, str]]:
    """The (indicator_code, part) an expression reads, in order, without repeats."""
    out = []
    for kind, text in tokens(expr):
        if kind == "item":
            code, _, part = text.partition(".")
            part = part or "value"
            if part not in PARTS:
                raise RuleError(f"{text}：未知的取值部分 {part}（可用 {', '.join(PARTS)}）")
            if (code, part) not in out:
                out.append((code, part))
    return out


def _col(code: str, part: str) -> str:
    return f'"{code}.{part}"'


def compile_expr(expr: str, zero_missing: bool) -> str:
    parts = []
    for kind, text in tokens(expr):
        if kind == "item":
            code, _, part = text.partition(".")
            c = _col(code, part or "value")
            parts.append(f"coalesce({c}, 0)" if zero_missing else c)
        elif kind == "num":
            parts.append(f"{text}::DOUBLE")
        else:
            parts.append(text)
    return "(" + " ".join(parts) + ")"


@dataclass(frozen=True)
class Rule:
    rule_id: str
    name_zh: str
    left_expr: str
    operator: str
    right_expr: str
    tolerance: float | None
    importance: str
    levels: tuple[str, ...]
    missing_value_strategy: str
    instruction: str = ""

    @property
    def left_items(self):
        return items(self.left_expr)

    @property
    def right_items(self):
        return items(self.right_expr)


def load_rules(path: Path = RULES_CSV) -> list[Rule]:
    """The rule catalogue, validated: an unknown operator, level, strategy or part is an error."""
    rules, seen = [], set()
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            rid = row["rule_id"].strip()
            if rid in seen:
                raise RuleError(f"规则编号重复：{rid}")
            seen.add(rid)
            levels = tuple(x.strip() for x in row["levels"].split("|") if x.strip())
            r = Rule(rid, row["name_zh"].strip(), row["left_expr"].strip(), row["operator"].strip(),
                     row["right_expr"].strip(), float(row["tolerance"]) if row.get("tolerance") else None,
                     row["importance"].strip().upper(), levels, row["missing_value_strategy"].strip(),
                     (row.get("instruction") or "").strip())
            if r.operator not in OPERATORS:
                raise RuleError(f"{rid}：不支持的运算符 {r.operator}")
            if r.importance not in IMPORTANCE:
                raise RuleError(f"{rid}：重要性必须是 HIGH/MEDIUM/LOW，而不是 {r.importance}")
            if r.missing_value_strategy not in STRATEGIES:
                raise RuleError(f"{rid}：未知的缺失值策略 {r.missing_value_strategy}")
            if not levels or set(levels) - set(LEVELS):
                raise RuleError(f"{rid}：层级必须取自 {LEVELS}，而不是 {row['levels']}")
            its = r.left_items + r.right_items
            if not its:
                raise RuleError(f"{rid}：左右两侧都没有引用指标")
            if set(levels) - {"community"} and any(p == "reported" for _, p in its):
                raise RuleError(f"{rid}：.reported 只有社区层有（汇总表没有上报值）")
            rules.append(r)
    return rules


def _rule_select(rule: Rule, level: str, q: str) -> str:
    """Every entity the rule is evaluated on (not skipped), with both sides and whether it is violated."""
    zero = rule.missing_value_strategy != "SKIP_IF_ANY_VALUE_MISSING"
    lv, rv = compile_expr(rule.left_expr, zero), compile_expr(rule.right_expr, zero)
    present = lambda its: "(" + " OR ".join(f"{_col(c, p)} IS NOT NULL" for c, p in its) + ")" if its else "TRUE"
    all_items = rule.left_items + rule.right_items
    if rule.operator in ("compulsory_pair", "exclusive_pair"):
        lv, rv = compile_expr(rule.left_expr, False), compile_expr(rule.right_expr, False)
        violated = (f"({present(rule.left_items)} <> {present(rule.right_items)})"
                    if rule.operator == "compulsory_pair"
                    else f"({present(rule.left_items)} AND {present(rule.right_items)})")
        evaluated = f"({present(rule.left_items)} OR {present(rule.right_items)})"
    else:
        if rule.missing_value_strategy == "SKIP_IF_ANY_VALUE_MISSING":
            evaluated = " AND ".join(f"{_col(c, p)} IS NOT NULL" for c, p in all_items)
        elif rule.missing_value_strategy == "SKIP_IF_ALL_VALUES_MISSING":
            evaluated = " AND ".join(present(s) for s in (rule.left_items, rule.right_items) if s)
        else:
            evaluated = "TRUE"
        tol = rule.tolerance if rule.tolerance is not None else 1e-9
        cond = {"==": f"abs(lv - rv) <= {tol!r}", "!=": f"abs(lv - rv) > {tol!r}", "<": "lv < rv",
                "<=": f"lv <= rv + {1e-9 if rule.tolerance is None else tol!r}", ">": "lv > rv",
                ">=": f"lv + {1e-9 if rule.tolerance is None else tol!r} >= rv"}[rule.operator]
        # division by zero gives inf/nan in DuckDB: a side that is not a finite number cannot be judged
        violated = f"(lv IS NOT NULL AND rv IS NOT NULL AND NOT ({cond}))"
    fin = lambda e: f"CASE WHEN isfinite({e}) THEN {e} END"
    if rule.operator in ("compulsory_pair", "exclusive_pair"):
        inner_l, inner_r = lv, rv
    else:
        inner_l, inner_r = fin(lv), fin(rv)
    return (f"SELECT {_lit(rule.rule_id)} AS rule_id, {_lit(level)} AS entity_level, entity_code, entity_name, "
            f"community_key, lv AS left_value, rv AS right_value, {violated} AS violated FROM ("
            f"SELECT *, {inner_l} AS lv, {inner_r} AS rv FROM _pivot_{level} WHERE {evaluated})")


def _pivot(level: str, needed: list[tuple[str, str]], q: str) -> str:
    cols = ", ".join(
        f"max({'reported_value' if p == 'reported' else p}) FILTER (WHERE indicator_code = {_lit(c)}) "
        f"AS {_col(c, p)}" for c, p in needed)
    codes = ", ".join(sorted({_lit(c) for c, _ in needed}))
    if level == "community":
        # one slice of the quarter's facts per indicator (a zone-map-pruned scan of that indicator's rows, grouped
        # by community), joined on community_key to the communities holding any of the rules' indicators, then the
        # community's code and name: the table a PIVOT over the same rows gave (ON indicator_code USING max(...)
        # GROUP BY community_key), in a fifth of the time. The PIVOT (and the max(...) FILTER form before it)
        # grouped every row of 30 indicators with all 78 aggregates (7.2 s against 1.4 s CPU at 100,000
        # communities; tests/test_validation_by_indicator_slices_matches_the_pivot.py compares the two)
        col = lambda p: "reported_value" if p == "reported" else p
        fact = f"fact_indicator_value WHERE period_key = {_lit(q)}"
        slices = []
        for j, code in enumerate(dict.fromkeys(c for c, _ in needed)):
            aggs = ", ".join(f"max({col(p)}) AS {_col(c, p)}" for c, p in needed if c == code)
            slices.append(f"LEFT JOIN (SELECT community_key, {aggs} FROM {fact} AND indicator_code = {_lit(code)} "
                          f"GROUP BY community_key) s{j} USING (community_key)")
        picked = ", ".join(_col(c, p) for c, p in needed)
        # the community's code and name are looked up for the violations only (violated()): every rule's
        # evaluated rows carried them before, two strings per community x rule through _vr
        return (f"SELECT k.community_key, NULL::VARCHAR AS entity_code, NULL::VARCHAR AS entity_name, {picked} FROM "
                f"(SELECT DISTINCT community_key FROM {fact} AND indicator_code IN ({codes})) k "
                + " ".join(slices) + " SEMI JOIN dim_community c USING (community_key)")
    return (f"SELECT entity_code, any_value(entity_name) AS entity_name, NULL::INTEGER AS community_key, {cols} "
            f"FROM agg_indicator_value WHERE period_key = {_lit(q)} AND entity_level = {_lit(level)} "
            f"AND indicator_code IN ({codes}) GROUP BY entity_code")


# the violated rows of _vr, a community's code and name looked up by its key (_pivot leaves them NULL)
VIOLATED = """SELECT v.rule_id, v.entity_level, coalesce(v.entity_code, c.community_code) AS entity_code,
       coalesce(v.entity_name, c.name) AS entity_name, v.community_key, v.left_value, v.right_value, v.violated
FROM _vr v LEFT JOIN dim_community c ON v.entity_level = 'community' AND c.community_key = v.community_key
WHERE v.violated"""


def run_validation(con: duckdb.DuckDBPyConnection, q: str, rules: list[Rule] | None = None,
                   record: bool = True) -> dict[str, int]:
    """Evaluate every rule at its levels for quarter ``q``; replace the quarter's violations and holds.

    Returns {"evaluated": n, "violations": n, "holds": n}. Rule outcomes are recorded in check_result under
    suite ``validation_rules`` (severity = importance)."""
    rules = load_rules() if rules is None else rules
    known = {c for (c,) in con.execute("SELECT indicator_code FROM dim_indicator").fetchall()}
    for r in rules:
        unknown = {c for c, _ in r.left_items + r.right_items} - known
        if unknown:
            raise RuleError(f"{r.rule_id}：指标目录中没有 {sorted(unknown)}")
    now = dt.datetime.now()
    selects = []
    for level in LEVELS:
        lr = [r for r in rules if level in r.levels]
        if not lr:
            continue
        needed = []
        for r in lr:
            for it in r.left_items + r.right_items:
                if it not in needed:
                    needed.append(it)
        con.execute(f"CREATE OR REPLACE TEMP TABLE _pivot_{level} AS {_pivot(level, needed, q)}")
        selects += [_rule_select(r, level, q) for r in lr]
    con.execute("CREATE OR REPLACE TEMP TABLE _vr AS " + " UNION ALL ".join(selects))
    meta = ", ".join(f"({_lit(r.rule_id)}, {_lit(r.importance)}, {_lit(r.operator)})" for r in rules)
    with transaction(con):
        con.execute("DELETE FROM validation_rule")
        con.executemany("INSERT INTO validation_rule VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [[r.rule_id, r.name_zh, r.left_expr, r.operator, r.right_expr, r.tolerance, r.importance,
                          "|".join(r.levels), r.missing_value_strategy, r.instruction] for r in rules])
        con.execute("DELETE FROM validation_violation WHERE period_key = ?", [q])
        con.execute(f"""INSERT INTO validation_violation
            SELECT ?, v.rule_id, m.importance, v.entity_level, v.entity_code, v.entity_name, v.community_key,
                   v.left_value, m.operator, v.right_value, ?
            FROM ({VIOLATED}) v JOIN (VALUES {meta}) m(rule_id, importance, operator) USING (rule_id)
            ORDER BY v.rule_id, v.entity_level, v.entity_code""", [q, now])
        # holds: every fact value a HIGH community rule read, for the community-quarters it caught
        con.execute("DELETE FROM quality_hold WHERE period_key = ?", [q])
        high = [r for r in rules if r.importance == "HIGH" and "community" in r.levels]
        if high:
            reads = ", ".join(f"({_lit(r.rule_id)}, {_lit(c)}, {_lit(r.name_zh)})"
                              for r in high for c in dict.fromkeys(c for c, _ in r.left_items + r.right_items))
            con.execute(f"""INSERT INTO quality_hold
                SELECT DISTINCT v.period_key, v.community_key, r.indicator_code, v.rule_id, v.importance,
                       '未通过校验规则 ' || v.rule_id || '（' || r.name_zh || '）：左侧 ' ||
                       coalesce(round(v.left_value, 4)::VARCHAR, '空') || ' ' || v.operator || ' 右侧 ' ||
                       coalesce(round(v.right_value, 4)::VARCHAR, '空') || ' 不成立', ?
                FROM validation_violation v
                JOIN (VALUES {reads}) r(rule_id, indicator_code, name_zh) USING (rule_id)
                JOIN fact_indicator_value f ON f.period_key = v.period_key AND f.community_key = v.community_key
                     AND f.indicator_code = r.indicator_code
                WHERE v.period_key = ? AND v.entity_level = 'community' AND v.importance = 'HIGH'""", [now, q])
    stats = dict(((rid, (n, k)) for rid, n, k in con.execute(
        "SELECT rule_id, count(*), count(*) FILTER (WHERE violated) FROM _vr GROUP BY 1").fetchall()))
    if record:
        # GX-style partial unexpected list per rule: the first 20 violating entities
        cols = ("entity_level", "entity_code", "entity_name", "left_value", "right_value")
        partial: dict[str, list[dict]] = {}
        for rid, *vals in con.execute(f"""SELECT rule_id, {', '.join(cols)} FROM (
                SELECT *, row_number() OVER (PARTITION BY rule_id ORDER BY entity_level, entity_code) AS k
                FROM ({VIOLATED})) WHERE k <= {PARTIAL} ORDER BY rule_id, k""").fetchall():
            partial.setdefault(rid, []).append(dict(zip(cols, vals)))
        record_results(con, [Result(VALIDATION_SUITE, f"{r.rule_id} {r.name_zh}", r.importance,
                                    stats.get(r.rule_id, (0, 0))[1] == 0, stats.get(r.rule_id, (0, 0))[1],
                                    stats.get(r.rule_id, (0, 0))[0],
                                    f"{r.left_expr} {r.operator} {r.right_expr}（{'|'.join(r.levels)}；"
                                    f"{r.missing_value_strategy}）", tuple(partial.get(r.rule_id, ())))
                             for r in rules], q)
    out = {"evaluated": sum(n for n, _ in stats.values()), "violations": sum(k for _, k in stats.values()),
           "holds": con.execute("SELECT count(*) FROM quality_hold WHERE period_key = ?", [q]).fetchall()[0][0]}
    for t in ("_vr", *(f"_pivot_{lv}" for lv in LEVELS)):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    return out


# ------------------------------------------------------------------ outliers
@dataclass(frozen=True)
class OutlierMethod:
    method: str
    threshold: float
    min_history: int
    applies_to: tuple[str, ...]
    description: str


def load_outlier_methods(path: Path = OUTLIER_CSV) -> dict[str, OutlierMethod]:
    out = {}
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            m = OutlierMethod(row["method"], float(row["threshold"]), int(row["min_history"]),
                              tuple(x.strip() for x in row["applies_to"].split(",")), row["description"])
            if m.method not in ("zscore", "modified_zscore", "minmax"):
                raise RuleError(f"未知的离群值方法：{m.method}")
            out[m.method] = m
    return out


def outlier_sql(q: str, methods: dict[str, OutlierMethod], history_quarters: int | None = None) -> str:
    """One SELECT: the quarter's values flagged by each method, with statistic, threshold, centre and spread.

    ``history_quarters``: how many quarters up to ``q`` hold facts (None: unknown). A cell's history has at most
    one value per quarter, so a method whose min_history exceeds it cannot judge any cell and its statistics are
    not computed (a new warehouse's first quarters; the flags are the same)."""
    kinds = lambda m: ", ".join(_lit(k) for k in methods[m].applies_to)
    usable = lambda m: m in methods and (history_quarters is None or methods[m].min_history <= history_quarters)
    parts = []
    # median and MAD (holistic aggregates, the costly part) only where the modified z-score can use them: a cell
    # with less history than its min_history is never judged by it, and the other methods read count, mean, sd
    med_history = methods["modified_zscore"].min_history if usable("modified_zscore") else 2**31 - 1
    hist = f"""
        cur AS (SELECT f.community_key, f.indicator_code, f.value, i.value_kind FROM fact_indicator_value f
                JOIN dim_indicator i USING (indicator_code) WHERE f.period_key = {_lit(q)}),
        h AS (SELECT f.community_key, f.indicator_code, f.value FROM fact_indicator_value f
              JOIN dim_period p ON p.period_key = f.period_key AND p.period_type = 'quarter'
              WHERE p.end_date <= (SELECT end_date FROM dim_period WHERE period_key = {_lit(q)}))"""
    if usable("zscore") or usable("modified_zscore"):
        hist += f""",
        -- every cell's history up to the quarter, grouped once (st keeps the quarter's cells): no join of the
        -- history to the quarter's cells first
        s AS (SELECT community_key, indicator_code, count(*) AS n, avg(value) AS mean, stddev_samp(value) AS sd
              FROM h GROUP BY ALL),
        sm AS (SELECT h.community_key, h.indicator_code, median(h.value) AS med FROM h
               SEMI JOIN (SELECT * FROM s WHERE n >= {med_history}) s USING (community_key, indicator_code)
               GROUP BY ALL),
        m AS (SELECT h.community_key, h.indicator_code, median(abs(h.value - sm.med)) AS mad
              FROM h JOIN sm USING (community_key, indicator_code) GROUP BY ALL),
        st AS (SELECT cur.*, s.n, s.mean, s.sd, sm.med, m.mad FROM cur JOIN s USING (community_key, indicator_code)
               LEFT JOIN sm USING (community_key, indicator_code) LEFT JOIN m USING (community_key, indicator_code))"""
    if usable("zscore"):
        z = methods["zscore"]
        parts.append(f"""SELECT community_key, indicator_code, 'zscore' AS method, value,
            (value - mean) / sd AS statistic, {z.threshold!r} AS threshold, mean AS center, sd AS spread, n
            FROM st WHERE value_kind IN ({kinds('zscore')}) AND n >= {z.min_history} AND sd > 0
              AND abs((value - mean) / sd) > {z.threshold!r}""")
    if usable("modified_zscore"):
        mz = methods["modified_zscore"]
        parts.append(f"""SELECT community_key, indicator_code, 'modified_zscore', value,
            0.6745 * (value - med) / mad, {mz.threshold!r}, med, mad, n
            FROM st WHERE value_kind IN ({kinds('modified_zscore')}) AND n >= {mz.min_history} AND mad > 0
              AND abs(0.6745 * (value - med) / mad) > {mz.threshold!r}""")
    if "minmax" in methods:
        # judged on the quarter's value alone; the history count n only for the (few) values out of range
        hist += f""",
        mm AS (SELECT cur.community_key, cur.indicator_code, cur.value, i.direction, i.valid_min, i.valid_max
               FROM cur JOIN dim_indicator i USING (indicator_code)
               WHERE cur.value_kind IN ({kinds('minmax')}) AND (
                     (i.direction = 'target_band' AND cur.value < 0)
                  OR (i.direction <> 'target_band' AND (cur.value < i.valid_min OR cur.value > i.valid_max)))),
        mm_n AS (SELECT h.community_key, h.indicator_code, count(*) AS n FROM h
                 SEMI JOIN mm USING (community_key, indicator_code) GROUP BY ALL)"""
        parts.append(f"""SELECT st.community_key, st.indicator_code, 'minmax', st.value,
            CASE WHEN st.value < (CASE WHEN st.direction = 'target_band' THEN 0 ELSE st.valid_min END)
                 THEN (CASE WHEN st.direction = 'target_band' THEN 0 ELSE st.valid_min END) ELSE st.valid_max END,
            {methods['minmax'].threshold!r}, CASE WHEN st.direction = 'target_band' THEN 0 ELSE st.valid_min END,
            CASE WHEN st.direction = 'target_band' THEN NULL ELSE st.valid_max END, n.n
            FROM mm st JOIN mm_n n USING (community_key, indicator_code)""")
    if not parts:     # no method: an empty result of the same shape
        parts.append("SELECT NULL::INTEGER, NULL::VARCHAR, NULL::VARCHAR, NULL::DOUBLE, NULL::DOUBLE, NULL::DOUBLE, "
                     "NULL::DOUBLE, NULL::DOUBLE, NULL::BIGINT WHERE FALSE")
    return f"WITH {hist} " + " UNION ALL ".join(parts)


def history_quarters(con: duckdb.DuckDBPyConnection, q: str, enough: int | None = None) -> int:
    """Quarters up to ``q`` (inclusive) that hold facts: the longest history any cell can have. Counting stops at
    ``enough``. One LIMIT 1 probe per calendar quarter, newest first: facts are written period-first, so a probe
    reads one row group or is answered by the zone maps, and the cost does not grow with the rows of history
    (a DISTINCT over the fact table's period_key would read every quarter loaded)."""
    n = 0
    for (pk,) in con.execute("""SELECT period_key FROM dim_period WHERE period_type = 'quarter'
            AND end_date <= (SELECT end_date FROM dim_period WHERE period_key = ?) ORDER BY end_date DESC""",
                             [q]).fetchall():
        if con.execute("SELECT count(*) FROM (SELECT 1 FROM fact_indicator_value WHERE period_key = ? LIMIT 1)",
                       [pk]).fetchall()[0][0]:
            n += 1
            if enough is not None and n >= enough:
                break
    return n


def run_outliers(con: duckdb.DuckDBPyConnection, q: str, methods: dict[str, OutlierMethod] | None = None) -> int:
    """Replace the quarter's outlier flags; a flag already followed up keeps its status."""
    methods = load_outlier_methods() if methods is None else methods
    # whether any cell can have the history the z-scores need (counting stops there)
    enough = history_quarters(con, q, max((m.min_history for k, m in methods.items() if k != "minmax"), default=1))
    now = dt.datetime.now()
    with transaction(con):
        con.execute("""CREATE OR REPLACE TEMP TABLE _old_flags AS SELECT community_key, indicator_code, method,
                       followup_status FROM outlier_flag WHERE period_key = ?""", [q])
        con.execute("DELETE FROM outlier_flag WHERE period_key = ?", [q])
        con.execute(f"""INSERT INTO outlier_flag
            SELECT {_lit(q)}, o.community_key, o.indicator_code, o.method, o.value, o.statistic, o.threshold,
                   o.center, o.spread, o.n, coalesce(x.followup_status, 'open'), ?
            FROM ({outlier_sql(q, methods, enough)}) o(community_key, indicator_code, method, value, statistic, threshold,
                                                center, spread, n)
            LEFT JOIN _old_flags x USING (community_key, indicator_code, method)
            ORDER BY o.method, o.community_key, o.indicator_code""", [now])
        con.execute("DROP TABLE _old_flags")
    return con.execute("SELECT count(*) FROM outlier_flag WHERE period_key = ?", [q]).fetchall()[0][0]


# ------------------------------------------------------------------ completeness and timeliness
def load_completeness_config(path: Path = COMPLETENESS_YAML) -> dict:
    cfg = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    receipts = []
    if cfg.get("receipts"):
        rp = Path(path).parent / cfg["receipts"]
        if rp.exists():
            with open(rp, encoding="utf-8", newline="") as f:
                receipts = [(r["source_file"], dt.date.fromisoformat(r["received_on"])) for r in csv.DictReader(f)]
    cfg["_receipts"] = receipts
    return cfg


def completeness_sql(q: str, cfg: dict) -> str:
    freq = cfg["expected_quarters_by_frequency"]
    freq_rows = ", ".join(f"({_lit(k)}, {int(qn)})" for k, qs in freq.items() for qn in qs) or "(NULL, NULL)"
    due_days = int(cfg["due_days_after_quarter_end"])
    return f"""
    WITH p AS (SELECT period_key, quarter, end_date, (end_date + INTERVAL {due_days} DAY)::DATE AS due_date
               FROM dim_period WHERE period_key = {_lit(q)}),
    comm AS (SELECT c.* FROM dim_community c, p
             WHERE c.valid_from <= p.end_date AND (c.valid_to IS NULL OR c.valid_to > p.end_date)),
    ind AS (SELECT i.indicator_code, i.not_applicable_to FROM dim_indicator i, p
            JOIN (VALUES {freq_rows}) fq(frequency, quarter) ON fq.quarter = p.quarter
            WHERE split_part(i.frequency, '(', 1) = fq.frequency),
    recv AS (SELECT f.community_key, f.indicator_code, f.file_id FROM fact_indicator_value f
             WHERE f.period_key = {_lit(q)}),
    rec_file AS (SELECT r.file_id, coalesce(x.received_on, r.modified_at::DATE, r.ingested_at::DATE) AS received_on
                 FROM raw_file r LEFT JOIN _receipts x USING (source_file)),
    -- expected values: the community x indicator pairs where the indicator applies to the community's type.
    -- Counted per type and received values looked up through the community and the indicator, rather than
    -- the pairs built (6.8M at 100,000 communities) and joined to the facts on (community_key,
    -- indicator_code): the same counts (a pair is expected once per matching ind row), 3.1 s against 0.9 s CPU
    ty AS (SELECT t.community_type, count(*) AS n FROM (SELECT DISTINCT community_type FROM comm) t JOIN ind
           ON ind.not_applicable_to IS NULL OR NOT list_contains(string_split(ind.not_applicable_to, '|'),
                                                                 t.community_type) GROUP BY 1),
    ev AS (SELECT comm.community_key, ty.n FROM comm
           JOIN ty ON ty.community_type IS NOT DISTINCT FROM comm.community_type),
    rv AS (SELECT recv.community_key, count(*) AS n FROM recv JOIN comm USING (community_key) JOIN ind
           ON ind.indicator_code = recv.indicator_code AND (ind.not_applicable_to IS NULL OR NOT list_contains(
               string_split(ind.not_applicable_to, '|'), comm.community_type)) GROUP BY 1),
    ro AS (SELECT community_key, min(rf.received_on) AS received_on FROM recv JOIN rec_file rf USING (file_id)
           GROUP BY 1),
    per_comm AS (
        SELECT c.community_key, c.street_code, c.street, c.district_code, c.district, c.city_code, c.city,
               coalesce(ev.n, 0) AS expected_values, coalesce(rv.n, 0) AS received_values, ro.received_on
        FROM comm c LEFT JOIN ev USING (community_key) LEFT JOIN rv USING (community_key)
        LEFT JOIN ro USING (community_key))
    SELECT {_lit(q)} AS period_key,
           CASE WHEN GROUPING(street_code) = 0 THEN 'street' WHEN GROUPING(district_code) = 0 THEN 'district'
                ELSE 'city' END AS level,
           coalesce(street_code, district_code, city_code) AS area_code,
           CASE WHEN GROUPING(street_code) = 0 THEN any_value(street) WHEN GROUPING(district_code) = 0
                THEN any_value(district) ELSE any_value(city) END AS area_name,
           count(*) AS expected,
           count(received_on) AS received,
           count(received_on) / count(*) AS reporting_rate,
           count(*) FILTER (WHERE received_on <= (SELECT due_date FROM p)) AS on_time,
           count(*) FILTER (WHERE received_on <= (SELECT due_date FROM p)) / count(*) AS on_time_rate,
           sum(expected_values)::INTEGER AS expected_values,
           sum(received_values)::INTEGER AS received_values,
           CASE WHEN sum(expected_values) > 0 THEN sum(received_values) / sum(expected_values) END AS value_rate,
           (SELECT due_date FROM p) AS due_date
    FROM per_comm
    GROUP BY GROUPING SETS ((city_code, district_code, street_code), (city_code, district_code), (city_code))
    """


def run_completeness(con: duckdb.DuckDBPyConnection, q: str, cfg: dict | None = None) -> int:
    cfg = load_completeness_config() if cfg is None else cfg
    con.execute("CREATE OR REPLACE TEMP TABLE _receipts (source_file VARCHAR, received_on DATE)")
    if cfg["_receipts"]:
        con.executemany("INSERT INTO _receipts VALUES (?, ?)", [list(r) for r in cfg["_receipts"]])
    with transaction(con):
        con.execute("DELETE FROM completeness_report WHERE period_key = ?", [q])
        con.execute(f"INSERT INTO completeness_report {completeness_sql(q, cfg)} ORDER BY level, area_code")
    con.execute("DROP TABLE _receipts")
    return con.execute("SELECT count(*) FROM completeness_report WHERE period_key = ?", [q]).fetchall()[0][0]


# ------------------------------------------------------------------ the stage and the release
def stage_quality(con: duckdb.DuckDBPyConnection, q: str) -> dict[str, int]:
    """The quality stage for one quarter: validation rules (+ holds), outliers, completeness."""
    out = run_validation(con, q)
    out["outliers"] = run_outliers(con, q)
    out["completeness_rows"] = run_completeness(con, q)
    return out


def snapshot_release(con: duckdb.DuckDBPyConnection, q: str) -> int:
    """Record which checks the quarter's ranking passed: every check_result row of the quarter (the suites of
    each stage, the validation rules, the ranking suites just run), once per scheme ranked."""
    now = dt.datetime.now()
    with transaction(con):
        con.execute("DELETE FROM ranking_release WHERE period_key = ?", [q])
        con.execute("""INSERT INTO ranking_release
            SELECT c.period_key, s.scheme_id, c.suite, c.expectation, c.severity, c.success, c.unexpected,
                   c.checked_at, ?
            FROM check_result c CROSS JOIN (SELECT DISTINCT scheme_id FROM fact_ranking WHERE period_key = ?) s
            WHERE c.period_key = ? ORDER BY s.scheme_id, c.suite, c.expectation""", [now, q, q])
    return con.execute("SELECT count(*) FROM ranking_release WHERE period_key = ?", [q]).fetchall()[0][0]
