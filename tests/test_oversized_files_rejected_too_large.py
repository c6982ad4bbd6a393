"""Files over a resource limit are rejected with `too_large` before they are read, and the rest of the inbox loads.

Limits live in shequ/config.py (LIMIT_SETTINGS) with SHEQU_MAX_* environment overrides; the tests lower them
where a realistic fixture would be slow to write, and keep the defaults for the 1 GB bomb."""

import csv
import json
import os
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

from shequ import ingest, pipeline
from shequ.config import LIMIT_SETTINGS, MODELS, ROOT
from shequ.readers import FileRejected, read_file
from shequ.warehouse import connect

GOOD_CSV = "街道,居委会,持证率\r\n北村街道,北村社区,50%\r\n".encode("gbk")

_CT = ('<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
       'content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
       'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/'
       'workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
       '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-'
       'officedocument.spreadsheetml.worksheet+xml"/></Types>')
_RELS = ('<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/'
         '2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
         'relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>')
_WB = ('<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/'
       '2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>'
       '<sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>')
_WB_RELS = ('<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/'
            'package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
            'officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>')
_HEAD = (b'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/'
         b'spreadsheetml/2006/main"><dimension ref="A1:C3"/><sheetData>')
_TAIL = b"</sheetData></worksheet>"


def _cell(ref: str, text: str) -> str:
    return f'<c r="{ref}" t="inlineStr"><is><t>{text}</t></is></c>'


def _table_rows() -> bytes:
    """A valid little survey table (title, header, one community) as sheet XML rows."""
    return ("<row r=\"1\">" + _cell("A1", "天桥区2024年第一季度") + "</row>"
            "<row r=\"2\">" + _cell("A2", "街道") + _cell("B2", "居委会") + _cell("C2", "持证率") + "</row>"
            "<row r=\"3\">" + _cell("A3", "北村街道") + _cell("B3", "北村社区") + _cell("C3", "50%") + "</row>"
            ).encode()


