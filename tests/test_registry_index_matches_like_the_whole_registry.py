"""Matching a file's communities against a MatchIndex (the registry rows of the file's own name cores, what the
readers use) gives exactly what matching against the whole registry gives: the same community, the same reason
(ambiguous, not valid then, unknown), for every spelling, street, date and district hint."""
import datetime as dt
import random

import polars as pl

from shequ.registry import MatchIndex, load_aliases, match_frame, resolve_communities
from shequ.warehouse import connect, ensure_schema, frame, load_dimensions


def test_index_and_whole_registry_resolve_alike(tmp_path):
    with connect(tmp_path / "r.duckdb") as con:
        ensure_schema(con)
        load_dimensions(con)
        dim = frame(con, "SELECT * FROM dim_community")
    reg = match_frame(dim, load_aliases())
    index = MatchIndex(reg)
    rng = random.Random(7)
    names = dim["name"].to_list() + load_aliases()["alias"].to_list()
    streets = dim["street"].unique().to_list()
    spell = [lambda n: n, lambda n: n.replace("社区", "居委会"), lambda n: n.removesuffix("社区"),
             lambda n: n + "(筹)", lambda n: n[:-3] + "X社区", lambda n: "建邺区" + n, lambda n: " " + n + " "]
    rows = []
    for i in range(3000):
        name = rng.choice(spell)(rng.choice(names)) if rng.random() > 0.03 else rng.choice(["", "无名", None])
        street = rng.choice([None, None, rng.choice(streets), rng.choice(streets) + "办事处", "不存在街道"])
        rows.append((i, street, name, dt.date(rng.choice([2019, 2023, 2024]), rng.choice([3, 6, 9, 12]), 28),
                     rng.choice([None, None, "建邺区", "天桥区", "姜堰区", "江宁区"])))
    refs = pl.DataFrame(rows, schema={"ref_id": pl.UInt32, "street_raw": pl.String, "community_raw": pl.String,
                                      "as_of": pl.Date, "district_hint": pl.String}, orient="row")
    whole = resolve_communities(refs, reg).sort("ref_id")
    indexed = resolve_communities(refs, index).sort("ref_id")
    assert whole.equals(indexed)
    reasons = set(whole["resolve_reason"].to_list())
    # the draw covers every outcome, so the comparison means something
    assert {None, "unknown_community", "ambiguous_community", "community_not_valid"} <= reasons, reasons
    assert whole["community_key"].is_not_null().sum() > 300


def test_index_returns_every_row_of_a_name_core():
    reg = pl.DataFrame({"community_key": [1, 2, 3, 4], "_name_core": ["南湖", "北湖", "南湖", None],
                        "_street_core": ["a", "b", "c", "d"]})
    index = MatchIndex(reg)
    assert sorted(index.rows_for(["南湖", "没有"])["community_key"].to_list()) == [1, 3]
    assert index.rows_for(["没有"]).height == 0 and index.rows_for([]).columns == index.frame.columns
