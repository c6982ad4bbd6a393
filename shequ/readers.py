"""Survey files -> a long frame of cells with provenance, plus file context (title lines, table unit).

Supported: xlsx, xls/et (BIFF8) and ods workbooks (title/填报 block, multi-row merged headers, 小计/合计 rows,
填表人/注 footers, one sheet per period, hidden rows, columns and sheets), CSV/TSV/TXT in any encoding the decode ladder reads, JSON (long records, wide records, nested).

Output columns of ``read_file(...).cells`` (String unless said):
    sheet, source_row (Int32), source_column, source_cell, street_raw, community_raw, header_raw, period_raw,
    raw_text, hidden (Boolean: the cell sits in a hidden column or a hidden row), block (the table's top-left cell when a sheet
    holds several tables), header_pos (where the cell's header sits: its column in a wide table, its row in a
    transposed one, its key in a record; two header positions of one table feeding one indicator are a clash)
"""

import csv
import io
import itertools
import json
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

import fastexcel
import polars as pl

from . import config, limits
from .catalogue import HEADER_SEP, HEADER_UNITS
from .privacy import mask_list
from .text import DecodeError, clean_text, decode_bytes, mojibake_ratio, squash

CELL_COLUMNS = ["sheet", "source_row", "source_column", "source_cell", "street_raw", "community_raw",
                "header_raw", "period_raw", "raw_text", "hidden", "block", "header_pos"]
CELL_SCHEMA = {c: pl.String for c in CELL_COLUMNS} | {"source_row": pl.Int32, "hidden": pl.Boolean}

COMMUNITY_HEADERS = {"社区名称", "社区", "社区(居委会)", "居委会", "居委会名称", "社区居委会", "社区居委会名称", "单位名称",
                     "社区名", "名称"}
STREET_HEADERS = {"街道", "所属街道", "街道名称", "街道办事处", "街道(镇)", "街镇"}
PERIOD_HEADERS = {"期间", "统计期间", "报告期", "季度", "月份", "统计季度", "时间"}
SKIP_HEADERS = {"序号", "编号", "备注", "区", "所属区", "区县", "社区代码", "代码"}
SUBTOTAL = re.compile(r"^(合计|总计|小计|全区|全街|全市|累计)$|小计$|合计$")
FOOTER = re.compile(r"^(填表人|填报人|审核人|复核人|审批人|负责人|联系人|统计人|制表人|经办人|制表|联系电话|电话|手机|注|说明|"
                    r"备注)[:：\s]")
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


def _within_limits(check, *args):
    """Run a resource-limit check (shequ/limits.py) before reading; over a limit the file is rejected."""
    try:
        return check(*args)
    except limits.TooLarge as e:
        raise FileRejected(e.reason, e.message, e.where) from e


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
    """The lines above a sheet's table: its own period source, its 单位：万元 line and its 填报单位. A second
    table further down the same sheet adds its own lines."""
    fr.title_lines.extend(titles)
    fr.sheet_titles.setdefault(sheet, []).extend(titles)
    for line in titles:
        m = UNIT_LINE.search(line)
        if m and sheet not in fr.sheet_units:
            fr.sheet_units[sheet] = m.group(1)
            fr.table_unit = fr.table_unit or m.group(1)
        m = REPORTER.search(line)
        if m and not fr.reporter:
            fr.reporter = m.group(1)


# a street named by the layout: a row holding only 南湖街道 (or 一、南湖街道), a sheet named 南湖街道, a title
# 建邺区南湖街道2024年第三季度… ; 各街道 / 全街道 name no street
STREET_ROW = r"^(?:[一二三四五六七八九十\d]+[、.．]\s*)?([\u4e00-\u9fff]{1,12}?(?:街道办事处|街道|镇))[:：]?$"
DISTRICT_ROW = r"^(?:[一二三四五六七八九十\d]+[、.．]\s*)?([\u4e00-\u9fff]{0,5}[^社\W\d_]区)[:：]?$"  # not …社区
TITLE_STREET = re.compile(r"[\u4e00-\u9fff]{2,16}?(?:街道办事处|街道|镇)")
# a month column under an indicator heading: 7月, 7月份, 2024年7月, 2024-07
MONTH_HEADER = re.compile(r"^(?:(?:19|20)\d{2}年)?(?:0?[1-9]|1[0-2])月份?$|^(?:19|20)\d{2}[-./](?:0?[1-9]|1[0-2])$")


def _street_of(text: str | None) -> str | None:
    if not text:
        return None
    m = re.match(STREET_ROW, squash(text))
    return m.group(1) if m else None


def _title_street(titles: list[str]) -> str | None:
    """The one street a title names (建邺区南湖街道2024年…); none when it names none, several, or 各街道."""
    found = {m.group(0) for t in titles for m in TITLE_STREET.finditer(squash(t))
             if not re.search(r"[各全所本该]|街道社区|^街道", m.group(0))}
    return found.pop() if len(found) == 1 else None


def _blank(v) -> bool:
    return v is None or not str(v).strip()


