"""No silently wrong value (issue 13, items 1 and 3): non-finite and absurd magnitudes, numerators and denominators
beyond what their unit can hold, target-band values without a valid_max (居委会成员人数) and rate parts that give
an impossible rate are quarantined in staging, with a reason code and a message naming file, sheet, cell, the value
and the bound, before the fact table; the aggregate stage never meets a number it cannot hold."""

import math

import polars as pl
import pytest

from hostile_helpers import PREFIX, csv_bytes, ingest_files
from shequ.catalogue import load_catalogue, load_header_aliases, load_unit_limits
from shequ.values import parse_cells, parse_text

HUGE_41 = "9" * 41
HUGE_401 = "9" * 401


def test_every_catalogue_and_alias_unit_has_a_hard_range():
    units = set(load_unit_limits()["unit"].to_list())
    needed = set(load_catalogue()["unit"].to_list()) | {u for u in load_header_aliases()["unit"].to_list() if u}
    needed |= {"个"}  # the unit a numerator or denominator gets when its alias names none
    assert needed <= units, sorted(needed - units)
    lim = load_unit_limits()
    assert (lim["hard_min"] <= lim["hard_max"]).all()
    # every finite bound is well inside DECIMAL(38,10) even summed over a million communities x 3 months
    assert lim["hard_max"].abs().max() * 3e6 < 1e28


@pytest.mark.parametrize("raw", ["inf", "-inf", "Infinity", "NaN", "nan", "∞", "1e400", HUGE_401,
                                 "-" + HUGE_401, HUGE_401 + ".5"])
def test_non_finite_text_is_rejected_as_non_finite(raw):
    for kind, unit in [("count", "人"), ("amount", "万元"), ("ratio", "%"), ("area", "平方米")]:
        p = parse_text(raw, kind, unit)
        assert p.value is None and p.reason == "non_finite", (raw, kind, p)


def test_overflow_after_a_multiplier_is_non_finite():
    assert parse_text("1e308万", "count", "人").reason == "non_finite"       # 1e308 x 1e4 overflows
    assert parse_text("1e308亿元", "amount", "元/月").reason == "non_finite"


def test_vectorised_path_rejects_overflow_like_the_scalar_path():
    df = pl.DataFrame({"raw_text": [HUGE_401, HUGE_41, "12"], "value_kind": ["count"] * 3, "target_unit": ["人"] * 3,
                       "column_unit": [""] * 3, "table_unit": [""] * 3})
    out = {r["raw_text"]: r for r in parse_cells(df).iter_rows(named=True)}
    assert out[HUGE_401]["reason"] == "non_finite" and out[HUGE_401]["value"] is None
    assert out[HUGE_41]["value"] == pytest.approx(1e41)          # finite: the bound decides (staging test below)
    assert out["12"]["value"] == 12


def _hostile_inbox():
    header = ["街道", "社区名称", "居委会成员人数", "大专及以上学历人数", "社区工作者总数", "重大事件数"]
    rows = [
        ["南湖街道", "南湖社区", "7", "3", "10", "0"],             # good row
        ["南湖街道", "沿河社区", "1e15", "3", HUGE_41, "0"],        # target band without max; 41-digit denominator
        ["南湖街道", "吉庆社区", "inf", HUGE_401, "10", "1e308"],   # non-finite; overflow; absurd count
        ["南湖街道", "文体社区", "7", "30", "3", "0"],              # numerator 30 over denominator 3
        ["南湖街道", "虹苑社区", "8", "2", "8", "NaN"],              # good parts; NaN event count
    ]
    return {f"{PREFIX}hostile.csv": csv_bytes([header, *rows])}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, template):
    return ingest_files(tmp_path_factory.mktemp("hostile"), template, _hostile_inbox(), aggregate=True)


def test_hostile_values_never_reach_staging_or_facts(loaded):
    stg, facts = loaded["stg"], loaded["facts"]
    assert stg["value"].is_finite().all()
    assert facts.filter(~pl.col("value").is_finite() | ~pl.col("numerator").fill_null(0).is_finite()
                        | ~pl.col("denominator").fill_null(0).is_finite()).height == 0
    got = {(r["name"], r["indicator_code"], r["role"]): r["value"] for r in stg.iter_rows(named=True)}
    assert got[("南湖社区", "committee_members", "value")] == 7
    assert got[("虹苑社区", "staff_college_rate", "numerator")] == 2
    for bad in [("沿河社区", "committee_members", "value"), ("沿河社区", "staff_college_rate", "denominator"),
                ("吉庆社区", "committee_members", "value"), ("吉庆社区", "staff_college_rate", "numerator"),
                ("吉庆社区", "major_incident", "value"), ("文体社区", "staff_college_rate", "numerator"),
                ("文体社区", "staff_college_rate", "denominator"), ("虹苑社区", "major_incident", "value")]:
        assert bad not in got, bad


