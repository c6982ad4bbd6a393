"""Sample surveys: realistic quarterly files for the registry's communities, and national-scale synthetic sets.

Values are drawn around the figures the source documents give (seeds 000-004): office space about 60 m² in
姜堰 and 15 m² in 天桥, about 430 m² of premises per community in 建邺 (14,680 m² over 34), wages of 750-850
元/月 in 建邺 and 400-500 元/月 in 天桥, 业委会 rate about 79% (45/57), 参保率 about 95%, 70% of 天桥 offices
without a phone, 53 volunteer organisations over 75 天桥 communities, and so on. Everything else is drawn
from the catalogue's valid range around its target.

File shapes (each district its own, as real district offices do):
- 姜堰区: xlsx, title row, 填报单位/单位 line, two-row merged header (category groups over indicator names
  with units), street 小计 rows with formulas, a 合计 row, 填表人 and 注 footers;
- 天桥区: GBK CSV, 居委会 names with suffix variants, units and % signs inside cells;
- 建邺区: nested JSON (district and period at the top, long records below), 万元 next to 元;
- 江宁区 (秦淮社区): UTF-8-with-BOM CSV.
Synthetic national sets rotate the same three main shapes over their districts.
"""

import csv
import datetime as dt
import io
import json
import math
from pathlib import Path

import numpy as np
import polars as pl

from .catalogue import load_catalogue, load_header_aliases
from .config import DEFAULT_INBOX, REGISTRY_DIR
from .periods import quarter_bounds, quarter_label, quarters_between, split_quarter
from .registry import load_communities

SAMPLE_QUARTERS = quarters_between("2023Q1", "2024Q4")

# per-indicator centre and spread, in catalogue units, by district (default first)
PROFILE: dict[str, dict[str, tuple[float, float]]] = {
    "office_area": {"*": (120, 40), "姜堰区": (60, 8), "天桥区": (15, 4), "建邺区": (430, 90), "江宁区": (300, 30)},
    "staff_monthly_wage": {"*": (800, 60), "建邺区": (800, 35), "天桥区": (450, 30), "姜堰区": (620, 50),
                           "江宁区": (900, 40)},
    "owners_committee_rate": {"*": (0.79, 0.08)},
    "medical_insurance_rate": {"*": (0.95, 0.02), "江宁区": (0.96, 0.01)},
    "resident_satisfaction_rate": {"*": (0.85, 0.05)},
    "property_satisfaction_rate": {"*": (0.81, 0.06)},
    "safety_sense_rate": {"*": (0.9, 0.04)},
    "volunteer_orgs": {"*": (2.0, 1.0), "天桥区": (0.7, 0.6)},
    "service_points": {"*": (6, 2), "天桥区": (5.2, 1.8)},
    "service_items": {"*": (9, 3), "天桥区": (8.5, 2.5)},
    "office_funds_per_100hh_month": {"*": (200, 25), "建邺区": (200, 5)},
    "networked_computers": {"*": (5, 1.5), "建邺区": (6, 1.2), "天桥区": (2, 1)},
    "it_qualified_staff": {"*": (2.5, 0.7)},
    "staff_count": {"*": (8, 2), "建邺区": (4.7, 1.0), "天桥区": (6.8, 1.5)},
    "committee_members": {"*": (7, 1.3)},
    "staff_avg_age": {"*": (41, 5), "姜堰区": (50, 4)},
    "residential_compounds": {"*": (6, 2), "姜堰区": (3, 1)},
    "pairing_units": {"*": (5, 2)},
    "pairing_participants": {"*": (35, 12)},
    "pairing_funds": {"*": (3.0, 1.0)},
    "env_inspection_score": {"*": (86, 6)},
    "property_rating": {"*": (3.0, 0.7)},
    "criminal_cases": {"*": (2.0, 1.5)},
    "major_incident": {"*": (0.05, 0.2)},
    "new_illegal_structures": {"*": (0.3, 0.6)},
    "unplanned_pregnancies": {"*": (0.1, 0.3)},
    "dibao_households": {"*": (15, 6)},
    "hardship_households_assisted": {"*": (45, 20)},
    "assistance_funds": {"*": (30, 12)},
    "collective_income": {"*": (50, 30)},
    "jobs_placed": {"*": (60, 25), "江宁区": (900, 80)},
    "job_training_sessions": {"*": (2, 1)},
    "fitness_equipment_sets": {"*": (12, 5)},
    "culture_sports_activities": {"*": (9, 4)},
    "culture_teams": {"*": (5, 2)},
    "legal_education_sessions": {"*": (4, 2)},
    "rep_congress_sessions": {"*": (1.2, 0.6)},
    "affairs_disclosure_times": {"*": (1.5, 0.6)},
    "civil_orgs_registered": {"*": (8, 3)},
}
FLAG_P = {"office_phone": {"*": 0.9, "天桥区": 0.3}, "office_temporary_rented": {"*": 0.1, "姜堰区": 0.15},
          "party_org_established": {"*": 0.98}, "secretary_director_concurrent": {"*": 0.9},
          "featured_community": {"*": 0.3}, "rule_of_law_community": {"*": 0.85}}
