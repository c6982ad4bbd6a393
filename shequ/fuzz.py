"""Mutation fuzzer over the bundled sample inbox, with an oracle (issue 13, item 2).

`shequ fuzz --files N --seed S` takes one quarter of the sample inbox (data/inbox/2024Q4 by default: a GBK CSV, a
UTF-8 CSV, an xlsx and a JSON file), makes N mutants of its files (seeded, deterministic), loads them in small
batches beside the unmutated files of the other districts into a scratch warehouse through the real ingest path
(ingest.ingest_inbox, then warehouse.build_facts), and compares what landed with what the unmutated files give.

The oracle. Every mutant records which cells it touched and what each touched cell may become:
  - ``not_land``: the text is not a value the indicator can hold (inf, NaN, 1e308, a 41-digit number, a formula,
    markup, a line separator inside a number, a very long string): it must be quarantined;
  - ``values``: the text really holds one of these numbers (``  12 ``, ``１２``): it lands as one of them or is
    quarantined;
  - ``free``: a byte-level mutation changed the cell (found by parsing the mutated bytes with the standard
    library): anything finite may land, and a plain number must land as itself (at the cell's scale).
Every other value that lands from a mutant must equal the unmutated value for the same (community, indicator,
period, role), from the same source cell unless the mutation moved cells on purpose (then it says where to).
A value or fact that lands otherwise, a fact for a (community, indicator) the unmutated file does not have, a
non-finite value, or a change in the facts of an unmutated file beside it, is ``silently_wrong``.

Each mutant is classified: exact | quarantined (loaded, some cells quarantined with a reason) | rejected (with a
reason code) | silently_wrong | internal_error (a file or cell ending as internal_error/unclassified) | crash (the
load or the fact build raised; the mutant was then retried alone to name it).

Plain Python on purpose: hypothesis drives the parser properties (tests/test_parsers_hostile_text_properties.py),
but a corpus-level mutator with a per-cell oracle over real files is specific to this warehouse; atheris/AFL
need instrumented builds and give no oracle.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
import math
import os
import random
import re
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape as xml_escape

from .config import ROOT

SAMPLE_INBOX = ROOT / "data" / "inbox"
CLASSES = ["exact", "quarantined", "rejected", "silently_wrong", "internal_error", "crash"]
FAILURES = ("silently_wrong", "internal_error", "crash")
LABEL_ZH = {"exact": "完全一致", "quarantined": "部分隔离（有原因）", "rejected": "整文件拒收（有原因）",
            "silently_wrong": "静默错误", "internal_error": "内部错误", "crash": "程序崩溃"}

# --------------------------------------------------------------------------- hostile strings, by mutation class
# text that is not a value any indicator can hold: must never land
NON_FINITE = ["inf", "-inf", "Infinity", "-Infinity", "NaN", "nan", "INF", "∞"]
HUGE = ["1e308", "1E308", "-1e308", "1e15", "1.7976931348623157e308", "9" * 41, "1" * 401, "12345678901234567890"
        "123456789012345678901"]
SEPARATORS = {"U+2028": "\u2028", "U+2029": "\u2029", "NEL": "\x85", "VT": "\x0b", "FF": "\x0c"}
FORMULAS = ["=cmd|' /C calc'!A0", "=1+1", "@SUM(1+1)*cmd|' /C calc'!A0", "=HYPERLINK(\"http://x.invalid\",\"5\")",
            "+cmd|' /C notepad'!A0", "=5"]
MARKUP = ["<b>5</b>", "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "javascript:alert(1)",
          "{{7*7}}", "${7*7}", "'; DROP TABLE fact_indicator_value; --"]
BIDI_ZW = {"RLM": "\u200f", "LRM": "\u200e", "RLO": "\u202e", "ZWSP": "\u200b", "ZWJ": "\u200d", "BOM": "\ufeff"}


@dataclass
class Intent:
    kind: str                      # not_land | values | free
    values: tuple = ()
    text: str = ""


@dataclass
class Mutant:
    idx: int
    source: str                    # name of the unmutated file
    mutation: str                  # mutation class (the key the CI test groups by)
    detail: str                    # what exactly was done, for people
    name: str                      # file name the mutant is written under
    data: bytes
    touched: dict = field(default_factory=dict)   # (sheet, cell) -> Intent
    remap: dict = field(default_factory=dict)     # (sheet, cell) as loaded -> (sheet, cell) in the unmutated file
    check_cells: bool = True       # untouched values must come from their unmutated source cell
    free_all: bool = False         # byte mutation the reference parser could not read: any finite value may land
    file_id: str = ""


@dataclass
class Source:
    name: str
    kind: str                      # csv | xlsx | json
    data: bytes
    encoding: str = ""
    grid: list = field(default_factory=list)       # csv: rows of cell text
    doc: object = None                              # json document
    records_key: str = ""
    cells: dict = field(default_factory=dict)      # (sheet, cell) -> (key, value, raw_text); key = (ck, ind, pk, role)
    by_key: dict = field(default_factory=dict)     # key -> (sheet, cell, value, raw_text)
    facts: dict = field(default_factory=dict)      # (ck, ind, pk) -> (value, reported, numerator, denominator)
    file_id: str = ""
    sheet_xml: dict = field(default_factory=dict)  # xlsx: sheet name -> its XML part


# --------------------------------------------------------------------------- helpers
def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _same_json_record(a: tuple, b: tuple) -> bool:
    """Two names of the same JSON record's cell: the flat-record reader names a record "[0]", the path walker
    (used for the whole file once one record holds an object) "$.记录[0]"; the value was already found equal,
    so the same record index means the same source."""
    import re

    ia, ib = re.search(r"\[(\d+)\]", str(a[1] or "")), re.search(r"\[(\d+)\]", str(b[1] or ""))
    return (a[0] or "") == (b[0] or "") and bool(ia and ib) and ia.group(1) == ib.group(1) \
        and str(a[1]).startswith(("[", "$")) and str(b[1]).startswith(("[", "$"))


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a == b or abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def _col_letter(idx: int) -> str:
    s = ""
    idx += 1
    while idx:
        idx, r = divmod(idx - 1, 26)
        s = chr(65 + r) + s
    return s


def _plain(text: str) -> float | None:
    t = (text or "").strip()
    return float(t) if re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", t) and len(t) < 16 else None


def _csv_text(data: bytes) -> tuple[str, str]:
    for enc in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(enc), enc
        except UnicodeDecodeError:
            continue
    return data.decode("gb18030", errors="replace"), "gb18030"


def _csv_grid(text: str) -> list[list[str]]:
    return [list(r) for r in csv.reader(io.StringIO(text, newline=""))]


def _unzip(data: bytes) -> dict[str, bytes]:
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist()}


def _zip(parts: dict[str, bytes]) -> bytes:
    """An xlsx with fixed entry times and document dates: the same mutation gives the same bytes (file_id)."""
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in parts.items():
            if name == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*", rb"\g<1>2025-01-08T00:00:00Z", data)
            z.writestr(zipfile.ZipInfo(name, date_time=(2025, 1, 8, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def _csv_bytes(grid, encoding: str, quote_all=False) -> bytes:
    buf = io.StringIO(newline="")
    csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL).writerows(grid)
    return buf.getvalue().encode(encoding)


# --------------------------------------------------------------------------- loading through the real path
class Loader:
    """One scratch warehouse; each batch empties the file-level tables and loads its files with ingest_inbox."""

    def __init__(self, workdir: Path, quarter: str):
        from . import pipeline
        from .warehouse import connect

        self.workdir, self.quarter = Path(workdir), quarter
        self.db = self.workdir / "fuzz.duckdb"
        self._cm = connect(self.db)
        self.con = self._cm.__enter__()
        pipeline.stage_dimensions(self.con)

    def close(self):
        self._cm.__exit__(None, None, None)

    def keep_baseline(self):
        """The unmutated facts, kept in a temporary table to compare the neighbours of each batch in SQL."""
        self.con.execute("CREATE OR REPLACE TEMP TABLE fuzz_base AS SELECT file_id, community_key, indicator_code, "
                         "period_key, value FROM fact_indicator_value")

    def changed_neighbours(self, ids: list[str]) -> list[tuple]:
        return self.con.execute(
            "SELECT b.file_id, b.community_key, b.indicator_code, b.period_key, b.value, f.value "
            "FROM fuzz_base b LEFT JOIN fact_indicator_value f USING (community_key, indicator_code, period_key) "
            "WHERE list_contains($ids, b.file_id) AND (f.value IS NULL OR f.file_id <> b.file_id "
            "OR abs(f.value - b.value) > 1e-9 * greatest(1, abs(b.value))) LIMIT 5", {"ids": ids}).fetchall()

    def load(self, files: list[tuple[str, bytes]], only: list[str] | None = None) -> dict:
        from . import ingest, warehouse

        # files of earlier batches go; a file of this batch already loaded (an unmutated neighbour) stays
        # loaded and is reported unchanged by the ingest, as in a real refresh
        ids = [_sha(d) for _, d in files]
        self.con.execute("DELETE FROM fact_indicator_value")
        for t in ("quarantine", "stg_value", "raw_file"):
            self.con.execute(f"DELETE FROM {t} WHERE NOT list_contains($ids, file_id)", {"ids": ids})
        inbox = self.workdir / "inbox"
        shutil.rmtree(inbox, ignore_errors=True)
        qdir = inbox / self.quarter
        qdir.mkdir(parents=True)
        for name, data in files:
            (qdir / name).write_bytes(data)
        ingest.ingest_inbox(self.con, inbox, self.quarter)
        warehouse.build_facts(self.con, self.quarter)
        q = self.con.execute
        out = {"raw": {r[0]: r[1:] for r in q("SELECT file_id, status, reason_code, message, n_quarantined "
                                               "FROM raw_file").fetchall()},
               "stg": defaultdict(list), "facts": defaultdict(dict), "bad_quarantine": defaultdict(list)}
        which = "" if only is None else "WHERE list_contains($ids, file_id)"
        params = {} if only is None else {"ids": only}
        for fid, ck, ind, pk, role, v, raw, sheet, cell in q(
                "SELECT file_id, community_key, indicator_code, period_key, role, value, raw_text, "
                f"coalesce(source_sheet, ''), source_cell FROM stg_value {which}", params).fetchall():
            out["stg"][fid].append(((ck, ind, pk, role), v, raw, sheet, cell))
        for fid, ck, ind, pk, v, rv, n, d in q(
                "SELECT file_id, community_key, indicator_code, period_key, value, reported_value, numerator, "
                f"denominator FROM fact_indicator_value {which}", params).fetchall():
            out["facts"][fid][(ck, ind, pk)] = (v, rv, n, d)
        for fid, code, msg, cell in q(
                "SELECT file_id, reason_code, message, source_cell FROM quarantine "
                "WHERE reason_code IS NULL OR reason_code IN ('internal_error', 'unclassified') "
                "OR message IS NULL OR message = ''").fetchall():
            out["bad_quarantine"][fid].append((code, msg, cell))
        return out


# --------------------------------------------------------------------------- sources and their baseline
def load_sources(inbox: Path, quarter: str, loader: Loader) -> dict[str, Source]:
    from openpyxl import load_workbook

    srcs = {}
    for p in sorted((Path(inbox) / quarter).iterdir()):
        kind = p.suffix.lower().lstrip(".")
        if kind not in ("csv", "xlsx", "json"):
            continue
        s = Source(p.name, kind, p.read_bytes())
        s.file_id = _sha(s.data)
        if kind == "csv":
            text, s.encoding = _csv_text(s.data)
            s.grid = _csv_grid(text)
        elif kind == "json":
            s.doc = json.loads(s.data.decode("utf-8-sig"))
            s.records_key = next(k for k, v in s.doc.items() if isinstance(v, list)) if isinstance(s.doc, dict) else ""
        else:
            wb = load_workbook(io.BytesIO(s.data))
            s.sheet_xml = {ws.title: f"xl/worksheets/sheet{i + 1}.xml" for i, ws in enumerate(wb)}
            parts = _unzip(s.data)
            assert all(p in parts for p in s.sheet_xml.values()), "样例工作簿的工作表应为 sheet1.xml …"
            s.grid = {ws.title: [[("" if v is None else str(v)) for v in row] for row in ws.iter_rows(values_only=True)]
                      for ws in wb}
        srcs[p.name] = s
    res = loader.load([(s.name, s.data) for s in srcs.values()])
    for s in srcs.values():
        for key, v, raw, sheet, cell in res["stg"].get(s.file_id, []):
            s.cells[(sheet, cell)] = (key, v, raw)
            s.by_key[key] = (sheet, cell, v, raw)
        s.facts = res["facts"].get(s.file_id, {})
        if not s.facts:
            raise RuntimeError(f"样例文件 {s.name} 未载入任何事实，无法作为对照")
    loader.keep_baseline()
    return srcs


# --------------------------------------------------------------------------- mutations
def _rc(cell: str) -> tuple[int, int]:
    m = re.fullmatch(r"R(\d+)C(\d+)", cell)
    return int(m.group(1)) - 1, int(m.group(2)) - 1


def _a1(cell: str) -> tuple[int, int]:
    m = re.fullmatch(r"([A-Z]+)(\d+)", cell)
    col = 0
    for ch in m.group(1):
        col = col * 26 + ord(ch) - 64
    return int(m.group(2)) - 1, col - 1


class Mutator:
    def __init__(self, src: Source, rng: random.Random):
        self.s, self.rng = src, rng

    # ---- value cells of the unmutated file
    def value_cell(self, plain_only=False):
        cells = [c for c, (k, v, raw) in self.s.cells.items()
                 if not plain_only or (_plain(raw) is not None and _close(_plain(raw), v) and v >= 0)]
        if self.s.kind == "json":
            cells = [c for c in cells if c[1].startswith("[") and "." not in c[1]]
        return self.rng.choice(sorted(cells))

    def set_cells(self, edits: dict, quote_all=False) -> bytes:
        """edits: (sheet, cell) -> new text. Returns the mutated bytes in the source's own format and encoding."""
        s = self.s
        if s.kind == "csv":
            grid = [list(r) for r in s.grid]
            for (_, cell), text in edits.items():
                r, c = _rc(cell)
                grid[r][c] = text
            return _csv_bytes(grid, s.encoding, quote_all)
        if s.kind == "json":
            doc = json.loads(json.dumps(s.doc))
            recs = doc[s.records_key] if s.records_key else doc
            for (_, cell), text in edits.items():
                i = int(cell.strip("[]"))
                recs[i]["数值"] = text
                recs[i].pop("单位", None)
            return json.dumps(doc, ensure_ascii=False, indent=0).encode("utf-8")
        # the sheet XML is edited in place (an inline string cell): fast, and the rest of the file stays byte-equal
        parts = _unzip(s.data)
        for (sheet, cell), text in edits.items():
            path = s.sheet_xml[sheet]
            xml = parts[path].decode("utf-8")
            new = f'<c r="{cell}" t="inlineStr"><is><t xml:space="preserve">{xml_escape(text)}</t></is></c>'
            xml, n = re.subn(rf'<c r="{cell}"(?: [^>]*)?(?:/>|>.*?</c>)', lambda _: new, xml, count=1)
            if not n:
                raise ValueError(f"{s.name}: 找不到单元格 {cell}")
            parts[path] = xml.encode("utf-8")
        return _zip(parts)

    def label_cells(self, sheet_cell):
        """(community label location, header location) of a value cell: (sheet, ref) pairs or None."""
        s = self.s
        sheet, cell = sheet_cell
        if s.kind == "json":
            return ("json", cell, "社区"), ("json", cell, "指标")
        grid = s.grid if s.kind == "csv" else s.grid[sheet]
        r, c = _rc(cell) if s.kind == "csv" else _a1(cell)
        ref = (lambda rr, cc: f"R{rr + 1}C{cc + 1}") if s.kind == "csv" else (lambda rr, cc: f"{_col_letter(cc)}{rr + 1}")
        names = {"居委会", "社区", "社区名称"}
        lab_col = next((j for i in range(min(r, 8)) for j, v in enumerate(grid[i]) if v.strip() in names), None)
        head_row = next((i for i in range(r - 1, -1, -1) if grid[i][c].strip() and _plain(grid[i][c]) is None
                         and not any(_plain(v) is not None for v in grid[i][:c + 1] if v.strip())), None)
        return ((sheet, ref(r, lab_col)) if lab_col is not None else None,
                (sheet, ref(head_row, c)) if head_row is not None else None)

    def set_meta(self, loc, text) -> bytes:
        if loc[0] == "json":
            doc = json.loads(json.dumps(self.s.doc))
            recs = doc[self.s.records_key] if self.s.records_key else doc
            recs[int(loc[1].strip("[]"))][loc[2]] = text
            return json.dumps(doc, ensure_ascii=False, indent=0).encode("utf-8")
        return self.set_cells({loc: text})

    def meta_text(self, loc) -> str:
        if loc[0] == "json":
            recs = self.s.doc[self.s.records_key] if self.s.records_key else self.s.doc
            return str(recs[int(loc[1].strip("[]"))].get(loc[2], ""))
        if self.s.kind == "csv":
            r, c = _rc(loc[1])
            return self.s.grid[r][c]
        r, c = _a1(loc[1])
        return self.s.grid[loc[0]][r][c]


