"""A mutation corpus: the project's own sample values (shequ.sample.generate_values for 建邺区, 2024Q3) written
in the shapes district offices and reporting systems send, each file generated here by openpyxl, xlwt, odfpy (.ods),
csv or json (nothing committed). Every shape either loads exactly the sample's numbers or is quarantined with the
expected reason, and every value cell is accounted for: loaded + quarantined = cells written.

建邺区 has a 新村社区 in 南湖街道 and another in 兴隆街道, so the street context of every layout is tested by a
name that is ambiguous without it."""

import csv
import io
import json

import polars as pl
import pytest
import xlwt
from odf.opendocument import OpenDocumentSpreadsheet
from odf.style import Style, TableProperties
from odf.table import CoveredTableCell, Table, TableCell, TableColumn, TableRow
from odf.text import P
from openpyxl import Workbook

from shequ import pipeline
from shequ.registry import load_communities
from shequ.sample import generate_values
from shequ.warehouse import connect, frame

STREETS = ["南湖街道", "兴隆街道"]
# header written -> indicator code (name, alias, code: all three spellings appear below)
IND = {"志愿者组织数": "volunteer_orgs", "群众文体队伍数": "culture_teams", "帮助就业安置人次": "jobs_placed"}
TITLE = "建邺区2024年第三季度社区工作统计表"


@pytest.fixture(scope="module")
def sample():
    comms = load_communities().filter(pl.col("district") == "建邺区", pl.col("street").is_in(STREETS),
                                      pl.col("valid_to").is_null())
    vals = generate_values(load_communities().filter(pl.col("district") == "建邺区"), ["2024Q3"])
    vals = vals.filter(pl.col("indicator_code").is_in(list(IND.values())))
    value = {(r["community_code"], r["indicator_code"]): int(r["value"]) for r in vals.iter_rows(named=True)}
    rows = [(r["street"], r["name"], r["community_code"]) for r in comms.sort("street", "community_code")
            .iter_rows(named=True)]
    assert sum(1 for _, n, _ in rows if n == "新村社区") == 2   # the case under test is in the sample
    return {"rows": rows, "value": value}


def _by_street(sample):
    return {s: [(n, c) for st, n, c in sample["rows"] if st == s] for s in STREETS}


def _ingest(tmp_path, files: dict, facts: bool = False):
    """Write the files into inbox/2024Q3, run the real staging (and fact build) on a fresh warehouse."""
    inbox = tmp_path / "inbox"
    folder = inbox / "2024Q3"
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        p = folder / name
        if isinstance(data, Workbook):
            data.save(p)
        elif isinstance(data, xlwt.Workbook):
            data.save(str(p))
        elif isinstance(data, bytes):
            p.write_bytes(data)
        else:
            p.write_text(data, encoding="utf-8")
    with connect(tmp_path / "w.duckdb") as con:
        pipeline.stage_dimensions(con)
        summaries = pipeline.stage_staged(con, inbox, "2024Q3")
        if facts:
            pipeline.stage_facts(con, "2024Q3")
        staged = frame(con, """SELECT c.community_code, s.indicator_code, s.period_key, s.value, s.source_cell
                               FROM stg_value s JOIN dim_community c USING (community_key) WHERE s.role = 'value'""")
        q = frame(con, "SELECT source_file, source_cell, community_raw, header_raw, reason_code, message "
                       "FROM quarantine")
        f = frame(con, """SELECT c.community_code, f.indicator_code, f.period_key, f.value, f.qualifier
                          FROM fact_indicator_value f JOIN dim_community c USING (community_key)""") if facts \
            else None
    assert not [s for s in summaries if s.reason_code == "internal_error"], summaries
    return summaries, staged, q, f


def _loaded(staged) -> dict:
    return {(c, i): v for c, i, v in staged.select("community_code", "indicator_code", "value").iter_rows()}


def _expected(sample, codes=None, inds=None) -> dict:
    codes = codes or [c for _, _, c in sample["rows"]]
    inds = inds or list(IND.values())
    return {(c, i): float(sample["value"][(c, i)]) for c in codes for i in inds}