# denominators of rates: (centre, spread) of the base count
RATE_BASE = {"owners_committee_rate": (6, 2), "closed_compound_rate": (6, 2), "property_managed_rate": (6, 2),
             "pairing_units_funding_rate": (5, 2), "standard_rooms_rate": (5, 0), "data_entry_rate": (120, 10),
             "resident_satisfaction_rate": (60, 8), "property_satisfaction_rate": (55, 8),
             "safety_sense_rate": (60, 8), "mediation_success_rate": (12, 4), "rep_attendance_rate": (40, 8),
             "staff_college_rate": (8, 2), "social_worker_cert_rate": (8, 2)}
# 主任/副主任 wages: premium over the community's staff wage (centre, spread), 元/月
WAGE_PREMIUM = {"director_monthly_wage": (100.0, 25.0), "deputy_director_monthly_wage": (50.0, 20.0)}
SCALES = {"staff_per_10k_pop": 10000.0, "service_facility_area_per_100hh": 100.0,
          "office_funds_per_100hh_month": 100.0}


def _profile(code: str, district: str, default: tuple[float, float]) -> tuple[float, float]:
    p = PROFILE.get(code, {})
    return p.get(district, p.get("*", default))


def generate_values(communities: pl.DataFrame, quarters: list[str], seed: int = 20240930) -> pl.DataFrame:
    """Long frame: community_code, district, quarter, indicator_code, value, numerator, denominator.
    Vectorised per indicator over all communities (numpy), so 600,000 communities take seconds."""
    rng = np.random.default_rng(seed)
    # the director's and deputy director's wages (added to the catalogue later) come from their own stream, so
    # every other value drawn from ``rng`` stays what it was before they existed
    wage_rng = np.random.default_rng([seed, 2])
    cat = load_catalogue()
    n = communities.height
    districts = communities["district"].to_numpy()
    uniq_d = np.unique(districts)
    households = communities["households"].fill_null(2000).to_numpy().astype(float)
    population = communities["population"].fill_null(6000).to_numpy().astype(float)
    frames = []
    # a persistent community effect, so ranks are stable-ish across quarters
    quality = rng.normal(0, 1, n)
    compounds0 = np.maximum(1, np.round(np.array(
        [_profile("residential_compounds", d, (6, 2))[0] for d in districts] if len(uniq_d) < 50
        else np.full(n, 6.0)) + rng.normal(0, 1.5, n)))
    for qi, q in enumerate(quarters):
        trend = 1.0 + 0.01 * qi
        # compounds are shared by several indicators: 住宅小区数 and the denominators of the compound rates
        compounds = compounds0 + (rng.random(n) < 0.03)
        unoccupied = np.minimum(compounds - 1, rng.poisson(0.4, n))
        drawn: dict[str, np.ndarray] = {}   # this quarter's values, for rates whose base is another indicator
        for row in cat.iter_rows(named=True):
            code, kind, lo, hi = row["code"], row["value_kind"], row["valid_min"], row["valid_max"]
            num = den = None
            if code in WAGE_PREMIUM:
                # 建邺 (seed001): 主任 850, 副主任 800, 社工 750 元/月: a premium over the staff wage; the deputy's
                # premium is capped by the director's, so 副主任 <= 主任 (rule VR11)
                base = drawn.get("staff_monthly_wage", np.full(n, 800.0))
                centre, spread = WAGE_PREMIUM[code]
                premium = np.maximum(0.0, centre + spread * wage_rng.normal(0, 1, n))
                if code == "deputy_director_monthly_wage" and "director_monthly_wage" in drawn:
                    premium = np.minimum(premium, drawn["director_monthly_wage"] - base)
                val = np.clip(np.round(base + premium), lo, hi)
                drawn[code] = val
                frames.append(pl.DataFrame({
                    "community_code": communities["community_code"], "district": communities["district"],
                    "quarter": q, "indicator_code": code, "value": val,
                    "numerator": np.full(n, np.nan), "denominator": np.full(n, np.nan)}))
                continue
            noise = rng.normal(0, 1, n) * 0.7 + quality * 0.3
            if code == "residential_compounds":
                val = compounds.astype(float)
            elif kind == "flag":
                p = np.array([FLAG_P.get(code, {}).get(d, FLAG_P.get(code, {}).get("*", 0.75)) for d in uniq_d])
                pmap = dict(zip(uniq_d, p))
                probs = np.vectorize(pmap.get)(districts) if len(uniq_d) < 50 else np.full(n, p.mean())
                val = (rng.random(n) < np.clip(probs + quality * 0.05, 0, 1)).astype(float)
            elif kind in ("ratio", "survey", "rate_per"):
                if code in SCALES:
                    if code == "staff_per_10k_pop":
                        den = population
                        num = np.maximum(1, np.round(population / 10000 * (16 + 3 * noise)))
                    elif code == "service_facility_area_per_100hh":
                        den = households
                        num = np.maximum(50, np.round(households / 100 * (22 + 6 * noise)))
                    else:
                        den = households
                        centre, spread = _profile(code, "*", (200, 20))
                        centres = np.array([_profile(code, d, (centre, spread))[0] for d in uniq_d])
                        cmap = dict(zip(uniq_d, centres))
                        c = np.vectorize(cmap.get)(districts) if len(uniq_d) < 50 else np.full(n, centre)
                        num = np.round(households / 100 * (c + spread * 0.2 * noise))
                    val = num / den * SCALES[code]
                else:
                    centre, spread = _profile(code, "*", (0.86, 0.06))
                    if len(uniq_d) < 50:
                        cmap = {d: _profile(code, d, (centre, spread))[0] for d in uniq_d}
                        c = np.vectorize(cmap.get)(districts)
                    else:
                        c = np.full(n, centre)
                    rate = np.clip(c * min(trend, 1.02) + spread * noise, 0.3, 1.0)
                    if code in ("floating_pop_registration_rate",):
                        base = np.maximum(10, np.round(population * 0.08))
                    elif code in ("medical_insurance_rate",):
                        base = np.round(population * 0.9)
                    elif code in ("tech_defense_household_rate",):
                        base = households
                    elif code in ("dibao_coverage_rate",):
                        # 已纳入低保户数 cannot exceed 城市低保户数 (rule VR08): the numerator's base is that count.
                        # The draw is still taken so every later indicator keeps its random stream.
                        base = np.maximum(3, np.round(rng.normal(15, 5, n)))
                        base = np.maximum(1, drawn.get("dibao_households", base))
                    elif code == "family_planning_service_rate":
                        base = np.round(population * 0.12)
                    elif code == "election_turnout_rate":
                        base = np.round(population * 0.7)
                    elif code == "door_three_guarantees_rate":
                        base = np.maximum(5, np.round(rng.normal(40, 12, n)))
                    elif code == "activity_area_rate":
                        base = np.maximum(100, np.round(rng.normal(600, 150, n)))
                    elif code in ("closed_compound_rate", "property_managed_rate"):
                        base = compounds
                    elif code == "owners_committee_rate":   # 45/57: unoccupied compounds are not counted
                        base = compounds - unoccupied
                    else:
                        bc, bs = RATE_BASE.get(code, (20, 5))
                        base = np.maximum(1, np.round(bc + bs * rng.normal(0, 1, n)))
                        if code in ("staff_college_rate", "social_worker_cert_rate") and "staff_count" in drawn:
                            # counted among 社区工作者 (rules VR05, VR06): the denominator is staff_count
                            base = np.maximum(1, drawn["staff_count"])
                    den = base
                    num = np.minimum(den, np.round(rate * den))
                    val = num / den
            else:
                centre, spread = _profile(code, "*", ((lo or 0) + ((hi or 10) - (lo or 0)) * 0.1, 1.0))
                if len(uniq_d) < 50:
                    prof = {d: _profile(code, d, (centre, spread)) for d in uniq_d}
                    c = np.vectorize(lambda d: prof[d][0])(districts)
                    s = np.vectorize(lambda d: prof[d][1])(districts)
                else:
                    c, s = np.full(n, centre), np.full(n, spread)
                val = c * (trend if row["period_semantics"] in ("stock",) and kind != "score" else 1.0) + s * noise
                if kind in ("count", "ordinal"):
                    val = np.round(np.maximum(val, 0))
                if kind == "ordinal":
                    val = np.clip(val, 1, 4)
                if kind in ("amount", "area", "score"):
                    val = np.round(np.maximum(val, 0), 2 if kind == "amount" else 1)
                if row["direction"] == "target_band":
                    val = np.clip(np.round(val), 3, 11)
                val = np.clip(val, lo if lo is not None else -np.inf, hi if hi is not None else np.inf)
            drawn[code] = val
            frames.append(pl.DataFrame({
                "community_code": communities["community_code"], "district": communities["district"],
                "quarter": q, "indicator_code": code, "value": val,
                "numerator": num if num is not None else np.full(n, np.nan),
                "denominator": den if den is not None else np.full(n, np.nan),
            }))
    df = pl.concat(frames)
    return df.with_columns(pl.col("numerator").fill_nan(None), pl.col("denominator").fill_nan(None))


