"""Survey files -> a long frame of cells with provenance, plus file context (title lines, table unit).

Supported: xlsx (title/填报 block, multi-row merged headers, 小计/合计 rows, 填表人/注 footers, one sheet per
period), CSV/TSV/TXT in any encoding the decode ladder reads, JSON (long records, wide records, nested).

Output columns of ``read_file(...).cells`` (all String except source_row):
    sheet, source_row, source_column, source_cell, street_raw, community_raw, header_raw, period_raw, raw_text
"""

import csv
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

import fastexcel
import polars as pl

from .catalogue import HEADER_SEP, HEADER_UNITS
from .text import DecodeError, clean_text, decode_bytes, mojibake_ratio, squash

CELL_COLUMNS = ["sheet", "source_row", "source_column", "source_cell", "street_raw", "community_raw",
                "header_raw", "period_raw", "raw_text"]
CELL_SCHEMA = {c: pl.String for c in CELL_COLUMNS} | {"source_row": pl.Int32}

COMMUNITY_HEADERS = {"社区名称", "社区", "社区(居委会)", "居委会", "居委会名称", "社区居委会", "社区居委会名称", "单位名称",
                     "社区名", "名称"}
STREET_HEADERS = {"街道", "所属街道", "街道名称", "街道办事处", "街道(镇)", "街镇"}
PERIOD_HEADERS = {"期间", "统计期间", "报告期", "季度", "月份", "统计季度", "时间"}
SKIP_HEADERS = {"序号", "编号", "备注", "区", "所属区", "区县", "社区代码", "代码"}
SUBTOTAL = re.compile(r"^(合计|总计|小计|全区|全街|全市|累计)$|小计$|合计$")
FOOTER = re.compile(r"^(填表人|审核人|负责人|制表|注|说明|备注)[:：\s]")
UNIT_LINE = re.compile(r"(?:^|[\s(（])(?:金额|计量)?单位[:：]\s*([^\s，,;；)）]+)")
REPORTER = re.compile(r"填报单位[:：]\s*([^\s，,;；]+)")


class FileRejected(Exception):
    """A file-level failure. ``reason`` is a quarantine reason code, ``where`` names sheet/cell when known."""

    def __init__(self, reason: str, message: str, where: str = ""):
        super().__init__(message)
        self.reason, self.message, self.where = reason, message, where


@dataclass
class FileRead:
    cells: pl.DataFrame
    file_format: str
    encoding: str | None = None
    title_lines: list[str] = field(default_factory=list)   # text above tables, all sheets (district hint)
    sheet_titles: dict[str, list[str]] = field(default_factory=dict)  # per sheet: its own title block
    sheet_units: dict[str, str] = field(default_factory=dict)         # per sheet: its 单位：万元 line
    table_unit: str = ""
    reporter: str = ""
    notes: list[str] = field(default_factory=list)
    problems: list[dict] = field(default_factory=list)      # cell-level problems found while reading
    subtotals: list[pl.DataFrame] = field(default_factory=list)  # 小计 rows kept aside for the sum check


def _community_header(v) -> bool:
    """社区（居委会）名称, 社区 名称, 社區名稱, 【社区名称】: brackets and (全角) spaces do not change the header."""
    h = squash(v)
    return h in COMMUNITY_HEADERS or re.sub(r"[()\[\]【】〔〕]", "", h) in COMMUNITY_HEADERS


def col_letter(idx: int) -> str:
    s, idx = "", idx + 1
    while idx:
        idx, r = divmod(idx - 1, 26)
        s = chr(65 + r) + s
    return s