def _reasons(q) -> dict:
    return dict(q.group_by("reason_code").len().iter_rows()) if q.height else {}


# ------------------------------------------------------------------ OpenDocument writer (odfpy)
def _cell(v, **kw):
    if v is None:
        return TableCell(**kw)
    if isinstance(v, (int, float)):
        c = TableCell(valuetype="float", value=v, **kw)
    else:
        c = TableCell(valuetype="string", **kw)
    c.addElement(P(text=str(v)))
    return c


def _ods_bytes(sheets) -> bytes:
    """sheets: [(name, rows, options)] with options hidden_rows, hidden_cols (0-based indexes into rows / columns),
    merges {(row, col): (rows_spanned, cols_spanned)}, hidden_sheet, lead_rows/lead_cols (empty rows and columns
    before the table, written as one repeated row and one repeated cell)."""
    doc = OpenDocumentSpreadsheet()
    hide = Style(name="taHidden", family="table")
    hide.addElement(TableProperties(display="false"))
    doc.automaticstyles.addElement(hide)
    for name, rows, opt in sheets:
        t = Table(name=name, **({"stylename": hide} if opt.get("hidden_sheet") else {}))
        width = max(len(r) for r in rows) + opt.get("lead_cols", 0)
        for c in range(width):
            hidden = (c - opt.get("lead_cols", 0)) in opt.get("hidden_cols", ())
            t.addElement(TableColumn(visibility="collapse") if hidden else TableColumn())
        if opt.get("lead_rows"):
            t.addElement(TableRow(numberrowsrepeated=opt["lead_rows"]))
        covered = set()
        for (r0, c0), (rs, cs) in opt.get("merges", {}).items():
            covered |= {(r, c) for r in range(r0, r0 + rs) for c in range(c0, c0 + cs)} - {(r0, c0)}
        for r, row in enumerate(rows):
            tr = TableRow(visibility="collapse") if r in opt.get("hidden_rows", ()) else TableRow()
            if opt.get("lead_cols"):
                tr.addElement(TableCell(numbercolumnsrepeated=opt["lead_cols"]))
            for c, v in enumerate(row):
                if (r, c) in covered:
                    tr.addElement(CoveredTableCell())
                elif (r, c) in opt.get("merges", {}):
                    rs, cs = opt["merges"][(r, c)]
                    tr.addElement(_cell(v, numberrowsspanned=rs, numbercolumnsspanned=cs))
                else:
                    tr.addElement(_cell(v))
            t.addElement(tr)
        doc.spreadsheet.addElement(t)
    buf = io.BytesIO()
    doc.write(buf)
    return buf.getvalue()


# ------------------------------------------------------------------ 2. hidden and duplicated columns
@pytest.mark.parametrize("hidden_first", [False, True])
def test_hidden_stale_column_never_loads_and_the_visible_one_does(tmp_path, sample, hidden_first):
    wb = Workbook()
    ws = wb.active
    ws.append([TITLE])
    ws.append(["街道", "社区名称", "志愿者组织数", "志愿者组织数"])
    for street, name, code in sample["rows"]:
        cur, stale = sample["value"][(code, "volunteer_orgs")], sample["value"][(code, "volunteer_orgs")] + 50
        ws.append([street, name, *((stale, cur) if hidden_first else (cur, stale))])
    ws.column_dimensions["C" if hidden_first else "D"].hidden = True
    _, staged, q, _ = _ingest(tmp_path, {"建邺区_复用表.xlsx": wb})
    assert _loaded(staged) == _expected(sample, inds=["volunteer_orgs"])
    n = len(sample["rows"])
    assert staged.height == n and _reasons(q) == {"hidden_duplicate_column": n}
    assert set(q["source_cell"].str.slice(0, 1)) == {"C" if hidden_first else "D"}
    assert q["message"][0].startswith("隐藏的 " + ("C列" if hidden_first else "D列")) and "取可见列" in q["message"][0]