# ------------------------------------------------------------------ table -> cells (wide tables)
def _table_to_cells(df: pl.DataFrame, sheet: str, merged: list[tuple[int, int, int, int]], a1: bool,
                    fr: FileRead, titles_above: list[str] | None = None, row_offset: int = 0,
                    col_offset: int = 0, hidden: frozenset = frozenset(), block: str = "") -> pl.DataFrame:
    """Find the header rows of a wide table in ``df`` (all-String columns, no header), rebuild merged headers,
    drop subtotal/footer rows and unpivot to long cells. Only the first rows (title block and header) are
    handled in Python; the body is filtered and unpivoted column-wise by polars."""
    width = df.width
    df = df.clone()    # renamed in place (a rename is a query of its own): the caller's frame keeps its names
    df.columns = [f"c{i}" for i in range(width)]
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
        transposed = _transposed_to_cells(top, df, sheet, a1, fr, titles_above, row_offset, col_offset, hidden,
                                          block)
        if transposed is not None:
            return transposed
        raise FileRejected("no_header", f"工作表 {sheet or '(CSV)'} 前20行内找不到“社区名称/居委会”表头，"
                                        f"也不是以社区为列的转置表", sheet)
    titles = list(titles_above or []) + [" ".join(clean_text(v) for v in top[r] if v) for r in range(header_row)]
    _record_titles(fr, sheet, titles)
    last_header = header_row  # header depth: following rows whose community cell repeats the header
    while last_header + 1 < n_top and top[last_header + 1][comm_col] is not None and \
            _community_header(top[last_header + 1][comm_col]):
        last_header += 1
    # a row of month labels (7月 8月 9月) under indicator headings, the community cell left blank: a header level
    while last_header + 1 < n_top and _blank(top[last_header + 1][comm_col]):
        labels = [squash(v) for c, v in enumerate(top[last_header + 1]) if c != comm_col and not _blank(v)]
        if not labels or not all(MONTH_HEADER.match(v) for v in labels):
            break
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
    # month blocks: 帮助就业安置人次 » 7月 is that indicator's July value (a heading written over its first month
    # column only carries over to the month columns right of it); 7月 » 帮助就业安置人次 likewise
    col_period: dict[int, str] = {}
    for c in range(width):
        parts = headers[c].split(HEADER_SEP) if headers[c] else []
        if len(parts) > 1 and MONTH_HEADER.match(squash(parts[-1])):
            col_period[c], headers[c] = parts[-1], HEADER_SEP.join(parts[:-1])
        elif len(parts) > 1 and MONTH_HEADER.match(squash(parts[0])):
            col_period[c], headers[c] = parts[0], HEADER_SEP.join(parts[1:])
        elif len(parts) == 1 and MONTH_HEADER.match(squash(parts[0])) and c - 1 in col_period and c > 0:
            col_period[c], headers[c] = parts[0], headers[c - 1]
    leaf = [squash(h.split(HEADER_SEP)[-1]) if h else "" for h in headers]
    street_col = next((c for c in range(width) if leaf[c] in STREET_HEADERS), None)
    period_col = next((c for c in range(width) if leaf[c] in PERIOD_HEADERS), None)
    long_cols = _long_columns(leaf, comm_col)
    if long_cols is not None and period_col is None:
        period_col = long_cols.get("period")
    skip = {comm_col, street_col, period_col} | (set(long_cols.values()) if long_cols else set())
    value_cols = [c for c in range(width) if headers[c] and c not in skip and leaf[c] not in SKIP_HEADERS]

    # merged cells down the body (a street cell merged over its communities): each row takes the top-left value
    fill_rows = {c: [r for r0, c0, r1, c1 in merged if c0 <= c <= c1 and r0 > last_header
                     for r in range(r0 + 1, r1 + 1)] for c in (street_col, comm_col) if c is not None}
    # The body is built as one lazy query and collected once, with a flag per kind of row set aside (layout row,
    # repeated header, footer, subtotal); the notes and the cells are then taken from those flags (a collect per
    # step cost about 0.6 ms each, some 25 per table). Collected with the in-memory engine, as eager frames are:
    # polars 2.1's default (streaming) engine took 30 times as long on a 23,000-cell table.
    lf = df.lazy().with_row_index("_i").slice(last_header + 1).with_columns(
        (pl.col("_i") + 1 + row_offset).alias("_r"))  # 1-based sheet rows
    for c, rows in fill_rows.items():
        if rows:
            lf = lf.with_columns(pl.when(pl.col("_i").is_in(rows)).then(pl.col(f"c{c}").forward_fill())
                                 .otherwise(pl.col(f"c{c}")).alias(f"c{c}"))
    # per row: its first non-blank cell (stripped) and how many cells are filled. Taken from the cells in one
    # column, row by row in column order: an expression per column (a coalesce over 120 columns) cost ten times as
    # much as the same work on one long column
    cells = pl.col("_v")
    per_row = lf.select("_i", *[f"c{i}" for i in range(width)]).unpivot(index="_i", value_name="_v")
    per_row = per_row.group_by("_i").agg(
        cells.str.strip_chars().replace("", None).drop_nulls().first().alias("_first"),
        cells.is_not_null().sum().alias("_n"))
    comm = pl.col(f"c{comm_col}").str.replace_all(r"\s+", "")
    street = pl.col(f"c{street_col}") if street_col is not None else pl.lit(None, pl.String)
    lf = lf.join(per_row, on="_i", how="left", maintain_order="left")
    lf = lf.filter(pl.col("_first").is_not_null())
    # a row holding nothing but a street (南湖街道, 一、南湖街道) heads the rows below it; a district row (建邺区)
    # names the district of the file
    lone = pl.when(pl.col("_n") == 1).then(pl.col("_first")).str.replace_all(r"\s+", "")  # one filled cell
    lf = lf.with_columns(lone.str.extract(STREET_ROW, 1).alias("_street_row"),
                         lone.str.extract(DISTRICT_ROW, 1).alias("_district_row"))
    # the header repeated further down (a second street's table pasted under the first without an empty row)
    repeat = comm == re.sub(r"\s+", "", str(top[header_row][comm_col]))
    # a row without a community name is kept (its cells are quarantined as no_community), unless it is a
    # subtotal: 合计/小计 in its first cell, its community cell or its street cell
    is_subtotal = (pl.col("_first").str.replace_all(r"\s+", "").str.contains(SUBTOTAL.pattern)
                   | comm.str.contains(SUBTOTAL.pattern).fill_null(False)
                   | street.str.replace_all(r"\s+", "").str.contains(SUBTOTAL.pattern).fill_null(False))
    body = lf.with_columns(
        pl.col("_street_row").forward_fill().alias("_sub_street"),
        (pl.col("_street_row").is_not_null() | pl.col("_district_row").is_not_null()).alias("_layout"),
        repeat.fill_null(False).alias("_repeat"),
        pl.col("_first").str.contains(FOOTER.pattern).alias("_footer"),
        is_subtotal.alias("_subtotal"),
    ).collect(engine="in-memory")
    keep = ~body["_layout"]
    if body["_layout"].any():
        fr.title_lines.extend(d for d in body["_district_row"].drop_nulls().unique(maintain_order=True).to_list())
        n_streets = body["_street_row"].drop_nulls().n_unique()
        if n_streets:
            fr.notes.append(f"工作表 {sheet or '(CSV)'} 按街道小标题行分块读取（{n_streets} 个街道）")
    repeated = body["_repeat"] & keep
    if repeated.any():
        n_rep = repeated.sum()
        fr.notes.append(f"工作表 {sheet or '(CSV)'} 表头在表中重复出现 {n_rep} 次，重复的表头行不作数据读取")
        keep = keep & ~repeated
    footer = body["_footer"] & keep
    fr.notes.extend(body["_first"].filter(footer).to_list())
    subtotal = body["_subtotal"] & keep & ~body["_footer"]
    if subtotal.any():  # kept aside: the members of a 小计 row should add up to it (checked after parsing)
        says = lambda e: pl.when(e.str.contains(SUBTOTAL.pattern).fill_null(False)).then(e)  # noqa: E731
        label = pl.coalesce(says(street.str.replace_all(r"\s+", "")), says(comm), says(pl.col("_first")),
                            pl.col("_first"))
        fr.subtotals.append(body.lazy().filter(subtotal).select(label.alias("label"), *[
            pl.col(f"c{c}").alias(headers[c]) for c in value_cols]).with_columns(pl.lit(sheet).alias("sheet"))
            .collect(engine="in-memory"))
    rows = body.lazy().filter(keep & ~body["_footer"] & ~body["_subtotal"])
    period = pl.col(f"c{period_col}").str.strip_chars() if period_col is not None else pl.lit(None, pl.String)
    if period_col is not None and leaf[period_col] in ("月份", "月"):      # a 月份 column holding 7 means 7月
        period = pl.when(period.str.contains(r"^\d{1,2}$")).then(period + "月").otherwise(period)
    if period_col is not None and leaf[period_col] in ("季度", "统计季度"):  # a 季度 column holding 3 means 第3季度
        period = pl.when(period.str.contains(r"^[1-4]$")).then("第" + period + "季度").otherwise(period)
    # the street of a row: its street cell, else the street row above it, the sheet name, the title
    layout_street = _street_of(sheet) or _title_street(titles)
    street_of_row = pl.coalesce(street, pl.col("_sub_street"), pl.lit(layout_street, pl.String))
    base = [pl.col("_r").cast(pl.Int32).alias("source_row"), pl.col(f"c{comm_col}").alias("community_raw"),
            street_of_row.alias("street_raw"), period.alias("period_raw")]
    if long_cols is not None:
        return _long_to_cells(rows, base, long_cols, sheet, a1, col_offset, hidden, block, fr)
    if not value_cols:   # a list of communities without any indicator column
        fr.notes.append(f"工作表 {sheet or '(CSV)'} 的表格 {block} 没有指标列")
        return pl.DataFrame(schema=CELL_SCHEMA)
    long = rows.select(*base, *[pl.col(f"c{c}") for c in value_cols]).unpivot(
        index=["source_row", "community_raw", "street_raw", "period_raw"],
        on=[f"c{c}" for c in value_cols], variable_name="_col", value_name="raw_text")
    col_idx = pl.col("_col").str.slice(1).cast(pl.Int32)
    letters = {c: col_letter(c + col_offset) for c in value_cols}
    long = long.with_columns(
        pl.lit(sheet).alias("sheet"),
        col_idx.replace_strict({c: letters[c] if a1 else str(c + 1 + col_offset) for c in value_cols},
                               return_dtype=pl.String).alias("source_column"),
        col_idx.replace_strict({c: headers[c] for c in value_cols}, return_dtype=pl.String).alias("header_raw"),
        col_idx.is_in(sorted(hidden)).alias("hidden"),
        pl.lit(block).alias("block"),
    )
    if col_period:
        long = long.with_columns(pl.col("_col").str.slice(1).cast(pl.Int32).replace_strict(
            col_period, default=pl.col("period_raw"), return_dtype=pl.String).alias("period_raw"))
    long = long.with_columns(
        (pl.col("source_column") + pl.col("source_row").cast(pl.String)).alias("source_cell") if a1 else
        (pl.lit("R") + pl.col("source_row").cast(pl.String) + pl.lit("C") + pl.col("source_column")).alias("source_cell"),
        pl.col("source_column").alias("header_pos"),
    )
    return long.select(CELL_COLUMNS).cast(CELL_SCHEMA).collect(engine="in-memory")


COMMUNITY_NAME = re.compile(r".{1,12}(社区|居委会|居民委员会)(\(筹\))?$")
LABEL_HEADERS = {"指标", "项目", "指标名称", "项目名称", "统计指标", "内容"}
UNIT_HEADERS = {"单位", "计量单位"}


def _transposed_to_cells(top: list[list], df: pl.DataFrame, sheet: str, a1: bool, fr: FileRead,
                         titles_above: list[str] | None, row_offset: int, col_offset: int = 0,
                         hidden: frozenset = frozenset(), block: str = "") -> pl.DataFrame | None:
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
        col_idx.is_in(sorted(hidden)).alias("hidden"),
        pl.lit(block).alias("block"),
        ("R" + pl.col("source_row").cast(pl.String)).alias("header_pos"),
    ).with_columns(
        (pl.col("source_column") + pl.col("source_row").cast(pl.String)).alias("source_cell") if a1 else
        (pl.lit("R") + pl.col("source_row").cast(pl.String) + pl.lit("C") + pl.col("source_column")).alias("source_cell")
    )
    return long.select(CELL_COLUMNS).cast(CELL_SCHEMA)


