"""Review-stage values (街道初评, 区复评): a reviewer's corrections of what a community reported (自评).

Files: CSV (any encoding the decode ladder reads) under data/reviews/ (or SHEQU_REVIEWS), one row per corrected
value, columns 季度, 社区编码, 评审阶段, 指标 (code or catalogue name), 核定值, and optionally 评审人, 说明. A file
is loaded whole or not at all: a bad row rejects the file with its name, row and reason, and the rows loaded
from it before stay as they were.
"""

import io
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from ..periods import normalise_quarter_arg
from ..privacy import mask_text
from ..text import decode_bytes
from ..warehouse import transaction

COLUMNS = {"季度": "period_key", "社区编码": "community_code", "评审阶段": "stage", "指标": "indicator",
           "核定值": "value", "评审人": "reviewer", "说明": "note"}


class ReviewFileError(ValueError):
    pass


@dataclass
class ReviewLoad:
    file: str
    rows: int
    error: str | None = None


def read_review_file(path: Path, con: duckdb.DuckDBPyConnection, stages: list[str]) -> pl.DataFrame:
    text, _ = decode_bytes(path.read_bytes())
    df = pl.read_csv(io.StringIO(text), infer_schema_length=0)
    missing = [c for c in ("季度", "社区编码", "评审阶段", "指标", "核定值") if c not in df.columns]
    if missing:
        raise ReviewFileError(f"{path.name}：缺少列 {missing}（应有 {list(COLUMNS)}）")
    df = df.rename({k: v for k, v in COLUMNS.items() if k in df.columns})
    for c in ("reviewer", "note"):
        if c not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=pl.String).alias(c))
    inds = dict(con.execute("SELECT name_zh, indicator_code FROM dim_indicator").fetchall())
    codes = set(inds.values())
    known = {r[0] for r in con.execute("SELECT DISTINCT community_code FROM dim_community").fetchall()}
    out = []
    for i, r in enumerate(df.iter_rows(named=True), start=2):    # a reviewer's corrections: tens of rows
        where = f"{path.name} 第 {i} 行"
        try:
            q = normalise_quarter_arg(str(r["period_key"]).strip())
        except ValueError as e:
            raise ReviewFileError(f"{where}：季度 {r['period_key']!r} 无法识别（{e}）") from None
        if r["community_code"] not in known:
            raise ReviewFileError(f"{where}：社区编码 {r['community_code']!r} 不在登记表中")
        if r["stage"] not in stages[1:]:
            raise ReviewFileError(f"{where}：评审阶段 {r['stage']!r} 应为 {stages[1:]} 之一（{stages[0]}即社区上报值）")
        ind = r["indicator"] if r["indicator"] in codes else inds.get(r["indicator"])
        if ind is None:
            raise ReviewFileError(f"{where}：指标 {r['indicator']!r} 不在指标目录中")
        try:
            value = float(str(r["value"]).replace(",", "").strip())
        except ValueError:
            raise ReviewFileError(f"{where}：核定值 {r['value']!r} 不是数字") from None
        out.append({"period_key": q, "community_code": r["community_code"], "stage": r["stage"],
                    "indicator_code": ind, "value": value, "reviewer": mask_text(r["reviewer"]), "note": mask_text(r["note"]),
                    "source_file": path.name})
    res = pl.DataFrame(out, schema={"period_key": pl.String, "community_code": pl.String, "stage": pl.String,
                                    "indicator_code": pl.String, "value": pl.Float64, "reviewer": pl.String,
                                    "note": pl.String, "source_file": pl.String})
    dup = res.filter(pl.struct("period_key", "community_code", "stage", "indicator_code").is_duplicated())
    if dup.height:
        raise ReviewFileError(f"{path.name}：同一社区、阶段、指标重复核定 {dup.row(0)[:4]}")
    return res


def load_reviews(con: duckdb.DuckDBPyConnection, directory: Path, stages: list[str]) -> list[ReviewLoad]:
    """Load every review file of ``directory``; each file replaces its own earlier rows in one transaction."""
    results = []
    if not directory or not Path(directory).is_dir():
        return results
    for path in sorted(Path(directory).glob("*.csv")):
        try:
            rows = read_review_file(path, con, stages)
        except (ReviewFileError, pl.exceptions.PolarsError, OSError) as e:
            results.append(ReviewLoad(path.name, 0, str(e)))
            continue
        with transaction(con):
            con.execute("DELETE FROM review_adjustment WHERE source_file = ?", [path.name])
            con.register("_rv", rows)
            con.execute("INSERT INTO review_adjustment BY NAME SELECT * FROM _rv")
            con.unregister("_rv")
        results.append(ReviewLoad(path.name, rows.height))
    return results
