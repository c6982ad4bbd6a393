"""Manual corrections and bonus events with an audit trail (as DHIS2 keeps one for data values).

`shequ correct` records a value for one community x indicator x quarter that wins over the files' value when the
quarter's facts are built (models/sql/fact_indicator_value.sql); `shequ bonus add` records bonus points (区级现场会
+2) that the scheme's bonus rule adds beside its indicator items, within its cap. Nothing is ever deleted: a new
correction of the same cell supersedes the previous one, `revoke` switches one off, and every row keeps who,
when (Asia/Shanghai), why and the value it replaced.
"""

import datetime as dt
import math
import re
from zoneinfo import ZoneInfo

import duckdb

from .periods import normalise_quarter_arg, period_end, quarter_label
from .suggest import community_candidates, format_community_candidates, indicator_candidates

TZ = ZoneInfo("Asia/Shanghai")


class InputError(ValueError):
    """A manual input refused, with a Chinese message naming what is wrong and what would be right."""


def now_shanghai() -> dt.datetime:
    return dt.datetime.now(TZ).replace(tzinfo=None, microsecond=0)


def _required(value: str | None, what: str) -> str:
    if value is None or not str(value).strip():
        raise InputError(f"必须填写{what}")
    return str(value).strip()


# ------------------------------------------------------------------ resolving what a person typed
def resolve_community(con: duckdb.DuckDBPyConnection, text: str, quarter: str | None = None) -> dict:
    """A registry community from its 12-digit code, its name or a declared alias (莫愁), or 名称（街道） /
    街道/名称 when the name repeats.
    Returns code, name, street, district; raises InputError with candidates otherwise."""
    text = _required(text, "社区（名称或 12 位代码）")
    as_of = period_end(quarter) if quarter else None
    m = re.match(r"^(.+?)[（(](.+?)[)）]$", text) or re.match(r"^(.+?街道|.+?镇)[/／\s-]+(.+)$", text)
    name, street = text, None
    if m:
        a, b = m.group(1).strip(), m.group(2).strip()
        name, street = (a, b) if text.endswith(("）", ")")) else (b, a)
    rows = con.execute("""
        SELECT community_code, name, street, district, valid_from, valid_to FROM dim_community
        WHERE (community_code = $t OR name = $n OR name = $n || '社区'
               OR community_code IN (SELECT community_code FROM community_alias WHERE alias = $n
                                     AND (valid_from IS NULL OR $d::DATE IS NULL OR valid_from <= $d)
                                     AND (valid_to IS NULL OR $d::DATE IS NULL OR valid_to > $d)))
          AND ($s::VARCHAR IS NULL OR street = $s OR street = $s || '街道')
          AND ($d::DATE IS NULL OR (valid_from <= $d AND (valid_to IS NULL OR valid_to > $d)))
        QUALIFY row_number() OVER (PARTITION BY community_code ORDER BY valid_from DESC) = 1
        ORDER BY community_code""", {"t": text, "n": name, "s": street, "d": as_of}).fetchall()
    if len(rows) == 1:
        code, nm, st, dist, *_ = rows[0]
        return {"code": code, "name": nm, "street": st, "district": dist}
    if len(rows) > 1:
        cands = [{"code": r[0], "name": r[1], "street": r[2], "district": r[3]} for r in rows]
        raise InputError(f"社区「{text}」在登记表中有 {len(rows)} 个同名社区：{format_community_candidates(cands)}；"
                         f"请写成 名称（街道），如「{rows[0][1]}（{rows[0][2]}）」，或用 12 位社区代码")
    when = f"在{quarter_label(quarter)}" if quarter else ""
    cands = community_candidates(con, name, street, as_of=as_of)
    hint = f"，是否为：{format_community_candidates(cands)}？" if cands else "，登记表中也没有相近的社区"
    raise InputError(f"未知社区「{text}」：{when}登记表中没有这个社区{hint}")