def write_xlsx(path: Path, sheet_chunks, level: int = 6) -> Path:
    """An xlsx written part by part; the sheet XML is streamed from ``sheet_chunks`` (an iterable of bytes)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as z:
        for name, text in [("[Content_Types].xml", _CT), ("_rels/.rels", _RELS), ("xl/workbook.xml", _WB),
                           ("xl/_rels/workbook.xml.rels", _WB_RELS)]:
            z.writestr(name, text)
        with z.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as fh:
            fh.write(_HEAD)
            for chunk in sheet_chunks:
                fh.write(chunk)
            fh.write(_TAIL)
    return path


def write_bomb(path: Path, inflate_mb: int) -> Path:
    """A sheet whose XML inflates to ``inflate_mb`` MB of identical rows (deflate level 1: about 5 s per GB)."""
    block = b'<row><c t="inlineStr"><is><t>x</t></is></c></row>' * 2000
    n = -(-inflate_mb * (1 << 20) // len(block))   # rounded up: at least inflate_mb
    return write_xlsx(path, (block for _ in range(n)), level=1)


def _reject(path: Path) -> FileRejected:
    with pytest.raises(FileRejected) as e:
        read_file(path)
    return e.value


def _assert_names_limit(e: FileRejected, env: str):
    assert e.reason == "too_large"
    assert env in e.message and "超过上限" in e.message and "docs/limits-and-privacy.md" in e.message


@pytest.fixture
def inbox(tmp_path):
    box = tmp_path / "inbox" / "2024Q1"
    box.mkdir(parents=True)
    (box / "天桥区_2024Q1_持证率.csv").write_bytes(GOOD_CSV)
    return box


def _ingest(template, tmp_path, inbox_root):
    import shutil
    wh = tmp_path / "wh.duckdb"
    shutil.copy(template, wh)
    with connect(wh) as con:
        summaries = {Path(s.source_file).name: s for s in ingest.ingest_inbox(con, inbox_root)}
        rows = con.execute("SELECT source_file, status, reason_code, message FROM raw_file").fetchall()
    return summaries, {Path(r[0]).name: r[1:] for r in rows}


def test_reason_code_too_large_is_documented():
    with open(MODELS / "catalogue" / "reason_codes.csv", encoding="utf-8", newline="") as fh:
        codes = {r["code"]: r for r in csv.DictReader(fh)}
    assert codes["too_large"]["label_zh"] and "SHEQU_MAX_" in codes["too_large"]["description_zh"]
    doc = (ROOT / "docs" / "limits-and-privacy.md").read_text(encoding="utf-8")
    for env, default, _label, _unit in LIMIT_SETTINGS.values():
        assert env in doc, f"{env} is not documented"


def test_bomb_by_declared_size_is_rejected_from_the_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("SHEQU_MAX_INFLATED_MB", "8")
    bomb = write_bomb(tmp_path / "天桥区_2024Q1_炸弹.xlsx", 12)
    t0 = time.perf_counter()
    e = _reject(bomb)
    assert time.perf_counter() - t0 < 1.0          # the central directory only, nothing inflated
    _assert_names_limit(e, "SHEQU_MAX_INFLATED_MB")
    assert "12.1 MB" in e.message and "8.0 MB" in e.message   # the sheet plus the small parts


def test_compression_ratio_over_the_limit_is_rejected(tmp_path):
    # 4 MB of one repeated row deflates about 500:1, over the default 200:1, though far under the size limit
    block = b'<row><c t="inlineStr"><is><t>x</t></is></c></row>' * 2000
    path = write_xlsx(tmp_path / "ratio.xlsx", (block for _ in range(40)), level=9)
    _assert_names_limit(_reject(path), "SHEQU_MAX_COMPRESSION_RATIO")


def test_part_that_lies_about_its_size_is_rejected(tmp_path):
    """The directory says 1,000 bytes; the data inflates to 2 MB. zipfile stops at the declared size and the CRC
    does not match: rejected, never handed to calamine."""
    path = tmp_path / "lie.xlsx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in [("[Content_Types].xml", _CT), ("_rels/.rels", _RELS), ("xl/workbook.xml", _WB),
                           ("xl/_rels/workbook.xml.rels", _WB_RELS)]:
            z.writestr(name, text)
        z.writestr("xl/worksheets/sheet1.xml", _HEAD + _table_rows() + b"<!--" + b"x" * (2 << 20) + b"-->" + _TAIL)
    data = bytearray(path.read_bytes())
    name = b"xl/worksheets/sheet1.xml"
    cd = data.find(b"PK\x01\x02")
    while data[cd + 46:cd + 46 + len(name)] != name:      # the sheet's central directory entry
        cd = data.find(b"PK\x01\x02", cd + 4)
    data[cd + 24:cd + 28] = (1000).to_bytes(4, "little")  # uncompressed size
    path.write_bytes(bytes(data))
    assert zipfile.ZipFile(path).getinfo(name.decode()).file_size == 1000
    e = _reject(path)
    assert e.reason == "too_large" and "声明" in e.message


def test_far_row_reference_is_rejected_before_calamine(tmp_path):
    """One cell at Z23000000: calamine would allocate the dense grid (tens of GB) and abort the process."""
    far = _table_rows() + ('<row r="23000000">' + _cell("Z23000000", "1") + "</row>").encode()
    e = _reject(write_xlsx(tmp_path / "far.xlsx", [far]))
    _assert_names_limit(e, "SHEQU_MAX_ROWS")
    assert "23,000,000" in e.message


def test_far_column_reference_is_rejected(tmp_path):
    far = _table_rows() + ('<row r="4">' + _cell("XFD4", "1") + "</row>").encode()
    e = _reject(write_xlsx(tmp_path / "wide.xlsx", [far]))
    _assert_names_limit(e, "SHEQU_MAX_COLUMNS")
    assert "16,384" in e.message


def test_row_count_is_streamed_without_references(tmp_path, monkeypatch):
    monkeypatch.setenv("SHEQU_MAX_ROWS", "1000")
    rows = b"<row><c t=\"inlineStr\"><is><t>1</t></is></c></row>" * 1500
    e = _reject(write_xlsx(tmp_path / "rows.xlsx", [_table_rows(), rows]))
    _assert_names_limit(e, "SHEQU_MAX_ROWS")


def test_csv_rows_and_columns(tmp_path, monkeypatch):
    monkeypatch.setenv("SHEQU_MAX_ROWS", "1000")
    monkeypatch.setenv("SHEQU_MAX_COLUMNS", "100")
    long = tmp_path / "天桥区_2024Q1_long.csv"
    long.write_bytes(("街道,居委会,持证率\r\n" + "北村街道,北村社区,50%\r\n" * 1500).encode("gbk"))
    e = _reject(long)
    _assert_names_limit(e, "SHEQU_MAX_ROWS")
    wide = tmp_path / "天桥区_2024Q1_wide.csv"
    wide.write_text("街道,居委会," + ",".join(f"列{i}" for i in range(300)) + "\n", encoding="utf-8")
    e = _reject(wide)
    _assert_names_limit(e, "SHEQU_MAX_COLUMNS")
    assert "302" in e.message


def test_json_depth_checked_before_parsing(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000, encoding="utf-8")   # json.loads would raise RecursionError
    e = _reject(deep)
    _assert_names_limit(e, "SHEQU_MAX_JSON_DEPTH")
    # brackets inside strings do not count
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps({"期间": "2024年第一季度", "说明": "[" * 500,
                              "records": [{"街道": "北村街道", "社区": "北村社区", "指标": "持证率", "数值": "50%"}]},
                             ensure_ascii=False), encoding="utf-8")
    assert read_file(ok).cells.height == 1


def test_file_size_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("SHEQU_MAX_FILE_MB", "0.01")
    big = tmp_path / "big.csv"
    big.write_bytes(GOOD_CSV + b"," * 20_000)
    e = _reject(big)
    _assert_names_limit(e, "SHEQU_MAX_FILE_MB")


def test_rest_of_the_inbox_loads_beside_oversized_files(template, tmp_path, inbox, monkeypatch):
    monkeypatch.setenv("SHEQU_MAX_INFLATED_MB", "8")
    write_bomb(inbox / "天桥区_2024Q1_炸弹.xlsx", 12)
    far = _table_rows() + ('<row r="23000000">' + _cell("Z23000000", "1") + "</row>").encode()
    write_xlsx(inbox / "天桥区_2024Q1_远行.xlsx", [far])
    # a deeply nested JSON at the inbox root (its quarter is read from its contents, so the scan opens it)
    (inbox.parent / "深层.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    scanned = {f.path.name: f.quarters for f in pipeline.scan_inbox(None, inbox.parent)}
    assert scanned["深层.json"] == [] and scanned["天桥区_2024Q1_持证率.csv"] == ["2024Q1"]
    summaries, raw = _ingest(template, tmp_path, inbox.parent)
    assert raw["天桥区_2024Q1_持证率.csv"][0] == "loaded"
    for name in ("天桥区_2024Q1_炸弹.xlsx", "天桥区_2024Q1_远行.xlsx", "深层.json"):
        status, reason, message = raw[name]
        assert (status, reason) == ("rejected", "too_large"), (name, raw[name])
        assert name in message and "SHEQU_MAX_" in message


MEASURE = textwrap.dedent("""
    import json, resource, shutil, sys
    from pathlib import Path
    from shequ import ingest
    from shequ.warehouse import connect
    shutil.copy(sys.argv[1], sys.argv[2])
    with connect(sys.argv[2]) as con:
        out = {Path(s.source_file).name: [s.status, s.reason_code] for s in ingest.ingest_inbox(con, Path(sys.argv[3]))}
    # VmHWM: the peak RSS of this process image. ru_maxrss would also count the pytest parent's memory at fork
    # time (it survives execve), which made a 258 MB ingest read as 1.1 GB inside the full suite
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
    out["peak_mb"] = int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out, ensure_ascii=False))