def col_index(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n - 1


def _record_titles(fr: FileRead, sheet: str, titles: list[str]) -> None:
    """The lines above a sheet's table: its own period source, its 单位：万元 line and its 填报单位."""
    fr.title_lines.extend(titles)
    fr.sheet_titles[sheet] = titles
    for line in titles:
        m = UNIT_LINE.search(line)
        if m and sheet not in fr.sheet_units:
            fr.sheet_units[sheet] = m.group(1)
            fr.table_unit = fr.table_unit or m.group(1)
        m = REPORTER.search(line)
        if m and not fr.reporter:
            fr.reporter = m.group(1)


# ------------------------------------------------------------------ table -> cells (wide tables)
def _table_to_cells(df: pl.DataFrame, sheet: str, merged: list[tuple[int, int, int, int]], a1: bool,
                    fr: FileRead, titles_above: list[str] | None = None, row_offset: int = 0,
                    col_offset: int = 0) -> pl.DataFrame:
    """Find the header rows of a wide table in ``df`` (all-String columns, no header), rebuild merged headers,
    drop subtotal/footer rows and unpivot to long cells. Only the first rows (title block and header) are
    handled in Python; the body is filtered and unpivoted column-wise by polars."""
    width = df.width
    df = df.rename({c: f"c{i}" for i, c in enumerate(df.columns)})
    top = [list(r) for r in df.head(30).iter_rows()]
    n_top = len(top)
    for r0, c0, r1, c1 in merged:  # top-left value copied right and down, header area only
        if r0 >= n_top:
            continue
        v = top[r0][c0] if c0 < width else None
        for r in range(r0, min(r1 + 1, n_top)):
            for c in range(c0, min(c1 + 1, width)):
                if (r, c) != (r0, c0):
                    top[r][c] = v
    header_row = comm_col = None
    for r in range(min(n_top, 20)):
        for c, v in enumerate(top[r]):
            if v is not None and _community_header(v):
                header_row, comm_col = r, c
                break
        if header_row is not None:
            break
    if header_row is None:
        transposed = _transposed_to_cells(top, df, sheet, a1, fr, titles_above, row_offset, col_offset)
        if transposed is not None:
            return transposed
        raise FileRejected("no_header", f"工作表 {sheet or '(CSV)'} 前20行内找不到“社区名称/居委会”表头，"
                                        f"也不是以社区为列的转置表", sheet)
    _record_titles(fr, sheet, list(titles_above or []) + [" ".join(clean_text(v) for v in top[r] if v)
                                                          for r in range(header_row)])
    last_header = header_row  # header depth: following rows whose community cell repeats the header
    while last_header + 1 < n_top and top[last_header + 1][comm_col] is not None and \
            _community_header(top[last_header + 1][comm_col]):
        last_header += 1
    # a last header row of units only (个 / % / 万元, H01) is each column's unit, not another header level
    unit_row = None
    if last_header > header_row:
        vals = [squash(top[last_header][c]) for c in range(width)
                if c != comm_col and top[last_header][c] is not None and str(top[last_header][c]).strip()
                and top[last_header][c] != top[last_header - 1][c]]   # merged key columns repeat the row above
        if vals and all(v in HEADER_UNITS or v in ("单位", "计量单位") for v in vals):
            unit_row = last_header
    headers = []
    for c in range(width):
        parts: list[str] = []
        for r in range(header_row, (unit_row if unit_row is not None else last_header + 1)):
            v = top[r][c]
            if v is not None and str(v).strip():
                t = clean_text(v)
                if not parts or parts[-1] != t:
                    parts.append(t)
        unit = top[unit_row][c] if unit_row is not None else None
        if parts and unit is not None and squash(unit) in HEADER_UNITS and squash(unit) != squash(parts[-1]) \
                and not squash(parts[-1]).endswith(f"({squash(unit)})"):
            parts[-1] = f"{parts[-1]}({squash(unit)})"
        headers.append(HEADER_SEP.join(parts))
    leaf = [squash(h.split(HEADER_SEP)[-1]) if h else "" for h in headers]
    street_col = next((c for c in range(width) if leaf[c] in STREET_HEADERS), None)
    period_col = next((c for c in range(width) if leaf[c] in PERIOD_HEADERS), None)
    value_cols = [c for c in range(width)
                  if headers[c] and c not in (comm_col, street_col, period_col) and leaf[c] not in SKIP_HEADERS]

    body = df.slice(last_header + 1).with_row_index("_r", offset=last_header + 2 + row_offset)  # 1-based rows
    first = pl.coalesce([pl.col(f"c{i}").str.strip_chars().replace("", None) for i in range(width)])
    comm = pl.col(f"c{comm_col}").str.replace_all(r"\s+", "")
    street = pl.col(f"c{street_col}") if street_col is not None else pl.lit(None, pl.String)
    body = body.with_columns(first.alias("_first"))
    body = body.filter(pl.col("_first").is_not_null())
    is_footer = pl.col("_first").str.contains(FOOTER.pattern)
    fr.notes.extend(body.filter(is_footer)["_first"].to_list())
    # a row without a community name is kept (its cells are quarantined as no_community), unless it is a
    # subtotal: 合计/小计 in its first cell, its community cell or its street cell
    is_subtotal = (pl.col("_first").str.replace_all(r"\s+", "").str.contains(SUBTOTAL.pattern)
                   | comm.str.contains(SUBTOTAL.pattern).fill_null(False)
                   | street.str.replace_all(r"\s+", "").str.contains(SUBTOTAL.pattern).fill_null(False))
    sub = body.filter(is_subtotal & ~is_footer)
    if sub.height:  # kept aside: the members of a 小计 row should add up to it (checked after parsing)
        says = lambda e: pl.when(e.str.contains(SUBTOTAL.pattern).fill_null(False)).then(e)  # noqa: E731
        label = pl.coalesce(says(street.str.replace_all(r"\s+", "")), says(comm), says(pl.col("_first")),
                            pl.col("_first"))
        fr.subtotals.append(sub.select(label.alias("label"), *[
            pl.col(f"c{c}").alias(headers[c]) for c in value_cols]).with_columns(pl.lit(sheet).alias("sheet")))
    body = body.filter(~is_footer & ~is_subtotal)
    period = pl.col(f"c{period_col}").str.strip_chars() if period_col is not None else pl.lit(None, pl.String)
    if period_col is not None and leaf[period_col] in ("月份", "月"):      # a 月份 column holding 7 means 7月
        period = pl.when(period.str.contains(r"^\d{1,2}$")).then(period + "月").otherwise(period)
    if period_col is not None and leaf[period_col] in ("季度", "统计季度"):  # a 季度 column holding 3 means 第3季度
        period = pl.when(period.str.contains(r"^[1-4]$")).then("第" + period + "季度").otherwise(period)
    base = [pl.col("_r").cast(pl.Int32).alias("source_row"), pl.col(f"c{comm_col}").alias("community_raw"),
            street.alias("street_raw"), period.alias("period_raw")]
    wide = body.select(*base, *[pl.col(f"c{c}") for c in value_cols])
    long = wide.unpivot(index=["source_row", "community_raw", "street_raw", "period_raw"],
                        on=[f"c{c}" for c in value_cols], variable_name="_col", value_name="raw_text")
    col_idx = long["_col"].str.slice(1).cast(pl.Int32)
    letters = {c: col_letter(c + col_offset) for c in value_cols}
    long = long.with_columns(
        pl.lit(sheet).alias("sheet"),
        col_idx.replace_strict({c: letters[c] if a1 else str(c + 1) for c in value_cols}, return_dtype=pl.String)
        .alias("source_column"),
        col_idx.replace_strict({c: headers[c] for c in value_cols}, return_dtype=pl.String).alias("header_raw"),
    ).with_columns(
        (pl.col("source_column") + pl.col("source_row").cast(pl.String)).alias("source_cell") if a1 else
        (pl.lit("R") + pl.col("source_row").cast(pl.String) + pl.lit("C") + pl.col("source_column")).alias("source_cell")
    )
    return long.select(CELL_COLUMNS).cast(CELL_SCHEMA)


COMMUNITY_NAME = re.compile(r".{1,12}(社区|居委会|居民委员会)(\(筹\))?$")
LABEL_HEADERS = {"指标", "项目", "指标名称", "项目名称", "统计指标", "内容"}
UNIT_HEADERS = {"单位", "计量单位"}


def _transposed_to_cells(top: list[list], df: pl.DataFrame, sheet: str, a1: bool, fr: FileRead,
                         titles_above: list[str] | None, row_offset: int, col_offset: int = 0
                         ) -> pl.DataFrame | None:
    """Communities as columns, indicators as rows (H25). The header row is the first row where at least two
    cells name communities (…社区/…居委会); the label column is the one headed 指标/项目 (else the first);
    a 单位 column gives each row's unit; a row labelled 街道 above the header gives each column's street."""
    width = df.width
    for r in range(min(len(top), 20)):
        names = [c for c in range(width) if top[r][c] is not None and COMMUNITY_NAME.match(squash(top[r][c]))]
        if len(names) >= 2:
            break
    else:
        return None
    label_col = next((c for c in range(width) if top[r][c] is not None and squash(top[r][c]) in LABEL_HEADERS), 0)
    unit_col = next((c for c in range(width) if top[r][c] is not None and squash(top[r][c]) in UNIT_HEADERS), None)
    # every other named column is a community: a name without 社区 (生产路) is resolved or quarantined, never
    # dropped; 合计/小计 columns are subtotals
    names = [c for c in range(width) if c not in (label_col, unit_col) and top[r][c] is not None
             and squash(top[r][c]) and not SUBTOTAL.search(squash(top[r][c]))]
    street_row = next((rr for rr in range(r) if top[rr][label_col] is not None
                       and squash(top[rr][label_col]) in STREET_HEADERS), None)
    _record_titles(fr, sheet, list(titles_above or []) + [" ".join(clean_text(v) for v in top[rr] if v)
                                                          for rr in range(r) if rr != street_row])
    fr.notes.append(f"工作表 {sheet or '(CSV)'} 按转置表读取：社区为列，指标为行")
    body = df.slice(r + 1).with_row_index("_r", offset=r + 2 + row_offset)
    label = pl.col(f"c{label_col}").str.strip_chars()
    body = body.filter(label.is_not_null() & (label != ""))
    is_footer = label.str.contains(FOOTER.pattern)
    fr.notes.extend(body.filter(is_footer)[f"c{label_col}"].to_list())
    body = body.filter(~is_footer)
    unit = (pl.col(f"c{unit_col}").fill_null("") if unit_col is not None else pl.lit(""))
    header = pl.when(unit != "").then(label + "(" + unit + ")").otherwise(label)
    wide = body.select(pl.col("_r").cast(pl.Int32).alias("source_row"), header.alias("header_raw"),
                       *[pl.col(f"c{c}") for c in names])
    long = wide.unpivot(index=["source_row", "header_raw"], on=[f"c{c}" for c in names],
                        variable_name="_col", value_name="raw_text")
    col_idx = long["_col"].str.slice(1).cast(pl.Int32)
    streets = {c: (top[street_row][c] if street_row is not None else None) for c in names}
    long = long.with_columns(
        pl.lit(sheet).alias("sheet"),
        col_idx.replace_strict({c: col_letter(c + col_offset) if a1 else str(c + 1) for c in names},
                               return_dtype=pl.String)
        .alias("source_column"),
        col_idx.replace_strict({c: str(top[r][c]) for c in names}, return_dtype=pl.String).alias("community_raw"),
        col_idx.replace_strict(streets, return_dtype=pl.String).alias("street_raw"),
        pl.lit(None, pl.String).alias("period_raw"),
    ).with_columns(
        (pl.col("source_column") + pl.col("source_row").cast(pl.String)).alias("source_cell") if a1 else
        (pl.lit("R") + pl.col("source_row").cast(pl.String) + pl.lit("C") + pl.col("source_column")).alias("source_cell")
    )
    return long.select(CELL_COLUMNS).cast(CELL_SCHEMA)


# ------------------------------------------------------------------ xlsx
_MERGE = re.compile(rb'<mergeCell ref="([A-Z]+)(\d+):([A-Z]+)(\d+)"')
# an error cell (#DIV/0!, #N/A): fastexcel reads it as empty, which would make an error look like a blank
_ERROR_CELL = re.compile(rb'<c r="([A-Z]+\d+)"[^>]*\bt="e"[^>]*>\s*(?:<f[^>]*?(?:/>|>[^<]*</f>)\s*)?<v>([^<]*)</v>')
_COL = re.compile(rb'<col\s[^>]*>')
# fastexcel's grid starts at the first row and column that hold a value: cell references are offset by that origin
_VALUE_CELL = re.compile(rb'<c r="([A-Z]+)(\d+)"[^>]*>\s*(?:<f[^>]*?(?:/>|>[^<]*</f>)\s*)?(?:<v>[^<]|<is>)')
_ATTR = re.compile(rb'(\w+)="([^"]*)"')
# a formula cell whose value element is missing or empty: <f>..</f></c>, <f>..</f><v/></c>, <f t="shared" si="0"/>
_FORMULA_NO_VALUE = re.compile(
    rb'<c r="([A-Z]+\d+)"[^>]*>\s*<f[^>]*?(?:/>|>[^<]*</f>)\s*(?:<v\s*/>|<v>\s*</v>)?\s*</c>')


def _xlsx_structure(path: Path) -> dict[str, dict]:
    """Per sheet name: merged ranges, hidden columns and formula cells without a cached value.

    Read from the sheet XML with byte regexes because neither fastexcel nor openpyxl's streaming mode
    exposes merged ranges, and openpyxl's full mode builds a Python object per cell (minutes at 100k rows)."""
    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
          "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships"}
    out: dict[str, dict] = {}
    with zipfile.ZipFile(path) as z:
        wb = ElementTree.fromstring(z.read("xl/workbook.xml"))
        rels = ElementTree.fromstring(z.read("xl/_rels/workbook.xml.rels"))
        targets = {r.get("Id"): r.get("Target") for r in rels}
        for s in wb.find("m:sheets", ns):
            rid = s.get(f"{{{ns['r']}}}id")
            target = targets[rid].lstrip("/")
            part = target if target.startswith("xl/") else f"xl/{target}"
            xml = z.read(part)
            merged = [(int(m[1]) - 1, col_index(m[0].decode()), int(m[3]) - 1, col_index(m[2].decode()))
                      for m in _MERGE.findall(xml)]
            hidden = set()
            for tag in _COL.findall(xml):  # attribute order differs between writers
                a = dict(_ATTR.findall(tag))
                if a.get(b"hidden") in (b"1", b"true"):
                    hidden.update(range(int(a[b"min"]) - 1, int(a[b"max"])))
            no_value = [m.decode() for m in _FORMULA_NO_VALUE.findall(xml)]
            errors = {ref.decode(): v.decode() for ref, v in _ERROR_CELL.findall(xml)}
            refs = _VALUE_CELL.findall(xml)
            origin = (min(int(r) for _, r in refs) - 1, min(col_index(c.decode()) for c, _ in refs)) if refs else (0, 0)
            out[s.get("name")] = {"merged": merged, "hidden": hidden, "formula_no_value": no_value,
                                  "errors": errors, "origin": origin, "state": s.get("state") or "visible"}
    return out


