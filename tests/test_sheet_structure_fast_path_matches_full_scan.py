"""The readers' shortcuts give what the full scans they replace gave.

- xlsx structure: a pattern is skipped when its literal is absent (no merges, nothing hidden, no formula, no error
  cell), and the grid origin comes from the first value cell unless some cell lies above or left of it; here both
  are compared with the full scan (every pattern run, the minimum over every value cell) on workbooks with and
  without hidden rows, hidden columns and merges, and on sheet XML written out of order.
- decode ladder: the share of ordinary characters is counted by whole-text encodes; compared with the count per
  character on GBK, Big5, UTF-8 and mixed-script text, and the ladder's choice of encoding on each.
- limits: the two patterns that send an unusual chunk to the general scan find what the one alternation found.
"""

import random
import re
import zipfile

import openpyxl
import pytest

from shequ import limits, readers
from shequ.text import _ordinary_share, decode_bytes, t2s


# ------------------------------------------------------------------ xlsx structure
def full_scan(xml: bytes) -> dict:
    """Every pattern over the whole sheet, origin as the minimum over every value cell (the reader before the
    shortcuts)."""
    merged = [(int(m[1]) - 1, readers.col_index(m[0].decode()), int(m[3]) - 1, readers.col_index(m[2].decode()))
              for m in readers._MERGE.findall(xml)]
    hidden = set()
    for tag in readers._COL.findall(xml):
        a = dict(readers._ATTR.findall(tag))
        if a.get(b"hidden") in (b"1", b"true"):
            hidden.update(range(int(a[b"min"]) - 1, int(a[b"max"])))
    hidden_rows = {int(m.group(1)) for tag in readers._HIDDEN_ROW.findall(xml)
                   if (m := readers._ROW_NUMBER.search(tag))}
    refs = readers._VALUE_CELL.findall(xml)
    origin = (min(int(r) for _, r in refs) - 1, min(readers.col_index(c.decode()) for c, _ in refs)) if refs \
        else (0, 0)
    return {"merged": merged, "hidden": hidden, "hidden_rows": hidden_rows,
            "formula_no_value": [m.decode() for m in readers._FORMULA_NO_VALUE.findall(xml)],
            "errors": {r.decode(): v.decode() for r, v in readers._ERROR_CELL.findall(xml)}, "origin": origin}


def _workbook(path, *, start=(1, 1), hidden_rows=(), hidden_cols=(), merges=(), formula=False, title_at=None):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "2024Q1"
    r0, c0 = start
    if title_at:
        ws.cell(*title_at, value="南湖街道2024年第一季度社区建设统计表")
    header = ["社区名称", "社区工作者人数", "常住人口", "居委会成员人数"]
    for j, h in enumerate(header):
        ws.cell(r0, c0 + j, value=h)
    for i in range(12):
        ws.cell(r0 + 1 + i, c0, value=f"第{i + 1}社区")
        for j in range(1, len(header)):
            ws.cell(r0 + 1 + i, c0 + j, value=(i + 1) * (j + 3))
    if formula:
        ws.cell(r0 + 13, c0, value="合计")
        ws.cell(r0 + 13, c0 + 1, value=f"=SUM({openpyxl.utils.get_column_letter(c0 + 1)}{r0 + 1}:"
                                         f"{openpyxl.utils.get_column_letter(c0 + 1)}{r0 + 12})")
    for r in hidden_rows:
        ws.row_dimensions[r].hidden = True
    for c in hidden_cols:
        ws.column_dimensions[c].hidden = True
    for m in merges:
        ws.merge_cells(m)
    wb.save(path)
    return path


def _sheet_xml(path) -> bytes:
    with zipfile.ZipFile(path) as z:
        return z.read("xl/worksheets/sheet1.xml")