def resolve_indicator(con: duckdb.DuckDBPyConnection, text: str) -> dict:
    """A catalogue indicator from its code, its Chinese name, or a declared header alias (role value)."""
    text = _required(text, "指标（代码或中文名称）")
    rows = con.execute("""SELECT indicator_code, name_zh, unit, value_kind, valid_min, valid_max, direction
                          FROM dim_indicator WHERE indicator_code = $t OR name_zh = $t""", {"t": text}).fetchall()
    if not rows:
        from .catalogue import HeaderMatcher

        targets = [t for t in HeaderMatcher().match(text).targets if t.role == "value"]
        if len(targets) == 1:
            rows = con.execute("""SELECT indicator_code, name_zh, unit, value_kind, valid_min, valid_max, direction
                                  FROM dim_indicator WHERE indicator_code = ?""", [targets[0].indicator_code]).fetchall()
    if not rows:
        cands = indicator_candidates(con, text)
        hint = "，是否为：" + "、".join(f"{n}（{c}）" for c, n in cands) + "？" if cands else ""
        raise InputError(f"未知指标「{text}」：指标目录中没有这个指标{hint}")
    code, name, unit, kind, lo, hi, direction = rows[0]
    return {"code": code, "name": name, "unit": unit, "value_kind": kind, "valid_min": lo, "valid_max": hi,
            "direction": direction}