# a long table as reporting systems export it: one row per community x indicator
LONG_INDICATOR_HEADERS = {"指标", "指标名称", "指标代码", "指标编码", "项目", "项目名称", "统计指标", "indicator"}
LONG_VALUE_HEADERS = {"数值", "值", "填报值", "指标值", "数据", "本期数", "本期值", "填报数", "value"}
LONG_UNIT_HEADERS = {"单位", "计量单位", "unit"}


def _long_columns(leaf: list[str], comm_col: int) -> dict[str, int] | None:
    """Columns of a long table (社区, 指标, 数值, 单位, 期间), or None when the table is wide."""
    def find(names):
        return next((c for c, h in enumerate(leaf) if c != comm_col and h in names), None)
    ind, val = find(LONG_INDICATOR_HEADERS), find(LONG_VALUE_HEADERS)
    if ind is None or val is None:
        return None
    out = {"indicator": ind, "value": val}
    unit = find(LONG_UNIT_HEADERS)
    if unit is not None:
        out["unit"] = unit
    period = find(PERIOD_HEADERS)
    if period is not None:
        out["period"] = period
    return out


def _long_to_cells(body: pl.LazyFrame, base: list[pl.Expr], cols: dict[str, int], sheet: str, a1: bool,
                   col_offset: int, hidden: frozenset, block: str, fr: FileRead) -> pl.DataFrame:
    """One cell per row: the indicator cell is the header, the value cell (with its unit cell appended, as
    for a JSON record) the reading. An indicator given by code is matched like a name."""
    fr.notes.append(f"工作表 {sheet or '(CSV)'} 按长表读取：每行一个社区的一个指标")
    value = pl.col(f"c{cols['value']}").str.strip_chars()
    if "unit" in cols:
        unit = pl.col(f"c{cols['unit']}").str.strip_chars().fill_null("")
        value = pl.when((unit != "") & value.is_not_null() & ~value.str.ends_with(unit)).then(value + unit) \
            .otherwise(value)
    vc = cols["value"]
    letter = col_letter(vc + col_offset) if a1 else str(vc + 1 + col_offset)
    out = body.select(*base, pl.col(f"c{cols['indicator']}").str.strip_chars().alias("header_raw"),
                      value.alias("raw_text")).with_columns(
        pl.lit(sheet).alias("sheet"), pl.lit(letter).alias("source_column"),
        pl.lit(vc in hidden).alias("hidden"), pl.lit(block).alias("block"),
        pl.lit(None, pl.String).alias("header_pos"))
    out = out.with_columns(
        (pl.col("source_column") + pl.col("source_row").cast(pl.String)).alias("source_cell") if a1 else
        (pl.lit("R") + pl.col("source_row").cast(pl.String) + pl.lit("C") + pl.col("source_column")).alias("source_cell"))
    return out.select(CELL_COLUMNS).cast(CELL_SCHEMA).collect(engine="in-memory")


def _is_header_cell(v) -> bool:
    return v is not None and len(str(v)) <= 20 and _community_header(v)


def _header_rows(df: pl.DataFrame) -> set[int]:
    """Rows (of ``df``) that can head a table: a community-name header cell, or at least two community names
    side by side (a transposed table). Pre-filtered in polars so that a long body costs one scan."""
    hint = r"名称|名稱|社区|社區|居委|单位|單位|(?:社区|居委会|居民委员会)(?:\(筹\)|（筹）)?\s*$"
    rows: set[int] = set()
    names: dict[int, int] = {}
    for col in df.columns:
        hit = df.select(pl.int_range(pl.len()).alias("r"), pl.col(col)).filter(
            pl.col(col).str.len_chars().le(24) & pl.col(col).str.contains(hint))
        for r, v in hit.iter_rows():
            if _is_header_cell(v):
                rows.add(r)
            elif COMMUNITY_NAME.match(squash(v)):
                names[r] = names.get(r, 0) + 1
    return rows | {r for r, n in names.items() if n >= 2}


def _split_blocks(df: pl.DataFrame) -> tuple[list[tuple[int, int, int, int]], list[tuple[int, int, int, int]]]:
    """Tables of one sheet: runs of columns separated by an empty column, each run cut at an empty row where the
    part below has its own header. Returns (tables, orphans) as (r0, r1, c0, c1), end-exclusive; an orphan is
    a run of columns with values but no header of its own."""
    # a cell of spaces counts as filled here: it can only keep a table together, never split one
    col_any = [s.null_count() < s.len() for s in df.iter_columns()] if df.height else ()
    runs, start = [], None
    for c, any_ in enumerate([*col_any, False]):
        if any_ and start is None:
            start = c
        elif not any_ and start is not None:
            runs.append((start, c))
            start = None
    if len(runs) <= 1:
        return [(0, df.height, 0, df.width)], []
    filled = df.select([pl.col(c).str.strip_chars().replace("", None).is_not_null().alias(c) for c in df.columns])
    tables, orphans = [], []
    for c0, c1 in runs:
        cols = df.columns[c0:c1]
        run_heads = sorted(_header_rows(df.select(cols)))
        row_any = filled.select(pl.any_horizontal(cols)).to_series().to_list()
        rows = [r for r, a in enumerate(row_any) if a]
        if not rows:
            continue
        if not run_heads:
            orphans.append((rows[0], rows[-1] + 1, c0, c1))
            continue
        # segments between empty rows; a segment starts a new table when a header row is among its first rows
        segs, s0 = [], rows[0]
        for a, b in zip(rows, rows[1:] + [None]):
            if b is None or b > a + 1:
                segs.append((s0, a + 1))
                s0 = b
        starts, seen = [], False
        for s, e in segs:
            has = any(s <= r < min(e, s + 6) for r in run_heads)
            if not starts or (has and seen):
                starts.append(s)
            seen = seen or has
        ends = starts[1:] + [rows[-1] + 1]
        tables.extend((s, e, c0, c1) for s, e in zip(starts, ends))
    return tables, orphans


def _sheet_to_cells(df: pl.DataFrame, sheet: str, merged: list[tuple[int, int, int, int]], a1: bool,
                    fr: FileRead, titles_above: list[str] | None = None, row_offset: int = 0,
                    col_offset: int = 0, hidden: frozenset = frozenset()) -> pl.DataFrame:
    """One sheet (or CSV) -> cells. A sheet holding several tables (side by side, separated by an empty column,
    or one under another, separated by an empty row above the lower table's header) is read table by table,
    each with its own header and community column. Values in a run of columns with no header of their own
    cannot be attributed to a community: they are quarantined together (unattributed_block), never pinned to
    the rows of the table beside them."""
    df = df.cast(pl.String)
    tables, orphans = _split_blocks(df)
    if len(tables) <= 1 and not orphans:
        return _table_to_cells(df, sheet, merged, a1, fr, titles_above, row_offset, col_offset, hidden)
    if not tables:
        raise FileRejected("no_header", f"工作表 {sheet or '(CSV)'} 找不到“社区名称/居委会”表头", sheet)
    first_head = min(_header_rows(df), default=0)
    frames = []
    for i, (r0, r1, c0, c1) in enumerate(sorted(tables, key=lambda t: (t[2], t[0]))):
        part = df.slice(r0, r1 - r0).select(df.columns[c0:c1])
        sub_merged = [(a - r0, b - c0, c - r0, d - c0) for a, b, c, d in merged
                      if r0 <= a < r1 and c0 <= b < c1]
        sub_hidden = frozenset(h - c0 for h in hidden if c0 <= h < c1)
        name = f"{col_letter(c0 + col_offset)}{r0 + 1 + row_offset}"
        try:
            frames.append(_table_to_cells(part, sheet, sub_merged, a1, fr, titles_above if i == 0 else None,
                                          row_offset + r0, col_offset + c0, sub_hidden, name))
        except FileRejected as e:
            orphans.append((r0, r1, c0, c1))
            fr.notes.append(f"工作表 {sheet or '(CSV)'} 区块 {name}：{e.message}")
    fr.notes.append(f"工作表 {sheet or '(CSV)'} 含 {len(frames)} 个表格，分别读取")
    for r0, r1, c0, c1 in orphans:
        part = df.slice(r0, r1 - r0).select(df.columns[c0:c1])
        area = f"{col_letter(c0 + col_offset)}{r0 + 1 + row_offset}:{col_letter(c1 - 1 + col_offset)}{r1 + row_offset}"
        if r1 <= first_head:   # text above every table's header (a date, a unit line): part of the title block
            _record_titles(fr, sheet, [" ".join(clean_text(v) for v in row if v) for row in part.iter_rows()])
            continue
        head = next((v for row in part.iter_rows() for v in row if not _blank(v)), None)
        if head is not None and squash(head) in SKIP_HEADERS:   # a 备注 column set apart: remarks, not values
            fr.notes.append(f"工作表 {sheet or '(CSV)'} 区块 {area} 为{squash(head)}列，不作数值读取")
            continue
        for dr, row in enumerate(part.iter_rows()):
            for dc, v in enumerate(row):
                if _blank(v):
                    continue
                r, c = r0 + dr + 1 + row_offset, c0 + dc + col_offset
                col = col_letter(c) if a1 else str(c + 1)
                fr.problems.append({
                    "sheet": sheet, "source_row": r, "source_column": col,
                    "source_cell": f"{col}{r}" if a1 else f"R{r}C{col}", "street_raw": None, "community_raw": None,
                    "header_raw": None, "period_raw": None, "raw_text": str(v), "hidden": (c - col_offset) in hidden,
                    "block": area, "header_pos": None, "reason_code": "unattributed_block",
                    "message": f"区块 {area} 与相邻表格之间隔有空列，且没有自己的社区名称列或表头，无法确定数值属于哪个社区"})
    if not frames:
        raise FileRejected("no_header", f"工作表 {sheet or '(CSV)'} 找不到“社区名称/居委会”表头", sheet)
    return pl.concat(frames)