def test_hidden_stale_column_in_a_legacy_xls(tmp_path, sample):
    wb = xlwt.Workbook(encoding="utf-8")
    ws = wb.add_sheet("2024年第三季度")
    for c, h in enumerate(["街道", "社区（居委会）名称", "群众文体队伍数", "群众文体队伍数"]):
        ws.write(0, c, h)
    for r, (street, name, code) in enumerate(sample["rows"], 1):
        v = sample["value"][(code, "culture_teams")]
        for c, x in enumerate([street, name, v + 7, v]):
            ws.write(r, c, x)
    ws.col(2).hidden = True
    _, staged, q, _ = _ingest(tmp_path, {"建邺区_文体.xls": wb})
    assert _loaded(staged) == _expected(sample, inds=["culture_teams"])
    assert staged.height == len(sample["rows"]) and _reasons(q) == {"hidden_duplicate_column": len(sample["rows"])}


def test_hidden_stale_column_in_an_ods(tmp_path, sample):
    rows = [["街道", "社区（居委会）名称", "群众文体队伍数", "群众文体队伍数"]]
    for street, name, code in sample["rows"]:
        v = sample["value"][(code, "culture_teams")]
        rows.append([street, name, v + 7, v])
    data = _ods_bytes([("2024年第三季度", rows, {"hidden_cols": {2}})])
    _, staged, q, _ = _ingest(tmp_path, {"建邺区_文体.ods": data})
    assert _loaded(staged) == _expected(sample, inds=["culture_teams"])
    assert staged.height == len(sample["rows"]) and _reasons(q) == {"hidden_duplicate_column": len(sample["rows"])}


def test_two_visible_columns_for_one_indicator_are_both_refused(tmp_path, sample):
    wb = Workbook()
    ws = wb.active
    ws.append([TITLE])
    ws.append(["街道", "社区名称", "志愿者组织数", "志愿服务队伍数", "群众文体队伍数"])
    for street, name, code in sample["rows"]:
        v = sample["value"]
        ws.append([street, name, v[(code, "volunteer_orgs")], v[(code, "volunteer_orgs")] + 1,
                   v[(code, "culture_teams")]])
    _, staged, q, _ = _ingest(tmp_path, {"建邺区_两列.xlsx": wb})
    assert _loaded(staged) == _expected(sample, inds=["culture_teams"])   # never "the first column wins"
    n = len(sample["rows"])
    assert staged.height == n
    assert _reasons(q) == {"ambiguous_header": 2 * n}
    assert "C列（志愿者组织数）、D列（志愿服务队伍数）" in q["message"][0]


# ------------------------------------------------------------------ 3. street context from the layout
def _street_rows_sheet(ws, sample, inds=("志愿者组织数", "群众文体队伍数", "帮助就业安置人次")):
    ws.append([TITLE])
    ws.append(["序号", "社区名称", *inds])
    for street, members in _by_street(sample).items():
        ws.append([None, street])          # 南湖街道 alone on a row
        for i, (name, code) in enumerate(members, 1):
            ws.append([i, name, *[sample["value"][(code, IND[h])] for h in inds]])


def test_street_from_a_sub_header_row(tmp_path, sample):
    wb = Workbook()
    _street_rows_sheet(wb.active, sample)
    _, staged, q, _ = _ingest(tmp_path, {"建邺区_小标题.xlsx": wb})
    assert _loaded(staged) == _expected(sample) and q.height == 0
    assert staged.height == len(sample["rows"]) * 3


