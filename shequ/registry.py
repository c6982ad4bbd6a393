"""The community registry (models/registry/*.csv): hierarchy, stable codes, validity, lineage, aliases.

Name resolution is vectorised: survey names are reduced to a core (no 社区/居委会 suffix, no street or
district prefix, no (筹)) and joined to the registry on (street core, name core), then to the version valid
on the period's last day. The key is street + name, never name alone, because names repeat across streets.
"""

import datetime as dt
import functools
from pathlib import Path

import numpy as np
import polars as pl

from .config import REGISTRY_DIR
from .text import clean_text

COMMUNITY_SCHEMA = {
    "community_code": pl.String, "name": pl.String, "street_code": pl.String, "street": pl.String,
    "district_code": pl.String, "district": pl.String, "city_code": pl.String, "city": pl.String,
    "province_code": pl.String, "province": pl.String, "community_type": pl.String, "valid_from": pl.Date,
    "valid_to": pl.Date, "households": pl.Int64, "population": pl.Int64,
}
LINEAGE_SCHEMA = {"predecessor_code": pl.String, "successor_code": pl.String, "event": pl.String,
                  "effective_date": pl.Date, "note": pl.String}
ALIAS_SCHEMA = {"alias": pl.String, "community_code": pl.String, "valid_from": pl.Date, "valid_to": pl.Date,
                "note": pl.String}

NAME_SUFFIX = r"(社区居民委员会|社区居委会|居民委员会|居委会|社区|村民委员会|村委会)$"
STREET_SUFFIX = r"(街道办事处|街道办|办事处|街道|镇|乡)$"
STATUS_MARK = r"[(（]筹[)）]"


def load_communities(registry_dir: Path = REGISTRY_DIR) -> pl.DataFrame:
    path = Path(registry_dir) / "communities.csv"
    df = pl.read_csv(path, schema=COMMUNITY_SCHEMA)
    bad = df.filter(pl.struct("community_code", "valid_from").is_duplicated())
    if bad.height:
        raise ValueError(f"{path}: (community_code, valid_from) 重复 {bad['community_code'].to_list()[:5]}")
    return df


def load_lineage(registry_dir: Path = REGISTRY_DIR) -> pl.DataFrame:
    path = Path(registry_dir) / "community_lineage.csv"
    if not path.exists():
        return pl.DataFrame(schema=LINEAGE_SCHEMA)
    return pl.read_csv(path, schema=LINEAGE_SCHEMA)


def load_aliases(registry_dir: Path = REGISTRY_DIR) -> pl.DataFrame:
    path = Path(registry_dir) / "community_aliases.csv"
    if not path.exists():
        return pl.DataFrame(schema=ALIAS_SCHEMA)
    return pl.read_csv(path, schema=ALIAS_SCHEMA)


def name_core(col: pl.Expr) -> pl.Expr:
    """南湖社区居委会 / 南湖居委会 / 南湖 / 南苑新村社区(筹) / 建邺区南湖街道南湖社区 -> 南湖 / 南苑新村
    (input already clean_text'ed). The suffix goes first: 社区 itself ends in 区, so a district prefix is
    only stripped when at least two characters precede 区 and two follow it."""
    return (col.str.replace_all(r"\s+", "").str.replace_all(STATUS_MARK, "")
            .str.replace(NAME_SUFFIX, "")
            .str.replace(r"^.*(街道|镇)[-—_·]?(.{2,})$", "${2}")   # 南湖街道-南湖 -> 南湖
            .str.replace(r"^.{2,6}?区[-—_·]?(.{2,})$", "${1}"))    # 建邺区南湖 -> 南湖


def street_core(col: pl.Expr) -> pl.Expr:
    return (col.str.replace_all(r"\s+", "").str.replace(r"^.{2,6}?区[-—_·]?(.{2,})$", "${1}")
            .str.replace(STREET_SUFFIX, ""))


def _clean_unique(s: pl.Series) -> pl.Series:
    """clean_text over distinct values only (names repeat across every indicator of a row)."""
    uniq = s.unique()
    mapping = dict(zip(uniq.to_list(), [clean_text(v) if v is not None else None for v in uniq.to_list()]))
    return s.replace_strict(mapping, return_dtype=pl.String)