# ------------------------------------------------------------------ xlsx
_MERGE = re.compile(rb'<mergeCell ref="([A-Z]+)(\d+):([A-Z]+)(\d+)"')
# an error cell (#DIV/0!, #N/A): fastexcel reads it as empty, which would make an error look like a blank
_ERROR_CELL = re.compile(rb'<c r="([A-Z]+\d+)"[^>]*\bt="e"[^>]*>\s*(?:<f[^>]*?(?:/>|>[^<]*</f>)\s*)?<v>([^<]*)</v>')
_COL = re.compile(rb'<col\s[^>]*>')
# a hidden row (hidden by hand or by an autofilter): <row r="12" … hidden="1">, attributes in any order
_HIDDEN_ROW = re.compile(rb'<row\s[^>]*\bhidden="(?:1|true)"[^>]*>')
_ROW_NUMBER = re.compile(rb'\br="(\d+)"')
# fastexcel's grid starts at the first row and column that hold a value: cell references are offset by that origin
_VALUE_CELL = re.compile(rb'<c r="([A-Z]+)(\d+)"[^>]*>\s*(?:<f[^>]*?(?:/>|>[^<]*</f>)\s*)?(?:<v>[^<]|<is>)')
_ATTR = re.compile(rb'(\w+)="([^"]*)"')
# a formula cell whose value element is missing or empty: <f>..</f></c>, <f>..</f><v/></c>, <f t="shared" si="0"/>
_FORMULA_NO_VALUE = re.compile(
    rb'<c r="([A-Z]+\d+)"[^>]*>\s*<f[^>]*?(?:/>|>[^<]*</f>)\s*(?:<v\s*/>|<v>\s*</v>)?\s*</c>')


def _lesser(value: str, alphabet: str) -> str:
    """A pattern for the strings over ``alphabet`` (in its order, no leading zeros counted for digits) that are
    less than ``value``: shorter ones, or one as long that is less at the first place it differs."""
    cls = re.escape(alphabet)
    n = len(value)
    parts = [f"[{cls}]{{{0 if alphabet[0] == '0' else 1},{n - 1}}}"] if n > 1 or alphabet[0] == "0" else []
    for i, ch in enumerate(value):
        lower = alphabet[:alphabet.index(ch)]
        if lower:
            rest = n - i - 1
            parts.append(re.escape(value[:i]) + f"[{re.escape(lower)}]" + (f"[{cls}]{{{rest}}}" if rest else ""))
    return "|".join(parts)