def _xls_structure(path: Path) -> dict[str, dict]:
    """Per sheet of a legacy BIFF8 .xls (or a WPS .et saved as BIFF8): merged ranges, hidden columns and sheet
    visibility, read with xlrd (fastexcel 0.21 exposes only sheet visibility, not merged ranges or hidden
    columns). Values still come from fastexcel/calamine."""
    import xlrd

    out: dict[str, dict] = {}
    book = xlrd.open_workbook(str(path), formatting_info=True, on_demand=True)
    for sh in book.sheets():
        cells = [(r, c) for r in range(sh.nrows) for c in range(sh.ncols)
                 if sh.cell_type(r, c) not in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK)]
        origin = (min(r for r, _ in cells), min(c for _, c in cells)) if cells else (0, 0)
        out[sh.name] = {"merged": [(r0, c0, r1 - 1, c1 - 1) for r0, r1, c0, c1 in sh.merged_cells],
                        "hidden": {c for c, info in sh.colinfo_map.items() if info.hidden},
                        "formula_no_value": [], "errors": {}, "origin": origin,
                        "state": {0: "visible", 1: "hidden"}.get(sh.visibility, "veryhidden")}
    return out


def _short(e: BaseException) -> str:
    """The first line of a library's error, cut short: the message says what failed, not a traceback."""
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}：{first[:120]}"


