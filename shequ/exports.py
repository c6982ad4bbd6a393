"""Exports for sending upward: the facts as SDMX-CSV 2.0.

One row per observation (RFC 4180, UTF-8, comma-separated), with the SDMX-CSV 2.0 leading columns and then the
components of the dataflow ``SHEQU:DF_COMMUNITY_INDICATORS(1.0)``:

    STRUCTURE, STRUCTURE_ID, ACTION, REF_AREA, INDICATOR, FREQ, TIME_PERIOD, OBS_VALUE, UNIT_MEASURE,
    UNIT_MULT, OBS_STATUS

- ``STRUCTURE`` = ``dataflow``, ``ACTION`` = ``I`` (information; an SDMX database appends it).
- ``REF_AREA``: the 12-digit community code for community facts, and for aggregates the street (9 digits),
  district (6, GB/T 2260) or city (4) code. The code length tells the level.
- ``INDICATOR``: the catalogue's ``indicator_code`` in upper case (SDMX IDs).
- ``FREQ`` = ``Q``; ``TIME_PERIOD`` in SDMX's quarter notation, ``2024-Q3``.
- ``OBS_VALUE``: the warehouse value in the unit ``UNIT_MEASURE`` × 10^``UNIT_MULT``. Ratios, stored as
  fractions in the warehouse, are sent as percentages (``PC``); a street's or district's share of communities
  holding a flag likewise. 万元 is ``CNY`` with ``UNIT_MULT`` 4.
- ``OBS_STATUS`` (SDMX code list CL_OBS_STATUS): ``A`` normal; ``E`` estimated, for a value whose cell carried a
  qualifier that a number alone loses (约/余/以上/超过/低于, a range, a percent inferred from a bare number, a bare
  1 in a ratio column); ``I`` imputed, for 无 read as 0 in a count; ``U`` low reliability, for an aggregate
  computed from fewer communities than were expected in the period; ``O`` missing, with an empty OBS_VALUE, for an
  aggregate that cannot be computed (members sent the rate without its parts).
"""

import csv
import os
from pathlib import Path

import duckdb

STRUCTURE = "dataflow"
STRUCTURE_ID = "SHEQU:DF_COMMUNITY_INDICATORS(1.0)"
ACTION = "I"
COLUMNS = ["STRUCTURE", "STRUCTURE_ID", "ACTION", "REF_AREA", "INDICATOR", "FREQ", "TIME_PERIOD", "OBS_VALUE",
           "UNIT_MEASURE", "UNIT_MULT", "OBS_STATUS"]

# catalogue unit -> (UNIT_MEASURE code, UNIT_MULT, factor applied to the stored value)
UNITS: dict[str, tuple[str, int, float]] = {
    "%": ("PC", 0, 100.0),                      # stored as a fraction 0-1
    "是/否": ("BOOL", 0, 1.0),                   # 1 = yes; aggregates are shares, see below
    "个": ("NUMBER", 0, 1.0), "处": ("NUMBER", 0, 1.0), "台": ("NUMBER", 0, 1.0), "套": ("NUMBER", 0, 1.0),
    "项": ("NUMBER", 0, 1.0), "期": ("NUMBER", 0, 1.0), "支": ("NUMBER", 0, 1.0), "场": ("NUMBER", 0, 1.0),
    "例": ("CASES", 0, 1.0), "起": ("CASES", 0, 1.0),
    "次": ("TIMES", 0, 1.0), "次/年": ("TIMES_PER_YEAR", 0, 1.0),
    "人": ("PS", 0, 1.0), "人次": ("PS_TIMES", 0, 1.0), "户": ("HH", 0, 1.0),
    "万元": ("CNY", 4, 1.0), "元/月": ("CNY_PER_MONTH", 0, 1.0),
    "平方米": ("M2", 0, 1.0), "平方米/百户": ("M2_PER_100HH", 0, 1.0),
    "人/万人": ("PS_PER_10000PS", 0, 1.0), "元/百户/月": ("CNY_PER_100HH_MONTH", 0, 1.0),
    "分(百分制)": ("SCORE", 0, 1.0), "岁": ("YEARS", 0, 1.0),
    "等级(4优秀/3良好/2合格/1不合格)": ("GRADE", 0, 1.0),
}