# ------------------------------------------------------------------ formatting helpers
def _num(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if float(v).is_integer():
        return str(int(v))
    return f"{v:.4f}".rstrip("0").rstrip(".")


def survey_columns(with_parts: set[str] | None = None, use_alias: bool = False) -> list[tuple[str, str, str]]:
    """Columns of a wide survey: every indicator's value column; for rate indicators in ``with_parts`` (all by
    default) also its numerator and denominator columns, named by header_aliases.csv."""
    cat = load_catalogue()
    aliases = load_header_aliases()
    value_alias = {c: a for a, c in aliases.filter(pl.col("role") == "value").select("alias", "indicator_code")
                   .unique("indicator_code", keep="first").iter_rows()}
    parts = {(c, r): a for a, c, r in aliases.filter(pl.col("role") != "value")
             .select("alias", "indicator_code", "role").iter_rows()}
    cols = []
    for row in cat.iter_rows(named=True):
        code = row["code"]
        name = value_alias.get(code, row["name_zh"]) if use_alias else row["name_zh"]
        if (code, "numerator") in parts and (with_parts is None or code in with_parts):
            cols.append((parts[(code, "numerator")], code, "numerator"))
            cols.append((parts[(code, "denominator")], code, "denominator"))
        cols.append((name, code, "value"))
    return cols


def _wide(values: pl.DataFrame) -> dict[tuple[str, str], dict[str, tuple]]:
    """(community_code, indicator) -> (value, numerator, denominator) lookups for writers."""
    out: dict = {}
    for code, ind, v, n, d in values.select("community_code", "indicator_code", "value", "numerator",
                                            "denominator").iter_rows():
        out[(code, ind)] = (v, n, d)
    return out


def _cell(vals, code, ind, role, style: str, unit: str, kind: str) -> str | float | None:
    v, n, d = vals.get((code, ind), (None, None, None))
    x = {"value": v, "numerator": n, "denominator": d}[role]
    if x is None:
        return None
    if role != "value":
        return float(x)
    if kind in ("ratio", "survey"):
        return f"{x * 100:.1f}%" if style == "percent_text" else round(float(x), 4)
    if kind == "flag":
        return ("是" if x >= 0.5 else "否") if style != "plain" else float(x)
    if kind == "ordinal" and style == "percent_text":
        return {4: "优秀", 3: "良好", 2: "合格", 1: "不合格"}[int(x)]
    return round(float(x), 2)


# ------------------------------------------------------------------ writers
def write_xlsx(path: Path, district: str, quarter: str, comms: pl.DataFrame, values: pl.DataFrame,
               merged_header: bool = True) -> None:
    """Title block, two-row merged header grouped by category, 小计 per street, 合计, footers."""
    from openpyxl import Workbook
    from openpyxl.utils import get_column_letter

    cat = {r["code"]: r for r in load_catalogue().iter_rows(named=True)}
    cols = survey_columns()
    vals = _wide(values)
    wb = Workbook()
    ws = wb.active
    ws.title = quarter_label(quarter)
    ncol = 3 + len(cols)
    ws.append([f"{district}{quarter_label(quarter)}社区建设情况统计表"])
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=min(ncol, 12))
    y, q = split_quarter(quarter)
    filled = quarter_bounds(quarter)[1] + dt.timedelta(days=8)
    ws.append([f"填报单位：{district}民政局", None, None, "单位：见各列", None, None, f"填报日期：{filled:%Y年%m月%d日}"])
    groups, units = [], []
    for h, code, role in cols:
        groups.append(cat[code]["category"])
        u = cat[code]["unit"]
        if role == "value":
            units.append(f"{h}（%）" if u == "%" else f"{h}（{u}）" if u not in ("是/否",) and "等级" not in u else h)
        else:
            units.append(h)
    ws.append(["序号", "街道", "社区名称", *groups])
    ws.append(["序号", "街道", "社区名称", *units])
    if merged_header:
        for c in (1, 2, 3):
            ws.merge_cells(start_row=3, start_column=c, end_row=4, end_column=c)
        start = 0
        for i in range(1, len(groups) + 1):
            if i == len(groups) or groups[i] != groups[start]:
                if i - start > 1:
                    ws.merge_cells(start_row=3, start_column=4 + start, end_row=3, end_column=3 + i)
                start = i
    r = 5
    seq = 0
    for street, grp in comms.group_by("street", maintain_order=True):
        first = r
        for row in grp.iter_rows(named=True):
            seq += 1
            ws.append([seq, row["street"], row["name"], *[
                _cell(vals, row["community_code"], code, role, "number", cat[code]["unit"], cat[code]["value_kind"])
                for _, code, role in cols]])
            r += 1
        # street subtotal with formulas (no cached values: openpyxl does not calculate)
        ws.append([None, f"{street[0]}小计", None, *[
            f"=SUM({get_column_letter(4 + i)}{first}:{get_column_letter(4 + i)}{r - 1})" if role != "value" else None
            for i, (_, code, role) in enumerate(cols)]])
        r += 1
    ws.append([None, "合计", None])
    ws.append(["填表人：王芳    审核人：李强"])
    ws.append(["注：比率类指标按小数填报（0.79 即 79%）；办公用房面积含临时租借用房。"])
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)


