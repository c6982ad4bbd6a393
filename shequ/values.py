"""Cell text -> (value in the catalogue unit, unit, qualifier) or a rejection with a reason code.

Two paths, one grammar:
- ``parse_cells`` (vectorised, polars): plain numbers, the overwhelming majority of cells, are parsed and
  unit-converted column-wise; only the remaining distinct strings go through ``parse_text``.
- ``parse_text`` (Python, cached per distinct string): the irregular forms survey files carry — 64.95万,
  850元/月, 79％, 百分之七十九, 700余, 2-3人, 95以上, 不少于5000元, 60平方米左右, 无, 不适用, #DIV/0!.

Written by hand because no maintained library parses Chinese statistical cell text with qualifiers; cn2an is
used for the numeral tokens themselves (on isolated tokens only, never on free text).

Percent rule for ratio indicators (stored as fractions 0-1); a （%） header changes only the qualifier:
  with % (or 百分之)           -> value / 100
  no %, 1 < v <= 100           -> value / 100, qualifier percent_inferred
  no %, 0 <= v < 1             -> value as written
  no %, v == 1 exactly         -> 1.0, qualifier ambiguous_one (100% or 1%? flagged for review)
  no %, v > 100                -> rejected (percent_out_of_scale)

The same text never parses two ways (docs/reason-codes.md "数值的读取规则"): digits are ASCII 0-9 after NFKC
(full-width ５６ is 56; other scripts' digits are not numbers); a comma is a thousands separator only before exactly
three digits (1,234 = 1234; 1.234 = 1.234; 1,23 and 1.234,5 are rejected); any whitespace or line/paragraph
separator between digits rejects the cell (5 6, 5<U+2028>6); a superscript digit after a digit rejects it (5² is
not 52); ASCII scientific notation is a number (1e3 = 1000); NaN, inf and anything that overflows a double
(1e400, a 401-digit number) is rejected as non_finite, never stored.
"""

import functools
import math
import re
import unicodedata
from dataclasses import dataclass

import cn2an
import polars as pl

from .text import _PINYIN, t2s

# ------------------------------------------------------------------ reason codes (quarantine.reason_code)
MISSING = "missing"                    # blank, —, 暂无, 未统计 … (not a value; recorded so every cell is accounted for)
NOT_APPLICABLE = "not_applicable"      # 不适用
FORMULA_ERROR = "formula_error"        # #DIV/0!, #N/A …
UNPARSEABLE = "unparseable_value"
UNIT_MISMATCH = "unit_mismatch"
PERCENT_SCALE = "percent_out_of_scale"
NON_FINITE = "non_finite"              # NaN, inf, or a number beyond what a double holds (1e400)
MAX_CELL_CHARS = 400                   # no survey figure needs more; longer text is rejected before the regexes

MISSING_MARKERS = {"", "空", "空白", "—", "——", "–", "-", "--", "/", "\\", "暂无", "未统计", "不详", "缺", "null", "none",
                   "na", "n/a"}
NON_FINITE_MARKERS = {"nan", "-nan", "+nan", "inf", "-inf", "+inf", "infinity", "-infinity", "+infinity", "∞", "-∞",
                      "+∞"}
# a superscript or subscript digit right after a digit: NFKC would turn 5² into 52
_SUPER_AFTER_DIGIT = re.compile(r"[0-9\uff10-\uff19][\u00b2\u00b3\u00b9\u2070-\u2079\u2080-\u2089]")
NONE_MARKERS = {"无", "没有"}
NA_MARKERS = {"不适用", "不涉及"}
ERROR_MARKERS = {"#div/0!", "#n/a", "#value!", "#ref!", "#name?", "#num!", "#null!"}

FLAG_TRUE = {"是", "有", "已建立", "已建", "建成", "已建成", "√", "✓", "y", "yes", "true", "1", "已", "达到", "已达到"}
FLAG_FALSE = {"否", "无", "没有", "未建立", "未建", "未建成", "×", "✗", "n", "no", "false", "0", "未", "未达到"}
ORDINAL = {"优秀": 4, "优": 4, "a": 4, "良好": 3, "良": 3, "b": 3, "合格": 2, "中": 2, "c": 2, "不合格": 1, "差": 1, "d": 1,
           "★★★★": 4, "★★★": 3, "★★": 2, "★": 1, "四星级": 4, "三星级": 3, "二星级": 2, "一星级": 1,
           "4星级": 4, "3星级": 3, "2星级": 2, "1星级": 1}