def match_frame(dim_community: pl.DataFrame, aliases: pl.DataFrame | None = None) -> pl.DataFrame:
    """Registry rows keyed for matching (name core, street core), declared aliases included. Built once per
    refresh and reused for every file."""
    reg = dim_community.select(
        "community_key", "community_code", "district", "valid_from", "valid_to",
        name_core(pl.col("name")).alias("_name_core"), street_core(pl.col("street")).alias("_street_core"))
    if aliases is not None and aliases.height:
        al = aliases.join(dim_community.select("community_code", "community_key", "street", "district",
                                               pl.col("valid_from").alias("_vf"), pl.col("valid_to").alias("_vt")),
                          on="community_code")
        # an alias is valid where both it and the community version are (汽车站社区 only until 2019-07-01)
        al = al.select(
            "community_key", "community_code", "district",
            pl.max_horizontal(pl.col("_vf"), pl.col("valid_from")).alias("valid_from"),
            pl.min_horizontal(pl.col("_vt"), pl.col("valid_to")).alias("valid_to"),
            name_core(pl.col("alias")).alias("_name_core"), street_core(pl.col("street")).alias("_street_core"))
        reg = pl.concat([reg, al]).unique()
    return reg


class MatchIndex:
    """match_frame rows sorted and indexed by name core, so a file's few hundred names fetch their own registry
    rows instead of joining the whole registry: at 600,000 communities the three joins below cost a file about
    55 ms of CPU against the full frame (the registry was scanned once per file, so staging slowed as the
    registry grew), against a few hundred fetched rows well under 1 ms. Every match below is on the name core
    (street and name, or name alone), so the fetched rows are all the rows that can match. Built once per
    reading process (about 0.3 s at 600,000 rows)."""

    def __init__(self, reg: pl.DataFrame):
        self.frame = reg.sort("_name_core", nulls_last=True, maintain_order=True)
        runs = (self.frame.select("_name_core").with_row_index("_at")
                .group_by("_name_core", maintain_order=True).agg(pl.col("_at").first(), pl.len())
                .filter(pl.col("_name_core").is_not_null()))
        self._at = dict(zip(runs["_name_core"].to_list(), zip(runs["_at"].to_list(), runs["len"].to_list())))

    def rows_for(self, cores) -> pl.DataFrame:
        spans = [self._at[c] for c in set(cores) if c in self._at]
        if not spans:
            return self.frame.clear()
        at = np.concatenate([np.arange(a, a + n, dtype=np.int64) for a, n in spans])
        return self.frame[at]