def read_xls(path: Path) -> FileRead:
    return read_xlsx(path, legacy=True)


def read_xlsx(path: Path, legacy: bool = False) -> FileRead:
    fr = FileRead(cells=pl.DataFrame(schema=CELL_SCHEMA), file_format="xls" if legacy else "xlsx")
    try:
        structure = _xls_structure(path) if legacy else _xlsx_structure(path)
        reader = fastexcel.read_excel(str(path))
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError) as e:
        raise FileRejected("file_unreadable", f"不是有效的 xlsx 文件：{e}") from e
    except Exception as e:  # fastexcel raises its own error types for corrupt workbooks
        raise FileRejected("file_unreadable", f"xlsx 读取失败：{e}") from e
    frames = []
    for name in reader.sheet_names:
        st = structure.get(name, {"merged": [], "hidden": set(), "formula_no_value": [], "errors": {},
                                  "origin": (0, 0), "state": "visible"})
        if st["state"] != "visible":
            fr.notes.append(f"跳过隐藏工作表 {name}")
            continue
        try:
            df = reader.load_sheet(name, header_row=None, dtypes="string").to_polars()
        except Exception as e:  # fastexcel/calamine raise their own types for a corrupt sheet XML or cell
            raise FileRejected("file_unreadable", f"工作表 {name} 已损坏，无法读取（{_short(e)}）", name) from e
        if df.height == 0:
            continue
        try:
            r0, c0 = st["origin"]
            merged = [(a - r0, b - c0, c - r0, d - c0) for a, b, c, d in st["merged"]]
            cells = _table_to_cells(df.cast(pl.String), name, merged, True, fr, row_offset=r0, col_offset=c0)
        except FileRejected as e:
            if len(reader.sheet_names) > 1:
                fr.notes.append(f"工作表 {name}：{e.message}")
                continue
            raise
        if st["errors"]:
            cells = cells.with_columns(pl.col("source_cell").replace_strict(
                st["errors"], default=pl.col("raw_text"), return_dtype=pl.String).alias("raw_text"))
        if st["hidden"]:
            fr.notes.append(f"工作表 {name} 含隐藏列 {','.join(col_letter(c) for c in sorted(st['hidden']))}（仍读取）")
        if st["formula_no_value"]:
            bad = set(st["formula_no_value"])
            flagged = cells.filter(pl.col("source_cell").is_in(list(bad)))
            for row in flagged.iter_rows(named=True):
                fr.problems.append(row | {"reason_code": "formula_no_cache",
                                          "message": "公式没有缓存值（文件未经 Excel 计算保存），不按 0 读取"})
            cells = cells.filter(~pl.col("source_cell").is_in(list(bad)))
        frames.append(cells)
    if not frames:
        raise FileRejected("no_header", "没有任何工作表含可识别的社区表格")
    fr.cells = pl.concat(frames)
    return fr