@pytest.mark.parametrize("shape", [
    {},
    {"hidden_rows": (4, 7)},
    {"hidden_cols": ("C",)},
    {"merges": ("A20:B21",)},
    {"hidden_rows": (3,), "hidden_cols": ("B", "D"), "merges": ("F1:H1",), "formula": True},
    {"start": (5, 3)},
    {"start": (5, 3), "title_at": (2, 2)},            # a title above and left of the first value cell
    {"start": (4, 2), "title_at": (1, 5)},            # a title above, right of the table
    {"start": (3, 1), "formula": True, "hidden_rows": (9,)},
])
def test_xlsx_structure_equals_full_scan(tmp_path, shape):
    path = _workbook(tmp_path / "t.xlsx", **shape)
    want = full_scan(_sheet_xml(path))
    got = readers._xlsx_structure(path)["2024Q1"]
    assert {k: got[k] for k in want} == want
    if shape.get("hidden_rows"):
        assert got["hidden_rows"] == set(shape["hidden_rows"])
    if shape.get("title_at") or shape.get("start"):
        first = min([shape.get("start", (1, 1))] + ([shape["title_at"]] if shape.get("title_at") else []))
        assert got["origin"][0] == first[0] - 1


def _cells_xml(refs: list[str]) -> bytes:
    cells = "".join(f'<c r="{r}" t="n"><v>1</v></c>' for r in refs)
    return f'<worksheet><sheetData><row r="1">{cells}</row></sheetData></worksheet>'.encode()


@pytest.mark.parametrize("refs", [
    ["A1", "B1", "C2"],
    ["C5", "D5", "B9"],                 # a later cell left of the first one
    ["C5", "D5", "E3"],                 # a later cell above the first one
    ["B10", "B9", "B100", "B1"],        # rows out of order, by digit count too
    ["AA217", "AB218", "Z300"],         # one letter fewer is a lesser column
    ["AB7", "AA8"],
    ["C010", "C9"],                     # a leading zero: row 10 after row 9
    ["D1", "D0"],                       # a row 0 (corrupt): the full scan's minimum all the same
])
def test_grid_origin_equals_minimum_over_all_cells(refs):
    xml = _cells_xml(refs)
    assert readers._grid_origin(xml) == full_scan(xml)["origin"]


def test_grid_origin_on_random_sheets():
    rng = random.Random(11)
    for _ in range(300):
        refs = [f"{readers.col_letter(rng.choice([0, 1, 2, 25, 26, 27, 51, 700, rng.randrange(800)]))}"
                f"{rng.choice([1, 2, 9, 10, 99, 100, 217, rng.randrange(1, 5000)])}" for _ in range(rng.randint(1, 6))]
        xml = _cells_xml(refs)
        assert readers._grid_origin(xml) == full_scan(xml)["origin"], refs


def test_lesser_pattern_matches_exactly_the_lesser_values():
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    for value in ["A", "B", "Z", "AA", "AZ", "BA", "DQ", "ZZ", "AAA", "XFD"]:
        pat = readers._lesser(value, letters)
        for n in range(1, 1000):
            other = readers.col_letter(n - 1)
            found = bool(pat) and re.fullmatch(f"(?:{pat})", other) is not None
            assert found == (readers.col_index(other) < readers.col_index(value)), (value, other)
    for value in ["1", "2", "9", "10", "217", "1000"]:
        pat = readers._lesser(value, "0123456789")
        for n in range(0, 1200):
            for written in (str(n), f"0{n}"):
                found = re.fullmatch(f"0*(?:{pat})", written) is not None
                assert found == (n < int(value)), (value, written)


def test_hidden_rows_and_columns_still_flag_cells(tmp_path):
    path = _workbook(tmp_path / "h.xlsx", hidden_rows=(4,), hidden_cols=("C",), merges=("A20:B21",))
    cells = readers.read_file(path).cells
    hidden = set(cells.filter(cells["hidden"])["source_cell"].to_list())
    assert hidden == {f"{c}4" for c in "BCD"} | {f"C{r}" for r in range(2, 14)}


# ------------------------------------------------------------------ decode ladder
def per_character_share(text: str) -> float:
    """The share counted one character at a time (the ladder before the whole-text count)."""
    if not text:
        return 1.0
    simp = t2s(text)
    ok = 0
    for ch in simp:
        if ch.isascii():
            ok += 1
            continue
        try:
            ch.encode("gb2312")
            ok += 1
        except UnicodeEncodeError:
            pass
    return ok / len(simp)


TEXTS = [
    "",
    "社区名称,常住人口\n南湖社区,12000\n",
    "社區名稱,常住人口\n南湖社區,12000\n",                       # Traditional: simplified before counting
    "名称,值\n乾城社区,1\n𠮷野家,2\n",                            # a character outside the BMP
    "名称,备注\n南湖社区,☺ ♥ é ü ß\n",                            # symbols and Latin letters outside GB2312
    "이름,값\n남호,1\n",                                           # Korean
    "\ue000\ue001,\uf8ff\n",                                       # private use
    "plain ascii only, 1, 2, 3\n",
    "全角，标点：“引号”（括号）——破折号……省略号\n",
]