MONEY = {"亿元": 1e8, "亿": 1e8, "千万元": 1e7, "千万": 1e7, "万元": 1e4, "万": 1e4, "千元": 1e3, "元": 1.0}
AREA = {"平方米": 1.0, "平米": 1.0, "m2": 1.0, "㎡": 1.0, "亩": 2000.0 / 3.0}
PER_TIME = {"/月": 1.0, "每月": 1.0, "/年": 1.0 / 12.0, "每年": 1.0 / 12.0}


@dataclass(frozen=True)
class Parsed:
    value: float | None
    unit: str | None          # canonical unit the value is expressed in
    qualifier: str | None
    reason: str | None = None  # set when value is None
    message: str | None = None


def _reject(reason: str, message: str) -> Parsed:
    return Parsed(None, None, None, reason, message)


_NUM = r"[-+]?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?"   # ASCII digits only (after NFKC); 1e3 is 1000
_QUAL_PREFIX = [("不少于", "ge"), ("不低于", "ge"), ("至少", "ge"), ("超过", "gt"), ("大于", "gt"), ("不超过", "le"),
                ("不高于", "le"), ("低于", "lt"), ("约", "approx"), ("大约", "approx"), ("近", "approx_le"),
                ("将近", "approx_le")]
_QUAL_SUFFIX = [("以上", "ge"), ("以下", "le"), ("左右", "approx"), ("余", "approx_ge"), ("多", "approx_ge"),
                ("上下", "approx")]
_CN_NUM_CHARS = set("零〇一二两三四五六七八九十百千万亿壹贰叁肆伍陆柒捌玖拾佰仟点廿")


def _target_family(target_unit: str) -> str:
    if target_unit in ("%",):
        return "ratio"
    if "元" in target_unit:
        return "money"
    if "平方米" in target_unit and "/" not in target_unit:
        return "area"
    return "other"


def _cn_number(tok: str) -> float | None:
    try:
        return float(cn2an.cn2an(tok, "smart"))
    except Exception:  # cn2an raises plain ValueError/KeyError subclasses on anything it does not know
        return None


@functools.lru_cache(maxsize=500_000)
def parse_text(raw: str, value_kind: str, target_unit: str, column_unit: str = "", table_unit: str = "") -> Parsed:
    """Parse one cell. ``column_unit`` comes from the header (办公用房面积（平方米）), ``table_unit`` from a
    单位：万元 line above the table; a unit written in the cell beats both. Never raises; a value is always
    finite (NaN, inf and overflow are rejected as non_finite)."""
    if len(raw) > MAX_CELL_CHARS:  # the qualifier regexes are quadratic: a 200,000-digit cell would take hours
        if re.fullmatch(_PLAIN, raw):
            return _reject(NON_FINITE, _non_finite_message(raw)) if not math.isfinite(float(raw)) else \
                _reject(UNPARSEABLE, f"数值有 {len(raw)} 个字符（上限 {MAX_CELL_CHARS}），无法确定数值：{raw[:40]!r}…")
        return _reject(UNPARSEABLE, f"单元格文字过长（{len(raw)} 个字符，上限 {MAX_CELL_CHARS}），不是数值：{raw[:40]!r}…")
    try:
        p = _parse_text(raw, value_kind, target_unit, column_unit, table_unit)
    except (ValueError, OverflowError, ArithmeticError) as e:  # cn2an and float() on hostile tokens
        return _reject(UNPARSEABLE, f"无法解析为数值：{raw[:80]!r}（{type(e).__name__}）")
    if p.value is not None and not math.isfinite(p.value):
        return _reject(NON_FINITE, _non_finite_message(raw))
    return p


def _non_finite_message(raw: str) -> str:
    return f"数值 {raw[:80]!r} 超出可表示范围（溢出为无穷大或非数值），不入库"


