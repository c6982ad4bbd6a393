"""Names, phone numbers, ID card numbers and e-mail addresses planted in survey files (titles, footers, notes,
contact columns, a stray cell) are found nowhere after a refresh: not in any text column of any warehouse or
snapshot table, not in the report, the exports or the Data Docs; the footer note keeps 填表人：已隐去."""

import html
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from openpyxl import Workbook

from conftest import run_quarter
from shequ.privacy import MASK, is_personal_header, mask_text
from shequ.warehouse import connect

Q = "2024Q1"

# every planted string, as it would appear if stored (phones also without their separators)
PLANTED = ["赵敏", "13987654321", "钱多多", "15866667777", "唐僧", "tangseng@example.com", "孙悟空", "猪八戒",
           "87654321", "沙和尚", "186 1234 5678", "18612345678", "白龙马", "13700001111", "红孩儿", "86668888",
           "honghaier@example.com", "370102199202022345", "白骨精", "13712345678", "牛魔王", "13600002222",
           "玉皇大帝", "yuhuang@example.com", "铁扇公主", "80246813"]


def _plant(inbox: Path) -> None:
    folder = inbox / Q
    folder.mkdir(parents=True, exist_ok=True)
    wb = Workbook()
    ws = wb.active
    ws.title = "持证"
    ws.append(["天桥区2024年第一季度社区工作者持证情况 填表人：赵敏 联系电话：13987654321"])
    ws.append(["街道", "社区名称", "持证率", "联系人", "联系电话"])
    ws.append(["北村街道", "北村社区", "50%", "钱多多", "15866667777"])
    ws.append(["北村街道", "标山南社区", "联系人唐僧 tangseng@example.com", None, None])   # a stray cell
    ws.append(["填表人：孙悟空  审核人：猪八戒  电话：0531-87654321"])
    ws.append(["负责人 沙和尚 手机 186 1234 5678"])
    wb.save(folder / "天桥区_2024Q1_持证联系.xlsx")
    (folder / "天桥区_2024Q1_持证补充.csv").write_bytes("\r\n".join([
        "天桥区2024年第一季度 统计人：白龙马 手机：13700001111",
        "街道,居委会,持证率,备注",
        "北村街道,北村社区,50%,经办人：铁扇公主 电话 0531-80246813",
        "北村街道,标山南社区,身份证 370102199202022345,",
        "填表人:红孩儿 联系电话:(0531)86668888 邮箱 honghaier@example.com",
    ]).encode("gbk") + b"\r\n")
    (folder / "建邺区_2024Q1_持证联系.json").write_text(json.dumps({
        "期间": "2024年第一季度", "填表人": "白骨精", "联系电话": "13712345678",
        "records": [{"街道": "南湖街道", "社区": "南湖社区", "持证率": "50%", "联系人": "牛魔王", "手机": "13600002222",
                     "说明": "审核人：玉皇大帝 yuhuang@example.com"}]}, ensure_ascii=False), encoding="utf-8")


def _text_columns(con) -> dict[str, list[str]]:
    rows = con.execute("""SELECT table_name, column_name FROM information_schema.columns
                          WHERE table_schema = 'main' AND (data_type LIKE 'VARCHAR%' OR data_type LIKE '%[]'
                                OR data_type LIKE 'STRUCT%' OR data_type LIKE 'MAP%' OR data_type = 'JSON')""").fetchall()
    out: dict[str, list[str]] = {}
    for t, c in rows:
        out.setdefault(t, []).append(c)
    return out


def _found_in_db(path: Path) -> list[tuple[str, str, str]]:
    hits = []
    with connect(path, read_only=True) as con:
        cols = _text_columns(con)
        assert "raw_file" in cols and "quarantine" in cols and "stg_value" in cols
        for table, columns in cols.items():
            for col in columns:
                for s in PLANTED:
                    n = con.execute(f'SELECT count(*) FROM "{table}" WHERE CAST("{col}" AS VARCHAR) LIKE ?',
                                    [f"%{s}%"]).fetchall()[0][0]
                    if n:
                        hits.append((table, col, s))
    return hits


def _texts(path: Path) -> list[str]:
    """A file as text, in every spelling a planted string could take there (raw, HTML entities, \\u escapes);
    an xlsx as the text of all its parts."""
    data = path.read_bytes()
    parts = [data]
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            parts = [z.read(n) for n in z.namelist()]
    out = []
    for b in parts:
        t = b.decode("utf-8", errors="ignore")
        out += [t, html.unescape(t), re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m[1], 16)), t)]
    return out