def test_street_from_a_cell_merged_down_its_block(tmp_path, sample):
    wb = Workbook()
    ws = wb.active
    ws.append([TITLE])
    ws.append(["街道", "社区名称", "志愿者组织数"])
    r = 3
    for street, members in _by_street(sample).items():
        for i, (name, code) in enumerate(members):
            ws.append([street if i == 0 else None, name, sample["value"][(code, "volunteer_orgs")]])
        ws.merge_cells(f"A{r}:A{r + len(members) - 1}")
        r += len(members)
    book = xlwt.Workbook(encoding="utf-8")
    sh = book.add_sheet("2024年第三季度")
    for c, h in enumerate(["街道", "社区名称", "志愿者组织数"]):
        sh.write(0, c, h)
    r = 1
    for street, members in _by_street(sample).items():
        sh.write_merge(r, r + len(members) - 1, 0, 0, street)
        for i, (name, code) in enumerate(members):
            sh.write(r + i, 1, name)
            sh.write(r + i, 2, sample["value"][(code, "volunteer_orgs")])
        r += len(members)
    ods_rows, merges = [["街道", "社区名称", "志愿者组织数"]], {}
    for street, members in _by_street(sample).items():
        merges[(len(ods_rows), 0)] = (len(members), 1)
        ods_rows.extend([street if i == 0 else None, name, sample["value"][(code, "volunteer_orgs")]]
                        for i, (name, code) in enumerate(members))
    ods = _ods_bytes([("2024年第三季度", ods_rows, {"merges": merges})])
    _, staged, q, _ = _ingest(tmp_path, {"建邺区_合并.xlsx": wb, "建邺区_合并旧版.xls": book, "建邺区_合并.ods": ods})
    assert _loaded(staged) == _expected(sample, inds=["volunteer_orgs"])
    assert staged.height == 3 * len(sample["rows"]) and _reasons(q) == {}


def test_street_from_the_sheet_name_and_from_the_title(tmp_path, sample):
    wb = Workbook()
    for i, (street, members) in enumerate(_by_street(sample).items()):
        ws = wb.active if i == 0 else wb.create_sheet()
        ws.title = street                       # one sheet per street
        ws.append([TITLE])
        ws.append(["社区名称", "群众文体队伍数"])
        for name, code in members:
            ws.append([name, sample["value"][(code, "culture_teams")]])
    files = {"建邺区_分街道.xlsx": wb}
    for street, members in _by_street(sample).items():   # one file per street, the street in the title
        files[f"建邺区_{street}.csv"] = f"建邺区{street}2024年第三季度社区工作统计表\n社区名称,帮助就业安置人次\n" + \
            "".join(f"{n},{sample['value'][(c, 'jobs_placed')]}\n" for n, c in members)
    _, staged, q, _ = _ingest(tmp_path, files)
    assert _loaded(staged) == _expected(sample, inds=["culture_teams", "jobs_placed"]) and q.height == 0
    assert staged.height == 2 * len(sample["rows"])


def test_without_any_street_the_shared_name_is_quarantined_not_guessed(tmp_path, sample):
    text = "建邺区2024年第三季度\n社区名称,志愿者组织数\n" + "".join(
        f"{n},{sample['value'][(c, 'volunteer_orgs')]}\n" for _, n, c in sample["rows"])
    _, staged, q, _ = _ingest(tmp_path, {"建邺区_无街道.csv": text})
    assert _reasons(q) == {"ambiguous_community": 2}
    assert staged.height == len(sample["rows"]) - 2


@pytest.mark.parametrize("header", ["社区（居委会）名称", "居委会名称", "单位名称", "社区名称", "名称", "社区　名称",
                                    "[社区名称]", "社區（居委會）名稱"])
def test_printed_form_and_traditional_headers(tmp_path, sample, header):
    text = f"{TITLE}\n街道,{header},志願者組織數,群眾文體隊伍數\n" + "".join(
        f"{s},{n},{sample['value'][(c, 'volunteer_orgs')]}個,{sample['value'][(c, 'culture_teams')]}\n"
        for s, n, c in sample["rows"])
    _, staged, q, _ = _ingest(tmp_path, {"建邺区_表头.csv": text})
    assert _loaded(staged) == _expected(sample, inds=["volunteer_orgs", "culture_teams"]) and q.height == 0
    assert staged.height == 2 * len(sample["rows"])