def _parse_text(raw: str, value_kind: str, target_unit: str, column_unit: str, table_unit: str) -> Parsed:
    if _SUPER_AFTER_DIGIT.search(raw):
        return _reject(UNPARSEABLE, f"数字后有上标或下标数字，无法确定数值：{raw[:80]!r}")
    text = t2s(_PINYIN.sub("", unicodedata.normalize("NFKC", raw).strip()))  # 優(yōu)秀, 萬元, 不適用, 暫無 as in Simplified
    if text.startswith("'"):  # Excel's text marker: '45 is the number 45 typed as text
        text = text[1:].strip()
    low = text.lower()
    if low in NON_FINITE_MARKERS:
        return _reject(NON_FINITE, f"数值 {raw[:80]!r} 不是有限数（NaN 或无穷大），不入库")
    if low in ERROR_MARKERS or low.startswith("#"):
        return _reject(FORMULA_ERROR, f"公式错误值 {raw!r}")
    if low in NA_MARKERS:
        return _reject(NOT_APPLICABLE, "填报为不适用")
    if value_kind == "flag":
        if low in FLAG_TRUE:
            return Parsed(1.0, target_unit, None)
        if low in FLAG_FALSE:
            return Parsed(0.0, target_unit, None)
    if value_kind == "ordinal" and low in ORDINAL:
        return Parsed(float(ORDINAL[low]), target_unit, None)
    if low in NONE_MARKERS:
        if value_kind in ("count", "amount", "area"):
            return Parsed(0.0, target_unit, "none_as_zero")
        return _reject(MISSING, f"{raw!r} 对{value_kind}类指标视为缺失")
    if low in MISSING_MARKERS:
        return _reject(MISSING, "空值或缺失标记")

    t = re.sub(r"(?<=\d)[,，\s\u202f\u00a0](?=\d{3}(?:\D|$))", "", text)  # 2,031,600 / 2 031 600 / 1 420万元
    if re.search(r"\d\s+\d", t):  # "2 3" is two numbers or a typo, never 23 (\s: also U+2028/2029, NEL, VT, FF)
        return _reject(UNPARSEABLE, f"数字之间有空格或换行，无法确定数值：{raw!r}")
    if re.search(r"[0-9][,，][0-9]", t):  # 1,23 / 1.234,5: a comma that is not a thousands separator
        return _reject(UNPARSEABLE, f"逗号不是千分位（千分位逗号后须恰好三位数字），无法确定数值：{raw!r}")
    t = t.replace(" ", "")
    qualifier = None
    for p, q in _QUAL_PREFIX:
        if t.startswith(p):
            qualifier, t = q, t[len(p):]
            break
    for s, q in _QUAL_SUFFIX:
        if s not in t:   # the pattern needs the word itself; without this test a long number costs ~2 ms per word
            continue     # (the lazy groups backtrack over every digit: a 300-digit cell took 12 ms to parse)
        m = re.search(rf"^(.*?[\d〇零一二两三四五六七八九十百千万成])(.*?)({s})(.*)$", t)  # 700余人, 95%以上, 九成以上
        if m:
            qualifier, t = q, m.group(1) + m.group(2) + m.group(4)
            break

    percent = False
    if t.startswith("百分之"):
        percent, t = True, t[3:]
    if t.endswith("%"):
        percent, t = True, t[:-1]

    # range 2-3人 / 400—500元 / 4~8台
    m = re.match(rf"^({_NUM})\s*[-—~至到]\s*({_NUM})(.*)$", t)
    if m:
        lo, hi = float(m.group(1)), float(m.group(2))
        if lo > hi:
            return _reject(UNPARSEABLE, f"区间下限大于上限：{raw!r}")
        qualifier = f"range:{m.group(1)}-{m.group(2)}"
        number, rest = (lo + hi) / 2.0, m.group(3)
    else:
        m = re.match(rf"^({_NUM})(.*)$", t)
        if m:
            number, rest = float(m.group(1)), m.group(2)
        else:
            m = re.match(r"^([零〇一二两三四五六七八九十百千万亿壹贰叁肆伍陆柒捌玖拾佰仟点廿]+)(.*)$", t)
            if not m:
                return _reject(UNPARSEABLE, f"无法解析为数值：{raw!r}")
            tok, rest = m.group(1), m.group(2)
            if "成" in rest[:1] and value_kind in ("ratio", "survey"):  # 七成九 = 0.79
                tens = _cn_number(tok)
                digit = _cn_number(rest[1:2]) if len(rest) > 1 and rest[1] in _CN_NUM_CHARS else 0.0
                if tens is None or digit is None:
                    return _reject(UNPARSEABLE, f"无法解析为数值：{raw!r}")
                return Parsed((tens * 10 + digit) / 100.0, "%", qualifier)
            number = _cn_number(tok)
            if number is None:
                return _reject(UNPARSEABLE, f"无法解析中文数字：{raw!r}")
            if "万" in tok or "亿" in tok:
                # cn2an already applied the multiplier (1.5万 -> 15000): express in 元 for money targets
                rest = "元" + rest if _target_family(target_unit) == "money" and not rest.startswith("元") else rest

    if not math.isfinite(number):  # 1e400, a 401-digit number: never let the percent or unit rules see inf
        return _reject(NON_FINITE, _non_finite_message(raw))
    rest = rest.strip()
    if rest[:1] in ("万", "亿") and _target_family(target_unit) != "money" and value_kind in ("count", "area"):
        # 1.5万人 / 10万: a multiplier before the unit (money columns read 万元 as a unit instead)
        number, rest = number * (1e4 if rest[0] == "万" else 1e8), rest[1:]
    return _convert(raw, number, rest, percent, qualifier, value_kind, target_unit, column_unit, table_unit)