# ------------------------------------------------------------------ csv / tsv / txt
# Only CR, LF and CRLF end a CSV row. str.splitlines() also splits on U+2028/U+2029, NEL (U+0085), VT, FF and
# \x1c-\x1e, which inside a cell are text: "5<U+2028>6" must stay one cell (and be rejected as not a number),
# and every later row keep its source_cell.
_ROW_BREAK = re.compile(r"\r\n|\r|\n")


def _csv_lines(text: str) -> list[str]:
    lines = _ROW_BREAK.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def read_delimited(path: Path) -> FileRead:
    data = path.read_bytes()
    try:
        text, enc = decode_bytes(data)
    except DecodeError as e:
        raise FileRejected("encoding_unknown", str(e)) from e
    if mojibake_ratio(text[:20000]) > 0.01:
        raise FileRejected("mojibake", f"文本含错位乱码字符（占 {mojibake_ratio(text[:20000]):.1%}），疑似 GBK 丢字节，拒收而不猜测")
    lines = _csv_lines(text)
    head = lines[:30]
    sep = "\t" if sum(line.count("\t") for line in head) > sum(line.count(",") for line in head) else ","
    # polars takes the column count from the first row it reads: a title line above the table would cut every
    # row to one field, so the table is read from its widest row and the lines above it become titles
    # a long cell (a 200,000-digit "number") is that cell's problem, not the file's: the csv module's 128 KB field
    # limit would reject the whole file here, so it is raised for this header scan (the value parser rejects the cell)
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    try:
        rows = list(csv.reader(head, delimiter=sep))
    except csv.Error as e:  # a field over the csv module's 128 KB limit, a NUL byte
        raise FileRejected("file_unreadable", f"CSV 前 30 行无法解析（{_short(e)}）") from e
    width = max((len(r) for r in rows), default=0)
    start = next((i for i, r in enumerate(rows) if len(r) == width), 0)
    titles = [clean_text(" ".join(c for c in r if c)) for r in rows[:start]]
    body = "\n".join(lines[start:])
    try:
        df = pl.read_csv(io.StringIO(body), separator=sep, has_header=False, infer_schema=False,
                         truncate_ragged_lines=True, quote_char='"')
    except pl.exceptions.PolarsError as e:
        raise FileRejected("file_unreadable", f"CSV 解析失败：{e}") from e
    fr = FileRead(cells=pl.DataFrame(schema=CELL_SCHEMA), file_format="tsv" if sep == "\t" else "csv", encoding=enc)
    fr.cells = _table_to_cells(df, "", [], False, fr, titles_above=titles, row_offset=start)
    return fr