def parse_value(raw: str, ind: dict) -> float:
    """The typed value in the indicator's catalogue unit, by the same rules as file cells (85% -> 0.85, 1.2万元,
    是/否, 优秀), and within the catalogue's valid range."""
    from .values import parse_text

    raw = _required(raw, "更正后的数值")
    p = parse_text(raw, ind["value_kind"], ind["unit"])
    if p.value is None:
        raise InputError(f"数值「{raw}」无法按指标「{ind['name']}」（单位 {ind['unit']}）的规则读取：{p.message}")
    v = float(p.value)
    lo = 0.0 if ind["direction"] == "target_band" else ind["valid_min"]
    hi = None if ind["direction"] == "target_band" else ind["valid_max"]
    if not math.isfinite(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
        raise InputError(f"数值「{raw}」（读作 {v:g}）超出指标「{ind['name']}」的有效范围 "
                         f"[{'' if lo is None else f'{lo:g}'}, {'' if hi is None else f'{hi:g}'}]（单位 {ind['unit']}）")
    return v


def _quarter(text: str) -> str:
    try:
        q = normalise_quarter_arg(_required(text, "季度"))
    except ValueError as e:
        raise InputError(str(e)) from e
    if not re.fullmatch(r"\d{4}Q[1-4]", q):
        raise InputError(f"季度「{text}」应为单个季度，如 2024Q3 或 2024年第三季度")
    return q


def _next_id(con, table: str, column: str) -> int:
    return con.execute(f"SELECT coalesce(max({column}), 0) + 1 FROM {table}").fetchall()[0][0]


# ------------------------------------------------------------------ corrections
def record_correction(con: duckdb.DuckDBPyConnection, community: str, indicator: str, quarter: str, value: str,
                      reason: str, by: str) -> dict:
    """Record a correction (it takes effect when the quarter's facts are next built). Returns the audit row."""
    from .warehouse import transaction

    q = _quarter(quarter)
    reason, by = _required(reason, "更正原因（--reason）"), _required(by, "更正人姓名或岗位（--by）")
    c = resolve_community(con, community, q)
    ind = resolve_indicator(con, indicator)
    v = parse_value(value, ind)
    prev = con.execute("""
        SELECT f.value, f.source_file, f.source_cell, f.correction_id FROM fact_indicator_value f
        JOIN dim_community d USING (community_key)
        WHERE f.period_key = ? AND d.community_code = ? AND f.indicator_code = ?""",
                       [q, c["code"], ind["code"]]).fetchall()
    previous_value = prev[0][0] if prev else None
    previous_source = None
    if prev:
        previous_source = (f"人工更正 #{prev[0][3]}" if prev[0][3] is not None
                           else f"{prev[0][1]}{'，' + prev[0][2] if prev[0][2] else ''}")
    when = now_shanghai()
    with transaction(con):
        cid = _next_id(con, "manual_correction", "correction_id")
        older = [r[0] for r in con.execute("""SELECT correction_id FROM manual_correction WHERE period_key = ?
                                              AND community_code = ? AND indicator_code = ? AND active""",
                                           [q, c["code"], ind["code"]]).fetchall()]
        if older:   # a newer correction of the same cell supersedes the active one (kept, switched off)
            con.execute("""UPDATE manual_correction SET active = FALSE, superseded_by = ?
                           WHERE correction_id IN (SELECT unnest(?::INTEGER[]))""", [cid, older])
            if previous_value is None or (prev and prev[0][3] is None):
                # the facts were not rebuilt since the older correction: its value is the one replaced
                previous_value, previous_source = con.execute(
                    "SELECT value, '人工更正 #' || correction_id FROM manual_correction WHERE correction_id = ?",
                    [max(older)]).fetchall()[0]
        con.execute("""INSERT INTO manual_correction (correction_id, period_key, community_code, indicator_code,
                       value, raw_text, previous_value, previous_source, reason, recorded_by, recorded_at, active)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, TRUE)""",
                    [cid, q, c["code"], ind["code"], v, str(value).strip(), previous_value, previous_source, reason,
                     by, when])
    return {"correction_id": cid, "quarter": q, "community": c, "indicator": ind, "value": v,
            "previous_value": previous_value, "previous_source": previous_source, "recorded_at": when,
            "superseded": older}


def list_corrections(con: duckdb.DuckDBPyConnection, quarter: str | None = None, include_inactive: bool = False):
    q = _quarter(quarter) if quarter else None
    return con.execute("""
        SELECT m.correction_id, m.period_key, m.community_code, coalesce(n.name, m.community_code), m.indicator_code,
               coalesce(i.name_zh, m.indicator_code), m.previous_value, m.value, m.raw_text, m.reason, m.recorded_by,
               m.recorded_at, m.active, m.superseded_by, m.revoked_by, m.revoked_at, m.revoke_reason
        FROM manual_correction m
        LEFT JOIN (SELECT community_code, arg_max(name, valid_from) AS name FROM dim_community GROUP BY 1) n
               USING (community_code)
        LEFT JOIN dim_indicator i USING (indicator_code)
        WHERE ($q::VARCHAR IS NULL OR m.period_key = $q) AND ($all OR m.active)
        ORDER BY m.period_key, m.correction_id""", {"q": q, "all": include_inactive}).fetchall()


def revoke(con: duckdb.DuckDBPyConnection, table: str, input_id: int, by: str, reason: str) -> dict:
    """Switch off a correction (table manual_correction) or bonus event (manual_bonus); the row stays."""
    key = {"manual_correction": "correction_id", "manual_bonus": "bonus_id"}[table]
    what = {"manual_correction": "更正", "manual_bonus": "加分"}[table]
    by, reason = _required(by, "撤销人姓名或岗位（--by）"), _required(reason, "撤销原因（--reason）")
    row = con.execute(f"SELECT period_key, active FROM {table} WHERE {key} = ?", [input_id]).fetchall()
    if not row:
        raise InputError(f"没有编号为 {input_id} 的{what}记录（用 list 查看编号）")
    if not row[0][1]:
        raise InputError(f"{what} #{input_id} 已不在生效状态（已撤销或已被更新的{what}取代），无需撤销")
    when = now_shanghai()
    con.execute(f"""UPDATE {table} SET active = FALSE, revoked_by = ?, revoked_at = ?, revoke_reason = ?
                    WHERE {key} = ?""", [by, when, reason, input_id])
    return {"id": input_id, "quarter": row[0][0], "revoked_at": when}


# ------------------------------------------------------------------ bonus events
def bonus_cap(scheme=None) -> tuple[float | None, float | None]:
    """(cap, max_score) of the scheme's bonus rule."""
    from .scoring import load_scheme

    scheme = scheme or load_scheme()
    spec = (scheme.section("adjust") or {}).get("bonus") or {}
    return (float(spec["cap"]) if "cap" in spec else None,
            float(spec["max_score"]) if "max_score" in spec else None)


def add_bonus(con: duckdb.DuckDBPyConnection, community: str, quarter: str, points: str, reason: str,
              document: str | None, by: str) -> dict:
    q = _quarter(quarter)
    reason, by = _required(reason, "加分事由（--reason）"), _required(by, "录入人姓名或岗位（--by）")
    c = resolve_community(con, community, q)
    try:
        pts = float(str(points).strip())
    except (TypeError, ValueError):
        raise InputError(f"加分分值「{points}」不是数字（如 2 或 0.5）") from None
    if not math.isfinite(pts) or pts <= 0:
        raise InputError(f"加分分值应为正数，收到「{points}」")
    cap, _ = bonus_cap()
    when = now_shanghai()
    bid = _next_id(con, "manual_bonus", "bonus_id")
    con.execute("""INSERT INTO manual_bonus (bonus_id, period_key, community_code, points, reason, document,
                   recorded_by, recorded_at, active) VALUES (?, ?, ?, ?, ?, ?, ?, ?, TRUE)""",
                [bid, q, c["code"], pts, reason, (document or "").strip() or None, by, when])
    total = con.execute("SELECT sum(points) FROM manual_bonus WHERE period_key = ? AND community_code = ? AND active",
                        [q, c["code"]]).fetchall()[0][0]
    return {"bonus_id": bid, "quarter": q, "community": c, "points": pts, "total_manual": total, "cap": cap,
            "recorded_at": when}


def list_bonuses(con: duckdb.DuckDBPyConnection, quarter: str | None = None, include_inactive: bool = False):
    q = _quarter(quarter) if quarter else None
    return con.execute("""
        SELECT b.bonus_id, b.period_key, b.community_code, coalesce(n.name, b.community_code), b.points, b.reason,
               b.document, b.recorded_by, b.recorded_at, b.active, b.revoked_by, b.revoked_at, b.revoke_reason
        FROM manual_bonus b
        LEFT JOIN (SELECT community_code, arg_max(name, valid_from) AS name FROM dim_community GROUP BY 1) n
               USING (community_code)
        WHERE ($q::VARCHAR IS NULL OR b.period_key = $q) AND ($all OR b.active)
        ORDER BY b.period_key, b.bonus_id""", {"q": q, "all": include_inactive}).fetchall()


def manual_summary(con: duckdb.DuckDBPyConnection, quarters: list[str]) -> list[str]:
    """One line per quarter with manual inputs in force: corrections applied in its facts, bonus events."""
    have = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables WHERE table_name IN "
                                      "('manual_correction', 'manual_bonus')").fetchall()}
    if len(have) < 2:
        return []
    out = []
    for q in quarters:
        n_fact = con.execute("SELECT count(*) FROM fact_indicator_value WHERE period_key = ? AND correction_id "
                             "IS NOT NULL", [q]).fetchall()[0][0]
        n_corr, n_bonus, pts = con.execute("""
            SELECT (SELECT count(*) FROM manual_correction WHERE period_key = $q AND active),
                   (SELECT count(*) FROM manual_bonus WHERE period_key = $q AND active),
                   (SELECT coalesce(sum(points), 0) FROM manual_bonus WHERE period_key = $q AND active)""",
                                           {"q": q}).fetchall()[0]
        if n_corr or n_bonus:
            out.append(f"{q} 人工更正生效 {n_corr} 条（事实表中 {n_fact} 个数值取更正值）；人工加分 {n_bonus} 项共 "
                       f"{pts:g} 分（按方案封顶计入）；明细：shequ correct list / shequ bonus list --quarter {q}")
    return out


