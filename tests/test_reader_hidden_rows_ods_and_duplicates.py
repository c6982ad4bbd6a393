"""Hidden rows in every workbook format (xlsx, xls, ods), OpenDocument spreadsheets (.ods) read with their
structure, workbooks under the wrong old extension, and the one duplicate rule for all shapes: a hidden copy
loses to a visible one (hidden_duplicate_row), visible copies with different values are all refused
(conflicting_duplicate), equal copies load once (duplicate_in_file names the cell that loaded). Never "first wins".

Every file is generated here from the project's own sample values (openpyxl, xlwt, odfpy, or an ods written by
hand for the hostile ones); nothing is committed."""

import csv
import io
import json
import zipfile

import polars as pl
import pytest
import xlwt
from openpyxl import Workbook

from shequ.filetypes import real_kind
from shequ.readers import FileRejected, read_file
from test_reading_office_shapes_corpus import (IND, TITLE, _expected, _ingest, _loaded, _ods_bytes,  # noqa: F401
                                              _reasons, sample)

STALE = 50   # a stale row's values differ from the current ones by this much


# ------------------------------------------------------------------ writers of the three workbook formats
def _grid_rows(sample, inds, hidden_extra: dict[str, int] | None = None, hidden_first=False):
    """Rows [street, name, *values]; for each community code in ``hidden_extra`` one more row (its values + the
    given offset) that the writer hides, placed above or below its visible row. Returns (rows, hidden indexes)."""
    rows, hidden = [], []
    for street, name, code in sample["rows"]:
        cur = [street, name, *[sample["value"][(code, IND[h])] for h in inds]]
        if hidden_extra and code in hidden_extra:
            stale = [street, name, *[v + hidden_extra[code] for v in cur[2:]]]
            pair = [stale, cur] if hidden_first else [cur, stale]
            hidden.append(len(rows) + (0 if hidden_first else 1))
            rows.extend(pair)
        else:
            rows.append(cur)
    return rows, hidden


def _xlsx(header, rows, hidden_rows=(), hidden_cols=()):
    wb = Workbook()
    ws = wb.active
    ws.append([TITLE])
    ws.append(header)
    for r in rows:
        ws.append(r)
    for i in hidden_rows:
        ws.row_dimensions[i + 3].hidden = True
    for c in hidden_cols:
        ws.column_dimensions[chr(65 + c)].hidden = True
    return wb


def _xls(header, rows, hidden_rows=(), hidden_cols=()):
    book = xlwt.Workbook(encoding="utf-8")
    ws = book.add_sheet("2024年第三季度")
    ws.write(0, 0, TITLE)
    for c, h in enumerate(header):
        ws.write(1, c, h)
    for r, row in enumerate(rows, 2):
        for c, v in enumerate(row):
            ws.write(r, c, v)
    for i in hidden_rows:
        ws.row(i + 2).hidden = True
    for c in hidden_cols:
        ws.col(c).hidden = True
    return book


def _ods(header, rows, hidden_rows=(), hidden_cols=()):
    return _ods_bytes([("2024年第三季度", [[TITLE], header, *rows],
                        {"hidden_rows": {i + 2 for i in hidden_rows}, "hidden_cols": set(hidden_cols)})])


WRITERS = {"xlsx": _xlsx, "xls": _xls, "ods": _ods}
HEADER = ["街道", "社区名称", "志愿者组织数", "群众文体队伍数"]
INDS = ["志愿者组织数", "群众文体队伍数"]


def _two_codes(sample):
    """Two communities whose stale copies are hidden: one of the two 新村社区 (street needed) and another."""
    xincun = [c for _, n, c in sample["rows"] if n == "新村社区"]
    other = next(c for _, n, c in sample["rows"] if n != "新村社区")
    return [xincun[0], other]