# qualifier token -> OBS_STATUS; tokens not listed are normal (A)
ESTIMATED = ("approx", "approx_ge", "approx_le", "ge", "le", "gt", "lt", "percent_inferred", "ambiguous_one")
STATUS_ORDER = {"A": 0, "U": 1, "E": 2, "I": 3, "O": 4}


def obs_status(qualifier: str | None) -> str:
    """OBS_STATUS of a community fact from its qualifier (comma-separated tokens, e.g. ``months:3/3,approx``)."""
    status = "A"
    for tok in (qualifier or "").split(","):
        tok = tok.strip()
        s = "I" if tok == "none_as_zero" else "E" if tok in ESTIMATED or tok.startswith("range:") else "A"
        status = max(status, s, key=STATUS_ORDER.get)
    return status


def sdmx_period(period_key: str) -> str:
    """2024Q3 -> 2024-Q3"""
    year, q = period_key.split("Q")
    return f"{year}-Q{q}"


def format_value(v: float | None) -> str:
    if v is None:
        return ""
    r = round(float(v), 10)
    if r == int(r) and abs(r) < 1e15:
        return str(int(r))
    return repr(r)


def sdmx_rows(con: duckdb.DuckDBPyConnection, quarters: list[str] | None = None) -> list[list[str]]:
    """Every community fact and street/district/city aggregate of ``quarters`` (all quarters when None),
    as SDMX-CSV rows ordered by REF_AREA, INDICATOR and TIME_PERIOD."""
    where = "" if quarters is None else "AND f.period_key IN (SELECT unnest($q::VARCHAR[]))"
    params = {} if quarters is None else {"q": list(quarters)}
    sql = f"""
        SELECT c.community_code AS ref_area, f.indicator_code, f.period_key, f.value, i.unit,
               f.qualifier, NULL AS method, NULL AS n_reporting, NULL AS n_expected, 'community' AS level
        FROM fact_indicator_value f JOIN dim_community c USING (community_key)
             JOIN dim_indicator i USING (indicator_code)
        WHERE TRUE {where}
        UNION ALL
        SELECT f.entity_code, f.indicator_code, f.period_key, f.value, i.unit,
               NULL, f.method, f.n_reporting, f.n_expected, f.entity_level
        FROM agg_indicator_value f JOIN dim_indicator i USING (indicator_code)
        WHERE f.entity_level IN ('street', 'district', 'city') {where}
        ORDER BY ref_area, upper(indicator_code), period_key"""
    rows = []
    missing_units = set()
    for ref, code, period, value, unit, qualifier, method, n_rep, n_exp, level in \
            con.execute(sql, params).fetchall():
        if unit not in UNITS:
            missing_units.add(unit)
            continue
        unit_code, mult, factor = UNITS[unit]
        if level == "community":
            status = obs_status(qualifier)
        elif value is None:
            status = "O"
        else:
            status = "U" if n_rep is not None and n_exp and n_rep < n_exp else "A"
        if level != "community" and method == "share_of_communities":
            unit_code, mult, factor = "PC", 0, 100.0   # share of communities holding the flag
        rows.append([STRUCTURE, STRUCTURE_ID, ACTION, ref, code.upper(), "Q", sdmx_period(period),
                     format_value(None if value is None else value * factor), unit_code, str(mult), status])
    if missing_units:
        raise ValueError(f"目录中的单位没有 SDMX 代码（在 shequ/exports.py UNITS 中补充）：{sorted(missing_units)}")
    return rows


def write_sdmx_csv(con: duckdb.DuckDBPyConnection, out: str | os.PathLike,
                   quarters: list[str] | None = None) -> dict:
    """Write the SDMX-CSV 2.0 file (UTF-8, CRLF line ends as RFC 4180 says); returns counts by level."""
    rows = sdmx_rows(con, quarters)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\r\n")
        w.writerow(COLUMNS)
        w.writerows(rows)
    os.replace(tmp, out)
    by_status: dict[str, int] = {}
    for r in rows:
        by_status[r[-1]] = by_status.get(r[-1], 0) + 1
    return {"path": str(out), "rows": len(rows), "periods": sorted({r[6] for r in rows}), "obs_status": by_status}
