"""No file in the inbox is skipped without a record (issue 13, issue 15 item 1): .doc, .pdf, files without an
extension, dot-files, Office lock files and zero-byte files each get a raw_file row with a precise reason, and the
readable files beside them still load."""

import polars as pl

from hostile_helpers import PREFIX, csv_bytes, ingest_files
from shequ.ingest import inventory

GOOD = csv_bytes([["街道", "社区名称", "志愿者组织数"], ["南湖街道", "南湖社区", "3"]])

FILES = {
    f"{PREFIX}report.doc": (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1 a word file", "unsupported_format"),
    f"{PREFIX}report.pdf": (b"%PDF-1.4 a pdf", "unsupported_format"),
    f"{PREFIX}noextension": (b"some bytes", "unsupported_format"),
    f"{PREFIX}scan.jpg": (b"\xff\xd8\xff\xe0 jpeg", "unsupported_format"),
    ".DS_Store": (b"\x00\x00\x00\x01Bud1", "hidden_file"),
    f".{PREFIX}hidden.csv": (GOOD + b"\r\n", "hidden_file"),
    "sub/.cache/notes.txt": (b"cached", "hidden_file"),        # inside a hidden folder: recorded, not read
    f"~${PREFIX}open.xlsx": (b"lock owner", "lock_file"),
    f"{PREFIX}empty.xlsx": (b"", "empty_file"),
    f"{PREFIX}good.csv": (GOOD, None),
}


def test_every_file_gets_a_raw_file_row_with_its_reason(tmp_path, template):
    out = ingest_files(tmp_path, template, {k: v for k, (v, _) in FILES.items()})
    assert {str(p.relative_to(out["inbox"])) for p in inventory(out["inbox"])} == set(FILES)
    raw = {r["source_file"]: r for r in out["raw_file"].iter_rows(named=True)}
    assert set(raw) == set(FILES)
    for name, (_, reason) in FILES.items():
        if reason:
            assert (raw[name]["status"], raw[name]["reason_code"]) == ("rejected", reason), name
            assert name in raw[name]["message"], raw[name]["message"]
    assert raw[f"{PREFIX}good.csv"]["status"] == "loaded"
    assert ".cache" in raw["sub/.cache/notes.txt"]["message"]
    q = out["quarantine"]
    assert set(q.filter(pl.col("reason_code").is_in(["unsupported_format", "hidden_file", "lock_file", "empty_file"]))
               ["source_file"]) == {n for n, (_, r) in FILES.items() if r}
    assert out["stg"]["name"].to_list() == ["南湖社区"]


def test_legacy_xls_is_read_not_skipped(tmp_path, template):
    import io

    import xlwt

    wb = xlwt.Workbook(encoding="utf-8")
    ws = wb.add_sheet("Sheet1")
    for r, row in enumerate([["街道", "社区名称", "志愿者组织数"], ["南湖街道", "南湖社区", 6]]):
        for c, v in enumerate(row):
            ws.write(r, c, v)
    buf = io.BytesIO()
    wb.save(buf)
    out = ingest_files(tmp_path, template, {f"{PREFIX}legacy.xls": buf.getvalue()})
    assert out["raw_file"]["status"].to_list() == ["loaded"]
    assert out["stg"].select("name", "value", "source_cell").rows() == [("南湖社区", 6.0, "C2")]