def resolve_communities(refs: pl.DataFrame, reg: "pl.DataFrame | MatchIndex") -> pl.DataFrame:
    """refs: columns ref_id, street_raw (nullable), community_raw, district_hint (nullable), as_of (Date);
    reg: match_frame(...), or a MatchIndex of it (the same result, faster against a large registry). Returns
    refs with community_key (null when unresolved) and resolve_reason."""
    # one polars plan per step below instead of an eager step each (a file has a few hundred refs: the fixed cost
    # of each step, not the work, is what a district's file pays)
    refs = refs.lazy().with_columns(
        _clean_unique(refs["community_raw"].cast(pl.String)).alias("_cr"),
        _clean_unique(refs["street_raw"].cast(pl.String)).alias("_sr"),
    ).with_columns(   # a street written inside the name (南湖街道-南湖社区) fills a missing street
        pl.coalesce(pl.col("_sr"), pl.col("_cr").str.extract(r"^(?:.*?区)?(.+?(?:街道|镇))", 1)).alias("_sr"),
        pl.col("_cr").str.contains(STATUS_MARK).alias("is_preparatory"),
    ).with_columns(
        name_core(pl.col("_cr")).alias("_name_core"),
        street_core(pl.col("_sr")).alias("_street_core"),
    ).collect(engine="in-memory")
    if isinstance(reg, MatchIndex):
        reg = reg.rows_for(refs["_name_core"].drop_nulls().to_list())
    valid = (pl.col("valid_from") <= pl.col("as_of")) & (pl.col("valid_to").is_null() | (pl.col("valid_to") > pl.col("as_of")))
    district_ok = pl.col("district_hint").is_null() | (pl.col("district") == pl.col("district_hint"))

    lrefs, lreg = refs.lazy(), reg.lazy()
    with_street = lrefs.filter(pl.col("_street_core").is_not_null())
    m1 = (with_street.join(lreg, on=["_street_core", "_name_core"], how="inner")
          .filter(valid & district_ok).group_by("ref_id").agg(pl.col("community_key").unique()))
    # no street given: the name must be unique among communities valid then (within the district hint)
    no_street = lrefs.filter(pl.col("_street_core").is_null())
    m2 = (no_street.join(lreg.drop("_street_core"), on="_name_core", how="inner").filter(valid & district_ok)
          .group_by("ref_id").agg(pl.col("community_key").unique()))
    # more than one candidate is never resolved by picking one: the cell is rejected as ambiguous
    existed = lrefs.join(lreg, on="_name_core", how="inner").select("ref_id").unique()
    m1, m2, existed = pl.collect_all([m1, m2, existed], engine="in-memory")
    both = pl.concat([m1, m2])
    ambiguous = both.filter(pl.col("community_key").list.len() > 1)["ref_id"]
    matched = both.filter(pl.col("community_key").list.len() == 1).select(
        "ref_id", pl.col("community_key").list.first())
    out = refs.join(matched, on="ref_id", how="left")
    existed = existed["ref_id"]
    out = out.with_columns(
        pl.when(pl.col("community_key").is_not_null()).then(None)
        .when(pl.col("ref_id").is_in(ambiguous.implode())).then(pl.lit("ambiguous_community"))
        .when(pl.col("ref_id").is_in(existed.implode())).then(pl.lit("community_not_valid"))
        .otherwise(pl.lit("unknown_community")).alias("resolve_reason"))
    return out.drop("_cr", "_sr", "_name_core", "_street_core")


@functools.lru_cache(maxsize=200_000)
def _pinyin(text: str) -> str:
    from pypinyin import lazy_pinyin  # imported on first unknown name only

    return " ".join(lazy_pinyin(text))


def suggest_candidates(unresolved: pl.DataFrame, reg: pl.DataFrame, limit: int = 3) -> dict[tuple, list[tuple]]:
    """For unresolved (street_raw, community_raw) pairs: registry communities of the same street (else the same
    district hint) whose name sounds the same (pinyin without tones: 业舍/叶舍, 星隆/兴隆) or is one edit away
    (秦怀/秦淮). Proposals for a person to confirm in community_aliases.csv, never applied automatically.
    Returns {(street_raw, community_raw): [(community_code, registry name core, method, score), ...]}."""
    import difflib

    out: dict[tuple, list[tuple]] = {}
    cores = reg.select("community_code", "_name_core", "_street_core", "district").unique()
    for street_raw, name_raw, district in unresolved.select("street_raw", "community_raw", "district_hint").unique().iter_rows():
        if not name_raw:
            continue
        core = pl.select(name_core(pl.lit(clean_text(name_raw)))).item()
        sc = pl.select(street_core(pl.lit(clean_text(street_raw)))).item() if street_raw else None
        pool = cores.filter(pl.col("_street_core") == sc) if sc else cores
        if pool.height == 0 and district:
            pool = cores.filter(pl.col("district") == district)
        py = _pinyin(core)
        cands = []
        for code, cand, *_ in pool.iter_rows():
            if cand == core:
                continue
            if _pinyin(cand) == py:
                cands.append((code, cand, "same_pinyin", 1.0))
            else:
                score = difflib.SequenceMatcher(None, core, cand).ratio()
                if score >= 0.5 and len(core) >= 2:
                    cands.append((code, cand, "similar_characters", round(score, 3)))
        cands.sort(key=lambda c: (c[2] != "same_pinyin", -c[3]))
        if cands:
            out[(street_raw, name_raw)] = cands[:limit]
    return out


def dim_community_frame(communities: pl.DataFrame, today: dt.date | None = None) -> pl.DataFrame:
    """Registry rows as dim_community rows (without keys), is_current = valid today."""
    today = today or dt.date.today()
    return communities.with_columns(
        ((pl.col("valid_from") <= today) & (pl.col("valid_to").is_null() | (pl.col("valid_to") > today)))
        .alias("is_current"))