def _grid_origin(xml: bytes) -> tuple[int, int]:
    """The first row and column holding a value (0-based), where fastexcel's grid starts.

    The first value cell of the XML is the origin unless some cell lies above or left of it; two searches for
    such a cell (none in a sheet written top-down from its first value) stand in for reading every cell
    reference. Any cell counts in those searches, so a hit falls back to the minimum over all value cells."""
    first = _VALUE_CELL.search(xml)
    if first is None:
        return 0, 0
    letters, digits = first.group(1).decode(), first.group(2).decode()
    row_less = _lesser(digits.lstrip("0") or "0", "0123456789")
    col_less = _lesser(letters, "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    checks = [f'<c r="(?>[A-Z]+)0*(?:{row_less})"'] if row_less else []
    if col_less:
        checks.append(f'<c r="(?:{col_less})[0-9]')
    if not any(re.search(c.encode(), xml) for c in checks):
        return int(digits) - 1, col_index(letters)
    refs = _VALUE_CELL.findall(xml)
    return min(int(r) for r in {r for _, r in refs}) - 1, min(col_index(c.decode()) for c in {c for c, _ in refs})


def _xlsx_structure(path: Path) -> dict[str, dict]:
    """Per sheet name: merged ranges, hidden columns and rows (1-based), formula cells without a cached value.

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
            # each pattern below needs its literal (a merge needs <mergeCell, a hidden row or column hidden="): a
            # sheet without that literal skips the pattern's pass over the XML
            merged = [(int(m[1]) - 1, col_index(m[0].decode()), int(m[3]) - 1, col_index(m[2].decode()))
                      for m in _MERGE.findall(xml)] if b"<mergeCell" in xml else []
            hidden, hidden_rows = set(), set()
            if b'hidden="' in xml:
                for tag in _COL.findall(xml):  # attribute order differs between writers
                    a = dict(_ATTR.findall(tag))
                    if a.get(b"hidden") in (b"1", b"true"):
                        hidden.update(range(int(a[b"min"]) - 1, int(a[b"max"])))
                hidden_rows = {int(m.group(1)) for tag in _HIDDEN_ROW.findall(xml) if (m := _ROW_NUMBER.search(tag))}
            no_value = [m.decode() for m in _FORMULA_NO_VALUE.findall(xml)] if b"<f" in xml else []
            errors = {ref.decode(): v.decode() for ref, v in _ERROR_CELL.findall(xml)} if b't="e"' in xml else {}
            origin = _grid_origin(xml)
            out[s.get("name")] = {"merged": merged, "hidden": hidden, "hidden_rows": hidden_rows,
                                  "formula_no_value": no_value,
                                  "errors": errors, "origin": origin, "state": s.get("state") or "visible"}
    return out


def _xls_structure(path: Path) -> dict[str, dict]:
    """Per sheet of a legacy BIFF8 .xls (or a WPS .et saved as BIFF8): merged ranges, hidden columns, hidden rows
    (1-based) and sheet visibility, read with xlrd (fastexcel 0.21 exposes only sheet visibility, not merged ranges
    or hidden rows and columns). Values still come from fastexcel/calamine."""
    import xlrd

    out: dict[str, dict] = {}
    book = xlrd.open_workbook(str(path), formatting_info=True, on_demand=True)
    for sh in book.sheets():
        cells = [(r, c) for r in range(sh.nrows) for c in range(sh.ncols)
                 if sh.cell_type(r, c) not in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK)]
        origin = (min(r for r, _ in cells), min(c for _, c in cells)) if cells else (0, 0)
        out[sh.name] = {"merged": [(r0, c0, r1 - 1, c1 - 1) for r0, r1, c0, c1 in sh.merged_cells],
                        "hidden": {c for c, info in sh.colinfo_map.items() if info.hidden},
                        "hidden_rows": {r + 1 for r, info in sh.rowinfo_map.items() if info.hidden},
                        "formula_no_value": [], "errors": {}, "origin": origin,
                        "state": {0: "visible", 1: "hidden"}.get(sh.visibility, "veryhidden")}
    return out


_ODF = {"table": "urn:oasis:names:tc:opendocument:xmlns:table:1.0",
        "office": "urn:oasis:names:tc:opendocument:xmlns:office:1.0",
        "style": "urn:oasis:names:tc:opendocument:xmlns:style:1.0",
        "calcext": "urn:org:documentfoundation:names:experimental:calc:xmlns:calcext:1.0"}


def _odf(qname: str) -> str:
    ns, local = qname.split(":")
    return f"{{{_ODF[ns]}}}{local}"


_T_TABLE, _T_COLUMN, _T_ROW = _odf("table:table"), _odf("table:table-column"), _odf("table:table-row")
_T_CELLS = (_odf("table:table-cell"), _odf("table:covered-table-cell"))
_S_STYLE, _S_TABLE_PROPS = _odf("style:style"), _odf("style:table-properties")
# a cell calamine reads as a value (not Empty): any of these attributes, a string cell (even an empty one) or a formula
_VALUE_ATTRS = tuple(_odf(f"office:{a}") for a in ("value", "string-value", "date-value", "time-value",
                                                   "boolean-value"))
_A = {k: _odf(k) for k in ("table:name", "table:style-name", "table:visibility", "table:number-rows-repeated",
                           "table:number-columns-repeated", "table:number-columns-spanned",
                           "table:number-rows-spanned", "table:formula", "office:value-type", "style:name",
                           "table:display", "calcext:value-type")}


def _odf_count(elem, attr: str, t: dict) -> int:
    raw = elem.get(_A[attr])
    if raw is None:
        return 1
    if not raw.isdigit() or len(raw) > 12 or int(raw) < 1:
        raise FileRejected("file_unreadable", f"content.xml 中 {attr}=“{raw[:20]}” 不是正整数，文件已损坏",
                           t["name"])
    return int(raw)


def _xml_prolog_has_doctype(fh) -> bool:
    """True when the XML prolog (before the root element) holds a DOCTYPE, the only place where entities can be
    declared; a document without one can reference no entity but the five predefined ones, so neither entity
    expansion (billion laughs) nor an external reference can happen while parsing it. A prolog that is not plain
    UTF-8 markup (UTF-16, or longer than 1 MB of comments) counts as holding one: it is refused unparsed."""
    head = fh.read(1 << 20)
    i = 3 if head.startswith(b"\xef\xbb\xbf") else 0     # a UTF-8 byte-order mark
    while True:
        while i < len(head) and head[i:i + 1] in b" \t\r\n":
            i += 1
        if head.startswith(b"<?", i):
            j = head.find(b"?>", i)
        elif head.startswith(b"<!--", i):
            j = head.find(b"-->", i)
        else:
            return not (head[i:i + 1] == b"<" and re.match(rb"[A-Za-z_]", head[i + 1:i + 2]))
        if j < 0:
            return True
        i = j + 2


def _ods_structure(path: Path) -> dict[str, dict]:
    """Per sheet of an OpenDocument spreadsheet (.ods from LibreOffice or WPS): merged ranges
    (table:number-columns-spanned / -rows-spanned), hidden columns and rows (table:visibility="collapse" or
    "filter" on table:table-column / table:table-row, with their repeat counts), hidden sheets (a table style
    with table:display="false"), error cells and formulas without a value, and the origin of calamine's grid.

    One streamed pass over content.xml (end events only, each cell and row element cleared once read); the zip
    stops each part at its declared size and checks its CRC. The furthest row and column holding a value are
    bounded as they are found: repeat counts are expanded by calamine, so one row repeated a billion times is
    rejected here (too_large), before calamine allocates it. Written by hand because fastexcel 0.21 exposes only
    sheet visibility for ods and odfpy builds the whole document in memory. A content.xml whose prolog holds a
    DOCTYPE is refused before parsing (_xml_prolog_has_doctype): defusedxml would refuse the same documents, but
    its parser runs every expat callback in Python (about 40 s for 20,000 rows x 21 columns here, against about
    1 s for the C parser used below)."""
    out: dict[str, dict] = {}
    lim = config.limits()     # read once: the checks below run once per row and per value cell
    styles_hidden: set[str] = set()
    t = None          # the sheet being read (created by its first column or row, named by its end tag)
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise FileRejected("file_unreadable", f"不是有效的 ods 文件（不是完整的 zip 压缩包：{_short(e)}）") from e
    try:
        with z:
            if "content.xml" not in z.namelist():
                raise FileRejected("file_unreadable", "ods 文件中没有 content.xml（不是有效的 OpenDocument 电子表格）")
            with z.open("content.xml") as fh:
                if _xml_prolog_has_doctype(fh):
                    raise FileRejected("file_unreadable", "content.xml 含文档类型（DOCTYPE）或实体声明，或不是 UTF-8 "
                                                          "编码的 XML，出于安全原因不解析")
            fh = z.open("content.xml")
            for _, el in ElementTree.iterparse(fh, events=("end",)):
                tag = el.tag
                if tag in _T_CELLS:
                    if t is None:
                        t = _ods_new_table(lim, len(out))
                    if el.attrib:
                        _ods_cell(t, el)
                    else:                      # an empty cell: one column further
                        t["cells_at"] += 1
                    el.clear()
                elif tag == _T_ROW:
                    t = t or _ods_new_table(lim, len(out))
                    a = el.attrib
                    n = _odf_count(el, "table:number-rows-repeated", t) if a else 1
                    if a and a.get(_A["table:visibility"]) in ("collapse", "filter"):
                        t["hidden_rows"].append((t["row"], t["row"] + n))
                    if t["row_value"]:
                        t["rmin"] = t["row"] if t["rmin"] is None else t["rmin"]
                        t["rmax"] = t["row"] + n - 1
                        _ods_extent(t, t["rmax"] - t["rmin"] + 1, t["cmax"] + 1)
                    t["row"] += n
                    t["cells_at"], t["row_value"] = 0, False
                    el.clear()
                elif tag == _T_COLUMN:
                    t = t or _ods_new_table(lim, len(out))
                    n = _odf_count(el, "table:number-columns-repeated", t)
                    if el.get(_A["table:visibility"]) in ("collapse", "filter"):
                        t["hidden_cols"].append((t["col"], t["col"] + n))
                    t["col"] += n
                elif tag == _T_TABLE:
                    t = t or _ods_new_table(lim, len(out))
                    t["name"] = el.get(_A["table:name"]) or t["name"]
                    hidden = el.get(_A["table:style-name"]) in styles_hidden
                    out[t["name"]] = _ods_sheet(t) | {"state": "hidden" if hidden else "visible"}
                    t = None
                    el.clear()
                elif tag == _S_STYLE:
                    if any(c.tag == _S_TABLE_PROPS and c.get(_A["table:display"]) == "false" for c in el):
                        styles_hidden.add(el.get(_A["style:name"]))
    except zipfile.BadZipFile as e:
        # a part whose bytes do not match its declared size (CRC): the directory lied, nothing more is read
        raise FileRejected("too_large", "压缩包部件 content.xml 的实际内容与目录声明的大小或校验和不符，文件未读取",
                           "content.xml") from e
    except ElementTree.ParseError as e:
        raise FileRejected("file_unreadable", f"content.xml 不是完整的 XML（{e}），文件可能已损坏或加密") from e
    except (zlib.error, EOFError, NotImplementedError, RuntimeError) as e:
        # corrupt deflate data, an unsupported compression method, an encrypted part
        raise FileRejected("file_unreadable", f"content.xml 无法解压（{type(e).__name__}），文件已损坏或加密") from e
    return out


def _ods_new_table(lim: dict, before: int) -> dict:
    """A sheet's state; its name is on its end tag, so until then messages call it 第 N 个工作表."""
    return {"name": f"第 {before + 1} 个工作表", "lim": lim, "row": 0, "col": 0, "cells_at": 0, "row_value": False, "hidden_cols": [],
            "hidden_rows": [], "merged": [], "errors": {}, "formula_no_value": [], "rmin": None, "rmax": -1,
            "cmin": None, "cmax": -1}


def _ods_extent(t: dict, rows: int, cols: int) -> None:
    lim = t["lim"]
    if rows > lim["max_rows"] or cols > lim["max_columns"] or rows * cols > lim["max_cells"]:
        limits.check_extent(rows, cols, t["name"])   # raises TooLarge with the limit's message


_REP_COLS, _VALUE_TYPE, _FORMULA = _A["table:number-columns-repeated"], _A["office:value-type"], _A["table:formula"]
_SPANS, _CALC_TYPE = (_A["table:number-rows-spanned"], _A["table:number-columns-spanned"]), _A["calcext:value-type"]


def _ods_cell(t: dict, el) -> None:
    """One table:table-cell (or covered cell) of the current row: its columns, value, merge, error, formula."""
    a = el.attrib
    n = _odf_count(el, "table:number-columns-repeated", t) if _REP_COLS in a else 1
    c = t["cells_at"]
    t["cells_at"] = c + n
    has_value = a.get(_VALUE_TYPE) == "string" or any(x in a for x in _VALUE_ATTRS)
    formula = a.get(_FORMULA)
    if not (has_value or formula):
        return
    t["row_value"] = True
    if t["cmin"] is None or c < t["cmin"]:
        t["cmin"] = c
    if c + n - 1 > t["cmax"]:
        t["cmax"] = c + n - 1
        if t["cmax"] >= t["lim"]["max_columns"]:
            limits.check_extent(1, t["cmax"] + 1, t["name"])
    r = t["row"]
    if _SPANS[0] in a or _SPANS[1] in a:
        spans = (_odf_count(el, "table:number-rows-spanned", t), _odf_count(el, "table:number-columns-spanned", t))
        if spans != (1, 1):
            t["merged"].append((r, c, r + spans[0] - 1, c + spans[1] - 1))
    if _CALC_TYPE in a and a[_CALC_TYPE] == "error":   # #DIV/0! is written as an empty string value
        t["errors"][f"{col_letter(c)}{r + 1}"] = "".join(el.itertext()).strip() or "#错误"
    elif formula and not has_value:
        t["formula_no_value"].append(f"{col_letter(c)}{r + 1}")


def _ods_sheet(t: dict) -> dict:
    """Hidden rows as 1-based row numbers and hidden columns as 0-based indexes, both clipped to the area that
    holds values (a sheet often hides the million empty rows below its table with one repeated row)."""
    if t["rmin"] is None:
        return {"merged": [], "hidden": set(), "hidden_rows": set(), "formula_no_value": [], "errors": {},
                "origin": (0, 0)}
    # a merge is clipped to that area too: 合并 A5:A1048576 must not make a million-row fill list
    merged = [(r0, c0, min(r1, t["rmax"]), min(c1, t["cmax"])) for r0, c0, r1, c1 in t["merged"]]
    rows = {r + 1 for a, b in t["hidden_rows"] for r in range(max(a, t["rmin"]), min(b, t["rmax"] + 1))}
    cols = {c for a, b in t["hidden_cols"] for c in range(max(a, t["cmin"]), min(b, t["cmax"] + 1))}
    return {"merged": merged, "hidden": cols, "hidden_rows": rows, "formula_no_value": t["formula_no_value"],
            "errors": t["errors"], "origin": (t["rmin"], t["cmin"])}


def _short(e: BaseException) -> str:
    """The first line of a library's error, cut short: the message says what failed, not a traceback."""
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}：{first[:120]}"