def test_each_hostile_cell_has_a_precise_reason_naming_file_cell_value_and_bound(loaded):
    q = {r["source_cell"]: r for r in loaded["quarantine"].iter_rows(named=True)}
    assert q["R3C3"]["reason_code"] == "out_of_range"          # 1e15 committee members (target band)
    assert "R3C3" in q["R3C3"]["message"] and "hostile.csv" in q["R3C3"]["message"]
    assert "1e15" in q["R3C3"]["message"] and "1000000" in q["R3C3"]["message"].replace(".0", "")
    assert q["R3C5"]["reason_code"] == "out_of_range"          # 41-digit denominator
    assert q["R4C3"]["reason_code"] == "non_finite"            # inf
    assert q["R4C4"]["reason_code"] == "non_finite"            # 401 digits
    assert q["R4C6"]["reason_code"] == "out_of_range"          # 1e308 events (valid_max 100)
    assert q["R6C6"]["reason_code"] == "non_finite"            # NaN
    for cell in ("R5C4", "R5C5"):                               # 30 over 3 for a rate bounded by 100%
        assert q[cell]["reason_code"] == "ratio_parts_inconsistent"
        assert "R5C4" in q[cell]["message"] and "R5C5" in q[cell]["message"] and "hostile.csv" in q[cell]["message"]


def test_file_loads_and_the_aggregate_stage_runs(loaded):
    (s,) = loaded["summaries"]
    assert s.status == "loaded" and s.by_reason.get("non_finite") == 3
    # aggregate_stage ran (fixture) without a DECIMAL overflow; the good rate made it to the fact table
    rate = loaded["facts"].filter((pl.col("name") == "虹苑社区") & (pl.col("indicator_code") == "staff_college_rate"))
    assert rate["value"].to_list() == [pytest.approx(0.25)]


def test_a_rate_from_parts_within_range_still_lands(tmp_path, template):
    out = ingest_files(tmp_path, template, {f"{PREFIX}ok.csv": csv_bytes([
        ["街道", "社区名称", "调解成功件数", "受理纠纷件数"], ["南湖街道", "南湖社区", "9", "9"],
        ["南湖街道", "沿河社区", "0", "0"]])})
    facts = {r["name"]: r for r in out["facts"].iter_rows(named=True)}
    assert facts["南湖社区"]["value"] == 1.0
    assert out["quarantine"].filter(pl.col("reason_code") == "ratio_parts_inconsistent").height == 0


@pytest.mark.parametrize("raw,value,reason", [
    ("1,234", 1234.0, None), ("1.234", 1.234, None), ("１，２３４", 1234.0, None), ("５６", 56.0, None),
    ("1e3", 1000.0, None), ("1E+03", 1000.0, None), ("2.5e-1", 0.25, None),
    ("5 6", None, "unparseable_value"), ("5\u20286", None, "unparseable_value"), ("5\u20296", None, "unparseable_value"),
    ("5\x856", None, "unparseable_value"), ("5\x0b6", None, "unparseable_value"), ("5\x0c6", None, "unparseable_value"),
    ("1,23", None, "unparseable_value"), ("1.234,5", None, "unparseable_value"), ("5²", None, "unparseable_value"),
    ("٥٦", None, "unparseable_value"),
])
def test_number_text_rules_are_deterministic(raw, value, reason):
    p = parse_text(raw, "amount", "元/月")
    assert (p.value, p.reason) == (value, reason)
    df = pl.DataFrame({"raw_text": [raw], "value_kind": ["amount"], "target_unit": ["元/月"], "column_unit": [""],
                       "table_unit": [""]})
    fast = parse_cells(df).row(0, named=True)
    assert (fast["value"], fast["reason"]) == (value, reason)
    assert value is None or math.isfinite(value)


def test_a_fact_suite_failure_names_the_file_and_cell_behind_the_row(loaded, tmp_path):
    """Should an impossible rate reach the fact table some other way (a year-to-date difference), the blocking
    range check names the file and cell the row came from, not only its keys."""
    import shutil

    from shequ.quality import run_suite
    from shequ.warehouse import connect

    db = tmp_path / "copy.duckdb"
    shutil.copy(loaded["db"], db)
    with connect(db) as con:
        con.execute("UPDATE fact_indicator_value SET value = 5.0 WHERE indicator_code = 'staff_college_rate'")
        results = run_suite(con, "fact_indicator_value", "2024Q3", record=False)
    (bad,) = [r for r in results if not r.success and r.severity == "critical"]
    assert "hostile.csv" in bad.detail and "R6C4" in bad.detail, bad.detail