def _not_land(m: Mutator, texts, label):
    cell = m.value_cell()
    text = m.rng.choice(texts)
    return label, f"单元格改为 {text[:60]!r}", m.set_cells({cell: text}), {cell: Intent("not_land", text=text)}


def mut_non_finite(m):
    return _not_land(m, NON_FINITE, "non_finite")


def mut_huge_number(m):
    return _not_land(m, HUGE, "huge_number")


def mut_line_separator(m):
    cell = m.value_cell(plain_only=True)
    # XML 1.0 cannot hold VT or FF: an xlsx cell gets the three separators a worksheet can hold
    seps = sorted((k, v) for k, v in SEPARATORS.items() if m.s.kind != "xlsx" or v not in "\x0b\x0c")
    name, sep = m.rng.choice(seps)
    raw = m.s.cells[cell][2].strip()
    inner = f"{raw}{sep}{m.rng.randint(1, 9)}"
    if m.rng.random() < 0.5:   # inside the number: not one value
        return "line_separator", f"数字中间插入 {name}：{inner!r}", \
            m.set_cells({cell: inner}, quote_all=m.rng.random() < 0.5), {cell: Intent("not_land", text=inner)}
    edge = f"{sep}{raw}" if m.rng.random() < 0.5 else f"{raw}{sep}"   # at the edge: whitespace around the value
    v = m.s.cells[cell][1]
    return "line_separator", f"数字边上插入 {name}：{edge!r}", m.set_cells({cell: edge}, quote_all=m.rng.random() < 0.5), \
        {cell: Intent("values", (v,), edge)}


