"""Exports: the facts as SDMX-CSV 2.0 (for sending upward), and the printable 公示 list as xlsx (see the end
of this module: ``write_gongshi_xlsx``).

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
import datetime as dt
import os
from pathlib import Path

import duckdb

from . import config

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


# ------------------------------------------------------------------ 公示 list (xlsx)
# A text cell that begins with one of these is read as a formula by Excel or LibreOffice once someone edits or
# re-saves it as CSV (OWASP "CSV injection"); \t and \r are in OWASP's list too.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
NEUTRALISE = "'"
ELIGIBILITY_ZH = {None: "参评", "no_data": "本季度无数据，未参评",
                  "coverage_below_min": "报送指标权重不足 60%，未参评"}
AWARD_HEADERS = ["序号", "称号", "社区", "街道", "区", "得分", "等次", "配额位次", "配额", "统计上并列标注"]
AWARD_WIDTHS = [6, 18, 18, 14, 10, 9, 8, 10, 7, 34]
RANK_HEADERS = ["序号", "社区", "街道", "区", "得分", "区内名次", "参评数", "等次", "否决项", "资格说明"]
RANK_WIDTHS = [6, 18, 14, 10, 9, 9, 8, 8, 16, 30]
VETO_HEADERS = ["序号", "社区", "街道", "区", "得分", "区内名次", "等次", "否决项", "说明"]
VETO_WIDTHS = [6, 18, 14, 10, 9, 9, 8, 16, 80]
SCORE_FORMAT = "0.00"            # every score on every sheet: two decimals, the rounding ranks and grades use
SCORE_HEADERS = {"得分"}
GONGSHI_CONFIG = config.MODELS / "publish" / "gongshi.yaml"
PLACEHOLDER = "（请在"            # an unfilled item of models/publish/gongshi.yaml starts with this


def safe_text(value):
    """A text that cannot become a formula: OWASP's single quote before a leading = + - @ tab or CR. Other
    values (numbers, None, ordinary text) are returned unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return NEUTRALISE + value
    return value


def _put(ws, row: int, col: int, value):
    """Write one cell; text is neutralised and always stored as a string (data_type 's'), never a formula.
    A neutralised cell also gets Excel's quotePrefix, so editing it in Excel keeps it text."""
    cell = ws.cell(row=row, column=col)
    if isinstance(value, str):
        safe = safe_text(value)
        cell.value = safe
        cell.data_type = "s"
        if safe is not value:
            cell.quotePrefix = True
    else:
        cell.value = value
    return cell


def gongshi_notice(path: str | os.PathLike | None = None, published_on: dt.date | None = None,
                   today: dt.date | None = None) -> dict:
    """The notice printed under the 公示 lists, from models/publish/gongshi.yaml (or ``path``): 公示期 start and
    end, where objections go (office, phone, address) and the issuing office. The period starts on
    ``period.start`` if set, else on the publication date (``published_on``), else today; it ends ``days`` (7)
    days later. ``unfilled`` lists the items still holding the file's placeholder."""
    import yaml

    path = Path(path) if path else GONGSHI_CONFIG
    doc = {}
    if path.exists():
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(doc, dict):
            raise ValueError(f"公示信息文件 {path} 不是 YAML 映射")
    fill = f"（请在 {GONGSHI_CONFIG.relative_to(config.ROOT).as_posix()} 填写{{}}）"
    period = doc.get("period") or {}
    obj = doc.get("objections") or {}
    start = period.get("start")
    if isinstance(start, str):
        start = dt.date.fromisoformat(start)
    start = start or published_on or today or dt.date.today()
    days = int(period.get("days", 7))
    out = {"start": start, "end": start + dt.timedelta(days=days), "days": days,
           "issuer": str(doc.get("issuer") or fill.format("发布单位")),
           "office": str(obj.get("office") or fill.format("受理异议的科室")),
           "phone": str(obj.get("phone") or fill.format("联系电话")),
           "address": str(obj.get("address") or fill.format("地址"))}
    names = {"issuer": "发布单位", "office": "受理异议的科室", "phone": "联系电话", "address": "地址"}
    out["unfilled"] = [names[k] for k in names if out[k].startswith(PLACEHOLDER)]
    out["path"] = str(path)
    return out


def notice_lines(n: dict) -> list[str]:
    """The notice as printed: 公示期, objections, issuer."""
    return [f"公示期：{n['start']:%Y年%m月%d日}至{n['end']:%Y年%m月%d日}（{n['days']} 天）。",
            f"公示期间对结果有异议的，请向{n['office']}反映。联系电话：{n['phone']}；地址：{n['address']}。",
            f"发布单位：{n['issuer']}"]