# ------------------------------------------------------------------ hidden rows
@pytest.mark.parametrize("fmt", ["xlsx", "xls", "ods"])
@pytest.mark.parametrize("hidden_first", [False, True])
def test_a_hidden_stale_row_never_loads_and_the_visible_row_does(tmp_path, sample, fmt, hidden_first):
    codes = _two_codes(sample)
    rows, hidden = _grid_rows(sample, INDS, {c: STALE for c in codes}, hidden_first)
    _, staged, q, _ = _ingest(tmp_path, {f"建邺区_复用表.{fmt}": WRITERS[fmt](HEADER, rows, hidden)})
    assert _loaded(staged) == _expected(sample, inds=["volunteer_orgs", "culture_teams"])
    assert staged.height == 2 * len(sample["rows"])
    assert _reasons(q) == {"hidden_duplicate_row": 2 * len(codes)}
    hidden_cells = {f"{col}{i + 3}" for i in hidden for col in "CD"}
    assert set(q["source_cell"]) == hidden_cells
    msg = q.sort("source_cell")["message"][0]
    assert "隐藏的单元格" in msg and "与可见的" in msg and "取可见的" in msg


@pytest.mark.parametrize("fmt", ["xlsx", "xls", "ods"])
def test_a_hidden_row_without_a_visible_copy_still_loads(tmp_path, sample, fmt):
    rows, _ = _grid_rows(sample, INDS)
    summaries, staged, q, _ = _ingest(tmp_path, {f"建邺区_筛选.{fmt}": WRITERS[fmt](HEADER, rows, [0, 3])})
    assert _loaded(staged) == _expected(sample, inds=["volunteer_orgs", "culture_teams"]) and q.height == 0
    assert any("含隐藏行 3,6（仍读取" in n for n in summaries[0].notes), summaries[0].notes


@pytest.mark.parametrize("fmt", ["xlsx", "xls", "ods"])
def test_a_hidden_stale_column_and_a_hidden_stale_row_together(tmp_path, sample, fmt):
    header = ["街道", "社区名称", "志愿者组织数", "志愿者组织数"]
    codes = _two_codes(sample)
    rows = []
    hidden = []
    for street, name, code in sample["rows"]:
        v = sample["value"][(code, "volunteer_orgs")]
        rows.append([street, name, v, v + 7])          # D is last quarter's column, hidden
        if code in codes:
            hidden.append(len(rows))
            rows.append([street, name, v + STALE, v + STALE + 7])
    _, staged, q, _ = _ingest(tmp_path, {f"建邺区_双隐藏.{fmt}": WRITERS[fmt](header, rows, hidden, [3])})
    assert _loaded(staged) == _expected(sample, inds=["volunteer_orgs"])
    assert staged.height == len(sample["rows"])
    assert _reasons(q) == {"hidden_duplicate_column": len(rows), "hidden_duplicate_row": len(codes)}


# ------------------------------------------------------------------ the duplicate rule in every shape
def _conflict_files(sample, code, delta):
    """The same community reported twice, visible both times, in a wide xlsx, a long CSV and JSON records."""
    street, name = next((s, n) for s, n, c in sample["rows"] if c == code)
    v = sample["value"][(code, "volunteer_orgs")]
    wide_rows = [[s, n, sample["value"][(c, "volunteer_orgs")]] for s, n, c in sample["rows"]]
    wide_rows.append([street, name, v + delta])
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["街道", "社区", "指标", "数值", "期间"])
    for s, n, c in sample["rows"]:
        w.writerow([s, n, "志愿者组织数", sample["value"][(c, "volunteer_orgs")], "2024年第三季度"])
    w.writerow([street, name, "志愿者组织数", v + delta, "2024年第三季度"])
    recs = [{"街道": s, "社区": n, "指标": "志愿者组织数", "数值": sample["value"][(c, "volunteer_orgs")]}
            for s, n, c in sample["rows"]]
    recs.append({"街道": street, "社区": name, "指标": "志愿者组织数", "数值": v + delta})
    return {"wide.xlsx": _xlsx(["街道", "社区名称", "志愿者组织数"], wide_rows),
            "long.csv": buf.getvalue(),
            "records.json": json.dumps({"期间": "2024年第三季度", "记录": recs}, ensure_ascii=False)}