# ------------------------------------------------------------------ re-deriving a quarter
def rederive_quarter(con: duckdb.DuckDBPyConnection, quarter: str, draws: int | None = None,
                     reviews_dir=None) -> dict:
    """Rebuild one quarter from what the warehouse holds (no inbox read): facts (corrections applied),
    aggregates, quality rules, then scores, ranks and titles (manual bonuses applied)."""
    from . import pipeline

    pipeline.stage_dimensions(con)
    n = pipeline.stage_facts(con, quarter)
    pipeline.stage_aggregates(con, quarter)
    pipeline.stage_quality(con, quarter)
    counts = pipeline.stage_rankings(con, quarter, reviews_dir=reviews_dir, draws=draws)
    return {"facts": n, **{k: v for k, v in counts.items() if isinstance(v, int)}}


# ------------------------------------------------------------------ command line
def register(sub) -> None:
    from . import config

    wh_help = f"DuckDB 仓库文件（默认 SHEQU_WAREHOUSE 或 {config.DEFAULT_WAREHOUSE}）"
    p = sub.add_parser("correct", help="人工更正某社区某指标某季度的数值（留痕：谁、何时、为何、原值），"
                                       "下次刷新该季度时生效；correct list / correct revoke 查看与撤销")
    p.add_argument("action", nargs="?", choices=["add", "list", "revoke"], default="add",
                   help="add（默认）记录更正；list 列出；revoke 撤销")
    p.add_argument("id", nargs="?", type=int, help="revoke 的更正编号")
    p.add_argument("--community", help="社区名称、名称（街道）或 12 位代码")
    p.add_argument("--indicator", help="指标代码或中文名称")
    p.add_argument("--quarter", help="季度：2024Q3 或 2024年第三季度")
    p.add_argument("--value", help="更正后的数值，按指标单位读取（如 85%%、1.2万元、是）")
    p.add_argument("--reason", help="更正（或撤销）原因")
    p.add_argument("--by", help="更正（或撤销）人姓名或岗位")
    p.add_argument("--all", action="store_true", help="list：含已撤销、已被取代的记录")
    p.add_argument("--apply", action="store_true", help="记录后立即重算该季度（事实、质量、评分、排名）")
    p.add_argument("--warehouse", help=wh_help)
    p.set_defaults(fn=cmd_correct)
    b = sub.add_parser("bonus", help="人工加分事件（如区级现场会 +2）：bonus add / list / revoke，计入方案加分并受封顶约束")
    b.add_argument("action", choices=["add", "list", "revoke"], help="add 记录加分；list 列出；revoke 撤销")
    b.add_argument("id", nargs="?", type=int, help="revoke 的加分编号")
    b.add_argument("--community", help="社区名称、名称（街道）或 12 位代码")
    b.add_argument("--quarter", help="季度：2024Q3 或 2024年第三季度")
    b.add_argument("--points", help="加分分值（正数）")
    b.add_argument("--reason", help="加分事由（或撤销原因）")
    b.add_argument("--document", help="依据文号")
    b.add_argument("--by", help="录入（或撤销）人姓名或岗位")
    b.add_argument("--all", action="store_true", help="list：含已撤销的记录")
    b.add_argument("--apply", action="store_true", help="记录后立即重算该季度的评分与排名")
    b.add_argument("--warehouse", help=wh_help)
    b.set_defaults(fn=cmd_bonus)