def gongshi_rows(con: duckdb.DuckDBPyConnection, quarter: str, scheme: str = "default") -> dict:
    """The titles and community ranks of a quarter: the latest published (公示) version when there is one,
    else the live fact tables marked 未发布（预览）."""
    from .appraisal.store import publication_status

    st = publication_status(con, quarter, scheme)
    pub = [(st["version_id"], st["published_at"], st["matches_live"])] if st else []
    if pub:
        rank_src = "(SELECT * EXCLUDE (version_id) FROM published_ranking WHERE version_id = $v)"
        award_src = "(SELECT * EXCLUDE (version_id) FROM published_award WHERE version_id = $v)"
        p = {"q": quarter, "s": scheme, "v": pub[0][0]}
    else:
        rank_src, award_src = "fact_ranking", "fact_award"
        p = {"q": quarter, "s": scheme}
    places = """(SELECT community_code, any_value(street ORDER BY valid_from DESC) AS street,
                        any_value(district ORDER BY valid_from DESC) AS district
                 FROM dim_community GROUP BY 1)"""
    awards = con.execute(f"""
        SELECT a.title, a.entity_name, c.street, c.district, a.score, a.grade, a.quota_position, a.quota,
               a.tied_at_quota, a.tie_flag
        FROM {award_src} a LEFT JOIN {places} c ON c.community_code = a.entity_code
        WHERE a.period_key = $q AND a.scheme_id = $s
        ORDER BY CASE a.campaign WHEN '示范社区' THEN 0 WHEN '平安社区' THEN 1 ELSE 2 END,
                 CASE a.tier WHEN '省级' THEN 0 WHEN '市级' THEN 1 ELSE 2 END, c.district, a.quota_position,
                 a.entity_name""", p).fetchall()
    ranks = con.execute(f"""
        SELECT r.entity_name, c.street, c.district, r.score_rounded, r.rank, r.n_ranked, r.grade, r.vetoes,
               r.eligibility_reason
        FROM {rank_src} r JOIN dim_community c USING (community_key)
        WHERE r.period_key = $q AND r.scheme_id = $s AND r.entity_level = 'community'
          AND r.scope_level = 'district'
        ORDER BY c.district, r.rank NULLS LAST, r.entity_name""", p).fetchall()
    vetoes = con.execute(f"""
        SELECT r.entity_name, c.street, c.district, r.score_rounded, r.rank, r.grade, r.vetoes,
               (SELECT string_agg(e.detail, '；' ORDER BY e.position) FROM fact_explanation e
                WHERE e.period_key = r.period_key AND e.scheme_id = r.scheme_id AND e.entity_code = r.entity_code
                  AND e.kind = 'veto') AS detail
        FROM {rank_src} r JOIN dim_community c USING (community_key)
        WHERE r.period_key = $q AND r.scheme_id = $s AND r.entity_level = 'community'
          AND r.scope_level = 'district' AND r.vetoes IS NOT NULL
        ORDER BY c.district, r.rank NULLS LAST, r.entity_name""", p).fetchall()
    return {"publication": pub[0] if pub else None, "awards": awards, "ranks": ranks, "vetoes": vetoes}