def write_csv(path: Path, district: str, quarter: str, comms: pl.DataFrame, values: pl.DataFrame,
              encoding: str = "gbk", parts_for: set[str] | None = None, suffix_variants: bool = True,
              delimiter: str = ",", traditional: bool = False) -> None:
    """One header row; units inside cells (15平方米, 450元), percentages with %, 居委会-suffixed names.
    ``traditional`` writes the whole text in Traditional script (as a Big5 export would be)."""
    cat = {r["code"]: r for r in load_catalogue().iter_rows(named=True)}
    cols = survey_columns(with_parts=parts_for, use_alias=True)
    vals = _wide(values)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n", delimiter=delimiter)
    w.writerow(["序号", "街道", "居委会", *[h for h, _, _ in cols]])
    for i, row in enumerate(comms.iter_rows(named=True), 1):
        name = row["name"]
        if suffix_variants and i % 3 == 0:
            name = name.removesuffix("社区") + "居委会"
        cells = []
        for _, code, role in cols:
            c = _cell(vals, row["community_code"], code, role, "percent_text", cat[code]["unit"],
                      cat[code]["value_kind"])
            if isinstance(c, float) and role == "value":
                unit = cat[code]["unit"]
                if unit == "平方米":
                    c = f"{_num(c)}平方米"
                elif unit == "元/月":
                    c = f"{_num(c)}元"
                else:
                    c = _num(c)
            elif isinstance(c, float):
                c = _num(c)
            cells.append("" if c is None else c)
        w.writerow([i, row["street"], name, *cells])
    text = buf.getvalue()
    if traditional:
        import opencc

        text = opencc.OpenCC("s2t").convert(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))


