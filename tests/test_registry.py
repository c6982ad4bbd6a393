import datetime as dt

import polars as pl
import pytest

from shequ.registry import load_communities, load_lineage, match_frame, name_core, resolve_communities
from shequ.warehouse import connect, ensure_schema, frame, load_dimensions


def test_registry_coverage():
    c = load_communities()
    on = lambda d: c.filter((pl.col("valid_from") <= d) & (pl.col("valid_to").is_null() | (pl.col("valid_to") > d)))
    before, after = on(dt.date(2023, 6, 30)), on(dt.date(2024, 6, 30))
    counts = lambda df: dict(df.group_by("district").len().iter_rows())
    assert counts(before) == {"姜堰区": 20, "建邺区": 38, "天桥区": 75, "江宁区": 1}
    assert counts(after) == {"姜堰区": 20, "建邺区": 36, "天桥区": 75, "江宁区": 1}
    tq = c.filter(pl.col("district") == "天桥区")
    assert tq["street"].n_unique() == 12
    jy = set(c.filter(pl.col("district") == "建邺区").group_by("street").len().iter_rows())
    assert ("南湖街道", 9) in jy and ("滨湖街道", 9) in jy and ("南苑街道", 9) in jy
    assert before.filter(pl.col("street") == "兴隆街道").height == 8
    assert after.filter(pl.col("street") == "兴隆街道").height == 6
    assert before.filter(pl.col("community_type") == "村代居").height == 2
    names = set(c.filter(pl.col("district") == "姜堰区")["name"])
    assert {"河南社区", "河东社区", "荷叶社区", "南苑社区", "叶舍社区", "古田社区"} <= names
    assert c.filter(pl.col("name") == "秦淮社区")["street"].to_list() == ["秣陵街道"]


def test_merger_is_history_not_deletion():
    lin = load_lineage()
    assert lin.height == 4 and set(lin["event"]) == {"merge"}
    c = load_communities()
    preds = c.filter(pl.col("community_code").is_in(lin["predecessor_code"].implode()))
    assert preds.height == 4 and set(preds["valid_to"]) == {dt.date(2024, 1, 1)}
    succ = c.filter(pl.col("community_code").is_in(lin["successor_code"].implode()))
    assert succ.height == 2 and set(succ["valid_from"]) == {dt.date(2024, 1, 1)}


@pytest.mark.parametrize("raw,core", [("南湖社区", "南湖"), ("南湖社区居委会", "南湖"), ("南湖社区居民委员会", "南湖"),
                                      ("南湖居委会", "南湖"), ("南湖", "南湖"), ("建邺区南湖街道南湖社区", "南湖"),
                                      ("南湖街道-南湖社区", "南湖"), ("南苑新村社区(筹)", "南苑新村"), ("东区社区", "东区")])
def test_name_core(raw, core):
    assert pl.select(name_core(pl.lit(raw))).item() == core


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    db = tmp_path_factory.mktemp("reg") / "r.duckdb"
    with connect(db) as con:
        ensure_schema(con)
        load_dimensions(con)
        dim = frame(con, "SELECT * FROM dim_community")
    return dim, match_frame(dim)


def _resolve(reg, street, name, as_of, district=None):
    dim, m = reg
    refs = pl.DataFrame({"ref_id": [0], "street_raw": [street], "community_raw": [name], "as_of": [as_of],
                         "district_hint": [district]}, schema_overrides={"street_raw": pl.String,
                                                                         "district_hint": pl.String})
    out = resolve_communities(refs, m).row(0, named=True)
    code = None if out["community_key"] is None else \
        dim.filter(pl.col("community_key") == out["community_key"])["community_code"].item()
    return code, out["resolve_reason"]


def test_same_name_two_streets_needs_the_street(reg):
    d = dt.date(2023, 12, 31)
    assert _resolve(reg, "南湖街道", "新村社区", d)[0] == "320105001006"
    assert _resolve(reg, "兴隆街道", "新村居委会", d)[0] == "320105004003"
    assert _resolve(reg, None, "新村社区", d) == (None, "ambiguous_community")   # never picked by guess


def test_validity_dates_apply(reg):
    assert _resolve(reg, "兴隆街道", "金沙社区", dt.date(2023, 12, 31))[0] == "320105004005"
    assert _resolve(reg, "兴隆街道", "金沙社区", dt.date(2024, 3, 31)) == (None, "community_not_valid")
    assert _resolve(reg, "兴隆街道", "兴达社区", dt.date(2024, 3, 31))[0] == "320105004009"


def test_traditional_and_suffix_variants(reg):
    assert _resolve(reg, "濱湖街道", "乾城社區居委會", dt.date(2024, 3, 31))[0] == "320105002009"
    assert _resolve(reg, "天桥东街街道", "不存在社区", dt.date(2024, 3, 31)) == (None, "unknown_community")