# ------------------------------------------------------------------ json
LONG_KEYS = {
    "street": ("街道", "street", "所属街道"),
    "community": ("社区", "社区名称", "community", "居委会"),
    "indicator": ("指标", "指标名称", "indicator", "项目"),
    "period": ("期间", "period", "季度", "统计期间"),
    "value": ("数值", "值", "value", "填报值"),
    "unit": ("单位", "unit"),
}


def _pick(rec: dict, key: str):
    for k in LONG_KEYS[key]:
        if k in rec:
            return rec[k]
    return None


# A JSON number literal longer than this is rejected as number_too_long before Python converts it (int() refuses
# more than 4,300 digits with a ValueError; a 400-digit float is inf). No survey figure needs 300 characters.
JSON_MAX_NUMBER_CHARS = 300


class _NumberTooLong(ValueError):
    pass


def _json_number(kind):
    def parse(token: str):
        if len(token) > JSON_MAX_NUMBER_CHARS:
            raise _NumberTooLong(token)
        return kind(token)
    return parse


def read_json(path: Path) -> FileRead:
    try:
        return _read_json(path)
    except RecursionError as e:  # nesting deeper than Python's parser (and our walk over it) can follow
        raise FileRejected("json_too_deep", "JSON 嵌套层数过深（超过解析上限约 1000 层），不予读取") from e