def _convert(raw, number, rest, percent, qualifier, value_kind, target_unit, column_unit, table_unit) -> Parsed:
    family = _target_family(target_unit)
    if value_kind in ("ratio", "survey") or target_unit == "%":
        if rest and rest not in ("%",):
            return _reject(UNIT_MISMATCH, f"比率列出现单位 {rest!r}：{raw!r}")
        if column_unit not in ("", "%"):
            return _reject(UNIT_MISMATCH, f"比率指标的表头单位是 {column_unit!r}，不是百分比：{raw!r}")
        if percent:
            return Parsed(number / 100.0, "%", qualifier)
        # a header saying （%） does not settle it: offices write 85.5 and 0.855 under the same header
        if number == 1.0:
            return Parsed(1.0, "%", qualifier or "ambiguous_one")
        if 0 <= number < 1:
            return Parsed(number, "%", qualifier)
        if 1 < number <= 100:
            return Parsed(number / 100.0, "%", qualifier or (None if column_unit == "%" else "percent_inferred"))
        if number < 0:
            return _reject(PERCENT_SCALE, f"比率 {raw!r} 为负数")
        return _reject(PERCENT_SCALE, f"比率 {raw!r} 没有%且大于100，无法确定口径")
    if percent:
        return _reject(UNIT_MISMATCH, f"非比率指标出现百分号：{raw!r}")

    # a table-level 单位：万元 applies only to columns of its own family and only when it is a unit at all
    if table_unit and not _same_family(table_unit, family):
        table_unit = ""
    if family == "money":
        unit = rest or column_unit or table_unit or target_unit
        per = 1.0
        for suffix, f in PER_TIME.items():
            if unit.endswith(suffix):
                unit, per = unit[: -len(suffix)], f
                break
        tgt_base, tgt_per = target_unit, 1.0
        for suffix in PER_TIME:
            if target_unit.endswith(suffix):
                tgt_base = target_unit[: -len(suffix)]
        if "/" in tgt_base:  # 元/百户/月 and similar composite rate units: only the exact unit is accepted
            given = rest or column_unit
            if given in ("", tgt_base, target_unit):
                return Parsed(number, target_unit, qualifier)
            return _reject(UNIT_MISMATCH, f"单位 {given!r} 无法换算为 {target_unit}")
        if unit not in MONEY or tgt_base not in MONEY:
            return _reject(UNIT_MISMATCH, f"单位 {unit!r} 无法换算为 {target_unit}")
        has_base = any((rest or column_unit).endswith(sfx) for sfx in PER_TIME)
        if has_base and not any(target_unit.endswith(sfx) for sfx in PER_TIME):
            # 5000元/月 for an annual 万元 amount: a different quantity, not a different notation
            return _reject(UNIT_MISMATCH, f"时间口径 {(rest or column_unit)!r} 与指标单位 {target_unit} 不一致")
        return Parsed(number * MONEY[unit] / MONEY[tgt_base] * per / tgt_per, target_unit, qualifier)
    if family == "area":
        unit = rest or column_unit or table_unit or "平方米"
        if unit not in AREA:
            return _reject(UNIT_MISMATCH, f"单位 {unit!r} 无法换算为平方米")
        return Parsed(number * AREA[unit], target_unit, qualifier)
    # a unit in the cell must be the indicator's own (人 for 人次 is fine, 个 is the generic classifier);
    # 5户 under a 人 indicator is a different quantity, not a different notation
    for given in (rest, column_unit):
        prefix_ok = target_unit.startswith(given) and "/" not in target_unit   # 人 for 人次, not 平方米 for 平方米/百户
        if given and given != target_unit and not prefix_ok and given != "个":
            return _reject(UNIT_MISMATCH, f"单位 {given!r} 与指标单位 {target_unit} 不符：{raw!r}")
    if value_kind == "flag" and number not in (0.0, 1.0):
        return _reject(UNPARSEABLE, f"是/否类指标只能填 是/否 或 0/1：{raw!r}")
    return Parsed(number, target_unit, qualifier)