def read_xls(path: Path) -> FileRead:
    return read_xlsx(path, kind="xls")


def read_ods(path: Path) -> FileRead:
    return read_xlsx(path, kind="ods")


_LABEL = {"xlsx": "xlsx", "xls": "xls/et（BIFF8）", "ods": "ods（OpenDocument）"}


def read_xlsx(path: Path, kind: str = "xlsx") -> FileRead:
    """A workbook: values from fastexcel (calamine), structure (merged ranges, hidden rows, columns and sheets,
    errors, formulas without a cached value) from the sheet XML (xlsx), xlrd (xls/et) or content.xml (ods)."""
    fr = FileRead(cells=pl.DataFrame(schema=CELL_SCHEMA), file_format=kind)
    # declared sizes, compression ratio, furthest row and column: before calamine sees the file
    _within_limits({"xlsx": limits.check_xlsx, "xls": limits.check_xls, "ods": limits.check_ods}[kind], path)
    try:
        structure = {"xlsx": _xlsx_structure, "xls": _xls_structure, "ods": _ods_structure}[kind](path)
        # calamine picks its format by the extension: a workbook under another extension (an xlsx saved as .xls)
        # is handed over as bytes, which calamine identifies by content (the file is within max_file_mb)
        same = path.suffix.lower() in {"xlsx": (".xlsx", ".xlsm"), "xls": (".xls", ".et"), "ods": (".ods",)}[kind]
        reader = fastexcel.read_excel(str(path) if same else path.read_bytes())
    except FileRejected:
        raise
    except limits.TooLarge as e:   # the ods scan measures the furthest row and column while it reads the structure
        raise FileRejected(e.reason, e.message, e.where) from e
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError) as e:
        raise FileRejected("file_unreadable", f"不是有效的 {_LABEL[kind]} 文件：{_short(e)}") from e
    except Exception as e:  # fastexcel raises its own error types for corrupt workbooks
        raise FileRejected("file_unreadable", f"{_LABEL[kind]} 读取失败：{_short(e)}") from e
    frames = []
    for name in reader.sheet_names:
        st = structure.get(name, {"merged": [], "hidden": set(), "hidden_rows": set(), "formula_no_value": [],
                                  "errors": {}, "origin": (0, 0), "state": "visible"})
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
            # clipped to the grid read: a merge over a whole column (A5:A1048576) fills only the rows that exist
            merged = [(a - r0, b - c0, min(c - r0, df.height - 1), min(d - c0, df.width - 1))
                      for a, b, c, d in st["merged"]]
            hidden = frozenset(c - c0 for c in st["hidden"] if c >= c0)
            cells = _sheet_to_cells(df.cast(pl.String), name, merged, True, fr, row_offset=r0, col_offset=c0,
                                    hidden=hidden)
        except FileRejected as e:
            if len(reader.sheet_names) > 1:
                fr.notes.append(f"工作表 {name}：{e.message}")
                continue
            raise
        if st["errors"]:
            cells = cells.with_columns(pl.col("source_cell").replace_strict(
                st["errors"], default=pl.col("raw_text"), return_dtype=pl.String).alias("raw_text"))
        hidden_rows = sorted(st["hidden_rows"] & set(cells["source_row"].unique().to_list())) \
            if st["hidden_rows"] else []
        if hidden_rows:
            # a hidden row is read like a hidden column: it loads unless it repeats a visible row of the same
            # community, indicator and period (then the visible one wins: shequ/duplicates.py)
            cells = cells.with_columns((pl.col("hidden") | pl.col("source_row").is_in(hidden_rows)).alias("hidden"))
            shown = ",".join(map(str, hidden_rows[:20])) + ("…" if len(hidden_rows) > 20 else "")
            fr.notes.append(f"工作表 {name} 含隐藏行 {shown}（仍读取；与可见行重复同一社区、指标、期间时只取可见行）")
        if st["hidden"]:
            fr.notes.append(f"工作表 {name} 含隐藏列 {','.join(col_letter(c) for c in sorted(st['hidden']))}"
                            f"（仍读取；与可见列对应同一指标时只取可见列）")
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
    n_lines = _within_limits(limits.check_delimited, path)
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
    _within_limits(limits.check_width, width, n_lines)
    start = next((i for i, r in enumerate(rows) if len(r) == width), 0)
    titles = [clean_text(" ".join(c for c in r if c)) for r in rows[:start]]
    body = "\n".join(lines[start:])
    try:
        df = pl.read_csv(io.StringIO(body), separator=sep, has_header=False, infer_schema=False,
                         truncate_ragged_lines=True, quote_char='"')
    except pl.exceptions.PolarsError as e:
        raise FileRejected("file_unreadable", f"CSV 解析失败：{e}") from e
    fr = FileRead(cells=pl.DataFrame(schema=CELL_SCHEMA), file_format="tsv" if sep == "\t" else "csv", encoding=enc)
    fr.cells = _sheet_to_cells(df, "", [], False, fr, titles_above=titles, row_offset=start)
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
# keys of a nested JSON that hold children without naming anything themselves
CONTAINER_KEYS = {"values", "data", "records", "items", "list", "children", "rows", "记录", "数据", "明细", "列表",
                  "指标", "指标值", "indicators", "streets", "communities", "街道列表", "社区列表", "下辖社区"}
NAME_KEYS = ("名称", "name")
DISTRICT_KEYS = ("区", "所属区", "区县", "district")


def _pick(rec: dict, key: str):
    for k in LONG_KEYS[key]:
        if k in rec:
            return rec[k]
    return None


def _scalar(v) -> bool:
    return not isinstance(v, (dict, list))


_SCALAR_TYPES = {str, int, float, bool, type(None)}   # what json.loads gives besides dict and list


def _flat_records(records) -> bool:
    """The record shapes read since the first version: flat records, or records whose ``values`` / indicator
    key holds a flat object. Anything deeper is read by the path walker."""
    if not isinstance(records, list):
        return False
    if set(map(type, records)) <= {dict} and set(map(type, itertools.chain.from_iterable(
            map(dict.values, records)))) <= _SCALAR_TYPES:
        return True      # every record an object of single values: the types counted in C, not one by one
    for rec in records:
        if not isinstance(rec, dict):
            continue
        for k, v in rec.items():
            if _scalar(v):
                continue
            if isinstance(v, dict) and k in ("values", *LONG_KEYS["indicator"]) and all(map(_scalar, v.values())):
                continue
            return False
    return True