def mut_formula(m):
    return _not_land(m, FORMULAS, "formula")


def mut_markup(m):
    return _not_land(m, MARKUP, "markup")


def mut_bidi_zero_width(m):
    cell = m.value_cell(plain_only=True)
    name, ch = m.rng.choice(sorted(BIDI_ZW.items()))
    raw, v = m.s.cells[cell][2].strip(), m.s.cells[cell][1]
    text = ch + raw if m.rng.random() < 0.5 else raw + ch
    return "bidi_zero_width", f"数字边上插入 {name}：{text!r}", m.set_cells({cell: text}), \
        {cell: Intent("values", (v,), text)}


def mut_long_string(m):
    cell = m.value_cell()
    unit = m.rng.choice(["x", "数", "1,", "<"])
    # "1," repeated is quadratic in the unit regexes of values.py before the bounds fix: kept short enough to finish
    n = m.rng.choice([1_000, 2_000]) if unit == "1," else m.rng.choice([5_000, 50_000, 200_000])
    text = unit * n
    return "long_string", f"单元格改为 {n} 字长串", m.set_cells({cell: text}), {cell: Intent("not_land", text=text[:40])}


def mut_number_forms(m):
    """Texts that really hold a number: they land as it or are quarantined, never as another number."""
    cell = m.value_cell(plain_only=True)
    n = m.rng.randint(2, 97)
    form = m.rng.choice(["  {}  ", "\u3000{}", "{}", "０{}".replace("０", ""), "{}.0", "+{}"])
    text = form.format(n)
    if m.rng.random() < 0.4:
        text = text.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    return "number_forms", f"单元格改为 {text!r}", m.set_cells({cell: text}), \
        {cell: Intent("values", (float(n), n / 100.0), text)}