def write_json(path: Path, district: str, quarter: str, comms: pl.DataFrame, values: pl.DataFrame) -> None:
    """Nested JSON: district and period at the top, long records (街道, 社区, 指标, 数值, 单位) below."""
    cat = {r["code"]: r for r in load_catalogue().iter_rows(named=True)}
    cols = survey_columns()
    vals = _wide(values)
    records = []
    for row in comms.iter_rows(named=True):
        for h, code, role in cols:
            v = _cell(vals, row["community_code"], code, role, "number", cat[code]["unit"], cat[code]["value_kind"])
            if v is None:
                continue
            rec = {"街道": row["street"], "社区": row["name"], "指标": h}
            unit = cat[code]["unit"]
            if role == "value" and unit == "万元" and isinstance(v, float):
                rec["数值"], rec["单位"] = round(v * 10000, 2), "元"      # 元 next to a 万元 catalogue unit
            elif role == "value" and cat[code]["value_kind"] in ("ratio", "survey") and len(records) % 2:
                rec["数值"] = f"{v * 100:.1f}%"
            else:
                rec["数值"] = v
            records.append(rec)
    head = {"区": district, "期间": quarter_label(quarter), "填报单位": f"{district}民政局"}
    body = ",\n".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in records)
    text = json.dumps(head, ensure_ascii=False)[:-1] + ', "记录": [\n' + body + "\n]}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# ------------------------------------------------------------------ the bundled sample inbox