@pytest.mark.parametrize("shape", ["wide.xlsx", "long.csv", "records.json"])
def test_two_visible_copies_with_different_values_are_both_refused(tmp_path, sample, shape):
    code = _two_codes(sample)[0]
    files = _conflict_files(sample, code, 3)
    _, staged, q, _ = _ingest(tmp_path, {f"建邺区_{shape}": files[shape]})
    want = _expected(sample, inds=["volunteer_orgs"])
    del want[(code, "volunteer_orgs")]                      # neither copy: never "first wins"
    assert _loaded(staged) == want
    assert _reasons(q) == {"conflicting_duplicate": 2}
    v = sample["value"][(code, "volunteer_orgs")]
    msg = q["message"][0]
    assert "数值不同" in msg and f"“{v}”" in msg and f"“{v + 3}”" in msg
    assert all(c in msg for c in q["source_cell"])          # the message names both cells


@pytest.mark.parametrize("shape", ["wide.xlsx", "long.csv", "records.json"])
def test_two_copies_with_equal_values_load_once(tmp_path, sample, shape):
    code = _two_codes(sample)[0]
    files = _conflict_files(sample, code, 0)
    _, staged, q, _ = _ingest(tmp_path, {f"建邺区_{shape}": files[shape]})
    assert _loaded(staged) == _expected(sample, inds=["volunteer_orgs"])
    assert staged.height == len(sample["rows"])
    assert _reasons(q) == {"duplicate_in_file": 1}
    loaded_cell = staged.filter(pl.col("community_code") == code)["source_cell"][0]
    msg = q["message"][0]
    assert "与已入库的" in msg and f"{loaded_cell} 数值相同，只入库一次" in msg and q["source_cell"][0] in msg


# ------------------------------------------------------------------ OpenDocument spreadsheets
def test_ods_with_merged_street_cells_title_offset_and_a_hidden_sheet(tmp_path, sample):
    rows = [[TITLE], ["街道", "社区名称", "志愿者组织数", "群众文体队伍数"]]
    merges = {(0, 0): (1, 4)}
    for street in ("南湖街道", "兴隆街道"):
        members = [(n, c) for s, n, c in sample["rows"] if s == street]
        merges[(len(rows), 0)] = (len(members), 1)
        for i, (name, code) in enumerate(members):
            rows.append([street if i == 0 else None, name, sample["value"][(code, "volunteer_orgs")],
                         sample["value"][(code, "culture_teams")]])
    stale = [["社区名称", "志愿者组织数"]] + [[n, 999] for _, n, _ in sample["rows"]]
    data = _ods_bytes([("2024年第三季度", rows, {"merges": merges, "lead_rows": 2, "lead_cols": 1}),
                       ("上季度", stale, {"hidden_sheet": True})])
    summaries, staged, q, _ = _ingest(tmp_path, {"建邺区_合并.ods": data})
    assert _loaded(staged) == _expected(sample, inds=["volunteer_orgs", "culture_teams"]) and q.height == 0
    assert staged.height == 2 * len(sample["rows"])
    assert staged["source_cell"].str.slice(0, 1).unique().sort().to_list() == ["D", "E"]   # B3 origin kept
    assert min(int(c[1:]) for c in staged["source_cell"]) == 5
    assert "跳过隐藏工作表 上季度" in summaries[0].notes
    assert summaries[0].file_format == "ods"


def _hand_ods(content: str, extra: dict | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet", compress_type=zipfile.ZIP_STORED)
        z.writestr("META-INF/manifest.xml", '<?xml version="1.0"?><manifest:manifest xmlns:manifest='
                   '"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"/>')
        z.writestr("content.xml", content, compress_type=zipfile.ZIP_DEFLATED)
        for k, v in (extra or {}).items():
            z.writestr(k, v, compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()


NS = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
      'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
      'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
      'xmlns:calcext="urn:org:documentfoundation:names:experimental:calc:xmlns:calcext:1.0"')


def _content(rows_xml: str, doctype: str = "") -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?>{doctype}<office:document-content {NS}><office:body>'
            f'<office:spreadsheet><table:table table:name="表1">{rows_xml}</table:table></office:spreadsheet>'
            f'</office:body></office:document-content>')