# ------------------------------------------------------------------ 4. system exports
def _long_rows(sample):
    spell = {"volunteer_orgs": "志愿者组织(队伍)数", "culture_teams": "文体队伍数", "jobs_placed": "jobs_placed"}
    unit = {"volunteer_orgs": "个", "culture_teams": "支", "jobs_placed": "人次"}
    for s, n, c in sample["rows"]:
        for code in IND.values():             # by name, by alias, by code
            yield s, n, spell[code], sample["value"][(c, code)], unit[code], "2024年第三季度"


def test_long_csv_and_long_xlsx_exports(tmp_path, sample):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["街道", "社区", "指标", "数值", "单位", "期间"])
    w.writerows(_long_rows(sample))
    w.writerow(["南湖街道", "南湖社区", "不存在的指标", 1, "个", "2024年第三季度"])
    wb = Workbook()
    ws = wb.active
    ws.append(["社区名称", "街道", "指标名称", "指标值", "计量单位", "统计期间"])
    for s, n, ind, v, u, _ in _long_rows(sample):
        ws.append([n, s, ind, v, u, "2024Q3"])
    _, staged, q, _ = _ingest(tmp_path, {"建邺区_系统导出.csv": buf.getvalue(), "系统导出_建邺区.xlsx": wb})
    assert _loaded(staged) == _expected(sample)
    n = len(sample["rows"]) * len(IND)
    assert staged.height == 2 * n and _reasons(q) == {"unknown_header": 1}
    assert q.filter(pl.col("reason_code") == "unknown_header")["source_cell"].to_list() == [f"R{n + 2}C4"]


def test_nested_json_of_any_depth(tmp_path, sample):
    by_street = _by_street(sample)
    deep = {"区": "建邺区", "期间": "2024年第三季度", "数据": {
        street: {name: {"基本情况": {"志愿者组织数": sample["value"][(c, "volunteer_orgs")]},
                        "群众文体队伍数": sample["value"][(c, "culture_teams")],
                        "帮助就业安置人次": sample["value"][(c, "jobs_placed")]} for name, c in members}
        for street, members in by_street.items()}}
    listed = {"期间": "2024Q3", "街道": [{"名称": street, "社区": [
        {"名称": name, "指标": {h: sample["value"][(c, code)] for h, code in IND.items()}}
        for name, c in members]} for street, members in by_street.items()]}
    _, staged, q, _ = _ingest(tmp_path, {"建邺区_嵌套.json": json.dumps(deep, ensure_ascii=False),
                                         "建邺区_列表.json": json.dumps(listed, ensure_ascii=False)})
    assert _loaded(staged) == _expected(sample)
    assert staged.height == 2 * len(sample["rows"]) * len(IND) and q.height == 0
    assert any(c.startswith("$.数据.南湖街道.新村社区.基本情况.") for c in staged["source_cell"])


def test_malformed_json_is_rejected_with_its_path(tmp_path, sample):
    bad = {"期间": "2024年第三季度", "南湖街道": {"南湖社区": {"志愿者组织数": [1, 2]}, "沿河社区": {"志愿者组织数": 3}}}
    summaries, staged, q, _ = _ingest(tmp_path, {"建邺区_坏.json": json.dumps(bad, ensure_ascii=False),
                                                 "建邺区_标量.json": "42"})
    assert staged.height == 1
    by = {s.source_file: s for s in summaries}
    assert by["2024Q3/建邺区_标量.json"].reason_code == "bad_structure"
    row = q.filter(pl.col("source_file") == "2024Q3/建邺区_坏.json")
    assert row.select("source_cell", "reason_code").rows() == [("$.南湖街道.南湖社区.志愿者组织数", "bad_structure")]
    assert "$.南湖街道.南湖社区.志愿者组织数" in row["message"][0]