@pytest.mark.parametrize("text", TEXTS)
def test_ordinary_share_equals_per_character_count(text):
    assert _ordinary_share(text) == per_character_share(text)


def test_ordinary_share_on_random_mixed_script_text():
    rng = random.Random(7)
    pools = [(0x20, 0x7f), (0x4e00, 0x9fff), (0x3000, 0x3100), (0xac00, 0xad00), (0x80, 0x300), (0xe000, 0xe100),
             (0x1f600, 0x1f650), (0x20000, 0x20100), (0xff00, 0xff60)]
    for _ in range(500):
        text = "".join(chr(rng.randrange(*rng.choice(pools))) for _ in range(rng.randint(1, 80)))
        assert _ordinary_share(text) == per_character_share(text), text


@pytest.mark.parametrize("text, encoding, expected", [
    ("社区名称,常住人口\n南湖社区,12000\n", "gbk", "gb18030"),
    ("社區名稱,常住人口\n南湖社區,12000\n", "big5", "big5"),
    ("社区名称,常住人口\n南湖社区,12000\n", "utf-8", "utf-8"),
    ("名称,备注\n南湖社区,☺ é\n", "utf-8", "utf-8"),
    ("名称,备注\n南湖社区,共建单位\n", "gb18030", "gb18030"),
])
def test_decode_ladder_choice(text, encoding, expected):
    decoded, enc = decode_bytes(text.encode(encoding))
    assert enc == expected
    assert decoded == text


def test_ladder_choice_follows_the_per_character_share():
    """For bytes both gb18030 and big5 read, the ladder keeps the decode the per-character count preferred."""
    rng = random.Random(3)
    words = ["社区", "社區", "居委会", "居委會", "街道", "常住人口", "名称", "名稱", "数值", "數值", "单位", "單位"]
    checked = 0
    for _ in range(200):
        enc = rng.choice(["gbk", "big5"])
        usable = [w for w in words if w.encode(enc, "replace") == w.encode(enc, "ignore")]
        raw = ",".join(rng.choice(usable) for _ in range(rng.randint(1, 6))).encode(enc)
        decodes = {}
        for enc in ("gb18030", "big5"):
            try:
                decodes[enc] = raw.decode(enc)
            except UnicodeDecodeError:
                pass
        if len(decodes) < 2:
            continue
        checked += 1
        best = max(decodes, key=lambda e: (per_character_share(decodes[e]), e == "gb18030"))
        assert decode_bytes(raw)[1] == best
    assert checked > 20


# ------------------------------------------------------------------ limits
ODD_BOTH = re.compile(rb'<(?:row|c)[>/\t\r\n]|:(?:row|c)[\s>/]')


@pytest.mark.parametrize("chunk", [
    b'<row r="1"><c r="A1"><v>1</v></c></row>',
    b'<row r="1"><c><v>1</v></c></row>',
    b'<row/><c r="A1"/>',
    b'<row\tr="1"><c\nr="A1"/>',
    b'<x:row r="1"><x:c r="B2"><x:v>1</x:v></x:c></x:row>',
    b'<x:c>', b'<x:row/>', b'a:c b', b'<c r="A1" xml:space="preserve"/>',
])
def test_odd_tag_patterns_find_what_the_alternation_found(chunk):
    split = limits._ODD_TAG.search(chunk) is not None or limits._ODD_NS_TAG.search(chunk) is not None
    assert split == (ODD_BOTH.search(chunk) is not None)


def test_namespaced_cells_still_measured(tmp_path):
    """A sheet written with a namespace prefix goes through the general scan: its furthest cell is found."""
    path = tmp_path / "ns.xlsx"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("xl/worksheets/sheet1.xml",
                   '<x:worksheet xmlns:x="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><x:sheetData>'
                   '<x:row r="1"><x:c r="A1"><x:v>1</x:v></x:c></x:row>'
                   '<x:row r="40"><x:c r="AB40"><x:v>2</x:v></x:c></x:row></x:sheetData></x:worksheet>')
    measured = limits.check_xlsx(path)
    assert (measured["rows"], measured["columns"]) == (40, 28)