""")


def test_one_gigabyte_bomb_rejected_under_500_mb_peak(template, tmp_path, inbox):
    """Default limits; the bomb inflates to 1 GB. Peak memory of the whole ingest process is measured in a
    subprocess (VmHWM of that process image alone)."""
    bomb = write_bomb(inbox / "天桥区_2024Q1_1GB.xlsx", 1024)
    assert sum(i.file_size for i in zipfile.ZipFile(bomb).infolist()) >= 1 << 30
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(template), str(tmp_path / "m.duckdb"),
                           str(inbox.parent)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"1 GB bomb: peak {out['peak_mb']:.0f} MB, {seconds:.1f} s for the whole ingest process")
    assert out["天桥区_2024Q1_1GB.xlsx"] == ["rejected", "too_large"]
    assert out["天桥区_2024Q1_持证率.csv"] == ["loaded", None]
    assert out["peak_mb"] < 500


@pytest.mark.parametrize("cell", ['<c s="1" r="Z23000000" t="inlineStr"><is><t>1</t></is></c>',
                                  '<x:c r="Z23000000" t="inlineStr"><x:is><x:t>1</x:t></x:is></x:c>',
                                  '<c\tr="Z23000000"><v>1</v></c>'])
def test_far_reference_found_in_any_spelling_of_the_tag(tmp_path, cell):
    far = _table_rows() + f'<row r="4">{cell}</row>'.encode()
    _assert_names_limit(_reject(write_xlsx(tmp_path / "odd.xlsx", [far])), "SHEQU_MAX_ROWS")


@pytest.mark.parametrize("back", [1, 4, 9, 14])
def test_far_reference_cut_by_a_chunk_border_is_still_seen(tmp_path, back):
    """The scan reads 1 MB at a time: a reference that straddles two chunks is counted once, whole."""
    from shequ.limits import CHUNK

    cell = b'<c r="Z23000000"><v>1</v></c>'
    head = _HEAD + _table_rows() + b'<row r="4">'
    pad = CHUNK - len(head) - back - len(b"<!---->")
    filler = os.urandom(pad // 2 + 1).hex().encode()[:pad]        # incompressible, so the ratio check stays quiet
    body = _table_rows() + b'<row r="4"><!--' + filler + b"-->" + cell + b"</row>"
    _assert_names_limit(_reject(write_xlsx(tmp_path / f"border{back}.xlsx", [body])), "SHEQU_MAX_ROWS")


def test_legacy_xls_extent_is_checked(tmp_path):
    """Two cells at A1 and IV65536 of a BIFF8 .xls: calamine would build a 16.7M-cell grid (about 1 GB)."""
    xlwt = pytest.importorskip("xlwt")
    wb = xlwt.Workbook()
    ws = wb.add_sheet("S")
    ws.write(0, 0, "社区名称")
    ws.write(65535, 255, "x")
    wb.save(str(tmp_path / "far.xls"))
    e = _reject(tmp_path / "far.xls")
    _assert_names_limit(e, "SHEQU_MAX_CELLS")
    assert "16,777,216" in e.message


def test_refresh_job_survives_oversized_files(tmp_path, inbox):
    """Through the Dagster job `shequ refresh` runs: the 23M-row xlsx and a deeply nested JSON at the inbox root
    are rejected as too_large and the good file beside them loads (before the limits the first aborted the process
    and the second stopped the CLI before anything loaded)."""
    from conftest import run_quarter

    far = _table_rows() + ('<row r="23000000">' + _cell("Z23000000", "1") + "</row>").encode()
    write_xlsx(inbox / "天桥区_2024Q1_远行.xlsx", [far])
    (inbox.parent / "深层.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    wh = tmp_path / "wh.duckdb"
    run_quarter(wh, inbox.parent, "2024Q1")
    with connect(wh, read_only=True) as con:
        raw = {Path(r[0]).name: r[1:] for r in con.execute(
            "SELECT source_file, status, reason_code FROM raw_file").fetchall()}
        n = con.execute("SELECT count(*) FROM fact_indicator_value WHERE period_key = '2024Q1'").fetchall()[0][0]
    assert raw == {"天桥区_2024Q1_持证率.csv": ("loaded", None), "天桥区_2024Q1_远行.xlsx": ("rejected", "too_large"),
                   "深层.json": ("rejected", "too_large")}
    assert n == 1