# ------------------------------------------------------------------ 5. month blocks
def test_month_columns_under_an_indicator_heading_roll_up_by_its_time_rule(tmp_path, sample):
    months = {code: [sample["value"][(code, "jobs_placed")] + d for d in (0, 1, 2)] for _, _, code in sample["rows"]}
    wb = Workbook()
    ws = wb.active
    ws.append([TITLE])
    ws.append(["街道", "社区名称", "帮助就业安置人次", None, None, "群众文体队伍数", None, None])
    ws.append(["街道", "社区名称", "7月", "8月", "9月", "7月", "8月", "9月"])
    ws.merge_cells("C2:E2")
    ws.merge_cells("F2:H2")
    for s, n, c in sample["rows"]:
        t = sample["value"][(c, "culture_teams")]
        ws.append([s, n, *months[c], t - 1, t - 1, t])
    _, staged, q, facts = _ingest(tmp_path, {"建邺区_月报.xlsx": wb}, facts=True)
    assert q.height == 0 and staged.height == 6 * len(sample["rows"])
    assert sorted(set(staged["period_key"])) == ["2024-07", "2024-08", "2024-09"]
    got = {(c, i): (v, qual) for c, i, p, v, qual in facts.filter(pl.col("period_key") == "2024Q3").iter_rows()}
    for _, _, c in sample["rows"]:
        assert got[(c, "jobs_placed")] == (sum(months[c]), "months:3/3")                 # a flow: summed
        assert got[(c, "culture_teams")] == (sample["value"][(c, "culture_teams")], "months:3/3")  # a stock: last


def test_month_row_without_a_merged_heading(tmp_path, sample):
    text = "建邺区2024年第三季度\n街道,社区名称,帮助就业安置人次,,\n,,2024年7月,2024年8月,2024年9月\n" + "".join(
        f"{s},{n},1,2,{sample['value'][(c, 'jobs_placed')]}\n" for s, n, c in sample["rows"])
    _, staged, q, facts = _ingest(tmp_path, {"建邺区_月份.csv": text}, facts=True)
    assert q.height == 0
    got = {c: v for c, i, p, v, _ in facts.filter(pl.col("period_key") == "2024Q3").iter_rows()}
    assert got == {c: 3.0 + sample["value"][(c, "jobs_placed")] for _, _, c in sample["rows"]}


# ------------------------------------------------------------------ 6. several tables on one sheet
def test_two_tables_side_by_side_and_one_under_another(tmp_path, sample):
    by_street = _by_street(sample)
    (s1, m1), (s2, m2) = by_street.items()
    wb = Workbook()
    ws = wb.active
    ws.append([TITLE])
    ws.append([f"{s1}", None, None, None, f"{s2}"])
    ws.append(["社区名称", "志愿者组织数", "群众文体队伍数", None, "社区名称", "群众文体队伍数", "志愿者组织数"])
    for i in range(max(len(m1), len(m2))):
        left = [m1[i][0], sample["value"][(m1[i][1], "volunteer_orgs")], sample["value"][(m1[i][1], "culture_teams")]] \
            if i < len(m1) else [None] * 3
        right = [m2[i][0], sample["value"][(m2[i][1], "culture_teams")], sample["value"][(m2[i][1], "volunteer_orgs")]] \
            if i < len(m2) else [None] * 3
        ws.append([*left, None, *right])
    # a third table under the left one, after an empty row: 帮助就业安置人次 for both streets
    ws.append([])
    ws.append(["街道", "社区名称", "帮助就业安置人次"])
    for s, n, c in sample["rows"]:
        ws.append([s, n, sample["value"][(c, "jobs_placed")]])
    _, staged, q, _ = _ingest(tmp_path, {"建邺区_多表.xlsx": wb})
    assert _loaded(staged) == _expected(sample) and q.height == 0
    assert staged.height == 3 * len(sample["rows"])


