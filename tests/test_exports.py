"""SDMX-CSV 2.0 export of the facts and aggregates: exact header, codes, values, units and statuses."""

import csv
import re

import pytest

from shequ.cli import main
from shequ.exports import COLUMNS, STRUCTURE_ID, obs_status, sdmx_rows, write_sdmx_csv
from shequ.warehouse import connect


def _read(path):
    raw = path.read_bytes()
    assert raw.startswith(b"STRUCTURE,STRUCTURE_ID,ACTION,REF_AREA,INDICATOR,FREQ,TIME_PERIOD,OBS_VALUE,"
                          b"UNIT_MEASURE,UNIT_MULT,OBS_STATUS\r\n")
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {(r["REF_AREA"], r["INDICATOR"], r["TIME_PERIOD"]): r for r in rows}, rows


def test_obs_status_from_qualifiers():
    assert obs_status(None) == "A" and obs_status("months:3/3") == "A" and obs_status("ytd_differenced") == "A"
    assert obs_status("approx_ge") == "E" and obs_status("range:2-3") == "E" and obs_status("months:3/3,lt") == "E"
    assert obs_status("none_as_zero") == "I" and obs_status("approx,none_as_zero") == "I"
    assert obs_status("preparatory") == "A"


def test_sdmx_csv_of_one_quarter(workspace, tmp_path):
    wh = workspace["warehouse"]
    with connect(wh) as con:
        # give a few facts the qualifiers a survey can carry, and make one aggregate partial
        cell = "SELECT community_key FROM dim_community WHERE community_code = ? AND valid_to IS NULL"
        k1 = con.execute(cell, ["321204001001"]).fetchall()[0][0]
        con.execute("UPDATE fact_indicator_value SET qualifier = 'approx_ge' WHERE community_key = ? AND "
                    "indicator_code = 'pairing_participants' AND period_key = '2024Q2'", [k1])
        con.execute("UPDATE fact_indicator_value SET qualifier = 'none_as_zero' WHERE community_key = ? AND "
                    "indicator_code = 'criminal_cases' AND period_key = '2024Q2'", [k1])
        con.execute("UPDATE agg_indicator_value SET n_reporting = n_expected - 1 WHERE entity_code = '321204001' "
                    "AND indicator_code = 'office_area' AND period_key = '2024Q2'")
        facts = con.execute("SELECT count(*) FROM fact_indicator_value WHERE period_key = '2024Q2'").fetchall()[0][0]
        aggs = con.execute("SELECT count(*) FROM agg_indicator_value WHERE period_key = '2024Q2'").fetchall()[0][0]
        fact = dict(con.execute("""SELECT indicator_code, value FROM fact_indicator_value
                                   WHERE community_key = ? AND period_key = '2024Q2'""", [k1]).fetchall())
        office_sum = con.execute("""SELECT sum(f.value) FROM fact_indicator_value f JOIN dim_community c
                                    USING (community_key) WHERE c.district_code = '321204'
                                    AND f.indicator_code = 'office_area' AND f.period_key = '2024Q2'""").fetchall()[0][0]
        info = write_sdmx_csv(con, tmp_path / "q.csv", ["2024Q2"])
    by_key, rows = _read(tmp_path / "q.csv")
    assert info["rows"] == len(rows) == facts + aggs
    assert info["periods"] == ["2024-Q2"]
    assert list(rows[0]) == COLUMNS
    assert {(r["STRUCTURE"], r["STRUCTURE_ID"], r["ACTION"], r["FREQ"], r["TIME_PERIOD"]) for r in rows} == \
        {("dataflow", STRUCTURE_ID, "I", "Q", "2024-Q2")}
    assert STRUCTURE_ID == "SHEQU:DF_COMMUNITY_INDICATORS(1.0)"
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", r["INDICATOR"]) for r in rows)
    assert {len(r["REF_AREA"]) for r in rows} == {12, 9, 6, 4}   # community, street, district, city

    # a ratio is sent as a percentage, an amount in 万元 as CNY x 10^4, a count as it is
    r = by_key[("321204001001", "MEDICAL_INSURANCE_RATE", "2024-Q2")]
    assert (r["UNIT_MEASURE"], r["UNIT_MULT"], r["OBS_STATUS"]) == ("PC", "0", "A")
    assert float(r["OBS_VALUE"]) == pytest.approx(fact["medical_insurance_rate"] * 100, abs=1e-9)
    r = by_key[("321204001001", "ASSISTANCE_FUNDS", "2024-Q2")]
    assert (r["UNIT_MEASURE"], r["UNIT_MULT"]) == ("CNY", "4")
    assert float(r["OBS_VALUE"]) == pytest.approx(fact["assistance_funds"])
    assert by_key[("321204001001", "PAIRING_PARTICIPANTS", "2024-Q2")]["OBS_STATUS"] == "E"
    r = by_key[("321204001001", "CRIMINAL_CASES", "2024-Q2")]
    assert r["OBS_STATUS"] == "I" and float(r["OBS_VALUE"]) == fact["criminal_cases"]
    # aggregates: a district's sum, a partial street sum (U), a share of communities (PC), a rate without parts (O)
    r = by_key[("321204", "OFFICE_AREA", "2024-Q2")]
    assert (r["UNIT_MEASURE"], r["OBS_STATUS"]) == ("M2", "A")
    assert float(r["OBS_VALUE"]) == pytest.approx(office_sum)
    assert by_key[("321204001", "OFFICE_AREA", "2024-Q2")]["OBS_STATUS"] == "U"
    shares = [r for r in rows if len(r["REF_AREA"]) < 12 and r["UNIT_MEASURE"] == "PC"]
    assert shares and all(0 <= float(r["OBS_VALUE"]) <= 100 for r in shares if r["OBS_VALUE"])
    missing = [r for r in rows if r["OBS_STATUS"] == "O"]
    assert missing and all(r["OBS_VALUE"] == "" and len(r["REF_AREA"]) < 12 for r in missing)
    assert all(r["OBS_VALUE"] != "" for r in rows if r["OBS_STATUS"] != "O")
    flags = [r for r in rows if len(r["REF_AREA"]) == 12 and r["UNIT_MEASURE"] == "BOOL"]
    assert flags and {r["OBS_VALUE"] for r in flags} <= {"0", "1"}


def test_all_quarters_ordered(con):
    rows = sdmx_rows(con)
    assert {r[6] for r in rows} == {"2023-Q4", "2024-Q1", "2024-Q2"}
    keys = [(r[3], r[4], r[6]) for r in rows]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


def test_cli_export(built, tmp_path, capsys):
    out = tmp_path / "x.csv"
    assert main(["export", "sdmx", "--quarter", "2024年第二季度", "--warehouse", str(built["warehouse"]),
                 "--out", str(out)]) == 0
    _, rows = _read(out)
    assert {r["TIME_PERIOD"] for r in rows} == {"2024-Q2"}
    assert main(["export", "sdmx", "--quarter", "2024Q9", "--warehouse", str(built["warehouse"])]) == 2
    assert main(["export", "sdmx", "--quarter", "2022Q1", "--warehouse", str(built["warehouse"]),
                 "--out", str(tmp_path / "empty.csv")]) == 1
