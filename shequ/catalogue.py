"""The indicator catalogue (models/catalogue/indicators.csv) and header matching.

Where things are defined, in one look:
- an indicator, its unit, direction, valid range, aggregation rule: models/catalogue/indicators.csv
- a header alias (a survey's column name for an indicator, its numerator or its denominator):
  models/catalogue/header_aliases.csv
- the hard range of a unit (what one community's number in that unit can hold at most; bounds numerators,
  denominators and target-band values, which have no valid_max): models/catalogue/unit_limits.csv
"""

import difflib
import functools
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from .config import CATALOGUE_CSV, HEADER_ALIASES_CSV
from .text import squash

HEADER_SEP = " » "  # the reader's separator between the levels of a multi-row header

CATALOGUE_SCHEMA = {
    "code": pl.String, "name_zh": pl.String, "unit": pl.String, "category": pl.String, "direction": pl.String,
    "valid_min": pl.Float64, "valid_max": pl.Float64, "target": pl.String, "value_kind": pl.String,
    "numerator": pl.String, "denominator": pl.String, "frequency": pl.String, "period_semantics": pl.String,
    "aggregation": pl.String, "ratio_scale": pl.Float64, "time_rollup": pl.String, "level": pl.String,
    "not_applicable_to": pl.String, "veto": pl.String,
    "source_kind": pl.String, "source": pl.String,
}


@functools.lru_cache(maxsize=4)
def load_catalogue(path: Path = CATALOGUE_CSV) -> pl.DataFrame:
    df = pl.read_csv(path, schema=CATALOGUE_SCHEMA)
    dup = df.filter(pl.col("code").is_duplicated())["code"].to_list()
    if dup:
        raise ValueError(f"{path}: 指标代码重复 {sorted(set(dup))}")
    return df


def dim_indicator_frame(path: Path = CATALOGUE_CSV) -> pl.DataFrame:
    df = load_catalogue(path)
    return df.select(
        pl.col("code").alias("indicator_code"), "name_zh", "unit", "category", "direction", "valid_min",
        "valid_max", "target", "value_kind", "numerator", "denominator", "frequency", "period_semantics",
        "aggregation", "ratio_scale", "time_rollup", "level", "not_applicable_to",
        pl.col("veto").str.starts_with("Y").alias("is_veto"),
        pl.when(pl.col("veto").str.starts_with("Y") & (pl.col("veto").str.len_chars() > 1))
        .then(pl.col("veto").str.slice(1).str.strip_chars("()（）"))
        .alias("veto_note"),
        "source_kind", "source",
    )


UNIT_LIMITS_CSV = CATALOGUE_CSV.parent / "unit_limits.csv"


@functools.lru_cache(maxsize=4)
def load_unit_limits(path: Path = UNIT_LIMITS_CSV) -> pl.DataFrame:
    """unit -> hard_min, hard_max (tests/test_hostile_values_quarantined.py: every catalogue and alias unit has a row)."""
    df = pl.read_csv(path, schema={"unit": pl.String, "hard_min": pl.Float64, "hard_max": pl.Float64,
                                   "note_zh": pl.String})
    dup = df.filter(pl.col("unit").is_duplicated())["unit"].to_list()
    if dup:
        raise ValueError(f"{path}: 单位重复 {sorted(set(dup))}")
    return df


@functools.lru_cache(maxsize=4)
def load_header_aliases(path: Path = HEADER_ALIASES_CSV) -> pl.DataFrame:
    return pl.read_csv(path, schema={"alias": pl.String, "indicator_code": pl.String, "role": pl.String,
                                     "unit": pl.String, "note": pl.String})


# Units a header may carry in trailing parentheses; anything else in parentheses is part of the name
# (结对单位帮扶资金(累计), 社区工作者人数(计万人比)).
HEADER_UNITS = {"%", "百分比", "个", "人", "户", "人次", "次", "场", "支", "套", "台", "期", "项", "处", "起", "例", "岁",
                "份", "件", "元", "千元", "万元", "亿元", "元/月", "元/年", "平方米", "m2", "平米", "亩", "分", "分(百分制)",
                "是/否", "人/万人", "平方米/百户", "元/百户/月", "次/年"}


@dataclass(frozen=True)
class HeaderTarget:
    indicator_code: str
    role: str
    unit: str  # unit implied by the header ('' if none)


@dataclass(frozen=True)
class HeaderMatch:
    targets: tuple[HeaderTarget, ...]
    column_unit: str
    candidates: tuple[str, ...] = ()  # closest catalogue names when targets is empty
    reason: str = ""                  # why a recognisable header is refused (prior_period_column)
    message: str = ""


