"""Round trip over the whole catalogue: generate a district's values -> write them in every supported shape and
encoding -> read back through the real ingest -> the warehouse holds the same numbers, every cell landed."""

import shutil

import polars as pl
import pytest

from shequ import pipeline
from shequ.registry import load_communities
from shequ.sample import generate_values, write_csv, write_json, write_xlsx
from shequ.warehouse import connect, frame

Q = "2024Q1"
SHAPES = {
    "xlsx": lambda p, *a: write_xlsx(p.with_suffix(".xlsx"), *a),
    "csv-gbk": lambda p, *a: write_csv(p.with_suffix(".csv"), *a, "gbk"),
    "csv-gb18030": lambda p, *a: write_csv(p.with_suffix(".csv"), *a, "gb18030"),
    "csv-utf8": lambda p, *a: write_csv(p.with_suffix(".csv"), *a, "utf-8"),
    "csv-utf8-bom": lambda p, *a: write_csv(p.with_suffix(".csv"), *a, "utf-8-sig"),
    "tsv-utf16": lambda p, *a: write_csv(p.with_suffix(".txt"), *a, "utf-16", delimiter="\t"),
    "csv-big5-traditional": lambda p, *a: write_csv(p.with_suffix(".csv"), *a, "big5", traditional=True),
    "json": lambda p, *a: write_json(p.with_suffix(".json"), *a),
}


@pytest.fixture(scope="module")
def district():
    comms = load_communities().filter((pl.col("district") == "天桥区"))
    return comms, generate_values(comms, [Q], seed=7)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_round_trip(shape, district, template, tmp_path):
    comms, truth = district
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    SHAPES[shape](inbox / f"天桥区_{Q}", "天桥区", Q, comms, truth)
    db = tmp_path / "w.duckdb"
    shutil.copy(template, db)
    with connect(db) as con:
        (s,) = pipeline.stage_staged(con, inbox, Q)
        pipeline.stage_facts(con, Q)
        got = frame(con, """SELECT c.community_code, f.indicator_code, f.value, i.value_kind
                            FROM fact_indicator_value f JOIN dim_community c USING (community_key)
                            JOIN dim_indicator i USING (indicator_code)""")
    assert s.status == "loaded" and s.n_quarantined == 0, s.by_reason
    both = got.join(truth.select("community_code", "indicator_code", "value"),
                    on=["community_code", "indicator_code"], how="full", coalesce=True)
    assert both.height == comms.height * 70 and both["value"].null_count() == 0
    tol = pl.when(pl.col("value_kind").is_in(["ratio", "survey"])).then(0.0006).otherwise(0.006)
    off = both.filter((pl.col("value") - pl.col("value_right")).abs() > tol)
    assert off.height == 0, off.head()