class _JsonWalker:
    """Nested JSON of any depth whose path names the street, the community and the indicator:
    {"南湖街道": {"新村社区": {"志愿者组织数": 3}}}, {"街道": [{"名称": "南湖街道", "社区": [{"名称": …,
    "指标": {…}}]}]}, {"data": {"南湖街道": [{"社区": "新村社区", "指标": "志愿者组织数", "数值": 3}]}}.
    A key names a street (…街道/…镇), a community (…社区/…居委会), a district (…区) or a period (2024年第三季度)
    by itself; 街道/社区/名称 keys name them inside an object. Each cell keeps its JSON path; a shape that cannot
    be read (an array of numbers where an indicator value should be, a community given as an object) is a
    problem at its path, never a crash."""

    def __init__(self, fr: FileRead):
        self.fr, self.rows, self.seq = fr, [], 0

    def problem(self, path: str, raw, message: str, ctx: dict) -> None:
        self.fr.problems.append({
            "sheet": "", "source_row": None, "source_column": None, "source_cell": path,
            "street_raw": ctx.get("street"), "community_raw": ctx.get("community"), "header_raw": None,
            "period_raw": ctx.get("period"), "raw_text": json.dumps(raw, ensure_ascii=False)[:200],
            "hidden": False, "block": "", "header_pos": None, "reason_code": "bad_structure",
            "message": f"JSON 路径 {path}：{message}"})

    def emit(self, ctx: dict, path: str, key: str, header: str, raw, block: str) -> None:
        self.rows.append(("", self.seq, key, path, ctx.get("street"), ctx.get("community"), header,
                          ctx.get("period"), None if raw is None else str(raw), False, block, header))

    def walk(self, node, ctx: dict, path: str, expect: str | None = None, group: tuple = ()) -> None:
        if isinstance(node, list):
            for i, item in enumerate(node):
                if _scalar(item) and item is not None:
                    self.problem(f"{path}[{i}]", item, "数组元素应为对象（含街道、社区或指标），不是单个值", ctx)
                elif item is not None:
                    self.walk(item, ctx, f"{path}[{i}]", expect, group)
            return
        ctx = dict(ctx)
        self.seq += 1
        # the fields this object states about itself
        for field in ("street", "community", "period"):
            v = _pick(node, field)
            if v is not None and _scalar(v):
                ctx[field] = str(v)
        name = next((node[k] for k in NAME_KEYS if k in node and _scalar(node[k])), None)
        if name is not None and expect in ("street", "community"):
            ctx[expect] = str(name)
        for k in DISTRICT_KEYS:
            if k in node and _scalar(node[k]) and node[k]:
                self.fr.title_lines.append(str(node[k]))
        ind = _pick(node, "indicator")
        if ind is not None and _scalar(ind):          # a long record: 指标 + 数值 (+ 单位)
            val, unit = _pick(node, "value"), _pick(node, "unit")
            if not _scalar(val):
                self.problem(path, val, f"指标 {ind} 的数值不是单个值", ctx)
                return
            raw = None if val is None else str(val)
            if raw is not None and unit and _scalar(unit) and not raw.endswith(str(unit)):
                raw = f"{raw}{unit}"
            self.rows.append(("", self.seq, "数值", path, ctx.get("street"), ctx.get("community"), str(ind),
                              ctx.get("period"), raw, False, "", str(ind)))
            return
        in_community = ctx.get("community") is not None
        known = {k for keys in LONG_KEYS.values() for k in keys} | set(NAME_KEYS) | set(DISTRICT_KEYS)
        for k, v in node.items():
            sub = f"{path}.{k}"
            if k in known and _scalar(v):
                continue
            if _scalar(v):
                if in_community:
                    self.emit(ctx, sub, str(k), HEADER_SEP.join((*group, str(k))), v,
                              block=self.community_block(ctx, path))
                elif path == "$":
                    self.fr.title_lines.append(f"{k} {v}")
                else:
                    self.problem(sub, v, f"值 {k}={v} 不在任何社区之下，无法确定属于哪个社区", ctx)
                continue
            key = squash(str(k))
            if k in LONG_KEYS["street"] or k in ("streets", "街道列表"):
                self.walk(v, ctx, sub, "street")
            elif k in LONG_KEYS["community"] or k in ("communities", "社区列表", "下辖社区"):
                if isinstance(v, dict) and all(map(_scalar, v.values())) and not any(
                        COMMUNITY_NAME.match(squash(str(x))) for x in v):
                    self.problem(sub, v, "社区应为名称或含名称的对象/数组", ctx)
                else:
                    self.walk(v, ctx, sub, "community")
            elif k in ("values", *LONG_KEYS["indicator"], "indicators", "指标值"):
                if not in_community:
                    self.problem(sub, v, "指标不在任何社区之下，无法确定属于哪个社区", ctx)
                elif isinstance(v, list) and all(map(_scalar, v)):
                    self.problem(sub, v, "指标应为对象（指标名: 数值），不是数组", ctx)
                else:
                    self.walk(v, ctx, sub, None, group)
            elif _street_of(key):
                self.walk(v, ctx | {"street": str(k), "community": None}, sub, "community")
            elif COMMUNITY_NAME.match(key):
                self.walk(v, ctx | {"community": str(k)}, sub, None)
            elif re.match(DISTRICT_ROW, key):
                self.fr.title_lines.append(str(k))
                self.walk(v, ctx, sub, "street")
            elif _period_key(key):
                self.walk(v, ctx | {"period": str(k)}, sub, expect, group)
            elif k in CONTAINER_KEYS:
                self.walk(v, ctx, sub, expect, group)
            elif expect == "community" and not in_community and isinstance(v, dict):
                # under a street, an object keyed by a name without 社区 (生产路): that community, resolved or
                # quarantined by the registry, never dropped
                self.walk(v, ctx | {"community": str(k)}, sub, None)
            elif in_community and isinstance(v, dict):   # a group of indicators (基本情况: {...})
                self.walk(v, ctx, sub, None, (*group, str(k)))
            elif in_community:
                self.problem(sub, v, f"指标 {k} 的值应为单个数值，不是数组", ctx)
            else:
                self.walk(v, ctx, sub, expect, group)

    @staticmethod
    def community_block(ctx: dict, path: str) -> str:
        return f"{ctx.get('street') or ''}/{ctx.get('community') or ''}/{ctx.get('period') or ''}"


def _period_key(text: str) -> bool:
    from .periods import classify_period

    key, reason = classify_period(text)
    return bool(key or reason)


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
        # deep nesting would make json.loads recurse. The byte scan is exact on valid JSON; when it says "too
        # deep", or when json.loads then fails, the text scan decides, so that the same rejection (and figure)
        # as before comes first
        fits = limits.json_depth_fits(text)
        if not fits:
            _within_limits(limits.check_json_depth, text)
        try:
            doc = json.loads(text, parse_int=_json_number(int), parse_float=_json_number(float))
        except BaseException:
            if fits:
                _within_limits(limits.check_json_depth, text)
            raise
    except _NumberTooLong as e:
        raise FileRejected("number_too_long", f"JSON 中有 {len(str(e))} 个字符的数字（上限 {JSON_MAX_NUMBER_CHARS}），"
                                              f"开头为 {str(e)[:20]}…，不予读取") from e
    except (DecodeError, json.JSONDecodeError) as e:
        raise FileRejected("file_unreadable", f"JSON 解析失败：{e}") from e
    fr = FileRead(cells=pl.DataFrame(schema=CELL_SCHEMA), file_format="json", encoding=enc)
    if not isinstance(doc, (dict, list)):
        raise FileRejected("bad_structure", "JSON 路径 $：顶层应为对象或数组，不是单个值", "$")
    lists = [(k, v) for k, v in doc.items() if isinstance(v, list)] if isinstance(doc, dict) else []
    nested = [k for k, v in doc.items() if isinstance(v, dict)] if isinstance(doc, dict) else []
    if (isinstance(doc, list) and _flat_records(doc)) or (lists and not nested and len(lists) == 1
                                                          and _flat_records(lists[0][1])):
        return _read_json_records(doc, fr)
    walker = _JsonWalker(fr)
    walker.walk(doc, {}, "$")
    fr.sheet_titles[""] = [clean_text(t) for t in fr.title_lines]
    if not walker.rows:
        first = fr.problems[0]["message"] if fr.problems else "JSON 路径 $：没有找到街道—社区—指标结构或记录数组"
        raise FileRejected("bad_structure" if fr.problems else "no_records", first,
                           fr.problems[0]["source_cell"] if fr.problems else "$")
    fr.notes.append("JSON 按路径读取（街道—社区—指标）")
    fr.cells = pl.DataFrame(walker.rows, schema=CELL_SCHEMA, orient="row")
    return fr


def _read_json_records(doc, fr: FileRead) -> FileRead:
    """Long records, wide records, records with a nested ``values`` object (the shapes read since the start)."""
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
    _within_limits(limits.check_json_records, len(records))
    ctx_period = _pick(context, "period") if context else None
    ctx_street = _pick(context, "street") if context else None
    cells = _record_columns(records, ctx_street, ctx_period)
    fr.cells = cells if cells is not None else _record_rows(records, ctx_street, ctx_period, fr)
    return fr