HOSTILE_LABEL = ["=HYPERLINK(\"http://x.invalid\",\"{n}\")", "<b>{n}</b>", "\u202e{n}", "{n}\u200b", "{n}\u2028x",
                 "..", "-", "{n}" + "长" * 5000, "'; DROP TABLE dim_community; --", "javascript:alert('{n}')", ""]


def _sep_class(text: str, kind: str) -> str:
    """A label or header holding a line separator counts as a line_separator mutation (one class per cause)."""
    return "line_separator" if any(sep in text for sep in SEPARATORS.values()) else kind


def mut_label(m):
    cell = m.value_cell()
    loc = m.label_cells(cell)[0]
    if loc is None:
        return mut_markup(m)
    n = m.meta_text(loc)
    text = m.rng.choice(HOSTILE_LABEL).format(n=n)
    return _sep_class(text, "hostile_label"), f"社区名称 {n!r} 改为 {text[:60]!r}", m.set_meta(loc, text), {}


def mut_header(m):
    cell = m.value_cell()
    loc = m.label_cells(cell)[1]
    if loc is None:
        return mut_markup(m)
    h = m.meta_text(loc)
    text = m.rng.choice(HOSTILE_LABEL).format(n=h)
    return _sep_class(text, "hostile_header"), f"表头 {h!r} 改为 {text[:60]!r}", m.set_meta(loc, text), {}


JSON_LITERALS = {"1e999": "1e999", "-1e999": "-1e999", "NaN": "NaN", "Infinity": "Infinity",
                 "5000-digit int": "7" * 5000, "400-digit float": "1" * 400 + ".5", "1e308": "1e308",
                 "nested 3000": "[" * 3000 + "1" + "]" * 3000, "object": '{"v": 5}', "true": "true"}