def _print_table(title: str, headers: list[str], rows: list[list]) -> None:
    from rich.markup import escape
    from rich.table import Table

    from .cli import console

    t = Table(title=title)
    for h in headers:
        t.add_column(h)
    for r in rows:
        t.add_row(*[escape("" if v is None else str(v)) for v in r])
    console.print(t)


def _fmt(v) -> str:
    return "—" if v is None else f"{v:g}"


def _open(args, write: bool):
    from . import config
    from .warehouse import connect, ensure_schema

    wh = config.warehouse_path(args.warehouse)
    if not wh.exists():
        raise InputError(f"仓库不存在：{wh}（先运行 shequ refresh）")
    cm = connect(wh, read_only=not write)
    con = cm.__enter__()
    if write:
        ensure_schema(con)
    elif not con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'manual_bonus'"
                         ).fetchall()[0][0]:
        cm.__exit__(None, None, None)
        raise InputError(f"仓库 {wh} 尚无人工更正与加分表（结构版本较旧）：运行 shequ migrate 升级后再查看")
    return cm, con


def _apply(con, quarter: str) -> None:
    from . import config
    from .cli import console

    reviews = config.reviews_path()
    console.print(f"重算 {quarter_label(quarter)}（{quarter}）…")
    counts = rederive_quarter(con, quarter, reviews_dir=reviews if reviews.is_dir() else None)
    console.print(f"已重算：事实表数值 {counts['facts']} 个")