@pytest.fixture(scope="module")
def refreshed(tmp_path_factory):
    from shequ.sample import write_sample_inbox

    root = tmp_path_factory.mktemp("pii")
    inbox = root / "inbox"
    write_sample_inbox(inbox, [Q])
    _plant(inbox)
    wh = root / "data" / "warehouse.duckdb"
    wh.parent.mkdir()
    result = run_quarter(wh, inbox, Q)
    assert result.success
    return {"root": root, "warehouse": wh, "inbox": inbox, "result": result}


def test_mask_text_rules():
    assert mask_text("填表人：王芳    审核人：李强") == "填表人：已隐去    审核人：已隐去"
    assert mask_text("填表人:张三 审核人:李四") == "填表人：已隐去 审核人：已隐去"
    assert mask_text("负责人（签字）： 赵六  手机 138 1234 5678") == "负责人（签字）：已隐去  手机：已隐去"
    assert mask_text("联系人：刘七，电话13912345678") == "联系人：已隐去，电话已隐去"
    assert mask_text("张三13812345678") == "张三已隐去"
    assert mask_text("身份证号码 110101199003071234") == "身份证号码：已隐去"
    assert mask_text("问题反馈 liu7@example.com") == "问题反馈 已隐去"
    assert mask_text("(0531)88886666") == MASK
    for keep in ("注：参保率指医保参保率", "制表日期：2024-10-08", "统计人口数：5000", "居委会成员数 12", "0.5",
                 "12345678901234567890", "2024年第三季度 天桥区"):
        assert mask_text(keep) == keep
    assert is_personal_header("联系电话") and is_personal_header("联系人") and not is_personal_header("社区名称")


def test_planted_personal_data_is_nowhere_in_warehouse_or_snapshot(refreshed):
    from shequ.snapshot import snapshot_path

    snap = snapshot_path(refreshed["warehouse"])
    assert snap.exists()
    for db in (refreshed["warehouse"], snap):
        assert _found_in_db(db) == [], db
    with connect(refreshed["warehouse"], read_only=True) as con:
        files = dict(con.execute("SELECT source_file, notes FROM raw_file").fetchall())
        q = con.execute("""SELECT header_raw, raw_text FROM quarantine WHERE source_file LIKE '%持证联系%'
                           AND header_raw IN ('联系人', '联系电话', '手机')""").fetchall()
    xlsx = next(v for k, v in files.items() if k.endswith("持证联系.xlsx"))
    assert "填表人：已隐去  审核人：已隐去  电话：已隐去" in xlsx
    assert "负责人：已隐去 手机：已隐去" in xlsx
    csv_notes = next(v for k, v in files.items() if k.endswith("持证补充.csv"))
    assert any(n.startswith("填表人：已隐去") for n in csv_notes)
    # contact columns are quarantined as unknown headers, each filled cell masked whole
    assert {t for _, t in q if t} == {MASK}
    # the sample's own footer (填表人：王芳 审核人：李强) is masked too
    assert not any("王芳" in n for v in files.values() if v for n in v)


def test_planted_personal_data_is_in_no_run_log_or_metadata(refreshed):
    """What Dagster keeps of the run (log messages, materialisation metadata such as the per-file table)."""
    events = refreshed["result"].all_events
    text = "\n".join(f"{e.message} {e.event_specific_data!r}" for e in events)
    assert "持证联系.xlsx" in text                          # the per-file table is there
    assert [s for s in PLANTED if s in text] == []


def test_planted_personal_data_is_in_no_output_file(refreshed, tmp_path):
    from shequ.exports import write_gongshi_xlsx, write_sdmx_csv
    from shequ.snapshot import read_only, snapshot_path

    root, wh = refreshed["root"], refreshed["warehouse"]
    out = tmp_path / "out"
    with read_only(snapshot_path(wh)) as con:
        write_sdmx_csv(con, out / "sdmx.csv", [Q])
        write_gongshi_xlsx(con, out / "gongshi.xlsx", Q)
    docs = out / "docs"
    r = subprocess.run([sys.executable, "-m", "shequ.datadocs", "--warehouse", str(wh), "--out", str(docs)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    files = [p for p in [*out.rglob("*"), *(root / "data").rglob("*")]
             if p.is_file() and not p.name.endswith((".duckdb", ".wal"))]
    report = [p for p in files if p.name == f"report_{Q}.html"]
    assert report and (out / "sdmx.csv").exists() and (out / "gongshi.xlsx").exists() and (docs / "index.html").exists()
    hits = [(str(p), s) for p in files for t in _texts(p) for s in PLANTED if s in t]
    assert sorted(set(hits)) == []