def mut_json_literal(m):
    """JSON number literals and structures where a value should be: never a value, and never internal_error."""
    if m.s.kind != "json":
        return mut_huge_number(m)
    cell = m.value_cell()
    name = m.rng.choice(sorted(JSON_LITERALS))
    token = "\u0000FUZZ\u0000"
    data = m.set_cells({cell: token}).decode("utf-8").replace(json.dumps(token), JSON_LITERALS[name], 1)
    # JSON true is 是 for a yes/no indicator (1) and no number for any other: it lands as 1 or is quarantined
    intent = Intent("values", (1.0,), name) if name == "true" else Intent("not_land", text=name)
    return "json_literal", f"JSON 数值改为字面量 {name}", data.encode("utf-8"), {cell: intent}


def _csv_or(m, fn):
    return fn(m) if m.s.kind in ("csv", "json") else mut_header(m)


def mut_shuffle(m):
    """Columns (CSV) or records (JSON) in another order: the same facts, from the moved cells."""
    s = m.s
    if s.kind == "json":
        doc = json.loads(json.dumps(s.doc))
        recs = doc[s.records_key]
        order = list(range(len(recs)))
        m.rng.shuffle(order)
        doc[s.records_key] = [recs[i] for i in order]
        for r in doc[s.records_key]:   # key order too
            items = list(r.items())
            m.rng.shuffle(items)
            r.clear()
            r.update(items)
        remap = {("", f"[{new}]"): ("", f"[{old}]") for new, old in enumerate(order)}
        return "shuffle", "记录顺序与键顺序打乱", json.dumps(doc, ensure_ascii=False).encode(), {}, remap
    width = max(len(r) for r in s.grid)
    cols = list(range(width))
    m.rng.shuffle(cols)
    grid = [[(r[c] if c < len(r) else "") for c in cols] for r in s.grid]
    remap = {("", f"R{i + 1}C{new + 1}"): ("", f"R{i + 1}C{old + 1}") for i in range(len(grid))
             for new, old in enumerate(cols)}
    return "shuffle", "所有列顺序打乱", _csv_bytes(grid, s.encoding), {}, remap


def mut_duplicate(m):
    """A header column or a data row repeated at the end, same values or conflicting ones: equal copies load once,
    conflicting ones are all quarantined, a repeated column is ambiguous (shequ/duplicates.py, never first wins)."""
    s = m.s
    conflict = m.rng.random() < 0.5
    if s.kind == "json":
        doc = json.loads(json.dumps(s.doc))
        recs = doc[s.records_key]
        picks = m.rng.sample(range(len(recs)), 5)
        for i in picks:
            r = dict(recs[i])
            if conflict and isinstance(r.get("数值"), (int, float)):
                r["数值"] = r["数值"] + 1
            recs.append(r)
        return "duplicate", f"重复 5 条记录{'（数值不同）' if conflict else ''}", \
            json.dumps(doc, ensure_ascii=False).encode(), {}
    if s.kind == "xlsx":
        from openpyxl import load_workbook
        wb = load_workbook(io.BytesIO(s.data))
        ws = wb.worksheets[0]
        sheet, cell = m.value_cell()
        r, _ = _a1(cell)
        row = [c.value for c in ws[r + 1]]
        if conflict:
            row = [v + 1 if isinstance(v, (int, float)) and i > 0 else v for i, v in enumerate(row)]
        ws.append(row)
        buf = io.BytesIO()
        wb.save(buf)
        return "duplicate", f"第 {r + 1} 行重复到表尾{'（数值不同）' if conflict else ''}", \
            _zip(_unzip(buf.getvalue())), {}
    grid = [list(r) for r in s.grid]
    if m.rng.random() < 0.5:
        r = m.rng.randrange(1, len(grid))
        row = list(grid[r])
        if conflict:
            row = [str(int(v) + 1) if re.fullmatch(r"\d+", v) and j > 0 else v for j, v in enumerate(row)]
        grid.append(row)
        what = f"第 {r + 1} 行重复到表尾"
    else:
        c = m.rng.randrange(3, len(grid[0]))
        for i, row in enumerate(grid):
            v = row[c] if c < len(row) else ""
            row.append(str(int(v) + 1) if conflict and i > 0 and re.fullmatch(r"\d+", v) else v)
        what = f"表头 {grid[0][c]!r} 整列重复到最右"
    return "duplicate", what + ("（数值不同）" if conflict else ""), _csv_bytes(grid, s.encoding), {}


def mut_encoding(m):
    s = m.s
    if s.kind == "xlsx":
        return mut_byte_flip(m)
    text = s.data.decode("utf-8-sig") if s.kind == "json" else _csv_text(s.data)[0]
    enc = m.rng.choice(["utf-16", "utf-16-le", "utf-16-be", "gb18030", "big5", "latin-1-mislabel", "utf-8-sig",
                        "utf-8"])
    if enc == "big5":
        data = text.encode("big5", errors="replace")
    elif enc == "latin-1-mislabel":   # UTF-8 bytes read as Latin-1 and saved again as UTF-8 (double encoding)
        data = text.encode("utf-8").decode("latin-1").encode("utf-8")
    elif enc == "utf-16-le":
        data = text.encode("utf-16-le")   # no BOM
    elif enc == "utf-16-be":
        data = b"\xfe\xff" + text.encode("utf-16-be")
    else:
        data = text.encode(enc)
    return "encoding", f"另存为 {enc}", data, {}