def cmd_correct(args) -> int:
    from rich.markup import escape

    from .cli import console

    try:
        cm, con = _open(args, write=args.action != "list")
    except InputError as e:
        console.print(f"[red]{escape(str(e))}[/red]")
        return 2
    try:
        if args.action == "list":
            rows = list_corrections(con, args.quarter, args.all)
            _print_table(f"人工更正（{'全部' if args.all else '生效中'}）",
                         ["编号", "季度", "社区", "指标", "原值", "更正值", "原因", "更正人", "时间（北京时间）", "状态"],
                         [[r[0], r[1], f"{r[3]}（{r[2]}）", f"{r[5]}（{r[4]}）", _fmt(r[6]), f"{_fmt(r[7])}（{r[8]}）",
                           r[9], r[10], r[11],
                           "生效" if r[12] else (f"已被 #{r[13]} 取代" if r[13] else
                                                f"已撤销（{r[14]}，{r[15]}：{r[16]}）")] for r in rows])
            return 0
        if args.action == "revoke":
            if args.id is None:
                raise InputError("请给出要撤销的更正编号：shequ correct revoke 编号 --by 姓名 --reason 原因")
            res = revoke(con, "manual_correction", args.id, args.by, args.reason)
            console.print(f"已撤销更正 #{args.id}（{res['revoked_at']} 北京时间）；"
                          f"下次刷新 {res['quarter']} 时恢复文件中的数值：shequ refresh --quarter {res['quarter']}")
            if args.apply:
                _apply(con, res["quarter"])
            return 0
        res = record_correction(con, args.community, args.indicator, args.quarter, args.value, args.reason, args.by)
        c, ind = res["community"], res["indicator"]
        console.print(escape(
            f"已记录更正 #{res['correction_id']}：{quarter_label(res['quarter'])} {c['name']}（{c['street']}，"
            f"{c['code']}） {ind['name']}（{ind['code']}）{_fmt(res['previous_value'])} -> {_fmt(res['value'])}"
            f"（填写：{args.value}，单位 {ind['unit']}）；原值来源：{res['previous_source'] or '无（文件未报）'}；"
            f"更正人 {args.by}，{res['recorded_at']}（北京时间）"))
        if res["superseded"]:
            console.print(f"此前的更正 #{'、#'.join(map(str, res['superseded']))} 已被本次更正取代（记录保留）")
        if args.apply:
            _apply(con, res["quarter"])
        else:
            console.print(f"下次刷新该季度时生效：shequ refresh --quarter {res['quarter']}（或加 --apply 立即重算）")
        return 0
    except InputError as e:
        console.print(f"[red]{escape(str(e))}[/red]")
        return 2
    finally:
        cm.__exit__(None, None, None)


def cmd_bonus(args) -> int:
    from rich.markup import escape

    from .cli import console

    try:
        cm, con = _open(args, write=args.action != "list")
    except InputError as e:
        console.print(f"[red]{escape(str(e))}[/red]")
        return 2
    try:
        if args.action == "list":
            rows = list_bonuses(con, args.quarter, args.all)
            _print_table(f"人工加分（{'全部' if args.all else '生效中'}）",
                         ["编号", "季度", "社区", "分值", "事由", "文号", "录入人", "时间（北京时间）", "状态"],
                         [[r[0], r[1], f"{r[3]}（{r[2]}）", _fmt(r[4]), r[5], r[6], r[7], r[8],
                           "生效" if r[9] else f"已撤销（{r[10]}，{r[11]}：{r[12]}）"] for r in rows])
            return 0
        if args.action == "revoke":
            if args.id is None:
                raise InputError("请给出要撤销的加分编号：shequ bonus revoke 编号 --by 姓名 --reason 原因")
            res = revoke(con, "manual_bonus", args.id, args.by, args.reason)
            console.print(f"已撤销加分 #{args.id}（{res['revoked_at']} 北京时间）；下次刷新 {res['quarter']} 时生效")
            if args.apply:
                _apply(con, res["quarter"])
            return 0
        res = add_bonus(con, args.community, args.quarter, args.points, args.reason, args.document, args.by)
        c = res["community"]
        console.print(escape(
            f"已记录加分 #{res['bonus_id']}：{quarter_label(res['quarter'])} {c['name']}（{c['street']}，{c['code']}）"
            f" +{_fmt(res['points'])} 分，事由 {args.reason}" + (f"，文号 {args.document}" if args.document else "")
            + f"；录入人 {args.by}，{res['recorded_at']}（北京时间）"))
        if res["cap"] is not None and res["total_manual"] > res["cap"]:
            console.print(f"[yellow]该社区本季度人工加分合计 {_fmt(res['total_manual'])} 分，超过方案加分封顶 "
                          f"{_fmt(res['cap'])} 分：计分时按封顶处理[/yellow]")
        if args.apply:
            _apply(con, res["quarter"])
        else:
            console.print(f"下次刷新该季度时计入得分：shequ refresh --quarter {res['quarter']}（或加 --apply 立即重算）")
        return 0
    except InputError as e:
        console.print(f"[red]{escape(str(e))}[/red]")
        return 2
    finally:
        cm.__exit__(None, None, None)
