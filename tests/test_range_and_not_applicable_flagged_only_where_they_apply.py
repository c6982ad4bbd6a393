"""Staging computes the out-of-range, not-applicable and ratio-part messages only when some cell of the file needs
one (a format over every cell of a district costs more than the check). The skip must change nothing: a file where
no cell is flagged and the same file with flagged cells stage every other cell identically, and each flagged cell
gets exactly its reason and message."""

import shutil

import polars as pl
import pytest

from shequ.ingest import Ingestor
from shequ.warehouse import connect

HEAD = "街道,居委会,社区工作者人数,持证社工人数,在岗社工人数,封闭式小区占比\r\n"
CLEAN = [("南湖街道", "南湖社区", "12", "6", "12", "80%"),
         ("南湖街道", "沿河社区", "15", "9", "15", "90%"),
         ("双闸街道", "金胜社区", "10", "4", "10", ""),          # 村代居: 封闭式小区占比 blank (missing), not 0
         ("南湖街道", "不存在社区", "8", "2", "8", "50%")]      # unknown community, in both files


def _csv(rows) -> bytes:
    return (HEAD + "".join(",".join(r) + "\r\n" for r in rows)).encode("gbk")


@pytest.fixture
def staged(tmp_path, template):
    db = tmp_path / "t.duckdb"
    shutil.copy(template, db)
    inbox = tmp_path / "inbox"
    (inbox / "2024Q1").mkdir(parents=True)

    def run(name: str, rows):
        path = inbox / "2024Q1" / name
        path.write_bytes(_csv(rows))
        with connect(db, read_only=True) as con:
            summary, write = Ingestor(con, inbox).prepare(path)
        return summary, write
    return run


def _by_cell(frame: pl.DataFrame, cols: list[str]) -> dict:
    return {r["source_cell"]: tuple(r[c] for c in cols) for r in frame.iter_rows(named=True)}


def test_clean_file_has_no_range_not_applicable_or_ratio_rejections(staged):
    summary, write = staged("建邺区_2024Q1_clean.csv", CLEAN)
    assert summary.status == "loaded"
    reasons = write["quarantined"]["reason_code"].to_list()
    assert sorted(set(reasons)) == ["missing", "unknown_community"]
    assert write["staged"].height == 3 * 4 - 1      # 3 known communities x 4 cells, 金胜's blank rate missing


def test_flagged_cells_get_their_reason_and_everything_else_stages_as_in_the_clean_file(staged):
    _, clean = staged("建邺区_2024Q1_clean.csv", CLEAN)
    flagged_rows = [("南湖街道", "南湖社区", "12", "6", "12", "80%"),
                    ("南湖街道", "沿河社区", "500", "9", "15", "90%"),   # 500 workers: out of staff_count's range
                    ("双闸街道", "金胜社区", "10", "40", "10", "0"),     # 40 certified of 10; 0 for a 村代居
                    ("南湖街道", "不存在社区", "8", "2", "8", "50%")]
    _, flagged = staged("建邺区_2024Q1_flagged.csv", flagged_rows)
    rel = "2024Q1/建邺区_2024Q1_flagged.csv"
    q = flagged["quarantined"]
    got = {(r["source_cell"], r["reason_code"]): r["message"] for r in q.iter_rows(named=True)
           if r["reason_code"] not in ("unknown_community",)}
    assert got == {
        ("R3C3", "out_of_range"): f"{rel} 工作表 (无) 单元格 R3C3：数值 “500” 读作 500.0，超出指标 staff_count 的有效范围 "
                                "[0.0, 100.0]，未入库",
        ("R4C6", "not_applicable"): "村代居不适用该指标（填报的 0 按不适用处理，不计为 0）",
        ("R4C5", "ratio_parts_inconsistent"): f"{rel}：分子 R4C4（“40”）与分母 R4C5（“10”）算出 social_worker_cert_rate 为 "
                                            "4.0，超出有效范围 [0.0, 1.0]（比率类指标的分子不应大于分母），两个单元格都未入库",
        ("R4C4", "ratio_parts_inconsistent"): f"{rel}：分子 R4C4（“40”）与分母 R4C5（“10”）算出 social_worker_cert_rate 为 "
                                            "4.0，超出有效范围 [0.0, 1.0]（比率类指标的分子不应大于分母），两个单元格都未入库",
    }
    # the other cells: the same staged rows (value, unit, qualifier, raw text) and the same unknown-community rows
    cols = ["indicator_code", "role", "value", "unit", "qualifier", "raw_text", "community_key"]
    touched = {"R3C3", "R4C4", "R4C5", "R4C6"}
    clean_rows = {k: v for k, v in _by_cell(clean["staged"], cols + ["source_cell"]).items() if k not in touched}
    flagged_rows = _by_cell(flagged["staged"], cols + ["source_cell"])
    assert not flagged_rows.keys() & touched
    assert {k: v for k, v in flagged_rows.items() if k not in touched} == clean_rows
    unknown = ["source_cell", "reason_code", "message"]
    pick = lambda w: sorted(w["quarantined"].filter(pl.col("reason_code") == "unknown_community")
                            .select(unknown).rows())
    assert [r[:2] for r in pick(clean)] == [r[:2] for r in pick(flagged)] and len(pick(flagged)) == 4