def test_a_block_without_its_own_community_column_is_quarantined_whole(tmp_path, sample):
    wb = Workbook()
    ws = wb.active
    ws.append([TITLE])
    ws.append(["街道", "社区名称", "志愿者组织数", None, "群众文体队伍数"])
    for s, n, c in sample["rows"]:
        ws.append([s, n, sample["value"][(c, "volunteer_orgs")], None, sample["value"][(c, "culture_teams")]])
    _, staged, q, _ = _ingest(tmp_path, {"建邺区_右块.xlsx": wb})
    assert _loaded(staged) == _expected(sample, inds=["volunteer_orgs"])     # never pinned to the left rows
    n = len(sample["rows"])
    assert staged.height == n
    assert _reasons(q) == {"unattributed_block": n + 1}                   # its header and every value
    assert set(q["source_cell"].str.slice(0, 1)) == {"E"}
    assert "E2:E" in q["message"][0]


# ------------------------------------------------------------------ 7. Traditional and pinyin in values
def test_a_traditional_big5_export_loads_like_simplified(tmp_path, sample):
    import opencc

    text = f"{TITLE}\r\n街道,社区名称,志愿者组织数,群众文体队伍数\r\n" + "".join(
        f"{s},{n},{sample['value'][(c, 'volunteer_orgs')]}个,{sample['value'][(c, 'culture_teams')]}支\r\n"
        for s, n, c in sample["rows"])
    text = opencc.OpenCC("s2tw").convert(text)
    assert "社區" in text and "興隆" in text
    _, staged, q, _ = _ingest(tmp_path, {"建邺区_繁体.csv": text.encode("big5")})
    assert _loaded(staged) == _expected(sample, inds=["volunteer_orgs", "culture_teams"]) and q.height == 0
    assert staged.height == 2 * len(sample["rows"])


# ------------------------------------------------------------------ more layouts of the same numbers
def test_one_table_per_street_stacked_with_or_without_an_empty_row(tmp_path, sample):
    files = {}
    for gap in (True, False):
        wb = Workbook()
        ws = wb.active
        ws.append([TITLE])
        for street, members in _by_street(sample).items():
            ws.append([street])                          # the street as the title of its own table
            ws.append(["序号", "社区名称", "群众文体队伍数"])
            for i, (name, code) in enumerate(members, 1):
                ws.append([i, name, sample["value"][(code, "culture_teams")]])
            if gap:
                ws.append([])
        files[f"建邺区_分块{'空行' if gap else '连续'}.xlsx"] = wb
    _, staged, q, _ = _ingest(tmp_path, files)
    assert _loaded(staged) == _expected(sample, inds=["culture_teams"]) and q.height == 0
    assert staged.height == 2 * len(sample["rows"])


def test_month_blocks_in_a_legacy_xls(tmp_path, sample):
    book = xlwt.Workbook(encoding="utf-8")
    sh = book.add_sheet("南湖街道")
    sh.write_merge(0, 0, 0, 3, "建邺区南湖街道2024年第三季度")
    sh.write_merge(1, 2, 0, 0, "社区名称")
    sh.write_merge(1, 1, 1, 3, "就业安置人次")
    for c, m in enumerate(["7月", "8月", "9月"], 1):
        sh.write(2, c, m)
    members = _by_street(sample)["南湖街道"]
    for r, (name, code) in enumerate(members, 3):
        for c, v in enumerate([name, 1, 0, sample["value"][(code, "jobs_placed")]]):
            sh.write(r, c, v)
    _, staged, q, facts = _ingest(tmp_path, {"建邺区_南湖_月报.xls": book}, facts=True)
    assert q.height == 0 and staged.height == 3 * len(members)
    got = {c: (v, qual) for c, i, p, v, qual in facts.filter(pl.col("period_key") == "2024Q3").iter_rows()}
    assert got == {c: (1.0 + sample["value"][(c, "jobs_placed")], "months:3/3") for _, c in members}


def test_long_export_by_month_rolls_up(tmp_path, sample):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["街道", "社区", "指标代码", "数值", "期间"])
    for s, n, c in sample["rows"]:
        for m, v in (("2024-07", 2), ("2024-08", 3), ("2024-09", sample["value"][(c, "jobs_placed")])):
            w.writerow([s, n, "jobs_placed", v, m])
    _, staged, q, facts = _ingest(tmp_path, {"建邺区_月度导出.csv": buf.getvalue()}, facts=True)
    assert q.height == 0 and staged.height == 3 * len(sample["rows"])
    got = {c: v for c, i, p, v, _ in facts.filter(pl.col("period_key") == "2024Q3").iter_rows()}
    assert got == {c: 5.0 + sample["value"][(c, "jobs_placed")] for _, _, c in sample["rows"]}