def _s(text):
    return f'<table:table-cell office:value-type="string"><text:p>{text}</text:p></table:table-cell>'


def test_ods_error_cells_and_formulas_without_a_value_are_quarantined_not_read_as_blank(tmp_path, sample):
    (s1, n1, c1), (s2, n2, c2), (s3, n3, c3) = sample["rows"][:3]
    rows = (f'<table:table-row>{_s("街道")}{_s("社区名称")}{_s("志愿者组织数")}</table:table-row>'
            f'<table:table-row>{_s(s1)}{_s(n1)}<table:table-cell office:value-type="float" '
            f'office:value="{sample["value"][(c1, "volunteer_orgs")]}"/></table:table-row>'
            f'<table:table-row>{_s(s2)}{_s(n2)}<table:table-cell table:formula="of:=1/0" office:value-type="string" '
            f'office:string-value="" calcext:value-type="error"><text:p>#DIV/0!</text:p></table:table-cell>'
            f'</table:table-row>'
            f'<table:table-row>{_s(s3)}{_s(n3)}<table:table-cell table:formula="of:=[.C2]*2"/></table:table-row>'
            f'<table:table-row table:number-rows-repeated="1048000"><table:table-cell '
            f'table:number-columns-repeated="1024"/></table:table-row>')
    _, staged, q, _ = _ingest(tmp_path, {"建邺区_公式.ods": _hand_ods(_content(rows))})
    assert _loaded(staged) == {(c1, "volunteer_orgs"): float(sample["value"][(c1, "volunteer_orgs")])}
    got = {c: (r, t) for c, r, t in q.join(pl.DataFrame({"source_cell": ["C3", "C4"]}), on="source_cell")
           .select("source_cell", "reason_code", "message").iter_rows()}
    assert q.height == 2 and got["C3"][0] == "formula_error" and got["C4"][0] == "formula_no_cache"


def test_ods_repeat_counts_beyond_the_limits_are_too_large_before_calamine_reads(tmp_path):
    huge_rows = _content(f'<table:table-row>{_s("社区名称")}</table:table-row>'
                         f'<table:table-row table:number-rows-repeated="1000000000">{_s("新村社区")}'
                         f'</table:table-row>')
    huge_cols = _content(f'<table:table-row>{_s("社区名称")}<table:table-cell office:value-type="float" '
                         f'office:value="1" table:number-columns-repeated="2000000000"/></table:table-row>')
    bomb = _content("<table:table-row>" + _s("社区名称") + "</table:table-row>"
                    + "<!--" + "x" * (8 << 20) + "-->")
    for name, data in {"行.ods": _hand_ods(huge_rows), "列.ods": _hand_ods(huge_cols),
                       "炸弹.ods": _hand_ods(bomb)}.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(FileRejected) as e:
            read_file(p)
        assert e.value.reason == "too_large", (name, e.value.message)
    summaries, *_ = _ingest(tmp_path, {"建邺区_行.ods": _hand_ods(huge_rows)})
    assert summaries[0].status == "rejected" and summaries[0].reason_code == "too_large"
    assert "工作表 第 1 个工作表 的行数 1,000,000,001 行 超过上限" in summaries[0].message


def test_ods_with_entity_declarations_is_refused_unparsed(tmp_path):
    laughs = ('<!DOCTYPE office:document-content [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
              '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>')
    p = tmp_path / "实体.ods"
    p.write_bytes(_hand_ods(_content(f'<table:table-row>{_s("社区名称&c;")}</table:table-row>', laughs)))
    with pytest.raises(FileRejected) as e:
        read_file(p)
    assert e.value.reason == "file_unreadable" and "实体声明" in e.value.message