def _same_family(unit: str, family: str) -> bool:
    base = unit
    for suffix in PER_TIME:
        base = base.removesuffix(suffix)
    return (family == "money" and base in MONEY) or (family == "area" and unit in AREA)


def column_factor(value_kind: str, target_unit: str, column_unit: str, table_unit: str) -> float | None:
    """Multiplier for a plain number in a column, or None when plain numbers there need the full parser
    (ratio columns: the percent rule depends on the value)."""
    if value_kind in ("ratio", "survey") or target_unit == "%":
        return None
    family = _target_family(target_unit)
    unit = column_unit or (table_unit if _same_family(table_unit, family) else "")
    if family == "money" and unit:
        p = parse_text("1", value_kind, target_unit, unit, "")
        return p.value
    if family == "area" and unit:
        return AREA.get(unit)
    if value_kind == "flag":
        return None   # 0/1 only: the few distinct strings go through parse_text
    if column_unit and column_unit != target_unit and column_unit != "个" \
            and not (target_unit.startswith(column_unit) and "/" not in target_unit):
        return None   # the header's unit differs: parse_text rejects it with its reason
    if family == "money" and "/" in target_unit.removesuffix("/月").removesuffix("/年") and column_unit \
            and column_unit not in (target_unit,):
        return None
    return 1.0


_PLAIN = r"^\s*-?[0-9]+(?:\.[0-9]+)?\s*$"  # ASCII digits only: full-width ones go through NFKC in parse_text


# A number followed by at most one plain unit (852.03元, 78.1%, 137.9平方米, 12人): the bulk of the strings the
# vectorised path leaves over. For these parse_text's normalisation steps are all no-ops (NFKC and t2s leave the
# units below as they are, checked here at import; no marker, separator, qualifier, range or Chinese numeral can
# match), so _parse_simple goes straight to the unit conversion parse_text ends with: the same Parsed, without
# the ~15 regex passes and the OpenCC call per distinct string. tests/test_simple_cells_parse_as_parse_text.py
# pins the equality.
_SIMPLE_UNITS = sorted(
    (u for u in ["%", *MONEY, *AREA, "元/月", "元/年", "人", "个", "户", "人次", "次", "名", "家",
                 "所", "处", "支", "场"]
     if unicodedata.normalize("NFKC", u) == u and t2s(u) == u and not any(s in u for s, _ in _QUAL_SUFFIX)),
    key=len, reverse=True)
_SIMPLE = re.compile(rf"(-?[0-9]+(?:\.[0-9]+)?)({'|'.join(map(re.escape, _SIMPLE_UNITS))})?")


@functools.lru_cache(maxsize=500_000)   # figures repeat from file to file (86.7%): a reading process keeps them
def _parse_simple(raw: str, value_kind: str, target_unit: str, column_unit: str = "", table_unit: str = "") -> Parsed:
    """parse_text(raw, ...) for the simple forms above, computed without its normalisation passes."""
    m = _SIMPLE.fullmatch(raw) if len(raw) <= 300 and value_kind not in ("flag", "ordinal") else None
    if m is None:
        return parse_text(raw, value_kind, target_unit, column_unit, table_unit)
    number, rest = float(m.group(1)), m.group(2) or ""
    percent = rest == "%"
    if percent:
        rest = ""
    if rest[:1] in ("万", "亿") and _target_family(target_unit) != "money" and value_kind in ("count", "area"):
        number, rest = number * (1e4 if rest[0] == "万" else 1e8), rest[1:]   # as in _parse_text
    try:
        p = _convert(raw, number, rest, percent, None, value_kind, target_unit, column_unit, table_unit)
    except (ValueError, OverflowError, ArithmeticError) as e:   # as parse_text
        return _reject(UNPARSEABLE, f"无法解析为数值：{raw[:80]!r}（{type(e).__name__}）")
    if p.value is not None and not math.isfinite(p.value):
        return _reject(NON_FINITE, _non_finite_message(raw))
    return p