def write_sample_inbox(inbox: Path = DEFAULT_INBOX, quarters: list[str] | None = None,
                       registry_dir: Path = REGISTRY_DIR, seed: int = 20240930) -> list[Path]:
    quarters = quarters or SAMPLE_QUARTERS
    comms = load_communities(registry_dir)
    values = generate_values(comms, quarters, seed)
    written = []
    tianqiao_parts = {"owners_committee_rate", "medical_insurance_rate", "resident_satisfaction_rate",
                      "staff_per_10k_pop", "office_funds_per_100hh_month", "mediation_success_rate"}
    for q in quarters:
        end = quarter_bounds(q)[1]
        valid = comms.filter((pl.col("valid_from") <= end) & (pl.col("valid_to").is_null() | (pl.col("valid_to") > end)))
        vq = values.filter(pl.col("quarter") == q)
        folder = inbox / q
        y, qn = split_quarter(q)
        for district in ("姜堰区", "天桥区", "建邺区", "江宁区"):
            dc = valid.filter(pl.col("district") == district)
            dv = vq.filter(pl.col("community_code").is_in(dc["community_code"].implode()))
            if district == "姜堰区":
                p = folder / f"姜堰区{quarter_label(q)}社区建设统计表.xlsx"
                write_xlsx(p, district, q, dc, dv)
            elif district == "天桥区":
                p = folder / f"天桥区_{y}Q{qn}_社区调查.csv"
                write_csv(p, district, q, dc, dv, "gbk", tianqiao_parts)
            elif district == "建邺区":
                p = folder / f"建邺区_{y}-Q{qn}.json"
                write_json(p, district, q, dc, dv)
            else:
                p = folder / f"江宁区秣陵街道_{y}Q{qn}.csv"
                write_csv(p, district, q, dc, dv, "utf-8-sig", None, suffix_variants=False)
            written.append(p)
    return written


