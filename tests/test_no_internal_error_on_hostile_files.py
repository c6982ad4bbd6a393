"""Hostile files end with a precise reason, never internal_error (issue 13): corrupt sheet XML, a 5,000-digit JSON
number, JSON nested 100,000 deep (also at the inbox root, where the CLI's quarter scan reads it first), a CSV cell
over the csv module's field limit. The rest of the inbox still loads, and `shequ refresh` does not die."""

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import polars as pl
from openpyxl import Workbook

from hostile_helpers import PREFIX, csv_bytes, ingest_files
from shequ.pipeline import scan_inbox
from shequ.reasons import load as reason_codes

GOOD = csv_bytes([["街道", "社区名称", "志愿者组织数"], ["南湖街道", "南湖社区", "3"], ["南湖街道", "沿河社区", "4"]])


def _xlsx() -> bytes:
    wb = Workbook()
    ws = wb.active
    ws.append(["街道", "社区名称", "志愿者组织数"])
    ws.append(["南湖街道", "吉庆社区", 5])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _corrupt_sheet_xml(data: bytes) -> bytes:
    """The same workbook with its sheet XML cut in the middle of an element."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for item in src.infolist():
            body = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                body = body[: len(body) // 2] + b"<c r=\"Z9\"><v>1"
            z.writestr(item, body)
    return out.getvalue()


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 3]


def hostile_files() -> dict[str, bytes]:
    deep = "[" * 100_000 + "]" * 100_000
    deep_obj = '{"a":' * 100_000 + "1" + "}" * 100_000
    return {
        f"{PREFIX}corrupt_sheet.xlsx": _corrupt_sheet_xml(_xlsx()),
        f"{PREFIX}truncated.xlsx": _truncated(_xlsx()),
        f"{PREFIX}not_a_zip.xlsx": b"PK\x03\x04 this is not a workbook",
        f"{PREFIX}long_number.json": json.dumps([{"社区": "南湖社区", "指标": "志愿者组织数"}])
        .replace("}]", ', "数值": ' + "9" * 5000 + "}]").encode(),
        f"{PREFIX}long_float.json": ('[{"社区": "南湖社区", "指标": "志愿者组织数", "数值": 1' + "0" * 400 + ".5}]").encode(),
        f"{PREFIX}deep.json": deep.encode(),
        "deep_at_root.json": deep_obj.encode(),           # no quarter in its name: the quarter scan reads it
        f"{PREFIX}deep_records.json": ("[" + "[" * 900 + "]" * 900 + "]").encode(),
        f"{PREFIX}huge_field.csv": ("街道,社区名称,志愿者组织数\r\n南湖街道,南湖社区," + "1" * 200_000 + "\r\n").encode(),
        f"{PREFIX}nul.csv": b"\x00\x00\x00,\x00\r\n\x00",
        f"{PREFIX}bad_utf16.csv": b"\xff\xfe\x00",
        f"{PREFIX}garbage.json": b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
    }


def test_hostile_files_get_precise_reasons_and_the_rest_loads(tmp_path, template):
    files = hostile_files() | {f"{PREFIX}good.csv": GOOD}
    out = ingest_files(tmp_path, template, files)
    by_file = {s.source_file: s for s in out["summaries"]}
    assert set(by_file) == set(files)
    assert not [s for s in out["summaries"] if s.reason_code == "internal_error"], \
        [(s.source_file, s.message) for s in out["summaries"] if s.reason_code == "internal_error"]
    assert by_file[f"{PREFIX}good.csv"].status == "loaded" and by_file[f"{PREFIX}good.csv"].n_loaded == 2
    assert by_file[f"{PREFIX}corrupt_sheet.xlsx"].reason_code == "file_unreadable"
    assert by_file[f"{PREFIX}long_number.json"].reason_code == "number_too_long"
    assert by_file[f"{PREFIX}long_float.json"].reason_code == "number_too_long"
    # the declared JSON depth limit (SHEQU_MAX_JSON_DEPTH, shequ/limits.py) rejects deep nesting before parsing;
    # json_too_deep remains for a recursion the limit would let through (a limit raised beyond Python's stack)
    assert by_file[f"{PREFIX}deep.json"].reason_code == "too_large"
    assert by_file["deep_at_root.json"].reason_code == "too_large"
    huge = by_file[f"{PREFIX}huge_field.csv"]              # one 200,000-digit cell: that cell, not the file
    assert huge.status == "rejected" and huge.reason_code == "no_values" and huge.by_reason == {"non_finite": 1}
    for s in out["summaries"]:
        if s.status == "rejected":
            assert s.source_file in s.message and "Traceback" not in s.message
    # every reason recorded is a documented one, and every hostile file has its raw_file row
    codes = set(out["raw_file"]["reason_code"].drop_nulls()) | set(out["quarantine"]["reason_code"])
    assert codes <= set(reason_codes()), codes - set(reason_codes())
    assert out["raw_file"].height == len(files)


def test_quarter_scan_survives_hostile_files(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name, data in (hostile_files() | {f"{PREFIX}good.csv": GOOD}).items():
        (inbox / name).write_bytes(data)
    found = {f.rel: f.quarters for f in scan_inbox(None, inbox)}
    assert found[f"{PREFIX}good.csv"] == ["2024Q3"] and found["deep_at_root.json"] == []


def test_refresh_cli_does_not_die_on_deep_json_at_the_root(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "deep_at_root.json").write_bytes(("[" * 100_000 + "]" * 100_000).encode())
    shequ = Path(sys.executable).parent / "shequ"
    r = subprocess.run([str(shequ), "refresh", "--inbox", str(inbox), "--warehouse", str(tmp_path / "w.duckdb")],
                       capture_output=True, text=True, timeout=300)
    assert "Traceback" not in r.stderr and "RecursionError" not in r.stderr + r.stdout
    assert "没有可识别季度的文件" in r.stdout