def _read_json(path: Path) -> FileRead:
    data = path.read_bytes()
    try:
        text, enc = decode_bytes(data)
        doc = json.loads(text, parse_int=_json_number(int), parse_float=_json_number(float))
    except _NumberTooLong as e:
        raise FileRejected("number_too_long", f"JSON 中有 {len(str(e))} 个字符的数字（上限 {JSON_MAX_NUMBER_CHARS}），"
                                              f"开头为 {str(e)[:20]}…，不予读取") from e
    except (DecodeError, json.JSONDecodeError) as e:
        raise FileRejected("file_unreadable", f"JSON 解析失败：{e}") from e
    fr = FileRead(cells=pl.DataFrame(schema=CELL_SCHEMA), file_format="json", encoding=enc)
    context: dict = {}
    records = doc
    if isinstance(doc, dict):
        context = {k: v for k, v in doc.items() if not isinstance(v, (list, dict))}
        lists = [(k, v) for k, v in doc.items() if isinstance(v, list)]
        if not lists:
            raise FileRejected("no_records", "JSON 中没有记录数组")
        key, records = lists[0]
        fr.title_lines.extend(str(v) for v in context.values())
        fr.sheet_titles[""] = [clean_text(str(v)) for v in context.values()]
    if not isinstance(records, list):
        raise FileRejected("no_records", "JSON 顶层应为记录数组或含记录数组的对象")
    ctx_period = _pick(context, "period") if context else None
    ctx_street = _pick(context, "street") if context else None
    rows = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            fr.problems.append({"sheet": "", "source_row": i + 1, "source_column": None, "source_cell": f"[{i}]",
                                "street_raw": None, "community_raw": None, "header_raw": None, "period_raw": None,
                                "raw_text": str(rec)[:200], "reason_code": "bad_record", "message": "记录不是对象"})
            continue
        street = _pick(rec, "street") or ctx_street
        comm = _pick(rec, "community")
        period = _pick(rec, "period") or ctx_period
        ind = _pick(rec, "indicator")
        if ind is not None and not isinstance(ind, (dict, list)):  # long record
            val = _pick(rec, "value")
            unit = _pick(rec, "unit")
            raw = None if val is None else str(val)
            if raw is not None and unit and not raw.endswith(str(unit)):
                raw = f"{raw}{unit}"  # the unit key is part of the reading, for numbers and strings alike
            rows.append(("", i + 1, "数值", f"[{i}]", street, comm, str(ind), period, raw))
            continue
        nested = rec.get("values") if isinstance(rec.get("values"), dict) else ind
        items = nested.items() if isinstance(nested, dict) else [
            (k, v) for k, v in rec.items() if k not in sum(LONG_KEYS.values(), ())]
        for k, v in items:
            rows.append(("", i + 1, str(k), f"[{i}].{k}", street, comm, str(k), period,
                         None if v is None else str(v)))
    fr.cells = pl.DataFrame(rows, schema=CELL_SCHEMA, orient="row")
    return fr


READERS = {".xls": read_xls, ".et": read_xls, ".xlsx": read_xlsx, ".xlsm": read_xlsx, ".csv": read_delimited, ".tsv": read_delimited,
           ".txt": read_delimited, ".json": read_json}


def read_file(path: Path) -> FileRead:
    """Read one inbox file, or raise FileRejected with a precise reason. Every file of the inbox comes here
    (ingest.inventory skips none): hidden and Office lock files, empty files and unknown types are rejected
    with their own reasons, so each still gets a raw_file row."""
    if path.name.startswith("."):
        raise FileRejected("hidden_file", f"隐藏文件 {path.name}（文件名以“.”开头，通常由系统或编辑器生成），不读取")
    if path.name.startswith("~$"):
        raise FileRejected("lock_file", f"Office 临时锁定文件 {path.name}（有人正打开该工作簿），不读取")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise FileRejected("unsupported_format", f"不支持的文件类型 {path.suffix or '(无扩展名)'}"
                                                 f"（可读取：{'、'.join(sorted(READERS))}）")
    if path.stat().st_size == 0:
        raise FileRejected("empty_file", "文件为零字节")
    return reader(path)