# ------------------------------------------------------------------ national-scale synthetic sets
# Two-digit province prefixes as real 行政区划代码 use them (11 北京 ... 82 澳门), then unused ones: never 19 or 20.
# A district code 190102 or 200102 in a file name reads as the month 1901-02 / 2001-02 beside the file's 2024Q1,
# and the whole file is quarantined as conflicting_period (it happened to 64 of the 3,000 files of the first
# 600,000-community set, generated with prefixes 11, 12, ... 42).
PROVINCE_CODES = ["11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41",
                  "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71",
                  "81", "82", *(f"{x}" for x in range(83, 100))]
PROVINCE_NAMES = ["江苏省", "山东省", "浙江省", "广东省", "河南省", "四川省", "湖北省", "湖南省", "河北省", "安徽省",
                  "福建省", "江西省", "辽宁省", "陕西省", "山西省", "云南省", "贵州省", "广西壮族自治区", "吉林省",
                  "黑龙江省", "甘肃省", "内蒙古自治区", "新疆维吾尔自治区", "海南省", "宁夏回族自治区", "青海省",
                  "西藏自治区"]
_SYL = list("安宁和平兴华新东西南北中明光阳春秋长乐康泰福祥瑞丰盛德文武清江河湖山林园桥湾港庄台岭")


def _synthetic_name(i: int, suffix: str) -> str:
    a, b = divmod(i, len(_SYL))
    c, a = divmod(a, len(_SYL))
    return f"{_SYL[c % len(_SYL)]}{_SYL[a]}{_SYL[b]}{suffix}"