def _sheet(ws, title: str, subtitle: str, headers: list[str], widths: list[int], rows: list[list],
           notes: list[str] = ()) -> None:
    """One printable list: title, subtitle, header row, rows, then ``notes`` (the 公示 notice) under the table.
    Score columns (SCORE_HEADERS) carry SCORE_FORMAT whatever the value's type; a note still holding the
    config file's placeholder is filled yellow."""
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
    from openpyxl.utils import get_column_letter

    n = len(headers)
    last = get_column_letter(n)
    ws.merge_cells(f"A1:{last}1")
    ws.merge_cells(f"A2:{last}2")
    _put(ws, 1, 1, title).font = Font(name="宋体", size=16, bold=True)
    ws["A1"].alignment = Alignment(horizontal="center", vertical="center")
    ws.row_dimensions[1].height = 30
    _put(ws, 2, 1, subtitle).alignment = Alignment(horizontal="right")
    thin = Side(style="thin", color="808080")
    border = Border(left=thin, right=thin, top=thin, bottom=thin)
    for j, h in enumerate(headers, 1):
        c = _put(ws, 3, j, h)
        c.font = Font(bold=True)
        c.fill = PatternFill("solid", fgColor="DDDDDD")
        c.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
        c.border = border
    score_cols = {j for j, h in enumerate(headers, 1) if h in SCORE_HEADERS}
    for i, r in enumerate(rows, 4):
        for j, v in enumerate(r, 1):
            c = _put(ws, i, j, v)
            c.border = border
            if j in score_cols:
                c.number_format = SCORE_FORMAT
            elif isinstance(v, str) and len(v) > 40:
                c.alignment = Alignment(wrap_text=True, vertical="top")
    below = 4 + len(rows) + 1
    for k, text in enumerate(notes):
        ws.merge_cells(start_row=below + k, start_column=1, end_row=below + k, end_column=n)
        c = _put(ws, below + k, 1, text)
        c.alignment = Alignment(wrap_text=True, vertical="top")
        ws.row_dimensions[below + k].height = 18 * (1 + len(text) // 90)
        if PLACEHOLDER in text:
            c.fill = PatternFill("solid", fgColor="FFF59D")       # still to be filled in gongshi.yaml
    for j, w in enumerate(widths, 1):
        ws.column_dimensions[get_column_letter(j)].width = w
    ws.freeze_panes = "A4"
    ws.print_title_rows = "3:3"                      # the header row repeats on every printed page
    ws.page_setup.orientation = "landscape"
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0                    # as many pages tall as needed
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.print_options.horizontalCentered = True
    ws.page_margins.left = ws.page_margins.right = 0.4
    ws.oddFooter.center.text = "第 &P 页，共 &N 页"
    if rows:
        ws.auto_filter.ref = f"A3:{last}{3 + len(rows)}"


def write_gongshi_xlsx(con: duckdb.DuckDBPyConnection, out: str | os.PathLike, quarter: str,
                       scheme: str = "default", notice: str | os.PathLike | None = None,
                       today: dt.date | None = None) -> dict:
    """The printable 公示 list of a quarter: a sheet of titles, a sheet of community scores and ranks, and a sheet
    explaining every 一票否决 (A4 landscape, fit to width, header row repeated, frozen). Under each list: the
    公示期, where objections go and the issuing office (``gongshi_notice``, from models/publish/gongshi.yaml or
    ``notice``). The subtitle names the scheme by its Chinese name. Returns counts, the version shown and the
    notice items still to be filled."""
    from openpyxl import Workbook

    from . import vetoes as veto_text
    from .periods import quarter_label

    today = today or dt.date.today()
    d = gongshi_rows(con, quarter, scheme)
    label = quarter_label(quarter)
    pub = d["publication"]
    n = gongshi_notice(notice, published_on=pub[1].date() if pub and pub[1] else None, today=today)
    status = (f"公示版本：{pub[0]}（发布于 {pub[1]:%Y-%m-%d}）" if pub else "未发布（预览）")
    if pub and not pub[2]:
        status += "（仓库当前结果已与此版本不同，更正须重新公示）"
    sdef = veto_text.scheme_for(scheme)
    scheme_name = (sdef.name if sdef is not None else "") or scheme
    version = f"（{sdef.version} 版）" if sdef is not None and sdef.version else ""
    subtitle = f"{status}　　评价方案：{scheme_name}{version}　　制表日期：{today:%Y-%m-%d}"
    notes = notice_lines(n)
    rules = [r for r in (veto_text.grades_text(sdef), veto_text.rules_text(sdef)) if r]
    wb = Workbook()
    ws = wb.active
    ws.title = "称号"
    award_rows = []
    for i, (title, name, street, district, score, grade, pos, quota, tied, tie_flag) in enumerate(d["awards"], 1):
        notes_ = []
        if tie_flag:
            notes_.append("统计上并列（名次区间跨过配额线）")
        if tied:
            notes_.append("配额线上同分并列入选")
        award_rows.append([i, title, name, street, district, round(score, 2), grade, pos, quota, "；".join(notes_)])
    _sheet(ws, f"{label}社区建设三级评比结果公示（称号）", subtitle, AWARD_HEADERS, AWARD_WIDTHS, award_rows, notes)
    ws2 = wb.create_sheet("社区得分与名次")
    rank_rows = []
    for i, (name, street, district, score, rank, n_ranked, grade, vetoes, why) in enumerate(d["ranks"], 1):
        rank_rows.append([i, name, street, district, None if score is None else round(score, 2), rank, n_ranked,
                          grade, vetoes, ELIGIBILITY_ZH.get(why, why)])
    _sheet(ws2, f"{label}社区建设三级评比结果公示（社区得分与名次）", subtitle, RANK_HEADERS, RANK_WIDTHS, rank_rows,
           rules + notes)
    ws3 = wb.create_sheet("一票否决说明")
    veto_rows = [[i, name, street, district, None if score is None else round(score, 2), rank, grade, vetoes,
                  detail or vetoes]
                 for i, (name, street, district, score, rank, grade, vetoes, detail) in enumerate(d["vetoes"], 1)]
    _sheet(ws3, f"{label}社区建设三级评比结果公示（一票否决说明）", subtitle, VETO_HEADERS, VETO_WIDTHS, veto_rows,
           rules + notes)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    wb.save(tmp)
    os.replace(tmp, out)
    return {"path": str(out), "titles": len(award_rows), "communities": len(rank_rows), "vetoed": len(veto_rows),
            "version_id": pub[0] if pub else None, "period": (n["start"], n["end"]), "unfilled": n["unfilled"],
            "notice": n["path"]}