# a header naming another period or another kind of figure than the survey's (上年同期, 上一季度, 2023年,
# 同比增减, 目标值, 计划): never taken as the current value
PRIOR_PERIOD = re.compile(r"上年|去年|同期|上期|上季|上月|上一|前一|基期|往年|同比|环比|增减|目标|计划(?!生育|外)|预计|(?:19|20)\d{2}年")
# groups above an indicator name that do not change its meaning; any other group (养老保险 » 参保率,
# 已组建业委会 » 小区数, 居民 » 平均年龄) may, so a leaf under it is never matched on its own
NEUTRAL_GROUPS = {"基本情况", "基本信息", "本期", "本季度", "本期数", "当期", "本月", "指标", "统计指标", "数量",
                  "情况", "工作情况", "建设情况"}


def split_header_unit(header: str) -> tuple[str, str]:
    """办公用房面积（平方米） -> (办公用房面积, 平方米); 得分(分(百分制)) -> (得分, 分(百分制)); a trailing
    parenthetical that is not a unit stays in the name."""
    h = squash(header)
    if h.endswith(")"):
        depth = 0
        for i in range(len(h) - 1, -1, -1):  # the "(" that balances the final ")"
            depth += {")": 1, "(": -1}.get(h[i], 0)
            if depth == 0:
                unit = re.sub(r"^单位[:：]", "", h[i + 1:-1])
                if unit in HEADER_UNITS and i > 0:
                    return h[:i], "%" if unit in ("%", "百分比") else unit
                break
    if h.endswith("%"):
        return h[:-1], "%"
    return h, ""


class HeaderMatcher:
    """Survey column header -> catalogue targets, by name, declared alias, or unit-suffixed variants.

    A header can feed several targets (社区工作者人数 is staff_count and the denominator of two rates). An
    unknown header is never matched by guess: the caller reports it with ``candidates``."""

    def __init__(self, catalogue: pl.DataFrame | None = None, aliases: pl.DataFrame | None = None):
        catalogue = load_catalogue() if catalogue is None else catalogue
        aliases = load_header_aliases() if aliases is None else aliases
        self._map: dict[str, list[HeaderTarget]] = {}
        for code, name in catalogue.select("code", "name_zh").iter_rows():
            self._add(name, HeaderTarget(code, "value", ""))
            self._add(code, HeaderTarget(code, "value", ""))   # a system export names the indicator by its code
        for alias, code, role, unit in aliases.select("alias", "indicator_code", "role", "unit").iter_rows():
            self._add(alias, HeaderTarget(code, role, unit or ""))
        self._keys = list(self._map)
        self._categories = set(catalogue["category"].unique().to_list())

    def _add(self, name: str, target: HeaderTarget) -> None:
        # registered whole and, when it ends in a unit, also without it
        for key in dict.fromkeys((squash(name), split_header_unit(name)[0])):
            lst = self._map.setdefault(key, [])
            if target not in lst:
                lst.append(target)

    @functools.lru_cache(maxsize=100_000)
    def match(self, header: str) -> HeaderMatch:
        # multi-row headers arrive as 居民自治 » 住宅小区数: try the whole text, the last level, the levels joined
        parts = [p.strip() for p in header.split(HEADER_SEP) if p.strip()] or [header]
        if any(PRIOR_PERIOD.search(squash(p)) for p in parts):
            return HeaderMatch((), "", (), "prior_period_column",
                               f"表头 {header!r} 指其他期间（上年同期、上期、某一年）或目标、计划、增减数，不作为本期数据")
        groups = [squash(p) for p in parts[:-1]]
        leaf_alone = all(g in NEUTRAL_GROUPS or g in self._categories for g in groups)
        for cand in ("".join(parts), parts[-1]) if len(parts) > 1 else (parts[-1],):
            if cand is parts[-1] and len(parts) > 1 and not leaf_alone:
                break   # 养老保险 » 参保率: the group may change what the leaf means
            whole = squash(cand)
            if whole in self._map:
                return HeaderMatch(tuple(self._map[whole]), "")
            key, unit = split_header_unit(cand)
            if key in self._map:
                return HeaderMatch(tuple(self._map[key]), unit)
        if len(parts) > 1 and not leaf_alone:
            key, unit = split_header_unit(parts[-1])
            if key in self._map:
                return HeaderMatch((), unit, (), "ambiguous_header",
                                   f"表头 {header!r} 的分组 {'/'.join(parts[:-1])!r} 可能改变指标含义，不按 "
                                   f"{parts[-1]!r} 自动匹配；请在 header_aliases.csv 中声明整个表头")
        key, unit = split_header_unit(parts[-1])
        close = difflib.get_close_matches(key, self._keys, n=3, cutoff=0.5)
        return HeaderMatch((), unit, tuple(close))