def _record_rows(records: list, ctx_street, ctx_period, fr: FileRead) -> pl.DataFrame:
    """Every record shape, one record at a time (the reference for ``_record_columns``)."""
    rows = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            fr.problems.append({"sheet": "", "source_row": i + 1, "source_column": None, "source_cell": f"[{i}]",
                                "street_raw": None, "community_raw": None, "header_raw": None, "period_raw": None,
                                "raw_text": str(rec)[:200], "hidden": False, "block": "", "header_pos": None,
                                "reason_code": "bad_record", "message": "记录不是对象"})
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
            rows.append(("", i + 1, "数值", f"[{i}]", street, comm, str(ind), period, raw, False, "", str(ind)))
            continue
        nested = rec.get("values") if isinstance(rec.get("values"), dict) else ind
        items = nested.items() if isinstance(nested, dict) else [
            (k, v) for k, v in rec.items() if k not in _LONG_KEY_NAMES]
        for k, v in items:
            rows.append(("", i + 1, str(k), f"[{i}].{k}", street, comm, str(k), period,
                         None if v is None else str(v), False, "", str(k)))
    return pl.DataFrame(rows, schema=CELL_SCHEMA, orient="row")


_LONG_KEY_NAMES = frozenset(k for keys in LONG_KEYS.values() for k in keys)
_TEXT_TYPES = {str, type(None)}


def _picked(records: list[dict], field: str, present: set) -> list:
    """``_pick`` over every record, one list pass per spelling the file uses (most use one)."""
    names = [k for k in LONG_KEYS[field] if k in present]
    if not names:
        return [None] * len(records)
    out = list(map(dict.get, records, itertools.repeat(names[-1])))
    for k in reversed(names[:-1]):      # an earlier spelling wins where a record has it, as in _pick
        out = [r[k] if k in r else o for r, o in zip(records, out)]
    return out


def _texts(values: list) -> list:
    """str() of each value, None kept (map(str) at C speed when there is no None)."""
    if None in values:
        return [None if v is None else str(v) for v in values]
    return list(map(str, values))


def _record_columns(records: list, ctx_street, ctx_period) -> pl.DataFrame | None:
    """The cells of the two common record shapes built a column at a time: every record long (指标 + 数值 with
    a single 指标), or every record wide (no 指标, only single values). The same frame as ``_record_rows`` (the
    tests compare them); None for anything else (records that are not objects, nested values, names that
    are not text, long and wide records mixed), which ``_record_rows`` reads. polars.from_dicts is not used: it
    infers one type per key, and a number's text must be Python's str() of it, not polars' rendering."""
    n = len(records)
    if not n or set(map(type, records)) != {dict} or type(ctx_street) not in _TEXT_TYPES \
            or type(ctx_period) not in _TEXT_TYPES:
        return None
    present = set().union(*records)
    street, comm, period, ind = (_picked(records, f, present) for f in ("street", "community", "period", "indicator"))
    if not (set(map(type, street)) | set(map(type, comm)) | set(map(type, period))) <= _TEXT_TYPES:
        return None
    street = [s or ctx_street for s in street]
    period = [p or ctx_period for p in period]
    ind_types = set(map(type, ind))
    if ind_types <= {str, int, float, bool}:                        # all long
        if ind_types != {str}:
            ind = [str(x) for x in ind]
        raw = _texts(_picked(records, "value", present))
        if any(k in present for k in LONG_KEYS["unit"]):
            raw = [r if r is None or not u or r.endswith(str(u)) else f"{r}{u}"
                   for r, u in zip(raw, _picked(records, "unit", present))]
        row = pl.int_range(0, n, dtype=pl.Int32)
        return pl.DataFrame({"street_raw": street, "community_raw": comm, "header_raw": ind, "period_raw": period,
                             "raw_text": raw}, schema={c: pl.String for c in ("street_raw", "community_raw",
                                                                              "header_raw", "period_raw", "raw_text")}
                            ).select(sheet=pl.lit(""), source_row=row + 1, source_column=pl.lit("数值"),
                                     source_cell=pl.format("[{}]", row), street_raw="street_raw",
                                     community_raw="community_raw", header_raw="header_raw", period_raw="period_raw",
                                     raw_text="raw_text", hidden=pl.lit(False), block=pl.lit(""),
                                     header_pos="header_raw")
    if ind_types != {type(None)} or "values" in present and any(isinstance(r.get("values"), dict) for r in records):
        return None
    # all wide: every key but the named ones is a cell
    at, keys, vals = [], [], []
    for i, rec in enumerate(records):
        ks = [k for k in rec if k not in _LONG_KEY_NAMES]
        at.extend([i] * len(ks))
        keys.extend(ks)
        vals.extend(map(rec.__getitem__, ks))
    at_s = pl.Series(at, dtype=pl.Int32)
    m = len(keys)
    return pl.DataFrame({
        "sheet": [""] * m, "source_row": at_s + 1, "source_column": keys,
        "source_cell": [f"[{i}].{k}" for i, k in zip(at, keys)],
        "street_raw": pl.Series(street, dtype=pl.String).gather(at_s),
        "community_raw": pl.Series(comm, dtype=pl.String).gather(at_s), "header_raw": keys,
        "period_raw": pl.Series(period, dtype=pl.String).gather(at_s),
        "raw_text": _texts(vals), "hidden": [False] * m, "block": [""] * m,
        "header_pos": keys}, schema=CELL_SCHEMA)


def _legacy_text_kind(path: Path) -> str | None:
    """What an .xls/.et that is no workbook holds: "html" (a web page table), "xml" (Excel 2003 SpreadsheetML),
    "text" (delimited text in an encoding the decode ladder reads) or None (binary: left to the xls reader, which
    names it unreadable)."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    for cut in range(4 if len(head) == 4096 else 1):   # the 4 KB may end inside a character
        try:
            text, _ = decode_bytes(head[:len(head) - cut])
            break
        except DecodeError:
            continue
    else:
        return None
    if "\x00" in text:
        return None
    start = text.lstrip("\ufeff \t\r\n").lower()
    if start.startswith("<"):
        return "xml" if "urn:schemas-microsoft-com:office:spreadsheet" in text or "excel.sheet" in start else "html"
    return "text"


READERS = {".xls": read_xls, ".et": read_xls, ".ods": read_ods, ".xlsx": read_xlsx, ".xlsm": read_xlsx, ".csv": read_delimited, ".tsv": read_delimited,
           ".txt": read_delimited, ".json": read_json}


def read_file(path: Path) -> FileRead:
    """Read one inbox file, or raise FileRejected with a precise reason. Every file of the inbox comes here
    (ingest.inventory skips none): hidden and Office lock files, empty files, unknown types and files whose
    content is not what their extension says are rejected with their own reasons, so each still gets a raw_file
    row; a file over a resource limit is rejected as too_large before it is read."""
    from .filetypes import KINDS, check_extension, real_kind

    if path.name.startswith("."):
        raise FileRejected("hidden_file", f"隐藏文件 {path.name}（文件名以“.”开头，通常由系统或编辑器生成），不读取")
    if path.name.startswith("~$"):
        raise FileRejected("lock_file", f"Office 临时锁定文件 {path.name}（有人正打开该工作簿），不读取")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        kind = real_kind(path) if path.is_file() else None
        raise FileRejected("unsupported_format", f"不支持的文件类型 {path.suffix or '(无扩展名)'}"
                           + (f"（内容为{KINDS[kind]}）" if kind else "")
                           + f"（可读取：{'、'.join(sorted(READERS))}）")
    if path.stat().st_size == 0:
        raise FileRejected("empty_file", "文件为零字节")
    wrong = check_extension(path)   # a PDF renamed .csv is named a PDF, not read as garbled text
    if wrong:
        raise FileRejected("wrong_file_type", wrong[1])
    _within_limits(limits.check_file_size, path)
    actual = real_kind(path) if path.suffix.lower() in (".xls", ".et") else None
    if actual in ("xlsx", "ods"):   # a workbook saved under an old extension: read as what it is
        reader = read_xlsx if actual == "xlsx" else read_ods
    text_kind = _legacy_text_kind(path) if path.suffix.lower() in (".xls", ".et") and actual is None else None
    if text_kind in ("html", "xml"):
        what = "网页（HTML）表格" if text_kind == "html" else "Excel 2003 XML 表格（SpreadsheetML）"
        raise FileRejected("unsupported_format", f"扩展名为 {path.suffix}，内容实为{what}（业务系统常这样导出），"
                                                 f"不读取：请用 Excel 或 WPS 打开后另存为 xlsx 再放入收件箱")
    if text_kind == "text":         # tab- or comma-separated text saved as .xls by a reporting system
        reader = read_delimited
    fr = reader(path)
    if actual in ("xlsx", "ods"):
        fr.notes.append(f"扩展名为 {path.suffix}，内容为{KINDS[actual]}，按 {actual} 读取")
    if text_kind == "text":
        fr.notes.append(f"扩展名为 {path.suffix}，内容为分隔文本，按 {fr.file_format} 读取")
    fr.notes = mask_list(fr.notes)   # footers (填表人：王芳 …) keep their label only: shequ/privacy.py
    return fr