def test_nested_json_with_period_keys_and_codes(tmp_path, sample):
    doc = {"建邺区": {"2024年第三季度": {street: [
        {"社区": name, "values": {"volunteer_orgs": sample["value"][(c, "volunteer_orgs")]}} for name, c in members]
        for street, members in _by_street(sample).items()}}}
    _, staged, q, _ = _ingest(tmp_path, {"导出.json": json.dumps(doc, ensure_ascii=False)})
    assert _loaded(staged) == _expected(sample, inds=["volunteer_orgs"]) and q.height == 0
    assert staged.height == len(sample["rows"]) and set(staged["period_key"]) == {"2024Q3"}


def test_json_community_keyed_without_its_suffix(tmp_path, sample):
    members = _by_street(sample)["兴隆街道"]
    doc = {"期间": "2024年第三季度", "兴隆街道": {
        name.removesuffix("社区"): {"文体队伍数": sample["value"][(c, "culture_teams")]} for name, c in members}}
    _, staged, q, _ = _ingest(tmp_path, {"建邺区_兴隆.json": json.dumps(doc, ensure_ascii=False)})
    assert _loaded(staged) == _expected(sample, [c for _, c in members], ["culture_teams"]) and q.height == 0


def test_a_remarks_column_set_apart_is_not_a_block_of_values(tmp_path, sample):
    wb = Workbook()
    ws = wb.active
    ws.append([TITLE])
    ws.append(["街道", "社区名称", "志愿者组织数", None, "备注"])
    for s, n, c in sample["rows"]:
        ws.append([s, n, sample["value"][(c, "volunteer_orgs")], None, "已核实"])
    summaries, staged, q, _ = _ingest(tmp_path, {"建邺区_备注.xlsx": wb})
    assert _loaded(staged) == _expected(sample, inds=["volunteer_orgs"]) and q.height == 0
    assert staged.height == len(sample["rows"])
    assert any("为备注列，不作数值读取" in n for n in summaries[0].notes)


# ------------------------------------------------------------------ hidden rows and repeated records
@pytest.mark.parametrize("fmt", ["xlsx", "ods"])
def test_filtered_rows_load_and_stale_hidden_rows_do_not(tmp_path, sample, fmt):
    """One sheet: the 兴隆街道 rows hidden by a filter (no visible copy: they load), and under the table last
    quarter's 南湖街道 rows, hidden, with other numbers (a visible copy exists: quarantined)."""
    inds = ("志愿者组织数", "群众文体队伍数")
    rows = [["街道", "社区名称", *inds]]
    hidden = set()
    for street, name, code in sample["rows"]:
        if street == "兴隆街道":
            hidden.add(len(rows))
        rows.append([street, name, *[sample["value"][(code, IND[h])] for h in inds]])
    nanhu = [(s, n, c) for s, n, c in sample["rows"] if s == "南湖街道"]
    for street, name, code in nanhu:
        hidden.add(len(rows))
        rows.append([street, name, *[sample["value"][(code, IND[h])] + 11 for h in inds]])
    if fmt == "xlsx":
        data = Workbook()
        for r in rows:
            data.active.append(r)
        for i in hidden:
            data.active.row_dimensions[i + 1].hidden = True
    else:
        data = _ods_bytes([("2024年第三季度", rows, {"hidden_rows": hidden})])
    _, staged, q, _ = _ingest(tmp_path, {f"建邺区_筛选.{fmt}": data})
    assert _loaded(staged) == _expected(sample, inds=[IND[h] for h in inds])
    assert staged.height == 2 * len(sample["rows"])
    assert _reasons(q) == {"hidden_duplicate_row": 2 * len(nanhu)}      # loaded + quarantined = cells written