def synthetic_registry(n_communities: int, per_street: int = 20, streets_per_district: int = 10,
                       districts_per_city: int = 8) -> pl.DataFrame:
    """A registry of ``n_communities`` with a full province -> city -> district -> street hierarchy."""
    idx = np.arange(n_communities)
    street = idx // per_street
    district = street // streets_per_district
    city = district // districts_per_city
    province = city // 12
    comm_seq = idx % per_street + 1
    street_seq = street % streets_per_district + 1
    pcode = np.array([PROVINCE_CODES[p % len(PROVINCE_CODES)] for p in range(province.max() + 1)])
    prov_name = np.array([PROVINCE_NAMES[p % len(PROVINCE_NAMES)] + ("" if p < len(PROVINCE_NAMES) else str(p))
                          for p in range(province.max() + 1)])
    city_code = np.array([f"{pcode[c // 12]}{c % 12 + 1:02d}" for c in range(city.max() + 1)])
    dist_code = np.array([f"{city_code[d // districts_per_city]}{d % districts_per_city + 1:02d}"
                          for d in range(district.max() + 1)])
    cname = np.array([_synthetic_name(c, "市") for c in range(city.max() + 1)])
    dname = np.array([_synthetic_name(d + 7, "区") for d in range(district.max() + 1)])
    rng = np.random.default_rng(7)
    hh = rng.integers(800, 4000, n_communities)
    # distinct names within a street: community seq picks a syllable pair
    street_codes = [f"{dist_code[d]}{s:03d}" for d, s in zip(street // 1 // streets_per_district, street_seq)]
    return pl.DataFrame({
        "community_code": [f"{sc}{c:03d}" for sc, c in zip(street_codes, comm_seq)],
        "name": [_synthetic_name(i * 7 % 40000 + c, "社区") for i, c in zip(street, comm_seq)],
        "street_code": street_codes,
        "street": [_synthetic_name(s + 11, "街道") for s in street],
        "district_code": dist_code[district], "district": [f"{cname[d // districts_per_city]}{dname[d]}"
                                                          for d in district],
        "city_code": city_code[city], "city": cname[city],
        "province_code": pcode[province], "province": prov_name[province],
        "community_type": "居委会", "valid_from": dt.date(2015, 1, 1), "valid_to": None,
        "households": hh, "population": (hh * rng.uniform(2.6, 3.1, n_communities)).astype(int),
    }, schema_overrides={"valid_to": pl.Date})


def write_synthetic_set(out: Path, n_communities: int, quarters: list[str], seed: int = 1) -> dict:
    """out/registry/*.csv and out/inbox/<quarter>/<district>.{xlsx,csv,json}; shapes rotate over districts."""
    reg = synthetic_registry(n_communities)
    # names must be unique within a street: dedupe by appending the sequence when the syllable scheme collides
    reg = reg.with_columns(
        pl.when(pl.col("name").is_duplicated().over("street_code"))
        .then(pl.col("name").str.replace("社区$", "") + pl.col("community_code").str.slice(-3) + "社区")
        .otherwise(pl.col("name")).alias("name"))
    (out / "registry").mkdir(parents=True, exist_ok=True)
    reg.write_csv(out / "registry" / "communities.csv")
    values = generate_values(reg, quarters, seed)
    shapes = {"xlsx": 0, "csv": 0, "json": 0}
    for q in quarters:
        vq = values.filter(pl.col("quarter") == q)
        parts = vq.partition_by("district", as_dict=True)
        for i, (dc, dcomms) in enumerate(reg.group_by("district_code", maintain_order=True)):
            district = dcomms["district"][0]
            dv = parts[(district,)]
            shape = ("xlsx", "csv", "json")[i % 3]
            p = out / "inbox" / q / f"{dc[0]}_{q}.{shape}"
            if shape == "xlsx":
                write_xlsx(p, district, q, dcomms, dv)
            elif shape == "csv":
                write_csv(p, district, q, dcomms, dv, "gbk", None, suffix_variants=False)
            else:
                write_json(p, district, q, dcomms, dv)
            shapes[shape] += 1
    return {"communities": reg.height, "files": shapes, "values": values.height}


def write_sample_reviews(directory: Path, quarter: str = "2024Q4", registry_dir: Path = REGISTRY_DIR) -> Path:
    """A reviewer's corrections for the sample (GBK CSV, as a district office saves it from Excel): 街道初评 and
    区复评 values for three 天桥区 communities, so the bundled refresh exercises the review stages."""
    from .periods import quarter_label

    comms = load_communities(registry_dir)
    end = quarter_bounds(quarter)[1]
    tq = comms.filter((pl.col("district") == "天桥区") & (pl.col("valid_from") <= end)
                      & (pl.col("valid_to").is_null() | (pl.col("valid_to") > end))).sort("community_code")
    codes = tq["community_code"].to_list()[:3]
    rows = [
        (codes[0], "街道初评", "居民对社区工作满意度", "0.72", "北园街道办事处", "入户抽查 50 户"),
        (codes[0], "区复评", "resident_satisfaction_rate", "0.68", "区考核组", "第三方满意度调查"),
        (codes[1], "街道初评", "社区办公用房面积", "24", "街道办事处", "现场测量，含临时租用部分"),
        (codes[2], "区复评", "new_illegal_structures", "1", "区考核组", "卫片比对发现新增违建 1 处"),
    ]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{quarter}_评审核定.csv"
    lines = ["季度,社区编码,评审阶段,指标,核定值,评审人,说明"]
    lines += [",".join([quarter_label(quarter), *r]) for r in rows]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("gbk"))
    return path