def mut_byte_flip(m):
    data = bytearray(m.s.data)
    k = m.rng.randint(1, 6)
    where = sorted(m.rng.randrange(len(data)) for _ in range(k))
    for i in where:
        data[i] ^= m.rng.randint(1, 255)
    return "byte_flip", f"翻转 {k} 个字节（偏移 {where[:6]}）", bytes(data), None


def mut_truncate(m):
    n = m.rng.randrange(len(m.s.data) // 10, len(m.s.data))
    return "truncate", f"截断到 {n}/{len(m.s.data)} 字节", m.s.data[:n], None


HOSTILE_NAMES = [" {stem} .{ext}", "-{stem}.{ext}", "--{stem}.{ext}", "{stem}..{ext}", "{stem}..社区.{ext}",
                 "{stem}\u202egpj.{ext}", "{stem}\u200b.{ext}", "{stem}$(id)`id`;'.{ext}", "{stem}\n2.{ext}",
                 "{stem}{long}.{ext}", "{stem}.{EXT}", "{stem} 🏠 ㊙.{ext}", "{stem}\\..\\x.{ext}"]


def mut_file_name(m):
    stem, ext = m.s.name.rsplit(".", 1)
    pattern = m.rng.choice(HOSTILE_NAMES)
    long = "长" * max(0, (250 - len(f"{stem}.{ext}".encode())) // 3)
    name = pattern.format(stem=stem, ext=ext, EXT=ext.upper(), long=long)
    return "file_name", f"文件名改为 {name[:80]!r}", m.s.data, {}, {}, name


MUTATIONS = {
    "non_finite": mut_non_finite, "huge_number": mut_huge_number, "line_separator": mut_line_separator,
    "formula": mut_formula, "markup": mut_markup, "bidi_zero_width": mut_bidi_zero_width,
    "long_string": mut_long_string, "number_forms": mut_number_forms, "hostile_label": mut_label,
    "hostile_header": mut_header, "shuffle": lambda m: _csv_or(m, mut_shuffle), "duplicate": mut_duplicate,
    "json_literal": mut_json_literal, "encoding": mut_encoding, "byte_flip": mut_byte_flip, "truncate": mut_truncate, "file_name": mut_file_name,
}


def _reference_touched(src: Source, data: bytes) -> tuple[dict, bool]:
    """Cells a byte-level mutation changed, read back with the standard library; (touched, unreadable)."""
    touched = {}
    try:
        if src.kind == "csv":
            grid = _csv_grid(data.decode(src.encoding))
            for (sheet, cell) in src.cells:
                r, c = _rc(cell)
                new = grid[r][c] if r < len(grid) and c < len(grid[r]) else None
                if new != src.grid[r][c]:
                    touched[(sheet, cell)] = Intent("free", text=new or "")
            # rows split or joined, or a header or label changed: cells moved, only finiteness is checked
            return touched, any(len(a) != len(b) for a, b in zip(grid, src.grid)) or len(grid) != len(src.grid) \
                or grid[0] != src.grid[0] or [r[:3] for r in grid] != [r[:3] for r in src.grid]
        if src.kind == "json":
            doc = json.loads(data.decode("utf-8-sig"))
            recs, old = doc[src.records_key], src.doc[src.records_key]
            for i, (a, b) in enumerate(zip(recs, old)):
                if a != b:
                    touched[("", f"[{i}]")] = Intent("free", text=str(a.get("数值", "")) if isinstance(a, dict) else "")
            return touched, len(recs) != len(old)
        from openpyxl import load_workbook
        wb = load_workbook(io.BytesIO(data))
        for ws in wb:
            old = src.grid.get(ws.title)
            if old is None:
                return {}, True
            new = [[("" if v is None else str(v)) for v in row] for row in ws.iter_rows(values_only=True)]
            if [r[:3] for r in new[:6]] != [r[:3] for r in old[:6]] or new[:5] != old[:5]:
                return {}, True
            for (sheet, cell) in src.cells:
                if sheet != ws.title:
                    continue
                r, c = _a1(cell)
                nv = new[r][c] if r < len(new) and c < len(new[r]) else None
                if nv != old[r][c]:
                    touched[(sheet, cell)] = Intent("free", text=nv or "")
        return touched, False
    except Exception:  # noqa: BLE001 - the reference parser cannot read it: the oracle only checks finiteness
        return {}, True


def make_mutants(sources: dict[str, Source], n: int, seed: int, only: list[str] | None = None) -> list[Mutant]:
    names = sorted(sources)
    kinds = only or list(MUTATIONS)
    out = []
    for i in range(n):
        rng = random.Random(f"{seed}:{i}")
        kind = kinds[i % len(kinds)]
        src = sources[names[(i // len(kinds)) % len(names)]] if kind != "shuffle" else \
            sources[rng.choice([x for x in names if sources[x].kind != "xlsx"])]
        res = MUTATIONS[kind](Mutator(src, rng))
        mutation, detail, data, touched = res[:4]
        remap = res[4] if len(res) > 4 else {}
        name = res[5] if len(res) > 5 else src.name
        mu = Mutant(i, src.name, mutation, detail, name, data, touched or {}, remap)
        if touched is None:   # byte-level: the standard library says which cells changed
            mu.touched, mu.free_all = _reference_touched(src, data)
            mu.check_cells = False
        if mutation in ("duplicate", "encoding") and src.kind != "csv":
            mu.check_cells = mutation != "duplicate"
        if mutation == "duplicate":
            mu.check_cells = False
        mu.file_id = _sha(data)
        out.append(mu)
    return out


# --------------------------------------------------------------------------- the oracle
def judge(mu: Mutant, src: Source, res: dict) -> dict:
    """Class of one mutant after a load, with the first problem found (cell, expected, got)."""
    raw = res["raw"].get(mu.file_id)
    rec = {"idx": mu.idx, "file": mu.name, "source": mu.source, "mutation": mu.mutation, "detail": mu.detail}
    if raw is None:
        return rec | {"class": "internal_error", "cell": "", "expected": "raw_file 中应有该文件的记录",
                      "got": "没有记录（文件被忽略）"}
    status, reason, message, n_q = raw
    if status == "rejected":
        if reason in (None, "internal_error", "unclassified") or not message:
            return rec | {"class": "internal_error", "cell": "", "expected": "有原因代码的拒收",
                          "got": f"{reason}: {(message or '')[:200]}"}
        return rec | {"class": "rejected", "reason": reason}
    bad_q = res["bad_quarantine"].get(mu.file_id)
    if bad_q:
        code, msg, cell = bad_q[0]
        return rec | {"class": "internal_error", "cell": cell or "", "expected": "有原因代码的隔离",
                      "got": f"{code}: {(msg or '')[:200]}"}
    problems = []
    for key, v, rawtext, sheet, cell in res["stg"].get(mu.file_id, []):
        at = mu.remap.get((sheet, cell), (sheet, cell))
        base = src.by_key.get(key)
        intent = mu.touched.get(at)
        where = f"{sheet + '!' if sheet else ''}{cell}"
        if v is None or not math.isfinite(v):
            problems.append((where, "有限数值或隔离", f"{v!r}（{rawtext[:40]!r}）"))
            continue
        if intent is None and mu.free_all:
            continue
        if intent is not None:
            base_at = src.cells.get(at)
            if base_at and base_at[0] != key and intent.kind != "free":
                problems.append((where, f"{base_at[0]}", f"落到 {key}：{rawtext[:40]!r}"))
            elif intent.kind == "not_land":
                problems.append((where, "隔离", f"{v!r}（原文 {intent.text[:40]!r}）"))
            elif intent.kind == "values" and not any(_close(v, x) for x in intent.values):
                problems.append((where, " 或 ".join(f"{x:g}" for x in intent.values) + " 或隔离",
                                 f"{v!r}（原文 {rawtext[:40]!r}）"))
            elif intent.kind == "free" and base_at:
                p_new, p_old = _plain(rawtext), _plain(base_at[2])
                if p_new is not None and p_old is not None and _close(p_old, base_at[1]) and not _close(v, p_new):
                    problems.append((where, f"{p_new:g}", f"{v!r}（原文 {rawtext[:40]!r}）"))
            continue
        if base is None:
            problems.append((where, "（未变异文件没有该社区×指标）", f"{key} = {v!r}（原文 {rawtext[:40]!r}）"))
        elif not _close(v, base[2]):
            problems.append((where, f"{base[2]!r}（原文 {base[3][:40]!r}）", f"{v!r}（原文 {rawtext[:40]!r}）"))
        elif mu.check_cells and at != (base[0], base[1]) and not _same_json_record(at, (base[0], base[1])):
            problems.append((where, f"来源单元格 {base[1]}", f"来源单元格 {cell}（值 {v!r}）"))
    touched_keys = {src.cells[c][0][:3] for c in mu.touched if c in src.cells}
    for fk, (v, rv, n, d) in res["facts"].get(mu.file_id, {}).items():
        if not math.isfinite(v):
            problems.append((f"{fk}", "有限数值", repr(v)))
            continue
        b = src.facts.get(fk)
        if b is None or fk in touched_keys or mu.free_all:
            continue   # judged on its cells above
        if all(_close(x, y) for x, y in zip((rv, n, d), b[1:])) and not _close(v, b[0]):
            problems.append((f"事实 {fk}", f"{b[0]!r}", f"{v!r}"))
    if problems:
        where, exp, got = problems[0]
        return rec | {"class": "silently_wrong", "cell": where, "expected": exp, "got": got,
                      "n_problems": len(problems)}
    return rec | {"class": "quarantined" if n_q else "exact"}


# --------------------------------------------------------------------------- the run
def batches(mutants: list[Mutant], size: int) -> list[list[Mutant]]:
    """At most one mutant per source file in a batch (the others load unmutated beside them)."""
    queues = defaultdict(list)
    for mu in mutants:
        queues[mu.source].append(mu)
    out = []
    while any(queues.values()):
        batch = []
        for src in sorted(queues, key=lambda s: -len(queues[s])):
            if queues[src] and len(batch) < size:
                batch.append(queues[src].pop(0))
        out.append(batch)
    return out


def run(n: int = 200, seed: int = 0, quarter: str = "2024Q4", inbox: Path = SAMPLE_INBOX, batch_size: int = 2,
        only: list[str] | None = None, workdir: Path | None = None, progress=None) -> dict:
    t0 = time.perf_counter()
    quiet = logging.getLogger("shequ.ingest")
    was, quiet.disabled = quiet.disabled, True   # each internal_error is in the report, not as a traceback
    tmp = Path(workdir or tempfile.mkdtemp(prefix="shequ_fuzz_"))
    loader = Loader(tmp, quarter)
    try:
        sources = load_sources(Path(inbox), quarter, loader)
        t_base = time.perf_counter() - t0
        mutants = make_mutants(sources, n, seed, only)
        t_gen = time.perf_counter() - t0 - t_base
        results, bystander = [], []
        for bi, batch in enumerate(batches(mutants, batch_size)):
            results.extend(_run_batch(loader, batch, sources, bystander))
            if progress:
                progress(len(results), n)
    finally:
        loader.close()
        quiet.disabled = was
        if workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    results.sort(key=lambda r: r["idx"])
    counts = Counter(r["class"] for r in results)
    by_mut = defaultdict(Counter)
    for r in results:
        by_mut[r["mutation"]][r["class"]] += 1
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "seed": seed, "files": n,
        "quarter": quarter, "batch_size": batch_size, "seconds": round(time.perf_counter() - t0, 1),
        "seconds_baseline": round(t_base, 1), "seconds_generate": round(t_gen, 1),
        "load": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "counts": {c: counts.get(c, 0) for c in CLASSES},
        "by_mutation": {k: dict(v) for k, v in sorted(by_mut.items())},
        "failures": [r for r in results if r["class"] in FAILURES],
        "bystander_changes": bystander,
        "results": results,
    }


def _run_batch(loader: Loader, batch: list[Mutant], sources: dict[str, Source], bystander: list) -> list[dict]:
    mutated = {mu.source for mu in batch}
    others = [s for s in sources.values() if s.name not in mutated]
    files = [(s.name, s.data) for s in others] + [(mu.name, mu.data) for mu in batch]
    try:
        res = loader.load(files, only=[mu.file_id for mu in batch])
        changed = loader.changed_neighbours([s.file_id for s in others])
    except Exception as e:  # noqa: BLE001 - a crash is a finding: retry each mutant alone to name it
        if len(batch) > 1:
            return [r for mu in batch for r in _run_batch(loader, [mu], sources, bystander)]
        mu = batch[0]
        return [{"idx": mu.idx, "file": mu.name, "source": mu.source, "mutation": mu.mutation, "detail": mu.detail,
                 "class": "crash", "cell": "", "expected": "载入不中断", "got": f"{type(e).__name__}: {str(e)[:300]}"}]
    names = {s.file_id: s.name for s in others}
    for fid, ck, ind, pk, v, got in changed:
        bystander.append({"beside": [mu.idx for mu in batch], "file": names[fid], "fact": f"{(ck, ind, pk)}",
                          "expected": v, "got": got})
    return [judge(mu, sources[mu.source], res) for mu in batch]


# --------------------------------------------------------------------------- report
def summary_zh(rep: dict, examples: int = 3) -> str:
    lines = [f"模糊测试：{rep['files']} 个变异文件（种子 {rep['seed']}，季度 {rep['quarter']}，每批 {rep['batch_size']} 个"
             f"变异文件与其余区的原文件同载），用时 {rep['seconds']} 秒", ""]
    lines.append(f"{'结果类别':<14}{'数量':>8}")
    for c in CLASSES:
        mark = " ←失败" if c in FAILURES and rep["counts"][c] else ""
        lines.append(f"{LABEL_ZH[c]:<14}{rep['counts'][c]:>8}{mark}")
    lines += ["", "按变异类别：" + "  ".join(f"{LABEL_ZH[c]}" for c in CLASSES)]
    for mut, cnt in rep["by_mutation"].items():
        lines.append(f"  {mut:<16}" + "  ".join(f"{cnt.get(c, 0):>4}" for c in CLASSES))
    if rep["bystander_changes"]:
        lines.append(f"\n旁边未变异文件的事实被改变：{len(rep['bystander_changes'])} 批，例：{rep['bystander_changes'][0]}")
    for c in FAILURES:
        ex = [r for r in rep["failures"] if r["class"] == c]
        if not ex:
            continue
        lines += ["", f"{LABEL_ZH[c]}（{len(ex)} 个），前 {min(examples, len(ex))} 例："]
        seen = Counter()
        for r in ex:
            if seen[r["mutation"]] >= examples:
                continue
            seen[r["mutation"]] += 1
            lines.append(f"  文件 {r['file']!r}｜变异 {r['mutation']}：{r['detail'][:80]}｜单元格 {r.get('cell', '')}"
                         f"｜应为 {str(r.get('expected', ''))[:80]}｜实得 {str(r.get('got', ''))[:120]}")
    ok = not any(rep["counts"][c] for c in FAILURES) and not rep["bystander_changes"]
    lines += ["", "结论：" + ("没有静默错误、内部错误或崩溃。" if ok else "发现失败，见上。")]
    return "\n".join(lines)


def register(sub) -> None:
    p = sub.add_parser("fuzz", help="模糊测试：变异样例收件箱的文件，载入临时仓库，与未变异文件的事实逐一对照")
    p.add_argument("--files", type=int, default=200, help="变异文件个数（默认 200）")
    p.add_argument("--seed", type=int, default=0, help="随机种子（同一种子同一结果）")
    p.add_argument("--quarter", default="2024Q4", help="取样例收件箱的哪个季度（默认 2024Q4）")
    p.add_argument("--batch", type=int, default=2, help="每批同载的变异文件数（每个来源文件至多一个，默认 2）")
    p.add_argument("--only", help="只跑这些变异类别，逗号分隔：" + ",".join(MUTATIONS))
    p.add_argument("--out", help="JSON 报告路径")
    p.set_defaults(fn=cmd_fuzz)


def cmd_fuzz(args) -> int:
    only = [x.strip() for x in args.only.split(",")] if args.only else None
    if only and (bad := [x for x in only if x not in MUTATIONS]):
        print(f"未知的变异类别：{'、'.join(bad)}（可用：{'、'.join(MUTATIONS)}）")
        return 2
    rep = run(args.files, args.seed, args.quarter, batch_size=max(1, min(args.batch, 4)), only=only)
    print(summary_zh(rep))
    if args.out:
        Path(args.out).write_text(json.dumps({k: v for k, v in rep.items() if k != "results"} | {
            "results": rep["results"]}, ensure_ascii=False, indent=1), encoding="utf-8")
        print(f"报告已写入 {args.out}")
    return 1 if any(rep["counts"][c] for c in FAILURES) or rep["bystander_changes"] else 0