# ------------------------------------------------------------------ file types
def test_workbooks_under_an_old_extension_are_read_as_what_they_are(tmp_path, sample):
    rows, _ = _grid_rows(sample, INDS)
    buf = io.BytesIO()
    _xlsx(HEADER, rows).save(buf)
    files = {"建邺区_其实是xlsx.xls": buf.getvalue(), "建邺区_其实是ods.et": _ods(HEADER, rows)}
    summaries, staged, q, _ = _ingest(tmp_path, files)
    assert {s.status for s in summaries} == {"loaded"}
    assert q.height == 0 and staged.height == 2 * 2 * len(sample["rows"])
    assert sorted(s.file_format for s in summaries) == ["ods", "xlsx"]
    assert any("按 xlsx 读取" in n for s in summaries for n in s.notes)


def test_ods_is_named_by_its_mimetype_and_a_renamed_document_is_refused(tmp_path, sample):
    rows, _ = _grid_rows(sample, INDS)
    ods = tmp_path / "a.ods"
    ods.write_bytes(_ods(HEADER, rows))
    assert real_kind(ods) == "ods"
    odt = tmp_path / "报告.ods"
    with zipfile.ZipFile(odt, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.text", compress_type=zipfile.ZIP_STORED)
        z.writestr("content.xml", "<x/>")
    with pytest.raises(FileRejected) as e:
        read_file(odt)
    assert e.value.reason == "wrong_file_type" and "OpenDocument 文本" in e.value.message
    not_zip = tmp_path / "表.ods"
    not_zip.write_text("社区名称,志愿者组织数\n", encoding="utf-8")
    with pytest.raises(FileRejected) as e:
        read_file(not_zip)
    assert e.value.reason == "file_unreadable" and "不是有效的 ods 文件" in e.value.message
    truncated = tmp_path / "截断.ods"
    truncated.write_bytes(ods.read_bytes()[:-200])
    with pytest.raises(FileRejected) as e:
        read_file(truncated)
    assert e.value.reason == "file_unreadable", e.value.message


def test_an_xls_that_is_a_web_page_or_delimited_text(tmp_path, sample):
    """Reporting systems save HTML tables, Excel 2003 XML and tab-separated text under .xls: text is read as the
    table it is (GBK or UTF-16 alike), the others are refused with what they really are."""
    rows = [(n, sample["value"][(c, "volunteer_orgs")]) for s, n, c in sample["rows"] if s == "兴隆街道"]
    tab = f"{TITLE}\n街道\t社区名称\t志愿者组织数\n" + "".join(f"兴隆街道\t{n}\t{v}\n" for n, v in rows)
    files = {"建邺区_系统导出.xls": tab.encode("gbk"), "建邺区_系统导出2.et": tab.encode("utf-16"),
             "建邺区_网页.xls": f"<html><body><table><tr><td>社区名称</td></tr></table>{TITLE}</body></html>".encode(),
             "建邺区_xml.xls": ('<?xml version="1.0"?><?mso-application progid="Excel.Sheet"?>'
                               '<Workbook xmlns="urn:schemas-microsoft-com:office:spreadsheet"/>').encode()}
    summaries, staged, q, _ = _ingest(tmp_path, files)
    by = {s.source_file.split("/")[-1]: s for s in summaries}
    assert by["建邺区_网页.xls"].reason_code == "unsupported_format" and "网页（HTML）表格" in by["建邺区_网页.xls"].message
    assert by["建邺区_xml.xls"].reason_code == "unsupported_format" and "SpreadsheetML" in by["建邺区_xml.xls"].message
    assert by["建邺区_系统导出.xls"].status == by["建邺区_系统导出2.et"].status == "loaded"
    codes = [c for s, n, c in sample["rows"] if s == "兴隆街道"]
    assert staged.height == 2 * len(codes) and _reasons(q) == {"unsupported_format": 2}   # the two file rows
    assert _loaded(staged) == _expected(sample, codes, ["volunteer_orgs"])