def parse_cells(cells: pl.DataFrame) -> pl.DataFrame:
    """Vectorised parse. Input columns: raw_text, value_kind, target_unit, column_unit, table_unit.
    Adds value, unit, qualifier, reason, message (reason NULL when the value landed)."""
    keys = ["value_kind", "target_unit", "column_unit", "table_unit"]
    combos = cells.select(keys).unique()
    factors = [column_factor(*r) for r in combos.iter_rows()]
    combos = combos.with_columns(pl.Series("_factor", factors, dtype=pl.Float64))
    df = cells.join(combos, on=keys, how="left", nulls_equal=True)
    # a plain number of more than 300 characters may overflow a double (1e309 is inf): the scalar path rejects it
    # as non_finite; up to 300 characters a plain number is always finite
    is_plain = df["raw_text"].str.contains(_PLAIN) & (df["raw_text"].str.len_chars() <= 300)
    is_ratio = (df["value_kind"].is_in(["ratio", "survey"]) | (df["target_unit"] == "%")) \
        & df["column_unit"].is_in(["", "%"])
    plain = is_plain & df["_factor"].is_not_null()
    fast = df.filter(plain).with_columns(
        value=pl.col("raw_text").str.strip_chars().cast(pl.Float64) * pl.col("_factor"),
        unit=pl.col("target_unit"),
        qualifier=pl.lit(None, pl.String),
        reason=pl.lit(None, pl.String),
        message=pl.lit(None, pl.String),
    )
    # plain numbers in ratio columns: the percent rule of the module docstring, column-wise
    v = pl.col("raw_text").str.strip_chars().cast(pl.Float64)
    in_scale = (v >= 0) & (v <= 100)
    ratio = df.filter(is_plain & is_ratio).with_columns(
        value=pl.when(~in_scale).then(None).when(v > 1).then(v / 100.0).otherwise(v),
        unit=pl.lit("%"),
        qualifier=pl.when(~in_scale).then(None).when(v == 1).then(pl.lit("ambiguous_one"))
        .when((v > 1) & (pl.col("column_unit") != "%")).then(pl.lit("percent_inferred")).otherwise(None),
        reason=pl.when(in_scale).then(None).otherwise(pl.lit(PERCENT_SCALE)),
        message=pl.when(in_scale).then(None).when(v < 0).then(pl.format("比率 '{}' 为负数", pl.col("raw_text")))
        .otherwise(pl.format("比率 '{}' 没有%且大于100，无法确定口径", pl.col("raw_text"))),
    )
    fast = pl.concat([fast, ratio.select(fast.columns)])
    slow = df.filter(~plain & ~(is_plain & is_ratio))
    if slow.height:
        uniq = slow.select(["raw_text", *keys]).unique()
        parsed = [_parse_simple(*r) for r in uniq.iter_rows()]
        uniq = uniq.with_columns(
            pl.Series("value", [p.value for p in parsed], dtype=pl.Float64),
            pl.Series("unit", [p.unit for p in parsed], dtype=pl.String),
            pl.Series("qualifier", [p.qualifier for p in parsed], dtype=pl.String),
            pl.Series("reason", [p.reason for p in parsed], dtype=pl.String),
            pl.Series("message", [p.message for p in parsed], dtype=pl.String),
        )
        slow = slow.join(uniq, on=["raw_text", *keys], how="left", nulls_equal=True)
    else:
        slow = slow.with_columns(value=pl.lit(None, pl.Float64), unit=pl.lit(None, pl.String),
                                 qualifier=pl.lit(None, pl.String), reason=pl.lit(None, pl.String),
                                 message=pl.lit(None, pl.String))
    return pl.concat([fast, slow.select(fast.columns)]).drop("_factor")
